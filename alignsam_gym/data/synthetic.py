"""The embedded task suite: procedurally generated images with exact masks, no files.

One task per paper task, each a finite dataset like the paper's few-shot setting: image ``i`` of a
split is drawn from its own generator seeded by ``(task, split, i)``, so the same index always gives
the same 512x512 image, and the ``train``, ``val`` and ``test`` splits never share a seed (``val``: images of
the training distribution for learning curves and tuning, drawn from seeds of their own). In every task the target
is defined by a cue in the pixels (sharpness, darkening, reflection, distinctness, shape), never by
position alone, so an agent can only learn it by looking:

- ``blur``: a sharp object on a defocus-blurred background; the target is the blurred region
  (the paper's text prompt is "defocus background").
- ``shadow``: textured surfaces with a soft cast shadow that darkens and tints the texture; dark but
  untextured painted patches are distractors; the target is the shadow.
- ``mirror``: a framed or frameless mirror showing a flipped, tinted copy of another part of the
  scene; the target is the mirror surface.
- ``saliency``: one saturated, smooth object on desaturated clutter; the target is the object.
- ``shapes``: filled shapes of five classes in random colours; the target is every triangle.
"""

from __future__ import annotations

import zlib
from typing import Callable

import cv2
import numpy as np

from alignsam_gym.data.base import Sample, SegmentationDataset

#: side of every synthetic image, in pixels
IMAGE_SIZE = 512
#: the splits; the position is part of each image's seed (``val`` came last, so train and test kept theirs)
SPLITS = ("train", "test", "val")
SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross")
TARGET_SHAPE = "triangle"


def _hsv_color(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    """One RGB colour in [0, 1] with saturation and value drawn from the given ranges."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _clutter(rng: np.random.Generator, size: int, sat: tuple[float, float] = (0.1, 0.8),
             val: tuple[float, float] = (0.25, 0.95), n_shapes: tuple[int, int] = (40, 80),
             polygons: bool = True) -> np.ndarray:
    """A busy textured scene, ``(size, size, 3) float32`` in [0, 1], with fine detail everywhere.

    ``polygons=False`` leaves out random polygons (they could look like the shapes task's targets).
    """
    c0, c1 = _hsv_color(rng, sat, val), _hsv_color(rng, sat, val)
    ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    img = np.ascontiguousarray(np.broadcast_to(c0 * (1 - ramp) + c1 * ramp, (size, size, 3)))
    for _ in range(int(rng.integers(*n_shapes))):
        color = tuple(float(v) for v in _hsv_color(rng, sat, val))
        kind = rng.integers(4 if polygons else 3)
        cx, cy = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 40, size // 7))
        if kind == 0:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r // 2), color, -1)
        elif kind == 1:
            cv2.ellipse(img, (cx, cy), (r, int(r * rng.uniform(0.3, 1))), float(rng.uniform(0, 180)), 0, 360, color, -1)
        elif kind == 2:
            x2, y2 = (int(v) for v in rng.integers(0, size, 2))
            cv2.line(img, (cx, cy), (x2, y2), color, int(rng.integers(1, 5)), cv2.LINE_AA)
        else:
            pts = np.stack([cx + rng.integers(-r, r, 5), cy + rng.integers(-r, r, 5)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], color)
    # Fine stripes and grain, so sharpness is visible everywhere.
    for _ in range(int(rng.integers(3, 7))):
        x, y = (int(v) for v in rng.integers(0, size - size // 8, 2))
        w, h = (int(v) for v in rng.integers(size // 16, size // 5, 2))
        period = int(rng.integers(3, 7))
        stripes = ((np.arange(w) // period) % 2).astype(np.float32)[None, :, None]
        img[y:y + h, x:x + w] *= 0.75 + 0.25 * stripes[:, : img[y:y + h, x:x + w].shape[1]]
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def _blob(rng: np.random.Generator, size: int, area: tuple[float, float]) -> np.ndarray:
    """A smooth star-convex blob, ``(size, size) bool``, covering a fraction of the image in ``area``."""
    for _ in range(50):
        frac = rng.uniform(*area)
        radius = np.sqrt(frac * size * size / np.pi)
        centre = rng.uniform(radius * 0.5, size - radius * 0.5, 2)
        theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        wobble = sum(rng.uniform(0, 0.25 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in range(2, 6))
        r = radius * (1 + wobble)
        pts = np.stack([centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta)], 1)
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        got = mask.mean()
        if area[0] <= got <= area[1]:
            return mask.astype(bool)
    raise RuntimeError(f"could not draw a blob with area in {area}")


def shape_polygon(kind: str, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Vertices ``(K, 2) int32`` of one filled shape of class ``kind``."""
    if kind == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        r = np.full_like(t, radius)
    elif kind == "square":
        t = np.arange(4) * np.pi / 2 + np.pi / 4
        r = np.full(4, radius)
    elif kind == "triangle":
        t = np.arange(3) * 2 * np.pi / 3
        r = np.full(3, radius * 1.15)
    elif kind == "star":
        t = np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, radius * 1.15, radius * 0.45)
    elif kind == "cross":
        a, b = radius, radius * 0.35
        xy = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b],
                       [-a, -b], [-b, -b]])
        t = np.arctan2(xy[:, 1], xy[:, 0])
        r = np.hypot(xy[:, 0], xy[:, 1])
    else:
        raise ValueError(f"unknown shape class {kind!r}; expected one of {SHAPE_CLASSES}")
    t = t + angle
    return np.round(np.stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)], 1)).astype(np.int32)


