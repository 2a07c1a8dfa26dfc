"""The openid-connect plugin's `config` → a frozen, typed `OidcConfig`, validated once at load.

    report = Report("kong.yaml")
    oidc = parse_oidc_config({"issuer": "https://idp.example/auth"}, "plugins[0].config", report)
    oidc.discovery_url     # "https://idp.example/auth/.well-known/openid-configuration"
    oidc.accepted_issuers  # frozenset({"https://idp.example/auth"})

Names, types and defaults are Kong 3.14's: `KONG_FIELDS` and `KONG_DEFAULTS` at the end of this
module were taken from the plugin's published schema. Kong's `timeout` is in milliseconds; here it
is in seconds. tokengate implements the `bearer` auth method only. Every Kong field is type-checked;
the ones tokengate does not implement are named in one warning per plugin, except those whose
absence would let through a token Kong refuses, and those that skip verification: those are
errors, because tokengate fails closed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from tokengate.gateway.claim_values import words
from tokengate.gateway.config_checks import (
    Fields,
    Report,
    at,
    describe,
    item,
    service_host,
)

DISCOVERY_SUFFIX: Final = "/.well-known/openid-configuration"
METADATA_SUFFIX: Final = "/.well-known/oauth-authorization-server"  # RFC 8414 §3
PARAM_TYPES: Final = ("body", "cookie", "header", "query")
CONSUMER_FIELDS: Final = ("custom_id", "id", "username")  # what consumer_by may name
AUTH_METHODS: Final = (
    "authorization_code", "bearer", "client_credentials", "introspection", "kong_oauth2",
    "password", "refresh_token", "session", "userinfo",
)  # fmt: skip
_SIGNATURE_GRANTS = (
    "authorization_code", "client_credentials", "introspection", "password", "refresh_token",
    "session", "userinfo",
)  # fmt: skip
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: a cookie or header name
# Headers a claim or the token must never set upstream: they frame or route the request.
_FRAMING_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
     "upgrade", "expect", "proxy-authorization", "proxy-connection"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Consumer:
    """A consumer declared in kong.yaml, as Kong names one to the upstream (X-Consumer-ID,
    X-Consumer-Custom-ID, X-Consumer-Username): the anonymous consumer is the one tokengate
    uses. Values are printable ASCII (the loader checks)."""

    id: str | None = None
    custom_id: str | None = None
    username: str | None = None

    def header_lines(self) -> bytes:
        lines = [
            b"%b: %b\r\n" % (name, value.encode("ascii"))
            for name, value in (
                (b"X-Consumer-ID", self.id),
                (b"X-Consumer-Custom-ID", self.custom_id),
                (b"X-Consumer-Username", self.username),
            )
            if value is not None
        ]
        return b"".join(lines)


@dataclass(frozen=True, slots=True)
class ClaimHeader:
    """A header set from a claim: an entry of Kong's `upstream_headers` / `downstream_headers`
    (`{header, path}`), or one pair of the older `*_headers_claims` / `*_headers_names` lists,
    whose claims are top-level (a path of one)."""

    header: str
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Introspection:
    """introspect_jwt_tokens: how a verified JWT is also asked of the issuer (RFC 7662)."""

    endpoint: str | None  # None: discovery's introspection_endpoint
    auth_method: str  # client_secret_basic, client_secret_post or none
    client_id: str | None
    client_secret: str | None
    hint: str = "access_token"  # token_type_hint
    token_param_name: str = "token"  # noqa: S105 (a form parameter's name)
    check_active: bool = True
    accept: str = "application/json"
    cache: bool = True
    cache_ttl: float = 3600.0  # when the answer says neither expires_in nor exp
    cache_ttl_min: float | None = None
    cache_ttl_max: float | None = None


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """One openid-connect plugin instance, as it applies to a route. Times are in seconds."""

    issuer: str  # as configured
    discovery_url: str  # `issuer` + DISCOVERY_SUFFIX unless it ends with it (or METADATA_SUFFIX)
    expected_issuer: str  # the issuer identifier: `issuer` without either suffix
    issuers_allowed: tuple[str, ...] = ()
    extra_jwks_uris: tuple[str, ...] = ()
    jwks_endpoint: str | None = None
    bearer_token_param_type: tuple[str, ...] = ("body", "header", "query")
    bearer_token_cookie_name: str | None = None
    audience_required: tuple[str, ...] = ()
    audience_claim: tuple[str, ...] = ("aud",)
    scopes_required: tuple[str, ...] = ()
    scopes_claim: tuple[str, ...] = ("scope",)
    roles_required: tuple[str, ...] = ()
    roles_claim: tuple[str, ...] = ("roles",)
    groups_required: tuple[str, ...] = ()
    groups_claim: tuple[str, ...] = ("groups",)
    leeway: float = 0.0
    max_age: float | None = None  # seconds since `auth_time`; None: auth_time is not read
    rediscovery_lifetime: float = 30.0
    cache_tokens: bool = True
    cache_ttl: float = 3600.0
    cache_ttl_max: float | None = None
    upstream_headers_claims: tuple[str, ...] = ()
    upstream_headers_names: tuple[str, ...] = ()
    upstream_headers: tuple[ClaimHeader, ...] = ()  # Kong 3.14's form, nested paths
    downstream_headers_claims: tuple[str, ...] = ()
    downstream_headers_names: tuple[str, ...] = ()
    downstream_headers: tuple[ClaimHeader, ...] = ()
    authenticated_groups_claim: tuple[str, ...] = ()  # a path; () sends no X-Authenticated-Groups
    # Kong names the request's credential after this claim for its other plugins (rate
    # limiting); it sets no header, so there is nothing for tokengate to do with it.
    credential_claim: tuple[str, ...] = ("sub",)
    claims_forbidden: tuple[str, ...] = ()  # top-level claims a token must not hold
    introspect_jwt_tokens: Introspection | None = None  # Kong's field: a boolean, read as this
    consumer_claims: tuple[tuple[str, ...], ...] = ()  # claim paths; the first found is used
    consumer_by: tuple[str, ...] = ("username", "custom_id")  # Kong's schema.lua order
    consumer_optional: bool = False
    by_username_ignore_case: bool = False
    # Every consumer the file declares, when consumer_claims maps to them (the kong.yaml
    # loader fills it in; not a Kong field).
    consumers: tuple[Consumer, ...] = ()
    # where the verified token is re-sent upstream ("header:prefix"); None: it is not
    upstream_access_token_header: str | None = "authorization:bearer"  # noqa: S105
    upstream_access_token_jwk_header: str | None = None  # the verifying key's JWK, upstream
    downstream_access_token_header: str | None = None  # the token again, on the answer
    downstream_access_token_jwk_header: str | None = None
    upstream_introspection_header: str | None = None  # the issuer's introspection answer
    downstream_introspection_header: str | None = None
    hide_credentials: bool = True
    anonymous: str | None = None
    # The consumer `anonymous` names, found by the kong.yaml loader (not a Kong field).
    anonymous_consumer: Consumer | None = None
    run_on_preflight: bool = True
    unauthorized_error_message: str = "Unauthorized"
    forbidden_error_message: str = "Forbidden"
    display_errors: bool = False
    expose_error_code: bool = True
    timeout: float = 10.0  # seconds; Kong's `timeout` is milliseconds
    ssl_verify: bool = True
    _accepted_issuers: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        accepted = frozenset(self.issuers_allowed or (self.expected_issuer,))
        object.__setattr__(self, "_accepted_issuers", accepted)

    @property
    def upstream_claim_headers(self) -> tuple[ClaimHeader, ...]:
        """Every header set upstream from a claim, in either of Kong's forms (a name without a
        claim is not among them: see upstream_header_names)."""
        pairs = zip(self.upstream_headers_claims, self.upstream_headers_names, strict=False)
        return tuple(ClaimHeader(name, (claim,)) for claim, name in pairs) + self.upstream_headers

    @property
    def upstream_header_names(self) -> tuple[str, ...]:
        """The names of every header the gateway sets from a claim, never taken from a client."""
        return self.upstream_headers_names + tuple(h.header for h in self.upstream_headers)

    @property
    def downstream_claim_headers(self) -> tuple[ClaimHeader, ...]:
        """Every header added to the answer from a claim, in either of Kong's forms."""
        pairs = zip(self.downstream_headers_claims, self.downstream_headers_names, strict=False)
        return tuple(ClaimHeader(name, (claim,)) for claim, name in pairs) + self.downstream_headers

    @property
    def accepted_issuers(self) -> frozenset[str]:
        """The `iss` values a token may carry: `issuers_allowed`, else the configured issuer."""
        return self._accepted_issuers

    @classmethod
    def for_issuer(cls, issuer: str, **fields: Any) -> OidcConfig:
        """An OidcConfig built in code (tests, tools), issuer URLs derived as the loader does."""
        discovery_url, expected = issuer_urls(issuer)
        return cls(issuer, discovery_url, expected, **fields)


