"""The autoregressive model's combination guard (issue 12, Anonymeter risks): no sampled row falls into a
combination of coarse column values that fewer than k training rows share, and the model file stores only
the cells that at least k rows share. Small tables, few epochs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthloop.errors import ModelFileError
from synthloop.synthesizers import BaseSynthesizer
from synthloop.synthesizers._combguard import CUTS, CombinationGuard, ordinal_groups
from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer

SMALL = dict(epochs=2, hidden=32, batch_size=128, n_threads=1)


def _table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """`a == "x"` and `b == "p"` are each on a third of the rows, together on only 3 rows (a rare pair)."""
    rng = np.random.default_rng(seed)
    a = np.array(["x", "y", "z"] * (n // 3), dtype=object)
    b = np.where(a == "x", rng.choice(["q", "r"], n), rng.choice(["p", "q", "r"], n, p=[0.5, 0.25, 0.25])).astype(object)
    b[:9:3] = "p"  # rows 0, 3, 6 have a == "x": the pair's only 3 rows
    return pd.DataFrame({"a": a, "b": b, "amount": np.round(rng.lognormal(5, 1, n), 2), "n": rng.integers(0, 9, n)})


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return _table()


@pytest.fixture(scope="module")
def guarded(table) -> AutoregressiveSynthesizer:
    return AutoregressiveSynthesizer(combination_guard=3, **SMALL).fit(table)


def _pairs(df: pd.DataFrame) -> int:
    return int(((df["a"] == "x") & (df["b"] == "p")).sum())


def test_a_combination_fewer_than_k_rows_share_is_never_sampled(table, guarded):
    assert _pairs(table) == 3
    unguarded = AutoregressiveSynthesizer(**SMALL).fit(table)  # the guard is opt-in
    assert unguarded.guard_ is None
    assert _pairs(unguarded.sample(3000, seed=1)) > 0  # an undertrained model mixes the two columns freely
    out = guarded.sample(3000, seed=1)
    assert len(out) == 3000 and _pairs(out) == 0
    assert guarded.last_guard_["redrawn"] > 0 and guarded.last_guard_["kept_rare"] == 0


def test_the_guard_stores_only_cells_that_k_rows_share(table, guarded):
    g = guarded.guard_
    assert g.k == guarded.privacy_k == 5 and g.subsets_.shape == (4, 3)  # all 3 of the 4 columns
    tokens = guarded._tokenize(guarded._clip_released(guarded.codec_.encode(table, **guarded._encode_options)))
    groups = guarded._guard_groups(tokens)
    for s in range(g.subsets_.shape[0]):
        codes, counts = np.unique(g._codes(groups, s), return_counts=True)
        stored = g.cells_[g.offsets_[s]:g.offsets_[s + 1]]
        np.testing.assert_array_equal(stored, codes[counts >= 5])
    assert 0.8 < g.train_allowed_share_ < 1.0  # the rare pair's 3 rows and rows in sparse tail cells are outside


def test_guarded_models_save_load_and_sample_alike(guarded, tmp_path):
    path = guarded.save(tmp_path / "ar.npz")
    loaded = BaseSynthesizer.load(path)
    np.testing.assert_array_equal(loaded.guard_.cells_, guarded.guard_.cells_)
    pd.testing.assert_frame_equal(loaded.sample(500, seed=3), guarded.sample(500, seed=3))
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[k].dtype.kind == "i" for k in npz.files if k.startswith("guard"))


def test_a_damaged_guard_is_one_model_file_error(guarded):
    meta, arrays = guarded.guard_.state()
    arrays["cells"] = arrays["cells"].copy()
    arrays["cells"][0, 1] = 999
    with pytest.raises(ModelFileError, match="combination guard"):
        CombinationGuard.from_state(meta, arrays)


def test_conditions_that_force_a_rare_combination_are_still_met(guarded):
    out = guarded.sample(50, seed=2, conditions={"a": "x", "b": "p"})
    assert len(out) == 50 and _pairs(out) == 50  # asked for explicitly: kept after the guard's redraws


def test_tails_get_narrow_groups_and_other_tokens_their_own():
    tokens = np.repeat(np.arange(100), 10)  # 100 value tokens of equal share
    g = ordinal_groups(tokens, 100, 102)
    assert g[0] == 0 and g[99] == len(CUTS) and g[100] != g[101] and g[100] > g[99]
    assert (np.diff(g[:100]) >= 0).all() and np.bincount(g[:100])[0] == 1  # the lowest 1% is one token


def test_wide_tables_fall_back_to_pairs_then_to_a_seeded_choice():
    g = CombinationGuard(k=5, order=3, max_subsets=100)
    assert g._subsets(8).shape == (56, 3)
    assert g._subsets(12).shape == (66, 2)  # C(12, 3) = 220 > 100 >= C(12, 2)
    picked = g._subsets(40)
    assert picked.shape == (100, 3) and np.array_equal(picked, CombinationGuard(max_subsets=100)._subsets(40))


def test_dates_empty_numbers_and_two_columns_are_guarded_too():
    rng = np.random.default_rng(4)
    n = 300
    df = pd.DataFrame({"when": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D"),
                       "empty": np.full(n, np.nan), "kind": rng.choice(["a", "b"], n)})
    model = AutoregressiveSynthesizer(combination_guard=3, **SMALL).fit(df)
    assert model.guard_ is not None and model.guard_.subsets_.shape[1] in (2, 3)
    out = model.sample(400, seed=0)
    assert len(out) == 400 and model.last_guard_["kept_rare"] == 0
    two = AutoregressiveSynthesizer(combination_guard=3, **SMALL).fit(df[["when", "kind"]])
    assert two.guard_.subsets_.shape == (1, 2) and len(two.sample(100, seed=0)) == 100


def test_cli_fit_takes_the_guard_and_refuses_a_bad_order_in_one_line(tmp_path, table):
    """`fit --combination-guard 3` makes a guarded autoregressive model (even with --model auto); a value
    other than 2 or 3 is one error line, exit 2, no model file."""
    import subprocess
    import sys

    from synthloop.synthesizers import load_synthesizer

    data = tmp_path / "t.csv"
    table.to_csv(data, index=False)
    ok = subprocess.run([sys.executable, "-m", "synthloop.cli", "fit", str(data), "--combination-guard", "3",
                         "--epochs", "2", "-o", str(tmp_path / "m.npz")], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    model = load_synthesizer(tmp_path / "m.npz")
    assert model.name == "autoregressive" and model.combination_guard == 3 and model.guard_ is not None
    bad = subprocess.run([sys.executable, "-m", "synthloop.cli", "fit", str(data), "--model", "autoregressive",
                          "--combination-guard", "7", "--epochs", "1", "-o", str(tmp_path / "b.npz")],
                         capture_output=True, text=True, timeout=300)
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "combination_guard must be 0" in lines[0], bad.stderr
    assert not (tmp_path / "b.npz").exists()
    copula = subprocess.run([sys.executable, "-m", "synthloop.cli", "fit", str(data), "--model", "copula",
                             "--combination-guard", "3", "-o", str(tmp_path / "c.npz")], capture_output=True, text=True,
                            timeout=300)
    assert copula.returncode == 2 and "--combination-guard does not apply to the copula model" in copula.stderr
