"""Kong Upstreams and Targets: a service whose host names an upstream is balanced over its
targets (config from kong.yaml text, real sockets, in-process upstreams on port 0)."""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import textwrap
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.gateway.conftest import RawUpstream, StartGateway, serving
from tests.gateway.issuer import self_signed_contexts
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.balancer import Balancer
from tokengate.gateway.config import ConfigError, GatewayConfig, Target, parse_config
from tokengate.gateway.proxy import _target_host


def named(name: str) -> Callable[[web.Request], web.Response]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"upstream": name, "host": request.headers.get("Host")})

    return answer  # type: ignore[return-value]


@pytest.fixture
async def two_upstreams() -> AsyncIterator[tuple[TestServer, TestServer]]:
    async with serving(named("a")) as a, serving(named("b")) as b:  # type: ignore[arg-type]
        yield a, b


def closed_port() -> int:
    """A port nothing listens on (bound, then let go): connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def kong_yaml(upstream: str, *, service: str = "", route: str = "") -> GatewayConfig:
    text = textwrap.dedent(
        """\
        _format_version: "3.0"
        upstreams:
        """
    )
    text += textwrap.indent(textwrap.dedent(upstream), "  ")
    text += textwrap.dedent(
        """\
        services:
          - name: orders
            host: orders.upstream
            port: 1
        """
    )
    text += textwrap.indent(textwrap.dedent(service), "    ")
    text += "    routes:\n      - name: r\n        paths: [/]\n"
    text += textwrap.indent(textwrap.dedent(route), "        ")
    return parse_config(text, "kong.yaml")


async def start(start_gateway: StartGateway, config: GatewayConfig) -> GatewayServer:
    return await start_gateway(*config.routes)


Answers = list[tuple[int, dict[str, str]]]


async def fetch(gw: GatewayServer, count: int, **kwargs: object) -> Answers:
    answers = []
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.get(f"http://127.0.0.1:{gw.proxy_port}/x", **kwargs) as resp:  # type: ignore[arg-type]
                answers.append((resp.status, await resp.json(content_type=None)))
    return answers


# -- balancing ----------------------------------------------------------------------------------
def test_smooth_weighted_round_robin_spreads_each_share() -> None:
    balancer = Balancer([Target("a", 1, 5), Target("b", 1, 1), Target("c", 1, 1)])
    assert "".join("abc"[balancer.pick()] for _ in range(14)) == "aabacaa" * 2


def test_a_balancer_needs_a_target() -> None:
    with pytest.raises(ValueError, match=r"^a balancer needs at least one target$"):
        Balancer([])


async def test_requests_are_shared_by_weight_and_weight_zero_gets_none(
    two_upstreams: tuple[TestServer, TestServer], start_gateway: StartGateway
) -> None:
    a, b = two_upstreams
    gw = await start(
        start_gateway,
        kong_yaml(
            f"""\
            - name: orders.upstream
              targets:
                - {{target: "127.0.0.1:{a.port}", weight: 200}}
                - {{target: "127.0.0.1:{b.port}"}}
                - {{target: "127.0.0.1:{closed_port()}", weight: 0}}
            """
        ),
    )
    answers = await fetch(gw, 30)
    assert {status for status, _ in answers} == {200}
    assert collections.Counter(body["upstream"] for _, body in answers) == {"a": 20, "b": 10}


async def test_host_is_the_targets_unless_host_header_or_preserve_host(
    two_upstreams: tuple[TestServer, TestServer], start_gateway: StartGateway
) -> None:
    a, b = two_upstreams
    targets = f'  targets: [{{target: "127.0.0.1:{a.port}"}}, {{target: "localhost:{b.port}"}}]\n'
    plain = await start(start_gateway, kong_yaml("- name: orders.upstream\n" + targets))
    hosts = {body["upstream"]: body["host"] for _, body in await fetch(plain, 2)}
    assert hosts == {"a": f"127.0.0.1:{a.port}", "b": f"localhost:{b.port}"}

    renamed = await start(
        start_gateway,
        kong_yaml("- name: orders.upstream\n  host_header: orders.internal\n" + targets),
    )
    hosts = {body["upstream"]: body["host"] for _, body in await fetch(renamed, 2)}
    assert hosts == {"a": f"orders.internal:{a.port}", "b": f"orders.internal:{b.port}"}

    preserved = await start(
        start_gateway,
        kong_yaml(
            "- name: orders.upstream\n  host_header: orders.internal\n" + targets,
            route="preserve_host: true\n",
        ),
    )
    answers = await fetch(preserved, 2, headers={"Host": "api.example"})
    assert [body["host"] for _, body in answers] == ["api.example", "api.example"]


async def test_a_target_that_refuses_connections_is_skipped_within_retries(
    two_upstreams: tuple[TestServer, TestServer],
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, _ = two_upstreams
    dead = closed_port()
    upstream = f"""\
        - name: orders.upstream
          targets:
            - target: "127.0.0.1:{dead}"
            - target: "127.0.0.1:{a.port}"
    """
    caplog.set_level(logging.INFO, logger="tokengate")  # before the gateway starts: it asks then
    gw = await start(start_gateway, kong_yaml(upstream))
    answers = await fetch(gw, 4)
    assert [status for status, _ in answers] == [200] * 4
    # The request that first went to the dead target got the live one's Host on its retry.
    assert {body["host"] for _, body in answers} == {f"127.0.0.1:{a.port}"}

    # Each access line names the target that served it; the failover is logged.
    served = [r.fields["upstream"] for r in caplog.records if r.name == "tokengate.access"]
    assert served == [f"127.0.0.1:{a.port}"] * 4
    assert f"cannot connect to 127.0.0.1:{dead}" in caplog.text
    retried = {r.getMessage() for r in caplog.records if r.name == "tokengate.proxy"}
    assert retried == {
        f"upstream orders: cannot connect to 127.0.0.1:{dead}: Connection refused; "
        f"trying 127.0.0.1:{a.port}"
    }

    no_retries = await start(start_gateway, kong_yaml(upstream, service="retries: 0\n"))
    statuses = sorted(status for status, _ in await fetch(no_retries, 4))
    assert statuses == [200, 200, 502, 502]


def test_a_service_host_one_typo_from_an_upstream_name_is_warned_about() -> None:
    """A typo in the upstream's name sends the service to DNS instead of the targets; Kong
    loads it without a word, then answers 503 "name resolution failed"."""
    text = textwrap.dedent(
        """\
        _format_version: "3.0"
        upstreams:
          - {name: orders.upstream, targets: [{target: "127.0.0.1:8080"}]}
          - {name: api-v1, targets: [{target: "127.0.0.1:8081"}]}
        services:
          - {name: swapped, host: orders.upstraem}
          - {name: balanced, host: ORDERS.upstream}
          - {name: dns, host: billing.internal}
          - {name: dropped, host: Orders.Upstrem}
          - {name: sibling, host: api-v2}
          - {name: added, host: orders.upstreams}
        """
    )
    config = parse_config(text, "kong.yaml")
    typo = (
        "kong.yaml: services[{}].host: '{}' is no upstream of this file, so it is looked up in "
        "DNS (did you mean upstream 'orders.upstream'?); a name that does not resolve gets 503 "
        '"name resolution failed"'
    )
    assert config.warnings == (
        typo.format(0, "orders.upstraem"),
        typo.format(3, "Orders.Upstrem"),
        typo.format(5, "orders.upstreams"),
    )  # not api-v2: one digit for another names a sibling

    # Among many upstreams (a generated file), no search: it would slow loading down.
    many = "".join(f"  - {{name: u{i}.upstream, targets: [{{target: x:1}}]}}\n" for i in range(33))
    text = f'_format_version: "3.0"\nupstreams:\n{many}services: [{{name: s, host: u1.upstraem}}]'
    assert parse_config(text, "kong.yaml").warnings == ()


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("orders.upstreem", True),  # one letter changed
        ("orders.upstrema", True),  # the last two swapped
        ("api-vl", True),  # a letter for a digit is a typo; a digit for a digit is a sibling
        ("orders.upstrxym", False),  # two neighbours changed
        ("orders.upsterxm", False),  # one moved, one changed
    ],
)
def test_what_counts_as_one_typo_from_an_upstream_name(host: str, warned: bool) -> None:
    text = textwrap.dedent(
        f"""\
        _format_version: "3.0"
        upstreams: [{{name: orders.upstream}}, {{name: api-v1}}]
        services: [{{name: s, host: {host}}}]
        """
    )
    assert bool(parse_config(text, "kong.yaml").warnings) == warned


@pytest.mark.parametrize(("dead", "retries", "status"), [(2, 1, 502), (2, 2, 200), (3, 2, 502)])
async def test_retries_is_how_many_more_targets_a_failed_connect_may_try(
    dead: int,
    retries: int,
    status: int,
    two_upstreams: tuple[TestServer, TestServer],
    start_gateway: StartGateway,
) -> None:
    """The first request picks the first target, and `dead` targets that refuse come before
    the live one: it needs that many retries (Kong's `retries`: tries after the first)."""
    a, _ = two_upstreams
    targets = [f'{{target: "127.0.0.1:{closed_port()}"}}' for _ in range(dead)]
    targets.append(f'{{target: "127.0.0.1:{a.port}"}}')
    upstream = f"- name: orders.upstream\n  targets: [{', '.join(targets)}]\n"
    gw = await start(start_gateway, kong_yaml(upstream, service=f"retries: {retries}\n"))
    [(first, _)] = await fetch(gw, 1)
    assert first == status


async def test_a_target_whose_name_does_not_resolve_is_left_out(
    two_upstreams: tuple[TestServer, TestServer],
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kong's ring has no place for a target that does not resolve: every request goes to the
    others, even with no retries to spend; with none left, the ring-balancer's 503."""
    a, _ = two_upstreams
    upstream = f"""\
        - name: orders.upstream
          targets:
            - target: "tokengate-test.invalid:{a.port}"
            - target: "127.0.0.1:{a.port}"
    """
    caplog.set_level(logging.INFO, logger="tokengate")
    gw = await start(start_gateway, kong_yaml(upstream, service="retries: 0\n"))
    assert [status for status, _ in await fetch(gw, 4)] == [200] * 4
    passed = [r.getMessage() for r in caplog.records if r.getMessage().endswith("passed over")]
    assert passed, caplog.text
    assert all(
        m.startswith("upstream orders: cannot resolve tokengate-test.invalid: ")
        and m.endswith("; passed over")
        for m in passed
    ), passed

    nowhere = """\
        - name: orders.upstream
          targets:
            - target: "tokengate-test.invalid:8080"
            - target: "tokengate-other.invalid:8080"
    """
    gw = await start(start_gateway, kong_yaml(nowhere))
    no_peer = {"message": "failure to get a peer from the ring-balancer"}
    assert await fetch(gw, 2) == [(503, no_peer)] * 2


async def test_an_upstream_without_targets_is_kongs_503(start_gateway: StartGateway) -> None:
    config = kong_yaml(
        f"""\
        - name: orders.upstream
          targets: [{{target: "127.0.0.1:{closed_port()}", weight: 0}}]
        """
    )
    assert config.warnings == (
        "kong.yaml: services[0].host: upstream 'orders.upstream' has no target of weight > 0: "
        'requests get 503 "failure to get a peer from the ring-balancer"',
    )
    gw = await start(start_gateway, config)
    no_peer = {"message": "failure to get a peer from the ring-balancer"}
    assert await fetch(gw, 1) == [(503, no_peer)]


async def test_websocket_handshakes_fail_over_too(start_gateway: StartGateway) -> None:
    async def talk(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f"hello {request.headers['Host']}")
        await ws.close()
        return ws

    async with serving(talk) as live:  # type: ignore[arg-type]
        live_host = f"127.0.0.1:{live.port}"
        upstream = f"""\
            - name: orders.upstream
              targets: [{{target: "127.0.0.1:{closed_port()}"}}, {{target: "{live_host}"}}]
        """
        gw = await start(start_gateway, kong_yaml(upstream))
        greetings = []
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                async with session.ws_connect(f"http://127.0.0.1:{gw.proxy_port}/ws") as ws:
                    greetings.append(await ws.receive_str())
    assert greetings == [f"hello {live_host}"] * 4


async def test_a_stale_pooled_connections_retry_fails_over_too(
    two_upstreams: tuple[TestServer, TestServer], start_gateway: StartGateway
) -> None:
    """A target answers once with keep-alive, then closes that connection at the next request
    and stops listening: the retry on a new connection goes to the next target."""
    _, b = two_upstreams

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_head(reader)
        if len(raw.requests) == 1:
            body = b'{"upstream": "raw"}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            await writer.drain()
            await raw.read_head(reader)  # the next request on this connection: close, go away
        assert raw.server is not None
        raw.server.close()

    async with RawUpstream(once) as raw:
        upstream = f"""\
            - name: orders.upstream
              targets: [{{target: "127.0.0.1:{raw.port}"}}, {{target: "127.0.0.1:{b.port}"}}]
        """
        gw = await start(start_gateway, kong_yaml(upstream))
        answers = await fetch(gw, 4)
    assert [status for status, _ in answers] == [200] * 4


@pytest.fixture
async def ipv6_upstream() -> AsyncIterator[TestServer]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", named("v6"))  # type: ignore[arg-type]
    server = TestServer(app, host="::1")
    try:
        await server.start_server()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        yield server
    finally:
        await server.close()


async def test_ipv6_targets_and_services_connect(
    ipv6_upstream: TestServer, start_gateway: StartGateway
) -> None:
    port = ipv6_upstream.port
    balanced = await start(
        start_gateway,
        kong_yaml(f'- name: orders.upstream\n  targets: [{{target: "[::1]:{port}"}}]\n'),
    )
    assert await fetch(balanced, 1) == [(200, {"upstream": "v6", "host": f"[::1]:{port}"})]
    plain = parse_config(
        textwrap.dedent(
            f"""\
            _format_version: "3.0"
            services:
              - name: v6
                url: "http://[::1]:{port}"
                routes: [{{name: r, paths: [/]}}]
            """
        )
    )
    gw = await start(start_gateway, plain)
    assert await fetch(gw, 1) == [(200, {"upstream": "v6", "host": f"[::1]:{port}"})]


async def test_a_host_header_with_its_own_port_is_sent_as_written(
    two_upstreams: tuple[TestServer, TestServer], start_gateway: StartGateway
) -> None:
    """A host_header with its own port is sent as written; one without gets the target's port
    (the colons of an IPv6 literal are no port)."""
    a, _ = two_upstreams
    for host_header, sent in (
        ("orders.internal:81", "orders.internal:81"),
        ("[::1]:81", "[::1]:81"),
        ("[::1]", f"[::1]:{a.port}"),
    ):
        config = kong_yaml(
            f"""\
            - name: orders.upstream
              host_header: "{host_header}"
              targets: [{{target: "127.0.0.1:{a.port}"}}]
            """
        )
        gw = await start(start_gateway, config)
        assert await fetch(gw, 1) == [(200, {"upstream": "a", "host": sent})]


@pytest.mark.parametrize(
    ("protocol", "target", "host_header", "sent"),
    [
        ("http", "orders.internal:80", None, "orders.internal"),
        ("https", "orders.internal:443", None, "orders.internal"),
        ("http", "orders.internal:443", None, "orders.internal:443"),
        ("https", "orders.internal:80", None, "orders.internal:80"),
        ("http", "127.0.0.1:80", "api.example", "api.example"),
        ("https", "127.0.0.1:8443", "api.example", "api.example:8443"),
    ],
)
def test_a_targets_host_leaves_out_its_schemes_default_port(
    protocol: str, target: str, host_header: str | None, sent: str
) -> None:
    """Kong's balancer writes the target's port into the Host unless it is the scheme's
    default (RFC 9110 §7.2). No test server can listen on 80 or 443, so this one asks the
    forwarder's Host rule directly."""
    renamed = f"  host_header: {host_header}\n" if host_header else ""
    config = kong_yaml(
        f'- name: orders.upstream\n{renamed}  targets: [{{target: "{target}"}}]\n',
        service=f"protocol: {protocol}\n",
    )
    [service] = config.services
    assert _target_host(service, service.targets[0]) == sent.encode()


@pytest.mark.parametrize(
    ("host_header", "target_host", "sni"),
    [
        (None, "localhost", "localhost"),
        (None, "127.0.0.1", None),  # RFC 6066 §3: no SNI for an address
        (None, "[::1]", None),  # an IPv6 one too (its brackets are the target's, not the name's)
        ("orders.internal", "127.0.0.1", "orders.internal"),
        ("orders.internal:81", "127.0.0.1", "orders.internal"),  # the port is not in the name
        ("Xray.Internal", "127.0.0.1", "Xray.Internal"),  # as written
    ],
)
async def test_tls_to_a_target_names_the_host_its_host_header_names(
    host_header: str | None, target_host: str, sni: str | None, start_gateway: StartGateway
) -> None:
    """Kong's proxy template sets `proxy_ssl_name $upstream_host`: the TLS server name (SNI,
    and the name the certificate is checked against) is the Host sent upstream, so the
    upstream's host_header when it has one, without its port, not the target's address."""
    names: list[str | None] = []
    server_context = self_signed_contexts()[0]
    server_context.sni_callback = lambda _sock, name, _context: names.append(name)
    listen = "::1" if target_host == "[::1]" else "127.0.0.1"
    async with serving(named("tls"), ssl=server_context, host=listen) as tls:  # type: ignore[arg-type]
        renamed = f"  host_header: '{host_header}'\n" if host_header else ""
        upstream = f"- name: orders.upstream\n{renamed}"
        upstream += f'  targets: [{{target: "{target_host}:{tls.port}"}}]\n'
        config = kong_yaml(upstream, service="protocol: https\ntls_verify: false\n")
        gw = await start(start_gateway, config)
        [(status, _)] = await fetch(gw, 1)
    assert (status, names) == (200, [sni])


# -- kong.yaml ----------------------------------------------------------------------------------
def test_nested_and_top_level_targets_with_kongs_defaults() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            _format_version: "3.0"
            upstreams:
              - name: Orders.Upstream
                targets: [{target: "10.0.0.1"}, {target: "[::1]:81", weight: 7}]
            targets:
              - {target: "10.0.0.2:82", upstream: Orders.Upstream}
              - {target: "10.0.0.3:83", upstream: {name: Orders.Upstream}, weight: 0}
            services:
              - {name: orders, url: "https://Orders.Upstream/v1"}
              - {name: direct, host: orders.example}
            """
        )
    )
    orders, direct = config.services
    assert orders.upstream == "Orders.Upstream"
    assert orders.targets == (
        Target("10.0.0.1", 8000, 100),
        Target("[::1]", 81, 7),
        Target("10.0.0.2", 82, 100),
    )
    assert (orders.protocol, orders.path) == ("https", "/v1")
    assert (direct.upstream, direct.targets) == (None, ())
    assert config.warnings == ()  # no health checks or other algorithm asked for


def test_a_service_host_finds_the_upstream_of_its_exact_name_before_other_capitals() -> None:
    """Kong looks an upstream up by the exact name (balancer/upstreams.lua); the look-up in
    other capitals is for a `url`'s host, which comes back in lower case."""
    config = kong_yaml("""\
        - {name: Orders.Upstream, targets: [{target: "10.0.0.1:1"}]}
        - {name: orders.upstream, targets: [{target: "10.0.0.2:2"}]}
        """)
    assert config.services[0].targets == (Target("10.0.0.2", 2, 100),)


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ("{name: 10.0.0.1}", "upstreams[0].name: invalid name '10.0.0.1': a host name, not an IP"),
        ("{name: 'u:80'}", "upstreams[0].name: invalid name 'u:80': a host name, without a port"),
        (
            "{name: u, targets: [{target: '1.2.3.4:80:90'}]}",
            "invalid target '1.2.3.4:80:90': expected host, host:port or [v6]:port",
        ),
        ("{name: u, targets: [{target: 'x:\u0668\u0660'}]}", "the port must be 1-65535"),
        ("{name: u, healthchecks: x}", "upstreams[0].healthchecks: expected a mapping"),
        ("{name: u, targets: [{target: 'http://x'}]}", "expected host or host:port, not a URL"),
        ("{name: u, targets: [{target: 'x:0'}]}", "invalid target 'x:0': the port must be 1-65535"),
        ("{name: u, targets: [{target: x, weight: 65536}]}", "targets[0].weight"),
        ("{name: u, targets: [{target: x, upstream: u}]}", "names no other upstream"),
        ("{name: u, targets: [{target: 'x:8000'}, {target: x}]}", "duplicate target 'x:8000'"),
        ("{name: u, targets: [{target: x, port: 1}]}", "targets[0].port: unknown field"),
        ("{name: u, algorithm: fastest}", "upstreams[0].algorithm"),
        ("{name: u, host_header: 'a b'}", "upstreams[0].host_header"),
    ],
)
def test_bad_upstreams_and_targets_are_named(upstream: str, message: str) -> None:
    text = f'_format_version: "3.0"\nupstreams: [{upstream}]\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert any(message in error for error in caught.value.errors), caught.value.errors