def issuer_urls(issuer: str) -> tuple[str, str]:
    """`issuer` as configured → (discovery URL, issuer identifier). Kong takes either form, and
    an RFC 8414 metadata URL as the discovery URL too."""
    for suffix in (DISCOVERY_SUFFIX, METADATA_SUFFIX):
        if issuer.endswith(suffix):
            return issuer, issuer.removesuffix(suffix)
    # "https://tenant.example/" is an identifier too (Auth0 writes it so): keep its slash.
    return issuer.rstrip("/") + DISCOVERY_SUFFIX, issuer


def parse_oidc_config(raw: Mapping[Any, Any], path: str, report: Report) -> OidcConfig | None:
    """Validate the plugin's `config` found at `path`; None when anything there is an error
    (each one already reported as `FILE: path.field: message`)."""
    before = len(report.errors)
    # A field holding a vault reference is reported as such, then read as if absent: what it
    # would hold is unknown, and the rest of the config is still checked.
    vaulted = {k for k, v in raw.items() if _vault_references(v, at(path, str(k)), report)}
    data = {k: v for k, v in raw.items() if k not in vaulted}
    f = Fields(report, path, data, KONG_FIELDS.keys() | DEPRECATED_FIELDS.keys() | _OLDER_NAMES)
    issuer = f.checked("issuer", _issuer_url, required="issuer" not in vaulted)
    _refuse_unverified(f)
    _refuse_unenforceable(f)
    _auth_methods(f)
    param_types = _param_types(f)
    cookie = f.checked("bearer_token_cookie_name", _cookie_name)
    if "cookie" in param_types and cookie is None and not f.given("bearer_token_cookie_name"):
        f.error("bearer_token_cookie_name", "required when bearer_token_param_type has 'cookie'")
    elif cookie is not None and "cookie" not in param_types:
        f.warn("bearer_token_cookie_name", "ignored: bearer_token_param_type has no 'cookie'")
    claims, names, objects = _claim_headers(f, "upstream")
    down_claims, down_names, down_objects = _claim_headers(f, "downstream")
    token_header = _upstream_token_header(f)
    token_header_name = (token_header or "").partition(":")[0].strip().lower()
    jwk_header = f.checked("upstream_access_token_jwk_header", _header)
    answer_token_header = f.checked("downstream_access_token_header", _token_header)
    answer_jwk_header = f.checked("downstream_access_token_jwk_header", _header)
    introspection_header = f.checked("upstream_introspection_header", _header)
    answer_introspection_header = f.checked("downstream_introspection_header", _header)
    upstream_key = "upstream_headers" if objects else "upstream_headers_names"
    _one_header_each(
        f,
        "upstream",
        [
            ("upstream_access_token_header", token_header_name),
            ("upstream_access_token_jwk_header", jwk_header),
            ("upstream_introspection_header", introspection_header),
            *((upstream_key, name) for name in [*names, *(entry.header for entry in objects)]),
        ],
        _GATEWAY_REQUEST_HEADERS | _identity_headers(f),
    )
    downstream_key = "downstream_headers" if down_objects else "downstream_headers_names"
    _one_header_each(
        f,
        "answer",
        [
            ("downstream_access_token_header", (answer_token_header or "").partition(":")[0]),
            ("downstream_access_token_jwk_header", answer_jwk_header),
            ("downstream_introspection_header", answer_introspection_header),
            *(
                (downstream_key, name)
                for name in [*down_names, *(entry.header for entry in down_objects)]
            ),
        ],
        _GATEWAY_ANSWER_HEADERS,
    )
    values: dict[str, Any] = {
        "issuers_allowed": f.each("issuers_allowed", _non_empty),
        "extra_jwks_uris": f.each("extra_jwks_uris", _http_url),
        "jwks_endpoint": f.checked("jwks_endpoint", _http_url),
        "bearer_token_param_type": param_types,
        "bearer_token_cookie_name": cookie,
        **{f"{kind}_required": _required(f, f"{kind}_required") for kind in _CLAIM_KINDS},
        **{f"{kind}_claim": _claim_path(f, f"{kind}_claim") for kind in _CLAIM_KINDS},
        "leeway": f.number("leeway", 0.0),
        "max_age": f.number("max_age", None),
        "rediscovery_lifetime": f.number("rediscovery_lifetime", 30.0),
        "cache_tokens": f.boolean("cache_tokens", True),
        "cache_ttl": (cache_ttl := f.number("cache_ttl", 3600.0)),
        "cache_ttl_max": (cache_ttl_max := f.number("cache_ttl_max", None)),
        "upstream_headers_claims": claims,
        "upstream_headers_names": names,
        "upstream_headers": objects,
        "downstream_headers_claims": down_claims,
        "downstream_headers_names": down_names,
        "downstream_headers": down_objects,
        "authenticated_groups_claim": f.each(
            "authenticated_groups_claim", _non_empty, unique=False
        ),
        "credential_claim": f.each("credential_claim", _non_empty, unique=False) or ("sub",),
        **_consumer_mapping(f),
        "claims_forbidden": f.each("claims_forbidden", _non_empty),
        "introspect_jwt_tokens": (introspection := _introspection(f, cache_ttl, cache_ttl_max)),
        "upstream_access_token_header": token_header,
        "upstream_access_token_jwk_header": jwk_header,
        "downstream_access_token_header": answer_token_header,
        "downstream_access_token_jwk_header": answer_jwk_header,
        "upstream_introspection_header": introspection_header,
        "downstream_introspection_header": answer_introspection_header,
        "hide_credentials": f.boolean("hide_credentials", True),
        "anonymous": f.string("anonymous"),
        "run_on_preflight": f.boolean("run_on_preflight", True),
        "unauthorized_error_message": f.string("unauthorized_error_message") or "Unauthorized",
        "forbidden_error_message": f.string("forbidden_error_message") or "Forbidden",
        "display_errors": f.boolean("display_errors", False),
        "expose_error_code": f.boolean("expose_error_code", True),
        "timeout": f.number("timeout", 10_000.0, above=True) / 1000,
        "ssl_verify": f.boolean("ssl_verify", True),
    }
    _unimplemented(f, _INTROSPECTION_FIELDS if introspection is not None else frozenset())
    if issuer is None or len(report.errors) > before:
        return None
    return OidcConfig.for_issuer(issuer, **values)


