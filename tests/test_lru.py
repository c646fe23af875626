"""The one LRU: entry and byte bounds, recency, replace versus setdefault."""

from __future__ import annotations

import pytest

from alignsam_gym.lru import LRU


def test_entry_bound_drops_the_least_recently_used():
    lru: LRU[str, int] = LRU(max_entries=2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3


def test_byte_bound_keeps_the_newest_even_when_it_alone_is_too_big():
    lru: LRU[str, bytes] = LRU(max_bytes=10, size=len)
    lru.put("a", b"12345")
    lru.put("b", b"12345")
    assert lru.nbytes == 10 and len(lru) == 2
    lru.put("c", b"1")
    assert "a" not in lru and lru.nbytes == 6
    lru.put("d", b"x" * 50)
    assert len(lru) == 1 and "d" in lru and lru.nbytes == 50


def test_put_replaces_and_setdefault_keeps():
    lru: LRU[str, str] = LRU(max_bytes=100, size=len)
    lru.put("k", "old")
    lru.put("k", "newer")
    assert lru.get("k") == "newer" and lru.nbytes == 5
    assert lru.setdefault("k", "other") == "newer"
    assert lru.get_or_create("z", lambda: "made") == "made" and lru.get_or_create("z", lambda: "again") == "made"
    lru.clear()
    assert len(lru) == 0 and lru.nbytes == 0


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="max_entries"):
        LRU(max_entries=0)
    with pytest.raises(ValueError, match="size function"):
        LRU(max_bytes=10)


def test_identity_lru_matches_only_the_very_objects_and_holds_them():
    """An entry is found only for the objects it was stored with, never for a new object that reuses an id; the
    entry keeps its objects alive, so their ids cannot be reused while it lives."""
    import gc
    import weakref

    import numpy as np

    from alignsam_gym.lru import IdentityLRU

    cache: IdentityLRU[str] = IdentityLRU(max_entries=2)
    a, b = np.zeros(3), np.zeros(3)
    cache.put((a,), "a")
    cache.put((a, b), "ab", extra=7)
    assert cache.get((a,)) == "a" and cache.get((a, b), 7) == "ab"
    assert cache.get((b,)) is None and cache.get((a, b)) is None and cache.get((b, a), 7) is None
    first = weakref.ref(a)
    del a
    gc.collect()
    assert first() is not None  # the entries hold their key objects
    cache.put((np.ones(1),), "c")
    cache.put((np.ones(1),), "d")  # both entries holding the first array are evicted
    gc.collect()
    assert len(cache) == 2 and first() is None
