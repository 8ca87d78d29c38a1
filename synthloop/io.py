"""Reading and writing tables (CSV, Parquet, JSONL) with clear errors and atomic writes."""
from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import re
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd

from synthloop.errors import DataError, SynthloopError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}


def table_format(path: str | Path) -> str:
    """Format from the file extension (a trailing .gz is allowed for text formats)."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz"):
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in FORMATS:
        raise DataError(f"{path}: unknown table format '{ext or '(no extension)'}'; use .csv, .tsv, .parquet or .jsonl")
    return FORMATS[ext]


_COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}


def _open_raw(path: Path):  # noqa: ANN202 - a binary file object
    """The file's bytes, decompressed by extension (as pandas does), as a binary stream."""
    kind = _COMPRESSED.get(path.suffix.lower())
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    if kind == "zip":
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            return zf.open(names[0]) if names else open(os.devnull, "rb")
    return open(path, "rb")


def _readable_chunks(path: Path) -> Iterator[bytes]:
    """The decompressed bytes in chunks, up to exactly where the data ends early or turns corrupt.

    gzip, bz2 and xz go through their incremental decompressors, which return every byte they can
    decode, so a row count taken from them is exact even when the file stops mid-stream."""
    kind = _COMPRESSED.get(path.suffix.lower())
    new = {"gzip": lambda: zlib.decompressobj(wbits=31), "bz2": bz2.BZ2Decompressor,
           "xz": lzma.LZMADecompressor}.get(kind or "")
    try:
        if new is None:
            with _open_raw(path) as fh:
                while chunk := fh.read(1 << 16):
                    yield chunk
            return
        with open(path, "rb") as fh:
            dec = new()
            while data := fh.read(1 << 14):
                while data:
                    yield dec.decompress(data)
                    data = dec.unused_data if dec.eof else b""
                    if dec.eof and data:  # another member/stream follows
                        dec = new()
    except Exception:  # noqa: BLE001 - corrupt: stop at the last good chunk
        return


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message, or its type's name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _compression_error(p: Path, fmt: str, exc: BaseException) -> DataError:
    """One line for a compressed file that ends early or is corrupt, with the rows read before that."""
    lines = sum(chunk.count(b"\n") for chunk in _readable_chunks(p))
    rows = max(lines - 1, 0) if fmt in ("csv", "tsv") else lines
    if "Not a gzipped file" in str(exc):
        return DataError(f"{p}: is not gzip-compressed although its name ends in .gz; rename it to {p.stem}")
    if isinstance(exc, EOFError):
        what = "compressed data ends early"
    else:
        detail = _first_line(exc)
        what = f"compressed data is corrupt ({detail})"
    return DataError(f"{p}: {what} after {rows:,} rows; the file was cut short or damaged: download or copy it again")


def _first_bad_line(path: Path, encoding: str) -> tuple[int, int] | None:
    """(line, byte) of the first byte that does not decode; pandas only knows its chunk's offset."""
    raw = b"".join(_readable_chunks(path))
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return raw[: exc.start].count(b"\n") + 1, raw[exc.start]
    return None


