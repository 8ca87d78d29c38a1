"""Reading a model file as untrusted input: every way it can be wrong is one ModelFileError line.

Model files travel between people (a colleague's model, one downloaded with a dataset), so `load`
checks the container and the header before it builds anything from them:

- the container: a zip of `.npy` members only, each member's declared shape and dtype read from its
  header *before* its data is decompressed (numeric, boolean or text dtypes; no objects), the declared
  sizes matching the zip's own sizes, and at most `MAX_MODEL_BYTES` in all, so neither a truncated or
  bit-flipped file nor a zip bomb gets further than one clear line;
- the header: a JSON object with the known fields of the right types (a pydantic model), a training
  row count within `MAX_MODEL_ROWS`, parameters the class accepts, of the types its constructor
  declares and within the bounds sampling can live with (`PARAM_LIMITS`).

What the arrays mean is checked by the class (see `BaseSynthesizer.load`).
"""
from __future__ import annotations

import functools
import json
import math
import typing
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, ValidationError

from synthloop._safe_expr import shorten
from synthloop.errors import ModelFileError

# The most a model file may unpack to (all arrays together). Models of this project weigh kilobytes
# to tens of megabytes; the cap only stops a small file from claiming gigabytes (a zip bomb).
MAX_MODEL_BYTES = 2 * 1024**3
MAX_ARRAYS = 100_000
MAX_HEADER_BYTES = 256 * 1024**2  # the JSON header (4 bytes a character in the .npy text array)
# The largest training table a model may say it learned (its `n_rows` is the default sample size).
MAX_MODEL_ROWS = 1_000_000_000
_ARRAY_KINDS = {"b": "boolean", "i": "integer", "u": "unsigned integer", "f": "float"}  # the header is text
# Parameters that size work at sampling time: a header may not ask for more than this.
PARAM_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "gibbs_sweeps": (0, 10_000),
    "max_condition_rounds": (0, 10_000),
    "sample_batch_size": (1, None),
    "n_threads": (1, 1024),
    "random_state": (0, None),
}
# The zip and npy layers raise these for damaged bytes (bad CRC, bad deflate stream, early EOF, bad
# npy header, unsupported compression or an "encrypted" flag set by a flipped bit).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError, OverflowError, KeyError, IndexError, TypeError)


def read_model_file(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """(header JSON text, arrays) of a model file, refusing anything that is not a sane `.npz`."""
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, expected a model file written by `synthloop fit`")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ARRAYS:
                raise ModelFileError(f"{path}: holds {len(infos):,} entries; a synthloop model has far fewer")
            total = 0
            for info in infos:
                total += _check_member(path, zf, info)
                if total > MAX_MODEL_BYTES:
                    raise ModelFileError(f"{path}: its arrays would unpack to more than {MAX_MODEL_BYTES // 1024**3} GiB; "
                                         "this is not a synthloop model (or it is damaged)")
            arrays: dict[str, np.ndarray] = {}
            for info in infos:
                with zf.open(info) as fh:
                    arrays[info.filename[:-4]] = np.lib.format.read_array(fh, allow_pickle=False)
            header = arrays.pop("__header__", None)
            if header is None or header.shape != () or header.dtype.kind != "U":
                raise ModelFileError(f"{path}: not a synthloop model file (no header)")
            text = str(header[()])
    except ModelFileError:
        raise
    except MemoryError:
        raise ModelFileError(f"{path}: not enough memory to read this model file") from None
    except _READ_ERRORS as exc:
        reason = shorten(exc, 160) or type(exc).__name__
        raise ModelFileError(f"{path}: not a synthloop model file, or a damaged one ({reason}); "
                             "refit the model or fetch the file again") from None
    return text, arrays


def _check_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """Declared size in bytes of one `.npy` member, read from its header without unpacking the data."""
    name = info.filename
    if not name.endswith(".npy") or name.startswith("/") or "\x00" in name:
        raise ModelFileError(f"{path}: unexpected entry {shorten(repr(name), 80)}; a synthloop model holds only .npy arrays")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ModelFileError(f"{path}: array {name[:-4]!r} uses .npy format {version}, which synthloop never writes")
        offset = fh.tell()
    kinds = "U" if name == "__header__.npy" else "".join(_ARRAY_KINDS)
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise ModelFileError(f"{path}: array {name[:-4]!r} has dtype {dtype}; a model stores only "
                             f"{', '.join(_ARRAY_KINDS.values())} arrays")
    count = math.prod(shape)  # Python ints: a forged shape cannot overflow
    nbytes = count * dtype.itemsize
    if name == "__header__.npy" and nbytes > MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: its header would unpack to {nbytes:,} bytes; a synthloop model header is far smaller")
    if offset + nbytes != info.file_size:
        raise ModelFileError(f"{path}: array {name[:-4]!r} declares shape {shape} but its entry holds "
                             f"{info.file_size - offset:,} bytes of data, not {nbytes:,} (damaged file)")
    return nbytes


class ModelHeader(BaseModel):
    """The JSON header of a model file (format and version are checked before this)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    klass: StrictStr = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)
    schema_: dict[str, Any] = Field(alias="schema")
    n_rows: StrictInt = Field(ge=1, le=MAX_MODEL_ROWS)
    model: dict[str, Any]
    constraints: list[dict[str, Any] | StrictStr] = Field(default_factory=list)


def parse_header(path: Path, text: str, fmt: str, newest: int) -> ModelHeader:
    """The validated header; wrong JSON, a wrong shape or a field of the wrong type is one line."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: model header is not valid JSON ({shorten(exc, 80)}); the file is damaged") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: model header is a JSON {type(data).__name__}, expected an object; "
                             "not a synthloop model file")
    if data.get("format") != fmt:
        raise ModelFileError(f"{path}: not a synthloop model file (header format {shorten(repr(data.get('format')), 60)})")
    version = data.get("version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{path}: model header 'version' must be a positive integer, got {shorten(repr(version), 40)}")
    if version > newest:
        raise ModelFileError(f"{path}: written by a newer synthloop (format {version}); upgrade synthloop")
    try:
        return ModelHeader.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(header)"
        got = "" if err["type"] == "missing" else f" (got {shorten(repr(err.get('input')), 60)})"
        raise ModelFileError(f"{path}: model header field '{loc}': {err['msg']}{got}") from None


