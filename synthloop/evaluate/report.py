"""One self-contained HTML report (and its JSON twin) from an evaluation's figures.

The page needs no network: plotly's JavaScript bundle (from the installed `plotly` package) is
inlined once, and every plot is a plain JSON spec drawn by it. Tables and the summary cards are plain
HTML, so the key figures read even with JavaScript off. A small script records rendered plots and
script errors on `<body>` (`data-plots-rendered`, `data-js-errors`) so a headless browser can check.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jinja2
from markupsafe import Markup

_REAL, _SYNTH = "#1f77b4", "#ff7f0e"


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle shipped inside the `plotly` Python package (no CDN)."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:  # pragma: no cover - plotly is a dependency
        raise ImportError("the HTML report needs the 'plotly' package: pip install plotly") from exc
    return get_plotlyjs()


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


# -- plot specs (plain plotly JSON) ----------------------------------------------------------------
def _layout(title: str, height: int = 260, **extra: Any) -> dict[str, Any]:
    base = {"title": {"text": title, "font": {"size": 13}}, "height": height,
            "margin": {"l": 45, "r": 10, "t": 35, "b": 40}, "legend": {"orientation": "h", "y": -0.25},
            "paper_bgcolor": "white", "plot_bgcolor": "#fafafa", "showlegend": False}
    base.update(extra)
    return base


def _dist_spec(d: dict[str, Any]) -> dict[str, Any]:
    if d["kind"] == "numeric":
        e = d["edges"]
        centers = [(a + b) / 2 for a, b in zip(e[:-1], e[1:])]
        widths = [b - a for a, b in zip(e[:-1], e[1:])]
        data = [{"type": "bar", "x": centers, "y": d["real"], "width": widths, "name": "real",
                 "marker": {"color": _REAL}, "opacity": 0.55},
                {"type": "bar", "x": centers, "y": d["synthetic"], "width": widths, "name": "synthetic",
                 "marker": {"color": _SYNTH}, "opacity": 0.55}]
        return {"data": data, "layout": _layout(d["column"], barmode="overlay", bargap=0, yaxis={"title": {"text": "share"}})}
    data = [{"type": "bar", "x": d["categories"], "y": d["real"], "name": "real", "marker": {"color": _REAL}},
            {"type": "bar", "x": d["categories"], "y": d["synthetic"], "name": "synthetic", "marker": {"color": _SYNTH}}]
    return {"data": data, "layout": _layout(d["column"], barmode="group", yaxis={"title": {"text": "share"}},
                                            xaxis={"type": "category", "tickangle": -35, "automargin": True})}


def _heatmap_spec(p: dict[str, Any]) -> dict[str, Any]:
    n = len(p["columns"])
    size = max(360, min(900, 22 * n + 160))
    return {"data": [{"type": "heatmap", "z": p["gap"], "x": p["columns"], "y": p["columns"], "zmin": 0, "zmax": 0.5,
                      "colorscale": [[0, "#f7fbff"], [0.3, "#fdae6b"], [1, "#a50f15"]], "hoverongaps": False,
                      "colorbar": {"title": {"text": "gap"}}}],
            "layout": _layout("Pair trend difference (0 = same as real)", height=size,
                              yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
                              xaxis={"automargin": True, "tickangle": -45, "type": "category"},
                              margin={"l": 10, "r": 10, "t": 40, "b": 10})}


def _projection_spec(p: dict[str, Any]) -> dict[str, Any]:
    ev = p.get("explained_variance") or [0, 0]

    def trace(points: list[list[float]], name: str, color: str) -> dict[str, Any]:
        return {"type": "scatter", "mode": "markers", "name": name, "x": [a for a, _ in points], "y": [b for _, b in points],
                "marker": {"color": color, "size": 4, "opacity": 0.45}}

    return {"data": [trace(p["real"], "real", _REAL), trace(p["synthetic"], "synthetic", _SYNTH)],
            "layout": _layout("PCA projection: real vs synthetic", height=420, showlegend=True,
                              xaxis={"title": {"text": f"PC1 ({ev[0]:.0%} of variance)"}},
                              yaxis={"title": {"text": f"PC2 ({ev[1]:.0%} of variance)"}})}


def _detection_spec(cols: list[dict[str, Any]]) -> dict[str, Any]:
    top = cols[:20][::-1]
    return {"data": [{"type": "bar", "orientation": "h", "y": [c["column"] for c in top], "x": [c["auc_drop"] for c in top],
                      "marker": {"color": "#6a51a3"}}],
            "layout": _layout("Columns that give synthetic rows away (AUC lost when shuffled)", height=max(220, 22 * len(top) + 80),
                              yaxis={"automargin": True, "type": "category"})}


def _groups_spec(f: dict[str, Any]) -> dict[str, Any]:
    g = f["groups"]
    return {"data": [{"type": "bar", "x": [r["group"] for r in g], "y": [r["real_share"] for r in g], "name": "real", "marker": {"color": _REAL}},
                     {"type": "bar", "x": [r["group"] for r in g], "y": [r["synthetic_share"] for r in g], "name": "synthetic", "marker": {"color": _SYNTH}}],
            "layout": _layout(f"Group shares: {f['attribute']}", barmode="group", showlegend=True,
                              xaxis={"type": "category", "automargin": True})}


def figure_specs(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every plot of the report as a plotly JSON spec, keyed by the id of its <div>."""
    specs: dict[str, dict[str, Any]] = {}
    plots = data.get("plots") or {}
    det = (data.get("fidelity") or {}).get("detection") or {}
    if det.get("columns"):
        specs["fig-detection"] = _detection_spec(det["columns"])
    if (plots.get("pair_gaps") or {}).get("columns"):
        specs["fig-pairs"] = _heatmap_spec(plots["pair_gaps"])
    if (plots.get("projection") or {}).get("real"):
        specs["fig-projection"] = _projection_spec(plots["projection"])
    for i, d in enumerate(plots.get("distributions") or []):
        specs[f"fig-dist-{i}"] = _dist_spec(d)
    for i, f in enumerate(data.get("fairness") or []):
        specs[f"fig-groups-{i}"] = _groups_spec(f)
    return specs


