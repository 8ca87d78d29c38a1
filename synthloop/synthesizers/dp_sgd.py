"""DP-SGD for the deep synthesizers, through Opacus (Abadi et al. 2016; Yousefpour et al. 2021).

`make_private(module, optimizer, loader, epsilon=, delta=, epochs=)` returns the wrapped trio plus the
Opacus privacy engine: per-sample gradients are clipped to `max_grad_norm`, Gaussian noise is added,
batches are drawn by Poisson sampling (what the accountant assumes), and the noise multiplier is
calibrated so that `epochs` epochs spend at most `epsilon` at `delta`. After training,
`DPTraining.spent()` asks the accountant for the epsilon actually spent; `guarantee()` states it.

What the guarantee covers: the network's weights. Anything a synthesizer fits on the data outside
the network (column normalizers, category lists, min/max) is not protected unless it comes from a
public schema; `guarantee()` says so.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from synthloop.errors import DataError


def _opacus():
    try:
        import opacus
    except ImportError:  # optional extra
        raise DataError("epsilon= needs Opacus for DP-SGD: pip install 'synthloop[dp]'") from None
    return opacus


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

    def spent(self) -> float:
        """Epsilon spent so far at `delta`, by the accountant (can be below the target if stopped early)."""
        return float(self.engine.get_epsilon(self.delta))

    def guarantee(self, model_name: str = "deep synthesizer", covered: str | None = None) -> dict[str, Any]:
        """A structured statement in the format `synthloop.evaluate.guarantee` reads."""
        eps = self.spent()
        return dp_sgd_guarantee(eps, self.delta, target_epsilon=self.epsilon, noise_multiplier=self.noise_multiplier,
                                max_grad_norm=self.max_grad_norm, accountant=self.accountant, model_name=model_name,
                                covered=covered)


def dp_sgd_guarantee(epsilon_spent: float, delta: float, target_epsilon: float | None = None,
                     noise_multiplier: float | None = None, max_grad_norm: float | None = None,
                     accountant: str = "rdp", model_name: str = "deep synthesizer",
                     covered: str | None = None) -> dict[str, Any]:
    """The guarantee dict for a model trained with DP-SGD (also rebuilt from saved figures after load)."""
    eps = float(epsilon_spent)
    return {
        "differentially_private": True,
        "epsilon": eps, "delta": float(delta), "target_epsilon": target_epsilon,
        "noise_multiplier": noise_multiplier, "max_grad_norm": max_grad_norm,
        "mechanism": f"DP-SGD (Opacus) training of the {model_name}: per-row gradient clipping, Gaussian noise, Poisson sampling",
        "accounting": f"Opacus {accountant} accountant",
        "unit": "one row of the source table (neighbouring tables differ by adding or removing one row)",
        "public": covered or ("the schema and the per-column transforms fitted before training (bounds, "
                              "category lists, normalizers); only the network's training is covered"),
        "statement": f"({round(eps, 4)}, {float(delta):g})-DP for the rows of the source table",
    }


def make_private(module: torch.nn.Module, optimizer: torch.optim.Optimizer, data_loader: torch.utils.data.DataLoader,
                 epsilon: float, delta: float, epochs: int, max_grad_norm: float = 1.0, accountant: str = "rdp",
                 seed: int | None = None) -> DPTraining:
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
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    if not ModuleValidator.is_valid(module):
        module = ModuleValidator.fix(module)
        defaults = dict(optimizer.defaults)
        optimizer = type(optimizer)(module.parameters(), **defaults)
    engine = PrivacyEngine(accountant=accountant, secure_mode=False)
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    module, optimizer, data_loader = engine.make_private_with_epsilon(
        module=module, optimizer=optimizer, data_loader=data_loader, target_epsilon=float(epsilon),
        target_delta=float(delta), epochs=int(epochs), max_grad_norm=float(max_grad_norm), noise_generator=gen)
    return DPTraining(engine=engine, module=module, optimizer=optimizer, data_loader=data_loader, epsilon=float(epsilon),
                      delta=float(delta), epochs=int(epochs), max_grad_norm=float(max_grad_norm),
                      noise_multiplier=float(optimizer.noise_multiplier), accountant=accountant)


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside Opacus' GradSampleModule (for state_dict saving without `_module.` prefixes)."""
    inner = getattr(module, "_module", None)
    return inner if isinstance(inner, torch.nn.Module) else module


def fit_private(module: torch.nn.Module, loss_fn: Any, data: torch.Tensor, *, epochs: int, batch_size: int,
                learning_rate: float, weight_decay: float, epsilon: float, delta: float, max_grad_norm: float = 1.0,
                seed: int | None = None, model_name: str = "deep synthesizer") -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Train `module`'s parameters with DP-SGD (Adam) for exactly `epochs` epochs; return (guarantee, history).

    `loss_fn(batch)` returns the mean loss of a batch of rows of `data`; it may call `module`'s
    submodules directly (Opacus hooks sit on the layers). No validation split or early stopping: both
    would look at private rows outside the accountant. Parameters Opacus cannot clip per row must be
    frozen (`requires_grad=False`) before the call.
    """
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=learning_rate, weight_decay=weight_decay)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=int(min(batch_size, len(data))))
    dp = make_private(module, opt, loader, epsilon=epsilon, delta=delta, epochs=epochs, max_grad_norm=max_grad_norm, seed=seed)
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
    return dp.guarantee(model_name=model_name), history


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
