"""DP-SGD for the deep synthesizers, through Opacus (Abadi et al. 2016; Yousefpour et al. 2021).

`make_private(module, optimizer, loader, epsilon=, delta=, epochs=)` returns the wrapped trio plus the
Opacus privacy engine: per-sample gradients are clipped to `max_grad_norm`, Gaussian noise is added,
batches are drawn by Poisson sampling (what the accountant assumes), and the noise multiplier is
calibrated so that `epochs` epochs (plus any zCDP part spent before, `prior_rho`) spend at most
`epsilon` at `delta`. `DPTraining.spent()` is the accountant's figure; `guarantee()` states it.

Noise from the operating system: Opacus' `secure_mode=True` needs `torchcsprng`, which has no release
for current torch (none on PyPI). The engine here gets the same effect by hand: secure mode is on (the
optimizer's noise is the sum of several draws, the floating-point attack defence of Opacus'
`_generate_noise`, and no seeded generator is accepted), and its generator, for the noise and the
Poisson sampling alike, is a `torch.Generator` seeded with 63 bits from `secrets` (OS entropy), never
saved and never derived from `random_state`. Unlike torchcsprng's /dev/urandom device it is a Mersenne
Twister: an attacker would have to recover its state from the trained weights alone.

`n_public`: a noisy row count; when given, the sampling rate, the number of steps and the batch size
Opacus divides by come from it, so that nothing saved (noise multiplier, epsilon) is a function of the
exact row count.

What the guarantee covers: the network's weights, plus the domain when the caller paid for it (see
synthloop.privacy.domain); a synthesizer's transforms must be fitted on public information only.
"""
from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from synthloop.errors import DataError

_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 128, 256, 512]


def _opacus():
    try:
        import opacus
    except ImportError:  # optional extra
        raise DataError("epsilon= needs Opacus for DP-SGD: pip install 'synthloop[dp]'") from None
    return opacus


def os_torch_generator() -> torch.Generator:
    """A CPU torch generator seeded from operating-system entropy (never from a user seed)."""
    return torch.Generator().manual_seed(secrets.randbits(63))


def _engine(accountant: str) -> Any:
    """An Opacus PrivacyEngine in secure mode whose generator is seeded from OS entropy (see module doc)."""
    from opacus import PrivacyEngine

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=accountant, secure_mode=False)
    engine.secure_mode = True
    engine.secure_rng = os_torch_generator()
    return engine


def total_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float, prior_rho: float = 0.0) -> float:
    """Epsilon at `delta` of `steps` sampled Gaussian steps composed with a `prior_rho`-zCDP release
    (zCDP rho is RDP of order a at rho * a), by Opacus' RDP analysis and conversion."""
    import numpy as np
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    rdp = np.asarray(compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=int(steps), orders=_ORDERS))
    eps, _ = get_privacy_spent(orders=_ORDERS, rdp=rdp + prior_rho * np.asarray(_ORDERS), delta=delta)
    return float(eps)


def calibrate(epsilon: float, delta: float, sample_rate: float, steps: int, prior_rho: float = 0.0) -> float:
    """Smallest noise multiplier (to 0.5%) whose training, after `prior_rho`, stays within `epsilon`."""
    if prior_rho > 0 and total_epsilon(1e6, sample_rate, steps, delta, prior_rho) > epsilon:
        raise DataError(f"the domain's share of the budget alone exceeds epsilon={epsilon}; lower domain_share")
    lo, hi = 0.05, 1.0
    while total_epsilon(hi, sample_rate, steps, delta, prior_rho) > epsilon:
        lo, hi = hi, hi * 2
    while hi - lo > 0.005 * hi:
        mid = (lo + hi) / 2
        if total_epsilon(mid, sample_rate, steps, delta, prior_rho) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass
