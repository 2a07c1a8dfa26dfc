"""Kong's cors plugin: its config checks, its origin rules, and, over real sockets, its preflight
answered before openid-connect and its headers on every other answer (refusals included)."""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from tests.gateway.conftest import FAST_KEYS, StartGateway, raw_request, serving
from tests.gateway.issuer import TestIssuer
from tests.gateway.test_websocket import SWITCHED, switching, through_gateway
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.config import ConfigError, GatewayConfig, parse_config
from tokengate.gateway.config_checks import Report
from tokengate.gateway.cors import Cors, CorsConfig, parse_cors_config

HEADER = '_format_version: "3.0"\n'
PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}


def load(body: str) -> GatewayConfig:
    return parse_config(HEADER + textwrap.dedent(body), "kong.yaml")


def errors(body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(body)
    return caught.value.errors


def edit_of(config: CorsConfig, origin: str | None) -> CIMultiDict[str]:
    """The headers cors puts on an answer (Kong's header_filter) to a request from `origin`."""
    edit = Cors(config).answer_edit({} if origin is None else {"Origin": origin})
    assert edit is not None
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in edit.lines:
        headers.add(name.decode(), value.decode())
    return headers


# -- the origin rules -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origins", "origin", "allowed", "vary"),
    [
        pytest.param((), "https://a.example", "*", False, id="none-configured"),
        pytest.param(("*",), "https://a.example", "*", False, id="star"),
        pytest.param(("*",), None, "*", False, id="star-without-origin"),
        # One plain origin is sent as it is, whatever the request's origin.
        pytest.param(("https://a.example",), "https://b.example", "https://a.example", True,
                     id="single-plain-sent-as-is"),
        pytest.param(("https://a.example", "https://b.example"), "https://b.example",
                     "https://b.example", True, id="listed"),
        pytest.param(("https://a.example", "https://b.example"), "https://c.example", None, True,
                     id="not-listed"),
        pytest.param(("https://a.example", "https://b.example"), None, None, True,
                     id="listed-without-origin"),
        # The request's origin is normalised: a default port goes, another stays.
        pytest.param(("https://a.example", "http://b.example"), "https://a.example:443",
                     "https://a.example", True, id="default-port-dropped"),
        pytest.param(("https://a.example", "http://b.example"), "https://a.example:8443", None,
                     True, id="other-port-differs"),
        pytest.param(("https://a.example:8443", "http://b.example"), "https://a.example:8443",
                     "https://a.example:8443", True, id="port-listed"),
        # Regexes: anchored at both ends; without ":" matched against the host alone.
        pytest.param((r"(.+\.)?example\.com",), "https://api.example.com",
                     "https://api.example.com", True, id="regex-on-host"),
        pytest.param((r"(.+\.)?example\.com",), "https://example.com.evil.test", None, True,
                     id="regex-anchored-at-end"),
        pytest.param((r"(.+\.)?example\.com",), "https://evilexample.com", None, True,
                     id="regex-anchored-at-start"),
        pytest.param((r"https://(.+\.)?example\.com",), "http://api.example.com", None, True,
                     id="regex-with-scheme-on-domain"),
        pytest.param((r"^https://.+\.example\.com$",), "https://x.example.com:443",
                     "https://x.example.com", True, id="regex-explicitly-anchored"),
        # A "*" among several allows every origin (Kong's loop stops at it).
        pytest.param(("https://a.example", "*"), "https://z.example", "*", True,
                     id="star-among-several"),
        pytest.param(("https://a.example", "*"), None, None, True,
                     id="star-among-several-without-origin"),
        # Browsers send no other Origin: one that is not visible ASCII is never echoed.
        pytest.param(("https://a.example", ".*"), "https://é.example", None, True,
                     id="non-ascii-origin"),
        # A plain origin is compared as text: its "." is no regex wildcard.
        pytest.param(("https://a.example", "https://b.example"), "https://aXexample", None, True,
                     id="plain-dot-is-no-wildcard"),
        # A regex without ":" meets the host alone: no "https://" to match.
        pytest.param((r"api\.example\.com",), "https://api.example.com",
                     "https://api.example.com", True, id="regex-on-host-alone"),
        pytest.param((r"api\.example\.com",), "https://api.example.com.evil.test", None, True,
                     id="regex-on-host-alone-anchored"),
        # An origin without a host is matched whole, as Kong's normalisation leaves it.
        pytest.param((r"https?.*",), "http://:80", "http://:80", True,
                     id="hostless-origin-matched-whole"),
        # Kong anchors a regex unless it ends in "$", even an escaped one.
        pytest.param((r"https://a\.example\$",), "https://a.example$x", "https://a.example$x",
                     True, id="escaped-dollar-left-unanchored"),
    ],
)  # fmt: skip
def test_origin_rules(
    origins: tuple[str, ...], origin: str | None, allowed: str | None, vary: bool
) -> None:
    headers = edit_of(CorsConfig(origins=origins), origin)
    assert headers.get("Access-Control-Allow-Origin") == allowed
    assert ("Vary" in headers) is vary
    assert "Access-Control-Allow-Credentials" not in headers
    assert "Access-Control-Expose-Headers" not in headers  # none configured