@pytest.mark.parametrize(
    ("upstream", "line"),
    [
        ("{name: u, targets: [{target: 'up/x'}]}",
         "targets[0].target: invalid target 'up/x': expected host or host:port, not a URL"),
        ("{name: u, targets: [{target: '[::1]x'}]}",
         "targets[0].target: invalid target '[::1]x': expected [address]:port"),
        ("{name: u, targets: [{target: '[::1]]:80'}]}",
         "targets[0].target: invalid target '[::1]]:80': expected [address]:port"),
        ("{name: u, targets: [{target: '[::1'}]}",
         "targets[0].target: invalid target '[::1': expected host, host:port or [v6]:port"),
        ("{name: u, targets: [{target: 'x..y:80'}]}",
         "targets[0].target: invalid target 'x..y:80': invalid host 'x..y'"),
        ("{name: u, targets: [{target: '[::1]:0'}]}",
         "targets[0].target: invalid target '[::1]:0': the port must be 1-65535"),
        ("{name: u, targets: [{target: 'x:65536'}]}",
         "targets[0].target: invalid target 'x:65536': the port must be 1-65535"),
        ("{name: 'a:b:c'}", "name: invalid name 'a:b:c': expected host, host:port or [v6]:port"),
        ("{name: '::1'}", "name: invalid name '::1': a host name, not an IP address"),
        ("{name: '[::1]'}", "name: invalid name '[::1]': a host name, not an IP address"),
        ("{name: u, host_header: '[::1]x'}",
         "host_header: invalid host '[::1]x': expected [address]:port"),
    ],
)  # fmt: skip
def test_bad_targets_names_and_host_headers_say_what_is_wrong(upstream: str, line: str) -> None:
    text = f'_format_version: "3.0"\nupstreams: [{upstream}]\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.errors == [f"kong.yaml: upstreams[0].{line}"]


