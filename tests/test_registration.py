"""Registration, the env checkers of Gymnasium and SB3, and cheap construction."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import alignsam_gym
from alignsam_gym.backends import shared_backend
from alignsam_gym.data.tasks import DEFAULT_TASK, SYNTHETIC_TASKS


def test_import_registers_the_id():
    assert alignsam_gym.ENV_ID in gym.registry
    assert isinstance(gym.registry[alignsam_gym.ENV_ID].entry_point, str)  # lazy: no heavy import at registration


def test_namespaced_make_works_without_import():
    code = ("import gymnasium as gym; env = gym.make('alignsam_gym:AlignSAM-v0', num_images=1); "
            "print(type(env.unwrapped).__name__, env.action_space)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "AlignSAMEnv Discrete(100)"


def test_import_does_not_load_torch_or_sb3():
    code = "import sys, alignsam_gym; print('torch' in sys.modules, 'stable_baselines3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_gymnasium_check_env():
    env = gym.make(alignsam_gym.ENV_ID, num_images=2)
    gym_check_env(env.unwrapped, skip_render_check=False)


def test_sb3_check_env():
    env = gym.make(alignsam_gym.ENV_ID, num_images=2)
    sb3_check_env(env.unwrapped, warn=True)


def test_default_task_is_documented():
    env = gym.make("AlignSAM-v0", num_images=1)
    assert env.unwrapped.task == DEFAULT_TASK == "synthetic-saliency"
    assert DEFAULT_TASK in SYNTHETIC_TASKS


def test_construction_is_cheap_and_shares_the_backend():
    # A backend configuration no other test uses: nothing may be loaded until the first encode.
    kwargs = {"encoder_size": 352}
    first = gym.make("AlignSAM-v0", num_images=1, backend_kwargs=kwargs)
    second = gym.make("AlignSAM-v0", num_images=1, task="synthetic-blur", backend_kwargs=kwargs)
    backend = first.unwrapped.backend
    assert backend is second.unwrapped.backend is shared_backend("lite", device="auto", **kwargs)
    assert not backend.is_loaded
    assert first.observation_space.shape == (432, 11, 11)
