"""synthloop command line: fit, sample, evaluate, schema, demo (and commands registered by feature areas)."""
from __future__ import annotations

import json
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from synthloop.errors import ConditionError, DataError, SynthloopError
from synthloop.io import read_table, write_table, write_text
from synthloop.schema import ColumnKind, TableSchema, infer_schema

app = typer.Typer(
    name="synthloop",
    help="Synthetic tabular data that can replace real data: learn a table (fit), draw new rows (sample), "
         "and measure fidelity and privacy (evaluate).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

DEFAULT_MODEL = "auto"
AUTO_BUDGET_S = 300.0  # the default time budget of `--model auto` (autoregressive training)


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=console, transient=False, disable=not console.is_terminal)


def _load_schema_overrides(path: Optional[Path]) -> Optional[dict[str, Any]]:
    if path is None:
        return None
    from synthloop.io import read_yaml

    data, _ = read_yaml(path, SynthloopError, "schema file")
    return data or {}


def resolve_model(name: str) -> str:
    """`auto` is the best model that fits the default time budget: the autoregressive model when it is
    installed, else the Gaussian copula."""
    from synthloop.synthesizers import available_models

    models = available_models()
    if name == "auto":
        return "autoregressive" if "autoregressive" in models else "copula"
    if name not in models:
        raise SynthloopError(f"unknown model '{name}'; choose one of: auto, {', '.join(models)}")
    return name


def make_synthesizer(model: str, seed: int, epochs: Optional[int] = None, max_seconds: Optional[float] = None,
                     epsilon: Optional[float] = None, delta: Optional[float] = None, domain: Optional[str] = None):
    from synthloop.synthesizers import synthesizer_class

    klass = synthesizer_class(resolve_model(model))
    if model == "auto" and max_seconds is None:
        max_seconds = AUTO_BUDGET_S
    params: dict[str, Any] = {"random_state": seed}
    accepted = klass._get_param_names()
    for flag, key, value in (("--epochs", "epochs", epochs), ("--epsilon", "epsilon", epsilon), ("--delta", "delta", delta),
                             ("--domain", "domain", domain)):
        if value is None:
            continue
        if key not in accepted:
            raise SynthloopError(f"{flag} does not apply to the {klass.name} model")
        params[key] = value
    if max_seconds is not None and "max_seconds" in accepted:
        params["max_seconds"] = max_seconds
    return klass(**{k: v for k, v in params.items() if k in accepted})


