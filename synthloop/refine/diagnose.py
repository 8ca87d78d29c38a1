"""Typed diagnoses: what falls short in an iteration, each with the evidence that shows it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthloop.refine.measure import MeasureContext, Measurement, observed_shares


@dataclass
class Diagnosis:
    """Base: `summary()` is the one line shown in the iteration table and log."""

    kind: str = field(init=False, default="diagnosis")
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = type(self).__name__

    def summary(self) -> str:
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind, "summary": self.summary()}


@dataclass
class ShareMissed(Diagnosis):
    column: str = ""
    target: dict[str, float] = field(default_factory=dict)
    observed: dict[str, float] = field(default_factory=dict)
    minimum: bool = False

    def summary(self) -> str:
        worst = max(self.target, key=lambda k: abs(self.observed.get(k, 0.0) - self.target[k]))
        return f"{self.column}={worst} at {self.observed.get(worst, 0.0):.3f}, target {'>= ' if self.minimum else ''}{self.target[worst]:.3f}"


@dataclass
class UnderCovered(Diagnosis):
    column: str = ""
    bins: list[dict[str, Any]] = field(default_factory=list)  # [{value|bin, real_share, synthetic_share}]

    def summary(self) -> str:
        b = self.bins[0]
        return f"{self.column}: {b['bin']} at {b['synthetic_share']:.3f} vs {b['real_share']:.3f} real"


@dataclass
class OverRepresented(Diagnosis):
    column: str = ""
    bins: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        b = self.bins[0]
        return f"{self.column}: {b['bin']} at {b['synthetic_share']:.3f} vs {b['real_share']:.3f} real"


@dataclass
class ConstraintViolations(Diagnosis):
    rule: str = ""
    violations: int = 0
    share_valid: float = 1.0
    columns: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.rule}: {self.violations} rows break it ({self.share_valid:.3f} valid)"


@dataclass
class TooClose(Diagnosis):
    rows: list[int] = field(default_factory=list)
    metric: str = ""

    def summary(self) -> str:
        return f"{self.metric}: {self.evidence.get('value')} ({len(self.rows)} rows flagged)" if self.rows else f"{self.metric}: {self.evidence.get('value')}"


@dataclass
class LowDiversity(Diagnosis):
    column: str = ""
    duplicate_rate: float = 0.0

    def summary(self) -> str:
        return f"{self.column}: {self.duplicate_rate:.3f} of values near-duplicate another"


@dataclass
class TargetMissed(Diagnosis):
    metric: str = ""
    value: float | None = None
    target: str = ""
    column: str | None = None

    def summary(self) -> str:
        v = "n/a" if self.value is None else f"{self.value:.4f}"
        return f"{self.metric} = {v}, target {self.target}"


@dataclass
class InstructionMissed(Diagnosis):
    """An LLM judge found too many sampled outputs of a column missing its prompt's instruction."""

    column: str = ""
    pass_rate: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)  # [{value, reason}]

    def summary(self) -> str:
        why = f"; e.g. {self.failures[0]['reason']}" if self.failures else ""
        return f"{self.column}: judge passes {self.pass_rate:.2f} of outputs{why}"


@dataclass
class TextTargetMissed(Diagnosis):
    """A free-text column misses a `text:` target: `figure` is agreement, length, max_copied_run or length_ks."""

    column: str = ""
    figure: str = ""
    value: float | None = None
    target: str = ""

    def summary(self) -> str:
        v = "n/a" if self.value is None else f"{self.value:.4g}"
        return f"{self.column}: {self.figure} = {v}, target {self.target}"


@dataclass
class DetectableColumns(Diagnosis):
    auc: float = 0.0
    columns: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"detection AUC {self.auc:.3f}, driven by {', '.join(self.columns[:3])}"


def _category_gaps(real: pd.Series, synth: pd.Series) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    pr, ps = observed_shares(real), observed_shares(synth)
    under, over = [], []
    for k, r in pr.items():
        s = ps.get(k, 0.0)
        if r >= 0.005 and s < 0.5 * r:
            under.append({"bin": k, "real_share": r, "synthetic_share": s})
        elif s > 1.5 * r + 0.01:
            over.append({"bin": k, "real_share": r, "synthetic_share": s})
    for k, s in ps.items():
        if k not in pr and s > 0.01:
            over.append({"bin": k, "real_share": 0.0, "synthetic_share": s})
    return sorted(under, key=lambda b: b["synthetic_share"] - b["real_share"]), sorted(over, key=lambda b: b["real_share"] - b["synthetic_share"])


