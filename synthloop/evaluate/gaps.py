"""The data gap finder: where the downstream model is weakest on real validation rows, and what to generate.

A judge (the objective's model) is fitted on the real training rows and scored row by row on the
validation rows: log loss of the true class for classification, absolute error for regression.
Slices are one column's value (categorical/boolean columns, their most frequent values) or one
quantile range of a numerical column. A slice's gap is its mean loss minus the mean over all
validation rows; slices with fewer than `min_rows` rows are skipped, so one odd row is not a gap.
Each slice comes with the condition that generates more rows like it (`{column: value}` or
`{column: (low, high)}`, as `BaseSynthesizer.sample(conditions=...)` takes it), and
`slice_errors` measures the same slices again after synthetic rows were added (before/after).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from synthloop.evaluate._frames import CONTINUOUS


@dataclass
class Slice:
    """One slice of the validation rows and its errors."""
    column: str
    value: Any = None          # categorical slice
    low: float | None = None   # numerical slice [low, high]
    high: float | None = None
    rows: int = 0
    loss: float = 0.0          # mean per-row loss in the slice
    gap: float = 0.0           # loss - overall loss
    error_rate: float | None = None  # classification: share of rows misclassified at the 0.5 cut

    @property
    def label(self) -> str:
        if self.value is not None:
            return f"{self.column} = {self.value}"
        return f"{self.column} in [{self.low:g}, {self.high:g}]"

    @property
    def condition(self) -> dict[str, Any]:
        """The sampling condition that generates rows of this slice."""
        if self.value is not None:
            return {self.column: self.value}
        return {self.column: (self.low, self.high)}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["label"], d["condition"] = self.label, {k: list(v) if isinstance(v, tuple) else v for k, v in self.condition.items()}
        return d


def row_losses(judge: Any, scores: np.ndarray) -> np.ndarray:
    """Per-row loss of the judge's scores against its validation labels."""
    y = judge.y
    if judge.objective.task == "classification":
        p = np.clip(scores, 1e-6, 1 - 1e-6)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return np.abs(np.asarray(y, dtype=float) - scores)


def _mask(v: pd.DataFrame, s: Slice) -> np.ndarray:
    if s.value is not None:
        return (v[s.column].astype("string") == str(s.value)).fillna(False).to_numpy(dtype=bool)
    x = pd.to_numeric(v[s.column], errors="coerce").to_numpy(dtype=float)
    return (x >= s.low) & (x <= s.high)


def candidate_slices(schema: Any, validation: pd.DataFrame, exclude: tuple[str, ...], n_bins: int = 4,
                     max_values: int = 30) -> list[Slice]:
    """Every slice considered: frequent values of categorical columns, quantile ranges of numbers."""
    out: list[Slice] = []
    for c in schema.columns:
        if not c.learned or c.name in exclude or c.name not in validation.columns:
            continue
        if c.kind in CONTINUOUS:
            if c.kind != CONTINUOUS[0]:
                continue  # datetimes: ranges of timestamps read poorly; skipped
            x = pd.to_numeric(validation[c.name], errors="coerce").dropna()
            if x.nunique() <= n_bins:
                out += [Slice(c.name, value=_plain(v)) for v in sorted(x.unique())]
                continue
            edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
            out += [Slice(c.name, low=float(a), high=float(b)) for a, b in zip(edges[:-1], edges[1:])]
        else:
            vc = validation[c.name].astype("string").value_counts()
            out += [Slice(c.name, value=str(v)) for v in vc.index[:max_values]]
    return out


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def find_gaps(judge: Any, real_train: pd.DataFrame, top: int = 5, min_rows: int | None = None,
              n_bins: int = 4) -> dict[str, Any]:
    """The `top` slices of the judge's validation rows with the highest gap (see module docstring)."""
    scores = judge.predict(real_train)
    loss = row_losses(judge, scores)
    v = judge.validation
    min_rows = min_rows if min_rows is not None else max(20, int(0.02 * len(v)))
    overall = float(loss.mean())
    wrong = ((scores >= 0.5).astype(int) != judge.y) if judge.objective.task == "classification" else None
    found = []
    for s in candidate_slices(judge.schema, v, (judge.objective.target,), n_bins=n_bins):
        m = _mask(v, s)
        n = int(m.sum())
        if n < min_rows or n == len(v):
            continue
        s.rows, s.loss = n, float(loss[m].mean())
        s.gap = s.loss - overall
        if wrong is not None:
            s.error_rate = float(wrong[m].mean())
        found.append(s)
    found.sort(key=lambda s: s.gap * np.sqrt(s.rows), reverse=True)  # a big gap on many rows first
    return {"overall_loss": overall, "slices": [s for s in found[:top] if s.gap > 0],
            "loss": "log loss of the true class" if wrong is not None else "absolute error", "min_rows": min_rows}


def slice_errors(judge: Any, train: pd.DataFrame, slices: list[Slice]) -> list[dict[str, Any]]:
    """The loss (and error rate) in each slice of a judge fitted on `train` (for before/after tables)."""
    scores = judge.predict(train)
    loss = row_losses(judge, scores)
    wrong = ((scores >= 0.5).astype(int) != judge.y) if judge.objective.task == "classification" else None
    out = []
    for s in slices:
        m = _mask(judge.validation, s)
        out.append({"label": s.label, "rows": int(m.sum()), "loss": float(loss[m].mean()) if m.any() else float("nan"),
                    "error_rate": float(wrong[m].mean()) if wrong is not None and m.any() else None})
    return out
