"""Issue 17: autopilot on a mixed spec searches prompt variants of its LLM columns (scripted backend)."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna")

from synthloop.errors import SynthloopError  # noqa: E402
from synthloop.llm.base import BackendBase, LLMRequest, LLMResult  # noqa: E402
from synthloop.refine.autopilot import Autopilot  # noqa: E402
from synthloop.refine.targets import parse_targets  # noqa: E402
from synthloop.spec import load_spec  # noqa: E402

SPEC = """\
name: visits
rows: 20
seed: 1
learn: {data: visits.csv, model: copula}
columns:
  - name: note
    llm:
      prompt: "Clinical note for a {{ severity }} severity visit."
      max_chars: 200
      dedup: false
      style: false
      neighbours: 0
      checks: {must_mention: [department], max_attempts: 1}
"""
VARIANT = "Clinical note for a {{ severity }} severity visit to {{ department }}; name the department."


def visits(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    sev = np.where(rng.random(n) < 1 / (1 + np.exp(-(age - 55) / 8)), "high", "low")
    dept = rng.choice(["cardiology", "oncology", "ortho"], n)
    return pd.DataFrame({"age": age, "severity": sev, "department": dept,
                         "note": [f"Seen in {d} today." for d in dept]})


class Clerk(BackendBase):
    """Names the department only when the instruction asks for it and the temperature is at most 0.8
    (hotter answers wander off): the planted best prompt variant."""

    name = model_id = "clerk"
    supports_constraints = True

    def __init__(self) -> None:
        self.calls: list[LLMRequest] = []
        self._lock = threading.Lock()

    def complete_one(self, r: LLMRequest) -> LLMResult:
        with self._lock:
            self.calls.append(r)
        user = r.messages[-1][1]
        dept = next((d for d in ("cardiology", "oncology", "ortho") if f"visit to {d}" in user), None)
        wander = r.temperature > 0.8
        text = f"Patient seen in {dept} today, stable." if dept and "name the department" in user and not wander \
            else "Patient seen today, stable."
        return LLMResult(json.dumps({"note": text}), elapsed=0.001)


def setup(tmp_path: Path, **autopilot: object):
    visits().to_csv(tmp_path / "visits.csv", index=False)
    (tmp_path / "spec.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "spec.yaml")
    tg = parse_targets({"objective": {"target": "severity", "metric": "roc_auc", "mode": "synthetic", "bootstrap": 20},
                        "autopilot": {"models": ["copula"], "gaps": False, "relabel": False, "oversample": False,
                                      "floors": {"agreement": {"min": 0.95}}, "llm_rows": 40,
                                      "prompts": {"note": {"variants": [VARIANT], "temperature": [0.3, 0.95]}},
                                      **autopilot}}, "t.yaml")
    return spec, tg, pd.read_csv(tmp_path / "visits.csv")


def test_the_search_finds_the_prompt_variant_whose_texts_agree_with_their_rows(tmp_path):
    spec, tg, df = setup(tmp_path)
    backend = Clerk()
    res = Autopilot(tg, 300, tmp_path / "j.journal", max_trials=10, spec=spec, backend=backend).run(df)
    first = res.trials[0]
    assert first["params"]["prompt:note:variant"] == 0  # trial 0 is the spec as written...
    assert first["figures"]["agreement"] < 0.2 and not first["feasible"]  # ...whose texts never name the department
    best = res.best
    assert best is not None and best["params"]["prompt:note:variant"] == 1
    assert best["params"]["prompt:note:temperature"] <= 0.8 and best["figures"]["agreement"] >= 0.95
    assert all(t["figures"]["agreement"] >= 0.95 for t in res.trials if t["feasible"])
    rows = res.data.dropna(subset=["note"])  # llm_rows: the first 40 rows carry texts
    assert len(rows) == 40 and all(d in n for d, n in zip(rows["department"], rows["note"]))
    # the searched temperature reached the backend
    temps = {round(c.temperature, 6) for c in backend.calls}
    assert round(best["params"]["prompt:note:temperature"], 6) in temps


def test_a_spec_autopilot_cannot_run_is_one_clear_error(tmp_path):
    spec, tg, df = setup(tmp_path)
    with pytest.raises(SynthloopError, match="autopilot.prompts.nope: not an LLM column"):
        bad = tg.model_copy(update={"autopilot": tg.autopilot.model_copy(update={"prompts": {"nope": tg.autopilot.prompts["note"]}})})
        Autopilot(bad, 60, tmp_path / "k.journal", max_trials=1, spec=spec, backend=Clerk()).run(df)
    with pytest.raises(SynthloopError, match="needs a mixed spec"):
        (tmp_path / "plain.yaml").write_text("name: p\ncolumns:\n  - name: note\n    llm: {prompt: 'A clinical note.'}\n")
        Autopilot(tg, 60, tmp_path / "l.journal", max_trials=1, spec=load_spec(tmp_path / "plain.yaml"), backend=Clerk()).run(df)
    with pytest.raises(SynthloopError, match="agreement of LLM texts needs a mixed spec"):
        Autopilot(tg, 60, tmp_path / "m.journal", max_trials=1).run(df)


def test_the_command_takes_a_spec_and_refuses_one_it_cannot_search_in_one_line(tmp_path):
    from conftest import one_line_error, run_cli

    visits().to_csv(tmp_path / "visits.csv", index=False)
    (tmp_path / "plain.yaml").write_text("name: p\ncolumns:\n  - name: note\n    llm: {prompt: 'A clinical note.'}\n")
    (tmp_path / "t.yaml").write_text("objective: {target: severity, metric: roc_auc}\n")
    r = run_cli("autopilot", str(tmp_path / "visits.csv"), "-t", str(tmp_path / "t.yaml"), "-o", str(tmp_path / "o.csv"),
                "--spec", str(tmp_path / "plain.yaml"))
    assert "needs a mixed spec (a learn: block)" in one_line_error(r)
