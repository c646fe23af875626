"""Encoding a whole dataset into the embedding cache ahead of training (``alignsam cache build``).

Images already in the cache are skipped before anything is encoded. On a GPU the encoder takes
batches; a batch that runs out of GPU memory is halved and retried (down to one image), so the default
fits 16-24 GB cards with SAM ViT-L/H, whose global attention peaks near 3 GB per image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from alignsam_gym.backends.base import PromptableSegmenter
from alignsam_gym.backends.embedding_cache import EmbeddingCache
from alignsam_gym.data.base import SegmentationDataset
from alignsam_gym.data.prepare import prepared_sample

#: images per encoder forward on a GPU before any out-of-memory halving
DEFAULT_GPU_BATCH = 8


@dataclass
class PrecomputeReport:
    """What :func:`encode_dataset` did: images in the dataset, already cached, encoded, the batch size it
    ended with, and seconds spent encoding."""

    images: int
    cached: int
    encoded: int
    batch_size: int
    seconds: float


def missing_images(cache: EmbeddingCache, backend: PromptableSegmenter, dataset: SegmentationDataset,
                   image_size: int = 800) -> list[int]:
    """Indices of the images of ``dataset`` (as the env prepares them at ``image_size``) ``cache`` lacks."""
    return [i for i in range(len(dataset)) if not cache.contains(backend, prepared_sample(dataset, i, image_size).digest)]


def encode_into_cache(cache: EmbeddingCache, backend: PromptableSegmenter, dataset: SegmentationDataset,
                      indices: list[int], image_size: int = 800) -> list[str]:
    """Encode images ``indices`` of ``dataset`` (prepared as the env prepares them) with one batched encoder call
    when the backend has one (``encode_batch``), else one ``encode`` per image, and store every embedding in
    ``cache``; returns the images' digests. Shared by :func:`encode_dataset` and the Ray Data encoder actors."""
    prepared = [prepared_sample(dataset, i, image_size) for i in indices]
    images = [p.image for p in prepared]
    encode_batch = getattr(backend, "encode_batch", None)
    embeddings = encode_batch(images) if encode_batch and len(images) > 1 else [backend.encode(i) for i in images]
    for sample, embedding in zip(prepared, embeddings):
        cache.put(backend, sample.digest, embedding)
    return [p.digest for p in prepared]


def encode_dataset(cache: EmbeddingCache, backend: PromptableSegmenter, dataset: SegmentationDataset,
                   image_size: int = 800, batch_size: int | None = None,
                   progress: Callable[[int, int, float], None] | None = None,
                   todo: list[int] | None = None) -> PrecomputeReport:
    """Encode every image of ``dataset`` (as the env prepares it at ``image_size``) that ``cache`` lacks.

    :param batch_size: images per encoder forward; default :data:`DEFAULT_GPU_BATCH` on CUDA, 1 elsewhere.
        Halved on a CUDA out-of-memory error until the batch fits.
    :param progress: called as ``progress(done, total, seconds)`` after every batch.
    :param todo: the result of :func:`missing_images`, when the caller has it already.
    """
    todo = missing_images(cache, backend, dataset, image_size) if todo is None else todo
    device = getattr(backend, "device", torch.device("cpu"))
    batch = int(batch_size or (DEFAULT_GPU_BATCH if device.type == "cuda" else 1))
    if batch < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    start, done = time.perf_counter(), 0
    while done < len(todo):
        chunk = todo[done:done + batch]
        try:
            encode_into_cache(cache, backend, dataset, chunk, image_size)
        except torch.OutOfMemoryError:
            if batch == 1:
                raise
            batch = max(1, batch // 2)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        done += len(chunk)
        if progress is not None:
            progress(done, len(todo), time.perf_counter() - start)
    return PrecomputeReport(len(dataset), len(dataset) - len(todo), len(todo), batch,
                            round(time.perf_counter() - start, 3))
