"""introspect_jwt_tokens: a JWT that verified is also asked of its issuer (RFC 7662), as Kong's
plugin asks, so a token the issuer revoked stops passing.

    introspector = Introspector(config.introspect_jwt_tokens, keys, timeout=10.0, ssl_verify=True)
    view = await introspector.view(token, entry, now)    # raises NotActive / IntrospectionFailed

The answer must be a JSON object with `"active": true` (unless introspection_check_active is
false). The view is the verified token with the introspection data over its claims (Kong reads
a claim from the introspection data first, the token's payload when it is not there), and its
requirements, consumer and edits are memoised on it, as on a cached entry. Answers, active or
not, are kept for the answer's `expires_in`, else until its `exp`, within cache_ttl_min and
cache_ttl_max (cache_ttl when it gives neither), and never beyond the token's own entry; an
endpoint that gives no usable answer is not remembered, and is a 503, never a pass. One
question per token is in flight at a time, whoever asks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import weakref
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from tokengate.gateway.claim_values import render_header_value
from tokengate.gateway.errors import IntrospectionFailed, NotActive
from tokengate.gateway.keys import IssuerKeys
from tokengate.gateway.oidc_config import Introspection
from tokengate.gateway.token_cache import VerifiedToken
from tokengate.jsonlimits import holds_lone_surrogate, nests_deeper

MAX_ANSWER: Final = 64 * 1024  # bytes: an introspection answer is a small JSON object
# Introspection POSTs at once to one endpoint over one HTTP client, whatever the routes: the
# rest of its connections stay free for discovery and JWKS fetches and for other endpoints,
# however slow this one is.
MAX_CONCURRENT: Final = 16
MAX_WAITING: Final = 1024  # distinct tokens awaiting an answer; beyond: 503 at once
MAX_DEPTH: Final = 32  # nesting in an answer; deeper is unusable (a claim header renders it)
_limits: weakref.WeakKeyDictionary[aiohttp.ClientSession, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)
_NOT_ACTIVE: Final = "the issuer says the token is not active (revoked or expired)"


class Introspector:
    def __init__(
        self,
        settings: Introspection,
        keys: IssuerKeys,  # the issuer's: its discovery and its HTTP client
        *,
        timeout: float,
        ssl_verify: bool,
        capacity: int = 10_000,
    ) -> None:
        self.settings = settings
        self._keys = keys
        self._timeout = timeout
        self._ssl_verify = ssl_verify
        self._capacity = capacity
        # token → (until, the view; None: not active), in two generations as in TokenCache: a
        # client with many tokens ages the others' answers out, never all of them at once
        self._answers: dict[str, tuple[float, VerifiedToken | None]] = {}
        self._older: dict[str, tuple[float, VerifiedToken | None]] = {}
        self._inflight: dict[str, asyncio.Task[tuple[float, VerifiedToken | None]]] = {}

    async def view(self, token: str, entry: VerifiedToken, now: float) -> VerifiedToken:
        """`entry` (the token verified) as its issuer's introspection answer has it."""
        known = self._answers.get(token) or self._older.get(token)
        if known is None or known[0] <= now:
            task = self._inflight.get(token)
            if task is None:
                if len(self._inflight) >= MAX_WAITING:
                    raise self._failed("too many tokens awaiting an answer")
                # A task of its own: a client that goes away does not cancel the others' answer.
                task = asyncio.ensure_future(self._ask(token, entry, now))
                self._inflight[token] = task
                task.add_done_callback(lambda done: self._settled(token, done))
            known = await asyncio.shield(task)
        view = known[1]
        if view is None:
            raise NotActive(_NOT_ACTIVE)
        return view

    async def _ask(
        self, token: str, entry: VerifiedToken, now: float
    ) -> tuple[float, VerifiedToken | None]:
        data = await self._post(token)
        settings = self.settings
        try:
            until = min(self._until(data, now), entry.expires)
            view = None
            if data.get("active") is True or not settings.check_active:
                # Kong reads a claim from the answer first, from the token where the answer
                # has none: the answer laid over the claims, nested objects included.
                claims = _over(entry.claims, data)
                view = VerifiedToken(
                    claims=claims,
                    exp=entry.exp,
                    expires=until,
                    key_jwk=entry.key_jwk,
                    introspected=render_header_value(data),
                )
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise self._failed(f"unusable answer ({type(exc).__name__})") from None
        if settings.cache and until > now:
            if len(self._answers) >= self._capacity:
                self._older, self._answers = self._answers, {}
            self._answers[token] = (until, view)
        return until, view

    def _settled(self, token: str, task: asyncio.Task[Any]) -> None:
        self._inflight.pop(token, None)
        if not task.cancelled():
            task.exception()  # retrieved, even when every asker has gone

    def _until(self, data: dict[str, Any], now: float) -> float:
        """When the answer stops being trusted, as Kong's cache.lua reckons it."""
        settings = self.settings
        expires_in, exp = _number(data.get("expires_in")), _number(data.get("exp"))
        if expires_in is not None:
            ttl = expires_in
        elif exp is not None:
            ttl = exp - now
        else:
            return now + settings.cache_ttl
        if settings.cache_ttl_min:  # Kong's cache.lua: a bound of 0 is no bound
            ttl = max(ttl, settings.cache_ttl_min)
        if settings.cache_ttl_max:
            ttl = min(ttl, settings.cache_ttl_max)
        return now + ttl

    async def _post(self, token: str) -> dict[str, Any]:
        settings = self.settings
        endpoint = settings.endpoint or self._keys.introspection_endpoint
        if endpoint is None:
            raise self._failed("no introspection endpoint (none configured, none in discovery)")
        form = {settings.token_param_name: token, "token_type_hint": settings.hint}
        headers = {"Accept": settings.accept}
        if settings.auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: each part form-encoded before the Basic encoding
            pair = f"{_form(settings.client_id)}:{_form(settings.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif settings.auth_method == "client_secret_post":
            form["client_id"] = settings.client_id or ""
            form["client_secret"] = settings.client_secret or ""
        by_endpoint = _limits.setdefault(self._keys.session, {})
        limit = by_endpoint.get(endpoint)
        if limit is None:
            limit = by_endpoint[endpoint] = asyncio.Semaphore(MAX_CONCURRENT)
        try:
            async with (
                asyncio.timeout(self._timeout),  # waiting for a turn counts too
                limit,
                self._keys.session.post(
                    endpoint,
                    data=form,
                    headers=headers,
                    ssl=self._ssl_verify,
                    allow_redirects=False,
                ) as resp,
            ):
                if resp.status != 200:
                    raise self._failed(f"POST {endpoint}: HTTP {resp.status}")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(16 * 1024):
                    body += chunk
                    if len(body) > MAX_ANSWER:  # bounded: never an unbounded read into memory
                        raise self._failed(f"POST {endpoint}: answer over {MAX_ANSWER} bytes")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._failed(f"POST {endpoint}: {type(exc).__name__}") from None
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise self._failed(f"POST {endpoint}: answer is not JSON") from None
        if not isinstance(data, dict):
            raise self._failed(f"POST {endpoint}: answer is not a JSON object")
        if nests_deeper(data, MAX_DEPTH):
            raise self._failed(f"POST {endpoint}: answer nested deeper than {MAX_DEPTH}")
        if holds_lone_surrogate(data):  # not text: Kong's lua-cjson refuses it too
            raise self._failed(f"POST {endpoint}: answer holds a lone surrogate")
        return data

    @staticmethod
    def _failed(reason: str) -> IntrospectionFailed:
        # Logged with the refusal (a bounded number of lines a second), never once per failure.
        return IntrospectionFailed(f"introspection failed: {reason}")


def _number(value: object) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer past a double's range
        return None
    return number if math.isfinite(number) else None


def _over(claims: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """`answer` laid over `claims`: where both hold an object under one name, the two merged
    the same way; elsewhere the answer's value."""
    merged = dict(claims)
    for name, value in answer.items():
        below = merged.get(name)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[name] = _over(below, value)
        else:
            merged[name] = value
    return merged


def _form(value: str | None) -> str:
    return quote(value or "", safe="").replace("%20", "+")


__all__ = ["MAX_ANSWER", "Introspector"]
