"""Columns that are generated, never learned: ids (unique keys), PII (Faker) and free text.

Faker is slow per value, so each kind draws a pool once and indexes it with NumPy; names and emails
of one row come from the same person so they stay consistent.

Consistency across tables: `identities(keys, secret=...)` maps each key (say a customer id) to one
fake person through a keyed hash (SipHash with a key derived from `secret`), so the same key gets
the same name, email, phone and address in every table and every run that uses the same secret,
while the mapping cannot be inverted without the secret. `apply_pii(df, schema, key=...)` rewrites
the PII columns of a finished table that way.

Free text: `scrub_text` finds identifiers embedded in text (emails, phone numbers, SSNs, card numbers,
IBANs, IP addresses) and replaces each by a fake one, the same original always by the same fake.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np
import pandas as pd

from synthloop.schema.model import ColumnKind, ColumnSchema, PiiType, TableSchema

_POOL = 2000
DEFAULT_LOCALE = "en_US"
_PERSON = (PiiType.NAME, PiiType.FIRST_NAME, PiiType.LAST_NAME, PiiType.EMAIL)


def _faker(seed: int, locale: str | None = None):
    from faker import Faker

    fake = Faker(locale or DEFAULT_LOCALE)
    fake.seed_instance(seed)
    return fake


def _ascii(values: np.ndarray) -> np.ndarray:
    """Lower-case ASCII local parts for emails (locales with accents or non-Latin scripts)."""
    import unicodedata

    out = [re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKD", str(v)).encode("ascii", "ignore").decode().lower()) for v in values]
    return np.array([o or "user" for o in out], dtype=object)


def _makers(fake) -> dict[PiiType, object]:
    return {PiiType.PHONE: fake.phone_number, PiiType.ADDRESS: lambda: fake.address().replace("\n", ", "),
            PiiType.SSN: fake.ssn, PiiType.IBAN: fake.iban, PiiType.CREDIT_CARD: fake.credit_card_number,
            PiiType.IP: fake.ipv4}


def generate_ids(col: ColumnSchema, n: int, rng: np.random.Generator, start: int = 0, key: int | None = None) -> pd.Series:
    """`n` unique ids following the column's pattern. With `key`, the ids are numbers start..start+n-1
    of one sequence fixed by `key`, so the batches of a long draw never repeat an id."""
    pattern = col.id_pattern or "{int}"
    if pattern == "{int}":
        first = (int(col.min) if col.min is not None else 1) + start
        return pd.Series(np.arange(first, first + n, dtype=np.int64))
    m = re.fullmatch(r"(.*)\{digits:(\d+)\}", pattern)
    if m:
        width = int(m.group(2))
        space = 10**width
        if key is not None:
            nums = _keyed_permutation(start, n, space, key, rng)
        else:
            nums = rng.choice(space, size=n, replace=False) if n <= space // 2 else np.arange(n) % space
        return pd.Series(np.char.add(m.group(1), np.char.zfill(nums.astype(str), width)).astype(object))
    m = re.fullmatch(r"(.*)\{int\}", pattern)
    if m:
        return pd.Series(np.char.add(m.group(1), np.arange(start + 1, start + n + 1).astype(str)).astype(object))
    m = re.fullmatch(r"\{hex:(\d+)\}", pattern)
    width = int(m.group(1)) if m else 12
    raw = rng.integers(0, 16, size=(n, width), dtype=np.uint8)
    hexchars = np.frombuffer(b"0123456789abcdef", dtype="S1")[raw]
    return pd.Series(hexchars.view(f"S{width}").ravel().astype(str).astype(object))


def _keyed_permutation(start: int, n: int, space: int, key: int, rng: np.random.Generator) -> np.ndarray:
    """Positions start..start+n-1 of a fixed pseudo-random order of range(space) (an affine map with a
    multiplier prime to 10, so distinct positions give distinct numbers), shuffled within the batch."""
    pos = np.arange(start, start + n, dtype=np.int64)
    if space <= 10:
        return rng.permutation(pos % space)
    k = np.random.default_rng(key)
    mult = int(k.integers(1, min(space, 2**31))) | 1
    while mult % 5 == 0:
        mult += 2
    offset = int(k.integers(0, min(space, 10**18)))
    if space > 10**18:  # pos * mult + offset < 2**62 < space: distinct without wrapping
        return rng.permutation(pos * mult + offset)
    return rng.permutation(((pos % space) * mult + offset) % space)


_ids = generate_ids  # former private name


def generate_columns(schema: TableSchema, n: int, rng: np.random.Generator, seed: int, locale: str | None = None,
                     keys: np.ndarray | pd.Series | None = None, secret: str | None = None) -> dict[str, pd.Series]:
    """Values for every id, pii and text column of the schema, with the schema's missing shares.

    With `keys` (one per row), person PII comes from `identities(keys, secret, locale)`: the same key
    gets the same fake person in every table generated with the same secret.
    """
    out: dict[str, pd.Series] = {}
    cols = schema.of_kind(ColumnKind.ID, ColumnKind.PII, ColumnKind.TEXT)
    if not cols:
        return out
    fake = None
    person = None
    ident = identities(keys, secret=secret, locale=locale) if keys is not None else None
    for col in cols:
        if col.kind == ColumnKind.ID:
            out[col.name] = generate_ids(col, n, rng)
            continue
        if fake is None:
            fake = _faker(seed, locale)
        if col.kind == ColumnKind.TEXT:
            pool = np.array([fake.sentence(nb_words=max(3, int((col.text_length or (60, 0))[0] / 6))) for _ in range(_POOL)], dtype=object)
            values = pool[rng.integers(0, _POOL, n)]
        elif ident is not None:
            values = ident[(col.pii_type or PiiType.NAME).value].to_numpy(dtype=object)
        else:
            ptype = col.pii_type or PiiType.NAME
            if ptype in _PERSON:
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
                    values = (_ascii(first) + "." + _ascii(last) + num + "@" + domains[rng.integers(0, 50, n)])
            else:
                maker = _makers(fake)[ptype]
                pool = np.array([maker() for _ in range(_POOL)], dtype=object)
                values = pool[rng.integers(0, _POOL, n)]
        s = pd.Series(values, dtype=object)
        if col.missing_share > 0:
            s[rng.random(n) < col.missing_share] = None
        out[col.name] = s
    return out


# -- consistent identities across tables -------------------------------------------------------------
def _hash_key(secret: str | None, salt: str) -> str:
    """16-character SipHash key for pandas' hash_array, derived from the secret."""
    return hashlib.blake2b(f"{salt}\x00{secret or 'synthloop'}".encode(), digest_size=8).hexdigest()


