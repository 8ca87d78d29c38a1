"""The studio's HTTP API against a real server on a free loopback port: every endpoint, the spec
round trip over the examples, bad uploads, paths that try to leave the folder, jobs and cancel, tokens."""
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from synthloop.spec import load_spec
from synthloop.studio.app import StudioError, create_app
from synthloop.studio.server import BackgroundServer
from synthloop.studio.specio import same_yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    return pd.DataFrame({"age": age, "income": np.round(age * 900 + rng.normal(0, 6000, n), 2),
                         "segment": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
                         "churn": rng.choice(["no", "yes"], n, p=[0.7, 0.3])})


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    shutil.copytree(EXAMPLES / "prompted", root / "examples")
    app = create_app(root)
    with BackgroundServer(app) as url:
        yield url, root


def wait_job(url: str, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = requests.get(f"{url}/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_page_and_its_assets_are_served_by_the_package_without_a_cdn(studio):
    url, _ = studio
    page = requests.get(url + "/")
    assert page.status_code == 200 and "synthloop" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("app.js", "app.css"):
        r = requests.get(f"{url}/static/{asset}")
        assert r.status_code == 200 and len(r.text) > 1000
        assert "https://" not in r.text
    info = requests.get(url + "/api/info").json()
    assert "categorical" in info["kinds"] and "copula" in info["models"] and "quality_score" in info["metrics"]


def test_every_example_spec_opens_and_saves_back_unchanged(studio):
    url, root = studio
    files = requests.get(url + "/api/files").json()
    names = sorted(p.name for p in (EXAMPLES / "prompted").glob("*.yaml"))
    assert sorted(Path(p).name for p in files["specs"] if p.startswith("examples/")) == names
    for name in names:
        opened = requests.get(url + "/api/spec", params={"path": f"examples/{name}"}).json()
        saved = requests.post(url + "/api/spec/save", json={"path": f"examples/saved_{name}", "spec": opened["spec"]})
        assert saved.status_code == 200, saved.text
        original = (EXAMPLES / "prompted" / name).read_text()
        written = (root / "examples" / f"saved_{name}").read_text()
        assert same_yaml(original, written), name
        load_spec(root / "examples" / f"saved_{name}")  # the file `synthloop generate` runs


def test_preview_gives_rows_histograms_dag_and_yaml_without_calling_the_llm(studio):
    url, _ = studio
    opened = requests.get(url + "/api/spec", params={"path": "examples/patient_visits.yaml"}).json()
    res = requests.post(url + "/api/spec/preview", json={"spec": opened["spec"], "path": "examples/patient_visits.yaml"}).json()
    assert res["ok"] and len(res["rows"]) == 10
    assert {"note", "reason", "urgent"} <= set(res["pending"])  # LLM columns and what reads them: on demand
    assert all(r["visit_id"].startswith("V") for r in res["rows"])
    assert sum(res["hist"]["age"]["counts"]) == 1000 and len(res["hist"]["age"]["edges"]) == 21
    assert ["age", "triage"] in res["dag"]["edges"] and ["triage", "urgent"] in res["dag"]["edges"]
    assert yaml.safe_load(res["yaml"])["name"] == "patient_visits"


def test_llm_columns_preview_on_demand_with_the_given_backend(tmp_path):
    from synthloop.llm.base import BackendBase, LLMResult

    class Echo(BackendBase):
        name = model_id = "echo"

        def complete_one(self, request):
            return LLMResult(text='{"value": "a short note"}' if request.schema else "a short note")

    spec = {"name": "x", "columns": [{"name": "kind", "sampler": {"categorical": {"a": 1}}},
                                     {"name": "note", "llm": {"prompt": "A note about {{ kind }}."}}]}
    with BackgroundServer(create_app(tmp_path, backend=Echo())) as url:
        plain = requests.post(url + "/api/spec/preview", json={"spec": spec}).json()
        assert plain["pending"] == ["note"] and plain["rows"][0]["note"] is None
        llm = requests.post(url + "/api/spec/preview", json={"spec": spec, "llm": True}).json()
        assert llm["ok"] and llm["pending"] == [] and all(r["note"] for r in llm["rows"]), llm


@pytest.mark.parametrize("column, field", [
    ({"name": "fee", "expression": "amount * 0.02"}, "columns[1].expression"),
    ({"name": "fee", "sampler": {"categorical": {"x": "lots", "y": 1}}}, "columns[1].sampler.categorical.x"),
])
def test_a_bad_field_is_named_by_preview_and_save_writes_nothing(studio, column, field):
    url, root = studio
    spec = {"name": "bad", "columns": [{"name": "kind", "sampler": {"categorical": {"a": 1}}}, column]}
    res = requests.post(url + "/api/spec/preview", json={"spec": spec}).json()
    assert not res["ok"] and res["error"]["path"] == field
    saved = requests.post(url + "/api/spec/save", json={"path": "bad.yaml", "spec": spec})
    assert saved.status_code == 400 and saved.json()["field"] == field
    assert not (root / "bad.yaml").exists()


def test_non_string_keys_and_dates_survive_the_trip_through_the_page(studio):
    url, root = studio
    text = ("name: typed\ncolumns:\n- name: code\n  sampler:\n    categorical: {1: 0.5, 2: 0.25, 3.5: 0.25}\n"
            "- name: day\n  sampler:\n    datetime: {start: 2024-01-01, end: 2024-03-31}\n")
    (root / "typed.yaml").write_text(text)
    opened = requests.get(url + "/api/spec", params={"path": "typed.yaml"}).json()
    assert opened["spec"]["columns"][0]["sampler"]["categorical"] == {"__pairs__": [[1, 0.5], [2, 0.25], [3.5, 0.25]]}
    requests.post(url + "/api/spec/save", json={"path": "typed_saved.yaml", "spec": opened["spec"]}).raise_for_status()
    assert yaml.safe_load((root / "typed_saved.yaml").read_text()) == yaml.safe_load(text)


@pytest.mark.parametrize("path", ["../outside.yaml", "/etc/passwd.yaml", "examples/../../outside.yaml", "~/x.yaml",
                                  "a\\..\\..\\x.yaml", "link/escape.yaml"])
def test_paths_that_leave_the_studio_folder_are_refused(studio, path, tmp_path):
    url, root = studio
    if not (root / "link").exists():
        os.symlink(tmp_path, root / "link")
    spec = {"name": "x", "columns": [{"name": "a", "sampler": {"categorical": {"a": 1}}}]}
    r = requests.post(url + "/api/spec/save", json={"path": path, "spec": spec})
    assert r.status_code == 400 and r.json()["field"] == "path", r.text
    assert "folder" in r.json()["error"] or "file name" in r.json()["error"], r.text
    assert requests.get(url + "/api/spec", params={"path": path}).status_code in (400, 404)
    assert not (root.parent / "outside.yaml").exists() and not (tmp_path / "escape.yaml").exists()


def test_run_ids_and_job_params_cannot_name_files_outside(studio):
    url, _ = studio
    assert requests.get(url + "/api/runs/..%2F..%2Fetc/download").status_code == 404
    assert requests.get(url + "/runs/.hidden/report").status_code == 404
    r = requests.post(url + "/api/jobs", json={"kind": "fit", "params": {"table": "../../etc/passwd.csv"}})
    assert r.status_code == 400 and r.json()["field"] == "table"
    r = requests.post(url + "/api/jobs", json={"kind": "shell", "params": {}})
    assert r.status_code == 400 and r.json()["field"] == "kind"


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"hello", "not a table file"),
    ("image.parquet", b"\x89PNG\r\n\x1a\n" + bytes(200), "parquet"),
    ("empty.csv", b"a,b,c\n", "no data rows"),
    ("nothing.csv", b"", "empty"),
    ("latin.csv", "name,city\nJos\xe9,M\xe1laga\n".encode("latin-1"), "not valid utf-8"),
    ("../evil.csv", b"a\n1\n", "file name"),
    ("..\\evil.csv", b"a\n1\n", "file name"),
    (".hidden.csv", b"a\n1\n", "file name"),
])
def test_bad_uploads_are_refused_with_the_reason_and_leave_nothing(studio, name, content, message):
    url, root = studio
    r = requests.post(url + "/api/tables", files={"file": (name, io.BytesIO(content), "text/csv")})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"].lower() and r.json()["field"] == "file"
    left = [p.name for p in (root / "uploads").glob("*")] if (root / "uploads").exists() else []
    assert not any(p.startswith(".") or p == Path(name).name for p in left), left
    assert not (root.parent / "evil.csv").exists()


