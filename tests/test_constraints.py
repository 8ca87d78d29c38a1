"""Constraints: each rule's check and repair, the safe expression language, YAML declaration, and
BaseSynthesizer.sample returning only valid rows (repair, bounded redraw, clear error)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloop.constraints import (
    ExpressionConstraint, FixedCombinations, Inequality, Range, Regex, Unique, constraint_adherence,
    constraint_from_dict, parse_constraints,
)
from synthloop.constraints.enforce import ConstraintError
from synthloop.errors import SchemaError
from synthloop.schema import TableSchema, infer_schema
from synthloop.synthesizers import GaussianCopulaSynthesizer, load_synthesizer

RNG = np.random.default_rng(0)


@pytest.fixture()
def orders() -> pd.DataFrame:
    n = 300
    rng = np.random.default_rng(4)
    price = np.round(rng.uniform(1, 50, n), 2)
    qty = rng.integers(1, 10, n)
    start = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    city = rng.choice(["Paris", "Lyon", "Austin", "Dallas"], n)
    state = np.where(np.isin(city, ["Paris", "Lyon"]), "FR", "TX")
    return pd.DataFrame({
        "order": [f"O-{i:05d}" for i in range(n)], "price": price, "quantity": qty,
        "total": np.round(price * qty, 2), "start": start,
        "end": start + pd.to_timedelta(rng.integers(1, 30, n), unit="D"), "city": city, "state": state,
    })


def test_range_flags_and_clips_out_of_bounds_values():
    df = pd.DataFrame({"age": [10, 30, 120, None]})
    rule = Range("age", 18, 99)
    assert rule.is_valid(df).tolist() == [False, True, False, True]
    assert rule.repair(df.copy(), RNG)["age"].tolist()[:3] == [18, 30, 99]


def test_range_on_dates_accepts_iso_bounds():
    df = pd.DataFrame({"d": pd.to_datetime(["2019-12-31", "2020-06-01"])})
    assert Range("d", low="2020-01-01").is_valid(df).tolist() == [False, True]


def test_inequality_end_after_start_is_repaired_by_swapping():
    df = pd.DataFrame({"start": pd.to_datetime(["2020-01-01", "2020-03-01", "2020-02-01"]),
                       "end": pd.to_datetime(["2020-01-05", "2020-02-01", "2020-02-01"])})
    rule = Inequality("start", "end", strict=True)
    assert rule.is_valid(df).tolist() == [True, False, False]
    fixed = rule.repair(df.copy(), RNG)
    assert rule.is_valid(fixed).tolist() == [True, True, False]  # a tie cannot be fixed by a swap
    assert fixed.loc[1, "start"] == pd.Timestamp("2020-02-01")


def test_fixed_combinations_learn_pairs_and_repair_keeps_the_first_column():
    real = pd.DataFrame({"city": ["Paris", "Lyon", "Austin"], "state": ["FR", "FR", "TX"]})
    rule = FixedCombinations(["city", "state"]).fit(real)
    fake = pd.DataFrame({"city": ["Paris", "Austin", "Paris"], "state": ["TX", "TX", "FR"]})
    assert rule.is_valid(fake).tolist() == [False, True, True]
    fixed = rule.repair(fake.copy(), RNG)
    assert fixed.loc[0, "city"] == "Paris" and fixed.loc[0, "state"] == "FR"
    again = constraint_from_dict(rule.to_dict())  # learned pairs survive serialization
    assert again.is_valid(fake).tolist() == [False, True, True]


def test_regex_and_unique_check_rows():
    df = pd.DataFrame({"zip": ["12345", "1234a", None], "id": [1, 2, 1]})
    assert Regex("zip", r"\d{5}").is_valid(df).tolist() == [True, False, True]
    assert Unique("id").is_valid(df).tolist() == [True, True, False]
    with pytest.raises(SchemaError, match="bad pattern"):
        Regex("zip", "([")


def test_expression_checks_arithmetic_and_repairs_the_defined_column():
    df = pd.DataFrame({"price": [2.0, 3.0], "quantity": [2, 2], "total": [4.0, 7.0]})
    rule = ExpressionConstraint("total == price * quantity")
    assert rule.is_valid(df).tolist() == [True, False] and rule.repairable
    assert rule.repair(df.copy(), RNG)["total"].tolist() == [4.0, 6.0]
    chained = ExpressionConstraint("0 < quantity <= 2 and (price > 2 or total >= 4)")
    assert chained.is_valid(df).tolist() == [True, True]
    assert ExpressionConstraint("quantity in [1, 2]").is_valid(df).all()


@pytest.mark.parametrize("text", ["__import__('os').system('x')", "price.__class__", "[c for c in price]",
                                  "lambda: 1", "price[0]", "open('f')"])
def test_expression_refuses_code_beyond_the_whitelist(text):
    with pytest.raises(SchemaError, match="not allowed|not valid"):
        ExpressionConstraint(text)


def test_unknown_rule_type_and_missing_column_are_clear_errors(orders):
    with pytest.raises(SchemaError, match="unknown constraint type 'between_dates'"):
        constraint_from_dict({"type": "between_dates"})
    with pytest.raises(SchemaError, match="unknown column 'nope'"):
        GaussianCopulaSynthesizer().fit(orders, constraints=[Range("nope", 0, 1)])


def test_schema_yaml_constraints_are_obeyed_by_sample(orders):
    schema = infer_schema(orders)
    yaml_text = schema.to_yaml() + """constraints:
  - {type: inequality, low: start, high: end, strict: true}
  - {type: fixed_combinations, columns: [city, state]}
  - {type: expression, expression: 'total == price * quantity'}
  - {type: range, column: quantity, low: 2, high: 8}
  - {type: unique, columns: [order]}
