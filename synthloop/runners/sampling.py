"""Sampling in shards: the same rows whatever runs them and however many workers there are.

Shard i holds rows [i * shard_rows, (i + 1) * shard_rows) and is drawn with a seed derived from
(seed, i) only (`BaseSynthesizer.sample_shard`), so one worker or thirty give the same rows, and a
single file written from the shards equals `synthloop sample` to that file. Quotas (exact shares of
categorical values) are turned into per-shard counts on the driver before anything is distributed
(largest-remainder counts over all rows, then split shard by shard by a seeded multivariate
hypergeometric draw), so they hold exactly over the whole output.

A dataset output is a folder of `part-NNNNN.parquet` files (one per shard, each written atomically
by the worker that drew it) plus `_manifest.json`, rewritten atomically after every finished shard:
an interrupted run resumes by skipping the shards the manifest lists (files present, sizes equal).
Readers (pyarrow.dataset, pandas.read_parquet, ray.data.read_parquet, DuckDB, Spark) see one table.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

from synthloop.errors import ConditionError, DataError
from synthloop.runners.base import LocalRunner, Runner

MANIFEST = "_manifest.json"
DATASET_FORMAT = "synthloop-dataset"
DATASET_VERSION = 1

_MODELS: dict[str, Any] = {}  # model sha256 -> loaded synthesizer, per worker process


def _model_payload(model: Any) -> tuple[str, bytes]:
    """(sha256, bytes) of the model file, so workers on any node load the same model."""
    if isinstance(model, (str, Path)):
        data = Path(model).read_bytes()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(model.save(Path(tmp) / "model.npz")).read_bytes()
    return hashlib.sha256(data).hexdigest(), data


def _load(payload: tuple[str, bytes]) -> Any:
    sha, data = payload
    if sha not in _MODELS:
        from synthloop.synthesizers import load_synthesizer

        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "model.npz"
            p.write_bytes(data)
            _MODELS.clear()  # one model per worker at a time
            _MODELS[sha] = load_synthesizer(p)
    return _MODELS[sha]


def check_quotas(quotas: Mapping[str, Mapping[Any, float]] | None, schema: Any,
                 conditions: Any = None) -> dict[str, dict[Any, float]]:
    """Quotas as {column: {value: share}} over categorical/boolean columns; shares >= 0 summing to 1."""
    from synthloop.schema import ColumnKind

    out: dict[str, dict[Any, float]] = {}
    for name, shares in (quotas or {}).items():
        if name not in schema:
            raise ConditionError(f"quota on unknown column '{name}'; columns are: {', '.join(schema.names)}")
        col = schema[name]
        if col.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            raise ConditionError(f"quota on '{name}': quotas fix shares of categorical or boolean columns, "
                                 f"and '{name}' is {col.kind.value}; use a condition COLUMN=LOW..HIGH instead")
        if isinstance(conditions, pd.DataFrame) or (conditions and name in conditions):
            raise ConditionError(f"quota on '{name}': the column is also conditioned; give one or the other")
        if not shares:
            raise ConditionError(f"quota on '{name}': no values given")
        vals = {}
        for v, s in shares.items():
            match = next((c for c in col.categories or [] if str(c) == str(v)), None)
            if match is None:
                raise ConditionError(f"quota {name}={v!r}: not a value the model learned; known values: "
                                     f"{', '.join(map(str, (col.categories or [])[:10]))}")
            if not (isinstance(s, (int, float)) and 0 <= float(s) <= 1):
                raise ConditionError(f"quota {name}={v!r}: share {s!r} must be a number between 0 and 1")
            vals[match] = float(s)
        total = sum(vals.values())
        if abs(total - 1.0) > 1e-6:
            raise ConditionError(f"quota on '{name}': shares sum to {total:g}; they must sum to 1")
        out[name] = vals
    return out


def plan_shards(n: int, shard_rows: int, base_seed: int, quotas: dict[str, dict[Any, float]] | None = None,
                known: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Every shard's (index, start, rows) and, with quotas, its exact per-value counts: all decided
    here, before distribution, from (n, shard_rows, seed) alone."""
    from synthloop.generate.samplers import quota_counts

    if shard_rows < 1:
        raise ConditionError("shard_rows must be at least 1")
    shards = [{"index": i, "start": s, "rows": min(shard_rows, n - s)} for i, s in enumerate(range(0, n, shard_rows))]
    for q, (name, shares) in enumerate((quotas or {}).items()):
        values = list(shares)
        left = quota_counts(np.array([shares[v] for v in values]), n).astype(np.int64)
        rng = np.random.default_rng([base_seed, 0x51A4D, q])
        for sh in shards:
            take = rng.multivariate_hypergeometric(left, sh["rows"]) if left.sum() > sh["rows"] else left.copy()
            left = left - take
            sh.setdefault("quotas", {})[name] = [values, take.tolist()]
    if known is not None:
        for sh in shards:
            sh["known"] = known.iloc[sh["start"]:sh["start"] + sh["rows"]].reset_index(drop=True)
    return shards


