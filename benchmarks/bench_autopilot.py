"""Benchmark (issue 17): the downstream metric on real test rows for
(a) real rows only, (b) real + synthetic rows from the default model (`--model auto`, no search),
(c) real + synthetic rows from `synthloop autopilot` with a time budget (issue: 15 minutes),
with the privacy figures (DCR share and membership-attack AUC against the test rows, exact copies) of
the synthetic rows used.

One command:  .venv/bin/python benchmarks/bench_autopilot.py [--budget 15m] [--datasets fraud adult]

Data: vehicle_insurance_fraud (FraudFound_P; recall at 0.5 precision) and Adult (income; ROC AUC),
seeded stratified 80/20 split into DATA and TEST. The autopilot gets DATA and splits off 25% of it as
its validation (selection) rows; (a), (b) and (c) all train the same judge (HistGradientBoosting,
seed 0) on the same real training rows (DATA minus those validation rows), plus synthetic rows for
(b) and (c) at the objective's synthetic share (b: 0.5; c: as searched), and are scored on TEST, which
no model and no search ever saw. Prints one JSON line per case and one summary line per dataset
with the issue's targets: (c) >= (a) + 0.03 on fraud, (c) >= (b) on both, DCR share of (c) in 0.50 +- 0.03.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

from synthloop.evaluate.privacy import exact_copy_rate, privacy_figures  # noqa: E402
from synthloop.refine.autopilot import Autopilot, parse_budget, split_data  # noqa: E402
from synthloop.refine.objective import Judge, training_table  # noqa: E402
from synthloop.refine.targets import parse_targets  # noqa: E402
from synthloop.schema import infer_schema  # noqa: E402
from synthloop.synthesizers.factory import make_synthesizer  # noqa: E402

SEED = 0
DATASETS = {
    "fraud": {"path": DATA / "vehicle_insurance_fraud" / "fraud_oracle.csv", "target": "FraudFound_P",
              "metric": "recall_at_precision", "positive": "1"},
    "adult": {"path": DATA / "adult" / "adult.csv.gz", "target": "income", "metric": "roc_auc", "positive": ">50K"},
}


def load(name: str) -> pd.DataFrame:
    d = DATASETS[name]
    df = pd.read_csv(d["path"], skipinitialspace=True)
    if name == "adult":
        df["income"] = df["income"].astype(str).str.rstrip(".")
    return df


def stratified_split(df: pd.DataFrame, target: str, share: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    test = np.zeros(len(df), dtype=bool)
    for _, idx in pd.Series(np.arange(len(df))).groupby(df[target].astype(str).to_numpy()):
        idx = rng.permutation(idx.to_numpy())
        test[idx[: int(round(len(idx) * share))]] = True
    return df[~test].reset_index(drop=True), df[test].reset_index(drop=True)


def privacy(train: pd.DataFrame, synth: pd.DataFrame, test: pd.DataFrame, schema) -> dict:
    p = privacy_figures(train, synth, test, schema, max_rows=5000, max_reference=5000, random_state=SEED, attack=True)
    return {"dcr_share": round(p["dcr_share"], 4), "mia_auc": round(p.get("mia_auc", float("nan")), 4),
            "exact_copy_rate": round(exact_copy_rate(train, synth, schema), 4)}


def run(name: str, budget_s: float, work: Path, fit_seconds: float | None = None,
        ap_seconds: list[float] | None = None, dcr_floor: tuple[float, float] = (0.47, 0.53),
        b_value: float | None = None) -> list[dict]:
    d = DATASETS[name]
    df = load(name)
    data, test = stratified_split(df, d["target"], 0.2, SEED)
    tg = parse_targets({
        "seed": SEED,
        "objective": {"target": d["target"], "metric": d["metric"], "precision": 0.5, "positive": d["positive"],
                      "mode": "augment", "synthetic_share": 0.5, "validation_share": 0.25, "folds": 3, "seed": SEED},
        "autopilot": {"models": ["copula", "autoregressive"], "floors": {"dcr_share": {"min": dcr_floor[0], "max": dcr_floor[1]}},
                      **({"seconds": ap_seconds} if ap_seconds else {})},
    }, "bench")
    schema = infer_schema(data)
    sp = split_data(data, tg.objective, schema)
    test_judge = Judge(tg.objective, schema, test)
    base = {"bench": "autopilot", "dataset": name, "rows_data": len(data), "rows_train": len(sp.train),
            "rows_validation": len(sp.validation), "rows_test": len(test), "seed": SEED, "metric": d["metric"]}
    rows = []
    # (a) real only
    a = test_judge.score(sp.train)["score"]
    rows.append({**base, "case": "a_real_only", "value": round(a, 4)})
    print(json.dumps(rows[-1]), flush=True)
    # (b) default model, no search: `--model auto` with its scaled budget, synthetic share 0.5
    if b_value is None:
        t0 = time.perf_counter()
        synth = make_synthesizer("auto", SEED, shape=sp.train.shape, max_seconds=fit_seconds)
        synth.fit(sp.train, schema)
        n_b = len(sp.train)  # share 0.5 of the training set
        syn_b = synth.sample(n_b, seed=SEED)
        b = test_judge.score(training_table(tg.objective, sp.train, syn_b))["score"]
        rows.append({**base, "case": "b_real_plus_default", "model": synth.name, "fit_budget_s": getattr(synth, "max_seconds", None),
                     "seconds": round(time.perf_counter() - t0, 1), "value": round(b, 4), **privacy(sp.train, syn_b, test, schema)})
        print(json.dumps(rows[-1]), flush=True)
    else:
        b = b_value  # (b) taken from an earlier run of this script (--b-value), not refitted
    # (c) autopilot
    t0 = time.perf_counter()
    journal = work / f"{name}.journal"
    for p in work.glob(f"{name}.journal*"):
        p.unlink()
    ap = Autopilot(tg, budget_s, journal, log=lambda s: print(f"  [{name}] {s}", file=sys.stderr, flush=True))
    res = ap.run(data)
    if res.best is None:
        rows.append({**base, "case": "c_real_plus_autopilot", "budget_s": budget_s, "value": None, "note": "no feasible trial"})
        print(json.dumps(rows[-1]), flush=True)
        return rows
    c = test_judge.score(res.training)["score"]
    bt = res.best
    rows.append({**base, "case": "c_real_plus_autopilot", "budget_s": budget_s, "seconds": round(time.perf_counter() - t0, 1),
                 "trials": len(res.trials), "best_trial": bt["number"],
                 "best_params": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in bt["params"].items()},
                 "validation_value": round(bt["figures"]["score"], 4),
                 "validation_real_only": round(res.baseline["real_only"]["score"], 4), "dcr_floor": list(dcr_floor),
                 "validation_dcr_share": round(bt["figures"]["dcr_share"], 4), "value": round(c, 4),
                 **privacy(sp.train, res.data, test, schema)})
    print(json.dumps(rows[-1]), flush=True)
    summary = {**base, "case": "summary", "b_from_earlier_run": b_value is not None, "a": round(a, 4), "b": round(b, 4), "c": round(c, 4),
               "c_minus_a": round(c - a, 4), "c_minus_b": round(c - b, 4),
               "target_c_ge_b": bool(c >= b), "target_dcr_within_0.5+-0.03": bool(abs(rows[-1]["dcr_share"] - 0.5) <= 0.03)}
    if name == "fraud":
        summary["target_c_ge_a_plus_0.03"] = bool(c >= a + 0.03)
    rows.append(summary)
    print(json.dumps(summary), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="15m", help="autopilot budget per dataset (issue: 15m)")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--fit-seconds", type=float, default=None, help="(b): fit budget (default: auto's, scaled to the table)")
    ap.add_argument("--ap-seconds", type=float, nargs=2, default=None, help="(c): range of trained models' fit budgets")
    ap.add_argument("--dcr-floor", type=float, nargs=2, default=(0.47, 0.53), help="(c): the DCR share floor [min max]")
    ap.add_argument("--b-value", type=float, default=None, help="reuse (b) from an earlier run instead of refitting it (one dataset)")
    ap.add_argument("--work", default="/tmp/synthloop-bench-autopilot", help="folder for the journals")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        run(name, parse_budget(args.budget), work, args.fit_seconds, args.ap_seconds, tuple(args.dcr_floor), args.b_value)


if __name__ == "__main__":
    main()
