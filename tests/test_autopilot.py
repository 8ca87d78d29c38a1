"""Issue 17: downstream objectives, the autopilot search (floors, resume) and the data gap finder."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna")

from synthloop.errors import SynthloopError  # noqa: E402
from synthloop.evaluate.gaps import find_gaps  # noqa: E402
from synthloop.refine.autopilot import Autopilot, parse_budget  # noqa: E402
from synthloop.refine.objective import Judge, recall_at_precision  # noqa: E402
from synthloop.refine.targets import parse_targets  # noqa: E402
from synthloop.schema import infer_schema  # noqa: E402

from conftest import one_line_error, run_cli  # noqa: E402


def rare_table(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """About 9% positives; the label depends on x1 and on group d."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    g = rng.choice(list("abcd"), n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(-4.0 + 2.0 * x1 + 1.5 * (g == "d"))))).astype(int)
    return pd.DataFrame({"x1": x1.round(3), "x2": x2.round(3), "g": g, "y": y})


def targets(**autopilot):  # floor_z and selection_z may be given too
    return parse_targets({"objective": {"target": "y", "metric": "recall_at_precision", "precision": 0.5, "mode": "synthetic"},
                          "autopilot": {"models": ["copula"], "gaps": False, "relabel": False, **autopilot}}, "t.yaml")


