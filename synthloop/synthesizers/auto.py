"""`--model auto` that measures: fit the cheap candidate first, then the autoregressive model with a
budget scaled to the table, score both on the same held-out validation rows with the SDMetrics
quality figure, and keep the better one.

Why measure: on four tables the project had never seen, the Gaussian copula beat the autoregressive
model on two (by 0.003 and 0.010 quality) while the latter spent its whole 300 s budget; the shape
rule in `factory.auto_choice` cannot see that. Tables under `AUTO_MIN_ROWS` rows or over
`AUTO_MAX_COLUMNS` columns (or without torch) keep the shape rule: there the copula wins and a
measurement would only cost time. Candidates learn from the same seeded 80% of the rows; the
winner is kept as fitted (a copula winner is refitted on every row, which takes seconds; an
autoregressive winner is not refitted, so its budget is spent once).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

VALIDATION_SHARE = 0.2
MAX_VALIDATION_ROWS = 5000


@dataclass
class AutoChoice:
    """The fitted winner and what was measured: {model: {quality, seconds}}, margin, validation rows."""
    model: Any
    winner: str
    why: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    margin: Optional[float] = None
    validation_rows: int = 0

    def summary(self) -> str:
        if not self.scores:
            return f"--model auto chose {self.winner}: {self.why}"
        parts = ", ".join(f"{m} {s['quality']:.4f} in {s['seconds']:.1f} s" + (f" (budget {s['budget']:g} s)" if s.get("budget") else "")
                          for m, s in self.scores.items())
        return (f"--model auto chose {self.winner} by {self.margin:.4f} quality on {self.validation_rows:,} validation rows "
                f"({parts})")


def fit_auto(df: pd.DataFrame, schema: Any, seed: int = 0, max_seconds: Optional[float] = None,
             log: Callable[[str], None] | None = None) -> AutoChoice:
    """Fit and keep the better of the copula and the autoregressive model (see module docstring)."""
    from synthloop.evaluate.quality import quality_score
    from synthloop.synthesizers.factory import auto_choice, default_budget, make_synthesizer

    log = log or (lambda s: None)
    name, why = auto_choice(df.shape)
    if name != "autoregressive" or len(df) < 2 * 50:
        synth = make_synthesizer("auto", seed, max_seconds=max_seconds, shape=df.shape)
        synth.fit(df, schema)
        return AutoChoice(synth, synth.name, why)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(df))
    n_val = min(MAX_VALIDATION_ROWS, int(round(len(df) * VALIDATION_SHARE)))
    train, val = df.iloc[np.sort(idx[n_val:])].reset_index(drop=True), df.iloc[np.sort(idx[:n_val])].reset_index(drop=True)
    budget = max_seconds if max_seconds is not None else default_budget(*train.shape)
    scores: dict[str, dict[str, float]] = {}
    fitted: dict[str, Any] = {}
    for model in ("copula", "autoregressive"):
        synth = make_synthesizer(model, seed, max_seconds=budget if model == "autoregressive" else None)
        log(f"auto: fitting {model}" + (f" (budget {budget:g} s)" if model == "autoregressive" else ""))
        t0 = time.perf_counter()
        synth.fit(train, schema)
        secs = time.perf_counter() - t0
        q = quality_score(val, synth.sample(len(val), seed=seed), synth.schema_).score
        scores[model] = {"quality": float(q), "seconds": float(secs), **({"budget": float(budget)} if model == "autoregressive" else {})}
        fitted[model] = synth
    ranked = sorted(scores, key=lambda m: (-scores[m]["quality"], m != "copula"))  # ties: the cheaper copula
    winner, runner = ranked[0], ranked[1]
    margin = scores[winner]["quality"] - scores[runner]["quality"]
    synth = fitted[winner]
    if winner == "copula":  # seconds to refit on every row
        synth = make_synthesizer("copula", seed)
        synth.fit(df, schema)
    why = f"higher quality on held-out rows by {margin:.4f}"
    return AutoChoice(synth, winner, why, scores, margin, len(val))
