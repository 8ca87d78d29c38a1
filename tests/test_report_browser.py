"""The HTML report in a real headless browser: it loads offline, without script errors, and draws.

Needs Debian's chromium (`scripts/install_test_deps.sh` installs it); skipped with the reason otherwise.
"""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import synthloop.evaluate as ev

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or "") if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: run scripts/install_test_deps.sh (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars"]


def _table(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    age = rng.integers(18, 80, n)
    return pd.DataFrame({
        "age": age, "income": np.round(age * 900 + rng.normal(shift * 3000, 6000, n), 2),
        "sex": rng.choice(["F", "M"], n), "segment": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "churn": rng.choice(["no", "yes"], n, p=[0.7, 0.3]),
    })


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    real, holdout, synth = _table(600, rng), _table(600, rng), _table(600, rng, shift=1.0)
    out = tmp_path_factory.mktemp("report") / "report.html"
    ev.evaluate(real, synth, holdout=holdout, target="churn", protected=["sex"], max_rows=400).to_html(out)
    return out


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_report_loads_offline_without_script_errors_and_renders_every_plot(report, tmp_path):
    run = _chromium(tmp_path, "--dump-dom", report.as_uri())
    body = re.search(r"<body[^>]*>", run.stdout)
    assert body, f"no DOM dumped (rc {run.returncode}): {run.stderr[-800:]}"
    tag = body.group(0)
    assert "data-js-errors" not in tag, tag
    expected = int(re.search(r'data-plots-expected="(\d+)"', tag).group(1))
    rendered = int(re.search(r'data-plots-rendered="(\d+)"', tag).group(1))
    assert expected >= 8 and rendered == expected
    console_errors = [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln and re.search(r"error|uncaught", ln, re.I)]
    assert not console_errors, console_errors
    assert run.stdout.count("main-svg") >= expected  # plotly drew an <svg class="main-svg"> per plot


def test_screenshot_of_the_report_is_not_blank(report, tmp_path):
    image = pytest.importorskip("PIL.Image")
    shot = tmp_path / "shot.png"
    run = _chromium(tmp_path, "--window-size=1200,3200", f"--screenshot={shot}", report.as_uri())
    assert shot.exists(), f"no screenshot (rc {run.returncode}): {run.stderr[-800:]}"
    pixels = np.asarray(image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[0] >= 1000 and pixels.std() > 20  # a blank page has ~0 variance
    # the plots draw real rows in blue and synthetic rows in orange (blended where bars overlap)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    blue = ((b - r > 60) & (b > 120)).mean()
    orange = ((r - b > 100) & (r > 180) & (g > 80) & (g < 200)).mean()
    assert blue > 0.002 and orange > 0.002, (blue, orange)
