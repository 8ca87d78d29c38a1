"""RayRunner: the parallel parts on a Ray cluster (Ray Core tasks and actors, Ray Data, Ray Train).

Importing this module does not import Ray; `start()` (or the first `map`) does, and says in one
line how to install it when it is missing. Work is sent with bounded backpressure (at most
`workers` tasks in flight) so the object store holds a few shards, never the whole output."""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator

from synthloop.runners.base import Runner, RunnerError

INSTALL_HINT = "pip install 'synthloop[ray]' (or: pip install 'ray[data,train]>=2.60')"


def import_ray() -> Any:
    """Ray, or one RunnerError line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RunnerError(f"--ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def same_code_for_workers() -> None:
    """Put the folder this synthloop is imported from first on PYTHONPATH, so that the workers of a
    Ray instance started from here import the same synthloop as this process (a checkout run from
    its folder, say), not another copy installed in the environment. Call before Ray starts."""
    from pathlib import Path

    import synthloop

    root = str(Path(synthloop.__file__).resolve().parents[1])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


class RayRunner(Runner):
    """Run on Ray. `address=None` joins the Ray instance this process already uses, else starts a
    local one (or joins `$RAY_ADDRESS`); `address="auto"` or `"ray://host:10001"` / `"host:6379"` joins
    an existing cluster. `workers` caps parallel tasks (default: the cluster's CPUs). A Ray instance
    this runner started itself is shut down by `close()`.

    `train_batch` decides how a Ray Train fit splits the batch: "global" (default) keeps the local
    fit's batch, divided between the workers, so each step is the local fit's step; "per_worker" gives
    every worker the whole batch (the global batch grows with the workers, the learning rate by
    sqrt(workers)): fewer, larger steps and fewer optimizer updates per worker, which is what scales
    when the per-step cost (optimizer, all-reduce) is a large share of a small model's step."""

    name = "ray"
    distributed = True

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_task: float = 1.0,
                 max_retries: int = 3, init_kwargs: dict[str, Any] | None = None,
                 train_batch: str = "global") -> None:
        self.address = address
        self.train_batch = train_batch
        self.workers_ = workers
        self.cpus_per_task = cpus_per_task
        self.max_retries = max_retries
        self.init_kwargs = dict(init_kwargs or {})
        self._started = False
        self._remote: dict[Any, Any] = {}

    # -- the cluster ------------------------------------------------------------------------------
    def start(self) -> "RayRunner":
        """Connect (or start a local instance); idempotent."""
        ray = import_ray()
        if ray.is_initialized():
            return self
        kwargs: dict[str, Any] = {"log_to_driver": False, "ignore_reinit_error": True, "logging_level": "ERROR"}
        if self.address is None and not os.environ.get("RAY_ADDRESS"):
            same_code_for_workers()
            kwargs.update(include_dashboard=False)
            if self.workers_:
                kwargs["num_cpus"] = int(self.workers_)
        kwargs.update(self.init_kwargs)
        try:
            ray.init(address=self.address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = self.address or os.environ.get("RAY_ADDRESS") or "a local instance"
            msg = " ".join(str(exc).split())[:200]
            raise RunnerError(f"cannot start or reach Ray at {where}: {msg}; check the address "
                              f"(`ray status` on the head node prints it) or drop --ray-address to start one here") from None
        self._started = True
        return self

    @property
    def ray(self) -> Any:
        self.start()
        return import_ray()

    @property
    def workers(self) -> int:
        if self.workers_:
            return int(self.workers_)
        cpus = self.ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // max(self.cpus_per_task, 1e-9)))

    def check_fits(self, count: int, cpus: float, what: str) -> None:
        """`count` processes of `cpus` CPUs each must fit the cluster, else Ray would wait forever."""
        total = self.ray.cluster_resources().get("CPU", 0)
        if count * cpus > total + 1e-9:
            raise RunnerError(f"{what}: {count} workers x {cpus:g} CPU need {count * cpus:g} CPUs but the Ray cluster "
                              f"has {total:g}; pass --workers {max(1, int(total // max(cpus, 1e-9)))} or add nodes")

    def describe(self) -> dict[str, Any]:
        ray = self.ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"runner": self.name, "workers": self.workers, "nodes": len(nodes),
                "cpus": ray.cluster_resources().get("CPU", 0), "ray": ray.__version__}

    def close(self) -> None:
        if self._started:
            import_ray().shutdown()
            self._started = False

    # -- work -------------------------------------------------------------------------------------
    def _task(self, fn: Callable[..., Any]) -> Any:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(num_cpus=self.cpus_per_task, max_retries=self.max_retries)(fn)
        return self._remote[fn]

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any], shared: Any = None,
            ordered: bool = True) -> Iterator[Any]:
        """Tasks `fn(shared, item)`, at most `workers` in flight; a task whose worker process dies is
        retried (`max_retries`), which is safe because every piece of work here is deterministic."""
        ray = self.ray
        task = self._task(fn)
        shared_ref = ray.put(shared)
        window = self.workers  # one task per worker: `workers` is the parallelism, on any cluster size
        source = enumerate(items)
        inflight: dict[Any, int] = {}
        ready: dict[int, Any] = {}
        next_out = 0
        exhausted = False
        try:
            while True:
                while not exhausted and len(inflight) + len(ready) < window:
                    try:
                        k, item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    inflight[task.remote(shared_ref, item)] = k
                if not inflight and not ready:
                    return
                if inflight:
                    done, _ = ray.wait(list(inflight), num_returns=1)
                    for ref in done:
                        k = inflight.pop(ref)
                        res = _get(ray, ref)
                        if ordered:
                            ready[k] = res
                        else:
                            yield k, res
                while ordered and next_out in ready:
                    yield ready.pop(next_out)
                    next_out += 1
        finally:
            for ref in inflight:
                ray.cancel(ref, force=False)


def _get(ray: Any, ref: Any) -> Any:
    """`ray.get`, with a user error (SynthloopError) raised in a worker re-raised as itself."""
    from synthloop.errors import SynthloopError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(getattr(exc, "cause", None), SynthloopError):
            raise exc.cause from None
        raise