@lru_cache(maxsize=8)
def _pools(secret: str | None, locale: str) -> dict[str, np.ndarray]:
    seed = int.from_bytes(hashlib.blake2b(f"pools\x00{secret or 'synthloop'}\x00{locale}".encode(), digest_size=4).digest(), "little")
    fake = _faker(seed, locale)
    pools = {"first_name": np.array([fake.first_name() for _ in range(_POOL)], dtype=object),
             "last_name": np.array([fake.last_name() for _ in range(_POOL)], dtype=object),
             "domain": np.array([fake.free_email_domain() for _ in range(50)], dtype=object)}
    for ptype, maker in _makers(fake).items():
        pools[ptype.value] = np.array([maker() for _ in range(_POOL)], dtype=object)
    return pools


def identities(keys: np.ndarray | pd.Series | list, secret: str | None = None, locale: str | None = None) -> pd.DataFrame:
    """One fake person per key, a pure function of (key, secret, locale): name, email, phone, address, ...

    Keys are compared as strings, so 42, "42" and 42.0 differ only if their text differs ("42.0").
    Email local parts are built from the same first and last name (consistent within the person).
    """
    locale = locale or DEFAULT_LOCALE
    k = pd.Series(keys).astype(str).to_numpy(dtype=object)
    pools = _pools(secret, locale)
    h1 = pd.util.hash_array(k, hash_key=_hash_key(secret, "person"), categorize=True).astype(np.uint64)
    h2 = pd.util.hash_array(k, hash_key=_hash_key(secret, "contact"), categorize=True).astype(np.uint64)
    P = np.uint64(_POOL)
    first = pools["first_name"][(h1 % P).astype(np.int64)]
    last = pools["last_name"][((h1 >> np.uint64(16)) % P).astype(np.int64)]
    num = ((h1 >> np.uint64(40)) % np.uint64(999) + np.uint64(1)).astype(np.int64).astype(str).astype(object)
    domain = pools["domain"][((h1 >> np.uint64(56)) % np.uint64(50)).astype(np.int64)]
    out = {"first_name": first, "last_name": last, "name": first + " " + last,
           "email": _ascii(first) + "." + _ascii(last) + num + "@" + domain}
    for i, ptype in enumerate((PiiType.PHONE, PiiType.ADDRESS, PiiType.SSN, PiiType.IBAN, PiiType.CREDIT_CARD, PiiType.IP)):
        idx = ((h2 >> np.uint64(5 * i)) % P).astype(np.int64)
        out[ptype.value] = pools[ptype.value][idx]
    return pd.DataFrame(out)


