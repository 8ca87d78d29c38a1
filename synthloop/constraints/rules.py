"""Row rules every synthesizer's output obeys: range, inequality, fixed combinations, regex format,
uniqueness and safe expressions.

Each rule has `is_valid(df) -> bool mask` (vectorized) and, where a transform can fix a row without
inventing information, `repair(df, rng) -> df`. Rules that cannot be repaired (regex, uniqueness,
strict equality ties) are enforced by rejection and resampling in `BaseSynthesizer.sample`.
In YAML (the schema's `constraints:` list) each rule is a mapping with a `type`:

    constraints:
      - {type: range, column: age, low: 18, high: 95}
      - {type: inequality, low: start_date, high: end_date, strict: true}
      - {type: fixed_combinations, columns: [city, state]}
      - {type: regex, column: zip, pattern: '\\d{5}'}
      - {type: unique, columns: [email]}
      - {type: expression, expression: 'total == price * quantity'}
"""
from __future__ import annotations

import re
from typing import Any, ClassVar, Iterable

import numpy as np
import pandas as pd

from synthloop.constraints.expression import Expression, _to_values
from synthloop.errors import SchemaError


class Constraint:
    """One rule over one or more columns."""

    type: ClassVar[str] = "constraint"
    repairable: ClassVar[bool] = False
    columns: list[str]

    def fit(self, df: pd.DataFrame) -> "Constraint":
        """Learn what the rule needs from the real data (only fixed combinations learn anything)."""
        return self

    def is_valid(self, df: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def repair(self, df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Fix invalid rows in place where possible; rows it cannot fix stay invalid."""
        return df

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.type}({', '.join(self.columns)})"

    @property
    def description(self) -> str:
        """Readable rule text (used by evaluate's adherence table)."""
        return self.describe()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"


def _present(df: pd.DataFrame, cols: Iterable[str]) -> np.ndarray:
    ok = np.ones(len(df), bool)
    for c in cols:
        ok &= df[c].notna().to_numpy()
    return ok


def _bound_value(series: pd.Series, bound: Any) -> Any:
    """A bound in the units `_to_values` gives the column (seconds for datetimes)."""
    if bound is None:
        return None
    if isinstance(bound, str):
        try:
            return float(bound)
        except ValueError:
            return pd.Timestamp(bound).value / 1e9
    if isinstance(bound, pd.Timestamp):
        return bound.value / 1e9
    return float(bound)


class Range(Constraint):
    """`low <= column <= high` (either side optional; `strict` makes both ends exclusive). Repair: clip."""

    type = "range"
    repairable = True

    def __init__(self, column: str, low: Any = None, high: Any = None, strict: bool = False):
        if low is None and high is None:
            raise SchemaError(f"range constraint on '{column}': give low, high or both")
        self.column, self.low, self.high, self.strict = column, low, high, strict
        self.columns = [column]

    def is_valid(self, df: pd.DataFrame) -> np.ndarray:
        s = df[self.column]
        v = np.asarray(_to_values(s), dtype=float)
        ok = np.ones(len(df), bool)
        lo, hi = _bound_value(s, self.low), _bound_value(s, self.high)
        with np.errstate(invalid="ignore"):
            if lo is not None:
                ok &= (v > lo) if self.strict else (v >= lo)
            if hi is not None:
                ok &= (v < hi) if self.strict else (v <= hi)
        return ok | ~_present(df, self.columns)

    def repair(self, df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        s = df[self.column]
        bad = ~self.is_valid(df)
        if not bad.any():
            return df
        if pd.api.types.is_datetime64_any_dtype(s):
            lo = pd.Timestamp(self.low) if self.low is not None else None
            hi = pd.Timestamp(self.high) if self.high is not None else None
            df[self.column] = s.clip(lo, hi)
        elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            df[self.column] = s.clip(self.low, self.high).astype(s.dtype)
        return df

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "column": self.column, "low": self.low, "high": self.high, "strict": self.strict}


class Inequality(Constraint):
    """`high_column > low_column` (or `>=` unless `strict`), e.g. end_date > start_date.
    Repair: swap the two values where they are in the wrong order."""

    type = "inequality"
    repairable = True

    def __init__(self, low: str, high: str, strict: bool = False):
        self.low, self.high, self.strict = low, high, strict
        self.columns = [low, high]

    def is_valid(self, df: pd.DataFrame) -> np.ndarray:
        lo = np.asarray(_to_values(df[self.low]), dtype=float)
        hi = np.asarray(_to_values(df[self.high]), dtype=float)
        with np.errstate(invalid="ignore"):
            ok = (hi > lo) if self.strict else (hi >= lo)
        return ok | ~_present(df, self.columns)

    def repair(self, df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        lo = np.asarray(_to_values(df[self.low]), dtype=float)
        hi = np.asarray(_to_values(df[self.high]), dtype=float)
        with np.errstate(invalid="ignore"):
            swap = hi < lo
        if swap.any() and df[self.low].dtype == df[self.high].dtype:
            a, b = df[self.low].copy(), df[self.high].copy()
            a[swap], b[swap] = df[self.high][swap].to_numpy(), df[self.low][swap].to_numpy()
            df[self.low], df[self.high] = a, b
        return df

    def describe(self) -> str:
        return f"{self.high} {'>' if self.strict else '>='} {self.low}"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "low": self.low, "high": self.high, "strict": self.strict}


def _key(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """One hashable string per row for a tuple of columns (nulls included, types normalized)."""
    parts = [df[c].astype(object).where(df[c].notna(), "\x00null").astype(str) for c in cols]
    out = parts[0]
    for p in parts[1:]:
        out = out + "\x1f" + p
    return out.reset_index(drop=True)


class FixedCombinations(Constraint):
    """The tuple of `columns` must be one seen in the real data (city/state pairs). Learned in `fit`
    (or given as `combinations`). Repair: keep the first column's value and redraw the others from
    the combinations seen with it, by their real frequency."""

    type = "fixed_combinations"
    repairable = True

    def __init__(self, columns: list[str], combinations: list[list[Any]] | None = None, counts: list[int] | None = None):
        if len(columns) < 2:
            raise SchemaError(f"fixed_combinations needs at least two columns, got {columns!r}")
        self.columns = list(columns)
        self.combinations = combinations
        self.counts = counts

    def fit(self, df: pd.DataFrame) -> "FixedCombinations":
        if self.combinations is None:
            self.combinations_from_rows = True  # DP models refuse this: the combinations are private
            g = df[self.columns].astype(object).where(df[self.columns].notna(), None).value_counts(dropna=False, sort=False)
            self.combinations = [[_plain(v) for v in (k if isinstance(k, tuple) else (k,))] for k in g.index]
            self.counts = [int(c) for c in g.to_numpy()]
        return self

    def _table(self) -> pd.DataFrame:
        if self.combinations is None:
            raise SchemaError(f"fixed_combinations({', '.join(self.columns)}) has not seen data: fit it or give combinations")
        t = pd.DataFrame(self.combinations, columns=self.columns)
        t["__count"] = self.counts or [1] * len(t)
        return t

    def is_valid(self, df: pd.DataFrame) -> np.ndarray:
        seen = set(_key(self._table(), self.columns))
        return _key(df, self.columns).isin(seen).to_numpy()

    def repair(self, df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        bad = np.flatnonzero(~self.is_valid(df))
        if not bad.size:
            return df
        table = self._table()
        first = self.columns[0]
        tkey = _key(table, [first])
        rkey = _key(df.iloc[bad], [first]).to_numpy()
        choice = np.empty(bad.size, dtype=np.int64)
        weights_all = table["__count"].to_numpy(float)
        for value in np.unique(rkey):  # one draw per distinct first-column value, vectorized over its rows
            rows = np.flatnonzero(rkey == value)
            cand = np.flatnonzero(tkey.to_numpy() == value)
            if not cand.size:
                cand = np.arange(len(table))
            w = weights_all[cand] / weights_all[cand].sum()
            choice[rows] = rng.choice(cand, size=rows.size, p=w)
        for c in self.columns:
            vals = table[c].to_numpy(dtype=object)[choice]
            col = df[c].astype(object)
            col.iloc[bad] = vals
            try:
                df[c] = col.astype(df[c].dtype)
            except (TypeError, ValueError):
                df[c] = col
        return df

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "columns": self.columns, "combinations": self.combinations, "counts": self.counts}


class Regex(Constraint):
    """Every non-null value of `column` matches `pattern` in full. Enforced by rejection."""

    type = "regex"

    def __init__(self, column: str, pattern: str):
        try:
            self.regex = re.compile(pattern)
        except re.error as exc:
            raise SchemaError(f"regex constraint on '{column}': bad pattern {pattern!r} ({exc})") from None
        self.column, self.pattern = column, pattern
        self.columns = [column]

    def is_valid(self, df: pd.DataFrame) -> np.ndarray:
        s = df[self.column]
        ok = s.astype("string").str.fullmatch(self.pattern).fillna(True).to_numpy(dtype=bool)
        return ok | s.isna().to_numpy()

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "column": self.column, "pattern": self.pattern}


class Unique(Constraint):
    """No two rows share the values of `columns`. Enforced by rejection (later duplicates are redrawn)."""

    type = "unique"

    def __init__(self, columns: list[str] | str):
        self.columns = [columns] if isinstance(columns, str) else list(columns)

    def is_valid(self, df: pd.DataFrame) -> np.ndarray:
        return ~df.duplicated(subset=self.columns, keep="first").to_numpy()

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "columns": self.columns}


class ExpressionConstraint(Constraint):
    """A safe expression over columns (`total == price * quantity`, `a + b <= 100`). Rules of the form
    `column == <expression>` are repaired by computing the column."""

    type = "expression"

    def __init__(self, expression: str, rtol: float = 1e-6, atol: float = 1e-6):
        self.expression = expression
        self.expr = Expression(expression, rtol, atol)
        self.columns = list(self.expr.columns)
        self.repairable = self.expr.target is not None  # type: ignore[misc]

    def is_valid(self, df: pd.DataFrame) -> np.ndarray:
        return self.expr.is_valid(df)

    def repair(self, df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        target = self.expr.target
        if target is None:
            return df
        bad = ~self.is_valid(df)
        if not bad.any():
            return df
        raw = self.expr.evaluate(df, self.expr.definition)
        value = pd.Series(np.broadcast_to(np.asarray(raw, dtype=object), (len(df),)), index=df.index)
        s = df[target]
        if not (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)):
            return df
        new = s.astype(float).copy()
        new[bad] = pd.to_numeric(value[bad], errors="coerce").to_numpy()
        if pd.api.types.is_integer_dtype(s.dtype):
            integral = np.isclose(new, np.round(new)) | new.isna()
            if integral.all() and not new.isna().any():
                df[target] = np.round(new).astype(s.dtype)
                return df
            if integral.all() and str(s.dtype)[0] == "I":
                df[target] = pd.array(np.round(new), dtype=s.dtype)
                return df
            return df  # a non-integral value cannot go into an integer column: leave the row to rejection
        df[target] = new
        return df

    def describe(self) -> str:
        return self.expression

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "expression": self.expression, "rtol": self.expr.rtol, "atol": self.expr.atol}


def _plain(v: Any) -> Any:
    """NumPy scalars/timestamps -> JSON-able Python values."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v


RULES: dict[str, type[Constraint]] = {c.type: c for c in (Range, Inequality, FixedCombinations, Regex, Unique, ExpressionConstraint)}
_ALIASES = {"fixedcombinations": "fixed_combinations", "combinations": "fixed_combinations", "format": "regex",
            "uniqueness": "unique", "expr": "expression", "between": "range"}


def constraint_from_dict(spec: dict[str, Any] | str, where: str = "constraints") -> Constraint:
    """Build a rule from its YAML/JSON mapping (or a bare expression string)."""
    if isinstance(spec, str):
        spec = {"type": "expression", "expression": spec}
    if not isinstance(spec, dict):
        raise SchemaError(f"{where}: a constraint is a mapping with a 'type', got {spec!r}")
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind is None and "expression" in spec:
        kind = "expression"
    kind = _ALIASES.get(str(kind).lower(), str(kind).lower()) if kind is not None else None
    if kind not in RULES:
        raise SchemaError(f"{where}: unknown constraint type {kind!r}; use one of: {', '.join(RULES)}")
    if kind in ("unique",) and "column" in spec:
        spec["columns"] = spec.pop("column")
    try:
        return RULES[kind](**spec)
    except TypeError as exc:
        raise SchemaError(f"{where}: bad fields for a {kind} constraint ({exc})") from None
    except SchemaError as exc:  # name the place the rule was declared (file, header, list index)
        raise SchemaError(f"{where}: {exc}") from None


def parse_constraints(items: Iterable[Constraint | dict[str, Any] | str] | None, source: str = "constraints") -> list[Constraint]:
    """Rules from Python objects, dicts or expression strings."""
    out = []
    for i, item in enumerate(items or []):
        out.append(item if isinstance(item, Constraint) else constraint_from_dict(item, f"{source}[{i}]"))
    return out


def check_columns(constraints: list[Constraint], names: Iterable[str], source: str = "constraints") -> None:
    """Every column a rule names must exist."""
    names = list(names)
    for i, c in enumerate(constraints):
        for col in c.columns:
            if col not in names:
                raise SchemaError(f"{source}[{i}] ({c.describe()}): unknown column '{col}'; columns are: {', '.join(names[:20])}")
