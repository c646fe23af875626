"""``AlignSAMVectorEnv``: N AlignSAM envs in one process, stepped together.

All N envs share one backend instance (one model in memory, one GPU), one embedding cache and one
SRM. A step runs each phase for all envs at once: validate the N actions (before any env moves),
label the N new prompts with the shared SRM (:func:`srm_probabilities`), decode the N prompt sets
with one :meth:`~alignsam_gym.backends.base.PromptableSegmenter.decode_batch` call (for SAM on CUDA
one batched decoder forward per prompt count; on CPU one decode after another, which measured
faster there), then form the N new states. Each env keeps its own
``np_random``, so env ``i`` reset with seed ``s + i`` gives the same episode as a single
``AlignSAMEnv`` reset with that seed.

This is the ``vector_entry_point`` of ``AlignSAM-v0``::

    envs = gymnasium.make_vec("AlignSAM-v0", num_envs=8, vectorization_mode="vector_entry_point")

The SB3 plugin wraps the same stepping as an SB3 ``VecEnv`` (``policies.vec_env.AlignSAMVecEnv``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from alignsam_gym.envs.alignsam_env import AlignSAMEnv

AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)


def make_envs(num_envs: int, env_kwargs: dict[str, Any]) -> list[AlignSAMEnv]:
    """``num_envs`` envs built from the same kwargs, sharing one backend, cache and SRM."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    envs = [AlignSAMEnv(**env_kwargs) for _ in range(int(num_envs))]
    for env in envs[1:]:
        env.srm = envs[0].srm  # one SRM: one forward labels every env, one weight update reaches all
    return envs


@torch.inference_mode()
def srm_probabilities(envs: Sequence[AlignSAMEnv]) -> list[np.ndarray]:
    """The SRM's ``(h, w)`` foreground probability on each env's current state: one batched forward
    when the SRM sits on an accelerator; on the CPU (where the env keeps it) one forward per env,
    which measured faster (32 SAM-sized states: 467 ms one by one, 614 ms in chunks of 8, 659-829 ms
    as one batch). The SRM has no coupling across the batch, so the results are the same."""
    first = envs[0]
    on_cpu = next(first.srm.parameters()).device.type == "cpu"
    chunk = 1 if on_cpu else len(envs)
    out: list[np.ndarray] = []
    for start in range(0, len(envs), chunk):
        part = envs[start:start + chunk]
        states = torch.from_numpy(np.stack([env._state for env in part]))
        clip = None
        if first.srm_branch == "explicit":
            clip = torch.from_numpy(np.stack([env._clip_state for env in part]))
        out.extend(torch.sigmoid(first.srm(states, clip))[:, 0].numpy())
    return out


def step_envs(envs: Sequence[AlignSAMEnv], actions: Sequence[Any]) -> list[tuple[Any, float, bool, bool, dict]]:
    """Step every env in ``envs`` with its action, batching the SRM and the decoder.

    Every action is validated before any env changes. Returns one ``(obs, reward, terminated,
    truncated, info)`` per env, equal to what ``env.step(action)`` would return.
    """
    if len(envs) != len(actions):
        raise ValueError(f"expected {len(envs)} actions, got {len(actions)}")
    if not envs:
        return []
    begun = [env._begin_step(action) for env, action in zip(envs, actions)]
    probs: list[np.ndarray | None] = [None] * len(envs)
    if envs[0].label_source == "srm":
        probs = srm_probabilities(envs)
    labels = [env._add_prompt(action, point, is_fg, prob)
              for env, action, (point, is_fg), prob in zip(envs, actions, begun, probs)]
    prompts = [env._prompt_arrays() for env in envs]
    logits = envs[0].backend.decode_batch([env._embedding for env in envs], [p for p, _ in prompts],
                                          [lab for _, lab in prompts])
    results = []
    for env, mask_logits, (_, is_fg), label in zip(envs, logits, begun, labels):
        env._set_logits(mask_logits)
        results.append(env._step_result(is_fg, label))
    return results


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
                observations[i] = env._observation()
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
        self.envs[0].set_srm_weights(state_dict)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
