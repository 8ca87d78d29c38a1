"""The openai backend against a real OpenAI-compatible server: `python -m llama_cpp.server` with the
embedded model on loopback, behind a proxy that injects a 429 and a 500."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("openai")
pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")

from synthloop.generate.runner import PromptedGenerator
from synthloop.llm.embedded import default_model_path
from synthloop.llm.testing import FakeOpenAIServer
from synthloop.spec import loads_spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server():
    try:
        model = default_model_path()
    except Exception as exc:
        pytest.skip(f"embedded model not installed: {exc}")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "synthloop.llm.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/models", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start within 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_openai_backend_generates_valid_rows_through_faults(llama_server: str, tmp_path: Path) -> None:
    spec = loads_spec(f"""\
name: served
rows: 2
seed: 4
llm: {{backend: openai, base_url: "{llama_server}", model: smollm2, max_tokens: 40, backoff: 0.05}}
columns:
  - name: type
    sampler: {{categorical: {{credit: 0.5, debit: 0.5}}}}
  - name: merchant
    llm:
      prompt: "A merchant for a {{{{ type }}}} card payment."
      schema:
        type: object
        properties:
          name: {{type: string, minLength: 3, maxLength: 30}}
          kind: {{enum: [shop, cafe, online]}}
diversity: {{max_rounds: 0}}
""")
    with FakeOpenAIServer(faults=[429, 500], upstream=llama_server) as proxy:
        spec.llm.base_url = proxy.base_url
        res = PromptedGenerator(spec, cache_dir=tmp_path).generate()
        statuses = list(proxy.statuses)
        formats = [r.get("response_format", {}).get("type") for r in proxy.requests]
    assert statuses[:2] == [429, 500] and statuses.count(200) >= 2
    # llama.cpp's server refuses json_schema (422) and gets {"type": "json_object", "schema": ...}
    assert "json_object" in formats
    df = res.data
    assert len(df) == 2 and set(df["kind"]) <= {"shop", "cafe", "online"}
    assert df["name"].str.len().between(3, 30).all()
    assert res.summary["validity"]["valid_first_try"] == 1.0
    assert res.summary["validity"]["transport_retries"] == 2
