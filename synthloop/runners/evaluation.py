"""Evaluating a synthetic table too large for one process: a partitioned dataset (a folder of Parquet
parts, as `synthloop sample -o FOLDER` writes).

Column shapes are computed over every row by map-reduce, exactly as `quality_score` would on the
whole table: per partition, each continuous column's values are counted against the sorted real
values (how many equal each real value, how many fall in each gap between two), which is all the
two-sample KS statistic needs; each categorical column's values are counted. The counts add up
across partitions. Pair trends, exact copies, DCR share and detection need rows side by side: they
run on a seeded sample of the synthetic rows (drawn partition by partition, sizes allocated in
proportion to the partitions' rows), and the figures say so (`scale` in the result).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloop.errors import DataError
from synthloop.runners.base import LocalRunner, Runner

DEFAULT_SAMPLE_ROWS = 50_000


def dataset_parts(folder: str | Path) -> list[tuple[Path, int]]:
    """(file, rows) of every part: from the manifest when synthloop wrote the folder, else every
    .parquet file in it (rows from the Parquet footers)."""
    import pyarrow.parquet as pq

    from synthloop.runners.sampling import dataset_files, read_manifest

    folder = Path(folder)
    if read_manifest(folder) is not None:
        files = dataset_files(folder)
    else:
        files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise DataError(f"{folder}: no Parquet parts found; expected a dataset folder written by `synthloop sample -o FOLDER`")
    return [(f, pq.ParquetFile(f).metadata.num_rows) for f in files]


def _real_axes(real: pd.DataFrame, schema: Any) -> dict[str, Any]:
    from synthloop.evaluate.quality import _CONTINUOUS, _DISCRETE, _KS_DECIMALS, _numeric

    axes: dict[str, Any] = {}
    for c in schema.columns:
        if c.kind in _CONTINUOUS:
            r = _numeric(real[c.name], c.kind, c.datetime_format)
            r = np.round(r[~np.isnan(r)], _KS_DECIMALS)
            axes[c.name] = ("ks", c.kind, c.datetime_format, np.unique(r), np.sort(r))
        elif c.kind in _DISCRETE:
            axes[c.name] = ("tv", c.kind, None, None, None)
    return axes


def _map_partition(shared: dict[str, Any], part: tuple[str, int, int]) -> dict[str, Any]:
    """Counts for the column shapes, plus this partition's share of the seeded sample."""
    from synthloop.evaluate.quality import _KS_DECIMALS, _numeric

    path, index, take = part
    df = pd.read_parquet(path, columns=list(shared["axes"]))
    out: dict[str, Any] = {"rows": len(df), "counts": {}}
    for name, (how, kind, fmt, uniq, _) in shared["axes"].items():
        if how == "ks":
            s = _numeric(df[name], kind, fmt)
            s = np.round(s[~np.isnan(s)], _KS_DECIMALS)
            idx = np.searchsorted(uniq, s, side="left")
            eq = idx < uniq.size
            eq[eq] = uniq[idx[eq]] == s[eq]
            out["counts"][name] = (np.bincount(idx[eq], minlength=uniq.size),  # equal to real value k
                                   np.bincount(idx[~eq], minlength=uniq.size + 1))  # in the gap below real value k
        else:
            col = df[name].dropna()
            out["counts"][name] = col.astype(object).value_counts().to_dict()
    if take:
        rng = np.random.default_rng([shared["seed"], index])
        rows = np.sort(rng.choice(len(df), size=min(take, len(df)), replace=False))
        out["sample"] = pd.read_parquet(path).iloc[rows].reset_index(drop=True)
    return out


