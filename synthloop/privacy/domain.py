"""The domain a DP model may use: declared public by the user, or estimated under DP from a share of the budget.

A DP synthesizer needs, per column, what values it can produce: numeric and datetime bounds, decimals,
categories, whether nulls occur, the pattern and first value of generated ids. Read from the private rows
for free, these leak exactly what DP promises to hide (a single row's extreme value, rare category or
null). So each column's domain is either

- **public**: the schema says `public: true` (for the column, or for the table); its fields are used as
  written (or as inferred, which the user vouches for), or
- **paid for**: estimated here under zCDP from the part of the budget the caller passes:
  - numeric bounds: a noisy histogram over a public log-scale grid (32 cells per decade from 1e-6 to
    1e15, both signs, plus 0 and null) and one over its decades; the bounds are the outermost cells
    whose noisy count clears a threshold set so that an empty cell passes with probability below 1e-6
    over the whole grid, grown into neighbours above 2 sigma (a DP estimate of the extreme quantiles: a
    value held by a few rows never moves a bound); the decades serve tables too small for the fine grid;
  - datetime bounds: the same over a public grid of calendar months (and decades), 1800 to 2200;
  - decimals: a noisy histogram of each row's number of decimals (0 to 6, or more); the largest whose
    noisy count clears the threshold an empty cell passes with probability 1e-6;
  - categories (and id patterns): OpenDP's Gaussian threshold mechanism over the observed values: a
    value is kept only if its noisy count clears a threshold calibrated to the delta set aside for
    thresholds, so a value seen once never survives; kept values are sorted by value, not frequency;
  - missing shares: the noisy null count (a cell of the histograms above, or its own count) over a
    noisy row count, 0 below 3 sigma;
  - an integer scale whose lower bound comes out at 2 to 5 (and near 1 for its range) starts at 1: a
    public convention applied to the DP output (`SNAP_MAX`, `SNAP_SHARE`);
  - generated ids start from 1; text lengths are not kept.
Column names, kinds, dtypes and formats (datetime format, PII type) are taken as public metadata.

Every count here has sensitivity 1 (one row adds one to one cell of each query), so query q with noise
sigma_q costs 1 / (2 sigma_q^2) zCDP; the queries share the given rho by fixed weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthloop.errors import PrivacyError
from synthloop.privacy import mechanisms
from synthloop.privacy.accounting import THRESHOLD_DELTA_SHARE  # noqa: F401 - re-exported for the models
from synthloop.schema.inference import _plain
from synthloop.schema.model import ColumnKind, ColumnSchema, TableSchema

GRID_PER_DECADE = 32
GRID_DECADES = (-6, 15)
DATETIME_GRID = ("1800-01", "2200-01")
GRID_FALSE_RATE = 1e-6  # chance that some empty grid cell clears the core threshold, per column
Z_SMALL = 3.0  # null counts: nulls are kept when their noisy count clears 3 sigma
# An integer column whose DP lower bound is at most SNAP_MAX and within SNAP_SHARE of its range from 1
# starts at 1 (grades, ratings, counts): the few rows at the bottom of such a scale are below any DP
# threshold, and a scale that starts at 2 or 3 is rarer than one whose 1s are rare.
SNAP_MAX = 5.0
SNAP_SHARE = 0.2
COARSE_SHARE = 0.2  # of a bounds query's rho, for the coarse (decade) histogram
FALLBACK_FALSE_RATE = 1e-2  # the same, at the coarsest level, when nothing clears GRID_FALSE_RATE
Z_GROW = 2.0  # a bound grows into the next grid cell when its noisy count clears 2 sigma
WEIGHTS = {"row_count": 0.25, "bounds": 1.0, "decimals": 0.25, "categories": 1.0, "id_pattern": 0.5, "missing": 0.25}
_CATEGORICAL = (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)


@dataclass
class DomainRelease:
    """The released schema plus what it cost and what was declared public."""

    schema: TableSchema
    n_hat: float | None
    public: list[str]
    estimated: dict[str, list[str]]
    rho: float = 0.0
    delta: float = 0.0
    counts: dict[str, dict[Any, float]] = field(default_factory=dict)  # noisy category counts (post-threshold)
    sigmas: dict[str, float] = field(default_factory=dict)
    deferred: list[str] = field(default_factory=list)  # categorical columns the caller discovers itself
    threshold_delta_each: float = 0.0  # the delta each thresholded release may spend


# -- what needs paying for ------------------------------------------------------------------------------
def plan(schema: TableSchema, bounds: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(column, query) pairs a DP estimate of the non-public part of the domain needs (empty: all public)."""
    out: list[tuple[str, str]] = []
    for col in schema.columns:
        if schema.is_public(col.name):
            continue
        if col.kind == ColumnKind.NUMERICAL:
            out.append((col.name, "missing" if (bounds or {}).get(col.name) is not None else "bounds"))
            out.append((col.name, "decimals"))
        elif col.kind == ColumnKind.DATETIME:
            out.append((col.name, "missing" if (bounds or {}).get(col.name) is not None else "bounds"))
        elif col.kind in _CATEGORICAL:
            out.append((col.name, "categories"))
        elif col.kind == ColumnKind.ID and not _int_ids(col):
            out.append((col.name, "id_pattern"))
        else:
            out.append((col.name, "missing"))
    return out


