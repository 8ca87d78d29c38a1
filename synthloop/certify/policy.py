"""The certification policy: which criteria, their bounds, and how they are measured (YAML).

`default_policy.yaml` beside this module ships with the package; docs/certificate.md documents every
criterion. A policy file may give only what it changes: its `criteria` replace the default's bounds
criterion by criterion, and a criterion set to `null` is dropped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from synthloop.errors import SynthloopError
from synthloop.refine.targets import Bound  # one min/max bound for targets and policies

DEFAULT_POLICY = Path(__file__).with_name("default_policy.yaml")

# criterion -> how it is measured (written into every certificate)
CRITERIA: dict[str, str] = {
    "quality_score": "SDMetrics QualityReport score computed by synthloop.evaluate.quality: mean of column shapes "
                     "(1 - KS for numbers/datetimes, 1 - TVD for categories) and column pair trends; 1 is ideal",
    "detection_auc": "cross-validated ROC AUC of a HistGradientBoosting classifier separating real from synthetic rows "
                     "(3 folds); 0.5 means it cannot tell them apart",
    "tstr_ratio": "TSTR / TRTR: headline metric (ROC AUC, else accuracy; R2 for regression) of a HistGradientBoosting "
                  "model trained on synthetic rows vs one trained on real rows, both tested on the holdout",
    "dcr_share": "share of synthetic rows whose closest real row (SDMetrics' Gower distance) is a training row rather "
                 "than a holdout row of equal count (ties count half); 0.5 is ideal",
    "exact_copy_rate": "share of synthetic rows identical to a training row over the learned columns",
    "mia_auc": "ROC AUC of a distance-to-closest-synthetic-row membership attack telling training rows from holdout "
               "rows; 0.5 means no membership signal",
    "dp_epsilon": "epsilon the model file declares it spent (DP models only)",
    "dp_delta": "delta the model file declares (DP models only)",
    "constraint_adherence": "mean share of synthetic rows satisfying each rule in the policy's `constraints`",
    "fairness_parity": "largest |synthetic share - real share| of any group of a `protected` column",
}


class PolicyError(SynthloopError):
    """The policy file is invalid; the message names the file, line and key."""


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "policy"
    version: int = 1
    seed: int = 0
    sample_rows: int = Field(5000, ge=100, le=1_000_000)
    target: str | None = None
    protected: list[str] = Field(default_factory=list)
    constraints: list[Any] = Field(default_factory=list)
    not_applicable: Literal["pass", "fail"] = "pass"
    criteria: dict[str, Bound] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "Policy":
        for name in self.criteria:
            if name not in CRITERIA:
                raise ValueError(f"unknown criterion '{name}'; use one of {', '.join(CRITERIA)}")
        if not self.criteria:
            raise ValueError("criteria: give at least one criterion")
        return self


def _read(path: Path) -> tuple[Any, str]:
    from synthloop.io import read_yaml

    return read_yaml(path, PolicyError, "policy file")


def _validate(data: Any, source: str, text: str | None) -> Policy:
    from synthloop.refine.targets import _line_of

    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping (name, criteria, target, protected, ...)")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        err = next((e for e in exc.errors() if e["type"] == "extra_forbidden"), exc.errors()[0])
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key '{err['loc'][-1]}' (check the spelling)"
        line = _line_of(text, loc) if text else None
        at = f"{source}:{line}" if line else source
        raise PolicyError(f"{at}: {'.'.join(map(str, loc)) or '(root)'}: {msg}") from None


def default_policy() -> Policy:
    """The policy that ships with synthloop (default_policy.yaml)."""
    data, text = _read(DEFAULT_POLICY)
    return _validate(data, str(DEFAULT_POLICY), text)


def load_policy(path: str | Path | None) -> Policy:
    """The default policy, overlaid with a policy file's keys (criteria merge; `null` drops one)."""
    if path is None:
        return default_policy()
    p = Path(path)
    data, text = _read(p)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{p}: expected a mapping (name, criteria, target, protected, ...)")
    base, _ = _read(DEFAULT_POLICY)
    crit = dict(base["criteria"])
    user_crit = data.get("criteria", {})
    if user_crit is not None and not isinstance(user_crit, dict):
        raise PolicyError(f"{p}: criteria: expected a mapping of criterion: {{min, max}}")
    for k, v in (user_crit or {}).items():
        if k not in CRITERIA:
            from synthloop.refine.targets import _line_of

            line = _line_of(text, ("criteria", k))
            raise PolicyError(f"{p}{':' + str(line) if line else ''}: criteria.{k}: unknown criterion; use one of {', '.join(CRITERIA)}")
        if v is None:
            crit.pop(k, None)
        else:
            crit[k] = v
    merged = {**base, **{k: v for k, v in data.items() if k != "criteria"}, "criteria": crit}
    return _validate(merged, str(p), text)
