"""Differentially private synthesizer of the MST family: noisy low-order marginals + a tree model.

Algorithm (McKenna, Miklau & Sheldon, "Winning the NIST Contest: A scalable and general approach to
differentially private synthetic data", JPC 2021, "MST"; AIM is its adaptive successor, McKenna et al.,
"AIM: An Adaptive and Iterative Mechanism for Differentially Private Synthetic Data", VLDB 2022):

1. Discretize each learned column into *fine cells* from public information only: the schema's
   categories, its numerical bounds (or `bounds=`), whether nulls occur. Integer columns with a small
   range get one cell per value; other numerical columns get the union of `n_bins` equal-width bins
   and `n_bins` bins equal on an asinh scale (heavy tails: amounts, incomes) plus point cells at the
   lower bound and at 0 (spikes such as capital_gain == 0 are common). No bin edge depends on the data.
2. Measure every column's fine 1-way histogram with Gaussian noise (rho / 3).
3. Compress (post-processing of step 2): group fine cells into *coarse cells*; categories whose noisy
   count is under 3 sigma share one cell (as MST does), numerical cells are merged into contiguous
   groups of about equal noisy mass (at most `max_coarse`).
4. Select a spanning tree of column pairs with the exponential mechanism (rho / 6): each round picks
   a pair joining two components, scored by the L1 distance between its true coarse 2-way marginal
   and the independent estimate from step 2 (sensitivity 1).
5. Measure the selected coarse 2-way marginals with Gaussian noise (rho / 2).
6. Inference (post-processing): a tree-structured model is exact and cheap. Coarse 1-way marginals
   are the inverse-variance average of all measurements that cover them; each noisy table is projected
   onto non-negative tables of its total (least squares), 2-way cells under 2 sigma are dropped as
   noise, and each edge's 2-way table is fitted to those
   marginals by iterative proportional fitting. Sampling is ancestral (root, then children given
   parents), with exact conditioning by one upward message pass; then the position inside the coarse
   cell (a Gaussian copula along numerical edges, its correlation fitted to the edge's table), which
   picks the fine cell and the value inside it. Vectorized over rows.

Privacy: neighbouring tables differ by adding or removing one row, so every marginal has L2
sensitivity 1; the Gaussian mechanism with scale sigma is 1 / (2 sigma^2)-zCDP, the exponential
mechanism with parameter eps is eps^2 / 8-zCDP (Cesar & Rogers 2021), zCDP composes by addition
(Bun & Steinke 2016), and the total rho is converted to (epsilon, delta) with the tight conversion of
Canonne, Kamath & Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020, Prop. 12).
The noise (discrete Gaussian counts, Gumbel selection) comes from synthloop.privacy.mechanisms: OS
entropy through OpenDP, never `random_state`, which seeds only post-processing and sampling.

The domain (bounds, categories, decimals, missing shares, id patterns) is either declared public in the
schema (`public: true`) or paid for: `domain="dp"` (the default) spends `domain_share` of the budget
estimating it (synthloop.privacy.domain); `domain="public"` spends nothing on it and refuses a column
that is not declared public. A value outside the released domain is clipped (numbers) or left out of
that column's counts (categories). The row count is not public: the model's default sample size is
the noisy estimate.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from synthloop.errors import DataError, ModelFileError, PrivacyError
from synthloop.privacy import domain as dp_domain
from synthloop.privacy import mechanisms
from synthloop.schema import ColumnKind, TableSchema
from synthloop.synthesizers.base import BaseSynthesizer

_CATEGORICAL = (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
SPLIT = (1 / 3, 1 / 6, 1 / 2)  # what the domain leaves: 1-way marginals, tree selection, 2-way marginals
Z_CELL = 2.0  # 2-way cells whose projected noisy count is under this many sigma are set to 0 before IPF


# accounting lives in synthloop.privacy.accounting; these names stay importable from here
from synthloop.privacy.accounting import (Budget, cdp_delta, cdp_eps, cdp_rho, describe_parts,  # noqa: E402,F401
                                          exponential_epsilon, gaussian_sigma)


# -- helpers ---------------------------------------------------------------------------------------
def _count(idx: np.ndarray, size: int) -> np.ndarray:
    """Counts per cell; index -1 (a value outside the released domain) counts nowhere."""
    return np.bincount(idx[idx >= 0], minlength=size)


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of an (n, k) matrix of non-negative weights (rows need not sum to 1)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _ipf(table: np.ndarray, rows: np.ndarray, cols: np.ndarray, iters: int = 50) -> np.ndarray:
    """Scale a positive table so its row and column sums match the targets (same total)."""
    t = table.copy()
    for _ in range(iters):
        t *= (rows / np.maximum(t.sum(axis=1), 1e-300))[:, None]
        t *= (cols / np.maximum(t.sum(axis=0), 1e-300))[None, :]
    return t


def _asinh_scale(lo: float, hi: float, decimals: int | None) -> float:
    """Where the asinh grid turns from linear to logarithmic: the column's resolution (its decimals), but
    at least 1e-5 of its largest magnitude so a float column's cells are not spent on digits it barely uses.
    From the public bounds and decimals only."""
    span = max(abs(lo), abs(hi), 1e-12)
    step = 10.0 ** -(decimals if decimals is not None else 6)
    return float(max(step, span * 1e-5))


def _edges(lo: float, hi: float, n_bins: int, scale: float) -> np.ndarray:
    """Bin edges of a numerical column: the union of `n_bins` equal-width bins and `n_bins` bins equal on the
    asinh(x / scale) scale. Equal width alone puts nearly all of a heavy-tailed column (amounts, incomes) in
    its first bin; the asinh bins follow its decades, the equal-width ones keep a flat column resolved."""
    lin = np.linspace(lo, hi, n_bins + 1)
    t = np.linspace(np.arcsinh(lo / scale), np.arcsinh(hi / scale), n_bins + 1)
    edges = np.unique(np.concatenate([lin, scale * np.sinh(t)]))
    edges = np.clip(edges, lo, hi)
    keep = np.concatenate([[True], np.diff(edges) > (hi - lo) * 1e-9])
    edges = edges[keep]
    edges[0], edges[-1] = lo, hi
    return edges


def _ndtr(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr
    return ndtr(x)


def _ndtri(p: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri
    return ndtri(p)


def _scores(bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """E[Z | a < Z < b] of a standard normal per cell (the cell's normal score)."""
    a, b = bounds
    mass = np.maximum(_ndtr(b) - _ndtr(a), 1e-300)
    pdf = lambda z: np.where(np.isfinite(z), np.exp(-0.5 * np.where(np.isfinite(z), z, 0.0) ** 2), 0.0) / math.sqrt(2 * math.pi)  # noqa: E731
    return (pdf(a) - pdf(b)) / mass


def _latent_rho(cov: float, bp: tuple[np.ndarray, np.ndarray], bc: tuple[np.ndarray, np.ndarray],
                sp: np.ndarray, sc: np.ndarray) -> float:
    """The correlation of a standard bivariate normal that, cut into these cells, gives the observed covariance
    of the cells' (centred) normal scores: a one-dimensional polychoric fit, by bisection (the covariance grows
    with the correlation). E[s_c | Z_p = z] is exact; the outer expectation is a quadrature over z."""
    z = np.linspace(-8, 8, 801)
    wz = np.exp(-0.5 * z * z)
    wz /= wz.sum()
    cell_p = np.clip(np.searchsorted(bp[1], z, side="left"), 0, sp.size - 1)
    outer = sp[cell_p] * wz

    def model(r: float) -> float:
        sd = math.sqrt(max(1.0 - r * r, 1e-12))
        probs = _ndtr((bc[1][None, :] - r * z[:, None]) / sd) - _ndtr((bc[0][None, :] - r * z[:, None]) / sd)
        return float(outer @ (probs @ sc))

    lo, hi = -0.995, 0.995
    if cov <= model(lo):
        return lo
    if cov >= model(hi):
        return hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if model(mid) < cov:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _truncated_position(mu: np.ndarray, sd: float, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where a draw of N(mu, sd^2) truncated to the cell [a, b] of the latent normal falls inside the
    cell, as a share in [0, 1) of the cell's standard normal mass (inverse-CDF sampling, vectorized)."""
    pa, pb = _ndtr((a - mu) / sd), _ndtr((b - mu) / sd)
    q = pa + rng.random(mu.size) * (pb - pa)
    z = mu + sd * _ndtri(np.clip(q, 1e-15, 1 - 1e-15))
    z = np.where(pb - pa > 1e-12, z, np.where(mu < a, a, b))  # the cell is far in the tail: its near edge
    ca, cb = _ndtr(a), _ndtr(b)
    frac = (_ndtr(np.clip(z, a, b)) - ca) / np.maximum(cb - ca, 1e-300)
    return np.clip(frac, 0.0, 1.0 - 1e-12)


def _fine_at(g: np.ndarray, w: np.ndarray, codes: np.ndarray, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fine cell at share `frac` of each row's coarse cell's weight (fine cells in value order), and the
    position inside that fine cell."""
    order = np.argsort(g, kind="stable")  # fine cells grouped by coarse cell, value order kept
    gs, ws = g[order], w[order]
    cum = np.cumsum(ws)
    k = int(g.max()) + 1
    tot = np.bincount(g, weights=w, minlength=k)
    start = np.concatenate([[0.0], np.cumsum(tot)[:-1]])
    first = np.searchsorted(gs, np.arange(k), side="left")
    last = np.searchsorted(gs, np.arange(k), side="right") - 1
    target = start[codes] + frac * tot[codes]
    pos = np.searchsorted(cum, target, side="right")
    pos = np.clip(pos, first[codes], last[codes])
    before = cum[pos] - ws[pos]
    u = np.clip((target - before) / np.maximum(ws[pos], 1e-300), 0.0, 1.0 - 1e-12)
    return order[pos], u


def _cell_share(g: np.ndarray, w: np.ndarray, codes: np.ndarray, f: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Where rows whose fine cell `f` and position `u` inside it are known sit inside their coarse cell, as a
    share of its weight (the inverse of `_fine_at`)."""
    k = int(g.max()) + 1
    tot = np.bincount(g, weights=w, minlength=k)
    order = np.argsort(g, kind="stable")
    cum = np.zeros(g.size)
    cum[order] = np.cumsum(w[order])
    start = np.concatenate([[0.0], np.cumsum(tot)[:-1]])
    return np.clip((cum[f] - w[f] + u * w[f] - start[codes]) / np.maximum(tot[codes], 1e-300), 0.0, 1.0)


def _to_latent(frac: np.ndarray, bounds: tuple[np.ndarray, np.ndarray], codes: np.ndarray) -> np.ndarray:
    """The latent normal value at share `frac` of each row's coarse cell [a, b] (equal shares of normal mass)."""
    ca, cb = _ndtr(bounds[0][codes]), _ndtr(bounds[1][codes])
    return _ndtri(np.clip(ca + frac * (cb - ca), 1e-12, 1 - 1e-12))


def _project(y: np.ndarray, total: float) -> np.ndarray:
    """Euclidean projection of noisy counts onto {x >= 0, sum x = total}: max(y - tau, 0) with the tau
    that gives the total (Duchi et al. 2008; sort-based, O(k log k)). Post-processing only."""
    flat = y.ravel().astype(float)
    if total <= 0 or flat.size == 0:
        return np.zeros_like(y, dtype=float)
    srt = np.sort(flat)[::-1]
    css = np.cumsum(srt) - total
    idx = np.arange(1, flat.size + 1)
    rho = int(np.flatnonzero(srt - css / idx > 0)[-1])
    tau = css[rho] / (rho + 1)
    return np.maximum(flat - tau, 0.0).reshape(y.shape)


class _Find:
    """Union-find over column indices (for the spanning-tree selection)."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


class DPMarginalSynthesizer(BaseSynthesizer):
    """(epsilon, delta)-differentially private synthesizer (MST: noisy 1- and 2-way marginals, tree model).

    `domain`: "dp" (default) estimates every column's domain that the schema does not declare public
    under DP, from `domain_share` of the budget; "public" spends nothing on it and refuses a column
    that is not declared public (schema `public: true`). `bounds`: {column: [low, high]} public bounds
    for numerical/datetime columns (datetimes in epoch seconds). Values outside the domain are clipped.
    """

    name = "dp"
    _encode_options = {"strict": False, "unknown": -2}

    def __init__(self, epsilon: float = 1.0, delta: float = 1e-6, random_state: int | None = 0, n_bins: int = 64,
                 max_int_cells: int = 128, max_coarse: int = 16, bounds: dict[str, list[float]] | None = None,
                 domain: str = "dp", domain_share: float = 0.1, schema: Any = None):
        self.epsilon = epsilon
        self.delta = delta
        self.random_state = random_state
        self.n_bins = n_bins
        self.max_int_cells = max_int_cells
        self.max_coarse = max_coarse
        self.bounds = bounds
        self.domain = domain
        self.domain_share = domain_share
        self.schema = schema

    # -- the domain: public or paid for (synthloop.privacy.domain) -------------------------------
    def _release(self, schema: TableSchema, data: pd.DataFrame) -> tuple[TableSchema, pd.DataFrame]:
        """The schema this model may store: public columns as declared, the rest paid for under DP."""
        if self.domain not in ("dp", "public"):
            raise DataError(f"domain must be 'dp' (estimate it under DP) or 'public' (declared in the schema), got {self.domain!r}")
        share = float(self.domain_share) if self.domain == "dp" else 0.0
        if not 0 <= share < 1:
            raise DataError(f"domain_share must be in [0, 1), got {self.domain_share}")
        plan = dp_domain.plan(schema, self.bounds)
        thresholds = any(q in ("categories", "id_pattern") for _, q in plan)
        self.budget_ = budget = Budget(float(self.epsilon), float(self.delta),
                                       threshold_delta_share=dp_domain.THRESHOLD_DELTA_SHARE if thresholds else 0.0)
        if plan and self.domain == "public":
            dp_domain.refuse_undeclared(schema, type(self).__name__, "domain='public' spends no budget on it")
        # categories are discovered by thresholding the noisy 1-way counts the model measures anyway
        own = [(n, q) for n, q in plan if q != "categories"]
        rho_domain = share * budget.rho if own else 0.0
        if own and not rho_domain > 0:
            dp_domain.refuse_undeclared(schema.model_copy(update={"columns": [schema[n] for n, _ in own]}),
                                        type(self).__name__, "domain_share=0 spends no budget on it")
        dom = dp_domain.release_domain(schema, data, rho_domain, budget.delta_threshold, self.bounds,
                                       defer_categories=True)
        if own:
            budget.spend("domain", rho_domain, dom.delta, note="bounds, decimals, missing shares, id patterns")
        released = dom.schema
        self._discovered: dict[str, dict[Any, float]] = {}
        if dom.deferred:
            sigma1 = self._one_way_sigma(released, budget.rho - rho_domain)
            cut = mechanisms.threshold_for(sigma1, dom.threshold_delta_each)
            cols = []
            for col in released.columns:
                if col.name in dom.deferred:
                    fields, kept = dp_domain.discover_categories(col, data[col.name], sigma1, cut)
                    self._discovered[col.name] = kept
                    dom.estimated[col.name] = ["categories", "missing share"]
                    col = col.model_copy(update=fields)
                cols.append(col)
            released = TableSchema.model_validate({**released.model_dump(), "columns": [c.model_dump() for c in cols]})
            budget.spend("category_discovery", 0.0, len(dom.deferred) * mechanisms.threshold_delta(sigma1, cut),
                         note="a category is kept only if its noisy 1-way count clears "
                              f"{cut} (the 1-way marginals' own noise, no extra rho)")
        dom.schema = released
        self.domain_ = dom
        return released, data

    @staticmethod
    def _one_way_sigma(schema: TableSchema, rho: float) -> float:
        """Noise of the 1-way counts: a third of what the domain left (all of it for one column)."""
        d = sum(c.learned for c in schema.columns)
        return gaussian_sigma(rho / 3 if d > 1 else rho, max(d, 1))

    # -- discretization (public information only) ------------------------------------------------
    def _cells(self, col) -> dict[str, Any]:
        """Fine cells of one column: `left`, `right`, `point` per cell, and whether the last cell is null."""
        found = getattr(self, "_discovered", {}).get(col.name)
        null = bool(col.missing_share > 0) if found is None else dp_domain.NULL in found
        if col.kind in _CATEGORICAL:
            k = len(col.categories or [])
            return {"column": col.name, "kind": "cat", "k": k, "null": null or k == 0,
                    "left": np.arange(k, dtype=float), "right": np.arange(k, dtype=float), "point": np.ones(k, bool)}
        lo, hi = col.min, col.max  # the released schema holds public `bounds=` already
        if lo is None or hi is None or not np.isfinite([lo, hi]).all():
            return {"column": col.name, "kind": "num", "k": 0, "null": True, "lo": 0.0, "hi": 0.0,
                    "left": np.zeros(0), "right": np.zeros(0), "point": np.zeros(0, bool)}
        if hi < lo:
            raise DataError(f"column '{col.name}': public bounds [{lo}, {hi}] are empty; give low <= high")
        if col.kind == ColumnKind.NUMERICAL and col.decimals == 0 and hi - lo + 1 <= self.max_int_cells:
            vals = np.arange(math.ceil(lo), math.floor(hi) + 1, dtype=float)
            left, right, point = vals, vals.copy(), np.ones(vals.size, bool)
        else:
            points = [lo] + ([0.0] if lo < 0 < hi else [])
            scale = _asinh_scale(lo, hi, col.decimals)
            edges = _edges(lo, hi, self.n_bins, scale) if hi > lo else np.array([lo, hi])
            left = np.concatenate([points, edges[:-1]])
            right = np.concatenate([points, edges[1:]])
            point = np.concatenate([np.ones(len(points), bool), np.zeros(edges.size - 1, bool)])
            order = np.lexsort((~point, left))  # by value, a point before the bin that starts there
            left, right, point = left[order], right[order], point[order]
            return {"column": col.name, "kind": "num", "k": int(left.size), "null": null, "lo": lo, "hi": hi,
                    "left": left, "right": right, "point": point, "scale": scale}
        return {"column": col.name, "kind": "num", "k": int(left.size), "null": null, "lo": lo, "hi": hi,
                "left": left, "right": right, "point": point}

    @staticmethod
    def _fine_index(cell: dict[str, Any], x: np.ndarray) -> np.ndarray:
        """Fine cell of every value; -1 (counted nowhere) for a category outside the released domain and
        for a null when the domain has no null cell."""
        k = cell["k"]
        null_cell = k if cell["null"] else -1
        if cell["kind"] == "cat":
            return np.where(x == -1, null_cell, np.where(x < 0, -1, x)).astype(np.int64)
        nan = np.isnan(x)
        if k == 0:
            return np.where(nan, null_cell, -1).astype(np.int64)
        v = np.clip(np.where(nan, cell["lo"], x), cell["lo"], cell["hi"])
        left, point = cell["left"], cell["point"]
        pvals = left[point]
        pidx = np.flatnonzero(point)
        bidx = np.flatnonzero(~point)
        if bidx.size == 0:  # one cell per integer value
            idx = pidx[np.clip(np.searchsorted(pvals, np.round(v)), 0, pidx.size - 1)]
        else:
            idx = bidx[np.clip(np.searchsorted(left[bidx], v, side="right") - 1, 0, bidx.size - 1)]
            pos = np.clip(np.searchsorted(pvals, v), 0, pvals.size - 1)
            hit = pvals[pos] == v
            idx = np.where(hit, pidx[pos], idx)
        return np.where(nan, null_cell, idx).astype(np.int64)

    # -- fit ---------------------------------------------------------------------------------------
    def _fit(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        learned_rules = [r for r in self.constraints_ if getattr(r, "combinations_from_rows", False)]
        if learned_rules:
            raise PrivacyError(f"{type(self).__name__}: DP fit refused: {learned_rules[0].describe()} would store the "
                               f"combinations (and counts) read from the private rows; list its `combinations:` in the "
                               f"schema (public knowledge) or drop the rule")
        cols = [c for c in self.codec_.learned]
        budget = self.budget_
        self.rho_ = budget.rho
        rest = self.rho_ - sum(budget.spent.values())
        d = len(cols)
        cells = [self._cells(c) for c in cols]
        fine = [self._fine_index(cell, encoded[cell["column"]]) for cell in cells]
        sizes = [cell["k"] + int(cell["null"]) for cell in cells]
        self.cells_ = cells
        self.measurements_: list[dict[str, Any]] = []
        if d == 0:
            self.coarse_, self.weights_, self.tree_ = [], [], []
            self.noisy_n_ = float(self.domain_.n_hat or 0.0)
            self.n_rows_ = max(int(round(self.noisy_n_)), 0)
            self.sigmas_ = {"one_way": 0.0, "two_way": 0.0}
            self.privacy_ = self._statement()
            return
        # selection needs only to rank pairs; the 2-way tables carry the dependence the samples show (on
        # credit at eps=1 moving a sixth of the budget from selection to them raised quality ~0.005)
        rho1, rho_sel, rho2 = (rest * SPLIT[0], rest * SPLIT[1], rest * SPLIT[2]) if d > 1 else (rest, 0.0, 0.0)
        budget.spend("one_way_marginals", rho1, note="noisy 1-way counts of every column")
        if d > 1:
            budget.spend("tree_selection", rho_sel, note="exponential-mechanism choice of the column pairs")
            budget.spend("two_way_marginals", rho2, note="noisy 2-way counts of the chosen pairs")

        # 2. noisy fine 1-way marginals: d measurements of sensitivity 1 share rho1
        sigma1 = gaussian_sigma(rho1, d)
        noisy1 = []
        for cell, f, k in zip(cells, fine, sizes):
            found = self._discovered.get(cell["column"])
            if found is not None:  # measured (and thresholded) when the categories were discovered
                cats = self.schema_[cell["column"]].categories or []
                nulls = [found.get(dp_domain.NULL, 0.0)] if cell["null"] else []  # no category kept: all null
                y = np.array([found[c] for c in cats] + nulls, dtype=float)
            else:
                y = mechanisms.gaussian_counts(_count(f, k), sigma1)
            noisy1.append(y)
            self.measurements_.append({"clique": [cell["column"]], "sigma": sigma1, "noisy": y})

        # 3. compress (post-processing)
        n_hat1 = self._n_hat1 = float(np.mean([y.sum() for y in noisy1]))
        coarse = [self._compress(cell, y, sigma1, n_hat1) for cell, y in zip(cells, noisy1)]
        kc = [int(g.max()) + 1 for g in coarse]
        codes = [np.where(f >= 0, g[np.maximum(f, 0)], -1) for g, f in zip(coarse, fine)]

        def pair_counts(i: int, j: int) -> np.ndarray:
            ok = (codes[i] >= 0) & (codes[j] >= 0)
            return np.bincount(codes[i][ok] * kc[j] + codes[j][ok], minlength=kc[i] * kc[j])

        # 4. select a spanning tree with the exponential mechanism
        edges: list[tuple[int, int]] = []
        if d > 1:
            p1 = []
            for g, y, k in zip(coarse, noisy1, kc):
                c = np.maximum(np.bincount(g, weights=y, minlength=k), 0) + 1e-9
                p1.append(c / c.sum())
            pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
            scores = np.empty(len(pairs))
            for t, (i, j) in enumerate(pairs):
                scores[t] = np.abs(pair_counts(i, j) - n_hat1 * np.outer(p1[i], p1[j]).ravel()).sum()
            eps_em = exponential_epsilon(rho_sel, d - 1)
            uf = _Find(d)
            for _ in range(d - 1):
                ok = np.flatnonzero([uf.find(i) != uf.find(j) for i, j in pairs])
                i, j = pairs[int(ok[mechanisms.noisy_argmax(scores[ok], eps_em)])]
                edges.append((i, j))
                uf.union(i, j)

        # 5. noisy coarse 2-way marginals of the tree's edges
        noisy2 = []
        if edges:
            sigma2 = gaussian_sigma(rho2, len(edges))
            for i, j in edges:
                y = mechanisms.gaussian_counts(pair_counts(i, j).reshape(kc[i], kc[j]), sigma2)
                noisy2.append(y)
                self.measurements_.append({"clique": [cells[i]["column"], cells[j]["column"]], "sigma": sigma2, "noisy": y})
        else:
            sigma2 = 0.0
        self.sigmas_ = {"one_way": sigma1, "two_way": sigma2}

        # 6. inference (post-processing only from here on)
        self._estimate(cells, coarse, kc, noisy1, sigma1, edges, noisy2, sigma2)
        self.n_rows_ = max(int(round(self.noisy_n_)), 1)  # the exact count is private
        self.privacy_ = self._statement()
        self.__dict__.pop("_discovered", None)

    def _compress(self, cell: dict[str, Any], y: np.ndarray, sigma: float, n_hat: float) -> np.ndarray:
        """Fine cell -> coarse cell, from noisy counts only."""
        k = cell["k"]
        size = y.size
        g = np.zeros(size, np.int64)
        thresh = 3.0 * sigma
        if cell["kind"] == "cat":
            keep = np.flatnonzero(y[:k] >= thresh)
            g[:k] = keep.size  # rare categories share one cell
            g[keep] = np.arange(keep.size)
            nxt = keep.size + int(keep.size < k)
        else:
            target = max(thresh, n_hat / max(self.max_coarse, 1))
            mass = np.maximum(y[:k], 0)
            g[:k] = self._mass_groups(cell, mass, target, thresh, n_hat)
            nxt = int(g[:k].max()) + 1 if k else 0
        if cell["null"]:
            g[k] = nxt
        return g

    def _mass_groups(self, cell: dict[str, Any], mass: np.ndarray, target: float, thresh: float, n_hat: float) -> np.ndarray:
        """Contiguous groups of fine cells of about `target` noisy mass each; a group that would also span more
        than 1 / max_coarse of the column's (asinh) scale is cut earlier while both sides keep enough mass to be
        measured (a quarter of the target, at least 2 x 3 sigma). Equal-mass cells alone put a heavy tail (the
        top 6% of an amount, 150,000 to 1,000,000) in one cell, so the tables cannot say that large amounts
        go with large amounts, which is most of such a column's correlations."""
        k = mass.size
        if k == 0:
            return np.zeros(0, np.int64)
        scale = cell.get("scale")
        pos = np.arcsinh(cell["left"] / scale) if scale else cell["left"].astype(float)
        span = (pos[-1] - pos[0]) / max(self.max_coarse, 1)
        small = max(2.0 * thresh, target / 4)
        rest = mass[::-1].cumsum()[::-1]  # mass from each cell to the end
        out = np.zeros(k, np.int64)
        group, m, start = 0, 0.0, pos[0]
        for i in range(k):  # fine cells, not rows: at most a few hundred
            if i > 0 and (m >= target or (pos[i] - start > span and m >= small and rest[i] >= small)):
                group, m, start = group + 1, 0.0, pos[i]
            out[i] = group
            m += mass[i]
        return out

    def _estimate(self, cells, coarse, kc, noisy1, sigma1, edges, noisy2, sigma2) -> None:
        d = len(cells)
        # total count: inverse-variance average of every measurement's sum
        totals = [(y.sum(), y.size * sigma1**2) for y in noisy1] + [(y.sum(), y.size * sigma2**2) for y in noisy2]
        if self.domain_.n_hat is not None:  # the domain's noisy row count, when it measured one
            totals.append((self.domain_.n_hat, self.domain_.sigmas["row_count"] ** 2))
        w = np.array([1.0 / v for _, v in totals])
        n_hat = max(float(np.dot(w, [s for s, _ in totals]) / w.sum()), 1.0)
        self.noisy_n_ = n_hat
        # coarse 1-way marginals: inverse-variance average of the 1-way and the incident 2-ways
        margins = []
        for v in range(d):
            k = kc[v]
            num = np.zeros(k)
            den = np.zeros(k)
            groups = np.bincount(coarse[v], minlength=k).astype(float)
            var1 = groups * sigma1**2
            num += np.bincount(coarse[v], weights=noisy1[v], minlength=k) / var1
            den += 1.0 / var1
            for (i, j), y in zip(edges, noisy2):
                if v == i:
                    num += y.sum(axis=1) / (y.shape[1] * sigma2**2)
                    den += 1.0 / (y.shape[1] * sigma2**2)
                elif v == j:
                    num += y.sum(axis=0) / (y.shape[0] * sigma2**2)
                    den += 1.0 / (y.shape[0] * sigma2**2)
            m = np.maximum(num / den, 0) + 1e-6
            margins.append(m / m.sum())
        # fine weights inside coarse cells (never exactly 0, so any condition stays possible)
        # noisy counts are projected onto non-negative tables of the estimated total (the least-squares
        # estimate): clipping at 0 instead would add about 0.4 sigma to every empty cell, spreading a sixth
        # of the rows of a 16 x 16 table uniformly over it and washing out strong correlations
        weights = [_project(y, max(y.sum(), 1.0)) + 1e-6 * max(sigma1, 1.0) for y in noisy1]
        # orient the tree from the column of highest degree; a forest is impossible (spanning tree)
        adj: dict[int, list[tuple[int, int]]] = {v: [] for v in range(d)}
        for e, (i, j) in enumerate(edges):
            adj[i].append((j, e))
            adj[j].append((i, e))
        root = max(range(d), key=lambda v: len(adj[v])) if edges else 0
        order: list[dict[str, Any]] = [{"node": root, "parent": -1, "cond": margins[root]}]
        seen = {root}
        queue = [root]
        while queue:
            p = queue.pop(0)
            for c, e in adj[p]:
                if c in seen:
                    continue
                seen.add(c)
                queue.append(c)
                i, j = edges[e]
                table = noisy2[e] if i == p else noisy2[e].T
                # a cell under Z_CELL sigma is noise more often than not: in the sparse rows of a heavy tail
                # a few such cells (400,000 this month, 1,500 the next) would take most of the row's
                # conditional mass after IPF and break the correlation the dense cells show
                t = _project(table, n_hat)
                t = np.where(t >= Z_CELL * sigma2, t, 0.0) + 1e-6 * n_hat / table.size
                t = _ipf(t, n_hat * margins[p], n_hat * margins[c])
                cond = t / t.sum(axis=1, keepdims=True)
                order.append({"node": c, "parent": p, "cond": cond})
        for v in range(d):  # isolated columns (only when d == 1 or no edges)
            if v not in seen:
                order.append({"node": v, "parent": -1, "cond": margins[v]})
        self.coarse_ = coarse
        self.weights_ = weights
        self.tree_ = order

    # -- sample ------------------------------------------------------------------------------------
    def _fine_evidence(self, cell: dict[str, Any], spec: dict[str, Any], n: int) -> np.ndarray:
        """(n, fine cells) weights in [0, 1]: how much of each fine cell a row's condition allows."""
        size = cell["k"] + int(cell["null"])
        ev = np.ones((n, size))
        mask = spec["mask"]
        if not mask.any():
            return ev
        if "codes" in spec:
            rows = np.zeros((int(mask.sum()), size))
            rows[np.arange(rows.shape[0]), spec["codes"][mask]] = 1.0
            ev[mask] = rows
            return ev
        lo = spec["lo"][mask][:, None]
        hi = spec["hi"][mask][:, None]
        left, right, point = cell["left"][None, :], cell["right"][None, :], cell["point"][None, :]
        width = np.where(point, 1.0, right - left)
        overlap = np.clip(np.minimum(hi, right) - np.maximum(lo, left), 0, None) / np.where(width > 0, width, 1.0)
        inside_point = ((lo <= left) & (left <= hi)).astype(float)
        # a point query inside a bin: the bin is possible (its density at the point, up to a constant)
        point_in_bin = ((lo == hi) & (left <= lo) & (lo < right)).astype(float)
        frac = np.where(point, inside_point, np.maximum(overlap, point_in_bin))
        rows = np.zeros((frac.shape[0], size))
        rows[:, : cell["k"]] = frac
        ev[mask] = rows
        return ev

    def _sample(self, n: int, rng: np.random.Generator, known: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
        d = len(self.cells_)
        if d == 0:
            return {}
        evidence: dict[int, np.ndarray] = {}
        lam: dict[int, np.ndarray] = {}
        for v, cell in enumerate(self.cells_):
            spec = known.get(cell["column"])
            if spec is None or spec.get("generated") or not spec["mask"].any():
                continue
            ev = self._fine_evidence(cell, spec, n)
            evidence[v] = ev
            g, w = self.coarse_[v], self.weights_[v]
            k = int(g.max()) + 1
            tot = np.bincount(g, weights=w, minlength=k)
            # lambda(coarse) = P(evidence | coarse) = sum over its fine cells of P(fine | coarse) * evidence
            onehot = np.zeros((g.size, k))
            onehot[np.arange(g.size), g] = 1.0
            lam[v] = (ev * w[None, :]) @ onehot / tot[None, :]
        # upward pass (messages to parents), only where evidence exists below
        children: dict[int, list[int]] = {v: [] for v in range(d)}
        for step in self.tree_:
            if step["parent"] >= 0:
                children[step["parent"]].append(step["node"])
        belief: dict[int, np.ndarray] = {}
        msgs: dict[int, np.ndarray] = {}
        cond_of = {step["node"]: step["cond"] for step in self.tree_}
        for step in reversed(self.tree_):
            v = step["node"]
            b = lam.get(v)
            for c in children[v]:
                if c in msgs:
                    b = msgs[c] if b is None else b * msgs[c]
            if b is not None:
                b = b / np.maximum(b.max(axis=1, keepdims=True), 1e-300)  # keep messages in range
                belief[v] = b
                if step["parent"] >= 0:
                    msgs[v] = b @ cond_of[v].T
        # downward: ancestral sampling of coarse cells
        coarse_codes: dict[int, np.ndarray] = {}
        for step in self.tree_:
            v, p, cond = step["node"], step["parent"], step["cond"]
            probs = np.broadcast_to(cond, (n, cond.size)) if p < 0 else cond[coarse_codes[p]]
            if v in belief:
                probs = probs * belief[v]
            coarse_codes[v] = _draw(np.ascontiguousarray(probs), rng)
        # the position inside each coarse cell: a Gaussian copula along the tree's edges (see _couplings),
        # then the fine cell and the value inside it at that position
        out: dict[str, np.ndarray] = {}
        couple = self._couplings()
        latent: dict[int, np.ndarray] = {}
        for step in self.tree_:
            v, p = step["node"], step["parent"]
            cell = self.cells_[v]
            g, w = self.coarse_[v], self.weights_[v]
            k = int(g.max()) + 1
            codes = coarse_codes[v]
            if v in evidence:  # a condition on this column: draw the fine cell under it, as before
                table = np.zeros((k, g.size))
                table[g, np.arange(g.size)] = w
                f = _draw(table[codes] * evidence[v], rng)
                u = rng.random(n)
                frac = None
            else:
                r = couple["rho"].get(v, 0.0)
                lo_z, hi_z = couple["bounds"][v]
                a, b = lo_z[codes], hi_z[codes]
                if r != 0.0 and p in latent:
                    mu, sd = r * latent[p], math.sqrt(1.0 - r * r)
                else:
                    mu, sd = np.zeros(n), 1.0
                frac = _truncated_position(mu, sd, a, b, rng)
                f, u = _fine_at(g, w, codes, frac)
            if v in couple["ordered"]:
                if frac is None:
                    frac = _cell_share(g, w, codes, f, u)
                latent[v] = _to_latent(frac, couple["bounds"][v], codes)
            out[cell["column"]] = self._values(cell, f, u, known.get(cell["column"]))
        return out

    def _couplings(self) -> dict[str, Any]:
        """Post-processing of the noisy tables: per numerical column the coarse cells as intervals of a latent
        standard normal (from the model's coarse marginal), and per tree edge between two numerical columns the
        latent correlation the edge's table implies. Sampling places a child inside its (already drawn) coarse
        cell from the conditional normal given its parent's latent position, so the dependence the tables hold
        between cells also holds inside them (independent positions inside wide cells of a heavy tail lose most
        of a correlation such as BILL_AMT1 ~ BILL_AMT2, r = 0.95)."""
        cached = getattr(self, "_couple_cache", None)
        if cached is not None:
            return cached
        d = len(self.cells_)
        margins: dict[int, np.ndarray] = {}
        for step in self.tree_:
            v, p, cond = step["node"], step["parent"], step["cond"]
            margins[v] = cond / cond.sum() if p < 0 else margins[p] @ cond
        bounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ordered: set[int] = set()
        for v in range(d):
            m = margins[v] / margins[v].sum()
            cell = self.cells_[v]
            k = m.size
            numeric = cell["kind"] == "num" and cell["k"] > 1
            valued = self._valued(v, k)
            has_null = valued < k
            if numeric and valued > 1:
                mv = m[:valued] / m[:valued].sum()
                edges = np.concatenate([[0.0], np.cumsum(mv)])
                lo, hi = edges[:-1], np.minimum(edges[1:], 1.0)
                if has_null:  # the null cell: its own independent draw
                    lo, hi = np.append(lo, 0.0), np.append(hi, 1.0)
                ordered.add(v)
            else:
                lo, hi = np.zeros(k), np.ones(k)
            bounds[v] = (_ndtri(np.clip(lo, 0, 1)), _ndtri(np.clip(hi, 0, 1)))
        rho: dict[int, float] = {}
        for step in self.tree_:
            v, p = step["node"], step["parent"]
            if p < 0 or v not in ordered or p not in ordered:
                continue
            joint = margins[p][:, None] * step["cond"]
            sp, sc = _scores(bounds[p]), _scores(bounds[v])
            np_, nc = self._valued(p, joint.shape[0]), self._valued(v, joint.shape[1])
            jt = joint[:np_, :nc]
            jt = jt / jt.sum()
            sp, sc = sp[:np_], sc[:nc]
            mp, mc = jt.sum(axis=1), jt.sum(axis=0)
            ep, ec = mp @ sp, mc @ sc
            vp, vc = mp @ (sp - ep) ** 2, mc @ (sc - ec) ** 2
            if vp <= 1e-9 or vc <= 1e-9:
                continue
            cov = (sp - ep) @ jt @ (sc - ec)
            rho[v] = _latent_rho(cov, (bounds[p][0][:np_], bounds[p][1][:np_]), (bounds[v][0][:nc], bounds[v][1][:nc]),
                                 sp - ep, sc - ec)
        out = {"bounds": bounds, "rho": rho, "ordered": ordered}
        self._couple_cache = out
        return out

    def _valued(self, v: int, k: int) -> int:
        """Coarse cells of column v that hold values (the null cell, when it has its own, is last)."""
        g = self.coarse_[v]
        cell = self.cells_[v]
        own_null = bool(cell["null"]) and cell["k"] > 0 and int(np.sum(g == g[-1])) == 1 and int(g[-1]) == k - 1
        return k - int(own_null)

    @staticmethod
    def _values(cell: dict[str, Any], f: np.ndarray, u: np.ndarray, spec: dict[str, Any] | None) -> np.ndarray:
        """Values of fine cells `f` at positions `u` in [0, 1) inside them."""
        k = cell["k"]
        null = f >= k
        if cell["kind"] == "cat":
            return np.where(null, -1, f).astype(np.int64)
        if k == 0:
            return np.full(f.size, np.nan)
        fc = np.minimum(f, k - 1)
        left, right = cell["left"][fc], cell["right"][fc]
        if spec is not None and "lo" in spec:
            m = spec["mask"]
            left = np.where(m, np.clip(left, spec["lo"], spec["hi"]), left)
            right = np.where(m, np.clip(right, spec["lo"], spec["hi"]), right)
        scale = cell.get("scale")
        if scale:  # uniform on the asinh scale the cells were cut on: log-uniform in a wide bin of a heavy tail
            a, b = np.arcsinh(left / scale), np.arcsinh(right / scale)
            inside = np.clip(scale * np.sinh(a + u * (b - a)), left, right)
        else:
            inside = left + u * (right - left)
        x = np.where(cell["point"][fc], left, inside)
        return np.where(null, np.nan, x)

    # -- privacy statement --------------------------------------------------------------------------
    def _statement(self) -> dict[str, Any]:
        """The guarantee, built once at fit time from the budget actually spent (saved with the model)."""
        rep = self.budget_.report()
        dom = self.domain_
        public = ("column names, kinds and formats (dtype, datetime format, PII type)"
                  + (f"; declared public: {', '.join(dom.public)}" if dom.public else "; no column declared public"))
        if self.bounds:
            public += f"; public bounds of {', '.join(self.bounds)}"
        eps = float(self.epsilon)
        parts = describe_parts(rep["parts"])
        return {
            "differentially_private": True,
            "epsilon": eps, "delta": float(self.delta), "rho_zcdp": rep["rho_zcdp"],
            "epsilon_from_rho": rep["epsilon_spent"], "delta_thresholds": rep["delta_thresholds"],
            "parts": rep["parts"],
            "domain": {"mode": self.domain, "share": float(self.domain_share) if self.domain == "dp" else 0.0,
                       "public": list(dom.public), "estimated": sorted(dom.estimated)},
            "mechanism": "MST (discrete Gaussian noise on 1- and 2-way marginals, exponential-mechanism selection)"
                         + ("; domain estimated under DP (noisy log-grid bounds, thresholded category counts, noisy "
                            "decimals and missing shares)" if dom.estimated else ""),
            "noise": mechanisms.noise_source(),
            "accounting": "zCDP, converted with Canonne, Kamath & Steinke (2020); thresholds add their delta",
            "unit": "one row of the source table (neighbouring tables differ by adding or removing one row)",
            "public": public,
            "statement": f"({eps}, {float(self.delta):g})-DP for the rows of the source table"
                         + (f"; budget: {parts}" if parts else "")
                         + (f"; declared public: {', '.join(dom.public)}" if dom.public else "; no column declared public"),
        }

    def privacy_guarantee(self) -> dict[str, Any] | None:
        """The guarantee this model gives, as data and as one sentence (budget per part, what is public)."""
        info = getattr(self, "privacy_", None)
        return dict(info) if info is not None else None  # not fitted: nothing is guaranteed yet

    # -- persistence --------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        cells = []
        for v, cell in enumerate(self.cells_):
            cells.append({k: cell[k] for k in ("column", "kind", "k", "null", "lo", "hi", "scale") if k in cell})
            for key in ("left", "right", "point"):
                arrays[f"cell{v}_{key}"] = cell[key]
            arrays[f"coarse{v}"] = self.coarse_[v]
            arrays[f"weights{v}"] = self.weights_[v]
        tree = []
        for t, step in enumerate(self.tree_):
            tree.append({"node": step["node"], "parent": step["parent"]})
            arrays[f"cond{t}"] = step["cond"]
        meta = {"cells": cells, "tree": tree, "rho": self.rho_, "noisy_n": self.noisy_n_,
                "sigmas": getattr(self, "sigmas_", {}), "privacy": self.privacy_}
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        _check_dp_state(meta, arrays, {c.name: c for c in self.codec_.learned})
        self.cells_ = []
        self.coarse_, self.weights_ = [], []
        for v, cell in enumerate(meta["cells"]):
            self.cells_.append({**cell, **{key: arrays[f"cell{v}_{key}"] for key in ("left", "right", "point")}})
            self.coarse_.append(arrays[f"coarse{v}"])
            self.weights_.append(arrays[f"weights{v}"])
        self.tree_ = [{**step, "cond": arrays[f"cond{t}"]} for t, step in enumerate(meta["tree"])]
        self.rho_ = meta["rho"]
        self.noisy_n_ = meta["noisy_n"]
        self.sigmas_ = meta.get("sigmas", {})
        self.privacy_ = meta.get("privacy")
        if self.privacy_ is None:
            raise ModelFileError("this DP model file predates the domain audit (its domain was read from the rows "
                                 "for free); fit it again")
        if not isinstance(self.privacy_, dict) or not isinstance(self.privacy_.get("statement"), str):
            raise ModelFileError("model file: header field 'model.privacy' must be an object with a 'statement'")


def _check_dp_state(meta: dict[str, Any], arrays: dict[str, np.ndarray], learned: dict[str, Any]) -> None:
    """A saved model's parts fit together (model files are untrusted: see BaseSynthesizer.load): cells
    sized by their arrays, coarse codes inside their tables, a tree over every cell once."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ModelFileError(f"model file: {what}")

    def arr(key: str, kinds: str, shape: tuple[int, ...] | None = None, ndim: int | None = None) -> np.ndarray:
        a = arrays.get(key)
        need(a is not None, f"array {key!r} is missing")
        need(a.dtype.kind in kinds, f"array {key!r} has dtype {a.dtype}")
        need(shape is None or a.shape == shape, f"array {key!r} has shape {a.shape}, expected {shape}")
        need(ndim is None or a.ndim == ndim, f"array {key!r} has {a.ndim} dimensions, expected {ndim}")
        need(a.dtype.kind not in "f" or bool(np.isfinite(a).all()), f"array {key!r} holds NaN or infinity")
        return a

    cells, tree = meta.get("cells"), meta.get("tree")
    need(isinstance(cells, list) and isinstance(tree, list), "header fields 'model.cells' and 'model.tree' must be lists")
    n_coarse = []
    for v, cell in enumerate(cells):
        where = f"header field 'model.cells[{v}]'"
        need(isinstance(cell, dict) and cell.get("kind") in ("cat", "num"), f"{where}: 'kind' must be 'cat' or 'num'")
        need(cell.get("column") in learned, f"{where}: column {str(cell.get('column'))[:60]!r} is not a learned column")
        k, null = cell.get("k"), cell.get("null")
        need(type(k) is int and k >= 0 and type(null) is bool, f"{where}: 'k' must be a count and 'null' a boolean")
        if cell["kind"] == "cat":
            need(k == len(learned[cell["column"]].categories or []), f"{where}: 'k' does not match the column's categories")
        scale = cell.get("scale")
        need(scale is None or (type(scale) in (int, float) and math.isfinite(scale) and scale > 0),
             f"{where}: 'scale' must be a positive number")
        arr(f"cell{v}_left", "f", (k,))
        arr(f"cell{v}_right", "f", (k,))
        arr(f"cell{v}_point", "b", (k,))
        fine = k + int(null)
        need(fine >= 1, f"{where}: a cell needs at least one value or a null")
        g = arr(f"coarse{v}", "iu", (fine,))
        need(bool((g >= 0).all()), f"array 'coarse{v}' holds negative codes")
        w = arr(f"weights{v}", "f", (fine,))
        need(bool((w >= 0).all()) and w.sum() > 0, f"array 'weights{v}' must hold weights >= 0")
        n_coarse.append(int(g.max()) + 1)
    seen: set[int] = set()
    need(len(tree) == len(cells), "header field 'model.tree' must hold one step per cell")
    for t, step in enumerate(tree):
        need(isinstance(step, dict), f"header field 'model.tree[{t}]' must be an object")
        node, parent = step.get("node"), step.get("parent")
        need(type(node) is int and 0 <= node < len(cells) and node not in seen, f"header field 'model.tree[{t}]': bad node")
        need(type(parent) is int and (parent == -1 or parent in seen), f"header field 'model.tree[{t}]': bad parent")
        shape = (n_coarse[node],) if parent == -1 else (n_coarse[parent], n_coarse[node])
        c = arr(f"cond{t}", "f", shape)
        need(bool((c >= 0).all()), f"array 'cond{t}' holds negative probabilities")
        seen.add(node)
