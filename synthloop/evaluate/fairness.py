"""Fairness: are protected groups represented as in the real data, and is a downstream model as fair?

For each protected attribute (numbers are cut into quartile bands of the real data, e.g. age bands):
the share of every group in the real and in the synthetic table, their largest gap and TVD; and,
when a target is given, the demographic parity difference (largest minus smallest rate of the
positive prediction across groups, on the real holdout) of the utility model trained on real rows
vs the one trained on synthetic rows. For regression the gap is in mean prediction, in units of the
target's standard deviation.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthloop.errors import DataError
from synthloop.evaluate._frames import CONTINUOUS, to_numeric
from synthloop.schema import TableSchema

_MAX_GROUPS = 30


def group_labels(values: pd.Series, col, reference: pd.Series | None = None) -> pd.Series:
    """Group of each row: the category, or the quartile band of the real data for numbers."""
    if col.kind in CONTINUOUS:
        x = to_numeric(values, col.kind, col.datetime_format)
        ref = to_numeric(reference if reference is not None else values, col.kind, col.datetime_format)
        fin = ref[np.isfinite(ref)]
        distinct = np.unique(fin)
        if distinct.size <= 6:
            names = pd.Series(x).map({v: f"{v:g}" for v in np.unique(np.r_[distinct, x[np.isfinite(x)]])})
            return pd.Series(np.where(np.isnan(x), "(missing)", names.to_numpy(dtype=object)), index=values.index)
        edges = np.unique(np.quantile(fin, [0, 0.25, 0.5, 0.75, 1.0]))
        band = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
        names = np.array([f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == len(edges) - 2 else ')'}" for i in range(len(edges) - 1)], dtype=object)
        return pd.Series(np.where(np.isnan(x), "(missing)", names[band]), index=values.index)
    return values.astype("string").fillna("(missing)").astype(object)


def group_shares(real: pd.DataFrame, synthetic: pd.DataFrame, attribute: str, schema: TableSchema) -> dict[str, Any]:
    col = schema[attribute]
    gr = group_labels(real[attribute], col).value_counts(normalize=True)
    gs = group_labels(synthetic[attribute], col, real[attribute]).value_counts(normalize=True)
    gr, gs = gr.align(gs, fill_value=0.0)
    order = gr.sort_values(ascending=False).index[:_MAX_GROUPS]
    groups = [{"group": str(g), "real_share": float(gr[g]), "synthetic_share": float(gs[g]),
               "difference": float(gs[g] - gr[g])} for g in order]
    return {"attribute": attribute, "groups": groups, "max_abs_difference": float((gs - gr).abs().max()),
            "tvd": float(0.5 * (gs - gr).abs().sum())}


def _parity(groups: pd.Series, outcome: np.ndarray) -> tuple[float, dict[str, float]]:
    rates = pd.Series(outcome, index=groups.index).groupby(groups.to_numpy()).mean()
    return float(rates.max() - rates.min()) if len(rates) > 1 else 0.0, {str(k): float(v) for k, v in rates.items()}


def fairness_figures(real: pd.DataFrame, synthetic: pd.DataFrame, protected: list[str], schema: TableSchema,
                     utility: Any = None) -> list[dict[str, Any]]:
    """Per protected attribute: group shares, and demographic parity of the utility models when given."""
    out = []
    for attr in protected:
        if attr not in real.columns:
            raise DataError(f"protected column '{attr}' is not in the real table; choose from {list(real.columns)[:8]}")
        if attr not in synthetic.columns:
            raise DataError(f"protected column '{attr}' is missing from the synthetic table")
        entry = group_shares(real, synthetic, attr, schema)
        if utility is not None and attr in utility.test.columns:
            g = group_labels(utility.test[attr], schema[attr], real[attr])
            if utility.figures["task"] == "classification":
                pos = utility.positive
                dp_real, rate_real = _parity(g, (utility.pred_real == pos).astype(float))
                dp_syn, rate_syn = _parity(g, (utility.pred_synth == pos).astype(float))
                dp_data, rate_data = _parity(g, (utility.y_test == pos).astype(float))
                entry["outcome"] = f"share predicted '{pos}'"
            else:
                sd = float(np.nanstd(utility.y_test)) or 1.0
                dp_real, rate_real = _parity(g, utility.pred_real / sd)
                dp_syn, rate_syn = _parity(g, utility.pred_synth / sd)
                dp_data, rate_data = _parity(g, utility.y_test / sd)
                entry["outcome"] = "mean prediction / target std"
            entry["demographic_parity"] = {"model_trained_on_real": dp_real, "model_trained_on_synthetic": dp_syn,
                                           "holdout_labels": dp_data, "difference": dp_syn - dp_real}
            for row in entry["groups"]:
                row["rate_model_real"] = rate_real.get(row["group"], float("nan"))
                row["rate_model_synthetic"] = rate_syn.get(row["group"], float("nan"))
        out.append(entry)
    return out
