"""The refinement loop: generate, measure, diagnose, act, repeat; keep the best iteration.

Stops when every target holds, when the iteration or time budget is spent, when `patience` (2)
iterations in a row bring no gain over the best so far, or when no action applies. Every iteration
is one JSON line in the log: its checks, diagnoses, the actions taken (with diffs) and timings.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from synthloop.refine.actions import diff
from synthloop.refine.diagnose import diagnose
from synthloop.refine.measure import Measurement, measure
from synthloop.refine.targets import Targets


@dataclass
class RefineResult:
    """The best iteration's rows, the whole history, and why the loop stopped."""

    data: pd.DataFrame
    best_iteration: int
    history: list[dict[str, Any]]
    stop_reason: str
    engine: str
    seconds: float
    targets: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, Any]:
        return self.history[self.best_iteration - 1]

    @property
    def met(self) -> bool:
        return all(c["met"] for c in self.best["checks"])

    @property
    def iterations(self) -> int:
        return len(self.history)

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "iterations": self.iterations, "best_iteration": self.best_iteration,
                "all_met": self.met, "stop_reason": self.stop_reason, "seconds": round(self.seconds, 3),
                "targets": self.targets, "history": self.history}

    def to_json(self, path: str | Path | None = None) -> str:
        from synthloop.evaluate.suite import _clean

        text = json.dumps(_clean(self.to_dict()), indent=2, allow_nan=False, default=str)
        if path is not None:
            from synthloop.io import write_text

            write_text(text + "\n", Path(path))
        return text


def _jsonable(obj: Any) -> Any:
    from synthloop.evaluate.suite import _clean

    return json.loads(json.dumps(_clean(obj), default=str))


def run_loop(engine: Any, targets: Targets, log_path: str | Path | None = None,
             on_iteration: Callable[[dict[str, Any]], None] | None = None) -> RefineResult:
    """Drive `engine` (LearnedEngine or PromptedEngine) until the targets hold or a budget is spent."""
    budget = targets.budget
    t0 = time.perf_counter()
    ctx = engine.context()
    history: list[dict[str, Any]] = []
    best: tuple[tuple[int, float], int, pd.DataFrame] | None = None
    no_gain = 0
    stop = "iteration budget spent"
    log = open(log_path, "w", encoding="utf-8") if log_path else None
    last_seconds = 0.0
    try:
        for it in range(1, budget.iterations + 1):
            elapsed = time.perf_counter() - t0
            if budget.seconds is not None and it > 1 and elapsed + last_seconds > budget.seconds:
                stop = f"time budget spent ({elapsed:.0f} s of {budget.seconds:g} s; another iteration takes ~{last_seconds:.0f} s)"
                break
            ti = time.perf_counter()
            state_before = engine.snapshot()
            data = engine.generate(it)
            t_gen = time.perf_counter() - ti
            m: Measurement = measure(data, ctx)
            t_meas = time.perf_counter() - ti - t_gen
            score = m.score()
            gained = best is None or score < best[0]
            if gained:
                best = (score, it, data)
                no_gain = 0
            else:
                no_gain += 1
            diags = [] if m.all_met else diagnose(data, m, ctx)
            record: dict[str, Any] = {
                "iteration": it, "rows": int(len(data)), "met": m.all_met, "n_unmet": m.n_unmet,
                "shortfall": round(m.shortfall, 6), "gain": gained,
                "checks": [c.to_dict() for c in m.checks],
                "diagnoses": [d.to_dict() for d in diags], "actions": [],
                "state": state_before, "seconds": {"generate": round(t_gen, 3), "measure": round(t_meas, 3)},
            }
            if isinstance(engine.state, dict) and engine.state.get("protect") and getattr(engine, "last_protection", None):
                record["protection"] = engine.last_protection
            if isinstance(engine.state, dict) and engine.state.get("bins") and getattr(engine, "last_fill", None):
                record["fill_bins"] = engine.last_fill
            done = None
            if m.all_met:
                done = "all targets met"
            elif no_gain >= budget.patience:
                done = f"no gain for {budget.patience} iterations"
            elif it == budget.iterations:
                done = "iteration budget spent"
            if done is None:
                acts = engine.propose(diags, m, data)
                if not acts:
                    done = "no action applies to the remaining gaps"
                for a in acts:
                    before = engine.snapshot()
                    a.apply(engine.state)
                    a.diff = diff(before, engine.snapshot())
                record["actions"] = [a.to_dict() for a in acts]
            record["seconds"]["total"] = round(time.perf_counter() - ti, 3)
            last_seconds = record["seconds"]["total"]
            record = _jsonable(record)
            history.append(record)
            if log is not None:
                log.write(json.dumps(record, allow_nan=False) + "\n")
                log.flush()
            if on_iteration is not None:
                on_iteration(record)
            if done is not None:
                stop = done
                break
    finally:
        if log is not None:
            log.close()
    assert best is not None
    return RefineResult(data=best[2], best_iteration=best[1], history=history, stop_reason=stop, engine=engine.kind,
                        seconds=time.perf_counter() - t0, targets=_jsonable(targets.model_dump(mode="json")))


def refine(source: Any, targets: Targets | dict[str, Any] | str | Path, *, schema: Any = None, backend: Any = None,
           cache_dir: Any = None, work_dir: str | Path | None = None, log_path: str | Path | None = None,
           on_iteration: Callable[[dict[str, Any]], None] | None = None, allow_dirs: Sequence[str | Path] = (),
           api_key_env: str | None = None) -> RefineResult:
    """Refine until `targets` hold. `source`: a real DataFrame (learned synthesizer), a prompted
    `Spec`, or a path to either (a .yaml spec or a table file). `allow_dirs`/`api_key_env`: the
    user's own choices of seed folders and key variable (see load_spec)."""
    from synthloop.refine.targets import load_targets, parse_targets

    if isinstance(targets, (str, Path)):
        targets = load_targets(targets, api_key_env)
    elif isinstance(targets, dict):
        targets = parse_targets(targets, api_key_env=api_key_env)
    engine = make_engine(source, targets, schema=schema, backend=backend, cache_dir=cache_dir, work_dir=work_dir,
                         allow_dirs=allow_dirs, api_key_env=api_key_env)
    return run_loop(engine, targets, log_path=log_path, on_iteration=on_iteration)


def make_engine(source: Any, targets: Targets, schema: Any = None, backend: Any = None, cache_dir: Any = None,
                work_dir: str | Path | None = None, allow_dirs: Sequence[str | Path] = (),
                api_key_env: str | None = None) -> Any:
    """The engine for `source`; a spec path is loaded with `allow_dirs` and `api_key_env` (see load_spec)."""
    from synthloop.refine.engines import LearnedEngine, PromptedEngine
    from synthloop.spec.models import Spec

    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.suffix.lower() in (".yaml", ".yml"):
            from synthloop.spec import load_spec

            source = load_spec(p, allow_dirs, api_key_env)
        else:
            from synthloop.io import read_table

            source = read_table(p)
    if isinstance(source, Spec):
        if not targets.distribution_targets and not targets.metrics and source.targets:
            targets = targets.model_copy(update={"shares": dict(source.targets), "tolerance": source.target_tolerance})
        return PromptedEngine(source, targets, backend=backend, cache_dir=cache_dir, work_dir=work_dir)
    return LearnedEngine(source, targets, schema=schema)
