"""The parts an AlignSAM env is made of, and its dynamics over a batch of episodes.

:class:`EnvCore` is built once from the env's validated arguments (an
:class:`~alignsam_gym.envs.config.EnvConfig`): the task's dataset, the shared
backend and embedding cache, the CLIP-Surgery maps, the labeler (the SRM labeler owns the SRM), the
spaces. It knows nothing of how many envs use it. Its methods start an :class:`~alignsam_gym.episode.Episode`
and advance a batch of episodes by one step each: validate every action before any episode moves,
label the new prompts with one labeler call, decode every prompt set with one ``decode_batch`` call.
:class:`~alignsam_gym.envs.alignsam_env.AlignSAMEnv` runs it on one episode, the vector envs on N;
all the envs of a vector env share one core, so one SRM by construction.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
from gymnasium import spaces

from alignsam_gym.backends import PromptableSegmenter, shared_backend, shared_cache
from alignsam_gym.data.prepare import prepared_sample
from alignsam_gym.data.tasks import DEFAULT_TASK, get_task, make_dataset
from alignsam_gym.envs.config import OBS_DTYPES, EnvConfig, ObservationConfig
from alignsam_gym.episode import Episode
from alignsam_gym.labels import Labeler, SRMLabeler, make_labeler
from alignsam_gym.observation import (CompactObservationSpace, EmbeddingTable, agent_channels, agent_state,
                                     embedding_key, full_observation)
from alignsam_gym.srm import load_srm_file

#: ``(obs, reward, terminated, truncated, info)``
StepResult = tuple[Any, float, bool, bool, dict[str, Any]]


class EnvCore:
    """Everything an AlignSAM env holds besides its episode; see the module docstring.

    :param config: the env's validated keyword arguments (:class:`~alignsam_gym.envs.config.EnvConfig`).
    :param embedding_table: the table compact observations publish into (a new one when None).
    """

    def __init__(self, config: EnvConfig, embedding_table: EmbeddingTable | None = None) -> None:
        if embedding_table is not None and not isinstance(embedding_table, EmbeddingTable):
            raise ValueError(f"embedding_table must be an alignsam_gym.observation.EmbeddingTable, got "
                             f"{type(embedding_table).__name__}")
        spec = get_task(config.data.task or DEFAULT_TASK)
        self.task = spec.name
        #: the text prompt of the CLIP maps: ``text_prompt`` or the task's (paper Table 6)
        self.text_prompt = config.labels.text_prompt or spec.text_prompt
        data, segmenter = config.data, config.segmenter
        self.dataset = make_dataset(self.task, data.split, data.num_images, data.data_root, data.subset_seed)
        self.backend: PromptableSegmenter = shared_backend(segmenter.backend, device=segmenter.device,
                                                           **segmenter.backend_arguments())
        self.cache = shared_cache(segmenter.cache_dir)
        self.clip_maps = None
        if config.labels.label_source == "clip" or segmenter.clip_checkpoint is not None:
            from alignsam_gym.backends.clip_surgery import shared_clip_maps

            self.clip_maps = shared_clip_maps(segmenter.clip_checkpoint, self.text_prompt, segmenter.clip_model,
                                              segmenter.device)
        #: the env's config, ``obs.obs_size`` resolved to the embedding grid's size when it was None
        self.config = replace(config, obs=replace(config.obs, obs_size=self._obs_size(config.obs)))
        self.observation_space, self.embedding_table = self._observation_space(embedding_table)
        self.action_space = spaces.Discrete(config.episode.grid_size**2 + config.episode.stop_action)
        #: the stop action (``grid_size**2``), or None without ``stop_action``
        self.stop = config.episode.grid_size**2 if config.episode.stop_action else None
        self.srm = self._make_srm(spec.branch)
        self.labeler: Labeler = self.srm if config.labels.label_source == "srm" \
            else make_labeler(config.labels.label_source)
        #: ``(grid_size**2, 2)`` prompt ``(x, y)`` in pixels for each action
        self.action_points = config.episode.action_points

    def _obs_size(self, obs: ObservationConfig) -> int:
        """``obs_size``, or the backend's embedding grid size when it is None (a square grid)."""
        if obs.obs_size is not None:
            return obs.obs_size
        _, height, width = self.backend.feature_shape
        if height != width:
            raise ValueError(f"backend {self.backend.name!r} has a non-square {height}x{width} embedding grid: "
                             f"pass obs_size")
        return height

    def _observation_space(self, table: EmbeddingTable | None) -> tuple[spaces.Space, EmbeddingTable | None]:
        """The observation space, and for compact observations the table they publish into (room reserved for
        every image of the dataset, so a table too small fails now, not mid-training)."""
        obs = self.config.obs
        channels, height, width = self.backend.feature_shape
        if obs.obs_mode == "full":
            state_channels = agent_channels(channels, obs.observation, obs.observe_srm) + obs.observe_time
            return spaces.Box(-np.inf, np.inf, (state_channels, obs.obs_size, obs.obs_size),
                              OBS_DTYPES[obs.obs_dtype]), None
        table = table if table is not None else EmbeddingTable()
        table.reserve((id(self.dataset), id(self.backend)), len(self.dataset), 4 * channels * height * width)
        return CompactObservationSpace((channels, height, width), obs.obs_size, obs.observation, obs.observe_srm), table

    def _make_srm(self, task_branch: str) -> SRMLabeler:
        """The SRM: the paper's branch for the task, unless ``srm_branch`` overrides it; the explicit branch needs
        CLIP maps, so without them a task whose paper branch is explicit runs the implicit one (``srm_branch``
        says which). It runs on the backend's device (a backend without one: the CPU), resolved on first use."""
        labels = self.config.labels
        if labels.srm_branch == "explicit" and self.clip_maps is None:
            raise ValueError("srm_branch='explicit' needs CLIP-Surgery maps: pass clip_checkpoint=PATH")
        branch = labels.srm_branch or (task_branch if self.clip_maps is not None else "implicit")
        srm = SRMLabeler(self.backend.feature_shape[0], branch, device=getattr(self.backend, "device_spec", "cpu"))
        if labels.srm_checkpoint is not None:
            self._load_srm(srm, labels.srm_checkpoint)
        return srm

    def _load_srm(self, srm: SRMLabeler, path: str) -> None:
        """Start ``srm`` from the weights of an SRM file (``srm_checkpoint``), checked against it."""
        saved = load_srm_file(path)
        if saved.branch is not None and saved.branch != srm.branch:
            raise ValueError(f"srm_checkpoint {path} holds the {saved.branch!r} SRM branch; this env runs the "
                             f"{srm.branch!r} branch (set srm_branch={saved.branch!r}, with clip_checkpoint for "
                             f"the explicit branch)")
        expected = srm.network.state_dict()
        for name, tensor in expected.items():
            got = saved.weights.get(name)
            if got is None or tuple(got.shape) != tuple(tensor.shape):
                found = "missing" if got is None else f"shape {tuple(got.shape)}"
                raise ValueError(f"srm_checkpoint {path} does not fit this env's SRM (backend {self.backend.name!r}, "
                                 f"{srm.branch} branch): {name} is {found}, expected {tuple(tensor.shape)}")
        extra = sorted(set(saved.weights) - set(expected))
        if extra:
            raise ValueError(f"srm_checkpoint {path} has weights this env's SRM lacks: {', '.join(extra[:5])}")
        srm.set_weights(saved.weights)

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
        episode_config = self.config.episode
        image, mask, digest, ignore = prepared_sample(self.dataset, index, episode_config.image_size)
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
        episode = Episode(index, image, mask, embedding, episode_config.max_prompts, self.action_space.n, clip_map, key,
                          ignore)
        if episode_config.init_prompts == "random_gt":  # an empty or all-foreground mask has only one kind of point
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
        labels = self.labeler.label(episodes, points, self.config.episode.image_size) if episodes else []
        for episode, action, point, label in zip(episodes, actions, points, labels):
            episode.add_prompt(action, point, label)
        prompts = [e.prompt_arrays() for e in episodes]
        logits = self.backend.decode_batch([e.embedding for e in episodes], [p for p, _ in prompts],
                                           [lab for _, lab in prompts]) if episodes else []
        for i, episode, mask_logits, truth, label, iou_before, repeat in zip(prompting, episodes, logits, truths,
                                                                             labels, before, repeats):
            episode.set_logits(mask_logits)
            reward = self.reward(truth, episode.iou - iou_before, repeat)
            truncated = episode.done and self.config.episode.budget_end == "truncated"
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
        rewards = self.config.rewards
        value = 0.0
        if rewards.reward in ("foreground", "foreground+iou"):
            value += 1.0 if is_foreground else -1.0
        if rewards.reward in ("iou_gain", "foreground+iou"):
            value += rewards.iou_reward_scale * float(iou_gain)
        if repeat:
            value -= rewards.repeat_penalty
        return value

    def reset_info(self, episode: Episode) -> dict[str, Any]:
        return {"iou": episode.iou, "num_prompts": 0, "image_index": episode.image_index,
                "action_mask": ~episode.prompted}

    def observe(self, episode: Episode) -> np.ndarray | dict[str, np.ndarray]:
        """The episode's observation (the ``observation`` option's state, pooled to ``obs_size``), or its compact
        form."""
        obs_config, max_prompts = self.config.obs, self.config.episode.max_prompts
        srm_map = self.srm.probabilities([episode])[0] if obs_config.observe_srm else None
        if obs_config.obs_mode == "compact":
            compact = {"mask": episode.grid_mask.copy(), "embedding_key": episode.embedding_key.copy()}
            if srm_map is not None:
                compact["srm"] = np.asarray(srm_map, np.float32).copy()
            return compact
        if obs_config.observation == "masked" and srm_map is None:
            state = episode.state  # the paper's s_t, memoized (the SRM reads it too)
        else:
            state = agent_state(episode.embedding.features, episode.grid_mask, obs_config.observation, srm_map)
        obs = full_observation(state, obs_config.obs_size, self.observation_space.dtype)
        if obs_config.observe_time:  # prompts left, as a fraction of the budget: 1 at reset, 0 after the last
            left = (max_prompts - episode.num_prompts) / max_prompts
            obs = np.concatenate([obs, np.full((1, *obs.shape[1:]), left, obs.dtype)])
        return obs

    def srm_scores(self, episode: Episode) -> np.ndarray:
        """``(grid_size**2,) float32``: the SRM's probability on the current state at each action point."""
        return self.srm.scores(episode, self.action_points, self.config.episode.image_size)

    def preview(self, episode: Episode, actions: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`step` would give for each of ``actions`` in the episode's current state, the episode left
        as it is: each prompt labelled as the labeler would label it, all candidates decoded in one call
        (:meth:`~alignsam_gym.backends.base.PromptableSegmenter.decode_candidates`).

        :return: ``(K,) int64`` labels and ``(K, h_m, w_m) float32`` mask logits.
        """
        actions = [self.check_action(episode, a) for a in actions]
        if not actions:
            return np.zeros(0, np.int64), np.zeros((0, *episode.embedding.mask_shape), np.float32)
        points = np.array([self.action_points[a] for a in actions], np.float64)
        labels = np.array(self.labeler.label([episode] * len(points), list(points), self.config.episode.image_size),
                          np.int64)
        base_points, base_labels = episode.prompt_arrays()
        return labels, self.backend.decode_candidates(episode.embedding, base_points, base_labels, points, labels)

    def _cell_centre(self, flat_index: int, shape: tuple[int, int]) -> np.ndarray:
        row, col = divmod(flat_index, shape[1])
        size = self.config.episode.image_size
        return np.array([(col + 0.5) * size / shape[1], (row + 0.5) * size / shape[0]])


def _random_pixel(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The centre ``(x, y)`` of a pixel of ``region`` drawn uniformly with ``rng``."""
    flat = np.flatnonzero(region)
    k = flat[rng.integers(flat.size)]
    row, col = divmod(int(k), region.shape[1])
    return np.array([col + 0.5, row + 0.5])
