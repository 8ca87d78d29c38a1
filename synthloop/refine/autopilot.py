"""`synthloop autopilot`: search the generation settings that make the user's downstream model best on
real validation rows, under privacy and fidelity floors the user keeps.

What a trial may change (the `autopilot:` section of the targets file bounds each):
- the model family (`models`) and its main settings: the fit budget of trained models (scaled to
  the table), the sampling temperature of the autoregressive model, epsilon of the DP model;
- the share of the rare class among synthetic rows (conditional oversampling; classification);
- the share of synthetic rows in the training set (augment mode);
- conditional generation for one of the weakest slices the gap finder found (synthloop.evaluate.gaps);
- parity rebalancing of the `protected` columns (equal group shares among synthetic rows);
- with a mixed spec (`--spec`), prompt variants of its LLM columns: the instruction, the few-shot and
  nearest-example counts and the column's temperature (synthloop.refine.prompt_variants); the texts
  are written for each trial's rows and their agreement with the rows is a floor (`agreement`).

Optuna's TPE sampler proposes settings; its `constraints_func` sees each trial's floor violations,
so it learns to stay feasible, and the reported best trial is the best *feasible* one (a trial that
breaks a floor is never reported as best). The study lives in an Optuna journal file (one JSON line
per event, appended): a stopped search (Ctrl-C, a crash, the budget) resumes from it with the same
command, and its budget counts the seconds already spent. Trial 0 is the default setting (first model,
natural class shares, the objective's share) so the search is measured against doing nothing special.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from synthloop.errors import SynthloopError
from synthloop.refine.objective import Judge, Objective, synthetic_rows_needed, training_table
from synthloop.refine.targets import Targets

STUDY = "autopilot"


def parse_budget(text: str | float) -> float:
    """Seconds from `90`, `90s`, `30m`, `1.5h` (one line error otherwise)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise SynthloopError(f"--budget {text!r}: give a duration like 90s, 30m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@dataclass
class Split:
    """The rows a search works with: what models learn, what the judge is scored on, and the privacy holdout."""
    train: pd.DataFrame
    validation: pd.DataFrame
    schema: Any


def split_data(df: pd.DataFrame, obj: Objective, schema: Any, validation: pd.DataFrame | None = None) -> Split:
    """Training rows and real validation rows (a given file, else a seeded stratified share of `df`).
    The validation rows are also the privacy holdout: no model ever learns from them."""
    if validation is not None:
        return Split(df.reset_index(drop=True), validation.reset_index(drop=True), schema)
    rng = np.random.default_rng(obj.seed)
    y = df[obj.target].astype("string").fillna("<NA>") if obj.task == "classification" else pd.Series(0, index=df.index)
    val = np.zeros(len(df), dtype=bool)
    for _, idx in pd.Series(np.arange(len(df))).groupby(y.to_numpy()):
        idx = rng.permutation(idx.to_numpy())
        val[idx[: int(round(len(idx) * obj.validation_share))]] = True
    return Split(df[~val].reset_index(drop=True), df[val].reset_index(drop=True), schema)


def _raw_value(train: pd.DataFrame, column: str, value: Any) -> Any:
    """The value as the table stores it (conditions compare raw values; slices keep strings)."""
    col = train[column]
    hit = col[col.astype("string") == str(value)]
    v = hit.iloc[0] if len(hit) else value
    return v.item() if hasattr(v, "item") else v


@dataclass
class TrialPlan:
    model: str
    fit_params: dict[str, Any]
    temperature: float | None
    rare_share: float | None
    synthetic_share: float | None
    gap: int
    gap_share: float
    parity: bool
    relabel: bool = False
    prompts: dict[str, dict[str, Any]] = field(default_factory=dict)
    rare_model: str = "joint"  # oversampled rare-class rows: "joint" (conditioned on the class) or "class" (a model of that class alone)


@dataclass
class AutopilotResult:
    """Everything the search found: trials, the best feasible one, the Pareto front, gaps, baselines."""
    objective: dict[str, Any]
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    pareto: list[int]
    baseline: dict[str, Any]
    gaps: dict[str, Any]
    floors: dict[str, Any]
    data: pd.DataFrame | None = field(default=None, repr=False)
    training: pd.DataFrame | None = field(default=None, repr=False)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "baseline": self.baseline, "best": self.best, "pareto": self.pareto,
                "floors": self.floors, "gaps": self.gaps, "trials": self.trials, "seconds": self.seconds}


