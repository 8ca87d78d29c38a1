"""Shared fixtures: the real datasets in ../shared/data and small made-up tables."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, without any *_API_KEY from this environment (plus `env`)."""
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run([sys.executable, "-m", "synthloop.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=120, cwd=cwd)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The single stderr line of a run that failed as a user error (exit 2, no traceback)."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (the shared/ folder beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def adult(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / "adult" / "adult.csv.gz")


@pytest.fixture(scope="session")
def credit(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / "credit_default_taiwan" / "credit_default_taiwan.csv")


@pytest.fixture()
def mixed_table() -> pd.DataFrame:
    """Every column kind, with nulls, rounding, a spike and a date format."""
    rng = np.random.default_rng(0)
    n = 600
    age = rng.integers(18, 90, n)
    income = np.round(age * 1000 + rng.normal(0, 5000, n), 2)
    income[rng.random(n) < 0.1] = np.nan
    gain = np.where(rng.random(n) < 0.8, 0, rng.integers(100, 5000, n))
    seg = rng.choice(["retail", "sme", "corporate"], n, p=[0.6, 0.3, 0.1]).astype(object)
    seg[rng.random(n) < 0.05] = None
    start = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")
    return pd.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(n)],
        "age": age,
        "income": income,
        "capital_gain": gain,
        "segment": seg,
        "active": rng.random(n) < 0.7,
        "opened": start.strftime("%d/%m/%Y"),
        "email": [f"user{i}@example.com" for i in range(n)],
        "note": [f"customer {i} asked about the {w} offer and wants a call back" for i, w in enumerate(rng.choice(["gold", "silver", "basic"], n))],
    })
