"""The forwarder over real sockets: an in-process upstream on port 0, the gateway, a client."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from tests.gateway.conftest import (
    RawUpstream,
    StartGateway,
    make_route,
    make_service,
    raw_request,
    serving,
)
from tests.gateway.issuer import TestIssuer
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.proxy import BUFFER_LIMIT


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path_qs": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_len": len(body),
        }
    )


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    async with serving(echo) as server:
        yield server


async def get_json(url: str, **kwargs: Any) -> tuple[int, CIMultiDict[str], Any]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.json(content_type=None)


def header_values(echoed: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echoed["headers"] if k.lower() == name.lower()]


async def test_get_is_forwarded_with_path_query_and_service_host(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    svc = make_service(upstream.port)
    gw = await start_gateway(make_route(svc, ("/api",), strip_path=False))
    url = f"http://127.0.0.1:{gw.proxy_port}/api/items?q=1&b=%20&next=/a?b"
    status, _, echoed = await get_json(url)
    assert status == 200
    assert echoed["path_qs"] == "/api/items?q=1&b=%20&next=/a?b"  # the query from its first "?"
    assert header_values(echoed, "Host") == [f"127.0.0.1:{upstream.port}"]


async def test_strip_path_and_service_path(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    svc = make_service(upstream.port, path="/base")
    gw = await start_gateway(make_route(svc, ("/api",)))
    _, _, echoed = await get_json(f"http://127.0.0.1:{gw.proxy_port}/api/items")
    assert echoed["path_qs"] == "/base/items"


async def test_preserve_host_sends_client_host(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    svc = make_service(upstream.port)
    gw = await start_gateway(make_route(svc, preserve_host=True))
    _, _, echoed = await get_json(
        f"http://127.0.0.1:{gw.proxy_port}/", headers={"Host": "api.example.com"}
    )
    assert header_values(echoed, "Host") == ["api.example.com"]


async def test_spoofed_forwarding_and_identity_headers_are_replaced(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    svc = make_service(upstream.port)
    gw = await start_gateway(make_route(svc))
    spoofed = {
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Port": "1",
        "X-Forwarded-Path": "/admin",
        "X-Forwarded-Prefix": "/admin",
        "X-Real-IP": "6.6.6.6",
        "Forwarded": "for=6.6.6.6",
        "X-Consumer-ID": "admin",
        "X-Consumer-Username": "admin",
        "X-Credential-Identifier": "admin",
        "X-Authenticated-Userid": "admin",
        "X-Authenticated-Scope": "admin",
        "X-Userinfo": "e30=",
        "X-Anonymous-Consumer": "false",
    }
    _, _, echoed = await get_json(
        f"http://127.0.0.1:{gw.proxy_port}/p?x=1", headers={**spoofed, "Host": "shop.example:8443"}
    )
    assert header_values(echoed, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(echoed, "X-Real-IP") == ["127.0.0.1"]
    assert header_values(echoed, "X-Forwarded-Proto") == ["http"]
    assert header_values(echoed, "X-Forwarded-Host") == ["shop.example"]
    assert header_values(echoed, "X-Forwarded-Port") == [str(gw.proxy_port)]
    assert header_values(echoed, "X-Forwarded-Path") == ["/p"]
    for name in (
        "Forwarded",
        "X-Forwarded-Prefix",
        "X-Consumer-ID",
        "X-Consumer-Username",
        "X-Credential-Identifier",
        "X-Authenticated-Userid",
        "X-Authenticated-Scope",
        "X-Userinfo",
        "X-Anonymous-Consumer",
    ):
        assert header_values(echoed, name) == [], name


async def test_hop_by_hop_and_connection_named_headers_stop_at_the_gateway(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    svc = make_service(upstream.port)
    gw = await start_gateway(make_route(svc))
    request = (
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, X-Request-Id, Via\r\n"
        b"X-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: h2c\r\n"
        b"Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n"
    )
    # Connection: close on a second request would be needed to end the read; send it twice.
    raw = await raw_request(
        gw.proxy_port, request + b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    first = json.loads(raw.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1", 1)[0])
    names = {k.lower() for k, _ in first["headers"]}
    assert "x-kept" in names
    for gone in (
        "x-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ):
        assert gone not in names, gone
    # Headers the gateway sets itself survive a client Connection header naming them.
    assert header_values(first, "X-Request-Id") and header_values(first, "Via") == ["1.1 tokengate"]


async def test_request_id_is_kept_when_sane_and_replaced_when_not(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port)))
    url = f"http://127.0.0.1:{gw.proxy_port}/"
    _, headers, echoed = await get_json(url, headers={"X-Request-Id": "abc-123"})
    assert header_values(echoed, "X-Request-Id") == ["abc-123"]
    assert headers["X-Request-Id"] == "abc-123"
    _, headers, echoed = await get_json(url, headers={"X-Request-Id": "bad id; <script>"})
    (generated,) = header_values(echoed, "X-Request-Id")
    assert generated != "bad id; <script>" and len(generated) == 32
    assert headers["X-Request-Id"] == generated


async def test_response_hop_by_hop_headers_are_removed_and_via_added(
    start_gateway: StartGateway,
) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\n"
            b"Keep-Alive: timeout=1\r\n"
            b"Via: 1.0 inner\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok"
        )
        await writer.drain()

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{gw.proxy_port}/") as resp,
        ):
            assert resp.status == 200 and await resp.read() == b"ok"
            assert "X-Internal" not in resp.headers and "Keep-Alive" not in resp.headers
            assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
            assert resp.headers["Via"] == "1.0 inner, 1.1 tokengate"


@pytest.mark.parametrize(
    ("method", "length"), [("POST", ["0"]), ("PUT", ["0"]), ("PATCH", ["0"]), ("GET", [])]
)
async def test_a_request_without_a_body_is_framed_for_the_upstream_as_nginx_frames_it(
    method: str, length: list[str], upstream: TestServer, start_gateway: StartGateway
) -> None:
    """A POST, PUT or PATCH sent with neither Content-Length nor Transfer-Encoding (an empty
    body) goes upstream with `Content-Length: 0`, which some servers insist on (411); a GET
    goes without framing."""
    gw = await start_gateway(make_route(make_service(upstream.port)))
    raw = await raw_request(
        gw.proxy_port, b"%b / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % method.encode()
    )
    echoed = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert echoed["method"] == method
    assert header_values(echoed, "Content-Length") == length
    assert header_values(echoed, "Transfer-Encoding") == []


async def test_an_http_1_0_client_gets_a_small_answer_whole(start_gateway: StartGateway) -> None:
    """Relayed through aiohttp (its HTTP/1.0 keep-alive rules), with the upstream's status,
    headers and body."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nnope!"
        )
        await writer.drain()

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 404"), head
    assert b"\r\nContent-Type: text/plain\r\n" in head + b"\r\n"
    assert body == b"nope!"


