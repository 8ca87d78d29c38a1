"""Row-text agreement: checks on every generated cell, regeneration with the failure stated,
failing cells reported (never written), agreement rates in the summary; no placeholder or control
character reaches the output; templated rules and avoid lists; hidden helper columns."""
from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Callable

import pytest

from synthloop.generate.agreement import AgreementChecker, mentions, sanity_failures
from synthloop.generate.runner import PromptedGenerator
from synthloop.llm.base import BackendBase, LLMRequest, LLMResult
from synthloop.llm.testing import sample_from_schema
from synthloop.spec import SpecError, loads_spec
from synthloop.spec.models import Checks

SPEC = """\
name: visits
rows: 10
seed: 5
columns:
  - name: department
    sampler: {categorical: {cardiology: 0.6, pediatrics: 0.3, emergency: 0.1}}
  - name: severity
    sampler: {categorical: {low: 0.5, medium: 0.3, high: 0.2}}
  - name: note
    llm:
      prompt: "Note of a {{ department }} visit of {{ severity }} severity."
      dedup: false
      avoid: ["naming the {{ department }} head nurse"]
      checks:
        must_mention: [department]
        agrees_with: {severity: severity}
        forbid_regex: ['\\bDr\\.? [A-Z]']
        max_attempts: 3
"""


class Scripted(BackendBase):
    """Answers `text(request, attempt_index)` for text columns, schema samples otherwise."""

    name = model_id = "scripted"
    supports_constraints = True

    def __init__(self, text: Callable[[LLMRequest], str] | None = None, concurrency: int = 1) -> None:
        self.text, self.concurrency = text, concurrency
        self.calls: list[LLMRequest] = []
        self._lock = threading.Lock()

    def complete_one(self, r: LLMRequest) -> LLMResult:
        with self._lock:
            self.calls.append(r)
        obj = sample_from_schema(r.schema, random.Random(r.seed))
        if self.text is not None and "note" in obj:
            return LLMResult(self.text(r), elapsed=0.001, prompt_tokens=50, completion_tokens=10)
        return LLMResult(json.dumps(obj), elapsed=0.001, prompt_tokens=50, completion_tokens=10)


def task(r: LLMRequest) -> str:
    return r.messages[-1][1].split("Task: ", 1)[1].split("\n", 1)[0]


def dept_sev(r: LLMRequest) -> tuple[str, str]:
    words = task(r).split()
    return words[3], words[6]


def is_repair(r: LLMRequest) -> bool:
    return "The last one was not usable because" in r.messages[-1][1]


def test_checker_finds_missing_mentions_contradictions_patterns_and_placeholders() -> None:
    c = AgreementChecker(Checks(must_mention=["department"], agrees_with={"severity": "triage.severity"},
                                regex=["^[A-Z]"], forbid_regex=[r"\d{4}-\d{2}-\d{2}"], expressions=["len(text) < 80"],
                                min_words=3),
                         {"triage.severity": ["low", "medium", "high"]})
    row = {"department": "in_store", "triage": {"severity": "high"}}
    assert c.check("Seen in store, triaged as high priority.", row) == []
    fails = c.check("triaged as low on 2024-01-02", row)
    assert any('department "in_store"' in f for f in fails) and any('severity "low"' in f for f in fails)
    assert any("required pattern" in f for f in fails) and any("forbid" in f for f in fails)
    assert "2024-01-02" not in " ".join(fails)  # a forbidden match is never quoted back to the model
    assert c.check("In store " + "word " * 30, row) and any("len(text) < 80" in f for f in c.check("In store " + "word " * 30, row))
    for bad in ("<text>", "N/A", "20240101 1530", "Invalid JSON (Invalid control character at 178)"):
        assert sanity_failures(bad), bad
    assert mentions("Blood pressure 138 mmHg", 138.0) and not mentions("highly", "high")


