"""Privacy figures: exact copies of training rows, and the DCR share against a holdout.

Rows are compared in a common feature space: numerical/datetime scaled to [0, 1] by the training
range (a null is its own coordinate), categories one-hot scaled so one mismatch costs 1 in squared
distance (Gower-like). Only learned columns count: ids and PII are regenerated, never copied.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from synthloop.schema import ColumnKind, TableSchema, infer_schema
from synthloop.transforms import TableCodec

_MAX_ONEHOT = 100


def _encoded(df: pd.DataFrame, codec: TableCodec) -> dict[str, np.ndarray]:
    return {c.name: codec.encode_column(c, df[c.name], strict=False) for c in codec.learned}


def row_keys(df: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    """One 64-bit hash per row over the learned columns (numbers rounded to the schema's decimals)."""
    codec = TableCodec(schema)
    enc = _encoded(df, codec)
    frame = pd.DataFrame({
        c.name: np.round(enc[c.name], c.decimals if c.decimals is not None else 9) if c.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME) else enc[c.name]
        for c in codec.learned
    })
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def exact_copy_rate(train: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema | None = None) -> float:
    """Share of synthetic rows identical to some training row."""
    schema = schema or infer_schema(train)
    return float(np.isin(row_keys(synthetic, schema), row_keys(train, schema)).mean())


def feature_matrix(df: pd.DataFrame, schema: TableSchema, reference: pd.DataFrame) -> np.ndarray:
    """Gower-like Euclidean features; scaling and category sets come from `reference` (training data)."""
    codec = TableCodec(schema)
    enc = _encoded(df, codec)
    ref = _encoded(reference, codec)
    parts = []
    for c in codec.learned:
        x, r = enc[c.name], ref[c.name]
        if c.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
            lo, hi = np.nanmin(r) if np.isfinite(r).any() else 0.0, np.nanmax(r) if np.isfinite(r).any() else 1.0
            scaled = (x - lo) / (hi - lo if hi > lo else 1.0)
            nan = np.isnan(scaled)
            parts.append(np.where(nan, 0.0, scaled)[:, None])
            if np.isnan(r).any() or nan.any():
                parts.append(nan[:, None].astype(float))
        else:
            counts = np.bincount(r[r >= 0], minlength=len(c.categories or [])) if (r >= 0).any() else np.zeros(1)
            keep = np.argsort(-counts)[:_MAX_ONEHOT]
            lut = np.full(max(len(c.categories or []), 1) + 1, len(keep))  # other / missing -> one shared slot
            lut[keep] = np.arange(len(keep))
            idx = lut[np.where(x >= 0, x, -1)]
            onehot = np.zeros((x.size, len(keep) + 1))
            onehot[np.arange(x.size), idx] = np.sqrt(0.5)
            parts.append(onehot)
    return np.hstack(parts) if parts else np.zeros((len(df), 0))


def dcr_share(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema | None = None,
              max_rows: int = 10_000, random_state: int = 0) -> dict[str, float]:
    """Share of synthetic rows closer to a training row than to a holdout row (0.5 is ideal).

    The training set is subsampled to the holdout's size so that both sides have equal chances;
    ties count one half. At most `max_rows` synthetic rows are queried.
    """
    schema = schema or infer_schema(train)
    rng = np.random.default_rng(random_state)
    n_hold = min(len(holdout), len(train))
    tr = train.iloc[rng.choice(len(train), n_hold, replace=False)] if len(train) > n_hold else train
    ho = holdout.iloc[rng.choice(len(holdout), n_hold, replace=False)] if len(holdout) > n_hold else holdout
    sy = synthetic.iloc[rng.choice(len(synthetic), max_rows, replace=False)] if len(synthetic) > max_rows else synthetic
    xt, xh, xs = (feature_matrix(d, schema, train) for d in (tr, ho, sy))
    d_train = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(xt).kneighbors(xs)[0][:, 0]
    d_hold = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(xh).kneighbors(xs)[0][:, 0]
    closer = np.where(np.isclose(d_train, d_hold), 0.5, (d_train < d_hold).astype(float))
    return {"dcr_share": float(closer.mean()), "median_dcr_train": float(np.median(d_train)),
            "median_dcr_holdout": float(np.median(d_hold)), "rows_compared": int(len(sy))}
