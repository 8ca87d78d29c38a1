"""Per-column encoders between data values and standard-normal scores (used by the copula).

Both use the distributional transform: a value with probability mass (a category, or a spike
such as capital_gain == 0) maps to a random point inside its CDF interval, so the scores are
exactly N(0, 1) and the inverse maps every score back to a value the column really takes.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from synthloop.transforms.release import safe_quantiles

_EPS = 1e-9


def _to_normal(u: np.ndarray) -> np.ndarray:
    return ndtri(np.clip(u, _EPS, 1 - _EPS))


class QuantileNormalEncoder:
    """Numerical column <-> normal score through its empirical quantile function.

    The quantile function is stored at `n_knots` probabilities (not the raw values), with linear
    interpolation between knots; runs of equal knots reproduce spikes exactly. With `k > 0` the knots
    are `synthloop.transforms.release.safe_quantiles`: at most about one knot per `k` rows, each a value
    held by at least `k` rows or a round cut between two values, ends clipped to the safe bounds, so
    no rare training value is stored (`k = 0`: exact order statistics, min and max included).
    """

    def __init__(self, n_knots: int = 4097, k: int = 0):
        self.n_knots = n_knots
        self.k = k

    def fit(self, x: np.ndarray) -> "QuantileNormalEncoder":
        x = np.asarray(x, dtype=float)
        if self.k > 0:
            self.quantiles_ = safe_quantiles(x, self.n_knots, self.k)
            self.probs_ = np.linspace(0.0, 1.0, self.quantiles_.size)
            return self
        probs = np.linspace(0.0, 1.0, self.n_knots)
        self.probs_ = probs
        self.quantiles_ = np.quantile(x, probs, method="inverted_cdf") if x.size else np.zeros_like(probs)
        self.quantiles_[0], self.quantiles_[-1] = x.min(), x.max()
        return self

    def transform(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Scores of the fitting data: exact ranks with random tie-breaking inside each tie's interval."""
        x = np.asarray(x, dtype=float)
        n = x.size
        lo = (rankdata(x, method="min") - 1) / n
        hi = rankdata(x, method="max") / n
        return _to_normal(lo + rng.random(n) * (hi - lo))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        # knots sit on a uniform probability grid: index arithmetic instead of a binary search
        q = self.quantiles_
        pos = ndtr(z) * (q.size - 1)
        i = np.minimum(pos.astype(np.int64), q.size - 2)
        return q[i] + (pos - i) * (q[i + 1] - q[i])

    def interval(self, lo_value: float, hi_value: float) -> tuple[float, float]:
        """Normal-score interval of the values in [lo_value, hi_value]; a spike maps to its whole mass."""
        q, p = self.quantiles_, self.probs_

        def cdf(x: float, side: str) -> float:
            i = int(np.searchsorted(q, x, side=side))
            if side == "left":  # first knot >= x, interpolated from the knot before
                if i == 0:
                    return 0.0
                if i == q.size:
                    return 1.0
                return float(p[i - 1] + (x - q[i - 1]) / (q[i] - q[i - 1]) * (p[i] - p[i - 1])) if q[i] > x else float(p[i])
            if i == q.size:  # last knot <= x
                return 1.0
            if i == 0:
                return 0.0
            return float(p[i - 1] + (x - q[i - 1]) / (q[i] - q[i - 1]) * (p[i] - p[i - 1])) if q[i - 1] < x else float(p[i - 1])

        u_lo, u_hi = cdf(lo_value, "left"), cdf(hi_value, "right")
        return float(_to_normal(np.array(u_lo))), float(_to_normal(np.array(max(u_lo, u_hi))))

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"n_knots": int(self.quantiles_.size)}, {"quantiles": self.quantiles_}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "QuantileNormalEncoder":
        enc = cls(meta["n_knots"])
        enc.quantiles_ = arrays["quantiles"]
        enc.probs_ = np.linspace(0.0, 1.0, enc.n_knots)
        return enc


class FrequencyEncoder:
    """Category codes 0..K-1 <-> normal score; each code owns an interval of width equal to its share.

    `order` (a permutation of the codes) sets where categories sit along the normal line; the
    default is code order.
    """

    def fit(self, codes: np.ndarray, n_categories: int, order: np.ndarray | None = None) -> "FrequencyEncoder":
        counts = np.bincount(codes, minlength=n_categories).astype(float)
        self.probs_ = counts / counts.sum()
        self.order_ = np.arange(n_categories) if order is None else np.asarray(order, dtype=np.int64)
        self._edges()
        return self

    def _edges(self) -> None:
        """lo_[code], hi_[code]: each code's CDF interval when codes are laid out in `order_`."""
        widths = self.probs_[self.order_]
        cum = np.concatenate([[0.0], np.cumsum(widths)])
        cum[-1] = 1.0
        self.cum_ = cum
        self.lo_ = np.empty_like(self.probs_)
        self.hi_ = np.empty_like(self.probs_)
        self.lo_[self.order_] = cum[:-1]
        self.hi_[self.order_] = cum[1:]

    def transform(self, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _to_normal(self.lo_[codes] + rng.random(codes.size) * self.probs_[codes])

    def inverse(self, z: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.cum_, ndtr(z), side="right") - 1
        pos = np.clip(pos, 0, self.probs_.size - 1)
        widths = self.probs_[self.order_]
        # a score that lands on a zero-width slot belongs to the nearest slot that has mass
        empty = widths[pos] == 0
        if empty.any():
            nonzero = np.flatnonzero(widths > 0)
            pos[empty] = nonzero[np.clip(np.searchsorted(nonzero, pos[empty]), 0, nonzero.size - 1)]
        return self.order_[pos]

    def interval(self, code: int) -> tuple[float, float]:
        return float(_to_normal(np.array(self.lo_[code]))), float(_to_normal(np.array(self.hi_[code])))

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"probs": self.probs_, "order": self.order_}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "FrequencyEncoder":
        enc = cls()
        enc.probs_ = arrays["probs"]
        enc.order_ = arrays["order"]
        enc._edges()
        return enc
