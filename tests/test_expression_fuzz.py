"""Property tests: random expression text, random syntax trees rendered to text, and random prompt
templates never raise anything but the project's error type (derandomized, so CI is repeatable)."""
from __future__ import annotations

import ast

import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from jinja2 import TemplateSyntaxError  # noqa: E402

from synthloop.constraints.expression import Expression  # noqa: E402
from synthloop.errors import SynthloopError  # noqa: E402
from synthloop.generate.expr import FUNCTIONS, parse_expression  # noqa: E402
from synthloop.generate.prompts import render  # noqa: E402
from synthloop.spec.dag import template_names  # noqa: E402

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

FRAME = pd.DataFrame({
    "a": [1, -2, 3], "b": [0.5, 0.0, -1.5], "s": ["x", "yy", None], "d": ["2024-01-05", "bad", None],
    "o": pd.Series([10**18, "t", None], dtype=object),
})
SNAPSHOT = FRAME.copy()
NAMES = ["a", "b", "s", "d", "o", "missing", "True", "None"]

_leaves = st.one_of(
    st.sampled_from(NAMES).map(lambda n: ast.Name(n, ast.Load())),
    st.integers(-(2**70), 2**70).map(ast.Constant),
    st.sampled_from([0, 1, 2, 10, 64, 10**9]).map(ast.Constant),
    st.floats(allow_nan=False).map(ast.Constant),
    st.text(max_size=6).map(ast.Constant),
    st.sampled_from([True, False, None]).map(ast.Constant),
)
_BINOPS = [ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.BitOr, ast.MatMult]
_CMPOPS = [ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is]
_CALLS = sorted(FUNCTIONS) + ["open", "__import__", "getattr", "eval"]


def _extend(children: st.SearchStrategy[ast.expr]) -> st.SearchStrategy[ast.expr]:
    pair = st.tuples(children, children)
    return st.one_of(
        st.builds(lambda p, op: ast.BinOp(p[0], op(), p[1]), pair, st.sampled_from(_BINOPS)),
        st.builds(lambda c, op: ast.UnaryOp(op(), c), children, st.sampled_from([ast.USub, ast.UAdd, ast.Not, ast.Invert])),
        st.builds(lambda p, op: ast.BoolOp(op(), list(p)), pair, st.sampled_from([ast.And, ast.Or])),
        st.builds(lambda p, op: ast.Compare(p[0], [op()], [p[1]]), pair, st.sampled_from(_CMPOPS)),
        st.builds(lambda c, items: ast.Compare(c, [ast.In()], [ast.List(items, ast.Load())]),
                  children, st.lists(children, max_size=3)),
        st.builds(lambda t, p: ast.IfExp(t, p[0], p[1]), children, pair),
        st.builds(lambda f, args: ast.Call(ast.Name(f, ast.Load()), args, []), st.sampled_from(_CALLS),
                  st.lists(children, max_size=3)),
        st.builds(lambda c, attr: ast.Attribute(c, attr, ast.Load()), children, st.sampled_from(["x", "__class__"])),
        st.builds(lambda c: ast.Subscript(c, ast.Constant(0), ast.Load()), children),
        st.builds(lambda items: ast.List(items, ast.Load()), st.lists(children, max_size=3)),
    )


expressions = st.recursive(_leaves, _extend, max_leaves=25).map(lambda node: ast.unparse(ast.Expression(node)))
raw_text = st.text(alphabet=st.sampled_from(list("abs0129.+-*/%()[]<>=!'\" ,_eijnotrf*")), max_size=60)


def _check_generate(text: str) -> None:
    try:
        expr = parse_expression(text)
    except SynthloopError:
        return
    try:
        out = expr.evaluate(FRAME)
    except SynthloopError:
        return
    assert len(out) == len(FRAME)


def _check_constraint(text: str) -> None:
    try:
        rule = Expression(text)
        rule.is_valid(FRAME)
    except SynthloopError:
        return


@FUZZ
@given(expressions)
def test_random_syntax_trees_only_raise_synthloop_errors(text: str) -> None:
    _check_generate(text)
    _check_constraint(text)
    pd.testing.assert_frame_equal(FRAME, SNAPSHOT)  # abs(a, b) once wrote into column b (NumPy's `out`)


@FUZZ
@given(raw_text)
def test_random_text_only_raises_synthloop_errors(text: str) -> None:
    _check_generate(text)
    _check_constraint(text)


_j_leaf = st.one_of(
    st.sampled_from(["name", "items", "n", "missing", "range(3)", "range(n)", "loop"]),
    st.sampled_from(["0", "2", "10", "10**9", "1000000000", "-1", "1.5"]),
    st.text(alphabet="ab%{}", max_size=4).map(repr),
)


def _j_extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pair = st.tuples(children, children)
    return st.one_of(
        st.builds(lambda p, op: f"({p[0]} {op} {p[1]})", pair, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "~", "==", "in"])),
        st.builds(lambda c, f, arg: f"({c}|{f}({arg}))", children,
                  st.sampled_from(["center", "indent", "replace", "join", "slice", "batch", "format", "sum", "list",
                                   "truncate", "wordwrap", "round", "default", "length", "upper"]), children),
        st.builds(lambda c, m, arg: f"({c}).{m}({arg})", children,
                  st.sampled_from(["ljust", "zfill", "replace", "format", "join", "upper", "append"]), children),
        st.builds(lambda c: f"range({c})", children),
        st.builds(lambda c: f"[{c}, {c}]", children),
    )


_j_expr = st.recursive(_j_leaf, _j_extend, max_leaves=8)
templates = st.one_of(
    _j_expr.map(lambda e: "{{ " + e + " }}"),
    st.tuples(_j_expr, _j_expr).map(lambda p: "{% for x in " + p[0] + " %}{{ x }}{{ " + p[1] + " }}{% endfor %}"),
    st.tuples(_j_expr, _j_expr).map(lambda p: "{% set v = " + p[0] + " %}{% if v %}{{ v ~ " + p[1] + " }}{% endif %}"),
    st.text(alphabet=st.sampled_from(list("{}%#()|~*x ")), max_size=30),
)


@FUZZ
@given(templates)
def test_random_prompt_templates_only_raise_synthloop_errors(template: str) -> None:
    try:
        template_names(template)
    except TemplateSyntaxError:  # the spec loader turns this into `spec.yaml:7: columns[1].llm.prompt: ...`
        return
    try:
        render(template, {"name": "Ada", "items": ["a", "b"], "n": 3}, "spec.yaml: columns[1].llm.prompt")
    except SynthloopError:
        pass
