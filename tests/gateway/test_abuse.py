"""What one client or one upstream can make a worker hold: request heads are bounded as nginx
bounds them, a client that pipelines and never reads stops being read, and an upstream's tiny
chunks reach the client joined (real sockets, in-process upstreams on port 0)."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
from collections.abc import AsyncIterator
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request

from tests.gateway.conftest import (
    RawUpstream,
    StartGateway,
    make_route,
    make_service,
    raw_request,
    serving,
)
from tests.gateway.issuer import TestIssuer
from tests.gateway.support import KeepAliveUpstream, eventually, route
from tests.gateway.test_proxy_edges import CLOSE_GET, read_response
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.rawresponse import RawResponse
from tokengate.gateway.server import MAX_REQUEST_HEAD, connection_cap

TOO_LARGE = b'{"message": "Request header or cookie too large"}'


@pytest.fixture
async def counting() -> AsyncIterator[tuple[TestServer, list[str]]]:
    """An upstream answering every request with 64 KiB (the most the gateway relays as one
    ready write), and the paths it was asked for."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(body=b"x" * 64 * 1024)

    async with serving(answer) as server:
        yield server, seen


@pytest.fixture
async def gateway(
    counting: tuple[TestServer, list[str]], start_gateway: StartGateway
) -> GatewayServer:
    return await start_gateway(make_route(make_service(counting[0].port)))


def headers(count: int, size: int) -> bytes:
    return b"".join(b"X-Pad-%d: %b\r\n" % (i, b"v" * size) for i in range(count))


# -- request heads ------------------------------------------------------------------------------
async def test_a_head_past_the_bound_is_kongs_400_and_a_close(gateway: GatewayServer) -> None:
    big = headers(10, 8000)  # each line within aiohttp's 8 KiB, 80 KB in all
    assert len(big) > MAX_REQUEST_HEAD
    for sent in (
        b"GET / HTTP/1.1\r\nHost: a\r\n" + big,  # still coming: cut off at the bound
        b"GET / HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n",  # whole, in one read
    ):
        answer = await raw_request(gateway.proxy_port, sent)
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
        assert answer.endswith(b"\r\n\r\n" + TOO_LARGE)  # and then the gateway closed


@pytest.mark.parametrize("before", [1, 40])
async def test_requests_before_a_head_past_the_bound_are_answered_first(
    before: int, gateway: GatewayServer, counting: tuple[TestServer, list[str]]
) -> None:
    """In one write: `before` pipelined requests, then a head past the bound. nginx answers
    them all, then the 400. (40 is more than aiohttp parses before it waits for its handler to
    catch up: the big head is parsed later, from bytes held back, and still measured.)"""
    sent = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n" * before
    sent += b"GET /big HTTP/1.1\r\nHost: a\r\n" + headers(13, 8000) + b"\r\n"
    answer = await raw_request(gateway.proxy_port, sent, timeout=10)
    assert answer.count(b"HTTP/1.1 200 ") == before
    assert answer.endswith(b"\r\n\r\n" + TOO_LARGE)
    assert "/big" not in counting[1]


