"""The Stable-Baselines3 side of AlignSAM-Gym, organised by concept:

- :mod:`policies.sb3`: the SB3 plugin proper (features extractors, ``AlignSAMPolicy``, presets,
  ``SRMCallback``, the batched ``AlignSAMVecEnv``), re-exported here;
- :mod:`policies.runs`: training and evaluation runs (``RunConfig``, ``RunFolder``, ``train``,
  ``evaluate``, checkpoints);
- :mod:`policies.benchmarks`: every benchmark (decoder, SAM episode, env throughput, soak, the policy
  grid and its report; the quickstart is a built-in grid config);
- :mod:`policies.cli`: the ``alignsam`` command line.

``alignsam_gym`` never imports this package. Pass the features extractor to any SB3 algorithm::

    from stable_baselines3 import PPO
    from policies import MaskedEmbeddingExtractor
    model = PPO("MlpPolicy", env, policy_kwargs={"features_extractor_class": MaskedEmbeddingExtractor})
"""

from policies.sb3 import (
    PRESETS, AlignSAMDQNPolicy, AlignSAMPolicy, AlignSAMVecEnv, MaskableAlignSAMPolicy, MaskedEmbeddingExtractor,
    SpatialEmbeddingExtractor, SRMCallback, make_model,
)

__all__ = ["AlignSAMDQNPolicy", "AlignSAMPolicy", "AlignSAMVecEnv", "MaskableAlignSAMPolicy", "MaskedEmbeddingExtractor",
           "PRESETS", "SRMCallback", "SpatialEmbeddingExtractor", "make_model"]
