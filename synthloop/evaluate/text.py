"""Text fidelity of generated free-text columns against real ones: length KS similarity, vocabulary
and character n-gram distribution similarity, distinct-n, a detection classifier on text features
(TF-IDF plus the structured columns), row-text agreement (when a checker is given) and copying
(the longest token run shared with a real text)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from synthloop.generate.textprivacy import CopyIndex, copy_figures, tokens


def _texts(s: pd.Series | Sequence[str]) -> list[str]:
    return [str(t) for t in pd.Series(list(s), dtype=object).dropna()]


def length_ks_similarity(real: Sequence[str], synth: Sequence[str]) -> float | None:
    """1 - two-sample KS statistic of text lengths in characters (SDMetrics' KSComplement)."""
    from scipy.stats import ks_2samp

    r, s = [len(t) for t in _texts(real)], [len(t) for t in _texts(synth)]
    if not r or not s:
        return None
    return float(1.0 - ks_2samp(r, s).statistic)


def _tvd_similarity(a: Counter, b: Counter) -> float | None:
    ta, tb = sum(a.values()), sum(b.values())
    if not ta or not tb:
        return None
    keys = set(a) | set(b)
    return float(1.0 - 0.5 * sum(abs(a[k] / ta - b[k] / tb) for k in keys))


def vocabulary_similarity(real: Sequence[str], synth: Sequence[str]) -> float | None:
    """1 - TVD of the word (unigram) distributions."""
    return _tvd_similarity(Counter(w for t in _texts(real) for w in tokens(t)),
                           Counter(w for t in _texts(synth) for w in tokens(t)))


def char_ngram_similarity(real: Sequence[str], synth: Sequence[str], n: int = 3) -> float | None:
    """1 - TVD of the character n-gram distributions (lower-cased, spaces normalized)."""
    def grams(ts: list[str]) -> Counter:
        c: Counter = Counter()
        for t in ts:
            t = " ".join(t.lower().split())
            c.update(t[i:i + n] for i in range(len(t) - n + 1))
        return c

    return _tvd_similarity(grams(_texts(real)), grams(_texts(synth)))


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams (diversity; compare at equal sample sizes)."""
    grams = [tuple(t[i:i + n]) for t in (tokens(x) for x in _texts(texts)) for i in range(len(t) - n + 1)]
    return float(len(set(grams)) / len(grams)) if grams else None


def text_detection_auc(real: pd.DataFrame, synth: pd.DataFrame, text_column: str, structured: Sequence[str] = (),
                       max_rows: int = 2000, seed: int = 0) -> float | None:
    """Cross-validated ROC AUC of a logistic regression telling real from synthetic rows on TF-IDF
    features of the text (word and character n-grams) plus the structured columns (0.5 is ideal)."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.metrics import roc_auc_score

    m = min(len(real), len(synth), max_rows)
    if m < 10:
        return None
    r = real.sample(m, random_state=seed) if len(real) > m else real
    s = synth.sample(m, random_state=seed) if len(synth) > m else synth
    both = pd.concat([r, s], ignore_index=True)
    y = np.r_[np.zeros(len(r)), np.ones(len(s))]
    texts = both[text_column].fillna("").astype(str)
    feats = [TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True).fit_transform(texts),
             TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)]
    for c in structured:
        if c not in both.columns:
            continue
        v = both[c]
        num = pd.to_numeric(v, errors="coerce")
        if num.notna().mean() >= 0.95:
            x = num.fillna(num.median()).to_numpy(dtype=float)
            x = (x - x.mean()) / (x.std() or 1.0)
            feats.append(csr_matrix(x[:, None]))
        else:
            feats.append(csr_matrix(pd.get_dummies(v.astype(str)).to_numpy(dtype=float)))
    X = hstack(feats).tocsr()
    clf = LogisticRegression(max_iter=500, C=1.0)
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    p = cross_val_predict(clf, X, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def text_metrics(real: pd.DataFrame, synth: pd.DataFrame, column: str, real_column: str | None = None,
                 structured: Sequence[str] = (), agreement: Callable[[pd.DataFrame], Sequence[bool]] | None = None,
                 max_copied_run: int = 8, seed: int = 0, detection: bool = True) -> dict[str, Any]:
    """Every text figure for one column. `agreement(df) -> bool per row`: a row-text agreement check
    (e.g. the spec's rules), whose rate is reported on synthetic and, as a reference, real rows."""
    rc = real_column or column
    rt, st = _texts(real[rc]), _texts(synth[column])
    n = min(len(rt), len(st))
    rng = np.random.default_rng(seed)
    rt_eq = [rt[i] for i in rng.choice(len(rt), n, replace=False)] if len(rt) > n else rt
    runs = CopyIndex(rt).longest_runs(st)
    out: dict[str, Any] = {
        "rows": {"real": len(rt), "synthetic": len(st)},
        "length_ks_similarity": length_ks_similarity(rt, st),
        "vocabulary_similarity": vocabulary_similarity(rt_eq, st),
        "char_ngram_similarity": char_ngram_similarity(rt_eq, st),
        "distinct_1": {"real": distinct_n(rt_eq, 1), "synthetic": distinct_n(st, 1)},
        "distinct_2": {"real": distinct_n(rt_eq, 2), "synthetic": distinct_n(st, 2)},
        "mean_chars": {"real": float(np.mean([len(t) for t in rt])) if rt else None,
                       "synthetic": float(np.mean([len(t) for t in st])) if st else None},
        "copy": copy_figures(runs, max_copied_run),
    }
    if detection:
        r = real.rename(columns={rc: column}) if rc != column else real
        out["detection_auc"] = text_detection_auc(r, synth, column, [c for c in structured if c in synth.columns],
                                                  seed=seed)
    if agreement is not None:
        ok = np.asarray(agreement(synth), dtype=bool)
        out["agreement_rate"] = float(ok.mean()) if len(ok) else None
        r = real.rename(columns={rc: column}) if rc != column else real
        ok_r = np.asarray(agreement(r), dtype=bool)
        out["agreement_rate_real"] = float(ok_r.mean()) if len(ok_r) else None
    return out
