"""Coverage: does the synthetic table reach everything the real one has?

Category coverage is the share of real categories (weighted equally) that appear at least once in
the synthetic table; range coverage is the share of the real [min, max] interval spanned by the
synthetic values (SDMetrics' CategoryCoverage and RangeCoverage definitions). A column whose coverage
falls below `warn_below`, or whose synthetic values collapse onto a few modes (distinct-value share
much lower than the real one), raises a mode-collapse warning.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthloop.evaluate._frames import CONTINUOUS, learned_columns, to_numeric
from synthloop.schema import TableSchema


def coverage_figures(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema,
                     warn_below: float = 0.8) -> dict[str, Any]:
    rows = []
    warnings = []
    for c in learned_columns(schema, real, synthetic):
        if c.kind in CONTINUOUS:
            r = to_numeric(real[c.name], c.kind, c.datetime_format)
            s = to_numeric(synthetic[c.name], c.kind, c.datetime_format)
            r, s = r[np.isfinite(r)], s[np.isfinite(s)]
            if r.size == 0:
                continue
            lo, hi = r.min(), r.max()
            if s.size == 0:
                cov = 0.0
            elif hi == lo:
                cov = float(((s == lo).any()))
            else:  # SDMetrics RangeCoverage: 1 - (shortfall below + shortfall above) / range, clipped
                cov = float(np.clip(1 - (max(s.min() - lo, 0) + max(hi - s.max(), 0)) / (hi - lo), 0.0, 1.0))
            distinct_r = np.unique(r).size / r.size
            distinct_s = np.unique(s).size / max(s.size, 1)
            rows.append({"column": c.name, "metric": "RangeCoverage", "coverage": cov,
                         "real_distinct": int(np.unique(r).size), "synthetic_distinct": int(np.unique(s).size)})
            collapsed = distinct_r > 0.05 and distinct_s < 0.25 * distinct_r
        else:
            r = real[c.name].dropna().astype("string")
            s = synthetic[c.name].dropna().astype("string")
            cats = pd.unique(r)
            if len(cats) == 0:
                continue
            cov = float(pd.Index(cats).isin(pd.unique(s)).mean())
            rows.append({"column": c.name, "metric": "CategoryCoverage", "coverage": cov,
                         "real_distinct": int(len(cats)), "synthetic_distinct": int(pd.unique(s).size)})
            # collapse: the synthetic top category takes far more mass than the real one does
            top_r = r.value_counts(normalize=True).iloc[0]
            top_s = s.value_counts(normalize=True).iloc[0] if len(s) else 1.0
            collapsed = top_s > max(0.5, top_r + 0.25)
        if cov < warn_below or collapsed:
            why = f"covers {cov:.0%} of the real {'range' if c.kind in CONTINUOUS else 'categories'}" if cov < warn_below else \
                "synthetic values pile onto a few modes"
            warnings.append(f"possible mode collapse in '{c.name}': {why}")
    table = pd.DataFrame(rows, columns=["column", "metric", "coverage", "real_distinct", "synthetic_distinct"])
    cat = table.loc[table["metric"] == "CategoryCoverage", "coverage"]
    rng = table.loc[table["metric"] == "RangeCoverage", "coverage"]
    return {"category_coverage": float(cat.mean()) if len(cat) else float("nan"),
            "range_coverage": float(rng.mean()) if len(rng) else float("nan"),
            "columns": table.to_dict(orient="records"), "warnings": warnings}