def test_credentials() -> None:
    listed = CorsConfig(origins=("https://a.example", "https://b.example"), credentials=True)
    headers = edit_of(listed, "https://b.example")
    assert headers["Access-Control-Allow-Origin"] == "https://b.example"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    # Credentials cannot go with "*": the request's own origin is sent instead, and Vary says so.
    anyone = CorsConfig(credentials=True)
    headers = edit_of(anyone, "https://z.example:443")
    assert headers["Access-Control-Allow-Origin"] == "https://z.example:443"  # as sent
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert headers.getall("Vary") == ["Origin"]
    headers = edit_of(anyone, None)
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in headers


def test_no_origin_and_allow_origin_absent_off_leaves_the_answer_alone() -> None:
    assert Cors(CorsConfig(allow_origin_absent=False)).answer_edit({}) is None
    assert Cors(CorsConfig(allow_origin_absent=False)).answer_edit({"Origin": "null"}) is not None


def test_exposed_headers_only_on_answers() -> None:
    config = CorsConfig(exposed_headers=("X-Total", "ETag"))
    assert edit_of(config, "https://a.example")["Access-Control-Expose-Headers"] == "X-Total,ETag"
    preflight = Cors(config).preflight(PREFLIGHT)
    assert "Access-Control-Expose-Headers" not in preflight.headers


def test_preflight_answer() -> None:
    config = CorsConfig(
        origins=("https://app.example", "https://other.example"),
        methods=("GET", "POST"),
        max_age=3600,
        credentials=True,
        private_network=True,
    )
    asked = {
        **PREFLIGHT,
        "Access-Control-Request-Headers": "Authorization, X-Trace",
        "Access-Control-Request-Private-Network": "true",
    }
    answer = Cors(config).preflight(asked)
    assert answer.status == 200
    assert answer.body is None
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert answer.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert answer.headers["Access-Control-Allow-Headers"] == "Authorization, X-Trace"  # echoed
    assert answer.headers["Access-Control-Max-Age"] == "3600"
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert answer.headers["Access-Control-Allow-Private-Network"] == "true"
    assert answer.headers["Vary"] == "Origin"
    # Kong's defaults: every method, no max age, headers configured win over those asked.
    plain = Cors(CorsConfig(headers=("Authorization",))).preflight(asked)
    assert plain.headers["Access-Control-Allow-Methods"] == (
        "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
    )
    assert plain.headers["Access-Control-Allow-Headers"] == "Authorization"
    assert plain.headers["Access-Control-Allow-Origin"] == "*"
    for absent in ("Access-Control-Max-Age", "Access-Control-Allow-Private-Network", "Vary"):
        assert absent not in plain.headers


# -- config ---------------------------------------------------------------------------------


def test_config_defaults_and_precedence() -> None:
    config = load(
        """
        services:
        - name: s
          url: http://127.0.0.1:9
          plugins:
          - name: cors
            config: {origins: [https://service.example]}
          routes:
          - name: own
            paths: [/own]
            plugins:
            - name: cors
              config:
                origins: ["https://(.+\\\\.)?app\\\\.example"]
                methods: [GET, POST]
                max_age: 600
                credentials: true
          - name: inherits
            paths: [/inherits]
          - name: disabled-here
            paths: [/disabled]
            plugins:
            - {name: cors, enabled: false}
        - name: t
          url: http://127.0.0.1:9
          routes:
          - {name: global, paths: [/global]}
        plugins:
        - name: cors
        """
    )
    routes = {route.name: route for route in config.routes}
    own = routes["own"].cors
    assert own == CorsConfig(
        origins=(r"https://(.+\.)?app\.example",),
        methods=("GET", "POST"),
        max_age=600,
        credentials=True,
    )
    assert routes["inherits"].cors == CorsConfig(origins=("https://service.example",))
    # A disabled instance is absent: the next one in Kong's precedence applies.
    assert routes["disabled-here"].cors == CorsConfig(origins=("https://service.example",))
    assert routes["global"].cors == CorsConfig()
    assert [plugin.name for plugin in routes["global"].plugins] == ["cors"]
    # the raw config, as a read-only copy, beside the typed one
    assert [plugin.config for plugin in routes["inherits"].plugins] == [
        {"origins": ["https://service.example"]}
    ]
    assert dict(routes["global"].plugins[0].config) == {}
    assert not any("cors" in warning for warning in config.warnings)


