"""WebSocket through the gateway: the handshake is routed and authenticated like any request,
then bytes pass both ways until a side ends (real aiohttp WebSocket peers on port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import HttpVersion, HttpVersion10, HttpVersion11, web
from aiohttp.test_utils import TestServer, make_mocked_request
from multidict import CIMultiDict

from tests.gateway.conftest import RawUpstream, StartGateway, make_route, make_service
from tests.gateway.issuer import TestIssuer
from tests.gateway.support import eventually
from tests.gateway.test_proxy_edges import read_response
from tokengate.gateway.cors import CorsConfig
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.tunnel import wants_websocket

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


SWITCHED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def through_gateway(
    port: int, path: bytes = b"/ws", extra: bytes = b""
) -> AsyncIterator[tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw client that has sent the handshake (with `extra` header lines): the head of the
    answer, and the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HANDSHAKE.replace(b"/ws", path) + extra + b"\r\n")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        yield head, reader, writer
    finally:
        writer.close()


def switching(then: Respond, answer: bytes = SWITCHED) -> RawUpstream:
    """A raw upstream that reads the handshake, sends `answer` (a 101), then runs `then`."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(answer)
        await writer.drain()
        await then(reader, writer)

    upstream = RawUpstream(respond)
    return upstream


class Flood:
    """Writes 64 KiB pieces until stopped or the connection fails; `pushed` counts what the
    socket took."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.pushed = 0
        self._writer = writer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                self._writer.write(b"z" * 65536)
                await self._writer.drain()
                self.pushed += 65536

    def stop(self) -> None:
        self._task.cancel()


async def still_open(writer: asyncio.StreamWriter) -> bool:
    """Whether the gateway's end of an upstream connection is still there: a socket it has
    let go of answers what the upstream sends with a reset."""
    try:
        for _ in range(3):
            writer.write(b"ping")
            await writer.drain()
            await asyncio.sleep(0.1)
    except ConnectionError:
        return False
    return True


async def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The access lines so far, after waiting up to 5 s for one (a tunnel's line is written
    when its handler returns)."""
    for _ in range(100):
        lines = [r.getMessage() for r in caplog.records if r.name == "tokengate.access"]
        if lines:
            return lines
        await asyncio.sleep(0.05)
    return []


class WsUpstream:
    """An aiohttp app: /ws echoes every message (and records the handshake headers and how each
    socket ended); /silent accepts and never sends; /plain is not a WebSocket endpoint."""

    def __init__(self) -> None:
        self.handshakes: list[dict[str, str]] = []
        self.ended = asyncio.Event()
        app = web.Application()
        app.router.add_get("/ws", self.echo)
        app.router.add_get("/silent", self.silent)
        app.router.add_get("/plain", self.plain)
        self.server = TestServer(app, host="127.0.0.1")

    async def echo(self, request: web.Request) -> web.WebSocketResponse:
        self.handshakes.append(dict(request.headers))
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and msg.data == "close":
                    await ws.close(message=b"asked to")
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    await ws.send_str("echo:" + msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await ws.send_bytes(msg.data[::-1])
        finally:  # TestServer cancels the handler when the gateway drops the connection
            self.ended.set()
        return ws

    async def silent(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        try:
            async for _ in ws:
                pass
        finally:
            self.ended.set()
        return ws

    async def plain(self, request: web.Request) -> web.Response:
        return web.Response(status=403, text="no websocket here")


@pytest.fixture
async def ws_upstream() -> AsyncIterator[WsUpstream]:
    upstream = WsUpstream()
    await upstream.server.start_server()
    yield upstream
    await upstream.server.close()


async def test_messages_pass_both_ways(
    start_gateway: StartGateway, ws_upstream: WsUpstream
) -> None:
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port)))
    big = bytes(range(256)) * 8192  # 2 MB each way: more than any socket buffer
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{gw.proxy_port}/ws", max_msg_size=0) as ws,
    ):
        assert ws.protocol is None and ws.get_extra_info("peername") is not None
        for text in ("one", "two", "three"):
            await ws.send_str(text)
            assert await ws.receive_str(timeout=5) == "echo:" + text
        await ws.send_bytes(big)
        assert await ws.receive_bytes(timeout=10) == big[::-1]
    # The client's close reaches the upstream, which ends its side.
    await asyncio.wait_for(ws_upstream.ended.wait(), 5)


