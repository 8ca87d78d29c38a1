"""Databases: metadata detection and checks, the multi-table and sequential synthesizer on a tiny
database with a known law, SDMetrics agreement of the multi-table figures, and the CLI on folders."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthloop.errors import ConditionError, ModelFileError
from synthloop.evaluate.multitable import evaluate_database, multi_table_quality
from synthloop.schema.metadata import Metadata, MetadataError, detect_metadata
from synthloop.synthesizers.relational import RelationalSynthesizer
from tests.conftest import one_line_error, run_cli

GAP_DAYS = 7


def shop(seed: int = 0, n: int = 300) -> dict[str, pd.DataFrame]:
    """Users (rich ones have ~4 orders, poor ones ~1; rich orders cost ~1000, poor ones ~100) and each
    user's weekly payments (a running balance)."""
    rng = np.random.default_rng(seed)
    wealth = rng.choice(["poor", "rich"], size=n)
    users = pd.DataFrame({"user_id": np.arange(1, n + 1), "wealth": wealth, "age": rng.integers(20, 70, n)})
    size = np.where(wealth == "rich", rng.poisson(4, n), rng.poisson(1, n))
    pid = np.repeat(users.user_id.to_numpy(), size)
    rich = np.repeat(wealth == "rich", size)
    amount = np.where(rich, rng.normal(1000, 100, pid.size), rng.normal(100, 10, pid.size)).round(2)
    orders = pd.DataFrame({"order_id": np.arange(pid.size) + 1, "user_id": pid, "amount": amount})
    k = rng.integers(0, 8, n)
    uid = np.repeat(users.user_id.to_numpy(), k)
    step = np.arange(uid.size) - np.repeat(np.r_[0, np.cumsum(k)[:-1]], k)
    start = np.repeat(rng.integers(0, 30, n), k)
    value = rng.integers(1, 50, uid.size).astype(float)
    balance = pd.Series(value).groupby(uid).cumsum().to_numpy()
    dates = (pd.Timestamp("2020-01-01") + pd.to_timedelta(start + GAP_DAYS * step, unit="D")).strftime("%Y-%m-%d")
    events = pd.DataFrame({"event_id": np.arange(uid.size) + 1, "user_id": uid, "date": dates, "value": value,
                           "balance": balance})
    return {"users": users, "orders": orders, "events": events}


def shop_metadata(db: dict[str, pd.DataFrame]) -> Metadata:
    meta = detect_metadata(db)
    meta.tables["events"].sequence_key = "user_id"
    meta.tables["events"].order_by = "date"
    return meta.check()


@pytest.fixture(scope="module")
def db() -> dict[str, pd.DataFrame]:
    return shop()


@pytest.fixture(scope="module")
def fitted(db):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return RelationalSynthesizer(epochs=40, min_steps=0, random_state=0).fit(db, shop_metadata(db))


@pytest.fixture(scope="module")
def synth_db(fitted):
    return fitted.sample(seed=1)


# -- metadata -----------------------------------------------------------------------------------------
def test_metadata_is_detected_from_names_uniqueness_and_containment(db):
    meta = detect_metadata(db)
    assert {t: m.primary_key for t, m in meta.tables.items()} == {"users": "user_id", "orders": "order_id",
                                                                   "events": "event_id"}
    assert {(r.parent, r.child, r.child_key) for r in meta.relationships} == {
        ("users", "orders", "user_id"), ("users", "events", "user_id")}


def test_metadata_round_trips_through_yaml(db, tmp_path):
    meta = shop_metadata(db)
    meta.relationships[0].on_orphans = "null"
    meta.save(tmp_path / "meta.yaml")
    back = Metadata.load(tmp_path / "meta.yaml")
    assert back == meta and back.to_yaml() == meta.to_yaml()


def test_text_keys_and_orphans_are_proposed_with_on_orphans_null():
    airports = pd.DataFrame({"faa": ["EWR", "JFK", "LGA", "BOS"], "alt": [1, 2, 3, 4]})
    flights = pd.DataFrame({"origin": ["EWR", "JFK"] * 10, "dest": ["BOS"] * 19 + ["XXX"], "delay": range(20)})
    meta = detect_metadata({"airports": airports, "flights": flights})
    rels = {r.child_key: r for r in meta.relationships}
    assert rels["origin"].parent == "airports" and rels["origin"].on_orphans == "error"
    assert rels["dest"].on_orphans == "null"


