"""Mode-specific normalization (CTGAN/TVAE): a numerical column as (scalar in [-1, 1], one-hot mode).

A variational (Dirichlet-process) Gaussian mixture finds the column's modes; each value is
represented by the mode it is drawn from (sampled from its posterior responsibilities, as in the
CTGAN paper) and its offset from that mode's mean in units of 4 standard deviations. Missing values
get a mode of their own, so no separate indicator column is needed.

The mixture is fitted on at most `max_fit_rows` values: a subsample pins down a handful of modes as
well as the full column does, at a fraction of the cost; the transform itself is vectorized.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture

_SCALE = 4.0


class ModeSpecificNormalizer:
    """One numerical column <-> (alpha, mode one-hot). `n_modes_` counts the null mode when present."""

    def __init__(self, max_modes: int = 10, weight_threshold: float = 0.005, max_fit_rows: int = 5000,
                 max_iter: int = 100, random_state: int = 0):
        self.max_modes = max_modes
        self.weight_threshold = weight_threshold
        self.max_fit_rows = max_fit_rows
        self.max_iter = max_iter
        self.random_state = random_state

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, rng: np.random.Generator | None = None) -> "ModeSpecificNormalizer":
        x = np.asarray(x, dtype=float)
        nan = np.isnan(x)
        self.has_null_ = bool(nan.any())
        v = x[~nan]
        self.shift_ = float(v.mean()) if v.size else 0.0
        self.scale_ = float(v.std()) if v.size and v.std() > 0 else 1.0
        z = (v - self.shift_) / self.scale_
        uniq = np.unique(z)
        if uniq.size <= 1:
            self.means_ = np.array([uniq[0] if uniq.size else 0.0])
            self.stds_ = np.array([1.0])
            self.weights_ = np.array([1.0])
        else:
            if z.size > self.max_fit_rows:
                rng = rng or np.random.default_rng(self.random_state)
                z = rng.choice(z, self.max_fit_rows, replace=False)
            k = int(min(self.max_modes, np.unique(z).size))
            gm = BayesianGaussianMixture(
                n_components=k, weight_concentration_prior_type="dirichlet_process",
                weight_concentration_prior=0.001, max_iter=self.max_iter, n_init=1,
                random_state=self.random_state,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm.fit(z.reshape(-1, 1))
            keep = gm.weights_ > self.weight_threshold
            if not keep.any():
                keep[np.argmax(gm.weights_)] = True
            self.means_ = gm.means_.ravel()[keep]
            self.stds_ = np.sqrt(gm.covariances_.ravel()[keep])
            self.weights_ = gm.weights_[keep] / gm.weights_[keep].sum()
        self.stds_ = np.maximum(self.stds_, 1e-3)
        return self

    @property
    def n_modes_(self) -> int:
        return int(self.means_.size + self.has_null_)

    @property
    def output_dim(self) -> int:
        """1 (alpha) + number of modes."""
        return 1 + self.n_modes_

    # -- transform --------------------------------------------------------------------------------
    def responsibilities(self, z: np.ndarray) -> np.ndarray:
        """Posterior probability of each (non-null) mode for standardized values `z`, shape (n, k)."""
        logp = (np.log(self.weights_) - np.log(self.stds_)
                - 0.5 * ((z[:, None] - self.means_) / self.stds_) ** 2)
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        return p / p.sum(axis=1, keepdims=True)

    def transform(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Returns `alpha` (n,) in [-1, 1] and `mode` (n,) ints; NaN -> the null mode (last) with alpha 0."""
        x = np.asarray(x, dtype=float)
        nan = np.isnan(x)
        z = (np.where(nan, self.shift_, x) - self.shift_) / self.scale_
        p = self.responsibilities(z)
        u = rng.random(z.size)[:, None]
        mode = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)
        alpha = np.clip((z - self.means_[mode]) / (_SCALE * self.stds_[mode]), -0.99, 0.99)
        if self.has_null_:
            mode = np.where(nan, self.means_.size, mode)
            alpha = np.where(nan, 0.0, alpha)
        return alpha, mode

    def transform_onehot(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, 1 + n_modes) float32 block: alpha then the mode one-hot."""
        alpha, mode = self.transform(x, rng)
        out = np.zeros((alpha.size, self.output_dim), dtype=np.float32)
        out[:, 0] = alpha
        out[np.arange(alpha.size), 1 + mode] = 1.0
        return out

    def inverse(self, alpha: np.ndarray, mode: np.ndarray) -> np.ndarray:
        """Values from alpha and mode index; the null mode gives NaN."""
        mode = np.asarray(mode, dtype=np.int64)
        k = self.means_.size
        m = np.clip(mode, 0, k - 1)
        z = np.clip(alpha, -1.0, 1.0) * _SCALE * self.stds_[m] + self.means_[m]
        x = z * self.scale_ + self.shift_
        if self.has_null_:
            x = np.where(mode >= k, np.nan, x)
        return x

    # -- persistence ------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"has_null": self.has_null_, "shift": self.shift_, "scale": self.scale_}
        return meta, {"means": self.means_, "stds": self.stds_, "weights": self.weights_}

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "ModeSpecificNormalizer":
        obj = cls()
        obj.has_null_, obj.shift_, obj.scale_ = bool(meta["has_null"]), float(meta["shift"]), float(meta["scale"])
        obj.means_, obj.stds_, obj.weights_ = arrays["means"], arrays["stds"], arrays["weights"]
        return obj
