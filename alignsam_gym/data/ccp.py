"""Clothing Co-Parsing (CCP) in its distributed layout.

``root/images/NNNN.jpg`` photos, ``root/labels/NNNN.png`` single-channel label maps (value ``k`` is
the class on line ``k + 1`` of ``root/labels.txt``, 0 = ``null``). Binary tasks: ``person`` = every
non-zero label (implicit semantics), or one class name such as ``hair`` (explicit semantics).
Splits: the sorted stems are cut in two, the first two thirds ``train`` and the rest ``test``; a
training subset of ``num_images`` is drawn from ``train`` with ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from alignsam_gym.data.base import Sample, SegmentationDataset


def read_rgb(path: Path) -> np.ndarray:
    """An image file as ``(H, W, 3) uint8`` RGB; raises ValueError naming the file if it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CCPDataset(SegmentationDataset):
    """CCP images with a binary mask for ``target``.

    :param root: the folder holding ``images/``, ``labels/`` and ``labels.txt``.
    :param target: ``"person"`` or a class name from ``labels.txt``.
    :param split: ``"train"``, ``"test"`` or ``"all"``.
    :param num_images: for ``train``, the size of the seeded subset (None = every training image).
    :param seed: seed of the subset draw.
    """

    def __init__(self, root: str | Path, target: str = "person", split: str = "all",
                 num_images: int | None = None, seed: int = 0) -> None:
        self.root = Path(root)
        for sub in ("images", "labels"):
            if not (self.root / sub).is_dir():
                raise FileNotFoundError(f"{self.root}: expected a CCP folder with images/ and labels/, "
                                        f"{sub}/ is missing")
        classes = (self.root / "labels.txt").read_text().split()
        if target != "person" and target not in classes[1:]:
            raise ValueError(f"unknown CCP class {target!r}; expected 'person' or one of {classes[1:]}")
        self.target, self.task = target, f"ccp-{target}"
        self.class_id = None if target == "person" else classes.index(target)
        images = {p.stem: p for p in (self.root / "images").glob("*.jpg")}
        labels = {p.stem: p for p in (self.root / "labels").glob("*.png")}
        unpaired = sorted(set(images) ^ set(labels))
        if unpaired:
            raise ValueError(f"{self.root}: images and labels do not pair up; unpaired stems: {unpaired[:10]}")
        stems = sorted(images)
        cut = (2 * len(stems)) // 3
        if split == "train":
            stems = stems[:cut]
            if num_images is not None and num_images < len(stems):
                pick = np.random.default_rng(seed).choice(len(stems), size=num_images, replace=False)
                stems = [stems[i] for i in sorted(pick)]
        elif split == "test":
            stems = stems[cut:]
        elif split != "all":
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        self.stems = stems

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int) -> Sample:
        stem = self.stems[self._check_index(index)]
        image = read_rgb(self.root / "images" / f"{stem}.jpg")
        label_path = self.root / "labels" / f"{stem}.png"
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if label is None or label.ndim != 2:
            raise ValueError(f"{label_path}: expected a single-channel label map")
        if label.shape != image.shape[:2]:
            raise ValueError(f"{label_path}: label map is {label.shape[::-1]} (w x h), image is {image.shape[1::-1]}")
        mask = label > 0 if self.class_id is None else label == self.class_id
        return Sample(image=image, mask=mask, name=stem)
