"""Issue 2 benchmark: synthloop's Gaussian copula vs SDV 2.x GaussianCopulaSynthesizer, same machine, one run.

For adult (48,842 rows) and credit_default_taiwan (30,000 rows): fit seconds, seconds to sample as many
rows as the real table, and SDMetrics' QualityReport score of both outputs (scored with the metadata SDV
detects, so the peer is judged on its own terms). Then: seconds to sample 1,000,000 rows of the adult
schema. One JSON line per case, with ratios. Run: `python benchmarks/bench_copula.py` (or `make bench`).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DATASETS = {
    "adult": DATA / "adult" / "adult.csv.gz",
    "credit_default_taiwan": DATA / "credit_default_taiwan" / "credit_default_taiwan.csv",
}
SEED = 0


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def quality(real: pd.DataFrame, synth: pd.DataFrame, metadata: dict) -> tuple[float, float, float]:
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    report.generate(real, synth, metadata, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return float(report.get_score()), float(props["Column Shapes"]), float(props["Column Pair Trends"])


def main() -> int:
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer as SDVCopula

    from synthloop import GaussianCopulaSynthesizer, infer_schema

    machine = {"cpus": os.cpu_count(), "python": platform.python_version()}
    adult_model = None
    for name, path in DATASETS.items():
        if not path.exists():
            emit({"benchmark": "copula", "dataset": name, "skipped": f"{path} not found"})
            continue
        real = pd.read_csv(path)
        n = len(real)
        metadata = Metadata.detect_from_dataframes({name: real})
        meta_dict = metadata.to_dict()["tables"][name]

        t0 = time.perf_counter()
        schema = infer_schema(real)
        ours = GaussianCopulaSynthesizer(random_state=SEED).fit(real, schema)
        our_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        our_syn = ours.sample(n, seed=SEED)
        our_sample = time.perf_counter() - t0

        t0 = time.perf_counter()
        peer = SDVCopula(metadata)
        peer.fit({name: real})  # SDV 2.0 takes and returns {table name: DataFrame}
        sdv_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        sdv_syn = peer.sample(n)
        sdv_syn = next(iter(sdv_syn.values())) if isinstance(sdv_syn, dict) else sdv_syn
        sdv_sample = time.perf_counter() - t0

        our_q = quality(real, our_syn, meta_dict)
        sdv_q = quality(real, sdv_syn, meta_dict)
        our_total, sdv_total = our_fit + our_sample, sdv_fit + sdv_sample
        emit({
            "benchmark": "copula", "dataset": name, "rows": n, "seed": SEED, **machine,
            "ours_fit_s": round(our_fit, 3), "ours_sample_s": round(our_sample, 3),
            "sdv_fit_s": round(sdv_fit, 3), "sdv_sample_s": round(sdv_sample, 3),
            "speedup_fit_plus_sample": round(sdv_total / our_total, 1),
            "ours_quality": round(our_q[0], 4), "sdv_quality": round(sdv_q[0], 4),
            "ours_shapes": round(our_q[1], 4), "sdv_shapes": round(sdv_q[1], 4),
            "ours_pair_trends": round(our_q[2], 4), "sdv_pair_trends": round(sdv_q[2], 4),
            "quality_ratio": round(our_q[0] / sdv_q[0], 4),
            "targets_met": bool(sdv_total / our_total >= 10 and our_q[0] >= sdv_q[0]),
        })
        if name == "adult":
            adult_model = ours

    if adult_model is not None:
        adult_model.sample(10_000, seed=1)  # warm caches
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            big = adult_model.sample(1_000_000, seed=i)
            times.append(time.perf_counter() - t0)
        emit({"benchmark": "copula_sample_1M", "dataset": "adult", "rows": len(big), "seed": SEED, **machine,
              "ours_sample_s_best_of_3": round(min(times), 3), "ours_sample_s_all": [round(t, 3) for t in times],
              "target_s": 2.0, "target_met": bool(min(times) < 2.0)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
