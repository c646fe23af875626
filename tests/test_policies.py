"""The SB3 plugin's features extractor works with SB3 algorithms on AlignSAM-v0."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO

from policies import MaskedEmbeddingExtractor

ALGORITHMS = {
    "ppo": (PPO, {"n_steps": 32, "batch_size": 16, "n_epochs": 1}),
    "a2c": (A2C, {"n_steps": 8}),
    "dqn": (DQN, {"learning_starts": 8, "buffer_size": 64, "batch_size": 8, "train_freq": 4}),
}


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_sb3_algorithms_train_with_the_extractor(make_env, algo):
    cls, kwargs = ALGORITHMS[algo]
    env = make_env(num_images=1, obs_size=10, max_prompts=4, task="synthetic-shapes")
    model = cls("MlpPolicy", env, seed=0, device="cpu",
                policy_kwargs={"features_extractor_class": MaskedEmbeddingExtractor,
                               "features_extractor_kwargs": {"channels": 16, "features_dim": 32}}, **kwargs)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=32)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))


def test_extractor_is_batch_independent():
    space = __import__("gymnasium").spaces.Box(-np.inf, np.inf, (432, 20, 20), np.float32)
    extractor = MaskedEmbeddingExtractor(space)
    batch = torch.randn(6, 432, 20, 20)
    together = extractor(batch)
    alone = torch.cat([extractor(batch[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    assert together.shape == (6, 256)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in extractor.modules())


def test_env_side_never_imports_sb3():
    code = ("import sys, gymnasium as gym, alignsam_gym, alignsam_gym.envs, alignsam_gym.labels; "
            "gym.make('AlignSAM-v0', num_images=1); print('stable_baselines3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr


def test_alignsam_policy_scores_cells_with_shared_weights(make_env):
    from policies import AlignSAMPolicy, make_model
    from policies.sb3.policy import CellScores

    env = make_env(num_images=1, obs_size=10)
    model = make_model("ppo", env, device="cpu", seed=0)
    assert isinstance(model.policy, AlignSAMPolicy) and isinstance(model.policy.action_net, CellScores)
    assert model.policy.action_net in [m for m in model.policy.modules()]
    optimised = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in model.policy.action_net.parameters())
    # Translating the cell features translates the scores: cell (r, c)'s logit depends on cell (r, c) only.
    head = model.policy.action_net
    latent = torch.randn(1, head.cell_channels, 10, 10)
    shifted = torch.roll(latent, shifts=(2, 3), dims=(2, 3))
    torch.testing.assert_close(torch.roll(head(latent.flatten(1)).reshape(1, 10, 10), (2, 3), (1, 2)),
                               head(shifted.flatten(1)).reshape(1, 10, 10))


@pytest.mark.parametrize("algorithm, head", [("ppo", "action_net"), ("a2c", "action_net"),
                                             ("maskable_ppo", "action_net"), ("dqn", "q_net")])
def test_one_per_cell_head_across_algorithms(make_env, tmp_path, algorithm, head):
    """PPO, A2C and MaskablePPO score cells with shared weights; DQN takes each cell's Q-value the same way, in its
    online and target networks; the models train, save and load with that head."""
    from policies import make_model
    from policies.runs.checkpoint import load_model
    from policies.sb3.policy import CellScores

    env = make_env(num_images=1, obs_size=10, max_prompts=4, task="synthetic-shapes")
    settings = {"ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 1}, "a2c": {"n_steps": 8},
                "maskable_ppo": {"n_steps": 16, "batch_size": 16, "n_epochs": 1},
                "dqn": {"learning_starts": 8, "buffer_size": 64, "batch_size": 8, "train_freq": 4}}[algorithm]
    hyperparameters = {**settings, "policy_kwargs": {"features_extractor_kwargs": {"channels": 16}}}
    model = make_model(algorithm, env, device="cpu", seed=0, **hyperparameters)
    networks = [model.policy.q_net, model.policy.q_net_target] if algorithm == "dqn" else [model.policy]
    for network in networks:
        assert isinstance(getattr(network, head), CellScores)
    cells = networks[0] if algorithm == "dqn" else model.policy
    latent = torch.randn(1, getattr(cells, head).cell_channels, 10, 10)
    shifted = torch.roll(latent, shifts=(1, 4), dims=(2, 3))
    score = getattr(cells, head)
    torch.testing.assert_close(torch.roll(score(latent.flatten(1)).reshape(1, 10, 10), (1, 4), (1, 2)),
                               score(shifted.flatten(1)).reshape(1, 10, 10))
    model.learn(total_timesteps=16)
    model.save(tmp_path / "model.zip")
    loaded = load_model(algorithm, tmp_path / "model.zip", env, "cpu", hyperparameters)
    for key, value in model.policy.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[key], value)


def test_passthrough_hands_the_mask_and_srm_channels_to_every_cell_unchanged(make_env):
    from policies import SpatialEmbeddingExtractor

    env = make_env(num_images=1, obs_size=10, observation="channels", observe_srm=True)
    extractor = SpatialEmbeddingExtractor(env.observation_space, channels=8, cell_channels=4, passthrough=2)
    obs, _ = env.reset(seed=0)
    cells = extractor(torch.as_tensor(obs)[None]).reshape(1, 6, 10, 10)
    # the last two channels of every cell are the observation's mask and SRM channels at that cell
    torch.testing.assert_close(cells[0, 4:], torch.as_tensor(obs[-2:]))
    assert extractor.cell_channels == 6 and extractor.features_dim == 600
    with pytest.raises(ValueError, match="passthrough"):
        SpatialEmbeddingExtractor(env.observation_space, passthrough=env.observation_space.shape[0] + 1)


def test_cell_mlp_head_can_compare_two_channels_and_survives_save_and_load(make_env, tmp_path):
    from policies import make_model

    env = make_env(num_images=1, obs_size=10, observation="channels", observe_srm=True)
    model = make_model("ppo", env, device="cpu", seed=0, n_steps=16, batch_size=16,
                       policy_kwargs={"cell_hidden": 8, "features_extractor_kwargs": {"channels": 8, "passthrough": 2}})
    head = model.policy.action_net
    # a per-cell MLP: |a - b| of two input channels is two ReLU units, which a linear score cannot represent
    with torch.no_grad():
        head.score[0].weight.zero_(), head.score[0].bias.zero_(), head.score[2].weight.zero_()
        head.score[0].weight[0, -2], head.score[0].weight[0, -1] = 1.0, -1.0
        head.score[0].weight[1, -2], head.score[0].weight[1, -1] = -1.0, 1.0
        head.score[2].weight[0, :2] = 1.0
    latent = torch.zeros(1, head.cell_channels, 10, 10)
    latent[0, -2], latent[0, -1] = torch.rand(10, 10), torch.rand(10, 10)
    torch.testing.assert_close(head(latent.flatten(1)).reshape(10, 10) - head.score[2].bias,
                               (latent[0, -2] - latent[0, -1]).abs())
    model.save(tmp_path / "model.zip")
    loaded = type(model).load(tmp_path / "model.zip", device="cpu")
    obs, _ = env.reset(seed=0)
    logits = [m.policy.get_distribution(m.policy.obs_to_tensor(obs)[0]).distribution.logits for m in (model, loaded)]
    torch.testing.assert_close(logits[0], logits[1])
    assert loaded.policy.cell_hidden == 8
    with pytest.raises(ValueError, match="cell_hidden"):
        make_model("ppo", env, device="cpu", policy_kwargs={"cell_hidden": -1})
