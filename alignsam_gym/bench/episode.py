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

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignsam_gym import __version__


def run_episode_benchmark(model_type: str = "vit_b", checkpoint: str | None = None, episodes: int = 3,
                          task: str = "synthetic-saliency", max_prompts: int = 15, device: str = "cpu",
                          progress: bool = True) -> dict[str, Any]:
    """Run both ways and return a JSON-ready dict with medians and their ratio."""
    import gymnasium as gym
    from segment_anything import SamPredictor

    import alignsam_gym  # noqa: F401
    from alignsam_gym.backends.sam import OFFICIAL_ARCHITECTURES, build_sam, load_sam

    with tempfile.TemporaryDirectory(prefix="alignsam-bench-") as tmp:
        if checkpoint is None:
            torch.manual_seed(0)
            checkpoint = str(Path(tmp) / f"random_{model_type}.pth")
            torch.save(build_sam(OFFICIAL_ARCHITECTURES[model_type]).state_dict(), checkpoint)
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

        model, _ = load_sam(checkpoint)
        predictor = SamPredictor(model.to(device))
        predictor_times = []
        for i in range(episodes):
            env.reset(seed=i, options={"image_index": i})
            image, points, labels = inner._image, [p.copy() for p in inner._points], list(inner._labels)
            start = time.perf_counter()
            predictor.set_image(image)
            predictor.predict(point_coords=np.array(points) - 0.5, point_labels=np.array(labels), multimask_output=False)
            for a in actions[i]:
                points.append(inner.action_points[int(a)])
                labels.append(int(inner._mask[int(points[-1][1]), int(points[-1][0])]))
                predictor.predict(point_coords=np.array(points) - 0.5, point_labels=np.array(labels),
                                  multimask_output=False)
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
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "package_version": __version__,
    }