def _int_ids(col: ColumnSchema) -> bool:
    return col.kind == ColumnKind.ID and (col.id_pattern in (None, "{int}")) and not col.dtype.startswith(("object", "str"))


def undeclared(schema: TableSchema) -> list[str]:
    """Columns whose domain is not declared public."""
    return [c.name for c in schema.columns if not schema.is_public(c.name)]


def refuse_undeclared(schema: TableSchema, model: str, how: str) -> None:
    """One clear line when a DP fit would read a domain from the rows without paying for it."""
    names = undeclared(schema)
    if not names:
        return
    shown = ", ".join(f"'{n}'" for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise PrivacyError(f"{model}: DP fit refused: the domain of {shown} would come from the private rows for free "
                       f"({how}); declare it public in the schema YAML (`public: true` per column or for the table) "
                       f"or pay for it under DP (domain='dp' with domain_share > 0, the default)")


# -- the grids ----------------------------------------------------------------------------------------
def _log_grid() -> tuple[np.ndarray, np.ndarray]:
    e = 10.0 ** (np.arange(GRID_DECADES[0] * GRID_PER_DECADE, GRID_DECADES[1] * GRID_PER_DECADE + 1) / GRID_PER_DECADE)
    left = np.concatenate([-e[1:][::-1], [0.0], e[:-1]])
    right = np.concatenate([-e[:-1][::-1], [0.0], e[1:]])
    return left, right


def _log_cell(x: np.ndarray) -> np.ndarray:
    """Grid cell (in value order) of finite values."""
    e = 10.0 ** (np.arange(GRID_DECADES[0] * GRID_PER_DECADE, GRID_DECADES[1] * GRID_PER_DECADE + 1) / GRID_PER_DECADE)
    m = e.size - 1  # cells per sign
    i = np.clip(np.searchsorted(e, np.abs(x), side="right") - 1, 0, m - 1)
    return np.where(x > 0, m + 1 + i, np.where(x < 0, m - 1 - i, m))


def _month_grid() -> np.ndarray:
    months = np.arange(np.datetime64(DATETIME_GRID[0]), np.datetime64(DATETIME_GRID[1]) + 1, dtype="datetime64[M]")
    return months.astype("datetime64[s]").astype(np.int64).astype(float)


def row_decimals(v: np.ndarray) -> np.ndarray:
    """Decimals each finite value needs (0..6; 7 = more than 6)."""
    out = np.full(v.size, 7, dtype=np.int64)
    for d in range(6, -1, -1):
        scaled = v * 10.0**d
        out[np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled))] = d
    return out


def _id_patterns(values: pd.Series) -> pd.Series:
    s = values.astype(str)
    m = s.str.extract(r"^(?P<p>[^\d]*)(?P<d>\d+)$")
    digits = m["p"].fillna("") + "{digits:" + m["d"].str.len().fillna(0).astype(int).astype(str) + "}"
    return digits.where(m["d"].notna(), "{hex:" + s.str.len().astype(str) + "}")


