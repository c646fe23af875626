"""``LRU``: the project's one least-recently-used store, bounded by entries and optionally by bytes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A thread-safe mapping that drops its least recently used entries beyond its bounds.

    The most recently added entry always stays, even when it alone exceeds ``max_bytes``.

    :param max_entries: bound on the number of entries (None: no bound).
    :param max_bytes: bound on the summed ``size(value)`` (None: no bound).
    :param size: bytes of a value, for ``max_bytes``.
    """

    def __init__(self, max_entries: int | None = None, max_bytes: int | None = None,
                 size: Callable[[V], int] | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be at least 1 or None, got {max_entries}")
        if max_bytes is not None and (max_bytes <= 0 or size is None):
            raise ValueError("max_bytes must be positive and needs a size function")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._size = size or (lambda value: 0)
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        """Summed ``size`` of the entries."""
        return self._bytes

    def get(self, key: K) -> V | None:
        """The value under ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key`` (replacing what was there)."""
        with self._lock:
            if key in self._entries:
                self._bytes -= self._size(self._entries.pop(key))
            self._insert(key, value)

    def setdefault(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` unless the key is present; return the stored value (so two
        threads that computed the same entry end up sharing one)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            self._insert(key, value)
            return value

    def _insert(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._bytes += self._size(value)
        while len(self._entries) > 1 and (
                (self.max_entries is not None and len(self._entries) > self.max_entries)
                or (self.max_bytes is not None and self._bytes > self.max_bytes)):
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= self._size(dropped)

    def get_or_create(self, key: K, create: Callable[[], V]) -> V:
        """The value under ``key``, made with ``create()`` (outside the lock) when absent."""
        value = self.get(key)
        return value if value is not None else self.setdefault(key, create())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


class IdentityLRU(Generic[V]):
    """An :class:`LRU` keyed by the identity of objects that are not hashable by value (arrays, datasets), plus
    an optional hashable part: each entry holds its key objects, so their ids cannot be reused by new objects
    while it lives, and a lookup matches only those very objects.

    :param max_entries: bound on the number of entries (None: no bound).
    :param max_bytes: bound on the summed ``size(value)`` (None: no bound).
    :param size: bytes of a value, for ``max_bytes``.
    """

    def __init__(self, max_entries: int | None = None, max_bytes: int | None = None,
                 size: Callable[[V], int] | None = None) -> None:
        entry_size = None if size is None else (lambda entry: size(entry[1]))
        self._lru: LRU[tuple[tuple[int, ...], Hashable], tuple[tuple[object, ...], V]] = LRU(
            max_entries, max_bytes, entry_size)

    def __len__(self) -> int:
        return len(self._lru)

    def get(self, objects: tuple[object, ...], extra: Hashable = ()) -> V | None:
        """The value stored for these very ``objects`` (and ``extra``), or None."""
        entry = self._lru.get((tuple(map(id, objects)), extra))
        if entry is None or any(held is not given for held, given in zip(entry[0], objects)):
            return None
        return entry[1]

    def put(self, objects: tuple[object, ...], value: V, extra: Hashable = ()) -> None:
        """Store ``value`` for ``objects`` (and ``extra``), holding the objects."""
        self._lru.put((tuple(map(id, objects)), extra), (tuple(objects), value))

    def clear(self) -> None:
        self._lru.clear()