async def test_double_slash_path_never_leaves_for_another_host(start_gateway: StartGateway) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port), strip_path=False))
        raw = await raw_request(
            gw.proxy_port, b"GET //evil.example/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        assert raw.startswith(b"HTTP/1.1 200")
        (head,) = upstream.requests
        request_line = head.split(b"\r\n", 1)[0]
        assert request_line.startswith(b"GET /") and not request_line.startswith(b"GET //")
        assert f"Host: 127.0.0.1:{upstream.port}".encode() in head


async def test_no_route_is_kong_404(upstream: TestServer, start_gateway: StartGateway) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port), ("/only",)))
    status, _, body = await get_json(f"http://127.0.0.1:{gw.proxy_port}/else")
    assert (status, body) == (404, {"message": "no Route matched with those values"})


async def test_route_without_service_is_503(start_gateway: StartGateway) -> None:
    gw = await start_gateway(make_route(None, ("/x",)))
    status, _, body = await get_json(f"http://127.0.0.1:{gw.proxy_port}/x")
    assert (status, body) == (503, {"message": "no Service found with those values"})


async def test_a_route_without_service_runs_its_plugin_first(
    start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    """Kong's access phase runs the plugins, then finds no service: no token is a 401, a
    valid one the 503."""
    gw = await start_gateway(
        make_route(None, ("/x",), oidc=OidcConfig.for_issuer(test_issuer.issuer))
    )
    url = f"http://127.0.0.1:{gw.proxy_port}/x"
    status, _, body = await get_json(url)
    assert (status, body) == (401, {"message": "Unauthorized"})
    status, _, body = await get_json(url, headers={"Authorization": f"Bearer {test_issuer.mint()}"})
    assert (status, body) == (503, {"message": "no Service found with those values"})


@pytest.mark.parametrize(
    "target",
    [b"/a/%2Fb", b"/a%5cb", b"/a/%00", b"/../etc/passwd", b"/a/%2e%2e/%2e%2e/b"],
)
async def test_unsafe_paths_are_refused_with_400(
    target: bytes, upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port)))
    raw = await raw_request(
        gw.proxy_port, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 400"), raw[:100]
    assert b'{"message": "Bad request"}' in raw


async def test_upstream_refusing_connections_is_502(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async with RawUpstream(lambda r, w: asyncio.sleep(0)) as closed:
        port = closed.port
    gw = await start_gateway(make_route(make_service(port)))
    status, _, body = await get_json(f"http://127.0.0.1:{gw.proxy_port}/")
    assert status == 502
    assert body == {"message": "An invalid response was received from the upstream server"}
    # The cause goes to the log, under the service's name, and never to the client.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"upstream svc-{port}: cannot connect to 127.0.0.1:{port}: Connection refused" in (
        warnings
    )


async def test_upstream_host_that_does_not_resolve_is_kongs_503(
    start_gateway: StartGateway,
) -> None:
    """Kong's balancer answers a name that does not resolve with 503 "name resolution failed",
    not the 502 of a refused connection. (RFC 6761: .invalid never resolves; the generous
    connect_timeout keeps a slow resolver from turning this into the 504 of a timeout.)"""
    service = make_service(80, host="tokengate-test.invalid", connect_timeout=60.0)
    gw = await start_gateway(make_route(service))
    status, _, body = await get_json(f"http://127.0.0.1:{gw.proxy_port}/")
    assert (status, body) == (503, {"message": "name resolution failed"})


async def test_slow_upstream_is_504(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        await asyncio.sleep(3)

    async with RawUpstream(respond) as upstream:
        service = make_service(upstream.port, read_timeout=0.2)
        gw = await start_gateway(make_route(service))
        status, _, body = await get_json(f"http://127.0.0.1:{gw.proxy_port}/")
        assert (status, body) == (504, {"message": "The upstream server is timing out"})
    assert f"upstream {service.name}: upstream read timed out" in caplog.messages


@pytest.mark.parametrize(
    ("upstream_does", "status", "logged"),
    [
        # a pause shorter than write_timeout: the upload resumes and completes
        ("reads late", 200, None),
        # nginx's proxy_send_timeout: at most write_timeout between two writes
        ("never reads", 504, "upstream stopped reading"),
        # a close while the gateway waits to write: at once, not after write_timeout
        ("hangs up", 502, "upstream closed the connection"),
        # an answer that fails, while the gateway waits to write: the same (nginx reads an
        # upstream's answer while it still sends the body)
        ("answers too big a head", 502, "upstream sent too big a response head"),
    ],
)
async def test_write_timeout_bounds_how_long_an_upstream_may_stop_reading_an_upload(
    upstream_does: str,
    status: int,
    logged: str | None,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    size = 32 * 1024 * 1024  # far more than the kernel buffers between gateway and upstream

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        if upstream_does == "never reads":
            await asyncio.sleep(10)
        elif upstream_does == "hangs up":
            await asyncio.sleep(0.5)  # the gateway is waiting for its writes to drain
        elif upstream_does == "answers too big a head":
            await asyncio.sleep(0.5)
            writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 70_000)
            await writer.drain()
            await asyncio.sleep(10)  # reads nothing
        else:
            await asyncio.sleep(0.5)
            await reader.readexactly(size)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nread")
            await writer.drain()

    async with RawUpstream(respond) as upstream:
        timeout = 0.3 if upstream_does == "never reads" else 5.0
        service = make_service(upstream.port, write_timeout=timeout)
        gw = await start_gateway(make_route(service), max_body_size=size)
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)

        async def upload() -> None:
            block = b"u" * 65536
            with contextlib.suppress(ConnectionError):
                for _ in range(size // len(block)):
                    writer.write(block)
                    await writer.drain()

        sending = asyncio.create_task(upload())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 4)
        finally:
            sending.cancel()
            writer.close()
    assert head.startswith(b"HTTP/1.1 %d" % status), head
    failures = [m for m in caplog.messages if m.startswith(f"upstream {service.name}: ")]
    assert failures == ([] if logged is None else [f"upstream {service.name}: {logged}"])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("upstream_does", "logged"),
    [
        ("hangs up", "upstream closed the connection before the response was complete"),
        ("answers too big a head", "upstream sent too big a response head"),
    ],
)
async def test_an_upload_the_upstream_failed_between_two_pieces_is_a_502_with_its_cause(
    upstream_does: str,
    logged: str,
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The upstream fails while the gateway waits for the client's next piece of body: that
    piece goes nowhere, and the 502 is logged with what the upstream did."""
    failed = asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        await reader.readuntil(b"hello\r\n")  # the first piece
        if upstream_does == "answers too big a head":
            writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 70_000)
            await writer.drain()
            failed.set()
            await reader.read()  # until the gateway lets go
        failed.set()

    async with RawUpstream(respond) as upstream:
        service = make_service(upstream.port)
        gw = await start_gateway(make_route(service))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"5\r\nhello\r\n")
            await asyncio.wait_for(failed.wait(), 5)
            await asyncio.sleep(0.2)  # the gateway has seen it
            writer.write(b"5\r\nworld\r\n0\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 502 "), head
    failures = [m for m in caplog.messages if m.startswith(f"upstream {service.name}: ")]
    assert failures == [f"upstream {service.name}: {logged}"]


async def test_garbage_from_upstream_is_502(start_gateway: StartGateway) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        status, _, _ = await get_json(f"http://127.0.0.1:{gw.proxy_port}/")
        assert status == 502


async def test_chunked_and_close_delimited_upstream_responses(start_gateway: StartGateway) -> None:
    replies = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the very end",
    ]

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(replies[len(upstream.requests) - 1])
        await writer.drain()
        if len(upstream.requests) == 1:
            await upstream.read_head(reader)  # keep-alive: the next request comes here
            writer.write(replies[1])
            await writer.drain()

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        async with aiohttp.ClientSession() as session:
            for expected in (b"hello world", b"until the very end"):
                async with session.get(f"http://127.0.0.1:{gw.proxy_port}/") as resp:
                    assert resp.status == 200
                    assert await resp.read() == expected
        assert upstream.connections == 1  # the chunked response left the connection reusable


async def test_head_204_304_keep_their_headers_and_have_no_body(
    start_gateway: StartGateway,
) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await upstream.read_head(reader)
            if head.startswith(b"HEAD /chunked"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            elif head.startswith(b"HEAD"):
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: "x"\r\n\r\n')
            elif b"/204" in head:
                writer.write(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n")
            else:
                writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n')
            await writer.drain()

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(
            gw.proxy_port,
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /304 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"HEAD /chunked HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        responses = raw.split(b"HTTP/1.1 ")[1:]
        assert [r[:3] for r in responses] == [b"200", b"204", b"304", b"200"]
        # Only the last answer, to a request that asked for it, says the connection closes.
        assert [b"Connection: close" in r for r in responses] == [False, False, False, True]
        # A length the upstream did not give is not made up: a bodiless answer has none.
        assert b"Content-Length" not in responses[2]
        assert b"Content-Length" not in responses[3] and b"Transfer-Encoding" not in responses[3]
        assert b"Content-Length: 1234" in responses[0]
        assert responses[0].endswith(b"\r\n\r\n")  # no body after HEAD's head
        assert b"X-A: 1" in responses[1]
        assert b"Content-Length" not in responses[1]  # RFC 9110 §8.6, as nginx drops it
        assert upstream.connections == 1  # framing stayed right across all three


async def test_body_over_the_limit_is_413(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port)), max_body_size=1000)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{gw.proxy_port}/", data=b"x" * 1001) as resp:
            assert resp.status == 413
            # kong/error_handlers.lua's answer to nginx's client_max_body_size 413, and a close
            assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
            assert resp.headers["Connection"].lower() == "close"
            assert await resp.json() == {"message": "Payload too large"}
        async with session.post(f"http://127.0.0.1:{gw.proxy_port}/", data=b"x" * 1000) as resp:
            assert resp.status == 200 and (await resp.json())["body_len"] == 1000

        def chunks(size: int) -> Any:
            async def body() -> Any:
                for _ in range(5):
                    yield b"y" * size

            return body()

        # Chunked: counted as it streams, and the limit is allowed, not exceeded.
        async with session.post(f"http://127.0.0.1:{gw.proxy_port}/", data=chunks(400)) as resp:
            assert resp.status == 413
        async with session.post(f"http://127.0.0.1:{gw.proxy_port}/", data=chunks(200)) as resp:
            assert resp.status == 200 and (await resp.json())["body_len"] == 1000


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_an_upload_past_the_limit_gets_its_413_while_the_client_still_sends(
    chunked: bool, upstream: TestServer, start_gateway: StartGateway
) -> None:
    """As nginx's lingering close: the 413, then a FIN, and what the client still sends is read
    and dropped. Closed with those bytes unread, the connection was reset instead, and a client
    that sends its whole body before it reads (as most do) got no 413, only the reset."""
    # A limit past what one read of the body holds: a streamed body is counted in all.
    gw = await start_gateway(make_route(make_service(upstream.port)), max_body_size=1_000_000)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    if chunked:
        body = b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%b\r\n" % (3_000_000, b"a" * 3_000_000)
    else:
        body = b"Content-Length: 4000000\r\n\r\n" + b"a" * 3_000_000
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:60]
    assert answer.endswith(b'{"message": "Payload too large"}'), answer


async def test_expect_100_continue_is_sent_only_after_routing(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port), ("/ok",)))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(
        b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    writer.close()
    await writer.wait_closed()

    # Refused before the body: the answer comes with no 100 Continue in front of it.
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(
        b"POST /nope HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 404")
    writer.close()

    # An expectation the gateway cannot meet (RFC 9110 §10.1.1): 417, Kong's body, no 100.
    raw = await raw_request(
        gw.proxy_port,
        b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 200-ok\r\n"
        b"Connection: close\r\n\r\nhello",
    )
    assert raw.startswith(b"HTTP/1.1 417 "), raw[:60]
    assert raw.partition(b"\r\n\r\n")[2] == b'{"message": "Expectation failed"}'

    # RFC 9110 §10.1.1: an HTTP/1.0 client's expectation is ignored, and so is one on a request
    # without content: the answer is the only thing that comes.
    for request in (
        b"POST /ok HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        b"GET /ok HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    ):
        raw = await raw_request(gw.proxy_port, request)
        assert raw.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), raw[:60]
        assert b" 100 " not in raw.partition(b"\r\n")[0], raw[:60]


@pytest.mark.parametrize(
    ("target", "expect", "status"),
    [
        (b"/nope", b"100-continue", b"404"),  # no route
        (b"/ok/a%2Fb", b"100-continue", b"400"),  # a path refused
        (b"/ok", b"200-ok", b"417"),  # an expectation not met
    ],
)
async def test_a_refusal_before_an_expected_body_ends_the_connection(
    target: bytes, expect: bytes, status: bytes, upstream: TestServer, start_gateway: StartGateway
) -> None:
    """Refused before a 100 Continue invited the body, the client may send it later or never
    (RFC 9110 §10.1.1): what comes next cannot be told from a next request, so the refusal
    closes the connection, as the openid-connect plugin's does, rather than read the next
    request as the body (a front proxy reusing the connection would be desynchronised)."""
    gw = await start_gateway(make_route(make_service(upstream.port), ("/ok",)))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(
            b"POST %b HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\nExpect: %b\r\n\r\n"
            % (target, expect)
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 %b " % status), head
        assert b"\r\nConnection: close\r\n" in head
        writer.write(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")  # not read as the body
        rest = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert b"HTTP/1.1" not in rest, rest


async def streaming_upstream() -> tuple[TestServer, dict[str, Any]]:
    seen: dict[str, Any] = {}

    async def sink(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            digest, size = hashlib.sha256(), 0
            async for chunk in request.content.iter_any():
                digest.update(chunk)
                size += len(chunk)
            seen.update(size=size, sha=digest.hexdigest())
            return web.json_response(seen)
        response = web.StreamResponse()
        response.content_length = 50 * 1024 * 1024
        await response.prepare(request)
        block = bytes(range(256)) * 256
        for _ in range(50 * 1024 * 1024 // len(block)):
            await response.write(block)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", sink)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, seen


def sha256_repeated(block: bytes, times: int) -> str:
    digest = hashlib.sha256()
    for _ in range(times):
        digest.update(block)
    return digest.hexdigest()


async def test_50_mb_streams_both_ways_without_being_held(start_gateway: StartGateway) -> None:
    import tracemalloc

    server, seen = await streaming_upstream()
    try:
        gw = await start_gateway(
            make_route(make_service(server.port)), max_body_size=100 * 1024 * 1024
        )
        block = b"z" * 65536
        tracemalloc.start()
        try:
            async with aiohttp.ClientSession() as session:

                async def body() -> Any:
                    for _ in range(800):  # 50 MiB
                        yield block

                async with session.post(
                    f"http://127.0.0.1:{gw.proxy_port}/up", data=body()
                ) as resp:
                    assert resp.status == 200
                assert seen == {"size": 800 * 65536, "sha": sha256_repeated(block, 800)}

                got, digest = 0, hashlib.sha256()
                async with session.get(f"http://127.0.0.1:{gw.proxy_port}/down") as resp:
                    assert resp.status == 200
                    async for chunk in resp.content.iter_any():
                        got += len(chunk)
                        digest.update(chunk)
                assert got == 50 * 1024 * 1024
                assert digest.hexdigest() == sha256_repeated(bytes(range(256)) * 256, 800)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Client, gateway and upstream share this process: all three together stay far below
        # the 50 MB that buffering a body once would take.
        assert peak < 16 * 1024 * 1024, peak
    finally:
        await server.close()


async def test_client_going_away_mid_body_cancels_the_upstream_request(
    start_gateway: StartGateway,
) -> None:
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def slow_sink(request: web.Request) -> web.Response:
        try:
            await request.read()
        except BaseException as exc:  # the gateway dropped the upstream connection
            if not outcome.done():
                outcome.set_result(type(exc).__name__)
            raise
        if not outcome.done():
            outcome.set_result("complete")
        return web.Response()

    app = web.Application(client_max_size=1024**3)
    app.router.add_post("/", slow_sink)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        gw = await start_gateway(make_route(make_service(server.port)))
        _, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        writer.write(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 200_000
        )
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()
        assert await asyncio.wait_for(outcome, 5) != "complete"
        # ...and the gateway is still serving.
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{gw.proxy_port}/", data=b"small") as resp,
        ):
            assert resp.status == 200
    finally:
        await server.close()


async def test_pool_caps_connections_and_queues(start_gateway: StartGateway) -> None:
    active = 0
    most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.05)
        active -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        gw = await start_gateway(make_route(make_service(server.port)), upstream_max_connections=2)
        async with aiohttp.ClientSession() as session:

            async def one() -> int:
                async with session.get(f"http://127.0.0.1:{gw.proxy_port}/") as resp:
                    return resp.status

            statuses = await asyncio.gather(*(one() for _ in range(10)))
        assert statuses == [200] * 10
        assert most == 2
    finally:
        await server.close()


async def test_a_request_waits_for_a_pool_slot_at_most_connect_timeout_then_is_503(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        await asyncio.sleep(2)  # holds the only connection the service may have

    async with RawUpstream(respond) as upstream:
        service = make_service(upstream.port, connect_timeout=0.3)
        gw = await start_gateway(make_route(service), upstream_max_connections=1)
        url = f"http://127.0.0.1:{gw.proxy_port}/"
        holding = asyncio.create_task(get_json(url))
        await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        status, _, body = await get_json(url)
        waited = asyncio.get_running_loop().time() - started
        holding.cancel()
    assert (status, body) == (503, {"message": "The upstream server is currently unavailable"})
    assert 0.2 < waited < 1.5, waited
    no_slot = f"upstream {service.name}: no upstream connection became free in time"
    assert no_slot in caplog.messages


@pytest.mark.parametrize(
    ("method", "body", "status"),
    [
        ("POST", b"once", 502),  # a POST is never replayed
        # A body held whole is sent again; a streamed one (past BUFFER_LIMIT) is gone.
        ("PUT", b"x" * BUFFER_LIMIT, 200),
        ("PUT", b"x" * (BUFFER_LIMIT + 1), 502),
    ],
    ids=["post", "put-held", "put-streamed"],
)
async def test_stale_pooled_connection_is_retried_for_idempotent_requests_only(
    method: str, body: bytes, status: int, start_gateway: StartGateway
) -> None:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers one request as keep-alive, then drops the connection as soon as the next
        # request arrives, without answering it (an upstream whose idle timer just fired).
        head = await upstream.read_head(reader)
        length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
        await reader.readexactly(int(length[1]) if length else 0)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read(1)

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        url = f"http://127.0.0.1:{gw.proxy_port}/"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 200
            async with session.get(url) as resp:
                assert resp.status == 200 and await resp.read() == b"ok"
            async with session.request(method, url, data=body) as resp:
                assert resp.status == status


async def test_the_retry_of_a_stale_connection_takes_a_new_one_not_another_pooled_one(
    start_gateway: StartGateway,
) -> None:
    """Two connections are pooled, then both go stale (the upstream restarted): the retry
    must open a new connection, since the other pooled one is just as stale."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        old = upstream.connections <= 2
        while True:
            await upstream.read_head(reader)
            if old and len(upstream.requests) > 2:
                return  # a pooled connection of before the restart: closed, unanswered
            await asyncio.sleep(0.2 if old else 0)  # the first two overlap: two connections
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))

        async def get() -> tuple[int, bytes]:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{gw.proxy_port}/") as resp,
            ):
                return resp.status, await resp.read()

        assert await asyncio.gather(get(), get()) == [(200, b"ok")] * 2
        assert upstream.connections == 2
        assert await get() == (200, b"ok")
        assert upstream.connections == 3