def _public_sort(values: list[Any]) -> list[Any]:
    return sorted(values, key=lambda v: (0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v)))


def _category_dtype(cats: list[Any], old: str) -> str:
    if old == "category":
        return old
    if cats and all(isinstance(v, (bool, np.bool_)) for v in cats):
        return "bool"
    if cats and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in cats):
        return "int64"
    if cats and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in cats):
        return "float64"
    return "object"


# -- the release ----------------------------------------------------------------------------------------
def release_domain(schema: TableSchema, frame: pd.DataFrame, rho: float, delta: float,
                   bounds: dict[str, Any] | None = None, count_rows: bool = False,
                   defer_categories: bool = False) -> DomainRelease:
    """The schema a DP model may use: public columns as declared, the rest estimated under `rho`-zCDP and
    `delta` for thresholds (see module docstring). `bounds` are public bounds of some columns.
    `count_rows`: also release a noisy row count when nothing else needs one. `defer_categories`: leave
    category discovery of non-public categorical columns to the caller (a model whose own noisy 1-way
    counts can be thresholded, at no extra cost); they are listed in `deferred`."""
    from synthloop.transforms.table import TableCodec

    queries = plan(schema, bounds)
    public = [c.name for c in schema.columns if schema.is_public(c.name)]
    deferred = [n for n, q in queries if q == "categories"] if defer_categories else []
    queries = [(n, q) for n, q in queries if n not in deferred]
    n_thresholded = sum(q in ("categories", "id_pattern") for _, q in queries) + len(deferred)
    each = delta / max(n_thresholded, 1)
    if queries or count_rows:
        queries = [("", "row_count")] + queries
    if not queries:
        return DomainRelease(_apply_bounds(schema, bounds), None, public, {}, deferred=deferred,
                             threshold_delta_each=each)
    if not rho > 0:
        refuse_undeclared(schema, "DP model", "no budget was given for it")
    total_w = sum(WEIGHTS[q] for _, q in queries)
    sigma = {q: 1.0 / math.sqrt(2.0 * rho * WEIGHTS[q] / total_w) for q in WEIGHTS}
    cut = {q: mechanisms.threshold_for(sigma[q], each) for q in ("categories", "id_pattern")
           if any(q == asked for _, asked in queries)}
    spent_delta = 0.0
    codec = TableCodec(schema)
    n_hat = max(float(mechanisms.gaussian_counts(np.array([len(frame)]), sigma["row_count"])[0]), 1.0)
    estimated: dict[str, list[str]] = {}
    updates: dict[str, dict[str, Any]] = {}
    counts: dict[str, dict[Any, float]] = {}
    used_sigmas: dict[str, float] = {"row_count": sigma["row_count"]}

    def missing_from(noisy_null: float, s: float) -> float:
        return round(min(noisy_null / n_hat, 1.0), 6) if noisy_null >= Z_SMALL * s else 0.0

    for name, query in queries[1:]:
        col = schema[name]
        up = updates.setdefault(name, {"notes": []})
        what = estimated.setdefault(name, [])
        values = frame[name]
        null = values.isna().to_numpy()
        if query in ("bounds", "missing") and col.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
            x = codec.encode_column(col, values, strict=False)
            null = np.isnan(x)
            s = sigma[query]
            used_sigmas[f"{name}.{query}"] = s
            if query == "bounds":
                if col.kind == ColumnKind.NUMERICAL:
                    left, right = _log_grid()
                    cells = _log_cell(x[~null])
                    side = (left.size - 1) // 2  # negative cells, the zero cell, positive cells
                    segments, merged, coarse = [(0, side), (side, side + 1), (side + 1, left.size)], 4, GRID_PER_DECADE
                else:
                    edges = _month_grid()
                    left, right = edges[:-1], edges[1:] - 1.0
                    cells = np.clip(np.searchsorted(edges, x[~null], side="right") - 1, 0, left.size - 1)
                    segments, merged, coarse = [(0, left.size)], 12, 120  # months, years, decades
                k = left.size
                # two measurements: the fine grid (with a null cell) and a coarse one (decades) that a
                # small table clears; they share the query's rho 4:1
                s_fine, s_coarse = s / math.sqrt(1 - COARSE_SHARE), s / math.sqrt(COARSE_SHARE)
                noisy = mechanisms.gaussian_counts(np.bincount(np.append(cells, np.full(int(null.sum()), k)),
                                                               minlength=k + 1), s_fine)
                cidx = _coarse_index(np.arange(k), segments, coarse)
                top = mechanisms.gaussian_counts(np.bincount(cidx[cells], minlength=int(cidx.max()) + 1), s_coarse)
                firsts = np.searchsorted(cidx, np.arange(top.size))
                lasts = np.append(firsts[1:], k)
                found = _extent(noisy[:k], s_fine, segments, merged, top, s_coarse, firsts, lasts)
                if found is None:
                    raise PrivacyError(f"column '{name}': too few rows to locate its values under DP with this budget "
                                       f"(noise {s:.3g} per count); declare its bounds public (schema `public: true` "
                                       f"with min/max, or bounds=) or give the domain a larger share of the budget")
                a, b = found
                up["min"], up["max"] = float(left[a]), float(right[b])
                what.append("bounds")
                noisy_null = noisy[k]
            else:
                up["min"], up["max"] = (float(b) for b in bounds[name])
                noisy_null = mechanisms.gaussian_counts(np.array([int(null.sum())]), s)[0]
            up["missing_share"] = missing_from(noisy_null, s_fine if query == "bounds" else s)
            what.append("missing share")
            if col.kind == ColumnKind.DATETIME:
                up["decimals"] = 0
        elif query == "decimals":
            x = codec.encode_column(col, values, strict=False)
            v = x[np.isfinite(x)]
            s = sigma["decimals"]
            used_sigmas[f"{name}.decimals"] = s
            noisy = mechanisms.gaussian_counts(np.bincount(row_decimals(v), minlength=8), s)
            ok = np.flatnonzero(noisy >= _z(GRID_FALSE_RATE / 8) * s)
            d = int(ok.max()) if ok.size else int(np.argmax(noisy))
            up["decimals"] = None if d >= 7 else d
            what.append("decimals")
        elif query == "categories":
            s, t = sigma["categories"], cut["categories"]
            used_sigmas[f"{name}.categories"] = s
            fields, kept = discover_categories(col, values, s, t, n_hat)
            spent_delta += mechanisms.threshold_delta(s, t)
            up.update(fields)
            counts[name] = kept
            what += ["categories", "missing share"]
        elif query == "id_pattern":
            s, t = sigma["id_pattern"], cut["id_pattern"]
            used_sigmas[f"{name}.id_pattern"] = s
            pats = _id_patterns(values[~null]).value_counts(sort=False)
            raw = {str(k): int(c) for k, c in pats.items()}
            raw[""] = int(null.sum())  # the null key ("" is no pattern)
            kept = mechanisms.thresholded_counts(raw, s, t)
            spent_delta += mechanisms.threshold_delta(s, t)
            pat = {k: v for k, v in kept.items() if k}
            up["id_pattern"] = max(sorted(pat), key=lambda k: pat[k]) if pat else "{int}"
            up["min"] = up["max"] = None
            up["missing_share"] = round(min(kept[""] / n_hat, 1.0), 6) if "" in kept else 0.0
            up["dtype"] = "object"
            what += ["id pattern", "missing share"]
        else:  # missing share of an id/pii/text column
            s = sigma["missing"]
            used_sigmas[f"{name}.missing"] = s
            up["missing_share"] = missing_from(mechanisms.gaussian_counts(np.array([int(null.sum())]), s)[0], s)
            what.append("missing share")
            if col.kind == ColumnKind.ID:
                up["min"] = up["max"] = None  # generated ids start from 1
                up["id_pattern"] = "{int}"
                up["dtype"] = "int64"
            if col.kind == ColumnKind.TEXT:
                up["text_length"] = None
    for name, up in updates.items():
        col = schema[name]
        if col.kind == ColumnKind.NUMERICAL and "min" in up:
            d = up.get("decimals", col.decimals)
            up["min"], up["max"] = _round_bounds(up["min"], up["max"], d)
            lo, hi = up["min"], up["max"]
            if d == 0 and "bounds" in estimated.get(name, []) and 1 < lo <= min(SNAP_MAX, 1 + SNAP_SHARE * (hi - lo)):
                up["min"] = 1.0  # a public convention: scales and counts start at 1 (post-processing, no cost)
            up["dtype"] = "int64" if d == 0 else "float64"
    released = schema.model_copy(deep=True)
    released.columns = [c.model_copy(update=updates[c.name]) if c.name in updates else c.model_copy()
                        for c in schema.columns]
    released = _apply_bounds(released, {k: v for k, v in (bounds or {}).items() if schema.is_public(k)} or None)
    return DomainRelease(TableSchema.model_validate(released.model_dump()), n_hat, public, estimated,
                         rho=float(rho), delta=spent_delta, counts=counts, sigmas=used_sigmas, deferred=deferred,
                         threshold_delta_each=each)


