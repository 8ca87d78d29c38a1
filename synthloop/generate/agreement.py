"""Row-text agreement: does a generated text agree with the other values of its row?

A small model writes fluent text that often contradicts its row ("triaged as low" in a high-severity
row), names the wrong department, or copies a placeholder from the prompt. These checks make that
measurable and fixable: the runner checks every generated cell, regenerates a failing one with the
failure stated in plain words, and reports an agreement rate per column.

The API is small so that other generators (the mixed learned + LLM spec) can reuse it:

    checker = AgreementChecker(checks, categories={"severity": ["low", "medium", "high"]})
    failures = checker.check(text, row)        # [] when the text agrees; else plain-language reasons
    req = checker.judge_request(text, row)     # an LLMRequest for the optional LLM judge (or None)
    failures += checker.judge_failures(answer) # the judge's answer -> [] or one reason
    rate = agreement_rate(checker, texts, rows)  # share of (text, row) pairs that agree (no judge)

`checks` is a `synthloop.spec.models.Checks` (the `checks:` block of an LLM column):

    must_mention: [department]              # the row's value of each column must appear in the text
    agrees_with: {severity: triage.severity}  # the text names no *other* value of that column
    regex: ["^[A-Z]"]                       # patterns the text must match
    forbid_regex: ["\\bDr\\.? [A-Z]"]       # patterns it must not match
    expressions: ["len(text) >= 20"]        # safe expressions over the row and `text`
    judge: "Does the note fit a {{ severity }}-severity visit?"   # yes/no, asked to an LLM
    min_words: 4                            # words of two or more letters
    sanity: true                            # no placeholders (<text>, N/A), echoed errors, word-less text

Values are matched case-insensitively on word boundaries, with `_` read as a space (`in_store` is
found in "in store"); a column reference is a column name, or `column.field` for a field of a
structured LLM column.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from synthloop.llm.base import LLMRequest

JUDGE_SYSTEM = "You check records of a synthetic dataset. Answer the question about the text with yes or no."
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
    "additionalProperties": False,
}
TEXT_NAME = "text"  # the name a check expression reads the checked text under

# what a model copies from a prompt instead of writing: answer-format placeholders, empty stand-ins,
# and the wording of error or repair messages
_PLACEHOLDER = re.compile(r"<\s*/?\s*[A-Za-z_][\w -]{0,30}\s*>")
_BRACES = re.compile(r"[{}]")
_EMPTY = {"", "n/a", "na", "none", "null", "text", "...", "-", "unknown", "tbd", "todo", "string"}
_ECHO = re.compile(r"invalid json|control character|json schema|earlier answer|was rejected|reply with|"
                   r"answer (?:is|was) invalid|not usable|at character \d+", re.I)
_WORD = re.compile(r"[^\W\d_]{2,}")


def resolve(row: Mapping[str, Any], ref: str) -> Any:
    """The row's value for `ref`: a column name, or `column.field` of a structured column."""
    if ref in row:
        return row[ref]
    head, _, tail = ref.partition(".")
    if tail:
        inner = row.get(head)
        if isinstance(inner, Mapping) and tail in inner:
            return inner[tail]
        if tail in row:  # flattened structured fields are columns of their own
            return row[tail]
    raise KeyError(ref)


def _norm(text: str) -> str:
    return " ".join(str(text).replace("_", " ").lower().split())


