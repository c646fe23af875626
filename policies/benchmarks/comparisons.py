"""What a benchmark's records say about its policies: normalised scores, aggregates and paired comparisons.

- Normalised scores put tasks of very different difficulty on one scale: per task, 0 is ``random``'s mean
  mIoU and 1 the ground-truth ``oracle``'s (the one-step lookahead upper bound of
  :mod:`alignsam_gym.heuristics`), each the mean over the task's seeds and common SRMs; aggregates (IQM and mean, with
  stratified bootstrap intervals) and performance profiles are taken over them. Without both policies in the
  grid the aggregates fall back to raw mIoU, and the report says so.
- Paired comparisons: every trained agent against every baseline evaluated with *its* SRM, on the same images
  of the same seeds (the per-episode rows of :class:`~policies.benchmarks.episode_table.EpisodeTable`): the mean
  per-image difference (agent minus baseline) with a 95% hierarchical bootstrap interval (seeds, then images)
  and a Wilcoxon signed-rank p-value (:mod:`policies.benchmarks.statistics`).

The aggregates compare every policy under like conditions (:func:`aggregate_records`): an agent under its own SRM,
and every heuristic (the upper bounds included) under the SRMs that all heuristics of the task ran with: every
trained SRM when each heuristic ran under each, otherwise (``paired_baselines``, ``upper_bound_srms: first``) the
first trained algorithm's; a heuristic's score for a seed is its mean over those SRMs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from alignsam_gym.heuristics import HEURISTICS, UPPER_BOUNDS
from policies.benchmarks.statistics import (hierarchical_bootstrap_ci, interval_estimates, paired_test,
                                            probability_of_improvement, stratified_bootstrap_ci)
from policies.benchmarks.statistics import mean as mean_score

#: per-record metric -> the per-episode column it is the mean of
EPISODE_METRICS = {"miou": "final_iou", "foreground_rate": "foreground_rate"}


def main_records(config: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records (or per-episode rows) of the main setting: the first label source and branch, the largest
    prompt budget."""
    main_source, main_branch, main_t = config["label_sources"][0], config["branches"][0], max(config["max_prompts"])
    return [r for r in records if r["label_source"] == main_source and r["branch"] == main_branch
            and r["max_prompts"] == main_t]


def aggregate_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records the aggregates read: every agent's (and run folder's), and each heuristic's under the SRMs that
    every heuristic of its task ran with, so that no heuristic is averaged over more (or other) SRMs than another
    (or than the normaliser); all of a task's heuristic records when those SRMs have nothing in common."""
    srms: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for r in records:
        if r["policy"] in HEURISTICS:
            srms[r["task"]][r["policy"]].add(r.get("srm"))
    common = {task: set.intersection(*by_policy.values()) for task, by_policy in srms.items()}
    return [r for r in records if r["policy"] not in HEURISTICS or not common[r["task"]]
            or r.get("srm") in common[r["task"]]]


