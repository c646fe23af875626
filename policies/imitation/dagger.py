"""DAgger (Ross, Gordon and Bagnell 2011) for the plugin's SB3 policies.

Round 0 visits states with the expert acting (``beta = 1``: plain demonstrations) and clones them. Round
``i >= 1`` visits states with the mixture policy: in every env at every step the expert's action is taken
with probability ``beta_i = beta * beta_decay ** (i - 1)`` (a seeded draw), the learner's deterministic action
otherwise; the expert labels **every** visited state, the rows join the aggregated dataset, and the learner
is cloned again on all of it (continuing from its current weights). ``beta = 0`` is the pure learner of the
paper's later rounds; ``beta_decay = 1`` keeps the mixture fixed.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from policies.imitation.cloning import clone, policy_actions
from policies.imitation.demonstrations import Demonstrations
from policies.imitation.settings import CloningSettings, check_beta

#: ``() -> (n_envs,) int64``: the expert's action in each env's current state (an expert with a ``values``
#: attribute, ``(n_envs, n_actions)``, also gives its value of every cell: :class:`~policies.imitation.HeuristicExpert`)
Expert = Callable[[], np.ndarray]
#: ``(observations, action_masks) -> (n_envs,) int64``: the learner's actions
Learner = Callable[[np.ndarray, np.ndarray], np.ndarray]


def beta_schedule(round_index: int, beta: float, beta_decay: float) -> float:
    """The probability that the expert acts in round ``round_index``: 1 in round 0, ``beta * beta_decay ** (i-1)``
    in round ``i >= 1``."""
    if round_index < 0:
        raise ValueError(f"round_index must be >= 0, got {round_index}")
    check_beta(beta, beta_decay)
    return 1.0 if round_index == 0 else beta * beta_decay ** (round_index - 1)


def action_masks_of(env: VecEnv) -> np.ndarray:
    """``(n_envs, n_actions) bool``: each env's ``action_masks()``, or every action for envs without one."""
    try:
        return np.stack(env.env_method("action_masks")).astype(bool)
    except AttributeError:
        return np.ones((env.num_envs, env.action_space.n), bool)


class StateVisitor:
    """Steps a vector env and records the states it visits with the expert's labels; the env's episodes run on
    from one call to the next (it is reset only before the first).

    :param env: an SB3 vector env (auto-resetting, as SB3's are).
    :param after_step: called after every env step (training's SRM update: ``SRMCallback.on_step``).
    """

    def __init__(self, env: VecEnv, after_step: Callable[[], Any] | None = None) -> None:
        self.env, self.after_step = env, after_step
        self.obs: np.ndarray | None = None

    def visit(self, states: int, expert: Expert | None, learner: Learner | None, beta: float,
              rng: np.random.Generator) -> Demonstrations:
        """At least ``states`` labelled states (whole env steps: a multiple of ``n_envs``); in every env the expert's
        action is taken with probability ``beta``, the learner's otherwise. ``learner`` may be None only for
        ``beta == 1``; ``expert`` only for ``beta == 0`` (the learner's own rollouts: its actions stand in for the
        expert's labels)."""
        if learner is None and beta < 1.0:
            raise ValueError("a learner is needed when beta < 1")
        if expert is None and beta > 0.0:
            raise ValueError("an expert is needed when beta > 0")
        if not isinstance(self.env.observation_space, spaces.Box):
            raise ValueError("imitation reads array observations (obs_mode 'full'), not "
                             f"{type(self.env.observation_space).__name__}")
        if self.obs is None:
            self.obs = self.env.reset()
        n = self.env.num_envs
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "masks", "expert", "taken", "rewards", "dones",
                                                             "values")}
        for _ in range(-(-states // n)):
            masks = action_masks_of(self.env)
            values = np.full(masks.shape, np.nan, np.float32)
            if expert is None:
                taken = learner(self.obs, masks)
                expert_actions = taken.copy()
            else:
                expert_actions = expert()
                if getattr(expert, "values", None) is not None:  # an expert that values every cell (the oracle)
                    values = expert.values
                taken = expert_actions.copy()
                if beta < 1.0:
                    learner_turn = rng.random(n) >= beta
                    if learner_turn.any():
                        taken[learner_turn] = learner(self.obs, masks)[learner_turn]
            obs, rewards, dones, _ = self.env.step(taken)
            if self.after_step is not None:
                self.after_step()
            for key, value in (("obs", self.obs), ("masks", masks), ("expert", expert_actions), ("taken", taken),
                               ("rewards", rewards), ("dones", dones), ("values", values)):
                rows[key].append(np.asarray(value))
            self.obs = obs
        steps = len(rows["obs"])
        return Demonstrations(np.concatenate(rows["obs"]), np.concatenate(rows["masks"]),
                              np.concatenate(rows["expert"]).astype(np.int64),
                              np.concatenate(rows["taken"]).astype(np.int64),
                              np.concatenate(rows["rewards"]).astype(np.float32),
                              np.concatenate(rows["dones"]).astype(bool), np.tile(np.arange(n), steps),
                              np.concatenate(rows["values"]).astype(np.float32))


def dagger(policy: Any, visitor: StateVisitor, expert: Expert, rounds: int, states: int, beta: float = 0.5,
           beta_decay: float = 0.5, demonstrations: Demonstrations | None = None, round_zero_states: int | None = None,
           cloning: CloningSettings = CloningSettings(), seed: int = 0,
           ) -> tuple[Demonstrations, list[dict[str, Any]]]:
    """Behaviour cloning then ``rounds`` DAgger rounds (the module docstring).

    :param policy: the learner, an SB3 policy (fitted in place).
    :param states: labelled states visited per DAgger round.
    :param demonstrations: round 0's rows when given (e.g. read from a Minari dataset); otherwise round 0 visits
        ``round_zero_states`` states (default ``states``) with the expert acting.
    :return: the aggregated dataset and one record per round (``round``, ``beta``, ``states``, the fraction of
        visited states where the learner's action agreed with the expert's, the cloning history).
    """
    rng = np.random.default_rng(seed)
    log = []
    data = demonstrations
    if data is None:
        data = visitor.visit(states if round_zero_states is None else round_zero_states, expert, None, 1.0, rng)
    history = clone(policy, data, cloning, seed=seed)
    log.append({"round": 0, "beta": 1.0, "states": len(data), "cloning": history})

    def learner(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return policy_actions(policy, obs, masks, deterministic=True, rng=rng)

    for i in range(1, rounds + 1):
        beta_i = beta_schedule(i, beta, beta_decay)
        fresh = visitor.visit(states, expert, learner, beta_i, rng)
        learner_rows = fresh.taken_actions != fresh.expert_actions
        agreement = float(np.mean(learner(fresh.observations, fresh.action_masks) == fresh.expert_actions))
        data = data + fresh
        history = clone(policy, data, cloning, seed=seed + i)
        log.append({"round": i, "beta": beta_i, "states": len(fresh), "aggregated": len(data),
                    "learner_agreement": agreement, "learner_deviations": int(learner_rows.sum()),
                    "cloning": history})
    return data, log
