"""RL Baselines3 Zoo: the recipe trains the full system (SRM included), and an SRM file restarts envs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from alignsam_gym.srm import load_srm_file, make_srm
from policies.sb3.zoo import hyperparams

pytest.importorskip("rl_zoo3")


def test_zoo_recipe_names_the_srm_callback_and_srm_labels():
    recipe = hyperparams["AlignSAM-v0"]
    assert recipe["env_kwargs"]["label_source"] == "srm"
    assert any("policies.sb3.callback.SRMCallback" in entry for entry in recipe["callback"])


def test_zoo_train_trains_the_srm_and_envs_restart_from_it(tmp_path, make_env):
    srm_file = tmp_path / "logs" / "srm.pt"
    callback = f'callback:[{{"policies.sb3.callback.SRMCallback":{{"save_path":"{srm_file}"}}}}]'
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "AlignSAM-v0",
               "--gym-packages", "alignsam_gym", "--conf-file", "policies.zoo", "--n-timesteps", "256",
               "--seed", "0", "--log-folder", str(tmp_path / "logs"), "--eval-freq", "-1",
               "-params", callback, "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1",
               "--env-kwargs", "num_images:3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| srm/" in done.stdout  # the callback logged srm/loss and srm/iou through the Zoo's logger
    assert (tmp_path / "logs" / "ppo" / "AlignSAM-v0_1" / "AlignSAM-v0.zip").is_file()

    saved_state = torch.load(srm_file, weights_only=True)
    assert saved_state["srm_steps"] == 256 // 2  # one SRM step per vector step
    saved = load_srm_file(srm_file)
    assert saved.branch == "implicit"
    initial = make_srm(432, "implicit").state_dict()  # the lite backend's 432 channels, seed 0
    changed = [name for name, tensor in saved.weights.items() if not torch.equal(tensor, initial[name])]
    assert len(changed) == len(initial)  # Adam moved every tensor away from the seed-0 initialisation

    env = make_env(srm_checkpoint=str(srm_file))
    for name, tensor in env.unwrapped.srm.network.state_dict().items():
        torch.testing.assert_close(tensor.cpu(), saved.weights[name])

    # the same path again is refused before training, so the first run's SRM is never overwritten
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert torch.load(srm_file, weights_only=True)["srm_steps"] == 256 // 2


def test_srm_checkpoint_errors_name_the_file(tmp_path, make_env):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        make_env(srm_checkpoint=str(missing))
    wrong_branch = tmp_path / "explicit.pt"
    torch.save({"srm": make_srm(432, "explicit").state_dict(), "branch": "explicit"}, wrong_branch)
    with pytest.raises(ValueError, match="explicit.pt.*'explicit' SRM branch"):
        make_env(srm_checkpoint=str(wrong_branch))
    wrong_shape = tmp_path / "narrow.pt"
    torch.save(make_srm(16, "implicit").state_dict(), wrong_shape)
    with pytest.raises(ValueError, match=r"narrow.pt does not fit .*expected"):
        make_env(srm_checkpoint=str(wrong_shape))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="garbage.pt: not a readable SRM file"):
        make_env(srm_checkpoint=str(garbage))
