"""openid-connect `config` → OidcConfig: every rule has a failing example with its exact line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tokengate.gateway.config_checks import Report
from tokengate.gateway.oidc_config import (
    KONG_DEFAULTS,
    KONG_FIELDS,
    ORDERED_DEFAULTS,
    ClaimHeader,
    Introspection,
    OidcConfig,
    field_support,
    parse_oidc_config,
)

ISSUER = "https://idp.example/auth"
PATH = "plugins[0].config"
REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "reference" / "kong-openid-connect-plugin-schema.json"


def parse(text: str) -> tuple[OidcConfig | None, Report]:
    """`text` is the YAML of the plugin's config mapping; `issuer` is added unless given."""
    raw: dict[str, Any] = yaml.safe_load(text) or {}
    raw.setdefault("issuer", ISSUER)
    report = Report("kong.yaml")
    return parse_oidc_config(raw, PATH, report), report


def ok(text: str = "") -> OidcConfig:
    config, report = parse(text)
    assert report.errors == []
    assert config is not None
    return config


def error(text: str) -> str:
    config, report = parse(text)
    assert config is None
    assert len(report.errors) == 1, report.errors
    return report.errors[0].removeprefix(f"kong.yaml: {PATH}.")


def warnings(text: str) -> list[str]:
    config, report = parse(text)
    assert config is not None, report.errors
    return [line.removeprefix(f"kong.yaml: {PATH}") for line in report.warnings]


# --- defaults and values ------------------------------------------------------------------------


def test_defaults_are_kongs() -> None:
    config = ok()
    assert config == OidcConfig(
        issuer=ISSUER,
        discovery_url=ISSUER + "/.well-known/openid-configuration",
        expected_issuer=ISSUER,
    )
    assert config.bearer_token_param_type == ("body", "header", "query")
    assert config.upstream_access_token_header == "authorization:bearer"
    assert (config.leeway, config.timeout, config.cache_ttl) == (0.0, 10.0, 3600.0)
    assert config.accepted_issuers == frozenset({ISSUER})


def test_every_kong_default_we_implement_matches_the_schema() -> None:
    config = ok()
    for field in dataclasses.fields(OidcConfig):
        if field.name not in KONG_DEFAULTS or field.name == "timeout":
            continue
        expected = ORDERED_DEFAULTS.get(field.name, KONG_DEFAULTS[field.name])
        if field.name == "introspect_jwt_tokens":  # a boolean in Kong, read as its settings
            expected = None if expected is False else expected
        assert getattr(config, field.name) == expected, field.name
    assert config.timeout * 1000 == KONG_DEFAULTS["timeout"]


@pytest.mark.skipif(not SCHEMA.exists(), reason="Kong's schema is not on this machine")
def test_ordered_defaults_are_kongs_defaults_in_kongs_order() -> None:
    """Kong's published schema lists a default list sorted; where the order matters, it is
    Kong's schema.lua order (consumer_by: username first), the same values all the same."""
    for name, ordered in ORDERED_DEFAULTS.items():
        assert sorted(ordered) == sorted(KONG_DEFAULTS[name])  # type: ignore[call-overload]
    assert ok().consumer_by == ("username", "custom_id")


def test_generated_schema_constants_match_kongs_schema() -> None:
    properties = json.loads(SCHEMA.read_text())["properties"]["config"]["properties"]
    assert set(KONG_FIELDS) == set(properties)
    for name, spec in properties.items():
        kind = spec["type"] if spec["type"] != "array" else spec["items"]["type"] + "[]"
        assert KONG_FIELDS[name] == kind, name
        if "default" in spec:
            default = spec["default"]
            assert KONG_DEFAULTS[name] == (tuple(default) if isinstance(default, list) else default)
        else:
            assert name not in KONG_DEFAULTS


def test_readme_field_table_is_the_codes() -> None:
    """The README's table of supported fields is rendered from `field_support()`."""
    rows = [
        f"| `{name}` | {f'`{default}`' if default else ''} | {support} |"
        for name, default, support in field_support()
    ]
    expected = ["| Kong field | Kong default | tokengate |", "|---|---|---|", *rows]
    text = (REPO / "README.md").read_text()
    start = text.index("<!-- oidc-fields:start")
    table = text[text.index("\n", start) + 1 : text.index("<!-- oidc-fields:end -->")]
    assert table.splitlines() == expected, "\n" + "\n".join(expected)
    supported = {name for name, _, support in field_support() if support.startswith("yes")}
    assert supported <= set(OidcConfig.__dataclass_fields__)  # "yes" means a parsed field
    assert {"issuer", "scopes_required", "audience_required", "hide_credentials"} <= supported


def test_every_field_is_read() -> None:
    config = ok("""
        issuers_allowed: [https://a.example, https://b.example]
        extra_jwks_uris: [https://idp.example/keys]
        jwks_endpoint: https://idp.example/jwks
        bearer_token_param_type: [header, cookie]
        bearer_token_cookie_name: at
        audience_required: [api]
        audience_claim: [aud]
        scopes_required: ["read write", admin]
        scopes_claim: [scp]
        roles_required: [r]
        roles_claim: [realm_access, roles]
        groups_required: [g]
        groups_claim: [grp]
        leeway: 5
        rediscovery_lifetime: 60
        cache_tokens: false
        cache_ttl: 10.5
        cache_ttl_max: 300
        upstream_headers_claims: [sub, sub]
        upstream_headers_names: [X-Sub, X-Subject]
        downstream_headers:
        - {header: X-Tenant, path: [org, tenant]}
        authenticated_groups_claim: [realm_access, groups]
        credential_claim: [client_id]
        upstream_access_token_jwk_header: X-Token-JWK
        downstream_access_token_header: authorization:bearer
        downstream_access_token_jwk_header: X-JWK
        upstream_access_token_header: x-token
        hide_credentials: false
        anonymous: guest
        run_on_preflight: false
        unauthorized_error_message: Go away
        forbidden_error_message: Not you
        display_errors: true
        expose_error_code: false
        timeout: 2500
        ssl_verify: false
    """)
    assert config == OidcConfig.for_issuer(
        ISSUER,
        issuers_allowed=("https://a.example", "https://b.example"),
        extra_jwks_uris=("https://idp.example/keys",),
        jwks_endpoint="https://idp.example/jwks",
        bearer_token_param_type=("header", "cookie"),
        bearer_token_cookie_name="at",
        audience_required=("api",),
        audience_claim=("aud",),
        scopes_required=("read write", "admin"),
        scopes_claim=("scp",),
        roles_required=("r",),
        roles_claim=("realm_access", "roles"),
        groups_required=("g",),
        groups_claim=("grp",),
        leeway=5.0,
        rediscovery_lifetime=60.0,
        cache_tokens=False,
        cache_ttl=10.5,
        cache_ttl_max=300.0,
        upstream_headers_claims=("sub", "sub"),
        upstream_headers_names=("X-Sub", "X-Subject"),
        downstream_headers=(ClaimHeader("X-Tenant", ("org", "tenant")),),
        authenticated_groups_claim=("realm_access", "groups"),
        credential_claim=("client_id",),
        upstream_access_token_jwk_header="X-Token-JWK",
        downstream_access_token_header="authorization:bearer",
        downstream_access_token_jwk_header="X-JWK",
        upstream_access_token_header="x-token",
        hide_credentials=False,
        anonymous="guest",
        run_on_preflight=False,
        unauthorized_error_message="Go away",
        forbidden_error_message="Not you",
        display_errors=True,
        expose_error_code=False,
        timeout=2.5,
        ssl_verify=False,
    )
    assert config.accepted_issuers == frozenset({"https://a.example", "https://b.example"})


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok().leeway = 10  # type: ignore[misc]


