"""What `synthloop autopilot` writes: the best trial's rows, a JSON of every trial, and an HTML report
(the evaluation of the best rows plus a search section: the Pareto front of utility vs privacy vs
fidelity as a plot, every trial with why it ended, and the gap slices before and after)."""
from __future__ import annotations

import html
import math
import json
from pathlib import Path
from typing import Any

from synthloop.refine.autopilot import AutopilotResult


def autopilot_paths(out: Path) -> dict[str, Path]:
    """The data file and, beside it, the search JSON, the report and the default journal."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    if out.name.endswith(".csv.gz"):
        stem = out.name[: -len(".csv.gz")]
    return {"data": out, "json": out.with_name(stem + ".autopilot.json"), "report": out.with_name(stem + ".report.html"),
            "journal": out.with_name(stem + ".journal")}


def pareto_spec(result: AutopilotResult) -> dict[str, Any]:
    """Utility (y) vs privacy |DCR share - 0.5| (x), marker colour = quality; the front joined by a line."""
    metric = result.objective["metric"]
    done = [t for t in result.trials if t.get("figures") and math.isfinite(t["figures"]["score"])
            and all(math.isfinite(t["figures"].get(k) or 0.0) for k in ("dcr_share", "quality_score"))]

    def pts(ts: list[dict[str, Any]]) -> dict[str, list[Any]]:
        return {"x": [abs((t["figures"].get("dcr_share") or 0.5) - 0.5) for t in ts], "y": [t["figures"]["score"] for t in ts],
                "c": [t["figures"].get("quality_score") for t in ts],
                "text": [f"trial {t['number']}: {t['params'].get('model')}, quality {t['figures'].get('quality_score', 0):.3f}"
                         + ("" if t["feasible"] else " (breaks a floor)") for t in ts]}

    feas, infeas = pts([t for t in done if t["feasible"]]), pts([t for t in done if not t["feasible"]])
    front = sorted((t for t in done if t["number"] in result.pareto), key=lambda t: abs((t["figures"].get("dcr_share") or 0.5) - 0.5))
    fr = pts(front)
    data = [{"type": "scatter", "mode": "markers", "name": "within the floors", "x": feas["x"], "y": feas["y"], "text": feas["text"],
             "marker": {"size": 10, "color": feas["c"], "colorscale": "Viridis", "showscale": True,
                        "colorbar": {"title": {"text": "quality"}}}},
            {"type": "scatter", "mode": "markers", "name": "breaks a floor", "x": infeas["x"], "y": infeas["y"], "text": infeas["text"],
             "marker": {"size": 8, "symbol": "x", "color": "#9ca3af"}},
            {"type": "scatter", "mode": "lines", "name": "Pareto front", "x": fr["x"], "y": fr["y"], "text": fr["text"],
             "line": {"color": "#dc2626", "dash": "dot"}}]
    layout = {"title": {"text": f"Trials: {metric} on real validation rows vs privacy (|DCR share - 0.5|, left is better); "
                                "colour = quality", "font": {"size": 13}},
              "height": 420, "margin": {"l": 55, "r": 10, "t": 40, "b": 45}, "showlegend": True,
              "legend": {"orientation": "h", "y": -0.2}, "xaxis": {"title": {"text": "|DCR share - 0.5|"}},
              "yaxis": {"title": {"text": metric}}, "paper_bgcolor": "white", "plot_bgcolor": "#fafafa"}
    return {"data": data, "layout": layout}


def _f(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape(str(v))


def search_html(result: AutopilotResult) -> str:
    e = html.escape
    o = result.objective
    b = result.best
    out = [f"<p>Objective: <b>{e(o['metric'])}</b> of a {e(o['model'] if not o.get('command') else 'user command')} judge "
           f"predicting <b>{e(o['target'])}</b>, trained on {'synthetic rows only' if o['mode'] == 'synthetic' else 'real plus synthetic rows'}, "
           f"scored on real validation rows (mean over {o.get('bootstrap', 0)} seeded bootstrap resamples, seed {o['seed']}). "
           f"{len(result.trials)} trials, {result.seconds:.0f} s this run.</p>"]
    base = result.baseline.get("real_only") or result.baseline.get("train_real")
    if base:
        out.append(f"<p>Real rows only: {_f(base['score'])} (spread {_f(base['spread'])}).</p>")
    if b:
        out.append(f"<p>Best trial within every floor: <b>#{b['number']}</b>, {e(o['metric'])} <b>{_f(b['figures']['score'])}</b> "
                   f"(spread {_f(b['figures']['spread'])}; gain over real rows only {_f(b['figures'].get('gain'))} "
                   f"&plusmn; {_f(b['figures'].get('gain_se'))}), DCR share {_f(b['figures'].get('dcr_share'))}, quality "
                   f"{_f(b['figures'].get('quality_score'))}; settings <code>{e(json.dumps(b['params'], default=str))}</code>.</p>")
    else:
        out.append("<p class='warn'>No trial stayed within every floor: no rows are reported.</p>")
    floors = ", ".join(f"{k} {'>= ' + format(v['min'], 'g') if v.get('min') is not None else ''}"
                       f"{' and ' if v.get('min') is not None and v.get('max') is not None else ''}"
                       f"{'<= ' + format(v['max'], 'g') if v.get('max') is not None else ''}" for k, v in result.floors.items())
    out.append(f"<p>Floors: {e(floors) or 'none'}. Pareto front (utility, privacy, fidelity): trials {e(', '.join(map(str, result.pareto)))}.</p>")
    out.append('<div id="fig-autopilot-pareto" class="plot"></div>')
    agree = any((t.get("figures") or {}).get("agreement") is not None for t in result.trials)
    out.append("<h3>Trials</h3><div class='scroll'><table><tr><th>#</th><th>model</th><th>settings</th><th>score</th>"
               "<th>gain &plusmn; s.e.</th><th>DCR share</th><th>MIA AUC</th><th>quality</th>"
               + ("<th>LLM agreement</th>" if agree else "") + "<th>seconds</th><th>why it ended</th></tr>")
    for t in result.trials:
        f = t.get("figures") or {}
        gain = f"{_f(f.get('gain'))} &plusmn; {_f(f.get('gain_se'))}" if f.get("gain") is not None else "n/a"
        params = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in t["params"].items() if k != "model"}
        mark = " (best)" if b and t["number"] == b["number"] else (" (front)" if t["number"] in result.pareto else "")
        out.append(f"<tr><td>{t['number']}{mark}</td><td>{e(str(t['params'].get('model', '')))}</td><td>{e(json.dumps(params, default=str))}</td>"
                   f"<td class='num'>{_f(f.get('score'))}</td><td class='num'>{gain}</td><td class='num'>{_f(f.get('dcr_share'))}</td>"
                   f"<td class='num'>{_f(f.get('mia_auc'))}</td><td class='num'>{_f(f.get('quality_score'))}</td>"
                   + (f"<td class='num'>{_f(f.get('agreement'))}</td>" if agree else "")
                   + f"<td class='num'>{_f(t.get('seconds'))}</td><td>{e(str(t.get('ended')))}</td></tr>")
    out.append("</table></div>")
    g = result.gaps.get("slices") or []
    if g:
        out.append(f"<h3>Data gaps: where the judge trained on real rows is weakest ({e(result.gaps.get('loss', ''))})</h3>"
                   "<table><tr><th>slice</th><th>rows</th><th>loss, real only</th><th>loss, best training set</th>"
                   "<th>error rate before</th><th>error rate after</th><th>proposed generation</th></tr>")
        for s in g:
            out.append(f"<tr><td>{e(s['label'])}</td><td class='num'>{s['rows']}</td><td class='num'>{_f(s['loss'])}</td>"
                       f"<td class='num'>{_f(s.get('loss_after'))}</td><td class='num'>{_f(s.get('error_rate'))}</td>"
                       f"<td class='num'>{_f(s.get('error_rate_after'))}</td><td><code>{e(json.dumps(s['condition'], default=str))}</code></td></tr>")
        out.append("</table><p class='muted'>Overall loss on validation rows: " + _f(result.gaps.get("overall_loss")) + ".</p>")
    return "\n".join(out)


def search_section(result: AutopilotResult) -> dict[str, Any]:
    return {"id": "autopilot", "title": "Autopilot search", "html": search_html(result),
            "figures": {"fig-autopilot-pareto": pareto_spec(result)}}


def write_autopilot_outputs(result: AutopilotResult, ap: Any, out: Path, report: bool = True) -> dict[str, Path]:
    """Best rows, the search JSON and the HTML report (see module docstring)."""
    from synthloop.io import write_table, write_text

    paths = autopilot_paths(out)
    paths.pop("journal")
    if result.data is not None:
        write_table(result.data, paths["data"])
    else:
        paths.pop("data")
    write_text(json.dumps(result.to_dict(), indent=2, default=str, allow_nan=True), paths["json"])
    if not report:
        paths.pop("report")
        return paths
    if result.data is not None:
        from synthloop.evaluate.report import render_html
        from synthloop.evaluate.suite import evaluate

        sp = ap.split
        # cross-validated searches refit on every real row: no row is left to be a holdout (the search's
        # privacy figures, measured with a held-out fold, are in the search section)
        real, holdout = (ap.cv_rows, None) if getattr(ap, "cv", False) else (sp.train, sp.validation)
        ev = evaluate(real, result.data, holdout=holdout, target=ap.objective.target, schema=sp.schema,
                      protected=ap.protected or None, seed=ap.targets.seed, max_rows=3000, attacks=False)
        write_text(render_html(ev.data, title=f"synthloop autopilot: {out.name}", extra_sections=[search_section(result)]),
                   paths["report"])
    else:
        from synthloop.evaluate.report import plotly_js

        sec = search_section(result)
        specs = json.dumps(sec["figures"], allow_nan=False).replace("</", "<\\/")
        write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>synthloop autopilot</title></head><body>"
                   f"<h1>synthloop autopilot</h1>{sec['html']}<script>{plotly_js()}</script><script>var s={specs};"
                   "for (var k in s) {Plotly.newPlot(k, s[k].data, s[k].layout);}</script></body></html>", paths["report"])
    return paths
