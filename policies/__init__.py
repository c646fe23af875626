"""The Stable-Baselines3 plugin for ``AlignSAM-v0``.

``alignsam_gym`` never imports this package; this package imports ``alignsam_gym``'s spaces only
through the env. Pass the features extractor to any SB3 algorithm::

    from stable_baselines3 import PPO
    from policies import MaskedEmbeddingExtractor
    model = PPO("MlpPolicy", env, policy_kwargs={"features_extractor_class": MaskedEmbeddingExtractor})
"""

from policies.features import MaskedEmbeddingExtractor

__all__ = ["MaskedEmbeddingExtractor"]
