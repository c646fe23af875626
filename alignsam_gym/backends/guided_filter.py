"""The colour guided filter (He, Sun and Tang, ECCV 2010 / TPAMI 2013), the pixel-level last step of the
embedded decoder.

The superpixel decoder gives a probability that is constant on each superpixel, so its edges can only
follow superpixel boundaries. The guided filter fits, in every ``(2r+1)^2`` window, the probability as an
affine function of the RGB guide image, ``q = a . I + b`` (ridge ``eps`` on ``a``), and averages the
coefficients of the windows that cover a pixel: edges of the output follow the image's colour edges at
pixel level, and flat regions are left as they were. The coefficients may be fitted on a subsampled copy
and upsampled bilinearly ("fast guided filter", He and Sun 2015): the cost falls with the square of the
factor, the output stays at full resolution.

Every step is a box filter or a per-pixel closed form (the 3x3 covariance is inverted by its adjugate),
so one call costs O(pixels) whatever the radius: about 2 ms for a 256x256 guide with ``subsample=2``
on one core.
"""

from __future__ import annotations

import cv2
import numpy as np


def _mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the ``(2r+1)^2`` window around each pixel (windows are mirrored at the border)."""
    return cv2.boxFilter(x, -1, (2 * radius + 1, 2 * radius + 1), normalize=True, borderType=cv2.BORDER_REFLECT)


def _coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> list[np.ndarray]:
    """Window-averaged ``(a_r, a_g, a_b, b)``, each ``(h, w) float32``."""
    channels = [np.ascontiguousarray(guide[..., c]) for c in range(3)]
    mean_i = [_mean(c, radius) for c in channels]
    mean_p = _mean(src, radius)
    # the symmetric covariance of the guide in each window, plus eps on the diagonal
    s00 = _mean(channels[0] * channels[0], radius) - mean_i[0] * mean_i[0] + eps
    s01 = _mean(channels[0] * channels[1], radius) - mean_i[0] * mean_i[1]
    s02 = _mean(channels[0] * channels[2], radius) - mean_i[0] * mean_i[2]
    s11 = _mean(channels[1] * channels[1], radius) - mean_i[1] * mean_i[1] + eps
    s12 = _mean(channels[1] * channels[2], radius) - mean_i[1] * mean_i[2]
    s22 = _mean(channels[2] * channels[2], radius) - mean_i[2] * mean_i[2] + eps
    # its adjugate (symmetric) and determinant
    c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
    c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
    det = s00 * c00 + s01 * c01 + s02 * c02
    cov = [_mean(channels[c] * src, radius) - mean_i[c] * mean_p for c in range(3)]
    a0 = (c00 * cov[0] + c01 * cov[1] + c02 * cov[2]) / det
    a1 = (c01 * cov[0] + c11 * cov[1] + c12 * cov[2]) / det
    a2 = (c02 * cov[0] + c12 * cov[1] + c22 * cov[2]) / det
    b = mean_p - a0 * mean_i[0] - a1 * mean_i[1] - a2 * mean_i[2]
    return [_mean(a0, radius), _mean(a1, radius), _mean(a2, radius), _mean(b, radius)]


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int = 1) -> np.ndarray:
    """Filter ``src`` guided by the colours of ``guide``.

    :param guide: ``(h, w, 3) float32`` RGB in [0, 1].
    :param src: ``(h, w) float32``, the map to filter (here a foreground probability).
    :param radius: window radius ``r`` in pixels of ``guide`` (the window is ``2r+1`` wide); at least 1.
    :param eps: ridge on the per-window colour regression, in squared [0, 1] colour units: edges with a
        colour variance well above ``eps`` are kept, flatter windows are smoothed.
    :param subsample: fit the coefficients on a copy ``subsample`` times smaller (radius divided by it,
        at least 1), then upsample them; 1 fits at full resolution.
    :return: ``(h, w) float32``.
    :raises ValueError: for mismatched shapes or a radius, eps or subsample out of range.
    """
    if guide.ndim != 3 or guide.shape[2] != 3 or src.shape != guide.shape[:2]:
        raise ValueError(f"guided_filter needs guide (h, w, 3) and src (h, w), got {guide.shape} and {src.shape}")
    if radius < 1 or eps <= 0 or subsample < 1:
        raise ValueError(f"guided_filter needs radius >= 1, eps > 0 and subsample >= 1, "
                         f"got {radius}, {eps}, {subsample}")
    guide = guide.astype(np.float32, copy=False)
    src = src.astype(np.float32, copy=False)
    h, w = src.shape
    if subsample == 1 or min(h, w) < 2 * subsample:
        a0, a1, a2, b = _coefficients(guide, src, radius, eps)
    else:
        small = (max(1, w // subsample), max(1, h // subsample))
        coefficients = _coefficients(cv2.resize(guide, small, interpolation=cv2.INTER_AREA),
                                     cv2.resize(src, small, interpolation=cv2.INTER_AREA),
                                     max(1, radius // subsample), eps)
        a0, a1, a2, b = (cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR) for c in coefficients)
    return a0 * guide[..., 0] + a1 * guide[..., 1] + a2 * guide[..., 2] + b
