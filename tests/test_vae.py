"""VAE (TVAE family): schema-faithful output, seeds, save/load, early stopping, bounded conditions."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from synthloop.errors import ConditionError
from synthloop.synthesizers import load_synthesizer, synthesizer_class
from synthloop.synthesizers.vae import VAESynthesizer

torch.set_num_threads(1)
SMALL = dict(batch_size=100, embedding_dim=8, compress_dims=(32,), decompress_dims=(32,), max_modes=4)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(2)
    n = 400
    kind = rng.choice(["a", "b", "rare"], n, p=[0.7, 0.28, 0.02]).astype(object)
    x = rng.normal(0, 1, n) + (kind == "b") * 5
    return pd.DataFrame({"kind": kind, "x": np.round(x, 3), "count": rng.poisson(3, n), "flag": rng.random(n) < 0.4})


@pytest.fixture(scope="module")
def fitted(table: pd.DataFrame) -> VAESynthesizer:
    return VAESynthesizer(epochs=3, random_state=0, validation_share=0.25, **SMALL).fit(table)


def test_vae_sample_has_the_schema_columns_and_dtypes(fitted, table):
    out = fitted.sample(200, seed=0)
    assert list(out.columns) == list(table.columns)
    assert out["count"].dtype == table["count"].dtype and out["flag"].dtype == bool
    assert set(out["kind"]) <= {"a", "b", "rare"}


def test_vae_same_seed_same_rows_and_reproducible_fit(fitted, table):
    pd.testing.assert_frame_equal(fitted.sample(80, seed=9), fitted.sample(80, seed=9))
    again = VAESynthesizer(epochs=3, random_state=0, validation_share=0.25, **SMALL).fit(table)
    pd.testing.assert_frame_equal(again.sample(80, seed=9), fitted.sample(80, seed=9))


def test_vae_save_load_roundtrip(fitted, tmp_path):
    loaded = load_synthesizer(fitted.save(tmp_path / "vae.npz"))
    assert isinstance(loaded, VAESynthesizer) and synthesizer_class("vae") is VAESynthesizer
    pd.testing.assert_frame_equal(loaded.sample(40, seed=1), fitted.sample(40, seed=1))


def test_vae_validation_loss_picks_best_epoch_and_patience_stops(table):
    m = VAESynthesizer(epochs=50, patience=1, validation_share=0.25, **SMALL).fit(table)
    assert m.training_["best_val"] is not None and m.training_["epochs_run"] <= 50
    best = min(h["val"] for h in m.history_)
    assert m.training_["best_val"] == pytest.approx(best)


def test_vae_max_seconds_is_a_hard_budget(table):
    m = VAESynthesizer(epochs=10_000, max_seconds=0.3, **SMALL).fit(table)
    assert m.training_["stopped"] == "max_seconds"


def test_vae_rare_condition_is_met_with_bounded_rejection(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fitted.sample(50, seed=3, conditions={"kind": "rare", "flag": True})
    assert (out["kind"] == "rare").all() and out["flag"].all()


def test_vae_condition_unmatched_within_budget_warns_and_is_imposed_instead_of_looping(fitted):
    fitted.max_condition_rounds = 0  # no redraw budget at all: every row must take the fallback
    try:
        with pytest.warns(UserWarning, match="imposed"):
            out = fitted.sample(30, seed=0, conditions={"kind": "rare", "count": (0, 0)})
    finally:
        fitted.max_condition_rounds = 20
    assert (out["kind"] == "rare").all() and (out["count"] == 0).all()


def test_vae_impossible_condition_is_reported(fitted):
    with pytest.raises(ConditionError, match="outside the learned range"):
        fitted.sample(5, conditions={"x": 1e9})