def test_failing_cell_is_regenerated_with_the_failure_stated(tmp_path: Path) -> None:
    def text(r: LLMRequest) -> str:
        dept, sev = dept_sev(r)
        if not is_repair(r):  # first answers name neither the department nor the right severity
            return json.dumps({"note": f"Patient seen, triaged as {'low' if sev != 'low' else 'high'}."})
        return json.dumps({"note": f"Seen in {dept}, {sev} severity."})

    be = Scripted(text)
    res = PromptedGenerator(loads_spec(SPEC), backend=be, cache_dir=tmp_path / "c").generate()
    assert len(res.data) == 10 and not res.failed
    for _, row in res.data.iterrows():
        assert row["department"] in row["note"] and row["severity"] in row["note"]
    repairs = [c for c in be.calls if is_repair(c)]
    assert len(repairs) == 10
    note = repairs[0].messages[-1][1].rsplit("\n\n", 1)[1]
    assert "does not mention the department" in note and "triaged as" not in note  # reason, not the answer
    ag = res.summary["agreement"]["note"]
    assert ag["cells_checked"] == 10 and ag["agreed_first_try"] == 0 and ag["agreed_after_repairs"] == 1
    assert ag["written_rows_agreement"] == 1.0
    assert res.summary["requests"]["count"] == 20 and res.summary["requests"]["tokens_in"] == 20 * 50
    assert res.summary["requests"]["repairs_by_reason"] == {"note:must_mention": 10}  # why each repair was asked
    assert res.summary["requests"]["tokens_in_evaluated"] == 20 * 50  # a backend that reuses nothing


def test_cell_that_keeps_failing_is_reported_never_written(tmp_path: Path) -> None:
    def text(r: LLMRequest) -> str:
        dept, sev = dept_sev(r)
        return json.dumps({"note": f"Seen in {dept} by Dr. Smith." if dept == "pediatrics" else f"Seen in {dept}."})

    res = PromptedGenerator(loads_spec(SPEC), backend=Scripted(text), cache_dir=False).generate()
    assert len(res.failed) == 3 and not res.data["department"].eq("pediatrics").any()
    assert all(f["column"] == "note" and "forbid" in f["error"] for f in res.failed)
    ag = res.summary["agreement"]["note"]
    assert ag["cells_failed"] == 3 and ag["written_rows_agreement"] == 1.0
    assert res.summary["timing"]["rows_per_second"] > 0 and res.summary["rows_written"] == 7


def test_placeholder_copies_and_control_characters_never_reach_the_output(tmp_path: Path) -> None:
    spec = SPEC.replace("        max_attempts: 3\n", "        max_attempts: 3\n  - name: triage\n    llm:\n"
                        "      prompt: \"Triage of {{ note }}\"\n      schema: {type: object, properties: {reason: {type: string}}}\n")

    def text(r: LLMRequest) -> str:
        dept, sev = dept_sev(r)
        return '{"note": "<text>"}' if not is_repair(r) else '{"note": "Seen in ' + dept + ',\n' + sev + '\tcase.\x01"}'

    class Raw(Scripted):
        def complete_one(self, r: LLMRequest) -> LLMResult:
            if "reason" in json.dumps(r.schema):
                return LLMResult('{"reason": "line one\nline two\u0007"}')
            return super().complete_one(r)

    res = PromptedGenerator(loads_spec(spec), backend=Raw(text), cache_dir=False).generate()
    assert len(res.data) == 10
    for col in ("note", "reason"):
        assert not res.data[col].str.contains(r"[\x00-\x1f\x7f<>]", regex=True).any(), res.data[col].tolist()
    assert res.data["reason"].iloc[0].startswith("line one line two")


def test_avoid_list_and_rules_are_templated_and_unknown_placeholders_refused(tmp_path: Path) -> None:
    spec = loads_spec(SPEC.replace('avoid: ["naming', 'constraints: ["Say it is {{ severity }}."]\n      avoid: ["naming'))
    be = Scripted()
    g = PromptedGenerator(spec, backend=be, cache_dir=False)
    (_, p, _), = g.prompts_for_row(0, run_upstream=False)
    user = p.messages[1][1]
    row = g.plan().frame.iloc[0]
    assert f"- naming the {row['department']} head nurse" in user and f"- Say it is {row['severity']}." in user
    assert "{{" not in user
    # the fixed part comes first, the row's own part last (prefix caching)
    assert user.index("Reply with one JSON object") < user.index("Rules for this record") < user.index("Task: ")
    with pytest.raises(SpecError, match=r"columns\[2\]\.llm\.avoid\[0\]: unknown column 'ward'.*placeholder"):
        loads_spec(SPEC.replace("{{ department }} head", "{{ ward }} head"))
    with pytest.raises(SpecError, match=r"agrees_with.*no known set of values"):
        loads_spec(SPEC.replace("agrees_with: {severity: severity}", "agrees_with: {severity: note}"))


