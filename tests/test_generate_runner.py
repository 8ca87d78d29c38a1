"""The run: validation and repair, failed rows reported, journal resume, cache, dedup, prompts."""
from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from synthloop.generate.runner import GenerationInterrupted, PromptedGenerator, summary_path_for
from synthloop.generate.store import Journal, journal_path_for
from synthloop.llm.base import BackendBase, LLMRequest, LLMResult
from synthloop.llm.testing import sample_from_schema
from synthloop.spec import GenerationError, loads_spec

SPEC = """\
name: runs
rows: 12
seed: 3
columns:
  - name: type
    sampler: {categorical: {credit: 0.5, debit: 0.5}}
  - name: amount
    sampler: {uniform: {min: 1, max: 100, decimals: 2}}
  - name: desc
    llm:
      prompt: "Merchant for a {{ type }} payment of {{ amount }} USD."
      avoid: ["brand names"]
      max_retries: 1
  - name: profile
    llm:
      prompt: "Customer who bought: {{ desc }}"
      schema: {type: object, properties: {age: {type: integer, minimum: 18, maximum: 95}, segment: {enum: [retail, sme]}}}
  - name: summary
    expression: "concat(type, ':', segment)"
targets:
  segment: {retail: 0.75, sme: 0.25}
"""


class Scripted(BackendBase):
    """Answers from the schema (seeded), optionally broken by `mangle`; counts calls."""

    name = "scripted"
    model_id = "scripted"
    supports_constraints = True

    def __init__(self, mangle: Callable[[LLMRequest, str], str] | None = None, concurrency: int = 1,
                 interrupt_after: int | None = None, text: Callable[[LLMRequest], str] | None = None) -> None:
        self.mangle, self.concurrency, self.interrupt_after, self.text = mangle, concurrency, interrupt_after, text
        self.calls: list[LLMRequest] = []
        self._lock = threading.Lock()

    def complete_one(self, r: LLMRequest) -> LLMResult:
        with self._lock:
            self.calls.append(r)
            if self.interrupt_after is not None and len(self.calls) > self.interrupt_after:
                raise KeyboardInterrupt
        rng = random.Random(r.seed)
        obj = sample_from_schema(r.schema, rng)
        if self.text and "desc" in obj:
            obj["desc"] = self.text(r)
        out = json.dumps(obj)
        return LLMResult(self.mangle(r, out) if self.mangle else out, elapsed=0.001)


def is_repair(r: LLMRequest) -> bool:
    """A regenerated cell: its prompt ends with the note saying why the last answer was not kept."""
    return "The last one was not usable because" in r.messages[-1][1]


def gen(backend: BackendBase, tmp_path: Path, text: str = SPEC) -> PromptedGenerator:
    return PromptedGenerator(loads_spec(text), backend=backend, cache_dir=tmp_path / "cache")


def test_generates_all_columns_with_planned_shares(tmp_path: Path) -> None:
    res = gen(Scripted(), tmp_path).generate()
    df = res.data
    assert list(df.columns) == ["type", "amount", "desc", "age", "segment", "summary"]
    assert len(df) == 12 and df["age"].between(18, 95).all()
    assert (df["segment"].value_counts() == pd.Series({"retail": 9, "sme": 3})).all()
    assert (df["summary"] == df["type"] + ":" + df["segment"]).all()
    assert res.summary["targets"]["met"] and res.summary["validity"]["valid_first_try"] == 1.0


def test_invalid_answers_are_repaired_with_the_errors_in_the_prompt(tmp_path: Path) -> None:
    be = Scripted(mangle=lambda r, o: (json.dumps({**json.loads(o), "age": 500}) if "age" in o and not is_repair(r) else o))
    res = gen(be, tmp_path).generate()
    assert len(res.data) == 12 and res.data["age"].between(18, 95).all()
    repairs = [c for c in be.calls if is_repair(c)]
    assert len(repairs) == 12 and "500 is greater than the maximum of 95" in repairs[0].messages[-1][1]
    assert res.summary["validity"]["repairs"] == 12 and res.summary["validity"]["valid_first_try"] < 1