def _numeric_gaps(real: pd.Series, synth: pd.Series) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    r = pd.to_numeric(real, errors="coerce").dropna().to_numpy(float)
    s = pd.to_numeric(synth, errors="coerce").dropna().to_numpy(float)
    if r.size < 20 or s.size == 0:
        return [], []
    edges = np.unique(np.quantile(r, np.linspace(0, 1, 11)))
    if edges.size < 3:
        return [], []
    hr = np.histogram(np.clip(r, edges[0], edges[-1]), edges)[0] / r.size
    hs = np.histogram(np.clip(s, edges[0], edges[-1]), edges)[0] / s.size
    under, over = [], []
    for i, (a, b) in enumerate(zip(hr, hs)):
        row = {"bin": f"[{edges[i]:g}, {edges[i + 1]:g}]", "low": float(edges[i]), "high": float(edges[i + 1]),
               "real_share": float(a), "synthetic_share": float(b)}
        if a >= 0.02 and b < 0.5 * a:
            under.append(row)
        elif b > 1.5 * a + 0.02:
            over.append(row)
    return under, over


def diagnose(data: pd.DataFrame, m: Measurement, ctx: MeasureContext) -> list[Diagnosis]:
    """Turn missed checks into typed diagnoses, most specific first."""
    out: list[Diagnosis] = []
    ev = m.evidence
    missed = [c for c in m.checks if not c.met]
    share_cols = list(dict.fromkeys(c.column for c in missed if c.kind in ("share", "min_share")))
    for col in share_cols:
        s = ev["shares"][col]
        out.append(ShareMissed(column=col, target=s["target"], observed=s["observed"], minimum=s["minimum"],
                               evidence={"target": s["target"], "observed": s["observed"]}))
    for c in missed:
        if c.kind == "range":
            r = ev["ranges"][c.column]
            out.append(TargetMissed(metric=c.metric, value=c.value, target=c.target, column=c.column,
                                    evidence={k: v for k, v in r.items() if k != "rows_outside"}))
    for c in missed:
        if c.kind == "text":
            out.append(TextTargetMissed(column=c.column or "", figure=c.key or "", value=c.value, target=c.target,
                                        evidence=(ev.get("text") or {}).get(c.column, {})))
    names = {c.metric: c for c in missed if c.kind == "metric"}
    if "constraint_adherence" in names:
        for r in ev.get("constraints", []):
            if r["violations"]:
                rule = r["rule"]
                cols = [x for x in data.columns if x in rule]
                out.append(ConstraintViolations(rule=rule, violations=r["violations"], share_valid=r["share_valid"], columns=cols,
                                                evidence=r))
    if "near_duplicate_rate" in names:
        for col, rep in (ev.get("diversity") or {}).items():
            if rep["duplicate_rate"] > (ctx.targets.metrics["near_duplicate_rate"].max or 0.0):
                out.append(LowDiversity(column=col, duplicate_rate=rep["duplicate_rate"], evidence=rep))
    if "judge_pass_rate" in names:
        need = ctx.targets.metrics["judge_pass_rate"].min
        for col, rep in ((ev.get("judge") or {}).get("columns") or {}).items():
            if rep["pass_rate"] is not None and need is not None and rep["pass_rate"] < need:
                out.append(InstructionMissed(column=col, pass_rate=rep["pass_rate"], failures=rep["failures"], evidence=rep))
    for metric in ("exact_copy_rate", "dcr_share"):
        if metric in names:
            out.append(TooClose(metric=metric, evidence={"value": names[metric].value, "target": names[metric].target,
                                                         **(ev.get("privacy") or {})}))
    if "detection_auc" in names:
        det = ev.get("detection") or {}
        out.append(DetectableColumns(auc=det.get("detection_auc") or 0.0, columns=[c["column"] for c in det.get("columns", [])],
                                     evidence=det))
    fidelity = ("quality_score", "column_shapes", "column_pair_trends", "pair_trends_drift", "tstr_ratio")
    for metric in fidelity:
        if metric in names:
            c = names[metric]
            out.append(TargetMissed(metric=metric, value=c.value, target=c.target, evidence=ev.get("quality") or ev.get("utility") or {}))
    if ctx.real is not None and (ctx.targets.wants_match_real() or {"quality_score", "column_shapes"} & set(names)):
        steered = set(ev.get("shares", {})) | set(ev.get("ranges", {}))
        shapes = ev.get("shapes") or {}
        for col, score in sorted(shapes.items(), key=lambda kv: kv[1]):
            if score is None or score >= 0.95 or col in steered or col not in data.columns:
                continue
            kind = ctx.schema[col].kind.value if ctx.schema is not None and col in ctx.schema else "categorical"
            under, over = (_numeric_gaps if kind in ("numerical", "datetime") else _category_gaps)(ctx.real[col], data[col])
            if under:
                out.append(UnderCovered(column=col, bins=under, evidence={"shape_score": score, "kind": kind}))
            if over:
                out.append(OverRepresented(column=col, bins=over, evidence={"shape_score": score, "kind": kind}))
    return out
