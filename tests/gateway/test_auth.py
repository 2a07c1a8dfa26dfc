"""The openid-connect plugin end to end over real sockets: DESIGN's decision table, the security
invariants that show at the HTTP level, and the upstream side (hidden credentials, claim headers).

Each test runs a test issuer (discovery + JWKS), an echo upstream and a gateway, all on port 0.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from multidict import CIMultiDict

from tests.gateway.conftest import (
    FAST_KEYS,
    Protect,
    StartGateway,
    make_route,
    make_service,
    raw_request,
    serving,
)
from tests.gateway.issuer import OMIT, TestIssuer, self_signed_certificate
from tokengate.gateway import auth as auth_module
from tokengate.gateway.app import SEARCHED_BODY_LIMIT, GatewayServer
from tokengate.gateway.keys import KeyPolicy
from tokengate.gateway.oidc_config import ClaimHeader, Consumer, OidcConfig
from tokengate.jsonlimits import MAX_CLIENT_NESTING


class Answer:
    def __init__(self, status: int, headers: CIMultiDict[str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def upstream_headers(self, name: str) -> list[str]:
        return [v for k, v in self.json["headers"] if k.lower() == name.lower()]


async def call(
    gw: GatewayServer,
    path: str = "/",
    *,
    token: str | None = None,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Answer:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"http://127.0.0.1:{gw.proxy_port}{path}", headers=sent, **kwargs
        ) as resp,
    ):
        return Answer(resp.status, CIMultiDict(resp.headers), await resp.read())


def auth_fields(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The `auth` field of each access line so far: a pass's outcome or a refusal's reason (the
    bounded `outcome` label). The access logger must be at INFO before the gateway starts."""
    lines = [r.getMessage() for r in caplog.records if r.name == "tokengate.access"]
    return [found[1] for line in lines if (found := re.search(r" auth=(\S+) ", line))]


# -- DESIGN's decision table -------------------------------------------------------------------


async def test_valid_token_passes(protect: Protect, test_issuer: TestIssuer) -> None:
    gw = await protect()
    answer = await call(gw, token=test_issuer.mint())
    assert answer.status == 200


async def test_no_token_is_401_without_an_error_code(protect: Protect) -> None:
    gw = await protect()
    answer = await call(gw)
    assert answer.status == 401
    assert answer.json == {"message": "Unauthorized"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1"'


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        pytest.param(lambda i: i.mint()[:-4] + "AAAA", "bad_signature", id="bad-signature"),
        pytest.param(lambda i: i.mint(exp_in=-10), "expired", id="expired"),
        pytest.param(lambda i: i.mint(iss="http://evil.example"), "bad_issuer", id="wrong-issuer"),
        pytest.param(
            lambda i: i.mint(kid="no-such-kid", sign_with=i.default_kid),
            "unknown_key",
            id="unknown-kid",
        ),
        pytest.param(lambda i: i.mint(alg="none"), "malformed", id="alg-none"),
        pytest.param(lambda i: i.mint(alg="HS256"), "bad_algorithm", id="hs256-with-public-key"),
        pytest.param(lambda i: i.mint(exp=OMIT), "bad_claims", id="no-exp"),
        pytest.param(lambda i: i.mint(exp="2099999999"), "bad_claims", id="string-exp"),
        pytest.param(
            lambda i: i.mint(nbf=int(time.time()) + 600), "not_yet_valid", id="not-yet-valid"
        ),
        pytest.param(lambda i: "not.a.jwt", "malformed", id="garbage"),
        pytest.param(lambda i: i.mint(headers={"crit": ["exp"]}), "malformed", id="crit"),
        pytest.param(lambda i: i.mint(headers={"typ": "JOSE+JSON"}), "malformed", id="bad-typ"),
    ],
)
async def test_bad_tokens_are_401_invalid_token(
    forge: Callable[[TestIssuer], str],
    reason: str,
    protect: Protect,
    test_issuer: TestIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="tokengate.access")
    gw = await protect()
    answer = await call(gw, token=forge(test_issuer))
    assert answer.status == 401
    assert answer.json == {"message": "Unauthorized"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1", error="invalid_token"'
    assert auth_fields(caplog) == [reason]  # logged, never shown


async def test_token_carrying_its_own_key_is_still_checked_against_the_jwks(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """DESIGN: jwk, jku, x5u and x5c never widen trust. The attacker's key comes inline (jwk),
    as a certificate (x5c), and from a live server publishing it (jku, x5u): none is used, and
    that server is never asked."""
    gw = await protect()
    attacker_kid = test_issuer.add_key("RS256", publish=False)
    attacker = test_issuer.keys[attacker_kid]
    async with TestIssuer() as evil:
        evil.raw_jwks = {"keys": [{**attacker.jwk, "kid": test_issuer.default_kid}]}
        for kid in (test_issuer.default_kid, attacker_kid, None):
            token = test_issuer.mint(
                kid=kid,
                sign_with=attacker_kid,
                headers={
                    "jwk": attacker.jwk,
                    "jku": evil.jwks_uri,
                    "x5u": evil.jwks_uri,
                    "x5c": [self_signed_der(attacker.private_key)],
                },
            )
            assert (await call(gw, token=token)).status == 401, kid
        assert evil.requests == []


def self_signed_der(key: Any) -> str:
    """A self-signed certificate of `key`, as an x5c entry (base64 DER)."""
    cert = self_signed_certificate(key, "attacker")
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@pytest.mark.parametrize(
    ("target", "status", "upstream_path"),
    [
        ("/api/admin/users", 401, None),
        ("/api/%61dmin/users", 401, None),  # unreserved escape
        ("/api/admin%3Asearch", 401, None),  # ":" escaped: still the protected route's path
        ("/api/%40me", 200, "/@me"),  # the public route (strip_path), forwarded decoded
        ("/api;x/admin/users", 400, None),  # a servlet container would serve /api/admin
        ("/api/x/..;/admin", 400, None),
        ("/api/public", 200, "/public"),
    ],
)
async def test_protected_prefixes_cannot_be_reached_around_their_route(
    target: str,
    status: int,
    upstream_path: str | None,
    upstream: TestServer,
    start_gateway: StartGateway,
    test_issuer: TestIssuer,
) -> None:
    """The router and the upstream read one canonical path: a spelling that an upstream would
    serve as the protected path meets the protected route, or is refused."""
    service = make_service(upstream.port)
    gw = await start_gateway(
        make_route(service, ("/api",), name="public"),
        make_route(
            service,
            ("/api/admin",),
            name="admin",
            oidc=OidcConfig.for_issuer(test_issuer.issuer),
        ),
        key_policy=FAST_KEYS,
    )
    raw = await raw_request(
        gw.proxy_port, b"GET %b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % target.encode()
    )
    assert raw.startswith(b"HTTP/1.1 %d" % status), raw[:60]
    if upstream_path is not None:
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["path_qs"] == upstream_path


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("admin.example.com", 401),
        ("ADMIN.example.com:8000", 401),
        ("admin.example.com.", 401),  # the same host, fully qualified (nginx drops the dot)
        ("admin.example.com.:8000", 401),
        ("x@admin.example.com", 400),  # an upstream reading it as an authority serves admin
        ("admin.example.com/", 400),
        ("admin.example.com..", 400),
        (".", 400),
        ("www.example.com", 200),
    ],
)
async def test_a_host_bound_protected_route_cannot_be_missed_by_spelling_the_host(
    host: str,
    status: int,
    upstream: TestServer,
    start_gateway: StartGateway,
    test_issuer: TestIssuer,
) -> None:
    service = make_service(upstream.port)
    gw = await start_gateway(
        make_route(service, name="www", preserve_host=True),
        make_route(
            service,
            name="admin",
            hosts=("admin.example.com",),
            oidc=OidcConfig.for_issuer(test_issuer.issuer),
        ),
        key_policy=FAST_KEYS,
    )
    raw = await raw_request(
        gw.proxy_port, b"GET / HTTP/1.1\r\nHost: %b\r\nConnection: close\r\n\r\n" % host.encode()
    )
    assert raw.startswith(b"HTTP/1.1 %d" % status), raw[:60]


