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