def test_a_failed_row_is_written_again_with_fresh_seeds_keeping_its_planned_values(tmp_path: Path) -> None:
    be = Scripted(mangle=lambda r, o: "I cannot do that" if "desc" in o and r.seed % 3 == 0 else o)
    res = gen(be, tmp_path).generate()
    clean = gen(Scripted(), tmp_path / "clean").generate()
    assert res.failed == [] and len(res.data) == 12 and res.summary["failed_rows_retried"] >= 1
    # the retried rows keep their sampled values, so the planned shares hold exactly
    pd.testing.assert_series_equal(res.data["type"], clean.data["type"])
    pd.testing.assert_series_equal(res.data["amount"], clean.data["amount"])


def test_rows_that_stay_invalid_are_reported_not_kept(tmp_path: Path) -> None:
    be = Scripted(mangle=lambda r, o: "I cannot do that" if "desc" in o and r.seed % 3 == 0 else o)
    res = gen(be, tmp_path, SPEC.replace("seed: 3\n", "seed: 3\nllm: {row_retries: 0}\n")).generate(out=tmp_path / "o.csv")
    failed_rows = {f["row"] for f in res.failed}
    assert res.failed and all(f["column"] == "desc" and "no JSON object" in f["error"] for f in res.failed)
    assert len(res.data) == 12 - len(failed_rows)
    assert res.summary["rows_failed"] == len(failed_rows)
    written = pd.read_csv(tmp_path / "o.csv")
    assert len(written) == len(res.data)


