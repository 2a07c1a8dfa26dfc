"""tokens + grants: scope rules, the claim-inclusion table, reserved claims, the token's exact
shape, client authentication methods and every OAuth error, against a real in-memory Store."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.identity.support import T0, Clock, pooled_key
from tokengate.identity import signing, tokens
from tokengate.identity.grants import (
    CLIENT_AUTH_METHODS,
    GRANTS,
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    Issuer,
    OAuthError,
    ServerError,
    TokenRequest,
    UnauthorizedClient,
    UnsupportedGrantType,
    token_endpoint,
)
from tokengate.identity.issuer_api import IssuerApi
from tokengate.identity.models import AuthServer, Client, Scope
from tokengate.identity.store import Store
from tokengate.identity.tokens import (
    RESERVED_CLAIMS,
    ClaimError,
    ScopeError,
    grant_scopes,
    included_claims,
    mint_access_token,
    userinfo,
)

PUBLIC_URL = "http://identity.test"


def new_store(clock: Clock) -> Store:
    return Store.open(None, clock=clock, key_factory=pooled_key)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Iterator[Store]:
    with new_store(clock) as s:
        yield s


def issuer_of(store: Store, server: AuthServer, clock: Clock) -> Issuer:
    return Issuer(store, server, f"{PUBLIC_URL}/{server.issuer_id}/auth", clock.time)


def public_key(store: Store, server: AuthServer) -> rsa.RSAPublicKey:
    return signing.signer_for(store.active_key(server.id)).private_key.public_key()


def decode(token: str, store: Store, server: AuthServer) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        public_key(store, server),
        algorithms=[server.signing_algorithm],
        audience=server.audience,
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    return claims


def segment(token: str, index: int) -> Any:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: each part form-urlencoded, then base64."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@dataclass
class World:
    store: Store
    clock: Clock
    server: AuthServer
    client: Client
    secret: str
    read: Scope
    write: Scope
    admin: Scope  # enabled, not allowed for `client`
    off: Scope  # disabled
    default: Scope  # default, allowed

    @property
    def issuer(self) -> Issuer:
        return issuer_of(self.store, self.server, self.clock)

    def post(
        self, client: Client | None = None, secret: str | None = None, /, **form: str
    ) -> TokenRequest:
        client, secret = client or self.client, secret if secret is not None else self.secret
        base = {"grant_type": "client_credentials", "client_id": client.id, "client_secret": secret}
        return TokenRequest({**base, **form})

    def token(self, **form: str) -> dict[str, Any]:
        return token_endpoint(self.issuer, self.post(**form))


@pytest.fixture
def world(store: Store, clock: Clock) -> World:
    server = store.create_auth_server(name="Dev", audience="http://myhttpbin.dev")
    asid = server.id
    read = store.create_scope(asid, name="read")
    write = store.create_scope(asid, name="write")
    admin = store.create_scope(asid, name="admin")
    off = store.create_scope(asid, name="off", enabled=False)
    default = store.create_scope(asid, name="profile", default=True)
    store.create_scope(asid, name="other-default", default=True)  # default, but not allowed
    client, secret = store.create_client(
        asid,
        name="billing",
        allow_scopes=(read.id, write.id, off.id, default.id),
        labels={"team": "payments"},
    )
    return World(store, clock, server, client, secret, read, write, admin, off, default)


# ---- scopes --------------------------------------------------------------------------------------


def names(scopes: tuple[Scope, ...]) -> list[str]:
    return [s.name for s in scopes]


def test_no_scope_parameter_grants_the_enabled_defaults_the_client_may_use(world: World) -> None:
    scopes = world.store.list_scopes(world.server.id)
    assert names(grant_scopes(scopes, world.client, None)) == ["profile"]
    assert names(grant_scopes(scopes, world.client, "")) == ["profile"]
    assert names(grant_scopes(scopes, world.client, "  ")) == ["profile"]


def test_a_disabled_default_scope_is_not_granted(world: World) -> None:
    world.store.update_scope(world.server.id, world.default.id, enabled=False)
    scopes = world.store.list_scopes(world.server.id)
    assert grant_scopes(scopes, world.client, None) == ()


def test_requested_scopes_are_granted_by_name_in_order_once_each(world: World) -> None:
    scopes = world.store.list_scopes(world.server.id)
    granted = grant_scopes(scopes, world.client, "write read  write")
    assert names(granted) == ["write", "read"]  # defaults are not added to an explicit request


@pytest.mark.parametrize("requested", ["nope", "admin", "off", "read nope", "read\tw", 'a"b'])
def test_unknown_disabled_or_not_allowed_scopes_are_refused(world: World, requested: str) -> None:
    scopes = world.store.list_scopes(world.server.id)
    with pytest.raises(ScopeError):
        grant_scopes(scopes, world.client, requested)


def test_allow_all_scopes_allows_every_enabled_scope(world: World) -> None:
    client = world.store.update_client(world.server.id, world.client.id, allow_all_scopes=True)
    scopes = world.store.list_scopes(world.server.id)
    assert names(grant_scopes(scopes, client, "admin read")) == ["admin", "read"]
    assert names(grant_scopes(scopes, client, None)) == ["profile", "other-default"]
    with pytest.raises(ScopeError):
        grant_scopes(scopes, client, "off")


# ---- claims: the inclusion table -----------------------------------------------------------------


@pytest.mark.parametrize(
    (
        "include_in_token",
        "include_in_all_scopes",
        "tied_to",
        "enabled",
        "requested",
        "in_token",
        "in_userinfo",
    ),
    [
        # always: include_in_all_scopes, whatever was granted (even nothing)
        (True, True, None, True, "read", True, True),
        (True, True, None, True, None, True, True),
        (True, True, "admin", True, "read", True, True),
        # specific scopes: only when one of them was granted
        (True, False, "read", True, "read", True, True),
        (True, False, "read", True, "write read", True, True),
        (True, False, "read", True, "write", False, False),
        (True, False, None, True, "read", False, False),  # in no scope at all: never
        # no scope requested: the defaults decide
        (True, False, "profile", True, None, True, True),
        (True, False, "read", True, None, False, False),
        # include_in_token false: never in the token, /userinfo only
        (False, True, None, True, "read", False, True),
        (False, False, "read", True, "read", False, True),
        (False, False, "read", True, "write", False, False),
        # disabled: nowhere
        (True, True, None, False, "read", False, False),
        (False, True, None, False, "read", False, False),
    ],
)
def test_claim_inclusion(
    world: World,
    include_in_token: bool,
    include_in_all_scopes: bool,
    tied_to: str | None,
    enabled: bool,
    requested: str | None,
    in_token: bool,
    in_userinfo: bool,
) -> None:
    by_name = {s.name: s for s in world.store.list_scopes(world.server.id)}
    world.store.create_claim(
        world.server.id,
        name="tier",
        value="gold",
        include_in_token=include_in_token,
        include_in_all_scopes=include_in_all_scopes,
        include_in_scopes=(by_name[tied_to].id,) if tied_to else (),
        enabled=enabled,
    )
    form = {"scope": requested} if requested is not None else {}
    token = world.token(**form)["access_token"]
    assert ("tier" in decode(token, world.store, world.server)) is in_token
    scopes = grant_scopes(list(by_name.values()), world.client, requested)
    claims = world.store.list_claims(world.server.id)
    info = userinfo(world.server, world.client, scopes, claims, now=world.clock.time())
    assert ("tier" in info) is in_userinfo
    assert info["sub"] == world.client.id


def test_included_claims_keeps_the_store_order(world: World) -> None:
    for name in ("b", "a", "c"):
        world.store.create_claim(
            world.server.id, name=name, value="v", include_in_token=True, include_in_all_scopes=True
        )
    claims = world.store.list_claims(world.server.id)
    assert [c.name for c in included_claims(claims, [], in_token=True)] == ["b", "a", "c"]


@pytest.mark.parametrize("name", sorted(RESERVED_CLAIMS))
def test_custom_claims_never_override_registered_ones(world: World, name: str) -> None:
    world.store.create_claim(
        world.server.id,
        name=name,
        value='"forged"',
        include_in_token=True,
        include_in_all_scopes=True,
    )
    claims = decode(world.token(scope="read")["access_token"], world.store, world.server)
    assert claims[name] != '"forged"'
    info = userinfo(
        world.server, world.client, [world.read], world.store.list_claims(world.server.id), now=0
    )
    assert info.get(name) != '"forged"'


def test_first_claim_of_a_repeated_name_wins(world: World) -> None:
    for value in ("first", "second"):
        world.store.create_claim(
            world.server.id,
            name="dup",
            value=value,
            include_in_token=True,
            include_in_all_scopes=True,
        )
    assert decode(world.token()["access_token"], world.store, world.server)["dup"] == "first"


def test_claim_values_are_typed_and_templated_for_the_client(world: World) -> None:
    asid = world.server.id
    for name, value in [
        ("static", "hello"),
        ("json", '{"plan": "gold", "seats": 5}'),
        ("number", "42"),
        ("flag", "true"),
        ("team", "${ .Client.Labels.team }"),
        ("who", "${ .Client.Name }@${ .AuthServer.Name }"),
        ("minted", "${ now | unixEpoch }"),
        ("day", '${ now | date "2006-01-02" }'),
    ]:
        world.store.create_claim(
            asid, name=name, value=value, include_in_token=True, include_in_all_scopes=True
        )
    claims = decode(world.token()["access_token"], world.store, world.server)
    assert claims["static"] == "hello"
    assert claims["json"] == {"plan": "gold", "seats": 5}
    assert claims["number"] == 42
    assert claims["flag"] is True
    assert claims["team"] == "payments"
    assert claims["who"] == "billing@Dev"
    assert claims["minted"] == claims["iat"]  # templates render at the token's iat
    assert claims["day"] == "2025-03-01"


def test_a_claim_that_cannot_render_is_a_claim_error(world: World) -> None:
    # The admin API's check_template would refuse this one; the store does not check.
    world.store.create_claim(
        world.server.id,
        name="bad",
        value="${ div 1 0 }",
        include_in_token=True,
        include_in_all_scopes=True,
    )
    with pytest.raises(ClaimError, match="bad"):
        mint_access_token(
            issuer="i",
            server=world.server,
            client=world.client,
            granted=(),
            claims=world.store.list_claims(world.server.id),
            signer=signing.signer_for(world.store.active_key(world.server.id)),
            now=world.clock.time(),
        )
    with pytest.raises(ServerError) as info:
        world.token()
    assert info.value.status_code == 500
    assert info.value.body() == {
        "error": "server_error",
        "error_description": "a claim of this auth server could not be rendered",
    }


# ---- the token -----------------------------------------------------------------------------------


def test_token_header_claims_and_response_are_kong_identitys(world: World) -> None:
    body = world.token(scope="read write")
    token = body["access_token"]
    key = world.store.active_key(world.server.id)
    header = segment(token, 0)
    assert list(header.items()) == [("typ", "JWT"), ("alg", "RS256"), ("kid", key.kid)]
    claims = decode(token, world.store, world.server)
    iat = int(world.clock.time())
    assert claims == {
        "iss": f"{PUBLIC_URL}/{world.server.issuer_id}/auth",
        "sub": world.client.id,
        "aud": ["http://myhttpbin.dev"],
        "exp": iat + 300,
        "iat": iat,
        "nbf": iat,
        "jti": claims["jti"],
        "client_id": world.client.id,
        "scope": "read write",
    }
    assert uuid.UUID(claims["jti"]).version == 4
    assert body == {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "read write",
    }
    assert token.count(".") == 2 and "=" not in token


def test_no_scope_granted_means_no_scope_claim_and_no_scope_in_the_response(world: World) -> None:
    world.store.update_scope(world.server.id, world.default.id, default=False)
    body = world.token()
    assert "scope" not in body
    assert "scope" not in decode(body["access_token"], world.store, world.server)


def test_access_token_duration_is_honoured(world: World) -> None:
    client = world.store.update_client(world.server.id, world.client.id, access_token_duration=3600)
    body = token_endpoint(world.issuer, world.post(client))
    claims = decode(body["access_token"], world.store, world.server)
    assert body["expires_in"] == 3600
    assert claims["exp"] - claims["iat"] == 3600


def test_every_token_is_recorded_for_listing_revocation_and_introspection(world: World) -> None:
    claims = decode(world.token(scope="read")["access_token"], world.store, world.server)
    record = world.store.find_token(claims["jti"])
    assert record is not None
    assert record.auth_server_id == world.server.id
    assert record.client_id == world.client.id
    assert record.granted_scope_names == ("read",)
    assert record.created_at == T0
    assert record.expires_at == T0 + timedelta(seconds=300)
    assert not record.revoked


def test_two_tokens_have_different_jtis(world: World) -> None:
    first = decode(world.token()["access_token"], world.store, world.server)["jti"]
    second = decode(world.token()["access_token"], world.store, world.server)["jti"]
    assert first != second


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_the_server_signing_algorithm_signs_and_names_the_token(
    store: Store, clock: Clock, algorithm: str
) -> None:
    server = store.create_auth_server(name=algorithm, audience="aud", signing_algorithm=algorithm)
    client, secret = store.create_client(server.id, name="c")
    request = TokenRequest(
        {"grant_type": "client_credentials", "client_id": client.id, "client_secret": secret}
    )
    token = token_endpoint(issuer_of(store, server, clock), request)["access_token"]
    assert segment(token, 0)["alg"] == algorithm
    assert decode(token, store, server)["sub"] == client.id


# ---- client authentication -----------------------------------------------------------------------


def test_the_registries() -> None:
    assert list(GRANTS) == ["client_credentials"]
    assert list(CLIENT_AUTH_METHODS) == ["client_secret_basic", "client_secret_post"]


def test_client_secret_post(world: World) -> None:
    assert world.token()["token_type"] == "Bearer"


def test_client_secret_basic_with_form_urlencoded_parts(store: Store, clock: Clock) -> None:
    server = store.create_auth_server(name="s", audience="a")
    client, secret = store.create_client(server.id, name="c", id="odd-id_1", secret="p@ss:w rd+%/é")
    request = TokenRequest({"grant_type": "client_credentials"}, basic(client.id, secret))
    body = token_endpoint(issuer_of(store, server, clock), request)
    assert body["token_type"] == "Bearer"
    # client_id may repeat in the form when it matches (RFC 6749 §2.3.1 allows either place)
    request = TokenRequest(
        {"grant_type": "client_credentials", "client_id": client.id}, basic(client.id, secret)
    )
    assert token_endpoint(issuer_of(store, server, clock), request)["token_type"] == "Bearer"


def test_basic_scheme_is_case_insensitive(world: World) -> None:
    header = "bAsIc " + basic(world.client.id, world.secret).split(" ", 1)[1]
    request = TokenRequest({"grant_type": "client_credentials"}, header)
    assert token_endpoint(world.issuer, request)["token_type"] == "Bearer"


def expect(world: World, request: TokenRequest, error: type[OAuthError]) -> OAuthError:
    with pytest.raises(error) as info:
        token_endpoint(world.issuer, request)
    exc = info.value
    assert type(exc) is error
    body = exc.body()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error.error
    headers = exc.headers()
    assert headers["Cache-Control"] == "no-store"
    assert headers["Pragma"] == "no-cache"
    # RFC 9110 §15.5.2: every 401 names a scheme; no other answer carries a challenge.
    realm = f'Basic realm="{world.issuer.url}"'
    assert headers.get("WWW-Authenticate") == (realm if exc.status_code == 401 else None)
    return exc


def test_both_methods_at_once_is_invalid_request(world: World) -> None:
    request = TokenRequest(world.post().form, basic(world.client.id, world.secret))
    expect(world, request, InvalidRequest)


def test_basic_with_a_different_form_client_id_is_invalid_request(world: World) -> None:
    form = {"grant_type": "client_credentials", "client_id": "someone-else"}
    expect(world, TokenRequest(form, basic(world.client.id, world.secret)), InvalidRequest)


def test_a_secret_without_a_client_id_is_invalid_request(world: World) -> None:
    form = {"grant_type": "client_credentials", "client_secret": world.secret}
    expect(world, TokenRequest(form), InvalidRequest)


@pytest.mark.parametrize(
    "form",
    [
        {"client_secret": "wrong"},
        {"client_id": "nobody"},
        {"client_secret": ""},
    ],
)
def test_wrong_post_credentials_are_invalid_client(world: World, form: dict[str, str]) -> None:
    exc = expect(world, world.post(**form), InvalidClient)
    assert exc.status_code == 401
    assert exc.description == "client authentication failed"  # one answer: no probing ids


def test_no_credentials_at_all_is_invalid_client(world: World) -> None:
    expect(world, TokenRequest({"grant_type": "client_credentials"}), InvalidClient)
    expect(
        world,
        TokenRequest({"grant_type": "client_credentials", "client_id": world.client.id}),
        InvalidClient,
    )


@pytest.mark.parametrize(
    "header",
    [
        "Basic " + base64.b64encode(b"nobody:nothing").decode(),
        "basic " + base64.b64encode(b"x:wrong").decode(),
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":no-id").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Basic",
    ],
)
def test_wrong_basic_credentials_are_invalid_client_with_a_basic_challenge(
    world: World, header: str
) -> None:
    expect(
        world,
        TokenRequest({"grant_type": "client_credentials"}, header),
        InvalidClient,
    )


def test_a_disabled_secret_no_longer_authenticates(world: World) -> None:
    (secret,) = world.store.list_secrets(world.server.id, world.client.id)
    world.store.update_secret(world.server.id, world.client.id, secret.id, enabled=False)
    expect(world, world.post(), InvalidClient)


def test_another_servers_client_cannot_authenticate_here(world: World) -> None:
    other = world.store.create_auth_server(name="other", audience="x")
    stranger, secret = world.store.create_client(other.id, name="stranger")
    expect(world, world.post(stranger, secret), InvalidClient)


# ---- grants --------------------------------------------------------------------------------------


def test_grant_type_is_required(world: World) -> None:
    expect(
        world,
        TokenRequest({"client_id": world.client.id, "client_secret": world.secret}),
        InvalidRequest,
    )


@pytest.mark.parametrize(
    "grant_type", ["password", "authorization_code", "implicit", "refresh_token"]
)
def test_other_grant_types_are_unsupported(world: World, grant_type: str) -> None:
    expect(world, world.post(grant_type=grant_type), UnsupportedGrantType)


def test_unsupported_grant_type_is_said_before_client_authentication(world: World) -> None:
    expect(world, world.post(grant_type="password", client_secret="wrong"), UnsupportedGrantType)


def test_a_client_without_the_grant_is_unauthorized_client(world: World) -> None:
    client = world.store.update_client(world.server.id, world.client.id, grant_types=("implicit",))
    expect(world, world.post(client), UnauthorizedClient)


def test_invalid_scope_only_after_the_client_authenticated(world: World) -> None:
    exc = expect(world, world.post(scope="admin"), InvalidScope)
    assert "admin" in exc.description
    expect(world, world.post(scope="admin", client_secret="wrong"), InvalidClient)


# ---- properties: whatever a client sends, an OAuthError or a token, nothing else -----------------

_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_FORM_KEYS = st.sampled_from(["grant_type", "client_id", "client_secret", "scope", "x"])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    form=st.dictionaries(_FORM_KEYS, _TEXT | st.sampled_from(["client_credentials", "read"])),
    authorization=st.none()
    | _TEXT
    | _TEXT.map(lambda t: "Basic " + base64.b64encode(t.encode()).decode()),
)
def test_any_request_is_a_token_or_an_oauth_error(
    world: World, form: dict[str, str], authorization: str | None
) -> None:
    try:
        body = token_endpoint(world.issuer, TokenRequest(form, authorization))
    except OAuthError as exc:
        status = exc.status_code
    else:
        status = 200
        assert body["token_type"] == "Bearer"
    assert status in (200, 400, 401)


# ---- pinned after a mutation run: what a client reads of each refusal, and edge cases ----------


# A non-Basic Authorization header is not a client authentication method
def test_form_credentials_with_an_unrelated_authorization_header_get_a_token(world: World) -> None:
    request = TokenRequest(world.post().form, "Bearer abc")
    assert token_endpoint(world.issuer, request)["token_type"] == "Bearer"


# Malformed Basic credentials say so (error_description reaches the client)
@pytest.mark.parametrize(
    "raw", [b"no-colon", b":no-id", b"\xff\xfe:x"], ids=["no-colon", "no-id", "not-utf8"]
)
def test_malformed_basic_credentials_are_described(world: World, raw: bytes) -> None:
    header = "Basic " + base64.b64encode(raw).decode()
    with pytest.raises(InvalidClient) as info:
        token_endpoint(world.issuer, TokenRequest({"grant_type": "client_credentials"}, header))
    assert info.value.body()["error_description"] == "malformed Basic credentials"


# The invalid_request descriptions
def test_invalid_request_descriptions(world: World) -> None:
    with pytest.raises(InvalidRequest) as info:
        token_endpoint(
            world.issuer,
            TokenRequest({"grant_type": "client_credentials", "client_secret": world.secret}),
        )
    assert info.value.description == "client_secret without client_id"
    with pytest.raises(InvalidRequest) as info:
        token_endpoint(world.issuer, TokenRequest(world.post().form, "Basic eDp5"))
    assert info.value.description == "more than one client authentication method"


# The longest token issued is 8190 - len("Bearer ") = 8183 characters (one header line):
# one of exactly 8183 is issued, one of 8184 is a server_error
def test_the_longest_token_is_8183_characters(world: World) -> None:
    def mint(pad: int) -> str:
        for claim in world.store.list_claims(world.server.id):
            world.store.delete_claim(world.server.id, claim.id)
        for name, size in (("p1", pad // 2), ("p2", pad - pad // 2)):  # values: 4096 at most
            world.store.create_claim(
                world.server.id,
                name=name,
                value="x" * size,
                include_in_token=True,
                include_in_all_scopes=True,
            )
        return str(world.token()["access_token"])

    def payload_bytes(token: str) -> int:
        part = token.split(".")[1]
        return len(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))

    def pad_for(length: int) -> int:
        # unpadded base64 of n bytes is ceil(4n/3) characters
        n = next(n for n in range(1, 10_000) if -(-4 * n // 3) == length - head_and_sig)
        return 100 + n - payload_bytes(probe)

    probe = mint(100)
    head_and_sig = len(probe) - len(probe.split(".")[1])
    longest = mint(pad_for(8183))
    assert len(longest) == 8183
    # and introspection/userinfo accept it back
    api = IssuerApi(world.store, public_url=PUBLIC_URL, clock=world.clock.time)
    assert api.active_claims(world.issuer, longest) is not None
    with pytest.raises(ServerError) as info:
        mint(pad_for(8184))
    assert info.value.description == "the claims of this auth server make a token too long to use"


# A malformed scope is described as such (no echo of the name)
def test_a_malformed_scope_is_described_as_malformed(world: World) -> None:
    with pytest.raises(InvalidScope) as info:
        world.token(scope='a"b')
    assert info.value.description == "malformed scope"


# A repeated claim name skips only that claim, not the claims after it
def test_claims_after_a_repeated_name_are_still_included(world: World) -> None:
    for name, value in [("dup", "first"), ("dup", "second"), ("after", "x")]:
        world.store.create_claim(
            world.server.id,
            name=name,
            value=value,
            include_in_token=True,
            include_in_all_scopes=True,
        )
    claims = decode(world.token()["access_token"], world.store, world.server)
    assert (claims["dup"], claims["after"]) == ("first", "x")


# Descriptions that reach the client (error_description)
@pytest.mark.parametrize(
    ("form", "authorization", "description"),
    [
        ({"client_id": "c"}, None, "grant_type is required"),
        ({"grant_type": "client_credentials"}, None, "client authentication required"),
        (
            {"grant_type": "client_credentials", "client_id": "x y", "client_secret": "s"},
            None,
            "client authentication failed",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "other"},
            "Basic eDp5",
            "client_id does not match the Basic credentials",
        ),
    ],
)
def test_oauth_error_descriptions(
    world: World, form: dict[str, str], authorization: str | None, description: str
) -> None:
    with pytest.raises(OAuthError) as info:
        token_endpoint(world.issuer, TokenRequest(form, authorization))
    assert info.value.body()["error_description"] == description


# An unforeseen failure while rendering a claim is still a ClaimError
# (server_error), never a claim silently dropped from an issued token nor a bare exception
def test_an_unforeseen_render_failure_is_a_server_error(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> object:
        raise KeyError("boom")

    world.store.create_claim(
        world.server.id, name="c", value="v", include_in_token=True, include_in_all_scopes=True
    )
    monkeypatch.setattr(tokens, "render_claim", boom)
    with pytest.raises(ServerError):
        world.token()


# ---- pinned after a mutation run of grants and signing ------------------------------------------


# An OAuthError's message is its description (what tracebacks and logs show)
def test_an_oauth_error_reads_as_its_description() -> None:
    assert str(InvalidScope("scope 'x' is unknown")) == "scope 'x' is unknown"


# A Basic challenge goes only on a 401 that was given a realm
@pytest.mark.parametrize(
    ("error", "challenge"),
    [
        (InvalidClient("no", basic_realm="http://i/auth"), 'Basic realm="http://i/auth"'),
        (InvalidClient("no"), None),
        (InvalidRequest("no", basic_realm="http://i/auth"), None),
        (ServerError("no", basic_realm="http://i/auth"), None),
    ],
)
def test_a_basic_challenge_only_on_a_401_with_a_realm(
    error: OAuthError, challenge: str | None
) -> None:
    assert error.headers().get("WWW-Authenticate") == challenge


# RFC 9110 §11.4: one or more spaces after the scheme; RFC 7617 §2: the user-id ends at the first
# colon, so a secret sent unencoded (curl -u id:secret) may itself hold colons
@pytest.mark.parametrize(
    "header",
    [
        "Basic  {}",
        "Basic {} ",
        " Basic {}",
    ],
    ids=["two-spaces", "trailing-space", "leading-space"],
)
def test_basic_credentials_with_extra_spaces_authenticate(world: World, header: str) -> None:
    encoded = basic(world.client.id, world.secret).split(" ", 1)[1]
    request = TokenRequest({"grant_type": "client_credentials"}, header.format(encoded))
    assert token_endpoint(world.issuer, request)["token_type"] == "Bearer"


def test_a_basic_secret_holding_colons_authenticates(store: Store, clock: Clock) -> None:
    server = store.create_auth_server(name="s", audience="a")
    client, secret = store.create_client(server.id, name="c", id="colon-client", secret="a:b:c")
    raw = base64.b64encode(f"{client.id}:{secret}".encode()).decode()
    request = TokenRequest({"grant_type": "client_credentials"}, "Basic " + raw)
    assert token_endpoint(issuer_of(store, server, clock), request)["token_type"] == "Bearer"


# Basic credentials are strict base64 (RFC 7617 token68): characters outside the alphabet are
# not skipped over
@pytest.mark.parametrize("junk", ["*", "!", ".", "\u00e9"])
def test_basic_credentials_with_characters_outside_base64_are_malformed(
    world: World, junk: str
) -> None:
    encoded = basic(world.client.id, world.secret).split(" ", 1)[1]
    header = f"Basic {encoded[:4]}{junk}{encoded[4:]}"
    with pytest.raises(InvalidClient) as info:
        token_endpoint(world.issuer, TokenRequest({"grant_type": "client_credentials"}, header))
    assert info.value.description == "malformed Basic credentials"


# The grant refusals name the grant (at most 64 characters of an unknown one)
@pytest.mark.parametrize(
    ("grant_type", "description"),
    [
        ("password", "grant_type 'password' is not supported"),
        ("g" * 100, f"grant_type {'g' * 64!r} is not supported"),
    ],
    ids=["password", "long"],
)
def test_an_unsupported_grant_type_is_named(
    world: World, grant_type: str, description: str
) -> None:
    with pytest.raises(UnsupportedGrantType) as info:
        world.token(grant_type=grant_type)
    assert info.value.description == description


def test_an_unauthorized_client_is_told_which_grant(world: World) -> None:
    client = world.store.update_client(world.server.id, world.client.id, grant_types=("implicit",))
    with pytest.raises(UnauthorizedClient) as info:
        token_endpoint(world.issuer, world.post(client))
    assert info.value.description == "this client may not use the client_credentials grant"