async def test_the_handshake_is_forwarded_and_answered_with_the_upstreams_101(
    start_gateway: StartGateway, ws_upstream: WsUpstream
) -> None:
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port)))
    extra = b"X-Forwarded-For: 6.6.6.6\r\nX-Request-Id: ws-1\r\n"
    async with through_gateway(gw.proxy_port, extra=extra) as (head, _, _):
        pass
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101 ")
    answer = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if line)}
    # RFC 6455's accept value for the RFC's own sample key: the upstream's, passed through.
    assert answer["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert answer["upgrade"].lower() == "websocket"
    assert answer["connection"].lower() == "upgrade"
    assert answer["x-request-id"] == "ws-1" and "tokengate" in answer["via"]
    sent = {k.lower(): v for k, v in ws_upstream.handshakes[0].items()}
    assert sent["upgrade"] == "websocket" and sent["connection"].lower() == "upgrade"
    assert sent["sec-websocket-key"] == "dGhlIHNhbXBsZSBub25jZQ=="
    assert sent["x-forwarded-for"] == "127.0.0.1"  # the client's claim replaced, as always


async def test_a_declined_handshake_is_relayed_and_the_connection_stays_http(
    start_gateway: StartGateway, ws_upstream: WsUpstream
) -> None:
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port)))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    try:
        writer.write(HANDSHAKE.replace(b"/ws", b"/plain") + b"\r\n")
        head, body = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 403 ") and body == b"no websocket here"
        assert b"upgrade" not in head.lower()
        writer.write(b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")  # same connection
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 403 ")
    finally:
        writer.close()


async def test_the_upstream_closing_closes_the_client(
    start_gateway: StartGateway, ws_upstream: WsUpstream
) -> None:
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port)))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{gw.proxy_port}/ws") as ws,
    ):
        await ws.send_str("close")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.extra == "asked to"


async def test_an_idle_upstream_ends_the_tunnel_after_read_timeout(
    start_gateway: StartGateway, ws_upstream: WsUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokengate.proxy")
    service = make_service(ws_upstream.server.port, read_timeout=0.5)
    gw = await start_gateway(make_route(service))
    started = time.monotonic()
    async with through_gateway(gw.proxy_port, b"/silent") as (head, reader, _):
        assert head.startswith(b"HTTP/1.1 101 ")
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the gateway, nothing relayed
    assert time.monotonic() - started >= 0.4
    await asyncio.wait_for(ws_upstream.ended.wait(), 5)  # and the upstream side is closed
    ended = f"websocket tunnel to {service.name} ended: upstream read timed out"
    assert ended in caplog.messages


async def test_an_upstream_that_stops_reading_is_cut_off_after_write_timeout(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    done = asyncio.Event()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # then nothing more is read, until the test is over
        await done.wait()

    async with switching(never_read) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, write_timeout=0.5)))
        async with through_gateway(gw.proxy_port) as (head, reader, writer):
            assert head.startswith(b"HTTP/1.1 101 ")
            flood = Flood(writer)  # far more than the sockets between us and the upstream hold
            started = time.monotonic()
            async with asyncio.timeout(10):
                # The gateway gives up on the tunnel: a close, or a reset (our bytes lie unread).
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
            assert time.monotonic() - started < 4  # write_timeout, not the 5 s read_timeout
            flood.stop()
        done.set()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "websocket tunnel cut off: the upstream stopped reading" in warnings
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_tunnel_ending_with_bytes_queued_for_the_upstream_ends_cleanly(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokengate.proxy")
    done = asyncio.Event()
    upstream_end: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        upstream_end.set_result(await still_open(writer))

    async with switching(never_read) as upstream:
        # The upstream neither reads nor sends: read_timeout ends the tunnel while what the
        # client sent still queues for it (write_timeout, far longer, has not run out).
        service = make_service(upstream.port, read_timeout=1.0, write_timeout=30.0)
        gw = await start_gateway(make_route(service))
        async with through_gateway(gw.proxy_port) as (head, reader, writer):
            assert head.startswith(b"HTTP/1.1 101 ")
            flood = Flood(writer)
            async with asyncio.timeout(5):
                with contextlib.suppress(ConnectionResetError):
                    assert await reader.read() == b""
            flood.stop()
        done.set()
        # What was queued would never be read: the upstream connection was let go of with the
        # tunnel's end, not held (a socket and its buffer) until write_timeout.
        assert await asyncio.wait_for(upstream_end, 5) is False
    assert f"websocket tunnel to {service.name} ended: upstream read timed out" in caplog.messages
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_client_that_stops_reading_is_cut_off_after_client_send_timeout(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokengate.proxy")
    upstream_saw_close = asyncio.Event()

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                writer.write(b"y" * 65536)
                await writer.drain()
        except ConnectionError:
            upstream_saw_close.set()

    async with switching(flood) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)), client_send_timeout=0.5)
        async with through_gateway(gw.proxy_port):
            # Never read: the gateway's writes to us stall, and it ends the tunnel both ways.
            await asyncio.wait_for(upstream_saw_close.wait(), 10)
    ended = f"websocket tunnel to svc-{upstream.port} ended: the client stopped reading"
    assert ended in caplog.messages


