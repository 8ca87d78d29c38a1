"""What the studio's background jobs do, each one call into the library (run in a child process).

Every task takes (params, root, job_id, emit) and returns a small JSON-safe result. Paths in params
are relative to the studio's folder and were checked by the server. A task that produces rows
writes a run folder `runs/<job id>/` whose `run.json`, written last, is what lists it as a run.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np  # noqa: F401 - imported here so the forkserver preloads it for every job
import pandas as pd

# What the jobs use, imported once in the forkserver (this module is its preload), so that each job
# forks warm instead of spending seconds on imports; torch stays out (only the deep models need it).
import synthloop.evaluate.detection  # noqa: E402,F401
import synthloop.evaluate.report  # noqa: E402,F401
import synthloop.evaluate.suite  # noqa: E402,F401
import synthloop.generate.runner  # noqa: E402,F401
import synthloop.refine.engines  # noqa: E402,F401
import synthloop.refine.loop  # noqa: E402,F401
import synthloop.schema  # noqa: E402,F401
import synthloop.synthesizers.copula  # noqa: E402,F401

Emit = Callable[[dict[str, Any]], None]


def _progress(emit: Emit, frac: float, message: str) -> None:
    emit({"type": "progress", "progress": max(0.0, min(1.0, frac)), "message": message})


def _ticker(emit: Emit, start: float, stop: float, seconds: float, message: str) -> threading.Event:
    """Move the bar from `start` toward `stop` over `seconds` (a fit reports no progress of its own)."""
    done = threading.Event()
    t0 = time.perf_counter()

    def run() -> None:
        while not done.wait(0.5):
            el = time.perf_counter() - t0
            _progress(emit, start + (stop - start) * min(0.98, el / max(seconds, 1e-6)), f"{message} ({el:.0f} s)")

    threading.Thread(target=run, daemon=True).start()
    return done


def _run_dir(root: Path, job_id: str) -> Path:
    d = root / "runs" / job_id
    d.mkdir(parents=True, exist_ok=True)
    return d


def _write_run(run_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    from synthloop.io import write_text

    info = {"id": run_dir.name, "created": time.time(), **info}
    write_text(json.dumps(info, indent=2, default=str) + "\n", run_dir / "run.json")
    return info


def _figures(ev: Any) -> dict[str, Any]:
    """The headline figures of an evaluation, for the runs list."""
    fid = ev.to_dict().get("fidelity", {})
    q = fid.get("quality", {}) or {}
    out = {k: q.get(k) for k in ("quality_score", "column_shapes", "column_pair_trends")}
    out["detection_auc"] = (fid.get("detection") or {}).get("detection_auc")
    return {k: round(float(v), 4) for k, v in out.items() if isinstance(v, (int, float)) and v == v}


def fit(params: dict[str, Any], root: Path, job_id: str, emit: Emit) -> dict[str, Any]:
    """Read the table, infer the schema with the user's overrides, fit the model, save it."""
    from synthloop.io import read_table
    from synthloop.schema import infer_schema
    from synthloop.synthesizers.factory import make_synthesizer

    _progress(emit, 0.02, "reading the table")
    table = root / params["table"]
    df = read_table(table)
    _progress(emit, 0.1, f"inferring the schema ({len(df):,} rows x {df.shape[1]} columns)")
    overrides = params.get("overrides") or None
    sch = infer_schema(df, overrides={"columns": overrides} if overrides else None, source="studio overrides")
    budget = params.get("budget_s")
    synth = make_synthesizer(params.get("model", "copula"), int(params.get("seed", 0)),
                             max_seconds=float(budget) if budget else None, shape=df.shape)
    expect = float(getattr(synth, "max_seconds", None) or budget or 5.0)
    done = _ticker(emit, 0.15, 0.95, expect, f"fitting {synth.name}")
    try:
        t0 = time.perf_counter()
        synth.fit(df, sch)
        seconds = time.perf_counter() - t0
    finally:
        done.set()
    out = root / params["out"]
    out.parent.mkdir(parents=True, exist_ok=True)
    synth.save(out)
    _progress(emit, 1.0, "saved")
    return {"model": params["out"], "name": synth.name, "rows": int(len(df)), "seconds": round(seconds, 3),
            "table": params["table"], "schema": json.loads(synth.schema_.to_json())}


