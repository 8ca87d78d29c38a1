"""Text privacy against a real table: the longest run of tokens a generated text shares with any real
text (a copied run of `max_copied_run` tokens or more is regenerated), and the real table's personal
values (names, emails, phones, ids) found in, and scrubbed from, texts: few-shot examples before they
reach a prompt, and generated texts that still hold one after regeneration."""
from __future__ import annotations

import re
import zlib
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

_TOKEN = re.compile(r"\w+", re.UNICODE)
# PII tokens keep their inner punctuation so emails and dashed phone numbers stay one token
_PII_TOKEN = re.compile(r"[\w][\w.@+'-]*[\w]|\w", re.UNICODE)
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
PHONE_RE = re.compile(r"(?<!\w)\+?\d[\d ().-]{7,}\d(?!\w)")
MAX_PII_TOKENS = 4


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (what copy runs count)."""
    return _TOKEN.findall(str(text).lower())


class CopyIndex:
    """Longest common token run of generated texts with a corpus of real texts."""

    def __init__(self, real_texts: Iterable[str], cap: int = 64) -> None:
        self.real = [tokens(t) for t in real_texts]
        self.cap = cap
        self._sets: dict[int, set[int]] = {}

    def _grams(self, L: int) -> set[int]:
        if L not in self._sets:
            self._sets[L] = {hash(" ".join(t[i:i + L])) for t in self.real for i in range(len(t) - L + 1)}
        return self._sets[L]

    def longest_runs(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the most consecutive tokens it shares with one real text (capped at `cap`)."""
        toks = [tokens(t) for t in texts]
        out = np.zeros(len(toks), dtype=int)
        alive = [i for i, t in enumerate(toks) if t]
        L = 1
        while alive and L <= self.cap:
            grams = self._grams(L)
            still = []
            for i in alive:
                t = toks[i]
                if any(hash(" ".join(t[j:j + L])) in grams for j in range(len(t) - L + 1)):
                    out[i] = L
                    still.append(i)
            alive = still
            L += 1
        return out


def trim_copy(index: "CopyIndex", text: str, limit: int) -> str:
    """`text` cut before the token at which it would share `limit` tokens in a row with a real text
    (the last resort when regeneration keeps copying)."""
    spans = [m.start() for m in _TOKEN.finditer(str(text))]
    def first(k: int) -> str:  # the text up to (not including) token k
        return text[:spans[k]] if k < len(spans) else text

    keep = len(spans)
    while keep > 0 and index.longest_runs([first(keep)])[0] >= limit:
        keep -= 1
    return first(keep).rstrip(" ,;:-(")


def _norm(v: str) -> tuple[str, ...]:
    return tuple(x.lower() for x in _PII_TOKEN.findall(v))


class PiiIndex:
    """The real table's personal values, matched as whole token sequences (case-insensitive).

    Values that are common words of the real text column itself (in at least `common_share` of its
    texts) are dropped: a pet called "Tiger" must not forbid the breed "Tiger"."""

    def __init__(self, values: dict[str, str], common: Iterable[str] = ()) -> None:
        common_set = set(common)
        self.kind: dict[tuple[str, ...], str] = {}
        for v, kind in values.items():
            key = _norm(v)
            if not key or len(key) > MAX_PII_TOKENS or len(" ".join(key)) < 3:
                continue
            if len(key) == 1 and key[0] in common_set:
                continue
            self.kind[key] = kind
        self.max_len = max((len(k) for k in self.kind), default=0)

    def __len__(self) -> int:
        return len(self.kind)

    def spans(self, text: str, generic: bool = True) -> list[tuple[int, int, str]]:
        """(start, end, kind) of each real personal value in `text`, longest match first; with
        `generic`, every email address and phone number too (what scrubbing real texts removes)."""
        found: list[tuple[int, int, str]] = []
        if generic:
            found += [(m.start(), m.end(), "email") for m in EMAIL_RE.finditer(text)]
            found += [(m.start(), m.end(), "phone") for m in PHONE_RE.finditer(text)
                      if sum(ch.isdigit() for ch in m.group()) >= 9]
        if self.kind:
            toks = [(m.start(), m.end(), m.group().lower()) for m in _PII_TOKEN.finditer(text)]
            j = 0
            while j < len(toks):
                for L in range(min(self.max_len, len(toks) - j), 0, -1):
                    key = tuple(t[2] for t in toks[j:j + L])
                    if key in self.kind:
                        found.append((toks[j][0], toks[j + L - 1][1], self.kind[key]))
                        j += L - 1
                        break
                j += 1
        found.sort()
        merged: list[tuple[int, int, str]] = []
        for s, e, k in found:
            if merged and s < merged[-1][1]:
                continue
            merged.append((s, e, k))
        return merged

    def hits(self, texts: Sequence[str]) -> list[list[str]]:
        """The real table's personal values found in each text (fake stand-ins do not count)."""
        return [[str(t)[s:e] for s, e, _ in self.spans(str(t), generic=False)] for t in texts]

    def scrub(self, texts: Sequence[str], seed: int = 0) -> list[str]:
        """Texts with each personal value replaced by a fake one of its kind (seeded, so stable)."""
        out = []
        for t in texts:
            t = str(t)
            spans = self.spans(t)
            if not spans:
                out.append(t)
                continue
            parts, last = [], 0
            for s, e, kind in spans:
                parts += [t[last:s], fake_value(kind, t[s:e], seed)]
                last = e
            out.append("".join(parts) + t[last:])
        return out


