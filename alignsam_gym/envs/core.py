"""The parts an AlignSAM env is made of, and its dynamics over a batch of episodes.

:class:`EnvCore` is built once from the env's keyword arguments: the task's dataset, the shared
backend and embedding cache, the CLIP-Surgery maps, the labeler (the SRM labeler owns the SRM), the
spaces. It knows nothing of how many envs use it. Its methods start an :class:`~alignsam_gym.episode.Episode`
and advance a batch of episodes by one step each: validate every action before any episode moves,
label the new prompts with one labeler call, decode every prompt set with one ``decode_batch`` call.
:class:`~alignsam_gym.envs.alignsam_env.AlignSAMEnv` runs it on one episode, the vector envs on N;
all the envs of a vector env share one core, so one SRM by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces

from alignsam_gym.backends import PromptableSegmenter, backend_arguments, shared_backend, shared_cache
from alignsam_gym.data.prepare import prepared_sample
from alignsam_gym.data.tasks import DEFAULT_TASK, get_task, make_dataset
from alignsam_gym.episode import Episode
from alignsam_gym.labels import LABEL_SOURCES, Labeler, SRMLabeler, make_labeler
from alignsam_gym.observation import (OBSERVATIONS, CompactObservationSpace, EmbeddingTable, agent_channels,
                                     agent_state, embedding_key, full_observation)
from alignsam_gym.srm import load_srm_file

INIT_PROMPTS = ("random_gt", "srm")
SRM_BRANCHES = ("implicit", "explicit")
OBS_DTYPES = {"float32": np.float32, "float16": np.float16}
OBS_MODES = ("full", "compact")
#: the reward options; ``"foreground"`` is the paper's +1/-1
REWARDS = ("foreground", "iou_gain", "foreground+iou")
#: how a spent prompt budget ends the episode: ``terminated`` (default: no value past it) or ``truncated`` (SB3
#: then bootstraps V(s_T), as the paper's Eq. 6 does)
BUDGET_ENDS = ("terminated", "truncated")

#: ``(obs, reward, terminated, truncated, info)``
StepResult = tuple[Any, float, bool, bool, dict[str, Any]]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int; :raises ValueError: naming ``name`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(name: str, value: Any, minimum: float, exclusive: bool = False) -> float:
    """``value`` as a float; :raises ValueError: naming ``name`` unless it is a finite number >= ``minimum``
    (> with ``exclusive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < minimum or (exclusive and value == minimum):
        raise ValueError(f"{name} must be a finite number {'>' if exclusive else '>='} {minimum}, got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """:raises ValueError: naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class EnvSettings:
    """The validated scalar settings of an env (see :class:`~alignsam_gym.envs.alignsam_env.AlignSAMEnv`)."""

    grid_size: int
    image_size: int
    max_prompts: int
    label_source: str
    init_prompts: str
    obs_size: int
    obs_dtype: str
    obs_mode: str
    reward: str = "foreground"
    iou_reward_scale: float = 10.0
    repeat_penalty: float = 0.0
    observation: str = "masked"
    observe_srm: bool = False
    observe_time: bool = False
    budget_end: str = "terminated"
    stop_action: bool = False


class EnvCore:
    """Everything an AlignSAM env holds besides its episode; see the module docstring.

    Takes the keyword arguments of ``AlignSAM-v0`` (all but ``render_mode``), plus
    ``embedding_table`` for compact observations (a new table when None).
    """

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
        srm_checkpoint: str | None = None,
        obs_size: int | None = None,
        obs_dtype: str = "float32",
        obs_mode: str = "full",
        reward: str = "foreground",
        iou_reward_scale: float = 10.0,
        repeat_penalty: float = 0.0,
        observation: str = "masked",
        observe_srm: bool = False,
        observe_time: bool = False,
        budget_end: str = "terminated",
        stop_action: bool = False,
        device: str = "auto",
        embedding_table: EmbeddingTable | None = None,
    ) -> None:
        grid_size = check_int("grid_size", grid_size, 1)
        image_size = check_int("image_size", image_size, 1)
        max_prompts = check_int("max_prompts", max_prompts, 1)
        num_images = check_int("num_images", num_images, 1)
        if image_size < grid_size:
            raise ValueError(f"image_size ({image_size}) must be at least grid_size ({grid_size})")
        check_choice("label_source", label_source, LABEL_SOURCES)
        check_choice("init_prompts", init_prompts, INIT_PROMPTS)
        if srm_branch is not None:
            check_choice("srm_branch", srm_branch, SRM_BRANCHES)
        check_choice("obs_dtype", obs_dtype, tuple(OBS_DTYPES))
        check_choice("obs_mode", obs_mode, OBS_MODES)
        check_choice("reward", reward, REWARDS)
        check_choice("observation", observation, OBSERVATIONS)
        iou_reward_scale = check_number("iou_reward_scale", iou_reward_scale, minimum=0.0, exclusive=True)
        repeat_penalty = check_number("repeat_penalty", repeat_penalty, minimum=0.0)
        for name, flag in (("observe_srm", observe_srm), ("observe_time", observe_time), ("stop_action", stop_action)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        if observe_time and obs_mode != "full":
            raise ValueError("observe_time=True needs obs_mode='full' (the prompts left are one more channel of the "
                             "full observation)")
        check_choice("budget_end", budget_end, BUDGET_ENDS)
        if embedding_table is not None and not isinstance(embedding_table, EmbeddingTable):
            raise ValueError(f"embedding_table must be an alignsam_gym.observation.EmbeddingTable, got "
                             f"{type(embedding_table).__name__}")

        spec = get_task(task or DEFAULT_TASK)
        self.task = spec.name
        if text_prompt is not None and (not isinstance(text_prompt, str) or not text_prompt.strip()):
            raise ValueError(f"text_prompt must be a non-empty string, got {text_prompt!r}")
        #: the text prompt of the CLIP maps: ``text_prompt`` or the task's (paper Table 6)
        self.text_prompt = text_prompt or spec.text_prompt
        subset_seed = check_int("subset_seed", subset_seed, 0)
        self.dataset = make_dataset(self.task, split, num_images, data_root, subset_seed)
        backend_kwargs = backend_arguments(backend, sam_checkpoint, sam_model_type, backend_kwargs)
        self.backend: PromptableSegmenter = shared_backend(backend, device=device, **backend_kwargs)
        self.cache = shared_cache(cache_dir)
        self.clip_maps = None
        if label_source == "clip" or clip_checkpoint is not None:
            from alignsam_gym.backends.clip_surgery import shared_clip_maps

            self.clip_maps = shared_clip_maps(clip_checkpoint, self.text_prompt, clip_model, device)

        channels, height, width = self.backend.feature_shape
        if obs_size is None:
            if height != width:
                raise ValueError(f"backend {backend!r} has a non-square {height}x{width} embedding grid: pass obs_size")
            obs_size = height
        obs_size = check_int("obs_size", obs_size, 1)
        self.settings = EnvSettings(grid_size, image_size, max_prompts, label_source, init_prompts, obs_size,
                                    obs_dtype, obs_mode, reward, float(iou_reward_scale), float(repeat_penalty),
                                    observation, bool(observe_srm), bool(observe_time), budget_end,
                                    bool(stop_action))
        state_channels = agent_channels(channels, observation, observe_srm) + bool(observe_time)
        self.embedding_table: EmbeddingTable | None = None
        if obs_mode == "full":
            self.observation_space: spaces.Space = spaces.Box(-np.inf, np.inf, (state_channels, obs_size, obs_size),
                                                              OBS_DTYPES[obs_dtype])
        else:
            self.observation_space = CompactObservationSpace((channels, height, width), obs_size, observation,
                                                             observe_srm)
            self.embedding_table = embedding_table if embedding_table is not None else EmbeddingTable()
            self.embedding_table.reserve((id(self.dataset), id(self.backend)), len(self.dataset),
                                         4 * channels * height * width)
        self.action_space = spaces.Discrete(grid_size**2 + bool(stop_action))
        #: the stop action (``grid_size**2``), or None without ``stop_action``
        self.stop = grid_size**2 if stop_action else None

        # The SRM: the paper's branch for the task, unless overridden; the explicit branch needs CLIP maps,
        # so without them a task whose paper branch is explicit runs the implicit one (srm_branch says which).
        if srm_branch == "explicit" and self.clip_maps is None:
            raise ValueError("srm_branch='explicit' needs CLIP-Surgery maps: pass clip_checkpoint=PATH")
        branch = srm_branch or (spec.branch if self.clip_maps is not None else "implicit")
        # one device for the env's models: the backend's (a backend without one: the CPU), resolved on first use
        self.srm = SRMLabeler(channels, branch, device=getattr(self.backend, "device_spec", "cpu"))
        if srm_checkpoint is not None:
            self._load_srm(srm_checkpoint)
        self.labeler: Labeler = self.srm if label_source == "srm" else make_labeler(label_source)

        centres = (np.arange(grid_size) + 0.5) * image_size / grid_size
        cols, rows = np.meshgrid(centres, centres)
        #: ``(grid_size**2, 2)`` prompt ``(x, y)`` in pixels for each action
        self.action_points = np.stack([cols.ravel(), rows.ravel()], axis=1)

    def _load_srm(self, path: str) -> None:
        """Start the SRM from the weights of an SRM file (``srm_checkpoint``), checked against this env's SRM."""
        saved = load_srm_file(path)
        if saved.branch is not None and saved.branch != self.srm.branch:
            raise ValueError(f"srm_checkpoint {path} holds the {saved.branch!r} SRM branch; this env runs the "
                             f"{self.srm.branch!r} branch (set srm_branch={saved.branch!r}, with clip_checkpoint for "
                             f"the explicit branch)")
        expected = self.srm.network.state_dict()
        for name, tensor in expected.items():
            got = saved.weights.get(name)
            if got is None or tuple(got.shape) != tuple(tensor.shape):
                found = "missing" if got is None else f"shape {tuple(got.shape)}"
                raise ValueError(f"srm_checkpoint {path} does not fit this env's SRM (backend {self.backend.name!r}, "
                                 f"{self.srm.branch} branch): {name} is {found}, expected {tuple(tensor.shape)}")
        extra = sorted(set(saved.weights) - set(expected))
        if extra:
            raise ValueError(f"srm_checkpoint {path} has weights this env's SRM lacks: {', '.join(extra[:5])}")
        self.srm.set_weights(saved.weights)

    # -- episodes ------------------------------------------------------------------------------------
    def image_index(self, options: dict[str, Any] | None, rng: np.random.Generator) -> int:
        """``options["image_index"]`` (checked) or a uniform draw from ``rng``."""
        if options and "image_index" in options:
            index = options["image_index"]
            if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.dataset):
                raise ValueError(f"options['image_index'] must be an int in [0, {len(self.dataset)}), got {index!r}")
            return int(index)
        return int(rng.integers(len(self.dataset)))

    def start(self, index: int, rng: np.random.Generator) -> Episode:
        """A new episode on image ``index``: encoded (from the cache when it can), with its initial
        prompts (drawn with ``rng`` for ``random_gt``) decoded."""
        settings = self.settings
        image, mask, digest, ignore = prepared_sample(self.dataset, index, settings.image_size)
        try:
            embedding = self.cache.encode(self.backend, image, digest)
        except ValueError as err:
            name = self.dataset[index].name
            raise ValueError(f"{self.task} image {name!r} (index {index}): {err}") from err
        key = None
        if self.embedding_table is not None:
            key = embedding_key(self.backend.identity, digest)
            self.embedding_table.publish(key, embedding.features)
        clip_map = None
        if self.clip_maps is not None:
            clip_map = self.cache.encode(self.clip_maps, image, digest).features[0]
        episode = Episode(index, image, mask, embedding, settings.max_prompts, self.action_space.n, clip_map, key,
                          ignore)
        if settings.init_prompts == "random_gt":  # an empty or all-foreground mask has only one kind of point
            for region, label in ((mask, 1), (~mask, 0)):
                if region.any():
                    episode.add_initial_prompt(_random_pixel(region, rng), label)
        else:  # the SRM's most and least confident positions on the unmasked embedding
            best, worst, shape = self.srm.initial_cells(episode)
            episode.add_initial_prompt(self._cell_centre(best, shape), 1)
            episode.add_initial_prompt(self._cell_centre(worst, shape), 0)
        episode.set_logits(self.backend.decode(embedding, *episode.prompt_arrays()))
        return episode

    def check_action(self, episode: Episode | None, action: Any) -> int:
        """``action`` as an int; :raises: ``RuntimeError`` before ``reset`` or after the episode's end,
        ``ValueError`` for anything but an integer in ``[0, action_space.n)``."""
        if episode is None:
            raise RuntimeError("call reset() before step()")
        if episode.done:
            raise RuntimeError(f"the episode has ended ({episode.end}); call reset()")
        if isinstance(action, np.ndarray) and action.ndim == 0:
            action = action.item()
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)) \
                or not 0 <= int(action) < self.action_space.n:  # any int, however large (no dtype cast)
            raise ValueError(f"action must be an integer in [0, {self.action_space.n}), got {action!r}")
        return int(action)

    def step(self, episodes: Sequence[Episode | None], actions: Sequence[Any]) -> list[StepResult]:
        """Advance each episode by its action: every action is validated before any episode changes,
        the labeler labels all new prompts in one call, the backend decodes all prompt sets in one
        ``decode_batch`` call. Returns one ``(obs, reward, terminated, truncated, info)`` per episode."""
        if len(episodes) != len(actions):
            raise ValueError(f"expected {len(episodes)} actions, got {len(actions)}")
        if not episodes:
            return []
        actions = [self.check_action(e, a) for e, a in zip(episodes, actions)]
        results: list[StepResult | None] = [None] * len(episodes)
        for i, (episode, action) in enumerate(zip(episodes, actions)):
            if action == self.stop:  # ends the episode, the mask kept: no prompt, no reward
                episode.stop()
                results[i] = (self.observe(episode), 0.0, True, False, self.step_info(episode, False, -1))
        prompting = [i for i, action in enumerate(actions) if action != self.stop]
        episodes, actions = [episodes[i] for i in prompting], [actions[i] for i in prompting]
        repeats = [bool(e.prompted[a]) for e, a in zip(episodes, actions)]
        before = [e.iou for e in episodes]
        points = [self.action_points[a] for a in actions]
        truths = [e.is_foreground(p) for e, p in zip(episodes, points)]
        labels = self.labeler.label(episodes, points, self.settings.image_size) if episodes else []
        for episode, action, point, label in zip(episodes, actions, points, labels):
            episode.add_prompt(action, point, label)
        prompts = [e.prompt_arrays() for e in episodes]
        logits = self.backend.decode_batch([e.embedding for e in episodes], [p for p, _ in prompts],
                                           [lab for _, lab in prompts]) if episodes else []
        for i, episode, mask_logits, truth, label, iou_before, repeat in zip(prompting, episodes, logits, truths,
                                                                             labels, before, repeats):
            episode.set_logits(mask_logits)
            reward = self.reward(truth, episode.iou - iou_before, repeat)
            truncated = episode.done and self.settings.budget_end == "truncated"
            results[i] = (self.observe(episode), reward, episode.done and not truncated, truncated,
                          self.step_info(episode, truth, label))
        return results

    def step_info(self, episode: Episode, is_foreground: bool, label: int) -> dict[str, Any]:
        """The ``info`` of a step (see the env's docstring); a stop has ``is_foreground`` False and ``label`` -1."""
        return {"iou": episode.iou, "is_foreground": is_foreground, "label": label,
                "num_prompts": episode.num_prompts, "stopped": episode.stopped, "action_mask": ~episode.prompted}

    def reward(self, is_foreground: bool, iou_gain: float, repeat: bool) -> float:
        """The reward of one prompt (see the env's Rewards section): +1/-1 for a foreground/background point
        (``"foreground"``), ``iou_reward_scale`` times the IoU change it caused (``"iou_gain"``), or both
        (``"foreground+iou"``); minus ``repeat_penalty`` for a cell prompted before in the episode."""
        settings = self.settings
        value = 0.0
        if settings.reward in ("foreground", "foreground+iou"):
            value += 1.0 if is_foreground else -1.0
        if settings.reward in ("iou_gain", "foreground+iou"):
            value += settings.iou_reward_scale * float(iou_gain)
        if repeat:
            value -= settings.repeat_penalty
        return value

    def reset_info(self, episode: Episode) -> dict[str, Any]:
        return {"iou": episode.iou, "num_prompts": 0, "image_index": episode.image_index,
                "action_mask": ~episode.prompted}

    def observe(self, episode: Episode) -> np.ndarray | dict[str, np.ndarray]:
        """The episode's observation (the ``observation`` option's state, pooled to ``obs_size``), or its compact
        form."""
        settings = self.settings
        srm_map = self.srm.probabilities([episode])[0] if settings.observe_srm else None
        if settings.obs_mode == "compact":
            compact = {"mask": episode.grid_mask.copy(), "embedding_key": episode.embedding_key.copy()}
            if srm_map is not None:
                compact["srm"] = np.asarray(srm_map, np.float32).copy()
            return compact
        if settings.observation == "masked" and srm_map is None:
            state = episode.state  # the paper's s_t, memoized (the SRM reads it too)
        else:
            state = agent_state(episode.embedding.features, episode.grid_mask, settings.observation, srm_map)
        obs = full_observation(state, settings.obs_size, self.observation_space.dtype)
        if settings.observe_time:  # prompts left, as a fraction of the budget: 1 at reset, 0 after the last
            left = (settings.max_prompts - episode.num_prompts) / settings.max_prompts
            obs = np.concatenate([obs, np.full((1, *obs.shape[1:]), left, obs.dtype)])
        return obs

    def srm_scores(self, episode: Episode) -> np.ndarray:
        """``(grid_size**2,) float32``: the SRM's probability on the current state at each action point."""
        return self.srm.scores(episode, self.action_points, self.settings.image_size)

    def preview(self, episode: Episode, actions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`step` would give for each of ``actions`` in the episode's current state, the episode left
        as it is: each prompt labelled as the labeler would label it, all prompt sets decoded in one batch.

        :return: ``(K,) int64`` labels and ``(K, h_m, w_m) float32`` mask logits.
        """
        actions = [self.check_action(episode, a) for a in actions]
        if not actions:
            return np.zeros(0, np.int64), np.zeros((0, *episode.embedding.mask_shape), np.float32)
        points = [self.action_points[a] for a in actions]
        labels = np.array(self.labeler.label([episode] * len(points), points, self.settings.image_size), np.int64)
        base_points, base_labels = episode.prompt_arrays()
        logits = self.backend.decode_batch([episode.embedding] * len(actions),
                                           [np.concatenate([base_points, p[None]]) for p in points],
                                           [np.concatenate([base_labels, [label]]) for label in labels])
        return labels, np.stack(logits)

    def _cell_centre(self, flat_index: int, shape: tuple[int, int]) -> np.ndarray:
        row, col = divmod(flat_index, shape[1])
        size = self.settings.image_size
        return np.array([(col + 0.5) * size / shape[1], (row + 0.5) * size / shape[0]])


def _random_pixel(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The centre ``(x, y)`` of a pixel of ``region`` drawn uniformly with ``rng``."""
    flat = np.flatnonzero(region)
    k = flat[rng.integers(flat.size)]
    row, col = divmod(int(k), region.shape[1])
    return np.array([col + 0.5, row + 0.5])