@pytest.mark.parametrize(
    ("upstream", "line"),
    [
        ("{targets: [{target: x}]}", "name: required field missing"),
        ("{name: u, targets: [{weight: 1}]}", "targets[0].target: required field missing"),
        ("{name: u, targets: [{target: x, weight: -1}]}",
         "targets[0].weight: must be between 0 and 65535, got -1"),
        ("{name: u, targets: [{target: x, tags: t}]}",
         "targets[0].tags: expected a list of strings, got a string"),
        ("{name: u, targets: [{target: x, failover: 'y'}]}",
         "targets[0].failover: expected a boolean, got a string"),
        ("{name: u, targets: [{target: 'x:8000'}, {target: x}]}",
         "targets[1].target: duplicate target 'x:8000' in upstream 'u'"),
        ("{name: u, targets: [{target: x, upstream: u}]}",
         "targets[0].upstream: a target nested in an upstream names no other upstream"),
        ("{name: u, tags: t}", "tags: expected a list of strings, got a string"),
        ("{name: u, slots: x}", "slots: expected an integer, got a string"),
        ("{name: u, slots: 9}", "slots: must be between 10 and 65536, got 9"),
        ("{name: u, slots: 65537}", "slots: must be between 10 and 65536, got 65537"),
        ("{name: u, use_srv_name: 1}", "use_srv_name: expected a boolean, got an integer"),
    ],
)  # fmt: skip
def test_each_upstream_and_target_field_is_checked_at_its_path(upstream: str, line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'_format_version: "3.0"\nupstreams: [{upstream}]\n')
    assert caught.value.errors == [f"kong.yaml: upstreams[0].{line}"]


