"""A safe, vectorized expression language for row rules such as `total == price * quantity`.

Expressions are parsed with `ast` and walked by a small interpreter over pandas columns: only
column names, numbers/strings/booleans, arithmetic (+ - * / // % **), comparisons (including
chains `a < b < c`), `and`/`or`/`not`, and a few whitelisted functions are allowed. Nothing is ever
passed to `eval`, attribute access and subscripts are refused, so a schema file cannot run code.
The limits on length, nesting, integer size and text repetition (synthloop._safe_expr) are shared
with the spec expression language, so a rule in a model header cannot hang `sample` either.
"""
from __future__ import annotations

import ast
import operator
from typing import Any, Callable

import numpy as np
import pandas as pd

from synthloop import _safe_expr as _safe
from synthloop.errors import SchemaError, SynthloopError

_BINOPS = frozenset({ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow})
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}


_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": _safe.one_arg(np.abs), "round": lambda x, d=0: np.round(x, int(d)), "sqrt": _safe.one_arg(np.sqrt),
    "log": _safe.one_arg(np.log), "exp": _safe.one_arg(np.exp), "min": _safe.pairwise(np.minimum),
    "max": _safe.pairwise(np.maximum), "floor": _safe.one_arg(np.floor), "ceil": _safe.one_arg(np.ceil),
    "len": lambda s: pd.Series(s).astype("string").str.len(),
}
_ARITY: dict[str, tuple[int, int | None]] = {**{f: (1, 1) for f in _FUNCS}, "round": (1, 2), "min": (2, None),
                                             "max": (2, None)}


def _to_values(x: Any) -> Any:
    """Datetime columns compare and subtract as epoch seconds; strings stay strings."""
    if isinstance(x, pd.Series):
        if pd.api.types.is_datetime64_any_dtype(x):
            secs = x.astype("datetime64[ns]").astype("int64").astype(float) / 1e9
            return secs.where(x.notna())
        if x.dtype == object:
            num = pd.to_numeric(x, errors="coerce")
            if num.notna().sum() == x.notna().sum() and x.notna().any():
                return num
            dt = pd.to_datetime(x, errors="coerce", format="mixed") if x.notna().any() else None
            if dt is not None and dt.notna().sum() == x.notna().sum():
                return _to_values(dt)
        if isinstance(x.dtype, pd.CategoricalDtype):
            return x.astype(object)
    return x


