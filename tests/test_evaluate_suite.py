"""synthloop.evaluate(...): every section, verdicts, JSON, and the callable subpackage."""
import json
import re

import numpy as np
import pandas as pd
import pytest

import synthloop
import synthloop.evaluate as ev
from synthloop import GaussianCopulaSynthesizer, infer_schema
from synthloop.errors import DataError
from synthloop.evaluate import quality_score
from synthloop.evaluate.adherence import constraint_adherence
from synthloop.evaluate.coverage import coverage_figures
from synthloop.evaluate.detection import detection_score


@pytest.fixture(scope="module")
def split(adult):
    train = adult.iloc[:1500].reset_index(drop=True)
    holdout = adult.iloc[1500:3000].reset_index(drop=True)
    synth = GaussianCopulaSynthesizer().fit(train).sample(1500, seed=3)
    return train, holdout, synth


@pytest.fixture(scope="module")
def result(split):
    train, holdout, synth = split
    return synthloop.evaluate(train, synth, holdout=holdout, target="income", protected=["sex", "age"], max_rows=800)


def test_subpackage_is_callable_and_keeps_its_exports(split):
    assert callable(ev) and ev.quality_score is quality_score
    assert ev.EvaluationResult.__name__ == "EvaluationResult"


def test_result_has_every_section_and_quality_matches_quality_score(result, split):
    train, _, synth = split
    d = result.to_dict()
    for key in ("fidelity", "privacy", "utility", "fairness", "coverage", "constraints", "plots", "summary"):
        assert key in d
    assert d["fidelity"]["quality"]["quality_score"] == pytest.approx(quality_score(train, synth).score, abs=1e-12)
    assert 0.5 <= d["fidelity"]["detection"]["detection_auc"] <= 1
    assert {c["column"] for c in d["fidelity"]["detection"]["columns"]} <= set(train.columns)
    u = d["utility"]
    assert u["task"] == "classification" and set(u["trtr"]) == {"accuracy", "f1", "roc_auc"}
    assert u["ratio"]["roc_auc"] == pytest.approx(u["tstr"]["roc_auc"] / u["trtr"]["roc_auc"])
    sex = d["fairness"][0]
    assert sum(g["real_share"] for g in sex["groups"]) == pytest.approx(1.0)
    assert set(sex["demographic_parity"]) >= {"model_trained_on_real", "model_trained_on_synthetic"}
    assert any(g["group"].startswith("[") for g in d["fairness"][1]["groups"])  # age cut into bands
    assert 0.4 < d["privacy"]["dcr_share"] < 0.65


def test_summary_json_and_html_are_consistent(result, tmp_path):
    text = result.summary()
    assert "Quality score" in text and "DCR share" in text
    data = json.loads(result.to_json(tmp_path / "r.json"))  # strict JSON: no NaN
    assert json.loads((tmp_path / "r.json").read_text()) == data
    html = result.to_html(tmp_path / "r.html")
    assert html.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in html
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)  # the page without inline scripts
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", html.split("<script>")[0] + markup)
    assert "http://" not in markup and "https://" not in markup  # nothing to fetch: works offline


def test_detection_cannot_tell_two_halves_of_real_data_apart_but_spots_shuffled_columns(adult):
    a, b = adult.iloc[:1000].reset_index(drop=True), adult.iloc[1000:2000].reset_index(drop=True)
    schema = infer_schema(a)
    same = detection_score(a, b, schema, max_rows=1000, max_iter=30)
    assert same["detection_auc"] < 0.62
    broken = b.copy()
    broken["age"] = np.random.default_rng(0).permutation(broken["age"].to_numpy()) + 30
    off = detection_score(a, broken, schema, max_rows=1000, max_iter=30)
    assert off["detection_auc"] > 0.9 and off["columns"][0]["column"] == "age"


def test_regression_utility_reports_r2_and_mae(adult):
    train = adult.iloc[:1000].reset_index(drop=True)
    res = synthloop.evaluate(train, adult.iloc[1000:2000], holdout=adult.iloc[2000:2600], target="hours_per_week",
                             detection=False, plots=False, max_rows=300)
    u = res["utility"]
    assert u["task"] == "regression" and set(u["trtr"]) == {"r2", "mae"}
    assert 0.5 < u["ratio"]["r2"] < 2


def test_coverage_warns_about_mode_collapse():
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(list("abcdef"), 500)})
    synth = pd.DataFrame({"x": np.full(500, 0.1) + rng.normal(0, 0.01, 500), "c": ["a"] * 490 + ["b"] * 10})
    cov = coverage_figures(real, synth, infer_schema(real))
    assert cov["category_coverage"] == pytest.approx(2 / 6)
    assert cov["range_coverage"] < 0.1
    assert any("'x'" in w for w in cov["warnings"]) and any("'c'" in w for w in cov["warnings"])


def test_constraints_are_checked_per_rule_and_undeclared_or_unbuildable_rules_degrade_gracefully():
    df = pd.DataFrame({"a": [1, 2, 3, 4], "b": [2, 3, 1, 5]})

    class AltB:
        name = "a < b"

        def is_valid(self, frame):
            return frame["a"] < frame["b"]

    out = constraint_adherence(df, [AltB()], real=df)
    assert out["rules"][0]["synthetic_valid_share"] == pytest.approx(0.75) and out["adherence"] == pytest.approx(0.75)
    assert constraint_adherence(df, [])["status"] == "no constraints declared"
    weird = constraint_adherence(df, [{"type": "no_such_rule_kind", "column": "a"}])
    assert weird["rules"][0]["status"].startswith("not checked")


def test_declared_rules_are_built_by_synthloop_constraints():
    pytest.importorskip("synthloop.constraints.rules")
    real = pd.DataFrame({"a": [1, 2, 3, 4], "b": [2, 3, 4, 5]})
    synth = pd.DataFrame({"a": [1, 2, 3, 4], "b": [2, 3, 1, 5]})
    out = constraint_adherence(synth, ["a < b", {"type": "range", "column": "a", "low": 0, "high": 10}], real=real)
    assert [r["status"] for r in out["rules"]] == ["checked", "checked"], out
    assert out["rules"][0]["synthetic_valid_share"] == pytest.approx(0.75)
    assert out["rules"][0]["real_valid_share"] == pytest.approx(1.0)


def test_bad_input_names_the_problem(split):
    train, holdout, synth = split
    with pytest.raises(DataError, match="target column 'nope'"):
        synthloop.evaluate(train, synth, holdout=holdout, target="nope", detection=False, plots=False)
    with pytest.raises(DataError, match="lacks column 'age'"):
        synthloop.evaluate(train, synth.drop(columns=["age"]), detection=False, plots=False)
    with pytest.raises(DataError, match="protected column 'nope'"):
        synthloop.evaluate(train, synth, protected=["nope"], detection=False, plots=False)
