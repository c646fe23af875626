"""Imitation before reinforcement: a run's policy cloned from an expert (and DAgger rounds) before RL starts.

A run config's ``init: {imitation: {...}}`` (:class:`ImitationSettings`) makes :func:`policies.runs.train`
call :func:`pretrain` on the new model and its training envs before ``model.learn``: the expert of
:mod:`alignsam_gym.heuristics` labels the states (``oracle``, the one-step ground-truth lookahead, by default),
the SRM trains on every visited state as it does during RL, and for an actor-critic the critic can then be
fitted to the returns of the cloned policy's own rollouts (``critic_warmup_states``) so PPO's first advantages
are not measured against an untrained value. ``total_timesteps: 0`` gives imitation alone.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from policies.imitation.cloning import policy_actions, warm_up_critic
from policies.imitation.dagger import StateVisitor, dagger
from policies.imitation.demonstrations import Demonstrations
from policies.imitation.experts import HeuristicExpert
from policies.imitation.settings import ImitationSettings


def read_dataset(source: str, obs_size: int | None) -> Demonstrations:
    """Round 0's rows from a ``.npz`` demonstrations file or a Minari dataset id (states pooled to ``obs_size``)."""
    if source.endswith(".npz"):
        return Demonstrations.load(source)
    try:
        import minari
    except ImportError as err:
        raise ImportError("init.imitation.dataset names a Minari dataset: pip install 'alignsam-gym[minari]'") from err
    return Demonstrations.from_minari(minari.load_dataset(source), obs_size)


def pretrain(model: Any, settings: ImitationSettings, seed: int = 0, after_step: Callable[[], Any] | None = None,
             gamma: float | None = None) -> dict[str, Any]:
    """Clone ``model``'s policy from the expert on ``model``'s env (then DAgger rounds, then the critic warm-up).

    :param after_step: called after every env step (the SRM's training step).
    :param gamma: the discount of the critic's returns (default: the model's ``gamma``).
    :return: a JSON-ready record: per round the states, ``beta`` and cloning history; the expert's measured cost per
        labelled state; the critic's fit; the wall time.
    """
    start = time.perf_counter()
    env = model.get_env()
    policy = model.policy
    expert = HeuristicExpert(settings.expert, env, seed)
    visitor = StateVisitor(env, after_step)
    initial = None
    if settings.dataset is not None:
        initial = read_dataset(settings.dataset, env.observation_space.shape[-1])
        if initial.observations.shape[1:] != env.observation_space.shape:
            raise ValueError(f"init.imitation.dataset {settings.dataset}: observations of shape "
                             f"{initial.observations.shape[1:]}, the env's are {env.observation_space.shape}")
    data, rounds = dagger(policy, visitor, expert, settings.dagger_rounds, settings.dagger_states, settings.beta,
                          settings.beta_decay, initial, settings.demonstration_states, settings.cloning, seed)
    record: dict[str, Any] = {
        "settings": settings.to_dict(), "rounds": rounds, "states": len(data),
        "expert": {"name": settings.expert, "states": expert.states, "seconds": round(expert.seconds, 3),
                   "seconds_per_state": round(expert.seconds_per_state, 5) if expert.states else None},
    }
    if settings.critic_warmup_states and hasattr(policy, "value_net"):
        rng = np.random.default_rng(seed + 10_000)

        def sampled(obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
            return policy_actions(policy, obs, masks, deterministic=False, rng=rng)

        rollouts = visitor.visit(settings.critic_warmup_states, None, sampled, 0.0, rng)
        errors = warm_up_critic(policy, rollouts, model.gamma if gamma is None else gamma, settings.critic_epochs,
                                settings.batch_size, settings.learning_rate, seed)
        record["critic"] = {"states": len(rollouts), "mse": [round(e, 5) for e in errors]}
    record["wall_s"] = round(time.perf_counter() - start, 1)
    return record
