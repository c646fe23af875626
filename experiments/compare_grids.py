"""Do two benchmark grids give the same results? One policy's records in each, task by task and overall.

For a policy present in both results files (``alignsam benchmark``'s ``results.json`` or the quickstart's
``report.json``: records with ``task``, ``policy``, ``seed``, ``miou``, ``foreground_rate``), on the (task,
seed) pairs both hold: each metric's mean with its 95% stratified bootstrap interval (seeds resampled within
each task, :func:`policies.benchmarks.statistics.stratified_bootstrap_ci`) in each grid, and the mean of the
paired differences (other - base, same task and seed) with its interval. "Equal results" reads: the
difference's interval contains 0 and is narrow next to the gaps the benchmark is about.

    python experiments/compare_grids.py experiments/results/quickstart/report.json \\
        OTHER/results.json --policy ppo random --json OTHER/comparison.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from alignsam_gym.atomic import write_json
from policies.benchmarks.statistics import mean, stratified_bootstrap_ci

METRICS = ("miou", "foreground_rate")


def _records(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    try:
        records = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"{path}: not a benchmark results file with a 'results' list ({err})")
    return {(r["task"], r["policy"], int(r["seed"])): r for r in records}


def compare(base: Path, other: Path, policy: str) -> dict[str, Any]:
    """The comparison of ``policy``'s records in ``other`` with those in ``base`` (see the module docstring)."""
    a, b = _records(base), _records(other)
    keys = sorted(k for k in a if k in b and k[1] == policy)
    if not keys:
        raise SystemExit(f"no (task, seed) of policy {policy!r} in both {base} and {other}")
    tasks = sorted({k[0] for k in keys})
    seeds = sorted({k[2] for k in keys})
    if len(keys) != len(tasks) * len(seeds):
        raise SystemExit(f"{policy}: the grids share {len(keys)} records, not every task x seed; "
                         "compare like with like")
    out: dict[str, Any] = {"policy": policy, "tasks": tasks, "seeds": seeds}
    for metric in METRICS:
        grid = {name: np.array([[recs[(t, policy, s)][metric] for t in tasks] for s in seeds])
                for name, recs in (("base", a), ("other", b))}
        grid["difference"] = grid["other"] - grid["base"]
        out[metric] = {name: {"mean": round(mean(v), 4),
                              "ci95": [round(x, 4) for x in stratified_bootstrap_ci(v, mean)],
                              "per_task": {t: round(float(v[:, i].mean()), 4) for i, t in enumerate(tasks)}}
                       for name, v in grid.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", type=Path, help="the reference grid's results.json / report.json")
    parser.add_argument("other", type=Path, help="the grid to compare with it")
    parser.add_argument("--policy", nargs="+", default=["ppo"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    report = {"base": str(args.base), "other": str(args.other), "command": " ".join(["python", *sys.argv]),
              "comparisons": [compare(args.base, args.other, p) for p in args.policy]}
    for c in report["comparisons"]:
        for metric in METRICS:
            parts = ", ".join(f"{name} {v['mean']:.3f} [{v['ci95'][0]:.3f}, {v['ci95'][1]:.3f}]"
                              for name, v in c[metric].items())
            print(f"{c['policy']:10s} {metric:16s} {parts}")
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
