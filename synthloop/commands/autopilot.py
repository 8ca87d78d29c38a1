"""`synthloop autopilot DATA --targets t.yaml --budget 30m -o OUT`: search generation settings on the
user's downstream objective under privacy and fidelity floors (see synthloop.refine.autopilot)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add `autopilot` to the app."""

    @app.command("autopilot")
    def autopilot_cmd(
        data: Path = typer.Argument(..., help="Real table to learn (.csv, .tsv, .parquet, .jsonl; .gz allowed)."),
        targets: Path = typer.Option(..., "--targets", "-t", help="Targets YAML with an 'objective:' section (and 'autopilot:' floors)."),
        output: Path = typer.Option(..., "-o", "--out", help="Where the best trial's synthetic rows go; the search JSON and report go beside it."),
        budget: str = typer.Option("30m", "--budget", help="Search time, e.g. 90s, 30m, 1h (a resumed search counts the time already spent)."),
        trials: Optional[int] = typer.Option(None, "--trials", help="Stop after this many trials in all (resumed ones included)."),
        journal: Optional[Path] = typer.Option(None, "--journal", help="Optuna journal file (default: OUT's stem + .journal); "
                                               "run the same command again to resume a stopped search."),
        validation: Optional[Path] = typer.Option(None, "--validation", help="Real validation table (overrides objective.validation)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed (overrides the targets file)."),
        spec: Optional[Path] = typer.Option(None, "--spec", help="A mixed spec (learn: DATA) whose LLM columns are written "
                                            "for every trial's rows; their prompt variants are searched too (autopilot.prompts)."),
        no_report: bool = typer.Option(False, "--no-report", help="Skip the HTML report."),
    ) -> None:
        """Tune generation on your downstream model's score on real rows, within privacy and fidelity floors."""
        from synthloop.commands._common import out
        from synthloop.errors import SynthloopError
        from synthloop.io import read_table
        from synthloop.refine.autopilot import Autopilot, parse_budget
        from synthloop.refine.autopilot_report import autopilot_paths, write_autopilot_outputs
        from synthloop.refine.targets import load_targets

        seconds = parse_budget(budget)
        if trials is not None and trials < 1:
            raise SynthloopError(f"--trials {trials}: give at least 1")
        tg = load_targets(targets)
        if seed is not None:
            tg = tg.model_copy(update={"seed": seed})
        if tg.objective is None:
            raise SynthloopError(f"{targets}: no 'objective:' section; autopilot needs one (target, metric, ...)")
        df = read_table(data)
        vpath = validation or (Path(tg.objective.validation) if tg.objective.validation else None)
        if vpath is not None and not vpath.is_absolute() and validation is None:
            vpath = targets.parent / vpath
        val = read_table(vpath) if vpath is not None else None
        jpath = journal or autopilot_paths(output)["journal"]
        loaded = None
        if spec is not None:
            from synthloop.spec import load_spec

            loaded = load_spec(spec)
        ap = Autopilot(tg, seconds, jpath, max_trials=trials, log=out.print, spec=loaded)
        result = ap.run(df, val)
        b = result.best
        base = result.baseline.get("real_only") or result.baseline.get("train_real")
        metric = tg.objective.metric
        if base:
            out.print(f"real rows only: {metric} {base['score']:.4f}")
        if b is None:
            out.print("no trial stayed within every floor; nothing to write but the search record")
        else:
            f = b["figures"]
            out.print(f"best trial {b['number']} ({b['params'].get('model')}): {metric} {f['score']:.4f} "
                      f"(spread {f['spread']:.4f}); dcr_share {f['dcr_share']:.3f}; quality {f['quality_score']:.3f}")
            if f.get("agreement") is not None:
                chosen = {k.split(":", 1)[1]: v for k, v in b["params"].items() if k.startswith("prompt:")}
                out.print(f"LLM texts agreeing with their rows: {f['agreement']:.3f}; prompt choices: {chosen}")
            out.print(f"pareto front: trials {', '.join(map(str, result.pareto))}")
            if result.baseline.get("real_only") and tg.objective.mode == "augment":
                gain = (f["score"] - base["score"]) * (1 if tg.objective.maximize else -1)
                se = f.get("gain_se") or 0.0
                where = f"out of fold ({ap.cv_judge.objective.cv}-fold cross-validation)" if ap.cv else "on the validation rows"
                out.print(f"versus real rows only: {gain:+.4f} (standard error {se:.4f}) {where}"
                          + ("" if gain > 0 else " (no synthetic setting helped; train on the real rows alone)")
                          + (" (within noise: expect less on new rows)" if 0 < gain < 2 * se else ""))
        for s in result.gaps.get("slices", []):
            after = f" -> {s['loss_after']:.3f}" if s.get("loss_after") is not None else ""
            out.print(f"gap: {s['label']} ({s['rows']} rows): loss {s['loss']:.3f}{after} (overall {result.gaps['overall_loss']:.3f})")
        for p in write_autopilot_outputs(result, ap, output, report=not no_report).values():
            out.print(f"wrote {p}")
        out.print(f"journal: {jpath}")
