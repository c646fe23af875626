"""``alignsam bench soak``: many episodes over every embedded task, watching memory and file handles.

Runs ``rounds`` rounds; each round plays ``episodes`` episodes with ``num_envs`` envs of the batched
vector env on every task (random actions, SRM labels), then records the process's resident memory
(``/proc/self/statm``), its open file descriptors (``/proc/self/fd``) and the embedding cache's
size. The first ``warmup`` rounds fill the caches; after them memory should stay flat: the report
gives the growth from the end of warm-up to the end, in MiB and per round.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import numpy as np
import torch

from alignsam_gym import __version__
from alignsam_gym.data.tasks import SYNTHETIC_TASKS
from policies.benchmarks.machine import command_line, machine


def resident_mib() -> float:
    """Resident set size of this process in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_soak(rounds: int = 12, warmup: int = 3, episodes: int = 4, num_envs: int = 4,
             tasks: tuple[str, ...] = SYNTHETIC_TASKS, num_images: int = 8, max_prompts: int = 15,
             cache_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the soak (see the module docstring) and return a JSON-ready dict."""
    from alignsam_gym.backends import shared_cache
    from alignsam_gym.envs.vector import AlignSAMVectorEnv

    if warmup >= rounds:
        raise ValueError(f"warmup ({warmup}) must be smaller than rounds ({rounds})")
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    envs = {task: AlignSAMVectorEnv(num_envs, autoreset_mode="SameStep", task=task, num_images=num_images,
                                    max_prompts=max_prompts, cache_dir=cache_dir) for task in tasks}
    for i, vec in enumerate(envs.values()):
        vec.reset(seed=1000 * i)
    samples, steps = [], 0
    for round_index in range(rounds):
        for vec in envs.values():
            for _ in range(episodes * max_prompts):
                vec.step(rng.integers(0, 100, size=num_envs))
                steps += num_envs
        gc.collect()
        cache = shared_cache(cache_dir)
        samples.append({"round": round_index, "env_steps": steps, "rss_mib": round(resident_mib(), 1),
                        "open_files": open_files(), "cache_entries": len(cache),
                        "cache_mib": round(cache.nbytes / 2**20, 1), "wall_s": round(time.perf_counter() - start, 1)})
        if progress:
            s = samples[-1]
            print(f"round {round_index:3d}: {s['env_steps']:7d} env steps, RSS {s['rss_mib']:8.1f} MiB, "
                  f"{s['open_files']} open files, cache {s['cache_entries']} entries", flush=True)
    for vec in envs.values():
        vec.close()
    after = samples[warmup - 1]
    last = samples[-1]
    rss_after = [s["rss_mib"] for s in samples[warmup - 1:]]
    slope = float(np.polyfit(np.arange(len(rss_after)), rss_after, 1)[0])
    return {
        "benchmark": "soak", "tasks": list(tasks), "rounds": rounds, "warmup_rounds": warmup,
        "episodes_per_round_per_env": episodes, "num_envs": num_envs, "num_images": num_images,
        "max_prompts": max_prompts, "env_steps": steps, "samples": samples,
        "rss_growth_after_warmup_mib": round(last["rss_mib"] - after["rss_mib"], 1),
        "rss_slope_after_warmup_mib_per_round": round(slope, 2),
        "open_files_growth_after_warmup": last["open_files"] - after["open_files"],
        "torch_threads": torch.get_num_threads(),
        "machine": machine(), "command": command_line(),
        "package_version": __version__, "wall_s": round(time.perf_counter() - start, 1),
    }
