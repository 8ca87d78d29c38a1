"""`synthloop audit DATA --model M`: plant canary rows, fit, sample, and count what leaks."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add `audit` to the app."""

    @app.command("audit")
    def audit(
        data: Path = typer.Argument(..., help="Real table to audit a model on (.csv, .tsv, .parquet, .jsonl; .gz allowed)."),
        model: str = typer.Option("auto", "--model", "-m", help="Model to audit: copula, gan, vae, autoregressive, dp, or auto."),
        canaries: int = typer.Option(10, "--canaries", "-k", help="Canary rows to plant (as many again are held out as the baseline)."),
        rows: Optional[int] = typer.Option(None, "-n", "--rows", help="Rows to sample from the fitted model (default: as many as it learned)."),
        schema: Optional[Path] = typer.Option(None, "--schema", help="YAML overrides of the inferred schema (applied to the table with the canaries)."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (deep models)."),
        max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="Time budget for training, in seconds."),
        epsilon: Optional[float] = typer.Option(None, "--epsilon", help="Differential-privacy budget (dp model; vae via DP-SGD)."),
        delta: Optional[float] = typer.Option(None, "--delta", help="DP delta (default 1e-6)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the canaries, the model and the sample."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure to this JSON file."),
    ) -> None:
        """Plant canary rows with unique values, fit, sample, and count the canaries that leak.

        Canaries carry unique category strings and out-of-range extremes; the audit reports how many of
        them (or their values) show up in the output or the model file, and how well a membership attack
        tells planted canaries from held-out ones."""
        import contextlib
        import json

        from rich.table import Table

        from synthloop.commands._common import console, load_schema_overrides, out
        from synthloop.synthesizers.factory import make_synthesizer
        from synthloop.errors import SynthloopError
        from synthloop.evaluate.attacks import canary_audit
        from synthloop.io import read_table, write_text

        if canaries < 1:
            raise SynthloopError(f"--canaries {canaries}: plant at least 1 canary row")
        if rows is not None and rows < 1:
            raise SynthloopError(f"--rows {rows}: sample at least 1 row")
        df = read_table(data)
        overrides = load_schema_overrides(schema)
        make_synthesizer(model, seed, epochs, max_seconds, epsilon, delta)  # bad model or flag: one line, before any work
        with console.status(f"planting {canaries} canaries in {len(df):,} rows, fitting {model}, sampling",
                            spinner="dots") if console.is_terminal else contextlib.nullcontext():
            fig = canary_audit(df, lambda: make_synthesizer(model, seed, epochs, max_seconds, epsilon, delta, shape=df.shape),
                               k=canaries, seed=seed, n_sample=rows, schema=overrides)
        table = Table(title=f"canary audit: {fig['model']} on {data.name} ({canaries} planted, {canaries} held out)")
        for h in ("figure", "planted", "held out (baseline)"):
            table.add_column(h, justify="right" if h != "figure" else "left")
        table.add_row("canaries with a value in the output", str(fig["canaries_released"]), str(fig["held_out_canaries_released"]))
        table.add_row("canaries copied as a row", str(fig["canary_rows_released"]), str(fig["held_out_canary_rows_released"]))
        table.add_row("canary values in the output", f"{fig['canary_values_released']} of {fig['canary_values_planted']}",
                      str(fig["held_out_canary_values_released"]))
        if "canaries_in_model_file" in fig:
            table.add_row("canaries with a value in the model file", str(fig["canaries_in_model_file"]),
                          str(fig["held_out_canaries_in_model_file"]))
        out.print(table)
        out.print(f"membership attack on the canaries: AUC {fig['canary_mia_auc']:.3f} "
                  f"(0.5 = cannot tell planted from held out), advantage {fig['canary_mia_advantage']:.3f}", highlight=False)
        out.print(f"output rows with a number beyond the real table's range: {fig.get('rows_beyond_real_range', 0):,}",
                  highlight=False)
        if fig["canaries_released"]:
            verdict = "the model releases planted values, in columns " + ", ".join(fig["columns_released"][:8])
        elif fig.get("canaries_in_model_file"):
            verdict = "no canary value in the output, but the model file holds some: handle it like the data"
        else:
            verdict = "no canary value in the output or the model file"
        out.print(f"verdict: {verdict}", highlight=False, markup=False)
        if json_out:
            write_text(json.dumps(fig, indent=2), json_out)
            out.print(f"wrote {json_out}", highlight=False)

