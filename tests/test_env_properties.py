"""Property-based tests of the env: any seed and action sequence keeps every invariant."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alignsam_gym  # noqa: F401

MAX_PROMPTS = 5
ENVS: dict[tuple, gym.Env] = {}


def env_for(task: str, label_source: str, obs_mode: str) -> gym.Env:
    """One env per setting for the whole module (construction is cheap, but each image costs an encode)."""
    key = (task, label_source, obs_mode)
    if key not in ENVS:
        ENVS[key] = gym.make("AlignSAM-v0", task=task, num_images=2, max_prompts=MAX_PROMPTS, obs_size=5,
                             label_source=label_source, obs_mode=obs_mode)
    return ENVS[key]


def run_episode(env: gym.Env, seed: int, actions: list[int]) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    assert env.observation_space.contains(obs), "reset observation outside the space"
    trace = [(_copy(obs), 0.0, info["iou"])]
    terminated = False
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs), "observation outside the space"
        assert reward in (-1.0, 1.0) and not truncated
        assert reward == (1.0 if info["is_foreground"] else -1.0)
        assert 0.0 <= info["iou"] <= 1.0 and info["label"] in (0, 1)
        assert 1 <= info["num_prompts"] <= MAX_PROMPTS
        assert info["action_mask"].shape == (100,) and not info["action_mask"][action]
        trace.append((_copy(obs), reward, info["iou"], info["label"]))
        if terminated:
            break
    return trace


def _copy(obs):
    return {k: v.copy() for k, v in obs.items()} if isinstance(obs, dict) else obs.copy()


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return all(np.array_equal(a[k], b[k]) for k in a)
    return np.array_equal(a, b)


@pytest.mark.parametrize("task,label_source,obs_mode", [
    ("synthetic-saliency", "srm", "full"),
    ("synthetic-shapes", "gt", "compact"),
    ("synthetic-shadow", "last_mask", "full"),
])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), actions=st.lists(st.integers(0, 99), min_size=MAX_PROMPTS, max_size=MAX_PROMPTS))
def test_any_seed_and_actions_keep_the_invariants(task, label_source, obs_mode, seed, actions):
    env = env_for(task, label_source, obs_mode)
    first = run_episode(env, seed, actions)
    assert len(first) == MAX_PROMPTS + 1  # exactly max_prompts steps, the last one terminal
    with pytest.raises(RuntimeError, match=r"has ended \(max_prompts=\d+ prompts spent\)"):
        env.step(actions[0])
    again = run_episode(env, seed, actions)
    assert all(_same(x[0], y[0]) and x[1:] == y[1:] for x, y in zip(first, again))  # same seed, same episode


@settings(max_examples=25, deadline=None)
@given(action=st.one_of(st.integers(max_value=-1), st.integers(min_value=100), st.floats(allow_nan=True),
                        st.booleans(), st.text(max_size=3)))
def test_any_invalid_action_is_refused_and_changes_nothing(action):
    env = env_for("synthetic-saliency", "srm", "full")
    env.reset(seed=0)
    before = env.unwrapped.action_masks().copy()
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 100\)"):
        env.step(action)
    np.testing.assert_array_equal(env.unwrapped.action_masks(), before)
    assert env.unwrapped.episode.num_prompts == 0
