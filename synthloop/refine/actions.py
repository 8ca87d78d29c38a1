"""Typed actions: each changes the generation state (a learned run's sampling plan and model, or a
prompted spec) and records why and a diff of exactly what it changed.

Learned runs: `Resample`, `FillBins`, `ReplaceTooClose`, `AddConstraint`, `RaiseEpochs`, `SwitchModel`.
Prompted specs: `AdjustQuota`, `TightenRange`, `AddNegativeConstraint`, `AddFewShot`, `RaiseTemperature`,
`RewritePrompt`.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthloop.refine.measure import _key


def flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> {'a.b[0].c': leaf}; the diff of two states compares these."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        for i, v in enumerate(obj):
            out.update(flat(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


def diff(before: Any, after: Any) -> list[dict[str, Any]]:
    """[{path, before, after}] for every leaf that changed, appeared or disappeared."""
    a, b = flat(before), flat(after)
    empty = (None, {})  # an empty mapping that gains keys is not a change of its own
    return [{"path": k, "before": a.get(k), "after": b.get(k)} for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not (a.get(k) in empty and b.get(k) in empty)]


@dataclass
class Action:
    why: str = ""
    diff: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def summary(self) -> str:
        return self.kind

    def apply(self, state: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary(), **asdict(self)}


# -- learned synthesizers (state: the LearnedEngine's plain-dict state) -----------------------------
@dataclass
class Resample(Action):
    """Sample by a plan: per-value quotas (conditional sampling) and numeric ranges."""

    conditions: dict[str, dict[str, float]] = field(default_factory=dict)
    ranges: dict[str, list[float | None]] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{c} to {', '.join(f'{k} {v:.2f}' for k, v in list(s.items())[:4])}{', ...' if len(s) > 4 else ''}" for c, s in self.conditions.items()]
        parts += [f"{c} in [{r[0]}, {r[1]}]" for c, r in self.ranges.items()]
        return "Resample(" + "; ".join(parts) + ")"

    def apply(self, state: dict[str, Any]) -> None:
        state["plan"].update(copy.deepcopy(self.conditions))
        state["ranges"].update(copy.deepcopy(self.ranges))


@dataclass
class FillBins(Action):
    """Bring a numeric column's histogram back to the real one: surplus rows of over-covered bins are
    replaced by rows sampled conditionally inside the under-covered bins (range conditions), each
    replacement keeping the planned categorical values of the row it replaces, so shares hold."""

    column: str = ""
    edges: list[float] = field(default_factory=list)
    shares: list[float] = field(default_factory=list)
    under: list[dict[str, Any]] = field(default_factory=list)  # the diagnosed bins, for the log

    def summary(self) -> str:
        shown = ", ".join(f"{b['bin']} {b['synthetic_share']:.3f}->{b['real_share']:.3f}" for b in self.under[:2])
        more = f", +{len(self.under) - 2} more" if len(self.under) > 2 else ""
        return f"FillBins({self.column}: {shown}{more})"

    def apply(self, state: dict[str, Any]) -> None:
        state.setdefault("bins", {})[self.column] = {"edges": list(self.edges), "shares": list(self.shares)}


@dataclass
class ReplaceTooClose(Action):
    """Drop rows nearer a training row than `quantile` of real holdout rows are, draw replacements."""

    quantile: float = 0.05

    def summary(self) -> str:
        return f"ReplaceTooClose(quantile {self.quantile:g})"

    def apply(self, state: dict[str, Any]) -> None:
        state["protect"] = self.quantile


@dataclass
class AddConstraint(Action):
    rules: list[Any] = field(default_factory=list)

    def summary(self) -> str:
        return f"AddConstraint({'; '.join(map(str, self.rules))})"

    def apply(self, state: dict[str, Any]) -> None:
        state["constraints"] = list(state["constraints"]) + [r for r in self.rules if r not in state["constraints"]]


@dataclass
class RaiseEpochs(Action):
    to: int = 0

    def summary(self) -> str:
        return f"RaiseEpochs(to {self.to})"

    def apply(self, state: dict[str, Any]) -> None:
        state["params"] = {**state["params"], "epochs": self.to}


@dataclass
class SwitchModel(Action):
    to: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return f"SwitchModel(to {self.to})"

    def apply(self, state: dict[str, Any]) -> None:
        state["tried"] = list(state.get("tried", [])) + [state["model"]]
        state["model"] = self.to
        state["params"] = dict(self.params)


# -- prompted specs (state: a synthloop.spec.Spec) --------------------------------------------------
def _originals(values: Any, shares: dict[str, float]) -> dict[Any, float]:
    """Share keys back to the spec's own values (YAML 1 stays the integer 1)."""
    by_key = {_key(v): v for v in (values or [])}
    return {by_key.get(k, k): v for k, v in shares.items()}


