"""What a refinement run writes: OUT (the best iteration's rows) plus, beside it,
`<stem>.history.json`, `<stem>.log.jsonl` (one line per iteration) and `<stem>.report.html` (the
evaluation report with a "refinement history" section, or the history alone for a prompted spec,
which has no real table to compare with).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def output_paths(out: Path) -> dict[str, Path]:
    """The data file and, beside it, the history, log and report files of a run writing `out`."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    if out.name.endswith(".csv.gz"):
        stem = out.name[: -len(".csv.gz")]
    return {"data": out, "history": out.with_name(stem + ".history.json"), "log": out.with_name(stem + ".log.jsonl"),
            "report": out.with_name(stem + ".report.html"), "report_json": out.with_name(stem + ".report.json")}


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