class DPTraining:
    """A module/optimizer/loader made private, with the accountant that tracks their privacy cost."""

    engine: Any
    module: torch.nn.Module
    optimizer: Any
    data_loader: Any
    epsilon: float
    delta: float
    epochs: int
    max_grad_norm: float
    noise_multiplier: float
    accountant: str
    sample_rate: float = 0.0
    steps: int = 0
    prior_rho: float = 0.0
    prior_delta: float = 0.0
    parts: dict[str, Any] = field(default_factory=dict)
    declared: list[str] | None = None  # columns whose domain the user declared public (None: not stated)

    def spent(self) -> float:
        """Epsilon spent so far at `delta`, training and the prior parts together."""
        d = self.delta - self.prior_delta
        if self.prior_rho:
            steps = sum(n for _, _, n in self.engine.accountant.history)
            return total_epsilon(self.noise_multiplier, self.sample_rate, steps, d, self.prior_rho)
        return float(self.engine.get_epsilon(d))

    def guarantee(self, model_name: str = "deep synthesizer", covered: str | None = None) -> dict[str, Any]:
        """A structured statement in the format `synthloop.evaluate.guarantee` reads."""
        eps = self.spent()
        return dp_sgd_guarantee(eps, self.delta, target_epsilon=self.epsilon, noise_multiplier=self.noise_multiplier,
                                max_grad_norm=self.max_grad_norm, accountant=self.accountant, model_name=model_name,
                                covered=covered, parts=self.parts, declared=self.declared)


def dp_sgd_guarantee(epsilon_spent: float, delta: float, target_epsilon: float | None = None,
                     noise_multiplier: float | None = None, max_grad_norm: float | None = None,
                     accountant: str = "rdp", model_name: str = "deep synthesizer",
                     covered: str | None = None, parts: dict[str, Any] | None = None,
                     declared: list[str] | None = None) -> dict[str, Any]:
    """The guarantee dict for a model trained with DP-SGD (also rebuilt from saved figures after load)."""
    from synthloop.privacy.mechanisms import noise_source

    eps = float(epsilon_spent)
    budget = "; budget: " + ", ".join(f"{k.replace('_', ' ')} epsilon {v['epsilon_alone']:.3g} alone"
                                      for k, v in (parts or {}).items()) if parts else ""
    return {
        "differentially_private": True,
        "epsilon": eps, "delta": float(delta), "target_epsilon": target_epsilon,
        "noise_multiplier": noise_multiplier, "max_grad_norm": max_grad_norm,
        "parts": parts or {},
        "mechanism": f"DP-SGD (Opacus) training of the {model_name}: per-row gradient clipping, Gaussian noise, Poisson sampling",
        "noise": "Opacus secure-mode noise from a torch generator seeded with OS entropy (never by random_state)",
        "domain_noise": noise_source(),
        "accounting": f"Opacus {accountant} accountant" + (" (RDP, composed with the domain's zCDP)" if parts else ""),
        "unit": "one row of the source table (neighbouring tables differ by adding or removing one row)",
        "public": covered or ("the schema and the per-column transforms fitted before training (bounds, "
                              "category lists, normalizers); only the network's training is covered"),
        "statement": f"({round(eps, 4)}, {float(delta):g})-DP for the rows of the source table{budget}"
                     + ("" if declared is None else f"; declared public: {', '.join(declared)}" if declared
                        else "; no column declared public"),
    }


def make_private(module: torch.nn.Module, optimizer: torch.optim.Optimizer, data_loader: torch.utils.data.DataLoader,
                 epsilon: float, delta: float, epochs: int, max_grad_norm: float = 1.0, accountant: str = "rdp",
                 n_public: float | None = None, prior_rho: float = 0.0, prior_delta: float = 0.0) -> DPTraining:
    """Wrap for DP-SGD at a target (epsilon, delta) over `epochs` epochs (see module docstring).

    Layers Opacus cannot handle per sample (BatchNorm) are replaced first by `ModuleValidator.fix`;
    pass the returned `module`/`optimizer` on to training (build the optimizer on the fixed module's
    parameters: if a fix was needed, a fresh optimizer of the same class is made here).
    """
    if not epsilon > 0:
        raise DataError(f"epsilon must be > 0 for DP-SGD, got {epsilon}")
    if not 0 < delta < 1:
        raise DataError(f"delta must be in (0, 1), got {delta}")
    _opacus()
    from opacus.data_loader import DPDataLoader
    from opacus.validators import ModuleValidator

    if not ModuleValidator.is_valid(module):
        module = ModuleValidator.fix(module)
        defaults = dict(optimizer.defaults)
        optimizer = type(optimizer)(module.parameters(), **defaults)
    engine = _engine(accountant)
    batch = int(data_loader.batch_size or 1)
    per_epoch = max(1, round(n_public / batch)) if n_public is not None else len(data_loader)
    rate = 1.0 / per_epoch
    steps = int(epochs) * per_epoch
    sigma = calibrate(float(epsilon), float(delta) - prior_delta, rate, steps, prior_rho)
    loader = DPDataLoader(data_loader.dataset, sample_rate=rate, generator=engine.secure_rng)
    loader.batch_sampler.steps = per_epoch  # exactly; int(1 / rate) may round down
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Poisson.*")
        module, optimizer, loader = engine.make_private(
            module=module, optimizer=optimizer, data_loader=loader, noise_multiplier=sigma,
            max_grad_norm=float(max_grad_norm), poisson_sampling=False)
    if n_public is not None:  # Opacus divides by len(dataset) * rate, the exact count; use the public one
        optimizer.expected_batch_size = max(1, round(n_public * rate))
    return DPTraining(engine=engine, module=module, optimizer=optimizer, data_loader=loader, epsilon=float(epsilon),
                      delta=float(delta), epochs=int(epochs), max_grad_norm=float(max_grad_norm),
                      noise_multiplier=float(optimizer.noise_multiplier), accountant=accountant, sample_rate=rate,
                      steps=steps, prior_rho=float(prior_rho), prior_delta=float(prior_delta))


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside Opacus' GradSampleModule (for state_dict saving without `_module.` prefixes)."""
    inner = getattr(module, "_module", None)
    return inner if isinstance(inner, torch.nn.Module) else module


