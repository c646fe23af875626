"""``EnvConfig``: the env's keyword arguments as one typed, frozen, validated value.

``gym.make("AlignSAM-v0", **kwargs)`` takes flat keyword arguments (the public contract); they are read once
into an :class:`EnvConfig` of six parts, each validated when it is built, so a bad value is an error that names
its argument before anything is loaded::

    config = EnvConfig.from_kwargs({"task": "synthetic-shapes", "max_prompts": 10})
    config.episode.max_prompts          # 10
    config.to_kwargs()                  # every argument, flat again (a run config's ``env:`` block)

Run, benchmark and RLlib configs check their ``env:`` blocks with :meth:`EnvConfig.from_kwargs` when they are
loaded. What each argument means is in :class:`~alignsam_gym.envs.alignsam_env.AlignSAMEnv`'s docstring, whose
Arguments section is tested against :data:`EnvConfig.KEYWORDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from alignsam_gym.backends import backend_arguments
from alignsam_gym.data.tasks import DEFAULT_TASK, get_task
from alignsam_gym.labels import LABEL_SOURCES
from alignsam_gym.observation import OBSERVATIONS

INIT_PROMPTS = ("random_gt", "srm")
SRM_BRANCHES = ("implicit", "explicit")
OBS_DTYPES = {"float32": np.float32, "float16": np.float16}
OBS_MODES = ("full", "compact")
#: the reward options; ``"foreground"`` is the paper's +1/-1
REWARDS = ("foreground", "iou_gain", "foreground+iou")
#: how a spent prompt budget ends the episode: ``terminated`` (default: no value past it) or ``truncated`` (SB3
#: then bootstraps V(s_T), as the paper's Eq. 6 does)
BUDGET_ENDS = ("terminated", "truncated")


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


def check_flag(name: str, value: Any) -> bool:
    """:raises ValueError: naming ``name`` unless ``value`` is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _normalise(part: Any, name: str, value: Any) -> None:
    object.__setattr__(part, name, value)  # frozen dataclasses keep the validated, normalised value


@dataclass(frozen=True)
class DataConfig:
    """Which images: ``task`` (None: the default task), ``data_root``, ``split``, ``num_images``, ``subset_seed``."""

    task: str | None = None
    data_root: str | None = None
    split: str = "train"
    num_images: int = 50
    subset_seed: int = 0

    def __post_init__(self) -> None:
        _normalise(self, "num_images", check_int("num_images", self.num_images, 1))
        _normalise(self, "subset_seed", check_int("subset_seed", self.subset_seed, 0))
        get_task(self.task or DEFAULT_TASK)  # an unknown task is an error that lists the known ones


@dataclass(frozen=True)
class SegmenterConfig:
    """The promptable segmenter and its models: ``backend``, its checkpoint and extra arguments, the embedding
    cache, the CLIP-Surgery model, and the ``device`` of every model the env runs."""

    backend: str = "lite"
    sam_checkpoint: str | None = None
    sam_model_type: str | None = None
    backend_kwargs: Mapping[str, Any] | None = None
    cache_dir: str | bool | None = None
    clip_checkpoint: str | None = None
    clip_model: str = "ViT-B-16"
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.backend_kwargs is not None:
            if not isinstance(self.backend_kwargs, Mapping):
                raise ValueError(f"backend_kwargs must be a mapping of the backend's keyword arguments, got "
                                 f"{type(self.backend_kwargs).__name__}")
            _normalise(self, "backend_kwargs", dict(self.backend_kwargs))  # a copy: the caller's dict may change
        backend_arguments(self.backend, self.sam_checkpoint, self.sam_model_type, self.backend_kwargs)

    def backend_arguments(self) -> dict[str, Any]:
        """The backend's keyword arguments (``backend_kwargs`` with the checkpoint and model type merged in)."""
        return backend_arguments(self.backend, self.sam_checkpoint, self.sam_model_type,
                                 None if self.backend_kwargs is None else dict(self.backend_kwargs))


@dataclass(frozen=True)
class LabelConfig:
    """Who labels a prompt: ``label_source``, the SRM's ``srm_branch`` and ``srm_checkpoint``, the CLIP maps'
    ``text_prompt``."""

    label_source: str = "srm"
    srm_branch: str | None = None
    srm_checkpoint: str | None = None
    text_prompt: str | None = None

    def __post_init__(self) -> None:
        check_choice("label_source", self.label_source, LABEL_SOURCES)
        if self.srm_branch is not None:
            check_choice("srm_branch", self.srm_branch, SRM_BRANCHES)
        if self.text_prompt is not None and (not isinstance(self.text_prompt, str) or not self.text_prompt.strip()):
            raise ValueError(f"text_prompt must be a non-empty string, got {self.text_prompt!r}")


