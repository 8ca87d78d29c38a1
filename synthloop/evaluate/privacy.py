"""Privacy figures: exact copies, DCR share against a holdout, NNDR, and a membership-inference attack.

Distances are SDMetrics' Gower-style DCR distance (sdmetrics.single_table.privacy.dcr_utils): the mean
over learned columns of `min(|a - b| / range, 1)` for numerical/datetime columns (range of the
reference table; null vs value = 1, null vs null = 0) and of `a != b` for categorical/boolean columns
(null is a category of its own). Ids, PII and free text are regenerated, never learned, so they do not
count. Distances are computed in chunks of query rows against the whole reference, so memory stays
bounded (about `chunk_cells` floats at once) however large the tables are: 100,000 x 100,000 rows
stream through without ever holding the full matrix. The work is done with torch kernels
(`cdist` for numbers, a one-hot matrix product for small category sets, equality for large ones).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from synthloop.schema import ColumnKind, TableSchema, infer_schema
from synthloop.transforms import TableCodec

if TYPE_CHECKING:  # torch is imported where distances are computed, so `import synthloop.evaluate` stays light
    import torch

_MAX_ONEHOT = 64          # categorical columns with more categories are compared by code equality
_TIE = 1e-6               # distances closer than this are ties (float32 sums of per-column terms)
_CONTINUOUS = (ColumnKind.NUMERICAL, ColumnKind.DATETIME)


def _encoded(df: pd.DataFrame, codec: TableCodec) -> dict[str, np.ndarray]:
    return {c.name: codec.encode_column(c, df[c.name], strict=False) for c in codec.learned}


def row_keys(df: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    """One 64-bit hash per row over the learned columns (numbers rounded to the schema's decimals)."""
    codec = TableCodec(schema)
    enc = _encoded(df, codec)
    frame = pd.DataFrame({
        c.name: np.round(enc[c.name], c.decimals if c.decimals is not None else 9) if c.kind in _CONTINUOUS else enc[c.name]
        for c in codec.learned
    })
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def exact_copy_rate(train: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema | None = None) -> float:
    """Share of synthetic rows identical to some training row."""
    schema = schema or infer_schema(train)
    return float(np.isin(row_keys(synthetic, schema), row_keys(train, schema)).mean())


# -- Gower distance engine ------------------------------------------------------------------------
@dataclass
class _Encoded:
    """A table in the distance space."""
    num: torch.Tensor        # (n, k1) float32 scaled numbers clipped to [0, 1], null -> 0: one cdist for all
    raw: torch.Tensor        # (n, k1) float32 scaled numbers as they are, NaN = null: exact terms
    bad: torch.Tensor        # (n, k1) bool: null or outside [0, 1], where the cdist term needs a correction
    onehot: torch.Tensor     # (n, k2) float32 one-hot of small categorical columns (null = own slot)
    codes: torch.Tensor      # (n, k3) int64 codes of large categorical / constant columns (null = -1)
    n: int


def _exact(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SDMetrics' numeric term on scaled values: min(|a - b|, 1); null vs value 1, null vs null 0."""
    import torch
    an, bn = torch.isnan(a), torch.isnan(b)
    term = torch.clamp(torch.abs(a - b), max=1.0)
    return torch.where(an ^ bn, 1.0, torch.where(an & bn, 0.0, term))


def _fast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch
    return torch.abs(torch.nan_to_num(a.clamp(0, 1), nan=0.0) - torch.nan_to_num(b.clamp(0, 1), nan=0.0))


class GowerSpace:
    """SDMetrics' DCR distance over a set of tables, ranges and categories from `range_reference`.

    Every frame in `frames` is encoded once; `nearest(i, j)` then gives distances from frame i's rows
    to frame j's rows. Numbers go through one `cdist(p=1)` on values clipped to the reference range;
    the few rows with a null or a value outside that range get their exact term patched in afterwards.
    """

    def __init__(self, schema: TableSchema, range_reference: pd.DataFrame, frames: list[pd.DataFrame]):
        import torch

        codec = TableCodec(schema)
        self.cols = [c for c in codec.learned if c.name in range_reference.columns and all(c.name in f.columns for f in frames)]
        ref = {c.name: codec.encode_column(c, range_reference[c.name], strict=False) for c in self.cols}
        raw = [{c.name: codec.encode_column(c, f[c.name], strict=False) for c in self.cols} for f in frames]
        cont, small, large = [], [], []
        scale: dict[str, tuple[float, float]] = {}
        for c in self.cols:
            x = ref[c.name]
            if c.kind in _CONTINUOUS:
                fin = x[np.isfinite(x)]
                lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 0.0)
                scale[c.name] = (lo, hi - lo)
                # SDMetrics: a zero range makes the column an equality test
                (large if hi - lo == 0 else cont).append(c.name)
            elif len(c.categories or []) + 1 <= _MAX_ONEHOT:
                small.append(c.name)
            else:
                large.append(c.name)
        self.n_small, self.n_cols = len(small), len(self.cols)
        kinds = {c.name: c for c in self.cols}

        def encode(r: dict[str, np.ndarray], n: int) -> _Encoded:
            if cont:
                x = np.column_stack([(r[k] - scale[k][0]) / scale[k][1] for k in cont]).astype(np.float32)
                bad = np.isnan(x) | (x < 0) | (x > 1)
                num = np.where(np.isnan(x), 0.0, np.clip(x, 0.0, 1.0)).astype(np.float32)
            else:
                x = num = np.zeros((n, 0), dtype=np.float32)
                bad = np.zeros((n, 0), dtype=bool)
            codes = []
            for k in large:
                v = r[k]
                if kinds[k].kind in _CONTINUOUS:
                    v = np.where(np.isnan(v), -1, np.where(v == scale[k][0], 0, 1))
                codes.append(v.astype(np.int64))
            oh = []
            for k in small:
                width = len(kinds[k].categories or []) + 1
                m = np.zeros((n, width), dtype=np.float32)
                m[np.arange(n), np.where(r[k] >= 0, r[k], width - 1)] = 1.0
                oh.append(m)
            return _Encoded(torch.from_numpy(num), torch.from_numpy(x), torch.from_numpy(bad),
                            torch.from_numpy(np.hstack(oh)) if oh else torch.zeros((n, 0)),
                            torch.from_numpy(np.column_stack(codes)) if codes else torch.zeros((n, 0), dtype=torch.int64), n)

        self.encs = [encode(r, len(f)) for r, f in zip(raw, frames)]

    def nearest(self, qi: int, ri: int, k: int = 1, chunk_cells: int = 2 ** 25) -> np.ndarray:
        """(n_query, k) smallest distances from frame qi's rows to frame ri's rows, in query chunks."""
        import torch

        q, r = self.encs[qi], self.encs[ri]
        k = min(k, r.n)
        step = max(1, chunk_cells // max(r.n, 1))
        out = np.empty((q.n, k), dtype=np.float64)
        offset = float(self.n_small + q.codes.shape[1])  # mismatches = categorical columns - matches
        r_bad = [torch.nonzero(r.bad[:, c]).flatten() for c in range(r.bad.shape[1])]
        with torch.no_grad():
            for i in range(0, q.n, step):
                j = min(q.n, i + step)
                d = torch.full((j - i, r.n), offset)
                if q.num.shape[1]:
                    d += torch.cdist(q.num[i:j], r.num, p=1)
                for c in range(q.num.shape[1]):  # patch exact terms where the clipped cdist term is wrong
                    qb = torch.nonzero(q.bad[i:j, c]).flatten()
                    if qb.numel():
                        a = q.raw[i:j, c][qb][:, None]
                        d[qb] += _exact(a, r.raw[None, :, c]) - _fast(a, r.raw[None, :, c])
                    if r_bad[c].numel():
                        keep = torch.nonzero(~q.bad[i:j, c]).flatten()
                        a, b = q.raw[i:j, c][keep][:, None], r.raw[r_bad[c], c][None, :]
                        d[keep[:, None], r_bad[c][None, :]] += _exact(a, b) - _fast(a, b)
                if q.onehot.shape[1]:
                    d -= q.onehot[i:j] @ r.onehot.T
                for c in range(q.codes.shape[1]):
                    d -= (q.codes[i:j, c][:, None] == r.codes[:, c][None, :]).to(d.dtype)
                out[i:j] = torch.topk(d, k, dim=1, largest=False).values.double().numpy()
        return np.maximum(out, 0.0) / max(self.n_cols, 1)


def gower_nearest(query: pd.DataFrame, reference: pd.DataFrame, schema: TableSchema | None = None, k: int = 1,
                  chunk_cells: int = 2 ** 25) -> np.ndarray:
    """The k smallest SDMetrics DCR distances from each query row to `reference` (ranges from `reference`)."""
    schema = schema or infer_schema(reference)
    return GowerSpace(schema, reference, [query, reference]).nearest(0, 1, k=k, chunk_cells=chunk_cells)


def _sample(df: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    return df.iloc[np.sort(rng.choice(len(df), n, replace=False))] if len(df) > n else df


def dcr_share(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema | None = None,
              max_rows: int = 5_000, max_reference: int = 20_000, random_state: int = 0) -> dict[str, float]:
    """Share of synthetic rows closer to a training row than to a holdout row (0.5 is ideal).

    The training set is subsampled to the holdout's size so that both sides have equal chances
    (both at most `max_reference` rows); ties count one half in `dcr_share`, and both distances use
    the same per-column ranges (taken over the two references together), so a fresh real sample
    scores 0.5 even on heavy-tailed columns. `closer_to_training` follows SDMetrics'
    DCROverfittingProtection exactly (each side ranged on its own reference, ties closer to the
    holdout); its score is `min(2 * (1 - closer_to_training), 1)`. At most `max_rows` synthetic rows
    are queried.
    """
    return privacy_figures(train, synthetic, holdout, schema, max_rows=max_rows, max_reference=max_reference,
                           random_state=random_state, attack=False)


def privacy_figures(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None = None,
                    schema: TableSchema | None = None, max_rows: int = 5_000, max_reference: int = 10_000,
                    random_state: int = 0, attack: bool = True, chunk_cells: int = 2 ** 25) -> dict[str, float]:
    """Every distance-based privacy figure in one pass over shared encodings.

    - median DCR synthetic -> training rows (SDMetrics DCRBaselineProtection's `synthetic_data` median);
    - NNDR: nearest / second-nearest training distance of each synthetic row (near 0 = one training
      row stands out as a near copy), with the same figure for holdout rows as the baseline;
    - with a holdout: DCR share and closer_to_training (see `dcr_share`), and a membership-inference
      attack that scores each real row by minus its distance to the nearest synthetic row and tries
      to tell training rows (members) from holdout rows; its ROC AUC is 0.5 when it cannot.
    """
    schema = schema or infer_schema(train)
    rng = np.random.default_rng(random_state)
    out: dict[str, float] = {}
    sy = _sample(synthetic, max_rows, rng)
    if holdout is not None and len(holdout):
        n_ref = min(len(holdout), len(train), max_reference)
        tr = _sample(train, n_ref, rng)
        ho = _sample(holdout, n_ref, rng)
        n_attack = min(max_rows // 2 or 1, len(tr), len(ho))
        if attack:
            mem, non = _sample(tr, n_attack, rng), _sample(ho, n_attack, rng)
            ref_syn = _sample(synthetic, max_reference, rng)
        ho_q = _sample(ho, max_rows, rng)  # holdout rows queried for the NNDR baseline
        sp_tr = GowerSpace(schema, tr, [sy, tr, ho_q])
        d_tr = sp_tr.nearest(0, 1, k=2, chunk_cells=chunk_cells)
        sp_ho = GowerSpace(schema, ho, [sy, ho])
        d_ho = sp_ho.nearest(0, 1, k=1, chunk_cells=chunk_cells)[:, 0]
        d1 = d_tr[:, 0]
        # SDMetrics normalizes each side by its own reference's ranges; on heavy-tailed columns the two
        # subsamples' ranges differ and the comparison tilts (credit: 0.22 for a copula that copies
        # nothing). `dcr_share` therefore measures both sides in one space, ranged on both references.
        sp_both = GowerSpace(schema, pd.concat([tr, ho], ignore_index=True), [sy, tr, ho])
        c_tr = sp_both.nearest(0, 1, k=1, chunk_cells=chunk_cells)[:, 0]
        c_ho = sp_both.nearest(0, 2, k=1, chunk_cells=chunk_cells)[:, 0]
        tie_c = np.abs(c_tr - c_ho) <= _TIE
        closer = np.where(tie_c, 0.5, (c_tr < c_ho).astype(float))
        tie = np.abs(d1 - d_ho) <= _TIE
        strictly = (~tie) & (d1 < d_ho)
        out.update({"dcr_share": float(closer.mean()),
                    # standard error over the synthetic rows queried (floors keep a margin of a few of these)
                    "dcr_share_se": float(closer.std(ddof=1) / np.sqrt(closer.size)) if closer.size > 1 else 0.0,
                    "closer_to_training": float(strictly.mean()),
                    "dcr_overfitting_protection": float(min(2.0 * (1.0 - strictly.mean()), 1.0)),
                    "median_dcr_train": float(np.median(d1)), "median_dcr_holdout": float(np.median(d_ho)),
                    "rows_compared": int(len(sy)), "reference_rows": int(n_ref)})
        # baseline NNDR: holdout rows against training rows
        h_tr = sp_tr.nearest(2, 1, k=2, chunk_cells=chunk_cells)
        out["nndr_holdout_median"] = float(np.median(_ratio(h_tr)))
        if attack:
            sp_sy = GowerSpace(schema, ref_syn, [mem, non, ref_syn])
            dm = sp_sy.nearest(0, 2, k=1, chunk_cells=chunk_cells)[:, 0]
            dn = sp_sy.nearest(1, 2, k=1, chunk_cells=chunk_cells)[:, 0]
            y = np.r_[np.ones(dm.size), np.zeros(dn.size)]
            from sklearn.metrics import roc_auc_score

            out["mia_auc"] = float(roc_auc_score(y, -np.r_[dm, dn]))
            out["mia_advantage"] = float(max(0.0, 2 * out["mia_auc"] - 1))
            out["mia_rows"] = int(y.size)
    else:
        tr = _sample(train, max_reference, rng)
        sp_tr = GowerSpace(schema, tr, [sy, tr])
        d_tr = sp_tr.nearest(0, 1, k=2, chunk_cells=chunk_cells)
        out.update({"median_dcr_train": float(np.median(d_tr[:, 0])), "rows_compared": int(len(sy)),
                    "reference_rows": int(len(tr))})
    nndr = _ratio(d_tr)
    out["nndr_median"] = float(np.median(nndr))
    out["nndr_p05"] = float(np.quantile(nndr, 0.05))
    out["share_dcr_zero"] = float((d_tr[:, 0] <= _TIE).mean())
    return out


def _ratio(d: np.ndarray) -> np.ndarray:
    if d.shape[1] < 2:
        return np.ones(d.shape[0])
    return np.where(d[:, 1] > _TIE, d[:, 0] / np.maximum(d[:, 1], _TIE), 1.0)


def feature_matrix(df: pd.DataFrame, schema: TableSchema, reference: pd.DataFrame) -> np.ndarray:
    """Dense features for projections: numbers scaled to [0, 1] by `reference`, one-hot categories (top 20)."""
    codec = TableCodec(schema)
    enc = _encoded(df, codec)
    ref = _encoded(reference, codec)
    parts = []
    for c in codec.learned:
        if c.name not in df.columns:
            continue
        x, r = enc[c.name], ref[c.name]
        if c.kind in _CONTINUOUS:
            fin = r[np.isfinite(r)]
            lo, hi = (fin.min(), fin.max()) if fin.size else (0.0, 1.0)
            scaled = (x - lo) / (hi - lo if hi > lo else 1.0)
            parts.append(np.where(np.isnan(scaled), 0.0, scaled)[:, None])
            if np.isnan(r).any() or np.isnan(x).any():
                parts.append(np.isnan(x)[:, None].astype(float))
        else:
            n_cat = len(c.categories or [])
            counts = np.bincount(r[r >= 0], minlength=max(n_cat, 1))
            keep = np.argsort(-counts, kind="stable")[:20]
            lut = np.full(max(n_cat, 1) + 1, len(keep))
            lut[keep] = np.arange(len(keep))
            idx = lut[np.where(x >= 0, x, -1)]
            onehot = np.zeros((x.size, len(keep) + 1))
            onehot[np.arange(x.size), idx] = np.sqrt(0.5)
            parts.append(onehot)
    return np.hstack(parts) if parts else np.zeros((len(df), 0))