class Autopilot:
    """One search (see module docstring). `log` receives one line per finished trial."""

    def __init__(self, targets: Targets, budget_s: float, journal: str | Path, max_trials: int | None = None,
                 log: Callable[[str], None] | None = None, threads: int = 1, spec: Any = None, backend: Any = None):
        """`spec`: a mixed spec whose LLM columns are written for every trial's rows, with prompt variants
        searched; `backend`: the LLM backend for them (default: the spec's `llm:` settings)."""
        if targets.objective is None:
            raise SynthloopError("the targets file has no 'objective:' section; autopilot needs one "
                                 "(target, metric, ...; see synthloop/refine/objective.py)")
        self.targets = targets
        self.settings = targets.autopilot
        self.objective: Objective = targets.objective
        self.budget_s = float(budget_s)
        self.journal = Path(journal)
        self.max_trials = max_trials
        self.log = log or (lambda s: None)
        self.threads = threads
        self._fitted: dict[str, Any] = {}
        self.cv = False
        self._baseline_scores: dict[str, Any] = {}
        self.spec = spec
        self._backend = backend
        self.prompt_searches: dict[str, Any] = {}
        self._llm_figures: dict[str, Any] = {}

    # -- setup ---------------------------------------------------------------------------------
    def _prepare(self, df: pd.DataFrame, validation: pd.DataFrame | None) -> None:
        from synthloop.schema import infer_schema

        obj = self.objective
        if obj.target not in df.columns:
            raise SynthloopError(f"objective.target: column '{obj.target}' is not in the table; "
                                 f"columns are: {', '.join(map(str, df.columns[:12]))}")
        schema = infer_schema(df)
        self.split = split_data(df, obj, schema, validation)
        self.judge = Judge(obj, schema, self.split.validation, threads=self.threads)
        y = self.split.train[obj.target].astype("string")
        self.natural_share = float((y == self.judge.positive).mean()) if self.judge.positive is not None else None
        self.positive_raw = _raw_value(self.split.train, obj.target, self.judge.positive) if self.judge.positive is not None else None
        self.gaps: dict[str, Any] = {"slices": []}
        if self.settings.gaps:
            from synthloop.evaluate.gaps import find_gaps

            self.gaps = find_gaps(self.judge, self.split.train, top=3)
        self.protected = [c for c in dict.fromkeys([*self.targets.protected, *self.targets.parity])
                          if c in schema and not schema[c].kind.value == "numerical"]
        self.fit_columns = list(self.split.train.columns)
        # cross-validation (objective.cv): every real row given is scored out of fold, each fold with
        # its own fitted model (a mixed spec writes LLM texts per trial: one split keeps it affordable)
        self.cv = obj.cv >= 2 and self.spec is None
        if obj.cv >= 2 and self.spec is not None:
            self.log("objective.cv: a mixed spec (--spec) is scored on the validation rows, not cross-validated")
        if self.cv:
            rows = pd.concat([self.split.train, self.split.validation], ignore_index=True)
            self.cv_judge = Judge(obj, schema, rows, threads=self.threads)
            self.cv_rows = self.cv_judge.validation
        if self.spec is not None:
            from synthloop.refine.prompt_variants import spec_searches

            self.prompt_searches = spec_searches(self.spec, self.settings.prompts, list(df.columns))
            written = {n for c in self.spec.columns for n in c.output_names()}
            self.fit_columns = [c for c in self.split.train.columns if c not in written]
            # a slice on a column the LLM writes cannot be asked of the model
            self.gaps["slices"] = [g for g in self.gaps["slices"] if g.column in self.fit_columns]
        elif "agreement" in self.settings.floors:
            raise SynthloopError("autopilot.floors.agreement: the agreement of LLM texts needs a mixed spec (--spec)")

    def _fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(pd.util.hash_pandas_object(self.split.train, index=False).to_numpy().tobytes())
        h.update(pd.util.hash_pandas_object(self.split.validation, index=False).to_numpy().tobytes())
        h.update(json.dumps(self.objective.model_dump(mode="json"), sort_keys=True, default=str).encode())
        h.update(json.dumps(self.settings.model_dump(mode="json"), sort_keys=True, default=str).encode())
        if self.spec is not None:
            h.update(json.dumps(self.spec.model_dump(mode="json"), sort_keys=True, default=str).encode())
        return h.hexdigest()[:16]

    # -- one trial ------------------------------------------------------------------------------
    def _fit_seconds_options(self) -> list[float]:
        from synthloop.synthesizers.factory import default_budget

        if self.settings.seconds is not None:
            lo, hi = self.settings.seconds
        else:
            hi = default_budget(*self.split.train.shape)
            lo = max(5.0, hi / 3)
        return sorted({float(round(lo)), float(round((lo + hi) / 2)), float(round(hi))})

    def _plan(self, trial: Any) -> TrialPlan:
        s, obj = self.settings, self.objective
        model = trial.suggest_categorical("model", s.models)
        fit_params: dict[str, Any] = {}
        temperature = None
        if model in ("autoregressive", "gan", "vae"):
            fit_params["max_seconds"] = trial.suggest_categorical(f"{model}_seconds", self._fit_seconds_options())
        if model == "autoregressive":
            temperature = trial.suggest_float("temperature", *s.temperature)
        if model == "dp":
            fit_params["epsilon"] = trial.suggest_categorical("epsilon", sorted(s.epsilons))
        rare, rare_model = None, "joint"
        if s.oversample and self.natural_share is not None and self.natural_share < s.max_rare_share:
            rare = trial.suggest_float("rare_share", self.natural_share, s.max_rare_share)
            rare_model = trial.suggest_categorical("rare_model", ["joint", "class"])
        share = None
        if obj.mode == "augment" and s.search_share:  # log scale: a few rows of a rare class count as much as many
            share = trial.suggest_float("synthetic_share", *s.share_range, log=True)
        gap, gap_share = -1, 0.0
        if self.gaps["slices"] and s.max_gap_share > 0:
            gap = trial.suggest_categorical("gap_slice", list(range(-1, len(self.gaps["slices"]))))
            if gap >= 0:
                gap_share = trial.suggest_float("gap_share", 0.02, s.max_gap_share)
        parity = bool(self.protected) and s.fairness and trial.suggest_categorical("parity", [False, True])
        relabel = s.relabel and self._can_relabel() and trial.suggest_categorical("relabel", [False, True])
        prompts = {}
        if self.prompt_searches:
            from synthloop.refine.prompt_variants import suggest

            prompts = suggest(trial, self.prompt_searches)
        return TrialPlan(model, fit_params, temperature, rare, share, gap, gap_share, bool(parity), bool(relabel), prompts,
                         rare_model)

    def _can_relabel(self) -> bool:
        return self.objective.task == "regression" or self.split.train[self.objective.target].nunique() == 2

    def _fit(self, plan: TrialPlan, train: pd.DataFrame | None = None, part: Any = None, rare: bool = False) -> Any:
        """The plan's model fitted on `train` (default: the training rows), or with `rare` on its rows of
        the rare class alone; `part` names the rows (a cross-validation fold) in the cache key."""
        from synthloop.synthesizers.base import synthesizer_class

        train = self.split.train if train is None else train
        key = json.dumps([plan.model, plan.fit_params, part, rare], sort_keys=True, default=str)
        if key not in self._fitted:
            klass = synthesizer_class(plan.model)
            params = {"random_state": self.targets.seed, **plan.fit_params}
            if rare:
                train = train[train[self.objective.target].astype("string") == str(self.judge.positive)]
                if "max_seconds" in params:  # a budget in proportion to the rows it learns from
                    params["max_seconds"] = float(max(5.0, params["max_seconds"] * max(0.2, len(train) / len(self.split.train))))
            accepted = klass._get_param_names()
            synth = klass(**{k: v for k, v in params.items() if k in accepted})
            if self.fit_columns == list(self.split.train.columns):
                synth.fit(train, self.split.schema)
            else:  # a mixed spec writes the other columns
                synth.fit(train[self.fit_columns])
            # a few fitted models stay for trials that only resample (cv: each setting's fold models, and
            # the rare-class ones); the least recently used goes first
            keep = 4 if not self.cv else 4 * (len(self.cv_judge.cv_folds) + 1)
            while len(self._fitted) >= keep:
                self._fitted.pop(next(iter(self._fitted)))
            self._fitted[key] = synth
        self._fitted[key] = self._fitted.pop(key)  # most recently used last
        return self._fitted[key]

    def _is_fitted(self, plan: TrialPlan) -> bool:
        """Whether the plan's model with its settings is in the cache (for some rows)."""
        head = json.dumps([plan.model, plan.fit_params], sort_keys=True, default=str)[:-1] + ","
        return any(k.startswith(head) for k in self._fitted)

    def generate(self, plan: TrialPlan, seed: int, train: pd.DataFrame | None = None, part: Any = None) -> tuple[pd.DataFrame, Any]:
        """The synthetic rows a plan asks for (oversampled class, gap slice, parity), and the model, learned
        from `train` (default: the training rows; `part` names other rows, e.g. a fold, for the cache)."""
        train = self.split.train if train is None else train
        synth = self._fit(plan, train, part)
        if plan.temperature is not None and "temperature" in synth._get_param_names():
            synth.set_params(temperature=plan.temperature)
        n = synthetic_rows_needed(self.objective, len(train), plan.synthetic_share)
        parts = []
        n_gap = int(round(plan.gap_share * n)) if plan.gap >= 0 else 0
        if n_gap:
            from synthloop.evaluate.gaps import Slice

            sl = self.gaps["slices"][plan.gap]
            sl = sl if isinstance(sl, Slice) else Slice(**{k: sl[k] for k in ("column", "value", "low", "high")})
            cond = sl.condition
            if sl.value is not None:
                cond = {sl.column: _raw_value(train, sl.column, sl.value)}
            parts.append(synth.sample(n_gap, seed=seed + 1, conditions=cond))
        k = 0
        q = self.natural_share
        if plan.rare_share is not None and q is not None and plan.rare_share > q:
            k = min(n - n_gap, int(round((plan.rare_share - q) * (n - n_gap) / (1 - q))))
            if k and plan.rare_model == "class":  # a model of the rare class alone: its own joint distribution
                rs = self._fit(plan, train, part, rare=True)
                if plan.temperature is not None and "temperature" in rs._get_param_names():
                    rs.set_params(temperature=plan.temperature)
                rows = rs.sample(k, seed=seed + 2)
                rows[self.objective.target] = pd.Series([self.positive_raw] * k, dtype=train[self.objective.target].dtype)
                parts.append(rows)
            elif k:
                parts.append(synth.sample(k, seed=seed + 2, conditions={self.objective.target: self.positive_raw}))
        rest = n - n_gap - k
        if rest > 0:
            if plan.parity:
                rng = np.random.default_rng(seed)
                cond = pd.DataFrame({c: rng.permutation(np.resize(train[c].dropna().unique(), rest))
                                     for c in self.protected})
                parts.append(synth.sample(seed=seed + 3, conditions=cond))
            else:
                parts.append(synth.sample(rest, seed=seed + 3))
        out = pd.concat(parts, ignore_index=True)
        if self.spec is not None:  # the LLM columns, written for these rows under the trial's prompt variant
            from synthloop.refine.prompt_variants import variant_spec, write_llm_columns

            vspec = variant_spec(self.spec, self.prompt_searches, plan.prompts, seed)
            out, self._llm_figures = write_llm_columns(vspec, out, self.backend, self.settings.llm_rows)
        if plan.relabel:
            out = self._relabel(out, seed, train)
        return out.iloc[np.random.default_rng(seed).permutation(len(out))].reset_index(drop=True), synth

    @property
    def backend(self) -> Any:
        """The LLM backend of `--spec` runs (the spec's settings unless one was given)."""
        if self._backend is None:
            from synthloop.llm import make_backend

            self._backend = make_backend(self.spec.llm)
        return self._backend

    def _relabel(self, rows: pd.DataFrame, seed: int, train: pd.DataFrame) -> pd.DataFrame:
        """The target of synthetic rows drawn from a teacher (the judge fitted on the real training rows):
        classification labels are drawn with the teacher's probabilities (seeded), regression targets are
        its predictions; the features stay the model's."""
        obj = self.objective
        scores = self.judge.teacher_scores(train, rows)
        rows = rows.copy()
        if obj.task == "regression":
            rows[obj.target] = scores
            return rows
        col = train[obj.target]
        negative = next(v for v in col.dropna().unique() if str(v) != str(self.judge.positive))
        pos = np.random.default_rng(seed + 4).random(len(rows)) < scores
        rows[obj.target] = np.where(pos, self.positive_raw, negative)
        rows[obj.target] = rows[obj.target].astype(col.dtype)
        return rows

    def measure(self, synthetic: pd.DataFrame, synth: Any, share: float | None) -> dict[str, Any]:
        """Objective score on the validation rows plus the floor figures (privacy on the synthetic rows
        against the validation rows as holdout, fidelity)."""
        sp = self.split
        score = self.judge.score(training_table(self.objective, sp.train, synthetic, share))
        return self._figures(score, synthetic, synth, sp.train, sp.validation)

    def measure_cv(self, plan: TrialPlan, seed: int) -> tuple[dict[str, Any], pd.DataFrame]:
        """Objective score by cross-validation (`Judge.cross_validate`: each fold's rows come from a model
        fitted on the other folds) plus the floor figures of fold 0's synthetic rows, with fold 0's real
        rows as their holdout; returns the figures and fold 0's synthetic rows."""
        first: dict[str, Any] = {}

        def training_for(k: int, train: pd.DataFrame) -> pd.DataFrame:
            data, synth = self.generate(plan, seed + 1000 * k, train=train, part=f"fold{k}")
            if k == 0:
                first.update(data=data, synth=synth, train=train)
            return training_table(self.objective, train, data, plan.synthetic_share)

        score = self.cv_judge.cross_validate(training_for)
        holdout = self.cv_judge.fold_rows(0)[1]
        return self._figures(score, first["data"], first["synth"], first["train"], holdout), first["data"]

    def _figures(self, score: dict[str, Any], synthetic: pd.DataFrame, synth: Any, train: pd.DataFrame,
                 holdout: pd.DataFrame) -> dict[str, Any]:
        from synthloop.evaluate.privacy import exact_copy_rate, privacy_figures
        from synthloop.evaluate.quality import quality_score

        sp = self.split
        m = self.settings.eval_rows
        rng = np.random.default_rng(self.targets.seed)
        sy = synthetic.iloc[np.sort(rng.choice(len(synthetic), m, replace=False))] if len(synthetic) > m else synthetic
        priv = privacy_figures(train, sy, holdout, sp.schema, max_rows=m, max_reference=m,
                               random_state=self.targets.seed, attack="mia_auc" in self.settings.floors)
        tr = train.iloc[np.sort(rng.choice(len(train), m, replace=False))] if len(train) > m else train
        q = quality_score(tr, sy, sp.schema)
        g = getattr(synth, "privacy_guarantee", None)
        g = g() if callable(g) else None
        base = self._baseline_scores.get("real_only") or self._baseline_scores.get("train_real")
        gain, gain_se = Judge.gain(score, base, self.objective.maximize) if base else (None, None)
        figures = {"score": score["score"], "spread": score["spread"], "pooled": score.get("pooled"),
                   "gain": gain, "gain_se": gain_se, "dcr_share": priv.get("dcr_share"), "dcr_share_se": priv.get("dcr_share_se"),
                   "mia_auc": priv.get("mia_auc"), "exact_copy_rate": exact_copy_rate(train, sy, sp.schema),
                   "quality_score": q.score, "column_shapes": q.column_shapes, "column_pair_trends": q.column_pair_trends,
                   "epsilon": (g or {}).get("epsilon") if isinstance(g, dict) else None,
                   "rows_synthetic": int(len(synthetic)), "rows_train": score["rows_train"], "cv": score.get("cv")}
        if self.spec is not None:
            figures.update(self._llm_figures)
        return figures

    def violations(self, fig: dict[str, Any]) -> tuple[list[float], list[str]]:
        """Optuna constraint values (<= 0 is feasible) and a sentence per broken floor. A figure measured
        with a standard error (`NAME_se`) must clear its floor by `floor_z` of them, so that the chosen
        data keeps the floor on holdout rows it was not measured on."""
        values, broken = [], []
        for name, b in self.settings.floors.items():
            v = fig.get(name)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                values.append(1.0)
                broken.append(f"{name} not measured" + (" (not a DP model)" if name == "epsilon" else ""))
                continue
            margin = self.settings.floor_z * float(fig.get(f"{name}_se") or 0.0)
            why = f" (with a margin of {margin:.4f}: {self.settings.floor_z:g} standard errors)" if margin else ""
            if b.min is not None:
                values.append(b.min + margin - v)
                if v < b.min + margin:
                    broken.append(f"{name} {v:.4f} below {b.min:g}{why}")
            if b.max is not None:
                values.append(v + margin - b.max)
                if v > b.max - margin:
                    broken.append(f"{name} {v:.4f} above {b.max:g}{why}")
        return values, broken

    def selection_value(self, fig: dict[str, Any]) -> float:
        """What the best trial maximizes: the score (sign-adjusted) less `selection_z` standard errors of
        its gain over real rows alone (see AutopilotSettings.selection_z)."""
        sign = 1.0 if self.objective.maximize else -1.0
        return sign * fig["score"] - self.settings.selection_z * float(fig.get("gain_se") or 0.0)

    @staticmethod
    def _constrain(trial: Any, values: list[float]) -> None:
        """Floor violations for TPE (Optuna >= 5: `set_constraint`; <= 0 is feasible) and for the report."""
        trial.set_user_attr("constraints", values)
        for i, v in enumerate(values):
            trial.set_constraint(f"floor{i}", float(v))

    def _objective_fn(self, deadline: float) -> Callable[[Any], float]:
        def run(trial: Any) -> float:
            t0 = time.perf_counter()
            plan = self._plan(trial)
            left = deadline - time.monotonic()
            fits = len(self.cv_judge.cv_folds) if self.cv else 1  # cross-validation fits once per fold
            if "max_seconds" in plan.fit_params and not self._is_fitted(plan):
                plan.fit_params["max_seconds"] = float(max(5.0, min(plan.fit_params["max_seconds"], left * 0.6 / fits)))
                trial.set_user_attr("fit_seconds_used", plan.fit_params["max_seconds"])
            try:
                if self.cv:
                    fig, data = self.measure_cv(plan, seed=self.targets.seed + trial.number)
                else:
                    data, synth = self.generate(plan, seed=self.targets.seed + trial.number)
                    fig = self.measure(data, synth, plan.synthetic_share)
            except Exception as exc:
                trial.set_user_attr("ended", f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                self._constrain(trial, [1.0])
                trial.set_user_attr("seconds", time.perf_counter() - t0)
                raise
            values, broken = self.violations(fig)
            if not broken and math.isfinite(fig["score"]) and not self.cv:  # cv: the best setting is refitted on all rows
                self._keep_if_best(trial.number, self.selection_value(fig), data)
            trial.set_user_attr("figures", fig)
            self._constrain(trial, values or [0.0])
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            trial.set_user_attr("ended", "complete, within every floor" if not broken else "complete, breaks a floor: " + "; ".join(broken))
            self.log(f"trial {trial.number}: {plan.model} score {fig['score']:.4f} dcr_share {fig['dcr_share']:.3f} "
                     f"quality {fig['quality_score']:.3f} ({'ok' if not broken else '; '.join(broken)})")
            if not math.isfinite(fig["score"]):
                trial.set_user_attr("ended", "complete, but the score is undefined on the validation rows")
                return -1e9 if self.objective.maximize else 1e9
            return fig["score"]
        return run

    def best_rows_path(self, number: int) -> Path:
        return self.journal.with_name(f"{self.journal.name}.trial{number}.parquet")

    def _keep_if_best(self, number: int, score: float, data: pd.DataFrame) -> None:
        """Write the best feasible trial's rows beside the journal (trained models with a time budget
        do not refit to the same rows, so the reported data is the measured data); `score` is the
        trial's `selection_value`."""
        from synthloop.io import write_table

        if self._best_kept is not None and score <= self._best_kept[1]:
            return
        write_table(data, self.best_rows_path(number))
        if self._best_kept is not None and self._best_kept[0] != number:
            self.best_rows_path(self._best_kept[0]).unlink(missing_ok=True)
        self._best_kept = (number, score)

    def _study(self) -> Any:
        try:
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend
        except ImportError:
            raise SynthloopError("autopilot needs Optuna: pip install 'synthloop[autopilot]'") from None

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(self.journal)))
        sampler = optuna.samplers.TPESampler(seed=self.targets.seed, n_startup_trials=6)
        study = optuna.create_study(study_name=STUDY, storage=storage, sampler=sampler, load_if_exists=True,
                                    direction="maximize" if self.objective.maximize else "minimize")
        fp = self._fingerprint()
        known = study.user_attrs.get("fingerprint")
        if known is None:
            study.set_user_attr("fingerprint", fp)
        elif known != fp:
            raise SynthloopError(f"{self.journal}: this journal belongs to a search on other data or settings; "
                                 "give a new --journal (or delete it) to start over")
        return study

    def _default_params(self) -> dict[str, Any]:
        s = self.settings
        p: dict[str, Any] = {"model": s.models[0]}
        if s.models[0] in ("autoregressive", "gan", "vae"):
            p[f"{s.models[0]}_seconds"] = self._fit_seconds_options()[-1]
        if s.models[0] == "autoregressive":
            p["temperature"] = min(max(1.0, s.temperature[0]), s.temperature[1])
        if s.models[0] == "dp":
            p["epsilon"] = sorted(s.epsilons)[-1]
        if s.oversample and self.natural_share is not None and self.natural_share < s.max_rare_share:
            p["rare_share"] = self.natural_share
            p["rare_model"] = "joint"
        if self.objective.mode == "augment" and s.search_share:
            p["synthetic_share"] = min(max(self.objective.synthetic_share, s.share_range[0]), s.share_range[1])
        if self.gaps["slices"] and s.max_gap_share > 0:
            p["gap_slice"] = -1
        if self.protected and s.fairness:
            p["parity"] = False
        if s.relabel and self._can_relabel():
            p["relabel"] = False
        if self.prompt_searches:
            from synthloop.refine.prompt_variants import default_params

            p.update(default_params(self.spec, self.prompt_searches))
        return p

    # -- the search ------------------------------------------------------------------------------
    def run(self, df: pd.DataFrame, validation: pd.DataFrame | None = None) -> AutopilotResult:
        """Search within the budget (resuming the journal), then rebuild the best trial's rows."""
        t_start = time.perf_counter()
        self._prepare(df, validation)
        study = self._study()
        done = [t for t in study.trials if t.state.is_finished()]
        kept = [t for t in done if t.state.name == "COMPLETE" and self.best_rows_path(t.number).exists()]
        self._best_kept = None
        if kept and kept[-1].user_attrs.get("figures"):
            self._best_kept = (kept[-1].number, self.selection_value(kept[-1].user_attrs["figures"]))
        spent = sum(float(t.user_attrs.get("seconds", 0.0)) for t in done)
        if not study.trials:
            study.enqueue_trial(self._default_params())
        key = "real_only" if self.objective.mode == "augment" else "train_real"
        if self.cv:  # the judge on the same folds' real rows alone: the trials' gains are paired with it
            self._baseline_scores = {key: self.cv_judge.cross_validate(lambda k, train: train)}
        else:
            self._baseline_scores = {key: self.judge.score(self.split.train)}
        self.baseline = {"real_only": None,
                         **{k: {f: v for f, v in sc.items() if f != "boot"} for k, sc in self._baseline_scores.items()}}
        left = self.budget_s - spent
        n_left = None if self.max_trials is None else max(0, self.max_trials - len(done))
        if left > 0 and n_left != 0:
            self.log(f"searching for {left:.0f} s" + (f" or {n_left} trials" if n_left else "")
                     + (f" (resuming: {len(done)} trials already in {self.journal})" if done else ""))
            deadline = time.monotonic() + left
            study.optimize(self._objective_fn(deadline), n_trials=n_left, timeout=left, catch=(Exception,),
                           gc_after_trial=False)
        else:
            self.log(f"budget spent ({spent:.0f} s in {len(done)} trials of {self.journal}); reporting")
        return self._result(study, time.perf_counter() - t_start)

    def _result(self, study: Any, seconds: float) -> AutopilotResult:
        trials = []
        for t in study.trials:
            ended = t.user_attrs.get("ended")
            if t.state.name == "RUNNING":
                ended = "interrupted: the search stopped during this trial (a resumed search does not count it)"
            elif t.state.name == "FAIL" and not ended:
                ended = "failed (stopped by the user or an error)"
            trials.append({"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                           "figures": t.user_attrs.get("figures"), "ended": ended,
                           "feasible": t.state.name == "COMPLETE" and all(c <= 0 for c in t.user_attrs.get("constraints", [1.0])),
                           "seconds": t.user_attrs.get("seconds"), "fit_seconds_used": t.user_attrs.get("fit_seconds_used")})
        ok = [t for t in trials if t["feasible"] and t["figures"] and math.isfinite(t["figures"]["score"])]
        best = max(ok, key=lambda t: (self.selection_value(t["figures"]), -t["number"])) if ok else None
        pareto = pareto_front(ok, self.objective.maximize)
        result = AutopilotResult(objective=self.objective.model_dump(mode="json"), trials=trials, best=best, pareto=pareto,
                                 baseline=self.baseline, gaps={}, floors={k: v.model_dump() for k, v in self.settings.floors.items()},
                                 seconds=seconds)
        if best is not None and self.cv:
            # the best setting, refitted on every real row the search had (each fold's model saw only
            # (K-1)/K of them): its rows and the training table the user's model learns from
            plan = self._plan(_FixedTrial(best["params"]))
            if best.get("fit_seconds_used"):
                plan.fit_params["max_seconds"] = best["fit_seconds_used"] * len(self.cv_judge.cv_folds) / (len(self.cv_judge.cv_folds) - 1)
            self.log(f"refitting trial {best['number']}'s setting on all {len(self.cv_rows)} real rows")
            data, _ = self.generate(plan, seed=self.targets.seed + best["number"], train=self.cv_rows, part="all")
            result.data = data
            result.training = training_table(self.objective, self.cv_rows, data, plan.synthetic_share)
        elif best is not None:
            plan = self._plan(_FixedTrial(best["params"]))
            path = self.best_rows_path(best["number"])
            if path.exists():
                from synthloop.io import read_table

                data = read_table(path)
            else:  # the journal came without its rows: generate them again (same seed)
                if "fit_seconds_used" in best:
                    plan.fit_params["max_seconds"] = best["fit_seconds_used"]
                data, _ = self.generate(plan, seed=self.targets.seed + best["number"])
            result.data = data
            result.training = training_table(self.objective, self.split.train, data, plan.synthetic_share)
        training = result.training
        if self.cv and result.data is not None:  # the slices' "after" is read on the validation rows: keep them out
            training = training_table(self.objective, self.split.train, result.data, plan.synthetic_share)
        result.gaps = self._gap_report(training)
        return result

    def _gap_report(self, training: pd.DataFrame | None) -> dict[str, Any]:
        from synthloop.evaluate.gaps import slice_errors

        slices = self.gaps.get("slices") or []
        out = {k: v for k, v in self.gaps.items() if k != "slices"}
        out["slices"] = [s.to_dict() for s in slices]
        if slices and training is not None:
            after = slice_errors(self.judge, training, slices)
            for d, a in zip(out["slices"], after):
                d["loss_after"], d["error_rate_after"] = a["loss"], a["error_rate"]
        return out


class _FixedTrial:
    """Replays a finished trial's parameters through `_plan` (Optuna's FixedTrial without its checks)."""

    def __init__(self, params: dict[str, Any]):
        self.params = params

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        return self.params[name] if name in self.params else choices[0]

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        return float(self.params.get(name, low))


def pareto_front(trials: list[dict[str, Any]], maximize: bool = True) -> list[int]:
    """Numbers of the trials no other trial beats on utility, privacy (|DCR share - 0.5|) and fidelity
    (and, with --spec, the agreement of the LLM texts)."""
    if not trials:
        return []
    sign = 1.0 if maximize else -1.0
    agreement = all(t["figures"].get("agreement") is not None for t in trials)  # --spec: LLM text agreement too
    pts = np.array([[sign * t["figures"]["score"], -abs((t["figures"].get("dcr_share") or 0.5) - 0.5),
                     t["figures"].get("quality_score") or 0.0, *([t["figures"]["agreement"]] if agreement else [])]
                    for t in trials])
    front = []
    for i, p in enumerate(pts):
        dominated = np.any(np.all(pts >= p, axis=1) & np.any(pts > p, axis=1))
        if not dominated:
            front.append(trials[i]["number"])
    return front
