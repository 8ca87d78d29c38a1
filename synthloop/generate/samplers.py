"""Statistical column samplers, each drawing a whole column at once with NumPy.

Categorical columns are drawn by quota (largest-remainder counts, then a seeded shuffle), so the
generated shares match the weights to within one row instead of drifting with sampling noise.
"""
from __future__ import annotations

import datetime as _dt
import zlib
from typing import Any

import numpy as np
import pandas as pd

from synthloop.spec.models import Distribution, Sampler, _as_datetime


def column_rng(seed: int, name: str) -> np.random.Generator:
    """One independent stream per column, so adding a column never changes the others."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, zlib.crc32(name.encode())]))


def quota_counts(shares: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to n closest to shares * n (largest remainder method)."""
    shares = np.asarray(shares, dtype=float)
    shares = shares / shares.sum()
    raw = shares * n
    counts = np.floor(raw).astype(int)
    short = n - counts.sum()
    if short > 0:
        order = np.argsort(-(raw - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def quota_draw(values: list[Any], shares: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly quota_counts(shares, n) of each value, in a random order."""
    counts = quota_counts(shares, n)
    out = np.repeat(np.arange(len(values)), counts)
    rng.shuffle(out)
    vals = np.empty(len(values), dtype=object)
    vals[:] = values
    return vals[out]


def _truncated(draw: Any, n: int, lo: float | None, hi: float | None, rng: np.random.Generator) -> np.ndarray:
    """Draw until every value lies in [lo, hi] (a few vectorized rounds), then clip the rest."""
    x = np.asarray(draw(n), dtype=float)
    if lo is None and hi is None:
        return x
    lo_ = -np.inf if lo is None else lo
    hi_ = np.inf if hi is None else hi
    for _ in range(20):
        bad = (x < lo_) | (x > hi_)
        k = int(bad.sum())
        if not k:
            break
        x[bad] = draw(k)
    return np.clip(x, lo_, hi_)


def _round(x: np.ndarray, decimals: int | None) -> pd.Series:
    if decimals is None:
        return pd.Series(x)
    if decimals == 0:
        return pd.Series(np.round(x)).astype("Int64")
    return pd.Series(np.round(x, decimals))


def draw(dist: Distribution, n: int, rng: np.random.Generator, seed: int, quotas: bool = True,
         shares: dict[Any, float] | None = None, start: int = 0) -> pd.Series:
    """`n` values of one distribution (shares override categorical weights, for targets)."""
    kind = dist.kind
    if kind == "categorical":
        weights = shares or dist.categorical or {}
        values = list(weights)
        p = np.array([weights[v] for v in values], dtype=float)
        if quotas:
            return pd.Series(quota_draw(values, p, n, rng))
        idx = rng.choice(len(values), size=n, p=p / p.sum())
        return pd.Series(np.asarray(values, dtype=object)[idx])
    if kind == "uniform":
        u = dist.uniform
        assert u is not None
        if u.decimals == 0:
            return pd.Series(rng.integers(int(np.ceil(u.min)), int(np.floor(u.max)) + 1, size=n)).astype("Int64")
        return _round(rng.uniform(u.min, u.max, size=n), u.decimals)
    if kind == "normal":
        d = dist.normal
        assert d is not None
        return _round(_truncated(lambda k: rng.normal(d.mean, d.std, size=k), n, d.min, d.max, rng), d.decimals)
    if kind == "lognormal":
        d = dist.lognormal
        assert d is not None
        return _round(_truncated(lambda k: rng.lognormal(d.mean, d.sigma, size=k), n, d.min, d.max, rng), d.decimals)
    if kind == "poisson":
        d = dist.poisson
        assert d is not None
        return _round(_truncated(lambda k: rng.poisson(d.lam, size=k), n, d.min, d.max, rng), d.decimals)
    if kind == "datetime":
        d = dist.datetime
        assert d is not None
        lo, hi = _as_datetime(d.start), _as_datetime(d.end)
        dated = not isinstance(d.start, _dt.datetime) and not isinstance(d.end, _dt.datetime)
        if dated:
            days = rng.integers(0, (hi - lo).days + 1, size=n)
            ts = pd.to_datetime(lo) + pd.to_timedelta(days, unit="D")
        else:
            secs = rng.integers(0, int((hi - lo).total_seconds()) + 1, size=n)
            ts = pd.to_datetime(lo) + pd.to_timedelta(secs, unit="s")
        s = pd.Series(ts)
        return s.dt.strftime(d.format) if d.format else s
    if kind == "faker":
        from faker import Faker

        d = dist.faker
        assert d is not None
        fake = Faker(d.locale)
        fake.seed_instance(int(rng.integers(0, 2**31 - 1)))
        gen = fake.unique if d.unique else fake
        fn = getattr(gen, d.provider)
        # Faker has no batch API; this loop is the provider itself, not our orchestration.
        return pd.Series([str(fn()).replace("\n", ", ") for _ in range(n)], dtype=object)
    if kind == "sequence":
        d = dist.sequence
        assert d is not None
        nums = np.arange(d.start + start, d.start + start + n).astype(str)
        return pd.Series(np.char.add(d.prefix, np.char.zfill(nums, d.digits)) if (d.prefix or d.digits) else nums.astype(int))
    raise AssertionError(kind)  # pragma: no cover


def sample_column(sampler: Sampler, frame: pd.DataFrame, n: int, rng: np.random.Generator, seed: int,
                  quotas: bool = True, shares: dict[Any, float] | None = None) -> pd.Series:
    """Draw a sampler column; with `by`, each case's distribution fills the rows of its value."""
    if not sampler.by:
        return draw(sampler, n, rng, seed, quotas, shares).reset_index(drop=True)
    key = frame[sampler.by].astype(str).to_numpy()
    out = pd.Series([None] * n, dtype=object)
    covered = np.zeros(n, dtype=bool)
    parts: list[pd.Series] = []
    for value, dist in sampler.cases.items():
        mask = (key == str(value)) & ~covered
        if mask.any():
            vals = draw(dist, int(mask.sum()), rng, seed, quotas)
            out.iloc[np.flatnonzero(mask)] = vals.to_numpy(dtype=object)
            parts.append(vals)
            covered |= mask
    if (~covered).any():
        vals = draw(sampler, int((~covered).sum()), rng, seed, quotas)
        out.iloc[np.flatnonzero(~covered)] = vals.to_numpy(dtype=object)
        parts.append(vals)
    return _common_dtype(out, parts)


def _common_dtype(out: pd.Series, parts: list[pd.Series]) -> pd.Series:
    kinds = {str(p.dtype) for p in parts}
    try:
        if kinds <= {"Int64"}:
            return out.astype("Int64")
        if kinds <= {"Int64", "float64", "int64"}:
            return out.astype(float)
        if all(k.startswith("datetime64") for k in kinds):
            return pd.to_datetime(out)
    except (TypeError, ValueError):
        pass
    return out


def apply_nulls(s: pd.Series, rate: float, rng: np.random.Generator) -> pd.Series:
    """Blank a share `rate` of the values (exact count, random positions)."""
    if rate <= 0 or len(s) == 0:
        return s
    k = int(round(rate * len(s)))
    idx = rng.choice(len(s), size=k, replace=False)
    s = s.copy()
    if str(s.dtype) == "Int64" or s.dtype == object:
        s.iloc[idx] = pd.NA if str(s.dtype) == "Int64" else None
    else:
        s.iloc[idx] = np.nan
    return s