@dataclass
class AdjustQuota(Action):
    """Plan exact per-value counts for a sampler column or an LLM enum field."""

    column: str = ""
    shares: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return f"AdjustQuota({self.column}: {', '.join(f'{k} {v:.2f}' for k, v in self.shares.items())})"

    def apply(self, spec: Any) -> None:
        col = spec.producer()[self.column]
        if col.sampler is not None and col.sampler.categorical is not None:
            known = list(col.sampler.categorical)
        else:
            prop = ((col.llm.json_schema or {}).get("properties") or {}).get(self.column, {}) if col.llm else {}
            known = list(prop.get("enum") or [])
        targets = dict(spec.targets)
        targets[self.column] = _originals(known, self.shares)
        spec.targets = targets
        spec.quotas = True


def _bounded_dists(sampler: Any) -> list[Any]:
    out = []
    for d in [sampler, *getattr(sampler, "cases", {}).values()]:
        kind = d.kind
        if kind in ("uniform", "normal", "lognormal", "poisson"):
            out.append(getattr(d, kind))
    return out


@dataclass
class TightenRange(Action):
    """Bound a sampler's distribution (all its cases) or an LLM field's JSON schema to [min, max]."""

    column: str = ""
    min: float | None = None
    max: float | None = None

    def summary(self) -> str:
        return f"TightenRange({self.column} to [{self.min}, {self.max}])"

    def apply(self, spec: Any) -> None:
        col = spec.producer()[self.column]
        if col.sampler is not None:
            for d in _bounded_dists(col.sampler):
                if self.min is not None:
                    d.min = self.min if d.min is None else max(d.min, self.min)
                if self.max is not None:
                    d.max = self.max if d.max is None else min(d.max, self.max)
        elif col.llm is not None and col.llm.json_schema is not None:
            schema = copy.deepcopy(col.llm.json_schema)
            prop = schema["properties"].setdefault(self.column, {"type": "number"})
            if self.min is not None:
                prop["minimum"] = self.min
            if self.max is not None:
                prop["maximum"] = self.max
            col.llm.json_schema = schema


@dataclass
class AddNegativeConstraint(Action):
    """Name a recurring violation in the prompt's 'Avoid' list."""

    column: str = ""
    text: str = ""

    def summary(self) -> str:
        return f"AddNegativeConstraint({self.column}: {self.text})"

    def apply(self, spec: Any) -> None:
        col = spec.producer()[self.column]
        if col.llm is not None and self.text not in col.llm.avoid:
            col.llm.avoid = [*col.llm.avoid, self.text]


@dataclass
class AddFewShot(Action):
    """Show examples drawn from the region the outputs miss (written to a seeds file)."""

    column: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)
    file: str = ""
    k: int = 3

    def summary(self) -> str:
        return f"AddFewShot({self.column}: {len(self.examples)} examples)"

    def apply(self, spec: Any) -> None:
        import pandas as pd

        from synthloop.io import write_table
        from synthloop.spec.models import FewShot

        path = Path(self.file)
        write_table(pd.DataFrame(self.examples), path)
        col = spec.producer()[self.column]
        if col.llm is not None:
            spec.allow_dir(path.resolve().parent)  # the loop's own work folder, not a file the spec chose
            col.llm.few_shot = FewShot(file=path.resolve(), k=min(self.k, len(self.examples)), diverse=True)


