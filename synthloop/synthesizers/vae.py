"""Tabular VAE in the TVAE family (Xu et al. 2019).

Same data representation as the GAN (mode-specific normalization + one-hot). The encoder maps a
row to a Gaussian posterior; the decoder outputs tanh scalars with a learned noise scale per
scalar and logits per one-hot block. Training minimizes the negative ELBO; the validation split's
ELBO picks the best epoch and drives early stopping. Sampling decodes prior draws, adds the
learned scalar noise and draws each one-hot block from its softmax. Conditions: bounded rejection,
then the conditioned values are imposed on rows still unmatched (with a warning).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from synthloop.synthesizers._torch import (
    DataLayout, TrainingLoop, arrays_to_module, check_module_arrays, module_to_arrays, resolve_device, split_validation,
    torch_seed,
    torch_threads,
)
from synthloop.synthesizers._conditional import RejectionSamplingMixin
from synthloop.synthesizers._release import ReleaseGuardMixin
from synthloop.synthesizers.base import BaseSynthesizer


def _mlp(d: int, dims: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for h in dims:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    return nn.Sequential(*layers), d


class _Encoder(nn.Module):
    def __init__(self, data_dim: int, dims: tuple[int, ...], emb: int):
        super().__init__()
        self.seq, d = _mlp(data_dim, dims)
        self.mu = nn.Linear(d, emb)
        self.logvar = nn.Linear(d, emb)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.seq(x)
        return self.mu(h), self.logvar(h)


class _Decoder(nn.Module):
    def __init__(self, emb: int, dims: tuple[int, ...], data_dim: int):
        super().__init__()
        seq, d = _mlp(emb, dims)
        self.seq = nn.Sequential(*seq, nn.Linear(d, data_dim))
        self.sigma = nn.Parameter(torch.ones(data_dim) * 0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.seq(z)


class VAESynthesizer(RejectionSamplingMixin, ReleaseGuardMixin, BaseSynthesizer):
    """TVAE-style variational autoencoder. `epochs`/`max_seconds` bound training; `random_state` seeds it."""

    name = "vae"

    def __init__(self, epochs: int = 300, max_seconds: float | None = None, batch_size: int = 500,
                 embedding_dim: int = 128, compress_dims: tuple[int, ...] = (128, 128),
                 decompress_dims: tuple[int, ...] = (128, 128), learning_rate: float = 1e-3,
                 weight_decay: float = 1e-5, loss_factor: float = 2.0, max_modes: int = 10,
                 validation_share: float = 0.1, patience: int | None = 20, device: str = "auto", n_threads: int | None = 1,
                 random_state: int | None = 0, verbose: bool = False, max_condition_rounds: int = 20,
                 epsilon: float | None = None, delta: float = 1e-6, max_grad_norm: float = 1.0,
                 domain: str = "dp", domain_share: float = 0.1, privacy_k: int = 5, rare_label: Any = "other",
                 schema: Any = None):
        self.epochs = epochs
        self.max_seconds = max_seconds
        self.batch_size = batch_size
        self.embedding_dim = embedding_dim
        self.compress_dims = compress_dims
        self.decompress_dims = decompress_dims
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.loss_factor = loss_factor
        self.max_modes = max_modes
        self.validation_share = validation_share
        self.patience = patience
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.max_condition_rounds = max_condition_rounds
        self.epsilon = epsilon  # DP-SGD target (None = no DP); delta and per-row clipping norm below
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.domain = domain  # with epsilon: "dp" pays for the undeclared domain (domain_share), "public" refuses it
        self.domain_share = domain_share
        self.privacy_k = privacy_k  # release guard (synthloop.transforms.release); DP-SGD fits own their domain
        self.rare_label = rare_label
        self.schema = schema

    # -- DP: the domain is public or paid for (synthloop.privacy.domain) ---------------------------
    @property
    def _encode_options(self) -> dict[str, Any]:  # type: ignore[override]
        return {"strict": False, "unknown": -2} if self.epsilon is not None else {}

    def _release(self, schema: Any, data: Any) -> tuple[Any, Any]:
        """Without epsilon: the release guard (ReleaseGuardMixin). With it: the domain public or paid for."""
        if self.epsilon is None:
            return super()._release(schema, data)
        from synthloop.errors import DataError
        from synthloop.privacy import domain as dp_domain
        from synthloop.privacy.accounting import Budget

        if self.domain not in ("dp", "public"):
            raise DataError(f"domain must be 'dp' (estimate it under DP) or 'public' (declared in the schema), got {self.domain!r}")
        share = float(self.domain_share) if self.domain == "dp" else 0.0
        if not 0 <= share < 1:
            raise DataError(f"domain_share must be in [0, 1), got {self.domain_share}")
        plan = dp_domain.plan(schema)
        if plan and not share > 0:
            how = "domain='public'" if self.domain == "public" else "domain_share=0"
            dp_domain.refuse_undeclared(schema, type(self).__name__, f"{how} spends no budget on it")
        thresholds = any(q in ("categories", "id_pattern") for _, q in plan)
        budget = Budget(float(self.epsilon), float(self.delta),
                        threshold_delta_share=dp_domain.THRESHOLD_DELTA_SHARE if thresholds else 0.0)
        # all public: only the row count (the sampling rate of DP-SGD) is paid for, from 1% of the budget
        rho = (share if plan else 0.01) * budget.rho
        self.domain_ = dp_domain.release_domain(schema, data, rho, budget.delta_threshold, count_rows=True)
        budget.spend("domain", rho, self.domain_.delta,
                     note="bounds, categories, decimals, missing shares, id patterns, row count" if plan else "row count")
        self.budget_ = budget
        return self.domain_.schema, data

    def _public_rows(self, encoded: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Rows inside the released domain (numbers clipped to it; a row with a category or null the domain
        lacks is left out, a rule that reads one row at a time) and a public pseudo-table to fit the layout on."""
        from synthloop.schema import ColumnKind

        n = len(next(iter(encoded.values()))) if encoded else 0
        keep = np.ones(n, bool)
        out: dict[str, np.ndarray] = {}
        pseudo: dict[str, np.ndarray] = {}
        prng = np.random.default_rng(0)  # the pseudo-table is a function of the released schema alone
        m = 4000
        for col in self.codec_.learned:
            x = encoded[col.name]
            nulls = prng.random(m) < max(col.missing_share, 1.0 / m if col.missing_share > 0 else 0.0)
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                keep &= (x >= 0) | ((x == -1) & (col.missing_share > 0))
                k = len(col.categories or [])
                p = prng.integers(0, max(k, 1), m) if k else np.full(m, -1)
                pseudo[col.name] = np.where(nulls, -1, p)
                out[col.name] = x
            else:
                lo, hi = col.min, col.max
                keep &= ~np.isnan(x) | (col.missing_share > 0)
                out[col.name] = np.clip(x, lo, hi) if lo is not None else x
                u = prng.uniform(lo if lo is not None else 0.0, hi if hi is not None else 1.0, m)
                pseudo[col.name] = np.where(nulls, np.nan, np.round(u, col.decimals) if col.decimals is not None else u)
        return {k: v[keep] for k, v in out.items()}, pseudo

    def _index(self) -> None:
        """Positions of the tanh scalars and of each one-hot block (for a vectorized loss)."""
        spans = self.layout_.spans_
        self.alpha_pos_ = np.array([s.start for s in spans if s.kind == "alpha"], dtype=np.int64)
        blocks = [s for s in spans if s.kind != "alpha"]
        width = max((s.size for s in blocks), default=1)
        gather = np.full((len(blocks), width), self.layout_.dim_, dtype=np.int64)  # padding -> a -inf column
        for b, s in enumerate(blocks):
            gather[b, :s.size] = np.arange(s.start, s.start + s.size)
        self.gather_ = gather

    def _loss(self, dec: _Decoder, enc: _Encoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL) per row, averaged (TVAE's loss with `loss_factor`)."""
        mu, logvar = enc(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = dec(z)
        b = x.shape[0]
        terms = x.new_zeros(())
        if self.alpha_pos_.size:
            a = torch.from_numpy(self.alpha_pos_).to(x.device)
            sig = dec.sigma[a]
            terms = terms + (((x[:, a] - torch.tanh(rec[:, a])) ** 2) / (2 * sig ** 2)).sum() + torch.log(sig).sum() * b
        if self.gather_.size:  # every one-hot block at once: padded logits, one log-softmax
            g = torch.from_numpy(self.gather_).to(x.device)
            logits = torch.cat([rec, rec.new_full((b, 1), float("-inf"))], dim=1)[:, g]
            target = torch.cat([x, x.new_zeros((b, 1))], dim=1)[:, g]
            terms = terms - (torch.log_softmax(logits, dim=-1).masked_fill(target == 0, 0.0) * target).sum()
        kld = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())
        return terms * self.loss_factor / b, kld / b

    # -- fit --------------------------------------------------------------------------------------
    def _fit(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        with torch_threads(self.n_threads):
            self._fit_impl(encoded, rng)

    def _fit_impl(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        encoded = self._clip_released(encoded)
        dev = resolve_device(self.device)
        seed = int(rng.integers(2**31))
        private = self.epsilon is not None
        if private:  # the layout is fitted on a public pseudo-table, training sees rows inside the domain
            encoded, pseudo = self._public_rows(encoded)
            self.n_rows_ = max(int(round(self.domain_.n_hat)), 1)  # the exact count is private
        n = len(next(iter(encoded.values()))) if encoded else 0
        train_idx, val_idx = split_validation(n, self.validation_share if not private else 0.0, rng)
        self.layout_ = DataLayout(self.max_modes, random_state=seed).fit(
            pseudo if private else {k: v[train_idx] for k, v in encoded.items()}, self.codec_.learned, rng)
        self._index()
        data = self.layout_.transform({k: v[train_idx] for k, v in encoded.items()}, rng)
        val = self.layout_.transform({k: v[val_idx] for k, v in encoded.items()}, rng) if val_idx.size else None
        bs = int(min(self.batch_size, len(data)))
        with torch_seed(seed, dev):
            enc = _Encoder(self.layout_.dim_, tuple(self.compress_dims), self.embedding_dim).to(dev)
            self.decoder_ = dec = _Decoder(self.embedding_dim, tuple(self.decompress_dims), self.layout_.dim_).to(dev)
            opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=self.learning_rate, weight_decay=self.weight_decay)
            data_t = torch.from_numpy(data).to(dev)
            val_t = torch.from_numpy(val).to(dev) if val is not None else None
            if self.epsilon is not None:  # DP-SGD (synthloop.synthesizers.dp_sgd): all rows, fixed epochs, no early stopping
                from synthloop.synthesizers.dp_sgd import fit_private
                dec.sigma.requires_grad_(False)  # Opacus clips per-row gradients of standard layers only
                dom = self.domain_
                parts = {"domain": {"rho": rho, "what": self.budget_.notes.get("domain", "")}
                         for rho in [self.budget_.spent.get("domain", 0.0)]}
                covered = ("column names, kinds and formats (dtype, datetime format, PII type)"
                           + (f"; declared public: {', '.join(dom.public)}" if dom.public else "; no column declared public"))
                self.privacy_, self.history_ = fit_private(
                    nn.ModuleDict({"enc": enc, "dec": dec}), lambda b: sum(self._loss(dec, enc, b)), data_t,
                    epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                    weight_decay=self.weight_decay, epsilon=self.epsilon, delta=self.delta,
                    max_grad_norm=self.max_grad_norm, n_public=dom.n_hat, prior_rho=parts["domain"]["rho"],
                    prior_delta=self.budget_.delta_spent, parts=parts, declared=list(dom.public), model_name="VAE",
                    covered=covered)
                self.privacy_["domain"] = {"mode": self.domain, "public": list(dom.public), "estimated": sorted(dom.estimated),
                                           "share": float(self.domain_share) if self.domain == "dp" else 0.0}
                self.training_ = {"epochs": self.epochs, "dp_sgd": True}
                dec.eval()
                return

            def epoch(_: int) -> float:
                enc.train()
                dec.train()
                perm = torch.randperm(len(data_t), device=dev)
                total, steps = 0.0, 0
                for lo in range(0, len(data_t), bs):
                    rec, kld = self._loss(dec, enc, data_t[perm[lo:lo + bs]])
                    loss = rec + kld
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    dec.sigma.data.clamp_(0.01, 1.0)
                    total += float(loss.detach())
                    steps += 1
                return total / max(steps, 1)

            @torch.no_grad()
            def score() -> float:
                enc.eval()
                dec.eval()
                tot = 0.0
                for lo in range(0, len(val_t), 4096):
                    rec, kld = self._loss(dec, enc, val_t[lo:lo + 4096])
                    tot += float(rec + kld) * min(4096, len(val_t) - lo)
                return tot / len(val_t)

            loop = TrainingLoop(self.epochs, self.max_seconds, self.patience, self.verbose, f"{self.name} fit")
            self.training_ = loop.run(epoch, score if val_t is not None else None, (enc, dec))
            self.history_ = loop.history
        dec.eval()

    # -- sample -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _generate(self, n: int, rng: np.random.Generator, cond: Any = None) -> dict[str, np.ndarray]:
        dec = self.decoder_
        dev = next(dec.parameters()).device
        gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**63)))
        parts = [dec(torch.randn(min(4096, n - lo), self.embedding_dim, generator=gen).to(dev)).cpu().numpy()
                 for lo in range(0, n, 4096)]
        raw = np.concatenate(parts) if parts else np.zeros((0, self.layout_.dim_), dtype=np.float32)
        if self.alpha_pos_.size:
            sig = dec.sigma.detach().cpu().numpy()[self.alpha_pos_]
            raw[:, self.alpha_pos_] = np.clip(np.tanh(raw[:, self.alpha_pos_]) + rng.standard_normal((n, sig.size)) * sig, -1, 1)
            raw[:, self.alpha_pos_] = np.arctanh(np.clip(raw[:, self.alpha_pos_], -0.999999, 0.999999))
        return self.layout_.inverse(raw, [c.name for c in self.codec_.learned], rng, logits=True)

    def privacy_guarantee(self) -> dict[str, Any] | None:
        """DP-SGD's guarantee when fitted with `epsilon` (read by synthloop.evaluate.guarantee), else None."""
        return getattr(self, "privacy_", None)

    # -- persistence ------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        lmeta, arrays = self.layout_.state()
        arrays = {f"layout_{k}": v for k, v in arrays.items()}
        arrays.update(module_to_arrays(self.decoder_, "dec."))
        return {"layout": lmeta, "training": getattr(self, "training_", None), "privacy": getattr(self, "privacy_", None)}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.layout_ = DataLayout.from_state(meta["layout"], {k[7:]: v for k, v in arrays.items() if k.startswith("layout_")},
                                             learned={c.name: c for c in self.codec_.learned})
        self.training_ = meta.get("training")
        self.privacy_ = meta.get("privacy")

        def make() -> _Decoder:
            return _Decoder(self.embedding_dim, tuple(self.decompress_dims), self.layout_.dim_)

        check_module_arrays(make, arrays, "dec.")  # before anything is sized from the header
        self._index()
        self.decoder_ = make()
        arrays_to_module(self.decoder_, arrays, "dec.").to(resolve_device(self.device)).eval()