def test_recall_at_precision_reads_the_best_recall_above_the_precision():
    y = np.array([1, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    assert recall_at_precision(y, s, 0.75) == pytest.approx(1.0)  # top 4: 3 of 4 positives, all positives found
    assert recall_at_precision(y, s, 0.9) == pytest.approx(2 / 3)


def test_oversampling_the_rare_class_raises_recall_and_the_search_finds_it(tmp_path):
    ap = Autopilot(targets(floors={}), 300, tmp_path / "j.journal", max_trials=8)
    res = ap.run(rare_table())
    default = res.trials[0]
    assert default["params"]["rare_share"] == pytest.approx(ap.natural_share)  # trial 0 is the unsearched setting
    best = res.best
    assert best["params"]["rare_share"] > ap.natural_share + 0.1
    assert best["figures"]["score"] >= default["figures"]["score"] + 0.1
    assert res.data is not None and (res.data["y"] == 1).mean() > ap.natural_share + 0.1
    assert best["number"] in res.pareto


def test_the_reported_best_trial_never_breaks_a_floor(tmp_path):
    ap = Autopilot(targets(floors={"quality_score": {"min": 0.93}}), 300, tmp_path / "j.journal", max_trials=6)
    res = ap.run(rare_table())
    assert any(not t["feasible"] for t in res.trials)  # the floor bites...
    assert all(t["figures"]["quality_score"] >= 0.93 for t in res.trials if t["feasible"])
    assert res.best["feasible"] and res.best["figures"]["quality_score"] >= 0.93  # ...and the best keeps it
    broken = [t for t in res.trials if not t["feasible"]]
    assert all("quality_score" in t["ended"] and "below 0.93" in t["ended"] for t in broken)
    none_ok = Autopilot(targets(floors={"quality_score": {"min": 0.999}}), 300, tmp_path / "k.journal", max_trials=2).run(rare_table())
    assert none_ok.best is None and none_ok.data is None


def test_a_stopped_search_resumes_from_its_journal(tmp_path):
    journal = tmp_path / "j.journal"
    first = Autopilot(targets(floors={}), 300, journal, max_trials=3).run(rare_table())
    lines: list[str] = []
    second = Autopilot(targets(floors={}), 300, journal, max_trials=5, log=lines.append).run(rare_table())
    assert len(first.trials) == 3 and len(second.trials) == 5
    assert [t["params"] for t in second.trials[:3]] == [t["params"] for t in first.trials]
    assert any("resuming: 3 trials" in line for line in lines)
    with pytest.raises(SynthloopError, match="belongs to a search on other data"):
        Autopilot(targets(floors={}), 300, journal, max_trials=6).run(rare_table(seed=1))


def test_the_gap_finder_returns_a_planted_weak_slice():
    rng = np.random.default_rng(3)
    n = 2400
    x = rng.normal(size=n)
    g = rng.choice(list("abcd"), n)
    y = np.where(g == "c", rng.integers(0, 2, n), (x > 0).astype(int))  # group c: labels are coin flips
    df = pd.DataFrame({"x": x.round(3), "g": g, "y": y})
    obj = parse_targets({"objective": {"target": "y", "metric": "roc_auc"}}, "t").objective
    judge = Judge(obj, infer_schema(df), df.iloc[1800:])
    gaps = find_gaps(judge, df.iloc[:1800])
    top = gaps["slices"][0]
    assert top.label == "g = c" and top.condition == {"g": "c"}
    assert top.loss > 2 * gaps["overall_loss"]


def test_budget_text_and_bad_targets_files_are_one_line_errors(tmp_path):
    assert parse_budget("30m") == 1800 and parse_budget("90s") == 90 and parse_budget("1.5h") == 5400
    with pytest.raises(SynthloopError, match="--budget"):
        parse_budget("soon")
    data = tmp_path / "d.csv"
    rare_table(200).to_csv(data, index=False)
    bad = tmp_path / "t.yaml"
    bad.write_text("objective:\n  target: y\n  metric: recal\n")
    line = one_line_error(run_cli("autopilot", str(data), "-t", str(bad), "-o", str(tmp_path / "o.csv")))
    assert f"{bad}:3: objective.metric" in line
    bad.write_text("autopilot:\n  floors: {dcr: {min: 0.4}}\nobjective: {target: y}\n")
    assert "unknown floor 'dcr'" in one_line_error(run_cli("autopilot", str(data), "-t", str(bad), "-o", str(tmp_path / "o.csv")))
    bad.write_text("objective: {target: nope}\n")
    assert "objective.target: column 'nope'" in one_line_error(run_cli("autopilot", str(data), "-t", str(bad), "-o", str(tmp_path / "o.csv")))


def _command(tmp_path, *extra):
    data, t = tmp_path / "d.csv", tmp_path / "t.yaml"
    rare_table(600).to_csv(data, index=False)
    t.write_text("objective: {target: y, metric: roc_auc, folds: 2}\nautopilot: {models: [copula], floors: {dcr_share: {min: 0.3, max: 0.7}}}\n")
    r = run_cli("autopilot", str(data), "-t", str(t), "-o", str(tmp_path / "best.csv"), "--trials", "3", "--budget", "5m", *extra)
    assert r.returncode == 0, r.stderr
    assert "best trial" in r.stdout and "pareto front" in r.stdout
    assert (tmp_path / "best.csv").exists() and (tmp_path / "best.autopilot.json").exists() and (tmp_path / "best.journal").exists()


def test_autopilot_command_writes_the_best_rows_and_the_search_record(tmp_path):
    _command(tmp_path, "--no-report")


@pytest.mark.slow
def test_autopilot_report_has_the_pareto_plot_and_why_each_trial_ended(tmp_path):
    _command(tmp_path)
    html = (tmp_path / "best.report.html").read_text()
    assert 'id="fig-autopilot-pareto"' in html and "why it ended" in html


def test_the_judge_can_be_any_estimator_by_import_path_or_a_user_command(tmp_path):
    df = rare_table(800)
    schema = infer_schema(df)
    hgb = parse_targets({"objective": {"target": "y", "metric": "roc_auc"}}, "t").objective
    lr = parse_targets({"objective": {"target": "y", "metric": "roc_auc", "model": "sklearn.linear_model.LogisticRegression",
                                      "model_params": {"max_iter": 200}}}, "t").objective
    for obj in (hgb, lr):
        s = Judge(obj, schema, df.iloc[600:]).score(df.iloc[:600])
        assert 0.7 < s["score"] <= 1.0 and len(s["folds"]) == 3
    script = tmp_path / "judge.py"
    script.write_text("import sys, pandas as pd\ntr = pd.read_csv(sys.argv[1]); te = pd.read_csv(sys.argv[2])\n"
                      "print('rows', len(tr))\nprint(round(len(tr) / 1000 + len(te) / 1e6, 6))\n")
    cmd = parse_targets({"objective": {"target": "y", "command": f"{sys.executable} {script} {{train}} {{test}}"}}, "t").objective
    assert Judge(cmd, schema, df.iloc[600:]).score(df.iloc[:600])["score"] == pytest.approx(0.6 + 200 / 1e6)
    bad = parse_targets({"objective": {"target": "y", "command": f"{sys.executable} -c pass {{train}}"}}, "t").objective
    with pytest.raises(SynthloopError, match="without a score"):
        Judge(bad, schema, df.iloc[600:]).score(df.iloc[:600])


def test_the_example_targets_and_policy_load():
    from pathlib import Path

    from synthloop.certify import load_policy
    from synthloop.refine.targets import load_targets

    ex = Path(__file__).resolve().parents[1] / "examples" / "autopilot"
    assert load_targets(ex / "fraud.yaml").objective.metric == "recall_at_precision"
    assert "dp_epsilon" not in load_policy(ex / "policy.yaml").criteria


def test_the_objective_is_deterministic_and_a_gain_has_a_paired_standard_error():
    df = rare_table(1500)
    schema = infer_schema(df)
    obj = parse_targets({"objective": {"target": "y", "metric": "recall_at_precision", "precision": 0.5}}, "t").objective
    judge = Judge(obj, schema, df.iloc[1000:])
    a, again = judge.score(df.iloc[:1000]), judge.score(df.iloc[:1000])
    assert a["score"] == again["score"] and a["spread"] > 0  # same rows, same figure; the spread is the bootstrap's
    assert Judge.gain(a, again) == (0.0, 0.0)  # paired over the same resamples: no noise against itself
    other = judge.score(df.iloc[:400])
    gain, se = Judge.gain(other, a)
    assert other["spread"] > 0 and 0 < se < np.hypot(a["spread"], other["spread"])  # pairing removes the shared noise


def test_a_floor_measured_with_a_standard_error_keeps_a_margin_and_the_best_trial_discounts_noisy_gains(tmp_path):
    ap = Autopilot(targets(floors={"dcr_share": {"min": 0.47, "max": 0.53}}), 60, tmp_path / "j.journal")
    near = {"dcr_share": 0.52, "dcr_share_se": 0.007}
    assert ap.violations(near)[1] == ["dcr_share 0.5200 above 0.53 (with a margin of 0.0140: 2 standard errors)"]
    assert ap.violations({"dcr_share": 0.51, "dcr_share_se": 0.007})[1] == []
    loose = Autopilot(targets(floors={"dcr_share": {"min": 0.47, "max": 0.53}}, floor_z=0), 60, tmp_path / "k.journal")
    assert loose.violations(near)[1] == []
    lucky, steady = {"score": 0.70, "gain_se": 0.08}, {"score": 0.68, "gain_se": 0.01}
    assert ap.selection_value(steady) > ap.selection_value(lucky)


def test_cross_validation_scores_every_real_row_once_on_seeded_stratified_folds():
    df = rare_table(900)
    schema = infer_schema(df)
    obj = parse_targets({"objective": {"target": "y", "metric": "roc_auc", "cv": 3}}, "t").objective
    judge = Judge(obj, schema, df)
    idx = np.sort(np.concatenate(judge.cv_folds))
    assert len(judge.cv_folds) == 3 and np.array_equal(idx, np.arange(len(df)))  # every row in exactly one fold
    pos = [judge.y[f].sum() for f in judge.cv_folds]
    assert max(pos) - min(pos) <= 1  # stratified: the rare class is dealt evenly
    seen: list[int] = []

    def real_only(k, train):
        seen.append(len(train))
        assert len(train) == len(df) - len(judge.cv_folds[k])  # the judge never learns from the fold it scores
        return train

    a, again = judge.cross_validate(real_only), judge.cross_validate(real_only)
    assert a["score"] == again["score"] and a["cv"] == 3 and 0.7 < a["score"] <= 1.0
    assert Judge.gain(a, again) == (0.0, 0.0)  # paired over the same rows and resamples
    noisy = judge.cross_validate(lambda k, train: train.assign(y=np.random.default_rng(k).permutation(train["y"].to_numpy())))
    gain, se = Judge.gain(noisy, a)
    assert gain < -0.1 and se > 0  # shuffled labels cost, and the cost has a paired error
    d = np.subtract(noisy["cv_folds"], a["cv_folds"])
    assert se >= d.std(ddof=1) / np.sqrt(3) - 1e-12  # folds whose draws disagree widen the error
    steady = {"score": 0.6, "boot": np.full(50, 0.6) + np.linspace(0, 0.01, 50), "cv_folds": [0.5, 0.6, 0.7]}
    lucky = {"score": 0.7, "boot": steady["boot"] + 0.1, "cv_folds": [0.5, 0.6, 1.0]}
    assert Judge.gain(lucky, steady)[1] == pytest.approx(np.std([0, 0, 0.3], ddof=1) / np.sqrt(3))  # one fold's luck
    with pytest.raises(SynthloopError, match="cv: cross-validation"):
        parse_targets({"objective": {"target": "y", "cv": 3, "command": "judge {train}"}}, "t")


def test_a_cross_validated_search_refits_the_best_setting_on_every_real_row(tmp_path):
    tg = parse_targets({"objective": {"target": "y", "metric": "recall_at_precision", "precision": 0.5, "mode": "augment",
                                      "cv": 3, "validation_share": 0.25},
                        "autopilot": {"models": ["copula"], "gaps": False, "floors": {"exact_copy_rate": {"max": 0.01}}}}, "t.yaml")
    df = rare_table(900)
    lines: list[str] = []
    ap = Autopilot(tg, 300, tmp_path / "j.journal", max_trials=3, log=lines.append)
    res = ap.run(df)
    assert ap.cv and res.baseline["real_only"]["cv"] == 3 and res.baseline["real_only"]["rows_validation"] == len(df)
    assert all(t["figures"]["cv"] == 3 and t["figures"]["gain_se"] is not None for t in res.trials)
    assert res.best is not None and any("refitting trial" in line for line in lines)
    n_syn = len(res.data)
    assert len(res.training) == len(df) + n_syn  # all real rows (training and validation) plus the refitted model's rows
    assert not list(tmp_path.glob("j.journal.trial*"))  # no fold's rows stand in for the refitted ones
    again = Autopilot(tg, 300, tmp_path / "j.journal", max_trials=4).run(df)  # resumes on the same folds
    assert [t["params"] for t in again.trials[:3]] == [t["params"] for t in res.trials]
    assert again.trials[0]["figures"]["score"] == res.trials[0]["figures"]["score"]


def test_the_rare_class_can_come_from_a_model_of_that_class_alone(tmp_path):
    from synthloop.refine.autopilot import TrialPlan

    ap = Autopilot(targets(floors={}), 60, tmp_path / "j.journal")
    ap._prepare(rare_table(600), None)
    for rare_model in ("class", "joint"):
        plan = TrialPlan("copula", {}, None, 1.0, None, -1, 0.0, False, rare_model=rare_model)
        rows, _ = ap.generate(plan, seed=1)
        assert len(rows) == len(ap.split.train) and (rows["y"] == 1).all()  # rare_share 1: only the rare class
        assert rows["y"].dtype == ap.split.train["y"].dtype
    rare_fits = [k for k in ap._fitted if k.endswith("true]")]
    assert len(rare_fits) == 1  # the class model is fitted once, on the rare rows, and kept
