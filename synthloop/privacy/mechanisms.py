"""Where the noise of every DP model comes from: one place, never the user's seed.

Counts get discrete Gaussian noise (Canonne, Kamath & Steinke 2020), thresholded counts use OpenDP's
Gaussian threshold mechanism (Rogers 2023: a key is released only when its noisy count clears the
threshold), selections use the exponential mechanism as report-noisy-max with Gumbel noise. All three
are OpenDP measurements (`opendp`, the `dp` extra): OpenDP samples them exactly, with a cryptographically
secure generator seeded by the operating system, so nothing in a model file or a seed can replay them.
Without OpenDP the same mechanisms draw from NumPy's PCG64 seeded from OS entropy (never saved, never
from `random_state`); `noise_source()` says which is in use and the guarantee repeats it.

The user's seed keeps controlling everything after the noise (compression, inference, sampling rows),
which is post-processing: a saved model samples the same rows for the same seed.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from functools import lru_cache
from typing import Any, Hashable, Iterator, Mapping

import numpy as np

# Tests of neighbouring tables need the same noise twice; only this context manager gives it, and no
# parameter, file or command line reaches it.
_TEST_SEED: contextvars.ContextVar[np.random.Generator | None] = contextvars.ContextVar("_TEST_SEED", default=None)


@lru_cache(maxsize=1)
def _opendp() -> Any:
    try:
        import opendp.prelude as dp
    except ImportError:
        return None
    dp.enable_features("contrib")  # the measurements below are OpenDP's "contrib" (proof-documented) ones
    return dp


def noise_source() -> str:
    """One line: which sampler the DP mechanisms use in this installation."""
    if _opendp() is not None:
        return ("OpenDP discrete Gaussian / Gumbel samplers (cryptographically secure, seeded by the operating "
                "system; never by random_state)")
    return "NumPy PCG64 seeded from operating-system entropy (never by random_state; OpenDP not installed)"


def os_rng() -> np.random.Generator:
    """A NumPy generator seeded from operating-system entropy (used when OpenDP is absent)."""
    test = _TEST_SEED.get()
    return test if test is not None else np.random.Generator(np.random.PCG64(np.random.SeedSequence()))


@contextlib.contextmanager
def _seeded_noise_for_tests(seed: int) -> Iterator[None]:
    """Replayable noise, for tests that compare two fits on neighbouring tables. Never use it to fit."""
    token = _TEST_SEED.set(np.random.default_rng(seed))
    try:
        yield
    finally:
        _TEST_SEED.reset(token)


def _opendp_or_none() -> Any:
    return None if _TEST_SEED.get() is not None else _opendp()


def gaussian_counts(counts: np.ndarray, sigma: float) -> np.ndarray:
    """Integer counts (any shape) plus discrete Gaussian noise of scale `sigma`, as floats.

    L2 sensitivity 1 costs 1 / (2 sigma^2) zCDP (CKS20, Thm. 4)."""
    true = np.asarray(counts)
    flat = np.rint(true).astype(np.int64).ravel()
    if flat.size == 0:
        return flat.astype(float).reshape(true.shape)
    dp = _opendp_or_none()
    if dp is None:
        return (flat + np.rint(os_rng().normal(0.0, sigma, flat.size))).astype(float).reshape(true.shape)
    meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=int)), dp.l2_distance(T=int), scale=float(sigma))
    return np.asarray(meas(flat.tolist()), dtype=float).reshape(true.shape)


@lru_cache(maxsize=256)
def threshold_delta(sigma: float, threshold: int) -> float:
    """The delta of releasing only keys whose noisy count clears `threshold`, when one row moves one
    count by one (it may add a key no other row has)."""
    dp = _opendp()
    if dp is None:
        from scipy.stats import norm

        return float(norm.sf((threshold - 1) / sigma))
    return float(_threshold_measurement(float(sigma), int(threshold)).map((1, 1, 1))[1])


def _threshold_measurement(sigma: float, threshold: int) -> Any:
    dp = _opendp()
    return dp.m.make_gaussian_threshold(dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T=int)),
                                        dp.l02inf_distance(dp.absolute_distance(T=int)), scale=sigma,
                                        threshold=int(threshold))


@lru_cache(maxsize=256)
def threshold_for(sigma: float, delta: float) -> int:
    """Smallest integer threshold whose `threshold_delta` is at most `delta` (searched from the continuous
    Gaussian's tail, which is within a count or two of the exact discrete one)."""
    from scipy.stats import norm

    t = max(2, int(math.ceil(1 + sigma * float(norm.isf(min(delta, 0.5))))))
    step = 1
    while threshold_delta(sigma, t) > delta:
        t, step = t + step, step * 2
    step = 1
    while t > 1 and threshold_delta(sigma, t - step) <= delta:
        t, step = t - step, step * 2
    lo, hi = max(t - step, 1), t  # delta(lo) > target >= delta(hi) unless lo == 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if threshold_delta(sigma, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def thresholded_counts(counts: Mapping[Hashable, int], sigma: float, threshold: int) -> dict[Hashable, float]:
    """Noisy counts of the keys that clear `threshold` (a key seen in few rows almost never does).

    Costs 1 / (2 sigma^2) zCDP plus `threshold_delta(sigma, threshold)` when one row changes one key's
    count by one (OpenDP's `make_gaussian_threshold`; Rogers 2023)."""
    keys = list(counts)
    if not keys:
        return {}
    dp = _opendp_or_none()
    if dp is None:
        values = np.array([counts[k] for k in keys], dtype=float) + np.rint(os_rng().normal(0.0, sigma, len(keys)))
        return {k: float(v) for k, v in zip(keys, values) if v >= threshold}
    names = {f"k{i}": k for i, k in enumerate(keys)}  # OpenDP keys are strings; the values never leave here
    out = _threshold_measurement(float(sigma), int(threshold))({n: int(counts[k]) for n, k in names.items()})
    return {names[n]: float(v) for n, v in out.items()}


def noisy_argmax(scores: np.ndarray, epsilon: float) -> int:
    """Index of the highest score by the exponential mechanism (report-noisy-max with Gumbel noise of
    scale 2 / epsilon, scores of sensitivity 1): epsilon-DP and epsilon^2 / 8 zCDP (Cesar & Rogers 2021)."""
    s = np.asarray(scores, dtype=float)
    dp = _opendp_or_none()
    if dp is None:
        return int(np.argmax(epsilon / 2.0 * s + os_rng().gumbel(size=s.size)))
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.linf_distance(T=float)
    meas = dp.m.make_noisy_max(*space, dp.zero_concentrated_divergence(), scale=2.0 / float(epsilon))
    return int(meas(s.tolist()))
