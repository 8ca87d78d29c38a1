"""Language-model backends behind one protocol: embedded (llama.cpp), openai (any compatible URL), hf."""
from __future__ import annotations

from typing import Any

from synthloop.llm.base import BackendBase, LLMBackend, LLMRequest, LLMResult
from synthloop.spec.errors import LLMError


def make_backend(settings: Any) -> LLMBackend:
    """A backend from spec `llm` settings (synthloop.spec.LLMSettings)."""
    if settings.backend == "embedded":
        from synthloop.llm.embedded import EmbeddedBackend

        return EmbeddedBackend(settings.model, n_ctx=settings.n_ctx, threads=settings.threads)
    if settings.backend == "openai":
        from synthloop.llm.openai_backend import OpenAIBackend

        allowed = getattr(settings, "api_key_env_allowed", None)
        if allowed is not None and not allowed():  # a file's choice of secret, not the user's
            from synthloop.spec.loader import key_env_refusal

            raise LLMError(f"llm.api_key_env: {key_env_refusal(settings.api_key_env, 'a spec or targets file')}")

        return OpenAIBackend(
            settings.model, settings.base_url, settings.api_key_env, concurrency=settings.concurrency,
            timeout=settings.timeout, max_retries=settings.max_retries, backoff=settings.backoff,
            response_format=settings.response_format,
        )
    if settings.backend == "hf":
        from synthloop.llm.hf import HFBackend

        return HFBackend(settings.model, threads=settings.threads)
    if settings.backend == "finetuned":
        from synthloop.llm.finetune import FineTunedBackend

        return FineTunedBackend(settings.model, getattr(settings, "finetune", None), threads=settings.threads)
    raise LLMError(f"unknown backend '{settings.backend}'; use embedded, openai, hf or finetuned")


__all__ = ["BackendBase", "LLMBackend", "LLMError", "LLMRequest", "LLMResult", "make_backend"]
