"""The headline figures of `synthloop evaluate` and `synthloop demo`: quality, exact copies, DCR share."""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from synthloop.errors import DataError
from synthloop.schema import TableSchema


def evaluate_tables(real: pd.DataFrame, synth: pd.DataFrame, holdout: Optional[pd.DataFrame],
                    schema: TableSchema) -> dict[str, Any]:
    """Headline figures: quality (SDMetrics definitions), exact copies, DCR share against a holdout."""
    from synthloop.evaluate import dcr_share, exact_copy_rate, quality_score

    missing = [c for c in schema.names if c not in synth.columns]
    if missing:
        raise DataError(f"synthetic table lacks column '{missing[0]}' of the real table")
    q = quality_score(real, synth, schema)
    figures: dict[str, Any] = {
        "rows_real": len(real), "rows_synthetic": len(synth),
        "quality_score": q.score, "column_shapes": q.column_shapes, "column_pair_trends": q.column_pair_trends,
        "exact_copy_rate": exact_copy_rate(real, synth, schema),
    }
    if holdout is not None:
        figures.update(dcr_share(real, synth, holdout, schema))
        figures["holdout_exact_copy_rate"] = exact_copy_rate(real, holdout, schema)
    figures["details"] = {"shapes": q.shapes.to_dict(orient="records"), "pairs": q.pairs.to_dict(orient="records")}
    return figures
