"""``alignsam rllib --config FILE --out DIR``: RLlib's PPO (new API stack) on AlignSAM-v0.

The env is registered with ``ray.tune.registry.register_env`` under :data:`RLLIB_ENV` and built by every
env runner from the config's ``env`` kwargs; the network is :class:`~policies.rllib.module.AlignSAMRLModule`
(the SB3 plugin's architecture). The SRM is not trained here: label with ``label_source: gt`` (oracle), or
with ``label_source: srm`` and ``srm_checkpoint: PATH`` (a run's ``srm.pt`` from ``alignsam train``, frozen).

A config (YAML) holds some of these keys; the rest take the defaults of :class:`RLlibConfig`::

    env: {task: synthetic-saliency, num_images: 20, obs_size: 10, label_source: gt}
    seed: 0
    iterations: 10              # PPO training iterations (alignsam rllib --iterations overrides)
    num_env_runners: 2          # env-runner processes (Ray actors), each with num_envs_per_env_runner envs
    train_batch_size: 512       # env steps per iteration
    minibatch_size: 128
    num_epochs: 4
    lr: 1.0e-4
    model: {channels: 64, grid: 10, features_dim: 256}

``DIR`` receives ``config.yaml`` (every default filled in), ``progress.jsonl`` (one line per iteration:
env steps, episode return, wall time) and ``checkpoint/`` (``Algorithm.save_to_path``, replaced as a whole
after every iteration, so a crash leaves the previous one).
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym

from alignsam_gym import ENV_ID
from alignsam_gym.atomic import append_line, replace_dir, write_yaml
from policies.configs import check_env_block, check_keys

RLLIB_ENV = "alignsam-rllib"


@dataclass(frozen=True)
class RLlibConfig:
    """One RLlib PPO run (see the module docstring)."""

    env: dict[str, Any] = field(default_factory=lambda: {"task": "synthetic-saliency", "obs_size": 10,
                                                         "label_source": "gt"})
    seed: int = 0
    iterations: int = 10
    num_env_runners: int = 2
    num_envs_per_env_runner: int = 1
    train_batch_size: int = 512
    minibatch_size: int = 128
    num_epochs: int = 4
    lr: float = 1e-4
    gamma: float = 0.99
    entropy_coeff: float = 0.01
    num_gpus_per_learner: float = 0
    model: dict[str, Any] = field(default_factory=lambda: {"channels": 64, "grid": 10, "features_dim": 256})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RLlibConfig:
        """A config from a mapping (``env`` and ``model`` merged onto the defaults).

        :raises ValueError: for unknown keys or values out of range, naming them.
        """
        raw = copy.deepcopy(check_keys("config", raw, [f.name for f in fields(cls)]))
        default = cls()
        config = cls(**{**asdict(default), **raw, "env": {**default.env, **(raw.get("env") or {})},
                        "model": {**default.model, **(raw.get("model") or {})}})
        check_env_block("env", config.env)
        for name in ("iterations", "train_batch_size", "minibatch_size", "num_epochs", "num_envs_per_env_runner"):
            if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
                raise ValueError(f"{name} must be an integer of at least 1, got {getattr(config, name)!r}")
        if not isinstance(config.num_env_runners, int) or config.num_env_runners < 0:
            raise ValueError(f"num_env_runners must be an integer of at least 0, got {config.num_env_runners!r}")
        if config.minibatch_size > config.train_batch_size:
            raise ValueError(f"minibatch_size ({config.minibatch_size}) exceeds train_batch_size "
                             f"({config.train_batch_size})")
        if config.env.get("obs_mode", "full") != "full":
            raise ValueError("RLlib runs take full observations (env obs_mode: full): its env runners are other "
                             "processes, and compact observations name embeddings held in the envs' process")
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_env(env_config: dict[str, Any]) -> gym.Env:
    """The env creator registered for RLlib: ``gym.make("AlignSAM-v0", **env_config)``."""
    import alignsam_gym  # noqa: F401  (registers the ids in the env runner's process)

    return gym.make(ENV_ID, **dict(env_config))


def algorithm_config(config: RLlibConfig) -> Any:
    """The ``PPOConfig`` of a run (new API stack: RLModule + Learner + EnvRunner)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

    from policies.rllib.module import AlignSAMRLModule

    register_env(RLLIB_ENV, make_env)
    return (
        PPOConfig()
        .environment(RLLIB_ENV, env_config=dict(config.env))
        .env_runners(num_env_runners=config.num_env_runners, num_envs_per_env_runner=config.num_envs_per_env_runner)
        .learners(num_gpus_per_learner=config.num_gpus_per_learner)
        .training(lr=config.lr, gamma=config.gamma, entropy_coeff=config.entropy_coeff,
                  train_batch_size_per_learner=config.train_batch_size, minibatch_size=config.minibatch_size,
                  num_epochs=config.num_epochs)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=AlignSAMRLModule, model_config=dict(config.model)))
        .debugging(seed=config.seed)
    )


def _number(value: Any) -> float | None:
    """A metric as a plain float (RLlib reports numpy scalars), None when it is missing."""
    return None if value is None else float(value)


def train_rllib(config: RLlibConfig, out: str | Path, iterations: int | None = None,
                address: str | None = None) -> list[dict[str, Any]]:
    """Train ``iterations`` (default ``config.iterations``) PPO iterations into the new run folder ``out``.

    :param address: a Ray cluster to join (``"auto"``, ``"ray://host:10001"``); default (or ``"local"``) a local
        instance.
    :return: the per-iteration progress records (also in ``out/progress.jsonl``).
    :raises FileExistsError: when ``out`` already holds an RLlib run (nothing is overwritten).
    """
    import ray

    from policies.ray_cluster import connect

    out = Path(out)
    if (out / "checkpoint").exists() or (out / "progress.jsonl").exists():
        raise FileExistsError(f"{out} already holds an RLlib run; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / "config.yaml", config.to_dict())
    started_ray = connect(address or "local")
    algo = algorithm_config(config).build_algo()
    records: list[dict[str, Any]] = []
    try:
        for iteration in range(1, (iterations or config.iterations) + 1):
            start = time.perf_counter()
            result = algo.train()
            runners = result.get("env_runners", {})
            record = {"iteration": iteration,
                      "env_steps": int(result.get("num_env_steps_sampled_lifetime", 0)),
                      "episode_return_mean": _number(runners.get("episode_return_mean")),
                      "episodes": _number(runners.get("num_episodes")),
                      "wall_s": round(time.perf_counter() - start, 2)}
            records.append(record)
            append_line(out / "progress.jsonl", json.dumps(record))
            staging = out / ".checkpoint.new"
            if staging.exists():
                shutil.rmtree(staging)
            algo.save_to_path(str(staging.resolve()))
            replace_dir(staging, out / "checkpoint")
    finally:
        algo.stop()
        if started_ray:
            ray.shutdown()
    return records
