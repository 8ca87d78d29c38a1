"""The three refinement use cases end to end on the full datasets (slow: run with `make test-slow`)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "refine"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def usecases(shared_data):
    import usecases as u

    return u


def test_a_adult_reaches_parity_and_race_shares_within_five_iterations(usecases, shared_data):
    row = usecases.run_a(shared_data)
    assert row["all_met"] and row["iterations"] <= 5, row
    drift = next(t for t in row["targets"] if t["metric"] == "pair_trends_drift")
    assert drift["value"] <= 0.05


def test_b_fraud_rows_at_25_percent_raise_recall_at_90_precision(usecases, shared_data):
    """Issue 6's (b) target: real + synthetic fraud rows beat real rows alone at 90% precision."""
    row = usecases.run_b(shared_data, splits=5)
    assert row["all_met"] and row["all_splits_met"], row["targets"]
    assert row["downstream"]["beats_real_only"], row["downstream"]


def test_b_autoregressive_fraud_rows_leave_the_classifier_no_worse(usecases, shared_data):
    """The autoregressive comparison case, weighted to count as much as the real fraud rows, keeps
    ROC AUC within 0.01 of real-only (it does not beat it on recall: see the benchmark)."""
    row = usecases.run_b(shared_data, splits=5, targets="fraud_targets_ar.yaml")
    assert row["all_met"] and row["all_splits_met"], row["targets"]
    d = row["downstream"]
    assert d["roc_auc"]["augmented_weighted"] >= d["roc_auc"]["real_only"] - 0.01, d


def test_c_prompted_spec_fixed_within_five_iterations(usecases, tmp_path):
    row = usecases.run_c(tmp_path)
    assert row["first_iteration_missed"] >= 2 and row["all_met"] and row["iterations"] <= 5, row
    assert (tmp_path / "card_payments.report.html").exists()
