"""Kickstarting (Schmitt et al. 2018, "Kickstarting Deep Reinforcement Learning"): reinforcement with an imitation
term whose weight decays, so the agent starts from the expert's behaviour and is free to leave it.

During on-policy RL (PPO, A2C, MaskablePPO) the expert labels every state the agent visits, in the agent's own
rollouts (the learner acts; the expert only labels). After each policy update the policy takes ``epochs`` passes
over that update's rollout in minibatches, minimising the imitation loss of
:func:`~policies.imitation.imitation_loss` (the cross-entropy to the expert's action, or with ``temperature`` to
the oracle's IoU of every cell), with weight ``w(t) = weight * decay ** (t / steps_per_update)``, ``t`` the env
steps done before that rollout: ``weight * decay ** k`` for the k-th update of a run, and a function of the step
count alone, so a resumed run continues the schedule wherever its checkpoint fell. Once ``w`` falls below
``min_weight`` the expert stops labelling (no more cost).

The imitation steps use an Adam optimiser of their own at learning rate ``learning_rate * w``. Adam divides a
gradient by its running scale, so a weight that multiplied the loss would hardly change the step; scaling the
step size is what makes the term fade. The paper adds the term to the RL loss of one update; SB3's ``train()``
has no hook for a loss term, so here it is a separate step, taken after the RL update on the same rollout (before
it, it would move the policy away from the one that sampled the rollout, and PPO's clipped ratio would then
discard or reverse much of its own update).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from policies.imitation.cloning import fit_epochs, imitation_loss
from policies.imitation.dagger import Expert, action_masks_of
from policies.imitation.settings import MIN_KICKSTART_WEIGHT


class KickstartCallback(BaseCallback):
    """The decaying imitation term of kickstarting, for an on-policy SB3 algorithm (the module docstring).

    :param expert: labels the current state of every training env (:class:`~policies.imitation.HeuristicExpert`
        on the model's env); an expert with a ``values`` attribute (the oracle) also gives its IoU of every cell.
    :param weight: ``w`` at the first update (at least ``min_weight``, finite).
    :param decay: ``w``'s factor per policy update (per ``n_steps * n_envs`` env steps), in (0, 1]. An algorithm
        with short rollouts (A2C's ``n_steps`` 5) fades the term in far fewer env steps than PPO's 128.
    :param learning_rate: the imitation steps' base learning rate (Adam).
    :param epochs: passes over each rollout's states after its RL update (at least 1); ``batch_size`` rows per
        step.
    :param mask_actions: remove the cells already prompted from the softmax (as evaluation removes them).
    :param temperature: None: the expert's action; a number: ``softmax(oracle IoU / temperature)``.
    :param min_weight: below this weight the expert stops labelling and the term is off.
    :param seed: the minibatches' shuffling.
    :param on_update: called with each kickstarted update's record (a run folder's ``append_kickstart``).
    """

    def __init__(self, expert: Expert, weight: float, decay: float, learning_rate: float = 1e-3, epochs: int = 1,
                 batch_size: int = 64, mask_actions: bool = True, temperature: float | None = None,
                 min_weight: float = MIN_KICKSTART_WEIGHT, seed: int = 0,
                 on_update: Callable[[dict[str, float]], Any] | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        if not (np.isfinite(weight) and weight >= min_weight > 0) or not 0 < decay <= 1:
            raise ValueError(f"kickstarting needs a finite weight >= min_weight ({min_weight}) and decay in (0, 1], "
                             f"got {weight} and {decay}")
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"kickstarting needs epochs and batch_size of at least 1, got {epochs} and {batch_size}")
        self.expert, self.weight, self.decay = expert, float(weight), float(decay)
        self.learning_rate, self.epochs, self.batch_size = float(learning_rate), int(epochs), int(batch_size)
        self.mask_actions, self.temperature, self.min_weight = mask_actions, temperature, float(min_weight)
        self.rng, self.on_update = np.random.default_rng(seed), on_update
        self.optimizer: torch.optim.Optimizer | None = None
        #: the labels of the state each env is in now: ``(actions, masks, values)``, or None when not labelled
        self._current: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._rollout: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        #: the last rollout's states and labels, imitated once its RL update is done
        self._pending: dict[str, Any] | None = None
        self._weight = 0.0
        #: one record per kickstarted update: ``step`` (env steps at the rollout's end), ``weight``, ``loss`` (mean
        #: over the last epoch), ``agreement`` (fraction of the rollout's states where the policy's best allowed action
        #: was the expert's, after the RL update and before the imitation step)
        self.history: list[dict[str, float]] = []

    def weight_at(self, steps_before: int) -> float:
        """``w`` for the rollout that starts after ``steps_before`` env steps."""
        return self.weight * self.decay ** (steps_before / (self.model.n_steps * self.model.n_envs))

    def _on_training_start(self) -> None:
        if not isinstance(self.model, OnPolicyAlgorithm):
            raise ValueError(f"kickstarting labels on-policy rollouts; {type(self.model).__name__} has none "
                             "(choose ppo, a2c or maskable_ppo)")
        if not isinstance(self.model.observation_space, spaces.Box):
            raise ValueError("kickstarting reads array observations (obs_mode 'full'), not "
                             f"{type(self.model.observation_space).__name__}")
        self.optimizer = torch.optim.Adam(self.model.policy.parameters(), lr=self.learning_rate)
        self._current, self._rollout, self._pending = None, [], None  # learn() may have reset the envs

    def _label(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks = action_masks_of(self.training_env)
        actions = np.asarray(self.expert(), np.int64)
        values = getattr(self.expert, "values", None)
        if values is None:
            values = np.full(masks.shape, np.nan, np.float32)
        return actions, masks, np.asarray(values, np.float32).copy()

    def _on_rollout_start(self) -> None:
        self._imitate_pending()  # the previous rollout's, now that its RL update is done
        self._rollout = []
        self._weight = self.weight_at(self.num_timesteps)
        if self._weight < self.min_weight:
            self._current = None  # the term is off: states visited from here on are not labelled
        elif self._current is None:
            self._current = self._label()

    def _on_step(self) -> bool:
        if self._current is not None:
            # the state the agent acted in was labelled before the step; label the one it is in now (the next
            # row of the rollout buffer, or the first of the next rollout)
            self._rollout.append(self._current)
            self._current = self._label()
        return True

    def _on_rollout_end(self) -> None:
        if not self._rollout:
            return
        buffer = self.model.rollout_buffer
        steps = len(self._rollout)
        obs = np.array(buffer.observations[:steps]).reshape(-1, *buffer.obs_shape)  # a copy: the buffer is reused
        actions, masks, values = (np.concatenate([row[i] for row in self._rollout]) for i in range(3))
        self._pending = {"observations": obs, "expert_actions": actions, "action_masks": masks,
                         "expert_values": values, "weight": self._weight, "step": int(self.num_timesteps)}
        self._rollout = []

    def _on_training_end(self) -> None:
        self._imitate_pending()  # the last rollout's: learn() ends after its RL update

    def _imitate_pending(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        step, weight = pending.pop("step"), pending["weight"]
        self.history.append({"step": step, "weight": weight, **self.imitate(**pending)})
        self.logger.record("kickstart/weight", weight)
        self.logger.record("kickstart/loss", self.history[-1]["loss"])
        self.logger.record("kickstart/agreement", self.history[-1]["agreement"])
        if self.on_update is not None:
            self.on_update(self.history[-1])

    def imitate(self, observations: np.ndarray, expert_actions: np.ndarray, action_masks: np.ndarray,
                expert_values: np.ndarray, weight: float) -> dict[str, float]:
        """``epochs`` imitation passes over labelled states at learning rate ``learning_rate * weight``, in place.

        :param observations: ``(N, *obs_shape)``; ``expert_actions``: ``(N,) int64``; ``action_masks``,
            ``expert_values``: ``(N, n_actions)``.
        :return: ``loss`` (the last epoch's mean) and ``agreement`` (measured before the first step).
        """
        policy = self.model.policy
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate * weight
        masks = action_masks if self.mask_actions else None
        values = expert_values if self.temperature is not None else None
        with torch.no_grad():
            _, matches = imitation_loss(policy, *(None if a is None else torch.as_tensor(a, device=policy.device)
                                                  for a in (observations, expert_actions, masks, values)),
                                        self.temperature)
        history = fit_epochs(policy, self.optimizer, observations, expert_actions, masks, values, self.temperature,
                             self.epochs, self.batch_size, self.rng)
        return {"loss": history[-1]["loss"], "agreement": int(matches) / len(expert_actions)}
