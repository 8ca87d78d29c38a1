"""Quality score with SDMetrics' definitions (QualityReport: Column Shapes, Column Pair Trends).

- Column shape: numerical/datetime `1 - KS`, categorical/boolean `1 - TVD`; nulls dropped.
- Pair trend: two continuous columns `1 - |r_real - r_synth| / 2` (Pearson, pairwise-complete);
  otherwise `1 - TVD` of the two-way contingency table, continuous sides cut into 10
  equal-width bins of their own table (as SDMetrics does), nulls kept as a cell.
- Like SDMetrics 0.32's QualityReport, only pairs that are related in the real data count toward
  the pair score: |Pearson r| > 0.5 for two continuous columns, Cramér's V > 0.3 otherwise
  (`correlation_threshold`, `association_threshold`; set both to 0 to average every pair, the
  definition of SDMetrics before 0.32). Every pair's score is still listed in `pairs`.
- Overall = mean of the two property scores.
SDMetrics subsamples contingency pairs to 50,000 rows at random; we use every row (exact).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats.contingency import association

from synthloop.schema import ColumnKind, TableSchema, infer_schema
from synthloop.schema.inference import naive_utc

_CONTINUOUS = {ColumnKind.NUMERICAL, ColumnKind.DATETIME}
_DISCRETE = {ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN}
_KS_DECIMALS = 14  # sdmetrics rounds to sys.float_info.dig - 1 before KS
CORRELATION_THRESHOLD = 0.5  # sdmetrics.reports.utils.DEFAULT_REAL_CORRELATION_THRESHOLD
ASSOCIATION_THRESHOLD = 0.3  # sdmetrics.reports.utils.DEFAULT_REAL_ASSOCIATION_THRESHOLD


@dataclass
class QualityResult:
    score: float
    column_shapes: float
    column_pair_trends: float
    shapes: pd.DataFrame = field(repr=False)
    pairs: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quality_score": self.score, "column_shapes": self.column_shapes,
            "column_pair_trends": self.column_pair_trends,
            "shapes": self.shapes.to_dict(orient="records"),
            "pairs": self.pairs.to_dict(orient="records"),
        }


def _numeric(series: pd.Series, col_kind: ColumnKind, fmt: str | None) -> np.ndarray:
    if col_kind == ColumnKind.DATETIME:
        dt = series if pd.api.types.is_datetime64_any_dtype(series) else pd.to_datetime(series, format=fmt, errors="coerce")
        out = naive_utc(dt).astype("datetime64[ns]").astype("int64").to_numpy().astype(float)
        out[dt.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def ks_complement(real: np.ndarray, synth: np.ndarray) -> float:
    """1 - two-sample KS statistic (same as scipy.stats.ks_2samp's D), nulls dropped."""
    r = np.sort(np.round(real[~np.isnan(real)], _KS_DECIMALS))
    s = np.sort(np.round(synth[~np.isnan(synth)], _KS_DECIMALS))
    if r.size == 0 or s.size == 0:
        return float("nan")
    grid = np.concatenate([r, s])
    d = np.abs(np.searchsorted(r, grid, side="right") / r.size - np.searchsorted(s, grid, side="right") / s.size)
    return float(1.0 - d.max())


def tv_complement(real: pd.Series, synth: pd.Series) -> float:
    """1 - total variation distance of the category shares, nulls dropped."""
    r = real.dropna()
    s = synth.dropna()
    if r.empty or s.empty:
        return float("nan")
    pr = r.value_counts(normalize=True)
    ps = s.value_counts(normalize=True)
    pr, ps = pr.align(ps, fill_value=0.0)
    return float(1.0 - 0.5 * np.abs(pr - ps).sum())


def _codes(real: pd.Series, synth: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Joint integer codes for two columns' values (null is a value of its own)."""
    both = pd.concat([real, synth], ignore_index=True)
    codes, uniques = pd.factorize(both, use_na_sentinel=False)
    return codes[: len(real)], codes[len(real):], len(uniques)


def _bins(x: np.ndarray) -> np.ndarray:
    """SDMetrics' discretization: 10 equal-width bins of this table's own values; NaN -> 11."""
    finite = x[~np.isnan(x)]
    if finite.size == 0:
        return np.full(x.size, 11)
    edges = np.histogram_bin_edges(finite)
    return np.digitize(x, edges)


def contingency_similarity(r1: np.ndarray, r2: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float]:
    """(1 - TVD between the two-way frequency tables, Cramér's V of the real table).

    Inputs are integer codes shared by real and synthetic."""
    k1 = int(max(r1.max(initial=0), s1.max(initial=0))) + 1
    k2 = int(max(r2.max(initial=0), s2.max(initial=0))) + 1
    cells_r = r1.astype(np.int64) * k2 + r2
    cells_s = s1.astype(np.int64) * k2 + s2
    counts_r = np.bincount(cells_r, minlength=k1 * k2)
    pr = counts_r / r1.size
    ps = np.bincount(cells_s, minlength=k1 * k2) / s1.size
    table = counts_r.reshape(k1, k2)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    v = float(association(table, method="cramer")) if min(table.shape) >= 2 else float("nan")
    return float(1.0 - 0.5 * np.abs(pr - ps).sum()), v


def quality_score(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema | None = None,
                  correlation_threshold: float = CORRELATION_THRESHOLD,
                  association_threshold: float = ASSOCIATION_THRESHOLD) -> QualityResult:
    """The SDMetrics QualityReport score computed with NumPy (see module docstring)."""
    schema = schema or infer_schema(real)
    cols = [c for c in schema.columns if c.kind in _CONTINUOUS | _DISCRETE and c.name in synthetic.columns]
    cont: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    disc: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    shape_rows = []
    for c in cols:
        if c.kind in _CONTINUOUS:
            r = _numeric(real[c.name], c.kind, c.datetime_format)
            s = _numeric(synthetic[c.name], c.kind, c.datetime_format)
            cont[c.name] = (r, s)
            disc[c.name] = (_bins(r), _bins(s))
            shape_rows.append({"column": c.name, "metric": "KSComplement", "score": ks_complement(r, s)})
        else:
            rr, ss = real[c.name], synthetic[c.name]
            if c.kind == ColumnKind.BOOLEAN or rr.dtype != ss.dtype:
                rr, ss = rr.astype(object), ss.astype(object)
            shape_rows.append({"column": c.name, "metric": "TVComplement", "score": tv_complement(rr, ss)})
            rc, sc, _ = _codes(rr, ss)
            disc[c.name] = (rc, sc)
    shapes = pd.DataFrame(shape_rows, columns=["column", "metric", "score"])

    # all continuous pairs at once: pairwise-complete Pearson, as pandas computes it
    names = list(cont)
    corr_r = pd.DataFrame({k: v[0] for k, v in cont.items()}).corr() if names else None
    corr_s = pd.DataFrame({k: v[1] for k, v in cont.items()}).corr() if names else None
    pair_rows = []
    for a, b in itertools.combinations([c.name for c in cols], 2):
        if a in cont and b in cont:
            r_ab, s_ab = corr_r.loc[a, b], corr_s.loc[a, b]
            score = 1.0 - abs(r_ab - s_ab) / 2.0 if np.isfinite(r_ab) and np.isfinite(s_ab) else np.nan
            counts = bool(np.isfinite(r_ab) and (correlation_threshold <= 0 or abs(r_ab) > correlation_threshold))
            pair_rows.append({"column_1": a, "column_2": b, "metric": "CorrelationSimilarity", "score": score,
                              "real_correlation": r_ab, "synthetic_correlation": s_ab, "real_association": np.nan,
                              "counted": counts})
        else:
            # continuous sides are bin indices (0..11), discrete sides shared category codes: each is one axis
            (ra, sa), (rb, sb) = disc[a], disc[b]
            score, v = contingency_similarity(ra, rb, sa, sb)
            counts = bool(association_threshold <= 0 or (np.isfinite(v) and v > association_threshold))
            pair_rows.append({"column_1": a, "column_2": b, "metric": "ContingencySimilarity", "score": score,
                              "real_correlation": np.nan, "synthetic_correlation": np.nan, "real_association": v,
                              "counted": counts})
    pairs = pd.DataFrame(pair_rows, columns=["column_1", "column_2", "metric", "score", "real_correlation",
                                             "synthetic_correlation", "real_association", "counted"])
    shape_score = float(shapes["score"].mean()) if len(shapes) else float("nan")
    counted = pairs.loc[pairs["counted"].astype(bool), "score"] if len(pairs) else pd.Series(dtype=float)
    pair_score = float(counted.mean()) if counted.notna().any() else float("nan")
    overall = float(np.nanmean([shape_score, pair_score])) if not (np.isnan(shape_score) and np.isnan(pair_score)) else float("nan")
    return QualityResult(overall, shape_score, pair_score, shapes, pairs)

