"""Model files are untrusted input: every way one can be wrong is one line through the CLI (exit 2, no
traceback, nothing written), and sampling has row ceilings and streams large draws in batches."""
from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

from synthloop.errors import ConditionError, ModelFileError, SynthloopError
from synthloop.io import read_table, write_table_batches
from synthloop.synthesizers import load_synthesizer, synthesizer_class
from synthloop.synthesizers.base import MAX_SAMPLE_ROWS


def small_table(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    age = rng.integers(18, 90, n)
    return pd.DataFrame({
        "cid": np.arange(1, n + 1),
        "age": age,
        "income": np.round(age * 900 + rng.normal(0, 3000, n), 2),
        "segment": rng.choice(["retail", "sme", "corporate"], n, p=[0.6, 0.3, 0.1]),
        "opened": (pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")).strftime("%Y-%m-%d"),
    })


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    schema = {"columns": {"cid": {"kind": "id"}}}
    from synthloop.schema import infer_schema

    df = small_table()
    model = synthesizer_class("copula")().fit(df, infer_schema(df, overrides=schema))
    return model.save(folder / "copula.npz")


def parts(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("__header__"))), arrays


def forge(src: Path, dst: Path, header: Callable[[Any], Any] | None = None,
          arrays: Callable[[dict], dict] | None = None) -> Path:
    """A copy of `src` with its header and/or arrays changed, written as a valid .npz."""
    h, a = parts(src)
    h = header(h) if header else h
    a = arrays(a) if arrays else a
    np.savez_compressed(dst, __header__=np.array(json.dumps(h)), **a)
    return dst


def cli(*args: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run `synthloop ARGS` in this process through synthloop.cli.main; (exit code, stderr)."""
    from synthloop.cli import main

    old = sys.argv
    sys.argv = ["synthloop", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    return code, capsys.readouterr().err


def refused(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture, *extra: str) -> str:
    """`synthloop sample MODEL` exits 2 with one `error:` line naming the file, writes nothing."""
    out = tmp_path / "out.csv"
    code, err = cli("sample", str(model), "-o", str(out), *extra, capsys=capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert not out.exists() and not list(tmp_path.glob(".out.csv.*"))
    return lines[0]


def test_a_good_model_samples_through_the_cli(model_path, tmp_path, capsys):
    code, err = cli("sample", str(model_path), "-n", "30", "-o", str(tmp_path / "o.csv"), capsys=capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "o.csv")) == 30


def _flip_inside(path: Path, member: str) -> bytes:
    """The file with one byte flipped in the middle of `member`'s compressed data."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0x5A
    return bytes(raw)


BYTE_PROBES: dict[str, Callable[[bytes, Path], bytes]] = {
    "not a zip": lambda raw, p: b"a,b\n1,2\n",
    "empty file": lambda raw, p: b"",
    "truncated": lambda raw, p: raw[: len(raw) // 2],
    "truncated to its first bytes": lambda raw, p: raw[:40],
    "bit flip in compressed data": lambda raw, p: _flip_inside(p, "correlation.npy"),
    "bit flip in the header entry": lambda raw, p: _flip_inside(p, "__header__.npy"),
    "a pickle": lambda raw, p: b"\x80\x04\x95" + raw[:100],
}


@pytest.mark.parametrize("probe", list(BYTE_PROBES))
def test_damaged_bytes_are_one_line(probe, model_path, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(BYTE_PROBES[probe](model_path.read_bytes(), model_path))
    line = refused(bad, tmp_path, capsys)
    assert str(bad) in line and "model file" in line


def _set(key: str, value: Any) -> Callable[[dict], dict]:
    return lambda h: {**h, key: value}


def _param(key: str, value: Any) -> Callable[[dict], dict]:
    return lambda h: {**h, "params": {**h["params"], key: value}}


def _column(h: dict, name: str, **fields: Any) -> dict:
    for col in h["schema"]["columns"]:
        if col["name"] == name:
            col.update(fields)
    return h


HEADER_PROBES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "a list": (lambda h: [1, 2, 3], "is a JSON list"),
    "a number": (lambda h: 42, "is a JSON int"),
    "a string": (lambda h: "copula", "is a JSON str"),
    "no format": (lambda h: {k: v for k, v in h.items() if k != "format"}, "not a synthloop model file"),
    "a newer version": (_set("version", 99), "newer synthloop"),
    "a text version": (_set("version", "1"), "'version' must be a positive integer"),
    "no schema": (lambda h: {k: v for k, v in h.items() if k != "schema"}, "'schema': Field required"),
    "no class": (lambda h: {k: v for k, v in h.items() if k != "class"}, "'class': Field required"),
    "an unknown class": (_set("class", "pickle"), "unknown model class 'pickle'"),
    "the base class": (_set("class", "base"), "unknown model class 'base'"),
    "params as a list": (_set("params", [1]), "'params': Input should be a valid dictionary"),
    "an unknown parameter": (_param("evil", 1), "unknown parameter 'evil' for GaussianCopulaSynthesizer"),
    "a parameter of the wrong type": (_param("n_knots", "many"), "parameter 'n_knots' = 'many' is not of type int"),
    "a float for an int parameter": (_param("gibbs_sweeps", 2.5), "parameter 'gibbs_sweeps'"),
    "an absurd work parameter": (_param("gibbs_sweeps", 10**12), "'gibbs_sweeps' = 1000000000000 must be between"),
    "a negative seed": (_param("random_state", -3), "'random_state' = -3 must be at least 0"),
    "n_rows 1e12": (_set("n_rows", 1e12), "'n_rows': Input should be a valid integer"),
    "n_rows 10**12": (_set("n_rows", 10**12), "'n_rows': Input should be less than or equal to 1000000000"),
    "n_rows 0": (_set("n_rows", 0), "'n_rows'"),
    "schema as a list": (_set("schema", [1]), "'schema': Input should be a valid dictionary"),
    "a schema column of the wrong shape": (_set("schema", {"columns": [{"name": 3, "kind": "numerical"}]}), "columns[0].name"),
    "schema columns as a string": (_set("schema", {"columns": "age"}), "schema: columns"),
    "an unknown column kind": (lambda h: {**h, "schema": {**h["schema"], "columns": [
        {**h["schema"]["columns"][0], "kind": "python"}] + h["schema"]["columns"][1:]}}, "columns[0].kind"),
    "a category that is an object": (lambda h: _column(h, "segment", categories=[{"a": 1}, "sme"]),
                                     "categories must be strings, numbers or booleans"),
    "a category listed twice": (lambda h: _column(h, "segment", categories=["sme", "sme", "retail"]), "listed twice"),
    "min above max": (lambda h: _column(h, "age", min=90.0, max=18.0), "min 90.0 is above max 18.0"),
    "a column named twice": (lambda h: {**h, "schema": {**h["schema"], "columns": h["schema"]["columns"] * 2}},
                             "names column 'cid' twice"),
    "no model state": (lambda h: {k: v for k, v in h.items() if k != "model"}, "'model': Field required"),
    "empty model state": (_set("model", {}), "model.latents"),
    "a constraint escape": (_set("constraints", ["__import__('os').system('true')"]), "constraint"),
    "a constraint with bad syntax": (_set("constraints", ["age <"]), "constraint"),
    "a constraint on an unknown column": (_set("constraints", ["nope > 1"]), "unknown column 'nope'"),
    "a constraint of an unknown type": (_set("constraints", [{"type": "shell", "cmd": "true"}]), "unknown constraint type"),
    "constraints as a number": (_set("constraints", 3), "'constraints'"),
}


@pytest.mark.parametrize("probe", list(HEADER_PROBES))
def test_forged_headers_are_one_line(probe, model_path, tmp_path, capsys):
    change, expected = HEADER_PROBES[probe]
    bad = forge(model_path, tmp_path / "bad.npz", header=change)
    line = refused(bad, tmp_path, capsys)
    assert str(bad) in line and expected in " ".join(line.split()), line


def _without(key: str) -> Callable[[dict], dict]:
    return lambda a: {k: v for k, v in a.items() if k != key}


ARRAY_PROBES: dict[str, tuple[Callable[[dict], dict], str]] = {
    "a missing array": (_without("correlation"), "'correlation'"),
    "a missing encoder array": (_without("latent0_quantiles"), "'latent0_quantiles'"),
    "an extra array": (lambda a: {**a, "payload": np.zeros(3)}, "unexpected array 'payload'"),
    "an ill-shaped array": (lambda a: {**a, "correlation": np.eye(2)}, "array 'correlation' must be"),
    "a text array": (lambda a: {**a, "correlation": np.array(["x", "y"])}, "has dtype <U1"),
    "an integer matrix": (lambda a: {**a, "correlation": a["correlation"].astype(np.int64)}, "array 'correlation'"),
    "a non-correlation matrix": (lambda a: {**a, "correlation": a["correlation"] * 3}, "not a correlation matrix"),
    "NaN quantiles": (lambda a: {**a, "latent0_quantiles": a["latent0_quantiles"] * np.nan}, "latent0_quantiles"),
}


@pytest.mark.parametrize("probe", list(ARRAY_PROBES))
def test_forged_state_arrays_are_one_line(probe, model_path, tmp_path, capsys):
    change, expected = ARRAY_PROBES[probe]
    bad = forge(model_path, tmp_path / "bad.npz", arrays=change)
    line = refused(bad, tmp_path, capsys)
    assert str(bad) in line and expected in line, line


def test_an_encoder_size_in_the_header_is_checked_before_it_allocates(model_path, tmp_path, capsys):
    def huge_knots(h):
        for lat in h["model"]["latents"]:
            if "n_knots" in lat["encoder"]:
                lat["encoder"]["n_knots"] = 10**12
        return h

    line = refused(forge(model_path, tmp_path / "bad.npz", header=huge_knots), tmp_path, capsys)
    assert "n_knots does not match" in line


def _npz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()  # magic string and header


@pytest.mark.parametrize("members,expected", [
    ({"x.npy": _npy_header((10**12,))}, "declares shape (1000000000000,)"),
    ({"x.npy": _npy_header((10**5, 10**5)) + b"\x00" * 16}, "declares shape (100000, 100000)"),
    ({"x.npy": _npy_header((3,), "|O") + b"\x00" * 24}, "has dtype object"),
    ({"payload.sh": b"#!/bin/sh\n"}, "unexpected entry 'payload.sh'"),
    ({"x.npy": b"\x93NUMPY\x03\x00" + b"\x00" * 20}, "which synthloop never writes"),
    ({"x.npy": b"\x93NUMPY\x01\x00\xff\xff{'descr': 1}"}, "not a synthloop model file"),
    ({}, "no header"),
])
def test_forged_containers_are_refused_before_anything_is_unpacked(members, expected, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(_npz(members))
    assert expected in refused(bad, tmp_path, capsys)


def test_a_directory_is_not_a_model(tmp_path, capsys):
    (tmp_path / "dir.npz").mkdir()
    assert "is a directory" in refused(tmp_path / "dir.npz", tmp_path, capsys)


@pytest.mark.parametrize("rows,expected", [
    ("1000000000000", "-n 1000000000000: draw between 1 and 1,000,000,000 rows per run"),
    ("0", "-n 0: draw between 1 and"),
    ("-5", "-n -5: draw between 1 and"),
])
def test_absurd_row_counts_are_one_line(rows, expected, model_path, tmp_path, capsys):
    assert expected in refused(model_path, tmp_path, capsys, "-n", rows)


def test_negative_seed_is_one_line(model_path, tmp_path, capsys):
    assert "--seed -1" in refused(model_path, tmp_path, capsys, "--seed", "-1")


def _in_model(key: str, value: Any, where: str = "tokenizers") -> Callable[[dict], dict]:
    """Set `key` to `value` in every object of header['model'][where] (or its 'columns') that has it."""
    def change(h: dict) -> dict:
        node = h["model"][where]
        for item in (node if isinstance(node, list) else node.get("columns", [])):
            if key in item:
                item[key] = value
        return h
    return change


@pytest.mark.parametrize("kind,change,expected", [
    ("autoregressive", _in_model("n_sub", 10**9), "n_sub and the bin arrays do not fit together"),
    ("autoregressive", _in_model("n_years", 10**9), "n_years must be between 1 and max_years"),
    ("gan", _in_model("k", 10**9, "layout"), "k does not match its categories"),
    ("vae", _in_model("k", 10**9, "layout"), "k does not match its categories"),
    ("gan", _param("generator_dim", [10**6, 10**6]), "the network the header's parameters describe needs"),
    ("gan", _param("embedding_dim", 10**7), "the network the header's parameters describe needs"),
    ("autoregressive", _param("hidden", 10**6), "the network the header's parameters describe needs"),
    ("autoregressive", _param("n_layers", 10**4), "the network the header's parameters describe needs"),
])
def test_deep_models_check_saved_weights_against_parameters_without_building_the_network(kind, change, expected, tmp_path, capsys):
    params = {"epochs": 1, "verbose": False}
    model = synthesizer_class(kind)(**params).fit(small_table(80)[["age", "segment", "opened"]])
    bad = forge(model.save(tmp_path / "m.npz"), tmp_path / "bad.npz", header=change)
    assert expected in refused(bad, tmp_path, capsys)


# -- the library: ceilings and batches ----------------------------------------------------------------
@pytest.fixture(scope="module")
def model(model_path):
    return load_synthesizer(model_path)


@pytest.mark.parametrize("n", [-1, 2.5, "10", float("inf"), MAX_SAMPLE_ROWS + 1, 10**12, True])
def test_sample_refuses_bad_and_absurd_row_counts(model, n):
    with pytest.raises(ConditionError):
        model.sample(n)


@pytest.mark.parametrize("seed", [-1, 1.5, "x"])
def test_sample_refuses_bad_seeds(model, seed):
    with pytest.raises(ConditionError, match="seed"):
        model.sample(5, seed=seed)


def test_zero_rows_is_an_empty_table_with_the_columns(model):
    df = model.sample(0)
    assert len(df) == 0 and list(df.columns) == ["cid", "age", "income", "segment", "opened"]


def test_a_draw_that_fits_one_batch_is_exactly_sample(model):
    (only,) = list(model.sample_batches(120, seed=3))
    pd.testing.assert_frame_equal(only, model.sample(120, seed=3))


def test_batched_draws_are_deterministic_and_keep_ids_unique(model):
    first = list(model.sample_batches(250, seed=7, batch_rows=100))
    again = pd.concat(list(model.sample_batches(250, seed=7, batch_rows=100)), ignore_index=True)
    assert [len(b) for b in first] == [100, 100, 50]
    whole = pd.concat(first, ignore_index=True)
    pd.testing.assert_frame_equal(whole, again)
    first_id = int(whole["cid"].iloc[0])
    assert whole["cid"].tolist() == list(range(first_id, first_id + 250))  # numbered across the batches
    other = pd.concat(list(model.sample_batches(250, seed=8, batch_rows=100)), ignore_index=True)
    assert not whole[["age", "income"]].equals(other[["age", "income"]])


def test_batched_ids_with_a_digits_pattern_stay_unique():
    from synthloop.schema import ColumnKind, ColumnSchema
    from synthloop.transforms.generated import generate_ids

    col = ColumnSchema(name="k", kind=ColumnKind.ID, id_pattern="C{digits:4}")
    rng = np.random.default_rng(0)
    ids = pd.concat([generate_ids(col, 3000, rng, start=s, key=11) for s in (0, 3000, 6000)])
    assert ids.is_unique and ids.str.fullmatch(r"C\d{4}").all()


def test_batches_split_a_conditions_table_and_refuse_absurd_totals(model):
    known = pd.DataFrame({"segment": ["sme"] * 150 + ["retail"] * 100})
    whole = pd.concat(list(model.sample_batches(seed=1, conditions=known, batch_rows=100)), ignore_index=True)
    assert (whole["segment"] == known["segment"]).all()
    with pytest.raises(ConditionError, match="at most 1,000,000,000"):
        next(model.sample_batches(10**12))


@pytest.mark.parametrize("name", ["o.csv", "o.tsv", "o.jsonl", "o.parquet", "o.csv.gz"])
def test_batches_stream_to_one_file_of_every_format(name, tmp_path):
    batches = [pd.DataFrame({"a": [1, 2], "s": ["x", None]}), pd.DataFrame({"a": [3], "s": ["z"]}),
               pd.DataFrame({"a": [4, 5], "s": [None, "w"]})]
    seen: list[int] = []
    path, rows = write_table_batches(iter(batches), tmp_path / name, on_batch=seen.append)
    assert rows == 5 and seen == [2, 1, 2]
    back = read_table(path)
    assert back["a"].tolist() == [1, 2, 3, 4, 5] and back["s"].isna().tolist() == [False, True, False, True, False]


def test_a_parquet_column_empty_in_the_first_batch_takes_later_values(tmp_path):
    batches = [pd.DataFrame({"s": [None, None]}), pd.DataFrame({"s": ["a", None]})]
    path, _ = write_table_batches(iter(batches), tmp_path / "o.parquet")
    assert read_table(path)["s"].tolist()[2] == "a"


def test_a_failing_batch_leaves_no_file(tmp_path):
    def batches():
        yield pd.DataFrame({"a": [1]})
        raise ConditionError("stop")

    with pytest.raises(ConditionError):
        write_table_batches(batches(), tmp_path / "o.csv")
    assert list(tmp_path.iterdir()) == []


def test_cli_streams_a_large_draw_in_batches(model_path, tmp_path, capsys, monkeypatch):
    import synthloop.synthesizers.base as base

    monkeypatch.setattr(base, "BATCH_ROWS", 100)
    outs = []
    for name in ("a.csv", "b.csv"):
        code, err = cli("sample", str(model_path), "-n", "250", "--seed", "5", "-o", str(tmp_path / name), capsys=capsys)
        assert code == 0, err
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1] and outs[0].count("cid") == 1
    df = pd.read_csv(tmp_path / "a.csv")
    assert len(df) == 250 and df["cid"].is_unique


def test_errors_inside_a_loaded_state_name_the_file(model_path, tmp_path):
    bad = forge(model_path, tmp_path / "bad.npz", arrays=_without("correlation"))
    with pytest.raises(ModelFileError) as info:
        load_synthesizer(bad)
    assert str(info.value).startswith(str(bad)) and "\n" not in str(info.value)
    assert isinstance(info.value, SynthloopError)


def test_a_schema_key_with_a_line_break_still_gives_one_line(model_path, tmp_path, capsys):
    bad = forge(model_path, tmp_path / "bad.npz", header=lambda h: {**h, "schema": {**h["schema"], "evil\nline": 1}})
    line = refused(bad, tmp_path, capsys)
    assert "evil line" in line