def fit_private(module: torch.nn.Module, loss_fn: Any, data: torch.Tensor, *, epochs: int, batch_size: int,
                learning_rate: float, weight_decay: float, epsilon: float, delta: float, max_grad_norm: float = 1.0,
                n_public: float | None = None, prior_rho: float = 0.0, prior_delta: float = 0.0,
                parts: dict[str, Any] | None = None, declared: list[str] | None = None,
                model_name: str = "deep synthesizer", covered: str | None = None
                ) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Train `module`'s parameters with DP-SGD (Adam) for exactly `epochs` epochs; return (guarantee, history).

    `loss_fn(batch)` returns the mean loss of a batch of rows of `data`; it may call `module`'s
    submodules directly (Opacus hooks sit on the layers). No validation split or early stopping: both
    would look at private rows outside the accountant. Parameters Opacus cannot clip per row must be
    frozen (`requires_grad=False`) before the call. `parts`: the zCDP parts spent before (their rho
    adds up to `prior_rho`, their thresholds' delta to `prior_delta`), stated in the guarantee beside
    the training; `delta` is the total.
    """
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay)
    size = n_public if n_public is not None else len(data)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=int(max(1, min(batch_size, size))))
    dp = make_private(module, opt, loader, epsilon=epsilon, delta=delta, epochs=epochs, max_grad_norm=max_grad_norm,
                      n_public=n_public, prior_rho=prior_rho, prior_delta=prior_delta)
    history: list[dict[str, float]] = []
    warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
    for ep in range(int(epochs)):
        total, steps = 0.0, 0
        for (batch,) in dp.data_loader:  # Poisson-sampled batches (may be empty)
            if len(batch) == 0:
                continue
            loss = loss_fn(batch)
            dp.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            dp.optimizer.step()
            total += float(loss.detach())
            steps += 1
        history.append({"epoch": ep + 1, "loss": total / max(steps, 1), "epsilon": dp.spent()})
    dp.module.zero_grad(set_to_none=True)
    _remove_hooks(dp.module)
    dp.declared = declared
    if parts is not None:
        from synthloop.privacy.accounting import cdp_eps

        dp.parts = {**parts, "training": {
            "epsilon_alone": total_epsilon(dp.noise_multiplier, dp.sample_rate, dp.steps, delta - prior_delta),
            "what": f"DP-SGD: noise multiplier {dp.noise_multiplier:.3g}, sampling rate {dp.sample_rate:.3g}, "
                    f"{dp.steps} steps"}}
        for v in dp.parts.values():
            if "rho" in v and "epsilon_alone" not in v:
                v["epsilon_alone"] = cdp_eps(v["rho"], delta - prior_delta)
    return dp.guarantee(model_name=model_name, covered=covered), history


def _remove_hooks(module: torch.nn.Module) -> None:
    """Leave the trained layers as plain modules (no per-sample hooks, no grad_sample buffers)."""
    remove = getattr(module, "_close", None) or getattr(module, "remove_hooks", None)
    if callable(remove):
        try:
            remove()
        except Exception:  # noqa: BLE001 - a best-effort cleanup; the weights are already trained
            pass
    for p in module.parameters():
        for attr in ("grad_sample", "_forward_counter"):
            if hasattr(p, attr):
                try:
                    delattr(p, attr)
                except AttributeError:
                    pass