# -- page ------------------------------------------------------------------------------------------
_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f3f4f6;color:#1f2937}
header{background:#111827;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#d1d5db;font-size:13px}
main{max-width:1200px;margin:0 auto;padding:18px}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.06)}
h2{font-size:17px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:12px}
.card{border-radius:8px;padding:12px 14px;border-left:6px solid #9ca3af;background:#f9fafb}
.card.good{border-color:#16a34a}.card.fair{border-color:#d97706}.card.poor{border-color:#dc2626}
.card .name{font-size:12px;color:#4b5563;text-transform:uppercase;letter-spacing:.03em}
.card .value{font-size:26px;font-weight:600;margin:2px 0}.card .ideal{font-size:12px;color:#6b7280}
.card .text{font-size:13px;margin-top:6px}
.badge{display:inline-block;font-size:11px;padding:1px 7px;border-radius:10px;color:#fff;background:#9ca3af;vertical-align:middle}
.badge.good{background:#16a34a}.badge.fair{background:#d97706}.badge.poor{background:#dc2626}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f9fafb}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:10px}
.warn{background:#fef3c7;border:1px solid #f59e0b;border-radius:6px;padding:6px 10px;margin:4px 0;font-size:13px}
.muted{color:#6b7280;font-size:12px}.scroll{max-height:420px;overflow:auto}
</style></head>
<body data-plots-expected="{{ n_plots }}" data-plots-rendered="0">
<script>
window.__reportErrors = [];
window.addEventListener("error", function (e) { window.__reportErrors.push(String(e.message || e)); document.body.setAttribute("data-js-errors", window.__reportErrors.join(" | ")); });
</script>
<header><h1>{{ title }}</h1><p>{{ subtitle }}</p></header>
<main>
<section id="summary"><h2>Summary</h2><div class="cards">
{% for c in cards %}<div class="card {{ c.level }}"><div class="name">{{ c.name }}</div><div class="value">{{ fmt(c.value) }}</div>
<div class="ideal">ideal {{ c.ideal }}</div><div class="text">{{ c.text }}</div></div>
{% endfor %}</div>
{% for w in warnings %}<div class="warn">{{ w }}</div>{% endfor %}
</section>

<section id="fidelity"><h2>Fidelity</h2>
<table><tr><th>figure</th><th>value</th><th>ideal</th></tr>
<tr><td>Quality score (SDMetrics QualityReport)</td><td class="num">{{ fmt(q.quality_score) }}</td><td>1</td></tr>
<tr><td>Column shapes</td><td class="num">{{ fmt(q.column_shapes) }}</td><td>1</td></tr>
<tr><td>Column pair trends</td><td class="num">{{ fmt(q.column_pair_trends) }}</td><td>1</td></tr>
{% if det %}<tr><td>Detection ROC AUC ({{ det.folds }}-fold CV, {{ fmt(det.rows_per_side) }} rows per side)</td><td class="num">{{ fmt(det.detection_auc) }}</td><td>0.5</td></tr>{% endif %}
</table>
{% if has("fig-detection") %}<div id="fig-detection" class="plot"></div>{% endif %}
{% if has("fig-pairs") %}<div id="fig-pairs" class="plot"></div><p class="muted">{{ pair_note }}</p>{% endif %}
{% if has("fig-projection") %}<div id="fig-projection" class="plot"></div><p class="muted">{{ proj_note }}</p>{% endif %}
<h3>Column shapes</h3><div class="scroll"><table><tr><th>column</th><th>metric</th><th>score</th></tr>
{% for r in q.shapes %}<tr><td>{{ r.column }}</td><td>{{ r.metric }}</td><td class="num">{{ fmt(r.score) }}</td></tr>{% endfor %}</table></div>
</section>

<section id="distributions"><h2>Distributions: real vs synthetic</h2>
<p class="muted"><span style="color:{{ real_color }}">&#9632;</span> real &nbsp; <span style="color:{{ synth_color }}">&#9632;</span> synthetic (shares of rows)</p>
<div class="grid">{% for i in dist_ids %}<div id="{{ i }}" class="plot"></div>{% endfor %}</div>
</section>

{% if u %}<section id="utility"><h2>Utility: predicting '{{ u.target }}' ({{ u.task }})</h2>
{% if u.note %}<div class="warn">{{ u.note }}</div>{% endif %}
<table><tr><th>metric</th><th>train real, test real (TRTR)</th><th>train synthetic, test real (TSTR)</th><th>ratio</th></tr>
{% for k, v in u.trtr.items() %}<tr><td>{{ k }}</td><td class="num">{{ fmt(v) }}</td><td class="num">{{ fmt(u.tstr[k]) }}</td><td class="num">{{ fmt(u.ratio[k]) }}</td></tr>{% endfor %}
</table><p class="muted">HistGradientBoosting, native categorical support; {{ fmt(u.rows_train_real) }} real / {{ fmt(u.rows_train_synthetic) }} synthetic training rows, {{ fmt(u.rows_test) }} test rows.{% if u.positive_class %} Positive class: '{{ u.positive_class }}'.{% endif %}</p>
</section>{% endif %}

<section id="privacy"><h2>Privacy</h2>
<table><tr><th>figure</th><th>value</th><th>ideal</th><th>meaning</th></tr>
{% for row in privacy_rows %}<tr><td>{{ row[0] }}</td><td class="num">{{ fmt(row[1], 4) }}</td><td>{{ row[2] }}</td><td class="muted">{{ row[3] }}</td></tr>{% endfor %}
</table><p class="muted">Distances: SDMetrics' DCR distance (mean over columns of |difference| / range for numbers, mismatch for categories).</p>
{% if attack_rows %}<h3>Attacks</h3>
<table><tr><th>attack</th><th>value</th><th>confidence interval</th><th>ideal</th><th>meaning</th></tr>
{% for row in attack_rows %}<tr><td>{{ row[0] }}</td><td class="num">{{ fmt(row[1], 4) }}</td><td class="num">{{ row[2] }}</td><td>{{ row[3] }}</td><td class="muted">{{ row[4] }}</td></tr>{% endfor %}
</table>{% endif %}
{% for kind, note in attack_notes %}<p class="{{ 'warn' if kind == 'warn' else 'muted' }}">{{ note }}</p>{% endfor %}
</section>

{% if fairness %}<section id="fairness"><h2>Fairness</h2>
{% for f in fairness %}<h3>{{ f.attribute }}</h3>
{% if f.demographic_parity %}<table><tr><th>demographic parity difference ({{ f.outcome }})</th><th>value</th></tr>
<tr><td>model trained on real rows</td><td class="num">{{ fmt(f.demographic_parity.model_trained_on_real) }}</td></tr>
<tr><td>model trained on synthetic rows</td><td class="num">{{ fmt(f.demographic_parity.model_trained_on_synthetic) }}</td></tr>
<tr><td>holdout labels themselves</td><td class="num">{{ fmt(f.demographic_parity.holdout_labels) }}</td></tr></table>{% endif %}
<div class="scroll"><table><tr><th>group</th><th>real share</th><th>synthetic share</th><th>difference</th>{% if f.demographic_parity %}<th>rate, model on real</th><th>rate, model on synthetic</th>{% endif %}</tr>
{% for g in f.groups %}<tr><td>{{ g.group }}</td><td class="num">{{ fmt(g.real_share) }}</td><td class="num">{{ fmt(g.synthetic_share) }}</td><td class="num">{{ fmt(g.difference) }}</td>
{% if f.demographic_parity %}<td class="num">{{ fmt(g.rate_model_real) }}</td><td class="num">{{ fmt(g.rate_model_synthetic) }}</td>{% endif %}</tr>{% endfor %}
</table></div><div id="fig-groups-{{ loop.index0 }}" class="plot"></div>
{% endfor %}</section>{% endif %}

<section id="coverage"><h2>Coverage</h2>
<p>Category coverage <b>{{ fmt(cov.category_coverage) }}</b>, range coverage <b>{{ fmt(cov.range_coverage) }}</b> (1 = everything the real data has).</p>
{% for w in cov.warnings %}<div class="warn">{{ w }}</div>{% endfor %}
<div class="scroll"><table><tr><th>column</th><th>metric</th><th>coverage</th><th>real distinct</th><th>synthetic distinct</th></tr>
{% for r in cov.columns %}<tr><td>{{ r.column }}</td><td>{{ r.metric }}</td><td class="num">{{ fmt(r.coverage) }}</td><td class="num">{{ fmt(r.real_distinct) }}</td><td class="num">{{ fmt(r.synthetic_distinct) }}</td></tr>{% endfor %}
</table></div></section>

<section id="constraints"><h2>Constraints</h2><p>{{ con.status }}</p>
{% if con.rules %}<table><tr><th>rule</th><th>status</th><th>synthetic valid</th><th>real valid</th></tr>
{% for r in con.rules %}<tr><td>{{ r.rule }}</td><td>{{ r.status }}</td><td class="num">{{ fmt(r.synthetic_valid_share) }}</td><td class="num">{{ fmt(r.real_valid_share) }}</td></tr>{% endfor %}
</table>{% endif %}</section>
{% for x in extra_sections %}<section id="{{ x.id }}"><h2>{{ x.title }}</h2>{{ x.html }}</section>
{% endfor %}<p class="muted">Computed in {{ total_s }} s ({{ timings }}). Every figure is also in the JSON file written beside this report.</p>
</main>
<script>{{ plotly_js }}</script>
<script type="application/json" id="report-figures">{{ specs_json }}</script>
<script>
(function () {
  var specs = JSON.parse(document.getElementById("report-figures").textContent);
  var ids = Object.keys(specs), done = 0;
  var cfg = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["toImage"]};
  ids.forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var c = Object.assign({}, cfg, {displayModeBar: id.indexOf("fig-dist-") === 0 ? false : "hover"});
    Plotly.newPlot(el, specs[id].data, specs[id].layout, c).then(function () {
      done += 1; document.body.setAttribute("data-plots-rendered", String(done));
    }).catch(function (err) { window.__reportErrors.push(String(err)); document.body.setAttribute("data-js-errors", window.__reportErrors.join(" | ")); });
  });
})();
</script>
</body></html>
"""


def _privacy_rows(p: dict[str, Any]) -> list[tuple[str, Any, str, str]]:
    rows = [("Exact-copy rate", p.get("exact_copy_rate"), "0", "share of synthetic rows identical to a training row")]
    if "holdout_exact_copy_rate" in p:
        rows.append(("Holdout exact-copy rate (baseline)", p["holdout_exact_copy_rate"], "-", "the same for real rows the model never saw"))
    if "dcr_share" in p:
        rows += [("DCR share", p["dcr_share"], "0.5", "share of synthetic rows closer to a training row than to a holdout row (ties half)"),
                 ("SDMetrics DCROverfittingProtection", p.get("dcr_overfitting_protection"), "1", "min(2 x (1 - strictly closer to training), 1)"),
                 ("Median DCR to holdout", p.get("median_dcr_holdout"), "-", "distance from a synthetic row to its closest holdout row")]
    rows += [("Median DCR to training", p.get("median_dcr_train"), "high", "distance from a synthetic row to its closest training row"),
             ("Synthetic rows at distance 0", p.get("share_dcr_zero"), "0", "share with an identical training row (learned columns)"),
             ("NNDR median", p.get("nndr_median"), "near baseline", "closest / second-closest training distance; near 0 = a near copy stands out"),
             ("NNDR 5th percentile", p.get("nndr_p05"), "high", "the most copy-like synthetic rows")]
    if "nndr_holdout_median" in p:
        rows.append(("NNDR median, holdout rows (baseline)", p["nndr_holdout_median"], "-", "the same figure for real rows the model never saw"))
    if "mia_auc" in p:
        rows += [("Membership-inference attack ROC AUC", p["mia_auc"], "0.5", "attacker ranks real rows by closeness to synthetic rows to spot training rows"),
                 ("Attack advantage", p.get("mia_advantage"), "0", "2 x AUC - 1, floored at 0")]
    return rows


def _attack_rows(p: dict[str, Any]) -> tuple[list[tuple[str, Any, str, str, str]], list[tuple[str, str]]]:
    """Rows of the attack table (DOMIAS, Anonymeter's three risks with their intervals) and notes."""
    a = p.get("attacks") or {}
    rows: list[tuple[str, Any, str, str, str]] = []
    notes: list[tuple[str, str]] = []
    if "domias_auc" in a:
        rows.append(("DOMIAS density membership attack ROC AUC", a["domias_auc"], "", "0.5",
                     "ranks real rows by synthetic density / reference density at the row; spots training rows where the model overfits"))
    elif a.get("domias_skipped"):
        notes.append(("warn", f"DOMIAS attack skipped: {a['domias_skipped']}"))
    an = a.get("anonymeter") or {}
    if an.get("skipped"):
        notes.append(("warn", an["skipped"]))
    level = an.get("confidence_level", 0.95)

    def ci(r: dict[str, Any]) -> str:
        lo, hi = r.get("ci") or (None, None)
        return "" if lo is None else f"{level:.0%}: [{lo:.3f}, {hi:.3f}]"

    meanings = {
        "singling_out": "Anonymeter: share of predicates built from synthetic rows that isolate exactly one training row, beyond control rows (highest of univariate and 3-column)",
        "linkability": "Anonymeter: share of people whose two halves of columns are linked through their nearest synthetic rows, beyond control rows",
        "inference": "Anonymeter: how much better than for control rows a column is guessed from the others (highest over columns)",
    }
    for key, label in (("singling_out", "Singling-out risk"), ("linkability", "Linkability risk"), ("inference", "Attribute-inference risk")):
        r = an.get(key)
        if r:
            extra = f" (worst column: {r['secret']})" if key == "inference" and r.get("secret") else ""
            rows.append((label + extra, r["risk"], ci(r), "0", meanings[key]))
    if an.get("n_attacks"):
        notes.append(("info", f"Anonymeter: {an['n_attacks']:,} attacks per risk on {an.get('rows_train', 0):,} training rows "
                     f"and as many control (holdout) rows; a risk is 0 when the attack does no better on training rows than on rows the model never saw."))
    return rows, notes


_TEXT_ROWS = [
    ("length_ks_similarity", "Length KS similarity", "1"), ("vocabulary_similarity", "Vocabulary similarity (1 - TVD)", "1"),
    ("char_ngram_similarity", "Character 3-gram similarity (1 - TVD)", "1"), ("detection_auc", "Detection AUC (TF-IDF + structured)", "0.5"),
    ("agreement_rate", "Row-text agreement", "1"),
]


def text_sections(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One report section for the free-text columns (built from `data["text"]`), escaped here."""
    from markupsafe import escape

    text = data.get("text") or {}
    if not text:
        return []
    parts = []
    for col, m in text.items():
        rows = [(label, m.get(key), ideal) for key, label, ideal in _TEXT_ROWS if key in m]
        for key, label in (("distinct_1", "Distinct-1"), ("distinct_2", "Distinct-2"), ("mean_chars", "Mean length (characters)")):
            v = m.get(key) or {}
            rows.append((f"{label}: real / synthetic", f"{_fmt(v.get('real'))} / {_fmt(v.get('synthetic'))}", "similar"))
        cp = m.get("copy") or {}
        rows.append((f"Longest token run shared with a real text: max / mean", f"{cp.get('max')} / {_fmt(cp.get('mean'))}", "small"))
        rows.append((f"Share of texts with a copied run of {cp.get('threshold')}+ tokens", _fmt(cp.get("share_at_or_above")), "0"))
        body = "".join(f"<tr><td>{escape(a)}</td><td>{escape(b if isinstance(b, str) else _fmt(b))}</td><td>{escape(c)}</td></tr>"
                       for a, b, c in rows)
        parts.append(f"<h3>{escape(col)}</h3><table><tr><th>figure</th><th>value</th><th>ideal</th></tr>{body}</table>")
    return [{"id": "text", "title": "Free text", "html": "".join(parts)}]


def render_html(data: dict[str, Any], title: str | None = None, extra_sections: list[dict[str, Any]] | None = None) -> str:
    """The report page for one evaluation's `data` (an `EvaluationResult.data`). `extra_sections`:
    [{id, title, html (trusted markup), figures: {div id: plotly spec}}] appended after the built-in ones."""
    specs = figure_specs(data)
    extra = [{**x, "html": Markup(x.get("html", ""))} for x in text_sections(data) + list(extra_sections or [])]
    for x in extra:
        specs.update(x.get("figures") or {})
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    tmpl = env.from_string(_TEMPLATE)
    rows = data.get("rows", {})
    timings = data.get("timings_s", {})
    specs_json = json.dumps(specs, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    attack_rows, attack_notes = _attack_rows(data.get("privacy") or {})
    sub = f"{rows.get('real', 0):,} real rows, {rows.get('synthetic', 0):,} synthetic rows" + (
        f", {rows['holdout']:,} holdout rows" if rows.get("holdout") else ", no holdout")
    return tmpl.render(
        title=title or "Synthetic data report", subtitle=sub, cards=data.get("summary", []), fmt=_fmt,
        warnings=(data.get("coverage") or {}).get("warnings", []), q=data["fidelity"]["quality"],
        det=(data.get("fidelity") or {}).get("detection"), has=lambda k: k in specs, n_plots=len(specs),
        pair_note=((data.get("plots") or {}).get("pair_gaps") or {}).get("note", ""),
        proj_note=((data.get("plots") or {}).get("projection") or {}).get("method", ""),
        dist_ids=[k for k in specs if k.startswith("fig-dist-")], real_color=_REAL, synth_color=_SYNTH,
        u=data.get("utility"), privacy_rows=_privacy_rows(data.get("privacy") or {}), fairness=data.get("fairness") or [],
        attack_rows=attack_rows, attack_notes=attack_notes,
        cov=data.get("coverage") or {}, con=data.get("constraints") or {},
        total_s=f"{sum(timings.values()):.1f}", timings=", ".join(f"{k} {v:.1f} s" for k, v in timings.items()),
        plotly_js=Markup(plotly_js().replace("</script", "<\\/script")),
        specs_json=Markup(specs_json), extra_sections=extra,
    )
