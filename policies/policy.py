"""``AlignSAMPolicy``: SB3's actor-critic policy with the AlignSAM features extractor as default."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.policies import ActorCriticPolicy

from policies.features import MaskedEmbeddingExtractor


class AlignSAMPolicy(ActorCriticPolicy):
    """Actor-critic policy for ``AlignSAM-v0`` (PPO, A2C): :class:`MaskedEmbeddingExtractor` shared by
    actor and critic, two 128-unit layers each, and no orthogonal re-initialisation (SB3's
    ``ortho_init`` would overwrite the extractor's initialisation). Every argument of
    ``ActorCriticPolicy`` can still be overridden through ``policy_kwargs``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", MaskedEmbeddingExtractor)
        kwargs.setdefault("net_arch", {"pi": [128], "vf": [128]})
        kwargs.setdefault("ortho_init", False)
        super().__init__(*args, **kwargs)