def discover_categories(col: ColumnSchema, values: pd.Series, sigma: float, threshold: int,
                        n_hat: float | None = None) -> tuple[dict[str, Any], dict[Any, float]]:
    """Categories of one column by OpenDP's Gaussian threshold mechanism over the observed values (null is
    one more key): the schema fields to release (categories in value order, dtype, missing share) and the
    noisy counts of the kept keys (`NULL` for nulls). Costs 1 / (2 sigma^2) zCDP plus
    `mechanisms.threshold_delta(sigma, threshold)`."""
    vc = values.value_counts(dropna=False, sort=False)
    raw = {(NULL if _isnull(k) else _plain(k)): int(c) for k, c in vc.items()}
    kept = mechanisms.thresholded_counts(raw, sigma, threshold)
    cats = _public_sort([k for k in kept if k is not NULL])
    total = n_hat if n_hat is not None else max(sum(kept.values()), 1.0)
    fields = {"categories": cats, "missing_share": round(min(kept[NULL] / total, 1.0), 6) if NULL in kept else 0.0,
              "dtype": _category_dtype(cats, col.dtype) if col.kind == ColumnKind.CATEGORICAL else (
                  "bool" if cats and set(map(type, cats)) <= {bool} else "object"), "notes": []}
    return fields, kept


