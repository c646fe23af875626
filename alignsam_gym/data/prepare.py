"""How the env sees a dataset image: resized to a square of ``image_size`` pixels, with its mask."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from alignsam_gym.backends.embedding_cache import image_digest
from alignsam_gym.data.base import SegmentationDataset


@lru_cache(maxsize=128)
def prepared_sample(dataset: SegmentationDataset, index: int, image_size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(image (S, S, 3) uint8, mask (S, S) bool, image digest)`` for ``S = image_size``; shared by all envs.

    The image is resized with area interpolation and the mask with nearest neighbour; both arrays
    are read-only. The digest keys the embedding cache.
    Empty and all-foreground masks are valid (the env starts such episodes with one initial point).
    """
    sample = dataset[index]
    image = cv2.resize(sample.image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(sample.mask.astype(np.uint8), (image_size, image_size), interpolation=cv2.INTER_NEAREST) > 0
    image.flags.writeable = mask.flags.writeable = False
    return image, mask, image_digest(image)
