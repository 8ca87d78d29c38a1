"""The studio's background jobs: a queue in the server, each job in its own child process.

A child process (not a thread) is what makes a long fit cancellable at any moment: cancel terminates
it, and nothing it had half-written counts (runs are listed only once their `run.json` exists, which
is written last). `workers` jobs run at once (default 1: the CPU budget of a laptop-sized machine);
the rest wait in order. Children come from a forkserver that, once, at start-up, imported the task
code, ran each task on a tiny table and loaded the server's main module (synthloop/studio/_warm.py),
so a job starts warm in milliseconds, and the server's own threads are never forked.
"""
from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue as _queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("fit", "sample", "generate", "refine")
# forkserver where the platform has it (Linux, macOS); spawn elsewhere (Windows): slower starts, same behaviour
_ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
if _ctx.get_start_method() == "forkserver":
    _ctx.set_forkserver_preload(["synthloop.studio._warm"])
MAIN_ENV = "SYNTHLOOP_STUDIO_MAIN"
WARM_ENV = "SYNTHLOOP_STUDIO_WARM"


@dataclass
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    status: str = "queued"  # queued | running | done | failed | cancelled
    progress: float = 0.0
    message: str = "waiting for a free worker"
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    _process: Any = field(default=None, repr=False)
    _cancel: bool = field(default=False, repr=False)

    def view(self, since: int = 0) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "status": self.status, "progress": round(self.progress, 4),
                "message": self.message, "events": self.events[since:], "n_events": len(self.events),
                "result": self.result, "error": self.error, "created": self.created, "started": self.started,
                "finished": self.finished, "params": self.params}


def _tell_forkserver_the_main_module() -> None:
    """Each child re-imports the parent's main module (the script or `-m` module that started the
    server) unless the forkserver already did; its preload does it from this variable (Python 3.11's
    own `"__main__"` preload never receives the path), so a job does not pay for those imports."""
    from multiprocessing import spawn

    data = spawn.get_preparation_data("studio")
    for key in ("init_main_from_path", "init_main_from_name"):
        if key in data:
            os.environ[MAIN_ENV] = f"{key}={data[key]}"


def _start_forkserver() -> None:
    """Start the forkserver (and its imports) now, not when the first job waits for it."""
    if _ctx.get_start_method() != "forkserver":
        return
    try:
        from multiprocessing import forkserver

        forkserver.ensure_running()
    except Exception:  # noqa: BLE001 - the first job starts it, or reports why it cannot
        pass


def _child(kind: str, params: dict[str, Any], root: str, job_id: str, out: Any) -> None:
    """Runs in the child process: the task, with its progress and events sent back on `out`."""
    from synthloop.errors import SynthloopError
    from synthloop.studio import tasks

    def emit(msg: dict[str, Any]) -> None:
        out.put(msg)

    try:
        result = tasks.TASKS[kind](params, Path(root), job_id, emit)
        out.put({"type": "result", "result": result})
    except SynthloopError as exc:
        out.put({"type": "error", "error": str(exc)})
    except BaseException as exc:  # noqa: BLE001 - reported to the page, with the traceback's last line
        out.put({"type": "error", "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]})


class JobQueue:
    """Jobs in submission order; `workers` at a time; progress read from each child's message queue."""

    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = Path(root)
        self.workers = max(1, int(workers))
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="studio-jobs", daemon=True)
        self._dispatcher.start()
        _tell_forkserver_the_main_module()
        if os.environ.get(WARM_ENV, "1") != "0":  # 0: no warm-up (short-lived servers in tests)
            threading.Thread(target=_start_forkserver, name="studio-forkserver", daemon=True).start()

    def submit(self, kind: str, params: dict[str, Any]) -> Job:
        if kind not in KINDS:
            raise ValueError(f"unknown job kind '{kind}'; use one of {', '.join(KINDS)}")
        with self._wake:
            job = Job(id=f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._ids):03d}-{kind}", kind=kind, params=params)
            self.jobs[job.id] = job
            self._wake.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def list(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)

    def cancel(self, job_id: str) -> Job | None:
        """Queued: dropped. Running: its process is terminated. Finished: unchanged."""
        with self._wake:
            job = self.jobs.get(job_id)
            if job is None or job.status not in ("queued", "running"):
                return job
            job._cancel = True
            if job.status == "queued":
                self._finish(job, "cancelled", "cancelled before it started")
            elif job._process is not None and job._process.pid is not None:
                job._process.terminate()
            # else: marked running but its process is still being started; the dispatcher ends it
            self._wake.notify_all()
        return job

    def close(self) -> None:
        with self._wake:
            self._closed = True
            for job in self.jobs.values():
                if job.status == "running":
                    job._cancel = True
                    if job._process is not None and job._process.pid is not None:
                        job._process.terminate()
            self._wake.notify_all()

    # -- internals ------------------------------------------------------------------------------
    def _finish(self, job: Job, status: str, message: str) -> None:
        job.status, job.message, job.finished = status, message, time.time()
        if status == "done":
            job.progress = 1.0

    def _dispatch(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (
                        sum(j.status == "running" for j in self.jobs.values()) >= self.workers
                        or not any(j.status == "queued" for j in self.jobs.values())):
                    self._wake.wait()
                if self._closed:
                    return
                job = min((j for j in self.jobs.values() if j.status == "queued"), key=lambda j: j.created)
                job.status, job.started, job.message = "running", time.time(), "starting"
                out = _ctx.Queue()
                proc = _ctx.Process(target=_child, args=(job.kind, job.params, str(self.root), job.id, out), daemon=True)
                job._process = proc
            try:
                proc.start()
            except Exception as exc:  # noqa: BLE001 - the job fails, the queue goes on
                with self._wake:
                    job.error = f"cannot start the worker process: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
                    job._process = None
                    self._finish(job, "failed", job.error)
                continue
            with self._wake:
                if job._cancel:  # cancelled (or the queue closed) while the process was starting
                    proc.terminate()
            threading.Thread(target=self._watch, args=(job, proc, out), name=f"studio-job-{job.id}", daemon=True).start()

    def _watch(self, job: Job, proc: Any, out: Any) -> None:
        final: dict[str, Any] | None = None

        def drain(block: bool) -> None:
            nonlocal final
            while True:
                try:
                    msg = out.get(timeout=0.2) if block else out.get_nowait()
                except (_queue.Empty, EOFError, OSError):
                    return
                block = False
                kind = msg.get("type")
                with self._lock:
                    if kind == "progress":
                        job.progress = float(msg.get("progress", job.progress))
                        job.message = str(msg.get("message", job.message))
                    elif kind == "event":
                        job.events.append(msg["event"])
                    else:
                        final = msg

        while proc.is_alive():
            drain(True)
        drain(False)
        proc.join()
        out.close()
        out.join_thread()
        with self._wake:
            if job._cancel:
                self._finish(job, "cancelled", "cancelled while running; its partial outputs are not listed")
            elif final is not None and final["type"] == "result":
                job.result = final["result"]
                self._finish(job, "done", "done")
            elif final is not None:
                job.error = final["error"]
                self._finish(job, "failed", final["error"])
            else:
                job.error = f"the worker process ended with exit code {proc.exitcode}"
                self._finish(job, "failed", job.error)
            job._process = None
            self._wake.notify_all()
