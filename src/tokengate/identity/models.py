"""The entities of a local Kong Identity, as the store keeps them and the APIs render them.

    server = store.get_auth_server(auth_server_id)
    issuer = f"{public_url}/{server.issuer_id}/auth"
    for claim in store.list_claims(server.id): ...

Field names and meanings follow Konnect's published Kong Identity API (its OpenAPI spec).
Ids are UUID strings except `AuthServer.issuer_id` (16 lowercase letters and digits: the issuer
path segment, as Kong Identity's issuer host names carry) and `Client.id` (an OAuth client_id,
1-36 of [-_A-Za-z0-9]). Times are timezone-aware UTC datetimes. Secrets are never held in clear:
`ClientSecret.secret_hash` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
GRANT_TYPES = ("implicit", "client_credentials")
RESPONSE_TYPES = ("none", "token", "code", "id_token")
TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_post", "none")
MIN_TOKEN_DURATION = 60
MAX_TOKEN_DURATION = 2_592_000
# A scope name is one RFC 6749 §3.3 scope-token: tokens join granted names with spaces.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
SCOPE_NAME_RULE = "printable ASCII without spaces, quotes or backslashes (RFC 6749 §3.3)"
CLIENT_ID = re.compile(r"[-_A-Za-z0-9]{1,36}")  # the spec's ClientId: '[-_\w]+', 1-36 characters
DEFAULT_TOKEN_DURATION = 300
MAX_ACTIVE_SECRETS = 2


@dataclass(frozen=True, slots=True)
class AuthServer:
    id: str
    issuer_id: str
    name: str
    description: str
    audience: str
    signing_algorithm: str
    labels: Mapping[str, str]
    trusted_origins: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Scope:
    id: str
    auth_server_id: str
    name: str
    description: str
    default: bool
    include_in_metadata: bool
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    id: str
    auth_server_id: str
    name: str
    value: str  # static text, JSON, or a template with ${ ... } (checked when saved)
    include_in_token: bool
    include_in_all_scopes: bool
    include_in_scopes: tuple[str, ...]  # scope ids
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Client:
    id: str  # the OAuth client_id
    auth_server_id: str
    name: str
    grant_types: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    login_uri: str | None
    access_token_duration: int
    id_token_duration: int
    allow_all_scopes: bool
    allow_scopes: tuple[str, ...]  # scope ids
    labels: Mapping[str, str]
    response_types: tuple[str, ...]
    token_endpoint_auth_method: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ClientSecret:
    id: str
    auth_server_id: str
    client_id: str
    secret_hash: str  # see store.hash_secret / store.check_secret
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token /oauth/token issued (its jti), for listing, revocation and introspection."""

    id: str  # the token's jti
    auth_server_id: str
    client_id: str
    granted_scope_names: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str  # a UUID
    auth_server_id: str
    algorithm: str
    private_pem: bytes = field(repr=False)  # PKCS#8, never served, never logged
    created_at: datetime
    retired_at: datetime | None = None  # None: the active key; else kept in the JWKS for a grace
    published_until: datetime | None = (
        None  # retired keys: the end of that grace (store.rotate_key)
    )

    def is_published(self, now: datetime) -> bool:
        """Whether the JWKS serves this key at `now`: it is active, or retired and in its grace."""
        return self.retired_at is None or (
            self.published_until is not None and now < self.published_until
        )
