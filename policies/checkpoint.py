"""Run checkpoints: saved on a schedule and on SIGINT/SIGTERM, loaded without unpickling code.

A run folder's checkpoint is ``model.zip`` (policy, its optimiser state, step counter, SB3 data),
``srm.pt`` (SRM weights, its optimiser state, its step counter) and ``state.json`` (step count and
the Python, NumPy and torch random states, the latter in ``rng.pt``). Every file is written to a
temporary name and moved into place, so a crash mid-save leaves the previous checkpoint intact.

SB3 stores some entries of ``model.zip`` (spaces, schedules, policy class and kwargs) with
cloudpickle, and unpickling a stranger's file runs its code. :func:`load_model` never unpickles
them: it rebuilds each from the run's config (a fresh model of the same algorithm on the same env)
and passes them as SB3's ``custom_objects``; tensors load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from alignsam_gym.atomic import write_bytes
from policies.presets import algorithm_class, make_model


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


def save_run(model: Any, out: Path, srm_callback: Any | None = None) -> None:
    """Write the run's checkpoint into ``out`` (atomically, file by file)."""
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".zip", dir=out)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, out / "model.zip")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if srm_callback is not None and srm_callback.srm is not None:
        srm_callback.save(out / "srm.pt")
    rng_path = out / "rng.pt"
    fd, tmp = tempfile.mkstemp(prefix=".rng.", suffix=".pt", dir=out)
    os.close(fd)
    torch.save({"torch": torch.get_rng_state()}, tmp)
    os.replace(tmp, rng_path)
    numpy_state = np.random.get_state()
    state = {"num_timesteps": int(model.num_timesteps), "python_random": _jsonable(random.getstate()),
             "numpy_random": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]]}
    write_bytes(out / "state.json", json.dumps(state).encode())


def restore_random_state(out: Path) -> int | None:
    """Restore the random states saved by :func:`save_run`; return the saved step count (None: no state)."""
    state_file = out / "state.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text())
        py = state["python_random"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        name, keys, *rest = state["numpy_random"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
        if (out / "rng.pt").is_file():
            torch.set_rng_state(torch.load(out / "rng.pt", weights_only=True)["torch"])
        return int(state["num_timesteps"])
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{state_file}: damaged run state ({type(err).__name__}: {err})") from err


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


class RunCheckpoint(BaseCallback):
    """Saves the run every ``every`` env steps, and stops training cleanly on SIGINT or SIGTERM.

    The signal handlers only set a flag; the step in progress finishes, the callback saves and
    returns False so ``learn`` returns normally. A second signal of the same kind acts as usual
    (Ctrl-C twice interrupts at once). Handlers are installed only in the main thread.
    """

    def __init__(self, out: str | Path, every: int | None = None, srm_callback: Any | None = None,
                 verbose: int = 0) -> None:
        super().__init__(verbose)
        if every is not None and every < 1:
            raise ValueError(f"checkpoint_every must be at least 1 env step or None, got {every}")
        self.out, self.every, self.srm_callback = Path(out), every, srm_callback
        self.stop_signal: int | None = None
        self.saves = 0
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
            print(f"checkpoints to {self.out}: {when}at the end and {signals}", flush=True)

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
        save_run(self.model, self.out, self.srm_callback)
        self._last_save = self.num_timesteps
        self.saves += 1

    def _on_training_end(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
