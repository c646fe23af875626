"""The Stable-Baselines3 plugin proper: features extractors, ``AlignSAMPolicy``, algorithm presets,
``SRMCallback`` and the batched SB3 ``VecEnv``."""

from policies.sb3.callback import SRMCallback
from policies.sb3.features import MaskedEmbeddingExtractor, SpatialEmbeddingExtractor
from policies.sb3.policy import AlignSAMDQNPolicy, AlignSAMPolicy, MaskableAlignSAMPolicy
from policies.sb3.presets import PRESETS, make_model
from policies.sb3.vec_env import AlignSAMVecEnv

__all__ = ["AlignSAMDQNPolicy", "AlignSAMPolicy", "AlignSAMVecEnv", "MaskableAlignSAMPolicy", "MaskedEmbeddingExtractor", "PRESETS",
           "SRMCallback", "SpatialEmbeddingExtractor", "make_model"]