@pytest.mark.parametrize(
    ("plugin", "line"),
    [
        ("{name: cors, config: {origins: ['https://(a.example']}}",
         "plugins[0].config.origins[0]: 'https://(a.example' is not a valid origin or regex"),
        ("{name: cors, config: {origins: ['(?=x)a']}}",
         "plugins[0].config.origins[0]: '(?=x)a' is not a valid origin or regex"),
        ("{name: cors, config: {methods: [get]}}",
         "plugins[0].config.methods[0]: must be one of GET, HEAD, PUT, PATCH, POST, DELETE, "
         "OPTIONS, TRACE, CONNECT, got 'get'"),
        ("{name: cors, config: {credentials: 'yes'}}",
         "plugins[0].config.credentials: expected a boolean, got a string"),
        ("{name: cors, config: {max_age: ten}}",
         "plugins[0].config.max_age: expected a number, got a string"),
        ("{name: cors, config: {origin: '*'}}", "plugins[0].config.origin: unknown field"),
        ("{name: cors, config: {exposed_headers: ['X-Ä']}}",
         "plugins[0].config.exposed_headers[0]: 'X-Ä' is not printable ASCII"),
        ("{name: cors, config: [origins]}", "plugins[0].config: expected a mapping, got a list"),
        ("{name: cors, consumer: alice}",
         "plugins[0].consumer: 'cors' cannot be scoped to a consumer"),
    ],
)  # fmt: skip
def test_config_errors(plugin: str, line: str) -> None:
    body = f"consumers:\n- username: alice\nplugins:\n- {plugin}\n"
    found = errors(body)
    assert any(line in error for error in found), found


def test_duplicate_cors_on_one_scope_is_an_error() -> None:
    found = errors("plugins:\n- name: cors\n- name: cors\n")
    assert found == [
        "kong.yaml: plugins[1]: duplicate 'cors' plugin on the same scope as plugins[0]"
    ]


def test_cors_under_a_consumer_is_an_error() -> None:
    found = errors("consumers:\n- username: alice\n  plugins:\n  - name: cors\n")
    line = "kong.yaml: consumers[0].plugins[0].name: 'cors' cannot be scoped to a consumer"
    assert found == [line]


def test_a_wildcard_subdomain_origin_is_warned_about() -> None:
    config = load(
        "plugins:\n- name: cors\n  config: {origins: [x.test, 'https://*.example.com']}\n"
    )
    (warning,) = config.warnings
    assert warning == (
        "kong.yaml: plugins[0].config.origins[1]: 'https://*.example.com' is a regular "
        "expression, as Kong reads it, where '*' repeats the character before it, so it matches "
        "no subdomain: to allow any subdomain, write for example 'https://(.+\\.)?example\\.com'"
    )
    # It loads, as in Kong, and means there what it means here: the "/" repeated.
    cors = Cors(CorsConfig(origins=("https://*.example.com",)))
    assert cors.answer_edit({"Origin": "https://a.example.com"}) == cors.answer_edit({})


def test_an_origin_regex_with_a_top_level_alternation_is_warned_about() -> None:
    """Kong appends "$" to a regex origin: with a "|" outside any group only the last
    alternative is anchored at the end, and every other one allows any longer origin that
    starts with it, here as in Kong. It loads as in Kong, with a warning that says how to
    anchor them all."""
    origin = r"https://a\.example|https://b\.example"
    config = load(
        "plugins:\n- name: cors\n  config:\n"
        f"    origins: ['{origin}', 'https://(a|b)\\.example', '[|]x', 'a\\|b']\n"
    )
    (warning,) = config.warnings  # a "|" in a group, a class or escaped is no alternation
    assert warning == (
        f"kong.yaml: plugins[0].config.origins[0]: '{origin}' is a regular expression whose '|' "
        "is outside any group: as Kong anchors it, only its last alternative must reach the "
        "origin's end, and the others allow any longer origin that starts with them; to anchor "
        f"them all, write '({origin})'"
    )
    evil = "https://a.example.evil.test"
    assert "Access-Control-Allow-Origin" in edit_of(CorsConfig(origins=(origin,)), evil)
    assert "Access-Control-Allow-Origin" not in edit_of(CorsConfig(origins=(f"({origin})",)), evil)


# -- over real sockets, in front of openid-connect ------------------------------------------


async def upstream_cors(request: web.Request) -> web.StreamResponse:
    """An upstream that sends CORS headers of its own; on /big, a chunked body (streamed)."""
    headers = {
        "Access-Control-Allow-Origin": "https://upstream.example",
        "Access-Control-Allow-Credentials": "false",
        "Vary": "Accept-Encoding",
        "X-Big": "no",
    }
    if request.path != "/big":
        return web.json_response({"path": request.path}, headers=headers)
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"x" * 300_000)
    await response.write_eof()
    return response


