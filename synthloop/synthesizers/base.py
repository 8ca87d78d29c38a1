"""BaseSynthesizer: the one interface every learned synthesizer offers.

`fit(df)`, `sample(n, seed=, conditions=)`, `sample_from_conditions(...)`, `save(path)`, `load(path)`.
Subclasses only see encoded arrays (see TableCodec) and implement `_fit`, `_sample`, `_state`,
`_set_state`. Models are saved as one `.npz` file of NumPy arrays plus a JSON header: never pickle.
"""
from __future__ import annotations

import importlib
import inspect
import json
import numbers
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np
import pandas as pd

from synthloop.errors import ConditionError, DataError, ModelFileError, SynthloopError
from synthloop.io import atomic_path
from synthloop.schema import ColumnKind, TableSchema, infer_schema
from synthloop.transforms import TableCodec

FORMAT = "synthloop-model"
FORMAT_VERSION = 1
# Row ceilings. One `sample()` call draws at most MAX_SAMPLE_ROWS rows (one DataFrame in memory);
# `sample_batches` (and `synthloop sample`) draw up to MAX_TOTAL_ROWS in batches of BATCH_ROWS.
MAX_SAMPLE_ROWS = 10_000_000
BATCH_ROWS = 1_000_000
MAX_TOTAL_ROWS = 1_000_000_000
_REGISTRY: dict[str, type["BaseSynthesizer"]] = {}
# Model name -> module, imported on first use so that `import synthloop` never pays for torch.
MODEL_MODULES: dict[str, str] = {
    "copula": "synthloop.synthesizers.copula",
    "autoregressive": "synthloop.synthesizers.autoregressive",
    "gan": "synthloop.synthesizers.gan",
    "vae": "synthloop.synthesizers.vae",
    "dp": "synthloop.synthesizers.dp_marginals",
}

Conditions = Mapping[str, Any] | pd.DataFrame


def available_models() -> list[str]:
    """Model names whose module is present in this installation."""
    import importlib.util

    return [name for name, mod in MODEL_MODULES.items() if importlib.util.find_spec(mod) is not None]


def synthesizer_class(name: str) -> type["BaseSynthesizer"]:
    """The class registered under `name`, importing its module on first use."""
    if name not in _REGISTRY and name in MODEL_MODULES:
        try:
            importlib.import_module(MODEL_MODULES[name])
        except ModuleNotFoundError as exc:
            raise ModelFileError(f"model '{name}' needs a package that is not installed ({exc.name})") from None
    if name not in _REGISTRY or name == "base":
        raise KeyError(name)
    return _REGISTRY[name]


