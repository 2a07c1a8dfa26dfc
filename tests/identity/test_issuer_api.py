"""issuer_api over HTTP (aiohttp_client, real in-memory Store): discovery and JWKS fetched, then
tokens verified with PyJWT against the JWKS; client auth methods; every RFC 6749 error as it goes
on the wire; signing algorithms; introspection (active, revoked, expired, another server's);
userinfo; unknown issuers."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from pytest_aiohttp import AiohttpClient

from tests.abandon import answer_to, leave_mid_body, served, server_errors
from tests.identity.support import Clock, IdentityTestServer
from tests.identity.test_tokens import PUBLIC_URL, basic, new_store
from tokengate.identity import signing
from tokengate.identity.app import create_identity_app
from tokengate.identity.grants import InvalidGrant, TokenRequest, token_endpoint
from tokengate.identity.grants import Issuer as IssuerContext
from tokengate.identity.issuer_api import (
    ISSUER_API,
    IssuerApi,
    create_issuer_app,
    oauth_error_response,
)
from tokengate.identity.models import AuthServer, Client, Scope
from tokengate.identity.runner import IdentityRunner
from tokengate.identity.store import MEMO_MAX_ENTRIES, Store
from tokengate.identity.tokens import MAX_TOKEN_LENGTH

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FORM_TYPE = FORM["Content-Type"]
HttpClient = TestClient[web.Request, web.Application]


@dataclass
class Issuer:
    http: HttpClient
    store: Store
    clock: Clock
    server: AuthServer
    client: Client
    secret: str
    read: Scope

    @property
    def path(self) -> str:
        return f"/{self.server.issuer_id}/auth"

    @property
    def url(self) -> str:
        return PUBLIC_URL + self.path

    async def token(
        self, status: int = 200, headers: dict[str, str] | None = None, **form: str
    ) -> Any:
        base = {
            "grant_type": "client_credentials",
            "client_id": self.client.id,
            "client_secret": self.secret,
        }
        async with self.http.post(
            self.path + "/oauth/token", data={**base, **form}, headers=headers
        ) as resp:
            assert resp.status == status, await resp.text()
            assert resp.headers["Cache-Control"] == "no-store"
            assert resp.headers["Pragma"] == "no-cache"
            return await resp.json()

    async def introspect(self, token: str, **form: str) -> Any:
        data = {"token": token, "client_id": self.client.id, "client_secret": self.secret, **form}
        async with self.http.post(self.path + "/introspect", data=data) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Cache-Control"] == "no-store"
            return await resp.json()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Iterator[Store]:
    with new_store(clock) as s:
        yield s


async def start(aiohttp_client: AiohttpClient, store: Store, clock: Clock) -> HttpClient:
    app = create_issuer_app(store, public_url=PUBLIC_URL + "/", clock=clock.time)
    return await aiohttp_client(IdentityTestServer(app))


def seed(store: Store, **server: Any) -> tuple[AuthServer, Client, str, Scope]:
    s = store.create_auth_server(
        name=server.pop("name", "Appointments Dev"), audience="http://myhttpbin.dev", **server
    )
    read = store.create_scope(s.id, name="read", include_in_metadata=True)
    store.create_scope(s.id, name="hidden")  # not in the metadata
    store.create_scope(s.id, name="gone", include_in_metadata=True, enabled=False)
    store.create_claim(
        s.id, name="test-claim", value="test", include_in_token=True, include_in_scopes=(read.id,)
    )
    store.create_claim(
        s.id, name="team", value="${ .Client.Labels.team }", include_in_all_scopes=True
    )
    store.create_claim(
        s.id,
        name="off",
        value="x",
        include_in_token=True,
        include_in_all_scopes=True,
        enabled=False,
    )
    client, secret = store.create_client(
        s.id,
        name="Client",
        allow_scopes=(read.id,),
        access_token_duration=3600,
        labels={"team": "payments"},
    )
    return s, client, secret, read


@pytest.fixture
async def issuer(aiohttp_client: AiohttpClient, store: Store, clock: Clock) -> Issuer:
    server, client, secret, read = seed(store)
    http = await start(aiohttp_client, store, clock)
    return Issuer(http, store, clock, server, client, secret, read)


async def get_json(http: HttpClient, path: str, status: int = 200) -> Any:
    async with http.get(path) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/json"
        return await resp.json()


def jwks_key(jwks: dict[str, Any], token: str) -> jwt.PyJWK:
    """The JWKS entry named by the token's kid, as a relying party would pick it."""
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.PyJWKSet.from_dict(jwks)[kid]


