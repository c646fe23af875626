"""The colour guided filter against a plain per-window implementation of its definition (He et al. 2013)."""

from __future__ import annotations

import numpy as np
import pytest

from alignsam_gym.backends.guided_filter import guided_filter


def plain_guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """For every window: least squares ``src ~ a . guide + b`` with ridge ``eps`` on ``a``; then each
    pixel averages the ``(a, b)`` of the windows around it. Borders mirrored (``abcd|dcba``, OpenCV's
    BORDER_REFLECT), by explicit padding and loops."""
    h, w = src.shape
    size = 2 * radius + 1
    pad_i = np.pad(guide.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    pad_p = np.pad(src.astype(np.float64), radius, mode="symmetric")
    coef = np.zeros((h, w, 4))
    for y in range(h):
        for x in range(w):
            window_i = pad_i[y:y + size, x:x + size].reshape(-1, 3)
            window_p = pad_p[y:y + size, x:x + size].ravel()
            mean_i, mean_p = window_i.mean(0), window_p.mean()
            centred = window_i - mean_i
            sigma = centred.T @ centred / len(window_p) + eps * np.eye(3)
            a = np.linalg.solve(sigma, centred.T @ (window_p - mean_p) / len(window_p))
            coef[y, x, :3], coef[y, x, 3] = a, mean_p - a @ mean_i
    pad_c = np.pad(coef, ((radius, radius), (radius, radius), (0, 0)), mode="symmetric")
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            mean_c = pad_c[y:y + size, x:x + size].reshape(-1, 4).mean(0)
            out[y, x] = mean_c[:3] @ guide[y, x] + mean_c[3]
    return out


@pytest.mark.parametrize("seed, radius, eps", [(0, 1, 1e-2), (1, 2, 1e-3), (2, 3, 0.1)])
def test_matches_the_definition(seed, radius, eps):
    rng = np.random.default_rng(seed)
    guide = rng.random((13, 17, 3)).astype(np.float32)
    src = rng.random((13, 17)).astype(np.float32)
    np.testing.assert_allclose(guided_filter(guide, src, radius, eps), plain_guided_filter(guide, src, radius, eps),
                               atol=2e-4)


def test_edges_follow_the_guide():
    """A soft ramp under a sharp colour edge gets a sharp jump at that edge; a flat guide only smooths."""
    guide = np.zeros((40, 40, 3), np.float32)
    guide[:, 20:] = (0.9, 0.2, 0.1)
    ramp = np.clip((np.arange(40, dtype=np.float32) - 14) / 12, 0, 1)[None].repeat(40, 0)  # 1/12 per pixel
    for subsample in (1, 2):
        out = guided_filter(guide, ramp, radius=4, eps=1e-3, subsample=subsample)
        assert (out[:, 20] - out[:, 19]).min() > 0.3
        np.testing.assert_array_equal(out > 0.5, np.arange(40)[None].repeat(40, 0) >= 20)
    flat = guided_filter(np.full((40, 40, 3), 0.5, np.float32), ramp, radius=4, eps=1e-3)
    assert (flat[:, 20] - flat[:, 19]).max() < 0.1


def test_constant_source_is_kept():
    rng = np.random.default_rng(3)
    out = guided_filter(rng.random((20, 30, 3)).astype(np.float32), np.full((20, 30), 0.7, np.float32), 3, 1e-2, 2)
    np.testing.assert_allclose(out, 0.7, atol=1e-4)


@pytest.mark.parametrize("guide_shape, src_shape, radius, eps, subsample, message", [
    ((10, 10), (10, 10), 2, 0.01, 1, r"guide \(h, w, 3\)"),
    ((10, 10, 3), (10, 9), 2, 0.01, 1, r"guide \(h, w, 3\)"),
    ((10, 10, 3), (10, 10), 0, 0.01, 1, "radius >= 1"),
    ((10, 10, 3), (10, 10), 2, 0.0, 1, "eps > 0"),
    ((10, 10, 3), (10, 10), 2, 0.01, 0, "subsample >= 1"),
])
def test_bad_arguments(guide_shape, src_shape, radius, eps, subsample, message):
    with pytest.raises(ValueError, match=message):
        guided_filter(np.zeros(guide_shape, np.float32), np.zeros(src_shape, np.float32), radius, eps, subsample)
