"""Measuring one iteration against the targets: a list of checks (metric, target, value, met) plus the
evidence diagnoses need (observed shares, out-of-range rows, violations per rule, detection columns).

Only what the targets ask for is computed, so an iteration on a large table stays cheap.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthloop.refine.targets import Bound, Targets


@dataclass
class Check:
    """One target: `metric` names it (e.g. `share sex=Female`), `shortfall` is how far it is from holding."""

    metric: str
    target: str
    value: float | None
    met: bool
    shortfall: float
    kind: str = "metric"
    column: str | None = None
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["value"] is not None and not math.isfinite(d["value"]):
            d["value"] = None
        return d


@dataclass
class Measurement:
    checks: list[Check]
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def n_unmet(self) -> int:
        return sum(not c.met for c in self.checks)

    @property
    def shortfall(self) -> float:
        return float(sum(c.shortfall for c in self.checks))

    @property
    def all_met(self) -> bool:
        return all(c.met for c in self.checks)

    def score(self) -> tuple[int, float]:
        """Lower is better: targets missed, then total shortfall."""
        return self.n_unmet, round(self.shortfall, 9)


def _key(v: Any) -> str:
    """Category keys compare as text, so YAML `1` matches an integer column's 1 and '1'."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, float) and float(v).is_integer():
        return str(int(v))
    return str(v)


def observed_shares(series: pd.Series) -> dict[str, float]:
    s = series.dropna()
    if s.empty:
        return {}
    return {_key(k): float(v) for k, v in s.map(_key).value_counts(normalize=True).items()}


