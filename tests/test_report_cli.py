"""`synthloop report`: writes the HTML and the JSON beside it; bad input exits 2 with one line."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd

CLI = [sys.executable, "-c", "from synthloop.cli import main; main()"]


def _write(tmp_path, n=400):
    rng = np.random.default_rng(1)
    for name in ("real", "synth", "hold"):
        pd.DataFrame({"x": rng.normal(size=n), "g": rng.choice(["u", "v", "w"], n), "y": rng.choice(["0", "1"], n)}).to_csv(tmp_path / f"{name}.csv", index=False)


def test_report_command_writes_html_and_json(tmp_path):
    _write(tmp_path)
    out = tmp_path / "out" / "report.html"
    run = subprocess.run(CLI + ["report", str(tmp_path / "real.csv"), str(tmp_path / "synth.csv"), "--holdout", str(tmp_path / "hold.csv"),
                                "--target", "y", "--protected", "g", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["utility"]["target"] == "y" and data["fairness"][0]["attribute"] == "g"
    assert "Quality score" in run.stdout and out.read_text().startswith("<!DOCTYPE html>")


def test_report_command_rejects_an_unknown_target_with_exit_code_2(tmp_path):
    _write(tmp_path, 50)
    run = subprocess.run(CLI + ["report", str(tmp_path / "real.csv"), str(tmp_path / "synth.csv"), "--target", "nope",
                                "-o", str(tmp_path / "r.html")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "--target nope" in (run.stdout + run.stderr) and "Traceback" not in run.stderr
