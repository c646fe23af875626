from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import alignsam_gym  # noqa: F401  (registers the ids)

CCP_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ccp"


@pytest.fixture
def ccp_root() -> Path:
    if not (CCP_ROOT / "images").is_dir():
        pytest.skip(f"the CCP subset is not at {CCP_ROOT}")
    return CCP_ROOT


@pytest.fixture
def make_env():
    """``make_env(**kwargs)``: gym.make('AlignSAM-v0') with few images (each costs an encode); closed after the test."""
    envs = []

    def factory(**kwargs):
        kwargs.setdefault("num_images", 2)
        env = gym.make("AlignSAM-v0", **kwargs)
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()
