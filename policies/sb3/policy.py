"""Policies that score every grid cell with the same weights: the actor-critics ``AlignSAMPolicy`` (PPO, A2C) and
``MaskableAlignSAMPolicy`` (sb3-contrib's MaskablePPO, which never samples a cell already prompted), and
``AlignSAMDQNPolicy`` (DQN: one Q-value per cell from that cell's features).

RecurrentPPO keeps sb3-contrib's ``MlpLstmPolicy``: its LSTM carries one state vector for the whole grid
between steps, so no per-cell head can sit after it without a recurrent state per cell, which sb3-contrib's
recurrent policy does not have."""

from __future__ import annotations

from typing import Any

import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

from policies.sb3.features import SpatialEmbeddingExtractor


class CellScores(nn.Module):
    """Action logits from per-cell features: a 1x1 convolution over the ``(c, g, g)`` feature map, or with
    ``hidden > 0`` a per-cell MLP (1x1 convolution to ``hidden`` channels, ReLU, 1x1 convolution). With ``stop``
    one more logit, for the env's stop action, a linear function of the cells' mean features."""

    def __init__(self, cell_channels: int, grid: int, hidden: int = 0, stop: bool = False) -> None:
        super().__init__()
        self.cell_channels, self.grid = cell_channels, grid
        self.score = (nn.Conv2d(cell_channels, 1, 1) if not hidden else
                      nn.Sequential(nn.Conv2d(cell_channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1)))
        self.stop_score = nn.Linear(cell_channels, 1) if stop else None

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        cells = latent.reshape(-1, self.cell_channels, self.grid, self.grid)
        scores = self.score(cells).flatten(1)
        if self.stop_score is None:
            return scores
        return torch.cat([scores, self.stop_score(cells.mean(dim=(2, 3)))], dim=1)


def action_grid(name: str, action_space: Any) -> tuple[int, bool]:
    """``(grid, stop)`` of an AlignSAM action space: ``Discrete(grid**2)``, or ``Discrete(grid**2 + 1)`` with the
    stop action. :raises ValueError: naming the policy for any other space."""
    n = int(action_space.n)
    for grid, stop in ((int(round(n ** 0.5)), False), (int(round((n - 1) ** 0.5)), True)):
        if grid > 0 and grid * grid + stop == n:
            return grid, stop
    raise ValueError(f"{name} needs a square action grid (with or without one stop action), got Discrete({n})")


def _cell_settings(name: str, action_space: Any, cell_hidden: int, kwargs: dict[str, Any]) -> tuple[int, bool]:
    """Check ``cell_hidden`` and the square action grid, and default ``kwargs`` to the spatial extractor on that
    grid (a copy of the caller's extractor kwargs); the checked ``cell_hidden`` and whether there is a stop action."""
    if cell_hidden < 0:
        raise ValueError(f"cell_hidden must be 0 (a linear cell score) or a width, got {cell_hidden}")
    kwargs.setdefault("features_extractor_class", SpatialEmbeddingExtractor)
    extractor_kwargs = dict(kwargs.get("features_extractor_kwargs") or {})  # never change the caller's dict
    kwargs["features_extractor_kwargs"] = extractor_kwargs
    grid, stop = action_grid(name, action_space)
    extractor_kwargs.setdefault("grid", grid)
    return int(cell_hidden), stop


class _CellScoring:
    """What both policies add to their SB3 base class: the spatial extractor by default, the per-cell actor
    head, and ``cell_hidden`` saved with the model."""

    def __init__(self, observation_space, action_space, lr_schedule, *args: Any, cell_hidden: int = 0,
                 **kwargs: Any) -> None:
        self.cell_hidden, self.has_stop_action = _cell_settings(type(self).__name__, action_space, cell_hidden, kwargs)
        kwargs.setdefault("net_arch", {"pi": [], "vf": [128]})
        kwargs.setdefault("ortho_init", False)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        extractor = self.pi_features_extractor
        if isinstance(extractor, SpatialEmbeddingExtractor) and self.mlp_extractor.latent_dim_pi == extractor.features_dim:
            self.action_net = CellScores(extractor.cell_channels, extractor.grid, self.cell_hidden, self.has_stop_action)
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "cell_hidden": self.cell_hidden}


class AlignSAMPolicy(_CellScoring, ActorCriticPolicy):
    """Actor-critic policy for ``AlignSAM-v0`` (PPO, A2C).

    The action is a position, so the actor scores each cell of the action grid from that cell's
    features with shared weights (a 1x1 convolution over :class:`SpatialEmbeddingExtractor`'s map):
    what makes a cell foreground is learned once, not 100 times. The critic is an MLP on the same
    features. No orthogonal re-initialisation (SB3's ``ortho_init`` would overwrite the extractor's).
    ``cell_hidden`` (``policy_kwargs``, default 0) makes the cell score a small per-cell MLP of that width
    instead of a linear function of the cell's features (with the extractor's ``passthrough`` channels a
    score can then compare the mask with the SRM's map, which a linear one cannot).
    With the env's stop action (``Discrete(grid_size**2 + 1)``) one more logit scores stopping.
    Other ``ActorCriticPolicy`` arguments can still be passed through ``policy_kwargs``.
    """


class MaskableAlignSAMPolicy(_CellScoring, MaskableActorCriticPolicy):
    """:class:`AlignSAMPolicy` for sb3-contrib's ``MaskablePPO``: the same per-cell actor and critic, and the
    env's ``action_masks()`` (cells not prompted yet) applied to the logits in training as in evaluation."""


class AlignSAMDQNPolicy(DQNPolicy):
    """DQN's policy for ``AlignSAM-v0`` with the per-cell head of :class:`AlignSAMPolicy`: the Q-value of prompting
    a cell is scored from that cell's features with shared weights (:class:`CellScores` over
    :class:`SpatialEmbeddingExtractor`'s map), in the online and the target network alike. ``cell_hidden``
    (``policy_kwargs``) as for :class:`AlignSAMPolicy`; ``net_arch`` has no effect (the head is the cell score).
    """

    def __init__(self, observation_space, action_space, lr_schedule, *args: Any, cell_hidden: int = 0,
                 **kwargs: Any) -> None:
        self.cell_hidden, self.has_stop_action = _cell_settings(type(self).__name__, action_space, cell_hidden, kwargs)
        kwargs.setdefault("net_arch", [])
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def make_q_net(self) -> QNetwork:
        q_net = super().make_q_net()
        extractor = q_net.features_extractor
        if isinstance(extractor, SpatialEmbeddingExtractor):
            q_net.q_net = CellScores(extractor.cell_channels, extractor.grid, self.cell_hidden, self.has_stop_action).to(self.device)
        return q_net

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "cell_hidden": self.cell_hidden}
