"""How an SB3 policy of the plugin scores and picks prompts: one function for acting, evaluation and imitation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3.dqn.policies import DQNPolicy


def action_scores(policy: Any, obs: Any) -> torch.Tensor:
    """``(B, grid_size**2)``: the policy's score of every action for a batch of observation tensors: the actor's
    logits (actor-critic policies, MaskablePPO's without a mask) or the online Q-values (DQN).

    :raises ValueError: for a recurrent policy, whose scores depend on a state carried between steps.
    """
    if isinstance(policy, DQNPolicy):
        return policy.q_net(obs)
    if hasattr(policy, "lstm_actor"):
        raise ValueError(f"{type(policy).__name__} is recurrent: its action scores need its LSTM state")
    return policy.get_distribution(obs).distribution.logits


def best_unprompted(model: Any, obs: Any, mask: np.ndarray) -> int:
    """The deterministic action among the cells not prompted yet: the highest logit (actor-critic
    policies) or Q-value (DQN) where ``mask`` (``(grid_size**2,) bool``) is True."""
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        scores = action_scores(model.policy, obs_t)[0]
    scores = scores.cpu().numpy().copy()
    scores[~mask] = -np.inf
    return int(scores.argmax())
