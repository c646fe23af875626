"""The run config: one typed object per training run, saved with it as ``config.yaml`` (CleanRL-style).

A YAML run config holds some of these keys; the rest take the defaults below::

    algorithm: ppo              # a preset of policies.sb3.presets: ppo, a2c, dqn, maskable_ppo, recurrent_ppo
    preset: default             # paper: the paper's PPO schedule and env settings (ppo, maskable_ppo), under
                                # the config's own env and hyperparameters (policies.sb3.presets.paper_hyperparameters)
    seed: 0
    total_timesteps: 20000
    n_envs: 4
    vec_env: dummy              # dummy, subproc (one process per env) or batched (AlignSAMVecEnv)
    device: auto                # the policy's, the SRM callback's and the envs' models' device
    checkpoint_every: 10000     # env steps between checkpoints (null: at the end and on SIGINT/SIGTERM only)
    log_frames_every: null      # env steps between TensorBoard episode images (frames and IoU curve; null: none)
    eval_every: null            # env steps between learning-curve evaluations (curve.jsonl; null: none)
    eval_images: 20             # validation images each of those plays once (a fixed sample of split "val")
    env: {task: synthetic-saliency, obs_size: 10}   # AlignSAM-v0 keyword arguments
    hyperparameters: {}         # preset overrides (SB3 keyword arguments)
    srm: {enabled: true, learning_rate: 1.0e-4, updates_per_step: null, push_every: 1}
    init: {imitation: null}     # {imitation: {expert: oracle, ...}}: clone the policy from an expert before RL
                                # (policies.imitation.ImitationSettings; needs vec_env dummy or batched)
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from policies.configs import check_env_block, check_keys, load_yaml_config
from policies.imitation.settings import ImitationSettings
from policies.sb3.presets import (PAPER_ALGORITHMS, PAPER_ENV, PRESETS, RUN_PRESETS,
                                  paper_hyperparameters)

VEC_ENVS = ("dummy", "subproc", "batched")
#: the algorithms whose rollouts kickstarting can label (on-policy, with per-step action scores)
KICKSTART_ALGORITHMS = ("ppo", "a2c", "maskable_ppo")


@dataclass(frozen=True)
class SRMSettings:
    """How :class:`~policies.sb3.callback.SRMCallback` trains the SRM (``enabled: false``: it is not trained)."""

    enabled: bool = True
    learning_rate: float = 1e-4
    updates_per_step: int | None = None
    push_every: int = 1


@dataclass(frozen=True)
class InitSettings:
    """How a run's policy starts: ``imitation`` clones it from an expert before reinforcement
    (:class:`~policies.imitation.ImitationSettings`); None: SB3's initialisation."""

    imitation: ImitationSettings | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | InitSettings | None) -> InitSettings:
        if isinstance(raw, InitSettings):
            return raw
        raw = check_keys("init", raw or {}, ["imitation"])
        imitation = raw.get("imitation")
        return cls(None if imitation is None else ImitationSettings.from_dict(imitation))


