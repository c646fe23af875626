"""Where each prompt's foreground/background label comes from: one small protocol, five strategies.

The agent only picks positions; a :class:`Labeler` says what the segmenter is told about each one.
Every labeler labels a batch of episodes in one call (a vector env's envs), before the new prompt is
decoded: ``srm`` reads the SRM's output on the current state ``s_t``, ``last_mask`` the current mask.

- ``gt``: the true label at the point (oracle);
- ``positive``: every prompt positive (the paper's "w/o SRM");
- ``last_mask``: the previous mask probability at the point, thresholded at 0.5;
- ``clip``: the CLIP-Surgery map of the task's text prompt at the point, thresholded at 0.5 (RL+SCLIP);
- ``srm``: the Semantic Recalibration Module on ``s_t`` at the point, thresholded at 0.5 (the paper's).

Maps are read bilinearly between their cell centres (:func:`sample_bilinear`).
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np
import torch

from alignsam_gym.devices import DeviceSpec
from alignsam_gym.episode import Episode
from alignsam_gym.lru import IdentityLRU
from alignsam_gym.observation import masked_state
from alignsam_gym.srm import SRM, make_srm

LABEL_SOURCES = ("srm", "gt", "positive", "last_mask", "clip")
#: images whose SRM terms (or first sighting) a labeler remembers: a vector env's worth; each entry also
#: keeps its embedding alive, so the bound is on entries as well as on the terms' bytes
TERMS_CACHE_IMAGES = 64


def sample_bilinear(grid: np.ndarray, point: np.ndarray, image_size: int) -> float | np.ndarray:
    """The value of an ``(h, w)`` map over the ``image_size``-pixel square image at ``point`` ``(x, y)``
    (pixels), bilinearly interpolated between cell centres (clamped at the border); for ``(N, 2)`` points, the
    ``(N,) float64`` values, computed at once and equal to reading each point alone.

    Why not the cell under the point: the action points of a 10x10 grid fall exactly on the corners
    of a 20x20 map's cells, so "the cell under the point" would read one of four neighbours, always
    the lower right one; interpolation reads all four.
    """
    h, w = grid.shape
    points = np.asarray(point, dtype=np.float64)
    x = points[..., 0] * w / image_size - 0.5
    y = points[..., 1] * h / image_size - 0.5
    x0, y0 = np.clip(np.floor(x), 0, w - 1).astype(np.int64), np.clip(np.floor(y), 0, h - 1).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    # the weights in the map's precision, as a float32 map times a Python float is computed
    dtype = grid.dtype if np.issubdtype(grid.dtype, np.floating) else np.float64
    fx, fy = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
    top = grid[y0, x0] * (1 - fx).astype(dtype) + grid[y0, x1] * fx.astype(dtype)
    bottom = grid[y1, x0] * (1 - fx).astype(dtype) + grid[y1, x1] * fx.astype(dtype)
    value = top * (1 - fy).astype(dtype) + bottom * fy.astype(dtype)
    return float(value) if points.ndim == 1 else np.asarray(value, np.float64)


class Labeler(Protocol):
    """Labels the agent's new prompts."""

    name: str

    def label(self, episodes: Sequence[Episode], points: Sequence[np.ndarray], image_size: int) -> list[int]:
        """One label (1 foreground, 0 background) per episode for its new prompt at ``points[i]``
        (``(x, y)`` pixels of the ``image_size`` square), decided on the episode's current state."""


class GroundTruthLabeler:
    """``gt``: the ground truth at the point (an oracle)."""

    name = "gt"

    def label(self, episodes: Sequence[Episode], points: Sequence[np.ndarray], image_size: int) -> list[int]:
        return [int(e.is_foreground(p)) for e, p in zip(episodes, points)]


class PositiveLabeler:
    """``positive``: every prompt is foreground (the paper's "w/o SRM")."""

    name = "positive"

    def label(self, episodes: Sequence[Episode], points: Sequence[np.ndarray], image_size: int) -> list[int]:
        return [1] * len(episodes)


class LastMaskLabeler:
    """``last_mask``: the current mask probability at the point, thresholded at 0.5."""

    name = "last_mask"

    def label(self, episodes: Sequence[Episode], points: Sequence[np.ndarray], image_size: int) -> list[int]:
        return [int(sample_bilinear(e.probability, p, image_size) > 0.5) for e, p in zip(episodes, points)]


