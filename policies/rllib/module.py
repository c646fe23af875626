"""``AlignSAMRLModule``: the SB3 plugin's masked-embedding network as an RLlib RLModule (new API stack).

The body is :func:`policies.networks.masked_embedding_body` (the body of the SB3
``MaskedEmbeddingExtractor``); a linear head gives one logit per grid cell and another the state value,
as SB3's actor-critic policy does on top of the extractor. Observations are the env's full observation
``(C, obs_size, obs_size) float`` (RLlib's env runners live in other processes, so the compact form,
whose embeddings live in the envs' process, does not apply).

``model_config``: ``channels`` (64), ``grid`` (10), ``features_dim`` (256), as the SB3 extractor's kwargs.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from policies.networks import masked_embedding_body


class AlignSAMRLModule(TorchRLModule, ValueFunctionAPI):
    """Policy logits over the ``Discrete(grid_size**2)`` cells and a value, from the masked embedding."""

    def setup(self) -> None:
        shape = self.observation_space.shape
        if shape is None or len(shape) != 3:
            raise ValueError(f"AlignSAMRLModule needs the env's full (C, h, w) observation (obs_mode='full'), "
                             f"got {self.observation_space}")
        features = int(self.model_config.get("features_dim", 256))
        self.body = masked_embedding_body(shape[0], int(self.model_config.get("channels", 64)),
                                          int(self.model_config.get("grid", 10)), features)
        self.policy_head = nn.Linear(features, int(self.action_space.n))
        self.value_head = nn.Linear(features, 1)

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.policy_head(self.body(batch[Columns.OBS].float()))}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        embeddings = self.body(batch[Columns.OBS].float())
        return {Columns.ACTION_DIST_INPUTS: self.policy_head(embeddings), Columns.EMBEDDINGS: embeddings}

    def compute_values(self, batch: dict[str, Any], embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``(B,)`` state values (from ``embeddings`` of :meth:`_forward_train` when given, saving a body pass)."""
        if embeddings is None:
            embeddings = self.body(batch[Columns.OBS].float())
        return self.value_head(embeddings).squeeze(-1)
