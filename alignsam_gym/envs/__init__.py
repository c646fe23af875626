"""Environments. Import the class from here; ``gym.make`` uses the string entry point instead."""

from alignsam_gym.envs.alignsam_env import AlignSAMEnv

__all__ = ["AlignSAMEnv"]
