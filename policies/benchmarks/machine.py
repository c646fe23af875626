"""What every benchmark record says about where and how it ran: the machine, the command, the source
revision and the versions of the packages that computed it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from alignsam_gym.devices import cuda_device_count


def machine() -> dict[str, Any]:
    """Platform, CPU count, torch threads and version, the number of CUDA devices, and the first one's name
    when CUDA ran in this process (None otherwise: a grid whose trials ran in Ray workers).

    Counts the devices without initialising CUDA (:func:`~alignsam_gym.devices.cuda_device_count`), so worker
    pools forked later can still use CUDA."""
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_initialized() else None
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cuda": cuda, "cuda_devices": cuda_device_count()}


def command_line() -> str:
    """The command that is running, as a user would type it (``alignsam ...`` for the console script)."""
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    if program in ("alignsam", "cli.py", "__main__.py"):
        program = "alignsam"
    return " ".join([program or "python", *sys.argv[1:]])


#: the packages whose versions a result records
RECORDED_PACKAGES = ("alignsam-gym", "torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib", "scipy",
                     "opencv-python-headless", "timm", "segment-anything", "ray")


def package_versions() -> dict[str, str | None]:
    """The installed version of each of :data:`RECORDED_PACKAGES` (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def source_revision() -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the git checkout the package runs from (tracked files outside
    ``experiments/results``, which benchmarks write, changed since the commit: ``dirty``), or
    ``{"commit": None}`` when it is installed from elsewhere or git is missing."""
    root = Path(__file__).resolve().parents[2]
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True,
                                  timeout=30).stdout.strip()

        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)experiments/results")
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(changed)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
