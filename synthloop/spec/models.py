"""Pydantic models of the prompted-generation spec (YAML).

One column has exactly one source: a statistical `sampler`, a safe `expression` over other columns,
or an `llm` prompt (free text, or a JSON schema whose fields become several columns at once).
Validation here is per field; cross-column checks (unknown names, cycles, targets) live in loader.py
so their errors can name the YAML path too.
"""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_serializer, field_validator, model_validator

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DEFAULT_SYSTEM = (
    "You write realistic, varied records for a synthetic dataset. "
    "Reply with one JSON object only, no explanations."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# -- samplers ----------------------------------------------------------------------------------
class _Bounded(_Strict):
    min: float | None = None
    max: float | None = None
    decimals: int | None = Field(None, ge=0, le=12, description="round to this many digits; 0 = integers")

    @model_validator(mode="after")
    def _bounds(self) -> "_Bounded":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Uniform(_Bounded):
    min: float  # type: ignore[assignment]
    max: float  # type: ignore[assignment]


class Normal(_Bounded):
    mean: float
    std: float = Field(gt=0)


class LogNormal(_Bounded):
    """Log-normal: `mean`/`sigma` are those of the underlying normal (log scale), as in NumPy."""

    mean: float
    sigma: float = Field(gt=0)
    decimals: int | None = Field(2, ge=0, le=12)


class Poisson(_Bounded):
    lam: float = Field(gt=0)
    decimals: int | None = 0


class DatetimeRange(_Strict):
    start: _dt.datetime | _dt.date
    end: _dt.datetime | _dt.date
    format: str | None = Field(None, description="strftime format of the output; default ISO date or datetime")

    @model_validator(mode="after")
    def _order(self) -> "DatetimeRange":
        if _as_datetime(self.start) > _as_datetime(self.end):
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self


def _as_datetime(v: _dt.datetime | _dt.date) -> _dt.datetime:
    return v if isinstance(v, _dt.datetime) else _dt.datetime(v.year, v.month, v.day)


FAKER_PROVIDERS = {
    "name", "first_name", "last_name", "address", "street_address", "city", "country", "postcode",
    "email", "free_email", "company", "company_email", "phone_number", "job", "iban", "ipv4",
    "user_name", "url", "country_code", "state", "license_plate", "ssn", "credit_card_number", "uuid4",
}


class FakerSampler(_Strict):
    provider: str = Field(description="Faker provider: name, address, email, company, phone_number, ...")
    locale: str = "en_US"
    unique: bool = False

    @field_validator("provider")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in FAKER_PROVIDERS:
            raise ValueError(f"unknown Faker provider '{v}'; use one of {', '.join(sorted(FAKER_PROVIDERS))}")
        return v


class Sequence(_Strict):
    """Row ids: prefix + zero-padded counter (T000001, T000002, ...)."""

    start: int = 1
    prefix: str = ""
    digits: int = Field(0, ge=0, le=18)


class Distribution(_Strict):
    """Exactly one distribution."""

    categorical: dict[Any, float] | None = Field(None, description="value -> weight (normalized)")
    uniform: Uniform | None = None
    normal: Normal | None = None
    lognormal: LogNormal | None = None
    poisson: Poisson | None = None
    datetime: DatetimeRange | None = None
    faker: FakerSampler | None = None
    sequence: Sequence | None = None

    @field_validator("categorical")
    @classmethod
    def _weights(cls, v: dict[Any, float] | None) -> dict[Any, float] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("categorical needs at least one value")
        if any(w < 0 for w in v.values()):
            raise ValueError("categorical weights must be >= 0")
        total = sum(v.values())
        if total <= 0:
            raise ValueError("categorical weights must not all be 0")
        return {k: w / total for k, w in v.items()}

    @property
    def kind(self) -> str:
        return next(k for k in DIST_KINDS if getattr(self, k) is not None)

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distribution":
        set_ = [k for k in DIST_KINDS if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(
                f"give exactly one distribution ({', '.join(DIST_KINDS)}); got "
                + (", ".join(set_) if set_ else "none")
            )
        return self


DIST_KINDS = ("categorical", "uniform", "normal", "lognormal", "poisson", "datetime", "faker", "sequence")


class Sampler(Distribution):
    """A distribution, optionally switched by the value of another column (`by` + `cases`)."""

    by: str | None = Field(None, description="column whose value picks the case")
    cases: dict[Any, Distribution] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _by_cases(self) -> "Sampler":
        if self.cases and not self.by:
            raise ValueError("'cases' needs 'by' (the column whose value picks the case)")
        if self.by and not self.cases:
            raise ValueError("'by' needs 'cases' (a distribution per value)")
        if self.sequence is not None and self.by:
            raise ValueError("a sequence cannot be switched by another column")
        return self


# -- LLM columns -------------------------------------------------------------------------------
class FewShot(_Strict):
    file: Path = Field(description="CSV or JSONL seed file, relative to the spec file")
    k: int = Field(3, ge=1, le=20)
    column: str | None = Field(None, description="seed column with the examples (default: the column name)")
    match: list[str] = Field(default_factory=list, description="columns whose value an example must share")
    diverse: bool = Field(True, description="pick examples far apart (n-gram distance), not at random")
    per_row: bool = Field(True, description="pick new examples for every row; false: one pick for the whole "
                          "column, placed in the prompt's shared part (cheaper with the embedded model)")

    @model_validator(mode="after")
    def _fixed(self) -> "FewShot":
        if not self.per_row and self.match:
            raise ValueError("'match' picks examples per row; it cannot be combined with per_row: false")
        return self


class Checks(_Strict):
    """What a generated text must agree with in its own row (see synthloop/generate/agreement.py).
    Every generated cell is checked; a failing one is regenerated with the failure stated."""

    must_mention: list[str] = Field(default_factory=list, description="columns whose row value the text must name")
    agrees_with: dict[str, str] = Field(default_factory=dict, description="label -> categorical column (or schema "
                                        "field, e.g. triage.severity): the text must name no other value of it")
    regex: list[str] = Field(default_factory=list, description="patterns the text must match (re.search)")
    forbid_regex: list[str] = Field(default_factory=list, description="patterns the text must not match")
    expressions: list[str] = Field(default_factory=list, description="safe expressions over the row and `text`; must be true")
    judge: str | None = Field(None, description="yes/no question (a template) put to an LLM judge; 'no' fails the cell")
    min_words: int | None = Field(None, ge=1, description="at least this many words of letters")
    sanity: bool = Field(True, description="reject placeholders (<text>, N/A), echoed error text and texts without words")
    field: str | None = Field(None, description="structured column: the string field to check (default: all string fields)")
    max_attempts: int = Field(4, ge=1, le=20, description="answers tried per cell before the row is reported as failed")

    @field_validator("regex", "forbid_regex")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for pat in v:
            if len(pat) > 500:
                raise ValueError("a pattern may be at most 500 characters long")
            try:
                re.compile(pat)
            except re.error as exc:
                raise ValueError(f"pattern {pat!r} is not a valid regular expression: {exc}") from None
        return v


class LLMColumn(_Strict):
    prompt: str = Field(min_length=1, description="Jinja2 template; may reference other columns")
    system: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    few_shot: FewShot | None = None
    constraints: list[str] = Field(default_factory=list)
    avoid: list[str] = Field(default_factory=list)
    reasoning: bool = Field(False, description="ask for a short reasoning field first; dropped from the output")
    min_chars: int = Field(1, ge=0)
    max_chars: int = Field(160, ge=1, le=20000)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)
    max_retries: int = Field(2, ge=0, le=10, description="repair attempts after an invalid answer")
    flatten: bool = Field(True, description="structured: each schema property becomes its own column")
    dedup: bool | None = Field(None, description="near-duplicate check (default: on for text columns)")
    like: str | None = Field(None, description="column of the learn table whose real texts steer this one (few-shot "
                             "neighbours, style, copy and PII checks); default: the column of the same name, if any")
    neighbours: int = Field(3, ge=0, le=10, description="few-shot examples from the real rows nearest to each "
                            "synthetic row (on the structured columns), PII replaced; 0: none")
    style: bool = Field(True, description="state the real texts' length and typical openings in the prompt")
    length_tolerance: float | None = Field(None, ge=0, le=1, description="mixed specs: how far (a share of it) a "
                                           "text may be from its row's planned length before it is regenerated "
                                           "(the closest answer is kept); default: the widest band that moves the "
                                           "real length distribution by at most 0.02 KS distance")
    length_balance: bool = Field(True, description="mixed specs: each row keeps its valid, agreeing answers that "
                                 "differ only in length, and after all rows are written one per row is chosen so "
                                 "the column's length distribution follows the real one (a model that misses its "
                                 "plans one way is evened out); off, or when another column reads this one: the "
                                 "answer closest to the row's plan")
    length_rounds: int = Field(1, ge=0, le=5, description="with length_balance: a row none of whose answers "
                               "has its planned length is written again (fresh seeds) this many times, its new "
                               "answers joining its candidates; 0: none")
    checks: Checks | None = Field(None, description="row-text agreement checks on every generated cell")
    start: str | None = Field(None, description="text columns: the text begins with this (a template, e.g. "
                              "'{{ department | title }} visit:'); the embedded backend writes it into the answer, "
                              "so only the rest is generated")

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        import jsonschema

        try:
            jsonschema.Draft202012Validator.check_schema(v)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"not a valid JSON schema: {exc.message}") from None
        if v.get("type") != "object" or not isinstance(v.get("properties"), dict) or not v["properties"]:
            raise ValueError("must be an object schema with 'properties' (one per output field)")
        for field in v["properties"]:
            if not NAME_RE.match(field):
                raise ValueError(f"property name '{field}' must be an identifier (letters, digits, _)")
        return v

    @model_validator(mode="after")
    def _chars(self) -> "LLMColumn":
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is greater than max_chars ({self.max_chars})")
        if self.start is not None and self.json_schema is not None:
            raise ValueError("'start' is for text columns (a structured column's answer starts with its fixed fields)")
        return self

    @property
    def structured(self) -> bool:
        return self.json_schema is not None


