"""Prompted generation benchmark: the card-transactions example with the embedded model.

One command: `python benchmarks/bench_prompted.py [--rows 200]` (run it under
`flock /tmp/synthloop-bench.lock`). Prints one JSON line per case:

1. `constrained`: the full run (planner, prompts, grammar-constrained decoding, validation, repair,
   journal, dedup) -> rows/s, share of rows valid, |target - generated| share of `type`, and the
   orchestration overhead = (wall - time inside llama.cpp) / time inside llama.cpp.
   Peer: a raw llama.cpp replay of exactly the requests the run sent (same prompts, grammars, seeds),
   with nothing around it; ratio = our wall time / raw replay time.
2. `unconstrained_same_prompts`: the run's first-attempt requests sent again without a grammar;
   share of answers valid against the schema, beside the constrained share (the peer figure).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthloop.generate.runner import PromptedGenerator  # noqa: E402
from synthloop.llm.base import BackendBase, LLMRequest, LLMResult  # noqa: E402
from synthloop.llm.embedded import EmbeddedBackend  # noqa: E402
from synthloop.llm.validate import parse_and_validate  # noqa: E402
from synthloop.spec import load_spec  # noqa: E402

SPEC = ROOT / "examples" / "prompted" / "card_transactions.yaml"


class Recording(BackendBase):
    """Passes requests to the embedded backend and keeps them for the replays."""

    def __init__(self, inner: EmbeddedBackend) -> None:
        self.inner = inner
        self.name, self.model_id, self.concurrency = inner.name, inner.model_id, 1
        self.supports_constraints = True
        self.requests: list[LLMRequest] = []
        self.elapsed: dict[int, float] = {}

    def complete_one(self, request: LLMRequest) -> LLMResult:
        self.requests.append(request)
        res = self.inner.complete_one(request)
        self.elapsed[id(request)] = res.elapsed
        return res


def raw_replay(backend: EmbeddedBackend, requests: list[LLMRequest], constrained: bool) -> tuple[float, list[str]]:
    """Straight llama.cpp calls, timed end to end (grammars prebuilt, as any caller would)."""
    llm = backend.llm
    grammars = [backend.grammar(r.schema) if (constrained and r.schema) else None for r in requests]
    texts = []
    t0 = time.perf_counter()
    for r, g in zip(requests, grammars):
        out = llm.create_chat_completion(messages=r.chat(), temperature=r.temperature, top_p=r.top_p,
                                         max_tokens=r.max_tokens, seed=r.seed, grammar=g)
        texts.append(out["choices"][0]["message"]["content"] or "")
    return time.perf_counter() - t0, texts


def _spread(items: list[LLMRequest], k: int) -> list[LLMRequest]:
    if k <= 0 or k >= len(items):
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: half the cores)")
    ap.add_argument("--replay", type=int, default=100,
                    help="requests replayed for the peer figures (evenly spaced sample; 0 = all)")
    args = ap.parse_args()

    spec = load_spec(SPEC)
    spec.seed = args.seed
    inner = EmbeddedBackend(threads=args.threads)
    inner.llm  # load outside the timed run, as a long-lived process would
    rec = Recording(inner)
    base = {"dataset": str(SPEC.relative_to(ROOT)), "rows": args.rows, "seed": args.seed,
            "backend": inner.model_id, "threads": inner.threads}

    with tempfile.TemporaryDirectory() as tmp:
        gen = PromptedGenerator(spec, backend=rec, cache_dir=False)
        t0 = time.perf_counter()
        result = gen.generate(args.rows, Path(tmp) / "cards.csv")
        wall = time.perf_counter() - t0
    s = result.summary
    backend_s = s["timing"]["backend_seconds"]
    sample = _spread(rec.requests, args.replay)
    raw_sample_s, _ = raw_replay(inner, sample, constrained=True)
    in_run_sample_s = sum(rec.elapsed.get(id(r), 0.0) for r in sample)
    # per-request raw time scaled to the run's request count (exact when --replay 0)
    raw_s = raw_sample_s * len(rec.requests) / max(1, len(sample))
    type_err = s["targets"]["columns"]["type"]
    print(json.dumps({
        "case": "constrained", **base,
        "rows_written": s["rows_written"], "llm_requests": len(rec.requests),
        "rows_per_s": round(args.rows / wall, 4),
        "valid_rows_share": s["validity"]["valid_rows"], "valid_first_try_share": s["validity"]["valid_first_try"],
        "repairs": s["validity"]["repairs"], "failed_rows": s["failed"][:3],
        "type_share_abs_error_pp": {k: round(100 * v["abs_error"], 3) for k, v in type_err.items()},
        "type_share_max_error_pp": round(100 * max(v["abs_error"] for v in type_err.values()), 3),
        "wall_s": round(wall, 3), "backend_s": round(backend_s, 3),
        "overhead_share": round((wall - backend_s) / backend_s, 4) if backend_s else None,
        "diversity": {k: {"dup_rate_before": v["before"]["duplicate_rate"], "dup_rate_after": v["after"]["duplicate_rate"],
                          "distinct_2_after": round(v["after"]["distinct_2"], 4), "regenerated": v["regenerated"]}
                      for k, v in s["diversity"].items()},
        "peer": "raw llama.cpp replay of the same requests", "peer_s": round(raw_s, 3),
        "peer_replayed_requests": len(sample),
        # the same sampled requests timed inside the run: the gap to the replay is machine-load drift
        "sample_in_run_s": round(in_run_sample_s, 3), "sample_replay_s": round(raw_sample_s, 3),
        "ratio_wall_to_peer": round(wall / raw_s, 4) if raw_s else None,
        "overhead_vs_peer": round((wall - raw_s) / raw_s, 4) if raw_s else None,
    }), flush=True)

    first = _spread([r for r in rec.requests if not any(role == "assistant" for role, _ in r.messages)], args.replay)
    t_unc, texts = raw_replay(inner, first, constrained=False)
    valid_unc = sum(not parse_and_validate(t, r.schema)[1] for t, r in zip(texts, first))
    print(json.dumps({
        "case": "unconstrained_same_prompts", **base, "llm_requests": len(first),
        "valid_share": round(valid_unc / len(first), 4) if first else None,
        "peer": "same requests, grammar-constrained (first try, from the run above)",
        "peer_valid_share": s["validity"]["valid_first_try"],
        "seconds": round(t_unc, 3),
    }), flush=True)


if __name__ == "__main__":
    main()
