"""Choosing and configuring a synthesizer by name, as the command line does (`--model auto`).

`auto` is the model expected to do best within a time budget scaled to the table (rows x columns):
the autoregressive model when torch is installed and the table has enough rows per column for it to
learn from, else the Gaussian copula. Measured on this project's machines (quality, detection AUC):
on Adult samples the autoregressive model matches the copula at 500 rows and beats it from 1,000
rows on (detection 0.76 vs 0.89); on 200 rows x 500 columns it scores 0.76 against the copula's 0.93,
so wide or tiny tables get the copula. The budget is a ceiling: small tables finish in seconds.
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
AUTO_MIN_ROWS = 500  # below this the copula is as good or better (see module docstring)
AUTO_MAX_COLUMNS = 100  # beyond this the autoregressive model needs its factorized layer and loses


def default_budget(n_rows: int, n_columns: int) -> float:
    """Seconds of training `--model auto` allows for a table of this size (10 s to 300 s)."""
    cells = max(int(n_rows), 0) * max(int(n_columns), 0)
    budget = AUTO_BUDGET_MIN_S + AUTO_BUDGET_S_PER_MCELL * cells / 1e6
    return float(min(AUTO_BUDGET_MAX_S, round(budget)))


def auto_choice(shape: Optional[tuple[int, int]] = None) -> tuple[str, str]:
    """(model, why) that `auto` picks for a table of `shape` (rows, columns); None: any table."""
    from synthloop.synthesizers.base import available_models

    if "autoregressive" not in available_models():
        return "copula", "torch is not installed"
    if shape is not None:
        rows, cols = int(shape[0]), int(shape[1])
        if rows < AUTO_MIN_ROWS:
            return "copula", f"fewer than {AUTO_MIN_ROWS} rows, where it does as well as the autoregressive model"
        if cols > AUTO_MAX_COLUMNS:
            return "copula", f"more than {AUTO_MAX_COLUMNS} columns, where it does better than the autoregressive model"
    return "autoregressive", "the best model within the time budget"


def resolve_model(name: str, shape: Optional[tuple[int, int]] = None) -> str:
    """The model a name means: `auto` picks by the table's `shape` (see `auto_choice`)."""
    from synthloop.synthesizers.base import available_models

    models = available_models()
    if name == "auto":
        return auto_choice(shape)[0]
    if name not in models:
        raise SynthloopError(f"unknown model '{name}'; choose one of: auto, {', '.join(models)}")
    return name


def make_synthesizer(model: str, seed: int, epochs: Optional[int] = None, max_seconds: Optional[float] = None,
                     epsilon: Optional[float] = None, delta: Optional[float] = None, domain: Optional[str] = None,
                     shape: Optional[tuple[int, int]] = None, combination_guard: Optional[int] = None) -> Any:
    """An unfitted synthesizer from command-line style options; flags a model does not take are refused.

    `shape` (rows, columns) of the training table lets `auto` choose the model (`auto_choice`) and
    its budget (`default_budget`); without it `auto` is autoregressive with the full `AUTO_BUDGET_MAX_S`.
    """
    from synthloop.synthesizers.base import synthesizer_class

    # --epochs and --combination-guard only mean something to the autoregressive model: `auto` then stays it
    klass = synthesizer_class(resolve_model(model, None if epochs is not None or combination_guard else shape))
    if model == "auto" and max_seconds is None:
        max_seconds = default_budget(*shape) if shape is not None else AUTO_BUDGET_MAX_S
    params: dict[str, Any] = {"random_state": seed}
    accepted = klass._get_param_names()
    for flag, key, value in (("--epochs", "epochs", epochs), ("--epsilon", "epsilon", epsilon), ("--delta", "delta", delta),
                             ("--domain", "domain", domain), ("--combination-guard", "combination_guard", combination_guard)):
        if value is None:
            continue
        if key not in accepted:
            raise SynthloopError(f"{flag} does not apply to the {klass.name} model")
        params[key] = value
    if max_seconds is not None and "max_seconds" in accepted:
        params["max_seconds"] = max_seconds
    return klass(**{k: v for k, v in params.items() if k in accepted})
