"""The YAML spec of prompted generation: models, loading with YAML-path errors, column DAG."""
from synthloop.spec.errors import GenerationError, LLMError, SpecError
from synthloop.spec.loader import load_spec, loads_spec, parse_spec
from synthloop.spec.models import Column, Diversity, FewShot, LLMColumn, LLMSettings, Sampler, Spec

__all__ = [
    "Column", "Diversity", "FewShot", "GenerationError", "LLMColumn", "LLMError", "LLMSettings", "Sampler",
    "Spec", "SpecError", "load_spec", "loads_spec", "parse_spec",
]
