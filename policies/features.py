"""Features extractors for the masked-embedding observation ``(C, h, w) float``.

SB3's ``CnnPolicy`` expects uint8 images of at least 36x36 and ``MlpPolicy`` would flatten 170k
values into one linear layer; neither fits ``s_t = E(x) * M``. These extractors reduce channels with
a 1x1 convolution, mix neighbouring cells with 3x3 convolutions and pool to the action grid. They
have no BatchNorm and no attention across the batch, so rollout and update batches give the same
outputs.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


def _conv_trunk(in_channels: int, channels: int, out_channels: int, grid: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, out_channels, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(grid),
    )


def _check(observation_space: gym.spaces.Box, name: str) -> None:
    if len(observation_space.shape) != 3:
        raise ValueError(f"{name} needs a (C, h, w) observation, got {observation_space.shape}")


class MaskedEmbeddingExtractor(BaseFeaturesExtractor):
    """A feature vector of the masked embedding, for every SB3 algorithm (``policy_kwargs``).

    :param observation_space: a ``Box`` of shape ``(C, h, w)``.
    :param channels: width of the convolutions.
    :param grid: the feature map is average-pooled to ``grid x grid`` before flattening.
    :param features_dim: size of the output vector.
    """

    def __init__(self, observation_space: gym.spaces.Box, channels: int = 64, grid: int = 10,
                 features_dim: int = 256) -> None:
        _check(observation_space, "MaskedEmbeddingExtractor")
        super().__init__(observation_space, features_dim)
        self.body = nn.Sequential(
            _conv_trunk(observation_space.shape[0], channels, channels // 4, grid), nn.Flatten(),
            nn.Linear(channels // 4 * grid * grid, features_dim), nn.ReLU(),
        )

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.body(observations.float())


class SpatialEmbeddingExtractor(BaseFeaturesExtractor):
    """The masked embedding as a ``(cell_channels, grid, grid)`` map, flattened channel-major.

    Keeps one feature vector per action cell, so a policy can score every cell with the same
    weights (:class:`~policies.policy.AlignSAMPolicy`).

    :param observation_space: a ``Box`` of shape ``(C, h, w)``.
    :param channels: width of the convolutions.
    :param cell_channels: features per cell.
    :param grid: the action grid's side (10 for ``Discrete(100)``).
    """

    def __init__(self, observation_space: gym.spaces.Box, channels: int = 64, cell_channels: int = 32,
                 grid: int = 10) -> None:
        _check(observation_space, "SpatialEmbeddingExtractor")
        super().__init__(observation_space, cell_channels * grid * grid)
        self.cell_channels, self.grid = cell_channels, grid
        self.body = nn.Sequential(_conv_trunk(observation_space.shape[0], channels, cell_channels, grid), nn.Flatten())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.body(observations.float())
