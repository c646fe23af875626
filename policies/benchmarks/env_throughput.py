"""``alignsam bench env``: env throughput of every way of running AlignSAM, and PPO rollout memory.

All in one process and one run, so the ratios compare like with like. Per backend and device:

- ``common``: the common approach, one env (:mod:`policies.benchmarks.common_approach`): SAM's
  ``SamPredictor.set_image`` and ``predict`` of the initial points at every reset and ``predict``
  (all points so far) at every step; for the embedded backend ``encode`` and ``decode`` likewise, no cache;
- ``single_cached``: one ``AlignSAMEnv`` with every embedding in the cache;
- ``dummy_N``: N single envs in SB3's ``DummyVecEnv`` (stepped one after another);
- ``batched_N``: ``AlignSAMVecEnv`` with N envs (one shared SRM and one ``decode_batch`` per step:
  a batched decoder forward on CUDA, one decode after another on CPU; ``batched_decoder_forward``
  says which ran).

Each is timed over whole episodes (reset + ``max_prompts`` steps) after a warm-up episode:
env-steps per second (N envs x steps / time) and milliseconds per episode (time per env-episode).
Random SAM weights are fine for time; the architecture is the full-size one (ViT-B by default).

``rollout_memory``: one PPO-preset rollout (``n_steps`` x ``n_envs`` steps) with each observation
mode: the rollout buffer's observation bytes and the peak of Python-tracked memory (numpy buffers
included, torch tensors not; tracemalloc) during ``learn`` of exactly one rollout and its update.
"""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from alignsam_gym import ENV_ID  # importing the package registers the ids
from alignsam_gym import __version__
from alignsam_gym.devices import cuda_device_count
from policies.benchmarks.common_approach import CommonApproach
from policies.benchmarks.machine import command_line, machine



def _time_episodes(reset: Callable[[int], None], step: Callable[[], None], episodes: int, max_prompts: int,
                   num_envs: int) -> dict[str, float]:
    """Time ``episodes`` whole episodes of ``num_envs`` envs after one warm-up episode."""
    reset(-1)
    for _ in range(max_prompts):
        step()
    times = []
    for episode in range(episodes):
        start = time.perf_counter()
        reset(episode)
        for _ in range(max_prompts):
            step()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"episode_s": [round(t, 4) for t in times], "steps_per_s": round(num_envs * max_prompts / median, 2),
            "ms_per_episode": round(1000 * median / num_envs, 2)}


def _common_approach(env_kwargs: dict[str, Any], episodes: int, max_prompts: int) -> dict[str, float]:
    """One env's episodes the common way (:class:`~policies.benchmarks.common_approach.CommonApproach`).

    The env only supplies the image, ground truth and initial points (its own embeddings are cached
    beforehand, so that part costs one decode); the timed work is the encode and decodes outside it.
    """
    env = gym.make(ENV_ID, **env_kwargs)
    inner = env.unwrapped
    for i in range(len(inner.dataset)):
        env.reset(options={"image_index": i})
    rng = np.random.default_rng(0)
    common = CommonApproach(inner.backend)

    def reset(episode: int) -> None:
        env.reset(seed=max(episode, 0))  # draws the image and the initial points (the timed work follows)
        common.reset(inner.episode)

    def step() -> None:
        common.step(inner.action_points[int(rng.integers(inner.action_space.n))])

    return _time_episodes(reset, step, episodes, max_prompts, 1)


def _vec_timing(vec_env: Any, episodes: int, max_prompts: int, seed: int) -> dict[str, float]:
    """Time an SB3 VecEnv: its autoreset starts every episode after the first reset."""
    rng = np.random.default_rng(seed)
    n = vec_env.num_envs
    started = {"done": False}

    def reset(episode: int) -> None:
        if not started["done"]:
            vec_env.seed(seed)
            vec_env.reset()
            started["done"] = True

    def step() -> None:
        vec_env.step(rng.integers(vec_env.action_space.n, size=n))

    return _time_episodes(reset, step, episodes, max_prompts, n)


