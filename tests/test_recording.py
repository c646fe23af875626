"""`alignsam record`: Minari datasets of prompting episodes that replay exactly in the env they came from."""

from __future__ import annotations

import numpy as np
import pytest

from policies.cli import main

minari = pytest.importorskip("minari")

KWARGS = {"task": "synthetic-shapes", "num_images": 2, "max_prompts": 5}
COMMON = ["--task", "synthetic-shapes", "--num-images", "2"]


@pytest.fixture
def datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


@pytest.mark.parametrize("policy", ["srm_greedy", "random"])
def test_recorded_episodes_replay_in_the_recovered_env(datasets, policy):
    from policies.recording import dataset_states, record_dataset

    dataset_id = f"alignsam/synthetic-shapes/{policy}-v0"
    record_dataset(policy, dataset_id, {**KWARGS, "split": "test", "init_prompts": "srm"}, episodes=3, seed=7)
    dataset = minari.load_dataset(dataset_id)
    assert dataset.total_episodes == 3 and dataset.total_steps == 3 * 5
    env = dataset.recover_environment()
    assert env.unwrapped.config.obs.obs_mode == "compact"
    for index, episode in enumerate(dataset.iterate_episodes()):
        infos = episode.infos
        assert set(infos) == {"iou", "is_foreground", "label", "num_prompts", "image_index"}
        assert list(infos["num_prompts"]) == list(range(6))
        assert infos["is_foreground"][0] == -1 and infos["label"][0] == -1
        # reward is +1 on foreground, -1 otherwise (the paper's), and prompts are distinct cells
        np.testing.assert_array_equal(episode.rewards, np.where(infos["is_foreground"][1:] == 1, 1.0, -1.0))
        assert len(set(episode.actions.tolist())) == 5
        # replay: same seed, same actions -> the same masks, IoUs and rewards in the recovered env
        obs, info = env.reset(seed=7 + index)
        assert info["image_index"] == infos["image_index"][0]
        np.testing.assert_allclose(obs["mask"], episode.observations["mask"][0], atol=1e-6)
        for step, action in enumerate(episode.actions):
            obs, reward, terminated, _, info = env.step(int(action))
            assert reward == episode.rewards[step]
            assert info["iou"] == pytest.approx(infos["iou"][step + 1], abs=1e-6)
            np.testing.assert_allclose(obs["mask"], episode.observations["mask"][step + 1], atol=1e-6)
        assert terminated and episode.terminations[-1]
        # the states E * M formed offline from embeddings.npz are the env's full observations
        states = dataset_states(dataset, index, obs_size=10)
        assert states.shape == (6, 432, 10, 10)
        np.testing.assert_allclose(states[-1], _full_state(env, 10), rtol=1e-5, atol=1e-6)
    env.close()


def _full_state(env, obs_size: int) -> np.ndarray:
    from alignsam_gym.observation import full_observation

    return full_observation(env.unwrapped.episode.state, obs_size, np.float32)


def test_record_refuses_an_existing_dataset_before_playing(datasets, capsys):
    args = ["record", "--policy", "centre", *COMMON, "--episodes", "1", "--dataset-id", "alignsam/shapes/centre-v0"]
    assert main(args) == 0
    before = sorted(p.name for p in (datasets / "alignsam" / "shapes" / "centre-v0").rglob("*"))
    assert main(args) == 2
    assert "alignsam/shapes/centre-v0 already exists" in capsys.readouterr().err
    assert sorted(p.name for p in (datasets / "alignsam" / "shapes" / "centre-v0").rglob("*")) == before
    assert main(["record", "--policy", "centre", *COMMON, "--dataset-id", "no version!"]) == 2
    assert "Malformed dataset ID" in capsys.readouterr().err


def test_a_recorded_dataset_is_a_round_of_demonstrations(datasets, tmp_path):
    """The rows BC reads from a Minari dataset: the paper's states before each step, the recorded actions as the
    expert's, the cells prompted earlier in the episode masked; a run clones from it by id."""
    from policies.imitation import Demonstrations
    from policies.recording import dataset_states, record_dataset
    from policies.runs import RunFolder, train

    dataset_id = "alignsam/synthetic-shapes/clicker-v0"
    record_dataset("clicker", dataset_id, {**KWARGS, "split": "train"}, episodes=2, seed=3)
    dataset = minari.load_dataset(dataset_id)
    rows = Demonstrations.from_minari(dataset, obs_size=10)
    assert len(rows) == 10 and rows.observations.shape[1:] == (432, 10, 10)
    for index, episode in enumerate(dataset.iterate_episodes()):
        part = slice(5 * index, 5 * index + 5)
        np.testing.assert_array_equal(rows.expert_actions[part], episode.actions)
        np.testing.assert_allclose(rows.observations[part], dataset_states(dataset, index, 10)[:-1])
        masks = rows.action_masks[part]
        for step, action in enumerate(episode.actions):
            assert not masks[step, episode.actions[:step]].any() and masks[step, action]
        assert rows.dones[part].tolist() == [False] * 4 + [True]
    config = {"algorithm": "maskable_ppo", "n_envs": 2, "total_timesteps": 0, "device": "cpu",
              "checkpoint_every": None, "env": {**KWARGS, "obs_size": 10},
              "hyperparameters": {"policy_kwargs": {"features_extractor_kwargs": {"channels": 8, "cell_channels": 4}}},
              "init": {"imitation": {"dataset": dataset_id, "epochs": 2}}}
    record = RunFolder(train(config, tmp_path / "run", verbose=False)).read_imitation()
    assert record["rounds"][0]["states"] == 10 and record["expert"]["states"] == 0  # no live expert was asked
