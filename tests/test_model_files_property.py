"""Property-based tests of the model loader (Hypothesis): random bytes, random damage to a real saved
model and random JSON headers never raise anything but SynthloopError subclasses, and each case
returns quickly. Derandomized, so CI runs the same examples every time."""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from synthloop.errors import SynthloopError  # noqa: E402
from synthloop.schema import infer_schema  # noqa: E402
from synthloop.synthesizers import load_synthesizer, synthesizer_class  # noqa: E402

PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 120
    age = rng.integers(18, 90, n).astype(float)
    age[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"age": age, "segment": rng.choice(["a", "b", "c"], n), "flag": rng.random(n) < 0.3,
                         "cid": np.arange(n)})


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("prop")
    df = _table()
    # 120 rows are too few to pay for a DP domain: the dp model gets it declared public
    public = infer_schema(df).model_copy(update={"public": True})
    return {name: synthesizer_class(name)().fit(df, schema=public if name == "dp" else None).save(folder / f"{name}.npz")
            for name in ("copula", "dp")}


def load_and_sample(path: Path) -> None:
    """The property: loading (and sampling what loads) raises nothing but SynthloopError."""
    try:
        model = load_synthesizer(path)
        model.sample(20, seed=0)
    except SynthloopError as exc:
        assert "\n" not in str(exc)


@PROPERTY
@given(data=st.binary(max_size=2048))
def test_random_bytes_are_refused_cleanly(data: bytes, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("bytes") / "m.npz"
    path.write_bytes(data)
    with pytest.raises(SynthloopError):
        load_synthesizer(path)


@PROPERTY
@given(data=st.binary(max_size=512))
def test_random_bytes_behind_a_zip_signature_are_refused_cleanly(data: bytes, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("zipsig") / "m.npz"
    path.write_bytes(b"PK\x03\x04" + data)
    with pytest.raises(SynthloopError):
        load_synthesizer(path)


@PROPERTY
@given(kind=st.sampled_from(["copula", "dp"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_damaged_copies_of_a_real_model_fail_cleanly(kind, flips, cut, saved, tmp_path_factory) -> None:
    raw = bytearray(saved[kind].read_bytes())
    for where, bit in flips:
        raw[int(where * len(raw))] ^= 1 << bit
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    path = tmp_path_factory.mktemp("flip") / "m.npz"
    path.write_bytes(bytes(raw))
    load_and_sample(path)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15), 10**15) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _write(path: Path, header: Any, arrays: dict[str, np.ndarray]) -> Path:
    np.savez_compressed(path, __header__=np.array(json.dumps(header)), **arrays)
    return path


def _parts(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("__header__"))), arrays


@PROPERTY
@given(header=json_values)
def test_random_json_headers_are_refused_cleanly(header, saved, tmp_path_factory) -> None:
    _, arrays = _parts(saved["copula"])
    path = _write(tmp_path_factory.mktemp("hdr") / "m.npz", header, arrays)
    with pytest.raises(SynthloopError):
        load_synthesizer(path)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):
            out += _paths(v, prefix + (i,))
    return out


@PROPERTY
@given(kind=st.sampled_from(["copula", "dp"]), pick=st.floats(0, 1, exclude_max=True), value=json_values,
       delete=st.booleans())
def test_a_real_header_with_one_value_replaced_or_removed_fails_cleanly(kind, pick, value, delete, saved,
                                                                        tmp_path_factory) -> None:
    header, arrays = _parts(saved[kind])
    paths = _paths(header)[1:]
    path = paths[int(pick * len(paths))]
    parent = header
    for p in path[:-1]:
        parent = parent[p]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    load_and_sample(_write(tmp_path_factory.mktemp("one") / "m.npz", header, arrays))


@PROPERTY
@given(kind=st.sampled_from(["copula", "dp"]), pick=st.floats(0, 1, exclude_max=True),
       how=st.sampled_from(["drop", "empty", "flat", "float32", "int", "bool", "nan", "double", "extra"]))
def test_a_real_model_with_one_array_changed_fails_cleanly(kind, pick, how, saved, tmp_path_factory) -> None:
    header, arrays = _parts(saved[kind])
    key = sorted(arrays)[int(pick * len(arrays))]
    a = arrays[key]
    if how == "drop":
        del arrays[key]
    elif how == "empty":
        arrays[key] = a[:0]
    elif how == "flat":
        arrays[key] = a.reshape(-1)[:-1] if a.size else np.zeros((1, 1))
    elif how == "float32":
        arrays[key] = a.astype(np.float32)
    elif how == "int":
        arrays[key] = a.astype(np.int64)
    elif how == "bool":
        arrays[key] = a.astype(bool)
    elif how == "nan":
        arrays[key] = np.full(a.shape, np.nan)
    elif how == "double":
        arrays[key] = np.concatenate([a, a]) if a.ndim else a
    else:
        arrays["x" + key] = a
    load_and_sample(_write(tmp_path_factory.mktemp("arr") / "m.npz", header, arrays))


def test_property_inputs_include_a_loadable_model(saved) -> None:
    """The properties above start from real models that do load and sample."""
    for path in saved.values():
        assert len(load_synthesizer(path).sample(5)) == 5
        assert zipfile.is_zipfile(path) and not math.isnan(path.stat().st_size)
