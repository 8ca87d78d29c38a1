"""Both expression languages (spec `expression:` columns and constraint rules) refuse inputs that
would hang, exhaust memory or overflow the stack, with one SynthloopError line each."""
from __future__ import annotations

import ast

import pandas as pd
import pytest

from synthloop import _safe_expr
from synthloop.constraints import ExpressionConstraint, constraint_from_dict
from synthloop.constraints.expression import Expression
from synthloop.errors import SchemaError, SynthloopError
from synthloop.generate.expr import ExpressionError, parse_expression
from synthloop.schema import TableSchema


@pytest.fixture()
def df() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3], "s": ["x", "yy", "zzz"], "n": [1, 2, 3],
                         "big": pd.Series([10**18, 2, 3], dtype=object)})


def _both(text: str) -> list[Exception]:
    """The error each language raises while reading `text` (both must raise)."""
    errors: list[Exception] = []
    for build, cls in ((parse_expression, ExpressionError), (Expression, SchemaError)):
        with pytest.raises(cls) as info:
            build(text)
        errors.append(info.value)
    return errors


@pytest.mark.parametrize("text, fragment", [
    ("age < 10**10**10", "too large"),
    ("age < 2**2**2**2**2", "too large"),
    ("age < 10.0**400", "too large"),
    ("s == 'a' * 10**9", "repeating text"),
    ("s == 10**9 * 'ab'", "repeating text"),
    ("age < 1/0", "divides by zero"),
    ("+".join(["age"] * 10_000), "nested too deeply"),
    ("-" * 60_000 + "1", "nested too deeply"),
    ("not " * 3_000 + "age", "nested too deeply"),
    ("(" * 300 + "age" + ")" * 300, "syntax error"),
    ("age + " * 20_000 + "1", "characters long"),
])
def test_both_languages_refuse_expensive_expressions_when_read(text: str, fragment: str) -> None:
    for err in _both(text):
        assert fragment in str(err)
        assert "\n" not in str(err) and len(str(err)) < 400  # one short line, even for a 100 KB input


def test_nesting_limit_is_the_same_in_both_languages() -> None:
    ok = "+".join(["a"] * (_safe_expr.MAX_DEPTH - 1))
    assert parse_expression(ok).names == {"a"}
    assert Expression(ok + " > 0").columns == ["a"]
    _both("+".join(["a"] * (_safe_expr.MAX_DEPTH + 2)))


def test_a_42_kb_expression_is_checked_and_every_node_visited_once() -> None:
    text = "concat(" + ", ".join(f"max(col{i}, 1)" for i in range(2500)) + ")"
    assert len(text) > 40_000
    expr = parse_expression(text)
    assert len(expr.names) == 2500
    tree = ast.parse(text, mode="eval")
    visited = _safe_expr.walk(tree, ExpressionError)
    markers = sum(isinstance(n, _safe_expr._MARKERS) for n in ast.walk(tree))
    assert len(visited) == sum(1 for _ in ast.walk(tree)) - markers  # linear: one visit per node
    rule = Expression(" + ".join(f"abs(c{i})" for i in range(150)) + " >= 0 and " +
                      " and ".join(f"c{i} in [1, 2, 3]" for i in range(2000)))
    assert len(rule.columns) == 2000


def test_integers_stay_within_64_bits_and_become_floats_beyond(df: pd.DataFrame) -> None:
    assert parse_expression("2**62").evaluate(df).tolist() == [2**62] * 3
    assert parse_expression("2**64").evaluate(df).tolist() == [float(2**64)] * 3
    assert parse_expression("123456789012345678901234567890 + 0").evaluate(df).iloc[0] == pytest.approx(1.2345678901e29)
    out = parse_expression("big ** 10**10").evaluate(df)  # an object column is powered as NumPy numbers,
    assert out.dtype != object                             # not as Python big ints row by row
    assert parse_expression("a ** 2").evaluate(df).tolist() == [1, 4, 9]