async def test_realm_is_the_issuers_host(
    upstream: TestServer, start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    """The realm names the issuer's host, not the gateway's or the request's (both 127.0.0.1
    here, while the issuer is configured as localhost)."""
    issuer = test_issuer.issuer.replace("127.0.0.1", "localhost")
    test_issuer.discovery_overrides["issuer"] = issuer
    route = make_route(make_service(upstream.port), oidc=OidcConfig.for_issuer(issuer))
    gw = await start_gateway(route, key_policy=FAST_KEYS)
    assert (await call(gw)).headers["WWW-Authenticate"] == 'Bearer realm="localhost"'
    expired = await call(gw, token=test_issuer.mint(iss=issuer, exp_in=-10))
    assert expired.headers["WWW-Authenticate"] == 'Bearer realm="localhost", error="invalid_token"'
    assert (await call(gw, token=test_issuer.mint(iss=issuer))).status == 200


async def test_a_realm_outside_latin_1_still_gets_its_answer(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    """An issuer's host may be an internationalised name: the challenge still goes out (the
    characters a header line cannot carry replaced), never a 500."""
    route = make_route(make_service(upstream.port), oidc=OidcConfig.for_issuer("http://例え.test"))
    gw = await start_gateway(route, key_policy=FAST_KEYS)
    answer = await call(gw)
    assert answer.status == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="') and challenge.endswith('.test"'), challenge


async def test_the_refusal_reason_is_logged_not_shown(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await protect()
    caplog.set_level("INFO", logger="tokengate.auth")
    answer = await call(gw, token=test_issuer.mint(exp_in=-10))
    assert answer.status == 401
    assert b"expired" not in answer.body
    assert "expired" not in answer.headers["WWW-Authenticate"]
    lines = [r.getMessage() for r in caplog.records if r.name == "tokengate.auth"]
    expected = f"refused 401 expired for {test_issuer.issuer}: "  # the issuer the route names
    assert any(line.startswith(expected) for line in lines), lines


@pytest.mark.parametrize(
    ("exp_in", "status"), [(29 * 86400, 200), (31 * 86400, 401)], ids=["29-days", "31-days"]
)
async def test_token_lifetime_is_bounded(
    exp_in: int, status: int, protect: Protect, test_issuer: TestIssuer
) -> None:
    """A token may not claim more than 30 days of life (a stolen one would be a long breach)."""
    gw = await protect()
    assert (await call(gw, token=test_issuer.mint(exp_in=exp_in))).status == status


@pytest.mark.parametrize(
    ("breaking", "logged", "reason"),
    [
        ("extract_token", "unexpected error while authenticating a request", "invalid_token"),
        ("decode_claims", "unexpected error verifying a token: RuntimeError('a bug')", "malformed"),
        ("check_claims", "unexpected error verifying a token: RuntimeError('a bug')", "malformed"),
    ],
)
async def test_an_unexpected_error_on_the_auth_path_is_a_401_never_a_500(
    breaking: str,
    logged: str,
    reason: str,
    protect: Protect,
    test_issuer: TestIssuer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DESIGN: every exception on the auth path is a 401. No input is known to raise one (each
    would be a bug): a fault injected into the path stands in for it, and the log names it."""
    caplog.set_level("INFO", logger="tokengate.auth")
    gw = await protect()

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(auth_module, breaking, bug)
    answer = await call(gw, token=test_issuer.mint())
    assert answer.status == 401
    assert answer.json == {"message": "Unauthorized"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1", error="invalid_token"'
    assert [r.getMessage() for r in caplog.records if r.name == "tokengate.auth"] == [
        logged,
        f"refused 401 {reason} for {test_issuer.issuer}: token could not be processed",
    ]


async def test_an_unexpected_error_hiding_a_refused_token_is_a_401_not_a_pass_or_a_500(
    protect: Protect,
    test_issuer: TestIssuer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The anonymous pass after a bad token takes the token out of where it came; a fault
    there (injected: no input is known to raise one) refuses the request, as on the rest of
    the path, rather than a 500 or a pass that still carries the token."""
    caplog.set_level("INFO", logger="tokengate.auth")
    gw = await protect(anonymous="guest")

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(auth_module, "query_without_token", bug)
    answer = await call(gw, f"/?access_token={test_issuer.mint(exp_in=-10)}")
    assert answer.status == 401
    assert answer.json == {"message": "Unauthorized"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1", error="invalid_token"'
    assert [r.getMessage() for r in caplog.records if r.name == "tokengate.auth"] == [
        "unexpected error while hiding a refused token",
        f"refused 401 invalid_token for {test_issuer.issuer}: token could not be processed",
    ]


@pytest.mark.parametrize(
    ("fields", "claims", "error", "reason"),
    [
        ({"audience_required": ("other-api",)}, {}, "invalid_token", "audience"),
        ({"scopes_required": ("admin",)}, {}, "insufficient_scope", "scope"),
        ({"roles_required": ("boss",)}, {"roles": ["staff"]}, "insufficient_scope", "roles"),
        ({"groups_required": ("ops",)}, {"groups": ["dev"]}, "insufficient_scope", "groups"),
        ({"claims_forbidden": ("act",)}, {"act": {}}, "insufficient_scope", "forbidden_claim"),
        (
            {"consumer_claims": (("sub",),), "consumers": (Consumer(username="x"),)},
            {},
            "insufficient_scope",
            "consumer_not_found",
        ),
    ],
)
async def test_unmet_requirements_are_403(
    fields: dict[str, Any],
    claims: dict[str, Any],
    error: str,
    reason: str,
    protect: Protect,
    test_issuer: TestIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="tokengate.access")
    gw = await protect(**fields)
    answer = await call(gw, token=test_issuer.mint(**claims))
    assert answer.status == 403
    assert answer.json == {"message": "Forbidden"}
    assert answer.headers["WWW-Authenticate"] == f'Bearer realm="127.0.0.1", error="{error}"'
    assert auth_fields(caplog) == [reason]


@pytest.mark.parametrize(
    ("scope", "status"),
    [("read write", 200), ("admin", 200), ("read", 403), ("write", 403), ("administrator", 403)],
)
async def test_scopes_are_an_or_of_ands_with_exact_matches(
    scope: str, status: int, protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(scopes_required=("read write", "admin"))
    assert (await call(gw, token=test_issuer.mint(scope=scope))).status == status


async def test_scp_list_claim_works(protect: Protect, test_issuer: TestIssuer) -> None:
    gw = await protect(scopes_required=("read",), scopes_claim=("scp",))
    assert (await call(gw, token=test_issuer.mint(scp=["read", "x"]))).status == 200
    assert (await call(gw, token=test_issuer.mint(scp=["readx"]))).status == 403


async def test_more_than_one_token_is_400(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tokengate.access")
    gw = await protect()
    token = test_issuer.mint()
    answer = await call(gw, f"/?access_token={token}", token=token)
    assert answer.status == 400
    assert answer.json == {"message": "Bad Request"}
    assert answer.headers["WWW-Authenticate"] == (
        'Bearer realm="127.0.0.1", error="invalid_request"'
    )
    raw = await raw_request(
        gw.proxy_port,
        f"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert raw.startswith(b"HTTP/1.1 400")
    assert auth_fields(caplog) == ["multiple_tokens", "multiple_tokens"]


@pytest.mark.parametrize("value", ['Bearer a"b', "Bearer a,b", "Bearer x y"])
async def test_malformed_bearer_credentials_are_a_bad_token(value: str, protect: Protect) -> None:
    """As Kong: 401 invalid_token, and an anonymous pass where `anonymous` is set (without the
    credentials, with hide_credentials)."""
    gw = await protect()
    answer = await call(gw, headers={"Authorization": value})
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == ('Bearer realm="127.0.0.1", error="invalid_token"')
    anonymous = await protect(anonymous="guest")
    answer = await call(anonymous, headers={"Authorization": value})
    assert answer.status == 200
    assert answer.upstream_headers("X-Anonymous-Consumer") == ["true"]
    assert answer.upstream_headers("Authorization") == []


@pytest.mark.parametrize("target", ["/?access_token=", "/?access_token"])
async def test_a_bare_bearer_or_empty_parameter_is_no_token(target: str, protect: Protect) -> None:
    gw = await protect()
    for headers in ({"Authorization": "Bearer"}, {}):
        answer = await call(gw, target, headers=headers)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1"'


async def test_issuer_down_and_never_loaded_is_503(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tokengate.access")
    test_issuer.down = True
    gw = await protect()
    answer = await call(gw, token=test_issuer.mint())
    assert answer.status == 503
    assert answer.json == {"message": "Service Unavailable"}
    assert answer.headers["Retry-After"] == "5"
    assert "WWW-Authenticate" not in answer.headers  # ours to fix: no challenge to the client
    assert auth_fields(caplog) == ["keys_unavailable"]
    # readyz stays 200 and says why.
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gw.status_port}/readyz") as resp,
    ):
        assert resp.status == 200
        (issuer,) = (await resp.json())["issuers"]
        assert issuer["loaded"] is False


async def test_issuer_down_with_cached_keys_keeps_validating(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(cache_tokens=False)
    assert (await call(gw, token=test_issuer.mint())).status == 200
    test_issuer.down = True
    await asyncio.sleep(0.7)  # past max_refresh: refreshes fail, the last good keys stay
    assert (await call(gw, token=test_issuer.mint())).status == 200


async def test_leeway(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tokengate.access")
    strict = await protect()
    lenient = await protect(leeway=60)
    token = test_issuer.mint(exp_in=-5)
    assert (await call(strict, token=token)).status == 401
    assert [(await call(lenient, token=token)).status for _ in range(2)] == [200, 200]
    # Within the leeway a verified token stays verified: the second one comes from the cache.
    assert auth_fields(caplog) == ["expired", "ok", "cached"]


async def test_max_age(protect: Protect, test_issuer: TestIssuer) -> None:
    """Kong checks `auth_time` against `max_age` for bearer tokens when max_age is set."""
    now = int(time.time())
    gw = await protect(max_age=60)
    assert (await call(gw, token=test_issuer.mint())).status == 401  # no auth_time
    assert (await call(gw, token=test_issuer.mint(auth_time=now - 120))).status == 401
    assert (await call(gw, token=test_issuer.mint(auth_time=now - 10))).status == 200
    assert (await call(gw, token=test_issuer.mint(auth_time="recent"))).status == 401
    lenient = await protect(max_age=60, leeway=100)
    assert (await call(lenient, token=test_issuer.mint(auth_time=now - 120))).status == 200
    # A verified token stays cached no longer than max_age allows.
    brief = await protect(max_age=2)
    auth_time = time.time()
    token = test_issuer.mint(auth_time=auth_time)
    assert (await call(brief, token=token)).status == 200
    await asyncio.sleep(auth_time + 2.3 - time.time())
    assert (await call(brief, token=token)).status == 401


async def test_token_without_kid_needs_exactly_one_key(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(cache_tokens=False)
    assert (await call(gw, token=test_issuer.mint(kid=None))).status == 200
    test_issuer.add_key("RS256")  # now two RS256 keys: which one would it be?
    await asyncio.sleep(0.7)  # the background refresh publishes it
    assert (await call(gw, token=test_issuer.mint(kid=None))).status == 401


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "application/at+jwt", OMIT])
async def test_typ_values_accepted(typ: Any, protect: Protect, test_issuer: TestIssuer) -> None:
    gw = await protect()
    assert (await call(gw, token=test_issuer.mint(headers={"typ": typ}))).status == 200


@pytest.mark.parametrize("alg", ["RS256", "PS384", "ES256", "ES512", "EdDSA"])
async def test_algorithms(alg: str, protect: Protect, test_issuer: TestIssuer) -> None:
    kid = test_issuer.add_key(alg)
    gw = await protect()
    assert (await call(gw, token=test_issuer.mint(kid=kid))).status == 200


@pytest.mark.parametrize(
    "content_type",
    # a form body may hold a token, but the bad one in the header already decides
    [b"application/json", b"application/x-www-form-urlencoded"],
)
async def test_expect_100_continue_with_a_bad_token_gets_401_and_no_100(
    content_type: bytes, protect: Protect
) -> None:
    gw = await protect()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x.y.z\r\n"
        b"Content-Type: %b\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n" % content_type
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 401")


async def test_preflight(protect: Protect) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    gated = await protect()
    open_ = await protect(run_on_preflight=False)
    assert (await call(gated, method="OPTIONS", headers=preflight)).status == 401
    assert (await call(open_, method="OPTIONS", headers=preflight)).status == 200
    assert (await call(open_, method="OPTIONS")).status == 200  # any OPTIONS, as Kong's handler
    assert (await call(open_, method="GET", headers=preflight)).status == 401
    # A preflight let through carries no token: nor may it carry what one would set.
    spoofing = await protect(
        run_on_preflight=False, upstream_headers_claims=("sub",), upstream_headers_names=("X-User",)
    )
    answer = await call(spoofing, method="OPTIONS", headers={**preflight, "X-User": "admin"})
    assert answer.status == 200
    assert answer.upstream_headers("X-User") == []


async def test_a_preflight_let_through_stays_one_for_a_token_already_verified(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """run_on_preflight: false skips the plugin for an OPTIONS request, even one bearing a token
    the gateway verified before: nothing from the token reaches the upstream."""
    caplog.set_level("INFO", logger="tokengate.access")
    gw = await protect(
        run_on_preflight=False, upstream_headers_claims=("sub",), upstream_headers_names=("X-User",)
    )
    token = test_issuer.mint(sub="alice")
    assert (await call(gw, token=token)).upstream_headers("X-User") == ["alice"]
    answer = await call(gw, token=token, method="OPTIONS")
    assert answer.status == 200
    assert answer.upstream_headers("X-User") == []
    assert auth_fields(caplog) == ["ok", "preflight"]


# -- key rotation and the JWKS cache as seen through the gateway -------------------------------


async def test_new_kid_is_fetched_once_and_passes(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(settings={"key_policy": KeyPolicy(min_refresh=300, max_refresh=600)})
    assert (await call(gw, token=test_issuer.mint())).status == 200
    fetches = test_issuer.jwks_hits
    kid = test_issuer.add_key("ES256")
    assert (await call(gw, token=test_issuer.mint(kid=kid))).status == 200
    assert test_issuer.jwks_hits == fetches + 1


async def test_removed_kid_fails_after_refresh(protect: Protect, test_issuer: TestIssuer) -> None:
    gw = await protect(cache_tokens=False)
    old = test_issuer.default_kid
    assert old is not None
    token = test_issuer.mint()
    assert (await call(gw, token=token)).status == 200
    test_issuer.add_key("RS256")
    test_issuer.remove_key(old)
    await asyncio.sleep(0.8)  # a background refresh drops the removed key
    assert (await call(gw, token=token)).status == 401


async def test_concurrent_unknown_kids_cause_one_fetch(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(settings={"key_policy": KeyPolicy(min_refresh=300, max_refresh=600)})
    assert (await call(gw, token=test_issuer.mint())).status == 200
    fetches = test_issuer.jwks_hits
    tokens = [
        test_issuer.mint(kid=f"random-{i}", sign_with=test_issuer.default_kid) for i in range(50)
    ]
    answers = await asyncio.gather(*(call(gw, token=t) for t in tokens))
    assert {a.status for a in answers} == {401}
    assert test_issuer.jwks_hits == fetches + 1


# -- key_source: the plugin's key settings are where the gateway's keys come from ---------------


async def test_jwks_endpoint_and_extra_jwks_uris_are_where_keys_come_from(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    test_issuer.discovery_overrides["jwks_uri"] = test_issuer.issuer + "/nowhere"
    async with TestIssuer() as other:
        extra_kid = other.add_key("ES256")
        gw = await protect(jwks_endpoint=test_issuer.jwks_uri, extra_jwks_uris=(other.jwks_uri,))
        assert (await call(gw, token=test_issuer.mint())).status == 200
        token = other.mint(test_issuer.claims(), kid=extra_kid)  # the issuer's claims
        assert (await call(gw, token=token)).status == 200


async def test_a_self_signed_issuer_is_reached_only_with_ssl_verify_false(
    protect: Protect,
) -> None:
    async with TestIssuer(tls=True) as issuer:
        issuer.add_key("ES256")
        strict = await protect(issuer=issuer)
        assert (await call(strict, token=issuer.mint())).status == 503
        lax = await protect(issuer=issuer, ssl_verify=False)
        assert (await call(lax, token=issuer.mint())).status == 200


async def test_an_issuer_slower_than_the_timeout_is_503(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    test_issuer.delay = 1.0
    gw = await protect(timeout=0.1)  # not the 10 s default: that would wait for the answers
    assert (await call(gw, token=test_issuer.mint())).status == 503


@pytest.mark.parametrize(("lifetime", "status"), [(30.0, 401), (0.0, 200)])
async def test_unknown_kids_refetch_once_per_rediscovery_lifetime(
    lifetime: float, status: int, protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(
        rediscovery_lifetime=lifetime,
        settings={"key_policy": KeyPolicy(min_refresh=300, max_refresh=600)},
    )
    assert (await call(gw, token=test_issuer.mint())).status == 200
    unknown = test_issuer.mint(kid="unknown", sign_with=test_issuer.default_kid)
    assert (await call(gw, token=unknown)).status == 401  # refetched: still unknown
    kid = test_issuer.add_key("ES256")
    assert (await call(gw, token=test_issuer.mint(kid=kid))).status == status


# -- the verified-token cache ------------------------------------------------------------------


async def test_cached_token_still_expires(protect: Protect, test_issuer: TestIssuer) -> None:
    gw = await protect()
    token = test_issuer.mint(exp_in=1)
    assert (await call(gw, token=token)).status == 200
    await asyncio.sleep(2.1)
    assert (await call(gw, token=token)).status == 401


@pytest.mark.parametrize("leeway", [0, 30])
async def test_a_token_is_refused_from_exp_plus_leeway_on_cached_or_not(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture, leeway: int
) -> None:
    """RFC 7519 §4.1.4: the time must be before `exp`; Kong's jwt plugin (`exp <= now`),
    lua-resty-jwt and PyJWT refuse a token at `exp` (+ leeway), and so does the local Kong
    Identity's introspection. The verified-token cache may not keep it a moment longer."""
    caplog.set_level("INFO", logger="tokengate.access")
    minted_at = 1_800_000_000.0
    now = [minted_at]
    test_issuer.clock = lambda: now[0]
    gw = await protect(leeway=leeway, clock=lambda: now[0])
    token = test_issuer.mint(exp_in=60)
    assert (await call(gw, token=token)).status == 200
    now[0] = minted_at + 60 + leeway - 0.001
    assert (await call(gw, token=token)).status == 200
    now[0] = minted_at + 60 + leeway
    assert [(await call(gw, token=token)).status for _ in range(2)] == [401, 401]
    assert auth_fields(caplog) == ["ok", "cached", "expired", "expired"]


async def test_cache_ttl_max_bounds_how_long_a_token_stays_verified(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tokengate.access")
    gw = await protect(cache_ttl_max=1.0)
    token = test_issuer.mint()
    assert (await call(gw, token=token)).status == 200
    assert (await call(gw, token=token)).status == 200
    await asyncio.sleep(1.1)  # past cache_ttl_max, long before exp: verified again
    assert (await call(gw, token=token)).status == 200
    assert auth_fields(caplog) == ["ok", "cached", "ok"]


async def test_a_cache_ttl_max_of_0_is_no_bound(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """As Kong's cache.lua reads it, and as introspected answers here read it: 0 is no bound,
    not "never cache"."""
    caplog.set_level("INFO", logger="tokengate.access")
    now = [1_800_000_000.0]
    test_issuer.clock = lambda: now[0]
    gw = await protect(cache_ttl_max=0, clock=lambda: now[0])
    token = test_issuer.mint(exp_in=60)
    assert (await call(gw, token=token)).status == 200
    now[0] += 59
    assert (await call(gw, token=token)).status == 200
    assert auth_fields(caplog) == ["ok", "cached"]


async def test_cached_token_still_meets_each_route_requirements(
    upstream: TestServer, start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    svc = make_service(upstream.port)
    base = OidcConfig.for_issuer(test_issuer.issuer)
    admin = OidcConfig.for_issuer(test_issuer.issuer, scopes_required=("admin",))
    gw = await start_gateway(
        make_route(svc, ("/open",), oidc=base),
        make_route(svc, ("/admin",), oidc=admin),
        key_policy=FAST_KEYS,
    )
    token = test_issuer.mint(scope="read")
    for _ in range(3):
        assert (await call(gw, "/open", token=token)).status == 200
        assert (await call(gw, "/admin", token=token)).status == 403


async def test_a_cached_token_still_may_not_come_with_a_second_token(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """The hot path for a token seen before must not skip the one-token rule: a second token
    in the query, a form body, a cookie or a second header is still a 400."""
    gw = await protect(
        bearer_token_param_type=("header", "query", "body", "cookie"),
        bearer_token_cookie_name="session",
    )
    token = test_issuer.mint()
    assert (await call(gw, token=token)).status == 200  # now in the cache
    assert (await call(gw, token=token)).status == 200  # and served from it
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for answer in [
        await call(gw, f"/?access_token={token}", token=token),
        await call(gw, method="POST", token=token, headers=form, data=f"access_token={token}"),
        await call(gw, token=token, headers={"Cookie": f"session={token}"}),
    ]:
        assert answer.status == 400
        assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]
    raw = await raw_request(
        gw.proxy_port,
        f"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n"
        f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert raw.startswith(b"HTTP/1.1 400")
    # What is not a token passes with the cached one: another query parameter, another cookie.
    assert (await call(gw, "/?page=2", token=token)).status == 200
    assert (await call(gw, token=token, headers={"Cookie": "theme=dark"})).status == 200


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded, text/plain", "application/json,text/plain"]
)
async def test_a_body_token_under_a_label_an_upstream_reads_as_a_form_is_found(
    protect: Protect, test_issuer: TestIssuer, content_type: str
) -> None:
    """PHP and Rack parse a body labelled `application/x-www-form-urlencoded, text/plain` as a
    form (Kong's PDK too): a second token in it is a 400, not an unverified token passed on
    beside the verified one; the only token there is verified and, with hide_credentials, taken
    out of the body."""
    gw = await protect(hide_credentials=True)
    token, forged = test_issuer.mint(), test_issuer.mint(alg="none", sub="admin")
    as_json = "json" in content_type

    def body(value: str) -> str:
        return json.dumps({"access_token": value}) if as_json else f"access_token={value}"

    headers = {"Content-Type": content_type}
    for _ in range(2):  # verified, then from the verified-token cache
        assert (await call(gw, token=token)).status == 200
        answer = await call(gw, method="POST", token=token, headers=headers, data=body(forged))
        assert answer.status == 400
        assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]
    assert (await call(gw, method="POST", headers=headers, data=body(forged))).status == 401
    answer = await call(gw, method="POST", headers=headers, data=body(token))
    assert answer.status == 200
    assert token not in json.loads(answer.body)["body"]


async def test_a_cached_token_passes_only_whole_and_under_the_bearer_scheme(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """The hot path for a token seen before matches the whole credentials of a Bearer
    Authorization: the same token after another seven-character scheme, or after one more
    character, is no cached token."""
    gw = await protect()
    token = test_issuer.mint()
    assert (await call(gw, token=token)).status == 200  # now in the cache
    for value, error in ((f"Digest {token}", None), (f"Bearer x{token}", "invalid_token")):
        answer = await call(gw, headers={"Authorization": value})
        assert answer.status == 401, value
        challenge = 'Bearer realm="127.0.0.1"' + (f', error="{error}"' if error else "")
        assert answer.headers["WWW-Authenticate"] == challenge


async def test_a_cached_token_is_only_taken_from_the_places_the_route_allows(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tokengate.access")
    gw = await protect(bearer_token_param_type=("query",))
    token = test_issuer.mint()
    assert (await call(gw, f"/?access_token={token}")).status == 200  # verified and cached
    assert (await call(gw, f"/?access_token={token}")).status == 200  # the long way, cached
    assert auth_fields(caplog) == ["ok", "cached"]
    answer = await call(gw, token=token)  # the header is not a place this route reads
    assert answer.status == 401
    assert "error" not in answer.headers["WWW-Authenticate"]  # no token, as if none was sent


# -- the upstream side -------------------------------------------------------------------------


async def test_token_is_sent_upstream_as_bearer_by_default(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect()
    token = test_issuer.mint()
    answer = await call(gw, f"/p?x=1&access_token={token}&y=2")
    assert answer.status == 200
    assert answer.json["path_qs"] == "/p?x=1&y=2"  # hidden from where it came
    assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]
    # The only argument hidden: no query is left, not even its "?" (as nginx writes the URI).
    answer = await call(gw, f"/p?access_token={token}")
    assert answer.status == 200 and answer.json["path_qs"] == "/p"


async def test_an_rfc_8414_metadata_url_as_issuer(
    upstream: TestServer, start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    """Kong takes an issuer ending in /.well-known/oauth-authorization-server as the URL of
    its metadata; tokens carry the identifier before it."""
    metadata = test_issuer.issuer + "/.well-known/oauth-authorization-server"
    route = make_route(make_service(upstream.port), oidc=OidcConfig.for_issuer(metadata))
    gw = await start_gateway(route, key_policy=FAST_KEYS)
    assert (await call(gw, token=test_issuer.mint())).status == 200
    assert (await call(gw, token=test_issuer.mint(iss=metadata))).status == 401


async def test_a_header_name_without_a_claim_is_still_never_taken_from_the_client(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(
        upstream_headers_claims=("client_id",),
        upstream_headers_names=("X-Client-Id", "X-Tenant"),
    )
    spoofed = {"X-Client-Id": "spoof", "X-Tenant": "victim-corp"}
    answer = await call(gw, token=test_issuer.mint(client_id="c1"), headers=spoofed)
    assert answer.status == 200
    assert answer.upstream_headers("X-Client-Id") == ["c1"]
    assert answer.upstream_headers("X-Tenant") == []


async def test_claim_headers_are_the_gateways_under_either_spelling(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """CGI, WSGI and PHP read X_Sub and X-Sub alike: neither spelling comes from the client."""
    gw = await protect(upstream_headers_claims=("sub",), upstream_headers_names=("X_Sub",))
    spoofed = {"X-Sub": "spoof", "x_sub": "spoof", "session_id": "s1"}
    answer = await call(gw, token=test_issuer.mint(sub="alice"), headers=spoofed)
    assert answer.status == 200
    assert [(k, v) for k, v in answer.json["headers"] if "sub" in k.lower()] == [("X_Sub", "alice")]
    assert answer.upstream_headers("session_id") == ["s1"]


async def test_other_spellings_of_kongs_token_headers_never_reach_the_upstream(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """The plugin reads access-token and x-access-token; X_Access_Token or X.Access.Token,
    which CGI and PHP upstreams read as the same header, would pass unverified."""
    gw = await protect(hide_credentials=False)
    token = test_issuer.mint()
    forged = {"X_Access_Token": "forged", "access_token": "forged", "X.Access.Token": "forged"}
    answer = await call(gw, token=token, headers=forged)
    assert answer.status == 200
    assert not [k for k, v in answer.json["headers"] if v == "forged"]


async def test_upstream_access_token_header_null_hides_the_token(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(upstream_access_token_header=None)
    answer = await call(gw, token=test_issuer.mint())
    assert answer.status == 200
    assert answer.upstream_headers("Authorization") == []


async def test_custom_upstream_token_header(protect: Protect, test_issuer: TestIssuer) -> None:
    gw = await protect(upstream_access_token_header="x-api-token")
    token = test_issuer.mint()
    answer = await call(gw, token=token, headers={"X-Api-Token": "spoofed"})
    assert answer.upstream_headers("X-Api-Token") == [token]
    assert answer.upstream_headers("Authorization") == []


@pytest.mark.parametrize(
    ("setting", "sent"),
    [
        ("authorization:dpop", "DPoP"),  # RFC 9449's spelling, as Kong writes it
        ("authorization:basic", "Basic"),
        ("Authorization:BEARER", "Bearer"),
        ("x-token:custom", "Custom"),
    ],
)
async def test_upstream_token_header_schemes_as_spelled_on_the_wire(
    setting: str, sent: str, protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(upstream_access_token_header=setting)
    token = test_issuer.mint()
    answer = await call(gw, token=token)
    header = setting.partition(":")[0]
    assert answer.upstream_headers(header) == [f"{sent} {token}"]


@pytest.mark.parametrize("name", ["X-Access-Token", "Access-Token"])
async def test_kongs_access_token_headers_carry_a_token(
    name: str, protect: Protect, test_issuer: TestIssuer
) -> None:
    """Kong's `header` place is three headers: the token alone in access-token or
    x-access-token passes, and is hidden from the upstream like an Authorization token."""
    gw = await protect()
    token = test_issuer.mint()
    for value in (token, f"Bearer {token}"):
        answer = await call(gw, headers={name: value})
        assert answer.status == 200
        assert answer.upstream_headers(name) == []
        assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]
    # A token cached from Authorization, then sent in this header: this one is hidden.
    fresh = test_issuer.mint()
    assert (await call(gw, token=fresh)).status == 200
    answer = await call(gw, headers={name: fresh})
    assert answer.upstream_headers(name) == []
    assert answer.upstream_headers("Authorization") == [f"Bearer {fresh}"]
    # The other way round, the gateway sending no token of its own: first in this header,
    # then in Authorization (verified, then from the cache), the client's is never forwarded.
    silent = await protect(upstream_access_token_header=None)
    other = test_issuer.mint()
    for sent in (
        {name: other},
        {"Authorization": f"Bearer {other}"},
        {"Authorization": f"Bearer {other}"},
    ):
        answer = await call(silent, headers=sent)
        assert answer.status == 200
        assert answer.upstream_headers(name) == []
        assert answer.upstream_headers("Authorization") == []
    kept = await call(await protect(hide_credentials=False), headers={name: token})
    assert kept.upstream_headers(name) == [token]
    assert (await call(gw, headers={name: test_issuer.mint(exp_in=-10)})).status == 401


async def test_a_second_token_in_an_access_token_header_is_400_even_for_a_cached_token(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect()
    token = test_issuer.mint()
    assert (await call(gw, token=token)).status == 200  # cached: the hot path knows it
    for name in ("X-Access-Token", "Access-Token"):
        answer = await call(gw, token=token, headers={name: "abc.def.ghi"})
        assert answer.status == 400
        assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]


async def test_a_cookie_an_upstream_reads_after_a_blank_or_comma_is_a_token(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """Python's http.cookies (aiohttp's and Bottle's request.cookies) reads `a=1 at=<token>`
    as two cookies, `a` and `at`: beside a verified token that second one is a 400, not an
    unverified token passed on; alone it is the token, verified, and hidden."""
    places = {"bearer_token_param_type": ("header", "cookie"), "bearer_token_cookie_name": "at"}
    gw = await protect(**places)
    token, forged = test_issuer.mint(), test_issuer.mint(alg="none", sub="admin")
    for _ in range(2):  # verified, then from the verified-token cache
        assert (await call(gw, token=token)).status == 200
        for cookies in (f"a=1 at={forged}", f"a=1, at={forged}", f"a at={forged}"):
            answer = await call(gw, token=token, headers={"Cookie": cookies})
            assert answer.status == 400, cookies
            assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]
    assert (await call(gw, headers={"Cookie": f"a=1 at={forged}"})).status == 401
    answer = await call(gw, headers={"Cookie": f"a=1 at={token}; b=2"})
    assert answer.status == 200
    assert answer.upstream_headers("Cookie") == ["b=2"]


async def test_hide_credentials_false_keeps_the_query_token(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(
        hide_credentials=False,
        upstream_headers_claims=("sub",),
        upstream_headers_names=("X-User",),
        downstream_headers_claims=("sub",),
        downstream_headers_names=("X-Sub",),
    )
    token = test_issuer.mint(sub="alice")
    spoofed = {"X-User": "admin", "Authorization": "Basic dXNlcjpwYXNz"}
    answer = await call(gw, f"/?access_token={token}", headers=spoofed)
    assert answer.json["path_qs"] == f"/?access_token={token}"
    # the token kept where it was does not make the gateway's headers the client's
    assert answer.upstream_headers("X-User") == ["alice"]
    assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]
    assert answer.headers.getall("X-Sub") == ["alice"]


async def test_cookie_token_is_hidden_and_the_other_cookies_kept(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    places = {"bearer_token_param_type": ("cookie",), "bearer_token_cookie_name": "at"}
    token = test_issuer.mint()
    cookies = {"Cookie": f"a=1; at={token}; b=2"}
    answer = await call(await protect(**places), headers=cookies)
    assert answer.status == 200
    assert answer.upstream_headers("Cookie") == ["a=1; b=2"]
    assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]
    only = await call(await protect(**places), headers={"Cookie": f"at={token}"})
    assert only.upstream_headers("Cookie") == []  # nothing left: no Cookie header at all
    kept = await call(await protect(**places, hide_credentials=False), headers=cookies)
    assert kept.upstream_headers("Cookie") == [cookies["Cookie"]]
    # Several Cookie headers are one list (RFC 6265 §5.4): the rest goes up as one header.
    raw = await raw_request(
        (await protect(**places)).proxy_port,
        b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nCookie: at=%b; b=2\r\n"
        b"Connection: close\r\n\r\n" % token.encode(),
    )
    assert raw.startswith(b"HTTP/1.1 200"), raw[:60]
    headers = json.loads(raw.partition(b"\r\n\r\n")[2])["headers"]
    assert [v for k, v in headers if k == "Cookie"] == ["a=1; b=2"]


@pytest.mark.parametrize(
    "value", ["é".encode(), "€".encode(), b"\xff"], ids=["latin-1", "utf-8", "not-utf-8"]
)
async def test_the_cookies_left_beside_a_hidden_cookie_token_go_upstream_as_sent(
    value: bytes, protect: Protect, test_issuer: TestIssuer
) -> None:
    """Browsers send UTF-8 cookie values; nginx passes any byte on. The cookies kept after the
    token is taken out are those bytes, beside a good token and on the anonymous pass after a
    bad one: never re-encoded, never a refusal of the good token, never a 500."""
    places = {"bearer_token_param_type": ("cookie",), "bearer_token_cookie_name": "at"}
    for gw, token in (
        (await protect(**places), test_issuer.mint()),
        (await protect(anonymous="guest", **places), test_issuer.mint(exp_in=-10)),
    ):
        raw = await raw_request(
            gw.proxy_port,
            b"GET / HTTP/1.1\r\nHost: a\r\nCookie: x=%b; at=%b\r\nConnection: close\r\n\r\n"
            % (value, token.encode()),
        )
        assert raw.startswith(b"HTTP/1.1 200"), raw[:60]
        headers = json.loads(raw.partition(b"\r\n\r\n")[2])["headers"]
        # the echo upstream reads header bytes as aiohttp does: UTF-8, surrogateescape
        assert [v for k, v in headers if k == "Cookie"] == [
            "x=" + value.decode("utf-8", "surrogateescape")
        ]


async def test_form_body_token_is_found_and_hidden(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect()
    token = test_issuer.mint()
    answer = await call(
        gw,
        method="POST",
        data={"a": "1", "access_token": token},
    )
    assert answer.status == 200
    assert answer.json["body"] == "a=1"
    assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]


JSON_TYPE = {"Content-Type": "application/json"}


async def test_json_body_token_is_found_and_hidden(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """As Kong reads a body: a JSON body's top-level access_token is a token; hidden, the rest of
    the body goes upstream as it was written."""
    gw = await protect()
    token = test_issuer.mint()
    body = '{"a": 1.10, "access_token": "TOKEN", "b": {"access_token": "kept"}}'.replace(
        "TOKEN", token
    )
    answer = await call(gw, method="POST", headers=JSON_TYPE, data=body)
    assert answer.status == 200
    assert answer.json["body"] == '{"a": 1.10,"b": {"access_token": "kept"}}'
    assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]
    shown = await call(
        await protect(hide_credentials=False), method="POST", headers=JSON_TYPE, data=body
    )
    assert shown.status == 200
    assert shown.json["body"] == body


async def test_json_body_tokens_are_judged_as_any_other(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect()
    token = test_issuer.mint()
    bad = await call(gw, method="POST", headers=JSON_TYPE, data='{"access_token": "x.y.z"}')
    assert bad.status == 401
    assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    # a token in the header and one in the body: the upstream may read the other one
    both = await call(
        gw, method="POST", token=token, headers=JSON_TYPE, data=json.dumps({"access_token": token})
    )
    assert both.status == 400
    assert 'error="invalid_request"' in both.headers["WWW-Authenticate"]
    # not where this route looks: no token at all
    header_only = await protect(bearer_token_param_type=("header",))
    elsewhere = await call(
        header_only, method="POST", headers=JSON_TYPE, data=json.dumps({"access_token": token})
    )
    assert elsewhere.status == 401
    assert "error=" not in elsewhere.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": [1e400, 0.1000],  "s": "\\u00e9"}',  # no token in it: untouched
        b'{"token": NaN, }',  # not JSON, but no parser finds an access_token in it either
        b"\xff\xfe not even text",
    ],
)
async def test_a_json_body_without_a_token_reaches_the_upstream_byte_for_byte(
    body: bytes, protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect()
    answer = await call(gw, method="POST", token=test_issuer.mint(), headers=JSON_TYPE, data=body)
    assert answer.status == 200
    assert answer.json["body"].encode("latin-1") == body


@pytest.mark.parametrize(
    "body",
    [
        b'{"access_token": "FORGED"} {}',  # Jackson and Go's json.Decoder stop after the object
        b'{"access_token": "FORGED", "n": NaN}',  # Python's json takes NaN
        b'{"access_token": "FORGED", "s": "\xed\xa0\x80"}',  # a surrogate as UTF-8 bytes
        '{"access_token": "FORGED"}'.encode("utf-16"),  # Python, Jackson
    ],
)
async def test_a_json_body_that_may_hold_a_token_and_cannot_be_read_is_a_400(
    body: bytes, protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """Parsers upstream read tokens out of bodies the gateway cannot: such a body never passes,
    beside a good token or on an anonymous route."""
    caplog.set_level("INFO", logger="tokengate.access")
    token = test_issuer.mint()
    for gw, sent in ((await protect(), token), (await protect(anonymous="guest"), None)):
        answer = await call(gw, method="POST", token=sent, headers=JSON_TYPE, data=body)
        assert answer.status == 400
        assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]
    assert auth_fields(caplog) == ["unreadable_body", "unreadable_body"]


async def test_a_token_already_cached_does_not_skip_the_json_body(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """The hot path answers only when no other place could hold a token: a JSON body can."""
    gw = await protect()
    token = test_issuer.mint()
    assert (await call(gw, token=token)).status == 200  # now cached
    second = json.dumps({"access_token": test_issuer.mint()})
    answer = await call(gw, method="POST", token=token, headers=JSON_TYPE, data=second)
    assert answer.status == 400


@pytest.mark.parametrize(
    ("method", "content_type"),
    [
        ("GET", "application/json"),  # RFC 6750's GET rule is the form's; JSON parsers read it
        ("PUT", "application/merge-patch+json"),
        ("PATCH", "application/vnd.api+json; charset=utf-8"),
    ],
)
async def test_json_bodies_of_any_method_and_json_media_type_are_searched(
    method: str, content_type: str, protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect()
    token = test_issuer.mint()
    body = json.dumps({"a": 1, "access_token": token})
    answer = await call(gw, method=method, headers={"Content-Type": content_type}, data=body)
    assert answer.status == 200
    assert answer.json["body"] == '{"a": 1}'
    both = await call(
        gw, method=method, token=token, headers={"Content-Type": content_type}, data=body
    )
    assert both.status == 400


def chunked_form(body: bytes, *, chunk: int = 1000) -> bytes:
    return (
        b"".join(
            b"%x\r\n%b\r\n" % (len(part), part)
            for part in (body[i : i + chunk] for i in range(0, len(body), chunk))
        )
        + b"0\r\n\r\n"
    )


async def test_a_chunked_form_body_is_searched_too(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """A form sent chunked may hold a token as well: a second one is a 400, a lone one found
    and hidden (the upstream gets the rest with a Content-Length)."""
    gw = await protect()
    token = test_issuer.mint()
    post = (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
    )
    body = b"a=1&access_token=%b&b=2" % token.encode()
    second = await raw_request(
        gw.proxy_port,
        post + b"Authorization: Bearer %b\r\n\r\n" % token.encode() + chunked_form(body, chunk=7),
    )
    assert second.startswith(b"HTTP/1.1 400"), second[:60]
    lone = await raw_request(gw.proxy_port, post + b"\r\n" + chunked_form(body, chunk=7))
    assert lone.startswith(b"HTTP/1.1 200"), lone[:60]
    echoed = json.loads(lone.partition(b"\r\n\r\n")[2])
    assert echoed["body"] == "a=1&b=2"
    assert [token] == [
        v.removeprefix("Bearer ") for k, v in echoed["headers"] if k == "Authorization"
    ]


@pytest.mark.parametrize(
    ("size", "status"),
    [(998, b"200"), (999, b"413"), (3_000, b"413"), (70_000, b"413")],
    ids=["at-the-limit", "one-past-it", "read-whole", "read-head"],
)
async def test_a_chunked_form_body_read_for_a_token_still_meets_max_body_size(
    size: int, status: bytes, protect: Protect, test_issuer: TestIssuer
) -> None:
    # The form is "a=" and `size` bytes: 998 makes it max_body_size long, which is allowed.
    gw = await protect(settings={"key_policy": FAST_KEYS, "max_body_size": 1_000})
    answer = await raw_request(
        gw.proxy_port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Authorization: Bearer %b\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        % test_issuer.mint().encode()
        + chunked_form(b"a=" + b"x" * size, chunk=5000),
        timeout=10,
    )
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:60]


async def test_the_head_of_a_chunked_form_read_for_a_token_counts_towards_max_body_size(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """70 kB arrive first and are read to search for a token (under the limit), the rest
    streams later: 50 kB, under the limit by itself, but not with the head. A 413."""
    gw = await protect(settings={"key_policy": FAST_KEYS, "max_body_size": 100_000})
    body = chunked_form(b"a=" + b"x" * 120_000, chunk=5000)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Authorization: Bearer %b\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            % test_issuer.mint().encode()
            + body[:70_100]
        )
        await asyncio.sleep(0.3)  # the head has been read and found too long to search
        writer.write(body[70_100:])
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:60]


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
async def test_a_long_form_body_streams_whole_and_unsearched(
    chunked: bool, protect: Protect, test_issuer: TestIssuer
) -> None:
    """Past 64 KiB a form is not searched, chunked or with a Content-Length: what was read
    while looking goes upstream first, then the rest, every byte in order."""
    gw = await protect()
    token = test_issuer.mint()
    body = b"&".join(b"f%d=%s" % (i, b"x" * 90) for i in range(1200))  # ~115 KB
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    answer = await raw_request(
        gw.proxy_port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Authorization: Bearer %b\r\n%b\r\nConnection: close\r\n\r\n"
        % (token.encode(), framing)
        + (chunked_form(body, chunk=5000) if chunked else body),
        timeout=10,
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:60]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["body"] == body.decode()


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize(
    ("size", "searched"), [(SEARCHED_BODY_LIMIT, True), (SEARCHED_BODY_LIMIT + 1, False)]
)
async def test_a_form_body_is_searched_up_to_64_kib_exactly(
    size: int, searched: bool, chunked: bool, protect: Protect, test_issuer: TestIssuer
) -> None:
    """A token at the very end of a form of 64 KiB is found (and hidden); one byte more and the
    form is not searched: no token, 401."""
    gw = await protect()
    tail = b"&access_token=%b" % test_issuer.mint().encode()
    body = b"pad=" + b"x" * (size - 4 - len(tail)) + tail
    assert len(body) == size
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    answer = await raw_request(
        gw.proxy_port,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"%b\r\nConnection: close\r\n\r\n"
        % framing
        + (chunked_form(body, chunk=5000) if chunked else body),
        timeout=10,
    )
    if not searched:
        assert answer.startswith(b"HTTP/1.1 401"), answer[:60]
        return
    assert answer.startswith(b"HTTP/1.1 200"), answer[:60]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["body"] == body[: -len(tail)].decode()


async def test_a_chunked_form_body_arriving_in_pieces_is_searched_whole(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """The token may straddle two reads: the form is searched, and forwarded, as one."""
    gw = await protect()
    body = b"a=1&access_token=%b&b=2" % test_issuer.mint().encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + chunked_form(body[:10], chunk=10)[: -len(b"0\r\n\r\n")]
        )
        await writer.drain()
        await asyncio.sleep(0.1)  # the gateway has read the first piece by now
        writer.write(chunked_form(body[10:], chunk=100))
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:60]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["body"] == "a=1&b=2"


@pytest.mark.parametrize("name", ["access_token[]", "access.token", "access%5Btoken"])
async def test_a_second_token_under_a_name_php_reads_as_access_token_is_400(
    name: str, protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect()
    answer = await call(
        gw,
        method="POST",
        token=test_issuer.mint(),
        data=f"{name}=abc.def.ghi",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 400
    assert 'error="invalid_request"' in answer.headers["WWW-Authenticate"]


async def test_a_form_body_whose_chunking_breaks_is_a_400_at_once(
    protect: Protect, caplog: pytest.LogCaptureFixture
) -> None:
    """The form is being read for a token when a chunk-size line turns out malformed: a 400
    at once, and the connection closes (nginx: "client sent invalid chunked body"), not a 408
    after client_body_timeout."""
    gw = await protect(settings={"client_body_timeout": 30})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.1)  # the gateway is reading the form by now
        writer.write(b"x\r\n&access_token=abc\r\n0\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head.split(b"\r\n")
    assert body == b'{"message": "Bad request"}'
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_form_searched_for_a_token_is_paced_not_timed_whole(
    chunked: bool, protect: Protect, test_issuer: TestIssuer
) -> None:
    """client_body_timeout bounds each gap, as for any body: a form sent steadily in pieces that
    take longer in all than the timeout is read whole and its token found."""
    gw = await protect(settings={"client_body_timeout": 0.5})
    body = b"a=1&access_token=%b&b=%b" % (test_issuer.mint().encode(), b"x" * 400)
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\n%b\r\nConnection: close\r\n\r\n" % framing
        )
        for piece in pieces:  # about 0.2 s apart, 1.5 s or more in all
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            await asyncio.sleep(0.2)
        if chunked:
            writer.write(b"0\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["body"] == "a=1&b=" + "x" * 400


async def test_a_stalled_form_body_is_a_408_not_an_error(protect: Protect) -> None:
    """The form is read to look for a token in it; a client that stops sending it is cut off
    after client_body_timeout, as on any other route."""
    gw = await protect(settings={"client_body_timeout": 0.3})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 100\r\n\r\na=1"
    )
    try:
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in head
    assert body == b'{"message": "Request timeout"}'  # kong/error_handlers.lua's 408


async def test_claims_become_upstream_headers(protect: Protect, test_issuer: TestIssuer) -> None:
    gw = await protect(
        upstream_headers_claims=("sub", "scope", "roles", "n"),
        upstream_headers_names=("X-Subject", "X-Scope", "X-Roles", "X-N"),
    )
    token = test_issuer.mint(roles=["a", "b"], n=3)
    answer = await call(gw, token=token, headers={"X-Subject": "spoofed"})
    assert answer.upstream_headers("X-Subject") == ["test-client"]
    assert answer.upstream_headers("X-Scope") == ["openid read"]
    assert answer.upstream_headers("X-Roles") == [base64.b64encode(b'["a","b"]').decode()]
    assert answer.upstream_headers("X-N") == ["3"]


CLAIM_RENDERINGS = [
    # Kong's headers.lua: tables as base64 of their JSON, other non-strings as Lua's tostring,
    # strings as they are; nil, null, false, "" and empty tables send nothing.
    ({"k": 1}, base64.b64encode(b'{"k":1}').decode()),
    (["é"], base64.b64encode('["é"]'.encode()).decode()),
    (True, "true"),
    (0, "0"),
    (1.5, "1.5"),
    (3.0, "3"),
    (1e20, "1e+20"),
    (1700000000, "1700000000"),
    ("Zoë", "Zoë"),
    ("a b\tc", "a b\tc"),
    (False, None),
    (None, None),
    ("", None),
    ([], None),
    ({}, None),
    ("a\r\nX-Admin: yes", None),  # never a header line of its own
    ("a\x00b", None),
]


@pytest.mark.parametrize(("claim", "header"), CLAIM_RENDERINGS)
async def test_claim_values_reach_the_upstream_as_kong_renders_them(
    protect: Protect, test_issuer: TestIssuer, claim: object, header: str | None
) -> None:
    gw = await protect(upstream_headers_claims=("c",), upstream_headers_names=("X-C",))
    answer = await call(gw, token=test_issuer.mint(c=claim), headers={"X-C": "spoofed"})
    assert answer.status == 200
    assert answer.upstream_headers("X-C") == ([] if header is None else [header])
    assert answer.upstream_headers("X-Admin") == []


async def test_a_claim_holding_a_lone_surrogate_never_reaches_the_upstream(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """The issuer signed it, but "\\ud800" is not text: the token is malformed, as in Kong
    (lua-cjson refuses the escape), rather than sending the upstream bytes that are not UTF-8."""
    gw = await protect(upstream_headers_claims=("c",), upstream_headers_names=("X-C",))
    answer = await call(gw, token=test_issuer.mint(c="\ud800"))  # json.dumps escapes it
    assert answer.status == 401
    assert answer.json == {"message": "Unauthorized"}  # Kong's body: never the upstream's
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1", error="invalid_token"'


async def test_anonymous_requests_cannot_bring_the_headers_a_token_would_set(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """On an anonymous pass the upstream must not find, in the headers a verified token fills
    (claim headers, the token header), what the client wrote there itself. Why it was no
    authenticated pass goes to the debug log."""
    caplog.set_level("DEBUG", logger="tokengate.auth")
    gw = await protect(
        anonymous="guest", upstream_headers_claims=("sub",), upstream_headers_names=("X-User",)
    )
    spoof = {"X-User": "admin"}
    for token in (None, "abc.def.ghi", test_issuer.mint(exp_in=-10)):
        answer = await call(gw, token=token, headers=spoof)
        assert answer.status == 200
        assert answer.upstream_headers("X-Anonymous-Consumer") == ["true"]
        assert answer.upstream_headers("X-User") == []
        assert answer.upstream_headers("Authorization") == []
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    anonymous = [line for line in debug if line.startswith("anonymous access after: ")]
    assert len(anonymous) == 3
    assert (anonymous[0], anonymous[2]) == (
        "anonymous access after: missing token",
        "anonymous access after: token expired",
    )


async def test_anonymous_requests_keep_the_clients_own_credentials(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """What is not a bearer token (Basic), and a failed token with hide_credentials off, reach
    the upstream as the client sent them."""
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    answer = await call(await protect(anonymous="guest"), headers=basic)
    assert answer.upstream_headers("Authorization") == [basic["Authorization"]]
    kept = await protect(anonymous="guest", hide_credentials=False)
    bad = test_issuer.mint(exp_in=-10)
    assert (await call(kept, token=bad)).upstream_headers("Authorization") == [f"Bearer {bad}"]


async def test_anonymous_requests_lose_the_token_that_failed_wherever_it_was(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """With hide_credentials, the upstream of an anonymous pass never receives a token the
    gateway refused: not in the query, a cookie, a form or a JSON body either."""
    places = ("header", "query", "body", "cookie")
    gw = await protect(
        anonymous="guest", bearer_token_param_type=places, bearer_token_cookie_name="at"
    )
    bad = test_issuer.mint(exp_in=-10)
    answer = await call(gw, f"/p?x=1&access_token={bad}")
    assert (answer.status, answer.json["path_qs"]) == (200, "/p?x=1")
    answer = await call(gw, headers={"Cookie": f"a=1; at={bad}"})
    assert answer.upstream_headers("Cookie") == ["a=1"]
    answer = await call(gw, method="POST", data={"a": "1", "access_token": bad})
    assert (answer.status, answer.json["body"]) == (200, "a=1")
    assert answer.upstream_headers("X-Anonymous-Consumer") == ["true"]
    for value in (bad, 42):  # a JSON body's, a string or not
        body = json.dumps({"a": 1, "access_token": value})
        answer = await call(gw, method="POST", headers=JSON_TYPE, data=body)
        assert (answer.status, answer.json["body"]) == (200, '{"a": 1}')
        assert answer.upstream_headers("X-Anonymous-Consumer") == ["true"]
    kept = await protect(anonymous="guest", hide_credentials=False)
    answer = await call(kept, f"/p?access_token={bad}")
    assert answer.json["path_qs"] == f"/p?access_token={bad}"


@pytest.mark.parametrize(
    ("place", "path", "kwargs", "left"),
    [
        ("query", "/p?q=a?b&access_token={t}", {}, ("path_qs", "/p?q=a?b")),
        ("cookie", "/", {"headers": {"Cookie": "a=1; at={t}"}}, ("Cookie", ["a=1"])),
        (
            "form",
            "/",
            {"method": "POST", "data": {"a": "1", "access_token": "{t}"}},
            ("body", "a=1"),
        ),
        (
            "json",
            "/",
            {"method": "POST", "headers": JSON_TYPE, "data": '{"a": 1, "access_token": "{t}"}'},
            ("body", '{"a": 1}'),
        ),
    ],
)
async def test_a_hidden_token_from_anywhere_still_gets_the_gateways_claim_headers_only(
    place: str,
    path: str,
    kwargs: dict[str, Any],
    left: tuple[str, Any],
    protect: Protect,
    test_issuer: TestIssuer,
) -> None:
    """hide_credentials takes the token out of the place it came from, and nothing else changes:
    the claim headers the client wrote are still dropped (either spelling), the claim headers
    and downstream_headers are still the gateway's, and the rest of the request is as sent."""
    gw = await protect(
        bearer_token_param_type=("header", "query", "body", "cookie"),
        bearer_token_cookie_name="at",
        upstream_headers_claims=("sub",),
        upstream_headers_names=("X-User",),
        downstream_headers_claims=("sub",),
        downstream_headers_names=("X-Sub",),
    )
    token = test_issuer.mint(sub="alice")

    def filled(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: filled(v) for k, v in value.items()}
        return value.replace("{t}", token) if isinstance(value, str) else value

    sent = filled(kwargs)
    sent["headers"] = {**sent.get("headers", {}), "X-User": "admin", "X_User": "admin"}
    answer = await call(gw, filled(path), **sent)
    assert answer.status == 200, place
    assert answer.upstream_headers("X-User") == ["alice"]
    assert answer.upstream_headers("X_User") == []
    assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]  # the gateway's
    assert answer.headers.getall("X-Sub") == ["alice"]
    name, value = left
    if name in ("path_qs", "body"):
        assert answer.json[name] == value
    else:
        assert answer.upstream_headers(name) == value


async def test_consumer_headers_are_spelled_as_kong_spells_them(protect: Protect) -> None:
    # Kong's constants.HEADERS; an upstream reading raw header names sees these bytes
    guest = Consumer(id="8f2a", custom_id="c-1", username="guest")
    gw = await protect(anonymous="guest", anonymous_consumer=guest)
    answer = await call(gw)
    assert answer.status == 200
    names = [k for k, _ in answer.json["headers"] if k.lower().startswith("x-consumer-")]
    assert names == ["X-Consumer-ID", "X-Consumer-Custom-ID", "X-Consumer-Username"]


async def test_anonymous(protect: Protect, test_issuer: TestIssuer) -> None:
    guest = Consumer(id="8f2a", custom_id="c-1", username="guest")
    gw = await protect(anonymous="guest", anonymous_consumer=guest, scopes_required=("admin",))
    spoofed = {"X-Anonymous-Consumer": "false", "X-Consumer-Username": "admin"}
    answer = await call(gw, headers=spoofed)
    assert answer.status == 200
    assert answer.upstream_headers("X-Anonymous-Consumer") == ["true"]
    # Kong's set_anonymous: the consumer named to the upstream as for any consumer.
    assert answer.upstream_headers("X-Consumer-ID") == ["8f2a"]
    assert answer.upstream_headers("X-Consumer-Custom-ID") == ["c-1"]
    assert answer.upstream_headers("X-Consumer-Username") == ["guest"]
    # Kong's forbidden answer becomes an anonymous pass too: a valid token lacking the scope.
    lacking = test_issuer.mint()
    for _ in range(2):  # the second time from the verified-token cache
        answer = await call(gw, token=lacking)
        assert answer.status == 200
        assert answer.upstream_headers("X-Anonymous-Consumer") == ["true"]
        assert answer.upstream_headers("Authorization") == []  # hide_credentials
    unnamed = await protect(anonymous="guest", anonymous_consumer=Consumer(username="guest"))
    answer = await call(unnamed)
    assert answer.upstream_headers("X-Consumer-Username") == ["guest"]
    assert answer.upstream_headers("X-Consumer-ID") == []
    authenticated = await protect(anonymous="guest")
    answer = await call(
        authenticated, token=test_issuer.mint(), headers={"X-Anonymous-Consumer": "true"}
    )
    assert answer.upstream_headers("X-Anonymous-Consumer") == []


async def test_display_errors_and_custom_messages(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(display_errors=True, unauthorized_error_message="Go away")
    answer = await call(gw, token=test_issuer.mint(exp_in=-10))
    assert answer.json == {"message": "Go away (token expired)"}  # as Kong's responses.lua
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith(
        'Bearer realm="127.0.0.1", error="invalid_token", error_description="'
    )
    # RFC 6750 §3: an error_description holds printable ASCII but for '"' and '\\' (this
    # reason cites "RFC 6750 §2.1"; the body, JSON, keeps it whole)
    answer = await call(gw, headers={"Authorization": 'Bearer a"b'})
    assert answer.headers["WWW-Authenticate"] == (
        'Bearer realm="127.0.0.1", error="invalid_token", '
        'error_description="malformed token: not a single b64token (RFC 6750 2.1)"'
    )
    assert answer.json == {
        "message": "Go away (malformed token: not a single b64token (RFC 6750 §2.1))"
    }
    answer = await call(gw)  # no token: the reason, and still no error code (RFC 6750 §3.1)
    assert answer.json == {"message": "Go away (missing token)"}
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1"'
    quiet = await protect(expose_error_code=False)
    answer = await call(quiet, token=test_issuer.mint(exp_in=-10))
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1"'
    assert answer.json == {"message": "Unauthorized"}  # no reason without display_errors


async def test_refusals_are_complete_http_answers_for_1_0_and_1_1(protect: Protect) -> None:
    gw = await protect()
    for version in (b"1.1", b"1.0"):
        raw = await raw_request(
            gw.proxy_port,
            b"GET / HTTP/" + version + b"\r\nHost: a\r\nX-Request-Id: r-1\r\n"
            b"Authorization: Bearer x.y.z\r\nConnection: close\r\n\r\n",
        )
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n") or head.startswith(
            b"HTTP/1.0 401 Unauthorized\r\n"
        )
        lines = head.lower().split(b"\r\n")
        assert b"content-type: application/json; charset=utf-8" in lines
        assert b"content-length: %d" % len(body) in lines
        assert any(line.startswith(b"date: ") for line in lines)
        assert b"x-request-id: r-1" in lines
        assert b"server: tokengate" in lines  # the gateway's answer: never aiohttp's token
        assert b'www-authenticate: bearer realm="127.0.0.1", error="invalid_token"' in lines
        assert json.loads(body) == {"message": "Unauthorized"}


async def test_refused_head_has_no_body_and_the_connection_stays_in_step(
    protect: Protect, caplog: pytest.LogCaptureFixture
) -> None:
    """A HEAD answer has no content (RFC 9110 §9.3.2): were the JSON body sent, the client would
    read it as the start of the next answer on the connection."""
    caplog.set_level("INFO", logger="tokengate.access")
    gw = await protect()
    raw = await raw_request(
        gw.proxy_port,
        b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    first, _, rest = raw.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b"content-length: 27" in first.lower().split(b"\r\n")  # what a GET would get
    assert b"connection:" not in first.lower()  # a refusal keeps a kept-alive connection
    assert rest.startswith(b"HTTP/1.1 401 Unauthorized\r\n")  # the GET's answer, right after
    assert rest.partition(b"\r\n\r\n")[2] == b'{"message": "Unauthorized"}'
    lines = [r.getMessage() for r in caplog.records if r.name == "tokengate.access"]
    assert [re.findall(r" bytes=(\d+) ", line) for line in lines] == [["0"], ["27"]]


async def test_a_refusal_before_the_body_ends_the_connection(protect: Protect) -> None:
    """The client may send its body later or never: whatever comes next on this connection
    cannot be told from a next request, so the refusal closes it."""
    gw = await protect()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x.y.z\r\n"
            b"Content-Type: application/json\r\nContent-Length: 30\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 401")
        assert b"Connection: close\r\n" in head
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # not read as the body: never read
        rest = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert rest == b'{"message": "Unauthorized"}'


async def test_expect_100_continue_with_a_good_header_token_and_one_in_the_form(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """A good header token earns the 100 Continue; the body then shows a second token: 400,
    wherever it is in the form and however an upstream's parser would spell its name."""
    gw = await protect()
    bearer = b"Authorization: Bearer %b\r\n" % test_issuer.mint().encode()
    second = test_issuer.mint()
    for body in (
        f"access_token={second}",
        f"a=1&access_token={second}",
        f"a=1&access_token\x00={second}",  # PHP cuts the name at the NUL
    ):
        head, _ = await post_after_continue(gw, bearer, body.encode())
        assert head.startswith(b"HTTP/1.1 400"), body
        assert b'error="invalid_request"' in head


async def test_expect_100_continue_with_a_good_header_token_and_one_in_json(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect()
    bearer = b"Authorization: Bearer %b\r\n" % test_issuer.mint().encode()
    body = json.dumps({"access_token": test_issuer.mint()}).encode()
    head, _ = await post_after_continue(gw, bearer, body, content_type=b"application/json")
    assert head.startswith(b"HTTP/1.1 400")
    # one that may hold a token but cannot be read (NaN is no JSON, but Python reads it) too
    body = b'{"access_token": "x", "n": NaN}'
    head, _ = await post_after_continue(gw, bearer, body, content_type=b"application/json")
    assert head.startswith(b"HTTP/1.1 400")
    # and a JSON body with none: the verdict on the header token stands
    head, rest = await post_after_continue(
        gw, bearer, b'{"a": 1}', content_type=b"application/json"
    )
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(rest)["body"] == '{"a": 1}'


async def test_a_token_judged_before_the_body_is_verified_once_and_counted_as_verified(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    """The header token decided before the 100 Continue stands when the body holds no token:
    the access line says `ok` (verified now), not `cached`."""
    caplog.set_level("INFO", logger="tokengate.access")  # before the gateway: it looks once
    gw = await protect()
    bearer = b"Authorization: Bearer %b\r\n" % test_issuer.mint().encode()
    head, rest = await post_after_continue(gw, bearer, b"a=1")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(rest)["body"] == "a=1"
    [line] = [r.getMessage() for r in caplog.records if r.name == "tokengate.access"]
    assert " auth=ok " in line, line


async def post_after_continue(
    gw: GatewayServer,
    headers: bytes,
    body: bytes,
    *,
    content_type: bytes = b"application/x-www-form-urlencoded",
) -> tuple[bytes, bytes]:
    """POST a form (or `content_type`) with Expect: 100-continue, send the body only once the
    100 Continue came, and return the final answer's head and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: a\r\n%bContent-Type: %b\r\n"
        b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        % (headers, content_type, len(body))
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return head, rest


async def test_form_token_with_expect_100_continue(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """A token that can only be in the body needs the body: 100 Continue first, then the check."""
    gw = await protect()
    body = f"a=1&access_token={test_issuer.mint()}".encode()
    head, rest = await post_after_continue(gw, b"", body)
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(rest)["body"] == "a=1"


# -- headers from claims: upstream_headers, downstream_headers, X-Authenticated-Groups -----------


async def test_upstream_headers_follow_claim_paths_and_are_never_the_clients(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(
        upstream_headers=(
            ClaimHeader("X-Org", ("org", "name")),
            ClaimHeader("X-First-Role", ("org", "roles", "1")),
            ClaimHeader("X-Plan", ("org", "plan")),
        )
    )
    org = {"name": "acme", "roles": ["admin", "dev"]}
    spoofed = {"X-Org": "evil", "X-Plan": "gold", "X_Plan": "gold"}
    answer = await call(gw, token=test_issuer.mint(org=org), headers=spoofed)
    assert answer.status == 200
    assert answer.upstream_headers("X-Org") == ["acme"]
    assert answer.upstream_headers("X-First-Role") == ["admin"]
    assert answer.upstream_headers("X-Plan") == []  # no such claim: not the client's either
    assert answer.upstream_headers("X_Plan") == []


async def test_downstream_headers_reach_the_client_after_the_upstreams_own(
    start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"X-Sub": "from-upstream"})

    oidc = OidcConfig.for_issuer(
        test_issuer.issuer,
        downstream_headers_claims=("sub", "email"),
        downstream_headers_names=("X-Sub", "X-Email"),
    )
    async with serving(handler) as server:
        gw = await start_gateway(make_route(make_service(server.port), oidc=oidc))
        token = test_issuer.mint(sub="alice")
        for _ in range(2):  # verified, then from the verified-token cache
            answer = await call(gw, token=token)
            assert answer.status == 200
            assert answer.headers.getall("X-Sub") == ["from-upstream", "alice"]
            assert "X-Email" not in answer.headers  # no such claim
        refused = await call(gw)
        assert refused.status == 401
        assert "X-Sub" not in refused.headers


@pytest.mark.parametrize("how", ["streamed", "http/1.0", "buffered"])
async def test_downstream_headers_ride_every_kind_of_relayed_answer(
    how: str, start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if how != "streamed":
            return web.Response(text="ok")
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"x" * 200_000)
        await response.write_eof()
        return response

    oidc = OidcConfig.for_issuer(
        test_issuer.issuer, downstream_headers=(ClaimHeader("X-Tenant", ("org", "tenant")),)
    )
    async with serving(handler) as server:
        gw = await start_gateway(make_route(make_service(server.port), oidc=oidc))
        token = test_issuer.mint(org={"tenant": "t-1"})
        if how == "http/1.0":
            raw = await raw_request(
                gw.proxy_port,
                f"GET / HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n".encode(),
            )
            assert raw.startswith(b"HTTP/1.0 200")
            assert b"\r\nX-Tenant: t-1\r\n" in raw.partition(b"\r\n\r\n")[0]
            return
        answer = await call(gw, token=token)
        assert answer.status == 200
        assert answer.headers.getall("X-Tenant") == ["t-1"]


@pytest.mark.parametrize(
    ("groups", "header"),
    [
        pytest.param("admin  dev admin", ["admin, dev"], id="words"),
        pytest.param(
            ["Domain Admins", "dev", "Domain Admins", 7], ["Domain Admins, dev, 7"], id="list"
        ),
        pytest.param([], [], id="empty"),
        pytest.param({"a": 1}, [], id="object"),
    ],
)
async def test_authenticated_groups_claim_sets_x_authenticated_groups(
    groups: Any, header: list[str], protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(authenticated_groups_claim=("realm", "groups"))
    token = test_issuer.mint(realm={"groups": groups})
    spoofed = {"X-Authenticated-Groups": "root"}
    answer = await call(gw, token=token, headers=spoofed)
    assert answer.status == 200
    assert answer.upstream_headers("X-Authenticated-Groups") == header
    names = [k for k, _ in answer.json["headers"] if k.lower() == "x-authenticated-groups"]
    assert names == ["X-Authenticated-Groups"] * len(header)  # as Kong spells it


# -- consumer_claims: Kong's consumer mapping ----------------------------------------------------

ALICE = Consumer(id="6f1c3c52-2ab8-4d6e-9d0a-0b1f3d2e4c5a", custom_id="c-7", username="alice")
BOB = Consumer(username="bob", custom_id="alice")  # his custom_id is alice's username
CAROL = Consumer(id="0b6e8a5e-54a4-4f7b-a3a6-8c3c1d2e9f10", username="Carol")


def consumer_headers(answer: Answer) -> dict[str, list[str]]:
    names = ("X-Consumer-ID", "X-Consumer-Custom-ID", "X-Consumer-Username", "X-Anonymous-Consumer")
    return {name: found for name in names if (found := answer.upstream_headers(name))}


async def test_a_token_mapped_to_a_consumer_names_it_to_the_upstream(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(
        consumer_claims=(("sub",),),
        consumers=(ALICE, BOB, CAROL),
        upstream_headers_claims=("sub",),
        upstream_headers_names=("X-Sub",),
    )
    spoofed = {"X-Consumer-ID": "root", "X-Consumer-Username": "admin"}
    token = test_issuer.mint(sub="c-7")  # Kong's default consumer_by: username, then custom_id
    for _ in range(2):  # verified, then from the verified-token cache
        answer = await call(gw, token=token, headers=spoofed)
        assert answer.status == 200
        assert consumer_headers(answer) == {
            "X-Consumer-ID": [ALICE.id],
            "X-Consumer-Custom-ID": ["c-7"],
            "X-Consumer-Username": ["alice"],
        }
        assert answer.upstream_headers("X-Sub") == ["c-7"]  # the claim headers beside them
    # username comes first: "alice" is alice's username before it is bob's custom_id
    answer = await call(gw, token=test_issuer.mint(sub="alice"))
    assert consumer_headers(answer) == {
        "X-Consumer-ID": [ALICE.id],
        "X-Consumer-Custom-ID": ["c-7"],
        "X-Consumer-Username": ["alice"],
    }
    by_custom_id = await protect(
        consumer_claims=(("sub",),), consumers=(ALICE, BOB), consumer_by=("custom_id", "username")
    )
    answer = await call(by_custom_id, token=test_issuer.mint(sub="alice"))
    assert consumer_headers(answer) == {
        "X-Consumer-Custom-ID": ["alice"],
        "X-Consumer-Username": ["bob"],
    }


@pytest.mark.parametrize(
    ("fields", "claims", "who"),
    [
        pytest.param({"consumer_by": ("id",)}, {"sub": CAROL.id}, "Carol", id="id"),
        # Kong's cache.lua looks a consumer up by id only when the name is a UUID
        pytest.param(
            {"consumers": (Consumer(id="8f2a", username="x"),), "consumer_by": ("id",)},
            {"sub": "8f2a"},
            None,
            id="id-only-when-a-uuid",
        ),
        pytest.param({"consumer_by": ("username",)}, {"sub": "carol"}, None, id="case-matters"),
        pytest.param(
            {"consumer_by": ("username",), "by_username_ignore_case": True},
            {"sub": "CAROL"},
            "Carol",
            id="ignore-case",
        ),
        pytest.param(
            {"consumer_claims": (("client_id",), ("sub",))},
            {"sub": "alice", "client_id": "nobody"},
            None,
            id="first-claim-found-decides",
        ),
        pytest.param(
            {"consumer_claims": (("client_id",), ("sub",))},
            {"sub": "alice"},
            "alice",
            id="next-path",
        ),
        pytest.param(
            {"consumer_claims": (("client_id",), ("sub",))},
            {"client_id": False, "sub": "alice"},
            "alice",
            id="false-is-not-found",
        ),
        pytest.param(
            {"consumer_claims": (("client_id",), ("sub",))},
            {"client_id": None, "sub": "alice"},
            None,
            id="null-is-found-and-names-no-one",
        ),
        pytest.param(
            {
                "consumers": (Consumer(username="x", custom_id="1 2"),),
                "consumer_by": ("custom_id",),
            },
            {"sub": [1, 2]},
            "x",
            id="list-joined-by-spaces",
        ),
        pytest.param(
            {"consumer_claims": (("user", "names"),), "consumer_by": ("username",)},
            {"user": {"names": ["Carol"]}},
            "Carol",
            id="nested-list",
        ),
        pytest.param({"consumer_by": ("username",)}, {}, None, id="no-claim"),
        pytest.param(
            {"consumers": (Consumer(username="x", custom_id=""),), "consumer_by": ("custom_id",)},
            {"sub": []},
            None,
            id="empty-name",
        ),
    ],
)
async def test_consumer_lookup_follows_kongs_rules(
    fields: dict[str, Any],
    claims: dict[str, Any],
    who: str | None,
    protect: Protect,
    test_issuer: TestIssuer,
) -> None:
    settings = {"consumer_claims": (("sub",),), "consumers": (ALICE, BOB, CAROL)} | fields
    gw = await protect(**settings)
    token = test_issuer.mint(**({"sub": OMIT, "client_id": OMIT} | claims))
    answer = await call(gw, token=token)
    if who is None:
        assert answer.status == 403
        assert answer.json == {"message": "Forbidden"}
        assert answer.headers["WWW-Authenticate"] == (
            'Bearer realm="127.0.0.1", error="insufficient_scope"'
        )
    else:
        assert answer.status == 200
        assert answer.upstream_headers("X-Consumer-Username") == [who]


async def test_an_unmapped_token_passes_as_no_ones_or_as_the_anonymous_consumer(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    token = test_issuer.mint(sub="stranger")
    optional = await protect(
        consumer_claims=(("sub",),), consumers=(ALICE,), consumer_optional=True
    )
    answer = await call(optional, token=token, headers={"X-Consumer-Username": "alice"})
    assert answer.status == 200
    assert consumer_headers(answer) == {}
    guest = Consumer(username="guest")
    anonymous = await protect(
        consumer_claims=(("sub",),),
        consumers=(ALICE, guest),
        anonymous="guest",
        anonymous_consumer=guest,
    )
    answer = await call(anonymous, token=token)
    assert answer.status == 200
    assert consumer_headers(answer) == {
        "X-Consumer-Username": ["guest"],
        "X-Anonymous-Consumer": ["true"],
    }


async def test_requirements_are_checked_before_the_consumer(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(
        consumer_claims=(("sub",),),
        consumers=(ALICE,),
        scopes_required=("admin",),
        display_errors=True,
    )
    token = test_issuer.mint(sub="stranger", scope="read")
    for _ in range(2):  # refused, then refused again from the verified-token cache
        answer = await call(gw, token=token)
        assert answer.status == 403
        assert "scopes_required" in answer.json["message"]
    answer = await call(gw, token=test_issuer.mint(sub="stranger", scope="admin"))
    assert answer.status == 403
    assert answer.json["message"] == "Forbidden (no consumer by username, custom_id for claim sub)"


async def test_an_unmapped_token_is_refused_naming_the_claim_paths_never_a_value(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(
        consumer_claims=(("client_id",), ("user", "names")),
        consumers=(ALICE,),
        display_errors=True,
    )
    answer = await call(gw, token=test_issuer.mint(sub="alice", client_id=OMIT))
    assert answer.status == 403
    assert answer.json == {
        "message": "Forbidden (no claim client_id or user.names to map a consumer by)"
    }
    answer = await call(gw, token=test_issuer.mint(client_id=OMIT, user={"names": "secret"}))
    assert answer.status == 403
    assert answer.json == {
        "message": "Forbidden (no consumer by username, custom_id for claim user.names)"
    }


async def test_a_claim_nested_to_the_limit_is_mapped_and_one_deeper_is_refused(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    """A claim nested as deeply as a token may nest is read like any other (no overflow in
    rendering it), and names no consumer, every time; one level more refuses the token."""
    deep: Any = "alice"
    for _ in range(MAX_CLIENT_NESTING - 1):  # in the payload's object
        deep = [deep]
    gw = await protect(consumer_claims=(("user",),), consumers=(ALICE,))
    token = test_issuer.mint(user=deep)
    assert [(await call(gw, token=token)).status for _ in range(2)] == [403, 403]
    answer = await call(gw, token=test_issuer.mint(user=[deep]))
    assert (answer.status, answer.json) == (401, {"message": "Unauthorized"})


async def test_an_unforeseen_failure_in_the_claims_checks_is_remembered_as_a_refusal(
    protect: Protect,
    test_issuer: TestIssuer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fault injection: whatever goes wrong checking a verified token's claims, the cached
    entry must never come out of it as checked and passed."""

    def broken(self: object, claims: object) -> None:
        raise ValueError("unforeseen")

    monkeypatch.setattr(auth_module.ConsumerMapping, "find", broken)
    gw = await protect(consumer_claims=(("sub",),), consumers=(ALICE,), display_errors=True)
    token = test_issuer.mint(sub="alice")
    answers = [await call(gw, token=token) for _ in range(3)]
    # The same refusal each time: found out, then remembered (the reason shown as any other).
    assert [(a.status, a.json) for a in answers] == [
        (401, {"message": "Unauthorized (token could not be processed)"})
    ] * 3
    # With `anonymous`, that refusal is an anonymous pass, the first time as every later one
    # (it was a 401 first: the fault escaped as itself, past the anonymous branch).
    gw = await protect(consumer_claims=(("sub",),), consumers=(ALICE,), anonymous="guest")
    answers = [await call(gw, token=token) for _ in range(3)]
    assert [a.status for a in answers] == [200] * 3
    for answer in answers:
        assert answer.upstream_headers("X-Anonymous-Consumer") == ["true"]
        assert answer.upstream_headers("Authorization") == []
    faults = [r for r in caplog.records if r.getMessage().startswith("unexpected error checking")]
    assert len(faults) == 2 and all(r.exc_info for r in faults)  # once per route, with its cause


async def test_claims_forbidden_is_kongs_403(protect: Protect, test_issuer: TestIssuer) -> None:
    gw = await protect(claims_forbidden=("act",))
    assert (await call(gw, token=test_issuer.mint())).status == 200
    token = test_issuer.mint(act={"sub": "admin"})
    for _ in range(2):  # verified, then from the verified-token cache
        answer = await call(gw, token=token)
        assert answer.status == 403
        assert answer.json == {"message": "Forbidden"}
        assert answer.headers["WWW-Authenticate"] == (
            'Bearer realm="127.0.0.1", error="insufficient_scope"'
        )


async def test_the_verifying_keys_jwk_and_the_token_go_where_kong_puts_them(
    protect: Protect, test_issuer: TestIssuer
) -> None:
    gw = await protect(
        upstream_access_token_jwk_header="X-Access-Token-JWK",
        downstream_access_token_header="x-token",
        downstream_access_token_jwk_header="X-Token-JWK",
        downstream_headers_claims=("sub",),
        downstream_headers_names=("X-Sub",),
    )
    (published,) = test_issuer.jwks()["keys"]
    token = test_issuer.mint(sub="alice")
    for _ in range(2):  # verified, then from the verified-token cache
        answer = await call(gw, token=token, headers={"X-Access-Token-JWK": "e30="})
        assert answer.status == 200
        (sent,) = answer.upstream_headers("X-Access-Token-JWK")
        assert json.loads(base64.b64decode(sent)) == published
        assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]  # beside it
        assert answer.headers.getall("x-token") == [token]
        assert answer.headers.getall("X-Token-JWK") == [sent]
        assert answer.headers.getall("X-Sub") == ["alice"]  # beside the claims' own
    refused = await call(gw, headers={"X-Access-Token-JWK": "e30="})
    assert refused.status == 401 and "X-Token-JWK" not in refused.headers
    bearer = await protect(downstream_access_token_header="authorization:bearer")
    answer = await call(bearer, token=token)
    assert answer.headers.getall("Authorization") == [f"Bearer {token}"]
