"""``alignsam bench train``: training throughput (env steps per second) of PPO + SRM, variant against baseline.

Every variant trains the same config (the quickstart's until it took the ``fast`` settings: PPO + SRM, 4 envs,
``obs_size`` 10, 2,048 steps on the embedded backend with decoder v1 by default) with one change, in one process
and one run, repeated and interleaved (baseline, variant, baseline, ...) so the machine's noise hits all alike; the report gives
each variant's median steps per second and its ratio to the baseline's median, and whether the
variant trains the same weights as the baseline (same seed: bit-identical SRM and policy, or not).
A profile of one baseline run splits its time into the env step, the SRM callback's update and the
policy update.

Variants (``--variants``), the same training (bit-identical weights where the arithmetic is the same; not
``threads1``, whose float reductions run in another order): ``batched`` (``vec_env: batched``),
``batched_compact`` (and compact observations), ``subproc`` (one process per env), ``threads1`` (torch on
one thread). Changes that alter what is learned (the report says so: different weights), to be judged by
their results as well: ``epochs4`` (PPO 4 epochs of minibatches of 128 instead of 10 of 64), ``envs8`` (8
envs of 64 steps per rollout: the same 512 steps, half as many SRM updates, each on 8 states), ``narrow``
(the policy's convolutions 32 wide instead of 64), ``fast`` (the three together). Machine throughput:
``pair`` (two runs side by side in two processes, torch on one thread each, seeds 0 and 1: what a grid of
runs such as the leaderboard gets from the machine; steps per second count both runs) and ``fast_pair``.
"""

from __future__ import annotations

import cProfile
import multiprocessing
import pstats
import re
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignsam_gym import __version__
from policies.benchmarks.machine import command_line, machine
from policies.benchmarks.quickstart import QUICKSTART

#: the PPO preset as the quickstart trained it until it took the ``fast`` variant's settings (4 envs, obs_size 10,
#: 2,048 steps, 20 images, the quickstart's decoder), minus checkpoints: the committed throughput results' baseline
BASELINE: dict[str, Any] = {"algorithm": "ppo", "seed": 0, "total_timesteps": 2048, "n_envs": 4, "vec_env": "dummy",
                            "checkpoint_every": None,
                            "env": {"task": "synthetic-saliency", "num_images": 20, "obs_size": 10,
                                    "backend_kwargs": QUICKSTART["backend_kwargs"]}}
#: one change each to the baseline (``env`` and ``srm`` merged key by key, ``hyperparameters`` over the preset's)
VARIANTS: dict[str, dict[str, Any]] = {
    "batched": {"vec_env": "batched"},
    "batched_compact": {"vec_env": "batched", "env": {"obs_mode": "compact"}},
    "subproc": {"vec_env": "subproc"},
    "threads1": {},
    "epochs4": {"hyperparameters": {"n_epochs": 4, "batch_size": 128}},
    "envs8": {"n_envs": 8, "hyperparameters": {"n_steps": 64}},
    "narrow": {"hyperparameters": {"policy_kwargs": {"features_extractor_kwargs": {"channels": 32}}}},
    # what the quickstart trains with: the same 512 steps per rollout, fewer epochs, a narrower extractor
    "fast": {"n_envs": QUICKSTART["train"]["n_envs"], "hyperparameters": QUICKSTART["train"]["hyperparameters"]},
}
VARIANTS["pair"] = VARIANTS["threads1"]
VARIANTS["fast_pair"] = VARIANTS["fast"]
#: how a variant runs: torch threads per run, and runs side by side in separate processes (seeds 0, 1, ...)
RUNNERS: dict[str, dict[str, int]] = {"threads1": {"threads": 1}, "pair": {"threads": 1, "processes": 2},
                                      "fast_pair": {"threads": 1, "processes": 2}}
#: the functions whose cumulative time the profile reports, by what they are
PROFILE_PARTS = {"env step": "core.py:.*\\(step\\)", "SRM callback update": "callback.py:.*\\(_on_step\\)",
                 "policy update": "ppo.py:.*\\(train\\)", "rollout collection": "collect_rollouts"}


def _config(variant: str, timesteps: int, task: str) -> dict[str, Any]:
    change = VARIANTS.get(variant, {})
    env = {**BASELINE["env"], "task": task, **change.get("env", {})}
    srm = {**BASELINE.get("srm", {}), **change.get("srm", {})}
    return {**BASELINE, **{k: v for k, v in change.items() if k not in ("env", "srm")}, "env": env, "srm": srm,
            "total_timesteps": timesteps}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from stable_baselines3 import PPO

    from policies.runs import load_srm_weights

    policy = PPO.load(run / "model.zip", device="cpu").policy.state_dict()
    return {**{f"policy.{k}": v for k, v in policy.items()},
            **{f"srm.{k}": v for k, v in load_srm_weights(run / "srm.pt").items()}}


