"""synthloop: synthetic tabular data good enough to replace real data."""
from __future__ import annotations

from typing import Any

from synthloop.schema import ColumnKind, TableSchema, infer_schema
from synthloop.synthesizers import BaseSynthesizer, load_synthesizer

__version__ = "0.1.0"
__all__ = ["BaseSynthesizer", "ColumnKind", "GaussianCopulaSynthesizer", "TableSchema", "evaluate", "infer_schema", "load_synthesizer"]


def __getattr__(name: str) -> Any:
    """Lazy attributes: `synthloop.evaluate(real, synth, ...)` and the synthesizer classes."""
    import importlib

    if name == "evaluate":
        return importlib.import_module("synthloop.evaluate")
    import synthloop.synthesizers as synthesizers

    return getattr(synthesizers, name)