def _shard_conditions(shard: dict[str, Any], base_seed: int, conditions: Mapping[str, Any] | None) -> Any:
    """The shard's conditions: the known rows, or the constant conditions plus its quota columns
    (each value repeated its count, in an order seeded by (seed, shard))."""
    if "known" in shard:
        return shard["known"]
    if not shard.get("quotas"):
        return dict(conditions) if conditions else None
    m = shard["rows"]
    table = pd.DataFrame(index=pd.RangeIndex(m))
    for q, (name, (values, counts)) in enumerate(shard["quotas"].items()):
        rng = np.random.default_rng([base_seed, shard["index"], 0x51A4D, q])
        codes = np.repeat(np.arange(len(values)), counts)
        rng.shuffle(codes)
        vals = np.empty(len(values), dtype=object)
        vals[:] = values
        table[name] = vals[codes]
    for name, v in (conditions or {}).items():
        if isinstance(v, (tuple, list)):
            raise ConditionError(f"condition on '{name}': a range condition cannot be combined with quotas; "
                                 f"condition on single values")
        table[name] = [v] * m
    return table


def _draw_shard(shared: dict[str, Any], shard: dict[str, Any]) -> pd.DataFrame:
    """One shard's rows (runs on a worker)."""
    synth = _load(shared["model"])
    cond = _shard_conditions(shard, shared["base"], shared["conditions"])
    if shared["single"]:  # one shard, no quotas: exactly what `synthloop sample --seed S` draws
        return synth.sample(shard["rows"] if not isinstance(cond, pd.DataFrame) else None, seed=shared["seed"], conditions=cond)
    return synth.sample_shard(shard["index"], shard["start"], shard["rows"], shared["base"], cond)


