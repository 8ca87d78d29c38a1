"""synthloop: synthetic tabular data good enough to replace real data."""
from synthloop.schema import ColumnKind, TableSchema, infer_schema
from synthloop.synthesizers import BaseSynthesizer, GaussianCopulaSynthesizer, load_synthesizer

__version__ = "0.1.0"
__all__ = ["BaseSynthesizer", "ColumnKind", "GaussianCopulaSynthesizer", "TableSchema", "infer_schema", "load_synthesizer"]
