"""``alignsam quickstart``: the README's main job.

Trains the full AlignSAM system (PPO agent + SRM) on every embedded task and several seeds, then
evaluates each trained agent against the random policy *with the same trained SRM* on the test
split, with the paper's evaluation protocol (SRM initial prompts, SRM labels). Writes
``report.json`` (a list ``results``: one record per task, policy and seed) and ``report.md``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from alignsam_gym import __version__
from alignsam_gym.bench import write_json
from alignsam_gym.data.tasks import SYNTHETIC_TASKS
from policies.training import evaluate, load_srm_weights, train

#: sized for about 15 minutes on 2 CPU cores (see experiments/results/quickstart)
QUICKSTART = {"timesteps": 2048, "num_images": 20, "test_images": 20, "episodes": 20, "n_envs": 4, "obs_size": 10}


def run_quickstart(out: str | Path, tasks: tuple[str, ...] = SYNTHETIC_TASKS, seeds: tuple[int, ...] = (0, 1, 2),
                   timesteps: int = QUICKSTART["timesteps"], episodes: int = QUICKSTART["episodes"],
                   num_images: int = QUICKSTART["num_images"], test_images: int = QUICKSTART["test_images"],
                   progress: bool = True) -> dict[str, Any]:
    """Train and evaluate every (task, seed); write ``report.json`` and ``report.md`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = []
    for task in tasks:
        for seed in seeds:
            run_dir = out / "runs" / f"{task}-seed{seed}"
            config = {"algorithm": "ppo", "seed": seed, "total_timesteps": timesteps, "n_envs": QUICKSTART["n_envs"],
                      "env": {"task": task, "num_images": num_images, "obs_size": QUICKSTART["obs_size"]}}
            t0 = time.perf_counter()
            train(config, run_dir, verbose=False)
            train_s = time.perf_counter() - t0
            eval_env = {"task": task, "split": "test", "num_images": test_images,
                        "obs_size": QUICKSTART["obs_size"], "init_prompts": "srm", "label_source": "srm"}
            srm = load_srm_weights(run_dir / "srm.pt")
            for policy, source in (("ppo", str(run_dir)), ("random", "random")):
                metrics = evaluate(source, eval_env, episodes=episodes, seed=10_000 + seed, srm_weights=srm)
                results.append({"task": task, "policy": policy, "seed": seed, **metrics, "backend": "lite",
                                "label_source": "srm", "init_prompts": "srm",
                                "train_timesteps": timesteps, "train_s": round(train_s, 1)})
                if progress:
                    print(f"{task} seed {seed} {policy:6s}: foreground rate {metrics['foreground_rate']:.3f}, "
                          f"mIoU {metrics['miou']:.3f}", flush=True)
    report = {"results": results, "summary": summarize(results), "settings": {**QUICKSTART, "timesteps": timesteps,
              "episodes": episodes, "num_images": num_images, "test_images": test_images, "seeds": list(seeds),
              "tasks": list(tasks)},
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
              "package_version": __version__, "wall_s": round(time.perf_counter() - start, 1)}
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report))
    return report


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per task: mean over seeds of each policy's foreground rate and mIoU, and PPO's margins."""
    summary = {}
    for task in dict.fromkeys(r["task"] for r in results):
        row = {}
        for policy in ("ppo", "random"):
            rows = [r for r in results if r["task"] == task and r["policy"] == policy]
            row[policy] = {"foreground_rate": float(np.mean([r["foreground_rate"] for r in rows])),
                           "miou": float(np.mean([r["miou"] for r in rows])), "seeds": len(rows)}
        row["foreground_rate_margin"] = row["ppo"]["foreground_rate"] - row["random"]["foreground_rate"]
        row["miou_margin"] = row["ppo"]["miou"] - row["random"]["miou"]
        summary[task] = row
    return summary


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# AlignSAM-Gym quickstart",
        "",
        f"PPO + SRM against the random policy with the same trained SRM; backend `lite` (embedded), labels from the "
        f"SRM, SRM initial prompts, test split ({s['test_images']} images), {s['episodes']} episodes per seed, "
        f"seeds {s['seeds']}, {s['timesteps']} training steps per run. Numbers from the embedded backend are not "
        "comparable with the paper's SAM numbers.",
        "",
        "| task | SRM branch | foreground rate PPO | random | margin | mIoU PPO | random | margin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    branches = {r["task"]: r["srm_branch"] for r in report["results"]}
    for task, row in report["summary"].items():
        lines.append(f"| {task} | {branches[task]} | {row['ppo']['foreground_rate']:.3f} | "
                     f"{row['random']['foreground_rate']:.3f} | {row['foreground_rate_margin']:+.3f} | "
                     f"{row['ppo']['miou']:.3f} | {row['random']['miou']:.3f} | {row['miou_margin']:+.3f} |")
    fg = sum(r["foreground_rate_margin"] >= 0.15 for r in report["summary"].values())
    mi = sum(r["miou_margin"] > 0 for r in report["summary"].values())
    lines += ["", f"Tasks where PPO's foreground rate beats random's by at least 15 points: {fg} of "
              f"{len(report['summary'])}; where PPO + SRM's mIoU beats random + SRM's: {mi} of {len(report['summary'])}.",
              f"Wall time: {report['wall_s']:.0f} s on {report['machine']['cpu_count']} CPU cores.", ""]
    return "\n".join(lines)
