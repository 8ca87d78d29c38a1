"""A text column written by a small causal LM fine-tuned on the real texts (LoRA with `peft` over a local
Hugging Face model folder; the `finetune` extra). The model learns `text | row values` from the learn
table, so its texts follow the real ones in wording and length given the row, which a prompted model
only approximates from a few examples. It is a backend like the others (`llm: {backend: finetuned,
model: <folder>}`): the runner validates, checks, regenerates and privacy-checks its answers the same
way. Training runs once per (data, settings) and the adapter is kept (safetensors + JSON) for reuse.

Requests carry the row's structured values (`LLMRequest.row`); those of a column the adapter was
tuned for are answered by the tuned model from the row alone, anything else (a judge question, a
column it was not tuned for) by the base model from the chat prompt."""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from synthloop.llm.base import BackendBase, LLMRequest, LLMResult
from synthloop.spec.errors import LLMError

META = "synthloop_finetune.json"


def condition_prompt(column: str, row: dict[str, Any], context: Sequence[str]) -> str:
    """The text the tuned model continues: the row's structured values, one per line, then the column."""
    from synthloop.generate.prompts import _plain

    lines = []
    for c in context:
        v = _plain(row.get(c))  # as the runner states a row: ISO dates, plain numbers
        if v is None:
            v = ""
        lines.append(f"{c}: {' '.join(str(v).split())}")
    return "\n".join(lines) + f"\n{column}:"


def _need() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError:
        raise LLMError("the finetuned backend needs transformers and peft: pip install 'synthloop[finetune]'") from None
    return torch, transformers, peft


def fingerprint(base: Path, columns: dict[str, tuple[Sequence[str], Sequence[str], Sequence[str]]],
                settings: dict[str, Any], seed: int) -> str:
    """A hash of what the adapter depends on: base model folder, training texts and rows, settings, seed."""
    h = hashlib.sha256()
    h.update(str(Path(base).resolve()).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(str(seed).encode())
    for name in sorted(columns):
        prompts, texts, context = columns[name]
        h.update(json.dumps([name, list(context)]).encode())
        for p, t in zip(prompts, texts):
            h.update(p.encode() + b"\x00" + t.encode() + b"\x01")
    return h.hexdigest()


def fine_tune(base: str | Path, examples: Sequence[tuple[str, str]], out: str | Path, *, epochs: int = 1,
              rank: int = 8, alpha: int = 16, learning_rate: float = 2e-4, batch_size: int = 8,
              max_length: int = 256, seed: int = 0, meta: dict[str, Any] | None = None,
              device: str | None = None) -> Path:
    """Train a LoRA adapter on (prompt, text) pairs (the loss counts the text's tokens and the end of
    text only) and save it to `out` atomically: written to a temporary folder, then renamed."""
    torch, transformers, peft = _need()
    base = Path(base)
    out = Path(out)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tok = transformers.AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(base, local_files_only=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, cfg).to(device)
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos if eos is not None else 0)
    seqs = []
    for prompt, text in examples:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        t = tok(" " + " ".join(str(text).split()), add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        ids = (p + t)[:max_length]
        labels = ([-100] * len(p) + t)[:max_length]
        seqs.append((ids, labels))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    steps = max(1, epochs * math.ceil(len(seqs) / batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / steps))
    model.train()
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(seqs))
        for b in range(0, len(order), batch_size):
            batch = [seqs[j] for j in order[b:b + batch_size]]
            L = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([s + [pad] * (L - len(s)) for s, _ in batch], device=device)
            lab = torch.tensor([lb + [-100] * (L - len(lb)) for _, lb in batch], device=device)
            att = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s, _ in batch], device=device)
            loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out.parent))  # same filesystem: the rename is atomic
    model.save_pretrained(tmp)  # adapter weights as safetensors + adapter_config.json
    info = {**(meta or {}), "base": str(base.resolve()), "examples": len(seqs), "epochs": epochs,
            "first_loss": round(losses[0], 4) if losses else None, "last_loss": round(float(np.mean(losses[-5:])), 4) if losses else None}
    (tmp / META).write_text(json.dumps(info, indent=1, default=str))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