@pytest.fixture
async def cors_upstream() -> AsyncIterator[TestServer]:
    async with serving(upstream_cors) as server:
        yield server


async def gateway_of(start_gateway: StartGateway, yaml_text: str) -> GatewayServer:
    config = load(yaml_text)
    return await start_gateway(*config.routes, key_policy=FAST_KEYS)


def protected(upstream: TestServer, issuer: TestIssuer, cors: str, oidc: str = "") -> str:
    return f"""
        services:
        - name: api
          url: http://127.0.0.1:{upstream.port}
          routes:
          - name: api
            paths: [/]
          plugins:
          - name: openid-connect
            config: {{issuer: "{issuer.issuer}", auth_methods: [bearer]{oidc}}}
          - name: cors
            config: {cors}
        """


async def credentialed(
    start_gateway: StartGateway,
    upstream: TestServer,
    issuer: TestIssuer,
    *,
    cors: str = "",
    oidc: str = "",
) -> GatewayServer:
    """openid-connect and a cors allowing two origins with credentials (`cors`, `oidc`: more
    fields of each, as YAML flow text)."""
    allowed = f"{{origins: [https://a.example, https://app.example], credentials: true{cors}}}"
    return await gateway_of(start_gateway, protected(upstream, issuer, allowed, oidc))


async def fetch(
    gw: GatewayServer,
    path: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"http://127.0.0.1:{gw.proxy_port}{path}", headers=headers, **kwargs
        ) as resp,
    ):
        return resp.status, resp.headers, await resp.read()


async def test_preflight_is_answered_before_openid_connect(
    start_gateway: StartGateway, cors_upstream: TestServer, test_issuer: TestIssuer
) -> None:
    gw = await gateway_of(
        start_gateway,
        protected(cors_upstream, test_issuer, "{origins: [https://app.example], max_age: 60}"),
    )
    status, headers, body = await fetch(gw, method="OPTIONS", headers=PREFLIGHT)
    assert (status, body) == (200, b"")
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Max-Age"] == "60"
    assert "WWW-Authenticate" not in headers
    assert "X-Request-Id" in headers
    # An OPTIONS that is no preflight (no Access-Control-Request-Method) meets openid-connect.
    status, headers, _ = await fetch(gw, method="OPTIONS", headers={"Origin": "https://x.test"})
    assert status == 401
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_refusals_carry_the_cors_headers(
    start_gateway: StartGateway, cors_upstream: TestServer, test_issuer: TestIssuer
) -> None:
    """A browser script can read why it was refused (Kong's header_filter runs on them too)."""
    gw = await credentialed(
        start_gateway, cors_upstream, test_issuer, oidc=", scopes_required: [admin]"
    )
    origin = {"Origin": "https://app.example"}
    for token, status in ((None, 401), ("garbage", 401), (test_issuer.mint(), 403)):
        sent = origin if token is None else {**origin, "Authorization": f"Bearer {token}"}
        got, headers, _ = await fetch(gw, headers=sent)
        assert got == status
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert headers.getall("Vary") == ["Origin"]
        assert headers["WWW-Authenticate"].startswith("Bearer ")
    # HTTP/1.0: the refusal aiohttp writes gets them too.
    answer = await raw_request(
        gw.proxy_port, b"GET / HTTP/1.0\r\nHost: x\r\nOrigin: https://app.example\r\n\r\n"
    )
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.0 401") or head.startswith(b"HTTP/1.1 401")
    assert b"\r\nAccess-Control-Allow-Origin: https://app.example" in head


@pytest.mark.parametrize("path", ["/", "/big"], ids=["buffered", "streamed"])
async def test_upstream_answers_get_the_cors_headers_in_place_of_its_own(
    path: str, start_gateway: StartGateway, cors_upstream: TestServer, test_issuer: TestIssuer
) -> None:
    gw = await credentialed(
        start_gateway, cors_upstream, test_issuer, cors=", exposed_headers: [X-Big]"
    )
    token = {"Authorization": f"Bearer {test_issuer.mint()}"}
    status, headers, _ = await fetch(gw, path, headers={**token, "Origin": "https://app.example"})
    assert status == 200
    assert headers.getall("Access-Control-Allow-Origin") == ["https://app.example"]
    assert headers.getall("Access-Control-Allow-Credentials") == ["true"]
    assert headers["Access-Control-Expose-Headers"] == "X-Big"
    assert headers.getall("Vary") == ["Accept-Encoding", "Origin"]  # added to the upstream's
    # An origin not allowed: no Access-Control-Allow-Origin at all, not even the upstream's.
    status, headers, _ = await fetch(gw, path, headers={**token, "Origin": "https://evil.test"})
    assert status == 200
    assert "Access-Control-Allow-Origin" not in headers


