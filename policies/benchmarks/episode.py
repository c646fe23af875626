"""``alignsam bench episode``: time of one episode (reset + ``max_prompts`` steps) with SAM.

Two ways of running the same episodes on the same 800x800 images, in one process:

- ``predictor_per_reset``: the common approach, ``SamPredictor.set_image`` at every reset and
  ``SamPredictor.predict`` (all points so far, single-mask output, full-resolution masks) at every
  step;
- ``env_cached``: ``AlignSAM-v0`` with the SAM backend, each image's embedding already in the
  on-disk cache (the memory cache is emptied before every episode, so each reset reads the disk).

Random weights are fine for time; the architecture is the full-size one (ViT-B by default).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignsam_gym import __version__
from policies.benchmarks.common_approach import CommonApproach
from policies.benchmarks.machine import command_line, machine


def run_episode_benchmark(model_type: str = "vit_b", checkpoint: str | None = None, episodes: int = 3,
                          task: str = "synthetic-saliency", max_prompts: int = 15, device: str = "cpu",
                          progress: bool = True) -> dict[str, Any]:
    """Run both ways and return a JSON-ready dict with medians and their ratio."""
    import gymnasium as gym

    import alignsam_gym  # noqa: F401
    from alignsam_gym.backends.sam import save_random_sam

    with tempfile.TemporaryDirectory(prefix="alignsam-bench-") as tmp:
        if checkpoint is None:
            checkpoint = str(save_random_sam(Path(tmp) / f"random_{model_type}.pth", model_type))
        env = gym.make("AlignSAM-v0", backend="sam", sam_checkpoint=checkpoint, task=task, num_images=episodes,
                       max_prompts=max_prompts, device=device, cache_dir=str(Path(tmp) / "cache"))
        inner = env.unwrapped
        rng = np.random.default_rng(0)
        actions = [rng.integers(0, inner.action_space.n, max_prompts) for _ in range(episodes)]

        # Warm the disk cache (and the model) through the env itself.
        for i in range(episodes):
            env.reset(seed=i, options={"image_index": i})

        env_times, decode_times = [], []
        for i in range(episodes):
            inner.cache.clear()
            start = time.perf_counter()
            env.reset(seed=i, options={"image_index": i})
            for a in actions[i]:
                t = time.perf_counter()
                env.step(int(a))
                decode_times.append(time.perf_counter() - t)
            env_times.append(time.perf_counter() - start)
            if progress:
                print(f"env_cached episode {i}: {env_times[-1]:.3f} s", flush=True)

        common = CommonApproach(inner.backend)
        predictor_times = []
        for i in range(episodes):
            env.reset(seed=i, options={"image_index": i})  # the same image and initial points
            start = time.perf_counter()
            common.reset(inner.episode)
            for a in actions[i]:
                common.step(inner.action_points[int(a)])
            predictor_times.append(time.perf_counter() - start)
            if progress:
                print(f"predictor_per_reset episode {i}: {predictor_times[-1]:.3f} s", flush=True)

    base, ours = float(np.median(predictor_times)), float(np.median(env_times))
    return {
        "benchmark": "sam-episode",
        "model_type": model_type, "weights": "random" if "random_" in checkpoint else checkpoint,
        "task": task, "image_size": 800, "max_prompts": max_prompts, "episodes": episodes, "device": device,
        "torch_threads": torch.get_num_threads(),
        "predictor_per_reset_s": [round(t, 4) for t in predictor_times],
        "env_cached_s": [round(t, 4) for t in env_times],
        "predictor_per_reset_median_s": round(base, 4), "env_cached_median_s": round(ours, 4),
        "speedup_median": round(base / ours, 2),
        "env_step_ms_median": round(1000 * float(np.median(decode_times)), 2),
        "machine": machine(), "command": command_line(),
        "package_version": __version__,
    }
