"""Pydantic models of a table schema."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthloop.errors import SchemaError


class ColumnKind(str, Enum):
    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    ID = "id"
    TEXT = "text"
    PII = "pii"


class PiiType(str, Enum):
    EMAIL = "email"
    PHONE = "phone"
    NAME = "name"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    ADDRESS = "address"
    SSN = "ssn"
    IBAN = "iban"
    CREDIT_CARD = "credit_card"
    IP = "ip"


LEARNED_KINDS = {ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN, ColumnKind.DATETIME}


class ColumnSchema(BaseModel):
    """One column: its kind plus what output must preserve (dtype, bounds, rounding, format, nulls)."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)

    name: str
    kind: ColumnKind
    dtype: str = Field("object", description="pandas dtype of the original column")
    missing_share: float = Field(0.0, ge=0.0, le=1.0)
    # numerical / datetime
    min: float | None = None
    max: float | None = None
    decimals: int | None = Field(None, ge=0, le=15, description="digits after the point; 0 = integers")
    datetime_format: str | None = None
    # categorical / boolean
    categories: list[Any] | None = None
    # pii / id / text
    pii_type: PiiType | None = None
    id_pattern: str | None = Field(None, description="regex-like template of generated ids, e.g. 'C{digits:6}'")
    text_length: tuple[float, float] | None = Field(None, description="mean and std of text length in characters")
    public: bool | None = Field(None, description="the column's domain (bounds, categories, decimals, missing share, "
                                "id pattern) is public knowledge; DP models use it as declared instead of paying for "
                                "it. None: as the table's `public`")
    notes: list[str] = Field(default_factory=list)

    @property
    def learned(self) -> bool:
        return self.kind in LEARNED_KINDS


class TableSchema(BaseModel):
    """The columns of one table, in order."""

    model_config = ConfigDict(extra="forbid")

    columns: list[ColumnSchema]
    primary_key: str | None = None
    constraints: list[dict[str, Any]] = Field(default_factory=list)
    public: bool = Field(False, description="every column's domain is public unless the column says `public: false`")

    # -- access ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def of_kind(self, *kinds: ColumnKind) -> list[ColumnSchema]:
        return [c for c in self.columns if c.kind in kinds]

    def is_public(self, name: str) -> bool:
        """Whether the column's domain is declared public (its own `public`, else the table's)."""
        col = self[name]
        return bool(self.public if col.public is None else col.public)

    # -- round trip -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=False)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "schema") -> "TableSchema":
        try:
            schema = cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = _yaml_path(err["loc"])
            raise SchemaError(f"{source}: {loc}: {err['msg']}") from None
        if schema.constraints:  # refuse a bad rule here, where the file is known, not later at fit time
            from synthloop.constraints.rules import parse_constraints

            parse_constraints(schema.constraints, f"{source}: constraints")
        return schema

    @classmethod
    def from_json(cls, text: str) -> "TableSchema":
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_yaml(cls, text: str, source: str = "schema") -> "TableSchema":
        return cls.from_dict(yaml.safe_load(text), source)

    @classmethod
    def load(cls, path: str | Path) -> "TableSchema":
        p = Path(path)
        if not p.exists():
            raise SchemaError(f"{p}: schema file not found")
        text = p.read_text(encoding="utf-8")
        return cls.from_json(text) if p.suffix == ".json" else cls.from_yaml(text, str(p))

    def to_sdv_metadata(self) -> dict[str, Any]:
        """SDV/SDMetrics single-table metadata dict, so peers judge our data with our kinds."""
        cols: dict[str, Any] = {}
        for c in self.columns:
            if c.kind == ColumnKind.NUMERICAL:
                cols[c.name] = {"sdtype": "numerical"}
            elif c.kind == ColumnKind.DATETIME:
                cols[c.name] = {"sdtype": "datetime", **({"datetime_format": c.datetime_format} if c.datetime_format else {})}
            elif c.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                cols[c.name] = {"sdtype": "categorical" if c.kind == ColumnKind.CATEGORICAL else "boolean"}
            elif c.kind == ColumnKind.ID:
                cols[c.name] = {"sdtype": "id"}
            elif c.kind == ColumnKind.PII:
                cols[c.name] = {"sdtype": "email" if c.pii_type == PiiType.EMAIL else "phone_number" if c.pii_type == PiiType.PHONE else "unknown", "pii": True}
            else:
                cols[c.name] = {"sdtype": "unknown"}
        meta: dict[str, Any] = {"columns": cols, "METADATA_SPEC_VERSION": "SINGLE_TABLE_V1"}
        if self.primary_key:
            meta["primary_key"] = self.primary_key
        return meta

    # -- overrides ------------------------------------------------------------------------------
    def with_overrides(self, overrides: dict[str, Any], source: str = "overrides") -> "TableSchema":
        """Apply `{columns: {name: {kind: ..., min: ...}}}` (or a list of such entries) from YAML."""
        if not isinstance(overrides, dict):
            raise SchemaError(f"{source}: expected a mapping with a 'columns' key")
        entries = overrides.get("columns", {})
        if isinstance(entries, list):
            try:
                entries = {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in entries}
            except (KeyError, TypeError):
                raise SchemaError(f"{source}: columns: each entry needs a 'name'") from None
        data = self.to_dict()
        by_name = {c["name"]: c for c in data["columns"]}
        for name, fields in entries.items():
            if name not in by_name:
                raise SchemaError(f"{source}: columns.{name}: no such column in the data (columns: {', '.join(list(by_name)[:12])})")
            if not isinstance(fields, dict):
                raise SchemaError(f"{source}: columns.{name}: expected a mapping of fields, got {fields!r}")
            by_name[name].update(fields)
            if "kind" in fields and fields["kind"] in ("categorical", "boolean") and "categories" not in fields:
                by_name[name]["categories"] = by_name[name].get("categories")
        for key in ("primary_key", "constraints", "public"):
            if key in overrides:
                data[key] = overrides[key]
        return TableSchema.from_dict(data, source)


def _yaml_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"
