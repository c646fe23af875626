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
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import numpy as np

from alignsam_gym.heuristics import HEURISTICS
from policies.imitation.cloning import CloningSettings, policy_actions, warm_up_critic
from policies.imitation.dagger import StateVisitor, beta_schedule, dagger
from policies.imitation.demonstrations import Demonstrations
from policies.imitation.experts import HeuristicExpert


@dataclass(frozen=True)
class ImitationSettings:
    """A run's imitation phase.

    :param expert: the heuristic that labels states (:data:`alignsam_gym.heuristics.HEURISTICS`).
    :param demonstration_states: states the expert demonstrates in round 0 (its own trajectories).
    :param dataset: round 0's rows from a file instead: a ``.npz`` written by :meth:`Demonstrations.save`, or the
        id of a Minari dataset written by ``alignsam record`` (its policy is then the round-0 expert).
    :param dagger_rounds: DAgger rounds after round 0 (0: behaviour cloning only).
    :param dagger_states: states each DAgger round visits.
    :param beta: the expert's share of actions in DAgger round 1; ``beta_decay``: its factor per later round.
    :param epochs: cloning epochs per round; ``batch_size``, ``learning_rate``, ``mask_actions``: see
        :class:`~policies.imitation.cloning.CloningSettings`.
    :param temperature: None: clone the expert's action; a number: clone the ``oracle``'s IoU of every cell,
        ``softmax(IoU / temperature)`` (:func:`~policies.imitation.imitation_loss`).
    :param critic_warmup_states: states of the cloned policy's own (sampled) rollouts whose returns the critic is
        fitted to before RL (actor-critics only; 0: none), for ``critic_epochs`` epochs.
    """

    expert: str = "oracle"
    demonstration_states: int = 1500
    dataset: str | None = None
    dagger_rounds: int = 0
    dagger_states: int = 750
    beta: float = 0.5
    beta_decay: float = 0.5
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    mask_actions: bool = True
    temperature: float | None = None
    critic_warmup_states: int = 0
    critic_epochs: int = 10

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | ImitationSettings) -> ImitationSettings:
        """Settings from a mapping; :raises ValueError: naming unknown keys and values out of range."""
        if isinstance(raw, ImitationSettings):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(f"init.imitation is a mapping, got {type(raw).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = set(raw) - set(names)
        if unknown:
            raise ValueError(f"unknown init.imitation keys {sorted(unknown)}; expected some of {sorted(names)}")
        settings = cls(**raw)
        if settings.expert not in HEURISTICS:
            raise ValueError(f"init.imitation.expert must be one of {list(HEURISTICS)}, got {settings.expert!r}")
        for name in ("demonstration_states", "dagger_states", "epochs", "batch_size", "critic_epochs"):
            _check_int(name, getattr(settings, name), 1)
        for name in ("dagger_rounds", "critic_warmup_states"):
            _check_int(name, getattr(settings, name), 0)
        beta_schedule(1, settings.beta, settings.beta_decay)  # both in [0, 1]
        if not isinstance(settings.learning_rate, (int, float)) or not settings.learning_rate > 0:
            raise ValueError(f"init.imitation.learning_rate must be a positive number, got {settings.learning_rate!r}")
        if settings.temperature is not None and (isinstance(settings.temperature, bool) or not isinstance(
                settings.temperature, (int, float)) or not settings.temperature > 0):
            raise ValueError(f"init.imitation.temperature must be a positive number or null, got "
                             f"{settings.temperature!r}")
        if settings.temperature is not None and settings.expert != "oracle":
            raise ValueError(f"init.imitation.temperature clones the oracle's IoU of every cell; the expert "
                             f"{settings.expert!r} values no cells (set expert: oracle, or temperature: null)")
        if settings.dataset is not None and not isinstance(settings.dataset, str):
            raise ValueError(f"init.imitation.dataset must be a .npz path or a Minari dataset id, got "
                             f"{settings.dataset!r}")
        return settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def cloning(self) -> CloningSettings:
        return CloningSettings(self.epochs, self.batch_size, float(self.learning_rate), self.mask_actions,
                               None if self.temperature is None else float(self.temperature))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"init.imitation.{name} must be an integer >= {minimum}, got {value!r}")


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