WELL_KNOWN = "/.well-known/openid-configuration"


@pytest.mark.parametrize(
    ("issuer", "discovery", "expected"),
    [
        (ISSUER, ISSUER + WELL_KNOWN, ISSUER),
        (ISSUER + WELL_KNOWN, ISSUER + WELL_KNOWN, ISSUER),
        # an RFC 8414 metadata URL is a discovery URL as well (Kong takes it)
        (
            ISSUER + "/.well-known/oauth-authorization-server",
            ISSUER + "/.well-known/oauth-authorization-server",
            ISSUER,
        ),
        # Auth0 style: the identifier ends with "/"; it stays as written, no "//" in discovery
        ("https://t.example/", "https://t.example" + WELL_KNOWN, "https://t.example/"),
        (
            "http://127.0.0.1:9/a/auth",
            "http://127.0.0.1:9/a/auth" + WELL_KNOWN,
            "http://127.0.0.1:9/a/auth",
        ),
        # only slashes go: a path ending in another character keeps it
        ("https://t.example/X/", "https://t.example/X" + WELL_KNOWN, "https://t.example/X/"),
    ],
)
def test_issuer_discovery_url_and_identifier(issuer: str, discovery: str, expected: str) -> None:
    config = ok(f"issuer: {issuer}")
    assert (config.issuer, config.discovery_url, config.expected_issuer) == (
        issuer,
        discovery,
        expected,
    )


@pytest.mark.parametrize(
    ("lists", "claims", "names", "warning"),
    [
        (
            "[sub, email]\nupstream_headers_names: [x-sub]",
            ("sub",),
            ("x-sub",),
            "the claims without a name are ignored, as Kong ignores them",
        ),
        (
            "[sub]\nupstream_headers_names: [x-sub, x-email]",
            ("sub",),
            ("x-sub", "x-email"),
            "the names without a claim are set from nothing, but still dropped from client",
        ),
        (
            "null\nupstream_headers_names: [x-sub]",
            (),
            ("x-sub",),
            "1 names for 0 upstream_headers_claims: the names without a claim are set from",
        ),
    ],
)
def test_upstream_header_lists_of_different_lengths_pair_as_kong_pairs_them(
    lists: str, claims: tuple[str, ...], names: tuple[str, ...], warning: str
) -> None:
    text = f"upstream_headers_claims: {lists}"
    config = ok(text)
    assert (config.upstream_headers_claims, config.upstream_headers_names) == (claims, names)
    [said] = warnings(text)
    assert said.startswith(".upstream_headers_names: ")
    assert warning in said


def test_introspection_settings_are_read_only_when_introspection_is_on() -> None:
    config = ok("""
        introspect_jwt_tokens: true
        client_id: [gateway, other]
        client_secret: [s3cr3t]
        client_auth: [client_secret_post]
        introspection_endpoint: https://idp.example/introspect
        introspection_hint: token
        cache_ttl_min: 5
        cache_ttl_max: 60
    """)
    assert config.introspect_jwt_tokens == Introspection(
        endpoint="https://idp.example/introspect",
        auth_method="client_secret_post",
        client_id="gateway",
        client_secret="s3cr3t",
        hint="token",
        cache_ttl_min=5.0,
        cache_ttl_max=60.0,
    )
    # Kong's cache.lua: a bound of 0 is no bound, so it is never below cache_ttl_min
    ok("introspect_jwt_tokens: true\nclient_auth: [none]\ncache_ttl_min: 60\ncache_ttl_max: 0")
    ok("introspect_jwt_tokens: true\nclient_auth: [none]\ncache_ttl_min: 60\ncache_ttl_max: 60")
    basic = ok("introspect_jwt_tokens: true\nclient_id: [c]\nclient_secret: [s]")
    assert basic.introspect_jwt_tokens == Introspection(  # Kong's defaults
        endpoint=None, auth_method="client_secret_basic", client_id="c", client_secret="s"
    )
    assert warnings("introspect_jwt_tokens: true\nclient_id: [c]\nclient_secret: [s]") == []
    assert warnings("client_id: [c]\nclient_secret: [s]") == [
        ": not implemented by tokengate, ignored: client_id, client_secret"
    ]
    assert warnings("introspect_jwt_tokens: true\nclient_id: [c, d]\nclient_secret: [s]") == [
        ".client_id: introspect_jwt_tokens uses the first client (client_arg is not read)"
    ]


def test_introspection_request_and_cache_settings_are_read() -> None:
    config = ok("""
        introspect_jwt_tokens: true
        introspection_endpoint_auth_method: none
        introspection_token_param_name: access_token
        introspection_check_active: false
        cache_introspection: false
    """)
    assert config.introspect_jwt_tokens == Introspection(
        endpoint=None,
        auth_method="none",
        client_id=None,
        client_secret=None,
        token_param_name="access_token",
        check_active=False,
        cache=False,
    )
    # cache_ttl is the plugin's one: an answer with neither expires_in nor exp is kept for it
    kept = ok("introspect_jwt_tokens: true\nclient_auth: [none]\ncache_ttl: 60")
    assert kept.introspect_jwt_tokens is not None
    assert kept.introspect_jwt_tokens.cache_ttl == 60.0


