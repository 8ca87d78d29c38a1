"""Prompted generation over a pool of Ray actors, each owning its own LLM backend.

The driver keeps everything that makes a run exact: the plan (every row's sampler values, quotas and
seeds are decided before any prompt), the journal (one writer; a row counts only once its line is
fsynced) and the near-duplicate rounds. Actors only compute rows: `_run_row(plan, i, ...)`, which is
a pure function of the plan and the row's seeds. So when an actor's process dies, the rows it had in
flight are simply sent again to a replacement actor: none is lost (the driver still waits for it)
and none is duplicated (a row enters the journal only when the driver receives it, once).

Endpoints: `endpoints=[("http://a:8000/v1", 8), ("http://b:8000/v1", 4)]` spreads the actors over
several OpenAI-compatible servers, each actor taking a share of its endpoint's concurrency, so no
server sees more than its own limit. Without endpoints every actor uses the spec's `llm` settings
(e.g. its own copy of the embedded model).
"""
from __future__ import annotations

import os
from collections import deque
from typing import Any

from synthloop.runners.base import RunnerError


class RowWorker:
    """A Ray actor: one backend, a copy of the plan, rows computed on request (threads up to the
    backend's concurrency)."""

    def __init__(self, spec: Any, cache_dir: Any, backend: Any = None, threads: int = 1) -> None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)  # BLAS/OpenMP libraries loaded in this actor: its CPUs only
        from synthloop.generate.runner import PromptedGenerator
        from synthloop.generate.store import ResponseCache

        self.gen = PromptedGenerator(spec, backend=backend, cache_dir=cache_dir)
        if cache_dir is not False:  # the same SQLite cache on this node (WAL, safe across processes)
            self.gen.cache = ResponseCache(None if cache_dir in (None, True) else cache_dir)
        self.plan: Any = None

    def setup(self, plan: Any, guides: Any = None) -> int:
        """The driver's plan and, for a mixed spec, its real-text guides as planned for this plan's
        rows (nearest real rows, style rules): built once on the driver, never again per actor."""
        self.plan = plan
        self.gen._records = plan.frame.to_dict("records")
        if guides is not None:
            self.gen._guides = guides
        _ = self.gen.backend  # load the model now, not inside the first row's timing
        return os.getpid()

    def threads(self) -> dict[str, Any]:
        """What this actor computes with: its backend's threads and the BLAS/OpenMP settings."""
        return {"backend_threads": getattr(self.gen.backend, "threads", None),
                **{v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}

    def run(self, i: int, round_: int, avoid: Any, keep: Any) -> dict[str, Any]:
        return self.gen._run_row(self.plan, i, round_, avoid, keep)


class ActorPool:
    """The actors of one run, replaced when one dies; `pids` are their processes (tests kill one)."""

    def __init__(self, runner: Any, gen: Any, plan: Any, endpoints: list[tuple[str, int]] | None = None,
                 max_replacements: int | None = None) -> None:
        import ray

        from synthloop.runners.ray_runner import import_ray

        import_ray()
        self.ray = ray
        self.runner = runner
        n = runner.workers
        spec = gen.spec
        self.slots: list[tuple[Any, int]] = []  # (spec for the actor, its concurrency)
        if endpoints:
            per = [[k for k in range(n) if k % len(endpoints) == e] for e in range(len(endpoints))]
            for k in range(n):
                url, limit = endpoints[k % len(endpoints)]
                mates = per[k % len(endpoints)]  # the endpoint's limit split over its actors, remainder first
                share = max(1, limit // len(mates) + (mates.index(k) < limit % len(mates)))
                llm = spec.llm.model_copy(update={"base_url": url, "concurrency": share, "backend": "openai"})
                self.slots.append((spec.model_copy(update={"llm": llm}), share))
        else:
            conc = max(1, int(getattr(gen.backend, "concurrency", spec.llm.concurrency) or 1))
            self.slots = [(spec, conc)] * n
        self.backend = None
        if getattr(gen, "_given_backend", False) and not endpoints:
            self.backend = gen._backend  # a backend object given in Python: each actor gets a copy
        self.cache_dir = gen._cache_dir
        # a client of a server waits on the network: no CPU reserved; a model in the actor needs one
        remote = endpoints or spec.llm.backend == "openai"
        self.cpus = 0.0 if remote and self.backend is None else float(runner.cpus_per_task)
        runner.check_fits(n, self.cpus, "generate")
        if not remote and self.backend is None and spec.llm.threads is None:
            # a model in the actor computes on the CPUs Ray gave the actor, no more: llama.cpp's own
            # default (half the node's cores) would put several actors' threads on each core
            t = max(1, int(self.cpus))
            self.slots = [(s.model_copy(update={"llm": s.llm.model_copy(update={"threads": t})}), c) for s, c in self.slots]
        self.threads = max(1, int(self.cpus)) if not remote else 1
        self.plan_ref = ray.put(plan)
        self.guides_ref = ray.put(gen.guides()) if gen.spec.learn is not None else None
        self.actors: list[Any] = [None] * n
        self.pids: list[int] = [0] * n
        self.replaced = 0
        self.max_replacements = 3 * n if max_replacements is None else max_replacements
        for k in range(n):
            self._start(k)

    def _start(self, k: int) -> None:
        spec, conc = self.slots[k]
        cls = self.ray.remote(num_cpus=self.cpus, max_restarts=0, max_concurrency=conc)(RowWorker)
        try:
            actor = cls.remote(spec, self.cache_dir, self.backend, self.threads)
        except TypeError as exc:  # e.g. a backend holding a lock or a socket
            raise RunnerError(f"the LLM backend object cannot be sent to Ray workers ({exc}); set it in the spec's "
                              f"llm settings (backend, base_url, model) instead of passing an object") from None
        self.pids[k] = self.ray.get(actor.setup.remote(self.plan_ref, self.guides_ref))
        self.actors[k] = actor

    def replace(self, k: int, why: str) -> None:
        self.replaced += 1
        if self.replaced > self.max_replacements:
            raise RunnerError(f"Ray workers keep dying ({self.replaced} replaced; last: {why}); the finished rows are in "
                              f"the journal: fix the cause and run the same command again to resume")
        self._start(k)

    def report_threads(self) -> list[dict[str, Any]]:
        """Each live actor's threads (backend, OpenMP/BLAS): what the benchmark checks for oversubscription."""
        try:
            return self.ray.get([a.threads.remote() for a in self.actors if a is not None], timeout=5)
        except Exception:  # noqa: BLE001 - a report only
            return []

    def close(self) -> None:
        for a in self.actors:
            if a is not None:
                try:
                    self.ray.kill(a)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        self.actors = []


def run_rows_on_actors(gen: Any, plan: Any, todo: list[int], journal: Any, done: dict[int, dict[str, Any]],
                       progress: Any, round_: int = 0, avoid: dict[int, Any] | None = None,
                       keep: dict[int, Any] | None = None) -> list[dict[str, Any]]:
    """`PromptedGenerator._run_rows` on the actor pool: same records, same journal order of events."""
    from synthloop.runners.ray_runner import import_ray

    ray = import_ray()
    pool = getattr(gen, "_actor_pool", None)
    if pool is None or pool.plan_ref is None:
        pool = gen._actor_pool = ActorPool(gen.runner, gen, plan, getattr(gen, "endpoints", None))
    lost = (ray.exceptions.RayActorError,) + tuple(
        getattr(ray.exceptions, n) for n in ("ActorDiedError", "ActorUnavailableError") if hasattr(ray.exceptions, n))
    queue = deque(todo)
    pending: dict[Any, tuple[int, int, Any]] = {}  # ref -> (row, actor slot, actor)
    inflight = [0] * len(pool.actors)
    results: list[dict[str, Any]] = []
    try:
        while queue or pending:
            for k, (_, conc) in enumerate(pool.slots):
                while queue and inflight[k] < conc:
                    i = queue.popleft()
                    actor = pool.actors[k]
                    ref = actor.run.remote(i, round_, (avoid or {}).get(i), (keep or {}).get(i))
                    pending[ref] = (i, k, actor)
                    inflight[k] += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i, k, actor = pending.pop(ref)
                inflight[k] -= 1
                try:
                    rec = ray.get(ref)
                except lost as exc:
                    queue.appendleft(i)  # computed again elsewhere: the row is neither lost nor doubled
                    if pool.actors[k] is actor:  # the first of its rows to report the death replaces it
                        pool.replace(k, type(exc).__name__)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    from synthloop.errors import SynthloopError

                    if isinstance(getattr(exc, "cause", None), (SynthloopError, KeyboardInterrupt)):
                        raise exc.cause from None
                    raise
                gen._keep_row(rec, round_, journal, done, results, progress)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=False)
        raise
    return results
