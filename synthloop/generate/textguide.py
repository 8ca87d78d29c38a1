"""Steering an LLM text column by the real texts of a learn table: few-shot examples from the real
rows nearest to each synthetic row (on the structured columns), PII replaced before they reach a
prompt; style statistics (length, vocabulary, typical openings) stated in the prompt and checked on
the output; and the indexes the privacy checks use (copied token runs, real personal values)."""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd

from synthloop.generate.textprivacy import CopyIndex, PiiIndex, common_tokens, pii_values, tokens

MAX_REAL_TEXTS = 5000
LENGTH_KS_BUDGET = 0.02  # KS distance the length band may add to the real length distribution (auto tolerance)
TOLERANCE_GRID = (0.25, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 0.0)


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


def stratified_lengths(real: np.ndarray, drawn: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Planned lengths whose distribution is the real one up to one stratum: one draw from each of n
    equal-probability strata of the real lengths, handed out in the order of the rows' own draws
    (from their near real texts, ties broken at random). A row keeps its place among the others, so
    length still follows its structured values, and n i.i.d. draws' sampling noise (a KS distance
    of ~0.9/sqrt(n)) does not reach the marginal."""
    n = len(drawn)
    if not n or not len(real):
        return drawn
    srt = np.sort(real)
    u = (np.arange(n) + rng.random(n)) / n
    strata = srt[np.minimum((u * len(srt)).astype(int), len(srt) - 1)]
    out = np.empty(n, dtype=srt.dtype)
    out[np.lexsort((rng.random(n), drawn))] = np.sort(strata)
    return out


def length_tolerance(real: np.ndarray, budget: float = LENGTH_KS_BUDGET) -> float:
    """The widest band half-width (a share of the planned length, rounded to whole characters) that
    keeps the real length distribution within `budget` KS distance when every length is moved
    anywhere inside its band (uniformly: the worst a model answering "about right" does). A peaked
    column (short labels, a quarter of them 18 characters) gets a near-exact band; a smooth one
    (narratives) a wide band and fewer regenerations. Accepting +-15% on such a peaked column alone
    costs ~0.11 of KS similarity."""
    vals, cnt = np.unique(np.asarray(real, dtype=int), return_counts=True)
    if not len(vals):
        return TOLERANCE_GRID[0]
    p = cnt / cnt.sum()
    widest = np.rint(TOLERANCE_GRID[0] * vals).astype(int)
    xs = np.arange((vals - widest).min() - 1, (vals + widest).max() + 1)
    if len(xs) > 4000:  # long texts: a grid of integer points (the CDFs are smooth at that scale)
        xs = np.unique(np.linspace(xs[0], xs[-1], 4000).astype(int))
    cdf = np.concatenate([[0.0], np.cumsum(p)])[np.searchsorted(vals, xs, side="right")]
    for r in TOLERANCE_GRID:
        tol = np.rint(r * vals)
        frac = np.clip((xs[None, :] - (vals - tol)[:, None] + 1) / (2 * tol + 1)[:, None], 0.0, 1.0)
        if np.abs(p @ frac - cdf).max() <= budget:
            return float(r)
    return 0.0


def balance_lengths(real: np.ndarray, candidates: Sequence[Sequence[int]], passes: int = 8) -> tuple[np.ndarray, float, float]:
    """One candidate per row (index into its list; the first is the row's own pick, closest to its
    plan) so that the chosen lengths follow the real length distribution: a writer that misses its
    plans in one direction (a model that writes 20 characters when 18 are asked) leaves some lengths
    under-filled, and a row whose valid answers include one in an under-filled place takes it.
    Greedy over the rows in order, a move only when it lowers (KS distance, squared CDF gap) in that
    order, so the KS distance never grows; a pure function of the candidate lists, hence the same
    with any worker count or after a resume. Returns (choice, KS before, KS after)."""
    n = len(candidates)
    choice = np.zeros(n, dtype=int)
    real = np.sort(np.asarray(real, dtype=int))
    if not n or not len(real):
        return choice, 0.0, 0.0
    flat = np.concatenate([np.asarray(c, dtype=int) for c in candidates])
    grid = np.unique(np.concatenate([real, flat]))  # the CDFs change only at these lengths
    f_real = np.searchsorted(real, grid, side="right") / len(real)
    first = np.array([c[0] for c in candidates], dtype=int)
    f_w = np.searchsorted(np.sort(first), grid, side="right") / n
    d = f_w - f_real
    ks0 = float(np.abs(d).max())
    multi = [r for r in range(n) if len(set(candidates[r])) > 1]  # only rows with a choice (few)
    for _ in range(passes):
        moved = False
        for r in multi:
            c = np.asarray(candidates[r], dtype=int)
            cur = c[choice[r]]
            # moving row r from length cur to b shifts the written CDF by 1/n between them
            shift = ((grid[None, :] >= c[:, None]).astype(float) - (grid >= cur).astype(float)[None, :]) / n
            trial = d[None, :] + shift
            ks = np.round(np.abs(trial).max(axis=1), 12)
            l2 = np.round((trial ** 2).sum(axis=1), 12)
            best = int(np.lexsort((np.arange(len(c)), l2, ks))[0])
            if (ks[best], l2[best]) < (ks[choice[r]], l2[choice[r]]):
                d = trial[best]
                choice[r] = best
                moved = True
        if not moved:
            break
    return choice, ks0, float(np.abs(d).max())


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
    count as personal data besides those detected; `tolerance`: the share of a row's planned length
    its answer may be off by (None: derived from the real lengths, see `length_tolerance`)."""

    def __init__(self, real: pd.DataFrame, text_column: str, output_name: str, context: Sequence[str],
                 shown: Sequence[str] = (), k: int = 3, seed: int = 0, pii_extra: Sequence[str] = (),
                 tolerance: float | None = None) -> None:
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
        # how far an answer may be from its row's planned length (a share of it): given, or the widest
        # that leaves the real length distribution as it is (see length_tolerance)
        self.tolerance = float(tolerance) if tolerance is not None else length_tolerance(lengths)
        self.real_lengths = lengths  # what `balance_lengths` matches the written lengths to
        self.output_name = output_name
        self.context = [c for c in context if c in sub.columns]
        self.shown = [c for c in shown if c in self.context]
        self.rows = sub[self.shown].reset_index(drop=True)
        self.frame = sub[self.context].reset_index(drop=True)  # the rows of `texts` (what a tuned model learns from)
        self.k = k
        self.seed = seed
        self._enc = _Encoder(sub, self.context) if self.context else None
        self._X = self._enc.transform(sub) if self._enc else None
        self._nn: Any = None
        self._picked: dict[int, np.ndarray] = {}
        self._target: dict[int, int] = {}
        self._target_words: dict[int, int] = {}

    def plan(self, frame: pd.DataFrame) -> None:
        """Plan every synthetic row at once: a length (that of one of its 4k nearest real rows,
        stratified over the real length distribution) and k examples among those near rows, by a
        seeded draw (ties of identical structured values would otherwise always give the same k),
        the last of them the near text whose length is closest to the plan, so the examples show the
        length asked for."""
        self._picked, self._target, self._target_words = {}, {}, {}
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
        # a planned length per row: that of one more near real text, so lengths follow the real
        # distribution given the structured values (the answer closest to it is kept)
        lengths = np.array([len(t) for t in self.texts])
        words = np.array([len(t.split()) for t in self.texts])
        drawn = np.take_along_axis(cand, order[:, -1:], axis=1)[:, 0]
        target = stratified_lengths(lengths, lengths[drawn], rng)
        self._target = dict(enumerate(target))
        # the near text closest to the planned length (ties: the seeded keys) is shown last
        gap = np.abs(lengths[cand] - target[:, None]) + 0.5 * keys
        best_col = gap.argmin(axis=1)
        best = cand[np.arange(n), best_col]
        self._target_words = dict(enumerate(words[best]))
        if self.k:
            rest_keys = keys.copy()
            rest_keys[np.arange(n), best_col] = np.inf
            rest = np.take_along_axis(cand, np.argsort(rest_keys, axis=1)[:, : self.k - 1], axis=1)
            self._picked = dict(enumerate(np.hstack([rest, best[:, None]])))

    def examples(self, i: int) -> list[dict[str, Any]]:
        """Few-shot examples of synthetic row i (PII already replaced), distinct texts only; the last
        one is the example of the planned length."""
        from synthloop.generate.prompts import _plain

        out, seen = [], set()
        for j in reversed(self._picked.get(i, [])):
            t = self.texts[int(j)]
            if t in seen:
                continue
            seen.add(t)
            ex = {c: _plain(self.rows.at[int(j), c]) for c in self.shown}
            ex[self.output_name] = t
            out.append(ex)
        return out[::-1]

    def rules(self) -> list[str]:
        return style_rules(self.style)

    def target_length(self, i: int) -> int | None:
        t = self._target.get(i)
        return int(t) if t is not None else None

    def band(self, i: int) -> tuple[int, int] | None:
        """The lengths (characters) an answer for row i may have: its planned length +- `tolerance`
        of it (rounded to whole characters), inside the real 1st-99th percentile range."""
        t = self.target_length(i)
        if t is None:
            return None
        tol = int(np.rint(self.tolerance * t))
        lo, hi = self.length_range
        return max(1, min(t - tol, hi), lo), max(min(t + tol, hi), lo, 1)

    def row_rules(self, i: int) -> list[str]:
        t = self.target_length(i)
        if t is None:
            return []
        w = self._target_words.get(i)
        words = f"{w} word{'s' if w != 1 else ''}, " if w else ""
        return [f"About {t} characters long ({words}no more than {self.band(i)[1]} characters)."]  # type: ignore[index]

    def fit_length(self, text: str, i: int) -> str:
        """`text` cut back towards row i's planned length at a sentence or word boundary when it runs
        past its band (the decoder's cap sits a little above the band, so a text it stopped ends
        mid-word). The cut is made at the boundary nearest the planned length within the band, else
        within +-15% of the plan (a near-exact band seldom has a boundary inside it; the length check
        then asks for another answer and the closest one is kept); shorter texts are left as they are,
        for regeneration. Separators left at the end of a cut are dropped."""
        b = self.band(i)
        if b is None:
            return text
        lo, hi = b
        text = text.strip()
        if len(text) <= hi:
            return text
        t = self.target_length(i) or hi
        w = max(int(np.ceil(0.15 * t)), 2)
        head = text[:max(hi, t + w) + 2]
        sentences = [head[:m.end()] for m in re.finditer(r"[.!?](?=\s|$)", head)]
        words = [head[:m.start()].rstrip(" ,;:-(/&").strip() for m in re.finditer(r"\s", head)]
        for clo, chi in ((lo, hi), (min(lo, t - w), max(hi, t + w))):
            for cuts in (sentences, words):  # the sentence end nearest the plan, else the word boundary
                inside = [c for c in cuts if clo <= len(c) <= chi]
                if inside:
                    return min(inside, key=lambda c: (abs(len(c) - t), -len(c)))
        return text

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
        elif t is not None and len(text) < self.band(i)[0]:  # type: ignore[index]
            out.append(f"it is too short: write about {t} characters, not {len(text)}")
        elif t is not None and len(text) > self.band(i)[1]:  # type: ignore[index]
            out.append(f"it is too long: write about {t} characters, not {len(text)}")
        toks = tokens(text)
        grams = [" ".join(toks[i:i + 2]) for i in range(len(toks) - 1)]
        if len(grams) >= 3 and len(set(grams)) < len(grams) * 0.75:
            out.append("it repeats itself")
        return out
