"""The two things the loop can steer: a learned synthesizer over a real table (`LearnedEngine`) and a
prompted YAML spec (`PromptedEngine`). Each generates an iteration's rows from its state, exposes
that state as plain JSON (for diffs and the log), and proposes actions for a list of diagnoses."""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloop.errors import DataError
from synthloop.refine import actions as A
from synthloop.refine import diagnose as D
from synthloop.refine.measure import MeasureContext, Measurement, _key, observed_shares, plan_shares
from synthloop.refine.targets import Targets


def ipf_counts(real: pd.DataFrame, plan: dict[str, dict[str, float]], n: int, iterations: int = 100) -> tuple[list[list[str]], np.ndarray]:
    """Joint per-cell row counts over the planned columns: the real joint table, raked (iterative
    proportional fitting) until every column's margin equals its planned shares, so associations
    between the planned columns survive while their shares change."""
    from synthloop.generate.samplers import quota_counts

    cols = list(plan)
    levels = []
    for c in cols:
        seen = list(observed_shares(real[c])) if c in real.columns else []
        levels.append(seen + [k for k in plan[c] if k not in seen])
    shape = tuple(len(lv) for lv in levels)
    joint = np.zeros(shape)
    if len(real):
        idx = []
        for c, lv in zip(cols, levels):
            pos = {k: i for i, k in enumerate(lv)}
            idx.append(real[c].map(lambda v: pos.get(_key(v), -1) if pd.notna(v) else -1).to_numpy())
        ok = np.all([i >= 0 for i in idx], axis=0)
        np.add.at(joint, tuple(i[ok] for i in idx), 1.0)
    joint = joint / max(joint.sum(), 1.0) + 1e-9
    for _ in range(iterations):
        for ax, (c, lv) in enumerate(zip(cols, levels)):
            want = np.array([plan[c].get(k, 0.0) for k in lv])
            have = joint.sum(axis=tuple(a for a in range(len(cols)) if a != ax))
            scale = np.divide(want, have, out=np.zeros_like(want), where=have > 0)
            joint = joint * scale.reshape([-1 if a == ax else 1 for a in range(len(cols))])
    counts = quota_counts(joint.ravel(), n).reshape(shape)
    return levels, counts


class _PlanSampler:
    """`model.sample` with numeric range conditions added to every row (grouped by per-row conditions)."""

    def __init__(self, model: Any, ranges: dict[str, tuple[Any, Any]]) -> None:
        self.model, self.ranges = model, ranges

    def sample(self, n: int | None = None, seed: int | None = None, conditions: Any = None) -> pd.DataFrame:
        if not self.ranges:
            return self.model.sample(n, seed=seed, conditions=conditions)
        if not isinstance(conditions, pd.DataFrame):
            return self.model.sample(n, seed=seed, conditions={**(conditions or {}), **self.ranges})
        cond = conditions.reset_index(drop=True)
        keys = cond.astype(str).agg("\x1f".join, axis=1)
        parts, slots = [], []
        for g, (_, rows) in enumerate(cond.groupby(keys, sort=True)):
            fixed = {c: v for c, v in rows.iloc[0].items() if pd.notna(v)}
            parts.append(self.model.sample(len(rows), seed=None if seed is None else seed + g, conditions={**fixed, **self.ranges}))
            slots.append(rows.index.to_numpy())
        out = pd.concat(parts, ignore_index=True)
        return out.iloc[np.argsort(np.concatenate(slots), kind="stable")].reset_index(drop=True)