def _write_shard(shared: dict[str, Any], shard: dict[str, Any]) -> dict[str, Any]:
    """Draw one shard and write it as its own Parquet file, atomically (runs on a worker)."""
    from synthloop.io import write_table

    t0 = time.perf_counter()
    df = _draw_shard(shared, shard)
    path = Path(shared["out_dir"]) / f"part-{shard['index']:05d}.parquet"
    write_table(df, path)
    return {"index": shard["index"], "file": path.name, "rows": int(len(df)), "bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - t0, 4), "worker": f"{os.uname().nodename}:{os.getpid()}"}


def _setup(model: Any, n: int | None, seed: int | None, conditions: Any, quotas: Any, shard_rows: int
           ) -> tuple[Any, int, int, dict[str, Any], list[dict[str, Any]]]:
    from synthloop.synthesizers import load_synthesizer
    from synthloop.synthesizers.base import MAX_SAMPLE_ROWS, _check_rows, _check_seed

    synth = load_synthesizer(model) if isinstance(model, (str, Path)) else model
    synth._check_fitted()
    n, known = synth._draw_size(n, conditions)
    shard_rows = _check_rows(shard_rows, MAX_SAMPLE_ROWS, "one shard holds")
    q = check_quotas(quotas, synth.schema_, conditions)
    if conditions is not None and known is None:
        synth._normalize_conditions(conditions, 1)  # a bad condition fails here, not on every worker
    base = int(synth._rng.integers(2**63)) if seed is None else _check_seed(seed)
    single = n <= shard_rows and not q
    shared = {"model": _model_payload(model), "base": base, "seed": base if seed is None else seed,
              "conditions": None if known is not None else (dict(conditions) if conditions else None), "single": single}
    return synth, n, base, shared, plan_shards(n, shard_rows, base, q, known)


def sample_to_file(model: Any, n: int | None, path: str | Path, seed: int | None = None, conditions: Any = None,
                   quotas: Mapping[str, Mapping[Any, float]] | None = None, shard_rows: int | None = None,
                   runner: Runner | None = None, on_batch: Callable[[int], None] | None = None) -> tuple[Path, int]:
    """Draw shards on `runner` and stream them, in order, to one file (atomically). Without quotas
    the rows equal `synthloop sample` with the same seed (and no runner)."""
    from synthloop.io import write_table_batches
    from synthloop.synthesizers.base import BATCH_ROWS

    _, _, _, shared, shards = _setup(model, n, seed, conditions, quotas, shard_rows or BATCH_ROWS)
    runner = runner or LocalRunner()
    return write_table_batches(runner.map(_draw_shard, shards, shared), path, on_batch=on_batch)


def _fingerprint(shared: dict[str, Any], n: int, shard_rows: int, quotas: Any, known: Any) -> str:
    known_hash = None
    if isinstance(known, pd.DataFrame):
        known_hash = hashlib.sha256(pd.util.hash_pandas_object(known, index=False).to_numpy().tobytes()).hexdigest()
    payload = json.dumps([shared["model"][0], n, shard_rows, shared["base"], shared["seed"], shared["single"],
                          shared["conditions"], quotas, known_hash], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    """The dataset's manifest, or None when the folder holds none."""
    p = Path(out_dir) / MANIFEST
    if not p.exists():
        return None
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{p}: not valid JSON ({exc}); delete the folder's {MANIFEST} (and its parts) or use --fresh") from None
    if not isinstance(m, dict) or m.get("format") != DATASET_FORMAT:
        raise DataError(f"{p}: not a synthloop dataset manifest")
    return m


def _write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    from synthloop.io import write_text

    write_text(json.dumps(manifest, indent=1, default=str) + "\n", out_dir / MANIFEST)


def sample_to_dataset(model: Any, n: int | None, out_dir: str | Path, seed: int | None = None, conditions: Any = None,
                      quotas: Mapping[str, Mapping[Any, float]] | None = None, shard_rows: int | None = None,
                      runner: Runner | None = None, fresh: bool = False,
                      on_shard: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Draw `n` rows as a partitioned Parquet dataset in `out_dir` (see module docstring); resumes an
    interrupted run of the same draw. Returns the manifest (plus this run's timing)."""
    from synthloop.synthesizers.base import BATCH_ROWS

    shard_rows = shard_rows or BATCH_ROWS
    synth, n, base, shared, shards = _setup(model, n, seed, conditions, quotas, shard_rows)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is a file; a dataset is written to a folder")
    out.mkdir(parents=True, exist_ok=True)
    q = check_quotas(quotas, synth.schema_, conditions)
    fp = _fingerprint(shared, n, shard_rows, q, conditions)
    existing = read_manifest(out)
    if existing is None and any(out.iterdir()):
        raise DataError(f"{out}: the folder holds files but no {MANIFEST}; a dataset is written to a new or empty folder "
                        f"(nothing was changed)")
    manifest = None if fresh else existing
    if manifest is not None and manifest.get("fingerprint") != fp:
        raise DataError(f"{out}: holds a dataset of another draw (other model, rows, seed, shard size, conditions or "
                        f"quotas); write to a new folder, or pass --fresh to replace it")
    if manifest is None:
        for old in out.glob("part-*.parquet"):  # only a synthloop dataset's parts (it had a manifest)
            old.unlink()
        manifest = {"format": DATASET_FORMAT, "version": DATASET_VERSION, "fingerprint": fp, "rows": n,
                    "shard_rows": shard_rows, "n_shards": len(shards), "seed": shared["seed"], "base_seed": base,
                    "model_sha256": shared["model"][0], "model": synth.name,
                    "columns": list(synth.schema_.names), "conditions": shared["conditions"],
                    "quotas": {k: {str(v): s for v, s in d.items()} for k, d in q.items()} or None,
                    "complete": False, "shards": {}}
    finished = {int(k): v for k, v in manifest["shards"].items()
                if (out / v["file"]).exists() and (out / v["file"]).stat().st_size == v["bytes"]}
    manifest["shards"] = {str(k): v for k, v in sorted(finished.items())}
    todo = [s for s in shards if s["index"] not in finished]
    runner = runner or LocalRunner()
    shared = dict(shared, out_dir=str(out.resolve()))
    t0 = time.perf_counter()
    for _, rec in runner.map(_write_shard, todo, shared, ordered=False):
        manifest["shards"][str(rec["index"])] = rec
        _write_manifest(out, manifest)
        if on_shard is not None:
            on_shard(rec)
    manifest["shards"] = {str(k): manifest["shards"][str(k)] for k in sorted(int(k) for k in manifest["shards"])}
    manifest["complete"] = len(manifest["shards"]) == len(shards)
    _write_manifest(out, manifest)
    manifest["run"] = {"seconds": round(time.perf_counter() - t0, 4), "shards_drawn": len(todo),
                       "shards_resumed": len(finished), **runner.describe()}
    return manifest


def dataset_files(out_dir: str | Path) -> list[Path]:
    """The parts of a finished dataset in shard order; an unfinished one is one error line."""
    m = read_manifest(out_dir)
    if m is None:
        raise DataError(f"{out_dir}: no {MANIFEST}; not a dataset written by synthloop")
    if not m.get("complete"):
        raise DataError(f"{out_dir}: the dataset is unfinished ({len(m['shards'])} of {m['n_shards']} shards); "
                        f"run the same `synthloop sample` command again to finish it")
    return [Path(out_dir) / m["shards"][str(i)]["file"] for i in range(m["n_shards"])]


def iter_dataset(out_dir: str | Path) -> Iterator[pd.DataFrame]:
    """The dataset's shards as DataFrames, in order (one in memory at a time)."""
    for f in dataset_files(out_dir):
        yield pd.read_parquet(f)
