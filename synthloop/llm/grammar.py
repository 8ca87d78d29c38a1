"""Schema rewrites for grammar-constrained decoding.

llama.cpp's JSON-schema-to-grammar converter (the one llama-cpp-python ships) ignores numeric
bounds, so `{"type": "integer", "minimum": 40, "maximum": 180}` would still let the model write 15.
For decoding only, bounded numbers become an enum of every allowed value (integers; decimals on the
finest grid of at most MAX_CHOICES values), which the grammar does enforce. Validation still runs
against the original schema, so nothing outside it is ever kept.
"""
from __future__ import annotations

import copy
import math
from typing import Any

MAX_CHOICES = 1001


def _bounds(s: dict[str, Any]) -> tuple[float | None, float | None]:
    lo = s.get("minimum")
    hi = s.get("maximum")
    if "exclusiveMinimum" in s and isinstance(s["exclusiveMinimum"], (int, float)):
        lo = s["exclusiveMinimum"]
    if "exclusiveMaximum" in s and isinstance(s["exclusiveMaximum"], (int, float)):
        hi = s["exclusiveMaximum"]
    return lo, hi


def _choices(s: dict[str, Any]) -> list[Any] | None:
    t = s.get("type")
    lo, hi = _bounds(s)
    if lo is None or hi is None or t not in ("integer", "number"):
        return None
    ex_lo, ex_hi = "exclusiveMinimum" in s, "exclusiveMaximum" in s
    if t == "integer":
        a = math.floor(lo) + 1 if ex_lo and float(lo).is_integer() else math.ceil(lo)
        b = math.ceil(hi) - 1 if ex_hi and float(hi).is_integer() else math.floor(hi)
        return list(range(a, b + 1)) if 0 < b - a + 1 <= MAX_CHOICES else None
    step = s.get("multipleOf")
    if step is None:
        for d in (2, 1, 0):
            if (hi - lo) * 10**d + 1 <= MAX_CHOICES:
                step = 10.0**-d
                break
        else:
            return None
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    if not 0 < k1 - k0 + 1 <= MAX_CHOICES:
        return None
    digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    vals = [round(k * step, digits) for k in range(k0, k1 + 1)]
    vals = [v for v in vals if not ((ex_lo and v <= lo) or (ex_hi and v >= hi))]
    return [int(v) if float(v).is_integer() and digits == 0 else v for v in vals] or None


