"""Columns that are generated, never learned: ids (unique keys), PII (Faker) and free text.

Faker is slow per value, so each kind draws a pool once and indexes it with NumPy; names and emails
of one row come from the same person so they stay consistent.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from synthloop.schema.model import ColumnKind, ColumnSchema, PiiType, TableSchema

_POOL = 2000


def _faker(seed: int, locale: str = "en_US"):
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(seed)
    return fake


def _ids(col: ColumnSchema, n: int, rng: np.random.Generator) -> pd.Series:
    pattern = col.id_pattern or "{int}"
    if pattern == "{int}":
        start = int(col.min) if col.min is not None else 1
        return pd.Series(np.arange(start, start + n, dtype=np.int64))
    m = re.fullmatch(r"(.*)\{digits:(\d+)\}", pattern)
    if m:
        width = int(m.group(2))
        space = 10**width
        nums = rng.choice(space, size=n, replace=False) if n <= space // 2 else np.arange(n) % space
        return pd.Series(np.char.add(m.group(1), np.char.zfill(nums.astype(str), width)).astype(object))
    m = re.fullmatch(r"(.*)\{int\}", pattern)
    if m:
        return pd.Series(np.char.add(m.group(1), np.arange(1, n + 1).astype(str)).astype(object))
    m = re.fullmatch(r"\{hex:(\d+)\}", pattern)
    width = int(m.group(1)) if m else 12
    raw = rng.integers(0, 16, size=(n, width), dtype=np.uint8)
    hexchars = np.frombuffer(b"0123456789abcdef", dtype="S1")[raw]
    return pd.Series(hexchars.view(f"S{width}").ravel().astype(str).astype(object))


def generate_columns(schema: TableSchema, n: int, rng: np.random.Generator, seed: int) -> dict[str, pd.Series]:
    """Values for every id, pii and text column of the schema, with the schema's missing shares."""
    out: dict[str, pd.Series] = {}
    cols = schema.of_kind(ColumnKind.ID, ColumnKind.PII, ColumnKind.TEXT)
    if not cols:
        return out
    fake = None
    person = None
    for col in cols:
        if col.kind == ColumnKind.ID:
            out[col.name] = _ids(col, n, rng)
            continue
        if fake is None:
            fake = _faker(seed)
        if col.kind == ColumnKind.TEXT:
            pool = np.array([fake.sentence(nb_words=max(3, int((col.text_length or (60, 0))[0] / 6))) for _ in range(_POOL)], dtype=object)
            values = pool[rng.integers(0, _POOL, n)]
        else:
            ptype = col.pii_type or PiiType.NAME
            if ptype in (PiiType.NAME, PiiType.FIRST_NAME, PiiType.LAST_NAME, PiiType.EMAIL):
                if person is None:
                    firsts = np.array([fake.first_name() for _ in range(_POOL)], dtype=object)
                    lasts = np.array([fake.last_name() for _ in range(_POOL)], dtype=object)
                    person = (firsts[rng.integers(0, _POOL, n)], lasts[rng.integers(0, _POOL, n)])
                first, last = person
                if ptype == PiiType.NAME:
                    values = first + " " + last
                elif ptype == PiiType.FIRST_NAME:
                    values = first
                elif ptype == PiiType.LAST_NAME:
                    values = last
                else:
                    domains = np.array([fake.free_email_domain() for _ in range(50)], dtype=object)
                    num = rng.integers(1, 999, n).astype(str).astype(object)
                    values = (pd.Series(first).str.lower() + "." + pd.Series(last).str.lower() + num + "@"
                              + domains[rng.integers(0, 50, n)]).to_numpy(dtype=object)
            else:
                maker = {PiiType.PHONE: fake.phone_number, PiiType.ADDRESS: lambda: fake.address().replace("\n", ", "),
                         PiiType.SSN: fake.ssn, PiiType.IBAN: fake.iban, PiiType.CREDIT_CARD: fake.credit_card_number,
                         PiiType.IP: fake.ipv4}[ptype]
                pool = np.array([maker() for _ in range(_POOL)], dtype=object)
                values = pool[rng.integers(0, _POOL, n)]
        s = pd.Series(values, dtype=object)
        if col.missing_share > 0:
            s[rng.random(n) < col.missing_share] = None
        out[col.name] = s
    return out