def _ks_from_counts(real_sorted: np.ndarray, uniq: np.ndarray, eq: np.ndarray, gap: np.ndarray) -> float:
    """1 - KS between the real values and a synthetic column known only by its counts (exact)."""
    n_s = int(eq.sum() + gap.sum())
    if real_sorted.size == 0 or n_s == 0:
        return float("nan")
    f_r = np.searchsorted(real_sorted, uniq, side="right") / real_sorted.size  # F_real at each real value
    lt = np.cumsum(gap[:-1]) + np.r_[0, np.cumsum(eq)[:-1]]  # synthetic values < real value k
    le = lt + eq
    d_at = np.abs(f_r - le / n_s)  # at the real values
    f_before = np.r_[0.0, f_r[:-1]]  # F_real just below real value k
    d_gap = np.abs(f_before - lt / n_s) * (gap[:-1] > 0)  # at the last synthetic value of each gap
    return float(1.0 - max(d_at.max(initial=0.0), d_gap.max(initial=0.0)))


def evaluate_dataset(real: pd.DataFrame, folder: str | Path, holdout: pd.DataFrame | None, schema: Any,
                     runner: Runner | None = None, sample_rows: int = DEFAULT_SAMPLE_ROWS, seed: int = 0) -> dict[str, Any]:
    """The headline figures for a partitioned synthetic dataset (see module docstring)."""
    from synthloop.evaluate.headline import evaluate_tables

    runner = runner or LocalRunner()
    parts = dataset_parts(folder)
    sizes = np.array([r for _, r in parts], dtype=np.int64)
    total = int(sizes.sum())
    k = min(int(sample_rows), total)
    takes = np.random.default_rng([seed, 0x5A3]).multivariate_hypergeometric(sizes, k) if k < total else sizes
    axes = _real_axes(real, schema)
    missing = [c for c in schema.names if c not in pd.read_parquet(parts[0][0]).columns]
    if missing:
        raise DataError(f"{folder}: the synthetic dataset lacks column '{missing[0]}' of the real table")
    shared = {"axes": axes, "seed": seed}
    counts: dict[str, Any] = {}
    samples: list[pd.DataFrame] = []
    rows = 0
    for res in runner.map(_map_partition, [(str(p), i, int(t)) for i, ((p, _), t) in enumerate(zip(parts, takes))], shared):
        rows += res["rows"]
        for name, c in res["counts"].items():
            if name not in counts:
                counts[name] = c
            elif isinstance(c, dict):
                for v, m in c.items():
                    counts[name][v] = counts[name].get(v, 0) + m
            else:
                counts[name] = (counts[name][0] + c[0], counts[name][1] + c[1])
        if "sample" in res:
            samples.append(res["sample"])
    sample = pd.concat(samples, ignore_index=True)
    fig = evaluate_tables(real, sample, holdout, schema)
    shapes = []
    for name, (how, kind, fmt, uniq, real_sorted) in axes.items():
        if how == "ks":
            score = _ks_from_counts(real_sorted, uniq, *counts[name])
            shapes.append({"column": name, "metric": "KSComplement", "score": score})
        else:
            r = real[name].dropna().astype(object).value_counts(normalize=True)
            s = pd.Series(counts[name], dtype=float)
            s = s / s.sum() if s.sum() else s
            pr, ps = r.align(s, fill_value=0.0)
            shapes.append({"column": name, "metric": "TVComplement",
                           "score": float(1.0 - 0.5 * np.abs(pr - ps).sum()) if len(r) and len(s) else float("nan")})
    shape_score = float(np.nanmean([s["score"] for s in shapes])) if shapes else float("nan")
    fig["column_shapes_sample"] = fig["column_shapes"]
    fig["column_shapes"] = shape_score
    pair = fig["column_pair_trends"]
    fig["quality_score"] = float(np.nanmean([shape_score, pair])) if not (np.isnan(shape_score) and np.isnan(pair)) else float("nan")
    fig["rows_synthetic"] = total
    fig["details"]["shapes"] = shapes
    fig["scale"] = {
        "partitions": len(parts), "rows": total, "sample_rows": int(len(sample)), "sample_seed": seed,
        "note": (f"column shapes over all {total:,} synthetic rows (map-reduce over {len(parts)} partitions); "
                 f"pair trends, exact copies and DCR share on a seeded sample of {len(sample):,} rows (seed {seed})"),
        **runner.describe(),
    }
    if rows != total:
        raise DataError(f"{folder}: the parts hold {rows:,} rows but their footers say {total:,}; a part changed while reading")
    return fig
