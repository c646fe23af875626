"""The embedding cache: memory LRU in front of an on-disk store shared by every env, process and run.

Encoding is the expensive part of a step (about a second per image for the embedded backend on a
CPU core, about 14 s for SAM ViT-B), so each image should be encoded once, ever. Keys combine the
backend's :attr:`~alignsam_gym.backends.base.PromptableSegmenter.identity` (model, weight digest,
preprocessing) with a digest of the image bytes, so a change of model or preprocessing never returns
a stale embedding.

On disk each entry is one ``safetensors`` file (no pickle, loads in milliseconds) under
``<cache_dir>/<hash of identity>/<image digest>.safetensors``, with a checksum of its arrays in the
header. Writes go to a temporary file in the same folder and are moved into place with
``os.replace``, so a reader never sees half a file, concurrent writers of the same key leave one
valid copy, and a crash leaves at most a stray temporary file. An entry that fails to load or to
verify is discarded with a warning and recomputed.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from alignsam_gym.atomic import write_bytes
from alignsam_gym.backends.base import ImageEmbedding, PromptableSegmenter
from alignsam_gym.digests import image_digest
from alignsam_gym.lru import LRU
from alignsam_gym.shared import SharedInstances

CACHE_ENV = "ALIGNSAM_CACHE"
FORMAT = "alignsam-embedding-v1"
DISK_DTYPES = ("float32", "float16")


def default_cache_dir() -> Path:
    """``$ALIGNSAM_CACHE``, else ``$XDG_CACHE_HOME/alignsam-gym`` (``~/.cache/alignsam-gym``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alignsam-gym"


def check_finite(embedding: ImageEmbedding, identity: str, digest: str) -> None:
    """:raises ValueError: naming the backend and image if the features hold NaN or Inf."""
    bad = int(np.size(embedding.features) - np.count_nonzero(np.isfinite(embedding.features)))
    if bad:
        raise ValueError(f"backend {identity} returned an embedding with {bad} NaN/Inf values for image {digest}; "
                         "check the model weights and the image")


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(arrays):
        h.update(f"{name}{arrays[name].shape}{arrays[name].dtype}".encode())
        h.update(np.ascontiguousarray(arrays[name]).data)
    return h.hexdigest()


class EmbeddingCache:
    """Least-recently-used memory cache of :class:`ImageEmbedding`, optionally backed by a folder.

    :param max_bytes: memory budget; the least recently used entries are dropped beyond it.
    :param directory: folder of the on-disk store, or None for memory only.
    :param disk_dtype: ``"float32"`` or ``"float16"``: how features are stored on disk (float16 halves
        the files; embeddings are always returned as float32).
    """

    def __init__(self, max_bytes: int = 2 * 1024**3, directory: str | Path | None = None,
                 disk_dtype: str = "float32") -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if disk_dtype not in DISK_DTYPES:
            raise ValueError(f"disk_dtype must be one of {DISK_DTYPES}, got {disk_dtype!r}")
        self.max_bytes = int(max_bytes)
        self.directory = None if directory is None else Path(directory).expanduser()
        self.disk_dtype = disk_dtype
        self._entries: LRU[tuple[str, str], ImageEmbedding] = LRU(max_bytes=self.max_bytes, size=lambda e: e.nbytes)
        self.hits = 0  # served from memory
        self.disk_hits = 0  # loaded from disk
        self.misses = 0  # encoded

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._entries.nbytes

    def path_for(self, identity: str, digest: str) -> Path | None:
        """Where the entry for ``(identity, digest)`` lives on disk (None for a memory-only cache)."""
        if self.directory is None:
            return None
        folder = hashlib.sha256(identity.encode()).hexdigest()[:20]
        return self.directory / folder / f"{digest}.safetensors"

    def encode(self, backend: PromptableSegmenter, image: np.ndarray, digest: str | None = None) -> ImageEmbedding:
        """``backend.encode(image)``, from memory or disk when these pixels were encoded by this backend before."""
        digest = digest or image_digest(image)
        identity = backend.identity
        key = (identity, digest)
        remembered = self._entries.get(key)
        if remembered is not None:
            self.hits += 1
            return remembered
        embedding = self._load(identity, digest)
        if embedding is not None:
            self.disk_hits += 1
        else:
            self.misses += 1
            embedding = backend.encode(image)
            check_finite(embedding, identity, digest)  # never cache a broken embedding
            self._store(identity, digest, embedding)
        return self._remember(key, embedding)

    def contains(self, backend: PromptableSegmenter, digest: str) -> bool:
        """Whether an entry exists in memory or on disk (without loading it)."""
        key = (backend.identity, digest)
        path = self.path_for(*key)
        return key in self._entries or (path is not None and path.is_file())

    def put(self, backend: PromptableSegmenter, digest: str, embedding: ImageEmbedding) -> None:
        """Store an embedding computed elsewhere (for example by a batched encode); NaN/Inf is refused."""
        check_finite(embedding, backend.identity, digest)
        self._store(backend.identity, digest, embedding)
        self._remember((backend.identity, digest), embedding)

    def clear(self) -> None:
        """Forget the memory entries (files on disk stay)."""
        self._entries.clear()

    # -- internals -------------------------------------------------------------------------------
    def _remember(self, key: tuple[str, str], embedding: ImageEmbedding) -> ImageEmbedding:
        for array in (embedding.features, *embedding.decoder_state.values()):
            array.flags.writeable = False  # shared by every env: nobody may change it in place
        return self._entries.setdefault(key, embedding)

    def _store(self, identity: str, digest: str, embedding: ImageEmbedding) -> None:
        path = self.path_for(identity, digest)
        if path is None:
            return
        from safetensors.numpy import save

        arrays = {"features": embedding.features.astype(self.disk_dtype)}
        arrays.update({f"state/{k}": np.ascontiguousarray(v) for k, v in embedding.decoder_state.items()})
        metadata = {"format": FORMAT, "identity": identity, "image_digest": digest,
                    "image_shape": ",".join(map(str, embedding.image_shape)),
                    "mask_shape": ",".join(map(str, embedding.mask_shape)), "checksum": _checksum(arrays)}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(path, save(arrays, metadata=metadata))

    def _load(self, identity: str, digest: str) -> ImageEmbedding | None:
        path = self.path_for(identity, digest)
        if path is None or not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                metadata = f.metadata() or {}
                arrays = {name: f.get_tensor(name) for name in f.keys()}
            problem = None
            if metadata.get("format") != FORMAT:
                problem = f"unknown format {metadata.get('format')!r}"
            elif metadata.get("identity") != identity or metadata.get("image_digest") != digest:
                problem = "key does not match its file name"
            elif metadata.get("checksum") != _checksum(arrays):
                problem = "checksum mismatch"
            elif "features" not in arrays:
                problem = "no features"
            elif not np.isfinite(arrays["features"]).all():
                problem = "NaN/Inf in the features"
            if problem is None:
                return ImageEmbedding(
                    features=arrays.pop("features").astype(np.float32),
                    image_shape=tuple(int(v) for v in metadata["image_shape"].split(",")),
                    mask_shape=tuple(int(v) for v in metadata["mask_shape"].split(",")),
                    decoder_state={k[len("state/"):]: v for k, v in arrays.items()})
        except Exception as err:  # a damaged file can fail in the header parser or in any read
            problem = f"{type(err).__name__}: {err}"
        warnings.warn(f"discarding damaged embedding cache entry {path} ({problem}); it will be recomputed",
                      RuntimeWarning, stacklevel=3)
        path.unlink(missing_ok=True)
        return None


_caches: SharedInstances[EmbeddingCache] = SharedInstances()


def shared_cache(cache_dir: str | Path | bool | None = None, disk_dtype: str = "float32") -> EmbeddingCache:
    """The process-wide cache for a folder: ``None`` = :func:`default_cache_dir`, ``False`` = memory only."""
    if cache_dir is False:
        directory = None
    elif cache_dir is None or cache_dir is True:
        directory = str(default_cache_dir().resolve())
    else:
        directory = str(Path(cache_dir).expanduser().resolve())
    return _caches.get((directory, disk_dtype), lambda: EmbeddingCache(directory=directory, disk_dtype=disk_dtype))