class BaseSynthesizer:
    """Shared fit/sample/save logic; see module docstring. scikit-learn's estimator conventions:
    configuration in `__init__` (stored as is), learning in `fit`, fitted attributes end in `_`."""

    name: ClassVar[str] = "base"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.name] = cls

    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind == p.POSITIONAL_OR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's get_params."""
        return {k: getattr(self, k, None) for k in self._get_param_names()}

    def set_params(self, **params: Any) -> "BaseSynthesizer":
        valid = self._get_param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter '{k}' for {type(self).__name__}; valid: {', '.join(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = {k: v for k, v in self.get_params().items() if defaults.get(k, inspect.Parameter.empty) is not v and defaults.get(k) != v}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, data: pd.DataFrame, schema: TableSchema | None = None, constraints: list[Any] | None = None) -> "BaseSynthesizer":
        """Learn `data`; the schema is inferred unless given (here or as the `schema` parameter).
        `constraints` (rule objects, dicts or expression strings; see synthloop.constraints) add to the
        schema's `constraints:` list and a `constraints` constructor parameter; `sample` obeys them all."""
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"fit expects a pandas DataFrame, got {type(data).__name__}")
        if len(data) == 0 or data.shape[1] == 0:
            raise DataError("the table to learn is empty: it needs at least one row and one column")
        if len(data) == 1:
            from synthloop.schema.inference import InferenceWarning

            warnings.warn(InferenceWarning(
                "the table has only 1 row: there is nothing to generalize from, so every synthetic row will be "
                "a copy of it (apart from regenerated ids and PII); give more rows"), stacklevel=2)
        schema = schema or getattr(self, "schema", None)
        if isinstance(schema, (str, Path)):
            schema = TableSchema.load(schema)
        elif isinstance(schema, dict):
            schema = infer_schema(data, overrides=schema)
        self.schema_ = schema if isinstance(schema, TableSchema) else infer_schema(data)
        self.schema_, data = self._release(self.schema_, data)
        self.codec_ = TableCodec(self.schema_)
        from synthloop.constraints.enforce import fit_constraints

        self.constraints_ = fit_constraints(self.schema_, data, getattr(self, "constraints", None), constraints)
        encoded = self.codec_.encode(data, **self._encode_options)
        self.n_rows_ = len(data)
        seed = getattr(self, "random_state", None)
        self._rng = np.random.default_rng(seed)
        self._fit(encoded, self._rng)
        return self

    def _release(self, schema: TableSchema, data: pd.DataFrame) -> tuple[TableSchema, pd.DataFrame]:
        """The schema the model stores and the rows it learns; models without a formal guarantee
        coarsen both (synthloop.synthesizers._release). The default keeps them as they are."""
        return schema, data

    def _fit(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        raise NotImplementedError

    # Differentially private models release their domain in `_release` (see synthloop.privacy.domain)
    # and encode values outside it as -2 (nulls stay -1), so that they can leave them out.
    _encode_options: ClassVar[dict[str, Any]] = {}

    # -- sampling ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "schema_"):
            raise DataError(f"this {type(self).__name__} is not fitted yet: call fit(data) first")

    def sample(self, n: int | None = None, seed: int | None = None, conditions: Conditions | None = None) -> pd.DataFrame:
        """`n` new rows (at most MAX_SAMPLE_ROWS per call; `sample_batches` draws more). `conditions`:
        {column: value or (low, high)} for all rows, or a DataFrame of known values per row (its length
        is the number of rows; NaN cells are left free)."""
        self._check_fitted()
        if isinstance(conditions, pd.DataFrame):
            if n is not None and n != len(conditions):
                raise ConditionError(f"n={n} but the conditions table has {len(conditions)} rows; give one or the other")
            n = len(conditions)
        if n is None:
            n = self.n_rows_
        n = _check_rows(n, MAX_SAMPLE_ROWS, "one sample() call draws", "; use sample_batches(n, ...) to draw more "
                        "in batches (as `synthloop sample` does)")
        rng = np.random.default_rng(_check_seed(seed)) if seed is not None else self._rng
        known = self._normalize_conditions(conditions, n) if conditions is not None else {}
        df = self._sample_rows(n, rng, known)
        if getattr(self, "constraints_", None):
            from synthloop.constraints.enforce import enforce_constraints

            df = enforce_constraints(self, df, rng, known)
        return df

    def _draw_size(self, n: int | None, conditions: Any) -> tuple[int, pd.DataFrame | None]:
        """Rows of a whole draw (a conditions table sets it) within MAX_TOTAL_ROWS, and that table."""
        table = conditions if isinstance(conditions, pd.DataFrame) else None
        if table is not None:
            if n is not None and n != len(table):
                raise ConditionError(f"n={n} but the conditions table has {len(table)} rows; give one or the other")
            n = len(table)
        n = _check_rows(self.n_rows_ if n is None else n, MAX_TOTAL_ROWS, "synthloop draws in one run",
                        "; draw in several runs with different seeds")
        return n, table

    def sample_batches(self, n: int | None = None, seed: int | None = None, conditions: Conditions | None = None,
                       batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
        """`n` rows (up to MAX_TOTAL_ROWS) as consecutive DataFrames of at most `batch_rows` rows, so a
        draw larger than memory streams to a file (`synthloop sample` does this).

        Deterministic: a draw that fits one batch is exactly `sample(n, seed, conditions)`; a larger one
        draws batch i with the seed `SeedSequence([seed, i])` (for seed None, a base seed is drawn once
        from the model's own stream), so the same model, seed, n and batch_rows give the same rows. Id
        columns are numbered across batches (unique over the whole draw); other uniqueness rules
        (`unique` constraints) hold within each batch. A conditions table is split along the batches."""
        self._check_fitted()
        n, table = self._draw_size(n, conditions)
        batch_rows = _check_rows(batch_rows, MAX_SAMPLE_ROWS, "one batch holds")
        if batch_rows < 1:
            raise ConditionError("batch_rows must be at least 1")
        if n <= batch_rows:
            yield self.sample(n, seed=seed, conditions=conditions)
            return
        base = int(self._rng.integers(2**63)) if seed is None else _check_seed(seed)
        for i, start in enumerate(range(0, n, batch_rows)):
            m = min(batch_rows, n - start)
            part = table.iloc[start:start + m].reset_index(drop=True) if table is not None else conditions
            yield self.sample_shard(i, start, m, base, part)

    def sample_shard(self, index: int, start: int, rows: int, base_seed: int,
                     conditions: Conditions | None = None) -> pd.DataFrame:
        """Batch `index` of a large draw (rows start..start+rows-1), seeded from (base_seed, index) only,
        so any process can draw it alone: what `sample_batches` yields and what the runners in
        synthloop.runners draw in parallel. A conditions table holds this shard's rows only."""
        from synthloop.transforms.generated import generate_ids

        table = conditions if isinstance(conditions, pd.DataFrame) else None
        fixed = set(table.columns) if table is not None else set(conditions or {})
        batch_seed = int(np.random.SeedSequence([base_seed, index]).generate_state(1, np.uint64)[0] >> 1)
        df = self.sample(None if table is not None else rows, seed=batch_seed, conditions=conditions)
        id_rng = np.random.default_rng([base_seed, index, 1])
        for col in self.schema_.of_kind(ColumnKind.ID):
            if col.name not in fixed:
                df[col.name] = generate_ids(col, rows, id_rng, start=start, key=base_seed).to_numpy()
        return df

    def _sample_rows(self, n: int, rng: np.random.Generator, known: dict[str, dict[str, Any]]) -> pd.DataFrame:
        """One draw of `n` decoded rows, conditioned values written back (constraints not applied)."""
        gen_seed = int(rng.integers(2**31))
        arrays = self._sample(n, rng, known)
        df = self.codec_.decode(arrays, n, rng, gen_seed)
        for name, spec in known.items():  # conditioned values are returned exactly as asked
            exact = spec.get("exact")
            if exact is not None and spec["mask"].any():
                mask = spec["mask"]
                values = pd.Series(exact[mask])
                dtype = df[name].dtype
                if pd.api.types.is_bool_dtype(dtype):
                    values = values.astype(bool)
                elif pd.api.types.is_numeric_dtype(dtype):
                    values = pd.to_numeric(values).astype(dtype)
                df.loc[mask, name] = values.to_numpy()
        return df

    def sample_from_conditions(self, conditions: Conditions, n: int | None = None, seed: int | None = None) -> pd.DataFrame:
        """SDV's verb: rows that satisfy `conditions` (a dict for `n` rows, or a DataFrame per row)."""
        return self.sample(n=n, seed=seed, conditions=conditions)

    def sample_remaining_columns(self, known_columns: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
        """SDV's verb: complete each row of `known_columns`."""
        return self.sample(seed=seed, conditions=known_columns)

    def _sample(self, n: int, rng: np.random.Generator, known: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _normalize_conditions(self, conditions: Conditions, n: int) -> dict[str, dict[str, Any]]:
        """Validate conditions into per-column arrays: `lo`/`hi` (encoded bounds, inclusive), `codes` for
        categories, `mask` (rows where the column is conditioned) and `exact` (values to write back)."""
        schema = self.schema_
        if isinstance(conditions, pd.DataFrame):
            table = conditions.reset_index(drop=True)
        elif isinstance(conditions, Mapping):
            table = None
        else:
            raise ConditionError("conditions must be a dict {column: value} or a DataFrame of known columns")
        names = list(table.columns) if table is not None else list(conditions)
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            if name not in schema:
                raise ConditionError(f"condition on unknown column '{name}'; columns are: {', '.join(schema.names)}")
            col = schema[name]
            if table is not None:
                values = table[name]
            else:
                v = conditions[name]
                if isinstance(v, (tuple, list)) and col.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
                    if len(v) != 2:
                        raise ConditionError(f"condition on '{name}': a range is (low, high), got {v!r}")
                    lo, hi = (self.codec_.encode_column(col, pd.Series([b]), strict=False)[0] for b in v)
                    for b, e in zip(v, (lo, hi)):
                        if np.isnan(e):
                            hint = f" written as {col.datetime_format}" if col.kind == ColumnKind.DATETIME and col.datetime_format else ""
                            raise ConditionError(f"condition on '{name}': range bound {b!r} is not a valid "
                                                 f"{col.kind.value} value{hint}")
                    if not lo <= hi:
                        raise ConditionError(f"condition on '{name}': empty range {v!r}")
                    if hi < (col.min or -np.inf) or lo > (col.max if col.max is not None else np.inf):
                        raise ConditionError(f"condition on '{name}': range {v!r} lies outside the learned range [{col.min}, {col.max}]")
                    out[name] = {"mask": np.ones(n, bool), "lo": np.full(n, lo), "hi": np.full(n, hi)}
                    continue
                values = pd.Series([v] * n, dtype=object)
            mask = values.notna().to_numpy()
            if not col.learned:
                out[name] = {"mask": mask, "exact": values.to_numpy(dtype=object), "generated": True}
                continue
            enc = self.codec_.encode_column(col, values, strict=False)
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                bad = mask & (enc < 0)
                if bad.any():
                    cats = col.categories or []
                    shown = ", ".join(map(repr, cats[:10])) + (", ..." if len(cats) > 10 else "")
                    released = next((n for n in col.notes if " released as " in n), None)  # transforms.release
                    why = f"is not a value the model learned ({released})" if released else "never occurs in the training data"
                    raise ConditionError(f"condition on '{name}': value {values[bad].iloc[0]!r} {why}, so it cannot be "
                                         f"sampled; known values: {shown}")
                out[name] = {"mask": mask, "codes": enc, "exact": values.to_numpy(dtype=object)}
            else:
                bad = mask & np.isnan(enc)
                if bad.any():
                    raise ConditionError(f"condition on '{name}': {values[bad].iloc[0]!r} is not a valid {col.kind.value} value")
                outside = mask & ((enc < col.min) | (enc > col.max))
                if outside.any():
                    raise ConditionError(f"condition on '{name}': {values[outside].iloc[0]!r} lies outside the learned "
                                         f"range [{col.min}, {col.max}]")
                out[name] = {"mask": mask, "lo": enc, "hi": enc, "exact": values.to_numpy(dtype=object)}
        return out

    # -- persistence -------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        raise NotImplementedError

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """One `.npz` file: arrays + a JSON header (class, parameters, schema). Written atomically."""
        self._check_fitted()
        meta, arrays = self._state()
        header = {
            "format": FORMAT, "version": FORMAT_VERSION, "class": self.name,
            "params": {k: v for k, v in self.get_params().items() if _jsonable(v)},
            "schema": self.schema_.to_dict(), "n_rows": self.n_rows_, "model": meta,
            "constraints": [c.to_dict() for c in getattr(self, "constraints_", [])],
        }
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, __header__=np.array(json.dumps(header)), **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "BaseSynthesizer":
        """Load any synthloop model file (the class is read from its header).

        The file is untrusted input (models travel between people): a damaged or forged file, a header
        of the wrong shape, unknown or ill-typed parameters, missing, extra or ill-shaped arrays are each
        one ModelFileError naming the file and what is wrong; nothing is sized from the header before it
        has been checked against the arrays (see synthloop/synthesizers/_modelfile.py)."""
        p = Path(path)
        try:
            return cls._load(p)
        except SynthloopError as exc:
            msg = " ".join(str(exc).removeprefix("model file: ").splitlines())  # one line, whatever the file holds
            raise ModelFileError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None
        except RecursionError:
            raise ModelFileError(f"{p}: the model file nests too deeply to read; it is damaged or forged") from None
        except MemoryError:
            raise ModelFileError(f"{p}: the model file asks for more memory than there is; it is damaged or forged") from None
        except Exception as exc:  # defence in depth: the checks in _load should leave nothing for this
            from synthloop.synthesizers._modelfile import describe_exception

            raise ModelFileError(f"{p}: the model file is damaged or does not fit this synthloop version "
                                 f"({describe_exception(exc)}); refit the model") from None

    @classmethod
    def _load(cls, p: Path) -> "BaseSynthesizer":
        from synthloop.constraints import check_columns, parse_constraints
        from synthloop.synthesizers._modelfile import (Entries, check_params, check_schema, entries, parse_header,
                                                      read_model_file)

        text, arrays = read_model_file(p)
        header = parse_header(p, text, FORMAT, FORMAT_VERSION)
        try:
            klass = synthesizer_class(header.klass)
        except KeyError:
            known = ", ".join(MODEL_MODULES)
            raise ModelFileError(f"{p}: unknown model class {header.klass[:60]!r}; synthloop knows: {known}") from None
        if cls is not BaseSynthesizer and not issubclass(klass, cls):
            raise ModelFileError(f"{p}: holds a {klass.__name__}, not a {cls.__name__}")
        obj = klass(**check_params(p, klass, header.params))
        obj.schema_ = TableSchema.from_dict(header.schema_, f"{p}: schema")
        check_schema(p, obj.schema_)
        names = obj.schema_.names
        obj.codec_ = TableCodec(obj.schema_)
        obj.n_rows_ = header.n_rows
        obj.constraints_ = parse_constraints(header.constraints, f"{p}: constraints")
        check_columns(obj.constraints_, names, f"{p}: constraints")
        obj._rng = np.random.default_rng(getattr(obj, "random_state", None))
        obj._set_state(entries(header.model, "model"), Entries(arrays, "array"))
        obj._check_state(p, arrays)
        return obj

    def _check_state(self, p: Path, arrays: dict[str, np.ndarray]) -> None:
        """The loaded state must be the one the arrays describe, and able to draw a row: the arrays
        the model would save again are those in the file, with the same shapes and dtypes, and two
        rows decode (no Faker, no constraints: only what the arrays and header drive)."""
        _, again = self._state()
        extra = sorted(set(arrays) - set(again))
        if extra:
            raise ModelFileError(f"{p}: unexpected array {extra[0][:60]!r}; the {type(self).__name__} in the header does not use it")
        for key, a in again.items():
            got = arrays.get(key)
            if got is None:
                raise ModelFileError(f"{p}: array {key!r} is missing")
            if got.shape != np.shape(a) or got.dtype != np.asarray(a).dtype:
                raise ModelFileError(f"{p}: array {key!r} is {got.dtype} {got.shape}; the model keeps it as "
                                     f"{np.asarray(a).dtype} {np.shape(a)}")
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            out = self._sample(2, np.random.default_rng(0), {})
            for col in self.codec_.learned:
                x = np.asarray(out[col.name]) if col.name in out else None
                if x is None or x.shape != (2,):
                    raise ModelFileError(f"{p}: the model's state does not produce column {col.name[:60]!r}")
                self.codec_.decode_column(col, x)


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def _check_rows(n: Any, ceiling: int, what: str, hint: str = "") -> int:
    """`n` as a row count in [0, ceiling]; anything else is one ConditionError line."""
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, float)) or (isinstance(n, float) and not n.is_integer()):
        raise ConditionError(f"n={n!r}: the number of rows must be a whole number")
    n = int(n)
    if n < 0:
        raise ConditionError(f"cannot sample {n} rows")
    if n > ceiling:
        raise ConditionError(f"n={n:,} rows is more than {what} (at most {ceiling:,}){hint}")
    return n


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConditionError(f"seed={seed!r}: a seed is a whole number >= 0")
    return int(seed)


def load_synthesizer(path: str | Path) -> BaseSynthesizer:
    """Load a model file whatever its class."""
    return BaseSynthesizer.load(path)
