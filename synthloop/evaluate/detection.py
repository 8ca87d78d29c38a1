"""Detection: can a gradient-boosted classifier tell real rows from synthetic ones?

A balanced sample (equal rows of each) is scored by cross-validated ROC AUC of a
HistGradientBoostingClassifier with native categorical support. 0.5 means the classifier cannot
tell them apart (ideal); 1.0 means every synthetic row is recognisable. Per-column contributions are
permutation importances on the first held-out fold (AUC lost when that column is shuffled), so they point
at the columns that give the synthetic data away.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from synthloop.evaluate._frames import limited_threads, model_matrices
from synthloop.schema import TableSchema, infer_schema


def detection_score(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema | None = None,
                    max_rows: int = 5_000, folds: int = 3, max_iter: int = 100,
                    random_state: int = 0, threads: int = 1, perm_rows: int = 2_000) -> dict[str, Any]:
    """Cross-validated ROC AUC of real-vs-synthetic detection, plus per-column contributions."""
    with limited_threads(threads):
        return _detection(real, synthetic, schema, max_rows, folds, max_iter, random_state, perm_rows)


def _detection(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema | None, max_rows: int, folds: int,
               max_iter: int, random_state: int, perm_rows: int) -> dict[str, Any]:
    schema = schema or infer_schema(real)
    rng = np.random.default_rng(random_state)
    n = min(len(real), len(synthetic), max_rows)
    r = real.iloc[np.sort(rng.choice(len(real), n, replace=False))]
    s = synthetic.iloc[np.sort(rng.choice(len(synthetic), n, replace=False))]
    (fr, fs), cat_mask, names = model_matrices(schema, [r, s])
    if fr.shape[1] == 0 or n < 2 * folds:
        return {"detection_auc": float("nan"), "detection_score": float("nan"), "rows_per_side": int(n), "columns": []}
    X = np.vstack([fr, fs])
    y = np.r_[np.zeros(n), np.ones(n)]
    oof = np.zeros(2 * n)
    drops = np.zeros(X.shape[1])
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for f, (tr, te) in enumerate(cv.split(X, y)):
        model = HistGradientBoostingClassifier(max_iter=max_iter, categorical_features=cat_mask if cat_mask.any() else None,
                                               early_stopping=False, random_state=random_state)
        model.fit(X[tr], y[tr])
        oof[te] = model.predict_proba(X[te])[:, 1]
        if f == 0:  # permutation importance on (part of) the first held-out fold: enough to rank columns
            part = te[rng.permutation(len(te))[:perm_rows]]
            Xp, yp = X[part], y[part]
            base = roc_auc_score(yp, model.predict_proba(Xp)[:, 1])
            perm = rng.permutation(len(part))
            for j in range(X.shape[1]):
                shuffled = Xp.copy()
                shuffled[:, j] = Xp[perm, j]
                drops[j] = base - roc_auc_score(yp, model.predict_proba(shuffled)[:, 1])
    auc = float(roc_auc_score(y, oof))
    contrib = np.clip(drops, 0.0, None)
    share = contrib / contrib.sum() if contrib.sum() > 0 else contrib
    columns = sorted(({"column": c, "auc_drop": float(d), "share": float(s_)} for c, d, s_ in zip(names, contrib, share)),
                     key=lambda row: -row["auc_drop"])
    # SDMetrics-style score: 1 is indistinguishable, 0 fully detectable
    return {"detection_auc": auc, "detection_score": float(1.0 - max(auc - 0.5, 0.0) * 2.0),
            "rows_per_side": int(n), "folds": folds, "columns": columns}