def test_a_second_upstream_of_one_name_points_at_the_first() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('_format_version: "3.0"\nupstreams: [{name: u}, {name: u}]\n')
    assert caught.value.errors == [
        "kong.yaml: upstreams[1].name: duplicate upstream name 'u' (first at upstreams[0])"
    ]


@pytest.mark.parametrize("slots", [10, 65536])
def test_slots_from_10_to_65536_and_a_weight_of_1_are_kept(slots: int) -> None:
    config = kong_yaml(
        f"- {{name: orders.upstream, slots: {slots}, targets: [{{target: x, weight: 1}}]}}\n"
    )
    assert config.warnings == ()
    assert config.services[0].targets == (Target("x", 8000, 1),)


def test_failover_and_use_srv_name_are_warned_about_at_their_paths() -> None:
    config = kong_yaml(
        """\
        - name: orders.upstream
          use_srv_name: true
          client_certificate: {id: 5e1f1c2a-9d3b-4c6e-8a7f-0123456789ab}
          targets: [{target: x, failover: true}]
        """
    )
    assert config.warnings == (
        "kong.yaml: upstreams[0].use_srv_name: not supported by tokengate and ignored",
        "kong.yaml: upstreams[0].client_certificate: not supported by tokengate and ignored",
        "kong.yaml: upstreams[0].targets[0].failover: not supported by tokengate: a failover "
        "target is balanced too",
    )


