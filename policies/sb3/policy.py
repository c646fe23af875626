"""Actor-critic policies that score every grid cell with the same weights: ``AlignSAMPolicy`` (PPO, A2C) and
``MaskableAlignSAMPolicy`` (sb3-contrib's MaskablePPO, which never samples a cell already prompted)."""

from __future__ import annotations

from typing import Any

import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from policies.sb3.features import SpatialEmbeddingExtractor


class CellScores(nn.Module):
    """Action logits from per-cell features: a 1x1 convolution over the ``(c, g, g)`` feature map, or with
    ``hidden > 0`` a per-cell MLP (1x1 convolution to ``hidden`` channels, ReLU, 1x1 convolution)."""

    def __init__(self, cell_channels: int, grid: int, hidden: int = 0) -> None:
        super().__init__()
        self.cell_channels, self.grid = cell_channels, grid
        self.score = (nn.Conv2d(cell_channels, 1, 1) if not hidden else
                      nn.Sequential(nn.Conv2d(cell_channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1)))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        cells = latent.reshape(-1, self.cell_channels, self.grid, self.grid)
        return self.score(cells).flatten(1)


class _CellScoring:
    """What both policies add to their SB3 base class: the spatial extractor by default, the per-cell actor
    head, and ``cell_hidden`` saved with the model."""

    def __init__(self, observation_space, action_space, lr_schedule, *args: Any, cell_hidden: int = 0,
                 **kwargs: Any) -> None:
        if cell_hidden < 0:
            raise ValueError(f"cell_hidden must be 0 (a linear cell score) or a width, got {cell_hidden}")
        self.cell_hidden = int(cell_hidden)
        kwargs.setdefault("features_extractor_class", SpatialEmbeddingExtractor)
        extractor_kwargs = dict(kwargs.get("features_extractor_kwargs") or {})  # never change the caller's dict
        kwargs["features_extractor_kwargs"] = extractor_kwargs
        grid = int(round(action_space.n ** 0.5))
        if grid * grid != action_space.n:
            raise ValueError(f"{type(self).__name__} needs a square action grid, got Discrete({action_space.n})")
        extractor_kwargs.setdefault("grid", grid)
        kwargs.setdefault("net_arch", {"pi": [], "vf": [128]})
        kwargs.setdefault("ortho_init", False)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        extractor = self.pi_features_extractor
        if isinstance(extractor, SpatialEmbeddingExtractor) and self.mlp_extractor.latent_dim_pi == extractor.features_dim:
            self.action_net = CellScores(extractor.cell_channels, extractor.grid, self.cell_hidden)
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
    Other ``ActorCriticPolicy`` arguments can still be passed through ``policy_kwargs``.
    """


class MaskableAlignSAMPolicy(_CellScoring, MaskableActorCriticPolicy):
    """:class:`AlignSAMPolicy` for sb3-contrib's ``MaskablePPO``: the same per-cell actor and critic, and the
    env's ``action_masks()`` (cells not prompted yet) applied to the logits in training as in evaluation."""