def _coarse_index(fine: np.ndarray, segments: list[tuple[int, int]], factor: int) -> np.ndarray:
    """Coarse cell of each fine cell: `factor` neighbours merged inside each segment, in value order."""
    out = np.empty(fine.size, dtype=np.int64)
    base = 0
    for lo, hi in segments:
        inside = (fine >= lo) & (fine < hi)
        out[inside] = base + (fine[inside] - lo) // factor
        base += -(-(hi - lo) // factor)
    return out


def _levels(noisy: np.ndarray, sigma: float, segments: list[tuple[int, int]], factor: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A level made by merging `factor` fine cells (post-processing): sums, their noise, fine ranges."""
    starts = np.concatenate([np.arange(lo, hi, factor) for lo, hi in segments])
    ends = np.concatenate([np.minimum(np.arange(lo, hi, factor) + factor, hi) for lo, hi in segments])
    return np.add.reduceat(noisy, starts), sigma * np.sqrt(ends - starts), starts, ends


def _core(agg: np.ndarray, s: np.ndarray, rate: float) -> tuple[int, int] | None:
    """Outermost cells clearing the threshold an empty cell passes with probability `rate` over the level,
    grown outward through neighbours above 2 sigma (where a false pass is only one cell away)."""
    hit = np.flatnonzero(agg >= _z(rate / max(agg.size, 1)) * s)
    if hit.size == 0:
        return None
    a, b = int(hit[0]), int(hit[-1])
    while a > 0 and agg[a - 1] >= Z_GROW * s[a - 1]:
        a -= 1
    while b < agg.size - 1 and agg[b + 1] >= Z_GROW * s[b + 1]:
        b += 1
    return a, b


def _descend(fine: np.ndarray, s_fine: float, merged: int, first: int, end: int, low: bool) -> int:
    """Inside a cell known to hold rows: its outermost part (a cell of `merged` fine cells, then a fine
    cell) that shows anything at `FALLBACK_FALSE_RATE` (few candidates, so a laxer test); the part's
    own edge when nothing inside it does."""
    if end - first > merged:
        starts = np.arange(first, end, merged)
        widths = np.minimum(starts + merged, end) - starts
        sums = np.add.reduceat(fine[first:end], starts - first)
        ok = np.flatnonzero(sums >= _z(FALLBACK_FALSE_RATE / starts.size) * s_fine * np.sqrt(widths))
        if ok.size == 0:
            return first if low else end - 1
        i = int(ok[0] if low else ok[-1])
        first, end = int(starts[i]), int(starts[i] + widths[i])
    cells = np.arange(first, end)
    inner = np.flatnonzero(fine[cells] >= _z(FALLBACK_FALSE_RATE / cells.size) * s_fine)
    if inner.size == 0:
        return int(cells[0] if low else cells[-1])
    return int(cells[inner[0] if low else inner[-1]])


def _extent(fine: np.ndarray, s_fine: float, segments: list[tuple[int, int]], merged: int,
            coarse: np.ndarray, s_coarse: float, firsts: np.ndarray, ends: np.ndarray) -> tuple[int, int] | None:
    """First and last fine cell of the support (post-processing of the two noisy histograms).

    Three views, the widest wins: the fine grid's core (cells clearing a threshold that an empty cell
    passes with probability `GRID_FALSE_RATE` over the grid, grown through neighbours above 2 sigma);
    the same on cells of `merged` fine ones (noise sigma * sqrt(merged)), which a thinner spread
    clears; and the coarse histogram (decades): its outermost cells clearing the threshold (or, for a
    table too small for that, `FALLBACK_FALSE_RATE`). The outermost cells of the two coarser views are
    searched inward for their outermost populated part, so a view's coarse edge does not widen the
    bounds for nothing. None when even the coarse histogram shows nothing."""
    fine_core = _core(*_levels(fine, s_fine, segments, 1)[:2], GRID_FALSE_RATE)
    found = [fine_core] if fine_core is not None else []
    agg, s, starts, stops = _levels(fine, s_fine, segments, merged)
    views = [(_core(agg, s, GRID_FALSE_RATE), starts, stops)]
    sc = np.full(coarse.size, s_coarse)
    views.append((_core(coarse, sc, GRID_FALSE_RATE) or _core(coarse, sc, FALLBACK_FALSE_RATE), firsts, ends))
    for core, starts, stops in views:
        if core is not None:
            a, b = core
            found.append((_descend(fine, s_fine, merged, int(starts[a]), int(stops[a]), True),
                          _descend(fine, s_fine, merged, int(starts[b]), int(stops[b]), False)))
    if not found:
        return None
    return min(f[0] for f in found), max(f[1] for f in found)


class _Null:
    def __repr__(self) -> str:
        return "<null>"


NULL = _Null()  # the key of nulls in discovered counts


def _isnull(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _z(p: float) -> float:
    from scipy.stats import norm

    return float(norm.isf(p))


def _round_bounds(lo: float, hi: float, decimals: int | None) -> tuple[float, float]:
    """Grid edges to values the column can hold (`decimals` digits), never an empty range."""
    if decimals is None:
        return float(lo), float(hi)
    f = 10.0**decimals
    a, b = math.ceil(round(lo * f, 9)) / f, math.floor(round(hi * f, 9)) / f
    return (a, b) if b >= a else (a, a)


def _apply_bounds(schema: TableSchema, bounds: dict[str, Any] | None) -> TableSchema:
    """Public `bounds=` of the model override the schema's min/max."""
    if not bounds:
        return schema
    cols = []
    for c in schema.columns:
        b = bounds.get(c.name)
        cols.append(c.model_copy(update={"min": float(b[0]), "max": float(b[1])}) if b is not None else c)
    return schema.model_copy(update={"columns": cols})
