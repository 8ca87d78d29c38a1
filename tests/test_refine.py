"""The refinement loop: targets, checks, diagnoses, actions with diffs, stopping rules, outputs."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthloop.refine import (RaiseEpochs, ReplaceTooClose, SwitchModel, TargetsError, TooClose, load_targets, parse_targets,
                              refine, run_loop)
from synthloop.refine.actions import Action, diff
from synthloop.refine.engines import LearnedEngine, ipf_counts
from synthloop.refine.measure import MeasureContext

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "refine"


@pytest.fixture()
def people() -> pd.DataFrame:
    """A small table with an imbalanced sex column associated with occupation and hours."""
    rng = np.random.default_rng(0)
    n = 800
    sex = rng.choice(["Male", "Female"], n, p=[0.7, 0.3])
    occ = np.where(sex == "Male", rng.choice(["craft", "sales", "admin"], n, p=[0.6, 0.3, 0.1]),
                   rng.choice(["craft", "sales", "admin"], n, p=[0.1, 0.3, 0.6]))
    hours = np.round(np.where(sex == "Male", 44, 36) + rng.normal(0, 5, n), 1)
    return pd.DataFrame({"sex": sex, "occupation": occ, "hours": hours, "age": rng.integers(18, 70, n)})


# -- targets -----------------------------------------------------------------------------------------
def test_targets_typo_names_file_line_and_key(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("shares:\n  sex: {Female: 0.5, Male: 0.5}\nbudgte: {iterations: 3}\n")
    with pytest.raises(TargetsError, match=r"t\.yaml:3: .*budgte.*spelling"):
        load_targets(p)


def test_targets_shares_must_add_up_and_metrics_must_be_known():
    with pytest.raises(TargetsError, match="add up to 1"):
        parse_targets({"shares": {"sex": {"Female": 0.6, "Male": 0.6}}})
    with pytest.raises(TargetsError, match="unknown metric 'qualty'"):
        parse_targets({"metrics": {"qualty": {"min": 0.8}}})


def test_ipf_keeps_association_while_margins_move(people):
    levels, counts = ipf_counts(people, {"sex": {"Male": 0.5, "Female": 0.5}, "occupation": {"craft": 0.4, "sales": 0.3, "admin": 0.3}}, 1000)
    assert counts.sum() == 1000
    joint = pd.DataFrame(counts, index=levels[0], columns=levels[1])
    assert joint.sum(axis=1).to_dict() == {"Male": 500, "Female": 500}
    assert joint.loc["Male", "craft"] > joint.loc["Female", "craft"]  # the real association survives


# -- the learned loop ---------------------------------------------------------------------------------
def test_learned_loop_rebalances_shares_by_conditional_resampling(people, tmp_path):
    log = tmp_path / "log.jsonl"
    res = refine(people, {"parity": ["sex"], "metrics": {"pair_trends_drift": {"max": 0.1}}, "budget": {"iterations": 4}},
                 log_path=log)
    assert res.met and res.best_iteration == 2 and res.stop_reason == "all targets met"
    first = res.history[0]
    assert not first["met"] and any(d["kind"] == "ShareMissed" for d in first["diagnoses"])
    act = first["actions"][0]
    assert act["kind"] == "Resample" and "sex" in act["why"]
    assert {"path": "plan.sex.Female", "before": None, "after": 0.5} in act["diff"]
    assert res.data["sex"].value_counts(normalize=True).to_dict() == {"Male": 0.5, "Female": 0.5}
    assert len(res.data) == len(people)
    lines = log.read_text().splitlines()
    assert len(lines) == res.iterations and json.loads(lines[0])["iteration"] == 1


def test_no_targets_means_match_the_real_table(people):
    res = refine(people, {})
    assert [c["metric"] for c in res.history[0]["checks"]] == ["quality_score"]
    assert res.met and res.iterations == 1


def test_learned_loop_is_deterministic(people):
    t = {"min_shares": {"occupation": {"admin": 0.4}}, "budget": {"iterations": 3}}
    a, b = refine(people, t), refine(people, t)
    pd.testing.assert_frame_equal(a.data, b.data)
    assert a.data["occupation"].eq("admin").mean() >= 0.39


def test_range_target_resamples_inside_the_range(people):
    res = refine(people, {"ranges": {"hours": {"min": 35, "max": 45}}, "budget": {"iterations": 3}})
    assert res.met
    assert res.data["hours"].between(35, 45).all()
    assert res.history[0]["actions"][0]["kind"] == "Resample"


def test_too_close_rows_are_replaced_with_protection(people):
    eng = LearnedEngine(people, parse_targets({"metrics": {"exact_copy_rate": {"max": 0.0}}}))
    diag = TooClose(metric="exact_copy_rate", evidence={"value": 0.02})
    acts = eng.propose([diag], None, people)
    assert [type(a) for a in acts] == [ReplaceTooClose]
    acts[0].apply(eng.state)
    data = eng.generate(2)
    assert len(data) == len(people) and eng.last_protection["requested"] == len(people)


def test_fidelity_short_raises_epochs_for_deep_models_and_switches_copula(people):
    eng = LearnedEngine(people, parse_targets({"models": ["copula", "dp"]}))
    assert isinstance(eng._fidelity_action("short"), SwitchModel) and eng._fidelity_action("short").to == "dp"
    eng.state["model"] = "vae"
    eng.state["params"] = {"epochs": 10}
    act = eng._fidelity_action("short")
    assert isinstance(act, RaiseEpochs) and act.to == 20


# -- stopping rules with a scripted engine -----------------------------------------------------------
class _Noop(Action):
    def apply(self, state):
        state["n"] += 1


class ScriptedEngine:
    """Yields a fixed value per iteration for one metric target; always proposes a no-op action."""

    kind = "scripted"

    def __init__(self, values, sleep=0.0):
        self.values, self.sleep, self.state = values, sleep, {"n": 0}
        self.targets = parse_targets({"ranges": {"x": {"min": 0, "max": 1}}, "budget": {"iterations": len(values)}})

    def snapshot(self):
        return dict(self.state)

    def context(self):
        return MeasureContext(targets=self.targets)

    def generate(self, it):
        time.sleep(self.sleep)
        share_in = self.values[it - 1]
        k = int(round(share_in * 100))
        return pd.DataFrame({"x": [0.5] * k + [5.0] * (100 - k), "it": it})

    def propose(self, diagnoses, m, data):
        return [_Noop(why="scripted")]


def test_stops_after_two_iterations_without_gain_and_keeps_the_best():
    eng = ScriptedEngine([0.5, 0.8, 0.7, 0.79, 0.9, 0.95])
    res = run_loop(eng, eng.targets)
    assert res.stop_reason == "no gain for 2 iterations"
    assert res.iterations == 4 and res.best_iteration == 2
    assert (res.data["it"] == 2).all()
    assert res.history[0]["actions"][0]["diff"] == [{"path": "n", "before": 0, "after": 1}]


def test_time_budget_stops_the_loop():
    eng = ScriptedEngine([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], sleep=0.3)
    eng.targets = eng.targets.model_copy(update={"budget": eng.targets.budget.model_copy(update={"seconds": 0.5})})
    res = run_loop(eng, eng.targets)
    assert res.stop_reason.startswith("time budget spent") and res.iterations < 6


def test_diff_reports_changed_leaves_only():
    assert diff({"a": {"b": 1, "c": [1, 2]}}, {"a": {"b": 2, "c": [1, 2]}, "d": 3}) == [
        {"path": "a.b", "before": 1, "after": 2}, {"path": "d", "before": None, "after": 3}]


# -- prompted specs -----------------------------------------------------------------------------------
def test_prompted_spec_misses_share_and_range_then_loop_fixes_both():
    from synthloop.spec import load_spec

    spec = load_spec(EXAMPLES / "card_payments.yaml")
    res = refine(spec, load_targets(EXAMPLES / "card_targets.yaml"))
    assert res.met and res.iterations == 2
    kinds = [a["kind"] for a in res.history[0]["actions"]]
    assert kinds == ["AdjustQuota", "TightenRange"]
    paths = {d["path"] for a in res.history[0]["actions"] for d in a["diff"]}
    assert "targets.type.credit" in paths and "columns[2].sampler.lognormal.max" in paths
    assert res.data["type"].value_counts(normalize=True).round(3).to_dict() == {"credit": 0.6, "debit": 0.3, "transfer": 0.1}
    assert spec.quotas is False  # the caller's spec is not modified


class FakeLLM:
    """Deterministic backend: answers follow the JSON schema's bounds when it has them (as constrained
    decoding does), ignore the prompt otherwise, and repeat themselves at low temperature."""

    name = model_id = "fake"
    concurrency = 1
    supports_constraints = True

    def __init__(self):
        self.prompts = []

    def complete(self, requests):
        from synthloop.llm import LLMResult

        out = []
        for r in requests:
            self.prompts.append(r.messages[-1][1])
            props = r.schema["properties"]
            if "age" in props:
                lo, hi = props["age"].get("minimum", 0), props["age"].get("maximum", 130)
                age = int(lo + (r.seed % 97) / 96 * (hi - lo))
                out.append(LLMResult(text=json.dumps({"age": age, "segment": "retail"})))
            else:
                words = ["north", "river", "cedar", "amber", "quartz", "lumen", "harbor", "violet", "maple", "comet"]
                text = "a note" if r.temperature < 1.0 else f"{words[r.seed % 10]} {words[(r.seed // 10) % 10]} {r.seed % 1000}"
                out.append(LLMResult(text=json.dumps({"note": text})))
        return out

    def close(self):
        pass


def test_prompted_llm_columns_get_bounds_negative_constraint_and_temperature():
    from synthloop.spec import loads_spec

    spec = loads_spec("""
