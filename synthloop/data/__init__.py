"""The small public demo table shipped with synthloop (see README.md here for attribution)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd


def demo_path() -> Path:
    return Path(str(resources.files("synthloop.data").joinpath("adult_demo.csv.gz")))


def load_demo() -> pd.DataFrame:
    """5,000 rows of UCI Adult (CC BY 4.0)."""
    return pd.read_csv(demo_path())