def test_hidden_helper_columns_are_read_but_not_written(tmp_path: Path) -> None:
    spec = loads_spec(SPEC.replace("  - name: severity\n", "  - name: severity\n    hidden: true\n"))
    res = PromptedGenerator(spec, backend=Scripted(lambda r: json.dumps({"note": "Seen in {} with {} severity.".format(*dept_sev(r))})),
                            cache_dir=False).generate(out=tmp_path / "o.csv")
    assert "severity" not in res.data.columns and list(res.data.columns) == ["department", "note"]
    assert res.data["note"].str.contains("low|medium|high").all()


def test_run_figures_add_up_under_concurrency_and_model_defaults_to_the_served_one(tmp_path: Path) -> None:
    pytest.importorskip("openai")
    from synthloop.llm.testing import FakeOpenAIServer

    text = SPEC.replace("      checks:\n", "      checks_off:\n").split("      checks_off:\n")[0]
    text = text.replace("seed: 5\n", "seed: 5\nllm: {backend: openai, concurrency: 4}\n")
    with FakeOpenAIServer(delay=0.02) as srv:
        spec = loads_spec(text.replace("backend: openai,", f"backend: openai, base_url: '{srv.base_url}',"))
        gen = PromptedGenerator(spec, cache_dir=False)  # no model named: the server lists exactly one
        res = gen.generate(12)
        assert gen.backend.model == "fake"
        t = res.summary["timing"]
        assert res.summary["requests"]["count"] == len(srv.requests) >= 12
        assert res.summary["requests"]["tokens_in"] == 10 * len(srv.requests)
        assert 0 < t["backend_seconds"] <= t["wall_seconds"] and t["overhead_seconds"] >= 0
        assert t["backend_request_seconds"] >= t["backend_seconds"] - 1e-3  # concurrent requests count once
        assert t["rows_per_second"] == pytest.approx(res.summary["rows_written"] / t["wall_seconds"], rel=0.01)


def test_busy_seconds_is_the_union_of_intervals() -> None:
    from synthloop.generate.runner import busy_seconds

    assert busy_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.7)]) == pytest.approx(4.0)
    assert busy_seconds([]) == 0


def test_interrupted_run_keeps_answered_cells_in_the_cache(tmp_path: Path) -> None:
    answered: list[str] = []

    class Dies(Scripted):
        def complete_one(self, r: LLMRequest) -> LLMResult:
            if len(self.calls) >= 5:
                raise KeyboardInterrupt
            res = super().complete_one(r)
            answered.append(r.cache_key(self.model_id))
            return res

    from synthloop.generate.runner import GenerationInterrupted

    text = lambda r: json.dumps({"note": "Seen in {}, {} severity.".format(*dept_sev(r))})  # noqa: E731
    with pytest.raises(GenerationInterrupted):
        PromptedGenerator(loads_spec(SPEC), backend=Dies(text), cache_dir=tmp_path / "c").generate(out=tmp_path / "o.csv")
    be = Scripted(text)
    res = PromptedGenerator(loads_spec(SPEC), backend=be, cache_dir=tmp_path / "c").generate(out=tmp_path / "o.csv")
    assert len(answered) == 5 and res.summary["cache"]["hits"] >= len(answered) - res.summary["resumed_rows"]
    assert not {c.cache_key("scripted") for c in be.calls} & set(answered)  # nothing answered was asked again


def test_fixed_answer_start_is_prefilled_and_the_rest_has_a_grammar() -> None:
    from synthloop.llm.grammar import prefill_plan

    pinned = {"type": "object", "properties": {"severity": {"enum": ["medium"]}, "reason": {"type": "string", "minLength": 8, "maxLength": 60}},
              "required": ["severity", "reason"], "additionalProperties": False}
    prefix, grammar = prefill_plan(pinned)  # type: ignore[misc]
    assert prefix == '{"severity": "medium", "reason": "' and "char{8,60}" in grammar and r"\x00-\x1F" in grammar
    text = {"type": "object", "properties": {"note": {"type": "string", "minLength": 40, "maxLength": 100}}, "required": ["note"]}
    prefix, grammar = prefill_plan(text, 'Cardiology "A" visit:')  # type: ignore[misc]
    assert prefix == '{"note": "Cardiology \\"A\\" visit:' and "char{19,79}" in grammar
    assert prefill_plan({"type": "object", "properties": {"a": {"type": "array"}}, "required": ["a"]}) is None
    assert prefill_plan({"type": "object", "properties": {"a": {"type": "string"}}}) is None  # not required


