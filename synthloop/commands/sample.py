"""`synthloop sample MODEL -o OUT`: draw new rows from a saved model, optionally conditioned."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from synthloop.commands._common import out
from synthloop.commands._common import progress as _progress

if TYPE_CHECKING:  # pragma: no cover
    from synthloop.schema import TableSchema


def _parse_condition(text: str, schema: "TableSchema") -> tuple[str, Any]:
    import re

    from synthloop.errors import ConditionError
    from synthloop.schema import ColumnKind

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


def register(app: typer.Typer) -> None:
    """Add `sample` to the app."""

    @app.command()
    def sample(
        model: Path = typer.Argument(..., help="Model file written by `synthloop fit`."),
        n: Optional[int] = typer.Option(None, "-n", "--rows",
                                        help="Rows to draw (default: as many as the training table), at most 1,000,000,000. "
                                             "More than 1,000,000 rows are drawn in batches of 1,000,000 (batch i seeded "
                                             "from --seed and i, so the output is deterministic) streamed to the file."),
        output: Path = typer.Option(..., "-o", "--output", help="Output table; format from the extension: .csv, .parquet, .jsonl (a folder for a database model)."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed for this draw (default: the model's seed)."),
        condition: Optional[list[str]] = typer.Option(None, "--condition", "-c",
                                                      help="COLUMN=VALUE or COLUMN=LOW..HIGH; repeat for several columns."),
        known: Optional[Path] = typer.Option(None, "--known", help="Table of known columns; one output row per row, the rest filled in."),
        scale: float = typer.Option(1.0, "--scale", help="Database models: root tables get scale x their training rows."),
        fmt: str = typer.Option("csv", "--format", help="Database models: file format of each table (csv, parquet, jsonl)."),
    ) -> None:
        """Draw new rows from a saved model, optionally conditioned (a database model writes a folder)."""
        import time

        from synthloop.synthesizers.relational import is_database_model

        if is_database_model(model):
            from synthloop.database import sample_db

            sample_db(model, scale, output, seed, fmt)
            return

        import pandas as pd

        from synthloop.errors import ConditionError
        from synthloop.io import read_table, write_table_batches
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
