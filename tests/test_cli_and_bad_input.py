"""The CLI end to end, and every kind of bad input the foundation issue lists."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthloop.errors import DataError
from synthloop.io import atomic_path, read_table, write_table


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthloop.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return " ".join(proc.stderr.split())


@pytest.fixture()
def csv(tmp_path, mixed_table):
    path = tmp_path / "real.csv"
    mixed_table.to_csv(path, index=False)
    return path


def test_fit_sample_evaluate_end_to_end(tmp_path, csv):
    model = tmp_path / "m.npz"
    assert run("fit", str(csv), "-o", str(model), "--model", "copula").returncode == 0
    for ext in ("csv", "parquet", "jsonl"):
        outp = tmp_path / f"syn.{ext}"
        proc = run("sample", str(model), "-n", "300", "-o", str(outp), "--seed", "4")
        assert proc.returncode == 0, proc.stderr
        assert len(read_table(outp)) == 300
    cond = tmp_path / "cond.csv"
    assert run("sample", str(model), "-n", "50", "-o", str(cond), "-c", "segment=sme", "-c", "age=30..40").returncode == 0
    got = pd.read_csv(cond)
    assert (got["segment"] == "sme").all() and got["age"].between(30, 40).all()
    rep = tmp_path / "fig.json"
    proc = run("evaluate", str(csv), str(tmp_path / "syn.csv"), "--holdout", str(csv), "--json", str(rep))
    assert proc.returncode == 0, proc.stderr
    fig = json.loads(rep.read_text())
    assert 0.7 < fig["quality_score"] <= 1 and "dcr_share" in fig


def test_help_texts_are_there():
    proc = run("--help")
    assert proc.returncode == 0 and "fit" in proc.stdout and "sample" in proc.stdout
    assert "--max-seconds" in run("fit", "--help").stdout


@pytest.mark.parametrize("content,expected", [
    (None, "file not found"),
    (b"", "file is empty"),
    (b"a,b,c\n", "header but no data rows"),
    (b"a,b\n1,2\n3,4,5\n6,7\n", "line 3 has 3 fields but the header has 2"),
    (b"a,b\n1,x\n2,caf\xe9\n", "line 3 is not valid utf-8"),
])
def test_bad_files_get_one_line_errors_naming_the_line(tmp_path, content, expected):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    msg = one_line_error(run("fit", str(path), "-o", str(tmp_path / "m.npz")))
    assert expected in msg
    assert not (tmp_path / "m.npz").exists()


def test_unknown_condition_column_and_value_exit_2(tmp_path, csv):
    model = tmp_path / "m.npz"
    run("fit", str(csv), "-o", str(model), "--model", "copula")
    assert "unknown column 'nope'" in one_line_error(run("sample", str(model), "-n", "5", "-o", str(tmp_path / "x.csv"), "-c", "nope=1"))
    msg = one_line_error(run("sample", str(model), "-n", "5", "-o", str(tmp_path / "x.csv"), "-c", "segment=gov"))
    assert "'gov' never occurs" in msg and "segment" in msg
    assert not (tmp_path / "x.csv").exists()


def test_unknown_model_and_missing_model_file(tmp_path, csv):
    assert "unknown model 'nope'" in one_line_error(run("fit", str(csv), "-o", str(tmp_path / "m.npz"), "--model", "nope"))
    assert "model file not found" in one_line_error(run("sample", str(tmp_path / "none.npz"), "-o", str(tmp_path / "x.csv")))


def test_mixed_types_warn_and_still_fit(tmp_path):
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"x": ["1", "2", "three", "4"] * 10, "y": range(40)}).to_csv(path, index=False)
    proc = run("fit", str(path), "-o", str(tmp_path / "m.npz"), "--model", "copula")
    assert proc.returncode == 0
    assert "mixes numbers and text" in " ".join(proc.stderr.split())


def test_single_row_and_all_null_column_fit_and_sample(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("a,b,c\n1,x,\n")
    assert run("fit", str(path), "-o", str(tmp_path / "m.npz"), "--model", "copula").returncode == 0
    assert run("sample", str(tmp_path / "m.npz"), "-n", "3", "-o", str(tmp_path / "o.csv")).returncode == 0


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    write_table(pd.DataFrame({"a": [1]}), target)
    assert target.read_text().startswith("a")


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(DataError, match="unknown table format '.xlsx'"):
        read_table(tmp_path / "x.xlsx") if (tmp_path / "x.xlsx").write_text("x") else None


def test_demo_runs_and_reports_where_outputs_went(tmp_path):
    proc = run("demo", "--out", str(tmp_path / "demo"), "--model", "copula")  # the default model: test below
    assert proc.returncode == 0, proc.stderr
    assert "synthetic data:" in proc.stdout and (tmp_path / "demo" / "synthetic.csv").exists()
    assert (tmp_path / "demo" / "report.html").stat().st_size > 10_000
    fig = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert fig["quality_score"] > 0.8


@pytest.mark.slow
def test_demo_default_model_beats_the_copula_on_detection(tmp_path):
    """`make run` shows the default model (autoregressive under its scaled budget): harder to tell from real."""
    proc = run("demo", "--out", str(tmp_path / "auto"))
    assert proc.returncode == 0, proc.stderr
    assert "time budget 46 s" in proc.stdout
    auto = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert run("demo", "--out", str(tmp_path / "copula"), "--model", "copula").returncode == 0
    copula = json.loads((tmp_path / "copula" / "report.json").read_text())
    assert auto["model"] == "autoregressive" and copula["model"] == "copula"
    assert auto["detection_auc"] < copula["detection_auc"] - 0.1
    assert auto["quality_score"] > copula["quality_score"]