def test_client_lists_keep_their_repeats() -> None:
    """Kong pairs client_id, client_secret and client_auth by position: a repeat is no
    duplicate to drop or warn about."""
    text = "introspect_jwt_tokens: true\nclient_id: [c, c]\nclient_secret: [s, s]\n"
    assert warnings(text + "client_auth: [none, none]") == [
        ".client_id: introspect_jwt_tokens uses the first client (client_arg is not read)"
    ]


def test_header_mappings_in_either_form_pair_headers_with_claim_paths() -> None:
    config = ok("""
        upstream_headers:
        - {header: X-Org, path: [org, name]}
        - {header: X-First-Role, path: [roles, "1"]}
        downstream_headers_claims: [sub, email]
        downstream_headers_names: [X-Sub, X-Email]
    """)
    assert config.upstream_claim_headers == (
        ClaimHeader("X-Org", ("org", "name")),
        ClaimHeader("X-First-Role", ("roles", "1")),
    )
    assert config.upstream_header_names == ("X-Org", "X-First-Role")
    assert config.downstream_claim_headers == (
        ClaimHeader("X-Sub", ("sub",)),
        ClaimHeader("X-Email", ("email",)),
    )
    older = ok("upstream_headers_claims: [sub]\nupstream_headers_names: [X-Sub, X-Tenant]")
    assert older.upstream_claim_headers == (ClaimHeader("X-Sub", ("sub",)),)
    assert older.upstream_header_names == ("X-Sub", "X-Tenant")


def test_downstream_header_lists_of_different_lengths_warn() -> None:
    assert warnings("downstream_headers_claims: [sub]\ndownstream_headers_names: [X-A, X-B]") == [
        ".downstream_headers_names: 2 names for 1 downstream_headers_claims: the names without a "
        "claim are ignored, as Kong ignores them"
    ]
    config = ok("downstream_headers_claims: [sub]\ndownstream_headers_names: [X-A, X-B]")
    assert config.downstream_claim_headers == (ClaimHeader("X-A", ("sub",)),)


def test_upstream_access_token_header_null_means_not_resent() -> None:
    assert ok("upstream_access_token_header: null").upstream_access_token_header is None
    assert ok("leeway: null").leeway == 0.0  # elsewhere a null is "unset", as in the loader


def test_integer_and_float_numbers_are_both_numbers() -> None:
    assert ok("leeway: 1").leeway == 1.0
    assert ok("leeway: 1.5").leeway == 1.5


def test_an_integer_of_up_to_1e15_is_a_number_and_one_more_is_refused() -> None:
    assert ok("leeway: 1000000000000000").leeway == 1e15
    assert error("leeway: 1000000000000001") == (
        "leeway: must be at most 1e+15, got a 16-digit number"
    )


def test_claim_path_may_repeat_a_key() -> None:
    assert ok("roles_claim: [a, a]").roles_claim == ("a", "a")
    config = ok("""
        consumer_claim: [a, a]
        credential_claim: [a, a]
        authenticated_groups_claim: [g, g]
        downstream_headers: [{header: X-C, path: [a, a]}]
    """)
    assert config.consumer_claims == (("a", "a"),)
    assert config.credential_claim == ("a", "a")
    assert config.authenticated_groups_claim == ("g", "g")
    assert config.downstream_headers == (ClaimHeader("X-C", ("a", "a")),)


def test_the_answers_introspection_header_is_read() -> None:
    assert ok("downstream_introspection_header: X-I").downstream_introspection_header == "X-I"


def test_a_string_ending_in_a_brace_is_no_vault_reference() -> None:
    assert ok("unauthorized_error_message: 'oops}'").unauthorized_error_message == "oops}"


# --- errors: one per rule, exact text -----------------------------------------------------------