def fake_value(kind: str, original: str, seed: int = 0) -> str:
    """A stand-in of the same kind, picked from Faker by a hash of the original (no real value kept)."""
    from faker import Faker

    fk = Faker("en_US")
    fk.seed_instance(zlib.crc32(f"{seed}:{original}".encode()))
    if kind == "email":
        return fk.email()
    if kind == "phone":
        return fk.phone_number()
    if kind == "name":
        return fk.name() if " " in original.strip() else fk.first_name()
    if kind == "first_name":
        return fk.first_name()
    if kind == "last_name":
        return fk.last_name()
    if kind == "address":
        return fk.street_address()
    # ids and other values: same shape, other characters
    rng = np.random.default_rng(zlib.crc32(original.encode()) ^ seed)
    return "".join(str(rng.integers(10)) if c.isdigit() else chr(65 + int(rng.integers(26))) if c.isalpha() else c
                   for c in original)


def pii_values(real: pd.DataFrame, extra_columns: Sequence[str] = (), text_columns: Sequence[str] = (),
               max_values: int = 200_000) -> dict[str, str]:
    """Personal values of the real table: PII and id columns (inferred), `extra_columns`, and emails or
    phone numbers written inside `text_columns`; value -> kind."""
    import warnings

    from synthloop.schema import ColumnKind, infer_schema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = infer_schema(real)
    out: dict[str, str] = {}
    for col in schema.columns:
        named = col.name in extra_columns
        if col.kind not in (ColumnKind.PII, ColumnKind.ID) and not named:
            continue
        kind = col.pii_type.value if col.pii_type is not None else ("name" if named else "id")
        if col.kind == ColumnKind.ID and col.name not in extra_columns and pd.api.types.is_numeric_dtype(real[col.name]):
            # small integer keys (1, 2, 3 ...) are not identifying inside prose; long ones are
            vals = real[col.name].dropna()
            vals = vals[vals.abs() >= 10_000]
        else:
            vals = real[col.name].dropna()
        for v in pd.unique(vals.astype(str))[:max_values]:
            out.setdefault(str(v), kind)
    for c in text_columns:
        if c not in real.columns:
            continue
        texts = real[c].dropna().astype(str)
        for rx, kind in ((EMAIL_RE, "email"), (PHONE_RE, "phone")):
            for found in texts.str.findall(rx):
                for v in found:
                    out.setdefault(v, kind)
    return out


def common_tokens(texts: Iterable[str], share: float = 0.005, min_count: int = 3) -> set[str]:
    """Word tokens in at least `share` of `texts` (and `min_count` of them): domain words, not identifiers."""
    docs = [set(_norm(str(t))) for t in texts]
    counts: dict[str, int] = {}
    for d in docs:
        for w in d:
            counts[w] = counts.get(w, 0) + 1
    floor = max(min_count, share * len(docs))
    return {w for w, c in counts.items() if c >= floor}


def copy_figures(runs: np.ndarray, threshold: int) -> dict[str, Any]:
    """Summary of longest common token runs (what the summary and the report show)."""
    runs = np.asarray(runs, dtype=int)
    if not len(runs):
        return {"max": None, "mean": None, "share_at_or_above": None, "threshold": threshold}
    return {"max": int(runs.max()), "mean": round(float(runs.mean()), 4),
            "share_at_or_above": round(float((runs >= threshold).mean()), 6), "threshold": threshold}
