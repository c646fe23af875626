"""Environments. Import the classes from here; ``gym.make`` uses the string entry points instead.

- :class:`AlignSAMEnv`: one env (``AlignSAM-v0``);
- :class:`AlignSAMVectorEnv`: N envs stepped as one batch (its ``vector_entry_point``);
- :class:`EnvCore`: the parts both are made of (dataset, backend, labeler, spaces) and the batched step.
"""

from alignsam_gym.envs.alignsam_env import AlignSAMEnv
from alignsam_gym.envs.core import EnvCore
from alignsam_gym.envs.vector import AlignSAMVectorEnv

__all__ = ["AlignSAMEnv", "AlignSAMVectorEnv", "EnvCore"]
