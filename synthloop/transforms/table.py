"""TableCodec: a DataFrame <-> plain arrays of its learned columns, and back with the original dtypes.

Learned columns become float arrays (numerical, datetime as epoch seconds; NaN = missing) or
integer codes (categorical, boolean; -1 = missing). Decoding restores rounding, bounds, integer
dtypes, datetime formats and categories exactly, so no synthesizer can invent a category or a
value outside the observed range.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from synthloop.errors import DataError
from synthloop.schema.model import ColumnKind, ColumnSchema, TableSchema
from synthloop.transforms.generated import generate_columns


class TableCodec:
    """Encode/decode the learned columns of `schema`; regenerate id/pii/text columns."""

    def __init__(self, schema: TableSchema):
        self.schema = schema
        self.learned = [c for c in schema.columns if c.learned]
        self._cat_index: dict[str, pd.Index] = {
            c.name: pd.Index(c.categories or []) for c in self.learned if c.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
        }

    # -- encode ------------------------------------------------------------------------------
    def encode_column(self, col: ColumnSchema, values: pd.Series, strict: bool = True, unknown: int = -1) -> np.ndarray:
        if col.kind == ColumnKind.NUMERICAL:
            return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        if col.kind == ColumnKind.DATETIME:
            dt = values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(
                values.astype("string"), format=col.datetime_format, errors="coerce")
            from synthloop.schema.inference import naive_utc

            secs = naive_utc(dt).astype("datetime64[ns]").astype("int64").to_numpy().astype(float) / 1e9
            secs[dt.isna().to_numpy()] = np.nan
            return secs
        index = self._cat_index[col.name]
        codes = index.get_indexer(values)
        if index.dtype == object and (codes < 0).any():  # match "1" to 1 or 1.0 when types differ
            alt = pd.Index([str(v) for v in index]).get_indexer(values.astype(str))
            codes = np.where(codes < 0, alt, codes)
        outside = (codes < 0) & values.notna().to_numpy()
        if outside.any() and strict:
            bad = values[outside].iloc[0]
            raise DataError(f"column '{col.name}': value {bad!r} is not one of the schema's categories")
        if unknown != -1:  # tell values outside the categories apart from nulls
            codes = np.where(outside, unknown, codes)
        return codes.astype(np.int64)

    def encode(self, df: pd.DataFrame, strict: bool = True, unknown: int = -1) -> dict[str, np.ndarray]:
        """`strict=False`: a value outside the schema's categories encodes as `unknown` (by default -1,
        like a null) instead of failing."""
        missing = [c.name for c in self.learned if c.name not in df.columns]
        if missing:
            raise DataError(f"column '{missing[0]}' of the schema is missing from the data")
        return {c.name: self.encode_column(c, df[c.name], strict=strict, unknown=unknown) for c in self.learned}

    # -- decode ------------------------------------------------------------------------------
    def decode_column(self, col: ColumnSchema, arr: np.ndarray) -> pd.Series:
        if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            cats = np.asarray(col.categories or [], dtype=object)
            codes = np.asarray(arr, dtype=np.int64)
            if cats.size == 0:
                return pd.Series(np.full(codes.size, None, dtype=object))
            vals = cats[np.clip(codes, 0, cats.size - 1)]
            out = pd.Series(vals, dtype=object)
            if (codes < 0).any():
                out[codes < 0] = None
            if col.dtype == "bool" and not (codes < 0).any():
                return out.astype(bool)
            if col.dtype.startswith(("int", "float", "Int", "Float")):
                return pd.to_numeric(out) if (codes >= 0).all() else pd.Series(pd.to_numeric(out), dtype="float64")
            if col.dtype == "category":
                return out.astype(pd.CategoricalDtype(col.categories))
            return out
        x = np.asarray(arr, dtype=float).copy()
        nan = np.isnan(x)
        if col.min is not None:
            x = np.clip(x, col.min, col.max)
        if col.decimals is not None:
            x = np.round(x, col.decimals)
        if col.kind == ColumnKind.DATETIME:
            ns = np.where(nan, 0, np.round(x * 1e9)).astype("int64")
            dt = pd.Series(ns.astype("datetime64[ns]"))
            dt[nan] = pd.NaT
            if col.datetime_format:
                if "%z" in col.datetime_format or "%Z" in col.datetime_format:  # learned as UTC (see naive_utc)
                    dt = dt.dt.tz_localize("UTC")
                s = dt.dt.strftime(col.datetime_format)
                return s.astype(object).where(~nan, None)
            return dt
        if col.decimals == 0 and col.dtype.startswith(("int", "uint")) and not nan.any():
            return pd.Series(x.astype(col.dtype))
        if col.dtype.startswith("Int"):
            return pd.Series(pd.array(np.where(nan, 0, x).astype("int64"), dtype=col.dtype)).mask(nan)
        return pd.Series(x)

    def decode(self, arrays: dict[str, np.ndarray], n: int, rng: np.random.Generator, seed: int) -> pd.DataFrame:
        """Build the output table: decoded learned columns, generated id/pii/text columns, schema order."""
        cols: dict[str, pd.Series] = {c.name: self.decode_column(c, arrays[c.name]) for c in self.learned}
        cols.update(generate_columns(self.schema, n, rng, seed))
        for c in self.schema.columns:  # all-null columns of any kind
            if c.name not in cols:
                cols[c.name] = pd.Series(np.full(n, None, dtype=object))
        # copy=False: no block consolidation, which would copy every object column once more
        return pd.DataFrame({c.name: cols[c.name].reset_index(drop=True) for c in self.schema.columns}, copy=False)
