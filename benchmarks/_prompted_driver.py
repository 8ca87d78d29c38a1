"""Child process of bench_prompted_agreement.py: one prompted run, timed, with its requests counted.

Runs with whichever `synthloop` is first on PYTHONPATH (this checkout, or an older revision unpacked
by the benchmark), so it uses only APIs both have. Prints one JSON line of figures; writes the table.
"""
from __future__ import annotations

import json
import sys
import threading
import time

from synthloop.generate.runner import PromptedGenerator
from synthloop.llm.base import BackendBase, LLMResult
from synthloop.llm.embedded import EmbeddedBackend
from synthloop.spec import load_spec


class Counting(BackendBase):
    def __init__(self, inner: EmbeddedBackend) -> None:
        self.inner = inner
        self.name, self.model_id, self.concurrency, self.supports_constraints = inner.name, inner.model_id, 1, True
        # what the runner asks of its backend must be the inner one's: hiding it would send the embedded
        # model the requests of a backend that cannot prefill (no character exclusions, stated pins)
        self.supports_prefill = getattr(inner, "supports_prefill", False)
        self.requests = self.tokens_in = self.tokens_out = self.evaluated = self.resamples = 0
        self.passes = self.drafted = self.accepted = 0  # decoding forward passes and prompt-lookup guesses
        self.seconds = 0.0
        self._lock = threading.Lock()

    def complete_one(self, request) -> LLMResult:  # type: ignore[no-untyped-def]
        res = self.inner.complete_one(request)
        with self._lock:
            self.requests += 1
            self.tokens_in += res.prompt_tokens
            self.tokens_out += res.completion_tokens
            # prompt tokens computed (not reused from the KV cache); older code does not say: all of them
            self.evaluated += int(res.meta.get("prompt_evaluated", res.prompt_tokens))
            self.resamples += int(res.meta.get("grammar_resamples", 0))
            self.passes += int(res.meta.get("passes", 0))
            self.drafted += int(res.meta.get("drafted", 0))
            self.accepted += int(res.meta.get("draft_accepted", 0))
            self.seconds += res.elapsed
        return res


def main() -> None:
    spec_path, rows, out, model, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    spec = load_spec(spec_path)
    inner = EmbeddedBackend(None if model == "default" else model, threads=threads)
    inner.llm  # loaded before the clock starts, as in a long-lived process
    be = Counting(inner)
    gen = PromptedGenerator(spec, backend=be, cache_dir=False)
    t0, c0 = time.perf_counter(), time.process_time()
    res = gen.generate(rows, out)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary = res.summary
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "requests": be.requests, "tokens_in": be.tokens_in,
                      "tokens_in_evaluated": be.evaluated, "tokens_out": be.tokens_out, "grammar_resamples": be.resamples,
                      "decode_passes": be.passes, "drafted": be.drafted, "draft_accepted": be.accepted,
                      "backend_s": be.seconds, "rows_written": int(summary["rows_written"]),
                      "repairs": summary.get("validity", {}).get("repairs"),
                      "repairs_by_reason": summary.get("requests", {}).get("repairs_by_reason"),
                      "failed": summary["failed"][:5], "model_id": be.model_id}))


if __name__ == "__main__":
    main()
