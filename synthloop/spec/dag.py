"""Column dependencies of a spec: who reads whom, in which order to compute, and cycle reports."""
from __future__ import annotations

from functools import lru_cache

from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from synthloop.spec.models import Column, Spec

# Names every prompt template may use without a column of that name.
BUILTIN_TEMPLATE_NAMES = frozenset({"row_index", "n_rows", "dataset"})


@lru_cache(maxsize=1)
def template_env() -> SandboxedEnvironment:
    """The one sandboxed Jinja2 environment for prompts: no attribute tricks reach Python internals."""
    from jinja2 import StrictUndefined

    from synthloop._safe_template import PromptSandbox  # size and work limits: see that module

    return PromptSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


def template_names(source: str) -> set[str]:
    """Variables a template reads (raises jinja2.TemplateSyntaxError on bad syntax)."""
    return set(meta.find_undeclared_variables(template_env().parse(source))) - BUILTIN_TEMPLATE_NAMES


def column_reads(col: Column) -> dict[str, set[str]]:
    """Names read by `col`, keyed by the YAML sub-path that reads them (for error messages)."""
    from synthloop.generate.expr import parse_expression

    reads: dict[str, set[str]] = {}
    if col.sampler is not None and col.sampler.by:
        reads["sampler.by"] = {col.sampler.by}
    if col.expression is not None:
        reads["expression"] = set(parse_expression(col.expression).names)
    if col.llm is not None:
        reads["llm.prompt"] = template_names(col.llm.prompt)
        if col.llm.system:
            reads["llm.system"] = template_names(col.llm.system)
        if col.llm.few_shot and col.llm.few_shot.match:
            reads["llm.few_shot.match"] = set(col.llm.few_shot.match)
        if col.llm.start:
            reads["llm.start"] = template_names(col.llm.start)
        for key in ("constraints", "avoid"):
            for j, text in enumerate(getattr(col.llm, key)):
                names = template_names(text)
                if names:
                    reads[f"llm.{key}.{j}"] = names
        ch = col.llm.checks
        if ch is not None:
            own = set(col.output_names())
            for key, refs in (("must_mention", ch.must_mention), ("agrees_with", list(ch.agrees_with.values()))):
                names = {r.split(".", 1)[0] if "." in r else r for r in refs} - own
                if names:
                    reads[f"llm.checks.{key}"] = names
            expr_names = set().union(*(parse_expression(e).names for e in ch.expressions)) if ch.expressions else set()
            if expr_names - own - {"text"}:
                reads["llm.checks.expressions"] = expr_names - own - {"text"}
            if ch.judge:
                judge_names = template_names(ch.judge) - own
                if judge_names:
                    reads["llm.checks.judge"] = judge_names
    return reads


def dependencies(spec: Spec) -> dict[str, set[str]]:
    """Spec column -> spec columns it needs first (structured fields resolve to their column)."""
    producer = spec.producer()
    deps: dict[str, set[str]] = {}
    for col in spec.columns:
        names = set().union(*column_reads(col).values()) if column_reads(col) else set()
        deps[col.name] = {producer[n].name for n in names if n in producer} - {col.name}
    return deps


def find_cycle(deps: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None; iterative DFS so long chains cannot overflow."""
    state: dict[str, int] = {}
    for root in deps:
        if state.get(root):
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(deps[root]))]
        path = [root]
        state[root] = 1
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            nxt = todo.pop(0)
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, sorted(deps.get(nxt, ()))))
    return None


def topo_order(deps: dict[str, set[str]], order_hint: list[str]) -> list[str]:
    """Columns in an order where every column comes after what it reads; ties keep spec order."""
    done: list[str] = []
    placed: set[str] = set()
    remaining = list(order_hint)
    while remaining:
        for name in remaining:
            if deps[name] <= placed:
                done.append(name)
                placed.add(name)
                remaining.remove(name)
                break
        else:  # pragma: no cover - loader rejects cycles first
            raise ValueError(f"cycle among {remaining}")
    return done


def downstream(deps: dict[str, set[str]], start: str) -> set[str]:
    """Every column that reads `start`, directly or through others (not including `start`)."""
    out: set[str] = set()
    frontier = {start}
    while frontier:
        frontier = {c for c, d in deps.items() if d & frontier} - out
        out |= frontier
    return out
