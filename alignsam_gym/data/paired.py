"""Datasets of (image file, mask file) pairs: the common part of every file-based loader.

A loader lists its pairs in its dataset's distributed layout (:mod:`alignsam_gym.data.public`) and
says how a stored label map becomes a binary mask; this module reads, checks and subsets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from alignsam_gym.data.base import Sample, SegmentationDataset
from alignsam_gym.data.io import IMAGE_EXTENSIONS, check_same_size, files_by_stem, read_image, read_label_map

#: ``(label map, its path) -> (H, W) bool`` foreground; raises ValueError naming the path on bad values
Binarizer = Callable[[np.ndarray, Path], np.ndarray]
#: ``(label map, its path) -> (H, W) bool`` unlabelled pixels (True = ignored), or None when all are labelled
IgnoreRule = Callable[[np.ndarray, Path], "np.ndarray | None"]


@dataclass(frozen=True)
class Pair:
    """One sample's files: ``name`` (its stem), ``image`` and ``mask`` paths."""

    name: str
    image: Path
    mask: Path


def binary_mask(label: np.ndarray, path: Path) -> np.ndarray:
    """The binarisation of two-valued masks (CUHK, SBU, MSD, DUTS): a mask whose values are all 0 or 1
    is taken as is; otherwise foreground is ``value >= 128`` for 8-bit files and ``value >= 32768``
    for 16-bit files (half the range: anti-aliased and soft edges go to the nearer side)."""
    if label.max(initial=0) <= 1:
        return label == 1
    if label.dtype == np.uint8:
        return label >= 128
    if label.dtype == np.uint16 or label.max() <= 65535:
        return label >= 32768
    raise ValueError(f"{path}: mask values up to {int(label.max())}; expected 8- or 16-bit masks")


def nonzero_mask(label: np.ndarray, path: Path) -> np.ndarray:
    """The generic rule (``folder`` task): every non-zero value is foreground."""
    return label != 0


def pair_folders(image_dir: Path, mask_dir: Path, mask_extensions: tuple[str, ...] = (".png",),
                 stems: list[str] | None = None) -> list[Pair]:
    """Pairs ``image_dir/<stem>.<image ext>`` with ``mask_dir/<stem>.<mask ext>``, sorted by stem.

    :param stems: only these stems (from a dataset list); default every image.
    :raises FileNotFoundError: naming a missing folder.
    :raises ValueError: naming the files without a partner (up to 10 of each side).
    """
    for folder, what in ((image_dir, "image"), (mask_dir, "mask")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: {what} folder not found")
    images = files_by_stem(image_dir, IMAGE_EXTENSIONS)
    masks = files_by_stem(mask_dir, mask_extensions)
    wanted = sorted(images) if stems is None else list(stems)
    no_mask = [str(images.get(s, image_dir / s)) for s in wanted if s not in masks]
    no_image = [s for s in wanted if s not in images]
    if stems is None:
        no_image = [str(masks[s]) for s in sorted(set(masks) - set(images))]
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} image(s) without a mask in {mask_dir}: {no_mask[:10]}")
        if no_image:
            parts.append(f"{len(no_image)} without an image in {image_dir}: {no_image[:10]}")
        raise ValueError("images and masks do not pair up; " + "; ".join(parts))
    if not wanted:
        raise ValueError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return [Pair(s, images[s], masks[s]) for s in wanted]


#: the splits every task has: ``train`` (the few-shot training subset), ``val`` (the rest of the training
#: images, for learning curves, early stopping and tuning) and ``test`` (touched only by the final benchmark)
SPLITS = ("train", "val", "test")


def check_split(split: str) -> None:
    """:raises ValueError: unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def stored_split(split: str) -> str:
    """The part of a dataset's distributed layout a split reads: ``val`` is cut from the training images."""
    check_split(split)
    return "test" if split == "test" else "train"


def few_shot_indices(count: int, num_images: int | None, seed: int) -> list[int]:
    """Sorted indices of a seeded subset of ``num_images`` of ``count`` items, drawn without replacement (all when
    None or at least ``count``): the one subset draw of the package (few-shot subsets, evaluation samples)."""
    if num_images is None or num_images >= count:
        return list(range(count))
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    return sorted(int(i) for i in np.random.default_rng(seed).choice(count, size=num_images, replace=False))


def few_shot(pairs: list, num_images: int | None, seed: int) -> list:
    """A seeded subset of ``num_images`` items (all when None or at least as many), in their order."""
    return [pairs[i] for i in few_shot_indices(len(pairs), num_images, seed)]


def split_items(items: list, split: str, num_images: int | None, seed: int,
                group: Callable[[Any], Any] | None = None) -> list:
    """A split of ``items``, the stored training images (``train``, ``val``) or the stored test images (``test``).

    ``train`` is the few-shot subset of ``num_images`` drawn with ``seed`` (:func:`few_shot`); ``val`` is every
    training item outside that subset, in order, so the same ``num_images`` and ``seed`` give disjoint
    splits; ``test`` is ``items`` whole.

    :param group: the photo an item shows, when several items share one (SBD's instances): ``val`` then also
        leaves out every item of a photo in ``train``.
    :raises ValueError: for ``val`` when the subset takes every training item (or photo).
    """
    check_split(split)
    if split == "test":
        return list(items)
    chosen = few_shot_indices(len(items), num_images, seed)
    if split == "train":
        return [items[i] for i in chosen]
    rest = sorted(set(range(len(items))) - set(chosen))
    if group is not None:
        seen = {group(items[i]) for i in chosen}
        rest = [i for i in rest if group(items[i]) not in seen]
    if not rest:
        raise ValueError(f"split 'val' holds the training images outside the few-shot subset, but num_images="
                         f"{num_images} takes all {len(items)} of them: pass a smaller num_images")
    return [items[i] for i in rest]


class PairedDataset(SegmentationDataset):
    """Images and masks from files.

    :param task: the task name this dataset serves.
    :param pairs: the files, in a stable order.
    :param binarize: how a label map becomes the task's mask (checks the values too).
    :param ignore: how a label map marks unlabelled pixels (None: every pixel is labelled).
    :param any_channel: colour masks are read as the maximum over their channels.
    """

    def __init__(self, task: str, pairs: list[Pair], binarize: Binarizer, ignore: IgnoreRule | None = None,
                 any_channel: bool = False) -> None:
        self.task, self.pairs, self.binarize = task, list(pairs), binarize
        self.ignore_rule, self.any_channel = ignore, any_channel

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def names(self) -> list[str]:
        """The sample names (file stems), for reports: which images a few-shot subset holds."""
        return [p.name for p in self.pairs]

    def __getitem__(self, index: int) -> Sample:
        pair = self.pairs[self._check_index(index)]
        image = read_image(pair.image)
        label = read_label_map(pair.mask, any_channel=self.any_channel)
        check_same_size(image, label, pair.image, pair.mask)
        ignore = None if self.ignore_rule is None else self.ignore_rule(label, pair.mask)
        return Sample(image=image, mask=self.binarize(label, pair.mask), name=pair.name, ignore=ignore)
