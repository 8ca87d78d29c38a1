"""The planner: before any prompt is sent, decide every row's statistical values, the per-value
quotas of categorical columns (targets included, so the model never has to count), the column
order, and a seed for every (row, column, attempt)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthloop.generate.expr import ExpressionError, parse_expression
from synthloop.generate.samplers import apply_nulls, column_rng, quota_draw, sample_column
from synthloop.spec.dag import dependencies, topo_order
from synthloop.spec.errors import SpecError
from synthloop.spec.models import Spec


def cell_seed(seed: int, row: int, column: str, attempt: int = 0, round_: int = 0) -> int:
    """A 31-bit seed per cell and attempt, independent of run order and concurrency."""
    h = hashlib.blake2b(f"{seed}:{row}:{column}:{attempt}:{round_}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


@dataclass
class Plan:
    spec: Spec
    n: int
    order: list[str]  # spec column names, dependencies first
    deps: dict[str, set[str]]
    frame: pd.DataFrame  # values decided up front (samplers, expressions over them)
    per_row: list[str]  # spec columns computed row by row (LLM columns and what reads them)
    assigned: dict[str, np.ndarray] = field(default_factory=dict)  # LLM enum field -> planned values

    def assigned_for(self, column: str, row: int) -> dict[str, Any]:
        col = self.spec.column(column)
        return {f: self.assigned[f][row] for f in col.output_names() if f in self.assigned and f != column}


def _check_conditions(spec: Spec, conditions: dict[str, Any]) -> None:
    from synthloop.errors import ConditionError
    from synthloop.spec.loader import _categories_of

    producer = spec.producer()
    for name, value in conditions.items():
        if name not in producer:
            raise ConditionError(f"condition on unknown column '{name}'; columns: {', '.join(spec.output_columns(include_hidden=True))}")
        col = producer[name]
        if col.sampler is None and not (col.llm is not None and name != col.name):
            raise ConditionError(f"condition on '{name}': only sampler columns and LLM schema fields can be fixed")
        allowed = _categories_of(spec, name)
        if col.llm is not None and allowed is None:
            raise ConditionError(f"condition on '{name}': only LLM schema fields with an enum can be fixed")
        if allowed is not None and value not in allowed:
            raise ConditionError(f"condition {name}={value!r}: not one of {allowed}")


def make_plan(spec: Spec, n: int | None = None, conditions: dict[str, Any] | None = None, learned: Any = None) -> Plan:
    """Draw every up-front column for `n` rows (spec.rows by default), vectorized per column.
    `conditions` fixes sampler columns (and LLM enum fields) to one value; what reads them follows.
    `learned` (a `LearnedPart`, for specs with `learn:`) writes the learned columns after the columns
    they do not depend on (the conditioning samplers among them) and before those that read them."""
    n = spec.rows if n is None else n
    conditions = dict(conditions or {})
    _check_conditions(spec, conditions)
    deps = dependencies(spec)
    order = topo_order(deps, [c.name for c in spec.columns])
    llm_based: set[str] = set()
    for name in order:  # a column is per-row when it is an LLM column or reads one
        col = spec.column(name)
        if col.llm is not None or deps[name] & llm_based:
            llm_based.add(name)
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    after: set[str] = set()
    if spec.learned_columns:
        from synthloop.generate.learned import learned_dependent

        after = learned_dependent(spec)
        for name in spec.conditioning_columns():
            if name in after:
                idx = [c.name for c in spec.columns].index(name)
                raise SpecError(f"{spec.source}: columns[{idx}]: '{name}' conditions the learned columns, so it cannot "
                                "read them too")
        if learned is None:
            raise SpecError(f"{spec.source}: the spec learns columns (learn:) but no learned model was given")
    staged = [o for o in order if o not in after] + ["\0learned"] + [o for o in order if o in after]
    for i_name in staged:
        if i_name == "\0learned":
            if spec.learned_columns:
                part = learned.sample(frame, n)
                for c in part.columns:
                    frame[c] = part[c]
            continue
        if i_name in llm_based:
            continue
        col = spec.column(i_name)
        idx = [c.name for c in spec.columns].index(i_name)
        rng = column_rng(spec.seed, i_name)
        if i_name in conditions:
            values = pd.Series([conditions[i_name]] * n, dtype=object if isinstance(conditions[i_name], str) else None)
        elif col.sampler is not None:
            shares = spec.targets.get(i_name) if col.sampler.categorical is not None else None
            values = sample_column(col.sampler, frame, n, rng, spec.seed, spec.quotas, shares)
        else:
            try:
                values = parse_expression(col.expression or "").evaluate(frame)  # type: ignore[arg-type]
            except ExpressionError as exc:
                raise SpecError(f"{spec.source}: columns[{idx}].expression: {exc}") from None
        frame[i_name] = apply_nulls(values.reset_index(drop=True), col.null_rate, rng)
    assigned: dict[str, np.ndarray] = {}
    for name, shares in spec.targets.items():
        col = spec.producer()[name]
        if col.llm is not None and name != col.name:
            values = list(shares)
            assigned[name] = quota_draw(values, np.array([shares[v] for v in values]), n, column_rng(spec.seed, name))
    for name, value in conditions.items():
        col = spec.producer()[name]
        if col.llm is not None and name != col.name:
            assigned[name] = np.full(n, value, dtype=object)
    per_row = [c for c in order if c in llm_based]
    return Plan(spec=spec, n=n, order=order, deps=deps, frame=frame, per_row=per_row, assigned=assigned)
