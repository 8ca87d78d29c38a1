import numpy as np
import pandas as pd
import pytest

from synthloop import GaussianCopulaSynthesizer, infer_schema
from synthloop.errors import ConditionError, DataError, ModelFileError
from synthloop.synthesizers import load_synthesizer


@pytest.fixture()
def fitted(mixed_table):
    return GaussianCopulaSynthesizer(random_state=3).fit(mixed_table)


def test_output_keeps_dtypes_rounding_bounds_format_and_categories(mixed_table, fitted):
    syn = fitted.sample(5000)
    assert list(syn.columns) == list(mixed_table.columns)
    assert syn["age"].dtype == np.int64 and syn["capital_gain"].dtype == np.int64
    assert syn["age"].between(mixed_table["age"].min(), mixed_table["age"].max()).all()
    inc = syn["income"].dropna()
    assert np.allclose(inc, inc.round(2))
    assert set(syn["segment"].dropna()) <= set(mixed_table["segment"].dropna())
    assert syn["active"].dtype == bool
    parsed = pd.to_datetime(syn["opened"], format="%d/%m/%Y")  # raises if the format drifted
    assert parsed.min() >= pd.to_datetime(mixed_table["opened"], format="%d/%m/%Y").min()
    assert syn["customer_id"].is_unique and syn["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert syn["email"].str.contains("@").all()
    assert not set(syn["email"]) & set(mixed_table["email"])


def test_missing_shares_and_spikes_survive(mixed_table, fitted):
    syn = fitted.sample(20000)
    assert syn["income"].isna().mean() == pytest.approx(mixed_table["income"].isna().mean(), abs=0.015)
    assert syn["segment"].isna().mean() == pytest.approx(mixed_table["segment"].isna().mean(), abs=0.01)
    assert (syn["capital_gain"] == 0).mean() == pytest.approx((mixed_table["capital_gain"] == 0).mean(), abs=0.015)


def test_dependence_between_columns_is_kept(mixed_table, fitted):
    syn = fitted.sample(20000)
    real_r = mixed_table[["age", "income"]].corr().iloc[0, 1]
    assert syn[["age", "income"]].corr().iloc[0, 1] == pytest.approx(real_r, abs=0.05)


def test_same_seed_same_rows_and_refit_is_deterministic(mixed_table, fitted):
    a = fitted.sample(300, seed=11)
    b = fitted.sample(300, seed=11)
    pd.testing.assert_frame_equal(a, b)
    again = GaussianCopulaSynthesizer(random_state=3).fit(mixed_table).sample(300, seed=11)
    pd.testing.assert_frame_equal(a, again)
    assert not a.equals(fitted.sample(300, seed=12))


def test_conditions_on_category_and_number_are_met_exactly(mixed_table, fitted):
    syn = fitted.sample(2000, conditions={"segment": "corporate", "age": 30})
    assert (syn["segment"] == "corporate").all() and (syn["age"] == 30).all()


def test_condition_on_range_shifts_the_dependent_column(mixed_table, fitted):
    syn = fitted.sample(3000, conditions={"age": (70, 89)})
    assert syn["age"].between(70, 89).all()
    assert syn["income"].mean() > mixed_table["income"].mean() + 10000


def test_rare_category_condition_needs_no_rejection(adult):
    model = GaussianCopulaSynthesizer().fit(adult.head(20000))
    counts = adult.head(20000)["native_country"].value_counts()
    rare = counts[counts >= model.privacy_k].index[-1]  # the rarest value the model may release
    syn = model.sample(1000, conditions={"native_country": rare, "income": ">50K"})
    assert len(syn) == 1000 and (syn["native_country"] == rare).all() and (syn["income"] == ">50K").all()


def test_known_columns_table_fills_in_the_rest(mixed_table, fitted):
    known = pd.DataFrame({"segment": ["sme", "retail", None], "age": [25, np.nan, 80]})
    syn = fitted.sample_remaining_columns(known, seed=1)
    assert len(syn) == 3
    assert syn.loc[0, "segment"] == "sme" and syn.loc[0, "age"] == 25 and syn.loc[2, "age"] == 80


def test_condition_errors_name_the_column_or_value(fitted):
    with pytest.raises(ConditionError, match="unknown column 'nope'"):
        fitted.sample(5, conditions={"nope": 1})
    with pytest.raises(ConditionError, match="'gov' never occurs.*known values: 'retail'"):
        fitted.sample(5, conditions={"segment": "gov"})
    with pytest.raises(ConditionError, match="outside the learned range"):
        fitted.sample(5, conditions={"age": 150})


def test_save_load_round_trip_without_pickle(tmp_path, fitted):
    path = fitted.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:  # would raise if anything were pickled
        assert "__header__" in npz.files
    loaded = load_synthesizer(path)
    pd.testing.assert_frame_equal(loaded.sample(200, seed=5), fitted.sample(200, seed=5))
    assert loaded.get_params() == fitted.get_params()


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a synthloop model file"):
        load_synthesizer(bad)


def test_single_row_and_all_null_column_are_handled():
    df = pd.DataFrame({"a": [3], "b": ["x"], "c": [None]})
    syn = GaussianCopulaSynthesizer().fit(df).sample(4)  # the release guard never gives the one row back
    assert (syn["a"] != 3).all() and (syn["b"] == "other").all() and syn["c"].isna().all()
    syn = GaussianCopulaSynthesizer(privacy_k=0).fit(df).sample(4)
    assert (syn["a"] == 3).all() and (syn["b"] == "x").all() and syn["c"].isna().all()


def test_fifty_thousand_level_categorical_is_fast_and_invents_nothing():
    rng = np.random.default_rng(0)
    n = 60000
    df = pd.DataFrame({"code": [f"k{i % 50000}" for i in range(n)], "x": rng.normal(size=n)})
    schema = infer_schema(df, overrides={"columns": {"code": {"kind": "categorical"}}})
    model = GaussianCopulaSynthesizer(privacy_k=0).fit(df, schema)  # guard off: every level is learned
    syn = model.sample(10000)
    assert syn["code"].isin(set(df["code"])).all()
    guarded = GaussianCopulaSynthesizer().fit(df, schema)  # each level is on 1 or 2 rows: none is released
    assert guarded.schema_["code"].categories == ["other"] and (guarded.sample(100)["code"] == "other").all()


def test_no_work_in_constructor_and_sample_before_fit_errors():
    model = GaussianCopulaSynthesizer(random_state=1)
    assert model.get_params()["random_state"] == 1
    with pytest.raises(DataError, match="not fitted"):
        model.sample(3)


def test_a_range_bound_in_the_wrong_datetime_format_is_named_with_the_expected_format():
    df = pd.DataFrame({"t": pd.date_range("2020-01-01", periods=200, freq="6h").strftime("%Y-%m-%d %H:%M:%S"),
                       "x": np.arange(200)})
    m = GaussianCopulaSynthesizer(random_state=0).fit(df)
    with pytest.raises(ConditionError, match=r"'2020-01-05 10:00' is not a valid datetime value written as %Y-%m-%d %H:%M:%S"):
        m.sample(5, conditions={"t": ("2020-01-05 10:00", "2020-02-01 00:00:00")})
    inside = m.sample(50, conditions={"t": ("2020-01-05 10:00:00", "2020-02-01 00:00:00")})["t"]
    assert inside.between("2020-01-05 10:00:00", "2020-02-01 00:00:00").all()