def run_env_benchmark(backends: tuple[str, ...] = ("lite", "sam"), sizes: tuple[int, ...] = (1, 8, 32),
                      dummy_sizes: tuple[int, ...] = (8, 32), model_type: str = "vit_b",
                      sam_checkpoint: str | None = None, devices: tuple[str, ...] | None = None, episodes: int = 2,
                      lite_episodes: int = 10,
                      max_prompts: int = 15, num_images: int = 4, task: str = "synthetic-saliency",
                      rollout_envs: int = 4, progress: bool = True) -> dict[str, Any]:
    """Run every configuration and return a JSON-ready dict (see the module docstring)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    from alignsam_gym.backends.sam import save_random_sam
    from policies.sb3.vec_env import AlignSAMVecEnv

    devices = devices or (("cpu", "cuda") if cuda_device_count() > 0 else ("cpu",))
    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="alignsam-bench-env-") as tmp:
        checkpoint = sam_checkpoint
        if "sam" in backends and checkpoint is None:
            checkpoint = str(save_random_sam(Path(tmp) / f"random_{model_type}.pth", model_type))
        for backend in backends:
            backend_episodes = lite_episodes if backend == "lite" else episodes  # lite episodes are short: more of them
            for device in devices:
                kwargs: dict[str, Any] = {"task": task, "num_images": num_images, "max_prompts": max_prompts,
                                          "backend": backend, "device": device, "cache_dir": str(Path(tmp) / "cache")}
                if backend == "sam":
                    kwargs["sam_checkpoint"] = checkpoint
                row = {"backend": backend, "device": device, "model_type": model_type if backend == "sam" else None}

                def record(name: str, timing: dict[str, float]) -> None:
                    row[name] = timing
                    if progress:
                        print(f"{backend:4s} {device:4s} {name:14s} {timing['steps_per_s']:9.2f} steps/s "
                              f"{timing['ms_per_episode']:10.1f} ms/episode", flush=True)

                record("common", _common_approach(kwargs, backend_episodes, max_prompts))
                single = gym.make(ENV_ID, **kwargs)
                row["batched_decoder_forward"] = bool(getattr(single.unwrapped.backend, "batch_decode", False))
                for i in range(num_images):  # every embedding into the cache (and the memory LRU)
                    single.reset(options={"image_index": i})
                rng = np.random.default_rng(0)
                record("single_cached", _time_episodes(
                    lambda episode: single.reset(seed=max(episode, 0)),
                    lambda: single.step(int(rng.integers(single.action_space.n))), backend_episodes, max_prompts, 1))
                single.close()
                for n in dummy_sizes:
                    dummy = make_vec_env(ENV_ID, n_envs=n, env_kwargs=kwargs, vec_env_cls=DummyVecEnv)
                    record(f"dummy_{n}", _vec_timing(dummy, backend_episodes, max_prompts, seed=0))
                    dummy.close()
                for n in sizes:
                    batched = AlignSAMVecEnv(n, **kwargs)
                    record(f"batched_{n}", _vec_timing(batched, backend_episodes, max_prompts, seed=0))
                    batched.close()
                for n in dummy_sizes:
                    if f"batched_{n}" in row:
                        row[f"batched_{n}_over_dummy_{n}"] = round(
                            row[f"batched_{n}"]["steps_per_s"] / row[f"dummy_{n}"]["steps_per_s"], 2)
                row["single_cached_over_common"] = round(
                    row["single_cached"]["steps_per_s"] / row["common"]["steps_per_s"], 2)
                results.append(row)
                gc.collect()
        memory = rollout_memory(task=task, num_images=num_images, n_envs=rollout_envs, progress=progress)
    return {
        "benchmark": "env-throughput", "task": task, "max_prompts": max_prompts, "episodes": episodes,
        "lite_episodes": lite_episodes,
        "num_images": num_images, "torch_threads": torch.get_num_threads(), "results": results,
        "rollout_memory": memory,
        "machine": machine(), "command": command_line(),
        "package_version": __version__, "wall_s": round(time.perf_counter() - start, 1),
    }


def rollout_memory(task: str = "synthetic-saliency", num_images: int = 4, n_envs: int = 4,
                   obs_modes: tuple[str, ...] = ("full", "compact"), progress: bool = True) -> dict[str, Any]:
    """Memory of one PPO-preset rollout (``n_steps`` x ``n_envs``) per observation mode (embedded backend,
    the env's default ``obs_size``)."""
    from policies.sb3.presets import PRESETS, make_model
    from policies.sb3.vec_env import AlignSAMVecEnv

    out: dict[str, Any] = {"algorithm": "ppo", "n_steps": PRESETS["ppo"]["n_steps"], "n_envs": n_envs}
    for mode in obs_modes:
        env = AlignSAMVecEnv(n_envs, task=task, num_images=num_images, obs_mode=mode)
        model = make_model("ppo", env, device="cpu", seed=0)
        model.learn(n_envs)  # warm: models loaded, embeddings cached, SB3 set up
        gc.collect()
        tracemalloc.start()
        model.learn(model.n_steps * n_envs, reset_num_timesteps=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        buffer = model.rollout_buffer.observations
        buffer_bytes = sum(v.nbytes for v in buffer.values()) if isinstance(buffer, dict) else buffer.nbytes
        out[mode] = {"rollout_buffer_observation_bytes": int(buffer_bytes), "tracemalloc_peak_bytes": int(peak),
                     "observation_space": repr(env.observation_space)}
        if progress:
            print(f"ppo rollout {mode:8s}: buffer observations {buffer_bytes / 2**20:8.1f} MiB, "
                  f"tracked peak {peak / 2**20:8.1f} MiB", flush=True)
        env.close()
        del model, env
        gc.collect()
    if "full" in out and "compact" in out:
        out["compact_over_full_buffer"] = round(out["compact"]["rollout_buffer_observation_bytes"]
                                                / out["full"]["rollout_buffer_observation_bytes"], 5)
        out["compact_over_full_peak"] = round(out["compact"]["tracemalloc_peak_bytes"]
                                              / out["full"]["tracemalloc_peak_bytes"], 4)
    return out
