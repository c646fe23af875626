"""Kickstarting (Schmitt et al. 2018, "Kickstarting Deep Reinforcement Learning"): reinforcement with an imitation
term whose weight decays, so the agent starts from the expert's behaviour and is free to leave it.

During on-policy RL (PPO, A2C, MaskablePPO) the expert labels every state the agent visits, in the agent's own
rollouts (the learner acts; the expert only labels). Before each policy update the policy takes ``epochs``
passes over the rollout's states in minibatches, minimising the imitation loss of
:func:`~policies.imitation.imitation_loss` (the cross-entropy to the expert's action, or with ``temperature`` to
the oracle's IoU of every cell), with weight ``w_k = weight * decay ** k`` after ``k`` earlier updates; ``k`` is
counted from the model's step count, so a resumed run continues the schedule. Once ``w_k`` falls below
``min_weight`` the expert stops labelling (no more cost).

The imitation steps use an Adam optimiser of their own at learning rate ``learning_rate * w_k``. Adam divides a
gradient by its running scale, so a weight that multiplied the loss would hardly change the step; scaling the
step size is what makes the term fade. The paper adds the term to the RL loss of one update; here it is a
separate step before the RL update on the same states (SB3's ``train()`` offers no hook for a loss term), which
pulls the policy the same way.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from policies.imitation.cloning import imitation_loss
from policies.imitation.dagger import Expert, action_masks_of


class KickstartCallback(BaseCallback):
    """The decaying imitation term of kickstarting, for an on-policy SB3 algorithm (the module docstring).

    :param expert: labels the current state of every training env (:class:`~policies.imitation.HeuristicExpert`
        on the model's env); an expert with a ``values`` attribute (the oracle) also gives its IoU of every cell.
    :param weight: ``w_0``, the imitation step's learning-rate factor at the first update (> 0).
    :param decay: ``w_{k+1} / w_k``, per policy update, in (0, 1].
    :param learning_rate: the imitation steps' base learning rate (Adam).
    :param epochs: passes over each rollout's states before its RL update; ``batch_size`` rows per step.
    :param mask_actions: remove the cells already prompted from the softmax (as evaluation removes them).
    :param temperature: None: the expert's action; a number: ``softmax(oracle IoU / temperature)``.
    :param min_weight: below this weight the expert stops labelling and the term is off.
    :param seed: the minibatches' shuffling.
    :param on_update: called with each kickstarted update's record (a run folder's ``append_kickstart``).
    """

    def __init__(self, expert: Expert, weight: float, decay: float, learning_rate: float = 1e-3, epochs: int = 1,
                 batch_size: int = 64, mask_actions: bool = True, temperature: float | None = None,
                 min_weight: float = 1e-3, seed: int = 0, on_update: Callable[[dict[str, float]], Any] | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        if not weight > 0 or not 0 < decay <= 1:
            raise ValueError(f"kickstarting needs weight > 0 and decay in (0, 1], got {weight} and {decay}")
        self.expert, self.weight, self.decay = expert, float(weight), float(decay)
        self.learning_rate, self.epochs, self.batch_size = float(learning_rate), int(epochs), int(batch_size)
        self.mask_actions, self.temperature, self.min_weight = mask_actions, temperature, float(min_weight)
        self.rng, self.on_update = np.random.default_rng(seed), on_update
        self.optimizer: torch.optim.Optimizer | None = None
        #: the labels of the state each env is in now: ``(actions, masks, values)``, or None before the first
        self._current: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._rollout: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._active = False
        #: one record per kickstarted update: ``step``, ``weight``, ``loss`` (mean over the last epoch), ``agreement``
        #: (fraction of the rollout's states where the policy's best allowed action was the expert's, before the step)
        self.history: list[dict[str, float]] = []

    def weight_at(self, num_timesteps: int) -> float:
        """``w_k`` for the update after the rollout that ends at ``num_timesteps`` (k earlier updates)."""
        per_rollout = self.model.n_steps * self.model.n_envs
        updates_before = max(num_timesteps // per_rollout - 1, 0)
        return self.weight * self.decay ** updates_before

    def _on_training_start(self) -> None:
        if not isinstance(self.model, OnPolicyAlgorithm):
            raise ValueError(f"kickstarting labels on-policy rollouts; {type(self.model).__name__} has none "
                             "(choose ppo, a2c or maskable_ppo)")
        self.optimizer = torch.optim.Adam(self.model.policy.parameters(), lr=self.learning_rate)

    def _label(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks = action_masks_of(self.training_env)
        actions = np.asarray(self.expert(), np.int64)
        values = getattr(self.expert, "values", None)
        if values is None:
            values = np.full(masks.shape, np.nan, np.float32)
        return actions, masks, np.asarray(values, np.float32).copy()

    def _on_rollout_start(self) -> None:
        self._rollout = []
        rollout_end = self.num_timesteps + self.model.n_steps * self.model.n_envs
        self._active = self.weight_at(rollout_end) >= self.min_weight
        if self._active and self._current is None:
            self._current = self._label()

    def _on_step(self) -> bool:
        if self._active:
            # the state the agent acted in was labelled before the step; label the one it is in now (the next
            # row of the rollout buffer, or the first of the next rollout)
            self._rollout.append(self._current)
            self._current = self._label()
        return True

    def _on_rollout_end(self) -> None:
        if not self._active or not self._rollout:
            self._current = None  # the term is off: no labels are kept for states visited later
            return
        buffer = self.model.rollout_buffer
        steps = len(self._rollout)
        obs = np.asarray(buffer.observations[:steps]).reshape(-1, *buffer.obs_shape)
        actions, masks, values = (np.concatenate([row[i] for row in self._rollout]) for i in range(3))
        weight = self.weight_at(self.num_timesteps)
        self.history.append({"step": int(self.num_timesteps), "weight": weight,
                             **self.imitate(obs, actions, masks, values, weight)})
        self.logger.record("kickstart/weight", weight)
        self.logger.record("kickstart/loss", self.history[-1]["loss"])
        self.logger.record("kickstart/agreement", self.history[-1]["agreement"])
        if self.on_update is not None:
            self.on_update(self.history[-1])

    def imitate(self, observations: np.ndarray, expert_actions: np.ndarray, action_masks: np.ndarray,
                expert_values: np.ndarray, weight: float) -> dict[str, float]:
        """``epochs`` imitation passes over labelled states at learning rate ``learning_rate * weight``.

        :param observations: ``(N, *obs_shape)``; ``expert_actions``: ``(N,) int64``; ``action_masks``,
            ``expert_values``: ``(N, n_actions)``.
        :return: ``loss`` (the last epoch's mean) and ``agreement`` (measured before the first step).
        """
        policy = self.model.policy
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate * weight
        device = policy.device
        obs_t = torch.as_tensor(observations, device=device)
        expert_t = torch.as_tensor(expert_actions, device=device)
        masks_t = torch.as_tensor(action_masks, device=device) if self.mask_actions else None
        values_t = torch.as_tensor(expert_values, device=device) if self.temperature is not None else None
        with torch.no_grad():
            _, matches = imitation_loss(policy, obs_t, expert_t, masks_t, values_t, self.temperature)
        agreement = int(matches) / len(expert_actions)
        policy.set_training_mode(True)
        try:
            for _ in range(self.epochs):
                order = torch.as_tensor(self.rng.permutation(len(expert_actions)), device=device)
                total = 0.0
                for start in range(0, len(order), self.batch_size):
                    rows = order[start:start + self.batch_size]
                    loss, _ = imitation_loss(policy, obs_t[rows], expert_t[rows],
                                             None if masks_t is None else masks_t[rows],
                                             None if values_t is None else values_t[rows], self.temperature)
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
                    total += loss.item() * len(rows)
        finally:
            policy.set_training_mode(False)
        return {"loss": total / len(order), "agreement": agreement}

    def to_dict(self) -> dict[str, Any]:
        """The schedule and the record of every kickstarted update, JSON-ready."""
        return {"weight": self.weight, "decay": self.decay, "learning_rate": self.learning_rate,
                "epochs": self.epochs, "min_weight": self.min_weight, "updates": self.history}
