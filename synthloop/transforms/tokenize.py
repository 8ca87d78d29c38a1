"""Column tokenizers for the autoregressive synthesizer: every learned column becomes 1-2 discrete tokens.

- Numerical / datetime: a *bin* token plus a *sub* token (position inside the bin).
  Values carrying at least one bin's worth of mass (spikes such as capital_gain == 0, or each
  age of a census table) get a bin of their own, so they come back exactly; the other values
  are cut into quantile bins, and each bin into `n_sub` rank groups whose [min, max] is stored.
  Decoding draws uniformly inside the chosen group (the codec then restores rounding), so the
  resolution is about 1 / (n_bins * n_sub) of the distribution. Missing values are a token.
- Categorical / boolean: one token per category seen at least `rare_k` times, one shared
  *protected* token for rarer ones (decoded to one of them at random, by their shares, so a
  rare value is never tied to the row it came from), and a token for missing.

Privacy guard: with `rare_k > 0`, numerical values are first clipped to the `rare_k`-th smallest
and largest observed values, so no single extreme value (an outlier that identifies a person)
can be reproduced.
"""
from __future__ import annotations

from typing import Any

import numpy as np


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
        if k > 0 and v.size > 2 * k:
            self.clip_ = (float(v[k - 1]), float(v[-k]))
        else:
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
        self._spike_values = uniq[spike]
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
        if self.rare_.size:
            rare = tokens == self.rare_token_
            cum = np.cumsum(self.counts_[self.rare_]) / self.counts_[self.rare_].sum()
            out[rare] = self.rare_[np.minimum(np.searchsorted(cum, u[rare], side="right"), self.rare_.size - 1)]
        return out

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"rare_k": self.rare_k, "has_nan": self.has_nan_},
                {"counts": self.counts_, "frequent": self.frequent_, "rare": self.rare_})

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "CategoryTokenizer":
        tok = cls(meta["rare_k"])
        tok.has_nan_ = bool(meta["has_nan"])
        tok.counts_, tok.frequent_, tok.rare_ = arrays["counts"], arrays["frequent"], arrays["rare"]
        tok._build()
        return tok
