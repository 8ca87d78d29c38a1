"""What every verb shares: the two consoles, the progress bar, the schema-override loader, a JSON default.

Kept light (typer and rich.console only at import time) because `synthloop --help` imports it.
Both consoles print text literally (`markup=False`): column names, file names, conditions and error
messages are user data, and `[/x]` or `[red]` in them must neither crash nor vanish. Styling is
applied with `rich.text.Text` / `style=`, never with markup in a string that holds user data.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:  # pragma: no cover
    from rich.progress import Progress

console = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)
out = Console(markup=False, highlight=False, soft_wrap=True)  # soft wrap: paths and messages stay on one line


def styled(*parts: str | tuple[str, str]) -> Text:
    """`styled(("error:", "red"), " ", message)`: style some parts, print every part literally."""
    return Text.assemble(*parts)


def progress(*, bar: bool = True) -> "Progress":
    """The verbs' progress display on stderr (off when stderr is not a terminal); descriptions are literal."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}", style="bold", markup=False)]
    if bar:
        columns.append(BarColumn())
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=console, transient=False, disable=not console.is_terminal)


def load_schema_overrides(path: Optional[Path]) -> Optional[dict[str, Any]]:
    """The `--schema` YAML file as a dict (None without one); bad YAML is one line naming the file and line."""
    if path is None:
        return None
    from synthloop.errors import SynthloopError
    from synthloop.io import read_yaml

    data, _ = read_yaml(path, SynthloopError, "schema file")
    return data or {}


def json_default(o: Any) -> Any:
    """`json.dumps(default=...)` for NumPy scalars (NaN becomes null) and anything else as text."""
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return str(o)


def print_figures(fig: dict[str, Any]) -> None:
    """The headline figures of `evaluate` and `demo` as a table on stdout."""
    from rich.table import Table

    table = Table(title="synthetic vs real", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("ideal", justify="right")
    ideals = {"quality_score": "1.0", "column_shapes": "1.0", "column_pair_trends": "1.0", "exact_copy_rate": "0.0",
              "dcr_share": "0.5", "holdout_exact_copy_rate": "-", "detection_auc": "0.5"}
    for k, ideal in ideals.items():
        if fig.get(k) is not None:
            table.add_row(k, f"{fig[k]:.4f}", ideal)
    out.print(table)


# --ray / --ray-address on sample, generate, fit and evaluate (synthloop.runners; Ray loads only with them)
RAY_HELP = "Run the parallel parts on Ray: join the running local Ray instance or start one (needs the ray extra: pip install 'synthloop[ray]')."
RAY_ADDRESS_HELP = "Run on an existing Ray cluster, e.g. auto, 10.0.0.5:6379 or ray://head:10001 (implies --ray)."
WORKERS_HELP = "Ray workers (parallel tasks, actors or training processes); default: the cluster's CPUs."


def make_runner(ray: bool, address: Optional[str], workers: Optional[int] = None) -> Any:
    """The runner the flags ask for (synthloop.runners.get_runner); one error line when Ray is missing."""
    from synthloop.runners import get_runner

    return get_runner(ray, address, workers)
