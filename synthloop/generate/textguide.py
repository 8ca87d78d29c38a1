"""Steering an LLM text column by the real texts of a learn table: few-shot examples from the real
rows nearest to each synthetic row (on the structured columns), PII replaced before they reach a
prompt; style statistics (length, vocabulary, typical openings) stated in the prompt and checked on
the output; and the indexes the privacy checks use (copied token runs, real personal values)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd

from synthloop.generate.textprivacy import CopyIndex, PiiIndex, common_tokens, pii_values, tokens

MAX_REAL_TEXTS = 5000


def style_stats(texts: Sequence[str], top: int = 5) -> dict[str, Any]:
    """Length quantiles (characters and words), the most common first words, and vocabulary size."""
    s = pd.Series([str(t) for t in texts], dtype=object)
    if not len(s):
        return {"n": 0}
    chars = s.str.len().to_numpy()
    words = s.str.split().str.len().fillna(0).to_numpy()
    firsts = Counter(t.split()[0].strip(".,;:!?\"'").lower() for t in s if t.split())
    vocab = Counter(w for t in s for w in tokens(t))
    q = [10, 50, 90]
    return {
        "n": int(len(s)),
        "chars": dict(zip(("p10", "p50", "p90"), np.percentile(chars, q).round(1).tolist())),
        "words": dict(zip(("p10", "p50", "p90"), np.percentile(words, q).round(1).tolist())),
        "openings": [[w, round(c / len(s), 4)] for w, c in firsts.most_common(top)],
        "vocabulary": len(vocab),
        "top_words": [w for w, _ in vocab.most_common(20)],
    }


def style_rules(stats: dict[str, Any]) -> list[str]:
    """Prompt lines stating the real texts' style."""
    if not stats.get("n"):
        return []
    c, w = stats["chars"], stats["words"]
    rules = [f"Write like the real texts: usually {int(w['p10'])}-{int(np.ceil(w['p90']))} words "
             f"({int(c['p10'])}-{int(np.ceil(c['p90']))} characters), typically about {int(round(w['p50']))} words."]
    opens = [o for o, share in stats.get("openings", []) if share >= 0.05]
    if opens:
        rules.append("Real texts often begin with: " + ", ".join(f'"{o}"' for o in opens[:4]) + ".")
    return rules


class _Encoder:
    """Structured columns as numbers for neighbour search: ranks in [0, 1] for numbers and dates,
    one-hot (scaled so a mismatch costs 1) for the most common categories."""

    def __init__(self, real: pd.DataFrame, columns: list[str], max_categories: int = 30) -> None:
        self.cols: list[tuple[str, str, Any]] = []
        for c in columns:
            s = real[c]
            num = _numeric(s)
            if num is not None and num.notna().mean() >= 0.95:
                self.cols.append((c, "num", np.sort(num.dropna().to_numpy())))
            else:
                cats = s.astype(str).value_counts().index[:max_categories].tolist()
                self.cols.append((c, "cat", cats))

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        parts = []
        for c, kind, info in self.cols:
            s = df[c] if c in df.columns else pd.Series([None] * len(df))
            if kind == "num":
                x = _numeric(s)
                x = (x if x is not None else pd.Series(np.nan, index=s.index)).to_numpy(dtype=float)
                r = np.searchsorted(info, x) / max(len(info), 1)
                parts.append(np.nan_to_num(r, nan=0.5)[:, None])
            else:
                v = s.astype(str).to_numpy()
                parts.append((v[:, None] == np.array(info, dtype=object)[None, :]).astype(float) / np.sqrt(2))
        return np.hstack(parts) if parts else np.zeros((len(df), 1))


def _numeric(s: pd.Series) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float)
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("int64").astype(float)
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().mean() >= 0.95:
        return num
    try:
        dt = pd.to_datetime(s, errors="coerce", format="mixed")
    except (TypeError, ValueError):
        return None
    if dt.notna().mean() >= 0.95:
        return pd.Series(dt.astype("int64").astype(float), index=s.index).where(dt.notna())
    return None