def header_of(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return header


# ---- discovery and JWKS --------------------------------------------------------------------------


async def test_discovery_document(issuer: Issuer) -> None:
    doc = await get_json(issuer.http, issuer.path + "/.well-known/openid-configuration")
    url = issuer.url
    assert doc == {
        "issuer": url,
        "jwks_uri": url + "/.well-known/jwks",
        "authorization_endpoint": url + "/authorize",
        "token_endpoint": url + "/oauth/token",
        "introspection_endpoint": url + "/introspect",
        "userinfo_endpoint": url + "/userinfo",
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["read"],
        "claims_supported": [
            *("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"),
            *("test-claim", "team"),
        ],
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_the_authorization_endpoint_refuses_without_redirecting(
    issuer: Issuer, method: str
) -> None:
    """Discovery must name one; this issuer serves machines only: an OAuth error in the answer,
    never a redirect to whatever redirect_uri the request names."""
    doc = await get_json(issuer.http, issuer.path + "/.well-known/openid-configuration")
    query = {
        "response_type": "code",
        "client_id": issuer.client.id,
        "redirect_uri": "https://evil.example/cb",
    }
    endpoint = doc["authorization_endpoint"].removeprefix(issuer.url)
    async with issuer.http.request(
        method, issuer.path + endpoint, params=query, allow_redirects=False
    ) as resp:
        assert resp.status == 400
        assert "Location" not in resp.headers
        assert resp.headers["Cache-Control"] == "no-store"
        assert (await resp.json())["error"] == "unsupported_response_type"
    async with issuer.http.get("/nosuchissuer1234/auth/authorize") as resp:
        assert resp.status == 404


async def test_jwks_serves_public_keys_only_with_a_cache_lifetime(issuer: Issuer) -> None:
    async with issuer.http.get(issuer.path + "/.well-known/jwks") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "max-age=300"
        jwks = await resp.json()
    (key,) = jwks["keys"]
    active = issuer.store.active_key(issuer.server.id)
    assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}
    assert (key["kty"], key["kid"], key["use"], key["alg"]) == ("RSA", active.kid, "sig", "RS256")


async def test_jwks_keeps_a_rotated_key_during_its_grace(issuer: Issuer) -> None:
    old = issuer.store.active_key(issuer.server.id)
    new = issuer.store.rotate_key(issuer.server.id)
    jwks = await get_json(issuer.http, issuer.path + "/.well-known/jwks")
    assert [k["kid"] for k in jwks["keys"]] == [new.kid, old.kid]


# ---- tokens verified as a relying party would ----------------------------------------------------


async def test_token_from_the_guides_curl_verifies_against_the_published_keys(
    issuer: Issuer,
) -> None:
    doc = await get_json(issuer.http, issuer.path + "/.well-known/openid-configuration")
    jwks = await get_json(issuer.http, doc["jwks_uri"].removeprefix(PUBLIC_URL))
    body = await issuer.token(scope="read")  # curl -d grant_type=... -d client_id=... -d scope=...
    token = body["access_token"]
    assert body == {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": "read",
    }
    key = jwks_key(jwks, token)
    assert list(header_of(token).items()) == [("typ", "JWT"), ("alg", "RS256"), ("kid", key.key_id)]
    claims = jwt.decode(
        token,
        key,
        algorithms=[key.algorithm_name],
        audience="http://myhttpbin.dev",
        issuer=doc["issuer"],
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    iat = int(issuer.clock.time())
    assert claims == {
        "iss": issuer.url,
        "sub": issuer.client.id,
        "aud": ["http://myhttpbin.dev"],
        "exp": iat + 3600,
        "iat": iat,
        "nbf": iat,
        "jti": claims["jti"],
        "client_id": issuer.client.id,
        "scope": "read",
        "test-claim": "test",
    }  # "team" is include_in_token false: /userinfo only; "off" is disabled


async def test_token_without_scopes_has_no_scope(issuer: Issuer) -> None:
    body = await issuer.token()
    assert "scope" not in body
    assert "scope" not in jwt.decode(body["access_token"], options={"verify_signature": False})


async def test_client_secret_basic(issuer: Issuer) -> None:
    headers = {"Authorization": basic(issuer.client.id, issuer.secret)}
    data = {"grant_type": "client_credentials", "scope": "read"}
    async with issuer.http.post(issuer.path + "/oauth/token", data=data, headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["scope"] == "read"


@pytest.mark.parametrize("algorithm", ["PS256", "RS512"])
async def test_signing_algorithm(
    aiohttp_client: AiohttpClient, store: Store, clock: Clock, algorithm: str
) -> None:
    server, client, secret, read = seed(store, signing_algorithm=algorithm)
    issuer = Issuer(
        await start(aiohttp_client, store, clock), store, clock, server, client, secret, read
    )
    doc = await get_json(issuer.http, issuer.path + "/.well-known/openid-configuration")
    # OIDC Discovery §3: RS256 is always listed
    assert doc["id_token_signing_alg_values_supported"] == ["RS256", algorithm]
    jwks = await get_json(issuer.http, issuer.path + "/.well-known/jwks")
    assert jwks["keys"][0]["alg"] == algorithm
    token = (await issuer.token())["access_token"]
    assert header_of(token)["alg"] == algorithm
    key = jwks_key(jwks, token)
    claims = jwt.decode(
        token,
        key,
        algorithms=[algorithm],
        audience="http://myhttpbin.dev",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["sub"] == client.id
    with pytest.raises(jwt.InvalidAlgorithmError):  # the key is bound to its algorithm
        jwt.decode(token, key, algorithms=["RS256" if algorithm != "RS256" else "PS256"])


async def test_access_token_duration(issuer: Issuer) -> None:
    issuer.store.update_client(issuer.server.id, issuer.client.id, access_token_duration=60)
    body = await issuer.token()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert body["expires_in"] == 60
    assert claims["exp"] - claims["iat"] == 60


# ---- RFC 6749 §5.2 errors on the wire ------------------------------------------------------------


async def oauth_error(
    issuer: Issuer,
    status: int,
    error: str,
    *,
    data: Any,
    headers: dict[str, str] | None = None,
) -> None:
    async with issuer.http.post(issuer.path + "/oauth/token", data=data, headers=headers) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/json"
        body = await resp.json()
        assert set(body) == {"error", "error_description"}
        assert body["error"] == error
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["Pragma"] == "no-cache"
        # RFC 9110 §15.5.2: every 401 names the scheme the endpoint takes; nothing else does.
        expected = f'Basic realm="{issuer.url}"' if status == 401 else None
        assert resp.headers.get("WWW-Authenticate") == expected


async def test_invalid_request(issuer: Issuer) -> None:
    creds = {"client_id": issuer.client.id, "client_secret": issuer.secret}
    await oauth_error(issuer, 400, "invalid_request", data=creds)  # no grant_type
    repeated = [
        ("grant_type", "client_credentials"),
        ("scope", "read"),
        ("scope", "read"),
        *creds.items(),
    ]
    await oauth_error(issuer, 400, "invalid_request", data=repeated)  # RFC 6749 §3.2
    as_json = json.dumps({"grant_type": "client_credentials", **creds})
    await oauth_error(
        issuer, 400, "invalid_request", data=as_json, headers={"Content-Type": "application/json"}
    )
    both = {"Authorization": basic(issuer.client.id, issuer.secret)}
    await oauth_error(
        issuer,
        400,
        "invalid_request",
        data={"grant_type": "client_credentials", **creds},
        headers=both,
    )


async def test_parameters_without_a_value_are_as_if_omitted(issuer: Issuer) -> None:
    """RFC 6749 §3.1: libraries send `client_secret=` for an empty secret, or a blank scope."""
    auth = {"Authorization": basic(issuer.client.id, issuer.secret)}
    for blank in ("client_secret=", "client_id=", "scope=", "client_secret&scope"):
        data = f"grant_type=client_credentials&{blank}"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        async with issuer.http.post(
            issuer.path + "/oauth/token", data=data, headers={**auth, **form}
        ) as resp:
            assert resp.status == 200, (blank, await resp.text())
    # a blank one beside a real one is still a repeat (§3.2: at most once)
    data = f"grant_type=client_credentials&client_id=&client_id={issuer.client.id}"
    data += f"&client_secret={issuer.secret}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with issuer.http.post(issuer.path + "/oauth/token", data=data, headers=form) as resp:
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"] == "invalid_request"


async def test_two_authorization_headers_are_invalid_request(issuer: Issuer) -> None:
    auth = basic(issuer.client.id, issuer.secret)
    async with issuer.http.post(
        issuer.path + "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=[("Authorization", auth), ("Authorization", auth)],
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"


async def test_invalid_client(issuer: Issuer) -> None:
    wrong = {
        "grant_type": "client_credentials",
        "client_id": issuer.client.id,
        "client_secret": "nope",
    }
    await oauth_error(issuer, 401, "invalid_client", data=wrong)
    await oauth_error(issuer, 401, "invalid_client", data={"grant_type": "client_credentials"})
    headers = {"Authorization": basic(issuer.client.id, "nope")}
    data = {"grant_type": "client_credentials"}
    await oauth_error(issuer, 401, "invalid_client", data=data, headers=headers)
    headers = {"Authorization": "Basic %%%"}
    await oauth_error(issuer, 401, "invalid_client", data=data, headers=headers)
    headers = {"Authorization": "Bearer abc"}  # a scheme the endpoint does not take: none
    await oauth_error(issuer, 401, "invalid_client", data=data, headers=headers)


async def test_client_ids_no_client_can_have_are_refused_and_not_remembered(issuer: Issuer) -> None:
    """A client id outside the spec's ClientId shape (1-36 of [-_A-Za-z0-9]) is invalid_client
    before any lookup, and the ids a client makes up cannot grow the server's memory."""
    for client_id in ("x" * 37, "a b", "a/b", "x" * 200_000):
        data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"}
        await oauth_error(issuer, 401, "invalid_client", data=data)
    for n in range(MEMO_MAX_ENTRIES + 50):
        issuer.store.check_client_secret(issuer.server.id, f"made-up-{n}", "x")
    assert len(issuer.store._memo) <= MEMO_MAX_ENTRIES
    assert (await issuer.token())["token_type"] == "Bearer"  # the real client still is served


async def test_unsupported_grant_type(issuer: Issuer) -> None:
    data = {"grant_type": "password", "username": "u", "password": "p"}
    await oauth_error(issuer, 400, "unsupported_grant_type", data=data)


async def test_unauthorized_client(issuer: Issuer) -> None:
    issuer.store.update_client(issuer.server.id, issuer.client.id, grant_types=("implicit",))
    data = {
        "grant_type": "client_credentials",
        "client_id": issuer.client.id,
        "client_secret": issuer.secret,
    }
    await oauth_error(issuer, 400, "unauthorized_client", data=data)


async def test_invalid_scope(issuer: Issuer) -> None:
    for scope in ("hidden", "gone", "nope"):
        data = {
            "grant_type": "client_credentials",
            "client_id": issuer.client.id,
            "client_secret": issuer.secret,
            "scope": scope,
        }
        await oauth_error(issuer, 400, "invalid_scope", data=data)


async def test_invalid_grant_renders_like_the_others() -> None:
    response = oauth_error_response(InvalidGrant("no"))
    assert response.status == 400
    assert json.loads(response.text or "") == {"error": "invalid_grant", "error_description": "no"}
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("${ div 1 (atoi .Client.Labels.n) }", "claim 'c' ("),  # n is "0": no render
        # nobody would accept such a token back (introspection here, the gateway)
        ('${ repeat 8192 "a" }', f"more than the {MAX_TOKEN_LENGTH} verifiers accept"),
    ],
    ids=["does-not-render", "token-too-long"],
)
async def test_server_error_when_a_claim_cannot_be_used(
    value: str, logged: str, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim the issuer cannot put in a token is its configuration's fault: server_error, no
    token issued or recorded, and the log says why."""
    issuer.store.update_client(issuer.server.id, issuer.client.id, labels={"n": "0"})
    issuer.store.create_claim(
        issuer.server.id, name="c", value=value, include_in_token=True, include_in_all_scopes=True
    )
    data = {
        "grant_type": "client_credentials",
        "client_id": issuer.client.id,
        "client_secret": issuer.secret,
    }
    await oauth_error(issuer, 500, "server_error", data=data)
    # the log names the client and the auth server whose configuration is at fault
    prefix = f"cannot mint a token for client {issuer.client.id} of {issuer.server.id}: "
    assert any(
        r.getMessage().startswith(prefix) and logged in r.getMessage() for r in caplog.records
    )
    assert issuer.store.list_tokens(issuer.server.id, issuer.client.id) == []


async def test_a_token_the_store_cannot_record_is_server_error_json_and_says_why(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk (or a lock another process held past busy_timeout) when the token is
    recorded: RFC 6749's server_error, no token issued, the reason logged; not a text 500 with
    a traceback. Once there is room again, tokens are issued."""
    data = {
        "grant_type": "client_credentials",
        "client_id": issuer.client.id,
        "client_secret": issuer.secret,
    }
    db = issuer.store._db  # a full disk cannot be had otherwise
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    recorded = len(issuer.store.list_tokens(issuer.server.id, issuer.client.id))
    for _ in range(200):  # each token takes a row: the pages left fill up within these
        async with issuer.http.post(issuer.path + "/oauth/token", data=data) as resp:
            if resp.status != 200:
                break
            recorded += 1
    await oauth_error(issuer, 500, "server_error", data=data)
    prefix = f"cannot record a token for client {issuer.client.id} of {issuer.server.id}: "
    assert any(r.getMessage() == prefix + "database or disk is full" for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records)
    assert len(issuer.store.list_tokens(issuer.server.id, issuer.client.id)) == recorded
    db.execute("PRAGMA max_page_count = 1000000")
    assert "access_token" in await issuer.token()


async def test_token_endpoint_is_post_only(issuer: Issuer) -> None:
    async with issuer.http.get(issuer.path + "/oauth/token") as resp:
        assert resp.status == 405


@pytest.mark.parametrize(
    "path",
    [
        "{issuer}/oauth/token",  # the shortcut
        "{issuer}/oauth/token?x=1",  # a query string: through the router
        "{escaped}/oauth/token",  # a percent-encoded issuer id: the router decodes it
    ],
)
async def test_token_answers_alike_on_every_path_to_the_endpoint(issuer: Issuer, path: str) -> None:
    first = issuer.path[1]
    escaped = f"/%{ord(first):02X}{issuer.path[2:]}"
    target = path.format(issuer=issuer.path, escaped=escaped)
    data = {
        "grant_type": "client_credentials",
        "client_id": issuer.client.id,
        "client_secret": issuer.secret,
        "scope": "read",
    }
    url = issuer.http.make_url("/").with_path(target.split("?")[0], encoded=True)
    if "?" in target:
        url = url.with_query(target.split("?")[1])
    async with issuer.http.session.post(url, data=data) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        assert resp.headers["Cache-Control"] == "no-store"
        assert int(resp.headers["Content-Length"]) == len(await resp.read())
        body = await resp.json()
    assert body["scope"] == "read"
    assert jwt.decode(body["access_token"], options={"verify_signature": False})["iss"] == (
        issuer.url
    )


@pytest.mark.parametrize(
    ("version", "connection", "kept_open"),
    [("HTTP/1.1", None, True), ("HTTP/1.1", "close", False), ("HTTP/1.0", None, False)],
)
async def test_token_response_framing_follows_the_client(
    issuer: Issuer, version: str, connection: str | None, kept_open: bool
) -> None:
    """Raw bytes on the wire: the answer's version, length and keep-alive follow the request."""
    form = (
        f"grant_type=client_credentials&client_id={issuer.client.id}&client_secret={issuer.secret}"
    ).encode()
    head = (
        f"POST {issuer.path}/oauth/token {version}\r\nHost: x\r\n"
        f"Content-Type: {FORM_TYPE}\r\nContent-Length: {len(form)}\r\n"
        + (f"Connection: {connection}\r\n" if connection else "")
        + "\r\n"
    )
    server = issuer.http.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        for _ in range(2 if kept_open else 1):
            writer.write(head.encode() + form)
            status_line = await reader.readuntil(b"\r\n")
            assert status_line.startswith(version.encode() + b" 200 ")
            headers = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            length = int(headers.split("content-length: ")[1].split("\r\n")[0])
            body = json.loads(await reader.readexactly(length))
            assert body["token_type"] == "Bearer"
            assert ("connection: close" in headers) is (connection == "close")
        if not kept_open:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed it
    finally:
        writer.close()


@pytest.mark.parametrize(("expect", "interim"), [("100-continue", b"100"), ("something", b"417")])
async def test_expect_is_answered_before_the_body(
    issuer: Issuer, expect: str, interim: bytes
) -> None:
    """`Expect: 100-continue` gets its 100 Continue before the client sends the form (curl would
    otherwise wait a second); an unknown expectation is 417 (RFC 9110 §10.1.1)."""
    form = (
        f"grant_type=client_credentials&client_id={issuer.client.id}&client_secret={issuer.secret}"
    ).encode()
    head = (
        f"POST {issuer.path}/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n"
        f"Content-Length: {len(form)}\r\nExpect: {expect}\r\n\r\n"
    )
    server = issuer.http.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head.encode())
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 2)  # no body sent yet
        assert status_line.split(b" ")[1] == interim
        if interim == b"100":
            while await reader.readuntil(b"\r\n") != b"\r\n":  # the interim head's end
                pass
            writer.write(form)
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/introspect"])
async def test_a_client_leaving_mid_form_is_not_a_server_error(
    issuer: Issuer, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_issuer_app(issuer.store, public_url=PUBLIC_URL + "/", clock=issuer.clock.time)
    async with served(app, IdentityRunner) as url, aiohttp.ClientSession() as session:
        await leave_mid_body(url, issuer.path + endpoint, FORM_TYPE)
        assert server_errors(caplog) == []
        form = {
            "grant_type": "client_credentials",
            "client_id": issuer.client.id,
            "client_secret": issuer.secret,
        }
        async with session.post(url + issuer.path + "/oauth/token", data=form) as resp:
            assert resp.status == 200  # and the next client is served


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize("endpoint", ["/oauth/token", "/introspect"])
async def test_a_body_that_is_not_what_its_content_encoding_says_is_invalid_request(
    issuer: Issuer, endpoint: str, coding: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A form labelled `Content-Encoding: gzip` that is not gzip (aiohttp's RequestPayloadError,
    as for a malformed chunk): the client's invalid_request (RFC 6749 §5.2), not a 500 with a
    traceback; and the connection closes, as the broken body cannot be told from what follows."""
    form = (
        f"grant_type=client_credentials&client_id={issuer.client.id}"
        f"&client_secret={issuer.secret}&token=x"
    ).encode()
    request = (
        f"POST {issuer.path}{endpoint} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n"
        f"Content-Encoding: {coding}\r\nContent-Length: {len(form)}\r\n\r\n"
    ).encode() + form
    app = create_issuer_app(issuer.store, public_url=PUBLIC_URL + "/", clock=issuer.clock.time)
    async with served(app, IdentityRunner) as url:
        head, body = await answer_to(url, request)
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"\r\nConnection: close\r\n" in head
    assert b"\r\nServer: tokengate\r\n" in head
    assert json.loads(body)["error"] == "invalid_request"
    assert server_errors(caplog) == []


@pytest.mark.parametrize(
    ("endpoint", "status"),
    [("/userinfo", b"401"), ("/authorize", b"400"), ("/.well-known/jwks", b"405")],
)
async def test_a_broken_body_that_no_handler_reads_logs_no_traceback(
    issuer: Issuer, endpoint: str, status: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """/userinfo and /authorize take no form, nor does the router's 405: one labelled gzip that
    is not keeps its answer, but the connection closes and aiohttp's lingering close does not
    read the body (its error would be logged as an unhandled exception, a traceback each time)."""
    junk = b"not gzip at all"
    request = (
        f"POST {issuer.path}{endpoint} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n"
        f"Content-Encoding: gzip\r\nContent-Length: {len(junk)}\r\n\r\n"
    ).encode() + junk
    app = create_issuer_app(issuer.store, public_url=PUBLIC_URL + "/", clock=issuer.clock.time)
    async with served(app, IdentityRunner) as url:
        head, _ = await answer_to(url, request)
    assert head.startswith(b"HTTP/1.1 " + status + b" "), head
    assert b"\r\nConnection: close\r\n" in head
    assert server_errors(caplog) == []


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/introspect"])
async def test_a_form_that_stalls_is_cut_off_with_a_408(
    issuer: Issuer, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that sends part of its form and stops would hold its connection for ever, and
    once the connection cap is reached keep every new client out: nginx's client_body_timeout,
    a 408 that closes the connection."""
    request = (
        f"POST {issuer.path}{endpoint} HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM_TYPE}\r\n"
        "Content-Length: 100\r\n\r\ngrant_type="
    ).encode()
    app = create_issuer_app(
        issuer.store, public_url=PUBLIC_URL + "/", clock=issuer.clock.time, body_timeout=0.1
    )
    async with served(app, IdentityRunner) as url:
        head, body = await answer_to(url, request)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"\r\nConnection: close\r\n" in head
    assert json.loads(body)["error"] == "invalid_request"
    assert server_errors(caplog) == []


async def test_a_form_that_cannot_be_decoded_is_invalid_request(issuer: Issuer) -> None:
    creds = f"client_id={issuer.client.id}&client_secret={issuer.secret}"
    for body, content_type in [
        (b"grant_type=client_credentials&scope=%ff&" + creds.encode(), FORM_TYPE),
        (b"grant_type=\xff&" + creds.encode(), FORM_TYPE),
        (b"grant_type=client_credentials&" + creds.encode(), FORM_TYPE + "; charset=no-such"),
        (b"&".join([b"a%d=1" % n for n in range(100)]), FORM_TYPE),
        # a codec of the client's choosing could turn "%5Cud800" into a lone surrogate
        (
            b"grant_type=client_credentials&client_id=%5Cud800&client_secret=x",
            FORM_TYPE + "; charset=unicode_escape",
        ),
        (b"grant_type=client_credentials&" + creds.encode(), FORM_TYPE + "; charset=latin-1"),
    ]:
        await oauth_error(
            issuer, 400, "invalid_request", data=body, headers={"Content-Type": content_type}
        )


# ---- introspection (RFC 7662) --------------------------------------------------------------------


async def test_introspection_of_an_active_token(issuer: Issuer) -> None:
    token = (await issuer.token(scope="read"))["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert await issuer.introspect(token) == {
        "active": True,
        "iss": issuer.url,
        "sub": issuer.client.id,
        "aud": ["http://myhttpbin.dev"],
        "exp": claims["exp"],
        "iat": claims["iat"],
        "nbf": claims["nbf"],
        "jti": claims["jti"],
        "client_id": issuer.client.id,
        "scope": "read",
        "token_type": "Bearer",
    }


async def test_introspection_with_basic_auth_and_a_hint(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    headers = {"Authorization": basic(issuer.client.id, issuer.secret)}
    data = {"token": token, "token_type_hint": "access_token"}
    async with issuer.http.post(issuer.path + "/introspect", data=data, headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["active"] is True


async def test_any_client_of_the_server_may_introspect(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    _, secret = issuer.store.create_client(issuer.server.id, name="resource-server", id="rs")
    data = {"token": token, "client_id": "rs", "client_secret": secret}
    async with issuer.http.post(issuer.path + "/introspect", data=data) as resp:
        assert (await resp.json())["active"] is True


async def test_a_revoked_token_is_inactive(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    issuer.store.revoke_token(issuer.server.id, issuer.client.id, jti)
    assert await issuer.introspect(token) == {"active": False}


async def test_an_expired_token_is_inactive(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    issuer.clock.advance(seconds=3599)
    assert (await issuer.introspect(token))["active"] is True
    issuer.clock.advance(seconds=1)
    assert await issuer.introspect(token) == {"active": False}


async def test_another_servers_token_is_inactive(
    issuer: Issuer, aiohttp_client: AiohttpClient
) -> None:
    server, client, secret, _ = seed(issuer.store, name="Other")
    other = Issuer(issuer.http, issuer.store, issuer.clock, server, client, secret, issuer.read)
    foreign = (await other.token())["access_token"]
    assert (await other.introspect(foreign))["active"] is True
    assert await issuer.introspect(foreign) == {"active": False}


async def test_a_token_from_a_rotated_key_stays_active_during_the_grace(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    issuer.store.rotate_key(issuer.server.id)
    assert (await issuer.introspect(token))["active"] is True


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "x" * 9000,
        # alg "none", kid of nothing we know
        "eyJhbGciOiJub25lIiwia2lkIjoieCJ9.eyJzdWIiOiJ4In0.",
    ],
)
async def test_garbage_is_inactive(issuer: Issuer, token: str) -> None:
    assert await issuer.introspect(token) == {"active": False}


async def test_a_forged_token_with_our_kid_is_inactive(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["scope"] = "admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert await issuer.introspect(f"{header}.{forged_payload}.{signature}") == {"active": False}
    hs256 = jwt.encode(
        claims, "s" * 32, algorithm="HS256", headers={"kid": header_of(token)["kid"]}
    )
    assert await issuer.introspect(hs256) == {"active": False}


async def test_an_auth_server_deleted_while_an_introspection_form_arrives_is_no_server_error(
    issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler has its issuer and awaits the rest of the form when the auth server goes
    (DELETE ?force=true): its client went with it, so the answer is invalid_client, not a 500
    from looking the auth server up again for the CORS headers."""
    looked_up = asyncio.Event()
    lookup = issuer.store.get_auth_server_by_issuer_id

    def spy(issuer_id: str) -> AuthServer:
        looked_up.set()
        return lookup(issuer_id)

    monkeypatch.setattr(issuer.store, "get_auth_server_by_issuer_id", spy)

    async def form() -> AsyncIterator[bytes]:
        yield f"client_id={issuer.client.id}&".encode()
        await looked_up.wait()  # the handler has begun; the rest of its form is still to come
        issuer.store.delete_auth_server(issuer.server.id)
        yield f"client_secret={issuer.secret}&token=x".encode()

    async with issuer.http.post(issuer.path + "/introspect", data=form(), headers=FORM) as resp:
        assert resp.status == 401, await resp.text()
        assert (await resp.json())["error"] == "invalid_client"


async def test_introspection_requires_client_authentication_and_a_token(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    async with issuer.http.post(issuer.path + "/introspect", data={"token": token}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "invalid_client"
    headers = {"Authorization": basic(issuer.client.id, "wrong")}
    async with issuer.http.post(
        issuer.path + "/introspect", data={"token": token}, headers=headers
    ) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == f'Basic realm="{issuer.url}"'
    data = {"client_id": issuer.client.id, "client_secret": issuer.secret}
    async with issuer.http.post(issuer.path + "/introspect", data=data) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"


# ---- userinfo ------------------------------------------------------------------------------------


async def test_userinfo_includes_claims_kept_out_of_the_token(issuer: Issuer) -> None:
    token = (await issuer.token(scope="read"))["access_token"]
    for method in ("GET", "POST"):
        async with issuer.http.request(
            method, issuer.path + "/userinfo", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            assert await resp.json() == {
                "sub": issuer.client.id,
                "test-claim": "test",
                "team": "payments",
            }


async def test_userinfo_follows_the_tokens_scopes(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]  # no scope: "test-claim" (read only) is out
    headers = {"Authorization": f"Bearer {token}"}
    async with issuer.http.get(issuer.path + "/userinfo", headers=headers) as resp:
        assert await resp.json() == {"sub": issuer.client.id, "team": "payments"}


async def test_userinfo_without_a_token_is_a_bare_bearer_challenge(issuer: Issuer) -> None:
    for headers in (
        {},
        {"Authorization": basic(issuer.client.id, issuer.secret)},
        {"Authorization": "Bearer "},
    ):
        async with issuer.http.get(issuer.path + "/userinfo", headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == f'Bearer realm="{issuer.url}"'


async def test_userinfo_with_a_non_ascii_token_is_invalid_token(issuer: Issuer) -> None:
    server = issuer.http.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"GET %b/userinfo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\xff.b.c\r\n"
        b"Connection: close\r\n\r\n" % issuer.path.encode()
    )
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:60]
    assert b'error="invalid_token"' in answer


async def test_userinfo_with_a_bad_or_revoked_token_is_invalid_token(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    issuer.store.revoke_token(issuer.server.id, issuer.client.id, jti)
    for bearer in ("not-a-token", token):
        async with issuer.http.get(
            issuer.path + "/userinfo", headers={"Authorization": f"Bearer {bearer}"}
        ) as resp:
            assert resp.status == 401
            assert (
                resp.headers["WWW-Authenticate"]
                == f'Bearer realm="{issuer.url}", error="invalid_token"'
            )
            assert (await resp.json())["error"] == "invalid_token"


async def test_userinfo_for_a_deleted_client_is_invalid_token(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    issuer.store.delete_client(issuer.server.id, issuer.client.id)
    async with issuer.http.get(
        issuer.path + "/userinfo", headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 401


# ---- unknown issuers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/.well-known/jwks"),
        ("POST", "/oauth/token"),
        ("POST", "/introspect"),
        ("GET", "/userinfo"),
    ],
)
async def test_unknown_issuer_is_a_json_404(issuer: Issuer, method: str, suffix: str) -> None:
    async with issuer.http.request(method, "/zzzzzzzzzzzzzzzz/auth" + suffix, data={}) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"
        assert (await resp.json())["error"] == "not_found"


# ---- CORS: the auth server's trusted_origins ---------------------------------------------------

TRUSTED = "https://app.example.com"


def cors_request(issuer: Issuer, kind: str) -> tuple[str, str, dict[str, Any]]:
    """(method, path, aiohttp request arguments) for one kind of issuer request."""
    form = {"client_id": issuer.client.id, "client_secret": issuer.secret}
    token = {"grant_type": "client_credentials", **form}
    return {
        "discovery": ("GET", "/.well-known/openid-configuration", {}),
        "jwks": ("GET", "/.well-known/jwks", {}),
        "token": ("POST", "/oauth/token", {"data": token}),  # the shortcut's raw answer
        "token error": ("POST", "/oauth/token", {"data": {**token, "client_secret": "no"}}),
        "introspect": ("POST", "/introspect", {"data": {**form, "token": "x"}}),
        "userinfo 401": ("GET", "/userinfo", {}),
    }[kind]


CORS_KINDS = ["discovery", "jwks", "token", "token error", "introspect", "userinfo 401"]


@pytest.mark.parametrize("kind", CORS_KINDS)
@pytest.mark.parametrize(
    ("trusted", "origin", "allowed"),
    [
        (TRUSTED + "/", TRUSTED, True),  # an entry with a path still names its origin
        ("https://APP.example.com:443", TRUSTED, True),  # case and default port aside
        ("http://localhost:3000", "http://localhost:3000", True),
        (TRUSTED, "https://evil.example.com", False),
        (TRUSTED, "http://app.example.com", False),  # another scheme is another origin
        (TRUSTED, None, False),
        ("https://例え.jp", "https://xn--r8jz45g.jp", True),  # browsers send punycode
        ("https://app.example.com:99999", TRUSTED, False),  # no origin at all, not the default
    ],
)
async def test_a_trusted_origin_may_read_every_issuer_answer(
    issuer: Issuer, kind: str, trusted: str, origin: str | None, allowed: bool
) -> None:
    issuer.store.update_auth_server(issuer.server.id, trusted_origins=[trusted])
    method, suffix, arguments = cors_request(issuer, kind)
    headers = {"Origin": origin} if origin else {}
    async with issuer.http.request(
        method, issuer.path + suffix, headers=headers, **arguments
    ) as resp:
        assert resp.status < 500
        assert resp.headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
        assert resp.headers.get("Vary") == "Origin"  # whoever asks: caches must keep them apart


@pytest.mark.parametrize("kind", CORS_KINDS)
async def test_an_auth_server_without_trusted_origins_sends_no_cors_header(
    issuer: Issuer, kind: str
) -> None:
    method, suffix, arguments = cors_request(issuer, kind)
    headers = {"Origin": TRUSTED}
    async with issuer.http.request(
        method, issuer.path + suffix, headers=headers, **arguments
    ) as resp:
        assert resp.status < 500
        assert not [name for name in resp.headers if name.lower().startswith("access-control-")]
        assert "Vary" not in resp.headers


@pytest.mark.parametrize(
    ("suffix", "methods"),
    [
        ("/oauth/token", "POST"),
        ("/.well-known/jwks", "GET"),
        ("/userinfo", "GET, POST"),
    ],
)
async def test_a_preflight_from_a_trusted_origin_is_answered(
    issuer: Issuer, suffix: str, methods: str
) -> None:
    issuer.store.update_auth_server(issuer.server.id, trusted_origins=[TRUSTED])
    asked = {
        "Origin": TRUSTED,
        "Access-Control-Request-Method": methods.split(",")[0],
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with issuer.http.options(issuer.path + suffix, headers=asked) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == TRUSTED
        assert resp.headers["Access-Control-Allow-Methods"] == methods
        assert resp.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
        assert resp.headers["Access-Control-Max-Age"] == "600"
        assert resp.headers["Allow"] == f"{methods}, OPTIONS"
    elsewhere = {**asked, "Origin": "https://evil.example.com"}
    async with issuer.http.options(issuer.path + suffix, headers=elsewhere) as resp:
        assert resp.status == 204  # no CORS header: the browser refuses
        assert not [name for name in resp.headers if name.lower().startswith("access-control-")]
    async with issuer.http.options("/zzzzzzzzzzzzzzzz/auth" + suffix, headers=asked) as resp:
        assert resp.status == 404


async def test_a_preflight_asking_odd_headers_gets_none_of_them(issuer: Issuer) -> None:
    issuer.store.update_auth_server(issuer.server.id, trusted_origins=[TRUSTED])
    asked = {
        "Origin": TRUSTED,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, <script>",
    }
    async with issuer.http.options(issuer.path + "/oauth/token", headers=asked) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == TRUSTED
        assert "Access-Control-Allow-Headers" not in resp.headers


async def test_the_app_exposes_its_api_under_an_app_key(issuer: Issuer) -> None:
    api = issuer.http.app[ISSUER_API]
    assert api.public_url == PUBLIC_URL  # the trailing slash given is dropped


# ---- properties: introspection answers anything with active false, never an error ----------------

_SEGMENTS = st.sampled_from(["", "e30", "eyJ", "W10", "bnVsbA", "eyJhbGciOiJub25lIn0", "!", "=="])


@pytest.fixture
def minted(store: Store, clock: Clock) -> tuple[IssuerApi, IssuerContext, str]:
    server, client, secret, _ = seed(store)
    api = IssuerApi(store, public_url=PUBLIC_URL, clock=clock.time)
    context = IssuerContext(store, server, f"{PUBLIC_URL}/{server.issuer_id}/auth", clock.time)
    form = {"grant_type": "client_credentials", "client_id": client.id, "client_secret": secret}
    return api, context, token_endpoint(context, TokenRequest(form))["access_token"]


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    junk=st.text(max_size=60),
    parts=st.lists(_SEGMENTS | st.sampled_from(["H", "P", "S"]), min_size=1, max_size=4),
)
def test_active_claims_is_none_for_anything_not_minted_here(
    minted: tuple[IssuerApi, IssuerContext, str], junk: str, parts: list[str]
) -> None:
    api, context, real = minted
    h, p, s = real.split(".")
    spliced = ".".join({"H": h, "P": p, "S": s}.get(x, x) for x in parts)
    assert api.active_claims(context, real) is not None
    for token in (junk, spliced, real + junk, spliced + "." + junk):
        if token != real:
            assert api.active_claims(context, token) is None


async def test_the_identity_server_caps_its_connections(issuer: Issuer) -> None:
    """As the gateway: past the cap the oldest idle connection makes room for a new one."""
    app = create_issuer_app(issuer.store, public_url=PUBLIC_URL + "/", clock=issuer.clock.time)
    runner = functools.partial(IdentityRunner, max_connections=2)
    async with served(app, runner) as url:  # type: ignore[arg-type]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        idle = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
        await asyncio.sleep(0.1)
        discovery = url + issuer.path + "/.well-known/openid-configuration"
        async with aiohttp.ClientSession() as session, session.get(discovery) as resp:
            assert resp.status == 200
        async with asyncio.timeout(2):
            assert await idle[0][0].read() == b""  # the oldest was closed for it
        for _, writer in idle:
            writer.close()


async def test_the_identity_runner_takes_aiohttps_runner_options(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    """`tokengate identity` runs it with access_log=None: no aiohttp.access line per request."""
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    app = create_issuer_app(issuer.store, public_url=PUBLIC_URL + "/", clock=issuer.clock.time)
    form = {
        "grant_type": "client_credentials",
        "client_id": issuer.client.id,
        "client_secret": issuer.secret,
    }
    async with served(app, IdentityRunner) as url, aiohttp.ClientSession() as session:
        async with session.post(url + issuer.path + "/oauth/token", data=form) as resp:
            assert resp.status == 200
        discovery = url + issuer.path + "/.well-known/openid-configuration"
        async with session.get(discovery) as resp:
            assert resp.status == 200
    assert [r for r in caplog.records if r.name == "aiohttp.access"] == []


async def test_an_application_with_middlewares_has_the_token_endpoint_routed(
    issuer: Issuer,
) -> None:
    """The token endpoint's shortcut would skip them: with any, every request goes through."""
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        seen.append(f"{request.method} {request.path}")
        return await handler(request)

    app = create_issuer_app(issuer.store, public_url=PUBLIC_URL + "/", clock=issuer.clock.time)
    app.middlewares.append(record)
    form = {
        "grant_type": "client_credentials",
        "client_id": issuer.client.id,
        "client_secret": issuer.secret,
    }
    async with served(app, IdentityRunner) as url, aiohttp.ClientSession() as session:
        for asked, status in ((form, 200), ({**form, "client_secret": "wrong"}, 401)):
            async with session.post(url + issuer.path + "/oauth/token", data=asked) as resp:
                assert resp.status == status
    assert seen == [f"POST {issuer.path}/oauth/token"] * 2


async def test_every_answer_names_tokengate_as_its_server(issuer: Issuer) -> None:
    """Never aiohttp's Python/aiohttp banner: the token endpoint's own path (success, OAuth
    error, unknown issuer), the routed endpoints, errors, and the admin API."""
    app = create_identity_app(issuer.store, admin_token="t", public_url=PUBLIC_URL)
    form = {
        "grant_type": "client_credentials",
        "client_id": issuer.client.id,
        "client_secret": issuer.secret,
    }
    async with served(app, IdentityRunner) as url, aiohttp.ClientSession() as session:
        asks = [
            session.post(url + issuer.path + "/oauth/token", data=form),
            session.post(url + issuer.path + "/oauth/token", data={**form, "client_secret": "x"}),
            session.post(url + "/nosuchissuer1234/auth/oauth/token", data=form),
            session.get(url + issuer.path + "/.well-known/openid-configuration"),
            session.get(url + "/no/such/path"),
            session.get(url + "/v1/auth-servers"),  # no admin token: 401
            session.get(url + "/healthz"),
        ]
        statuses = []
        for ask in asks:
            async with ask as resp:
                statuses.append(resp.status)
                assert resp.headers.getall("Server") == ["tokengate"], resp.url
    assert statuses == [200, 401, 404, 200, 404, 401, 200]


# ---- pinned after a mutation run: bodies and edges of the issuer's endpoints -------------------


@pytest.mark.parametrize(
    ("method", "path", "form", "headers", "status", "body"),
    [
        (
            "GET",
            "/nope/auth/.well-known/jwks",
            None,
            {},
            404,
            {"error": "not_found", "error_description": "no such issuer"},
        ),
        (
            "GET",
            "{issuer}/authorize",
            None,
            {},
            400,
            {
                "error": "unsupported_response_type",
                "error_description": "this issuer grants client_credentials at its token endpoint"
                " only",
            },
        ),
        (
            "POST",
            "{issuer}/introspect",
            "credentials",
            {},
            400,
            {"error": "invalid_request", "error_description": "token is required"},
        ),
        ("GET", "{issuer}/userinfo", None, {}, 401, {"message": "Unauthorized"}),
        (
            "GET",
            "{issuer}/userinfo",
            None,
            {"Authorization": "Bearer not-a-token"},
            401,
            {"error": "invalid_token", "error_description": "the access token is not active"},
        ),
    ],
    ids=["unknown-issuer", "authorize", "introspect-no-token", "userinfo-bare", "userinfo-dead"],
)
async def test_each_refusal_body(
    issuer: Issuer,
    method: str,
    path: str,
    form: str | None,
    headers: dict[str, str],
    status: int,
    body: dict[str, str],
) -> None:
    """What a client reads of each refusal, word for word."""
    data = {"client_id": issuer.client.id, "client_secret": issuer.secret} if form else None
    url = path.format(issuer=issuer.path)
    async with issuer.http.request(method, url, data=data, headers=headers) as resp:
        assert resp.status == status
        assert await resp.json() == body


# /userinfo with two Authorization headers is a 400 invalid_request,
# even when the first one carries a valid token
async def test_userinfo_with_two_authorization_headers_is_invalid_request(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    headers = CIMultiDict([("Authorization", f"Bearer {token}"), ("Authorization", "Bearer x")])
    async with issuer.http.get(issuer.path + "/userinfo", headers=headers) as resp:
        assert resp.status == 400
        assert resp.headers["WWW-Authenticate"] == (
            f'Bearer realm="{issuer.url}", error="invalid_request"'
        )
        assert await resp.json() == {
            "error": "invalid_request",
            "error_description": "more than one Authorization header",
        }


# /userinfo of a token with several scopes includes every scope's claims
async def test_userinfo_of_a_token_with_two_scopes(issuer: Issuer) -> None:
    sid = issuer.server.id
    write = issuer.store.create_scope(sid, name="write")
    issuer.store.update_client(sid, issuer.client.id, allow_scopes=(issuer.read.id, write.id))
    issuer.store.create_claim(
        sid, name="w", value="yes", include_in_token=False, include_in_scopes=(write.id,)
    )
    token = (await issuer.token(scope="read write"))["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    async with issuer.http.get(issuer.path + "/userinfo", headers=headers) as resp:
        body = await resp.json()
    assert body["w"] == "yes"
    assert body["test-claim"] == "test"  # the read scope's claim


# A /userinfo-only claim that cannot render: 500 server_error JSON
async def test_userinfo_with_a_claim_that_cannot_render_is_server_error_json(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.store.create_claim(
        issuer.server.id,
        name="bad",
        value="${ div 1 0 }",
        include_in_token=False,
        include_in_all_scopes=True,
    )
    token = (await issuer.token())["access_token"]  # not in the token: minting succeeds
    headers = {"Authorization": f"Bearer {token}"}
    async with issuer.http.get(issuer.path + "/userinfo", headers=headers) as resp:
        assert resp.status == 500
        assert resp.headers["Cache-Control"] == "no-store"
        assert await resp.json() == {
            "error": "server_error",
            "error_description": "a claim could not be rendered",
        }
    # the log names the client and the claim at fault
    prefix = f"userinfo for client {issuer.client.id}: "
    assert any(
        r.getMessage().startswith(prefix) and "'bad'" in r.getMessage() for r in caplog.records
    )


# Nbf and iat are judged by the issuer's clock, never the system's
async def test_introspection_uses_the_issuer_clock_for_nbf_and_iat(issuer: Issuer) -> None:
    issuer.clock.advance(days=365 * 100)  # far ahead of the machine's clock
    token = (await issuer.token())["access_token"]
    assert (await issuer.introspect(token))["active"] is True


# A valid form sent under another content type gets no token
async def test_a_form_body_under_another_content_type_is_refused(issuer: Issuer) -> None:
    body = (
        f"grant_type=client_credentials&client_id={issuer.client.id}&client_secret={issuer.secret}"
    )
    headers = {"Content-Type": "text/plain"}
    async with issuer.http.post(issuer.path + "/oauth/token", data=body, headers=headers) as resp:
        assert resp.status == 400
        assert await resp.json() == {
            "error": "invalid_request",
            "error_description": "the request body must be application/x-www-form-urlencoded",
        }


# At most 64 form fields
async def test_a_form_of_more_than_64_fields_is_malformed(issuer: Issuer) -> None:
    extra = {f"x{i}": "1" for i in range(61)}  # + 3 = 64 fields: still a token
    await issuer.token(**extra)
    extra["x61"] = "1"  # 65
    body = await issuer.token(400, **extra)
    assert body == {"error": "invalid_request", "error_description": "malformed form body"}


# An HTTP/1.0 client gets the token as JSON too
async def test_a_token_for_an_http_1_0_client_is_json(issuer: Issuer) -> None:
    server = issuer.http.server
    form = (
        f"grant_type=client_credentials&client_id={issuer.client.id}&client_secret={issuer.secret}"
    ).encode()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"POST %b/oauth/token HTTP/1.0\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%b"
        % (issuer.path.encode(), len(form), form)
    )
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.0 200") or head.startswith(b"http/1.1 200"), head
    assert b"\r\ncontent-type: application/json" in head, head
    # RFC 6749 §5.1: never cached, whatever the HTTP version
    assert b"\r\ncache-control: no-store\r\n" in head, head
    assert b"\r\npragma: no-cache\r\n" in head, head


# Two Authorization headers at the token endpoint
async def test_two_authorization_headers_at_the_token_endpoint_are_described(
    issuer: Issuer,
) -> None:
    headers = CIMultiDict([("Authorization", "Basic eDp5"), ("Authorization", "Basic eDp5")])
    async with issuer.http.post(
        issuer.path + "/oauth/token", data={"grant_type": "client_credentials"}, headers=headers
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error_description"] == "more than one Authorization header"


# RFC 6750 §2.1 / RFC 9110 §11.4: one or more spaces between "Bearer" and the token
async def test_userinfo_takes_a_bearer_token_after_several_spaces(issuer: Issuer) -> None:
    token = (await issuer.token())["access_token"]
    headers = {"Authorization": f"Bearer   {token}"}
    async with issuer.http.get(issuer.path + "/userinfo", headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["sub"] == issuer.client.id


# Userinfo renders its claims at the issuer's clock, when it is asked
async def test_userinfo_renders_time_claims_at_the_issuers_clock(issuer: Issuer) -> None:
    issuer.store.create_claim(
        issuer.server.id,
        name="asked_at",
        value="${ now | unixEpoch }",
        include_in_token=False,
        include_in_all_scopes=True,
    )
    token = (await issuer.token())["access_token"]
    issuer.clock.advance(seconds=90)
    headers = {"Authorization": f"Bearer {token}"}
    async with issuer.http.get(issuer.path + "/userinfo", headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["asked_at"] == int(issuer.clock.time())


# Origins as browsers send them for trusted_origins written with http's default port or an IPv6
# literal (RFC 6454 §6.2: the port only when it is not the scheme's default; the host bracketed)
@pytest.mark.parametrize(
    ("trusted", "origin"),
    [
        ("http://app.example.com:80/callback", "http://app.example.com"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("https://[2001:DB8::1]", "https://[2001:db8::1]"),
    ],
)
async def test_trusted_origins_match_what_browsers_send(
    issuer: Issuer, trusted: str, origin: str
) -> None:
    issuer.store.update_auth_server(issuer.server.id, trusted_origins=[trusted])
    headers = {"Origin": origin}
    async with issuer.http.get(issuer.path + "/.well-known/jwks", headers=headers) as resp:
        assert resp.headers.get("Access-Control-Allow-Origin") == origin


def test_a_token_is_active_only_at_the_issuer_it_names(
    minted: tuple[IssuerApi, IssuerContext, str],
) -> None:
    api, context, token = minted
    assert api.active_claims(context, token) is not None
    elsewhere = IssuerContext(
        context.store, context.server, "http://elsewhere.test/x/auth", context.clock
    )
    assert api.active_claims(elsewhere, token) is None


def _other_clients_jti(context: IssuerContext) -> str:
    other, secret = context.store.create_client(context.server.id, name="Other")
    form = {"grant_type": "client_credentials", "client_id": other.id, "client_secret": secret}
    access_token = token_endpoint(context, TokenRequest(form))["access_token"]
    return str(jwt.decode(access_token, options={"verify_signature": False})["jti"])


# Tokens signed with this auth server's own key (as only its private key can) but not as it mints
# them: inactive, never an error
@pytest.mark.parametrize(
    "change",
    [
        lambda claims, context: claims.pop("exp"),
        lambda claims, context: claims.update(exp=str(claims["exp"])),
        lambda claims, context: claims.update(nbf=str(claims["nbf"])),
        lambda claims, context: claims.update(jti=7),
        lambda claims, context: claims.update(jti=_other_clients_jti(context)),
    ],
    ids=["no-exp", "string-exp", "string-nbf", "number-jti", "another-clients-jti"],
)
def test_a_token_signed_here_but_not_as_minted_is_inactive(
    minted: tuple[IssuerApi, IssuerContext, str], change: Any
) -> None:
    api, context, token = minted
    claims = jwt.decode(token, options={"verify_signature": False})
    change(claims, context)
    signer = signing.signer_for(context.store.active_key(context.server.id))
    forged = jwt.encode(
        claims, signer.private_key, algorithm=signer.algorithm, headers={"kid": signer.kid}
    )
    assert api.active_claims(context, forged) is None


# What a client reads of a form refused before anything else (error_description)
@pytest.mark.parametrize(
    ("body", "charset", "description"),
    [
        (
            b"grant_type=client_credentials",
            "latin-1",
            "the form's charset must be UTF-8, not 'latin-1'",
        ),
        (
            b"grant_type=client_credentials",
            "x" * 40,
            f"the form's charset must be UTF-8, not {'x' * 32!r}",
        ),
        (b"scope=a&grant_type=client_credentials&scope=b", None, "parameter 'scope' is repeated"),
        (b"k" * 100 + b"=1&" + b"k" * 100 + b"=2", None, f"parameter {'k' * 64!r} is repeated"),
    ],
    ids=["latin-1", "long-charset", "repeated", "long-repeated"],
)
async def test_a_refused_form_is_described(
    issuer: Issuer, body: bytes, charset: str | None, description: str
) -> None:
    content_type = FORM_TYPE + (f"; charset={charset}" if charset else "")
    async with issuer.http.post(
        issuer.path + "/oauth/token", data=body, headers={"Content-Type": content_type}
    ) as resp:
        assert resp.status == 400
        assert await resp.json() == {"error": "invalid_request", "error_description": description}


# A form ending in a line break (curl --data-binary @file) is read without it
async def test_a_form_ending_in_a_newline_gets_a_token(issuer: Issuer) -> None:
    body = (
        f"grant_type=client_credentials&client_id={issuer.client.id}"
        f"&client_secret={issuer.secret}\r\n"
    ).encode()
    async with issuer.http.post(
        issuer.path + "/oauth/token", data=body, headers={"Content-Type": FORM_TYPE}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["token_type"] == "Bearer"


# The public URL is used as given, less any trailing slash (whatever character precedes it)
@pytest.mark.parametrize(
    "public_url",
    ["http://sandbox/tenant-X", "http://sandbox/tenant-X/", "http://sandbox/tenant-X//"],
)
async def test_the_issuer_is_the_public_url_without_trailing_slashes(
    aiohttp_client: AiohttpClient, store: Store, clock: Clock, public_url: str
) -> None:
    server, *_ = seed(store)
    app = create_issuer_app(store, public_url=public_url, clock=clock.time)
    http = await aiohttp_client(IdentityTestServer(app))
    doc = await get_json(http, f"/{server.issuer_id}/auth/.well-known/openid-configuration")
    assert doc["issuer"] == f"http://sandbox/tenant-X/{server.issuer_id}/auth"


# RFC 6749 Appendix B: names and values are UTF-8, then percent-encoded, whatever octets carry
# the body. A body declared charset=us-ascii is all ASCII, and its percent-escapes are still UTF-8:
# a client whose secret is not ASCII gets its token, as it does with charset=utf-8.
async def test_a_us_ascii_form_percent_decodes_as_utf_8(aiohttp_client: AiohttpClient) -> None:
    clock = Clock()
    with new_store(clock) as store:
        server = store.create_auth_server(name="s", audience="a")
        client, secret = store.create_client(server.id, name="c", secret="caf\u00e9-secret")
        app = create_issuer_app(store, public_url=PUBLIC_URL, clock=clock.time)
        http = await aiohttp_client(IdentityTestServer(app))
        body = urlencode(
            {"grant_type": "client_credentials", "client_id": client.id, "client_secret": secret}
        )
        for charset in ("utf-8", "us-ascii"):
            async with http.post(
                f"/{server.issuer_id}/auth/oauth/token",
                data=body.encode("ascii"),
                headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"},
            ) as resp:
                assert resp.status == 200, (charset, await resp.text())
                assert (await resp.json())["token_type"] == "Bearer"
