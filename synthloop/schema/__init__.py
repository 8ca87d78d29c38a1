"""Column kinds and table schemas: inferred from data, overridden from YAML, round-tripped as JSON/YAML."""
from synthloop.schema.model import ColumnKind, ColumnSchema, PiiType, TableSchema
from synthloop.schema.inference import infer_schema

__all__ = ["ColumnKind", "ColumnSchema", "PiiType", "TableSchema", "infer_schema"]
