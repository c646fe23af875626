"""Experts for imitation: a rule of :mod:`alignsam_gym.heuristics` that labels every state of a vector env.

The expert may read the ground truth (``oracle``, ``clicker``); the learner only ever sees the env's
observation. Experts act on the unwrapped envs, so the vector env must hold its envs in this process
(``DummyVecEnv`` or ``AlignSAMVecEnv``, training's ``vec_env: dummy`` or ``batched``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from alignsam_gym.heuristics import HEURISTICS, choose, oracle_values


def unwrapped_envs(env: VecEnv) -> list[Any]:
    """The unwrapped AlignSAM envs of an SB3 vector env (under any ``VecEnvWrapper``).

    :raises ValueError: when the envs run in other processes (``SubprocVecEnv``).
    """
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    if not hasattr(env, "envs"):
        raise ValueError(f"imitation needs the envs in this process (vec_env 'dummy' or 'batched'), got "
                         f"{type(env).__name__}")
    return [e.unwrapped for e in env.envs]


class HeuristicExpert:
    """The actions of heuristic ``name`` in the current state of every env of ``env``.

    :param name: one of :data:`alignsam_gym.heuristics.HEURISTICS` (``oracle``: the one-step ground-truth
        lookahead; ``clicker``: the standard clicker).
    :param env: the vector env whose states it labels.
    :param seed: seed of the ``random`` heuristic's draws.
    """

    def __init__(self, name: str, env: VecEnv, seed: int = 0) -> None:
        if name not in HEURISTICS:
            raise ValueError(f"expert must be one of {list(HEURISTICS)}, got {name!r}")
        self.name, self.envs = name, unwrapped_envs(env)
        self.rng = np.random.default_rng(seed)
        #: states labelled and seconds spent labelling them (the expert's cost per state)
        self.states, self.seconds = 0, 0.0
        #: ``(n_envs, n_actions) float32``: the ``oracle``'s true IoU of every cell it tried in the last call's
        #: states (NaN elsewhere, and everywhere for the other experts)
        self.values: np.ndarray | None = None

    def __call__(self) -> np.ndarray:
        """``(n_envs,) int64``: the expert's action in each env's current state."""
        start = time.perf_counter()
        n_actions = self.envs[0].action_space.n
        self.values = np.full((len(self.envs), n_actions), np.nan, np.float32)
        if self.name == "oracle":  # the same choice as choose("oracle"), keeping what it compared
            actions = []
            for i, env in enumerate(self.envs):
                cells, ious = oracle_values(env)
                self.values[i, cells] = ious
                actions.append(int(cells[int(np.argmax(ious))]))
            actions = np.array(actions, np.int64)
        else:
            actions = np.array([choose(self.name, env, self.rng) for env in self.envs], np.int64)
        self.seconds += time.perf_counter() - start
        self.states += len(actions)
        return actions

    @property
    def seconds_per_state(self) -> float:
        return self.seconds / self.states if self.states else float("nan")
