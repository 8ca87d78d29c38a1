"""Issue 6 benchmark: the refinement loop on its three use cases, one JSON line each.

(a) adult: sex parity + user-chosen race shares, pair trends within 0.05 of the unsteered run;
(b) vehicle_insurance_fraud: fraud from 6% to 25% of rows, then a classifier trained on real +
    synthetic fraud rows vs real rows alone on a real holdout (mean over 5 stratified 70/30 splits;
    the "peer" of (b) is the real-only classifier, ratio = augmented / real-only). The augmented
    classifier is trained twice, synthetic rows unweighted and weighted to count as much as the real
    fraud rows; the headline uses usecases.HEADLINE, and both appear in `roc_auc` and
    `recall_at_90_precision`;
    (b_ar) is the same with the autoregressive model (fraud_targets_ar.yaml), for comparison;
(c) a prompted spec (samplers, no LLM) whose first run misses a 60/30/10 share and an amount range.
Each line: iterations used, wall seconds, every target's final value vs target. (a) and (c) have no
peer (no other library runs a targets loop), so their peer fields are null.
Run: `flock /tmp/synthloop-bench.lock python benchmarks/bench_refine.py`.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "refine"))

import usecases  # noqa: E402


def emit(row: dict) -> None:
    row = {"benchmark": "refine", **row, "machine": f"{platform.machine()} {os.cpu_count()} cpus", "torch_threads": 1}
    print(json.dumps(row, default=str), flush=True)


def main() -> None:
    import torch

    torch.set_num_threads(1)
    only = set(sys.argv[1:]) or {"a", "b", "c"}
    if "a" in only:
        emit({**usecases.run_a(), "peer": None, "ratio": None})
    for case, targets in (("b", "fraud_targets.yaml"), ("b_ar", "fraud_targets_ar.yaml")):
        if case not in only and not (case == "b_ar" and "b" in only):
            continue
        r = usecases.run_b(splits=5, targets=targets)
        d = r["downstream"]
        # keep the line readable: per split, (ROC AUC, recall at 90% precision) of each training
        d["per_split"] = [{"split": s["split"], "loop_seconds": s["loop_seconds"], "fraud_share": s["fraud_share"],
                           **{v: [s[v]["roc_auc"], None if s[v]["recall_at_90_precision"] is None else round(s[v]["recall_at_90_precision"], 4)]
                              for v in ("real_only", "augmented", "augmented_weighted")}} for s in d["per_split"]]
        emit({**r, "peer": {"name": "classifier trained on real rows only", d["metric"]: d["real_only"]}, "ratio": d["ratio"]})
    if "c" in only:
        emit({**usecases.run_c(), "peer": None, "ratio": None})


if __name__ == "__main__":
    main()
