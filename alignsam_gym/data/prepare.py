"""How the env sees a dataset image: resized to a square of ``image_size`` pixels, with its mask."""

from __future__ import annotations

import cv2
import numpy as np

from alignsam_gym.data.base import SegmentationDataset
from alignsam_gym.digests import image_digest
from alignsam_gym.lru import LRU

PreparedSample = tuple[np.ndarray, np.ndarray, str]
#: the last 128 prepared samples of the process (about 250 MB at 800 px), shared by every env
_prepared: LRU[tuple[int, int, int], tuple[SegmentationDataset, PreparedSample]] = LRU(max_entries=128)


def prepared_sample(dataset: SegmentationDataset, index: int, image_size: int) -> PreparedSample:
    """``(image (S, S, 3) uint8, mask (S, S) bool, image digest)`` for ``S = image_size``; shared by all envs.

    The image is resized with area interpolation and the mask with nearest neighbour; both arrays
    are read-only. The digest keys the embedding cache.
    Empty and all-foreground masks are valid (the env starts such episodes with one initial point).
    """
    key = (id(dataset), int(index), int(image_size))
    entry = _prepared.get(key)
    if entry is not None and entry[0] is dataset:
        return entry[1]
    sample = dataset[index]
    image = cv2.resize(sample.image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(sample.mask.astype(np.uint8), (image_size, image_size), interpolation=cv2.INTER_NEAREST) > 0
    image.flags.writeable = mask.flags.writeable = False
    prepared = (image, mask, image_digest(image))
    _prepared.put(key, (dataset, prepared))  # holding the dataset keeps its id unique
    return prepared
