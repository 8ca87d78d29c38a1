"""Infer a TableSchema from a DataFrame: kinds, bounds, rounding, formats, categories, null shares."""
from __future__ import annotations

import re
import warnings
from typing import Any, Mapping, NamedTuple

import numpy as np
import pandas as pd
import yaml
from pandas.api import types as pdt
from pandas.tseries.api import guess_datetime_format

from synthloop.schema.model import ColumnKind, ColumnSchema, PiiType, TableSchema
from synthloop.schema.pii import detect_pii, detect_pii_numbers

_ID_NAME = re.compile(r"(^|_|\b)(id|uuid|guid|key)$|^id_|_id_|Id$|ID$", re.IGNORECASE)
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
NEARLY_UNIQUE = 0.95  # a text column with at least this share of distinct values is an identifier
MIN_ROWS_UNIQUE = 50  # ... when it has at least this many values
LABEL_ROWS = 5  # a value seen on at least this many rows (median) is a label, not a person's datum


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


class _Guess(NamedTuple):
    kind: ColumnKind
    pii_type: PiiType | None = None
    note: str | None = None


def _norm_header(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _keep_hint(name: str, kind: str, **fields: str) -> str:
    """The one-line schema YAML override that sets `kind` for the column (names quoted where YAML needs it)."""
    return "columns: " + yaml.safe_dump({name: {"kind": kind, **fields}}, default_flow_style=True, width=10_000,
                                        allow_unicode=True).strip()


def _warn(message: str) -> None:
    warnings.warn(InferenceWarning(message), stacklevel=4)


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

    guess = _guess_kind(name, series, nonnull) if forced is None else _Guess(forced)
    k = guess.kind
    if guess.note:
        base["notes"] = [guess.note]
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
            dt = _parse_dates(nonnull.astype(str), fmt)
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
        notes = base.pop("notes", [])
        if len(cats) > 1000:
            notes.append(f"{len(cats)} categories; rare ones carry re-identification risk")
        return ColumnSchema(**base, kind=k, categories=cats, notes=notes)
    if k == ColumnKind.ID:
        if pdt.is_integer_dtype(series) or (pdt.is_float_dtype(series) and decimals_of(nonnull.to_numpy(float)) == 0):
            return ColumnSchema(**base, kind=k, id_pattern="{int}", min=float(nonnull.min()), max=float(nonnull.max()))
        return ColumnSchema(**base, kind=k, id_pattern=_id_pattern(nonnull))
    if k == ColumnKind.PII:
        ptype = guess.pii_type or _PII_NAMES.get(_norm_header(name))
        if guess.pii_type is None:  # the user set kind: pii; the values may still say which type
            finding = detect_pii(nonnull) if not pdt.is_numeric_dtype(series) else detect_pii_numbers(nonnull)
            ptype = finding.pii_type if finding is not None else ptype
            if ptype is None and nonnull.astype(str).str.match(_PHONE).mean() > 0.9:
                ptype = PiiType.PHONE
        return ColumnSchema(**base, kind=k, pii_type=ptype or PiiType.NAME)
    lengths = nonnull.astype(str).str.len()
    return ColumnSchema(**base, kind=ColumnKind.TEXT, text_length=(float(lengths.mean()), float(lengths.std(ddof=0))))


def _parse_dates(strs: pd.Series, fmt: str | None) -> pd.Series:
    """Parsed dates; values with offsets (e.g. '...Z', '+02:00') parse in UTC, returned naive."""
    try:
        return naive_utc(pd.to_datetime(strs, format=fmt, errors="coerce"))
    except (ValueError, TypeError):  # mixed offsets: pandas needs utc=True
        return naive_utc(pd.to_datetime(strs, format=fmt, errors="coerce", utc=True))


def _plain(v: Any) -> Any:
    """JSON-friendly scalar (numpy types become Python ones)."""
    return v.item() if isinstance(v, np.generic) else v


def naive_utc(dt: pd.Series) -> pd.Series:
    """Timezone-aware datetimes as naive UTC ones (a tz-aware series cannot be cast to datetime64[ns])."""
    tz = getattr(getattr(dt, "dt", None), "tz", None) if pdt.is_datetime64_any_dtype(dt) else None
    return dt.dt.tz_convert("UTC").dt.tz_localize(None) if tz is not None else dt


def _to_seconds(dt: pd.Series) -> np.ndarray:
    return naive_utc(dt).astype("datetime64[ns]").astype("int64").to_numpy() / 1e9


def _guess_kind(name: str, series: pd.Series, nonnull: pd.Series) -> _Guess:
    """The kind the values (and, second, the header) point to; warns where a column is not learned."""
    distinct = pd.Series(pd.unique(nonnull.to_numpy()), dtype=nonnull.dtype)
    n_unique = len(distinct)
    unique_ratio = n_unique / len(nonnull)
    if pdt.is_bool_dtype(series):
        return _Guess(ColumnKind.BOOLEAN)
    if pdt.is_datetime64_any_dtype(series):
        return _Guess(ColumnKind.DATETIME)
    if pdt.is_numeric_dtype(series):
        if _ID_NAME.search(name) and unique_ratio == 1.0 and len(nonnull) > 1 and (
            decimals_of(nonnull.to_numpy(dtype=float)) == 0
        ):
            return _Guess(ColumnKind.ID)
        return _numbers_or_pii(name, distinct)
    # object / string columns: the parsing checks run on the distinct values only
    strs = nonnull.astype(str)
    dstrs = distinct.astype(str)
    numeric = pd.to_numeric(dstrs, errors="coerce")
    if numeric.notna().all():
        return _numbers_or_pii(name, numeric)
    if n_unique <= 2 and set(dstrs.str.lower().unique()) <= _BOOL_WORDS:
        return _Guess(ColumnKind.BOOLEAN)
    if _looks_like_datetime(nonnull):
        return _Guess(ColumnKind.DATETIME)
    formats = _mixed_date_formats(dstrs)
    if formats:
        shown = "; ".join(f"{v!r} ({f})" for f, v in list(formats.items())[:3])
        _warn(f"column '{name}' holds dates written in {len(formats)} different formats (e.g. {shown}); "
              f"treated as categorical, so new rows only reuse its existing values. Write every date in one "
              f"format (e.g. 2021-03-04) to have it learned as dates.")
        return _Guess(ColumnKind.CATEGORICAL)
    finding = detect_pii(distinct)  # the values' distinct set is all it needs
    if finding is not None:
        return _pii(name, finding.pii_type, finding.reason)
    header_type = _PII_NAMES.get(_norm_header(name))
    lname = name.lower()
    if header_type is None and ("phone" in lname or "mobile" in lname or "tel" == lname) and (
            strs.str.match(_PHONE).mean() > 0.9):
        header_type = PiiType.PHONE
    if header_type is not None:
        counts = strs.value_counts(sort=False)
        if n_unique < len(nonnull) and float(counts.median()) >= LABEL_ROWS:
            _warn(f"column '{name}' is named like personal data ({header_type.value}) but holds {n_unique:,} repeated "
                  f"labels (a median of {int(counts.median()):,} rows each) that do not look like "
                  f"{header_type.value} values; learned as categorical. If it is personal data, set in the schema "
                  f"YAML: {_keep_hint(name, 'pii', pii_type=header_type.value)}")
            return _Guess(ColumnKind.CATEGORICAL, note="named like personal data, but holds repeated labels")
        return _pii(name, header_type, f"its name says {header_type.value} and its values are not repeated labels")
    if _ID_NAME.search(name) and unique_ratio > 0.95:
        return _Guess(ColumnKind.ID)
    mean_len = strs.str.len().mean()
    if mean_len > 30 and unique_ratio > 0.5 and strs.str.contains(" ").mean() > 0.8:
        return _Guess(ColumnKind.TEXT)
    if unique_ratio >= NEARLY_UNIQUE and len(nonnull) >= MIN_ROWS_UNIQUE:
        _warn(f"column '{name}' has nearly all values unique ({n_unique:,} of {len(nonnull):,}), so they identify "
              f"rows; treated as an identifier: new ids are generated and its values are never learned. To "
              f"learn it instead, set in the schema YAML: {_keep_hint(name, 'categorical')}")
        return _Guess(ColumnKind.ID, note=f"nearly all values unique ({n_unique} of {len(nonnull)})")
    if numeric.notna().any() and nonnull.isin(distinct[numeric.notna().to_numpy()]).mean() >= 0.5:
        bad = dstrs[numeric.isna().to_numpy()].iloc[0]  # distinct values keep the order of first appearance
        _warn(f"column '{name}' mixes numbers and text (e.g. {bad!r}); treated as categorical. "
              f"Set its kind in a schema YAML to change that.")
        return _Guess(ColumnKind.CATEGORICAL)
    return _Guess(ColumnKind.CATEGORICAL)


def _numbers_or_pii(name: str, values: pd.Series) -> _Guess:
    """Numerical, unless the numbers are card numbers or national ids (checked only for 9+ digit integers)."""
    v = values.to_numpy(dtype=float)
    if v.size and np.nanmin(np.abs(v)) >= 1e8:
        finding = detect_pii_numbers(values)
        if finding is not None:
            return _pii(name, finding.pii_type, finding.reason, keep_kind="numerical")
    return _Guess(ColumnKind.NUMERICAL)


def _pii(name: str, ptype: PiiType, why: str, keep_kind: str = "categorical") -> _Guess:
    """A PII column, with the warning that names it, says why, and gives the override that keeps it."""
    _warn(f"column '{name}' holds personal data ({ptype.value}): {why}; it is replaced by fake values, never "
          f"learned. To learn it instead, set in the schema YAML: {_keep_hint(name, keep_kind)}")
    return _Guess(ColumnKind.PII, ptype, f"personal data ({ptype.value}): {why}")


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