class LearnedEngine:
    """Fit a synthesizer on a real table and sample it under a plan the actions change."""

    kind = "learned"

    def __init__(self, real: pd.DataFrame, targets: Targets, schema: Any = None) -> None:
        from synthloop.schema import infer_schema

        if not isinstance(real, pd.DataFrame) or len(real) == 0:
            raise DataError("refine needs a non-empty real table to learn from")
        self.targets = targets
        unknown = [c for c in [*targets.shares, *targets.parity, *targets.min_shares, *targets.ranges, *targets.protected,
                               *([targets.target] if targets.target else [])] if c not in real.columns]
        if unknown:
            raise DataError(f"targets name column '{unknown[0]}', which the table does not have; columns are {', '.join(map(str, real.columns[:12]))}")
        if "judge_pass_rate" in targets.metrics:
            raise DataError("metric judge_pass_rate judges LLM outputs against their prompt: it needs a prompted spec, not a table")
        if targets.needs_holdout():
            rng = np.random.default_rng(targets.seed)
            perm = rng.permutation(len(real))
            k = int(round(len(real) * targets.holdout_share))
            self.holdout: pd.DataFrame | None = real.iloc[np.sort(perm[:k])].reset_index(drop=True)
            self.train = real.iloc[np.sort(perm[k:])].reset_index(drop=True)
        else:
            self.holdout, self.train = None, real.reset_index(drop=True)
        self.schema = schema if schema is not None else infer_schema(self.train)
        self.real_shares = {c: observed_shares(self.train[c]) for c in [*targets.shares, *targets.parity, *targets.min_shares]}
        self.categories = {c: list(s) for c, s in self.real_shares.items()}
        self.state: dict[str, Any] = {"model": targets.model, "params": dict(targets.model_params), "plan": {}, "ranges": {}, "bins": {},
                                      "protect": None, "constraints": [], "tried": []}
        self._models: dict[str, Any] = {}
        self._filters: dict[float, Any] = {}
        self.n = targets.rows or len(self.train)

    # -- the loop's interface -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.state)

    def context(self) -> MeasureContext:
        return MeasureContext(targets=self.targets, real=self.train, holdout=self.holdout, schema=self.schema,
                              categories=self.categories)

    def model(self) -> Any:
        from synthloop.synthesizers import synthesizer_class

        key = json.dumps([self.state["model"], self.state["params"], self.state["constraints"]], sort_keys=True, default=str)
        if key not in self._models:
            try:
                klass = synthesizer_class(self.state["model"])
            except KeyError:
                raise DataError(f"unknown model '{self.state['model']}' in targets; use one of copula, gan, vae, autoregressive, dp") from None
            params = dict(self.state["params"])
            if "random_state" in klass._get_param_names():
                params.setdefault("random_state", self.targets.seed)
            if "max_seconds" in klass._get_param_names() and self.targets.budget.seconds:
                # a deep model may not eat the whole time budget in one fit
                params.setdefault("max_seconds", max(10.0, self.targets.budget.seconds / 3))
            self._models[key] = klass(**params).fit(self.train, schema=self.schema, constraints=self.state["constraints"] or None)
        return self._models[key]

    def conditions(self, seed: int) -> pd.DataFrame | None:
        if not self.state["plan"]:
            return None
        levels, counts = ipf_counts(self.train, self.state["plan"], self.n)
        originals = {c: {_key(v): v for v in self.train[c].dropna().unique()} for c in self.state["plan"]}
        cells = np.argwhere(counts > 0)
        reps = counts[tuple(cells.T)]
        cols = {}
        for j, c in enumerate(self.state["plan"]):
            vals = np.array([originals[c].get(levels[j][i], levels[j][i]) for i in cells[:, j]], dtype=object)
            cols[c] = np.repeat(vals, reps)
        df = pd.DataFrame(cols)
        perm = np.random.default_rng(seed).permutation(len(df))
        return df.iloc[perm].reset_index(drop=True)

    def generate(self, iteration: int) -> pd.DataFrame:
        seed = self.targets.seed * 1000 + iteration
        model = self.model()
        cond = self.conditions(seed)
        ranges = {c: tuple(r) for c, r in self.state["ranges"].items()}
        sampler = _PlanSampler(model, ranges)
        if self.state["protect"]:
            from synthloop.synthesizers.protection import ProtectionFilter

            q = float(self.state["protect"])
            if q not in self._filters:
                self._filters[q] = ProtectionFilter(quantile=q, random_state=self.targets.seed).fit(self.train, self.holdout, self.schema)
            data, report = self._filters[q].sample(sampler, self.n, seed=seed, conditions=cond)
            self.last_protection = report.to_dict()
        else:
            data = sampler.sample(None if cond is not None else self.n, seed=seed, conditions=cond)
        if self.state.get("bins"):
            data, self.last_fill = self._fill_bins(data.reset_index(drop=True), model, ranges, seed)
        return data

    # -- filling numeric bins -------------------------------------------------------------------
    def _fill_bins(self, data: pd.DataFrame, model: Any, ranges: dict[str, tuple[Any, Any]], seed: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
        """Per column of state['bins']: surplus rows of bins above their planned count make room for
        rows drawn inside the bins below theirs. A replacement is conditioned on the replaced row's
        values in the planned and share-target columns (so shares do not move) and on the range
        targets; one too close to a training row (protection on) or never drawn is skipped, and the
        old row stays."""
        from synthloop.generate.samplers import quota_counts
        from synthloop.schema import ColumnKind
        from synthloop.synthesizers._conditional import RejectionSamplingMixin

        rng = np.random.default_rng(seed + 7919)
        t = self.targets  # columns with a share target keep the replaced row's value, planned yet or not
        plan_cols = [c for c in dict.fromkeys([*self.state["plan"], *t.shares, *t.parity, *t.min_shares]) if c in data.columns]
        ids = [c.name for c in self.schema.of_kind(ColumnKind.ID)]
        exact = not isinstance(model, RejectionSamplingMixin)
        filt = self._filters.get(float(self.state["protect"])) if self.state.get("protect") else None
        reports = []
        for ci, (col, spec) in enumerate(self.state["bins"].items()):
            edges, want = np.asarray(spec["edges"], float), np.asarray(spec["shares"], float)
            x = pd.to_numeric(data[col], errors="coerce").to_numpy(float)
            ok = ~np.isnan(x)
            idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, want.size - 1)
            have = np.bincount(idx[ok], minlength=want.size)
            target = quota_counts(want / want.sum(), int(ok.sum()))
            deficit, surplus = np.maximum(target - have, 0), np.maximum(have - target, 0)
            rep: dict[str, Any] = {"column": col, "method": "range conditions" if exact else "rejection from unconditioned draws",
                                   "requested": int(deficit.sum()), "replaced": 0, "bins": []}
            if not exact:
                rep["reason"] = (f"model '{self.state['model']}' cannot condition on a numeric range without imposing "
                                 "values, so rows inside each bin are kept from extra unconditioned draws")
            if deficit.sum() == 0:
                reports.append(rep)
                continue
            pool = np.concatenate([rng.choice(np.flatnonzero(ok & (idx == b)), surplus[b], replace=False)
                                   for b in np.flatnonzero(surplus)])
            rng.shuffle(pool)
            lo_t, hi_t = ranges.get(col, (None, None))
            parts, start = [], 0
            for b in np.flatnonzero(deficit):
                slots = pool[start:start + deficit[b]]
                start += deficit[b]
                lo = max(edges[b], lo_t) if lo_t is not None else edges[b]
                hi = min(edges[b + 1], hi_t) if hi_t is not None else edges[b + 1]
                if lo > hi:
                    rep["bins"].append({"bin": f"[{edges[b]:g}, {edges[b + 1]:g}]", "requested": int(slots.size), "replaced": 0,
                                        "reason": f"outside the range target on {col}"})
                    continue
                cond = data.loc[slots, plan_cols].reset_index(drop=True) if plan_cols else None
                new, pos = self._draw_in_bin(model, ranges, cond, slots.size, col, lo, hi, exact, want[b], seed + 31 * ci + b)
                if filt is not None and len(new):
                    keep = ~filt.too_close(new)
                    new, pos = new[keep], pos[keep]
                new = new.set_axis(slots[pos])
                for c in ids:  # ids are generated per batch: the replaced row keeps its own
                    if c in new.columns:
                        new[c] = data.loc[new.index, c]
                parts.append(new)
                rep["bins"].append({"bin": f"[{edges[b]:g}, {edges[b + 1]:g}]", "requested": int(slots.size), "replaced": int(len(new))})
            if parts:
                new = pd.concat(parts)
                data = pd.concat([data.drop(index=new.index), new[data.columns]]).sort_index()
                rep["replaced"] = int(len(new))
            reports.append(rep)
        return data.reset_index(drop=True), reports

    @staticmethod
    def _draw_in_bin(model: Any, ranges: dict[str, tuple[Any, Any]], cond: pd.DataFrame | None, k: int, col: str,
                     lo: float, hi: float, exact: bool, share: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
        """`k` rows with `col` in [lo, hi] (one per row of `cond` when given) and the slots (0..k-1)
        they fill. Exact models take the range as a condition; the others draw `reps` candidates per
        slot without it and keep the first one inside."""
        if exact:
            new = _PlanSampler(model, {**ranges, col: (lo, hi)}).sample(None if cond is not None else k, seed=seed, conditions=cond)
            return new.reset_index(drop=True), np.arange(len(new))
        reps = int(min(50, max(4, np.ceil(3.0 / max(share, 1e-3)))))
        slot = np.repeat(np.arange(k), reps)
        c = cond.iloc[slot].reset_index(drop=True) if cond is not None else None
        cand = _PlanSampler(model, ranges).sample(None if c is not None else k * reps, seed=seed, conditions=c)
        v = pd.to_numeric(cand[col], errors="coerce").to_numpy(float)
        inside = np.flatnonzero((v >= lo) & (v <= hi))
        filled, first = np.unique(slot[inside], return_index=True)
        return cand.iloc[inside[first]].reset_index(drop=True), filled

    # -- proposing actions ----------------------------------------------------------------------
    def propose(self, diagnoses: list[D.Diagnosis], m: Measurement, data: pd.DataFrame) -> list[A.Action]:
        acts: list[A.Action] = []
        plan = plan_shares(self.targets, self.categories, self.real_shares)
        misses = [d for d in diagnoses if isinstance(d, D.ShareMissed)]
        new_plan = {c: s for c, s in plan.items() if self.state["plan"].get(c) != s}
        ranges = {}
        for d in diagnoses:
            if isinstance(d, D.TargetMissed) and d.column and d.column in self.targets.ranges:
                r = self.targets.ranges[d.column]
                if list(self.state["ranges"].get(d.column, [])) != [r.min, r.max]:
                    ranges[d.column] = [r.min, r.max]
        cover = {}
        for d in diagnoses:
            if isinstance(d, (D.UnderCovered, D.OverRepresented)) and d.evidence.get("kind") in ("categorical", "boolean"):
                if d.column not in self.state["plan"] and d.column not in plan and len(cover) < 3:
                    cover[d.column] = observed_shares(self.train[d.column])
        if (misses and new_plan) or ranges or cover:
            why = "; ".join([d.summary() for d in misses] + [f"{c} out of range" for c in ranges]
                            + [f"{c} shares drift from the real table" for c in cover])
            acts.append(A.Resample(conditions={**({k: v for k, v in plan.items()} if misses else {}), **cover}, ranges=ranges,
                                   why=f"conditional resampling to fill quotas: {why}"))
        fills = self._fill_actions(diagnoses)
        acts += fills
        rules = [d for d in diagnoses if isinstance(d, D.ConstraintViolations)]
        if rules:
            missing = [r for r in self.targets.constraints if r not in self.state["constraints"]]
            if missing:
                acts.append(A.AddConstraint(rules=missing, why="; ".join(d.summary() for d in rules)))
        close = [d for d in diagnoses if isinstance(d, D.TooClose)]
        if close:
            q = self.state["protect"]
            nq = 0.05 if not q else min(0.3, 2 * float(q))
            if nq != q:
                acts.append(A.ReplaceTooClose(quantile=nq, why="; ".join(d.summary() for d in close)))
        fid = [d for d in diagnoses if isinstance(d, D.DetectableColumns)
               or (isinstance(d, D.TargetMissed) and d.metric in ("quality_score", "column_shapes", "column_pair_trends", "pair_trends_drift", "tstr_ratio"))]
        if fid and not fills:  # refilled bins may close the gap: measure them before changing the model
            why = "fidelity short: " + "; ".join(d.summary() for d in fid)
            act = self._fidelity_action(why)
            if act is not None:
                acts.append(act)
        return acts

    def _fill_actions(self, diagnoses: list[D.Diagnosis], most: int = 3) -> list[A.Action]:
        """FillBins for numeric columns with under-covered bins (not steered by a range target), at
        real quantile bins finer than the diagnosis' deciles (up to 50, >= 20 real rows each), so the
        refilled column follows the real shape inside the diagnosed bins too."""
        acts: list[A.Action] = []
        for d in diagnoses:
            if not (isinstance(d, D.UnderCovered) and d.evidence.get("kind") == "numerical") or len(acts) >= most:
                continue
            if d.column in self.state.get("bins", {}) or d.column in self.targets.ranges or d.column not in self.train.columns:
                continue
            r = pd.to_numeric(self.train[d.column], errors="coerce").dropna().to_numpy(float)
            n_bins = int(np.clip(r.size // 20, 10, 50))
            edges = np.unique(np.quantile(r, np.linspace(0, 1, n_bins + 1)))
            if edges.size < 3:
                continue
            shares = np.histogram(np.clip(r, edges[0], edges[-1]), edges)[0] / r.size
            acts.append(A.FillBins(column=d.column, edges=[float(e) for e in edges], shares=[round(float(v), 6) for v in shares],
                                   under=d.bins, why=f"under-covered numeric bins: {d.summary()}"
                                   + (f" (+{len(d.bins) - 1} more bins)" if len(d.bins) > 1 else "")))
        return acts

    def _fidelity_action(self, why: str) -> A.Action | None:
        from synthloop.synthesizers import synthesizer_class

        klass = synthesizer_class(self.state["model"])
        if "epochs" in klass._get_param_names():
            cur = int(self.state["params"].get("epochs", getattr(klass(), "epochs", 100)))
            if cur * 2 <= self.targets.max_epochs:
                return A.RaiseEpochs(to=cur * 2, why=why)
        tried = set(self.state.get("tried", [])) | {self.state["model"]}
        for name in self.targets.models:
            if name not in tried:
                return A.SwitchModel(to=name, why=why)
        return None


class PromptedEngine:
    """Run a prompted spec; actions edit a working copy of the spec (quotas, bounds, prompts)."""

    kind = "prompted"

    def __init__(self, spec: Any, targets: Targets, backend: Any = None, cache_dir: Any = None, work_dir: str | Path | None = None) -> None:
        self.spec = spec.model_copy(deep=True)
        self.spec.base_dir, self.spec.source = spec.base_dir, spec.source
        self.targets = targets
        self.backend = backend
        self.cache_dir = cache_dir
        # few-shot files written by actions go here; never the caller's working directory by default
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="synthloop-refine-"))
        outputs = self.spec.output_columns()
        unknown = [c for c in [*targets.shares, *targets.parity, *targets.min_shares, *targets.ranges] if c not in outputs]
        if unknown:
            raise DataError(f"targets name column '{unknown[0]}', which spec {spec.source} does not produce; it produces {', '.join(outputs)}")
        self.categories = {c: self._known_values(c) for c in [*targets.shares, *targets.parity, *targets.min_shares]}
        self.real_shares = {c: {_key(k): 1.0 / max(len(v), 1) for k in v} for c, v in self.categories.items()}
        self.n = targets.rows or self.spec.rows
        self._last: pd.DataFrame | None = None
        self._own_backend: Any = None
        self._judge_backend: Any = None
        self._rewrites = 0
        self._learned_model: Any = None
        unknown_text = [c for c in targets.text if c not in outputs]
        if unknown_text:
            raise DataError(f"text targets name column '{unknown_text[0]}', which spec {spec.source} does not produce")
        # the judge holds outputs to the user's own instruction, not to the latest rewrite of it
        self.instructions = {c.name: c.llm.prompt for c in self.spec.columns if c.llm is not None}
        if "judge_pass_rate" in targets.metrics and not any(c.llm is not None for c in self.spec.columns):
            raise DataError(f"metric judge_pass_rate needs an llm column to judge; spec {spec.source} has none")

    def llm(self) -> Any:
        """The backend the judge and the rewriter ask: the targets' `judge_llm` when given (a stronger
        model than the generator), else the caller's, else one from the spec's settings."""
        from synthloop.llm import make_backend

        if self.targets.judge_llm is not None:
            if self._judge_backend is None:
                self._judge_backend = make_backend(self.targets.judge_llm)
            return self._judge_backend
        if self.backend is not None:
            return self.backend
        if self._own_backend is None:
            self._own_backend = make_backend(self.spec.llm)
        return self._own_backend

    def judge(self, data: pd.DataFrame) -> dict[str, Any]:
        """judge_pass_rate: the worst LLM column's pass rate, each column's report beside it."""
        from synthloop.refine.judge import judge_column

        cols = {}
        for i, col in enumerate(self.spec.columns):
            if col.llm is not None:
                cols[col.name] = judge_column(self.spec, col, i, data, self.llm(), self.targets.judge_sample, self.spec.seed,
                                              instruction=self.instructions.get(col.name))
        rates = [r["pass_rate"] for r in cols.values() if r["pass_rate"] is not None]
        return {"pass_rate": min(rates) if rates else None, "columns": cols}

    def _known_values(self, name: str) -> list[Any]:
        col = self.spec.producer()[name]
        if col.sampler is not None and col.sampler.categorical is not None:
            return list(col.sampler.categorical)
        if col.llm is not None and col.llm.json_schema is not None:
            return list(col.llm.json_schema["properties"].get(name, {}).get("enum") or [])
        return []

    def snapshot(self) -> dict[str, Any]:
        return self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)

    def context(self) -> MeasureContext:
        text = [c.name for c in self.spec.columns if c.llm is not None and not c.llm.structured]
        judge = self.judge if "judge_pass_rate" in self.targets.metrics else None
        figures = self.text_figures if self.targets.text else None
        return MeasureContext(targets=self.targets, categories=self.categories, text_columns=text, judge=judge,
                              text_figures=figures)

    def text_figures(self, data: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """The last run's text figures per column: agreement (its checks, over written rows), longest
        copied run and length KS against the learn table's texts (mixed specs)."""
        summary = getattr(self, "last_summary", None) or {}
        out: dict[str, dict[str, Any]] = {}
        for col in self.targets.text:
            ag = (summary.get("agreement") or {}).get(col) or {}
            tx = (summary.get("text") or {}).get(col) or {}
            out[col] = {"agreement": ag.get("written_rows_agreement"),
                        "max_copied_run": ((tx.get("copy") or {}).get("after") or {}).get("max"),
                        "length_ks": (tx.get("style") or {}).get("length_ks_similarity")}
        return out

    def generate(self, iteration: int) -> pd.DataFrame:
        from synthloop.generate.runner import PromptedGenerator

        gen = PromptedGenerator(self.spec, backend=self.backend or self._own_backend, cache_dir=self.cache_dir,
                                learned_model=self._learned_model)
        res = gen.generate(self.n)
        if gen.learned_part() is not None:  # mixed specs: fit once, every iteration samples the same model
            self._learned_model = gen.learned_part().model()
        self.last_summary = res.summary
        self._last = res.data
        return res.data

    @property
    def state(self) -> Any:
        return self.spec

    def propose(self, diagnoses: list[D.Diagnosis], m: Measurement, data: pd.DataFrame) -> list[A.Action]:
        acts: list[A.Action] = []
        producer = self.spec.producer()
        plan = plan_shares(self.targets, self.categories, self.real_shares)
        for d in diagnoses:
            if isinstance(d, D.ShareMissed):
                col = producer.get(d.column)
                quotable = col is not None and ((col.sampler is not None and col.sampler.categorical is not None)
                                                or (col.llm is not None and col.llm.structured and d.column != col.name))
                if quotable:
                    acts.append(A.AdjustQuota(column=d.column, shares=plan[d.column], why=f"share missed: {d.summary()}"))
            elif isinstance(d, D.TargetMissed) and d.column and d.column in self.targets.ranges:
                r = self.targets.ranges[d.column]
                col = producer[d.column]
                why = f"{d.summary()}; outside values e.g. {d.evidence.get('examples_outside', [])[:3]}"
                acts.append(A.TightenRange(column=d.column, min=r.min, max=r.max, why=why))
                if col.llm is not None:
                    acts.append(A.AddNegativeConstraint(column=d.column, text=f"{d.column} below {r.min} or above {r.max}",
                                                        why=f"recurring out-of-range {d.column}"))
                    ex = self._examples_inside(data, col, d.column, r)
                    if ex:
                        acts.append(A.AddFewShot(column=d.column, examples=ex, file=str(self.work_dir / f"fewshot_{col.name}.csv"),
                                                 why=f"examples from the region the outputs miss ({d.column} in [{r.min}, {r.max}])"))
            elif isinstance(d, D.ConstraintViolations):
                for c in {producer[x].name for x in d.columns if x in producer and producer[x].llm is not None}:
                    acts.append(A.AddNegativeConstraint(column=c, text=f"rows where '{d.rule}' does not hold", why=d.summary()))
            elif isinstance(d, D.InstructionMissed):
                acts.append(self._rewrite(d))
            elif isinstance(d, D.TextTargetMissed):
                acts += self._text_actions(d, producer)
            elif isinstance(d, D.LowDiversity):
                col = producer[d.column]
                cur = col.llm.temperature if col.llm and col.llm.temperature is not None else self.spec.llm.temperature
                if cur < 1.4:
                    acts.append(A.RaiseTemperature(column=d.column, to=round(min(1.4, cur + 0.3), 2), why=d.summary()))
        seen, out = set(), []
        for a in acts:  # one action of a kind per column
            k = (a.kind, getattr(a, "column", ""))
            if k not in seen:
                seen.add(k)
                out.append(a)
        return out

    def _text_actions(self, d: D.TextTargetMissed, producer: dict[str, Any]) -> list[A.Action]:
        """Agreement missed: more answers per cell and the contradiction named in the prompt; length
        missed: the range stated and enforced; copying: a lower regeneration threshold; length KS:
        more nearest-neighbour examples."""
        col = producer.get(d.column)
        if col is None or col.llm is None:
            return []
        why = f"text target missed: {d.summary()}"
        t = self.targets.text[d.column]
        if d.figure == "agreement":
            acts: list[A.Action] = [A.AddNegativeConstraint(column=d.column, text="anything that contradicts the values of this record",
                                                            why=why)]
            if col.llm.checks is not None and col.llm.checks.max_attempts < 20:
                acts.insert(0, A.MoreAttempts(column=d.column, to=min(20, col.llm.checks.max_attempts + 2), why=why))
            return acts
        if d.figure == "length" and t.length is not None:
            lo = int(t.length.min) if t.length.min is not None else col.llm.min_chars
            hi = int(t.length.max) if t.length.max is not None else col.llm.max_chars
            return [A.SetTextLength(column=d.column, min_chars=max(0, lo), max_chars=max(hi, lo, 1), why=why)]
        if d.figure == "max_copied_run" and t.max_copied_run is not None:
            return [A.TightenCopying(to=max(2, min(self.spec.text_privacy.max_copied_run, t.max_copied_run - 1)),
                                     rounds=min(10, self.spec.text_privacy.max_rounds + 1), why=why)]
        if d.figure == "length_ks" and col.llm.neighbours < 10:
            return [A.MoreFewShot(column=d.column, to=min(10, col.llm.neighbours + 2), why=why)]
        return []

    def _rewrite(self, d: D.InstructionMissed) -> A.Action:
        from synthloop.refine.judge import rewrite_prompt

        col = next(c for c in self.spec.columns if c.name == d.column)
        self._rewrites += 1
        new, refused = rewrite_prompt(self.spec, col, d.evidence, self.llm(), seed=self.spec.seed + 1000 * self._rewrites)
        why = f"judge: {d.summary()}"
        if new is None:
            why += "; every rewrite was refused, the prompt stays"
        return A.RewritePrompt(column=d.column, prompt=new, refused=refused, why=why)

    @staticmethod
    def _examples_inside(data: pd.DataFrame, col: Any, field: str, r: Any, k: int = 6) -> list[dict[str, Any]]:
        fields = col.output_names()
        if not set(fields) <= set(data.columns):
            return []
        x = pd.to_numeric(data[field], errors="coerce")
        ok = x.notna() & (x >= (r.min if r.min is not None else -np.inf)) & (x <= (r.max if r.max is not None else np.inf))
        rows = data.loc[ok, fields].head(k)
        return rows.to_dict("records")
