"""The expression language: vectorized results, and no way to reach Python internals."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloop.generate.expr import ExpressionError, parse_expression


@pytest.fixture()
def df() -> pd.DataFrame:
    return pd.DataFrame({
        "amount": [10.0, 250.0, 3.5, 1000.0],
        "type": ["credit", "debit", "transfer", "credit"],
        "n": [1, 2, 3, 4],
        "when": ["2024-01-05", "2024-03-01", "2024-12-31", "2023-07-15"],
        "name": ["ada", "bob", None, "cy"],
    })


@pytest.mark.parametrize("src, expected", [
    ("amount * 2 + 1", [21.0, 501.0, 8.0, 2001.0]),
    ("round(amount * 0.015, 2)", [0.15, 3.75, 0.05, 15.0]),
    ("amount if type == 'credit' else 0", [10.0, 0.0, 0.0, 1000.0]),
    ("type in ['credit', 'debit']", [True, True, False, True]),
    ("type not in ('credit',)", [False, True, True, False]),
    ("amount > 5 and n < 4", [True, True, False, False]),
    ("not (amount > 100) or n == 4", [True, False, True, True]),
    ("0 < n <= 2", [True, True, False, False]),
    ("max(n, 2)", [2, 2, 3, 4]),
    ("clip(amount, 5, 500)", [10.0, 250.0, 5.0, 500.0]),
    ("upper(type)", ["CREDIT", "DEBIT", "TRANSFER", "CREDIT"]),
    ("concat(type, '-', n)", ["credit-1", "debit-2", "transfer-3", "credit-4"]),
    ("year(when)", [2024, 2024, 2024, 2023]),
    ("coalesce(name, 'unknown')", ["ada", "bob", "unknown", "cy"]),
    ("n % 2 == 0", [False, True, False, True]),
    ("7", [7, 7, 7, 7]),
])
def test_expressions_evaluate_column_wise(df: pd.DataFrame, src: str, expected: list) -> None:
    out = parse_expression(src).evaluate(df)
    assert len(out) == len(df)
    assert list(out) == expected


def test_names_are_the_columns_read() -> None:
    assert parse_expression("round(amount * rate, 2) if kind == 'a' else fee").names == {"amount", "rate", "kind", "fee"}


def test_evaluates_large_frames_in_one_pass() -> None:
    big = pd.DataFrame({"x": np.arange(200_000, dtype=float)})
    out = parse_expression("x * 2 if x > 10 else -1").evaluate(big)
    assert out.iloc[-1] == 2 * 199_999 and out.iloc[0] == -1


@pytest.mark.parametrize("src, fragment", [
    ("__import__('os').system('echo hi')", "not allowed"),
    ("amount.__class__", "not allowed"),
    ("(lambda: 1)()", "not allowed"),
    ("[x for x in amount]", "not allowed"),
    ("amount[0]", "not allowed"),
    ("open('/etc/passwd')", "function 'open' is not allowed"),
    ("round", "is a function"),
    ("f(amount=1)", "not allowed"),
    ("amount +", "syntax error"),
])
def test_unsafe_or_broken_expressions_are_refused(src: str, fragment: str) -> None:
    with pytest.raises(ExpressionError, match=fragment):
        parse_expression(src)


def test_unknown_column_and_type_errors_are_explained(df: pd.DataFrame) -> None:
    with pytest.raises(ExpressionError, match="unknown column 'missing'"):
        parse_expression("missing + 1").evaluate(df)
    with pytest.raises(ExpressionError, match="expression 'type - 1'"):
        parse_expression("type - 1").evaluate(df)
