"""Mixed spec benchmark: learned structured columns + an LLM text column steered by the real texts.

One command: `python benchmarks/bench_mixed.py [--rows 150]` (run it under
`flock /tmp/synthloop-bench.lock`). Data: ../shared/data/seattle_pets (City of Seattle pet licenses,
CC BY-SA 3.0 via openintro). No table in ../shared/data has a long free-text column; the closest is
`primary_breed`, a short free-form phrase written by the licensing clerk ("Retriever, Labrador",
"Domestic Shorthair", 336 distinct, 3-46 characters) whose content depends on the row's `species`.
It is the text column here; `species`, `secondary_breed`, `zip_code`, `license_issue_date` are
learned; `license_number` and `animal_name` are personal values that must never appear in the text.

Row-text agreement rule (derived from the real table, so the real rows score ~1.0): a breed word
that occurs only among one species' breeds (at least 10 times) must not appear in a row of another
species ("Retriever" in a Cat row disagrees). Prints one JSON line per case:

1. `learned_alone`: the synthesizer sampled alone -> SDMetrics-style quality of the structured part.
2. `prompted_scratch`: a prompted spec without `learn:` (species by its real shares, the text from
   the prompt only) -> text metrics, agreement, copied runs, rows/s.
3. `mixed`: the mixed spec (same fitted model, nearest-neighbour few-shot with PII replaced, style,
   checks, copy/PII regeneration) -> structured quality beside case 1, text metrics, agreement,
   copied runs, rows/s; `targets` says which of the issue's targets are met.
4. `mixed_finetuned`: the mixed spec with `llm: {backend: finetuned}` (LoRA over --finetune-base),
   only where a CUDA GPU is present; elsewhere the row says why it was skipped.

`--skip-scratch` leaves case 2 out (it does not depend on the mixed-spec code); `--save DIR` keeps the
mixed table with each row's planned length and band (`mixed.csv`).

Before the cases, `length_reference` says what length KS similarity a perfect generator could show:
--rows texts drawn from the real column itself (mean, sd, 10th percentile over 200 seeds; two-sample
KS of n=150 against 3000 loses ~0.06 to sampling noise alone), and the KS similarity of the planned
lengths of the mixed case (stratified over the real lengths, so they do not carry that noise).
The mixed row's `length` block holds the real and written length histograms (characters and words),
the band tolerance used and the share of texts inside their row's band.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402

from synthloop.evaluate.quality import quality_score  # noqa: E402
from synthloop.evaluate.text import text_metrics  # noqa: E402
from synthloop.generate.runner import PromptedGenerator  # noqa: E402
from synthloop.generate.textprivacy import PiiIndex, common_tokens, pii_values  # noqa: E402
from synthloop.spec import load_spec  # noqa: E402
from synthloop.synthesizers.factory import make_synthesizer  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "seattle_pets" / "seattle_pets.csv"
DATA_NOTE = ("no shared table has long free text (checked every ../shared/data README and column: the longest is "
             "diabetes_130_hospitals IDs_mapping.description, 58 fixed labels), and the tables shipped inside the "
             "packages the project installs (scikit-learn, plotly, SDV demos need a download) have none either; "
             "primary_breed is a short free-form phrase")
STRUCTURED = ["license_issue_date", "species", "secondary_breed", "zip_code"]
TEXT = "primary_breed"


def species_words(real: pd.DataFrame, min_count: int = 10) -> dict[str, list[str]]:
    """Words of one species' breeds (in at least `min_count` of them) that no breed of another species
    contains, even inside a longer word: species -> words. Checked as substrings, as `contains` does."""
    texts = real[TEXT].astype(str).str.lower()
    out: dict[str, list[str]] = {}
    for sp in sorted(real["species"].unique()):
        mine, others = texts[real["species"] == sp], texts[real["species"] != sp]
        counts = pd.Series([w for t in mine for w in set(re.findall(r"[a-z]{4,}", t))]).value_counts()
        cands = [w for w, c in counts.items() if c >= min_count]
        other_text = "\n".join(others)
        ws = sorted(w for w in cands if w not in other_text)
        if ws:
            out[sp] = ws
    return out


def check_expressions(words: dict[str, list[str]]) -> list[str]:
    """One check per species: rows of other species must not use its own words."""
    exprs = []
    for sp, ws in sorted(words.items()):
        uses = " or ".join(f"contains(text, '{w}')" for w in ws)
        exprs.append(f"species == '{sp}' or not ({uses})")
    return exprs


def agreement_fn(words: dict[str, list[str]]):  # noqa: ANN201 - a check for text_metrics
    def check(df: pd.DataFrame) -> list[bool]:
        out = []
        for sp, text in zip(df["species"].astype(str), df[TEXT].astype(str).str.lower()):
            bad = any(w in text for other, ws in words.items() if other != sp for w in ws)
            out.append(not bad)
        return out
    return check


def spec_text(data: str | None, exprs: list[str], rows: int, seed: int, shares: dict[str, float], threads: int | None) -> str:
    checks = "\n".join(f"          - \"{e}\"" for e in exprs)
    thr = f", threads: {threads}" if threads else ""
    head = f"name: seattle_pets_{'mixed' if data else 'scratch'}\nrows: {rows}\nseed: {seed}\nllm: {{backend: embedded{thr}}}\n"
    if data:
        head += (f"learn:\n  data: {data}\n  model: copula\n  exclude: [license_number]\n  pii: [animal_name]\n"
                 "columns:\n  - name: animal_name\n    sampler: {faker: {provider: first_name}}\n")
    else:
        cats = ", ".join(f"{k}: {v:.4f}" for k, v in shares.items())
        head += f"columns:\n  - name: species\n    sampler: {{categorical: {{{cats}}}}}\n"
    return head + f"""  - name: {TEXT}
    llm:
      prompt: "The primary breed of a {{{{ species }}}} licensed in Seattle, as the clerk wrote it (a breed name, not a sentence)."
      max_chars: 48
      temperature: 0.7
      checks:
        min_words: 1
        forbid_regex: ["[{{}}<>]"]
        expressions:
{checks}
"""


def length_reference(real_texts: list[str], rows: int, seeds: int = 200) -> dict:
    """KS similarity of `rows` texts drawn from the real column itself: the sampling-noise ceiling."""
    lens = np.array([len(t) for t in real_texts])
    sims = np.array([1 - ks_2samp(lens, np.random.default_rng(s).choice(lens, rows)).statistic for s in range(seeds)])
    return {"resampled_real_length_ks_similarity": {"mean": round(float(sims.mean()), 4), "sd": round(float(sims.std()), 4),
                                                    "p10": round(float(np.percentile(sims, 10)), 4), "seeds": seeds}}


def length_block(real_texts: list[str], df: pd.DataFrame, guide) -> dict:  # noqa: ANN001 - a TextGuide
    """Real vs written length histograms (characters, words), the band tolerance and the share in band."""
    syn = df[TEXT].astype(str).tolist()
    rc, sc = pd.Series([len(t) for t in real_texts]), pd.Series([len(t) for t in syn])
    rw, sw = pd.Series([len(t.split()) for t in real_texts]), pd.Series([len(t.split()) for t in syn])

    def hist(s: pd.Series, top: int | None = None) -> dict:
        v = s.value_counts(normalize=True)
        v = v.head(top) if top else v
        return {str(k): round(float(x), 3) for k, x in v.sort_index().items()}

    top = rc.value_counts().index[:8]
    bands = [guide.band(i) for i in range(len(df))]
    planned = [guide.target_length(i) for i in range(len(df))]
    inside = [b is not None and b[0] <= len(t) <= b[1] for t, b in zip(syn, bands)]
    exact = [p is not None and len(t) == p for t, p in zip(syn, planned)]
    return {"tolerance": guide.tolerance, "in_band_share": round(float(np.mean(inside)), 4),
            "planned_length_exact_share": round(float(np.mean(exact)), 4),
            "planned_length_ks_similarity": round(1 - ks_2samp(rc, [p for p in planned if p is not None]).statistic, 4),
            "word_count_ks_similarity": round(1 - ks_2samp(rw, sw).statistic, 4),
            "chars_real_top": {str(k): round(float((rc == k).mean()), 3) for k in sorted(top)},
            "chars_written_same": {str(k): round(float((sc == k).mean()), 3) for k in sorted(top)},
            "words_real": hist(rw), "words_written": hist(sw)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=150)
    ap.add_argument("--real-rows", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="auto", help="synthesizer of the learned columns")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-scratch", action="store_true", help="leave out case 2 (prompted from scratch)")
    ap.add_argument("--save", default=None, help="folder to keep the mixed table in (mixed.csv, with planned lengths)")
    ap.add_argument("--finetune-base", default=None, help="local HF causal LM folder for the fine-tuned case (GPU only)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    full = pd.read_csv(DATA)
    real = full.sample(args.real_rows, random_state=args.seed).reset_index(drop=True)
    words = species_words(real)
    exprs = check_expressions(words)
    agree = agreement_fn(words)
    work = Path(tempfile.mkdtemp(prefix="bench_mixed_"))
    real.to_csv(work / "real.csv", index=False)
    base = {"session": 3, "dataset": "seattle_pets", "real_rows": len(real), "rows": args.rows, "seed": args.seed,
            "text_column": TEXT, "note": DATA_NOTE, "load_average": [round(x, 2) for x in os.getloadavg()]}

    real_texts = [" ".join(str(t).split()) for t in real[TEXT].dropna() if str(t).strip()]
    print(json.dumps({**base, "case": "length_reference", **length_reference(real_texts, args.rows)}), flush=True)

    # 1. the learned model alone
    t0 = time.perf_counter()
    synth = make_synthesizer(args.model, args.seed, shape=(len(real), len(STRUCTURED)))
    synth.fit(real[STRUCTURED])
    fit_s = time.perf_counter() - t0
    alone = synth.sample(args.rows, seed=args.seed)
    q_alone = quality_score(real[STRUCTURED], alone[STRUCTURED]).score
    print(json.dumps({**base, "case": "learned_alone", "model": synth.name, "fit_seconds": round(fit_s, 1),
                      "quality": round(q_alone, 4)}), flush=True)

    gens: dict[str, PromptedGenerator] = {}

    def run(spec_yaml: str, name: str, model=None) -> tuple[pd.DataFrame, dict, float]:  # noqa: ANN001
        p = work / f"{name}.yaml"
        p.write_text(spec_yaml.replace("model: copula", f"model: {args.model}"))
        spec = load_spec(p)
        gen = gens[name] = PromptedGenerator(spec, cache_dir=False, learned_model=model)
        t = time.perf_counter()
        res = gen.generate()
        return res.data, res.summary, time.perf_counter() - t

    def text_row(df: pd.DataFrame, summary: dict, wall: float) -> dict:
        m = text_metrics(real, df, TEXT, structured=[c for c in STRUCTURED if c in df.columns], agreement=agree,
                         seed=args.seed)
        ag = (summary.get("agreement") or {}).get(TEXT) or {}
        return {"rows_written": summary["rows_written"], "rows_per_s": round(summary["rows_written"] / wall, 3),
                "length_ks_similarity": round(m["length_ks_similarity"], 4),
                "vocabulary_similarity": round(m["vocabulary_similarity"], 4),
                "char_ngram_similarity": round(m["char_ngram_similarity"], 4),
                "distinct_1": m["distinct_1"], "distinct_2": m["distinct_2"],
                "detection_auc": round(m["detection_auc"], 4) if m.get("detection_auc") is not None else None,
                "agreement_rate": round(m["agreement_rate"], 4), "agreement_rate_real": round(m["agreement_rate_real"], 4),
                "checks_agreed_first_try": ag.get("agreed_first_try"), "copy": m["copy"],
                "examples": df[TEXT].head(5).tolist()}

    # 2. prompted from scratch (no learn block: species by its real shares)
    shares = real["species"].value_counts(normalize=True).to_dict()
    if not args.skip_scratch:
        df_s, sum_s, wall_s = run(spec_text(None, exprs, args.rows, args.seed, shares, args.threads), "scratch")
        print(json.dumps({**base, "case": "prompted_scratch", **text_row(df_s, sum_s, wall_s)}, default=str), flush=True)

    # 3. the mixed spec, with the same fitted model
    df_m, sum_m, wall_m = run(spec_text("real.csv", exprs, args.rows, args.seed, shares, args.threads), "mixed", synth)
    q_mixed = quality_score(real[STRUCTURED], df_m[STRUCTURED]).score
    row = text_row(df_m, sum_m, wall_m)
    guide = gens["mixed"].guides()[TEXT]
    length = length_block(real_texts, df_m, guide)
    length["balance"] = (sum_m.get("text", {}).get(TEXT) or {}).get("length_balance")
    if args.save:
        out = Path(args.save)
        out.mkdir(parents=True, exist_ok=True)
        df_m.assign(planned_length=[guide.target_length(i) for i in range(len(df_m))],
                    band=[guide.band(i) for i in range(len(df_m))]).to_csv(out / "mixed.csv", index=False)
    tx = sum_m.get("text", {}).get(TEXT, {})
    # real personal values in the output, judged as the run judges them (pet names that are also common
    # breed words, e.g. a dog called "Husky", do not count) and, for reference, counted raw as well
    pii = PiiIndex(pii_values(real, ["animal_name"], [TEXT]), common_tokens(real[TEXT].astype(str)))
    leaked = sum(bool(h) for h in pii.hits(df_m[TEXT].astype(str).tolist()))
    names = set(real["animal_name"].dropna().astype(str).str.lower()) | set(real["license_number"].astype(str).str.lower())
    raw = sum(any(w in names for w in re.findall(r"[\w-]+", t.lower())) for t in df_m[TEXT].astype(str))
    targets = {
        "quality_within_0.005_of_learned_alone": abs(q_mixed - q_alone) <= 0.005,
        "agreement_at_least_0.95": row["agreement_rate"] >= 0.95,
        "no_copied_run_of_8": (row["copy"]["max"] or 0) < 8,
        "length_ks_similarity_at_least_0.9": row["length_ks_similarity"] >= 0.9,
    }
    print(json.dumps({**base, "case": "mixed", "quality": round(q_mixed, 4), "quality_learned_alone": round(q_alone, 4),
                      "quality_gap": round(q_mixed - q_alone, 4), **row,
                      "copy_before_regeneration": (tx.get("copy") or {}).get("before"), "regenerated": tx.get("regenerated"),
                      "copies_trimmed": tx.get("copies_trimmed"),
                      "pii": tx.get("pii"), "real_names_or_ids_in_output": leaked,
                      "texts_with_a_word_that_is_also_a_real_pet_name": raw, "length": length,
                      "requests": {k: (sum_m.get("requests") or {}).get(k) for k in ("count", "per_written_row", "repairs_by_reason")},
                      "targets": targets}, default=str), flush=True)

    # 4. the fine-tuned backend (LoRA over a local Hugging Face model), only where a GPU is present
    fine_tuned(args, base, real, run, text_row)


def fine_tuned(args: argparse.Namespace, base: dict, real: pd.DataFrame, run, text_row) -> None:  # noqa: ANN001
    """The mixed spec with `llm: {backend: finetuned}`: LoRA-tuned on the real texts conditioned on the
    learned columns, then written like any backend. Needs a CUDA GPU and --finetune-base (a local model
    folder); without either the row says why it was skipped."""
    import torch

    why = None if torch.cuda.is_available() else "no CUDA GPU on this machine"
    if why is None and not args.finetune_base:
        why = "no --finetune-base (a local Hugging Face causal LM folder) given"
    if why is not None:
        print(json.dumps({**base, "case": "mixed_finetuned", "skipped": why}), flush=True)
        return
    yaml = (f"name: seattle_pets_finetuned\nrows: {args.rows}\nseed: {args.seed}\n"
            f"llm: {{backend: finetuned, model: {args.finetune_base}, finetune: {{epochs: 2}}}}\n"
            "learn:\n  data: real.csv\n  model: copula\n  exclude: [license_number]\n  pii: [animal_name]\n"
            "columns:\n  - name: animal_name\n    sampler: {faker: {provider: first_name}}\n"
            f"  - name: {TEXT}\n    llm:\n      prompt: \"The primary breed of a {{{{ species }}}}.\"\n      max_chars: 48\n")
    df, summary, wall = run(yaml, "finetuned")
    print(json.dumps({**base, "case": "mixed_finetuned", "base_model": args.finetune_base,
                      **text_row(df, summary, wall)}, default=str), flush=True)


if __name__ == "__main__":
    main()
