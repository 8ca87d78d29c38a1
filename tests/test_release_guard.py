"""Models without a formal guarantee release no rare value: no category held by fewer than k rows and
no exact number held by fewer than k rows, in their samples or anywhere in their model file (issue 12,
finding 3). Small tables, few epochs."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthloop.schema import ColumnKind, infer_schema
from synthloop.synthesizers import BaseSynthesizer, synthesizer_class
from synthloop.synthesizers.protection import ProtectionFilter
from synthloop.transforms import TableCodec
from synthloop.transforms.release import nice_between, rank_groups, release_domain, safe_bounds, safe_quantiles

K = 5
SECRET = "ZZ_SECRET"
SMALL = {
    "copula": {},
    "autoregressive": dict(epochs=2, hidden=32, batch_size=128, n_threads=1),
    "gan": dict(epochs=1, batch_size=100, embedding_dim=16, generator_dim=(32,), discriminator_dim=(32,), max_modes=4),
    "vae": dict(epochs=1, batch_size=100, embedding_dim=8, compress_dims=(32,), decompress_dims=(32,), max_modes=4),
}


def _table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A rare string (once), a value seen twice, an income outlier, integers and dates with rare values.
    Columns live on disjoint ranges (ids ~1e3, scores ~3e3, day numbers ~2e4, incomes > 5e4, seconds
    ~1.5e9), so a round cut of one column cannot collide with a rare value of another."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    city[7] = SECRET
    city[8] = city[9] = "tiny2"
    income = np.round(50_000 + rng.lognormal(10.5, 0.5, n), 2)
    income[3] = 9_999_999.99
    income[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "customer_id": np.arange(1001, 1001 + n),
        "city": city, "income": income, "score": 3000 + rng.integers(0, 150, n),
        "joined": pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D"),
        "flag": rng.random(n) < 0.3,
    })


def _rare(df: pd.DataFrame, k: int = K) -> tuple[set[float], set[str]]:
    """Every number held by fewer than k rows (datetimes as seconds and as day numbers) and every such string."""
    schema = infer_schema(df)
    codec = TableCodec(schema)
    nums: set[float] = set()
    strs: set[str] = set()
    for c in schema.columns:
        if c.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME, ColumnKind.ID):
            x = pd.to_numeric(df[c.name], errors="coerce").to_numpy(float) if c.kind == ColumnKind.ID else codec.encode_column(c, df[c.name])
            x = x[np.isfinite(x)]
            forms = [x, np.floor(x / 86400)] if c.kind == ColumnKind.DATETIME else [x]
            for f in forms:
                u, cnt = np.unique(f, return_counts=True)
                nums |= set(u[cnt < k].tolist())
        elif c.kind == ColumnKind.CATEGORICAL:
            vc = df[c.name].value_counts()
            strs |= set(map(str, vc[vc < k].index))
    return nums, strs


def _numbers(obj, out: list[float]) -> list[float]:
    if isinstance(obj, dict):
        for v in obj.values():
            _numbers(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _numbers(v, out)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append(float(obj))
    return out


def _leaks(path, nums: set[float], strs: set[str]) -> dict[str, list]:
    """Rare values found in the decompressed model file: header JSON (numbers and text) and every array."""
    rare = np.array(sorted(nums))
    found: dict[str, list] = {}
    with np.load(path, allow_pickle=False) as npz:
        text = str(npz["__header__"])
        header = set(_numbers(json.loads(text), [])) & nums
        if header:
            found["header"] = sorted(header)[:5]
        hits = [s for s in strs if s in text]
        if hits:
            found["strings"] = hits
        for key in npz.files:
            a = npz[key]
            if key != "__header__" and a.dtype.kind in "fiub":
                same = np.intersect1d(a.astype(float).ravel(), rare)
                if same.size:
                    found[key] = same[:5].tolist()
            elif key != "__header__":
                found[key] = [f"unexpected array of dtype {a.dtype}"]
    return found


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


@pytest.fixture(scope="module")
def ar(table) -> BaseSynthesizer:
    return synthesizer_class("autoregressive")(**SMALL["autoregressive"]).fit(table)


def test_the_table_really_has_rare_values(table):
    nums, strs = _rare(table)
    assert {SECRET, "tiny2"} <= strs and 9_999_999.99 in nums and len(nums) > 300


@pytest.mark.parametrize("name", ["copula", "autoregressive", "gan", "vae"])
def test_no_model_file_holds_a_rare_value_and_no_sample_a_rare_string(name, table, ar, tmp_path):
    model = ar if name == "autoregressive" else synthesizer_class(name)(**SMALL[name]).fit(table)
    path = model.save(tmp_path / f"{name}.npz")
    nums, strs = _rare(table)
    assert _leaks(path, nums, strs) == {}
    out = BaseSynthesizer.load(path).sample(3000, seed=1)
    assert not out["city"].isin(list(strs)).any()
    assert set(out["city"].dropna()) <= {"north", "south", "east", "west", "other"}
    assert out["income"].max() < 9_999_999.99 and out["income"].max() <= np.sort(table["income"].dropna())[-K]


def test_the_autoregressive_protected_token_decodes_to_the_label_never_to_the_rare_string(ar, table):
    out = ar.sample(20000, seed=0)
    assert not out["city"].isin([SECRET, "tiny2"]).any()
    assert (out["city"] == "other").any()  # the protected token is drawn, and shows as the label
    tok = ar.tokenizers_[[c.name for c in ar.columns_].index("city")]
    assert [ar.schema_["city"].categories[i] for i in tok.rare_] == ["other"]


def test_a_model_file_holds_no_exact_real_number_unless_k_rows_hold_it(table, tmp_path):
    model = synthesizer_class("copula")().fit(table)
    real = table["income"].dropna().to_numpy()
    counts = pd.Series(real).value_counts()
    with np.load(model.save(tmp_path / "m.npz"), allow_pickle=False) as npz:
        stored = np.concatenate([npz[k].ravel() for k in npz.files if k.endswith("_quantiles")])
    shared = np.intersect1d(stored, real)
    assert all(counts[v] >= K for v in shared)  # only frequent values may be stored exactly (none here)
    syn = model.sample(5000, seed=0)["income"].dropna()
    assert syn.isin(real).mean() < 0.05  # was ~0.9: the margins no longer replay the training values


def test_the_label_is_configurable_and_the_guard_can_be_switched_off(table):
    m = synthesizer_class("copula")(rare_label="(rare)").fit(table)
    assert "(rare)" in m.schema_["city"].categories and "(rare)" in set(m.sample(5000, seed=0)["city"])
    assert m.schema_["city"].notes[-1] == "2 categories held by fewer than 5 rows released as '(rare)'"
    gone = synthesizer_class("copula")(rare_label=None).fit(table)
    assert gone.schema_["city"].categories == ["north", "south", "east", "west"]
    off = synthesizer_class("copula")(privacy_k=0).fit(table)
    assert SECRET in off.schema_["city"].categories and off.schema_["income"].max == 9_999_999.99


def test_released_domain_keeps_frequent_values_exact_and_clips_outliers(table):
    schema, data = release_domain(infer_schema(table), table, K)
    assert (data["city"] == "other").sum() == 3 and set(schema["city"].categories) == {"north", "south", "east", "west", "other"}
    assert schema["flag"].categories == infer_schema(table)["flag"].categories  # booleans are a public domain
    inc = np.sort(table["income"].dropna().to_numpy())
    assert inc[K - 1] < schema["income"].min < inc[K] and inc[-K - 1] < schema["income"].max < inc[-K]
    assert schema["customer_id"].min == 1000.0 and schema["customer_id"].max is None
    zeros = np.r_[np.zeros(50), np.arange(1.0, 51.0)]
    assert safe_bounds(zeros, K) == (0.0, 45.5)  # a frequent minimum stays exact; 46..50 lie beyond the top


def test_nice_between_is_strictly_inside_and_round():
    a = np.array([5.0, 95.0, -5.0, 12345.67, 0.123456, 17.0, 99.9999])
    b = np.array([6.0, 103.0, 3.0, 12400.0, 0.123457, 25.0, 200.0])
    c = nice_between(a, b)
    assert ((c > a) & (c < b)).all()
    assert c.tolist()[:4] == [5.5, 100.0, 0.0, 12350.0] and c[5] == 20.0 and c[6] == 150.0
    assert nice_between(1578009600.0, 1578182400.0, 86400.0) % 86400 == 0  # dates prefer a midnight


def test_groups_and_quantile_knots_hold_k_rows():
    rng = np.random.default_rng(3)
    v = np.sort(np.round(rng.normal(size=203), 3))
    lab = rank_groups(v, 64, K)
    assert np.bincount(lab).min() >= K and np.all(np.diff(lab) >= 0)
    q = safe_quantiles(v, 4097, K)
    assert q.size == 203 // K + 1 and np.all(np.diff(q) >= 0)
    assert not np.isin(q, v).any()  # every value is unique here: no knot may be one


def test_models_saved_before_the_guard_still_load(table, tmp_path):
    """A file without the new parameters (as written before) loads and samples as saved."""
    model = synthesizer_class("copula")(privacy_k=0).fit(table)
    path = model.save(tmp_path / "old.npz")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays.pop("__header__")))
    for key in ("privacy_k", "rare_label"):
        header["params"].pop(key)
    old = tmp_path / "older.npz"
    np.savez_compressed(old, __header__=np.array(json.dumps(header)), **arrays)
    loaded = BaseSynthesizer.load(old)
    assert SECRET in loaded.schema_["city"].categories  # the old file's content is what it is
    pd.testing.assert_frame_equal(loaded.sample(200, seed=4).drop(columns="customer_id"),
                                  model.sample(200, seed=4).drop(columns="customer_id"))


def test_protection_filter_catches_a_copied_rare_row_despite_an_outlier():
    """Quantile-rank scaling and every category: an outlier no longer squashes the threshold to ~0."""
    rng = np.random.default_rng(0)
    n = 1200
    x = np.round(rng.normal(size=n), 2)
    df = pd.DataFrame({"x": x, "y": np.round(x + rng.normal(0, 0.5, n), 2),
                       "c": rng.choice([f"k{i}" for i in range(30)], n), "flag": rng.random(n) < 0.5})
    df.loc[0, ["x", "y", "c"]] = [2.31, -1.57, SECRET]  # a rare row
    df.loc[1, "x"] = 1e6  # one outlier
    train, hold = df.iloc[:900].reset_index(drop=True), df.iloc[900:].reset_index(drop=True)
    f = ProtectionFilter().fit(train, hold)
    near = train.iloc[[0]].assign(y=train.loc[0, "y"] + 0.03)  # the rare row, barely changed
    assert f.threshold_ > 1e-3 and f.too_close(near).all()
    assert f.too_close(train.iloc[[0]]).all()  # an exact copy, of course
    moved = train.iloc[[0]].assign(c="k3")  # the same numbers without the rare value: one category apart
    assert f.distances(moved)[0] > f.distances(near)[0]
    assert f.too_close(hold).mean() == pytest.approx(0.05, abs=0.02)
