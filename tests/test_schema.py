import json

import pandas as pd
import pytest
import yaml

from synthloop.errors import SchemaError
from synthloop.schema import ColumnKind, TableSchema, infer_schema
from synthloop.schema.inference import InferenceWarning


def test_infers_every_kind_with_bounds_rounding_format_and_nulls(mixed_table):
    s = infer_schema(mixed_table)
    kinds = {c.name: c.kind for c in s.columns}
    assert kinds == {
        "customer_id": ColumnKind.ID, "age": ColumnKind.NUMERICAL, "income": ColumnKind.NUMERICAL,
        "capital_gain": ColumnKind.NUMERICAL, "segment": ColumnKind.CATEGORICAL, "active": ColumnKind.BOOLEAN,
        "opened": ColumnKind.DATETIME, "email": ColumnKind.PII, "note": ColumnKind.TEXT,
    }
    assert s["age"].decimals == 0 and s["age"].min >= 18 and s["age"].max <= 89
    assert s["income"].decimals == 2
    assert s["income"].missing_share == pytest.approx(mixed_table["income"].isna().mean())
    assert s["opened"].datetime_format == "%d/%m/%Y"
    assert s["segment"].categories[0] == "retail"
    assert s["email"].pii_type.value == "email"
    assert s["customer_id"].id_pattern == "C{digits:6}"
    assert s.primary_key == "customer_id"


def test_schema_round_trips_through_json_and_yaml(mixed_table):
    s = infer_schema(mixed_table)
    assert TableSchema.from_json(s.to_json()) == s
    assert TableSchema.from_yaml(s.to_yaml()) == s


def test_yaml_overrides_force_kind_and_fields(mixed_table):
    over = yaml.safe_load("columns:\n  age: {kind: categorical}\n  income: {max: 1.0e6}\n")
    s = infer_schema(mixed_table, overrides=over)
    assert s["age"].kind == ColumnKind.CATEGORICAL and len(s["age"].categories) > 10
    assert s["income"].max == 1.0e6


def test_override_of_unknown_column_names_it(mixed_table):
    with pytest.raises(SchemaError, match="columns.nope: no such column"):
        infer_schema(mixed_table, overrides={"columns": {"nope": {"kind": "numerical"}}})


def test_invalid_schema_names_the_yaml_path():
    with pytest.raises(SchemaError, match=r"columns\[0\]\.kind"):
        TableSchema.from_dict({"columns": [{"name": "a", "kind": "banana"}]})


def test_mixed_numbers_and_text_warn_and_fall_back_to_categorical():
    df = pd.DataFrame({"x": ["1", "2", "3", "oops", "5", "6"]})
    with pytest.warns(InferenceWarning, match="'x' mixes numbers and text.*'oops'"):
        s = infer_schema(df)
    assert s["x"].kind == ColumnKind.CATEGORICAL


def test_all_null_column_is_kept_with_full_missing_share():
    s = infer_schema(pd.DataFrame({"a": [1, 2, 3], "b": [None, None, None]}))
    assert s["b"].missing_share == 1.0


def test_sdv_metadata_uses_our_kinds(mixed_table):
    meta = infer_schema(mixed_table).to_sdv_metadata()
    assert meta["columns"]["age"] == {"sdtype": "numerical"}
    assert meta["columns"]["opened"]["datetime_format"] == "%d/%m/%Y"
    json.dumps(meta)