def _train_with_threads(config: dict[str, Any], folder: Path, threads: int | None) -> None:
    """Train one run with torch on ``threads`` threads (None: as it is); a process pool's worker."""
    from policies.runs import train

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        train(config, folder, verbose=False)
    finally:
        torch.set_num_threads(before)


def _train_once(variant: str, config: dict[str, Any], folder: Path) -> float:
    """Seconds to train ``variant``'s run(s) into ``folder`` (``folder/p<i>`` for runs side by side)."""
    shutil.rmtree(folder, ignore_errors=True)
    runner = RUNNERS.get(variant, {})
    processes, threads = runner.get("processes", 1), runner.get("threads")
    start = time.perf_counter()
    if processes == 1:
        _train_with_threads(config, folder, threads)
    else:  # a fresh pool per timed run: starting the workers is part of what side-by-side runs cost
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = [pool.submit(_train_with_threads, {**config, "seed": config["seed"] + i}, folder / f"p{i}", threads)
                    for i in range(processes)]
            for run in runs:
                run.result()
    return time.perf_counter() - start


def _first_run(variant: str, folder: Path) -> Path:
    """The run folder of ``variant`` trained with the baseline's seed."""
    return folder / "p0" if RUNNERS.get(variant, {}).get("processes", 1) > 1 else folder


def _profile(config: dict[str, Any], folder: Path) -> dict[str, float]:
    """Seconds of one baseline run spent in each of :data:`PROFILE_PARTS` (cumulative, may nest)."""
    from policies.runs import train

    shutil.rmtree(folder, ignore_errors=True)
    profiler = cProfile.Profile()
    profiler.runcall(train, config, folder, verbose=False)
    stats = pstats.Stats(profiler)
    total = max(v[3] for v in stats.stats.values())
    out = {"total_s": round(total, 2)}
    for name, pattern in PROFILE_PARTS.items():
        matched = [v[3] for (file, line, func), v in stats.stats.items() if re.search(pattern, f"{file}:{line}({func})")]
        out[f"{name} s"] = round(max(matched), 2) if matched else None
    return out


def run_train_benchmark(variants: tuple[str, ...] = ("batched", "batched_compact", "subproc", "threads1"),
                        timesteps: int = 2048, repeats: int = 3, task: str = "synthetic-saliency",
                        profile: bool = True) -> dict[str, Any]:
    """Time the baseline and each variant ``repeats`` times, interleaved; see the module docstring."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    if repeats < 1 or timesteps < 64:
        raise ValueError(f"repeats must be >= 1 and timesteps >= 64, got {repeats} and {timesteps}")
    scratch = Path(tempfile.mkdtemp(prefix="alignsam-bench-train-"))
    try:
        names = ("baseline", *variants)
        configs = {name: _config(name, timesteps, task) for name in names}
        _train_once("baseline", {**configs["baseline"], "total_timesteps": 64,
                                 "hyperparameters": {"n_steps": 16}}, scratch / "warm")  # cache the embeddings
        seconds: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(repeats):
            for name in names:
                seconds[name].append(_train_once(name, configs[name], scratch / name))
        reference = _weights(_first_run("baseline", scratch / "baseline"))
        results = []
        base_median = float(np.median(seconds["baseline"]))
        for name in names:
            median = float(np.median(seconds[name]))
            weights = _weights(_first_run(name, scratch / name))
            side_by_side = RUNNERS.get(name, {}).get("processes", 1)
            steps = timesteps * side_by_side
            identical = weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k])
                                                                   for k in reference)
            results.append({"variant": name, "config_change": VARIANTS.get(name, {}),
                            "seconds": [round(s, 2) for s in seconds[name]],
                            "median_s": round(median, 2), "runs_side_by_side": side_by_side,
                            "steps_per_s": round(steps / median, 1),
                            "speedup_over_baseline": round(base_median / median * steps / timesteps, 3),
                            "same_weights_as_baseline": bool(identical)})
        report = {"benchmark": "train", "baseline_config": configs["baseline"], "timesteps": timesteps,
                  "repeats": repeats, "results": results, "package_version": __version__,
                  "command": command_line(), "machine": machine()}
        if profile:
            report["baseline_profile"] = _profile(configs["baseline"], scratch / "profile")
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