def condition_value(col: Any, value: Any) -> Any:
    """A form value as the model's condition: numbers for numeric columns, `a..b` a range, a category's own type."""
    from synthloop.errors import ConditionError
    from synthloop.schema.model import ColumnKind

    text = str(value).strip()
    if col.kind == ColumnKind.NUMERICAL:
        try:
            if ".." in text:
                lo, hi = text.split("..", 1)
                return (float(lo), float(hi))
            return float(text)
        except ValueError:
            raise ConditionError(f"condition on '{col.name}': '{text}' is not a number (or LOW..HIGH)") from None
    for c in col.categories or []:
        if str(c) == text:
            return c
    return text


def sample(params: dict[str, Any], root: Path, job_id: str, emit: Emit) -> dict[str, Any]:
    """Draw rows from a saved model (with conditions), write CSV and Parquet, evaluate against the table."""
    from synthloop.errors import ConditionError
    from synthloop.io import read_table, write_table
    from synthloop.synthesizers import load_synthesizer

    _progress(emit, 0.05, "loading the model")
    synth = load_synthesizer(root / params["model"])
    conditions: dict[str, Any] = {}
    for cond in params.get("conditions") or []:
        name = cond.get("column")
        if name not in synth.schema_:
            raise ConditionError(f"condition on '{name}': no such column; columns: {', '.join(synth.schema_.names)}")
        conditions[name] = condition_value(synth.schema_[name], cond.get("value", ""))
    rows = int(params.get("rows") or synth.n_rows_ or 100)
    seed = params.get("seed")
    _progress(emit, 0.2, f"sampling {rows:,} rows")
    df = synth.sample(rows, seed=None if seed in (None, "") else int(seed), conditions=conditions or None)
    run = _run_dir(root, job_id)
    write_table(df, run / "data.csv")
    write_table(df, run / "data.parquet")
    files = ["data.csv", "data.parquet"]
    figures: dict[str, Any] = {}
    table = params.get("table")
    if table and not conditions:  # a conditioned draw is meant to differ from the table
        _progress(emit, 0.5, "evaluating against the real table")
        from synthloop.evaluate.suite import evaluate

        real = read_table(root / table)
        ev = evaluate(real, df, schema=synth.schema_, max_rows=int(params.get("eval_rows", 2000)),
                      detection=bool(params.get("detection", True)))
        ev.to_html(run / "report.html", title=f"synthloop studio: {params['model']}")
        files.append("report.html")
        figures = _figures(ev)
    _progress(emit, 1.0, "written")
    return _write_run(run, {"kind": "sample", "source": params["model"], "table": table, "seed": seed, "rows": int(len(df)),
                            "conditions": {k: list(v) if isinstance(v, tuple) else v for k, v in conditions.items()},
                            "figures": figures, "files": files})


