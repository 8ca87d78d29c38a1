"""A small, safe expression language for derived columns, evaluated column-wise on a DataFrame.

Expressions are parsed with Python's `ast` and only a whitelist of node types is accepted:
numbers, strings, column names, arithmetic, comparisons (`in [..]` too), `and`/`or`/`not`,
`a if cond else b`, and calls of the functions in FUNCTIONS. Nothing is ever passed to eval,
attributes and subscripts are refused, so a spec cannot reach Python objects.
Every operation works on whole pandas Series, so one evaluation covers all rows.
Limits (length, nesting, integer size, text repetition) live in synthloop._safe_expr, shared with
the constraint language.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from synthloop import _safe_expr as _safe
from synthloop.errors import SynthloopError


class ExpressionError(SynthloopError):
    """An expression is not allowed or cannot be evaluated; the message names the offending part."""


def _dt(x: Any) -> Any:
    return pd.to_datetime(x, errors="coerce")


def _series_fn(fn: Callable[[pd.Series], Any]) -> Callable[[Any], Any]:
    def wrapped(x: Any) -> Any:
        return fn(x) if isinstance(x, pd.Series) else fn(pd.Series([x])).iloc[0]

    return wrapped


def _round(x: Any, digits: Any = None) -> Any:
    """round(x) is a whole number (an integer column, so "138 mmHg", not "138.0 mmHg");
    round(x, d) keeps d decimals."""
    if digits is not None:
        return np.round(x, int(digits))
    return _to_int(x)


def _to_int(x: Any) -> Any:
    if isinstance(x, pd.Series):
        return pd.Series(np.round(pd.to_numeric(x, errors="coerce")), index=x.index).astype("Int64")
    if x is None or (isinstance(x, float) and x != x):
        return None
    return int(np.round(x))


def _contains(s: Any, sub: Any) -> Any:
    """Whether text `s` contains `sub`, ignoring case."""
    if isinstance(sub, pd.Series):
        a = s if isinstance(s, pd.Series) else pd.Series([s] * len(sub), index=sub.index)
        return pd.Series([str(y).lower() in str(x).lower() for x, y in zip(a, sub)], index=a.index)
    if isinstance(s, pd.Series):
        return s.astype(str).str.lower().str.contains(str(sub).lower(), regex=False)
    return str(sub).lower() in str(s).lower()


def _where(cond: Any, a: Any, b: Any) -> Any:
    return _ifexp(cond, a, b)


def _concat(*parts: Any) -> Any:
    out: Any = ""
    for p in parts:
        out = out + (p.astype(str) if isinstance(p, pd.Series) else str(p))
    return out


def _coalesce(*parts: Any) -> Any:
    out = parts[0]
    for p in parts[1:]:
        out = out.where(out.notna(), p) if isinstance(out, pd.Series) else (p if out is None else out)
    return out


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": _safe.one_arg(np.abs),
    "round": _round,
    "floor": _safe.one_arg(np.floor),
    "ceil": _safe.one_arg(np.ceil),
    "sqrt": _safe.one_arg(np.sqrt),
    "log": _safe.one_arg(np.log),
    "log10": _safe.one_arg(np.log10),
    "exp": _safe.one_arg(np.exp),
    "min": _safe.pairwise(np.minimum),
    "max": _safe.pairwise(np.maximum),
    "clip": lambda x, lo, hi: np.clip(x, lo, hi),
    "where": _where,
    "int": _to_int,
    "contains": _contains,
    "float": lambda x: x.astype(float) if isinstance(x, pd.Series) else float(x),
    "str": lambda x: x.astype(str) if isinstance(x, pd.Series) else str(x),
    "lower": _series_fn(lambda s: s.astype(str).str.lower()),
    "upper": _series_fn(lambda s: s.astype(str).str.upper()),
    "title": _series_fn(lambda s: s.astype(str).str.title()),
    "strip": _series_fn(lambda s: s.astype(str).str.strip()),
    "len": _series_fn(lambda s: s.astype(str).str.len()),
    "concat": _concat,
    "coalesce": _coalesce,
    "isnull": _series_fn(lambda s: s.isna()),
    "year": _series_fn(lambda s: _dt(s).dt.year),
    "month": _series_fn(lambda s: _dt(s).dt.month),
    "day": _series_fn(lambda s: _dt(s).dt.day),
    "weekday": _series_fn(lambda s: _dt(s).dt.weekday),
    "hour": _series_fn(lambda s: _dt(s).dt.hour),
    "days_between": lambda a, b: (_dt(b) - _dt(a)) / pd.Timedelta(days=1),
}

# Arguments each function takes (min, max; None: any number), checked when the expression is read.
ARITY: dict[str, tuple[int, int | None]] = {
    **{name: (1, 1) for name in FUNCTIONS}, "round": (1, 2), "min": (2, None), "max": (2, None), "clip": (3, 3),
    "where": (3, 3), "contains": (2, 2), "concat": (1, None), "coalesce": (1, None), "days_between": (2, 2),
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_CONSTANTS = {"True": True, "False": False, "None": None, "null": None, "true": True, "false": False}


def _ifexp(cond: Any, a: Any, b: Any) -> Any:
    if not isinstance(cond, pd.Series):
        return a if bool(cond) else b
    c = cond.fillna(False).astype(bool).to_numpy()
    av = a.to_numpy() if isinstance(a, pd.Series) else a
    bv = b.to_numpy() if isinstance(b, pd.Series) else b
    return pd.Series(np.where(c, av, bv), index=cond.index)


def _as_bool(x: Any) -> Any:
    return x.fillna(False).astype(bool) if isinstance(x, pd.Series) else bool(x)


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression: `names` are the columns it reads."""

    source: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, df: pd.DataFrame) -> pd.Series:
        """Evaluate over every row of `df` at once; a scalar result is broadcast."""
        where = f"expression '{_safe.shorten(self.source)}'"
        try:
            with np.errstate(all="ignore"):
                out = _Eval(df).visit(self.tree.body)
        except ExpressionError:
            raise
        except SynthloopError as exc:  # a limit of the guarded operators
            raise ExpressionError(f"{where}: {exc}") from None
        except (RecursionError, MemoryError):
            raise ExpressionError(f"{where}: too large or too deeply nested to evaluate") from None
        except Exception as exc:  # type errors between columns, bad dates, ...
            raise ExpressionError(f"{where}: {type(exc).__name__}: {_safe.shorten(str(exc), 200)}") from None
        if not isinstance(out, pd.Series):
            out = pd.Series([out] * len(df), index=df.index)
        return out


