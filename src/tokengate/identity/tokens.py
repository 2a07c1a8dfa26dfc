"""Access tokens as Kong Identity mints them: scopes granted, claims included, the signed JWT.

    granted = grant_scopes(store.list_scopes(server.id), client, form.get("scope"))
    minted = mint_access_token(issuer=issuer_url, server=server, client=client, granted=granted,
                               claims=store.list_claims(server.id),
                               signer=signer_for(store.active_key(server.id)), now=clock())
    store.record_token(minted.record)
    body = minted.response()   # {"access_token", "token_type": "Bearer", "expires_in", "scope"}

No HTTP here and no SQL: the caller fetches an auth server's scopes and claims once per request
and passes them in. The rules (Kong Identity's API reference):

- Scopes are requested by name, space-separated. Without a `scope` parameter the client gets the
  auth server's enabled `default` scopes it may use; a requested scope that is unknown, disabled
  or not allowed for the client (`allow_all_scopes` / `allow_scopes`) is `invalid_scope`.
- A claim goes in the token when it is enabled, `include_in_token`, and either
  `include_in_all_scopes` or one of its `include_in_scopes` was granted. `/userinfo` answers the
  same rule without `include_in_token` (that flag moves a claim from the token to /userinfo).
- The registered claims (`RESERVED_CLAIMS`) are ours: a custom claim of that name is skipped.

Cost: one `json.dumps` and two base64 encodings around the signature; the header segment is
encoded once per (alg, kid); the signer is the cached, already-parsed key (`signing.signer_for`).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from tokengate.identity.models import SCOPE_TOKEN, AuthServer, Claim, Client, IssuedToken, Scope
from tokengate.identity.signing import Signer
from tokengate.identity.templates import TemplateError, render_claim, template_context

log = logging.getLogger("tokengate.identity.tokens")

# Registered claims the issuer sets itself; a custom claim can never override one.
RESERVED_CLAIMS: Final = frozenset(
    {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"}
)
_JSON: Final = json.JSONEncoder(separators=(",", ":"))  # compact; made once, not per token
# Longest access token minted or accepted back (introspection, userinfo): what fits, after
# "Bearer ", in one header line of 8190 bytes, the longest aiohttp (so the gateway) and nginx's
# default 8 KiB buffers (so Kong) read. The gateway's MAX_TOKEN_SIZE, 8192, is the bound for a
# token in a query or form body, where it is not the line's length that limits it.
MAX_TOKEN_LENGTH: Final = 8190 - len("Bearer ")


class ScopeError(ValueError):
    """A requested scope cannot be granted (the token endpoint answers invalid_scope)."""


class ClaimError(RuntimeError):
    """A claim's value could not be rendered for this client (a configuration problem)."""


def grant_scopes(
    scopes: Sequence[Scope], client: Client, requested: str | None
) -> tuple[Scope, ...]:
    """The scopes a token gets: those requested by name, or the client's default scopes."""

    def allowed(scope: Scope) -> bool:
        return scope.enabled and (client.allow_all_scopes or scope.id in client.allow_scopes)

    names = requested.split(" ") if requested else []
    names = [n for n in names if n]
    if not names:  # no scope parameter (or an empty one): the defaults this client may use
        return tuple(s for s in scopes if s.default and allowed(s))
    by_name = {s.name: s for s in scopes}
    granted: dict[str, Scope] = {}
    for name in names:
        if not SCOPE_TOKEN.fullmatch(name):
            raise ScopeError("malformed scope")
        scope = by_name.get(name)
        # One answer for unknown, disabled and not allowed: which scopes exist is not the
        # client's business.
        if scope is None or not allowed(scope):
            raise ScopeError(f"scope {name[:64]!r} is unknown or not allowed for this client")
        granted.setdefault(name, scope)
    return tuple(granted.values())


def included_claims(
    claims: Iterable[Claim], granted: Iterable[Scope], *, in_token: bool
) -> list[Claim]:
    """The claims that apply to a token with these scopes (`in_token=False`: for /userinfo)."""
    granted_ids = {s.id for s in granted}
    return [
        c
        for c in claims
        if c.enabled
        and (c.include_in_token or not in_token)
        and (c.include_in_all_scopes or not granted_ids.isdisjoint(c.include_in_scopes))
        and c.name not in RESERVED_CLAIMS
    ]


