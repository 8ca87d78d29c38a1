"""Where the parallel parts of sample, generate, fit and evaluate run: in this process (LocalRunner)
or on a Ray cluster (RayRunner). Ray is imported only when a RayRunner is used, so a plain install
(without the `ray` extra) never loads it; see docs/scale.md."""
from __future__ import annotations

from typing import Any

from synthloop.runners.base import LocalRunner, Runner, RunnerError

__all__ = ["LocalRunner", "RayRunner", "Runner", "RunnerError", "get_runner"]


def __getattr__(name: str) -> Any:
    if name == "RayRunner":  # the class itself imports nothing heavy; Ray loads on first use
        from synthloop.runners.ray_runner import RayRunner

        return RayRunner
    raise AttributeError(f"module 'synthloop.runners' has no attribute '{name}'")


def get_runner(ray: bool = False, address: str | None = None, workers: int | None = None) -> Runner:
    """The runner the CLI flags ask for: `--ray` (start or join a local Ray instance) or
    `--ray-address ADDRESS` (an existing cluster); neither: this process."""
    if not ray and not address:
        return LocalRunner()
    from synthloop.runners.ray_runner import RayRunner

    runner = RayRunner(address=address, workers=workers)
    runner.start()  # fails here, before any work, when Ray is missing or the address is wrong
    return runner