def test_text_repetition_of_columns_is_bounded(df: pd.DataFrame) -> None:
    assert parse_expression("s * n").evaluate(df).tolist() == ["x", "yyyy", "zzzzzzzzz"]
    with pytest.raises(ExpressionError, match=r"expression 's \* 10\*\*8'.*repeating text"):
        parse_expression("s * 10**8").evaluate(df)
    with pytest.raises(ExpressionError, match="'%' works on numbers only"):
        parse_expression("'%0999999999d' % a").evaluate(df)
    assert parse_expression("a % 2").evaluate(df).tolist() == [1, 0, 1]


@pytest.mark.parametrize("text, match", [
    ("[1, 2]", "a list is only allowed after 'in'"),
    ("a in b", "'in' needs a literal list"),
    ("a | b", "operator BitOr"),
    ("a is None", "comparison Is"),
    ("a + 1j", "constant 1j"),
])
def test_checks_that_need_the_structure_are_made_when_read(text: str, match: str) -> None:
    with pytest.raises(ExpressionError, match=match):
        parse_expression(text)


def test_a_constraint_checks_the_structure_when_read() -> None:
    with pytest.raises(SchemaError, match="a list is only allowed after 'in'"):
        Expression("[1, 2] * 10**9 == a")


def test_constraint_evaluation_errors_are_one_schema_error(df: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match=r"constraint expression 's - 1 > 0': cannot be computed"):
        ExpressionConstraint("s - 1 > 0").is_valid(df)
    with pytest.raises(SchemaError, match="repeating text"):
        ExpressionConstraint("s * a * 10**6 == s").is_valid(df)


def test_constraint_errors_name_where_the_rule_was_declared() -> None:
    with pytest.raises(SchemaError, match=r"^model\.npz: constraints\[0\]: constraint expression 'age < 10\*\*10\*\*10'"):
        constraint_from_dict({"type": "expression", "expression": "age < 10**10**10"}, "model.npz: constraints[0]")
    with pytest.raises(SchemaError, match=r"^s\.yaml: constraints\[0\]: .*too large"):
        TableSchema.from_dict({"columns": [{"name": "age", "kind": "numerical"}],
                               "constraints": [{"type": "expression", "expression": "age < 10**10**10"}]}, "s.yaml")


def test_non_text_expressions_are_refused_plainly() -> None:
    with pytest.raises(SchemaError, match="must be text"):
        constraint_from_dict({"type": "expression", "expression": 5})
    with pytest.raises(ExpressionError, match="must be text"):
        parse_expression(None)  # type: ignore[arg-type]


def test_every_error_is_a_synthloop_error() -> None:
    assert issubclass(ExpressionError, SynthloopError) and issubclass(_safe_expr.ExpressionLimitError, SynthloopError)


def test_functions_take_their_own_arguments_and_never_write_into_columns() -> None:
    frame = pd.DataFrame({"a": [1.0, -2.0], "b": [5.0, 5.0]})
    with pytest.raises(ExpressionError, match=r"abs\(\) takes 1 argument, got 2"):
        parse_expression("abs(a, b)")
    with pytest.raises(SchemaError, match=r"sqrt\(\) takes 1 argument, got 2"):
        Expression("sqrt(a, b) > 0")
    assert ExpressionConstraint("max(a, b, 0) >= 5").is_valid(frame).all()  # min/max reduce, NumPy's `out` unused
    assert parse_expression("max(a, b, 0)").evaluate(frame).tolist() == [5.0, 5.0]
    assert frame["b"].tolist() == [5.0, 5.0]


@pytest.mark.parametrize("text", ["10**10**10", "-(10**10**10)", "'a' * 10**9", "abs(10**10**10)"])
def test_constant_parts_are_computed_wherever_they_stand(text: str) -> None:
    with pytest.raises(ExpressionError, match="too large|repeating text"):
        parse_expression(text)