_CLAIM_KINDS = ("audience", "scopes", "roles", "groups")
_CLAIM_DEFAULTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "audience_claim": ("aud",), "scopes_claim": ("scope",), "roles_claim": ("roles",),
    "groups_claim": ("groups",),
})  # fmt: skip


def _refuse_unverified(f: Fields) -> None:
    """Settings that would let an unsigned, forged or unchecked token through: never honoured."""
    if not f.boolean("verify_signature", True):
        f.error(
            "verify_signature",
            "tokengate never accepts unsigned or unverified tokens: remove verify_signature: false",
        )
    if not f.boolean("verify_claims", True):
        f.error(
            "verify_claims",
            "tokengate always checks a token's claims (iss, exp, nbf, audience, scopes): "
            "remove verify_claims: false",
        )
    if f.boolean("enable_hs_signatures", False):
        f.error(
            "enable_hs_signatures",
            "tokengate never accepts HS256/HS384/HS512 tokens (a shared secret is not a key "
            "the issuer publishes): remove enable_hs_signatures: true",
        )
    grants = f.each("ignore_signature", _one_of((*_SIGNATURE_GRANTS, "bearer")))
    if "bearer" in grants:
        f.error(
            "ignore_signature",
            "tokengate never accepts unsigned or unverified tokens: "
            "remove 'bearer' from ignore_signature",
        )


# Kong settings under which Kong refuses some tokens. tokengate does not implement them, and
# ignoring one would let through a token Kong refuses: fail closed, each is an error when on.
_UNENFORCEABLE: Final[Mapping[str, str]] = MappingProxyType({
    "jwt_session_cookie": "remove jwt_session_cookie",
    "proof_of_possession_mtls": "set proof_of_possession_mtls: 'off'",
    "proof_of_possession_dpop": "set proof_of_possession_dpop: 'off'",
    "consumer_groups_claim": (
        "tokengate maps no token to consumer groups: set consumer_groups_optional: true or "
        "remove it"
    ),
})  # fmt: skip


# Mappings Kong lets fail when these are true (then nothing is refused for them).
_MADE_OPTIONAL_BY: Final = {"consumer_groups_claim": "consumer_groups_optional"}


def _refuse_unenforceable(f: Fields) -> None:
    """Type errors are reported by `_unimplemented`; here only well-typed values that are on."""
    for key, fix in _UNENFORCEABLE.items():
        value = f.raw(key)
        if value is None or not _is(KONG_FIELDS[key], value):
            continue
        if key.startswith("proof_of_possession_"):
            on = value != "off"
        elif key in _MADE_OPTIONAL_BY:
            on = bool(value) and f.raw(_MADE_OPTIONAL_BY[key]) is not True
        else:  # a list, a name, or introspect_jwt_tokens
            on = bool(value)
        if on:
            message = "not implemented by tokengate; ignoring it would let through tokens Kong"
            f.error(key, f"{message} refuses: {fix}")


def _auth_methods(f: Fields) -> None:
    value = f.raw("auth_methods")
    methods = f.each("auth_methods", _one_of(AUTH_METHODS))
    if not isinstance(value, list):
        return  # absent (Kong's default includes bearer), or already reported
    if "bearer" not in methods:
        f.error("auth_methods", "must include 'bearer', the one method tokengate implements")
    elif set(methods) != set(AUTH_METHODS) and (others := [m for m in methods if m != "bearer"]):
        f.warn("auth_methods", f"not implemented by tokengate, ignored: {', '.join(others)}")


def _param_types(f: Fields) -> tuple[str, ...]:
    default = ("body", "header", "query")
    if f.raw("bearer_token_param_type") == []:
        f.error("bearer_token_param_type", f"must list at least one of {', '.join(PARAM_TYPES)}")
        return default
    return f.each("bearer_token_param_type", _one_of(PARAM_TYPES)) or default


def _required(f: Fields, key: str) -> tuple[str, ...]:
    """`["read write", "admin"]`: each entry space-separated values that must all be present."""
    return f.each(key, _requirement)


def _claim_path(f: Fields, key: str) -> tuple[str, ...]:
    """`["realm_access", "roles"]` walks nested objects; a key may repeat, so no de-duplication."""
    if f.raw(key) == []:
        f.error(key, "must not be empty: it is the path to a claim")
    return f.each(key, _non_empty, unique=False) or _CLAIM_DEFAULTS[key]


def _claim_headers(
    f: Fields, side: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[ClaimHeader, ...]]:
    """`side` ("upstream" or "downstream"): the older pair of lists, `*_headers_claims` and
    `*_headers_names`, and Kong 3.14's `*_headers` (`{header, path}` entries); Kong takes one
    form or the other."""
    claims_key, names_key, key = (
        f"{side}_headers_claims",
        f"{side}_headers_names",
        f"{side}_headers",
    )
    claims = f.each(claims_key, _non_empty, unique=False)
    names = f.each(names_key, _header, unique=False)
    claims_count, names_count = (
        len(value) if isinstance(value := f.raw(name), list) else 0
        for name in (claims_key, names_key)
    )
    if claims_count > names_count:
        # Kong's handler pairs them by position and skips a claim without a name.
        f.warn(
            names_key,
            f"{names_count} names for {claims_count} {claims_key}: the claims without a name "
            "are ignored, as Kong ignores them",
        )
        claims = claims[: len(names)]
    elif names_count > claims_count:
        what = (  # upstream: kept, the gateway still never takes them from the client
            "set from nothing, but still dropped from client requests"
            if side == "upstream"
            else "ignored, as Kong ignores them"
        )
        f.warn(
            names_key,
            f"{names_count} names for {claims_count} {claims_key}: the names without "
            f"a claim are {what}",
        )
    objects = []
    for path, entry in f.entities(key):
        g = Fields(f.report, path, entry, ("header", "path"))
        header = g.checked("header", _header, required=True)
        claim_path = g.each("path", _non_empty, unique=False)
        if g.raw("path") is None:
            g.missing("path")
        elif g.raw("path") == []:
            g.error("path", "must not be empty: it is the path to a claim")
        if header is not None and claim_path:
            objects.append(ClaimHeader(header, claim_path))
    if f.raw(key) and (f.raw(claims_key) or f.raw(names_key)):
        # Kong's schema: mutually exclusive (the lists are the form it deprecates).
        f.error(
            key, f"set together with {claims_key} / {names_key}: Kong takes one form or the other"
        )
    return claims, names, tuple(objects)


