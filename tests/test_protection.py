"""Protection filter: no synthetic row closer to a training row than the 5th percentile of real-to-real distances."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloop.errors import DataError
from synthloop.synthesizers import GaussianCopulaSynthesizer
from synthloop.synthesizers.protection import ProtectionFilter, nearest_distance, protect


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 1200
    x = rng.normal(size=n)
    df = pd.DataFrame({"x": np.round(x, 2), "y": np.round(x + rng.normal(0, 0.5, n), 2),
                       "c": rng.choice(["a", "b", "c"], n)})
    return df.iloc[:900].reset_index(drop=True), df.iloc[900:].reset_index(drop=True)


class _Copier:
    """A 'model' that leaks: half its rows are exact training rows."""

    def __init__(self, train: pd.DataFrame, honest):
        self.train, self.honest = train, honest

    def sample(self, n=None, seed=None, conditions=None):
        rng = np.random.default_rng(seed)
        k = n // 2
        copies = self.train.iloc[rng.integers(0, len(self.train), k)]
        return pd.concat([copies, self.honest.sample(n - k, seed=seed)], ignore_index=True)


def test_chunked_nearest_distance_matches_brute_force():
    rng = np.random.default_rng(1)
    q, r = rng.normal(size=(300, 5)), rng.normal(size=(200, 5))
    brute = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distance(q, r, chunk_cells=1000), brute, atol=1e-9)


def test_threshold_is_the_holdout_quantile(data):
    train, hold = data
    f = ProtectionFilter(quantile=0.05).fit(train, hold)
    assert f.threshold_ == pytest.approx(np.quantile(f.real_distances_, 0.05))
    assert (f.real_distances_ < f.threshold_).mean() == pytest.approx(0.05, abs=0.02)
    assert f.too_close(train.head(50)).all()  # training rows themselves are rejected


def test_copies_are_rejected_and_replaced(data):
    train, hold = data
    honest = GaussianCopulaSynthesizer(random_state=0).fit(train)
    leaky = _Copier(train, honest)
    f = ProtectionFilter().fit(train, hold, honest.schema_)
    out, report = f.sample(leaky, 400, seed=3)
    assert len(out) == 400 and report.shortfall == 0
    assert report.rejected >= 200 and report.rounds >= 2
    assert not f.too_close(out).any()
    assert report.to_dict()["rejected_share"] == pytest.approx(report.rejected / report.drawn)


def test_protect_is_deterministic_and_works_without_holdout(data):
    train, _ = data
    model = GaussianCopulaSynthesizer(random_state=0).fit(train)
    a, ra = protect(model, train, 300, seed=5)
    b, rb = protect(model, train, 300, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert ra.to_dict() == rb.to_dict() and len(a) == 300


def test_per_row_conditions_are_redrawn_under_their_own_condition(data):
    train, hold = data
    model = GaussianCopulaSynthesizer(random_state=0).fit(train)
    cond = pd.DataFrame({"c": ["a", "b", "c"] * 20})
    out, report = ProtectionFilter().fit(train, hold).sample(model, 0, seed=1, conditions=cond)
    assert (out["c"].to_numpy() == cond["c"].to_numpy()).all()


def test_unfitted_filter_is_a_clear_error():
    with pytest.raises(DataError, match="fit"):
        ProtectionFilter().sample(None, 10)


def test_ids_stay_unique_after_redraws(data):
    train, hold = data
    train = train.assign(row_id=[f"R{i:05d}" for i in range(len(train))])
    honest = GaussianCopulaSynthesizer(random_state=0).fit(train)
    out, report = ProtectionFilter().fit(train, hold.assign(row_id="R0"), honest.schema_).sample(_Copier(train, honest), 300, seed=2)
    assert report.rounds >= 2 and out["row_id"].is_unique


def test_wide_categories_as_codes_give_the_same_distances_as_one_hot(data, monkeypatch):
    import synthloop.synthesizers.protection as protection

    train, hold = data
    onehot = ProtectionFilter().fit(train, hold)
    monkeypatch.setattr(protection, "_ONEHOT_MAX", 0)  # every category column compared as codes
    codes = ProtectionFilter().fit(train, hold)
    assert codes.train_codes_.shape[1] == 1 and onehot.train_codes_.shape[1] == 0
    np.testing.assert_allclose(codes.real_distances_, onehot.real_distances_, atol=1e-9)
