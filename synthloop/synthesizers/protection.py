"""Protection filter for models without a formal guarantee: drop synthetic rows that sit too close to a
training row, and draw replacements.

"Too close" is relative to how close real rows naturally are to each other: the threshold is the
`quantile` (5th percentile by default) of the distances from held-out real rows to their nearest
training row. A synthetic row nearer to a training row than 95% of genuinely new real rows are is
treated as a likely near-copy. Distances are Euclidean over `protection_features`: each number as its
quantile rank among the training values (robust: one outlier does not squash the scale of everyone
else, as min-max scaling did), a missing-value indicator, and every category, however rare, as its
own value (a mismatch adds 1 to the squared distance, as two one-hot halves of sqrt(0.5) would), so a
copied rare value counts. Searched in chunks so memory stays bounded. This is an empirical
safeguard, not differential privacy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthloop.errors import DataError
from synthloop.schema import ColumnKind, TableSchema, infer_schema
from synthloop.transforms.generated import generate_ids
from synthloop.transforms.table import TableCodec

_CONTINUOUS = (ColumnKind.NUMERICAL, ColumnKind.DATETIME)
_DISCRETE = (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
_ONEHOT_MAX = 64  # columns with up to this many values go one-hot (one matrix product); larger ones as codes


def nearest_distance(query: np.ndarray, reference: np.ndarray, chunk_cells: int = 2**24,
                     query_codes: np.ndarray | None = None, reference_codes: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance from every query row to its nearest reference row, `chunk_cells` pairs at a time.

    With `query_codes`/`reference_codes` ((rows, columns) integer category codes), each column whose codes
    differ adds 1 to the squared distance (one-hot without building the one-hot matrix)."""
    q = np.ascontiguousarray(query, dtype=np.float64)
    r = np.ascontiguousarray(reference, dtype=np.float64)
    if r.shape[0] == 0:
        return np.full(q.shape[0], np.inf)
    codes = query_codes is not None and reference_codes is not None and np.shape(reference_codes)[1] > 0
    rn = (r * r).sum(axis=1)
    step = max(1, chunk_cells // r.shape[0])
    out = np.empty(q.shape[0])
    for i in range(0, q.shape[0], step):  # loop over chunks of rows, each one vectorized
        a = q[i:i + step]
        d2 = (a * a).sum(axis=1)[:, None] + rn[None, :] - 2.0 * (a @ r.T)
        if codes:
            for j in range(reference_codes.shape[1]):  # a loop over category columns
                d2 += query_codes[i:i + step, j][:, None] != reference_codes[None, :, j]
        out[i:i + step] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def protection_features(df: pd.DataFrame, schema: TableSchema, reference: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(numbers, category codes) of `df` for the filter's distance, against the training table `reference`.

    Numbers and datetimes: the mid-rank of each value among the reference's values, in [0, 1] (values
    beyond the reference's range get 0 or 1), plus a missing indicator where values are missing.
    Categories and booleans: every value of the reference (not the schema's list, which a model may have
    coarsened), missing and "a value the reference never holds" each a value of their own; one-hot
    (weight sqrt(0.5), so a mismatch adds 1 to the squared distance) up to 64 values, else as codes
    compared by `nearest_distance` (the same distance without a wide matrix)."""
    codec = TableCodec(schema)
    nums: list[np.ndarray] = []
    cats: list[np.ndarray] = []
    for c in schema.columns:
        if c.name not in df.columns or c.name not in reference.columns:
            continue
        if c.kind in _CONTINUOUS:
            x = codec.encode_column(c, df[c.name], strict=False)
            r = codec.encode_column(c, reference[c.name], strict=False)
            r = np.sort(r[np.isfinite(r)])
            if r.size:
                rank = (np.searchsorted(r, x, side="left") + np.searchsorted(r, x, side="right")) / (2.0 * r.size)
            else:
                rank = np.zeros(x.size)
            nan = np.isnan(x)
            nums.append(np.where(nan, 0.0, rank))
            if nan.any() or reference[c.name].isna().any():
                nums.append(nan.astype(float))
        elif c.kind in _DISCRETE:
            ref = reference[c.name]
            index = pd.Index(ref.dropna().unique())
            codes = np.asarray(index.get_indexer(df[c.name]), dtype=np.int64)
            if index.dtype == object and (codes < 0).any():  # "1" vs 1 when the types differ
                alt = pd.Index(index.astype(str)).get_indexer(df[c.name].astype(str))
                codes = np.where(codes < 0, alt, codes)
            missing = df[c.name].isna().to_numpy()
            k = len(index)
            codes = np.where(missing, k, np.where(codes < 0, k + 1, codes))  # k: missing, k + 1: unknown
            if k <= _ONEHOT_MAX:
                onehot = np.zeros((codes.size, k + 2))
                onehot[np.arange(codes.size), codes] = np.sqrt(0.5)
                nums.extend(onehot.T)
            else:
                cats.append(codes)
    n = len(df)
    num = np.column_stack(nums) if nums else np.zeros((n, 0))
    cat = np.column_stack(cats).astype(np.int64) if cats else np.zeros((n, 0), np.int64)
    return num, cat


@dataclass
class ProtectionReport:
    """What the filter did: threshold, rows asked for, drawn, rejected, rounds, and any shortfall."""

    threshold: float
    quantile: float
    requested: int
    drawn: int = 0
    rejected: int = 0
    rounds: int = 0
    shortfall: int = 0
    rejected_per_round: list[int] = field(default_factory=list)

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.drawn if self.drawn else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rejected_share": self.rejected_share}


class ProtectionFilter:
    """Reject synthetic rows closer to a training row than the `quantile` of holdout-to-train distances.

    `fit(train, holdout=None)`: without a holdout, a `holdout_share` of the training rows is set aside
    and measured against the rest (leave-out real-to-real distances).
    """

    def __init__(self, quantile: float = 0.05, holdout_share: float = 0.2, max_rounds: int = 10,
                 chunk_cells: int = 2**24, random_state: int | None = 0):
        self.quantile = quantile
        self.holdout_share = holdout_share
        self.max_rounds = max_rounds
        self.chunk_cells = chunk_cells
        self.random_state = random_state

    def fit(self, train: pd.DataFrame, holdout: pd.DataFrame | None = None, schema: TableSchema | None = None) -> "ProtectionFilter":
        if not 0 < self.quantile < 1:
            raise DataError(f"protection quantile must be in (0, 1), got {self.quantile}")
        if len(train) < 2:
            raise DataError("the protection filter needs at least 2 training rows")
        self.schema_ = schema or infer_schema(train)
        self.reference_ = train
        self.train_features_, self.train_codes_ = protection_features(train, self.schema_, train)
        if holdout is not None and len(holdout):
            hold, hold_codes = protection_features(holdout, self.schema_, train)
            real = nearest_distance(hold, self.train_features_, self.chunk_cells, hold_codes, self.train_codes_)
        else:
            rng = np.random.default_rng(self.random_state)
            n_out = min(max(1, int(round(len(train) * self.holdout_share))), len(train) - 1)
            out = rng.choice(len(train), n_out, replace=False)
            keep = np.setdiff1d(np.arange(len(train)), out)
            real = nearest_distance(self.train_features_[out], self.train_features_[keep], self.chunk_cells,
                                    self.train_codes_[out], self.train_codes_[keep])
        self.real_distances_ = real
        self.threshold_ = float(np.quantile(real, self.quantile))
        return self

    def distances(self, synthetic: pd.DataFrame) -> np.ndarray:
        """Distance from each synthetic row to its nearest training row."""
        x, codes = protection_features(synthetic, self.schema_, self.reference_)
        return nearest_distance(x, self.train_features_, self.chunk_cells, codes, self.train_codes_)

    def too_close(self, synthetic: pd.DataFrame) -> np.ndarray:
        """Boolean mask of rows the filter rejects (distance strictly below the threshold, or an exact copy)."""
        d = self.distances(synthetic)
        return (d < self.threshold_) | (d <= 1e-12)

    def sample(self, model: Any, n: int, seed: int | None = None, conditions: Any = None) -> tuple[pd.DataFrame, ProtectionReport]:
        """`n` rows from `model.sample`, none too close to a training row; rejected rows are redrawn.

        With per-row conditions (a DataFrame), each rejected row is redrawn under its own condition.
        After `max_rounds` the rows still missing are reported as `shortfall` (never filled with
        rejected rows).
        """
        if not hasattr(self, "threshold_"):
            raise DataError("this ProtectionFilter is not fitted yet: call fit(train) first")
        per_row = isinstance(conditions, pd.DataFrame)
        if per_row:
            conditions = conditions.reset_index(drop=True)
            n = len(conditions)
        report = ProtectionReport(threshold=self.threshold_, quantile=self.quantile, requested=int(n))
        seeds = np.random.SeedSequence(seed).generate_state(self.max_rounds + 1)
        parts: list[pd.DataFrame] = []
        slots: list[np.ndarray] = []  # which requested row each kept row fills (for per-row conditions)
        todo = np.arange(n)
        for r in range(self.max_rounds + 1):
            if todo.size == 0:
                break
            # draw a little more than missing: the expected rejections, so most rounds finish in one go
            extra = 1.0 if per_row or report.drawn == 0 else 1.0 / max(1e-3, 1.0 - report.rejected_share)
            want = todo.size if per_row else int(np.ceil(todo.size * min(extra, 4.0)))
            cond = conditions.iloc[todo].reset_index(drop=True) if per_row else conditions
            batch = model.sample(want if not per_row else None, seed=int(seeds[r]), conditions=cond)
            bad = self.too_close(batch)
            report.drawn += len(batch)
            report.rejected += int(bad.sum())
            report.rejected_per_round.append(int(bad.sum()))
            report.rounds = r + 1
            good_idx = np.flatnonzero(~bad)
            if per_row:
                parts.append(batch.iloc[good_idx])
                slots.append(todo[good_idx])
                todo = todo[bad]
            else:
                take = good_idx[: todo.size]
                parts.append(batch.iloc[take])
                slots.append(todo[: take.size])
                todo = todo[take.size:]
        report.shortfall = int(todo.size)
        if not parts:
            return model.sample(0), report
        out = pd.concat(parts, ignore_index=True)
        order = np.argsort(np.concatenate(slots), kind="stable")
        out = out.iloc[order].reset_index(drop=True)
        schema = getattr(model, "schema_", None)
        if schema is not None and report.rounds > 1:  # ids restart in every batch: draw them again for the whole table
            rng = np.random.default_rng(seeds[-1])
            for col in schema.of_kind(ColumnKind.ID):
                if col.name in out.columns:
                    out[col.name] = generate_ids(col, len(out), rng).to_numpy()
        return out, report


def protect(model: Any, train: pd.DataFrame, n: int, seed: int | None = None, holdout: pd.DataFrame | None = None,
            quantile: float = 0.05, conditions: Any = None, schema: TableSchema | None = None) -> tuple[pd.DataFrame, ProtectionReport]:
    """One call: fit the filter on `train` (and `holdout`), sample `n` protected rows from `model`."""
    schema = schema or getattr(model, "schema_", None)
    filt = ProtectionFilter(quantile=quantile).fit(train, holdout, schema)
    return filt.sample(model, n, seed=seed, conditions=conditions)
