"""Compact observations: the embedding is published once per image, the observation only names it.

With ``obs_mode="compact"`` an observation is ``{"mask": (h, w) float32, "embedding_key": (16,) uint8}``
instead of the ``(C, h, w)`` masked embedding: a rollout or replay buffer then holds a 1.6 KB mask
per step instead of a 0.7 MB (embedded backend) or 4 MB (SAM) copy of the same embedding. The env
publishes each image's embedding in this process-wide table under its key, and the policy's
features extractor looks it up and forms ``s_t = E(x) * M`` itself, so the policy sees exactly the
state of the default mode.

The table holds references to the arrays the embedding cache already keeps (no copy), so it costs
memory only for embeddings the cache has since dropped. Lookups work in the process that runs the
envs: an in-process vector env (``AlignSAMVecEnv``, ``DummyVecEnv``), not ``SubprocVecEnv``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
from gymnasium import spaces

#: length of an embedding key in bytes
KEY_BYTES = 16
#: default memory bound of the table; the least recently published entries go first beyond it
DEFAULT_MAX_BYTES = 4 * 1024**3

class CompactObservationSpace(spaces.Dict):
    """``Dict(mask=Box(0, 1, (h, w), float32), embedding_key=Box(0, 255, (KEY_BYTES,), uint8))`` that also
    says how to rebuild the full observation: ``embedding_shape`` ``(C, h, w)`` and ``obs_size``."""

    def __init__(self, embedding_shape: tuple[int, int, int], obs_size: int) -> None:
        channels, height, width = (int(v) for v in embedding_shape)
        super().__init__({"mask": spaces.Box(0.0, 1.0, (height, width), np.float32),
                          "embedding_key": spaces.Box(0, 255, (KEY_BYTES,), np.uint8)})
        self.embedding_shape = (channels, height, width)
        self.obs_size = int(obs_size)

    def __repr__(self) -> str:
        return f"CompactObservationSpace(embedding_shape={self.embedding_shape}, obs_size={self.obs_size})"


_table: OrderedDict[bytes, np.ndarray] = OrderedDict()
_table_bytes = 0
_lock = threading.Lock()
max_bytes = DEFAULT_MAX_BYTES


def embedding_key(identity: str, digest: str) -> np.ndarray:
    """``(KEY_BYTES,) uint8``: the key of the embedding of image ``digest`` by backend ``identity``."""
    h = hashlib.blake2b(f"{identity}\0{digest}".encode(), digest_size=KEY_BYTES)
    return np.frombuffer(h.digest(), dtype=np.uint8).copy()


def publish(key: np.ndarray, features: np.ndarray) -> None:
    """Make ``features`` ``(C, h, w) float32`` available under ``key`` in this process."""
    global _table_bytes
    name = bytes(np.asarray(key, dtype=np.uint8))
    with _lock:
        if name in _table:
            _table.move_to_end(name)
            return
        _table[name] = features
        _table_bytes += features.nbytes
        while _table_bytes > max_bytes and len(_table) > 1:
            _, dropped = _table.popitem(last=False)
            _table_bytes -= dropped.nbytes


def lookup(key: np.ndarray) -> np.ndarray:
    """The ``(C, h, w) float32`` embedding published under ``key``.

    :raises KeyError: if this process never published it (the envs run in another process, for
        example a ``SubprocVecEnv``) or it was dropped beyond the table's memory bound.
    """
    name = bytes(np.asarray(key, dtype=np.uint8))
    with _lock:
        features = _table.get(name)
    if features is None:
        raise KeyError(f"no embedding published under key {name.hex()} in this process: compact observations "
                       "need the envs in the policy's process (AlignSAMVecEnv or DummyVecEnv, not SubprocVecEnv); "
                       "use obs_mode='full' otherwise")
    return features


def clear() -> None:
    """Forget every published embedding (tests; a new run)."""
    global _table_bytes
    with _lock:
        _table.clear()
        _table_bytes = 0
