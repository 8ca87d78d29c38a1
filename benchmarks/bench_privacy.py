"""Issue 12 benchmark: privacy under attack, our models beside SDV's, on Adult and credit, in one run.

    flock /tmp/synthloop-bench.lock .venv/bin/python benchmarks/bench_privacy.py   # about 35 min on 2 cores
    python benchmarks/bench_privacy.py --rows 3000 --quick            # a few minutes: proves it end to end

Per dataset (../shared/data: adult 48,842 rows, credit_default_taiwan 30,000 rows; `--rows` takes a random
subset first): a random 80/20 split (seed) into training and holdout rows; `--canaries` k canary rows
(synthloop.evaluate.attacks.make_canaries: unique category strings, out-of-range extremes) planted in the
training rows, k more held out. Every model learns the training rows and samples as many rows as the
training table has (the figures below), then is fitted again on the planted rows for the canary
exposure. Cases: our copula, our autoregressive model (`--ar-seconds` budget), our DP model at each
`--epsilons` with the domain paid for (`domain="dp"`) and declared public (schema `public: true`, the
domain taken from the training rows without canaries, as public knowledge would be), SDV 2.x
GaussianCopula and TVAE (`--tvae-epochs`). Per case one JSON line:
- quality: SDMetrics' own QualityReport score (metadata: our schema's `to_sdv_metadata()`), full tables;
- utility: TSTR / TRTR ROC AUC of the target (HistGradientBoosting, tested on the holdout);
- Anonymeter's singling-out, linkability and inference risks with their 95% confidence intervals,
  pooled over `--attack-seeds` (synthloop.evaluate.attacks.pooled_anonymeter_risks: each seed draws its own
  training/control subsample and attacks, `--n-attacks` per risk per seed; the counts of all seeds are
  summed and the estimate and interval recomputed; every case is attacked with the same seeds; `per_seed`
  lists each seed's own estimate); control = holdout rows; inference on the target and `--max-secrets` - 1
  other columns;
- mia_auc: distance-based membership attack (privacy.py); domias_auc: DOMIAS density attack;
- canaries: planted canaries whose unique values show up in the output or in the model file (SDV's
  models are pickles; they are searched as bytes), beside the held-out canaries (false-positive baseline).
Then one `privacy_targets` line per dataset with the targets of issue 12 and the ratios ours / SDV:
DP quality at eps=1 >= 0.95 with the domain paid for (>= 0.96 declared); Anonymeter risks of our default
model (`--model auto`: autoregressive) no higher than SDV's; 0 canaries released by any of our models.
The DP cases need the domain option of issue 12 (build item 2); on a build without it they run once per
epsilon with the old behaviour and say so (`domain: "legacy"`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SYNTHLOOP_DATA", ROOT.parent / "shared" / "data"))  # override: a checkout elsewhere
DATASETS = {
    "adult": (DATA / "adult" / "adult.csv.gz", "income"),
    "credit_default_taiwan": (DATA / "credit_default_taiwan" / "credit_default_taiwan.csv", "default.payment.next.month"),
}
DELTA = 1e-6


def emit(row: dict) -> None:
    row = {**row, "load_avg_1m": round(os.getloadavg()[0], 2)} if hasattr(os, "getloadavg") else row
    print(json.dumps(row), flush=True)


def r4(x: Any) -> Any:
    return None if x is None else round(float(x), 4)


class Case:
    """One model to judge: `fit(train, schema)` -> self, `sample(n)` -> DataFrame, `save(path)` -> path."""

    def __init__(self, name: str, family: str, make: Callable[[], Any], schema: Any = None, note: str | None = None,
                 sdv: bool = False, info: dict | None = None):
        self.name, self.family, self.make, self.schema, self.note, self.sdv = name, family, make, schema, note, sdv
        self.info = info or {}


def dp_cases(epsilons: list[float], schema: Any, seed: int) -> list[Case]:
    """Our DP model per epsilon: domain paid for and declared public where this build has the option."""
    from synthloop.schema import TableSchema
    from synthloop.synthesizers.dp_marginals import DPMarginalSynthesizer

    params = DPMarginalSynthesizer._get_param_names()
    cases = []
    for eps in epsilons:
        if "domain" not in params:
            cases.append(Case(f"dp_eps{eps:g}", "ours", lambda e=eps: DPMarginalSynthesizer(epsilon=e, delta=DELTA, random_state=seed),
                              note="this build's DP model has no domain option (issue 12 item 2): its domain is read "
                                   "from the data at no budget cost", info={"epsilon": eps, "domain": "legacy"}))
            continue
        cases.append(Case(f"dp_eps{eps:g}_paid", "ours",
                          lambda e=eps: DPMarginalSynthesizer(epsilon=e, delta=DELTA, random_state=seed, domain="dp"),
                          info={"epsilon": eps, "domain": "paid"}))
        if "public" in TableSchema.model_fields:
            cases.append(Case(f"dp_eps{eps:g}_declared", "ours",
                              lambda e=eps: DPMarginalSynthesizer(epsilon=e, delta=DELTA, random_state=seed, domain="public"),
                              schema=schema.model_copy(update={"public": True}), info={"epsilon": eps, "domain": "declared"}))
        else:
            cases.append(Case(f"dp_eps{eps:g}_declared", "ours", lambda: None, info={"epsilon": eps, "domain": "declared"},
                              note="skipped: this build's schema has no `public` field"))
    return cases


class SDVModel:
    """SDV 2.x single-table synthesizer behind our fit/sample/save calls."""

    def __init__(self, klass: Any, seed: int, **kwargs: Any):
        self.klass, self.seed, self.kwargs = klass, seed, kwargs
        self.name = klass.__name__

    def fit(self, df: pd.DataFrame, schema: Any = None) -> "SDVModel":
        import torch
        from sdv.metadata import Metadata

        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        self.model_ = self.klass(Metadata.detect_from_dataframes({"t": df}), **self.kwargs)
        self.model_.fit({"t": df})
        return self

    def sample(self, n: int, seed: int | None = None) -> pd.DataFrame:
        out = self.model_.sample(n)
        return out["t"] if isinstance(out, dict) else out

    def save(self, path: Path) -> Path:
        path = Path(path).with_suffix(".pkl")
        self.model_.save(str(path))
        return path


def judge(syn: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, schema: Any, target: str,
          args: argparse.Namespace) -> dict[str, Any]:
    from synthloop.evaluate import privacy_figures, quality_score
    from synthloop.evaluate.attacks import anonymeter_available, domias_attack, pooled_anonymeter_risks
    from synthloop.evaluate.utility import utility_scores

    out: dict[str, Any] = {}
    t = time.perf_counter()
    try:
        from sdmetrics.reports.single_table import QualityReport

        rep = QualityReport()
        cols = [c.name for c in schema.columns]
        rep.generate(train[cols], syn[cols], schema.to_sdv_metadata(), verbose=False)
        out["quality"] = r4(rep.get_score())
        out["quality_source"] = "sdmetrics QualityReport"
    except ImportError:
        out["quality"] = r4(quality_score(train, syn, schema).score)
        out["quality_source"] = "synthloop quality_score (SDMetrics definitions; sdmetrics not installed)"
    u = utility_scores(train, syn, holdout, target, schema, random_state=args.seed).figures
    out.update({"tstr_auc": r4(u["tstr"]["roc_auc"]), "trtr_auc": r4(u["trtr"]["roc_auc"]), "tstr_trtr": r4(u["ratio"]["roc_auc"])})
    p = privacy_figures(train, syn, holdout, schema, random_state=args.seed)
    out.update({"mia_auc": r4(p["mia_auc"]), "dcr_share": r4(p["dcr_share"])})
    out["domias_auc"] = r4(domias_attack(train, syn, holdout, schema, seed=args.seed).get("domias_auc"))
    if anonymeter_available():
        # the target and (max_secrets - 1) other columns drawn at random, the same ones for every case
        others = [c.name for c in schema.columns if c.learned and c.name != target]
        rng = np.random.default_rng(args.seed)
        secrets = [target] + [others[i] for i in np.sort(rng.choice(len(others), min(len(others), args.max_secrets - 1), replace=False))]
        seeds = [int(v) for v in args.attack_seeds.split(",")]
        a = pooled_anonymeter_risks(train, syn, holdout, schema, seeds=seeds, n_attacks=args.n_attacks,
                                    max_rows=args.anonymeter_rows, secrets=secrets)
        for k in ("singling_out", "linkability", "inference"):
            if k in a:
                out[k] = {"risk": r4(a[k]["risk"]), "ci": [r4(v) for v in a[k]["ci"]],
                          "per_seed": [r4(v) for v in a[k]["per_seed"]]}
        if "inference" in a:
            out["inference"]["secret"] = a["inference"]["secret"]
        out["anonymeter_attacks"] = a["n_attacks"]
        out["anonymeter_attacks_pooled"] = a["attacks_pooled"]
        out["anonymeter_seeds"] = a["seeds"]
    else:
        out["anonymeter"] = "skipped: anonymeter not installed"
    out["judge_s"] = round(time.perf_counter() - t, 1)
    return out


def run_dataset(name: str, args: argparse.Namespace, machine: dict) -> None:
    from synthloop.evaluate._frames import limited_threads
    from synthloop.evaluate.attacks import canary_exposure, make_canaries, plant
    from synthloop.schema import infer_schema
    from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer
    from synthloop.synthesizers.copula import GaussianCopulaSynthesizer

    path, target = DATASETS[name]
    if not path.exists():
        emit({"benchmark": "privacy", "dataset": name, "skipped": f"{path} not found"})
        return
    df = pd.read_csv(path)
    if args.rows and args.rows < len(df):
        df = df.sample(args.rows, random_state=args.seed).reset_index(drop=True)
    idx = np.random.default_rng(args.seed).permutation(len(df))
    cut = int(0.8 * len(df))
    train, holdout = df.iloc[idx[:cut]].reset_index(drop=True), df.iloc[idx[cut:]].reset_index(drop=True)
    overrides = {"columns": {target: {"kind": "categorical"}}}  # credit's 0/1 target would be read as a number
    schema = infer_schema(train, overrides=overrides)
    canaries = make_canaries(train, args.canaries, args.seed, schema)
    planted = plant(train, canaries, args.seed)
    seed = args.seed
    base = {"benchmark": "privacy", "dataset": name, "rows_train": len(train), "rows_holdout": len(holdout), "seed": seed,
            "canaries_planted": args.canaries, **machine}

    cases: list[Case] = []
    models = set(args.models.split(","))
    if "copula" in models:
        cases.append(Case("copula", "ours", lambda: GaussianCopulaSynthesizer(random_state=seed)))
    if "autoregressive" in models:
        cases.append(Case("autoregressive", "ours", lambda: AutoregressiveSynthesizer(max_seconds=args.ar_seconds, random_state=seed),
                          info={"max_seconds": args.ar_seconds, "default_model": True}))
    if "autoregressive_guard" in models:  # the same model with its opt-in combination guard (3-column cells)
        cases.append(Case("autoregressive_guard", "ours",
                          lambda: AutoregressiveSynthesizer(max_seconds=args.ar_seconds, random_state=seed, combination_guard=3),
                          info={"max_seconds": args.ar_seconds, "combination_guard": 3}))
    if "dp" in models:
        cases += dp_cases([float(e) for e in args.epsilons.split(",")], schema, seed)
    sdv_note = None
    if models & {"sdv_copula", "sdv_tvae"}:
        try:
            from sdv.single_table import GaussianCopulaSynthesizer as SDVCopula
            from sdv.single_table import TVAESynthesizer
        except ImportError:
            sdv_note = "sdv not installed (pip install 'sdv>=2.0', the bench extra)"
        else:
            if "sdv_copula" in models:
                cases.append(Case("sdv_gaussian_copula", "peer", lambda: SDVModel(SDVCopula, seed), sdv=True))
            if "sdv_tvae" in models:
                cases.append(Case("sdv_tvae", "peer", lambda: SDVModel(TVAESynthesizer, seed, epochs=args.tvae_epochs), sdv=True,
                                  info={"epochs": args.tvae_epochs}))
    if sdv_note:
        emit({**base, "case": "sdv", "family": "peer", "skipped": sdv_note})

    results: dict[str, dict[str, Any]] = {}
    if args.peers_from:
        # peers whose code, seeds and attacks did not change: their rows of an earlier run of this bench
        same = ("dataset", "seed", "rows_train", "n_attacks", "attack_seeds", "anonymeter_rows", "canaries_planted")
        for line in Path(args.peers_from).read_text().splitlines():
            row = json.loads(line)
            if (row.get("benchmark") == "privacy" and row.get("family") == "peer" and "error" not in row
                    and all(row.get(k, getattr(args, k, None)) == (base.get(k) if k in base else getattr(args, k, None)) for k in same)):
                results[row["case"]] = {**row, "reused_from": Path(args.peers_from).name, "reused_session": row.get("session")}
        cases = [c for c in cases if c.name not in results]
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            row = {**base, "case": case.name, "family": case.family, **case.info}
            if case.note and case.note.startswith("skipped"):
                emit({**row, "skipped": case.note})
                continue
            if case.note:
                row["note"] = case.note
            try:
                # the figures come from a model of the training rows; the canary exposure from a second fit
                # of the same model on the planted rows (extreme canaries would otherwise skew the figures)
                model = case.make()
                t0 = time.perf_counter()
                model.fit(train, case.schema if case.schema is not None else schema)
                row["fit_s"] = round(time.perf_counter() - t0, 2)
                t0 = time.perf_counter()
                syn = model.sample(len(train), seed=seed)
                row["sample_s"] = round(time.perf_counter() - t0, 2)
                guarantee = getattr(model, "privacy_guarantee", None)
                if callable(guarantee):
                    g = guarantee()
                    row["guarantee"] = g.get("statement") if isinstance(g, dict) else str(g)
                with limited_threads(1):
                    row.update(judge(syn, train, holdout, schema, target, args))
                canary_model = case.make()
                t0 = time.perf_counter()
                canary_model.fit(planted, case.schema if case.schema is not None else infer_schema(planted, overrides=overrides))
                canary_syn = canary_model.sample(len(planted), seed=seed)
                model_path = canary_model.save(Path(tmp) / f"{case.name}.npz")
                with limited_threads(1):
                    c = canary_exposure(canaries, canary_syn, Path(model_path), real=train, schema=schema)
                row["canaries"] = {k: c[k] for k in ("k", "canaries_released", "canary_rows_released", "canaries_in_model_file",
                                                     "held_out_canaries_released", "held_out_canaries_in_model_file",
                                                     "rows_beyond_real_range", "canary_mia_auc") if k in c}
                row["canary_fit_s"] = round(time.perf_counter() - t0, 2)
            except Exception as exc:  # one failing case must not hide the others' rows
                row["error"] = f"{type(exc).__name__}: {exc}"[:400]
            emit(row)
            results[case.name] = row
    emit(targets(base, results))


def targets(base: dict, res: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets and the ratios ours / SDV, from the case rows."""
    out: dict[str, Any] = {**base, "benchmark": "privacy_targets"}
    t: dict[str, Any] = {}
    for case, need in (("dp_eps1_paid", 0.95), ("dp_eps1_declared", 0.96)):
        q = (res.get(case) or {}).get("quality")
        if q is not None:
            t[f"{case}_quality_at_least_{need}"] = bool(q >= need)
            out[f"{case}_quality"] = q
    risks = ("singling_out", "linkability", "inference")
    ours = res.get("autoregressive") or {}
    for peer in ("sdv_gaussian_copula", "sdv_tvae"):
        p = res.get(peer) or {}
        if all(k in ours and k in p for k in risks):
            t[f"default_model_risks_not_above_{peer}"] = bool(all(ours[k]["risk"] <= p[k]["risk"] for k in risks))
            # the same with the intervals: ours is not clearly higher when its interval reaches SDV's estimate
            t[f"default_model_risks_not_clearly_above_{peer}"] = bool(all(ours[k]["ci"][0] <= p[k]["risk"] for k in risks))
    pairs = (("copula", "sdv_gaussian_copula"), ("autoregressive", "sdv_tvae"))
    ratios: dict[str, Any] = {}
    for mine, peer in pairs:
        a, b = res.get(mine) or {}, res.get(peer) or {}
        for k in ("quality", "tstr_trtr", "mia_auc", "domias_auc"):
            if a.get(k) is not None and b.get(k):
                ratios[f"{mine}/{peer}:{k}"] = round(a[k] / b[k], 4)
        for k in risks:
            if k in a and k in b:
                ratios[f"{mine}/{peer}:{k}_risk_diff"] = round(a[k]["risk"] - b[k]["risk"], 4)
    released = {c: r["canaries"]["canaries_released"] for c, r in res.items() if r.get("family") == "ours" and "canaries" in r}
    in_file = {c: r["canaries"].get("canaries_in_model_file") for c, r in res.items() if r.get("family") == "ours" and "canaries" in r}
    if released:
        t["no_canary_released_by_our_models"] = bool(all(v == 0 for v in released.values()))
    out.update({"canaries_released": {c: r["canaries"]["canaries_released"] for c, r in res.items() if "canaries" in r},
                "canaries_in_model_file": {**in_file, **{c: r["canaries"].get("canaries_in_model_file") for c, r in res.items()
                                                          if r.get("family") == "peer" and "canaries" in r}},
                "ratios": ratios, "targets": t, "targets_met": bool(t) and all(t.values())})
    reused = {c: r["reused_session"] for c, r in res.items() if "reused_from" in r}
    if reused:
        out["peers_reused_from_session"] = reused
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--models", default="copula,autoregressive,dp,sdv_copula,sdv_tvae")
    ap.add_argument("--rows", type=int, default=0, help="use this many random rows of each dataset (0 = all)")
    ap.add_argument("--epsilons", default="1,3")
    ap.add_argument("--ar-seconds", type=float, default=120.0, help="training budget of our autoregressive model")
    ap.add_argument("--tvae-epochs", type=int, default=20, help="SDV TVAE epochs (its default 300 takes hours on 2 cores)")
    ap.add_argument("--n-attacks", type=int, default=1000, help="Anonymeter attacks per risk and attack seed")
    ap.add_argument("--attack-seeds", default="0,1,2",
                    help="Anonymeter attack seeds, the same for every case; their attacks are pooled")
    ap.add_argument("--anonymeter-rows", type=int, default=5_000, help="training and control rows Anonymeter uses")
    ap.add_argument("--max-secrets", type=int, default=8,
                    help="columns Anonymeter's inference attack guesses: the target and others drawn at random")
    ap.add_argument("--canaries", type=int, default=10)
    ap.add_argument("--peers-from", default=None,
                    help="a JSONL of this bench's rows: SDV peer rows of the same dataset, split, seeds and attacks are "
                         "reused from it (their code and seeds did not change) instead of being fitted again")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: 20 s autoregressive budget, 3 TVAE epochs, 100 attacks, 5 inference secrets")
    args = ap.parse_args()
    if args.quick:
        args.ar_seconds, args.tvae_epochs, args.n_attacks = min(args.ar_seconds, 20.0), min(args.tvae_epochs, 3), min(args.n_attacks, 100)
        args.max_secrets = min(args.max_secrets, 5)
        args.attack_seeds = args.attack_seeds.split(",")[0]
    import torch

    torch.set_num_threads(1)
    machine = {"cpus": os.cpu_count(), "torch_threads": 1, "python": platform.python_version(), "quick": args.quick,
               "ar_seconds": args.ar_seconds, "tvae_epochs": args.tvae_epochs, "n_attacks": args.n_attacks,
               "attack_seeds": args.attack_seeds, "session": 3}
    for name in args.datasets.split(","):
        run_dataset(name, args, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
