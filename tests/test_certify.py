"""Issue 17: certificates: policy checks, Ed25519 signature, file hashes, tampering, bad policy files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("cryptography")

from synthloop.certify.certificate import build_certificate, verify_certificate  # noqa: E402
from synthloop.certify.policy import CRITERIA, PolicyError, default_policy, load_policy  # noqa: E402
from synthloop.certify.signing import SigningError, generate_key, load_private_key, load_public_key, sign  # noqa: E402

from conftest import one_line_error, run_cli  # noqa: E402


def _table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame({"a": a.round(3), "b": (a + rng.normal(size=n)).round(3), "g": rng.choice(["x", "y", "z"], n),
                         "t": rng.choice(["no", "yes"], n, p=[0.7, 0.3])})


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cert")
    real, hold, good = _table(600, 0), _table(600, 1), _table(600, 2)  # good: fresh draws of the same law
    paths = {"real": d / "real.csv", "holdout": d / "hold.csv", "synthetic": d / "synth.csv", "copy": d / "copy.csv"}
    real.to_csv(paths["real"], index=False)
    hold.to_csv(paths["holdout"], index=False)
    good.to_csv(paths["synthetic"], index=False)
    real.to_csv(paths["copy"], index=False)  # the real rows themselves: exact copies, DCR share 1
    paths["key"], paths["pub"] = generate_key(d / "k.pem")
    return paths


def _cert(files, synth="synthetic", policy=None):
    pol = load_policy(policy)
    doc = build_certificate(pol, files["real"], files[synth], files["holdout"])
    return sign(doc, load_private_key(files["key"]))


def test_default_policy_ships_and_documents_every_criterion():
    pol = default_policy()
    assert set(pol.criteria) == set(CRITERIA)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "certificate.md").read_text()
    assert all(f"`{name}`" in doc for name in CRITERIA)


def test_fresh_rows_pass_and_copied_rows_fail_with_each_criterion_explained(files):
    good = _cert(files)
    assert good["passed"] and good["verdict"] == "pass"
    by = {c["criterion"]: c for c in good["criteria"]}
    assert by["dcr_share"]["status"] == "pass" and by["dp_epsilon"]["status"] == "not applicable"
    assert all(c["definition"] and c["measured_on"] for c in good["criteria"])
    assert set(good["files"]) == {"real", "synthetic", "holdout"} and len(good["files"]["real"]["sha256"]) == 64
    assert good["software"]["numpy"] and good["policy"]["seed"] == 0
    bad = _cert(files, "copy")
    by = {c["criterion"]: c for c in bad["criteria"]}
    assert not bad["passed"] and by["exact_copy_rate"]["status"] == "fail" and by["dcr_share"]["status"] == "fail"


def test_verification_passes_untouched_and_fails_on_any_tampering(files, tmp_path):
    doc = _cert(files)
    pub = load_public_key(files["pub"])
    assert verify_certificate(doc, pub, {})["valid"]
    for path in ("verdict", ("criteria", 0, "value"), ("files", "real", "sha256"), ("software", "numpy"), ("policy", "seed")):
        t = json.loads(json.dumps(doc))
        if isinstance(path, str):
            t[path] = "fail"
        else:
            node = t
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = 0.123 if not isinstance(node[path[-1]], str) else "0" * 64
        res = verify_certificate(t, pub, {})
        assert not res["valid"] and "signature" in res["problems"][0], path
    for role in ("real", "synthetic", "holdout"):
        changed = tmp_path / f"{role}.csv"
        changed.write_bytes(files[role].read_bytes() + b"\n")
        res = verify_certificate(doc, pub, {role: changed})
        assert not res["valid"] and res["problems"][0].startswith(f"{role}:")
    other, other_pub = generate_key(tmp_path / "other.pem")
    res = verify_certificate(doc, load_public_key(other_pub), {})
    assert not res["valid"]
    forged = sign({k: v for k, v in doc.items() if k != "signature"} | {"verdict": "pass"}, load_private_key(other))
    assert not verify_certificate(forged, pub, {})["valid"]  # re-signed by someone else: the user's key says no


def test_certify_and_verify_on_the_command_line(files, tmp_path):
    out = tmp_path / "cert.json"
    r = run_cli("certify", str(files["real"]), str(files["synthetic"]), "--holdout", str(files["holdout"]),
                "--key", str(files["key"]), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "verdict: PASS" in r.stdout and out.with_suffix(".html").exists()
    assert "dcr_share" in out.with_suffix(".html").read_text()
    r = run_cli("verify-certificate", str(out), "--public-key", str(files["pub"]))
    assert r.returncode == 0 and "certificate valid" in r.stdout, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    doc["criteria"][0]["value"] = 0.99
    out.write_text(json.dumps(doc))
    r = run_cli("verify-certificate", str(out), "--public-key", str(files["pub"]))
    assert r.returncode == 1 and "NOT valid" in r.stdout


def test_bad_policy_and_key_files_are_one_line_errors(files, tmp_path):
    pol = tmp_path / "p.yaml"
    pol.write_text("criteria:\n  dcr_share: {min: 0.45}\n  qualty: {min: 0.8}\n")
    with pytest.raises(PolicyError, match=r"p.yaml:3: criteria.qualty: unknown criterion"):
        load_policy(pol)
    args = [str(files["real"]), str(files["synthetic"]), "--key", str(files["key"]), "-o", str(tmp_path / "c.json")]
    line = one_line_error(run_cli("certify", *args, "--policy", str(pol)))
    assert "criteria.qualty: unknown criterion" in line
    pol.write_text("criteria:\n  dcr_share: {min: 0.6, max: 0.4}\n")
    assert "min (0.6) is greater than max (0.4)" in one_line_error(run_cli("certify", *args, "--policy", str(pol)))
    pol.write_text("critera: {}\n")
    assert "unknown key 'critera'" in one_line_error(run_cli("certify", *args, "--policy", str(pol)))
    assert "key file not found" in one_line_error(run_cli("certify", *args[:2], "--key", str(tmp_path / "none.pem"), "-o", "x.json"))
    with pytest.raises(SigningError, match="refusing to overwrite"):
        generate_key(files["key"])