class FineTunedBackend(BackendBase):
    """`llm: {backend: finetuned, model: <local HF causal LM folder>, finetune: {...}}` (see the module
    docstring). `prepare` must run before the first request: it trains or loads the adapter."""

    name = "finetuned"
    supports_constraints = False
    concurrency = 1

    def __init__(self, model: str | Path | None, settings: Any = None, threads: int | None = None) -> None:
        if not model:
            raise LLMError("the finetuned backend needs llm.model: a local folder with a Hugging Face causal LM")
        self.base = Path(model).expanduser()
        if not self.base.is_dir():
            raise LLMError(f"{self.base}: not a directory; the finetuned backend tunes a local transformers model folder")
        self.settings = settings
        self.threads = threads
        self.model_id = f"finetuned:{self.base.resolve()}"
        self.adapter: Path | None = None
        self.columns: dict[str, list[str]] = {}
        self.info: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._model: Any = None
        self._tok: Any = None

    def _opt(self, name: str, default: Any) -> Any:
        v = getattr(self.settings, name, None) if self.settings is not None else None
        return default if v is None else v

    def prepare(self, columns: dict[str, tuple[pd.DataFrame, Sequence[str]]], seed: int = 0,
                folder: str | Path | None = None) -> Path:
        """Tune on the real texts (output column -> (the rows' context columns, their texts with
        personal values replaced)) or load the adapter an earlier run saved for the same data and
        settings."""
        torch, _, _ = _need()
        if self.threads:
            torch.set_num_threads(self.threads)
        max_texts = int(self._opt("max_texts", 5000))
        per_col: dict[str, tuple[list[str], list[str], list[str]]] = {}
        for name, (frame, texts) in columns.items():
            keep = np.arange(len(texts))
            if len(keep) > max_texts:
                keep = np.sort(np.random.default_rng(seed).choice(len(keep), max_texts, replace=False))
            ctx = list(frame.columns)
            recs = frame.iloc[keep].to_dict("records")
            per_col[name] = ([condition_prompt(name, r, ctx) for r in recs], [str(texts[j]) for j in keep], ctx)
        opts = {k: self._opt(k, d) for k, d in (("epochs", 1), ("rank", 8), ("alpha", 16), ("learning_rate", 2e-4),
                                                 ("batch_size", 8), ("max_length", 256), ("max_texts", 5000))}
        fp = fingerprint(self.base, {k: (v[0], v[1], v[2]) for k, v in per_col.items()}, opts, seed)
        given = self._opt("adapter", None)
        out = Path(given).expanduser() if given else Path(folder or tempfile.gettempdir()) / "adapters" / fp[:16]
        meta_path = out / META
        if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == fp:
            self.info = {**json.loads(meta_path.read_text()), "reused": True}
        else:
            examples = [(p, t) for v in per_col.values() for p, t in zip(v[0], v[1])]
            t0 = time.perf_counter()
            fine_tune(self.base, examples, out, epochs=opts["epochs"], rank=opts["rank"], alpha=opts["alpha"],
                      learning_rate=opts["learning_rate"], batch_size=opts["batch_size"], max_length=opts["max_length"],
                      seed=seed, meta={"fingerprint": fp, "columns": {k: v[2] for k, v in per_col.items()}})
            self.info = {**json.loads(meta_path.read_text()), "reused": False, "seconds": round(time.perf_counter() - t0, 1)}
        self.adapter = out
        self.columns = {k: list(v) for k, v in self.info["columns"].items()}
        self._model = None  # loaded with the new adapter on the next request
        return out

    def _load(self) -> None:
        torch, transformers, peft = _need()
        if self.adapter is None:
            raise LLMError("the finetuned backend was not prepared: it needs a learn: block whose real texts it is tuned on")
        self._tok = transformers.AutoTokenizer.from_pretrained(self.base, local_files_only=True)
        base = transformers.AutoModelForCausalLM.from_pretrained(self.base, local_files_only=True)
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        self._model = peft.PeftModel.from_pretrained(base, self.adapter).to(self._device)
        self._model.eval()

    def _generate(self, prompt: str, request: LLMRequest, tuned: bool) -> tuple[str, int, int]:
        import contextlib

        import torch

        enc = self._tok(prompt, return_tensors="pt", add_special_tokens=tuned is False).to(self._device)
        torch.manual_seed(request.seed)
        ctx = contextlib.nullcontext() if tuned else self._model.disable_adapter()
        eos = self._tok.eos_token_id
        with torch.no_grad(), ctx:
            out = self._model.generate(
                **enc, max_new_tokens=request.max_tokens, do_sample=request.temperature > 0,
                temperature=max(request.temperature, 1e-5), top_p=request.top_p,
                pad_token_id=self._tok.pad_token_id if self._tok.pad_token_id is not None else eos,
            )
        new = out[0, enc["input_ids"].shape[1]:]
        return self._tok.decode(new, skip_special_tokens=True), int(enc["input_ids"].shape[1]), int(new.shape[0])

    def complete_one(self, request: LLMRequest) -> LLMResult:
        with self._lock:
            if self._model is None:
                self._load()
            t0 = time.perf_counter()
            column = request.context.split(":", 1)[1] if request.context.startswith("column:") else None
            props = (request.schema or {}).get("properties", {})
            if column in self.columns and request.row and column in props:
                prompt = condition_prompt(column, dict(request.row), self.columns[column])
                text, n_in, n_out = self._generate(prompt, request, tuned=True)
                text = " ".join(text.split("\n")[0].split())  # one line: the tuned model's answer
                if request.start and not text.startswith(request.start):
                    text = f"{request.start} {text}"
                hi = props[column].get("maxLength")
                text = text[:hi] if hi else text
                answer = json.dumps({column: text}, ensure_ascii=False)
            else:  # a judge question or an untuned column: the base model, from the chat prompt
                chat = "\n\n".join(f"{r}: {c}" for r, c in request.messages) + "\n\nassistant: "
                answer, n_in, n_out = self._generate(chat, request, tuned=False)
            return LLMResult(text=answer, elapsed=time.perf_counter() - t0, prompt_tokens=n_in, completion_tokens=n_out)
