"""Attacks on synthetic data: what an attacker can learn, not only how close rows sit.

The distance figures in `privacy.py` say whether synthetic rows sit near real ones; the attacks here
say what someone holding the synthetic table can do with it:

- `anonymeter_risks`: Anonymeter's singling-out, linkability and attribute-inference risks with
  confidence intervals (the attacks the European data-protection bodies' anonymisation criteria
  name). Each risk compares the attack's success on training rows with its success on control rows
  the synthesizer never saw, so 0 means "no better than what the population reveals".
- `domias_attack`: a DOMIAS-style density membership attack (van Breugel et al., 2023): a record is
  flagged as a training member where the synthetic data is denser than real data from the same
  population (a reference sample) at that record. Calibrating by the reference density catches
  overfitting in dense regions that a nearest-distance attack misses.
- `canary_audit`: plant k canary rows with values nobody else has (unique category strings,
  out-of-range extremes), fit the model, sample, and count the canaries or their values that come
  back in the output or sit in the model file, plus the membership advantage on the canaries.

Anonymeter is optional (`pip install 'synthloop[privacy]'` then `pip install --no-deps anonymeter`:
its release pins numpy<1.27 although it runs on numpy 2, see the README); without it the suite reports
why and skips those risks.
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import struct
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from synthloop.errors import DataError, SynthloopError
from synthloop.evaluate._frames import CONTINUOUS, learned_columns, to_numeric
from synthloop.schema import ColumnKind, TableSchema, infer_schema

ANONYMETER_MISSING = (
    "Anonymeter is not installed, so its singling-out, linkability and inference risks were skipped; "
    "install it with: pip install 'synthloop[privacy]' && pip install --no-deps 'anonymeter>=1.1'")
_MISSING = "(missing)"


class AttackUnavailable(SynthloopError):
    """An attack needs a package that is not installed (the message says which and how to install it)."""


def anonymeter_available() -> bool:
    """True when Anonymeter and the packages it needs at run time (numba, polars) import."""
    try:
        import anonymeter.evaluators  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Make Anonymeter 1.1 deterministic for a seed, restoring everything afterwards.

    It draws from NumPy's global generator (pandas `sample`) and polars' own, builds queries from
    polars `group_by` / `unique` results whose order is hash-dependent (so a seeded shuffle still
    gives other queries on each run), and draws its linkability baseline from an unseeded generator.
    """
    import polars as pl
    from anonymeter.evaluators import linkability_evaluator as link

    state = np.random.get_state()
    np.random.seed(seed % 2 ** 32)
    pl.set_random_seed(seed)
    group_by, unique, links = pl.DataFrame.group_by, pl.Series.unique, link._random_links
    rng = np.random.default_rng(seed)

    def ordered_group_by(self: Any, *by: Any, maintain_order: bool = True, **named: Any) -> Any:
        return group_by(self, *by, maintain_order=maintain_order, **named)

    def ordered_unique(self: Any, *, maintain_order: bool = True) -> Any:
        return unique(self, maintain_order=maintain_order)

    def seeded_links(n_synthetic: int, n_attacks: int, n_neighbors: int) -> np.ndarray:
        return np.array([rng.choice(n_synthetic, size=n_neighbors, replace=False) for _ in range(n_attacks)])

    pl.DataFrame.group_by, pl.Series.unique, link._random_links = ordered_group_by, ordered_unique, seeded_links
    try:
        yield
    finally:
        pl.DataFrame.group_by, pl.Series.unique, link._random_links = group_by, unique, links
        np.random.set_state(state)