def read_table(path: str | Path, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV/TSV/Parquet/JSONL table; every failure names the file and, where known, the line."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a table file")
    fmt = table_format(p)
    if p.stat().st_size == 0:
        raise DataError(f"{p}: file is empty; expected a header line and at least one data row")
    try:
        if fmt in ("csv", "tsv"):
            df = pd.read_csv(p, sep="," if fmt == "csv" else "\t", encoding=encoding, low_memory=False)
        elif fmt == "parquet":
            df = pd.read_parquet(p)
        else:
            df = pd.read_json(p, lines=True, encoding=encoding)
    except (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile, lzma.LZMAError) as exc:
        if fmt == "parquet" or p.suffix.lower() not in _COMPRESSED:
            raise DataError(f"{p}: cannot parse as {fmt}: {str(exc).strip() or type(exc).__name__}") from None
        raise _compression_error(p, fmt, exc) from None
    except OSError as exc:  # bz2 reports corrupt data as a bare OSError; pyarrow's I/O errors too
        if fmt != "parquet" and p.suffix.lower() in _COMPRESSED:
            raise _compression_error(p, fmt, exc) from None
        raise DataError(f"{p}: cannot read as {fmt}: {_first_line(exc)}") from None
    except UnicodeDecodeError as exc:
        line, byte = _first_bad_line(p, encoding) or ("?", exc.object[exc.start])
        raise DataError(
            f"{p}: line {line} is not valid {encoding} (byte 0x{byte:02x}); "
            f"re-save the file as UTF-8 or pass --encoding latin-1"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{p}: file is empty; expected a header line and at least one data row") from None
    except pd.errors.ParserError as exc:
        msg = str(exc)
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            raise DataError(
                f"{p}: line {m.group(2)} has {m.group(3)} fields but the header has {m.group(1)} "
                f"(ragged row); fix that row or quote values that contain the separator"
            ) from None
        raise DataError(f"{p}: cannot parse: {msg.strip().splitlines()[-1]}") from None
    except ValueError as exc:  # JSON and Parquet errors
        msg = _first_line(exc)
        if fmt == "parquet" and "magic bytes" in msg:
            msg = "no Parquet footer: the file was cut short or is not Parquet; write or copy it again"
        raise DataError(f"{p}: cannot parse as {fmt}: {msg}") from None
    except Exception as exc:  # pyarrow's other errors on a damaged Parquet file
        if fmt != "parquet" or not type(exc).__module__.startswith("pyarrow"):
            raise
        raise DataError(f"{p}: cannot read as parquet: {_first_line(exc)}") from None
    if df.shape[1] == 0:
        raise DataError(f"{p}: no columns found; expected a header line")
    if len(df) == 0:
        raise DataError(f"{p}: has a header but no data rows; at least one row is needed to learn from")
    dup = [c for c in df.columns if re.fullmatch(r".+\.\d+", str(c)) and str(c).rsplit(".", 1)[0] in df.columns]
    if dup:
        raise DataError(f"{p}: column name '{str(dup[0]).rsplit('.', 1)[0]}' appears more than once in the header; rename one")
    return df


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write by extension (csv, tsv, parquet, jsonl), atomically: readers never see half a file."""
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            df.to_csv(tmp, index=False, compression="gzip" if str(path).endswith(".gz") else None)
        elif fmt == "tsv":
            df.to_csv(tmp, index=False, sep="\t")
        elif fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", lines=True, date_format="iso")
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_yaml(path: str | Path, error: type[SynthloopError] = SynthloopError, what: str = "file") -> tuple[object, str]:
    """(parsed YAML, its text); a missing file or bad YAML raises `error` naming the file and line."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise error(f"{p}: {what} not found")
    text = p.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text), text
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{p}{line}: not valid YAML: {problem}") from None


def write_table_batches(batches: Iterable[pd.DataFrame], path: str | Path,
                        on_batch: Callable[[int], None] | None = None) -> tuple[Path, int]:
    """Stream DataFrames with the same columns to one file by extension (CSV/TSV/JSONL appended,
    optionally .gz/.bz2/.xz; Parquet one row group per batch), atomically: the file appears, whole,
    only after the last batch. `on_batch(rows)` is called after each batch. Returns (path, rows)."""
    fmt = table_format(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".zip":
        raise DataError(f"{path}: writing .zip is not supported; use .gz")
    rows = 0
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            rows = _write_parquet_batches(batches, tmp, path, on_batch)
        else:
            opener: Callable[..., Any] = open
            if suffix in (".gz", ".bz2", ".xz"):
                        
                opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[suffix]
            with opener(tmp, "wt", encoding="utf-8", newline="") as fh:
                first = True
                for df in batches:
                    if fmt == "jsonl":
                        if len(df):
                            fh.write(df.to_json(orient="records", lines=True, date_format="iso").rstrip("\n") + "\n")
                    else:
                        df.to_csv(fh, index=False, header=first, sep="\t" if fmt == "tsv" else ",", lineterminator="\n")
                    first = False
                    rows += len(df)
                    if on_batch is not None:
                        on_batch(len(df))
    return Path(path), rows


def _write_parquet_batches(batches: Iterable[pd.DataFrame], tmp: Path, path: str | Path,
                           on_batch: Callable[[int], None] | None) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, schema, rows = None, None, 0
    try:
        for df in batches:
            if writer is None:
                table = pa.Table.from_pandas(df, preserve_index=False)
                # a column without any value in the first batch gets a type later batches can fill
                schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema],
                                   metadata=table.schema.metadata)
                table = table.cast(schema)
                writer = pq.ParquetWriter(tmp, schema)
            else:
                promoted = [f.name for f in schema if f.type == pa.string() and f.name in df.columns]
                df = df.assign(**{c: df[c].astype("string") for c in promoted}) if promoted else df
                try:
                    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
                    raise DataError(f"{path}: a later batch of rows does not fit the Parquet column types of the first "
                                    f"({' '.join(str(exc).split())[:120]}); write .csv or .jsonl, or sample fewer rows") from None
            writer.write_table(table)
            rows += len(df)
            if on_batch is not None:
                on_batch(len(df))
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no batch at all: an empty file with no columns
        pq.write_table(pa.table({}), tmp)
    return rows
