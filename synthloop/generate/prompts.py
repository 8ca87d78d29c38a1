"""Prompt building: system instruction, rendered template, constraints, things to avoid, a few-shot
block picked for diversity from a seed file, and the JSON schema the answer must follow."""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import TemplateError, UndefinedError
from jinja2.sandbox import SecurityError

from synthloop._safe_template import render_template
from synthloop.generate.diversity import jaccard_matrix, shingle_matrix
from synthloop.spec.dag import template_env
from synthloop.spec.errors import GenerationError, SpecError
from synthloop.spec.models import Column, LLMSettings, Spec

REASONING_FIELD = "reasoning"
MAX_SEED_ROWS = 5000


def answer_schema(col: Column, assigned: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON schema one answer must follow: a text column becomes {"<name>": string};
    quota-assigned enum fields are pinned to their planned value; reasoning comes first."""
    llm = col.llm
    assert llm is not None
    if llm.structured:
        schema = copy.deepcopy(llm.json_schema)
        assert schema is not None
        schema.setdefault("required", list(schema["properties"]))
        schema.setdefault("additionalProperties", False)
        for field, value in (assigned or {}).items():
            prop = dict(schema["properties"].get(field, {}))
            prop.pop("enum", None)
            prop["enum"] = [value]
            schema["properties"][field] = prop
    else:
        schema = {
            "type": "object",
            "properties": {col.name: {"type": "string", "minLength": llm.min_chars, "maxLength": llm.max_chars}},
            "required": [col.name],
            "additionalProperties": False,
        }
    if llm.reasoning:
        schema["properties"] = {REASONING_FIELD: {"type": "string", "maxLength": 400}, **schema["properties"]}
        schema["required"] = [REASONING_FIELD] + [r for r in schema["required"] if r != REASONING_FIELD]
    return schema


def _plain(v: Any) -> Any:
    """JSON/Jinja-friendly scalar: NaN -> None, numpy -> Python, timestamps -> ISO text."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, np.generic):
        return _plain(v.item())
    if isinstance(v, (pd.Timestamp,)):
        return v.isoformat()
    return v


class FewShotPool:
    """Examples from a seed file, with a precomputed n-gram similarity matrix for diverse picks."""

    def __init__(self, spec: Spec, col: Column, index: int) -> None:
        from synthloop.io import read_table
        from synthloop.errors import DataError

        fs = col.llm.few_shot  # type: ignore[union-attr]
        assert fs is not None
        where = f"{spec.source}: columns[{index}].llm.few_shot"
        try:  # checked again here, at reading: the spec may have been built without the loader
            path = spec.resolve_file(fs.file)
        except (ValueError, OSError) as exc:
            raise SpecError(f"{where}.file: seed file {exc}") from None
        try:
            df = read_table(path)
        except DataError as exc:
            raise SpecError(f"{where}.file: {exc}") from None
        if len(df) > MAX_SEED_ROWS:
            df = df.sample(MAX_SEED_ROWS, random_state=0).reset_index(drop=True)
        if col.llm.structured:  # type: ignore[union-attr]
            fields = [f for f in col.llm.json_schema["properties"] if f in df.columns]  # type: ignore[index]
            if not fields:
                raise SpecError(f"{where}.file: {path} has none of the schema's fields ({', '.join(col.llm.json_schema['properties'])})")  # type: ignore[index]
            self.examples = [{k: _plain(v) for k, v in r.items()} for r in df[fields].to_dict("records")]
        else:
            name = fs.column or col.name
            if name not in df.columns:
                raise SpecError(f"{where}.column: {path} has no column '{name}' (columns: {', '.join(map(str, df.columns))})")
            self.examples = [{col.name: _plain(v)} for v in df[name]]
        for m in fs.match:
            if m not in df.columns:
                raise SpecError(f"{where}.match: {path} has no column '{m}' to match on")
        self.match_keys = df[fs.match].astype(str).to_numpy() if fs.match else None
        self.match = list(fs.match)
        self.k = fs.k
        self.diverse = fs.diverse
        texts = [json.dumps(e, ensure_ascii=False, sort_keys=True) for e in self.examples]
        self.sim = jaccard_matrix(shingle_matrix(texts, 3)) if fs.diverse and len(texts) > 1 else None

    def pick(self, row: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
        """k examples: those sharing the row's `match` values, spread out by greedy max-min distance."""
        cand = np.arange(len(self.examples))
        if self.match_keys is not None:
            want = np.array([str(_plain(row.get(m))) for m in self.match], dtype=object)
            ok = (self.match_keys == want[None, :]).all(axis=1)
            if ok.any():
                cand = cand[ok]
        k = min(self.k, len(cand))
        if k == 0:
            return []
        pool = rng.permutation(cand)[: max(4 * k, k)]
        if self.sim is None or k == 1:
            chosen = list(pool[:k])
        else:
            chosen = [int(pool[0])]
            rest = pool[1:]
            for _ in range(k - 1):
                closest = self.sim[np.ix_(rest, chosen)].max(axis=1)  # similarity to the nearest chosen
                j = int(np.argmin(closest))
                chosen.append(int(rest[j]))
                rest = np.delete(rest, j)
        return [self.examples[i] for i in chosen]


@dataclass
class Prompt:
    messages: tuple[tuple[str, str], ...]
    schema: dict[str, Any]
    start: str = ""  # the text's rendered `start` (text columns)


def render(template: str, context: dict[str, Any], where: str) -> str:
    """`template` rendered for one row within the sandbox's size and work limits; any failure is
    one GenerationError naming `where` (the spec file and YAML path)."""
    try:
        return render_template(template_env(), template, context).strip()
    except UndefinedError as exc:
        raise GenerationError(f"{where}: {exc.message}") from None
    except SecurityError as exc:
        raise GenerationError(f"{where}: template refused by the sandbox: {exc}") from None
    except TemplateError as exc:
        raise GenerationError(f"{where}: {exc}") from None
    except Exception as exc:  # e.g. {{ 1 + "a" }}: a TypeError raised inside the template
        raise GenerationError(f"{where}: the template failed: {type(exc).__name__}: {str(exc)[:200]}") from None


def _has_placeholder(text: str) -> bool:
    return "{{" in text or "{%" in text


def answer_format(col: Column, schema: dict[str, Any]) -> str:
    """The answer-format line. It shows no placeholder (`<text>`) a small model could copy."""
    llm = col.llm
    assert llm is not None
    if llm.structured:
        fmt = "Reply with one JSON object that follows this JSON schema:\n" + json.dumps(schema, ensure_ascii=False)
        if llm.reasoning:
            fmt += f'\nFirst think briefly in "{REASONING_FIELD}", then give the fields.'
        return fmt
    if llm.reasoning:
        return (f'Reply with one JSON object with two keys: "{REASONING_FIELD}" (a short reasoning) and '
                f'"{col.name}" (the text itself).')
    return f'Reply with one JSON object with one key, "{col.name}", whose value is the text itself.'


def _example_lines(col: Column, examples: list[dict[str, Any]]) -> str:
    """Few-shot examples, one a line: a text column's bare texts as a list (a JSON object around each
    would cost ~8 prompt tokens per example and teaches nothing: the answer's JSON is enforced by
    the grammar or shown by the answer-format line), anything else as JSON objects."""
    assert col.llm is not None
    if not col.llm.structured and all(set(e) == {col.name} for e in examples):
        return "\n".join("- " + " ".join(str(e[col.name]).split()) for e in examples)
    return "\n".join(json.dumps(e, ensure_ascii=False) for e in examples)


def build_prompt(spec: Spec, settings: LLMSettings, col: Column, index: int, row: dict[str, Any],
                 row_index: int, n_rows: int, examples: list[dict[str, Any]],
                 assigned: dict[str, Any] | None = None, extra_avoid: list[str] | None = None,
                 extra_rules: list[str] | None = None, row_rules: list[str] | None = None,
                 fixed_examples: bool = False, state_assigned: bool = True) -> Prompt:
    """The exact messages sent for one cell (what `synthloop prompt SPEC --row N` prints);
    `extra_rules`: fixed lines added to the rules (the real texts' style in mixed specs);
    `row_rules`: lines for this record only (its planned length in mixed specs);
    `state_assigned`: say the planned values as rules (False when the backend writes them itself).

    Laid out for prefix caching: everything that is the same for every row of the column (system,
    fixed rules, avoid list, answer format) comes first and the row's own part (examples, templated
    rules, planned values, the task) last, so a backend that keeps its evaluated prefix (llama.cpp)
    only evaluates the row-specific tail of each request."""
    llm = col.llm
    assert llm is not None
    ctx = {k: _plain(v) for k, v in row.items()}
    ctx.update(row_index=row_index, n_rows=n_rows, dataset=spec.name)
    where = f"{spec.source}: columns[{index}].llm"
    system = settings.system
    if llm.system:
        system = system + "\n" + render(llm.system, ctx, where + ".system")
    schema = answer_schema(col, assigned)
    head: list[str] = []
    fixed_rules = [r for r in llm.constraints if not _has_placeholder(r)] + list(extra_rules or [])
    if not llm.structured:
        fixed_rules.append(f"At most {llm.max_chars} characters.")
    if fixed_rules:
        head.append("Rules:\n" + "\n".join(f"- {r}" for r in fixed_rules))
    fixed_avoid = [a for a in llm.avoid if not _has_placeholder(a)]
    if fixed_avoid:
        head.append("Avoid:\n" + "\n".join(f"- {a}" for a in fixed_avoid))
    # the format line shows the column's schema as written; a value planned for this row is a rule
    # of the tail (and pinned in the decoding schema), so the head stays the same for every row
    head.append(answer_format(col, answer_schema(col)))
    tail: list[str] = []
    if examples:  # examples picked once for the column belong to the shared part
        (head if fixed_examples else tail).append("Examples:\n" + _example_lines(col, examples))
    record_rules = [render(r, ctx, f"{where}.constraints[{j}]") for j, r in enumerate(llm.constraints) if _has_placeholder(r)]
    if state_assigned:  # (a backend that writes pinned values into the answer itself needs no rule)
        record_rules += [f'"{k}" must be {json.dumps(v)}.' for k, v in (assigned or {}).items()]
    record_rules += list(row_rules or [])
    if record_rules:
        tail.append("Rules for this record:\n" + "\n".join(f"- {r}" for r in record_rules))
    row_avoid = [render(a, ctx, f"{where}.avoid[{j}]") for j, a in enumerate(llm.avoid) if _has_placeholder(a)]
    row_avoid += list(extra_avoid or [])
    if row_avoid:
        tail.append("Also avoid:\n" + "\n".join(f"- {a}" for a in row_avoid))
    tail.append("Task: " + render(llm.prompt, ctx, where + ".prompt"))
    start = " ".join(render(llm.start, ctx, where + ".start").split()) if llm.start else ""
    return Prompt(messages=(("system", system), ("user", "\n\n".join(head + tail))), schema=schema, start=start)


def repair_messages(prompt: Prompt, failures: list[str]) -> tuple[tuple[str, str], ...]:
    """The same prompt with one sentence at its end saying, in plain words, why the last answer
    was not kept. The rejected answer and parser messages are not shown (a small model copies
    what it sees into its next answer), and the shared prefix stays cacheable."""
    from synthloop.generate.agreement import repair_note

    *rest, (role, user) = prompt.messages
    return (*rest, (role, user + "\n\n" + repair_note(failures)))  # type: ignore[return-value]