def _broken(db, case):
    """A copy of the shop database and its metadata, broken the way `case` names."""
    db = {k: v.copy() for k, v in db.items()}
    meta = shop_metadata(db)
    if case == "duplicate_key":
        db["users"].loc[1, "user_id"] = 1
    elif case == "orphans":
        db["orders"].loc[:2, "user_id"] = 99_999
    elif case == "cycle":
        meta.relationships.append(meta.relationships[0].model_copy(
            update={"parent": "orders", "parent_key": "order_id", "child": "users", "child_key": "age"}))
    elif case == "no_table":
        meta.relationships[0].parent = "buyers"
    return db, meta


@pytest.mark.parametrize("case,message", [
    ("duplicate_key", "table 'users' column 'user_id': primary key is not unique"),
    ("orphans", "table 'orders' column 'user_id': 3 of"),
    ("cycle", "relationships users -> orders -> users: the relationships form a cycle"),
])
def test_bad_metadata_is_one_line_naming_table_and_column(db, case, message):
    db, meta = _broken(db, case)
    with pytest.raises(MetadataError, match=message):
        meta.validate(db)


def test_timezone_aware_dates_are_inferred():
    from synthloop.schema import infer_schema

    df = pd.DataFrame({"t": ["2013-01-01T06:00:00Z", "2013-01-01T07:00:00Z", "2013-01-02T07:00:00Z"] * 5})
    col = infer_schema(df)["t"]
    assert col.kind.value == "datetime" and col.max - col.min == 90_000


# -- the synthesizer ----------------------------------------------------------------------------------
def test_every_foreign_key_points_at_a_generated_parent(synth_db):
    users = synth_db["users"]
    for t in ("orders", "events"):
        assert synth_db[t]["user_id"].isin(users["user_id"]).all()
        assert synth_db[t].columns.tolist() == shop()[t].columns.tolist()
    assert synth_db["orders"]["order_id"].is_unique


def test_child_count_follows_the_parent_column(synth_db):
    users, orders = synth_db["users"], synth_db["orders"]
    count = orders["user_id"].value_counts().reindex(users["user_id"]).fillna(0).to_numpy()
    rich = (users["wealth"] == "rich").to_numpy()
    assert 3.0 < count[rich].mean() < 5.0 and 0.5 < count[~rich].mean() < 1.6  # law: 4 and 1
    assert (count == 0).mean() > 0.1  # parents without children are kept


def test_child_value_follows_the_parent_value(synth_db):
    m = synth_db["orders"].merge(synth_db["users"], on="user_id")
    means = m.groupby("wealth")["amount"].median()
    assert 850 < means["rich"] < 1150 and means["poor"] < 250  # law: 1000 and 100


def test_sequences_keep_gaps_order_and_running_balance(synth_db):
    ev = synth_db["events"]
    d = pd.to_datetime(ev["date"])
    gaps = d.groupby(ev["user_id"]).diff().dt.days.dropna()
    assert (gaps >= 0).all()
    assert (gaps == GAP_DAYS).mean() > 0.8
    bal = ev.groupby("user_id")["balance"].diff().dropna()
    step = ev.loc[bal.index, "value"]
    assert np.allclose(bal.abs(), step)


def test_same_seed_same_database_and_save_load_round_trip(fitted, synth_db, tmp_path):
    again = fitted.sample(seed=1)
    for t in synth_db:
        pd.testing.assert_frame_equal(again[t], synth_db[t])
    fitted.save(tmp_path / "db.npz")
    loaded = RelationalSynthesizer.load(tmp_path / "db.npz")
    back = loaded.sample(seed=1)
    for t in synth_db:
        pd.testing.assert_frame_equal(back[t], synth_db[t])


def test_scale_and_conditions_across_tables(fitted):
    half = fitted.sample(scale=0.5, seed=2)
    assert len(half["users"]) == 150
    rich = fitted.sample(seed=3, conditions={"users": {"wealth": "rich"}})
    assert (rich["users"]["wealth"] == "rich").all()
    assert rich["orders"]["amount"].median() > 800  # children follow the conditioned parent
    big = fitted.sample(seed=3, conditions={"orders": {"amount": (900.0, 1100.0)}})
    assert big["orders"]["amount"].between(900, 1100).all() and len(big["orders"]) > 0
    with pytest.raises(ConditionError, match="no learned column 'user_id'"):
        fitted.sample(conditions={"orders": {"user_id": 1}})