def decoding_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` whose bounded numbers are enums, for grammar construction only."""
    def walk(s: Any) -> Any:
        if not isinstance(s, dict):
            return s
        out = {k: (walk(v) if k in ("items", "additionalItems") else v) for k, v in s.items()}
        if isinstance(s.get("properties"), dict):
            out["properties"] = {k: walk(v) for k, v in s["properties"].items()}
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if isinstance(s.get(key), list):
                out[key] = [walk(v) for v in s[key]]
        if "enum" not in s and "const" not in s:
            ch = _choices(s)
            if ch is not None:
                return {"enum": ch}
        return out

    return walk(copy.deepcopy(schema))


# llama-cpp-python's converter lets any character but `"` and `\` into a JSON string, raw newlines
# and other control characters included; `json.loads` then rejects the answer ("Invalid control
# character"). The rule below is JSON's own: control characters only as escapes.
_LOOSE_CHAR = r'char ::= [^"\\] |'
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF text for `schema` (bounded numbers as enums, see decoding_schema) whose strings admit no
    raw control characters."""
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    text = json_schema_to_gbnf(json.dumps(decoding_schema(schema)))
    lines = [(_STRICT_CHAR + line[len(_LOOSE_CHAR):]) if line.startswith(_LOOSE_CHAR) else line
             for line in text.split("\n")]
    return "\n".join(lines)


# -- prefilled answers -------------------------------------------------------------------------
# A decoded token costs a full forward pass, a prompt token a small share of one batched pass. The
# start of a JSON answer is often fixed: `{"severity": "medium", "reason": "` when the planner pinned
# severity, `{"note": "Cardiology visit, ` when a column gives its text's start. Such a prefix is
# written into the prompt (after the chat template's generation prompt) and only the rest is decoded,
# under a grammar for the rest. `prefill_plan` handles flat objects whose properties are all required
# (what answer_schema builds for text columns and most structured ones); None means "decode it all".

_CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'


def _lit(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _value_rule(s: dict[str, Any]) -> str | None:
    """GBNF for one property value (after decoding_schema), or None when not a simple type."""
    import json

    if "const" in s:
        return _lit(json.dumps(s["const"], ensure_ascii=False))
    if "enum" in s:
        return "(" + " | ".join(_lit(json.dumps(v, ensure_ascii=False)) for v in s["enum"]) + ")"
    t = s.get("type")
    if t == "string" and not (set(s) - {"type", "minLength", "maxLength", "description", "title"}):
        return _string_rule(int(s.get("minLength", 0)), s.get("maxLength"))
    if t == "integer" and not (set(s) - {"type", "description", "title"}):
        return '"-"? [0-9]{1,15}'
    if t == "number" and not (set(s) - {"type", "description", "title"}):
        return '"-"? [0-9]{1,15} ("." [0-9]{1,10})?'
    if t == "boolean":
        return '("true" | "false")'
    return None


def _string_rule(lo: int, hi: Any, open_quote: bool = True) -> str:
    rep = f"char{{{max(lo, 0)},{int(hi)}}}" if hi is not None else (f"char{{{max(lo, 0)},}}" if lo else "char*")
    return ('"\\"" ' if open_quote else "") + rep + ' "\\""'


def prefill_plan(schema: dict[str, Any], start: str = "") -> tuple[str, str] | None:
    """(prefix, grammar of the rest) for `schema`, whose answer begins with the fixed properties
    (a single allowed value) and, when `start` is given, with the first string property's value
    starting with `start`; None when the schema is not a flat object of simple, required values or
    nothing is fixed."""
    import json

    s = decoding_schema(schema)
    props = s.get("properties")
    if s.get("type") != "object" or not isinstance(props, dict) or not props:
        return None
    if set(s.get("required", [])) != set(props):
        return None
    rules = {}
    for name, p in props.items():
        r = _value_rule(p) if isinstance(p, dict) else None
        if r is None:
            return None
        rules[name] = r
    names = list(props)
    prefix = "{"
    k = 0
    for k, name in enumerate(names):  # leading properties with exactly one allowed value
        p = props[name]
        one = [p["const"]] if "const" in p else p.get("enum") if isinstance(p.get("enum"), list) and len(p["enum"]) == 1 else None
        if one is None:
            break
        prefix += ("" if k == 0 else ", ") + json.dumps(name) + ": " + json.dumps(one[0], ensure_ascii=False)
    else:
        k = len(names)
    rest: list[str] = []
    if k < len(names):
        name, p = names[k], props[names[k]]
        prefix += ("" if k == 0 else ", ") + json.dumps(name) + ": "
        if p.get("type") == "string" and "enum" not in p and "const" not in p:
            head = json.dumps(start, ensure_ascii=False)[:-1] if start else '"'  # the open string, escaped
            prefix += head
            used = len(start)
            hi = p.get("maxLength")
            if hi is not None and used > hi:
                return None
            rest.append(_string_rule(max(int(p.get("minLength", 0)) - used, 0), None if hi is None else hi - used, open_quote=False))
        else:
            if start:
                return None
            rest.append(rules[name])
        for name in names[k + 1:]:
            rest.append(f'"," space {_lit(json.dumps(name))} space ":" space {rules[name]}')
    elif start:
        return None
    if prefix == "{":
        return None
    grammar = "root ::= " + " ".join(rest + ['space "}"']) + "\nspace ::= \" \"?\nchar ::= " + _CHAR + "\n"
    return prefix, grammar
