"""Devices: parsing a device argument early, resolving ``"auto"`` late, and one model per physical device.

Why late: asking CUDA whether it is there (``torch.cuda.is_available()``) initialises it in the asking
process on a machine without NVML, and a process forked after that cannot use CUDA ("Cannot
re-initialize CUDA in forked subprocess"). ``gym.make_vec(..., vectorization_mode="async")`` builds an
env in the parent to read the spaces and forks its workers afterwards, so building an env must not ask.
Envs and backends therefore keep a :class:`DeviceSpec` and resolve it on first use (the first model
load or forward pass).

Why fork-safe: even that first use must not spoil later forks (an env is usually reset before a worker
pool or a data loader forks), so the device count comes from :func:`cuda_device_count`, which never asks
the CUDA runtime in this process: it takes NVML's count (torch's own probe, which honours
``CUDA_VISIBLE_DEVICES``), and where NVML is missing it answers 0 when no CUDA driver library can be
loaded, or asks the driver in a short child process. ``torch.cuda.device_count()`` would fall back to
the CUDA runtime in this process, after which every forked child is in torch's bad-fork state.
"""

from __future__ import annotations

import ctypes
import functools
import re
import subprocess
import sys
import threading

import torch

#: the child process of :func:`cuda_device_count` where NVML is missing: the CUDA driver's own count
_DRIVER_PROBE = (
    "import ctypes\n"
    "cuda = ctypes.CDLL('libcuda.so.1')\n"
    "count = ctypes.c_int(0)\n"
    "ok = cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0\n"
    "print(count.value if ok else 0)\n"
)


def _driver_loadable() -> bool:
    """Whether a CUDA driver library is on this machine (loading it initialises nothing)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """The number of CUDA devices this process may use, found without initialising CUDA in it, so that
    processes forked afterwards can still use CUDA (module docstring). 0 with a CPU-only torch; on a ROCm
    build, torch's own count. NVML also answers -1 (and the driver is then asked) when ``CUDA_VISIBLE_DEVICES``
    names MIG instances. Counted once per process: set ``CUDA_VISIBLE_DEVICES`` before the first use."""
    if torch.version.hip is not None or torch.cuda.is_initialized():
        return torch.cuda.device_count()
    if torch.version.cuda is None:
        return 0
    nvml = getattr(torch.cuda, "_device_count_nvml", None)
    count = nvml() if nvml is not None else -1
    if count >= 0:
        return count
    if not _driver_loadable():
        return 0
    try:
        out = subprocess.run([sys.executable, "-c", _DRIVER_PROBE], capture_output=True, text=True, timeout=60)
        return max(0, int(out.stdout.strip() or 0))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0

_DEVICE = re.compile(r"^(auto|cpu|meta|cuda|mps)(:\d+)?$")


def parse_device(device: str | torch.device = "auto") -> str:
    """The canonical string of a device argument, without initialising CUDA: ``"auto"``, ``"cpu"``,
    ``"cuda:N"`` (``"cuda"`` is ``"cuda:0"``), ``"meta"``, ``"mps"``.

    :raises ValueError: for anything else, or a CUDA device this machine does not have.
    """
    text = str(device)
    match = _DEVICE.match(text)
    if match is None or (match.group(1) == "auto" and match.group(2)):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    kind, index = match.group(1), int(match.group(2)[1:]) if match.group(2) else 0
    if kind == "cuda":
        count = cuda_device_count()
        if count == 0:
            raise ValueError(f"device={device!r} was requested but CUDA is not available on this machine")
        if index >= count:
            raise ValueError(f"device={device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return f"cuda:{index}"
    return kind if kind in ("auto", "cpu", "meta") else text


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` of a device argument; ``"auto"`` gives ``cuda:0`` when there is a GPU, else
    the CPU. Call it when the device is about to be used, not when an object is built (module docstring).

    :raises ValueError: as :func:`parse_device`.
    """
    spec = parse_device(device)
    if spec == "auto":
        return torch.device("cuda:0" if cuda_device_count() > 0 else "cpu")
    return torch.device(spec)


class DeviceSpec:
    """A device argument checked now and resolved on first use (thread-safe, then fixed).

    :param device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ...
    """

    def __init__(self, device: str | torch.device = "auto") -> None:
        self.spec = parse_device(device)
        self._resolved: torch.device | None = None if self.spec == "auto" else torch.device(self.spec)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DeviceSpec({self.spec!r})"

    def __getstate__(self) -> dict:
        return {"spec": self.spec}  # resolved again where it is used (another process may differ)

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["spec"])

    @property
    def resolved(self) -> bool:
        """Whether the device is known without asking CUDA (anything but an unresolved ``"auto"``)."""
        return self._resolved is not None

    @property
    def device(self) -> torch.device:
        """The ``torch.device``; resolves ``"auto"`` the first time."""
        if self._resolved is None:
            with self._lock:
                if self._resolved is None:
                    self._resolved = resolve_device(self.spec)
        return self._resolved


def device_tag(device: torch.device) -> str:
    """The part of a backend's cache identity that says where it ran: ``""`` on the CPU (so CPU caches
    keep their keys), else ``"/cuda"``, ``"/cuda-tf32"`` when TF32 is allowed (cuDNN allows it by default):
    GPU and CPU encodes differ at about 1e-3 and must not be served for each other."""
    if device.type == "cpu":
        return ""
    tf32 = device.type == "cuda" and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    return f"/{device.type}{'-tf32' if tf32 else ''}"
