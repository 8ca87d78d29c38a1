"""synthloop: synthetic tabular data good enough to replace real data.

Every public name is exported lazily (module `__getattr__`), so that `import synthloop.cli` and
`import synthloop.errors` do not pull in pandas, scipy or torch: the command line starts fast and
each verb imports what it needs.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ColumnKind": "synthloop.schema",
    "TableSchema": "synthloop.schema",
    "infer_schema": "synthloop.schema",
    "BaseSynthesizer": "synthloop.synthesizers",
    "load_synthesizer": "synthloop.synthesizers",
}
__all__ = ["BaseSynthesizer", "ColumnKind", "GaussianCopulaSynthesizer", "TableSchema", "evaluate", "infer_schema",
           "load_synthesizer"]

if TYPE_CHECKING:  # pragma: no cover
    from synthloop.schema import ColumnKind, TableSchema, infer_schema
    from synthloop.synthesizers import BaseSynthesizer, GaussianCopulaSynthesizer, load_synthesizer


def __getattr__(name: str) -> Any:
    """Lazy attributes: the schema and synthesizer API, `synthloop.evaluate(real, synth, ...)`, the
    synthesizer classes (`synthloop.GaussianCopulaSynthesizer`) and the subpackages."""
    if name.startswith("__"):
        raise AttributeError(f"module 'synthloop' has no attribute '{name}'")
    if name == "evaluate":
        return importlib.import_module("synthloop.evaluate")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    try:
        return importlib.import_module(f"synthloop.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"synthloop.{name}":
            raise
    synthesizers = importlib.import_module("synthloop.synthesizers")
    try:
        return getattr(synthesizers, name)
    except AttributeError:
        raise AttributeError(f"module 'synthloop' has no attribute '{name}'") from None
