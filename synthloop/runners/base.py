"""The runner interface: a small set of ways to run independent pieces of work, so that sample,
generate, fit and evaluate say *what* runs in parallel and the runner says *where*."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, TypeVar

from synthloop.errors import SynthloopError

T = TypeVar("T")
R = TypeVar("R")


class RunnerError(SynthloopError):
    """The chosen runner cannot run: Ray is not installed, the cluster cannot be reached, a worker failed."""


class Runner:
    """Base of the runners. `map(fn, items, shared)` calls `fn(shared, item)` for every item and yields
    the results in the items' order (or as they finish with `ordered=False`, as (index, result)).
    `fn` must be a module-level function (it is pickled to the workers); `shared` is sent once."""

    name = "runner"
    distributed = False

    @property
    def workers(self) -> int:
        return 1

    def map(self, fn: Callable[[Any, T], R], items: Iterable[T], shared: Any = None,
            ordered: bool = True) -> Iterator[Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What ran where, for summaries and reports."""
        return {"runner": self.name, "workers": self.workers}

    def close(self) -> None:
        """Release what the runner started (a local Ray instance it started itself)."""

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalRunner(Runner):
    """Everything in this process, one item after another: the default, and the reference the
    distributed runners must reproduce row for row."""

    name = "local"

    def map(self, fn: Callable[[Any, T], R], items: Iterable[T], shared: Any = None,
            ordered: bool = True) -> Iterator[Any]:
        for k, item in enumerate(items):
            res = fn(shared, item)
            yield res if ordered else (k, res)
