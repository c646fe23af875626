"""What every benchmark record says about where and how it ran: the machine and the command."""

from __future__ import annotations

import os
import platform
import sys
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
