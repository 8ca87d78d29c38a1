"""Durable state of a run: the journal of finished rows (resume), the lock that keeps two runs off
one output, and the response cache (reruns).

The journal is JSONL next to the output: a header naming the run's fingerprint, then one line per
finished row. `Journal.append` writes the whole line (newline included), flushes and fsyncs before
it returns, and the runner counts a row as done only after that return; so a crash (kill -9, power
loss) can at worst leave an unterminated or unreadable *last* line, which was never a finished row:
`Journal.load` drops it with a warning. Any other bad line cannot come from a crash (someone edited
or mixed up files), so loading stops with the file and line number and changes nothing. The cache
is SQLite keyed by a hash of prompt, schema, model, seed and sampling settings, so a rerun with the
same seed sends nothing to the model.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from synthloop.spec.errors import GenerationError

JOURNAL_VERSION = 1


def journal_path_for(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".journal.jsonl")


class JournalWarning(UserWarning):
    """Something in a journal was dropped on resume (a torn last line); the run goes on."""


def _json_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_problem(rec: Any) -> str | None:
    """What is wrong with one row record of a journal, or None (the shape the runner writes)."""
    if not isinstance(rec, dict):
        return f"a record must be a JSON object, not {type(rec).__name__}"
    row = rec.get("row")
    if not isinstance(row, int) or isinstance(row, bool) or row < 0:
        return "'row' must be a non-negative integer" if "row" in rec else "the record has no 'row'"
    status = rec.get("status")
    if status == "ok":
        if not isinstance(rec.get("values"), dict) or not all(isinstance(k, str) for k in rec["values"]):
            return "a finished row needs 'values', an object of column values"
    elif status == "failed":
        if not isinstance(rec.get("error", ""), str) or not isinstance(rec.get("column", ""), (str, type(None))):
            return "a failed row's 'error' and 'column' must be text"
    else:
        return "'status' must be \"ok\" or \"failed\""
    rnd = rec.get("round", 0)
    if not isinstance(rnd, int) or isinstance(rnd, bool) or rnd < 0:
        return "'round' must be a non-negative integer"
    alts = rec.get("alternates", {})
    if not isinstance(alts, dict) or not all(isinstance(v, list) and all(isinstance(t, str) for t in v)
                                             for v in alts.values()):
        return "'alternates' must be an object of lists of texts"
    stats = rec.get("stats", {})
    if not isinstance(stats, dict) or not all(_json_number(v) for v in stats.values()):
        return "'stats' must be an object of numbers"
    return None


class Journal:
    """The journal of one output; `load` reads it (changing nothing), `open` appends to it."""

    def __init__(self, path: str | Path, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self._fh: Any = None
        self._lock = threading.Lock()
        self._good_end: int | None = None  # bytes to keep when a torn last line was dropped
        self.warnings: list[str] = []
        self.lines: dict[int, int] = {}  # row -> line number of its latest record

    def corrupt(self, lineno: int, what: str) -> GenerationError:
        """The error for a bad line: file and line, what is wrong, and the user's two ways out."""
        return GenerationError(
            f"{self.path}:{lineno}: {what}; the journal was left as it is: fix or delete that line, or pass "
            f"--fresh to start over (its finished rows are then generated again)"
        )

    def load(self, n_rows: int | None = None) -> dict[int, dict[str, Any]]:
        """Latest record per row from an earlier, interrupted run of the same spec (empty if none).

        Raises GenerationError (file and line) for a corrupt or malformed line anywhere but last,
        or a journal of another run; a torn last line is dropped and reported in `warnings`.
        Reads only: the file changes when `open` appends to it."""
        self.warnings, self.lines, self._good_end = [], {}, None
        if not self.path.exists():
            return {}
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise GenerationError(f"{self.path}: cannot read the journal ({exc.strerror or exc})") from None
        records: dict[int, dict[str, Any]] = {}
        parts = raw.split(b"\n")  # every part but the last had its newline
        entries: list[tuple[int, int, bytes, bool]] = []  # line number, byte offset, text, terminated
        pos = 0
        for k, part in enumerate(parts):
            if part.strip():
                entries.append((k + 1, pos, part, k < len(parts) - 1))
            pos += len(part) + 1
        header_seen = False
        for j, (lineno, start, line, terminated) in enumerate(entries):
            try:
                rec = json.loads(line)
                bad = None if terminated else "the line is not terminated"
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                rec, bad = None, f"not a JSON line ({str(exc).split(':')[0]})"
            if bad is not None:
                if j == len(entries) - 1:  # a crash mid-append: never a finished row (module docstring)
                    self._good_end = start
                    self.warnings.append(f"{self.path}:{lineno}: dropped an unfinished last line (a run stopped "
                                         f"while writing it); that row is generated again")
                    break
                raise self.corrupt(lineno, bad)
            if not header_seen:
                if not isinstance(rec, dict) or "journal" not in rec:
                    raise self.corrupt(lineno, "the first line is not a journal header")
                if rec.get("journal") != JOURNAL_VERSION or not isinstance(rec.get("fingerprint"), str):
                    raise self.corrupt(lineno, f"unknown journal header (version {rec.get('journal')!r})")
                if rec["fingerprint"] != self.fingerprint:
                    raise GenerationError(
                        f"{self.path}: journal of a different run (spec, row count or model changed); "
                        f"pass --fresh to discard it, or restore the spec it was written for"
                    )
                header_seen = True
                continue
            problem = "a second journal header" if isinstance(rec, dict) and "journal" in rec else record_problem(rec)
            if problem is None and n_rows is not None and rec["row"] >= n_rows:
                problem = f"row {rec['row']} is outside this run's {n_rows} rows"
            if problem is not None:
                raise self.corrupt(lineno, f"malformed record: {problem}")
            records[rec["row"]] = rec
            self.lines[rec["row"]] = lineno
        return records

    def open(self) -> None:
        """Append from now on (dropping a torn last line that `load` reported first)."""
        if self._good_end is not None and self.path.exists():
            with open(self.path, "r+b") as fh:
                fh.truncate(self._good_end)
                fh.flush()
                os.fsync(fh.fileno())
            self._good_end = None
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        if new:
            self._write({"journal": JOURNAL_VERSION, "fingerprint": self.fingerprint})

    def _write(self, rec: dict[str, Any]) -> None:
        # the whole line, then flush and fsync: only after this returns does the row count as done
        self._fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._write(rec)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def remove(self) -> None:
        self.close()
        if self.path.exists():
            self.path.unlink()


