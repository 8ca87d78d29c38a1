"""Issue 12's attacks on the DP models, as regression tests: noise no one can replay, a domain that is
public or paid for, a planted row that never shows up in the output or the model file."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthloop.errors import PrivacyError
from synthloop.privacy import mechanisms
from synthloop.schema import infer_schema
from synthloop.synthesizers import load_synthesizer
from synthloop.synthesizers.dp_marginals import DPMarginalSynthesizer

PLANT = {"native_country": "ZZ_SECRET", "capital_gain": 9_999_999, "age": 150}


def _table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    seg = rng.choice(["z", "a", "m"], n, p=[0.6, 0.3, 0.1])  # the most frequent sorts last
    income = np.round(age * 900 + rng.normal(0, 4000, n), 2)
    return pd.DataFrame({"age": age, "segment": seg, "income": income, "flag": rng.random(n) < 0.4})


def _public(df: pd.DataFrame):
    return infer_schema(df).model_copy(update={"public": True})


def _people(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Adult-like columns: ages, a dominant country among a few, a capital gain that is mostly 0."""
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 80, n)
    country = rng.choice(["United-States", "Mexico", "Philippines", "Germany", "?"], n, p=[0.86, 0.05, 0.03, 0.03, 0.03])
    gain = np.where(rng.random(n) < 0.9, 0, rng.integers(100, 20000, n))
    hours = np.clip(np.round(rng.normal(40, 10, n)), 1, 99).astype(int)
    income = np.where(rng.random(n) < 0.2 + 0.004 * (age - 17), ">50K", "<=50K")
    return pd.DataFrame({"age": age, "native_country": country, "capital_gain": gain, "hours_per_week": hours,
                         "income": income})


@pytest.fixture(scope="module")
def planted() -> pd.DataFrame:
    base = _people()
    row = base.iloc[[0]].copy()
    for col, value in PLANT.items():
        row[col] = value
    return pd.concat([base, row], ignore_index=True)


