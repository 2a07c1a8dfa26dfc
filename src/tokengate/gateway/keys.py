"""Signing keys per issuer: discovery + JWKS, fetched in the background, served from memory.

    registry = KeyRegistry(session, on_fetch=count)   # one per worker; count(issuer, "ok"|...)
    keys = registry.get(KeySource(issuer, issuer + "/.well-known/openid-configuration"))
    registry.start()                                  # warm-up in the background, never awaited
    key = keys.select(kid, alg) or await keys.key_for(kid, alg)  # UnknownKey / KeysUnavailable

A fetch is: GET discovery → its `issuer` must equal ours → GET `jwks_uri` (or the configured
`jwks_endpoint`) plus any `extra_jwks_uris` → `parse_jwks` → one merged KeySet, swapped in with a
single assignment. The hot path (`select`) is a clock comparison and a dict lookup: no awaits,
no locks. Everything slow happens in one task per issuer, shared by everyone who needs it.

Timeline of one good fetch (lifetime = Cache-Control max-age clamped to [min_refresh, max_refresh],
max_refresh when absent):

    fetched ── refresh_at ── expires_at ─────────── usable_until = expires_at + max_stale
               (background     (the cached copy's     (keys stop being served: KeysUnavailable,
                refresh,        freshness ends)        the gateway answers 503)
                ≥ min_refresh)

A failed fetch changes nothing but the error shown in `status()`: the last good keys stay.

Times here are durations (a max-age, a max-stale, a throttle), so they are read from a clock no
one can step: CLOCK_BOOTTIME where there is one (Linux), which unlike CLOCK_MONOTONIC (the event
loop's) also counts the time a machine spent suspended. Keys fetched before a laptop slept for
a night are a night old when it wakes, not as old as they were when it fell asleep.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy, MultiMapping

from tokengate.addresses import show
from tokengate.gateway.errors import AuthError, KeysUnavailable, UnknownKey
from tokengate.gateway.jwk import KeySet, VerificationKey, merge, parse_jwks

__all__ = ["FetchObserver", "IssuerKeys", "KeyPolicy", "KeyRegistry", "KeySource", "fetch_result"]

log = logging.getLogger("tokengate.keys")

_DISCOVERY_ACCEPT: Final = "application/json"
_JWKS_ACCEPT: Final = "application/jwk-set+json, application/json"
_CHUNK: Final = 64 * 1024
# The background refresh starts at this fraction of the lifetime (never sooner than
# min_refresh), so fresh keys are in place before the cached copy expires.
_REFRESH_EARLY: Final = 0.9
_MAX_AGE: Final = re.compile(r'"?([0-9]+)"?')
_DELTA_SECONDS_MAX: Final = 2**31


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where one issuer's keys come from; built from the openid-connect plugin config."""

    issuer: str  # expected issuer: discovery's "issuer" must equal it exactly
    discovery_url: str  # issuer + "/.well-known/openid-configuration" (the caller computes it)
    jwks_endpoint: str | None = None  # overrides discovery's jwks_uri when set
    extra_jwks_uris: tuple[str, ...] = ()
    timeout: float = 10.0  # seconds, per HTTP request (connect + headers + body)
    ssl_verify: bool = True
    rediscovery_lifetime: float = 30.0  # min seconds between two refetches triggered by misses


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """Process-wide bounds; tests shrink them."""

    min_refresh: float = 60.0  # refresh no sooner than this after a fetch
    max_refresh: float = 3600.0  # refresh at the latest after this; max-age is clamped in between
    max_stale: float = 86400.0  # serve the last good keys this long past their expiry, then 503
    max_body: int = 512 * 1024  # discovery / JWKS response size cap (decoded bytes)
    retry_after: int = 5  # seconds suggested to clients on 503
    retry_backoff: float = 1.0  # first background retry after a failure; doubles to min_refresh

    def __post_init__(self) -> None:
        if not 0 < self.min_refresh <= self.max_refresh:
            raise ValueError("KeyPolicy needs 0 < min_refresh <= max_refresh")
        if self.max_stale < 0 or self.max_body <= 0 or self.retry_backoff <= 0:
            raise ValueError("KeyPolicy needs max_stale >= 0, max_body > 0, retry_backoff > 0")


class FetchError(Exception):
    """One fetch failed: HTTP status, size, JSON, issuer mismatch, no usable keys..."""


