"""Promptable segmenters behind one protocol, and the registry that names them.

A backend is registered under a short name with a factory (any callable returning a
:class:`PromptableSegmenter`). The env asks for backends through :func:`shared_backend`, so every
env in a process shares one instance and one set of loaded weights. To plug in another model::

    from alignsam_gym.backends import register_backend
    register_backend("my-sam", lambda device="auto", **kw: MySegmenter(device=device, **kw))
    env = gym.make("AlignSAM-v0", backend="my-sam")
"""

from __future__ import annotations

from typing import Any, Callable

from alignsam_gym.backends.base import ImageEmbedding, PromptableSegmenter
from alignsam_gym.backends.embedding_cache import EmbeddingCache, default_cache_dir, shared_cache
from alignsam_gym.digests import image_digest
from alignsam_gym.shared import SharedInstances

__all__ = [
    "BACKENDS", "EmbeddingCache", "ImageEmbedding", "PromptableSegmenter", "backend_arguments", "default_cache_dir",
    "image_digest",
    "make_backend", "register_backend", "shared_backend", "shared_cache",
]

BACKENDS: dict[str, Callable[..., PromptableSegmenter]] = {}
_shared: SharedInstances[PromptableSegmenter] = SharedInstances()


def register_backend(name: str, factory: Callable[..., PromptableSegmenter], *, overwrite: bool = False) -> None:
    """Register ``factory`` under ``name`` (it receives the env's backend keyword arguments)."""
    if name in BACKENDS and not overwrite:
        raise ValueError(f"backend {name!r} is already registered; pass overwrite=True to replace it")
    BACKENDS[name] = factory


def make_backend(name: str, **kwargs: Any) -> PromptableSegmenter:
    """A new backend instance. Models still load lazily, on the first ``encode``.

    :raises ValueError: for an unknown name, or keyword arguments the backend does not take.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; registered backends: {sorted(BACKENDS)}")
    try:
        return BACKENDS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"backend {name!r} does not accept the arguments {sorted(kwargs)}: {err}") from err


def backend_arguments(name: str, sam_checkpoint: str | None = None, sam_model_type: str | None = None,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The backend keyword arguments for the user-facing ``sam_checkpoint``/``sam_model_type`` (env kwargs
    and CLI flags), merged into ``extra``.

    :raises ValueError: if they are given for the embedded ``lite`` backend, which has no checkpoint.
    """
    kwargs = dict(extra or {})
    if sam_checkpoint is not None or sam_model_type is not None:
        if name == "lite":
            raise ValueError("sam_checkpoint and sam_model_type apply to SAM backends, not to backend='lite'")
        if sam_checkpoint is not None:
            kwargs["checkpoint"] = str(sam_checkpoint)
        if sam_model_type is not None:
            kwargs["model_type"] = sam_model_type
    return kwargs


def shared_backend(name: str, **kwargs: Any) -> PromptableSegmenter:
    """The process-wide instance for ``(name, kwargs)``, created on first use."""
    key = (name, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    return _shared.get(key, lambda: make_backend(name, **kwargs))


def _make_lite(**kwargs: Any) -> PromptableSegmenter:
    from alignsam_gym.backends.lite import LiteBackend

    return LiteBackend(**kwargs)


def _make_sam(**kwargs: Any) -> PromptableSegmenter:
    from alignsam_gym.backends.sam import make_sam_backend

    return make_sam_backend(**kwargs)


def _make_sam2(**kwargs: Any) -> PromptableSegmenter:
    from alignsam_gym.backends.sam2 import make_sam2_backend

    return make_sam2_backend(**kwargs)


register_backend("lite", _make_lite)
register_backend("sam", _make_sam)
register_backend("sam2", _make_sam2)
