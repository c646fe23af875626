"""AlignSAM-Gym: the AlignSAM method (CVPR 2024) as a Gymnasium environment.

Importing this package registers ``AlignSAM-v0``; ``gym.make("alignsam_gym:AlignSAM-v0")`` imports
it for you. Registration uses a string entry point, so heavy modules load only when an env is made.
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

#: the env's id
ENV_ID = "AlignSAM-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="alignsam_gym.envs.alignsam_env:AlignSAMEnv",
             vector_entry_point="alignsam_gym.envs.vector:AlignSAMVectorEnv")
