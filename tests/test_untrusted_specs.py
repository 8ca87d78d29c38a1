"""A spec from someone else must not choose which secret or which local file is sent to a server,
and no credential may show in anything synthloop prints or writes. Every probe runs the CLI
against a loopback server that records what arrives."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openai")

from conftest import one_line_error, run_cli
from synthloop.llm.secrets import key_env_allowed, redact, redact_url
from synthloop.llm.testing import FakeOpenAIServer
from synthloop.spec import SpecError, loads_spec

AWS = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # a secret that is not an LLM key
PASSWORD = "hunter2-PASSWORD-77"


def spec_text(base_url: str, extra_llm: str = "", few_shot: str = "") -> str:
    return f"""\
name: tickets
rows: 3
seed: 1
llm: {{backend: openai, model: tiny, concurrency: 1, base_url: "{base_url}"{extra_llm}}}
columns:
  - name: priority
    sampler: {{categorical: {{low: 0.5, high: 0.5}}}}
  - name: body
    llm:
      prompt: "A {{{{ priority }}}} priority support message."
{few_shot}"""


def every_byte_written(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# -- which secret: api_key_env ----------------------------------------------------------------------
def test_a_spec_cannot_send_a_non_api_key_variable(tmp_path: Path) -> None:
    with FakeOpenAIServer() as srv:
        spec = tmp_path / "s.yaml"
        spec.write_text(spec_text(srv.base_url, ", api_key_env: AWS_SECRET_ACCESS_KEY"))
        r = run_cli("generate", str(spec), "-o", str(tmp_path / "out" / "t.csv"), "--no-cache",
                    env={"AWS_SECRET_ACCESS_KEY": AWS})
        line = one_line_error(r)
        assert srv.requests == [] and srv.auth_headers == []  # nothing was sent at all
    assert "s.yaml:4: llm.api_key_env: AWS_SECRET_ACCESS_KEY does not look like an API-key variable" in line
    assert "--api-key-env AWS_SECRET_ACCESS_KEY" in line and AWS not in r.stderr
    assert not (tmp_path / "out").exists()
    # `synthloop prompt` loads the same spec the same way
    line = one_line_error(run_cli("prompt", str(spec), "--no-run", env={"AWS_SECRET_ACCESS_KEY": AWS}))
    assert "llm.api_key_env" in line


def test_the_user_can_name_any_variable_on_the_command_line(tmp_path: Path) -> None:
    with FakeOpenAIServer() as srv:
        spec = tmp_path / "s.yaml"
        spec.write_text(spec_text(srv.base_url, ", api_key_env: AWS_SECRET_ACCESS_KEY"))
        r = run_cli("generate", str(spec), "-o", str(tmp_path / "t.csv"), "--no-cache",
                    "--api-key-env", "TEAM_LLM_TOKEN", env={"AWS_SECRET_ACCESS_KEY": AWS, "TEAM_LLM_TOKEN": "tok-123"})
        assert r.returncode == 0, r.stderr
        assert set(srv.auth_headers) == {"Bearer tok-123"}  # the user's variable, not the spec's
    spec.write_text(spec_text("http://127.0.0.1:9/v1", ", api_key_env: MYCO_API_KEY"))
    assert loads_spec(spec.read_text()).llm.api_key_env == "MYCO_API_KEY"  # *_API_KEY names are fine alone


def test_a_targets_file_cannot_pick_the_judges_secret(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(spec_text("http://127.0.0.1:9/v1"))
    targets = tmp_path / "targets.yaml"
    targets.write_text("metrics: {judge_pass_rate: {min: 0.5}}\njudge_llm:\n  backend: openai\n  model: big\n"
                       "  api_key_env: AWS_SECRET_ACCESS_KEY\n")
    line = one_line_error(run_cli("refine", str(spec), "--targets", str(targets), "-o", str(tmp_path / "r.csv"),
                                  env={"AWS_SECRET_ACCESS_KEY": AWS}))
    assert "targets.yaml:5: judge_llm.api_key_env: AWS_SECRET_ACCESS_KEY does not look like" in line


# -- which files: few-shot seeds ----------------------------------------------------------------------
FEW_SHOT = "      few_shot: {{file: {file}, k: 2}}\n"


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    p = tmp_path / "outside.csv"
    p.write_text("body\nSECRET-ROW-1 from the user's home\nSECRET-ROW-2 from the user's home\n")
    return p


@pytest.mark.parametrize("how", ["relative", "absolute", "symlink"])
def test_a_seed_file_outside_the_spec_folder_is_refused(tmp_path: Path, outside: Path, how: str) -> None:
    folder = tmp_path / "specs" / "team"
    folder.mkdir(parents=True)
    name = {"relative": "../../outside.csv", "absolute": str(outside), "symlink": "seeds.csv"}[how]
    if how == "symlink":
        (folder / "seeds.csv").symlink_to(outside)
    with FakeOpenAIServer() as srv:
        spec = folder / "s.yaml"
        spec.write_text(spec_text(srv.base_url, few_shot=FEW_SHOT.format(file=name)))
        line = one_line_error(run_cli("generate", str(spec), "-o", str(tmp_path / "t.csv"), "--no-cache"))
        assert srv.requests == []
    assert f"s.yaml:11: columns[1].llm.few_shot.file: seed file {name} lies outside the spec's folder" in line
    assert "--allow-dir" in line and not (tmp_path / "t.csv").exists()


def test_allow_dir_lets_a_seed_file_elsewhere_in(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    with FakeOpenAIServer() as srv:
        spec = folder / "s.yaml"
        spec.write_text(spec_text(srv.base_url, few_shot=FEW_SHOT.format(file="../outside.csv")))
        r = run_cli("generate", str(spec), "-o", str(tmp_path / "t.csv"), "--no-cache", "--allow-dir", str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert "SECRET-ROW" in json.dumps(srv.requests[0]["messages"])  # the user allowed it: it is used


def test_seed_files_are_checked_again_when_read(tmp_path: Path, outside: Path) -> None:
    from synthloop.generate.runner import PromptedGenerator

    (tmp_path / "ok.csv").write_text("body\nfine\n")
    spec = loads_spec(spec_text("http://127.0.0.1:9/v1", few_shot=FEW_SHOT.format(file="ok.csv")), base_dir=tmp_path / ".")
    spec.columns[1].llm.few_shot.file = outside.parent.parent / "x.csv"  # changed after loading
    with pytest.raises(SpecError, match=r"columns\[1\]\.llm\.few_shot\.file: seed file .*x.csv lies outside"):
        PromptedGenerator(spec, cache_dir=False).pool(spec.columns[1])


# -- credentials in URLs and echoed keys --------------------------------------------------------------
def test_a_password_in_the_base_url_is_written_nowhere(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    with FakeOpenAIServer() as srv:
        url = srv.base_url.replace("http://", f"http://alice:{PASSWORD}@")
        spec = tmp_path / "s.yaml"
        spec.write_text(spec_text("http://127.0.0.1:9/v1", ", max_retries: 0"))
        r = run_cli("generate", str(spec), "-o", str(out_dir / "t.csv"), "--base-url", url, "--keep-journal",
                    "--cache-dir", str(out_dir / "cache"))
        assert r.returncode == 0, r.stderr
        assert len(srv.requests) == 3  # the URL worked
    summary = json.loads((out_dir / "t.csv.summary.json").read_text())
    assert summary["backend"].startswith("openai:http://***@127.0.0.1:")
    assert PASSWORD not in r.stdout + r.stderr
    assert PASSWORD.encode() not in every_byte_written(out_dir)  # data, summary, journal, cache
    # and when the server cannot be reached, the error does not print it either
    r = run_cli("generate", str(spec), "-o", str(tmp_path / "x.csv"), "--no-cache",
                "--base-url", f"http://alice:{PASSWORD}@127.0.0.1:9/v1")
    line = one_line_error(r)
    assert "http://***@127.0.0.1:9/v1" in line and PASSWORD not in r.stderr


def test_a_password_in_the_spec_url_stays_out_of_refine_outputs(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(f"""\
name: pay
rows: 40
llm: {{backend: openai, model: tiny, base_url: "http://alice:{PASSWORD}@127.0.0.1:9/v1?api_key=QKEY-123456789"}}
columns:
  - name: type
    sampler: {{categorical: {{credit: 0.5, debit: 0.5}}}}
