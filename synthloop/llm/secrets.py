"""Keeping credentials where the user put them: which key variables a spec may name, and redaction
of keys and URL passwords from everything synthloop prints or writes (messages, summaries, journals,
cache keys, reports).

Specs and targets files travel between people, so a file alone may only point at a variable whose
name says it holds an API key (`*_API_KEY`); any other variable must be named by the user too
(`--api-key-env NAME`), so that a colleague's spec cannot send, say, `AWS_SECRET_ACCESS_KEY` to a
server of its choosing.
"""
from __future__ import annotations

import base64
import re
from typing import Iterable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

API_KEY_ENV_RE = re.compile(r"^[A-Z][A-Z0-9_]*_API_KEY$")
MASK = "***"
# query parameters that carry credentials in the URLs of common servers
_SECRET_PARAMS = {"key", "api_key", "api-key", "apikey", "token", "access_token", "auth", "password", "secret", "sig",
                  "signature", "x-api-key"}
_GENERIC = [
    re.compile(r"(?i)(\bbearer\s+)[^\s\"',;}\]]+"),
    re.compile(r"(?i)(\bbasic\s+)[A-Za-z0-9+/=]{8,}"),
    re.compile(r"(?i)((?:authorization|api[-_]?key|x-api-key)[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*|bearer\b|basic\b)[^\s\"',;}\]]+"),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://)[^/@\s\"']*@"),  # user:password@ inside any URL in the text
]
MIN_FRAGMENT = 8  # a run of this many characters of a secret counts as the secret


def key_env_allowed(name: str) -> bool:
    """True when a spec alone may name this variable (its name says it holds an API key)."""
    return bool(API_KEY_ENV_RE.match(name or ""))


def redact_url(url: str | None) -> str | None:
    """`url` without a user name, password or credential query parameter (`http://***@host/v1`)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
                query = urlencode([(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # not parseable as a URL: drop anything between // and @ the crude way
        return _GENERIC[3].sub(r"\1" + MASK + "@", url)


def url_secrets(url: str | None) -> list[str]:
    """The credentials a URL carries (user, password, their Basic-auth form, secret query values)."""
    if not url:
        return []
    out: list[str] = []
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return []
    for v in (user, password):
        if v:
            out += [v, quote(v, safe="")]
    if user or password:
        out.append(base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode())
    out += [v for k, v in pairs if k.lower() in _SECRET_PARAMS and v]
    return out


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret, any run of MIN_FRAGMENT or more of its characters, bearer/basic
    tokens and URL passwords replaced by ***. Short secrets (< MIN_FRAGMENT) are masked only where
    they stand alone (not inside a word)."""
    if not text:
        return text
    mask = bytearray(len(text))
    for s in {s for s in secrets if s}:
        if len(s) < MIN_FRAGMENT:  # short: only where it stands alone, or "u" would eat every u
            for m in re.finditer(r"(?<![A-Za-z0-9])" + re.escape(s) + r"(?![A-Za-z0-9])", text):
                mask[m.start():m.end()] = b"\x01" * (m.end() - m.start())
            continue
        for piece in {s[i:i + MIN_FRAGMENT] for i in range(len(s) - MIN_FRAGMENT + 1)}:
            start = text.find(piece)
            while start >= 0:
                mask[start:start + len(piece)] = b"\x01" * len(piece)
                start = text.find(piece, start + 1)
    if any(mask):
        out, i = [], 0
        while i < len(text):
            if mask[i]:
                while i < len(text) and mask[i]:
                    i += 1
                out.append(MASK)
            else:
                out.append(text[i])
                i += 1
        text = "".join(out)
    for rx in _GENERIC[:3]:
        text = rx.sub(r"\1" + MASK, text)
    return _GENERIC[3].sub(r"\1" + MASK + "@", text)
