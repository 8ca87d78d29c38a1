"""Privacy accounting: zCDP arithmetic, its conversion to (epsilon, delta), and a budget split into named parts.

Every DP model states its guarantee from a `Budget`: the user's (epsilon, delta) is turned into a zCDP
budget rho (Bun & Steinke 2016), shared between parts (domain estimation, marginals, training...) that
compose by adding their rho; thresholded releases (category discovery) add a small delta of their own
(approximate zCDP, Bun & Steinke 2016 Def. 8.1; Rogers 2023), so the total delta splits into the part
that converts rho to epsilon and the part the thresholds may fail with. The conversion is the tight one
of Canonne, Kamath & Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020, Prop. 12).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

# Share of delta reserved for thresholded releases (a value seen in few rows surviving by chance).
THRESHOLD_DELTA_SHARE = 0.1


def cdp_delta(rho: float, eps: float) -> float:
    """Smallest delta such that rho-zCDP implies (eps, delta)-DP (CKS20, Prop. 12, optimised over alpha)."""
    if rho < 0 or eps < 0:
        raise ValueError("rho and eps must be non-negative")
    if rho == 0:
        return 0.0
    amin, amax = 1.01, (eps + 1) / (2 * rho) + 2
    for _ in range(200):  # bisection on the derivative of the bound in alpha
        if amax - amin <= 1e-12 * amax:
            break
        alpha = (amin + amax) / 2
        derivative = (2 * alpha - 1) * rho - eps + math.log1p(-1.0 / alpha)
        if derivative < 0:
            amin = alpha
        else:
            amax = alpha
    log_delta = (alpha - 1) * (alpha * rho - eps) + alpha * math.log1p(-1 / alpha) - math.log(alpha - 1.0)
    return 1.0 if log_delta >= 0 else math.exp(log_delta)


def _bisect(past: Callable[[float], bool], lo: float, hi: float, rel_tol: float) -> tuple[float, float]:
    """Narrow [lo, hi] to relative width `rel_tol` around where `past` turns true (false at lo, true at hi);
    one search serves both conversions, which differ only in the predicate and the side they keep."""
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        if past(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


def cdp_eps(rho: float, delta: float) -> float:
    """Smallest eps such that rho-zCDP implies (eps, delta)-DP."""
    if delta >= 1 or rho == 0:
        return 0.0
    upper = rho + 2 * math.sqrt(rho * math.log(1 / delta))  # the classic bound is an upper bound
    return _bisect(lambda eps: cdp_delta(rho, eps) <= delta, 0.0, upper, 1e-12)[1]


def cdp_rho(eps: float, delta: float) -> float:
    """Largest rho such that rho-zCDP implies (eps, delta)-DP."""
    if not eps > 0 or not 0 < delta < 1:
        raise ValueError("need epsilon > 0 and 0 < delta < 1")
    return _bisect(lambda rho: cdp_delta(rho, eps) > delta, 0.0, eps + 1, 1e-13)[0]


def gaussian_sigma(rho: float, n_queries: int | float, sensitivity: float = 1.0) -> float:
    """Noise scale so that `n_queries` Gaussian measurements of L2 sensitivity `sensitivity` cost `rho` in all."""
    return float(sensitivity * math.sqrt(n_queries / (2.0 * rho)))


def exponential_epsilon(rho: float, n_rounds: int) -> float:
    """Per-round epsilon of the exponential mechanism so that `n_rounds` rounds cost `rho` (eps^2/8 each,
    Cesar & Rogers 2021)."""
    return float(math.sqrt(8.0 * rho / n_rounds))


@dataclass
class Budget:
    """An (epsilon, delta) budget as zCDP: `rho` to share between named parts, `delta_threshold` for
    thresholded releases. `spend` records what each part used; `report` states it."""

    epsilon: float
    delta: float
    threshold_delta_share: float = THRESHOLD_DELTA_SHARE
    spent: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    delta_spent: float = 0.0

    def __post_init__(self) -> None:
        from synthloop.errors import DataError

        if not self.epsilon > 0 or not math.isfinite(self.epsilon):
            raise DataError(f"epsilon must be > 0, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise DataError(f"delta must be in (0, 1), got {self.delta}")
        self._rho = cdp_rho(self.epsilon, self.delta - self.delta_threshold)

    @property
    def delta_threshold(self) -> float:
        """The part of delta that thresholded releases may spend."""
        return self.delta * self.threshold_delta_share

    @property
    def rho(self) -> float:
        """The zCDP budget that, with delta minus the threshold part, converts to epsilon."""
        return self._rho

    def spend(self, part: str, rho: float, delta: float = 0.0, note: str | None = None) -> None:
        self.spent[part] = self.spent.get(part, 0.0) + float(rho)
        self.delta_spent += float(delta)
        if note:
            self.notes[part] = note

    def report(self) -> dict[str, Any]:
        """Per part: its rho, its share of the total, and the epsilon it would give alone at this delta."""
        total = self.rho
        d = self.delta - self.delta_threshold
        parts = {name: {"rho": r, "share": r / total if total else 0.0, "epsilon_alone": cdp_eps(r, d),
                        **({"what": self.notes[name]} if name in self.notes else {})}
                 for name, r in self.spent.items()}
        used = sum(self.spent.values())
        return {"epsilon": float(self.epsilon), "delta": float(self.delta), "rho_zcdp": total, "rho_spent": used,
                "epsilon_spent": cdp_eps(used, d) if used else 0.0, "delta_thresholds": self.delta_spent,
                "parts": parts}


def describe_parts(parts: dict[str, dict[str, Any]]) -> str:
    """`domain 10% (eps 0.31 alone), ...` for the one-line guarantee."""
    out = []
    for name, p in parts.items():
        if p["rho"] <= 0:
            continue
        out.append(f"{name.replace('_', ' ')} {100 * p['share']:.0f}% (epsilon {p['epsilon_alone']:.3g} alone)")
    return ", ".join(out)
