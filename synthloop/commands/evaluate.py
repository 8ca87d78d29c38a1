"""`synthloop evaluate REAL SYNTHETIC`: the headline figures (quality, exact copies, DCR share)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthloop.commands._common import (RAY_ADDRESS_HELP, RAY_HELP, WORKERS_HELP, json_default, load_schema_overrides,
                                       make_runner, out, print_figures, progress)


def register(app: typer.Typer) -> None:
    """Add `evaluate` to the app."""

    @app.command()
    def evaluate(
        real: Path = typer.Argument(..., help="Real (training) table."),
        synthetic: Path = typer.Argument(..., help="Synthetic table, or a dataset folder written by `synthloop sample -o FOLDER` "
                                         "(column shapes over all rows by map-reduce, the other figures on a seeded sample)."),
        holdout: Optional[Path] = typer.Option(None, "--holdout", help="Real rows the synthesizer never saw (for DCR share); for a database, a folder of "
                                          "the held-out entities' tables (`split_entities`), DCR share per table."),
        schema: Optional[Path] = typer.Option(None, "--schema", help="YAML overrides of column kinds."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure to this JSON file."),
        metadata: Optional[Path] = typer.Option(None, "--metadata", help="Database metadata YAML when REAL and SYNTHETIC "
                                                "are folders of tables (default: detected from REAL)."),
        sample_rows: int = typer.Option(50_000, "--sample-rows", help="Dataset folder: synthetic rows sampled (seeded) for "
                                        "pair trends, exact copies and DCR share."),
        seed: int = typer.Option(0, "--seed", help="Dataset folder: seed of that sample."),
        ray: bool = typer.Option(False, "--ray", help=RAY_HELP),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDRESS", help=RAY_ADDRESS_HELP),
        workers: Optional[int] = typer.Option(None, "--workers", help=WORKERS_HELP),
    ) -> None:
        """Quality score (SDMetrics' definitions), exact-copy rate and DCR share; for two folders of tables,
        SDMetrics' multi-table quality, referential integrity and sequence statistics."""
        import json

        if real.is_dir():  # a database (folders of tables); a real table with a folder is a partitioned dataset
            from synthloop.database import evaluate_dirs

            evaluate_dirs(real, synthetic, metadata, json_out, holdout)
            return

        from synthloop.evaluate.headline import evaluate_tables
        from synthloop.io import read_table, write_text
        from synthloop.schema import infer_schema

        real_df = read_table(real)
        hold_df = read_table(holdout) if holdout else None
        sch = infer_schema(real_df, overrides=load_schema_overrides(schema), source=str(schema))
        if synthetic.is_dir() or ray or ray_address:
            from synthloop.errors import DataError
            from synthloop.runners.evaluation import evaluate_dataset

            if not synthetic.is_dir():
                raise DataError(f"{synthetic}: --ray evaluates a dataset folder (`synthloop sample -o FOLDER`); "
                                f"a single file is evaluated without --ray")
            with make_runner(ray, ray_address, workers) as runner, progress(bar=False) as bar:
                bar.add_task(f"evaluating ({runner.name})", total=None)
                fig = evaluate_dataset(real_df, synthetic, hold_df, sch, runner, sample_rows=sample_rows, seed=seed)
            print_figures(fig)
            out.print(fig["scale"]["note"])
        else:
            synth_df = read_table(synthetic)
            with progress(bar=False) as bar:
                bar.add_task("evaluating", total=None)
                fig = evaluate_tables(real_df, synth_df, hold_df, sch)
            print_figures(fig)
        if json_out:
            write_text(json.dumps(fig, indent=2, default=json_default), json_out)
            out.print(f"wrote {json_out}")
