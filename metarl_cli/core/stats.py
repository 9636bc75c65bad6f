"""Aggregate statistics over runs: point estimates with seeded bootstrap confidence intervals.

Seeds are the unit of replication, so the bootstrap resamples runs (rows). The interquartile
mean (IQM) is the robust estimator that rliable (Agarwal et al., 2021) recommends for few runs;
the plain mean is the default because it is what papers tabulate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metarl_cli.core.checks import check_choice, check_integer

ESTIMATORS = ("mean", "iqm")


@dataclass(frozen=True)
class Interval:
    """Point estimate and confidence interval per column: arrays of one shape."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean of the middle half: drop the lowest and highest floor(n/4) values on ``axis``."""
    ordered = np.sort(values, axis=axis)
    n = ordered.shape[axis]
    cut = n // 4
    return np.take(ordered, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def estimator(name: str) -> Callable[..., np.ndarray]:
    check_choice("statistic", name, ESTIMATORS)
    return {"mean": np.mean, "iqm": iqm}[name]


def bootstrap_ci(values: np.ndarray, statistic: str = "mean", confidence: float = 0.95,
                 resamples: int = 10_000, seed: int = 0) -> Interval:
    """Percentile-bootstrap interval of ``statistic`` over the rows of ``values`` (runs x points).

    Every resample draws whole rows, so the columns (adaptation steps, checkpoints) of one run
    stay together. One run gives an interval of zero width: there is nothing to resample.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"expected a non-empty runs x points array, got shape {data.shape}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    check_integer(1, resamples=resamples)
    stat = estimator(statistic)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, data.shape[0], size=(resamples, data.shape[0]))
    replicates = stat(data[rows], axis=1)                       # (resamples, points)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [tail, 1.0 - tail], axis=0)
    return Interval(stat(data, axis=0), low, high)
