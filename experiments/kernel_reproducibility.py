"""Do two machines with other CPU kernels get the same benchmark? A heuristic-only grid, played under two kernel
settings on this machine and compared image by image.

Another CPU (AVX2 instead of AVX-512, say) runs other torch, oneDNN and numpy kernels, whose results differ in
the last places. This script plays every image of a task's test split once with each heuristic (``random``
seeded per image, ``centre``, ``srm_greedy``; the env's SRM, initialised with its fixed seed, labels every
prompt) in a child process per setting: ``native`` (this machine's best kernels) and ``sse41`` (torch and
oneDNN at their SSE4.1 level, numpy without its dispatched SIMD). Then it pairs the two runs per policy and
image: how many episodes are identical (the same actions and labels, IoU after every prompt within 1e-6), the
largest IoU difference, the mean difference with a 95% bootstrap interval over images, and each setting's
mIoU with its own interval.

    python experiments/kernel_reproducibility.py --task ccp-person --data-root ../shared/data/ccp \\
        --json experiments/results/kernel_reproducibility_ccp_person.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

POLICIES = ("random", "centre", "srm_greedy")
#: kernel settings: environment variables of the child process that plays the grid (``make test-kernels`` replays
#: the reference episodes under ``sse41``, from ``--print-env sse41``; ``ALIGNSAM_KERNELS`` lets the tests check
#: that the settings took effect)
SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "sse41": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
              "NPY_DISABLE_CPU_FEATURES": "__numpy_dispatch__", "ALIGNSAM_KERNELS": "sse41"},
}
BOOTSTRAP = 10_000


def play(task: str, data_root: str | None, images: int | None, max_prompts: int) -> dict[str, Any]:
    """Every test image once per heuristic: per-episode actions, labels and IoU after 0..T prompts."""
    import gymnasium as gym
    import torch

    import alignsam_gym  # noqa: F401  (registers the env)
    from alignsam_gym.heuristics import choose

    kwargs: dict[str, Any] = {"task": task, "split": "test", "init_prompts": "srm", "max_prompts": max_prompts,
                              "device": "cpu"}
    if data_root:
        kwargs["data_root"] = data_root
    if images:
        kwargs["num_images"] = images
    env = gym.make("AlignSAM-v0", **kwargs)
    inner = env.unwrapped
    count = len(inner.core.dataset)
    episodes: dict[str, list[dict[str, Any]]] = {}
    start = time.perf_counter()
    for policy in POLICIES:
        rows = episodes[policy] = []
        for index in range(count):
            rng = np.random.default_rng(index)  # the same draws for image `index` in every setting
            obs, info = env.reset(seed=index, options={"image_index": index})
            ious, actions, labels, done = [float(info["iou"])], [], [], False
            while not done:
                action = choose(policy, inner, rng)
                obs, reward, terminated, truncated, info = env.step(action)
                actions.append(action)
                labels.append(int(info["label"]))
                ious.append(float(info["iou"]))
                done = terminated or truncated
            rows.append({"image": inner.core.dataset[index].name, "actions": actions, "labels": labels,
                         "iou": ious})
    return {"episodes": episodes, "images": count, "wall_s": round(time.perf_counter() - start, 1),
            "torch_capability": torch.backends.cpu.get_cpu_capability(), "backend": inner.core.backend.identity}


def _interval(values: np.ndarray, rng: np.random.Generator) -> list[float]:
    """95% percentile bootstrap interval of the mean over ``values`` (resampling images)."""
    means = values[rng.integers(len(values), size=(BOOTSTRAP, len(values)))].mean(axis=1)
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Paired per image: the second setting minus the first, per policy."""
    (name_a, a), (name_b, b) = runs.items()
    rng = np.random.default_rng(0)
    out = {}
    for policy in POLICIES:
        rows_a, rows_b = a["episodes"][policy], b["episodes"][policy]
        assert [r["image"] for r in rows_a] == [r["image"] for r in rows_b]
        final_a = np.array([r["iou"][-1] for r in rows_a])
        final_b = np.array([r["iou"][-1] for r in rows_b])
        gaps = np.array([np.max(np.abs(np.subtract(ra["iou"], rb["iou"]))) for ra, rb in zip(rows_a, rows_b)])
        same = [ra["actions"] == rb["actions"] and ra["labels"] == rb["labels"] and gap <= 1e-6
                for ra, rb, gap in zip(rows_a, rows_b, gaps)]
        diff = final_b - final_a
        ci_a, ci_b = _interval(final_a, rng), _interval(final_b, rng)
        out[policy] = {
            "images": len(rows_a), "identical_episodes": int(sum(same)),
            "same_actions_and_labels": int(sum(ra["actions"] == rb["actions"] and ra["labels"] == rb["labels"]
                                               for ra, rb in zip(rows_a, rows_b))),
            "max_abs_iou_difference": float(gaps.max()),
            f"miou_{name_a}": float(final_a.mean()), f"miou_{name_a}_ci95": ci_a,
            f"miou_{name_b}": float(final_b.mean()), f"miou_{name_b}_ci95": ci_b,
            "paired_difference": float(diff.mean()), "paired_difference_ci95": _interval(diff, rng),
            "intervals_overlap": bool(ci_a[0] <= ci_b[1] and ci_b[0] <= ci_a[1]),
        }
    return out


