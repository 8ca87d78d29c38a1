"""What a model without a formal privacy guarantee may store: no rare value, no exact rare number.

A model file of a non-DP model (copula, autoregressive, GAN, VAE) is a summary of the training
rows; it must not be a way to read single rows back. The rule every such model follows, with `k`
its `privacy_k` parameter (default 5):

- a category seen on fewer than `k` rows is neither stored nor generated: it is released as one
  label (`rare_label`, default "other"; `None` releases it as a missing value). Categories a user
  declared but that no row holds are kept; booleans and public columns are left alone;
- every number a model stores is either a value held by at least `k` training rows (a frequent
  value, such as capital_gain == 0 or a common age) or a *cut*: the roundest number strictly
  between two adjacent distinct training values (`nice_between`). No training value lies strictly
  between two adjacent ones, so a cut is never a real value, and being the roundest number in the
  gap it tells only that one value lies below it and the next above;
- a column's bounds are cuts with at least `k` rows beyond each (`safe_bounds`): values further out
  are clipped to them, so an outlier is neither stored nor reproduced;
- value groups (the autoregressive model's bins and positions inside bins, the copula's quantile
  knots) hold at least about `k` rows each (`rank_groups`, `safe_quantiles`).

Why `k = 5`: it is the smallest group size in common use for released aggregate tables (the
"threshold rule" of statistical disclosure control, where cells below 3 to 5 are suppressed) and
it costs almost nothing in fidelity on tables of thousands of rows; raise it for small or
sensitive tables, set 0 to store exact values (the model file is then as sensitive as the data).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DEFAULT_K = 5
DEFAULT_LABEL = "other"
_STEPS = (1.0, 0.5, 0.2)  # 1-2-5 series inside each decade, coarsest first


def nice_between(a: Any, b: Any, unit: float | None = None) -> np.ndarray:
    """The roundest number strictly between `a` and `b` (elementwise, a < b): the multiple of the
    coarsest step of the 1-2-5 series that fits inside, at least 1% of the gap away from either end
    (so float rounding never leaves a copy of `a` or `b`); it depends on the two values only through
    the gap. With `unit` (86400 for dates) a multiple of the unit is preferred when one fits.
    Falls back to the midpoint."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    shape = a.shape
    a, b = a.ravel(), b.ravel()
    out = (a + b) / 2.0
    todo = np.isfinite(a) & np.isfinite(b) & (a < b)
    if not todo.any():
        return out.reshape(shape)
    units = [unit, 1.0] if unit else [1.0]
    for u in units:
        aa, bb = a[todo] / u, b[todo] / u
        big = np.maximum(np.abs(aa), np.abs(bb))
        span = bb - aa
        lo_ok, hi_ok = aa + span * 0.01, bb - span * 0.01
        hi = int(np.ceil(np.log10(max(float(big.max()), 1e-300)))) + 1
        lo = int(np.floor(np.log10(max(float(span.min()), 1e-300)))) - 1
        if u != 1.0:
            lo = max(lo, 0)  # only whole multiples of the unit
        found = np.zeros(aa.size, bool)
        res = np.empty(aa.size)
        for e in range(hi, lo - 1, -1):  # loops over decades (a few dozen), never over values
            for f in _STEPS:
                s = f * 10.0**e
                if u != 1.0 and s < 1.0:
                    continue  # whole multiples of the unit only
                c = np.ceil(lo_ok / s) * s
                hit = ~found & (c >= lo_ok) & (c <= hi_ok)
                res[hit] = c[hit]
                found |= hit
            if found.all():
                break
        idx = np.flatnonzero(todo)
        good = found & (res * u > a[idx]) & (res * u < b[idx])  # strict, after scaling back
        out[idx[good]] = res[good] * u
        todo[idx[good]] = False
        if not todo.any():
            break
    return out.reshape(shape) + 0.0  # no -0.0


