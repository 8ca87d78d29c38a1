"""`synthloop report REAL SYNTHETIC`: the full evaluation as one self-contained HTML file plus a JSON file beside it."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from synthloop.commands._common import load_schema_overrides, out, progress


def register(app: typer.Typer) -> None:
    """Add `report` to the app."""

    @app.command("report")
    def report(
        real: Path = typer.Argument(..., help="Real table the synthesizer learned from."),
        synthetic: Path = typer.Argument(..., help="Synthetic table."),
        holdout: Optional[Path] = typer.Option(None, "--holdout", help="Real rows the synthesizer never saw (privacy, utility testing)."),
        target: Optional[str] = typer.Option(None, "--target", help="Column to predict for utility (TSTR vs TRTR) and demographic parity."),
        protected: Optional[List[str]] = typer.Option(None, "--protected", help="Protected attribute column; repeat for several (e.g. --protected sex --protected race)."),
        output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write; the JSON goes beside it (.json)."),
        schema: Optional[Path] = typer.Option(None, "--schema", help="YAML overrides of column kinds."),
        seed: int = typer.Option(0, "--seed", help="Seed of every sample and model in the evaluation."),
        title: Optional[str] = typer.Option(None, "--title", help="Title of the report page."),
        metadata: Optional[Path] = typer.Option(None, "--metadata", help="Database metadata YAML when REAL and SYNTHETIC "
                                                "are folders of tables (default: detected from REAL)."),
    ) -> None:
        """Fidelity, detection, utility, privacy, fairness, coverage and constraints in one HTML report (+ JSON);
        for two folders of tables, a database report with a section per table and per relationship."""
        if real.is_dir() or synthetic.is_dir():
            from synthloop.database import report_dirs

            report_dirs(real, synthetic, metadata, output, title)
            return
        from synthloop.errors import SynthloopError
        from synthloop.evaluate.suite import evaluate
        from synthloop.io import read_table
        from synthloop.schema import infer_schema

        if output.suffix.lower() not in (".html", ".htm"):
            raise SynthloopError(f"{output}: the report is HTML; give a file name ending in .html")
        protected_cols = [p for item in (protected or []) for p in item.split(",") if p.strip()]
        real_df = read_table(real)
        synth_df = read_table(synthetic)
        hold_df = read_table(holdout) if holdout else None
        overrides = load_schema_overrides(schema)
        sch = infer_schema(real_df, overrides=overrides, source=str(schema)) if overrides else infer_schema(real_df)
        for name, where in ([(target, "--target")] if target else []) + [(p, "--protected") for p in protected_cols]:
            if name not in real_df.columns:
                raise SynthloopError(f"{where} {name}: no such column in {real}; columns are {', '.join(map(str, real_df.columns[:10]))}")
        with progress(bar=False) as bar:
            bar.add_task(f"evaluating {len(synth_df):,} synthetic rows against {len(real_df):,} real rows", total=None)
            result = evaluate(real_df, synth_df, holdout=hold_df, target=target, protected=protected_cols,
                              schema=sch, seed=seed)
        json_path = output.with_suffix(".json")
        result.to_json(json_path)
        result.to_html(output, title=title or f"Synthetic data report: {synthetic.name} vs {real.name}")
        out.print(result.summary())
        out.print(f"wrote {output}")
        out.print(f"wrote {json_path}")
