"""Behaviour cloning for the plugin's SB3 policies, written against SB3's policy API.

The loss is the cross-entropy between the policy's action distribution and the expert's action,
``-log softmax(scores)[a*]``, where the scores are :func:`~policies.sb3.acting.action_scores` (the actor's
logits, or DQN's Q-values read as logits). With ``mask_actions`` the cells already prompted are removed from
the softmax first, as evaluation removes them from the choice (and MaskablePPO from its distribution), so the
policy is not asked to push down cells it can never pick.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.dqn.policies import DQNPolicy

from policies.imitation.demonstrations import Demonstrations
from policies.imitation.settings import CloningSettings
from policies.sb3.acting import action_scores


def imitation_loss(policy: Any, observations: torch.Tensor, expert_actions: torch.Tensor,
                   action_masks: torch.Tensor | None = None, expert_values: torch.Tensor | None = None,
                   temperature: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean behaviour-cloning loss of a batch and how many of its argmax actions are the expert's.

    :param observations: ``(B, *obs_shape)`` on the policy's device.
    :param expert_actions: ``(B,) int64``.
    :param action_masks: ``(B, n_actions) bool`` allowed cells, or None (every cell).
    :param expert_values: ``(B, n_actions)`` the expert's value of each cell (NaN: none), read with ``temperature``.
    :param temperature: None: the cross-entropy to the expert's action. A number: the cross-entropy to
        ``softmax(expert_values / temperature)`` over the allowed cells with a value (the oracle's IoUs: cells
        almost as good as its choice are not pushed down as if they were wrong); rows without values keep the
        expert's action.
    :return: ``(loss, matches)``: the cross-entropy (a scalar with gradient) and the number of rows whose
        highest allowed score is the expert's action.
    """
    scores = action_scores(policy, observations)
    if action_masks is not None:
        scores = scores.masked_fill(~action_masks, float("-inf"))
    matches = (scores.argmax(dim=1) == expert_actions).sum()
    if temperature is None or expert_values is None:
        return F.cross_entropy(scores, expert_actions), matches
    known = ~torch.isnan(expert_values)
    if action_masks is not None:
        known &= action_masks
    soft = torch.softmax(torch.where(known, expert_values / temperature, float("-inf")), dim=1)
    target = torch.where(known.any(dim=1, keepdim=True), soft.nan_to_num(0.0),
                         F.one_hot(expert_actions, scores.shape[1]).to(scores.dtype))
    log_p = torch.log_softmax(scores, dim=1)
    loss = -torch.where(target > 0, target * log_p, torch.zeros_like(log_p)).sum(dim=1).mean()
    return loss, matches


def clone(policy: Any, demonstrations: Demonstrations, settings: CloningSettings = CloningSettings(),
          seed: int = 0) -> list[dict[str, float]]:
    """Fit ``policy`` to the expert's actions of ``demonstrations`` (behaviour cloning); DQN's target network
    is then set to the fitted online network.

    :return: per epoch ``{"loss": mean cross-entropy, "accuracy": fraction of rows where the policy's best allowed
        action is the expert's}`` (measured while training, over the epoch's minibatches).
    """
    if len(demonstrations) == 0:
        raise ValueError("no demonstrations to clone")
    optimizer = torch.optim.Adam(policy.parameters(), lr=settings.learning_rate)
    history = fit_epochs(policy, optimizer, demonstrations.observations, demonstrations.expert_actions,
                         demonstrations.action_masks if settings.mask_actions else None,
                         demonstrations.expert_values if settings.temperature is not None else None,
                         settings.temperature, settings.epochs, settings.batch_size, np.random.default_rng(seed))
    if isinstance(policy, DQNPolicy):
        policy.q_net_target.load_state_dict(policy.q_net.state_dict())
    return history


