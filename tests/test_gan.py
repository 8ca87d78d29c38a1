"""GAN (CTGAN family): schema-faithful output, seeds, save/load, conditional vector, budgets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthloop.errors import ConditionError, SynthloopError
from synthloop.synthesizers import load_synthesizer, synthesizer_class
from synthloop.synthesizers.gan import GANSynthesizer

torch.set_num_threads(1)
SMALL = dict(batch_size=100, embedding_dim=16, generator_dim=(32, 32), discriminator_dim=(32, 32), max_modes=4)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 400
    seg = rng.choice(["retail", "sme", "corporate"], n, p=[0.8, 0.17, 0.03]).astype(object)
    age = rng.integers(18, 90, n)
    income = np.round(np.where(seg == "corporate", 90000, 30000) + age * 300 + rng.normal(0, 3000, n), 2)
    income[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"age": age, "income": income, "segment": seg, "active": rng.random(n) < 0.7,
                         "opened": (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D"))})


@pytest.fixture(scope="module")
def fitted(table: pd.DataFrame) -> GANSynthesizer:
    return GANSynthesizer(epochs=2, random_state=3, **SMALL).fit(table)


def test_gan_sample_has_the_schema_columns_dtypes_and_bounds(fitted, table):
    out = fitted.sample(300, seed=0)
    assert list(out.columns) == list(table.columns)
    assert out["age"].dtype == table["age"].dtype and out["active"].dtype == bool
    assert out["age"].between(table["age"].min(), table["age"].max()).all()
    assert set(out["segment"].dropna()) <= set(table["segment"])
    assert pd.api.types.is_datetime64_any_dtype(out["opened"])


def test_gan_same_seed_gives_same_rows_and_fit_is_reproducible(fitted, table):
    pd.testing.assert_frame_equal(fitted.sample(100, seed=5), fitted.sample(100, seed=5))
    again = GANSynthesizer(epochs=2, random_state=3, **SMALL).fit(table)
    pd.testing.assert_frame_equal(again.sample(100, seed=5), fitted.sample(100, seed=5))


def test_gan_save_load_roundtrip_samples_identically(fitted, tmp_path):
    path = fitted.save(tmp_path / "gan.npz")
    loaded = load_synthesizer(path)
    assert isinstance(loaded, GANSynthesizer)
    pd.testing.assert_frame_equal(loaded.sample(50, seed=2), fitted.sample(50, seed=2))


def test_gan_rare_category_condition_comes_from_the_conditional_vector(fitted):
    out = fitted.sample(200, seed=1, conditions={"segment": "corporate"})
    assert (out["segment"] == "corporate").all()
    mask = fitted._cond_for(10, np.random.default_rng(0), fitted._normalize_conditions({"segment": "corporate"}, 10))
    span = next(i for i, s in enumerate(fitted.sampler_.spans) if s.column == "segment")
    assert (mask[0] == span).all()


def test_gan_range_and_per_row_conditions_are_met(fitted):
    out = fitted.sample(60, seed=1, conditions={"age": (30, 40)})
    assert out["age"].between(30, 40).all()
    rows = pd.DataFrame({"segment": ["sme", None, "retail"], "age": [25, 50, None]})
    done = fitted.sample_remaining_columns(rows, seed=0)
    assert done.loc[0, "segment"] == "sme" and done.loc[0, "age"] == 25 and done.loc[1, "age"] == 50


def test_gan_unknown_condition_value_is_a_clear_error(fitted):
    with pytest.raises(ConditionError, match="never occurs"):
        fitted.sample(5, conditions={"segment": "gov"})


def test_gan_max_seconds_stops_training_early(table):
    m = GANSynthesizer(epochs=500, max_seconds=0.5, **SMALL).fit(table)
    assert m.training_["stopped"] == "max_seconds" and m.training_["epochs_run"] < 500


def test_gan_validation_split_drives_best_epoch_and_history(table):
    m = GANSynthesizer(epochs=3, patience=1, validation_share=0.25, **SMALL).fit(table)
    assert 1 <= m.training_["best_epoch"] <= m.training_["epochs_run"] <= 3
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val"]) for h in m.history_)


def test_gan_is_registered_and_rejects_bad_device(table):
    assert synthesizer_class("gan") is GANSynthesizer
    with pytest.raises(SynthloopError, match="device"):
        GANSynthesizer(epochs=1, device="tpu9", **SMALL).fit(table)


def test_gan_device_auto_picks_cpu_without_a_gpu(fitted):
    dev = next(fitted.generator_.parameters()).device
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