# List defaults whose order matters, as Kong's schema.lua writes them: its published schema
# (KONG_DEFAULTS below) lists every default list sorted.
ORDERED_DEFAULTS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"consumer_by": ("username", "custom_id")}
)

# Read only with introspect_jwt_tokens: true (client_id and client_secret are other flows' too).
_INTROSPECTION_FIELDS: Final = frozenset(
    {"introspection_endpoint", "introspection_endpoint_auth_method", "client_id",
     "client_secret", "client_auth", "introspection_hint", "introspection_token_param_name",
     "introspection_check_active", "introspection_accept", "cache_introspection",
     "cache_ttl_min", "introspection_headers_client", "introspection_headers_names",
     "introspection_headers_values", "introspection_post_args_client",
     "introspection_post_args_client_headers", "introspection_post_args_names",
     "introspection_post_args_values"}
)  # fmt: skip
_INTROSPECTION_AUTH: Final = ("client_secret_basic", "client_secret_post", "none")


def _introspection(
    f: Fields, cache_ttl: float, cache_ttl_max: float | None
) -> Introspection | None:
    """introspect_jwt_tokens: true, and the fields that say how (Kong's names and defaults);
    None when off. Client authentication by secret (basic or post) or none: another method,
    like the extra headers and arguments tokengate does not send, is an error, since the
    issuer would refuse every introspection (and so every token)."""
    if not f.boolean("introspect_jwt_tokens", False):
        return None
    before = len(f.report.errors)
    clients = f.each("client_id", _non_empty, unique=False)
    secrets = f.each("client_secret", _non_empty, unique=False)
    methods = f.each("client_auth", _one_of(_CLIENT_AUTH_METHODS), unique=False)
    method = f.checked("introspection_endpoint_auth_method", _one_of(_CLIENT_AUTH_METHODS))
    if method is None:  # Kong: the first client's client_auth, else basic with a secret
        method = (
            methods[0] if methods else ("client_secret_basic" if secrets else "private_key_jwt")
        )
    key = "client_auth"
    if f.given("introspection_endpoint_auth_method"):
        key = "introspection_endpoint_auth_method"
    if len(f.report.errors) > before:
        pass  # a field above is wrong already: no guess at what it meant
    elif method not in _INTROSPECTION_AUTH:
        f.error(
            key,
            f"{method} is not implemented by tokengate for introspect_jwt_tokens: use "
            "client_secret_basic, client_secret_post or none",
        )
    elif method != "none" and not (clients and secrets):
        f.error("client_secret", f"{method} needs client_id and client_secret")
    if len(clients) > 1:
        f.warn("client_id", "introspect_jwt_tokens uses the first client (client_arg is not read)")
    accept = f.choice("introspection_accept", "application/json", _INTROSPECTION_ACCEPT)
    if accept != "application/json":
        f.error(
            "introspection_accept",
            "only application/json introspection answers are implemented by tokengate",
        )
    for extra in _INTROSPECTION_EXTRAS:
        if f.raw(extra):
            f.error(extra, "not implemented by tokengate for introspect_jwt_tokens: remove it")
    token_param_name = f.checked("introspection_token_param_name", _non_empty) or "token"
    # One form: a parameter of the same name would overwrite the token, never sent then.
    taken = {"token_type_hint"}
    if method == "client_secret_post":
        taken |= {"client_id", "client_secret"}
    if token_param_name in taken:
        f.error(
            "introspection_token_param_name",
            f"'{token_param_name}' is another parameter of the introspection request: "
            "the token would not be sent",
        )
    cache_ttl_min = f.number("cache_ttl_min", None)
    # Kong's cache.lua: a bound of 0 is no bound
    if cache_ttl_min and cache_ttl_max and cache_ttl_min > cache_ttl_max:
        f.error("cache_ttl_min", f"greater than cache_ttl_max ({cache_ttl_max:g})")
    return Introspection(
        endpoint=f.checked("introspection_endpoint", _http_url),
        auth_method=method,
        client_id=clients[0] if clients else None,
        client_secret=secrets[0] if secrets else None,
        hint=f.string("introspection_hint") or "access_token",
        token_param_name=token_param_name,
        check_active=f.boolean("introspection_check_active", True),
        accept=accept,
        cache=f.boolean("cache_introspection", True),
        cache_ttl=cache_ttl,
        cache_ttl_min=cache_ttl_min,
        cache_ttl_max=cache_ttl_max,
    )


# Kong sends these with each introspection; tokengate does not.
_INTROSPECTION_EXTRAS: Final = (
    "introspection_headers_client", "introspection_headers_names",
    "introspection_headers_values", "introspection_post_args_client",
    "introspection_post_args_client_headers", "introspection_post_args_names",
    "introspection_post_args_values",
)  # fmt: skip
_CLIENT_AUTH_METHODS: Final = (
    "client_secret_basic", "client_secret_jwt", "client_secret_post", "none", "private_key_jwt",
    "self_signed_tls_client_auth", "tls_client_auth",
)  # fmt: skip
_INTROSPECTION_ACCEPT: Final = (
    "application/json",
    "application/jwt",
    "application/token-introspection+jwt",
)


# Names Kong still takes for a newer field, read as that field: consumer_claim (one claim path)
# is a consumer_claims of one path.
_OLDER_NAMES: Final = frozenset({"consumer_claim"})


def _consumer_mapping(f: Fields) -> dict[str, Any]:
    """consumer_claims (or the older consumer_claim), consumer_by, consumer_optional and
    by_username_ignore_case."""
    if f.given("consumer_claim"):
        path = f.each("consumer_claim", _non_empty, unique=False)
        if f.raw("consumer_claim") == []:
            f.error("consumer_claim", "must not be empty: it is the path to a claim")
        if f.given("consumer_claims"):
            f.error("consumer_claim", "set together with consumer_claims, its newer form: keep one")
        paths: tuple[tuple[str, ...], ...] = (path,) if path else ()
    else:
        paths = _claim_paths(f, "consumer_claims")
    by = f.each("consumer_by", _one_of(CONSUMER_FIELDS)) or ORDERED_DEFAULTS["consumer_by"]
    if paths and f.raw("consumer_by") == []:
        f.error("consumer_by", f"must name at least one of {', '.join(CONSUMER_FIELDS)}")
    return {
        "consumer_claims": paths,
        "consumer_by": by,
        "consumer_optional": f.boolean("consumer_optional", False),
        "by_username_ignore_case": f.boolean("by_username_ignore_case", False),
    }


