"""Column kinds and table schemas: inferred from data, overridden from YAML, round-tripped as JSON/YAML."""
from synthloop.schema.model import ColumnKind, ColumnSchema, PiiType, TableSchema
from synthloop.schema.inference import infer_schema
from synthloop.schema.metadata import Metadata, detect_metadata, read_tables

__all__ = ["ColumnKind", "ColumnSchema", "PiiType", "TableSchema", "infer_schema", "Metadata", "detect_metadata",
           "read_tables"]
