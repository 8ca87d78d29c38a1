"""`synthloop refine SPEC_OR_DATA --targets targets.yaml -o OUT`: the loop on the command line.

Prints a table per iteration (metric, target, value, action) and writes OUT (the best iteration's
rows) plus, beside it, `<stem>.history.json`, `<stem>.log.jsonl` (one line per iteration) and
`<stem>.report.html` (the evaluation report with a "refinement history" section, or the history
alone for a prompted spec, which has no real table to compare with).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer


def output_paths(out: Path) -> dict[str, Path]:
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    if out.name.endswith(".csv.gz"):
        stem = out.name[: -len(".csv.gz")]
    return {"data": out, "history": out.with_name(stem + ".history.json"), "log": out.with_name(stem + ".log.jsonl"),
            "report": out.with_name(stem + ".report.html"), "report_json": out.with_name(stem + ".report.json")}


def iteration_table(rec: dict[str, Any]) -> Any:
    """A rich table of one iteration: every check, then the actions taken."""
    from rich.table import Table

    t = Table(title=f"iteration {rec['iteration']}: {rec['rows']:,} rows, {rec['n_unmet']} missed, {rec['seconds']['total']:.1f} s",
              title_justify="left")
    for c in ("metric", "target", "value", "met", "action"):
        t.add_column(c, justify="right" if c == "value" else "left")
    acts = [a["summary"] for a in rec["actions"]]
    for i, c in enumerate(rec["checks"]):
        v = "n/a" if c["value"] is None else f"{c['value']:.4f}"
        t.add_row(c["metric"], c["target"], v, "[green]yes[/]" if c["met"] else "[red]no[/]", acts[i] if i < len(acts) else "")
    for a in acts[len(rec["checks"]):]:
        t.add_row("", "", "", "", a)
    return t


def write_outputs(result: Any, engine: Any, out: Path, title: str | None = None, report: bool = True) -> dict[str, Path]:
    """Write the data, the JSON history and the HTML report (see module docstring)."""
    from synthloop.io import write_table, write_text
    from synthloop.refine.report import history_section, standalone_html

    paths = output_paths(out)
    write_table(result.data, paths["data"])
    result.to_json(paths["history"])
    if report:
        title = title or f"synthloop refine: {out.name}"
        if getattr(engine, "train", None) is not None:
            from synthloop.evaluate.report import render_html
            from synthloop.evaluate.suite import evaluate

            t = engine.targets
            protected = list(dict.fromkeys([*t.protected, *t.parity, *t.shares]))
            ev = evaluate(engine.train, result.data, holdout=engine.holdout, target=t.target, protected=protected,
                          schema=engine.schema, seed=t.seed, max_rows=3000)
            ev.to_json(paths["report_json"])
            write_text(render_html(ev.data, title=title, extra_sections=[history_section(result)]), paths["report"])
        else:
            write_text(standalone_html(result, title), paths["report"])
            paths.pop("report_json")
    else:
        paths.pop("report")
        paths.pop("report_json")
    return paths


def register(app: typer.Typer) -> None:
    """Add the `refine` command to the synthloop app."""

    @app.command("refine")
    def refine_cmd(
        source: Path = typer.Argument(..., metavar="SPEC_OR_DATA", help="A prompted YAML spec, or a real table (CSV/Parquet) to learn."),
        targets: Optional[Path] = typer.Option(None, "--targets", "-t", help="Targets YAML (shares, parity, min_shares, ranges, metrics, budget)."),
        output: Path = typer.Option(..., "-o", "--out", help="Output table; history, log and report are written beside it."),
        iterations: Optional[int] = typer.Option(None, "--iterations", help="Iteration budget (overrides the targets file)."),
        seconds: Optional[float] = typer.Option(None, "--seconds", help="Time budget in seconds (overrides the targets file)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed (overrides the targets file)."),
        no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Prompted specs: do not read or write the LLM response cache."),
        strict: bool = typer.Option(False, "--strict", help="Exit with code 1 when the kept iteration misses a target."),
        api_key_env: Optional[str] = typer.Option(None, "--api-key-env", metavar="NAME",
                                                  help="Environment variable holding the API key (overrides the spec's llm.api_key_env; "
                                                       "the targets' judge_llm may name it too). A file alone may only name *_API_KEY variables."),
        allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", metavar="DIR",
                                                       help="A folder besides the spec's own that seed (few-shot) files may lie in (repeatable)."),
    ) -> None:
        """Generate, measure against targets, diagnose, change sampling or prompts, repeat; keep the best iteration."""
        from rich.console import Console

        from synthloop.errors import SynthloopError
        from synthloop.refine.loop import make_engine, run_loop
        from synthloop.refine.targets import Targets, load_targets

        if not source.exists():
            raise SynthloopError(f"{source}: file not found; give a YAML spec or a data table")
        tg = load_targets(targets, api_key_env) if targets else Targets()
        upd: dict[str, Any] = {}
        if iterations is not None or seconds is not None:
            upd["budget"] = tg.budget.model_copy(update={k: v for k, v in (("iterations", iterations), ("seconds", seconds)) if v is not None})
        if seed is not None:
            upd["seed"] = seed
        if upd:
            tg = tg.model_copy(update=upd)
        paths = output_paths(output)
        paths["log"].parent.mkdir(parents=True, exist_ok=True)
        console = Console()
        engine = make_engine(source, tg, cache_dir=False if no_cache else None, work_dir=paths["log"].parent,
                             allow_dirs=allow_dir or (), api_key_env=api_key_env)
        result = run_loop(engine, engine.targets, log_path=paths["log"], on_iteration=lambda rec: console.print(iteration_table(rec)))
        console.print(f"stopped: {result.stop_reason}; kept iteration {result.best_iteration} of {result.iterations} "
                      f"({'all targets met' if result.met else 'some targets missed'}) in {result.seconds:.1f} s")
        written = write_outputs(result, engine, output, report=not no_report)
        for p in written.values():
            console.print(f"wrote {p}")
        if strict and not result.met:
            raise typer.Exit(1)
