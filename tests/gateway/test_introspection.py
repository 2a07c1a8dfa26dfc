"""introspect_jwt_tokens over real sockets: the gateway asks a scripted RFC 7662 endpoint
about every verified token, as Kong's plugin asks, and answers from what it says."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.gateway.conftest import (
    FAST_KEYS,
    Protect,
    StartGateway,
    make_route,
    make_service,
    serving,
)
from tests.gateway.issuer import OMIT, TestIssuer, self_signed_contexts
from tests.gateway.test_auth import call
from tokengate.gateway import introspection
from tokengate.gateway.oidc_config import Introspection, OidcConfig


class Endpoint:
    """An introspection endpoint whose answer each test sets."""

    def __init__(self) -> None:
        self.asked: list[tuple[dict[str, str], dict[str, str]]] = []  # (headers, form)
        self.status = 200
        self.answer: Any = {"active": True}
        self.delay = 0.0
        self.busy = self.most_busy = 0  # questions being answered at once

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        self.asked.append((dict(request.headers), {k: str(v) for k, v in form.items()}))
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.busy -= 1
        if isinstance(self.answer, bytes):
            return web.Response(status=self.status, body=self.answer)
        return web.json_response(self.answer, status=self.status)


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, TestServer]]:
    scripted = Endpoint()
    async with serving(scripted.handle) as server:
        yield scripted, server


def introspecting(server: TestServer, **fields: Any) -> Introspection:
    values: dict[str, Any] = {
        "endpoint": f"http://127.0.0.1:{server.port}/introspect",
        "auth_method": "client_secret_basic",
        "client_id": "gate way",
        "client_secret": "s3:cr3t",
    }
    return Introspection(**(values | fields))


async def test_an_active_token_passes_with_the_answer_over_its_claims(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    scripted.answer = {"active": True, "scope": "admin", "tenant": "acme", "expires_in": 600}
    gw = await protect(
        introspect_jwt_tokens=introspecting(server),
        scopes_required=("admin",),  # met by the answer's scope, not by the token's
        upstream_headers_claims=("tenant", "sub"),
        upstream_headers_names=("X-Tenant", "X-Sub"),
    )
    token = test_issuer.mint(sub="alice", scope="read")
    for _ in range(2):
        answer = await call(gw, token=token)
        assert answer.status == 200, answer.body
        assert answer.upstream_headers("X-Tenant") == ["acme"]
        assert answer.upstream_headers("X-Sub") == ["alice"]  # the token's, not in the answer
    assert len(scripted.asked) == 1  # the answer is kept for its expires_in
    headers, form = scripted.asked[0]
    assert form == {"token": token, "token_type_hint": "access_token"}
    # RFC 6749 §2.3.1: each part form-encoded, then Basic
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"gate+way:s3%3Acr3t").decode()
    assert headers["Accept"] == "application/json"


async def test_an_inactive_token_is_401_and_the_answer_is_kept(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    scripted.answer = {"active": False}
    gw = await protect(introspect_jwt_tokens=introspecting(server))
    token = test_issuer.mint()
    for _ in range(2):
        answer = await call(gw, token=token)
        assert answer.status == 401
        assert answer.json == {"message": "Unauthorized"}
        assert answer.headers["WWW-Authenticate"] == (
            'Bearer realm="127.0.0.1", error="invalid_token"'
        )
    assert len(scripted.asked) == 1  # cache_ttl: inactive answers are kept too, as in Kong


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        pytest.param(500, {"active": True}, "HTTP 500", id="error-status"),
        pytest.param(200, b"not json", "answer is not JSON", id="not-json"),
        pytest.param(200, ["active"], "answer is not a JSON object", id="not-an-object"),
        pytest.param(200, b"{" * 100_000, "answer over 65536 bytes", id="too-deep-or-too-long"),
        pytest.param(
            200,
            b'{"active": true, "deep": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
            "answer nested deeper than 32",
            id="nested",
        ),
        # not text (Kong's lua-cjson refuses it): it could reach an upstream header only as
        # bytes that are not UTF-8
        pytest.param(
            200,
            b'{"active": true, "sub": "\\ud800"}',
            "answer holds a lone surrogate",
            id="lone-surrogate",
        ),
        pytest.param(
            200,
            b'{"active": true, "\\udfff": 1}',
            "answer holds a lone surrogate",
            id="lone-surrogate-name",
        ),
    ],
)
async def test_an_endpoint_without_a_usable_answer_is_503_and_asked_again(
    status: int,
    body: Any,
    reason: str,
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripted, server = endpoint
    scripted.status, scripted.answer = status, body
    caplog.set_level("INFO", logger="tokengate.auth")
    gw = await protect(introspect_jwt_tokens=introspecting(server))
    token = test_issuer.mint()
    for _ in range(2):
        answer = await call(gw, token=token)
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "5"
        assert b"introspect" not in answer.body  # the reason is logged, not shown
    assert len(scripted.asked) == 2  # a failure is never remembered
    endpoint_url = f"http://127.0.0.1:{server.port}/introspect"
    assert (
        refusals(caplog)
        == [
            f"refused 503 introspection_failed for {test_issuer.issuer}: "
            f"introspection failed: POST {endpoint_url}: {reason}"
        ]
        * 2
    )


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tokengate.auth"]


async def test_no_endpoint_anywhere_is_503(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    test_issuer.discovery_overrides["introspection_endpoint"] = OMIT
    caplog.set_level("INFO", logger="tokengate.auth")
    gw = await protect(
        introspect_jwt_tokens=Introspection(
            endpoint=None, auth_method="none", client_id=None, client_secret=None
        )
    )
    assert (await call(gw, token=test_issuer.mint())).status == 503
    assert refusals(caplog) == [
        f"refused 503 introspection_failed for {test_issuer.issuer}: introspection failed: "
        "no introspection endpoint (none configured, none in discovery)"
    ]


async def test_without_a_configured_endpoint_discoverys_is_asked(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    test_issuer.discovery_overrides["introspection_endpoint"] = (
        f"http://127.0.0.1:{server.port}/discovered"
    )
    gw = await protect(introspect_jwt_tokens=introspecting(server, endpoint=None))
    assert (await call(gw, token=test_issuer.mint())).status == 200
    assert len(scripted.asked) == 1


async def test_a_slow_endpoint_is_503_after_the_timeout(
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripted, server = endpoint
    scripted.delay = 5.0
    caplog.set_level("INFO", logger="tokengate.auth")
    gw = await protect(introspect_jwt_tokens=introspecting(server), timeout=0.2)
    assert (await call(gw, token=test_issuer.mint())).status == 503
    assert refusals(caplog) == [
        f"refused 503 introspection_failed for {test_issuer.issuer}: introspection failed: "
        f"POST http://127.0.0.1:{server.port}/introspect: TimeoutError"
    ]


async def test_concurrent_requests_with_one_token_ask_once(
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripted, server = endpoint
    scripted.delay = 0.2
    gw = await protect(introspect_jwt_tokens=introspecting(server))
    token = test_issuer.mint()
    answers = await asyncio.gather(*(call(gw, token=token) for _ in range(8)))
    assert [a.status for a in answers] == [200] * 8
    assert len(scripted.asked) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("fields", "answer", "asks"),
    [
        pytest.param({"cache": False}, {"active": True}, 3, id="cache-off"),
        pytest.param({}, {"active": True, "expires_in": 0}, 3, id="expires-at-once"),
        pytest.param({"cache_ttl_min": 60}, {"active": True, "expires_in": 0}, 1, id="ttl-min"),
        pytest.param({"cache_ttl_max": 0}, {"active": True}, 1, id="no-exp: cache_ttl"),
        pytest.param(
            {"cache_ttl_min": 60, "cache_ttl_max": 0},
            {"active": True, "expires_in": 0},
            1,
            id="a bound of 0 is none",
        ),
        pytest.param({}, {"active": True, "exp": 1}, 3, id="exp-in-the-past"),
        pytest.param({}, {"active": True, "expires_in": 10**400}, 1, id="no-usable-number"),
        # neither is a number of seconds: cache_ttl
        pytest.param({}, {"active": True, "expires_in": False}, 1, id="expires_in-false"),
        pytest.param({}, {"active": True, "exp": True}, 1, id="exp-true"),
        pytest.param({}, {"active": True, "expires_in": -math.inf}, 1, id="-Infinity"),
        pytest.param({}, {"active": True, "exp": math.nan}, 1, id="NaN"),
        pytest.param(
            {}, {"active": True, "expires_in": 0, "exp": 2**40}, 3, id="expires_in-before-exp"
        ),
    ],
)
async def test_answers_are_kept_as_kong_keeps_them(
    fields: dict[str, Any],
    answer: dict[str, Any],
    asks: int,
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
) -> None:
    scripted, server = endpoint
    scripted.answer = answer
    gw = await protect(introspect_jwt_tokens=introspecting(server, **fields))
    token = test_issuer.mint()
    for _ in range(3):
        assert (await call(gw, token=token)).status == 200
    assert len(scripted.asked) == asks


async def test_client_secret_post_and_kongs_parameter_names(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    settings = introspecting(
        server, auth_method="client_secret_post", token_param_name="access_token", hint="jwt"
    )
    gw = await protect(introspect_jwt_tokens=settings)
    token = test_issuer.mint()
    assert (await call(gw, token=token)).status == 200
    ((headers, form),) = scripted.asked
    assert "Authorization" not in headers
    assert form == {
        "access_token": token,
        "token_type_hint": "jwt",
        "client_id": "gate way",
        "client_secret": "s3:cr3t",
    }


async def test_check_active_off_takes_any_answer(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    scripted.answer = {"active": False}
    gw = await protect(introspect_jwt_tokens=introspecting(server, check_active=False))
    assert (await call(gw, token=test_issuer.mint())).status == 200


async def test_a_token_that_fails_locally_is_never_sent_to_the_issuer(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    gw = await protect(introspect_jwt_tokens=introspecting(server))
    assert (await call(gw, token=test_issuer.mint(exp_in=-60))).status == 401
    assert scripted.asked == []


async def test_nested_claims_fall_back_to_the_tokens_where_the_answer_has_none(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    scripted.answer = {"active": True, "realm_access": {"other": 1}}
    gw = await protect(
        introspect_jwt_tokens=introspecting(server),
        roles_claim=("realm_access", "roles"),
        roles_required=("admin",),
    )
    token = test_issuer.mint(realm_access={"roles": ["admin"]})
    assert (await call(gw, token=token)).status == 200
    scripted.answer = {"active": True, "realm_access": {"roles": ["viewer"]}}  # the answer's wins
    assert (await call(gw, token=test_issuer.mint(realm_access={"roles": ["admin"]}))).status == 403


async def test_a_slow_endpoint_gets_a_bounded_number_of_questions_at_once(
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Many distinct tokens against a slow endpoint: at most MAX_CONCURRENT questions at once
    (the HTTP client's other connections stay free for key fetches), and beyond MAX_WAITING
    tokens awaiting an answer, a 503 at once rather than a queue."""
    scripted, server = endpoint
    caplog.set_level("INFO", logger="tokengate.auth")
    scripted.delay = 0.3
    monkeypatch.setattr(introspection, "MAX_CONCURRENT", 4)
    monkeypatch.setattr(introspection, "MAX_WAITING", 10)
    gw = await protect(introspect_jwt_tokens=introspecting(server))
    answers = await asyncio.gather(*(call(gw, token=test_issuer.mint()) for _ in range(14)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [200] * 10 + [503] * 4
    assert scripted.most_busy == 4
    reasons = {line.partition(": ")[2] for line in refusals(caplog)}
    assert reasons == {"introspection failed: too many tokens awaiting an answer"}


@pytest.mark.parametrize(("others", "asked_again"), [(4, 0), (8, 1)])
async def test_answers_age_out_a_generation_at_a_time(
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
    others: int,
    asked_again: int,
) -> None:
    """token_cache_size bounds each of the two generations: after one generation's worth of
    other tokens an answer is still known (not every answer was dropped), after two it is
    asked for again (the oldest go)."""
    scripted, server = endpoint
    gw = await protect(
        introspect_jwt_tokens=introspecting(server), settings={"token_cache_size": 4}
    )
    first = test_issuer.mint()
    assert (await call(gw, token=first)).status == 200
    for _ in range(others):
        assert (await call(gw, token=test_issuer.mint())).status == 200
    asked = len(scripted.asked)
    assert (await call(gw, token=first)).status == 200
    assert len(scripted.asked) == asked + asked_again


async def test_the_answer_itself_goes_where_kong_puts_it(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    scripted.answer = {"active": True, "scope": "read", "username": "alice"}
    gw = await protect(
        introspect_jwt_tokens=introspecting(server),
        upstream_introspection_header="X-Introspection",
        downstream_introspection_header="X-Introspected",
        downstream_headers_claims=("sub",),
        downstream_headers_names=("X-Sub",),
    )
    token = test_issuer.mint(sub="alice")
    for _ in range(2):  # asked, then the kept answer
        answer = await call(gw, token=token, headers={"X-Introspection": "e30="})
        assert answer.status == 200
        (sent,) = answer.upstream_headers("X-Introspection")
        assert json.loads(base64.b64decode(sent)) == scripted.answer
        assert answer.headers.getall("X-Introspected") == [sent]
        # beside the token's other headers, not instead of them
        assert answer.upstream_headers("Authorization") == [f"Bearer {token}"]
        assert answer.headers.getall("X-Sub") == ["alice"]


async def test_a_slow_endpoint_leaves_another_issuers_questions_alone(
    start_gateway: StartGateway,
    upstream: TestServer,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow, slow_server = endpoint
    slow.delay = 5.0
    monkeypatch.setattr(introspection, "MAX_CONCURRENT", 2)
    fast = Endpoint()
    async with serving(fast.handle) as fast_server:
        service = make_service(upstream.port)
        routes = [
            make_route(
                service,
                (path,),
                oidc=OidcConfig.for_issuer(
                    test_issuer.issuer,
                    introspect_jwt_tokens=introspecting(server),
                    timeout=timeout,
                ),
            )
            for path, server, timeout in (("/a", slow_server, 3.0), ("/b", fast_server, 1.0))
        ]
        gw = await start_gateway(*routes, key_policy=FAST_KEYS)
        stuck = [asyncio.ensure_future(call(gw, "/a", token=test_issuer.mint())) for _ in range(4)]
        await asyncio.sleep(0.3)  # the slow endpoint's turns are all taken
        assert (await call(gw, "/b", token=test_issuer.mint())).status == 200
        assert len(fast.asked) == 1
        for waiting in stuck:
            waiting.cancel()


def padded(size: int) -> bytes:
    """An active answer of exactly `size` bytes."""
    head = b'{"active": true, "pad": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(padded(introspection.MAX_ANSWER), 200, id="64KiB"),
        pytest.param(padded(introspection.MAX_ANSWER + 1), 503, id="a-byte-more"),
        # 32 objects deep, each holding something: the deepest answer taken
        pytest.param(
            b'{"active": true, "deep": ' + b'{"a": ' * 31 + b"1" + b"}" * 32, 200, id="depth-32"
        ),
        pytest.param(
            b'{"active": true, "deep": ' + b'{"a": ' * 32 + b"1" + b"}" * 33, 503, id="depth-33"
        ),
        pytest.param(
            b'{"active": true, "deep": ' + b"[" * 31 + b"1" + b"]" * 31 + b"}", 200, id="list-32"
        ),
        pytest.param(
            b'{"active": true, "deep": ' + b"[" * 32 + b"1" + b"]" * 32 + b"}", 503, id="list-33"
        ),
    ],
)
async def test_an_answer_is_bounded_in_size_and_depth(
    body: bytes,
    status: int,
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
) -> None:
    scripted, server = endpoint
    scripted.answer = body
    gw = await protect(introspect_jwt_tokens=introspecting(server))
    assert (await call(gw, token=test_issuer.mint())).status == status


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"active": "true"}, id="a-string"),
        pytest.param({"active": 1}, id="a-number"),
        pytest.param({"active": None}, id="null"),
        pytest.param({"scope": "admin"}, id="missing"),
    ],
)
async def test_only_active_true_is_active(
    answer: dict[str, Any],
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    scripted, server = endpoint
    scripted.answer = answer
    caplog.set_level("INFO", logger="tokengate.auth")
    gw = await protect(introspect_jwt_tokens=introspecting(server))
    assert (await call(gw, token=test_issuer.mint())).status == 401
    assert refusals(caplog) == [
        f"refused 401 not_active for {test_issuer.issuer}: "
        "the issuer says the token is not active (revoked or expired)"
    ]


async def test_a_redirect_from_the_endpoint_is_not_followed(
    protect: Protect, test_issuer: TestIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    followed: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/elsewhere":
            followed.append(request.path)
            return web.json_response({"active": True})
        raise web.HTTPFound("/elsewhere")

    caplog.set_level("INFO", logger="tokengate.auth")
    async with serving(handle) as server:
        gw = await protect(introspect_jwt_tokens=introspecting(server))
        assert (await call(gw, token=test_issuer.mint())).status == 503
    assert followed == []
    assert refusals(caplog)[0].endswith("/introspect: HTTP 302")


@pytest.mark.parametrize(("ssl_verify", "status"), [(True, 503), (False, 200)])
async def test_ssl_verify_applies_to_the_introspection_endpoint(
    ssl_verify: bool,
    status: int,
    protect: Protect,
    test_issuer: TestIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A self-signed endpoint: refused unless ssl_verify is false, as for any of the issuer's
    endpoints."""
    scripted = Endpoint()
    app = web.Application()
    app.router.add_post("/introspect", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed_contexts()[0])
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    caplog.set_level("INFO", logger="tokengate.auth")
    try:
        gw = await protect(
            introspect_jwt_tokens=Introspection(
                endpoint=f"https://127.0.0.1:{port}/introspect",
                auth_method="none",
                client_id=None,
                client_secret=None,
            ),
            ssl_verify=ssl_verify,
        )
        assert (await call(gw, token=test_issuer.mint())).status == status
    finally:
        await runner.cleanup()
    assert len(scripted.asked) == (1 if status == 200 else 0)
    if status == 503:
        assert refusals(caplog)[0].endswith(
            f"POST https://127.0.0.1:{port}/introspect: ClientConnectorCertificateError"
        )


async def test_the_verifying_keys_jwk_still_goes_upstream(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    _, server = endpoint
    gw = await protect(
        introspect_jwt_tokens=introspecting(server),
        upstream_access_token_jwk_header="X-Jwk",
        downstream_access_token_jwk_header="X-Jwk",
    )
    answer = await call(gw, token=test_issuer.mint())
    assert answer.status == 200
    (sent,) = answer.upstream_headers("X-Jwk")
    assert json.loads(base64.b64decode(sent))["kid"] in test_issuer.keys
    assert answer.headers.getall("X-Jwk") == [sent]


@pytest.mark.parametrize(
    ("claim", "answered", "header"),
    [
        # the answer's value wins whatever the token's: an object over a string ...
        pytest.param("acme", {"id": 7}, base64.b64encode(b'{"id":7}').decode(), id="object"),
        # ... and a string over an object
        pytest.param({"id": 7}, "acme", "acme", id="string"),
    ],
)
async def test_the_answers_value_replaces_a_claim_of_another_kind(
    claim: Any,
    answered: Any,
    header: str,
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
) -> None:
    scripted, server = endpoint
    scripted.answer = {"active": True, "tenant": answered}
    gw = await protect(
        introspect_jwt_tokens=introspecting(server),
        upstream_headers_claims=("tenant",),
        upstream_headers_names=("X-Tenant",),
    )
    answer = await call(gw, token=test_issuer.mint(tenant=claim))
    assert answer.status == 200
    assert answer.upstream_headers("X-Tenant") == [header]


async def test_cache_ttl_max_caps_a_long_expires_in(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    scripted.answer = {"active": True, "expires_in": 600}
    gw = await protect(introspect_jwt_tokens=introspecting(server, cache_ttl_max=0.3))
    token = test_issuer.mint()
    for _ in range(2):
        assert (await call(gw, token=token)).status == 200
    assert len(scripted.asked) == 1  # kept, for cache_ttl_max
    await asyncio.sleep(0.4)
    assert (await call(gw, token=token)).status == 200
    assert len(scripted.asked) == 2  # not for expires_in


async def test_client_secret_basic_form_encodes_a_slash(
    protect: Protect, test_issuer: TestIssuer, endpoint: tuple[Endpoint, TestServer]
) -> None:
    scripted, server = endpoint
    gw = await protect(
        introspect_jwt_tokens=introspecting(server, client_id="a/b", client_secret="c+d/e")
    )
    assert (await call(gw, token=test_issuer.mint())).status == 200
    ((headers, _),) = scripted.asked
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"a%2Fb:c%2Bd%2Fe").decode()


async def test_a_failed_question_nobody_waits_for_logs_no_error(
    protect: Protect,
    test_issuer: TestIssuer,
    endpoint: tuple[Endpoint, TestServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client goes away before the endpoint answers, then the answer is unusable: the
    question's failure is retrieved all the same (no "Task exception was never retrieved")."""
    scripted, server = endpoint
    scripted.status, scripted.delay = 500, 0.3
    gw = await protect(introspect_jwt_tokens=introspecting(server))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(call(gw, token=test_issuer.mint()), 0.1)
    await asyncio.sleep(0.5)  # the question fails with nobody waiting
    gc.collect()
    assert len(scripted.asked) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
