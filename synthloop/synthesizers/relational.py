"""Multi-table and sequential synthesis: a whole database, each table learned by the autoregressive model
with its parent's row as context (the idea of TabularARGN's context tables; our own code).

How a database is learned (`fit(tables, metadata)`):
- every table gets one flat training table, its columns in this order: the *context* (the learned
  columns of its primary parent's row, and that parent's child counts: aggregates of its other
  children), then the table's own learned columns (keys left out: they are regenerated), then the
  context of its other parents (used to pick which parent row a generated row points at), then the
  number of children it has in each child table (`__n.<child>.<fk>`) and, for a sequence child, the
  time its history starts (`__start.<child>`);
- a sequence table (an entity's ordered history) adds, per event, its position, the number of events
  still to come, the time of the previous event, the gap since it and the previous event's values
  (`prev.*`), so each event is drawn given the parent and the event before it; the order column is
  rebuilt as start + running sum of gaps (so it is never out of order; a history that would run past
  the order column's learned range starts earlier instead of being clipped into zero gaps), and a
  column that is a running total of another (a balance) is rebuilt from its first value and signed
  steps, so it stays consistent.
Sampling walks the tables parents first: roots draw `scale x rows` rows; a child draws, for every
synthetic parent row, as many rows as the parent's count column says, conditioned on that row (so
cardinality, including zero children, and parent-child correlations are kept and every foreign key
points at a generated parent). In a whole unconditioned database the drawn counts keep their rank but
take the learned count distribution (a quantile table, ends clipped to the privacy_k-th counts; for a
parent table under 100 rows its sorted counts rounded to two significant digits), so
cardinality holds even where the model is undertrained. The primary parent is the sequence owner, else
the foreign key with no nulls whose child counts vary most across parent rows; other foreign keys are
filled by matching the
generated parent context against the synthetic parent rows (capacitated nearest neighbours), within the
parents' generated counts.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from synthloop.errors import ConditionError, DataError, ModelFileError, SynthloopError
from synthloop.io import atomic_path
from synthloop.schema import ColumnKind, ColumnSchema, TableSchema
from synthloop.schema.metadata import Metadata, MetadataError

FORMAT = "synthloop-relational"
FORMAT_VERSION = 1
MAX_CONTEXT = 24  # parent columns given to a child as context (the first ones)
MAX_MATCH_CONTEXT = 6  # columns of a secondary parent used to choose which parent row a child points at
MIN_PRIMARY_PARENTS = 30  # a primary parent table needs this many referenced rows for counts to be learned
SMALL_ROOT = 1000  # a root table under this many rows is learned by the Gaussian copula (steadier on few rows)
MIN_STEPS = 1500  # small tables train for at least this many optimizer steps (at most MAX_EPOCHS epochs)
MAX_EPOCHS = 400
MIN_QUANTILE_PARENTS = 100  # from this many parent rows (and parents with children) the count marginal is a clipped quantile table
COUNT_DIGITS = 2  # under that, the sorted counts are kept rounded to this many significant digits (shape, not values)
MIN_STEPS_FLOOR = 200  # the least optimizer steps of a tiny table (the floor grows with rows up to min_steps)
STEPS_PER_ROW = 0.25  # a small table's optimizer steps per row (above the floor, up to min_steps): fit time grows with size
_LEARNED = (ColumnKind.NUMERICAL, ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN, ColumnKind.DATETIME)


def _parents_by_counts(parent: pd.DataFrame, count_col: str, k: int, rng: np.random.Generator) -> pd.DataFrame:
    """`k` rows of `parent` drawn in proportion to their learned child counts (uniformly when all are
    zero), each now holding one child: the parents of `k` children drawn on their own."""
    w = np.maximum(np.nan_to_num(pd.to_numeric(parent[count_col], errors="coerce").to_numpy(float)), 0)
    idx = rng.choice(len(parent), size=k, p=w / w.sum() if w.sum() > 0 else None)
    chosen = parent.iloc[idx].reset_index(drop=True).copy()
    chosen[count_col] = 1
    return chosen


def _count_col(child: str, fk: str) -> str:
    return f"__n.{child}.{fk}"


def _start_col(child: str) -> str:
    return f"__start.{child}"


def _num_schema(name: str, x: np.ndarray, decimals: int | None = None) -> ColumnSchema:
    v = np.asarray(x, dtype=float)
    fin = v[np.isfinite(v)]
    from synthloop.schema.inference import decimals_of

    return ColumnSchema(name=name, kind=ColumnKind.NUMERICAL, dtype="float64",
                        missing_share=float(np.isnan(v).mean()) if v.size else 0.0,
                        min=float(fin.min()) if fin.size else 0.0, max=float(fin.max()) if fin.size else 0.0,
                        decimals=decimals if decimals is not None else decimals_of(fin))


def _renamed(col: ColumnSchema, name: str) -> ColumnSchema:
    return col.model_copy(update={"name": name})


def _order_seconds(values: pd.Series, col: ColumnSchema | None) -> np.ndarray:
    """Order column as numbers (datetimes in seconds)."""
    if col is not None and col.kind == ColumnKind.DATETIME:
        from synthloop.schema.inference import naive_utc

        dt = values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(
            values.astype("string"), format=col.datetime_format, errors="coerce", utc=bool(
                col.datetime_format and "%z" in col.datetime_format))
        dt = naive_utc(dt)
        out = dt.astype("datetime64[ns]").astype("int64").to_numpy().astype(float) / 1e9
        out[dt.isna().to_numpy()] = np.nan
        return out
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def _running_totals(df: pd.DataFrame, key: str, own: list[ColumnSchema]) -> dict[str, tuple[str, str | None]]:
    """{balance column: (step column, sign column or None)} for numeric columns that are running totals
    of another: within each entity, c[t] - c[t-1] = +-a[t] on at least 95% of steps."""
    nums = [c.name for c in own if c.kind == ColumnKind.NUMERICAL]
    cats = [c.name for c in own if c.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)]
    if len(nums) < 2:
        return {}
    same = (df[key].to_numpy()[1:] == df[key].to_numpy()[:-1])
    if same.sum() < 20:
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for c in nums:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        d = (v[1:] - v[:-1])[same]
        for a in nums:
            if a == c or a in out:
                continue
            step = np.abs(pd.to_numeric(df[a], errors="coerce").to_numpy(float)[1:][same])
            tol = 0.01 + 1e-9 * np.abs(step)
            if np.nanmean(np.abs(np.abs(d) - step) <= tol) >= 0.95:
                out[c] = (a, None)
                break
    return out


class _Plan:
    """What one table's model sees: column names per role, the primary relation, derived columns."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RelationalSynthesizer:
    """A database synthesizer: `fit(tables, metadata)`, `sample(scale, seed)`, `sample_for(...)`, `save`,
    `load`. Each table's model is an `AutoregressiveSynthesizer` (its parameters: `epochs`, `hidden`,
    `privacy_k`, ...; small tables train for at least min(`min_steps`, their rows) optimizer steps), or for a root table
    under `SMALL_ROOT` rows a Gaussian copula; `max_seconds` bounds the whole fit, shared by size.
    `calibrate` (default on): a whole unconditioned sample gives each table's own columns their learned,
    privacy-guarded marginal (see `_marginals`, `_calibrate`). Composite keys are learned on surrogate
    keys (`Metadata.surrogate`) and written back as columns when sampling."""

    def __init__(self, epochs: int = 24, max_seconds: float | None = None, hidden: int = 128, n_bins: int = 64,
                 privacy_k: int = 5, batch_size: int = 512, fixed_order_share: float = 0.8,
                 random_state: int | None = 0, verbose: bool = False, n_threads: int | None = None,
                 min_steps: int = MIN_STEPS, calibrate: bool = True):
        self.epochs = epochs
        self.max_seconds = max_seconds
        self.hidden = hidden
        self.n_bins = n_bins
        self.privacy_k = privacy_k
        self.batch_size = batch_size
        self.fixed_order_share = fixed_order_share
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.min_steps = min_steps
        self.calibrate = calibrate

    def get_params(self) -> dict[str, Any]:
        import inspect

        return {p: getattr(self, p) for p in inspect.signature(type(self).__init__).parameters if p != "self"}

    def _model(self, seed: int, max_seconds: float | None, n_rows: int = 0, root: bool = False):
        from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer

        if root and n_rows < SMALL_ROOT:
            from synthloop.synthesizers.copula import GaussianCopulaSynthesizer

            return GaussianCopulaSynthesizer(random_state=seed, privacy_k=self.privacy_k)
        batches = max(1, math.ceil(n_rows * 0.9 / self.batch_size))
        # the floor of optimizer steps grows with the rows (a 200-row table needs far fewer than 4,000)
        steps = min(self.min_steps, max(MIN_STEPS_FLOOR, int(n_rows * STEPS_PER_ROW)))
        epochs = min(max(self.epochs, math.ceil(steps / batches)), max(self.epochs, MAX_EPOCHS))
        return AutoregressiveSynthesizer(epochs=epochs, max_seconds=max_seconds, hidden=self.hidden,
                                         n_bins=self.n_bins, privacy_k=self.privacy_k, batch_size=self.batch_size,
                                         fixed_order_share=self.fixed_order_share, random_state=seed,
                                         n_threads=self.n_threads)

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, tables: Mapping[str, pd.DataFrame], metadata: Metadata) -> "RelationalSynthesizer":
        """Learn every table of `tables` ({name: DataFrame}) as `metadata` links them."""
        start = time.monotonic()
        if not isinstance(metadata, Metadata):
            raise MetadataError("fit(tables, metadata): metadata must be a synthloop Metadata (see Metadata.load)")
        tables = {k: v for k, v in tables.items()}
        for name, df in tables.items():
            if not isinstance(df, pd.DataFrame):
                raise DataError(f"table '{name}': expected a pandas DataFrame, got {type(df).__name__}")
        metadata.validate(tables)
        tables = metadata.orphans_to_null(tables)
        # composite keys: learned on single-column surrogate keys, turned back after sampling (_finish)
        self.user_metadata_ = metadata
        self.columns_ = {t: [str(c) for c in tables[t].columns] for t in metadata.tables}
        tables = metadata.to_surrogate(tables)
        metadata = metadata.surrogate()
        self.metadata_ = metadata
        self.order_ = metadata.order()
        self.schemas_ = {t: metadata.table_schema(t, tables[t]) for t in self.order_}
        self.n_rows_ = {t: len(tables[t]) for t in self.order_}
        self.plans_: dict[str, _Plan] = {}
        flats: dict[str, pd.DataFrame] = {}
        # derived per-parent columns (counts, starts) first: children read them as context
        derived: dict[str, dict[str, np.ndarray]] = {t: {} for t in self.order_}
        for r in metadata.relationships:
            pk = tables[r.parent][r.parent_key]
            counts = tables[r.child][r.child_key].value_counts(dropna=True)
            derived[r.parent][_count_col(r.child, r.child_key)] = pk.map(counts).fillna(0).to_numpy(float)
            ct = metadata.tables[r.child]
            if ct.sequence_key == r.child_key:
                ocol = self.schemas_[r.child][ct.order_by]
                secs = _order_seconds(tables[r.child][ct.order_by], ocol)
                first = pd.Series(secs).groupby(tables[r.child][r.child_key].to_numpy()).min()
                derived[r.parent][_start_col(r.child)] = pk.map(first).to_numpy(float)
        for t in self.order_:
            self.plans_[t], flats[t] = self._flatten(t, tables, derived)
        # time shares grow with the square root of a table's cells: small tables (whose child counts set
        # every child table's size) are not starved by a large sequence table
        cells = {t: math.sqrt(max(flats[t].shape[0] * max(flats[t].shape[1], 1), 1)) for t in self.order_}
        total = sum(cells.values())
        self.models_: dict[str, Any] = {}
        self.fit_seconds_: dict[str, float] = {}
        seed = 0 if self.random_state is None else int(self.random_state)
        for i, t in enumerate(self.order_):
            budget = None
            if self.max_seconds:
                left = self.max_seconds - (time.monotonic() - start)
                budget = max(10.0, left * cells[t] / max(sum(cells[u] for u in self.order_[i:]), 1))
            t0 = time.monotonic()
            flat = flats[t]
            if flat.shape[1] == 0:
                self.models_[t] = None
                continue
            model = self._model(seed + 7919 * i, budget, len(flat), self.plans_[t].primary is None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(flat, self.plans_[t].schema)
            self.models_[t] = model
            self.fit_seconds_[t] = time.monotonic() - t0
            if self.verbose:
                print(f"fitted {t}: {flat.shape[0]:,} x {flat.shape[1]} in {self.fit_seconds_[t]:.1f} s")
        self.total_cells_ = total
        self._rng = np.random.default_rng(self.random_state)
        return self

    def _primary(self, t: str, tables: Mapping[str, pd.DataFrame]) -> Any:
        meta = self.metadata_
        parents = meta.parents_of(t)
        seq = meta.tables[t].sequence_key
        if seq is not None:
            return next(r for r in parents if r.child_key == seq)
        best, best_key = None, None
        for r in parents:  # the complete foreign key whose child counts vary most (most to learn), then most parents
            fk = tables[t][r.child_key]
            if fk.isna().any() or fk.nunique() < MIN_PRIMARY_PARENTS:
                continue
            counts = tables[r.parent][r.parent_key].map(fk.value_counts()).fillna(0).to_numpy(float)
            key = (round(float(counts.std()), 6), fk.nunique())
            if best_key is None or key > best_key:
                best, best_key = r, key
        return best

    def _flatten(self, t: str, tables: Mapping[str, pd.DataFrame], derived: dict[str, dict[str, np.ndarray]]) -> tuple[_Plan, pd.DataFrame]:
        meta = self.metadata_
        df = tables[t].reset_index(drop=True)
        schema = self.schemas_[t]
        keys = set(meta.key_columns(t))
        tm = meta.tables[t]
        primary = self._primary(t, tables)
        own = [c for c in schema.columns if c.name not in keys and c.name != tm.order_by]
        seq = tm.sequence_key is not None
        cols: dict[str, np.ndarray | pd.Series] = {}
        specs: list[ColumnSchema] = []
        ctx_names: list[str] = []
        ctx_src: list[str] = []
        if seq:  # events in order within each entity
            ocol = schema[tm.order_by]
            secs = _order_seconds(df[tm.order_by], ocol)
            sort_keys = [tm.sequence_key, "__secs"] + ([tm.primary_key] if tm.primary_key else [])
            df = df.assign(__secs=secs).sort_values(sort_keys, kind="stable").reset_index(drop=True)
        if primary is not None:
            pdf = tables[primary.parent]
            pos = pd.Index(pdf[primary.parent_key]).get_indexer(df[primary.child_key])
            pplan = self.plans_[primary.parent]
            src = [c for c in pplan.own + pplan.derived][:MAX_CONTEXT]
            pschema = pplan.schema
            pflat = self._parent_values(primary.parent, tables, derived)
            for name in src:
                cname = f"ctx.{name}"
                cols[cname] = pflat[name].to_numpy()[pos] if isinstance(pflat[name], pd.Series) else pflat[name][pos]
                specs.append(_renamed(pschema[name], cname))
                ctx_names.append(cname)
                ctx_src.append(name)
        lag_names: list[str] = []
        running: dict[str, tuple[str, str | None]] = {}
        if seq:
            ent = df[tm.sequence_key].to_numpy()
            new = np.r_[True, ent[1:] != ent[:-1]]
            grp = np.cumsum(new) - 1
            first_idx = np.flatnonzero(new)
            posn = np.arange(len(df)) - first_idx[grp]
            cols["__pos"] = posn.astype(float)
            specs.append(_num_schema("__pos", posn, 0))
            secs = df["__secs"].to_numpy(float)
            gap_unit = _time_unit(secs)
            # how many events are still to come and when the previous one was (the first event: the start):
            # a history that must fit many events into the time left draws short gaps, as real ones do
            # where the data ends at a fixed date
            left = np.bincount(grp)[grp] - posn - 1
            cols["__left"] = left.astype(float)
            specs.append(_num_schema("__left", left, 0))
            now = np.r_[secs[:1], secs[:-1]]
            now[new] = secs[new]
            now = now / gap_unit
            cols["__now"] = now
            specs.append(_num_schema("__now", now))
            # in the order column's own unit (days for dates); the first event's gap is 0, not missing: a
            # missing token drawn mid-history would read as "first event" to the next step and feed itself
            gap = np.r_[0.0, np.diff(secs)] / gap_unit
            gap[new] = 0.0
            running = _running_totals(df, tm.sequence_key, own)
            prev_src = [c for c in own if c.kind in _LEARNED]
            for c in prev_src:
                v = df[c.name]
                lag = v.shift(1)
                lag[new] = None if lag.dtype == object else np.nan
                cols[f"prev.{c.name}"] = lag.to_numpy()
                specs.append(_renamed(c, f"prev.{c.name}").model_copy(update={"missing_share": max(c.missing_share, 1e-9)}))
                lag_names.append(f"prev.{c.name}")
            pg = np.r_[0.0, gap[:-1]]
            pg[new] = 0.0
            cols["prev.__gap"] = pg
            specs.append(_num_schema("prev.__gap", pg))
            lag_names.append("prev.__gap")
            cols["__gap"] = gap
            specs.append(_num_schema("__gap", gap))
            for c, (a, _) in running.items():  # the step's sign: +1, -1 (0 on the first event)
                v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
                d = np.r_[0.0, np.diff(v)]
                sign = np.where(new, "first", np.where(d >= 0, "+", "-")).astype(object)
                cols[f"__sign.{c}"] = sign
                specs.append(ColumnSchema(name=f"__sign.{c}", kind=ColumnKind.CATEGORICAL, dtype="object",
                                          categories=sorted(set(sign))))
        own_names = []
        for c in own:
            cols[c.name] = df[c.name].to_numpy()
            specs.append(c)
            own_names.append(c.name)
        # secondary parents: whether the key is set, and that parent's context (for matching)
        secondary = [r for r in meta.parents_of(t) if primary is None or r.child_key != primary.child_key]
        sec_names: dict[str, list[str]] = {}
        for r in secondary:
            fk = df[r.child_key]
            names = []
            if fk.isna().any():
                cols[f"__has.{r.child_key}"] = fk.notna().to_numpy()
                specs.append(ColumnSchema(name=f"__has.{r.child_key}", kind=ColumnKind.BOOLEAN, dtype="bool",
                                          categories=[True, False]))
            pplan = self.plans_[r.parent]
            pos = pd.Index(tables[r.parent][r.parent_key]).get_indexer(fk)
            pvals = self._parent_values(r.parent, tables, derived)
            for name in pplan.own[:MAX_MATCH_CONTEXT]:
                col = pplan.schema[name]
                v = pvals[name]
                v = v.to_numpy() if isinstance(v, pd.Series) else v
                if col.kind not in (ColumnKind.NUMERICAL, ColumnKind.DATETIME, ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                    continue
                vals = pd.Series(v).take(np.maximum(pos, 0)).to_numpy()
                vals = pd.Series(vals, dtype=object if vals.dtype == object else None).where(pos >= 0).to_numpy()
                cname = f"sec.{r.child_key}.{name}"
                cols[cname] = vals
                specs.append(_renamed(col, cname).model_copy(update={"missing_share": max(col.missing_share, float((pos < 0).mean()))}))
                names.append(cname)
            sec_names[r.child_key] = names
        derived_names = list(derived[t])
        if seq:  # a sequence's own derived columns live on its events' first row only: not supported
            derived_names = []
        count_q: dict[str, list[float]] = {}
        for name in derived_names:
            cols[name] = derived[t][name]
            specs.append(_num_schema(name, derived[t][name], 0 if name.startswith("__n.") else None))
            if name.startswith("__n."):  # few parents: coarsened counts, since clipping k of ~16 erases the shape
                # quantiles clipped at the k-th counts need many parents *with* children: 3 of 1,458 airports
                # holding all weather rows would be clipped to zeros, so there the coarsened counts are kept
                many = int((np.asarray(derived[t][name]) > 0).sum()) >= MIN_QUANTILE_PARENTS
                count_q[name] = (_count_quantiles(derived[t][name], self.privacy_k) if len(df) >= MIN_QUANTILE_PARENTS
                                 and many else _coarse_counts(derived[t][name]))
        marg_q, marg_cat = self._marginals(df, own, running, seq) if self.calibrate else ({}, {})
        flat = pd.DataFrame(cols)
        for s in specs:  # categorical specs must list the categories their values take
            if s.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                vals = pd.Series(flat[s.name]).dropna()
                cats = list(s.categories or [])
                extra = [v for v in pd.unique(vals.to_numpy()) if v not in set(cats)]
                if extra:
                    s.categories = cats + [v.item() if isinstance(v, np.generic) else v for v in extra]
                s.missing_share = float(pd.Series(flat[s.name]).isna().mean())
        plan = _Plan(table=t, primary=primary.model_dump() if primary is not None else None, ctx=ctx_names,
                     gap_unit=float(gap_unit) if seq else 1.0,
                     ctx_src=ctx_src, own=own_names, lags=lag_names, sequence=seq, running={k: list(v) for k, v in running.items()},
                     secondary={r.child_key: r.model_dump() for r in secondary}, sec_ctx=sec_names,
                     derived=derived_names, order_by=tm.order_by if seq else None, count_q=count_q,
                     marg_q=marg_q, marg_cat=marg_cat,
                     schema=TableSchema(columns=specs))
        return plan, flat

    def _marginals(self, df: pd.DataFrame, own: list[ColumnSchema], running: dict[str, Any],
                   seq: bool) -> tuple[dict[str, list[float]], dict[str, list[list[Any]]]]:
        """The learned marginal of each own column, for `calibrate`: numbers and dates as quantiles of the
        midpoints between neighbouring sorted values (ends clipped at the privacy_k-th values: no outlier,
        and cuts between values rather than values), categories as shares of those held by at least
        privacy_k rows (rarer ones pooled as the model's rare label). A running total and its steps are
        left alone (they must stay consistent)."""
        skip = set(running) | {a for a, _ in running.values()}
        q: dict[str, list[float]] = {}
        cat: dict[str, list[list[Any]]] = {}
        k = self.privacy_k
        for c in own:
            if c.name in skip:
                continue
            if c.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
                v = _order_seconds(df[c.name], c)
                v = np.sort(v[np.isfinite(v)])
                if v.size < max(2 * k, 4):
                    continue
                q[c.name] = _midpoint_quantiles(v, k)
            elif c.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                v = df[c.name].dropna()
                if v.empty:
                    continue
                vc = v.value_counts()
                common = vc[vc >= max(k, 1)] if k > 0 else vc
                rare = int(vc.sum() - common.sum())
                pairs = [[_json_value(x), int(n)] for x, n in common.items()]
                if rare:
                    pairs.append([_json_value(getattr(self, "rare_label", "other")), rare])
                tot = float(sum(n for _, n in pairs))
                cat[c.name] = [[x, n / tot] for x, n in pairs]
        return q, cat

    def _parent_values(self, parent: str, tables: Mapping[str, pd.DataFrame], derived: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
        df = tables[parent]
        out: dict[str, Any] = {c: df[c] for c in df.columns}
        out.update(derived[parent])
        return out

    # -- sample ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise DataError("this RelationalSynthesizer is not fitted yet: call fit(tables, metadata) first")

    def sample(self, scale: float = 1.0, seed: int | None = None,
               conditions: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, pd.DataFrame]:
        """A synthetic database: root tables get `scale x` their training rows, children follow their parents.

        `conditions`: {table: {column: value or (low, high) or [values]}}: rows of that table keep only
        those values (rows of a root table are drawn conditioned; a child table's rows are drawn, the
        ones that miss are dropped with their descendants) and a parent row is kept only if... see
        `_apply_conditions`. Same model, seed and arguments give the same database."""
        self._check_fitted()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (0 < scale <= 1000):
            raise ConditionError(f"scale={scale!r}: a positive number (1.0 = as many rows as the training data)")
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        conditions = self._check_conditions(conditions)
        out: dict[str, pd.DataFrame] = {}
        for t in self.order_:
            out[t] = self._sample_table(t, out, rng, scale, conditions.get(t), fix_counts=not conditions)
        return self._finish(out)

    def sample_for(self, table: str, rows: pd.DataFrame, seed: int | None = None) -> dict[str, pd.DataFrame]:
        """The descendants (children, their histories, ...) of the given rows of `table`: synthetic or
        user-written entities. Columns of `rows` missing from the table are an error; its child counts
        and sequence starts are drawn given its columns unless `rows` gives them."""
        self._check_fitted()
        if table not in self.models_:
            raise ConditionError(f"no table '{table}'; tables: {', '.join(self.order_)}")
        if not isinstance(rows, pd.DataFrame) or rows.empty:
            raise ConditionError("sample_for: rows must be a non-empty DataFrame of the table's columns")
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        plan = self.plans_[table]
        unknown = [c for c in rows.columns if c not in self.schemas_[table] and c not in plan.derived]
        if unknown:
            raise ConditionError(f"sample_for: table '{table}' has no column '{unknown[0]}'")
        rows = rows.reset_index(drop=True).copy()
        pk = self.metadata_.tables[table].primary_key
        if pk is not None and pk not in rows.columns:
            rows[pk] = self._new_ids(table, len(rows), rng)
        missing = [d for d in plan.derived if d not in rows.columns]
        model = self.models_[table]
        if missing and model is not None:  # draw the counts given the entity's columns (and parent context if given)
            known = rows[[c for c in plan.own if c in rows.columns]]
            drawn = self._draw(model, plan, known, len(rows), rng)
            for d in missing:
                rows[d] = drawn[d].to_numpy()
        out: dict[str, pd.DataFrame] = {table: rows}
        below = self._descendants(table)
        for t in self.order_:
            if t in below:
                out[t] = self._sample_table(t, out, rng, 1.0, None, only_primary=True)
        return self._finish(out)

    def sample_rows(self, table: str, n: int, conditions: Mapping[str, Mapping[str, Any]] | None = None,
                    seed: int | None = None) -> dict[str, pd.DataFrame]:
        """`n` new rows of `table` with everything that belongs to them: a fresh draw of their ancestors
        (each new row's parent is drawn by the parents' learned child counts), all their descendants,
        and new rows of the other tables their descendants point at (e.g. a disposition's client).

        `conditions` as in `sample`, on `table` or on its descendants; a condition on a descendant
        table also makes every new row have at least one child there. E.g. 500 extra accounts with a
        bad loan: `sample_rows("account", 500, {"loan": {"status": ["B", "D"]}})`."""
        self._check_fitted()
        if table not in self.plans_:
            raise ConditionError(f"no table '{table}'; tables: {', '.join(self.order_)}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= 10_000_000:
            raise ConditionError(f"n={n!r}: a number of rows from 1 to 10,000,000")
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        conditions = self._check_conditions(conditions)
        below = self._descendants(table)
        bad = [t for t in conditions if t != table and t not in below]
        if bad:
            raise ConditionError(f"sample_rows('{table}'): table '{bad[0]}' is not below '{table}'; condition it "
                                 f"directly or start from one of its ancestors")
        plan = self.plans_[table]
        cond = dict(conditions.get(table, {}))
        at_least_one = []
        for r in self.metadata_.children_of(table):
            if r.child in conditions and r.child in below:
                at_least_one.append(_count_col(r.child, r.child_key))
        out: dict[str, pd.DataFrame] = {}
        chain, t = [], table
        while self.plans_[t].primary is not None:
            t = self.plans_[t].primary["parent"]
            chain.append(t)
        for a in reversed(chain):
            out[a] = self._sample_table(a, out, rng, 1.0, None, only_primary=True)
        if plan.primary is not None:
            chosen = _parents_by_counts(out[plan.primary["parent"]], _count_col(table, plan.primary["child_key"]), n, rng)
            df = self._sample_table(table, {**out, plan.primary["parent"]: chosen}, rng, 1.0, cond or None,
                                    only_primary=True)
        else:
            df = self._sample_table(table, out, rng, n / max(self.n_rows_[table], 1), cond or None, only_primary=True)
        for c in at_least_one:
            df[c] = np.maximum(np.nan_to_num(pd.to_numeric(df[c], errors="coerce").to_numpy(float)), 1)
        out[table] = df
        for t in self.order_:
            if t in below:
                out[t] = self._sample_table(t, out, rng, 1.0, conditions.get(t), new_parents=True)
        return self._finish(out)

    def _new_parent_rows(self, rel: dict[str, Any], k: int, out: dict[str, pd.DataFrame],
                         rng: np.random.Generator) -> np.ndarray:
        """Keys of `k` new rows of `rel`'s parent table (one per child row), appended to `out`; their own
        parent is drawn by learned counts when that table is in `out`, else they are drawn as a root."""
        t = rel["parent"]
        plan = self.plans_[t]
        if plan.primary is not None and plan.primary["parent"] in out and len(out[plan.primary["parent"]]):
            chosen = _parents_by_counts(out[plan.primary["parent"]], _count_col(t, plan.primary["child_key"]), k, rng)
            new = self._sample_table(t, {**out, plan.primary["parent"]: chosen}, rng, 1.0, None, only_primary=True)
        else:
            new = self._sample_table(t, {}, rng, k / max(self.n_rows_[t], 1), None, only_primary=True).head(k)
        pk = self.metadata_.tables[t].primary_key
        if t in out and len(out[t]) and pk:  # fresh ids after the ones already drawn
            new[pk] = self._new_ids(t, len(new), rng, start=len(out[t]))
        out[t] = pd.concat([out[t], new], ignore_index=True) if t in out else new
        keys = new[rel["parent_key"]].to_numpy()
        return np.resize(keys, k) if len(keys) else np.full(k, None, dtype=object)

    def _descendants(self, table: str) -> set[str]:
        out: set[str] = set()
        frontier = [table]
        while frontier:
            p = frontier.pop()
            for r in self.metadata_.children_of(p):
                plan = self.plans_[r.child]
                if plan.primary is not None and plan.primary["child_key"] == r.child_key and r.child not in out:
                    out.add(r.child)
                    frontier.append(r.child)
        return out

    def _check_conditions(self, conditions: Any) -> dict[str, dict[str, Any]]:
        if conditions is None:
            return {}
        if not isinstance(conditions, Mapping):
            raise ConditionError("conditions must be {table: {column: value}}")
        out = {}
        for t, cond in conditions.items():
            if t not in self.plans_:
                raise ConditionError(f"condition on unknown table '{t}'; tables: {', '.join(self.order_)}")
            if not isinstance(cond, Mapping):
                raise ConditionError(f"conditions for table '{t}' must be {{column: value}}")
            for c in cond:
                if c not in self.plans_[t].own and c not in self.plans_[t].derived:
                    raise ConditionError(f"condition on table '{t}': no learned column '{c}' (keys cannot be "
                                         f"conditioned); columns: {', '.join(self.plans_[t].own)}")
            out[t] = dict(cond)
        return out

    def _new_ids(self, t: str, n: int, rng: np.random.Generator, start: int = 0) -> np.ndarray:
        from synthloop.transforms.generated import generate_ids

        pk = self.metadata_.tables[t].primary_key
        col = self.schemas_[t][pk]
        return generate_ids(col, n, rng, start=start).to_numpy()

    def _sample_table(self, t: str, out: dict[str, pd.DataFrame], rng: np.random.Generator, scale: float,
                      cond: dict[str, Any] | None, only_primary: bool = False, new_parents: bool = False,
                      fix_counts: bool = False) -> pd.DataFrame:
        """Rows of `t` for the parent rows in `out`. `fix_counts` (a whole unconditioned database): the
        drawn child counts keep their rank order but take the learned marginal of counts (zeros
        included), so cardinality holds even where the model's count draws are off."""
        plan = self.plans_[t]
        model = self.models_[t]
        meta = self.metadata_
        tm = meta.tables[t]
        primary = plan.primary
        if primary is None:
            n = int(round(self.n_rows_[t] * scale))
            ctx = pd.DataFrame(index=range(n))
            parent_ids = None
        else:
            parent = out[primary["parent"]]
            counts = np.nan_to_num(pd.to_numeric(parent[_count_col(t, primary["child_key"])], errors="coerce")
                                   .to_numpy(float), nan=0.0)
            counts = np.maximum(np.round(counts), 0).astype(np.int64)
            rep = np.repeat(np.arange(len(parent)), counts)
            n = int(rep.size)
            ctx = pd.DataFrame({c: parent[s].to_numpy()[rep] if s in parent.columns else np.full(n, np.nan)
                                for c, s in zip(plan.ctx, plan.ctx_src)})
            parent_ids = parent[primary["parent_key"]].to_numpy()[rep]
        if plan.sequence:
            df = self._sample_sequence(t, model, plan, ctx, parent, rep, counts, rng)
        else:
            if cond:
                ctx = self._condition_frame(t, ctx, cond, rng)
            df = self._draw(model, plan, ctx, n, rng) if model is not None else pd.DataFrame(index=range(n))
        df = df.reset_index(drop=True)
        if fix_counts and len(df):
            if self.calibrate:
                df = self._calibrate(t, df, None if plan.sequence else ctx, model, rng)
            for c, q in (getattr(plan, "count_q", None) or {}).items():
                if c in df.columns:
                    df[c] = _to_quantiles(pd.to_numeric(df[c], errors="coerce").to_numpy(float), q, rng)
        if cond:
            keep = self._meets(t, df, cond)
            df, parent_ids = df[keep].reset_index(drop=True), (parent_ids[keep] if parent_ids is not None else None)
        if tm.primary_key:
            df[tm.primary_key] = self._new_ids(t, len(df), rng)
        if primary is not None:
            df[primary["child_key"]] = parent_ids
        for fk, rel in plan.secondary.items():
            if new_parents and rel["parent"] not in out and len(df):
                has = df[f"__has.{fk}"].astype(bool).to_numpy() if f"__has.{fk}" in df.columns else np.ones(len(df), bool)
                keys = np.full(len(df), None, dtype=object)
                keys[has] = self._new_parent_rows(rel, int(has.sum()), out, rng) if has.any() else keys[has]
                df[fk] = keys
                continue
            if only_primary or rel["parent"] not in out:
                df[fk] = None
                continue
            df[fk] = self._match(t, fk, rel, df, out[rel["parent"]], rng)
        order = [c for c in self.schemas_[t].names] + [c for c in plan.derived]
        return df[[c for c in order if c in df.columns]]

    def _calibrate(self, t: str, df: pd.DataFrame, ctx: pd.DataFrame | None, model: Any,
                   rng: np.random.Generator) -> pd.DataFrame:
        """Each own column takes its learned marginal (see `_marginals`). Categories first: the fewest rows
        (drawn at random) move from over- to under-represented categories and are drawn again given
        their new category (and their parent context), so their other columns and child counts follow
        it; a sequence's events are left as drawn. Then numbers and dates take the learned quantiles
        keeping their rank order (so their dependence on other columns and on the parent is kept). A
        model's marginal on a small table is as noisy as a fresh sample; this removes that noise."""
        plan = self.plans_[t]
        if ctx is not None and model is not None:
            for c, pairs in (getattr(plan, "marg_cat", None) or {}).items():
                if c not in df.columns or not pairs:
                    continue
                new = _to_shares(df[c], [p[0] for p in pairs], np.array([p[1] for p in pairs], float), rng)
                old = df[c].to_numpy(dtype=object)
                moved = np.flatnonzero(pd.Series(new).astype(str).to_numpy() != pd.Series(old).astype(str).to_numpy())
                if not moved.size:
                    continue
                known = ctx.iloc[moved].reset_index(drop=True).copy() if ctx.shape[1] else pd.DataFrame(index=range(moved.size))
                known[c] = new[moved]
                try:
                    drawn = self._draw(model, plan, known, moved.size, rng)
                except ConditionError:  # a category the model cannot produce: this column keeps its draws
                    continue
                df = df.copy()
                for col in drawn.columns:
                    if col in df.columns and col not in plan.ctx:
                        vals = drawn[col].to_numpy()
                        if df[col].dtype != object and vals.dtype == object:
                            df[col] = df[col].astype(object)
                        df.iloc[moved, df.columns.get_loc(col)] = vals
                df[c] = np.where(np.isin(np.arange(len(df)), moved), new, df[c].to_numpy(dtype=object))
        for c, q in (getattr(plan, "marg_q", None) or {}).items():
            if c not in df.columns or not q:
                continue
            col = self.schemas_[t][c]
            x = _order_seconds(df[c], col)
            ok = np.isfinite(x)
            if not ok.any():
                continue
            x[ok] = _to_quantiles(x[ok], q, rng)
            if col.kind == ColumnKind.DATETIME:
                df[c] = _seconds_to(col, x).to_numpy()
            else:
                dec = col.decimals
                df[c] = np.round(x, dec if dec is not None else 6)
        return df

    def _condition_frame(self, t: str, ctx: pd.DataFrame, cond: dict[str, Any], rng: np.random.Generator) -> pd.DataFrame:
        """Context plus per-row values for the conditioned columns (lists: drawn uniformly among them)."""
        ctx = ctx.copy()
        n = len(ctx)
        for c, v in cond.items():
            if isinstance(v, list):
                ctx[c] = np.asarray(v, dtype=object)[rng.integers(len(v), size=n)] if n else []
            elif isinstance(v, tuple):
                lo, hi = v
                ctx[c] = rng.uniform(float(lo), float(hi), size=n)
            else:
                ctx[c] = [v] * n
        return ctx

    def _meets(self, t: str, df: pd.DataFrame, cond: dict[str, Any]) -> np.ndarray:
        ok = np.ones(len(df), bool)
        for c, v in cond.items():
            x = df[c]
            if isinstance(v, list):
                ok &= x.isin(v).to_numpy()
            elif isinstance(v, tuple):
                xv = pd.to_numeric(x, errors="coerce")
                ok &= ((xv >= v[0]) & (xv <= v[1])).to_numpy()
            else:
                ok &= (x == v).to_numpy() | (x.astype(str) == str(v)).to_numpy()
        return ok

    def _draw(self, model: Any, plan: _Plan, known: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """`n` rows of the flat model with the columns of `known` fixed (exact tokens), the rest drawn."""
        if n == 0:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in model.schema_.names})
        from synthloop.synthesizers import _ctxsample
        from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer

        if not isinstance(model, AutoregressiveSynthesizer):  # a small root table's copula: its own conditioning
            seed = int(rng.integers(2**31))
            if known.shape[1] == 0:
                return model.sample(n, seed=seed)
            return model.sample(seed=seed, conditions=known.reset_index(drop=True))
        return _ctxsample.sample_given(model, known, n, rng)

    def _sample_sequence(self, t: str, model: Any, plan: _Plan, ctx: pd.DataFrame, parent: pd.DataFrame,
                         rep: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        """Events step by step: every entity with more than k events draws event k given its parent and
        event k-1 (vectorized over entities; the loop runs over positions)."""
        from synthloop.synthesizers import _ctxsample

        n = int(counts.sum())
        tm = self.metadata_.tables[t]
        first = np.r_[0, np.cumsum(counts)[:-1]]  # row of each entity's first event
        pos = np.arange(n) - np.repeat(first, counts)
        result: dict[str, np.ndarray] = {}
        names = model.schema_.names
        max_len = int(counts.max()) if n else 0
        unit = float(getattr(plan, "gap_unit", 1.0))
        start_ent = pd.to_numeric(parent[_start_col(t)], errors="coerce").to_numpy(float) if n else np.zeros(0)
        if unit > 1:
            start_ent = np.round(start_ent / unit) * unit
        start_ent = np.nan_to_num(start_ent, nan=float(np.nanmedian(start_ent)) if np.isfinite(start_ent).any() else 0.0)
        ent = np.repeat(np.arange(len(counts)), counts)
        now_ent = start_ent.copy()  # time of each entity's latest event so far
        timed = {"__now", "__left"} <= set(names)
        prev: pd.DataFrame | None = None
        prev_rows = np.zeros(0, np.int64)
        for k in range(max_len):
            rows = np.flatnonzero(pos == k)
            known = ctx.iloc[rows].reset_index(drop=True)
            extra: dict[str, Any] = {"__pos": np.full(rows.size, float(k))}
            e = ent[rows]
            if timed:
                extra["__left"] = (counts[e] - k - 1).astype(float)
                extra["__now"] = now_ent[e] / unit
            if k == 0:
                for lag in plan.lags:
                    extra[lag] = np.full(rows.size, 0.0 if lag == "prev.__gap" else np.nan)
            else:  # the previous event of row r is row r - 1 (same entity, since k >= 1)
                idx = np.searchsorted(prev_rows, rows - 1)
                for lag in plan.lags:
                    extra[lag] = prev[lag[5:]].to_numpy()[idx]
                if "prev.__gap" in extra:  # the gap as it is used (rounded to the unit, never negative)
                    extra["prev.__gap"] = _clean_gap(extra["prev.__gap"], plan)
            known = pd.concat([known, pd.DataFrame(extra)], axis=1)
            drawn = _ctxsample.sample_given(model, known, len(rows), rng)
            if k > 0:
                now_ent[e] += _clean_gap(drawn["__gap"].to_numpy(float), plan) * unit
            for c, (a, _) in plan.running.items():  # a running total continues from the previous one
                if k == 0:
                    continue
                step = np.abs(np.nan_to_num(pd.to_numeric(drawn[a], errors="coerce").to_numpy(float)))
                sign = np.where(drawn[f"__sign.{c}"].to_numpy(dtype=object) == "-", -1.0, 1.0)
                before = pd.to_numeric(prev[c], errors="coerce").to_numpy(float)[idx]
                dec = self.schemas_[t][c].decimals
                drawn[c] = np.round(before + sign * step, dec if dec is not None else 6)
            for c in names:
                if c not in result:
                    result[c] = np.empty(n, dtype=object)
                result[c][rows] = drawn[c].to_numpy(dtype=object)
            prev, prev_rows = drawn, rows
        df = pd.DataFrame({c: result.get(c, np.empty(0, dtype=object)) for c in names})
        for c in names:
            col = model.schema_[c]
            if col.kind == ColumnKind.NUMERICAL:
                df[c] = pd.to_numeric(df[c], errors="coerce")
        # order column: start + running sum of gaps; running totals from first value and signed steps
        gap = _clean_gap(df["__gap"].to_numpy(float), plan) * unit if n else np.zeros(0)
        gap[pos == 0] = 0.0
        ocol = self.schemas_[t][tm.order_by]
        start_ent, gap = _fit_window(start_ent, gap, ent, len(counts), ocol.min, ocol.max, unit)
        secs = start_ent[ent] + pd.Series(gap).groupby(ent).cumsum().to_numpy() if n else np.zeros(0)
        df[tm.order_by] = _seconds_to(ocol, secs)
        return df

    def _match(self, t: str, fk: str, rel: dict[str, Any], df: pd.DataFrame, parent: pd.DataFrame,
               rng: np.random.Generator) -> np.ndarray:
        """Parent keys for a secondary foreign key: child rows are paired with the parents' generated
        count slots (or, without counts, with the parent rows) whose context is most alike, by rank
        along the main direction of the context (a 1-D optimal matching)."""
        plan = self.plans_[t]
        n = len(df)
        keys = parent[rel["parent_key"]].to_numpy()
        out = np.full(n, None, dtype=object)
        has = df[f"__has.{fk}"].astype(bool).to_numpy() if f"__has.{fk}" in df.columns else np.ones(n, bool)
        rows = np.flatnonzero(has)
        if rows.size == 0 or len(parent) == 0:
            return _key_array(out, keys)
        cc = _count_col(t, fk)
        counts = None
        if cc in parent.columns:
            counts = np.maximum(np.round(np.nan_to_num(pd.to_numeric(parent[cc], errors="coerce").to_numpy(float))), 0)
            if not 0.5 * rows.size <= counts.sum() <= 2.0 * rows.size:
                counts = None  # the parent's counts were not learned (too few parents with children): match by context
        names = plan.sec_ctx.get(fk, [])
        src = [c.split(".", 2)[2] for c in names]
        feats = _features(df.iloc[rows], names, parent, src, self.plans_[rel["parent"]].schema) if names else None
        if counts is None:
            if feats is None:
                out[rows] = keys[rng.integers(len(parent), size=rows.size)]
                return _key_array(out, keys)
            from sklearn.neighbors import NearestNeighbors

            xa, xb = feats
            xb = xb + rng.normal(0, 1e-6, xb.shape)  # ties (identical parents) are broken at random
            nn = NearestNeighbors(n_neighbors=1).fit(xb)
            out[rows] = keys[nn.kneighbors(xa, return_distance=False)[:, 0]]
            return _key_array(out, keys)
        slots = np.repeat(np.arange(len(parent)), counts.astype(np.int64))
        if slots.size > rows.size:
            slots = rng.choice(slots, size=rows.size, replace=False)
        elif slots.size < rows.size:
            extra = rng.choice(len(parent), size=rows.size - slots.size, p=counts / counts.sum())
            slots = np.r_[slots, extra]
        if feats is not None:
            xa, xb = feats
            cap = np.bincount(slots, minlength=len(parent))
            out[rows] = keys[_capacitated_nearest(xa, xb, cap, rng)]
            return _key_array(out, keys)
        out[rows] = keys[rng.permutation(slots)]
        return _key_array(out, keys)

    def _finish(self, out: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """Tables in the metadata's order with only their own columns (derived ones dropped)."""
        res = {}
        for t in self.metadata_.tables:
            if t in out:
                df = out[t]
                res[t] = df[[c for c in self.schemas_[t].names if c in df.columns]].reset_index(drop=True)
        user = getattr(self, "user_metadata_", self.metadata_)
        if user is not self.metadata_:  # composite keys: their columns from the surrogate keys, made unique
            res = user.from_surrogate(res, getattr(self, "columns_", None))
        return res

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One `.npz` file: every table's model arrays plus a JSON header (metadata, plans, schemas)."""
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {}
        parts = {}
        for i, t in enumerate(self.order_):
            m = self.models_[t]
            plan = self.plans_[t].to_dict()
            plan["schema"] = plan["schema"].to_dict()
            entry = {"plan": plan, "schema": self.schemas_[t].to_dict(), "n_rows": self.n_rows_[t], "model": None}
            if m is not None:
                meta, arr = m._state()
                entry["model"] = {"class": m.name, "schema": m.schema_.to_dict(), "params": {k: v for k, v in m.get_params().items() if k != "schema"},
                                  "n_rows": m.n_rows_, "meta": meta}
                arrays.update({f"t{i}.{k}": v for k, v in arr.items()})
            parts[t] = entry
        header = {"format": FORMAT, "version": FORMAT_VERSION, "params": self.get_params(),
                  "metadata": getattr(self, "user_metadata_", self.metadata_).to_dict(), "order": self.order_, "tables": parts,
                  "columns": getattr(self, "columns_", None)}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, __header__=np.array(json.dumps(header)), **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "RelationalSynthesizer":
        """Load a database model; the file is untrusted input (see synthloop/synthesizers/_modelfile.py):
        every way it can be wrong is one ModelFileError naming the file."""
        p = Path(path)
        try:
            return cls._load(p)
        except ModelFileError as exc:
            msg = " ".join(str(exc).removeprefix("model file: ").splitlines())
            raise ModelFileError(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None
        except SynthloopError as exc:
            raise ModelFileError(f"{p}: {' '.join(str(exc).splitlines())}") from None
        except (RecursionError, MemoryError):
            raise ModelFileError(f"{p}: the model file is damaged or forged") from None
        except Exception as exc:  # defence in depth
            from synthloop.synthesizers._modelfile import describe_exception

            raise ModelFileError(f"{p}: the model file is damaged or does not fit this synthloop version "
                                 f"({describe_exception(exc)}); refit the model") from None

    @classmethod
    def _load(cls, p: Path) -> "RelationalSynthesizer":
        from synthloop.synthesizers._modelfile import (Entries, check_params, check_schema, entries, read_model_file)
        from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer
        from synthloop.synthesizers.copula import GaussianCopulaSynthesizer
        from synthloop.transforms import TableCodec

        text, arrays = read_model_file(p)
        try:
            header = json.loads(text)
        except ValueError:
            raise ModelFileError(f"{p}: model header is not valid JSON; the file is damaged") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            fmt = header.get("format") if isinstance(header, dict) else None
            hint = "; it is a single-table model: use `synthloop sample` with -n" if fmt == "synthloop-model" else ""
            raise ModelFileError(f"{p}: not a synthloop database model{hint}")
        if type(header.get("version")) is not int or header["version"] > FORMAT_VERSION:
            raise ModelFileError(f"{p}: written by a newer synthloop (or damaged): upgrade synthloop")
        h = entries(header, "header")
        params = check_params(p, _ParamsOf(cls), dict(h["params"]))
        obj = cls(**params)
        obj.user_metadata_ = Metadata.from_dict(dict(header["metadata"]), f"{p}: metadata")
        obj.metadata_ = obj.user_metadata_.surrogate()
        cols = header.get("columns")
        if cols is not None and not (isinstance(cols, dict) and all(
                isinstance(v, list) and all(isinstance(c, str) for c in v) for v in cols.values())):
            raise ModelFileError(f"{p}: header 'columns' must map tables to lists of column names")
        obj.columns_ = cols
        order = obj.metadata_.order()
        if list(h["order"]) != order:
            raise ModelFileError(f"{p}: header 'order' does not match the metadata's tables")
        obj.order_ = order
        obj.schemas_, obj.plans_, obj.models_, obj.n_rows_ = {}, {}, {}, {}
        used: set[str] = set()
        for i, t in enumerate(order):
            e = h["tables"][t]
            obj.schemas_[t] = TableSchema.from_dict(dict(header["tables"][t]["schema"]), f"{p}: tables.{t}.schema")
            check_schema(p, obj.schemas_[t])
            n_rows = e["n_rows"]
            if type(n_rows) is not int or not 0 <= n_rows <= 10**9:
                raise ModelFileError(f"{p}: tables.{t}.n_rows must be a row count")
            obj.n_rows_[t] = n_rows
            plan = _check_plan(p, t, header["tables"][t]["plan"], obj)
            obj.plans_[t] = plan
            if e["model"] is None:
                obj.models_[t] = None
                continue
            klass = {"autoregressive": AutoregressiveSynthesizer, "copula": GaussianCopulaSynthesizer}.get(e["model"]["class"])
            if klass is None:
                raise ModelFileError(f"{p}: tables.{t}.model.class must be autoregressive or copula")
            mp = check_params(p, klass, dict(e["model"]["params"]))
            m = klass(**mp)
            m.schema_ = TableSchema.from_dict(dict(header["tables"][t]["model"]["schema"]), f"{p}: tables.{t}.model.schema")
            check_schema(p, m.schema_)
            if m.schema_.names != plan.schema.names:
                raise ModelFileError(f"{p}: tables.{t}.model.schema does not have the plan's columns")
            m.codec_ = TableCodec(m.schema_)
            m.n_rows_ = int(e["model"]["n_rows"]) if type(e["model"]["n_rows"]) is int else 1
            m.constraints_ = []
            m._rng = np.random.default_rng(0)
            pre = f"t{i}."
            sub = {k[len(pre):]: v for k, v in arrays.items() if k.startswith(pre)}
            used |= {pre + k for k in sub}
            m._set_state(entries(header["tables"][t]["model"]["meta"], f"tables.{t}.model.meta"), Entries(sub, "array"))
            m._check_state(p, sub)
            obj.models_[t] = m
        extra = sorted(set(arrays) - used)
        if extra:
            raise ModelFileError(f"{p}: unexpected array {extra[0][:60]!r}")
        obj._rng = np.random.default_rng(obj.random_state)
        return obj


class _ParamsOf:
    """`check_params` wants a class with `_get_param_names` and a typed `__init__`."""

    def __init__(self, klass: type) -> None:
        self.__init__ = klass.__init__  # type: ignore[method-assign]
        self._klass = klass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._klass, name)

    def _get_param_names(self) -> list[str]:
        import inspect

        return [n for n in inspect.signature(self._klass.__init__).parameters if n != "self"]

    @property
    def __name__(self) -> str:  # noqa: A003
        return self._klass.__name__


def _check_plan(p: Path, t: str, data: Any, obj: RelationalSynthesizer) -> _Plan:
    """A plan from the header, checked: its names refer to columns of its flat schema and real tables."""
    from synthloop.synthesizers._modelfile import check_schema

    if not isinstance(data, dict):
        raise ModelFileError(f"{p}: tables.{t}.plan must be an object")
    need = {"table": str, "ctx": list, "ctx_src": list, "own": list, "lags": list, "sequence": bool, "running": dict,
            "secondary": dict, "sec_ctx": dict, "derived": list, "schema": dict}
    for k, typ in need.items():
        if not isinstance(data.get(k), typ):
            raise ModelFileError(f"{p}: tables.{t}.plan.{k} is missing or of the wrong type")
    schema = TableSchema.from_dict(data["schema"], f"{p}: tables.{t}.plan.schema")
    check_schema(p, schema)
    names = set(schema.names)
    for k in ("ctx", "own", "lags", "derived"):
        for c in data[k]:
            if not isinstance(c, str) or c not in names:
                raise ModelFileError(f"{p}: tables.{t}.plan.{k} names {str(c)[:60]!r}, not a column of its model")
    for fk, names_ in data["sec_ctx"].items():
        if not isinstance(names_, list) or any(c not in names for c in names_):
            raise ModelFileError(f"{p}: tables.{t}.plan.sec_ctx.{fk[:40]} names an unknown column")
    rels = {(r.child, r.child_key): r for r in obj.metadata_.relationships}
    prim = data.get("primary")
    if prim is not None and (not isinstance(prim, dict) or (t, prim.get("child_key")) not in rels or
                             rels[(t, prim.get("child_key"))].model_dump() != prim):
        raise ModelFileError(f"{p}: tables.{t}.plan.primary is not a relationship of the metadata")
    for fk, r in data["secondary"].items():
        if (t, fk) not in rels or rels[(t, fk)].model_dump() != r:
            raise ModelFileError(f"{p}: tables.{t}.plan.secondary.{fk[:40]} is not a relationship of the metadata")
    for c, v in data["running"].items():
        if c not in obj.schemas_[t] or not isinstance(v, list) or not v or v[0] not in names or f"__sign.{c}" not in names:
            raise ModelFileError(f"{p}: tables.{t}.plan.running.{c[:40]} is inconsistent")
    if data["sequence"] != (obj.metadata_.tables[t].sequence_key is not None):
        raise ModelFileError(f"{p}: tables.{t}.plan.sequence disagrees with the metadata")
    if data["sequence"] and not {"__pos", "__gap"} <= names:
        raise ModelFileError(f"{p}: tables.{t}.plan: a sequence model needs __pos and __gap")
    if len(data["ctx_src"]) != len(data["ctx"]) or not all(isinstance(c, str) for c in data["ctx_src"]):
        raise ModelFileError(f"{p}: tables.{t}.plan.ctx_src does not match ctx")
    cq = data.get("count_q", {})
    if not isinstance(cq, dict) or any(c not in data["derived"] or not isinstance(v, list) or len(v) > 100_000 or
                                       not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                               for x in v) for c, v in cq.items()):
        raise ModelFileError(f"{p}: tables.{t}.plan.count_q must map count columns to lists of numbers")
    mq = data.get("marg_q", {})
    if not isinstance(mq, dict) or any(c not in data["own"] or not isinstance(v, list) or len(v) > 100_000 or
                                       not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                               for x in v) for c, v in mq.items()):
        raise ModelFileError(f"{p}: tables.{t}.plan.marg_q must map own columns to lists of numbers")
    mc = data.get("marg_cat", {})
    if not isinstance(mc, dict) or any(
            c not in data["own"] or not isinstance(v, list) or len(v) > 100_000 or not all(
                isinstance(e, list) and len(e) == 2 and isinstance(e[0], (str, int, float, bool)) and
                isinstance(e[1], (int, float)) and not isinstance(e[1], bool) and math.isfinite(e[1]) and e[1] >= 0
                for e in v) for c, v in mc.items()):
        raise ModelFileError(f"{p}: tables.{t}.plan.marg_cat must map own columns to [category, share] pairs")
    unit = data.get("gap_unit", 1.0)
    if isinstance(unit, bool) or not isinstance(unit, (int, float)) or not 0 < unit <= 86400:
        raise ModelFileError(f"{p}: tables.{t}.plan.gap_unit must be a number of seconds from 0 to 86400")
    out = dict(data)
    out["schema"] = schema
    out["running"] = {k: list(v) for k, v in data["running"].items()}
    return _Plan(**out)


def _time_unit(secs: np.ndarray) -> float:
    """The coarsest of day, hour, minute, second that every order value is a whole multiple of."""
    v = secs[np.isfinite(secs)]
    for unit in (86400.0, 3600.0, 60.0, 1.0):
        if v.size and np.all(np.abs(v / unit - np.round(v / unit)) < 1e-9):
            return unit
    return 1.0


def _fit_window(start: np.ndarray, gap: np.ndarray, ent: np.ndarray, n_ent: int, lo: float | None,
                hi: float | None, unit: float) -> tuple[np.ndarray, np.ndarray]:
    """Histories kept inside the order column's learned range [lo, hi]: one that would run past `hi`
    starts earlier (its drawn gaps kept), and only if it is longer than the whole range are its gaps
    shrunk. Without this the decoder clips the overrun events onto `hi`: a run of zero gaps."""
    if hi is None or not gap.size:
        return start, gap
    lo = -np.inf if lo is None else float(lo)
    total = np.bincount(ent, weights=gap, minlength=n_ent)
    end = start + total
    new_start = np.where(end > hi, np.maximum(hi - total, lo), start)
    room = hi - new_start
    squeeze = np.where((total > room) & (total > 0), np.maximum(room, 0) / np.maximum(total, 1e-12), 1.0)
    if (squeeze < 1).any():
        g = gap * squeeze[ent]
        gap = np.floor(g / unit) * unit if unit > 1 else g
    return new_start, gap


def _clean_gap(gap: Any, plan: _Plan) -> np.ndarray:
    """Drawn gaps as used: not negative, whole units where the order column has a coarse unit."""
    g = np.maximum(np.nan_to_num(np.asarray(gap, dtype=float), nan=0.0), 0.0)
    return np.round(g) if float(getattr(plan, "gap_unit", 1.0)) > 1 else g


def _count_quantiles(v: np.ndarray, k: int, size: int = 1000) -> list[float]:
    """`size` quantiles of a child-count column (zeros included); the ends clipped to the k-th smallest
    and largest counts, so no single parent's count is stored."""
    v = np.sort(np.asarray(v, dtype=float))
    if v.size == 0:
        return []
    q = np.quantile(v, (np.arange(min(size, v.size)) + 0.5) / min(size, v.size), method="inverted_cdf")
    if k > 0 and v.size > 2 * k:
        q = np.clip(q, v[k - 1], v[-k])
    return [float(x) for x in q]


def _midpoint_quantiles(v: np.ndarray, k: int, size: int = 1000) -> list[float]:
    """Up to `size` quantiles of the midpoints between neighbouring sorted values, clipped to the k-th
    smallest and largest values (see `RelationalSynthesizer._marginals`)."""
    v = np.sort(np.asarray(v, dtype=float))
    mid = np.r_[v[0], (v[:-1] + v[1:]) / 2] if v.size > 1 else v
    m = min(size, mid.size)
    q = np.quantile(mid, (np.arange(m) + 0.5) / m, method="inverted_cdf")
    if k > 0 and v.size > 2 * k:
        q = np.clip(q, v[k - 1], v[-k])
    return [float(x) for x in q]


def _json_value(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _to_shares(values: pd.Series, cats: list[Any], share: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`values` (missing ones kept) with category counts as close to `share` as whole rows allow: every
    category keeps up to its quota of its rows (chosen at random), the other rows take the missing ones."""
    v = values.to_numpy(dtype=object).copy()
    ok = values.notna().to_numpy()
    n = int(ok.sum())
    if n == 0 or share.sum() <= 0:
        return v
    share = share / share.sum()
    want = np.floor(share * n).astype(np.int64)
    rest = n - int(want.sum())
    if rest > 0:
        want[np.argsort(-(share * n - want), kind="stable")[:rest]] += 1
    keys = pd.Index([str(c) for c in cats])
    rows = np.flatnonzero(ok)
    code = keys.get_indexer(pd.Series(v[rows]).astype(str))
    order = rng.permutation(rows.size)
    rank = pd.Series(np.arange(rows.size)).groupby(code[order]).cumcount().to_numpy()
    keep = np.zeros(rows.size, bool)
    inq = code[order] >= 0
    keep[order[inq]] = rank[inq] < want[code[order][inq]]
    have = np.bincount(code[keep], minlength=len(cats))
    fill = np.repeat(np.arange(len(cats)), np.maximum(want - have, 0))
    free = rows[~keep]
    fill = rng.permutation(fill)[:free.size]
    vals = np.asarray(cats, dtype=object)
    v[free[rng.permutation(free.size)[:fill.size]]] = vals[fill]
    return v


def _coarse_counts(v: np.ndarray, digits: int = COUNT_DIGITS) -> list[float]:
    """The child counts of a small parent table (under `MIN_QUANTILE_PARENTS` rows), sorted and rounded to
    `digits` significant digits: a table of 16 carriers has a count distribution that 1,000 quantiles
    clipped at the k-th counts would flatten (cardinality 0.67), while rounding keeps its shape and
    stores no parent's exact count above 10**digits."""
    v = np.sort(np.maximum(np.nan_to_num(np.asarray(v, dtype=float)), 0.0))
    if v.size == 0:
        return []
    mag = np.floor(np.log10(np.maximum(v, 1.0)))
    step = 10.0 ** np.maximum(mag - (digits - 1), 0)
    return [float(x) for x in np.round(v / step) * step]


def _to_quantiles(x: np.ndarray, q: list[float], rng: np.random.Generator) -> np.ndarray:
    """Values with their rank order kept (ties broken at random) and the marginal of the quantile table `q`."""
    x = np.nan_to_num(np.asarray(x, dtype=float), nan=-np.inf)
    n = x.size
    if n == 0 or not q:
        return x
    order = np.lexsort((rng.random(n), x))
    levels = (np.arange(n) + 0.5) / n
    out = np.empty(n)
    out[order] = np.asarray(q)[np.minimum((levels * len(q)).astype(np.int64), len(q) - 1)]
    return out


def _seconds_to(col: ColumnSchema, secs: np.ndarray) -> pd.Series:
    if col.kind == ColumnKind.DATETIME:
        from synthloop.transforms import TableCodec

        return TableCodec(TableSchema(columns=[col])).decode_column(col, secs)
    dec = col.decimals
    return pd.Series(np.round(secs, dec if dec is not None else 6))


def _key_array(out: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Keys with the parent key's dtype where every row has one."""
    if all(v is not None for v in out) and keys.dtype != object:
        return out.astype(keys.dtype)
    return out


def _features(a: pd.DataFrame, a_names: list[str], b: pd.DataFrame, b_names: list[str],
              pschema: TableSchema) -> tuple[np.ndarray, np.ndarray] | None:
    """Numeric features of the child rows' generated parent context (a) and the parent slots (b)."""
    fa, fb = [], []
    for an, bn in zip(a_names, b_names):
        if bn not in b.columns or bn not in pschema:
            continue
        col = pschema[bn]
        if col.kind in (ColumnKind.NUMERICAL, ColumnKind.DATETIME):
            xa = _order_seconds(a[an], col)
            xb = _order_seconds(b[bn], col)
            both = np.r_[xa, xb]
            mu, sd = np.nanmean(both), np.nanstd(both) or 1.0
            fa.append(np.nan_to_num((xa - mu) / sd))
            fb.append(np.nan_to_num((xb - mu) / sd))
        else:
            sa, sb = a[an].astype(str), b[bn].astype(str)
            top = pd.concat([sa, sb]).value_counts().index[:20]
            for v in top:
                fa.append((sa == v).to_numpy(float))
                fb.append((sb == v).to_numpy(float))
    if not fa:
        return None
    return np.column_stack(fa), np.column_stack(fb)


def _capacitated_nearest(xa: np.ndarray, xb: np.ndarray, cap: np.ndarray, rng: np.random.Generator,
                         k: int = 16, rounds: int = 6) -> np.ndarray:
    """For each row of `xa`, a row of `xb` near it, row j of `xb` taken by at most `cap[j]` rows
    (`cap.sum() >= len(xa)`): rounds of proposals to the k nearest parents that still have room, each
    parent keeping its closest proposers; what is left after the rounds goes to the free room at random.
    Keeps the parents' counts and, far better than a 1-D ranking, which parent each child is like."""
    from sklearn.neighbors import NearestNeighbors

    m = xa.shape[0]
    out = np.full(m, -1, np.int64)
    room = cap.astype(np.int64).copy()
    xb = xb + rng.normal(0, 1e-6, xb.shape)  # identical parents: ties broken at random
    todo = rng.permutation(m)
    for _ in range(rounds):
        free = np.flatnonzero(room > 0)
        if todo.size == 0 or free.size == 0:
            break
        nn = NearestNeighbors(n_neighbors=min(k, free.size)).fit(xb[free])
        dist, ind = nn.kneighbors(xa[todo])
        for j in range(ind.shape[1]):
            if todo.size == 0:
                break
            pick = free[ind[:, j]]
            order = np.lexsort((dist[:, j], pick))  # proposals grouped by parent, closest first
            p_sorted = pick[order]
            first = np.r_[0, np.flatnonzero(np.diff(p_sorted)) + 1]
            rank = np.arange(order.size) - np.repeat(first, np.diff(np.r_[first, order.size]))
            ok = np.zeros(order.size, bool)
            ok[order] = rank < room[p_sorted]
            out[todo[ok]] = pick[ok]
            np.subtract.at(room, pick[ok], 1)
            todo, dist, ind = todo[~ok], dist[~ok], ind[~ok]
            ind_ok = room[free[ind]] > 0  # later choices only among parents that still have room
            dist = np.where(ind_ok, dist, np.inf)
    if todo.size:
        left = np.repeat(np.arange(cap.size), np.maximum(room, 0))
        out[todo] = rng.choice(left, size=todo.size, replace=False) if left.size >= todo.size else \
            rng.choice(cap.size, size=todo.size, p=cap / cap.sum())
    return out


def _main_direction(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(axis=0)
    if xc.shape[0] > 20000:
        xc = xc[np.linspace(0, xc.shape[0] - 1, 20000).astype(int)]
    try:
        _, _, vt = np.linalg.svd(xc, full_matrices=False)
        return vt[0]
    except np.linalg.LinAlgError:
        return np.ones(x.shape[1]) / math.sqrt(x.shape[1])


def is_database_model(path: str | Path) -> bool:
    """Whether a model file holds a database model (reads only its header entry)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("__header__.npy")
            if info.file_size > 256 * 1024**2:
                return False
            with zf.open(info) as fh:
                arr = np.lib.format.read_array(fh, allow_pickle=False)
        head = str(arr[()])[:200]
    except Exception:  # noqa: BLE001 - anything unreadable is left to the loader's checks
        return False
    return f'"format": "{FORMAT}"' in head
