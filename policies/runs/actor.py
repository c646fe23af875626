"""``Actor``: the actions of a heuristic or a trained run in one env, for evaluation and recording."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from alignsam_gym.heuristics import HEURISTICS, choose
from policies.runs.checkpoint import load_model
from policies.runs.folder import RunFolder
from policies.sb3.acting import best_unprompted


#: the env kwargs that shape the observation a model was trained on
OBSERVATION_KEYS = ("obs_mode", "obs_size", "obs_dtype", "observation", "observe_srm", "observe_time")


class Actor:
    """Chooses the prompts of one env's episodes, deterministically for a trained model.

    :param policy: a heuristic (``"random"``, seeded; ``"centre"``; ``"srm_greedy"``; see
        :mod:`alignsam_gym.heuristics`) or a run folder / ``model.zip`` path.
    :param env: the env it acts in (a trained model is loaded against its spaces).
    :param seed: seed of the random heuristic's generator.
    :param device: the model's device.
    :param no_repeats: choose among the cells not prompted yet this episode (``env.action_masks()``); a
        deterministic policy whose mask stops changing would otherwise prompt one cell again and again.
        RecurrentPPO ignores it.
    :param model: a model in memory (training's learning-curve evaluations) instead of a saved run;
        ``algorithm`` names its preset.
    """

    def __init__(self, policy: str, env: gym.Env, seed: int = 0, device: str = "auto", no_repeats: bool = True,
                 model: Any = None, algorithm: str | None = None) -> None:
        self.policy, self.env, self.no_repeats = policy, env, no_repeats
        self.rng = np.random.default_rng(seed)
        self.model: Any = None
        self.algorithm: str | None = None
        #: the SRM weights the run trained (None for heuristics and runs without an SRM)
        self.srm_weights: dict[str, torch.Tensor] | None = None
        if policy not in HEURISTICS and model is None:
            run, model_file = RunFolder.of_model(policy)
            if not model_file.is_file():
                raise FileNotFoundError(f"no trained model at {model_file} (policies without training: "
                                        f"{list(HEURISTICS)})")
            config = run.read_config()
            self.algorithm = config.algorithm
            with warnings.catch_warnings():  # one env here, not training's: SB3 would warn of its batch size
                warnings.filterwarnings("ignore", message="You have specified a mini-batch size", category=UserWarning)
                self.model = load_model(config.algorithm, model_file, env, device, config.hyperparameters)
            self.srm_weights = run.srm_weights()
        if model is not None:
            self.model, self.algorithm = model, algorithm
        self._state: Any = None
        self._first = True

    @staticmethod
    def observation_kwargs(policy: str) -> dict[str, Any]:
        """The observation settings (``obs_mode``, ``obs_size``, ``obs_dtype``, ``observation``, ``observe_srm``) a
        trained run's model was trained with, as env kwargs; empty for a heuristic, which acts on any observation."""
        if policy in HEURISTICS:
            return {}
        env = RunFolder.of_model(policy)[0].read_config().env
        return {"obs_mode": "full", **{key: env[key] for key in OBSERVATION_KEYS if key in env}}

    @property
    def honours_masks(self) -> bool:
        """Whether ``no_repeats`` holds for this actor: RecurrentPPO's SB3 policy takes no action mask."""
        return self.algorithm != "recurrent_ppo"

    def start_episode(self, seed: int | tuple[int, ...] | None = None) -> None:
        """Forget the recurrent state: the next :meth:`act` is an episode's first. ``seed`` reseeds the random
        heuristic's generator, so its draws on an image do not depend on the episodes before it."""
        self._state, self._first = None, True
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, obs: Any) -> int:
        """The action for observation ``obs`` of the env's current episode."""
        inner = self.env.unwrapped
        first, self._first = self._first, False
        if self.model is None:
            if self.no_repeats or self.policy != "random":
                return choose(self.policy, inner, self.rng)
            return int(self.rng.integers(self.env.action_space.n))
        if self.algorithm == "recurrent_ppo":
            out, self._state = self.model.predict(obs, state=self._state, episode_start=np.array([first]),
                                                  deterministic=True)
            return int(out)
        mask = inner.action_masks() if self.no_repeats else np.ones(self.env.action_space.n, bool)
        return best_unprompted(self.model, obs, mask)
