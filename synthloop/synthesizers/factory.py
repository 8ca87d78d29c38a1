"""Choosing and configuring a synthesizer by name, as the command line does (`--model auto`).

`auto` is the best model that fits the default time budget: the autoregressive model when torch is
installed, else the Gaussian copula. Its budget scales with the table (rows x columns), so that a
small table fits in seconds and only a large one uses the full `AUTO_BUDGET_MAX_S`.
"""
from __future__ import annotations

from typing import Any, Optional

from synthloop.errors import SynthloopError

DEFAULT_MODEL = "auto"
AUTO_BUDGET_MIN_S = 10.0
AUTO_BUDGET_MAX_S = 300.0
# Seconds of budget per million table cells (rows x columns), on top of the minimum. The budget is a
# ceiling: the autoregressive model stops earlier when its epochs are done or its validation loss
# settles, which on small tables takes seconds. Adult (32,561 x 15 = 0.49 M cells) keeps the full
# 300 s its quality was tuned with; the 4,000 x 15 demo table gets 46 s; 200 x 500 gets 70 s.
AUTO_BUDGET_S_PER_MCELL = 600.0


def default_budget(n_rows: int, n_columns: int) -> float:
    """Seconds of training `--model auto` allows for a table of this size (10 s to 300 s)."""
    cells = max(int(n_rows), 0) * max(int(n_columns), 0)
    budget = AUTO_BUDGET_MIN_S + AUTO_BUDGET_S_PER_MCELL * cells / 1e6
    return float(min(AUTO_BUDGET_MAX_S, round(budget)))


def resolve_model(name: str) -> str:
    """The model a name means: `auto` is autoregressive where torch is installed, else copula."""
    from synthloop.synthesizers.base import available_models

    models = available_models()
    if name == "auto":
        return "autoregressive" if "autoregressive" in models else "copula"
    if name not in models:
        raise SynthloopError(f"unknown model '{name}'; choose one of: auto, {', '.join(models)}")
    return name


def make_synthesizer(model: str, seed: int, epochs: Optional[int] = None, max_seconds: Optional[float] = None,
                     epsilon: Optional[float] = None, delta: Optional[float] = None,
                     shape: Optional[tuple[int, int]] = None) -> Any:
    """An unfitted synthesizer from command-line style options; flags a model does not take are refused.

    `shape` (rows, columns) of the training table sets the budget of `auto` (see `default_budget`);
    without it `auto` gets the full `AUTO_BUDGET_MAX_S`.
    """
    from synthloop.synthesizers.base import synthesizer_class

    klass = synthesizer_class(resolve_model(model))
    if model == "auto" and max_seconds is None:
        max_seconds = default_budget(*shape) if shape is not None else AUTO_BUDGET_MAX_S
    params: dict[str, Any] = {"random_state": seed}
    accepted = klass._get_param_names()
    for flag, key, value in (("--epochs", "epochs", epochs), ("--epsilon", "epsilon", epsilon), ("--delta", "delta", delta)):
        if value is None:
            continue
        if key not in accepted:
            raise SynthloopError(f"{flag} does not apply to the {klass.name} model")
        params[key] = value
    if max_seconds is not None and "max_seconds" in accepted:
        params["max_seconds"] = max_seconds
    return klass(**{k: v for k, v in params.items() if k in accepted})
