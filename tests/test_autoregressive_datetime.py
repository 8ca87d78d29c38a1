"""Datetime columns in the autoregressive synthesizer are tokenized by calendar parts.

The table: `billing` is always the 1st of a month (a date string, no time), `visit` falls only on
weekdays between 08:00 and 18:00 on whole minutes (10 % missing), `season` is a function of the
billing month, `amount` is noise. Tolerances are stated in each test.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloop.synthesizers import AutoregressiveSynthesizer, BaseSynthesizer
from synthloop.transforms.tokenize import DatetimeTokenizer, NumericTokenizer, date_parts

SEASON = np.array(["winter", "winter", "spring", "spring", "spring", "summer", "summer", "summer",
                   "autumn", "autumn", "autumn", "winter"])


def _table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    month = rng.integers(1, 13, n)
    billing = pd.to_datetime(pd.DataFrame({"year": rng.integers(2019, 2023, n), "month": month, "day": 1}))
    days = pd.bdate_range("2021-01-01", "2022-12-31")
    visit = days[rng.integers(0, len(days), n)] + pd.to_timedelta(rng.integers(8 * 60, 18 * 60, n), unit="min")
    df = pd.DataFrame({"billing": billing.dt.strftime("%Y-%m-%d"), "visit": visit, "season": SEASON[month - 1],
                       "amount": rng.normal(50, 10, n).round(2)})
    df.loc[rng.random(n) < 0.1, "visit"] = pd.NaT
    return df


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


@pytest.fixture(scope="module")
def fitted(table: pd.DataFrame) -> AutoregressiveSynthesizer:
    return AutoregressiveSynthesizer(epochs=30, max_seconds=None, batch_size=128, n_threads=1, random_state=0).fit(table)


def test_datetime_columns_become_calendar_part_tokens(fitted):
    kinds = [k for c, k in fitted.slots_ if fitted.columns_[c].name == "visit"]
    assert kinds[:5] == ["period", "year", "month", "wday", "day"] and "tbin" in kinds
    assert [k for c, k in fitted.slots_ if fitted.columns_[c].name == "billing"] == ["period", "year", "month", "wday", "day"]


def test_calendar_structure_range_missing_share_and_format_survive(fitted, table):
    s = fitted.sample(1500, seed=1)
    assert s["billing"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()  # format kept, no time added
    billing = pd.to_datetime(s["billing"], format="%Y-%m-%d")
    assert (billing.dt.day == 1).all()  # always the 1st
    visit = s["visit"].dropna()
    assert pd.api.types.is_datetime64_any_dtype(s["visit"])
    assert (visit.dt.weekday < 5).all()  # never on a weekend
    assert (visit.dt.second == 0).all() and visit.dt.hour.between(8, 17).all()  # grid and hours kept
    assert abs(s["visit"].isna().mean() - 0.1) <= 0.04
    assert billing.min() >= pd.Timestamp(table["billing"].min()) and billing.max() <= pd.Timestamp(table["billing"].max())
    assert visit.min() >= table["visit"].min() and visit.max() <= table["visit"].max()
    # month -> season is deterministic in the data: recovered for at least 90 % of rows
    assert (s["season"].to_numpy() == SEASON[billing.dt.month - 1]).mean() >= 0.9
    # all twelve months and five weekdays are generated with about their shares (within 0.05)
    assert billing.dt.month.nunique() == 12
    assert (visit.dt.weekday.value_counts(normalize=True) - 0.2).abs().max() <= 0.05


def test_conditions_on_date_ranges_and_exact_dates(fitted):
    s = fitted.sample(300, seed=2, conditions={"visit": ("2021-03-10 12:00", "2021-03-20 09:30")})
    assert s["visit"].between(pd.Timestamp("2021-03-10 12:00"), pd.Timestamp("2021-03-20 09:30")).all()
    assert (s["visit"].dt.weekday < 5).all() and s["visit"].dt.date.nunique() >= 5
    s = fitted.sample(300, seed=3, conditions={"billing": ("2020-02-15", "2020-06-30")})
    billing = pd.to_datetime(s["billing"])
    assert billing.between("2020-02-15", "2020-06-30").all() and (billing.dt.day == 1).all()
    assert (s["season"].to_numpy() == SEASON[billing.dt.month - 1]).mean() >= 0.9
    s = fitted.sample(50, seed=4, conditions={"billing": "2020-04-01"})
    assert (s["billing"] == "2020-04-01").all() and (s["season"] == "spring").mean() >= 0.9
    s = fitted.sample(200, seed=5, conditions={"season": "summer"})  # dates follow a conditioned category
    assert pd.to_datetime(s["billing"]).dt.month.isin([6, 7, 8]).mean() >= 0.9


def test_save_load_round_trip_keeps_datetime_tokenizers(fitted, tmp_path):
    loaded = BaseSynthesizer.load(fitted.save(tmp_path / "dt.npz"))
    assert [type(t) for t in loaded.tokenizers_] == [type(t) for t in fitted.tokenizers_]
    pd.testing.assert_frame_equal(fitted.sample(200, seed=7), loaded.sample(200, seed=7))
    cond = {"visit": ("2021-06-01", "2021-06-30")}
    pd.testing.assert_frame_equal(fitted.sample(50, seed=8, conditions=cond), loaded.sample(50, seed=8, conditions=cond))


def test_numeric_datetimes_still_available_and_loadable(table, tmp_path):
    """`datetime_parts=False` is the former tokenization (a model file as older versions wrote it)."""
    m = AutoregressiveSynthesizer(epochs=2, batch_size=256, n_threads=1, datetime_parts=False).fit(table)
    assert all(isinstance(m.tokenizers_[i], NumericTokenizer) for i in (0, 1))
    loaded = BaseSynthesizer.load(m.save(tmp_path / "old.npz"))
    pd.testing.assert_frame_equal(m.sample(50, seed=1), loaded.sample(50, seed=1))


def test_datetime_tokens_round_trip_and_allowed_tokens_stay_in_range():
    rng = np.random.default_rng(0)
    days = rng.integers(-3000, 20000, 3000)  # 1961 .. 2024, leap days included
    x = days * 86400.0 + rng.integers(0, 86400, days.size)
    x[:30] = np.nan
    tok = DatetimeTokenizer(n_bins=32, n_sub=8, rare_k=0).fit(x)
    back = tok.decode(tok.encode(x), rng.random(x.size))
    ok = ~np.isnan(x)
    assert np.isnan(back[~ok]).all()
    assert (np.floor(back[ok] / 86400) == days[ok]).all()  # the date is exact; the time is within its group
    assert np.median(np.abs(back[ok] - x[ok])) < 600
    # draw every part uniformly among the allowed tokens: the dates are real and inside the range
    n = 2000
    lo = np.full(n, pd.Timestamp("2000-02-27 13:00").value / 1e9)
    hi = np.full(n, pd.Timestamp("2000-03-02 06:00").value / 1e9)
    tokens = np.zeros((n, len(tok.parts_)), dtype=np.int64)
    for p in range(len(tok.parts_)):
        m = tok.allowed(p, tokens[:, :p], lo, hi, conditioned=True)
        assert m.any(axis=1).all()
        tokens[:, p] = (np.cumsum(m, axis=1) > (rng.random(n) * m.sum(axis=1))[:, None]).argmax(axis=1)
    vals = tok.decode(tokens, rng.random(n), lo, hi)
    assert (vals >= lo).all() and (vals <= hi).all()
    assert set(date_parts(vals)["day"]) == {27, 28, 29, 1, 2}  # 2000 is a leap year


def test_day_is_clipped_to_the_month_length():
    days = pd.date_range("2023-01-01", "2023-03-31").to_numpy().astype("datetime64[s]").astype(float)
    tok = DatetimeTokenizer(n_bins=1, rare_k=0).fit(days)  # one period: the whole quarter
    t = tok.encode(np.array([pd.Timestamp("2023-01-31").value / 1e9]))
    t[0, tok.parts_.index("month")] = 1  # February 31st
    assert pd.Timestamp(tok.decode(t, np.zeros(1))[0] * 1e9) == pd.Timestamp("2023-02-28")


def test_a_year_or_month_that_never_varies_is_no_token():
    rng = np.random.default_rng(2)
    x = pd.Timestamp("2019-03-01").value / 1e9 + rng.integers(0, 31 * 86400, 500).astype(float)
    tok = DatetimeTokenizer(rare_k=0).fit(x)
    assert tok.parts_[:3] == ["period", "wday", "day"] and "year" not in tok.parts_ and "month" not in tok.parts_
    back = tok.decode(tok.encode(x), rng.random(x.size))
    assert (np.floor(back / 86400) == np.floor(x / 86400)).all()
