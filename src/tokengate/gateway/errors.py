"""Why a request was refused: one exception tree, mapped to HTTP in one place (`auth.refuse`).

    try:
        claims = verifier.verify(token, keys)
    except AuthError as exc:
        log.info("token refused: %s (%s)", exc.reason, exc.detail)
        return answer(exc, route_config)           # 401 / 403 / 400 / 503

The tree. "The token is bad" (4xx, the client's problem) and "we could not check it" (503, ours)
are different branches, so an IdP outage is never reported as a bad token and never passes:

    AuthError                      status  RFC 6750 error      reason (bounded metric label)
    ├── MissingToken               401     (none, §3.1)        missing_token
    ├── MultipleTokens             400     invalid_request     multiple_tokens
    ├── UnreadableBody             400     invalid_request     unreadable_body
    ├── InvalidToken               401     invalid_token
    │   ├── MalformedToken                                     malformed
    │   ├── UnsupportedAlgorithm                               bad_algorithm
    │   ├── UnknownKey                                         unknown_key
    │   ├── BadSignature                                       bad_signature
    │   ├── BadIssuer                                          bad_issuer
    │   ├── Expired                                            expired
    │   ├── NotYetValid                                        not_yet_valid
    │   ├── BadClaims                                          bad_claims
    │   └── NotActive                                          not_active
    ├── Forbidden                  403
    │   ├── ForbiddenClaim                 insufficient_scope  forbidden_claim
    │   ├── AudienceNotAllowed             invalid_token       audience
    │   ├── InsufficientScope              insufficient_scope  scope
    │   ├── MissingRole                    insufficient_scope  roles
    │   ├── MissingGroup                   insufficient_scope  groups
    │   └── ConsumerNotFound               insufficient_scope  consumer_not_found
    ├── KeysUnavailable            503     (none)              keys_unavailable
    └── IntrospectionFailed        503     (none)              introspection_failed

`detail` is for logs and, with `display_errors`, the `error_description`; it never holds the
token or a claim value a client could use to probe (only names and reasons). `reason` is a class
attribute, never built from input: with the pass outcomes of `auth.check` (ok, cached,
anonymous, preflight) it is the bounded `outcome` label of tokengate_auth_outcomes_total and the
access log's `auth` field.
"""

from __future__ import annotations

from typing import ClassVar


class AuthError(Exception):
    status: ClassVar[int] = 401
    error: ClassVar[str | None] = None  # RFC 6750 §3.1 error code, None for none
    reason: ClassVar[str] = "auth_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason.replace("_", " ")


class MissingToken(AuthError):
    status = 401
    error = None
    reason = "missing_token"


class MultipleTokens(AuthError):
    status = 400
    error = "invalid_request"
    reason = "multiple_tokens"


class UnreadableBody(AuthError):
    """A JSON body the gateway cannot read, where a token may hide from it: one lenient parser
    upstream or another (trailing data, NaN, UTF-16, ...) could still read an access_token."""

    status = 400
    error = "invalid_request"
    reason = "unreadable_body"


class InvalidToken(AuthError):
    status = 401
    error = "invalid_token"
    reason = "invalid_token"


class MalformedToken(InvalidToken):
    reason = "malformed"


class UnsupportedAlgorithm(InvalidToken):
    reason = "bad_algorithm"


class UnknownKey(InvalidToken):
    reason = "unknown_key"


class BadSignature(InvalidToken):
    reason = "bad_signature"


class BadIssuer(InvalidToken):
    reason = "bad_issuer"


class Expired(InvalidToken):
    reason = "expired"


class NotYetValid(InvalidToken):
    reason = "not_yet_valid"


class BadClaims(InvalidToken):
    reason = "bad_claims"


class NotActive(InvalidToken):
    """introspect_jwt_tokens: the issuer says the token is not active (revoked, expired)."""

    reason = "not_active"


class Forbidden(AuthError):
    status = 403
    error = "insufficient_scope"
    reason = "forbidden"


class ForbiddenClaim(Forbidden):
    """The token holds a claim claims_forbidden names."""

    reason = "forbidden_claim"


class AudienceNotAllowed(Forbidden):
    error = "invalid_token"  # RFC 6750: the token is not meant for this resource
    reason = "audience"


class InsufficientScope(Forbidden):
    reason = "scope"


class MissingRole(Forbidden):
    reason = "roles"


class MissingGroup(Forbidden):
    reason = "groups"


class ConsumerNotFound(Forbidden):
    """consumer_claims maps no consumer of the file (Kong's "kong consumer was not found")."""

    reason = "consumer_not_found"


class KeysUnavailable(AuthError):
    """No usable keys for the issuer: never loaded (IdP down at start) or stale beyond the
    max-stale bound. Our infrastructure's failure, not the client's: 503 with Retry-After."""

    status = 503
    error = None
    reason = "keys_unavailable"


class IntrospectionFailed(AuthError):
    """introspect_jwt_tokens: the issuer's introspection endpoint gave no usable answer (down,
    slow, an error status, not a JSON object, or none known). Like KeysUnavailable, ours to
    fix, not the client's: 503 with Retry-After, never a pass."""

    status = 503
    error = None
    reason = "introspection_failed"
