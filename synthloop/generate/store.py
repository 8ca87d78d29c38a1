"""Durable state of a run: the journal of finished rows (resume) and the response cache (reruns).

The journal is JSONL next to the output: a header naming the run's fingerprint, then one line per
finished row, appended and fsync'ed before the row counts as done. A kill -9 can at worst leave a
half-written last line, which loading drops. The cache is SQLite keyed by a hash of prompt, schema,
model, seed and sampling settings, so a rerun with the same seed sends nothing to the model.
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


class Journal:
    def __init__(self, path: str | Path, fingerprint: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self._fh: Any = None
        self._lock = threading.Lock()

    def load(self) -> dict[int, dict[str, Any]]:
        """Latest record per row from an earlier, interrupted run of the same spec (empty if none)."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        good_end = 0
        records: dict[int, dict[str, Any]] = {}
        pos = 0
        for k, line in enumerate(lines):
            end = pos + len(line) + 1
            if not line.strip():
                pos = end
                continue
            try:
                rec = json.loads(line)
                if end > len(raw):  # last line without its newline: not finished writing
                    raise ValueError("unterminated")
            except ValueError:
                break  # a torn last line from a kill; everything before it is intact
            if k == 0 or "journal" in rec:
                if rec.get("fingerprint") != self.fingerprint:
                    raise GenerationError(
                        f"{self.path}: journal of a different run (spec, row count or model changed); "
                        f"pass --fresh to discard it, or restore the spec it was written for"
                    )
            else:
                records[int(rec["row"])] = rec
            good_end = end
            pos = end
        if good_end < len(raw):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
        return records

    def open(self) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        if new:
            self._write({"journal": JOURNAL_VERSION, "fingerprint": self.fingerprint})

    def _write(self, rec: dict[str, Any]) -> None:
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
