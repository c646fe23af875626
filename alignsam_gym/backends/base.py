"""The protocol every promptable segmenter implements.

Like SAM's ``SamPredictor`` (``set_image`` once, ``predict`` per prompt), a backend splits its
work into an expensive, cacheable :meth:`PromptableSegmenter.encode` of one image and a cheap
:meth:`PromptableSegmenter.decode` of a set of point prompts. The environment only ever talks to
this protocol, so a new backend slots in without touching the env.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ImageEmbedding:
    """What :meth:`PromptableSegmenter.encode` returns for one image.

    :param features: ``(C, h, w) float32`` image embedding, the ``E(x)`` the agent observes
        (masked by the previous mask). It covers the whole image.
    :param image_shape: ``(H, W)`` of the encoded image, in pixels; point prompts are given in
        this frame.
    :param mask_shape: ``(h_m, w_m)`` of the low-resolution logits that ``decode`` returns; they
        cover the whole image too.
    :param decoder_state: backend-private arrays the decoder needs (never observed by the agent).
    """

    features: np.ndarray
    image_shape: tuple[int, int]
    mask_shape: tuple[int, int]
    decoder_state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Memory held by this embedding, in bytes (used by the in-memory cache)."""
        return int(self.features.nbytes + sum(v.nbytes for v in self.decoder_state.values()))


class PromptableSegmenter(abc.ABC):
    """A frozen segmenter driven by point prompts.

    Subclasses load their models lazily (on the first ``encode``), so constructing one is cheap.
    """

    #: short registry name, e.g. ``"lite"`` or ``"sam"``
    name: str = ""

    @property
    @abc.abstractmethod
    def identity(self) -> str:
        """A string that changes whenever the embeddings would change (model, weights, preprocessing).

        Embedding caches key on it together with the image content.
        """

    @property
    @abc.abstractmethod
    def feature_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of :attr:`ImageEmbedding.features`, known without loading any model."""

    @abc.abstractmethod
    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """Encode one ``(H, W, 3) uint8`` RGB image (the expensive, once-per-image part)."""

    @abc.abstractmethod
    def decode(self, embedding: ImageEmbedding, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Segment from point prompts (the cheap, per-step part).

        :param embedding: the result of :meth:`encode` for the image.
        :param points: ``(N, 2) float`` prompt coordinates ``(x, y)`` in pixels of the encoded image.
        :param labels: ``(N,) int`` prompt labels, 1 = foreground, 0 = background.
        :return: ``embedding.mask_shape float32`` mask logits; ``sigmoid(logits)`` is the foreground
            probability and ``logits > 0`` the predicted mask.
        """

    def decode_batch(self, embeddings: list[ImageEmbedding], points: list[np.ndarray],
                     labels: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`decode` for many prompt sets at once (one per env of a vector env).

        The default decodes one after another; backends with a batched decoder (SAM) override it.
        Results equal ``[decode(e, p, l) for e, p, l in zip(embeddings, points, labels)]``.
        """
        if not len(embeddings) == len(points) == len(labels):
            raise ValueError(f"decode_batch needs as many prompt sets as embeddings, got {len(embeddings)} "
                             f"embeddings, {len(points)} point arrays and {len(labels)} label arrays")
        return [self.decode(e, p, l) for e, p, l in zip(embeddings, points, labels)]

    def decode_candidates(self, embedding: ImageEmbedding, points: np.ndarray, labels: np.ndarray,
                          candidate_points: np.ndarray, candidate_labels: np.ndarray) -> np.ndarray:
        """The masks of ``points`` plus one candidate prompt each (what a one-step lookahead compares).

        The default is one :meth:`decode_batch` call; a backend whose decoder can share the work of the common
        prompts (``lite``: one factorisation for all candidates) overrides it.

        :param points: ``(N, 2)`` the prompts every candidate adds to (``N`` may be 0), ``labels`` ``(N,)``.
        :param candidate_points: ``(K, 2)`` one candidate prompt per mask, ``candidate_labels`` ``(K,)``.
        :return: ``(K, *embedding.mask_shape) float32`` mask logits, equal to ``decode`` of each prompt set up to
            rounding.
        """
        points, labels = np.asarray(points).reshape(-1, 2), np.asarray(labels).reshape(-1)
        logits = self.decode_batch([embedding] * len(candidate_points),
                                   [np.concatenate([points, c[None]]) for c in np.asarray(candidate_points)],
                                   [np.concatenate([labels, [y]]) for y in np.asarray(candidate_labels)])
        return np.stack(logits) if logits else np.zeros((0, *embedding.mask_shape), np.float32)


def checkpoint_file(checkpoint: str | Path | None, env_var: str, missing: str, what: str) -> Path:
    """The weights file of a model: ``checkpoint``, else ``$env_var``; shared by every model that loads a file.

    :param missing: the message when neither is given (what to pass, where to find the file).
    :param what: the model's name in the not-found message, e.g. ``"SAM"``.
    :raises ValueError: with ``missing`` when no path is given; ``FileNotFoundError`` naming the path when no file
        is there.
    """
    checkpoint = checkpoint or os.environ.get(env_var)
    if not checkpoint:
        raise ValueError(missing)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} checkpoint not found: {path}")
    return path


def check_image(image: np.ndarray, min_side: int = 1) -> np.ndarray:
    """Validate an image for ``encode``; shared by every backend.

    :return: ``image`` as an ``(H, W, 3) uint8`` array.
    :raises ValueError: for another shape or dtype, or a side shorter than ``min_side`` pixels.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    if min(image.shape[:2]) < min_side:
        raise ValueError(f"image must be at least {min_side}x{min_side} pixels, got {image.shape[1]}x{image.shape[0]}")
    return image


def check_prompts(embedding: ImageEmbedding, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise point prompts; shared by every backend.

    :return: ``points`` as ``(N, 2) float64`` and ``labels`` as ``(N,) int64``.
    :raises ValueError: on wrong shapes, labels other than 0/1, or points outside the image.
    """
    pts = np.asarray(points, dtype=np.float64)
    lab = np.asarray(labels)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2) as (x, y) pixels, got {pts.shape}")
    if lab.shape != (pts.shape[0],):
        raise ValueError(f"labels must have shape ({pts.shape[0]},) to match points, got {lab.shape}")
    if pts.shape[0] == 0:
        raise ValueError("decode needs at least one point prompt")
    if not np.all(np.isin(lab, (0, 1))):
        raise ValueError(f"labels must be 0 (background) or 1 (foreground), got {np.unique(lab).tolist()}")
    h, w = embedding.image_shape
    if not np.all(np.isfinite(pts)) or np.any(pts < 0) or np.any(pts[:, 0] > w) or np.any(pts[:, 1] > h):
        raise ValueError(f"points must lie inside the {w}x{h} (width x height) image, got {pts.tolist()}")
    return pts, lab.astype(np.int64)
