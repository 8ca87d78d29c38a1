"""Infer a TableSchema from a DataFrame: kinds, bounds, rounding, formats, categories, null shares."""
from __future__ import annotations

import re
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd
from pandas.api import types as pdt
from pandas.tseries.api import guess_datetime_format

from synthloop.schema.model import ColumnKind, ColumnSchema, PiiType, TableSchema

_ID_NAME = re.compile(r"(^|_|\b)(id|uuid|guid|key)$|^id_|_id_|Id$|ID$", re.IGNORECASE)
_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,20}$")
_PII_NAMES: dict[str, PiiType] = {
    "name": PiiType.NAME, "full_name": PiiType.NAME, "fullname": PiiType.NAME, "customer_name": PiiType.NAME,
    "patient_name": PiiType.NAME, "first_name": PiiType.FIRST_NAME, "firstname": PiiType.FIRST_NAME,
    "given_name": PiiType.FIRST_NAME, "last_name": PiiType.LAST_NAME, "lastname": PiiType.LAST_NAME,
    "surname": PiiType.LAST_NAME, "family_name": PiiType.LAST_NAME, "address": PiiType.ADDRESS,
    "street": PiiType.ADDRESS, "street_address": PiiType.ADDRESS, "home_address": PiiType.ADDRESS,
    "ssn": PiiType.SSN, "iban": PiiType.IBAN, "credit_card": PiiType.CREDIT_CARD, "card_number": PiiType.CREDIT_CARD,
    "ip": PiiType.IP, "ip_address": PiiType.IP, "email": PiiType.EMAIL, "phone": PiiType.PHONE,
}
_BOOL_WORDS = {"true", "false", "yes", "no", "t", "f", "y", "n"}
MAX_DECIMALS = 6


class InferenceWarning(UserWarning):
    """Inference chose something the user may want to override (named column, reason, how)."""