def generate(params: dict[str, Any], root: Path, job_id: str, emit: Emit) -> dict[str, Any]:
    """Run a saved prompted spec, as `synthloop generate` does, into a run folder."""
    from synthloop.generate.runner import PromptedGenerator
    from synthloop.io import write_table
    from synthloop.spec import load_spec

    spec = load_spec(root / params["spec"])
    rows = int(params.get("rows") or spec.rows)
    run = _run_dir(root, job_id)

    def on_progress(p: dict[str, Any]) -> None:
        done, total = p.get("done", 0), p.get("total", rows) or rows
        _progress(emit, 0.05 + 0.9 * done / max(total, 1), f"{done} of {total} rows")

    res = PromptedGenerator(spec).generate(rows, out=run / "data.csv", on_progress=on_progress)
    write_table(res.data, run / "data.parquet")
    _progress(emit, 1.0, "written")
    figures = {k: v for k, v in res.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return _write_run(run, {"kind": "generate", "source": params["spec"], "seed": spec.seed, "rows": int(len(res.data)),
                            "figures": figures, "files": sorted(p.name for p in run.iterdir() if p.is_file())})


def refine(params: dict[str, Any], root: Path, job_id: str, emit: Emit) -> dict[str, Any]:
    """The refine loop on a spec or a table; each iteration's record is sent as it finishes."""
    from synthloop.refine.loop import make_engine, run_loop
    from synthloop.refine.outputs import write_outputs
    from synthloop.refine.targets import load_targets

    targets = load_targets(root / params["targets"])
    if params.get("iterations"):
        targets = targets.model_copy(update={"budget": targets.budget.model_copy(update={"iterations": int(params["iterations"])})})
    run = _run_dir(root, job_id)
    _progress(emit, 0.02, "preparing")
    engine = make_engine(root / params["source"], targets, cache_dir=False, work_dir=run)
    total = engine.targets.budget.iterations

    def on_iteration(rec: dict[str, Any]) -> None:
        emit({"type": "event", "event": rec})
        _progress(emit, rec["iteration"] / total, f"iteration {rec['iteration']}: {rec['n_unmet']} target(s) missed")

    result = run_loop(engine, engine.targets, log_path=run / "data.log.jsonl", on_iteration=on_iteration)
    _progress(emit, 0.97, "writing the report")
    paths = write_outputs(result, engine, run / "data.csv", title=f"synthloop studio refine: {params['source']}")
    from synthloop.io import write_table

    write_table(result.data, run / "data.parquet")
    names = {k: p.name for k, p in paths.items()}
    files = sorted({*names.values(), "data.parquet"})
    best = result.best
    figures = {c["metric"]: c["value"] for c in best["checks"] if isinstance(c.get("value"), (int, float))}
    return _write_run(run, {"kind": "refine", "source": params["source"], "targets": params["targets"],
                            "seed": engine.targets.seed, "rows": int(len(result.data)), "figures": figures,
                            "files": files, "report": names.get("report"), "iterations": result.iterations,
                            "best_iteration": result.best_iteration, "stop_reason": result.stop_reason,
                            "all_met": result.met})


TASKS: dict[str, Callable[[dict[str, Any], Path, str, Emit], dict[str, Any]]] = {
    "fit": fit, "sample": sample, "generate": generate, "refine": refine,
}

_ = pd  # pandas is preloaded for the same reason as NumPy


def warm() -> None:
    """Run each task once on a tiny table in a scratch folder, so that everything they load lazily
    (readers, PII detectors, the report's template and plot library) is loaded in the forkserver,
    once, and every job forks from a warm process."""
    import tempfile
    import warnings

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="synthloop-studio-warm-") as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(d)
        pd.DataFrame({"a": rng.integers(0, 9, 60), "b": rng.normal(size=60).round(2), "c": rng.choice(["x", "y"], 60)}
                     ).to_csv(root / "t.csv", index=False)
        (root / "s.yaml").write_text("name: w\nrows: 20\ncolumns:\n- name: k\n  sampler: {categorical: {x: 0.5, y: 0.5}}\n"
                                     "- name: v\n  expression: \"k + '1'\"\n")
        (root / "g.yaml").write_text("shares: {k: {x: 0.6, y: 0.4}}\nbudget: {iterations: 1}\n")
        quiet: Emit = lambda msg: None  # noqa: E731
        fit({"table": "t.csv", "out": "m.npz"}, root, "w1", quiet)
        sample({"model": "m.npz", "table": "t.csv", "rows": 60}, root, "w2", quiet)
        generate({"spec": "s.yaml"}, root, "w3", quiet)
        refine({"source": "s.yaml", "targets": "g.yaml"}, root, "w4", quiet)
