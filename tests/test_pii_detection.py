"""PII is found from the values, whatever the header says; labels under a `name` header stay categories."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from faker import Faker

from synthloop.schema import ColumnKind, PiiType, infer_schema
from synthloop.schema.inference import InferenceWarning
from synthloop.schema.pii import detect_pii
from synthloop.synthesizers import GaussianCopulaSynthesizer

# Real-looking customer names that Faker did not make (so the test does not check Faker against itself).
CUSTOMERS = ["Claire Gute", "Darrin Van Huff", "Sean O'Donnell", "Brosina Hoffman", "Andrew Allen", "Irene Maddox",
             "Harold Pawlan", "Pete Kriz", "Alejandro Grove", "Zuschuss Donatelli", "Ken Black", "Sandra Flanagan",
             "Emily Burns", "Eric Hoffmann", "Tracy Blumstein", "Matt Abelman", "Gene Hale", "Steve Nguyen",
             "Linda Cazamias", "Ruben Ausman", "Erin Smith", "Odella Nelson", "Patrick O'Donnell", "Lena Hernandez",
             "Darren Powers", "Janet Molinari", "Ted Butterfield", "Kunst Miller", "Jonathan Doherty", "Tamara Chand",
             "Arthur Prichep", "Dave Kipp", "Maria Etezadi", "Vivek Sundaresan", "Jim Sink", "Anthony Johnson",
             "Deirdre Greer", "Kelly Collister", "Xylona Preis", "Rick Bensley"]
PRODUCTS = ["Widget Pro", "Widget Mini", "Gizmo 3000", "Gizmo Lite", "Sprocket XL", "Sprocket", "Flux Capacitor",
            "Hyper Drive", "Quantum Router", "Nano Hub", "Mega Dock", "Ultra Cable", "Power Brick", "Solar Panel S",
            "Solar Panel M", "Thermo Mug", "Aero Fan", "Cyclone Vac", "Laser Level", "Drill Master"]


def _warnings_of(df: pd.DataFrame, **kw) -> tuple:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        schema = infer_schema(df, **kw)
    return schema, [str(w.message) for w in caught if issubclass(w.category, InferenceWarning)]


def _fake(n: int, what: str, locales=("en_US", "de_DE", "fr_FR", "es_ES")) -> list[str]:
    fakes = [Faker(loc) for loc in locales]
    for i, f in enumerate(fakes):
        f.seed_instance(i)
    return [getattr(fakes[i % len(fakes)], what)() for i in range(n)]


@pytest.fixture(scope="module")
def people() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 600
    return pd.DataFrame({
        "Customer Name": rng.choice(CUSTOMERS, n),  # each name on ~15 rows, as customers who order often
        "fn": _fake(n, "first_name"),
        "surname_x": _fake(n, "last_name"),
        "amount": np.round(rng.gamma(2.0, 50.0, n), 2),
        "segment": rng.choice(["Consumer", "Corporate", "Home Office"], n),
    })


def test_person_names_under_unusual_headers_are_detected_and_named_in_a_warning(people):
    schema, warned = _warnings_of(people)
    assert schema["Customer Name"].kind == ColumnKind.PII and schema["Customer Name"].pii_type == PiiType.NAME
    assert schema["fn"].kind == ColumnKind.PII and schema["fn"].pii_type == PiiType.FIRST_NAME
    assert schema["surname_x"].kind == ColumnKind.PII and schema["surname_x"].pii_type == PiiType.LAST_NAME
    assert schema["segment"].kind == ColumnKind.CATEGORICAL and schema["amount"].kind == ColumnKind.NUMERICAL
    for col in ("Customer Name", "fn", "surname_x"):
        msg = next(m for m in warned if f"column '{col}'" in m)
        assert "person" in msg and "never learned" in msg and "columns: {" in msg
    assert not any("segment" in m or "amount" in m for m in warned)
    assert "sampled distinct values" in schema["Customer Name"].notes[0]  # the reason stays in the schema


def test_a_detected_name_column_never_reaches_the_output(people):
    model = GaussianCopulaSynthesizer().fit(people, schema=_warnings_of(people)[0])
    out = model.sample(2000, seed=0)
    # fake names only: a learned category would copy the 40 real names into every row (a rare fake may
    # coincide with a real name such as "Erin Smith", so allow a trace)
    assert out["Customer Name"].isin(people["Customer Name"]).mean() < 0.01
    assert out["Customer Name"].nunique() > 500


def test_the_override_in_the_warning_keeps_the_column(people):
    _, warned = _warnings_of(people)
    msg = next(m for m in warned if "column 'Customer Name'" in m)
    hint = msg.split("set in the schema YAML: ")[1]
    assert hint == "columns: {Customer Name: {kind: categorical}}"
    schema, warned2 = _warnings_of(people, overrides=yaml.safe_load(hint))
    assert schema["Customer Name"].kind == ColumnKind.CATEGORICAL
    assert set(schema["Customer Name"].categories) == set(people["Customer Name"])
    assert not any("Customer Name" in m for m in warned2)
    assert schema["fn"].kind == ColumnKind.PII  # the others are still replaced


@pytest.mark.parametrize("header,make,ptype", [
    ("contact", lambda n: _fake(n, "free_email"), PiiType.EMAIL),
    ("c1", lambda n: _fake(n, "phone_number", ("en_US",)), PiiType.PHONE),
    ("pay_ref", lambda n: _fake(n, "credit_card_number", ("en_US",)), PiiType.CREDIT_CARD),
    ("acct", lambda n: _fake(n, "iban", ("de_DE", "fr_FR", "nl_NL", "en_GB")), PiiType.IBAN),
    ("tax", lambda n: _fake(n, "ssn", ("en_US",)), PiiType.SSN),
    ("host", lambda n: _fake(n, "ipv4") + _fake(n // 4, "ipv6"), PiiType.IP),
    ("home", lambda n: [a.replace("\n", ", ") for a in _fake(n, "address", ("en_US",))], PiiType.ADDRESS),
])
def test_identifiers_in_oddly_named_columns_are_detected(header, make, ptype):
    rng = np.random.default_rng(1)
    values = make(200)
    df = pd.DataFrame({header: values, "x": rng.normal(size=len(values))})
    schema, warned = _warnings_of(df)
    assert schema[header].kind == ColumnKind.PII and schema[header].pii_type == ptype, schema[header]
    assert any(f"column '{header}'" in m and f"({ptype.value})" in m for m in warned)


def test_card_numbers_need_a_valid_luhn_checksum():
    cards = _fake(200, "credit_card_number", ("en_US",))
    broken = [c[:-1] + str((int(c[-1]) + 1) % 10) for c in cards]  # last digit off by one: checksum fails
    assert detect_pii(pd.Series(cards)).pii_type == PiiType.CREDIT_CARD
    finding = detect_pii(pd.Series(broken))
    assert finding is None or finding.pii_type != PiiType.CREDIT_CARD


def test_card_numbers_read_as_integers_are_detected():
    cards = np.array([int(c) for c in _fake(300, "credit_card_number", ("en_US",)) if len(c) == 16], dtype=np.int64)
    schema, warned = _warnings_of(pd.DataFrame({"v": cards}))
    assert schema["v"].kind == ColumnKind.PII and schema["v"].pii_type == PiiType.CREDIT_CARD
    assert "columns: {v: {kind: numerical}}" in warned[0]


def test_a_name_column_of_repeated_product_labels_stays_categorical():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"name": rng.choice(PRODUCTS, 1000), "price": rng.gamma(2.0, 10.0, 1000)})
    schema, warned = _warnings_of(df)
    assert schema["name"].kind == ColumnKind.CATEGORICAL
    assert set(schema["name"].categories) == set(PRODUCTS)
    msg = next(m for m in warned if "column 'name'" in m)
    assert "repeated labels" in msg and "columns: {name: {kind: pii, pii_type: name}}" in msg


def test_a_name_column_of_unique_person_names_is_still_pii():
    df = pd.DataFrame({"name": _fake(300, "name")})
    assert infer_schema(df)["name"].kind == ColumnKind.PII


def test_nearly_unique_free_strings_become_identifiers():
    rng = np.random.default_rng(3)
    n = 400
    words = np.array(["amber", "delta", "lotus", "vortex", "quartz", "nimbus"])
    codes = pd.Series([f"{a} {b} {i}" for i, (a, b) in enumerate(zip(rng.choice(words, n), rng.choice(words, n)))])
    codes.iloc[:8] = codes.iloc[8:16].to_numpy()  # a few repeats: nearly, not all, unique
    licence = pd.Series([f"S{i:06d}" if i % 3 else str(8_000_000 + i) for i in range(n)])  # digits and letters
    df = pd.DataFrame({"ref": codes, "licence": licence, "grade": rng.choice(list("ABC"), n)})
    schema, warned = _warnings_of(df)
    assert schema["ref"].kind == ColumnKind.ID and schema["licence"].kind == ColumnKind.ID
    assert schema["grade"].kind == ColumnKind.CATEGORICAL
    assert any("column 'ref'" in m and "nearly all values unique" in m for m in warned)
    out = GaussianCopulaSynthesizer().fit(df, schema=schema).sample(300, seed=0)
    assert not out["ref"].isin(df["ref"]).any() and not out["licence"].isin(df["licence"]).any()


def test_labels_that_share_words_with_names_are_not_people():
    rng = np.random.default_rng(4)
    labels = {
        "colour": ["Red", "Brown", "White", "Green", "Black", "Rose", "Amber", "Ruby", "Olive", "Grey", "Blue",
                   "Yellow", "Orange", "Purple", "Pink", "Gold", "Silver", "Violet", "Navy", "Teal"],
        "month": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                  "October", "November", "December"],
        "city": ["New York", "Los Angeles", "San Antonio", "Charlotte", "Austin", "Jackson", "Madison", "Lincoln",
                 "Florence", "Victoria", "Kansas City", "Virginia Beach", "Fort Worth", "El Paso", "Chester"],
        "company": ["Parker Inc", "Lindauer LLC", "Smith and Sons", "Miller Group", "Davis Partners", "Wilson Corp",
                    "Moore Bros", "Taylor Ltd", "Anderson Co", "Thomas Industries", "Jackson Media"],
    }
    df = pd.DataFrame({k: rng.choice(v, 500) for k, v in labels.items()})
    schema = infer_schema(df)
    assert all(schema[k].kind == ColumnKind.CATEGORICAL for k in labels), {k: schema[k].kind for k in labels}


def test_real_tables_keep_their_labels(shared_data, adult):
    """Pet names, travel agents and taxi zones are not personal data to replace; license numbers are ids."""
    assert all(c.learned for c in infer_schema(adult).columns)
    pets = infer_schema(pd.read_csv(shared_data / "seattle_pets" / "seattle_pets.csv", nrows=5000))
    assert pets["animal_name"].kind == ColumnKind.CATEGORICAL
    assert pets["license_number"].kind == ColumnKind.ID
    assert not pets.of_kind(ColumnKind.PII)
    for path in ("hotel_rates/hotel_rates.csv", "nyc_taxis/taxis.csv"):
        schema = infer_schema(pd.read_csv(shared_data / path, nrows=5000))
        assert all(c.learned for c in schema.columns), [c.name for c in schema.columns if not c.learned]


def test_detection_checks_a_bounded_sample_of_distinct_values():
    big = pd.Series([f"user{i}@mail.test" for i in range(50_000)])
    finding = detect_pii(big)
    assert finding.pii_type == PiiType.EMAIL and finding.sampled == 300
    assert detect_pii(big) == finding  # seeded: the same sample every time
    assert re.search(r"\d+% of 300 sampled distinct values are email addresses", finding.reason)


def test_the_cli_prints_which_column_is_replaced_and_how_to_keep_it(tmp_path, people):
    import subprocess
    import sys

    path = tmp_path / "orders.csv"
    people.to_csv(path, index=False)
    proc = subprocess.run([sys.executable, "-m", "synthloop.cli", "fit", str(path), "-o", str(tmp_path / "m.npz"),
                           "--model", "copula"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "warning: column 'Customer Name' holds personal data (name)" in said
    assert "columns: {Customer Name: {kind: categorical}}" in said


@pytest.mark.parametrize("locale,module", [("it_IT", "it.codicefiscale"), ("fr_FR", "fr.nir"), ("sv_SE", "se.personnummer"),
                                           ("en_CA", "ca.sin")])
def test_national_ids_of_other_countries_are_detected(locale, module):
    finding = detect_pii(pd.Series(_fake(200, "ssn", (locale,))))
    assert finding.pii_type == PiiType.SSN and module in finding.what


def test_national_ids_read_as_integers_are_detected():
    pesel = pd.Series([int(v) for v in _fake(300, "ssn", ("pl_PL",))], dtype="int64")
    schema = infer_schema(pd.DataFrame({"k": pesel}))
    assert schema["k"].kind == ColumnKind.PII and "pl.pesel" in schema["k"].notes[0]