async def test_a_tunnel_frees_its_pool_slot_once_switched(
    start_gateway: StartGateway, ws_upstream: WsUpstream
) -> None:
    gw = await start_gateway(
        make_route(make_service(ws_upstream.server.port)), upstream_max_connections=1
    )
    url = f"http://127.0.0.1:{gw.proxy_port}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url + "/ws") as first,
        session.ws_connect(url + "/ws") as second,
    ):
        async with session.get(url + "/plain") as plain:
            assert plain.status == 403  # the one pooled connection is still free
        await second.send_str("b")
        await first.send_str("a")
        assert await first.receive_str(timeout=5) == "echo:a"
        assert await second.receive_str(timeout=5) == "echo:b"


async def test_a_handshake_takes_the_slot_of_an_idle_connection(
    start_gateway: StartGateway, ws_upstream: WsUpstream
) -> None:
    """A handshake needs a new connection: when idle keep-alive connections fill
    upstream_max_connections, the oldest is closed for it, instead of the handshake waiting
    for a slot nothing would free (a 503 after connect_timeout)."""
    svc = make_service(ws_upstream.server.port, connect_timeout=1.0)
    gw = await start_gateway(make_route(svc), upstream_max_connections=1)
    url = f"http://127.0.0.1:{gw.proxy_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/plain") as plain:
            assert plain.status == 403  # its upstream connection stays in the pool, idle
        async with session.ws_connect(url + "/ws") as ws:
            await ws.send_str("a")
            assert await ws.receive_str(timeout=5) == "echo:a"


async def test_handshakes_count_against_the_pool_until_switched(
    start_gateway: StartGateway,
) -> None:
    """A flood of handshakes to an endpoint that declines them slowly cannot open upstream
    connections past upstream_max_connections: they wait for the pool like any request."""
    pending = most = 0

    async def decline_slowly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal pending, most
        while True:
            await upstream.read_head(reader)
            pending += 1
            most = max(most, pending)
            await asyncio.sleep(0.1)
            pending -= 1
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
            await writer.drain()

    upstream = RawUpstream(decline_slowly)
    async with upstream:
        gw = await start_gateway(
            make_route(make_service(upstream.port)), upstream_max_connections=1
        )

        async def handshake() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
            try:
                writer.write(HANDSHAKE + b"\r\n")
                head, _ = await read_response(reader, timeout=10)
                return head
            finally:
                writer.close()

        heads = await asyncio.gather(*(handshake() for _ in range(5)))
    assert all(head.startswith(b"HTTP/1.1 403 ") for head in heads)
    assert len(upstream.requests) == 5 and most == 1


async def test_the_first_bytes_after_the_101_in_the_same_packet_are_relayed(
    start_gateway: StartGateway,
) -> None:
    async def wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    # One write: the 101 and the new protocol's first bytes in one packet.
    async with switching(wait, SWITCHED + b"hello from upstream") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        async with through_gateway(gw.proxy_port) as (_, reader, _):
            async with asyncio.timeout(5):
                assert await reader.readexactly(19) == b"hello from upstream"


async def test_a_101_with_a_content_length_does_not_cut_the_tunnel(
    start_gateway: StartGateway,
) -> None:
    async def send_more(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"after the switch")
        await writer.drain()
        await reader.read()

    with_length = SWITCHED.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n", 1)
    async with switching(send_more, with_length) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        async with through_gateway(gw.proxy_port) as (head, reader, _):
            assert b"content-length" not in head.lower()
            async with asyncio.timeout(5):
                assert await reader.readexactly(16) == b"after the switch"


