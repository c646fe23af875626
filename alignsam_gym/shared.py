"""``SharedInstances``: process-wide objects by key (backends, caches, datasets, CLIP models), made once.

Every env of a process that asks for the same backend, cache folder, dataset or CLIP model gets the
same object, so a model's weights load once. One small class serves all four registries.

Making an instance never draws from the global torch RNG (a model's random initialisation before its
weights load would): a training run seeded before its envs loaded a model would otherwise draw
different random numbers depending on whether the embeddings came from the cache (no model loaded)
or were computed (model loaded mid-run).
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, Hashable, TypeVar

import torch

T = TypeVar("T")


class SharedInstances(Generic[T]):
    """Objects made on first request by key and shared afterwards (thread-safe)."""

    def __init__(self) -> None:
        self._instances: dict[Hashable, T] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The instance under ``key``, made with ``make()`` the first time (the global CPU torch RNG is left as
        it was)."""
        with self._lock:
            if key not in self._instances:
                with torch.random.fork_rng(devices=[]):
                    self._instances[key] = make()
            return self._instances[key]

    def __len__(self) -> int:
        return len(self._instances)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._instances