def render_claims(
    claims: Iterable[Claim], server: AuthServer, client: Client, *, now: float
) -> dict[str, Any]:
    """Each claim's value for this client, templates rendered at `now` (the token's iat)."""
    context: dict[str, Any] | None = None  # built only when a value is a template

    def clock() -> float:
        return now

    out: dict[str, Any] = {}
    for claim in claims:
        if claim.name in out or claim.name in RESERVED_CLAIMS:
            continue  # claim names are not unique in Kong's API: the first one wins
        if context is None and "${" in claim.value:
            context = template_context(server, client)
        try:
            out[claim.name] = render_claim(claim.value, context or {}, clock=clock)
        except TemplateError as exc:
            raise ClaimError(f"claim {claim.name!r} ({claim.id}): {exc}") from exc
        except Exception as exc:  # a function's failure no rule foresaw: still this claim's
            log.exception("claim %r (%s) failed to render", claim.name, claim.id)
            reason = f"{type(exc).__name__}: {exc}"
            raise ClaimError(f"claim {claim.name!r} ({claim.id}): {reason}") from exc
    return out


@dataclass(frozen=True, slots=True)
class MintedToken:
    access_token: str
    expires_in: int
    scope: str | None  # space-separated granted names; None when none was granted
    record: IssuedToken  # for store.record_token: listing, revocation, introspection

    def response(self) -> dict[str, Any]:
        """The RFC 6749 §5.1 body; `scope` only when some were granted (as in the token)."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }
        if self.scope is not None:
            body["scope"] = self.scope
        return body


def mint_access_token(
    *,
    issuer: str,
    server: AuthServer,
    client: Client,
    granted: Sequence[Scope],
    claims: Iterable[Claim],
    signer: Signer,
    now: float,
) -> MintedToken:
    """A signed access token with Kong Identity's header and claims (not yet recorded)."""
    iat = int(now)
    exp = iat + client.access_token_duration
    jti = str(uuid.uuid4())
    names = tuple(s.name for s in granted)
    scope = " ".join(names) if names else None
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": client.id,
        "aud": [server.audience],
        "exp": exp,
        "iat": iat,
        "nbf": iat,
        "jti": jti,
        "client_id": client.id,
    }
    if scope is not None:
        payload["scope"] = scope
    custom = render_claims(included_claims(claims, granted, in_token=True), server, client, now=now)
    payload.update(custom)  # render_claims never returns a RESERVED_CLAIMS name
    record = IssuedToken(
        id=jti,
        auth_server_id=server.id,
        client_id=client.id,
        granted_scope_names=names,
        created_at=datetime.fromtimestamp(iat, UTC),
        expires_at=datetime.fromtimestamp(exp, UTC),
    )
    return MintedToken(encode_jwt(signer, payload), client.access_token_duration, scope, record)


def encode_jwt(signer: Signer, payload: Mapping[str, Any]) -> str:
    """A compact JWS (RFC 7515 §7.1) of `payload`, signed with the signer's key and algorithm."""
    body = _b64url(_JSON.encode(payload).encode())
    signing_input = _header_segment(signer.algorithm, signer.kid) + b"." + body
    return (signing_input + b"." + _b64url(signer.sign(signing_input))).decode("ascii")


def userinfo(
    server: AuthServer,
    client: Client,
    granted: Sequence[Scope],
    claims: Iterable[Claim],
    *,
    now: float,
) -> dict[str, Any]:
    """The /userinfo answer for a token of `client` with these scopes: `sub`, then every claim
    its scopes include, `include_in_token` or not."""
    body: dict[str, Any] = {"sub": client.id}
    body.update(
        render_claims(included_claims(claims, granted, in_token=False), server, client, now=now)
    )
    return body


@functools.lru_cache(maxsize=256)
def _header_segment(algorithm: str, kid: str) -> bytes:
    # Kong Identity's header, in its order: {"typ":"JWT","alg":"RS256","kid":"<uuid>"}
    header = {"typ": "JWT", "alg": algorithm, "kid": kid}
    return _b64url(json.dumps(header, separators=(",", ":")).encode())


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")