def test_upload_fit_copula_sample_with_a_condition_and_download(studio):
    url, root = studio
    buf = io.BytesIO()
    _table().to_csv(buf, index=False)
    up = requests.post(url + "/api/tables", files={"file": ("customers.csv", buf.getvalue(), "text/csv")})
    assert up.status_code == 200, up.text
    view = up.json()
    assert view["path"] == "uploads/customers.csv" and view["rows"] == 300
    kinds = {c["name"]: c["kind"] for c in view["columns"]}
    assert kinds["age"] == "numerical" and kinds["segment"] == "categorical"
    assert requests.get(url + "/api/tables/schema", params={"path": "uploads/customers.csv"}).json()["rows"] == 300

    job = requests.post(url + "/api/jobs", json={"kind": "fit", "params": {
        "table": "uploads/customers.csv", "model": "copula", "seed": 0, "overrides": {"churn": {"kind": "categorical"}}}}).json()
    fit = wait_job(url, job["id"])
    assert fit["status"] == "done", fit
    assert fit["result"]["model"] == "models/customers-copula.npz" and (root / fit["result"]["model"]).exists()

    job = requests.post(url + "/api/jobs", json={"kind": "sample", "params": {
        "model": fit["result"]["model"], "table": "uploads/customers.csv", "rows": 200, "seed": 3,
        "conditions": [{"column": "segment", "value": "c"}]}}).json()
    run = wait_job(url, job["id"])
    assert run["status"] == "done", run
    rid = run["result"]["id"]
    csv = requests.get(f"{url}/api/runs/{rid}/download", params={"format": "csv"})
    assert csv.status_code == 200 and "attachment" in csv.headers["content-disposition"]
    df = pd.read_csv(io.StringIO(csv.text))
    assert len(df) == 200 and set(df["segment"]) == {"c"}
    pq = requests.get(f"{url}/api/runs/{rid}/download", params={"format": "parquet"})
    assert pd.read_parquet(io.BytesIO(pq.content)).equals(pd.read_parquet(root / "runs" / rid / "data.parquet"))
    assert requests.get(f"{url}/api/runs/{rid}/download", params={"format": "exe"}).status_code == 400
    assert rid in [r["id"] for r in requests.get(url + "/api/runs").json()]
    assert requests.get(f"{url}/api/runs/{rid}").json()["conditions"] == {"segment": "c"}

    job = requests.post(url + "/api/jobs", json={"kind": "sample", "params": {
        "model": fit["result"]["model"], "table": "uploads/customers.csv", "rows": 300, "seed": 4, "detection": False}}).json()
    plain = wait_job(url, job["id"])
    assert plain["status"] == "done" and 0.5 < plain["result"]["figures"]["quality_score"] <= 1, plain
    report = requests.get(f"{url}/runs/{plain['result']['id']}/report")
    assert report.status_code == 200 and "quality" in report.text.lower()

    bad = requests.post(url + "/api/jobs", json={"kind": "sample", "params": {
        "model": fit["result"]["model"], "rows": 10, "conditions": [{"column": "age", "value": "old"}]}}).json()
    failed = wait_job(url, bad["id"])
    assert failed["status"] == "failed" and "not a number" in failed["error"]


