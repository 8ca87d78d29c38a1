"""Model-ready frames for the scikit-learn HistGradientBoosting models of detection, utility and fairness.

Numbers and datetimes become float columns (NaN kept: the models handle it natively); categories
become pandas `category` columns with one shared category list across all tables, so the native
categorical support of HistGradientBoosting sees the same codes everywhere. Columns with more than
`max_categories` categories keep the most frequent ones and pool the rest as "(other)", since the
models accept at most 255 categories per column.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import pandas as pd

from synthloop.schema import ColumnKind, TableSchema
from synthloop.schema.inference import naive_utc

CONTINUOUS = (ColumnKind.NUMERICAL, ColumnKind.DATETIME)
_OTHER = "(other)"


def learned_columns(schema: TableSchema, *frames: pd.DataFrame, exclude: tuple[str, ...] = ()) -> list:
    return [c for c in schema.columns if c.learned and c.name not in exclude and all(c.name in f.columns for f in frames)]


def to_numeric(series: pd.Series, kind: ColumnKind, fmt: str | None = None) -> np.ndarray:
    if kind == ColumnKind.DATETIME:
        dt = series if pd.api.types.is_datetime64_any_dtype(series) else pd.to_datetime(series.astype("string"), format=fmt, errors="coerce")
        out = naive_utc(dt).astype("datetime64[ns]").astype("int64").to_numpy().astype(float) / 1e9
        out[dt.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def model_frames(schema: TableSchema, frames: list[pd.DataFrame], exclude: tuple[str, ...] = (),
                 max_categories: int = 250) -> list[pd.DataFrame]:
    """The same feature columns for every frame (see module docstring); the first frame picks top categories."""
    cols = learned_columns(schema, *frames, exclude=exclude)
    outs: list[dict[str, object]] = [{} for _ in frames]
    for c in cols:
        if c.kind in CONTINUOUS:
            for o, f in zip(outs, frames):
                o[c.name] = to_numeric(f[c.name], c.kind, c.datetime_format)
            continue
        keys = [f[c.name].astype("string") for f in frames]
        top = keys[0].value_counts()
        cats = list(top.index[:max_categories])
        if len(top) > max_categories or any((~k.isin(cats) & k.notna()).any() for k in keys[1:]):
            cats.append(_OTHER)
        for o, k in zip(outs, keys):
            k = k.where(k.isna() | k.isin(cats), _OTHER)
            o[c.name] = pd.Categorical(k.to_numpy(dtype=object, na_value=None), categories=cats)
    return [pd.DataFrame(o, index=pd.RangeIndex(len(f))) for o, f in zip(outs, frames)]


@contextlib.contextmanager
def limited_threads(n: int = 1) -> Iterator[None]:
    """Cap OpenMP/BLAS (scikit-learn, SciPy) and torch threads for the duration.

    On a shared machine with more runnable jobs than cores, OpenMP worker threads that spin at
    barriers make HistGradientBoosting 10-60x slower; one thread per evaluation is the robust choice.
    """
    from threadpoolctl import threadpool_limits

    torch_threads = None
    try:
        import torch

        torch_threads = torch.get_num_threads()
        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)


def model_matrices(schema: TableSchema, frames: list[pd.DataFrame], exclude: tuple[str, ...] = (),
                   max_categories: int = 250) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """`model_frames` as float matrices (category codes, NaN = null) plus the categorical-column mask.

    HistGradientBoosting re-encodes pandas categories on every predict call, which costs more than
    the trees themselves; codes in a plain array skip that.
    """
    dfs = model_frames(schema, frames, exclude=exclude, max_categories=max_categories)
    names = list(dfs[0].columns)
    mask = np.array([isinstance(dfs[0][n].dtype, pd.CategoricalDtype) for n in names], dtype=bool)
    mats = []
    for df in dfs:
        m = np.empty((len(df), len(names)), dtype=np.float64)
        for j, n in enumerate(names):
            if mask[j]:
                codes = df[n].cat.codes.to_numpy().astype(np.float64)
                codes[codes < 0] = np.nan
                m[:, j] = codes
            else:
                m[:, j] = df[n].to_numpy(dtype=np.float64)
        mats.append(m)
    return mats, mask, names