def test_empty_brackets_in_a_target_are_an_invalid_host_not_a_malformed_target() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('_format_version: "3.0"\nupstreams: [{name: u, targets: [{target: "[]:80"}]}]')
    (line,) = caught.value.errors
    prefix = "kong.yaml: upstreams[0].targets[0].target: invalid target '[]:80': invalid host '[]'"
    assert line.startswith(prefix), line


def test_bare_and_bracketed_ipv6_targets_and_host_header_are_bracketed() -> None:
    (service,) = kong_yaml(
        """\
        - name: orders.upstream
          host_header: "::1"
          targets: [{target: "::1"}, {target: "[2001:db8::1:2]:81"}]
        """
    ).services
    assert service.targets == (Target("[::1]", 8000, 100), Target("[2001:db8::1:2]", 81, 100))
    assert service.host_header == "[::1]"


def test_a_top_level_target_must_name_a_declared_upstream() -> None:
    text = '_format_version: "3.0"\ntargets: [{target: x}, {target: y, upstream: nope}]\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.errors == [
        "kong.yaml: targets[0].upstream: required field missing (the upstream this target is for)",
        "kong.yaml: targets[1].upstream: upstream 'nope' not found",
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config('_format_version: "3.0"\ntargets: [{target: x, upstream: [u]}]\n')
    assert caught.value.errors == [
        "kong.yaml: targets[0].upstream: expected an upstream name or id, or a mapping with one "
        "of them, got a list"
    ]


def test_what_tokengate_does_not_balance_by_is_warned_about() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            _format_version: "3.0"
            upstreams:
              - name: u
                algorithm: consistent-hashing
                healthchecks:
                  active: {healthy: {interval: 0}, unhealthy: {interval: 1}}  # 1 s: on
              - name: v
                healthchecks:
                  active: {healthy: {interval: 0}, unhealthy: {interval: 0}}
                  passive: {healthy: {successes: 0}, unhealthy: {http_failures: 0}}
            """
        )
    )
    assert config.warnings == (
        "kong.yaml: upstreams[0].algorithm: consistent-hashing is not supported: tokengate "
        "balances round-robin",
        "kong.yaml: upstreams[0].healthchecks: health checks are not run by tokengate: every "
        "target stays in",
    )