def _stored(path: Path) -> tuple[list[str], list[float], dict[str, np.ndarray]]:
    """Everything a model file stores: its texts (header JSON, string arrays), every number of the header,
    and the arrays by name."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays.pop("__header__")))
    numbers: list[float] = []

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            numbers.append(float(x))

    walk(header)
    texts = [json.dumps(header)] + [str(a.tolist()) for a in arrays.values() if a.dtype.kind in "US"]
    with zipfile.ZipFile(path) as z:  # the raw member bytes too, in the encodings NumPy writes text in
        texts += [z.read(name).decode("latin-1") for name in z.namelist()]
    return texts, numbers, arrays


def _holds_planted(path: Path) -> list[str]:
    texts, numbers, arrays = _stored(path)
    found = [t for t in ("ZZ_SECRET", "Z\x00\x00\x00Z\x00\x00\x00_\x00\x00\x00S") if any(t in x for x in texts)]
    found += [f"number {v}" for v in numbers if v in (9_999_999.0, 150.0)]
    found += [f"array {k}" for k, a in arrays.items() if a.dtype.kind in "fiu" and np.isin(a, [9_999_999.0]).any()]
    return found


# -- noise from the operating system ----------------------------------------------------------------
def test_two_fits_with_the_same_seed_draw_different_noise():
    df = _table()
    a = DPMarginalSynthesizer(epsilon=1.0, random_state=0).fit(df, schema=_public(df))
    b = DPMarginalSynthesizer(epsilon=1.0, random_state=0).fit(df, schema=_public(df))
    assert any(not np.array_equal(x["noisy"], y["noisy"]) for x, y in zip(a.measurements_, b.measurements_))
    # the seed still rules sampling: one model, one seed, the same rows
    pd.testing.assert_frame_equal(a.sample(200, seed=3), a.sample(200, seed=3))


def test_replaying_the_seeded_noise_does_not_give_back_the_true_counts(tmp_path):
    """The old attack: regenerate N(0, sigma) from the saved random_state and subtract it."""
    df = _table()
    path = DPMarginalSynthesizer(epsilon=1.0, random_state=0).fit(df, schema=_public(df)).save(tmp_path / "dp.npz")
    m = load_synthesizer(path)
    rng = np.random.default_rng(m.random_state)
    enc = m.codec_.encode(df, strict=False, unknown=-2)
    recovered = total = 0
    for cell, w in zip(m.cells_, m.weights_):
        true = np.bincount(np.maximum(m._fine_index(cell, enc[cell["column"]]), 0), minlength=w.size)
        guess = w - rng.normal(0.0, m.sigmas_["one_way"], w.size)
        seen = w > 1  # cells the clipping at zero left alone
        recovered += int((np.abs(guess - true) < 0.5)[seen].sum())
        total += int(seen.sum())
    assert total > 50 and recovered / total < 0.1


def test_the_guarantee_names_the_noise_source_and_never_the_seed():
    df = _table(800)
    g = DPMarginalSynthesizer(epsilon=1.0).fit(df, schema=_public(df)).privacy_guarantee()
    assert "operating system" in g["noise"] and "never by random_state" in g["noise"]


# -- a domain that is public or paid for ------------------------------------------------------------
def test_a_planted_row_never_appears_in_the_output_or_the_model_file(planted, tmp_path):
    # Replayed noise keeps the test deterministic: a fresh OS draw can, rarely, let a far bin of the public
    # grid through the threshold (a wide bound, never the planted value itself).
    with mechanisms._seeded_noise_for_tests(0):
        m = DPMarginalSynthesizer(epsilon=1.0, random_state=0).fit(planted)
    assert "ZZ_SECRET" not in m.schema_["native_country"].categories
    assert m.schema_["age"].max < 150 and m.schema_["capital_gain"].max < 9_999_999
    for seed in range(3):
        out = m.sample(20000, seed=seed)
        assert not (out["native_country"] == "ZZ_SECRET").any()
        assert out["age"].max() < 150 and out["capital_gain"].max() < 9_999_999
    path = m.save(tmp_path / "dp.npz")
    assert _holds_planted(path) == []
    assert not any("age" in c["column"] and c.get("hi", 0) >= 150 for c in json.loads(
        str(np.load(path)["__header__"]))["model"]["cells"])


def test_the_domain_is_paid_for_and_stated(planted):
    m = DPMarginalSynthesizer(epsilon=1.0).fit(planted)
    g = m.privacy_guarantee()
    assert g["domain"]["mode"] == "dp" and g["domain"]["public"] == []
    assert set(g["domain"]["estimated"]) == set(planted.columns)
    assert g["parts"]["domain"]["share"] == pytest.approx(0.1)
    assert sum(p["rho"] for p in g["parts"].values()) == pytest.approx(g["rho_zcdp"])
    assert "budget: domain 10%" in g["statement"] and "no column declared public" in g["statement"]
    assert 0 < g["delta_thresholds"] <= 0.1 * g["delta"] * (1 + 1e-9)


def test_categories_are_kept_by_threshold_in_value_order_and_ids_start_at_one():
    df = _table()
    df.insert(0, "customer_id", np.arange(5000, 5000 + len(df)))
    df.loc[7, "segment"] = "once"  # a value seen once never survives the threshold
    m = DPMarginalSynthesizer(epsilon=1.0).fit(df)
    assert m.schema_["segment"].categories == ["a", "m", "z"]  # by value, not by frequency (z is the most frequent)
    out = m.sample(100, seed=0)
    assert out["customer_id"].tolist() == list(range(1, 101))  # a fixed public start, not the data's first id


def test_missing_shares_and_the_row_count_are_noisy():
    """Finding: on 800 rows, the exact missing share 37/800 gave the row count away."""
    df = _table(800)
    df.loc[:36, "income"] = np.nan
    m = DPMarginalSynthesizer(epsilon=1.0).fit(df)
    assert m.schema_["income"].missing_share != pytest.approx(37 / 800, abs=1e-9)
    assert all(c.missing_share != pytest.approx(37 / 800, abs=1e-9) for c in m.schema_.columns)


def test_a_dp_fit_without_a_public_or_paid_for_domain_is_refused():
    df = _table(500)
    with pytest.raises(PrivacyError, match=r"refused.*'age'.*public: true"):
        DPMarginalSynthesizer(domain="public").fit(df)
    with pytest.raises(PrivacyError, match="domain_share=0"):
        DPMarginalSynthesizer(domain_share=0.0).fit(df)
    partly = infer_schema(df).with_overrides({"columns": {"age": {"public": True}}})
    with pytest.raises(PrivacyError, match="'segment'") as err:
        DPMarginalSynthesizer(domain="public").fit(df, schema=partly)
    assert "'age'" not in str(err.value)
    m = DPMarginalSynthesizer(domain="public").fit(df, schema=_public(df))  # all declared: nothing paid
    assert "domain" not in m.privacy_guarantee()["parts"]


def test_columns_declared_public_are_used_as_declared_and_listed():
    df = _table()
    schema = infer_schema(df).with_overrides({"columns": {"age": {"public": True, "min": 0, "max": 120}}})
    m = DPMarginalSynthesizer(epsilon=1.0).fit(df, schema=schema)
    assert (m.schema_["age"].min, m.schema_["age"].max) == (0, 120)
    g = m.privacy_guarantee()
    assert g["domain"]["public"] == ["age"] and "age" not in g["domain"]["estimated"]
    assert "declared public: age" in g["statement"]


def test_rules_that_read_combinations_from_the_rows_are_refused():
    df = _table(500)
    with pytest.raises(PrivacyError, match="fixed_combinations"):
        DPMarginalSynthesizer().fit(df, schema=_public(df), constraints=[{"type": "fixed_combinations", "columns": ["segment", "flag"]}])


# -- the command line -------------------------------------------------------------------------------
def test_cli_refuses_an_unpaid_domain_in_one_line_and_states_the_budget(tmp_path):
    from typer.testing import CliRunner

    from synthloop.cli import app

    data = tmp_path / "t.csv"
    _table(2000).to_csv(data, index=False)
    refused = subprocess.run([sys.executable, "-m", "synthloop.cli", "fit", str(data), "--model", "dp", "--domain",
                              "public", "-o", str(tmp_path / "m.npz")], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "public: true" in lines[0]
    assert not (tmp_path / "m.npz").exists()
    ok = CliRunner().invoke(app, ["fit", str(data), "--model", "dp", "-o", str(tmp_path / "m.npz")])
    assert ok.exit_code == 0, ok.output
    assert "budget: domain 10%" in " ".join(ok.output.split()) and "no column declared public" in " ".join(ok.output.split())
    yaml = tmp_path / "schema.yaml"
    yaml.write_text("public: true\ncolumns:\n  age: {min: 0, max: 120}\n")
    pub = CliRunner().invoke(app, ["fit", str(data), "--model", "dp", "--domain", "public", "--schema", str(yaml),
                                   "-o", str(tmp_path / "p.npz")])
    assert pub.exit_code == 0, pub.output
    assert "declared public: age, segment, income, flag" in " ".join(pub.output.split())
    assert load_synthesizer(tmp_path / "p.npz").schema_["age"].max == 120


# -- DP-SGD ---------------------------------------------------------------------------------------------
torch = pytest.importorskip("torch")


def _vae(**kw):
    from synthloop.synthesizers import VAESynthesizer

    return VAESynthesizer(epochs=1, batch_size=200, embedding_dim=4, compress_dims=(8,), decompress_dims=(8,),
                          epsilon=3.0, delta=1e-5, random_state=0, **kw)


def test_two_dp_sgd_fits_with_the_same_seed_give_different_weights():
    pytest.importorskip("opacus")
    torch.set_num_threads(1)
    df = _table(600)
    a, b = _vae().fit(df, schema=_public(df)), _vae().fit(df, schema=_public(df))
    wa, wb = a.decoder_.state_dict(), b.decoder_.state_dict()
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


def test_the_dp_sgd_vae_pays_for_its_domain_and_stores_no_planted_value(planted, tmp_path):
    pytest.importorskip("opacus")
    torch.set_num_threads(1)
    with mechanisms._seeded_noise_for_tests(0):  # deterministic domain draw, as in the MST test above
        m = _vae().fit(planted)
    g = m.privacy_guarantee()
    assert g["epsilon"] <= 3.0 * 1.01 and set(g["parts"]) == {"domain", "training"}
    assert g["domain"]["public"] == [] and "no column declared public" in g["statement"]
    assert _holds_planted(m.save(tmp_path / "vae.npz")) == []
    out = m.sample(5000, seed=0)
    assert not (out["native_country"] == "ZZ_SECRET").any() and out["age"].max() < 150
    with pytest.raises(PrivacyError, match="refused"):
        _vae(domain="public").fit(planted)
