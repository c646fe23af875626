"""The common way of running an AlignSAM episode, the baseline of the episode and throughput benchmarks.

Most code encodes the image at every reset and decodes all points so far at every step, with no
cache: for SAM ``SamPredictor.set_image`` then ``SamPredictor.predict`` (single-mask output,
full-resolution masks), for any other backend ``backend.encode`` then ``backend.decode``. Labels are
the ground truth at each point, so the baseline does no labelling work the env would skip.
"""

from __future__ import annotations

import numpy as np

from alignsam_gym.backends import PromptableSegmenter
from alignsam_gym.episode import Episode


class CommonApproach:
    """One episode at a time, the common way (see the module docstring).

    :param backend: the env's backend; for ``"sam"`` its checkpoint is loaded into a ``SamPredictor``.
    """

    def __init__(self, backend: PromptableSegmenter) -> None:
        self.backend = backend
        self.predictor = None
        if backend.name == "sam":
            from segment_anything import SamPredictor

            from alignsam_gym.backends.sam import load_sam

            model, _ = load_sam(backend.checkpoint)
            self.predictor = SamPredictor(model.to(backend.device))
        self.points: list[np.ndarray] = []
        self.labels: list[int] = []
        self.episode: Episode | None = None
        self.embedding = None

    def reset(self, episode: Episode) -> None:
        """Encode ``episode``'s image and decode its initial prompts."""
        self.episode = episode
        self.points, self.labels = [p.copy() for p in episode.points], list(episode.labels)
        if self.predictor is not None:
            self.predictor.set_image(episode.image)
        else:
            self.embedding = self.backend.encode(episode.image)
        self._decode()

    def step(self, point: np.ndarray) -> None:
        """Add a prompt at ``point`` ``(x, y)`` labelled with the ground truth, and decode all prompts."""
        self.points.append(point)
        self.labels.append(int(self.episode.is_foreground(point)))
        self._decode()

    def _decode(self) -> None:
        points, labels = np.array(self.points), np.array(self.labels)
        if self.predictor is not None:  # SAM's pixel convention: centres at integers
            self.predictor.predict(point_coords=points - 0.5, point_labels=labels, multimask_output=False)
        else:
            self.backend.decode(self.embedding, points, labels)
