"""The typed settings of imitation: how a policy is cloned (:class:`CloningSettings`) and a run's imitation phase
(:class:`ImitationSettings`, a run config's ``init: {imitation: ...}``). Plain values only, so the run config
reads them without importing the training code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from alignsam_gym.envs.config import check_int
from alignsam_gym.heuristics import HEURISTICS
from policies.configs import check_keys


def check_beta(beta: float, beta_decay: float) -> None:
    """:raises ValueError: unless DAgger's ``beta`` and ``beta_decay`` both lie in [0, 1]."""
    if not 0.0 <= beta <= 1.0 or not 0.0 <= beta_decay <= 1.0:
        raise ValueError(f"beta and beta_decay must lie in [0, 1], got {beta} and {beta_decay}")


#: kickstarting's weight below which the term is off (:class:`~policies.imitation.KickstartCallback`'s ``min_weight``)
MIN_KICKSTART_WEIGHT = 1e-3


@dataclass(frozen=True)
class CloningSettings:
    """How :func:`~policies.imitation.cloning.clone` trains: ``epochs`` passes over the rows in seeded random minibatches of ``batch_size``,
    Adam at ``learning_rate`` on every parameter of the policy, ``mask_actions`` as in the module docstring,
    ``temperature`` as in :func:`~policies.imitation.cloning.imitation_loss` (None: the expert's action only)."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    mask_actions: bool = True
    temperature: float | None = None


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
        :class:`CloningSettings`.
    :param temperature: None: clone the expert's action; a number: clone the ``oracle``'s IoU of every cell,
        ``softmax(IoU / temperature)`` (:func:`~policies.imitation.imitation_loss`).
    :param critic_warmup_states: states of the cloned policy's own (sampled) rollouts whose returns the critic is
        fitted to before RL (actor-critics only; 0: none), for ``critic_epochs`` epochs.
    :param kickstart_weight: 0 (default): imitation before RL only. Above 0: kickstarting during RL
        (:mod:`policies.imitation.kickstarting`; ppo, a2c, maskable_ppo): the expert labels the agent's rollouts and
        an imitation step at ``learning_rate * kickstart_weight * kickstart_decay ** k`` follows the k-th policy
        update (``kickstart_epochs`` passes over its rollout).
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
    kickstart_weight: float = 0.0
    kickstart_decay: float = 0.9
    kickstart_epochs: int = 1

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | ImitationSettings) -> ImitationSettings:
        """Settings from a mapping; :raises ValueError: naming unknown keys and values out of range."""
        if isinstance(raw, ImitationSettings):
            return raw
        settings = cls(**check_keys("init.imitation", raw, [f.name for f in fields(cls)]))
        if settings.expert not in HEURISTICS:
            raise ValueError(f"init.imitation.expert must be one of {list(HEURISTICS)}, got {settings.expert!r}")
        for name in ("demonstration_states", "dagger_states", "epochs", "batch_size", "critic_epochs",
                     "kickstart_epochs"):
            check_int(f"init.imitation.{name}", getattr(settings, name), 1)
        for name in ("dagger_rounds", "critic_warmup_states"):
            check_int(f"init.imitation.{name}", getattr(settings, name), 0)
        check_beta(settings.beta, settings.beta_decay)
        if not isinstance(settings.learning_rate, (int, float)) or not settings.learning_rate > 0:
            raise ValueError(f"init.imitation.learning_rate must be a positive number, got {settings.learning_rate!r}")
        if settings.temperature is not None and (isinstance(settings.temperature, bool) or not isinstance(
                settings.temperature, (int, float)) or not settings.temperature > 0):
            raise ValueError(f"init.imitation.temperature must be a positive number or null, got "
                             f"{settings.temperature!r}")
        if settings.temperature is not None and settings.expert != "oracle":
            raise ValueError(f"init.imitation.temperature clones the oracle's IoU of every cell; the expert "
                             f"{settings.expert!r} values no cells (set expert: oracle, or temperature: null)")
        weight = settings.kickstart_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
                or not (weight == 0 or MIN_KICKSTART_WEIGHT <= weight < float("inf")):
            raise ValueError(f"init.imitation.kickstart_weight must be 0 (off) or a finite number >= "
                             f"{MIN_KICKSTART_WEIGHT} (below it the term is off), got {weight!r}")
        if isinstance(settings.kickstart_decay, bool) or not isinstance(settings.kickstart_decay, (int, float)) \
                or not 0 < settings.kickstart_decay <= 1:
            raise ValueError(f"init.imitation.kickstart_decay must lie in (0, 1], got {settings.kickstart_decay!r}")
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