@dataclass
class RaiseTemperature(Action):
    column: str = ""
    to: float = 1.0

    def summary(self) -> str:
        return f"RaiseTemperature({self.column} to {self.to:.2f})"

    def apply(self, spec: Any) -> None:
        col = spec.producer()[self.column]
        if col.llm is not None:
            col.llm.temperature = self.to


@dataclass
class RewritePrompt(Action):
    """Replace a column's prompt template by one the LLM rewrote from the judge's failures (only
    rewrites that keep every Jinja2 placeholder are accepted; refused tries are kept with the reason)."""

    column: str = ""
    prompt: str | None = None
    refused: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        if self.prompt is None:
            return f"RewritePrompt({self.column}: refused, {self.refused[-1]['reason'] if self.refused else 'no rewrite'})"
        return f"RewritePrompt({self.column}: {self.prompt[:60]}{'...' if len(self.prompt) > 60 else ''})"

    def apply(self, spec: Any) -> None:
        col = spec.producer()[self.column]
        if self.prompt is not None and col.llm is not None:
            col.llm.prompt = self.prompt


@dataclass
class MoreFewShot(Action):
    """Show more nearest-neighbour real examples per row (mixed specs: `llm.neighbours`)."""

    column: str = ""
    to: int = 5

    def summary(self) -> str:
        return f"MoreFewShot({self.column}: {self.to} neighbours)"

    def apply(self, spec: Any) -> None:
        col = spec.producer()[self.column]
        if col.llm is not None:
            col.llm.neighbours = self.to


@dataclass
class MoreAttempts(Action):
    """Allow more answers per cell before a text that fails its checks is given up (regeneration)."""

    column: str = ""
    to: int = 6

    def summary(self) -> str:
        return f"MoreAttempts({self.column}: {self.to} answers per cell)"

    def apply(self, spec: Any) -> None:
        col = spec.producer()[self.column]
        if col.llm is not None and col.llm.checks is not None:
            col.llm.checks.max_attempts = self.to


@dataclass
class SetTextLength(Action):
    """State and enforce a length range for a text column (the schema's min/max characters)."""

    column: str = ""
    min_chars: int = 1
    max_chars: int = 160

    def summary(self) -> str:
        return f"SetTextLength({self.column}: {self.min_chars}-{self.max_chars} characters)"

    def apply(self, spec: Any) -> None:
        col = spec.producer()[self.column]
        if col.llm is not None:
            col.llm.min_chars, col.llm.max_chars = self.min_chars, self.max_chars
            rule = f"Write at least {self.min_chars} characters."
            if rule not in col.llm.constraints:
                col.llm.constraints = [c for c in col.llm.constraints if not c.startswith("Write at least ")] + [rule]


@dataclass
class TightenCopying(Action):
    """Regenerate texts from a shorter copied run on, with one more regeneration round."""

    to: int = 8
    rounds: int = 3

    def summary(self) -> str:
        return f"TightenCopying(regenerate from {self.to} copied tokens, {self.rounds} rounds)"

    def apply(self, spec: Any) -> None:
        spec.text_privacy.max_copied_run = self.to
        spec.text_privacy.max_rounds = self.rounds


ACTIONS = (Resample, FillBins, ReplaceTooClose, AddConstraint, RaiseEpochs, SwitchModel, AdjustQuota, TightenRange,
           AddNegativeConstraint, AddFewShot, RaiseTemperature, RewritePrompt, MoreFewShot, MoreAttempts, SetTextLength,
           TightenCopying)
