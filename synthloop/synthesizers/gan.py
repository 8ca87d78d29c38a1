"""Conditional tabular GAN in the CTGAN family (Xu et al. 2019).

- Numerical/datetime columns: mode-specific normalization (variational GMM per column).
- Conditional vector + training-by-sampling: each step picks a discrete column uniformly and one of
  its categories by log-frequency, asks the generator for that category, and shows the critic real
  rows with the same category, so rare categories are learned too. Row picking is vectorized
  (per-column sorted row indices, not a Python loop over the batch as in the reference code).
- PacGAN critic (`pac` rows judged together) trained with the WGAN-GP gradient penalty.
- Early stopping/best-epoch selection on a validation split, scored by a cheap fidelity distance.
- Conditional sampling: a condition on a discrete column goes into the conditional vector (so a
  rare value costs no rejection); other conditions use bounded rejection, then are imposed.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synthloop.errors import ModelFileError
from synthloop.synthesizers._torch import (
    DataLayout, TrainingLoop, arrays_to_module, check_module_arrays, fidelity_distance, module_to_arrays, resolve_device,
    split_validation, torch_seed, torch_threads,
)
from synthloop.synthesizers._conditional import RejectionSamplingMixin
from synthloop.synthesizers._release import ReleaseGuardMixin
from synthloop.synthesizers.base import BaseSynthesizer


class _Residual(nn.Module):
    def __init__(self, i: int, o: int):
        super().__init__()
        self.fc = nn.Linear(i, o)
        self.bn = nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)


class _Generator(nn.Module):
    def __init__(self, in_dim: int, dims: tuple[int, ...], out_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in dims:
            layers.append(_Residual(d, h))
            d += h
        layers.append(nn.Linear(d, out_dim))
        self.seq = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class _Critic(nn.Module):
    def __init__(self, in_dim: int, dims: tuple[int, ...], pac: int):
        super().__init__()
        self.pac = pac
        layers: list[nn.Module] = []
        d = in_dim * pac
        for h in dims:
            layers += [nn.Linear(d, h), nn.LeakyReLU(0.2), nn.Dropout(0.5)]
            d = h
        layers.append(nn.Linear(d, 1))
        self.seq = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x.reshape(-1, x.shape[1] * self.pac))


class _CondSampler:
    """Conditional vectors and matching real rows, vectorized over the batch."""

    def __init__(self, layout: DataLayout, data: np.ndarray, log_frequency: bool = True):
        self.spans = layout.discrete_spans
        self.n = data.shape[0]
        self.dim = sum(s.size for s in self.spans)
        self.n_cols = len(self.spans)
        if not self.n_cols:
            return
        maxk = max(s.size for s in self.spans)
        self.offsets = np.cumsum([0] + [s.size for s in self.spans])[:-1]
        self.cdf_log = np.ones((self.n_cols, maxk))
        self.cdf_raw = np.ones((self.n_cols, maxk))
        self.order = np.empty((self.n_cols, self.n), dtype=np.int64)
        self.cat_start = np.zeros(self.dim, dtype=np.int64)
        self.cat_count = np.zeros(self.dim, dtype=np.int64)
        for d, s in enumerate(self.spans):
            codes = data[:, s.start:s.start + s.size].argmax(axis=1)
            counts = np.bincount(codes, minlength=s.size)
            for cdf, f in ((self.cdf_log, np.log(counts + 1.0) if log_frequency else counts.astype(float)),
                           (self.cdf_raw, counts.astype(float))):
                p = f / f.sum()
                cdf[d, :s.size] = np.cumsum(p)
            self.order[d] = np.argsort(codes, kind="stable")
            g = self.offsets[d]
            self.cat_count[g:g + s.size] = counts
            self.cat_start[g:g + s.size] = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def sample_cond(self, batch: int, rng: np.random.Generator, original: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(column index, category within column) per row."""
        col = rng.integers(0, self.n_cols, batch)
        cdf = (self.cdf_raw if original else self.cdf_log)[col]
        cat = (cdf < rng.random(batch)[:, None]).sum(axis=1)
        sizes = np.array([s.size for s in self.spans])[col]
        return col, np.minimum(cat, sizes - 1)

    def cond_matrix(self, col: np.ndarray, cat: np.ndarray) -> np.ndarray:
        c = np.zeros((col.size, self.dim), dtype=np.float32)
        c[np.arange(col.size), self.offsets[col] + cat] = 1.0
        return c

    def sample_rows(self, col: np.ndarray, cat: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = self.offsets[col] + cat
        pick = self.cat_start[g] + np.floor(rng.random(col.size) * self.cat_count[g]).astype(np.int64)
        return self.order[col, pick]


class GANSynthesizer(RejectionSamplingMixin, ReleaseGuardMixin, BaseSynthesizer):
    """CTGAN-style conditional GAN. `epochs`/`max_seconds` bound training; `random_state` seeds it."""

    name = "gan"

    def __init__(self, epochs: int = 300, max_seconds: float | None = None, batch_size: int = 500,
                 embedding_dim: int = 128, generator_dim: tuple[int, ...] = (256, 256),
                 discriminator_dim: tuple[int, ...] = (256, 256), generator_lr: float = 2e-4,
                 discriminator_lr: float = 2e-4, weight_decay: float = 1e-6, discriminator_steps: int = 1,
                 pac: int = 10, gp_lambda: float = 10.0, log_frequency: bool = True, max_modes: int = 10,
                 validation_share: float = 0.1, patience: int | None = 30, device: str = "auto", n_threads: int | None = 1,
                 random_state: int | None = 0, verbose: bool = False, max_condition_rounds: int = 20,
                 privacy_k: int = 5, rare_label: Any = "other", schema: Any = None):
        self.epochs = epochs
        self.max_seconds = max_seconds
        self.batch_size = batch_size
        self.embedding_dim = embedding_dim
        self.generator_dim = generator_dim
        self.discriminator_dim = discriminator_dim
        self.generator_lr = generator_lr
        self.discriminator_lr = discriminator_lr
        self.weight_decay = weight_decay
        self.discriminator_steps = discriminator_steps
        self.pac = pac
        self.gp_lambda = gp_lambda
        self.log_frequency = log_frequency
        self.max_modes = max_modes
        self.validation_share = validation_share
        self.patience = patience
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.max_condition_rounds = max_condition_rounds
        self.privacy_k = privacy_k  # release guard, see synthloop.transforms.release
        self.rare_label = rare_label
        self.schema = schema

    # -- activation -------------------------------------------------------------------------------
    def _index(self, dev: torch.device) -> None:
        """Gather indices that put every one-hot block into one padded (rows, blocks, width) tensor, so
        the Gumbel-softmax and the conditional loss are one kernel each instead of one per column."""
        spans = self.layout_.spans_
        blocks = [s for s in spans if s.kind != "alpha"]
        width = max((s.size for s in blocks), default=1)
        dim = self.layout_.dim_
        gather = np.full((len(blocks), width), dim, dtype=np.int64)  # `dim` = a padding column of -inf
        for b, s in enumerate(blocks):
            gather[b, :s.size] = np.arange(s.start, s.start + s.size)
        self._alpha_idx = torch.tensor([s.start for s in spans if s.kind == "alpha"], dtype=torch.long, device=dev)
        self._gather = torch.from_numpy(gather).to(dev)
        self._valid = self._gather < dim
        self._scatter = self._gather[self._valid]
        disc = {s.start: b for b, s in enumerate(blocks)}
        self._cond_block = torch.tensor([disc[s.start] for s in self.sampler_.spans], dtype=torch.long, device=dev)

    def _blocks(self, raw: torch.Tensor) -> torch.Tensor:
        pad = torch.cat([raw, raw.new_full((raw.shape[0], 1), float("-inf"))], dim=1)
        return pad[:, self._gather]

    def _activate(self, raw: torch.Tensor) -> torch.Tensor:
        """tanh on the scalars, Gumbel-softmax (tau 0.2) on every one-hot block."""
        soft = F.gumbel_softmax(self._blocks(raw), tau=0.2, dim=-1)
        out = torch.empty_like(raw)
        out[:, self._scatter] = soft[:, self._valid]
        if self._alpha_idx.numel():
            out[:, self._alpha_idx] = torch.tanh(raw[:, self._alpha_idx])
        return out

    def _cond_loss(self, raw: torch.Tensor, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Cross entropy of the generator's logits for the asked category, on the asked column only."""
        logits = self._blocks(raw)[torch.arange(raw.shape[0], device=raw.device), self._cond_block[col]]
        return F.cross_entropy(logits, cat)

    # -- fit --------------------------------------------------------------------------------------
    def _fit(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        with torch_threads(self.n_threads):
            self._fit_impl(encoded, rng)

    def _fit_impl(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        encoded = self._clip_released(encoded)
        dev = resolve_device(self.device)
        seed = int(rng.integers(2**31))
        n = self.n_rows_
        train_idx, val_idx = split_validation(n, self.validation_share, rng)
        self.layout_ = DataLayout(self.max_modes, random_state=seed % (2**31)).fit(
            {k: v[train_idx] for k, v in encoded.items()}, self.codec_.learned, rng)
        data = self.layout_.transform({k: v[train_idx] for k, v in encoded.items()}, rng)
        val = {k: v[val_idx] for k, v in encoded.items()} if val_idx.size else None
        self.sampler_ = _CondSampler(self.layout_, data, self.log_frequency)
        self._index(dev)
        bs = max(self.pac, (min(self.batch_size, max(len(data), self.pac)) // self.pac) * self.pac)
        self.batch_size_ = bs
        with torch_seed(seed, dev):
            self.generator_ = _Generator(self.embedding_dim + self.sampler_.dim, tuple(self.generator_dim), self.layout_.dim_).to(dev)
            critic = _Critic(self.layout_.dim_ + self.sampler_.dim, tuple(self.discriminator_dim), self.pac).to(dev)
            opt_g = torch.optim.Adam(self.generator_.parameters(), lr=self.generator_lr, betas=(0.5, 0.9), weight_decay=self.weight_decay, foreach=True)
            opt_d = torch.optim.Adam(critic.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.9), weight_decay=self.weight_decay, foreach=True)
            data_t = torch.from_numpy(data).to(dev)
            steps = max(1, len(data) // bs)
            has_cond = self.sampler_.n_cols > 0
            critic_params = list(critic.parameters())

            def cond(batch: int) -> tuple[torch.Tensor | None, np.ndarray | None, np.ndarray | None]:
                if not has_cond:
                    return None, None, None
                col, cat = self.sampler_.sample_cond(batch, rng)
                return torch.from_numpy(self.sampler_.cond_matrix(col, cat)).to(dev), col, cat

            def with_c(x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
                return x if c is None else torch.cat([x, c], dim=1)

            def epoch(_: int) -> float:
                self.generator_.train()
                critic.train()
                total = 0.0
                g = bs // self.pac
                for _step in range(steps):
                    for _d in range(self.discriminator_steps):
                        z = torch.randn(bs, self.embedding_dim, device=dev)
                        c, col, cat = cond(bs)
                        if c is None:
                            real = data_t[torch.from_numpy(rng.integers(0, len(data), bs)).to(dev)]
                            c_real = None
                        else:
                            perm = rng.permutation(bs)
                            rows = self.sampler_.sample_rows(col[perm], cat[perm], rng)
                            real = data_t[torch.from_numpy(rows).to(dev)]
                            c_real = c[torch.from_numpy(perm).to(dev)]
                        raw = self.generator_(with_c(z, c))
                        fake_in = with_c(self._activate(raw), c)
                        real_in, fake_d = with_c(real, c_real), fake_in.detach()
                        a = torch.rand(g, 1, 1, device=dev).expand(-1, self.pac, real_in.shape[1]).reshape(bs, -1)
                        inter = (a * real_in + (1 - a) * fake_d).requires_grad_(True)
                        # one critic pass over real, fake and interpolated packs (pac groups stay intact)
                        y = critic(torch.cat([real_in, fake_d, inter]))
                        grad = torch.autograd.grad(y[2 * g:].sum(), inter, create_graph=True)[0]
                        gp = ((grad.reshape(g, -1).norm(2, dim=1) - 1) ** 2).mean() * self.gp_lambda
                        loss_d = y[g:2 * g].mean() - y[:g].mean() + gp
                        opt_d.zero_grad(set_to_none=True)
                        loss_d.backward()
                        opt_d.step()
                    # generator step on the last fake batch (its graph is still alive), against the updated critic
                    for p_ in critic_params:
                        p_.requires_grad_(False)  # the generator step needs no critic weight gradients
                    loss_g = -critic(fake_in).mean()
                    if c is not None:
                        loss_g = loss_g + self._cond_loss(raw, torch.from_numpy(col).to(dev), torch.from_numpy(cat).to(dev))
                    opt_g.zero_grad(set_to_none=True)
                    loss_g.backward()
                    opt_g.step()
                    for p_ in critic_params:
                        p_.requires_grad_(True)
                    total += float(loss_g.detach())
                return total / steps

            def score() -> float:
                m = min(len(val_idx), 5000)
                fake = self._generate(m, rng, dev)
                return fidelity_distance({k: v[:m] for k, v in val.items()}, fake, self.layout_)

            loop = TrainingLoop(self.epochs, self.max_seconds, self.patience, self.verbose, f"{self.name} fit")
            self.training_ = loop.run(epoch, score if val is not None else None, (self.generator_,))
            self.history_ = loop.history
        self.generator_.eval()

    # -- sample -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _generate_matrix(self, n: int, rng: np.random.Generator, dev: torch.device,
                         cond: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Raw generator outputs (logits); `cond` = (column index, category) per row, else drawn by real frequency."""
        self.generator_.eval()
        out = []
        gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**63)))
        for lo in range(0, n, 4096):
            m = min(4096, n - lo)
            z = torch.randn(m, self.embedding_dim, generator=gen).to(dev)
            if self.sampler_.n_cols:
                if cond is None:
                    col, cat = self.sampler_.sample_cond(m, rng, original=True)
                else:
                    col, cat = cond[0][lo:lo + m], cond[1][lo:lo + m]
                z = torch.cat([z, torch.from_numpy(self.sampler_.cond_matrix(col, cat)).to(dev)], dim=1)
            out.append(self.generator_(z).cpu().numpy())
        if not out:
            return np.zeros((0, self.layout_.dim_), dtype=np.float32)
        return np.concatenate(out)

    def _generate(self, n: int, rng: np.random.Generator, dev: torch.device | None = None,
                  cond: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        dev = dev or next(self.generator_.parameters()).device
        raw = self._generate_matrix(n, rng, dev, cond)
        # Gumbel-softmax at tau -> 0 is a categorical draw from softmax(logits): sample, don't argmax.
        return self.layout_.inverse(raw, [c.name for c in self.codec_.learned], rng, logits=True)

    def _cond_for(self, n: int, rng: np.random.Generator, known: dict[str, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
        """Per row, put the rarest conditioned discrete value into the conditional vector."""
        if not self.sampler_.n_cols:
            return None
        col, cat = self.sampler_.sample_cond(n, rng, original=True)
        best = np.full(n, np.inf)
        for d, s in enumerate(self.sampler_.spans):
            spec = known.get(s.column)
            if spec is None or "codes" not in spec:
                continue
            mask = spec["mask"]
            local = self.layout_.column_codes(s.column, spec["codes"])
            freq = self.sampler_.cat_count[self.sampler_.offsets[d] + np.clip(local, 0, s.size - 1)]
            take = mask & (freq < best)
            col[take], cat[take], best[take] = d, local[take], freq[take]
        return col, cat

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        lmeta, arrays = self.layout_.state()
        arrays = {f"layout_{k}": v for k, v in arrays.items()}
        arrays.update(module_to_arrays(self.generator_, "gen."))
        s = self.sampler_
        if s.n_cols:
            arrays.update({"cond_cdf_raw": s.cdf_raw, "cond_cdf_log": s.cdf_log, "cond_count": s.cat_count})
        meta = {"layout": lmeta, "training": getattr(self, "training_", None)}
        return meta, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.layout_ = DataLayout.from_state(meta["layout"], {k[7:]: v for k, v in arrays.items() if k.startswith("layout_")},
                                             learned={c.name: c for c in self.codec_.learned})
        s = _CondSampler.__new__(_CondSampler)
        s.spans = self.layout_.discrete_spans
        s.n_cols = len(s.spans)
        s.dim = sum(sp.size for sp in s.spans)
        if s.n_cols:
            s.offsets = np.cumsum([0] + [sp.size for sp in s.spans])[:-1]
            s.cdf_raw, s.cdf_log, s.cat_count = arrays["cond_cdf_raw"], arrays["cond_cdf_log"], arrays["cond_count"]
            width = max(sp.size for sp in s.spans)
            if not (s.cdf_raw.shape == s.cdf_log.shape == (s.n_cols, width) and s.cat_count.shape == (s.dim,)
                    and s.cdf_raw.dtype.kind == s.cdf_log.dtype.kind == "f"
                    and bool(np.isfinite(s.cdf_raw).all() and np.isfinite(s.cdf_log).all())):
                raise ModelFileError(f"model file: arrays 'cond_cdf_raw', 'cond_cdf_log' and 'cond_count' do not fit "
                                     f"the layout ({s.n_cols} discrete columns, {s.dim} categories)")
        self.sampler_ = s
        self.training_ = meta.get("training")
        dev = resolve_device(self.device)

        def make() -> _Generator:
            return _Generator(self.embedding_dim + s.dim, tuple(self.generator_dim), self.layout_.dim_)

        check_module_arrays(make, arrays, "gen.")  # before anything is sized from the header
        self._index(dev)
        self.generator_ = make()
        arrays_to_module(self.generator_, arrays, "gen.").to(dev).eval()
