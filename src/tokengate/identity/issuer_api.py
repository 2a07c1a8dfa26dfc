"""Every auth server's issuer, at `{public_url}/{issuer_id}/auth`: discovery, JWKS, token,
introspection and userinfo, as Kong Identity serves them.

    app = create_issuer_app(store, public_url="http://127.0.0.1:9000")
    app.add_subapp("/v1", create_admin_app(store, admin_token=..., public_url=...))
    # curl -d grant_type=client_credentials -d client_id=$ID -d client_secret=$SECRET \\
    #      http://127.0.0.1:9000/$ISSUER_ID/auth/oauth/token

    GET       {issuer}/.well-known/openid-configuration   discovery (OpenID Connect Discovery 1.0)
    GET       {issuer}/.well-known/jwks                    public keys: active + retired in grace
    GET|POST  {issuer}/authorize                           always an unsupported_response_type
    POST      {issuer}/oauth/token                         RFC 6749, client_credentials (grants.py)
    POST      {issuer}/introspect                          RFC 7662, the caller authenticates
    GET|POST  {issuer}/userinfo                            Bearer token → claims (OIDC Core §5.3)
    OPTIONS   each of them                                 CORS preflight

CORS (the auth server's `trusted_origins`): a request whose Origin is one of them gets
`Access-Control-Allow-Origin` with that origin, on errors too, and a preflight from it a 204
with the methods of the path and the headers asked for. Other origins get no CORS header (the
browser then refuses); `Vary: Origin` whenever the server has trusted origins.

HTTP glue only: the protocol is in grants.py, tokens in tokens.py. OAuth errors become RFC 6749
§5.2 JSON in exactly one place (`oauth_error_response`); an unknown issuer id is a JSON 404. A
form whose framing or Content-Encoding breaks is a 400 invalid_request, one that stalls a 408
(bodies.py): either answer closes the connection.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import jwt
from aiohttp import web

from tokengate.gateway.rawresponse import (
    SERVER,
    SERVER_LINE,
    RawResponse,
    date_line,
    name_server,
)
from tokengate.identity.bodies import (
    BODY_TIMEOUT,
    BodyTimeout,
    BrokenBody,
    answer_and_close,
    read_body,
)
from tokengate.identity.grants import (
    CLIENT_AUTH_METHODS,
    GRANTS,
    InvalidRequest,
    Issuer,
    OAuthError,
    TokenRequest,
    authenticate_client,
    token_endpoint,
)
from tokengate.identity.models import AuthServer, SigningKey
from tokengate.identity.signing import public_jwk, signer_for
from tokengate.identity.store import NotFound, Store
from tokengate.identity.tokens import MAX_TOKEN_LENGTH, RESERVED_CLAIMS, ClaimError, userinfo

log = logging.getLogger("tokengate.identity.issuer")

FORM: Final = "application/x-www-form-urlencoded"
_FORM_CHARSETS: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
JWKS_MAX_AGE: Final = 300
NO_STORE: Final[Mapping[str, str]] = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CLAIMS_IN_ORDER: Final = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope")
_REQUIRED_CLAIMS: Final = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id"]

NO_CORS: Final[Mapping[str, str]] = MappingProxyType({})
_VARY_ORIGIN: Final[Mapping[str, str]] = MappingProxyType({"Vary": "Origin"})
PREFLIGHT_MAX_AGE: Final = 600
# Access-Control-Request-Headers as browsers send it: header names, commas, spaces.
_HEADER_LIST: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:[ ,]+[A-Za-z0-9!#$%&'*+.^_`|~-]+)*"
)

_dumps = functools.partial(json.dumps, separators=(",", ":"))
_TOKEN_HEAD: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Cache-Control: no-store\r\nPragma: no-cache\r\n" + SERVER_LINE
)
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class UnreadableBody(InvalidRequest):
    """The body broke or stalled (bodies.py): its answer closes the connection."""


class SlowBody(UnreadableBody):
    status_code = 408


def oauth_error_response(exc: OAuthError, cors: Mapping[str, str] = NO_CORS) -> web.Response:
    """The one place an OAuthError becomes HTTP: RFC 6749 §5.2 JSON, never cached."""
    return web.json_response(
        exc.body(), status=exc.status_code, headers={**exc.headers(), **cors}, dumps=_dumps
    )


async def oauth_error_answer(
    request: web.BaseRequest, exc: OAuthError, cors: Mapping[str, str] = NO_CORS
) -> web.StreamResponse:
    """`oauth_error_response`, sent at once with the connection closed for a body that broke
    or stalled (the rest of it cannot be told from a next request)."""
    response = oauth_error_response(exc, cors)
    if isinstance(exc, UnreadableBody):
        return await answer_and_close(request, response)
    return response


def cors_headers(server: AuthServer, request: web.BaseRequest) -> Mapping[str, str]:
    """CORS headers for an answer of `server`'s issuer to `request` (see the module doc)."""
    if not server.trusted_origins:
        return NO_CORS
    origin = request.headers.get("Origin")
    # Only an ASCII origin is echoed (browsers send hosts in punycode): it goes into a header.
    trusted = _trusted_origins(server.trusted_origins)
    if origin is not None and origin.isascii() and origin.lower() in trusted:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return _VARY_ORIGIN


