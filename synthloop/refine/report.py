"""The "refinement history" section: the trajectory of every target over iterations (a plotly spec)
and a table per iteration of checks, diagnoses and actions with their diffs. It goes into the
evaluation report when a real table exists, else into a small page of its own."""
from __future__ import annotations

import html
import json
from typing import Any

from synthloop.refine.loop import RefineResult

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _target_value(text: str) -> float | None:
    for tok in text.replace("[", " ").replace("]", " ").replace(",", " ").split():
        try:
            return float(tok)
        except ValueError:
            continue
    return None


def trajectory_spec(result: RefineResult) -> dict[str, Any]:
    """One line per target (value by iteration) plus its target as a dotted line of the same colour."""
    metrics = list(dict.fromkeys(c["metric"] for rec in result.history for c in rec["checks"]))
    its = [rec["iteration"] for rec in result.history]
    data = []
    for i, name in enumerate(metrics):
        color = _COLORS[i % len(_COLORS)]
        vals = [next((c["value"] for c in rec["checks"] if c["metric"] == name), None) for rec in result.history]
        data.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": its, "y": vals, "line": {"color": color}})
        tgt = next((c["target"] for rec in result.history for c in rec["checks"] if c["metric"] == name), "")
        tv = _target_value(tgt)
        if tv is not None:
            data.append({"type": "scatter", "mode": "lines", "name": f"target {name}", "x": its, "y": [tv] * len(its),
                         "line": {"color": color, "dash": "dot", "width": 1}, "showlegend": False, "hoverinfo": "name+y"})
    layout = {"title": {"text": "Refinement trajectory: value of each target by iteration (dotted: target)", "font": {"size": 13}},
              "height": 420, "margin": {"l": 50, "r": 10, "t": 40, "b": 40}, "showlegend": True,
              "legend": {"orientation": "h", "y": -0.2}, "xaxis": {"title": {"text": "iteration"}, "dtick": 1},
              "yaxis": {"title": {"text": "value"}}, "paper_bgcolor": "white", "plot_bgcolor": "#fafafa"}
    return {"data": data, "layout": layout}


def _fmt(v: Any, missing: str = "n/a") -> str:
    if v is None:
        return missing
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))


def history_html(result: RefineResult) -> str:
    e = html.escape
    out = [f"<p>{result.iterations} iteration(s), {result.seconds:.1f} s; stopped: <b>{e(result.stop_reason)}</b>. "
           f"Output = iteration {result.best_iteration} ({'all targets met' if result.met else 'best found; some targets missed'}).</p>",
           '<div id="fig-refine-trajectory" class="plot"></div>']
    for rec in result.history:
        best = " (kept)" if rec["iteration"] == result.best_iteration else ""
        out.append(f"<h3>Iteration {rec['iteration']}{best}: {rec['rows']:,} rows, {rec['n_unmet']} target(s) missed, "
                   f"{rec['seconds']['total']:.1f} s</h3>")
        out.append("<table><tr><th>metric</th><th>target</th><th>value</th><th>met</th></tr>")
        for c in rec["checks"]:
            badge = '<span class="badge good">met</span>' if c["met"] else '<span class="badge poor">missed</span>'
            out.append(f"<tr><td>{e(c['metric'])}</td><td>{e(c['target'])}</td><td class=\"num\">{_fmt(c['value'])}</td><td>{badge}</td></tr>")
        out.append("</table>")
        if rec["diagnoses"]:
            out.append("<p><b>Diagnoses</b></p><ul>" + "".join(f"<li>{e(d['kind'])}: {e(d['summary'])}</li>" for d in rec["diagnoses"]) + "</ul>")
        for f in rec.get("fill_bins") or []:
            out.append(f"<p><b>Bins refilled</b> {e(f['column'])}: {f['replaced']} of {f['requested']} rows replaced by "
                       f"{e(f['method'])}{'; ' + e(f['reason']) if f.get('reason') else ''}</p>")
        for a in rec["actions"]:
            out.append(f"<p><b>Action</b> {e(a['summary'])}<br><span class=\"muted\">why: {e(a['why'])}</span></p>")
            if a.get("refused"):
                out.append("<ul>" + "".join(f"<li>refused rewrite: {e(r['reason'])}</li>" for r in a["refused"]) + "</ul>")
            if a["diff"]:
                out.append('<div class="scroll"><table><tr><th>changed</th><th>before</th><th>after</th></tr>' + "".join(
                    f"<tr><td>{e(d['path'])}</td><td>{_fmt(d['before'], 'unset')}</td><td>{_fmt(d['after'], 'unset')}</td></tr>" for d in a["diff"][:40]) + "</table></div>")
    return "\n".join(out)


def history_section(result: RefineResult) -> dict[str, Any]:
    """An `extra_sections` entry for `synthloop.evaluate.report.render_html`."""
    return {"id": "refinement-history", "title": "Refinement history", "html": history_html(result),
            "figures": {"fig-refine-trajectory": trajectory_spec(result)}}


def standalone_html(result: RefineResult, title: str) -> str:
    """A page with only the refinement history (prompted specs have no real table to evaluate against)."""
    from synthloop.evaluate.report import plotly_js

    sec = history_section(result)
    spec = json.dumps(sec["figures"], allow_nan=False).replace("</", "<\\/")
    js = plotly_js().replace("</script", "<\\/script")
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1100px;margin:0 auto;padding:18px;color:#1f2937}}
table{{border-collapse:collapse;font-size:13px;margin:6px 0 10px}}th,td{{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:left}}
td.num{{text-align:right}}.badge{{font-size:11px;padding:1px 7px;border-radius:10px;color:#fff}}.badge.good{{background:#16a34a}}.badge.poor{{background:#dc2626}}
.muted{{color:#6b7280;font-size:12px}}.scroll{{max-height:420px;overflow:auto}}</style></head>
<body><h1>{html.escape(title)}</h1><section id="{sec['id']}"><h2>{sec['title']}</h2>{sec['html']}</section>
<script>{js}</script>
<script type="application/json" id="report-figures">{spec}</script>
<script>var s=JSON.parse(document.getElementById("report-figures").textContent);
Object.keys(s).forEach(function(id){{Plotly.newPlot(document.getElementById(id), s[id].data, s[id].layout, {{displaylogo:false}});}});</script>
</body></html>"""
