"""The token endpoint's OAuth 2.0 protocol: client authentication methods and grants, as registries.

    request = TokenRequest(form={"grant_type": "client_credentials", ...}, authorization=header)
    try:
        body = token_endpoint(Issuer(store, server, issuer_url, clock), request)
    except OAuthError as exc:
        ...  # issuer_api renders exc.status_code, exc.body(), exc.headers()

Order of checks: grant_type present and supported, then the client authenticates, then the client
may use that grant, then the grant's own checks (scopes). Nothing about scopes is said to a
client that has not authenticated.

The errors (RFC 6749 §5.2), one class each, rendered by one function in issuer_api:

    OAuthError               status  error
    ├── InvalidRequest       400     invalid_request         malformed, repeated, two auth methods
    ├── InvalidClient        401     invalid_client          authentication failed (and
    │                                                        WWW-Authenticate when Basic was used)
    ├── InvalidGrant         400     invalid_grant
    ├── UnauthorizedClient   400     unauthorized_client     grant not in the client's grant_types
    ├── UnsupportedGrantType 400     unsupported_grant_type
    ├── InvalidScope         400     invalid_scope
    └── ServerError          500     server_error            a claim template failed to render
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import unquote_plus

from tokengate.identity.models import CLIENT_ID, AuthServer, Client
from tokengate.identity.signing import signer_for
from tokengate.identity.store import NotFound, Store, StoreError
from tokengate.identity.tokens import (
    MAX_TOKEN_LENGTH,
    ClaimError,
    ScopeError,
    grant_scopes,
    mint_access_token,
)

log = logging.getLogger("tokengate.identity.grants")


class OAuthError(Exception):
    error: ClassVar[str] = "invalid_request"
    status_code: ClassVar[int] = 400

    def __init__(self, description: str, *, basic_realm: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        # The realm of the Basic challenge a 401 carries: RFC 6749 §5.2 requires it when the
        # client tried HTTP Basic, and RFC 9110 §15.5.2 on every 401 (it names the scheme the
        # token endpoint supports).
        self.basic_realm = basic_realm

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}

    def headers(self) -> dict[str, str]:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.basic_realm is not None and self.status_code == 401:
            headers["WWW-Authenticate"] = f'Basic realm="{self.basic_realm}"'
        return headers


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    error = "invalid_client"
    status_code = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class ServerError(OAuthError):
    error = "server_error"
    status_code = 500


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A request to the token (or introspection) endpoint: its form, each parameter once
    (the caller refuses repeats, RFC 6749 §3.2), and its Authorization header."""

    form: Mapping[str, str]
    authorization: str | None = None


@dataclass(frozen=True, slots=True)
class Issuer:
    """One auth server's issuer, for one request."""

    store: Store
    server: AuthServer
    url: str  # {public_url}/{issuer_id}/auth: the `iss` of its tokens
    clock: Callable[[], float]


# ---- client authentication (RFC 6749 §2.3) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    method: str
    client_id: str
    client_secret: str


def client_secret_basic(request: TokenRequest, realm: str) -> Credentials | None:
    """RFC 6749 §2.3.1: `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`."""
    header = request.authorization
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient("malformed Basic credentials", basic_realm=realm) from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        raise InvalidClient("malformed Basic credentials", basic_realm=realm)
    return Credentials("client_secret_basic", unquote_plus(client_id), unquote_plus(secret))


def client_secret_post(request: TokenRequest, realm: str) -> Credentials | None:
    """RFC 6749 §2.3.1: `client_id` and `client_secret` in the form body."""
    secret = request.form.get("client_secret")
    if secret is None:
        return None
    client_id = request.form.get("client_id")
    if not client_id:
        raise InvalidRequest("client_secret without client_id")
    return Credentials("client_secret_post", client_id, secret)