def generate_blur(rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    scene = _clutter(rng, size)
    sharp = _blob(rng, size, (0.45, 0.72))
    blurred = cv2.GaussianBlur(scene, (0, 0), rng.uniform(3.0, 6.0))
    alpha = cv2.GaussianBlur(sharp.astype(np.float32), (0, 0), 1.5)[..., None]
    return alpha * scene + (1 - alpha) * blurred, ~sharp


def generate_shadow(rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    scene = _clutter(rng, size, val=(0.45, 1.0))
    for _ in range(int(rng.integers(1, 4))):  # dark, flat, untextured distractors
        patch = _blob(rng, size, (0.02, 0.08))
        scene[patch] = _hsv_color(rng, (0.0, 0.5), (0.05, 0.25))
    shadow = _blob(rng, size, (0.15, 0.4)).astype(np.float32)
    soft = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(2.0, 6.0))
    darkness = rng.uniform(0.3, 0.5)
    factor = np.array([darkness, darkness, min(1.0, darkness * rng.uniform(1.05, 1.3))], np.float32)
    img = scene * (1 - soft[..., None] * (1 - factor))
    return img, soft > 0.5


def generate_mirror(rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    scene = _clutter(rng, size)
    frac = rng.uniform(0.12, 0.35)
    aspect = rng.uniform(0.6, 1.6)
    h = int(np.clip(np.sqrt(frac * size * size / aspect), 32, size - 24))
    w = int(np.clip(frac * size * size / h, 32, size - 24))
    y, x = int(rng.integers(12, size - h - 11)), int(rng.integers(12, size - w - 11))
    sy, sx = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    reflection = scene[sy:sy + h, sx:sx + w][:, ::-1].copy()
    if rng.random() < 0.2:
        reflection = reflection[::-1]
    tint = 1.0 + rng.uniform(-0.1, 0.1, 3).astype(np.float32)
    reflection = cv2.GaussianBlur(reflection, (0, 0), 0.8) * rng.uniform(0.75, 0.9) * tint
    region = np.zeros((size, size), np.uint8)
    if rng.random() < 0.6:
        cv2.rectangle(region, (x, y), (x + w - 1, y + h - 1), 1, -1)
    else:
        cv2.ellipse(region, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, 1, -1)
    if rng.random() < 0.5:  # a frame around the glass, outside the target
        frame = cv2.dilate(region, np.ones((3, 3), np.uint8), iterations=int(rng.integers(3, 8))) & ~region
        scene[frame.astype(bool)] = _hsv_color(rng, (0.0, 0.6), (0.1, 0.9))
    mask = region.astype(bool)
    window = scene[y:y + h, x:x + w]
    window[mask[y:y + h, x:x + w]] = np.clip(reflection, 0, 1)[mask[y:y + h, x:x + w]]
    return scene, mask


def generate_saliency(rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    scene = _clutter(rng, size, sat=(0.0, 0.25), n_shapes=(60, 120))
    obj = _blob(rng, size, (0.06, 0.3))
    color = _hsv_color(rng, (0.75, 1.0), (0.6, 1.0))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    direction = rng.uniform(-1, 1, 2)
    shading = 0.8 + 0.2 * np.tanh(direction[0] * (xx - 0.5) * 4 + direction[1] * (yy - 0.5) * 4)
    fill = color * shading[..., None] + rng.normal(0, 0.02, (size, size, 3)).astype(np.float32)
    scene[obj] = fill[obj]
    return scene, obj


def generate_shapes(rng: np.random.Generator, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    scene = 0.5 * _clutter(rng, size, sat=(0.0, 0.3), n_shapes=(10, 20), polygons=False) + 0.25
    others = [c for c in SHAPE_CLASSES if c != TARGET_SHAPE]
    kinds = [TARGET_SHAPE] * int(rng.integers(1, 4)) + [others[i] for i in rng.integers(0, len(others), rng.integers(2, 5))]
    mask = np.zeros((size, size), np.uint8)
    placed: list[tuple[np.ndarray, float]] = []
    for kind in kinds:
        for _ in range(100):
            radius = float(rng.uniform(size * 0.08, size * 0.16))
            centre = rng.uniform(radius * 1.2, size - radius * 1.2, 2)
            if all(np.hypot(*(centre - c)) > (radius + r) * 1.2 for c, r in placed):
                break
        else:
            continue
        placed.append((centre, radius))
        poly = shape_polygon(kind, centre, radius, float(rng.uniform(0, 2 * np.pi)))
        cv2.fillPoly(scene, [poly], tuple(float(v) for v in _hsv_color(rng, (0.5, 1.0), (0.4, 1.0))), cv2.LINE_AA)
        if kind == TARGET_SHAPE:
            cv2.fillPoly(mask, [poly], 1)
    return scene, mask.astype(bool)


GENERATORS: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]] = {
    "blur": generate_blur,
    "shadow": generate_shadow,
    "mirror": generate_mirror,
    "saliency": generate_saliency,
    "shapes": generate_shapes,
}


class SyntheticDataset(SegmentationDataset):
    """``num_images`` generated images of one synthetic task and split, each made on first access.

    :param kind: one of :data:`GENERATORS` (``"blur"``, ``"shadow"``, ...).
    :param split: ``"train"``, ``"val"`` or ``"test"``; their seeds are disjoint.
    :param num_images: number of images in the split.
    :param seed: dataset seed (0 is the published suite); another value gives another suite.
    """

    def __init__(self, kind: str, split: str = "train", num_images: int = 50, seed: int = 0) -> None:
        if kind not in GENERATORS:
            raise ValueError(f"unknown synthetic task kind {kind!r}; expected one of {sorted(GENERATORS)}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if num_images < 1:
            raise ValueError(f"num_images must be at least 1, got {num_images}")
        self.kind, self.split, self.num_images, self.seed = kind, split, int(num_images), int(seed)
        self.task = f"synthetic-{kind}"
        self._samples: dict[int, Sample] = {}

    @property
    def names(self) -> list[str]:
        """The sample names, without generating the images."""
        return [f"{self.task}/{self.split}/{index:04d}" for index in range(len(self))]

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        if index not in self._samples:
            entropy = [zlib.crc32(self.kind.encode()), SPLITS.index(self.split), index, self.seed]
            rng = np.random.default_rng(np.random.SeedSequence(entropy))
            image, mask = GENERATORS[self.kind](rng, IMAGE_SIZE)
            self._samples[index] = Sample(image=np.round(np.clip(image, 0, 1) * 255).astype(np.uint8),
                                          mask=np.asarray(mask, bool), name=f"{self.task}/{self.split}/{index:04d}")
        return self._samples[index]
