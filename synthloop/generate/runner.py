"""The prompted-generation run: plan -> per-row LLM cells (constrained, validated, repaired) ->
journal -> near-duplicate regeneration -> target check -> one DataFrame plus a summary.

Rows are independent once planned, so they run `backend.concurrency` at a time; each finished row
is appended to the journal before it counts, which is what makes resume exact.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from synthloop.errors import SynthloopError
from synthloop.generate.agreement import AgreementChecker, checker_for
from synthloop.generate.diversity import diversity_report, near_duplicates
from synthloop.generate.expr import parse_expression
from synthloop.generate.learned import LearnedPart
from synthloop.generate.textguide import TextGuide
from synthloop.generate.textprivacy import copy_figures, trim_copy
from synthloop.generate.planner import Plan, cell_seed, make_plan
from synthloop.generate.prompts import REASONING_FIELD, FewShotPool, Prompt, _plain, build_prompt, repair_messages
from synthloop.generate.store import Journal, JournalWarning, ResponseCache, RunLock, journal_path_for, lock_path_for
from synthloop.llm import LLMBackend, LLMRequest, LLMResult, make_backend
from synthloop.llm.validate import parse_and_validate, schema_errors
from synthloop.spec.dag import downstream
from synthloop.spec.errors import GenerationError, SpecError
from synthloop.spec.models import Column, Spec

# the judge model used when the embedded backend runs and its package is installed ("" = the
# generating model). Empty: the Gemma package ships the base gemma-3-270m, which lost to SmolLM2 in
# bench_prompted_agreement (see the README), so it is not the default judge.
DEFAULT_JUDGE_MODEL = ""
# journal round numbers: 0 the first pass, 1.. near-duplicate rounds, then one band of 100 per later pass
TEXT_ROUND, RETRY_ROUND, LENGTH_ROUND = 100, 200, 300  # text privacy, failed-row retries, length rounds


def _in_rounds(round_: int, base: int) -> bool:
    """Whether journal round `round_` belongs to the pass whose rounds start at `base`."""
    return base <= round_ < base + 100


STAT_KEYS = ("cells", "valid_first", "repairs", "transport_retries", "cache_hits", "backend_seconds", "requests",
             "tokens_in", "tokens_out", "schema_invalid")


def _new_stats() -> dict[str, Any]:
    return {k: 0.0 if k == "backend_seconds" else 0 for k in STAT_KEYS}


def _room_for_start(schema: dict[str, Any], field: str, used: int) -> dict[str, Any]:
    """`schema` with the text field's length bounds lowered by the `used` characters of its start."""
    out = json.loads(json.dumps(schema))
    prop = out["properties"][field]
    if "maxLength" in prop:
        prop["maxLength"] = max(prop["maxLength"] - used, 1)
    if "minLength" in prop:
        prop["minLength"] = max(min(prop["minLength"] - used, prop.get("maxLength", 10**9)), 0)
    return out


LENGTH_SLACK = 12  # characters the decoder may write past a row's length band before it is stopped


def _with_length(schema: dict[str, Any], field: str, lo: int | None, hi: int | None) -> dict[str, Any]:
    """`schema` with the text field's length bounds narrowed to at least `lo` / at most `hi`."""
    out = json.loads(json.dumps(schema))
    prop = out["properties"][field]
    if hi is not None:
        prop["maxLength"] = min(prop.get("maxLength", hi), hi)
    if lo is not None:
        prop["minLength"] = min(max(prop.get("minLength", 0), lo), prop.get("maxLength", lo))
    return out


def _exclude_chars(schema: dict[str, Any], checker: AgreementChecker, col: Column) -> dict[str, Any]:
    """`schema` whose checked string fields carry the characters the column's `forbid_regex` rules
    out (grammar.EXCLUDE), so a grammar-constrained backend never writes them: the first answer passes
    those checks instead of being regenerated."""
    ranges = checker.forbidden_chars()
    if not ranges:
        return schema
    from synthloop.llm.grammar import EXCLUDE

    out = json.loads(json.dumps(schema))
    props = out.get("properties", {})
    llm = col.llm
    assert llm is not None
    names = [checker.checks.field] if checker.checks.field else [col.name] if not llm.structured else list(props)
    for name in names:
        p = props.get(name)
        if isinstance(p, dict) and p.get("type") == "string" and "enum" not in p and "const" not in p:
            p[EXCLUDE] = [list(r) for r in ranges]
    return out


_REPAIR_KINDS = (("cut off", "cut off at max_tokens"), ("no JSON", "not JSON"), ("not valid JSON", "not JSON"),
                 ("does not mention", "must_mention"), ("but the", "agrees_with"), ("rules forbid", "forbid_regex"),
                 ("required pattern", "regex"), ("breaks the rule", "expressions"), ("fewer than", "min_words"),
                 ("reviewer", "judge"), ("placeholder", "sanity"), ("stand-in", "sanity"), ("braces", "sanity"),
                 ("answer format", "sanity"), ("no words", "sanity"), ("too long: write about", "length"),
                 ("too short: write about", "length"), ("longer than the real texts", "length"),
                 ("shorter than the real texts", "length"))


def _repair_kind(err: str) -> str:
    """The kind of failure that made a cell be asked again (for the summary's repair counts)."""
    return next((kind for needle, kind in _REPAIR_KINDS if needle in err), "schema" if ":" in err else "style")


def _plain_error(err: str) -> str:
    """A validation error as a repair note states it: what was wrong, without parser internals."""
    if err.startswith("the answer contains no JSON object"):
        return "it was not a JSON object"
    if err.startswith("the answer is not valid JSON"):
        return "it was not valid JSON"
    if err.startswith("the answer was cut off"):
        return "it was too long and got cut off; keep it shorter"
    return err


class GenerationInterrupted(GenerationError):
    """Ctrl-C during a run: finished rows are in the journal; the same command resumes."""


@dataclass
class GenerationResult:
    data: pd.DataFrame
    summary: dict[str, Any]
    failed: list[dict[str, Any]] = field(default_factory=list)


def learned_model_path_for(out: str | Path) -> Path:
    """Where a mixed run keeps its fitted model until it finishes (a resumed run samples the same rows)."""
    p = Path(out)
    return p.with_name(p.name + ".learned.model")


def summary_path_for(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".summary.json")