def fit_epochs(policy: Any, optimizer: torch.optim.Optimizer, observations: np.ndarray, expert_actions: np.ndarray,
               action_masks: np.ndarray | None, expert_values: np.ndarray | None, temperature: float | None,
               epochs: int, batch_size: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """``epochs`` passes of :func:`imitation_loss` over labelled rows in minibatches of ``batch_size`` (a fresh
    permutation from ``rng`` each epoch), one ``optimizer`` step per minibatch, the policy in training mode
    meanwhile; the step of behaviour cloning and of kickstarting.

    :param action_masks: ``(N, n_actions) bool`` or None (every cell); ``expert_values`` likewise, read with
        ``temperature``.
    :return: per epoch ``{"loss", "accuracy"}``, measured over the epoch's minibatches while training.
    """
    def rows_of(array: np.ndarray | None, rows: np.ndarray) -> torch.Tensor | None:
        return None if array is None else torch.as_tensor(array[rows], device=policy.device)

    policy.set_training_mode(True)
    history = []
    try:
        for _ in range(epochs):
            order = rng.permutation(len(expert_actions))
            total, matches = 0.0, 0
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                loss, hits = imitation_loss(policy, rows_of(observations, rows), rows_of(expert_actions, rows),
                                            rows_of(action_masks, rows), rows_of(expert_values, rows), temperature)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(rows)
                matches += int(hits)
            history.append({"loss": total / len(order), "accuracy": matches / len(order)})
    finally:
        policy.set_training_mode(False)
    return history


def policy_actions(policy: Any, observations: np.ndarray, action_masks: np.ndarray, deterministic: bool,
                   rng: np.random.Generator) -> np.ndarray:
    """``(B,) int64``: the policy's actions among the allowed cells: the best score (``deterministic``) or a draw
    from the softmax of the allowed scores with ``rng``."""
    with torch.no_grad():
        scores = action_scores(policy, torch.as_tensor(observations, device=policy.device)).double().cpu().numpy()
    scores[~action_masks] = -np.inf
    if deterministic:
        return scores.argmax(axis=1).astype(np.int64)
    probabilities = np.exp(scores - scores.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return np.array([rng.choice(len(p), p=p) for p in probabilities], np.int64)


def discounted_returns(rewards: np.ndarray, dones: np.ndarray, env_index: np.ndarray, gamma: float) -> np.ndarray:
    """``(N,)``: each row's discounted return to the end of its episode, following each env's rows in order.
    Rows of an episode not finished in the data are marked NaN (their return is unknown)."""
    returns = np.full(len(rewards), np.nan)
    for env in np.unique(env_index):
        rows = np.flatnonzero(env_index == env)
        running, finished = 0.0, False
        for row in rows[::-1]:
            if dones[row]:
                running, finished = 0.0, True
            running = rewards[row] + gamma * running
            if finished:
                returns[row] = running
    return returns


def warm_up_critic(policy: Any, demonstrations: Demonstrations, gamma: float, epochs: int = 10,
                   batch_size: int = 64, learning_rate: float = 1e-3, seed: int = 0) -> list[float]:
    """Fit an actor-critic policy's value head to the discounted returns of ``demonstrations`` (rollouts of the
    policy itself), the actor left as it is: only the critic's own layers (``mlp_extractor.value_net`` and
    ``value_net``) are trained, so a shared features extractor is not changed. Rows of unfinished episodes
    are left out.

    :return: the mean squared error of each epoch.
    """
    returns = discounted_returns(demonstrations.rewards, demonstrations.dones, demonstrations.env_index, gamma)
    rows_known = np.flatnonzero(~np.isnan(returns))
    if rows_known.size == 0:
        raise ValueError("no finished episode in the rollouts: the critic has no return to fit")
    params = list(policy.mlp_extractor.value_net.parameters()) + list(policy.value_net.parameters())
    optimizer = torch.optim.Adam(params, lr=learning_rate)
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(epochs):
        order = rng.permutation(rows_known)
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            obs = torch.as_tensor(demonstrations.observations[rows], device=policy.device)
            target = torch.as_tensor(returns[rows], dtype=torch.float32, device=policy.device)
            loss = F.mse_loss(policy.predict_values(obs).flatten(), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        history.append(total / len(order))
    return history
