"""Autoregressive synthesizer: each column predicted from the ones before it, in any column order.

In the spirit of TabularARGN (mostly-ai, Apache-2.0; our own code). Every learned column becomes
a few tokens (see `synthloop.transforms.tokenize`: quantile bins + position inside the bin for
numbers, spikes and missing values as tokens of their own, categories with a protected token for
rare values, datetimes by calendar parts: a quantile bin of the date, year, month, weekday, day of
month and, when the data has one, time of day). The network is a set of small per-token MLP heads;
head j sees the embeddings of exactly the tokens that precede j in the row's column order (a
MADE-style mask). Training draws a column order per row: the table's own order for a share
`fixed_order_share` of rows (the order used for unconditional sampling, so it is learned best) and
a random one otherwise, so that any subset of columns can be fixed first and the rest generated
conditionally without rejection.

Privacy guard (on by default, `privacy_k`, see synthloop.transforms.release): categories seen on
fewer than k rows are released as one label (`rare_label`, default "other"), which the protected
token decodes to (never to a rare training value); numbers are clipped to safe bounds with at least k
rows beyond each, so no outlier is reproduced, and every stored bin or position bound is a value held
by at least k rows or a round cut between two values, so the model file holds no exact rare value;
early stopping on a validation split keeps the model from memorizing rows. Set `privacy_k=0` to
switch the guard off (the model file then holds exact values and must be handled like the data).
`combination_guard=3` (opt-in) also redraws rows whose 3-column combination of coarse values fewer than
k training rows share (synthloop.synthesizers._combguard): lower singling-out risk, at a fidelity cost.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synthloop.errors import ModelFileError, SynthloopError
from synthloop.schema import ColumnKind
from synthloop.synthesizers._combguard import CombinationGuard, nominal_groups, ordinal_groups
from synthloop.synthesizers._release import ReleaseGuardMixin
from synthloop.synthesizers._torch import check_module_arrays
from synthloop.synthesizers.base import BaseSynthesizer
from synthloop.transforms.tokenize import CategoryTokenizer, DatetimeTokenizer, NumericTokenizer

_DISCRETE = (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)
_PARTS = 8  # at most this many token slots per column (a datetime has up to 6)
GUARD_ROUNDS = 10  # draws of a row that the combination guard rejects before it is kept as drawn


# Above this many input weights (slots^2 x (emb_dim + 1) x hidden) the first layer is factorized
# (`input_rank="auto"`): a 500-column table has ~800 slots, whose full layer would hold 800 M weights.
_FULL_INPUT_MAX_WEIGHTS = 2**25
_WIDE_RANK = 32
# Rows per training/validation batch of the full layer are capped so that its (rows, slots, slots x
# emb_dim) inputs stay near this many elements; tables under ~100 slots keep `batch_size` as given.
_MASK_ELEMENTS = 2**27
# Rows x token slots up to which training or one sampling batch runs on one thread (n_threads=None):
# the demo table (4,000 x 21) and 200 x 500 columns (200 x 833) do; Adult (32,561 x 21) does not.
_SMALL_WORK = 250_000


def _input_rank(input_rank: int | str | None, n_slots: int, emb_dim: int, hidden: int) -> int:
    """0 for the full first layer, else the rank of its factorization (see `_Net`)."""
    if input_rank in (None, "auto"):
        return 0 if n_slots * n_slots * (emb_dim + 1) * hidden <= _FULL_INPUT_MAX_WEIGHTS else _WIDE_RANK
    return max(int(input_rank), 0)



def cosine_lr(lr: float, done: float) -> float:
    """Cosine decay from `lr` to 2% of it as `done` goes 0 -> 1 (the local and the Ray Train loops)."""
    return lr * max(0.02, 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))


def make_optimizer(params: Any, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with torch's fused kernel (one pass over every parameter per step) where the parameters'
    device has one. On CPU torch otherwise picks the per-tensor loop: ~4.4 ms a step for Adult's
    689k weights against ~1.4 ms fused, 9% of a 512-row step, and a cost that every data-parallel
    worker pays in full on each step (tests/test_autoregressive.py checks the result is unchanged)."""
    params = [p for p in params if p.requires_grad]
    devices = {p.device.type for p in params}
    fused = len(devices) == 1 and next(iter(devices)) in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def train_step(net: Any, opt: Any, batch: Any, ranks: Any, split: list[float] | None = None) -> float:
    """One optimiser step on a batch of token rows; returns the batch's loss (summed over columns).
    With `split`, adds this thread's CPU seconds of [forward, backward, optimizer] to it (the
    data-parallel loop reports where a step's work goes; a data-parallel backward includes the
    gradient all-reduce's share of this thread)."""
    t0 = time.thread_time() if split is not None else 0.0
    logits = net(batch, ranks)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.T.reshape(-1), reduction="mean") * batch.shape[1]
    t1 = time.thread_time() if split is not None else 0.0
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.thread_time() if split is not None else 0.0
    opt.step()
    if split is not None:
        t3 = time.thread_time()
        split[0] += t1 - t0
        split[1] += t2 - t1
        split[2] += t3 - t2
    return float(loss.detach())

