"""Backend selection and the errors a user sees when a backend cannot start."""
from __future__ import annotations

from pathlib import Path

import pytest

from synthloop.llm import make_backend
from synthloop.llm.base import LLMRequest
from synthloop.spec import LLMError, LLMSettings


def test_openai_backend_needs_a_model() -> None:
    pytest.importorskip("openai")
    with pytest.raises(LLMError, match="needs a model name"):
        make_backend(LLMSettings(backend="openai", base_url="http://127.0.0.1:9/v1"))


def test_embedded_backend_with_a_missing_model_file(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    be = make_backend(LLMSettings(backend="embedded", model=str(tmp_path / "none.gguf")))
    with pytest.raises(LLMError, match="none.gguf: model file not found"):
        be.complete([LLMRequest(messages=(("user", "hi"),))])


def test_hf_backend_needs_a_local_folder(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="not a directory"):
        make_backend(LLMSettings(backend="hf", model=str(tmp_path / "missing")))
    with pytest.raises(LLMError, match="needs llm.model"):
        make_backend(LLMSettings(backend="hf"))


def test_finetuned_backend_needs_a_local_folder_and_is_a_command_line_choice(tmp_path: Path) -> None:
    from synthloop.generate.overrides import apply_overrides
    from synthloop.spec import Spec

    with pytest.raises(LLMError, match="not a directory"):
        make_backend(LLMSettings(backend="finetuned", model=str(tmp_path / "missing")))
    with pytest.raises(LLMError, match="needs llm.model"):
        make_backend(LLMSettings(backend="finetuned"))
    spec = Spec.model_validate({"name": "x", "columns": [{"name": "a", "sampler": {"uniform": {"min": 0, "max": 1}}}]})
    spec = apply_overrides(spec, "finetuned", None, str(tmp_path), None, None, False)
    assert spec.llm.backend == "finetuned" and spec.llm.model == str(tmp_path)


def test_a_row_changes_the_cache_key_only_when_given() -> None:
    plain = LLMRequest(messages=(("user", "a"),), seed=1)
    assert LLMRequest(messages=(("user", "a"),), seed=1, row=()).cache_key("m") == plain.cache_key("m")
    assert LLMRequest(messages=(("user", "a"),), seed=1, row=(("k", "v"),)).cache_key("m") != plain.cache_key("m")


def test_cache_key_changes_with_prompt_seed_model_and_schema() -> None:
    base = LLMRequest(messages=(("user", "a"),), seed=1)
    keys = {
        base.cache_key("m"), base.cache_key("other"),
        LLMRequest(messages=(("user", "b"),), seed=1).cache_key("m"),
        LLMRequest(messages=(("user", "a"),), seed=2).cache_key("m"),
        LLMRequest(messages=(("user", "a"),), seed=1, schema={"type": "object"}).cache_key("m"),
    }
    assert len(keys) == 5 and base.cache_key("m") == LLMRequest(messages=(("user", "a"),), seed=1).cache_key("m")


def test_bounded_numbers_become_enums_for_the_grammar_only() -> None:
    from synthloop.llm.grammar import decoding_schema

    schema = {"type": "object", "properties": {
        "hr": {"type": "integer", "minimum": 40, "maximum": 45},
        "t": {"type": "number", "minimum": 36.5, "maximum": 37.0, "multipleOf": 0.1},
        "open": {"type": "integer", "minimum": 0},
        "huge": {"type": "integer", "minimum": 0, "maximum": 10**9},
        "seg": {"enum": ["a", "b"]}}}
    out = decoding_schema(schema)
    assert out["properties"]["hr"] == {"enum": [40, 41, 42, 43, 44, 45]}
    assert out["properties"]["t"] == {"enum": [36.5, 36.6, 36.7, 36.8, 36.9, 37.0]}
    assert out["properties"]["open"] == schema["properties"]["open"]
    assert out["properties"]["huge"] == schema["properties"]["huge"]
    assert out["properties"]["seg"] == {"enum": ["a", "b"]}
    assert schema["properties"]["hr"] == {"type": "integer", "minimum": 40, "maximum": 45}  # not mutated
