"""Column tokenizers for the autoregressive synthesizer: every learned column becomes discrete tokens.

- Numerical (and datetimes spanning too many years): a *bin* token plus a *sub* token (position inside the bin).
  Values carrying at least one bin's worth of mass (spikes such as capital_gain == 0, or each
  age of a census table) get a bin of their own, so they come back exactly; the other values
  are cut into quantile bins, and each bin into `n_sub` rank groups whose [lo, hi] is stored.
  Decoding draws uniformly inside the chosen group (the codec then restores rounding), so the
  resolution is about 1 / (n_bins * n_sub) of the distribution. Missing values are a token.
- Datetime (epoch seconds): by parts, see `DatetimeTokenizer`: a quantile bin of the date (period),
  year, month, weekday, day of month and, only when the training data has times of day, a (bin, sub)
  pair for the time of day.
- Categorical / boolean: one token per category seen at least `rare_k` times, one shared
  *protected* token for rarer ones, and a token for missing. The protected token decodes uniformly
  to one of them: after `synthloop.transforms.release` these are only the release label ("other")
  or values of a domain the user declared public, never a rare training value, and no count of a
  rare value is stored.

Privacy guard (`rare_k > 0`, see `synthloop.transforms.release`): numbers are clipped to safe bounds
with at least `rare_k` rows beyond each (an outlier is not reproduced), every bin and every group
inside a bin holds at least `rare_k` rows, spikes need `rare_k` rows, and every stored bound is a
value held by at least `rare_k` rows or a round cut strictly between two training values, so the
tokenizer stores no exact rare value. `rare_k = 0` stores exact group bounds (the former behaviour).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from synthloop.errors import ModelFileError
from synthloop.transforms.release import group_edges, rank_groups, safe_bounds, safe_value_mask

_MAX_YEARS = 10_000  # a saved datetime tokenizer may not claim more years than this (model files are untrusted)


def _need(ok: bool, what: str) -> None:
    """Checks of a saved tokenizer's state (see BaseSynthesizer.load)."""
    if not ok:
        raise ModelFileError(f"model file: {what}")


def _first_rank(sorted_x: np.ndarray) -> np.ndarray:
    """Rank of the first occurrence of each value in a sorted array (ties share a rank)."""
    return np.searchsorted(sorted_x, sorted_x, side="left")


