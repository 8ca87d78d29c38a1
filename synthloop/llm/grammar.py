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
from dataclasses import dataclass
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


def _without_exclude(s: Any) -> Any:
    if isinstance(s, dict):
        return {k: _without_exclude(v) for k, v in s.items() if k != EXCLUDE}
    if isinstance(s, list):
        return [_without_exclude(v) for v in s]
    return s


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """GBNF text for `schema` (bounded numbers as enums, see decoding_schema) whose strings admit no
    raw control characters."""
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    text = json_schema_to_gbnf(json.dumps(decoding_schema(_without_exclude(schema))))
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
    if t == "string" and not (set(s) - {"type", "minLength", "maxLength", "description", "title", EXCLUDE}):
        return _string_rule(int(s.get("minLength", 0)), s.get("maxLength"), char=_char_name(s))
    if t == "integer" and not (set(s) - {"type", "description", "title"}):
        return '"-"? [0-9]{1,15}'
    if t == "number" and not (set(s) - {"type", "description", "title"}):
        return '"-"? [0-9]{1,15} ("." [0-9]{1,10})?'
    if t == "boolean":
        return '("true" | "false")'
    return None


# A string property may carry EXCLUDE: [[first, last], ...] code point ranges its characters must
# avoid (the column's forbid_regex character classes, see AgreementChecker.forbidden_chars). It is
# read by the grammar built here only (validators ignore unknown keywords), so a text that must not
# hold digits is decoded without them instead of being regenerated until it has none.
EXCLUDE = "x-exclude-chars"


def _cls_char(cp: int) -> str:
    return f"\\x{cp:02X}" if cp < 0x100 else f"\\u{cp:04X}"


def _char_name(s: dict[str, Any]) -> str:
    """The GBNF rule name of a string's characters: `char`, or `charx-<first>-<last>...` (hex code
    point ranges; GBNF names allow letters, digits and dashes only)."""
    ranges = s.get(EXCLUDE)
    if not ranges:
        return "char"
    return "charx" + "".join(f"-{int(a):x}-{int(b):x}" for a, b in ranges)


def _char_rule(name: str) -> str:
    """GBNF of a string character rule named by `_char_name`."""
    if name == "char":
        return "char ::= " + _CHAR
    cps = [int(x, 16) for x in name.split("-")[1:]]
    extra = "".join(_cls_char(a) if a == b else f"{_cls_char(a)}-{_cls_char(b)}" for a, b in zip(cps[::2], cps[1::2]))
    # escapes of quotes and backslashes only: \u could spell an excluded character, and \n, \t (cleaned to
    # spaces later) are what a small model repeats when the characters it wanted are left out
    return name + r' ::= [^"\\\x7F\x00-\x1F' + extra + r'] | "\\" ["\\]'


def _string_rule(lo: int, hi: Any, open_quote: bool = True, char: str = "char") -> str:
    rep = f"{char}{{{max(lo, 0)},{int(hi)}}}" if hi is not None else (f"{char}{{{max(lo, 0)},}}" if lo else f"{char}*")
    return ('"\\"" ' if open_quote else "") + rep + ' "\\""'


def _flat_rules(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]] | None:
    """(properties, grammar rule per property) of a flat object of simple, required values, or None:
    the shape that prefilling and value-by-value decoding both need."""
    s = decoding_schema(schema)
    props = s.get("properties")
    if s.get("type") != "object" or not isinstance(props, dict) or not props:
        return None
    if set(s.get("required", [])) != set(props):
        return None
    rules: dict[str, str] = {}
    for name, p in props.items():
        r = _value_rule(p) if isinstance(p, dict) else None
        if r is None:
            return None
        rules[name] = r
    return props, rules


def _pinned(p: dict[str, Any]) -> list[Any] | None:
    """The single allowed value of a property (`const` or a one-value `enum`) as a list, else None."""
    return [p["const"]] if "const" in p else p.get("enum") if isinstance(p.get("enum"), list) and len(p["enum"]) == 1 else None


def prefill_plan(schema: dict[str, Any], start: str = "") -> tuple[str, str] | None:
    """(prefix, grammar of the rest) for `schema`, whose answer begins with the fixed properties
    (a single allowed value) and, when `start` is given, with the first string property's value
    starting with `start`; None when the schema is not a flat object of simple, required values or
    nothing is fixed."""
    import json

    flat = _flat_rules(schema)
    if flat is None:
        return None
    props, rules = flat
    names = list(props)
    prefix = "{"
    k = 0
    for k, name in enumerate(names):  # leading properties with exactly one allowed value
        p = props[name]
        one = _pinned(p)
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
            rest.append(_string_rule(max(int(p.get("minLength", 0)) - used, 0), None if hi is None else hi - used,
                                     open_quote=False, char=_char_name(p)))
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
    chars = sorted({"char"} | {_char_name(p) for p in props.values() if isinstance(p, dict) and p.get("type") == "string"})
    grammar = "root ::= " + " ".join(rest + ['space "}"']) + "\nspace ::= \" \"?\n" + "\n".join(_char_rule(c) for c in chars) + "\n"
    return prefix, grammar