class Column(_Strict):
    name: str
    description: str | None = None
    sampler: Sampler | None = None
    expression: str | None = None
    llm: LLMColumn | None = None
    null_rate: float = Field(0.0, ge=0.0, lt=1.0)
    hidden: bool = Field(False, description="a helper column: other columns may read it, the output leaves it out")

    @field_validator("name")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"'{v}' is not a valid column name; use letters, digits and _ (not starting with a digit)")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "Column":
        set_ = [k for k in ("sampler", "expression", "llm") if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(
                "give exactly one of sampler, expression or llm; got " + (", ".join(set_) if set_ else "none")
            )
        return self

    @property
    def source(self) -> str:
        return "sampler" if self.sampler is not None else "expression" if self.expression is not None else "llm"

    def output_names(self) -> list[str]:
        """Columns this entry writes: structured LLM columns write one per schema property."""
        if self.llm is not None and self.llm.structured and self.llm.flatten:
            return list(self.llm.json_schema["properties"])  # type: ignore[index]
        return [self.name]


# -- run settings ------------------------------------------------------------------------------
class FineTune(_Strict):
    """LoRA training of the finetuned backend on the learn table's texts (conditioned on the row)."""

    epochs: int = Field(1, ge=1, le=100)
    rank: int = Field(8, ge=1, le=256)
    alpha: int = Field(16, ge=1, le=1024)
    learning_rate: float = Field(2e-4, gt=0, le=1)
    batch_size: int = Field(8, ge=1, le=1024)
    max_length: int = Field(256, ge=8, le=8192, description="tokens per training example (prompt + text)")
    max_texts: int = Field(5000, ge=1, description="real texts per column trained on (a seeded sample beyond)")
    adapter: str | None = Field(None, description="folder to keep the adapter in (default: .synthloop/adapters "
                                "beside the spec, one per data and settings)")


class LLMSettings(_Strict):
    backend: Literal["embedded", "openai", "hf", "finetuned"] = "embedded"
    model: str | None = Field(None, description="embedded: a .gguf path (default SmolLM2-135M); openai: model name; "
                              "hf: a local directory; finetuned: a local directory with the causal LM to tune")
    base_url: str | None = None
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (never logged)")
    concurrency: int = Field(4, ge=1, le=256)
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20, description="HTTP retries on 429/5xx/timeouts")
    backoff: float = Field(0.5, ge=0, description="first retry delay in seconds, doubled each retry")
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(200, ge=1)
    n_ctx: int = Field(2048, ge=256)
    threads: int | None = Field(None, ge=1, description="embedded: llama.cpp CPU threads (default half the cores, "
                                "at most 4); --threads on the command line")
    constrained: bool = Field(True, description="JSON-schema constrained decoding where the backend allows it")
    row_retries: int = Field(2, ge=0, le=10, description="rounds in which a row that failed every attempt is written "
                             "again with fresh seeds (its sampled values and quota slot kept), so -n N gives N rows")
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    system: str = DEFAULT_SYSTEM
    finetune: FineTune | None = Field(None, description="backend finetuned: LoRA training settings")

    # the key variable the user named outside the file (--api-key-env, or code): honoured whatever its name
    _key_env_chosen: str | None = PrivateAttr(None)

    @field_serializer("base_url", when_used="json")
    def _no_password(self, v: str | None) -> str | None:
        from synthloop.llm.secrets import redact_url

        return redact_url(v)  # what is written to files (refine history, logs) carries no credentials

    def choose_api_key_env(self, name: str) -> None:
        """Use the variable `name` for the API key: the user's own choice, so any name is honoured."""
        self.api_key_env = name
        self._key_env_chosen = name

    def api_key_env_allowed(self) -> bool:
        """A file alone may name only `*_API_KEY` variables; others need the user's say-so too."""
        from synthloop.llm.secrets import key_env_allowed

        return key_env_allowed(self.api_key_env) or self.api_key_env == self._key_env_chosen