def setting_env(setting: str) -> dict[str, str]:
    """The environment variables of kernel setting ``setting`` (:data:`SETTINGS`), resolved for this numpy.

    :param setting: a key of :data:`SETTINGS`.
    """
    env = {}
    for key, value in SETTINGS[setting].items():
        if value == "__numpy_dispatch__":  # every SIMD level numpy dispatches to at run time
            from numpy._core._multiarray_umath import __cpu_dispatch__
            if not __cpu_dispatch__:
                raise RuntimeError("this numpy dispatches to no SIMD level at run time; nothing to switch off")
            value = ",".join(__cpu_dispatch__)
        env[key] = value
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="ccp-person")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--images", type=int, default=None, help="test images (default: the whole split)")
    parser.add_argument("--max-prompts", type=int, default=15)
    parser.add_argument("--json", default=None, help="where to write the comparison")
    parser.add_argument("--play", default=None, help=argparse.SUPPRESS)  # a child: play and write here
    parser.add_argument("--print-env", default=None, choices=sorted(SETTINGS),
                        help="print the setting's environment as KEY=VALUE words (for env(1)) and exit")
    args = parser.parse_args(argv)
    if args.print_env:
        print(" ".join(f"{k}={v}" for k, v in setting_env(args.print_env).items()))
        return 0
    if not args.json:
        parser.error("--json is required")
    if args.play:
        Path(args.play).write_text(json.dumps(play(args.task, args.data_root, args.images, args.max_prompts)))
        return 0
    runs = {}
    with tempfile.TemporaryDirectory(prefix="alignsam-kernels-") as tmp:
        for setting in SETTINGS:
            path = Path(tmp) / f"{setting}.json"
            # each setting with its own cold embedding cache: the encoder runs under that setting's kernels
            env = {**os.environ, **setting_env(setting), "ALIGNSAM_CACHE": str(Path(tmp) / f"cache-{setting}")}
            command = [sys.executable, __file__, "--task", args.task, "--json", args.json, "--play", str(path),
                       "--max-prompts", str(args.max_prompts)]
            command += ["--data-root", args.data_root] if args.data_root else []
            command += ["--images", str(args.images)] if args.images else []
            subprocess.run(command, check=True, env=env)
            runs[setting] = json.loads(path.read_text())
            print(f"{setting}: {runs[setting]['images']} images, torch {runs[setting]['torch_capability']}, "
                  f"{runs[setting]['wall_s']} s", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    result = {"command": " ".join(["python", "experiments/kernel_reproducibility.py", *(argv or sys.argv[1:])]),
              "commit": commit, "task": args.task, "max_prompts": args.max_prompts,
              "backend": runs["native"]["backend"], "settings": SETTINGS,
              "torch_capability": {k: v["torch_capability"] for k, v in runs.items()},
              "wall_s": {k: v["wall_s"] for k, v in runs.items()},
              "comparison": compare(runs),
              "episodes": {k: v["episodes"] for k, v in runs.items()}}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    for policy, row in result["comparison"].items():
        print(f"{policy:11s} identical {row['identical_episodes']}/{row['images']}, max |dIoU| "
              f"{row['max_abs_iou_difference']:.2e}, paired difference {row['paired_difference']:+.5f} "
              f"{[round(v, 5) for v in row['paired_difference_ci95']]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
