"""``SRMCallback``: trains the env's Semantic Recalibration Module alongside the agent.

The SRM labels every prompt inside the env (``label_source="srm"``), so it is part of the env's
dynamics; SB3 callbacks run after ``env.step``, so the callback cannot label anything itself.
Instead, after every step it collects the current state and ground-truth target from each env
(``env_method("srm_sample")``, which works across ``SubprocVecEnv`` processes), makes
``updates_per_step`` Adam updates (Q in the paper: 1 for the implicit branch, 5 for the explicit one)
with Dice + BCE, and pushes the new weights to every env (once per distinct SRM in this process;
``env_method("set_srm_weights")`` across ``SubprocVecEnv`` processes) every
``push_every`` steps. It logs ``srm/loss`` and ``srm/iou`` once per rollout (mean loss and pooled IoU over
its steps, kept on the device in between) and saves and restores its state
(weights, optimiser, counters) so a resumed run continues where it stopped. With ``save_path`` it writes
that state itself when training ends (for runners that do not call :meth:`save`, such as the RL Zoo);
the env kwarg ``srm_checkpoint`` starts an env's SRM from such a file.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv, VecEnvWrapper

from alignsam_gym.devices import resolve_device
from alignsam_gym.srm import SRMFile, load_srm_file, save_srm_file, srm_loss


class SRMCallback(BaseCallback):
    """Train the SRM of the training envs.

    :param learning_rate: Adam learning rate (paper: 1e-4).
    :param updates_per_step: gradient updates per env step (None: 1 implicit, 5 explicit, the paper's Q).
    :param push_every: push weights to the envs every this many steps.
    :param device: where the SRM trains (``"auto"``: CUDA when present).
    :param save_path: write the SRM's state (:meth:`save`) to this file when training ends (also when it is
        interrupted); an existing file there is refused when training starts, so no earlier SRM is overwritten.
    :param verbose: SB3 verbosity.
    """

    def __init__(self, learning_rate: float = 1e-4, updates_per_step: int | None = None, push_every: int = 1,
                 device: str = "auto", save_path: str | Path | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        if push_every < 1:
            raise ValueError(f"push_every must be at least 1, got {push_every}")
        self.save_path = Path(save_path) if save_path is not None else None
        self.learning_rate, self.push_every = learning_rate, int(push_every)
        self._updates = updates_per_step
        self.device = resolve_device(device)
        self.srm: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.srm_steps = 0
        self._pending_state: SRMFile | None = None

    @property
    def updates_per_step(self) -> int:
        return self._updates if self._updates is not None else (5 if self.srm.branch == "explicit" else 1)

    def _on_training_start(self) -> None:
        if self.save_path is not None and self.srm is None and self.save_path.exists():
            raise FileExistsError(f"SRMCallback save_path {self.save_path} already exists; refusing to overwrite "
                                  f"an earlier SRM (move it or choose another path)")
        if self.srm is None:
            labeler = self.training_env.get_attr("srm", indices=[0])[0]  # the env's SRMLabeler
            self.srm = copy.deepcopy(labeler.network).to(self.device).train()
            self._sums = torch.zeros(4, device=self.device)
            self.optimizer = torch.optim.Adam(self.srm.parameters(), lr=self.learning_rate)
            if self._pending_state is not None:
                self._restore(self._pending_state)
        self._push()

    def _on_step(self) -> bool:
        samples = self.training_env.env_method("srm_sample")
        state = torch.as_tensor(np.stack([s["state"] for s in samples]), device=self.device)
        target = torch.as_tensor(np.stack([s["target"] for s in samples]), device=self.device)[:, None]
        clip = (torch.as_tensor(np.stack([s["clip_state"] for s in samples]), device=self.device)
                if self.srm.branch == "explicit" else None)
        for _ in range(self.updates_per_step):
            logits = self.srm(state, clip)
            loss = srm_loss(logits, target)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.srm_steps += 1
        with torch.no_grad():  # summed on the device: no host synchronisation per step
            pred, truth = logits > 0, target > 0.5
            self._sums += torch.stack([loss.detach(), (pred & truth).sum().float(), (pred | truth).sum().float(),
                                       torch.ones((), device=loss.device)])
        if self.srm_steps % self.push_every == 0:
            self._push()
        return True

    def _on_rollout_end(self) -> None:
        self._record()

    def _on_training_end(self) -> None:
        self._record()
        if self.save_path is not None and self.srm is not None:
            self.save_path.parent.mkdir(parents=True, exist_ok=True)
            self.save(self.save_path)
            if self.verbose:
                print(f"SRM saved to {self.save_path} ({self.srm_steps} SRM steps)")

    def _record(self) -> None:
        """Log ``srm/loss`` (mean over the steps since the last record) and ``srm/iou`` (pooled over them):
        one host synchronisation per rollout instead of three per step."""
        loss_sum, inter, union, steps = self._sums.tolist()
        if steps:
            self.logger.record("srm/loss", loss_sum / steps)
            self.logger.record("srm/iou", inter / union if union else 1.0)
        self._sums.zero_()

    def _push(self) -> None:
        """New weights to every SRM the envs label with: CPU copies to envs in worker processes; in this process
        each distinct labeler loads them once (envs built on one core, as ``AlignSAMVecEnv``'s, share one), from
        the device tensors (``load_state_dict`` copies them, no host round trip)."""
        if isinstance(_innermost(self.training_env), SubprocVecEnv):
            self.training_env.env_method("set_srm_weights",
                                         {k: v.detach().cpu().clone() for k, v in self.srm.state_dict().items()})
            return
        weights = {k: v.detach() for k, v in self.srm.state_dict().items()}
        for labeler in {id(labeler): labeler for labeler in self.training_env.get_attr("srm")}.values():
            labeler.set_weights(weights)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the SRM weights, optimiser state and step counter (a torch file of tensors and numbers)."""
        if self.srm is None:
            raise RuntimeError("SRMCallback.save() before training started: there is no SRM yet")
        save_srm_file(path, SRMFile(self.srm.state_dict(), self.srm.branch, self.optimizer.state_dict(),
                                    self.srm_steps))

    def load(self, path: str | Path) -> None:
        """Restore a saved state; applied at the start of the next ``learn`` (or now, if training started)."""
        state = load_srm_file(path)
        if self.srm is None:
            self._pending_state = state
        else:
            self._restore(state)
            self._push()

    def _restore(self, state: SRMFile) -> None:
        if state.branch is not None and state.branch != self.srm.branch:
            raise ValueError(f"saved SRM is the {state.branch!r} branch, the env runs {self.srm.branch!r}")
        self.srm.load_state_dict(state.weights)
        if state.optimizer is not None:  # a bare state dict restores the weights only
            self.optimizer.load_state_dict(state.optimizer)
        self.srm_steps = state.steps
        self._pending_state = None


def _innermost(env: VecEnv) -> VecEnv:
    """The vector env under any SB3 wrappers (VecMonitor, VecNormalize, ...)."""
    while isinstance(env, VecEnvWrapper):
        env = env.venv
    return env
