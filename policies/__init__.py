"""The Stable-Baselines3 plugin for ``AlignSAM-v0``: features extractors, policy, presets, SRM callback,
the batched ``AlignSAMVecEnv``.

``alignsam_gym`` never imports this package; this package imports ``alignsam_gym``'s spaces only
through the env. Pass the features extractor to any SB3 algorithm::

    from stable_baselines3 import PPO
    from policies import MaskedEmbeddingExtractor
    model = PPO("MlpPolicy", env, policy_kwargs={"features_extractor_class": MaskedEmbeddingExtractor})
"""

from policies.callback import SRMCallback
from policies.features import MaskedEmbeddingExtractor, SpatialEmbeddingExtractor
from policies.policy import AlignSAMPolicy
from policies.presets import PRESETS, make_model
from policies.vec_env import AlignSAMVecEnv

__all__ = ["AlignSAMPolicy", "AlignSAMVecEnv", "MaskedEmbeddingExtractor", "PRESETS", "SRMCallback",
           "SpatialEmbeddingExtractor", "make_model"]
