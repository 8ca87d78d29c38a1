"""Fitting at scale: the autoregressive model trained data-parallel with Ray Train, the copula's
statistics by map-reduce over partitions.

Autoregressive: everything before the weights happens as in a local fit (schema, release guard,
constraints, encoding, tokenizers, the initial weights from the seed); the token table (train and
validation splits as a local fit makes them, in its smallest integer type) is then split into equal
shares, one per Ray Train worker: a share that fits in `CACHE_SHARD_BYTES` goes once through the
object store and the worker trains every epoch from memory (Ray Data's streaming split would start an
executor per fit, seconds for a table this size); larger shares are a Ray Dataset each worker streams
every epoch (`get_dataset_shard`). A TorchTrainer runs DDP (gloo on CPU, NCCL on GPU), one thread per
CPU of a worker, with a per-worker batch of batch_size / workers, so the global step sees the same
batch size as a local fit. Validation loss is summed over all workers (all-reduce), so early stopping
and learning-rate decisions are the same on every rank; rank 0 returns the best weights, which go back
into the model: `save()` writes the same model file as a local fit. Row order within an epoch differs,
so a Ray fit is not bit-identical to a local one; its quality is (tests/test_ray_scale.py). Where
the seconds went (start-up, share read, epochs, hand-back, CPU seconds) is `train_timings_`.

Copula: the correlation of the normal scores is a sum of per-partition cross products
(`partial_correlation_sums`), so it is exact (to float rounding) whatever the partitioning.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from synthloop.runners.base import Runner, RunnerError


def fit_distributed(synth: Any, data: pd.DataFrame, runner: Runner, schema: Any = None,
                    workers: int | None = None, cache_bytes: int | None = None) -> Any:
    """`synth.fit(data, schema)` with its parallel part on `runner`: the autoregressive model's
    training loop on Ray Train (`workers` processes), the copula's correlation by map-reduce; other
    models fit as they do locally. `cache_bytes`: the largest share of the token table a worker
    keeps in memory (default `CACHE_SHARD_BYTES`); larger shares stream from Ray Data each epoch."""
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
        synth, runner, n_workers, tokens, gen, device, start, budget, cache_bytes)
    try:
        return synth.fit(data, schema)
    finally:
        del synth._train_override


# A worker keeps its share of the token table in memory (read from the Ray Dataset once, in the
# table's smallest integer type) when it takes at most this many bytes, and trains every epoch from
# that copy; larger shares are streamed from Ray Data every epoch (tables no worker could hold).
CACHE_SHARD_BYTES = 1 << 30


# Ray Train's controller looks at its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by
# default), so a finished fit waited up to 2 s to be noticed; a quarter second costs nothing here.
# Ray passes these variables from the driver to the controller and workers; a user's own setting wins.
_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ (where not already set) for the duration of the block."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _token_dtype(tokens: np.ndarray) -> np.dtype:
    """The smallest integer type holding every token: 4-8x less to ship and cache than int64."""
    top = int(tokens.max()) if tokens.size else 0
    for dt in (np.uint8, np.int16, np.int32):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _train_on_ray(synth: Any, runner: Runner, n_workers: int, tokens: np.ndarray, gen: Any, device: Any,
                  start: float, budget: float, cache_bytes: int | None = None) -> None:
    import torch

    ray = runner.ray  # type: ignore[attr-defined]
    import ray.data
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t_begin = time.time()
    runner.check_fits(n_workers, getattr(runner, "cpus_per_task", 1), "fit")  # type: ignore[attr-defined]
    mode = getattr(runner, "train_batch", "global")
    if mode not in ("global", "per_worker"):
        raise RunnerError(f"train_batch must be 'global' or 'per_worker', not {mode!r}")
    n = tokens.shape[0]
    perm = torch.randperm(n, generator=gen).numpy()  # the same split as a local fit
    n_val = int(round(n * synth.validation_share)) if n >= 50 else 0
    dtype = _token_dtype(tokens)
    train_tokens = np.ascontiguousarray(tokens[perm[n_val:]], dtype=dtype)
    val_tokens = np.ascontiguousarray(tokens[perm[:n_val]], dtype=dtype)
    rows_per_rank = max(1, (n - n_val) // n_workers)
    cache = rows_per_rank * tokens.shape[1] * dtype.itemsize <= (CACHE_SHARD_BYTES if cache_bytes is None else cache_bytes)
    datasets: dict[str, Any] = {}
    shares: dict[str, list[Any]] = {}
    if cache:
        # each worker's share goes into the object store once and is read by that worker only (zero
        # copy on its node); Ray Data's streaming split would start an executor for a table this small
        shares = {"train": [ray.put(p) for p in np.array_split(train_tokens, n_workers)],
                  "val": [ray.put(p) for p in np.array_split(val_tokens, n_workers)] if n_val >= n_workers else []}
    else:
        datasets["train"] = ray.data.from_numpy(train_tokens)
        if n_val >= n_workers:
            datasets["val"] = ray.data.from_numpy(val_tokens)
    net = synth.net_
    threads = int(synth.n_threads or getattr(runner, "cpus_per_task", 1) or 1)
    local_batch = min(synth.batch_size, synth._mask_rows())
    # "global": the local step split between workers; "per_worker": each worker takes a whole local
    # batch, and the learning rate grows with the square root of the global batch (Adam's usual rule)
    batch = max(1, local_batch // n_workers) if mode == "global" else max(1, local_batch)
    lr_factor = 1.0 if mode == "global" else math.sqrt(n_workers)
    config = {
        "net_args": (synth.vocab_, synth.emb_dim, synth.hidden, synth.n_layers, synth.dropout, synth.ordinal_,
                     synth.input_rank_),
        "init": {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()},
        "slot_col": synth._slot_col, "slot_part": synth._slot_part, "n_columns": len(synth.columns_),
        "fixed_order_share": synth.fixed_order_share, "lr": synth.learning_rate * lr_factor, "wd": synth.weight_decay,
        "batch_size": batch, "train_batch": mode, "epochs": synth.epochs,
        "patience": synth.patience, "cosine": math.isfinite(budget) or synth.lr_schedule == "cosine",
        "budget": budget, "start_wall": time.time() - (time.monotonic() - start),
        "rows_per_rank": rows_per_rank, "cache": cache, "shares": shares,
        "seed": int(torch.randint(0, 2**31 - 1, (1,), generator=gen)), "threads": threads,
    }
    use_gpu = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="synthloop-train-") as storage:
        trainer = TorchTrainer(
            _train_loop, train_loop_config=config, datasets=datasets,
            scaling_config=ScalingConfig(num_workers=n_workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": getattr(runner, "cpus_per_task", 1)}),
            run_config=RunConfig(name="synthloop-autoregressive", storage_path=storage),
        )
        t_fit = time.time()
        try:
            with _env(_TRAIN_ENV):
                result = trainer.fit()
        except Exception as exc:  # noqa: BLE001 - a worker's failure, one line with its cause
            raise RunnerError(f"Ray Train fit failed: {' '.join(str(exc).split())[:300]}") from None
        t_done = time.time()
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
    w = extra.get("timings", {})
    # where the seconds went: the fixed cost (driver set-up, Ray Train start-up, the shard read, the
    # hand-back of the weights) against the epochs; what the benchmark reports beside the totals
    synth.train_timings_ = {
        "driver_setup": round(t_fit - t_begin, 3),
        "start_workers": round(w.get("enter", t_fit) - t_fit, 3),
        "model_ready": round(w.get("model_ready", 0) - w.get("enter", 0), 3),
        "read_shard": round(w.get("data_ready", 0) - w.get("model_ready", 0), 3),
        "epochs": round(w.get("trained", 0) - w.get("data_ready", 0), 3),
        "hand_back": round(time.time() - w.get("trained", t_done), 3),
        "total": round(time.time() - t_begin, 3),
        "cpu_seconds_epochs": w.get("cpu_epochs"), "cached_shard": bool(config["cache"]), "token_dtype": str(dtype),
        # summed over workers: where the epochs' CPU seconds went, and the optimizer steps and samples
        "cpu_split_epochs": w.get("cpu_split"), "steps": w.get("steps"), "samples": w.get("samples"),
        "worker_threads": w.get("threads"), "omp_num_threads": w.get("omp"),
        "train_batch": config["train_batch"], "batch_per_worker": config["batch_size"],
    }


def _train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: DDP over its shard; see the module docstring."""
    t_enter = time.time()
    threads = int(config["threads"])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)  # libraries loaded from here on; torch is told below
    import ray.train
    import torch
    import torch.distributed as dist
    from ray.train.torch import prepare_model
    from torch.nn import functional as F

    from synthloop.synthesizers.autoregressive import _PARTS, _Net, cosine_lr, make_optimizer, train_step

    torch.set_num_threads(threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    net = _Net(*config["net_args"])
    net.load_state_dict({k: torch.as_tensor(v) for k, v in config["init"].items()})
    for p in net.parameters():
        if p.numel() == 0:  # e.g. the middle layers' weights of a one-layer net: never used
            p.requires_grad_(False)
    # every other parameter gets a gradient each step: DDP need not search the graph for unused ones;
    # the buffers (token offsets, masks) never change, so no broadcast of them before every step; the
    # gradients live in DDP's all-reduce buckets (no copy into and out of them after every backward)
    model = prepare_model(net, parallel_strategy_kwargs={"find_unused_parameters": False, "broadcast_buffers": False,
                                                         "gradient_as_bucket_view": True})
    device = next(model.parameters()).device
    t_model = time.time()
    gen = torch.Generator().manual_seed(int(config["seed"]) + rank)
    slot_col = torch.as_tensor(config["slot_col"], device=device)
    slot_part = torch.as_tensor(config["slot_part"], device=device)
    m, share = int(config["n_columns"]), float(config["fixed_order_share"])

    def slot_ranks(b: int) -> torch.Tensor:
        rand = torch.rand(b, m, generator=gen).argsort(dim=1).argsort(dim=1)
        fixed = torch.rand(b, generator=gen) < share
        col_rank = torch.where(fixed[:, None], torch.arange(m).expand(b, m), rand).to(device)
        return col_rank[:, slot_col] * _PARTS + slot_part

    def all_reduce(xs: list[float], op: Any = None) -> list[float]:
        t = torch.tensor(xs, dtype=torch.float64)
        if world > 1:
            dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
        return t.tolist()

    opt = make_optimizer(model.parameters(), config["lr"], config["wd"])
    cache = bool(config["cache"])
    train = val = train_x = val_x = None
    if cache:
        shares = config["shares"]
        train_x = torch.from_numpy(np.array(ray.get(shares["train"][rank])))
        if shares["val"]:
            val = True
            val_x = torch.from_numpy(np.array(ray.get(shares["val"][rank])))
        # every rank takes the same number of steps (DDP needs it): the smallest share
        n_common = int(all_reduce([float(train_x.shape[0])], dist.ReduceOp.MIN if world > 1 else None)[0])
    else:
        train = ray.train.get_dataset_shard("train")
        val = ray.train.get_dataset_shard("val")
        n_common = int(config["rows_per_rank"])
    t_data, cpu_data, thread_data = time.time(), time.process_time(), time.thread_time()
    # this thread's CPU seconds: [forward, backward (with DDP's hooks), optimizer, everything else in
    # the loop: batches, slot orders, learning rate, validation]; the process's other threads (gloo's
    # all-reduce, Ray's own) are the rest of process_time
    split = [0.0, 0.0, 0.0]
    steps = samples = 0
    bs, epochs, budget = int(config["batch_size"]), int(config["epochs"]), float(config["budget"])
    best, best_state, bad, history = math.inf, None, 0, []
    lr_scale = 1.0

    def batches(epoch: int) -> Any:
        if cache:
            order = torch.randperm(train_x.shape[0], generator=gen)[:n_common]
            for i in range(0, n_common, bs):
                yield train_x[order[i:i + bs]].to(device=device, dtype=torch.int64)
            return
        for batch in train.iter_torch_batches(batch_size=bs, dtypes=torch.int64, device=str(device),
                                              local_shuffle_buffer_size=max(bs * 8, 1024),
                                              local_shuffle_seed=int(config["seed"]) + 1000 * epoch + rank):
            yield batch["data"]

    def val_batches() -> Any:
        if cache:
            for i in range(0, val_x.shape[0], 4096):
                yield val_x[i:i + 4096].to(device=device, dtype=torch.int64)
            return
        for batch in val.iter_torch_batches(batch_size=4096, dtypes=torch.int64, device=str(device)):
            yield batch["data"]

    for epoch in range(epochs):
        elapsed = all_reduce([time.time() - config["start_wall"]])[0] / world  # one clock for every rank
        if elapsed > budget:
            break
        model.train()
        total, count = 0.0, 0
        for x in batches(epoch):
            if config["cosine"]:  # the same rate on every rank: from the shared clock and equal shard sizes
                done = max(elapsed / budget if math.isfinite(budget) else 0.0, (epoch + count / max(n_common, 1)) / epochs)
                for grp in opt.param_groups:
                    grp["lr"] = cosine_lr(config["lr"], done)
            else:
                for grp in opt.param_groups:
                    grp["lr"] = config["lr"] * lr_scale
            total += train_step(model, opt, x, slot_ranks(x.shape[0]), split) * x.shape[0]
            count += x.shape[0]
            steps += 1
            samples += x.shape[0]
        total, count = all_reduce([total, count])
        val_loss = math.nan
        if val is not None:
            net.eval()
            vs, vn = 0.0, 0
            with torch.no_grad():
                for x in val_batches():
                    logits = net(x, slot_ranks(x.shape[0]))
                    vs += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.T.reshape(-1), reduction="sum"))
                    vn += x.shape[0]
            vs, vn = all_reduce([vs, vn])
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
    # CPU seconds of the epochs summed over workers (all threads of each process, gloo's included):
    # the work done, which a busy machine's waiting does not inflate as it does wall seconds
    cpu_proc, cpu_thread = time.process_time() - cpu_data, time.thread_time() - thread_data
    sums = all_reduce([cpu_proc, *split, cpu_thread - sum(split), cpu_proc - cpu_thread, float(steps), float(samples)])
    cpu_epochs = sums[0]
    cpu_split = dict(zip(("forward", "backward", "optimizer", "loop_other", "other_threads"), sums[1:6]))
    timings = {"enter": t_enter, "model_ready": t_model, "data_ready": t_data, "trained": time.time(), "cpu_epochs": cpu_epochs,
               "cpu_split": {k: round(v, 3) for k, v in cpu_split.items()}, "steps": int(sums[6]), "samples": int(sums[7]),
               "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS")}
    if rank == 0:
        with tempfile.TemporaryDirectory() as d:
            torch.save({k: v.cpu() for k, v in state.items()}, Path(d) / "model.pt")
            torch.save({"history": history, "best": best, "timings": timings}, Path(d) / "history.pt")
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