def decimals_of(values: np.ndarray) -> int | None:
    """Smallest number of decimals that represents every value exactly (None if more than 6)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0
    for d in range(MAX_DECIMALS + 1):
        scaled = v * (10.0**d)
        if np.all(np.abs(scaled - np.round(scaled)) <= 1e-6 * np.maximum(1.0, np.abs(scaled)) ):
            return d
    return None


def _id_pattern(values: pd.Series) -> str:
    s = values.astype(str)
    m = s.str.extract(r"^(?P<p>[^\d]*)(?P<d>\d+)$")
    if m["d"].notna().all() and m["p"].nunique() == 1:
        widths = m["d"].str.len()
        if widths.nunique() == 1:
            return f"{m['p'].iloc[0]}{{digits:{int(widths.iloc[0])}}}"
        return f"{m['p'].iloc[0]}{{int}}"
    return f"{{hex:{int(s.str.len().median())}}}"


def _looks_like_datetime(nonnull: pd.Series) -> str | None:
    sample = nonnull.astype(str).head(200)
    first = sample.iloc[0]
    if len(first) < 6 or not re.search(r"\d", first) or not re.search(r"[-/:. T]", first):
        return None
    candidates = []
    for dayfirst in (False, True):
        try:
            fmt = guess_datetime_format(first, dayfirst=dayfirst)
        except Exception:  # noqa: BLE001 - pandas raises various things on odd strings
            fmt = None
        if fmt and fmt not in candidates:
            candidates.append(fmt)
    if not candidates:
        return None
    strs = nonnull.astype(str)
    probe = strs if len(strs) <= 5000 else strs.sample(5000, random_state=0)
    for fmt in candidates:  # ambiguous day/month: the format that parses every value wins
        if pd.to_datetime(probe, format=fmt, errors="coerce").notna().mean() >= 0.99:
            return fmt
    return None


_DATE_LIKE = re.compile(r"^(?=.*\d)(?=.*[-/:. ,]).{6,40}$")


def _mixed_date_formats(strs: pd.Series) -> dict[str, str]:
    """{format: example} when nearly every value is a date but they are written in several formats
    (no single format parses the column); {} otherwise. Looks at up to 200 distinct values."""
    values = pd.unique(strs.to_numpy())[:200]
    if len(values) < 2 or pd.Series(values).str.match(_DATE_LIKE).mean() < 0.9:
        return {}
    found: dict[str, str] = {}
    unparsed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns about dayfirst guesses
        for v in values:  # at most 200 guesses, only for date-like columns
            try:
                fmt = guess_datetime_format(v) or guess_datetime_format(v, dayfirst=True)
            except Exception:  # noqa: BLE001 - pandas raises various things on odd strings
                fmt = None
            if fmt is None:
                unparsed += 1
            else:
                found.setdefault(fmt, v)
    return found if len(found) >= 2 and unparsed <= 0.1 * len(values) else {}


def infer_column(series: pd.Series, kind: ColumnKind | str | None = None) -> ColumnSchema:
    """Infer one column; `kind` forces the kind and only the details are inferred."""
    name = str(series.name)
    n = len(series)
    nonnull = series.dropna()
    missing = float(1 - len(nonnull) / n) if n else 0.0
    base: dict[str, Any] = {"name": name, "dtype": str(series.dtype), "missing_share": round(missing, 12)}
    forced = ColumnKind(kind) if kind is not None else None

    if len(nonnull) == 0:
        return ColumnSchema(**base, kind=forced or ColumnKind.CATEGORICAL, categories=[],
                            notes=["all values are missing; synthetic values are all missing too"])

    if forced is None:
        forced = _guess_kind(name, series, nonnull)
    k = forced
    if k == ColumnKind.NUMERICAL:
        values = pd.to_numeric(nonnull, errors="coerce")
        if values.isna().any():
            bad = nonnull[values.isna()].iloc[0]
            from synthloop.errors import SchemaError

            raise SchemaError(f"column '{name}': kind numerical, but value {bad!r} is not a number; "
                              f"fix the value or declare the column categorical")
        arr = values.to_numpy(dtype=float)
        return ColumnSchema(**base, kind=k, min=float(arr.min()), max=float(arr.max()), decimals=decimals_of(arr))
    if k == ColumnKind.DATETIME:
        fmt = None
        if pdt.is_datetime64_any_dtype(series):
            dt = pd.to_datetime(nonnull)
        else:
            fmt = _looks_like_datetime(nonnull)
            dt = pd.to_datetime(nonnull.astype(str), format=fmt, errors="coerce")
            if dt.isna().any():
                from synthloop.errors import SchemaError

                bad = nonnull[dt.isna()].iloc[0]
                raise SchemaError(f"column '{name}': kind datetime, but {bad!r} is not a date; fix it or set datetime_format")
        secs = _to_seconds(dt)
        return ColumnSchema(**base, kind=k, min=float(secs.min()), max=float(secs.max()), datetime_format=fmt,
                            decimals=0)
    if k in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
        counts = nonnull.value_counts(sort=True)
        cats = [_plain(v) for v in counts.index]
        notes = []
        if len(cats) > 1000:
            notes.append(f"{len(cats)} categories; rare ones carry re-identification risk")
        return ColumnSchema(**base, kind=k, categories=cats, notes=notes)
    if k == ColumnKind.ID:
        if pdt.is_integer_dtype(series) or (pdt.is_float_dtype(series) and decimals_of(nonnull.to_numpy(float)) == 0):
            return ColumnSchema(**base, kind=k, id_pattern="{int}", min=float(nonnull.min()), max=float(nonnull.max()))
        return ColumnSchema(**base, kind=k, id_pattern=_id_pattern(nonnull))
    if k == ColumnKind.PII:
        ptype = _PII_NAMES.get(name.lower())
        strs = nonnull.astype(str)
        if strs.str.match(_EMAIL).mean() > 0.9:
            ptype = PiiType.EMAIL
        elif ptype is None and strs.str.match(_PHONE).mean() > 0.9:
            ptype = PiiType.PHONE
        return ColumnSchema(**base, kind=k, pii_type=ptype or PiiType.NAME)
    lengths = nonnull.astype(str).str.len()
    return ColumnSchema(**base, kind=ColumnKind.TEXT, text_length=(float(lengths.mean()), float(lengths.std(ddof=0))))


def _plain(v: Any) -> Any:
    """JSON-friendly scalar (numpy types become Python ones)."""
    return v.item() if isinstance(v, np.generic) else v


def _to_seconds(dt: pd.Series) -> np.ndarray:
    return dt.astype("datetime64[ns]").astype("int64").to_numpy() / 1e9


def _guess_kind(name: str, series: pd.Series, nonnull: pd.Series) -> ColumnKind:
    n_unique = nonnull.nunique()
    unique_ratio = n_unique / len(nonnull)
    if pdt.is_bool_dtype(series):
        return ColumnKind.BOOLEAN
    if pdt.is_datetime64_any_dtype(series):
        return ColumnKind.DATETIME
    if pdt.is_numeric_dtype(series):
        if _ID_NAME.search(name) and unique_ratio == 1.0 and len(nonnull) > 1 and (
            decimals_of(nonnull.to_numpy(dtype=float)) == 0
        ):
            return ColumnKind.ID
        return ColumnKind.NUMERICAL
    # object / string columns
    strs = nonnull.astype(str)
    numeric = pd.to_numeric(strs, errors="coerce")
    if numeric.notna().all():
        return ColumnKind.NUMERICAL
    if numeric.notna().mean() >= 0.5:
        bad_pos = numeric.isna().to_numpy().argmax()
        warnings.warn(InferenceWarning(
            f"column '{name}' mixes numbers and text (e.g. {strs.iloc[bad_pos]!r}); treated as categorical. "
            f"Set its kind in a schema YAML to change that."), stacklevel=3)
        return ColumnKind.CATEGORICAL
    if n_unique <= 2 and set(strs.str.lower().unique()) <= _BOOL_WORDS:
        return ColumnKind.BOOLEAN
    if _looks_like_datetime(nonnull):
        return ColumnKind.DATETIME
    formats = _mixed_date_formats(strs)
    if formats:
        shown = "; ".join(f"{v!r} ({f})" for f, v in list(formats.items())[:3])
        warnings.warn(InferenceWarning(
            f"column '{name}' holds dates written in {len(formats)} different formats (e.g. {shown}); "
            f"treated as categorical, so new rows only reuse its existing values. Write every date in one "
            f"format (e.g. 2021-03-04) to have it learned as dates."), stacklevel=3)
        return ColumnKind.CATEGORICAL
    lname = name.lower()
    if strs.str.match(_EMAIL).mean() > 0.9:
        return ColumnKind.PII
    if lname in _PII_NAMES:
        return ColumnKind.PII
    if ("phone" in lname or "mobile" in lname or "tel" == lname) and strs.str.match(_PHONE).mean() > 0.9:
        return ColumnKind.PII
    if _ID_NAME.search(name) and unique_ratio > 0.95:
        return ColumnKind.ID
    mean_len = strs.str.len().mean()
    if mean_len > 30 and unique_ratio > 0.5 and strs.str.contains(" ").mean() > 0.8:
        return ColumnKind.TEXT
    if unique_ratio == 1.0 and len(nonnull) >= 50 and mean_len <= 40 and not strs.str.contains(" ").any():
        return ColumnKind.ID
    return ColumnKind.CATEGORICAL


def infer_schema(df: pd.DataFrame, overrides: Mapping[str, Any] | None = None, source: str = "overrides") -> TableSchema:
    """Infer every column; `overrides` (the parsed schema YAML) forces kinds and fields per column."""
    col_over: dict[str, dict[str, Any]] = {}
    if overrides:
        entries = overrides.get("columns", {}) if isinstance(overrides, Mapping) else {}
        if isinstance(entries, list):
            entries = {e.get("name"): {k: v for k, v in e.items() if k != "name"} for e in entries if isinstance(e, dict)}
        col_over = {str(k): dict(v or {}) for k, v in entries.items()}
        unknown = [c for c in col_over if c not in df.columns]
        if unknown:
            from synthloop.errors import SchemaError

            raise SchemaError(f"{source}: columns.{unknown[0]}: no such column in the data "
                              f"(columns: {', '.join(map(str, df.columns[:12]))})")
    cols = [infer_column(df[c], kind=col_over.get(str(c), {}).get("kind")) for c in df.columns]
    schema = TableSchema(columns=cols)
    ids = [c.name for c in cols if c.kind == ColumnKind.ID]
    if ids:
        schema.primary_key = ids[0]
    if overrides:
        schema = schema.with_overrides(dict(overrides), source)
    return schema
