"""judge_pass_rate / InstructionMissed / RewritePrompt: an LLM judge reads a sample of outputs against
their instruction and the LLM rewrites a missed prompt (scripted backend: no network, no model)."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from synthloop.errors import DataError
from synthloop.refine import parse_targets, refine
from synthloop.refine.judge import VERDICT_SCHEMA, check_rewrite

SPEC = """
name: notes
rows: 24
seed: 3
diversity: {max_rounds: 0}
columns:
  - name: segment
    sampler: {categorical: {retail: 0.5, sme: 0.5}}
  - name: note
    llm: {prompt: "A short note about a {{ segment }} customer.", max_chars: 80}
"""
GOOD = "A short note about a {{ segment }} customer. Name the segment ({{ segment }}) in the note."


class ScriptedLLM:
    """Writes notes that name the segment only when the prompt says 'Name the segment'; judges a note
    as passing when it names the segment of its instruction; answers rewrites from a script."""

    name = model_id = "scripted"
    concurrency = 1
    supports_constraints = True

    def __init__(self, rewrites):
        self.rewrites = list(rewrites)
        self.judge_requests, self.rewrite_requests = [], []

    def complete(self, requests):
        from synthloop.llm import LLMResult

        out = []
        for r in requests:
            user = r.messages[-1][1]
            props = r.schema["properties"]
            if "pass" in props:
                self.judge_requests.append(r)
                instruction, value = user.split("Generated value:")
                seg = re.search(r"\b(retail|sme)\b", instruction).group(1)
                ok = seg in value
                out.append(LLMResult(text=json.dumps({"pass": ok, "reason": "names the segment" if ok else f"the note never says {seg}"})))
            elif "prompt" in props:
                self.rewrite_requests.append(r)
                out.append(LLMResult(text=json.dumps({"prompt": self.rewrites.pop(0)})))
            else:
                seg = re.search(r"\b(retail|sme)\b", user).group(1)
                words = ["called", "wrote", "asked", "phoned", "emailed", "visited"]
                text = f"customer {words[r.seed % 6]} about order {r.seed % 997}"
                out.append(LLMResult(text=json.dumps({"note": f"{seg} {text}" if "Name the segment" in user else text})))
        return out

    def close(self):
        pass


def _spec():
    from synthloop.spec import loads_spec

    return loads_spec(SPEC)


TARGETS = {"metrics": {"judge_pass_rate": {"min": 0.9}}, "judge_sample": 6, "budget": {"iterations": 3}}


def test_judge_finds_the_instruction_missed_and_a_placeholder_keeping_rewrite_fixes_it():
    llm = ScriptedLLM(["A short note that names the customer's segment.", GOOD])
    spec = _spec()
    res = refine(spec, TARGETS, backend=llm, cache_dir=False)
    first = res.history[0]
    check = next(c for c in first["checks"] if c["metric"] == "judge_pass_rate")
    assert check["value"] == 0.0 and not check["met"]
    diag = next(d for d in first["diagnoses"] if d["kind"] == "InstructionMissed")
    assert diag["column"] == "note" and "never says" in diag["failures"][0]["reason"]
    act = first["actions"][0]
    assert act["kind"] == "RewritePrompt" and act["prompt"] == GOOD and "judge passes 0.00" in act["why"]
    assert "{{ segment }}" in act["refused"][0]["reason"]  # the first rewrite lost the placeholder
    assert act["diff"] == [{"path": "columns[1].llm.prompt", "before": "A short note about a {{ segment }} customer.", "after": GOOD}]
    assert res.met and res.best_iteration == 2
    assert (res.data.apply(lambda r: r["segment"] in r["note"], axis=1)).all()
    # the judge was asked with a schema-constrained yes/no + reason verdict, greedy, on a small sample
    assert all(r.schema == VERDICT_SCHEMA and r.temperature == 0.0 for r in llm.judge_requests)
    assert len(llm.judge_requests) == 2 * 6
    # after the rewrite, outputs are still held to the user's instruction, not to the rewritten prompt
    last = llm.judge_requests[-1].messages[-1][1]
    assert re.search(r"A short note about a (retail|sme) customer\.", last) and "Name the segment" not in last
    assert "{{ segment }}" in llm.rewrite_requests[0].messages[-1][1]
    assert spec.columns[1].llm.prompt == "A short note about a {{ segment }} customer."  # caller's spec untouched


def test_rewrites_that_drop_a_placeholder_are_refused_and_the_prompt_stays():
    llm = ScriptedLLM(["Write a note naming the segment."] * 10)
    res = refine(_spec(), TARGETS, backend=llm, cache_dir=False)
    act = res.history[0]["actions"][0]
    assert act["kind"] == "RewritePrompt" and act["prompt"] is None and act["diff"] == []
    assert len(act["refused"]) == 2 and all("drops the placeholder(s) {{ segment }}" in r["reason"] for r in act["refused"])
    assert "refused" in act["summary"] and "prompt stays" in act["why"]
    from synthloop.refine.report import history_html

    assert "refused rewrite: the rewrite drops the placeholder(s) {{ segment }}" in history_html(res)
    assert not res.met


@pytest.mark.parametrize("new, why", [
    ("About a {{ segment customer.", "not a valid Jinja2 template"),
    ("About a customer.", "drops the placeholder(s) {{ segment }}"),
    ("About a {{ segment }} customer in {{ city }}.", "reads variable(s) the old prompt does not: city"),
    ("About a {{ segment }} customer.", "the rewrite is the old prompt"),
    ("Name it: {{ segment | upper }} customer, segment {{ segment }}.", None),
])
def test_check_rewrite_keeps_every_placeholder(new, why):
    got = check_rewrite("About a {{ segment }} customer.", new)
    assert got == why if why is None else why in got


def test_judge_pass_rate_needs_a_prompted_spec():
    with pytest.raises(DataError, match="judge_pass_rate .* needs a prompted spec"):
        refine(pd.DataFrame({"a": [1, 2, 3]}), {"metrics": {"judge_pass_rate": {"min": 0.9}}})
    assert parse_targets({"metrics": {"judge_pass_rate": {"min": 0.9}}}).judge_sample == 8


def test_judge_llm_in_the_targets_judges_and_rewrites_while_the_spec_backend_generates():
    """A small generator judges itself leniently: `judge_llm` sends the judge and the rewriter to
    another model (here a loopback OpenAI-compatible server) while generation stays where it was."""
    from synthloop.llm.testing import FakeOpenAIServer

    def answer(body):
        props = body["response_format"]["json_schema"]["schema"]["properties"]
        if "pass" in props:
            user = body["messages"][-1]["content"]
            instruction, value = user.split("Generated value:")
            seg = re.search(r"\b(retail|sme)\b", instruction).group(1)
            return json.dumps({"pass": seg in value, "reason": "ok" if seg in value else f"the note never says {seg}"})
        return json.dumps({"prompt": GOOD})

    gen = ScriptedLLM([])
    with FakeOpenAIServer(answer=answer) as srv:
        targets = {**TARGETS, "judge_llm": {"backend": "openai", "model": "judge-large", "base_url": srv.base_url}}
        res = refine(_spec(), targets, backend=gen, cache_dir=False)
        asked = [r["model"] for r in srv.requests]
    assert gen.judge_requests == [] and gen.rewrite_requests == []  # the generator was never asked to judge
    assert asked and set(asked) == {"judge-large"} and len(asked) == 2 * 6 + 1  # two judged rounds + one rewrite
    assert res.history[0]["actions"][0]["prompt"] == GOOD and res.met