async def test_a_head_past_the_bound_after_a_declined_upgrade_is_refused(
    gateway: GatewayServer, counting: tuple[TestServer, list[str]]
) -> None:
    """An upgrade the upstream declines (200, not 101): aiohttp parses what followed it
    outside data_received, and that head is measured too."""
    sent = (
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    sent += b"GET /big HTTP/1.1\r\nHost: a\r\n" + headers(13, 8000) + b"\r\n"
    answer = await raw_request(gateway.proxy_port, sent, timeout=10)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert "/big" not in counting[1]


async def test_the_status_port_has_its_own_connection_cap(gateway: GatewayServer) -> None:
    held = [await asyncio.open_connection("127.0.0.1", gateway.status_port) for _ in range(80)]
    try:
        answer = await raw_request(
            gateway.status_port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert [await closed_by_peer(reader, 0.2) for reader, _ in held[:17]] == [True] * 17
    finally:
        for _, writer in held:
            writer.close()


async def test_heads_under_the_bound_and_bodies_pass(
    gateway: GatewayServer, counting: tuple[TestServer, list[str]]
) -> None:
    under = headers(7, 8000)  # 56 KB
    answer = await raw_request(
        gateway.proxy_port,
        b"GET /under HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + under + b"\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    # A body is not a head, however much of it comes in one read with its head.
    body = b"b" * 300_000
    answer = await raw_request(
        gateway.proxy_port,
        b"POST /body HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%b"
        % (len(body), body),
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    # Nor are many small pipelined heads in one read.
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.proxy_port)
    try:
        writer.write(b"GET /many HTTP/1.1\r\nHost: a\r\n\r\n" * 3000)
        for _ in range(3000):
            head, _ = await read_response(reader, timeout=10)
            assert head.startswith(b"HTTP/1.1 200 ")
    finally:
        writer.close()
    assert counting[1].count("/many") == 3000


# -- a client that does not read -----------------------------------------------------------------
async def pipeline_unread(port: int, count: int) -> socket.socket:
    """`count` pipelined GETs on a socket with a small receive buffer, none of it read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET /piped HTTP/1.1\r\nHost: a\r\n\r\n" * count)
    return sock


async def answers(sock: socket.socket, wanted: int, *, status: bytes = b"HTTP/1.1 200 ") -> int:
    """How many answers the socket gives, reading until `wanted` came or it closed."""
    loop = asyncio.get_running_loop()
    seen, tail = 0, b""  # counted so far; the end of the last read, where a line may begin
    async with asyncio.timeout(20):
        while seen < wanted:
            chunk = await loop.sock_recv(sock, 1 << 20)
            if not chunk:
                break
            window = tail + chunk
            seen += window.count(status)
            tail = window[-(len(status) - 1) :]
    return seen


async def test_a_client_that_pipelines_and_never_reads_stops_being_served(
    gateway: GatewayServer, counting: tuple[TestServer, list[str]]
) -> None:
    """300 answers of 64 KiB (19.7 MB, several times what the sockets hold) are not all
    buffered in the gateway: it stops taking requests until the client reads, then serves the
    rest."""
    count = 300
    sock = await pipeline_unread(gateway.proxy_port, count)
    try:
        await asyncio.sleep(1.5)
        served_unread = counting[1].count("/piped")
        assert served_unread < count * 2 // 3
        assert await answers(sock, count) == count
    finally:
        sock.close()


async def test_a_client_that_never_reads_is_dropped_after_the_send_timeout(
    counting: tuple[TestServer, list[str]], start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(counting[0].port)), client_send_timeout=0.5)
    count = 300
    sock = await pipeline_unread(gw.proxy_port, count)
    try:
        await asyncio.sleep(2)
        answered = await answers(sock, count)
    except ConnectionResetError:
        answered = 0  # dropped with its unread answers
    finally:
        sock.close()
    assert answered < count
    assert counting[1].count("/piped") < count


# -- an upstream's tiny chunks -------------------------------------------------------------------
async def test_tiny_upstream_chunks_reach_the_client_joined(start_gateway: StartGateway) -> None:
    """20,000 one-byte chunks: relayed in a few writes (a chunk each would cost a write, a
    timer and a turn of the loop apiece, and stall every other client of the worker)."""
    pieces = 20_000

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)  # the head goes first: the gateway streams what follows
        writer.write(b"1\r\nz\r\n" * pieces)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        answer = await raw_request(
            gw.proxy_port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    lines = body.split(b"\r\n")
    assert lines[-3:] == [b"0", b"", b""]  # the last chunk, no trailers
    sizes, data = lines[0:-3:2], lines[1:-3:2]  # a size line, then its data
    assert [int(size, 16) for size in sizes] == [len(piece) for piece in data]
    assert b"".join(data) == b"z" * pieces
    assert len(sizes) < pieces // 20, f"{len(sizes)} chunks"


def test_the_bound_is_nginx_and_envoy_sized() -> None:
    assert 32 * 1024 <= MAX_REQUEST_HEAD <= 64 * 1024
    assert json.loads(TOO_LARGE) == {"message": "Request header or cookie too large"}


# -- connections -----------------------------------------------------------------------------
async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """True when the gateway closed this connection (EOF) within `timeout`, False if still open."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(1) == b""
    except TimeoutError:
        return False


async def test_past_the_connection_cap_the_oldest_idle_connection_makes_room(
    counting: tuple[TestServer, list[str]],
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await start_gateway(make_route(make_service(counting[0].port)), max_connections=3)
    idle = [await asyncio.open_connection("127.0.0.1", gw.proxy_port) for _ in range(3)]
    await asyncio.sleep(0.1)
    answer = await raw_request(
        gw.proxy_port, b"GET /new HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert [await closed_by_peer(reader, 0.5) for reader, _ in idle] == [True, False, False]
    assert "3 client connections, the most this worker takes" in caplog.text
    assert "1 idle closed" in caplog.text
    for _, writer in idle:
        writer.close()


async def test_past_the_cap_with_none_idle_the_new_connection_is_refused(
    counting: tuple[TestServer, list[str]],
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw = await start_gateway(make_route(make_service(counting[0].port)), max_connections=2)
    busy = [await asyncio.open_connection("127.0.0.1", gw.proxy_port) for _ in range(2)]
    for _, writer in busy:
        writer.write(b"GET /busy HTTP/1.1\r\nHost: a\r\n")  # a head on its way
    await asyncio.sleep(0.1)
    late, late_writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    assert await closed_by_peer(late)
    late_writer.close()
    assert "2 client connections, the most this worker takes (--max-connections): 1 refused" in (
        caplog.text
    )
    for reader, writer in busy:  # the ones it kept finish their requests
        writer.write(b"\r\n")
        head, _ = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.close()


async def test_idle_upstream_connections_of_every_service_count_against_the_cap(
    start_gateway: StartGateway,
) -> None:
    """The cap keeps two descriptors per client connection, its own and its upstream's: idle
    upstream connections kept for one service after another must not pile up past it (with
    `ulimit -n 256`, four services' idle pools used up every descriptor: accepts failed and
    upstream connects answered 502). As nginx counts upstream connections against
    worker_connections, the oldest idle one makes room."""
    async with KeepAliveUpstream() as a, KeepAliveUpstream() as b, KeepAliveUpstream() as c:
        routes = [
            route(make_service(up.port), path) for up, path in ((a, "/a"), (b, "/b"), (c, "/c"))
        ]
        gw = await start_gateway(*routes, max_connections=2)
        for path in (b"/a", b"/b", b"/c"):
            answer = await raw_request(gw.proxy_port, CLOSE_GET.replace(b"/", path, 1))
            assert answer.startswith(b"HTTP/1.1 200 ")
        await eventually(lambda: a.closed == {0})  # the oldest idle one, for /c's
        assert (b.closed, c.closed) == (set(), set())
        answer = await raw_request(gw.proxy_port, CLOSE_GET.replace(b"/", b"/b", 1))
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b.served == [["/b", "/b"]]  # the idle connection kept is still reused


def test_the_default_cap_fits_the_open_file_limit() -> None:
    cap = connection_cap()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 16 <= cap <= 16384
    assert soft == resource.RLIM_INFINITY or 2 * cap + 128 <= max(soft, 160)
    assert connection_cap(7) == 7


async def test_a_max_connections_past_the_open_file_limit_is_warned_about(
    counting: tuple[TestServer, list[str]],
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the open-file limit the event loop accepts and at once closes new connections, and
    says nothing: nginx warns "N worker_connections exceed open file resource limit" at start."""
    connection_cap()  # raises the soft limit to the hard one, as the gateway does
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit")
    await start_gateway(make_route(make_service(counting[0].port)), max_connections=soft)
    assert f"--max-connections {soft} needs about {2 * soft + 128} open files" in caplog.text
    caplog.clear()
    await start_gateway(make_route(make_service(counting[0].port)))
    assert "open files" not in caplog.text  # the default fits


async def test_refusals_to_a_client_that_never_reads_obey_the_send_timeout(
    counting: tuple[TestServer, list[str]], start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    """The 401s of an auth route are ready bytes too: under a short --client-send-timeout a
    client that pipelines 20,000 requests without a token and reads none of the answers (more
    than the sockets hold) is dropped with them."""
    oidc = OidcConfig.for_issuer(test_issuer.issuer)
    route = make_route(make_service(counting[0].port), oidc=oidc)
    gw = await start_gateway(route, client_send_timeout=0.5)
    count = 20_000
    sock = await pipeline_unread(gw.proxy_port, count)
    try:
        await asyncio.sleep(3)
        refused = await answers(sock, count, status=b"HTTP/1.1 401 ")
    except ConnectionResetError:
        refused = 0
    finally:
        sock.close()
    assert refused < count


# -- ready bytes (RawResponse) to a client that is gone or not reading --------------------------
READY = b"HTTP/1.1 204 No Content\r\nServer: tokengate\r\n\r\n"


@pytest.mark.parametrize("gone", ["closing", "no transport"])
async def test_ready_bytes_for_a_client_that_left_are_not_written(gone: str) -> None:
    request = make_mocked_request("GET", "/")
    transport = request.transport
    assert transport is not None
    if gone == "closing":
        transport.is_closing.return_value = True  # type: ignore[attr-defined]
    else:
        request.protocol.transport = None
    answer = RawResponse(READY, status=204, keep_alive=True, body_size=0)
    assert await answer.prepare(request) is None  # and nothing raised
    assert transport.write.call_count == 0  # type: ignore[attr-defined]


async def test_ready_bytes_the_client_never_takes_in_drop_the_connection_after_send_timeout() -> (
    None
):
    """Past the socket buffer's high-water mark the answer waits for the client; after the
    send timeout the connection is aborted (a close would wait on the unread buffer)."""

    async def never_drains() -> None:
        await asyncio.sleep(60)

    writer = mock.Mock(drain=never_drains)
    request = make_mocked_request("GET", "/", writer=writer)
    transport = request.transport
    assert transport is not None
    transport.is_closing.return_value = False  # type: ignore[attr-defined]
    transport.get_write_buffer_size.return_value = 65 * 1024  # type: ignore[attr-defined]
    answer = RawResponse(READY, status=204, keep_alive=True, body_size=0, send_timeout=0.05)
    async with asyncio.timeout(5):
        await answer.prepare(request)
    transport.write.assert_called_once_with(READY)  # type: ignore[attr-defined]
    transport.abort.assert_called_once_with()  # type: ignore[attr-defined]
