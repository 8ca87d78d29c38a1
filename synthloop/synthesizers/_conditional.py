"""Conditional sampling for models that can only generate unconditionally (or from a cond vector).

Shared by the GAN and the VAE: generate candidates, keep those that meet each row's conditions,
redraw the rest a bounded number of rounds, then impose the conditions and warn.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from synthloop.synthesizers._torch import torch_threads


class RejectionSamplingMixin:
    """`_sample` for torch models that define `_generate(n, rng, cond=None)`, `n_threads` and
    `max_condition_rounds` (and optionally `_cond_for` to steer generation toward conditions)."""

    def _sample(self, n: int, rng: np.random.Generator, known: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
        with torch_threads(self.n_threads):
            learned = {k: v for k, v in known.items() if not v.get("generated")}
            if not learned:
                return self._generate(n, rng)
            return _conditional_rejection(self, n, rng, learned, self.max_condition_rounds)


def condition_matches(out: dict[str, np.ndarray], known: dict[str, dict[str, Any]], rows: np.ndarray,
                      tolerance: dict[str, float]) -> np.ndarray:
    """Which generated rows (aligned with condition rows `rows`) satisfy their conditions."""
    ok = np.ones(rows.size, bool)
    for name, spec in known.items():
        mask = spec["mask"][rows]
        x = out[name]
        if "codes" in spec:
            ok &= ~mask | (x == spec["codes"][rows])
        else:
            tol = tolerance.get(name, 0.0)
            with np.errstate(invalid="ignore"):
                inside = (x >= spec["lo"][rows] - tol) & (x <= spec["hi"][rows] + tol)
            ok &= ~mask | inside
    return ok


def _conditional_rejection(model: Any, n: int, rng: np.random.Generator, known: dict[str, dict[str, Any]],
                           max_rounds: int) -> dict[str, np.ndarray]:
    """Generate rows, keep those meeting their conditions, redraw the rest for at most `max_rounds`
    rounds (oversampling by the observed acceptance rate); then impose the conditions on the rows
    still unmatched and warn how many that was. Numerical targets match within 5% of a std."""
    names = [c.name for c in model.codec_.learned]
    out = {name: np.full(n, np.nan) if model.codec_.schema[name].kind.value in ("numerical", "datetime")
           else np.full(n, -1, dtype=np.int64) for name in names}
    tolerance = {}
    for name, norm in getattr(model.layout_, "normalizers_", {}).items():
        tolerance[name] = 0.05 * norm.scale_
    todo = np.arange(n)
    rate = 1.0
    for _ in range(max_rounds):
        if todo.size == 0:
            break
        reps = int(min(max(np.ceil(1.0 / max(rate, 1e-3)), 1), 50))
        rows = np.repeat(todo, reps)
        sub = {k: {kk: (vv[rows] if isinstance(vv, np.ndarray) else vv) for kk, vv in v.items()} for k, v in known.items()}
        cond = model._cond_for(rows.size, rng, sub) if hasattr(model, "_cond_for") else None
        fake = model._generate(rows.size, rng, cond=cond)
        ok = condition_matches(fake, known, rows, tolerance)
        rate = max(ok.mean(), 1e-3)
        # first accepted candidate per condition row
        hit_rows, first = np.unique(rows[ok], return_index=True)
        cand = np.flatnonzero(ok)[first]
        for name in names:
            out[name][hit_rows] = fake[name][cand]
        todo = np.setdiff1d(todo, hit_rows)
    if todo.size:
        fake = model._generate(todo.size, rng, cond=model._cond_for(todo.size, rng, {k: {kk: (vv[todo] if isinstance(vv, np.ndarray) else vv) for kk, vv in v.items()} for k, v in known.items()}) if hasattr(model, "_cond_for") else None)
        for name in names:
            out[name][todo] = fake[name]
        warnings.warn(f"{todo.size} of {n} rows matched no generated candidate in {max_rounds} rounds; the "
                      "conditioned values were imposed on them (the other columns may not fit those values well)",
                      stacklevel=3)
    for name, spec in known.items():  # impose (exact hits, clipping inside tolerance, and the leftovers)
        m = spec["mask"]
        if "codes" in spec:
            out[name][m] = spec["codes"][m]
        else:
            out[name][m] = np.clip(np.nan_to_num(out[name][m], nan=spec["lo"][m]), spec["lo"][m], spec["hi"][m])
    return out
