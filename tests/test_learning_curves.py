"""Learning curves: periodic evaluations during training, which never change what is trained."""

from __future__ import annotations

import pytest
import torch
from stable_baselines3 import PPO

from policies.runs import RunConfig, RunFolder, load_srm_weights, train

TINY = {"algorithm": "ppo", "seed": 0, "total_timesteps": 128, "n_envs": 2, "eval_images": 2,
        "env": {"task": "synthetic-shapes", "num_images": 2, "obs_size": 10, "max_prompts": 4},
        "hyperparameters": {"n_steps": 32, "batch_size": 32, "n_epochs": 1,
                            "policy_kwargs": {"features_extractor_kwargs": {"channels": 16}}}}


@pytest.mark.parametrize("obs_mode, vec_env", [("full", "dummy"), ("compact", "batched")])
def test_curve_points_and_training_unchanged(tmp_path, obs_mode, vec_env):
    config = {**TINY, "vec_env": vec_env, "env": {**TINY["env"], "obs_mode": obs_mode}}
    train({**config, "eval_every": 64}, tmp_path / "with", verbose=False)
    train(config, tmp_path / "without", verbose=False)
    curve = RunFolder(tmp_path / "with").read_curve()
    assert [p["env_steps"] for p in curve] == [0, 64, 128]
    assert all(0 <= p["miou"] <= 1 and 0 <= p["foreground_rate"] <= 1 and p["images"] == 2
               and p["split"] == "val" for p in curve)
    assert not RunFolder(tmp_path / "without").curve_file.exists()
    # evaluations draw no random numbers the training uses: the same weights either way
    for name in ("with", "without"):
        assert (tmp_path / name / "srm.pt").is_file()
    first, second = (load_srm_weights(tmp_path / n / "srm.pt") for n in ("with", "without"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    first, second = (PPO.load(tmp_path / n / "model.zip", device="cpu").policy.state_dict() for n in ("with", "without"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_curve_reader_keeps_the_last_point_per_step_and_skips_a_torn_line(tmp_path):
    run = RunFolder(tmp_path)
    run.append_curve({"env_steps": 0, "miou": 0.1})
    run.append_curve({"env_steps": 64, "miou": 0.2})
    run.append_curve({"env_steps": 64, "miou": 0.3})  # a resumed run evaluated that step again
    with open(run.curve_file, "a") as handle:
        handle.write('{"env_steps": 128, "mi')  # a crash mid-write
    assert run.read_curve() == [{"env_steps": 0, "miou": 0.1}, {"env_steps": 64, "miou": 0.3}]


@pytest.mark.parametrize("key, value", [("eval_every", 0), ("eval_images", 0), ("eval_images", True)])
def test_bad_curve_settings_name_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        RunConfig.from_dict({**TINY, key: value})