async def test_preflight_continue_hands_the_preflight_on(
    start_gateway: StartGateway, cors_upstream: TestServer, test_issuer: TestIssuer
) -> None:
    cors = "{preflight_continue: true}"
    gated = await gateway_of(start_gateway, protected(cors_upstream, test_issuer, cors))
    status, headers, _ = await fetch(gated, method="OPTIONS", headers=PREFLIGHT)
    assert status == 401  # openid-connect's run_on_preflight (default true) decides
    assert "Access-Control-Allow-Methods" not in headers
    assert "Access-Control-Allow-Origin" not in headers  # cors adds nothing to it
    open_ = await gateway_of(
        start_gateway, protected(cors_upstream, test_issuer, cors, ", run_on_preflight: false")
    )
    status, headers, _ = await fetch(open_, method="OPTIONS", headers=PREFLIGHT)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://upstream.example"  # its own


async def test_route_without_cors_is_untouched(
    start_gateway: StartGateway, cors_upstream: TestServer
) -> None:
    gw = await gateway_of(
        start_gateway,
        f"""
        services:
        - name: api
          url: http://127.0.0.1:{cors_upstream.port}
          routes:
          - {{name: with, paths: [/with], plugins: [{{name: cors}}]}}
          - {{name: without, paths: [/without]}}
        """,
    )
    status, headers, _ = await fetch(gw, "/with", method="OPTIONS", headers=PREFLIGHT)
    assert (status, headers["Access-Control-Allow-Origin"]) == (200, "*")
    status, headers, _ = await fetch(gw, "/without", headers={"Origin": "https://app.example"})
    assert (status, headers["Access-Control-Allow-Origin"]) == (200, "https://upstream.example")
    status, headers, _ = await fetch(gw, "/with")  # no Origin: allow_origin_absent (default on)
    assert headers.getall("Access-Control-Allow-Origin") == ["*"]


CONFIGS = [
    CorsConfig(),
    CorsConfig(origins=("https://a.example",), credentials=True),
    CorsConfig(origins=("https://a.example", r"(.+\.)?b\.example", "*"), credentials=True),
    CorsConfig(origins=("https://a.example", r"https?://.*"), exposed_headers=("X-A",)),
]


@settings(max_examples=300, deadline=None)
@given(
    origin=st.one_of(
        st.none(),
        st.text(max_size=60),
        st.builds(
            "{}://{}{}".format,
            st.sampled_from(["http", "https", "HTTP", "", "a+b"]),
            st.text(alphabet="ab.-:[]@0123456789/é", max_size=20),
            st.sampled_from(["", ":80", ":443", ":", ":8x"]),
        ),
    ),
    config=st.sampled_from(CONFIGS),
)
def test_any_origin_gets_an_answer_never_an_exception(
    origin: str | None, config: CorsConfig
) -> None:
    """Whatever a client sends as its Origin, cors decides (no 500) and writes only visible
    ASCII into the answer's headers."""
    sent = {} if origin is None else {"Origin": origin, "Access-Control-Request-Method": "GET"}
    edit = Cors(config).answer_edit(sent)
    assert edit is not None
    for name, value in edit.lines:
        assert value.decode("ascii").isprintable(), (name, value)
    answer = Cors(config).preflight(sent)
    for value in answer.headers.values():
        assert value.isascii() and value.isprintable()


# -- what the first review found -------------------------------------------------------------


def test_duplicate_origins_count_as_kong_counts_them() -> None:
    """Two origins, even the same twice, are matched against the request's; one is sent as it
    is. Merging them would allow every origin."""
    config = CorsConfig(origins=("https://a.example", "https://a.example"))
    assert "Access-Control-Allow-Origin" not in edit_of(config, "https://evil.example")
    assert (
        edit_of(config, "https://a.example")["Access-Control-Allow-Origin"] == "https://a.example"
    )
    stars = CorsConfig(origins=("*", "*"))
    assert "Access-Control-Allow-Origin" not in edit_of(stars, None)


def test_duplicates_are_kept_when_the_config_loads() -> None:
    config = load(
        "services: [{name: s, host: up, routes: [{name: r, paths: [/]}]}]\n"
        "plugins:\n- name: cors\n"
        "  config: {origins: [https://a.example, https://a.example], methods: [GET, GET]}\n"
    )
    cors = config.routes[0].cors
    assert cors is not None
    assert cors.origins == ("https://a.example", "https://a.example")
    assert cors.methods == ("GET", "GET")


def test_an_empty_allowed_header_list_entry_is_sent_not_the_requested_ones() -> None:
    answer = Cors(CorsConfig(headers=("",))).preflight(
        {**PREFLIGHT, "Access-Control-Request-Headers": "X-Secret"}
    )
    assert answer.headers["Access-Control-Allow-Headers"] == ""