def _runs(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sorted `v`: the start and end index of each element's run of equal values, and its length."""
    n = v.size
    first = np.searchsorted(v, v, side="left")
    last = np.searchsorted(v, v, side="right") - 1
    return first, last, last - first + 1 if n else np.zeros(0, np.int64)


def safe_bounds(v: np.ndarray, k: int, unit: float | None = None) -> tuple[float, float]:
    """(low, high) clip bounds of sorted finite values `v` with at least `k` rows at or beyond each: the
    k-th smallest (largest) value when at least `k` rows hold it, else the cut just past its run.
    Tiny columns with no such pair collapse to one safe number near the median."""
    v = np.asarray(v, dtype=float)
    n = v.size
    if n == 0:
        return (float("nan"), float("nan"))
    if k <= 0:
        return (float(v[0]), float(v[-1]))
    first, last, count = _runs(v)
    lo = hi = None
    if n >= k:
        i = k - 1
        if count[i] >= k:
            lo = float(v[i])
        elif last[i] + 1 < n:
            lo = float(nice_between(v[last[i]], v[last[i] + 1], unit))
        j = n - k
        if count[j] >= k:
            hi = float(v[j])
        elif first[j] > 0:
            hi = float(nice_between(v[first[j] - 1], v[first[j]], unit))
    if lo is not None and hi is not None and lo <= hi:
        return (lo, hi)
    c = _safe_center(v, k, first, last, count, unit)
    return (c, c)


def _safe_center(v: np.ndarray, k: int, first: np.ndarray, last: np.ndarray, count: np.ndarray,
                 unit: float | None) -> float:
    """One safe number for a column too small to have safe bounds: the median if frequent, else the
    cut in the gap nearest the median, else (one distinct rare value) a round number near it."""
    m = v.size // 2
    if count[m] >= k:
        return float(v[m])
    if last[m] + 1 < v.size:
        return float(nice_between(v[last[m]], v[last[m] + 1], unit))
    if first[m] > 0:
        return float(nice_between(v[first[m] - 1], v[first[m]], unit))
    x = float(v[m])
    step = 10.0 ** np.floor(np.log10(abs(x))) if x != 0 else 1.0
    r = float(np.round(x / step) * step)
    return r if r != x else r + step / 2


def safe_value_mask(v: np.ndarray, k: int) -> np.ndarray:
    """For sorted `v`: which elements are held by at least `k` rows (may be stored exactly)."""
    return _runs(v)[2] >= k


def rank_groups(v: np.ndarray, n_groups: int, k: int) -> np.ndarray:
    """Labels 0..m-1 splitting sorted `v` into at most `n_groups` contiguous groups of about equal rank
    size, equal values never split, and (when `v` has at least `k` rows) every group at least `k` rows:
    a smaller group merges into its smaller neighbour. Loops run over groups, not values."""
    n = v.size
    if n == 0:
        return np.zeros(0, np.int64)
    g = max(1, min(int(n_groups), n // max(k, 1) if k > 0 else n))
    raw = (np.searchsorted(v, v, side="left") * g) // n
    _, lab = np.unique(raw, return_inverse=True)
    lab = np.asarray(lab, dtype=np.int64).ravel()
    if k <= 1:
        return lab
    sizes = list(np.bincount(lab))
    ids = list(range(len(sizes)))  # group index -> new label after merges
    while len(sizes) > 1:
        small = [i for i, s in enumerate(sizes) if s < k]
        if not small:
            break
        i = small[0]
        j = i - 1 if i == len(sizes) - 1 or (i > 0 and sizes[i - 1] <= sizes[i + 1]) else i + 1
        lo_i, hi_i = min(i, j), max(i, j)
        sizes[lo_i] += sizes[hi_i]
        del sizes[hi_i]
        ids = [x if x < hi_i else x - 1 for x in ids]  # labels above the merged pair shift down
    lut = np.asarray(ids, dtype=np.int64)
    return lut[lab]


def group_edges(v: np.ndarray, starts: np.ndarray, ends: np.ndarray, k: int, unit: float | None = None,
                safe: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stored [lo, hi] of groups v[starts[i]:ends[i] + 1] of sorted `v`: a group's first (last) value when
    it is safe to store (held by >= k rows; `safe` overrides), else the cut towards the value before
    (after) it. The first and last values of `v` are taken as safe (they are the clip bounds)."""
    if safe is None:
        safe = safe_value_mask(v, k)
        if v.size:
            safe = safe.copy()
            safe[[0, -1]] = True
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.asarray(ends, dtype=np.int64)
    lo = v[starts].astype(float)
    hi = v[ends].astype(float)
    need = ~safe[starts] & (starts > 0)
    if need.any():
        lo[need] = nice_between(v[starts[need] - 1], v[starts[need]], unit)
    need = ~safe[ends] & (ends < v.size - 1)
    if need.any():
        hi[need] = nice_between(v[ends[need]], v[ends[need] + 1], unit)
    return lo, hi


def safe_quantiles(x: np.ndarray, n_knots: int, k: int) -> np.ndarray:
    """Quantile function of `x` at `m` evenly spaced probabilities (m <= n_knots, and about one knot per
    `k` rows), every knot safe to store: the value at that rank when at least `k` rows hold it (spikes
    stay exact), else the cut in the nearer gap around its run. Ends are the `safe_bounds`."""
    v = np.sort(np.asarray(x, dtype=float))
    n = v.size
    m = max(2, min(int(n_knots), n // k + 1)) if k > 0 else int(n_knots)
    if n == 0:
        return np.zeros(m)
    lo, hi = safe_bounds(v, k)
    v = np.clip(v, lo, hi)
    first, last, count = _runs(v)
    r = np.linspace(0.0, 1.0, m) * (n - 1)
    i = np.clip(np.round(r).astype(np.int64), 0, n - 1)
    out = v[i].copy()
    rare = count[i] < k
    if rare.any():
        s, e = first[i[rare]], last[i[rare]]
        below = s > 0
        above = e < n - 1
        up = above & (~below | ((e + 0.5) - r[rare] <= r[rare] - (s - 0.5)))
        cut_up = nice_between(v[np.minimum(e, n - 1)], v[np.minimum(e + 1, n - 1)])
        cut_dn = nice_between(v[np.maximum(s - 1, 0)], v[s])
        out[rare] = np.where(up, cut_up, np.where(below, cut_dn, out[rare]))
    out[0], out[-1] = lo, hi
    return np.maximum.accumulate(out)


# -- the released domain of a table -----------------------------------------------------------------
def _is_public(schema: Any, col: Any) -> bool:
    """A column whose domain the user declared public (schema `public: true`, per column or table)."""
    return bool(getattr(col, "public", False) or getattr(schema, "public", False))


def release_domain(schema: Any, data: pd.DataFrame, k: int = DEFAULT_K,
                   label: Any = DEFAULT_LABEL) -> tuple[Any, pd.DataFrame]:
    """The schema a non-DP model may store and the data it learns, per the module rules: categories on
    fewer than `k` rows become `label` (in the schema and the data), numerical and datetime bounds
    become `safe_bounds` (the model clips to them, see `clip_encoded`), an integer id's start is
    rounded down. Public columns and booleans are unchanged; `k <= 0` changes nothing."""
    from synthloop.schema.model import ColumnKind
    from synthloop.transforms.table import TableCodec

    if k is None or k <= 0:
        return schema, data
    codec = TableCodec(schema)
    cols = []
    out = data
    for col in schema.columns:
        if _is_public(schema, col) or col.name not in data.columns:
            cols.append(col)
            continue
        if col.kind == ColumnKind.CATEGORICAL and col.categories:
            codes = codec.encode_column(col, data[col.name], strict=False)
            counts = np.bincount(codes[codes >= 0], minlength=len(col.categories))
            rare = (counts > 0) & (counts < k)
            if rare.any():
                keep = [c for c, r in zip(col.categories, rare) if not r]
                values = data[col.name].astype(object)
                rows = np.isin(codes, np.flatnonzero(rare))
                update: dict[str, Any] = {"categories": keep}
                nr = int(rare.sum())
                note = f"{nr} {'category' if nr == 1 else 'categories'} held by fewer than {k} rows released as "
                if label is None:
                    values = values.where(~rows, None)
                    note += "missing values"
                else:
                    values = values.where(~rows, label)
                    if label not in keep:
                        update["categories"] = keep + [label]
                    if not col.dtype.startswith(("object", "string", "category", "str")) and not isinstance(label, (int, float)):
                        update["dtype"] = "object"
                    note += f"{label!r}"
                update["notes"] = [n for n in col.notes if " released as " not in n] + [note]
                if out is data:
                    out = data.copy()
                out[col.name] = values.to_numpy(dtype=object)
                col = col.model_copy(update=update)
        elif col.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
            x = codec.encode_column(col, data[col.name], strict=False)
            v = np.sort(x[np.isfinite(x)])
            if v.size:
                unit = 86400.0 if col.kind == ColumnKind.DATETIME else None
                lo, hi = safe_bounds(v, k, unit)
                rare_values = v[~safe_value_mask(v, k)]
                # a narrower bound the user declared stays, unless it is itself a rare training value
                if col.min is not None and lo < col.min <= hi and not np.isin(col.min, rare_values):
                    lo = float(col.min)
                if col.max is not None and lo <= col.max < hi and not np.isin(col.max, rare_values):
                    hi = float(col.max)
                col = col.model_copy(update={"min": lo, "max": hi})
        elif col.kind == ColumnKind.ID and col.min is not None:
            start = float(col.min)
            p = 10.0 ** np.floor(np.log10(abs(start))) if start >= 1 else 1.0
            col = col.model_copy(update={"min": float(np.floor((start - 1) / p) * p), "max": None})
        cols.append(col)
    return schema.model_copy(update={"columns": cols}), out


def clip_encoded(encoded: dict[str, np.ndarray], columns: list[Any]) -> dict[str, np.ndarray]:
    """Numerical and datetime arrays clipped to their (released) schema bounds, NaN kept."""
    from synthloop.schema.model import ColumnKind

    out = dict(encoded)
    for col in columns:
        if col.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME) and col.name in out and col.min is not None:
            x = out[col.name]
            out[col.name] = np.where(np.isnan(x), np.nan, np.clip(x, col.min, col.max if col.max is not None else np.inf))
    return out
