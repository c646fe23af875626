"""Every check that needs a GPU, in one script: ``python experiments/gpu_check.py --json OUT`` (``make gpu-check``).

Without a GPU it writes ``{"gpu": false, ...}`` and exits 0. With one (at most about 8 minutes on one GPU):

1. ``batched_vs_single``: SAM ViT-B (random weights) with SRM labels, the batched env at N = 32 against
   32 single envs stepped one after another, env-steps per second (bar: at least 5x);
2. ``batched_sizes``: env-steps per second of the batched env at N = 8, 32, 64;
3. ``training``: PPO + SRM end to end on CUDA, batched env, compact observations: steps per second,
   peak GPU memory;
4. ``cache_build``: images per second of ``alignsam cache build`` (the GPU batch with out-of-memory halving);
5. ``device_findings``: the device handling exercised on real CUDA: no CUDA initialisation by building
   envs before a fork; ``auto``/``cuda``/``cuda:0`` backends sharing one model; the SRM on the GPU;
   the cache identity naming the device; the CUDA random state in a checkpoint; batched upscaling equal
   to the loop; an out-of-range ``cuda:N`` refused at once.

It needs the SAM architecture only (random weights; no EfficientNet wheel), the synthetic tasks (no data),
and this package with gymnasium, stable-baselines3, sb3-contrib, segment-anything and open_clip
(``make gpu-wheels`` prepares the wheels a machine without a package index needs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from alignsam_gym.atomic import write_json

TASK = "synthetic-saliency"


def _steps_per_second(step: Callable[[], None], reset: Callable[[], None], num_envs: int, steps: int) -> float:
    reset()
    step()  # warm-up: kernels, caches
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return num_envs * steps / (time.perf_counter() - start)


def _env_kwargs(checkpoint: str, cache: str, num_images: int) -> dict[str, Any]:
    return {"task": TASK, "backend": "sam", "sam_checkpoint": checkpoint, "num_images": num_images,
            "device": "cuda", "cache_dir": cache, "obs_mode": "compact"}


def batched_vs_single(checkpoint: str, cache: str, steps: int = 30) -> dict[str, Any]:
    import gymnasium as gym

    from policies.sb3.vec_env import AlignSAMVecEnv

    kwargs = _env_kwargs(checkpoint, cache, num_images=8)
    singles = [gym.make("AlignSAM-v0", **kwargs) for _ in range(32)]
    rng = np.random.default_rng(0)

    def reset_singles() -> None:
        for i, env in enumerate(singles):
            env.reset(seed=i)

    def step_singles() -> None:
        for env in singles:
            if env.unwrapped.episode.done:
                env.reset()
            env.step(int(rng.integers(100)))

    single = _steps_per_second(step_singles, reset_singles, 32, steps)
    out: dict[str, Any] = {"single_32_steps_per_s": round(single, 1)}
    for n in (8, 32, 64):
        env = AlignSAMVecEnv(n, **kwargs)
        rate = _steps_per_second(lambda: env.step(rng.integers(100, size=n)), env.reset, n, steps)
        out[f"batched_{n}_steps_per_s"] = round(rate, 1)
        env.close()
    out["batched_32_over_single_32"] = round(out["batched_32_steps_per_s"] / single, 2)
    out["bar_5x_met"] = out["batched_32_over_single_32"] >= 5
    return out


def training(checkpoint: str, cache: str, timesteps: int = 2048) -> dict[str, Any]:
    from policies.runs import RunConfig, train

    torch.cuda.reset_peak_memory_stats()
    config = RunConfig.from_dict({"algorithm": "ppo", "seed": 0, "total_timesteps": timesteps, "n_envs": 16,
                                  "vec_env": "batched", "device": "cuda", "checkpoint_every": None,
                                  "env": {**_env_kwargs(checkpoint, cache, num_images=16), "obs_size": 16},
                                  "hyperparameters": {"n_steps": 64, "batch_size": 256, "n_epochs": 4}})
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run = train(config, Path(out) / "run", verbose=False)
        seconds = time.perf_counter() - start
        rng_state = torch.load(Path(run) / "rng.pt", weights_only=True)
    return {"timesteps": timesteps, "n_envs": 16, "seconds": round(seconds, 1),
            "steps_per_s": round(timesteps / seconds, 1),
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "checkpoint_has_cuda_rng": "cuda" in rng_state}


def cache_build(checkpoint: str, images: int = 32) -> dict[str, Any]:
    from alignsam_gym.backends import EmbeddingCache, shared_backend
    from alignsam_gym.data.tasks import make_dataset
    from alignsam_gym.precompute import encode_dataset

    backend = shared_backend("sam", device="cuda", checkpoint=checkpoint)
    with tempfile.TemporaryDirectory() as folder:
        report = encode_dataset(EmbeddingCache(directory=folder), backend, make_dataset(TASK, "test", images))
    return {"images": report.encoded, "batch_size": report.batch_size, "seconds": report.seconds,
            "images_per_s": round(report.encoded / report.seconds, 2)}


def device_findings(checkpoint: str) -> dict[str, Any]:
    import subprocess
    import sys

    from alignsam_gym.backends import shared_backend
    from alignsam_gym.backends import sam_decoder
    from alignsam_gym.devices import parse_device

    out: dict[str, Any] = {}
    probe = ("import os, torch, gymnasium as gym, alignsam_gym\n"
             f"env = gym.make('AlignSAM-v0', num_images=1, backend='sam', sam_checkpoint={checkpoint!r})\n"
             "pid = os.fork()\n"
             "if pid == 0:\n"
             "    torch.zeros(1, device='cuda'); os._exit(0)\n"
             "_, status = os.waitpid(pid, 0); print(status)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    out["fork_after_building_env_uses_cuda"] = result.returncode == 0 and result.stdout.strip() == "0"
    models = {id(shared_backend("sam", device=d, checkpoint=checkpoint).model()) for d in ("auto", "cuda", "cuda:0")}
    out["one_model_for_auto_cuda_cuda0"] = len(models) == 1
    backend = shared_backend("sam", device="cuda", checkpoint=checkpoint)
    out["cache_identity"] = backend.identity
    out["cache_identity_names_device"] = "/cuda" in backend.identity
    try:
        parse_device(f"cuda:{torch.cuda.device_count()}")
        out["out_of_range_cuda_refused"] = False
    except ValueError:
        out["out_of_range_cuda_refused"] = True
    import gymnasium as gym

    env = gym.make("AlignSAM-v0", backend="sam", sam_checkpoint=checkpoint, num_images=2, device="cuda")
    env.reset(seed=0)
    env.step(5)
    out["srm_device"] = str(env.unwrapped.srm.device)
    model = backend.model()
    tokens = torch.randn(8, 64 * 64, 256, device="cuda")
    hyper = torch.randn(8, 1, 32, device="cuda")
    with torch.no_grad():
        upscaling = model.mask_decoder.output_upscaling
        loop = sam_decoder._upscaled_masks(upscaling, tokens, hyper, 64, 64, batched=False)
        batched = sam_decoder._upscaled_masks(upscaling, tokens, hyper, 64, 64, batched=True)
    out["batched_upscaling_max_abs_diff"] = float((loop - batched).abs().max())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    args = parser.parse_args()
    result: dict[str, Any] = {"gpu": torch.cuda.device_count() > 0, "platform": platform.platform(),
                              "torch": torch.__version__, "command": "python experiments/gpu_check.py --json " + args.json}
    if result["gpu"]:
        result["device"] = torch.cuda.get_device_name(0)
        from alignsam_gym.backends.sam import save_random_sam

        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = str(save_random_sam(Path(folder) / "random_vit_b.pth", "vit_b"))
            cache = str(Path(folder) / "cache")
            os.environ.setdefault("ALIGNSAM_CACHE", cache)
            for name, check in (("device_findings", lambda: device_findings(checkpoint)),
                                ("cache_build", lambda: cache_build(checkpoint)),
                                ("batched_vs_single", lambda: batched_vs_single(checkpoint, cache)),
                                ("training", lambda: training(checkpoint, cache))):
                t0 = time.perf_counter()
                try:
                    result[name] = check()
                except Exception:  # one failing check must not hide the others' numbers
                    result[name] = {"error": traceback.format_exc(limit=8)}
                result[name + "_s"] = round(time.perf_counter() - t0, 1)
                print(name, json.dumps(result[name], indent=1), flush=True)
        result["wall_s"] = round(time.perf_counter() - start, 1)
    else:
        result["note"] = "no CUDA device: nothing to check here (the device tests run on the CPU in the test suite)"
    write_json(args.json, result)
    print(f"wrote {args.json} (gpu: {result['gpu']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
