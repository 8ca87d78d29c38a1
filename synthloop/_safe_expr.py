"""Limits shared by the two expression languages (spec `expression:` columns and constraint rules).

Expressions come from files that travel between people (specs, schema YAML, model headers), so
reading and evaluating one must never hang, exhaust memory or end in a traceback:

- text longer than MAX_EXPRESSION_CHARS or nested deeper than MAX_DEPTH is refused before any walk
  (CPython's own parser raises RecursionError/MemoryError on deep trees; those become the same line);
- every walk is iterative and linear in the size of the tree;
- constant parts are computed once at check time with the guarded operators below, so
  `10**10**10` or `'a' * 10**9` is refused when the file is read, not when rows are made;
- the guarded operators keep integers within 64 bits (beyond that they become floats, as NumPy
  columns would) and refuse repetitions (`text * n`) longer than MAX_TEXT_CHARS per value.

Errors are raised through a `fail(message)` callable so that each language keeps its own error
class and prefix.
"""
from __future__ import annotations

import ast
import math
import operator
from typing import Any, Callable

import numpy as np
import pandas as pd

from synthloop.errors import SynthloopError

MAX_EXPRESSION_CHARS = 65_536
MAX_DEPTH = 200  # levels of the syntax tree; a chain `a + b + c + ...` takes one level per operator
MAX_TEXT_CHARS = 100_000  # one value made by repetition
MAX_TOTAL_TEXT_CHARS = 50_000_000  # a whole column made by repetition
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1

Fail = Callable[[str], Exception]


class ExpressionLimitError(SynthloopError):
    """An operation would exceed the limits above; evaluators re-raise it with their own prefix."""


def shorten(text: object, width: int = 80) -> str:
    """`text` on one line, cut to `width` characters, so a 40 KB expression does not flood a message."""
    one = " ".join(str(text).split())
    return one if len(one) <= width else one[: width - 3] + "..."


def parse(source: Any, fail: Fail) -> tuple[ast.Expression, str]:
    """Parse `source` as one Python expression within the limits; return the tree and the stripped text."""
    if not isinstance(source, str):
        raise fail(f"an expression must be text, got {type(source).__name__}")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise fail(f"the expression is {len(source):,} characters long; at most {MAX_EXPRESSION_CHARS:,} are allowed")
    text = source.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise fail(f"syntax error at character {exc.offset}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise fail(_too_deep()) from None
    except ValueError as exc:  # e.g. a NUL character
        raise fail(f"not a valid expression: {exc}") from None
    return tree, text


def _too_deep() -> str:
    return (f"the expression is nested too deeply (at most {MAX_DEPTH} levels; a chain like a + b + c + ... "
            "takes one level per operator); split it over helper columns")


# Operator and load/store markers are checked through their parent node (BinOp.op, Compare.ops, ...),
# so the walk skips them: they are a third of all nodes.
_MARKERS = (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)
_MARKER_TYPES = frozenset(c for base in _MARKERS for c in base.__subclasses__())


def walk(tree: ast.AST, fail: Fail) -> list[tuple[ast.AST, ast.AST | None]]:
    """Every node (but operator and context markers) with its parent, in source order (pre-order),
    without recursion and in linear time; refuses trees deeper than MAX_DEPTH so that the recursive
    evaluators that follow stay far from Python's recursion limit."""
    out: list[tuple[ast.AST, ast.AST | None]] = []
    append = out.append
    stack: list[tuple[ast.AST, ast.AST | None, int]] = [(tree, None, 0)]
    pop, push = stack.pop, stack.append
    AST, markers = ast.AST, _MARKER_TYPES
    while stack:
        node, parent, depth = pop()
        if depth > MAX_DEPTH:
            raise fail(_too_deep())
        append((node, parent))
        depth += 1
        for name in reversed(node._fields):
            value = getattr(node, name, None)
            if type(value) is list:
                for item in reversed(value):
                    if isinstance(item, AST) and type(item) not in markers:
                        push((item, node, depth))
            elif isinstance(value, AST) and type(value) not in markers:
                push((value, node, depth))
    return out


def snippet(text: str, node: ast.AST, width: int = 60) -> str:
    """The source text of `node` (shortened); no recursion, unlike ast.unparse."""
    seg = ast.get_source_segment(text, node) if hasattr(node, "lineno") else None
    return shorten(seg if seg is not None else type(node).__name__, width)


# -- guarded arithmetic --------------------------------------------------------------------------
def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def small(x: Any) -> Any:
    """Python integers beyond 64 bits become floats (as in a NumPy column); too large for a float: refused."""
    if isinstance(x, int) and not isinstance(x, bool) and not _INT_MIN <= x <= _INT_MAX:
        try:
            return float(x)
        except OverflowError:
            raise ExpressionLimitError("a number is too large (beyond about 1e308)") from None
    if isinstance(x, complex):
        return math.nan
    return x


def _numeric(x: Any) -> Any:
    """Object columns (Python ints, text) as float columns before `**`, so no per-row big-int power runs."""
    if isinstance(x, pd.Series) and x.dtype == object:
        try:
            num = pd.to_numeric(x, errors="raise")
        except (ValueError, TypeError):
            raise ExpressionLimitError("'**' needs numbers, and the column holds text") from None
        return num.astype(float) if num.dtype == object else num
    return x


def _pow(a: Any, b: Any) -> Any:
    if isinstance(a, (pd.Series, np.ndarray)) or isinstance(b, (pd.Series, np.ndarray)):
        return _numeric(a) ** _numeric(b)
    if _is_int(a) and _is_int(b):
        a, b = int(a), int(b)
        if b < 0 or abs(a) <= 1:
            return a**b  # a float for b < 0 (CPython takes the float path); no growth for |a| <= 1
        if b * math.log2(abs(a)) > 70:  # far beyond 64 bits: compute as a float (or refuse)
            try:
                return float(a) ** float(b)
            except OverflowError:
                raise ExpressionLimitError(f"{a} ** {b} is too large") from None
        return small(a**b)
    try:
        return small(a**b)
    except OverflowError:
        raise ExpressionLimitError(f"{a!r} ** {b!r} is too large") from None


def _text_lengths(x: Any) -> Any:
    """Lengths of text values (scalar or column), or None when `x` holds no text or sequences."""
    if isinstance(x, (str, list, tuple)):
        return len(x)
    if isinstance(x, pd.Series) and (x.dtype == object or pd.api.types.is_string_dtype(x.dtype)):
        try:
            lens = x.str.len()
        except AttributeError:  # an object column without text (Python ints, ...)
            return None
        return lens.fillna(0).astype(float) if lens.notna().any() else None
    return None


def _counts(x: Any) -> Any:
    if _is_int(x) or isinstance(x, (bool, np.bool_)):
        return max(int(x), 0)
    if isinstance(x, pd.Series):
        num = pd.to_numeric(x, errors="coerce") if x.dtype == object else x
        if pd.api.types.is_numeric_dtype(num.dtype):  # bool columns too
            return num.astype(float).fillna(0).clip(lower=0)
    return None


def _check_repeat(a: Any, b: Any) -> None:
    """`text * n` makes n copies: refuse values over MAX_TEXT_CHARS (and columns over the total)."""
    for text, count in ((a, b), (b, a)):
        lens = _text_lengths(text)
        if lens is None:
            continue
        n = _counts(count)
        if n is None:
            continue
        sizes = lens * n
        biggest = float(np.max(sizes)) if isinstance(sizes, pd.Series) else float(sizes)
        total = float(np.sum(sizes)) if isinstance(sizes, pd.Series) else biggest
        if biggest > MAX_TEXT_CHARS or total > MAX_TOTAL_TEXT_CHARS:
            raise ExpressionLimitError(
                f"repeating text would make a value of {biggest:,.0f} characters; at most {MAX_TEXT_CHARS:,} are allowed")
        return


def _check_mod(a: Any) -> None:
    """`'%0999999999d' % x` builds huge text: '%' is for numbers only (use concat for text)."""
    if isinstance(a, str) or _text_lengths(a) is not None:
        raise ExpressionLimitError("'%' works on numbers only; build text with concat(...) or +")


_PLAIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _pow,
}
SYMBOLS: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                            ast.Mod: "%", ast.Pow: "**"}