class Expression:
    """A parsed rule over columns. `is_valid(df)` is vectorized; `target` is the column a rule of the
    form `col == <expr>` (or `<expr> == col`) defines, which makes it repairable. Reading is linear
    in the length of the text and bounded by the limits in synthloop._safe_expr."""

    def __init__(self, text: str, rtol: float = 1e-6, atol: float = 1e-6):
        self.text = text
        self.rtol, self.atol = rtol, atol
        tree, self._source = _safe.parse(text, self._error)
        self.tree = tree.body
        self.columns: list[str] = []
        self._check(tree)
        self.target, self.definition = self._definition()

    def _error(self, message: str) -> SchemaError:
        return SchemaError(f"constraint expression {_safe.shorten(str(self.text))!r}: {message}")

    def _check(self, tree: ast.Expression) -> None:
        nodes = _safe.walk(tree, self._error)
        src, fail = self._source, self._error
        seen: set[str] = set()
        lists_ok: set[int] = set()  # literal lists after 'in' / 'not in'
        for node, parent in nodes:
            if isinstance(node, ast.Expression):
                continue
            if isinstance(node, ast.Name):
                if isinstance(parent, ast.Call) and parent.func is node:
                    continue  # a function name, checked with its call
                if node.id not in seen and node.id not in ("True", "False"):
                    seen.add(node.id)
                    self.columns.append(node.id)
            elif isinstance(node, ast.Constant):
                if not isinstance(node.value, (int, float, str, bool)) or node.value is None:
                    raise fail(f"constant {_safe.snippet(src, node)} is not allowed")
            elif isinstance(node, ast.BinOp):
                if type(node.op) not in _BINOPS:
                    raise fail(f"operator {type(node.op).__name__} is not allowed")
            elif isinstance(node, ast.UnaryOp):
                if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
                    raise fail(f"operator {type(node.op).__name__} is not allowed")
            elif isinstance(node, ast.BoolOp):
                pass
            elif isinstance(node, ast.Compare):
                for op, comp in zip(node.ops, node.comparators):
                    if type(op) not in _CMPOPS and not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                        raise fail(f"comparison {type(op).__name__} is not allowed")
                    if isinstance(op, (ast.In, ast.NotIn)) and isinstance(comp, (ast.List, ast.Tuple)):
                        lists_ok.add(id(comp))
            elif isinstance(node, (ast.List, ast.Tuple)):
                if id(node) not in lists_ok:
                    raise fail(f"'{_safe.snippet(src, node)}': a list is only allowed after 'in', e.g. city in ['Paris', 'Lyon']")
                if not all(isinstance(e, ast.Constant) for e in node.elts):
                    raise fail("lists may only hold constants")
            elif isinstance(node, ast.Call):
                if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
                    name = node.func.id if isinstance(node.func, ast.Name) else _safe.snippet(src, node.func)
                    raise fail(f"function {name!r} is not allowed; allowed: {', '.join(sorted(_FUNCS))}")
                _safe.check_arity(node.func.id, len(node.args), _ARITY, fail)
            else:
                raise fail(f"{type(node).__name__} ({_safe.snippet(src, node)!r}) is not allowed; use column names, "
                           "numbers, arithmetic, comparisons, and/or/not")
        _safe.fold_constants(nodes, src, fail)

    def _definition(self) -> tuple[str | None, ast.AST | None]:
        t = self.tree
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
            left, right = t.left, t.comparators[0]
            if isinstance(left, ast.Name) and left.id not in _names(right):
                return left.id, right
            if isinstance(right, ast.Name) and right.id not in _names(left):
                return right.id, left
        return None, None

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, df: pd.DataFrame, node: ast.AST | None = None) -> Any:
        """The value of the rule (or of `node`, a part of it) for every row of `df`; any failure is
        one SchemaError naming the rule."""
        try:
            with np.errstate(all="ignore"):
                return self._eval(df, self.tree if node is None else node)
        except SchemaError:
            raise
        except SynthloopError as exc:  # a limit of the guarded operators
            raise self._error(str(exc)) from None
        except (RecursionError, MemoryError):
            raise self._error("too large or too deeply nested to evaluate") from None
        except Exception as exc:  # text minus a number, bad dates, ...
            raise self._error(f"cannot be computed on these columns ({type(exc).__name__}: "
                              f"{_safe.shorten(str(exc), 200)})") from None

    def _eval(self, df: pd.DataFrame, node: ast.AST) -> Any:
        if isinstance(node, ast.Name):
            if node.id in ("True", "False"):
                return node.id == "True"
            if node.id not in df.columns:
                raise self._error(f"unknown column '{node.id}'")
            return _to_values(df[node.id])
        if isinstance(node, ast.Constant):
            return _safe.constant(node.value)
        if isinstance(node, (ast.List, ast.Tuple)):
            return [_safe.constant(e.value) for e in node.elts]  # type: ignore[attr-defined]
        if isinstance(node, ast.BinOp):
            return _safe.binop(type(node.op), self._eval(df, node.left), self._eval(df, node.right))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(df, node.operand)
            if isinstance(node.op, ast.Not):
                return ~_bool(v, len(df))
            return _safe.unaryop(type(node.op), v)
        if isinstance(node, ast.BoolOp):
            vals = [_bool(self._eval(df, v), len(df)) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.Compare):
            out = np.ones(len(df), bool)
            left = self._eval(df, node.left)
            for op, comp in zip(node.ops, node.comparators):
                right = self._eval(df, comp)
                out &= _bool(self._compare(op, left, right), len(df))
                left = right
            return out
        if isinstance(node, ast.Call):
            return _safe.small(_FUNCS[node.func.id](*[self._eval(df, a) for a in node.args]))  # type: ignore[attr-defined]
        raise self._error(f"cannot evaluate {type(node).__name__}")  # pragma: no cover - refused by _check

    def _compare(self, op: ast.cmpop, left: Any, right: Any) -> Any:
        if isinstance(op, (ast.In, ast.NotIn)):
            res = pd.Series(left).isin(right if isinstance(right, list) else [right]).to_numpy()
            return res if isinstance(op, ast.In) else ~res
        if isinstance(op, (ast.Eq, ast.NotEq)):
            if _numeric(left) and _numeric(right):
                lv, rv = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
                res = np.isclose(lv, rv, rtol=self.rtol, atol=self.atol)
            else:
                res = np.asarray(pd.Series(left) == right if not isinstance(left, (str, int, float)) else pd.Series(right) == left)
            return res if isinstance(op, ast.Eq) else ~res
        with np.errstate(invalid="ignore"):
            return _CMPOPS[type(op)](left, right)

    def is_valid(self, df: pd.DataFrame) -> np.ndarray:
        """True where the rule holds; rows with a null in any of its columns count as valid (nulls
        are governed by the column's missing share, not by the rule)."""
        res = _bool(self.evaluate(df), len(df))
        present = np.ones(len(df), bool)
        for c in self.columns:
            if c in df.columns:
                present &= df[c].notna().to_numpy()
        return res | ~present


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _numeric(x: Any) -> bool:
    if isinstance(x, (int, float, np.number)) and not isinstance(x, bool):
        return True
    if isinstance(x, (pd.Series, np.ndarray)):
        return pd.api.types.is_numeric_dtype(x.dtype) and not pd.api.types.is_bool_dtype(x.dtype)
    return False


def _bool(v: Any, n: int) -> np.ndarray:
    if isinstance(v, (bool, np.bool_)):
        return np.full(n, bool(v))
    if isinstance(v, pd.Series):
        missing = v.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(v.dtype) or pd.api.types.is_bool_dtype(v.dtype):
            # nullable dtypes (Int64, boolean) refuse fillna(False); compare as floats instead
            truth = v.to_numpy(dtype=float, na_value=0.0) != 0
        else:
            truth = v.astype(object).where(~missing, False).to_numpy().astype(bool)
        return truth & ~missing
    return np.asarray(v).astype(bool)
