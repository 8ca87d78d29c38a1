"""Utility: does a model trained on synthetic rows do as well on real rows as one trained on real rows?

TSTR (train on synthetic, test on real holdout) vs TRTR (train on real, test on the same holdout),
both with the same scikit-learn HistGradientBoosting model and native categorical support.
Classification reports accuracy, F1 (binary: the minority class is positive; multiclass: macro) and
ROC AUC; regression reports R2 and MAE. The ratio TSTR/TRTR is 1.0 when synthetic data is as useful
as real data (for MAE, lower is better, so the ratio is TRTR/TSTR). The holdout must be rows the
synthesizer never saw; without one, a split of the real table stands in and the result says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score, roc_auc_score

from synthloop.errors import DataError
from synthloop.evaluate._frames import CONTINUOUS, limited_threads, model_matrices, to_numeric
from synthloop.schema import ColumnKind, TableSchema, infer_schema


@dataclass
class UtilityRun:
    """Figures plus what fairness needs: the holdout's features and both models' predictions."""
    figures: dict[str, Any]
    test: pd.DataFrame = field(repr=False)
    pred_real: np.ndarray = field(repr=False)
    pred_synth: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    positive: Any = None


def _labels(series: pd.Series) -> np.ndarray:
    return series.astype("string").to_numpy(dtype=object, na_value=None)


def _classification(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, classes: np.ndarray, cats: np.ndarray | None,
                    max_iter: int, random_state: int) -> dict[str, np.ndarray]:
    """Predicted labels and class probabilities (columns in `classes` order) on `Xte`."""
    if len(np.unique(ytr)) < 2:  # a model cannot learn from one class: it predicts that class
        pred = np.full(len(Xte), ytr[0], dtype=object)
        proba = np.zeros((len(Xte), len(classes)))
        proba[:, list(classes).index(ytr[0]) if ytr[0] in classes else 0] = 1.0
    else:
        model = HistGradientBoostingClassifier(max_iter=max_iter, categorical_features=cats, random_state=random_state)
        model.fit(Xtr, ytr)
        pred = model.predict(Xte)
        proba = np.zeros((len(Xte), len(classes)))
        got = model.predict_proba(Xte)
        for j, c in enumerate(model.classes_):
            if c in classes:
                proba[:, list(classes).index(c)] = got[:, j]
    return {"pred": pred, "proba": proba}


def utility_scores(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None, target: str,
                   schema: TableSchema | None = None, max_rows: int = 20_000, max_iter: int = 100,
                   random_state: int = 0, threads: int = 1) -> UtilityRun:
    """TRTR and TSTR figures for `target` (see module docstring)."""
    with limited_threads(threads):
        return _utility(train, synthetic, holdout, target, schema, max_rows, max_iter, random_state)


def _utility(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None, target: str,
             schema: TableSchema | None, max_rows: int, max_iter: int, random_state: int) -> UtilityRun:
    schema = schema or infer_schema(train)
    if target not in schema:
        raise DataError(f"target column '{target}' is not in the real table; pick one of {schema.names[:8]}")
    for name, df in (("synthetic", synthetic), ("holdout", holdout)):
        if df is not None and target not in df.columns:
            raise DataError(f"target column '{target}' is missing from the {name} table")
    col = schema[target]
    if not col.learned:
        raise DataError(f"target column '{target}' is {col.kind.value}, not a learned column; pick a numerical or categorical one")
    rng = np.random.default_rng(random_state)
    note = None
    if holdout is None:
        idx = rng.permutation(len(train))
        cut = int(len(train) * 0.7)
        train, holdout = train.iloc[idx[:cut]], train.iloc[idx[cut:]]
        note = "no holdout given: tested on 30% of the real table, which the synthesizer saw (optimistic)"

    def take(df: pd.DataFrame) -> pd.DataFrame:
        df = df[df[target].notna()]
        return df.iloc[np.sort(rng.choice(len(df), max_rows, replace=False))] if len(df) > max_rows else df

    tr, sy, te = take(train), take(synthetic), take(holdout)
    if min(len(tr), len(sy), len(te)) < 10:
        raise DataError(f"target column '{target}': fewer than 10 rows with a value in one of the tables; utility needs more")
    (Xtr, Xsy, Xte), cat_mask, _ = model_matrices(schema, [tr, sy, te], exclude=(target,))
    cats = cat_mask if cat_mask.any() else None
    regression = col.kind in CONTINUOUS
    figs: dict[str, Any] = {"target": target, "task": "regression" if regression else "classification",
                            "rows_train_real": len(tr), "rows_train_synthetic": len(sy), "rows_test": len(te)}
    if note:
        figs["note"] = note
    positive = None
    if regression:
        ytr, ysy, yte = (to_numeric(d[target], col.kind, col.datetime_format) for d in (tr, sy, te))
        preds = []
        for X, y in ((Xtr, ytr), (Xsy, ysy)):
            model = HistGradientBoostingRegressor(max_iter=max_iter, categorical_features=cats, random_state=random_state)
            preds.append(model.fit(X, y).predict(Xte))
        for tag, p in zip(("trtr", "tstr"), preds):
            figs[tag] = {"r2": float(r2_score(yte, p)), "mae": float(mean_absolute_error(yte, p))}
        figs["ratio"] = {"r2": _ratio(figs["tstr"]["r2"], figs["trtr"]["r2"]),
                         "mae": _ratio(figs["trtr"]["mae"], figs["tstr"]["mae"])}
        figs["headline"] = {"metric": "r2", "trtr": figs["trtr"]["r2"], "tstr": figs["tstr"]["r2"], "ratio": figs["ratio"]["r2"]}
        return UtilityRun(figs, te, preds[0], preds[1], yte)
    ytr, ysy, yte = _labels(tr[target]), _labels(sy[target]), _labels(te[target])
    classes = np.array(sorted(set(ytr) | set(yte)), dtype=object)
    counts = pd.Series(ytr).value_counts()
    binary = len(classes) == 2
    positive = counts.index[-1] if len(counts) else classes[-1]
    outs = []
    for X, y in ((Xtr, ytr), (Xsy, ysy)):
        outs.append(_classification(X, y, Xte, classes, cats, max_iter, random_state))
    for tag, o in zip(("trtr", "tstr"), outs):
        pred, proba = o["pred"], o["proba"]
        f = {"accuracy": float(accuracy_score(yte, pred))}
        if binary:
            f["f1"] = float(f1_score(yte, pred, pos_label=positive, average="binary", zero_division=0))
            f["roc_auc"] = float(roc_auc_score(yte == positive, proba[:, list(classes).index(positive)])) if len(set(yte)) == 2 else float("nan")
        else:
            f["f1"] = float(f1_score(yte, pred, average="macro", zero_division=0))
            present = [j for j, c in enumerate(classes) if c in set(yte)]
            try:
                p = proba[:, present]
                p = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)
                f["roc_auc"] = float(roc_auc_score(yte, p, multi_class="ovr", labels=classes[present]))
            except ValueError:
                f["roc_auc"] = float("nan")
        figs[tag] = f
    figs["ratio"] = {k: _ratio(figs["tstr"][k], figs["trtr"][k]) for k in ("accuracy", "f1", "roc_auc")}
    figs["positive_class"] = str(positive)
    key = "roc_auc" if np.isfinite(figs["trtr"]["roc_auc"]) else "accuracy"
    figs["headline"] = {"metric": key, "trtr": figs["trtr"][key], "tstr": figs["tstr"][key], "ratio": figs["ratio"][key]}
    return UtilityRun(figs, te, outs[0]["pred"], outs[1]["pred"], yte, positive)


def _ratio(num: float, den: float) -> float:
    return float(num / den) if np.isfinite(num) and np.isfinite(den) and den != 0 else float("nan")
