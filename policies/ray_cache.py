"""``alignsam cache build ... --ray [ADDRESS]``: encode a task's images into the embedding cache with Ray Data.

The driver lists the images the cache lacks (:func:`alignsam_gym.precompute.missing_images`, so cached
images are skipped before anything is encoded); Ray Data feeds their indices in batches to
:class:`CacheEncoder` actors (``map_batches`` over an actor class: one GPU per actor when the cluster
has GPUs, CPU actors otherwise), which prepare each image exactly as the env does, encode the batch and
write every entry with the cache's own atomic writer. The result is the set of entries the local
build writes. The cache folder must be one every node sees at the same path (a shared filesystem).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from alignsam_gym.backends import shared_backend, shared_cache
from alignsam_gym.data.tasks import make_dataset
from alignsam_gym.precompute import encode_into_cache, missing_images
from policies.ray_cluster import check_shared_paths, connect, require_ray


class CacheEncoder:
    """A Ray Data actor: builds the backend, cache and dataset once, then encodes batches of image indices.

    :param dataset: ``make_dataset`` arguments (task, split, num_images, data_root).
    :param backend: the backend name; ``backend_kwargs`` its arguments (checkpoint, ...).
    :param cache_dir: the cache folder; ``disk_dtype`` its on-disk dtype.
    :param image_size: the env's ``image_size`` (images are prepared as the env prepares them).
    """

    def __init__(self, dataset: dict[str, Any], backend: str, backend_kwargs: dict[str, Any], device: str,
                 cache_dir: str, disk_dtype: str, image_size: int) -> None:
        self.dataset = make_dataset(**dataset)
        self.backend = shared_backend(backend, device=device, **backend_kwargs)
        self.cache = shared_cache(cache_dir, disk_dtype=disk_dtype)
        self.image_size = image_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        indices = [int(i) for i in batch["index"]]
        digests = encode_into_cache(self.cache, self.backend, self.dataset, indices, self.image_size)
        return {"index": np.asarray(batch["index"]), "digest": np.array(digests)}


def build_cache_on_ray(task: str, split: str, num_images: int, data_root: str | None, backend: str,
                       backend_kwargs: dict[str, Any], cache_dir: str | Path | None, disk_dtype: str, image_size: int,
                       device: str, address: str, batch_size: int = 4, concurrency: int = 2,
                       progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Encode every image of the task that the cache lacks, on Ray; returns counts and seconds.

    :param address: ``"local"`` (start a local Ray instance), ``"auto"`` or ``"ray://host:10001"``.
    :param batch_size: images per ``map_batches`` batch (one encoder call per batch).
    :param concurrency: encoder actors.
    """
    ray = require_ray()
    if batch_size < 1 or concurrency < 1:
        raise ValueError(f"batch_size and concurrency must be at least 1, got {batch_size} and {concurrency}")
    dataset_args = {"task": task, "split": split, "num_images": num_images, "data_root": data_root}
    dataset = make_dataset(**dataset_args)
    local_backend = shared_backend(backend, device=device, **backend_kwargs)
    cache = shared_cache(cache_dir, disk_dtype=disk_dtype)
    if cache.directory is None:
        raise ValueError("cache build --ray writes files: it needs an on-disk cache folder (--cache-dir)")
    todo = missing_images(cache, local_backend, dataset, image_size)
    report = {"images": len(dataset), "cached": len(dataset) - len(todo), "encoded": 0, "seconds": 0.0}
    if not todo:
        return report
    started = connect(address)
    try:
        Path(cache.directory).mkdir(parents=True, exist_ok=True)
        check_shared_paths([Path(cache.directory).resolve()])
        gpus = ray.cluster_resources().get("GPU", 0)
        encoder_args = {"dataset": dataset_args, "backend": backend, "backend_kwargs": backend_kwargs,
                        "device": "cuda" if gpus else "cpu", "cache_dir": str(Path(cache.directory).resolve()),
                        "disk_dtype": disk_dtype, "image_size": image_size}
        start = time.perf_counter()
        encoded = ray.data.from_items([{"index": int(i)} for i in todo]).map_batches(
            CacheEncoder, fn_constructor_kwargs=encoder_args, batch_size=batch_size, concurrency=concurrency,
            num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1)
        done = 0
        for batch in encoded.iter_batches(batch_size=None):
            done += len(batch["index"])
            if progress is not None:
                progress(done, len(todo), time.perf_counter() - start)
        report.update({"encoded": done, "seconds": round(time.perf_counter() - start, 3)})
        return report
    finally:
        if started:
            ray.shutdown()