"""
    schema = TableSchema.from_yaml(yaml_text)
    model = GaussianCopulaSynthesizer(random_state=0).fit(orders, schema=schema)
    out = model.sample(400, seed=1)
    report = constraint_adherence(out, schema.constraints, real=orders)
    assert report["share_valid"] == 1.0 and len(out) == 400
    assert constraint_adherence(orders, schema.constraints)["share_valid"] < 1.0  # real data breaks the range


def test_sample_rejects_and_redraws_rules_without_repair(orders):
    rule = ExpressionConstraint("quantity != 3")
    model = GaussianCopulaSynthesizer(random_state=0).fit(orders, constraints=[rule, Regex("city", "[PA].*")])
    out = model.sample(300, seed=2)
    assert (out["quantity"] != 3).all() and out["city"].isin(["Paris", "Austin"]).all()
    pd.testing.assert_frame_equal(out, model.sample(300, seed=2))  # still deterministic


def test_conditioned_rows_keep_their_position_and_value_under_constraints(orders):
    model = GaussianCopulaSynthesizer(random_state=0).fit(orders, constraints=["quantity != 3"])
    cond = pd.DataFrame({"city": ["Lyon", None, "Dallas"]})
    out = model.sample(seed=0, conditions=cond)
    assert out.loc[0, "city"] == "Lyon" and out.loc[2, "city"] == "Dallas" and (out["quantity"] != 3).all()


def test_impossible_rule_raises_after_a_bounded_budget(orders):
    model = GaussianCopulaSynthesizer(random_state=0).fit(orders, constraints=["price > 1000"])
    model.max_constraint_rounds = 3
    with pytest.raises(ConstraintError, match="price > 1000.*3 rounds"):
        model.sample(50, seed=0)


def test_fitted_rules_are_saved_with_the_model(orders, tmp_path):
    model = GaussianCopulaSynthesizer(random_state=0).fit(orders, constraints=[{"type": "fixed_combinations", "columns": ["city", "state"]}])
    loaded = load_synthesizer(model.save(tmp_path / "m.npz"))
    assert [c.to_dict() for c in loaded.constraints_] == [c.to_dict() for c in model.constraints_]
    pd.testing.assert_frame_equal(loaded.sample(100, seed=4), model.sample(100, seed=4))


def test_constraint_adherence_reports_share_and_per_rule_counts():
    df = pd.DataFrame({"a": [1, 2, 3, 4], "b": [2, 1, 4, 5]})
    rep = constraint_adherence(df, [Inequality("a", "b"), "a != 4"])
    assert rep["share_valid"] == 0.5 and [r["violations"] for r in rep["rules"]] == [1, 1]
    assert len(parse_constraints(["a < b", {"expression": "a >= 0"}])) == 2


def test_condition_that_breaks_a_rule_fails_fast_with_a_clear_error(orders):
    model = GaussianCopulaSynthesizer(random_state=0).fit(
        orders, constraints=[Range("quantity", 2, 8), FixedCombinations(["city", "state"])])
    with pytest.raises(ConstraintError, match="breaks the rule 'range\\(quantity\\)'"):
        model.sample(10, conditions={"quantity": 9})
    with pytest.raises(ConstraintError, match="fixed_combinations"):
        model.sample(conditions=pd.DataFrame({"city": ["Paris", "Lyon"], "state": ["FR", "TX"]}))
    assert (model.sample(20, seed=0, conditions={"quantity": 5})["quantity"] == 5).all()