class ClipLabeler:
    """``clip``: the episode's CLIP-Surgery map at the point, thresholded at 0.5."""

    name = "clip"

    def label(self, episodes: Sequence[Episode], points: Sequence[np.ndarray], image_size: int) -> list[int]:
        return [int(sample_bilinear(e.clip_map, p, image_size) > 0.5) for e, p in zip(episodes, points)]


class SRMLabeler:
    """``srm``: the Semantic Recalibration Module (:mod:`alignsam_gym.srm`) on the current state.

    It owns the network (initial weights from ``seed`` only), its branch and device; it labels a batch
    of episodes with one call, scores cells for SRM-greedy prompting, picks the SRM initial prompts,
    and gives the SB3 plugin's callback its training sample and a way to push new weights. Every env
    of a vector env holds the same labeler, so one weight update reaches all of them.

    :param in_channels: the embedding's channels ``C``.
    :param branch: ``"implicit"`` (on ``s_t``) or ``"explicit"`` (also on ``s_c = E(x) * M_c``).
    :param device: where the network runs; inputs are moved there and outputs brought back.
    """

    name = "srm"

    def __init__(self, in_channels: int, branch: str = "implicit", device: str | torch.device | DeviceSpec = "cpu",
                 seed: int = 0, terms_cache_bytes: int = 1 << 30) -> None:
        self.device_spec = device if isinstance(device, DeviceSpec) else DeviceSpec(device)
        self.network: SRM = make_srm(in_channels, branch, seed=seed).eval()  # moved on first use
        #: bumped by every :meth:`set_weights`; image terms of older weights are recomputed
        self.version = 0
        self.terms_cache_bytes = int(terms_cache_bytes)
        self._terms = self._new_terms_cache()

    def _new_terms_cache(self) -> IdentityLRU[tuple[int, dict[str, torch.Tensor]]]:
        """Per image: the SRM's image-only work (``SRM.image_terms``), reused at every step of its episodes."""
        return IdentityLRU(max_entries=TERMS_CACHE_IMAGES, max_bytes=self.terms_cache_bytes, size=_terms_bytes)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_terms"}  # a copy elsewhere starts its own cache

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._terms = self._new_terms_cache()

    @property
    def branch(self) -> str:
        return self.network.branch

    @property
    def device(self) -> torch.device:
        """Where the network runs: the device spec resolved on first use, the network moved there."""
        device = self.device_spec.device
        if next(self.network.parameters()).device != device:
            self.network.to(device)
        return device

    @torch.inference_mode()
    def probabilities(self, episodes: Sequence[Episode], masks: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """The SRM's ``(h, w) float32`` foreground probability on each episode's state ``s_t = E(x) * M``
        (``masks``: other ``(h, w)`` masks ``M``, e.g. ones for the unmasked embedding).

        When the same weights label an image again (every step of an evaluation episode), the image-only
        part of the SRM's first convolution is computed once (:meth:`alignsam_gym.srm.SRM.image_terms`) and
        each later step costs the rest: the same function in another order, equal up to float rounding
        (7.7 -> about 4 ms per SAM state on this CPU). The first time, and whenever the weights change at
        every step as in training, the plain forward runs, exactly as before. On the CPU one forward per
        episode, which measured faster than a batch; on an accelerator one batched forward. The SRM has
        no coupling across the batch, so the results are the same.
        """
        states_given = masks is None
        masks = [e.grid_mask for e in episodes] if masks is None else masks
        chunk = 1 if self.device.type == "cpu" else len(episodes)
        out: list[np.ndarray] = []
        for start in range(0, len(episodes), chunk):
            part, part_masks = episodes[start:start + chunk], masks[start:start + chunk]
            if all(self._seen(e) for e in part):  # these weights labelled these images before: reuse pays
                terms = [self._image_terms(e) for e in part]
                batch = {k: torch.cat([t[k] for t in terms]) for k in terms[0]}
                logits = self.network.masked_logits(batch, _tensor(part_masks, self.device))
            else:  # first sight, or new weights at every step as in training: the plain forward
                for e in part:
                    self._mark_seen(e)
                states = [e.state if states_given else masked_state(e.embedding.features, m)
                          for e, m in zip(part, part_masks)]
                clip = _tensor([e.clip_state for e in part], self.device) if self.branch == "explicit" else None
                logits = self.network(_tensor(states, self.device), clip)
            out.extend(torch.sigmoid(logits)[:, 0].float().cpu().numpy())
        return out

    def _entry(self, episode: Episode) -> dict[str, torch.Tensor] | None:
        """The cached terms of the episode's image under the current weights ({} when only seen), or None."""
        entry = self._terms.get((episode.embedding.features,))
        if entry is None or entry[0] != self.version:
            return None
        return entry[1]

    def _seen(self, episode: Episode) -> bool:
        """Whether the current weights labelled this image before (so its image terms will be reused)."""
        return self._entry(episode) is not None

    def _mark_seen(self, episode: Episode) -> None:
        self._terms.put((episode.embedding.features,), (self.version, {}))

    def _image_terms(self, episode: Episode) -> dict[str, torch.Tensor]:
        """The image's SRM terms under the current weights, computed the first time they are asked for."""
        terms = self._entry(episode)
        if terms:
            return terms
        features = episode.embedding.features  # the clip state is fixed by the image and the env's text prompt
        clip = _tensor([episode.clip_state], self.device) if self.branch == "explicit" else None
        terms = self.network.image_terms(_tensor([features], self.device), clip)
        self._terms.put((features,), (self.version, terms))
        return terms

    def label(self, episodes: Sequence[Episode], points: Sequence[np.ndarray], image_size: int) -> list[int]:
        # one SRM map per distinct episode: a lookahead labels many candidate points of the same state
        distinct = list({id(e): e for e in episodes}.values())
        probs = dict(zip((id(e) for e in distinct), self.probabilities(distinct)))
        return [int(sample_bilinear(probs[id(e)], p, image_size) > 0.5) for e, p in zip(episodes, points)]

    def scores(self, episode: Episode, points: np.ndarray, image_size: int) -> np.ndarray:
        """``(len(points),) float32``: the SRM's probability on the current state at each point."""
        prob = self.probabilities([episode])[0]
        return sample_bilinear(prob, np.asarray(points, np.float64).reshape(-1, 2), image_size).astype(np.float32)

    def initial_cells(self, episode: Episode) -> tuple[int, int, tuple[int, int]]:
        """The flat indices of the embedding cells the SRM scores highest and lowest on the unmasked
        embedding (the paper's evaluation start), and the grid's ``(h, w)``."""
        _, h, w = episode.embedding.features.shape
        prob = self.probabilities([episode], [np.ones((h, w), np.float32)])[0]
        return int(prob.argmax()), int(prob.argmin()), prob.shape

    def training_sample(self, episode: Episode) -> dict[str, np.ndarray]:
        """The episode's current SRM training example: ``state`` ``(C, h, w)``, ``target`` ``(h, w)``
        foreground fractions, and ``clip_state`` ``(C, h, w)`` for the explicit branch."""
        sample = {"state": episode.state, "target": episode.srm_target}
        if self.branch == "explicit":
            sample["clip_state"] = episode.clip_state
        return sample

    def set_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load new weights (the SB3 plugin's callback pushes them)."""
        self.network.load_state_dict(state_dict)
        self.network.eval()
        self.version += 1


def _tensor(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """A batch tensor of ``arrays`` on ``device`` (cached arrays are read-only, so they are copied)."""
    if len(arrays) == 1:
        array = arrays[0]
        tensor = torch.from_numpy(array) if array.flags.writeable else torch.tensor(array)
        return tensor[None].to(device)
    return torch.from_numpy(np.stack(arrays)).to(device)


def _terms_bytes(entry: tuple[int, dict[str, torch.Tensor]]) -> int:
    return sum(t.numel() * t.element_size() for t in entry[1].values())


def make_labeler(source: str) -> Labeler:
    """The labeler of a ``label_source`` other than ``srm`` (the env builds its :class:`SRMLabeler` itself)."""
    labelers = {"gt": GroundTruthLabeler, "positive": PositiveLabeler, "last_mask": LastMaskLabeler,
                "clip": ClipLabeler}
    if source not in labelers:
        raise ValueError(f"label_source must be one of {list(LABEL_SOURCES)}, got {source!r}")
    return labelers[source]()
