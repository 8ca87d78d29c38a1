"""`synthloop schema DATA`: the inferred column kinds, to inspect and edit."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthloop.commands._common import out


def register(app: typer.Typer) -> None:
    """Add `schema` to the app."""

    @app.command("schema")
    def schema_cmd(
        data: Path = typer.Argument(..., help="Table to inspect."),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the schema (.yaml or .json) for editing."),
        spec: Optional[Path] = typer.Option(None, "--spec", help="Draft a generation spec (YAML): structured columns learned, "
                                            "free-text columns written by the LLM from each synthetic row."),
        text: Optional[list[str]] = typer.Option(None, "--text", metavar="COLUMN", help="With --spec: a column to write "
                                                 "with the LLM (default: the columns inferred as free text)."),
        rows: int = typer.Option(100, "--rows", help="With --spec: rows the drafted spec generates."),
    ) -> None:
        """Infer column kinds, bounds, formats and null shares; write them as YAML/JSON to edit and pass back with --schema.
        For a folder of tables: propose the database metadata (keys, relationships, sequences) to edit and pass
        back with --metadata."""
        if data.is_dir():
            from synthloop.database import schema_dir

            schema_dir(data, output)
            return
        from rich.table import Table

        from synthloop.io import read_table, write_text
        from synthloop.schema import ColumnKind, infer_schema

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
        if spec:
            from synthloop.spec.draft import draft_spec

            write_text(draft_spec(df, data, spec, text, rows=rows), spec)
            out.print(f"wrote {spec}: edit the prompts, then run synthloop generate {spec}")