class Diversity(_Strict):
    columns: list[str] | None = Field(None, description="text columns to check (default: every LLM text column)")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of n-gram sets above which rows are near-duplicates")
    ngram: int = Field(3, ge=1, le=10, description="character n-gram size of the normalized text")
    max_rounds: int = Field(2, ge=0, le=10, description="regeneration rounds for duplicates")


class Learn(_Strict):
    """The learned half of a mixed spec: a real table whose structured columns a synthesizer learns."""

    data: Path = Field(description="real table (CSV/Parquet/JSONL), relative to the spec file")
    model: str = Field("auto", description="synthesizer: auto, copula, autoregressive, ...")
    max_seconds: float | None = Field(None, gt=0, description="training time budget")
    epochs: int | None = Field(None, ge=1)
    columns: list[str] | None = Field(None, description="columns to learn (default: every column no spec column writes)")
    exclude: list[str] = Field(default_factory=list, description="table columns neither learned nor written")
    pii: list[str] = Field(default_factory=list, description="columns whose values must never appear in generated "
                           "text, besides those detected as personal data")
    max_rows: int = Field(20000, ge=10, description="real rows used (a seeded sample of larger tables)")


class TextPrivacy(_Strict):
    max_copied_run: int = Field(8, ge=2, le=200, description="regenerate texts sharing this many consecutive tokens "
                                "with a real text")
    max_rounds: int = Field(2, ge=0, le=10, description="regeneration rounds for copied runs and PII")


