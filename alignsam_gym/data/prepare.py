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

    :raises ValueError: naming the image if its mask is empty or all foreground at this size, since
        an episode needs one positive and one negative initial point.
    """
    sample = dataset[index]
    image = cv2.resize(sample.image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(sample.mask.astype(np.uint8), (image_size, image_size), interpolation=cv2.INTER_NEAREST) > 0
    if not mask.any() or mask.all():
        what = "empty" if not mask.any() else "all foreground"
        raise ValueError(f"{dataset.task} image {sample.name!r}: the mask is {what} at {image_size}x{image_size}, "
                         "so no positive and negative initial point can both be drawn")
    image.flags.writeable = mask.flags.writeable = False
    return image, mask, image_digest(image)