# -- answers decoded value by value ------------------------------------------------------------
# Even when nothing is pinned, most of a flat JSON answer is fixed text: `{"category": "`, then
# `", "channel": "`, then `", "recurring": `, then `}`. Decoded token by token, each of those costs
# a forward pass and a sampling step; written into the context as a batch they cost a small share
# of one. `segment_plan` splits an answer into literal text and the values in between; the decoder
# samples only the values (each under its own grammar, stopping as soon as the value is complete)
# and evaluates the literals as prompt tokens.

@dataclass(frozen=True)
class Segment:
    """A literal (`text`) or a value decoded under `grammar`. `kind` says how the decoder sees
    that a value is complete: "options" (one of `options`, JSON-encoded, none longer that starts
    with it), "string" (an unescaped closing quote), or "rest" (this grammar runs to the end of
    the answer: the model's end-of-turn token ends it)."""

    text: str = ""
    grammar: str = ""
    kind: str = ""
    options: tuple[str, ...] = ()


def value_done(seg: Segment, text: str) -> bool:
    """Whether `text`, decoded so far for value segment `seg`, is a complete value."""
    if seg.kind == "options":
        return text in seg.options and not any(o != text and o.startswith(text) for o in seg.options)
    if seg.kind == "string":
        body = text[1:] if text.startswith('"') and seg.options != ("open",) else text
        if not body.endswith('"'):
            return False
        k = len(body) - 1
        while k > 0 and body[k - 1] == "\\":
            k -= 1
        return (len(body) - 1 - k) % 2 == 0 and (seg.options == ("open",) or len(text) >= 2)
    return False


def segment_plan(schema: dict[str, Any], start: str = "") -> tuple[str, list[Segment]] | None:
    """(prefix, segments after it) for a flat object of simple, required values (see prefill_plan;
    the prefix holds the leading pinned values and `start`), or None."""
    import json

    flat = _flat_rules(schema)
    if flat is None:
        return None
    props, rules = flat
    names = list(props)
    chars = sorted({"char"} | {_char_name(p) for p in props.values() if isinstance(p, dict) and p.get("type") == "string"})
    tail = "\nspace ::= \" \"?\n" + "\n".join(_char_rule(c) for c in chars) + "\n"
    out: list[Segment] = []
    lit = "{"
    start_used = not start
    for j, name in enumerate(names):
        p = props[name]
        lit += ("" if j == 0 else ", ") + json.dumps(name) + ": "
        one = _pinned(p)
        if one is not None:
            lit += json.dumps(one[0], ensure_ascii=False)
            continue
        if p.get("type") == "string" and "enum" not in p:
            used = 0
            if not start_used:
                lit += json.dumps(start, ensure_ascii=False)[:-1]
                used, start_used = len(start), True
            else:
                lit += '"'
            hi = p.get("maxLength")
            if hi is not None and used > hi:
                return None
            rule = _string_rule(max(int(p.get("minLength", 0)) - used, 0), None if hi is None else hi - used,
                                open_quote=False, char=_char_name(p))
            out += [Segment(text=lit), Segment(grammar="root ::= " + rule + tail, kind="string", options=("open",))]
        elif "enum" in p or p.get("type") == "boolean":
            opts = [json.dumps(v, ensure_ascii=False) for v in p["enum"]] if "enum" in p else ["true", "false"]
            out += [Segment(text=lit), Segment(grammar="root ::= " + rules[name] + tail, kind="options", options=tuple(opts))]
        else:  # a free number: its end is not known before the next character; decode the rest whole
            rest = [rules[name]] + [f'"," space {_lit(json.dumps(n))} space ":" space {rules[n]}' for n in names[j + 1:]]
            if not start_used:
                return None
            out += [Segment(text=lit), Segment(grammar="root ::= " + " ".join(rest + ['space "}"']) + tail, kind="rest")]
            return _merge(out)
        lit = ""
    if not start_used:
        return None
    out.append(Segment(text=lit + "}"))
    return _merge(out)


def _merge(segs: list[Segment]) -> tuple[str, list[Segment]]:
    """(leading literal, the segments after it) with empty literals dropped."""
    segs = [g for g in segs if g.grammar or g.text]
    prefix = ""
    while segs and not segs[0].grammar:
        prefix += segs.pop(0).text
    return prefix, segs
