"""How the env sees a dataset image: resized to a square of ``image_size`` pixels, with its mask."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from alignsam_gym.data.base import SegmentationDataset
from alignsam_gym.digests import image_digest
from alignsam_gym.lru import IdentityLRU



class PreparedSample(NamedTuple):
    """A dataset image as the env sees it: ``image`` ``(S, S, 3) uint8``, ``mask`` ``(S, S) bool``, the
    image's ``digest`` (the embedding cache's key) and ``ignore`` ``(S, S) bool`` (unlabelled pixels) or None."""

    image: np.ndarray
    mask: np.ndarray
    digest: str
    ignore: np.ndarray | None = None


#: the last 128 prepared samples of the process (about 250 MB at 800 px), shared by every env
_prepared: IdentityLRU[PreparedSample] = IdentityLRU(max_entries=128)


def prepared_sample(dataset: SegmentationDataset, index: int, image_size: int) -> PreparedSample:
    """The :class:`PreparedSample` of image ``index`` for ``S = image_size``; shared by all envs.

    The image is resized with area interpolation, the mask and the ignore band with nearest neighbour;
    every array is read-only. The digest keys the embedding cache.
    Empty and all-foreground masks are valid (the env starts such episodes with one initial point).
    """
    key = (int(index), int(image_size))
    cached = _prepared.get((dataset,), key)
    if cached is not None:
        return cached
    sample = dataset[index]
    image = cv2.resize(sample.image, (image_size, image_size), interpolation=cv2.INTER_AREA)
    mask, ignore = (None if m is None else
                    cv2.resize(m.astype(np.uint8), (image_size, image_size), interpolation=cv2.INTER_NEAREST) > 0
                    for m in (sample.mask, sample.ignore))
    for array in (image, mask, ignore):
        if array is not None:
            array.flags.writeable = False
    prepared = PreparedSample(image, mask, image_digest(image), ignore)
    _prepared.put((dataset,), prepared, key)
    return prepared