ERRORS = {
    "issuer missing": (
        "issuer: null",  # `issuer: $UNSET_VARIABLE`
        "issuer: required field missing (it is there, with no value)",
    ),
    "issuer not a string": ("issuer: 5", "issuer: expected a string, got an integer"),
    "issuer empty": ("issuer: ''", "issuer: must not be empty"),
    "issuer not http": (
        "issuer: ftp://idp.example",
        "issuer: expected an http or https URL, got 'ftp://idp.example'",
    ),
    "issuer without host": (
        "issuer: 'https://'",
        "issuer: expected an http or https URL, got 'https://'",
    ),
    "issuer relative": ("issuer: /auth", "issuer: expected an http or https URL, got '/auth'"),
    "issuer with query": (
        "issuer: https://idp.example/?realm=a",
        "issuer: must not contain a query string",
    ),
    "issuer with fragment": (
        "issuer: https://idp.example/#a",
        "issuer: must not contain credentials or a fragment",
    ),
    "issuer with credentials": (
        "issuer: https://u:p@idp.example/",
        "issuer: must not contain credentials or a fragment",
    ),
    "issuer with space": (
        "issuer: https://idp.example/a b",
        "issuer: must not contain spaces or control characters",
    ),
    "issuer bad port": ("issuer: https://idp.example:99999/", "issuer: invalid port"),
    "issuer port zero": ("issuer: https://idp.example:0/", "issuer: invalid port"),
    "issuer unclosed bracket": (
        "issuer: 'http://[::1/'",
        "issuer: expected an http or https URL, got 'http://[::1/'",
    ),
    "issuer bad host": ("issuer: https://idp!.example/", "issuer: invalid host 'idp!.example'"),
    "jwks endpoint not a url": (
        "jwks_endpoint: keys.json",
        "jwks_endpoint: expected an http or https URL, got 'keys.json'",
    ),
    "extra jwks uri not a url": (
        "extra_jwks_uris: [file:///etc/keys]",
        "extra_jwks_uris[0]: expected an http or https URL, got 'file:///etc/keys'",
    ),
    "unknown field": ("isuer: x", "isuer: unknown field (did you mean 'issuer'?)"),
    "bool is not a number": ("leeway: true", "leeway: expected a number, got a boolean"),
    "string is not a number": ("cache_ttl: '60'", "cache_ttl: expected a number, got a string"),
    "negative leeway": ("leeway: -1", "leeway: must be at least 0, got -1"),
    "negative cache_ttl_max": ("cache_ttl_max: -5", "cache_ttl_max: must be at least 0, got -5"),
    "negative rediscovery": (
        "rediscovery_lifetime: -0.5",
        "rediscovery_lifetime: must be at least 0, got -0.5",
    ),
    "zero timeout": ("timeout: 0", "timeout: must be greater than 0, got 0"),
    "infinite leeway": ("leeway: .inf", "leeway: must be a finite number, got inf"),
    "huge integer leeway": (
        f"leeway: {'9' * 400}",
        "leeway: must be at most 1e+15, got a 400-digit number",
    ),
    "boolean as string": (
        "hide_credentials: 'yes'",
        "hide_credentials: expected a boolean, got a string",
    ),
    "list not a list": (
        "scopes_required: read",
        "scopes_required: expected a list of strings, got a string",
    ),
    "list of numbers": (
        "roles_required: [1]",
        "roles_required[0]: expected a string, got an integer",
    ),
    "blank requirement": (
        "scopes_required: ['  ']",
        "scopes_required[0]: must name at least one value",
    ),
    "empty claim path": (
        "scopes_claim: []",
        "scopes_claim: must not be empty: it is the path to a claim",
    ),
    "empty claim path element": ("groups_claim: [realm, '']", "groups_claim[1]: must not be empty"),
    "claim path not a list": (
        "audience_claim: aud",
        "audience_claim: expected a list of strings, got a string",
    ),
    "unknown param type": (
        "bearer_token_param_type: [headers]",
        "bearer_token_param_type[0]: unknown value 'headers' (expected one of body, cookie, "
        "header, query)",
    ),
    "no param type": (
        "bearer_token_param_type: []",
        "bearer_token_param_type: must list at least one of body, cookie, header, query",
    ),
    "cookie without a name": (
        "bearer_token_param_type: [cookie]",
        "bearer_token_cookie_name: required when bearer_token_param_type has 'cookie'",
    ),
    "bad cookie name": (
        "bearer_token_param_type: [cookie]\nbearer_token_cookie_name: 'a b'",
        "bearer_token_cookie_name: invalid cookie name 'a b'",
    ),
    "upstream header name invalid": (
        "upstream_headers_claims: [sub]\nupstream_headers_names: ['x sub']",
        "upstream_headers_names[0]: invalid header name 'x sub'",
    ),
    "upstream header is Host": (
        "upstream_headers_claims: [sub]\nupstream_headers_names: [Host]",
        "upstream_headers_names[0]: 'Host' cannot be set from a token: it frames or routes the "
        "request",
    ),
    "upstream header is the token's header": (
        "upstream_headers_claims: [sub]\nupstream_headers_names: [Authorization]",
        "upstream_headers_names: 'authorization' is upstream_access_token_header's header too: "
        "the upstream would get it twice",
    ),
    "upstream header is a custom token header": (
        "upstream_access_token_header: x-token\n"
        "upstream_headers_claims: [sub]\nupstream_headers_names: [X-Token]",
        "upstream_headers_names: 'x-token' is upstream_access_token_header's header too: the "
        "upstream would get it twice",
    ),
    "access token header invalid": (
        "upstream_access_token_header: 'bad header:bearer'",
        "upstream_access_token_header: invalid header name 'bad header'",
    ),
    "access token header scheme injects a header": (
        'upstream_access_token_header: "authorization:bearer\\r\\nTransfer-Encoding: chunked"',
        "upstream_access_token_header: invalid scheme 'bearer\\r\\nTransfer-Encoding: chunked': a "
        "token such as 'bearer'",
    ),
    "access token header scheme not latin-1": (
        "upstream_access_token_header: 'authorization:Bearer€'",
        "upstream_access_token_header: invalid scheme 'Bearer€': a token such as 'bearer'",
    ),
    "access token header framing": (
        "upstream_access_token_header: 'Content-Length'",
        "upstream_access_token_header: 'Content-Length' cannot be set from a token: it frames or "
        "routes the request",
    ),
    "empty error message": (
        "unauthorized_error_message: ''",
        "unauthorized_error_message: must not be empty",
    ),
    # fail closed: never skip verification
    "verify_signature false": (
        "verify_signature: false",
        "verify_signature: tokengate never accepts unsigned or unverified tokens: "
        "remove verify_signature: false",
    ),
    "verify_claims false": (
        "verify_claims: false",
        "verify_claims: tokengate always checks a token's claims (iss, exp, nbf, audience, "
        "scopes): remove verify_claims: false",
    ),
    "hs signatures": (
        "enable_hs_signatures: true",
        "enable_hs_signatures: tokengate never accepts HS256/HS384/HS512 tokens (a shared secret "
        "is not a key the issuer publishes): remove enable_hs_signatures: true",
    ),
    "ignore_signature bearer": (
        "ignore_signature: [bearer]",
        "ignore_signature: tokengate never accepts unsigned or unverified tokens: "
        "remove 'bearer' from ignore_signature",
    ),
    "ignore_signature unknown": (
        "ignore_signature: [magic]",
        "ignore_signature[0]: unknown value 'magic' (expected one of authorization_code, "
        "client_credentials, introspection, password, refresh_token, session, userinfo, bearer)",
    ),
    "auth_methods without bearer": (
        "auth_methods: [session]",
        "auth_methods: must include 'bearer', the one method tokengate implements",
    ),
    "auth_methods empty": (
        "auth_methods: []",
        "auth_methods: must include 'bearer', the one method tokengate implements",
    ),
    # fail closed: Kong settings that refuse tokens, which tokengate cannot enforce
    "claims_forbidden entry empty": (
        "claims_forbidden: [act, '']",
        "claims_forbidden[1]: must not be empty",
    ),
    "jwt session cookie": (
        "jwt_session_cookie: sess",
        "jwt_session_cookie: not implemented by tokengate; ignoring it would let through "
        "tokens Kong refuses: remove jwt_session_cookie",
    ),
    "consumer groups mapping required": (
        "consumer_groups_claim: [tier]",
        "consumer_groups_claim: not implemented by tokengate; ignoring it would let through "
        "tokens Kong refuses: tokengate maps no token to consumer groups: set "
        "consumer_groups_optional: true or remove it",
    ),
    "mtls proof of possession": (
        "proof_of_possession_mtls: strict",
        "proof_of_possession_mtls: not implemented by tokengate; ignoring it would let through "
        "tokens Kong refuses: set proof_of_possession_mtls: 'off'",
    ),
    "dpop optional": (
        "proof_of_possession_dpop: optional",
        "proof_of_possession_dpop: not implemented by tokengate; ignoring it would let through "
        "tokens Kong refuses: set proof_of_possession_dpop: 'off'",
    ),
    "introspection without client credentials": (
        "introspect_jwt_tokens: true",
        "client_auth: private_key_jwt is not implemented by tokengate for introspect_jwt_tokens: "
        "use client_secret_basic, client_secret_post or none",
    ),
    "introspection with a secret but no client": (
        "introspect_jwt_tokens: true\nclient_secret: [s3cr3t]",
        "client_secret: client_secret_basic needs client_id and client_secret",
    ),
    "introspection answers as JWTs": (
        "introspect_jwt_tokens: true\nclient_id: [c]\nclient_secret: [s]\n"
        "introspection_accept: application/jwt",
        "introspection_accept: only application/json introspection answers are implemented by "
        "tokengate",
    ),
    "introspection with an unknown method": (
        "introspect_jwt_tokens: true\nintrospection_endpoint_auth_method: bogus",
        "introspection_endpoint_auth_method: unknown value 'bogus' (expected one of "
        "client_secret_basic, client_secret_jwt, client_secret_post, none, private_key_jwt, "
        "self_signed_tls_client_auth, tls_client_auth)",
    ),
    "introspection headers tokengate does not send": (
        "introspect_jwt_tokens: true\nintrospection_endpoint_auth_method: none\n"
        "introspection_headers_names: [X-Api-Key]",
        "introspection_headers_names: not implemented by tokengate for introspect_jwt_tokens: "
        "remove it",
    ),
    "introspection cache bounds crossed": (
        "introspect_jwt_tokens: true\nintrospection_endpoint_auth_method: none\n"
        "cache_ttl_min: 60\ncache_ttl_max: 30",
        "cache_ttl_min: greater than cache_ttl_max (30)",
    ),
    "cache_ttl reported once": (
        "introspect_jwt_tokens: true\nintrospection_endpoint_auth_method: none\ncache_ttl: -5",
        "cache_ttl: must be at least 0, got -5",
    ),
    "introspection endpoint not a URL": (
        "introspect_jwt_tokens: true\nintrospection_endpoint_auth_method: none\n"
        "introspection_endpoint: /introspect",
        "introspection_endpoint: expected an http or https URL, got '/introspect'",
    ),
    "consumer_claims not a list": (
        "consumer_claims: sub",
        "consumer_claims: expected a list of lists of strings, got a string",
    ),
    "consumer_claims path empty": (
        "consumer_claims: [[sub], []]",
        "consumer_claims[1]: must not be empty: it is the path to a claim",
    ),
    "consumer_claims path not strings": (
        "consumer_claims: [[user, 1]]",
        "consumer_claims[0][1]: expected a string, got an integer",
    ),
    "consumer_claim beside consumer_claims": (
        "consumer_claim: [sub]\nconsumer_claims: [[sub]]",
        "consumer_claim: set together with consumer_claims, its newer form: keep one",
    ),
    "consumer_by unknown": (
        "consumer_claims: [[sub]]\nconsumer_by: [email]",
        "consumer_by[0]: unknown value 'email' (expected one of custom_id, id, username)",
    ),
    "consumer_by empty": (
        "consumer_claims: [[sub]]\nconsumer_by: []",
        "consumer_by: must name at least one of custom_id, id, username",
    ),
    # fields tokengate does not implement are still type-checked against Kong's schema
    "unimplemented string": ("client_arg: 5", "client_arg: expected a string, got an integer"),
    "unimplemented boolean": ("reverify: 'no'", "reverify: expected a boolean, got a string"),
    "max_age not a number": ("max_age: true", "max_age: expected a number, got a boolean"),
    "unimplemented number": (
        "cache_ttl_neg: true",
        "cache_ttl_neg: expected a number, got a boolean",
    ),
    "unimplemented integer": (
        "session_memcached_port: 1.5",
        "session_memcached_port: expected an integer, got a number",
    ),
    "unimplemented list": ("client_id: abc", "client_id: expected a list of strings, got a string"),
    "unimplemented list element": (
        "scopes: [openid, 1]",
        "scopes[1]: expected a string, got an integer",
    ),
    "unimplemented object": (
        "token_exchange: [a]",
        "token_exchange: expected a mapping, got a list",
    ),
    "unimplemented object list": (
        "client_jwk: [x]",
        "client_jwk[0]: expected a mapping, got a string",
    ),
    "upstream_headers not a list": (
        "upstream_headers: {header: X-Sub, path: [sub]}",
        "upstream_headers: expected a list, got a mapping",
    ),
    "upstream_headers entry not a mapping": (
        "upstream_headers: [X-Sub]",
        "upstream_headers[0]: expected a mapping, got a string",
    ),
    "upstream_headers entry without a header": (
        "upstream_headers: [{path: [sub]}]",
        "upstream_headers[0].header: required field missing",
    ),
    "upstream_headers entry without a path": (
        "upstream_headers: [{header: X-Sub}]",
        "upstream_headers[0].path: required field missing",
    ),
    "upstream_headers entry with an empty path": (
        "upstream_headers: [{header: X-Sub, path: []}]",
        "upstream_headers[0].path: must not be empty: it is the path to a claim",
    ),
    "upstream_headers path not strings": (
        "upstream_headers: [{header: X-Sub, path: [org, 1]}]",
        "upstream_headers[0].path[1]: expected a string, got an integer",
    ),
    "upstream_headers entry with another field": (
        "upstream_headers: [{header: X-Sub, path: [sub], claim: sub}]",
        "upstream_headers[0].claim: unknown field",
    ),
    "upstream_headers header invalid": (
        "upstream_headers: [{header: 'x sub', path: [sub]}]",
        "upstream_headers[0].header: invalid header name 'x sub'",
    ),
    "upstream_headers header is Host": (
        "upstream_headers: [{header: host, path: [sub]}]",
        "upstream_headers[0].header: 'host' cannot be set from a token: it frames or routes the "
        "request",
    ),
    "upstream_headers header is the token's header": (
        "upstream_headers: [{header: Authorization, path: [sub]}]",
        "upstream_headers: 'authorization' is upstream_access_token_header's header too: the "
        "upstream would get it twice",
    ),
    "upstream_headers beside the older lists": (
        "upstream_headers: [{header: X-Sub, path: [sub]}]\nupstream_headers_claims: [email]\n"
        "upstream_headers_names: [X-Email]",
        "upstream_headers: set together with upstream_headers_claims / upstream_headers_names: "
        "Kong takes one form or the other",
    ),
    "downstream_headers beside the older lists": (
        "downstream_headers: [{header: X-Sub, path: [sub]}]\ndownstream_headers_names: [X-E]",
        "downstream_headers: set together with downstream_headers_claims / "
        "downstream_headers_names: Kong takes one form or the other",
    ),
    "downstream header frames the answer": (
        "downstream_headers_claims: [sub]\ndownstream_headers_names: [Content-Length]",
        "downstream_headers_names[0]: 'Content-Length' cannot be set from a token: it frames or "
        "routes the request",
    ),
    "upstream header the gateway sets": (
        "upstream_headers_claims: [sub]\nupstream_headers_names: [X-Forwarded-For]",
        "upstream_headers_names: 'X-Forwarded-For' is a header the gateway sets itself: it would "
        "arrive twice",
    ),
    "upstream header the consumer mapping sets": (
        "consumer_claims: [[sub]]\nupstream_headers: [{header: x_consumer_id, path: [sub]}]",
        "upstream_headers: 'x_consumer_id' is a header the gateway sets itself: it would arrive "
        "twice",
    ),
    "upstream header the anonymous consumer sets": (
        "anonymous: guest\nupstream_headers: [{header: X-Anonymous-Consumer, path: [sub]}]",
        "upstream_headers: 'X-Anonymous-Consumer' is a header the gateway sets itself: it would "
        "arrive twice",
    ),
    "upstream header authenticated_groups_claim sets": (
        "authenticated_groups_claim: [groups]\n"
        "upstream_headers: [{header: X-Authenticated-Groups, path: [groups]}]",
        "upstream_headers: 'X-Authenticated-Groups' is a header the gateway sets itself: it "
        "would arrive twice",
    ),
    "downstream header the gateway sets": (
        "downstream_headers: [{header: X-Request-Id, path: [jti]}]",
        "downstream_headers: 'X-Request-Id' is a header the gateway sets itself: it would arrive "
        "twice",
    ),
    "framing header spelt with an underscore": (
        "upstream_headers: [{header: Content_Length, path: [sub]}]",
        "upstream_headers[0].header: 'Content_Length' cannot be set from a token: it frames or "
        "routes the request",
    ),
    "jwk header invalid": (
        "upstream_access_token_jwk_header: 'x jwk'",
        "upstream_access_token_jwk_header: invalid header name 'x jwk'",
    ),
    "jwk header is the token's header": (
        "upstream_access_token_jwk_header: Authorization",
        "upstream_access_token_jwk_header: 'authorization' is upstream_access_token_header's "
        "header too: the upstream would get it twice",
    ),
    "jwk header is a token place": (
        "upstream_access_token_jwk_header: X-Access-Token",
        "upstream_access_token_jwk_header: 'X-Access-Token' is where a client's token comes: a "
        "claim or key cannot set it",
    ),
    "claim header is a token place": (
        "upstream_access_token_header: x-token\n"
        "upstream_headers_claims: [sub]\nupstream_headers_names: [Authorization]",
        "upstream_headers_names: 'Authorization' is where a client's token comes: a claim or key "
        "cannot set it",
    ),
    "jwk header is a claim header too": (
        "upstream_access_token_jwk_header: X-Sub\n"
        "upstream_headers_claims: [sub]\nupstream_headers_names: [x_sub]",
        "upstream_headers_names: 'x-sub' is upstream_access_token_jwk_header's header too: the "
        "upstream would get it twice",
    ),
    "token header spelt with an underscore": (
        "upstream_access_token_header: x-tok\nupstream_access_token_jwk_header: x_tok",
        "upstream_access_token_jwk_header: 'x-tok' is upstream_access_token_header's header "
        "too: the upstream would get it twice",
    ),
    "answer headers twice": (
        "downstream_access_token_header: X-T\ndownstream_access_token_jwk_header: x-t",
        "downstream_access_token_jwk_header: 'x-t' is downstream_access_token_header's header "
        "too: the answer would get it twice",
    ),
    "answer token header the gateway sets": (
        "downstream_access_token_header: Via:bearer",
        "downstream_access_token_header: 'Via' is a header the gateway sets itself: it would "
        "arrive twice",
    ),
    "introspection header beside a claim header": (
        "upstream_introspection_header: X-Sub\n"
        "upstream_headers_claims: [sub]\nupstream_headers_names: [X-Sub]",
        "upstream_headers_names: 'x-sub' is upstream_introspection_header's header too: the "
        "upstream would get it twice",
    ),
    "downstream token header invalid": (
        "downstream_access_token_header: 'x:a b'",
        "downstream_access_token_header: invalid scheme 'a b': a token such as 'bearer'",
    ),
    "downstream jwk header frames the answer": (
        "downstream_access_token_jwk_header: Transfer-Encoding",
        "downstream_access_token_jwk_header: 'Transfer-Encoding' cannot be set from a token: it "
        "frames or routes the request",
    ),
    "authenticated_groups_claim not a list": (
        "authenticated_groups_claim: groups",
        "authenticated_groups_claim: expected a list of strings, got a string",
    ),
    "consumer_claim empty": (
        "consumer_claim: []",
        "consumer_claim: must not be empty: it is the path to a claim",
    ),
    "claim path entry blank": (
        "consumer_claims: [[sub, ' ']]",
        "consumer_claims[0][1]: must not be empty",
    ),
    "introspection method in its own field": (
        "introspect_jwt_tokens: true\nintrospection_endpoint_auth_method: private_key_jwt",
        "introspection_endpoint_auth_method: private_key_jwt is not implemented by tokengate for "
        "introspect_jwt_tokens: use client_secret_basic, client_secret_post or none",
    ),
    "unenforceable field of the wrong type": (
        "jwt_session_cookie: 5",
        "jwt_session_cookie: expected a string, got an integer",
    ),
    "unenforceable list of the wrong type": (
        "consumer_groups_claim: 5",
        "consumer_groups_claim: expected a list of strings, got an integer",
    ),
    "DEL in a URL": (
        'issuer: "https://idp.example/\\x7f"',
        "issuer: must not contain spaces or control characters",
    ),
    "older consumer_claim with a consumer header from a claim": (
        "consumer_claim: [sub]\nupstream_headers_claims: [sub]\n"
        "upstream_headers_names: [X-Consumer-ID]",
        "upstream_headers_names: 'X-Consumer-ID' is a header the gateway sets itself: it would "
        "arrive twice",
    ),
    "downstream introspection header beside a claim header": (
        "downstream_introspection_header: X-I\ndownstream_headers_claims: [sub]\n"
        "downstream_headers_names: [x_i]",
        "downstream_headers_names: 'x-i' is downstream_introspection_header's header too: the "
        "answer would get it twice",
    ),
    "downstream token header beside a claim header": (
        "downstream_access_token_header: X-Tok\ndownstream_headers_claims: [sub]\n"
        "downstream_headers_names: [X-Tok]",
        "downstream_headers_names: 'x-tok' is downstream_access_token_header's header too: the "
        "answer would get it twice",
    ),
    "one header for two claims": (
        "upstream_headers_claims: [a, b]\nupstream_headers_names: [X-A, X-A]",
        "upstream_headers_names: 'x-a' is upstream_headers_names's header too: the upstream "
        "would get it twice",
    ),
    "upstream_headers beside the older claims list alone": (
        "upstream_headers: [{header: X-A, path: [sub]}]\nupstream_headers_claims: [sub]",
        "upstream_headers: set together with upstream_headers_claims / upstream_headers_names: "
        "Kong takes one form or the other",
    ),
    "unimplemented list of lists": (
        "consumer_claims: [sub]",
        "consumer_claims[0]: expected a list of strings, got a string: each entry is a claim "
        "path, as in [[sub], [org, id]]",
    ),
}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("client_secret: ['{vault://env/idp-secret}']", "client_secret[0]"),
        (
            "upstream_headers: [{header: X-A, path: ['{vault://aws/x}']}]",
            "upstream_headers[0].path[0]",
        ),
    ],
)
def test_a_vault_reference_is_an_error_not_taken_for_the_value(text: str, where: str) -> None:
    """Kong resolves `{vault://...}` from its vaults; tokengate would send the reference's text
    as the secret (to the introspection endpoint, say): an error names it instead."""
    assert error(text) == (
        f"{where}: a Kong vault reference, which tokengate does not resolve: write the value "
        "itself (or generate the file with it, e.g. from an environment variable)"
    )
    # The rest of the config is still checked; the issuer's absence is no second error.
    _, report = parse("issuer: '{vault://env/issuer}'\nleeway: x")
    assert report.errors == [
        f"kong.yaml: {PATH}.issuer: a Kong vault reference, which tokengate does not resolve: "
        "write the value itself (or generate the file with it, e.g. from an environment "
        "variable)",
        f"kong.yaml: {PATH}.leeway: expected a number, got a string",
    ]


