"""Building, writing and verifying a certificate (see docs/certificate.md).

A certificate is a JSON document: the policy, every criterion with its measured value, bound,
pass/fail and how it was measured (metric definition, seed, rows compared), the SHA-256 and size of
the real, synthetic, holdout, model and history files, the software versions, the generation history
(the history file's JSON, when given) and an Ed25519 signature over all of it. Its HTML twin shows
the same for people. `verify_certificate` checks the signature and re-hashes the files.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloop.certify.policy import CRITERIA, Policy
from synthloop.errors import SynthloopError

FORMAT = "synthloop-certificate"
FORMAT_VERSION = 1
_PACKAGES = ("synthloop", "numpy", "pandas", "scipy", "scikit-learn", "torch", "cryptography", "optuna")
_MAX_HISTORY_BYTES = 2_000_000


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path, rows: int | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"path": str(path), "name": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    if rows is not None:
        e["rows"] = int(rows)
    return e


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def measure(policy: Policy, real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None,
            model: Any | None = None) -> list[dict[str, Any]]:
    """Every criterion of `policy` measured: name, value, bound, status (pass/fail/not applicable), how."""
    from synthloop.evaluate._frames import limited_threads
    from synthloop.schema import infer_schema

    schema = infer_schema(real)
    missing = [c for c in schema.names if c not in synthetic.columns]
    if missing:
        raise SynthloopError(f"the synthetic table lacks column '{missing[0]}' of the real table")
    n, seed = policy.sample_rows, policy.seed
    rng = np.random.default_rng(seed)

    def sub(df: pd.DataFrame | None) -> pd.DataFrame | None:
        if df is None or len(df) <= n:
            return df
        return df.iloc[np.sort(rng.choice(len(df), n, replace=False))].reset_index(drop=True)

    r, s, h = sub(real), sub(synthetic), sub(holdout)
    crit = policy.criteria
    values: dict[str, tuple[float | None, str]] = {}
    sizes = f"{len(r):,} real, {len(s):,} synthetic" + (f", {len(h):,} holdout" if h is not None else "") + f" rows, seed {seed}"
    with limited_threads(1):
        if {"quality_score"} & set(crit):
            from synthloop.evaluate.quality import quality_score

            values["quality_score"] = (quality_score(r, s, schema).score, sizes)
        if "detection_auc" in crit:
            from synthloop.evaluate.detection import detection_score

            d = detection_score(r, s, schema, max_rows=n, random_state=seed)
            values["detection_auc"] = (d.get("detection_auc"), sizes)
        if "exact_copy_rate" in crit:
            from synthloop.evaluate.privacy import exact_copy_rate

            values["exact_copy_rate"] = (exact_copy_rate(real, synthetic, schema), f"all {len(real):,} real and {len(synthetic):,} synthetic rows")
        if {"dcr_share", "mia_auc"} & set(crit):
            if h is None:
                values["dcr_share"] = (None, "needs a holdout (--holdout): real rows the model never saw")
                values["mia_auc"] = (None, "needs a holdout (--holdout): real rows the model never saw")
            else:
                from synthloop.evaluate.privacy import privacy_figures

                p = privacy_figures(r, s, h, schema, max_rows=n, max_reference=n, random_state=seed, attack="mia_auc" in crit)
                values["dcr_share"] = (p.get("dcr_share"), sizes)
                values["mia_auc"] = (p.get("mia_auc"), sizes)
        if "tstr_ratio" in crit:
            if not policy.target:
                values["tstr_ratio"] = (None, "the policy names no `target` column")
            elif h is None:
                values["tstr_ratio"] = (None, "needs a holdout (--holdout) to test on")
            else:
                from synthloop.evaluate.utility import utility_scores

                u = utility_scores(r, s, h, policy.target, schema, max_rows=n, random_state=seed).figures
                values["tstr_ratio"] = (u["headline"]["ratio"], f"{u['headline']['metric']}, target '{policy.target}', {sizes}")
        if {"dp_epsilon", "dp_delta"} & set(crit):
            g = getattr(model, "privacy_guarantee", None) if model is not None else None
            g = g() if callable(g) else None
            why = "no model file given (--model)" if model is None else ("the model is not differentially private" if not g else "")
            eps = (g or {}).get("epsilon") if isinstance(g, dict) else None
            delta = (g or {}).get("delta") if isinstance(g, dict) else None
            values["dp_epsilon"] = (eps, why or "declared by the model file")
            values["dp_delta"] = (delta, why or "declared by the model file")
        if "constraint_adherence" in crit:
            if not policy.constraints:
                values["constraint_adherence"] = (None, "the policy declares no constraints")
            else:
                from synthloop.evaluate.adherence import constraint_adherence

                a = constraint_adherence(synthetic, policy.constraints, real)
                values["constraint_adherence"] = (a["adherence"], f"{len(policy.constraints)} rule(s) on all {len(synthetic):,} synthetic rows")
        if "fairness_parity" in crit:
            if not policy.protected:
                values["fairness_parity"] = (None, "the policy names no `protected` columns")
            else:
                from synthloop.evaluate.fairness import group_shares

                for c in policy.protected:
                    if c not in schema:
                        raise SynthloopError(f"policy protected column '{c}' is not in the real table")
                worst = max(group_shares(real, synthetic, c, schema)["max_abs_difference"] for c in policy.protected)
                values["fairness_parity"] = (worst, f"columns {', '.join(policy.protected)}, all rows")
    out = []
    for name, bound in crit.items():
        v, how = values.get(name, (None, "not measured"))
        v = _finite(v)
        if v is None:
            status = "not applicable"
        else:
            status = "pass" if bound.holds(v) else "fail"
        out.append({"criterion": name, "value": v, "bound": bound.model_dump(exclude_none=True), "bound_text": bound.text(),
                    "status": status, "definition": CRITERIA[name], "measured_on": how})
    return out


def build_certificate(policy: Policy, real_path: Path, synth_path: Path, holdout_path: Path | None,
                      model_path: Path | None = None, history_path: Path | None = None,
                      policy_path: Path | None = None) -> dict[str, Any]:
    """The unsigned certificate document (see module docstring)."""
    from synthloop.io import read_table

    real, synth = read_table(real_path), read_table(synth_path)
    holdout = read_table(holdout_path) if holdout_path else None
    model = None
    if model_path is not None:
        from synthloop.synthesizers.base import load_synthesizer

        model = load_synthesizer(model_path)
    criteria = measure(policy, real, synth, holdout, model)
    applicable = [c for c in criteria if c["status"] != "not applicable"]
    passed = all(c["status"] == "pass" for c in applicable) and (
        policy.not_applicable == "pass" or len(applicable) == len(criteria))
    files = {"real": file_entry(real_path, len(real)), "synthetic": file_entry(synth_path, len(synth))}
    if holdout_path:
        files["holdout"] = file_entry(holdout_path, len(holdout))
    if model_path:
        files["model"] = file_entry(model_path)
    if policy_path:
        files["policy"] = file_entry(policy_path)
    history: Any = None
    if history_path:
        files["history"] = file_entry(history_path)
        if history_path.stat().st_size <= _MAX_HISTORY_BYTES:
            try:
                history = json.loads(history_path.read_text(encoding="utf-8"), parse_constant=lambda c: None)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise SynthloopError(f"{history_path}: the history file is not JSON (give a refine .history.json or an autopilot .autopilot.json)") from None
        else:
            history = {"note": f"history file over {_MAX_HISTORY_BYTES:,} bytes: only its hash is recorded"}
    if model is not None:
        g = getattr(model, "privacy_guarantee", None)
        g = g() if callable(g) else None
        history = {"model": {"name": model.name, "params": {k: v for k, v in model.get_params().items() if _jsonable(v)},
                             "privacy_guarantee": g if _jsonable(g) else str(g)}, "history": history}
    doc = {"format": FORMAT, "version": FORMAT_VERSION,
           "issued_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
           "verdict": "pass" if passed else "fail", "passed": passed,
           "policy": policy.model_dump(mode="json"), "criteria": criteria, "files": files,
           "software": versions(), "generation_history": history}
    return json.loads(json.dumps(doc, default=str, allow_nan=True), parse_constant=lambda c: None)


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def verify_certificate(doc: dict[str, Any], public_key: Any | None, files: dict[str, Path | None],
                       base_dir: Path | None = None) -> dict[str, Any]:
    """Check the signature and every file hash. `files`: role -> path given on the command line (else
    the recorded path, then the recorded name beside the certificate)."""
    from synthloop.certify.signing import verify_signature

    if doc.get("format") != FORMAT:
        return {"valid": False, "signature": "not a synthloop certificate", "files": [], "problems": ["not a synthloop certificate"]}
    ok, why = verify_signature(doc, public_key)
    problems = [] if ok else [why]
    checked = []
    for role, entry in (doc.get("files") or {}).items():
        if not isinstance(entry, dict):
            problems.append(f"{role}: malformed file entry")
            continue
        candidates = [files.get(role)] if files.get(role) is not None else [Path(entry.get("path", "")),
                                                                              *([base_dir / entry.get("name", "")] if base_dir else [])]
        path = next((p for p in candidates if p is not None and p.is_file()), None)
        if path is None:
            problems.append(f"{role}: file {entry.get('name')} not found (give it with --{role})")
            checked.append({"role": role, "path": None, "status": "missing"})
            continue
        digest = sha256_file(path)
        good = digest == entry.get("sha256")
        if not good:
            problems.append(f"{role}: {path} has SHA-256 {digest[:16]}..., the certificate says {str(entry.get('sha256'))[:16]}...")
        checked.append({"role": role, "path": str(path), "status": "match" if good else "mismatch"})
    return {"valid": not problems, "signature": why, "files": checked, "problems": problems,
            "verdict": doc.get("verdict"), "key_id": (doc.get("signature") or {}).get("key_id")}


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f3f4f6;color:#1f2937}
header{background:#111827;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#d1d5db;font-size:13px}
main{max-width:1100px;margin:0 auto;padding:18px}section{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0}
table{border-collapse:collapse;font-size:13px}th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}
.pass{color:#16a34a;font-weight:600}.fail{color:#dc2626;font-weight:600}.na{color:#6b7280}.muted{color:#6b7280;font-size:12px}
.verdict{font-size:28px;font-weight:700}code{font-size:12px;word-break:break-all}
</style></head><body>
<header><h1>{{ title }}</h1><p>Issued {{ doc.issued_at }} under policy "{{ doc.policy.name }}" (version {{ doc.policy.version }})</p></header>
<main>
<section><div class="verdict {{ 'pass' if doc.passed else 'fail' }}">{{ 'PASS' if doc.passed else 'FAIL' }}</div>
<p>{{ n_pass }} criteria pass, {{ n_fail }} fail, {{ n_na }} not applicable (counted as {{ doc.policy.not_applicable }}).</p></section>
<section><h2>Criteria</h2><table><tr><th>criterion</th><th>measured</th><th>bound</th><th>result</th><th>how it was measured</th></tr>
{% for c in doc.criteria %}<tr><td>{{ c.criterion }}</td><td>{{ fmt(c.value) }}</td><td>{{ c.bound_text }}</td>
<td class="{{ 'pass' if c.status == 'pass' else ('fail' if c.status == 'fail' else 'na') }}">{{ c.status }}</td>
<td>{{ c.definition }}<br><span class="muted">{{ c.measured_on }}</span></td></tr>{% endfor %}</table></section>
<section><h2>Files</h2><table><tr><th>role</th><th>name</th><th>rows</th><th>bytes</th><th>SHA-256</th></tr>
{% for role, f in doc.files.items() %}<tr><td>{{ role }}</td><td>{{ f.name }}</td><td>{{ f.rows if f.rows is defined else '' }}</td><td>{{ f.bytes }}</td><td><code>{{ f.sha256 }}</code></td></tr>{% endfor %}</table></section>
<section><h2>Software</h2><table>{% for k, v in doc.software.items() %}<tr><td>{{ k }}</td><td>{{ v or 'not installed' }}</td></tr>{% endfor %}</table></section>
{% if doc.generation_history %}<section><h2>Generation history</h2><pre class="muted" style="max-height:360px;overflow:auto">{{ history }}</pre></section>{% endif %}
<section><h2>Signature</h2>{% if doc.signature %}<p>{{ doc.signature.algorithm }}, key id <code>{{ doc.signature.key_id }}</code></p>
<pre class="muted">{{ doc.signature.public_key }}</pre><p>Signature: <code>{{ doc.signature.value }}</code></p>
<p class="muted">Check with: synthloop verify-certificate CERT.json --public-key KEY.pub.pem (the signature covers every field of the JSON file; this page is a view of it).</p>
{% else %}<p class="fail">unsigned</p>{% endif %}</section>
</main></body></html>"""


def render_certificate_html(doc: dict[str, Any]) -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    fmt = lambda v: "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    st = [c["status"] for c in doc["criteria"]]
    return env.from_string(_HTML).render(doc=doc, title="synthloop data certificate", fmt=fmt, n_pass=st.count("pass"),
                                         n_fail=st.count("fail"), n_na=st.count("not applicable"),
                                         history=json.dumps(doc.get("generation_history"), indent=1, default=str)[:200_000])
