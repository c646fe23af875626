"""Aggregate statistics of benchmark scores as the RL community reports them (Agarwal et al., "Deep
Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021; the ``rliable`` package).

Scores of one policy are an array ``(runs, tasks)``: one value (mIoU, foreground rate) per seed and task.
- :func:`iqm`: the interquartile mean of all ``runs x tasks`` values (the mean of the middle 50%),
  robust to outlier runs and more efficient than the median.
- :func:`stratified_bootstrap_ci`: a percentile confidence interval of any such statistic, resampling the
  runs of each task independently (tasks are fixed, runs are the random part).
- :func:`probability_of_improvement`: ``P(X > Y)`` for a run of policy X against one of Y on the same task
  (ties count half), averaged over tasks: the Mann-Whitney U statistic, normalised.
- :func:`performance_profile`: the fraction of all runs scoring above each threshold ``tau``.
- :func:`hierarchical_bootstrap_ci`: the interval of a mean over ``(seeds, images)`` paired differences,
  resampling the seeds and then the images (both are random: the SRM's training and the test images; every
  seed plays the same images, so one image draw serves all drawn seeds), for comparisons of two policies on
  the same images under the same SRM.
- :func:`paired_test`: the Wilcoxon signed-rank test of per-image differences (averaged over seeds).

Written here and tested against ``rliable`` (``tests/test_statistics.py``); every random draw goes
through the given seeded generator.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats

Statistic = Callable[[np.ndarray], float]


def _scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"scores must be a non-empty (runs, tasks) array, got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    return scores


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of every value of ``(runs, tasks)`` scores (25% trimmed from each end)."""
    return float(stats.trim_mean(_scores(scores).ravel(), proportiontocut=0.25))


def mean(scores: np.ndarray) -> float:
    """Mean of every value of ``(runs, tasks)`` scores."""
    return float(_scores(scores).mean())


def _percentile_bootstrap(resample: Callable[[np.random.Generator], float], repetitions: int, confidence: float,
                          rng: np.random.Generator | None) -> tuple[float, float]:
    """The percentile interval of ``repetitions`` values of ``resample(rng)`` (one bootstrap statistic each),
    with ``rng`` seeded with 0 by default so a report is reproducible."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if repetitions < 1:
        raise ValueError(f"repetitions must be at least 1, got {repetitions}")
    rng = rng if rng is not None else np.random.default_rng(0)
    values = np.array([resample(rng) for _ in range(repetitions)])
    alpha = (1 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def stratified_bootstrap_ci(scores: np.ndarray, statistic: Statistic = iqm, repetitions: int = 2000,
                            confidence: float = 0.95, rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over ``repetitions`` stratified bootstrap resamples of
    ``(runs, tasks)`` scores (each task's runs resampled with replacement, independently).

    :param rng: the generator of the resampling (default: seeded with 0, so a report is reproducible).
    """
    scores = _scores(scores)
    runs, tasks = scores.shape
    columns = np.arange(tasks)
    return _percentile_bootstrap(lambda g: statistic(scores[g.integers(0, runs, size=(runs, tasks)), columns]),
                                 repetitions, confidence, rng)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """``P(X > Y) + P(X = Y) / 2`` between a run of X and a run of Y on the same task, averaged over tasks.

    :param x: ``(runs_x, tasks)`` scores of policy X; ``y``: ``(runs_y, tasks)`` of Y, the same tasks in the
        same column order.
    """
    x, y = _scores(x), _scores(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must score the same tasks, got {x.shape[1]} and {y.shape[1]} columns")
    per_task = []
    for task in range(x.shape[1]):
        a, b = x[:, task][:, None], y[:, task][None, :]
        per_task.append(float(np.mean((a > b) + 0.5 * (a == b))))
    return float(np.mean(per_task))


def performance_profile(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """``(len(taus),)``: the fraction of all ``runs x tasks`` scores strictly above each threshold."""
    flat = _scores(scores).ravel()
    return np.array([float(np.mean(flat > tau)) for tau in np.asarray(taus, dtype=np.float64)])


def interval_estimates(scores: dict[str, np.ndarray], repetitions: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> dict[str, dict[str, float]]:
    """IQM and mean with their stratified bootstrap intervals for each policy's ``(runs, tasks)`` scores:
    ``{policy: {"iqm", "iqm_low", "iqm_high", "mean", "mean_low", "mean_high", "runs", "tasks"}}``."""
    out = {}
    for i, (policy, values) in enumerate(scores.items()):
        values = _scores(values)
        row = {"runs": int(values.shape[0]), "tasks": int(values.shape[1])}
        for name, statistic in (("iqm", iqm), ("mean", mean)):
            low, high = stratified_bootstrap_ci(values, statistic, repetitions, confidence,
                                                np.random.default_rng([seed, i]))
            row.update({name: statistic(values), f"{name}_low": low, f"{name}_high": high})
        out[policy] = row
    return out


def hierarchical_bootstrap_ci(values: np.ndarray, repetitions: int = 2000, confidence: float = 0.95,
                              rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile interval of the mean of ``(seeds, images)`` values (paired differences, agent minus baseline,
    image by image) over ``repetitions`` two-level bootstrap resamples: the seeds with replacement, then the
    images with replacement. The images are crossed with the seeds (every seed plays the same ones), so one
    image draw is shared by the drawn seeds: redrawing them per seed would average the image-to-image
    variation away and narrow the interval by about the square root of the number of seeds.

    :param rng: the generator of the resampling (default: seeded with 0, so a report is reproducible).
    """
    values = _scores(values)
    seeds, images = values.shape

    def resample(g: np.random.Generator) -> float:
        rows = g.integers(0, seeds, size=seeds)
        return float(values[np.ix_(rows, g.integers(0, images, size=images))].mean())

    return _percentile_bootstrap(resample, repetitions, confidence, rng)


def paired_test(values: np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test that ``(seeds, images)`` paired differences are
    centred on zero, with each image's difference averaged over the seeds (the images are the independent
    units; the seeds of one image share it). It tests the difference on these test images given these trained
    SRMs: the seeds' variation is not part of it (with five seeds a test over seeds has little power), so the
    hierarchical interval, not the p-value, is the statement about a new training run. 1.0 when every
    difference is zero."""
    per_image = _scores(values).mean(axis=0)
    if not np.any(per_image != 0):
        return 1.0
    return float(stats.wilcoxon(per_image, zero_method="wilcox").pvalue)
