"""Turning a model's answer into a checked JSON object: extract, parse, validate with jsonschema."""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import jsonschema


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def extract_json(text: str) -> tuple[Any, str | None]:
    """The first JSON object in `text` (code fences and chatter around it are tolerated)."""
    s = text.strip()
    if s.startswith("```"):
        s = s.strip("`")
        s = s[s.find("\n") + 1:] if "\n" in s else s
    start = s.find("{")
    if start < 0:
        return None, "the answer contains no JSON object"
    dec = json.JSONDecoder(strict=False)  # a raw newline inside a string is read, then cleaned below
    try:
        obj, _ = dec.raw_decode(s[start:])
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON ({exc.msg} at character {exc.pos})"
    return clean_strings(obj), None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean_strings(obj: Any) -> Any:
    """`obj` with every control character in its strings (raw or escaped: newlines, tabs, NULs)
    turned into one space, so none reaches an output table."""
    if isinstance(obj, str):
        return _CONTROL.sub(" ", obj)
    if isinstance(obj, dict):
        return {clean_strings(k): clean_strings(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_strings(v) for v in obj]
    return obj


def schema_errors(obj: Any, schema: dict[str, Any], limit: int = 3) -> list[str]:
    """Readable jsonschema violations, e.g. "age: 130 is greater than the maximum of 95"."""
    v = _validator(json.dumps(schema, sort_keys=True))
    out = []
    for err in sorted(v.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(object)"
        out.append(f"{where}: {err.message}")
        if len(out) >= limit:
            break
    return out


def parse_and_validate(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """(object, []) when the answer is valid; (None or object, errors) otherwise."""
    obj, err = extract_json(text)
    if err:
        return None, [err]
    errs = schema_errors(obj, schema)
    return (obj if not errs else obj), errs
