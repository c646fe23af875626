"""The agent's observation: ``s_t = E(x) * M``, in full or in compact form.

:func:`masked_state` is the one place that forms ``s_t`` (the paper's state, which the SRM also reads);
:func:`agent_state` forms what the agent observes from it under the env's ``observation`` option
(``"masked"``: ``s_t`` itself; ``"masked_plus"``: ``E * (1 + M)``; ``"channels"``: ``E`` and ``M`` as one
more channel; ``observe_srm``: the SRM's map as one more channel). The env (numpy, one state) and the SB3
plugin's features extractors (torch, a batch) both call it, and :func:`pool_state` pools it to
``obs_size`` for both.

Compact observations (``obs_mode="compact"``): an observation is ``{"mask": (h, w) float32,
"embedding_key": (16,) uint8}`` instead of the ``(C, h, w)`` masked embedding, so a rollout or replay
buffer holds a 1.6 KB mask per step instead of a 0.7 MB (embedded backend) or 4 MB (SAM) copy of the
same embedding. The env publishes each image's embedding in an :class:`EmbeddingTable` under its
key; whoever creates the envs owns the table and hands the same object to the extractor, which forms
``s_t`` from it exactly as the env forms the full observation. The table never drops an entry: each
env reserves room for its whole dataset when it is built, so a table too small for the data fails
then, with a message, and never as a missing key in the middle of a training update.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

#: length of an embedding key in bytes
KEY_BYTES = 16
#: default memory bound of an :class:`EmbeddingTable`
DEFAULT_TABLE_BYTES = 4 * 1024**3

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
#: what the agent observes (``observation`` env option); ``"masked"`` is the paper's ``s_t``
OBSERVATIONS = ("masked", "masked_plus", "channels")


def masked_state(features: ArrayT, mask: ArrayT) -> ArrayT:
    """``s_t = E(x) * M``: features ``(..., C, h, w)`` times the mask probability ``(..., h, w)`` at each
    position (numpy arrays or torch tensors, one state or a batch)."""
    return features * mask[..., None, :, :]


def agent_state(features: ArrayT, mask: ArrayT, observation: str = "masked", srm: ArrayT | None = None) -> ArrayT:
    """What the agent observes, from features ``(..., C, h, w)`` and the mask probability ``(..., h, w)``:
    ``"masked"`` ``E * M`` (``C`` channels), ``"masked_plus"`` ``E * (1 + M)`` (features outside the mask kept),
    ``"channels"`` ``E`` then ``M`` (``C + 1``); with ``srm`` (``(..., h, w)``, the SRM's foreground probability)
    one more channel after those. numpy arrays or torch tensors, one state or a batch."""
    if observation == "masked":
        state = masked_state(features, mask)
    elif observation == "masked_plus":
        state = features * (1 + mask[..., None, :, :])
    elif observation == "channels":
        state = _concat([features, mask[..., None, :, :]])
    else:
        raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
    return state if srm is None else _concat([state, srm[..., None, :, :]])


def agent_channels(channels: int, observation: str = "masked", observe_srm: bool = False) -> int:
    """The channels of :func:`agent_state` for an embedding of ``channels`` channels."""
    return channels + (observation == "channels") + bool(observe_srm)


def _concat(parts: list[ArrayT]) -> ArrayT:
    """Concatenate along the channel axis (-3), numpy or torch alike."""
    if isinstance(parts[0], torch.Tensor):
        return torch.cat([p.to(parts[0].dtype) for p in parts], dim=-3)
    return np.concatenate([np.asarray(p, dtype=parts[0].dtype) for p in parts], axis=-3)


def pool_state(state: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, C, h, w)`` states area-pooled to ``(B, C, size, size)`` (unchanged when already that size)."""
    if state.shape[-2:] != (size, size):
        state = F.interpolate(state, size=(size, size), mode="area")
    return state


def full_observation(state: np.ndarray, size: int, dtype: np.dtype) -> np.ndarray:
    """The full observation of one ``(C, h, w) float32`` state: pooled to ``(C, size, size)``, as ``dtype``."""
    if state.shape[-2:] != (size, size):
        state = pool_state(torch.from_numpy(state)[None], size)[0].numpy()
    return state.astype(dtype, copy=False)


class CompactObservationSpace(spaces.Dict):
    """``Dict(mask=Box(0, 1, (h, w), float32), embedding_key=Box(0, 255, (KEY_BYTES,), uint8))`` (and
    ``srm=Box(0, 1, (h, w), float32)`` with ``observe_srm``) that also says how to rebuild the full
    observation: ``embedding_shape`` ``(C, h, w)``, ``obs_size``, ``observation`` and ``observe_srm``."""

    def __init__(self, embedding_shape: tuple[int, int, int], obs_size: int, observation: str = "masked",
                 observe_srm: bool = False) -> None:
        channels, height, width = (int(v) for v in embedding_shape)
        parts = {"mask": spaces.Box(0.0, 1.0, (height, width), np.float32),
                 "embedding_key": spaces.Box(0, 255, (KEY_BYTES,), np.uint8)}
        if observe_srm:
            parts["srm"] = spaces.Box(0.0, 1.0, (height, width), np.float32)
        super().__init__(parts)
        self.embedding_shape = (channels, height, width)
        self.obs_size = int(obs_size)
        self.observation, self.observe_srm = observation, bool(observe_srm)

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """``(C', obs_size, obs_size)``: the full observation these compact ones stand for."""
        return (agent_channels(self.embedding_shape[0], self.observation, self.observe_srm), self.obs_size,
                self.obs_size)

    def __repr__(self) -> str:
        return (f"CompactObservationSpace(embedding_shape={self.embedding_shape}, obs_size={self.obs_size}, "
                f"observation={self.observation!r}, observe_srm={self.observe_srm})")


def embedding_key(identity: str, digest: str) -> np.ndarray:
    """``(KEY_BYTES,) uint8``: the key of the embedding of image ``digest`` by backend ``identity``."""
    h = hashlib.blake2b(f"{identity}\0{digest}".encode(), digest_size=KEY_BYTES)
    return np.frombuffer(h.digest(), dtype=np.uint8).copy()


class EmbeddingTable:
    """The embeddings behind compact observations, by key, for the envs and the extractor of one run.

    Entries are references to the arrays the embedding cache already holds (no copy). Nothing is ever
    evicted: :meth:`reserve` books room for a whole dataset up front and fails when the table's bound
    would be exceeded, so a replay buffer can never hold a key whose embedding is gone. Device copies
    for the extractor (:meth:`states`) are kept once per image and device, within the same bound.

    A pickled table (SB3 saves ``policy_kwargs`` with a model) comes back empty with the same bound:
    the entries belong to the process that published them.

    :param max_bytes: bound on the bytes of the reserved datasets' embeddings.
    """

    def __init__(self, max_bytes: int = DEFAULT_TABLE_BYTES) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        self.max_bytes = int(max_bytes)
        self._entries: dict[bytes, np.ndarray] = {}
        self._device_copies: dict[tuple[str, bytes], torch.Tensor] = {}
        self._reserved: dict[Any, int] = {}
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[type, tuple[int]]:
        return (EmbeddingTable, (self.max_bytes,))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def reserved_bytes(self) -> int:
        return sum(self._reserved.values())

    def reserve(self, owner: Any, images: int, bytes_per_image: int) -> None:
        """Book room for ``images`` embeddings of ``bytes_per_image`` bytes under ``owner`` (a dataset
        and backend: booking the same owner twice counts once).

        :raises ValueError: if the reserved total would exceed ``max_bytes``, saying how much is needed.
        """
        need = int(images) * int(bytes_per_image)
        with self._lock:
            total = sum(v for k, v in self._reserved.items() if k != owner) + need
            if total > self.max_bytes:
                raise ValueError(
                    f"compact observations keep every embedding of the training data in memory: {images} images x "
                    f"{bytes_per_image / 2**20:.1f} MiB need {total / 2**30:.2f} GiB with the other datasets of "
                    f"this EmbeddingTable, above its max_bytes={self.max_bytes} ({self.max_bytes / 2**30:.2f} GiB); "
                    "pass a larger EmbeddingTable(max_bytes=...), fewer num_images, or obs_mode='full'")
            self._reserved[owner] = need

    def publish(self, key: np.ndarray, features: np.ndarray) -> None:
        """Make ``features`` ``(C, h, w) float32`` available under ``key``."""
        name = bytes(np.asarray(key, dtype=np.uint8))
        with self._lock:
            self._entries.setdefault(name, features)

    def lookup(self, key: np.ndarray) -> np.ndarray:
        """The ``(C, h, w) float32`` embedding published under ``key``.

        :raises KeyError: if this table never saw it (the envs publish into another table or another
            process, for example a ``SubprocVecEnv``).
        """
        name = bytes(np.asarray(key, dtype=np.uint8))
        with self._lock:
            features = self._entries.get(name)
        if features is None:
            raise KeyError(f"no embedding published under key {name.hex()} in this EmbeddingTable: compact "
                           "observations need the envs in the policy's process, publishing into the table the "
                           "extractor reads (AlignSAMVecEnv, or DummyVecEnv with one embedding_table= for every "
                           "env; not SubprocVecEnv); use obs_mode='full' otherwise")
        return features

    def states(self, keys: torch.Tensor, masks: torch.Tensor, obs_size: int, observation: str = "masked",
               srm: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C', obs_size, obs_size) float32`` states for ``(B, KEY_BYTES)`` keys (any dtype: SB3 hands
        Box observations over as float), ``(B, h, w)`` masks and (``observe_srm``) SRM maps, on the masks'
        device; the same values as the env's full observations (:func:`agent_state`). On an accelerator
        each image's embedding is uploaded once."""
        rows = keys.round().to(torch.uint8).cpu().numpy()
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)  # a batch holds few distinct images
        device = masks.device
        if device.type == "cpu":
            embeddings = torch.from_numpy(np.stack([self.lookup(key) for key in unique]))
        else:
            embeddings = torch.stack([self._on_device(bytes(key), device) for key in unique])
        index = torch.as_tensor(inverse.reshape(-1), device=device)
        state = agent_state(embeddings[index], masks.float(), observation, None if srm is None else srm.float())
        return pool_state(state, obs_size)

    def _on_device(self, name: bytes, device: torch.device) -> torch.Tensor:
        slot = (str(device), name)
        tensor = self._device_copies.get(slot)
        if tensor is None:
            tensor = torch.tensor(self.lookup(np.frombuffer(name, np.uint8)), device=device)
            with self._lock:
                self._device_copies[slot] = tensor
        return tensor
