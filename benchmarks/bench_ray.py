"""Ray scale-out benchmark: the same work locally and on Ray with 1 and 2 workers, in ONE run.

One command: `python benchmarks/bench_ray.py [--quick]` (full: 20 million Adult rows; --quick: 1
million, fewer LLM rows and epochs, for a check in a few minutes). Prints one JSON line per case:

1. `sample`: a Gaussian copula fitted on Adult (48,842 rows, seed 0) draws N rows into a partitioned
   Parquet dataset (shards of 1,000,000 rows, seed 7): locally (LocalRunner, this process), then on
   Ray with 1 and 2 workers; rows/s each, whether all three datasets hold the same rows, Ray's
   overhead at 1 worker as a share of the local time (target < 0.15) and the scaling efficiency from 1
   to 2 workers = t1 / (2 x t2) (target >= 0.8).
2. `generate`: the card_transactions example (examples/prompted) with the embedded SmolLM2-135M model
   (one llama.cpp thread per actor, no cache): locally, then on 1 and 2 Ray actors; rows/s each,
   valid rows, the same two ratios.
3. `fit`: the autoregressive model on Adult (30,000 training rows, 3 epochs, seed 0, one torch
   thread per process): locally, then
   with Ray Train (DDP) on 1 and 2 workers; seconds, and the quality score of 10,000 sampled rows
   against the held-out real rows (SDMetrics' definitions), beside the local fit's.
4. `capacity`: per-worker throughput measured above and what 10 and 100 workers would give at the
   measured 1 -> 2 efficiency (a linear projection; docs/scale.md says where it stops).

Every row carries `conditions` (cores, load average at start): on a shared machine the ratios,
not the absolute figures, are what to read, and even they are noisy when other jobs run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

ADULT = ROOT.parent / "shared" / "data" / "adult" / "adult.csv.gz"
if not ADULT.exists():
    ADULT = Path("/work/shared/data/adult/adult.csv.gz")
SPEC = ROOT / "examples" / "prompted" / "card_transactions.yaml"


def conditions() -> dict:
    return {"cores": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
            "note": "shared machine: other jobs ran at the same time" if os.getloadavg()[0] > 1.5 else "quiet machine"}


def emit(row: dict) -> None:
    print(json.dumps(row, default=str), flush=True)


def dataset_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("part-*.parquet")):
        df = pd.read_parquet(f)
        h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def ratios(t_local: float, t1: float, t2: float) -> dict:
    return {"ray_overhead_share_1_worker": round((t1 - t_local) / t_local, 4),
            "scaling_efficiency_1_to_2": round(t1 / (2 * t2), 4),
            "targets": {"overhead_lt": 0.15, "efficiency_ge": 0.8},
            "met": {"overhead": (t1 - t_local) / t_local < 0.15, "efficiency": t1 / (2 * t2) >= 0.8}}


def bench_sample(rows: int, shard_rows: int, work: Path) -> dict:
    from synthloop.runners import LocalRunner, RayRunner
    from synthloop.runners.sampling import sample_to_dataset
    from synthloop.synthesizers.copula import GaussianCopulaSynthesizer

    real = pd.read_csv(ADULT)
    model = work / "copula.npz"
    GaussianCopulaSynthesizer(random_state=0).fit(real).save(model)
    times, digests = {}, {}
    for name, runner in [("local", LocalRunner()), ("ray_1", RayRunner(workers=1)), ("ray_2", RayRunner(workers=2))]:
        out = work / f"sample_{name}"
        t0 = time.perf_counter()
        man = sample_to_dataset(model, rows, out, seed=7, shard_rows=shard_rows, runner=runner, fresh=True)
        times[name] = time.perf_counter() - t0
        assert man["complete"]
        digests[name] = dataset_digest(out)
        shutil.rmtree(out)
    return {"case": "sample", "dataset": "adult", "model": "copula", "rows": rows, "shard_rows": shard_rows, "seed": 7,
            "seconds": {k: round(v, 2) for k, v in times.items()},
            "rows_per_s": {k: round(rows / v) for k, v in times.items()},
            "rows_per_s_per_worker": {"local": round(rows / times["local"]), "ray_1": round(rows / times["ray_1"]),
                                      "ray_2": round(rows / times["ray_2"] / 2)},
            "same_rows": len(set(digests.values())) == 1, **ratios(times["local"], times["ray_1"], times["ray_2"])}


def bench_generate(rows: int) -> dict:
    from synthloop.generate.runner import PromptedGenerator
    from synthloop.runners import RayRunner
    from synthloop.spec import load_spec

    spec = load_spec(SPEC)
    spec = spec.model_copy(update={"llm": spec.llm.model_copy(update={"threads": 1})})
    times, valid, frames = {}, {}, {}
    for name, runner in [("local", None), ("ray_1", RayRunner(workers=1)), ("ray_2", RayRunner(workers=2))]:
        gen = PromptedGenerator(spec, cache_dir=False, runner=runner)  # every time includes loading the model(s)
        t0 = time.perf_counter()
        res = gen.generate(rows)
        times[name] = time.perf_counter() - t0
        valid[name] = res.summary["rows_written"]
        frames[name] = res.data
    same = all(frames["local"].equals(frames[k]) for k in ("ray_1", "ray_2"))
    return {"case": "generate", "spec": "card_transactions", "backend": "embedded SmolLM2-135M, 1 thread per worker",
            "rows": rows, "seconds": {k: round(v, 2) for k, v in times.items()},
            "rows_per_s": {k: round(rows / v, 3) for k, v in times.items()},
            "rows_per_s_per_worker": {"local": round(rows / times["local"], 3), "ray_1": round(rows / times["ray_1"], 3),
                                      "ray_2": round(rows / times["ray_2"] / 2, 3)},
            "valid_rows": valid, "same_rows_as_local": same,
            **ratios(times["local"], times["ray_1"], times["ray_2"])}


def bench_fit(train_rows: int, epochs: int) -> dict:
    from synthloop.evaluate.headline import evaluate_tables
    from synthloop.runners import RayRunner
    from synthloop.runners.training import fit_distributed
    from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer

    real = pd.read_csv(ADULT).sample(frac=1.0, random_state=0).reset_index(drop=True)
    train, hold = real.iloc[:train_rows], real.iloc[train_rows:train_rows + 10_000]
    times, quality = {}, {}
    for name, runner in [("local", None), ("ray_1", RayRunner(workers=1)), ("ray_2", RayRunner(workers=2))]:
        # one torch thread everywhere: a Ray Train worker runs one, so local vs 1 worker compares like with like
        synth = AutoregressiveSynthesizer(epochs=epochs, random_state=0, patience=epochs, n_threads=1)
        t0 = time.perf_counter()
        if runner is None:
            synth.fit(train)
        else:
            fit_distributed(synth, train, runner)
        times[name] = time.perf_counter() - t0
        quality[name] = round(evaluate_tables(hold, synth.sample(10_000, seed=1), None, synth.schema_)["quality_score"], 4)
    samples = train_rows * 0.9 * epochs  # the validation tenth is not trained on
    return {"case": "fit", "dataset": "adult", "model": "autoregressive", "train_rows": train_rows, "epochs": epochs,
            "seconds": {k: round(v, 2) for k, v in times.items()},
            "samples_per_s": {k: round(samples / v) for k, v in times.items()},
            "samples_per_s_per_worker": {"local": round(samples / times["local"]), "ray_1": round(samples / times["ray_1"]),
                                         "ray_2": round(samples / times["ray_2"] / 2)},
            "quality": quality, "quality_gap_ray_2_vs_local": round(abs(quality["ray_2"] - quality["local"]), 4),
            **ratios(times["local"], times["ray_1"], times["ray_2"])}


def capacity(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        per = r.get("rows_per_s_per_worker") or r.get("samples_per_s_per_worker")
        eff = min(max(r["scaling_efficiency_1_to_2"], 0.0), 1.0)
        unit = "samples/s" if r["case"] == "fit" else "rows/s"
        one = per["ray_1"]
        # a linear projection at the measured efficiency; docs/scale.md says where it stops holding
        out[r["case"]] = {"unit": unit, "per_worker_ray_1": one, "efficiency_1_to_2": eff,
                          "workers_10": round(one * 10 * eff, 2), "workers_100": round(one * 100 * eff, 2)}
    return {"case": "capacity", "projection": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1M rows, 6 LLM rows, 1 epoch on 5,000 rows: a check in minutes")
    ap.add_argument("--rows", type=int, default=None, help="sampling rows (default 20,000,000; --quick 1,000,000)")
    ap.add_argument("--llm-rows", type=int, default=None, help="generated rows (default 24; --quick 6)")
    ap.add_argument("--cases", default="sample,generate,fit")
    args = ap.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 20_000_000)
    shard_rows = 250_000 if args.quick else 1_000_000
    llm_rows = args.llm_rows or (6 if args.quick else 24)
    train_rows, epochs = (5_000, 1) if args.quick else (30_000, 3)
    import ray

    cond = conditions()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    done: list[dict] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
            for case in args.cases.split(","):
                t0 = time.perf_counter()
                if case == "sample":
                    row = bench_sample(rows, shard_rows, Path(tmp))
                elif case == "generate":
                    row = bench_generate(llm_rows)
                elif case == "fit":
                    row = bench_fit(train_rows, epochs)
                else:
                    raise SystemExit(f"unknown case {case}")
                row.update(quick=args.quick, ray=ray.__version__, conditions=cond,
                           loadavg_1m_after=round(os.getloadavg()[0], 2),
                           bench_seconds=round(time.perf_counter() - t0, 1))
                emit(row)
                done.append(row)
        if done:
            emit({**capacity(done), "quick": args.quick, "conditions": cond})
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
