"""Issue 13, items 4, 6 and 9 through the command line: user text prints literally (no terminal markup),
damaged input files are one line and exit 2, and the warnings a user needs are printed."""
import gzip
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthloop.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr and "Aborted" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture()
def bracket_table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "data.csv"
    pd.DataFrame({"[/x]": rng.integers(0, 50, 60), "[red]c": rng.choice(["a", "b"], 60), "y": rng.normal(size=60)}
                 ).to_csv(path, index=False)
    return path


# -- item 4: no markup interpretation -----------------------------------------------------------
def test_column_names_that_look_like_markup_fit_sample_and_print_literally(tmp_path, bracket_table):
    model = tmp_path / "m.npz"
    proc = run("fit", str(bracket_table), "-o", str(model), "--model", "copula")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and model.exists()
    proc = run("schema", str(bracket_table))
    assert proc.returncode == 0 and "[/x]" in proc.stdout and "[red]c" in proc.stdout
    proc = run("sample", str(model), "-n", "5", "-o", str(tmp_path / "o.csv"), "-c", "[red]c=a")
    assert proc.returncode == 0, proc.stderr
    assert (pd.read_csv(tmp_path / "o.csv")["[red]c"] == "a").all()


def test_a_condition_that_looks_like_markup_is_one_literal_line(tmp_path, bracket_table):
    model = tmp_path / "m.npz"
    run("fit", str(bracket_table), "-o", str(model), "--model", "copula")
    msg = one_line_error(run("sample", str(model), "-n", "5", "-o", str(tmp_path / "o.csv"), "-c", "[/foo]=1"))
    assert "unknown column '[/foo]'" in msg and "[/x], [red]c, y" in msg
    assert not (tmp_path / "o.csv").exists()


def test_a_file_name_that_looks_like_markup_is_reported_as_is(tmp_path):
    msg = one_line_error(run("fit", str(tmp_path / "[red]x.csv"), "-o", str(tmp_path / "m.npz")))
    assert "[red]x.csv: file not found" in msg


def test_warnings_about_columns_print_literally(tmp_path):
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"[bold]x[/]": ["1", "2", "three", "4"] * 10, "y": range(40)}).to_csv(path, index=False)
    proc = run("fit", str(path), "-o", str(tmp_path / "m.npz"), "--model", "copula")
    assert proc.returncode == 0, proc.stderr
    assert "warning: column '[bold]x[/]' mixes numbers and text" in proc.stderr


def test_the_install_hint_prints_with_its_brackets(tmp_path):
    code = ("import typer\nfrom synthloop import cli\nfrom synthloop.errors import SynthloopError\n"
            "@cli.app.command('boom')\ndef boom() -> None:\n"
            "    raise SynthloopError(\"the embedded backend needs llama-cpp-python; install it with pip install 'synthloop[llm]'\")\n"
            "import sys\nsys.argv = ['synthloop', 'boom']\ncli.main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert one_line_error(proc).endswith("pip install 'synthloop[llm]'")


# -- item 6: damaged inputs -------------------------------------------------------------------------
def _table(n: int = 5000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"a": np.arange(n), "b": rng.choice(["x", "y", "z"], n), "c": rng.normal(size=n).round(3)})


