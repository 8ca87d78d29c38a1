"""The database (multi-table) side of the `fit`, `sample`, `evaluate`, `schema` and `report` verbs: a folder of
tables in, a folder of tables out. The verbs call these when given a folder or a database model."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from synthloop.commands._common import json_default, out


def load_metadata(folder: Path, metadata: Optional[Path], tables: dict | None = None) -> Any:
    """The metadata file, or the one detected from the folder (printed, so the user can save and edit it)."""
    from synthloop.schema.metadata import Metadata, detect_metadata, read_tables, table_files

    if metadata is not None:
        meta = Metadata.load(metadata)
        return meta, (tables if tables is not None else read_tables(folder, meta))
    files = table_files(folder)
    tables = tables if tables is not None else read_tables(folder)
    meta = detect_metadata(tables, files)
    out.print(f"no --metadata: detected {len(meta.tables)} tables and {len(meta.relationships)} relationships "
              f"(save them with `synthloop schema {folder} -o meta.yaml`, edit, pass with --metadata)")
    return meta, tables


def schema_dir(folder: Path, output: Optional[Path]) -> None:
    from rich.table import Table

    from synthloop.io import write_text
    from synthloop.schema.metadata import detect_metadata, key_label, read_tables, table_files

    tables = read_tables(folder)
    meta = detect_metadata(tables, table_files(folder))
    table = Table(title=f"{folder}: {len(tables)} tables")
    for h in ("table", "rows", "primary key", "foreign keys", "sequence"):
        table.add_column(h)
    for name, t in meta.tables.items():
        fks = "; ".join(f"{key_label(r.child_key)} -> {r.parent}.{key_label(r.parent_key)}" +
                        (" (orphans: null)" if r.on_orphans == "null" else "") for r in meta.parents_of(name))
        seq = f"of {t.sequence_key}, by {t.order_by}" if t.sequence_key else ""
        table.add_row(name, f"{len(tables[name]):,}", key_label(t.primary_key) if t.primary_key else "-", fks or "-", seq)
    out.print(table)
    if output:
        write_text(meta.to_yaml(), output)
        out.print(f"wrote {output}")


def fit_dir(folder: Path, metadata: Optional[Path], output: Path, epochs: Optional[int], max_seconds: Optional[float],
            seed: int) -> None:
    import time

    from synthloop.synthesizers.relational import RelationalSynthesizer

    meta, tables = load_metadata(folder, metadata)
    meta.validate(tables, str(metadata) if metadata else "detected metadata")
    synth = RelationalSynthesizer(epochs=epochs or 24, max_seconds=max_seconds, random_state=seed,
                                  **({"min_steps": 0} if epochs else {}))
    t0 = time.perf_counter()
    synth.fit(tables, meta)
    fit_s = time.perf_counter() - t0
    synth.save(output)
    rows = sum(len(v) for v in tables.values())
    out.print(f"database model fitted on {len(tables)} tables ({rows:,} rows) in {fit_s:.2f} s")
    out.print(f"wrote {output}")


def sample_db(model: Path, scale: float, output: Path, seed: Optional[int], fmt: str = "csv") -> None:
    import time

    from synthloop.errors import ConditionError
    from synthloop.io import write_table
    from synthloop.synthesizers.relational import RelationalSynthesizer

    if output.exists() and not output.is_dir():
        raise ConditionError(f"{output}: a database model samples several tables: -o must be a folder")
    if fmt not in ("csv", "parquet", "jsonl"):
        raise ConditionError(f"--format {fmt}: one of csv, parquet, jsonl")
    synth = RelationalSynthesizer.load(model)
    t0 = time.perf_counter()
    db = synth.sample(scale=scale, seed=seed)
    s = time.perf_counter() - t0
    output.mkdir(parents=True, exist_ok=True)
    for name, df in db.items():
        write_table(df, output / f"{name}.{fmt}")
    out.print(f"sampled {len(db)} tables ({sum(len(v) for v in db.values()):,} rows) in {s:.2f} s")
    out.print(f"wrote {output}/ ({', '.join(f'{k}.{fmt}' for k in db)})")


def _both_dirs(real: Path, synthetic: Path, metadata: Optional[Path]) -> tuple:
    from synthloop.errors import DataError
    from synthloop.schema.metadata import read_tables

    if not (real.is_dir() and synthetic.is_dir()):
        raise DataError(f"{real if not real.is_dir() else synthetic}: both REAL and SYNTHETIC must be folders of tables "
                        "to evaluate a database")
    meta, real_db = load_metadata(real, metadata)
    meta.validate(real_db, str(metadata) if metadata else "detected metadata")
    plain = meta.model_copy(update={"tables": {k: v.model_copy(update={"file": None}) for k, v in meta.tables.items()}})
    return meta, real_db, read_tables(synthetic, plain)


def report_dirs(real: Path, synthetic: Path, metadata: Optional[Path], output: Path, title: Optional[str]) -> None:
    import json

    from synthloop.errors import SynthloopError
    from synthloop.evaluate.multitable_report import database_report_html
    from synthloop.io import write_text

    if output.suffix.lower() not in (".html", ".htm"):
        raise SynthloopError(f"{output}: the report is HTML; give a file name ending in .html")
    meta, real_db, synth_db = _both_dirs(real, synthetic, metadata)
    html, data = database_report_html(real_db, synth_db, meta, title)
    json_path = output.with_suffix(".json")
    write_text(json.dumps(data, indent=2, default=json_default), json_path)
    write_text(html, output)
    out.print(f"quality {data['quality_score']:.4f} (cardinality {data['cardinality']:.4f}, intertable trends "
              f"{data['intertable_trends']:.4f}); referential integrity {min(data['integrity'].values(), default=1.0):.4f}")
    out.print(f"wrote {output}")
    out.print(f"wrote {json_path}")


def evaluate_dirs(real: Path, synthetic: Path, metadata: Optional[Path], json_out: Optional[Path],
                  holdout: Optional[Path] = None) -> dict:
    import json

    from rich.table import Table

    from synthloop.evaluate.multitable import evaluate_database
    from synthloop.io import write_text

    meta, real_db, synth_db = _both_dirs(real, synthetic, metadata)
    hold_db = None
    if holdout is not None:  # held-out entities: a folder with (some of) the database's tables
        from synthloop.errors import DataError
        from synthloop.schema.metadata import read_tables, table_files

        if not holdout.is_dir():
            raise DataError(f"{holdout}: --holdout for a database is a folder of the held-out entities' tables")
        present = table_files(holdout)
        plain = meta.model_copy(update={"tables": {k: v.model_copy(update={"file": None}) for k, v in meta.tables.items()
                                                   if k in present}})
        if not plain.tables:
            raise DataError(f"{holdout}: no table of the database ({', '.join(meta.tables)}) in this folder")
        hold_db = read_tables(holdout, plain)
    fig = evaluate_database(real_db, synth_db, meta, hold_db)
    table = Table(title="synthetic vs real database")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k in ("quality_score", "column_shapes", "column_pair_trends", "cardinality", "intertable_trends",
              "referential_integrity"):
        table.add_row(k, f"{fig[k]:.4f}")
    for t, s in fig["sequences"].items():
        for k in ("length_ks", "gap_ks", "order_violations"):
            table.add_row(f"{t}.{k}", f"{s[k]:.4f}")
    for t, v in fig.get("dcr_share", {}).items():
        table.add_row(f"{t}.dcr_share (0.5 ideal)", f"{v:.4f}")
    out.print(table)
    if json_out:
        write_text(json.dumps(fig, indent=2, default=json_default), json_out)
        out.print(f"wrote {json_out}")
    return fig
