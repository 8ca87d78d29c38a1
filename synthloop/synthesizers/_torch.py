"""Torch plumbing shared by the deep synthesizers (GAN, VAE, autoregressive).

- `resolve_device("auto")`: CUDA when available, else CPU.
- `torch_seed(seed)`: a forked RNG scope so fitting is reproducible on CPU without touching the
  caller's global torch RNG state.
- `TrainingLoop`: epochs, `max_seconds` budget, early stopping on a validation score (keeps the best
  weights), and a rich progress bar showing epoch and loss.
- `module_to_arrays` / `arrays_to_module`: a `state_dict` as plain NumPy arrays, so models save in the
  base class's `.npz` + JSON format (never pickle).
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from synthloop.errors import SynthloopError


def resolve_device(device: str | None) -> torch.device:
    """`"auto"` -> CUDA if available else CPU; anything else is passed to torch (clear error if bad)."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise SynthloopError(f"device={device!r} is not a torch device ({exc}); use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SynthloopError(f"device={device!r} asked for CUDA but torch sees no GPU here; use device='auto' or 'cpu'")
    return dev


@contextlib.contextmanager
def torch_seed(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch inside a forked RNG scope (CPU, and the current GPU when used)."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def module_to_arrays(module: nn.Module, prefix: str) -> dict[str, np.ndarray]:
    """`state_dict` -> {prefix + key: float/int numpy array} (CPU copies)."""
    return {f"{prefix}{k}": v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def check_module_arrays(factory: Callable[[], nn.Module], arrays: dict[str, np.ndarray], prefix: str) -> None:
    """Refuse saved weights that do not fit the network the parameters describe, before building it:
    the network is first built on torch's meta device (no memory), so a model file whose header asks
    for a huge network fails here with one line instead of allocating it."""
    from synthloop.errors import ModelFileError

    with torch.device("meta"):
        probe = factory()
    want = {k: (tuple(v.shape), v.dtype) for k, v in probe.state_dict().items()}
    got = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    for key, (shape, dtype) in want.items():
        a = got.get(key)
        if a is None:
            raise ModelFileError(f"model file: array '{prefix}{key}' is missing")
        if tuple(a.shape) != shape:
            raise ModelFileError(f"model file: array '{prefix}{key}' has shape {tuple(a.shape)}; the network the "
                                 f"header's parameters describe needs {shape}")
        if torch.from_numpy(np.zeros(0, dtype=a.dtype)).dtype != dtype:
            raise ModelFileError(f"model file: array '{prefix}{key}' is {a.dtype}; the network stores {dtype}")
    extra = sorted(set(got) - set(want))
    if extra:
        raise ModelFileError(f"model file: unexpected array '{prefix}{extra[0]}'")


def arrays_to_module(module: nn.Module, arrays: dict[str, np.ndarray], prefix: str) -> nn.Module:
    """Load the arrays written by `module_to_arrays` back into `module` (strict: all keys must match)."""
    state = {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)
    return module


def snapshot(*modules: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Deep copies of the modules' weights (to restore the best epoch later)."""
    return [copy.deepcopy(m.state_dict()) for m in modules]


@dataclass
class TrainingLoop:
    """Run `epoch_fn()` (returns the train loss) up to `epochs` times or `max_seconds`.

    After each epoch `score_fn()` (lower is better) is evaluated on held-out data; the best weights
    are kept and training stops after `patience` epochs without improvement.
    """

    epochs: int
    max_seconds: float | None = None
    patience: int | None = None
    verbose: bool = True
    description: str = "training"
    history: list[dict[str, float]] = field(default_factory=list)

    def run(self, epoch_fn: Callable[[int], float], score_fn: Callable[[], float] | None,
            modules: tuple[nn.Module, ...]) -> dict[str, Any]:
        if self.epochs < 1:
            raise SynthloopError(f"epochs={self.epochs}: need at least 1 epoch")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise SynthloopError(f"max_seconds={self.max_seconds}: the time budget must be positive")
        start = time.perf_counter()
        best, best_state, best_epoch, stale = np.inf, None, -1, 0
        stopped = "epochs"
        progress = _progress(self.verbose)
        with progress:
            task = progress.add_task(self.description, total=self.epochs, loss=float("nan"), val=float("nan"))
            for epoch in range(self.epochs):
                loss = float(epoch_fn(epoch))
                val = float(score_fn()) if score_fn is not None else float("nan")
                self.history.append({"epoch": epoch + 1, "loss": loss, "val": val,
                                     "seconds": time.perf_counter() - start})
                progress.update(task, advance=1, loss=loss, val=val)
                if score_fn is not None and np.isfinite(val):
                    if val < best - 1e-6:
                        best, best_epoch, stale = val, epoch, 0
                        best_state = snapshot(*modules)
                    else:
                        stale += 1
                    if self.patience is not None and stale >= self.patience:
                        stopped = "early_stopping"
                        break
                if self.max_seconds is not None and time.perf_counter() - start >= self.max_seconds:
                    stopped = "max_seconds"
                    break
        if best_state is not None:
            for m, s in zip(modules, best_state):
                m.load_state_dict(s)
        return {"epochs_run": len(self.history), "best_epoch": best_epoch + 1, "best_val": best if np.isfinite(best) else None,
                "stopped": stopped, "seconds": time.perf_counter() - start}


def _progress(verbose: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs"),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("val {task.fields[val]:.4f}"), TimeElapsedColumn(),
        disable=not verbose, transient=False,
    )


def split_validation(n: int, share: float, rng: np.random.Generator, min_rows: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation); no validation split for tiny tables or share 0."""
    n_val = int(round(n * share))
    if share <= 0 or n_val < min_rows or n - n_val < min_rows:
        return np.arange(n), np.arange(0)
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# -- the float matrix the deep models learn ---------------------------------------------------------
@dataclass
class Span:
    """A block of the data matrix: a column's alpha (`tanh`) or its one-hot modes/categories (`softmax`)."""

    column: str
    kind: str  # "alpha" | "mode" | "category"
    start: int
    size: int


class DataLayout:
    """The codec's arrays <-> one float32 matrix (CTGAN/TVAE representation).

    Numerical/datetime columns: mode-specific normalization (alpha + mode one-hot, nulls a mode of
    their own). Categorical/boolean columns: one-hot, missing (-1) as one more category when seen.
    """

    def __init__(self, max_modes: int = 10, max_fit_rows: int = 5000, random_state: int = 0):
        self.max_modes = max_modes
        self.max_fit_rows = max_fit_rows
        self.random_state = random_state

    def fit(self, encoded: dict[str, np.ndarray], columns: list[Any], rng: np.random.Generator) -> "DataLayout":
        from synthloop.schema import ColumnKind
        from synthloop.transforms.mode_normalizer import ModeSpecificNormalizer

        self.columns_: list[dict[str, Any]] = []
        self.normalizers_: dict[str, ModeSpecificNormalizer] = {}
        self.spans_: list[Span] = []
        pos = 0
        for col in columns:
            x = encoded[col.name]
            if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                k = len(col.categories or [])
                has_missing = bool((x < 0).any())
                size = k + has_missing
                if size == 0:
                    continue
                self.columns_.append({"name": col.name, "type": "discrete", "k": k, "missing": has_missing})
                self.spans_.append(Span(col.name, "category", pos, size))
                pos += size
            else:
                if np.isnan(x).all():
                    continue
                norm = ModeSpecificNormalizer(self.max_modes, max_fit_rows=self.max_fit_rows,
                                              random_state=self.random_state).fit(x, rng)
                self.normalizers_[col.name] = norm
                self.columns_.append({"name": col.name, "type": "continuous"})
                self.spans_.append(Span(col.name, "alpha", pos, 1))
                self.spans_.append(Span(col.name, "mode", pos + 1, norm.n_modes_))
                pos += 1 + norm.n_modes_
        self.dim_ = pos
        return self

    @property
    def discrete_spans(self) -> list[Span]:
        return [s for s in self.spans_ if s.kind == "category"]

    def column_codes(self, name: str, codes: np.ndarray) -> np.ndarray:
        """Codec codes (-1 missing) -> one-hot positions within the column's span."""
        info = next(c for c in self.columns_ if c["name"] == name)
        return np.where(codes < 0, info["k"], codes).astype(np.int64)

    def transform(self, encoded: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        n = len(next(iter(encoded.values()))) if encoded else 0
        out = np.zeros((n, self.dim_), dtype=np.float32)
        for info, span in zip(self.columns_, [s for s in self.spans_ if s.kind != "mode"]):
            x = encoded[info["name"]]
            if info["type"] == "discrete":
                out[np.arange(n), span.start + self.column_codes(info["name"], x)] = 1.0
            else:
                block = self.normalizers_[info["name"]].transform_onehot(x, rng)
                out[:, span.start:span.start + block.shape[1]] = block
        return out

    def inverse(self, matrix: np.ndarray, n_columns: list[str], rng: np.random.Generator | None = None,
                logits: bool = False) -> dict[str, np.ndarray]:
        """Matrix (activated, or raw logits with `logits=True` and `rng` to sample categories) -> codec
        arrays for the layout's columns; `n_columns` are all learned column names (absent ones -> NaN)."""
        n = matrix.shape[0]
        out: dict[str, np.ndarray] = {}
        alpha: dict[str, np.ndarray] = {}
        for span in self.spans_:
            block = matrix[:, span.start:span.start + span.size]
            if span.kind == "alpha":
                alpha[span.column] = np.tanh(block[:, 0]) if logits else block[:, 0]
                continue
            idx = sample_rows(block, rng) if (logits and rng is not None) else block.argmax(axis=1)
            if span.kind == "mode":
                out[span.column] = self.normalizers_[span.column].inverse(alpha[span.column], idx)
            else:
                info = next(c for c in self.columns_ if c["name"] == span.column)
                out[span.column] = np.where(idx >= info["k"], -1, idx).astype(np.int64)
        for name in n_columns:
            out.setdefault(name, np.full(n, np.nan))
        return out

    # persistence
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {}
        norms = {}
        for j, (name, norm) in enumerate(self.normalizers_.items()):
            m, a = norm.state()
            norms[name] = {"index": j, **m}
            arrays.update({f"norm{j}_{k}": v for k, v in a.items()})
        meta = {"columns": self.columns_, "spans": [s.__dict__ for s in self.spans_], "dim": self.dim_, "normalizers": norms}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   learned: dict[str, Any] | None = None) -> "DataLayout":
        """The saved layout, checked first (`learned`: the schema's learned columns by name)."""
        from synthloop.transforms.mode_normalizer import ModeSpecificNormalizer

        _check_layout_state(meta, arrays, learned)
        obj = cls()
        obj.columns_ = meta["columns"]
        obj.spans_ = [Span(**s) for s in meta["spans"]]
        obj.dim_ = int(meta["dim"])
        obj.normalizers_ = {}
        for name, m in meta["normalizers"].items():
            j = m["index"]
            a = {k.split("_", 1)[1]: v for k, v in arrays.items() if k.startswith(f"norm{j}_")}
            obj.normalizers_[name] = ModeSpecificNormalizer.from_state(m, a)
        return obj


def _check_layout_state(meta: dict[str, Any], arrays: dict[str, np.ndarray], learned: dict[str, Any] | None) -> None:
    """A saved layout fits together (model files are untrusted: see BaseSynthesizer.load): spans tile
    the matrix in order, each continuous column is an alpha then its normalizer's modes, each discrete
    column one block of its categories, so no size in the header can exceed what the arrays hold."""
    from synthloop.errors import ModelFileError

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ModelFileError(f"model file: layout: {what}")

    columns, spans, norms = meta.get("columns"), meta.get("spans"), meta.get("normalizers")
    need(isinstance(columns, list) and isinstance(spans, list) and isinstance(norms, dict), "needs columns, spans and normalizers")
    need(all(isinstance(c, dict) for c in columns) and all(isinstance(sp, dict) for sp in spans), "entries must be objects")
    modes: dict[str, int] = {}
    for name, m in norms.items():
        need(isinstance(m, dict) and type(m.get("index")) is int, f"normalizer of '{name}' needs an index")
        a = {k: arrays.get(f"norm{m['index']}_{k}") for k in ("means", "stds", "weights")}
        need(all(v is not None and v.ndim == 1 and v.dtype.kind == "f" for v in a.values())
             and a["means"].size >= 1 and a["means"].shape == a["stds"].shape == a["weights"].shape,
             f"normalizer of '{name}': arrays means, stds and weights must be one number per mode")
        need(bool(np.isfinite(a["means"]).all() and np.isfinite(a["stds"]).all()), f"normalizer of '{name}' holds NaN")
        need(all(isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool) and math.isfinite(m[k])
                 for k in ("shift", "scale")) and isinstance(m.get("has_null"), bool), f"normalizer of '{name}': bad shift/scale")
        modes[name] = int(a["means"].size) + int(m["has_null"])
    pos = 0
    it = iter(spans)
    for col in columns:
        name = col.get("name")
        need(learned is None or name in learned, f"column {str(name)[:60]!r} is not a learned column of the schema")
        if col.get("type") == "discrete":
            k, missing = col.get("k"), col.get("missing")
            need(type(k) is int and k >= 0 and isinstance(missing, bool), f"column '{name}' needs a count k and a missing flag")
            need(learned is None or k == len(learned[name].categories or []), f"column '{name}': k does not match its categories")
            want = [("category", k + int(missing))]
        else:
            need(col.get("type") == "continuous" and name in modes, f"column '{name}' has no normalizer")
            want = [("alpha", 1), ("mode", modes[name])]
        for kind, size in want:
            sp = next(it, None)
            need(sp is not None and sp.get("column") == name and sp.get("kind") == kind and sp.get("start") == pos
                 and sp.get("size") == size and size >= 1, f"span {kind} of column '{name}' does not fit the arrays")
            pos += size
    need(next(it, None) is None and meta.get("dim") == pos, f"spans cover {pos} positions but 'dim' says {meta.get('dim')!r}")


def sample_rows(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row from softmax(logits), vectorized (Gumbel-max)."""
    g = -np.log(-np.log(rng.random(logits.shape) + 1e-20) + 1e-20)
    return np.argmax(logits + g, axis=1)


def fidelity_distance(real: dict[str, np.ndarray], fake: dict[str, np.ndarray], layout: DataLayout) -> float:
    """A cheap validation score, lower is better: mean KS / TVD over columns plus half the mean
    |Pearson r difference| over numerical pairs (the two halves of SDMetrics' quality score)."""
    shapes, nums_r, nums_f = [], [], []
    for info in layout.columns_:
        r, f = real[info["name"]], fake[info["name"]]
        if info["type"] == "discrete":
            k = info["k"] + 1
            pr = np.bincount(np.where(r < 0, info["k"], r), minlength=k) / max(r.size, 1)
            pf = np.bincount(np.where(f < 0, info["k"], f), minlength=k) / max(f.size, 1)
            shapes.append(0.5 * np.abs(pr - pf).sum())
        else:
            rv, fv = np.sort(r[~np.isnan(r)]), np.sort(f[~np.isnan(f)])
            if rv.size and fv.size:
                grid = np.concatenate([rv, fv])
                ks = np.abs(np.searchsorted(rv, grid, "right") / rv.size - np.searchsorted(fv, grid, "right") / fv.size).max()
            else:
                ks = float(rv.size != fv.size)
            shapes.append(ks + abs(np.isnan(r).mean() - np.isnan(f).mean()))
            nums_r.append(np.nan_to_num(r - np.nanmean(r)) if rv.size else np.zeros_like(r))
            nums_f.append(np.nan_to_num(f - np.nanmean(f)) if fv.size else np.zeros_like(f))
    score = float(np.mean(shapes)) if shapes else 0.0
    if len(nums_r) > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            cr = np.nan_to_num(np.corrcoef(np.column_stack(nums_r), rowvar=False))
            cf = np.nan_to_num(np.corrcoef(np.column_stack(nums_f), rowvar=False))
        iu = np.triu_indices(len(nums_r), 1)
        score += float(np.abs(cr - cf)[iu].mean()) / 2
    return score


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` intra-op threads, then restore. The deep models' layers are small (a few hundred
    units): extra threads buy little, and on a shared CPU oversubscribed threads slow every step down
    by an order of magnitude, so the models default to one thread. `None` keeps torch's setting."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