def test_targets_save_and_refine_reports_each_iteration_live(studio):
    url, root = studio
    spec = {"name": "cards", "rows": 200, "seed": 1, "columns": [
        {"name": "type", "sampler": {"categorical": {"credit": 0.5, "debit": 0.5}}},
        {"name": "amount", "sampler": {"lognormal": {"mean": 3, "sigma": 1, "min": 1, "max": 20000}}}]}
    requests.post(url + "/api/spec/save", json={"path": "cards.yaml", "spec": spec}).raise_for_status()
    bad = requests.post(url + "/api/targets/save", json={"path": "t.yaml", "targets": {"shares": {"type": {"credit": 0.6}}}})
    assert bad.status_code == 400 and "add up to 1" in bad.json()["error"] and not (root / "t.yaml").exists()
    targets = {"shares": {"type": {"credit": 0.7, "debit": 0.3}}, "ranges": {"amount": {"min": 1, "max": 500}},
               "budget": {"iterations": 3}}
    saved = requests.post(url + "/api/targets/save", json={"path": "targets/cards.yaml", "targets": targets})
    assert saved.status_code == 200, saved.text
    assert requests.get(url + "/api/targets", params={"path": "targets/cards.yaml"}).json()["targets"] == targets
    job = requests.post(url + "/api/jobs", json={"kind": "refine", "params": {"source": "cards.yaml", "targets": "targets/cards.yaml"}}).json()
    done = wait_job(url, job["id"])
    assert done["status"] == "done", done
    events = done["events"]
    assert len(events) == done["result"]["iterations"] >= 1
    assert [e["iteration"] for e in events] == list(range(1, len(events) + 1))
    assert {c["metric"] for c in events[0]["checks"]} >= {"share type=credit"} or events[0]["checks"]
    report = requests.get(f"{url}/runs/{done['result']['id']}/report")
    assert report.status_code == 200 and "<html" in report.text.lower()
    later = requests.get(f"{url}/api/jobs/{job['id']}", params={"since": len(events)}).json()
    assert later["events"] == [] and later["n_events"] == len(events)
    listed = {j["id"]: j for j in requests.get(url + "/api/jobs").json()}
    assert listed[job["id"]]["status"] == "done" and listed[job["id"]]["events"] == []  # the list leaves events out
    log = requests.get(f"{url}/api/runs/{done['result']['id']}/events").text.splitlines()
    assert len(log) == len(events)


