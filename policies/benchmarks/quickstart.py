"""``alignsam quickstart``: the README's main job, a built-in benchmark config run by the grid runner.

Trains the full AlignSAM system (PPO agent + SRM) on every embedded task with two seeds, then evaluates
each trained agent against the random policy *with the same trained SRM* on every test image once, with the
paper's evaluation protocol (SRM initial prompts, SRM labels). Writes ``report.json`` (a list ``results``:
one record per task, policy and seed; ``summary``: means per task and policy), ``report.md`` (with PPO's
margins over random) and ``plots/``, like ``alignsam benchmark``.

Sized for about 10 reference units with a cold embedding cache (measured by ``experiments/time_main_job.py``;
the time, machine and commit are in ``experiments/results/quickstart/time.json``): 2 seeds, and PPO with
8 envs of 64 steps per rollout (the same 512 steps per update), 4 epochs in minibatches of 128 and a
32-channel extractor (``alignsam bench train``'s ``fast`` variant, 1.45x the preset's training speed);
with 3 seeds and the preset it took about twice as long, most of it in env steps, SRM updates and PPO epochs
(``experiments/results/quickstart/profile.txt``).

The embedded backend runs with decoder ``v1`` here (``lite_decoder`` / ``--lite-decoder v2`` changes it),
the decoder its bars were set with, and the faster one: with the default decoder (v2, more accurate under
the click protocol) PPO's mIoU beat random's on 1 of 5 tasks in the earlier quickstart: v2 makes good use
of the background clicks that random prompts mostly are, and the paper's +-1 reward teaches PPO to click
foreground (a report measured before the benchmark protocol, since deleted; rerun with ``--lite-decoder v2``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

from alignsam_gym.data.tasks import SYNTHETIC_TASKS
from policies.benchmarks.grid import run_benchmark

#: sized for about 10 reference units (the module docstring; experiments/results/quickstart)
QUICKSTART: dict[str, Any] = {
    "name": "quickstart", "backend": "lite", "backend_kwargs": {"decoder": "v1"}, "tasks": list(SYNTHETIC_TASKS),
    "seeds": [0, 1],
    "policies": ["ppo", "random"], "label_sources": ["srm"], "branches": ["default"], "max_prompts": [15],
    "images": None, "test_images": 20, "init_prompts": "srm",
    "train": {"total_timesteps": 2048, "num_images": 20, "n_envs": 8, "env": {"obs_size": 10},
              "hyperparameters": {"n_steps": 64, "n_epochs": 4, "batch_size": 128,
                                  "policy_kwargs": {"features_extractor_kwargs": {"channels": 32}}}},
}
REPORT_NAME = "report"


def quickstart_config(tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
                      timesteps: int | None = None, images: int | None = None, num_images: int | None = None,
                      test_images: int | None = None, lite_decoder: str | None = None) -> dict[str, Any]:
    """The quickstart's benchmark config with some settings changed (None keeps the default)."""
    config = copy.deepcopy(QUICKSTART)
    if lite_decoder is not None:
        config["backend_kwargs"] = {"decoder": lite_decoder}
    if tasks is not None:
        config["tasks"] = list(tasks)
    if seeds is not None:
        config["seeds"] = list(seeds)
    for key, value in (("total_timesteps", timesteps), ("num_images", num_images)):
        if value is not None:
            config["train"][key] = value
    for key, value in (("images", images), ("test_images", test_images)):
        if value is not None:
            config[key] = value
    return config


def run_quickstart(out: str | Path, progress: bool = True, **settings: Any) -> dict[str, Any]:
    """Run the quickstart (``settings``: see :func:`quickstart_config`) into ``out``; rerunning resumes."""
    return run_benchmark(quickstart_config(**settings), out, progress=progress, report_name=REPORT_NAME)