async def test_a_new_connection_closed_before_an_answer_is_a_502_not_a_retry(
    start_gateway: StartGateway,
) -> None:
    """Only a pooled connection can be stale: a new one the upstream closes without answering
    is its failure, and even a GET is not sent to it a second time."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)  # and close, with no answer

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        status, _, _ = await get_json(f"http://127.0.0.1:{gw.proxy_port}/")
    assert (status, upstream.connections) == (502, 1)


async def test_a_stale_pooled_connections_retry_to_an_upstream_gone_is_a_502(
    start_gateway: StartGateway,
) -> None:
    """The pooled connection closes at the next request and the upstream stops listening:
    the one retry cannot connect, and that is the upstream's 502, not the gateway's 500."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        if len(upstream.requests) == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            await upstream.read_head(reader)  # the next request on this connection: go away
        assert upstream.server is not None
        upstream.server.close()

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        url = f"http://127.0.0.1:{gw.proxy_port}/"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 200
            async with session.get(url) as resp:
                assert resp.status == 502
                assert await resp.json() == {
                    "message": "An invalid response was received from the upstream server"
                }


async def test_stalled_request_body_times_out(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port)), client_body_timeout=0.3)
    raw = await raw_request(
        gw.proxy_port, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", timeout=5
    )
    assert raw.startswith(b"HTTP/1.1 408")


