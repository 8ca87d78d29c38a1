"""Distance-based privacy figures: SDMetrics' DCR distance, chunking, NNDR and the membership attack."""
import numpy as np
import pandas as pd
import pytest

from synthloop import infer_schema
from synthloop.evaluate.privacy import GowerSpace, gower_nearest, privacy_figures


@pytest.fixture(scope="module")
def small_adult(adult):
    return adult.iloc[:1200].reset_index(drop=True)


def test_distances_equal_sdmetrics_calculate_dcr_including_nulls_and_out_of_range_values(small_adult):
    calculate_dcr = pytest.importorskip("sdmetrics.single_table.privacy.dcr_utils").calculate_dcr
    ref = small_adult.iloc[:300].copy()
    query = small_adult.iloc[300:420].copy()
    query.loc[query.index[::4], "hours_per_week"] = 250          # beyond the reference range
    query.loc[query.index[::5], "age"] = np.nan                   # null vs value
    ref.loc[ref.index[::7], "age"] = np.nan
    query.loc[query.index[::6], "workclass"] = None
    schema = infer_schema(small_adult)
    meta = {"columns": {c.name: {"sdtype": "numerical" if c.kind.value == "numerical" else "categorical"} for c in schema.columns}}
    theirs = calculate_dcr(query, ref, meta).to_numpy()
    ours = gower_nearest(query, ref, schema)[:, 0]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_chunk_size_does_not_change_distances(small_adult):
    schema = infer_schema(small_adult)
    space = GowerSpace(schema, small_adult.iloc[:500], [small_adult.iloc[500:700], small_adult.iloc[:500]])
    whole = space.nearest(0, 1, k=2)
    tiny_chunks = space.nearest(0, 1, k=2, chunk_cells=1_000)  # two query rows per chunk
    np.testing.assert_allclose(whole, tiny_chunks, atol=1e-6)
    assert (whole[:, 0] <= whole[:, 1]).all()


def test_copies_are_flagged_by_dcr_nndr_and_the_membership_attack(adult):
    train, holdout = adult.iloc[:2000].reset_index(drop=True), adult.iloc[2000:4000].reset_index(drop=True)
    schema = infer_schema(train)
    copies = privacy_figures(train, train.sample(1000, random_state=0), holdout, schema, max_rows=1000)
    assert copies["closer_to_training"] > 0.9
    assert copies["dcr_overfitting_protection"] < 0.2
    assert copies["share_dcr_zero"] > 0.9
    assert copies["nndr_p05"] < 0.05
    assert copies["mia_auc"] > 0.65
    # unseen real rows behave like a perfect synthesizer: no sign of memorisation
    fresh = privacy_figures(train, adult.iloc[4000:5000], holdout, schema, max_rows=1000)
    assert 0.4 < fresh["dcr_share"] < 0.6
    assert 0.4 < fresh["mia_auc"] < 0.6


def test_without_a_holdout_only_training_distances_are_reported(small_adult):
    out = privacy_figures(small_adult.iloc[:600], small_adult.iloc[600:], None, infer_schema(small_adult), max_rows=300)
    assert "dcr_share" not in out and "mia_auc" not in out
    assert out["median_dcr_train"] > 0 and 0 < out["nndr_median"] <= 1


def test_dcr_share_is_unbiased_when_one_reference_holds_an_extreme_value():
    """Per-reference ranges (SDMetrics) tilt the comparison; dcr_share must not."""
    rng = np.random.default_rng(0)

    def draw(n):
        return pd.DataFrame({"amount": rng.lognormal(3, 1, n).round(2), "bills": rng.lognormal(5, 1.5, n).round(2),
                             "kind": rng.choice(list("abc"), n)})

    train, holdout, fresh = draw(1500), draw(1500), draw(1000)
    train.loc[0, ["amount", "bills"]] = [1e7, 1e8]  # one outlier stretches the training side's ranges
    schema = infer_schema(pd.concat([train, holdout]))
    out = privacy_figures(train, fresh, holdout, schema, max_rows=1000, attack=False)
    assert 0.44 < out["dcr_share"] < 0.56, out
    assert out["closer_to_training"] > 0.6  # SDMetrics' own figure shows the tilt it is kept for
