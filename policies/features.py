"""A features extractor for the masked-embedding observation ``(C, h, w) float``.

SB3's ``CnnPolicy`` expects uint8 images of at least 36x36 and ``MlpPolicy`` would flatten 170k
values into one linear layer; neither fits ``s_t = E(x) * M``. This extractor reduces channels with
a 1x1 convolution, mixes neighbouring cells with two 3x3 convolutions, and keeps the spatial layout
in the flattened output, because the policy's action is a position on the grid. It has no
BatchNorm and no attention across the batch, so rollout and update batches give the same outputs.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class MaskedEmbeddingExtractor(BaseFeaturesExtractor):
    """Conv features of the masked embedding, for every SB3 algorithm (``policy_kwargs``).

    :param observation_space: a ``Box`` of shape ``(C, h, w)``.
    :param channels: width of the convolutions.
    :param grid: the feature map is average-pooled to ``grid x grid`` before flattening
        (the env's action grid is 10x10).
    :param features_dim: size of the output vector.
    """

    def __init__(self, observation_space: gym.spaces.Box, channels: int = 64, grid: int = 10,
                 features_dim: int = 256) -> None:
        if len(observation_space.shape) != 3:
            raise ValueError(f"MaskedEmbeddingExtractor needs a (C, h, w) observation, got {observation_space.shape}")
        super().__init__(observation_space, features_dim)
        in_channels = observation_space.shape[0]
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels // 4, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(grid), nn.Flatten(),
            nn.Linear(channels // 4 * grid * grid, features_dim), nn.ReLU(),
        )

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.body(observations.float())