def binop(op: type, a: Any, b: Any) -> Any:
    """`a <op> b` for scalars or columns, within the limits above (raises ExpressionLimitError)."""
    if op is ast.Mult:
        _check_repeat(a, b)
    elif op is ast.Mod:
        _check_mod(a)
    try:
        return small(_PLAIN[op](a, b))
    except OverflowError:
        raise ExpressionLimitError(f"the result of '{SYMBOLS[op]}' is too large") from None


def unaryop(op: type, v: Any) -> Any:
    if op is ast.USub:
        return small(-v)
    return v


def constant(value: Any) -> Any:
    """A literal as the evaluators use it (integers beyond 64 bits become floats)."""
    return small(value)


def fold_constants(nodes: list[tuple[ast.AST, ast.AST | None]], text: str, fail: Fail) -> None:
    """Compute every constant part (numbers and text joined by operators) once, with the guarded
    operators, so that `10**10**10` or `'a' * 10**9` is refused when the expression is read.
    `nodes` is the pre-order list from `walk`; children come after parents, so go backwards."""
    if not any(isinstance(n, (ast.BinOp, ast.UnaryOp)) for n, _ in nodes):
        return
    values: dict[int, Any] = {}
    for node, parent in reversed(nodes):
        if not isinstance(node, (ast.BinOp, ast.UnaryOp)) and not isinstance(parent, (ast.BinOp, ast.UnaryOp)):
            continue  # only operators and their operands are computed here
        try:
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
                values[id(node)] = constant(node.value)
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) and id(node.operand) in values:
                v = values[id(node.operand)]
                if not isinstance(v, str):
                    values[id(node)] = unaryop(type(node.op), v)
            elif isinstance(node, ast.BinOp) and type(node.op) in _PLAIN and id(node.left) in values and id(node.right) in values:
                values[id(node)] = binop(type(node.op), values[id(node.left)], values[id(node.right)])
        except ExpressionLimitError as exc:
            raise fail(f"'{snippet(text, node)}': {exc}") from None
        except ZeroDivisionError:
            raise fail(f"'{snippet(text, node)}' divides by zero") from None
        except (TypeError, ValueError) as exc:
            raise fail(f"'{snippet(text, node)}' cannot be computed: {exc}") from None


def one_arg(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A NumPy ufunc limited to one argument: `abs(a, b)` must not write into column b (its `out`)."""

    def call(x: Any) -> Any:
        return fn(x)

    return call


def pairwise(fn: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """A binary NumPy ufunc (np.minimum, np.maximum) folded over its arguments row by row, never
    given NumPy's `out`; check_arity makes sure there are two or more."""

    def call(*args: Any) -> Any:
        out = args[0]
        for a in args[1:]:
            out = fn(out, a)
        return out

    return call


def check_arity(name: str, n_args: int, arity: dict[str, tuple[int, int | None]], fail: Fail) -> None:
    """Refuse a call with the wrong number of arguments when the expression is read."""
    lo, hi = arity.get(name, (0, None))
    if n_args < lo or (hi is not None and n_args > hi):
        want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
        raise fail(f"{name}() takes {want} argument{'s' if want != '1' else ''}, got {n_args}")

