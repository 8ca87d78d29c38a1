"""k-frequency guard of combinations: a model releases no row whose combination of coarse column values
was rare in training.

Anonymeter's risks (singling out, linkability, inference) measure how much better an attacker does on
the training rows than on unseen rows of the same population. A generative model gains that advantage by
reproducing *rare combinations* of the training rows: a synthetic row whose three columns (an age over
80, a rare occupation, a country) match one training row lets a predicate built from it isolate that
person. The guard records, at fit time, which cells of every 3-column combination (columns coarsened
to a few groups) hold at least `k` training rows; at sample time a row that falls into any other cell
is drawn again (after `GUARD_ROUNDS` draws of the model it is kept as drawn: conditions that force a
rare cell are met). Only cells that at least `k` rows share are stored, which is what the release
guard (synthloop.transforms.release) allows a model file to hold. It costs fidelity (Adult: SDMetrics
quality 0.987 -> 0.953 for singling out 0.026 -> 0.009), so the autoregressive model has it opt-in.

Coarse groups: a category token is its own group (rare categories are already one token); a number's
or date's value tokens are grouped by their training share in value order, with narrow groups at the
tails (`CUTS`: 1%, 5%, 25%, 50%, 75%, 95%, 99%), where singling out happens; a missing value or spike
token beyond the value range is a group of its own. The group of a token depends only on token order
and training shares, never on a stored real value.

Cost: the 3-column cells of a table of m columns number C(m, 3) subsets; over `max_subsets` subsets the
guard checks pairs, and over that many pairs a seeded choice of `max_subsets` triples.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from synthloop.errors import ModelFileError

CUTS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def nominal_groups(tokens: np.ndarray, n_tokens: int, max_groups: int | None = None) -> np.ndarray:
    """Token -> coarse group for a category column: each token its own group, or with `max_groups` the
    `max_groups - 1` most frequent tokens their own and the rest one group."""
    n_tokens = max(n_tokens, 1)
    if not max_groups or n_tokens <= max_groups:
        return np.arange(n_tokens, dtype=np.int64)
    counts = np.bincount(tokens[(tokens >= 0) & (tokens < n_tokens)], minlength=n_tokens)
    top = np.argsort(-counts, kind="stable")[: max_groups - 1]
    out = np.full(n_tokens, max_groups - 1, np.int64)
    out[np.sort(top)] = np.arange(top.size)
    return out


def ordinal_groups(tokens: np.ndarray, n_values: int, n_tokens: int, cuts: tuple[float, ...] | None = None) -> np.ndarray:
    """Token -> coarse group for an ordered column: value tokens `0..n_values-1` by their training share
    in value order (cut at `CUTS`), each other token (missing, spikes outside) a group of its own."""
    counts = np.bincount(tokens[(tokens >= 0) & (tokens < n_values)], minlength=n_values).astype(float)
    total = counts.sum()
    out = np.zeros(max(n_tokens, 1), np.int64)
    if n_values:
        mid = (np.cumsum(counts) - counts / 2) / max(total, 1.0)
        out[:n_values] = np.searchsorted(np.asarray(CUTS if cuts is None else cuts), mid, side="right")
    ng = int(out[:n_values].max()) + 1 if n_values else 0
    out[n_values:] = ng + np.arange(max(n_tokens, 1) - n_values)
    return out


class CombinationGuard:
    """Which coarse cells of each column subset at least `k` training rows share (see module docstring)."""

    def __init__(self, k: int = 5, order: int = 3, max_subsets: int = 4096, random_state: int | None = 0):
        self.k = k
        self.order = order
        self.max_subsets = max_subsets
        self.random_state = random_state

    def _subsets(self, m: int) -> np.ndarray:
        for r in range(min(self.order, m), 1, -1):
            if math.comb(m, r) <= self.max_subsets:
                return np.array(list(itertools.combinations(range(m), r)), dtype=np.int64).reshape(-1, r)
        r = min(self.order, m)
        if r < 2:
            return np.zeros((0, 2), np.int64)
        rng = np.random.default_rng(self.random_state)
        picked = {tuple(sorted(rng.choice(m, r, replace=False).tolist())) for _ in range(self.max_subsets * 2)}
        return np.array(sorted(picked)[: self.max_subsets], dtype=np.int64)

    def _codes(self, groups: np.ndarray, s: int) -> np.ndarray:
        cols = self.subsets_[s]
        code = np.zeros(groups.shape[0], np.int64)
        for c in cols:
            code = code * self.radix_[c] + groups[:, c]
        return code

    def fit(self, groups: np.ndarray) -> "CombinationGuard":
        """`groups`: (rows, columns) coarse group of every training row's column."""
        groups = np.asarray(groups, dtype=np.int64)
        n, m = groups.shape
        self.radix_ = (groups.max(axis=0) + 1 if n else np.ones(m, np.int64)).astype(np.int64)
        self.subsets_ = self._subsets(m)
        kept, offsets = [], [0]
        for s in range(self.subsets_.shape[0]):
            codes, counts = np.unique(self._codes(groups, s), return_counts=True)
            frequent = codes[counts >= self.k]
            kept.append(frequent)
            offsets.append(offsets[-1] + frequent.size)
        self.cells_ = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        self.offsets_ = np.asarray(offsets, dtype=np.int64)
        self.train_allowed_share_ = float(self.allows(groups).mean()) if n else 1.0
        return self

    def allows(self, groups: np.ndarray) -> np.ndarray:
        """True for rows whose every subset's cell was shared by at least `k` training rows."""
        groups = np.asarray(groups, dtype=np.int64)
        ok = np.ones(groups.shape[0], bool)
        if groups.shape[0] == 0:
            return ok
        inside = (groups < self.radix_[None, :]).all(axis=1) & (groups >= 0).all(axis=1)
        ok &= inside
        g = np.where(inside[:, None], groups, 0)
        for s in range(self.subsets_.shape[0]):
            cells = self.cells_[self.offsets_[s]:self.offsets_[s + 1]]
            code = self._codes(g, s)
            if cells.size == 0:
                return np.zeros_like(ok)
            pos = np.clip(np.searchsorted(cells, code), 0, cells.size - 1)
            ok &= cells[pos] == code
        return ok

    # -- persistence: small integers only (column indices, group counts, group digits), no real value ----
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Each kept cell as a row (subset index, group of each of its columns); no counts are stored."""
        rows = []
        for s in range(self.subsets_.shape[0]):
            code = self.cells_[self.offsets_[s]:self.offsets_[s + 1]]
            digits = []
            for c in self.subsets_[s][::-1]:
                digits.append(code % self.radix_[c])
                code = code // self.radix_[c]
            rows.append(np.column_stack([np.full(code.size, s)] + digits[::-1]))
        order = self.subsets_.shape[1] if self.subsets_.ndim == 2 else 0
        cells = np.concatenate(rows) if rows else np.zeros((0, order + 1))
        return ({"k": int(self.k), "order": int(self.order), "max_subsets": int(self.max_subsets),
                 "train_allowed_share": round(self.train_allowed_share_, 3)},
                {"radix": self.radix_.astype(np.int32), "subsets": self.subsets_.astype(np.int32),
                 "cells": cells.astype(np.int32)})

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "CombinationGuard":
        g = cls(int(meta["k"]), int(meta["order"]), int(meta["max_subsets"]))
        try:
            g.radix_ = np.asarray(arrays["radix"], np.int64)
            g.subsets_ = np.asarray(arrays["subsets"], np.int64)
            cells = np.asarray(arrays["cells"], np.int64)
        except KeyError as exc:
            raise ModelFileError(f"model file: the combination guard lacks its array {exc}; refit the model") from None
        m, s = g.radix_.size, g.subsets_.shape[0] if g.subsets_.ndim == 2 else -1
        ok = (g.subsets_.ndim == 2 and cells.ndim == 2 and cells.shape[1] == g.subsets_.shape[1] + 1
              and (g.radix_ >= 1).all() and (not g.subsets_.size or (g.subsets_.min() >= 0 and g.subsets_.max() < m)))
        if ok and cells.size:
            ok = bool((cells[:, 0] >= 0).all() and (cells[:, 0] < s).all() and (cells[:, 1:] >= 0).all()
                      and (cells[:, 1:] < g.radix_[g.subsets_[cells[:, 0]]]).all())
        if not ok:
            raise ModelFileError("model file: the combination guard's arrays do not fit together; refit the model")
        kept, offsets = [], [0]
        for i in range(s):
            part = cells[cells[:, 0] == i, 1:]
            code = np.zeros(part.shape[0], np.int64)
            for j, c in enumerate(g.subsets_[i]):
                code = code * g.radix_[c] + part[:, j]
            kept.append(np.unique(code))
            offsets.append(offsets[-1] + kept[-1].size)
        g.cells_ = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        g.offsets_ = np.asarray(offsets, dtype=np.int64)
        g.train_allowed_share_ = float(meta.get("train_allowed_share", 1.0))
        return g