@dataclass(frozen=True)
class RunConfig:
    """One training run (see the module docstring for each field)."""

    algorithm: str = "ppo"
    preset: str = "default"
    seed: int = 0
    total_timesteps: int = 20000
    n_envs: int = 4
    vec_env: str = "dummy"
    device: str = "auto"
    checkpoint_every: int | None = 10000
    log_frames_every: int | None = None
    eval_every: int | None = None
    eval_images: int = 20
    env: dict[str, Any] = field(default_factory=lambda: {"task": "synthetic-saliency", "obs_size": 10})
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    srm: SRMSettings = field(default_factory=SRMSettings)
    init: InitSettings = field(default_factory=InitSettings)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | RunConfig) -> RunConfig:
        """A config from a mapping: ``env`` and ``srm`` are merged key by key onto the defaults, the
        caller's dicts are never changed.

        :raises ValueError: for unknown keys or values out of range, naming them.
        """
        if isinstance(raw, RunConfig):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(f"a run config is a mapping, got {type(raw).__name__}")
        if "eval_episodes" in raw:  # config.yaml of runs from before the split protocol: still readable
            warnings.warn("run config key eval_episodes is gone: learning curves play eval_images validation "
                          "images once each; ignoring it", FutureWarning, stacklevel=2)
            raw = {k: v for k, v in raw.items() if k != "eval_episodes"}
        check_keys("config", raw, [f.name for f in fields(cls)])
        raw = copy.deepcopy(raw)
        default = cls()
        raw_env = raw.pop("env", None) or {}
        env = {**default.env, **raw_env}
        srm_raw = check_keys("srm", raw.pop("srm", {}) or {}, [f.name for f in fields(SRMSettings)])
        init = InitSettings.from_dict(raw.pop("init", None))
        preset = raw.get("preset", default.preset)
        if preset not in RUN_PRESETS:
            raise ValueError(f"preset must be one of {list(RUN_PRESETS)}, got {preset!r}")
        if preset == "paper":  # the paper's settings first, the config's own on top of them
            algorithm = raw.get("algorithm", default.algorithm)
            if algorithm not in PAPER_ALGORITHMS:
                raise ValueError(f"preset 'paper' is the paper's PPO schedule: algorithm must be one of "
                                 f"{list(PAPER_ALGORITHMS)}, got {algorithm!r}")
            env = {**default.env, **PAPER_ENV, **raw_env}
        check_env_block("env", env)  # before the paper schedule reads max_prompts from it
        if preset == "paper":
            paper = paper_hyperparameters(raw.get("n_envs", default.n_envs), env["max_prompts"])
            raw["hyperparameters"] = {**paper, **(raw.get("hyperparameters") or {})}
        config = cls(**raw, env=env, srm=SRMSettings(**srm_raw), init=init)
        if config.algorithm not in PRESETS:
            raise ValueError(f"algorithm must be one of {sorted(PRESETS)}, got {config.algorithm!r}")
        if config.vec_env not in VEC_ENVS:
            raise ValueError(f"vec_env must be one of {list(VEC_ENVS)}, got {config.vec_env!r}")
        if config.init.imitation is not None:
            if config.vec_env == "subproc":
                raise ValueError("init.imitation needs the training envs in this process: vec_env 'dummy' or "
                                 "'batched', not 'subproc'")
            if config.algorithm == "recurrent_ppo":
                raise ValueError("init.imitation clones per-step action scores; recurrent_ppo's depend on its LSTM "
                                 "state: choose ppo, a2c, dqn or maskable_ppo")
            if config.init.imitation.kickstart_weight and config.algorithm not in KICKSTART_ALGORITHMS:
                raise ValueError(f"init.imitation.kickstart_weight labels on-policy rollouts; {config.algorithm} has "
                                 f"none: choose one of {list(KICKSTART_ALGORITHMS)} or kickstart_weight: 0")
        if not isinstance(config.total_timesteps, int) or isinstance(config.total_timesteps, bool) \
                or config.total_timesteps < 0:
            raise ValueError(f"total_timesteps must be an integer >= 0, got {config.total_timesteps!r}")
        for name in ("eval_every", "log_frames_every", "checkpoint_every"):
            value = getattr(config, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer or null, got {value!r}")
        value = config.eval_images
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"eval_images must be a positive integer, got {value!r}")
        return config

    @classmethod
    def load(cls, path: str | Path, preset: str | None = None) -> RunConfig:
        """Read a YAML run config; errors name the file. ``preset`` replaces the file's ``preset`` key."""
        return load_yaml_config(path, "run config",
                                lambda raw: cls.from_dict(raw if preset is None else {**raw, "preset": preset}))

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping (the saved ``config.yaml``)."""
        return asdict(self)

    def with_changes(self, **changes: Any) -> RunConfig:
        """A copy with some fields replaced."""
        return replace(self, **changes)


def resolve_config(config: dict[str, Any] | RunConfig) -> RunConfig:
    """The :class:`RunConfig` of a mapping (defaults filled in) or the config itself."""
    return RunConfig.from_dict(config)