async def test_the_101_of_a_cors_route_carries_the_routes_cors_headers_not_the_upstreams(
    start_gateway: StartGateway,
) -> None:
    async def wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    # The upstream allows any origin; the route's cors plugin (Kong's header_filter runs on a
    # 101 too) answers for the one it allows, in place of the upstream's.
    own = SWITCHED.replace(b"\r\n\r\n", b"\r\nAccess-Control-Allow-Origin: *\r\n\r\n", 1)
    async with switching(wait, own) as upstream:
        cors = CorsConfig(origins=("https://app.example",))
        gw = await start_gateway(make_route(make_service(upstream.port), cors=cors))
        extra = b"Origin: https://app.example\r\n"
        async with through_gateway(gw.proxy_port, extra=extra) as (head, _, _):
            pass
    assert head.startswith(b"HTTP/1.1 101 ")
    allowed = [line for line in head.lower().split(b"\r\n") if line.startswith(b"access-")]
    assert allowed == [b"access-control-allow-origin: https://app.example"]


async def test_a_101_nobody_asked_for_is_a_502(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async def wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with switching(wait, SWITCHED + b"raw bytes") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        try:
            writer.write(b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n")  # no upgrade asked
            head, body = await read_response(reader)
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 502 ") and b"raw bytes" not in body
    assert f"upstream svc-{upstream.port}: upstream switched protocols" in caplog.messages


async def test_a_client_that_keeps_sending_to_a_stalled_upstream_is_held_back(
    start_gateway: StartGateway,
) -> None:
    """The gateway stops reading the client while the upstream is not reading: what the client
    can push levels off at what the sockets between hold, instead of piling up in memory. Once
    the upstream reads again, so does the gateway (held back, not cut), and it holds the
    client back again the next time the upstream stalls."""
    resume, done = asyncio.Event(), asyncio.Event()

    async def stall_read_stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await resume.wait()
        read = 0
        while read < 16 * 1024 * 1024:
            read += len(await reader.read(1 << 20))
        await done.wait()

    async def levels_off(flood: Flood) -> int:
        await asyncio.sleep(1.0)
        early = flood.pushed
        await asyncio.sleep(1.0)
        assert early > 0 and flood.pushed == early  # nothing more got through in a second
        return early

    async with switching(stall_read_stall) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, write_timeout=30)))
        async with through_gateway(gw.proxy_port) as (_, _, writer):
            flood = Flood(writer)
            held = await levels_off(flood)
            assert held < 64 * 1024 * 1024
            resume.set()
            await eventually(lambda: flood.pushed > held + 8 * 1024 * 1024, timeout=5)
            await levels_off(flood)
            flood.stop()
        done.set()


async def test_a_client_closing_its_socket_ends_the_tunnel_as_a_101(
    start_gateway: StartGateway, ws_upstream: WsUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokengate.access")  # before the gateway starts
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port)))
    async with through_gateway(gw.proxy_port):
        pass  # no close frame: the TCP connection just ends
    await asyncio.wait_for(ws_upstream.ended.wait(), 5)  # the upstream side is closed too
    lines = await access_lines(caplog)
    assert len(lines) == 1 and '"GET /ws" 101 ' in lines[0], lines
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_stopping_the_gateway_ends_its_tunnels_at_once(
    start_gateway: StartGateway, ws_upstream: WsUpstream
) -> None:
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port)), shutdown_timeout=30)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{gw.proxy_port}/ws") as ws,
    ):
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=5) == "echo:hi"
        started = time.monotonic()
        stopping = asyncio.create_task(gw.stop())
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await asyncio.wait_for(stopping, 5)
    assert time.monotonic() - started < 5  # not the 30 s grace
    await asyncio.wait_for(ws_upstream.ended.wait(), 5)


