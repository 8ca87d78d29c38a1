"""Near-duplicate detection and diversity figures for text columns.

Texts are normalized (lower case, punctuation dropped, spaces collapsed) and cut into character
n-grams; a sparse 0/1 matrix of hashed n-grams gives all pairwise Jaccard similarities with one
sparse product, so no Python loop runs over pairs of rows.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize(texts: Iterable[Any]) -> pd.Series:
    s = pd.Series(list(texts), dtype=object).fillna("").astype(str).str.lower()
    s = s.str.replace(_PUNCT, " ", regex=True).str.replace(_SPACE, " ", regex=True).str.strip()
    return s


def shingle_matrix(texts: Iterable[Any], n: int = 3) -> sp.csr_matrix:
    """Rows = texts, columns = hashed character n-grams of the normalized text, values 0/1."""
    from sklearn.feature_extraction.text import HashingVectorizer

    norm = normalize(texts)
    # texts shorter than n still get one shingle (the whole text), so they compare exactly
    norm = norm.where(norm.str.len() >= n, norm.str.pad(n, side="right", fillchar="_"))
    vec = HashingVectorizer(analyzer="char", ngram_range=(n, n), n_features=2**20, binary=True,
                            norm=None, alternate_sign=False, lowercase=False)
    return vec.transform(norm.tolist()).tocsr().astype(np.float32)


def jaccard_matrix(a: sp.csr_matrix, b: sp.csr_matrix | None = None) -> np.ndarray:
    """Dense Jaccard similarities between the rows of a and b (b defaults to a)."""
    b = a if b is None else b
    inter = (a @ b.T).toarray()
    na = np.asarray(a.sum(axis=1)).ravel()
    nb = np.asarray(b.sum(axis=1)).ravel()
    union = na[:, None] + nb[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1e-12), 1.0)


def near_duplicates(texts: Iterable[Any], threshold: float = 0.8, n: int = 3, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(is_dup, twin): row i is a duplicate when an earlier row has Jaccard >= threshold;
    twin[i] is that earlier row (-1 when none). Exact duplicates after normalization count too."""
    X = shingle_matrix(texts, n)
    m = X.shape[0]
    is_dup = np.zeros(m, dtype=bool)
    twin = np.full(m, -1, dtype=int)
    for start in range(0, m, block):  # blocks bound memory at block x m floats
        stop = min(m, start + block)
        sim = jaccard_matrix(X[start:stop], X[:stop])
        rows = np.arange(start, stop)
        sim[np.arange(stop)[None, :] >= rows[:, None]] = 0  # only earlier rows count as twins
        hit = sim >= threshold
        has = hit.any(axis=1)
        is_dup[start:stop] = has
        twin[start:stop] = np.where(has, hit.argmax(axis=1), -1)
    return is_dup, twin


def distinct_n(texts: Iterable[Any], n: int = 1) -> float:
    """Distinct-n: unique word n-grams / all word n-grams over the column (1.0 = no repetition)."""
    words = normalize(texts).str.split()
    grams = [tuple(w[i:i + n]) for w in words for i in range(max(0, len(w) - n + 1))]
    return float(len(set(grams)) / len(grams)) if grams else 0.0


def diversity_report(texts: Iterable[Any], threshold: float = 0.8, n: int = 3) -> dict[str, float]:
    t = list(texts)
    dup, _ = near_duplicates(t, threshold, n)
    norm = normalize(t)
    return {
        "rows": len(t),
        "duplicate_rate": float(dup.mean()) if len(t) else 0.0,
        "exact_duplicate_rate": float(norm.duplicated().mean()) if len(t) else 0.0,
        "distinct_1": distinct_n(t, 1),
        "distinct_2": distinct_n(t, 2),
    }
