"""Loaders for the paper's datasets in their distributed folder layouts, and the generic ``folder`` pairing.

``data_root`` is the folder the archive unpacks to. ``train`` is a few-shot subset of the training images drawn
with a seed, ``val`` the other training images (:func:`~alignsam_gym.data.paired.split_items`); ``test`` is
the official test set.

==============  ========================================================================  =========================
task            layout under ``data_root`` (train / test)                                 mask rule
==============  ========================================================================  =========================
``cuhk-blur``   ``image/out_of_focus*.jpg`` + ``gt/out_of_focus*.png``; no official        two-valued (binary_mask)
                split: sorted, the last 100 are ``test`` (as BTBNet, Zhao et al. 2018)
``sbu-shadow``  ``SBUTrain4KRecoveredSmall/{ShadowImages,ShadowMasks}`` /                 two-valued
                ``SBU-Test/{ShadowImages,ShadowMasks}``
``msd-mirror``  ``train/{image,mask}`` / ``test/{image,mask}``                            two-valued
``duts-sal...`` ``DUTS-TR/{DUTS-TR-Image,DUTS-TR-Mask}`` / ``DUTS-TE/{DUTS-TE-Image,      two-valued (soft edges
                DUTS-TE-Mask}``                                                           split at 128)
``voc-<class>`` ``[VOCdevkit/VOC2012/]{JPEGImages,SegmentationClass}`` with the lists      label == class index;
                ``ImageSets/Segmentation/train.txt`` / ``val.txt``; only images            255 (border) counts as
                that contain the class                                                    background
``folder``      ``images/<stem>.<ext>`` + ``masks/<stem>.png``, or ``train/`` and          non-zero = foreground
                ``test/`` folders each holding both; without them the sorted stems
                are cut 2/3 train, 1/3 test
==============  ========================================================================  =========================

Masks must have their image's size; any other size is an error naming both files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignsam_gym.data.ccp import train_test_cut
from alignsam_gym.data.io import check_values, read_label_map, safe_name
from alignsam_gym.data.paired import Pair, PairedDataset, binary_mask, nonzero_mask, pair_folders, split_items, stored_split

#: Pascal VOC 2012 classes; the index is the label value
VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
VOC_IGNORE = 255
CUHK_TEST_IMAGES = 100


def _finish(task: str, pairs: list[Pair], split: str, num_images: int | None, seed: int,
            binarize=binary_mask) -> PairedDataset:
    return PairedDataset(task, split_items(pairs, split, num_images, seed), binarize)


def cuhk_blur(root: Path, split: str, num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """CUHK defocus blur detection (Shi et al. 2014): the ``out_of_focus`` images."""
    stored = stored_split(split)
    pairs = [p for p in pair_folders(root / "image", root / "gt") if p.name.startswith("out_of_focus")]
    if len(pairs) <= CUHK_TEST_IMAGES:
        raise ValueError(f"{root / 'image'}: expected more than {CUHK_TEST_IMAGES} out_of_focus*.jpg images, "
                         f"found {len(pairs)}")
    pairs = pairs[-CUHK_TEST_IMAGES:] if stored == "test" else pairs[:-CUHK_TEST_IMAGES]
    return _finish("cuhk-blur", pairs, split, num_images, seed)


def sbu_shadow(root: Path, split: str, num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """SBU shadow detection (Vicente et al. 2016)."""
    stored = stored_split(split)
    base = root / ("SBUTrain4KRecoveredSmall" if stored == "train" else "SBU-Test")
    return _finish("sbu-shadow", pair_folders(base / "ShadowImages", base / "ShadowMasks"), split, num_images, seed)


def msd_mirror(root: Path, split: str, num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """MSD mirror segmentation (Yang et al. 2019)."""
    stored = stored_split(split)
    return _finish("msd-mirror", pair_folders(root / stored / "image", root / stored / "mask"), split, num_images, seed)


def duts_saliency(root: Path, split: str, num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """DUTS salient object detection (Wang et al. 2017): DUTS-TR for training, DUTS-TE for testing."""
    stored = stored_split(split)
    part = "DUTS-TR" if stored == "train" else "DUTS-TE"
    return _finish("duts-saliency", pair_folders(root / part / f"{part}-Image", root / part / f"{part}-Mask"),
                   split, num_images, seed)


def voc_root(root: Path) -> Path:
    """The folder holding ``JPEGImages``: ``root`` itself or ``root/VOCdevkit/VOC2012``."""
    for candidate in (root, root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise FileNotFoundError(f"{root}: no JPEGImages/ here or under VOCdevkit/VOC2012/; expected Pascal VOC 2012")


def voc_class(root: Path, target: str, split: str, num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """Pascal VOC 2012 segmentation, one binary task per class: images of ``train.txt`` (train) or
    ``val.txt`` (test) that contain the class."""
    stored = stored_split(split)
    if target not in VOC_CLASSES[1:]:
        raise ValueError(f"unknown VOC class {target!r}; expected one of {list(VOC_CLASSES[1:])}")
    index = VOC_CLASSES.index(target)
    base = voc_root(root)
    listing = base / "ImageSets" / "Segmentation" / ("train.txt" if stored == "train" else "val.txt")
    if not listing.is_file():
        raise FileNotFoundError(f"{listing}: the VOC segmentation list is missing")
    stems = [safe_name(base, line, str(listing)) for line in listing.read_text().splitlines() if line.strip()]
    pairs = pair_folders(base / "JPEGImages", base / "SegmentationClass", stems=stems)
    pairs = [p for p in pairs if index in np.unique(read_label_map(p.mask))]
    if not pairs:
        raise ValueError(f"{listing}: no image of this split contains the class {target!r}")

    def binarize(label: np.ndarray, path: Path) -> np.ndarray:
        check_values(label, set(range(len(VOC_CLASSES))) | {VOC_IGNORE}, path,
                     f"VOC labels are class indices 0-{len(VOC_CLASSES) - 1} and {VOC_IGNORE} (border)")
        return label == index

    return _finish(f"voc-{target}", pairs, split, num_images, seed, binarize)


def folder(root: Path, split: str, num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """The generic pairing (see the module docstring)."""
    stored = stored_split(split)
    if (root / "train").is_dir() and (root / "test").is_dir():
        pairs = pair_folders(root / stored / "images", root / stored / "masks")
    else:
        pairs = train_test_cut(pair_folders(root / "images", root / "masks"), stored)
        if not pairs:
            raise ValueError(f"{root}: too few images for a train/test cut")
    return _finish("folder", pairs, split, num_images, seed, nonzero_mask)