@pytest.mark.parametrize(("text", "line"), ERRORS.values(), ids=ERRORS.keys())
def test_error(text: str, line: str) -> None:
    assert error(text) == line


def test_errors_name_the_plugin_path_and_file() -> None:
    report = Report("kong.yaml")
    assert parse_oidc_config({"leeway": "x"}, "services[0].plugins[0].config", report) is None
    assert report.errors == [
        "kong.yaml: services[0].plugins[0].config.issuer: required field missing",
        "kong.yaml: services[0].plugins[0].config.leeway: expected a number, got a string",
    ]


def test_every_error_is_reported_at_once() -> None:
    _, report = parse("issuer: 1\nleeway: x\nverify_signature: false\nbogus: 1")
    assert report.errors == [
        "kong.yaml: plugins[0].config.bogus: unknown field",
        "kong.yaml: plugins[0].config.issuer: expected a string, got an integer",
        "kong.yaml: plugins[0].config.verify_signature: tokengate never accepts unsigned or "
        "unverified tokens: remove verify_signature: false",
        "kong.yaml: plugins[0].config.leeway: expected a number, got a string",
    ]


def test_every_bad_claim_path_is_reported() -> None:
    _, report = parse("consumer_claims: [[], sub, [sub, 1]]")
    assert report.errors == [
        f"kong.yaml: {PATH}.consumer_claims[0]: must not be empty: it is the path to a claim",
        f"kong.yaml: {PATH}.consumer_claims[1]: expected a list of strings, got a string: each "
        "entry is a claim path, as in [[sub], [org, id]]",
        f"kong.yaml: {PATH}.consumer_claims[2][1]: expected a string, got an integer",
    ]