def parse_expression(source: str) -> Expression:
    """Parse and whitelist-check `source` in time linear in its length; raise ExpressionError
    naming what is not allowed, or the limit it breaks (length, nesting, size of a constant)."""
    tree, text = _safe.parse(source, ExpressionError)
    nodes = _safe.walk(tree, ExpressionError)
    names: set[str] = set()
    lists_ok: set[int] = set()  # literal lists/tuples/sets that follow 'in'
    for node, parent in nodes:
        if isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                if not (isinstance(parent, ast.Call) and parent.func is node):
                    raise ExpressionError(f"'{node.id}' is a function; call it, e.g. {node.id}(x)")
            elif node.id not in _CONSTANTS:
                names.add(node.id)
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                what = node.func.id if isinstance(node.func, ast.Name) else _safe.snippet(text, node.func)
                raise ExpressionError(
                    f"function '{what}' is not allowed; use one of {', '.join(sorted(FUNCTIONS))}"
                )
            if node.keywords:
                raise ExpressionError(f"'{node.func.id}(...)': keyword arguments are not allowed")
            _safe.check_arity(node.func.id, len(node.args), ARITY, ExpressionError)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool, type(None))):
                raise ExpressionError(f"constant {_safe.snippet(text, node)} is not allowed")
        elif isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp)) and not isinstance(node.op, _ALLOWED):
            raise ExpressionError(f"operator {type(node.op).__name__} in '{_safe.snippet(text, node)}' is not allowed; "
                                  "use + - * / // % ** and/or/not")
        elif isinstance(node, ast.Compare):
            for op, comp in zip(node.ops, node.comparators):
                if not isinstance(op, _ALLOWED):
                    raise ExpressionError(f"comparison {type(op).__name__} in '{_safe.snippet(text, node)}' is not "
                                          "allowed; use == != < <= > >= in, not in")
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not isinstance(comp, (ast.List, ast.Tuple, ast.Set)):
                        raise ExpressionError("'in' needs a literal list, e.g. type in ['credit', 'debit']")
                    lists_ok.add(id(comp))
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            if id(node) not in lists_ok:
                raise ExpressionError(f"'{_safe.snippet(text, node)}': a list is only allowed after 'in'")
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(
                f"'{_safe.snippet(text, node)}' is not allowed ({type(node).__name__}); use arithmetic, comparisons, "
                f"and/or/not, 'a if c else b', column names and functions"
            )
    _safe.fold_constants(nodes, text, ExpressionError)
    return Expression(source, tree, frozenset(names))


_ALLOWED = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.Name,
    ast.Constant, ast.Load, ast.List, ast.Tuple, ast.Set,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not,
    ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
)


class _Eval(ast.NodeVisitor):
    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df

    def generic_visit(self, node: ast.AST) -> Any:  # pragma: no cover - parse_expression refuses these
        raise ExpressionError(f"'{type(node).__name__}' is not allowed")

    def visit_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (int, float, str, bool, type(None))):  # pragma: no cover - refused at parse
            raise ExpressionError(f"constant {node.value!r} is not allowed")
        return _safe.constant(node.value)

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id not in self.df.columns:
            raise ExpressionError(f"unknown column '{node.id}'")
        return self.df[node.id]

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        return _safe.binop(type(node.op), self.visit(node.left), self.visit(node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            b = _as_bool(v)
            return ~b if isinstance(b, pd.Series) else not b
        return _safe.unaryop(type(node.op), v) if isinstance(node.op, ast.USub) else +v

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        vals = [_as_bool(self.visit(v)) for v in node.values]
        out = vals[0]
        for v in vals[1:]:
            out = (out & v) if isinstance(node.op, ast.And) else (out | v)
        return out

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        result: Any = True
        for op, comp in zip(node.ops, node.comparators):
            if isinstance(op, (ast.In, ast.NotIn)):
                if not isinstance(comp, (ast.List, ast.Tuple, ast.Set)):
                    raise ExpressionError("'in' needs a literal list, e.g. type in ['credit', 'debit']")
                values = [self.visit(e) for e in comp.elts]
                if isinstance(left, pd.Series):
                    r = left.isin(values)
                else:
                    r = left in values
                if isinstance(op, ast.NotIn):
                    r = ~r if isinstance(r, pd.Series) else not r
                right = None
            else:
                right = self.visit(comp)
                r = _CMPOPS[type(op)](left, right)
            result = r if result is True else (result & r)
            left = right
        return result

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return _ifexp(self.visit(node.test), self.visit(node.body), self.visit(node.orelse))

    def visit_Call(self, node: ast.Call) -> Any:
        fn = FUNCTIONS[node.func.id]  # type: ignore[union-attr]
        return _safe.small(fn(*[self.visit(a) for a in node.args]))

    def visit_List(self, node: ast.List) -> Any:
        raise ExpressionError("a list is only allowed after 'in'")

    visit_Tuple = visit_List
    visit_Set = visit_List
