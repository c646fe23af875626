"""The standard interactive-segmentation sets, in the layouts their distributions use (as RITM and
SimpleClick read them). One object per item; ``data_root`` is the folder the set unpacks to.

==============  ====================================================================  ===========================
task            layout under ``data_root``                                            mask rule
==============  ====================================================================  ===========================
``grabcut``     ``data_GT/<name>.{jpg,JPG,bmp}`` + ``boundary_GT/<name>.bmp``          255 foreground, 0
                (50 images)                                                           background, 128 an
                                                                                      unlabelled band (ignored)
``berkeley``    ``images/<name>.<ext>`` + ``masks/<name>.<ext>`` (100 objects)        as GrabCut: above 128
                                                                                      foreground, 128 ignored
``davis``       ``img/NNN.jpg`` + ``gt/NNN.png`` (DAVIS-345)                          any non-zero channel
``coco-mval``   ``img/`` + ``gt/``, one object per image                              any non-zero channel
``sbd``         ``img/<id>.jpg`` + ``inst/<id>.mat`` (``GTinst.Segmentation``),       one item per instance id
                lists ``train.txt`` / ``val.txt``                                     (image, id); 255 ignored
==============  ====================================================================  ===========================

Splits: ``all`` is the whole set (the click benchmark's); the training images and ``test`` cut the sorted
items two thirds / one third (SBD: its ``train.txt`` / ``val.txt``); ``train`` is a few-shot subset of
``num_images`` training items drawn with ``seed``, ``val`` the other training items (SBD: of other photos than
``train``'s). Berkeley's objects and DAVIS's frames do not say which photo or video they come from, so
their ``val`` may share a photo (Berkeley: 100 objects on 96 images) or a video with ``train``. Bad files fail
as the other loaders' do, naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignsam_gym.data.base import Sample, SegmentationDataset
from alignsam_gym.data.ccp import train_test_cut
from alignsam_gym.data.io import check_values, read_image, safe_name
from alignsam_gym.data.paired import PairedDataset, pair_folders, split_items

BAND = 128
SBD_IGNORE = 255


def _band_mask(label: np.ndarray, path: Path) -> np.ndarray:
    """GrabCut/Berkeley: above 128 is foreground (255 as stored; 0 background, 128 the band)."""
    if label.max(initial=0) > 255:
        raise ValueError(f"{path}: mask values up to {int(label.max())}; expected 8-bit 0/128/255 masks")
    return label > BAND


def _band(label: np.ndarray, path: Path) -> np.ndarray:
    return label == BAND


def _strict_band_mask(label: np.ndarray, path: Path) -> np.ndarray:
    check_values(label, {0, BAND, 255}, path, "GrabCut masks hold 0 (background), 128 (unlabelled band), 255 (object)")
    return label == 255


def _any_nonzero(label: np.ndarray, path: Path) -> np.ndarray:
    return label != 0


def _split(pairs: list, split: str, num_images: int | None, seed: int) -> list:
    pairs = train_test_cut(pairs, split)
    return pairs if split == "all" else split_items(pairs, split, num_images, seed)


def grabcut(root: Path, split: str = "all", num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """GrabCut (Rother et al. 2004): 50 images, one object each, a 128-valued unlabelled band."""
    pairs = pair_folders(root / "data_GT", root / "boundary_GT", mask_extensions=(".bmp",))
    return PairedDataset("grabcut", _split(pairs, split, num_images, seed), _strict_band_mask, _band)


def berkeley(root: Path, split: str = "all", num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """Berkeley (McGuinness and O'Connor 2010): 100 objects on 96 images, masks as GrabCut's."""
    pairs = pair_folders(root / "images", root / "masks", mask_extensions=(".png", ".bmp", ".jpg"))
    return PairedDataset("berkeley", _split(pairs, split, num_images, seed), _band_mask, _band,
                         any_channel=True)


def davis(root: Path, split: str = "all", num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """DAVIS-345 (the interactive-segmentation cut of DAVIS 2017): masks may be 3-channel."""
    pairs = pair_folders(root / "img", root / "gt", mask_extensions=(".png",))
    return PairedDataset("davis", _split(pairs, split, num_images, seed), _any_nonzero, any_channel=True)


def coco_mval(root: Path, split: str = "all", num_images: int | None = 50, seed: int = 0) -> PairedDataset:
    """COCO MVal (800 objects from COCO val, one per image), in DAVIS's layout."""
    pairs = pair_folders(root / "img", root / "gt", mask_extensions=(".png",))
    return PairedDataset("coco-mval", _split(pairs, split, num_images, seed), _any_nonzero,
                         any_channel=True)


def read_sbd_instances(path: Path) -> np.ndarray:
    """The ``(H, W)`` instance map of an SBD ``inst/<id>.mat`` (``GTinst.Segmentation``).

    :raises ValueError: naming the file if it is not such a MATLAB file.
    """
    from scipy.io import loadmat

    try:
        gt = loadmat(str(path), squeeze_me=True, struct_as_record=False)["GTinst"]
        instances = np.asarray(gt.Segmentation)
    except Exception as err:  # a damaged file can fail anywhere in scipy's MATLAB reader
        raise ValueError(f"{path}: not an SBD instance file with GTinst.Segmentation ({type(err).__name__}: "
                         f"{err})") from err
    if instances.ndim != 2 or not np.issubdtype(instances.dtype, np.integer):
        raise ValueError(f"{path}: GTinst.Segmentation must be a 2-D integer map, got {instances.shape} "
                         f"{instances.dtype}")
    return instances


class SBDInstances(SegmentationDataset):
    """SBD (Hariharan et al. 2011) as interactive-segmentation items: one per (image, instance id).

    :param root: the folder holding ``img/``, ``inst/`` and the lists ``train.txt`` / ``val.txt``.
    :param split: ``"test"`` (``val.txt``, the benchmark's) or ``"all"`` (the same), or ``"train"`` / ``"val"``
        (``train.txt``).
    :param num_images: for ``train``, the size of the seeded subset of items; ``val`` is the other items.
    """

    task = "sbd"

    def __init__(self, root: str | Path, split: str = "test", num_images: int | None = None, seed: int = 0) -> None:
        self.root = Path(root)
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")
        listing = self.root / ("train.txt" if split in ("train", "val") else "val.txt")
        if not listing.is_file():
            raise FileNotFoundError(f"{listing}: the SBD list is missing")
        ids = [safe_name(self.root, line.strip(), "SBD image id") for line in listing.read_text().split()]
        items = []
        for image_id in ids:
            mat = self.root / "inst" / f"{image_id}.mat"
            if not mat.is_file():
                raise FileNotFoundError(f"{mat}: instance file of {image_id} (listed in {listing}) is missing")
            labels = np.unique(read_sbd_instances(mat))
            items += [(image_id, int(k)) for k in labels if k not in (0, SBD_IGNORE)]
        if split in ("train", "val"):
            items = split_items(items, split, num_images, seed, group=lambda item: item[0])  # val: other photos
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return [f"{image_id}#{k}" for image_id, k in self.items]

    def __getitem__(self, index: int) -> Sample:
        image_id, instance = self.items[self._check_index(index)]
        image_path = self.root / "img" / f"{image_id}.jpg"
        image = read_image(image_path)
        instances = read_sbd_instances(self.root / "inst" / f"{image_id}.mat")
        if instances.shape != image.shape[:2]:
            raise ValueError(f"{self.root / 'inst' / image_id}.mat: instance map is {instances.shape} but "
                             f"{image_path} is {image.shape[:2]}")
        ignore = instances == SBD_IGNORE
        return Sample(image=image, mask=instances == instance, name=f"{image_id}#{instance}",
                      ignore=ignore if ignore.any() else None)
