"""Fitting at scale: the autoregressive model trained data-parallel with Ray Train, the copula's
statistics by map-reduce over partitions.

Autoregressive: everything before the weights happens as in a local fit (schema, release guard,
constraints, encoding, tokenizers, the initial weights from the seed); the token table then becomes
a Ray Dataset (train and validation splits as a local fit makes them), each Ray Train worker reads
its equal share (`get_dataset_shard`), and a TorchTrainer runs DDP (gloo on CPU, NCCL on GPU) with
a per-worker batch of batch_size / workers, so the global step sees the same batch size as a local
fit. Validation loss is summed over all workers (all-reduce), so early stopping and learning-rate
decisions are the same on every rank; rank 0 returns the best weights, which go back into the model:
`save()` writes the same model file as a local fit. Row order within an epoch comes from Ray Data,
so a Ray fit is not bit-identical to a local one; its quality is (tests/test_ray_scale.py).

Copula: the correlation of the normal scores is a sum of per-partition cross products
(`partial_correlation_sums`), so it is exact (to float rounding) whatever the partitioning.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthloop.runners.base import Runner, RunnerError


def fit_distributed(synth: Any, data: pd.DataFrame, runner: Runner, schema: Any = None,
                    workers: int | None = None) -> Any:
    """`synth.fit(data, schema)` with its parallel part on `runner`: the autoregressive model's
    training loop on Ray Train (`workers` processes), the copula's correlation by map-reduce; other
    models fit as they do locally."""
    if not getattr(runner, "distributed", False):
        return synth.fit(data, schema)
    if synth.name == "copula":
        synth._correlation_override = lambda z, valid: mapreduce_correlation(z, _valid_matrix(z, valid), runner)
        try:
            return synth.fit(data, schema)
        finally:
            del synth._correlation_override
    if synth.name != "autoregressive":
        return synth.fit(data, schema)
    n_workers = int(workers or runner.workers)
    synth._train_override = lambda tokens, gen, device, start, budget: _train_on_ray(
        synth, runner, n_workers, tokens, gen, device, start, budget)
    try:
        return synth.fit(data, schema)
    finally:
        del synth._train_override


def _train_on_ray(synth: Any, runner: Runner, n_workers: int, tokens: np.ndarray, gen: Any, device: Any,
                  start: float, budget: float) -> None:
    import torch

    ray = runner.ray  # type: ignore[attr-defined]
    import ray.data
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    runner.check_fits(n_workers, getattr(runner, "cpus_per_task", 1), "fit")  # type: ignore[attr-defined]
    n = tokens.shape[0]
    perm = torch.randperm(n, generator=gen).numpy()  # the same split as a local fit
    n_val = int(round(n * synth.validation_share)) if n >= 50 else 0
    train_ds = ray.data.from_numpy(np.ascontiguousarray(tokens[perm[n_val:]]))
    datasets = {"train": train_ds}
    if n_val >= n_workers:
        datasets["val"] = ray.data.from_numpy(np.ascontiguousarray(tokens[perm[:n_val]]))
    net = synth.net_
    config = {
        "net_args": (synth.vocab_, synth.emb_dim, synth.hidden, synth.n_layers, synth.dropout, synth.ordinal_,
                     synth.input_rank_),
        "init": {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
        "slot_col": synth._slot_col, "slot_part": synth._slot_part, "n_columns": len(synth.columns_),
        "fixed_order_share": synth.fixed_order_share, "lr": synth.learning_rate, "wd": synth.weight_decay,
        "batch_size": max(1, min(synth.batch_size, synth._mask_rows()) // n_workers), "epochs": synth.epochs,
        "patience": synth.patience, "cosine": math.isfinite(budget) or synth.lr_schedule == "cosine",
        "budget": budget, "start_wall": time.time() - (time.monotonic() - start),
        "rows_per_rank": max(1, (n - n_val) // n_workers),
        "seed": int(torch.randint(0, 2**31 - 1, (1,), generator=gen)), "threads": synth.n_threads or 1,
    }
    use_gpu = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="synthloop-train-") as storage:
        trainer = TorchTrainer(
            _train_loop, train_loop_config=config, datasets=datasets,
            scaling_config=ScalingConfig(num_workers=n_workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": getattr(runner, "cpus_per_task", 1)}),
            run_config=RunConfig(name="synthloop-autoregressive", storage_path=storage),
        )
        try:
            result = trainer.fit()
        except Exception as exc:  # noqa: BLE001 - a worker's failure, one line with its cause
            raise RunnerError(f"Ray Train fit failed: {' '.join(str(exc).split())[:300]}") from None
        ckpt = result.checkpoint
        if ckpt is None:
            raise RunnerError("Ray Train finished without returning the weights (no checkpoint)")
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "model.pt", weights_only=True)
            extra = torch.load(Path(d) / "history.pt", weights_only=False)
    net.load_state_dict(state)
    synth.history_ = extra["history"]
    synth.best_val_loss_ = float(extra["best"])
    synth.train_workers_ = n_workers


def _train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: DDP over its shard; see the module docstring."""
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import prepare_model
    from torch.nn import functional as F

    from synthloop.synthesizers.autoregressive import _PARTS, _Net, cosine_lr, train_step

    torch.set_num_threads(int(config["threads"]))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    net = _Net(*config["net_args"])
    net.load_state_dict({k: torch.as_tensor(v) for k, v in config["init"].items()})
    model = prepare_model(net, parallel_strategy_kwargs={"find_unused_parameters": True})
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(config["seed"]) + rank)
    slot_col = torch.as_tensor(config["slot_col"], device=device)
    slot_part = torch.as_tensor(config["slot_part"], device=device)
    m, share = int(config["n_columns"]), float(config["fixed_order_share"])

    def slot_ranks(b: int) -> torch.Tensor:
        rand = torch.rand(b, m, generator=gen).argsort(dim=1).argsort(dim=1)
        fixed = torch.rand(b, generator=gen) < share
        col_rank = torch.where(fixed[:, None], torch.arange(m).expand(b, m), rand).to(device)
        return col_rank[:, slot_col] * _PARTS + slot_part

    def all_sum(*xs: float) -> list[float]:
        t = torch.tensor(xs, dtype=torch.float64)
        if world > 1:
            dist.all_reduce(t)
        return t.tolist()

    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["wd"])
    train = ray.train.get_dataset_shard("train")
    val = ray.train.get_dataset_shard("val")
    bs, epochs, budget = int(config["batch_size"]), int(config["epochs"]), float(config["budget"])
    best, best_state, bad, history = math.inf, None, 0, []
    lr_scale = 1.0
    for epoch in range(epochs):
        elapsed = all_sum(time.time() - config["start_wall"])[0] / world  # one clock for every rank
        if elapsed > budget:
            break
        model.train()
        total, count = 0.0, 0
        for batch in train.iter_torch_batches(batch_size=bs, dtypes=torch.int64, device=str(device),
                                              local_shuffle_buffer_size=max(bs * 8, 1024),
                                              local_shuffle_seed=int(config["seed"]) + 1000 * epoch + rank):
            x = batch["data"]
            if config["cosine"]:  # the same rate on every rank: from the shared clock and equal shard sizes
                done = max(elapsed / budget if math.isfinite(budget) else 0.0, (epoch + count / config["rows_per_rank"]) / epochs)
                for grp in opt.param_groups:
                    grp["lr"] = cosine_lr(config["lr"], done)
            else:
                for grp in opt.param_groups:
                    grp["lr"] = config["lr"] * lr_scale
            total += train_step(model, opt, x, slot_ranks(x.shape[0])) * x.shape[0]
            count += x.shape[0]
        total, count = all_sum(total, count)
        val_loss = math.nan
        if val is not None:
            net.eval()
            vs, vn = 0.0, 0
            with torch.no_grad():
                for batch in val.iter_torch_batches(batch_size=4096, dtypes=torch.int64, device=str(device)):
                    x = batch["data"]
                    logits = net(x, slot_ranks(x.shape[0]))
                    vs += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.T.reshape(-1), reduction="sum"))
                    vn += x.shape[0]
            vs, vn = all_sum(vs, vn)
            val_loss = vs / max(vn, 1)
        history.append({"epoch": epoch + 1, "train_loss": total / max(count, 1), "val_loss": val_loss,
                        "seconds": time.time() - config["start_wall"]})
        stop = False
        if math.isfinite(val_loss):
            if val_loss < best - 1e-4:
                best, bad = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad == max(1, config["patience"] // 2) and not config["cosine"]:
                    lr_scale *= 0.5
                half = (epoch + 1) / epochs >= 0.5
                stop = bad >= config["patience"] and (half or not config["cosine"])
        if stop:
            break
    state = best_state if best_state is not None else net.state_dict()
    if rank == 0:
        with tempfile.TemporaryDirectory() as d:
            torch.save({k: v.cpu() for k, v in state.items()}, Path(d) / "model.pt")
            torch.save({"history": history, "best": best}, Path(d) / "history.pt")
            ray.train.report({"best_val_loss": best, "epochs": len(history)},
                             checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report({"best_val_loss": best, "epochs": len(history)})


# -- copula statistics by map-reduce ------------------------------------------------------------
def partial_correlation_sums(z: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One partition's (cross, sq) of `_pairwise_correlation`: sums over rows, so they add up."""
    zm = z * valid
    return zm.T @ zm, (zm * z).T @ valid


def correlation_from_sums(cross: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """The pairwise correlation from the summed (cross, sq) of every partition."""
    denom = np.sqrt(sq * sq.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, cross / denom, 0.0)
    return np.clip(corr, -1.0, 1.0)


def _valid_matrix(z: np.ndarray, valid: dict[int, np.ndarray]) -> np.ndarray:
    m = np.ones(z.shape)
    for j, mask in valid.items():
        m[:, j] = mask
    return m


def _partition_sums(_: Any, part: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return partial_correlation_sums(*part)


def mapreduce_correlation(z: np.ndarray, valid: np.ndarray, runner: Runner, partitions: int | None = None) -> np.ndarray:
    """The copula's correlation of scores `z` (rows x latents; `valid` marks observed values)
    computed as a sum over row partitions on `runner` (map: per-partition sums, reduce: add)."""
    k = max(1, partitions or runner.workers)
    parts = [(z[s], valid[s]) for s in np.array_split(np.arange(z.shape[0]), k) if len(s)]
    cross = sq = None
    for c, s in runner.map(_partition_sums, parts):
        cross, sq = (c, s) if cross is None else (cross + c, sq + s)
    if cross is None or z.shape[0] < 2:
        return np.eye(z.shape[1])
    return correlation_from_sums(cross, sq)
