"""Making a synthesizer's output obey its rules: repair by transform, then bounded reject-and-redraw.

Called once from `BaseSynthesizer.sample`, so every model (copula, GAN, VAE, autoregressive, ...)
gets it. Rows keep their positions (a per-row conditions table stays aligned); invalid rows are
redrawn with their own conditions, oversampled by the observed acceptance rate, for at most
`max_constraint_rounds` rounds (an attribute, default 20), then a ConstraintError names the rule.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthloop.constraints.metrics import apply_repairs, valid_mask
from synthloop.constraints.rules import Constraint, check_columns, parse_constraints
from synthloop.errors import SynthloopError

DEFAULT_ROUNDS = 20
MAX_OVERSAMPLE = 50


class ConstraintError(SynthloopError):
    """Sampling could not produce rows that satisfy the declared rules within its budget."""


def fit_constraints(schema: Any, data: pd.DataFrame, *sources: Any) -> list[Constraint]:
    """Rules from the schema's `constraints:` list plus each source, checked against the columns and
    fitted on the real data (fixed combinations learn their combinations)."""
    rules = parse_constraints(getattr(schema, "constraints", None) or [], "schema: constraints")
    for i, src in enumerate(sources):
        if src:
            rules += parse_constraints(src if isinstance(src, (list, tuple)) else [src], "constraints")
    check_columns(rules, schema.names)
    return [r.fit(data) for r in rules]


def _subset(known: dict[str, dict[str, Any]], idx: np.ndarray) -> dict[str, dict[str, Any]]:
    return {k: {kk: (vv[idx] if isinstance(vv, np.ndarray) else vv) for kk, vv in v.items()} for k, v in known.items()}


def _restore_conditions(df: pd.DataFrame, before: pd.DataFrame, known: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Repairs must not change a value the caller conditioned on."""
    for name, spec in known.items():
        if spec.get("exact") is not None and spec["mask"].any():
            m = spec["mask"]
            col = df[name].copy()
            col[m] = before[name][m].to_numpy()
            df[name] = col
    return df


def _prioritized_valid(df: pd.DataFrame, rules: list[Constraint], first: np.ndarray) -> np.ndarray:
    """Validity with rows in `first` checked ahead of the others (uniqueness keeps earlier rows)."""
    order = np.concatenate([first, np.setdiff1d(np.arange(len(df)), first)])
    ok = np.empty(len(df), bool)
    ok[order] = valid_mask(df.iloc[order].reset_index(drop=True), rules)
    return ok


def check_conditions(rules: list[Constraint], known: dict[str, dict[str, Any]]) -> None:
    """Fail fast when conditioned values alone break a rule (every column of the rule conditioned),
    instead of spending the redraw budget on rows that can never be valid."""
    exact = {k: v for k, v in known.items() if v.get("exact") is not None}
    for rule in rules:
        if not rule.columns or rule.type == "unique" or not all(c in exact for c in rule.columns):
            continue
        rows = np.logical_and.reduce([exact[c]["mask"] for c in rule.columns])
        if not rows.any():
            continue
        frame = pd.DataFrame({c: pd.Series(exact[c]["exact"][rows], dtype=object).infer_objects() for c in rule.columns})
        bad = ~rule.is_valid(frame)
        if bad.any():
            shown = {c: frame[c].iloc[int(np.flatnonzero(bad)[0])] for c in rule.columns}
            raise ConstraintError(f"the condition {shown} breaks the rule '{rule.describe()}', so no row can satisfy "
                                  "both; change the condition or the rule")


def enforce_constraints(model: Any, df: pd.DataFrame, rng: np.random.Generator,
                        known: dict[str, dict[str, Any]]) -> pd.DataFrame:
    rules: list[Constraint] = model.constraints_
    n = len(df)
    check_conditions(rules, known)
    df = _restore_conditions(apply_repairs(df, rules, rng), df, known)
    ok = valid_mask(df, rules)
    rounds = int(getattr(model, "max_constraint_rounds", DEFAULT_ROUNDS))
    drawn = n
    for _ in range(rounds):
        bad = np.flatnonzero(~ok)
        if not bad.size:
            return df
        rate = max(ok.mean(), 1.0 / MAX_OVERSAMPLE)
        reps = int(min(np.ceil(1.5 / rate), MAX_OVERSAMPLE))
        idx = np.repeat(bad, reps)
        extra = model._sample_rows(idx.size, rng, _subset(known, idx))
        extra = _restore_conditions(apply_repairs(extra, rules, rng), extra, _subset(known, idx))
        drawn += idx.size
        cand_ok = valid_mask(extra, rules)
        hit_rows, first = np.unique(idx[cand_ok], return_index=True)
        if not hit_rows.size:
            continue
        cand = np.flatnonzero(cand_ok)[first]
        pos = np.arange(n)
        pos[hit_rows] = n + np.arange(hit_rows.size)
        df = pd.concat([df, extra.iloc[cand]], ignore_index=True).iloc[pos].reset_index(drop=True)
        ok = _prioritized_valid(df, rules, np.flatnonzero(ok))
    bad = ~ok
    if not bad.any():
        return df
    worst = max(rules, key=lambda r: int((~r.is_valid(df)).sum()))
    cond = " (rows were conditioned: check the conditions do not contradict this rule)" if known else ""
    raise ConstraintError(
        f"{int(bad.sum())} of {n} sampled rows still break the rule '{worst.describe()}' after {rounds} rounds of "
        f"repair and redraw ({drawn} rows drawn){cond}; check the rule against the real data, loosen it, or raise "
        f"max_constraint_rounds")