def lock_path_for(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".lock")


class RunLock:
    """An exclusive lock on one output for the length of a run (fcntl.flock on `<out>.lock`), so a
    second run on the same output is refused instead of both appending to one journal. The lock
    file is removed on release; the inode check makes that safe against a run that opened the old
    file just before. Where fcntl is missing (Windows) runs are not locked."""

    def __init__(self, path: str | Path, what: str = "output") -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = ""
                try:
                    pid = os.read(fd, 32).decode("ascii", "replace").strip()
                    holder = f" (process {pid})" if pid.isdigit() else ""
                except OSError:
                    pass
                os.close(fd)
                raise GenerationError(
                    f"{self.path}: another run{holder} is writing this {self.what}; wait for it to finish "
                    f"or choose another output"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder before us removed the file after we opened it: try again
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing drops the lock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def default_cache_dir() -> Path:
    env = os.environ.get("SYNTHLOOP_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "synthloop"


class ResponseCache:
    """SQLite map from request hash to the model's raw answer; safe across threads and processes."""

    def __init__(self, directory: str | Path | None = None) -> None:
        d = Path(directory) if directory else default_cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        self.path = d / "llm-cache.sqlite"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT text FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return row[0]

    def put(self, key: str, text: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers (key, text) VALUES (?, ?)", (key, text))

    def close(self) -> None:
        with self._lock:
            self._db.close()
