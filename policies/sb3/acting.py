"""How a trained SB3 model picks a prompt deterministically, among the cells it has not prompted yet."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def best_unprompted(model: Any, obs: Any, mask: np.ndarray) -> int:
    """The deterministic action among the cells not prompted yet: the highest logit (actor-critic
    policies) or Q-value (DQN) where ``mask`` (``(grid_size**2,) bool``) is True."""
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        if hasattr(model, "q_net"):
            scores = model.q_net(obs_t)[0]
        else:
            scores = model.policy.get_distribution(obs_t).distribution.logits[0]
    scores = scores.cpu().numpy().copy()
    scores[~mask] = -np.inf
    return int(scores.argmax())