@functools.lru_cache(maxsize=256)
def _trusted_origins(uris: tuple[str, ...]) -> frozenset[str]:
    """The origins browsers send for pages under `uris`, each parsed once per auth server."""
    return frozenset(filter(None, map(_origin_of, uris)))


def _origin_of(uri: str) -> str | None:
    """The origin a browser sends for pages under `uri` (RFC 6454): scheme, host (punycode),
    and the port unless it is the scheme's default; lower case. None when it names none."""
    parts = urlsplit(uri)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except (ValueError, UnicodeError):  # a port out of range, a host IDNA refuses
        return None
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


class IssuerApi:
    """The handlers; state is the store, the public URL and the clock, nothing per request."""

    def __init__(
        self,
        store: Store,
        *,
        public_url: str,
        clock: Callable[[], float],
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.body_timeout = body_timeout

    def routes(self) -> list[web.RouteDef]:
        base = "/{issuer_id}/auth"
        # The token endpoint sets its CORS headers itself (its answer may be raw bytes).
        routes = [
            web.get(base + "/.well-known/openid-configuration", self._cors(self.discovery)),
            web.get(base + "/.well-known/jwks", self._cors(self.jwks)),
            web.get(base + "/authorize", self._cors(self.authorize)),
            web.post(base + "/authorize", self._cors(self.authorize)),
            web.post(base + "/oauth/token", self.token),
            web.post(base + "/introspect", self._cors(self.introspect)),
            web.get(base + "/userinfo", self._cors(self.userinfo)),
            web.post(base + "/userinfo", self._cors(self.userinfo)),
        ]
        methods: dict[str, list[str]] = {}
        for route in routes:
            assert isinstance(route, web.RouteDef)
            methods.setdefault(route.path, []).append(route.method)
        preflights = [
            web.options(path, functools.partial(self.preflight, ", ".join(allowed)))
            for path, allowed in methods.items()
        ]
        return routes + preflights

    def _cors(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def with_cors(request: web.Request) -> web.StreamResponse:
            # The auth server as the request found it (an unknown issuer is a 404 here): one
            # deleted while the handler awaited the body must not turn its answer into a 500.
            server = self.issuer(request).server
            response = await handler(request)
            response.headers.update(cors_headers(server, request))
            return response

        return with_cors

    async def preflight(self, allowed: str, request: web.Request) -> web.Response:
        """OPTIONS: a CORS preflight from a trusted origin gets what it asks to send; any
        other OPTIONS only the methods of the path."""
        headers = {"Allow": f"{allowed}, OPTIONS"}
        cors = cors_headers(self.issuer(request).server, request)
        headers.update(cors)
        if "Access-Control-Allow-Origin" in cors:
            headers["Access-Control-Allow-Methods"] = allowed
            asked = request.headers.get("Access-Control-Request-Headers")
            if asked and _HEADER_LIST.fullmatch(asked):
                headers["Access-Control-Allow-Headers"] = asked
            headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
        return web.Response(status=204, headers=headers)

    def issuer(self, request: web.Request) -> Issuer:
        return self.issuer_by_id(request.match_info["issuer_id"])

    def issuer_by_id(self, issuer_id: str) -> Issuer:
        try:
            server = self.store.get_auth_server_by_issuer_id(issuer_id)
        except NotFound:
            body = {"error": "not_found", "error_description": "no such issuer"}
            raise web.HTTPNotFound(text=_dumps(body), content_type="application/json") from None
        url = f"{self.public_url}/{server.issuer_id}/auth"
        return Issuer(self.store, server, url, self.clock)

    async def discovery(self, request: web.Request) -> web.Response:
        issuer = self.issuer(request)
        server, url = issuer.server, issuer.url
        scopes = self.store.list_scopes(server.id)
        custom = [c.name for c in self.store.list_claims(server.id) if c.enabled]
        claims = list(_CLAIMS_IN_ORDER) + [
            n for n in dict.fromkeys(custom) if n not in RESERVED_CLAIMS
        ]
        doc = {
            "issuer": url,
            "jwks_uri": f"{url}/.well-known/jwks",
            # OIDC Discovery §3 requires it (Kong Identity publishes one too); see authorize.
            "authorization_endpoint": f"{url}/authorize",
            "token_endpoint": f"{url}/oauth/token",
            "introspection_endpoint": f"{url}/introspect",
            "userinfo_endpoint": f"{url}/userinfo",
            "grant_types_supported": list(GRANTS),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
            "introspection_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
            # OIDC Discovery §3: RS256 MUST be listed (the issuer's own algorithm beside it).
            "id_token_signing_alg_values_supported": list(
                dict.fromkeys(["RS256", server.signing_algorithm])
            ),
            "scopes_supported": [s.name for s in scopes if s.enabled and s.include_in_metadata],
            "claims_supported": claims,
        }
        return web.json_response(doc, dumps=_dumps)

    async def authorize(self, request: web.Request) -> web.Response:
        """The authorization endpoint discovery must name. Tokens here are for machines, by
        client_credentials at the token endpoint: every authorization request is refused, in
        the answer itself, never by a redirect (RFC 6749 §4.1.2.1: a redirect_uri not checked
        against the client's is never followed)."""
        self.issuer(request)  # an unknown issuer is a 404
        body = {
            "error": "unsupported_response_type",
            "error_description": "this issuer grants client_credentials at its token endpoint only",
        }
        return web.json_response(body, status=400, headers=NO_STORE, dumps=_dumps)

    async def jwks(self, request: web.Request) -> web.Response:
        issuer = self.issuer(request)
        keys = [public_jwk(k) for k in self.store.published_keys(issuer.server.id)]
        headers = {"Cache-Control": f"max-age={JWKS_MAX_AGE}"}
        return web.json_response({"keys": keys}, headers=headers, dumps=_dumps)

    async def token(self, request: web.Request) -> web.StreamResponse:
        return await self.token_for(request.match_info["issuer_id"], request)

    async def token_for(self, issuer_id: str, request: web.BaseRequest) -> web.StreamResponse:
        """The token endpoint of `issuer_id` (routed here, or straight from `token_shortcut`)."""
        issuer = self.issuer_by_id(issuer_id)
        cors = cors_headers(issuer.server, request)
        try:
            body = token_endpoint(issuer, await _token_request(request, self.body_timeout))
        except OAuthError as exc:
            return await oauth_error_answer(request, exc, cors)
        return _no_store_json(request, _dumps(body).encode(), cors)

    async def introspect(self, request: web.Request) -> web.StreamResponse:
        """RFC 7662: any client of this auth server may ask; the answer is `active: false` for
        anything but a token this issuer signed, recorded, and has not revoked or seen expire."""
        issuer = self.issuer(request)
        try:
            token_request = await _token_request(request, self.body_timeout)
            authenticate_client(issuer, token_request)
            token = token_request.form.get("token")
            if not token:
                raise InvalidRequest("token is required")
        except OAuthError as exc:  # (with its CORS headers now, should it be sent at once)
            return await oauth_error_answer(request, exc, cors_headers(issuer.server, request))
        claims = self.active_claims(issuer, token)
        if claims is None:
            return web.json_response({"active": False}, headers=NO_STORE, dumps=_dumps)
        body: dict[str, Any] = {"active": True}
        body.update((k, claims[k]) for k in _CLAIMS_IN_ORDER if k in claims)
        body["token_type"] = "Bearer"  # noqa: S105 (a token type, not a password)
        return web.json_response(body, headers=NO_STORE, dumps=_dumps)

    async def userinfo(self, request: web.Request) -> web.Response:
        """OIDC Core §5.3 with an access token from this issuer: every claim the token's scopes
        include, those kept out of the token (include_in_token false) too."""
        issuer = self.issuer(request)
        realm = f'Bearer realm="{issuer.url}"'
        headers = request.headers.getall("Authorization", [])
        if len(headers) > 1:
            return _bearer_error(
                400, realm, "invalid_request", "more than one Authorization header"
            )
        scheme, _, token = headers[0].strip().partition(" ") if headers else ("", "", "")
        if scheme.lower() != "bearer" or not token.strip():
            # RFC 6750 §3.1: no credentials, no error code
            return web.json_response(
                {"message": "Unauthorized"},
                status=401,
                headers={**NO_STORE, "WWW-Authenticate": realm},
            )
        claims = self.active_claims(issuer, token.strip())
        try:
            if claims is None:
                raise NotFound("inactive token")
            client = self.store.get_client(issuer.server.id, claims["client_id"])
        except NotFound:
            return _bearer_error(401, realm, "invalid_token", "the access token is not active")
        names = set(claims.get("scope", "").split(" "))
        granted = [
            s for s in self.store.list_scopes(issuer.server.id) if s.enabled and s.name in names
        ]
        try:
            body = userinfo(
                issuer.server,
                client,
                granted,
                self.store.list_claims(issuer.server.id),
                now=self.clock(),
            )
        except ClaimError as exc:
            log.error("userinfo for client %s: %s", client.id, exc)
            body = {"error": "server_error", "error_description": "a claim could not be rendered"}
            return web.json_response(body, status=500, headers=NO_STORE, dumps=_dumps)
        return web.json_response(body, headers=NO_STORE, dumps=_dumps)

    def active_claims(self, issuer: Issuer, token: str) -> dict[str, Any] | None:
        """The token's claims if it is active at this issuer now, else None (never an error)."""
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():  # a JWS is ASCII
            return None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        key = self._published_key(issuer, kid)
        if key is None:  # not signed by this auth server (another one's token: inactive)
            return None
        try:
            # The algorithm is the key's, never the token header's.
            claims: dict[str, Any] = jwt.decode(
                token,
                signer_for(key).private_key.public_key(),
                algorithms=[key.algorithm],
                issuer=issuer.url,
                options={
                    "verify_aud": False,  # the audience may have been edited since issuing
                    "verify_exp": False,  # exp / nbf / iat: below, with our clock
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": _REQUIRED_CLAIMS,
                },
            )
        except jwt.PyJWTError:
            return None
        now = self.clock()
        exp, nbf, jti = claims["exp"], claims["nbf"], claims["jti"]
        if not (_is_number(exp) and _is_number(nbf) and isinstance(jti, str)):
            return None
        if now >= exp or now < nbf:
            return None
        record = self.store.find_token(jti)
        # Revocation lives in the store: a signed, unexpired token that was revoked is inactive.
        if (
            record is None
            or record.revoked
            or record.auth_server_id != issuer.server.id
            or record.client_id != claims["client_id"]
        ):
            return None
        return claims

    def _published_key(self, issuer: Issuer, kid: Any) -> SigningKey | None:
        if not isinstance(kid, str):
            return None
        for key in self.store.published_keys(issuer.server.id):
            if key.kid == kid:
                return key
        return None


ISSUER_API: Final = web.AppKey("issuer_api", IssuerApi)

_TOKEN_PATH_END: Final = "/auth/oauth/token"  # noqa: S105 (a path, not a password)
# An issuer id that needs no percent-decoding and is not a dot segment: the shortcut takes only
# these; anything else goes through aiohttp's router, which decodes and normalises.
_PLAIN_ISSUER_ID: Final = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*")


def token_shortcut(api: IssuerApi, routed: Handler) -> Handler:
    """A server handler that answers `POST /{issuer_id}/auth/oauth/token` itself and hands every
    other request to `routed` (the application's handler).

    The token endpoint is the one path clients call in a loop; resolving it through the
    application's router and middleware machinery costs more than its JSON and SQL together.
    Only for an application without middlewares (nothing would be skipped)."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        # With Expect, aiohttp's router answers 100 Continue or 417 first: routed as usual.
        if request.method == "POST" and "Expect" not in request.headers:
            path = request.raw_path
            if path.endswith(_TOKEN_PATH_END):
                issuer_id = path[1 : -len(_TOKEN_PATH_END)]
                if _PLAIN_ISSUER_ID.fullmatch(issuer_id):
                    try:
                        response = await api.token_for(issuer_id, request)
                    except web.HTTPException as exc:
                        response = web.Response(
                            status=exc.status, text=exc.text, content_type=exc.content_type
                        )
                    # Outside the application: its on_response_prepare (name_server) is not run.
                    response.headers["Server"] = SERVER
                    return response
        return await routed(request)

    return handle


def create_issuer_app(
    store: Store,
    *,
    public_url: str,
    clock: Callable[[], float] = time.time,
    body_timeout: float = BODY_TIMEOUT,
) -> web.Application:
    """The issuers of every auth server in `store`; paths include the issuer id, so the identity
    app serves this one at "/" (and mounts the admin API under /v1)."""
    api = IssuerApi(store, public_url=public_url, clock=clock, body_timeout=body_timeout)
    app = web.Application()
    app.on_response_prepare.append(name_server)  # subapps' answers (/v1) pass through it too
    app[ISSUER_API] = api
    app.add_routes(api.routes())
    return app


async def _token_request(request: web.BaseRequest, body_timeout: float) -> TokenRequest:
    """The form (each parameter at most once, RFC 6749 §3.2; one sent without a value is as if
    omitted, §3.1) and the Authorization header."""
    if request.content_type != FORM:
        raise InvalidRequest(f"the request body must be {FORM}")
    charset = (request.charset or "utf-8").lower()
    if charset not in _FORM_CHARSETS:
        # RFC 6749 Appendix B: UTF-8. A codec of the client's choosing (unicode_escape, ...)
        # could make anything of the body.
        raise InvalidRequest(f"the form's charset must be UTF-8, not {charset[:32]!r}")
    try:
        # The body once, parsed by the standard library (aiohttp's request.post() would build a
        # MultiDict around the same parse_qsl). The charset is that of the body's octets; what
        # the percent-escapes encode is UTF-8 whatever it says (RFC 6749 Appendix B).
        text = (await read_body(request, body_timeout)).decode(charset).rstrip()
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=64
        )
    except (ValueError, LookupError):  # bad bytes or escapes, unknown charset, too many fields
        raise InvalidRequest("malformed form body") from None
    except ConnectionError:  # the client left mid-body: nobody will read the answer
        raise InvalidRequest("the connection closed before the whole body arrived") from None
    except BrokenBody as exc:  # the client's error, not a 500
        raise UnreadableBody(str(exc)) from None
    except BodyTimeout as exc:
        raise SlowBody(str(exc)) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise InvalidRequest(f"parameter {key[:64]!r} is repeated")
        form[key] = value
    # Repeats counted, a parameter without a value is then as if omitted (§3.1).
    form = {key: value for key, value in form.items() if value}
    authorization = request.headers.getall("Authorization", [])
    if len(authorization) > 1:
        raise InvalidRequest("more than one Authorization header")
    return TokenRequest(form, authorization[0] if authorization else None)


def _no_store_json(
    request: web.BaseRequest, body: bytes, cors: Mapping[str, str]
) -> web.StreamResponse:
    """A 200 JSON answer that must not be cached, laid out as bytes for HTTP/1.1 clients."""
    if request.version != (1, 1):
        headers = {**NO_STORE, **cors}
        return web.Response(body=body, headers=headers, content_type="application/json")
    keep_alive = request.keep_alive
    head = b"%b%b%bContent-Length: %d\r\n%b\r\n" % (
        _TOKEN_HEAD,
        date_line(),
        b"".join(b"%b: %b\r\n" % (k.encode(), v.encode("ascii")) for k, v in cors.items())
        if cors
        else b"",
        len(body),
        b"" if keep_alive else b"Connection: close\r\n",
    )
    return RawResponse(head + body, status=200, keep_alive=keep_alive, body_size=len(body))


def _bearer_error(status: int, realm: str, error: str, description: str) -> web.Response:
    challenge = f'{realm}, error="{error}"'
    body = {"error": error, "error_description": description}
    headers = {**NO_STORE, "WWW-Authenticate": challenge}
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