def test_interrupted_run_resumes_without_redoing_rows(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    first = Scripted(interrupt_after=9)
    with pytest.raises(GenerationInterrupted, match="run the same command again to resume"):
        PromptedGenerator(loads_spec(SPEC), backend=first, cache_dir=False).generate(out=out)
    journal = journal_path_for(out)
    saved = [json.loads(l) for l in journal.read_text().splitlines()[1:]]
    assert 0 < len(saved) < 12 and not out.exists()
    second = Scripted()
    res = PromptedGenerator(loads_spec(SPEC), backend=second, cache_dir=False).generate(out=out)
    assert res.summary["resumed_rows"] == len(saved)
    assert len(res.data) == 12 and len(second.calls) == 2 * (12 - len(saved))
    assert not journal.exists() and summary_path_for(out).exists()
    # the rows restored from the journal are the ones written, unchanged
    assert res.data["desc"].iloc[saved[0]["row"]] == saved[0]["values"]["desc"]
    # and the result equals an uninterrupted run
    full = PromptedGenerator(loads_spec(SPEC), backend=Scripted(), cache_dir=False).generate()
    pd.testing.assert_frame_equal(res.data, full.data)


def test_torn_last_journal_line_is_dropped(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl", "fp")
    j.open()
    j.append({"row": 0, "status": "ok", "values": {}})
    j.close()
    with open(j.path, "a") as fh:
        fh.write('{"row": 1, "status": "o')
    again = Journal(j.path, "fp")
    torn = j.path.read_bytes()
    assert list(again.load()) == [0]
    assert j.path.read_bytes() == torn  # loading reads only
    assert len(again.warnings) == 1 and "j.jsonl:3: dropped an unfinished last line" in again.warnings[0]
    again.open()  # appending starts by dropping the torn line, so it cannot end up in the middle
    again.close()
    assert j.path.read_text().endswith("}\n") and len(j.path.read_text().splitlines()) == 2


def test_journal_of_another_spec_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    with pytest.raises(GenerationInterrupted):
        PromptedGenerator(loads_spec(SPEC), backend=Scripted(interrupt_after=3), cache_dir=False).generate(out=out)
    other = SPEC.replace("seed: 3", "seed: 4")
    with pytest.raises(GenerationError, match="journal of a different run"):
        PromptedGenerator(loads_spec(other), backend=Scripted(), cache_dir=False).generate(out=out)
    res = PromptedGenerator(loads_spec(other), backend=Scripted(), cache_dir=False).generate(out=out, fresh=True)
    assert res.summary["resumed_rows"] == 0 and len(res.data) == 12


def test_rerun_with_same_seed_is_served_from_cache(tmp_path: Path) -> None:
    a = Scripted()
    r1 = gen(a, tmp_path).generate()
    b = Scripted()
    r2 = gen(b, tmp_path).generate()
    assert len(a.calls) > 0 and len(b.calls) == 0
    assert r2.summary["cache"]["hits"] == len(a.calls)
    pd.testing.assert_frame_equal(r1.data, r2.data)


def test_concurrent_rows_give_the_same_data(tmp_path: Path) -> None:
    one = gen(Scripted(concurrency=1), tmp_path / "a").generate()
    many = gen(Scripted(concurrency=6), tmp_path / "b").generate()
    pd.testing.assert_frame_equal(one.data, many.data)


def test_near_duplicates_are_regenerated_and_reported(tmp_path: Path) -> None:
    def text(r: LLMRequest) -> str:
        prompt = r.messages[1][1]
        return "Corner bakery breakfast" if "repeating" not in prompt else f"Unique shop number {r.seed}"

    res = gen(Scripted(text=text), tmp_path).generate()
    d = res.summary["diversity"]["desc"]
    assert d["before"]["duplicate_rate"] == pytest.approx(11 / 12)
    assert d["after"]["duplicate_rate"] == 0 and d["regenerated"] == 11
    assert res.data["desc"].nunique() == 12


def test_prompt_shows_constraints_avoid_schema_and_planned_values(tmp_path: Path) -> None:
    g = gen(Scripted(), tmp_path)
    items = g.prompts_for_row(4)
    (c1, p1, s1), (c2, p2, s2) = items
    assert c1 == "desc" and c2 == "profile" and s1 != s2
    user = p1.messages[1][1]
    assert "payment of" in user and "Avoid:\n- brand names" in user and 'one key, "desc", whose value is the text itself' in user and "<text>" not in user
    planned = g.plan().assigned["segment"][4]
    assert p2.schema["properties"]["segment"] == {"enum": [planned]}
    assert f'"segment" must be "{planned}"' in p2.messages[1][1]


def test_prompt_without_running_upstream_uses_placeholders(tmp_path: Path) -> None:
    be = Scripted()
    items = gen(be, tmp_path).prompts_for_row(0, columns=["profile"], run_upstream=False)
    assert len(items) == 1 and "<desc>" in items[0][1].messages[1][1] and not be.calls


def test_row_outside_the_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="row 12 is outside 0..11"):
        gen(Scripted(), tmp_path).prompts_for_row(12)


def test_few_shot_examples_match_and_spread(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.csv"
    pd.DataFrame({
        "type": ["credit"] * 6 + ["debit"] * 2,
        "desc": ["Hotel night near airport", "Hotel night near the airport", "Hotel night by airport",
                 "Concert tickets", "Online boots order", "Train tickets weekend", "Groceries", "Fuel refill"],
    }).to_csv(seeds, index=False)
    text = SPEC.replace('      avoid: ["brand names"]', '      avoid: ["brand names"]\n      few_shot: {file: seeds.csv, k: 2, match: [type]}')
    g = PromptedGenerator(loads_spec(text, "s.yaml", tmp_path), backend=Scripted(), cache_dir=False)
    plan = g.plan()
    for i in range(12):
        row = plan.frame.iloc[i].to_dict()
        ex = g.pool(g.spec.column("desc")).pick(row, __import__("numpy").random.default_rng(i))
        assert len(ex) == 2
        if row["type"] == "debit":
            assert {e["desc"] for e in ex} == {"Groceries", "Fuel refill"}
        hotel = [e for e in ex if e["desc"].startswith("Hotel")]
        assert len(hotel) <= 1  # the three near-identical hotel lines are never picked together


def test_sample_verbs_and_conditions(tmp_path: Path) -> None:
    from synthloop.errors import ConditionError

    g = gen(Scripted(), tmp_path)
    df = g.sample_from_conditions({"type": "debit", "segment": "sme"}, num_rows=5)
    assert len(df) == 5 and (df["type"] == "debit").all() and (df["segment"] == "sme").all()
    assert (df["summary"] == "debit:sme").all()
    a = g.sample(6, seed=11)
    b = gen(Scripted(), tmp_path / "other").sample(6, seed=11)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ConditionError, match="not one of"):
        g.sample_from_conditions({"type": "wire"}, 2)
    with pytest.raises(ConditionError, match="only sampler columns"):
        g.sample_from_conditions({"desc": "x"}, 2)


def test_reasoning_field_is_requested_first_and_dropped(tmp_path: Path) -> None:
    text = SPEC.replace('      schema: {type: object', '      reasoning: true\n      schema: {type: object')
    be = Scripted()
    res = gen(be, tmp_path, text).generate()
    profile_calls = [c for c in be.calls if "segment" in c.schema["properties"]]
    assert list(profile_calls[0].schema["properties"])[0] == "reasoning"
    assert profile_calls[0].schema["required"][0] == "reasoning"
    assert '"reasoning"' in profile_calls[0].messages[1][1]
    assert "reasoning" not in res.data.columns and len(res.data) == 12


def test_copies_of_few_shot_examples_are_regenerated(tmp_path: Path) -> None:
    (tmp_path / "seeds.csv").write_text("desc\nCorner bakery breakfast\nHarbor fish market\n")
    text = SPEC.replace('      avoid: ["brand names"]', '      avoid: ["brand names"]\n      few_shot: {file: seeds.csv, k: 1}')

    def copy_first(r: LLMRequest) -> str:
        return "Corner bakery breakfast" if "repeating" not in r.messages[1][1] else f"Own words {r.seed}"

    g = PromptedGenerator(loads_spec(text, "s.yaml", tmp_path), backend=Scripted(text=copy_first), cache_dir=False)
    res = g.generate()
    d = res.summary["diversity"]["desc"]
    assert d["before"]["seed_copy_rate"] == 1.0 and d["after"]["seed_copy_rate"] == 0.0
    assert not res.data["desc"].str.contains("Corner bakery").any()


def test_cut_off_answers_are_retried_with_a_larger_token_budget(tmp_path: Path) -> None:
    class Cuts(Scripted):
        def complete_one(self, r: LLMRequest) -> LLMResult:
            res = super().complete_one(r)
            if not is_repair(r):
                return LLMResult(res.text[: len(res.text) // 2], meta={"finish_reason": "length"})
            return res

    be = Cuts()
    res = gen(be, tmp_path).generate()
    assert len(res.data) == 12 and res.summary["validity"]["repairs"] > 0
    # budgets come from the schema (desc: 160 characters -> 104 tokens; profile: bounded fields -> 28)
    first = {c.context: c.max_tokens for c in be.calls if not is_repair(c)}
    assert first == {"column:desc": 104, "column:profile": 28}
    assert {c.max_tokens for c in be.calls if is_repair(c)} == {208, 56}  # the repair got twice the budget
    cut = [c for c in be.calls if is_repair(c)][0]
    assert "got cut off" in cut.messages[-1][1]
    # a rerun through the cache takes the same path and gives the same table
    again = gen(Cuts(), tmp_path).generate()
    pd.testing.assert_frame_equal(res.data, again.data)


def test_spec_with_only_llm_columns_generates(tmp_path: Path) -> None:
    text = """\
name: only_llm
rows: 4
seed: 1
columns:
  - name: desc
    llm:
      prompt: "A short merchant line."
"""
    res = gen(Scripted(), tmp_path, text).generate()
    assert list(res.data.columns) == ["desc"] and len(res.data) == 4
