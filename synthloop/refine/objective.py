"""Downstream objectives: how well the user's own model, trained on synthetic (or real + synthetic) rows,
does on real validation rows.

```yaml
objective:
  target: FraudFound_P            # the column the model predicts
  task: classification            # or regression (default: from the metric)
  metric: recall_at_precision     # roc_auc, pr_auc, recall_at_precision, f1, r2, mae
  precision: 0.5                  # recall_at_precision: the precision the recall is read at
  positive: 1                     # binary metrics: the positive class (default: the rarest)
  model: hist_gradient_boosting   # or an import path: sklearn.linear_model.LogisticRegression
  model_params: {max_iter: 200}
  command: null                   # or "python judge.py {train} {test} {target}": prints one number
  mode: augment                   # synthetic (synthetic rows only) or augment (real + synthetic)
  synthetic_share: 0.5            # augment: share of synthetic rows in the training set
  validation: null                # a real validation file; default: validation_share of the data
  validation_share: 0.2
  folds: 3                        # stratified folds of the validation rows, reported per fold
  cv: 0                           # autopilot: K-fold cross-validation over all real rows (0: one validation split)
  judge_seeds: 3                  # the judge's scores are the mean of this many seeded fits
  bootstrap: 200                  # seeded stratified bootstrap resamples of the validation rows
  seed: 0
```
Why the figure is built this way (a gain found on the validation rows must hold on new rows):
- the default judge (HistGradientBoosting without early stopping) is deterministic; a judge whose fit
  is random (early stopping, a random forest: any estimator taking `random_state`) is fitted
  `judge_seeds` times (seeds seed, seed+1, ...) and its scores averaged, so one fit's randomness
  does not move a trial's score;
- the metric is read on all validation rows pooled (not on small folds: a recall read at a fixed
  precision on 60 positives jumps with every threshold), then averaged over `bootstrap` seeded,
  class-stratified resamples of those rows: a smoothed figure whose bootstrap spread is the
  standard error, and whose resamples are the same for every trial, so the gain of a trial over
  real rows alone has a paired standard error too (`Judge.gain`), which the autopilot's choice of
  the best trial discounts (`autopilot.selection_z`);
- the per-fold values stay in the output so the noise of a small validation set is visible;
- `cv: K` (K >= 2; the autopilot's shipped targets use 5) scores a trial by K-fold cross-validation
  over all real rows (the training and the validation rows): for each stratified fold the
  synthesizer is fitted on the other folds, its rows are added to those real rows, and the judge
  scores the held-out fold; the out-of-fold scores of every row are pooled into one figure (and its
  bootstrap, paired with real rows alone on the same folds). Every real row is scored once, so all
  cases of a rare class stand behind each figure instead of one validation share of them, and a
  synthetic draw that happens to suit one split does not carry a trial: each fold has its own
  model and draw (`Judge.cross_validate`).
"""
from __future__ import annotations

import importlib
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthloop.errors import SynthloopError

CLASSIFICATION_METRICS = ("roc_auc", "pr_auc", "recall_at_precision", "f1")
REGRESSION_METRICS = ("r2", "mae")
LOWER_IS_BETTER = ("mae",)


