"""The reward and observation options of AlignSAM-v0 on hand-made cases; the defaults are the paper's."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from alignsam_gym.envs.vector import AlignSAMVectorEnv
from alignsam_gym.observation import agent_channels, agent_state, full_observation

KWARGS = {"task": "synthetic-shapes", "num_images": 2, "label_source": "gt", "max_prompts": 6}


@pytest.mark.parametrize("reward, scale, penalty, fg, gain, repeat, expected", [
    ("foreground", 10.0, 0.0, True, 0.3, False, 1.0),
    ("foreground", 10.0, 0.0, False, 0.3, False, -1.0),
    ("foreground", 10.0, 0.5, True, 0.0, True, 0.5),
    ("iou_gain", 10.0, 0.0, False, 0.25, False, 2.5),
    ("iou_gain", 4.0, 0.0, True, -0.1, False, -0.4),
    ("iou_gain", 10.0, 1.0, True, 0.0, True, -1.0),
    ("foreground+iou", 10.0, 0.0, True, 0.05, False, 1.5),
    ("foreground+iou", 2.0, 0.25, False, 0.5, True, -0.25),
])
def test_reward_options_on_hand_made_prompts(make_env, reward, scale, penalty, fg, gain, repeat, expected):
    env = make_env(**KWARGS, reward=reward, iou_reward_scale=scale, repeat_penalty=penalty)
    assert env.unwrapped.core.reward(fg, gain, repeat) == pytest.approx(expected)


@pytest.mark.parametrize("reward", ["foreground", "iou_gain", "foreground+iou"])
def test_rewards_in_episodes_follow_the_iou_and_the_ground_truth(make_env, reward):
    env = make_env(**KWARGS, reward=reward, iou_reward_scale=10.0, repeat_penalty=0.5)
    _, info = env.reset(seed=3)
    previous = info["iou"]
    for action in (44, 45, 44, 0, 99, 45):
        repeat = bool(env.unwrapped.episode.prompted[action])
        _, got, _, _, info = env.step(action)
        fg = (1.0 if info["is_foreground"] else -1.0) if reward != "iou_gain" else 0.0
        gain = 10.0 * (info["iou"] - previous) if reward != "foreground" else 0.0
        assert got == pytest.approx(fg + gain - (0.5 if repeat else 0.0))
        previous = info["iou"]


def test_default_reward_is_the_papers(make_env):
    env = make_env(**KWARGS)
    env.reset(seed=0)
    for action in (10, 10, 55):  # repeats are paid again, as in the paper
        _, reward, _, _, info = env.step(action)
        assert reward == (1.0 if info["is_foreground"] else -1.0)


@pytest.mark.parametrize("obs_size", [20, 10])
@pytest.mark.parametrize("observation, observe_srm", [("masked", False), ("masked_plus", False), ("channels", False),
                                                      ("masked", True), ("channels", True)])
def test_observation_options_by_hand(make_env, observation, observe_srm, obs_size):
    env = make_env(**KWARGS, observation=observation, observe_srm=observe_srm, obs_size=obs_size)
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(33)
    episode = env.unwrapped.episode
    features, mask = episode.embedding.features, episode.grid_mask  # (432, 20, 20), (20, 20)
    if observation == "masked":
        expected = features * mask
    elif observation == "masked_plus":
        expected = features + features * mask  # features outside the mask are kept
    else:
        expected = np.concatenate([features, mask[None]])
    if observe_srm:
        expected = np.concatenate([expected, env.unwrapped.srm.probabilities([episode])[0][None]])
    assert obs.shape == env.observation_space.shape == (agent_channels(432, observation, observe_srm), obs_size, obs_size)
    if obs_size == 20:
        np.testing.assert_allclose(obs, expected, rtol=1e-6, atol=1e-6)
    else:  # area pooling of 2x2 cells, every channel alike
        pooled = expected.reshape(expected.shape[0], 10, 2, 10, 2).mean(axis=(2, 4))
        np.testing.assert_allclose(obs, pooled, rtol=1e-5, atol=1e-6)
    if observation == "masked" and not observe_srm:  # the default is the paper's s_t, which the SRM reads
        np.testing.assert_allclose(obs, full_observation(episode.state, obs_size, np.float32))


def test_agent_state_numpy_and_torch_agree():
    import torch

    rng = np.random.default_rng(0)
    features, mask, srm = rng.random((2, 5, 4, 4), np.float32), rng.random((2, 4, 4), np.float32), \
        rng.random((2, 4, 4), np.float32)
    for observation in ("masked", "masked_plus", "channels"):
        for extra in (None, srm):
            a = agent_state(features, mask, observation, extra)
            b = agent_state(torch.from_numpy(features), torch.from_numpy(mask), observation,
                            None if extra is None else torch.from_numpy(extra))
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-6)


@pytest.mark.parametrize("options", [{"reward": "foreground+iou", "repeat_penalty": 0.3},
                                     {"observation": "channels", "observe_srm": True},
                                     {"observe_time": True, "budget_end": "truncated"}])
def test_batched_env_plays_the_single_envs_episodes_under_every_option(options):
    vector = AlignSAMVectorEnv(2, **KWARGS, obs_size=10, **options)
    singles = [gym.make("AlignSAM-v0", **KWARGS, obs_size=10, **options) for _ in range(2)]
    obs, _ = vector.reset(seed=4)
    single_obs = [env.reset(seed=4 + i)[0] for i, env in enumerate(singles)]
    np.testing.assert_allclose(obs, np.stack(single_obs), rtol=1e-6, atol=1e-6)
    for actions in ([1, 2], [1, 77], [50, 2]):
        obs, rewards, *_ = vector.step(np.array(actions))
        for i, env in enumerate(singles):
            single, reward, *_ = env.step(actions[i])
            np.testing.assert_allclose(obs[i], single, rtol=1e-6, atol=1e-6)
            assert rewards[i] == pytest.approx(reward)


@pytest.mark.parametrize("kwargs, message", [
    ({"reward": "iou"}, "reward must be one of"),
    ({"observation": "plus"}, "observation must be one of"),
    ({"repeat_penalty": -1}, "repeat_penalty must be a finite number >= 0"),
    ({"iou_reward_scale": 0}, "iou_reward_scale must be a finite number > 0"),
    ({"iou_reward_scale": float("nan")}, "iou_reward_scale must be a finite number"),
    ({"observe_srm": "yes"}, "observe_srm must be True or False"),
    ({"observe_time": 1}, "observe_time must be True or False"),
    ({"observe_time": True, "obs_mode": "compact"}, "observe_time=True needs obs_mode='full'"),
    ({"budget_end": "timeout"}, "budget_end must be one of"),
])
def test_bad_options_name_the_argument(make_env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_env(**KWARGS, **kwargs)


def test_the_time_channel_counts_the_prompts_left_after_every_other_channel(make_env):
    plain = make_env(**KWARGS, obs_size=10, observation="channels", observe_srm=True)
    timed = make_env(**KWARGS, obs_size=10, observation="channels", observe_srm=True, observe_time=True)
    assert timed.observation_space.shape == (plain.observation_space.shape[0] + 1, 10, 10)
    obs, _ = timed.reset(seed=1)
    reference, _ = plain.reset(seed=1)
    np.testing.assert_array_equal(obs[:-1], reference)  # the other channels are untouched
    assert np.all(obs[-1] == 1.0)
    for k, action in enumerate((3, 40, 77, 12, 58, 91), start=1):
        obs, *_ = timed.step(action)
        np.testing.assert_allclose(obs[-1], (6 - k) / 6)


@pytest.mark.parametrize("budget_end", ["terminated", "truncated"])
def test_the_budget_ends_the_episode_as_budget_end_says(make_env, budget_end):
    env = make_env(**KWARGS, budget_end=budget_end)
    env.reset(seed=0)
    for action in range(5):
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated and not truncated
    _, _, terminated, truncated, _ = env.step(5)
    assert (terminated, truncated) == ((True, False) if budget_end == "terminated" else (False, True))
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(6)


def test_sb3_bootstraps_the_value_at_a_truncated_budget():
    """With budget_end='truncated' SB3's vector env marks the end a time limit and keeps the last observation,
    which PPO uses to add gamma * V(s_T) to the last reward (Eq. 6)."""
    from stable_baselines3.common.env_util import make_vec_env

    for budget_end, expected in (("terminated", False), ("truncated", True)):
        env = make_vec_env("AlignSAM-v0", n_envs=1, env_kwargs={**KWARGS, "obs_size": 10, "budget_end": budget_end})
        env.reset()
        for _ in range(6):
            _, _, dones, infos = env.step(np.array([env.env_method("action_masks")[0].argmax()]))
        assert dones[0] and infos[0]["TimeLimit.truncated"] is expected and "terminal_observation" in infos[0]
        env.close()


def test_the_stop_action_ends_the_episode_with_the_mask_kept(make_env):
    env = make_env(**KWARGS, stop_action=True)
    assert env.action_space.n == 101
    env.reset(seed=2)
    _, _, _, _, info = env.step(44)
    mask, iou = env.unwrapped.mask_probability, info["iou"]
    masks = env.unwrapped.action_masks()
    assert masks.shape == (101,) and masks[100] and not masks[44]
    _, reward, terminated, truncated, info = env.step(100)
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert info["stopped"] and info["label"] == -1 and info["num_prompts"] == 1 and info["iou"] == iou
    np.testing.assert_array_equal(env.unwrapped.mask_probability, mask)
    with pytest.raises(RuntimeError, match="stopped after 1 prompts"):
        env.step(3)
    plain = make_env(**KWARGS)
    assert plain.action_space.n == 100
    plain.reset(seed=2)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 100\)"):
        plain.step(100)


def test_a_batch_with_stops_and_prompts_matches_single_envs():
    vector = AlignSAMVectorEnv(2, **KWARGS, obs_size=10, stop_action=True)
    singles = [gym.make("AlignSAM-v0", **KWARGS, obs_size=10, stop_action=True) for _ in range(2)]
    vector.reset(seed=4)
    for i, env in enumerate(singles):
        env.reset(seed=4 + i)
    obs, rewards, terminated, _, _ = vector.step(np.array([100, 7]))  # env 0 stops, env 1 prompts
    for i, env in enumerate(singles):
        single, reward, done, _, _ = env.step([100, 7][i])
        np.testing.assert_allclose(obs[i], single, rtol=1e-6, atol=1e-6)
        assert rewards[i] == pytest.approx(reward) and terminated[i] == done
    assert terminated.tolist() == [True, False]


def test_heuristics_never_stop(make_env):
    from alignsam_gym.heuristics import HEURISTICS, choose

    env = make_env(**KWARGS, stop_action=True, init_prompts="srm")
    for policy in HEURISTICS:
        env.reset(seed=0)
        action = choose(policy, env.unwrapped, np.random.default_rng(0))
        assert 0 <= action < 100, policy