@dataclass(frozen=True)
class EpisodeConfig:
    """How an episode runs: the action grid, the image size, the prompt budget and how it ends, the initial
    prompts and the optional stop action."""

    grid_size: int = 10
    image_size: int = 800
    max_prompts: int = 15
    init_prompts: str = "random_gt"
    budget_end: str = "terminated"
    stop_action: bool = False

    def __post_init__(self) -> None:
        for name in ("grid_size", "image_size", "max_prompts"):
            _normalise(self, name, check_int(name, getattr(self, name), 1))
        if self.image_size < self.grid_size:
            raise ValueError(f"image_size ({self.image_size}) must be at least grid_size ({self.grid_size})")
        check_choice("init_prompts", self.init_prompts, INIT_PROMPTS)
        check_choice("budget_end", self.budget_end, BUDGET_ENDS)
        _normalise(self, "stop_action", check_flag("stop_action", self.stop_action))

    @property
    def action_points(self) -> np.ndarray:
        """``(grid_size**2, 2) float64``: each action's prompt ``(x, y)`` in pixels, the centre of its cell."""
        centres = (np.arange(self.grid_size) + 0.5) * self.image_size / self.grid_size
        cols, rows = np.meshgrid(centres, centres)
        return np.stack([cols.ravel(), rows.ravel()], axis=1)


@dataclass(frozen=True)
class ObservationConfig:
    """What the agent sees: ``observation`` (and the SRM's map, the prompts left), pooled to ``obs_size`` (None:
    the embedding grid's size, resolved when the backend is known), in ``obs_dtype``, full or compact."""

    obs_size: int | None = None
    obs_dtype: str = "float32"
    obs_mode: str = "full"
    observation: str = "masked"
    observe_srm: bool = False
    observe_time: bool = False

    def __post_init__(self) -> None:
        if self.obs_size is not None:
            _normalise(self, "obs_size", check_int("obs_size", self.obs_size, 1))
        check_choice("obs_dtype", self.obs_dtype, tuple(OBS_DTYPES))
        check_choice("obs_mode", self.obs_mode, OBS_MODES)
        check_choice("observation", self.observation, OBSERVATIONS)
        for name in ("observe_srm", "observe_time"):
            _normalise(self, name, check_flag(name, getattr(self, name)))
        if self.observe_time and self.obs_mode != "full":
            raise ValueError("observe_time=True needs obs_mode='full' (the prompts left are one more channel of the "
                             "full observation)")


@dataclass(frozen=True)
class RewardConfig:
    """What a prompt earns: ``reward``, the scale of IoU rewards, a penalty for a cell prompted again."""

    reward: str = "foreground"
    iou_reward_scale: float = 10.0
    repeat_penalty: float = 0.0

    def __post_init__(self) -> None:
        check_choice("reward", self.reward, REWARDS)
        _normalise(self, "iou_reward_scale", check_number("iou_reward_scale", self.iou_reward_scale, 0.0,
                                                          exclusive=True))
        _normalise(self, "repeat_penalty", check_number("repeat_penalty", self.repeat_penalty, 0.0))


@dataclass(frozen=True)
class EnvConfig:
    """Every keyword argument of ``AlignSAM-v0`` but ``render_mode`` and ``embedding_table``, in six validated
    parts. Frozen (no field can be reassigned); ``backend_kwargs`` is a mapping, so a config is not hashable."""

    data: DataConfig = field(default_factory=DataConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    obs: ObservationConfig = field(default_factory=ObservationConfig)
    rewards: RewardConfig = field(default_factory=RewardConfig)

    #: the part that holds each keyword argument
    PARTS: ClassVar[dict[str, type]] = {"data": DataConfig, "segmenter": SegmenterConfig, "labels": LabelConfig,
                                        "episode": EpisodeConfig, "obs": ObservationConfig, "rewards": RewardConfig}
    #: every keyword argument, in the parts' order
    KEYWORDS: ClassVar[tuple[str, ...]] = tuple(f.name for part in PARTS.values() for f in fields(part))

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> EnvConfig:
        """The config of ``gym.make("AlignSAM-v0", **kwargs)`` (without ``render_mode``).

        :raises TypeError: for a keyword the env does not take, naming it.
        :raises ValueError: for a bad value, naming its argument and what was expected.
        """
        unknown = sorted(set(kwargs) - set(cls.KEYWORDS))
        if unknown:
            raise TypeError(f"AlignSAM-v0 got unexpected keyword arguments {unknown}; it takes "
                            f"{sorted(cls.KEYWORDS)}, render_mode and embedding_table")
        return cls(**{name: part(**{f.name: kwargs[f.name] for f in fields(part) if f.name in kwargs})
                      for name, part in cls.PARTS.items()})

    def to_kwargs(self) -> dict[str, Any]:
        """Every keyword argument, flat: ``EnvConfig.from_kwargs(config.to_kwargs()) == config``."""
        return {f.name: getattr(getattr(self, name), f.name) for name, part in self.PARTS.items()
                for f in fields(part)}
