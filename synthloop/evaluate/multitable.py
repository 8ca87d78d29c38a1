"""Database figures with SDMetrics' multi-table definitions (MultiTableQualityReport), plus integrity,
per-entity sequence statistics and per-table privacy.

- Column Shapes: mean over every learned column of every table (KS / TV complement).
- Column Pair Trends: mean over every counted pair within a table (thresholds as the single-table
  report: |r| > 0.5, Cramér's V > 0.3).
- Cardinality: per relationship 1 - KS between the real and synthetic numbers of children per parent
  row (zero included); mean over relationships.
- Intertable Trends: per relationship, the child joined to its parent; pairs of one parent column and
  one child column, scored and counted as Column Pair Trends; mean over all counted pairs.
- Quality = mean of the four property scores (NaN ones left out), as SDMetrics.
Key columns (primary and foreign) are ids: never scored. Composite keys are scored on their surrogate
form (`Metadata.surrogate`): a composite primary key's columns are data of its table, a composite
foreign key's columns are the parent's (scored there); relationship labels stay the user's.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthloop.evaluate.quality import ks_complement, quality_score
from synthloop.schema import TableSchema
from synthloop.schema.metadata import Metadata, key_series, lookup


def single_keys(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame],
                metadata: Metadata) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], Metadata]:
    """Both databases and the metadata with composite keys as single-column surrogates (as they are otherwise)."""
    if not metadata.has_composite_keys():
        return real, synthetic, metadata
    return metadata.to_surrogate(real), metadata.to_surrogate(synthetic), metadata.surrogate()


def _schemas(metadata: Metadata, real: dict[str, pd.DataFrame]) -> dict[str, TableSchema]:
    return {t: metadata.table_schema(t, real[t]) for t in metadata.tables}


def cardinality(parent_keys: pd.Series, child_keys: pd.Series) -> np.ndarray:
    """Children per parent row (SDMetrics' get_cardinality_distribution): 0 for parents without any."""
    counts = child_keys.value_counts(dropna=False)
    return parent_keys.map(counts).fillna(0).to_numpy(float)


def _denormalize(real: dict[str, pd.DataFrame], rel: Any, which: dict[str, pd.DataFrame]) -> pd.DataFrame:
    child = which[rel.child].add_prefix(f"{rel.child}.")
    parent = which[rel.parent].add_prefix(f"{rel.parent}.")
    return child.merge(parent, left_on=f"{rel.child}.{rel.child_key}", right_on=f"{rel.parent}.{rel.parent_key}")


def _prefixed(schema: TableSchema, prefix: str) -> list:
    return [c.model_copy(update={"name": f"{prefix}.{c.name}"}) for c in schema.columns]


def multi_table_quality(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
                        schemas: dict[str, TableSchema] | None = None) -> dict[str, Any]:
    """The four properties, the overall score and the per-table / per-relationship detail."""
    labels = metadata.surrogate_labels() if metadata.has_composite_keys() else {}
    if labels:
        real, synthetic, metadata = single_keys(real, synthetic, metadata)
        schemas = None
    schemas = schemas or _schemas(metadata, real)
    shapes, pairs = [], []
    per_table: dict[str, Any] = {}
    for t in metadata.tables:
        q = quality_score(real[t], synthetic[t], schemas[t])
        s = q.shapes.assign(table=t)
        p = q.pairs.assign(table=t)
        shapes.append(s)
        pairs.append(p)
        per_table[t] = {"quality_score": q.score, "column_shapes": q.column_shapes, "column_pair_trends": q.column_pair_trends,
                        "rows_real": len(real[t]), "rows_synthetic": len(synthetic[t])}
    shapes = [s for s in shapes if len(s)]
    pairs = [p for p in pairs if len(p)]
    shapes_df = pd.concat(shapes, ignore_index=True) if shapes else pd.DataFrame(columns=["score"])
    pairs_df = pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(columns=["score", "counted"])
    col_shapes = float(shapes_df["score"].mean()) if len(shapes_df) else float("nan")
    counted = pairs_df.loc[pairs_df["counted"].astype(bool), "score"] if len(pairs_df) else pd.Series(dtype=float)
    col_pairs = float(counted.mean()) if counted.notna().any() else float("nan")

    card_rows, inter = [], []
    for rel in metadata.relationships:
        cr = cardinality(real[rel.parent][rel.parent_key], real[rel.child][rel.child_key])
        cs = cardinality(synthetic[rel.parent][rel.parent_key], synthetic[rel.child][rel.child_key])
        card_rows.append({"relationship": labels.get(rel.label, rel.label), "parent": rel.parent, "child": rel.child, "foreign_key": rel.child_key,
                          "score": ks_complement(cr, cs), "mean_children_real": float(cr.mean()) if cr.size else float("nan"),
                          "mean_children_synthetic": float(cs.mean()) if cs.size else float("nan")})
        dr = _denormalize(real, rel, real)
        ds = _denormalize(real, rel, synthetic)
        merged = TableSchema(columns=_prefixed(schemas[rel.child], rel.child) + _prefixed(schemas[rel.parent], rel.parent))
        pcols = [f"{rel.parent}.{c.name}" for c in schemas[rel.parent].columns if c.learned]
        ccols = [f"{rel.child}.{c.name}" for c in schemas[rel.child].columns if c.learned]
        if not pcols or not ccols or dr.empty or ds.empty:
            continue
        q = quality_score(dr[pcols + ccols], ds[pcols + ccols],
                          TableSchema(columns=[merged[c] for c in pcols + ccols]))
        p = q.pairs
        cross = p[(p["column_1"].isin(pcols) & p["column_2"].isin(ccols)) | (p["column_1"].isin(ccols) & p["column_2"].isin(pcols))]
        if len(cross):
            inter.append(cross.assign(relationship=labels.get(rel.label, rel.label)))
    card_df = pd.DataFrame(card_rows, columns=["relationship", "parent", "child", "foreign_key", "score",
                                               "mean_children_real", "mean_children_synthetic"])
    card = float(card_df["score"].mean()) if len(card_df) else float("nan")
    inter_df = pd.concat(inter, ignore_index=True) if inter else pd.DataFrame(columns=["score", "counted"])
    ic = inter_df.loc[inter_df["counted"].astype(bool), "score"] if len(inter_df) else pd.Series(dtype=float)
    inter_score = float(ic.mean()) if ic.notna().any() else float("nan")
    props = {"column_shapes": col_shapes, "column_pair_trends": col_pairs, "cardinality": card,
             "intertable_trends": inter_score}
    vals = [v for v in props.values() if np.isfinite(v)]
    return {"quality_score": float(np.mean(vals)) if vals else float("nan"), **props, "tables": per_table,
            "shapes": shapes_df, "pairs": pairs_df, "relationships": card_df, "intertable_pairs": inter_df}


def referential_integrity(synthetic: dict[str, pd.DataFrame], metadata: Metadata) -> dict[str, float]:
    """Per relationship, the share of set foreign keys that point at a parent row (1.0 is required)."""
    out = {}
    for rel in metadata.relationships:
        fk = key_series(synthetic[rel.child], rel.child_key).dropna()
        keys = key_series(synthetic[rel.parent], rel.parent_key)
        hit = (lookup(keys, fk) >= 0) if rel.composite else fk.isin(keys).to_numpy()
        out[rel.label] = float(np.mean(hit)) if len(fk) else 1.0
    return out


def _event_stats(df: pd.DataFrame, key: str, order: str, col: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """(events per entity, gaps in seconds between consecutive events, share of steps going back in time),
    events taken in the file's row order within each entity."""
    from synthloop.synthesizers.relational import _order_seconds

    secs = _order_seconds(df[order], col)
    k = df[key].to_numpy()
    lengths = df[key].value_counts().to_numpy(float)
    frame = pd.DataFrame({"k": k, "s": secs})
    d = frame.groupby("k", sort=False)["s"].diff().to_numpy()
    d = d[~np.isnan(d)]
    back = float((d < 0).mean()) if d.size else 0.0
    srt = frame.sort_values(["k", "s"], kind="stable")
    gaps = srt.groupby("k", sort=False)["s"].diff().to_numpy()
    return lengths, gaps[~np.isnan(gaps)], back


def sequence_statistics(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
                        schemas: dict[str, TableSchema] | None = None) -> dict[str, dict[str, float]]:
    """Per sequence table: KS similarity (1 - KS) of the number of events per entity (entities with at
    least one event) and of the gaps between consecutive events, and the share of order violations
    (an event dated before the one before it, in row order) in the synthetic table."""
    schemas = schemas or _schemas(metadata, real)
    out = {}
    for t, tm in metadata.tables.items():
        if tm.sequence_key is None:
            continue
        col = schemas[t][tm.order_by]
        lr, gr, _ = _event_stats(real[t], tm.sequence_key, tm.order_by, col)
        ls, gs, back = _event_stats(synthetic[t], tm.sequence_key, tm.order_by, col)
        out[t] = {"length_ks": ks_complement(lr, ls), "gap_ks": ks_complement(gr, gs), "order_violations": back,
                  "mean_length_real": float(lr.mean()) if lr.size else float("nan"),
                  "mean_length_synthetic": float(ls.mean()) if ls.size else float("nan")}
    return out


def table_privacy(train: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame],
                  holdout: dict[str, pd.DataFrame], metadata: Metadata,
                  schemas: dict[str, TableSchema] | None = None, max_rows: int = 2000) -> dict[str, float]:
    """Per table, the DCR share against held-out rows (0.5 is ideal; key columns left out)."""
    from synthloop.evaluate.privacy import dcr_share

    schemas = schemas or _schemas(metadata, train)
    out = {}
    for t in metadata.tables:
        if t not in holdout or len(holdout[t]) < 10 or len(synthetic[t]) == 0:
            continue
        learned = TableSchema(columns=[c for c in schemas[t].columns if c.learned])
        if not learned.columns:
            continue
        names = learned.names
        fig = dcr_share(train[t][names], synthetic[t][names], holdout[t][names], learned, max_rows=max_rows)
        out[t] = float(fig.get("dcr_share", float("nan")))
    return out


def split_entities(tables: dict[str, pd.DataFrame], metadata: Metadata, table: str, share: float = 0.2,
                   seed: int = 0) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """(training, holdout) databases: a share of `table`'s rows and all their descendants held out;
    other tables are kept whole in the training side (and copied to the holdout side)."""
    rng = np.random.default_rng(seed)
    pk = metadata.tables[table].primary_key
    ids = key_series(tables[table], pk)
    hold_ids = set(ids[rng.random(len(ids)) < share])
    train, hold = dict(tables), dict(tables)
    train[table] = tables[table][~ids.isin(hold_ids)].reset_index(drop=True)
    hold[table] = tables[table][ids.isin(hold_ids)].reset_index(drop=True)
    frontier = [(table, hold_ids)]
    while frontier:
        parent, gone = frontier.pop()
        for rel in metadata.children_of(parent):
            c = tables[rel.child]
            mask = key_series(c, rel.child_key).isin(gone)
            train[rel.child] = train[rel.child][~key_series(train[rel.child], rel.child_key).isin(gone)].reset_index(drop=True)
            hold[rel.child] = c[mask].reset_index(drop=True)
            cpk = metadata.tables[rel.child].primary_key
            if cpk:
                frontier.append((rel.child, set(key_series(c, cpk)[mask])))
    return train, hold


def evaluate_database(real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame], metadata: Metadata,
                      holdout: dict[str, pd.DataFrame] | None = None) -> dict[str, Any]:
    """Every database figure as plain numbers (the detail frames as records)."""
    schemas = _schemas(metadata, real)
    missing = [t for t in metadata.tables if t not in synthetic]
    if missing:
        from synthloop.errors import DataError

        raise DataError(f"the synthetic database has no table '{missing[0]}'")
    q = multi_table_quality(real, synthetic, metadata, schemas)
    integ = referential_integrity(synthetic, metadata)
    out = {k: q[k] for k in ("quality_score", "column_shapes", "column_pair_trends", "cardinality", "intertable_trends")}
    out["referential_integrity"] = min(integ.values()) if integ else 1.0
    out["integrity"] = integ
    out["tables"] = q["tables"]
    out["relationships"] = q["relationships"].to_dict(orient="records")
    out["sequences"] = sequence_statistics(real, synthetic, metadata, schemas)
    if holdout is not None:
        out["dcr_share"] = table_privacy(real, synthetic, holdout, metadata, schemas)
    return out

