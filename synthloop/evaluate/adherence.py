"""Constraint adherence: the share of synthetic (and, as a baseline, real) rows that satisfy each rule.

Rules are objects with `is_valid(df) -> boolean array` (the `synthloop.constraints` protocol), or
dicts / expression strings as declared in a schema or spec, which `synthloop.constraints`
(`constraint_from_dict`) turns into rule objects; rules that learn (fixed combinations) are fitted
on the real table first. A rule that cannot be built or checked is listed with the reason instead
of failing the whole evaluation.
"""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import pandas as pd

_BUILDERS = ("from_dict", "constraint_from_dict", "build_constraint", "parse_constraint", "build", "parse")


def _builder():
    try:
        mod = importlib.import_module("synthloop.constraints")
    except ImportError:
        return None
    for name in _BUILDERS:
        fn = getattr(mod, name, None)
        if callable(fn):
            return fn
    return None


def _name(rule: Any) -> str:
    if isinstance(rule, dict):
        return str(rule.get("name") or rule.get("type") or rule.get("kind") or rule)
    return str(getattr(rule, "name", None) or getattr(rule, "description", None) or type(rule).__name__)


def _valid_share(rule: Any, df: pd.DataFrame) -> float:
    ok = np.asarray(rule.is_valid(df), dtype=bool)
    return float(ok.mean()) if ok.size else float("nan")


def constraint_adherence(synthetic: pd.DataFrame, rules: list[Any] | None, real: pd.DataFrame | None = None) -> dict[str, Any]:
    """Per rule: valid share in the synthetic table (1.0 ideal) and in the real table."""
    rules = list(rules or [])
    if not rules:
        return {"status": "no constraints declared", "rules": [], "adherence": float("nan")}
    build = _builder()
    out = []
    for rule in rules:
        row: dict[str, Any] = {"rule": _name(rule)}
        obj = rule
        if isinstance(rule, (dict, str)):
            if build is None:
                row["status"] = "not checked: synthloop.constraints cannot build rules yet"
                out.append(row)
                continue
            try:
                obj = build(rule)
            except Exception as exc:  # a rule the builder rejects is reported, not fatal
                row["status"] = f"not checked: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                out.append(row)
                continue
        if not hasattr(obj, "is_valid"):
            row["status"] = "not checked: rule has no is_valid(df)"
            out.append(row)
            continue
        row["rule"] = _name(obj)
        try:
            if real is not None and callable(getattr(obj, "fit", None)):
                obj.fit(real)  # rules that learn from the real data (fixed combinations) learn it here
            row["synthetic_valid_share"] = _valid_share(obj, synthetic)
            if real is not None:
                row["real_valid_share"] = _valid_share(obj, real)
            row["status"] = "checked"
        except Exception as exc:  # a column missing from one table, a rule that errors: say so per rule
            row["status"] = f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        out.append(row)
    checked = [r["synthetic_valid_share"] for r in out if r.get("status") == "checked"]
    status = "checked" if checked and len(checked) == len(out) else ("partly checked" if checked else "not checked")
    return {"status": status, "rules": out, "adherence": float(np.mean(checked)) if checked else float("nan")}
