"""The agent's network bodies as plain torch modules, shared by the SB3 extractors and the RLlib module.

A 1x1 convolution reduces the embedding's channels, two 3x3 convolutions mix neighbouring cells, and an
adaptive average pool brings the map to the action grid. No BatchNorm and no attention across the batch,
so rollout and update batches give the same outputs.
"""

from __future__ import annotations

from torch import nn


def conv_trunk(in_channels: int, channels: int, out_channels: int, grid: int) -> nn.Sequential:
    """``(B, in_channels, h, w) -> (B, out_channels, grid, grid)``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, out_channels, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(grid),
    )


def masked_embedding_body(in_channels: int, channels: int = 64, grid: int = 10, features_dim: int = 256) -> nn.Sequential:
    """``(B, in_channels, h, w) -> (B, features_dim)``: the trunk, flattened, and one linear layer with ReLU
    (the body of :class:`policies.sb3.features.MaskedEmbeddingExtractor`)."""
    return nn.Sequential(
        conv_trunk(in_channels, channels, channels // 4, grid), nn.Flatten(),
        nn.Linear(channels // 4 * grid * grid, features_dim), nn.ReLU(),
    )
