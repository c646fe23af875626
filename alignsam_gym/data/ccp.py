"""Clothing Co-Parsing (CCP) in its distributed layout.

``root/images/NNNN.jpg`` photos, ``root/labels/NNNN.png`` single-channel label maps (value ``k`` is
the class on line ``k + 1`` of ``root/labels.txt``, 0 = ``null``). Binary tasks: ``person`` = every
non-zero label (implicit semantics), or one class name such as ``hair`` (explicit semantics). A
label value beyond the classes of ``labels.txt`` is an error naming the file.
Splits: the sorted stems are cut in two, the first two thirds for training and the rest ``test``; ``train``
is a subset of ``num_images`` of the training images drawn with ``seed``, ``val`` the other training images
(:func:`~alignsam_gym.data.paired.split_items`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignsam_gym.data.io import check_values
from alignsam_gym.data.paired import PairedDataset, pair_folders, split_items


def train_test_cut(pairs: list, split: str) -> list:
    """The first two thirds of ``pairs`` (the training images, ``train`` and ``val``), the rest (``test``), or all
    (``all``)."""
    cut = (2 * len(pairs)) // 3
    if split in ("train", "val"):
        return pairs[:cut]
    if split == "test":
        return pairs[cut:]
    if split == "all":
        return list(pairs)
    raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")


class CCPDataset(PairedDataset):
    """CCP images with a binary mask for ``target``.

    :param root: the folder holding ``images/``, ``labels/`` and ``labels.txt``.
    :param target: ``"person"`` or a class name from ``labels.txt``.
    :param split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
    :param num_images: for ``train``, the size of the seeded subset (None = every training image); ``val`` is
        the training images outside that subset.
    :param seed: seed of the subset draw.
    """

    def __init__(self, root: str | Path, target: str = "person", split: str = "all",
                 num_images: int | None = None, seed: int = 0) -> None:
        self.root = Path(root)
        for sub in ("images", "labels"):
            if not (self.root / sub).is_dir():
                raise FileNotFoundError(f"{self.root}: expected a CCP folder with images/ and labels/, "
                                        f"{sub}/ is missing")
        classes_file = self.root / "labels.txt"
        if not classes_file.is_file():
            raise FileNotFoundError(f"{classes_file}: the CCP class list is missing")
        self.classes = classes_file.read_text().split()
        if target != "person" and target not in self.classes[1:]:
            raise ValueError(f"unknown CCP class {target!r}; expected 'person' or one of {self.classes[1:]}")
        self.target = target
        self.class_id = None if target == "person" else self.classes.index(target)
        pairs = train_test_cut(pair_folders(self.root / "images", self.root / "labels"), split)
        if split in ("train", "val"):
            pairs = split_items(pairs, split, num_images, seed)
        super().__init__(f"ccp-{target}", pairs, self._binarize)

    @property
    def stems(self) -> list[str]:
        return self.names

    def _binarize(self, label: np.ndarray, path: Path) -> np.ndarray:
        check_values(label, range(len(self.classes)), path,
                     f"CCP labels index the {len(self.classes)} classes of {self.root / 'labels.txt'}")
        return label > 0 if self.class_id is None else label == self.class_id