class Objective(BaseModel):
    """The `objective:` section of a targets file (see module docstring)."""
    model_config = ConfigDict(extra="forbid")

    target: str
    metric: Literal["roc_auc", "pr_auc", "recall_at_precision", "f1", "r2", "mae"] = "roc_auc"
    task: Literal["classification", "regression"] | None = None
    precision: float = Field(0.5, gt=0, lt=1)
    positive: Any = None
    model: str = "hist_gradient_boosting"
    model_params: dict[str, Any] = Field(default_factory=dict)
    command: str | None = None
    mode: Literal["synthetic", "augment"] = "augment"
    synthetic_share: float = Field(0.5, gt=0, lt=1)
    validation: str | None = None
    validation_share: float = Field(0.2, gt=0, lt=0.9)
    folds: int = Field(3, ge=1, le=20)
    cv: int = Field(0, ge=0, le=20, description="K-fold cross-validation of each autopilot trial over all real rows (0 or 1: off)")
    judge_seeds: int = Field(3, ge=1, le=20, description="seeded judge fits whose scores are averaged")
    bootstrap: int = Field(200, ge=0, le=5000, description="seeded bootstrap resamples of the validation rows (0: none)")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "Objective":
        task = "regression" if self.metric in REGRESSION_METRICS else "classification"
        if self.task is not None and self.task != task:
            raise ValueError(f"metric {self.metric} is a {task} metric but task is {self.task}")
        self.task = task
        if self.command is not None and self.model != "hist_gradient_boosting":
            raise ValueError("give either model or command, not both")
        if self.command is not None and "{train}" not in self.command:
            raise ValueError("command must contain {train} (the training file it reads)")
        if self.model != "hist_gradient_boosting":
            _estimator_class(self.model)
        if self.cv == 1:
            self.cv = 0
        if self.cv and self.command is not None:
            raise ValueError("cv: cross-validation fits the judge once per fold in Python; a command judge "
                             "is scored on the validation rows (set cv: 0)")
        return self

    @property
    def maximize(self) -> bool:
        return self.metric not in LOWER_IS_BETTER


def _estimator_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"model '{path}': give hist_gradient_boosting or an import path like sklearn.linear_model.LogisticRegression")
    try:
        klass = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model '{path}' cannot be imported ({exc})") from None
    if not (hasattr(klass, "fit") and (hasattr(klass, "predict") or hasattr(klass, "predict_proba"))):
        raise ValueError(f"model '{path}' is not a scikit-learn style estimator (it lacks fit/predict)")
    return klass


def positive_class(obj: Objective, labels: pd.Series) -> Any:
    """The positive class of a binary objective: the configured one, else the rarest label."""
    counts = labels.dropna().astype("string").value_counts()
    if obj.positive is not None:
        return str(obj.positive)
    return counts.index[-1] if len(counts) else None


def recall_at_precision(y: np.ndarray, score: np.ndarray, precision: float) -> float:
    """Highest recall over thresholds whose precision is at least `precision` (0 when none is)."""
    from sklearn.metrics import precision_recall_curve

    if y.sum() == 0:
        return float("nan")
    p, r, _ = precision_recall_curve(y, score)
    ok = p >= precision
    return float(r[ok].max()) if ok.any() else 0.0


def metric_value(obj: Objective, y_true: np.ndarray, score: np.ndarray) -> float:
    """The objective's metric for true labels (binary 0/1 or numbers) and the judge's scores."""
    from sklearn.metrics import average_precision_score, f1_score, mean_absolute_error, r2_score, roc_auc_score

    if obj.metric == "r2":
        return float(r2_score(y_true, score))
    if obj.metric == "mae":
        return float(mean_absolute_error(y_true, score))
    if len(np.unique(y_true)) < 2:
        return float("nan")
    if obj.metric == "roc_auc":
        return float(roc_auc_score(y_true, score))
    if obj.metric == "pr_auc":
        return float(average_precision_score(y_true, score))
    if obj.metric == "recall_at_precision":
        return recall_at_precision(y_true, score, obj.precision)
    return float(f1_score(y_true, score >= 0.5, zero_division=0))