def resolve_shares(targets: Targets, categories: dict[str, list[Any]]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Exact share targets (shares + parity) and minimum shares, keyed by category text."""
    exact = {c: {_key(k): float(v) for k, v in s.items()} for c, s in targets.shares.items()}
    for col in targets.parity:
        cats = categories.get(col) or []
        if not cats:
            continue
        exact[col] = {_key(k): 1.0 / len(cats) for k in cats}
    minimum = {c: {_key(k): float(v) for k, v in s.items()} for c, s in targets.min_shares.items()}
    return exact, minimum


def plan_shares(targets: Targets, categories: dict[str, list[Any]], real_shares: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Full share vectors to sample by: exact targets as given; a minimum share raised to its minimum
    (when short of it) with the other values keeping their real proportions."""
    exact, minimum = resolve_shares(targets, categories)
    out = dict(exact)
    for col, mins in minimum.items():
        base = dict(real_shares.get(col) or {k: 0.0 for k in mins})
        for k in mins:
            base.setdefault(k, 0.0)
        fixed = {k: max(v, base.get(k, 0.0)) for k, v in mins.items()}
        rest = {k: v for k, v in base.items() if k not in fixed}
        left = max(0.0, 1.0 - sum(fixed.values()))
        tot = sum(rest.values())
        out[col] = {**fixed, **({k: left * v / tot for k, v in rest.items()} if tot > 0 else {})}
    return out


def _bound_check(name: str, value: float | None, b: Bound, kind: str = "metric", column: str | None = None) -> Check:
    if value is None or not math.isfinite(value):
        return Check(name, b.text(), None, False, 1.0, kind, column)
    short = 0.0
    if b.min is not None and value < b.min:
        short = b.min - value
    if b.max is not None and value > b.max:
        short = value - b.max
    return Check(name, b.text(), float(value), short <= 1e-12, float(short), kind, column)


def share_checks(data: pd.DataFrame, exact: dict[str, dict[str, float]], minimum: dict[str, dict[str, float]],
                 tol: float, evidence: dict[str, Any]) -> list[Check]:
    checks = []
    for col, want in {**exact, **minimum}.items():
        is_min = col in minimum
        got = observed_shares(data[col]) if col in data.columns else {}
        evidence.setdefault("shares", {})[col] = {"target": want, "observed": got, "minimum": is_min}
        for k, t in want.items():
            v = got.get(k, 0.0)
            short = max(0.0, t - v - tol) if is_min else max(0.0, abs(v - t) - tol)
            checks.append(Check(f"{'min share' if is_min else 'share'} {col}={k}", f"{'>= ' if is_min else ''}{t:.3f}",
                                v, short <= 1e-12, short, "min_share" if is_min else "share", col, k))
    return checks


def range_checks(data: pd.DataFrame, targets: Targets, evidence: dict[str, Any]) -> list[Check]:
    checks = []
    for col, r in targets.ranges.items():
        x = pd.to_numeric(data[col], errors="coerce") if col in data.columns else pd.Series(dtype=float)
        x = x.dropna()
        lo = -np.inf if r.min is None else r.min
        hi = np.inf if r.max is None else r.max
        inside = (x >= lo) & (x <= hi)
        share = float(inside.mean()) if len(x) else 0.0
        out_vals = x[~inside]
        evidence.setdefault("ranges", {})[col] = {
            "min": r.min, "max": r.max, "share_inside": share, "outside": int((~inside).sum()),
            "observed_min": float(x.min()) if len(x) else None, "observed_max": float(x.max()) if len(x) else None,
            "examples_outside": [float(v) for v in out_vals.head(5)], "rows_outside": out_vals.index[:1000].tolist(),
        }
        lo_t = "-inf" if r.min is None else f"{r.min:g}"
        hi_t = "inf" if r.max is None else f"{r.max:g}"
        short = max(0.0, r.share - share)
        checks.append(Check(f"range {col} in [{lo_t}, {hi_t}]", f">= {r.share:.3f} inside", share, short <= 1e-12, short, "range", col))
    return checks


def text_checks(data: pd.DataFrame, targets: Targets, figures: dict[str, dict[str, Any]], evidence: dict[str, Any]) -> list[Check]:
    """Checks of the `text:` targets (kind "text", key = the figure) from the run's text figures."""
    checks: list[Check] = []
    for col, t in targets.text.items():
        fig = figures.get(col) or {}
        ev = evidence.setdefault("text", {}).setdefault(col, dict(fig))
        if t.agreement is not None:
            v = fig.get("agreement")
            short = max(0.0, t.agreement - v) if v is not None else 1.0
            checks.append(Check(f"text {col} agreement", f">= {t.agreement:g}", v, v is not None and short <= 1e-12, short,
                                "text", col, "agreement"))
        if t.max_copied_run is not None:
            v = fig.get("max_copied_run")
            short = max(0.0, (v or 0) - t.max_copied_run + 1) / max(t.max_copied_run, 1)
            checks.append(Check(f"text {col} longest copied run", f"< {t.max_copied_run}", v, v is not None and v < t.max_copied_run,
                                short, "text", col, "max_copied_run"))
        if t.length_ks is not None:
            v = fig.get("length_ks")
            short = max(0.0, t.length_ks - v) if v is not None else 1.0
            checks.append(Check(f"text {col} length KS similarity", f">= {t.length_ks:g}", v, v is not None and short <= 1e-12,
                                short, "text", col, "length_ks"))
        if t.length is not None and col in data.columns:
            n = data[col].dropna().astype(str).str.len()
            inside = n.between(t.length.min if t.length.min is not None else -np.inf,
                               t.length.max if t.length.max is not None else np.inf)
            share = float(inside.mean()) if len(n) else 0.0
            ev["length_inside"] = share
            ev["length_examples_outside"] = data.loc[n.index[~inside], col].head(3).tolist()
            short = max(0.0, t.length.share - share)
            checks.append(Check(f"text {col} length in [{t.length.min}, {t.length.max}]", f">= {t.length.share:.3f} inside",
                                share, short <= 1e-12, short, "text", col, "length"))
    return checks


@dataclass
class MeasureContext:
    """What measuring needs besides the synthetic rows: the real training rows (may be None for a
    prompted spec), a holdout, the schema, rules, and the first iteration's pair-trend score."""

    targets: Targets
    real: pd.DataFrame | None = None
    holdout: pd.DataFrame | None = None
    schema: Any = None
    rules: list[Any] = field(default_factory=list)
    categories: dict[str, list[Any]] = field(default_factory=dict)
    text_columns: list[str] = field(default_factory=list)
    reference_pairs: float | None = None
    detection_rows: int = 3000
    judge: Any = None  # prompted specs: data -> {"pass_rate", "columns": {name: report}} (judge_pass_rate)
    text_figures: Any = None  # prompted specs: data -> {column: {agreement, max_copied_run, length_ks}} (text targets)
    privacy_rows: int = 3000


def measure(data: pd.DataFrame, ctx: MeasureContext) -> Measurement:
    """Every check the targets ask for, with evidence (see module docstring)."""
    t = ctx.targets
    ev: dict[str, Any] = {"rows": int(len(data))}
    checks: list[Check] = []
    exact, minimum = resolve_shares(t, ctx.categories)
    checks += share_checks(data, exact, minimum, t.tolerance, ev)
    checks += range_checks(data, t, ev)
    metrics = dict(t.metrics)
    if t.wants_match_real() and ctx.real is not None:
        metrics.setdefault("quality_score", Bound(min=0.8))
    if t.constraints:
        metrics.setdefault("constraint_adherence", Bound(min=1.0))
    values: dict[str, float | None] = {}
    needs_quality = {"quality_score", "column_shapes", "column_pair_trends", "pair_trends_drift"} & set(metrics)
    if ctx.real is not None and (needs_quality or t.wants_match_real() or "pair_trends_drift" in metrics):
        from synthloop.evaluate.quality import quality_score

        q = quality_score(ctx.real, data, ctx.schema)
        values.update(quality_score=q.score, column_shapes=q.column_shapes, column_pair_trends=q.column_pair_trends)
        ev["quality"] = {"quality_score": q.score, "column_shapes": q.column_shapes, "column_pair_trends": q.column_pair_trends}
        ev["shapes"] = {r["column"]: r["score"] for r in q.shapes.to_dict(orient="records")}
        if ctx.reference_pairs is None:  # the first (unsteered) run measured is the reference
            ctx.reference_pairs = q.column_pair_trends
        if ctx.reference_pairs is not None:
            values["pair_trends_drift"] = max(0.0, ctx.reference_pairs - q.column_pair_trends)
            ev["quality"]["reference_pair_trends"] = ctx.reference_pairs
    if "detection_auc" in metrics and ctx.real is not None:
        from synthloop.evaluate.detection import detection_score

        det = detection_score(ctx.real, data, ctx.schema, max_rows=ctx.detection_rows, random_state=t.seed)
        values["detection_auc"] = det["detection_auc"]
        ev["detection"] = {"detection_auc": det["detection_auc"], "columns": det["columns"][:5]}
    if "exact_copy_rate" in metrics and ctx.real is not None:
        from synthloop.evaluate.privacy import exact_copy_rate

        values["exact_copy_rate"] = exact_copy_rate(ctx.real, data, ctx.schema)
    if "dcr_share" in metrics and ctx.real is not None and ctx.holdout is not None:
        from synthloop.evaluate.privacy import privacy_figures

        p = privacy_figures(ctx.real, data, ctx.holdout, ctx.schema, max_rows=ctx.privacy_rows, random_state=t.seed)
        values["dcr_share"] = p.get("dcr_share")
        ev["privacy"] = {k: p.get(k) for k in ("dcr_share", "median_dcr_train", "median_dcr_holdout", "share_dcr_zero")}
    if "tstr_ratio" in metrics and ctx.real is not None and ctx.holdout is not None and t.target:
        from synthloop.evaluate.utility import utility_scores

        u = utility_scores(ctx.real, data, ctx.holdout, t.target, ctx.schema, random_state=t.seed).figures
        values["tstr_ratio"] = (u.get("headline") or {}).get("ratio")
        ev["utility"] = u.get("headline")
    if "constraint_adherence" in metrics:
        from synthloop.constraints import constraint_adherence

        rules = list(ctx.rules) + list(t.constraints)
        adh = constraint_adherence(data, rules, ctx.real)
        values["constraint_adherence"] = adh["share_valid"]
        ev["constraints"] = adh["rules"]
    if "near_duplicate_rate" in metrics:
        from synthloop.generate.diversity import diversity_report, near_duplicates

        worst, per = 0.0, {}
        for col in ctx.text_columns:
            if col in data.columns:
                rep = diversity_report(data[col].astype(str).tolist())
                dup, _ = near_duplicates(data[col].astype(str).tolist(), 0.8, 3)
                per[col] = {**rep, "examples": data[col][dup].astype(str).head(5).tolist()}
                worst = max(worst, rep["duplicate_rate"])
        values["near_duplicate_rate"] = worst
        ev["diversity"] = per
    if t.text:
        checks += text_checks(data, t, ctx.text_figures(data) if ctx.text_figures is not None else {}, ev)
    if "judge_pass_rate" in metrics and ctx.judge is not None:
        rep = ctx.judge(data)
        values["judge_pass_rate"] = rep["pass_rate"]
        ev["judge"] = rep
    for name, b in metrics.items():
        checks.append(_bound_check(name, values.get(name), b))
    ev["values"] = {k: (None if v is None or not math.isfinite(v) else float(v)) for k, v in values.items()}
    return Measurement(checks, ev)
