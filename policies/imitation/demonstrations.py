"""``Demonstrations``: the states an expert labelled, as arrays a behaviour-cloning loss reads.

Each row is one visited state: the learner's observation (what the env gives the agent, never the ground
truth), the cells it may prompt there, the expert's action, and the action that was taken (the expert's in
plain demonstrations; in DAgger the learner's or the expert's, by the round's ``beta``), with the reward and
whether the episode ended. Rows are appended in the order the states were visited, env by env per step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from alignsam_gym.atomic import replacing


@dataclass
class Demonstrations:
    """Labelled states (``N`` rows).

    :param observations: ``(N, *obs_shape)`` the learner's observations.
    :param action_masks: ``(N, n_actions) bool``, the cells not prompted yet.
    :param expert_actions: ``(N,) int64``, the expert's label of each state.
    :param taken_actions: ``(N,) int64``, the action the env was stepped with.
    :param rewards: ``(N,) float32``, the reward of the taken action.
    :param dones: ``(N,) bool``, whether that step ended the episode.
    :param env_index: ``(N,) int64``, which env of the vector env visited the state.
    :param expert_values: ``(N, n_actions) float32``, the expert's value of every cell where it has one (the
        ``oracle``: the true IoU each prompt would give), NaN elsewhere; all NaN by default.
    """

    observations: np.ndarray
    action_masks: np.ndarray
    expert_actions: np.ndarray
    taken_actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    env_index: np.ndarray
    expert_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.expert_values is None:
            self.expert_values = np.full(self.action_masks.shape, np.nan, np.float32)
        counts = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(counts.values())) != 1:
            raise ValueError(f"demonstration arrays differ in length: {counts}")
        if self.action_masks.ndim != 2 or self.expert_values.shape != self.action_masks.shape:
            raise ValueError(f"action_masks and expert_values must be (N, n_actions), got shapes "
                             f"{self.action_masks.shape} and {self.expert_values.shape}")
        rows = np.arange(len(self))
        if len(self) and not self.action_masks[rows, self.expert_actions].all():
            bad = int(np.flatnonzero(~self.action_masks[rows, self.expert_actions])[0])
            raise ValueError(f"row {bad}: the expert's action {int(self.expert_actions[bad])} is a masked (prompted) "
                             "cell")

    def __len__(self) -> int:
        return len(self.expert_actions)

    @classmethod
    def empty(cls, obs_shape: tuple[int, ...], n_actions: int, dtype: Any = np.float32) -> Demonstrations:
        """No rows, with the shapes of an env's observations and actions."""
        return cls(np.zeros((0, *obs_shape), dtype), np.zeros((0, n_actions), bool), np.zeros(0, np.int64),
                   np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, np.int64))

    @classmethod
    def concatenate(cls, parts: list[Demonstrations]) -> Demonstrations:
        """The rows of every part, in order (each array copied once)."""
        return cls(*(np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(cls)))

    def __add__(self, other: Demonstrations) -> Demonstrations:
        """The rows of both (DAgger's aggregated dataset), ``self``'s first."""
        return Demonstrations.concatenate([self, other])

    @property
    def expert_agreement(self) -> float:
        """The fraction of rows whose taken action is the expert's (1 for plain demonstrations)."""
        return float(np.mean(self.taken_actions == self.expert_actions)) if len(self) else float("nan")

    def save(self, path: str | Path) -> None:
        """Write the rows to ``path`` (``.npz``, atomically)."""
        with replacing(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> Demonstrations:
        """Read rows written by :meth:`save`; :raises ValueError: naming the file when it is not such a file."""
        names = [f.name for f in fields(cls)]
        try:
            with np.load(path) as data:
                missing = [n for n in names if n not in data.files]
                if missing:
                    raise ValueError(f"lacks the arrays {missing}")
                return cls(**{n: data[n] for n in names})
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a demonstrations file ({err})") from err

    @classmethod
    def from_minari(cls, dataset: Any, obs_size: int | None = None) -> Demonstrations:
        """The rows of a Minari dataset written by ``alignsam record`` (its policy is the expert): each episode's
        observations before each step (full observations as recorded, or compact ones formed into the paper's
        state ``E * M`` with :func:`~policies.recording.dataset_states`), the recorded actions as the expert's,
        and the cells prompted earlier in the episode masked."""
        from policies.recording import dataset_states

        parts = []
        for index, episode in enumerate(dataset.iterate_episodes()):
            actions = np.asarray(episode.actions, np.int64)
            if isinstance(episode.observations, dict):
                observations = dataset_states(dataset, index, obs_size)[:-1]
            else:
                observations = np.asarray(episode.observations, np.float32)[:-1]
            n_actions = int(dataset.action_space.n)
            masks = np.ones((len(actions), n_actions), bool)
            for step in range(1, len(actions)):
                masks[step:, actions[step - 1]] = False
            dones = np.zeros(len(actions), bool)
            dones[-1] = True
            parts.append(cls(observations, masks, actions, actions.copy(),
                             np.asarray(episode.rewards, np.float32), dones, np.zeros(len(actions), np.int64)))
        if not parts:
            raise ValueError("the Minari dataset holds no episodes")
        return cls.concatenate(parts)
