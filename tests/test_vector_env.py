"""The batched vector envs: same episodes as single envs, autoreset, SB3 training, compact observations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from alignsam_gym.backends.sam import SamBackend
from alignsam_gym.observation import KEY_BYTES, CompactObservationSpace, EmbeddingTable
from alignsam_gym.envs.vector import AlignSAMVectorEnv
from policies.sb3.features import masked_states
from policies.sb3.vec_env import AlignSAMVecEnv

KWARGS = {"task": "synthetic-saliency", "num_images": 3, "max_prompts": 3, "obs_size": 10}
INFO_KEYS = ("iou", "is_foreground", "label", "num_prompts")


def _single_step(env: gym.Env, action: int):
    """A single env stepped with Gymnasium's NEXT_STEP autoreset, for comparison."""
    if env.unwrapped.episode.done:
        obs, info = env.reset()
        return obs, 0.0, False, info
    obs, reward, terminated, _, info = env.step(action)
    return obs, reward, terminated, info


@pytest.mark.parametrize("label_source", ["srm", "gt", "last_mask"])
def test_vector_entry_point_matches_single_envs(label_source):
    n = 3
    vec = gym.make_vec("AlignSAM-v0", num_envs=n, vectorization_mode="vector_entry_point",
                       label_source=label_source, **KWARGS)
    assert isinstance(vec, AlignSAMVectorEnv)
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.action_space == gym.spaces.MultiDiscrete([100] * n)
    assert vec.observation_space.shape == (n, 432, 10, 10)
    singles = [gym.make("AlignSAM-v0", label_source=label_source, **KWARGS) for _ in range(n)]
    weights = singles[0].unwrapped.srm.network.state_dict()  # every env must label with the same SRM
    for env in singles:
        env.unwrapped.set_srm_weights(weights)
    vec.unwrapped.set_srm_weights(weights)

    obs, infos = vec.reset(seed=7)
    for i, env in enumerate(singles):
        single_obs, info = env.reset(seed=7 + i)
        np.testing.assert_array_equal(obs[i], single_obs)
        assert infos["image_index"][i] == info["image_index"]
    rng = np.random.default_rng(0)
    for _ in range(2 * (KWARGS["max_prompts"] + 1)):  # two whole episodes, both autoresets included
        actions = rng.integers(100, size=n)
        obs, rewards, terminated, truncated, infos = vec.step(actions)
        assert not truncated.any()
        for i, env in enumerate(singles):
            single_obs, reward, term, info = _single_step(env, int(actions[i]))
            np.testing.assert_allclose(obs[i], single_obs, rtol=1e-6, atol=1e-6)
            assert rewards[i] == reward and terminated[i] == term
            for key in INFO_KEYS:
                if key in info:
                    assert infos[key][i] == pytest.approx(info[key]), key
            np.testing.assert_array_equal(infos["action_mask"][i], info["action_mask"])
    vec.close()


def test_same_step_autoreset_returns_the_next_episode_and_the_final_observation():
    vec = AlignSAMVectorEnv(2, autoreset_mode="SameStep", **KWARGS)
    vec.reset(seed=0)
    for _ in range(KWARGS["max_prompts"] - 1):
        vec.step(np.array([11, 22]))
    obs, rewards, terminated, _, infos = vec.step(np.array([33, 44]))
    assert terminated.all() and rewards.shape == (2,)
    assert np.stack(infos["final_obs"]).shape == (2, 432, 10, 10)  # an object array, as SyncVectorEnv gives
    assert infos["num_prompts"].tolist() == [0, 0]  # the info of the reset that followed
    assert infos["final_info"]["num_prompts"].tolist() == [KWARGS["max_prompts"]] * 2
    assert not np.allclose(obs, np.stack(infos["final_obs"]))
    assert all(env.action_masks().all() for env in vec.envs)  # fresh episodes


def test_reset_mask_and_errors():
    vec = AlignSAMVectorEnv(2, **KWARGS)
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.array([0, 0]))
    with pytest.raises(ValueError, match="autoreset_mode"):
        AlignSAMVectorEnv(2, autoreset_mode="sometimes", **KWARGS)
    with pytest.raises(ValueError, match="num_envs"):
        AlignSAMVectorEnv(0, **KWARGS)
    obs, _ = vec.reset(seed=1)
    vec.step(np.array([5, 6]))
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.array([1, 2, 3]))
    before = [env.unwrapped.episode.num_prompts for env in vec.envs]
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 100\)"):
        vec.step(np.array([5, 100]))
    assert [env.unwrapped.episode.num_prompts for env in vec.envs] == before  # validated before any env moved
    obs2, infos = vec.reset(options={"reset_mask": np.array([False, True])})
    assert infos["_num_prompts"].tolist() == [False, True]
    assert vec.envs[0].action_masks().sum() == 99 and vec.envs[1].action_masks().all()


def test_sb3_vec_env_matches_dummy_vec_env():
    n = 2
    ours = AlignSAMVecEnv(n, **KWARGS)
    dummy = make_vec_env("AlignSAM-v0", n_envs=n, env_kwargs=KWARGS, vec_env_cls=DummyVecEnv)
    weights = ours.envs[0].srm.network.state_dict()
    dummy.env_method("set_srm_weights", weights)
    ours.seed(3)
    dummy.seed(3)
    np.testing.assert_array_equal(ours.reset(), dummy.reset())
    rng = np.random.default_rng(1)
    for _ in range(2 * KWARGS["max_prompts"]):
        actions = rng.integers(100, size=n)
        a = ours.step(actions)
        b = dummy.step(actions)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])
        for info_a, info_b in zip(a[3], b[3]):
            assert info_a["label"] == info_b["label"] and info_a["iou"] == pytest.approx(info_b["iou"])
            assert ("terminal_observation" in info_a) == ("terminal_observation" in info_b)
            if "terminal_observation" in info_a:
                np.testing.assert_allclose(info_a["terminal_observation"], info_b["terminal_observation"], atol=1e-6)
    assert ours.get_attr("task") == ["synthetic-saliency"] * n
    assert [m.shape for m in ours.env_method("action_masks")] == [(100,)] * n


