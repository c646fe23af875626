"""The standard clicker of interactive segmentation (Xu et al. 2016; RITM, SimpleClick): where a simulated user
clicks next, given the prediction and the ground truth.

- the false-negative map (foreground the prediction misses) and the false-positive map (false alarm),
  labelled pixels only, each padded by one pixel of "not this region" and Euclidean-distance transformed
  (the distance of every pixel to the nearest pixel outside its region, exact);
- pixels excluded before (clicked before) get distance 0;
- the click is positive when the largest false-negative distance exceeds the largest false-positive
  distance (ties: negative), placed at that maximum (the first in row-major order).

``policies.benchmarks.clicks`` runs this protocol on the standard sets; :func:`alignsam_gym.heuristics.choose`
uses it as the ``clicker`` expert on the env's grid.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt


def distance_inside(region: np.ndarray) -> np.ndarray:
    """``(H, W) float64``: the exact Euclidean distance of each pixel of the ``(H, W) bool`` ``region`` to the
    nearest pixel outside it, the image border counting as outside (the one-pixel padding); 0 outside the
    region."""
    padded = np.pad(region, 1, constant_values=False)
    return distance_transform_edt(padded)[1:-1, 1:-1]


def standard_click(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None,
                   excluded: np.ndarray) -> tuple[int, int, bool]:
    """The protocol's next click ``(row, col, positive)`` for a ``(H, W) bool`` prediction.

    :param truth: ``(H, W) bool`` ground truth.
    :param ignore: ``(H, W) bool`` unlabelled pixels (never an error), or None.
    :param excluded: ``(H, W) bool``, pixels never clicked (those clicked before).
    """
    labelled = np.ones_like(truth) if ignore is None else ~ignore
    fn = distance_inside(truth & ~pred & labelled)
    fp = distance_inside(~truth & pred & labelled)
    fn[excluded] = 0
    fp[excluded] = 0
    positive = bool(fn.max() > fp.max())
    row, col = np.unravel_index(int(np.argmax(fn if positive else fp)), truth.shape)
    return int(row), int(col), positive