def _vault_references(value: object, path: str, report: Report) -> bool:
    """Report each Kong vault reference (`{vault://env/...}`) in the config; whether any.
    Kong resolves them from its vaults when it loads the plugin; tokengate reads kong.yaml only,
    and would otherwise take the reference's text for the secret itself."""
    if isinstance(value, str):
        if value.startswith("{vault://") and value.endswith("}"):
            report.error(
                path,
                "a Kong vault reference, which tokengate does not resolve: write the value "
                "itself (or generate the file with it, e.g. from an environment variable)",
            )
            return True
        return False
    if isinstance(value, Mapping):
        found = [_vault_references(v, at(path, str(k)), report) for k, v in value.items()]
        return any(found)
    if isinstance(value, list):
        return any([_vault_references(v, item(path, i), report) for i, v in enumerate(value)])
    return False


def _claim_paths(f: Fields, key: str) -> tuple[tuple[str, ...], ...]:
    """A list of claim paths, each a list of strings."""
    value = f.raw(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        f.error(key, f"expected {_EXPECTED['array[]']}, got {describe(value)}")
        return ()
    paths = []
    for index, entry in enumerate(value):
        where = item(at(f.path, key), index)
        if not isinstance(entry, list):
            # A claim path is itself a list: `[sub]` for the whole field is the usual slip.
            hint = ": each entry is a claim path, as in [[sub], [org, id]]"
            f.report.error(where, f"expected a list of strings, got {describe(entry)}{hint}")
            continue
        if not entry:
            f.report.error(where, "must not be empty: it is the path to a claim")
            continue
        wrong = False
        for position, name in enumerate(entry):
            if not isinstance(name, str) or not name.strip():
                what = (
                    "must not be empty"
                    if isinstance(name, str)
                    else (f"expected a string, got {describe(name)}")
                )
                f.report.error(item(where, position), what)
                wrong = True
        if not wrong:
            paths.append(tuple(entry))
    return tuple(paths)


def _upstream_token_header(f: Fields) -> str | None:
    key = "upstream_access_token_header"
    if key in f.data and f.data[key] is None:
        return None  # an explicit null: Kong then sends the token upstream in no header
    return f.checked(key, _token_header) or "authorization:bearer"


# Implemented, or read by the functions above: not part of the "not implemented" warning.
_IMPLEMENTED = frozenset(
    {*OidcConfig.__dataclass_fields__, "verify_signature", "verify_claims",
     "enable_hs_signatures", "auth_methods"}
)  # fmt: skip
# Settings used only when another setting (itself warned about) selects them.
_INERT = frozenset({"redis", "cluster_cache_redis"})  # session_storage / cluster_cache_strategy
_EXPECTED = {
    "string": "a string", "boolean": "a boolean", "number": "a number", "integer": "an integer",
    "object": "a mapping", "string[]": "a list of strings", "object[]": "a list of mappings",
    "array[]": "a list of lists of strings",
}  # fmt: skip
_MISSING = object()


def _unimplemented(f: Fields, used: frozenset[str] = frozenset()) -> None:
    """Type-check every other Kong field; name the ones set to a non-default value in one
    warning. Comparing with Kong's defaults keeps a `deck gateway dump` (which writes every
    field) from warning about all of them."""
    ignored, deprecated = [], []
    for key, value in f.data.items():
        if value is not None and key in DEPRECATED_FIELDS:
            if _well_typed(f, key, value, DEPRECATED_FIELDS[key]):
                deprecated.append(key)
            continue
        if value is None or key not in KONG_FIELDS or key in _IMPLEMENTED or key in used:
            continue
        if key == "ignore_signature":  # type-checked where it is read: no second error
            if not _is(KONG_FIELDS[key], value):
                continue
        elif not _well_typed(f, key, value, KONG_FIELDS[key]):
            continue
        default = KONG_DEFAULTS.get(key, _MISSING)
        given = tuple(value) if isinstance(value, list) else value
        if key in _INERT or given == (() if default is _MISSING else default):
            continue
        ignored.append(key)
    if ignored:
        f.report.warn(f.path, f"not implemented by tokengate, ignored: {', '.join(ignored)}")
    if deprecated:
        names = ", ".join(deprecated)
        f.report.warn(f.path, f"Kong's deprecated names (gone in Kong 4.0), ignored: {names}")


def _well_typed(f: Fields, key: str, value: Any, kind: str) -> bool:
    element = kind.removesuffix("[]")
    if kind != element:
        if not isinstance(value, list):
            f.error(key, f"expected {_EXPECTED[kind]}, got {describe(value)}")
            return False
        wrong = [i for i, entry in enumerate(value) if not _is_one(element, entry)]
        for index in wrong:
            expected = _EXPECTED["string[]" if element == "array" else element]
            f.report.error(
                item(at(f.path, key), index), f"expected {expected}, got {describe(value[index])}"
            )
        return not wrong
    if not _is_one(kind, value):
        f.error(key, f"expected {_EXPECTED[kind]}, got {describe(value)}")
        return False
    return True


def _is(kind: str, value: Any) -> bool:
    """`value` has the schema type `kind` ("string", "string[]", ...)."""
    element = kind.removesuffix("[]")
    if kind == element:
        return _is_one(kind, value)
    return isinstance(value, list) and all(_is_one(element, entry) for entry in value)


def _is_one(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    # "array": Kong's only list of lists is consumer_claims, a list of claim paths
    return isinstance(value, list) and all(isinstance(entry, str) for entry in value)


# --- value checks: raise ValueError(message), which Fields reports at the field -------------


def _http_url(text: str) -> str:
    if any(char <= " " or char == "\x7f" for char in text):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(text)  # raises on an unclosed "[" ("Invalid IPv6 URL")
    except ValueError:
        raise ValueError(f"expected an http or https URL, got '{text}'") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http or https URL, got '{text}'")
    if parts.username is not None or parts.fragment:
        raise ValueError("must not contain credentials or a fragment")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("invalid port")
    service_host(parts.hostname)
    return text


def _issuer_url(text: str) -> str:
    # OpenID Connect Discovery §2: an issuer identifier has no query or fragment.
    if urlsplit(_http_url(text)).query:
        raise ValueError("must not contain a query string")
    return text


def _one_of(choices: Collection[str]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise ValueError(f"unknown value '{text}' (expected one of {', '.join(choices)})")
        return text

    return check


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _requirement(text: str) -> str:
    # An empty entry would be an empty AND-group, which every token satisfies.
    if not words(text):
        raise ValueError("must name at least one value")
    return text


def _cookie_name(text: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise ValueError(f"invalid cookie name '{text}'")
    return text


# Headers the gateway writes itself on every request it forwards, and on every answer it
# relays: one set from a claim too would arrive twice.
_GATEWAY_REQUEST_HEADERS: Final = frozenset(
    {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
     "x-forwarded-path", "x-forwarded-prefix", "x-real-ip", "x-request-id", "via"}
)  # fmt: skip
_GATEWAY_ANSWER_HEADERS: Final = frozenset({"x-request-id", "via"})
# Where a client's token comes (Kong's header places): the client's own passes beside an
# anonymous pass, so no claim or key may be sent under one of these names.
_TOKEN_PLACES: Final = frozenset({"authorization", "access-token", "x-access-token"})
_CONSUMER_HEADERS: Final = frozenset(
    {"x-consumer-id", "x-consumer-custom-id", "x-consumer-username", "x-anonymous-consumer"}
)


def _identity_headers(f: Fields) -> frozenset[str]:
    """The identity headers this plugin sets itself: the consumer's, when it maps one (or lets
    `anonymous` through as one), and X-Authenticated-Groups with authenticated_groups_claim."""
    names: set[str] = set()
    if f.given("anonymous") or f.given("consumer_claims") or f.given("consumer_claim"):
        names |= _CONSUMER_HEADERS
    if f.raw("authenticated_groups_claim"):
        names.add("x-authenticated-groups")
    return frozenset(names)


def _one_header_each(
    f: Fields, side: str, named: list[tuple[str, str | None]], reserved: frozenset[str]
) -> None:
    """Each header the gateway sets on one side (the upstream request, the answer) from one
    field only, and none it sets itself or a client's token comes in (names read in any case,
    "_" for "-", as CGI-style upstreams read them): any of those would arrive twice, or beside
    a client's own. `named`: (field, header name) in the fields' order."""
    seen: dict[str, str] = {}
    for key, name in named:
        if not name or not name.strip():
            continue
        spelled = name.strip().lower().replace("_", "-")
        if spelled in seen:
            f.error(
                key, f"{spelled!r} is {seen[spelled]}'s header too: the {side} would get it twice"
            )
        elif spelled in reserved:
            f.error(key, f"'{name}' is a header the gateway sets itself: it would arrive twice")
        elif (
            side == "upstream"
            and key != "upstream_access_token_header"
            and (spelled in _TOKEN_PLACES)
        ):
            f.error(key, f"'{name}' is where a client's token comes: a claim or key cannot set it")
        seen.setdefault(spelled, key)


def _header(text: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise ValueError(f"invalid header name '{text}'")
    if text.lower().replace("_", "-") in _FRAMING_HEADERS:
        raise ValueError(f"'{text}' cannot be set from a token: it frames or routes the request")
    return text


def _token_header(text: str) -> str:
    """Kong's `header:prefix` ("authorization:bearer" sends `Authorization: Bearer <token>`)."""
    name, _, scheme = text.partition(":")
    _header(name)
    # The scheme is written into the upstream header line: a token (RFC 9110 §11.1), so that
    # no CR, LF or other byte can start a header of its own.
    if scheme.strip() and not _TOKEN.fullmatch(scheme.strip()):
        raise ValueError(f"invalid scheme {scheme!r}: a token such as 'bearer'")
    return text


# --- the README's field table ---------------------------------------------------------------

_NOTES: Final[Mapping[str, str]] = MappingProxyType({
    "auth_methods": (
        "bearer only (others listed are warned about, but not Kong's default list, left out or "
        "written out: tokengate then starts no session after a bearer login, where Kong sets a "
        "session cookie; a list without bearer is an error)"
    ),
    "verify_signature": "always true: false is an error",
    "verify_claims": "always true: false is an error",
    "enable_hs_signatures": "always false: true is an error",
    "ignore_signature": "bearer in it is an error; other grants do not apply",
    "timeout": "yes (milliseconds, as Kong)",
    "max_age": "yes: auth_time is then required and at most max_age seconds old (leeway aside)",
    "bearer_token_param_type": (
        "yes: header (Authorization, access-token, x-access-token), query, "
        "body (form or JSON), cookie"
    ),
    "cache_ttl": (
        "accepted, no effect: every accepted token has an exp, and a cache entry lives until it "
        "(or cache_ttl_max)"
    ),
    "cache_ttl_max": "yes: the most seconds a verified token stays cached; 0 is no bound, as Kong",
    "run_on_preflight": (
        "yes: false lets every OPTIONS request through without a token, as Kong does (a CORS "
        "preflight or not)"
    ),
    "issuer": "yes: discovery URL, RFC 8414 metadata URL or issuer identifier",
    "extra_jwks_uris": (
        "yes: their keys join the issuer's; one that fails keeps its last keys for 25 hours "
        "after it last answered (the longest refresh interval plus a day), never longer"
    ),
    "upstream_headers": (
        "yes: a claim path each (nested objects; a number picks a list's entry, counted from 1); "
        "not together with upstream_headers_claims / upstream_headers_names, as in Kong"
    ),
    "downstream_headers": (
        "yes: headers on the answer relayed from the upstream (after any of the same name it "
        "sent), rendered as upstream_headers renders them; only when a token was accepted"
    ),
    "downstream_headers_claims": "yes: top-level claims, as Kong reads them",
    "downstream_headers_names": (
        "yes: paired with downstream_headers_claims by position (with a warning when the counts "
        "differ: either one without the other is ignored, as Kong ignores it)"
    ),
    "authenticated_groups_claim": (
        "yes: X-Authenticated-Groups, the claim's words (a string) or entries (a list), each "
        "once, joined by ', ', as Kong writes it"
    ),
    "credential_claim": (
        "accepted, no effect: Kong names the request's credential after it for its other "
        "plugins (rate limiting); it sets no header"
    ),
    "upstream_headers_claims": "yes: top-level claims, as Kong reads them",
    "upstream_access_token_jwk_header": (
        "yes: base64 of the verifying key's JWK (compact JSON), as published; never the client's"
    ),
    "downstream_access_token_header": "yes: the token again, on the answer (header:prefix)",
    "downstream_access_token_jwk_header": "yes: as upstream_access_token_jwk_header, on the answer",
    "upstream_introspection_header": (
        "yes: base64 of the introspection answer's compact JSON (with introspect_jwt_tokens); "
        "never the client's"
    ),
    "downstream_introspection_header": "yes: as upstream_introspection_header, on the answer",
    "introspect_jwt_tokens": (
        "yes: a verified token is also posted to the issuer's introspection endpoint "
        "(introspection_endpoint, else discovery's) and must be active; read with it, as Kong "
        "reads them: client_id / client_secret (the first), client_auth or "
        "introspection_endpoint_auth_method (client_secret_basic, client_secret_post or none), "
        "introspection_hint, introspection_token_param_name (not the name of another of the "
        "form's parameters), introspection_check_active, "
        "cache_introspection, cache_ttl, cache_ttl_min, cache_ttl_max; an endpoint without a "
        "usable answer is a 503 (Kong: 401)"
    ),
    "claims_forbidden": (
        "yes: a token holding any of these top-level claims (not false) is refused 403, before "
        "the other requirements, as Kong does"
    ),
    "consumer_claims": (
        "yes: the first of these claim paths the token has names a consumer of the file (also "
        "read from Kong's older consumer_claim, one path)"
    ),
    "consumer_by": (
        "yes: username (and, with by_username_ignore_case, in any ASCII case), custom_id, id (a "
        "UUID), tried in this list's order"
    ),
    "consumer_optional": "yes: a token that maps to no consumer passes, without X-Consumer-*",
    "upstream_headers_names": (
        "yes: paired with upstream_headers_claims by position (with a warning when the counts "
        "differ: a claim without a name is ignored, as Kong ignores it; a name without a claim "
        "is set from nothing and still dropped from client requests)"
    ),
})  # fmt: skip


def field_support() -> list[tuple[str, str, str]]:
    """(Kong field, Kong's default, what tokengate does with it) for every field tokengate reads
    or refuses; every other Kong field is type-checked and named in a warning when set."""
    refused = {key: f"error when on: {fix}" for key, fix in _UNENFORCEABLE.items()}
    handled = (_IMPLEMENTED & KONG_FIELDS.keys()) | refused.keys() | {"ignore_signature"}
    rows = []
    for key in sorted(handled):
        default = ORDERED_DEFAULTS.get(key, KONG_DEFAULTS.get(key))
        shown = "" if default is None else _yaml_value(default)
        rows.append((key, shown, _NOTES.get(key) or refused.get(key) or "yes"))
    return rows


def _yaml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_yaml_value, value)) + "]"
    return str(value)


# --- Kong 3.14's openid-connect schema -------------------------------------------------------
# Every `config` field with its JSON schema type, and every default, taken from Kong 3.14's
# published schema of the plugin (kong-openid-connect-plugin-schema.json). Generated, not edited
# by hand: regenerate when following a newer Kong.

# Kong's shorthand_fields: older names Kong still takes (its schema says "to be removed in Kong
# 4.0") and maps onto the fields above; dumps of older Kong versions still hold them.
DEPRECATED_FIELDS: Final[Mapping[str, str]] = MappingProxyType({
    **dict.fromkeys((
        "authorization_cookie_samesite", "session_compressor", "session_cookie_samesite",
        "session_memcache_host", "session_memcache_prefix", "session_memcache_socket",
        "session_redis_host", "session_redis_password", "session_redis_prefix",
        "session_redis_server_name", "session_redis_socket", "session_redis_username",
        "session_strategy",
    ), "string"),
    **dict.fromkeys((
        "authorization_cookie_httponly", "session_cookie_httponly", "session_redis_ssl",
        "session_redis_ssl_verify",
    ), "boolean"),
    **dict.fromkeys((
        "authorization_cookie_lifetime", "session_auth_ttl", "session_cookie_idletime",
        "session_cookie_lifetime", "session_cookie_renew",
    ), "number"),
    **dict.fromkeys((
        "session_cookie_maxsize", "session_memcache_port", "session_redis_cluster_max_redirections",
        "session_redis_cluster_maxredirections", "session_redis_connect_timeout",
        "session_redis_port", "session_redis_read_timeout", "session_redis_send_timeout",
    ), "integer"),
    **dict.fromkeys((
        "session_redis_cluster_nodes",
    ), "object[]"),
})  # fmt: skip
KONG_FIELDS: Final[Mapping[str, str]] = MappingProxyType({
    **dict.fromkeys((
        "anonymous", "authorization_cookie_domain", "authorization_cookie_name",
        "authorization_cookie_path", "authorization_cookie_same_site", "authorization_endpoint",
        "bearer_token_cookie_name", "cache_tokens_salt", "client_arg", "cluster_cache_strategy",
        "downstream_access_token_header", "downstream_access_token_jwk_header",
        "downstream_id_token_header", "downstream_id_token_jwk_header",
        "downstream_introspection_header", "downstream_introspection_jwt_header",
        "downstream_refresh_token_header", "downstream_session_id_header",
        "downstream_user_info_header", "downstream_user_info_jwt_header", "end_session_endpoint",
        "forbidden_error_message", "http_proxy", "http_proxy_authorization", "https_proxy",
        "https_proxy_authorization", "id_token_param_name", "introspection_accept",
        "introspection_endpoint", "introspection_endpoint_auth_method", "introspection_hint",
        "introspection_token_param_name", "issuer", "jwks_endpoint", "jwt_session_claim",
        "jwt_session_cookie", "login_action", "login_redirect_mode", "logout_post_arg",
        "logout_query_arg", "logout_uri_suffix", "mtls_introspection_endpoint",
        "mtls_revocation_endpoint", "mtls_token_endpoint", "no_proxy", "proof_of_possession_dpop",
        "proof_of_possession_mtls", "pushed_authorization_request_endpoint",
        "pushed_authorization_request_endpoint_auth_method", "refresh_token_param_name",
        "response_mode", "revocation_endpoint", "revocation_endpoint_auth_method",
        "revocation_token_param_name", "session_audience", "session_cookie_domain",
        "session_cookie_name", "session_cookie_path", "session_cookie_same_site",
        "session_memcached_host", "session_memcached_prefix", "session_memcached_socket",
        "session_remember_cookie_name", "session_secret", "session_storage",
        "tls_client_auth_cert_id", "token_endpoint", "token_endpoint_auth_method",
        "token_exchange_endpoint", "token_headers_prefix", "unauthorized_error_message",
        "upstream_access_token_header", "upstream_access_token_jwk_header",
        "upstream_id_token_header", "upstream_id_token_jwk_header",
        "upstream_introspection_header", "upstream_introspection_jwt_header",
        "upstream_refresh_token_header", "upstream_session_id_header", "upstream_user_info_header",
        "upstream_user_info_jwt_header", "userinfo_accept", "userinfo_endpoint",
    ), "string"),
    **dict.fromkeys((
        "authorization_cookie_http_only", "authorization_cookie_secure", "by_username_ignore_case",
        "cache_introspection", "cache_token_exchange", "cache_tokens", "cache_user_info",
        "consumer_groups_optional", "consumer_optional", "display_errors", "dpop_use_nonce",
        "enable_hs_signatures", "expose_error_code", "forbidden_destroy_session",
        "hide_credentials", "introspect_jwt_tokens", "introspection_check_active", "keepalive",
        "logout_revoke", "logout_revoke_access_token", "logout_revoke_refresh_token",
        "preserve_query_args", "proof_of_possession_auth_methods_validation", "refresh_tokens",
        "require_proof_key_for_code_exchange", "require_pushed_authorization_requests",
        "require_signed_request_object", "resolve_distributed_claims", "reverify",
        "run_on_preflight", "search_user_info", "session_cookie_http_only",
        "session_cookie_secure", "session_enforce_same_subject", "session_hash_storage_key",
        "session_hash_subject", "session_memcached_ssl", "session_memcached_ssl_verify",
        "session_remember", "session_store_metadata", "ssl_verify", "tls_client_auth_ssl_verify",
        "token_cache_key_include_scope", "unauthorized_destroy_session", "using_pseudo_issuer",
        "verify_claims", "verify_nonce", "verify_parameters", "verify_signature",
    ), "boolean"),
    **dict.fromkeys((
        "authorization_rolling_timeout", "cache_ttl", "cache_ttl_max", "cache_ttl_min",
        "cache_ttl_neg", "cache_ttl_resurrect", "dpop_proof_lifetime", "http_version", "leeway",
        "max_age", "rediscovery_lifetime", "session_absolute_timeout", "session_idling_timeout",
        "session_remember_absolute_timeout", "session_remember_rolling_timeout",
        "session_rolling_timeout", "timeout",
    ), "number"),
    **dict.fromkeys((
        "session_memcached_port",
    ), "integer"),
    **dict.fromkeys((
        "audience", "audience_claim", "audience_required", "auth_methods",
        "authenticated_groups_claim", "authorization_query_args_client",
        "authorization_query_args_names", "authorization_query_args_values",
        "bearer_token_param_type", "claims_forbidden", "client_alg", "client_auth",
        "client_credentials_param_type", "client_id", "client_secret", "consumer_by",
        "consumer_groups_claim", "credential_claim", "disable_session", "discovery_headers_names",
        "discovery_headers_values", "domains", "downstream_headers_claims",
        "downstream_headers_names", "extra_jwks_uris", "forbidden_redirect_uri", "groups_claim",
        "groups_required", "id_token_param_type", "ignore_signature",
        "introspection_headers_client", "introspection_headers_names",
        "introspection_headers_values", "introspection_post_args_client",
        "introspection_post_args_client_headers", "introspection_post_args_names",
        "introspection_post_args_values", "issuers_allowed", "login_methods", "login_redirect_uri",
        "login_tokens", "logout_methods", "logout_redirect_uri", "password_param_type",
        "redirect_uri", "refresh_token_param_type", "response_type", "roles_claim",
        "roles_required", "scopes", "scopes_claim", "scopes_required", "session_bind",
        "session_request_headers", "session_response_headers", "token_headers_client",
        "token_headers_grants", "token_headers_names", "token_headers_replay",
        "token_headers_values", "token_post_args_client", "token_post_args_names",
        "token_post_args_values", "unauthorized_redirect_uri", "unexpected_redirect_uri",
        "upstream_headers_claims", "upstream_headers_names", "userinfo_headers_client",
        "userinfo_headers_names", "userinfo_headers_values", "userinfo_query_args_client",
        "userinfo_query_args_names", "userinfo_query_args_values",
    ), "string[]"),
    **dict.fromkeys((
        "cluster_cache_redis", "redis", "token_exchange",
    ), "object"),
    **dict.fromkeys((
        "client_jwk", "downstream_headers", "upstream_headers",
    ), "object[]"),
    **dict.fromkeys((
        "consumer_claims",
    ), "array[]"),
})  # fmt: skip
KONG_DEFAULTS: Final[Mapping[str, object]] = MappingProxyType({
    "audience_claim": ("aud",),
    "auth_methods": (
        "authorization_code", "bearer", "client_credentials", "introspection", "kong_oauth2",
        "password", "refresh_token", "session", "userinfo",
    ),
    "authorization_cookie_http_only": True, "authorization_cookie_name": "authorization",
    "authorization_cookie_path": "/", "authorization_cookie_same_site": "Default",
    "authorization_rolling_timeout": 600, "bearer_token_param_type": ("body", "header", "query"),
    "by_username_ignore_case": False, "cache_introspection": True, "cache_token_exchange": True,
    "cache_tokens": True, "cache_ttl": 3600, "cache_user_info": True, "client_arg": "client_id",
    "client_credentials_param_type": ("body", "header", "query"), "cluster_cache_strategy": "off",
    "consumer_by": ("custom_id", "username"), "consumer_groups_optional": False,
    "consumer_optional": False, "credential_claim": ("sub",), "display_errors": False,
    "dpop_proof_lifetime": 300, "dpop_use_nonce": False, "enable_hs_signatures": False,
    "expose_error_code": True, "forbidden_destroy_session": True,
    "forbidden_error_message": "Forbidden", "groups_claim": ("groups",), "hide_credentials": True,
    "http_version": 1.1, "id_token_param_type": ("body", "header", "query"),
    "ignore_signature": (), "introspect_jwt_tokens": False,
    "introspection_accept": "application/json", "introspection_check_active": True,
    "introspection_hint": "access_token", "introspection_token_param_name": "token",
    "jwt_session_claim": "sid", "keepalive": True, "leeway": 0, "login_action": "upstream",
    "login_methods": ("authorization_code",), "login_redirect_mode": "fragment",
    "login_tokens": ("id_token",), "logout_methods": ("DELETE", "POST"), "logout_revoke": False,
    "logout_revoke_access_token": True, "logout_revoke_refresh_token": True,
    "password_param_type": ("body", "header", "query"), "preserve_query_args": False,
    "proof_of_possession_auth_methods_validation": True, "proof_of_possession_dpop": "off",
    "proof_of_possession_mtls": "off", "rediscovery_lifetime": 30,
    "refresh_token_param_type": ("body", "header", "query"), "refresh_tokens": True,
    "resolve_distributed_claims": False, "response_mode": "query", "response_type": ("code",),
    "reverify": False, "revocation_token_param_name": "token", "roles_claim": ("roles",),
    "run_on_preflight": True, "scopes": ("openid",), "scopes_claim": ("scope",),
    "search_user_info": False, "session_absolute_timeout": 86400, "session_audience": "default",
    "session_cookie_http_only": True, "session_cookie_name": "session", "session_cookie_path": "/",
    "session_cookie_same_site": "Lax", "session_enforce_same_subject": False,
    "session_hash_storage_key": False, "session_hash_subject": False,
    "session_idling_timeout": 900, "session_memcached_host": "127.0.0.1",
    "session_memcached_port": 11211, "session_memcached_ssl_verify": True,
    "session_remember": False, "session_remember_absolute_timeout": 2592000,
    "session_remember_cookie_name": "remember", "session_remember_rolling_timeout": 604800,
    "session_rolling_timeout": 3600, "session_storage": "cookie", "session_store_metadata": False,
    "ssl_verify": True, "timeout": 10000, "tls_client_auth_ssl_verify": True,
    "token_cache_key_include_scope": False, "unauthorized_destroy_session": True,
    "unauthorized_error_message": "Unauthorized",
    "upstream_access_token_header": "authorization:bearer", "userinfo_accept": "application/json",
    "using_pseudo_issuer": False, "verify_claims": True, "verify_nonce": True,
    "verify_parameters": False, "verify_signature": True,
})  # fmt: skip
