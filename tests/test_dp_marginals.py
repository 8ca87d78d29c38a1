"""The DP marginal synthesizer: accounting, noise scale, neighbouring tables, public-only discretization.

Most tests declare the schema public (`public: true`), so cells and bounds are fixed; tests of the
domain paid for under DP are in test_dp_privacy.py."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from synthloop.evaluate.guarantee import guarantee_text
from synthloop.schema import infer_schema
from synthloop.synthesizers import GaussianCopulaSynthesizer, load_synthesizer
from synthloop.privacy import mechanisms
from synthloop.privacy.accounting import Budget
from synthloop.synthesizers.dp_marginals import (DPMarginalSynthesizer, cdp_delta, cdp_eps, cdp_rho,
                                                 SPLIT, exponential_epsilon, gaussian_sigma)


def _table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    seg = np.where(age > 50, rng.choice(["a", "b"], n, p=[0.8, 0.2]), rng.choice(["a", "b", "c"], n, p=[0.2, 0.5, 0.3]))
    income = np.round(age * 900 + rng.normal(0, 4000, n), 2)
    gain = np.where(rng.random(n) < 0.85, 0, rng.integers(100, 9000, n))
    return pd.DataFrame({"age": age, "segment": seg, "income": income, "gain": gain,
                         "flag": (age > 40) ^ (rng.random(n) < 0.1)})


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


def public(table: pd.DataFrame):
    """The inferred schema, declared public by the user (table-level `public: true`)."""
    return infer_schema(table).model_copy(update={"public": True})


@pytest.fixture(scope="module")
def model(table) -> DPMarginalSynthesizer:
    return DPMarginalSynthesizer(epsilon=1.0, delta=1e-6, random_state=3).fit(table, schema=public(table))


# -- accounting ------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps,delta", [(0.5, 1e-6), (1.0, 1e-6), (3.0, 1e-9), (10.0, 1e-5)])
def test_rho_for_a_budget_converts_back_to_that_budget(eps, delta):
    rho = cdp_rho(eps, delta)
    assert cdp_delta(rho, eps) <= delta * (1 + 1e-6)
    assert cdp_eps(rho, delta) == pytest.approx(eps, rel=1e-6)
    # the CKS20 conversion is tighter than the classic rho + 2 sqrt(rho log(1/delta))
    assert rho + 2 * math.sqrt(rho * math.log(1 / delta)) > eps


def test_noise_scales_spend_exactly_the_accountants_rho(model, table):
    d = table.shape[1]
    rho = cdp_rho(1.0, 1e-6)  # a public domain has no thresholds: all of delta converts rho
    assert model.rho_ == pytest.approx(rho) == Budget(1.0, 1e-6, threshold_delta_share=0.0).rho
    ones = [m for m in model.measurements_ if len(m["clique"]) == 1]
    twos = [m for m in model.measurements_ if len(m["clique"]) == 2]
    assert len(ones) == d and len(twos) == d - 1  # all 1-way marginals, a spanning tree of 2-way ones
    s1, s2 = ones[0]["sigma"], twos[0]["sigma"]
    assert all(m["sigma"] == s1 for m in ones) and all(m["sigma"] == s2 for m in twos)
    assert s1 == pytest.approx(gaussian_sigma(rho * SPLIT[0], d))
    assert s2 == pytest.approx(gaussian_sigma(rho * SPLIT[2], d - 1))
    # zCDP of each part: Gaussian 1/(2 sigma^2) per unit-sensitivity query, exponential mechanism eps^2/8 per round
    spent = d / (2 * s1**2) + (d - 1) / (2 * s2**2) + (d - 1) * exponential_epsilon(rho * SPLIT[1], d - 1) ** 2 / 8
    assert spent == pytest.approx(rho, rel=1e-9)
    assert cdp_eps(spent, 1e-6) <= 1.0 + 1e-9


def test_measured_noise_has_the_scale_the_accountant_assumes(table):
    """Noisy minus true counts over many cells and fits: their spread is the declared sigma."""
    resid, sigma = [], None
    for seed in range(5):
        m = DPMarginalSynthesizer(epsilon=1.0, delta=1e-6, random_state=seed).fit(table, schema=public(table))
        enc = m.codec_.encode(table)
        for cell, meas in zip(m.cells_, m.measurements_):  # the 1-way measurements come first, in column order
            f = m._fine_index(cell, enc[cell["column"]])
            resid.append(meas["noisy"] - np.bincount(f, minlength=meas["noisy"].size))
            sigma = meas["sigma"]
    r = np.concatenate(resid)
    assert r.size > 500
    assert abs(r.mean()) < 4 * sigma / math.sqrt(r.size)
    assert r.std() == pytest.approx(sigma, rel=0.06)


# -- neighbouring tables ---------------------------------------------------------------------------
def test_changing_one_row_changes_nothing_beyond_the_noise(table):
    """Tables differing in one row, the same noise replayed (a test-only hook; fits draw fresh OS noise):
    identical structure and bins; outputs differ by noise only."""
    other = table.copy()
    other.loc[17, ["age", "segment", "income", "gain", "flag"]] = [79, "c", 1.5, 8000, False]
    schema = public(table)
    with mechanisms._seeded_noise_for_tests(5):
        a = DPMarginalSynthesizer(epsilon=1.0, random_state=5).fit(table, schema=schema)
    with mechanisms._seeded_noise_for_tests(5):
        b = DPMarginalSynthesizer(epsilon=1.0, random_state=5).fit(other, schema=schema)
    def residuals(m, df):
        enc = m.codec_.encode(df)
        fine = [m._fine_index(c, enc[c["column"]]) for c in m.cells_]
        names = [c["column"] for c in m.cells_]
        out = []
        for meas in m.measurements_:
            idx = [names.index(c) for c in meas["clique"]]
            if len(idx) == 1:
                true = np.bincount(fine[idx[0]], minlength=meas["noisy"].size)
            else:
                i, j = idx
                ki, kj = meas["noisy"].shape
                true = np.bincount(m.coarse_[i][fine[i]] * kj + m.coarse_[j][fine[j]], minlength=ki * kj).reshape(ki, kj)
            out.append(meas["noisy"] - true)
        return out

    assert [m["clique"] for m in a.measurements_] == [m["clique"] for m in b.measurements_]  # same selected tree
    for ra, rb in zip(residuals(a, table), residuals(b, other)):
        np.testing.assert_allclose(ra, rb, atol=1e-9)  # the very same noise draws
    for ma, mb in zip(a.measurements_[: table.shape[1]], b.measurements_):
        diff = ma["noisy"] - mb["noisy"]  # 1-way releases differ by the moved row only
        assert np.abs(np.round(diff)).sum() <= 2 and np.allclose(diff, np.round(diff))
    for cell, meas, ca in zip(a.cells_, a.measurements_, a.coarse_):  # compression is a function of the noisy release
        np.testing.assert_array_equal(a._compress(cell, meas["noisy"], meas["sigma"], a._n_hat1), ca)
    sa, sb = a.sample(4000, seed=1), b.sample(4000, seed=1)
    for col in ("segment", "flag"):
        tvd = 0.5 * (sa[col].value_counts(normalize=True) - sb[col].value_counts(normalize=True)).abs().sum()
        assert tvd < 0.02


def test_bins_come_from_the_schema_not_the_rows(table):
    """Two different tables under one schema get the same fine cells: no data-dependent edges."""
    schema = public(table)
    other = _table(seed=9)
    other["income"] = other["income"].clip(schema["income"].min, schema["income"].max)
    a = DPMarginalSynthesizer(random_state=0).fit(table, schema=schema)
    b = DPMarginalSynthesizer(random_state=0).fit(other, schema=schema)
    for ca, cb in zip(a.cells_, b.cells_):
        for key in ("left", "right", "point"):
            np.testing.assert_array_equal(ca[key], cb[key])


def test_public_bounds_clip_values_and_fix_the_bins(table):
    m = DPMarginalSynthesizer(epsilon=5.0, bounds={"income": [0, 50000]}, random_state=0).fit(table, schema=public(table))
    cell = next(c for c in m.cells_ if c["column"] == "income")
    assert cell["lo"] == 0 and cell["hi"] == 50000
    out = m.sample(2000, seed=0)
    assert out["income"].between(0, 50000).all()


# -- output ----------------------------------------------------------------------------------------
def test_samples_keep_the_tables_shape_and_strong_relations(table):
    m = DPMarginalSynthesizer(epsilon=20.0, random_state=0).fit(table, schema=public(table))
    out = m.sample(5000, seed=0)
    assert list(out.columns) == list(table.columns)
    assert set(out["segment"].unique()) <= set(table["segment"].unique())
    assert out["age"].between(18, 79).all() and (out["age"] == out["age"].round()).all()
    assert (out["gain"] == 0).mean() == pytest.approx((table["gain"] == 0).mean(), abs=0.05)  # the spike at 0 survives
    assert abs(out["age"].corr(out["income"]) - table["age"].corr(table["income"])) < 0.15
    old = table["age"] > 50
    assert (out.loc[out["age"] > 50, "segment"] == "a").mean() == pytest.approx((table.loc[old, "segment"] == "a").mean(), abs=0.1)


def test_same_seed_same_rows_and_default_size_is_the_noisy_count(model, table):
    pd.testing.assert_frame_equal(model.sample(300, seed=4), model.sample(300, seed=4))
    assert abs(model.n_rows_ - len(table)) < 0.05 * len(table)


def test_conditions_hold_exactly(model):
    out = model.sample(500, seed=0, conditions={"segment": "c"})
    assert (out["segment"] == "c").all()
    rng = model.sample(500, seed=0, conditions={"age": (30, 40)})
    assert rng["age"].between(30, 40).all()
    per_row = model.sample(seed=0, conditions=pd.DataFrame({"age": [20, 70, np.nan], "flag": [np.nan, True, False]}))
    assert per_row["age"].iloc[:2].tolist() == [20, 70] and per_row["flag"].iloc[1:].tolist() == [True, False]


def test_save_and_load_give_the_same_rows_and_guarantee(model, tmp_path):
    path = model.save(tmp_path / "dp.npz")
    back = load_synthesizer(path)
    assert isinstance(back, DPMarginalSynthesizer)
    pd.testing.assert_frame_equal(back.sample(200, seed=2), model.sample(200, seed=2))
    assert back.privacy_guarantee()["statement"] == model.privacy_guarantee()["statement"]


def test_guarantee_is_stated_in_words_or_denied(model, table):
    g = model.privacy_guarantee()
    assert g["statement"].startswith("(1.0, 1e-06)-DP for the rows of the source table; budget: one way marginals 33%")
    assert g["epsilon_from_rho"] <= 1.0 + 1e-9
    text = guarantee_text(model)
    assert text.startswith("(1.0, 1e-06)-DP for the rows of the source table")
    assert "declared public: age, segment, income, gain, flag" in text  # says what is treated as public
    copula = GaussianCopulaSynthesizer().fit(table.head(200))
    assert guarantee_text(copula).startswith("No formal privacy guarantee")


def test_bad_budget_is_a_clear_error(table):
    from synthloop.errors import DataError

    with pytest.raises(DataError, match="epsilon"):
        DPMarginalSynthesizer(epsilon=0).fit(table)
    with pytest.raises(DataError, match="delta"):
        DPMarginalSynthesizer(delta=1.0).fit(table)


# -- heavy tails and strong numeric pairs (credit's BILL_AMT*/PAY_AMT*) -----------------------------
def _amounts(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bill = np.round(rng.lognormal(9.0, 1.3, n))  # most rows under 30,000, a tail to ~1,000,000
    nxt = np.round(bill * rng.lognormal(0.0, 0.2, n))  # next month's bill: r ~ 0.95
    kind = np.where(bill > 20_000, rng.choice(["x", "y"], n, p=[0.7, 0.3]), rng.choice(["x", "y"], n, p=[0.3, 0.7]))
    return pd.DataFrame({"bill": bill, "next_bill": nxt, "kind": kind})


def test_heavy_tailed_amounts_keep_their_shape_and_their_correlation():
    from synthloop.evaluate.quality import ks_complement

    table = _amounts()
    with mechanisms._seeded_noise_for_tests(1):
        m = DPMarginalSynthesizer(epsilon=1.0, delta=1e-6, random_state=0).fit(table, schema=public(table))
    syn = m.sample(len(table), seed=0)
    # equal-width bins put ~95% of such a column in its first bin (uniform inside it): KS ~0.6
    for c in ("bill", "next_bill"):
        assert ks_complement(table[c].to_numpy(float), syn[c].to_numpy(float)) > 0.9, c
    # positions inside coarse cells follow the edge's latent correlation instead of being independent
    r_real = table["bill"].corr(table["next_bill"])
    r_syn = syn["bill"].astype(float).corr(syn["next_bill"].astype(float))
    assert r_real > 0.9 and r_syn > 0.75, (r_real, r_syn)


def test_noisy_tables_are_projected_onto_nonnegative_tables_of_their_total():
    from synthloop.synthesizers.dp_marginals import _project

    y = np.array([[50.0, -12.0, 3.0], [-40.0, 80.0, 7.0]])
    x = _project(y, 120.0)
    assert x.min() >= 0 and x.sum() == pytest.approx(120.0)
    tau = (y - x)[x > 0]
    assert np.allclose(tau, tau[0])  # x = max(y - tau, 0): the least-squares point of that set
    assert x[0, 1] == 0 and x[1, 0] == 0


def test_latent_correlation_is_recovered_from_a_coarse_table():
    from scipy.stats import norm

    from synthloop.synthesizers.dp_marginals import _latent_rho, _scores

    rng = np.random.default_rng(0)
    z = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], 200_000)
    cuts = norm.ppf(np.linspace(0, 1, 9))  # 8 cells of equal mass per axis
    a, b = np.searchsorted(cuts, z[:, 0]) - 1, np.searchsorted(cuts, z[:, 1]) - 1
    joint = np.bincount(a * 8 + b, minlength=64).reshape(8, 8) / len(z)
    bounds = (cuts[:-1], cuts[1:])
    s = _scores(bounds)
    mp, mc = joint.sum(axis=1), joint.sum(axis=0)
    sp, sc = s - mp @ s, s - mc @ s
    assert _latent_rho(float(sp @ joint @ sc), bounds, bounds, sp, sc) == pytest.approx(0.8, abs=0.02)
