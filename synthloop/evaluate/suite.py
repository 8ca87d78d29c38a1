"""`synthloop.evaluate(real, synth, ...)`: every judgement of a synthetic table in one result object.

Sections: fidelity (SDMetrics quality score, detection), utility (TSTR vs TRTR), privacy (exact
copies, DCR share, NNDR, membership-inference AUC), fairness (group shares, demographic parity),
coverage, constraint adherence, and the data behind the report's plots. Each section is plain JSON
(numbers, strings, lists), so `to_json()` holds every figure the HTML report shows.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from synthloop.errors import DataError
from synthloop.evaluate._frames import CONTINUOUS, learned_columns, limited_threads, to_numeric
from synthloop.evaluate.adherence import constraint_adherence
from synthloop.evaluate.coverage import coverage_figures
from synthloop.evaluate.detection import detection_score
from synthloop.evaluate.fairness import fairness_figures
from synthloop.evaluate.privacy import exact_copy_rate, feature_matrix, privacy_figures
from synthloop.evaluate.quality import quality_score
from synthloop.evaluate.utility import utility_scores
from synthloop.schema import ColumnKind, TableSchema, infer_schema

_PLOT_COLUMNS = 60
_PLOT_POINTS = 1500
_TOP_CATEGORIES = 15


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, NumPy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return obj


# -- verdicts --------------------------------------------------------------------------------------
def _band(value: float | None, bands: list[tuple[float, str, str]], higher_is_better: bool = True) -> dict[str, str]:
    """First band whose threshold `value` meets: (threshold, level, sentence)."""
    if value is None or not math.isfinite(value):
        return {"level": "na", "text": "not computed"}
    for threshold, level, text in bands:
        if (value >= threshold) if higher_is_better else (value <= threshold):
            return {"level": level, "text": text}
    return {"level": bands[-1][1], "text": bands[-1][2]}


def verdicts(d: dict[str, Any]) -> list[dict[str, Any]]:
    """Headline cards: figure, ideal, and a plain-language verdict (level good / fair / poor)."""
    cards = []
    q = d["fidelity"]["quality"]
    cards.append({"name": "Quality score", "value": q["quality_score"], "ideal": 1.0, **_band(q["quality_score"], [
        (0.9, "good", "Columns and column pairs look like the real data."),
        (0.8, "fair", "Mostly similar; some columns or relationships drift."),
        (-1, "poor", "Distributions or relationships differ clearly from the real data.")])})
    det = d["fidelity"].get("detection") or {}
    if det:
        cards.append({"name": "Detection AUC", "value": det.get("detection_auc"), "ideal": 0.5, **_band(det.get("detection_auc"), [
            (0.6, "good", "A classifier can hardly tell synthetic rows from real ones."),
            (0.8, "fair", "A classifier tells them apart fairly often; see the columns that give them away."),
            (2, "poor", "Synthetic rows are easy to spot; see the columns that give them away.")], higher_is_better=False)})
    u = d.get("utility")
    if u and "headline" in u:
        h = u["headline"]
        cards.append({"name": f"Utility ({h['metric']} TSTR/TRTR)", "value": h["ratio"], "ideal": 1.0, **_band(h["ratio"], [
            (0.95, "good", f"A model trained on synthetic rows predicts '{u['target']}' about as well as one trained on real rows."),
            (0.85, "fair", f"Models trained on synthetic rows predict '{u['target']}' somewhat worse."),
            (-1e9, "poor", f"Models trained on synthetic rows predict '{u['target']}' clearly worse.")])})
    p = d["privacy"]
    if p.get("dcr_share") is not None:
        cards.append({"name": "DCR share", "value": p["dcr_share"], "ideal": 0.5, **_band(p["dcr_share"], [
            (0.55, "good", "Synthetic rows are no closer to training rows than to unseen rows: no sign of memorisation."),
            (0.65, "fair", "Synthetic rows lean toward training rows: mild memorisation."),
            (2, "poor", "Synthetic rows sit much closer to training rows: the model memorises.")], higher_is_better=False)})
    if p.get("mia_auc") is not None:
        cards.append({"name": "Membership attack AUC", "value": p["mia_auc"], "ideal": 0.5, **_band(p["mia_auc"], [
            (0.55, "good", "An attacker cannot tell who was in the training data."),
            (0.65, "fair", "An attacker guesses membership slightly better than chance."),
            (2, "poor", "An attacker can often tell who was in the training data.")], higher_is_better=False)})
    att = p.get("attacks") or {}
    if att.get("domias_auc") is not None:
        cards.append({"name": "DOMIAS attack AUC", "value": att["domias_auc"], "ideal": 0.5, **_band(att["domias_auc"], [
            (0.55, "good", "Synthetic data is no denser around training rows than around unseen real rows."),
            (0.65, "fair", "Synthetic data is somewhat denser around training rows: local overfitting."),
            (2, "poor", "Synthetic data piles up around training rows: an attacker can spot who was in the training data.")],
            higher_is_better=False)})
    an = att.get("anonymeter") or {}
    risks = {k: an[k] for k in ("singling_out", "linkability", "inference") if an.get(k)}
    if risks:
        # judged on the lower end of each 95% interval: a few hundred attacks leave wide intervals, and
        # a point estimate of 0.2 whose interval reaches 0 is no evidence of a risk
        worst = max(risks, key=lambda k: (risks[k]["ci"][0], risks[k]["risk"]))
        r, (lo, hi) = risks[worst], risks[worst]["ci"]
        name, ci = worst.replace("_", "-"), f"interval {lo:.2f} to {hi:.2f}"
        cards.append({"name": "Anonymeter risk (highest)", "value": r["risk"], "ideal": 0.0, **_band(lo, [
            (0.05, "good", f"No Anonymeter attack is clearly more successful on training rows than on unseen rows "
                           f"(most certain: {name}, {ci})."),
            (0.2, "fair", f"The {name} attack works somewhat better on training rows than on unseen rows ({ci})."),
            (2, "poor", f"The {name} attack succeeds on many training rows ({ci}): the synthetic data reveals individuals.")],
            higher_is_better=False)})
    ecr = p.get("exact_copy_rate")
    base = p.get("holdout_exact_copy_rate")
    limit = max(0.01, 2 * base) if base is not None else 0.01
    cards.append({"name": "Exact copies", "value": ecr, "ideal": 0.0, **_band(ecr, [
        (limit / 2 if limit > 0.01 else 0.001, "good", "Synthetic rows are not copies of training rows."),
        (limit, "fair", "A few synthetic rows copy training rows exactly (as often as unseen real rows do)."),
        (2, "poor", "Many synthetic rows are exact copies of training rows.")], higher_is_better=False)})
    c = d["coverage"]
    cov = np.nanmin([v for v in (c.get("category_coverage"), c.get("range_coverage")) if v is not None] or [np.nan])
    cards.append({"name": "Coverage (lowest)", "value": float(cov), "ideal": 1.0, **_band(float(cov), [
        (0.95, "good", "Synthetic data reaches the categories and ranges of the real data."),
        (0.8, "fair", "Some categories or value ranges are missing."),
        (-1, "poor", "Many categories or ranges are missing: possible mode collapse.")])})
    fair = d.get("fairness") or []
    if fair:
        worst = max(f["max_abs_difference"] for f in fair)
        cards.append({"name": "Protected group shares (max gap)", "value": worst, "ideal": 0.0, **_band(worst, [
            (0.02, "good", "Protected groups keep their real shares."),
            (0.05, "fair", "Some protected groups are over- or under-represented."),
            (2, "poor", "Protected groups are clearly misrepresented.")], higher_is_better=False)})
        dps = [abs(f["demographic_parity"]["difference"]) for f in fair if "demographic_parity" in f]
        if dps:
            cards.append({"name": "Demographic parity shift", "value": max(dps), "ideal": 0.0, **_band(max(dps), [
                (0.03, "good", "A model trained on synthetic rows treats groups like one trained on real rows."),
                (0.08, "fair", "A model trained on synthetic rows treats groups somewhat differently."),
                (2, "poor", "A model trained on synthetic rows treats groups clearly differently.")], higher_is_better=False)})
    con = d.get("constraints") or {}
    if con.get("adherence") is not None:
        cards.append({"name": "Constraint adherence", "value": con["adherence"], "ideal": 1.0, **_band(con["adherence"], [
            (0.999, "good", "Synthetic rows follow the declared rules."),
            (0.95, "fair", "A few synthetic rows break declared rules."),
            (-1, "poor", "Many synthetic rows break declared rules.")])})
    return cards


# -- plot data -------------------------------------------------------------------------------------
def _distributions(real: pd.DataFrame, synth: pd.DataFrame, schema: TableSchema) -> list[dict[str, Any]]:
    out = []
    for c in learned_columns(schema, real, synth)[:_PLOT_COLUMNS]:
        if c.kind in CONTINUOUS:
            r = to_numeric(real[c.name], c.kind, c.datetime_format)
            s = to_numeric(synth[c.name], c.kind, c.datetime_format)
            r, s = r[np.isfinite(r)], s[np.isfinite(s)]
            if r.size == 0:
                continue
            lo, hi = np.quantile(r, [0.005, 0.995]) if r.size > 200 else (r.min(), r.max())
            if s.size:
                lo, hi = min(lo, np.quantile(s, 0.005)), max(hi, np.quantile(s, 0.995))
            n_int = np.unique(r).size
            edges = np.histogram_bin_edges(r, bins=min(40, max(n_int, 2)), range=(lo, hi if hi > lo else lo + 1))
            hr = np.histogram(np.clip(r, lo, hi), edges)[0] / r.size
            hs = np.histogram(np.clip(s, lo, hi), edges)[0] / max(s.size, 1)
            out.append({"column": c.name, "kind": "numeric", "datetime": c.kind.value == "datetime",
                        "edges": np.round(edges, 6).tolist(), "real": np.round(hr, 6).tolist(), "synthetic": np.round(hs, 6).tolist()})
        else:
            r = real[c.name].astype("string").fillna("(missing)")
            s = synth[c.name].astype("string").fillna("(missing)")
            pr, ps = r.value_counts(normalize=True), s.value_counts(normalize=True)
            top = list(pr.index[:_TOP_CATEGORIES])
            cats = top + (["(other)"] if len(pr) > _TOP_CATEGORIES or (~ps.index.isin(top)).any() else [])
            real_sh = [float(pr.get(k, 0.0)) for k in top]
            syn_sh = [float(ps.get(k, 0.0)) for k in top]
            if len(cats) > len(top):
                real_sh.append(float(1 - sum(real_sh)))
                syn_sh.append(float(1 - sum(syn_sh)))
            out.append({"column": c.name, "kind": "categorical", "categories": [str(x) for x in cats],
                        "real": np.round(real_sh, 6).tolist(), "synthetic": np.round(syn_sh, 6).tolist()})
    return out


def _pair_matrix(pairs: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """Pair-trend gaps: |r_real - r_synth| for two numbers (in [0, 2] halved), TVD otherwise; 0 = same."""
    cols = columns[:_PLOT_COLUMNS]
    pos = {c: i for i, c in enumerate(cols)}
    gap = np.full((len(cols), len(cols)), np.nan)
    np.fill_diagonal(gap, 0.0)
    for row in pairs.itertuples(index=False):  # one entry per column pair, not per data row
        if row.column_1 in pos and row.column_2 in pos and row.score == row.score:
            i, j = pos[row.column_1], pos[row.column_2]
            gap[i, j] = gap[j, i] = 1.0 - row.score
    return {"columns": cols, "gap": np.round(gap, 4).tolist(),
            "note": "1 - pair trend score: |Pearson r real - synthetic| / 2 for two numeric columns, TVD of the two-way table otherwise"}


def _projection(real: pd.DataFrame, synth: pd.DataFrame, schema: TableSchema, seed: int) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    r = real.iloc[np.sort(rng.choice(len(real), min(len(real), _PLOT_POINTS), replace=False))]
    s = synth.iloc[np.sort(rng.choice(len(synth), min(len(synth), _PLOT_POINTS), replace=False))]
    xr, xs = feature_matrix(r, schema, real), feature_matrix(s, schema, real)
    if xr.shape[1] < 2 or len(r) < 3:
        return {}
    pca = PCA(n_components=2, random_state=seed).fit(xr)
    pr, ps = pca.transform(xr), pca.transform(xs)
    return {"method": "PCA fitted on real rows (numbers scaled to [0, 1], categories one-hot)",
            "explained_variance": np.round(pca.explained_variance_ratio_, 4).tolist(),
            "real": np.round(pr, 4).tolist(), "synthetic": np.round(ps, 4).tolist()}


# -- the result ------------------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    """Every figure (`data`, JSON-ready) of one evaluation; `.summary()`, `.to_json()`, `.to_html()`."""
    data: dict[str, Any]
    schema: TableSchema | None = field(default=None, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def cards(self) -> list[dict[str, Any]]:
        return self.data["summary"]

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def to_json(self, path: str | Path | None = None, indent: int | None = 2) -> str:
        text = json.dumps(self.data, indent=indent, allow_nan=False)
        if path is not None:
            from synthloop.io import write_text
            write_text(text, Path(path))
        return text

    def to_html(self, path: str | Path | None = None, title: str | None = None) -> str:
        from synthloop.evaluate.report import render_html
        html = render_html(self.data, title=title)
        if path is not None:
            from synthloop.io import write_text
            write_text(html, Path(path))
        return html

    def summary(self) -> str:
        """Plain-text summary: one line per headline figure with its verdict."""
        lines = [f"synthetic vs real: {self.data['rows']['real']:,} real rows, {self.data['rows']['synthetic']:,} synthetic rows"]
        for c in self.cards:
            v = c["value"]
            lines.append(f"  [{c['level']:>4}] {c['name']}: {'n/a' if v is None else f'{v:.3f}'} (ideal {c['ideal']:g}) - {c['text']}")
        for w in self.data["coverage"].get("warnings", []):
            lines.append(f"  warning: {w}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def evaluate(real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None = None, target: str | None = None,
             protected: Sequence[str] | None = None, schema: TableSchema | None = None,
             constraints: list[Any] | None = None, seed: int = 0, detection: bool = True, plots: bool = True,
             max_rows: int = 5_000, threads: int = 1, attacks: bool = True, n_attacks: int = 300,
             text_agreement: dict[str, Any] | None = None) -> EvaluationResult:
    """Judge `synthetic` against `real` (the synthesizer's training rows); see the module docstring.

    `holdout`: real rows the synthesizer never saw (for DCR share, membership attack, utility testing).
    `target`: column for utility and demographic parity. `protected`: columns for fairness.
    `constraints`: rule objects with `is_valid(df)` (defaults to the schema's declared constraints).
    `max_rows`: rows per side for detection and synthetic rows queried for privacy distances.
    `threads`: OpenMP/BLAS/torch threads while evaluating (1 is robust on a busy shared machine).
    `attacks`: with a holdout, also run the attack suite (`synthloop.evaluate.attacks`: DOMIAS density
    membership attack; Anonymeter's singling-out, linkability and inference risks with `n_attacks`
    attacks each, when Anonymeter is installed; inference on `target` and 5 other columns).
    Free-text columns (kind text) get the figures of `synthloop.evaluate.text`; `text_agreement`:
    {column: check(df) -> bool per row}, a row-text agreement check whose rate is reported too.
    """
    with limited_threads(threads):
        return _evaluate(real, synthetic, holdout, target, protected, schema, constraints, seed, detection, plots, max_rows,
                         attacks, n_attacks, text_agreement)


def _evaluate(real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None, target: str | None,
              protected: Sequence[str] | None, schema: TableSchema | None, constraints: list[Any] | None, seed: int,
              detection: bool, plots: bool, max_rows: int, attacks: bool = True, n_attacks: int = 300,
              text_agreement: dict[str, Any] | None = None) -> EvaluationResult:
    if not isinstance(real, pd.DataFrame) or not isinstance(synthetic, pd.DataFrame):
        raise DataError("evaluate(real, synthetic): both tables must be pandas DataFrames; read files with synthloop.io.read_table")
    if len(real) == 0 or len(synthetic) == 0:
        raise DataError("evaluate(real, synthetic): a table is empty; both need rows")
    schema = schema or infer_schema(real)
    missing = [c.name for c in schema.columns if c.learned and c.name not in synthetic.columns]
    if missing:
        raise DataError(f"synthetic table lacks column '{missing[0]}' of the real table")
    protected = list(protected or [])
    timings: dict[str, float] = {}
    d: dict[str, Any] = {"rows": {"real": len(real), "synthetic": len(synthetic), "holdout": None if holdout is None else len(holdout)},
                         "columns": {c.name: c.kind.value for c in schema.columns}, "seed": seed}

    t = time.perf_counter()
    q = quality_score(real, synthetic, schema)
    d["fidelity"] = {"quality": {"quality_score": q.score, "column_shapes": q.column_shapes,
                                 "column_pair_trends": q.column_pair_trends,
                                 "shapes": q.shapes.to_dict(orient="records"), "pairs": q.pairs.to_dict(orient="records")}}
    timings["quality"] = time.perf_counter() - t
    if detection:
        t = time.perf_counter()
        d["fidelity"]["detection"] = detection_score(real, synthetic, schema, max_rows=max_rows, random_state=seed)
        timings["detection"] = time.perf_counter() - t

    t = time.perf_counter()
    priv = {"exact_copy_rate": exact_copy_rate(real, synthetic, schema)}
    if holdout is not None:
        priv["holdout_exact_copy_rate"] = exact_copy_rate(real, holdout, schema)
    priv.update(privacy_figures(real, synthetic, holdout, schema, max_rows=max_rows, random_state=seed))
    d["privacy"] = priv
    timings["privacy"] = time.perf_counter() - t
    if attacks and holdout is not None and len(holdout):
        from synthloop.evaluate.attacks import attack_figures

        t = time.perf_counter()
        priv["attacks"] = attack_figures(real, synthetic, holdout, schema, n_attacks=n_attacks, max_rows=max_rows,
                                         seed=seed, target=target)
        timings["attacks"] = time.perf_counter() - t

    run = None
    if target is not None:
        t = time.perf_counter()
        run = utility_scores(real, synthetic, holdout, target, schema, random_state=seed)
        d["utility"] = run.figures
        timings["utility"] = time.perf_counter() - t
    t = time.perf_counter()
    d["fairness"] = fairness_figures(real, synthetic, protected, schema, run) if protected else []
    d["coverage"] = coverage_figures(real, synthetic, schema)
    d["constraints"] = constraint_adherence(synthetic, constraints if constraints is not None else schema.constraints, real)
    timings["fairness_coverage_constraints"] = time.perf_counter() - t
    text_cols = [c.name for c in schema.columns if c.kind == ColumnKind.TEXT and c.name in synthetic.columns]
    if text_cols:
        from synthloop.evaluate.text import text_metrics

        t = time.perf_counter()
        structured = [c.name for c in learned_columns(schema, real, synthetic)]
        d["text"] = {c: text_metrics(real, synthetic, c, structured=structured, seed=seed, detection=detection,
                                     agreement=(text_agreement or {}).get(c)) for c in text_cols}
        timings["text"] = time.perf_counter() - t
    if plots:
        t = time.perf_counter()
        d["plots"] = {"distributions": _distributions(real, synthetic, schema),
                      "pair_gaps": _pair_matrix(q.pairs, [c.name for c in learned_columns(schema, real, synthetic)]),
                      "projection": _projection(real, synthetic, schema, seed)}
        timings["plots"] = time.perf_counter() - t
    d["summary"] = verdicts(_clean(d))
    d["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    return EvaluationResult(_clean(d), schema)
