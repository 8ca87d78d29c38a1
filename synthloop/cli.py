"""synthloop command line: the app, its entry point, and the verbs (one module each in synthloop/commands/).

This module stays thin and light: it imports typer, rich.console and the verb modules, which import
pandas, NumPy, scipy, scikit-learn or torch only inside their command bodies, so that
`synthloop --help` starts in a fraction of a second.
"""
from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

import typer

from synthloop.commands._common import console, styled
from synthloop.errors import SynthloopError

app = typer.Typer(
    name="synthloop",
    help="Synthetic tabular data that can replace real data: learn a table (fit), draw new rows (sample), "
         "and measure fidelity and privacy (evaluate).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Helpers that used to live here, for code that imports them from synthloop.cli (loaded on first use).
_LAZY = {  # name here: (module, name there)
    "resolve_model": ("synthloop.synthesizers.factory", "resolve_model"),
    "make_synthesizer": ("synthloop.synthesizers.factory", "make_synthesizer"),
    "DEFAULT_MODEL": ("synthloop.synthesizers.factory", "DEFAULT_MODEL"),
    "AUTO_BUDGET_S": ("synthloop.synthesizers.factory", "AUTO_BUDGET_MAX_S"),
    "evaluate_tables": ("synthloop.evaluate.headline", "evaluate_tables"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'synthloop.cli' has no attribute '{name}'")


def main() -> None:
    """Entry point: user errors print one line and exit 2; Ctrl-C exits 130 without a traceback."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            app()
        except SynthloopError as exc:
            _flush_warnings(caught)
            console.print(styled(("error:", "red"), " ", str(exc)), soft_wrap=True)
            sys.exit(2)
        except KeyboardInterrupt:
            console.print("interrupted; finished outputs are kept, unfinished ones were not written")
            sys.exit(130)
        finally:
            _flush_warnings(caught)


def _flush_warnings(caught: list) -> None:
    """Print the inference warnings (named column, what was chosen, how to change it) caught so far."""
    inference = sys.modules.get("synthloop.schema.inference")  # not loaded: nothing could have warned
    if inference is None:
        caught.clear()
        return
    for w in caught:
        if issubclass(w.category, inference.InferenceWarning):
            console.print(styled(("warning:", "yellow"), " ", str(w.message)), soft_wrap=True)
    caught.clear()


# The verbs, in the order `--help` lists them: one module each in synthloop/commands/, which adds its
# commands with register(app). A new verb is one module and one name here (not below the guard:
# `python -m synthloop.cli` runs main() there, and main() exits).
VERBS = ("fit", "sample", "evaluate", "schema", "demo", "generate", "prompt", "report", "refine", "audit", "studio", "autopilot",
         "certify")
for _verb in VERBS:
    importlib.import_module(f"synthloop.commands.{_verb}").register(app)


if __name__ == "__main__":
    main()
