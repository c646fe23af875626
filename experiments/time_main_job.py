"""The README's main job in reference units: `alignsam quickstart` with a cold cache, against the reference workload
timed on the same machine in the same run.

Machines differ (a 2-core AMD EPYC trained the reference in 71-77 s where an Intel Xeon with AVX-512 takes
other times), so the main job's duration is stated as a multiple of a fixed workload: commit 642f58b's package
training the run config in :data:`REFERENCE_CONFIG` (PPO, 2,048 steps, 4 envs, 8 synthetic-saliency images,
``obs_size`` 10) with a warm embedding cache. The reference runs from a git worktree of that commit with this
environment's packages; the quickstart runs with this checkout's package and an empty cache, as a newcomer
runs ``make run`` (install excluded). Writes a JSON with both wall times, the ratio, the quickstart's peak
resident memory and its bars, the machine and the commit.

    python experiments/time_main_job.py --json experiments/results/quickstart/time.json \
        --quickstart-out experiments/results/quickstart
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import statistics
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_COMMIT = "642f58b"
REFERENCE_CONFIG = {"algorithm": "ppo", "seed": 0, "total_timesteps": 2048, "n_envs": 4,
                    "env": {"task": "synthetic-saliency", "num_images": 8, "obs_size": 10}}


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def _cli(pythonpath: Path, args: list[str], cache: Path) -> float:
    """Wall seconds of ``python -m policies.cli ARGS`` with ``pythonpath`` first on the path and ``cache`` as the
    embedding cache; raises when it fails."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "ALIGNSAM_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "policies.cli", *args], check=True, env=env, cwd=pythonpath,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def reference_seconds(work: Path, repeats: int) -> list[float]:
    """Wall seconds of the reference workload, ``repeats`` times after one untimed run that warms its cache."""
    tree = work / "reference"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(tree), REFERENCE_COMMIT],
                   check=True, capture_output=True)
    try:
        config = work / "reference.yaml"
        config.write_text(yaml.safe_dump(REFERENCE_CONFIG))
        cache = work / "reference-cache"
        times = []
        for i in range(repeats + 1):
            wall = _cli(tree, ["train", "--config", str(config), "--out", str(work / f"reference-run{i}"),
                               "--no-progress"], cache)
            print(f"reference run {i}{' (warms the cache)' if i == 0 else ''}: {wall:.1f} s", flush=True)
            if i:
                times.append(wall)
        return times
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def quickstart(work: Path, out: Path) -> dict:
    """The quickstart into ``out`` with an empty cache: wall seconds, peak resident memory, its bars."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    wall = _cli(ROOT, ["quickstart", "--out", str(out)], work / "quickstart-cache")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"quickstart: {wall:.1f} s", flush=True)
    return {"wall_s": wall, "peak_rss_gib": peak_kib / 2**20 if peak_kib > before else None,
            "bars": bars(json.loads((out / "report.json").read_text())["results"])}


def bars(records: list[dict]) -> dict:
    """The main job's bars per task, on the means over seeds: PPO's foreground rate at least 15 points above
    random's, and PPO's mIoU above random's (each to hold on 4 of 5 tasks)."""
    def mean(task: str, policy: str, key: str) -> float:
        values = [r[key] for r in records if r["task"] == task and r["policy"] == policy]
        return sum(values) / len(values)

    tasks = list(dict.fromkeys(r["task"] for r in records))
    per_task = {t: {"foreground_rate_margin": mean(t, "ppo", "foreground_rate") - mean(t, "random", "foreground_rate"),
                    "miou_margin": mean(t, "ppo", "miou") - mean(t, "random", "miou")} for t in tasks}
    return {"per_task": per_task,
            "foreground_rate_15_points": sum(m["foreground_rate_margin"] >= 0.15 for m in per_task.values()),
            "miou_above_random": sum(m["miou_margin"] > 0 for m in per_task.values()), "tasks": len(tasks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the result")
    parser.add_argument("--repeats", type=int, default=2, help="timed reference runs (after one warm-up run)")
    parser.add_argument("--reference-only", action="store_true", help="time the reference workload alone")
    parser.add_argument("--quickstart-out", default=None, help="keep the quickstart's report here (default: discarded)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alignsam-main-job-") as tmp:
        work = Path(tmp)
        ref = reference_seconds(work, args.repeats)
        result = {"command": " ".join(["python", "experiments/time_main_job.py", *(argv or sys.argv[1:])]),
                  "commit": _git("rev-parse", "HEAD"),
                  "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
                  "reference": {"commit": REFERENCE_COMMIT, "config": REFERENCE_CONFIG, "wall_s": ref,
                                "unit_s": statistics.median(ref)},
                  "machine": {"platform": platform.platform(), "processor": _cpu_name(), "cpu_count": os.cpu_count(),
                              "torch_capability": _torch_capability()}}
        if not args.reference_only:
            result["quickstart"] = quickstart(work, Path(args.quickstart_out) if args.quickstart_out
                                              else work / "quickstart")
            result["quickstart"]["reference_units"] = result["quickstart"]["wall_s"] / result["reference"]["unit_s"]
            print(f"quickstart: {result['quickstart']['reference_units']:.1f} reference units", flush=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _torch_capability() -> str:
    """The best kernels torch uses on this CPU (``AVX512``, ``AVX2``, ``DEFAULT``), asked in a child process."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
