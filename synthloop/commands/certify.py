"""`synthloop certify`, `synthloop verify-certificate` and `synthloop certify-keygen`: a signed
quality/privacy certificate for a synthetic table (see synthloop.certify and docs/certificate.md)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def _passphrase(env: Optional[str]) -> Optional[str]:
    from synthloop.errors import SynthloopError

    if env is None:
        return None
    if env not in os.environ:
        raise SynthloopError(f"--passphrase-env {env}: that environment variable is not set")
    return os.environ[env]


def register(app: typer.Typer) -> None:
    """Add `certify`, `verify-certificate` and `certify-keygen` to the app."""

    @app.command("certify")
    def certify_cmd(
        real: Path = typer.Argument(..., help="The real table the synthetic data was learned from."),
        synthetic: Path = typer.Argument(..., help="The synthetic table to certify."),
        holdout: Optional[Path] = typer.Option(None, "--holdout", help="Real rows the model never saw (DCR share, MIA AUC, TSTR)."),
        policy: Optional[Path] = typer.Option(None, "--policy", help="Policy YAML (default: the shipped default policy; "
                                              "a file overrides it key by key)."),
        key: Path = typer.Option(..., "--key", help="Ed25519 private key PEM (create one with `synthloop certify-keygen`)."),
        model: Optional[Path] = typer.Option(None, "--model", help="The model file that generated the rows (hashed; DP epsilon/delta read from it)."),
        history: Optional[Path] = typer.Option(None, "--history", help="Generation history JSON (refine .history.json, autopilot .autopilot.json)."),
        output: Path = typer.Option(..., "-o", "--out", help="Certificate JSON to write; the HTML page goes beside it (.html)."),
        passphrase_env: Optional[str] = typer.Option(None, "--passphrase-env", metavar="NAME", help="Environment variable holding the key's passphrase."),
        strict: bool = typer.Option(False, "--strict", help="Exit with code 1 when the policy fails."),
    ) -> None:
        """Check a policy on real/synthetic/holdout files and write a signed certificate (JSON + HTML)."""
        import json

        from synthloop.certify.certificate import build_certificate, render_certificate_html
        from synthloop.certify.policy import load_policy
        from synthloop.certify.signing import load_private_key, sign
        from synthloop.commands._common import out
        from synthloop.errors import SynthloopError
        from synthloop.io import write_text

        for p in (real, synthetic, holdout, model, history):
            if p is not None and not p.is_file():
                raise SynthloopError(f"{p}: file not found")
        pol = load_policy(policy)
        private = load_private_key(key, _passphrase(passphrase_env))  # a bad key fails before any measuring
        doc = sign(build_certificate(pol, real, synthetic, holdout, model, history, policy), private)
        write_text(json.dumps(doc, indent=2, allow_nan=False), output)
        html_path = output.with_suffix(".html")
        write_text(render_certificate_html(doc), html_path)
        for c in doc["criteria"]:
            v = "n/a" if c["value"] is None else f"{c['value']:.4f}"
            out.print(f"{c['criterion']:<22} {v:>10}  {c['bound_text']:<16} {c['status']}")
        out.print(f"verdict: {doc['verdict'].upper()} (policy '{pol.name}'); signed by key {doc['signature']['key_id']}")
        out.print(f"wrote {output}")
        out.print(f"wrote {html_path}")
        if strict and not doc["passed"]:
            raise typer.Exit(1)

    @app.command("verify-certificate")
    def verify_cmd(
        certificate: Path = typer.Argument(..., help="Certificate JSON written by `synthloop certify`."),
        public_key: Optional[Path] = typer.Option(None, "--public-key", help="The signer's Ed25519 public key PEM. Without it the "
                                                  "key inside the certificate is used, which proves the file is intact, not who signed it."),
        real: Optional[Path] = typer.Option(None, "--real", help="The real file (default: the recorded path, then its name beside the certificate)."),
        synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="The synthetic file."),
        holdout: Optional[Path] = typer.Option(None, "--holdout", help="The holdout file."),
        model: Optional[Path] = typer.Option(None, "--model", help="The model file."),
        history: Optional[Path] = typer.Option(None, "--history", help="The history file."),
        policy: Optional[Path] = typer.Option(None, "--policy", help="The policy file."),
    ) -> None:
        """Check a certificate's signature and the SHA-256 of every file it names; exit 1 when anything differs."""
        import json

        from synthloop.certify.certificate import verify_certificate
        from synthloop.certify.signing import load_public_key
        from synthloop.commands._common import out
        from synthloop.errors import SynthloopError

        if not certificate.is_file():
            raise SynthloopError(f"{certificate}: certificate not found")
        try:
            doc = json.loads(certificate.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SynthloopError(f"{certificate}: not a JSON certificate ({exc})") from None
        if not isinstance(doc, dict):
            raise SynthloopError(f"{certificate}: not a synthloop certificate")
        key = load_public_key(public_key) if public_key else None
        res = verify_certificate(doc, key, {"real": real, "synthetic": synthetic, "holdout": holdout, "model": model,
                                            "history": history, "policy": policy}, base_dir=certificate.parent)
        for f in res["files"]:
            out.print(f"{f['role']:<10} {f['status']:<9} {f['path'] or ''}")
        if res["valid"]:
            who = "" if public_key else " (checked with the key inside the certificate: pass --public-key to check who signed)"
            out.print(f"certificate valid: {res['signature']}{who}; every file matches; policy verdict: {str(res['verdict']).upper()}")
            return
        for p in res["problems"]:
            out.print(f"problem: {p}")
        out.print("certificate NOT valid")
        raise typer.Exit(1)

    @app.command("certify-keygen")
    def keygen_cmd(
        private: Path = typer.Argument(..., help="Private key PEM to create (mode 0600; never overwritten)."),
        public: Optional[Path] = typer.Option(None, "--public", help="Public key PEM (default: PRIVATE's stem + .pub.pem)."),
        passphrase_env: Optional[str] = typer.Option(None, "--passphrase-env", metavar="NAME", help="Encrypt the private key with this variable's value."),
    ) -> None:
        """Create an Ed25519 key pair for signing certificates."""
        from synthloop.certify.signing import generate_key
        from synthloop.commands._common import out

        priv, pub = generate_key(private, public, _passphrase(passphrase_env))
        out.print(f"wrote {priv} (private: keep it secret)")
        out.print(f"wrote {pub} (public: give it to whoever verifies)")