class NumericTokenizer:
    """Numerical column <-> (bin, sub) tokens; see module docstring."""

    def __init__(self, n_bins: int = 64, n_sub: int = 32, rare_k: int = 5):
        self.n_bins = n_bins
        self.n_sub = n_sub
        self.rare_k = rare_k

    def fit(self, x: np.ndarray) -> "NumericTokenizer":
        x = np.asarray(x, dtype=float)
        nan = np.isnan(x)
        v = np.sort(x[~nan])
        self.has_nan_ = bool(nan.any())
        if v.size == 0:
            self.bin_lo_ = np.zeros(0)
            self.bin_hi_ = np.zeros(0)
            self.sub_lo_ = np.zeros((0, 1))
            self.sub_hi_ = np.zeros((0, 1))
            self.clip_ = (0.0, 0.0)
            return self
        k = self.rare_k
        if k > 0:
            return self._fit_released(v)
        self.clip_ = (float(v[0]), float(v[-1]))
        v = np.clip(v, *self.clip_)
        uniq, counts = np.unique(v, return_counts=True)
        spike = counts >= v.size / self.n_bins
        rest = v[~np.isin(v, uniq[spike])]
        groups: list[np.ndarray] = [np.array([u]) for u in uniq[spike]]
        if rest.size:
            nb = max(1, int(round(self.n_bins * rest.size / v.size)))
            b = (_first_rank(rest) * nb) // rest.size
            cuts = np.flatnonzero(np.diff(b)) + 1
            # no bin may straddle a spike, so bins stay disjoint intervals
            cuts = np.union1d(cuts, np.searchsorted(rest, uniq[spike]))
            cuts = cuts[(cuts > 0) & (cuts < rest.size)]
            groups += np.split(rest, cuts)
        groups.sort(key=lambda g: g[0])
        nbin = len(groups)
        s = self.n_sub
        self.bin_lo_ = np.array([g[0] for g in groups], dtype=float)
        self.bin_hi_ = np.array([g[-1] for g in groups], dtype=float)
        self.sub_lo_ = np.full((nbin, s), np.nan)
        self.sub_hi_ = np.full((nbin, s), np.nan)
        for i, g in enumerate(groups):  # a loop over bins (<= n_bins + spikes), not rows
            sub = (_first_rank(g) * s) // g.size
            starts = np.flatnonzero(np.r_[True, np.diff(sub) > 0])
            ends = np.r_[starts[1:], g.size] - 1
            self.sub_lo_[i, sub[starts]] = g[starts]
            self.sub_hi_[i, sub[starts]] = g[ends]
        return self

    def _fit_released(self, v: np.ndarray) -> "NumericTokenizer":
        """Bins and groups of at least `rare_k` rows whose stored bounds are safe (module docstring).
        `v`: sorted finite values. Spikes need `rare_k` rows; a stretch between two spikes holding fewer
        than `rare_k` rows gets no bin (its values encode to the nearest bin)."""
        k = self.rare_k
        self.clip_ = safe_bounds(v, k)
        v = np.clip(v, *self.clip_)
        n = v.size
        safe = safe_value_mask(v, k)
        safe[[0, -1]] = True  # the clip bounds
        uniq, counts = np.unique(v, return_counts=True)
        spikes = uniq[counts >= max(n / self.n_bins, k)]
        is_spike = np.isin(v, spikes)
        rest = np.flatnonzero(~is_spike)
        seg = np.cumsum(is_spike)[rest]  # stretches of non-spike values between spikes
        bins: list[tuple[float, float, np.ndarray, np.ndarray]] = [(float(u), float(u), np.array([u]), np.array([u])) for u in spikes]
        if rest.size:
            cuts = np.flatnonzero(np.diff(seg)) + 1
            for idx in np.split(rest, cuts):  # a loop over stretches (<= spikes + 1), not rows
                if idx.size < k:
                    continue
                nb = max(1, int(round(self.n_bins * idx.size / n)))
                lab = rank_groups(v[idx], nb, k)
                starts = idx[np.flatnonzero(np.r_[True, np.diff(lab) > 0])]
                ends = np.r_[starts[1:] - 1, idx[-1]]
                blo, bhi = group_edges(v, starts, ends, k, safe=safe)
                for b in range(starts.size):  # a loop over bins
                    g = np.arange(starts[b], ends[b] + 1)
                    sl = rank_groups(v[g], self.n_sub, k)
                    s0 = g[np.flatnonzero(np.r_[True, np.diff(sl) > 0])]
                    s1 = np.r_[s0[1:] - 1, g[-1]]
                    slo, shi = group_edges(v, s0, s1, k, safe=safe)
                    slo[0], shi[-1] = blo[b], bhi[b]
                    bins.append((float(blo[b]), float(bhi[b]), slo, shi))
        if not bins:  # fewer than k rows in all: one bin spanning the (collapsed) safe bounds
            bins.append((self.clip_[0], self.clip_[1], np.array([self.clip_[0]]), np.array([self.clip_[1]])))
        bins.sort(key=lambda t: t[0])
        nbin = len(bins)
        self.bin_lo_ = np.array([b[0] for b in bins], dtype=float)
        self.bin_hi_ = np.array([b[1] for b in bins], dtype=float)
        self.sub_lo_ = np.full((nbin, self.n_sub), np.nan)
        self.sub_hi_ = np.full((nbin, self.n_sub), np.nan)
        for i, (_, _, slo, shi) in enumerate(bins):
            self.sub_lo_[i, :slo.size] = slo
            self.sub_hi_[i, :shi.size] = shi
        return self

    # -- shapes ------------------------------------------------------------------------------
    @property
    def n_bin_tokens(self) -> int:
        return int(self.bin_lo_.size + self.has_nan_)

    @property
    def nan_token(self) -> int:
        return int(self.bin_lo_.size)

    @property
    def needs_sub(self) -> bool:
        """False when every bin is a single value (the bin token alone is exact)."""
        return bool(np.any(self.bin_hi_ > self.bin_lo_))

    # -- encode / decode -------------------------------------------------------------------------
    def _bin_of(self, v: np.ndarray) -> np.ndarray:
        """Bin of each (clipped, non-missing) value: the bin holding it, else the nearest one."""
        hi_idx = np.searchsorted(self.bin_lo_, v, side="right") - 1  # last bin starting <= v
        hi_idx = np.clip(hi_idx, 0, self.bin_lo_.size - 1)
        # spike bins are points: a value equal to a spike's value belongs to it
        inside = (v >= self.bin_lo_[hi_idx]) & (v <= self.bin_hi_[hi_idx])
        nxt = np.clip(hi_idx + 1, 0, self.bin_lo_.size - 1)
        d_here = np.abs(v - np.clip(v, self.bin_lo_[hi_idx], self.bin_hi_[hi_idx]))
        d_next = np.abs(v - np.clip(v, self.bin_lo_[nxt], self.bin_hi_[nxt]))
        return np.where(inside | (d_here <= d_next), hi_idx, nxt)

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bin tokens, sub tokens) of `x`; missing -> the missing token with sub 0."""
        x = np.asarray(x, dtype=float)
        nan = np.isnan(x)
        bins = np.full(x.size, self.nan_token, dtype=np.int64)
        subs = np.zeros(x.size, dtype=np.int64)
        if self.bin_lo_.size == 0:
            return bins, subs
        v = np.clip(x[~nan], *self.clip_)
        b = self._bin_of(v)
        # sub token: the last group of the bin starting <= v (groups are sorted inside a bin)
        lo = self.sub_lo_[b]  # (m, s)
        ok = ~np.isnan(lo) & (lo <= v[:, None])
        s = np.where(ok.any(axis=1), self.n_sub - 1 - np.argmax(ok[:, ::-1], axis=1), np.argmax(~np.isnan(lo), axis=1))
        bins[~nan] = b
        subs[~nan] = s
        return bins, subs

    def decode(self, bins: np.ndarray, subs: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Values for tokens; `u` in [0, 1) places each value inside its group."""
        out = np.full(bins.size, np.nan)
        ok = bins < self.bin_lo_.size
        b, s = bins[ok], subs[ok]
        lo, hi = self.sub_lo_[b, s], self.sub_hi_[b, s]
        bad = np.isnan(lo)  # an unused group: fall back to the whole bin
        lo = np.where(bad, self.bin_lo_[b], lo)
        hi = np.where(bad, self.bin_hi_[b], hi)
        out[ok] = lo + u[ok] * (hi - lo)
        return out

    def group_bounds(self, bins: np.ndarray, subs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi] of the value group of each (bin, sub) token pair (missing bins give 0, 0)."""
        ok = bins < self.bin_lo_.size
        b = np.where(ok, bins, 0)
        lo, hi = self.sub_lo_[b, subs], self.sub_hi_[b, subs]
        lo = np.where(np.isnan(lo), self.bin_lo_[b], lo)
        hi = np.where(np.isnan(hi), self.bin_hi_[b], hi)
        return np.where(ok, lo, 0.0), np.where(ok, hi, 0.0)

    def allowed_bins(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """(rows, bins) mask of bins overlapping [lo, hi]; rows with none get the nearest bin."""
        lo = np.clip(lo, *self.clip_)
        hi = np.clip(hi, *self.clip_)
        m = (self.bin_hi_[None, :] >= lo[:, None]) & (self.bin_lo_[None, :] <= hi[:, None])
        none = ~m.any(axis=1)
        if none.any():
            m[np.flatnonzero(none), self._bin_of(lo[none])] = True
        return m

    def allowed_subs(self, bins: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        lo = np.clip(lo, *self.clip_)
        hi = np.clip(hi, *self.clip_)
        slo, shi = self.sub_lo_[bins], self.sub_hi_[bins]
        m = ~np.isnan(slo) & (shi >= lo[:, None]) & (slo <= hi[:, None])
        none = ~m.any(axis=1)
        if none.any():
            m[none] = ~np.isnan(slo[none])
        return m

    # -- persistence -----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"n_bins": self.n_bins, "n_sub": self.n_sub, "rare_k": self.rare_k, "has_nan": self.has_nan_,
                "clip": list(self.clip_)}
        return meta, {"bin_lo": self.bin_lo_, "bin_hi": self.bin_hi_, "sub_lo": self.sub_lo_, "sub_hi": self.sub_hi_}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "NumericTokenizer":
        lo, hi, slo, shi = (arrays.get(k) for k in ("bin_lo", "bin_hi", "sub_lo", "sub_hi"))
        _need(all(a is not None and a.dtype.kind == "f" for a in (lo, hi, slo, shi)), "numeric tokenizer: float arrays "
              "bin_lo, bin_hi, sub_lo, sub_hi are needed")
        _need(type(meta.get("n_sub")) is int and meta["n_sub"] >= 1 and lo.ndim == 1 and lo.shape == hi.shape
              and slo.shape == shi.shape == (lo.size, meta["n_sub"]), "numeric tokenizer: n_sub and the bin arrays "
              "do not fit together")
        _need(isinstance(meta.get("clip"), list) and len(meta["clip"]) == 2, "numeric tokenizer: 'clip' must be 2 numbers")
        tok = cls(meta["n_bins"], meta["n_sub"], meta["rare_k"])
        tok.has_nan_ = bool(meta["has_nan"])
        tok.clip_ = tuple(meta["clip"])
        tok.bin_lo_, tok.bin_hi_ = arrays["bin_lo"], arrays["bin_hi"]
        tok.sub_lo_, tok.sub_hi_ = arrays["sub_lo"], arrays["sub_hi"]
        return tok


class CategoryTokenizer:
    """Category codes (-1 = missing) <-> tokens with a protected token for rare categories."""

    def __init__(self, rare_k: int = 5):
        self.rare_k = rare_k

    def fit(self, codes: np.ndarray, n_categories: int) -> "CategoryTokenizer":
        codes = np.asarray(codes, dtype=np.int64)
        counts = np.bincount(codes[codes >= 0], minlength=n_categories)[:n_categories].astype(np.int64)
        frequent = counts >= max(self.rare_k, 1)
        self.counts_ = counts
        self.frequent_ = np.flatnonzero(frequent)
        self.rare_ = np.flatnonzero(~frequent & (counts > 0))
        self.has_nan_ = bool((codes < 0).any())
        self._build()
        return self

    def _build(self) -> None:
        f = self.frequent_.size
        self.rare_token_ = f if self.rare_.size else -1
        self.nan_token_ = f + (1 if self.rare_.size else 0) if self.has_nan_ else -1
        self.n_tokens_ = f + (1 if self.rare_.size else 0) + (1 if self.has_nan_ else 0)
        lut = np.full(self.counts_.size + 1, self.rare_token_ if self.rare_.size else 0, dtype=np.int64)
        lut[self.frequent_] = np.arange(f)
        lut[-1] = self.nan_token_ if self.has_nan_ else 0
        self._lut = lut  # index -1 = missing

    @property
    def n_tokens(self) -> int:
        return max(int(self.n_tokens_), 1)

    def encode(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.int64)
        return self._lut[np.where(codes < 0, -1, codes)]

    def decode(self, tokens: np.ndarray, u: np.ndarray) -> np.ndarray:
        out = np.full(tokens.size, -1, dtype=np.int64)
        f = self.frequent_.size
        freq = tokens < f
        out[freq] = self.frequent_[tokens[freq]] if f else -1
        if self.rare_.size:  # uniformly: a rare value's count is neither used nor stored
            rare = tokens == self.rare_token_
            out[rare] = self.rare_[np.minimum((u[rare] * self.rare_.size).astype(np.int64), self.rare_.size - 1)]
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        counts = self.counts_.copy()
        counts[self.rare_] = 0
        return ({"rare_k": self.rare_k, "has_nan": self.has_nan_},
                {"counts": counts, "frequent": self.frequent_, "rare": self.rare_})

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "CategoryTokenizer":
        counts, frequent, rare = (arrays.get(k) for k in ("counts", "frequent", "rare"))
        _need(all(a is not None and a.ndim == 1 for a in (counts, frequent, rare)) and counts.dtype.kind in "iuf"
              and frequent.dtype.kind in "iu" and rare.dtype.kind in "iu", "category tokenizer: 1-D arrays counts, "
              "frequent and rare are needed")
        _need(bool(((frequent >= 0) & (frequent < counts.size)).all() and ((rare >= 0) & (rare < counts.size)).all()),
              "category tokenizer: frequent and rare must index counts")
        tok = cls(meta["rare_k"])
        tok.has_nan_ = bool(meta["has_nan"])
        tok.counts_, tok.frequent_, tok.rare_ = arrays["counts"], arrays["frequent"], arrays["rare"]
        tok._build()
        return tok


_DAY = 86400.0


def _month_start(mi: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of the first day of month index `mi` (months since 1970-01)."""
    return np.asarray(mi, dtype=np.int64).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def date_parts(secs: np.ndarray) -> dict[str, np.ndarray]:
    """Calendar parts of finite epoch seconds: year, month (1-12), day (1-31), wday (0 = Monday),
    mi (months since 1970-01), days (since 1970-01-01) and time (seconds into the day)."""
    secs = np.asarray(secs, dtype=float)
    days = np.floor(secs / _DAY).astype(np.int64)
    mi = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return {"year": mi // 12 + 1970, "month": mi % 12 + 1, "day": days - _month_start(mi) + 1,
            "wday": (days + 3) % 7, "mi": mi, "days": days, "time": secs - days * _DAY}