ClientAuthMethod = Callable[[TokenRequest, str], Credentials | None]
CLIENT_AUTH_METHODS: Final[Mapping[str, ClientAuthMethod]] = {
    "client_secret_basic": client_secret_basic,
    "client_secret_post": client_secret_post,
}


def authenticate_client(issuer: Issuer, request: TokenRequest) -> Client:
    """The client whose credentials the request carries, or InvalidClient / InvalidRequest."""
    realm = issuer.url
    presented = [c for m in CLIENT_AUTH_METHODS.values() if (c := m(request, realm)) is not None]
    if len(presented) > 1:
        # RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
        raise InvalidRequest("more than one client authentication method")
    if not presented:
        raise InvalidClient("client authentication required", basic_realm=realm)
    credentials = presented[0]
    form_id = request.form.get("client_id")
    if credentials.method == "client_secret_basic" and form_id not in (None, credentials.client_id):
        raise InvalidRequest("client_id does not match the Basic credentials")
    if not CLIENT_ID.fullmatch(credentials.client_id):
        # No client has such an id: refused before any lookup (nor is it remembered).
        raise InvalidClient("client authentication failed", basic_realm=realm)
    # The store compares in constant time and answers None for unknown ids too: one answer for
    # "no such client" and "wrong secret", so client ids cannot be probed.
    client = issuer.store.check_client_secret(
        issuer.server.id, credentials.client_id, credentials.client_secret
    )
    if client is None:
        raise InvalidClient("client authentication failed", basic_realm=realm)
    return client


# ---- grants --------------------------------------------------------------------------------------

Grant = Callable[[Issuer, TokenRequest, Client], dict[str, Any]]


def client_credentials(issuer: Issuer, request: TokenRequest, client: Client) -> dict[str, Any]:
    """RFC 6749 §4.4: the client, authenticated, gets a token for itself (no refresh token)."""
    store, server = issuer.store, issuer.server
    try:
        granted = grant_scopes(store.list_scopes(server.id), client, request.form.get("scope"))
    except ScopeError as exc:
        raise InvalidScope(str(exc)) from None
    try:
        minted = mint_access_token(
            issuer=issuer.url,
            server=server,
            client=client,
            granted=granted,
            claims=store.list_claims(server.id),
            signer=signer_for(store.active_key(server.id)),
            now=issuer.clock(),
        )
    except ClaimError as exc:
        log.error("cannot mint a token for client %s of %s: %s", client.id, server.id, exc)
        raise ServerError("a claim of this auth server could not be rendered") from None
    if len(minted.access_token) > MAX_TOKEN_LENGTH:
        # Nobody would accept it back (this issuer, the gateway): say so rather than issue it.
        log.error(
            "cannot mint a token for client %s of %s: its claims make it %d characters, more "
            "than the %d verifiers accept",
            client.id,
            server.id,
            len(minted.access_token),
            MAX_TOKEN_LENGTH,
        )
        raise ServerError("the claims of this auth server make a token too long to use")
    try:
        store.record_token(minted.record)
    except NotFound:  # the client was deleted while its token was being minted
        raise InvalidClient("client authentication failed", basic_realm=issuer.url) from None
    except StoreError as exc:  # a full disk, a lock another process held past busy_timeout
        log.error("cannot record a token for client %s of %s: %s", client.id, server.id, exc)
        raise ServerError("the token could not be recorded") from None
    return minted.response()


GRANTS: Final[Mapping[str, Grant]] = {"client_credentials": client_credentials}


def token_endpoint(issuer: Issuer, request: TokenRequest) -> dict[str, Any]:
    """RFC 6749 §3.2: dispatch on grant_type; the successful §5.1 body, or an OAuthError."""
    grant_type = request.form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise UnsupportedGrantType(f"grant_type {grant_type[:64]!r} is not supported")
    client = authenticate_client(issuer, request)
    if grant_type not in client.grant_types:
        raise UnauthorizedClient(f"this client may not use the {grant_type} grant")
    return grant(issuer, request, client)