def test_a_truncated_gzip_csv_is_one_line_with_the_rows_read(tmp_path):
    raw = gzip.compress(_table().to_csv(index=False).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(raw[: len(raw) // 2])
    rows = zlib.decompressobj(wbits=31).decompress(raw[: len(raw) // 2]).count(b"\n") - 1
    msg = one_line_error(run("fit", str(path), "-o", str(tmp_path / "m.npz"), "--model", "copula"))
    assert f"cut.csv.gz: compressed data ends early after {rows:,} rows" in msg
    assert 0 < rows < 5000
    assert not (tmp_path / "m.npz").exists()


def test_a_truncated_gzip_jsonl_and_a_non_gzip_file_named_gz_are_one_line(tmp_path):
    raw = gzip.compress(_table().to_json(orient="records", lines=True).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(raw[: len(raw) // 3])
    assert "compressed data ends early after" in one_line_error(run("schema", str(tmp_path / "cut.jsonl.gz")))
    (tmp_path / "plain.csv.gz").write_text("a,b\n1,2\n")
    assert "is not gzip-compressed" in one_line_error(run("schema", str(tmp_path / "plain.csv.gz")))


def test_a_truncated_parquet_file_is_one_line(tmp_path):
    full = tmp_path / "full.parquet"
    _table().to_parquet(full)
    raw = full.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(raw[: len(raw) // 2])
    msg = one_line_error(run("fit", str(tmp_path / "cut.parquet"), "-o", str(tmp_path / "m.npz")))
    assert "cut.parquet: cannot parse as parquet" in msg and "cut short" in msg
    assert not (tmp_path / "m.npz").exists()


def test_bad_utf8_inside_a_gzip_csv_names_the_line(tmp_path):
    (tmp_path / "bad.csv.gz").write_bytes(gzip.compress(b"a,b\n1,x\n2,caf\xe9\n"))
    msg = one_line_error(run("fit", str(tmp_path / "bad.csv.gz"), "-o", str(tmp_path / "m.npz")))
    assert "line 3 is not valid utf-8" in msg


def test_damaged_compressed_files_never_escape_as_tracebacks(tmp_path):
    from synthloop.errors import DataError
    from synthloop.io import read_table

    raw = gzip.compress(_table(2000).to_csv(index=False).encode())
    rng = np.random.default_rng(3)
    for i in range(40):
        b = bytearray(raw[: rng.integers(1, len(raw))] if i % 2 else raw)
        for _ in range(int(rng.integers(0, 4))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        path = tmp_path / f"f{i}.csv.gz"
        path.write_bytes(bytes(b))
        try:
            read_table(path)
        except DataError:
            pass


# -- items 6 and 9: warnings and the scaled default budget ----------------------------------------------
def test_a_one_row_table_warns_that_rows_will_be_copies(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("a,b\n1,x\n")
    proc = run("fit", str(path), "-o", str(tmp_path / "m.npz"), "--model", "copula")
    assert proc.returncode == 0, proc.stderr
    assert "warning: the table has only 1 row" in proc.stderr and "copy" in proc.stderr


def test_dates_in_several_formats_warn_instead_of_silently_becoming_categories(tmp_path):
    path = tmp_path / "dates.csv"
    when = ["2021-03-04", "04/03/2021", "March 4, 2021", "4 Mar 2021", "2021/03/04 10:00", "13.03.2021"] * 10
    pd.DataFrame({"when": when, "x": range(60)}).to_csv(path, index=False)
    proc = run("fit", str(path), "-o", str(tmp_path / "m.npz"), "--model", "copula")
    assert proc.returncode == 0, proc.stderr
    assert "warning: column 'when' holds dates written in 6 different formats" in proc.stderr


def test_one_date_format_gives_no_warning(tmp_path):
    path = tmp_path / "dates.csv"
    pd.DataFrame({"when": pd.date_range("2021-01-01", periods=60).strftime("%d/%m/%Y"), "x": range(60)}).to_csv(path, index=False)
    proc = run("schema", str(path))
    assert proc.returncode == 0 and "warning" not in proc.stderr and "datetime" in proc.stdout


def test_the_default_budget_grows_with_the_table_and_is_capped():
    from synthloop.synthesizers.factory import AUTO_BUDGET_MAX_S, default_budget, make_synthesizer

    assert default_budget(1, 3) == default_budget(40, 3) == 10
    assert default_budget(200, 500) < 120 and default_budget(4000, 15) < 60
    assert default_budget(32561, 15) == default_budget(10**7, 100) == AUTO_BUDGET_MAX_S
    sizes = [(10, 5), (1000, 10), (5000, 40), (20000, 20), (100000, 30)]
    assert [default_budget(*s) for s in sizes] == sorted(default_budget(*s) for s in sizes)
    assert make_synthesizer("auto", 0, shape=(4000, 15)).max_seconds == default_budget(4000, 15)
    assert make_synthesizer("auto", 0, max_seconds=7).max_seconds == 7


def test_auto_takes_the_copula_for_tiny_or_wide_tables_and_the_autoregressive_model_otherwise():
    from synthloop.synthesizers.factory import make_synthesizer

    assert make_synthesizer("auto", 0, shape=(200, 500)).name == "copula"  # issue 13: 150-270 s before
    assert make_synthesizer("auto", 0, shape=(1, 3)).name == "copula"
    assert make_synthesizer("auto", 0, shape=(4000, 15)).name == "autoregressive"
    assert make_synthesizer("auto", 0, epochs=3, shape=(40, 3)).name == "autoregressive"  # asked for epochs


def test_fit_with_the_default_model_says_what_it_chose_and_the_budget_it_used(tmp_path):
    rng = np.random.default_rng(0)
    small, enough = tmp_path / "small.csv", tmp_path / "enough.csv"
    pd.DataFrame({"g": rng.choice(["a", "b"], 40), "v": rng.normal(size=40)}).to_csv(small, index=False)
    pd.DataFrame({"g": rng.choice(["a", "b"], 600), "v": rng.normal(size=600)}).to_csv(enough, index=False)
    proc = run("fit", str(small), "-o", str(tmp_path / "s.npz"))
    assert proc.returncode == 0, proc.stderr
    assert "--model auto chose copula: fewer than 500 rows" in proc.stdout
    proc = run("fit", str(enough), "-o", str(tmp_path / "e.npz"), "--max-seconds", "5")
    assert proc.returncode == 0, proc.stderr
    # issue 17: auto measures the copula and the autoregressive model (its budget 5 s) and says which won by how much
    assert "--model auto chose" in proc.stdout and "autoregressive" in proc.stdout and "(budget 5 s)" in proc.stdout
    assert "quality on 120 validation rows" in proc.stdout
    proc = run("fit", str(small), "-o", str(tmp_path / "a.npz"), "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    assert "model autoregressive fitted on 40 rows" in proc.stdout
    assert "(time budget 10 s, scaled to the table)" in proc.stdout
