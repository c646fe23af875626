"""What a segmentation dataset is to the env: an indexable list of (image, binary mask) samples."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image with its ground truth.

    :param image: ``(H, W, 3) uint8`` RGB.
    :param mask: ``(H, W) bool``, True = foreground (the task's target).
    :param name: a stable identifier (file stem or ``task/split/index``), for reports.
    :param ignore: ``(H, W) bool``, True where the ground truth is unlabelled (GrabCut's and Berkeley's
        band along the object boundary), or None: metrics count only labelled pixels, and the click
        protocol never clicks there.
    """

    image: np.ndarray
    mask: np.ndarray
    name: str
    ignore: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"{self.name}: image must be (H, W, 3) uint8, got {self.image.shape} {self.image.dtype}")
        if self.mask.shape != self.image.shape[:2] or self.mask.dtype != bool:
            raise ValueError(f"{self.name}: mask must be {self.image.shape[:2]} bool, got {self.mask.shape} {self.mask.dtype}")
        if self.ignore is not None and (self.ignore.shape != self.mask.shape or self.ignore.dtype != bool):
            raise ValueError(f"{self.name}: ignore must be {self.mask.shape} bool, got {self.ignore.shape} "
                             f"{self.ignore.dtype}")


class SegmentationDataset(abc.ABC):
    """A finite, ordered set of :class:`Sample`; the env draws from it by index."""

    #: the task name this dataset serves, e.g. ``"synthetic-blur"``
    task: str = ""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Sample: ...

    @property
    def names(self) -> list[str]:
        """Every sample's name, in order (subclasses answer without loading the images)."""
        return [self[i].name for i in range(len(self))]

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.task}: index {index} out of range for {len(self)} images")
        return int(index)