def test_ignore_signature_of_the_wrong_type_is_one_error() -> None:
    _, report = parse("ignore_signature: 5")
    assert report.errors == [
        f"kong.yaml: {PATH}.ignore_signature: expected a list of strings, got an integer"
    ]


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("login_methods: 5", [".login_methods: expected a list of strings, got an integer"]),
        ("login_action: 5", [".login_action: expected a string, got an integer"]),
        (
            "login_methods: 5\nlogout_methods: 6",
            [
                ".login_methods: expected a list of strings, got an integer",
                ".logout_methods: expected a list of strings, got an integer",
            ],
        ),
    ],
)
def test_an_unimplemented_field_of_the_wrong_type_is_an_error_not_a_warning(
    text: str, errors: list[str]
) -> None:
    _, report = parse(text)
    assert report.errors == [f"kong.yaml: {PATH}{line}" for line in errors]
    assert report.warnings == []


# --- warnings -----------------------------------------------------------------------------------


def test_unimplemented_fields_make_one_warning_in_file_order() -> None:
    assert warnings("""
        client_id: [abc]
        session_secret: s3cr3t
        leeway: 1
        introspection_endpoint: https://idp.example/introspect
    """) == [
        ": not implemented by tokengate, ignored: client_id, session_secret, introspection_endpoint"
    ]


