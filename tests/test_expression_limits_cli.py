"""The expression and template probes of the untrusted-inputs issue through the command line:
exit 2, one `error:` line naming the file and place, no traceback, nothing written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def run_cli(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **({"SYNTHLOOP_CACHE_DIR": str(cache)} if cache else {})}
    return subprocess.run([sys.executable, "-m", "synthloop.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """The spec's folder: after a refused run it holds the spec and nothing else."""
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


EXPR_SPEC = """\
name: probe
rows: 5
seed: 1
columns:
  - name: n
    sampler: {{uniform: {{min: 1, max: 9}}}}
  - name: derived
    expression: {expression}
"""


@pytest.mark.parametrize("expression, fragment", [
    ("n < 10**10**10", "too large"),
    ("concat('a' * 10**9, n)", "repeating text"),
    ("+".join(["n"] * 10_000), "nested too deeply"),
    ("-" * 60_000 + "n", "nested too deeply"),
])
def test_generate_refuses_a_spec_expression_that_would_hang(tmp_path: Path, work: Path, expression: str,
                                                            fragment: str) -> None:
    spec = work / "spec.yaml"
    spec.write_text(EXPR_SPEC.format(expression=json.dumps(expression)))
    line = one_line_error(run_cli("generate", str(spec), "-o", str(work / "out.csv"), cache=tmp_path / "cache"))
    assert f"{spec}:8: columns[1].expression: " in line and fragment in line
    assert len(line) < 500
    assert sorted(p.name for p in work.iterdir()) == ["spec.yaml"]


TEMPLATE_SPEC = """\
name: probe
rows: 3
seed: 1
llm: {{backend: openai, model: tiny, base_url: "{url}"}}
columns:
  - name: kind
    sampler: {{categorical: {{a: 0.5, b: 0.5}}}}
  - name: text
    llm:
      prompt: {prompt}
"""


@pytest.mark.parametrize("prompt, fragment", [
    ("A {{ kind }} note {{ range(10**9) }}", "range(1000000000)"),
    ('A {{ kind }} note {{ "a" * 10**10 }}', "repeating a value"),
    ("A {{ kind }} note {{ 10**(10**10) }}", "too large"),
])
def test_generate_refuses_a_prompt_template_that_would_hang(tmp_path: Path, work: Path, prompt: str,
                                                            fragment: str) -> None:
    pytest.importorskip("openai")
    from synthloop.llm.testing import FakeOpenAIServer

    spec = work / "spec.yaml"
    with FakeOpenAIServer() as srv:
        spec.write_text(TEMPLATE_SPEC.format(url=srv.base_url, prompt=json.dumps(prompt)))
        line = one_line_error(run_cli("generate", str(spec), "-o", str(work / "out.csv"), cache=tmp_path / "cache"))
    assert f"{spec}: columns[1].llm.prompt: template refused by the sandbox: " in line and fragment in line
    assert sorted(p.name for p in work.iterdir()) == ["spec.yaml"]  # no data, summary or journal


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "real.csv"
    pd.DataFrame({"age": rng.integers(18, 90, 120), "income": rng.normal(50_000, 9_000, 120).round(2)}).to_csv(path, index=False)
    return path


def test_fit_refuses_a_schema_constraint_that_would_hang(tmp_path: Path, table: Path) -> None:
    schema = tmp_path / "schema.yaml"
    schema.write_text("constraints:\n  - {type: expression, expression: 'age < 10**10**10'}\n")
    model = tmp_path / "m.npz"
    line = one_line_error(run_cli("fit", str(table), "--schema", str(schema), "-o", str(model), "--model", "copula"))
    assert f"{schema}: constraints[0]: constraint expression 'age < 10**10**10'" in line and "too large" in line
    assert not model.exists()


def test_sample_refuses_a_model_header_constraint_that_would_hang(tmp_path: Path, table: Path) -> None:
    from synthloop.synthesizers import GaussianCopulaSynthesizer

    model = tmp_path / "m.npz"
    GaussianCopulaSynthesizer(random_state=0).fit(pd.read_csv(table), constraints=["age >= 0"]).save(model)
    with np.load(model, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays.pop("__header__")))
    header["constraints"][0]["expression"] = "age < " + "+".join(["1"] * 10_000)  # RecursionError before
    with open(model, "wb") as fh:
        np.savez_compressed(fh, __header__=np.array(json.dumps(header)), **arrays)
    out = tmp_path / "s.csv"
    line = one_line_error(run_cli("sample", str(model), "-n", "10", "-o", str(out)))
    assert f"{model}: constraints[0]: constraint expression" in line and "nested too deeply" in line
    assert not out.exists()
