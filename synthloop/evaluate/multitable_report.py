"""The database report: one self-contained HTML page (plotly.js inlined) with the SDMetrics multi-table
figures, a section per table (column shapes, pair trends) and per relationship (cardinality plot,
parent-child pair trends), and the per-entity sequence statistics."""
from __future__ import annotations

import json
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from synthloop.evaluate.multitable import cardinality, multi_table_quality, referential_integrity, single_keys, sequence_statistics
from synthloop.evaluate.report import _REAL, _SYNTH, _fmt, _layout, plotly_js
from synthloop.schema.metadata import Metadata

_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:left}h2{margin-top:28px}.cards span{display:inline-block;
border:1px solid #ccc;border-radius:6px;padding:8px 12px;margin:4px}</style>
<script>{{ plotly_js }}</script></head><body>
<h1>{{ title }}</h1><p>{{ subtitle }}</p>
<div class="cards">{% for k, v in cards %}<span><b>{{ k }}</b><br>{{ fmt(v) }}</span>{% endfor %}</div>
<h2 id="tables">Tables</h2>
<table><tr><th>table</th><th>rows real</th><th>rows synthetic</th><th>quality</th><th>column shapes</th><th>column pair trends</th></tr>
{% for t, r in tables.items() %}<tr><td>{{ t }}</td><td>{{ fmt(r.rows_real) }}</td><td>{{ fmt(r.rows_synthetic) }}</td>
<td>{{ fmt(r.quality_score) }}</td><td>{{ fmt(r.column_shapes) }}</td><td>{{ fmt(r.column_pair_trends) }}</td></tr>{% endfor %}</table>
{% for t, rows in shapes.items() %}<h3>{{ t }}: column shapes</h3><table><tr><th>column</th><th>metric</th><th>score</th></tr>
{% for r in rows %}<tr><td>{{ r.column }}</td><td>{{ r.metric }}</td><td>{{ fmt(r.score) }}</td></tr>{% endfor %}</table>{% endfor %}
<h2 id="relationships">Relationships</h2>
{% for rel in relationships %}<h3>{{ rel.relationship }}</h3>
<p>cardinality similarity {{ fmt(rel.score) }}; children per parent: real {{ fmt(rel.mean_children_real) }},
synthetic {{ fmt(rel.mean_children_synthetic) }}; referential integrity {{ fmt(integrity[rel.relationship]) }}</p>
<div id="{{ rel.fig }}"></div>
{% if rel.pairs %}<table><tr><th>parent column</th><th>child column</th><th>metric</th><th>score</th><th>counted</th></tr>
{% for p in rel.pairs %}<tr><td>{{ p.column_1 }}</td><td>{{ p.column_2 }}</td><td>{{ p.metric }}</td><td>{{ fmt(p.score) }}</td>
<td>{{ fmt(p.counted) }}</td></tr>{% endfor %}</table>{% endif %}{% endfor %}
{% if sequences %}<h2 id="sequences">Sequences</h2><table><tr><th>table</th><th>length KS similarity</th><th>gap KS similarity</th>
<th>order violations</th><th>mean length real</th><th>mean length synthetic</th></tr>
{% for t, s in sequences.items() %}<tr><td>{{ t }}</td><td>{{ fmt(s.length_ks) }}</td><td>{{ fmt(s.gap_ks) }}</td><td>{{ fmt(s.order_violations) }}</td>
<td>{{ fmt(s.mean_length_real) }}</td><td>{{ fmt(s.mean_length_synthetic) }}</td></tr>{% endfor %}</table>{% endif %}
<script>const specs = {{ specs_json }};for (const [id, s] of Object.entries(specs)) {Plotly.newPlot(id, s.data, s.layout, {displayModeBar: false});}</script>
</body></html>"""


def _card_spec(real: np.ndarray, synth: np.ndarray, title: str) -> dict[str, Any]:
    top = int(max(np.percentile(real, 99) if real.size else 0, 1))
    bins = np.arange(0, top + 2)

    def hist(x: np.ndarray) -> list[float]:
        h = np.bincount(np.minimum(x.astype(int), top + 1), minlength=top + 2)[: top + 2]
        return (h / max(h.sum(), 1)).tolist()

    data = [{"type": "bar", "name": "real", "x": bins.tolist(), "y": hist(real), "marker": {"color": _REAL}},
            {"type": "bar", "name": "synthetic", "x": bins.tolist(), "y": hist(synth), "marker": {"color": _SYNTH}}]
    return {"data": data, "layout": _layout(title, showlegend=True, barmode="group",
                                            xaxis={"title": {"text": f"children per parent (last bar: more than {top})"}})}


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def database_report_html(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
                         title: str | None = None) -> tuple[str, dict[str, Any]]:
    """(HTML page, the figures as plain data) for a synthetic database against the real one."""
    q = multi_table_quality(real, synthetic, metadata)
    integ = referential_integrity(synthetic, metadata)
    seq = sequence_statistics(real, synthetic, metadata)
    user = metadata
    real, synthetic, metadata = single_keys(real, synthetic, metadata)  # composite keys: on their surrogates
    specs: dict[str, Any] = {}
    rels = []
    inter = q["intertable_pairs"]
    for i, r in enumerate(_records(q["relationships"])):
        rel = metadata.relationships[i]
        fig = f"fig-card-{i}"
        specs[fig] = _card_spec(cardinality(real[rel.parent][rel.parent_key], real[rel.child][rel.child_key]),
                                cardinality(synthetic[rel.parent][rel.parent_key], synthetic[rel.child][rel.child_key]),
                                f"children of {rel.parent} in {rel.child} ({r['foreign_key'] if not rel.child_key.startswith('__fk.') else r['relationship']})")
        pairs = _records(inter[inter["relationship"] == r["relationship"]]) if len(inter) and "relationship" in inter else []
        rels.append({**r, "fig": fig, "pairs": pairs})
    shapes = {t: _records(g) for t, g in q["shapes"].groupby("table", sort=False)} if len(q["shapes"]) else {}
    cards = [("quality (SDMetrics definition)", q["quality_score"]), ("column shapes", q["column_shapes"]),
             ("column pair trends", q["column_pair_trends"]), ("cardinality", q["cardinality"]),
             ("intertable trends", q["intertable_trends"]), ("referential integrity", min(integ.values()) if integ else 1.0)]
    specs_json = json.dumps(specs, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    env = jinja2.Environment(autoescape=True)
    html = env.from_string(_TEMPLATE).render(
        title=title or "Synthetic database report", cards=cards, fmt=_fmt, tables=q["tables"], shapes=shapes,
        subtitle=f"{len(user.tables)} tables, {len(user.relationships)} relationships; "
                 f"{sum(len(v) for v in real.values()):,} real rows, {sum(len(v) for v in synthetic.values()):,} synthetic rows",
        relationships=rels, integrity=integ, sequences=seq, specs_json=Markup(specs_json),
        plotly_js=Markup(plotly_js().replace("</script", "<\\/script")))
    data = {k: q[k] for k in ("quality_score", "column_shapes", "column_pair_trends", "cardinality", "intertable_trends")}
    data.update(integrity=integ, sequences=seq, tables=q["tables"], relationships=_records(q["relationships"]))
    return html, data