def test_kongs_deprecated_names_load_with_a_warning() -> None:
    """Kong still takes its shorthand fields (older names, "to be removed in Kong 4.0"), so a
    dump of an older Kong holding them loads, with a warning naming them."""
    assert warnings("""
        session_cookie_lifetime: 3600
        session_redis_host: 127.0.0.1
        session_redis_cluster_nodes: [{ip: 10.0.0.1, port: 6379}]
        authorization_cookie_httponly: true
        session_strategy: null
    """) == [
        ": Kong's deprecated names (gone in Kong 4.0), ignored: session_cookie_lifetime, "
        "session_redis_host, session_redis_cluster_nodes, authorization_cookie_httponly"
    ]
    assert error("session_cookie_lifetime: soon") == (
        "session_cookie_lifetime: expected a number, got a string"
    )


def test_unimplemented_fields_at_kongs_defaults_do_not_warn() -> None:
    # `deck gateway dump` writes every field; those at Kong's default change nothing.
    defaults = {**KONG_DEFAULTS, **ORDERED_DEFAULTS}  # as Kong itself writes them
    dumped = {
        name: list(default) if isinstance(default, tuple) else default
        for name, default in defaults.items()
    }
    dumped |= {"issuer": ISSUER, "client_id": None, "redis": {"host": "127.0.0.1"}}
    report = Report("kong.yaml")
    config = parse_oidc_config(dumped, PATH, report)
    assert (report.errors, report.warnings) == ([], [])
    assert config == OidcConfig.for_issuer(ISSUER)