def test_generate_job_runs_a_saved_spec_into_a_run(studio):
    url, root = studio
    spec = {"name": "ids", "rows": 25, "columns": [{"name": "id", "sampler": {"sequence": {"prefix": "X", "digits": 3}}},
                                                   {"name": "n", "sampler": {"poisson": {"lam": 2}}}]}
    requests.post(url + "/api/spec/save", json={"path": "ids.yaml", "spec": spec}).raise_for_status()
    job = requests.post(url + "/api/jobs", json={"kind": "generate", "params": {"spec": "ids.yaml"}}).json()
    done = wait_job(url, job["id"])
    assert done["status"] == "done", done
    df = pd.read_parquet(root / "runs" / done["result"]["id"] / "data.parquet")
    assert list(df["id"][:2]) == ["X001", "X002"] and len(df) == 25


def test_a_running_job_and_a_queued_one_can_be_cancelled(tmp_path):
    _table(400).to_csv(tmp_path / "t.csv", index=False)
    with BackgroundServer(create_app(tmp_path, workers=1)) as url:
        long = requests.post(url + "/api/jobs", json={"kind": "fit", "params": {
            "table": "t.csv", "model": "autoregressive", "budget_s": 600, "out": "models/long.npz"}}).json()
        queued = requests.post(url + "/api/jobs", json={"kind": "fit", "params": {"table": "t.csv", "model": "copula"}}).json()
        deadline = time.monotonic() + 120
        while requests.get(f"{url}/api/jobs/{long['id']}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert requests.get(f"{url}/api/jobs/{queued['id']}").json()["status"] == "queued"  # one worker: it waits
        assert requests.post(f"{url}/api/jobs/{queued['id']}/cancel").json()["status"] == "cancelled"
        requests.post(f"{url}/api/jobs/{long['id']}/cancel").raise_for_status()
        assert wait_job(url, long["id"], timeout=60)["status"] == "cancelled"
        assert wait_job(url, queued["id"])["status"] == "cancelled"
        assert not (tmp_path / "models" / "long.npz").exists()
        assert requests.get(url + "/api/runs").json() == []
        assert requests.post(url + "/api/jobs/nope/cancel").status_code == 404


def test_off_loopback_every_api_call_needs_the_token(tmp_path):
    with pytest.raises(StudioError, match="token"):
        create_app(tmp_path, host="0.0.0.0")
    with BackgroundServer(create_app(tmp_path, host="0.0.0.0", token="s3cret-token")) as url:
        assert requests.get(url + "/").status_code == 200  # the page itself holds no data; it asks for the token
        assert requests.get(url + "/api/info").status_code == 401
        assert requests.get(url + "/api/info", headers={"X-Studio-Token": "wrong"}).status_code == 401
        assert requests.get(url + "/api/info", headers={"X-Studio-Token": "s3cret-token"}).status_code == 200
        assert requests.get(url + "/api/runs", params={"token": "s3cret-token"}).status_code == 200
        assert requests.get(url + "/runs/x/report").status_code == 401


def test_on_loopback_foreign_hosts_and_cross_site_writes_are_refused(studio):
    url, _ = studio
    assert requests.get(url + "/api/info", headers={"Host": "attacker.example:80"}).status_code == 403
    r = requests.post(url + "/api/spec/save", headers={"Origin": "http://attacker.example"},
                      json={"path": "x.yaml", "spec": {}})
    assert r.status_code == 403


def test_the_studio_command_prints_its_url_and_serves(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "synthloop.cli", "studio", str(tmp_path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "SYNTHLOOP_STUDIO_WARM": "0"})  # no job runs: skip the warm-up
    try:
        line = ""
        for _ in range(5):
            line = proc.stdout.readline()
            if line.startswith("open "):
                break
        assert line.startswith("open http://127.0.0.1:"), line
        url = line.split()[1].rstrip("/")
        deadline = time.monotonic() + 30
        while True:
            try:
                assert requests.get(url + "/api/info", timeout=5).json()["root"] == str(tmp_path.resolve())
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