def _value_pattern(value: Any) -> re.Pattern[str] | None:
    """A word-boundary pattern for `value` as a text would write it (138.0 is found as "138")."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        s = str(value).lower()
    elif isinstance(value, float) and value.is_integer():
        s = str(int(value))
    else:
        s = _norm(str(value))
    if not s:
        return None
    return re.compile(r"(?<![\w])" + re.escape(s).replace(r"\ ", r"[\s_-]+") + r"(?![\w])", re.I)


def mentions(text: str, value: Any) -> bool:
    """Whether `text` names `value` (case-insensitive, whole words, `_` as a space)."""
    pat = _value_pattern(value)
    return bool(pat and pat.search(_norm(text)))


def sanity_failures(text: str) -> list[str]:
    """Reasons `text` is not real text: a copied placeholder, an empty stand-in, echoed error
    wording, or no word at all (digit runs, timestamps)."""
    t = str(text).strip()
    out = []
    if _PLACEHOLDER.search(t):
        out.append(f"it contains the placeholder {_PLACEHOLDER.search(t).group(0)!r} instead of real text")  # type: ignore[union-attr]
    elif t.lower().strip(" .") in _EMPTY:
        out.append("it is empty or a stand-in like N/A instead of real text")
    if _BRACES.search(t):
        out.append("it contains JSON or template braces instead of plain text")
    if _ECHO.search(t):
        out.append("it talks about the answer format instead of being the text itself")
    if not _WORD.search(t):
        out.append("it has no words (only digits or symbols)")
    return out


@dataclass
class AgreementChecker:
    """Checks of one LLM column, compiled once. `categories` maps each `agrees_with` column
    reference to its known values (a categorical sampler's values or a schema enum)."""

    checks: Any  # synthloop.spec.models.Checks
    categories: Mapping[str, Sequence[Any]]
    where: str = "checks"

    def __post_init__(self) -> None:
        from synthloop.generate.expr import parse_expression

        c = self.checks
        missing = [ref for ref in c.agrees_with.values() if ref not in self.categories]
        if missing:
            raise ValueError(f"{self.where}.agrees_with: '{missing[0]}' has no known set of values; name a "
                             "categorical sampler column or a schema field with an enum")
        self._regex = [re.compile(p) for p in c.regex]
        self._forbid = [re.compile(p) for p in c.forbid_regex]
        self._exprs = [parse_expression(e) for e in c.expressions]
        self._others = {ref: list(vals) for ref, vals in self.categories.items()}

    def forbidden_chars(self) -> list[tuple[int, int]]:
        """Code point ranges (up to U+2FFF) that a decoder may leave out of the checked text so that
        `forbid_regex` cannot fail: the characters of every pattern that is one character class
        (`\\d`, `[0-9$]`, `\\d+`), whose every match holds such a character and which every such
        character matches. Other patterns (dates, names) are left to the check."""
        if not hasattr(self, "_forbidden_chars"):
            chars: set[int] = set()
            for pat in self._forbid:
                if _single_char_class(pat.pattern):
                    chars.update(cp for cp in range(0x20, 0x3000) if pat.search(chr(cp)))
            ranges: list[tuple[int, int]] = []
            for cp in sorted(chars):
                if ranges and ranges[-1][1] == cp - 1:
                    ranges[-1] = (ranges[-1][0], cp)
                else:
                    ranges.append((cp, cp))
            self._forbidden_chars = ranges
        return self._forbidden_chars

    @property
    def has_judge(self) -> bool:
        return bool(self.checks.judge)

    def text_of(self, cell: Mapping[str, Any], column: str) -> str:
        """The text a cell's checks read: the chosen field, the text column, or all string fields."""
        if self.checks.field:
            return str(cell.get(self.checks.field, ""))
        if column in cell and isinstance(cell[column], str):
            return cell[column]
        return " ".join(str(v) for v in cell.values() if isinstance(v, str))

    def check(self, text: str, row: Mapping[str, Any]) -> list[str]:
        """Plain-language reasons the text disagrees with its row ([] when it agrees). `row` holds
        the row's values, the cell's own fields included."""
        c = self.checks
        out: list[str] = []
        if c.sanity:
            out += sanity_failures(text)
        if c.min_words is not None and len(_WORD.findall(text)) < c.min_words:
            out.append(f"it has fewer than {c.min_words} words")
        for ref in c.must_mention:
            try:
                v = resolve(row, ref)
            except KeyError:
                continue
            if v is not None and not mentions(text, v):
                out.append(f"it does not mention the {ref.rsplit('.', 1)[-1].replace('_', ' ')} \"{_show(v)}\"")
        for label, ref in c.agrees_with.items():
            try:
                v = resolve(row, ref)
            except KeyError:
                continue
            wrong = [o for o in self._others[ref] if _norm(str(o)) != _norm(str(v)) and mentions(text, o)
                     and not (_value_pattern(o) and v is not None and mentions(str(v), o))]
            if wrong:
                out.append(f"it says {label} \"{_show(wrong[0])}\" but the {label} is \"{_show(v)}\"")
        for pat in self._regex:
            if not pat.search(text):
                out.append(f"it does not match the required pattern {pat.pattern!r}")
        for pat in self._forbid:
            if pat.search(text):  # the match is not quoted: a repair prompt must not show it to copy
                out.append(f"it contains something the rules forbid (pattern {pat.pattern!r})")
        if self._exprs:
            ctx = {k: v for k, v in row.items() if not isinstance(v, (dict, list))}
            ctx[TEXT_NAME] = text
            frame = pd.DataFrame([ctx])
            for e in self._exprs:
                try:
                    ok = bool(e.evaluate(frame).iloc[0])
                except Exception:  # noqa: BLE001 - a check that cannot be computed is a failed check
                    ok = False
                if not ok:
                    out.append(f"it breaks the rule `{e.source}`")
        return out

    def judge_request(self, text: str, row: Mapping[str, Any], seed: int = 0) -> LLMRequest | None:
        """The yes/no question to the LLM judge (fixed instructions first, row values last)."""
        if not self.checks.judge:
            return None
        from synthloop.generate.prompts import render

        question = render(self.checks.judge, dict(row), f"{self.where}.judge")
        values = "; ".join(f"{k}: {_show(v)}" for k, v in row.items() if not isinstance(v, (dict, list)))
        user = (f'Reply with JSON {{"answer": "yes"}} or {{"answer": "no"}}.\n\nRecord: {values}\n'
                f"Text: {text}\nQuestion: {question}")
        return LLMRequest(messages=(("system", JUDGE_SYSTEM), ("user", user)), schema=JUDGE_SCHEMA, seed=seed,
                          temperature=0.0, max_tokens=12)

    def judge_failures(self, answer: str) -> list[str]:
        """[] when the judge said yes; one reason when it said no (an unreadable answer passes:
        the judge must not fail rows through its own errors)."""
        try:
            verdict = json.loads(answer).get("answer")
        except (ValueError, AttributeError):
            return []
        return [f"a reviewer answered no to: {self.checks.judge}"] if verdict == "no" else []


def _single_char_class(pattern: str) -> bool:
    """Whether `pattern` is one character class, literal or `\\d`-like category, alone or repeated
    with a minimum of one: then a text matches it exactly when it holds one of its characters."""
    try:
        import re._constants as C  # Python 3.11+
        import re._parser as P
    except ImportError:  # pragma: no cover - Python 3.10
        import sre_constants as C  # type: ignore[no-redef]
        import sre_parse as P  # type: ignore[no-redef]
    try:
        items = list(P.parse(pattern))
    except Exception:  # noqa: BLE001 - a pattern the parser refuses is not simplified
        return False
    if len(items) != 1:
        return False
    op, av = items[0]
    repeats = {C.MAX_REPEAT, C.MIN_REPEAT} | ({C.POSSESSIVE_REPEAT} if hasattr(C, "POSSESSIVE_REPEAT") else set())
    if op in repeats:
        lo, _hi, sub = av
        sub = list(sub)
        if lo != 1 or len(sub) != 1:
            return False
        op, av = sub[0]
    return op in (C.LITERAL, C.IN)


def _show(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def agreement_rate(checker: AgreementChecker, texts: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> float | None:
    """Share of (text, row) pairs with no check failure (the judge is not asked); None if empty."""
    results = [not checker.check(t, r) for t, r in zip(texts, rows)]
    return sum(results) / len(results) if results else None


def repair_note(failures: Sequence[str]) -> str:
    """The sentence added to a regenerated cell's prompt: what was wrong, in plain words, never the
    rejected answer or a parser message (a small model copies what it is shown)."""
    return "Write a new answer. The last one was not usable because " + "; ".join(failures[:3]) + "."


def checker_for(spec: Any, col: Any) -> AgreementChecker | None:
    """The compiled checks of spec column `col` (None when it declares none)."""
    from synthloop.spec.loader import _categories_of

    checks = getattr(col.llm, "checks", None) if col.llm is not None else None
    if checks is None:
        return None
    producer = spec.producer()
    categories: dict[str, list[Any]] = {}
    for ref in checks.agrees_with.values():
        name = ref.split(".", 1)[1] if "." in ref and ref.split(".", 1)[0] in producer else ref
        vals = _categories_of(spec, name) if name in producer or name in getattr(spec, "learned_columns", ()) else None
        if vals is not None:
            categories[ref] = vals
    index = [c.name for c in spec.columns].index(col.name)
    return AgreementChecker(checks, categories, where=f"{spec.source}: columns[{index}].llm.checks")
