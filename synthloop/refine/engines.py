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
        self.state: dict[str, Any] = {"model": targets.model, "params": dict(targets.model_params), "plan": {}, "ranges": {},
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
            return data
        return sampler.sample(None if cond is not None else self.n, seed=seed, conditions=cond)

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
        if fid:
            why = "fidelity short: " + "; ".join(d.summary() for d in fid)
            act = self._fidelity_action(why)
            if act is not None:
                acts.append(act)
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
        return MeasureContext(targets=self.targets, categories=self.categories, text_columns=text)

    def generate(self, iteration: int) -> pd.DataFrame:
        from synthloop.generate.runner import PromptedGenerator

        gen = PromptedGenerator(self.spec, backend=self.backend, cache_dir=self.cache_dir)
        res = gen.generate(self.n)
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

    @staticmethod
    def _examples_inside(data: pd.DataFrame, col: Any, field: str, r: Any, k: int = 6) -> list[dict[str, Any]]:
        fields = col.output_names()
        if not set(fields) <= set(data.columns):
            return []
        x = pd.to_numeric(data[field], errors="coerce")
        ok = x.notna() & (x >= (r.min if r.min is not None else -np.inf)) & (x <= (r.max if r.max is not None else np.inf))
        rows = data.loc[ok, fields].head(k)
        return rows.to_dict("records")
