"""The dynamics of AlignSAM-v0: rewards, observations, episodes, errors, rendering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from alignsam_gym.data.tasks import SYNTHETIC_TASKS

ACTIONS = [0, 11, 45, 99, 55, 3, 27, 62, 80, 9, 44, 45, 45, 71, 18]


def rollout(env, seed, actions):
    obs, info = env.reset(seed=seed)
    trace = [(obs, None, info)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        trace.append((obs, reward, info))
    return trace


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_same_seed_same_episode(make_env, task):
    first, second = make_env(task=task), make_env(task=task)
    a, b = rollout(first, 7, ACTIONS), rollout(second, 7, ACTIONS)
    for (oa, ra, ia), (ob, rb, ib) in zip(a, b):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb and ia.keys() == ib.keys()
        assert all(np.array_equal(ia[k], ib[k]) for k in ia)
    # and a different seed draws different initial points
    c = rollout(first, 8, ACTIONS[:1])
    assert not np.array_equal(c[0][0], a[0][0]) or c[0][2]["image_index"] != a[0][2]["image_index"]


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
@pytest.mark.parametrize("label_source", ["gt", "positive"])
def test_rewards_and_labels_follow_the_ground_truth(make_env, task, label_source):
    env = make_env(task=task, label_source=label_source)
    env.reset(seed=3)
    inner = env.unwrapped
    for action in range(0, 100, 7):
        _, reward, terminated, _, info = env.step(action)
        row, col = divmod(action, 10)
        x, y = int((col + 0.5) * 80), int((row + 0.5) * 80)  # cell centre in the 800x800 image
        truth = bool(inner.episode.mask[y, x])
        assert reward == (1.0 if truth else -1.0) and type(reward) is float
        assert info["is_foreground"] is truth
        assert info["label"] == (int(truth) if label_source == "gt" else 1)
        assert 0.0 <= info["iou"] <= 1.0
        if terminated:
            env.reset()


def test_action_points_are_grid_cell_centres(make_env):
    env = make_env()
    points = env.unwrapped.action_points
    assert points.shape == (100, 2)
    np.testing.assert_allclose(points[0], [40, 40])
    np.testing.assert_allclose(points[1], [120, 40])  # next column: x grows
    np.testing.assert_allclose(points[10], [40, 120])  # next row: y grows
    np.testing.assert_allclose(points[99], [760, 760])
    small = make_env(grid_size=4, image_size=100)
    assert small.action_space.n == 16
    np.testing.assert_allclose(small.unwrapped.action_points[5], [37.5, 37.5])


def _area_resize(prob: np.ndarray, size: int) -> np.ndarray:
    """Exact area averaging, independent of OpenCV: upsample by repetition, then block means."""
    h, w = prob.shape
    fine = np.repeat(np.repeat(prob.astype(np.float64), size, 0), size, 1)
    return fine.reshape(size, h, size, w).mean(axis=(1, 3))


def test_observation_is_embedding_times_resized_mask(make_env):
    env = make_env()
    obs, _ = env.reset(seed=1)
    for action in (45, 46, 12):
        inner = env.unwrapped
        features = inner.episode.embedding.features
        weight = _area_resize(inner.mask_probability, features.shape[1])
        np.testing.assert_allclose(obs, features * weight[None].astype(np.float32), rtol=1e-4, atol=1e-5)
        obs, *_ = env.step(action)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)


def test_obs_size_pools_and_float16(make_env):
    full, small = make_env(), make_env(obs_size=10, obs_dtype="float16")
    assert small.observation_space.shape == (432, 10, 10) and small.observation_space.dtype == np.float16
    a, _ = full.reset(seed=4)
    b, _ = small.reset(seed=4)
    assert b.dtype == np.float16
    pooled = a.reshape(432, 10, 2, 10, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(b.astype(np.float32), pooled, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("max_prompts", [1, 3, 15])
def test_episode_length_and_end(make_env, max_prompts):
    env = make_env(max_prompts=max_prompts)
    _, info = env.reset(seed=0)
    assert info["num_prompts"] == 0
    for t in range(1, max_prompts + 1):
        _, _, terminated, truncated, info = env.step(t)
        assert info["num_prompts"] == t
        assert terminated is (t == max_prompts) and truncated is False
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_info_holds_small_values_only(make_env):
    env = make_env()
    _, info = env.reset(seed=0)
    assert set(info) == {"iou", "num_prompts", "image_index", "action_mask"}
    _, _, _, _, info = env.step(5)
    assert set(info) == {"iou", "is_foreground", "label", "num_prompts", "stopped", "action_mask"}
    assert all(isinstance(v, (bool, int, float)) for k, v in info.items() if k != "action_mask")
    assert info["action_mask"].shape == (100,) and info["action_mask"].dtype == bool


def test_more_correct_prompts_improve_the_mask(make_env):
    """With oracle labels, prompting every cell gives a mask far better than the two initial points."""
    env = make_env(max_prompts=100, label_source="gt")
    _, info = env.reset(seed=2)
    first = info["iou"]
    for action in range(100):
        _, _, _, _, info = env.step(action)
    assert info["iou"] > 0.85 and info["iou"] >= first


@pytest.mark.parametrize("action", [100, -1, 1.5, "3", None, np.array([1, 2])])
def test_invalid_actions_are_rejected(make_env, action):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 100\)"):
        env.step(action)


def test_numpy_integer_actions_are_accepted(make_env):
    env = make_env()
    env.reset(seed=0)
    env.step(np.int64(3))
    env.step(np.array(4))


def test_step_before_reset(make_env):
    with pytest.raises(RuntimeError, match="reset"):
        make_env().unwrapped.step(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "synthetic-nope"}, "unknown task 'synthetic-nope'"),
    ({"label_source": "oracle"}, "label_source must be one of"),
    ({"init_prompts": "centre"}, "init_prompts must be one of"),
    ({"grid_size": 0}, "grid_size must be an integer >= 1"),
    ({"grid_size": 2.5}, "grid_size must be an integer >= 1"),
    ({"max_prompts": 0}, "max_prompts must be an integer >= 1"),
    ({"image_size": 8, "grid_size": 10}, r"image_size \(8\) must be at least grid_size \(10\)"),
    ({"obs_dtype": "float64"}, "obs_dtype must be one of"),
    ({"obs_size": 0}, "obs_size must be an integer >= 1"),
    ({"render_mode": "ansi"}, "render_mode must be one of"),
    ({"backend": "nope"}, "unknown backend 'nope'"),
    ({"backend_kwargs": {"colour": 1}}, "backend 'lite' does not accept the arguments"),
    ({"device": "tpu"}, "device must be 'auto'"),
    ({"data_root": "/data"}, "is generated, it reads no files"),
    ({"task": "ccp-person"}, "pass data_root"),
    ({"split": "validation"}, "split must be one of"),
])
def test_bad_kwargs_are_clear(make_env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_env(**kwargs)


def test_unknown_kwarg(make_env):
    with pytest.raises(TypeError, match="colour"):
        make_env(colour="red")


def test_image_index_option(make_env):
    env = make_env()
    _, info = env.reset(seed=0, options={"image_index": 1})
    assert info["image_index"] == 1
    with pytest.raises(ValueError, match=r"image_index'\] must be an int in \[0, 2\)"):
        env.reset(options={"image_index": 2})


def test_render_rgb_array(make_env):
    env = make_env(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (400, 800, 3) and frame.dtype == np.uint8
    inner = env.unwrapped
    # The positive initial point is drawn as a green star at its position in the left panel.
    x, y = (inner.episode.points[0] / 2).astype(int)
    patch = frame[max(0, y - 3):y + 4, max(0, x - 3):x + 4].reshape(-1, 3)
    assert np.any((patch[:, 1] > 180) & (patch[:, 0] < 60) & (patch[:, 2] < 60))
    # The right panel differs from the left (ground truth vs prediction and prompts).
    assert not np.array_equal(frame[:, :400], frame[:, 400:])
    assert make_env().unwrapped.render() is None  # no render_mode: a warning, no frame


#: the keyword arguments of gym.make("AlignSAM-v0", ...): the public contract, so spelled out here
PUBLIC_KEYWORDS = {
    "task", "data_root", "split", "num_images", "subset_seed", "backend", "sam_checkpoint", "sam_model_type",
    "backend_kwargs", "cache_dir", "clip_checkpoint", "clip_model", "text_prompt", "grid_size", "image_size",
    "max_prompts", "label_source", "init_prompts", "srm_branch", "srm_checkpoint", "obs_size", "obs_dtype", "obs_mode",
    "reward", "iou_reward_scale", "repeat_penalty", "observation", "observe_srm", "observe_time", "budget_end",
    "stop_action", "device"}


def test_env_config_holds_exactly_the_public_keywords_and_the_docstring_documents_each():
    import re

    from alignsam_gym.envs import AlignSAMEnv
    from alignsam_gym.envs.config import EnvConfig

    assert set(EnvConfig.KEYWORDS) == PUBLIC_KEYWORDS and len(EnvConfig.KEYWORDS) == len(PUBLIC_KEYWORDS)
    arguments = AlignSAMEnv.__doc__.split("## Arguments", 1)[1].split("\n    ## ", 1)[0]
    documented = set(re.findall(r"``(\w+)``", arguments))
    assert PUBLIC_KEYWORDS | {"render_mode", "embedding_table"} <= documented


def test_env_config_round_trips_and_names_what_is_wrong():
    from alignsam_gym.envs.config import EnvConfig

    config = EnvConfig.from_kwargs({"task": "synthetic-shapes", "max_prompts": 4, "reward": "iou_gain"})
    assert config.episode.max_prompts == 4 and config.rewards.reward == "iou_gain"
    assert config.data.num_images == 50 and config.obs.obs_size is None  # defaults, the env's
    assert EnvConfig.from_kwargs(config.to_kwargs()) == config
    backend_kwargs = {"decoder": "v1"}
    pinned = EnvConfig.from_kwargs({"backend_kwargs": backend_kwargs})
    backend_kwargs["decoder"] = "v2"  # the config holds its own copy
    assert pinned.segmenter.backend_kwargs == {"decoder": "v1"}
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['max_prompt'\]"):
        EnvConfig.from_kwargs({"max_prompt": 4})
    for kwargs, message in [({"grid_size": 0}, "grid_size must be an integer >= 1"),
                            ({"image_size": 5}, r"image_size \(5\) must be at least grid_size \(10\)"),
                            ({"observe_time": True, "obs_mode": "compact"}, "observe_time=True needs obs_mode='full'"),
                            ({"iou_reward_scale": 0}, "iou_reward_scale must be a finite number > 0.0"),
                            ({"backend_kwargs": ["v1"]}, "backend_kwargs must be a mapping"),
                            ({"task": "no-such-task"}, "no-such-task")]:
        with pytest.raises(ValueError, match=message):
            EnvConfig.from_kwargs(kwargs)
    env = gym.make("AlignSAM-v0", task="synthetic-shapes", num_images=1, obs_size=10)
    assert env.unwrapped.config.obs.obs_size == 10 and env.unwrapped.config.data.task == "synthetic-shapes"
