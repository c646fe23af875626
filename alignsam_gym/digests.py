"""Content digests: of image arrays (the embedding cache's keys, computed where the data is prepared)
and of files (weights identities, checkpoint records, download checks)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def image_digest(image: np.ndarray) -> str:
    """Content digest of an image array (shape, dtype and bytes): 32 hex characters."""
    image = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.shape}{image.dtype}".encode())
    h.update(image.data)
    return h.hexdigest()


def sha256_of(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, read in chunks: 64 hex characters."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