def test_only_an_ascii_websocket_upgrade_is_taken() -> None:
    def wants(
        upgrade: str,
        connection: str | None = "Upgrade",
        method: str = "GET",
        version: HttpVersion = HttpVersion11,
    ) -> bool:
        headers = CIMultiDict({"Host": "a", "Upgrade": upgrade})
        if connection is not None:
            headers["Connection"] = connection
        request = make_mocked_request(method, "/ws", headers=headers, version=version)
        return wants_websocket(request)

    assert wants("websocket") and wants("WebSocket", "keep-alive, Upgrade")
    assert wants("websocket", "keep-alive,upgrade")  # a list needs no space after its commas
    assert not wants("websoc\u212aet")  # a Kelvin sign lower-cases to "k": not for aiohttp
    assert not wants("h2c") and not wants("websocket", "keep-alive")
    assert not wants("websocket", None)  # no Connection: upgrade, no switch
    assert not wants("websocket", method="POST")
    assert not wants("websocket", version=HttpVersion10)  # RFC 6455 §4.1: HTTP/1.1 at least


async def test_the_handshake_needs_a_valid_token_on_an_openid_connect_route(
    start_gateway: StartGateway, ws_upstream: WsUpstream, test_issuer: TestIssuer
) -> None:
    oidc = OidcConfig.for_issuer(test_issuer.issuer, bearer_token_param_type=("header", "query"))
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port), oidc=oidc))
    url = f"http://127.0.0.1:{gw.proxy_port}/ws"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, headers={"Authorization": "Bearer not.a.token"})
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as missing:
            await session.ws_connect(url)
        assert missing.value.status == 401
        assert ws_upstream.handshakes == []  # refused at the gateway
        # Browsers cannot set headers on a WebSocket: the token may come in the query.
        async with session.ws_connect(url + "?access_token=" + test_issuer.mint()) as ws:
            await ws.send_str("hi")
            assert await ws.receive_str(timeout=5) == "echo:hi"
    assert len(ws_upstream.handshakes) == 1


async def test_the_101_carries_the_downstream_headers_of_the_token(
    start_gateway: StartGateway, ws_upstream: WsUpstream, test_issuer: TestIssuer
) -> None:
    oidc = OidcConfig.for_issuer(
        test_issuer.issuer, downstream_headers_claims=("sub",), downstream_headers_names=("X-Sub",)
    )
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port), oidc=oidc))
    token = test_issuer.mint(sub="alice")
    url = f"http://127.0.0.1:{gw.proxy_port}/ws"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        assert ws._response.headers.getall("X-Sub") == ["alice"]


async def test_a_tunnel_is_logged_as_101(
    start_gateway: StartGateway, ws_upstream: WsUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokengate.access")  # before the gateway starts
    gw = await start_gateway(make_route(make_service(ws_upstream.server.port)))
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{gw.proxy_port}/ws") as ws,
    ):
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=5) == "echo:hi"
    await asyncio.wait_for(ws_upstream.ended.wait(), 5)
    lines = await access_lines(caplog)
    assert len(lines) == 1 and '"GET /ws" 101 ' in lines[0], lines


async def test_a_tunnels_access_line_counts_the_bytes_the_upstream_sent_after_its_101(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokengate.access")  # before the gateway starts

    async def two_pieces(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for piece in (b"abc", b"defg"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.1)  # two reads on the gateway's side

    async with switching(two_pieces) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        async with through_gateway(gw.proxy_port) as (head, reader, _):
            assert head.startswith(b"HTTP/1.1 101 ")
            async with asyncio.timeout(5):
                assert await reader.read() == b"abcdefg"
    lines = await access_lines(caplog)
    assert len(lines) == 1 and '"GET /ws" 101 ' in lines[0], lines
    assert f" upstream=127.0.0.1:{upstream.port} " in lines[0] and " bytes=7 " in lines[0]


async def test_a_client_gone_as_the_101_comes_leaves_no_upstream_connection_open(
    start_gateway: StartGateway,
) -> None:
    # The client's FIN reaches the gateway in the same loop turn as the 101: its transport is
    # closing when the relay would answer, before aiohttp cancels the handler.
    upstream_saw_close = asyncio.Event()
    client = socket.socket()

    async def late_101(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(SWITCHED)  # sent at once; and the client's FIN right after it
        client.shutdown(socket.SHUT_WR)
        await reader.read()
        upstream_saw_close.set()

    async with RawUpstream(late_101) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        client.connect(("127.0.0.1", gw.proxy_port))
        client.sendall(HANDSHAKE + b"\r\n")
        try:
            await asyncio.wait_for(upstream_saw_close.wait(), 3)
        finally:
            client.close()
