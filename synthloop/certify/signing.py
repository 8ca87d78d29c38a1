"""Ed25519 keys and signatures over a certificate's canonical JSON (`cryptography`).

The signed bytes are the certificate without its `signature` field, as JSON with sorted keys, no
whitespace and ASCII escapes, so any change to any field (a figure, a hash, a version, the policy)
breaks the signature. Private keys are PKCS#8 PEM files written with mode 0600, encrypted when a
passphrase is given; public keys are SubjectPublicKeyInfo PEM files.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from synthloop.errors import SynthloopError

ALGORITHM = "Ed25519"


class SigningError(SynthloopError):
    """A key file is missing, malformed or of the wrong kind."""


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SigningError("signing certificates needs the 'cryptography' package: pip install 'synthloop[certify]'") from None
    return ed25519


def canonical_bytes(doc: dict[str, Any]) -> bytes:
    """The bytes a certificate's signature covers (see module docstring)."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def generate_key(private_path: str | Path, public_path: str | Path | None = None, passphrase: str | None = None) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair; refuses to overwrite an existing private key."""
    from cryptography.hazmat.primitives import serialization

    ed25519 = _crypto()
    priv = Path(private_path)
    pub = Path(public_path) if public_path else priv.with_name(priv.stem + ".pub.pem")
    if priv.exists():
        raise SigningError(f"{priv}: exists; refusing to overwrite a private key (choose another path)")
    key = ed25519.Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    priv.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    from synthloop.io import write_text

    write_text(public_pem(key.public_key()), pub)
    return priv, pub


def public_pem(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_private_key(path: str | Path, passphrase: str | None = None) -> Any:
    from cryptography.hazmat.primitives import serialization

    ed25519 = _crypto()
    p = Path(path)
    if not p.exists():
        raise SigningError(f"{p}: key file not found; create one with `synthloop certify-keygen {p}`")
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{p}: not a readable private key PEM ({str(exc).splitlines()[0]})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{p}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    ed25519 = _crypto()
    p = Path(path)
    if not p.exists():
        raise SigningError(f"{p}: public key file not found")
    try:
        key = serialization.load_pem_public_key(p.read_bytes())
    except ValueError as exc:
        raise SigningError(f"{p}: not a readable public key PEM ({str(exc).splitlines()[0]})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningError(f"{p}: not an Ed25519 public key")
    return key


def key_id(public_key: Any) -> str:
    """SHA-256 of the raw public key, first 16 hex digits: names the key in the certificate."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(doc: dict[str, Any], private_key: Any) -> dict[str, Any]:
    """`doc` with its `signature` field (algorithm, key id, public key PEM, base64 signature)."""
    sig = private_key.sign(canonical_bytes(doc))
    pub = private_key.public_key()
    return {**doc, "signature": {"algorithm": ALGORITHM, "key_id": key_id(pub), "public_key": public_pem(pub),
                                 "value": base64.b64encode(sig).decode("ascii")}}


def verify_signature(doc: dict[str, Any], public_key: Any | None = None) -> tuple[bool, str]:
    """(valid, why) for a signed document, with `public_key` or else the key the document carries."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    s = doc.get("signature")
    if not isinstance(s, dict) or s.get("algorithm") != ALGORITHM or "value" not in s:
        return False, "no Ed25519 signature in the certificate"
    if public_key is None:
        try:
            public_key = serialization.load_pem_public_key(str(s.get("public_key", "")).encode())
        except ValueError:
            return False, "the certificate's public key is unreadable"
    try:
        sig = base64.b64decode(s["value"], validate=True)
        public_key.verify(sig, canonical_bytes(doc))
    except (InvalidSignature, ValueError, TypeError):
        return False, "the signature does not match the certificate's contents (or the key)"
    if s.get("key_id") != key_id(public_key):
        return False, "the signature's key id does not match the public key"
    return True, f"signed by key {s['key_id']}"