def test_text_start_is_written_when_the_backend_cannot_prefill(tmp_path: Path) -> None:
    spec = loads_spec(SPEC.replace("      dedup: false\n", "      dedup: false\n      start: \"{{ department | capitalize }} visit:\"\n"))
    be = Scripted(lambda r: json.dumps({"note": "seen in {}, {} severity.".format(*dept_sev(r))}))
    res = PromptedGenerator(spec, backend=be, cache_dir=False).generate()
    assert all(n.startswith(d.capitalize() + " visit: seen in") for n, d in zip(res.data["note"], res.data["department"]))
    assert {c.start for c in be.calls} == {d.capitalize() + " visit:" for d in res.data["department"]}


def test_cli_overrides_threads_and_embedded_model() -> None:
    from synthloop.generate.overrides import apply_overrides

    spec = apply_overrides(loads_spec(SPEC), None, None, None, None, None, False, threads=1, llm_model="gemma3-270m")
    assert spec.llm.threads == 1 and spec.llm.model == "gemma3-270m"
    with pytest.raises(SpecError, match="--threads must be at least 1"):
        apply_overrides(loads_spec(SPEC), None, None, None, None, None, False, threads=0)
    with pytest.raises(SpecError, match="--llm-model picks the embedded model"):
        apply_overrides(loads_spec(SPEC), "openai", None, None, None, None, False, llm_model="gemma3-270m")


def test_error_lines_keep_square_brackets() -> None:
    """`pip install 'synthloop[llm]'` must reach the terminal whole (rich markup would eat [llm])."""
    from rich.console import Console

    from synthloop.commands._common import styled

    con = Console(record=True, width=200)
    con.print(styled(("error:", "red"), " ", "install it with pip install 'synthloop[llm]'"), soft_wrap=True)
    assert "'synthloop[llm]'" in con.export_text()


def test_llm_judge_saying_no_regenerates_the_cell(tmp_path: Path) -> None:
    spec = loads_spec(SPEC.replace("        max_attempts: 3\n", "        max_attempts: 3\n        judge: \"Does it fit a {{ severity }} case?\"\n"))

    class Judge(Scripted):
        name = model_id = "judge"

        def complete_one(self, r: LLMRequest) -> LLMResult:
            self.calls.append(r)
            verdict = "no" if "first draft" in r.messages[-1][1] else "yes"
            return LLMResult(json.dumps({"answer": verdict}))

    def text(r: LLMRequest) -> str:
        dept, sev = dept_sev(r)
        return json.dumps({"note": f"Seen in {dept}, {sev} severity" + ("." if is_repair(r) else ", first draft.")})

    judge = Judge()
    res = PromptedGenerator(spec, backend=Scripted(text), cache_dir=False, judge_backend=judge).generate()
    assert len(res.data) == 10 and not res.data["note"].str.contains("first draft").any()
    assert len(judge.calls) == 20 and judge.calls[0].schema["properties"]["answer"]["enum"] == ["yes", "no"]
    assert "Question: Does it fit a" in judge.calls[0].messages[-1][1]
    assert res.summary["agreement"]["note"]["agreed_first_try"] == 0


def test_round_and_int_give_whole_numbers() -> None:
    import pandas as pd

    from synthloop.generate.expr import parse_expression

    df = pd.DataFrame({"x": [137.6, 2.4]})
    assert parse_expression("concat(round(x), ' mmHg')").evaluate(df).tolist() == ["138 mmHg", "2 mmHg"]
    assert parse_expression("int(x)").evaluate(df).tolist() == [138, 2]
    assert parse_expression("round(x, 1)").evaluate(df).tolist() == [137.6, 2.4]


