"""What the user wants from a run: metric bounds and distribution targets, loaded from YAML.

```yaml
metrics:                        # any of METRICS, each with min and/or max
  quality_score: {min: 0.8}
  detection_auc: {max: 0.8}
  pair_trends_drift: {max: 0.05}   # pair-trend score lost against the first (unsteered) iteration
shares: {sex: {Female: 0.5, Male: 0.5}}      # exact shares (within `tolerance`)
parity: [sex]                                # equal shares over every value of a protected column
min_shares: {is_fraud: {1: 0.25}}            # a rare class at least this share
ranges: {amount: {min: 1, max: 1000}}        # every value (or `share` of them) inside [min, max]
text: {note: {agreement: 0.95, length: {min: 40, max: 200}, max_copied_run: 8, length_ks: 0.9}}  # LLM text columns
constraints: ["fee <= amount"]               # rules that must hold on 100% of rows
# prompted specs: `metrics: {judge_pass_rate: {min: 0.9}}` has the LLM judge `judge_sample` outputs
# per LLM column against their instruction; a column below it gets its prompt rewritten (RewritePrompt)
match_real: true                             # default when no distribution target is given
budget: {iterations: 5, seconds: 600}
objective: {target: is_fraud, metric: recall_at_precision, precision: 0.5}   # see refine/objective.py
autopilot:                                   # `synthloop autopilot`: what it searches and the floors it keeps
  models: [copula, autoregressive]
  floors: {dcr_share: {min: 0.47, max: 0.53}, mia_auc: {max: 0.6}, quality_score: {min: 0.7}}
  floor_z: 2.0                               # figures with a standard error must clear a floor by 2 of them
  selection_z: 1.0                           # best = highest score less 1 standard error of its gain
  prompts: {note: {variants: ["..."], few_shot: [0, 3], temperature: [0.3, 1.1]}}   # --spec: LLM columns
```
Learned runs also read `model`, `model_params`, `models` (the ladder SwitchModel climbs), `rows`,
`seed`, `target` (column for utility) and `holdout_share`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthloop.errors import SynthloopError
from synthloop.refine.objective import Objective
from synthloop.spec.models import LLMSettings

# metric name -> (what it is, the bound a user usually gives)
METRICS: dict[str, str] = {
    "quality_score": "SDMetrics quality score (mean of column shapes and pair trends)",
    "column_shapes": "mean 1 - KS / 1 - TVD over columns",
    "column_pair_trends": "mean pair-trend score over related column pairs",
    "pair_trends_drift": "column pair trends lost against the first, unsteered iteration",
    "detection_auc": "ROC AUC of a real-vs-synthetic classifier (0.5 ideal)",
    "tstr_ratio": "TSTR / TRTR of a model predicting `target` on a real holdout",
    "dcr_share": "share of synthetic rows closer to a training row than to a holdout row (0.5 ideal)",
    "exact_copy_rate": "share of synthetic rows identical to a training row",
    "constraint_adherence": "share of rows satisfying every rule in `constraints`",
    "near_duplicate_rate": "share of text values that near-duplicate another (prompted text columns)",
    "judge_pass_rate": "share of sampled LLM outputs an LLM judge finds follow their instruction (prompted specs; worst column)",
}


class TargetsError(SynthloopError):
    """The targets file is invalid; the message names the file, line and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bound(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some(self) -> "Bound":
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def holds(self, v: float) -> bool:
        return (self.min is None or v >= self.min) and (self.max is None or v <= self.max)

    def text(self) -> str:
        if self.min is not None and self.max is not None:
            return f"[{self.min:g}, {self.max:g}]"
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"


class RangeTarget(_Strict):
    min: float | None = None
    max: float | None = None
    share: float = Field(1.0, gt=0, le=1, description="share of non-null values that must fall inside")

    @model_validator(mode="after")
    def _some(self) -> "RangeTarget":
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class TextTarget(_Strict):
    """What a free-text (LLM) column must reach: row-text agreement (its `checks:`), a length range
    in characters, a ceiling on the token run copied from a real text, length KS similarity to the
    real texts (mixed specs)."""

    agreement: float | None = Field(None, ge=0, le=1, description="least share of rows whose text passes its checks")
    length: RangeTarget | None = None
    max_copied_run: int | None = Field(None, ge=1, description="every text shares fewer tokens in a row with a real text")
    length_ks: float | None = Field(None, ge=0, le=1, description="least 1 - KS of text lengths against the real texts")


class Budget(_Strict):
    iterations: int = Field(5, ge=1, le=100)
    seconds: float | None = Field(None, gt=0)
    patience: int = Field(2, ge=1, le=20, description="stop after this many iterations without gain")


def _shares(v: dict[Any, float], where: str) -> dict[Any, float]:
    if not v:
        raise ValueError(f"{where}: give at least one value")
    if any(not 0 <= s <= 1 for s in v.values()):
        raise ValueError(f"{where}: shares must lie in [0, 1]")
    return v


# What `synthloop autopilot` keeps as floors (constraints no reported trial may break).
FLOORS: dict[str, str] = {
    "dcr_share": METRICS["dcr_share"],
    "exact_copy_rate": METRICS["exact_copy_rate"],
    "mia_auc": "ROC AUC of a distance-based membership-inference attack (0.5 ideal)",
    "epsilon": "differential-privacy epsilon spent (DP models only; a non-DP model has none and breaks an epsilon floor)",
    "quality_score": METRICS["quality_score"],
    "agreement": "--spec: share of written rows whose LLM text passes its checks (the worst checked column)",
    "column_shapes": METRICS["column_shapes"],
    "column_pair_trends": METRICS["column_pair_trends"],
}


class PromptSearch(_Strict):
    """What `synthloop autopilot --spec` may change in one LLM column of a mixed spec (`autopilot.prompts`)."""
    variants: list[str] = Field(default_factory=list, description="other instruction templates tried besides the "
                                "spec's own prompt (Jinja2, the same row variables)")
    few_shot: list[int] | None = Field(None, description="few-shot counts tried (0: no few-shot block); default: "
                                       "0, half and all of the spec's k when the column has few_shot")
    temperature: tuple[float, float] | None = Field((0.3, 1.1), description="the column's sampling temperature range "
                                                    "(null: keep the spec's)")
    neighbours: list[int] | None = Field(None, description="mixed text columns: counts of nearest-real-row examples tried")

    @model_validator(mode="after")
    def _check(self) -> "PromptSearch":
        if self.temperature is not None and not 0 <= self.temperature[0] <= self.temperature[1] <= 2:
            raise ValueError("temperature: give [low, high] with 0 <= low <= high <= 2")
        if any(k < 0 or k > 20 for k in (self.few_shot or [])):
            raise ValueError("few_shot: counts lie in 0..20")
        if any(k < 0 or k > 10 for k in (self.neighbours or [])):
            raise ValueError("neighbours: counts lie in 0..10")
        if any(not v.strip() for v in self.variants):
            raise ValueError("variants: an instruction template may not be empty")
        return self


class AutopilotSettings(_Strict):
    """The `autopilot:` section: the search space and the floors (see synthloop/refine/autopilot.py)."""
    models: list[str] = Field(default_factory=lambda: ["copula", "autoregressive"])
    floors: dict[str, Bound] = Field(default_factory=lambda: {"dcr_share": Bound(min=0.47, max=0.53)})
    temperature: tuple[float, float] = (0.7, 1.2)
    oversample: bool = Field(True, description="search the share of the rare class among synthetic rows")
    max_rare_share: float = Field(1.0, gt=0, le=1, description="highest share of the rare class among synthetic rows "
                                  "(1: the synthetic rows may all be of the rare class, i.e. oversampling it alone)")
    search_share: bool = Field(True, description="augment mode: search the synthetic share of the training set")
    share_range: tuple[float, float] = Field((0.01, 0.6), description="augment: the synthetic share of the training "
                                             "set (searched on a log scale: a few rows of a rare class matter)")
    gaps: bool = Field(True, description="search conditional generation for the weakest slices the gap finder finds")
    max_gap_share: float = Field(0.3, ge=0, lt=1)
    fairness: bool = Field(True, description="search parity rebalancing of the `protected` columns")
    relabel: bool = Field(True, description="search relabelling the target of synthetic rows by a teacher fitted on real rows")
    epsilons: list[float] = Field(default_factory=lambda: [1.0, 3.0, 10.0], description="dp model: the epsilons tried")
    seconds: tuple[float, float] | None = Field(None, description="trained models: the range of fit budgets (default: scaled to the table)")
    eval_rows: int = Field(5000, ge=100, description="rows the privacy and fidelity floors are measured on")
    prompts: dict[str, PromptSearch] = Field(default_factory=dict, description="--spec: the LLM columns whose prompt "
                                             "variants are searched (default: every LLM column, PromptSearch defaults)")
    llm_rows: int | None = Field(None, ge=1, description="--spec: synthetic rows whose LLM columns are generated per "
                                 "trial (default: all; a cap keeps trials with a slow LLM short)")
    floor_z: float = Field(2.0, ge=0, le=10, description="a floor holds when the figure stays inside it by this many "
                           "standard errors (figures measured with one, e.g. dcr_share): the chosen data then keeps "
                           "the floor on new holdout rows too, not only on the rows it was measured on")
    selection_z: float = Field(1.0, ge=0, le=10, description="the best trial is the feasible one with the highest "
                               "score less this many standard errors of its gain over real rows alone (paired "
                               "bootstrap): a gain that only some validation rows show does not win the search")

    @model_validator(mode="after")
    def _check(self) -> "AutopilotSettings":
        from synthloop.synthesizers.base import MODEL_MODULES

        if not self.models:
            raise ValueError("models: give at least one model")
        for m in self.models:
            if m not in MODEL_MODULES:
                raise ValueError(f"unknown model '{m}'; choose from {', '.join(MODEL_MODULES)}")
        for name in self.floors:
            if name not in FLOORS:
                raise ValueError(f"unknown floor '{name}'; use one of {', '.join(FLOORS)}")
        for name, (lo, hi) in (("temperature", self.temperature), ("share_range", self.share_range)):
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: give [low, high] with 0 < low <= high")
        if self.share_range[1] >= 1:
            raise ValueError("share_range: the synthetic share must stay below 1")
        return self


class Targets(_Strict):
    metrics: dict[str, Bound] = Field(default_factory=dict)
    shares: dict[str, dict[Any, float]] = Field(default_factory=dict)
    parity: list[str] = Field(default_factory=list)
    min_shares: dict[str, dict[Any, float]] = Field(default_factory=dict)
    ranges: dict[str, RangeTarget] = Field(default_factory=dict)
    constraints: list[Any] = Field(default_factory=list)
    text: dict[str, TextTarget] = Field(default_factory=dict, description="free-text columns of prompted/mixed specs")
    match_real: bool | None = None
    tolerance: float = Field(0.01, gt=0, le=1, description="largest accepted |share - target|")
    budget: Budget = Field(default_factory=Budget)
    # learned runs
    model: str = "copula"
    model_params: dict[str, Any] = Field(default_factory=dict)
    models: list[str] = Field(default_factory=lambda: ["copula", "dp", "autoregressive"])
    rows: int | None = Field(None, ge=1)
    seed: int = 0
    target: str | None = None
    protected: list[str] = Field(default_factory=list)
    holdout_share: float = Field(0.2, gt=0, lt=0.9)
    max_epochs: int = Field(2000, ge=1)
    # autopilot: the user's downstream model and what the search may change
    objective: Objective | None = None
    autopilot: AutopilotSettings = Field(default_factory=AutopilotSettings)
    # prompted runs
    judge_sample: int = Field(8, ge=1, le=200, description="outputs per LLM column the judge reads (judge_pass_rate)")
    judge_llm: LLMSettings | None = Field(None, description="LLM settings for the judge and the prompt rewriter "
                                          "(default: the spec's own llm); a small generator judges itself leniently")

    @model_validator(mode="after")
    def _check(self) -> "Targets":
        for name in self.metrics:
            if name not in METRICS:
                raise ValueError(f"unknown metric '{name}'; use one of {', '.join(METRICS)}")
        for name, v in self.shares.items():
            _shares(v, f"shares.{name}")
            if abs(sum(v.values()) - 1.0) > 1e-6:
                raise ValueError(f"shares.{name}: shares must add up to 1 (they add up to {sum(v.values()):g})")
        for name, v in self.min_shares.items():
            _shares(v, f"min_shares.{name}")
            if sum(v.values()) > 1 + 1e-9:
                raise ValueError(f"min_shares.{name}: minimum shares add up to more than 1")
        both = set(self.shares) & (set(self.min_shares) | set(self.parity))
        if both:
            raise ValueError(f"column '{sorted(both)[0]}' has two share targets; keep one of shares, parity, min_shares")
        if "tstr_ratio" in self.metrics and not self.target:
            raise ValueError("metric tstr_ratio needs 'target': the column a model predicts")
        return self

    @property
    def distribution_targets(self) -> bool:
        return bool(self.shares or self.parity or self.min_shares or self.ranges or self.text)

    def wants_match_real(self) -> bool:
        return self.match_real if self.match_real is not None else not (self.distribution_targets or self.metrics)

    def needs_holdout(self) -> bool:
        return bool({"tstr_ratio", "dcr_share"} & set(self.metrics))


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    try:
        from synthloop.spec.loader import _line_of as spec_line_of

        return spec_line_of(yaml.compose(text), loc)
    except Exception:  # a line number is a courtesy; never fail on it
        return None


def parse_targets(data: Any, source: str = "targets", text: str | None = None, api_key_env: str | None = None) -> Targets:
    """Validate a parsed targets mapping; errors name `source`, the line (with `text`) and the key.
    `judge_llm.api_key_env` is honoured only for `*_API_KEY` names or when it is `api_key_env`, the
    variable the user named on the command line (a shared file must not pick which secret is sent)."""
    t = _parse_targets(data, source, text)
    if t.judge_llm is not None:
        if api_key_env is not None and t.judge_llm.api_key_env == api_key_env:
            t.judge_llm.choose_api_key_env(api_key_env)
        elif not t.judge_llm.api_key_env_allowed():
            from synthloop.spec.loader import key_env_refusal

            line = _line_of(text, ("judge_llm", "api_key_env")) if text else None
            at = f"{source}:{line}" if line else source
            raise TargetsError(f"{at}: judge_llm.api_key_env: {key_env_refusal(t.judge_llm.api_key_env, 'a targets file')}")
    return t


def _parse_targets(data: Any, source: str, text: str | None) -> Targets:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TargetsError(f"{source}: expected a mapping (metrics, shares, parity, min_shares, ranges, budget, ...)")
    try:
        return Targets.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        err = next((e for e in errs if e["type"] == "extra_forbidden"), errs[0])
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key '{err['loc'][-1]}' (check the spelling)"
        path = ".".join(str(p) for p in loc) or "(root)"
        line = _line_of(text, loc) if text else None
        at = f"{source}:{line}" if line else source
        raise TargetsError(f"{at}: {path}: {msg}") from None


def load_targets(path: str | Path, api_key_env: str | None = None) -> Targets:
    """Read a targets YAML file (see the module docstring; `api_key_env` as in parse_targets)."""
    from synthloop.io import read_yaml

    p = Path(path)
    data, text = read_yaml(p, TargetsError, "targets file")
    return parse_targets(data, str(p), text, api_key_env)