class Judge:
    """Scores training tables against one real validation table (the matrices are built per call)."""

    def __init__(self, objective: Objective, schema: Any, validation: pd.DataFrame, threads: int = 1):
        self.objective = objective
        self.schema = schema
        self.validation = validation[validation[objective.target].notna()].reset_index(drop=True)
        if objective.target not in schema:
            raise SynthloopError(f"objective.target: column '{objective.target}' is not in the table; "
                                 f"columns are: {', '.join(schema.names[:12])}")
        self.threads = threads
        y = self.validation[objective.target]
        if objective.task == "classification":
            self.positive = positive_class(objective, y)
            self.y = (y.astype("string") == self.positive).to_numpy(dtype=int)
        else:
            self.positive = None
            self.y = pd.to_numeric(y, errors="coerce").to_numpy(dtype=float)
        rng = np.random.default_rng(objective.seed)
        self.folds = self._folds(rng)
        self._cv_folds: list[np.ndarray] | None = None
        self.resamples = self._resamples(np.random.default_rng([objective.seed, 1]))

    def _resamples(self, rng: np.random.Generator) -> np.ndarray:
        """Row indices of the seeded bootstrap resamples (class-stratified for classification), one row
        per resample; the same for every training table, so scores of two trials are paired."""
        b, n = self.objective.bootstrap, len(self.y)
        if b == 0 or n < 2:
            return np.arange(n)[None, :]
        if self.objective.task != "classification":
            return rng.integers(0, n, size=(b, n))
        parts = [idx[rng.integers(0, len(idx), size=(b, len(idx)))] for idx in
                 (np.flatnonzero(self.y == c) for c in np.unique(self.y))]
        return np.sort(np.concatenate(parts, axis=1), axis=1)

    def _folds(self, rng: np.random.Generator, k: int | None = None) -> list[np.ndarray]:
        k = self.objective.folds if k is None else k
        n = len(self.y)
        if k == 1 or n < 2 * k:
            return [np.arange(n)]
        if self.objective.task == "classification":
            fold_of = np.empty(n, dtype=int)
            for cls in np.unique(self.y):  # stratified: each class dealt round-robin after a seeded shuffle
                idx = rng.permutation(np.flatnonzero(self.y == cls))
                fold_of[idx] = np.arange(len(idx)) % k
        else:
            fold_of = rng.permutation(n) % k
        return [np.flatnonzero(fold_of == f) for f in range(k)]

    @property
    def cv_folds(self) -> list[np.ndarray]:
        """The objective's `cv` stratified folds of the rows (seeded, the same for every trial)."""
        if self._cv_folds is None:
            self._cv_folds = self._folds(np.random.default_rng([self.objective.seed, 2]), max(2, self.objective.cv))
        return self._cv_folds

    def fold_rows(self, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(the rows outside fold k, the rows of fold k) of the cross-validation."""
        out = np.ones(len(self.y), dtype=bool)
        out[self.cv_folds[k]] = False
        return self.validation[out].reset_index(drop=True), self.validation.iloc[self.cv_folds[k]].reset_index(drop=True)

    def cross_validate(self, training_for: Callable[[int, pd.DataFrame], pd.DataFrame]) -> dict[str, Any]:
        """`score`'s figures from out-of-fold scores: for each fold k the judge is fitted on
        `training_for(k, rows outside fold k)` (those real rows plus whatever a trial adds) and scores
        the rows of fold k; the pooled scores are read like `score_predictions` (bootstrap resamples
        of all rows, paired across trials)."""
        pred = np.empty(len(self.y), dtype=float)
        sizes = []
        for k, idx in enumerate(self.cv_folds):
            train, test = self.fold_rows(k)
            training = training_for(k, train)
            pred[idx] = self._fit_predict(training, [test])[0]
            sizes.append(len(training))
        out = self.score_predictions(pred, rows_train=int(round(np.mean(sizes))))
        out["cv"] = len(self.cv_folds)
        out["cv_folds"] = [metric_value(self.objective, self.y[idx], pred[idx]) for idx in self.cv_folds]
        return out

    def predict(self, train: pd.DataFrame, rows: pd.DataFrame | None = None) -> np.ndarray:
        """The judge's scores on `rows` (default: the validation rows) after fitting on `train`."""
        rows = self.validation if rows is None else rows
        return self._fit_predict(train, [rows])[0]

    def _fit_predict(self, train: pd.DataFrame, row_sets: list[pd.DataFrame]) -> list[np.ndarray]:
        from synthloop.evaluate._frames import model_matrices

        obj = self.objective
        train = train[train[obj.target].notna()]
        (Xtr, *Xtes), mask, _ = model_matrices(self.schema, [train, *row_sets], exclude=(obj.target,))
        return [self._fit_predict_matrices(train, Xtr, Xte, mask, len(r)) for Xte, r in zip(Xtes, row_sets)]

    def _fit_predict_matrices(self, train: pd.DataFrame, Xtr: np.ndarray, Xte: np.ndarray, mask: np.ndarray, n_rows: int) -> np.ndarray:
        """The mean of `judge_seeds` seeded fits' scores (one fit's randomness does not move a figure)."""
        obj = self.objective
        if obj.task == "classification":
            ytr = (train[obj.target].astype("string") == self.positive).to_numpy(dtype=int)
            if len(np.unique(ytr)) < 2:
                return np.full(n_rows, float(ytr[0]) if len(ytr) else 0.0)
        else:
            ytr = pd.to_numeric(train[obj.target], errors="coerce").to_numpy(dtype=float)
        seeds = range(obj.seed, obj.seed + obj.judge_seeds) if self._seeded() else [obj.seed]
        return np.mean([self._fit_once(Xtr, ytr, Xte, mask, s) for s in seeds], axis=0)

    def _seeded(self) -> bool:
        """Whether the judge's fit depends on its seed (else one fit is enough)."""
        if self.objective.model == "hist_gradient_boosting":
            return self.objective.model_params.get("early_stopping", False) is not False
        return "random_state" in getattr(_estimator_class(self.objective.model), "_get_param_names", lambda: [])()

    def _fit_once(self, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
        from synthloop.evaluate._frames import limited_threads

        obj = self.objective
        with limited_threads(self.threads):
            model = self._model(mask, seed)
            if obj.model != "hist_gradient_boosting":
                Xtr, Xte = np.nan_to_num(Xtr), np.nan_to_num(Xte)
            model.fit(Xtr, ytr)
            if obj.task == "classification":
                if hasattr(model, "predict_proba"):
                    proba = model.predict_proba(Xte)
                    return proba[:, list(model.classes_).index(1)]
                return model.predict(Xte).astype(float)
            return model.predict(Xte).astype(float)

    def teacher_scores(self, real_train: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
        """Scores of `rows` by the judge fitted on the real training rows (for relabelling synthetic rows).
        The features are encoded over the real rows, the rows to label and the validation rows
        together, as `predict` does, so that category codes agree."""
        return self._fit_predict(real_train, [rows])[0]

    def _model(self, mask: np.ndarray, seed: int | None = None) -> Any:
        obj = self.objective
        seed = obj.seed if seed is None else seed
        if obj.model == "hist_gradient_boosting":
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

            klass = HistGradientBoostingClassifier if obj.task == "classification" else HistGradientBoostingRegressor
            # no early stopping unless asked: sklearn's "auto" turns it on above 10,000 rows and holds out a
            # random 10% of them, so the same judge would learn differently from real rows alone and from
            # real plus synthetic rows, and a trial's score would move with the split
            params = {"random_state": seed, "categorical_features": mask if mask.any() else None,
                      "early_stopping": False, **obj.model_params}
            return klass(**params)
        klass = _estimator_class(obj.model)
        params = dict(obj.model_params)
        if "random_state" in getattr(klass, "_get_param_names", lambda: [])():
            params.setdefault("random_state", seed)
        return klass(**params)

    def score(self, train: pd.DataFrame) -> dict[str, Any]:
        """{score, spread, pooled, folds}: the metric of a judge fitted on `train` on the validation rows:
        `score` the mean over the bootstrap resamples, `spread` their standard deviation (the standard
        error), `pooled` the plain metric on all rows, `folds` per stratified fold (see module docstring)."""
        if self.objective.command:
            return self._command_score(train)
        return self.score_predictions(self.predict(train), rows_train=len(train))

    def score_predictions(self, pred: np.ndarray, rows_train: int = 0) -> dict[str, Any]:
        """`score`'s figures for given scores of the validation rows; `boot` holds the per-resample
        values (not for files: `Judge.gain` pairs them)."""
        obj = self.objective
        per = [metric_value(obj, self.y[f], pred[f]) for f in self.folds]
        boot = np.array([metric_value(obj, self.y[r], pred[r]) for r in self.resamples])
        ok = boot[np.isfinite(boot)]
        return {"score": float(ok.mean()) if len(ok) else float("nan"),
                "spread": float(ok.std(ddof=1)) if len(ok) > 1 else 0.0,
                "pooled": metric_value(obj, self.y, pred), "folds": per, "boot": boot,
                "rows_train": int(rows_train), "rows_validation": int(len(self.y))}

    @staticmethod
    def gain(score: dict[str, Any], baseline: dict[str, Any], maximize: bool = True) -> tuple[float, float]:
        """(gain, its standard error) of `score` over `baseline`, paired over the same bootstrap
        resamples (a gain that only some resamples show has a large error). Cross-validated figures
        also pair per fold: each fold has its own model and synthetic draw, which the bootstrap of
        the scored rows does not see, so the error is the larger of the two (a gain that only some
        folds' draws show has a large error too)."""
        a, b = np.asarray(score.get("boot", [])), np.asarray(baseline.get("boot", []))
        sign = 1.0 if maximize else -1.0
        g = sign * (score["score"] - baseline["score"])
        if a.size < 2 or a.shape != b.shape:
            return float(g), 0.0
        d = sign * (a - b)
        d = d[np.isfinite(d)]
        se = float(d.std(ddof=1)) if d.size > 1 else 0.0
        fa, fb = np.asarray(score.get("cv_folds", []), float), np.asarray(baseline.get("cv_folds", []), float)
        if fa.size > 1 and fa.shape == fb.shape:
            df = sign * (fa - fb)
            df = df[np.isfinite(df)]
            if df.size > 1:
                se = max(se, float(df.std(ddof=1) / np.sqrt(df.size)))
        return float(g), se

    def _command_score(self, train: pd.DataFrame) -> dict[str, Any]:
        """Run the user's command on a training file and the validation file; it prints one number."""
        obj = self.objective
        with tempfile.TemporaryDirectory(prefix="synthloop-judge-") as tmp:
            tr, te = Path(tmp) / "train.csv", Path(tmp) / "test.csv"
            train.to_csv(tr, index=False)
            self.validation.to_csv(te, index=False)
            argv = [a.format(train=tr, test=te, target=obj.target) for a in shlex.split(obj.command or "")]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SynthloopError(f"objective.command '{obj.command}' could not run: {exc}") from None
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SynthloopError(f"objective.command '{obj.command}' exited {proc.returncode} without a score: {tail}")
        try:
            value = float(lines[-1].split()[-1])
        except ValueError:
            raise SynthloopError(f"objective.command '{obj.command}' must print a number last; it printed {lines[-1]!r}") from None
        return {"score": value, "spread": 0.0, "pooled": value, "folds": [value], "rows_train": int(len(train)),
                "rows_validation": int(len(self.y))}


def training_table(obj: Objective, real_train: pd.DataFrame, synthetic: pd.DataFrame,
                   share: float | None = None) -> pd.DataFrame:
    """The table the judge learns from: the synthetic rows, or real rows plus synthetic ones making
    up `share` (default the objective's) of the result."""
    if obj.mode == "synthetic":
        return synthetic.reset_index(drop=True)
    share = obj.synthetic_share if share is None else share
    n_syn = min(len(synthetic), int(round(len(real_train) * share / (1 - share))))
    return pd.concat([real_train, synthetic.iloc[:n_syn]], ignore_index=True)


def synthetic_rows_needed(obj: Objective, n_real_train: int, share: float | None = None) -> int:
    """How many synthetic rows a trial draws for `training_table`."""
    if obj.mode == "synthetic":
        return n_real_train
    share = obj.synthetic_share if share is None else share
    return max(1, int(round(n_real_train * share / (1 - share))))