class TextGuide:
    """What the real texts of one column tell the generator (see the module docstring).

    `context`: structured columns shared by the real table and the synthetic rows (neighbour search);
    `shown`: the context columns printed beside each example text; `pii_extra`: columns whose values
    count as personal data besides those detected."""

    def __init__(self, real: pd.DataFrame, text_column: str, output_name: str, context: Sequence[str],
                 shown: Sequence[str] = (), k: int = 3, seed: int = 0, pii_extra: Sequence[str] = ()) -> None:
        mask = real[text_column].notna() & real[text_column].astype(str).str.strip().ne("")
        sub = real.loc[mask]
        if len(sub) > MAX_REAL_TEXTS:
            sub = sub.sample(MAX_REAL_TEXTS, random_state=seed)
        sub = sub.reset_index(drop=True)
        raw = [" ".join(str(t).split()) for t in sub[text_column]]
        all_texts = real.loc[mask, text_column].astype(str).tolist()
        self.pii = PiiIndex(pii_values(real, pii_extra, [text_column]), common_tokens(all_texts))
        self.texts = self.pii.scrub(raw, seed)  # what may reach a prompt
        self.copy = CopyIndex(all_texts)  # copying is judged against every real text
        self.style = style_stats(raw)
        lengths = np.array([len(t) for t in raw]) if raw else np.array([0])
        self.length_range = (int(np.floor(np.percentile(lengths, 1))), int(np.ceil(np.percentile(lengths, 99))))
        self.output_name = output_name
        self.context = [c for c in context if c in sub.columns]
        self.shown = [c for c in shown if c in self.context]
        self.rows = sub[self.shown].reset_index(drop=True)
        self.k = k
        self.seed = seed
        self._enc = _Encoder(sub, self.context) if self.context else None
        self._X = self._enc.transform(sub) if self._enc else None
        self._nn: Any = None
        self._picked: dict[int, np.ndarray] = {}
        self._target: dict[int, int] = {}

    def plan(self, frame: pd.DataFrame) -> None:
        """Pick every synthetic row's examples at once: the 4k nearest real rows, k of them by a
        seeded draw (ties of identical structured values would otherwise always give the same k)."""
        self._picked, self._target = {}, {}
        if not self.texts:
            return
        n = len(frame)
        want = min(max(4 * self.k, 1), len(self.texts))  # neighbours: 0 still plans a length from one near text
        if self._X is None:
            cand = np.tile(np.arange(len(self.texts)), (n, 1))
        else:
            from sklearn.neighbors import NearestNeighbors

            if self._nn is None:
                self._nn = NearestNeighbors(n_neighbors=want).fit(self._X)
            cand = self._nn.kneighbors(self._enc.transform(frame), n_neighbors=want, return_distance=False)
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, 16])
        keys = rng.random(cand.shape)
        order = np.argsort(keys, axis=1)
        self._picked = dict(enumerate(np.take_along_axis(cand, order[:, : self.k], axis=1))) if self.k else {}
        # a planned length per row: that of one more near real text, so lengths follow the real
        # distribution given the structured values (the answer closest to it is kept)
        lengths = np.array([len(t) for t in self.texts])
        self._target = dict(enumerate(lengths[np.take_along_axis(cand, order[:, -1:], axis=1)[:, 0]]))

    def examples(self, i: int) -> list[dict[str, Any]]:
        """Few-shot examples of synthetic row i (PII already replaced), distinct texts only."""
        from synthloop.generate.prompts import _plain

        out, seen = [], set()
        for j in self._picked.get(i, []):
            t = self.texts[int(j)]
            if t in seen:
                continue
            seen.add(t)
            ex = {c: _plain(self.rows.at[int(j), c]) for c in self.shown}
            ex[self.output_name] = t
            out.append(ex)
        return out

    def rules(self) -> list[str]:
        return style_rules(self.style)

    def target_length(self, i: int) -> int | None:
        t = self._target.get(i)
        return int(t) if t is not None else None

    def row_rules(self, i: int) -> list[str]:
        t = self.target_length(i)
        return [f"About {t} characters long."] if t is not None else []

    def length_gap(self, text: str, i: int) -> float:
        """How far `text` is from row i's planned length (0 when there is none)."""
        t = self.target_length(i)
        return abs(len(text) - t) / max(t, 1) if t is not None else 0.0

    def style_failures(self, text: str, i: int | None = None) -> list[str]:
        """Why `text` falls outside the real texts' style: length beyond the real 1st-99th
        percentile or far from row i's planned length, or a phrase repeated (a small model's way
        of filling space)."""
        lo, hi = self.length_range
        out = []
        t = self.target_length(i) if i is not None else None
        if len(text) > hi:
            out.append(f"it is longer than the real texts (at most about {hi} characters)")
        elif len(text) < lo:
            out.append(f"it is shorter than the real texts (at least about {lo} characters)")
        elif t is not None and abs(len(text) - t) > max(3, 0.25 * t):
            out.append(f"it should be about {t} characters long, not {len(text)}")
        toks = tokens(text)
        grams = [" ".join(toks[i:i + 2]) for i in range(len(toks) - 1)]
        if len(grams) >= 3 and len(set(grams)) < len(grams) * 0.75:
            out.append("it repeats itself")
        return out
