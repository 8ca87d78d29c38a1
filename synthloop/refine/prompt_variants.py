"""Prompt variants for the LLM columns of a mixed spec, searched by `synthloop autopilot --spec`.

With a spec, a trial's structured rows (the searched model, oversampling, slices, parity) stand in for
the spec's learned columns, and the spec's LLM columns are written for those rows under the trial's
prompt variant: the instruction (the spec's prompt or one of `autopilot.prompts.<col>.variants`),
the few-shot count, the number of nearest-real-row examples and the column's temperature. The trial
is scored on the objective (the judge sees the LLM-written fields like any column) and on the
agreement of the written texts with their rows (the columns' `checks:`), which the `agreement`
floor bounds. The LLM backend is the spec's (`llm:`) unless one is given (tests: a scripted one).
"""
from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from synthloop.errors import SynthloopError
from synthloop.refine.targets import PromptSearch


def spec_searches(spec: Any, settings_prompts: dict[str, PromptSearch], data_columns: list[str]) -> dict[str, PromptSearch]:
    """The LLM columns to search and what each may change (one-line errors for specs autopilot cannot run)."""
    where = f"{spec.source}"
    if spec.learn is None:
        raise SynthloopError(f"{where}: autopilot --spec needs a mixed spec (a learn: block): its learned columns "
                             "come from the search's models, its LLM columns are written for them")
    if spec.conditioning_columns():
        raise SynthloopError(f"{where}: autopilot --spec: sampler column(s) {', '.join(spec.conditioning_columns())} "
                             "condition the learned columns; the search draws those itself, so remove the samplers")
    llm = {c.name: c for c in spec.columns if c.llm is not None}
    if not llm:
        raise SynthloopError(f"{where}: autopilot --spec: the spec has no LLM column; run autopilot without --spec")
    missing = [c for c in spec.learned_columns if c not in data_columns]
    if missing:
        raise SynthloopError(f"{where}: autopilot --spec: learned column(s) {', '.join(missing[:5])} are not in DATA; "
                             "give the spec's learn table (learn.data) as DATA")
    for name in settings_prompts:
        if name not in llm:
            raise SynthloopError(f"autopilot.prompts.{name}: not an LLM column of {where} "
                                 f"(LLM columns: {', '.join(llm)})")
    out = {}
    for name, col in llm.items():
        s = settings_prompts.get(name, PromptSearch())
        if s.few_shot is None and col.llm.few_shot is not None:
            k = col.llm.few_shot.k
            s = s.model_copy(update={"few_shot": sorted({0, max(1, k // 2), k})})
        elif col.llm.few_shot is None:
            s = s.model_copy(update={"few_shot": None})
        if spec.text_source(col) is None:
            s = s.model_copy(update={"neighbours": None})
        out[name] = s
    return out


def suggest(trial: Any, searches: dict[str, PromptSearch]) -> dict[str, dict[str, Any]]:
    """One trial's prompt choices per column (Optuna parameters named `prompt:<column>:<what>`)."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in searches.items():
        ch: dict[str, Any] = {}
        if s.variants:
            ch["variant"] = trial.suggest_categorical(f"prompt:{name}:variant", list(range(len(s.variants) + 1)))
        if s.few_shot:
            ch["few_shot"] = trial.suggest_categorical(f"prompt:{name}:few_shot", list(s.few_shot))
        if s.neighbours:
            ch["neighbours"] = trial.suggest_categorical(f"prompt:{name}:neighbours", list(s.neighbours))
        if s.temperature is not None:
            ch["temperature"] = trial.suggest_float(f"prompt:{name}:temperature", *s.temperature)
        out[name] = ch
    return out


def default_params(spec: Any, searches: dict[str, PromptSearch]) -> dict[str, Any]:
    """Trial 0's prompt parameters: the spec as written (its prompt, few-shot count and temperature)."""
    p: dict[str, Any] = {}
    for name, s in searches.items():
        llm = spec.column(name).llm
        if s.variants:
            p[f"prompt:{name}:variant"] = 0
        if s.few_shot:
            p[f"prompt:{name}:few_shot"] = llm.few_shot.k if llm.few_shot.k in s.few_shot else max(s.few_shot)
        if s.neighbours:
            p[f"prompt:{name}:neighbours"] = llm.neighbours if llm.neighbours in s.neighbours else max(s.neighbours)
        if s.temperature is not None:
            t = llm.temperature if llm.temperature is not None else spec.llm.temperature
            p[f"prompt:{name}:temperature"] = min(max(t, s.temperature[0]), s.temperature[1])
    return p


def variant_spec(spec: Any, searches: dict[str, PromptSearch], choices: dict[str, dict[str, Any]], seed: int) -> Any:
    """The spec with one trial's prompt choices applied (the loaded spec's table columns kept)."""
    cols = []
    for c in spec.columns:
        ch = choices.get(c.name)
        if c.llm is None or not ch:
            cols.append(c)
            continue
        upd: dict[str, Any] = {}
        if ch.get("variant"):
            upd["prompt"] = searches[c.name].variants[ch["variant"] - 1]
        if "few_shot" in ch:
            upd["few_shot"] = None if ch["few_shot"] == 0 else c.llm.few_shot.model_copy(update={"k": int(ch["few_shot"])})
        if "neighbours" in ch:
            upd["neighbours"] = int(ch["neighbours"])
        if "temperature" in ch:
            upd["temperature"] = float(ch["temperature"])
        cols.append(c.model_copy(update={"llm": c.llm.model_copy(update=upd)}))
    return spec.model_copy(update={"columns": cols, "seed": int(seed)})


class _TrialRows:
    """A trial's structured rows, standing in for the mixed spec's fitted model (LearnedPart samples it)."""

    def __init__(self, rows: pd.DataFrame):
        self.rows = rows.reset_index(drop=True)

    def sample(self, num_rows: int | None = None, seed: int | None = None, conditions: Any = None) -> pd.DataFrame:
        return self.rows.iloc[: num_rows or len(self.rows)].copy()


def write_llm_columns(spec: Any, rows: pd.DataFrame, backend: Any, limit: int | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """`rows` with the spec's LLM (and dependent) columns written by `backend`, and the agreement figures:
    `agreement` (worst checked column's share of the asked rows written and passing its checks), `agreement_first_try`,
    `llm_failed_rows`. With `limit`, only the first `limit` rows get LLM columns (the rest keep NaN, as do rows whose cells failed)."""
    from synthloop.generate.runner import PromptedGenerator

    n = len(rows) if limit is None else min(limit, len(rows))
    gen = PromptedGenerator(spec, backend=backend, cache_dir=False, learned_model=_TrialRows(rows.iloc[:n]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gen.generate(n)
    written = res.data.reset_index(drop=True)
    failed = {int(f["row"]) for f in res.failed if "row" in f}
    ok = [i for i in range(n) if i not in failed]
    if len(ok) == len(written):  # rows whose cells failed every attempt are not written: their LLM cells stay NaN
        written.index = ok
        written = written.reindex(range(n))
    head = rows.iloc[:n].reset_index(drop=True).copy()
    for c in written.columns:  # the trial's rows never hold the columns the spec writes
        if c not in head.columns:
            head[c] = written[c].to_numpy() if len(written) == n else None
    out = pd.concat([head, rows.iloc[n:]], ignore_index=True)
    order = [c for c in rows.columns if c in out.columns] + [c for c in out.columns if c not in rows.columns]
    agree = res.summary.get("agreement") or {}
    written_share = [v.get("written_rows_agreement") or 0.0 for v in agree.values()]  # None: no row written
    first = [v["agreed_first_try"] for v in agree.values() if v.get("agreed_first_try") is not None]
    kept = len(ok) / n if n else 1.0  # rows whose cells failed every attempt are not written: they count as failing
    figures = {"agreement": min(written_share) * kept if written_share else None,
               "agreement_first_try": min(first) if first else None,
               "llm_rows": int(n), "llm_failed_rows": int(len(res.failed))}
    return out[order], figures
