"""Judging synthetic data: quality (SDMetrics definitions), detection, utility, privacy, fairness,
coverage, constraints, and the HTML/JSON report.

`synthloop.evaluate` is both this package and a function: `synthloop.evaluate(real, synth, ...)`
calls `synthloop.evaluate.suite.evaluate` (the module's class is swapped for a callable one below).
"""
import sys
import types

from typing import Any

from synthloop.evaluate.privacy import dcr_share, exact_copy_rate, privacy_figures
from synthloop.evaluate.quality import QualityResult, quality_score

__all__ = ["EvaluationResult", "QualityResult", "dcr_share", "evaluate", "exact_copy_rate", "privacy_figures",
           "quality_score"]


def __getattr__(name: str) -> Any:
    """The suite (scikit-learn models, torch distances) loads on first use, so the CLI starts fast."""
    if name in ("evaluate", "EvaluationResult"):
        from synthloop.evaluate import suite
        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """Lets `import synthloop; synthloop.evaluate(real, synth)` work while the package stays importable."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from synthloop.evaluate.suite import evaluate
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
