"""The privacy guarantee of a model, in words, for reports.

A model that trains under differential privacy exposes `privacy_guarantee()` returning a dict with at
least `differentially_private`, `epsilon`, `delta` and `statement`. Anything else gets a plain
"no formal guarantee" sentence: empirical checks (DCR, membership inference) are evidence, not a bound.
"""
from __future__ import annotations

from typing import Any

NO_GUARANTEE = ("No formal privacy guarantee: this model was not trained with differential privacy. "
                "The privacy figures below are empirical checks against known attacks, not a bound.")


def guarantee(model: Any) -> dict[str, Any]:
    """The structured guarantee of `model` (a dict with `differentially_private` False when there is none)."""
    getter = getattr(model, "privacy_guarantee", None)
    if callable(getter):
        info = getter()
        if info and info.get("differentially_private"):
            return dict(info)
    return {"differentially_private": False, "statement": "no formal privacy guarantee"}


def guarantee_text(model: Any) -> str:
    """One or two sentences stating the model's DP guarantee, or saying plainly that there is none."""
    info = guarantee(model)
    if not info.get("differentially_private"):
        return NO_GUARANTEE
    text = f"{info['statement']}"
    unit = info.get("unit")
    if unit:
        text += f" (unit of privacy: {unit})"
    mech = info.get("mechanism")
    if mech:
        text += f"; mechanism: {mech}"
    acct = info.get("accounting")
    if acct:
        text += f"; accounting: {acct}"
    text += "."
    public = info.get("public")
    if public:
        text += f" Treated as public, not protected: {public}."
    return text[0].upper() + text[1:] if text[0].isalpha() else text