@contextlib.contextmanager
def _captured_logs(name: str) -> Iterator[list[str]]:
    """Collect what a library logs (warnings and up) instead of letting it print to stderr."""
    import logging

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    notes: list[str] = []
    logger = logging.getLogger(name)
    handler, propagate = Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield notes
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _rows(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most `n` rows of `df` (a seeded subsample, original order), with a fresh 0..n-1 index."""
    if len(df) > n:
        df = df.iloc[np.sort(rng.choice(len(df), n, replace=False))]
    return df.reset_index(drop=True)


def _attack_frames(schema: TableSchema, frames: Sequence[pd.DataFrame]) -> tuple[list[pd.DataFrame], list[str]]:
    """Learned columns only (ids and fake PII are regenerated, not learned, so they leak nothing and
    would make singling out trivial); numbers and datetimes as floats (NaN kept), categories as text
    with one spelling across frames (missing = "(missing)"), every frame indexed 0..n-1."""
    cols = learned_columns(schema, *frames)
    out = []
    for f in frames:
        d: dict[str, Any] = {}
        for c in cols:
            if c.kind in CONTINUOUS:
                d[c.name] = to_numeric(f[c.name], c.kind, c.datetime_format)
            else:
                s = f[c.name]
                if pd.api.types.is_float_dtype(s) and s.dropna().eq(s.dropna().round()).all():
                    s = s.astype("Int64")  # 1.0 and 1 are the same category
                d[c.name] = s.astype("string").fillna(_MISSING).to_numpy(dtype=object)
        out.append(pd.DataFrame(d, index=pd.RangeIndex(len(f))))
    return out, [c.name for c in cols]


def _risk(evaluator: Any, confidence_level: float, **kw: Any) -> dict[str, Any]:
    """Anonymeter's risk (point estimate and confidence interval) plus the success rates behind it."""
    r = evaluator.risk(confidence_level=confidence_level, **kw)
    res = evaluator.results(confidence_level=confidence_level, **kw)
    lo, hi = r.ci
    out = {"risk": float(r.value), "ci": [float(lo), float(hi)],
           "attack_rate": float(res.attack_rate.value), "attack_rate_error": float(res.attack_rate.error),
           "baseline_rate": float(res.baseline_rate.value),
           "control_rate": None if res.control_rate is None else float(res.control_rate.value),
           # the counts behind the rates, so that several attack seeds can be pooled (pooled_anonymeter_risks)
           "counts": {"n_attacks": [int(res.n_attacks_ori), int(res.n_attacks_baseline), int(res.n_attacks_control)],
                      "n_success": int(res.n_success), "n_baseline": int(res.n_baseline),
                      "n_control": None if res.n_control is None else int(res.n_control)}}
    # Anonymeter's own sanity check: an attack no better than random guessing says nothing
    out["attack_beats_baseline"] = bool(res.attack_rate.value - res.attack_rate.error > res.baseline_rate.value)
    return out


def _pooled(parts: Sequence[dict[str, Any]], confidence_level: float) -> dict[str, Any]:
    """One risk from the attacks of several seeds: their counts summed, Anonymeter's estimate and interval
    recomputed on the pooled counts (an interval that narrows as 1 / sqrt(total attacks))."""
    from anonymeter.stats.confidence import EvaluationResults

    counts = [p["counts"] for p in parts]
    n_attacks = tuple(int(sum(c["n_attacks"][i] for c in counts)) for i in range(3))
    control = None if any(c["n_control"] is None for c in counts) else int(sum(c["n_control"] for c in counts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = EvaluationResults(n_attacks=n_attacks, n_success=int(sum(c["n_success"] for c in counts)),
                                n_baseline=int(sum(c["n_baseline"] for c in counts)), n_control=control,
                                confidence_level=confidence_level)
        r = res.risk()
    lo, hi = r.ci
    return {"risk": float(r.value), "ci": [float(lo), float(hi)], "attack_rate": float(res.attack_rate.value),
            "baseline_rate": float(res.baseline_rate.value),
            "control_rate": None if res.control_rate is None else float(res.control_rate.value),
            "attack_beats_baseline": bool(res.attack_rate.value - res.attack_rate.error > res.baseline_rate.value),
            "counts": {"n_attacks": list(n_attacks), "n_success": int(sum(c["n_success"] for c in counts)),
                       "n_baseline": int(sum(c["n_baseline"] for c in counts)), "n_control": control},
            "per_seed": [float(p["risk"]) for p in parts]}


def pooled_anonymeter_risks(train: pd.DataFrame, synthetic: pd.DataFrame, control: pd.DataFrame,
                            schema: TableSchema | None = None, *, seeds: Sequence[int] = (0, 1, 2),
                            confidence_level: float = 0.95, **kw: Any) -> dict[str, Any]:
    """`anonymeter_risks` repeated for each attack seed and pooled: one seed's 500 attacks give intervals
    about +-0.04 wide, too wide to rank two models whose risks differ by 0.01. Each seed draws its own
    training/control subsample, attack targets and linkability split; comparing models with the same
    `seeds` attacks them alike. Per risk (per singling-out mode, per inference secret) the attack counts
    of all seeds are summed and Anonymeter's estimate and interval recomputed on them; the headline
    singling-out and inference risks are then the largest pooled ones, as in `anonymeter_risks`
    (`per_seed` lists each seed's own headline). Keyword arguments go to `anonymeter_risks`."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise DataError("pooled_anonymeter_risks: give at least one attack seed")
    runs = [anonymeter_risks(train, synthetic, control, schema, confidence_level=confidence_level, seed=s, **kw)
            for s in seeds]
    first = runs[0]
    out: dict[str, Any] = {"seeds": seeds, "n_attacks": first["n_attacks"],
                           "attacks_pooled": int(sum(r["n_attacks"] for r in runs)),
                           "rows_train": first["rows_train"], "rows_control": first["rows_control"],
                           "rows_synthetic": first["rows_synthetic"], "confidence_level": confidence_level,
                           "columns": first["columns"]}
    modes = [m for m in ("univariate", "multivariate") if all(m in r["singling_out"] for r in runs)]
    if modes:
        so = {m: _pooled([r["singling_out"][m] for r in runs], confidence_level) for m in modes}
        worst = max(so.values(), key=lambda r: r["risk"])
        out["singling_out"] = {"risk": worst["risk"], "ci": worst["ci"],
                               "per_seed": [float(r["singling_out"]["risk"]) for r in runs], **so}
    if all("linkability" in r for r in runs):
        out["linkability"] = _pooled([r["linkability"] for r in runs], confidence_level)
    if all("inference" in r for r in runs):
        secrets = [p["secret"] for p in first["inference"]["per_column"]]
        per = []
        for s in secrets:
            found = [p for r in runs for p in r["inference"]["per_column"] if p["secret"] == s]
            if len(found) == len(runs):
                per.append({"secret": s, **_pooled(found, confidence_level)})
        if per:
            top = max(per, key=lambda r: r["risk"])
            out["inference"] = {"risk": top["risk"], "ci": top["ci"], "secret": top["secret"],
                                "mean_risk": float(np.mean([r["risk"] for r in per])), "per_column": per,
                                "per_seed": [float(r["inference"]["risk"]) for r in runs]}
    notes = sorted({n for r in runs for n in r.get("notes", [])})
    if notes:
        out["notes"] = notes
    return out


def anonymeter_risks(train: pd.DataFrame, synthetic: pd.DataFrame, control: pd.DataFrame,
                     schema: TableSchema | None = None, *, n_attacks: int = 500, secrets: Sequence[str] | None = None,
                     max_secrets: int | None = None, n_neighbors: int = 10, confidence_level: float = 0.95,
                     max_rows: int = 5_000, seed: int = 0, n_jobs: int = 1) -> dict[str, Any]:
    """Anonymeter's three risks of `synthetic` for the people in `train`, with `control` as the baseline.

    `control`: real rows from the same population that the synthesizer never saw (a holdout). Training
    and control rows are subsampled to one size (at most `max_rows`), so Anonymeter needs no size
    correction, which it would fit on an unseeded subsample. Risks (0 = no risk, 1 = total):
    - singling out: predicates that isolate one synthetic row, checked on the training rows;
      univariate and multivariate (3 columns; at most 50 x `n_attacks` predicates tried), the
      headline is the larger;
    - linkability: the columns split at random into two halves; an attacker who knows one half of
      a person's row links it to the other half through the nearest synthetic rows;
    - inference: each column in turn (`secrets`, default all learned columns; at most `max_secrets`:
      the first ones given, else drawn at random) guessed from all the others; the headline is the largest risk over columns. Where control rows
      are guessed right almost always (a column that is nearly always 0), Anonymeter's normalised
      risk (attack - control) / (1 - control) is noisy: read its interval.
    Deterministic for a given `seed`. Raises `AttackUnavailable` without Anonymeter.
    """
    if not anonymeter_available():
        raise AttackUnavailable(ANONYMETER_MISSING)
    from anonymeter.evaluators import InferenceEvaluator, LinkabilityEvaluator, SinglingOutEvaluator

    for name, f in (("train", train), ("synthetic", synthetic), ("control", control)):
        if not isinstance(f, pd.DataFrame) or len(f) == 0:
            raise DataError(f"anonymeter_risks: the {name} table is empty or not a DataFrame")
    schema = schema or infer_schema(train)
    rng = np.random.default_rng(seed)
    n = min(len(train), len(control), max_rows)
    (ori, ctl, syn), cols = _attack_frames(schema, [_rows(train, n, rng), _rows(control, n, rng),
                                                    _rows(synthetic, max_rows, rng)])
    if not cols:
        raise DataError("anonymeter_risks: no learned column is shared by the three tables")
    n_att = int(max(1, min(n_attacks, n)))
    # Anonymeter's default (10 million query attempts) runs for hours where few 3-column predicates
    # single out a row (e.g. a table of one continuous and two small categorical columns)
    max_attempts = int(max(5_000, 50 * n_att))
    out: dict[str, Any] = {"n_attacks": n_att, "singling_out_max_attempts": max_attempts, "rows_train": n,
                           "rows_control": n, "rows_synthetic": len(syn), "confidence_level": confidence_level,
                           "columns": cols}
    with warnings.catch_warnings(), _seeded(seed), _captured_logs("anonymeter") as notes:
        warnings.simplefilter("ignore")
        so: dict[str, Any] = {}
        for mode in ("univariate", "multivariate"):
            if mode == "multivariate" and len(cols) < 2:
                continue
            ev = SinglingOutEvaluator(ori=ori, syn=syn, control=ctl, n_attacks=n_att, n_cols=min(3, len(cols)),
                                      max_attempts=max_attempts, seed=seed).evaluate(mode=mode)
            so[mode] = _risk(ev, confidence_level)
        worst = max(so.values(), key=lambda r: r["risk"])
        out["singling_out"] = {"risk": worst["risk"], "ci": worst["ci"], **so}
        if len(cols) >= 2:
            order = [cols[i] for i in rng.permutation(len(cols))]
            aux = (order[: len(cols) // 2], order[len(cols) // 2:])
            k = int(min(n_neighbors, len(syn)))
            ev = LinkabilityEvaluator(ori=ori, syn=syn, control=ctl, n_attacks=n_att, aux_cols=aux,
                                      n_neighbors=k).evaluate(n_jobs=n_jobs)
            out["linkability"] = {**_risk(ev, confidence_level, n_neighbors=k), "aux_cols": [list(a) for a in aux],
                                  "n_neighbors": k}
            chosen = [s for s in (secrets or cols) if s in cols]
            if max_secrets is not None and len(chosen) > max_secrets:  # given secrets: the first ones
                chosen = chosen[:max_secrets] if secrets else \
                    [chosen[i] for i in np.sort(rng.choice(len(chosen), max_secrets, replace=False))]
            per = []
            for s in chosen:
                ev = InferenceEvaluator(ori=ori, syn=syn, control=ctl, aux_cols=[c for c in cols if c != s], secret=s,
                                        n_attacks=n_att).evaluate(n_jobs=n_jobs)
                per.append({"secret": s, **_risk(ev, confidence_level)})
            if per:
                top = max(per, key=lambda r: r["risk"])
                out["inference"] = {"risk": top["risk"], "ci": top["ci"], "secret": top["secret"],
                                    "mean_risk": float(np.mean([r["risk"] for r in per])), "per_column": per}
    if notes:
        out["notes"] = sorted(set(notes))
    return out


# -- DOMIAS-style density membership attack -------------------------------------------------------
def _density_features(schema: TableSchema, reference: pd.DataFrame, frames: Sequence[pd.DataFrame],
                      max_categories: int = 30) -> list[np.ndarray]:
    """Features on a common unit scale, fitted on the attacker's reference rows only: numbers (and
    datetimes) as normal scores of their reference ranks (an outlier cannot squash the others), plus
    a missing flag where needed; categories one-hot (the reference's `max_categories` most frequent,
    the rest pooled) scaled so that a mismatch costs as much as one standard deviation."""
    from sklearn.preprocessing import QuantileTransformer

    cols = learned_columns(schema, reference, *frames)
    parts: list[list[np.ndarray]] = [[] for _ in frames]
    for c in cols:
        if c.kind in CONTINUOUS:
            r = to_numeric(reference[c.name], c.kind, c.datetime_format)
            xs = [to_numeric(f[c.name], c.kind, c.datetime_format) for f in frames]
            fin = r[np.isfinite(r)]
            if fin.size >= 2 and np.ptp(fin) > 0:
                qt = QuantileTransformer(n_quantiles=min(1000, fin.size), output_distribution="normal",
                                         subsample=10 ** 9).fit(fin[:, None])
                for p, x in zip(parts, xs):
                    z = np.full(x.shape, 0.0)
                    ok = np.isfinite(x)
                    if ok.any():
                        z[ok] = qt.transform(x[ok][:, None])[:, 0]
                    p.append(z[:, None])
            if np.isnan(r).any() or any(np.isnan(x).any() for x in xs):
                for p, x in zip(parts, xs):
                    p.append(np.isnan(x)[:, None].astype(float))
        else:
            keys = reference[c.name].astype("string").fillna(_MISSING)
            top = list(keys.value_counts().index[:max_categories])
            lut = {k: i for i, k in enumerate(top)}
            for p, f in zip(parts, frames):
                v = f[c.name].astype("string").fillna(_MISSING)
                idx = v.map(lut).fillna(len(top)).to_numpy(dtype=np.int64)
                oh = np.zeros((len(f), len(top) + 1))
                oh[np.arange(len(f)), idx] = math.sqrt(0.5)
                p.append(oh)
    return [np.hstack(p) if p else np.zeros((len(f), 0)) for p, f in zip(parts, frames)]


def _log_kde(points: np.ndarray, queries: np.ndarray, bandwidth: float, chunk_cells: int = 2 ** 24) -> np.ndarray:
    """Gaussian kernel density estimate (log) of `points` at `queries`, exact, in query chunks."""
    from scipy.special import logsumexp

    n, d = points.shape
    step = max(1, chunk_cells // max(n, 1))
    pp = (points ** 2).sum(1)
    out = np.empty(len(queries))
    for i in range(0, len(queries), step):
        q = queries[i:i + step]
        d2 = np.maximum((q ** 2).sum(1)[:, None] + pp[None, :] - 2.0 * q @ points.T, 0.0)
        out[i:i + step] = logsumexp(-d2 / (2 * bandwidth ** 2), axis=1)
    return out - math.log(n) - 0.5 * d * math.log(2 * math.pi * bandwidth ** 2)


def domias_attack(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame,
                  schema: TableSchema | None = None, *, max_members: int = 1_000, max_reference: int = 5_000,
                  bandwidth: float = 0.3, seed: int = 0) -> dict[str, Any]:
    """DOMIAS-style membership attack: score = log p_synthetic(x) - log p_reference(x).

    The holdout is split in two: rows that play non-members (as many as the training rows that play
    members, at most `max_members` each) and the attacker's reference sample of the population (the
    rest, at most `max_reference`). Both densities are Gaussian kernel estimates on the same features
    (`_density_features`, where one standard deviation or one category mismatch is 1) with one
    bandwidth. Scott's rule gives about 0.9 on Adult's 105 features, so wide that a copied row barely
    stands out from its neighbours (AUC 0.65 for a table that copies 63% of the members); 0.1 to 0.3
    all give 0.78, and 0.3 keeps near copies (within a third of a standard deviation) visible.
    Returns the attack's ROC AUC (0.5 = it cannot tell members from non-members), its advantage
    2 x AUC - 1 (floored at 0), and the AUC of the uncalibrated synthetic density alone.
    """
    from sklearn.metrics import roc_auc_score

    schema = schema or infer_schema(train)
    rng = np.random.default_rng(seed)
    m = int(min(len(train), len(holdout) // 2, max_members))
    if m < 5:
        return {"domias_skipped": f"needs at least 10 holdout rows and 5 training rows (got {len(holdout)} and {len(train)})"}
    perm = rng.permutation(len(holdout))
    non = holdout.iloc[np.sort(perm[:m])]
    ref = holdout.iloc[np.sort(perm[m:m + max_reference])]
    mem = _rows(train, m, rng)
    syn = _rows(synthetic, max_reference, rng)
    x_mem, x_non, x_syn, x_ref = _density_features(schema, ref, [mem, non, syn, ref])
    cand = np.vstack([x_mem, x_non])
    h = float(bandwidth)
    log_syn = _log_kde(x_syn, cand, h)
    log_ref = _log_kde(x_ref, cand, h)
    y = np.r_[np.ones(m), np.zeros(m)]
    auc = float(roc_auc_score(y, log_syn - log_ref))
    return {"domias_auc": auc, "domias_advantage": float(max(0.0, 2 * auc - 1)),
            "domias_auc_uncalibrated": float(roc_auc_score(y, log_syn)),
            "domias_members": m, "domias_reference_rows": int(len(ref)), "domias_bandwidth": h}


def attack_figures(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema | None = None,
                   *, n_attacks: int = 300, max_rows: int = 5_000, seed: int = 0, target: str | None = None,
                   max_secrets: int = 6) -> dict[str, Any]:
    """The suite's attack section: DOMIAS always, Anonymeter when installed (else a note saying how).

    Anonymeter's inference attack guesses `target` (when given) and other learned columns drawn at
    random, `max_secrets` in all: each column costs one more attack run.
    """
    schema = schema or infer_schema(train)
    cols = [c.name for c in learned_columns(schema, train, synthetic, holdout)]
    others = [c for c in cols if c != target]
    pick = np.random.default_rng(seed).permutation(len(others))[: max(0, max_secrets - (target in cols))]
    secrets = ([target] if target in cols else []) + [others[i] for i in np.sort(pick)]
    out: dict[str, Any] = dict(domias_attack(train, synthetic, holdout, schema, max_members=max_rows // 5,
                                             max_reference=max_rows, seed=seed))
    if anonymeter_available():
        out["anonymeter"] = anonymeter_risks(train, synthetic, holdout, schema, n_attacks=n_attacks,
                                             max_rows=max_rows, seed=seed, secrets=secrets or None)
    else:
        out["anonymeter"] = {"skipped": ANONYMETER_MISSING}
    return out


# -- canaries -------------------------------------------------------------------------------------
@dataclass
class Canaries:
    """Canary rows made for one table: `rows` (2k rows, the first `k` planted), and the values that
    mark each one: {canary index: [(column, value), ...]}, values nobody in the real table has."""
    rows: pd.DataFrame
    k: int
    marks: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)

    @property
    def planted(self) -> pd.DataFrame:
        return self.rows.iloc[: self.k]

    @property
    def held_out(self) -> pd.DataFrame:
        return self.rows.iloc[self.k:]


def _distinct_number(hi: float, i: int, rng: np.random.Generator, decimals: int | None, taken: set[float]) -> float:
    """An extreme far above `hi`, different for each canary and from every number in the table (`taken`),
    so that finding it in an output or a model file can only mean the canary leaked."""
    mag = 10.0 ** max(6, math.ceil(math.log10(max(abs(hi), 1.0))) + 2)
    while True:
        v = mag * (2 + i) + float(rng.integers(10_000, 99_999))
        if decimals:
            v += round(float(rng.integers(1, 99)) / 100, min(decimals, 2))
        if v not in taken:
            taken.add(v)
            return v


def make_canaries(data: pd.DataFrame, k: int = 10, seed: int = 0, schema: TableSchema | None = None) -> Canaries:
    """2k canary rows for `data` (k to plant, k held out as the membership baseline).

    Each starts from a random real row; every categorical and text column gets a unique string
    (`canary-<hex>-<i>`; integer-coded categories get a unique out-of-range integer), every numerical
    column an out-of-range extreme, every id column a fresh id. Booleans and datetimes keep the real
    row's value (they have no unseen value to plant).
    """
    if k < 1:
        raise DataError(f"canaries: k must be at least 1 (got {k})")
    if len(data) == 0:
        raise DataError("canaries: the table is empty")
    schema = schema or infer_schema(data)
    rng = np.random.default_rng(seed)
    n = 2 * k
    rows = data.iloc[rng.integers(0, len(data), n)].reset_index(drop=True).copy()
    token = "".join(rng.choice(list("0123456789abcdef"), 6))
    marks: dict[int, list[tuple[str, Any]]] = {i: [] for i in range(n)}
    taken: set[float] = set()  # every number of the table, so no canary number collides with a real one
    for name in data.columns:
        if pd.api.types.is_numeric_dtype(data[name]) and not pd.api.types.is_bool_dtype(data[name]):
            taken.update(pd.to_numeric(data[name], errors="coerce").dropna().astype(float).unique().tolist())
    for c in schema.columns:
        if c.name not in rows.columns or c.kind in (ColumnKind.BOOLEAN, ColumnKind.DATETIME):
            continue
        s = data[c.name]
        numeric_dtype = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if c.kind == ColumnKind.NUMERICAL or (numeric_dtype and c.kind in (ColumnKind.CATEGORICAL, ColumnKind.ID)):
            fin = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
            fin = fin[np.isfinite(fin)]
            hi = float(np.abs(fin).max()) if fin.size else 1.0
            integer = pd.api.types.is_integer_dtype(s) or c.kind != ColumnKind.NUMERICAL or (c.decimals == 0)
            vals = [_distinct_number(hi, i, rng, None if integer else c.decimals, taken) for i in range(n)]
            if integer:
                vals = [int(v) for v in vals]
            if pd.api.types.is_integer_dtype(s):
                rows[c.name] = pd.array(vals, dtype=s.dtype)
            else:
                rows[c.name] = np.asarray(vals, dtype=float)
        elif c.kind in (ColumnKind.CATEGORICAL, ColumnKind.TEXT, ColumnKind.ID, ColumnKind.PII):
            vals = [f"canary-{token}-{i:03d}" for i in range(n)]
            rows[c.name] = pd.Series(vals, dtype=s.dtype if s.dtype == "string" else object)
        else:
            continue
        if c.learned:  # regenerated columns (ids, fake PII) say nothing about memorisation
            for i, v in enumerate(vals):
                marks[i].append((c.name, v))
    # which canaries are planted is drawn at random, so planted and held-out ones are exchangeable
    # (the extremes grow with the canary's number; the membership test must not see that)
    order = rng.permutation(n)
    return Canaries(rows=rows.iloc[order].reset_index(drop=True), k=k, marks={j: marks[int(i)] for j, i in enumerate(order)})


def plant(data: pd.DataFrame, canaries: Canaries, seed: int = 0) -> pd.DataFrame:
    """`data` with the planted canaries inserted at random positions."""
    both = pd.concat([data, canaries.planted], ignore_index=True)
    order = np.random.default_rng(seed).permutation(len(both))
    return both.iloc[order].reset_index(drop=True)


def _file_contents(path: Path) -> tuple[list[str], list[np.ndarray], list[bytes]]:
    """What a model file holds: texts, numeric arrays, and opaque bytes.

    An .npz model is a zip of .npy arrays: text arrays (the JSON header, category lists) are read as
    text, numeric ones as numbers (so a value stored as float32 is found as well); any other file, or
    a member NumPy cannot read without pickle, is searched as raw bytes.
    """
    raw = path.read_bytes()
    texts: list[str] = []
    arrays: list[np.ndarray] = []
    blobs: list[bytes] = []
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        return texts, arrays, [raw]
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        for name in zf.namelist():
            member = zf.read(name)
            try:
                arr = np.load(io.BytesIO(member), allow_pickle=False)
            except (ValueError, OSError):
                blobs.append(member)
                continue
            if arr.dtype.kind in "US":
                texts.append("\n".join(map(str, arr.ravel().tolist())))
            elif arr.dtype.kind in "iufb" and arr.size:
                arrays.append(np.unique(arr.astype(np.float64).ravel()))
            else:
                blobs.append(member)
    return texts, arrays, blobs


def _number_text(v: float) -> re.Pattern:
    text = str(int(v)) if float(v).is_integer() else repr(float(v))
    return re.compile(r"(?<![0-9.])" + re.escape(text) + r"(?:\.0+)?(?![0-9])")


def values_in_file(path: str | Path, values: Sequence[Any]) -> list[bool]:
    """For each value, whether the model file holds it (see `_file_contents`): strings as text; numbers
    as text (JSON header), as an element of a numeric array, or as 8-byte binary in opaque bytes."""
    texts, arrays, blobs = _file_contents(Path(path))
    found = []
    for v in values:
        if isinstance(v, str):
            hit = any(v in t for t in texts) or any(p in b for b in blobs for p in (v.encode("utf-8"), v.encode("utf-32-le")))
        else:
            fv = float(v)
            rx = _number_text(fv)
            hit = any(rx.search(t) for t in texts) or any(
                np.searchsorted(a, fv) < a.size and a[np.searchsorted(a, fv)] == fv for a in arrays)
            if not hit and blobs:
                pats = [struct.pack("<d", fv)] + ([struct.pack("<q", int(fv))] if fv.is_integer() and abs(fv) < 2 ** 62 else [])
                btext = rx.pattern.encode()
                hit = any(p in b for b in blobs for p in pats) or any(re.search(btext, b) for b in blobs)
        found.append(bool(hit))
    return found


def _present(series: pd.Series, value: Any) -> bool:
    """Whether `value` occurs in `series` (numbers compared as numbers, to 1e-9 relative)."""
    if isinstance(value, str):
        return bool((series.astype("string") == value).any())
    x = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    return bool(np.isclose(x, float(value), rtol=1e-9, atol=0.0).any())


def canary_exposure(canaries: Canaries, synthetic: pd.DataFrame, model_path: str | Path | None = None,
                    real: pd.DataFrame | None = None, schema: TableSchema | None = None) -> dict[str, Any]:
    """What the output (and the model file) gives away about the planted canaries.

    - `canaries_released`: planted canaries with at least one of their unique values in the output;
      `canary_rows_released`: planted canaries whose marked values all come back on one output row;
    - `canaries_in_model_file`: planted canaries with a value found in the model file's bytes;
    - the same counts for the held-out canaries (never trained on) are the false-positive baseline;
    - `rows_beyond_real_range`: output rows with a number beyond the range of `real` (the table
      without canaries): the extremes a canary drags into the output even when not copied exactly;
    - `canary_mia_auc`: a membership attack on the canaries alone, planted vs held out: the attacker
      knows each canary and scores it by how many of its unique values occur in the output, then by
      its closeness to the nearest output row; `canary_mia_advantage` = 2 x AUC - 1 (floored at 0).
    """
    from sklearn.metrics import roc_auc_score

    out_counts: dict[str, Any] = {"k": canaries.k}
    value_hits: dict[int, list[bool]] = {}
    row_hits: dict[int, bool] = {}
    file_hits: dict[int, list[bool]] = {}
    for i, marks in canaries.marks.items():
        hits = [c in synthetic.columns and _present(synthetic[c], v) for c, v in marks]
        value_hits[i] = hits
        if marks and all(c in synthetic.columns for c, _ in marks):
            mask = np.ones(len(synthetic), dtype=bool)
            for c, v in marks:
                col = synthetic[c]
                mask &= (col.astype("string") == v).fillna(False).to_numpy(dtype=bool) if isinstance(v, str) else \
                    np.isclose(pd.to_numeric(col, errors="coerce").to_numpy(dtype=float), float(v), rtol=1e-9, atol=0.0)
            row_hits[i] = bool(mask.any())
        else:
            row_hits[i] = False
        if model_path is not None:
            file_hits[i] = values_in_file(model_path, [v for _, v in marks])
    planted, held = range(canaries.k), range(canaries.k, len(canaries.rows))
    for label, idx in (("", planted), ("held_out_", held)):
        out_counts[f"{label}canaries_released"] = int(sum(any(value_hits[i]) for i in idx))
        out_counts[f"{label}canary_rows_released"] = int(sum(row_hits[i] for i in idx))
        out_counts[f"{label}canary_values_released"] = int(sum(sum(value_hits[i]) for i in idx))
        if model_path is not None:
            out_counts[f"{label}canaries_in_model_file"] = int(sum(any(file_hits[i]) for i in idx))
            out_counts[f"{label}canary_values_in_model_file"] = int(sum(sum(file_hits[i]) for i in idx))
    out_counts["canary_values_planted"] = int(sum(len(canaries.marks[i]) for i in planted))
    released_cols = sorted({c for i in planted for (c, _), h in zip(canaries.marks[i], value_hits[i]) if h})
    out_counts["columns_released"] = released_cols
    if real is not None:
        beyond = np.zeros(len(synthetic), dtype=bool)
        sch = schema or infer_schema(real)
        for c in sch.of_kind(ColumnKind.NUMERICAL):
            if c.name in synthetic.columns and c.name in real.columns:
                r = pd.to_numeric(real[c.name], errors="coerce").to_numpy(dtype=float)
                r = r[np.isfinite(r)]
                if r.size:
                    x = pd.to_numeric(synthetic[c.name], errors="coerce").to_numpy(dtype=float)
                    beyond |= np.isfinite(x) & ((x > r.max()) | (x < r.min()))
        out_counts["rows_beyond_real_range"] = int(beyond.sum())
        out_counts["share_beyond_real_range"] = float(beyond.mean()) if len(beyond) else 0.0
    # membership on the canaries: distances in a space whose schema knows every canary value
    from synthloop.evaluate.privacy import gower_nearest

    base = real if real is not None else synthetic
    cols = [c for c in canaries.rows.columns if c in synthetic.columns and c in base.columns]
    sch_all = infer_schema(pd.concat([base[cols], canaries.rows[cols]], ignore_index=True))
    d = gower_nearest(canaries.rows[cols], synthetic[cols], sch_all)[:, 0]
    y = np.r_[np.ones(canaries.k), np.zeros(len(canaries.rows) - canaries.k)]
    found = np.array([sum(value_hits[i]) for i in range(len(canaries.rows))], dtype=float)
    auc = float(roc_auc_score(y, found + (1.0 - d)))  # values found first, closeness breaks ties (d <= 1)
    out_counts.update({"canary_mia_auc": auc, "canary_mia_advantage": float(max(0.0, 2 * auc - 1)),
                       "canary_min_distance_planted": float(d[: canaries.k].min()),
                       "canary_min_distance_held_out": float(d[canaries.k:].min())})
    return out_counts


def canary_audit(data: pd.DataFrame, model_factory: Callable[[], Any], k: int = 10, seed: int = 0,
                 n_sample: int | None = None, schema: TableSchema | dict[str, Any] | None = None) -> dict[str, Any]:
    """Plant k canaries in `data`, fit `model_factory()` on it, sample, and report `canary_exposure`.

    `model_factory`: returns an unfitted synthesizer (anything with `fit(df, schema)`, `sample(n, seed=)`
    and, optionally, `save(path)` so the model file is searched too). `schema`: a TableSchema used as
    given (e.g. a domain declared public) or YAML-style overrides applied to the schema inferred from
    the planted table. `n_sample`: output rows (default: as many as the planted table).
    """
    if not isinstance(data, pd.DataFrame) or len(data) == 0:
        raise DataError("canary_audit: the table is empty or not a DataFrame")
    base_schema = infer_schema(data, overrides=schema) if isinstance(schema, dict) else (schema or infer_schema(data))
    canaries = make_canaries(data, k, seed, base_schema)
    train = plant(data, canaries, seed)
    fit_schema = schema if isinstance(schema, TableSchema) else infer_schema(train, overrides=schema)
    model = model_factory()
    model.fit(train, fit_schema)
    syn = model.sample(n_sample or len(train), seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = None
        if hasattr(model, "save"):
            path = Path(tmp) / "model.npz"
            saved = model.save(path)
            path = Path(saved) if isinstance(saved, (str, Path)) else path
        fig = canary_exposure(canaries, syn, path, real=data, schema=base_schema)
    fig.update({"model": getattr(model, "name", type(model).__name__), "rows_trained": len(train),
                "rows_sampled": len(syn), "seed": seed})
    return fig
