"""Any OpenAI-compatible chat server (OpenAI, vLLM, Ollama, llama.cpp server) by base URL.

Requests run `concurrency` at a time; 429, 5xx, timeouts and dropped connections are retried with
exponential backoff (honouring Retry-After); other errors stop at once with a hint. The API key is
read from an environment variable and appears in no message, log or repr; neither does a password
in the base URL (`http://user:PASSWORD@host/v1` shows as `http://***@host/v1`), and error bodies
are cleaned of anything that looks like either (a server may echo the Authorization header).
"""
from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import urlparse

from synthloop.llm.base import BackendBase, LLMRequest, LLMResult
from synthloop.llm.grammar import decoding_schema
from synthloop.llm.secrets import redact, redact_url, url_secrets
from synthloop.spec.errors import LLMError

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def _is_local(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


class OpenAIBackend(BackendBase):
    name = "openai"
    supports_constraints = True

    def __init__(self, model: str | None, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 4, timeout: float = 60.0, max_retries: int = 5, backoff: float = 0.5,
                 response_format: str = "json_schema") -> None:
        try:
            import openai
        except ImportError:
            raise LLMError("the openai backend needs the 'openai' package; install it with pip install 'synthloop[llm]'") from None
        key = os.environ.get(api_key_env)
        if not key:
            if base_url is None or not _is_local(base_url):
                raise LLMError(f"no API key: set the environment variable {api_key_env} (or llm.api_key_env to another variable)")
            key = "no-key"  # local servers usually accept any key
        self._secrets = [k for k in (key,) if k != "no-key"] + url_secrets(base_url)
        self._openai = openai
        try:
            self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)
        except Exception as exc:  # a malformed URL: say so without echoing its credentials
            raise LLMError(f"openai backend: cannot use base URL {redact_url(base_url)}: {redact(str(exc), self._secrets)}") from None
        self.base_url = redact_url(base_url) or "https://api.openai.com/v1"  # for messages, ids, cache keys
        self.model = model or self._only_model()
        self.model_id = f"openai:{self.base_url}:{self.model}"
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.response_format = response_format
        self.transport_retries = 0

    def _only_model(self) -> str:
        """The model a server serves when it lists exactly one (llama.cpp and vLLM servers usually
        do); otherwise the user must name one."""
        need = "the openai backend needs a model name: set llm.model in the spec or pass --model"
        try:
            ids = [m.id for m in self._client.models.list()]
        except Exception as exc:  # noqa: BLE001 - no listing: the plain advice, without secrets
            raise LLMError(redact(f"{need} ({self.base_url} did not list its models: {type(exc).__name__})", self._secrets)) from None
        if len(ids) == 1:
            return str(ids[0])
        shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
        raise LLMError(f"{need}; {self.base_url} serves {len(ids)} models" + (f": {shown}" if ids else ""))

    def __repr__(self) -> str:  # no key in here, ever
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"

    def _format(self, request: LLMRequest) -> dict[str, Any] | None:
        if not (request.constrained and request.schema):
            return None
        if self.response_format == "json_object":  # llama.cpp-style servers build a grammar from it
            return {"type": "json_object", "schema": decoding_schema(request.schema)}
        return {"type": "json_schema", "json_schema": {"name": "row", "schema": request.schema, "strict": True}}

    def complete_one(self, request: LLMRequest) -> LLMResult:
        oa = self._openai
        kwargs: dict[str, Any] = dict(
            model=self.model, messages=request.chat(), temperature=request.temperature, top_p=request.top_p,
            max_tokens=request.max_tokens, seed=request.seed,
        )
        fmt = self._format(request)
        if fmt is not None:
            kwargs["response_format"] = fmt
        retries = 0
        t0 = time.perf_counter()
        while True:
            try:
                resp = self._client.chat.completions.create(**kwargs)
                break
            except (oa.APITimeoutError, oa.APIConnectionError, oa.APIStatusError) as exc:
                status = getattr(exc, "status_code", None)
                if (fmt is not None and fmt.get("type") == "json_schema"
                        and (status in (400, 422) or (status == 500 and "response_format" in str(exc)))):
                    # llama-cpp-python's server knows only {"type": "json_object", "schema": ...}
                    # (and reports the refusal as a 500 naming response_format)
                    self.response_format = "json_object"
                    fmt = kwargs["response_format"] = self._format(request)
                    continue
                retryable = status is None or status in RETRY_STATUS
                if not retryable or retries >= self.max_retries:
                    raise LLMError(redact(self._explain(exc, status, retries), self._secrets)) from None
                delay = self._delay(exc, retries)
                retries += 1
                self.transport_retries += 1
                time.sleep(delay)
            except oa.OpenAIError as exc:  # an answer the client cannot read: one line, no secrets
                raise LLMError(redact(f"openai backend: {self.base_url} (model {self.model}): {exc}", self._secrets)) from None
        elapsed = time.perf_counter() - t0
        choice = resp.choices[0]
        usage = getattr(resp, "usage", None)
        return LLMResult(
            text=choice.message.content or "", elapsed=elapsed, retries=retries,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            meta={"finish_reason": choice.finish_reason},
        )

    def _delay(self, exc: Exception, retries: int) -> float:
        resp = getattr(exc, "response", None)
        after = resp.headers.get("retry-after") if resp is not None else None
        try:
            if after is not None:
                return min(float(after), 60.0)
        except ValueError:
            pass
        return min(self.backoff * (2**retries), 30.0)

    def _explain(self, exc: Exception, status: int | None, retries: int) -> str:
        where = f"{self.base_url} (model {self.model})"
        if status == 401 or status == 403:
            return f"openai backend: {where} refused the API key (HTTP {status}); check the key's environment variable"
        if status == 404:
            return f"openai backend: {where} answered 404; check --base-url (it usually ends in /v1) and --model"
        if status is None:
            kind = "timed out" if isinstance(exc, self._openai.APITimeoutError) else "could not be reached"
            return f"openai backend: {where} {kind} after {retries} retries; is the server running?"
        body = " ".join(redact(getattr(exc, "message", "") or "", self._secrets).split())
        return f"openai backend: {where} answered HTTP {status} after {retries} retries: {redact(body[:200], self._secrets)}"

    def close(self) -> None:
        self._client.close()