class _Net(nn.Module):
    """Per-token MLP heads over masked token embeddings (one weight slice per head, run as bmm).

    With `rank` > 0 (wide tables) the first layer is factorized: each slot's embedding is projected
    to `rank` numbers by a weight of its own, head j sums the projections of the tokens before it
    and maps that sum through its own (rank x hidden) weight. Same masking, same outputs, but the
    cost per row is slots^2 x rank instead of slots^2 x emb_dim x hidden, and the weights grow as
    slots x rank x hidden instead of slots^2 x emb_dim x hidden."""

    def __init__(self, vocab: list[int], emb_dim: int, hidden: int, n_layers: int, dropout: float,
                 ordinal: np.ndarray | None = None, rank: int = 0):
        super().__init__()
        c, vmax = len(vocab), max(vocab)
        self.c, self.e, self.h, self.rank = c, emb_dim, hidden, int(rank)
        self.register_buffer("offsets", torch.tensor(np.r_[0, np.cumsum(vocab)[:-1]], dtype=torch.long))
        valid = torch.zeros(c, vmax, dtype=torch.bool)
        for j, v in enumerate(vocab):
            valid[j, :v] = True
        self.register_buffer("valid", valid)
        self.emb = nn.Embedding(int(sum(vocab)), emb_dim)
        nn.init.normal_(self.emb.weight, std=1.0)
        # ordinal position of each token in [-1, 1] (numeric bins and sub groups; 0 elsewhere) times a
        # learned vector per slot: neighbouring bins start out alike, so rare bins borrow strength
        ord_ = torch.zeros(int(sum(vocab))) if ordinal is None else torch.as_tensor(ordinal, dtype=torch.float32)
        self.register_buffer("ordinal", ord_)
        self.ord_vec = nn.Parameter(torch.randn(c, emb_dim) * 2.0)
        self.register_buffer("slot_of", torch.repeat_interleave(torch.arange(c), torch.as_tensor(vocab), output_size=int(sum(vocab))))
        if self.rank:
            self.w_slot = nn.Parameter(torch.randn(c, emb_dim, self.rank) / math.sqrt(emb_dim))
            self.b_slot = nn.Parameter(torch.randn(c, self.rank) * 0.1)  # what the mask bit of a slot adds
            self.scale = 1.0 / math.sqrt(c)
            d = self.rank
        else:
            d = c * emb_dim + c
        self.w_in = nn.Parameter(torch.randn(c, d, hidden) / math.sqrt(d))
        self.b_in = nn.Parameter(torch.zeros(c, 1, hidden))
        self.w_mid = nn.Parameter(torch.randn(max(n_layers - 1, 0), c, hidden, hidden) / math.sqrt(hidden))
        self.b_mid = nn.Parameter(torch.zeros(max(n_layers - 1, 0), c, 1, hidden))
        self.w_out = nn.Parameter(torch.randn(c, hidden, vmax) / math.sqrt(hidden) * 0.5)
        self.b_out = nn.Parameter(torch.zeros(c, 1, vmax))
        self.drop = nn.Dropout(dropout)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        idx = tokens + self.offsets
        return self.emb(idx) + self.ordinal[idx].unsqueeze(-1) * self.ord_vec

    def _inputs(self, tokens: torch.Tensor, slot_rank: torch.Tensor) -> torch.Tensor:
        """(B, C) tokens and (B, C) positions of each token in its row's order -> (T, B, ...) inputs of the
        T = C heads: (C*e + C) masked embeddings and mask bits, or with rank > 0 the (rank) sums."""
        emb = self.drop(self._embed(tokens))  # (B, C, e)
        if self.rank:
            # head j sums the projections of the tokens ranked before it: an exclusive prefix sum in
            # each row's order, O(B C rank) where a (B, C, C) mask would cost O(B C^2 rank)
            z = torch.einsum("bce,cer->bcr", emb, self.w_slot) + self.b_slot  # (B, C, r)
            order = slot_rank.argsort(dim=1)
            idx = order.unsqueeze(-1).expand(-1, -1, self.rank)
            zs = torch.gather(z, 1, idx)
            before = torch.zeros_like(z).scatter(1, idx, zs.cumsum(1) - zs)
            return (before * self.scale).transpose(0, 1)  # (T, B, r)
        prec = (slot_rank.unsqueeze(1) < slot_rank.unsqueeze(2)).float()  # [b, j, i]: token i comes before j
        x = (prec.unsqueeze(-1) * emb.unsqueeze(1)).flatten(2)  # (B, T, C*e)
        return torch.cat([x, prec], dim=-1).transpose(0, 1)

    def _mlp(self, x: torch.Tensor, heads: slice | int) -> torch.Tensor:
        if not isinstance(heads, slice):
            h = F.gelu(x @ self.w_in[heads] + self.b_in[heads])
            for layer in range(self.w_mid.shape[0]):
                h = h + F.gelu(self.drop(h) @ self.w_mid[layer, heads] + self.b_mid[layer, heads])
            return h @ self.w_out[heads] + self.b_out[heads]
        h = F.gelu(torch.baddbmm(self.b_in, x, self.w_in))
        for layer in range(self.w_mid.shape[0]):
            h = h + F.gelu(torch.baddbmm(self.b_mid[layer], self.drop(h), self.w_mid[layer]))
        return torch.baddbmm(self.b_out, h, self.w_out)

    def forward(self, tokens: torch.Tensor, slot_rank: torch.Tensor) -> torch.Tensor:
        """Logits (C, B, Vmax) of every token given its predecessors (the tokens of lower `slot_rank`);
        padding slots are -inf."""
        logits = self._mlp(self._inputs(tokens, slot_rank), slice(None))
        return logits.masked_fill(~self.valid[:, None, :], float("-inf"))

    def embed_slot(self, j: int, tokens: torch.Tensor) -> torch.Tensor:
        """(B,) tokens of slot j -> (B, e) embeddings (as `_embed`, one slot)."""
        idx = tokens + self.offsets[j]
        return self.emb(idx) + self.ordinal[idx].unsqueeze(-1) * self.ord_vec[j]

    def project_slot(self, j: int, emb_j: torch.Tensor) -> torch.Tensor:
        """(B, e) embeddings of slot j -> (B, rank): what slot j adds to later heads' sums (rank > 0)."""
        return emb_j @ self.w_slot[j] + self.b_slot[j]

    def head(self, j: int, emb: torch.Tensor, done: list[int], acc: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, Vmax) of token j given the embedded tokens `emb` (B, C, e) of the slots in `done`.

        Same function as `forward` for one head, but only the done slots' weight rows are multiplied
        (the others see zeros) and their mask bits fold into the bias: sampling costs half as much.
        With rank > 0, `acc` (B, rank) may carry the running sum of `project_slot` over `done`."""
        j, e, c = int(j), self.e, self.c
        w = self.w_in[j]
        if self.rank:
            if acc is not None:
                h = torch.addmm(self.b_in[j], acc * self.scale, w)
            elif done:
                d = torch.as_tensor(done, dtype=torch.long, device=w.device)
                z = emb[:, d].flatten(1) @ self.w_slot[d].flatten(0, 1) + self.b_slot[d].sum(0)
                h = torch.addmm(self.b_in[j], z * self.scale, w)
            else:
                h = self.b_in[j].expand(emb.shape[0], -1)
        elif done:
            d = torch.as_tensor(done, dtype=torch.long, device=w.device)
            rows = (d[:, None] * e + torch.arange(e, device=w.device)).flatten()
            h = torch.addmm(self.b_in[j] + w[c * e + d].sum(0), emb[:, d].flatten(1), w[rows])
        else:
            h = self.b_in[j].expand(emb.shape[0], -1)
        h = F.gelu(h)
        for layer in range(self.w_mid.shape[0]):
            h = h + F.gelu(h @ self.w_mid[layer, j] + self.b_mid[layer, j])
        return (h @ self.w_out[j] + self.b_out[j]).masked_fill(~self.valid[j], float("-inf"))


@contextlib.contextmanager
def _threads(n: int | None):
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class AutoregressiveSynthesizer(ReleaseGuardMixin, BaseSynthesizer):
    """Column-by-column model over tokens, trainable in any column order; see module docstring.

    `max_seconds` bounds the whole fit (tokenizing included); training stops early when the
    validation loss has not improved for `patience` epochs, keeping the best weights. With a time
    budget (or `lr_schedule="cosine"`) the learning rate follows a cosine decay over the budget;
    otherwise it halves when the validation loss stalls. `datetime_parts=False` tokenizes datetimes as
    plain numbers (epoch seconds) instead of by calendar parts (the former behaviour).
    `input_rank="auto"` keeps the full first layer unless the table has so many token slots that it
    would be huge (several hundred columns), then factorizes it (see `_Net`); 0 forces the full layer.
    `n_threads=None` runs small tables on one thread and larger ones on torch's setting.
    """

    name = "autoregressive"

    def __init__(self, epochs: int = 24, max_seconds: float | None = None, batch_size: int = 512,
                 learning_rate: float = 3e-3, weight_decay: float = 1e-5, emb_dim: int = 8, hidden: int = 128,
                 n_layers: int = 1, dropout: float = 0.15, n_bins: int = 64, n_sub: int = 8,
                 fixed_order_share: float = 0.5, validation_share: float = 0.1, patience: int = 6,
                 temperature: float = 1.0, top_p: float = 1.0, privacy_k: int = 5, device: str = "auto",
                 n_threads: int | None = None, random_state: int | None = 0, verbose: bool = False,
                 sample_batch_size: int = 65536, lr_schedule: str = "auto", datetime_parts: bool = True,
                 rare_label: Any = "other", input_rank: int | str = "auto", combination_guard: int = 0,
                 schema: Any = None):
        self.epochs = epochs
        self.max_seconds = max_seconds
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.emb_dim = emb_dim
        self.hidden = hidden
        self.n_layers = n_layers
        self.dropout = dropout
        self.n_bins = n_bins
        self.n_sub = n_sub
        self.fixed_order_share = fixed_order_share
        self.validation_share = validation_share
        self.patience = patience
        self.temperature = temperature
        self.top_p = top_p
        self.privacy_k = privacy_k
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.sample_batch_size = sample_batch_size
        self.lr_schedule = lr_schedule
        self.datetime_parts = datetime_parts
        self.rare_label = rare_label
        self.input_rank = input_rank
        self.combination_guard = combination_guard
        self.schema = schema

    # -- helpers ---------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _layout(self) -> None:
        """Token slots: per column its bin/category token and, for numbers that need it, a sub token;
        per datetime column its calendar parts (see DatetimeTokenizer)."""
        slots: list[tuple[int, str]] = []
        vocab: list[int] = []
        ordinal: list[np.ndarray] = []
        part: list[int] = []
        for ci, tok in enumerate(self.tokenizers_):
            if isinstance(tok, CategoryTokenizer):
                slots.append((ci, "cat"))
                vocab.append(tok.n_tokens)
                ordinal.append(np.zeros(tok.n_tokens))
                part.append(0)
            elif isinstance(tok, DatetimeTokenizer):
                slots += [(ci, name) for name in tok.parts_]
                vocab += tok.vocab_
                ordinal += tok.ordinal()
                part += list(range(len(tok.parts_)))
            else:
                v = max(tok.n_bin_tokens, 1)
                nb = tok.bin_lo_.size
                slots.append((ci, "bin"))
                vocab.append(v)
                ordinal.append(np.r_[np.linspace(-1.0, 1.0, nb) if nb > 1 else np.zeros(nb), np.zeros(v - nb)])
                part.append(0)
                if tok.needs_sub:
                    slots.append((ci, "sub"))
                    vocab.append(tok.n_sub)
                    ordinal.append(np.linspace(-1.0, 1.0, tok.n_sub))
                    part.append(1)
        self.ordinal_ = np.concatenate(ordinal) if ordinal else np.zeros(0)
        self.slots_ = slots
        self.vocab_ = vocab
        self._slot_col = np.array([s[0] for s in slots], dtype=np.int64)
        self._slot_part = np.array(part, dtype=np.int64)

    def _slot_ranks(self, col_rank: torch.Tensor) -> torch.Tensor:
        """(B, n_columns) column ranks -> (B, C) position of every token in its row's order (a column's
        tokens in their own order); the net's heads see the tokens of lower position."""
        col = torch.as_tensor(self._slot_col, device=col_rank.device)
        part = torch.as_tensor(self._slot_part, device=col_rank.device)
        return col_rank[:, col] * _PARTS + part

    def _ranks(self, b: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        m = len(self.columns_)
        rand = torch.rand(b, m, generator=gen).argsort(dim=1).argsort(dim=1)
        fixed = torch.rand(b, generator=gen) < self.fixed_order_share
        rank = torch.where(fixed[:, None], torch.arange(m).expand(b, m), rand)
        return rank.to(device)

    def _tokenize(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        cols = []
        for col, tok in zip(self.columns_, self.tokenizers_):
            x = encoded[col.name]
            if isinstance(tok, CategoryTokenizer):
                cols.append(tok.encode(x))
            elif isinstance(tok, DatetimeTokenizer):
                cols += list(tok.encode(x).T)
            else:
                b, s = tok.encode(x)
                cols.append(b)
                if tok.needs_sub:
                    cols.append(s)
        return np.column_stack(cols).astype(np.int64) if cols else np.zeros((0, 0), np.int64)

    # -- fit -------------------------------------------------------------------------------------
    def _fit(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        if self.combination_guard not in (0, 2, 3, None):
            raise SynthloopError(f"combination_guard must be 0 (off), 2 or 3 (columns per guarded combination), "
                                 f"got {self.combination_guard!r}")
        start = time.monotonic()
        budget = float(self.max_seconds) if self.max_seconds else math.inf
        encoded = self._clip_released(encoded)
        self.columns_ = list(self.codec_.learned)
        self.tokenizers_: list[Any] = []
        for col in self.columns_:
            x = encoded[col.name]
            if col.kind in _DISCRETE:
                self.tokenizers_.append(CategoryTokenizer(self.privacy_k).fit(x, len(col.categories or [])))
                continue
            dt = DatetimeTokenizer(self.n_bins, self.n_sub, self.privacy_k).fit(x) if (
                col.kind == ColumnKind.DATETIME and self.datetime_parts) else None
            if dt is not None and dt.usable_:
                self.tokenizers_.append(dt)
            else:
                self.tokenizers_.append(NumericTokenizer(self.n_bins, self.n_sub, self.privacy_k).fit(x))
        self._layout()
        tokens = self._tokenize(encoded)
        self._fit_guard(tokens)
        self.history_: list[dict[str, float]] = []
        seed = int(rng.integers(2**62))
        device = self._device()
        with _threads(self._thread_count(tokens.shape[0] * tokens.shape[1])), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            self.input_rank_ = _input_rank(self.input_rank, len(self.vocab_), self.emb_dim, self.hidden)
            self.net_ = _Net(self.vocab_, self.emb_dim, self.hidden, self.n_layers, self.dropout, self.ordinal_,
                             self.input_rank_).to(device)
            if tokens.shape[1] == 0:
                return
            # synthloop.runners.training swaps in a data-parallel loop (Ray Train) for the same weights
            (getattr(self, "_train_override", None) or self._train)(tokens, gen, device, start, budget)
        self.net_.cpu()
        self.fit_seconds_ = time.monotonic() - start

    def _train(self, tokens: np.ndarray, gen: torch.Generator, device: torch.device, start: float, budget: float) -> None:
        n = tokens.shape[0]
        perm = torch.randperm(n, generator=gen).numpy()
        n_val = int(round(n * self.validation_share)) if n >= 50 else 0
        val = torch.as_tensor(tokens[perm[:n_val]], device=device)
        train = torch.as_tensor(tokens[perm[n_val:]], device=device)
        val_rank = self._ranks(n_val, gen, device) if n_val else None
        net = self.net_
        opt = make_optimizer(net.parameters(), self.learning_rate, self.weight_decay)
        bs = max(1, min(self.batch_size, train.shape[0], self._mask_rows()))
        best, best_state, bad = math.inf, None, 0
        step_time = 0.0
        progress = _progress(self.verbose, self.epochs)
        for epoch in range(self.epochs):
            net.train()
            order = torch.randperm(train.shape[0], generator=gen).to(device)
            total, count, stopped = 0.0, 0, False
            for i in range(0, train.shape[0], bs):
                t0 = time.monotonic()
                if t0 - start + step_time * 2 > budget:
                    stopped = True
                    break
                if math.isfinite(budget) or self.lr_schedule == "cosine":
                    # cosine decay over the run (time or epochs, whichever ends first)
                    done_share = max((t0 - start) / budget, (epoch + i / train.shape[0]) / self.epochs)
                    for grp in opt.param_groups:
                        grp["lr"] = cosine_lr(self.learning_rate, done_share)
                batch = train[order[i:i + bs]]
                total += train_step(net, opt, batch, self._slot_ranks(self._ranks(batch.shape[0], gen, device))) * batch.shape[0]
                count += batch.shape[0]
                step_time = max(step_time * 0.9, time.monotonic() - t0) if step_time else time.monotonic() - t0
            if stopped and count == 0:
                break  # the budget ran out before this epoch took a step: nothing to record
            val_loss = self._val_loss(val, val_rank) if n_val and (not stopped or time.monotonic() - start + step_time * 4 < budget) else math.nan
            self.history_.append({"epoch": epoch + 1, "train_loss": total / max(count, 1), "val_loss": val_loss,
                                  "seconds": time.monotonic() - start})
            if progress is not None:
                progress.update(epoch + 1, total / max(count, 1), val_loss)
            if n_val and np.isfinite(val_loss):
                if val_loss < best - 1e-4:
                    best, bad = val_loss, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
                    if bad == max(1, self.patience // 2) and not (math.isfinite(budget) or self.lr_schedule == "cosine"):
                        for grp in opt.param_groups:
                            grp["lr"] *= 0.5
                    # with a cosine schedule the loss only settles as the rate decays: no early stop in the first half
                    cosine = math.isfinite(budget) or self.lr_schedule == "cosine"
                    half = max((time.monotonic() - start) / budget, (epoch + 1) / self.epochs) >= 0.5
                    if bad >= self.patience and (half or not cosine):
                        break
            if stopped:
                break
        if progress is not None:
            progress.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        self.best_val_loss_ = float(best)

    # -- the combination guard (synthloop.synthesizers._combguard) ------------------------------------
    def _first_slots(self) -> np.ndarray:
        return np.array([int(np.flatnonzero(self._slot_col == ci)[0]) for ci in range(len(self.tokenizers_))], np.int64)

    def _guard_groups(self, tokens: np.ndarray) -> np.ndarray:
        """(rows, columns) coarse group of each column's first token (see `_combguard`)."""
        first = self._first_slots()
        return np.column_stack([self.guard_maps_[ci][np.clip(tokens[:, s], 0, self.guard_maps_[ci].size - 1)]
                                for ci, s in enumerate(first)]) if first.size else np.zeros((tokens.shape[0], 0), np.int64)

    def _fit_guard(self, tokens: np.ndarray) -> None:
        """With `combination_guard=r` (2 or 3), record the r-column cells that at least `privacy_k` training
        rows share (`_combguard`); off by default and with privacy_k=0."""
        self.guard_ = None
        self.guard_maps_ = []
        k = self._release_k()
        if not self.combination_guard or k <= 0 or len(self.tokenizers_) < 2 or tokens.shape[0] == 0:
            return
        for ci, (tok, s) in enumerate(zip(self.tokenizers_, self._first_slots())):
            v = self.vocab_[s]
            if isinstance(tok, CategoryTokenizer):
                self.guard_maps_.append(nominal_groups(tokens[:, s], v))
            else:
                nb = (tok.period_ if isinstance(tok, DatetimeTokenizer) else tok).bin_lo_.size
                self.guard_maps_.append(ordinal_groups(tokens[:, s], nb, v))
        self.guard_ = CombinationGuard(k, int(self.combination_guard), random_state=0).fit(self._guard_groups(tokens))

    def _thread_count(self, token_cells: int) -> int | None:
        """`n_threads`, or with None: one thread for small work (under `_SMALL_WORK` tokens), whose
        operations are too small to split (on a busy machine two threads made them 5-20x slower),
        else torch's own setting."""
        if self.n_threads is not None:
            return self.n_threads
        return 1 if token_cells <= _SMALL_WORK else None

    def _mask_rows(self) -> int:
        """Rows per batch that keep the full layer's (rows, slots, slots x emb_dim) inputs near
        `_MASK_ELEMENTS` (at least 16); the factorized layer has no such inputs."""
        if getattr(self.net_, "rank", 0):
            return 1 << 30
        return max(16, _MASK_ELEMENTS // max(len(self.vocab_) ** 2 * self.emb_dim, 1))

    @torch.no_grad()
    def _val_loss(self, val: torch.Tensor, rank: torch.Tensor) -> float:
        self.net_.eval()
        total = 0.0
        step = min(4096, self._mask_rows())
        for i in range(0, val.shape[0], step):
            b = val[i:i + step]
            logits = self.net_(b, self._slot_ranks(rank[i:i + step]))
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b.T.reshape(-1), reduction="sum"))
        return total / val.shape[0]

    # -- sample ----------------------------------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator, known: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
        names = [c.name for c in self.columns_]
        cond = [names.index(k) for k, v in known.items() if k in names and not v.get("generated")]
        cond.sort()
        masks = np.column_stack([known[names[c]]["mask"] for c in cond]) if cond else np.zeros((n, 0), bool)
        patterns, inverse = np.unique(masks, axis=0, return_inverse=True) if n else (masks, np.zeros(0, int))
        inverse = np.asarray(inverse).ravel()
        c = len(self.slots_)
        tokens = np.zeros((n, c), dtype=np.int64)
        seed = int(rng.integers(2**62))
        gen = torch.Generator().manual_seed(seed)
        with _threads(self._thread_count(min(n, self.sample_batch_size) * c)), torch.no_grad():
            self.net_.eval()
            todo = np.arange(n)
            guard = getattr(self, "guard_", None)
            redrawn = 0
            for round_ in range(GUARD_ROUNDS + 1):
                for p, pattern in enumerate(patterns):  # one pass per distinct set of conditioned columns
                    rows = todo[inverse[todo] == p]
                    fixed_cols = [cond[i] for i in range(len(cond)) if pattern[i]]
                    order = fixed_cols + [j for j in range(len(names)) if j not in fixed_cols]
                    step = max(1, min(self.sample_batch_size, 2**26 // max(c * self.net_.e, 1)))  # (rows, slots, e) buffer
                    for s in range(0, rows.size, step):
                        r = rows[s:s + step]
                        tokens[r] = self._sample_batch(r, order, set(fixed_cols), known, gen)
                if guard is None or todo.size == 0:
                    break
                # the combination guard: a row in a cell fewer than privacy_k training rows shared is drawn again
                todo = todo[~guard.allows(self._guard_groups(tokens[todo]))]
                if round_ < GUARD_ROUNDS:
                    redrawn += todo.size
            # rows still outside after GUARD_ROUNDS draws (conditions that force a rare cell) are kept
            self.last_guard_ = {"redrawn": int(redrawn), "kept_rare": int(todo.size) if guard is not None else 0}
        u = rng.random((n, len(names)))
        out: dict[str, np.ndarray] = {}
        for ci, (col, tok) in enumerate(zip(self.columns_, self.tokenizers_)):
            slots = np.flatnonzero(self._slot_col == ci)
            spec = known.get(col.name)
            if isinstance(tok, CategoryTokenizer):
                codes = tok.decode(tokens[:, slots[0]], u[:, ci])
                if spec is not None and "codes" in spec:
                    codes = np.where(spec["mask"], spec["codes"], codes)
                out[col.name] = codes
                continue
            if isinstance(tok, DatetimeTokenizer):
                m = spec["mask"] if spec is not None and "lo" in spec else np.zeros(n, bool)
                lo = np.where(m, spec["lo"], np.nan) if m.any() else None
                hi = np.where(m, spec["hi"], np.nan) if m.any() else None
                vals = tok.decode(tokens[:, slots], u[:, ci], lo, hi)
                if m.any():
                    vals = np.where(m, np.clip(vals, spec["lo"], spec["hi"]), vals)
                out[col.name] = vals
                continue
            bins = tokens[:, slots[0]]
            subs = tokens[:, slots[1]] if slots.size > 1 else np.zeros(n, np.int64)
            if spec is not None and "lo" in spec:
                m = spec["mask"]
                lo, hi = _group_bounds(tok, bins, subs)
                lo = np.where(m, np.maximum(lo, spec["lo"]), lo)
                hi = np.where(m, np.minimum(hi, spec["hi"]), hi)
                hi = np.maximum(hi, lo)
                vals = lo + u[:, ci] * (hi - lo)
                vals[bins >= tok.bin_lo_.size] = np.nan
                vals = np.where(m, np.clip(vals, spec["lo"], spec["hi"]), vals)
                out[col.name] = vals
            else:
                out[col.name] = tok.decode(bins, subs, u[:, ci])
        return out

    def _sample_batch(self, rows: np.ndarray, order: list[int], fixed: set[int], known: dict[str, dict[str, Any]],
                     gen: torch.Generator) -> np.ndarray:
        b, c = rows.size, len(self.slots_)
        device = next(self.net_.parameters()).device
        tok = torch.zeros(b, c, dtype=torch.long, device=device)
        emb = torch.zeros(b, c, self.net_.e, device=device)
        done: list[int] = []
        acc = torch.zeros(b, self.net_.rank, device=device) if self.net_.rank else None  # wide tables: running sum

        def put(j: int, values: torch.Tensor) -> None:
            tok[:, j] = values
            emb[:, j] = self.net_.embed_slot(j, values)
            if acc is not None:
                acc.add_(self.net_.project_slot(j, emb[:, j]))
            done.append(int(j))

        for ci in order:
            col, tkz = self.columns_[ci], self.tokenizers_[ci]
            spec = known.get(col.name) if ci in fixed else None
            slots = np.flatnonzero(self._slot_col == ci)
            if isinstance(tkz, CategoryTokenizer):
                if spec is not None:
                    put(slots[0], torch.as_tensor(tkz.encode(spec["codes"][rows]), device=device))
                else:
                    put(slots[0], self._draw(slots[0], emb, done, None, gen, acc))
                continue
            if isinstance(tkz, DatetimeTokenizer):
                lo = spec["lo"][rows] if spec is not None else np.full(b, np.nan)
                hi = spec["hi"][rows] if spec is not None else np.full(b, np.nan)
                for p, j in enumerate(slots):
                    allowed = tkz.allowed(p, tok[:, slots[:p]].cpu().numpy(), lo, hi, spec is not None)
                    if (allowed.sum(axis=1) == 1).all():  # a part fixed by the earlier ones: no need to ask the net
                        put(j, torch.as_tensor(allowed.argmax(axis=1), device=device))
                    else:
                        put(j, self._draw(j, emb, done, allowed, gen, acc))
                continue
            lo = spec["lo"][rows] if spec is not None else None
            hi = spec["hi"][rows] if spec is not None else None
            allowed = None
            if spec is not None:
                allowed = np.zeros((b, self.vocab_[slots[0]]), bool)
                allowed[:, : tkz.bin_lo_.size] = tkz.allowed_bins(lo, hi)
            bins = self._draw(slots[0], emb, done, allowed, gen, acc)
            put(slots[0], bins)
            if slots.size > 1:
                allowed = None
                if spec is not None:
                    allowed = tkz.allowed_subs(np.minimum(bins.cpu().numpy(), tkz.bin_lo_.size - 1), lo, hi)
                else:  # never draw an empty group
                    allowed = ~np.isnan(tkz.sub_lo_[np.minimum(bins.cpu().numpy(), tkz.bin_lo_.size - 1)])
                put(slots[1], self._draw(slots[1], emb, done, allowed, gen, acc))
        return tok.cpu().numpy()

    def _draw(self, j: int, emb: torch.Tensor, done: list[int], allowed: np.ndarray | None, gen: torch.Generator,
              acc: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.net_.head(j, emb, done, acc)[:, : self.vocab_[j]]
        if allowed is not None:
            logits = logits.masked_fill(~torch.as_tensor(allowed, device=logits.device), float("-inf"))
        probs = torch.softmax(logits / max(self.temperature, 1e-6), dim=-1)
        if self.top_p < 1.0:
            sp, idx = probs.sort(dim=-1, descending=True)
            keep = (sp.cumsum(-1) - sp) < self.top_p
            sp = sp * keep
            probs = torch.zeros_like(probs).scatter_(-1, idx, sp)
        cum = probs.cumsum(-1)
        u = torch.rand(probs.shape[0], 1, generator=gen).to(probs.device) * cum[:, -1:]
        out = torch.searchsorted(cum, u, right=True).squeeze(1)
        return out.clamp_(max=probs.shape[1] - 1)

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        toks = []
        for i, tok in enumerate(self.tokenizers_):
            m, a = tok.state()
            kind = {CategoryTokenizer: "category", DatetimeTokenizer: "datetime"}.get(type(tok), "numeric")
            toks.append({"type": kind, **m})
            arrays.update({f"tok{i}_{k}": v for k, v in a.items()})
        for k, v in self.net_.state_dict().items():
            arrays[f"net.{k}"] = v.detach().cpu().numpy()
        meta = {"columns": [c.name for c in self.columns_], "tokenizers": toks, "history": self.history_,
                "input_rank": int(getattr(self, "input_rank_", 0))}
        guard = getattr(self, "guard_", None)
        if guard is not None:
            gm, ga = guard.state()
            meta["guard"] = gm
            arrays.update({f"guard_{k}": v for k, v in ga.items()})
            arrays.update({f"guardmap_{i}": v for i, v in enumerate(self.guard_maps_)})
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.columns_ = [self.schema_[name] for name in meta["columns"]]
        self.tokenizers_ = []
        for i, m in enumerate(meta["tokenizers"]):
            a = {k.split("_", 1)[1]: v for k, v in arrays.items() if k.startswith(f"tok{i}_")}
            klass = {"category": CategoryTokenizer, "datetime": DatetimeTokenizer, "numeric": NumericTokenizer}.get(m["type"])
            if klass is None:
                raise ModelFileError(f"model file: unknown tokenizer type {m['type']!r} for column "
                                     f"'{meta['columns'][i]}'; it was written by a newer synthloop: upgrade, or refit")
            self.tokenizers_.append(klass.from_state(m, a))
        self.history_ = meta.get("history", [])
        self._layout()
        self.guard_, self.guard_maps_ = None, []
        if isinstance(meta.get("guard"), dict):  # files written before the guard have none
            self.guard_ = CombinationGuard.from_state(meta["guard"], {k[6:]: v for k, v in arrays.items()
                                                                      if k.startswith("guard_")})
            self.guard_maps_ = [np.asarray(arrays.get(f"guardmap_{i}", np.zeros(0)), np.int64)
                                for i in range(len(self.tokenizers_))]
            if len(self.guard_maps_) != self.guard_.radix_.size or any(m.size == 0 for m in self.guard_maps_):
                raise ModelFileError("model file: the combination guard's column maps are missing; refit the model")
        rank = meta.get("input_rank", 0)
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank <= 4096:
            raise ModelFileError(f"model file: header 'input_rank' must be a whole number from 0 to 4096, got {rank!r}")
        self.input_rank_ = rank

        def make() -> _Net:
            return _Net(self.vocab_, self.emb_dim, self.hidden, self.n_layers, self.dropout, self.ordinal_, rank)

        check_module_arrays(make, arrays, "net.")
        self.net_ = make()
        derived = {k: v.clone() for k, v in self.net_.named_buffers()}  # what the tokenizers imply
        self.net_.load_state_dict({k[4:]: torch.as_tensor(v) for k, v in arrays.items() if k.startswith("net.")})
        for k, v in self.net_.named_buffers():
            if not torch.equal(v, derived[k]):
                raise ModelFileError(f"model file: array 'net.{k}' does not match the tokenizers in the header")
        self.net_.eval()


def _group_bounds(tok: NumericTokenizer, bins: np.ndarray, subs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] of the value group of each (bin, sub) token pair (NaN bins give 0, 0)."""
    return tok.group_bounds(bins, subs)


class _progress:
    """A rich progress bar with epoch and losses, only when asked for."""

    def __new__(cls, verbose: bool, total: int):
        if not verbose:
            return None
        return super().__new__(cls)

    def __init__(self, verbose: bool, total: int):
        from rich.progress import Progress

        self.bar = Progress()
        self.bar.start()
        self.task = self.bar.add_task("training", total=total)

    def update(self, epoch: int, train_loss: float, val_loss: float) -> None:
        self.bar.update(self.task, completed=epoch,
                        description=f"epoch {epoch} loss {train_loss:.3f} val {val_loss:.3f}")

    def close(self) -> None:
        self.bar.stop()
