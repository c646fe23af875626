"""Features extractors for the masked-embedding observation ``(C, h, w) float``.

SB3's ``CnnPolicy`` expects uint8 images of at least 36x36 and ``MlpPolicy`` would flatten 170k
values into one linear layer; neither fits ``s_t = E(x) * M``. These extractors reduce channels with
a 1x1 convolution, mix neighbouring cells with 3x3 convolutions and pool to the action grid. They
have no BatchNorm and no attention across the batch, so rollout and update batches give the same
outputs.

Both also take the compact observation of ``obs_mode="compact"`` (a mask and an embedding key, see
:mod:`alignsam_gym.envs.compact`) and form the same ``s_t`` from it as the env's full observation.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from alignsam_gym.envs import compact


def _conv_trunk(in_channels: int, channels: int, out_channels: int, grid: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
        nn.Conv2d(channels, out_channels, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(grid),
    )


def _state_shape(observation_space: gym.Space, name: str) -> tuple[int, int, int]:
    """``(C, obs_size, obs_size)`` of the state the extractor sees, for a full or compact observation."""
    if isinstance(observation_space, compact.CompactObservationSpace):
        return (observation_space.embedding_shape[0], observation_space.obs_size, observation_space.obs_size)
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
        raise ValueError(f"{name} needs a (C, h, w) Box or an AlignSAM compact observation, got {observation_space}")
    return observation_space.shape


def masked_state(observations: torch.Tensor | dict[str, torch.Tensor], observation_space: gym.Space) -> torch.Tensor:
    """``(B, C, s, s) float32`` states ``s_t``: the observations themselves, or, for compact
    observations, the published embeddings times the masks, area-pooled to ``obs_size`` exactly as
    the env pools its full observation."""
    if not isinstance(observation_space, compact.CompactObservationSpace):
        return observations.float()
    masks = observations["mask"].float()
    keys = observations["embedding_key"].round().to(torch.uint8).cpu().numpy()  # SB3 hands Box obs over as float
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    embeddings = torch.from_numpy(np.stack([compact.lookup(key) for key in unique])).to(masks.device)
    states = embeddings[torch.as_tensor(inverse.reshape(-1), device=masks.device)] * masks[:, None]
    size = observation_space.obs_size
    if states.shape[-2:] != (size, size):
        states = F.interpolate(states, size=(size, size), mode="area")
    return states


class MaskedEmbeddingExtractor(BaseFeaturesExtractor):
    """A feature vector of the masked embedding, for every SB3 algorithm (``policy_kwargs``).

    :param observation_space: a ``Box`` of shape ``(C, h, w)`` or a compact observation space.
    :param channels: width of the convolutions.
    :param grid: the feature map is average-pooled to ``grid x grid`` before flattening.
    :param features_dim: size of the output vector.
    """

    def __init__(self, observation_space: gym.spaces.Box, channels: int = 64, grid: int = 10,
                 features_dim: int = 256) -> None:
        in_channels = _state_shape(observation_space, "MaskedEmbeddingExtractor")[0]
        super().__init__(observation_space, features_dim)
        self.body = nn.Sequential(
            _conv_trunk(in_channels, channels, channels // 4, grid), nn.Flatten(),
            nn.Linear(channels // 4 * grid * grid, features_dim), nn.ReLU(),
        )

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        return self.body(masked_state(observations, self._observation_space))


class SpatialEmbeddingExtractor(BaseFeaturesExtractor):
    """The masked embedding as a ``(cell_channels, grid, grid)`` map, flattened channel-major.

    Keeps one feature vector per action cell, so a policy can score every cell with the same
    weights (:class:`~policies.policy.AlignSAMPolicy`).

    :param observation_space: a ``Box`` of shape ``(C, h, w)`` or a compact observation space.
    :param channels: width of the convolutions.
    :param cell_channels: features per cell.
    :param grid: the action grid's side (10 for ``Discrete(100)``).
    """

    def __init__(self, observation_space: gym.spaces.Box, channels: int = 64, cell_channels: int = 32,
                 grid: int = 10) -> None:
        in_channels = _state_shape(observation_space, "SpatialEmbeddingExtractor")[0]
        super().__init__(observation_space, cell_channels * grid * grid)
        self.cell_channels, self.grid = cell_channels, grid
        self.body = nn.Sequential(_conv_trunk(in_channels, channels, cell_channels, grid), nn.Flatten())

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        return self.body(masked_state(observations, self._observation_space))
