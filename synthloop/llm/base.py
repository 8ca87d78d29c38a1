"""The one protocol every language-model backend follows, plus its request and result types."""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class LLMRequest:
    """One chat completion: messages, an optional JSON schema to constrain to, and a seed."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs; a tuple so requests hash
    schema: dict[str, Any] | None = None
    seed: int = 0
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 200
    constrained: bool = True
    # which prompt family this request belongs to (e.g. one LLM column); backends that keep model
    # state (llama.cpp) give each its own context so the shared prefix is evaluated once. Not part
    # of the cache key: it changes speed, never the answer.
    context: str = ""
    # the answer's first string value begins with this text (a column's `start`); backends that can
    # prefill write it into the answer themselves, the runner adds it for those that cannot
    start: str = ""
    # the row's structured values (name, value) in mixed specs: what a fine-tuned backend conditions
    # on instead of the chat prompt; in the cache key only when given
    row: tuple[tuple[str, Any], ...] = ()

    def chat(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def cache_key(self, model_id: str) -> str:
        """Stable key over everything that changes the answer (prompt, schema, model, seed, sampling)."""
        payload = json.dumps(
            {
                "model": model_id, "messages": self.messages, "schema": self.schema, "seed": self.seed,
                "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "constrained": bool(self.constrained and self.schema is not None),
            },
            sort_keys=True, ensure_ascii=False, default=str,
        )
        if self.start:  # (keys of requests without a start stay what earlier versions wrote)
            payload += json.dumps({"start": self.start}, ensure_ascii=False)
        if self.row:
            payload += json.dumps({"row": self.row}, ensure_ascii=False, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class LLMResult:
    text: str
    elapsed: float = 0.0  # seconds spent in the backend for this request (0 for a cache hit)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0  # transport retries (429/5xx/timeouts), not JSON repairs
    cached: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LLMBackend(Protocol):
    """`complete` takes a batch and returns results in the same order."""

    name: str
    model_id: str
    concurrency: int
    supports_constraints: bool

    def complete(self, requests: Sequence[LLMRequest]) -> list[LLMResult]: ...

    def close(self) -> None: ...


class BackendBase:
    """Shared batching: `complete` fans `complete_one` out over `concurrency` threads."""

    name = "base"
    model_id = "base"
    concurrency = 1
    supports_constraints = False

    def complete_one(self, request: LLMRequest) -> LLMResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def complete(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        if self.concurrency <= 1 or len(requests) <= 1:
            return [self.complete_one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self.complete_one, requests))

    def close(self) -> None:
        pass

    def __enter__(self) -> "BackendBase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