async def test_a_pause_under_client_body_timeout_before_a_streamed_body_is_no_timeout(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    """client_body_timeout is nginx's: a gap between two reads, the first one included."""
    gw = await start_gateway(make_route(make_service(upstream.port)), client_body_timeout=2.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"
        )
        await asyncio.sleep(1.2)
        writer.write(b"a" * 100_000)
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert raw.startswith(b"HTTP/1.1 200"), raw[:60]
    assert json.loads(raw.partition(b"\r\n\r\n")[2])["body_len"] == 100_000


@pytest.mark.parametrize(("piece", "status"), [(200, 200), (1, 408)], ids=["steady", "trickled"])
async def test_a_small_body_is_paced_as_a_streamed_one(
    piece: int, status: int, upstream: TestServer, start_gateway: StartGateway
) -> None:
    """client_body_timeout bounds each gap between two reads (nginx's), not a small body's
    whole time: 200 bytes every 0.2 s arrive whole, though they take longer than the timeout.
    A byte every 0.2 s falls under MIN_BODY_RATE, as for a streamed body, and is a 408."""
    gw = await start_gateway(make_route(make_service(upstream.port)), client_body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1400\r\nConnection: close\r\n\r\n")
    sent, answer = 0, b""
    with contextlib.suppress(ConnectionError):
        while sent < 1400 and not answer:
            writer.write(b"a" * piece)
            sent += piece
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(100), 0.2)
        answer += await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 %d" % status), answer[:60]
    if status == 200:
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["body_len"] == 1400
    else:
        assert sent < 100  # cut off within a few reads, not after the whole body


async def test_a_trickled_request_body_is_cut_off_and_frees_its_upstream_connection(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    """Each gap under client_body_timeout, yet a byte every 0.2 s: a streamed body that holds an
    upstream connection must average MIN_BODY_RATE, so this one gets a 408, and the one
    connection the service may have serves the next client."""
    gw = await start_gateway(
        make_route(make_service(upstream.port)), client_body_timeout=0.5, upstream_max_connections=1
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = b""
    with contextlib.suppress(ConnectionError):
        while loop.time() - started < 5 and not answer:
            writer.write(b"1\r\na\r\n")
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(100), 0.2)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:60]  # not the 5 s the loop would wait
    raw = await raw_request(
        gw.proxy_port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 200"), raw[:60]


async def test_incomplete_request_head_is_cut_off(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port)), client_header_timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    raw = await raw_request(gw.proxy_port, b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ", timeout=5)
    assert loop.time() - started < 4  # closed by the gateway, not by our own timeout
    assert not raw.startswith(b"HTTP/1.1 200")