def normalisers(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task with both ``random`` and ``oracle`` records (and an oracle above random): ``{"random", "oracle"}``,
    their mean mIoU over the task's records."""
    out = {}
    for task in dict.fromkeys(r["task"] for r in records):
        means = {p: [r["miou"] for r in records if r["task"] == task and r["policy"] == p]
                 for p in ("random", "oracle")}
        if all(means.values()):
            low, high = float(np.mean(means["random"])), float(np.mean(means["oracle"]))
            if high > low:
                out[task] = {"random": low, "oracle": high}
    return out


def score_matrices(records: list[dict[str, Any]], metric: str = "miou",
                   scale: dict[str, dict[str, float]] | None = None) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(tasks, {policy: (seeds, tasks) array})`` of ``metric`` (a policy's records of one task and seed under
    several SRMs averaged) over the tasks every policy has every seed of: the runs of a stratified bootstrap
    (seeds are the random part, tasks are fixed). ``scale``: :func:`normalisers`, to normalise the values (only
    the tasks it covers are kept)."""
    tasks = [t for t in dict.fromkeys(r["task"] for r in records) if scale is None or t in scale]
    policies = list(dict.fromkeys(r["policy"] for r in records))
    seeds = sorted({r["seed"] for r in records})
    values: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        value = r[metric]
        if scale is not None and r["task"] in scale:
            value = (value - scale[r["task"]]["random"]) / (scale[r["task"]]["oracle"] - scale[r["task"]]["random"])
        values[(r["task"], r["policy"], r["seed"])].append(value)
    complete = [t for t in tasks if all((t, p, s) in values for p in policies for s in seeds)]
    return complete, {p: np.array([[np.mean(values[(t, p, s)]) for t in complete] for s in seeds]) for p in policies}


def agents_of(records: list[dict[str, Any]]) -> list[str]:
    """The trained algorithms of the records (each evaluated with its own SRM), in record order."""
    return list(dict.fromkeys(r["policy"] for r in records if r["policy"] == r.get("srm")))


def baselines_of(records: list[dict[str, Any]]) -> list[str]:
    """The heuristics of the records that an agent is compared with (not the ground-truth upper bounds)."""
    return [p for p in dict.fromkeys(r["policy"] for r in records) if p in HEURISTICS and p not in UPPER_BOUNDS]


def paired_differences(rows: list[dict[str, Any]], task: str, agent: str, baseline: str, metric: str = "miou"
                       ) -> tuple[list[int], np.ndarray, np.ndarray] | None:
    """``(seeds, agent values, baseline values)``, each array ``(seeds, images)`` of the per-episode ``metric``
    on ``task``, the agent with its SRM and the baseline with the same SRM, images in one order; None when
    they share no seed.

    :raises ValueError: when a seed's two records played different images (the pairing would be false).
    """
    column = EPISODE_METRICS[metric]
    mine: dict[int, dict[int, float]] = defaultdict(dict)
    theirs: dict[int, dict[int, float]] = defaultdict(dict)
    for row in rows:
        if row["task"] == task and row["srm"] == agent:
            if row["policy"] == agent:
                mine[row["seed"]][row["image_index"]] = row[column]
            elif row["policy"] == baseline:
                theirs[row["seed"]][row["image_index"]] = row[column]
    seeds = sorted(set(mine) & set(theirs))
    if not seeds:
        return None
    images = sorted(mine[seeds[0]])
    for seed in seeds:
        if sorted(mine[seed]) != images or sorted(theirs[seed]) != images:
            raise ValueError(f"{task}, seed {seed}: {agent} and {baseline} (SRM of {agent}) played different "
                             "images; their records cannot be paired")
    return (seeds, np.array([[mine[s][i] for i in images] for s in seeds]),
            np.array([[theirs[s][i] for i in images] for s in seeds]))


def paired_comparisons(records: list[dict[str, Any]], rows: list[dict[str, Any]], metric: str = "miou",
                       repetitions: int = 2000) -> list[dict[str, Any]]:
    """Every agent against every baseline under the agent's SRM, per task: ``agent``, ``baseline``, ``task``,
    ``metric``, ``seeds``, ``images``, the two means, ``difference`` (agent minus baseline, mean over seeds and
    images) with its 95% hierarchical bootstrap interval ``low`` / ``high`` and the paired test's ``p_value``."""
    out = []
    by_srm: dict[tuple, list[dict[str, Any]]] = defaultdict(list)  # one pass over the rows, not one per pair
    for row in rows:
        by_srm[(row["task"], row["srm"])].append(row)
    for task in dict.fromkeys(r["task"] for r in records):
        for a, agent in enumerate(agents_of(records)):
            for b, baseline in enumerate(baselines_of(records)):
                paired = paired_differences(by_srm[(task, agent)], task, agent, baseline, metric)
                if paired is None:
                    continue
                seeds, mine, theirs = paired
                difference = mine - theirs
                low, high = hierarchical_bootstrap_ci(difference, repetitions,
                                                      rng=np.random.default_rng([11, len(out), a, b]))
                out.append({"task": task, "agent": agent, "baseline": baseline, "metric": metric,
                            "seeds": len(seeds), "images": int(difference.shape[1]),
                            "agent_mean": float(mine.mean()), "baseline_mean": float(theirs.mean()),
                            "difference": float(difference.mean()), "low": low, "high": high,
                            "p_value": paired_test(difference)})
    return out


def benchmark_statistics(config: dict[str, Any], records: list[dict[str, Any]],
                         rows: list[dict[str, Any]] | None = None, repetitions: int = 2000) -> dict[str, Any]:
    """The leaderboard statistics of the main setting.

    - ``score``: ``"normalised_miou"`` (with ``normalisation``, :func:`normalisers`) or ``"miou"`` when the grid
      lacks ``random`` or ``oracle``; ``aggregate``: per policy the IQM and mean of that score over seeds x tasks
      with 95% stratified bootstrap intervals (several seeds);
    - ``miou`` and ``foreground_rate``: the same on the raw metrics; ``per_task_miou``: each task's mean mIoU with
      its bootstrap interval over seeds; ``best_heuristic`` (the highest mean of the aggregate's score) and
      ``probability_of_improvement`` over it (mIoU per task, so the same with either score); all
      of these on :func:`aggregate_records` (heuristics under their common SRMs);
    - ``paired``: :func:`paired_comparisons` of mIoU and of the foreground rate (needs the per-episode ``rows``).
    """
    main = main_records(config, records)
    seeds = sorted({r["seed"] for r in main})
    common = aggregate_records(main)  # the aggregates: heuristics under their common SRMs
    tasks, miou = score_matrices(common, "miou")
    out: dict[str, Any] = {"tasks": tasks, "seeds": seeds}
    if rows:
        main_rows = main_records(config, rows)
        out["paired"] = (paired_comparisons(main, main_rows, "miou", repetitions)
                         + paired_comparisons(main, main_rows, "foreground_rate", repetitions))
    if not tasks or len(seeds) < 2:
        return out
    _, fg = score_matrices(common, "foreground_rate")
    scale = normalisers(common)
    score = miou
    if scale:
        normalised_tasks, score = score_matrices(common, "miou", scale)
        out.update({"score": "normalised_miou", "normalisation": scale, "normalised_tasks": normalised_tasks,
                    "aggregate": interval_estimates(score, repetitions)})
    else:
        out.update({"score": "miou", "aggregate": interval_estimates(miou, repetitions)})
    out.update({"miou": interval_estimates(miou, repetitions), "foreground_rate": interval_estimates(fg, repetitions)})
    out["per_task_miou"] = {
        policy: {task: dict(zip(("mean", "low", "high"),
                                (float(values[:, i].mean()),
                                 *stratified_bootstrap_ci(values[:, i:i + 1], mean_score, repetitions,
                                                          rng=np.random.default_rng([7, j, i])))))
                 for i, task in enumerate(tasks)}
        for j, (policy, values) in enumerate(miou.items())}
    heuristics = [p for p in miou if p in HEURISTICS and p not in UPPER_BOUNDS]  # the oracle reads the ground truth
    if heuristics:  # best by the aggregate's score: raw mIoU would let the task with the widest range decide
        best = max(heuristics, key=lambda p: float(score[p].mean()))
        out["best_heuristic"] = best
        out["probability_of_improvement"] = {p: probability_of_improvement(values, miou[best])
                                             for p, values in miou.items() if p != best}
    return out
