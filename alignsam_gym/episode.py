"""The episode value: one image, its embedding, the prompts so far and the mask they produced.

An :class:`Episode` is what an AlignSAM env is in the middle of: everything else the env holds
(backend, labeler, spaces) is fixed for its lifetime. The mask probability, the IoU and the state
``s_t`` follow from the current mask logits and are computed once per decode, on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from scipy.special import expit

from alignsam_gym.backends.base import ImageEmbedding
from alignsam_gym.metrics import iou
from alignsam_gym.observation import masked_state


@dataclass
class Episode:
    """One episode of ``AlignSAM-v0``.

    :param image_index: the image's index in the split.
    :param image: ``(S, S, 3) uint8`` the image resized to ``image_size`` (read-only).
    :param mask: ``(S, S) bool`` its ground truth (read-only).
    :param embedding: the backend's encoding of ``image``; ``features`` is ``E(x)``, ``(C, h, w) float32``.
    :param max_prompts: the agent's prompt budget T.
    :param num_actions: ``grid_size**2`` (+ 1 with the stop action, which is never marked prompted).
    :param clip_map: ``(h_c, w_c) float32`` CLIP-Surgery map of the task's text prompt, or None.
    :param embedding_key: ``(16,) uint8`` key of ``E(x)`` for compact observations, or None.
    :param ignore: ``(S, S) bool`` unlabelled pixels of the ground truth (GrabCut's band), or None; the IoU
        counts only labelled pixels.
    """

    image_index: int
    image: np.ndarray
    mask: np.ndarray
    embedding: ImageEmbedding
    max_prompts: int
    num_actions: int
    clip_map: np.ndarray | None = None
    embedding_key: np.ndarray | None = None
    ignore: np.ndarray | None = None
    #: prompts so far, initial ones first: ``(x, y)`` pixels and labels (1 foreground, 0 background)
    points: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    #: ``(num_actions,) bool``: cells the agent prompted this episode
    prompted: np.ndarray = field(init=False)
    #: the agent's prompts so far (initial points not counted)
    num_prompts: int = 0
    #: whether the agent ended the episode with the stop action (the env's ``stop_action`` option)
    stopped: bool = False
    logits: np.ndarray | None = None
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.prompted = np.zeros(self.num_actions, dtype=bool)

    # -- what changes during the episode --------------------------------------------------------------
    def add_initial_prompt(self, point: np.ndarray, label: int) -> None:
        """A prompt the episode starts with (not the agent's)."""
        self.points.append(point)
        self.labels.append(int(label))

    def add_prompt(self, action: int, point: np.ndarray, label: int) -> None:
        """The agent's prompt at cell ``action`` (centre ``point``) with ``label``."""
        if self.done:
            raise RuntimeError(f"the episode has ended ({self.end}); call reset()")
        self.points.append(point)
        self.labels.append(int(label))
        self.prompted[int(action)] = True
        self.num_prompts += 1

    def set_logits(self, logits: np.ndarray) -> None:
        """Take the decoder's ``embedding.mask_shape float32`` logits for the prompts so far."""
        self.logits = logits
        for name in ("probability", "iou", "grid_mask", "state"):
            self._derived.pop(name, None)

    def stop(self) -> None:
        """The agent ends the episode before its budget is spent; the current mask is the final one."""
        if self.done:
            raise RuntimeError(f"the episode has ended ({self.end}); call reset()")
        self.stopped = True

    @property
    def done(self) -> bool:
        return self.stopped or self.num_prompts >= self.max_prompts

    @property
    def end(self) -> str:
        """How the episode ended, in words (for errors)."""
        return (f"stopped after {self.num_prompts} prompts" if self.stopped
                else f"max_prompts={self.max_prompts} prompts spent")

    def prompt_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All prompts so far: ``(N, 2) float64`` points ``(x, y)`` and ``(N,) int64`` labels."""
        return np.array(self.points, dtype=np.float64), np.array(self.labels, dtype=np.int64)

    # -- what follows from the logits -----------------------------------------------------------------
    def _memo(self, name: str, compute: Any) -> Any:
        if name not in self._derived:
            self._derived[name] = compute()
        return self._derived[name]

    @property
    def probability(self) -> np.ndarray:
        """``(h_m, w_m) float32`` foreground probability of the current mask, ``sigmoid(logits)``."""
        return self._memo("probability", lambda: expit(self.logits).astype(np.float32))

    @property
    def iou(self) -> float:
        """IoU of the current mask (``logits > 0``) with the ground truth at the mask's resolution."""
        return self._memo("iou", lambda: iou(self.logits > 0, self.target_mask, self.target_ignore))

    @property
    def grid_mask(self) -> np.ndarray:
        """``(h, w) float32``: the mask probability area-resized to the embedding grid, ``M`` in ``s_t``."""
        _, h, w = self.embedding.features.shape
        return self._memo("grid_mask", lambda: cv2.resize(self.probability, (w, h), interpolation=cv2.INTER_AREA))

    @property
    def state(self) -> np.ndarray:
        """``s_t = E(x) * M``: ``(C, h, w) float32``."""
        return self._memo("state", lambda: masked_state(self.embedding.features, self.grid_mask))

    # -- fixed for the episode ----------------------------------------------------------------------
    @property
    def target_mask(self) -> np.ndarray:
        """``(h_m, w_m) bool``: the ground truth at the mask's resolution (what :attr:`iou` compares with)."""
        def compute() -> np.ndarray:
            mh, mw = self.embedding.mask_shape
            return cv2.resize(self.mask.astype(np.uint8), (mw, mh), interpolation=cv2.INTER_NEAREST) > 0
        return self._memo("target_mask", compute)

    @property
    def target_ignore(self) -> np.ndarray | None:
        """``(h_m, w_m) bool``: the unlabelled pixels at the mask's resolution, or None."""
        if self.ignore is None:
            return None

        def compute() -> np.ndarray:
            mh, mw = self.embedding.mask_shape
            return cv2.resize(self.ignore.astype(np.uint8), (mw, mh), interpolation=cv2.INTER_NEAREST) > 0
        return self._memo("target_ignore", compute)

    @property
    def srm_target(self) -> np.ndarray:
        """``(h, w) float32``: the foreground fraction of each embedding cell (the SRM's training target)."""
        _, h, w = self.embedding.features.shape
        return self._memo("srm_target", lambda: cv2.resize(self.mask.astype(np.float32), (w, h),
                                                           interpolation=cv2.INTER_AREA))

    @property
    def clip_state(self) -> np.ndarray | None:
        """``s_c = E(x) * M_c`` on the embedding grid (``(C, h, w) float32``), or None without CLIP maps."""
        if self.clip_map is None:
            return None

        def compute() -> np.ndarray:
            _, h, w = self.embedding.features.shape
            clip_grid = cv2.resize(self.clip_map, (w, h), interpolation=cv2.INTER_LINEAR)
            return masked_state(self.embedding.features, clip_grid)
        return self._memo("clip_state", compute)

    def is_foreground(self, point: np.ndarray) -> bool:
        """The ground truth at ``point`` ``(x, y)`` in pixels (an unlabelled pixel is not foreground)."""
        return bool(self.mask[int(point[1]), int(point[0])])
