"""PII is never learned: Faker values consistent within a row, across tables per key, and scrubbed from text."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloop.schema import ColumnKind, infer_schema
from synthloop.schema.model import ColumnSchema, PiiType, TableSchema
from synthloop.synthesizers import GaussianCopulaSynthesizer
from synthloop.transforms.generated import (apply_pii, find_identifiers, generate_columns, identifier_share,
                                            identities, scrub_text)


def _people(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    first = rng.choice(["Alice", "Bruno", "Chen", "Dana"], n)
    last = rng.choice(["Smith", "Okafor", "Novak"], n)
    return pd.DataFrame({
        "customer_id": np.arange(1000, 1000 + n),
        "name": pd.Series(first + " " + last),
        "email": pd.Series([f"{f.lower()}.{l.lower()}{i}@mail.test" for i, (f, l) in enumerate(zip(first, last))]),
        "phone": pd.Series([f"+1 555 {i:03d} {i * 7 % 10000:04d}" for i in range(n)]),
        "age": rng.integers(18, 90, n),
        "plan": rng.choice(["basic", "plus"], n),
    })


def test_pii_columns_are_replaced_and_never_copied():
    df = _people()
    schema = infer_schema(df)
    assert schema["email"].kind == ColumnKind.PII and schema["name"].kind == ColumnKind.PII
    out = GaussianCopulaSynthesizer().fit(df, schema=schema).sample(300, seed=0)
    for col in ("name", "email", "phone"):
        assert not out[col].isin(df[col]).any(), col


def test_name_matches_email_within_a_row():
    schema = TableSchema(columns=[ColumnSchema(name="first", kind=ColumnKind.PII, pii_type=PiiType.FIRST_NAME),
                                  ColumnSchema(name="last", kind=ColumnKind.PII, pii_type=PiiType.LAST_NAME),
                                  ColumnSchema(name="email", kind=ColumnKind.PII, pii_type=PiiType.EMAIL)])
    cols = generate_columns(schema, 200, np.random.default_rng(0), 0)
    local = cols["email"].str.split("@").str[0]
    first = cols["first"].str.lower().str.replace(r"[^a-z0-9]", "", regex=True)
    last = cols["last"].str.lower().str.replace(r"[^a-z0-9]", "", regex=True)
    assert all(lp.startswith(f"{f}.{l}") for lp, f, l in zip(local, first, last))


def test_same_key_gets_the_same_person_in_every_table():
    a = identities([7, 8, 9], secret="s3cret")
    b = identities(pd.Series(["9", "7"]), secret="s3cret")
    assert b.iloc[0].to_dict() == a.iloc[2].to_dict() and b.iloc[1].to_dict() == a.iloc[0].to_dict()
    assert all(e.startswith(f.lower() + ".") for e, f in zip(a["email"], a["first_name"]))
    other = identities([7, 8, 9], secret="another")
    assert (other["name"] != a["name"]).any()  # the mapping depends on the secret


def test_apply_pii_keeps_keys_consistent_across_two_tables():
    customers = _people(50)
    orders = pd.DataFrame({"customer_id": np.repeat(customers["customer_id"].to_numpy()[:10], 3),
                           "email": "x@y.test", "amount": np.arange(30.0)})
    sc = infer_schema(customers)
    so = TableSchema(columns=[ColumnSchema(name="customer_id", kind=ColumnKind.ID),
                              ColumnSchema(name="email", kind=ColumnKind.PII, pii_type=PiiType.EMAIL),
                              ColumnSchema(name="amount", kind=ColumnKind.NUMERICAL, min=0, max=29)])
    c2 = apply_pii(customers, sc, key="customer_id", secret="k")
    o2 = apply_pii(orders, so, key="customer_id", secret="k")
    merged = o2.merge(c2[["customer_id", "email", "name"]], on="customer_id", suffixes=("_order", "_customer"))
    assert (merged["email_order"] == merged["email_customer"]).all()
    assert not c2["email"].isin(customers["email"]).any()
    assert c2["name"].nunique() > 30


def test_locale_changes_the_fake_values():
    us = identities(range(50), locale="en_US")
    de = identities(range(50), locale="de_DE")
    assert (us["address"] != de["address"]).all()
    assert de["iban"].str.startswith("DE").all()
    schema = TableSchema(columns=[ColumnSchema(name="iban", kind=ColumnKind.PII, pii_type=PiiType.IBAN)])
    assert generate_columns(schema, 20, np.random.default_rng(0), 0, locale="de_DE")["iban"].str.startswith("DE").all()


def test_identifiers_inside_free_text_are_replaced_consistently():
    text = pd.Series(["Call (555) 123-4567 or write to jo.doe@corp.example", None,
                      "Seen 2023-01-15 from 10.0.0.1, SSN 123-45-6789", "again: jo.doe@corp.example thanks",
                      "no identifiers here, order 12345"])
    kinds = find_identifiers(text).groupby("kind")["text"].apply(list).to_dict()
    assert kinds["email"] == ["jo.doe@corp.example"] * 2
    assert kinds["phone"] == ["(555) 123-4567"] and kinds["ssn"] == ["123-45-6789"] and kinds["ip"] == ["10.0.0.1"]
    assert identifier_share(text) == pytest.approx(3 / 4)
    out = scrub_text(text, secret="k")
    joined = " ".join(out.dropna())
    for original in ("jo.doe@corp.example", "(555) 123-4567", "123-45-6789", "10.0.0.1"):
        assert original not in joined
    assert "2023-01-15" in out[2] and out[4] == text[4] and out[1] is None  # dates, plain numbers, nulls untouched
    new_email = find_identifiers(out.iloc[[0]])["text"].tolist()
    assert any("@" in t for t in new_email)
    assert new_email[-1] in out[3]  # the same address became the same fake in both rows
    assert scrub_text(text, secret="k").equals(out)  # deterministic


def test_free_text_with_identifiers_is_not_learned():
    df = _people(200)
    rng = np.random.default_rng(1)
    df["note"] = [f"customer asked for a call back on +1 555 010 {i:04d} about the {w} plan, mail {e}"
                  for i, (w, e) in enumerate(zip(rng.choice(["basic", "plus"], 200), df["email"]))]
    schema = infer_schema(df)
    assert not schema["note"].learned
    out = GaussianCopulaSynthesizer().fit(df, schema=schema).sample(100, seed=0)
    assert identifier_share(out["note"]) == 0.0 or not out["note"].isin(df["note"]).any()
