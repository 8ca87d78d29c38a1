"""A safe, vectorized expression language for row rules such as `total == price * quantity`.

Expressions are parsed with `ast` and walked by a small interpreter over pandas columns: only
column names, numbers/strings/booleans, arithmetic (+ - * / // % **), comparisons (including
chains `a < b < c`), `and`/`or`/`not`, and a few whitelisted functions are allowed. Nothing is ever
passed to `eval`, attribute access and subscripts are refused, so a schema file cannot run code.
"""
from __future__ import annotations

import ast
import operator
from typing import Any, Callable

import numpy as np
import pandas as pd

from synthloop.errors import SchemaError

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": np.abs, "round": lambda x, d=0: np.round(x, int(d)), "sqrt": np.sqrt, "log": np.log, "exp": np.exp,
    "min": np.minimum, "max": np.maximum, "floor": np.floor, "ceil": np.ceil,
    "len": lambda s: pd.Series(s).astype("string").str.len(),
}


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
    form `col == <expr>` (or `<expr> == col`) defines, which makes it repairable."""

    def __init__(self, text: str, rtol: float = 1e-6, atol: float = 1e-6):
        self.text = text
        self.rtol, self.atol = rtol, atol
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise SchemaError(f"constraint expression {text!r}: not valid syntax ({exc.msg} at column {exc.offset})") from None
        self.tree = tree.body
        self.columns: list[str] = []
        self._check(self.tree)
        self.target, self.definition = self._definition()

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            if node.id not in self.columns and node.id not in ("True", "False"):
                self.columns.append(node.id)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool)) or node.value is None:
                raise SchemaError(f"constraint expression {self.text!r}: constant {node.value!r} is not allowed")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise SchemaError(f"constraint expression {self.text!r}: operator {type(node.op).__name__} is not allowed")
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
                raise SchemaError(f"constraint expression {self.text!r}: operator {type(node.op).__name__} is not allowed")
            self._check(node.operand)
        elif isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v)
        elif isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _CMPOPS and not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                    raise SchemaError(f"constraint expression {self.text!r}: comparison {type(op).__name__} is not allowed")
            self._check(node.left)
            for c in node.comparators:
                self._check(c)
        elif isinstance(node, (ast.List, ast.Tuple)):
            for e in node.elts:
                if not isinstance(e, ast.Constant):
                    raise SchemaError(f"constraint expression {self.text!r}: lists may only hold constants")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise SchemaError(f"constraint expression {self.text!r}: function {name!r} is not allowed; "
                                  f"allowed: {', '.join(sorted(_FUNCS))}")
            for a in node.args:
                self._check(a)
        else:
            raise SchemaError(f"constraint expression {self.text!r}: {type(node).__name__} ({ast.unparse(node)!r}) "
                              "is not allowed; use column names, numbers, arithmetic, comparisons, and/or/not")

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
        node = self.tree if node is None else node
        if isinstance(node, ast.Name):
            if node.id in ("True", "False"):
                return node.id == "True"
            if node.id not in df.columns:
                raise SchemaError(f"constraint expression {self.text!r}: unknown column '{node.id}'")
            return _to_values(df[node.id])
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [e.value for e in node.elts]  # type: ignore[attr-defined]
        if isinstance(node, ast.BinOp):
            with np.errstate(all="ignore"):
                return _BINOPS[type(node.op)](self.evaluate(df, node.left), self.evaluate(df, node.right))
        if isinstance(node, ast.UnaryOp):
            v = self.evaluate(df, node.operand)
            if isinstance(node.op, ast.Not):
                return ~_bool(v, len(df))
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BoolOp):
            vals = [_bool(self.evaluate(df, v), len(df)) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.Compare):
            out = np.ones(len(df), bool)
            left = self.evaluate(df, node.left)
            for op, comp in zip(node.ops, node.comparators):
                right = self.evaluate(df, comp)
                out &= _bool(self._compare(op, left, right), len(df))
                left = right
            return out
        if isinstance(node, ast.Call):
            return _FUNCS[node.func.id](*[self.evaluate(df, a) for a in node.args])  # type: ignore[attr-defined]
        raise SchemaError(f"constraint expression {self.text!r}: cannot evaluate {ast.unparse(node)!r}")

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
    arr = pd.Series(v).fillna(False).to_numpy() if isinstance(v, pd.Series) else np.asarray(v)
    return arr.astype(bool)
