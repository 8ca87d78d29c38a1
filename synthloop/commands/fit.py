"""`synthloop fit DATA -o MODEL`: learn a real table and save the model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthloop.commands._common import (RAY_ADDRESS_HELP, RAY_HELP, WORKERS_HELP, load_schema_overrides, make_runner, out,
                                       progress)


def register(app: typer.Typer) -> None:
    """Add `fit` to the app."""

    @app.command()
    def fit(
        data: Path = typer.Argument(..., help="Real table to learn (.csv, .tsv, .parquet, .jsonl; .gz allowed), or a "
                                              "folder of tables (a database: one file per table)."),
        output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.npz; NumPy arrays + JSON, no pickle)."),
        model: str = typer.Option("auto", "--model", "-m",
                                  help="copula (fast, seconds), gan, vae, autoregressive, dp, or auto: fits the copula and "
                                       "the autoregressive model (time budget scaled to the table: 10 s plus 60 s per "
                                       "100,000 cells, at most 300 s) on 80%% of the rows, scores both on the rest with "
                                       "the SDMetrics quality figure and keeps the better, printing both scores; copula "
                                       "without measuring for tables under 500 rows or over 100 columns, or without torch."),
        schema: Optional[Path] = typer.Option(None, "--schema", help="YAML overrides: {columns: {name: {kind: categorical, ...}}}."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (deep models)."),
        max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="Time budget for training, in seconds."),
        epsilon: Optional[float] = typer.Option(None, "--epsilon", help="Differential-privacy budget (dp model; vae via DP-SGD)."),
        delta: Optional[float] = typer.Option(None, "--delta", help="DP delta (default 1e-6)."),
        domain: Optional[str] = typer.Option(None, "--domain", help="DP models: where each column's bounds, categories, "
                                             "decimals and missing share come from: dp (default: estimated under DP from "
                                             "10%% of the budget unless the --schema YAML declares them `public: true`) or "
                                             "public (every column must be declared public; refused otherwise)."),
        combination_guard: Optional[int] = typer.Option(
            None, "--combination-guard", metavar="R",
            help="autoregressive: redraw sampled rows whose R-column combination (2 or 3) of coarse values fewer than "
                 "privacy_k (5) training rows share; lowers singling-out risk at some fidelity cost (README: "
                 "combination guard). Implies the autoregressive model with --model auto."),
        seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same model, same rows."),
        encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of CSV/JSONL input."),
        metadata: Optional[Path] = typer.Option(None, "--metadata", help="Database metadata YAML (keys, relationships, "
                                                "sequences) for a folder of tables; default: detected."),
        ray: bool = typer.Option(False, "--ray", help=RAY_HELP + " autoregressive: data-parallel training on Ray Train; "
                                 "copula: correlation by map-reduce; the model file is the same."),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", metavar="ADDRESS", help=RAY_ADDRESS_HELP),
        workers: Optional[int] = typer.Option(None, "--workers", help=WORKERS_HELP),
    ) -> None:
        """Learn a real table (or a folder of related tables) and save the model."""
        import time

        if data.is_dir():
            from synthloop.database import fit_dir

            fit_dir(data, metadata, output, epochs, max_seconds, seed)
            return

        import pandas as pd

        from synthloop.io import read_table
        from synthloop.schema import infer_schema
        from synthloop.synthesizers.factory import auto_choice, make_synthesizer

        with progress() as bar:
            task = bar.add_task(f"reading {data.name}", total=3)
            df = read_table(data, encoding=encoding)
            bar.update(task, advance=1, description=f"inferring schema ({len(df):,} rows x {df.shape[1]} columns)")
            sch = infer_schema(df, overrides=load_schema_overrides(schema), source=str(schema))
            measured = None
            distributed = ray or bool(ray_address)
            if model == "auto" and epochs is None and combination_guard is None and epsilon is None and delta is None and domain is None and not distributed:
                from synthloop.synthesizers.auto import fit_auto

                make_synthesizer(model, seed, epochs, max_seconds, shape=df.shape)  # bad flags: one line, before any work
                bar.update(task, advance=1, description="--model auto: measuring candidates")
                t0 = time.perf_counter()
                measured = fit_auto(df, sch, seed, max_seconds, log=lambda s: bar.update(task, description=s))
                synth = measured.model
                fit_s = time.perf_counter() - t0
                budget = getattr(synth, "max_seconds", None)
            else:
                synth = make_synthesizer(model, seed, epochs, max_seconds, epsilon, delta, domain, shape=df.shape,
                                         combination_guard=combination_guard)
                budget = getattr(synth, "max_seconds", None)
                bar.update(task, advance=1, description=f"fitting {synth.name}" + (f" (budget {budget:g} s)" if budget else ""))
                t0 = time.perf_counter()
                if distributed:
                    from synthloop.runners.training import fit_distributed

                    with make_runner(ray, ray_address, workers) as runner:
                        fit_distributed(synth, df, runner, sch)
                else:
                    synth.fit(df, sch)
                fit_s = time.perf_counter() - t0
            synth.save(output)
            bar.update(task, advance=1, description="saved")
        kinds = pd.Series([c.kind.value for c in synth.schema_.columns]).value_counts().to_dict()
        used = f" (time budget {budget:g} s{', scaled to the table' if model == 'auto' and max_seconds is None else ''})" \
            if budget else ""
        if measured is not None:
            out.print(measured.summary())
        elif model == "auto" and epochs is None:
            out.print(f"--model auto chose {synth.name}: {auto_choice(df.shape)[1]}")
        out.print(f"model {synth.name} fitted on {len(df):,} row{'' if len(df) == 1 else 's'} in {fit_s:.2f} s{used}; columns: "
                  + ", ".join(f"{v} {k}" for k, v in kinds.items()))
        guarantee = getattr(synth, "privacy_guarantee", None)
        g = guarantee() if callable(guarantee) else None
        if g:
            out.print(f"privacy: {g.get('statement', g) if isinstance(g, dict) else g}")
        out.print(f"wrote {output}")
