"""``AlignSAM-v0``: an agent chooses point prompts for a frozen promptable segmenter."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch

from alignsam_gym.envs.config import EnvConfig, check_choice
from alignsam_gym.envs.core import EnvCore, StepResult
from alignsam_gym.episode import Episode
from alignsam_gym.rendering import render_frame


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
    (row + 0.5) * image_size / grid_size)`` in pixels ``(x, y)``. With ``stop_action=True`` the space is
    ``Discrete(grid_size**2 + 1)`` and the last action, ``grid_size**2``, stops: the episode ends with the
    current mask as the final one (on real photos more prompts can hurt).

    ## Observation Space
    ``Box(-inf, inf, (C, obs_size, obs_size), obs_dtype)``: the state ``s_t = E(x) * M_{t-1}``, the
    backend's image embedding ``E(x)`` (``(C, h, w)``; ``(432, 20, 20)`` for ``"lite"``) multiplied
    position-wise by the previous mask probability ``sigmoid(logits)`` resized to ``(h, w)`` with area
    interpolation, then area-pooled to ``obs_size`` when that differs from ``h`` (default: ``h``).
    ``(256, 64, 64)`` for SAM.

    ``observation`` chooses what the agent sees (the state the SRM reads is always the paper's ``s_t``):
    ``"masked"`` (default, the paper's ``E(x) * M``), ``"masked_plus"`` (``E(x) * (1 + M)``: features outside
    the mask are kept, so the agent still sees the unsegmented image), ``"channels"`` (``E(x)`` and ``M``
    side by side: ``C + 1`` channels); ``observe_srm=True`` appends the SRM's foreground probability on the
    current state as one more channel. Every option is pooled to ``obs_size`` in the same way.
    ``observe_time=True`` (full observations only) appends, last, a constant channel of the prompts left as a
    fraction of the budget, ``(max_prompts - num_prompts) / max_prompts`` (1 at reset, 0 after the last prompt):
    the paper's state does not say how many prompts remain.

    With ``obs_mode="compact"``: ``Dict(mask=Box(0, 1, (h, w), float32), embedding_key=Box(0, 255,
    (16,), uint8))``, the mask probability on the embedding grid and the key under which the env
    published ``E(x)`` in its :class:`~alignsam_gym.observation.EmbeddingTable` (``env.embedding_table``);
    the SB3 plugin's extractors form ``s_t`` from it with the same function, identical to the full
    observation (``obs_size`` pooling included).

    ## Rewards
    ``reward="foreground"`` (default, the paper's): +1 if the chosen point lies on ground-truth foreground,
    otherwise -1 (in float). Choosing a foreground patch again is rewarded again, as in the paper.
    ``"iou_gain"``: ``iou_reward_scale`` (10) times the change of ``info["iou"]`` the prompt caused (a prompt
    that adds 0.1 IoU earns +1, one that breaks the mask is punished). ``"foreground+iou"``: the sum of
    both. ``repeat_penalty`` (0) is subtracted for prompting a cell already prompted this episode. A point on an unlabelled pixel (GrabCut's
    band along the object boundary) is not foreground; ``info["iou"]`` counts labelled pixels only.

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
    episode ends. ``budget_end="terminated"`` (default): ``terminated=True``, the budget is part of the task
    (the objective sums exactly T rewards), so no value is bootstrapped past it; ``truncated`` stays False,
    left to external time limits. ``budget_end="truncated"``: ``truncated=True`` and ``terminated=False``, so
    SB3 bootstraps ``V(s_T)`` at the end, as the paper's Eq. 6 (the return of the last step adds
    ``gamma * V(s_T)``) does. The stop action (``stop_action=True``) ends the episode at once with
    ``terminated=True``, reward 0, the mask kept, ``info["stopped"]`` True. Stepping a finished episode raises
    ``RuntimeError``.

    ## Arguments

    - ``task``: task name (see ``alignsam_gym.data.tasks``); default ``"synthetic-saliency"``.
    - ``data_root``: dataset folder, for file-based tasks only.
    - ``split``: ``"train"``, ``"val"`` or ``"test"``. ``num_images``: images in the split (default 50; for
      file-based tasks the size of the few-shot training subset, drawn with ``subset_seed`` (0), and ``val`` is
      every other training image, so train and val envs with the same ``num_images`` and ``subset_seed`` never
      share a sample (Berkeley and DAVIS: see ``alignsam_gym.data.interactive``); their test split is always
      whole). Learning curves, early stopping and tuning read
      ``val``; ``test`` is for the final benchmark.
    - ``backend``: registered segmenter name: ``"lite"`` (embedded default), ``"sam"`` or ``"sam2"``
      (SAM 2 / 2.1, observation ``(256, 64, 64)``; ``backend_kwargs={"sam2_config": ...}`` names its config).
      ``sam_checkpoint``: SAM or SAM 2 checkpoint path (default ``$ALIGNSAM_SAM_CHECKPOINT``, for SAM 2
      ``$ALIGNSAM_SAM2_CHECKPOINT``);
      ``sam_model_type``: ``vit_b``/``vit_l``/``vit_h`` to insist on (default: read from the file).
      ``backend_kwargs``: extra keyword arguments for the backend. ``device``: ``"auto"`` (CUDA when
      present), ``"cpu"``, ``"cuda[:N]"``: the device of the env's models (backend and SRM); ``"auto"``
      is resolved on first use, so building an env never initialises CUDA (workers forked later can
      use it), and a ``"cuda:N"`` this machine lacks is refused at once.
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
    - ``srm_checkpoint``: an SRM file to start the SRM from (a run's ``srm.pt``, or the file
      ``SRMCallback(save_path=...)`` writes, e.g. from an RL Zoo run); its branch and shapes must match
      the env's SRM, else a ``ValueError`` names the file. Default: the untrained SRM (seed 0).
    - ``clip_checkpoint``: open_clip weights for the CLIP-Surgery maps (default
      ``$ALIGNSAM_CLIP_CHECKPOINT``); ``clip_model``: their open_clip architecture (``"ViT-B-16"``);
      ``text_prompt``: the text of the CLIP maps, default the task's (set it for the ``folder`` task).
    - ``obs_size``: side of the observation grid; ``obs_dtype``: ``"float32"`` or ``"float16"``.
    - ``reward`` (``"foreground"``, ``"iou_gain"``, ``"foreground+iou"``), ``iou_reward_scale`` (10.0),
      ``repeat_penalty`` (0.0): see Rewards. ``observation`` (``"masked"``, ``"masked_plus"``,
      ``"channels"``), ``observe_srm`` (False), ``observe_time`` (False): see Observation Space.
      ``budget_end`` (``"terminated"``, ``"truncated"``): see Episode End. ``stop_action`` (False): see Action
      Space.
    - ``obs_mode``: ``"full"`` (default, the paper's ``s_t``) or ``"compact"`` (see Observation Space);
      ``embedding_table``: the :class:`~alignsam_gym.observation.EmbeddingTable` compact observations
      publish into (default: a new one per env; give envs that feed one policy the same table).
    - ``render_mode``: None or ``"rgb_array"``: a ``(image_size // 2, image_size, 3) uint8`` frame,
      the image with the predicted mask (blue) and prompts (positive green stars, negative red),
      and the ground truth (amber) beside it.

    ``info`` after ``reset``: ``iou``, ``num_prompts`` (0), ``image_index``, ``action_mask``; after each
    ``step``: ``iou`` of the current mask against the ground truth at the mask's resolution,
    ``is_foreground`` (the ground truth at the point), ``label`` (the label given to the segmenter,
    0 or 1; -1 after a stop), ``num_prompts`` (the agent's prompts so far, 0..max_prompts), ``stopped``
    (whether the stop action ended the episode) and ``action_mask`` (``(action_space.n,) bool``, False on cells
    already prompted, True for the stop action; also ``env.action_masks()``).

    ## Version History

    - v0: initial release (paper dynamics; label sources ``srm``, ``gt``, ``positive``, ``last_mask``,
      ``clip``; initial prompts ``random_gt`` and ``srm``); the reward and observation options were added
      later with the paper's choices as defaults, so v0 episodes are unchanged.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}

    def __init__(self, task: str | None = None, *, render_mode: str | None = None, core: EnvCore | None = None,
                 **kwargs: Any) -> None:
        """See the class docstring; ``core``: an existing :class:`~alignsam_gym.envs.core.EnvCore` to share
        (the envs of a vector env share one dataset, backend and SRM), instead of the other arguments."""
        if render_mode is not None:
            check_choice("render_mode", render_mode, tuple(self.metadata["render_modes"]))
        if core is not None and (task is not None or kwargs):
            raise ValueError(f"pass either core= or the env arguments, not both (got {sorted(kwargs)})")
        if core is None:
            table = kwargs.pop("embedding_table", None)
            core = EnvCore(EnvConfig.from_kwargs({"task": task, **kwargs}), embedding_table=table)
        self.core = core
        self.render_mode = render_mode
        self.observation_space = self.core.observation_space
        self.action_space = self.core.action_space
        #: the episode in progress (None before the first ``reset``)
        self.episode: Episode | None = None

    # -- Gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start an episode (see Starting State): ``options={"image_index": i}`` picks the image."""
        super().reset(seed=seed)
        self.episode = self.core.start(self.core.image_index(options, self.np_random), self.np_random)
        return self.core.observe(self.episode), self.core.reset_info(self.episode)

    def step(self, action: int) -> StepResult:
        """Prompt the centre of cell ``action``: ``(observation, reward, terminated, truncated, info)`` as the
        class docstring specifies."""
        return self.core.step([self.episode], [action])[0]

    def render(self) -> np.ndarray | None:
        """``(image_size // 2, image_size, 3) uint8``: the image with the mask and prompts, the ground truth beside
        it (``render_mode="rgb_array"``; None otherwise)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to gym.make")
            return None
        episode = self._require_episode("render")
        size = self.core.config.episode.image_size
        caption = f"prompt {episode.num_prompts}/{episode.max_prompts}  IoU {episode.iou:.2f}"
        return render_frame(episode.image, episode.probability > 0.5, episode.mask, np.array(episode.points),
                            np.array(episode.labels), size // 2, caption)

    # -- what policies, heuristics and the SB3 plugin ask of the env -----------------------------------
    def action_masks(self) -> np.ndarray:
        """``(action_space.n,) bool``: True for cells the agent has not prompted yet this episode (for MaskablePPO;
        prompting a cell again is allowed by the env itself) and for the stop action, when there is one."""
        if self.episode is None:
            return np.ones(self.action_space.n, dtype=bool)
        return ~self.episode.prompted

    def srm_scores(self) -> np.ndarray:
        """``(grid_size**2,) float32``: the SRM's foreground probability on the current state at each
        action point (read like a label), for SRM-greedy prompting."""
        return self.core.srm_scores(self._require_episode("srm_scores"))

    def preview(self, actions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """A one-step lookahead: for each of ``actions``, the label the env would give that prompt and the mask
        logits it would decode, ``(K,) int64`` and ``(K, h_m, w_m) float32``; the episode is not changed. For
        lookahead baselines (:mod:`alignsam_gym.heuristics`)."""
        return self.core.preview(self._require_episode("preview"), actions)

    def srm_sample(self) -> dict[str, np.ndarray]:
        """The current SRM training example (see :meth:`alignsam_gym.labels.SRMLabeler.training_sample`)."""
        return self.srm.training_sample(self._require_episode("srm_sample"))

    def set_srm_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load new SRM weights (the callback pushes them to every env, in any process)."""
        self.srm.set_weights(state_dict)

    @property
    def target_mask(self) -> np.ndarray:
        """``(h_m, w_m) bool``: the ground truth at the mask's resolution (what ``info["iou"]`` compares with)."""
        return self._require_episode("target_mask").target_mask.copy()

    @property
    def target_ignore(self) -> np.ndarray | None:
        """``(h_m, w_m) bool``: unlabelled ground-truth pixels at the mask's resolution (GrabCut's band), or None."""
        ignore = self._require_episode("target_ignore").target_ignore
        return None if ignore is None else ignore.copy()

    @property
    def mask_probability(self) -> np.ndarray:
        """``(h_m, w_m) float32`` foreground probability of the current mask (a copy)."""
        return self._require_episode("mask_probability").probability.copy()

    def _require_episode(self, what: str) -> Episode:
        if self.episode is None:
            raise RuntimeError(f"call reset() before {what}()")
        return self.episode

    # -- the core's parts, by their public names ------------------------------------------------
    task = property(lambda self: self.core.task, doc="the task's name")
    text_prompt = property(lambda self: self.core.text_prompt, doc="the text of the CLIP maps")
    dataset = property(lambda self: self.core.dataset, doc="the split's dataset")
    image_names = property(lambda self: tuple(self.core.dataset.names),
                           doc="the names of the split's images, in index order (``options={'image_index': i}``)")
    backend = property(lambda self: self.core.backend, doc="the shared promptable segmenter")
    backend_identity = property(lambda self: self.core.backend.identity,
                                doc="the segmenter's identity string (readable across vector-env processes)")
    cache = property(lambda self: self.core.cache, doc="the embedding cache")
    clip_maps = property(lambda self: self.core.clip_maps, doc="the CLIP-Surgery map source, or None")
    srm = property(lambda self: self.core.srm, doc="the SRM labeler (``srm.network`` the module)")
    srm_branch = property(lambda self: self.core.srm.branch, doc="the SRM branch that runs")
    embedding_table = property(lambda self: self.core.embedding_table, doc="compact observations' table, or None")
    action_points = property(lambda self: self.core.action_points, doc="``(grid_size**2, 2)`` prompt points")
    config = property(lambda self: self.core.config, doc="the env's validated arguments (an EnvConfig)")
    grid_size = property(lambda self: self.core.config.episode.grid_size)
    image_size = property(lambda self: self.core.config.episode.image_size)
    max_prompts = property(lambda self: self.core.config.episode.max_prompts)
    label_source = property(lambda self: self.core.config.labels.label_source)
    init_prompts = property(lambda self: self.core.config.episode.init_prompts)
    obs_size = property(lambda self: self.core.config.obs.obs_size)
    obs_mode = property(lambda self: self.core.config.obs.obs_mode)
