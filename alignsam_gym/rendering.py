"""Drawing of episode frames: the image with the predicted mask and prompts, the ground truth beside it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from alignsam_gym.data.synthetic import shape_polygon

MASK_COLOR = np.array([30, 144, 255], np.float32)  # predicted mask, blue
TRUTH_COLOR = np.array([255, 200, 0], np.float32)  # ground truth, amber
POSITIVE_COLOR = (0, 220, 0)
NEGATIVE_COLOR = (230, 0, 0)


def _overlay(image: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * color
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 2)
    return out


def render_frame(image: np.ndarray, pred_mask: np.ndarray, true_mask: np.ndarray, points: np.ndarray,
                 labels: np.ndarray, panel: int, caption: str = "") -> np.ndarray:
    """One ``(panel, 2 * panel, 3) uint8`` frame.

    :param image: ``(H, W, 3) uint8`` RGB.
    :param pred_mask: ``(h, w) bool`` predicted mask (any resolution; resized to the panel).
    :param true_mask: ``(h', w') bool`` ground truth (any resolution).
    :param points: ``(N, 2)`` prompts ``(x, y)`` in pixels of ``image``.
    :param labels: ``(N,)`` 1 = positive (green star), 0 = negative (red star).
    :param panel: side of each of the two square panels, in pixels.
    :param caption: text drawn on the left panel.
    """
    base = cv2.resize(image, (panel, panel), interpolation=cv2.INTER_AREA)
    pred = cv2.resize(pred_mask.astype(np.uint8), (panel, panel), interpolation=cv2.INTER_NEAREST) > 0
    truth = cv2.resize(true_mask.astype(np.uint8), (panel, panel), interpolation=cv2.INTER_NEAREST) > 0
    left, right = _overlay(base, pred, MASK_COLOR), _overlay(base, truth, TRUTH_COLOR)
    scale = np.array([panel / image.shape[1], panel / image.shape[0]])
    radius = max(4.0, panel / 45)
    for (x, y), label in zip(np.asarray(points, float).reshape(-1, 2) * scale, np.asarray(labels).reshape(-1)):
        star = shape_polygon("star", np.array([x, y]), radius, -np.pi / 2)
        cv2.fillPoly(left, [star], POSITIVE_COLOR if label else NEGATIVE_COLOR, cv2.LINE_AA)
        cv2.polylines(left, [star], True, (255, 255, 255), 1, cv2.LINE_AA)
    for text, img in ((caption, left), ("ground truth", right)):
        if text:
            cv2.putText(img, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(img, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([left, right], axis=1)


def save_episode_animation(frames: list[np.ndarray], gif_path: str | Path, strip_path: str | Path,
                           per_row: int = 8, frame_ms: int = 500) -> None:
    """Write an episode's rendered frames as a looping GIF and as a strip of half-size thumbnails.

    :param frames: ``(H, W, 3) uint8`` frames of one episode (``env.render()`` after the reset and every step).
    :param per_row: thumbnails per row of the strip.
    :param frame_ms: how long the GIF shows each frame, in milliseconds.
    """
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(gif_path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    panel = frames[0].shape[0]
    thumbs = [image.resize((panel, panel // 2)) for image in images]
    rows = (len(thumbs) + per_row - 1) // per_row
    strip = Image.new("RGB", (panel * min(per_row, len(thumbs)), (panel // 2) * rows))
    for k, thumb in enumerate(thumbs):
        strip.paste(thumb, ((k % per_row) * panel, (k // per_row) * (panel // 2)))
    strip.save(strip_path)