class PromptedGenerator:
    """Runs a spec. `backend` defaults to the spec's `llm` settings; `cache_dir=False` disables the cache."""

    def __init__(self, spec: Spec, backend: LLMBackend | None = None, cache_dir: str | Path | None | bool = None,
                 judge_backend: LLMBackend | None = None, runner: Any = None,
                 endpoints: list[tuple[str, int]] | None = None, learned_model: Any = None) -> None:
        """`learned_model`: a fitted synthesizer for the spec's `learn:` columns (else fitted on first use)."""
        self.spec = spec
        self._learned_model = learned_model
        self._learned: LearnedPart | None = None
        self._model_path: Path | None = None
        self._guides: dict[str, TextGuide] | None = None
        self._prepared = False  # a backend that learns from the real texts has been tuned / loaded
        self._backend = backend
        self._given_backend = backend is not None
        # synthloop.runners: a RayRunner computes rows on a pool of actors (one backend each, spread
        # over `endpoints` [(base_url, concurrency)] when given); the journal stays here
        self.runner = runner
        self.endpoints = endpoints
        self._actor_pool: Any = None
        self._cache_dir = cache_dir
        self.cache: ResponseCache | None = None
        self._pools: dict[str, FewShotPool] = {}
        self._exprs = {c.name: parse_expression(c.expression) for c in spec.columns if c.expression is not None}
        self._conditions: dict[str, Any] = {}
        self._judge: LLMBackend | None = judge_backend
        self._checkers: dict[str, AgreementChecker | None] = {}
        self._busy: list[tuple[float, float]] = []  # (start, end) of every backend request of this run
        self._busy_lock = threading.Lock()
        self._resumed_ok = 0

    # -- pieces -------------------------------------------------------------------------------
    @property
    def backend(self) -> LLMBackend:
        if self._backend is None:
            self._backend = make_backend(self.spec.llm)
        return self._backend

    def _index(self, name: str) -> int:
        return [c.name for c in self.spec.columns].index(name)

    def pool(self, col: Column) -> FewShotPool | None:
        if col.llm is None or col.llm.few_shot is None:
            return None
        if col.name not in self._pools:
            self._pools[col.name] = FewShotPool(self.spec, col, self._index(col.name))
        return self._pools[col.name]

    def learned_part(self) -> LearnedPart | None:
        """The synthesizer half of a mixed spec (None without `learn:`)."""
        if not self.spec.learned_columns:
            return None
        if self._learned is None:
            self._learned = LearnedPart(self.spec, self._learned_model, self._model_path)
        return self._learned

    def guides(self) -> dict[str, TextGuide]:
        """LLM text column -> what its real texts tell (few-shot neighbours, style, privacy indexes)."""
        if self._guides is None:
            self._guides = {}
            if self.spec.learn is not None:
                from synthloop.generate.learned import read_learn_table
                from synthloop.spec.dag import column_reads

                real = read_learn_table(self.spec)
                context = self.spec.learned_columns + self.spec.conditioning_columns()
                for col in self.spec.columns:
                    source = self.spec.text_source(col)
                    if source is None:
                        continue
                    assert col.llm is not None
                    reads = set().union(*column_reads(col).values())
                    self._guides[col.name] = TextGuide(
                        real, source, col.name, context, [c for c in context if c in reads], k=col.llm.neighbours,
                        seed=self.spec.seed, pii_extra=self.spec.learn.pii,
                        tolerance=col.llm.length_tolerance)
        return self._guides

    def plan(self, n: int | None = None) -> Plan:
        plan = make_plan(self.spec, n, self._conditions, self.learned_part())
        for guide in self.guides().values():
            guide.plan(plan.frame)
        self._prepare_backend()
        return plan

    def _prepare_backend(self) -> None:
        """A backend that learns from the real texts (finetuned) is tuned, or its adapter loaded,
        before the first request: on the learn table's text columns, conditioned on the row."""
        # (a backend not yet made is made here only when it is one that prepares: planning alone
        # must not load a model)
        backend = self._backend if self._backend is not None else (
            self.backend if self.spec.llm.backend == "finetuned" else None)
        prepare = getattr(backend, "prepare", None)
        if prepare is None or self._prepared:
            return
        if self.spec.learn is None or not self.guides():
            raise SpecError(f"{self.spec.source}: llm.backend: finetuned is tuned on real texts; add a learn: block "
                            "whose table has the text column (or pick another backend)")
        # the guide's texts: personal values already replaced, so none is learned by the model
        cols = {name: (g.frame, g.texts) for name, g in self.guides().items()}
        adapter = self.spec.llm.finetune.adapter if self.spec.llm.finetune is not None else None
        if adapter and not Path(adapter).expanduser().is_absolute():
            self.backend.settings = self.spec.llm.finetune.model_copy(update={"adapter": str(self.spec.base_dir / adapter)})  # type: ignore[attr-defined,union-attr]
        prepare(cols, seed=self.spec.seed, folder=self.spec.base_dir / ".synthloop")
        self._prepared = True

    def prompt(self, plan: Plan, col: Column, i: int, row: dict[str, Any], round_: int = 0,
               extra_avoid: list[str] | None = None) -> Prompt:
        pool = self.pool(col)
        fixed = bool(pool is not None and col.llm is not None and col.llm.few_shot is not None and not col.llm.few_shot.per_row)
        pick_row, pick_round = (0, 0) if fixed else (i, round_)  # one pick for the whole column
        examples = pool.pick(row, np.random.default_rng(cell_seed(self.spec.seed, pick_row, col.name + "#shots", 0, pick_round))) if pool else []
        guide = self.guides().get(col.name)
        rules: list[str] = []
        row_rules: list[str] = []
        extra: list[dict[str, Any]] = []
        if guide is not None:
            extra = guide.examples(i)  # the nearest real rows: always this row's own
            if col.llm is not None and col.llm.style:
                rules, row_rules = guide.rules(), guide.row_rules(i)
        return build_prompt(self.spec, self.spec.llm, col, self._index(col.name), row, i, plan.n, examples + extra,
                            plan.assigned_for(col.name, i), extra_avoid, rules, row_rules,
                            fixed_examples=fixed and not extra,  # row-specific neighbours keep examples per row
                            state_assigned=not self._writes_pinned())

    def _writes_pinned(self) -> bool:
        """Whether the backend writes planned (pinned) values into the answer itself (the embedded
        backend under constrained decoding): the prompt then needs no "X must be Y" rule, ~15 tokens
        of every request's row-specific tail."""
        if self._backend is None:  # not built yet (e.g. `synthloop prompt --no-run`): the spec's choice
            return self.spec.llm.backend == "embedded" and self.spec.llm.constrained
        return bool(self.spec.llm.constrained and getattr(self._backend, "supports_prefill", False))

    def _complete(self, req: LLMRequest, stats: dict[str, Any], backend: LLMBackend | None = None) -> LLMResult:
        """One request through the cache; counts requests, tokens and the backend's busy intervals."""
        backend = backend or self.backend
        key = None
        if self.cache is not None:
            key = req.cache_key(backend.model_id)
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    entry = json.loads(hit)
                    stats["cache_hits"] += 1
                    return LLMResult(text=entry["text"], cached=True, meta={"finish_reason": entry.get("finish_reason")})
                except (ValueError, KeyError, TypeError):
                    pass  # an entry this version did not write: ask again
        t0 = time.perf_counter()
        res = backend.complete([req])[0]
        t1 = time.perf_counter()
        with self._busy_lock:
            self._busy.append((t0, t1))
        stats["requests"] += 1
        stats["tokens_in"] += res.prompt_tokens
        # prompt tokens the backend really computed (the rest came from its KV cache), where it says
        stats["tokens_in_evaluated"] = stats.get("tokens_in_evaluated", 0) + int(res.meta.get("prompt_evaluated", res.prompt_tokens))
        stats["tokens_out"] += res.completion_tokens
        stats["backend_seconds"] += res.elapsed
        stats["transport_retries"] += res.retries
        if key is not None and self.cache is not None:  # stored at once: a killed run keeps it
            self.cache.put(key, json.dumps({"text": res.text, "finish_reason": res.meta.get("finish_reason")}))
        return res

    @property
    def judge_backend(self) -> LLMBackend:
        """The backend that answers `checks.judge` questions: the one given, else Gemma 3 270M when
        the embedded backend runs and its package is installed, else the generating backend."""
        if self._judge is None:
            self._judge = self.backend
            settings = self.spec.llm
            if settings.backend == "embedded" and DEFAULT_JUDGE_MODEL and settings.model != DEFAULT_JUDGE_MODEL:
                from synthloop.llm.embedded import EmbeddedBackend, gemma_available

                if gemma_available():
                    self._judge = EmbeddedBackend(DEFAULT_JUDGE_MODEL, n_ctx=settings.n_ctx, threads=settings.threads)
        return self._judge

    def checker(self, col: Column) -> AgreementChecker | None:
        if col.llm is None or col.llm.checks is None:
            return None
        if col.name not in self._checkers:
            self._checkers[col.name] = checker_for(self.spec, col)
        return self._checkers[col.name]

    def _llm_cell(self, plan: Plan, col: Column, i: int, row: dict[str, Any], round_: int,
                  extra_avoid: list[str] | None, stats: dict[str, Any],
                  cands: list[str] | None = None) -> tuple[dict[str, Any] | None, list[str]]:
        """One cell; `cands` (mixed text columns) collects every valid, agreeing answer that misses
        only its length band, the returned one first, for `_balance_lengths`."""
        llm = col.llm
        assert llm is not None
        prompt = self.prompt(plan, col, i, row, round_, extra_avoid)
        messages = prompt.messages
        errs: list[str] = []
        settings = self.spec.llm
        checker = self.checker(col)
        stats["cells"] += 1
        if checker is not None:
            stats[f"checked:{col.name}"] = stats.get(f"checked:{col.name}", 0) + 1
        budget = self._max_tokens(col)
        # mixed specs: the row's planned length band bounds the decoding (a little slack above it, so a
        # text the decoder stops is cut back at a word boundary) and the token budget
        guide = self.guides().get(col.name) if not llm.structured and llm.style else None
        band = guide.band(i) if guide is not None else None
        answer_schema_ = prompt.schema
        if band is not None:
            cap = min(llm.max_chars, band[1] + LENGTH_SLACK)
            answer_schema_ = _with_length(prompt.schema, col.name, None, cap)
            budget = min(budget, int(cap / 2) + 24)
        # a backend that cannot prefill `start` writes only the rest: its schema leaves room for it
        request_schema = answer_schema_ if not prompt.start or getattr(self.backend, "supports_prefill", False) \
            else _room_for_start(answer_schema_, col.name, len(prompt.start) + 1)
        if checker is not None and getattr(self.backend, "supports_prefill", False):
            request_schema = _exclude_chars(request_schema, checker, col)
        attempts = max(llm.max_retries + 1, checker.checks.max_attempts if checker is not None else 0)
        styled_fallback: tuple[dict[str, Any], float] | None = None
        agreed_counted = False
        for attempt in range(attempts):
            req = LLMRequest(
                messages=messages, schema=request_schema, seed=cell_seed(self.spec.seed, i, col.name, attempt, round_),
                temperature=llm.temperature if llm.temperature is not None else settings.temperature,
                top_p=settings.top_p, max_tokens=budget, constrained=settings.constrained, context=f"column:{col.name}",
                start=prompt.start, row=self._row_values(self.guides().get(col.name), row) if self._prepared else (),
            )
            res = self._complete(req, stats)
            obj, errs = parse_and_validate(res.text, prompt.schema)
            if prompt.start and obj is not None and isinstance(obj.get(col.name), str) \
                    and not obj[col.name].startswith(prompt.start):  # a backend that cannot prefill
                obj[col.name] = f"{prompt.start} {obj[col.name]}"
                errs = schema_errors(obj, prompt.schema)
            if errs:
                stats["schema_invalid"] += 1
                if res.meta.get("finish_reason") == "length":
                    errs = [f"the answer was cut off at max_tokens={req.max_tokens}"] + errs
                    budget = min(2 * req.max_tokens, settings.n_ctx // 2)  # the repair may run longer
            else:
                assert obj is not None
                obj.pop(REASONING_FIELD, None)
                if not llm.structured:
                    out = {col.name: " ".join(str(obj[col.name]).split())}
                    if band is not None:
                        out[col.name] = guide.fit_length(out[col.name], i)  # type: ignore[union-attr]
                elif llm.flatten:
                    out = {k: obj.get(k) for k in col.output_names()}
                else:
                    out = {col.name: json.dumps(obj, ensure_ascii=False, sort_keys=False)}
                if checker is not None:
                    ctx = {**row, **obj, **out}
                    if llm.structured:
                        ctx[col.name] = obj
                    text = checker.text_of(obj, col.name)
                    errs = checker.check(text, ctx)
                    if not errs and checker.has_judge:
                        jreq = checker.judge_request(text, ctx, seed=cell_seed(self.spec.seed, i, col.name + "#judge", attempt, round_))
                        assert jreq is not None
                        jreq = dataclasses.replace(jreq, context=f"judge:{col.name}")
                        errs = checker.judge_failures(self._complete(jreq, stats, self.judge_backend).text)
                    if errs:
                        stats[f"disagreed:{col.name}"] = stats.get(f"disagreed:{col.name}", 0) + 1
                if not errs and checker is not None and not agreed_counted:  # agreement, apart from style
                    agreed_counted = True
                    stats[f"agreed:{col.name}"] = stats.get(f"agreed:{col.name}", 0) + 1
                    stats[f"agreed_first:{col.name}"] = stats.get(f"agreed_first:{col.name}", 0) + int(attempt == 0)
                if not errs and guide is not None:  # mixed specs: the real texts' length range holds
                    errs = guide.style_failures(out[col.name], i)
                    stats["style_failed"] = stats.get("style_failed", 0) + int(bool(errs))
                    gap = guide.length_gap(out[col.name], i) + 10.0 * any("repeats" in e or "than the real" in e for e in errs)
                    if errs and (styled_fallback is None or gap < styled_fallback[1]):
                        styled_fallback = (out, gap)  # valid and agreeing: the closest is kept if none fits
                    if cands is not None and gap < 10.0:  # only its length is off: a candidate
                        cands.append(out[col.name])
                    if band is not None and len(out[col.name]) < band[0]:  # too short: the next try must reach the band
                        used = len(prompt.start) + 1 if request_schema is not answer_schema_ and prompt.start else 0
                        request_schema = _with_length(request_schema, col.name, max(band[0] - used, 0), None)
                if not errs:
                    stats["valid_first"] += int(attempt == 0)
                    if cands is not None:
                        cands[:] = _first(out[col.name], cands)
                    return out, []
            stats["repairs"] += int(attempt < attempts - 1)
            if attempt < attempts - 1 and errs:
                key = f"repair_why:{col.name}:{_repair_kind(errs[0])}"
                stats[key] = stats.get(key, 0) + 1
            messages = repair_messages(prompt, [_plain_error(e) for e in errs])
        if styled_fallback is not None:  # style is a preference; validity and agreement were met
            if cands is not None:
                cands[:] = _first(styled_fallback[0][col.name], cands)
            return styled_fallback[0], []
        return None, errs

    @staticmethod
    def _row_values(guide: TextGuide | None, row: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
        """The row's structured values a fine-tuned backend conditions on (only backends that
        `prepare` on real texts read them; the others see the prompt)."""
        if guide is None:
            return ()
        return tuple((c, None if _plain(row.get(c)) is None else str(_plain(row.get(c)))) for c in guide.context)

    def _max_tokens(self, col: Column) -> int:
        """The answer's token budget, derived from the schema: ~1 token per 2 characters of its
        strings' maxLength plus the JSON around them (a cut-off answer is invalid JSON however good
        the grammar). A max_tokens the column or the spec sets is kept as a floor; without one the
        derived budget is used as it is when every string is bounded, so a model that rambles stops
        early instead of running on to a generic 200 tokens."""
        llm = col.llm
        assert llm is not None
        bounded = True
        if llm.structured:
            props = llm.json_schema["properties"]  # type: ignore[index]
            need = 12
            for p in props.values():
                p = p if isinstance(p, dict) else {}
                if p.get("type") in ("string", None) and "enum" not in p and "const" not in p and "maxLength" not in p:
                    bounded = False
                if p.get("type") in ("array", "object"):
                    bounded = False
                need += 8 + int(p.get("maxLength", 0) / 2)
        else:
            need = int(llm.max_chars / 2) + 24
        if llm.reasoning:
            need += 200
        need = min(need, self.spec.llm.n_ctx // 2)
        if llm.max_tokens is not None:
            return max(llm.max_tokens, need)
        if "max_tokens" in self.spec.llm.model_fields_set or not bounded:
            return max(self.spec.llm.max_tokens, need)
        return need

    def _context(self, plan: Plan, i: int, values: dict[str, Any]) -> dict[str, Any]:
        """Everything a template or expression of row i can read (structured columns as dicts too)."""
        row = dict(self._records[i]) if self._records else {}  # a spec of only LLM columns plans no frame columns
        row.update(values)
        for name in plan.per_row:
            col = self.spec.column(name)
            if col.llm is not None and col.llm.structured and col.llm.flatten and all(f in values for f in col.output_names()):
                row[name] = {f: values[f] for f in col.output_names()}
        return row

    def _run_row(self, plan: Plan, i: int, round_: int = 0, extra_avoid: dict[str, list[str]] | None = None,
                 keep: dict[str, Any] | None = None) -> dict[str, Any]:
        """Compute the per-row columns of row i; `keep` holds values not to recompute (dedup rounds)."""
        stats = _new_stats()
        values: dict[str, Any] = dict(keep or {})
        alternates: dict[str, list[str]] = {}
        for name in plan.per_row:
            col = self.spec.column(name)
            if all(o in values for o in col.output_names()):
                continue
            if col.expression is not None:
                ctx = self._context(plan, i, values)
                v = self._exprs[name].evaluate(pd.DataFrame([ctx])).iloc[0]
                values[name] = _plain(v)
                continue
            cands: list[str] | None = [] if name in self._balanced(plan) else None
            out, errs = self._llm_cell(plan, col, i, self._context(plan, i, values), round_,
                                       (extra_avoid or {}).get(name), stats, cands)
            if out is None:
                return {"row": i, "status": "failed", "column": name, "error": "; ".join(errs), "round": round_, "stats": stats}
            values.update(out)
            if cands and len(cands) > 1:
                alternates[name] = cands
        rec = {"row": i, "status": "ok", "values": values, "round": round_, "stats": stats}
        if alternates:
            rec["alternates"] = alternates
        return rec

    def _balanced(self, plan: Plan) -> set[str]:
        """Text columns whose length is balanced over the rows (`llm.length_balance`): steered by real
        texts with a planned length, and read by no other column (a chosen answer must not disagree
        with a column computed from another one)."""
        out = set()
        for name, guide in self.guides().items():
            col = self.spec.column(name)
            assert col.llm is not None
            if col.llm.length_balance and not col.llm.structured and col.llm.style and guide.real_lengths.any() \
                    and name in plan.per_row and not downstream(plan.deps, name) - {name}:
                out.add(name)
        return out

    def prompts_for_row(self, i: int, n: int | None = None, columns: list[str] | None = None,
                        run_upstream: bool = True) -> list[tuple[str, Prompt, int]]:
        """The exact first-attempt prompt (and seed) of each LLM column of row i. Upstream LLM answers
        a prompt reads are generated (through the cache, so they match a real run) unless
        run_upstream is False, in which case they show as <column>."""
        plan = self.plan(n)
        if not 0 <= i < plan.n:
            raise GenerationError(f"row {i} is outside 0..{plan.n - 1}; pass a smaller --row or a larger -n")
        unknown = [c for c in columns or [] if c not in [x.name for x in self.spec.columns if x.llm is not None]]
        if unknown:
            raise GenerationError(f"'{unknown[0]}' is not an LLM column of {self.spec.source}")
        self._records = plan.frame.to_dict("records")
        if run_upstream and self._cache_dir is not False and self.cache is None:
            self.cache = ResponseCache(None if self._cache_dir in (None, True) else self._cache_dir)  # type: ignore[arg-type]
        stats = _new_stats()
        values: dict[str, Any] = {}
        out: list[tuple[str, Prompt, int]] = []
        wanted = set(columns) if columns else {c for c in plan.per_row if self.spec.column(c).llm is not None}
        needed = set().union(*(self._ancestors(plan, c) for c in wanted)) | wanted
        for name in plan.per_row:
            if name not in needed:
                continue
            col = self.spec.column(name)
            ctx = self._context(plan, i, values)
            if col.expression is not None:
                try:
                    values[name] = _plain(self._exprs[name].evaluate(pd.DataFrame([ctx])).iloc[0])
                except Exception:
                    values[name] = f"<{name}>"
                continue
            if name in wanted:
                out.append((name, self.prompt(plan, col, i, ctx), cell_seed(self.spec.seed, i, name, 0, 0)))
            if name in needed - {name} or any(name in self._ancestors(plan, w) for w in wanted):
                got = self._llm_cell(plan, col, i, ctx, 0, None, stats)[0] if run_upstream else None
                values.update(got or {o: f"<{o}>" for o in col.output_names()})
        return out

    def _ancestors(self, plan: Plan, name: str) -> set[str]:
        out: set[str] = set()
        frontier = set(plan.deps[name])
        while frontier:
            out |= frontier
            frontier = set().union(*(plan.deps[f] for f in frontier)) - out
        return out

    # -- the run ------------------------------------------------------------------------------
    def fingerprint(self, n: int) -> str:
        s = self.spec.model_dump(mode="json", by_alias=True, exclude={"llm"})
        llm = self.spec.llm
        payload = json.dumps([s, n, self._conditions, self.backend.model_id, llm.temperature, llm.top_p, llm.max_tokens, llm.constrained, llm.system],
                             sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def dedup_columns(self) -> list[str]:
        if self.spec.diversity.columns is not None:
            return list(self.spec.diversity.columns)
        return [c.name for c in self.spec.columns
                if c.llm is not None and (c.llm.dedup if c.llm.dedup is not None else not c.llm.structured)]

    def sample(self, num_rows: int | None = None, seed: int | None = None,
               conditions: dict[str, Any] | None = None) -> pd.DataFrame:
        """SDV-style verb: `num_rows` rows as a DataFrame (in memory, cached, no journal);
        `seed` applies to this call only."""
        spec = self.spec
        if seed is not None:
            self.spec = spec.model_copy(update={"seed": seed})
        try:
            return self.generate(num_rows, conditions=conditions).data
        finally:
            self.spec = spec

    def sample_from_conditions(self, conditions: dict[str, Any], num_rows: int, seed: int | None = None) -> pd.DataFrame:
        """Rows whose sampler columns (or LLM enum fields) take the given values."""
        return self.sample(num_rows, seed, conditions)

    def generate(self, n: int | None = None, out: str | Path | None = None, resume: bool = True,
                 fresh: bool = False, on_progress: Callable[[dict[str, Any]], None] | None = None,
                 keep_journal: bool = False, conditions: dict[str, Any] | None = None,
                 on_warning: Callable[[str], None] | None = None) -> GenerationResult:
        """Generate `n` rows (spec.rows by default); with `out`, journal next to it and write it.

        With `out` the run holds a lock on it (`<out>.lock`), so a second run on the same output is
        refused. Warnings (a torn journal line dropped) go to `on_warning`, else warnings.warn."""
        lock = RunLock(lock_path_for(out)) if out is not None else None
        try:
            if lock is not None:
                lock.acquire()
            return self._generate(n, out, resume, fresh, on_progress, keep_journal, conditions, on_warning)
        except KeyboardInterrupt:  # before the rows started (loading the model, reading the journal)
            raise GenerationInterrupted("interrupted before any row was generated; nothing was written") from None
        finally:
            if lock is not None:
                lock.release()

    def _generate(self, n: int | None, out: str | Path | None, resume: bool, fresh: bool,
                  on_progress: Callable[[dict[str, Any]], None] | None, keep_journal: bool,
                  conditions: dict[str, Any] | None, on_warning: Callable[[str], None] | None) -> GenerationResult:
        t_start = time.perf_counter()
        self._conditions = dict(conditions or {})
        model_path = learned_model_path_for(out) if out is not None and self.spec.learned_columns else None
        if model_path is not None and self._learned_model is None:
            if fresh or not journal_path_for(out).exists():  # type: ignore[arg-type]
                model_path.unlink(missing_ok=True)  # a model left by another run: fit anew
            self._model_path, self._learned = model_path, None
        plan = self.plan(n)
        self._records = plan.frame.to_dict("records")
        journal = Journal(journal_path_for(out), self.fingerprint(plan.n)) if out else None
        done: dict[int, dict[str, Any]] = {}
        notes: list[str] = []
        if journal is not None:
            if fresh:
                journal.remove()
            elif resume:
                done = journal.load(plan.n)
                self._check_resumed(plan, journal, done)
                notes = list(journal.warnings)
            elif journal.path.exists():
                raise GenerationError(f"{journal.path}: a journal of an interrupted run exists; resume it or pass --fresh")
        for msg in notes:
            if on_warning is not None:
                on_warning(msg)
            else:
                warnings.warn(msg, JournalWarning, stacklevel=3)
        if self._cache_dir is not False and self.cache is None:
            self.cache = ResponseCache(None if self._cache_dir in (None, True) else self._cache_dir)  # type: ignore[arg-type]
        if journal is not None:
            journal.open()
        resumed = len(done)
        self._resumed_ok = sum(1 for r in done.values() if r["status"] == "ok")
        self._busy = []
        progress = _Progress(plan.n, on_progress, self.backend)
        progress.add_existing(done.values())
        try:
            todo = [i for i in range(plan.n) if i not in done]
            if plan.per_row:
                self._run_rows(plan, todo, journal, done, progress)
            else:
                for i in todo:
                    done[i] = {"row": i, "status": "ok", "values": {}, "round": 0, "stats": {}}
            retried = self._retry_failed(plan, journal, done, progress)
            div_before, regenerated = self._dedup(plan, journal, done, progress)
            self._length_rounds(plan, journal, done, progress)
            balanced = self._balance_lengths(plan, done)
            text_report = self._text_checks(plan, journal, done, progress)
            if journal is not None:
                journal.close()
            df, failed = self._assemble(plan, done)
            wall = time.perf_counter() - t_start
            summary = self._summary(plan, df, failed, done, resumed, div_before, regenerated, wall, progress)
            for name, rep in balanced.items():
                text_report.setdefault(name, {})["length_balance"] = rep
            if text_report:
                summary["text"] = self._text_summary(df, text_report)
            if retried:
                summary["failed_rows_retried"] = retried
            if notes:
                summary["journal_warnings"] = notes
            if self.runner is not None:
                summary["runner"] = self.runner.describe()
            if out is not None:
                from synthloop.io import write_table, write_text

                summary["output"] = str(out)
                write_table(df, out)
                write_text(json.dumps(summary, indent=2, default=str) + "\n", summary_path_for(out))
                if journal is not None and not keep_journal:
                    journal.remove()
                    if model_path is not None:
                        model_path.unlink(missing_ok=True)
        except KeyboardInterrupt:
            # Ctrl-C in any phase, writing the outputs included: the journal holds every finished row
            kept = len(done)
            where = f" in {journal.path}" if journal is not None and journal.path.exists() else ""
            raise GenerationInterrupted(f"interrupted: {kept} of {plan.n} rows are saved{where}; run the same command again to resume") from None
        except SynthloopError:
            if journal is not None and not done:  # e.g. a template refused on the first row: leave nothing behind
                journal.close()
                journal.remove()
            raise
        finally:
            if journal is not None:
                journal.close()
            if self._actor_pool is not None:
                self.actors_replaced_ = self._actor_pool.replaced
                self.actor_threads_ = self._actor_pool.report_threads()
                self._actor_pool.close()
                self._actor_pool = None
        return GenerationResult(df, summary, failed)

    def _check_resumed(self, plan: Plan, journal: Journal, done: dict[int, dict[str, Any]]) -> None:
        """Records of the journal must hold what this spec's rows hold (a value per per-row column,
        text for text columns), else resuming would fail later, far from the cause."""
        outputs = [(o, self.spec.column(c)) for c in plan.per_row for o in self.spec.column(c).output_names()]
        for i, rec in done.items():
            if rec["status"] != "ok":
                continue
            vals = rec["values"]
            for o, col in outputs:
                if o not in vals:
                    raise journal.corrupt(journal.lines[i], f"malformed record: row {i} has no value for '{o}'")
                if col.llm is not None and not col.llm.structured and not isinstance(vals[o], str):
                    raise journal.corrupt(journal.lines[i], f"malformed record: row {i}: '{o}' must be text")

    @staticmethod
    def _keep_row(rec: dict[str, Any], round_: int, journal: Journal | None, done: dict[int, dict[str, Any]],
                  results: list[dict[str, Any]], progress: "_Progress") -> None:
        """Journal and record one finished row (local and Ray paths alike)."""
        if round_ > 0 and rec["status"] != "ok":
            return  # a failed regeneration keeps the earlier, valid row
        old = done.get(rec["row"])
        if _in_rounds(round_, LENGTH_ROUND) and old is not None and old["status"] == "ok" and rec["status"] == "ok":
            # a length round: the row's new answers join the ones it had (the balance picks among all)
            alts = {}
            for k, v in rec["values"].items():
                if isinstance(v, str) and v != old["values"].get(k) or k in rec.get("alternates", {}):
                    mine = rec.get("alternates", {}).get(k) or [v]
                    alts[k] = list(dict.fromkeys([*mine, *(old.get("alternates", {}).get(k) or [old["values"][k]])]))
            rec = {**rec, "alternates": alts} if alts else rec
        if _in_rounds(round_, TEXT_ROUND) and old is not None and old["status"] == "ok":
            # a text-privacy regeneration comes after the length balance: the record keeps the
            # candidates the balance saw, so a resume balances exactly as the first run did
            alts = {k: list(v) for k, v in old.get("alternates", {}).items()}
            for k, v in old["values"].items():
                if k not in alts and rec["values"].get(k) != v and isinstance(v, str):
                    alts[k] = [v]
            rec = {**rec, "alternates": alts} if alts else {k: v for k, v in rec.items() if k != "alternates"}
        if journal is not None:
            journal.append(rec)
        done[rec["row"]] = rec
        results.append(rec)
        progress.row(rec, fresh_row=round_ == 0)

    def _run_rows(self, plan: Plan, todo: list[int], journal: Journal | None, done: dict[int, dict[str, Any]],
                  progress: "_Progress", round_: int = 0, avoid: dict[int, dict[str, list[str]]] | None = None,
                  keep: dict[int, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Run rows with at most `concurrency` in flight; journal each one as it finishes."""
        if getattr(self.runner, "distributed", False):
            from synthloop.runners.generation import run_rows_on_actors

            return run_rows_on_actors(self, plan, todo, journal, done, progress, round_, avoid, keep)
        width = max(1, int(getattr(self.backend, "concurrency", 1)))
        results: list[dict[str, Any]] = []
        pending: set[Future[dict[str, Any]]] = set()
        queue = list(todo)
        pool = ThreadPoolExecutor(max_workers=width)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * width:  # bounded: no thousands of queued futures
                    i = queue.pop(0)
                    pending.add(pool.submit(self._run_row, plan, i, round_, (avoid or {}).get(i), (keep or {}).get(i)))
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    self._keep_row(fut.result(), round_, journal, done, results, progress)
        except BaseException:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return results

    def _dedup(self, plan: Plan, journal: Journal | None, done: dict[int, dict[str, Any]],
               progress: "_Progress") -> tuple[dict[str, Any], dict[str, int]]:
        """Regenerate near-duplicate texts for up to max_rounds; returns the 'before' figures."""
        div = self.spec.diversity
        before: dict[str, Any] = {}
        regenerated: dict[str, int] = {}
        for name in self.dedup_columns():
            col = self.spec.producer()[name]
            regenerated[name] = 0
            first = True
            pool = self.pool(col) if col.llm is not None and not col.llm.structured else None
            seeds = [str(e.get(name, "")) for e in pool.examples] if pool is not None else []
            for round_ in range(1, div.max_rounds + 2):
                ok_rows = sorted(i for i, r in done.items() if r["status"] == "ok" and name in r["values"])
                texts = [done[i]["values"][name] for i in ok_rows]
                if not texts:
                    break
                # copies of few-shot examples count as duplicates too: the seed file is not new data
                dup_all, twin_all = near_duplicates(seeds + texts, div.threshold, div.ngram)
                is_dup, twin = dup_all[len(seeds):], twin_all[len(seeds):]
                twin_text = [(seeds + texts)[t] if t >= 0 else None for t in twin]
                if first:
                    before[name] = diversity_report(texts, div.threshold, div.ngram)
                    before[name]["seed_copy_rate"] = float(((twin >= 0) & (twin < len(seeds))).mean())
                    first = False
                if round_ > div.max_rounds or col.llm is None:
                    break
                redo = [(ok_rows[k], twin_text[k]) for k in np.flatnonzero(is_dup) if done[ok_rows[k]].get("round", 0) < round_]
                if not redo:
                    break
                below = downstream(plan.deps, col.name) | {col.name}
                keep_cols = [c for c in plan.per_row if c not in below]
                keep: dict[int, dict[str, Any]] = {}
                avoid: dict[int, dict[str, list[str]]] = {}
                for i, similar in redo:
                    vals = done[i]["values"]
                    keep[i] = {o: vals[o] for c in keep_cols for o in self.spec.column(c).output_names() if o in vals}
                    avoid[i] = {col.name: [f'repeating "{similar}"']}
                progress.phase(f"dedup {name} r{round_}")
                res = self._run_rows(plan, [i for i, _ in redo], journal, done, progress, round_, avoid, keep)
                regenerated[name] += len(res)
        progress.phase("done")
        return before, regenerated

    def _regenerate(self, plan: Plan, col: Column, redo: dict[int, list[str]], journal: Journal | None,
                    done: dict[int, dict[str, Any]], progress: "_Progress", round_: int) -> int:
        """Write `col` (and what reads it) again for rows `redo` (row -> things to avoid); returns rows redone."""
        below = downstream(plan.deps, col.name) | {col.name}
        keep_cols = [c for c in plan.per_row if c not in below]
        keep = {i: {o: done[i]["values"][o] for c in keep_cols for o in self.spec.column(c).output_names()
                    if o in done[i]["values"]} for i in redo}
        avoid = {i: {col.name: why} for i, why in redo.items()}
        return len(self._run_rows(plan, sorted(redo), journal, done, progress, round_, avoid, keep))

    def _retry_failed(self, plan: Plan, journal: Journal | None, done: dict[int, dict[str, Any]],
                      progress: "_Progress") -> int:
        """A row that failed every attempt is tried again with fresh seeds (`llm.row_retries` rounds),
        keeping its planned values: leaving it out would miss the requested row count and the quotas,
        and in mixed specs change the learned columns' distribution (rare values fail more often)."""
        tried = 0
        for r in range(self.spec.llm.row_retries):
            failed = sorted(i for i, rec in done.items() if rec["status"] != "ok")
            if not failed:
                break
            progress.phase(f"retry failed r{r + 1}")
            self._run_rows(plan, failed, journal, done, progress, RETRY_ROUND + r)
            tried += len(failed)
        return tried

    def _length_rounds(self, plan: Plan, journal: Journal | None, done: dict[int, dict[str, Any]],
                       progress: "_Progress") -> None:
        """Rows none of whose answers is inside its planned length band are written again
        (`llm.length_rounds`, fresh seeds, the other columns kept), so the balance has answers to
        choose from where the writer missed; which rows is decided by each row's own record, so a
        resume redoes exactly the rows the interrupted run had not."""
        for name in sorted(self._balanced(plan)):
            col = self.spec.column(name)
            assert col.llm is not None
            guide = self.guides()[name]
            for r in range(col.llm.length_rounds):
                redo = {}
                for i, rec in sorted(done.items()):
                    if rec["status"] != "ok" or name not in rec["values"] or rec.get("round", 0) >= LENGTH_ROUND + r:
                        continue
                    band = guide.band(i)
                    cands = rec.get("alternates", {}).get(name) or [str(rec["values"][name])]
                    if band is not None and not any(band[0] <= len(t) <= band[1] for t in cands):
                        redo[i] = []
                if not redo:
                    break
                progress.phase(f"length {name} r{r + 1}")
                self._regenerate(plan, col, redo, journal, done, progress, LENGTH_ROUND + r)
                progress.phase("done")

    def _balance_lengths(self, plan: Plan, done: dict[int, dict[str, Any]]) -> dict[str, Any]:
        """Choose each row's answer among its candidates (`alternates`, its own pick first) so the
        column's written lengths follow the real ones (textguide.balance_lengths). Runs once, after
        every row and dedup round is in, on the journal's records only: the same rows give the same
        choices with any worker count, on Ray, and after a resume. Rows regenerated later for text
        privacy keep their new text (their record holds the candidates this pass saw)."""
        from synthloop.generate.textguide import balance_lengths

        report: dict[str, Any] = {}
        for name in sorted(self._balanced(plan)):
            rows = sorted(i for i, rec in done.items() if rec["status"] == "ok" and name in rec["values"])
            guide = self.guides()[name]
            cands = [done[i].get("alternates", {}).get(name) or [str(done[i]["values"][name])] for i in rows]
            # each row starts from its answer closest to its plan (ties: the order written)
            cands = [sorted(c, key=lambda t, i=i: abs(len(t) - (guide.target_length(i) or len(t)))) for i, c in zip(rows, cands)]
            choice, ks0, ks1 = balance_lengths(guide.real_lengths, [[len(t) for t in c] for c in cands])
            moved = 0
            for k, i in enumerate(rows):
                if _in_rounds(done[i].get("round", 0), TEXT_ROUND):
                    continue
                text = cands[k][int(choice[k])]
                moved += text != done[i]["values"][name]
                done[i]["values"][name] = text
            report[name] = {"rows_with_choices": sum(len(c) > 1 for c in cands), "moved": int(moved),
                            "length_ks_before": round(ks0, 4), "length_ks_after": round(ks1, 4)}
        return report

    def _text_checks(self, plan: Plan, journal: Journal | None, done: dict[int, dict[str, Any]],
                     progress: "_Progress") -> dict[str, Any]:
        """Text privacy against the learn table: texts sharing `max_copied_run` tokens or more with a
        real text, or holding a real personal value, are regenerated (bounded); a personal value still
        there after that is replaced by a fake one, so none reaches the output."""
        tp = self.spec.text_privacy
        report: dict[str, Any] = {}
        for name, guide in self.guides().items():
            col = self.spec.column(name)
            before: dict[str, Any] | None = None
            regenerated = 0
            for r in range(tp.max_rounds + 1):
                rows = sorted(i for i, rec in done.items() if rec["status"] == "ok" and name in rec["values"])
                texts = [str(done[i]["values"][name]) for i in rows]
                runs = guide.copy.longest_runs(texts)
                hits = guide.pii.hits(texts)
                if before is None:
                    before = {"copy": copy_figures(runs, tp.max_copied_run), "pii_texts": sum(bool(h) for h in hits)}
                redo: dict[int, list[str]] = {}
                for k, i in enumerate(rows):
                    why = []
                    if runs[k] >= tp.max_copied_run:
                        why.append(f"copying {runs[k]} words in a row from a real text; use your own words")
                    if hits[k]:
                        why.append("real personal names, emails, phone numbers or ids")
                    if why:
                        redo[i] = why
                if not redo or r == tp.max_rounds:
                    break
                progress.phase(f"text checks {name} r{r + 1}")
                regenerated += self._regenerate(plan, col, redo, journal, done, progress, TEXT_ROUND + r)
            trimmed = 0
            for i, rec in done.items():  # the last word on copying: no run of max_copied_run tokens leaves the run
                if rec["status"] == "ok" and name in rec["values"]:
                    t = str(rec["values"][name])
                    if guide.copy.longest_runs([t])[0] >= tp.max_copied_run:
                        rec["values"][name] = trim_copy(guide.copy, t, tp.max_copied_run)
                        trimmed += 1
            scrubbed = 0
            for i, rec in done.items():  # the last word on PII: nothing real leaves the run
                if rec["status"] == "ok" and name in rec["values"]:
                    t = str(rec["values"][name])
                    if guide.pii.spans(t, generic=False):
                        rec["values"][name] = guide.pii.scrub([t], self.spec.seed)[0]
                        scrubbed += 1
            report[name] = {"before": before, "regenerated": regenerated, "pii_scrubbed": scrubbed, "copies_trimmed": trimmed}
        if report:
            progress.phase("done")
        return report

    def _text_summary(self, df: pd.DataFrame, report: dict[str, Any]) -> dict[str, Any]:
        from synthloop.evaluate.text import length_ks_similarity
        from synthloop.generate.textguide import style_stats

        out: dict[str, Any] = {}
        for name, rep in report.items():
            guide = self.guides()[name]
            texts = df[name].dropna().astype(str).tolist() if name in df.columns else []
            runs = guide.copy.longest_runs(texts)
            out[name] = {
                "source": self.spec.text_source(self.spec.column(name)),
                "copy": {"before": rep["before"]["copy"] if rep["before"] else None,
                         "after": copy_figures(runs, self.spec.text_privacy.max_copied_run)},
                "pii": {"texts_before": rep["before"]["pii_texts"] if rep["before"] else 0,
                        "texts_after": sum(bool(h) for h in guide.pii.hits(texts)), "scrubbed": rep["pii_scrubbed"],
                        "values_checked": len(guide.pii)},
                "regenerated": rep["regenerated"], "copies_trimmed": rep.get("copies_trimmed", 0),
                "style": {"real": guide.style, "generated": style_stats(texts),
                          "length_ks_similarity": length_ks_similarity(guide.texts, texts)},
            }
            if "length_balance" in rep:
                out[name]["length_balance"] = rep["length_balance"]
        return out

    def _assemble(self, plan: Plan, done: dict[int, dict[str, Any]]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        ok = sorted(i for i, r in done.items() if r["status"] == "ok")
        failed = [{"row": i, "column": r.get("column"), "error": r.get("error")} for i, r in sorted(done.items()) if r["status"] != "ok"]
        df = plan.frame.iloc[ok].reset_index(drop=True)
        if plan.per_row:
            vals = pd.DataFrame([done[i]["values"] for i in ok]).reset_index(drop=True)
            for name in plan.per_row:
                col = self.spec.column(name)
                for o in col.output_names():
                    df[o] = vals[o] if o in vals.columns else pd.Series([None] * len(ok), dtype=object)
            for name in plan.per_row:  # expressions again, vectorized, for exact dtypes
                if name in self._exprs and len(df):
                    df[name] = self._exprs[name].evaluate(df).reset_index(drop=True)
        for c in df.columns:
            if df[c].dtype == object:
                df[c] = df[c].infer_objects()
        return df[self.spec.output_columns()], failed

    def _summary(self, plan: Plan, df: pd.DataFrame, failed: list[dict[str, Any]], done: dict[int, dict[str, Any]],
                 resumed: int, div_before: dict[str, Any], regenerated: dict[str, int], wall: float,
                 progress: "_Progress") -> dict[str, Any]:
        spec = self.spec
        tot = _new_stats()
        for r in done.values():
            for k in tot:
                tot[k] += r.get("stats", {}).get(k, 0)
        targets: dict[str, Any] = {}
        worst = 0.0
        for name, shares in spec.targets.items():
            if name not in df.columns or not len(df):
                continue
            got = df[name].astype(str).value_counts(normalize=True)
            rows = {}
            for v, share in shares.items():
                g = float(got.get(str(v), 0.0))
                rows[str(v)] = {"target": share, "generated": round(g, 6), "abs_error": round(abs(g - share), 6)}
                worst = max(worst, abs(g - share))
            targets[name] = rows
        diversity = {}
        for name, before in div_before.items():
            texts = df[name].tolist() if name in df.columns else []
            after = diversity_report(texts, spec.diversity.threshold, spec.diversity.ngram)
            col = spec.producer()[name]
            pool = self.pool(col) if col.llm is not None and not col.llm.structured else None
            if pool is not None and texts:
                seeds = [str(e.get(name, "")) for e in pool.examples]
                _, tw = near_duplicates(seeds + texts, spec.diversity.threshold, spec.diversity.ngram)
                tw = tw[len(seeds):]
                after["seed_copy_rate"] = float(((tw >= 0) & (tw < len(seeds))).mean())
            diversity[name] = {"before": before, "after": after, "regenerated": regenerated.get(name, 0)}
        sess = progress.session
        busy = busy_seconds(self._busy)
        fresh_ok = max(len(df) - self._resumed_ok, 0)
        return {
            "spec": spec.name, "seed": spec.seed, "backend": self.backend.model_id if plan.per_row else None,
            "rows_requested": plan.n, "rows_written": int(len(df)), "rows_failed": len(failed), "failed": failed[:50],
            "resumed_rows": resumed,
            "validity": {
                "llm_cells": tot["cells"],
                "valid_first_try": round(tot["valid_first"] / tot["cells"], 6) if tot["cells"] else None,
                "valid_rows": round(len(df) / plan.n, 6) if plan.n else None,
                "repairs": tot["repairs"], "transport_retries": tot["transport_retries"],
            },
            "agreement": self._agreement(plan, done, sess),
            "targets": {"columns": targets, "max_abs_error": round(worst, 6), "tolerance": spec.target_tolerance,
                        "met": worst <= spec.target_tolerance},
            "diversity": diversity,
            # this session's requests (repairs, judge questions and dedup rounds included; cache hits not)
            "requests": {"count": int(sess.get("requests", 0)), "tokens_in": int(sess.get("tokens_in", 0)),
                         "tokens_in_evaluated": int(sess.get("tokens_in_evaluated", 0)),
                         "tokens_out": int(sess.get("tokens_out", 0)),
                         "repairs_by_reason": {k.split(":", 1)[1]: int(v) for k, v in sorted(sess.items())
                                               if k.startswith("repair_why:")},
                         "per_written_row": round(sess.get("requests", 0) / fresh_ok, 4) if fresh_ok > 0 else None},
            "cache": {"hits": int(sess.get("cache_hits", 0)), "misses": self.cache.misses if self.cache else None},
            "timing": {
                # backend_seconds: wall time during which at least one request was in the backend
                # (concurrent requests count once), so overhead = wall - backend is never negative
                "wall_seconds": round(wall, 4), "backend_seconds": round(busy, 4),
                "backend_request_seconds": round(sess.get("backend_seconds", 0.0), 4),
                "overhead_seconds": round(max(wall - busy, 0.0), 4),
                "rows_per_second": round(fresh_ok / wall, 4) if wall > 0 else None,
            },
        }

    def _agreement(self, plan: Plan, done: dict[int, dict[str, Any]], sess: dict[str, Any]) -> dict[str, Any]:
        """Per checked column: this session's cells checked, agreeing at the first answer and in
        the end, and the agreement rate of every written row (resumed ones included) re-checked
        now without the judge."""
        out: dict[str, Any] = {}
        for col in self.spec.columns:
            checker = self.checker(col)
            if checker is None:
                continue
            checked = int(sess.get(f"checked:{col.name}", 0))
            agreed = int(sess.get(f"agreed:{col.name}", 0))
            first = int(sess.get(f"agreed_first:{col.name}", 0))
            rows = [i for i, r in sorted(done.items()) if r["status"] == "ok"]
            passed = 0
            for i in rows:
                vals = done[i]["values"]
                ctx = self._context(plan, i, vals)
                cell = ({f: vals.get(f) for f in col.output_names()} if col.llm.structured and col.llm.flatten  # type: ignore[union-attr]
                        else _loads_obj(vals.get(col.name)) if col.llm.structured else {col.name: vals.get(col.name)})  # type: ignore[union-attr]
                ctx.update(cell)
                passed += not checker.check(checker.text_of(cell, col.name), ctx)
            out[col.name] = {
                "cells_checked": checked, "agreed_first_try": round(first / checked, 6) if checked else None,
                "agreed_after_repairs": round(agreed / checked, 6) if checked else None,
                "cells_failed": checked - agreed, "written_rows_agreement": round(passed / len(rows), 6) if rows else None,
            }
        return out


def _loads_obj(v: Any) -> dict[str, Any]:
    try:
        obj = json.loads(v) if isinstance(v, str) else v
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def _first(chosen: str, cands: list[str]) -> list[str]:
    """`chosen` then the other distinct candidates, in the order they were written."""
    return list(dict.fromkeys([chosen, *cands]))


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals: time during which any request was running."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


class _Progress:
    """Counts for the progress bar (rows/s, validity, retries) and the session's own figures."""

    def __init__(self, total: int, callback: Callable[[dict[str, Any]], None] | None, backend: Any) -> None:
        self.total = total
        self.callback = callback
        self.done = self.ok = self.failed = self.cells = self.valid_first = self.retries = 0
        self.session: dict[str, Any] = {"cache_hits": 0, "backend_seconds": 0.0}
        self.t0 = time.perf_counter()
        self.fresh = 0
        self.label = "rows"

    def add_existing(self, records: Any) -> None:
        for r in records:
            self._count(r)
        self._emit()

    def _count(self, r: dict[str, Any]) -> None:
        self.done += 1
        self.ok += r["status"] == "ok"
        self.failed += r["status"] != "ok"
        st = r.get("stats", {})
        self.cells += st.get("cells", 0)
        self.valid_first += st.get("valid_first", 0)
        self.retries += st.get("repairs", 0) + st.get("transport_retries", 0)

    def row(self, r: dict[str, Any], fresh_row: bool = True) -> None:
        st = r.get("stats", {})
        for k, v in st.items():  # every figure of this session's rows, per-column agreement included
            self.session[k] = self.session.get(k, 0) + v
        if fresh_row:
            self._count(r)
            self.fresh += 1
        else:
            self.cells += st.get("cells", 0)
            self.valid_first += st.get("valid_first", 0)
            self.retries += st.get("repairs", 0) + st.get("transport_retries", 0)
        self._emit()

    def phase(self, label: str) -> None:
        self.label = label
        self._emit()

    def _emit(self) -> None:
        if self.callback is None:
            return
        el = time.perf_counter() - self.t0
        self.callback({
            "done": self.done, "total": self.total, "ok": self.ok, "failed": self.failed, "retries": self.retries,
            "valid": (self.valid_first / self.cells) if self.cells else 1.0,
            "rows_per_s": self.fresh / el if el > 0 else 0.0, "phase": self.label,
        })
