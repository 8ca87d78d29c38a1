"""Sampling an autoregressive model with some columns fixed per row to exact values (a parent's row,
the previous event): their tokens are placed first, the other columns drawn after them.

Unlike `sample(conditions=...)`, which checks each condition as a user's request (unknown category,
value outside the learned range: an error), context values come from another model's output and are
taken as they are: an unseen category becomes the missing/rare token, a number is clipped to the
learned range. Used by the multi-table synthesizer (synthloop.synthesizers.relational).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from synthloop.synthesizers.autoregressive import AutoregressiveSynthesizer, _threads
from synthloop.transforms.tokenize import CategoryTokenizer, DatetimeTokenizer


def _fixed_tokens(model: AutoregressiveSynthesizer, ci: int, values: pd.Series) -> dict[int, np.ndarray]:
    """{slot: tokens} of column `ci` for the given values; tokens outside a slot's vocabulary (a missing
    value where the column never had one) fall back to the middle token."""
    col, tkz = model.columns_[ci], model.tokenizers_[ci]
    enc = model.codec_.encode_column(col, values.reset_index(drop=True), strict=False)
    slots = np.flatnonzero(model._slot_col == ci)
    if isinstance(tkz, CategoryTokenizer):
        parts = [tkz.encode(enc)]
    elif isinstance(tkz, DatetimeTokenizer):
        t = tkz.encode(enc)
        parts = [t[:, i] for i in range(t.shape[1])]
    else:
        b, s = tkz.encode(enc)
        parts = [b, s][: slots.size]
    out = {}
    for j, tok in zip(slots, parts):
        v = model.vocab_[j]
        out[int(j)] = np.where((tok < 0) | (tok >= v), v // 2, tok).astype(np.int64)
    return out


def sample_given(model: AutoregressiveSynthesizer, known: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """`n` decoded rows; the columns of `known` (same length) keep their values, the rest are drawn."""
    names = [c.name for c in model.columns_]
    fixed = [i for i, nm in enumerate(names) if nm in known.columns]
    fixed_tokens: dict[int, np.ndarray] = {}
    for ci in fixed:
        fixed_tokens.update(_fixed_tokens(model, ci, known[names[ci]]))
    rest = [i for i in range(len(names)) if i not in set(fixed)]
    c = len(model.slots_)
    tokens = np.zeros((n, c), dtype=np.int64)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    step = max(1, min(model.sample_batch_size, 2**26 // max(c * model.net_.e, 1)))
    with _threads(model._thread_count(min(n, model.sample_batch_size) * c)), torch.no_grad():
        model.net_.eval()
        for s in range(0, n, step):
            r = np.arange(s, min(n, s + step))
            tokens[r] = _batch(model, r, fixed_tokens, rest, gen)
    u = rng.random((n, len(names)))
    arrays: dict[str, np.ndarray] = {}
    for ci, (col, tok) in enumerate(zip(model.columns_, model.tokenizers_)):
        slots = np.flatnonzero(model._slot_col == ci)
        if isinstance(tok, CategoryTokenizer):
            arrays[col.name] = tok.decode(tokens[:, slots[0]], u[:, ci])
        elif isinstance(tok, DatetimeTokenizer):
            arrays[col.name] = tok.decode(tokens[:, slots], u[:, ci])
        else:
            subs = tokens[:, slots[1]] if slots.size > 1 else np.zeros(n, np.int64)
            arrays[col.name] = tok.decode(tokens[:, slots[0]], subs, u[:, ci])
    df = model.codec_.decode(arrays, n, rng, int(rng.integers(2**31)))
    for nm in known.columns:  # context is returned exactly as given
        if nm in df.columns:
            df[nm] = known[nm].to_numpy()
    return df


def _batch(model: AutoregressiveSynthesizer, rows: np.ndarray, fixed_tokens: dict[int, np.ndarray], rest: list[int],
           gen: torch.Generator) -> np.ndarray:
    net = model.net_
    b, c = rows.size, len(model.slots_)
    device = next(net.parameters()).device
    tok = torch.zeros(b, c, dtype=torch.long, device=device)
    emb = torch.zeros(b, c, net.e, device=device)
    done: list[int] = []
    acc = torch.zeros(b, net.rank, device=device) if net.rank else None

    def put(j: int, values: torch.Tensor) -> None:
        tok[:, j] = values
        emb[:, j] = net.embed_slot(j, values)
        if acc is not None:
            acc.add_(net.project_slot(j, emb[:, j]))
        done.append(int(j))

    for j in sorted(fixed_tokens):
        put(j, torch.as_tensor(fixed_tokens[j][rows], device=device))
    for ci in rest:
        tkz = model.tokenizers_[ci]
        slots = np.flatnonzero(model._slot_col == ci)
        if isinstance(tkz, CategoryTokenizer):
            put(slots[0], model._draw(slots[0], emb, done, None, gen, acc))
        elif isinstance(tkz, DatetimeTokenizer):
            nan = np.full(b, np.nan)
            for p, j in enumerate(slots):
                allowed = tkz.allowed(p, tok[:, slots[:p]].cpu().numpy(), nan, nan, False)
                if (allowed.sum(axis=1) == 1).all():
                    put(j, torch.as_tensor(allowed.argmax(axis=1), device=device))
                else:
                    put(j, model._draw(j, emb, done, allowed, gen, acc))
        else:
            bins = model._draw(slots[0], emb, done, None, gen, acc)
            put(slots[0], bins)
            if slots.size > 1:
                allowed = ~np.isnan(tkz.sub_lo_[np.minimum(bins.cpu().numpy(), tkz.bin_lo_.size - 1)])
                put(slots[1], model._draw(slots[1], emb, done, allowed, gen, acc))
    return tok.cpu().numpy()


__all__ = ["sample_given"]
