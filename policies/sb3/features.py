"""Features extractors for the masked-embedding observation ``(C, h, w) float``.

SB3's ``CnnPolicy`` expects uint8 images of at least 36x36 and ``MlpPolicy`` would flatten 170k
values into one linear layer; neither fits ``s_t = E(x) * M``. These extractors wrap the bodies of
:mod:`policies.networks` (1x1 convolution, 3x3 convolutions, pooled to the action grid; the RLlib
module uses the same).

Both also take the compact observation of ``obs_mode="compact"`` (a mask and an embedding key, see
:mod:`alignsam_gym.observation`): given the envs' :class:`~alignsam_gym.observation.EmbeddingTable`
(``embedding_table=``, which :func:`policies.sb3.presets.make_model` passes for you), they form the same
``s_t`` from it as the env's full observation, with the same function.
"""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn.functional as F
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from alignsam_gym.observation import CompactObservationSpace, EmbeddingTable
from policies.networks import conv_trunk, masked_embedding_body


def _state_shape(observation_space: gym.Space, name: str, table: EmbeddingTable | None) -> tuple[int, int, int]:
    """``(C, obs_size, obs_size)`` of the state the extractor sees, for a full or compact observation."""
    if isinstance(observation_space, CompactObservationSpace):
        if table is None:
            raise ValueError(f"{name} on compact observations needs the envs' embedding_table (an "
                             "alignsam_gym.observation.EmbeddingTable): pass it in features_extractor_kwargs, or "
                             "build the model with policies.make_model, which does")
        return observation_space.state_shape
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
        raise ValueError(f"{name} needs a (C, h, w) Box or an AlignSAM compact observation, got {observation_space}")
    return observation_space.shape


def masked_states(observations: torch.Tensor | dict[str, torch.Tensor], observation_space: gym.Space,
                  table: EmbeddingTable | None) -> torch.Tensor:
    """``(B, C, s, s) float32`` states ``s_t``: the observations themselves, or, for compact
    observations, the table's embeddings times the masks, pooled to ``obs_size`` exactly as the env
    forms its full observation (:func:`alignsam_gym.observation.masked_state`)."""
    if not isinstance(observation_space, CompactObservationSpace):
        return observations.float()
    return table.states(observations["embedding_key"], observations["mask"], observation_space.obs_size,
                        observation_space.observation, observations.get("srm"))


class MaskedEmbeddingExtractor(BaseFeaturesExtractor):
    """A feature vector of the masked embedding, for every SB3 algorithm (``policy_kwargs``).

    :param observation_space: a ``Box`` of shape ``(C, h, w)`` or a compact observation space.
    :param channels: width of the convolutions.
    :param grid: the feature map is average-pooled to ``grid x grid`` before flattening.
    :param features_dim: size of the output vector.
    :param embedding_table: the envs' table, for compact observations.
    """

    def __init__(self, observation_space: gym.spaces.Box, channels: int = 64, grid: int = 10,
                 features_dim: int = 256, embedding_table: EmbeddingTable | None = None) -> None:
        in_channels = _state_shape(observation_space, "MaskedEmbeddingExtractor", embedding_table)[0]
        super().__init__(observation_space, features_dim)
        self.embedding_table = embedding_table
        self.body = masked_embedding_body(in_channels, channels, grid, features_dim)

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        return self.body(masked_states(observations, self._observation_space, self.embedding_table))


class SpatialEmbeddingExtractor(BaseFeaturesExtractor):
    """The masked embedding as a ``(cell_channels + passthrough, grid, grid)`` map, flattened channel-major.

    Keeps one feature vector per action cell, so a policy can score every cell with the same
    weights (:class:`~policies.sb3.policy.AlignSAMPolicy`). With ``passthrough=k`` the state's last ``k``
    channels, area-pooled to the grid, are appended to each cell's features as they are: with
    ``observation="channels"`` and ``observe_srm=True`` the last two are the mask ``M`` and the SRM's map,
    so the cell scores read both directly instead of through the convolutions (they are 2 of ``C + 2``
    inputs there, and learning to find them takes most of a CPU budget).

    :param observation_space: a ``Box`` of shape ``(C, h, w)`` or a compact observation space.
    :param channels: width of the convolutions.
    :param cell_channels: features per cell from the convolutions.
    :param grid: the action grid's side (10 for ``Discrete(100)``).
    :param passthrough: the state's last channels appended to every cell's features unchanged (0: none).
    :param embedding_table: the envs' table, for compact observations.
    """

    def __init__(self, observation_space: gym.spaces.Box, channels: int = 64, cell_channels: int = 32,
                 grid: int = 10, passthrough: int = 0, embedding_table: EmbeddingTable | None = None) -> None:
        in_channels = _state_shape(observation_space, "SpatialEmbeddingExtractor", embedding_table)[0]
        if not 0 <= passthrough <= in_channels:
            raise ValueError(f"passthrough must be between 0 and the state's {in_channels} channels, got {passthrough}")
        super().__init__(observation_space, (cell_channels + passthrough) * grid * grid)
        self.embedding_table = embedding_table
        self.cell_channels, self.grid, self.passthrough = cell_channels + passthrough, grid, int(passthrough)
        # (trunk, flatten): the module names of models saved before ``passthrough`` existed
        self.body = nn.Sequential(conv_trunk(in_channels, channels, cell_channels, grid), nn.Flatten())

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        states = masked_states(observations, self._observation_space, self.embedding_table)
        if not self.passthrough:
            return self.body(states)
        cells = self.body[0](states)
        direct = F.adaptive_avg_pool2d(states[:, -self.passthrough:], self.grid)
        return torch.cat([cells, direct], dim=1).flatten(1)
