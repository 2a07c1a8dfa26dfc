"""Verified tokens, so that a token seen before costs a dict lookup and a clock comparison.

    cache = TokenCache(capacity=10_000)
    entry = cache.get(token, now)              # None: verify it, then cache.put(token, entry)
    if entry is not None and now < entry.exp + leeway: ...

Two generations of plain dicts: lookups try the current one, then the previous one (promoting
the hit); when the current one is full it becomes the previous one and the old previous one is
dropped whole. That bounds memory at 2 * capacity entries with O(1) work per operation — no
per-entry timers, no LRU bookkeeping on the hot path. An entry never outlives its `expires`
(≤ the token's `exp` + leeway, ≤ `cache_ttl_max`), and a hit is still checked against the clock
and the route's requirements by the caller. Only verified tokens are ever put here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, eq=False)
class VerifiedToken:
    """What the gateway knows about a token once its signature and claims checked out."""

    claims: dict[str, Any]
    exp: float  # the token's own expiry (epoch seconds)
    expires: float  # when this cache entry stops being trusted: min(exp + leeway, ttl bound)
    # The verifying key's JWK, rendered for *_access_token_jwk_header (VerificationKey's)
    key_jwk: bytes | None = None
    # introspect_jwt_tokens: the issuer's answer, rendered for *_introspection_header
    introspected: bytes | None = None
    # Outcome of the route's requirements for this token, memoised on first use (they depend
    # only on the claims, which cannot change for the same token): the refusal to raise again,
    # as its class and detail (raising one instance again and again would grow its traceback).
    checked: bool = False
    denial: tuple[type[Exception], str] | None = None
    # The upstream edits for this token arriving in the Authorization header (the common case),
    # built once: they depend only on the token and its claims.
    header_edits: Any = None
    # The consumer consumer_claims mapped the token to (a Consumer), found with the
    # requirements' check and memoised with it.
    consumer: Any = None


class TokenCache:
    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._current: dict[str, VerifiedToken] = {}
        self._previous: dict[str, VerifiedToken] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def get(self, token: str, now: float) -> VerifiedToken | None:
        entry = self._current.get(token)
        if entry is None:
            entry = self._previous.pop(token, None)
            if entry is None:
                self.misses += 1
                return None
            self._insert(token, entry)
        if now >= entry.expires:  # the token expires at exp (+ leeway), not after it
            self._current.pop(token, None)
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def fresh(self, token: str, now: float) -> VerifiedToken | None:
        """The current generation's entry for `token` if it is still trusted at `now`; nothing
        counted or moved (a None sends the caller to `get`, which counts the miss)."""
        entry = self._current.get(token)
        if entry is None or now >= entry.expires:
            return None
        return entry

    def put(self, token: str, entry: VerifiedToken) -> None:
        self._insert(token, entry)

    def _insert(self, token: str, entry: VerifiedToken) -> None:
        if len(self._current) >= self.capacity:
            self._previous = self._current
            self._current = {}
        self._current[token] = entry

    def clear(self) -> None:
        self._current.clear()
        self._previous.clear()
