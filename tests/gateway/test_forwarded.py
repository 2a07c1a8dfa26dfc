"""Routes whose protocols leave out http, and X-Forwarded-* from trusted proxies (Kong's
trusted_ips): real gateways on port 0 in front of an echoing upstream."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from ipaddress import ip_network
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from tests.gateway.conftest import StartGateway, make_route, make_service, raw_request, serving
from tests.gateway.issuer import TestIssuer
from tokengate.cli import build_parser
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.config import load_config
from tokengate.gateway.forwarded import (
    Forwarded,
    TrustedPeers,
    forwarded_headers,
    host_name,
    redirect_host,
    routing_host,
)
from tokengate.gateway.oidc_config import OidcConfig

LOCAL = (ip_network("127.0.0.0/8"), ip_network("::1/128"))
ELSEWHERE = (ip_network("10.0.0.0/8"),)


async def echo_headers(request: web.Request) -> web.Response:
    return web.json_response({k.lower(): v for k, v in request.headers.items()})


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    async with serving(echo_headers) as server:
        yield server


async def get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}{path}", headers=headers, allow_redirects=False
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def secure_and_open(
    start_gateway: StartGateway, upstream: TestServer, **settings: Any
) -> GatewayServer:
    """A gateway with /secure (protocols: [https]) and /open (both) on `upstream`."""
    return await start_gateway(
        make_route(make_service(upstream.port), ("/secure",), protocols=("https",)),
        make_route(make_service(upstream.port), ("/open",)),
        **settings,
    )


async def test_an_https_only_route_answers_plain_http_with_426(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    gw = await secure_and_open(start_gateway, upstream)
    status, headers, body = await get(gw.proxy_port, "/secure/x")
    assert status == 426
    assert body == b'{"message": "Please use HTTPS protocol"}'
    assert headers["Upgrade"] == "TLS/1.2, HTTP/1.1" and headers["Connection"] == "Upgrade"
    status, _, _ = await get(gw.proxy_port, "/open/x")
    assert status == 200


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_https_redirect_status_code_redirects_to_the_same_url_on_https(
    start_gateway: StartGateway, upstream: TestServer, code: int
) -> None:
    route = make_route(
        make_service(upstream.port),
        ("/secure",),
        protocols=("https",),
        https_redirect_status_code=code,
    )
    gw = await start_gateway(route)
    status, headers, body = await get(
        gw.proxy_port, "/secure/a%20b?q=1&r=2", {"Host": "api.example:8000"}
    )
    assert status == code and body == b""
    assert headers["Location"] == "https://api.example/secure/a%20b?q=1&r=2"
    assert headers["Server"] == "tokengate"  # the gateway's own answer, as Kong's says kong


async def test_a_trusted_proxys_forwarded_headers_pass_and_open_https_routes(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    gw = await start_gateway(
        make_route(make_service(upstream.port), ("/secure",), protocols=("https",)),
        trusted_ips=LOCAL,
    )
    sent = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example",
        "X-Forwarded-Port": "443",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Prefix": "/v1",
        "X-Forwarded-Path": "/v1/secure/x",
    }
    status, _, body = await get(gw.proxy_port, "/secure/x", sent)
    assert status == 200
    seen: dict[str, Any] = json.loads(body)
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-forwarded-host"] == "api.example"
    assert seen["x-forwarded-port"] == "443"
    assert seen["x-forwarded-prefix"] == "/v1"
    assert seen["x-forwarded-path"] == "/v1/secure/x"
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"  # the proxy appended
    assert seen["x-real-ip"] == "127.0.0.1"

    # A trusted proxy that does not say https gets Kong's answer too.
    status, _, _ = await get(gw.proxy_port, "/secure/x", {"X-Forwarded-Proto": "http"})
    assert status == 426
    status, _, _ = await get(gw.proxy_port, "/secure/x")
    assert status == 426


async def test_a_trusted_proxy_that_names_no_host_gets_the_host_header_as_nginx_reads_it(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port), ("/open",)), trusted_ips=LOCAL)
    sent = {"X-Forwarded-Proto": "https", "Host": "API.Example.:8443"}
    status, _, body = await get(gw.proxy_port, "/open/x", sent)
    assert status == 200
    # nginx's $host: lower-cased, without the port, and without one trailing dot (as
    # ngx_http_validate_host leaves the name)
    assert json.loads(body)["x-forwarded-host"] == "api.example"


async def test_the_redirect_uses_a_trusted_proxys_host(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    route = make_route(
        make_service(upstream.port), ("/s",), protocols=("https",), https_redirect_status_code=308
    )
    gw = await start_gateway(route, trusted_ips=LOCAL)
    status, headers, _ = await get(gw.proxy_port, "/s", {"X-Forwarded-Host": "public.example"})
    assert status == 308 and headers["Location"] == "https://public.example/s"


async def test_an_untrusted_clients_forwarded_headers_are_replaced(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    gw = await secure_and_open(start_gateway, upstream, trusted_ips=ELSEWHERE)
    claims = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    status, _, _ = await get(gw.proxy_port, "/secure/x", claims)
    assert status == 426  # saying https is not enough
    claims |= {"X-Forwarded-Host": "evil.example", "X-Forwarded-Prefix": "/admin"}
    status, _, body = await get(gw.proxy_port, "/open/x", claims)
    seen = json.loads(body)
    assert status == 200
    assert seen["x-forwarded-proto"] == "http" and seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-host"] == "127.0.0.1"
    assert seen["x-forwarded-prefix"] == "/open"  # the prefix the route stripped, not "/admin"


async def test_a_trusted_proxys_x_real_ip_names_the_client(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port)), trusted_ips=LOCAL)
    _, _, body = await get(gw.proxy_port, "/x", {"X-Real-IP": "198.51.100.9"})
    seen = json.loads(body)
    # nginx's realip (Kong: real_ip_header X-Real-IP): the client, also the chain's start.
    assert seen["x-real-ip"] == "198.51.100.9" and seen["x-forwarded-for"] == "198.51.100.9"
    sent = {"X-Real-IP": "198.51.100.9", "X-Forwarded-For": "198.51.100.9"}
    _, _, body = await get(gw.proxy_port, "/x", sent)
    assert json.loads(body)["x-forwarded-for"] == "198.51.100.9, 127.0.0.1"
    _, _, body = await get(gw.proxy_port, "/x", {"X-Real-IP": "not an address"})
    assert json.loads(body)["x-real-ip"] == "127.0.0.1"


async def test_x_forwarded_prefix_is_the_prefix_a_strip_path_route_removed(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    svc = make_service(upstream.port)
    gw = await start_gateway(
        make_route(svc, ("/orders",)),
        make_route(svc, ("/kept",), strip_path=False),
        make_route(svc, (r"~/v\d+/items",)),
        make_route(svc, ("/",)),
    )

    async def prefix(path: str) -> str | None:
        _, _, body = await get(gw.proxy_port, path, {"X-Forwarded-Prefix": "/spoofed"})
        return json.loads(body).get("x-forwarded-prefix")

    assert await prefix("/orders/7") == "/orders"
    assert await prefix("/v2/items/9") == "/v2/items"  # a regex path: the part it matched
    assert await prefix("/kept/7") is None  # nothing was stripped
    assert await prefix("/elsewhere") is None  # "/" is no prefix


async def test_the_access_line_names_the_client_a_trusted_proxy_names(
    start_gateway: StartGateway, upstream: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokengate.access")  # before the gateways start
    trusting = await start_gateway(make_route(make_service(upstream.port)), trusted_ips=LOCAL)
    wary = await start_gateway(make_route(make_service(upstream.port)), trusted_ips=ELSEWHERE)
    for gw in (trusting, wary):
        await get(gw.proxy_port, "/x", {"X-Real-IP": "198.51.100.9"})
    lines = [r.getMessage() for r in caplog.records if r.name == "tokengate.access"]
    assert len(lines) == 2
    assert lines[0].startswith('198.51.100.9 "GET /x" 200 ')
    assert lines[1].startswith('127.0.0.1 "GET /x" 200 ')  # an untrusted peer names no one


async def test_the_first_x_forwarded_proto_counts_and_only_https_exactly(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    gw = await secure_and_open(start_gateway, upstream, trusted_ips=LOCAL)
    url = f"http://127.0.0.1:{gw.proxy_port}/secure/x"

    async def status(*protos: str) -> int:
        headers = CIMultiDict(("X-Forwarded-Proto", proto) for proto in protos)
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as r:
            return r.status

    assert await status("https", "http") == 200
    assert await status("http", "https") == 426
    assert await status("HTTPS") == 426  # Kong compares with "https" as it is
    assert await status("https, http") == 426


async def test_the_https_check_comes_before_the_plugins_and_the_service(
    start_gateway: StartGateway, upstream: TestServer, test_issuer: TestIssuer
) -> None:
    oidc = OidcConfig.for_issuer(test_issuer.issuer)
    gw = await start_gateway(
        make_route(make_service(upstream.port), ("/auth",), protocols=("https",), oidc=oidc),
        make_route(None, ("/nowhere",), protocols=("https",)),
    )
    assert (await get(gw.proxy_port, "/auth"))[0] == 426  # not the plugin's 401
    assert (await get(gw.proxy_port, "/nowhere"))[0] == 426  # not "no Service found" (503)


@pytest.mark.parametrize(
    ("target", "forwarded_host"),
    [
        (b"http://API.Other.example:8080/open/x", "api.other.example"),
        (b"http://alice:pw@other.example/open/x", "other.example"),
        (b"http://[::1]:8080/open/x", "[::1]"),
    ],
)
async def test_an_absolute_form_targets_host_is_nginxs_host(
    target: bytes, forwarded_host: str, start_gateway: StartGateway, upstream: TestServer
) -> None:
    """RFC 9112 §3.2.2: the request line's host wins over the Host header. nginx's $host says so,
    and Kong sends it as X-Forwarded-Host; routes still match on the Host header, as Kong's."""
    gw = await secure_and_open(start_gateway, upstream)
    answer = await raw_request(
        gw.proxy_port, b"GET %b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:60]
    seen = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert seen["x-forwarded-host"] == forwarded_host
    assert seen["host"] != forwarded_host  # the service's host, as for any request


@pytest.mark.parametrize("target", [b"http://other.example", b"http://other.example:8080?q=1"])
async def test_an_absolute_form_target_with_an_empty_path_is_for_the_root(
    target: bytes, start_gateway: StartGateway, upstream: TestServer
) -> None:
    """RFC 9110 §4.2.3: an empty path is "/", as nginx reads it; never a 400."""
    gw = await start_gateway(make_route(make_service(upstream.port)))
    answer = await raw_request(
        gw.proxy_port, b"GET %b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:60]
    seen = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert (seen["x-forwarded-path"], seen["x-forwarded-host"]) == ("/", "other.example")


async def test_the_redirect_host_is_nginxs_host(
    start_gateway: StartGateway, upstream: TestServer
) -> None:
    route = make_route(
        make_service(upstream.port), ("/s",), protocols=("https",), https_redirect_status_code=301
    )
    gw = await start_gateway(route)
    for host, location in (
        ("API.Example:8000", "https://api.example/s?a=1"),
        ("[::1]:8000", "https://[::1]/s?a=1"),
    ):
        status, headers, _ = await get(gw.proxy_port, "/s?a=1", {"Host": host})
        assert (status, headers["Location"]) == (301, location)
    # A Host that would become a path or a query in the Location: 400, as nginx refuses it.
    answer = await raw_request(
        gw.proxy_port, b"GET /s HTTP/1.1\r\nHost: evil.example/x?\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Location" not in answer
    # An absolute-form target's host is $host; one that names no host is refused the same way.
    for target, start in (
        (b"http://API.example:8000/s?a=1", b"HTTP/1.1 301 "),
        (b"http://a..b/s", b"HTTP/1.1 400 "),
    ):
        answer = await raw_request(
            gw.proxy_port, b"GET %b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target
        )
        assert answer.startswith(start), answer[:60]
        if start.endswith(b"301 "):
            assert b"\r\nLocation: https://api.example/s?a=1\r\n" in answer, answer


def test_trusted_peers_match_addresses_and_blocks() -> None:
    trusted = TrustedPeers((ip_network("10.0.0.0/8"), ip_network("fd00::/8")))
    assert trusted.trusts("10.1.2.3") and trusted.trusts("fd00::1")
    assert trusted.trusts("::ffff:10.1.2.3")  # an IPv4 peer on an IPv6 socket
    assert not trusted.trusts("11.0.0.1") and not trusted.trusts("::1")
    assert not trusted.trusts("") and not trusted.trusts(None)
    assert not trusted.trusts("not-an-address")
    assert not TrustedPeers(()).trusts("10.1.2.3")


def test_trusted_ips_option() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["gateway", "--config", "k.yaml", "--trusted-ips", "10.0.0.0/8, 192.168.1.5,::1"]
    )
    assert args.trusted_ips == (
        ip_network("10.0.0.0/8"),
        ip_network("192.168.1.5/32"),
        ip_network("::1/128"),
    )
    assert parser.parse_args(["gateway", "--config", "k.yaml"]).trusted_ips == ()


def test_a_bad_trusted_ips_value_names_the_option_and_the_value(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["gateway", "--config", "k", "--trusted-ips", "10.0.0.0/33"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--trusted-ips: '10.0.0.0/33' is not an IP address or CIDR block" in err
    assert "Traceback" not in err


def test_kong_yaml_https_only_routes_keep_their_redirect_code_and_warn(tmp_path: Any) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(
        "_format_version: '3.0'\n"
        "services:\n"
        "- name: s\n"
        "  url: http://127.0.0.1:9\n"
        "  routes:\n"
        "  - {name: secure, paths: [/s], protocols: [https], https_redirect_status_code: 301}\n"
        "  - {name: both, paths: [/b]}\n"
    )
    config = load_config(path)
    secure, both = config.routes
    assert secure.https_only and secure.https_redirect_status_code == 301
    assert not both.https_only and both.https_redirect_status_code == 426
    assert [w for w in config.warnings if "routes[0].protocols: https only" in w]
    assert not [w for w in config.warnings if "routes[1]" in w]


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("API.Example.COM", "api.example.com"),
        ("API.Example.COM:8443", "api.example.com"),
        ("[::1]", "[::1]"),
        ("[FE80::1]:8000", "[fe80::1]"),
        # ngx_http_validate_host drops one trailing dot before $host is made of the name
        ("api.example.", "api.example"),
        ("API.Example.:8443", "api.example"),
    ],
)
def test_host_name_is_the_host_lower_cased_without_its_port(host: str, name: str) -> None:
    assert host_name(host) == name


@pytest.mark.parametrize(
    ("host", "routed"),
    [
        ("api.example", "api.example"),
        ("api.example.", "api.example"),
        ("api.example.:8080", "api.example:8080"),
        ("[::1]:8080", "[::1]:8080"),
        ("API.Example:", "API.Example:"),
    ],
)
def test_routing_host_drops_one_trailing_dot_and_keeps_the_port(host: str, routed: str) -> None:
    assert routing_host(host) == routed


@pytest.mark.parametrize(
    "host", ["api..example", "a.b..", ".", ".:80", "x@api.example", "api.example/x", ""]
)
def test_routing_host_refuses_what_names_no_host(host: str) -> None:
    assert routing_host(host) is None


@pytest.mark.parametrize(
    ("host", "safe"),
    [
        ("public.example", "public.example"),
        ("[::1]:8443", "[::1]:8443"),
        ("evil.example/x?", None),
        ("evil.example\\x", None),
        ("a b", None),
    ],
)
def test_redirect_host_passes_only_what_is_safe_in_a_location(host: str, safe: str | None) -> None:
    assert redirect_host(host) == safe


def trusted_headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_a_trusted_peer_that_sends_nothing_gets_the_gateways_own_values() -> None:
    forwarded = Forwarded.from_trusted(
        trusted_headers(), peer="10.0.0.9", host="api.example", port="8000", path="/a"
    )
    assert forwarded_headers(forwarded, b"rid") == (
        b"X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: api.example\r\nX-Forwarded-Port: 8000\r\n"
        b"X-Forwarded-Path: /a\r\nX-Real-IP: 10.0.0.9\r\nX-Request-Id: rid\r\n"
    )


def test_a_trusted_peers_values_pass_first_of_each_and_its_chain_is_extended() -> None:
    sent = trusted_headers(
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-For", "198.51.100.2"),
        ("X-Forwarded-Proto", " https "),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "public.example"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Path", "/outer/a"),
        ("X-Forwarded-Prefix", "/outer"),
        ("X-Real-IP", " 203.0.113.7 "),
    )
    forwarded = Forwarded.from_trusted(
        sent, peer="10.0.0.9", host="api.example", port="8000", path="/a", prefix="/o"
    )
    assert forwarded_headers(forwarded, b"rid") == (
        b"X-Forwarded-For: 203.0.113.7, 198.51.100.2, 10.0.0.9\r\nX-Forwarded-Proto: https\r\n"
        b"X-Forwarded-Host: public.example\r\nX-Forwarded-Port: 443\r\n"
        b"X-Forwarded-Path: /outer/a\r\nX-Forwarded-Prefix: /outer\r\n"
        b"X-Real-IP: 203.0.113.7\r\nX-Request-Id: rid\r\n"
    )


def test_blank_forwarded_values_and_a_real_ip_that_is_no_address_fall_back() -> None:
    sent = trusted_headers(
        ("X-Forwarded-Proto", " "), ("X-Forwarded-Host", ""), ("X-Real-IP", "unknown")
    )
    forwarded = Forwarded.from_trusted(sent, peer="10.0.0.9", host="h", port="80", path="/")
    assert (forwarded.proto, forwarded.host, forwarded.client) == ("http", "h", "10.0.0.9")


@pytest.mark.parametrize(
    "real_ip",
    [
        'fe80::1%x "DELETE -" 200 service=admin route=admin auth=ok "',  # a forged log line
        "fe80::1%eth0",  # a scope id of any kind
    ],
)
def test_an_x_real_ip_with_a_scope_id_is_no_address(real_ip: str) -> None:
    """Python's ip_address takes an IPv6 scope id of any characters but "%" and "/", spaces and
    quotes included: the client's text would start the access line and reach the upstream's
    X-Real-IP. nginx's realip module reads no scope id, so the peer stands, as here."""
    sent = trusted_headers(("X-Real-IP", real_ip))
    forwarded = Forwarded.from_trusted(sent, peer="10.0.0.9", host="h", port="80", path="/")
    assert forwarded.client == "10.0.0.9"
    assert b"X-Real-IP: 10.0.0.9\r\n" in forwarded_headers(forwarded, b"rid")


def test_forwarded_values_in_other_bytes_than_utf8_go_upstream_as_they_came() -> None:
    # aiohttp decodes header bytes as UTF-8 with surrogateescape: b"caf\xe9" arrives thus.
    sent = trusted_headers(("X-Forwarded-Host", b"caf\xe9".decode("utf-8", "surrogateescape")))
    forwarded = Forwarded.from_trusted(sent, peer="10.0.0.9", host="h", port="80", path="/")
    assert b"X-Forwarded-Host: caf\xe9\r\n" in forwarded_headers(forwarded, b"rid")


def test_trusted_peers_remember_a_bounded_number_of_addresses() -> None:
    trusted = TrustedPeers((ip_network("10.0.0.0/8"),))
    for i in range(4097):
        assert trusted.trusts(f"10.0.{i // 256}.{i % 256}")
    assert len(trusted._seen) <= 4096
    assert trusted.trusts("10.0.0.1") and not trusted.trusts("11.0.0.1")