def test_single_character_forbid_patterns_are_left_out_by_the_grammar(tmp_path: Path) -> None:
    """`forbid_regex: ['\\d']` becomes characters the decoding grammar excludes (the first answer
    passes instead of being regenerated); patterns that are more than one character class stay checks."""
    from synthloop.llm.grammar import EXCLUDE, segment_plan

    c = AgreementChecker(Checks(forbid_regex=[r"\d", r"[$%]+", r"\bDr\.? [A-Z]", r"\d{4}"]), {})
    ranges = c.forbidden_chars()
    assert (0x30, 0x39) in ranges and (ord("$"), ord("%")) in ranges  # "$" and "%" are neighbours
    assert not any(a <= ord("D") <= b for a, b in ranges)  # "Dr. X" is a check, not a character ban
    assert all(not any(a <= ord(ch) <= b for a, b in ranges) for ch in "abc XYZ.,")

    class Prefilling(Scripted):
        supports_prefill = True

    spec = SPEC.replace("forbid_regex: ['\\bDr\\.? [A-Z]']", "forbid_regex: ['\\d']")
    be = Prefilling(lambda r: json.dumps({"note": "Seen in {}, {} severity.".format(*dept_sev(r))}))
    res = PromptedGenerator(loads_spec(spec), backend=be, cache_dir=False).generate()
    assert len(res.data) == 10 and not res.failed
    prop = be.calls[0].schema["properties"]["note"]  # type: ignore[index]
    assert [0x30, 0x39] in prop[EXCLUDE]
    prefix, segs = segment_plan(be.calls[0].schema, "")  # type: ignore[arg-type,misc]
    rule = [g.grammar for g in segs if g.grammar][0]
    chars = [line for line in rule.splitlines() if line.startswith("charx")][0]
    assert prefix == '{"note": "' and r"\x30-\x39" in chars and '"u"' not in chars  # no \u0031 escape either
    # a backend that cannot enforce it gets the plain schema (an OpenAI-compatible server may refuse unknown keys)
    plain = Scripted(lambda r: json.dumps({"note": "Seen in {}, {} severity.".format(*dept_sev(r))}))
    PromptedGenerator(loads_spec(spec), backend=plain, cache_dir=False).generate()
    assert EXCLUDE not in plain.calls[0].schema["properties"]["note"]  # type: ignore[index]


def test_answers_split_into_fixed_text_and_values_that_end_when_complete() -> None:
    from synthloop.llm.grammar import Segment, segment_plan, value_done

    schema = {"type": "object", "properties": {"severity": {"enum": ["medium"]}, "channel": {"enum": ["in", "in_store"]},
              "recurring": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 20}},
              "required": ["severity", "channel", "recurring", "reason"], "additionalProperties": False}
    prefix, segs = segment_plan(schema)  # type: ignore[misc]
    assert prefix == '{"severity": "medium", "channel": '
    assert [g.text for g in segs if not g.grammar] == [', "recurring": ', ', "reason": "', "}"]
    assert [g.kind for g in segs if g.grammar] == ["options", "options", "string"]
    opts = segs[0]
    assert value_done(opts, '"in_store"') and value_done(opts, '"in"') and not value_done(opts, '"in')
    text = Segment(kind="string", options=("open",))
    assert value_done(text, 'Chest pain"') and not value_done(text, 'say \\"') and not value_done(text, 'a \\"x')
    assert value_done(text, 'ends with a backslash \\\\"')
    # a free number's end is not known before the next character: the rest is one grammar to the end
    free = {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string"}}, "required": ["n", "s"]}
    prefix, segs = segment_plan(free)  # type: ignore[misc]
    assert prefix == '{"n": ' and [g.kind for g in segs] == ["rest"]


def test_planned_values_are_rules_only_for_backends_that_do_not_write_them() -> None:
    spec = loads_spec(SPEC.replace("columns:\n", "targets: {band: {a: 0.5, b: 0.5}}\ncolumns:\n", 1).replace(
        "  - name: note\n", "  - name: triage\n    llm:\n      prompt: \"Triage in {{ department }}.\"\n"
        "      schema: {type: object, properties: {band: {enum: [a, b]}, reason: {type: string}}}\n  - name: note\n", 1))

    class Prefilling(Scripted):
        supports_prefill = True

    for backend, rule in ((Scripted(), True), (Prefilling(), False)):
        gen = PromptedGenerator(spec, backend=backend, cache_dir=False)
        (name, prompt, _), = gen.prompts_for_row(0, columns=["triage"])
        assert name == "triage" and prompt.schema["properties"]["band"]["enum"] in (["a"], ["b"])  # pinned either way
        assert ('"band" must be' in prompt.messages[-1][1]) is rule
