"""FillBins: under-covered numeric bins of a learned run refilled by range-conditioned resampling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloop.refine import FillBins, parse_targets, refine
from synthloop.refine.engines import LearnedEngine


@pytest.fixture()
def bimodal() -> pd.DataFrame:
    """A two-humped `load` column: a copula with a 3-knot marginal spreads it flat between the humps."""
    rng = np.random.default_rng(0)
    n = 800
    load = np.where(rng.random(n) < 0.5, rng.normal(20, 3, n), rng.normal(70, 4, n))
    return pd.DataFrame({"grp": rng.choice(["a", "b"], n, p=[0.6, 0.4]), "load": np.round(load, 1),
                         "age": rng.integers(18, 70, n)})


def test_under_covered_numeric_bins_are_refilled_while_shares_and_copies_hold(bimodal, tmp_path):
    t = {"model": "copula", "model_params": {"n_knots": 3}, "min_shares": {"grp": {"b": 0.42}},
         "metrics": {"column_shapes": {"min": 0.95}, "exact_copy_rate": {"max": 0.0}}, "budget": {"iterations": 3}}
    res = refine(bimodal, t)
    first = res.history[0]
    under = [d for d in first["diagnoses"] if d["kind"] == "UnderCovered" and d["column"] == "load"]
    assert under and under[0]["bins"][0]["synthetic_share"] < 0.5 * under[0]["bins"][0]["real_share"]
    fill = next(a for a in first["actions"] if a["kind"] == "FillBins")
    assert fill["column"] == "load" and "under-covered" in fill["why"]
    assert {d["path"] for d in fill["diff"]} == {"bins.load.edges", "bins.load.shares"}
    assert not any(a["kind"] == "SwitchModel" for a in first["actions"])  # the refill is measured first
    assert res.met and res.best_iteration == 2, res.history[-1]["checks"]
    rep = res.history[1]["fill_bins"][0]
    # replacements too close to a training row (ReplaceTooClose is on too) are skipped, the old row stays
    assert rep["method"] == "range conditions" and 0.8 * rep["requested"] <= rep["replaced"] <= rep["requested"]
    assert res.data["grp"].value_counts(normalize=True).to_dict() == {"a": 0.58, "b": 0.42}  # shares untouched
    assert len(res.data) == len(bimodal)
    from synthloop.refine.report import history_html

    assert "Bins refilled" in history_html(res)
    # the thin bins are now covered like the real table's
    x, r = res.data["load"], bimodal["load"]
    for lo, hi in ((17.3, 22.6), (66.8, 72.9)):
        assert abs(x.between(lo, hi).mean() - r.between(lo, hi).mean()) < 0.03


def test_fill_bins_is_deterministic(bimodal):
    t = parse_targets({"model": "copula", "model_params": {"n_knots": 3}})
    a, b = LearnedEngine(bimodal, t), LearnedEngine(bimodal, t)
    act = FillBins(column="load", edges=[float(e) for e in np.quantile(bimodal["load"], np.linspace(0, 1, 21))],
                   shares=[0.05] * 20)
    for eng in (a, b):
        act.apply(eng.state)
    pd.testing.assert_frame_equal(a.generate(2), b.generate(2))


def test_model_without_exact_range_conditioning_falls_back_to_rejection_and_says_why(bimodal):
    eng = LearnedEngine(bimodal, parse_targets({"model": "vae", "model_params": {"epochs": 2}}))
    edges = [float(e) for e in np.quantile(bimodal["load"], np.linspace(0, 1, 11))]
    FillBins(column="load", edges=edges, shares=[0.1] * 10).apply(eng.state)
    data = eng.generate(1)
    rep = eng.last_fill[0]
    assert rep["method"] == "rejection from unconditioned draws" and "cannot condition on a numeric range" in rep["reason"]
    assert 0 <= rep["replaced"] <= rep["requested"] and len(data) == len(bimodal)
