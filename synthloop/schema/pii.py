"""Find personal data in a column from its values, not its header.

Why not Presidio: its analyzer needs a spaCy model for names and addresses (a download at run time),
and with a blank pipeline it finds no names or addresses at all, while its email check fetches the
public suffix list over the network. The checks it runs for the other kinds come from the same
well-kept libraries used here, which run offline: python-stdnum (Luhn for card numbers, IBAN and
national-id checksums), phonenumbers (Google's libphonenumber), the standard library's ipaddress,
and Faker's name lists of many locales (Faker is already a dependency).

Speed: only a seeded sample of at most `max_values` distinct values per column is checked, and a
vectorized regular expression rules a kind out before any per-value validator runs, so a wide
table of labels (Adult) pays a few milliseconds per column.
"""
from __future__ import annotations

import importlib
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import pandas as pd

from synthloop.schema.model import PiiType

MAX_VALUES = 300  # distinct values checked per column
PATTERN_SHARE = 0.9  # share of sampled distinct values that must pass a checksum/format validator
NAME_SHARE = 0.6  # share of sampled distinct values that must look like person names
ADDRESS_SHARE = 0.6
MIN_DISTINCT_NAMES = 10  # fewer distinct values are labels, whatever they look like

_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$")
_PHONE_SHAPE = re.compile(r"^\+?[\d\s().\-/]{7,24}$")
_PHONE_EXT = re.compile(r"\s*(?:x|ext\.?|extension|#)\s*\d{1,6}$", re.IGNORECASE)
_CARD_SHAPE = re.compile(r"^(?:\d[ -]?){12,18}\d$")
_IBAN_SHAPE = re.compile(r"^[A-Za-z]{2}\d{2}[A-Za-z0-9 ]{10,36}$")
_SSN_SHAPE = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_IP_SHAPE = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+)$")
_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ./-]{6,22}[A-Za-z0-9]$")
_NAME_SHAPE = re.compile(r"^[^\W\d_]+\.?(?:(?:[ '\-]|, ?|\. ?)[^\W\d_]+\.?){0,4}$")
_TOKEN = re.compile(r"[^\W\d_]+")
_LATIN = re.compile(r"[a-z]")
_HONORIFICS = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "jr", "sr", "ii", "iii", "phd", "md", "dipl", "ing",
               "sc", "eng", "ba", "ma", "pan", "pani", "herr", "frau", "mme", "mlle", "sra", "sr", "de", "van", "von",
               "der", "den", "da", "di", "del", "la", "le", "mc", "mac", "bin", "al", "el"}
# Locales whose name lists are in Latin script and mostly names (some locales' lists hold words
# such as "red" or "cash" that would make labels look like names).
_NAME_LOCALES = ("en_US", "en_GB", "en_CA", "en_AU", "en_IE", "en_NZ", "en_IN", "de_DE", "de_AT", "de_CH", "fr_FR",
                 "fr_CA", "es_ES", "es_MX", "es_AR", "es_CO", "it_IT", "nl_NL", "nl_BE", "pt_BR", "pt_PT", "pl_PL",
                 "sv_SE", "da_DK", "no_NO", "fi_FI", "cs_CZ", "sk_SK", "hu_HU", "ro_RO", "tr_TR", "id_ID", "vi_VN",
                 "fil_PH", "sw", "yo_NG", "zu_ZA", "ga_IE", "lt_LT", "lv_LV", "et_EE", "sl_SI", "hr_HR")
_STREET_WORDS = {"st", "str", "ave", "av", "rd", "blvd", "dr", "ln", "ct", "pl", "hwy", "pkwy", "sq", "ter", "cir",
                 "trl", "apt", "suite", "ste", "unit", "floor", "po", "box", "strasse", "straße", "weg", "gasse",
                 "platz", "allee", "rue", "avenue", "boulevard", "chemin", "via", "viale", "piazza", "calle",
                 "avenida", "carrera", "rua", "straat", "laan", "plein", "gracht", "ulica", "ul", "vej", "gatan",
                 "vägen", "katu", "tie"}
# Last words of labels that are not people (companies, places, things named after people).
_LABEL_WORDS = {"inc", "llc", "ltd", "co", "corp", "corporation", "company", "group", "gmbh", "ag", "sa", "bv", "plc",
                "partners", "holdings", "industries", "bros", "sons", "city", "county", "beach", "springs", "airport",
                "field", "hotel", "park", "university", "college", "school", "hospital", "center", "centre", "bank",
                "church", "station", "island", "lake", "river", "mountain", "valley", "bridge", "square", "mall"}
# python-stdnum validators of national ids with a checksum or date check, so random digits rarely pass.
_NATIONAL_IDS = ("gb.nhs", "fr.nir", "es.dni", "es.nie", "it.codicefiscale", "br.cpf", "ca.sin",
                 "se.personnummer", "fi.hetu", "no.fodselsnummer", "nl.bsn", "pl.pesel", "de.idnr", "be.nn",
                 "in_.aadhaar", "cn.ric", "za.idnr", "mx.curp", "ch.ssn", "pt.cc", "ie.pps", "dk.cpr")
