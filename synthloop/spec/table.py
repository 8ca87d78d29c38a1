"""The TableSchema a spec produces, so generated tables are judged (evaluate, refine) with the
same column kinds as learned ones."""
from __future__ import annotations

from typing import Any

from synthloop.schema import ColumnKind, ColumnSchema, PiiType, TableSchema
from synthloop.spec.models import Column, Spec

_PII = {"name": PiiType.NAME, "first_name": PiiType.FIRST_NAME, "last_name": PiiType.LAST_NAME,
        "address": PiiType.ADDRESS, "street_address": PiiType.ADDRESS, "email": PiiType.EMAIL,
        "free_email": PiiType.EMAIL, "company_email": PiiType.EMAIL, "phone_number": PiiType.PHONE,
        "ssn": PiiType.SSN, "iban": PiiType.IBAN, "credit_card_number": PiiType.CREDIT_CARD, "ipv4": PiiType.IP}


def _from_sampler(col: Column) -> ColumnSchema:
    s = col.sampler
    assert s is not None
    kind = s.kind
    miss = col.null_rate
    if kind == "categorical":
        cats = list(s.categorical or {})
        for case in s.cases.values():
            cats += [c for c in (case.categorical or {}) if c not in cats]
        return ColumnSchema(name=col.name, kind=ColumnKind.CATEGORICAL, categories=cats, missing_share=miss)
    if kind == "datetime":
        d = s.datetime
        return ColumnSchema(name=col.name, kind=ColumnKind.DATETIME, dtype="object" if d and d.format else "datetime64[ns]",
                            datetime_format=d.format if d else None, missing_share=miss)
    if kind == "faker":
        p = s.faker.provider if s.faker else ""
        if p in _PII:
            return ColumnSchema(name=col.name, kind=ColumnKind.PII, pii_type=_PII[p], missing_share=miss)
        return ColumnSchema(name=col.name, kind=ColumnKind.TEXT, missing_share=miss)
    if kind == "sequence":
        return ColumnSchema(name=col.name, kind=ColumnKind.ID)
    dists = [s] + list(s.cases.values())
    lo = [getattr(getattr(d, d.kind), "min", None) for d in dists]
    hi = [getattr(getattr(d, d.kind), "max", None) for d in dists]
    dec = [getattr(getattr(d, d.kind), "decimals", None) for d in dists]
    return ColumnSchema(
        name=col.name, kind=ColumnKind.NUMERICAL, dtype="Int64" if all(x == 0 for x in dec) else "float64",
        min=None if None in lo else min(lo), max=None if None in hi else max(hi),
        decimals=None if None in dec else max(dec), missing_share=miss,
    )


def _from_json(name: str, prop: dict[str, Any]) -> ColumnSchema:
    if "enum" in prop:
        vals = list(prop["enum"])
        if all(isinstance(v, bool) for v in vals):
            return ColumnSchema(name=name, kind=ColumnKind.BOOLEAN, dtype="bool", categories=vals)
        return ColumnSchema(name=name, kind=ColumnKind.CATEGORICAL, categories=vals)
    t = prop.get("type")
    if t in ("integer", "number"):
        return ColumnSchema(name=name, kind=ColumnKind.NUMERICAL, dtype="int64" if t == "integer" else "float64",
                            min=prop.get("minimum"), max=prop.get("maximum"), decimals=0 if t == "integer" else None)
    if t == "boolean":
        return ColumnSchema(name=name, kind=ColumnKind.BOOLEAN, dtype="bool", categories=[False, True])
    if prop.get("format") in ("date", "date-time"):
        return ColumnSchema(name=name, kind=ColumnKind.DATETIME)
    return ColumnSchema(name=name, kind=ColumnKind.TEXT)


def _from_expression(col: Column) -> ColumnSchema:
    import ast

    body = ast.parse((col.expression or "").strip(), mode="eval").body
    if isinstance(body, (ast.Compare, ast.BoolOp)) or (isinstance(body, ast.UnaryOp) and isinstance(body.op, ast.Not)):
        return ColumnSchema(name=col.name, kind=ColumnKind.BOOLEAN, dtype="bool", categories=[False, True])
    leaves = [body]
    while any(isinstance(x, ast.IfExp) for x in leaves):
        leaves = [y for x in leaves for y in ((x.body, x.orelse) if isinstance(x, ast.IfExp) else (x,))]
    if all(isinstance(x, ast.Constant) and isinstance(x.value, str) for x in leaves):
        return ColumnSchema(name=col.name, kind=ColumnKind.CATEGORICAL, categories=[x.value for x in leaves])  # type: ignore[attr-defined]
    if isinstance(body, ast.Call) and getattr(body.func, "id", "") in ("concat", "lower", "upper", "title", "strip", "str"):
        return ColumnSchema(name=col.name, kind=ColumnKind.TEXT)
    return ColumnSchema(name=col.name, kind=ColumnKind.NUMERICAL, dtype="float64")


def table_schema(spec: Spec) -> TableSchema:
    """Column kinds of the generated table: samplers by distribution, LLM text as text, structured
    fields by their JSON type (enum -> categorical, numbers with their bounds), expressions as text
    unless they are plain comparisons (boolean) -- override with infer_schema on real output if needed."""
    cols: list[ColumnSchema] = []
    pk = None
    for col in spec.columns:
        if col.sampler is not None:
            cs = _from_sampler(col)
            if cs.kind == ColumnKind.ID and pk is None:
                pk = col.name
            cols.append(cs)
        elif col.llm is not None:
            if col.llm.structured and col.llm.flatten:
                props = col.llm.json_schema["properties"]  # type: ignore[index]
                cols += [_from_json(f, props[f]) for f in col.output_names()]
            else:
                cols.append(ColumnSchema(name=col.name, kind=ColumnKind.TEXT))
        else:
            cols.append(_from_expression(col))
    return TableSchema(columns=cols, primary_key=pk)
