"""The verified-token cache: bounded, never past an entry's expiry, O(1) generations."""

from __future__ import annotations

import pytest

from tokengate.gateway.token_cache import TokenCache, VerifiedToken


def entry(expires: float = 100.0) -> VerifiedToken:
    return VerifiedToken(claims={"sub": "x"}, exp=expires, expires=expires)


def test_hit_then_miss_after_expiry() -> None:
    cache = TokenCache(capacity=4)
    cache.put("t", entry(expires=100.0))
    assert cache.get("t", now=99.0) is not None
    assert cache.get("t", now=99.999) is not None
    assert cache.get("t", now=100.0) is None  # at `expires` the entry is no longer trusted
    assert cache.get("t", now=50.0) is None  # an expired entry is gone, not revived
    assert (cache.hits, cache.misses) == (2, 2)


def test_size_is_bounded_by_two_generations() -> None:
    cache = TokenCache(capacity=100)
    for i in range(10_000):
        cache.put(f"t{i}", entry())
    assert len(cache) <= 200
    # The newest entries are still there; the oldest are gone.
    assert cache.get("t9999", now=0) is not None
    assert cache.get("t0", now=0) is None


def test_a_hit_in_the_previous_generation_is_kept() -> None:
    cache = TokenCache(capacity=2)
    cache.put("old", entry())
    cache.put("a", entry())
    cache.put("b", entry())  # "old" and "a" move to the previous generation
    assert cache.get("old", now=0) is not None  # promoted back to the current one
    cache.put("c", entry())
    cache.put("d", entry())  # rotates again: the promoted "old" survives one more round
    assert cache.get("old", now=0) is not None


def test_fresh_looks_without_counting_or_moving_anything() -> None:
    cache = TokenCache(capacity=2)
    cache.put("old", entry())
    cache.put("a", entry(expires=10.0))
    cache.put("b", entry())  # "old" and "a" are in the previous generation now
    assert cache.fresh("b", now=0) is not None
    assert cache.fresh("old", now=0) is None  # left to `get`, which promotes it
    cache.put("c", entry(expires=10.0))
    assert cache.fresh("c", now=9.5) is not None
    assert cache.fresh("c", now=10.0) is None  # at its expiry
    assert cache.fresh("never", now=0) is None
    assert (cache.hits, cache.misses) == (0, 0)
    assert cache.get("old", now=0) is not None  # still there for the long way


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        TokenCache(capacity=0)


def test_a_capacity_of_one_still_caches() -> None:
    cache = TokenCache(capacity=1)
    cache.put("t", entry())
    assert cache.get("t", now=0) is not None


def test_len_counts_both_generations() -> None:
    """What the cache-entries gauge reports."""
    cache = TokenCache(capacity=2)
    for token in "abc":  # "a" and "b" move to the previous generation
        cache.put(token, entry())
    assert len(cache) == 3


def test_unknown_and_expired_tokens_are_misses() -> None:
    cache = TokenCache()
    assert cache.get("x", now=0) is None and cache.get("y", now=0) is None
    cache.put("t", entry(expires=10.0))
    assert cache.get("t", now=11.0) is None
    assert (cache.hits, cache.misses) == (0, 3)
