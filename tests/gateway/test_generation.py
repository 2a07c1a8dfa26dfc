"""Draining on stop (GatewayServer.stop → generation.drain), over real sockets on port 0.

Requests in progress finish within the grace period, new connections are refused at once, idle
keep-alive connections are closed at once, and a request still running at the end of the grace
period is cut off so that stopping never hangs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.gateway.conftest import echo, make_service, serving
from tests.gateway.support import KeepAliveUpstream, config_of, eventually, get, route
from tests.ports import connection_refused
from tokengate.gateway.app import Gateway, GatewayServer
from tokengate.gateway.config import Route
from tokengate.gateway.generation import Generation, Generations
from tokengate.gateway.settings import GatewaySettings


@pytest.fixture
async def upstream() -> AsyncIterator[KeepAliveUpstream]:
    async with KeepAliveUpstream(slow_for=0.5) as server:
        yield server


async def started(*routes: Route, grace: float) -> GatewayServer:
    settings = GatewaySettings(
        listen=("127.0.0.1", 0), status_listen=("127.0.0.1", 0), shutdown_timeout=grace
    )
    server = GatewayServer(config_of(*routes), settings)
    await server.start()
    return server


async def test_stop_lets_a_request_in_progress_finish_and_refuses_new_connections(
    upstream: KeepAliveUpstream,
) -> None:
    gw = await started(route(make_service(upstream.port), "/slow"), grace=5)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(get(session, gw, "/slow"))
        await asyncio.wait_for(upstream.slow_started.wait(), 2)
        began = time.monotonic()
        stopping = asyncio.create_task(gw.stop())
        await asyncio.sleep(0.05)
        assert await connection_refused(gw.proxy_port)
        assert not slow.done()
        assert await slow == (200, "/slow")
        await asyncio.wait_for(stopping, 5)
    assert time.monotonic() - began < 2  # the request's time, not the grace period


async def test_stop_closes_idle_keep_alive_connections_at_once(
    upstream: KeepAliveUpstream,
) -> None:
    service = make_service(upstream.port)
    gw = await started(route(service, "/slow"), route(service, "/fast"), grace=5)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"/fast")  # the whole answer: the connection is now idle
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(get(session, gw, "/slow"))
        await asyncio.wait_for(upstream.slow_started.wait(), 2)
        stopping = asyncio.create_task(gw.stop())
        # Closed by the gateway while the slow request still runs: stop does not wait for
        # keep-alive timers.
        assert await asyncio.wait_for(reader.read(), 0.3) == b""
        assert not slow.done()
        assert await slow == (200, "/slow")
        await stopping
    writer.close()


async def finished_once_stopping(
    gw: GatewayServer,
    idle: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    rest: bytes,
) -> bytes:
    """Stop `gw`; once the drain has begun (the `idle` keep-alive connection is closed), send
    the `rest` of the request begun on `writer`: all the gateway then answers on it."""
    idle_reader, idle_writer = idle
    stopping = asyncio.create_task(gw.stop())
    try:
        assert await asyncio.wait_for(idle_reader.read(), 2) == b""  # the drain has begun
        writer.write(rest)
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        await asyncio.wait_for(stopping, 5)
        writer.close()
        idle_writer.close()


async def test_stop_lets_a_request_still_sending_its_body_finish() -> None:
    """aiohttp reads nothing more from a connection once it is closing (aiohttp#2298): the rest
    of an upload that was arriving when the drain began was dropped, and the request hung until
    the grace period cut it off (a 499, and the client's connection closed unanswered). nginx
    keeps reading a request's body through a graceful shutdown."""
    async with serving(echo) as upstream:
        gw = await started(route(make_service(upstream.port), "/upload"), grace=3)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        idle_writer.write(b"GET /upload HTTP/1.1\r\nHost: x\r\n\r\n")
        await idle_reader.readuntil(b"}")  # the whole answer: the connection is now idle
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        # Answered once routed: the request is in progress, waiting for its body.
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        answer = await finished_once_stopping(
            gw, (idle_reader, idle_writer), reader, writer, b"world"
        )
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert json.loads(body)["body"] == "helloworld"


async def test_stop_serves_a_request_whose_head_had_begun_to_arrive(
    upstream: KeepAliveUpstream,
) -> None:
    """A connection is idle while no byte of a next request has come; one whose request head
    is half received when the drain begins is busy (nginx clears `c->idle` at its first
    byte): its request is served, not dropped with the connection."""
    gw = await started(route(make_service(upstream.port), "/fast"), grace=3)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    # A whole exchange on another connection: the half head has been read by then.
    idle_writer.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    await idle_reader.readuntil(b"/fast")
    answer = await finished_once_stopping(gw, (idle_reader, idle_writer), reader, writer, b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"/fast")


async def test_a_head_that_never_completes_holds_stop_for_the_grace_period_only(
    upstream: KeepAliveUpstream,
) -> None:
    """The wait for a head that has begun to arrive ends with the grace period, not with the
    (longer) client_header_timeout: that client is cut off unanswered."""
    gw = await started(route(make_service(upstream.port), "/fast"), grace=0.3)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n")  # and never the rest
    await writer.drain()
    idle_writer.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    await idle_reader.readuntil(b"/fast")  # the half head has been read by then
    began = time.monotonic()
    try:
        await asyncio.wait_for(gw.stop(), 5)
        assert time.monotonic() - began < 3  # client_header_timeout is 10 s
        assert await asyncio.wait_for(reader.read(), 2) == b""
    finally:
        writer.close()
        idle_writer.close()


async def test_stop_serves_a_request_in_progress_while_another_head_arrives(
    upstream: KeepAliveUpstream,
) -> None:
    """Waiting for a head that has begun to arrive closes only the idle connections at once:
    a request already in progress on another connection still finishes."""
    service = make_service(upstream.port)
    gw = await started(route(service, "/slow"), route(service, "/fast"), grace=3)
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(get(session, gw, "/slow"))
        await asyncio.wait_for(upstream.slow_started.wait(), 2)  # the half head is read by now
        began = time.monotonic()
        stopping = asyncio.create_task(gw.stop())
        try:
            await asyncio.sleep(0.1)
            writer.write(b"\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            assert await slow == (200, "/slow")
        finally:
            await asyncio.wait_for(stopping, 5)
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"/fast")
    assert time.monotonic() - began < 2  # once both are answered, not the 3 s grace period


async def test_stop_cuts_off_a_request_still_running_after_the_grace_period(
    upstream: KeepAliveUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.slow_for = 30
    gw = await started(route(make_service(upstream.port), "/slow"), grace=0.3)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(get(session, gw, "/slow"))
        await asyncio.wait_for(upstream.slow_started.wait(), 2)
        began = time.monotonic()
        await asyncio.wait_for(gw.stop(), 3)
        assert time.monotonic() - began < 1.5
        with pytest.raises(aiohttp.ClientError):
            await slow
    assert "1 request(s) still running after the 0.3s shutdown grace period: cut off" in (
        caplog.messages
    )
    # The upstream exchange was cancelled and its connection closed, not left hanging.
    await eventually(lambda: upstream.closed == {0})


async def test_cut_short_ends_the_grace_period_at_once(
    upstream: KeepAliveUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A second signal (cut_short) during stop: what still runs is cut off now, not at the
    end of a long grace period."""
    upstream.slow_for = 30
    gw = await started(route(make_service(upstream.port), "/slow"), grace=30)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(get(session, gw, "/slow"))
        await asyncio.wait_for(upstream.slow_started.wait(), 2)
        stopping = asyncio.create_task(gw.stop())
        await asyncio.sleep(0.1)
        assert not stopping.done()  # the grace period runs
        gw.cut_short()
        await asyncio.wait_for(stopping, 3)
        with pytest.raises(aiohttp.ClientError):
            await slow
    assert "1 request(s) still running: cut off" in caplog.messages
    await eventually(lambda: upstream.closed == {0})


async def test_stop_waits_for_requests_on_a_config_a_reload_replaced(
    upstream: KeepAliveUpstream,
) -> None:
    service = make_service(upstream.port)
    gw = await started(route(service, "/slow"), grace=5)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(get(session, gw, "/slow"))
        await asyncio.wait_for(upstream.slow_started.wait(), 2)
        gw.reload(config_of(route(service, "/other")))
        await gw.stop()
        assert slow.done()
        assert await slow == (200, "/slow")


async def test_closing_ends_the_wait_of_a_replaced_generation_still_counting_a_request() -> None:
    """Generations.close (the end of stop, after drain): a replaced generation whose last
    request was never counted out is still waiting to close; its wait ends, and every gateway
    closes without an error escaping to stop()."""
    settings = GatewaySettings(listen=("127.0.0.1", 0), status_listen=("127.0.0.1", 0))
    old = Generation(Gateway(config_of(), settings), number=1, loaded_at=0.0)
    old.inflight = 1  # counted in by the server, never counted out
    generations = Generations(old)
    generations.swap(Generation(Gateway(config_of(), settings), number=2, loaded_at=0.0))
    await asyncio.sleep(0.05)
    assert generations.all() == [generations.current, old]  # waiting for its request
    async with asyncio.timeout(2):
        await generations.close()
    assert generations.all() == [generations.current]  # its wait over, not left running


async def test_readyz_says_stopping_while_draining(upstream: KeepAliveUpstream) -> None:
    gw = await started(route(make_service(upstream.port), "/slow"), grace=5)
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(get(session, gw, "/slow"))
        await asyncio.wait_for(upstream.slow_started.wait(), 2)
        stopping = asyncio.create_task(gw.stop())
        await asyncio.sleep(0.05)
        async with session.get(f"http://127.0.0.1:{gw.status_port}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["status"] == "stopping"
        await slow
        await stopping
