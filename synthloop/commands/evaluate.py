"""`synthloop evaluate REAL SYNTHETIC`: the headline figures (quality, exact copies, DCR share)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthloop.commands._common import json_default, load_schema_overrides, out, print_figures, progress


def register(app: typer.Typer) -> None:
    """Add `evaluate` to the app."""

    @app.command()
    def evaluate(
        real: Path = typer.Argument(..., help="Real (training) table."),
        synthetic: Path = typer.Argument(..., help="Synthetic table."),
        holdout: Optional[Path] = typer.Option(None, "--holdout", help="Real rows the synthesizer never saw (for DCR share)."),
        schema: Optional[Path] = typer.Option(None, "--schema", help="YAML overrides of column kinds."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure to this JSON file."),
        metadata: Optional[Path] = typer.Option(None, "--metadata", help="Database metadata YAML when REAL and SYNTHETIC "
                                                "are folders of tables (default: detected from REAL)."),
    ) -> None:
        """Quality score (SDMetrics' definitions), exact-copy rate and DCR share; for two folders of tables,
        SDMetrics' multi-table quality, referential integrity and sequence statistics."""
        import json

        if real.is_dir() or synthetic.is_dir():
            from synthloop.database import evaluate_dirs

            evaluate_dirs(real, synthetic, metadata, json_out)
            return

        from synthloop.evaluate.headline import evaluate_tables
        from synthloop.io import read_table, write_text
        from synthloop.schema import infer_schema

        real_df = read_table(real)
        synth_df = read_table(synthetic)
        hold_df = read_table(holdout) if holdout else None
        sch = infer_schema(real_df, overrides=load_schema_overrides(schema), source=str(schema))
        with progress(bar=False) as bar:
            bar.add_task("evaluating", total=None)
            fig = evaluate_tables(real_df, synth_df, hold_df, sch)
        print_figures(fig)
        if json_out:
            write_text(json.dumps(fig, indent=2, default=json_default), json_out)
            out.print(f"wrote {json_out}")
