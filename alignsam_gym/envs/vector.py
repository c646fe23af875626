"""``AlignSAMVectorEnv``: N AlignSAM envs in one process, stepped together.

All N envs share one backend instance (one model in memory, one GPU), one embedding cache and one
SRM. A step runs each phase for all envs at once: validate the N actions (before any env moves),
label the N new prompts with the shared labeler in one call, decode the N prompt sets
with one :meth:`~alignsam_gym.backends.base.PromptableSegmenter.decode_batch` call (for SAM on CUDA
one batched decoder forward per prompt count; on CPU one decode after another, which measured
faster there), then form the N new states. Each env keeps its own
``np_random``, so env ``i`` reset with seed ``s + i`` gives the same episode as a single
``AlignSAMEnv`` reset with that seed.

This is the ``vector_entry_point`` of ``AlignSAM-v0``::

    envs = gymnasium.make_vec("AlignSAM-v0", num_envs=8, vectorization_mode="vector_entry_point")

The SB3 plugin wraps the same stepping as an SB3 ``VecEnv`` (``policies.sb3.vec_env.AlignSAMVecEnv``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from alignsam_gym.envs.alignsam_env import AlignSAMEnv
from alignsam_gym.envs.config import check_int
from alignsam_gym.envs.core import EnvCore, StepResult

AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)


def make_envs(num_envs: int, env_kwargs: dict[str, Any]) -> list[AlignSAMEnv]:
    """``num_envs`` envs on one :class:`~alignsam_gym.envs.core.EnvCore` built from ``env_kwargs``: one
    dataset, backend, cache, embedding table and SRM for all of them."""
    num_envs = check_int("num_envs", num_envs, 1)
    kwargs = dict(env_kwargs)
    render_mode = kwargs.pop("render_mode", None)
    first = AlignSAMEnv(render_mode=render_mode, **kwargs)  # validates render_mode too
    return [first] + [AlignSAMEnv(core=first.core, render_mode=render_mode) for _ in range(num_envs - 1)]


def step_envs(envs: Sequence[AlignSAMEnv], actions: Sequence[Any]) -> list[StepResult]:
    """Step envs that share one core with one action each, batching the labeler and the decoder
    (:meth:`EnvCore.step`); every action is validated before any env changes."""
    if not envs:
        return []
    core: EnvCore = envs[0].core
    if any(env.core is not core for env in envs):
        raise ValueError("step_envs needs envs that share one EnvCore (make_envs builds them)")
    return core.step([env.episode for env in envs], actions)


def stack_observations(observations: Sequence[Any]) -> Any:
    """N observations as one batch: an array, or a dict of arrays for ``obs_mode="compact"``."""
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack(observations)


def env_seeds(seed: int | Sequence[int | None] | None, num_envs: int) -> list[int | None]:
    """Per-env seeds: ``seed + i`` for an int (Gymnasium's convention), a list as given, or Nones."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return [int(seed) + i for i in range(num_envs)]
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise ValueError(f"seed must be an int or a list of {num_envs} seeds, got {len(seeds)} seeds")
    return seeds


class AlignSAMVectorEnv(VectorEnv):
    """``num_envs`` AlignSAM envs stepped as one batch (see the module docstring).

    :param num_envs: number of envs.
    :param autoreset_mode: ``AutoresetMode.NEXT_STEP`` (Gymnasium's default: the step after an
        episode ends resets that env and returns its first observation with reward 0) or
        ``AutoresetMode.SAME_STEP`` (the ending step already returns the next episode's first
        observation; the last one is in ``info["final_obs"]``, its info in ``info["final_info"]``).
    :param env_kwargs: the keyword arguments of ``AlignSAM-v0`` (task, backend, ...), the same for every env.
    """

    def __init__(self, num_envs: int = 1, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 **env_kwargs: Any) -> None:
        try:
            autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            autoreset_mode = None
        if autoreset_mode not in AUTORESET_MODES:
            raise ValueError(f"autoreset_mode must be one of {[m.value for m in AUTORESET_MODES]}")
        self.envs = make_envs(num_envs, env_kwargs)
        self.num_envs = len(self.envs)
        first = self.envs[0]
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(first.observation_space, self.num_envs)
        self.action_space = batch_space(first.action_space, self.num_envs)
        self.render_mode = first.render_mode
        self.metadata = {**first.metadata, "autoreset_mode": autoreset_mode}
        self.autoreset_mode = autoreset_mode
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self._has_reset = False

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset every env (or those where ``options["reset_mask"]`` is True); env ``i`` gets ``seed + i``."""
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(self.num_envs, bool)))
        if mask.shape != (self.num_envs,) or mask.dtype != bool:
            raise ValueError(f"options['reset_mask'] must be a ({self.num_envs},) bool array, got {mask!r}")
        if not self._has_reset and not mask.all():
            raise RuntimeError("the first reset() must reset every env (no reset_mask)")
        seeds = env_seeds(seed, self.num_envs)
        infos: dict[str, Any] = {}
        observations = [None] * self.num_envs
        for i, env in enumerate(self.envs):
            if mask[i]:
                observations[i], info = env.reset(seed=seeds[i], options=options or None)
                infos = self._add_info(infos, info, i)
                self._needs_reset[i] = False
            else:
                observations[i] = env.core.observe(env.episode)
        self._has_reset = True
        return stack_observations(observations), infos

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._has_reset:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        observations: list[Any] = [None] * self.num_envs
        infos: dict[str, Any] = {}
        stepping = [i for i in range(self.num_envs) if not self._needs_reset[i]]
        for i in np.flatnonzero(self._needs_reset):  # NEXT_STEP: this step starts the next episode
            observations[i], info = self.envs[i].reset()
            infos = self._add_info(infos, info, i)
            self._needs_reset[i] = False
        results = step_envs([self.envs[i] for i in stepping], [actions[i] for i in stepping])
        for i, (obs, reward, term, trunc, info) in zip(stepping, results):
            rewards[i], terminated[i], truncated[i] = reward, term, trunc
            if (term or trunc) and self.autoreset_mode == AutoresetMode.SAME_STEP:
                info = {**info, "final_obs": obs, "final_info": dict(info)}
                obs, reset_info = self.envs[i].reset()
                info.update(reset_info)
            elif term or trunc:
                self._needs_reset[i] = True
            observations[i] = obs
            infos = self._add_info(infos, info, i)
        return stack_observations(observations), rewards, terminated, truncated, infos

    def render(self) -> tuple[np.ndarray | None, ...] | None:
        """Each env's frame (``render_mode="rgb_array"``)."""
        if self.render_mode is None:
            return None
        return tuple(env.render() for env in self.envs)

    def action_masks(self) -> np.ndarray:
        """``(num_envs, grid_size**2) bool``: each env's unprompted cells."""
        return np.stack([env.action_masks() for env in self.envs])

    def set_srm_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load SRM weights into the SRM every env shares."""
        self.envs[0].core.srm.set_weights(state_dict)

    def close_extras(self, **kwargs: Any) -> None:
        for env in getattr(self, "envs", ()):  # none when the constructor failed (an argument error)
            env.close()
