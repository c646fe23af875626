"""``AlignSAMVecEnv``: the batched AlignSAM vector env behind SB3's ``VecEnv`` API.

PPO, A2C, DQN and the sb3-contrib algorithms take it directly::

    env = AlignSAMVecEnv(8, task="synthetic-saliency", obs_mode="compact")
    model = make_model("ppo", env)

It steps its envs with :func:`alignsam_gym.envs.vector.step_envs` (the shared SRM and one
``decode_batch`` per step for all envs) and follows SB3's conventions: an env whose episode ends is reset in
the same step, its last observation in ``info["terminal_observation"]``; ``seed(s)`` seeds env ``i``
with ``s + i`` at the next reset, like ``DummyVecEnv``, so both give the same episodes.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from alignsam_gym.envs.vector import make_envs, stack_observations, step_envs


class AlignSAMVecEnv(VecEnv):
    """``num_envs`` AlignSAM envs in this process on one backend, one cache and one SRM.

    :param num_envs: number of envs.
    :param env_kwargs: the keyword arguments of ``AlignSAM-v0``, the same for every env.
    """

    def __init__(self, num_envs: int, **env_kwargs: Any) -> None:
        self.envs = make_envs(num_envs, env_kwargs)
        first = self.envs[0]
        super().__init__(len(self.envs), first.observation_space, first.action_space)
        self.render_mode = first.render_mode
        self._actions: np.ndarray | None = None

    def reset(self) -> Any:
        observations = []
        for i, env in enumerate(self.envs):
            options = {"options": self._options[i]} if self._options[i] else {}
            obs, self.reset_infos[i] = env.reset(seed=self._seeds[i], **options)
            observations.append(obs)
        self._reset_seeds()
        self._reset_options()
        return stack_observations(observations)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> tuple[Any, np.ndarray, np.ndarray, list[dict]]:
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        results = step_envs(self.envs, list(self._actions))
        self._actions = None
        observations, infos = [], []
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        dones = np.zeros(self.num_envs, dtype=bool)
        for i, (obs, reward, terminated, truncated, info) in enumerate(results):
            rewards[i], dones[i] = reward, terminated or truncated
            info = dict(info)
            info["TimeLimit.truncated"] = truncated and not terminated
            if dones[i]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = self.envs[i].reset()
            observations.append(obs)
            infos.append(info)
        return stack_observations(observations), rewards, dones, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [env.render() for env in self.envs]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.envs[i], attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for i in self._indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        return [getattr(self.envs[i], method_name)(*method_args, **method_kwargs) for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]  # the envs are bare AlignSAMEnv instances

    def _indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices
