"""Differentially private synthesis on Adult: synthloop's DP synthesizer vs smartnoise-synth MST vs a non-DP copula.

    flock /tmp/synthloop-bench.lock .venv/bin/python benchmarks/bench_dp.py [--epsilons 0.5,1,3,10] [--no-peer]

Data: ../shared/data/adult (48,842 rows), split 80/20 at random (seed 0) into training and holdout rows;
every model learns the training rows; schema (categories, bounds) inferred from the training rows and
treated as public by both DP models (`--domain dp`: ours pays for it under DP instead). delta = 1e-6. Per epsilon one JSON line:
- quality: SDMetrics QualityReport definitions (synthloop.evaluate.quality_score; `--sdmetrics` also runs
  SDMetrics' own QualityReport on our rows and prints it beside);
- utility: TSTR / TRTR ROC AUC for `income` (HistGradientBoosting, tested on the holdout);
- privacy: DCR share (0.5 ideal) and a distance-based membership-inference AUC (0.5 = attacker guesses),
  from synthloop.evaluate.privacy_figures;
- the peer's figures and the ratio ours / peer, and the non-DP Gaussian copula as a reference.

Peer: smartnoise-synth 1.0.8 pins opacus<0.15 (synthloop needs opacus>=1.6) and pulls jax, so it runs in its
own virtual environment given by SNSYNTH_PYTHON (benchmarks/_snsynth_peer.py runs there). Setup:
    python3.11 -m venv /work/peer/snsynth
    /work/peer/snsynth/bin/pip install --no-deps smartnoise-synth==1.0.8
    /work/peer/snsynth/bin/pip install "mbi>=1.1,<2" "opendp>=0.14.1,<0.15" smartnoise-sql disjoint-set pac-synth pandas scikit-learn Faker
(`--no-deps` keeps out opacus 0.14 and the torch it would pull; MST and AIM do not use them).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from synthloop.evaluate import privacy_figures, quality_score  # noqa: E402
from synthloop.evaluate.guarantee import guarantee_text  # noqa: E402
from synthloop.evaluate.utility import utility_scores  # noqa: E402
from synthloop.schema import infer_schema  # noqa: E402
from synthloop.synthesizers.copula import GaussianCopulaSynthesizer  # noqa: E402
from synthloop.synthesizers.dp_marginals import DPMarginalSynthesizer  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "adult" / "adult.csv.gz"
DELTA = 1e-6
SEED = 0
TARGET = "income"


def judge(train: pd.DataFrame, holdout: pd.DataFrame, synth: pd.DataFrame, schema, sdmetrics: bool) -> dict:
    q = quality_score(train, synth, schema)
    u = utility_scores(train, synth, holdout, TARGET, schema, random_state=SEED).figures
    p = privacy_figures(train, synth, holdout, schema, random_state=SEED)
    out = {"quality": round(q.score, 4), "column_shapes": round(q.column_shapes, 4),
           "column_pair_trends": round(q.column_pair_trends, 4),
           "tstr_auc": round(u["tstr"]["roc_auc"], 4), "trtr_auc": round(u["trtr"]["roc_auc"], 4),
           "tstr_trtr": round(u["ratio"]["roc_auc"], 4),
           "dcr_share": round(p["dcr_share"], 4), "mia_auc": round(p["mia_auc"], 4)}
    if sdmetrics:
        from sdmetrics.reports.single_table import QualityReport

        rep = QualityReport()
        cols = [c.name for c in schema.columns]
        rep.generate(train[cols], synth[cols], schema.to_sdv_metadata(), verbose=False)
        out["sdmetrics_quality"] = round(float(rep.get_score()), 4)
    return out


def run_peer(python: str, train: pd.DataFrame, schema, eps: float, workdir: Path) -> tuple[pd.DataFrame, dict]:
    tr_csv, sc_json, out_csv = workdir / "train.csv", workdir / "schema.json", workdir / f"peer_{eps}.csv"
    if not tr_csv.exists():
        train.to_csv(tr_csv, index=False)
        sc_json.write_text(schema.to_json())
    res = subprocess.run([python, str(REPO / "benchmarks" / "_snsynth_peer.py"), str(tr_csv), str(sc_json), str(out_csv),
                          str(eps), str(DELTA), str(SEED), "mst"], capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    timing = json.loads(res.stdout.strip().splitlines()[-1])
    peer = pd.read_csv(out_csv)
    for c in schema.columns:  # the peer writes categories as text; give them the training dtypes back
        if c.name in peer and train[c.name].dtype != object:
            peer[c.name] = pd.to_numeric(peer[c.name], errors="coerce")
    return peer, timing


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epsilons", default="0.5,1,3,10")
    ap.add_argument("--no-peer", action="store_true")
    ap.add_argument("--domain", choices=["public", "dp"], default="public",
                    help="public: the inferred schema is declared public (as the peer assumes); dp: ours pays for it")
    ap.add_argument("--sdmetrics", action="store_true", help="also run SDMetrics' QualityReport on our rows")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not DATA.exists():
        sys.exit(f"{DATA} not found: the shared datasets must sit beside the repository")
    df = pd.read_csv(DATA)
    idx = np.random.default_rng(SEED).permutation(len(df))
    cut = int(0.8 * len(df))
    train, holdout = df.iloc[idx[:cut]].reset_index(drop=True), df.iloc[idx[cut:]].reset_index(drop=True)
    schema = infer_schema(train)
    peer_py = os.environ.get("SNSYNTH_PYTHON")
    peer_note = None
    if args.no_peer:
        peer_py, peer_note = None, "--no-peer"
    elif not peer_py or not Path(peer_py).exists():
        peer_py, peer_note = None, "smartnoise-synth not set up (SNSYNTH_PYTHON unset); see the docstring"

    t0 = time.perf_counter()
    cop = GaussianCopulaSynthesizer(random_state=SEED).fit(train, schema=schema)
    fit_c = time.perf_counter() - t0
    base = judge(train, holdout, cop.sample(len(train), seed=SEED), schema, args.sdmetrics)
    base.update({"fit_s": round(fit_c, 2), "guarantee": guarantee_text(cop)[:60]})

    with tempfile.TemporaryDirectory() as tmp:
        for eps in [float(e) for e in args.epsilons.split(",")]:
            t0 = time.perf_counter()
            # the peer treats the inferred schema as public; so does this run unless --domain dp asks to pay for it
            fit_schema = schema.model_copy(update={"public": args.domain == "public"})
            model = DPMarginalSynthesizer(epsilon=eps, delta=DELTA, random_state=SEED).fit(train, schema=fit_schema)
            t1 = time.perf_counter()
            synth = model.sample(len(train), seed=SEED)
            t2 = time.perf_counter()
            ours = judge(train, holdout, synth, schema, args.sdmetrics)
            ours.update({"fit_s": round(t1 - t0, 2), "sample_s": round(t2 - t1, 2),
                         "guarantee": model.privacy_guarantee()["statement"]})
            row = {"bench": "dp_synthesis", "dataset": "adult", "rows_train": len(train), "rows_holdout": len(holdout),
                   "seed": SEED, "epsilon": eps, "delta": DELTA, "domain": args.domain, "ours": ours}
            if peer_py:
                try:
                    peer, timing = run_peer(peer_py, train, schema, eps, Path(tmp))
                    pf = judge(train, holdout, peer, schema, False)
                    pf.update({k: round(v, 2) for k, v in timing.items()})
                    row["peer"] = {"name": "smartnoise-synth 1.0.8 MST", **pf}
                    row["ratio"] = {k: round(ours[k] / pf[k], 4) for k in ("quality", "tstr_trtr", "mia_auc") if pf.get(k)}
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    row["peer"] = {"name": "smartnoise-synth 1.0.8 MST", "error": str(exc)[-300:]}
            else:
                row["peer"] = {"name": "smartnoise-synth MST", "skipped": peer_note}
            row["baseline_non_dp_copula"] = base
            row["targets"] = {"mia_auc_below_0.55": ours["mia_auc"] < 0.55}
            if eps == 1.0:
                row["targets"]["quality_at_least_0.80"] = ours["quality"] >= 0.80
                if "quality" in row.get("peer", {}):
                    row["targets"]["quality_at_least_peer"] = ours["quality"] >= row["peer"]["quality"]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
