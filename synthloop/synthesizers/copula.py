"""Gaussian copula with empirical margins: exact column shapes, Gaussian dependence, exact conditioning.

Each learned column maps to one or two latent standard-normal scores (a value score, plus a
missing-indicator score for numerical columns with nulls; categories own an interval of the
normal line sized by their share). The latent correlation matrix is the whole model of dependence.
Conditioning turns a condition into per-row bounds on latent scores and samples the truncated
Gaussian exactly (one column) or by a vectorized Gibbs sweep (several); free columns then follow
the Gaussian conditional. No Python loop runs over rows.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtri

from synthloop.errors import ModelFileError
from synthloop.schema import ColumnKind
from synthloop.synthesizers._release import ReleaseGuardMixin
from synthloop.synthesizers.base import BaseSynthesizer
from synthloop.transforms import FrequencyEncoder, QuantileNormalEncoder


def _nearest_correlation(corr: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """Clip eigenvalues so the matrix is positive definite, then rescale to unit diagonal."""
    corr = np.nan_to_num((corr + corr.T) / 2.0)
    np.fill_diagonal(corr, 1.0)
    w, v = np.linalg.eigh(corr)
    if w.min() >= floor:
        return corr
    fixed = (v * np.maximum(w, floor)) @ v.T
    d = np.sqrt(np.diag(fixed))
    return fixed / np.outer(d, d)


class GaussianCopulaSynthesizer(ReleaseGuardMixin, BaseSynthesizer):
    """Fast, fully vectorized Gaussian copula. `random_state` seeds fitting and the default sample stream.

    `privacy_k` (default 5; 0 = off): no category or exact number held by fewer than `privacy_k` rows
    is stored or generated (rare categories become `rare_label`; margins are quantile knots that are
    frequent values or round cuts between values; outliers clipped), see synthloop.transforms.release.
    """

    name = "copula"

    def __init__(self, random_state: int | None = 0, n_knots: int = 4097, gibbs_sweeps: int = 25,
                 order_categories: bool = True, privacy_k: int = 5, rare_label: Any = "other", schema: Any = None):
        self.random_state = random_state
        self.privacy_k = privacy_k
        self.rare_label = rare_label
        self.order_categories = order_categories
        self.n_knots = n_knots
        self.gibbs_sweeps = gibbs_sweeps
        self.schema = schema

    # -- fit ----------------------------------------------------------------------------------
    def _category_orders(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Order each categorical column's categories along its most associated other column.

        A Gaussian copula can only express monotone dependence, so the order in which categories
        sit on the normal line decides how much of an association survives. Sorting categories by
        the mean score of their strongest partner (largest correlation ratio) turns e.g. education
        vs education_num into a monotone relation the copula reproduces.
        """
        probe: dict[str, np.ndarray] = {}
        for col in self.codec_.learned:  # a rough score per column: ranks, or codes by frequency
            x = encoded[col.name]
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                k = len(col.categories or [])
                codes = np.where(x < 0, k, x)
                counts = np.bincount(codes, minlength=k + 1)
                rank_of = np.empty(k + 1)
                rank_of[np.argsort(-counts, kind="stable")] = np.arange(k + 1)
                probe[col.name] = rank_of[codes]
            else:
                probe[col.name] = np.where(np.isnan(x), np.nanmedian(x) if (~np.isnan(x)).any() else 0.0, x)
        standardized = {k: (v - v.mean()) / (v.std() or 1.0) for k, v in probe.items()}
        orders: dict[str, np.ndarray] = {}
        for col in self.codec_.learned:
            if col.kind not in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) or len(col.categories or []) < 3:
                continue
            x = encoded[col.name]
            k = len(col.categories or [])
            codes = np.where(x < 0, k, x)
            counts = np.bincount(codes, minlength=k + 1).astype(float)
            best, best_eta, best_means = None, -1.0, None
            for other, z in standardized.items():
                if other == col.name:
                    continue
                means = np.bincount(codes, weights=z, minlength=k + 1) / np.maximum(counts, 1)
                eta = float((counts * means**2).sum() / z.size)  # between-group share of variance
                if eta > best_eta:
                    best, best_eta, best_means = other, eta, means
            if best is not None:
                orders[col.name] = np.argsort(best_means, kind="stable")
        return orders

    def _fit(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        encoded = self._clip_released(encoded)
        latents: list[dict[str, Any]] = []
        encoders: list[Any] = []
        scores: list[np.ndarray] = []
        valid: dict[int, np.ndarray] = {}  # latent index -> rows where its value is observed
        orders = self._category_orders(encoded, rng) if self.order_categories else {}
        for col in self.codec_.learned:
            x = encoded[col.name]
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                k = len(col.categories or [])
                codes = np.where(x < 0, k, x)  # missing is one more category
                enc = FrequencyEncoder().fit(codes, k + 1, order=orders.get(col.name))
                latents.append({"column": col.name, "role": "category", "k": k})
                encoders.append(enc)
                scores.append(enc.transform(codes, rng))
                continue
            nan = np.isnan(x)
            if nan.all():
                continue
            if nan.any():
                enc = FrequencyEncoder().fit(nan.astype(np.int64), 2)
                latents.append({"column": col.name, "role": "missing"})
                encoders.append(enc)
                scores.append(enc.transform(nan.astype(np.int64), rng))
            enc = QuantileNormalEncoder(self.n_knots, self._release_k()).fit(x[~nan])
            z = np.zeros(x.size)
            z[~nan] = enc.transform(x[~nan], rng)
            latents.append({"column": col.name, "role": "value"})
            encoders.append(enc)
            scores.append(z)
            valid[len(scores) - 1] = ~nan
        self.latents_ = latents
        self.encoders_ = encoders
        if scores:
            # synthloop.runners.training sums the same products over partitions (map-reduce) instead
            pairwise = getattr(self, "_correlation_override", None) or _pairwise_correlation
            self.correlation_ = _nearest_correlation(pairwise(np.column_stack(scores), valid))
        else:
            self.correlation_ = np.zeros((0, 0))

    # -- sample -------------------------------------------------------------------------------
    def _latent_bounds(self, n: int, known: dict[str, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        d = len(self.latents_)
        lo = np.full((n, d), -np.inf)
        hi = np.full((n, d), np.inf)
        for j, (lat, enc) in enumerate(zip(self.latents_, self.encoders_)):
            spec = known.get(lat["column"])
            if spec is None or spec.get("generated"):
                continue
            mask = spec["mask"]
            if lat["role"] == "category":
                codes = spec["codes"][mask]
                lo[mask, j] = ndtri(np.clip(enc.lo_[codes], 1e-9, 1 - 1e-9))
                hi[mask, j] = ndtri(np.clip(enc.hi_[codes], 1e-9, 1 - 1e-9))
            elif lat["role"] == "missing":  # a conditioned value is present
                lo[mask, j], hi[mask, j] = enc.interval(0)
            else:
                pairs = np.column_stack([spec["lo"][mask], spec["hi"][mask]])
                uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
                bounds = np.array([enc.interval(a, b) for a, b in uniq])  # one call per distinct value
                lo[mask, j] = bounds[inv.ravel(), 0]
                hi[mask, j] = bounds[inv.ravel(), 1]
        return lo, hi

    def _sample_latent(self, n: int, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        sigma = self.correlation_
        d = sigma.shape[0]
        constrained = np.flatnonzero(np.isfinite(lo).any(axis=0) | np.isfinite(hi).any(axis=0))
        if constrained.size == 0:
            return rng.standard_normal((n, d)) @ np.linalg.cholesky(sigma).T
        free = np.setdiff1d(np.arange(d), constrained)
        c = constrained
        z_c = _truncnorm(np.zeros((n, c.size)), np.ones(c.size), lo[:, c], hi[:, c], rng)
        if c.size > 1:
            s_cc = sigma[np.ix_(c, c)]
            prec = np.linalg.inv(s_cc)
            for _ in range(self.gibbs_sweeps):  # loops over sweeps and columns only; rows are vectorized
                for i in range(c.size):
                    # conditional of z_i given the others, from the precision matrix
                    var = 1.0 / prec[i, i]
                    mean = -(z_c @ prec[i] - prec[i, i] * z_c[:, i]) * var
                    z_c[:, i] = _truncnorm(mean[:, None], np.array([np.sqrt(var)]), lo[:, c[i]][:, None], hi[:, c[i]][:, None], rng)[:, 0]
        z = np.empty((n, d))
        z[:, c] = z_c
        if free.size:
            s_cc = sigma[np.ix_(c, c)]
            s_fc = sigma[np.ix_(free, c)]
            w = np.linalg.solve(s_cc, s_fc.T)  # (c, f)
            cond_cov = sigma[np.ix_(free, free)] - s_fc @ w
            chol = np.linalg.cholesky(_nearest_correlation_cov(cond_cov))
            z[:, free] = z_c @ w + rng.standard_normal((n, free.size)) @ chol.T
        return z

    def _sample(self, n: int, rng: np.random.Generator, known: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
        if known:
            lo, hi = self._latent_bounds(n, known)
            z = self._sample_latent(n, rng, lo, hi)
        else:
            z = self._sample_latent(n, rng, np.full((1, len(self.latents_)), -np.inf), np.full((1, len(self.latents_)), np.inf))
            z = z if z.shape[0] == n else rng.standard_normal((n, len(self.latents_))) @ np.linalg.cholesky(self.correlation_).T
        out: dict[str, np.ndarray] = {}
        missing: dict[str, np.ndarray] = {}
        for j, (lat, enc) in enumerate(zip(self.latents_, self.encoders_)):
            name = lat["column"]
            if lat["role"] == "category":
                codes = enc.inverse(z[:, j])
                out[name] = np.where(codes == lat["k"], -1, codes)
            elif lat["role"] == "missing":
                missing[name] = enc.inverse(z[:, j]) == 1
            else:
                out[name] = enc.inverse(z[:, j])
        for name, miss in missing.items():
            out[name] = np.where(miss, np.nan, out[name])
        for col in self.codec_.learned:  # all-null numerical columns
            out.setdefault(col.name, np.full(n, np.nan))
        for name, spec in known.items():  # ranges: clip the interpolated value into the asked range
            if "lo" in spec and name in out:
                m = spec["mask"]
                out[name][m] = np.clip(out[name][m], spec["lo"][m], spec["hi"][m])
        return out

    # -- persistence --------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {"correlation": self.correlation_}
        metas = []
        for j, (lat, enc) in enumerate(zip(self.latents_, self.encoders_)):
            m, a = enc.state()
            metas.append({**lat, "encoder": m})
            arrays.update({f"latent{j}_{k}": v for k, v in a.items()})
        return {"latents": metas}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        _check_copula_state(meta, arrays, {c.name: c for c in self.codec_.learned})
        self.correlation_ = arrays["correlation"]
        self.latents_, self.encoders_ = [], []
        for j, lat in enumerate(meta["latents"]):
            a = {k.split("_", 1)[1]: v for k, v in arrays.items() if k.startswith(f"latent{j}_")}
            enc_meta = lat.pop("encoder")
            enc = QuantileNormalEncoder.from_state(enc_meta, a) if lat["role"] == "value" else FrequencyEncoder.from_state(enc_meta, a)
            self.latents_.append(lat)
            self.encoders_.append(enc)


def _check_copula_state(meta: dict[str, Any], arrays: dict[str, np.ndarray], learned: dict[str, Any]) -> None:
    """A saved copula's parts fit together (model files are untrusted: see BaseSynthesizer.load):
    one latent per (column, role), encoders sized by their arrays, a valid correlation matrix."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ModelFileError(f"model file: {what}")

    latents = meta.get("latents")
    need(isinstance(latents, list), "header field 'model.latents' must be a list")
    for j, lat in enumerate(latents):
        where = f"header field 'model.latents[{j}]'"
        need(isinstance(lat, dict) and isinstance(lat.get("encoder"), dict), f"{where} must be an object with an 'encoder'")
        need(lat.get("role") in ("value", "category", "missing"), f"{where}: unknown role {str(lat.get('role'))[:40]!r}")
        need(lat.get("column") in learned, f"{where}: column {str(lat.get('column'))[:60]!r} is not a learned column of the schema")
        a = {k.split("_", 1)[1]: v for k, v in arrays.items() if k.startswith(f"latent{j}_")}
        if lat["role"] == "value":
            q = a.get("quantiles")
            need(q is not None and q.ndim == 1 and q.size >= 2 and q.dtype.kind == "f" and bool(np.isfinite(q).all())
                 and bool((np.diff(q) >= 0).all()), f"array 'latent{j}_quantiles' must hold at least 2 sorted finite numbers")
            need(lat["encoder"].get("n_knots") == q.size, f"{where}: n_knots does not match array 'latent{j}_quantiles'")
        else:
            probs, order = a.get("probs"), a.get("order")
            need(probs is not None and probs.ndim == 1 and probs.size >= 1 and probs.dtype.kind == "f"
                 and bool(np.isfinite(probs).all()) and bool((probs >= 0).all()) and probs.sum() > 0,
                 f"array 'latent{j}_probs' must hold shares >= 0")
            need(order is not None and order.dtype.kind in "iu" and order.shape == probs.shape
                 and bool((np.sort(order) == np.arange(probs.size)).all()), f"array 'latent{j}_order' must be a permutation of the categories")
            if lat["role"] == "category":
                need(lat.get("k") == probs.size - 1 and type(lat.get("k")) is int
                     and lat["k"] == len(learned[lat["column"]].categories or []),
                     f"{where}: 'k' does not match the column's categories and array 'latent{j}_probs'")
            else:
                need(probs.size == 2, f"array 'latent{j}_probs' of a missing-value indicator must hold 2 shares")
    corr = arrays.get("correlation")
    d = len(latents)
    need(corr is not None and corr.shape == (d, d) and corr.dtype.kind == "f", f"array 'correlation' must be {d} x {d} (one row per latent)")
    if d:
        need(bool(np.isfinite(corr).all()) and np.allclose(corr, corr.T) and np.allclose(np.diag(corr), 1.0),
             "array 'correlation' is not a correlation matrix (symmetric, unit diagonal)")
        try:
            np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            need(False, "array 'correlation' is not positive definite")


def _pairwise_correlation(z: np.ndarray, valid: dict[int, np.ndarray]) -> np.ndarray:
    """Correlation of N(0, 1) scores over the rows where both are observed (missing values do not dilute it)."""
    n, d = z.shape
    if n < 2:
        return np.eye(d)
    m = np.ones((n, d))
    for j, mask in valid.items():
        m[:, j] = mask
    zm = z * m
    cross = zm.T @ zm
    sq = (zm * z).T @ m  # sq[i, j] = sum over rows valid for both of z_i^2
    denom = np.sqrt(sq * sq.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, cross / denom, 0.0)
    return np.clip(corr, -1.0, 1.0)


def _nearest_correlation_cov(cov: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    """Symmetrize and floor the eigenvalues of a covariance so Cholesky succeeds."""
    cov = (cov + cov.T) / 2.0
    w, v = np.linalg.eigh(cov)
    return (v * np.maximum(w, floor)) @ v.T


def _truncnorm(mean: np.ndarray, std: np.ndarray, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vectorized draws of N(mean, std^2) truncated to [lo, hi]; point intervals return the point."""
    mean, lo, hi = np.broadcast_arrays(mean, lo, hi)
    std = np.broadcast_to(std, mean.shape)
    a = (lo - mean) / std
    b = (hi - mean) / std
    out = np.empty(mean.shape)
    point = np.isclose(lo, hi, rtol=0, atol=1e-12) & np.isfinite(lo)
    free = ~point
    if free.any():
        from scipy.stats import truncnorm  # ~0.5 s to import: only for conditional sampling

        out[free] = truncnorm.rvs(a[free], b[free], loc=mean[free], scale=std[free], random_state=rng)
    out[point] = lo[point]
    return out