def _prefer(base: np.ndarray, narrower: np.ndarray) -> np.ndarray:
    """Per row: `narrower` where it allows something, else `base`."""
    return np.where(narrower.any(axis=1, keepdims=True), narrower, base)


class DatetimeTokenizer:
    """Datetime column (epoch seconds) <-> calendar-part tokens, so calendar structure is learnable and kept.

    Tokens, in this order: a *period* (quantile bins of the date, spikes of their own, plus missing:
    the coarse position, learned as precisely as a number's bin), year, month, weekday, day of month
    and, only when some training value has a time of day, the time of day as a `NumericTokenizer`
    (bin, sub) pair. The weekday comes before the day, and the day is then one of the month's days
    with that weekday: weekday effects and month seasonality are tokens of their own.
    `allowed` masks each part by the parts drawn before it: a real day of the month (every date is
    valid), inside the period and the row's [lo, hi] range compared part by part (year, month, day,
    time), so ranges and exact values are conditioned exactly without rejection, and preferably only
    months, days of month and weekdays seen in training (a column always on the 1st, or only on
    weekdays, stays so); if the seen ones leave nothing inside the range, the range wins. Date-only
    columns stay date-only. Columns spanning more than `max_years` years are not handled (`usable_`
    is False; use NumericTokenizer).
    Under a range condition every part is drawn from the model among the values the range allows, so
    the result always lies in the range; a period only partly inside it keeps its whole probability
    (as a number's bin does), so dates near a range end can be over-represented.
    """

    def __init__(self, n_bins: int = 64, n_sub: int = 8, rare_k: int = 5, max_years: int = 128):
        self.n_bins = n_bins
        self.n_sub = n_sub
        self.rare_k = rare_k
        self.max_years = max_years

    def fit(self, x: np.ndarray) -> "DatetimeTokenizer":
        x = np.asarray(x, dtype=float)
        nan = np.isnan(x)
        v = np.sort(x[~nan])
        self.has_nan_ = bool(nan.any())
        self.usable_ = bool(v.size)
        if not v.size:
            return self
        k = self.rare_k
        # with the guard, the calendar facts (seen months, days, weekdays, the time-of-day grid) come from
        # the values inside the clip bounds: clipped rows pile up on a bound, which is no real date and
        # must not look like a seen one (the data may come clipped already, see transforms.release)
        self.clip_ = safe_bounds(v, k, _DAY) if k > 0 else (float(v[0]), float(v[-1]))
        p = date_parts(np.clip(v, *self.clip_))
        self.year0_ = int(p["year"][0])
        self.n_years_ = int(p["year"][-1]) - self.year0_ + 1
        self.usable_ = self.n_years_ <= self.max_years
        self.period_ = NumericTokenizer(self.n_bins, 1, k).fit(self._period_value(x))
        inner = v[(v > self.clip_[0]) & (v < self.clip_[1])] if k > 0 else v
        raw = date_parts(inner if inner.size else v) if k > 0 else p
        seen = max(k, 1)  # with the guard, a month, day or weekday counts as seen on >= k rows
        self.months_seen_ = np.bincount(raw["month"] - 1, minlength=12) >= seen
        self.days_seen_ = np.bincount(raw["day"] - 1, minlength=31) >= seen
        self.wdays_seen_ = np.bincount(raw["wday"], minlength=7) >= seen
        t = raw["time"]
        self.time_ = NumericTokenizer(self.n_bins, self.n_sub, self.rare_k).fit(t) if np.any(t != 0) else None
        # the grid times of day fall on (whole hours, minutes, seconds), kept when decoding; 0 = none
        self.time_step_ = next((float(s) for s in (3600, 60, 1) if np.all(np.mod(t, s) == 0)), 0.0)
        self._build()
        return self

    def _period_value(self, x: np.ndarray) -> np.ndarray:
        """What the period bins: the day (days since 1970) of each value; with the guard, a clipped value
        keeps the clip bound's fractional day, so the pile of clipped rows sits between two days and
        never on a real one (which would then look frequent and be stored)."""
        x = np.asarray(x, dtype=float)
        d = np.floor(np.clip(x, *self.clip_) / _DAY)
        if self.rare_k > 0:
            d = np.where(x < self.clip_[0], self.clip_[0] / _DAY, np.where(x > self.clip_[1], self.clip_[1] / _DAY, d))
        return d

    def _period_days(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[first, last] whole day of period bins `b`: the days inside its bounds (a bound may be a cut
        between two days, x.5), or the day it touches when none is inside (a clip-bound pile)."""
        lo, hi = self.period_.bin_lo_[b], self.period_.bin_hi_[b]
        first, last = np.ceil(lo), np.floor(hi)
        return np.where(first <= last, first, np.floor(lo)), last

    def _period_range(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[first, last] epoch seconds of period bins `b` (whole days)."""
        first, last = self._period_days(b)
        return first * _DAY, (last + 1) * _DAY - 1e-3

    def _build(self) -> None:
        """Parts and their vocabularies; a year (or month) that never varies is no token (less to train)."""
        self.parts_, self.vocab_ = ["period"], [max(self.period_.n_bin_tokens, 1)]
        one_year = self.n_years_ == 1
        self._fixed = {"year": 0, "month": int(np.argmax(self.months_seen_)), "tsub": 0}
        if not one_year:
            self.parts_.append("year")
            self.vocab_.append(self.n_years_)
        if not (one_year and self.months_seen_.sum() == 1):
            self.parts_.append("month")
            self.vocab_.append(12)
        self.parts_ += ["wday", "day"]
        self.vocab_ += [7, 31]
        if self.time_ is not None:
            self.parts_.append("tbin")
            self.vocab_.append(max(self.time_.n_bin_tokens, 1))
            if self.time_.needs_sub:
                self.parts_.append("tsub")
                self.vocab_.append(self.time_.n_sub)
        self._ix = {name: i for i, name in enumerate(self.parts_)}

    def _part(self, tokens: np.ndarray, name: str) -> np.ndarray:
        """Column `name` of (rows, parts) tokens; a part that is no token gives its fixed value."""
        i = self._ix.get(name)
        return tokens[:, i] if i is not None else np.full(tokens.shape[0], self._fixed[name], dtype=np.int64)

    @property
    def nan_token(self) -> int:
        return self.period_.nan_token

    def ordinal(self) -> list[np.ndarray]:
        """Ordinal position in [-1, 1] of each part's tokens (periods, years, days, times); 0 for months
        and weekdays, whose effects (seasons, weekends) are not monotone."""
        def lin(n: int, size: int) -> np.ndarray:
            return np.r_[np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(n), np.zeros(size - n)]

        nb = self.time_.bin_lo_.size if self.time_ is not None else 0
        ords = {"period": lin(self.period_.bin_lo_.size, self.vocab_[0]), "year": lin(self.n_years_, self.n_years_),
                "month": np.zeros(12), "wday": np.zeros(7), "day": lin(31, 31),
                "tbin": lin(nb, self.vocab_[self._ix["tbin"]] if nb else 0), "tsub": lin(self.n_sub, self.n_sub)}
        return [ords[p] for p in self.parts_]

    # -- encode ------------------------------------------------------------------------------------
    def encode(self, x: np.ndarray) -> np.ndarray:
        """(rows, parts) tokens; a missing value is the period's missing token with every other part 0."""
        x = np.asarray(x, dtype=float)
        nan = np.isnan(x)
        out = np.zeros((x.size, len(self.parts_)), dtype=np.int64)
        v = np.clip(x[~nan], *self.clip_)
        out[:, 0] = self.period_.encode(np.where(nan, np.nan, self._period_value(x)))[0]
        p = date_parts(v)
        cols = {"year": p["year"] - self.year0_, "month": p["month"] - 1, "wday": p["wday"], "day": p["day"] - 1}
        if self.time_ is not None:
            cols["tbin"], cols["tsub"] = self.time_.encode(p["time"])
        out[~nan, 1:] = np.column_stack([cols[name] for name in self.parts_[1:]])
        return out

    # -- conditioning ------------------------------------------------------------------------------
    def _bounds(self, period: np.ndarray | None, lo: np.ndarray, hi: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Parts of the per-row bounds: [lo, hi] (NaN = none) inside the learned range and, where they
        meet, inside the `period` token's dates. Date-only columns snap the bounds inwards to whole days
        when a whole day lies between them."""
        lo = np.clip(np.where(np.isnan(lo), -np.inf, lo), *self.clip_)
        hi = np.clip(np.where(np.isnan(hi), np.inf, hi), *self.clip_)
        if period is not None:
            b = np.clip(period, 0, max(self.period_.bin_lo_.size - 1, 0))
            r_lo, r_hi = self._period_range(b)
            p_lo = np.maximum(lo, r_lo)
            p_hi = np.minimum(hi, r_hi)
            meet = p_lo <= p_hi  # a range lying between two periods' dates keeps the range
            lo, hi = np.where(meet, p_lo, lo), np.where(meet, p_hi, hi)
        if self.time_ is None:
            lo_d, hi_d = np.ceil(lo / _DAY) * _DAY, np.floor(hi / _DAY) * _DAY
            ok = lo_d <= hi_d
            lo, hi = np.where(ok, lo_d, lo), np.where(ok, hi_d, hi)
        return date_parts(lo), date_parts(hi)

    def _time_bounds(self, days: np.ndarray, pl: dict[str, np.ndarray], ph: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi] time of day allowed on date `days` (the bounds' own times on their own dates)."""
        return (np.where(days == pl["days"], pl["time"], 0.0), np.where(days == ph["days"], ph["time"], _DAY))

    def _days(self, mi: np.ndarray, pl: dict[str, np.ndarray], ph: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """For month indices `mi` (rows, ...): (in range, seen, weekday, first day) over days 1-31, each
        (rows, ..., 31) but the first day (rows, ...). In range: a real day of the month inside the bounds;
        seen: its day of month and weekday both occur in the training data."""
        extra = (slice(None),) + (None,) * (mi.ndim - 1)
        first = _month_start(mi)
        d = np.arange(1, 32)
        valid = d <= (_month_start(mi + 1) - first)[..., None]
        valid &= (mi > pl["mi"][extra])[..., None] | (d >= pl["day"][extra][..., None])
        valid &= (mi < ph["mi"][extra])[..., None] | (d <= ph["day"][extra][..., None])
        wd = (((first + 2) % 7).astype(np.int8)[..., None] + d.astype(np.int8)) % 7
        return valid, valid & self.days_seen_ & self.wdays_seen_[wd], wd, first

    def allowed(self, part: int, prev: np.ndarray, lo: np.ndarray, hi: np.ndarray, conditioned: bool) -> np.ndarray:
        """(rows, vocab) mask of tokens allowed for part `part` given the earlier parts' tokens `prev`
        (rows, part) and per-row bounds `lo`, `hi` in epoch seconds (NaN = unbounded). With
        `conditioned`, missing is not allowed. Years and months holding a seen day in range are preferred.
        Computed once per distinct (earlier tokens, bounds) row."""
        lo = np.where(np.isnan(lo), -np.inf, lo)
        hi = np.where(np.isnan(hi), np.inf, hi)
        # one integer key per row (mixed radix over the earlier tokens and the distinct bounds)
        key, radix = np.zeros(prev.shape[0], dtype=np.int64), 1
        columns = [(prev[:, i], self.vocab_[i]) for i in range(part)]
        for b in (lo, hi):
            _, inv = np.unique(b, return_inverse=True)
            columns.append((np.asarray(inv).ravel(), int(inv.max()) + 1 if inv.size else 1))
        for values, size in columns:
            radix *= size
            if radix >= 2**62:  # too many combinations to key: no sharing
                return self._allowed(part, prev, lo, hi, conditioned)
            key = key * size + values
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        if first.size == key.size:
            return self._allowed(part, prev, lo, hi, conditioned)
        return self._allowed(part, prev[first], lo[first], hi[first], conditioned)[np.asarray(inverse).ravel()]

    def _allowed(self, part: int, prev: np.ndarray, lo: np.ndarray, hi: np.ndarray, conditioned: bool) -> np.ndarray:
        rows = prev.shape[0]
        name, size = self.parts_[part], self.vocab_[part]
        if name == "period":
            pl, ph = self._bounds(None, lo, hi)
            m = np.zeros((rows, size), dtype=bool)
            nb = self.period_.bin_lo_.size
            m[:, :nb] = self.period_.allowed_bins(pl["days"].astype(float), ph["days"].astype(float))
            if nb and not self.wdays_seen_.all():  # prefer periods whose days in range include a seen weekday
                first, last = self._period_days(np.arange(nb))
                a = np.maximum(first[None, :], pl["days"][:, None])
                z = np.minimum(last[None, :], ph["days"][:, None])
                seen = np.zeros((rows, nb), dtype=bool)
                for off in range(7):  # a loop over the days of a week
                    d = a + off
                    seen |= (d <= z) & self.wdays_seen_[((d + 3) % 7).astype(np.int64)]
                m[:, :nb] = _prefer(m[:, :nb], m[:, :nb] & seen)
            if self.has_nan_ and not conditioned:
                m[:, self.nan_token] = True
            return m
        nanrow = prev[:, 0] >= self.period_.bin_lo_.size
        pl, ph = self._bounds(prev[:, 0], lo, hi)
        if name == "year":
            y = self.year0_ + np.arange(self.n_years_)
            inside = (y >= pl["year"][:, None]) & (y <= ph["year"][:, None])
            # only the bounds' own years are cut by the range: do they still hold a seen day?
            edge = [self._days((yb[:, None] - 1970) * 12 + np.arange(12), pl, ph)[1].any(axis=(1, 2))
                    for yb in (pl["year"], ph["year"])]
            seen = inside & ((y != pl["year"][:, None]) | edge[0][:, None]) & ((y != ph["year"][:, None]) | edge[1][:, None])
            m = _prefer(inside, seen)
        else:
            year = self.year0_ + self._part(prev, "year")
            if name == "month":
                mi = (year[:, None] - 1970) * 12 + np.arange(12)
                m = (mi >= pl["mi"][:, None]) & (mi <= ph["mi"][:, None])
                has_seen_day = self._days(mi, pl, ph)[1].any(axis=2)
                for narrower in (m & has_seen_day, m & has_seen_day & self.months_seen_):
                    m = _prefer(m, narrower)
            else:
                mi = (year - 1970) * 12 + self._part(prev, "month")
                valid, seen, wd, first = self._days(mi, pl, ph)
                cand = valid
                # the most specific of: day of month and weekday seen, day seen, weekday seen, any real day
                for narrower in (valid & self.wdays_seen_[wd], valid & self.days_seen_, seen):
                    cand = _prefer(cand, narrower)
                if name == "wday":
                    m = (cand[:, :, None] & (wd[:, :, None] == np.arange(7))).any(axis=1)
                elif name == "day":
                    m = cand & (wd == self._part(prev, "wday")[:, None])
                else:
                    tlo, thi = self._time_bounds(first + self._part(prev, "day"), pl, ph)
                    nb = self.time_.bin_lo_.size
                    if name == "tbin":
                        m = np.zeros((rows, size), dtype=bool)
                        m[:, :nb] = self.time_.allowed_bins(tlo, thi)
                    else:
                        m = self.time_.allowed_subs(np.minimum(self._part(prev, "tbin"), nb - 1), tlo, thi)
        if nanrow.any():
            m[nanrow] = False
            m[nanrow, 0] = True
        return m

    # -- decode ------------------------------------------------------------------------------------
    def decode(self, tokens: np.ndarray, u: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
        """Epoch seconds of (rows, parts) tokens: the day is clipped to the month's length, the time of day
        drawn by `u` inside its group (on the training data's grid), the value kept inside [lo, hi]
        (NaN = unbounded), the period and the learned range."""
        n = tokens.shape[0]
        lo = np.full(n, np.nan) if lo is None else np.asarray(lo, dtype=float)
        hi = np.full(n, np.nan) if hi is None else np.asarray(hi, dtype=float)
        out = np.full(n, np.nan)
        ok = tokens[:, 0] < self.period_.bin_lo_.size
        t = tokens[ok]
        mi = (self.year0_ + self._part(t, "year") - 1970) * 12 + self._part(t, "month")
        first = _month_start(mi)
        days = first + np.minimum(self._part(t, "day") + 1, _month_start(mi + 1) - first) - 1
        pl, ph = self._bounds(t[:, 0], lo[ok], hi[ok])
        if self.time_ is not None:
            tlo, thi = self._time_bounds(days, pl, ph)
            bins = np.minimum(self._part(t, "tbin"), self.time_.bin_lo_.size - 1)
            glo, ghi = self.time_.group_bounds(bins, self._part(t, "tsub"))
            glo, ghi = np.maximum(glo, tlo), np.minimum(ghi, thi)
            ghi = np.maximum(ghi, glo)
            tod = glo + u[ok] * (ghi - glo)
            if self.time_step_:
                tod = np.clip(np.round(tod / self.time_step_) * self.time_step_, glo, ghi)
        else:
            tod = np.zeros(days.size)
        lo_b = pl["days"] * _DAY + pl["time"]
        hi_b = ph["days"] * _DAY + ph["time"]
        vals = np.clip(days * _DAY + tod, lo_b, hi_b)
        if self.time_ is not None and self.time_step_:  # a bound off the time grid: back onto it, inside the range
            up, dn = np.ceil(vals / self.time_step_) * self.time_step_, np.floor(vals / self.time_step_) * self.time_step_
            vals = np.where(up <= hi_b, up, np.where(dn >= lo_b, dn, vals))
        out[ok] = vals
        return out

    # -- persistence -------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        pm, pa = self.period_.state()
        meta: dict[str, Any] = {"n_bins": self.n_bins, "n_sub": self.n_sub, "rare_k": self.rare_k,
                                "max_years": self.max_years, "has_nan": self.has_nan_, "clip": list(self.clip_),
                                "year0": self.year0_, "n_years": self.n_years_, "time_step": self.time_step_,
                                "period": pm, "time": None}
        arrays = {"months_seen": self.months_seen_, "days_seen": self.days_seen_, "wdays_seen": self.wdays_seen_}
        arrays.update({f"period_{k}": v for k, v in pa.items()})
        if self.time_ is not None:
            tm, ta = self.time_.state()
            meta["time"] = tm
            arrays.update({f"time_{k}": v for k, v in ta.items()})
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "DatetimeTokenizer":
        n_years = meta.get("n_years")
        _need(type(n_years) is int and 1 <= n_years <= min(meta.get("max_years") or 0, _MAX_YEARS),
              f"datetime tokenizer: n_years must be between 1 and max_years (at most {_MAX_YEARS})")
        _need(all(arrays.get(k) is not None and arrays[k].shape == (size,)
                  for k, size in (("months_seen", 12), ("days_seen", 31), ("wdays_seen", 7))),
              "datetime tokenizer: arrays months_seen, days_seen, wdays_seen must have 12, 31 and 7 entries")
        tok = cls(meta["n_bins"], meta["n_sub"], meta["rare_k"], meta["max_years"])
        tok.has_nan_ = bool(meta["has_nan"])
        tok.usable_ = True
        tok.clip_ = tuple(meta["clip"])
        tok.year0_, tok.n_years_, tok.time_step_ = int(meta["year0"]), int(meta["n_years"]), float(meta["time_step"])
        tok.months_seen_ = arrays["months_seen"].astype(bool)
        tok.days_seen_ = arrays["days_seen"].astype(bool)
        tok.wdays_seen_ = arrays["wdays_seen"].astype(bool)
        sub = {p: {k[len(p) + 1:]: v for k, v in arrays.items() if k.startswith(p + "_")} for p in ("period", "time")}
        tok.period_ = NumericTokenizer.from_state(meta["period"], sub["period"])
        tok.time_ = NumericTokenizer.from_state(meta["time"], sub["time"]) if meta["time"] is not None else None
        tok._build()
        return tok
