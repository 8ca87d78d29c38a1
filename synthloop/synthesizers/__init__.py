"""Learned synthesizers behind one interface (see base.BaseSynthesizer).

Classes are imported lazily: `import synthloop` stays fast and torch loads only for the deep models.
"""
from __future__ import annotations

import importlib
from typing import Any

from synthloop.synthesizers.base import (MODEL_MODULES, BaseSynthesizer, available_models, load_synthesizer,
                                         synthesizer_class)

_CLASSES = {
    "GaussianCopulaSynthesizer": "synthloop.synthesizers.copula",
    "AutoregressiveSynthesizer": "synthloop.synthesizers.autoregressive",
    "GANSynthesizer": "synthloop.synthesizers.gan",
    "VAESynthesizer": "synthloop.synthesizers.vae",
    "DPMarginalSynthesizer": "synthloop.synthesizers.dp_marginals",
    "RelationalSynthesizer": "synthloop.synthesizers.relational",  # a database: dict of tables + Metadata
}

__all__ = ["BaseSynthesizer", "MODEL_MODULES", "available_models", "load_synthesizer", "synthesizer_class", *_CLASSES]


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module 'synthloop.synthesizers' has no attribute '{name}'")
