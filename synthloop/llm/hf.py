"""A local Hugging Face transformers model directory (optional extra; no hub access: local files only).

transformers has no JSON-schema grammar, so answers are validated and repaired like unconstrained ones."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from synthloop.llm.base import BackendBase, LLMRequest, LLMResult
from synthloop.spec.errors import LLMError


class HFBackend(BackendBase):
    name = "hf"
    supports_constraints = False
    concurrency = 1

    def __init__(self, model: str | Path | None, threads: int | None = None) -> None:
        if not model:
            raise LLMError("the hf backend needs llm.model: a local directory with a transformers model")
        self.path = Path(model).expanduser()
        if not self.path.is_dir():
            raise LLMError(f"{self.path}: not a directory; the hf backend loads a local transformers model folder")
        self.model_id = f"hf:{self.path.resolve()}"
        self.threads = threads
        self._lock = threading.Lock()
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError:
            raise LLMError("the hf backend needs transformers; install it with pip install transformers") from None
        if self.threads:
            torch.set_num_threads(self.threads)
        self._tok = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self._model = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True)
        self._model.eval()

    def _prompt(self, request: LLMRequest) -> str:
        if getattr(self._tok, "chat_template", None):
            return self._tok.apply_chat_template(request.chat(), tokenize=False, add_generation_prompt=True)
        return "\n\n".join(f"{r}: {c}" for r, c in request.messages) + "\n\nassistant: "

    def complete_one(self, request: LLMRequest) -> LLMResult:
        import torch

        with self._lock:
            if self._model is None:
                self._load()
            t0 = time.perf_counter()
            enc = self._tok(self._prompt(request), return_tensors="pt")
            torch.manual_seed(request.seed)
            with torch.no_grad():
                out = self._model.generate(
                    **enc, max_new_tokens=request.max_tokens, do_sample=request.temperature > 0,
                    temperature=max(request.temperature, 1e-5), top_p=request.top_p,
                    pad_token_id=self._tok.pad_token_id or self._tok.eos_token_id,
                )
            new = out[0, enc["input_ids"].shape[1]:]
            text = self._tok.decode(new, skip_special_tokens=True)
            return LLMResult(text=text, elapsed=time.perf_counter() - t0,
                             prompt_tokens=int(enc["input_ids"].shape[1]), completion_tokens=int(new.shape[0]))
