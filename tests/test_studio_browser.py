"""The studio in a real headless Chromium (Debian's package, driven by Playwright with the system browser):
build a spec with mouse and keyboard, open and save the examples, learn from an uploaded table, refine,
read a run's report; no console errors on any page, and screenshots that are not blank.

Set SYNTHLOOP_STUDIO_SHOTS=DIR to keep the screenshots (benchmarks/results/studio/ holds the committed ones).
"""
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from synthloop.studio.app import create_app
from synthloop.studio.server import BackgroundServer
from synthloop.studio.specio import same_yaml

CHROMIUM = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: run scripts/install_test_deps.sh")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXPECTED_THREE = """name: my_data
rows: 100
seed: 0
columns:
- name: kind
  sampler:
    categorical: {credit: 0.7, debit: 0.3}
- name: amount
  sampler:
    normal: {mean: 50, std: 10, min: 0, decimals: 2}
- name: fee
  expression: round(amount * 0.02, 2)
"""


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio_ui")
    shutil.copytree(EXAMPLES / "prompted", root / "examples")
    rng = np.random.default_rng(0)
    n = 300
    age = rng.integers(18, 80, n)
    pd.DataFrame({"age": age, "income": np.round(age * 900 + rng.normal(0, 6000, n), 2),
                  "segment": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])}).to_csv(root / "people.csv", index=False)
    (root / "cards.yaml").write_text("name: cards\nrows: 200\nseed: 1\ncolumns:\n- name: type\n  sampler:\n"
                                     "    categorical: {credit: 0.5, debit: 0.5}\n- name: amount\n  sampler:\n"
                                     "    lognormal: {mean: 3, sigma: 1, min: 1, max: 20000}\n")
    with BackgroundServer(create_app(root)) as url:
        yield url, root


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser, studio):
    url, _ = studio
    ctx = browser.new_context(viewport={"width": 1400, "height": 950}, accept_downloads=True)
    pg = ctx.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(f"{m.text} @ {m.location.get('url', '')}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(f"uncaught: {e}"))
    pg.goto(url + "/")
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    ctx.close()


def shot(pg, name: str, tmp_path: Path) -> Path:
    """A full-page screenshot that must not be blank (a blank page has ~0 pixel variance)."""
    from PIL import Image

    keep = os.environ.get("SYNTHLOOP_STUDIO_SHOTS")
    out = Path(keep) / f"{name}.png" if keep else tmp_path / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(out), full_page=True)
    pixels = np.asarray(Image.open(out).convert("L"), dtype=float)
    assert pixels.std() > 15 and (pixels < 128).mean() > 0.005, (name, pixels.std())
    return out


def wait_preview(pg, after: int) -> None:
    pg.wait_for_function(f"Number(document.body.dataset.previewSeq || 0) > {after} && !window.studio.inflight && !window.studio.dirty")


def seq(pg) -> int:
    return int(pg.evaluate("Number(document.body.dataset.previewSeq || 0)"))


def test_build_a_three_column_spec_with_mouse_and_keyboard_preview_and_save(page, studio, tmp_path):
    url, root = studio
    pg = page
    pg.click("#add-column")
    pg.keyboard.type("kind")  # the new column's name is focused and selected
    card = pg.locator(".col-card").nth(0)
    vals = card.locator("input.val")
    vals.nth(0).click(click_count=3)
    pg.keyboard.type("credit")
    pg.keyboard.press("Tab")
    vals.nth(1).click(click_count=3)
    pg.keyboard.type("debit")
    pg.keyboard.press("Tab")
    card = pg.locator(".col-card").nth(0)  # redrawn after the value names changed
    card.locator("input[type=range]").nth(0).focus()
    for _ in range(20):
        pg.keyboard.press("ArrowRight")  # 0.50 -> 0.70 in steps of 0.01
    card.locator("input.w").nth(1).click(click_count=3)
    pg.keyboard.type("0.3")

    pg.click("#add-column")
    pg.keyboard.type("amount")
    card = pg.locator(".col-card").nth(1)
    card.locator("select.kind").select_option("normal")
    card = pg.locator(".col-card").nth(1)
    for field, value in (("mean", "50"), ("std", "10"), ("min", "0"), ("decimals", "2")):
        card.locator(f"input[aria-label={field}]").click(click_count=3)
        pg.keyboard.type(value)

    pg.click("#add-column")
    pg.keyboard.type("fee")
    pg.locator(".col-card").nth(2).locator("select.source").select_option("expression")
    expr = pg.locator(".col-card").nth(2).locator("input.expr")
    expr.click(click_count=3)
    pg.keyboard.type("round(amount * 0.02, 2)")
    wait_preview(pg, 0)

    assert pg.locator("#preview-table tbody tr").count() == 10
    assert pg.locator("#preview-table th").all_inner_texts() == ["kind", "amount", "fee"]
    kinds = set(pg.locator("#preview-table tbody td:nth-child(1)").all_inner_texts())
    assert kinds <= {"credit", "debit"} and kinds
    assert pg.locator("svg[data-hist=amount] rect").count() == 20  # the live histogram of 1,000 draws
    assert pg.locator("#dag line[data-edge='amount->fee']").count() == 1
    pg.fill("#spec-path", "specs/three.yaml")
    pg.click("#spec-save")
    pg.wait_for_function("document.body.dataset.saved === 'specs/three.yaml'")
    assert (root / "specs" / "three.yaml").read_text() == EXPECTED_THREE
    shot(pg, "design", tmp_path)
    assert pg.console_errors == []


def test_bad_input_shows_the_error_at_the_field_and_saves_nothing(page, studio, tmp_path):
    url, root = studio
    pg = page
    pg.click("#add-column")
    pg.keyboard.type("kind")
    pg.click("#add-column")
    pg.keyboard.type("fee")
    pg.locator(".col-card").nth(1).locator("select.source").select_option("expression")
    expr = pg.locator(".col-card").nth(1).locator("input.expr")
    expr.click(click_count=3)
    before = seq(pg)
    pg.keyboard.type("amount * 2")
    wait_preview(pg, before)
    assert "invalid" in expr.get_attribute("class")
    err = pg.locator(".col-card").nth(1).locator(".field-error").inner_text()
    assert "unknown column 'amount'" in err
    pg.fill("#spec-path", "specs/bad.yaml")
    pg.click("#spec-save")
    pg.wait_for_function("document.body.dataset.saved === ''")
    assert "not saved" in pg.inner_text("#status")
    shot(pg, "design_error", tmp_path)

    expr.click(click_count=3)
    pg.keyboard.type("kind")
    weight = pg.locator(".col-card").nth(0).locator("input.w").nth(0)
    weight.click(click_count=3)
    before = seq(pg)
    pg.keyboard.type("lots")
    wait_preview(pg, before)
    assert "invalid" in weight.get_attribute("class")
    assert "valid number" in pg.locator(".col-card").nth(0).locator(".field-error").inner_text()
    pg.click("#spec-save")
    pg.wait_for_function("document.body.dataset.saved === '' && document.querySelector('#status').textContent.includes('valid number')")
    assert not (root / "specs" / "bad.yaml").exists()
    # the refused saves answer 400, which Chromium logs; nothing else may appear
    assert all("status of 400" in e and "/api/spec/save" in e for e in pg.console_errors), pg.console_errors


def test_the_examples_open_in_the_page_and_save_back_unchanged(page, studio, tmp_path):
    url, root = studio
    pg = page
    for path in sorted(p.name for p in (EXAMPLES / "prompted").glob("*.yaml")):
        before = seq(pg)
        pg.select_option("#spec-open-list", f"examples/{path}")
        pg.click("#spec-open")
        wait_preview(pg, before)
        assert pg.evaluate("document.body.dataset.previewOk") == "1"
        pg.fill("#spec-path", f"examples/resaved_{path}")
        pg.click("#spec-save")
        pg.wait_for_function(f"document.body.dataset.saved === 'examples/resaved_{path}'")
        assert same_yaml((EXAMPLES / "prompted" / path).read_text(), (root / "examples" / f"resaved_{path}").read_text())
        if path == "patient_visits.yaml":
            assert pg.locator("td.pending").count() > 0  # LLM columns wait for the button
            shot(pg, "design_example", tmp_path)
    assert pg.console_errors == []


def test_upload_fit_a_copula_sample_with_a_condition_and_download(page, studio, tmp_path):
    url, root = studio
    pg = page
    pg.click("#tabs button[data-tab=learn]")
    pg.set_input_files("#upload-file", str(root / "people.csv"))
    pg.click("#upload")
    pg.wait_for_selector("#schema-table tr[data-column=segment]")
    assert pg.locator("#schema-table tbody tr").count() == 3
    pg.fill("#schema-table input[aria-label='min of income']", "0")  # override the inferred range
    pg.select_option("#schema-table select[aria-label='kind of age']", "categorical")
    pg.select_option("#schema-table select[aria-label='kind of age']", "numerical")  # and back: no override left
    pg.select_option("#fit-model", "copula")
    pg.click("#fit")
    pg.wait_for_selector("#sample-form:not(.hidden)", timeout=120_000)
    pg.fill("#sample-rows", "120")
    pg.click("#add-condition")
    pg.select_option("#conditions select", "segment")
    pg.fill("#conditions input", "c")
    pg.click("#sample")
    link = pg.wait_for_selector("#sample-result a.dl-csv", timeout=120_000)
    with pg.expect_download() as dl:
        link.click()
    got = pd.read_csv(dl.value.path())
    assert len(got) == 120 and set(got["segment"]) == {"c"} and got["income"].min() >= 0
    shot(pg, "learn", tmp_path)
    assert pg.console_errors == []


def test_refine_shows_each_iteration_and_the_runs_page_opens_its_report(page, studio, tmp_path):
    url, root = studio
    pg = page
    pg.click("#tabs button[data-tab=refine]")
    pg.wait_for_selector("#refine-source option[value='cards.yaml']", state="attached")
    pg.select_option("#refine-source", "cards.yaml")
    pg.fill("#targets-path", "targets/cards.yaml")
    for value, share in (("credit", "0.7"), ("debit", "0.3")):
        pg.click("#t-add-share")
        row = pg.locator("#t-shares .params").last
        row.locator("input[aria-label=column]").fill("type")
        row.locator("input[aria-label=value]").fill(value)
        row.locator("input[aria-label=share]").fill(share)
    pg.fill("#t-iterations", "2")
    pg.click("#refine-run")
    pg.wait_for_selector("#refine-msg a.dl-csv", timeout=120_000)
    n = pg.locator("#iterations .iter").count()
    assert n >= 1
    assert pg.locator("#compare-table thead th").count() == n + 1
    saved = yaml.safe_load((root / "targets" / "cards.yaml").read_text())
    assert saved["shares"] == {"type": {"credit": 0.7, "debit": 0.3}} and saved["budget"] == {"iterations": 2}
    shot(pg, "refine", tmp_path)

    pg.click("#tabs button[data-tab=runs]")
    pg.wait_for_selector("#runs-table tbody tr")
    pg.locator("#runs-table tbody tr").first.click()
    frame = pg.wait_for_selector("iframe.report")
    report = frame.content_frame()
    report.wait_for_load_state()
    assert "refine" in report.inner_text("body").lower()
    shot(pg, "runs", tmp_path)
    assert pg.console_errors == []


def test_off_loopback_the_page_asks_for_the_token_and_then_works(browser, tmp_path):
    with BackgroundServer(create_app(tmp_path, host="0.0.0.0", token="tok-123")) as url:
        ctx = browser.new_context()
        pg = ctx.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url + "/")
        pg.wait_for_selector("#token-dialog:not(.hidden)")
        assert pg.evaluate("document.body.dataset.ready") is None
        pg.fill("#token-input", "tok-123")
        pg.keyboard.press("Enter")
        pg.wait_for_selector("body[data-ready='1']")
        assert pg.locator("#token-dialog.hidden").count() == 1
        pg.goto(url + "/#token=tok-123")  # the URL printed at start-up carries it
        pg.wait_for_selector("body[data-ready='1']")
        assert errors == []
        ctx.close()