def test_credentials_without_origin_leave_the_upstreams_credentials_header() -> None:
    """Kong sets Access-Control-Allow-Credentials only when it has something to say."""
    edit = Cors(CorsConfig(credentials=True)).answer_edit({})
    assert edit is not None
    assert b"access-control-allow-credentials" not in edit.drop
    listed = Cors(CorsConfig(origins=("https://a", "https://b"), credentials=True)).answer_edit({})
    assert listed is not None and b"access-control-allow-credentials" in listed.drop


@pytest.mark.parametrize(
    ("plugin", "line"),
    [
        # "a\" is no regex as written, though Kong's anchoring would make it one ("a\$")
        ("{name: cors, config: {origins: ['a\\']}}",
         "plugins[0].config.origins[0]: 'a\\' is not a valid origin or regex"),
        # scoped to a group, it never applies here, but its config is still checked
        ("{name: cors, consumer_group: g, config: {origins: ['(bad']}}",
         "plugins[0].config.origins[0]: '(bad' is not a valid origin or regex"),
    ],
)  # fmt: skip
def test_more_config_errors(plugin: str, line: str) -> None:
    found = errors(f"consumer_groups: [{{name: g}}]\nplugins:\n- {plugin}\n")
    assert any(line in error for error in found), found


def test_cors_scoped_to_a_consumer_group_is_warned_about() -> None:
    config = load("consumer_groups: [{name: g}]\nplugins:\n- {name: cors, consumer_group: g}\n")
    assert config.warnings[-1] == (
        "kong.yaml: plugins[0].consumer_group: tokengate gives no request a consumer group: "
        "this cors never applies"
    )


def cors_route(upstream_port: int, issuer: TestIssuer | None = None) -> str:
    oidc = (
        f"  - name: openid-connect\n    config: {{issuer: '{issuer.issuer}'}}\n" if issuer else ""
    )
    return (
        f"services:\n- name: api\n  url: http://127.0.0.1:{upstream_port}\n"
        "  routes: [{name: api, paths: [/]}]\n  plugins:\n"
        "  - name: cors\n    config: {origins: [https://a.example, https://app.example]}\n" + oidc
    )


def head_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[0]


ALLOWED = b"\r\nAccess-Control-Allow-Origin: https://app.example\r\n"


