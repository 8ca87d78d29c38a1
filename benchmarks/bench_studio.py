"""Issue 19 benchmark: the studio measured in a real headless Chromium (Debian's, through Playwright).

Cases (one JSON line each; times measured inside the page with performance.now()):
- page_load_to_interactive: navigation start to the page's ready mark (API info and file list loaded,
  editor drawn, handlers bound), over `--loads` fresh page loads; target <= 1,000 ms.
- preview_refresh_samplers: an edit (a number typed into a sampler field) to the refreshed 10-row
  preview, histograms and DAG drawn (next animation frame), spec of sampler and expression columns
  only (examples/prompted/card_transactions.yaml without its LLM columns); target <= 300 ms.
- preview_refresh_with_llm_column: the same edit on a spec with one LLM column: the sampler preview
  (the LLM column waits for its button); target <= 300 ms.
- llm_preview_cold / llm_preview_cached: the button "Run LLM columns" (10 rows, the embedded
  SmolLM2-135M): first press (model load + 10 generations), then after an edit the prompt does not read
  (answers cached). No target in the issue; reported as measured.
No peer: no open, local tool of this kind exists (the issue names hosted services only).
Run: `python benchmarks/bench_studio.py` (`--quick`: 3 loads, 5 edits, no LLM cases).
Screenshots go to benchmarks/results/studio/bench_*.png.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHOTS = ROOT / "benchmarks" / "results" / "studio"
CHROMIUM = "/usr/bin/chromium"


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1),
            "p90_ms": round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 1), "max_ms": round(ms[-1], 1)}


def edits(pg, selector: str, n: int) -> list[float]:
    """Type `n` different numbers into `selector`; each waits for its preview; returns in-page latencies."""
    out = []
    for i in range(n):
        before = pg.evaluate("window.studio.timings.length")
        pg.locator(selector).fill(f"{3 + (i % 10) / 10:.1f}")  # one input event, as a paste or a typed value would send
        pg.wait_for_function(f"window.studio.timings.length > {before} && !window.studio.inflight && !window.studio.dirty")
        out.append(pg.evaluate("window.studio.timings[window.studio.timings.length - 1].ms"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 loads, 5 edits, no LLM cases (a check that it runs)")
    ap.add_argument("--loads", type=int, default=10)
    ap.add_argument("--edits", type=int, default=30)
    args = ap.parse_args()
    loads, n_edits = (3, 5) if args.quick else (args.loads, args.edits)

    import os

    from playwright.sync_api import sync_playwright

    os.environ["SYNTHLOOP_STUDIO_WARM"] = "0"  # no job runs here: no background warm-up competing for the CPU

    from synthloop.studio.app import create_app
    from synthloop.studio.server import BackgroundServer

    base = {"bench": "studio", "machine": f"{platform.machine()} {platform.system()}", "browser": "chromium (Debian) headless",
            "peer": None, "load_avg_1m": round(os.getloadavg()[0], 1), "cpus": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="bench_studio_"))
    shutil.copytree(ROOT / "examples" / "prompted", work / "examples")
    card = yaml.safe_load((work / "examples" / "card_transactions.yaml").read_text())
    samplers = {**card, "columns": [c for c in card["columns"] if "llm" not in c]}
    samplers.pop("targets", None)
    (work / "samplers.yaml").write_text(yaml.safe_dump(samplers, sort_keys=False))
    one_llm = {"name": "one_llm", "rows": 100, "seed": 7, "llm": {"backend": "embedded", "max_tokens": 24},
               "columns": [c for c in samplers["columns"] if c["name"] in ("transaction_id", "type", "amount", "cardholder")]
               + [{"name": "merchant", "llm": {"prompt": "A merchant name for a {{ type }} card payment.", "max_chars": 40}}]}
    (work / "one_llm.yaml").write_text(yaml.safe_dump(one_llm, sort_keys=False))
    errors: list[str] = []
    try:
        with BackgroundServer(create_app(work)) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            ctx = browser.new_context(viewport={"width": 1400, "height": 950})
            pg = ctx.new_page()
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(str(e)))
            ready = []
            for i in range(loads + 1):  # the first load warms the server's imports and the browser cache
                pg.goto(url + "/")
                pg.wait_for_selector("body[data-ready='1']")
                t = pg.evaluate("window.studio.readyAt")
                if i:
                    ready.append(t)
            emit({**base, "case": "page_load_to_interactive", **stats(ready), "target_ms": 1000,
                  "met": statistics.median(ready) <= 1000 and max(ready) <= 1000})

            def open_spec(path: str) -> None:
                before = pg.evaluate("window.studio.timings.length")
                pg.select_option("#spec-open-list", path)
                pg.click("#spec-open")
                pg.wait_for_function(f"window.studio.timings.length > {before} && !window.studio.inflight")

            open_spec("samplers.yaml")
            field = ".col-card:nth-child(3) input[aria-label=mean]"  # amount ~ lognormal: its histogram redraws
            lat = edits(pg, field, n_edits)
            SHOTS.mkdir(parents=True, exist_ok=True)
            pg.screenshot(path=str(SHOTS / "bench_samplers.png"), full_page=True)
            emit({**base, "case": "preview_refresh_samplers", "spec": "card_transactions.yaml without LLM columns",
                  "columns": len(samplers["columns"]), **stats(lat), "target_ms": 300,
                  "met": statistics.median(lat) <= 300 and stats(lat)["p90_ms"] <= 300})

            open_spec("one_llm.yaml")
            field = ".col-card:nth-child(3) input[aria-label=mean]"
            lat = edits(pg, field, n_edits)
            emit({**base, "case": "preview_refresh_with_llm_column", "columns": len(one_llm["columns"]), **stats(lat),
                  "target_ms": 300, "met": statistics.median(lat) <= 300 and stats(lat)["p90_ms"] <= 300,
                  "note": "sampler preview; the LLM column fills on demand"})
            if not args.quick:
                for case in ("llm_preview_cold", "llm_preview_cached"):
                    if case == "llm_preview_cached":
                        pg.locator(".col-card:nth-child(3) input[aria-label=sigma]").fill("1.2")  # amount: not in the prompt
                        pg.wait_for_function("!window.studio.inflight && !window.studio.dirty")
                    done = int(pg.evaluate("Number(document.body.dataset.llmDone || 0)"))
                    before = pg.evaluate("window.studio.timings.length")
                    t0 = time.perf_counter()
                    pg.click("#preview-llm")
                    pg.wait_for_function(f"Number(document.body.dataset.llmDone || 0) > {done}", timeout=600_000)
                    wall = (time.perf_counter() - t0) * 1000
                    pg.wait_for_function(f"window.studio.timings.length > {before}")
                    ms = pg.evaluate("window.studio.timings[window.studio.timings.length - 1].ms")
                    filled = pg.locator("#preview-table tbody td:last-child").all_inner_texts()
                    emit({**base, "case": case, "rows": 10, "model": "SmolLM2-135M-Instruct (embedded)",
                          "ms": round(ms, 1), "wall_ms": round(wall, 1), "filled": sum(bool(t.strip()) for t in filled)})
                pg.screenshot(path=str(SHOTS / "bench_llm.png"), full_page=True)
            browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit({**base, "case": "console_errors", "count": len(errors), "errors": errors[:5], "met": not errors})


if __name__ == "__main__":
    main()
