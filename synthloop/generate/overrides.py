"""Command-line overrides of a spec's LLM settings and seed (shared by the `generate` and `prompt` verbs)."""
from __future__ import annotations

from typing import Any, Optional

API_KEY_ENV_HELP = ("Environment variable holding the API key (overrides the spec's llm.api_key_env; a spec alone "
                    "may only name variables ending in _API_KEY).")
ALLOW_DIR_HELP = "A folder besides the spec's own that seed (few-shot) files may lie in (repeatable)."

THREADS_HELP = ("CPU threads of the embedded model (llm.threads; default: half the cores, at most 4). "
                "On a shared machine, one thread per free core is fastest.")
LLM_MODEL_HELP = ("Embedded model: smollm2-135m (default, Apache-2.0), gemma3-270m (needs the 'gemma' extra; "
                  "Gemma Terms of Use) or a .gguf path.")


def apply_overrides(spec: Any, backend: Optional[str], base_url: Optional[str], model: Optional[str],
                    concurrency: Optional[int], seed: Optional[int], unconstrained: bool,
                    threads: Optional[int] = None, llm_model: Optional[str] = None) -> Any:
    """The spec with the command line's `--backend/--base-url/--model/--concurrency/--seed/--unconstrained/
    --threads/--llm-model` applied (each None or False leaves the spec's own setting); bad values raise
    SpecError. `--llm-model` picks the embedded model (and the embedded backend)."""
    from pydantic import ValidationError

    from synthloop.spec.errors import SpecError
    from synthloop.spec.models import LLMSettings

    upd: dict[str, Any] = {}
    if backend is not None:
        if backend not in ("embedded", "openai", "hf", "finetuned"):
            raise SpecError(f"--backend {backend}: use embedded, openai, hf or finetuned")
        upd["backend"] = backend
        if backend != spec.llm.backend and model is None:
            upd["model"] = None  # a model name of another backend means nothing here
    if llm_model is not None:
        if model is not None:
            raise SpecError("pass either --model or --llm-model, not both")
        if (backend or spec.llm.backend) != "embedded":
            raise SpecError("--llm-model picks the embedded model; for other backends use --model")
        model = llm_model
    if threads is not None:
        if threads < 1:
            raise SpecError("--threads must be at least 1")
        upd["threads"] = threads
    if base_url is not None:
        upd["base_url"] = base_url
    if model is not None:
        upd["model"] = model
    if concurrency is not None:
        if concurrency < 1:
            raise SpecError("--concurrency must be at least 1")
        upd["concurrency"] = concurrency
    if unconstrained:
        upd["constrained"] = False
    if upd:
        chosen = spec.llm._key_env_chosen
        try:
            spec.llm = LLMSettings.model_validate({**spec.llm.model_dump(), **upd})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise SpecError(f"--{err['loc'][0]}: {err['msg']}") from None
        spec.llm._key_env_chosen = chosen
    if seed is not None:
        spec.seed = seed
    return spec
