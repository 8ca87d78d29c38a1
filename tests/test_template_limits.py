"""Prompt templates run in a sandbox with size and work limits: every way to hang, exhaust memory
or overflow the stack with a few characters ends in one GenerationError line naming the column."""
from __future__ import annotations

from pathlib import Path

import pytest

from synthloop import _safe_template
from synthloop.generate.prompts import render
from synthloop.spec import load_spec
from synthloop.spec.dag import template_env
from synthloop.spec.errors import GenerationError, SpecError

WHERE = "spec.yaml: columns[1].llm.prompt"
CTX = {"name": "Ada", "items": ["a", "b"], "n": 3}


def _refused(template: str) -> str:
    with pytest.raises(GenerationError) as info:
        render(template, CTX, WHERE)
    msg = str(info.value)
    assert msg.startswith(WHERE + ": ") and "\n" not in msg
    return msg


@pytest.mark.parametrize("template, fragment", [
    ("{{ range(10**9) }}", "range(1000000000) has 1,000,000,000 items"),
    ("{% for i in range(10**9) %}x{% endfor %}", "at most 100,000"),
    ('{{ "a" * 10**10 }}', "repeating a value"),
    ('{{ 10**10 * "a" }}', "repeating a value"),
    ("{{ 10**(10**10) }}", "too large"),
    ("{{ (2**4000) * (2**4000) }}", "too large"),
    ('{{ "a"|center(1000000000) }}', "width 1000000000 is too large"),
    ('{{ "a".ljust(10**9) }}', "too large"),
    ('{{ "{:>999999999}".format(1) }}', "format width"),
    ('{{ "%0999999999d" % 1 }}', "format width"),
    ('{{ "%0999999999d"|format(1) }}', "format width"),
    ('{{ [1]|slice(1000000000)|list }}', "slice count"),
    ('{{ ("x" * 900000)|replace("", "yy") }}', "replaced text"),
    ("{{ ([1] * 1000)|sum(start=[]) }}", "adds numbers only"),
])
def test_operators_and_filters_that_would_make_huge_values_are_refused(template: str, fragment: str) -> None:
    assert fragment in _refused(template)


@pytest.mark.parametrize("template, fragment", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "too much work"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "more than"),
    ("{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}", "too much work"),
    ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "recurses too deeply"),
    ("{% for x in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}", "recurses too deeply"),
    ("{% set a = [1] %}" + "{% set a = [a, a] %}" * 60 + "{{ a }}", "more than"),
    ("{% for i in range(100000) %}" + "x" * 1000 + "{% endfor %}", "characters"),
])
def test_loops_recursion_and_doubling_stop_within_the_budget(template: str, fragment: str) -> None:
    assert fragment in _refused(template)


def test_ordinary_templates_render_as_before() -> None:
    tpl = ("{% for x in items %}{{ loop.index }}:{{ x|upper }} {% endfor %}{{ items|join(', ') }} "
           "{{ '%s-%d' % (name, n) }} {{ '{} {}'.format(name, 2) }} {{ name * 2 }} {{ 2 ** 10 }} {{ range(3)|list }} "
           "{% if 'd' in name %}yes{% endif %} {{ name[1:] ~ '!' }}")
    assert render(tpl, CTX, WHERE) == "1:A 2:B a, b Ada-3 Ada 2 AdaAda 1024 [0, 1, 2] yes da!"


def test_intercepted_operators_are_not_folded_while_compiling() -> None:
    code = template_env().compile("{{ 10 ** (10 ** 10) }}{{ 'a' * 10**10 }}", raw=True)
    assert "environment.call_binop(context, '**'" in code and "environment.call_binop(context, '*'" in code


def test_errors_inside_the_template_are_one_line() -> None:
    assert "TypeError" in _refused('{{ 1 + "a" }}')
    assert "include" in _refused("{% include 'other.txt' %}")


def test_each_render_gets_a_fresh_budget() -> None:
    tpl = "{% for i in range(90000) %}{% endfor %}ok"
    for _ in range(5):  # 5 x 90,000 loop items would exhaust one budget
        assert render(tpl, CTX, WHERE) == "ok"
    assert _safe_template._BUDGET.get() is None


def _spec(tmp_path: Path, prompt: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text("name: t\nrows: 3\ncolumns:\n  - name: kind\n    sampler: {categorical: {a: 1.0}}\n"
                 f"  - name: text\n    llm:\n      prompt: {prompt!r}\n")
    return p


@pytest.mark.parametrize("prompt, fragment", [
    ("x" * 70_000, "at most 65,536"),
    ("{{ " + "(" * 400 + "kind" + ")" * 400 + " }}", "nested too deeply"),
    ("{{ " + " + ".join(["kind"] * 3000) + " }}", "nested too deeply"),
    ("{% include 'x.txt' %}", "not available"),
])
def test_spec_loading_refuses_templates_beyond_the_limits(tmp_path: Path, prompt: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(_spec(tmp_path, prompt))
    msg = str(info.value)
    assert ":8: columns[1].llm.prompt: template syntax error" in msg and fragment in msg


def test_values_that_share_parts_are_measured_in_full() -> None:
    big = "{% set s = 'x' * 1000 %}"
    assert "repeating a value" in _refused(big + "{{ ([s] * 10000)|join }}")
    assert "more than 1,000,000" in _refused(big + "{% set l = [s] * 999 %}{{ [l, l]|join }}")