def test_empty_list_without_a_default_is_unset() -> None:
    assert ok("claims_forbidden: [act, may_act]").claims_forbidden == ("act", "may_act")
    assert warnings("scopes: []\nclaims_forbidden: []\nconsumer_claims: []") == [
        ": not implemented by tokengate, ignored: scopes"
    ]
    assert warnings("introspection_headers_names: []\nlogin_redirect_uri: []") == []


def test_a_field_at_kongs_default_does_not_hide_the_fields_after_it() -> None:
    assert warnings("scopes: [openid]\nlogin_action: response") == [
        ": not implemented by tokengate, ignored: login_action"
    ]


def test_consumer_mapping_is_read_in_either_of_kongs_spellings() -> None:
    config = ok("""
        consumer_claims: [[client_id], [user, name]]
        consumer_by: [username, id]
        consumer_optional: true
        by_username_ignore_case: true
    """)
    assert config.consumer_claims == (("client_id",), ("user", "name"))
    assert config.consumer_by == ("username", "id")
    assert config.consumer_optional and config.by_username_ignore_case
    assert warnings("consumer_claims: [[sub]]") == []
    # without consumer mapping or anonymous, X-Consumer-* are any claim header's to set
    assert ok("upstream_headers: [{header: X-Consumer-ID, path: [sub]}]").upstream_header_names == (
        "X-Consumer-ID",
    )
    # Kong's older name holds one path (as its documentation's examples still write it).
    older = ok("consumer_claim: [user, name]")
    assert older.consumer_claims == (("user", "name"),)
    assert older.consumer_by == ("username", "custom_id")  # Kong's default


def test_consumer_groups_claim_with_optional_groups_only_warns() -> None:
    assert warnings("consumer_groups_claim: [tier]\nconsumer_groups_optional: true") == [
        ": not implemented by tokengate, ignored: consumer_groups_claim, consumer_groups_optional"
    ]


def test_domains_only_warns() -> None:
    """Kong checks `hd` against `domains` in ID tokens only, never in a bearer access token."""
    assert warnings("domains: [example.com]") == [
        ": not implemented by tokengate, ignored: domains"
    ]


def test_auth_methods_default_does_not_warn() -> None:
    assert warnings("") == []
    assert warnings("auth_methods: [bearer]") == []


def test_auth_methods_other_than_bearer_warn_once_by_name() -> None:
    assert warnings("auth_methods: [session, bearer, introspection]") == [
        ".auth_methods: not implemented by tokengate, ignored: session, introspection"
    ]


def test_ignore_signature_for_other_grants_only_warns() -> None:
    assert warnings("ignore_signature: [session]") == [
        ": not implemented by tokengate, ignored: ignore_signature"
    ]


def test_cookie_name_without_cookie_param_type_warns() -> None:
    assert warnings("bearer_token_cookie_name: at") == [
        ".bearer_token_cookie_name: ignored: bearer_token_param_type has no 'cookie'"
    ]
    assert warnings("bearer_token_param_type: [cookie]\nbearer_token_cookie_name: at") == []


def test_duplicate_required_value_warns() -> None:
    assert warnings("scopes_required: [read, read]") == [
        ".scopes_required[1]: duplicate value 'read'"
    ]


def test_verification_switches_at_their_safe_values_are_fine() -> None:
    assert (
        warnings(
            "verify_signature: true\nverify_claims: true\nenable_hs_signatures: false\n"
            "ignore_signature: []\nproof_of_possession_mtls: 'off'\nintrospect_jwt_tokens: false"
        )
        == []
    )


def test_for_issuer_builds_what_the_loader_builds() -> None:
    assert OidcConfig.for_issuer(ISSUER, leeway=3.0) == ok("leeway: 3")


INTROSPECTING = "introspect_jwt_tokens: true\nclient_id: [c]\nclient_secret: [s]\n"


def test_introspection_post_args_client_headers_is_refused_like_its_siblings() -> None:
    """Kong adds these arguments to every introspection; tokengate does not send them, so the
    issuer may refuse every introspection (every token). Its five siblings
    (introspection_headers_*, introspection_post_args_client/names/values) are errors; this
    one is only named in the "not implemented, ignored" warning."""
    assert error(INTROSPECTING + "introspection_post_args_client_headers: [X-Tenant]") == (
        "introspection_post_args_client_headers: not implemented by tokengate for "
        "introspect_jwt_tokens: remove it"
    )


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        pytest.param("", "token_type_hint", id="the-hint"),
        pytest.param("client_auth: [client_secret_post]\n", "client_id", id="the-client"),
        pytest.param("client_auth: [client_secret_post]\n", "client_secret", id="the-secret"),
    ],
)
def test_a_token_parameter_named_like_another_parameter_is_an_error(fields: str, name: str) -> None:
    """The introspection form is built as one mapping: a token_param_name that is also the
    name of the hint (or, with client_secret_post, of the client's credentials) is overwritten,
    and the token is never sent: the issuer can then answer no question (on the wire, with
    token_type_hint: the form is {"token_type_hint": "access_token"}, no token in it)."""
    message = error(INTROSPECTING + fields + f"introspection_token_param_name: {name}")
    assert message.startswith("introspection_token_param_name: ")
    assert name in message


def test_ignore_signature_of_the_wrong_type_is_an_error_only() -> None:
    """Every other field of the wrong type is an error and nothing else; ignore_signature: 5
    is also named in the "not implemented by tokengate, ignored" warning, which says the
    opposite of the error beside it (and would ignore a value it could not read)."""
    _, report = parse("ignore_signature: 5")
    assert report.errors == [
        "kong.yaml: plugins[0].config.ignore_signature: expected a list of strings, got an integer"
    ]
    assert report.warnings == []
