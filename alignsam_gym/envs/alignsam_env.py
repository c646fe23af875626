"""``AlignSAM-v0``: an agent chooses point prompts for a frozen promptable segmenter."""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from scipy.special import expit

from alignsam_gym.backends import (
    ImageEmbedding, PromptableSegmenter, backend_arguments, shared_backend, shared_cache,
)
from alignsam_gym.data.prepare import prepared_sample
from alignsam_gym.data.tasks import DEFAULT_TASK, get_task, make_dataset
from alignsam_gym.envs import compact
from alignsam_gym.metrics import iou
from alignsam_gym.rendering import render_frame
from alignsam_gym.srm import make_srm

LABEL_SOURCES = ("srm", "gt", "positive", "last_mask", "clip")
INIT_PROMPTS = ("random_gt", "srm")
SRM_BRANCHES = ("implicit", "explicit")
OBS_DTYPES = {"float32": np.float32, "float16": np.float16}
OBS_MODES = ("full", "compact")


class AlignSAMEnv(gym.Env[np.ndarray, np.int64]):
    """
    ## Description
    The AlignSAM environment (Huang et al., "AlignSAM: Aligning Segment Anything Model to Open Context
    via Reinforcement Learning", CVPR 2024). An image of a segmentation task is resized to
    ``image_size`` x ``image_size`` pixels and cut into a ``grid_size`` x ``grid_size`` grid of
    patches. At each step the agent picks one patch; its centre becomes a point prompt for a frozen
    promptable segmenter (the backend), with a foreground/background label that comes from
    ``label_source``; the segmenter re-decodes the mask from all prompts so far. The agent only
    chooses positions.

    ## Action Space
    ``Discrete(grid_size**2)``. Action ``a`` is the patch in row ``a // grid_size`` and column
    ``a % grid_size``; its prompt is the patch centre ``((col + 0.5) * image_size / grid_size,
    (row + 0.5) * image_size / grid_size)`` in pixels ``(x, y)``.

    ## Observation Space
    ``Box(-inf, inf, (C, obs_size, obs_size), obs_dtype)``: the state ``s_t = E(x) * M_{t-1}``, the
    backend's image embedding ``E(x)`` (``(C, h, w)``; ``(432, 20, 20)`` for ``"lite"``) multiplied
    position-wise by the previous mask probability ``sigmoid(logits)`` resized to ``(h, w)`` with area
    interpolation, then area-pooled to ``obs_size`` when that differs from ``h`` (default: ``h``).
    ``(256, 64, 64)`` for SAM.

    With ``obs_mode="compact"``: ``Dict(mask=Box(0, 1, (h, w), float32), embedding_key=Box(0, 255,
    (16,), uint8))``, the mask probability on the embedding grid and the key under which the env
    published ``E(x)`` in this process (:mod:`alignsam_gym.envs.compact`); the SB3 plugin's
    extractors form ``s_t`` from it, identical to the full observation (``obs_size`` pooling included).

    ## Rewards
    +1 if the chosen point lies on ground-truth foreground, otherwise -1 (in float). Choosing a
    foreground patch again is rewarded again, as in the paper.

    ## Starting State
    ``reset`` draws an image of the split uniformly with ``self.np_random`` (or takes
    ``options["image_index"]``), then (``init_prompts="random_gt"``) one positive point uniformly
    among the ground-truth foreground pixels and one negative point among the background pixels
    (an image whose mask is empty starts with the negative point only, an all-foreground one with
    the positive point only; every step then earns -1, or +1), or
    (``"srm"``) the SRM's most and least confident cells, labelled positive and negative; decodes,
    and returns ``s_0``.

    ## Episode End
    After ``max_prompts`` steps (default 15, the paper's T) the prompt budget is spent and the
    episode ends with ``terminated=True``: the budget is part of the task (the paper's objective
    sums exactly T rewards), so no value is bootstrapped past it. ``truncated`` is always False;
    it is left to external time limits. Stepping a finished episode raises ``RuntimeError``.

    ## Arguments
    - ``task``: task name (see ``alignsam_gym.data.tasks``); default ``"synthetic-saliency"``.
    - ``data_root``: dataset folder, for file-based tasks only.
    - ``split``: ``"train"`` or ``"test"``. ``num_images``: images in the split (default 50; for
      file-based tasks the size of the few-shot training subset, drawn with ``subset_seed`` (0);
      their test split is always whole).
    - ``backend``: registered segmenter name: ``"lite"`` (embedded default) or ``"sam"``.
      ``sam_checkpoint``: SAM checkpoint path (default ``$ALIGNSAM_SAM_CHECKPOINT``);
      ``sam_model_type``: ``vit_b``/``vit_l``/``vit_h`` to insist on (default: read from the file).
      ``backend_kwargs``: extra keyword arguments for the backend. ``device``: ``"auto"`` (CUDA when
      present), ``"cpu"``, ...
    - ``cache_dir``: folder of the on-disk embedding cache shared by every env, process and run
      (default ``$ALIGNSAM_CACHE`` or ``~/.cache/alignsam-gym``); ``False`` keeps embeddings in
      memory only.
    - ``grid_size`` (10), ``image_size`` (800), ``max_prompts`` (15).
    - ``label_source``: where each prompt's label comes from. ``"srm"`` (default, the paper's): the
      env's SRM on the current state, read at the point (bilinear between cells) and thresholded at
      0.5 (a standalone env owns an untrained SRM; the SB3 plugin's callback trains it and pushes
      the weights with ``set_srm_weights``);
      ``"gt"``: the true label at the point (oracle); ``"positive"``: every prompt positive (the
      paper's "w/o SRM"); ``"last_mask"``: the previous mask at the point; ``"clip"``: the
      CLIP-Surgery map of the task's text prompt at the point, thresholded at 0.5 (RL+SCLIP).
    - ``init_prompts``: ``"random_gt"`` (training default, see Starting State) or ``"srm"`` (the
      paper's evaluation protocol: the SRM's highest and lowest scoring embedding cells on the
      unmasked embedding, their centres as the positive and negative initial points).
    - ``srm_branch``: ``"implicit"`` or ``"explicit"``; default the task's paper branch, except that an
      explicit task without CLIP maps (no ``clip_checkpoint``) runs the implicit branch. The branch
      that runs is ``env.unwrapped.srm_branch``.
    - ``clip_checkpoint``: open_clip weights for the CLIP-Surgery maps (default
      ``$ALIGNSAM_CLIP_CHECKPOINT``); ``clip_model``: their open_clip architecture (``"ViT-B-16"``);
      ``text_prompt``: the text of the CLIP maps, default the task's (set it for the ``folder`` task).
    - ``init_prompts``: ``"random_gt"`` (see Starting State).
    - ``obs_size``: side of the observation grid; ``obs_dtype``: ``"float32"`` or ``"float16"``.
    - ``obs_mode``: ``"full"`` (default, the paper's ``s_t``) or ``"compact"`` (see Observation Space).
    - ``render_mode``: None or ``"rgb_array"``: a ``(image_size // 2, image_size, 3) uint8`` frame,
      the image with the predicted mask (blue) and prompts (positive green stars, negative red),
      and the ground truth (amber) beside it.

    ``info`` after ``reset``: ``iou``, ``num_prompts`` (0), ``image_index``, ``action_mask``; after each
    ``step``: ``iou`` of the current mask against the ground truth at the mask's resolution,
    ``is_foreground`` (the ground truth at the point), ``label`` (the label given to the segmenter,
    0 or 1), ``num_prompts`` (the agent's prompts so far, 1..max_prompts) and ``action_mask``
    (``(grid_size**2,) bool``, False on cells already prompted; also ``env.action_masks()``).

    ## Version History
    - v0: initial release (paper dynamics; label sources ``srm``, ``gt``, ``positive``, ``last_mask``,
      ``clip``; initial prompts ``random_gt`` and ``srm``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(
        self,
        task: str | None = None,
        data_root: str | None = None,
        split: str = "train",
        num_images: int = 50,
        subset_seed: int = 0,
        backend: str = "lite",
        sam_checkpoint: str | None = None,
        sam_model_type: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        cache_dir: str | bool | None = None,
        clip_checkpoint: str | None = None,
        clip_model: str = "ViT-B-16",
        text_prompt: str | None = None,
        grid_size: int = 10,
        image_size: int = 800,
        max_prompts: int = 15,
        label_source: str = "srm",
        init_prompts: str = "random_gt",
        srm_branch: str | None = None,
        obs_size: int | None = None,
        obs_dtype: str = "float32",
        obs_mode: str = "full",
        device: str = "auto",
        render_mode: str | None = None,
    ) -> None:
        _check_int("grid_size", grid_size, 1)
        _check_int("image_size", image_size, 1)
        _check_int("max_prompts", max_prompts, 1)
        _check_int("num_images", num_images, 1)
        if image_size < grid_size:
            raise ValueError(f"image_size ({image_size}) must be at least grid_size ({grid_size})")
        _check_choice("label_source", label_source, LABEL_SOURCES)
        _check_choice("init_prompts", init_prompts, INIT_PROMPTS)
        if srm_branch is not None:
            _check_choice("srm_branch", srm_branch, SRM_BRANCHES)
        _check_choice("obs_dtype", obs_dtype, tuple(OBS_DTYPES))
        _check_choice("obs_mode", obs_mode, OBS_MODES)
        if render_mode is not None:
            _check_choice("render_mode", render_mode, tuple(self.metadata["render_modes"]))

        spec = get_task(task or DEFAULT_TASK)
        self.task = spec.name
        if text_prompt is not None and (not isinstance(text_prompt, str) or not text_prompt.strip()):
            raise ValueError(f"text_prompt must be a non-empty string, got {text_prompt!r}")
        #: the text prompt of the CLIP maps: ``text_prompt`` or the task's (paper Table 6)
        self.text_prompt = text_prompt or spec.text_prompt
        _check_int("subset_seed", subset_seed, 0)
        self.dataset = make_dataset(self.task, split, num_images, data_root, int(subset_seed))
        backend_kwargs = backend_arguments(backend, sam_checkpoint, sam_model_type, backend_kwargs)
        self.backend: PromptableSegmenter = shared_backend(backend, device=device, **backend_kwargs)
        self.cache = shared_cache(cache_dir)
        self.clip_maps = None
        if label_source == "clip" or clip_checkpoint is not None:
            from alignsam_gym.backends.clip_surgery import shared_clip_maps

            self.clip_maps = shared_clip_maps(clip_checkpoint, self.text_prompt, clip_model, device)
        self.grid_size, self.image_size, self.max_prompts = int(grid_size), int(image_size), int(max_prompts)
        self.label_source, self.init_prompts, self.render_mode = label_source, init_prompts, render_mode

        channels, height, width = self.backend.feature_shape
        if obs_size is None:
            if height != width:
                raise ValueError(f"backend {backend!r} has a non-square {height}x{width} embedding grid: pass obs_size")
            obs_size = height
        _check_int("obs_size", obs_size, 1)
        self.obs_size, self.obs_mode = int(obs_size), obs_mode
        if obs_mode == "full":
            self.observation_space = spaces.Box(-np.inf, np.inf, (channels, self.obs_size, self.obs_size),
                                                OBS_DTYPES[obs_dtype])
        else:
            self.observation_space = compact.CompactObservationSpace((channels, height, width), self.obs_size)
        self.action_space = spaces.Discrete(self.grid_size**2)

        # The SRM: the paper's branch for the task, unless overridden; the explicit branch needs CLIP maps,
        # so without them a task whose paper branch is explicit runs the implicit one (srm_branch says which).
        if srm_branch == "explicit" and self.clip_maps is None:
            raise ValueError("srm_branch='explicit' needs CLIP-Surgery maps: pass clip_checkpoint=PATH")
        self.srm_branch = srm_branch or (spec.branch if self.clip_maps is not None else "implicit")
        self.srm = make_srm(channels, self.srm_branch).eval()

        centres = (np.arange(self.grid_size) + 0.5) * self.image_size / self.grid_size
        cols, rows = np.meshgrid(centres, centres)
        #: ``(grid_size**2, 2)`` prompt ``(x, y)`` in pixels for each action
        self.action_points = np.stack([cols.ravel(), rows.ravel()], axis=1)

        self._embedding: ImageEmbedding | None = None
        self._steps_left = 0

    # -- episode -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        options = options or {}
        if "image_index" in options:
            index = options["image_index"]
            if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.dataset):
                raise ValueError(f"options['image_index'] must be an int in [0, {len(self.dataset)}), got {index!r}")
        else:
            index = self.np_random.integers(len(self.dataset))
        self._image_index = int(index)
        self._image, self._mask, digest = prepared_sample(self.dataset, self._image_index, self.image_size)
        try:
            self._embedding = self.cache.encode(self.backend, self._image, digest)
        except ValueError as err:
            name = self.dataset[self._image_index].name
            raise ValueError(f"{self.task} image {name!r} (index {self._image_index}): {err}") from err
        if self.obs_mode == "compact":
            self._embedding_key = compact.embedding_key(self.backend.identity, digest)
            compact.publish(self._embedding_key, self._embedding.features)
        self._clip_map = None
        if self.clip_maps is not None:
            self._clip_map = self.cache.encode(self.clip_maps, self._image, digest).features[0]
        mh, mw = self._embedding.mask_shape
        self._mask_lowres = cv2.resize(self._mask.astype(np.uint8), (mw, mh), interpolation=cv2.INTER_NEAREST) > 0
        _, h, w = self._embedding.features.shape
        self._clip_state = self._clip_masked(self._embedding.features)  # s_c is fixed for the episode
        #: ``(h, w) float32`` SRM target: the foreground fraction of each embedding cell
        self._srm_target = cv2.resize(self._mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)

        if self.init_prompts == "random_gt":  # an empty or all-foreground mask has only one kind of point
            self._points, self._labels = [], []
            for region, label in ((self._mask, 1), (~self._mask, 0)):
                if region.any():
                    self._points.append(self._random_pixel(region))
                    self._labels.append(label)
        else:  # the SRM's most and least confident positions on the unmasked embedding
            prob = self._srm_probability(self._embedding.features)
            self._points = [self._cell_centre(int(prob.argmax()), prob.shape),
                            self._cell_centre(int(prob.argmin()), prob.shape)]
            self._labels = [1, 0]
        self._prompted = np.zeros(self.action_space.n, dtype=bool)
        self._steps_left = self.max_prompts
        self._set_logits(self.backend.decode(self._embedding, *self._prompt_arrays()))
        info = {"iou": self._iou, "num_prompts": 0, "image_index": self._image_index,
                "action_mask": self.action_masks()}
        return self._observation(), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        point, is_foreground = self._begin_step(action)
        srm_prob = self._srm_probability(self._state) if self.label_source == "srm" else None
        label = self._add_prompt(action, point, is_foreground, srm_prob)
        self._set_logits(self.backend.decode(self._embedding, *self._prompt_arrays()))
        return self._step_result(is_foreground, label)

    # -- the phases of a step (AlignSAMVectorEnv runs each phase for all its envs at once) ----------
    def _begin_step(self, action: Any) -> tuple[np.ndarray, bool]:
        """Validate ``action``; return its prompt point ``(x, y)`` in pixels and the truth there."""
        if self._embedding is None:
            raise RuntimeError("call reset() before step()")
        if self._steps_left == 0:
            raise RuntimeError(f"the episode ended after max_prompts={self.max_prompts} steps; call reset()")
        if isinstance(action, np.ndarray) and action.ndim == 0:
            action = action.item()
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)) \
                or not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.action_space.n}), got {action!r}")
        point = self.action_points[int(action)]
        return point, bool(self._mask[int(point[1]), int(point[0])])

    def _add_prompt(self, action: Any, point: np.ndarray, is_foreground: bool, srm_prob: np.ndarray | None) -> int:
        """Label the new prompt (``srm_prob``: the SRM's ``(h, w)`` output on ``s_t``) and record it."""
        label = self._label(point, is_foreground, srm_prob)
        self._points.append(point)
        self._labels.append(label)
        self._prompted[int(action)] = True
        self._steps_left -= 1
        return label

    def _prompt_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All prompts so far: ``(N, 2) float64`` points ``(x, y)`` and ``(N,) int64`` labels."""
        return np.array(self._points, dtype=np.float64), np.array(self._labels, dtype=np.int64)

    def _step_result(self, is_foreground: bool, label: int) -> tuple[Any, float, bool, bool, dict]:
        info = {"iou": self._iou, "is_foreground": is_foreground, "label": label,
                "num_prompts": self.max_prompts - self._steps_left, "action_mask": self.action_masks()}
        reward = 1.0 if is_foreground else -1.0
        return self._observation(), reward, self._steps_left == 0, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to gym.make")
            return None
        if self._embedding is None:
            raise RuntimeError("call reset() before render()")
        num = self.max_prompts - self._steps_left
        caption = f"prompt {num}/{self.max_prompts}  IoU {self._iou:.2f}"
        return render_frame(self._image, self._prob > 0.5, self._mask, np.array(self._points),
                            np.array(self._labels), self.image_size // 2, caption)

    # -- internals -----------------------------------------------------------------------------
    def _label(self, point: np.ndarray, is_foreground: bool, srm_prob: np.ndarray | None = None) -> int:
        """The label the segmenter gets for a prompt at ``point`` (pixels), from ``label_source``.

        Decided before the new prompt is decoded: ``srm`` reads the SRM's output on the current
        state ``s_t``, ``last_mask`` the current mask.
        """
        if self.label_source == "gt":
            return int(is_foreground)
        if self.label_source == "positive":
            return 1
        if self.label_source == "srm":
            prob = self._srm_probability(self._state) if srm_prob is None else srm_prob
        elif self.label_source == "last_mask":
            prob = self._prob
        else:
            prob = self._clip_map
        return int(sample_bilinear(prob, point, self.image_size) > 0.5)

    def _cell_centre(self, flat_index: int, shape: tuple[int, int]) -> np.ndarray:
        row, col = divmod(flat_index, shape[1])
        return np.array([(col + 0.5) * self.image_size / shape[1], (row + 0.5) * self.image_size / shape[0]])

    def _clip_masked(self, features: np.ndarray) -> np.ndarray | None:
        """``s_c = E(x) * M_c`` on the embedding grid, or None without CLIP maps."""
        if self._clip_map is None:
            return None
        _, h, w = features.shape
        return features * cv2.resize(self._clip_map, (w, h), interpolation=cv2.INTER_LINEAR)[None]

    @torch.inference_mode()
    def _srm_probability(self, state: np.ndarray) -> np.ndarray:
        """``(h, w)`` SRM foreground probability for a ``(C, h, w)`` state."""
        clip_state = self._clip_state if self.srm_branch == "explicit" else None
        state_t = torch.from_numpy(state) if state.flags.writeable else torch.tensor(state)  # cache: read-only
        logits = self.srm(state_t[None], None if clip_state is None else torch.from_numpy(clip_state)[None])
        return torch.sigmoid(logits)[0, 0].numpy()

    # -- SRM training support (used by the SB3 plugin's callback) ------------------------------
    def srm_sample(self) -> dict[str, np.ndarray]:
        """The current SRM training example: ``state`` ``(C, h, w)``, ``target`` ``(h, w)`` foreground
        fractions, and ``clip_state`` ``(C, h, w)`` for the explicit branch."""
        if self._embedding is None:
            raise RuntimeError("call reset() before srm_sample()")
        sample = {"state": self._state, "target": self._srm_target}
        if self.srm_branch == "explicit":
            sample["clip_state"] = self._clip_state
        return sample

    def set_srm_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load new SRM weights (the callback pushes them to every env, in any process)."""
        self.srm.load_state_dict(state_dict)
        self.srm.eval()

    def srm_scores(self) -> np.ndarray:
        """``(grid_size**2,) float32``: the SRM's foreground probability on the current state at each
        action point (read like a label), for SRM-greedy prompting."""
        if self._embedding is None:
            raise RuntimeError("call reset() before srm_scores()")
        prob = self._srm_probability(self._state)
        return np.array([sample_bilinear(prob, p, self.image_size) for p in self.action_points], dtype=np.float32)

    @property
    def target_mask(self) -> np.ndarray:
        """``(h_m, w_m) bool``: the ground truth at the mask's resolution (what ``info["iou"]`` compares with)."""
        return self._mask_lowres.copy()

    def action_masks(self) -> np.ndarray:
        """``(grid_size**2,) bool``: True for cells the agent has not prompted yet this episode
        (for MaskablePPO; prompting a cell again is allowed by the env itself)."""
        return ~self._prompted

    def _random_pixel(self, region: np.ndarray) -> np.ndarray:
        flat = np.flatnonzero(region)
        k = flat[self.np_random.integers(flat.size)]
        row, col = divmod(int(k), region.shape[1])
        return np.array([col + 0.5, row + 0.5])

    def _set_logits(self, logits: np.ndarray) -> None:
        """Take the decoder's new mask logits: mask probability, IoU and the state ``s_t``."""
        self._prob = expit(logits).astype(np.float32)
        self._iou = iou(logits > 0, self._mask_lowres)
        features = self._embedding.features
        _, h, w = features.shape
        #: ``(h, w) float32`` mask probability area-resized to the embedding grid
        self._grid_mask = cv2.resize(self._prob, (w, h), interpolation=cv2.INTER_AREA)
        #: ``s_t = E(x) * M_t``: ``(C, h, w) float32``
        self._state = features * self._grid_mask[None]

    def _observation(self) -> np.ndarray | dict[str, np.ndarray]:
        if self.obs_mode == "compact":
            return {"mask": self._grid_mask.copy(), "embedding_key": self._embedding_key.copy()}
        state = self._state
        _, h, w = state.shape
        if h != self.obs_size or w != self.obs_size:
            state = F.interpolate(torch.from_numpy(state)[None], size=(self.obs_size, self.obs_size),
                                  mode="area")[0].numpy()
        return state.astype(self.observation_space.dtype, copy=False)

    @property
    def mask_probability(self) -> np.ndarray:
        """``(h_m, w_m) float32`` foreground probability of the current mask (a copy)."""
        return self._prob.copy()


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def sample_bilinear(grid: np.ndarray, point: np.ndarray, image_size: int) -> float:
    """The value of an ``(h, w)`` map over the ``image_size``-pixel square image at ``point`` ``(x, y)``
    (pixels), bilinearly interpolated between cell centres (clamped at the border).

    Why not the cell under the point: the action points of a 10x10 grid fall exactly on the corners
    of a 20x20 map's cells, so "the cell under the point" would read one of four neighbours, always
    the lower right one; interpolation reads all four.
    """
    h, w = grid.shape
    x = float(point[0]) * w / image_size - 0.5
    y = float(point[1]) * h / image_size - 0.5
    x0, y0 = int(np.clip(np.floor(x), 0, w - 1)), int(np.clip(np.floor(y), 0, h - 1))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    fx, fy = float(np.clip(x - x0, 0, 1)), float(np.clip(y - y0, 0, 1))
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return float(top * (1 - fy) + bottom * fy)