def test_srm_weights_reach_every_env_of_the_batch():
    env = AlignSAMVecEnv(3, **KWARGS)
    assert all(e.srm is env.envs[0].srm for e in env.envs)
    new = {k: torch.full_like(v, 0.01) for k, v in env.envs[0].srm.network.state_dict().items()}
    env.env_method("set_srm_weights", new)
    for e in env.envs:
        assert all(torch.equal(v, new[k]) for k, v in e.srm.network.state_dict().items())


@pytest.mark.parametrize("options", [{}, {"observation": "masked_plus"}, {"observation": "channels"},
                                     {"observation": "channels", "observe_srm": True}, {"observe_srm": True}],
                         ids=["masked", "masked_plus", "channels", "channels+srm", "masked+srm"])
def test_compact_and_full_observations_give_the_same_policy_input(options):
    full = AlignSAMVectorEnv(3, **KWARGS, **options)
    small = AlignSAMVectorEnv(3, obs_mode="compact", **KWARGS, **options)
    single = full.single_observation_space
    assert isinstance(small.single_observation_space, CompactObservationSpace)
    obs_full, _ = full.reset(seed=5)
    obs_small, _ = small.reset(seed=5)
    actions = np.array([3, 47, 90])
    for _ in range(2):
        obs_full, *_ = full.step(actions)
        obs_small, *_ = small.step(actions)
        actions = actions + 1
    assert obs_small["mask"].nbytes + obs_small["embedding_key"].nbytes < obs_full.nbytes / 50
    state_full = masked_states(torch.from_numpy(obs_full), single, None)
    # SB3 hands observations to the extractor as float tensors
    table = small.envs[0].embedding_table
    assert all(env.embedding_table is table for env in small.envs)  # one table for the batch, by construction
    state_small = masked_states({k: torch.from_numpy(v).float() for k, v in obs_small.items()},
                                small.single_observation_space, table)
    torch.testing.assert_close(state_small, state_full, rtol=1e-6, atol=1e-6)


def test_compact_lookup_names_the_problem():
    with pytest.raises(KeyError, match="SubprocVecEnv"):
        EmbeddingTable().lookup(np.zeros(KEY_BYTES, np.uint8) + 255)


def test_embedding_table_too_small_fails_when_the_envs_are_built():
    # 3 lite embeddings of (432, 20, 20) float32 need 2.1 MB; nothing is discovered later, mid-update
    with pytest.raises(ValueError, match=r"3 images x 0\.7 MiB.*max_bytes=1000000"):
        AlignSAMVecEnv(2, obs_mode="compact", embedding_table=EmbeddingTable(max_bytes=1_000_000), **KWARGS)
    table = EmbeddingTable(max_bytes=3 * 432 * 20 * 20 * 4)
    env = AlignSAMVecEnv(2, obs_mode="compact", embedding_table=table, **KWARGS)  # exactly fits
    env.reset()
    assert len(table) >= 1 and table.reserved_bytes == table.max_bytes


def test_embedding_table_pickles_empty():
    import pickle

    table = EmbeddingTable(max_bytes=123456)
    table.publish(np.zeros(KEY_BYTES, np.uint8), np.ones((2, 3, 3), np.float32))
    copy = pickle.loads(pickle.dumps(table))
    assert len(table) == 1 and len(copy) == 0 and copy.max_bytes == 123456


def test_a_policy_cannot_read_envs_that_publish_into_separate_tables():
    from policies import make_model

    dummy = make_vec_env("AlignSAM-v0", n_envs=2, env_kwargs={**KWARGS, "obs_mode": "compact"}, vec_env_cls=DummyVecEnv)
    with pytest.raises(ValueError, match="one EmbeddingTable, found 2"):
        make_model("ppo", dummy)
    shared = make_vec_env("AlignSAM-v0", n_envs=2, vec_env_cls=DummyVecEnv,
                          env_kwargs={**KWARGS, "obs_mode": "compact", "embedding_table": EmbeddingTable()})
    model = make_model("ppo", shared, n_steps=4, batch_size=4, n_epochs=1)
    model.learn(8)


@pytest.fixture(scope="module")
def tiny_sam(tiny_sam_checkpoint) -> SamBackend:
    return SamBackend(tiny_sam_checkpoint, device="cpu", decoder_cache_size=1, batch_decode=True)


def test_sam_decode_batch_equals_decode_one_by_one(tiny_sam):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(120, 160), (200, 100), (90, 90)]]
    embeddings = [tiny_sam.encode(image) for image in images]
    # prompt counts 1, 3, 3, 2: one batch per count, the single point with SAM's best-of-3 rule
    sets = [(0, 1), (1, 3), (2, 3), (0, 2)]
    points = [rng.uniform(0, 90, (k, 2)) for _, k in sets]
    labels = [rng.integers(0, 2, k) for _, k in sets]
    chosen = [embeddings[i] for i, _ in sets]
    batched = tiny_sam.decode_batch(chosen, points, labels)
    assert tiny_sam.decoder_cache_size >= len(sets)  # grown so a batch's images fit
    for out, embedding, p, lab in zip(batched, chosen, points, labels):
        assert out.shape == embedding.mask_shape
        np.testing.assert_allclose(out, tiny_sam.decode(embedding, p, lab), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="as many prompt sets"):
        tiny_sam.decode_batch(chosen, points[:2], labels)
