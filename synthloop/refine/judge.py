"""The LLM as a judge of its own outputs, and as the rewriter of a prompt the judge finds missed.

`judge_column` asks, for a small sample of generated values, whether each follows the column's
instruction (its prompt rendered for that row), with a JSON-schema constrained {pass, reason}
verdict. `rewrite_prompt` asks for a new prompt template and accepts it only when it parses and
keeps every Jinja2 variable of the old one (the rows feed the same columns into it).
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from synthloop.llm import LLMRequest
from synthloop.llm.validate import parse_and_validate

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"pass": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 200}},
    "required": ["pass", "reason"],
    "additionalProperties": False,
}
REWRITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "minLength": 1, "maxLength": 2000}},
    "required": ["prompt"],
    "additionalProperties": False,
}
JUDGE_SYSTEM = "You review synthetic data. Judge strictly whether a generated value follows its instruction."
REWRITER_SYSTEM = "You improve prompt templates for a synthetic data generator."


def _instruction(spec: Any, col: Any, index: int, row: dict[str, Any], template: str | None = None) -> str:
    """`template` (default: the column's prompt) rendered for `row`; raw when a value it reads is missing."""
    from synthloop.generate.prompts import _plain, render
    from synthloop.spec.errors import GenerationError

    ctx = {k: _plain(v) for k, v in row.items()}
    ctx.update(row_index=0, n_rows=spec.rows, dataset=spec.name)
    try:
        return render(template or col.llm.prompt, ctx, f"{spec.source}: columns[{index}].llm.prompt")
    except GenerationError:
        return template or col.llm.prompt


def judge_column(spec: Any, col: Any, index: int, data: pd.DataFrame, backend: Any, k: int, seed: int,
                 instruction: str | None = None) -> dict[str, Any]:
    """Pass rate of `k` sampled values of `col` against its instruction (`instruction`, a template,
    default the column's prompt), with the failing ones and the judge's reasons. Unparseable
    verdicts are counted apart and left out of the rate."""
    fields = [f for f in col.output_names() if f in data.columns]
    rows = data.dropna(subset=fields, how="all") if fields else data.iloc[:0]
    idx = np.sort(np.random.default_rng(seed).permutation(len(rows))[:k])
    sample = rows.iloc[idx]
    reqs, shown = [], []
    for i, (_, r) in enumerate(sample.iterrows()):  # k is small (a judge sample), not a hot path
        row = r.to_dict()
        value = {f: row[f] for f in fields}
        value_text = json.dumps(value, ensure_ascii=False, default=str)
        user = (f"The instruction this value was written for:\n{_instruction(spec, col, index, row, instruction)}\n\n"
                f"Generated value:\n{value_text}\n\n"
                'Does the generated value follow the instruction? Reply with JSON {"pass": true or false, "reason": "<one short sentence>"}.')
        reqs.append(LLMRequest(messages=(("system", JUDGE_SYSTEM), ("user", user)), schema=VERDICT_SCHEMA, seed=seed + i,
                               temperature=0.0, top_p=1.0, max_tokens=120, constrained=spec.llm.constrained))
        shown.append(value_text)
    results = backend.complete(reqs) if reqs else []
    passed, failures, invalid = 0, [], 0
    for value_text, res in zip(shown, results):
        obj, errs = parse_and_validate(res.text, VERDICT_SCHEMA)
        if errs:
            invalid += 1
            continue
        if obj["pass"]:
            passed += 1
        else:
            failures.append({"value": value_text[:300], "reason": str(obj["reason"])[:200]})
    judged = len(results) - invalid
    return {"column": col.name, "judged": judged, "invalid_verdicts": invalid, "passed": passed,
            "pass_rate": passed / judged if judged else None, "failures": failures[:5]}


def template_variables(template: str) -> set[str] | None:
    """Jinja2 variables a template reads; None when it does not parse."""
    from jinja2 import TemplateSyntaxError

    from synthloop.spec.dag import template_names

    try:
        return template_names(template)
    except TemplateSyntaxError:
        return None


def check_rewrite(old: str, new: str) -> str | None:
    """Why a rewritten template is refused (None: accepted)."""
    if not new.strip():
        return "the rewrite is empty"
    if new.strip() == old.strip():
        return "the rewrite is the old prompt"
    names = template_variables(new)
    if names is None:
        return "the rewrite is not a valid Jinja2 template"
    lost = sorted((template_variables(old) or set()) - names)
    if lost:
        return "the rewrite drops the placeholder(s) " + ", ".join("{{ %s }}" % v for v in lost)
    unknown = sorted(names - (template_variables(old) or set()))
    if unknown:
        return "the rewrite reads variable(s) the old prompt does not: " + ", ".join(unknown)
    return None


def rewrite_prompt(spec: Any, col: Any, report: dict[str, Any], backend: Any, seed: int, attempts: int = 2) -> tuple[str | None, list[dict[str, str]]]:
    """A new template for `col` from the judge's failures: (accepted template or None, refused tries
    with the reason each was refused)."""
    old = col.llm.prompt
    names = sorted(template_variables(old) or set())
    fails = "\n".join(f"- {f['value']} -> {f['reason']}" for f in report.get("failures", [])[:5]) or "- (none recorded)"
    keep = ("Keep every Jinja2 placeholder exactly as written: " + ", ".join("{{ %s }}" % v for v in names) + ". ") if names else ""
    user = (f"This prompt template drives one column of a synthetic data generator:\n{old}\n\n"
            f"A reviewer found that {1 - (report.get('pass_rate') or 0):.0%} of sampled outputs miss the instruction:\n{fails}\n\n"
            f"Rewrite the template so that outputs follow the instruction. {keep}Add no new placeholders. "
            'Reply with JSON {"prompt": "<the new template>"}.')
    refused: list[dict[str, str]] = []
    for a in range(attempts):
        req = LLMRequest(messages=(("system", REWRITER_SYSTEM), ("user", user)), schema=REWRITE_SCHEMA, seed=seed + a,
                         temperature=0.7, top_p=0.95, max_tokens=400, constrained=spec.llm.constrained)
        res = backend.complete([req])[0]
        obj, errs = parse_and_validate(res.text, REWRITE_SCHEMA)
        if errs:
            refused.append({"prompt": res.text[:500], "reason": "invalid answer: " + "; ".join(errs)})
            continue
        why = check_rewrite(old, obj["prompt"])
        if why is None:
            return obj["prompt"], refused
        refused.append({"prompt": obj["prompt"][:500], "reason": why})
    return None, refused
