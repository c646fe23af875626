"""In-memory LRU cache of image embeddings, shared by every env of a process.

Encoding is the expensive part of a step (about a second per image for the embedded backend on a
CPU core, far more for SAM), so each image is encoded once per process. Keys combine the backend's
:attr:`~alignsam_gym.backends.base.PromptableSegmenter.identity` with a digest of the image bytes,
so two envs over the same images share entries, and a change of model or preprocessing never
returns a stale embedding.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from alignsam_gym.backends.base import ImageEmbedding, PromptableSegmenter


def image_digest(image: np.ndarray) -> str:
    """Content digest of an image array (shape, dtype and bytes)."""
    image = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.shape}{image.dtype}".encode())
    h.update(image.data)
    return h.hexdigest()


class EmbeddingCache:
    """Least-recently-used cache of :class:`ImageEmbedding`, bounded in bytes.

    :param max_bytes: memory budget; the least recently used entries are dropped beyond it.
    """

    def __init__(self, max_bytes: int = 2 * 1024**3) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[tuple[str, str], ImageEmbedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def encode(self, backend: PromptableSegmenter, image: np.ndarray, digest: str | None = None) -> ImageEmbedding:
        """``backend.encode(image)``, from the cache when this backend has already encoded these pixels."""
        key = (backend.identity, digest or image_digest(image))
        with self._lock:
            if key in self._entries:
                self.hits += 1
                self._entries.move_to_end(key)
                return self._entries[key]
            self.misses += 1
        embedding = backend.encode(image)
        for array in (embedding.features, *embedding.decoder_state.values()):
            array.flags.writeable = False  # shared by every env: nobody may change it in place
        with self._lock:
            if key not in self._entries:
                self._entries[key] = embedding
                self._bytes += embedding.nbytes
                while self._bytes > self.max_bytes and len(self._entries) > 1:
                    _, dropped = self._entries.popitem(last=False)
                    self._bytes -= dropped.nbytes
        return embedding

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


#: the cache every env of this process uses
DEFAULT_CACHE = EmbeddingCache()
