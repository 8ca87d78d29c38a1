"""Checking a table against rules: the validity mask, the repair pass, and the adherence metric."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pandas as pd

from synthloop.constraints.rules import Constraint, parse_constraints


def valid_mask(df: pd.DataFrame, constraints: Iterable[Constraint]) -> np.ndarray:
    """True for rows that satisfy every rule."""
    ok = np.ones(len(df), bool)
    for c in constraints:
        ok &= c.is_valid(df)
    return ok


def apply_repairs(df: pd.DataFrame, constraints: Iterable[Constraint], rng: np.random.Generator) -> pd.DataFrame:
    """Run each repairable rule's transform once, in declared order (on a copy)."""
    df = df.copy()
    for c in constraints:
        if c.repairable:
            df = c.repair(df, rng)
    return df


def constraint_adherence(data: pd.DataFrame, constraints: Iterable[Constraint | dict[str, Any] | str],
                         real: pd.DataFrame | None = None) -> dict[str, Any]:
    """Share of rows satisfying all rules, plus per rule. Rules that learn from data (fixed
    combinations) are fitted on `real` when given, else on `data` itself.

    Returns {"share_valid": float, "rows": int, "rules": [{"rule", "type", "share_valid", "violations"}]}."""
    rules = parse_constraints(constraints)
    for c in rules:
        if getattr(c, "combinations", "x") is None:
            c.fit(real if real is not None else data)
    per = []
    ok = np.ones(len(data), bool)
    for c in rules:
        v = c.is_valid(data)
        ok &= v
        per.append({"rule": c.describe(), "type": c.type, "share_valid": float(v.mean()) if len(v) else 1.0,
                    "violations": int((~v).sum())})
    return {"share_valid": float(ok.mean()) if len(ok) else 1.0, "rows": int(len(data)), "rules": per}