def apply_pii(df: pd.DataFrame, schema: TableSchema, key: str | None = None, secret: str | None = None,
              locale: str | None = None, seed: int = 0) -> pd.DataFrame:
    """A copy of `df` whose PII columns are fake: per `key` column consistently (see `identities`), or
    drawn at random with `seed` when no key is given. Nulls stay null; text columns are scrubbed."""
    out = df.copy()
    pii = [c for c in schema.of_kind(ColumnKind.PII) if c.name in out.columns]
    if key is not None:
        if key not in out.columns:
            from synthloop.errors import DataError

            raise DataError(f"PII key column '{key}' is not in the table; columns are: {', '.join(map(str, out.columns))}")
        ident = identities(out[key], secret=secret, locale=locale)
    else:
        sub = TableSchema(columns=[c.model_copy(update={"missing_share": 0.0}) for c in pii])
        gen = generate_columns(sub, len(out), np.random.default_rng(seed), seed, locale=locale)
        ident = pd.DataFrame({c.name: gen[c.name].to_numpy() for c in pii})
    for c in pii:
        col = (c.pii_type or PiiType.NAME).value if key is not None else c.name
        values = pd.Series(ident[col].to_numpy(dtype=object), index=out.index, dtype=object)
        out[c.name] = values.where(df[c.name].notna(), None)
    for c in schema.of_kind(ColumnKind.TEXT):
        if c.name in out.columns:
            out[c.name] = scrub_text(out[c.name], secret=secret, locale=locale)
    return out


# -- identifiers inside free text ----------------------------------------------------------------------
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    ("credit_card", re.compile(r"\b(?:\d{4}[ -]?){3}\d{1,4}\b")),
    ("ssn", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("ip", re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    ("phone", re.compile(r"(?<![\w.])\+?\(?\d[\d\s().-]{6,18}\d(?![\w.])")),
]


_COMBINED = re.compile("|".join(f"(?P<{kind}>{pat.pattern})" for kind, pat in _PATTERNS))
_MIN_PHONE_DIGITS = 9  # dates (2023-01-15) and short numbers are not phone numbers


def _matches(text: pd.Series) -> pd.DataFrame:
    """Every identifier in `text` (one pass, earlier kinds win at the same position): row, kind, match."""
    found = text.astype(str).str.extractall(_COMBINED)
    if found.empty:
        return pd.DataFrame({"row": [], "kind": [], "text": []})
    kinds = found.notna().idxmax(axis=1)
    vals = found.bfill(axis=1).iloc[:, 0]
    out = pd.DataFrame({"row": found.index.get_level_values(0), "kind": kinds.to_numpy(), "text": vals.to_numpy()})
    digits = out["text"].str.count(r"\d")
    return out[(out["kind"] != "phone") | (digits >= _MIN_PHONE_DIGITS)].reset_index(drop=True)


def find_identifiers(values: pd.Series) -> pd.DataFrame:
    """Every identifier found in the text: row, kind, matched text (for review and tests)."""
    return _matches(values.dropna())


def identifier_share(values: pd.Series) -> float:
    """Share of non-null values that contain at least one embedded identifier."""
    s = values.dropna()
    if s.empty:
        return 0.0
    return float(_matches(s)["row"].nunique() / len(s))


def scrub_text(values: pd.Series, secret: str | None = None, locale: str | None = None) -> pd.Series:
    """Replace identifiers embedded in free text by fake ones; the same original always becomes the same fake.

    The fake comes from `identities(original, secret, locale)`, so it is stable across rows, tables and runs
    with one secret, and one kind stays the same kind (an email becomes an email). One regex pass, so
    an inserted fake is never matched again.
    """
    s = values.astype(object)
    present = s.notna()
    if not present.any():
        return values
    text = s[present].astype(str)
    found = _matches(text)
    if found.empty:
        return values
    lut: dict[tuple[str, str], str] = {}
    for kind, group in found.groupby("kind"):
        uniq = group["text"].unique()
        fakes = identities(uniq, secret=secret, locale=locale)[kind].to_numpy(dtype=object)
        lut.update({(kind, u): f for u, f in zip(uniq, fakes)})

    def repl(m: re.Match[str]) -> str:
        return lut.get((m.lastgroup or "", m.group(0)), m.group(0))

    out = s.copy()
    out[present] = text.str.replace(_COMBINED, repl, regex=True)
    return out