def test_sample_rows_draws_new_entities_with_conditioned_children(fitted):
    out = fitted.sample_rows("users", 40, {"orders": {"amount": (900.0, 1100.0)}}, seed=4)
    users, orders = out["users"], out["orders"]
    assert len(users) == 40 and orders["user_id"].isin(users["user_id"]).all()
    assert set(users["user_id"]) <= set(orders["user_id"])  # every new user has at least one such order
    assert orders["amount"].between(900, 1100).all()
    with pytest.raises(ConditionError, match="not below"):
        fitted.sample_rows("orders", 5, {"users": {"wealth": "rich"}})


def test_sample_for_writes_the_history_of_given_entities(fitted):
    people = pd.DataFrame({"wealth": ["rich", "poor"] * 10, "age": [30] * 20})
    out = fitted.sample_for("users", people, seed=5)
    assert len(out["users"]) == 20 and set(out) == {"users", "orders", "events"}
    assert out["orders"]["user_id"].isin(out["users"]["user_id"]).all()
    assert out["events"]["user_id"].isin(out["users"]["user_id"]).all()


def test_a_damaged_database_model_is_one_error(fitted, tmp_path):
    path = tmp_path / "db.npz"
    fitted.save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="bad.npz"):
        RelationalSynthesizer.load(tmp_path / "bad.npz")


# -- evaluation ---------------------------------------------------------------------------------------
def test_multi_table_quality_agrees_with_sdmetrics(db):
    sdmetrics = pytest.importorskip("sdmetrics.reports.multi_table")
    meta = shop_metadata(db)
    other = shop(seed=5, n=250)
    ours = multi_table_quality(db, other, meta)
    schemas = {t: meta.table_schema(t, db[t]) for t in meta.tables}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = sdmetrics.QualityReport()
        rep.generate(db, other, meta.to_sdv_dict(schemas), verbose=False)
    props = dict(zip(rep.get_properties()["Property"], rep.get_properties()["Score"]))
    assert abs(ours["quality_score"] - rep.get_score()) < 0.01
    for ours_key, theirs in [("column_shapes", "Column Shapes"), ("column_pair_trends", "Column Pair Trends"),
                             ("cardinality", "Cardinality"), ("intertable_trends", "Intertable Trends")]:
        assert abs(ours[ours_key] - props[theirs]) < 0.01, ours_key


def test_database_figures_on_the_synthetic_shop(db, synth_db):
    fig = evaluate_database(db, synth_db, shop_metadata(db))
    assert fig["referential_integrity"] == 1.0
    assert fig["cardinality"] > 0.85 and fig["quality_score"] > 0.8
    seq = fig["sequences"]["events"]
    assert seq["order_violations"] == 0.0 and seq["gap_ks"] > 0.8 and seq["length_ks"] > 0.8


