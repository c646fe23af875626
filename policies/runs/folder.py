"""``RunFolder``: the one place that knows a run folder's file names; every file in it is written atomically.

A run folder holds:

- ``config.yaml``: the resolved :class:`~policies.runs.config.RunConfig`;
- ``train_images.txt``: the names of the training images (the seeded few-shot subset);
- ``backend.txt``: the identity of the segmenter the run was trained with (a resumed run must build the same);
- ``model.zip``: the SB3 model (policy, its optimiser state, step counter);
- ``srm.pt``: the SRM callback's state (SRM weights, its optimiser state, its step counter);
- ``state.json`` and ``rng.pt``: the step count and the Python, NumPy and torch (CPU and CUDA) random states;
  ``state.json``, written last, also names the digests of ``model.zip``, ``srm.pt`` and ``rng.pt``;
- ``imitation.json``: what the imitation phase did (``init: {imitation: ...}``: rounds, states, the expert's cost
  per state, the critic's fit), written once, before reinforcement starts;
- ``kickstart.jsonl``: one line per policy update with kickstarting's imitation term
  (``init.imitation.kickstart_weight``): step, weight, loss, the policy's agreement with the expert;
- ``tb/``: TensorBoard logs (SB3's metrics plus ``srm/loss`` and ``srm/iou``);
- ``torn-<n>/``: the files of a checkpoint cut short while it was saved, set aside.

Each file goes to a temporary name and is moved into place, so no file is ever half-written. A process
killed between the moves of one checkpoint (a lost Ray node, an out-of-memory kill) leaves files of two
checkpoints, or a model without its ``state.json``: :meth:`RunFolder.torn_checkpoint` recognises that by
the digests, and training then sets those files aside and starts the run again from step 0 (nothing
consistent is left to resume from; a resumed run with a stale SRM would record wrong results silently).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from alignsam_gym.atomic import append_line, replacing, write_json, write_text, write_yaml
from alignsam_gym.devices import cuda_device_count
from alignsam_gym.digests import sha256_of
from alignsam_gym.srm import load_srm_file
from policies.runs.config import RunConfig


class RunFolder:
    """A training run's folder (it need not exist yet).

    :param path: the folder.
    """

    CONFIG = "config.yaml"
    TRAIN_IMAGES = "train_images.txt"
    BACKEND = "backend.txt"
    MODEL = "model.zip"
    SRM = "srm.pt"
    STATE = "state.json"
    RNG = "rng.pt"
    TENSORBOARD = "tb"
    CURVE = "curve.jsonl"
    IMITATION = "imitation.json"
    KICKSTART = "kickstart.jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    config_file = property(lambda self: self.path / self.CONFIG)
    train_images_file = property(lambda self: self.path / self.TRAIN_IMAGES)
    backend_file = property(lambda self: self.path / self.BACKEND)
    model_file = property(lambda self: self.path / self.MODEL)
    srm_file = property(lambda self: self.path / self.SRM)
    state_file = property(lambda self: self.path / self.STATE)
    rng_file = property(lambda self: self.path / self.RNG)
    curve_file = property(lambda self: self.path / self.CURVE)
    imitation_file = property(lambda self: self.path / self.IMITATION)
    kickstart_file = property(lambda self: self.path / self.KICKSTART)
    tensorboard_dir = property(lambda self: self.path / self.TENSORBOARD)

    @classmethod
    def of_model(cls, path: str | Path) -> tuple[RunFolder, Path]:
        """The run folder of a run folder or ``model.zip`` path, and the model file."""
        path = Path(path)
        if path.is_dir():
            return cls(path), path / cls.MODEL
        return cls(path.parent), path

    # -- config and records ------------------------------------------------------------------------
    def write_config(self, config: RunConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_yaml(self.config_file, config.to_dict())

    def read_config(self) -> RunConfig:
        """The saved config (the defaults when the folder has none, e.g. a bare ``model.zip``)."""
        return RunConfig.load(self.config_file) if self.config_file.is_file() else RunConfig()

    def write_train_images(self, names: Sequence[str]) -> None:
        write_text(self.train_images_file, "\n".join(names) + "\n")

    def write_backend_identity(self, identity: str) -> None:
        write_text(self.backend_file, identity + "\n")

    def backend_identity(self) -> str | None:
        """The identity of the segmenter the run was trained with; None for runs from before it was recorded."""
        return self.backend_file.read_text().strip() if self.backend_file.is_file() else None

    def has_model(self) -> bool:
        return self.model_file.is_file()

    def steps_done(self) -> int:
        """Env steps of the last complete checkpoint (0 without one, or when it is torn)."""
        if not self.state_file.is_file() or self.torn_checkpoint() is not None:
            return 0
        return int(self._read_state().get("num_timesteps", 0))

    def torn_checkpoint(self) -> str | None:
        """Why the checkpoint in the folder is incomplete, or None when it is whole (or there is none).

        A checkpoint is ``model.zip``, ``srm.pt`` and ``rng.pt``, then ``state.json`` naming their digests; a
        process killed while saving one (a lost Ray node, an out-of-memory kill) leaves a model without its
        state, or files of two checkpoints. Runs from before the digests were recorded count as whole.
        """
        if not self.has_model():
            return f"{self.STATE} without {self.MODEL}" if self.state_file.is_file() else None
        if not self.state_file.is_file():
            return f"{self.MODEL} without {self.STATE}"
        try:
            files = self._read_state().get("files")
        except ValueError as err:
            return str(err)
        if files is None:
            return None
        for name, digest in files.items():
            if _digest(self.path / name) != digest:
                return f"{name} is not the one {self.STATE} names"
        return None

    def set_torn_checkpoint_aside(self) -> Path:
        """Move a torn checkpoint's files into ``torn-<n>/`` in the run folder (nothing is deleted), so the run
        can start again from step 0; returns that folder."""
        n = 0
        while True:
            aside = self.path / f"torn-{n}"
            try:
                aside.mkdir()
                break
            except FileExistsError:
                n += 1
        for name in (self.MODEL, self.SRM, self.RNG, self.STATE, self.CURVE, self.TENSORBOARD):
            if (self.path / name).exists():
                os.replace(self.path / name, aside / name)
        return aside

    def digests(self) -> dict[str, str | None]:
        """Short SHA-256 digests of ``model.zip`` and ``srm.pt`` (None where absent), for records."""
        return {"model": _digest(self.model_file), "srm": _digest(self.srm_file)}

    def append_curve(self, point: dict[str, Any]) -> None:
        """Add one learning-curve point (``env_steps``, ``miou``, ``foreground_rate``, ...) to ``curve.jsonl``."""
        self.path.mkdir(parents=True, exist_ok=True)
        append_line(self.curve_file, json.dumps(point))

    def read_curve(self) -> list[dict[str, Any]]:
        """The learning-curve points, by env steps (a resumed run's repeated steps: the last one); a torn last
        line (a crash mid-write) is skipped."""
        return self._read_lines(self.curve_file, "env_steps")

    @staticmethod
    def _read_lines(path: Path, step_key: str) -> list[dict[str, Any]]:
        """The JSON lines of an append-only log by ``step_key`` (a repeated step: its last line; a torn line:
        skipped)."""
        if not path.is_file():
            return []
        points: dict[int, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            try:
                point = json.loads(line)
            except json.JSONDecodeError:
                continue
            points[int(point[step_key])] = point
        return [points[k] for k in sorted(points)]

    def write_imitation(self, record: dict[str, Any]) -> None:
        """The imitation phase's record (:func:`policies.imitation.pretrain`'s)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.imitation_file, record)

    def read_imitation(self) -> dict[str, Any] | None:
        """The imitation phase's record; None for a run without one."""
        return json.loads(self.imitation_file.read_text()) if self.imitation_file.is_file() else None

    def append_kickstart(self, update: dict[str, Any]) -> None:
        """Add one kickstarted update's record (``step``, ``weight``, ``loss``, ``agreement``) to
        ``kickstart.jsonl``."""
        self.path.mkdir(parents=True, exist_ok=True)
        append_line(self.kickstart_file, json.dumps(update))

    def read_kickstart(self) -> list[dict[str, Any]]:
        """The kickstarted updates by step (a resumed run's repeated steps: the last one; a torn last line is
        skipped); empty for a run without kickstarting."""
        return self._read_lines(self.kickstart_file, "step")

    def drop_kickstart_after(self, steps: int) -> None:
        """Keep only the kickstarted updates up to ``steps`` (a resumed checkpoint's step count): the lines a run
        wrote after its last checkpoint describe updates the resumed run does not have."""
        updates = self.read_kickstart()
        if any(u["step"] > steps for u in updates):
            write_text(self.kickstart_file, "".join(json.dumps(u) + "\n" for u in updates if u["step"] <= steps))

    def srm_weights(self) -> dict[str, torch.Tensor] | None:
        """The SRM weights of ``srm.pt`` (None without it)."""
        if not self.srm_file.is_file():
            return None
        return load_srm_weights(self.srm_file)

    # -- checkpoints -------------------------------------------------------------------------------
    def save_checkpoint(self, model: Any, srm_callback: Any | None = None) -> None:
        """Write ``model.zip``, ``srm.pt`` (when the callback trained an SRM) and the random states, each whole
        beside its target first, then moved into place one after the other (``model.zip`` last, so a first
        checkpoint cut short leaves no model), and last ``state.json`` with the digests of what was written, so a
        checkpoint cut short is recognised (:meth:`torn_checkpoint`) instead of resumed."""
        self.path.mkdir(parents=True, exist_ok=True)
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        written: dict[str, Path] = {}
        with contextlib.ExitStack() as files:  # the temporaries are moved into place in reverse order of entry
            written[self.MODEL] = files.enter_context(replacing(self.model_file, suffix=".zip"))  # SB3 adds .zip
            model.save(written[self.MODEL])
            if srm_callback is not None and srm_callback.srm is not None:
                written[self.SRM] = files.enter_context(replacing(self.srm_file))
                srm_callback.save(written[self.SRM])
            written[self.RNG] = files.enter_context(replacing(self.rng_file))
            torch.save(rng, written[self.RNG])
            digests = {name: _digest(tmp) for name, tmp in written.items()}  # this writer's files, not another's
        numpy_state = np.random.get_state()
        state = {"num_timesteps": int(model.num_timesteps), "python_random": _jsonable(random.getstate()),
                 "numpy_random": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]], "files": digests}
        write_json(self.state_file, state)

    def restore_random_state(self) -> int | None:
        """Restore the random states of the last checkpoint; return its step count (None: no checkpoint)."""
        if not self.state_file.is_file():
            return None
        try:
            state = self._read_state()
            py = state["python_random"]
            random.setstate((py[0], tuple(py[1]), py[2]))
            name, keys, *rest = state["numpy_random"]
            np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
            if self.rng_file.is_file():
                rng = torch.load(self.rng_file, weights_only=True)
                torch.set_rng_state(rng["torch"])
                if "cuda" in rng and cuda_device_count() > 0:
                    torch.cuda.set_rng_state_all(rng["cuda"][:torch.cuda.device_count()])
            return int(state["num_timesteps"])
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise ValueError(f"{self.state_file}: damaged run state ({type(err).__name__}: {err})") from err

    def _read_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{self.state_file}: damaged run state ({type(err).__name__}: {err})") from err


def load_srm_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """SRM weights from a run's ``srm.pt`` (loaded without unpickling code)."""
    return load_srm_file(path).weights


def _digest(path: Path) -> str | None:
    return sha256_of(path)[:16] if path.is_file() else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
