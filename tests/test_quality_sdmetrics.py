"""Our quality figures must equal SDMetrics' QualityReport on the same data and metadata."""
import warnings

import numpy as np
import pandas as pd
import pytest

from synthloop import GaussianCopulaSynthesizer, infer_schema
from synthloop.evaluate import quality_score
from synthloop.evaluate.quality import ks_complement, tv_complement

sdmetrics = pytest.importorskip("sdmetrics", reason="sdmetrics is not installed (pip install -e '.[dev]')")
from sdmetrics.reports.single_table import QualityReport  # noqa: E402


def _sdmetrics_scores(real, synth, schema):
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synth, schema.to_sdv_metadata(), verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    return report.get_score(), props["Column Shapes"], props["Column Pair Trends"]


@pytest.mark.parametrize("dataset", ["adult", "credit"])
def test_quality_score_matches_sdmetrics_within_0_01(dataset, request):
    real = request.getfixturevalue(dataset).sample(8000, random_state=1).reset_index(drop=True)
    schema = infer_schema(real)
    synth = GaussianCopulaSynthesizer().fit(real, schema).sample(6000, seed=2)
    ours = quality_score(real, synth, schema)
    score, shapes, pairs = _sdmetrics_scores(real, synth, schema)
    assert ours.score == pytest.approx(score, abs=0.01)
    assert ours.column_shapes == pytest.approx(shapes, abs=0.01)
    assert ours.column_pair_trends == pytest.approx(pairs, abs=0.01)


def test_quality_score_matches_sdmetrics_with_nulls_and_dates(mixed_table):
    schema = infer_schema(mixed_table)
    synth = GaussianCopulaSynthesizer().fit(mixed_table, schema).sample(700, seed=3)
    ours = quality_score(mixed_table, synth, schema, correlation_threshold=0, association_threshold=0)
    report = QualityReport()
    report.real_correlation_threshold = 0
    report.real_association_threshold = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(mixed_table, synth, schema.to_sdv_metadata(), verbose=False)
    assert ours.score == pytest.approx(report.get_score(), abs=0.01)


def test_identical_tables_score_one_and_shifted_ones_less():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=500), "y": rng.choice(list("abc"), 500)})
    assert quality_score(df, df).column_shapes == pytest.approx(1.0)
    shifted = df.assign(x=df["x"] + 1)
    assert quality_score(df, shifted).column_shapes < 0.9


def test_ks_and_tv_complements_match_scipy_and_hand_computation():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=300), rng.normal(0.3, 1, 400)
    assert ks_complement(a, b) == pytest.approx(1 - ks_2samp(a, b).statistic)
    r = pd.Series(["a", "a", "b", None])
    s = pd.Series(["a", "b", "b", "c"])
    # real (nulls dropped): a 2/3, b 1/3; synthetic: a 1/4, b 2/4, c 1/4
    assert tv_complement(r, s) == pytest.approx(1 - 0.5 * (abs(2 / 3 - 1 / 4) + abs(1 / 3 - 1 / 2) + 1 / 4))