# -- CLI ----------------------------------------------------------------------------------------------
def _write(db: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir()
    for k, v in db.items():
        v.to_csv(folder / f"{k}.csv", index=False)
    return folder


def test_cli_fits_samples_and_evaluates_a_folder(db, tmp_path):
    real = _write(db, tmp_path / "real")
    meta = tmp_path / "meta.yaml"
    r = run_cli("schema", str(real), "-o", str(meta))
    assert r.returncode == 0, r.stderr
    assert Metadata.load(meta).tables["users"].primary_key == "user_id"
    shop_metadata(db).save(meta)
    r = run_cli("fit", str(real), "--metadata", str(meta), "-o", str(tmp_path / "m.npz"), "--epochs", "2")
    assert r.returncode == 0, r.stderr
    r = run_cli("sample", str(tmp_path / "m.npz"), "--scale", "0.5", "-o", str(tmp_path / "out"), "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["events.csv", "orders.csv", "users.csv"]
    assert len(pd.read_csv(tmp_path / "out" / "users.csv")) == 150
    r = run_cli("evaluate", str(real), str(tmp_path / "out"), "--metadata", str(meta), "--json", str(tmp_path / "f.json"))
    assert r.returncode == 0, r.stderr
    assert "cardinality" in r.stdout and "referential_integrity" in r.stdout
    r = run_cli("report", str(real), str(tmp_path / "out"), "--metadata", str(meta), "-o", str(tmp_path / "r.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "r.html").read_text()
    assert "orders.user_id -&gt; users.user_id" in page and "fig-card-0" in page and "Sequences" in page


@pytest.mark.parametrize("case,message", [
    ("duplicate_key", "table 'users' column 'user_id': primary key is not unique"),
    ("orphans", "table 'orders' column 'user_id': 3 of"),
    ("cycle", "cycle"),
    ("no_table", "no table 'buyers'"),
])
def test_cli_refuses_bad_metadata_in_one_line_and_writes_nothing(db, tmp_path, case, message):
    db, meta = _broken(db, case)
    real = _write(db, tmp_path / "real")
    (tmp_path / "meta.yaml").write_text(meta.model_dump_json() if case in ("cycle", "no_table") else meta.to_yaml())
    r = run_cli("fit", str(real), "--metadata", str(tmp_path / "meta.yaml"), "-o", str(tmp_path / "m.npz"))
    assert message in one_line_error(r)
    assert not (tmp_path / "m.npz").exists()


def test_per_table_privacy_against_held_out_entities(db):
    from synthloop.evaluate.multitable import split_entities, table_privacy

    meta = shop_metadata(db)
    train, hold = split_entities(db, meta, "users", share=0.3, seed=0)
    assert not set(train["users"]["user_id"]) & set(hold["users"]["user_id"])
    assert set(hold["orders"]["user_id"]) <= set(hold["users"]["user_id"])
    fresh = shop(seed=9)
    dcr = table_privacy(train, fresh, hold, meta)
    assert set(dcr) == {"users", "orders", "events"} and all(0.2 < v < 0.8 for v in dcr.values())


def test_cli_evaluate_a_database_gives_dcr_share_against_held_out_entities(db, tmp_path):
    import json

    from synthloop.evaluate.multitable import split_entities

    meta = shop_metadata(db)
    train, hold = split_entities(db, meta, "users", share=0.3, seed=0)
    real, held, synth = _write(train, tmp_path / "real"), _write(hold, tmp_path / "hold"), _write(shop(seed=9), tmp_path / "syn")
    meta.save(tmp_path / "meta.yaml")
    r = run_cli("evaluate", str(real), str(synth), "--metadata", str(tmp_path / "meta.yaml"), "--holdout", str(held),
                "--json", str(tmp_path / "f.json"))
    assert r.returncode == 0, r.stderr
    assert "users.dcr_share" in r.stdout
    dcr = json.loads((tmp_path / "f.json").read_text())["dcr_share"]
    assert set(dcr) == {"users", "orders", "events"} and all(0.2 < v < 0.8 for v in dcr.values())
    r = run_cli("evaluate", str(real), str(synth), "--metadata", str(tmp_path / "meta.yaml"), "--holdout", str(tmp_path / "f.json"))
    assert r.returncode == 2 and "folder of the held-out entities' tables" in one_line_error(r)


def test_drawn_child_counts_keep_their_rank_and_take_the_learned_marginal():
    from synthloop.synthesizers.relational import _count_quantiles, _to_quantiles

    rng = np.random.default_rng(0)
    real = rng.poisson(3, 2000).astype(float)
    q = _count_quantiles(real, k=5)
    drawn = rng.normal(0, 1, 1500)  # any scale and shape: only the order counts
    out = _to_quantiles(drawn, q, rng)
    assert np.all(np.diff(out[np.argsort(drawn)]) >= 0)
    assert abs(out.mean() - real.mean()) < 0.05 and abs((out == 0).mean() - (real == 0).mean()) < 0.01
    assert out.max() <= np.sort(real)[-5]  # the largest counts are not stored


def test_secondary_keys_go_to_near_parents_within_their_counts():
    from synthloop.synthesizers.relational import _capacitated_nearest

    rng = np.random.default_rng(0)
    parents = rng.normal(size=(60, 3))
    cap = rng.integers(0, 5, 60)
    truth = rng.permutation(np.repeat(np.arange(60), cap))[: cap.sum() - 4]
    children = parents[truth] + rng.normal(0, 0.02, (truth.size, 3))
    got = _capacitated_nearest(children, parents, cap, rng)
    assert np.all(np.bincount(got, minlength=60) <= cap)
    assert (got == truth).mean() > 0.95


def test_histories_that_overrun_the_learned_range_start_earlier_keeping_their_gaps():
    from synthloop.synthesizers.relational import _fit_window

    start = np.array([0.0, 90.0, 50.0])
    gap = np.array([0, 10, 10, 0, 5, 5, 0, 60, 60], dtype=float)  # the third is longer than the whole range
    ent = np.repeat(np.arange(3), 3)
    s2, g2 = _fit_window(start, gap, ent, 3, 0.0, 100.0, 1.0)
    assert s2[0] == 0 and s2[1] == 90 and s2[2] == 0
    np.testing.assert_array_equal(g2[:6], gap[:6])
    assert g2[6:].sum() <= 100 and np.all(g2[7:] > 0)


def test_small_parent_tables_keep_the_shape_of_their_child_counts_coarsened():
    from synthloop.synthesizers.relational import _coarse_counts, _to_quantiles

    real = np.array([32, 54, 248, 601, 685, 1270, 2545, 4240, 5162, 9757, 11560, 14420, 47060, 59545, 54635, 0.0])
    q = _coarse_counts(real)
    assert q == sorted(q) and len(q) == real.size and q[0] == 0 and q[-1] == 60000
    assert np.all(np.abs(np.array(q) - np.sort(real)) <= 0.05 * np.sort(real) + 0.5)  # two significant digits
    out = _to_quantiles(np.random.default_rng(1).normal(size=16), q, np.random.default_rng(0))
    assert sorted(out) == q  # one drawn parent per stored count: the real shape, no exact large count stored


def test_training_steps_of_a_table_grow_with_its_rows_up_to_min_steps():
    from synthloop.synthesizers.relational import MIN_STEPS_FLOOR, RelationalSynthesizer

    rs = RelationalSynthesizer(batch_size=512)
    steps = []
    for n in (300, 2000, 8000, 40000, 400000):
        m = rs._model(0, None, n_rows=n)
        steps.append(m.epochs * max(1, math.ceil(n * 0.9 / 512)))
    assert steps[0] == MIN_STEPS_FLOOR and steps == sorted(steps)  # a tiny subset fits in a few hundred steps
    assert steps[1] < 1000 and steps[3] >= rs.min_steps  # large tables keep at least min_steps (epochs: 24)


# -- composite keys -----------------------------------------------------------------------------------
def stations_db(seed: int = 0, days: int = 12) -> dict[str, pd.DataFrame]:
    """Stations, hourly readings keyed by (station, day, hour) (warmer at noon, warmer at station S2),
    and trips that point at the reading of their hour by the same three columns (more trips when warm)."""
    rng = np.random.default_rng(seed)
    stations = pd.DataFrame({"station": ["S1", "S2", "S3"], "altitude": [10, 250, 40]})
    grid = pd.MultiIndex.from_product([stations.station, range(1, days + 1), range(0, 24, 3)],
                                      names=["station", "day", "hour"]).to_frame(index=False)
    temp = 10 + 8 * np.sin(np.pi * grid.hour / 24) + 5 * (grid.station == "S2") + rng.normal(0, 1, len(grid))
    readings = grid.assign(temp=temp.round(1))
    k = rng.poisson(np.clip(readings.temp.to_numpy() / 6, 0.2, None))
    trips = readings.loc[np.repeat(np.arange(len(readings)), k), ["station", "day", "hour"]].reset_index(drop=True)
    trips.insert(0, "trip_id", np.arange(len(trips)) + 1)
    trips["minutes"] = rng.gamma(4, 5, len(trips)).round(1)
    return {"stations": stations, "readings": readings, "trips": trips}


COMPOSITE_YAML = """
tables:
  stations: {primary_key: station}
  readings: {primary_key: [station, day, hour]}
  trips: {primary_key: trip_id}
relationships:
  - {parent: stations, parent_key: station, child: readings, child_key: station}
  - {parent: stations, parent_key: station, child: trips, child_key: station}
  - {parent: readings, parent_key: [station, day, hour], child: trips, child_key: [station, day, hour]}
"""


def test_composite_keys_round_trip_and_are_detected_from_shared_columns(tmp_path):
    sdb = stations_db()
    meta = Metadata.from_yaml(COMPOSITE_YAML)
    meta.validate(sdb)
    meta.save(tmp_path / "m.yaml")
    back = Metadata.load(tmp_path / "m.yaml")
    assert back == meta and back.tables["readings"].primary_key == ["station", "day", "hour"]
    assert meta.key_columns("readings") == ["station"]  # day and hour are data; only their combination is a key
    assert set(meta.key_columns("trips")) == {"trip_id", "station", "day", "hour"}
    found = detect_metadata(sdb)
    assert found.tables["readings"].primary_key == ["station", "day", "hour"]
    assert any(r.composite and r.child == "trips" and r.parent == "readings" for r in found.relationships)


@pytest.mark.parametrize("case,message", [
    ("duplicate", "table 'readings' column '(station, day, hour)': primary key is not unique"),
    ("orphans", "table 'trips' column '(station, day, hour)': 2 of"),
    ("length", "child_key has 2 columns but parent_key has 3"),
    ("not_implied", "column 'trips.station' is a foreign key to 'stations' and part of"),
])
def test_bad_composite_keys_are_one_line_naming_table_and_columns(case, message):
    sdb = stations_db()
    text = COMPOSITE_YAML
    if case == "duplicate":
        sdb["readings"].loc[1, ["day", "hour"]] = sdb["readings"].loc[0, ["day", "hour"]].to_numpy()
    elif case == "orphans":
        sdb["trips"].loc[:1, "day"] = 99
    elif case == "length":
        text = text.replace("child_key: [station, day, hour]", "child_key: [station, day]")
    elif case == "not_implied":
        text = text.replace("  - {parent: stations, parent_key: station, child: readings, child_key: station}\n", "")
    with pytest.raises(MetadataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Metadata.from_yaml(text).validate(sdb)


@pytest.fixture(scope="module")
def composite_fit():
    sdb = stations_db()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RelationalSynthesizer(epochs=30, min_steps=0, random_state=0).fit(sdb, Metadata.from_yaml(COMPOSITE_YAML))
    return sdb, model


def test_composite_keys_are_unique_and_every_composite_foreign_key_points_at_a_parent(composite_fit, tmp_path):
    from synthloop.evaluate.multitable import referential_integrity

    sdb, model = composite_fit
    meta = Metadata.from_yaml(COMPOSITE_YAML)
    out = model.sample(seed=3)
    assert list(out["readings"].columns) == list(sdb["readings"].columns)
    assert list(out["trips"].columns) == list(sdb["trips"].columns)
    assert not out["readings"].duplicated(["station", "day", "hour"]).any()
    assert len(out["readings"]) >= 0.9 * len(sdb["readings"])  # repeats moved to free hours, few merged
    assert set(referential_integrity(out, meta).values()) == {1.0}
    meta.validate(out)  # the synthetic database satisfies its own metadata
    # the trip's station is the reading's station: warm readings (S2, noon) draw more trips, as in the data
    per = out["trips"].merge(out["readings"], on=["station", "day", "hour"])
    assert per.temp.mean() > out["readings"].temp.mean()
    model.save(tmp_path / "c.npz")
    again = RelationalSynthesizer.load(tmp_path / "c.npz").sample(seed=3)
    for t in out:
        pd.testing.assert_frame_equal(out[t], again[t])


def test_composite_keys_are_scored_on_their_surrogates_as_sdmetrics(composite_fit):
    from sdmetrics.reports.multi_table import QualityReport

    sdb, model = composite_fit
    meta = Metadata.from_yaml(COMPOSITE_YAML)
    out = model.sample(seed=1)
    ours = multi_table_quality(sdb, out, meta)
    assert "trips.(station, day, hour) -> readings.(station, day, hour)" in set(ours["relationships"]["relationship"])
    sur = meta.surrogate()
    real_s, synth_s = meta.to_surrogate(sdb), meta.to_surrogate(out)
    schemas = {t: sur.table_schema(t, real_s[t]) for t in sur.tables}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = QualityReport()
        rep.generate(real_s, synth_s, sur.to_sdv_dict(schemas), verbose=False)
    assert abs(ours["quality_score"] - rep.get_score()) < 0.01


@pytest.mark.slow
def test_cli_fits_and_samples_a_folder_with_composite_keys(tmp_path):
    sdb = stations_db()
    folder = _write(sdb, tmp_path / "db")
    (tmp_path / "meta.yaml").write_text(COMPOSITE_YAML)
    assert run_cli("fit", str(folder), "--metadata", str(tmp_path / "meta.yaml"), "--epochs", "5",
                   "-o", str(tmp_path / "m.npz")).returncode == 0
    assert run_cli("sample", str(tmp_path / "m.npz"), "-o", str(tmp_path / "out")).returncode == 0
    res = run_cli("evaluate", str(folder), str(tmp_path / "out"), "--metadata", str(tmp_path / "meta.yaml"))
    assert res.returncode == 0, res.output
    bad = COMPOSITE_YAML.replace("child_key: [station, day, hour]", "child_key: [station, day]")
    (tmp_path / "bad.yaml").write_text(bad)
    res = run_cli("fit", str(folder), "--metadata", str(tmp_path / "bad.yaml"), "-o", str(tmp_path / "x.npz"))
    assert "child_key has 2 columns but parent_key has 3" in one_line_error(res)
    assert not (tmp_path / "x.npz").exists()


def test_repeated_generated_keys_move_to_the_nearest_free_cell_of_their_grid():
    from synthloop.schema.metadata import unique_composite

    rng = np.random.default_rng(0)
    n = 2 * 10 * 24 - 20  # 20 cells of the (day, hour) grid stay free per station pair
    df = pd.DataFrame({"station": rng.choice(["A", "B"], n), "day": rng.integers(1, 11, n), "hour": rng.integers(0, 24, n),
                       "__key": np.arange(n)})
    assert df.duplicated(["station", "day", "hour"]).sum() > 100
    out, merged = unique_composite(df, ["station", "day", "hour"], ["station"])
    assert not out.duplicated(["station", "day", "hour"]).any()
    assert out.hour.between(0, 23).all() and out.day.between(1, 10).all()
    kept = len(out) + (0 if merged is None else len(merged))
    assert kept == n and len(out) >= n - 25  # nearly every repeat found a free hour; the rest merged


# -- calibration of a whole-database sample -----------------------------------------------------------
def test_category_shares_move_the_fewest_rows_and_keep_missing_values():
    from synthloop.synthesizers.relational import _to_shares

    v = pd.Series(["a"] * 70 + ["b"] * 20 + [None] * 10)
    out = _to_shares(v, ["a", "b", "c"], np.array([0.5, 0.3, 0.2]), np.random.default_rng(0))
    assert pd.isna(out[90:]).all()  # missing stays missing
    counts = pd.Series(out[:90]).value_counts()
    assert counts.to_dict() == {"a": 45, "b": 27, "c": 18}
    assert (out[:90] != v[:90].to_numpy()).sum() == 25  # only the surplus of "a" moved


def test_stored_quantiles_are_cuts_between_values_with_clipped_ends():
    from synthloop.synthesizers.relational import _midpoint_quantiles

    v = np.arange(1.0, 41.0)  # 40 distinct values
    q = _midpoint_quantiles(v, 5)
    assert len(q) == 40 and q == sorted(q)
    assert min(q) >= 5 and max(q) <= 36  # no value beyond the 5th smallest / largest
    assert not set(q[5:-5]) & set(v)  # interior: midpoints, no stored training value


def test_a_whole_database_sample_takes_each_tables_learned_marginals(fitted, db):
    raw = RelationalSynthesizer.get_params(fitted)
    assert raw["calibrate"] is True
    out = fitted.sample(seed=5)
    real, syn = db["users"], out["users"]
    share = real.wealth.value_counts(normalize=True)
    assert (syn.wealth.value_counts(normalize=True).reindex(share.index) - share).abs().max() <= 1 / len(syn) + 1e-9
    qs = np.quantile(syn.age, [0.1, 0.5, 0.9])
    assert np.all(np.abs(qs - np.quantile(real.age, [0.1, 0.5, 0.9])) <= 2)
    # rank order kept: richer users still have more orders after calibration
    count = out["orders"]["user_id"].value_counts().reindex(syn["user_id"]).fillna(0).to_numpy()
    assert count[(syn.wealth == "rich").to_numpy()].mean() > 2 * count[(syn.wealth == "poor").to_numpy()].mean()
