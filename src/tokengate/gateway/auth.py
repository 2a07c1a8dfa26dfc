"""The openid-connect plugin for one route config: request → verified token → upstream edits.

    auth = Authenticator(oidc_config, registry.get(key_source(oidc_config)), clock=time.time)
    try:
        edits, outcome = await auth.check(request, body=None)   # edits for the forwarder
    except AuthError as exc:
        return auth.refuse(exc, request, request_id)     # 401 / 403 / 400 / 503, Kong's bodies

Request flow (DESIGN): extract → verified-token cache (hit: re-check exp + leeway and this
route's requirements) → on a miss: shape → header → key (JWKS cache, by kid, alg bound to the
key) → signature → iss / exp / nbf / iat / lifetime → cache put → (introspect_jwt_tokens: the
issuer's answer over the claims) → requirements → consumer → upstream edits.
Every exception on this path becomes an AuthError, so a 500 or a pass is impossible.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from tokengate.gateway.claim_values import claim_at, groups_header_value, render_header_value
from tokengate.gateway.consumers import ConsumerMapping
from tokengate.gateway.edits import NO_EDITS, UpstreamEdits
from tokengate.gateway.errors import (
    AuthError,
    InvalidToken,
    KeysUnavailable,
    MalformedToken,
    MissingToken,
)
from tokengate.gateway.extract import (
    TOKEN_HEADERS,
    TokenLocation,
    body_type,
    body_without_token,
    check_bearer_syntax,
    cookie_header_without,
    extract_token,
    needs_body,
    query_without_token,
)
from tokengate.gateway.introspection import Introspector
from tokengate.gateway.keys import IssuerKeys, KeySource
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.rawresponse import (
    DEFAULT_SEND_TIMEOUT,
    SERVER,
    SERVER_LINE,
    RawResponse,
    date_line,
)
from tokengate.gateway.requirements import compile_requirements
from tokengate.gateway.token_cache import TokenCache, VerifiedToken
from tokengate.gateway.verify import (
    ClaimRules,
    HeaderCache,
    check_claims,
    check_max_age,
    decode_claims,
    split_token,
    verify_signature,
)

log = logging.getLogger("tokengate.auth")

# Longest token lifetime accepted (exp - iat): Kong Identity issues at most 30 days.
MAX_TOKEN_LIFETIME: Final = 30 * 86400.0

_ACCESS_TOKEN, _X_ACCESS_TOKEN = TOKEN_HEADERS  # two names, checked one by one on the hot path
_TOKEN_PLACE_HEADERS: Final = frozenset({b"authorization", *(n.encode() for n in TOKEN_HEADERS)})

# What `check` reports when it lets a request through (a refusal's outcome is its AuthError's
# `reason`): together a bounded set, the `outcome` label of tokengate_auth_outcomes_total.
OK: Final = "ok"  # a token verified now (signature and claims)
CACHED: Final = "cached"  # a token found in the verified-token cache
ANONYMOUS: Final = "anonymous"  # no valid token, let through as `anonymous` says
PREFLIGHT: Final = "preflight"  # an OPTIONS request, let through (run_on_preflight: false)


def key_source(config: OidcConfig) -> KeySource:
    return KeySource(
        issuer=config.expected_issuer,
        discovery_url=config.discovery_url,
        jwks_endpoint=config.jwks_endpoint,
        extra_jwks_uris=config.extra_jwks_uris,
        timeout=config.timeout,
        ssl_verify=config.ssl_verify,
        rediscovery_lifetime=config.rediscovery_lifetime,
    )


def is_preflight(request: web.BaseRequest) -> bool:
    # Kong's handler: `run_on_preflight: false` skips the plugin for every OPTIONS request, not
    # only those that carry CORS preflight headers.
    return request.method == "OPTIONS"


class Authenticator:
    """One per distinct openid-connect config; routes with equal configs share it (and its
    verified-token cache)."""

    def __init__(
        self,
        config: OidcConfig,
        keys: IssuerKeys,
        *,
        clock: Callable[[], float],
        cache_capacity: int = 10_000,
        retry_after: int = 5,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
    ) -> None:
        self.config = config
        self.keys = keys
        self._clock = clock
        self._retry_after = str(retry_after)
        self._send_timeout = send_timeout  # for a client that pipelines refusals unread
        self._rules = ClaimRules(
            issuers=config.accepted_issuers, leeway=config.leeway, max_lifetime=MAX_TOKEN_LIFETIME
        )
        self._leeway = config.leeway
        self._max_age = config.max_age
        self._ttl_max = config.cache_ttl_max
        self.cache = TokenCache(cache_capacity) if config.cache_tokens else None
        self._headers = HeaderCache()
        self._refusals = RefusalLog(issuer=config.expected_issuer)
        self._answers: dict[
            tuple[type[AuthError], str | None], tuple[int, dict[str, str], bytes, bytes]
        ] = {}
        self._requirements = compile_requirements(config)
        self._consumers = ConsumerMapping(config) if config.consumer_claims else None
        introspection = config.introspect_jwt_tokens
        self._introspector = (
            Introspector(
                introspection,
                keys,
                timeout=config.timeout,
                ssl_verify=config.ssl_verify,
                capacity=cache_capacity,
            )
            if introspection is not None
            else None
        )
        # Whether a verified token must still pass this route's checks of its claims (memoised
        # in its cache entry): requirements, and the consumer it maps to.
        self._claim_checks = self._requirements is not None or self._consumers is not None
        self.realm = urlsplit(config.expected_issuer).hostname or config.expected_issuer
        self._token_header, self._token_prefix = _parse_token_header(
            config.upstream_access_token_header
        )
        self._answer_token_header, self._answer_token_prefix = _parse_token_header(
            config.downstream_access_token_header
        )
        self._jwk_header = _header_name(config.upstream_access_token_jwk_header)
        self._answer_jwk_header = _header_name(config.downstream_access_token_jwk_header)
        self._introspection_header = _header_name(config.upstream_introspection_header)
        self._answer_introspection_header = _header_name(config.downstream_introspection_header)
        # Names without a claim are only dropped from the client's (_set_headers).
        self._claim_headers = tuple(
            (entry.path, entry.header.encode("latin-1")) for entry in config.upstream_claim_headers
        )
        self._answer_headers = tuple(
            (entry.path, entry.header.encode("latin-1"))
            for entry in config.downstream_claim_headers
        )
        self._groups_claim = config.authenticated_groups_claim
        # What the hot path (cached_edits) must rule out before it may answer.
        places = config.bearer_token_param_type
        # (introspected tokens go the long way: their answers have lifetimes of their own)
        self._hot_path = "header" in places and introspection is None
        self._query_tokens = "query" in places
        self._body_tokens = "body" in places
        self._cookie_tokens = "cookie" in places and bool(config.bearer_token_cookie_name)
        self._preflight_passes = not config.run_on_preflight
        # Compared with client header names read with "-" for "_" (headers.build_request_head).
        self._set_headers = frozenset(
            name.replace(b"_", b"-")
            for name in [n.lower().encode("latin-1") for n in config.upstream_header_names]
            + ([self._token_header.lower()] if self._token_header is not None else [])
            + [name.lower() for name in (self._jwk_header, self._introspection_header) if name]
        )
        # An anonymous pass: the headers a verified token would fill stay empty (a client must
        # not fill them itself), but for the places a client's own credentials come in (the
        # failed token, with hide_credentials, goes as `_hidden` says; Basic stays).
        # Kong's anonymous consumer headers: the X-Consumer-* a client sent are dropped anyway.
        consumer = config.anonymous_consumer
        self._anonymous = UpstreamEdits(
            drop=self._set_headers - _TOKEN_PLACE_HEADERS,
            added=(consumer.header_lines() if consumer else b"")
            + b"X-Anonymous-Consumer: true\r\n",
        )
        self._preflight = UpstreamEdits(drop=self._anonymous.drop)  # no token: nothing of one

    # -- the request path ----------------------------------------------------------------
    def cached_edits(self, request: web.BaseRequest) -> UpstreamEdits | None:
        """The hot path, for the usual request: one `Authorization: Bearer <token>` header, no
        other place a token could be, and a token this route accepted before that has not
        expired. Its upstream edits, or None for `check` to decide (every refusal included).

        It returns only what `check` would (outcome CACHED): the same cache entry, whose
        requirements were met and edits built on its first use; a token found anywhere else
        (query, form or JSON body, cookie, Kong's access-token headers) or a preflight let
        through goes the long way."""
        cache = self.cache
        if cache is None or not self._hot_path:
            return None
        headers = request.headers
        values = headers.getall("Authorization", ())
        if len(values) != 1 or not values[0].startswith("Bearer "):
            return None
        entry = cache.fresh(values[0][7:], self._clock())
        if entry is None or (
            self._claim_checks and (not entry.checked or entry.denial is not None)
        ):
            return None  # unknown, expired, refused by this route, or not yet checked by it
        if (
            _ACCESS_TOKEN in headers
            or _X_ACCESS_TOKEN in headers
            or (self._query_tokens and "?" in request.raw_path)
            or (self._cookie_tokens and "Cookie" in headers)
            or (self._body_tokens and needs_body(request, self.config))
            or (self._preflight_passes and request.method == "OPTIONS")
        ):
            return None
        edits: UpstreamEdits | None = entry.header_edits
        if edits is not None:
            cache.hits += 1
        return edits

    async def check(
        self, request: web.BaseRequest, body: bytes | None
    ) -> tuple[UpstreamEdits, str]:
        """Authenticate and authorise: the edits to apply upstream, and the outcome (OK, CACHED,
        ANONYMOUS or PREFLIGHT). Raises AuthError."""
        config = self.config
        if not config.run_on_preflight and is_preflight(request):
            return self._preflight, PREFLIGHT
        location = None
        try:
            location = extract_token(request, config, body)
            if location is None:
                raise MissingToken
            token, now, cache = location.token, self._clock(), self.cache
            entry = cache.get(token, now) if cache is not None else None
            outcome = CACHED  # this exact string passed every check before
            if entry is None:
                entry = await self.verify(token, now)
                outcome = OK
            if self._introspector is not None:
                entry = await self._introspector.view(token, entry, now)
            self.authorize(entry)
            return self._edits(request, location, entry, body), outcome
        except AuthError as exc:
            # Kong's responses.lua: both its unauthorized and forbidden answers become an
            # anonymous pass when `anonymous` is set.
            if config.anonymous is not None and exc.status in (401, 403):
                log.debug("anonymous access after: %s", exc.detail)
                if location is None or not config.hide_credentials:
                    return self._anonymous, ANONYMOUS
                # The token that failed goes too, from wherever it came. (An error raised in
                # this handler escapes the `except Exception` below: a refusal here too, never
                # a 500, nor a pass that still carries the token.)
                anonymous = self._anonymous
                try:
                    edits = self._hidden(request, location, body, anonymous.drop, anonymous.added)
                except Exception:
                    log.exception("unexpected error while hiding a refused token")
                    raise InvalidToken("token could not be processed") from None
                return edits, ANONYMOUS
            raise
        except Exception:
            # Security invariant: nothing a client sends turns into a 500 or a pass.
            log.exception("unexpected error while authenticating a request")
            raise InvalidToken("token could not be processed") from None

    async def check_before_body(self, request: web.BaseRequest) -> tuple[UpstreamEdits, str] | None:
        """`check` of a token found outside the body (header, query, cookie), before the
        client is invited to send a body that may hold one too: AuthError when it already earns
        a refusal; None when there is none outside the body (the body may carry it). The verdict
        stands unless the body turns out to hold a token as well (`check` then decides, with
        the body)."""
        try:
            return await self.check(request, None)
        except MissingToken:
            return None

    async def verify(self, token: str, now: float) -> VerifiedToken:
        """Verify a token not found in the cache, and cache it. Raises AuthError. Its syntax
        first: a token that passes is safe to re-send in an upstream header line."""
        check_bearer_syntax(token)
        try:
            entry = await self._verify(token, now)
        except AuthError:
            raise
        except Exception as exc:  # anything unforeseen in parsing is the token's fault: 401
            log.warning("unexpected error verifying a token: %r", exc)
            raise MalformedToken("token could not be processed") from None
        if self.cache is not None:
            self.cache.put(token, entry)
        return entry

    async def _verify(self, token: str, now: float) -> VerifiedToken:
        parts = split_token(token, self._headers)
        key = self.keys.select(parts.kid, parts.alg)
        if key is None:
            key = await self.keys.key_for(parts.kid, parts.alg)
        verify_signature(parts, key)
        claims = decode_claims(parts)
        exp = check_claims(claims, self._rules, now)
        expires = exp + self._leeway
        if self._max_age is not None:  # a cached entry too must not outlive it
            expires = min(expires, check_max_age(claims, self._max_age, now, self._leeway))
        if self._ttl_max:  # Kong's cache.lua: a bound of 0 is none (as for introspection)
            expires = min(expires, now + self._ttl_max)
        return VerifiedToken(claims=claims, exp=exp, expires=expires, key_jwk=key.jwk_header)

    def authorize(self, entry: VerifiedToken) -> None:
        """The route's checks of a verified token's claims, in Kong's order: the requirements
        (claims_forbidden, scopes, audience, groups, roles), then the consumer it maps to (a
        Forbidden each)."""
        if not self._claim_checks:
            return
        if not entry.checked:
            try:
                if self._requirements is not None:
                    self._requirements.check(entry.claims)
                if self._consumers is not None:
                    entry.consumer = self._consumers.find(entry.claims)
            except AuthError as exc:
                entry.denial = (type(exc), exc.detail)
                raise
            except Exception:
                # Anything unforeseen in what the claims hold is the token's fault, and stays
                # so: remembered as a refusal, never as a check that passed; refused now as it
                # will be from the memo (with `anonymous`: an anonymous pass each time).
                log.exception("unexpected error checking a token's claims")
                entry.denial = (InvalidToken, "token could not be processed")
                raise InvalidToken("token could not be processed") from None
            finally:
                entry.checked = True
        elif entry.denial is not None:
            kind, detail = entry.denial
            raise kind(detail)

    # -- the upstream side -----------------------------------------------------------------
    def _edits(
        self,
        request: web.BaseRequest,
        location: TokenLocation,
        entry: VerifiedToken,
        body: bytes | None,
    ) -> UpstreamEdits:
        if location.where == "header" and location.header == b"authorization":
            edits: UpstreamEdits | None = entry.header_edits
            if edits is None:
                edits = entry.header_edits = self._build_edits(request, location, entry, body)
            return edits
        return self._build_edits(request, location, entry, body)

    def _build_edits(
        self,
        request: web.BaseRequest,
        location: TokenLocation,
        entry: VerifiedToken,
        body: bytes | None,
    ) -> UpstreamEdits:
        added = self._claim_lines(entry.claims)
        if entry.consumer is not None:
            added += entry.consumer.header_lines()
        token = location.token.encode("ascii")
        if self._token_header is not None:
            added += b"%b: %b%b\r\n" % (self._token_header, self._token_prefix, token)
        if self._jwk_header is not None and entry.key_jwk is not None:
            added += b"%b: %b\r\n" % (self._jwk_header, entry.key_jwk)
        if self._introspection_header is not None and entry.introspected is not None:
            added += b"%b: %b\r\n" % (self._introspection_header, entry.introspected)
        answer = self._answer_lines(entry.claims)
        if self._answer_token_header is not None:
            answer += ((self._answer_token_header, self._answer_token_prefix + token),)
        if self._answer_jwk_header is not None and entry.key_jwk is not None:
            answer += ((self._answer_jwk_header, entry.key_jwk),)
        if self._answer_introspection_header is not None and entry.introspected is not None:
            answer += ((self._answer_introspection_header, entry.introspected),)
        # Headers the gateway sets from the token are never taken from the client.
        if not self.config.hide_credentials:
            return UpstreamEdits(drop=self._set_headers, added=added, answer=answer)
        return self._hidden(request, location, body, self._set_headers, added, answer)

    def _hidden(
        self,
        request: web.BaseRequest,
        location: TokenLocation,
        body: bytes | None,
        drop: frozenset[bytes],
        added: bytes,
        answer: tuple[tuple[bytes, bytes], ...] = (),
    ) -> UpstreamEdits:
        """hide_credentials: `drop` and `added` (the gateway's own header lines), with the token
        taken out of where it came; `answer` as UpstreamEdits has it."""
        where = location.where
        if where == "header":
            return UpstreamEdits(drop=drop | {location.header}, added=added, answer=answer)
        if where == "query":
            query = query_without_token(request.raw_path.partition("?")[2])
            return UpstreamEdits(drop=drop, added=added, query=query, answer=answer)
        cookie_name = self.config.bearer_token_cookie_name
        if where == "cookie" and cookie_name:
            rest = cookie_header_without(
                "; ".join(request.headers.getall("Cookie", ())), cookie_name
            )
            if rest:
                # Back to the bytes the client sent (aiohttp read them as UTF-8, surrogateescape):
                # browsers send UTF-8 cookie values, and other bytes pass too, as nginx lets them.
                added += b"Cookie: %b\r\n" % rest.encode("utf-8", "surrogateescape")
            return UpstreamEdits(drop=drop | {b"cookie"}, added=added, answer=answer)
        if where == "body" and body is not None:
            body = body_without_token(body, body_type(request))
            return UpstreamEdits(drop=drop, added=added, body=body, answer=answer)
        return UpstreamEdits(drop=drop, added=added, answer=answer)

    def _claim_lines(self, claims: Mapping[str, Any]) -> bytes:
        """The header lines the upstream gets from the token's claims."""
        lines = [
            b"%b: %b\r\n" % (header, value)
            for header, value in self._from_claims(self._claim_headers, claims)
        ]
        if self._groups_claim:
            groups = groups_header_value(claim_at(claims, self._groups_claim))
            if groups is not None:
                lines.append(b"X-Authenticated-Groups: %b\r\n" % groups)
        return b"".join(lines)

    def _answer_lines(self, claims: Mapping[str, Any]) -> tuple[tuple[bytes, bytes], ...]:
        """The headers the client's answer gets from the token's claims (downstream_headers)."""
        return tuple(self._from_claims(self._answer_headers, claims))

    @staticmethod
    def _from_claims(
        headers: tuple[tuple[tuple[str, ...], bytes], ...], claims: Mapping[str, Any]
    ) -> list[tuple[bytes, bytes]]:
        found = []
        for path, header in headers:
            value = render_header_value(claim_at(claims, path))
            if value is not None:
                found.append((header, value))
        return found

    # -- the refusal -----------------------------------------------------------------------
    def refuse(
        self,
        exc: AuthError,
        request: web.BaseRequest,
        request_id: bytes,
        *,
        close: bool = False,
        extra: bytes = b"",
    ) -> web.StreamResponse:
        """The one place an AuthError becomes an HTTP answer (RFC 6750 §3): Kong's body, the
        challenge, pre-serialised once per kind of refusal (a flood of bad tokens costs little).
        `extra`: header lines of other plugins (cors) for the HTTP/1.1 answer; the caller
        edits an HTTP/1.0 one, which aiohttp writes."""
        self._refusals.note(exc)
        key = (type(exc), exc.detail if self.config.display_errors else None)
        prepared = self._answers.get(key)
        if prepared is None:
            if len(self._answers) >= 256:  # details are fixed texts; bounded all the same
                self._answers.clear()
            prepared = self._answers[key] = self._prepare_answer(exc)
        status, headers, body, fixed_head = prepared
        if request.version != (1, 1):
            return web.Response(
                status=status,
                body=body,
                headers={"Server": SERVER, **headers},  # not aiohttp's own Server token
                content_type="application/json",
                charset="utf-8",
            )
        keep_alive = request.keep_alive and not close
        head = b"%b%b%bX-Request-Id: %b\r\n%b\r\n" % (
            fixed_head,
            extra,
            date_line(),
            request_id,
            b"" if keep_alive else b"Connection: close\r\n",
        )
        if request.method == "HEAD":
            body = b""  # RFC 9110 §9.3.2: no content (Content-Length still says what GET gets)
        return RawResponse(
            head + body,
            status=status,
            keep_alive=keep_alive,
            body_size=len(body),
            send_timeout=self._send_timeout,
        )

    def _prepare_answer(self, exc: AuthError) -> tuple[int, dict[str, str], bytes, bytes]:
        """Status, headers and body of the answer to `exc`, and its HTTP/1.1 head but for the
        per-request lines (Date, X-Request-Id, Connection)."""
        config = self.config
        headers: dict[str, str] = {}
        if exc.status == 503:
            headers["Retry-After"] = self._retry_after
            message = "Service Unavailable"
        elif exc.status == 400:
            message = "Bad Request"
        elif exc.status == 403:
            message = config.forbidden_error_message
        else:
            message = config.unauthorized_error_message
        if exc.status in (401, 403, 400):
            if config.display_errors:  # Kong's responses.lua: the reason after the message
                message = f"{message} ({exc.detail})"
            challenge = f'Bearer realm="{_quote(self.realm)}"'
            if exc.error is not None and config.expose_error_code:
                challenge += f', error="{exc.error}"'
                if config.display_errors:
                    challenge += f', error_description="{_description(exc.detail)}"'
            headers["WWW-Authenticate"] = challenge
        body = json.dumps({"message": message}).encode()
        return exc.status, headers, body, prepared_head(exc.status, headers, len(body))


def prepared_head(status: int, headers: Mapping[str, str], length: int) -> bytes:
    reason = HTTPStatus(status).phrase.encode("ascii")
    lines = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
    for name, value in headers.items():
        # Header values here come from config and fixed texts; never raw client input.
        lines.append(b"%b: %b\r\n" % (name.encode("latin-1"), _header_safe(value)))
    lines.append(b"Content-Type: application/json; charset=utf-8\r\n")
    lines.append(b"Content-Length: %d\r\n" % length)
    lines.append(SERVER_LINE)
    return b"".join(lines)


def _header_safe(value: str) -> bytes:
    return value.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace")


class RefusalLog:
    """Why requests were refused, at INFO, at most `per_second` lines a second: a client must not
    be able to turn a flood of bad tokens into a flood of log lines (and the CPU they cost).
    Lines beyond the budget are counted and the count is reported with the next line."""

    def __init__(
        self, *, issuer: str, per_second: int = 5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._issuer = issuer
        self._budget = per_second
        self._clock = clock
        self._window = -1.0
        self._logged = 0
        self._suppressed = 0

    def note(self, exc: AuthError) -> None:
        now = self._clock()
        if now - self._window >= 1.0:
            self._window, self._logged = now, 0
        if self._logged >= self._budget:
            self._suppressed += 1
            return
        self._logged += 1
        more = f" ({self._suppressed} more refusals not logged)" if self._suppressed else ""
        self._suppressed = 0
        log.info(
            "refused %d %s for %s: %s%s", exc.status, exc.reason, self._issuer, exc.detail, more
        )


# How the schemes Kong names are spelled on the wire (RFC 6750, RFC 7617, RFC 9449).
_SCHEMES: Final = {"bearer": "Bearer", "basic": "Basic", "dpop": "DPoP"}


def _parse_token_header(setting: str | None) -> tuple[bytes | None, bytes]:
    # Kong's format: "header-name" or "header-name:scheme" (e.g. "authorization:bearer").
    if not setting:
        return None, b""
    name, _, scheme = setting.partition(":")
    scheme = scheme.strip()
    scheme = _SCHEMES.get(scheme.lower(), scheme.capitalize())
    prefix = (scheme + " ").encode("latin-1") if scheme else b""
    return name.strip().encode("latin-1"), prefix


def _header_name(name: str | None) -> bytes | None:
    return name.encode("latin-1") if name else None


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# RFC 6750 §3: error_description values are %x20-21 / %x23-5B / %x5D-7E (no escapes).
_DESCRIPTION_CHARS: Final = frozenset(map(chr, range(0x20, 0x7F))) - {'"', "\\"}


def _description(text: str) -> str:
    return "".join(c for c in text if c in _DESCRIPTION_CHARS)


__all__ = [
    "ANONYMOUS",
    "CACHED",
    "NO_EDITS",
    "OK",
    "PREFLIGHT",
    "Authenticator",
    "KeysUnavailable",
    "UpstreamEdits",
    "is_preflight",
    "key_source",
]
