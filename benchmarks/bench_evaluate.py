"""Issue 5 benchmark: the full synthloop report vs SDMetrics' QualityReport + DCR privacy metrics.

For adult (48,842 rows) and diabetes_130_hospitals (101,766 rows): the real table is split 80/20 into
training rows and a holdout (seed 0); synthloop's GaussianCopulaSynthesizer learns the training rows
and samples as many. Timed (fit not counted):
- ours: `synthloop.evaluate(train, synth, holdout=..., target=..., protected=[...])` with schema
  inference, quality, detection, utility, privacy (5,000 synthetic rows against 10,000-row references,
  NNDR, membership attack), fairness, coverage, plots, plus writing report.html and report.json;
- peer: sdmetrics QualityReport on the full tables + DCRBaselineProtection + DCROverfittingProtection
  with 1,000-row subsamples (their pandas cross-join is too slow for more);
- ours doing the peer's work only (quality_score + DCR figures on the same 1,000-row subsamples).
Agreement of shared figures: quality score and its two properties (full tables), and, on identical
1,000-row subsamples, DCROverfittingProtection, its share closer to training, and the median DCR of
synthetic rows to real rows (DCRBaselineProtection's breakdown). One JSON line per case.
Run: `flock /tmp/synthloop-bench.lock .venv/bin/python benchmarks/bench_evaluate.py [adult|diabetes] [--rows N]`
(`--rows N` takes the first N rows of each table: a quick check of the script, not a measurement).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CASES = {
    "adult": (DATA / "adult" / "adult.csv.gz", "income", ["sex", "race", "age"]),
    "diabetes_130_hospitals": (DATA / "diabetes_130_hospitals" / "diabetic_data.csv.gz", "readmitted", ["race", "gender", "age"]),
}
SEED = 0
PEER_SUBSAMPLE = 1_000


PAIR_SUBSAMPLE = 50_000  # SDMetrics' num_rows_subsample for pair metrics on larger tables


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def _ratio(ours: float, peer: float) -> float | None:
    return round(peer / ours, 2) if ours > 0 else None


def main(only: list[str], rows: int | None = None) -> int:
    from sdmetrics.reports.single_table import QualityReport
    from sdmetrics.single_table import DCRBaselineProtection, DCROverfittingProtection

    import synthloop.evaluate as ev
    from synthloop import GaussianCopulaSynthesizer, infer_schema
    from synthloop.evaluate.privacy import privacy_figures
    from synthloop.evaluate.quality import quality_score

    for name, (path, target, protected) in CASES.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        if not path.exists():
            emit({"benchmark": "evaluate", "dataset": name, "skipped": f"{path} not found"})
            continue
        real = pd.read_csv(path, low_memory=False)
        if rows:
            real = real.iloc[:rows]
        rng = np.random.default_rng(SEED)
        idx = rng.permutation(len(real))
        cut = int(0.8 * len(real))
        train, holdout = real.iloc[idx[:cut]].reset_index(drop=True), real.iloc[idx[cut:]].reset_index(drop=True)
        schema = infer_schema(train)
        synth = GaussianCopulaSynthesizer().fit(train, schema).sample(len(train), seed=SEED)
        base = {"benchmark": "evaluate", "dataset": name, "rows": len(real), "rows_train": len(train),
                "rows_synthetic": len(synth), "rows_holdout": len(holdout), "seed": SEED, "cpus": os.cpu_count()}

        # ours: the full report, schema inference and file writing included
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = ev.evaluate(train, synth, holdout=holdout, target=target, protected=protected, seed=SEED)
            result.to_html(Path(tmp) / "report.html")
            result.to_json(Path(tmp) / "report.json")
            ours_s = time.perf_counter() - t0
            html_mb = (Path(tmp) / "report.html").stat().st_size / 2 ** 20

        # peer: SDMetrics QualityReport (full tables) + DCR metrics on 1,000-row subsamples
        meta = schema.to_sdv_metadata()
        sub = np.random.default_rng(SEED + 1)
        n_sub = min(len(train), len(synth), len(holdout), PEER_SUBSAMPLE)  # equal sizes, as DCR needs
        pick = lambda df: df.iloc[np.sort(sub.choice(len(df), n_sub, replace=False))].reset_index(drop=True)  # noqa: E731
        tr_s, sy_s, ho_s = pick(train), pick(synth), pick(holdout)
        t0 = time.perf_counter()
        report = QualityReport()
        report.generate(train, synth, meta, verbose=False)
        quality_peer_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        base_peer = DCRBaselineProtection.compute_breakdown(tr_s, sy_s, meta, None)
        over_peer = DCROverfittingProtection.compute_breakdown(tr_s, sy_s, ho_s, meta, None)
        dcr_peer_s = time.perf_counter() - t1
        peer_s = quality_peer_s + dcr_peer_s

        # ours doing only the peer's work, on the same rows
        t0 = time.perf_counter()
        q = quality_score(train, synth, schema)
        ours_priv = privacy_figures(tr_s, sy_s, ho_s, schema, max_rows=PEER_SUBSAMPLE, max_reference=PEER_SUBSAMPLE, attack=False)
        same_work_s = time.perf_counter() - t0

        t = result["timings_s"]
        emit({**base, "case": "full_report_seconds", "ours_s": round(ours_s, 2), "peer_s": round(peer_s, 2),
              "peer_parts_s": {"quality_report": round(quality_peer_s, 2), "dcr_metrics_1000_rows": round(dcr_peer_s, 2)},
              "ratio_peer_over_ours": _ratio(ours_s, peer_s), "ours_parts_s": t, "under_60s": ours_s < 60,
              "report_html_mib": round(html_mb, 2),
              "note": "ours = every section (detection, utility, privacy at 5,000 x 10,000 rows, MIA, fairness, coverage, plots) + HTML/JSON; peer = quality + 2 DCR metrics at 1,000 rows"})
        emit({**base, "case": "same_work_seconds", "ours_s": round(same_work_s, 2), "peer_s": round(peer_s, 2),
              "ratio_peer_over_ours": _ratio(same_work_s, peer_s)})
        props = report.get_properties().set_index("Property")["Score"]
        shared = [("quality_score", q.score, report.get_score()),
                  ("column_shapes", q.column_shapes, props["Column Shapes"]),
                  ("column_pair_trends", q.column_pair_trends, props["Column Pair Trends"]),
                  ("dcr_overfitting_protection_1000", ours_priv["dcr_overfitting_protection"], over_peer["score"]),
                  ("closer_to_training_1000", ours_priv["closer_to_training"], over_peer["synthetic_data_percentages"]["closer_to_training"]),
                  ("median_dcr_synthetic_to_real_1000", ours_priv["median_dcr_train"], base_peer["median_DCR_to_real_data"]["synthetic_data"])]
        # above 50,000 rows SDMetrics scores pair trends on a fresh random 50,000-row subsample each run
        # (unseeded), so its full-table figure moves from run to run while ours uses every row; the
        # `_50000_rows` rows compare both on the same 50,000-row tables, where SDMetrics uses every row
        if len(train) > PAIR_SUBSAMPLE:
            pick50 = lambda df: df.iloc[np.sort(sub.choice(len(df), PAIR_SUBSAMPLE, replace=False))].reset_index(drop=True)  # noqa: E731
            tr50, sy50 = pick50(train), pick50(synth)
            q50 = quality_score(tr50, sy50, schema)
            r50 = QualityReport()
            r50.generate(tr50, sy50, meta, verbose=False)
            p50 = r50.get_properties().set_index("Property")["Score"]
            shared += [("quality_score_50000_rows", q50.score, r50.get_score()),
                       ("column_pair_trends_50000_rows", q50.column_pair_trends, p50["Column Pair Trends"])]
        for fig, ours_v, peer_v in shared:
            extra = {"peer_subsamples_pairs_to": PAIR_SUBSAMPLE} if len(train) > PAIR_SUBSAMPLE and fig in ("quality_score", "column_pair_trends") else {}
            emit({**base, "case": f"agreement:{fig}", "ours": round(float(ours_v), 6), "peer": round(float(peer_v), 6),
                  "abs_diff": round(abs(float(ours_v) - float(peer_v)), 6), "within_0_01": abs(float(ours_v) - float(peer_v)) <= 0.01, **extra})
        emit({**base, "case": "full_report_figures", "quality_score": result["fidelity"]["quality"]["quality_score"],
              "detection_auc": result["fidelity"]["detection"]["detection_auc"], "utility": result["utility"]["headline"],
              "dcr_share": result["privacy"]["dcr_share"], "mia_auc": result["privacy"]["mia_auc"],
              "nndr_median": result["privacy"]["nndr_median"], "category_coverage": result["coverage"]["category_coverage"],
              "range_coverage": result["coverage"]["range_coverage"]})
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    n_rows = int(args[args.index("--rows") + 1]) if "--rows" in args else None
    sys.exit(main([a for i, a in enumerate(args) if a != "--rows" and (i == 0 or args[i - 1] != "--rows")], n_rows))