""")
    targets = tmp_path / "t.yaml"
    targets.write_text("shares:\n  type: {credit: 0.7, debit: 0.3}\nbudget: {iterations: 2}\n")
    out = tmp_path / "out" / "pay.csv"
    r = run_cli("refine", str(spec), "--targets", str(targets), "-o", str(out))
    assert r.returncode == 0, r.stderr
    written = every_byte_written(tmp_path / "out")
    assert b"http://***@127.0.0.1:9/v1?api_key=***" in written  # history/log keep the spec, redacted
    for secret in (PASSWORD, "QKEY-123456789"):
        assert secret not in r.stdout + r.stderr and secret.encode() not in written


def test_an_error_body_that_echoes_the_key_is_redacted(tmp_path: Path) -> None:
    key = "sk-live-0123456789abcdefghij"
    with FakeOpenAIServer(echo_auth=400) as srv:
        spec = tmp_path / "s.yaml"
        spec.write_text(spec_text(srv.base_url))
        r = run_cli("generate", str(spec), "-o", str(tmp_path / "t.csv"), "--no-cache", env={"OPENAI_API_KEY": key})
        assert srv.auth_headers[0] == f"Bearer {key}"  # the server did get (and echo) it
    line = one_line_error(r)
    assert "answered HTTP 400" in line and "Authorization: Bearer ***" in line
    assert key not in r.stderr and key[:12] not in r.stderr


# -- the helpers themselves ---------------------------------------------------------------------------
def test_key_variable_names_a_file_may_use() -> None:
    assert key_env_allowed("OPENAI_API_KEY") and key_env_allowed("MISTRAL_API_KEY")
    for name in ("AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "HOME", "_API_KEY", "openai_api_key", "X_API_KEY_2", ""):
        assert not key_env_allowed(name), name


def test_redaction_covers_urls_fragments_and_auth_headers() -> None:
    assert redact_url("https://u:p@host:8/v1?key=abc&x=1") == "https://***@host:8/v1?key=***&x=1"
    assert redact_url("http://localhost:8000/v1") == "http://localhost:8000/v1" and redact_url(None) is None
    key = "sk-abcdefghijklmnopqrstuvwxyz"
    text = f"got {key[:14]}... in header; auth={key}; Authorization: Basic dXNlcjpwYXNz; see http://bob:pw@x/"
    out = redact(text, [key])
    assert "abcdefgh" not in out and "dXNlcjpwYXNz" not in out and "bob:pw" not in out
    assert out.startswith("got ***...")
    assert redact("could not run; user u, password pw", ["u", "pw"]) == "could not run; user ***, password ***"


def test_refine_may_add_few_shot_files_from_its_own_work_folder(tmp_path: Path) -> None:
    from synthloop.generate.runner import PromptedGenerator
    from synthloop.refine.actions import AddFewShot

    (tmp_path / "specs").mkdir()
    spec = loads_spec(spec_text("http://127.0.0.1:9/v1"), base_dir=tmp_path / "specs")
    work = tmp_path / "work"
    work.mkdir()
    AddFewShot(column="body", examples=[{"body": "short note"}, {"body": "longer note"}], file=str(work / "fs.csv")).apply(spec)
    copy = spec.model_copy(deep=True)  # the refine engine works on a deep copy
    pool = PromptedGenerator(copy, cache_dir=False).pool(copy.columns[1])
    assert pool is not None and len(pool.examples) == 2