name: people
rows: 40
seed: 3
columns:
  - name: customer_id
    sampler: {sequence: {prefix: C, digits: 4}}
  - name: profile
    llm:
      prompt: "A customer profile."
      schema: {type: object, properties: {age: {type: integer}, segment: {enum: [retail, sme]}}}
  - name: note
    llm: {prompt: "A short note about a {{ segment }} customer.", max_chars: 60}
""")
    fake = FakeLLM()
    res = refine(spec, {"ranges": {"age": {"min": 18, "max": 95}}, "metrics": {"near_duplicate_rate": {"max": 0.2}},
                        "budget": {"iterations": 4}}, backend=fake, cache_dir=False)
    assert res.met, res.history[-1]["checks"]
    kinds = {a["kind"] for rec in res.history for a in rec["actions"]}
    assert {"TightenRange", "AddNegativeConstraint", "RaiseTemperature"} <= kinds
    assert any("age below 18" in p for p in fake.prompts)  # the negative constraint reached the prompt
    assert res.data["age"].between(18, 95).all()
    diag_kinds = {d["kind"] for d in res.history[0]["diagnoses"]}
    assert {"TargetMissed", "LowDiversity"} <= diag_kinds


# -- CLI and outputs ----------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "synthloop.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_refine_prompted_spec_writes_data_history_log_and_report(tmp_path):
    out = tmp_path / "card.csv"
    proc = _cli("refine", str(EXAMPLES / "card_payments.yaml"), "--targets", str(EXAMPLES / "card_targets.yaml"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "iteration 1" in proc.stdout and "AdjustQuota" in proc.stdout and "all targets met" in proc.stdout
    hist = json.loads((tmp_path / "card.history.json").read_text())
    assert hist["all_met"] and hist["iterations"] == 2
    assert len((tmp_path / "card.log.jsonl").read_text().splitlines()) == 2
    html = (tmp_path / "card.report.html").read_text()
    assert "Refinement history" in html and "fig-refine-trajectory" in html
    assert len(pd.read_csv(out)) == 1000


def test_cli_iteration_budget_keeps_best_and_strict_exits_1_when_missed(tmp_path):
    out = tmp_path / "card.csv"
    proc = _cli("refine", str(EXAMPLES / "card_payments.yaml"), "--targets", str(EXAMPLES / "card_targets.yaml"), "-o", str(out),
                "--iterations", "1", "--no-report", "--strict")
    assert proc.returncode == 1, proc.stderr
    assert "iteration budget spent" in proc.stdout and out.exists() and not (tmp_path / "card.report.html").exists()


def test_cli_refine_bad_targets_is_one_line_error(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("shares:\n  nosuch: {a: 1.0}\n")
    proc = _cli("refine", str(EXAMPLES / "card_payments.yaml"), "--targets", str(bad), "-o", str(tmp_path / "x.csv"))
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "nosuch" in proc.stderr and "Traceback" not in proc.stderr


def test_learned_report_gains_a_refinement_history_section(people, tmp_path):
    from synthloop.refine.outputs import write_outputs
    from synthloop.refine.loop import make_engine

    t = parse_targets({"parity": ["sex"], "budget": {"iterations": 2}})
    eng = make_engine(people, t)
    res = run_loop(eng, t)
    paths = write_outputs(res, eng, tmp_path / "people.csv")
    html = paths["report"].read_text()
    assert 'id="refinement-history"' in html and "fig-refine-trajectory" in html and 'id="fidelity"' in html
    assert json.loads(paths["history"].read_text())["best_iteration"] == 2


def test_detectable_columns_switch_the_model_then_stop_when_no_action_is_left(people):
    res = refine(people, {"metrics": {"detection_auc": {"max": 0.3}}, "models": ["copula", "dp"], "budget": {"iterations": 4}})
    first = res.history[0]
    det = next(d for d in first["diagnoses"] if d["kind"] == "DetectableColumns")
    assert det["columns"] and det["evidence"]["detection_auc"] > 0.3
    act = first["actions"][0]
    assert act["kind"] == "SwitchModel" and {"path": "model", "before": "copula", "after": "dp"} in act["diff"]
    assert res.history[1]["state"]["model"] == "dp"
    assert res.stop_reason in ("no action applies to the remaining gaps", "no gain for 2 iterations")
    assert not res.met
