"""Issue 13 item 7 benchmark: the command line's start-up time, and a Gaussian-copula fit + sample of
Adult through the CLI (two processes, start-up and file I/O included) vs SDV 2.x's GaussianCopula in
one Python process (metadata detection, fit, sample; no process start, no files).

Adult: all 48,842 rows of ../shared/data/adult/adult.csv.gz, seed 0, sampling as many rows as the
table. Each timing is the median of `--repeats` runs. One JSON line per case. Run:
`python benchmarks/bench_cli.py` (or `make bench`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.csv.gz"
SEED = 0
CLI = [sys.executable, "-m", "synthloop.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return took


def median_wall(cmd: list[str], repeats: int) -> float:
    return statistics.median(wall(cmd) for _ in range(repeats))


def import_time_us(module: str) -> int:
    """Cumulative import time of `module` from `python -X importtime` (microseconds)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                          text=True, env=ENV, cwd=ROOT)
    for line in proc.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1])
    return -1


def startup(repeats: int, machine: dict) -> None:
    bare = median_wall([sys.executable, "-c", "pass"], repeats)
    imp = median_wall([sys.executable, "-c", "import synthloop.cli"], repeats)
    helps = median_wall(CLI + ["--help"], repeats)
    fit_help = median_wall(CLI + ["fit", "--help"], repeats)
    probe = ("import sys, synthloop.cli; print(','.join(m for m in ('pandas','numpy','scipy','sklearn','torch') "
             "if m in sys.modules))")
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, cwd=ROOT).stdout.strip()
    emit({"benchmark": "cli", "case": "startup", "repeats": repeats, "python_start_s": round(bare, 3),
          "import_synthloop_cli_s": round(imp, 3), "help_s": round(helps, 3), "fit_help_s": round(fit_help, 3),
          "import_synthloop_cli_importtime_ms": round(import_time_us("synthloop.cli") / 1000, 1),
          "heavy_modules_loaded_by_import": heavy or "none", "target_s": 0.5,
          "met": max(imp, helps, fit_help) < 0.5, **machine})


def copula_adult(repeats: int, machine: dict) -> None:
    import pandas as pd

    warnings.filterwarnings("ignore")
    real = pd.read_csv(ADULT)
    n = len(real)
    cli, ours, sdv = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        model, synth = Path(tmp) / "adult.npz", Path(tmp) / "synthetic.csv"
        for _ in range(repeats):
            t_fit = wall(CLI + ["fit", str(ADULT), "-o", str(model), "--model", "copula", "--seed", str(SEED)])
            t_sample = wall(CLI + ["sample", str(model), "-o", str(synth), "--seed", str(SEED)])
            cli.append((t_fit + t_sample, t_fit, t_sample))
        assert len(pd.read_csv(synth)) == n

    from synthloop import GaussianCopulaSynthesizer, infer_schema

    for _ in range(repeats):
        t0 = time.perf_counter()
        GaussianCopulaSynthesizer(random_state=SEED).fit(real, infer_schema(real)).sample(n, seed=SEED)
        ours.append(time.perf_counter() - t0)

    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer as SDVCopula

    for _ in range(repeats):
        t0 = time.perf_counter()
        metadata = Metadata.detect_from_dataframes({"adult": real})
        peer = SDVCopula(metadata)
        peer.fit({"adult": real})  # SDV 2.0 takes and returns {table name: DataFrame}
        peer.sample(n)
        sdv.append(time.perf_counter() - t0)
    total, fit_s, sample_s = (statistics.median(x[i] for x in cli) for i in range(3))
    emit({"benchmark": "cli", "case": "copula_fit_sample_adult", "dataset": "adult", "rows": n, "seed": SEED,
          "repeats": repeats,
          "ours_cli_two_processes_s": round(total, 2), "ours_cli_fit_s": round(fit_s, 2),
          "ours_cli_sample_s": round(sample_s, 2), "ours_in_process_s": round(statistics.median(ours), 2),
          "sdv_in_process_s": round(statistics.median(sdv), 2),
          "sdv_over_ours_cli": round(statistics.median(sdv) / total, 2),
          "sdv_over_ours_in_process": round(statistics.median(sdv) / statistics.median(ours), 2),
          "issue_quotes": "CLI 3.3 s, 2.2x faster than SDV in-process", **machine})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    machine = {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2), "python": platform.python_version()}
    startup(max(args.repeats, 5), machine)
    if not ADULT.exists():
        emit({"benchmark": "cli", "case": "copula_fit_sample_adult", "skipped": f"{ADULT} not found"})
        return 0
    try:
        import sdv  # noqa: F401
    except ImportError:
        emit({"benchmark": "cli", "case": "copula_fit_sample_adult", "skipped": "sdv not installed (pip install 'sdv>=2.0')"})
        return 0
    copula_adult(args.repeats, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