@functools.lru_cache(maxsize=256)
def _adapter(hint: Any) -> TypeAdapter:
    return TypeAdapter(hint)


def check_params(path: Path, klass: type, params: dict[str, Any]) -> dict[str, Any]:
    """`params` checked against the constructor of `klass`: known names, declared types (strict: JSON
    lists may stand for tuples, nothing else is converted), no NaN, and `PARAM_LIMITS`."""
    valid = klass._get_param_names()
    for name in params:
        if name not in valid:
            raise ModelFileError(f"{path}: unknown parameter {shorten(repr(name), 60)} for {klass.__name__}; "
                                 f"valid: {', '.join(valid)}")
    try:
        hints = typing.get_type_hints(klass.__init__)
    except Exception:  # an annotation that does not resolve here: names are still checked
        hints = {}
    out: dict[str, Any] = {}
    for name, value in params.items():
        hint = hints.get(name, Any)
        if hint is not Any:
            try:
                value = _adapter(hint).validate_python(value, strict=True)
            except ValidationError:
                try:
                    if not isinstance(value, list):
                        raise
                    value = _adapter(hint).validate_python(tuple(value), strict=True)
                except ValidationError:
                    want = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
                    raise ModelFileError(f"{path}: parameter '{name}' = {shorten(repr(value), 60)} is not "
                                         f"of type {want}") from None
        if isinstance(value, float) and math.isnan(value):
            raise ModelFileError(f"{path}: parameter '{name}' is NaN")
        lo, hi = PARAM_LIMITS.get(name, (None, None))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
                raise ModelFileError(f"{path}: parameter '{name}' = {shorten(repr(value), 40)} must be {bounds}")
        out[name] = value
    return out


def check_schema(path: Path, schema: Any) -> None:
    """What the schema model alone does not say: columns named once, categories unique JSON scalars,
    numeric bounds finite and in order (a forged schema must not reach the codec)."""
    names = schema.names
    if not names:
        raise ModelFileError(f"{path}: schema has no columns")
    if len(set(names)) != len(names):
        dup = next(x for x in names if names.count(x) > 1)
        raise ModelFileError(f"{path}: schema names column {shorten(repr(dup), 60)} twice")
    import pandas as pd

    for col in schema.columns:
        where = f"{path}: schema column {shorten(repr(col.name), 60)}"
        cats = col.categories
        if cats is not None:
            if not all(c is None or isinstance(c, (str, int, float)) for c in cats):
                raise ModelFileError(f"{where}: categories must be strings, numbers or booleans")
            if not pd.Index(cats).is_unique:
                raise ModelFileError(f"{where}: a category is listed twice")
        for bound in (col.min, col.max):
            if bound is not None and not math.isfinite(bound):
                raise ModelFileError(f"{where}: min and max must be finite numbers")
        if col.min is not None and col.max is not None and col.min > col.max:
            raise ModelFileError(f"{where}: min {col.min} is above max {col.max}")


class Entries(dict):
    """The arrays or a header object of a model file: a missing key is one ModelFileError naming it
    (the classes' `_set_state` index them directly)."""

    def __init__(self, data: dict[str, Any], where: str) -> None:
        super().__init__(data)
        self.where = where

    def __missing__(self, key: Any) -> Any:
        raise ModelFileError(f"model file: {self.where} {shorten(repr(key), 60)} is missing")


def entries(value: Any, where: str) -> Any:
    """`value` (header JSON) with every object wrapped in Entries, each naming its place."""
    if isinstance(value, dict):
        return Entries({k: entries(v, f"{where}.{k}") for k, v in value.items()}, f"header field '{where}': key")
    if isinstance(value, list):
        return [entries(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def describe_exception(exc: BaseException) -> str:
    """`Type: first line of the message`, short, for one-line errors."""
    text = shorten(str(exc).strip().splitlines()[0] if str(exc).strip() else "", 160)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