# Those that are digits only, so they may come as integers from a CSV (which drops leading zeros), with their width.
_NUMERIC_NATIONAL_IDS = {"nl.bsn": 9, "pl.pesel": 11, "de.idnr": 11, "no.fodselsnummer": 11, "in_.aadhaar": 12,
                         "br.cpf": 11}


@dataclass(frozen=True)
class PiiFinding:
    """What the values of one column look like: the PII type, why, and on how many sampled values."""

    pii_type: PiiType
    share: float
    sampled: int
    what: str  # e.g. "Luhn-valid card numbers"

    @property
    def reason(self) -> str:
        return f"{self.share:.0%} of {self.sampled} sampled distinct values are {self.what}"


def sample_distinct(values: pd.Series, max_values: int = MAX_VALUES, seed: int = 0) -> pd.Series:
    """At most `max_values` distinct non-null values as stripped strings, drawn with a fixed seed."""
    uniq = pd.unique(values.dropna().to_numpy())
    if len(uniq) > max_values:
        uniq = uniq[np.sort(np.random.default_rng(seed).choice(len(uniq), max_values, replace=False))]
    s = pd.Series(uniq, dtype=object).astype(str).str.strip()
    return s[s != ""].drop_duplicates().reset_index(drop=True)


def _share(sample: pd.Series, check: Callable[[str], bool]) -> float:
    return float(np.mean([bool(check(v)) for v in sample])) if len(sample) else 0.0


@lru_cache(maxsize=None)
def _validator(module: str) -> Callable[[str], bool]:
    mod = importlib.import_module(f"stdnum.{module}")
    return mod.is_valid


def _is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _is_phone(v: str) -> bool:
    """A possible number: international (+ or 00), else national in the US or the UK (lengths and prefixes)."""
    import phonenumbers

    digits = sum(ch.isdigit() for ch in v)
    if not 7 <= digits <= 15:
        return False
    v = v.strip()
    if v.startswith("00"):
        v = "+" + v[2:]
    for region in ((None,) if v.startswith("+") else ("US", "GB")):
        try:
            if phonenumbers.is_possible_number(phonenumbers.parse(v, region)):
                return True
        except phonenumbers.NumberParseException:
            continue
    return False


@lru_cache(maxsize=1)
def name_lists() -> tuple[frozenset[str], frozenset[str]]:
    """Lower-case first and last names from Faker's person providers.

    Latin-script entries come only from `_NAME_LOCALES` (other locales' romanized lists hold words such
    as "red" or "cash" that would make labels look like names); other scripts come from every locale.
    """
    from faker.config import AVAILABLE_LOCALES

    first: set[str] = set()
    last: set[str] = set()
    for loc in AVAILABLE_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except (ImportError, AttributeError):
            continue
        latin_ok = loc in _NAME_LOCALES
        for attrs, out in ((("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"), first),
                           (("last_names", "last_names_male", "last_names_female", "male_last_names", "unisex_last_names"), last)):
            for a in attrs:
                v = getattr(provider, a, None)
                if isinstance(v, (list, tuple, dict, set, frozenset)):
                    out.update(x for x in (str(x).lower() for x in v) if latin_ok or not _LATIN.search(x))
    return frozenset(first), frozenset(last)


def _person_names(sample: pd.Series) -> tuple[float, PiiType]:
    """Share of sampled values that are person names, and which name type the column holds.

    One word per value: the word is a known first name (or a known surname). Several words: the
    given name is a known first name ("Jane Doe", "Smith, Jane", "Dr. Jane Q. Doe"), since first-name
    lists cover people far better than surname lists do, and place or company labels rarely start
    with one ("New York", "Parker Inc" is caught by its last word).
    """
    first, last = name_lists()
    shaped = sample[sample.str.match(_NAME_SHAPE)]
    if shaped.empty:
        return 0.0, PiiType.NAME
    comma = shaped.str.contains(",").to_numpy()
    tokens = shaped.str.lower().str.findall(_TOKEN)
    singles = fulls = n_first = n_last = 0
    for toks, reversed_ in zip(tokens, comma):
        toks = [t for t in toks if (len(t) > 1 or not t.isascii()) and t not in _HONORIFICS]
        if len(toks) == 1:
            t = toks[0]
            if not t.isascii() and t not in first and t not in last and len(t) <= 4:
                fulls += any(t[:k] in last and t[k:] in first for k in (1, 2))  # CJK: surname, then given name
                continue
            singles += 1
            n_first += t in first
            n_last += t in last
        elif len(toks) > 1 and toks[-1] not in _LABEL_WORDS:
            given = toks[1] if reversed_ else toks[0]
            fulls += given in first or (toks[0] in last and toks[1] in first)  # also surname first (hu, ja, ru)
    if singles > len(shaped) / 2:  # one word per value: a first-name or a surname column, not both
        ptype = PiiType.FIRST_NAME if n_first >= n_last else PiiType.LAST_NAME
        return max(n_first, n_last) / len(sample), ptype
    return fulls / len(sample), PiiType.NAME