class Spec(_Strict):
    name: str
    description: str | None = None
    rows: int = Field(100, ge=1)
    seed: int = 0
    llm: LLMSettings = Field(default_factory=LLMSettings)
    columns: list[Column] = Field(min_length=1)
    targets: dict[str, dict[Any, float]] = Field(default_factory=dict)
    target_tolerance: float = Field(0.01, gt=0, le=1, description="largest accepted |target - generated| share")
    quotas: bool = Field(True, description="meet categorical shares exactly by planning per-value counts")
    diversity: Diversity = Field(default_factory=Diversity)
    learn: Learn | None = None
    text_privacy: TextPrivacy = Field(default_factory=TextPrivacy)

    # set by the loader; not part of the YAML
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: str = Field(default="spec", exclude=True)
    # folders besides base_dir that files named in the spec may lie in (--allow-dir; refine's work folder)
    _allowed_dirs: list[Path] = PrivateAttr(default_factory=list)
    # mixed specs: the learn table's columns (in its order) and those the synthesizer learns
    _table_columns: list[str] = PrivateAttr(default_factory=list)
    _learned: list[str] = PrivateAttr(default_factory=list)

    @property
    def learned_columns(self) -> list[str]:
        """Columns the synthesizer writes (empty without a `learn:` block)."""
        return list(self._learned)

    def conditioning_columns(self) -> list[str]:
        """Sampler columns that are also learn-table columns: drawn first, the learned ones follow them
        (Faker and sequence samplers excepted: they replace a personal or id column)."""
        if self.learn is None:
            return []
        return [c.name for c in self.columns if c.sampler is not None and c.name in self._table_columns
                and c.sampler.kind not in ("faker", "sequence")]  # fakes replace a personal column instead

    def text_source(self, col: Column) -> str | None:
        """The learn-table column whose real texts steer LLM text column `col` (None: no steering)."""
        if self.learn is None or col.llm is None or col.llm.structured:
            return None
        if col.llm.like is not None:
            return col.llm.like
        return col.name if col.name in self._table_columns else None

    def allow_dir(self, folder: str | Path) -> None:
        """Let files named in the spec lie in `folder` too (the user's choice, never the spec's)."""
        self._allowed_dirs.append(Path(folder).resolve())

    def resolve_file(self, name: str | Path) -> Path:
        """The real path (symlinks followed) of a file the spec names, which must lie inside the
        spec's folder or an allowed one: a spec must not read, and put in prompts sent to a server,
        files from elsewhere on the user's machine. Raises ValueError saying what to do."""
        real = (self.base_dir / Path(name).expanduser()).resolve()
        roots = [self.base_dir.resolve(), *self._allowed_dirs]
        if any(real == r or real.is_relative_to(r) for r in roots):
            return real
        raise ValueError(f"{name} lies outside the spec's folder {roots[0]} (it resolves to {real}); "
                         "move it into the spec's folder or allow its folder with --allow-dir DIR")

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def producer(self) -> dict[str, Column]:
        """Output name -> the spec column that writes it (structured fields map to their column)."""
        out: dict[str, Column] = {}
        for c in self.columns:
            out[c.name] = c
            for f in c.output_names():
                out[f] = c
        return out

    def output_columns(self, include_hidden: bool = False) -> list[str]:
        """Columns written to the output (`hidden: true` helpers left out unless asked for); with a
        `learn:` block the learn table's order comes first, then the spec's other columns."""
        own = [n for c in self.columns if include_hidden or not c.hidden for n in c.output_names()]
        if not self._learned:
            return own
        first = [c for c in self._table_columns if c in self._learned or c in own]
        return first + [n for n in own if n not in first]
