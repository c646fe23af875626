"""The standard oracle-click protocol of interactive segmentation.

Each new click goes to the centre (the point farthest from the region's edge) of the largest error
region of the current prediction: positive on a missed foreground region, negative on a false
alarm. Starting from an empty prediction, the first click is the centre of the largest foreground
component. This is the protocol of Xu et al. 2016 and RITM (Sofiiuk et al. 2022), without their
click-count limits.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from scipy import ndimage

from alignsam_gym.metrics import iou

#: ``(points (N, 2) xy, labels (N,)) -> predicted mask (H, W) bool``
Segmenter = Callable[[np.ndarray, np.ndarray], np.ndarray]


def next_click(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int] | None:
    """The oracle's next click ``((x, y) pixel centre, label)``, or None if the prediction is perfect."""
    best: tuple[int, np.ndarray, int] | None = None
    for errors, label in ((truth & ~pred, 1), (pred & ~truth, 0)):
        components, count = ndimage.label(errors)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        largest = int(sizes.argmax())
        if best is None or sizes[largest] > best[0]:
            best = (int(sizes[largest]), components == largest + 1, label)
    if best is None:
        return None
    region = np.pad(best[1], 1).astype(np.uint8)
    distance = cv2.distanceTransform(region, cv2.DIST_L2, 5)[1:-1, 1:-1]
    row, col = np.unravel_index(int(distance.argmax()), distance.shape)
    return np.array([col + 0.5, row + 0.5]), best[2]


def run_clicks(segment: Segmenter, truth: np.ndarray, num_clicks: int) -> list[float]:
    """IoU after each of ``num_clicks`` oracle clicks (a perfect mask keeps its IoU of 1.0)."""
    pred = np.zeros_like(truth, dtype=bool)
    points: list[np.ndarray] = []
    labels: list[int] = []
    ious = []
    for _ in range(num_clicks):
        click = next_click(pred, truth)
        if click is not None:
            points.append(click[0])
            labels.append(click[1])
            pred = segment(np.array(points), np.array(labels))
        ious.append(iou(pred, truth))
    return ious