def _address_share(sample: pd.Series) -> float:
    from faker.providers.address.en_US import Provider

    words = _STREET_WORDS | {s.lower() for s in Provider.street_suffixes}
    has_number = sample.str.contains(r"\b\d+[A-Za-z]?\b")
    has_letters = sample.str.count(r"[^\W\d_]{2,}") >= 2
    cand = sample[has_number & has_letters]
    if cand.empty:
        return 0.0
    tokens = cand.str.lower().str.findall(r"[^\W\d_]+")
    return float(sum(any(t in words for t in toks) for toks in tokens) / len(sample))


def detect_pii(values: pd.Series, max_values: int = MAX_VALUES, seed: int = 0) -> PiiFinding | None:
    """The PII type the values of a text column hold, or None. Checks a sample of distinct values.

    Order matters where formats overlap: a card number is also a possible phone number, an SSN
    also looks like one, so the validators with a checksum come first.
    """
    sample = sample_distinct(values, max_values, seed)
    n = len(sample)
    if n == 0:
        return None

    def found(ptype: PiiType, share: float, what: str) -> PiiFinding:
        return PiiFinding(ptype, round(share, 3), n, what)

    def shaped(rx: re.Pattern[str]) -> pd.Series:
        return sample[sample.str.match(rx)]

    if sample.str.match(_EMAIL).mean() >= PATTERN_SHARE:
        return found(PiiType.EMAIL, float(sample.str.match(_EMAIL).mean()), "email addresses")
    for ptype, rx, check, what in (
        (PiiType.CREDIT_CARD, _CARD_SHAPE, lambda v: _validator("luhn")(re.sub(r"[ -]", "", v)), "Luhn-valid card numbers"),
        (PiiType.IBAN, _IBAN_SHAPE, _validator("iban"), "valid IBANs (checksum)"),
        (PiiType.SSN, _SSN_SHAPE, _validator("us.ssn"), "US social security numbers"),
        (PiiType.IP, _IP_SHAPE, _is_ip, "IP addresses"),
    ):
        cand = shaped(rx)
        if len(cand) >= PATTERN_SHARE * n:
            share = _share(cand, check) * len(cand) / n
            if share >= PATTERN_SHARE:
                return found(ptype, share, what)
    cand = shaped(_ID_SHAPE)
    if len(cand) >= PATTERN_SHARE * n:
        for module in _NATIONAL_IDS:
            share = _share(cand, _validator(module)) * len(cand) / n
            if share >= PATTERN_SHARE:
                return found(PiiType.SSN, share, f"valid national ids ({module}, checksum)")
    bare = sample.str.replace(_PHONE_EXT, "", regex=True)  # "(460)648-7647x5938": the extension is not the number
    cand = bare[bare.str.match(_PHONE_SHAPE)]
    if len(cand) >= PATTERN_SHARE * n:
        share = _share(cand, _is_phone) * len(cand) / n
        if share >= PATTERN_SHARE:
            return found(PiiType.PHONE, share, "phone numbers (libphonenumber)")
    share = _address_share(sample)
    if share >= ADDRESS_SHARE:
        return found(PiiType.ADDRESS, share, "street addresses (a number and a street word)")
    if n >= MIN_DISTINCT_NAMES:
        share, ptype = _person_names(sample)
        if share >= NAME_SHARE:
            kind = {PiiType.NAME: "full names", PiiType.FIRST_NAME: "first names", PiiType.LAST_NAME: "surnames"}[ptype]
            return found(ptype, share, f"person {kind} (Faker's name lists)")
    return None


def detect_pii_numbers(values: pd.Series, max_values: int = MAX_VALUES, seed: int = 0) -> PiiFinding | None:
    """Card numbers and checksum national ids stored as integers (a CSV reader turns them into numbers)."""
    v = pd.to_numeric(values.dropna(), errors="coerce").dropna()
    if v.empty or not np.all(np.mod(v.to_numpy(dtype=float), 1) == 0) or v.abs().min() < 1e8:
        return None
    sample = sample_distinct(v.astype("int64"), max_values, seed)
    n = len(sample)
    if n < MIN_DISTINCT_NAMES:
        return None
    lengths = sample.str.len()
    if lengths.between(13, 19).mean() >= PATTERN_SHARE:
        share = _share(sample, _validator("luhn"))
        if share >= PATTERN_SHARE:
            return PiiFinding(PiiType.CREDIT_CARD, round(share, 3), n, "Luhn-valid card numbers")
    for module, width in _NUMERIC_NATIONAL_IDS.items():
        share = _share(sample.str.zfill(width), _validator(module))
        if share >= PATTERN_SHARE:
            return PiiFinding(PiiType.SSN, round(share, 3), n, f"valid national ids ({module}, checksum)")
    return None