# Told the issuer and how each fetch went: "ok", or fetch_result()'s word for the failure.
FetchObserver = Callable[[str, str], None]


def fetch_result(exc: BaseException) -> str:
    """A failed fetch in one word from a fixed set (a metric label)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, FetchError | ValueError | aiohttp.ClientResponseError):
        return "bad_response"  # the issuer answered, with something we cannot use
    if isinstance(exc, aiohttp.ClientError | OSError):
        return "unreachable"
    return "error"


def _ignore_fetch(issuer: str, result: str) -> None:
    return None


def _boot_clock() -> Callable[[], float]:
    """Seconds on a clock that never steps and keeps counting while the machine is suspended:
    CLOCK_BOOTTIME, Linux's (tried once: a kernel or sandbox may refuse it); elsewhere the
    monotonic clock, the closest there is. A partial, not a function of ours: the key lookup
    reads it on every full check (no Python frame)."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is not None:
        try:
            time.clock_gettime(boottime)
        except OSError:
            pass
        else:
            return functools.partial(time.clock_gettime, boottime)
    return time.monotonic


since_boot: Final = _boot_clock()


class IssuerKeys:
    """The current keys of one issuer, and the single task that refreshes them."""

    def __init__(
        self,
        source: KeySource,
        session: aiohttp.ClientSession,
        policy: KeyPolicy,
        clock: Callable[[], float],
        on_fetch: FetchObserver = _ignore_fetch,
    ) -> None:
        self.source = source
        self.session = session  # the issuer's HTTP client (introspection uses it too)
        self._policy = policy
        self._clock = clock
        self._on_fetch = on_fetch
        self._request_timeout = aiohttp.ClientTimeout(total=source.timeout)
        self._keyset: KeySet | None = None
        self._usable_until = -math.inf
        # Keys an extra JWKS published before it started failing stay in `_keyset` until their
        # own bound, not the set's: then `_without_kept` (the set without them) is served.
        self._without_kept: KeySet | None = None
        self._kept_until = math.inf
        self._refresh_at: float | None = None
        self._expires_at: float | None = None
        self._last_success: float | None = None
        self._last_attempt: float | None = None
        self._last_error: tuple[float, str] | None = None
        self._failures = 0  # consecutive failed fetches
        self._fetches = 0
        self._last_triggered: float | None = None  # last fetch started by a miss in key_for
        self._inflight: asyncio.Task[bool] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        self._jwks_uri: str | None = None
        # Discovery's, for introspect_jwt_tokens (RFC 8414 / OIDC Discovery), once fetched
        self.introspection_endpoint: str | None = None
        # Last good key set per extra JWKS URI, and until when it may stand in for a failure.
        self._extras: dict[str, tuple[KeySet, float]] = {}
        self._logged_rejections: tuple[str, ...] = ()

    # -- the hot path ---------------------------------------------------------------------------
    @property
    def keyset(self) -> KeySet | None:
        """The current good keys; None before the first success and once past max_stale."""
        keyset = self._keyset
        now = self._clock()
        # Staleness bound: keys kept through an IdP outage are trusted for max_stale, not forever
        # (a key the IdP has since revoked must stop verifying eventually).
        if keyset is None or now >= self._usable_until:
            return None
        return self._without_kept if now >= self._kept_until else keyset

    def select(self, kid: str | None, alg: str) -> VerificationKey | None:
        """The key for (kid, alg), or None: unknown, never loaded, or stale beyond max_stale."""
        keyset = self.keyset
        return keyset.select(kid, alg) if keyset is not None else None

    # -- the slow path --------------------------------------------------------------------------
    async def key_for(self, kid: str | None, alg: str) -> VerificationKey:
        """`select`, and on a miss one refetch (shared, throttled) before giving up.

        Raises UnknownKey when keys are loaded but none fits (after the refetch, or when a
        refetch is throttled), KeysUnavailable when there are no usable keys at all.
        """
        key = self.select(kid, alg)
        if key is not None:
            return key
        if self._closed:
            raise KeysUnavailable(f"signing keys for {self.source.issuer} are shut down")
        if self._inflight is None:
            now = self._clock()
            last = self._last_triggered
            # Unknown kid: at most one refetch per rediscovery_lifetime, so tokens with random
            # kids (or an issuer that is down) cannot make us hammer the IdP. A fetch already in
            # flight is joined below for free.
            if last is not None and now - last < self.source.rediscovery_lifetime:
                log.debug("keys for %s: miss, refetch throttled", self.source.issuer)
                raise self._miss(throttled=True)
            self._last_triggered = now
        await self.refresh()
        key = self.select(kid, alg)
        if key is None:
            raise self._miss(throttled=False)
        return key

    def _miss(self, *, throttled: bool) -> AuthError:
        # Details name no client-supplied value (kid, alg): they may reach the client.
        if self.keyset is None:
            return KeysUnavailable(f"no usable signing keys for issuer {self.source.issuer}")
        if throttled:
            return UnknownKey("no published key matches the token (refetch throttled)")
        return UnknownKey("no published key matches the token")

    async def refresh(self) -> bool:
        """Fetch now, or join the fetch in flight (single-flight); True when it succeeded.

        Not throttled: the request path goes through `key_for`, never here.
        """
        if self._closed:
            return False
        task = self._inflight
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch_and_store())
            self._inflight = task
        try:
            # shield: a waiter that is cancelled (client went away) must not cancel the shared
            # fetch for everyone else.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                return False  # the fetch was cancelled by close(), not this waiter
            raise

    # -- the background loop --------------------------------------------------------------------
    def next_refresh(self) -> float:
        """When the background loop fetches next (clock time; -inf: now)."""
        if self._failures and self._last_attempt is not None:
            policy = self._policy
            cap = max(policy.min_refresh, policy.retry_backoff)
            backoff = min(policy.retry_backoff * 2.0 ** min(self._failures - 1, 30), cap)
            return self._last_attempt + backoff
        if self._refresh_at is None:
            return -math.inf
        return self._refresh_at

    async def run(self) -> None:
        """Keep the keys fresh until cancelled: the first fetch at once (warm-up), then each
        refresh before expiry, failures retried with backoff."""
        while not self._closed:
            delay = self.next_refresh() - self._clock()
            if delay > 0:
                # The loop sleeps on the event loop's clock, which stands still while the
                # machine is suspended; ours does not. Look at ours at least every min_refresh,
                # so keys that fell due during a suspend are refreshed soon after the resume.
                await asyncio.sleep(min(delay, self._policy.min_refresh))
                continue
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: the keys must still be refreshed, so log and go on
                log.exception("keys for %s: refresh failed unexpectedly", self.source.issuer)
                self._failures += 1
                self._last_attempt = self._clock()

    def start(self) -> None:
        if self._loop_task is None and not self._closed:
            self._loop_task = asyncio.get_running_loop().create_task(self.run())

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._loop_task, self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop_task = self._inflight = None

    # -- fetching -------------------------------------------------------------------------------
    async def _fetch_and_store(self) -> bool:
        issuer = self.source.issuer
        self._fetches += 1
        try:
            try:
                keyset, headers, without_kept, kept_until = await self._fetch()
                lifetime = self._lifetime(headers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._record_failure(exc)
                self._on_fetch(issuer, fetch_result(exc))
                return False
            self._on_fetch(issuer, "ok")
            now = self._clock()
            self._keyset = keyset
            self._without_kept, self._kept_until = without_kept, kept_until
            self._last_success = self._last_attempt = now
            self._failures = 0
            self._expires_at = now + lifetime
            self._refresh_at = now + max(self._policy.min_refresh, lifetime * _REFRESH_EARLY)
            self._usable_until = self._expires_at + self._policy.max_stale
            # Refused JWKs (incl. poisoned kids) are logged when they change, not every refresh.
            if keyset.rejected != self._logged_rejections:
                self._logged_rejections = keyset.rejected
                for reason in keyset.rejected:
                    log.warning("keys for %s: JWK ignored: %s", issuer, reason)
            log.info(
                "keys for %s: %d keys loaded, next refresh in %.0fs",
                issuer,
                len(keyset.keys),
                self._refresh_at - now,
            )
            return True
        finally:
            self._inflight = None

    def _record_failure(self, exc: Exception) -> None:
        now = self._clock()
        self._failures += 1
        self._last_attempt = now
        message = _describe(exc, self.source.timeout)
        self._last_error = (now, message)
        if isinstance(exc, FetchError | aiohttp.ClientError | TimeoutError | OSError | ValueError):
            log.warning("keys for %s: fetch failed: %s", self.source.issuer, message)
        else:  # a bug, not the IdP: keep the loop alive but show the traceback
            log.exception("keys for %s: fetch failed unexpectedly", self.source.issuer)
        if self._keyset is not None and now < self._usable_until:
            log.warning(
                "keys for %s: keeping the last good keys for at most %.0fs more",
                self.source.issuer,
                self._usable_until - now,
            )

    async def _fetch(self) -> tuple[KeySet, CIMultiDictProxy[str], KeySet, float]:
        """The issuer's keys (main JWKS and extras), its JWKS response's headers, those keys
        without the ones kept from extras that failed, and when the kept ones stop counting."""
        source = self.source
        discovery, _ = await self._get_json(source.discovery_url, _DISCOVERY_ACCEPT)
        if not isinstance(discovery, dict):
            raise FetchError(f"discovery document {source.discovery_url} is not a JSON object")
        found = discovery.get("issuer")
        # OIDC Discovery §4.3 / RFC 8414 §3.3: the document's issuer must be identical to the
        # one we expect, else a mis-pointed discovery URL (or a mix-up attack) would make us
        # trust another issuer's keys for tokens that claim to be ours.
        if found != source.issuer:
            hint = ""
            if isinstance(found, str) and found.rstrip("/") == source.issuer.rstrip("/"):
                # The usual slip: Kong never compares them, so a config that worked there
                # may carry a slash the IdP does not write.
                hint = " (they differ by a trailing slash: write the issuer as the IdP does)"
            raise FetchError(
                f"discovery issuer {_short(found)} does not match configured "
                f"{source.issuer!r}{hint}"
            )
        if source.jwks_endpoint is not None:
            jwks_uri = _http_url(source.jwks_endpoint, "jwks_endpoint")
        else:
            jwks_uri = _http_url(discovery.get("jwks_uri"), "jwks_uri")
            # Keys are only as trustworthy as the channel they come over: an https issuer's
            # discovery document may not send us to fetch its keys over plain http.
            secure = urlsplit(source.discovery_url).scheme.lower() == "https"
            if secure and urlsplit(jwks_uri).scheme.lower() != "https":
                raise FetchError(f"jwks_uri {jwks_uri!r} is not https like the discovery URL")
        self._jwks_uri = jwks_uri
        self.introspection_endpoint = _introspection_endpoint(discovery, source.discovery_url)
        main, extras = await asyncio.gather(
            self._get_keyset(jwks_uri), self._extra_keysets(), return_exceptions=True
        )
        if isinstance(main, BaseException):
            raise main
        if isinstance(extras, BaseException):  # cancellation; extras' own failures are absorbed
            raise extras
        keyset, headers = main
        fresh = [extra for extra, until in filter(None, extras) if until == math.inf]
        kept = [(extra, until) for extra, until in filter(None, extras) if until != math.inf]
        without_kept = merge(keyset, *fresh) if fresh else keyset
        if not kept:
            return without_kept, headers, without_kept, math.inf
        full = merge(without_kept, *(extra for extra, _ in kept))
        return full, headers, without_kept, min(until for _, until in kept)

    async def _extra_keysets(self) -> list[tuple[KeySet, float] | None]:
        return await asyncio.gather(*map(self._extra_keyset, self.source.extra_jwks_uris))

    async def _extra_keyset(self, uri: str) -> tuple[KeySet, float] | None:
        """An extra JWKS, and until when it counts (inf: fetched now). A failure is logged and
        its last good set used until max_refresh + max_stale after it last answered, never
        fatal: it must not cost us the issuer's main keys."""
        try:
            keyset, _ = await self._get_keyset(_http_url(uri, "extra_jwks_uris"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "keys for %s: extra JWKS %s failed: %s",
                self.source.issuer,
                uri,
                _describe(exc, self.source.timeout),
            )
            kept = self._extras.get(uri)
            if kept is not None and self._clock() < kept[1]:
                return kept
            self._extras.pop(uri, None)
            return None
        policy = self._policy
        self._extras[uri] = (keyset, self._clock() + policy.max_refresh + policy.max_stale)
        return keyset, math.inf

    async def _get_keyset(self, uri: str) -> tuple[KeySet, CIMultiDictProxy[str]]:
        document, headers = await self._get_json(uri, _JWKS_ACCEPT)
        keyset = parse_jwks(document, source=uri)
        # A JWKS with no usable key is a failure, not an update: a broken or hostile response
        # must not wipe the keys we have (the last good set stays).
        if not keyset.keys:
            reasons = "; ".join(keyset.rejected[:3]) or "no keys"
            raise FetchError(f"JWKS {uri} has no usable keys ({reasons})")
        return keyset, headers

    async def _get_json(self, url: str, accept: str) -> tuple[object, CIMultiDictProxy[str]]:
        source = self.source
        limit = self._policy.max_body
        # One deadline for connect + headers + body: a trickling IdP cannot hold a fetch open.
        async with (
            asyncio.timeout(source.timeout),
            self.session.get(
                url,
                headers={"Accept": accept},
                timeout=self._request_timeout,
                ssl=source.ssl_verify,  # False only when the plugin config says ssl_verify: false
                # Redirects are not followed: a 3xx could move us to another host or from
                # https to http; the log names the Location so the config can be fixed.
                allow_redirects=False,
            ) as resp,
        ):
            if not 200 <= resp.status < 300:
                where = resp.headers.get("Location")
                extra = f" (redirect to {where} not followed)" if where else ""
                raise FetchError(f"GET {url}: HTTP {resp.status}{extra}")
            # Size cap, checked before and while reading: never an unbounded read into memory.
            if resp.content_length is not None and resp.content_length > limit:
                raise FetchError(f"GET {url}: body of {resp.content_length} bytes over {limit}")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > limit:
                    raise FetchError(f"GET {url}: body over {limit} bytes")
            headers = resp.headers
        try:
            document = json.loads(body, object_pairs_hook=_unique_members)
        except ValueError as exc:
            raise FetchError(f"GET {url}: not valid JSON ({exc})") from None
        except RecursionError:  # `[[[[...` within the size cap: the IdP's fault, not a bug
            raise FetchError(f"GET {url}: JSON nested too deeply") from None
        return document, headers

    def _lifetime(self, headers: CIMultiDictProxy[str]) -> float:
        policy = self._policy
        age = cache_lifetime(headers)
        if age is None:
            return policy.max_refresh
        return min(max(age, policy.min_refresh), policy.max_refresh)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, object]:
        """For /readyz: JSON-ready, times as seconds relative to now."""
        now = self._clock()
        keyset = self.keyset
        last_error = self._last_error
        return {
            "issuer": self.source.issuer,
            "discovery_url": self.source.discovery_url,
            "jwks_uri": self._jwks_uri,
            "loaded": keyset is not None,
            "stale": keyset is not None
            and self._expires_at is not None
            and now >= self._expires_at,
            "keys": len(keyset.keys) if keyset is not None else 0,
            "kids": sorted(k.kid for k in keyset.keys if k.kid is not None) if keyset else [],
            "poisoned_kids": sorted(keyset.poisoned) if keyset is not None else [],
            "rejected": list(keyset.rejected) if keyset is not None else [],
            "fetches": self._fetches,
            "consecutive_failures": self._failures,
            "last_success_age": _age(now, self._last_success),
            "last_error_age": _age(now, last_error[0] if last_error else None),
            "last_error": last_error[1] if last_error else None,
            "next_refresh_in": _round(max(self.next_refresh() - now, 0.0)),
            "usable_for": _round(self._usable_until - now) if keyset is not None else None,
        }


class KeyRegistry:
    """One IssuerKeys per distinct KeySource; one per gateway worker."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        policy: KeyPolicy = KeyPolicy(),
        clock: Callable[[], float] = since_boot,
        on_fetch: FetchObserver = _ignore_fetch,
    ) -> None:
        self.session = session
        self.policy = policy
        self._clock = clock
        self._on_fetch = on_fetch
        self._issuers: dict[KeySource, IssuerKeys] = {}
        self._started = False
        self._closed = False

    def get(self, source: KeySource) -> IssuerKeys:
        keys = self._issuers.get(source)
        if keys is None:
            keys = IssuerKeys(source, self.session, self.policy, self._clock, self._on_fetch)
            keys._closed = self._closed  # after close(): no fetches, no stray tasks
            self._issuers[source] = keys
            if self._started:
                keys.start()
        return keys

    def adopt(self, previous: KeyRegistry, sources: Iterable[KeySource]) -> None:
        """Take over `previous`'s keys for these sources (a config reload): they stay loaded and
        keep refreshing, and closing `previous` no longer stops them."""
        for source in sources:
            if source not in self._issuers and source in previous._issuers:
                self._issuers[source] = previous._issuers.pop(source)

    def start(self) -> None:
        """Start every issuer's background loop; the first fetches run without being awaited,
        so serving never waits for an IdP (a request that needs keys joins the fetch)."""
        self._started = True
        for keys in self._issuers.values():
            keys.start()

    async def close(self) -> None:
        self._started = False
        self._closed = True
        await asyncio.gather(*(keys.close() for keys in self._issuers.values()))

    def status(self) -> list[dict[str, object]]:
        return [keys.status() for keys in self._issuers.values()]


def cache_lifetime(headers: MultiMapping[str]) -> float | None:
    """Seconds a response stays fresh per RFC 9111 (max-age minus Age); None when unstated.

    no-store / no-cache count as 0 (then clamped up to min_refresh). The first max-age wins
    (§4.2.1); a malformed one is ignored. s-maxage is for shared caches of responses; we are not.
    """
    values = headers.getall("Cache-Control", [])
    max_age: int | None = None
    no_cache = False
    for directive in ",".join(values).split(","):
        name, _, value = directive.partition("=")
        name = name.strip().lower()
        if name in ("no-store", "no-cache"):
            no_cache = True
        elif name == "max-age" and max_age is None:
            max_age = _delta_seconds(value)
    if no_cache:
        return 0.0
    if max_age is None:
        return None
    age = _delta_seconds(headers.get("Age", "")) or 0
    return float(max(max_age - age, 0))


def _delta_seconds(text: str) -> int | None:
    """RFC 9111 §1.2.2: digits; a value too large to represent counts as 2^31 (a 400-digit
    max-age must not raise, nor become a float that overflows)."""
    match = _MAX_AGE.fullmatch(text.strip())
    if match is None:
        return None
    digits = match.group(1).lstrip("0") or "0"
    return min(int(digits), _DELTA_SECONDS_MAX) if len(digits) <= 10 else _DELTA_SECONDS_MAX


def _http_url(value: object, what: str) -> str:
    # Only absolute http(s) URLs: a file:, data: or relative jwks_uri is a broken or hostile
    # discovery document, not a place to fetch keys from.
    if isinstance(value, str):
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is not None and parts.scheme in ("http", "https") and parts.hostname:
            return value
    raise FetchError(f"{what} {_short(value)} is not an http(s) URL")


def _introspection_endpoint(discovery: dict[str, object], discovery_url: str) -> str | None:
    """Discovery's introspection_endpoint, when it is a usable http(s) URL (https when the
    discovery URL is): keys never fail because of it; introspection then has none to ask."""
    try:
        endpoint = _http_url(discovery.get("introspection_endpoint"), "introspection_endpoint")
    except FetchError:
        return None
    secure = urlsplit(discovery_url).scheme.lower() == "https"
    if secure and urlsplit(endpoint).scheme.lower() != "https":
        return None
    return endpoint


def _short(value: object, limit: int = 200) -> str:
    # Values from a fetched document go to logs quoted and bounded.
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Duplicate member names are ambiguous (parsers disagree on which wins): refuse the document.
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate member name")
    return document


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, FetchError):
        return str(exc)
    # aiohttp's own text ("Cannot connect to host h:80 ssl:default [Connect call failed ...]")
    # says "ssl" of a plain-http issuer; TLS failures keep it, with their certificate detail.
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve {exc.host}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(
        exc, aiohttp.ClientSSLError
    ):
        where = show((exc.host, exc.port or 0))
        return f"cannot connect to {where}: {_os_reason(exc.os_error)}"
    return f"{type(exc).__name__}: {exc}"


def _os_reason(error: OSError) -> str:
    """ "Connection refused", not asyncio's "Connect call failed ('127.0.0.1', 9000)"."""
    if error.errno and error.errno > 0:
        return os.strerror(error.errno)
    return error.strerror or str(error)  # a resolver's own words (gaierror's errno is < 0)


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else _round(now - then)


def _round(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None
