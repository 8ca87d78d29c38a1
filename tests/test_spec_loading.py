"""Spec loading: the examples load, and every mistake names the file, line and YAML path."""
from __future__ import annotations

from pathlib import Path

import pytest

from synthloop.spec import SpecError, load_spec, loads_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "prompted"

BASE = """\
name: t
rows: 10
seed: 1
columns:
  - name: type
    sampler: {categorical: {credit: 0.6, debit: 0.3, transfer: 0.1}}
  - name: amount
    sampler: {lognormal: {mean: 3.5, sigma: 1.1, min: 1, max: 20000}}
  - name: desc
    llm:
      prompt: "Merchant line for a {{ type }} payment of {{ amount }} USD."
  - name: profile
    llm:
      prompt: "Customer for: {{ desc }}"
      schema: {type: object, properties: {age: {type: integer, minimum: 18, maximum: 95}, segment: {enum: [retail, sme]}}}
  - name: fee
    expression: "round(amount * 0.02, 2) if type == 'credit' else 0"
targets:
  type: {credit: 0.6, debit: 0.3, transfer: 0.1}
"""


def _err(text: str) -> str:
    with pytest.raises(SpecError) as exc:
        loads_spec(text, "s.yaml")
    return str(exc.value)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_load(path: Path) -> None:
    spec = load_spec(path)
    assert spec.rows > 0 and any(c.llm is not None for c in spec.columns)


def test_structured_columns_expand_to_their_fields() -> None:
    spec = loads_spec(BASE)
    assert spec.output_columns() == ["type", "amount", "desc", "age", "segment", "fee"]


def test_missing_prompt_names_yaml_path_and_line() -> None:
    msg = _err(BASE.replace('prompt: "Customer for: {{ desc }}"', 'system: "x"'))
    assert msg.startswith("s.yaml:13: columns[3].llm.prompt:") and "required" in msg


def test_misspelled_key_is_reported_as_unknown() -> None:
    msg = _err(BASE.replace('prompt: "Customer', 'promt: "Customer'))
    assert "columns[3].llm.promt" in msg and "unknown key 'promt'" in msg


def test_bad_distribution_parameter_names_its_path() -> None:
    assert "columns[1].sampler.lognormal.sigma" in _err(BASE.replace("sigma: 1.1", "sigma: -1"))


def test_unknown_template_variable_names_the_column() -> None:
    msg = _err(BASE.replace("{{ type }} payment", "{{ typo }} payment"))
    assert "columns[2].llm.prompt" in msg and "unknown column 'typo'" in msg


def test_template_syntax_error_is_reported() -> None:
    assert "columns[2].llm.prompt: template syntax error" in _err(BASE.replace("{{ type }} payment", "{{ type } payment"))


def test_cycle_is_reported_with_its_names() -> None:
    msg = _err(BASE.replace("Merchant line for a {{ type }}", "{{ age }} {{ type }}"))
    assert "cycle: desc -> profile -> desc" in msg


def test_disallowed_expression_is_refused() -> None:
    msg = _err(BASE.replace("round(amount", "__import__(amount"))
    assert "columns[4].expression" in msg and "'__import__' is not allowed" in msg


def test_expression_attribute_access_is_refused() -> None:
    assert "columns[4].expression" in _err(BASE.replace("round(amount * 0.02, 2)", "amount.__class__"))


def test_target_value_must_exist() -> None:
    head, tail = BASE.rsplit("transfer: 0.1", 1)
    msg = _err(head + "wire: 0.1" + tail)
    assert "targets.type" in msg and "'wire' is not one of" in msg


def test_target_shares_must_sum_to_one() -> None:
    assert "sum to 1" in _err(BASE.replace("{credit: 0.6, debit: 0.3, transfer: 0.1}\n", "{credit: 0.5, debit: 0.3, transfer: 0.1}\n"))


def test_invalid_json_schema_is_refused() -> None:
    msg = _err(BASE.replace("type: integer, minimum: 18", "type: integr, minimum: 18"))
    assert "columns[3].llm.schema" in msg and "JSON schema" in msg


def test_duplicate_names_including_structured_fields() -> None:
    msg = _err(BASE.replace("- name: fee", "- name: age"))
    assert "'age' is already used" in msg


def test_missing_few_shot_file(tmp_path: Path) -> None:
    text = BASE.replace('USD."\n', 'USD."\n      few_shot: {file: nope.csv, k: 2}\n', 1)
    with pytest.raises(SpecError, match=r"columns\[2\]\.llm\.few_shot\.file: seed file .*nope.csv not found"):
        loads_spec(text, "s.yaml", tmp_path)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ncolumns:\n  - name: a\n    sampler: {categorical: {a: 1}\n")
    with pytest.raises(SpecError, match=r"bad.yaml:\d+: not valid YAML"):
        load_spec(p)


def test_exactly_one_source_per_column() -> None:
    msg = _err(BASE.replace('    expression: "round', '    sampler: {uniform: {min: 0, max: 1}}\n    expression: "round'))
    assert "columns[4]" in msg and "exactly one of sampler, expression or llm" in msg


def test_spec_gives_the_table_schema_of_its_output() -> None:
    from synthloop.schema import ColumnKind
    from synthloop.spec.table import table_schema

    schema = table_schema(loads_spec(BASE.replace("round(amount * 0.02, 2) if type == 'credit' else 0", "amount > 5 and type == 'credit'")))
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"type": ColumnKind.CATEGORICAL, "amount": ColumnKind.NUMERICAL, "desc": ColumnKind.TEXT,
                     "age": ColumnKind.NUMERICAL, "segment": ColumnKind.CATEGORICAL, "fee": ColumnKind.BOOLEAN}
    assert schema["amount"].min == 1 and schema["age"].max == 95 and schema["segment"].categories == ["retail", "sme"]
