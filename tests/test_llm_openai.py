"""The openai backend against a loopback OpenAI-compatible server: formats, retries, errors, concurrency."""
from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("openai")

from synthloop.llm.base import LLMRequest
from synthloop.llm.openai_backend import OpenAIBackend
from synthloop.llm.testing import FakeOpenAIServer
from synthloop.spec import LLMError

SCHEMA = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 18, "maximum": 95},
                                           "segment": {"enum": ["retail", "sme"]}},
          "required": ["age", "segment"], "additionalProperties": False}


def req(seed: int = 1, constrained: bool = True) -> LLMRequest:
    return LLMRequest(messages=(("system", "s"), ("user", "u")), schema=SCHEMA, seed=seed, constrained=constrained)


def backend(srv: FakeOpenAIServer, **kw) -> OpenAIBackend:
    kw.setdefault("backoff", 0.01)
    return OpenAIBackend("tiny", srv.base_url, **kw)


def test_sends_json_schema_response_format_seed_and_key(monkeypatch) -> None:
    monkeypatch.setenv("SL_TEST_KEY", "sk-secret-123")
    with FakeOpenAIServer(require_key="sk-secret-123") as srv:
        out = backend(srv, api_key_env="SL_TEST_KEY").complete([req(7)])[0]
        body = srv.requests[0]
    obj = json.loads(out.text)
    assert 18 <= obj["age"] <= 95 and obj["segment"] in ("retail", "sme")
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert body["seed"] == 7 and body["model"] == "tiny"


def test_unconstrained_requests_send_no_response_format() -> None:
    with FakeOpenAIServer() as srv:
        backend(srv).complete([req(constrained=False)])
        assert "response_format" not in srv.requests[0]


def test_retries_429_and_500_with_backoff_then_succeeds() -> None:
    with FakeOpenAIServer(faults=[429, 500, 503]) as srv:
        res = backend(srv, max_retries=5).complete([req()])[0]
        assert srv.statuses == [429, 500, 503, 200]
    assert res.retries == 3 and json.loads(res.text)["segment"] in ("retail", "sme")


def test_honours_retry_after() -> None:
    with FakeOpenAIServer(faults=[429], retry_after=0.3) as srv:
        t0 = time.perf_counter()
        backend(srv, backoff=0.0).complete([req()])
        assert time.perf_counter() - t0 >= 0.3


def test_gives_up_after_max_retries_with_a_clear_error() -> None:
    with FakeOpenAIServer(faults=[500] * 10) as srv:
        with pytest.raises(LLMError, match=r"answered HTTP 500 after 2 retries"):
            backend(srv, max_retries=2).complete([req()])
        assert len(srv.requests) == 3


def test_wrong_key_is_not_retried_and_never_printed(monkeypatch) -> None:
    monkeypatch.setenv("SL_TEST_KEY", "sk-wrong-456")
    with FakeOpenAIServer(require_key="sk-right") as srv:
        be = backend(srv, api_key_env="SL_TEST_KEY")
        with pytest.raises(LLMError) as exc:
            be.complete([req()])
        assert len(srv.requests) == 1
    assert "refused the API key" in str(exc.value) and "sk-wrong-456" not in str(exc.value)
    assert "sk-wrong-456" not in repr(be)


def test_remote_server_without_key_is_refused(monkeypatch) -> None:
    monkeypatch.delenv("SL_NO_SUCH_KEY", raising=False)
    with pytest.raises(LLMError, match="set the environment variable SL_NO_SUCH_KEY"):
        OpenAIBackend("gpt", "https://api.example.invalid/v1", api_key_env="SL_NO_SUCH_KEY")


def test_unreachable_server_is_explained() -> None:
    with FakeOpenAIServer() as srv:
        url = srv.base_url
    be = OpenAIBackend("tiny", url, max_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(LLMError, match="could not be reached after 1 retries"):
        be.complete([req()])


def test_requests_run_concurrently_up_to_the_limit() -> None:
    with FakeOpenAIServer(delay=0.2) as srv:
        be = backend(srv, concurrency=4)
        t0 = time.perf_counter()
        out = be.complete([req(i) for i in range(8)])
        took = time.perf_counter() - t0
        assert srv.max_in_flight == 4
    assert len(out) == 8 and took < 1.6  # one at a time would take 8 x 0.2 s


def test_falls_back_to_json_object_for_llama_cpp_style_servers() -> None:
    def only_json_object(body):
        return json.dumps({"age": 30, "segment": "sme"})

    with FakeOpenAIServer(faults=[422], answer=only_json_object) as srv:
        be = backend(srv)
        be.complete([req()])
        fmt = srv.requests[1]["response_format"]
        assert fmt["type"] == "json_object"
        # bounds become enums, since llama.cpp grammars ignore minimum/maximum
        assert fmt["schema"]["properties"]["age"] == {"enum": list(range(18, 96))}
        assert be.response_format == "json_object"