@app.command()
def fit(
    data: Path = typer.Argument(..., help="Real table to learn (.csv, .tsv, .parquet, .jsonl; .gz allowed)."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file to write (.npz; NumPy arrays + JSON, no pickle)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="copula (fast, seconds), gan, vae, autoregressive, dp, or auto: the best model "
                                   "that fits the default time budget of 300 s (autoregressive, trained for at "
                                   "most --max-seconds; copula if torch is missing)."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="YAML overrides: {columns: {name: {kind: categorical, ...}}}."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (deep models)."),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="Time budget for training, in seconds."),
    epsilon: Optional[float] = typer.Option(None, "--epsilon", help="Differential-privacy budget (dp model; vae via DP-SGD)."),
    delta: Optional[float] = typer.Option(None, "--delta", help="DP delta (default 1e-6)."),
    domain: Optional[str] = typer.Option(None, "--domain", help="DP models: where each column's bounds, categories, "
                                         "decimals and missing share come from: dp (default: estimated under DP from "
                                         "10%% of the budget unless the --schema YAML declares them `public: true`) or "
                                         "public (every column must be declared public; refused otherwise)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same model, same rows."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of CSV/JSONL input."),
) -> None:
    """Learn a real table and save the model."""
    with _progress() as progress:
        task = progress.add_task(f"reading {data.name}", total=3)
        df = read_table(data, encoding=encoding)
        progress.update(task, advance=1, description=f"inferring schema ({len(df):,} rows x {df.shape[1]} columns)")
        sch = infer_schema(df, overrides=_load_schema_overrides(schema), source=str(schema))
        synth = make_synthesizer(model, seed, epochs, max_seconds, epsilon, delta, domain)
        progress.update(task, advance=1, description=f"fitting {synth.name}")
        t0 = time.perf_counter()
        synth.fit(df, sch)
        fit_s = time.perf_counter() - t0
        synth.save(output)
        progress.update(task, advance=1, description="saved")
    kinds = pd.Series([c.kind.value for c in synth.schema_.columns]).value_counts().to_dict()
    out.print(f"model [bold]{synth.name}[/] fitted on {len(df):,} rows in {fit_s:.2f} s; columns: "
              + ", ".join(f"{v} {k}" for k, v in kinds.items()))
    guarantee = getattr(synth, "privacy_guarantee", None)
    g = guarantee() if callable(guarantee) else None
    if g:
        out.print(f"privacy: {g.get('statement', g) if isinstance(g, dict) else g}")
    out.print(f"wrote {output}")


def _parse_condition(text: str, schema: TableSchema) -> tuple[str, Any]:
    if "=" not in text:
        raise ConditionError(f"--condition '{text}': expected COLUMN=VALUE or COLUMN=LOW..HIGH")
    name, value = text.split("=", 1)
    name = name.strip()
    if name not in schema:
        raise ConditionError(f"condition on unknown column '{name}'; columns are: {', '.join(schema.names)}")
    col = schema[name]
    if col.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
        m = re.fullmatch(r"\s*(.+?)\s*\.\.\s*(.+?)\s*", value)
        conv = float if col.kind == ColumnKind.NUMERICAL else str
        try:
            if m:
                return name, (conv(m.group(1)), conv(m.group(2)))
            return name, conv(value)
        except ValueError:
            raise ConditionError(f"condition on '{name}': '{value}' is not a number") from None
    cats = col.categories or []
    for c in cats:  # match the category's own type ("1" -> 1 for integer-coded categories)
        if str(c) == value:
            return name, c
    return name, value


@app.command()
def sample(
    model: Path = typer.Argument(..., help="Model file written by `synthloop fit`."),
    n: Optional[int] = typer.Option(None, "-n", "--rows",
                                    help="Rows to draw (default: as many as the training table), at most 1,000,000,000. "
                                         "More than 1,000,000 rows are drawn in batches of 1,000,000 (batch i seeded "
                                         "from --seed and i, so the output is deterministic) streamed to the file."),
    output: Path = typer.Option(..., "-o", "--output", help="Output table; format from the extension: .csv, .parquet, .jsonl."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for this draw (default: the model's seed)."),
    condition: Optional[list[str]] = typer.Option(None, "--condition", "-c",
                                                  help="COLUMN=VALUE or COLUMN=LOW..HIGH; repeat for several columns."),
    known: Optional[Path] = typer.Option(None, "--known", help="Table of known columns; one output row per row, the rest filled in."),
) -> None:
    """Draw new rows from a saved model, optionally conditioned."""
    from synthloop.io import write_table_batches
    from synthloop.synthesizers import load_synthesizer
    from synthloop.synthesizers.base import BATCH_ROWS, MAX_TOTAL_ROWS

    if n is not None and not 1 <= n <= MAX_TOTAL_ROWS:
        raise ConditionError(f"-n {n}: draw between 1 and {MAX_TOTAL_ROWS:,} rows per run")
    if seed is not None and seed < 0:
        raise ConditionError(f"--seed {seed}: a seed is a whole number >= 0")
    synth = load_synthesizer(model)
    conditions: Any = None
    if known is not None:
        if condition:
            raise ConditionError("use either --condition or --known, not both")
        conditions = read_table(known)
    elif condition:
        conditions = dict(_parse_condition(c, synth.schema_) for c in condition)
    rows = n if n is not None or isinstance(conditions, pd.DataFrame) else synth.n_rows_
    total = rows if rows is not None else len(conditions)
    with _progress() as progress:
        task = progress.add_task(f"sampling {total:,} rows", total=total)
        t0 = time.perf_counter()
        batches = synth.sample_batches(rows, seed=seed, conditions=conditions, batch_rows=BATCH_ROWS)
        _, written = write_table_batches(batches, output, on_batch=lambda k: progress.update(task, advance=k))
        sample_s = time.perf_counter() - t0
    out.print(f"sampled {written:,} rows in {sample_s:.2f} s")
    out.print(f"wrote {output}")


def evaluate_tables(real: pd.DataFrame, synth: pd.DataFrame, holdout: Optional[pd.DataFrame],
                    schema: TableSchema) -> dict[str, Any]:
    """Headline figures: quality (SDMetrics definitions), exact copies, DCR share against a holdout."""
    from synthloop.evaluate import dcr_share, exact_copy_rate, quality_score

    missing = [c for c in schema.names if c not in synth.columns]
    if missing:
        raise DataError(f"synthetic table lacks column '{missing[0]}' of the real table")
    q = quality_score(real, synth, schema)
    figures: dict[str, Any] = {
        "rows_real": len(real), "rows_synthetic": len(synth),
        "quality_score": q.score, "column_shapes": q.column_shapes, "column_pair_trends": q.column_pair_trends,
        "exact_copy_rate": exact_copy_rate(real, synth, schema),
    }
    if holdout is not None:
        figures.update(dcr_share(real, synth, holdout, schema))
        figures["holdout_exact_copy_rate"] = exact_copy_rate(real, holdout, schema)
    figures["details"] = {"shapes": q.shapes.to_dict(orient="records"), "pairs": q.pairs.to_dict(orient="records")}
    return figures


def _print_figures(fig: dict[str, Any]) -> None:
    table = Table(title="synthetic vs real", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("ideal", justify="right")
    ideals = {"quality_score": "1.0", "column_shapes": "1.0", "column_pair_trends": "1.0", "exact_copy_rate": "0.0",
              "dcr_share": "0.5", "holdout_exact_copy_rate": "-"}
    for k, ideal in ideals.items():
        if k in fig:
            table.add_row(k, f"{fig[k]:.4f}", ideal)
    out.print(table)


@app.command()
def evaluate(
    real: Path = typer.Argument(..., help="Real (training) table."),
    synthetic: Path = typer.Argument(..., help="Synthetic table."),
    holdout: Optional[Path] = typer.Option(None, "--holdout", help="Real rows the synthesizer never saw (for DCR share)."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="YAML overrides of column kinds."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write every figure to this JSON file."),
) -> None:
    """Quality score (SDMetrics' definitions), exact-copy rate and DCR share."""
    real_df = read_table(real)
    synth_df = read_table(synthetic)
    hold_df = read_table(holdout) if holdout else None
    sch = infer_schema(real_df, overrides=_load_schema_overrides(schema), source=str(schema))
    with _progress() as progress:
        progress.add_task("evaluating", total=None)
        fig = evaluate_tables(real_df, synth_df, hold_df, sch)
    _print_figures(fig)
    if json_out:
        write_text(json.dumps(fig, indent=2, default=_json_default), json_out)
        out.print(f"wrote {json_out}")


@app.command("schema")
def schema_cmd(
    data: Path = typer.Argument(..., help="Table to inspect."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the schema (.yaml or .json) for editing."),
) -> None:
    """Infer column kinds, bounds, formats and null shares; write them as YAML/JSON to edit and pass back with --schema."""
    df = read_table(data)
    sch = infer_schema(df)
    table = Table(title=f"{data.name}: {len(df):,} rows")
    for h in ("column", "kind", "dtype", "missing", "details"):
        table.add_column(h)
    for c in sch.columns:
        detail = (f"[{c.min:g}, {c.max:g}] decimals={c.decimals}" if c.kind == ColumnKind.NUMERICAL else
                  f"{len(c.categories or [])} categories" if c.categories is not None else
                  c.datetime_format or (c.pii_type.value if c.pii_type else "") or (c.id_pattern or ""))
        table.add_row(c.name, c.kind.value, c.dtype, f"{c.missing_share:.1%}", detail)
    out.print(table)
    if output:
        write_text(sch.to_json() if output.suffix == ".json" else sch.to_yaml(), output)
        out.print(f"wrote {output}")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("outputs/demo"), "--out", help="Folder for the model, synthetic data and report."),
    model: str = typer.Option("copula", "--model", "-m", help="Model to fit on the demo table."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Learn the embedded demo table (5,000 rows of UCI Adult, CC BY 4.0), sample, evaluate, report."""
    from synthloop.data import demo_path

    df = read_table(demo_path())
    train, holdout = df.iloc[:4000].reset_index(drop=True), df.iloc[4000:].reset_index(drop=True)
    sch = infer_schema(df)
    with _progress() as progress:
        task = progress.add_task("fitting", total=3)
        synth = make_synthesizer(model, seed).fit(train, sch)
        model_path = synth.save(out_dir / "model.npz")
        progress.update(task, advance=1, description="sampling")
        syn = synth.sample(len(train), seed=seed)
        data_path = write_table(syn, out_dir / "synthetic.csv")
        progress.update(task, advance=1, description="evaluating")
        fig = evaluate_tables(train, syn, holdout, sch)
        fig["model"] = synth.name
        json_path = write_text(json.dumps(fig, indent=2, default=_json_default), out_dir / "report.json")
        html_path = _maybe_html_report(train, syn, holdout, out_dir / "report.html")
        progress.update(task, advance=1, description="done")
    _print_figures(fig)
    out.print(f"model:          {model_path}")
    out.print(f"synthetic data: {data_path}")
    out.print(f"report (JSON):  {json_path}")
    if html_path:
        out.print(f"report (HTML):  {html_path}")


def _maybe_html_report(train: pd.DataFrame, syn: pd.DataFrame, holdout: pd.DataFrame, path: Path) -> Optional[Path]:
    """The HTML report when the evaluation suite provides one."""
    try:
        import synthloop.evaluate as ev
        result = ev(train, syn, holdout=holdout)  # type: ignore[operator]
    except TypeError:  # the evaluate package is not callable in this build
        return None
    write_text(result.to_html(), path)
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if np.isnan(o) else float(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return str(o)


# Feature areas register their own commands here.
from synthloop.generate.commands import register as _register_generate
_register_generate(app)
from synthloop.evaluate.commands import register as _register_evaluate
_register_evaluate(app)
from synthloop.refine.commands import register as _register_refine
_register_refine(app)
from synthloop.commands.audit import register as _register_audit
_register_audit(app)


def main() -> None:
    """Entry point: user errors print one line and exit 2; Ctrl-C exits 130 without a traceback."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            app()
        except SynthloopError as exc:
            _flush_warnings(caught)
            console.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            console.print("interrupted; finished outputs are kept, unfinished ones were not written")
            sys.exit(130)
        finally:
            _flush_warnings(caught)


def _flush_warnings(caught: list) -> None:
    from synthloop.schema.inference import InferenceWarning

    for w in caught:
        if issubclass(w.category, InferenceWarning):
            console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)
    caught.clear()


if __name__ == "__main__":
    main()
