"""Segmentation metrics as functions of numpy arrays."""

from __future__ import annotations

import numpy as np


def iou(pred: np.ndarray, target: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape: ``|P & G| / |P | G|``.

    Both empty counts as a perfect match (1.0).
    """
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    union = np.count_nonzero(pred | target)
    return 1.0 if union == 0 else float(np.count_nonzero(pred & target) / union)