async def test_answers_that_close_the_connection_carry_the_cors_headers(
    start_gateway: StartGateway, cors_upstream: TestServer, test_issuer: TestIssuer
) -> None:
    """413 and 408 (before or as the body streams), 501 and an Expect refusal are written and
    the connection closed at once: they get the headers all the same (Kong's header_filter
    runs on them)."""
    config = load(cors_route(cors_upstream.port, test_issuer))
    gw = await start_gateway(
        *config.routes, key_policy=FAST_KEYS, max_body_size=1024, client_body_timeout=0.3
    )
    token = test_issuer.mint()
    sent = {
        "stalled body": b"POST / HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
        b"Authorization: Bearer %b\r\nContent-Length: 10\r\n\r\nabc" % token.encode(),
        "stalled streamed body": b"POST / HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
        b"Authorization: Bearer %b\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        % token.encode(),
        "too large as it streams": b"POST / HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
        b"Authorization: Bearer %b\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n"
        % (token.encode(), 2000, b"a" * 2000),
        "too large": b"POST / HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
        b"Authorization: Bearer %b\r\nContent-Length: 5000\r\n\r\n" % token.encode(),
        "not implemented": b"POST / HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
        b"Authorization: Bearer %b\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" % token.encode(),
        "expect, refused": b"POST / HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
        b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n",
        "expect, refused, HTTP/1.0": b"POST / HTTP/1.0\r\nHost: x\r\n"
        b"Origin: https://app.example\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    }
    for what, request in sent.items():
        head = head_of(await raw_request(gw.proxy_port, request, timeout=3))
        assert head.split(b" ")[1] in (b"413", b"408", b"501", b"401"), (what, head)
        assert head.count(b"Access-Control-Allow-Origin") == 1, (what, head)
        assert ALLOWED in head + b"\r\n", (what, head)


async def test_gateway_errors_and_http10_relays_carry_them_once(
    start_gateway: StartGateway, cors_upstream: TestServer, test_issuer: TestIssuer
) -> None:
    down = load(cors_route(unused_port()))
    gw = await start_gateway(*down.routes)
    status, headers, _ = await fetch(gw, headers={"Origin": "https://app.example"})
    assert status == 502
    assert headers.getall("Access-Control-Allow-Origin") == ["https://app.example"]
    assert headers.getall("Vary") == ["Origin"]
    up = load(cors_route(cors_upstream.port))
    gw = await start_gateway(*up.routes)
    head = head_of(
        await raw_request(
            gw.proxy_port, b"GET / HTTP/1.0\r\nHost: x\r\nOrigin: https://app.example\r\n\r\n"
        )
    )
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    assert head.count(b"Access-Control-Allow-Origin") == 1 and ALLOWED in head + b"\r\n"
    assert head.lower().count(b"\r\nvary: origin") == 1


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_preflight_with_a_body_announced_by_expect_closes(
    start_gateway: StartGateway, cors_upstream: TestServer
) -> None:
    """Its body may come later or never (no 100 Continue invited it): what the client sends
    next cannot be told from a next request, so the connection closes after the 200."""
    gw = await start_gateway(*load(cors_route(cors_upstream.port)).routes)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(
            b"OPTIONS / HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
            b"Access-Control-Request-Method: PUT\r\nExpect: 100-continue\r\n"
            b"Content-Length: 14\r\n\r\n"
        )
        async with asyncio.timeout(3):
            answer = await reader.read()  # to the end: the gateway closes
        assert answer.startswith(b"HTTP/1.1 200")
        assert b"\r\nConnection: close\r\n" in answer
    finally:
        writer.close()


async def test_a_websocket_switch_carries_the_cors_headers(start_gateway: StartGateway) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    answer = SWITCHED.replace(b"\r\n\r\n", b"\r\nAccess-Control-Allow-Origin: https://up\r\n\r\n")
    async with switching(hold, answer) as upstream:
        gw = await start_gateway(*load(cors_route(upstream.port)).routes)
        async with through_gateway(gw.proxy_port, extra=b"Origin: https://app.example\r\n") as (
            head,
            _,
            _,
        ):
            assert head.startswith(b"HTTP/1.1 101")
            assert head.count(b"Access-Control-Allow-Origin") == 1 and ALLOWED in head


def test_protocols_of_any_shape_are_checked_not_a_traceback() -> None:
    found = errors("plugins:\n- {name: cors, protocols: [[http], {a: 1}]}\n")
    assert found == [
        "kong.yaml: plugins[0].protocols[0]: expected a string, got a list",
        "kong.yaml: plugins[0].protocols[1]: expected a string, got a mapping",
    ]
    config = load("plugins:\n- {name: cors, protocols: [grpc]}\n")
    assert config.warnings == (
        "kong.yaml: plugins[0].protocols: ignored: tokengate runs cors on http and https",
    )
    assert load("plugins:\n- {name: cors, protocols: [http, https]}\n").warnings == ()


# ---- pinned after a mutation run: normalisation, credentials, preflight names, config fields ---


@pytest.mark.parametrize(
    ("origin", "echoed"),
    [
        ("https://a.example:443", "https://a.example"),
        ("https://a.example:", "https://a.example:"),  # LuaSocket keeps an empty port
        ("https://a.example/x/y", "https://a.example"),  # the authority ends at the first "/"
        ("https://u@a.example", "https://a.example"),  # user info goes
        ("https://u@v@a.example", "https://v@a.example"),  # up to the first "@" only
        ("http://[::1]", "http://::1"),  # brackets dropped, as Kong writes the host
        ("http://[::1]:8080", "http://::1:8080"),  # the port after the last ":"
        ("http://[::1]:80", "http://::1"),
        ("http://[a.example", "http://[a.example"),  # no closing bracket: kept
        ("//a.example", "a.example"),  # no scheme: none written
        # LuaSocket takes "[...]" for an IPv6 host only with something inside ("^%[(.+)%]$")
        ("http://[]", "http://[]"),
        ("http://[]:8080", "http://[]:8080"),
    ],
)
def test_an_allowed_origin_is_echoed_normalised_as_kong_normalises_it(
    origin: str, echoed: str
) -> None:
    headers = edit_of(CorsConfig(origins=(".*",)), origin)
    assert headers["Access-Control-Allow-Origin"] == echoed


def test_an_empty_bracketed_host_is_not_an_origin_without_a_host() -> None:
    """ "http://[]" has the host "[]" for Kong, so the listed "http://" (no host) is not it."""
    headers = edit_of(CorsConfig(origins=("http://", "https://b.example")), "http://[]")
    assert "Access-Control-Allow-Origin" not in headers


def test_credentials_never_echo_an_origin_the_config_does_not_name() -> None:
    """One plain origin is sent as it is to every requester, credentials or not; only "*"
    (alone or among several) is replaced by the request's own origin."""
    single = CorsConfig(origins=("https://a.example",), credentials=True)
    headers = edit_of(single, "https://evil.example")
    assert headers.getall("Access-Control-Allow-Origin") == ["https://a.example"]
    assert headers.getall("Vary") == ["Origin"]
    preflight = Cors(single).preflight({**PREFLIGHT, "Origin": "https://evil.example"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    starred = CorsConfig(origins=("https://a.example", "*"), credentials=True)
    headers = edit_of(starred, "https://z.example")
    assert headers.getall("Access-Control-Allow-Origin") == ["https://z.example"]
    assert headers.getall("Access-Control-Allow-Credentials") == ["true"]
    assert headers.getall("Vary") == ["Origin", "Origin"]  # Kong adds it twice here


def test_a_preflight_with_credentials_allowed_from_anywhere_echoes_the_origin() -> None:
    anyone = Cors(CorsConfig(credentials=True))
    answer = anyone.preflight({**PREFLIGHT, "Origin": "https://z.example:443"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://z.example:443"  # as sent
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert answer.headers["Vary"] == "Origin"
    # An Origin cors may not echo (not visible ASCII) gets "*" and no credentials.
    answer = anyone.preflight({**PREFLIGHT, "Origin": "https://é.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in answer.headers
    assert "Vary" not in answer.headers


def test_preflight_header_names_are_written_as_kong_writes_them() -> None:
    listed = CorsConfig(
        origins=("https://app.example", "https://b.example"),
        headers=("Authorization", "X-Trace"),
        max_age=1e20,
        credentials=True,
        private_network=True,
    )
    asked = {**PREFLIGHT, "Access-Control-Request-Private-Network": "true"}
    answer = Cors(listed).preflight(asked)
    assert dict(answer.headers) == {
        "Server": "tokengate",
        "Access-Control-Allow-Origin": "https://app.example",
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
        "Access-Control-Allow-Headers": "Authorization,X-Trace",
        "Access-Control-Allow-Methods": "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT",
        "Access-Control-Max-Age": "1e+20",  # LuaJIT's tostring
        "Access-Control-Allow-Private-Network": "true",
    }
    assert list(answer.headers) == list(dict(answer.headers))  # one line each
    anyone = Cors(CorsConfig(credentials=True)).preflight(PREFLIGHT)
    assert dict(anyone.headers) == {
        "Server": "tokengate",
        "Access-Control-Allow-Origin": "https://app.example",
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
        "Access-Control-Allow-Methods": "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT",
    }


def test_an_upstreams_expose_headers_give_way_to_the_configured_ones() -> None:
    edit = Cors(CorsConfig(exposed_headers=("X-Total",))).answer_edit(PREFLIGHT)
    assert edit is not None
    upstream = [
        (b"access-control-expose-headers", b"X-Secret"),
        (b"Access-Control-Allow-Origin", b"https://up.example"),
        (b"X-Total", b"3"),
    ]
    kept, added = edit.upstream(upstream, ((b"X-Other", b"1"),))
    assert kept == [(b"X-Total", b"3")]
    assert added == (
        (b"X-Other", b"1"),
        (b"Access-Control-Allow-Origin", b"*"),
        (b"Access-Control-Expose-Headers", b"X-Total"),
    )
    # Without exposed_headers, the upstream's own stays.
    plain = Cors(CorsConfig()).answer_edit(PREFLIGHT)
    assert plain is not None
    kept, _ = plain.upstream(upstream, ())
    assert kept == [(b"access-control-expose-headers", b"X-Secret"), (b"X-Total", b"3")]


def test_every_config_field_is_read_from_the_file() -> None:
    config = load(
        "services: [{name: s, host: up, routes: [{name: r, paths: [/]}]}]\n"
        "plugins:\n- name: cors\n"
        "  config:\n"
        "    origins: ['*', https://a.example]\n"
        "    headers: [Authorization, Authorization, X-Trace]\n"
        "    exposed_headers: [X-Total, X-Total]\n"
        "    max_age: -1\n"  # Kong's schema: any number
        "    private_network: true\n"
        "    preflight_continue: true\n"
        "    allow_origin_absent: false\n"
    )
    assert config.routes[0].cors == CorsConfig(
        origins=("*", "https://a.example"),
        headers=("Authorization", "Authorization", "X-Trace"),
        exposed_headers=("X-Total", "X-Total"),
        max_age=-1,
        private_network=True,
        preflight_continue=True,
        allow_origin_absent=False,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("headers", ["X-\n"], "headers[0]: 'X-\\n' is not printable ASCII"),
        ("headers", "X-A", "headers: expected a list"),
        ("private_network", "yes", "private_network: expected a boolean, got a string"),
        ("allow_origin_absent", 1, "allow_origin_absent: expected a boolean"),
        ("preflight_continue", "no", "preflight_continue: expected a boolean"),
    ],
)
def test_a_config_with_an_error_is_none_and_the_error_names_its_field(
    field: str, value: Any, message: str
) -> None:
    report = Report("kong.yaml")
    assert parse_cors_config({field: value}, "plugins[0].config", report) is None
    (error,) = report.errors
    assert error.startswith(f"kong.yaml: plugins[0].config.{message}"), error
