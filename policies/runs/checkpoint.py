"""Run checkpoints: saved on a schedule and on SIGINT/SIGTERM, loaded without unpickling code.

What a checkpoint holds and how it is written is :class:`~policies.runs.folder.RunFolder`'s business.

SB3 stores some entries of ``model.zip`` (spaces, schedules, policy class and kwargs) with
cloudpickle, and unpickling a stranger's file runs its code. :func:`load_model` never unpickles
them: it rebuilds each from the run's config (a fresh model of the same algorithm on the same env)
and passes them as SB3's ``custom_objects``; tensors load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import signal
import zipfile
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from policies.runs.folder import RunFolder
from policies.sb3.presets import algorithm_class, make_model


def serialized_entries(path: str | Path) -> list[str]:
    """The keys of ``model.zip``'s data that SB3 stored with cloudpickle.

    :raises ValueError: naming the file if it is not an SB3 model archive.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a Stable-Baselines3 model archive ({type(err).__name__}: {err})") from err
    return sorted(k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v)


def load_model(algorithm: str, path: str | Path, env: Any, device: str = "auto",
               hyperparameters: dict[str, Any] | None = None) -> Any:
    """Load ``model.zip`` for ``env`` without unpickling anything (see the module docstring).

    :param hyperparameters: the run's preset overrides (its config), so the rebuilt schedules and
        policy kwargs are the run's.
    :raises ValueError: naming the file if it holds a pickled entry that cannot be rebuilt, or weights
        of another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trained model at {path}")
    keys = serialized_entries(path)
    fresh = make_model(algorithm, env, device=device, **dict(hyperparameters or {}))
    missing = [k for k in keys if not hasattr(fresh, k)]
    if missing:
        raise ValueError(f"{path}: pickled entries {missing} cannot be rebuilt from the config; refusing to "
                         "unpickle them (a model.zip can run code when unpickled)")
    custom = {k: getattr(fresh, k) for k in keys}
    try:
        return algorithm_class(algorithm).load(path, env=env, device=device, custom_objects=custom)
    except RuntimeError as err:  # load_state_dict: another architecture
        raise ValueError(f"{path}: the saved weights do not fit a {algorithm} model of this config ({err})") from err


class RunCheckpoint(BaseCallback):
    """Saves the run every ``every`` env steps, and stops training cleanly on SIGINT or SIGTERM.

    The signal handlers only set a flag; the step in progress finishes, the callback saves and
    returns False so ``learn`` returns normally. A second signal of the same kind acts as usual
    (Ctrl-C twice interrupts at once). Handlers are installed only in the main thread.
    """

    def __init__(self, run: RunFolder, every: int | None = None, srm_callback: Any | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        if every is not None and every < 1:
            raise ValueError(f"checkpoint_every must be at least 1 env step or None, got {every}")
        self.run, self.every, self.srm_callback = run, every, srm_callback
        self.stop_signal: int | None = None
        self._last_save = 0
        self._previous: dict[int, Any] = {}

    def _on_training_start(self) -> None:
        self._last_save = self.num_timesteps
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._request_stop)
        except ValueError:  # not the main thread: no handlers, schedule only
            self._previous.clear()
        if self.verbose:
            when = f"every {self.every} env steps, " if self.every else ""
            signals = "on SIGINT/SIGTERM" if self._previous else "(no signal handlers outside the main thread)"
            print(f"checkpoints to {self.run.path}: {when}at the end and {signals}", flush=True)

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stop_signal = signum
        previous = self._previous.get(signum)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)  # a second one acts at once

    def _on_step(self) -> bool:
        if self.stop_signal is not None:
            self.save()
            return False
        if self.every is not None and self.num_timesteps - self._last_save >= self.every:
            self.save()
        return True

    def save(self) -> None:
        self.run.save_checkpoint(self.model, self.srm_callback)
        self._last_save = self.num_timesteps

    def _on_training_end(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
