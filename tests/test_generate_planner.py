"""The planner and samplers: exact quotas, cases by column, bounds, determinism, planned LLM enums."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloop.generate.diversity import distinct_n, diversity_report, near_duplicates
from synthloop.generate.planner import cell_seed, make_plan
from synthloop.generate.samplers import quota_counts
from synthloop.spec import loads_spec

SPEC = """\
name: plan
rows: 1000
seed: 5
columns:
  - name: id
    sampler: {sequence: {prefix: T, digits: 4}}
  - name: type
    sampler: {categorical: {credit: 0.6, debit: 0.3, transfer: 0.1}}
  - name: amount
    sampler:
      lognormal: {mean: 3, sigma: 1, min: 1, max: 500}
      by: type
      cases:
        transfer: {uniform: {min: 1000, max: 2000, decimals: 0}}
  - name: score
    sampler: {normal: {mean: 50, std: 30, min: 0, max: 100, decimals: 1}}
    null_rate: 0.1
  - name: visits
    sampler: {poisson: {lam: 3}}
  - name: day
    sampler: {datetime: {start: 2024-01-01, end: 2024-01-31, format: "%d/%m/%Y"}}
  - name: who
    sampler: {faker: {provider: email, locale: de_DE}}
  - name: big
    expression: "amount > 100"
  - name: desc
    llm:
      prompt: "{{ type }} {{ amount }}"
  - name: profile
    llm:
      prompt: "{{ desc }}"
      schema: {type: object, properties: {segment: {enum: [retail, sme, corp]}, age: {type: integer}}}
  - name: desc_len
    expression: "len(desc)"
targets:
  segment: {retail: 0.5, sme: 0.3, corp: 0.2}
"""


@pytest.fixture(scope="module")
def plan():
    return make_plan(loads_spec(SPEC))


def test_quota_counts_sum_to_n_and_round_fairly() -> None:
    assert quota_counts(np.array([0.6, 0.3, 0.1]), 12).tolist() == [7, 4, 1]
    assert quota_counts(np.array([1, 1, 1]), 10).sum() == 10


def test_categorical_shares_are_exact(plan) -> None:
    shares = plan.frame["type"].value_counts(normalize=True)
    assert shares["credit"] == 0.6 and shares["debit"] == 0.3 and shares["transfer"] == 0.1


def test_cases_switch_distribution_by_column(plan) -> None:
    f = plan.frame
    t = f[f["type"] == "transfer"]["amount"]
    o = f[f["type"] != "transfer"]["amount"]
    assert t.between(1000, 2000).all() and (t % 1 == 0).all()
    assert o.between(1, 500).all()


def test_bounds_rounding_nulls_and_formats(plan) -> None:
    f = plan.frame
    s = f["score"].dropna()
    assert s.between(0, 100).all() and (s.round(1) == s).all()
    assert f["score"].isna().sum() == 100
    assert str(f["visits"].dtype) == "Int64"
    assert f["day"].str.match(r"^\d\d/01/2024$").all()
    assert f["id"].iloc[0] == "T0001" and f["id"].is_unique
    assert f["who"].str.contains("@").all()
    assert f["big"].tolist() == (f["amount"] > 100).tolist()


def test_llm_columns_and_their_readers_are_left_for_rows(plan) -> None:
    assert plan.per_row == ["desc", "profile", "desc_len"]
    assert "desc" not in plan.frame.columns


def test_targets_on_llm_enum_fields_are_planned(plan) -> None:
    seg = pd.Series(plan.assigned["segment"]).value_counts(normalize=True)
    assert seg["retail"] == 0.5 and seg["sme"] == 0.3 and seg["corp"] == 0.2
    assert plan.assigned_for("profile", 3) == {"segment": plan.assigned["segment"][3]}


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    a = make_plan(loads_spec(SPEC), 200).frame
    b = make_plan(loads_spec(SPEC), 200).frame
    c = make_plan(loads_spec(SPEC.replace("seed: 5", "seed: 6")), 200).frame
    pd.testing.assert_frame_equal(a, b)
    assert not a["amount"].equals(c["amount"])


def test_adding_a_column_does_not_change_the_others() -> None:
    a = make_plan(loads_spec(SPEC), 100).frame
    extra = SPEC.replace("  - name: visits", "  - name: extra\n    sampler: {uniform: {min: 0, max: 1}}\n  - name: visits")
    b = make_plan(loads_spec(extra), 100).frame
    pd.testing.assert_series_equal(a["amount"], b["amount"])


def test_cell_seeds_differ_per_row_column_and_attempt() -> None:
    seeds = {cell_seed(1, r, c, a) for r in range(50) for c in ("x", "y") for a in range(3)}
    assert len(seeds) == 300 and cell_seed(1, 2, "x", 0) == cell_seed(1, 2, "x", 0)


def test_near_duplicates_find_normalized_and_close_texts() -> None:
    texts = ["Coffee at Blue Cup", "coffee at blue cup!", "Hardware store purchase",
             "Weekly groceries at the corner market", "Weekly groceries at the corner market.", "hardware store purchases"]
    dup, twin = near_duplicates(texts, threshold=0.8)
    assert dup.tolist() == [False, True, False, False, True, True]
    assert twin.tolist() == [-1, 0, -1, -1, 3, 2]


def test_distinct_n_and_report() -> None:
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    rep = diversity_report(["same text", "same text", "other words here"])
    assert rep["duplicate_rate"] == pytest.approx(1 / 3) and rep["exact_duplicate_rate"] == pytest.approx(1 / 3)
