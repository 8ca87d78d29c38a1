"""Metadata of a database: its tables, primary keys, foreign keys and which child tables are sequences.

A `Metadata` sits beside the single-table `TableSchema`: it says how tables link, and per table which
column overrides apply (the same `columns:` mapping as a schema YAML). It is detected from a folder of
tables (`detect_metadata`: keys from names, uniqueness and containment), written as YAML for the user
to confirm or edit, read back (`Metadata.load`), and checked against the data (`validate`), where every
problem is one `MetadataError` line naming the table and column.

Keys may span several columns (`primary_key: [origin, year, month, day, hour]`, and a relationship's
`parent_key`/`child_key` as lists of the same length): a composite primary key's columns stay data
(learned and scored) while only their combination must be unique; a composite foreign key's columns are
copies of the parent's key. The synthesizer and the figures work on single-column *surrogate* keys
(`surrogate()`, `to_surrogate()`, `from_surrogate()`): a row number for a composite primary key and the
parent's row number for a composite foreign key.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pandas.api import types as pdt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from synthloop.errors import SchemaError
from synthloop.schema.model import TableSchema, _yaml_path

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".csv.gz", ".tsv.gz", ".jsonl.gz")
MIN_CONTAINMENT = 0.8  # a foreign key is proposed when at least this share of its values are parent keys
SURROGATE_KEY = "__key"  # a composite primary key's surrogate column (the row number)
Key = str | list[str]


def key_cols(key: Key | None) -> list[str]:
    """The columns of a key (one name or a list), [] for none."""
    if key is None:
        return []
    return [key] if isinstance(key, str) else list(key)


def key_label(key: Key | None) -> str:
    cols = key_cols(key)
    return cols[0] if len(cols) == 1 else "(" + ", ".join(cols) + ")"


def _one_or_list(v: Any) -> Any:
    """A key given as a one-element list is the plain column name (so it round-trips as before)."""
    if isinstance(v, list) and len(v) == 1:
        return v[0]
    return v


def key_series(df: pd.DataFrame, key: Key) -> pd.Series:
    """The key's values per row: the column itself, or for a composite key tuples of the columns' values
    (None where any column is empty), so that `isin`, `value_counts`, `duplicated` and `map` work alike."""
    cols = key_cols(key)
    if len(cols) == 1:
        return df[cols[0]]
    part = df[cols]
    vals = pd.Series(list(zip(*(_plain(part[c]) for c in cols))), index=df.index, dtype=object)
    return vals.where(~part.isna().any(axis=1).to_numpy(), None)


def lookup(parent_keys: pd.Series, child_keys: pd.Series) -> np.ndarray:
    """For each child key, the position of the first parent row with that key (-1: none or empty);
    works for single values and the tuples of `key_series` alike (factorized together)."""
    both = pd.concat([parent_keys.reset_index(drop=True).astype(object), child_keys.reset_index(drop=True).astype(object)],
                     ignore_index=True)
    codes, uniq = pd.factorize(both, use_na_sentinel=True)
    n = len(parent_keys)
    cp, cc = codes[:n], codes[n:]
    first = np.full(len(uniq) + 1, -1, np.int64)
    ok = cp >= 0
    first[cp[ok][::-1]] = np.arange(n)[ok][::-1]
    return np.where(cc >= 0, first[np.maximum(cc, 0)], -1)


def _plain(s: pd.Series) -> list:
    """Python values of a key column; whole floats as ints (2013.0 and 2013 are the same key part)."""
    if pdt.is_float_dtype(s):
        v = s.to_numpy(float)
        if np.all(np.isnan(v) | (v == np.round(v))):
            return [None if np.isnan(x) else int(x) for x in v]
    if pdt.is_datetime64_any_dtype(s):
        return list(s.astype("datetime64[ns]").astype("int64"))
    return s.astype(object).tolist()


class MetadataError(SchemaError):
    """The database metadata is inconsistent, or does not hold for the data (names table and column)."""


class Relationship(BaseModel):
    """`child.child_key` points at `parent.parent_key` (the parent's primary key)."""

    model_config = ConfigDict(extra="forbid")

    parent: str
    parent_key: Key
    child: str
    child_key: Key
    on_orphans: Literal["error", "null"] = Field(
        "error", description="child keys with no parent row: refuse the data (error) or treat them as unknown (null)")

    _keys = field_validator("parent_key", "child_key", mode="before")(lambda v: _one_or_list(v))

    @property
    def label(self) -> str:
        return f"{self.child}.{key_label(self.child_key)} -> {self.parent}.{key_label(self.parent_key)}"

    @property
    def composite(self) -> bool:
        return not isinstance(self.child_key, str)

    @property
    def child_cols(self) -> list[str]:
        return key_cols(self.child_key)

    @property
    def parent_cols(self) -> list[str]:
        return key_cols(self.parent_key)

    @property
    def surrogate_key(self) -> str:
        """The child's single-column foreign key standing for a composite one."""
        return f"__fk.{self.parent}.{'.'.join(self.child_cols)}" if self.composite else str(self.child_key)


class TableMeta(BaseModel):
    """One table: where it is read from, its primary key, and whether it is the ordered history of a parent."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = None
    primary_key: Key | None = Field(None, description="the key column, or a list of columns whose combination is unique")
    sequence_key: str | None = Field(None, description="foreign key column whose parent owns these rows as an "
                                                      "ordered history (the table is a sequence)")
    order_by: str | None = Field(None, description="column that orders a sequence's events (usually a datetime)")
    columns: dict[str, dict[str, Any]] = Field(default_factory=dict, description="column overrides, as in a schema YAML")

    _pk = field_validator("primary_key", mode="before")(lambda v: _one_or_list(v))


class Metadata(BaseModel):
    """Tables and the relationships between them."""

    model_config = ConfigDict(extra="forbid")

    tables: dict[str, TableMeta]
    relationships: list[Relationship] = Field(default_factory=list)

    # -- structure ---------------------------------------------------------------------------
    def parents_of(self, table: str) -> list[Relationship]:
        return [r for r in self.relationships if r.child == table]

    def children_of(self, table: str) -> list[Relationship]:
        return [r for r in self.relationships if r.parent == table]

    def is_sequence(self, table: str) -> bool:
        return self.tables[table].sequence_key is not None

    def key_columns(self, table: str) -> list[str]:
        """Columns that are keys (never learned): a single-column primary key and every foreign key's
        columns. A composite primary key's columns are data: only their combination is a key."""
        pk = self.tables[table].primary_key
        keys = ([pk] if isinstance(pk, str) else []) + [c for r in self.parents_of(table) for c in r.child_cols]
        return list(dict.fromkeys(k for k in keys if k))

    def has_composite_keys(self) -> bool:
        return any(not isinstance(t.primary_key, (str, type(None))) for t in self.tables.values()) or \
            any(r.composite for r in self.relationships)

    def order(self) -> list[str]:
        """Tables with every parent before its children (Kahn's algorithm; ties in declaration order)."""
        pending = {t: {r.parent for r in self.parents_of(t)} for t in self.tables}
        out: list[str] = []
        while pending:
            ready = [t for t, ps in pending.items() if not ps - set(out)]
            if not ready:
                raise MetadataError(f"{_cycle(self)}: the relationships form a cycle; a child cannot be its own "
                                    "ancestor: remove one of these relationships")
            out += ready
            for t in ready:
                del pending[t]
        return out

    def check(self, source: str = "metadata") -> "Metadata":
        """Structural checks (no data needed): names exist, keys are declared, no cycles, sequences valid."""
        if not self.tables:
            raise MetadataError(f"{source}: tables: no tables listed")
        seen: set[tuple[str, str]] = set()
        for i, r in enumerate(self.relationships):
            where = f"{source}: relationships[{i}] ({r.label})"
            for t in (r.parent, r.child):
                if t not in self.tables:
                    raise MetadataError(f"{where}: no table '{t}' (tables: {', '.join(self.tables)})")
            pk = self.tables[r.parent].primary_key
            if pk is None:
                raise MetadataError(f"{where}: table '{r.parent}' has no primary_key; set tables.{r.parent}.primary_key")
            if key_cols(r.parent_key) != key_cols(pk):
                raise MetadataError(f"{where}: parent_key {key_label(r.parent_key)} is not the primary key of "
                                    f"'{r.parent}' ({key_label(pk)})")
            if len(r.child_cols) != len(r.parent_cols):
                raise MetadataError(f"{where}: child_key has {len(r.child_cols)} columns but parent_key has "
                                    f"{len(r.parent_cols)}; list one child column per parent key column")
            for cols in (r.child_cols, r.parent_cols):
                if len(set(cols)) != len(cols) or any(not isinstance(c, str) or not c for c in cols):
                    raise MetadataError(f"{where}: a key lists the same column twice or an empty name")
            ck = (r.child, tuple(r.child_cols))
            if ck in seen:
                raise MetadataError(f"{where}: column '{r.child}.{key_label(r.child_key)}' is the foreign key of two relationships")
            seen.add(ck)
            if key_cols(r.child_key) == key_cols(self.tables[r.child].primary_key):
                raise MetadataError(f"{where}: column '{r.child}.{key_label(r.child_key)}' is both the primary key and "
                                    "a foreign key; one-to-one extensions are not supported: merge the two tables")
        self._check_composite(source)
        self.order()
        for name, t in self.tables.items():
            if t.sequence_key is None:
                if t.order_by is not None:
                    raise MetadataError(f"{source}: tables.{name}: order_by '{t.order_by}' needs sequence_key (the "
                                        "foreign key of the entity whose history this table is)")
                continue
            if t.sequence_key not in {r.child_key for r in self.parents_of(name) if not r.composite}:
                raise MetadataError(f"{source}: tables.{name}.sequence_key: '{t.sequence_key}' is not a foreign key of "
                                    f"'{name}'; add the relationship or name one of: "
                                    f"{', '.join(str(r.child_key) for r in self.parents_of(name) if not r.composite) or '(none)'}"
                                    " (a sequence's key is one column)")
            if t.order_by is None:
                raise MetadataError(f"{source}: tables.{name}: a sequence needs order_by (the column that orders its events)")
        return self

    def _check_composite(self, source: str) -> None:
        """A column is in at most one composite foreign key; one that is also a single foreign key to P
        (flights.origin -> airports) must match a parent key column that points at P as well (weather.origin
        -> airports), since the composite key sets it from the parent row."""
        for name in self.tables:
            rels = self.parents_of(name)
            owner: dict[str, Relationship] = {}
            for r in (r for r in rels if r.composite):
                for c, pc in zip(r.child_cols, r.parent_cols):
                    if c in owner:
                        raise MetadataError(f"{source}: column '{name}.{c}' is in two composite foreign keys "
                                            f"({owner[c].label}; {r.label}); keep it in one")
                    owner[c] = r
                    single = next((s for s in rels if not s.composite and s.child_key == c), None)
                    if single is None:
                        continue
                    implied = any(not p.composite and p.child_key == pc and p.parent == single.parent
                                  for p in self.parents_of(r.parent))
                    if not implied:
                        raise MetadataError(
                            f"{source}: column '{name}.{c}' is a foreign key to '{single.parent}' and part of "
                            f"{r.label}, but '{r.parent}.{pc}' is not a foreign key to '{single.parent}'; add that "
                            f"relationship or drop one of the two")

    def single_key_relationships(self) -> list[Relationship]:
        """Relationships a surrogate database keeps: composite ones (on surrogate columns) and single ones
        whose column is not set by a composite foreign key."""
        covered = {(r.child, c) for r in self.relationships if r.composite for c in r.child_cols}
        return [r for r in self.relationships if r.composite or (r.child, r.child_key) not in covered]

    # -- surrogate keys ----------------------------------------------------------------------
    def surrogate(self) -> "Metadata":
        """The same database with single-column keys: a composite primary key becomes `__key` (its columns
        stay as data), a composite foreign key one column `__fk.<parent>.<cols>` pointing at it (its columns
        leave the child table: they are the parent's), and a single foreign key that a composite one sets
        is implied by it (dropped). Metadata without composite keys is returned as it is."""
        if not self.has_composite_keys():
            return self
        tables = {}
        for name, t in self.tables.items():
            gone = {c for r in self.parents_of(name) if r.composite for c in r.child_cols}
            upd: dict[str, Any] = {"columns": {c: v for c, v in t.columns.items() if c not in gone}}
            if t.primary_key is not None and not isinstance(t.primary_key, str):
                upd["primary_key"] = SURROGATE_KEY
            tables[name] = t.model_copy(update=upd)
        rels = []
        for r in self.single_key_relationships():
            if r.composite:
                r = r.model_copy(update={"parent_key": SURROGATE_KEY, "child_key": r.surrogate_key})
            rels.append(r)
        return Metadata(tables=tables, relationships=rels)

    def surrogate_labels(self) -> dict[str, str]:
        """{label of a `surrogate()` relationship: label of the relationship it stands for}."""
        out = {}
        for r in self.single_key_relationships():
            s = r.model_copy(update={"parent_key": SURROGATE_KEY, "child_key": r.surrogate_key}) if r.composite else r
            out[s.label] = r.label
        return out

    def to_surrogate(self, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """Tables for `surrogate()`: `__key` = row number of a composite-key table, each composite foreign
        key replaced by the matching parent row's number (empty where none matches)."""
        if not self.has_composite_keys():
            return dict(tables)
        out = {k: v for k, v in tables.items()}
        for name, t in self.tables.items():
            if name in out and t.primary_key is not None and not isinstance(t.primary_key, str):
                out[name] = out[name].assign(**{SURROGATE_KEY: np.arange(len(out[name]), dtype=np.int64)})
        for r in self.relationships:
            if not r.composite or r.child not in out or r.parent not in out:
                continue
            parent = out[r.parent]
            pos = lookup(key_series(parent, r.parent_cols), key_series(out[r.child], r.child_cols))
            fk = pd.array(np.where(pos >= 0, parent[SURROGATE_KEY].to_numpy()[np.maximum(pos, 0)], 0), dtype="Int64")
            fk[pos < 0] = pd.NA
            out[r.child] = out[r.child].drop(columns=r.child_cols).assign(**{r.surrogate_key: fk})
        return out

    def from_surrogate(self, tables: dict[str, pd.DataFrame], columns: dict[str, list[str]] | None = None,
                       repair: bool = True) -> dict[str, pd.DataFrame]:
        """Back from `to_surrogate` form (e.g. a sampled database): parents first, each composite foreign
        key's columns are copied from the parent row it points at, and with `repair` a composite primary
        key that repeats is made unique (see `unique_composite`); surrogate columns are dropped and
        `columns` gives each table's column order."""
        if not self.has_composite_keys():
            return dict(tables)
        out = dict(tables)
        for name in self.order():
            if name not in out:
                continue
            df = out[name]
            for r in self.parents_of(name):
                if not r.composite or r.parent not in out:
                    continue
                parent = out[r.parent]
                sk = pd.to_numeric(df[r.surrogate_key], errors="coerce")
                pos = pd.Index(parent[SURROGATE_KEY]).get_indexer(sk.fillna(-1).to_numpy())
                hit = (pos >= 0) & sk.notna().to_numpy()
                cols = {}
                for c, pc in zip(r.child_cols, r.parent_cols):
                    v = parent[pc].reset_index(drop=True)
                    taken = v.take(np.maximum(pos, 0)).reset_index(drop=True)
                    cols[c] = taken.where(hit, None if taken.dtype == object else np.nan).to_numpy()
                df = df.assign(**cols)
            pk = self.tables[name].primary_key
            if repair and pk is not None and not isinstance(pk, str) and SURROGATE_KEY in df.columns:
                df, remap = unique_composite(df, key_cols(pk), self.key_columns(name))
                if remap is not None:  # rows merged into an equal key: their children point at the kept row
                    for r in self.children_of(name):
                        if r.composite and r.child in out:
                            fk = pd.to_numeric(out[r.child][r.surrogate_key], errors="coerce")
                            out[r.child] = out[r.child].assign(**{r.surrogate_key: fk.map(remap).fillna(fk).to_numpy()})
            out[name] = df
        for name, t in self.tables.items():
            if name not in out:
                continue
            drop = [SURROGATE_KEY] if t.primary_key is not None and not isinstance(t.primary_key, str) else []
            drop += [r.surrogate_key for r in self.parents_of(name) if r.composite]
            df = out[name].drop(columns=[c for c in drop if c in out[name].columns])
            if columns and name in columns:
                df = df[[c for c in columns[name] if c in df.columns] + [c for c in df.columns if c not in columns[name]]]
            out[name] = df.reset_index(drop=True)
        return out

    # -- data checks -------------------------------------------------------------------------
    def validate(self, tables: dict[str, pd.DataFrame], source: str = "metadata") -> None:
        """The metadata holds for `tables`: every table and column exists, primary keys are unique and
        present, foreign keys have no orphans (unless `on_orphans: null`), order columns are sortable."""
        self.check(source)
        for name in self.tables:
            if name not in tables:
                raise MetadataError(f"{source}: table '{name}' has no data (tables found: {', '.join(tables) or 'none'})")
        extra = [t for t in tables if t not in self.tables]
        if extra:
            raise MetadataError(f"{source}: table '{extra[0]}' is in the data but not in the metadata; add it under tables:")
        for name, t in self.tables.items():
            df = tables[name]
            cols = [c for c in (*key_cols(t.primary_key), t.order_by, *t.columns) if c]
            for c in cols:
                if c not in df.columns:
                    raise MetadataError(f"{source}: table '{name}' has no column '{c}' (columns: {', '.join(map(str, df.columns[:12]))})")
            if t.primary_key:
                label = key_label(t.primary_key)
                empty = df[key_cols(t.primary_key)].isna().any(axis=1)
                if empty.any():
                    raise MetadataError(f"{source}: table '{name}' column '{label}': primary key is empty on "
                                        f"{int(empty.sum()):,} rows (e.g. row {int(np.flatnonzero(empty)[0]) + 1})")
                pk = key_series(df, t.primary_key)
                dup = pk.duplicated()
                if dup.any():
                    raise MetadataError(f"{source}: table '{name}' column '{label}': primary key is not unique "
                                        f"({int(dup.sum()):,} repeated values, e.g. {pk[dup].iloc[0]!r}); choose another "
                                        "key, remove primary_key or drop the repeated rows")
            if t.order_by:
                o = df[t.order_by]
                if not (pdt.is_numeric_dtype(o) or pdt.is_datetime64_any_dtype(o)):
                    parsed = _parse_order(o)
                    if parsed.isna().sum() > o.isna().sum():
                        bad = o[parsed.isna() & o.notna()].iloc[0]
                        raise MetadataError(f"{source}: table '{name}' column '{t.order_by}': order_by must be dates or "
                                            f"numbers, got {bad!r}")
        for r in self.relationships:
            child, parent = tables[r.child], tables[r.parent]
            for c in r.child_cols:
                if c not in child.columns:
                    raise MetadataError(f"{source}: table '{r.child}' has no column '{c}' (foreign key of {r.label})")
            if r.composite:
                fk = key_series(child, r.child_cols)
                orphan = fk.notna() & (lookup(key_series(parent, r.parent_cols), fk) < 0)
            else:
                fk = child[r.child_key]
                orphan = fk.notna() & ~_isin(fk, parent[r.parent_key])
            if orphan.any() and r.on_orphans == "error":
                raise MetadataError(f"{source}: table '{r.child}' column '{key_label(r.child_key)}': {int(orphan.sum()):,} of "
                                    f"{len(fk):,} rows point at no row of '{r.parent}' (e.g. {fk[orphan].iloc[0]!r}); fix "
                                    f"the data or set on_orphans: null on this relationship")

    def orphans_to_null(self, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """Copies of the tables where foreign keys marked `on_orphans: null` that point nowhere are null. A
        composite key's columns are data and stay: its surrogate key (see `to_surrogate`) is the empty one."""
        out = dict(tables)
        for r in self.relationships:
            if r.on_orphans != "null" or r.composite:
                continue
            df = out[r.child]
            fk = df[r.child_key]
            orphan = fk.notna() & ~_isin(fk, out[r.parent][r.parent_key])
            if orphan.any():
                df = df.copy()
                df[r.child_key] = fk.astype(object).where(~orphan, None) if fk.dtype == object else fk.where(~orphan)
                out[r.child] = df
        return out

    # -- schemas -----------------------------------------------------------------------------
    def table_schema(self, name: str, df: pd.DataFrame) -> TableSchema:
        """The table's schema: inferred, with its overrides, and its key columns as ids (never learned)."""
        from synthloop.schema.inference import infer_schema

        t = self.tables[name]
        keys = set(self.key_columns(name))
        over = {c: dict(v or {}) for c, v in t.columns.items()}
        for k in keys:
            over.setdefault(k, {})["kind"] = "id"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            schema = infer_schema(df, overrides={"columns": over} if over else None, source=f"metadata: tables.{name}")
        schema.primary_key = t.primary_key if isinstance(t.primary_key, str) else None
        return schema

    def to_sdv_dict(self, schemas: dict[str, TableSchema]) -> dict[str, Any]:
        """SDV/SDMetrics multi-table metadata (MULTI_TABLE_V1), so peers judge our tables with our kinds.
        SDV keys are single columns: for composite keys pass `surrogate()`'s metadata and tables."""
        if self.has_composite_keys():
            raise MetadataError("SDV metadata has no composite keys: use metadata.surrogate() with "
                                "metadata.to_surrogate(tables)")
        tables = {}
        for name, schema in schemas.items():
            meta = schema.to_sdv_metadata()
            meta.pop("METADATA_SPEC_VERSION", None)
            for k in self.key_columns(name):
                meta["columns"][k] = {"sdtype": "id"}
            if self.tables[name].primary_key:
                meta["primary_key"] = self.tables[name].primary_key
            else:
                meta.pop("primary_key", None)
            t = self.tables[name]
            if t.sequence_key:
                meta["sequence_key"] = t.sequence_key
                meta["sequence_index"] = t.order_by
            tables[name] = meta
        rels = [{"parent_table_name": r.parent, "parent_primary_key": r.parent_key, "child_table_name": r.child,
                 "child_foreign_key": r.child_key} for r in self.relationships]
        return {"tables": tables, "relationships": rels, "METADATA_SPEC_VERSION": "MULTI_TABLE_V1"}

    # -- round trip --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        for t in data["tables"].values():
            if not t.get("columns"):
                t.pop("columns", None)
        for r in data["relationships"]:
            if r.get("on_orphans") == "error":
                r.pop("on_orphans")
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "metadata") -> "Metadata":
        if not isinstance(data, dict):
            raise MetadataError(f"{source}: expected a mapping with 'tables' and 'relationships'")
        try:
            meta = cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise MetadataError(f"{source}: {_yaml_path(err['loc'])}: {err['msg']}") from None
        return meta.check(source)

    @classmethod
    def from_yaml(cls, text: str, source: str = "metadata") -> "Metadata":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise MetadataError(f"{source}:{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> "Metadata":
        p = Path(path)
        if not p.exists():
            raise MetadataError(f"{p}: metadata file not found")
        return cls.from_yaml(p.read_text(encoding="utf-8"), str(p))

    def save(self, path: str | Path) -> Path:
        from synthloop.io import write_text

        write_text(self.to_yaml(), path)
        return Path(path)


MAX_KEY_SHIFT = 48  # a repeated composite key tries this many nearby values of its last free column


def unique_composite(df: pd.DataFrame, cols: list[str], fixed: list[str]) -> tuple[pd.DataFrame, pd.Series | None]:
    """Rows whose composite key repeats (generated data) made unique. The key's whole-number columns that
    are not foreign keys span a grid (their ranges, in key order, most significant first: year, month, day,
    hour); within the row's other key values, a repeated key moves to the nearest free cell of that grid
    (e.g. the next free hour). Where the grid is too large, the last such column (or date) moves to the
    nearest free value within its range (+1, -1, +2, ... units). Rows that still repeat are merged into the
    first row with that key. Returns the rows and, for merged rows,
    {their `__key`: the kept row's `__key`} (None when nothing was merged)."""
    keys = key_series(df, cols)
    dup = keys.duplicated().to_numpy() & keys.notna().to_numpy()
    if not dup.any():
        return df, None
    df = df.copy()
    free = [c for c in cols if c not in fixed]
    if _grid_repair(df, cols, free, dup):
        keys = key_series(df, cols)
        dup = keys.duplicated().to_numpy() & keys.notna().to_numpy()
        if not dup.any():
            return df, None
    col = next((c for c in reversed(free) if _shiftable(df[c])), None)
    if col is not None:
        is_dt = pdt.is_datetime64_any_dtype(df[col])
        v = (df[col].astype("datetime64[ns]").astype("int64").to_numpy().astype(float) / 1e9 if is_dt
             else pd.to_numeric(df[col], errors="coerce").to_numpy(float))
        unit = 1.0
        if is_dt:
            fin = v[np.isfinite(v)]
            unit = next((u for u in (86400.0, 3600.0, 60.0) if np.all(np.abs(fin / u - np.round(fin / u)) < 1e-9)), 1.0)
        lo, hi = np.nanmin(v), np.nanmax(v)
        used = set(keys[~dup & keys.notna().to_numpy()])
        todo = np.flatnonzero(dup)
        others = df.loc[:, cols]
        for k in range(1, MAX_KEY_SHIFT + 1):
            if not todo.size:
                break
            step = (k + 1) // 2 * (1 if k % 2 else -1)
            cand_v = v[todo] + step * unit
            ok = (cand_v >= lo) & (cand_v <= hi)
            rows = todo[ok]
            if not rows.size:
                continue
            cand = others.iloc[rows].copy()
            cand[col] = pd.to_datetime(cand_v[ok], unit="s") if is_dt else cand_v[ok].astype(df[col].dtype) \
                if pdt.is_integer_dtype(df[col]) else cand_v[ok]
            ck = key_series(cand.reset_index(drop=True), cols)
            take = (~ck.isin(used) & ~ck.duplicated()).to_numpy()
            if take.any():
                chosen = rows[take]
                df.iloc[chosen, df.columns.get_loc(col)] = cand[col].to_numpy()[take]
                v[chosen] = cand_v[ok][take]
                used.update(ck[take])
                todo = np.setdiff1d(todo, chosen)
        keys = key_series(df, cols)
        dup = keys.duplicated().to_numpy() & keys.notna().to_numpy()
        if not dup.any():
            return df, None
    codes, _ = pd.factorize(keys.astype(object))
    first = pd.Series(np.arange(len(df))).groupby(codes).transform("first").to_numpy()
    kept_key = df[SURROGATE_KEY].to_numpy()[first]
    remap = pd.Series(kept_key[dup], index=df[SURROGATE_KEY].to_numpy()[dup])
    return df[~dup], remap


MAX_GRID_CELLS = 20_000_000


def _grid_repair(df: pd.DataFrame, cols: list[str], free: list[str], dup: np.ndarray) -> bool:
    """In place: repeated keys to the nearest free grid cell (see `unique_composite`); False when the key
    has no whole-number free column or its grid is too large."""
    ints = [c for c in free if _shiftable(df[c]) and not pdt.is_datetime64_any_dtype(df[c])]
    if not ints:
        return False
    vals = {c: pd.to_numeric(df[c], errors="coerce").to_numpy(float) for c in ints}
    ok_rows = np.all([np.isfinite(v) for v in vals.values()], axis=0)
    lo = {c: float(np.nanmin(v)) for c, v in vals.items()}
    radix = [int(np.nanmax(vals[c]) - lo[c]) + 1 for c in ints]
    n_cells = int(np.prod(radix, dtype=np.float64)) if np.prod(radix, dtype=np.float64) < 2**62 else 2**62
    rest = [c for c in cols if c not in ints]
    g = pd.factorize(key_series(df, rest).astype(object))[0] if rest else np.zeros(len(df), np.int64)
    n_groups = int(g.max()) + 1 if g.size else 0
    if n_groups * n_cells > MAX_GRID_CELLS or n_groups == 0:
        return False
    stride = np.cumprod([1] + radix[::-1][:-1])[::-1]
    code = g.astype(np.int64) * n_cells
    for c, st in zip(ints, stride):
        code = code + (np.nan_to_num(vals[c] - lo[c]).astype(np.int64)) * int(st)
    valid = ok_rows & (g >= 0)
    used = np.zeros(n_groups * n_cells, bool)
    used[code[valid & ~dup]] = True
    todo = np.flatnonzero(dup & valid)
    moved = []
    for _ in range(64):
        if not todo.size:
            break
        cells = np.flatnonzero(~used)
        if not cells.size:
            break
        pos = np.searchsorted(cells, code[todo])
        left, right = cells[np.maximum(pos - 1, 0)], cells[np.minimum(pos, cells.size - 1)]
        grp = code[todo] // n_cells
        dl = np.where((pos > 0) & (left // n_cells == grp), code[todo] - left, np.inf)
        dr = np.where((pos < cells.size) & (right // n_cells == grp), right - code[todo], np.inf)
        choice = np.where(dl <= dr, left, right)
        reach = np.minimum(dl, dr) < np.inf
        if not reach.any():
            break
        _, first = np.unique(choice[reach], return_index=True)
        rows, taken = todo[reach][first], choice[reach][first]
        used[taken] = True
        code[rows] = taken
        moved.append(rows)
        todo = np.setdiff1d(todo, rows)
    if not moved:
        return True
    rows = np.concatenate(moved)
    rem = code[rows] % n_cells
    for c, st in zip(ints, stride):
        part = rem // int(st)
        rem = rem % int(st)
        new = lo[c] + part
        j = df.columns.get_loc(c)
        if pdt.is_integer_dtype(df[c]):
            df.iloc[rows, j] = new.astype(df[c].dtype)
        else:
            df.iloc[rows, j] = new.astype(float)
    return True


def _shiftable(s: pd.Series) -> bool:
    if pdt.is_datetime64_any_dtype(s):
        return True
    if pdt.is_bool_dtype(s) or not pdt.is_numeric_dtype(s):
        return False
    v = pd.to_numeric(s, errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool(np.all(v == np.round(v)))


# -- reading and detection -------------------------------------------------------------------
def table_files(folder: str | Path) -> dict[str, Path]:
    """{table name: file} for the table files in `folder` (name = file name without its suffixes)."""
    d = Path(folder)
    if not d.is_dir():
        raise MetadataError(f"{d}: not a folder of tables")
    out: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        low = p.name.lower()
        suffix = next((s for s in TABLE_SUFFIXES if low.endswith(s)), None)
        if suffix and p.is_file():
            out[p.name[: -len(suffix)]] = p
    if not out:
        raise MetadataError(f"{d}: no table files (.csv, .parquet, .jsonl) in this folder")
    return out


def read_tables(folder: str | Path, metadata: Metadata | None = None) -> dict[str, pd.DataFrame]:
    """Every table of a folder (or those the metadata lists, from their `file:` where given)."""
    from synthloop.io import read_table

    d = Path(folder)
    files = table_files(d)
    if metadata is not None:
        chosen = {}
        for name, t in metadata.tables.items():
            if t.file:
                chosen[name] = d / t.file
            elif name in files:
                chosen[name] = files[name]
            else:
                raise MetadataError(f"{d}: no file for table '{name}' of the metadata (expected {name}.csv or set file:)")
        files = chosen
    return {name: read_table(p) for name, p in files.items()}


def _isin(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """`values.isin(keys)`, matching "1" to 1 when one side was read as text."""
    hit = values.isin(keys).to_numpy()
    if not hit.all() and (values.dtype == object) != (keys.dtype == object):
        hit |= values.astype(str).isin(set(keys.astype(str))).to_numpy()
    return hit


def _parse_order(o: pd.Series) -> pd.Series:
    from synthloop.schema.inference import naive_utc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return naive_utc(pd.to_datetime(o, errors="coerce", format="mixed"))
        except (ValueError, TypeError):
            return naive_utc(pd.to_datetime(o, errors="coerce", format="mixed", utc=True))


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _singular(s: str) -> str:
    s = _norm(s)
    return s[:-1] if s.endswith("s") and len(s) > 3 else s


def _key_like(values: pd.Series) -> bool:
    """Integers or short strings: what keys are made of (not floats, dates or free text)."""
    if pdt.is_integer_dtype(values):
        return True
    if pdt.is_float_dtype(values):
        v = values.dropna().to_numpy()
        return v.size > 0 and bool(np.all(v == np.round(v)))
    if values.dtype == object:
        s = values.dropna().astype(str)
        return s.size > 0 and s.str.len().max() <= 40 and not s.str.contains(" ").mean() > 0.5
    return False


def _primary_key(name: str, df: pd.DataFrame, others: set[str]) -> str | None:
    """The column most likely to be the table's key: unique, never empty, key-like; named `<table>_id`,
    `id` or `*_id` beats a column whose name appears in another table, which beats the rest."""
    best, best_score = None, 0
    for pos, c in enumerate(df.columns):
        s = df[c]
        if s.isna().any() or not s.is_unique or len(s) < 2 or not _key_like(s):
            continue
        n = _norm(str(c))
        score = 1
        if n in (_singular(name) + "id", _norm(name) + "id", "id"):
            score = 5
        elif n.endswith("id") or n.endswith("key") or n.endswith("code"):
            score = 4
        elif n in others:
            score = 3
        elif s.dtype == object:
            score = 2
        score = score * 100 - pos
        if score > best_score and score >= 200:
            best, best_score = str(c), score
    return best


def detect_metadata(tables: dict[str, pd.DataFrame], files: dict[str, Path] | None = None) -> Metadata:
    """Propose keys and relationships from names, uniqueness and containment (the user confirms them).

    A column of table C is a foreign key to table P when at least `MIN_CONTAINMENT` of its values are
    P's primary keys and either its name says so (`<P>_id`, or P's key name) or it holds text keys
    entirely contained in P's keys (e.g. `origin` -> airports.faa). Orphans below 100% get
    `on_orphans: null`. A child with a datetime column and many rows per parent is proposed as a sequence."""
    norm_cols = {name: {_norm(str(c)) for c in df.columns} for name, df in tables.items()}
    metas: dict[str, TableMeta] = {}
    for name, df in tables.items():
        others = set().union(*(v for k, v in norm_cols.items() if k != name)) if len(tables) > 1 else set()
        metas[name] = TableMeta(primary_key=_primary_key(name, df, others),
                                file=files[name].name if files and name in files else None)
    for name, df in tables.items():  # no single key: the columns it shares with other tables, if unique together
        if metas[name].primary_key is None:
            metas[name].primary_key = _composite_key(name, df, tables)
    rels: list[Relationship] = []
    for child, df in tables.items():
        for c in df.columns:
            c = str(c)
            if c == metas[child].primary_key:
                continue
            s = df[c].dropna()
            if s.empty or not _key_like(s):
                continue
            best: tuple[float, str] | None = None
            for parent, pdf in tables.items():
                pk = metas[parent].primary_key
                if parent == child or pk is None or not isinstance(pk, str):
                    continue
                named = _norm(c) in (_norm(pk), _singular(parent) + _norm(pk), _singular(parent) + "id",
                                     _norm(parent) + "id")
                text = s.dtype == object and pdf[pk].dtype == object
                if not (named or text):
                    continue
                share = float(_isin(s, pdf[pk]).mean())
                if share < (MIN_CONTAINMENT if named else 0.95) or (not named and s.nunique() < 2 and len(s) > 10):
                    continue
                score = share + (1.0 if named else 0.0)
                if best is None or score > best[0]:
                    best = (score, parent)
            if best is not None:
                parent = best[1]
                share = float(_isin(s, tables[parent][metas[parent].primary_key]).mean())
                rels.append(Relationship(parent=parent, parent_key=metas[parent].primary_key, child=child, child_key=c,
                                         on_orphans="error" if share == 1.0 and len(s) == len(df) or share == 1.0 else "null"))
    for parent, pdf in tables.items():  # composite keys: tables holding all of a composite key's columns
        pk = metas[parent].primary_key
        if pk is None or isinstance(pk, str):
            continue
        for child, df in tables.items():
            if child == parent or not set(pk) <= set(map(str, df.columns)):
                continue
            ks = key_series(df, pk)
            hit = lookup(key_series(pdf, pk), ks)[ks.notna().to_numpy()] >= 0
            if not hit.size or hit.mean() < MIN_CONTAINMENT:
                continue
            rel = Relationship(parent=parent, parent_key=list(pk), child=child, child_key=list(pk),
                               on_orphans="error" if hit.all() and ks.notna().all() else "null")
            try:
                Metadata(tables=metas, relationships=rels + [rel]).check()
            except MetadataError:
                continue
            rels.append(rel)
    # sequences: a child with a date column whose parent holds several rows on average
    for child, df in tables.items():
        dates = [str(c) for c in df.columns if pdt.is_datetime64_any_dtype(df[c]) or
                 (df[c].dtype == object and _date_share(df[c]) > 0.99)]
        parents = [r for r in rels if r.child == child and not r.composite]
        if not dates or not parents or any(r.parent == child for r in rels):
            continue
        kids = [r for r in rels if r.parent == child]
        if kids:
            continue
        r = max(parents, key=lambda r: len(df) / max(df[r.child_key].nunique(), 1))
        if len(df) / max(df[r.child_key].nunique(), 1) >= 5 and df[r.child_key].nunique() >= 20:
            metas[child].sequence_key = r.child_key
            metas[child].order_by = dates[0]
    meta = Metadata(tables=metas, relationships=rels)
    try:
        meta.order()
    except MetadataError:  # detected cycles are dropped, last proposals first
        while True:
            try:
                meta.order()
                break
            except MetadataError:
                meta.relationships.pop()
    return meta


def _composite_key(name: str, df: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> list[str] | None:
    """The columns `df` shares (by name) with another table, when there are 2 to 6, all key-like and never
    empty, and unique together (e.g. weather's origin, year, month, day, hour that flights also hold)."""
    best = None
    for other, odf in tables.items():
        if other == name:
            continue
        shared = [str(c) for c in df.columns if c in odf.columns]
        if not 2 <= len(shared) <= 6 or len(df) < 2:
            continue
        if any(df[c].isna().any() or not _key_like(df[c]) for c in shared):
            continue
        if key_series(df, shared).duplicated().any():
            continue
        if best is None or len(shared) < len(best):
            best = shared
    return best


def _date_share(s: pd.Series) -> float:
    v = s.dropna().astype(str).head(200)
    if v.empty or not v.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        return 0.0
    return float(_parse_order(v).notna().mean())


def _cycle(meta: Metadata) -> str:
    """`a -> b -> a`: one cycle of the relationships, for the error message."""
    edges: dict[str, list[str]] = {}
    for r in meta.relationships:
        edges.setdefault(r.parent, []).append(r.child)
    for start in meta.tables:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, []):
                if nxt == start:
                    return "relationships " + " -> ".join(path + [start])
                if nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return "relationships"


__all__ = ["Metadata", "MetadataError", "Relationship", "TableMeta", "detect_metadata", "read_tables", "table_files"]
