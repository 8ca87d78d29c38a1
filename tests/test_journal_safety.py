"""The journal of an interrupted run, damaged or shared: a corrupt middle line stops the run and
changes nothing, a torn last line is dropped with a warning, malformed records are refused with
their line number, and a second run on the same output is refused while the first holds it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openai")

from conftest import one_line_error, run_cli
from synthloop.generate.runner import PromptedGenerator, summary_path_for
from synthloop.generate.store import Journal, RunLock, journal_path_for, lock_path_for
from synthloop.llm.testing import FakeOpenAIServer
from synthloop.spec import GenerationError, load_spec

SPEC = """\
name: tickets
rows: 6
seed: 2
llm: {{backend: openai, model: tiny, concurrency: 1, base_url: "{url}"}}
columns:
  - name: priority
    sampler: {{categorical: {{low: 0.5, high: 0.5}}}}
  - name: body
    llm:
      prompt: "A {{{{ priority }}}} priority support message."
"""


@pytest.fixture()
def server():
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture()
def finished(tmp_path: Path, server: FakeOpenAIServer) -> tuple[Path, Path, list[str]]:
    """A spec, its output path and the lines of a journal of all 6 rows (output files removed)."""
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(url=server.base_url))
    out = tmp_path / "t.csv"
    PromptedGenerator(load_spec(spec), cache_dir=False).generate(out=out, keep_journal=True)
    out.unlink()
    summary_path_for(out).unlink()
    server.requests.clear()
    return spec, out, journal_path_for(out).read_text().splitlines(keepends=True)


def test_a_corrupt_middle_line_stops_the_run_and_touches_nothing(finished, server: FakeOpenAIServer) -> None:
    spec, out, lines = finished
    journal = journal_path_for(out)
    journal.write_text("".join(lines[:3] + ['{"row": 2, "status": "ok", "val\n'] + lines[4:]))
    before = journal.read_bytes()
    line = one_line_error(run_cli("generate", str(spec), "-o", str(out), "--no-cache"))
    assert f"{journal}:4: not a JSON line" in line and "--fresh" in line
    assert journal.read_bytes() == before  # the 3 valid rows after it are still there
    assert not out.exists() and not lock_path_for(out).exists() and server.requests == []


def test_a_torn_last_line_is_dropped_with_a_warning(finished, server: FakeOpenAIServer) -> None:
    spec, out, lines = finished
    journal_path_for(out).write_text("".join(lines[:4]) + lines[4][:25])  # header, rows 0-2, half of row 3
    r = run_cli("generate", str(spec), "-o", str(out), "--no-cache")
    assert r.returncode == 0, r.stderr
    assert f"warning: {journal_path_for(out)}:5: dropped an unfinished last line" in r.stderr
    assert len(server.requests) == 3  # rows 3, 4, 5
    summary = json.loads(r.stdout)
    assert summary["rows_written"] == 6 and summary["resumed_rows"] == 3 and len(summary["journal_warnings"]) == 1


def test_a_malformed_record_is_refused_through_the_cli(finished, server: FakeOpenAIServer) -> None:
    spec, out, lines = finished
    journal = journal_path_for(out)
    journal.write_text("".join(lines[:2]) + '{"status": "ok", "values": {}}\n' + "".join(lines[2:]))
    line = one_line_error(run_cli("generate", str(spec), "-o", str(out), "--no-cache"))
    assert f"{journal}:3: malformed record: the record has no 'row'" in line
    assert server.requests == [] and not out.exists()


def test_a_second_run_on_the_same_output_is_refused(finished, server: FakeOpenAIServer) -> None:
    spec, out, lines = finished
    journal = journal_path_for(out)
    journal.write_text("".join(lines[:3]))
    before = journal.read_bytes()
    with RunLock(lock_path_for(out)):  # the test process plays the first run
        line = one_line_error(run_cli("generate", str(spec), "-o", str(out), "--no-cache"))
        assert f"another run (process {os.getpid()}) is writing this output" in line
        assert journal.read_bytes() == before and not out.exists() and server.requests == []
    assert not lock_path_for(out).exists()  # released and removed
    res = PromptedGenerator(load_spec(spec), cache_dir=False).generate(out=out)
    assert len(res.data) == 6 and res.summary["resumed_rows"] == 2 and not lock_path_for(out).exists()


def test_the_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    journal_path_for(out).write_text("not a journal\n{}\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC.format(url="http://127.0.0.1:9/v1"))
    with pytest.raises(GenerationError, match="t.csv.journal.jsonl:1: not a JSON line"):
        PromptedGenerator(load_spec(spec), cache_dir=False).generate(out=out)
    assert not lock_path_for(out).exists()
    with RunLock(lock_path_for(out)):
        pass  # free again


HEADER = '{"journal": 1, "fingerprint": "fp"}\n'
OK0 = '{"row": 0, "status": "ok", "values": {"body": "x"}}\n'


@pytest.mark.parametrize("line, problem", [
    ('{"status": "ok", "values": {}}', "the record has no 'row'"),
    ('{"row": "1", "status": "ok", "values": {}}', "'row' must be a non-negative integer"),
    ('{"row": 1.5, "status": "ok", "values": {}}', "'row' must be a non-negative integer"),
    ('{"row": true, "status": "ok", "values": {}}', "'row' must be a non-negative integer"),
    ('{"row": -1, "status": "ok", "values": {}}', "'row' must be a non-negative integer"),
    ('{"row": 7, "status": "ok", "values": {}}', "row 7 is outside this run's 6 rows"),
    ('{"row": 1, "status": "ok", "values": [1]}', "a finished row needs 'values'"),
    ('{"row": 1, "status": "maybe"}', "'status' must be"),
    ('{"row": 1, "status": "failed", "error": 3}', "a failed row's 'error' and 'column' must be text"),
    ('{"row": 1, "status": "ok", "values": {}, "round": "2"}', "'round' must be a non-negative integer"),
    ('{"row": 1, "status": "ok", "values": {}, "stats": {"cells": "many"}}', "'stats' must be an object of numbers"),
    ('[1, 2]', "a record must be a JSON object, not list"),
    (HEADER.strip(), "a second journal header"),
])
def test_malformed_records_are_refused_with_their_line_number(tmp_path: Path, line: str, problem: str) -> None:
    for where in ("middle", "last"):  # valid JSON cannot be a torn write: refused even as the last line
        path = tmp_path / f"{where}.jsonl"
        path.write_text(HEADER + OK0 + line + "\n" + (OK0 if where == "middle" else ""))
        with pytest.raises(GenerationError, match=rf"{where}.jsonl:3: malformed record: {problem}"):
            Journal(path, "fp").load(n_rows=6)


def test_resumed_rows_must_hold_this_specs_columns(finished) -> None:
    spec, out, lines = finished
    journal = journal_path_for(out)
    rec = json.loads(lines[2])
    rec["values"]["body"] = ["not", "text"]
    journal.write_text("".join(lines[:2]) + json.dumps(rec) + "\n")
    with pytest.raises(GenerationError, match=r"journal.jsonl:3: malformed record: row \d: 'body' must be text"):
        PromptedGenerator(load_spec(spec), cache_dir=False).generate(out=out)
    del rec["values"]["body"]
    journal.write_text("".join(lines[:2]) + json.dumps(rec) + "\n")
    with pytest.raises(GenerationError, match=r"journal.jsonl:3: malformed record: row \d has no value for 'body'"):
        PromptedGenerator(load_spec(spec), cache_dir=False).generate(out=out)


def test_only_an_unfinished_last_line_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    for tail, dropped in [('{"row": 1, "status": "ok", "values": {}}', True),  # complete JSON, no newline
                          ('{"row": 1, "sta', True), ("\x00\x00\x00\x00", True),  # power loss: zeros
                          ('{"row": 1, "sta\n', True),  # unreadable, even with its newline, when last
                          ('{"row": 1, "sta\n' + OK0, False)]:  # ... but never in the middle
        path.write_text(HEADER + OK0 + tail)
        j = Journal(path, "fp")
        if dropped:
            assert list(j.load()) == [0] and "j.jsonl:3: dropped an unfinished last line" in j.warnings[0]
        else:
            with pytest.raises(GenerationError, match="j.jsonl:3: not a JSON line"):
                j.load()


def test_mutated_journals_give_records_or_a_one_line_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "fuzz.jsonl"
    good = (HEADER + OK0 + OK0.replace('"row": 0', '"row": 1') + '{"row": 2, "status": "failed", "column": "body", "error": "x"}\n').encode()
    for _ in range(400):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            kind, at = int(rng.integers(4)), int(rng.integers(len(data) + 1))
            if kind == 0 and at < len(data):
                data[at] = int(rng.integers(256))  # flip a byte
            elif kind == 1:
                data = data[:at]  # cut
            elif kind == 2:
                data[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 8))).astype(np.uint8))  # insert noise
            else:
                data[at:at] = rng.choice([b"\n", b"{", b"[" * 5000, b'"row": 1e999, ', b"null\n", b'{"row": 9}\n'])
        path.write_bytes(bytes(data))
        try:
            recs = Journal(path, "fp").load(n_rows=6)
        except GenerationError as exc:
            assert "\n" not in str(exc) and "fuzz.jsonl" in str(exc)
        else:
            assert all(isinstance(k, int) and 0 <= k < 6 for k in recs)


def test_ctrl_c_while_writing_the_outputs_keeps_the_journal(finished, monkeypatch) -> None:
    import synthloop.io
    from synthloop.generate.runner import GenerationInterrupted

    spec, out, lines = finished

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthloop.io, "write_table", interrupted)
    with pytest.raises(GenerationInterrupted, match=r"6 of 6 rows are saved in .*t.csv.journal.jsonl; run the same command"):
        PromptedGenerator(load_spec(spec), cache_dir=False).generate(out=out)
    assert journal_path_for(out).read_text().splitlines(keepends=True) == lines and not lock_path_for(out).exists()
