"""Edge cases of the forwarder over real sockets: TLS upstreams, framing an upstream or client
gets wrong, early answers, backpressure, pool slots, slow clients, header spellings."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import socket
import struct
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.gateway.conftest import RawUpstream, StartGateway, make_route, make_service, raw_request
from tests.gateway.issuer import self_signed_contexts
from tests.gateway.support import KeepAliveUpstream, eventually
from tokengate.gateway.config import GatewayConfig
from tokengate.gateway.proxy import BUFFER_LIMIT
from tokengate.gateway.upstream import (
    PoolExhausted,
    UpstreamConnectError,
    UpstreamConnection,
    UpstreamNameNotResolved,
    UpstreamPool,
    resolution_error,
)

CLOSE_GET = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def replying(reply: bytes, *, linger: float = 0.2) -> RawUpstream:
    """A RawUpstream that reads one request head (recorded) and answers with `reply` as it is."""
    return replying_in_pieces(reply, linger)


def replying_in_pieces(*steps: bytes | float) -> RawUpstream:
    """A RawUpstream that reads one request head, then writes each bytes step (drained) and
    sleeps each float step: a response in reads of its own, the pauses between them chosen."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        for step in steps:
            if isinstance(step, bytes):
                writer.write(step)
                await writer.drain()
            else:
                await asyncio.sleep(step)

    upstream = RawUpstream(respond)
    return upstream


async def read_response(reader: asyncio.StreamReader, timeout: float = 3.0) -> tuple[bytes, bytes]:
    """One Content-Length-framed response from a keep-alive connection: (head, body)."""
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return head, await reader.readexactly(length)


async def test_https_service_never_receives_plaintext_http(start_gateway: StartGateway) -> None:
    """An https service is spoken to over TLS: the first bytes on the wire are a handshake."""
    first_bytes: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(64)
        if not first_bytes.done():
            first_bytes.set_result(data)

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, protocol="https")))
        await raw_request(
            gw.proxy_port,
            b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret-token\r\n"
            b"Connection: close\r\n\r\n",
            timeout=3,
        )
        sent = await asyncio.wait_for(first_bytes, 3)
    assert b"s3cret-token" not in sent and not sent.startswith(b"GET ")
    assert sent[:1] == b"\x16", sent  # a TLS handshake record


@pytest.mark.parametrize("host", [b"\xe2\x82\xac.example", b"caf\xff.example"])
async def test_non_latin1_host_header_is_not_a_500(
    host: bytes, start_gateway: StartGateway
) -> None:
    """A Host header that is not ASCII is refused with 400, never a 500."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as up:
        gw = await start_gateway(make_route(make_service(up.port)))
        raw = await raw_request(
            gw.proxy_port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
        )
    assert raw.startswith((b"HTTP/1.1 200", b"HTTP/1.1 400")), raw[:200]


async def test_underscore_spellings_of_identity_headers_do_not_reach_upstream(
    start_gateway: StartGateway,
) -> None:
    """Underscore spellings (X_Consumer_ID ...) of the headers the gateway vouches for never
    reach the upstream: CGI-style servers would read them as those headers. Other names with
    underscores pass, as Kong passes them."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as up:
        gw = await start_gateway(make_route(make_service(up.port)))
        await raw_request(
            gw.proxy_port,
            b"GET / HTTP/1.1\r\nHost: a\r\nX_Consumer_ID: admin\r\nX_Userinfo: e30=\r\n"
            b"X_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n"
            b"X_Authenticated_Userid: admin\r\nsession_id: s1\r\nConnection: close\r\n\r\n",
        )
    (head,) = up.requests
    assert b"session_id: s1\r\n" in head
    for forged in (b"X_Consumer_ID", b"X_Userinfo", b"X_Forwarded_For", b"X_Real_IP",
                   b"X_Authenticated_Userid"):  # fmt: skip
        assert forged.lower() not in head.lower(), forged


async def test_upstream_connection_naming_content_length_keeps_client_framing(
    start_gateway: StartGateway,
) -> None:
    """An upstream `Connection: Content-Length` cannot strip the client's framing."""
    reply = b"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok"
    async with replying(reply) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # keep-alive
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        writer.close()
    lower = head.lower()
    assert b"content-length: 2\r\n" in lower or b"transfer-encoding: chunked" in lower, head


async def test_bytes_after_a_complete_response_do_not_rewrite_it(
    start_gateway: StartGateway,
) -> None:
    """Bytes after a complete response in the same read never rewrite it, and the connection
    is not reused."""
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 500 Oops\r\nX-Evil: 1\r\nContent-Length: 0\r\n\r\n"
    )
    async with replying(reply) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    assert head.lower().count(b"content-length") == 1, head
    assert b"X-Evil" not in head and body == b"ok"


@pytest.mark.parametrize(
    "extra",
    # the last two begin a second response, so no callback of the finished one ever ran
    [b"JUNK", b"lo world\r\n\r\n", b"\x00\xff", b"HTTP/1.", b"HTTP/1.1 2"],
)
async def test_more_body_than_content_length_keeps_the_response(
    extra: bytes, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that sends more than its Content-Length, in the same read: the response
    stands, as with nginx, the next request gets a new connection, not the leftovers, and a
    warning names the upstream."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra
    # A long linger: a reused connection would get no answer, and time the test out.
    async with replying(reply, linger=10) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        answers = []
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # keep-alive
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
            answers.append((head, await asyncio.wait_for(reader.readexactly(2), 3)))
        writer.close()
    for head, body in answers:
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        assert body == b"ok"
    assert upstream.connections == 2
    warning = (
        f"upstream 127.0.0.1:{upstream.port} sent bytes after a complete response; "
        "connection dropped"
    )
    assert warning in caplog.messages


async def test_early_upstream_answer_during_upload_is_relayed_not_502(
    start_gateway: StartGateway,
) -> None:
    """An upstream that answers an upload before reading it (413, then close) is relayed, and
    its head says the connection closes: the rest of the upload was never read."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\n"
            b"too big!"
        )
        await writer.drain()
        writer.write_eof()  # lingering close: stop sending, keep draining what comes
        while await reader.read(65536):
            pass

    async with RawUpstream(respond) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n" + b"a" * 70_000
        )
        await writer.drain()
        await asyncio.sleep(0.3)  # the upstream has answered and half-closed by now
        try:
            writer.write(b"a" * 130_000)
            await writer.drain()
        except ConnectionError:
            pass
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"\r\nConnection: close\r\n" in head, head


async def test_connection_pooled_with_reading_paused_does_not_hang_the_next_request(
    start_gateway: StartGateway,
) -> None:
    """A connection goes back to the pool with its socket reading, never paused."""
    big = 300_000

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await upstream.read_head(reader)
        assert head.startswith(b"POST")
        # Answer early, in two writes, so that the last read crosses the high-water mark and
        # carries the terminating chunk (the message completes while reading is paused).
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % big)
        writer.write(b"b" * 200_000)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"b" * (big - 200_000) + b"\r\n0\r\n\r\n")
        await writer.drain()
        await reader.readexactly(100_000)  # then read the upload, as a good server does
        while True:
            await upstream.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with RawUpstream(respond) as upstream:
        svc = make_service(upstream.port, read_timeout=1.5)
        gw = await start_gateway(make_route(svc))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        writer.write(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1000)
        await writer.drain()
        await asyncio.sleep(0.6)  # the whole response reaches the gateway meanwhile
        writer.write(b"a" * 99_000)
        await writer.drain()
        head, body = await read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and len(body) == big

        writer.write(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        head, body = await read_response(reader)
        writer.close()
    assert upstream.connections == 1  # the same pooled upstream connection was reused...
    assert head.startswith(b"HTTP/1.1 200") and body == b"ok", head  # ...and answered


@pytest.mark.parametrize(
    ("code", "not_found"),
    [(socket.EAI_NONAME, True), (socket.EAI_AGAIN, False), (socket.EAI_FAIL, False)],
)
def test_only_a_name_with_no_address_counts_as_not_resolved(code: int, not_found: bool) -> None:
    """Kong's "name resolution failed" is for NXDOMAIN and empty answers; a resolver that is
    down or failing says nothing of the name. (A real NXDOMAIN goes through the gateway in
    test_proxy.py; a resolver failure cannot be had on demand.)"""
    error = resolution_error("orders.internal", socket.gaierror(code, "the resolver's words"))
    assert isinstance(error, UpstreamConnectError)
    assert isinstance(error, UpstreamNameNotResolved) is not_found
    assert str(error) == "cannot resolve orders.internal: the resolver's words"


@contextlib.asynccontextmanager
async def silent_pool(max_connections: int) -> AsyncIterator[tuple[UpstreamPool, RawUpstream]]:
    """A pool of `max_connections` (as many kept idle) to an upstream that never answers."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with RawUpstream(respond) as upstream:
        pool = UpstreamPool(
            "127.0.0.1", upstream.port, max_connections=max_connections, max_idle=max_connections
        )
        try:
            yield pool, upstream
        finally:
            await pool.close()


async def exchange(pool: UpstreamPool, conn: UpstreamConnection) -> None:
    """One keep-alive GET on `conn`, read whole, then `conn` given back to `pool`."""
    conn.start_request(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", head_request=False)
    await conn.read_head(2.0)
    await conn.read_to_end(2.0)
    pool.release(conn)


async def test_a_fresh_connection_at_the_cap_takes_the_slot_of_the_oldest_idle_one() -> None:
    """A retry on a new connection (its pooled one was stale) while idle ones fill the cap:
    the oldest idle one is closed to make room, at once; the retry does not wait for a slot
    that nothing would free."""
    async with KeepAliveUpstream() as upstream:
        pool = UpstreamPool("127.0.0.1", upstream.port, max_connections=2, max_idle=2)
        try:
            first, second = await pool.acquire(2.0), await pool.acquire(2.0)
            await exchange(pool, first)
            await exchange(pool, second)  # idle: first (the oldest), then second
            fresh = await pool.acquire(0.3, fresh=True)
            await exchange(pool, fresh)
            await eventually(lambda: upstream.closed == {0})
            assert pool.size == 2
            await exchange(pool, await pool.acquire(0.3))  # an idle one, the newest first
            assert upstream.served == [["/x"], ["/x"], ["/x", "/x"]]
        finally:
            await pool.close()


async def test_an_idle_connection_whose_close_has_begun_is_not_handed_out() -> None:
    """A pooled connection whose socket is closing (the upstream's EOF or stray bytes were
    read in this turn of the loop, connection_lost not run yet) is passed over: a POST sent on
    it would fail with a 502 that cannot be retried."""
    async with KeepAliveUpstream() as upstream:
        pool = UpstreamPool("127.0.0.1", upstream.port, max_connections=2, max_idle=2)
        try:
            conn = await pool.acquire(2.0)
            await exchange(pool, conn)
            conn.close()  # as data_received does on bytes nobody asked for
            assert pool.take_idle() is None
            await exchange(pool, await pool.acquire(2.0))
            assert upstream.served == [["/x"], ["/x"]]
        finally:
            await pool.close()


async def test_a_connection_that_closes_as_it_is_handed_over_is_replaced() -> None:
    """A reusable connection given back while a caller waits goes to that caller; if it closes
    before the caller wakes (its socket was already closing when given back), the caller gets
    a new connection, not a dead one its request would fail on."""
    async with KeepAliveUpstream() as upstream:
        pool = UpstreamPool("127.0.0.1", upstream.port, max_connections=1, max_idle=1)
        try:
            conn = await pool.acquire(2.0)
            conn.start_request(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", head_request=False)
            await conn.read_head(2.0)
            await conn.read_to_end(2.0)
            queued = asyncio.create_task(pool.acquire(2.0))
            await asyncio.sleep(0.05)  # queued
            conn.abort()  # its close is noticed after the hand-over, before the caller runs
            pool.release(conn)
            await exchange(pool, await asyncio.wait_for(queued, 1.0))
            assert upstream.served == [["/x"], ["/x"]]
            assert pool.size == 1
        finally:
            await pool.close()


async def test_connects_that_fail_give_their_slot_back() -> None:
    """An upstream that refuses connections costs the pool no slot: once it is back, a pool of
    one still opens a connection, where a leaked slot would be a 503 for ever."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens on it once the socket is closed
    pool = UpstreamPool("127.0.0.1", port, max_connections=1, max_idle=1)
    try:
        for _ in range(3):
            with pytest.raises(UpstreamConnectError, match=r"^cannot connect to 127\.0\.0\.1:"):
                await pool.acquire(1.0)
        assert pool.size == 0
    finally:
        await pool.close()


@pytest.mark.parametrize("cancel_first", [False, True])
async def test_pool_slot_handed_to_a_cancelled_waiter_goes_to_the_next_one(
    cancel_first: bool,
) -> None:
    """A free slot handed to a waiter that was cancelled (before or after the hand-over)
    passes to the next waiter, and is counted once."""
    async with silent_pool(1) as (pool, _):
        conn = await pool.acquire(2.0)
        first = asyncio.create_task(pool.acquire(2.0))
        second = asyncio.create_task(pool.acquire(2.0))
        await asyncio.sleep(0.05)  # both are queued
        if cancel_first:
            first.cancel()
        pool.release(conn)  # no exchange happened: not reusable, its slot is free
        first.cancel()
        got = await asyncio.wait_for(second, 1.0)  # a slot is free: open at once
        assert not got.closed
        assert pool.size == 1


async def test_a_connection_released_unusable_is_never_handed_out_again() -> None:
    async with silent_pool(2) as (pool, _):
        pool.release(await pool.acquire(2.0))  # no exchange: nothing says it is reusable
        assert pool.take_idle() is None
        assert pool.size == 0


@pytest.mark.parametrize(
    "closed_first", [True, False], ids=["closed-then-read", "read-then-closed"]
)
async def test_a_connection_the_upstream_closed_after_its_answer_leaves_the_pool(
    closed_first: bool,
) -> None:
    """An upstream that answers whole (no `Connection: close`) and hangs up: the answer stands
    even when read after the close, and the connection leaves the pool whether the close came
    before it was given back or while it waited idle: never handed out, its slot free."""
    async with replying(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", linger=0 if closed_first else 0.3
    ) as upstream:
        pool = UpstreamPool("127.0.0.1", upstream.port, max_connections=1, max_idle=1)
        try:
            conn = await pool.acquire(2.0)
            conn.start_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", head_request=False)
            if closed_first:
                await asyncio.sleep(0.2)  # the answer and the close have both come
            await conn.read_head(2.0)
            assert conn.status == 200
            assert [await conn.read_chunk(2.0), await conn.read_chunk(2.0)] == [b"ok", b""]
            pool.release(conn)
            if not closed_first:
                await asyncio.sleep(0.5)  # the close comes to a pooled connection
            assert pool.size == 0
            assert pool.take_idle() is None
        finally:
            await pool.close()


async def test_a_tunnel_that_ended_is_not_held_by_its_pool() -> None:
    """A detached connection (a WebSocket tunnel) is closed with its pool while it lasts, and
    let go once it has ended: a gateway relaying tunnels for weeks keeps none of the old ones."""
    async with silent_pool(1) as (pool, _):
        tunnel = await pool.acquire(2.0)
        pool.detach(tunnel)
        held = weakref.ref(tunnel)
        tunnel.close()
        del tunnel
        await eventually(lambda: gc.collect() >= 0 and held() is None)


async def test_callers_queued_for_a_slot_are_refused_at_once_when_the_pool_closes() -> None:
    """Closing a pool (the gateway stopping) answers whoever waits for one of its slots now,
    with the reason, rather than when their connect_timeout runs out."""
    async with silent_pool(1) as (pool, _):
        await pool.acquire(2.0)
        queued = asyncio.create_task(pool.acquire(5.0))
        await asyncio.sleep(0.05)  # queued
        await pool.close()
        with pytest.raises(PoolExhausted, match=r"^gateway is shutting down$"):
            await asyncio.wait_for(queued, 1.0)


async def test_a_reusable_connection_goes_to_the_next_request_in_the_queue(
    start_gateway: StartGateway,
) -> None:
    """With one connection allowed, queued requests take turns on it: handed over, kept
    alive, never a second connection."""
    async with KeepAliveUpstream(slow_for=0.1) as upstream:
        gw = await start_gateway(
            make_route(make_service(upstream.port)), upstream_max_connections=1
        )
        answers = await asyncio.gather(
            *(raw_request(gw.proxy_port, CLOSE_GET.replace(b"/", b"/slow", 1)) for _ in range(3))
        )
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers
    assert upstream.served == [["/slow"] * 3]


async def test_idle_connections_beyond_upstream_max_idle_are_closed(
    start_gateway: StartGateway,
) -> None:
    async with KeepAliveUpstream(slow_for=0.2) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)), upstream_max_idle=1)
        slow = CLOSE_GET.replace(b"/", b"/slow", 1)
        await asyncio.gather(raw_request(gw.proxy_port, slow), raw_request(gw.proxy_port, slow))
        assert len(upstream.served) == 2
        await eventually(lambda: len(upstream.closed) == 1)  # one kept for the next request
        await asyncio.sleep(0.1)
        assert len(upstream.closed) == 1


async def test_a_connection_the_upstream_closed_after_answering_is_not_reused(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream that answers one request per connection and then closes it, without
    saying `Connection: close`: the next request, a POST that may not be replayed, goes on a
    new connection instead of failing on the closed one."""

    async with replying_in_pieces(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        first = await raw_request(gw.proxy_port, CLOSE_GET)
        await asyncio.sleep(0.1)  # the close has reached the gateway
        post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
        second = await raw_request(gw.proxy_port, post)
    assert first.endswith(b"ok") and second.startswith(b"HTTP/1.1 200"), second
    assert upstream.connections == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_connect_that_hangs_is_504_after_connect_timeout(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener whose accept queue is full drops SYNs: the connect hangs until
    connect_timeout (Kong's 504), not for the kernel's minutes of SYN retries."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):  # fill the accept queue; nothing ever accepts
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        try:
            gw = await start_gateway(make_route(make_service(port, connect_timeout=0.3)))
            started = asyncio.get_running_loop().time()
            raw = await raw_request(gw.proxy_port, CLOSE_GET, timeout=10)
            waited = asyncio.get_running_loop().time() - started
        finally:
            for filler in fillers:
                filler.close()
    assert raw.startswith(b"HTTP/1.1 504"), raw[:60]
    assert waited < 3, waited
    assert f"upstream svc-{port}: connecting to 127.0.0.1:{port} timed out" in caplog.messages


async def test_a_slot_handed_to_a_waiter_is_not_taken_by_a_later_caller() -> None:
    """A closed connection's slot handed to the first waiter is that waiter's: a caller that
    runs before the waiter wakes queues behind it (FIFO) instead of opening a connection the
    cap has no room for."""
    async with silent_pool(1) as (pool, upstream):
        conn = await pool.acquire(2.0)
        first = asyncio.create_task(pool.acquire(2.0))
        await asyncio.sleep(0.05)  # queued
        later = asyncio.create_task(pool.acquire(0.3))  # runs before `first` wakes...
        pool.release(conn)  # ...which this hands the slot to (no exchange: not reusable)
        await asyncio.wait_for(first, 1.0)
        with pytest.raises(PoolExhausted):
            await later
        assert pool.size == 1
        assert upstream.connections == 2  # the closed one, then first's


@pytest.mark.parametrize("release_first", [True, False])
async def test_slots_handed_to_two_waiters_at_once_are_both_counted(release_first: bool) -> None:
    """A slot freed (a closed connection, a tunnel) while another waiter's is still reserved:
    both waiters open a connection, and the cap holds for the caller after them."""
    async with silent_pool(2) as (pool, upstream):
        first, tunnel = await pool.acquire(2.0), await pool.acquire(2.0)
        waiters = [asyncio.create_task(pool.acquire(2.0)) for _ in range(2)]
        await asyncio.sleep(0.05)  # both are queued
        # Neither waiter runs before both slots are handed out.
        if release_first:
            pool.release(first)  # no exchange: not reusable; its slot goes to a waiter
            pool.detach(tunnel)
        else:
            pool.detach(tunnel)
            pool.release(first)
        await asyncio.wait_for(asyncio.gather(*waiters), 1.0)
        with pytest.raises(PoolExhausted):
            await pool.acquire(0.3)
        assert upstream.connections == 4  # first, tunnel, and one per waiter


async def test_client_that_stops_reading_does_not_hold_the_upstream_forever(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stops reading a streamed response is cut off after client_send_timeout,
    and its upstream connection comes back."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await upstream.read_head(reader)
            if b"/big" in head:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 << 20))
                block = b"x" * 65536
                for _ in range(1024):
                    writer.write(block)
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()

    async with RawUpstream(respond) as upstream:
        svc = make_service(upstream.port, connect_timeout=4.0, read_timeout=0.5, write_timeout=0.5)
        gw = await start_gateway(
            make_route(svc),
            upstream_max_connections=1,
            client_body_timeout=0.5,
            client_header_timeout=0.5,
            keepalive_timeout=0.5,
            client_send_timeout=0.5,
        )
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gw.proxy_port))
        _, stuck = await asyncio.open_connection(sock=sock)
        stuck.write(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")  # ...and never read
        await asyncio.sleep(0.5)
        try:
            raw = await raw_request(gw.proxy_port, CLOSE_GET, timeout=6)
        finally:
            stuck.transport.abort()
    assert raw.startswith(b"HTTP/1.1 200"), raw[:100]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"response from svc-{upstream.port} cut off: client stopped reading" in warnings


async def test_a_client_reading_slowly_but_steadily_is_not_taken_for_one_that_stopped(
    start_gateway: StartGateway,
) -> None:
    """client_send_timeout times the gaps in what the client takes in, as nginx's send_timeout
    ("between two successive write operations"), not the whole of one write: a piece of a
    streamed body is all that arrived while the last went out (256 KiB and more), which a
    client reading steadily at some 400 KB/s takes longer than the timeout to read. It was cut
    off as one that had stopped reading, its download truncated."""
    size = 1 << 20

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)), client_send_timeout=0.5)
        # Small socket buffers on the gateway's side (accepted sockets inherit the listener's)
        # and the client's: the gateway's writes wait on what the client reads, not on the
        # megabytes loopback would otherwise buffer.
        for site in gw._proxy_runner.sites:  # type: ignore[union-attr]
            for listener in getattr(site._server, "sockets", None) or ():
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", gw.proxy_port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
        writer.write(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        received = 0
        try:
            await reader.readuntil(b"\r\n\r\n")
            while received < size and (piece := await reader.read(8192)):
                received += len(piece)
                await asyncio.sleep(0.02)  # the client's pace: 8 KiB every 20 ms
        finally:
            writer.close()
    assert received == size


async def test_an_upstream_reading_an_upload_slowly_but_steadily_is_not_timed_out() -> None:
    """write_timeout times the gaps in what the upstream takes in, as nginx's
    proxy_send_timeout ("between two successive write operations"), not the draining of all
    that is buffered: a piece of a streamed upload is what the client sent in one go (up to
    256 KiB), which an upstream reading steadily at some 400 KB/s takes longer than the timeout
    to read. The upload was cut off with a 504, as if the upstream had stopped reading."""
    size = 1 << 20
    received = 0

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        await upstream.read_head(reader)
        while received < size and (piece := await reader.read(8192)):
            received += len(piece)
            await asyncio.sleep(0.02)  # the upstream's pace: 8 KiB every 20 ms

    upstream = RawUpstream(respond)
    async with upstream:
        assert upstream.server is not None
        for listener in upstream.server.sockets:  # accepted sockets inherit a small buffer
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        pool = UpstreamPool("127.0.0.1", upstream.port, max_connections=1, max_idle=1)
        try:
            conn = await pool.acquire(1.0)
            assert conn.transport is not None
            # A small send buffer, as a slow peer keeps it on a real network: the drains wait
            # on what the upstream reads, not on the megabytes loopback would buffer.
            own = conn.transport.get_extra_info("socket")
            own.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
            head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size
            conn.start_request(head, head_request=False, body_follows=True)
            piece = b"u" * (256 * 1024)
            for _ in range(size // len(piece)):
                conn.write(piece)
                await conn.drain(0.3)
        finally:
            await pool.close()


@pytest.mark.parametrize(
    ("declared", "how", "status"),
    [(2, "closes", b"502"), (BUFFER_LIMIT, "closes", b"502"), (BUFFER_LIMIT, "stalls", b"504")],
)
async def test_a_small_answer_cut_short_is_a_502_or_504_never_a_truncated_200(
    declared: int, how: str, status: bytes, start_gateway: StartGateway
) -> None:
    """A body of up to 64 KiB is read whole before the head goes: an upstream that closes or
    stalls before its end gets the client Kong's 502 or 504, not a 200 with a short body."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % declared)
        writer.write(b"x" * (declared - 1))
        await writer.drain()
        if how == "stalls":
            await reader.read()  # until the gateway gives up on it

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, read_timeout=0.5)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 " + status), raw[:60]


@pytest.mark.parametrize(
    ("version", "framing"),
    [(b"1.1", b"Transfer-Encoding: chunked"), (b"1.0", b"Content-Length: 100000")],
    ids=["http-1.1-unsized", "http-1.0-sized"],
)
async def test_a_streamed_answer_keeps_its_status_its_type_and_the_clients_keep_alive(
    version: bytes, framing: bytes, start_gateway: StartGateway
) -> None:
    """An answer that streams (not whole at once, and unsized or past 64 KiB) keeps the
    upstream's status and Content-Type, and the client's connection stays open for its next
    request: an HTTP/1.0 client asking for keep-alive gets it when the length is known."""
    body = b"x" * 100_000
    if framing.startswith(b"Transfer"):
        body_bytes = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    else:
        body_bytes = body

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await upstream.read_head(reader)
            reply = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n%b\r\n\r\n%b" % (
                framing,
                body_bytes,
            )
            writer.write(reply[:1000])  # the rest later: the answer is not whole at once
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(reply[1000:])
            await writer.drain()

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        try:
            for _ in range(2):  # the second on the same connection
                writer.write(
                    b"GET / HTTP/%b\r\nHost: a\r\nConnection: keep-alive\r\n\r\n" % version
                )
                async with asyncio.timeout(3):
                    head = await reader.readuntil(b"\r\n\r\n")
                    if version == b"1.1":  # chunked by the gateway as it streams
                        received = b""
                        while not received.endswith(b"\r\n0\r\n\r\n"):
                            received += await reader.read(65536) or b"(closed)"
                    else:
                        received = await reader.readexactly(len(body))
                assert head.startswith(b"HTTP/%b 404 " % version), head
                assert b"\r\nContent-Type: text/plain\r\n" in head, head
                assert received.count(b"x") == len(body)
        finally:
            writer.close()


async def test_keepalive_timeout_setting_applies_to_idle_client_connections(
    start_gateway: StartGateway,
) -> None:
    """Idle keep-alive client connections close after keepalive_timeout."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as up:
        gw = await start_gateway(
            make_route(make_service(up.port)), keepalive_timeout=0.3, client_header_timeout=5.0
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await read_response(reader)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(3):
                await reader.read()  # returns b"" when the gateway closes the idle connection
        except TimeoutError:
            pass
        writer.close()
    assert loop.time() - started < 2.0


@pytest.mark.parametrize(
    ("interim", "reason"),
    [
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n", b"Early Hints"),
        (b"HTTP/1.1 100 Continue\r\n", b"Continue"),
    ],
    ids=["103", "100"],
)
async def test_interim_response_reason_does_not_leak_into_final_status_line(
    interim: bytes, reason: bytes, start_gateway: StartGateway
) -> None:
    """An interim response is skipped, and its reason phrase never lands on the final status
    line."""
    reply = interim + b"\r\nHTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"
    async with replying(reply) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 ", raw  # the final one's: no reason
    assert reason not in raw and raw.endswith(b"\r\n\r\nok"), raw


async def test_response_transfer_coding_other_than_chunked_is_502(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A response transfer coding other than chunked is a 502, never a truncated 200."""
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nclose-delimited"
    async with replying(reply) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 502"), raw[:60]
    cause = f"upstream svc-{upstream.port}: upstream used a transfer coding other than chunked"
    assert cause in caplog.messages


@pytest.mark.parametrize(
    ("request_bytes", "status", "body"),
    [
        # a coding other than chunked: refused (501), never dropped silently
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n"
            b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 501 Not Implemented\r\n",
            b'{"message": "Not Implemented"}',
        ),
        # RFC 9112 §6.1: HTTP/1.0 has no chunking, the framing is faulty: 400, and the
        # pipelined request after it is never served
        (
            b"POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /second HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HTTP/1.0 400",
            b'{"message": "Bad request"}',
        ),
    ],
    ids=["gzip-chunked", "http-1.0-chunked"],
)
async def test_a_request_framing_the_gateway_cannot_trust_is_refused_and_closed(
    request_bytes: bytes, status: bytes, body: bytes, start_gateway: StartGateway
) -> None:
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as up:
        gw = await start_gateway(make_route(make_service(up.port)))
        raw = await raw_request(gw.proxy_port, request_bytes)
    assert raw.startswith(status), raw[:60]
    assert raw.count(b"HTTP/1.") == 1
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert rest == body
    # The connection closes, and the answer says nothing else (an HTTP/1.0 client that asked
    # for keep-alive would otherwise be told it stays open).
    assert b"keep-alive" not in head.lower(), head
    assert up.requests == []


TOO_LARGE = b"400 ", b'{"message": "Request header or cookie too large"}'


@pytest.mark.parametrize(
    ("request_bytes", "answer"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + b"a" * 9000 + b"\r\n\r\n",
            TOO_LARGE,  # nginx: a header line past its 8k buffer
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 20000 + b"\r\n\r\n", TOO_LARGE),
        (
            b"GET /" + b"c" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
            (b"414 ", b'{"message": "URI too long"}'),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
            (b"400 ", b'{"message": "Bad request"}'),
        ),
        (
            b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
            (b"400 ", b'{"message": "Bad request"}'),
        ),
    ],
    ids=["long-authorization", "long-header", "long-target", "space-in-name", "nul-in-target"],
)
async def test_a_request_that_cannot_be_parsed_gets_kongs_answer_without_a_traceback(
    request_bytes: bytes,
    answer: tuple[bytes, bytes],
    start_gateway: StartGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any client can send these: the answer is Kong's JSON (414 for a request line past
    nginx's 8k, 400 otherwise), in HTTP/1.1 with a close, and nothing is logged above DEBUG
    (aiohttp's default is a traceback at ERROR for each one)."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as up:
        gw = await start_gateway(make_route(make_service(up.port)))
        caplog.set_level("INFO")
        raw = await raw_request(gw.proxy_port, request_bytes)
    head, _, body = raw.partition(b"\r\n\r\n")
    status, message = answer
    assert head.startswith(b"HTTP/1.1 " + status), raw[:80]
    assert b"\r\nConnection: close" in head
    assert b"aiohttp" not in head
    assert body == message
    assert up.requests == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    "reply",
    [
        # both framings at once: the classic response-smuggling shape
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 2\r\n\r\nok",  # obs-fold
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",  # bare CR
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",  # bare LF line ends
    ],
)
async def test_pin_ambiguous_upstream_framing_is_502(
    reply: bytes, start_gateway: StartGateway
) -> None:
    """llhttp (strict) refuses every ambiguous response framing: none reaches the client."""
    async with replying(reply) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 502"), raw[:200]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n",  # obs-fold
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",  # bare CR
    ],
)
async def test_pin_ambiguous_client_framing_never_reaches_upstream(
    request_bytes: bytes, start_gateway: StartGateway
) -> None:
    """aiohttp's parser refuses request-smuggling shapes with 400 before routing."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as up:
        gw = await start_gateway(make_route(make_service(up.port)))
        raw = await raw_request(gw.proxy_port, request_bytes, timeout=3)
    assert raw.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), raw[:200]
    assert up.requests == []


@pytest.mark.parametrize(("tls_verify", "status"), [(False, 200), (True, 502)])
async def test_https_upstream_with_tls_verify(
    tls_verify: bool, status: int, tmp_path: Path, start_gateway: StartGateway
) -> None:
    """TLS to an https service; its certificate is checked unless tls_verify is false (a
    self-signed certificate fails the check: 502, the request never sent)."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"tls {request.secure}")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed_contexts()[0])
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        svc = make_service(port, protocol="https", tls_verify=tls_verify)
        gw = await start_gateway(make_route(svc))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
        assert raw.startswith(b"HTTP/1.1 %d" % status), raw[:80]
        if status == 200:
            assert raw.endswith(b"tls True")
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n", b"502"),
        (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%05d: v\r\n" % i for i in range(6000)), b"502"),
        # 1xx heads count too: an upstream cannot stream interim answers for ever
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: </assets/style.css>; rel=preload\r\n\r\n" * 3000
            + b"HTTP/1.1 200 OK\r\n",
            b"502",
        ),
        # ...also when they come in the read that ends the final head
        (
            b"HTTP/1.1 103 Early Hints\r\nLink: <%b>\r\n\r\n" % (b"a" * 1000) * 40
            + b"HTTP/1.1 200 OK\r\nX-Big: %b\r\n" % (b"a" * 30_000),
            b"502",
        ),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 60_000 + b"\r\n", b"200"),
        # Field lines of 64 KiB exactly (each counted as sent: name, ": ", value, CRLF), in a
        # read of more than 64 KiB with the status line and the body: not too big.
        (
            b"HTTP/1.1 200 OK\r\nX-P: 123\r\n"
            + b"".join(b"X-H%05d: v\r\n" % i for i in range(5039)),
            b"200",
        ),
    ],
    ids=[
        "one-huge-header",
        "many-headers",
        "endless-interim",
        "interim-and-final",
        "60-kib-is-fine",
        "64-kib-of-field-lines-is-fine",
    ],
)
async def test_a_response_head_past_64_kib_is_502(
    head: bytes, status: bytes, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """nginx: "upstream sent too big header". Without a bound, an upstream that never ends
    its head grew a worker's memory by gigabytes and stalled every other request."""
    async with replying(head + b"Content-Length: 2\r\n\r\nok") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 " + status), raw[:60]
    cause = f"upstream svc-{upstream.port}: upstream sent too big a response head"
    assert (cause in caplog.messages) is (status == b"502")


@pytest.mark.parametrize(
    ("trailer", "second_body", "connections"),
    [(b"Connection: close\r\nX-Trailer: t\r\n", b"hello", 2), (b"X-Trailer: t\r\n", b"ok", 1)],
    ids=["connection-close", "other"],
)
async def test_a_trailer_saying_connection_close_does_not_return_the_connection_to_the_pool(
    trailer: bytes, second_body: bytes, connections: int, start_gateway: StartGateway
) -> None:
    """llhttp takes no byte after a `Connection: close` trailer: a connection pooled after it
    failed the next client's request with a 502; any other trailer leaves the connection
    reusable. Trailers are not merged into the head either (RFC 9110 §6.5.1)."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n%b\r\n"
            % trailer
        )
        await writer.drain()
        while await upstream.read_head(reader):  # keeps the socket open, answers the rest
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        first = await raw_request(gw.proxy_port, CLOSE_GET)
        second = await raw_request(gw.proxy_port, CLOSE_GET)
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"hello"), first
    assert b"X-Trailer" not in first
    # A pooled connection gets the upstream's next answer ("ok"), a new one its first.
    assert second.startswith(b"HTTP/1.1 200") and second.endswith(second_body), second
    assert upstream.connections == connections


async def test_an_http_1_0_client_reading_to_the_close_gets_the_close(
    start_gateway: StartGateway,
) -> None:
    """An HTTP/1.0 client that asked for keep-alive gets a body of unknown length without a
    Content-Length: it reads to the close, which used to come only with the keep-alive timer."""
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited body"
    async with replying(reply) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(
            gw.proxy_port, b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", timeout=3
        )
    assert raw.startswith(b"HTTP/1.0 200") and raw.endswith(b"close-delimited body"), raw


async def test_a_close_delimited_body_the_upstream_resets_is_cut_off_not_completed(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Only a clean close (FIN) ends a body of no stated length; a reset (RST) cuts it, and the
    client must see the cut: no last chunk, as nginx finalizes such a response with an error
    (ngx_http_upstream_process_request: only `upstream_eof && length == -1` completes it)."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(0.2)  # the gateway has sent the head on and streams the body
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # with SO_LINGER 0: a reset, not a FIN

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"7\r\npartial\r\n"), raw
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    cut = "cut off: upstream closed the connection before the response was complete"
    assert any(w.endswith(cut) for w in warnings), warnings


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        # small enough to be read whole before answering: a 502 rather than 5 of 10 bytes
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", b"HTTP/1.1 502"),
        # streamed: the head went on, so the cut must show as one (no last chunk)
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", b"HTTP/1.1 200"),
    ],
)
async def test_a_framed_body_the_upstream_closes_early_never_looks_complete(
    reply: bytes, answer: bytes, start_gateway: StartGateway
) -> None:
    """Only a body of no stated length ends at the close (RFC 9112 §6.3); one whose
    Content-Length or last chunk never came is incomplete (nginx: "upstream prematurely
    closed connection")."""
    async with replying(reply, linger=0) as upstream:  # then a clean close (FIN)
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(answer), raw
    assert not raw.endswith((b"\r\n\r\nhello", b"0\r\n\r\n")), raw


async def test_a_body_sent_after_a_head_response_keeps_its_connection_out_of_the_pool(
    start_gateway: StartGateway,
) -> None:
    """An upstream that answers HEAD with a body has lost track of its framing: the gateway
    relays the head alone, and the next request goes on a new connection."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await upstream.read_head(reader)
            body = b"hello" if head.startswith(b"HEAD") else b"ok"  # "hello": unasked for
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
            await writer.drain()

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        head = await raw_request(
            gw.proxy_port, b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n"), head
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"ok"), raw
    assert upstream.connections == 2


@pytest.mark.parametrize(
    ("extension", "whole"),
    [(b"", True), (b";n=" + b"v" * 50, True), (b";n=" + b"v" * 100, False)],
    ids=["bare", "58-bytes-a-chunk", "108-bytes-a-chunk"],
)
async def test_a_response_of_many_tiny_chunks_arrives_whole(
    extension: bytes, whole: bool, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """20000 one-byte chunks: queued pieces are merged, and their framing (100 KB of chunk
    lines, more than a head may have) is allowed for per chunk, not taken for a huge trailer;
    up to 64 bytes a chunk (with extensions) and 64 KiB, not more (a cut, as for a trailer)."""
    count = 20000

    head, chunks = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"1%b\r\nc\r\n" % extension,
    )
    # the chunks come after the head, in reads of their own
    async with replying_in_pieces(head, 0.1, chunks * count, 0.1, b"0\r\n\r\n") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        async with (
            asyncio.timeout(10),
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{gw.proxy_port}/") as resp,
        ):
            assert resp.status == 200
            if whole:
                assert await resp.read() == b"c" * count
            else:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
    cut = "cut off: upstream sent too big a trailer section"
    assert any(m.endswith(cut) for m in caplog.messages) is not whole, caplog.messages


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 600 High\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Le"],
    ids=["invalid", "cut-short"],
)
async def test_a_request_is_not_replayed_once_the_upstream_has_answered_it(
    answer: bytes, start_gateway: StartGateway
) -> None:
    """Only a pooled connection that died before any response byte may see its (idempotent)
    request sent again; an answer that then turns out invalid, or is cut short by the close,
    is a 502, not a replay."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # keep-alive
        await writer.drain()
        await upstream.read_head(reader)
        writer.write(answer)  # then the connection closes
        await writer.drain()

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        try:
            writer.write(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
            first, _ = await read_response(reader)
            writer.write(b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
            second, _ = await read_response(reader)
        finally:
            writer.close()
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 502")
    assert [head.split(b" ")[1] for head in upstream.requests] == [b"/1", b"/2"]


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 099 Low", b"HTTP/1.1 000 Zero", b"HTTP/1.1 600 High", b"HTTP/1.1 200 O\x01K"],
)
async def test_an_invalid_status_line_is_502(
    status_line: bytes, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async with replying(status_line + b"\r\nContent-Length: 2\r\n\r\nhi") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 502"), raw[:60]
    status = int(status_line.split()[1])
    assert f"upstream sent an invalid status line ({status})" in caplog.text  # the cause


@pytest.mark.parametrize(
    "status_line",
    [
        (b"HTTP/1.1 200 Very", b" Good"),  # a reason phrase split between two reads
        (b"HTTP/1.1 599 Edge",),
        (b"HTTP/1.1 200 O\tK",),
        (b"HTTP/1.1 203 Caf\xe9",),  # obs-text
    ],
    ids=["split", "599", "htab", "obs-text"],
)
async def test_a_valid_status_line_is_relayed_as_it_came(
    status_line: tuple[bytes, ...], start_gateway: StartGateway
) -> None:
    steps = [step for piece in status_line for step in (piece, 0.1)]
    async with replying_in_pieces(*steps, b"\r\nContent-Length: 2\r\n\r\nok") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.split(b"\r\n", 1)[0] == b"".join(status_line), raw[:60]
    assert raw.endswith(b"\r\n\r\nok"), raw


async def test_a_streamed_response_keeps_its_header_bytes_and_gains_no_content_type(
    start_gateway: StartGateway,
) -> None:
    """Past 64 KiB the body streams through aiohttp, which wrote header values as UTF-8 of
    their latin-1 reading (a UTF-8 filename arrived as mojibake) and added a Content-Type and
    its own Server banner (the Server is tokengate's, as Kong adds its own)."""
    body = b"x" * (100 * 1024)
    filename = 'attachment; filename="café.txt"'.encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Disposition: %b\r\nContent-Length: %d\r\n\r\n%b" % (
        filename,
        len(body),
        body,
    )
    async with replying(reply, linger=1.0) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    head, _, received = raw.partition(b"\r\n\r\n")
    assert received == body
    assert b"\r\nContent-Disposition: " + filename + b"\r\n" in head
    assert b"content-type" not in head.lower()
    assert re.findall(rb"\r\nServer: ([^\r]*)", head) == [b"tokengate"]
    assert b"\r\nDate: " in head


async def test_read_timeout_counts_between_reads_of_a_response_head(
    start_gateway: StartGateway,
) -> None:
    """Kong's read_timeout is nginx's proxy_read_timeout: between two reads. An upstream that
    sends 102 Processing while it works is answered, not cut off at read_timeout overall."""

    processing = (b"HTTP/1.1 102 Processing\r\n\r\n", 0.3) * 5
    async with replying_in_pieces(
        *processing, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    ) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, read_timeout=1.0)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"ok"), raw[:60]


async def test_read_timeout_counts_between_reads_of_a_chunked_body_framing_included(
    start_gateway: StartGateway,
) -> None:
    """A read that brings only chunk framing (a chunk-size line, the last chunk, a trailer) is
    a read too: no gap here reaches read_timeout, so the body arrives whole, as from nginx,
    though the body's own bytes come further apart than that."""
    pieces = [b"5\r\n", b"world\r\n", b"0\r\n", b"X-T: v\r\n", b"\r\n"]
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    steps = [step for piece in pieces for step in (0.3, piece)]  # 0.3 s before each piece
    async with replying_in_pieces(head, *steps) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, read_timeout=0.5)))
        async with (
            asyncio.timeout(5),
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{gw.proxy_port}/") as resp,
        ):
            assert resp.status == 200
            assert await resp.read() == b"helloworld"


async def endless_line(
    upstream: RawUpstream,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    start: bytes,
    piece: int,
    pause: float,
    hung_up: asyncio.Event,
) -> None:
    """Answer with `start`, then a line that never ends, in `piece`-byte writes `pause`
    seconds apart (a trickle arrives in as many reads), until the gateway hangs up."""
    await upstream.read_head(reader)
    writer.write(start)
    try:
        for _ in range((1 << 30) // piece):  # 1 GiB: without the cap, the client times out
            writer.write(b"a" * piece)
            await writer.drain()
            await asyncio.sleep(pause)
    except ConnectionError:
        hung_up.set()


@pytest.mark.parametrize(("piece", "pause"), [(65536, 0), (4096, 0.005)], ids=["flood", "trickle"])
async def test_a_trailer_line_that_never_ends_is_cut_off(
    piece: int, pause: float, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """llhttp holds a field until its line ends: an upstream that never ends one grew the
    worker's memory (and copied it quadratically) for as long as it kept sending. Now the
    gateway hangs up on it, and the client sees a cut rather than a complete body."""
    hung_up = asyncio.Event()
    start = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: "

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await endless_line(upstream, reader, writer, start, piece, pause, hung_up)

    upstream = RawUpstream(respond)
    async with upstream:
        # A read timeout far past the client's: only the cap can end this exchange in time.
        gw = await start_gateway(make_route(make_service(upstream.port, read_timeout=60.0)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET, timeout=10)
        async with asyncio.timeout(10):
            await hung_up.wait()
    assert raw.startswith(b"HTTP/1.1 200")  # the head went before the trailers came
    assert not raw.endswith(b"0\r\n\r\n")
    # The log names the cause, not the close that followed it (our own hang-up).
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.endswith("cut off: upstream sent too big a trailer section") for w in warnings)


async def test_a_response_head_trickled_past_64_kib_is_502(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The head cap counts every read of the head, not each read alone."""
    hung_up = asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await endless_line(
            upstream, reader, writer, b"HTTP/1.1 200 OK\r\nX-Big: ", 4096, 0.005, hung_up
        )

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, read_timeout=60.0)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET, timeout=10)
        async with asyncio.timeout(10):
            await hung_up.wait()
    assert raw.startswith(b"HTTP/1.1 502"), raw[:60]
    assert f"upstream svc-{upstream.port}: upstream sent too big a response head" in caplog.messages


async def test_trailers_of_exactly_the_cap_are_not_too_big(start_gateway: StartGateway) -> None:
    """The cap on what a chunked body carries besides its data (64 KiB, and 64 bytes a chunk)
    is a most: exactly that much (2 chunks) ends the answer whole."""
    start = b"5\r\nhello\r\n0\r\nX-T: "  # 13 bytes of framing
    rest = start + b"a" * (65536 + 2 * 64 - 13)

    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    # the head in a read of its own; all of `rest` read before the end comes
    async with replying_in_pieces(head, 0.1, rest, 0.2, b"\r\n\r\n") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"hello\r\n0\r\n\r\n"), raw[-60:]


async def test_a_head_whose_first_64_kib_come_before_its_end_is_not_too_big(
    start_gateway: StartGateway,
) -> None:
    """The head cap is on the head: 64 KiB read before the head has ended (status line and
    64 KiB less 17 bytes of fields) is not yet too much."""
    fields = b"Content-Length: 2\r\nX-Big: %b\r\n" % (b"a" * 65491)
    first = b"HTTP/1.1 200 OK\r\n" + fields
    assert len(first) == 65536

    # all of `first` read before the rest comes
    async with replying_in_pieces(first, 0.2, b"\r\nok") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET)
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"\r\n\r\nok"), raw[:60]


async def test_bytes_that_are_not_http_are_a_502_at_once(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a read timeout later, even when the upstream keeps the connection open."""
    async with replying(b"SSH-2.0-OpenSSH_9.6\r\n", linger=10) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, read_timeout=5.0)))
        raw = await raw_request(gw.proxy_port, CLOSE_GET, timeout=3)
    assert raw.startswith(b"HTTP/1.1 502"), raw[:60]
    cause = f"upstream svc-{upstream.port}: invalid HTTP response from upstream: "
    assert any(m.startswith(cause) for m in caplog.messages), caplog.messages


async def test_a_header_regex_route_takes_a_value_that_is_not_utf8(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp hands such bytes over as surrogates: RE2 is given them back as bytes (it raised
    UnicodeEncodeError, a 500, before)."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as upstream:
        route = make_route(make_service(upstream.port), headers={"x-version": ("~*^v2",)})
        gw = await start_gateway(route)
        raw = await raw_request(
            gw.proxy_port,
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Version: v2\xff\r\nConnection: close\r\n\r\n",
        )
    assert raw.startswith(b"HTTP/1.1 200"), raw[:60]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def early_answering(answered: asyncio.Event) -> RawUpstream:
    """A keep-alive upstream that answers each request as soon as its head arrives (and sets
    `answered`), then reads its body by its framing (as aiohttp or Node answer a 413 or 401 to
    an upload), and records every request head it parses, body bytes included if a head hides
    in them."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await upstream.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
            await writer.drain()
            answered.set()
            for line in head.lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    await reader.readexactly(int(line.partition(b":")[2]))
                elif line == b"transfer-encoding: chunked":
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        await reader.readexactly(size + 2)
                    await reader.readuntil(b"\r\n")

    upstream = RawUpstream(respond)
    return upstream


SMUGGLED = b"GET /secret HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize(
    "how", ["client leaves", "client half-closes", "client stalls", "body too large"]
)
async def test_a_request_body_cut_short_never_leaves_its_connection_in_the_pool(
    how: str, start_gateway: StartGateway
) -> None:
    """An upstream answered an upload early, then the body stopped short (the client left,
    stalled, or sent too much): the upstream still waits for the rest of that body, so the
    connection must not serve another request, or that request, whoever sent it, would be read
    as body, and bytes crafted in it as a request that no route or token check has seen."""
    answered = asyncio.Event()
    async with early_answering(answered) as upstream:
        limit = {"max_body_size": 100_000} if how == "body too large" else {}
        gw = await start_gateway(
            make_route(make_service(upstream.port)), client_body_timeout=0.5, **limit
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        if how == "body too large":
            writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
            writer.write(b"%x\r\n%b\r\n" % (80_000, b"a" * 80_000))
        else:
            writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n")
            writer.write(b"a" * 80_000)
        await writer.drain()
        await asyncio.wait_for(answered.wait(), 3)  # the upstream answers the upload early
        await asyncio.sleep(0.2)  # and the gateway has read that answer
        if how == "client leaves":
            writer.close()
        elif how == "client half-closes":  # no more body, and an answer still wanted
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 3)
            writer.close()
        else:  # the 408 or 413 comes after the body timeout or the limit
            if how == "body too large":
                writer.write(b"%x\r\n%b\r\n" % (80_000, b"a" * 80_000))  # 160,000 in all
            await asyncio.wait_for(reader.read(), 3)
            writer.close()
        # The next request, from anyone, goes on its own connection and gets its own answer.
        answer = await raw_request(
            gw.proxy_port,
            b"POST /next HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
            % (len(SMUGGLED), SMUGGLED),
            timeout=4,
        )
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"early"), answer
    assert upstream.connections == 2
    assert not any(head.startswith(b"GET /secret") for head in upstream.requests)


async def test_an_early_answer_to_an_upload_the_upstream_stopped_reading_closes_its_connection(
    start_gateway: StartGateway,
) -> None:
    """The upstream answers an upload at once and stops reading: the answer is relayed after
    write_timeout, and the connection, with the rest of the body unsent, is not reused."""
    first = asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not first.is_set():
            first.set()
            await upstream.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
            await writer.drain()
            await asyncio.sleep(10)  # reads nothing more: the gateway's writes stall
        while True:
            await upstream.read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")

    upstream = RawUpstream(respond)
    async with upstream:
        size = 20_000_000  # more than the socket buffers hold
        gw = await start_gateway(
            make_route(make_service(upstream.port, write_timeout=0.5)), max_body_size=size
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)

        async def send_body() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(size // 1_000_000):
                    writer.write(b"a" * 1_000_000)
                    await writer.drain()

        sending = asyncio.create_task(send_body())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        sending.cancel()
        writer.close()
        answer = await raw_request(gw.proxy_port, CLOSE_GET, timeout=4)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"next"), answer
    assert upstream.connections == 2


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"CONNECT /public HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b"
        % (len(SMUGGLED), SMUGGLED),
        b"CONNECT /public HTTP/1.1\r\nHost: a\r\n\r\n" + SMUGGLED,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n" + SMUGGLED,
        b"TRACE /public HTTP/1.1\r\nHost: a\r\nCookie: session=s\r\n\r\n" + SMUGGLED,
    ],
    ids=["with a body", "then bytes", "authority form", "trace"],
)
async def test_connect_and_trace_are_405_and_nothing_after_them_is_read_as_a_request(
    request_bytes: bytes, start_gateway: StartGateway
) -> None:
    """As nginx (so Kong) answers: 405, and the connection closes, so the bytes after a CONNECT
    head (tunnel data, or a body a front proxy framed) never become a request of their own; a
    TRACE never reaches the upstream to echo the client's cookies."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, request_bytes)
    assert raw.startswith(b"HTTP/1.1 405 "), raw
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in head
    assert body == b'{"message": "Method not allowed"}'  # kong/error_handlers.lua's 405
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("request_line", "status"),
    [(b"GET / HTTP/2.0", b"505"), (b"GET /", b"400")],
    ids=["HTTP/2.0", "no version (0.9)"],
)
async def test_a_request_line_in_another_http_version_is_answered_in_http_1_1(
    request_line: bytes, status: bytes, start_gateway: StartGateway
) -> None:
    """llhttp reads "HTTP/2.0" and a line without a version (HTTP/0.9, headers and all) as
    requests; aiohttp would answer "HTTP/2.0 200 OK", a version no HTTP/1 client reads. As
    nginx: 505 (400 for 0.9) in HTTP/1.1, a close, and nothing forwarded."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        raw = await raw_request(gw.proxy_port, request_line + b"\r\nHost: a\r\n\r\n")
    head = raw.partition(b"\r\n\r\n")[0] + b"\r\n"
    assert head.startswith(b"HTTP/1.1 %b " % status), raw
    assert b"\r\nConnection: close\r\n" in head
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("regex", "request_path", "expected"),
    [
        # A regex written for Kong's reading, which keeps %40 escaped.
        ("~/docs/[A-Za-z0-9%._-]+$", "/docs/a%40b", b"HTTP/1.1 400"),
        ("~/docs/[A-Za-z0-9%._-]+$", "/docs/report.pdf", b"regex"),
        ("~/docs/[A-Za-z0-9%._-]+$", "/docs/a@b", b"other"),  # Kong too: no % to match
        # A regex written for Kong's reading, which decodes %C3%A9 and %20.
        (r"~/wiki/[\p{L} ]+$", "/wiki/caf%C3%A9", b"HTTP/1.1 400"),
        (r"~/wiki/[\p{L} ]+$", "/wiki/my%20page", b"HTTP/1.1 400"),
        (r"~/wiki/[\p{L} ]+$", "/wiki/cafe", b"regex"),
        # Raw characters canonical_path escapes, which Kong's router sees raw.
        (r"~/items/\[\d+\]$", "/items/[1]", b"HTTP/1.1 400"),
        ("~/q/[a-z|]+$", "/q/a|b", b"HTTP/1.1 400"),
        # Both readings agree: routed as usual.
        ("~/docs/[a-z]+$", "/docs/%61bc", b"regex"),
        # The readings differ but pick the same route, regex or not: routed as usual.
        (r"~/wiki/.+$", "/wiki/caf%C3%A9", b"regex"),
        ("~/docs/[a-z]+$", "/x/a%40b", b"other"),
        # Only the canonical reading meets the regex route: refused the other way round too.
        ("~/docs/[a-z@]+$", "/docs/a%40b", b"HTTP/1.1 400"),
    ],
)
async def test_a_path_whose_escapes_kong_reads_otherwise_never_falls_to_another_route(
    regex: str, request_path: str, expected: bytes, start_gateway: StartGateway
) -> None:
    """Kong's router matches a regex against the path with reserved escapes kept and the others
    decoded; tokengate's canonical path does the opposite for some. Where the two readings
    would pick different routes, one of them a regex route (perhaps the protected one), the
    request is refused rather than sent where Kong would not send it."""
    async with (
        replying(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nregex") as matched,
        replying(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nother") as other,
    ):
        gw = await start_gateway(
            make_route(make_service(matched.port), paths=(regex,), name="regex"),
            make_route(make_service(other.port), paths=("/",), name="other"),
        )
        raw = await raw_request(
            gw.proxy_port,
            f"GET {request_path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode(),
        )
    assert raw.startswith(expected) or raw.endswith(expected), raw


async def test_prefix_routes_keep_the_canonical_reading_of_escapes(
    start_gateway: StartGateway,
) -> None:
    """No regex route involved: `/v1/users%3Asearch` meets the route on `/v1/users:search`, as
    upstreams decode `%3A` before they route (Kong's router would not)."""
    async with (
        replying(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsearch") as search,
        replying(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nother") as other,
    ):
        gw = await start_gateway(
            make_route(make_service(search.port), paths=("/v1/users:search",), name="search"),
            make_route(make_service(other.port), paths=("/",), name="other"),
        )
        raw = await raw_request(
            gw.proxy_port,
            b"GET /v1/users%3Asearch HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
    assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"search"), raw


@pytest.mark.parametrize(
    ("request_path", "headers", "expected"),
    [
        # Canonically the prefix route; in Kong's reading no route at all: neither is a regex
        # route, so the canonical reading stands (a regex route elsewhere changes nothing).
        ("/docs/a%40b", b"", b"prefix"),
        # Kong's reading meets the regex route, whose header condition the request meets too.
        ("/api/a%40b", b"X-Version: 2\r\n", b"HTTP/1.1 400"),
        ("/api/a%40b", b"X-Version: 1\r\n", b"HTTP/1.1 404"),
    ],
)
async def test_kongs_reading_is_routed_with_the_whole_request(
    request_path: str, headers: bytes, expected: bytes, start_gateway: StartGateway
) -> None:
    """The second reading is matched as the first is, headers included; a reading that
    meets no route, or only routes without a regex, is no reason to refuse."""
    async with (
        replying(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nregex") as matched,
        replying(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nprefix") as prefix,
    ):
        gw = await start_gateway(
            make_route(
                make_service(matched.port),
                paths=("~/api/[a-z%0-9]+$",),
                headers={"x-version": ("2",)},
                name="regex",
            ),
            make_route(make_service(prefix.port), paths=("/docs/a@",), name="prefix"),
        )
        raw = await raw_request(
            gw.proxy_port,
            b"GET %b HTTP/1.1\r\nHost: a\r\n%bConnection: close\r\n\r\n"
            % (request_path.encode(), headers),
        )
    assert raw.startswith(expected) or raw.endswith(expected), raw


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_streamed_uploads_sent_whole_keep_their_connection(
    chunked: bool, start_gateway: StartGateway
) -> None:
    """The usual case next to the cut-short ones: an upload sent whole reaches the upstream
    byte for byte in its own framing (a chunk-size line inside a Content-Length body would be
    read as body, and its body's end as the next request), leaves its upstream connection in
    the pool, and the next one uses it."""
    payload = bytes(range(256)) * 400  # 102,400 bytes: streamed, not buffered
    received: list[bytes] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(3):
            head = (await upstream.read_head(reader)).lower()
            body = b""
            if b"transfer-encoding: chunked" in head:
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    body += (await reader.readexactly(size + 2))[:-2]
                await reader.readuntil(b"\r\n")
            else:
                body = await reader.readexactly(len(payload))
            received.append(body)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(payload)
        body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload) if chunked else payload
        for _ in range(3):
            writer.write(b"POST /up HTTP/1.1\r\nHost: a\r\n%b\r\n\r\n%b" % (framing, body))
            head, answer = await read_response(reader)
            assert head.startswith(b"HTTP/1.1 200") and answer == b"ok", head
        writer.close()
    assert received == [payload] * 3
    assert [head.split(b" ", 2)[:2] for head in upstream.requests] == [[b"POST", b"/up"]] * 3
    assert upstream.connections == 1


async def test_a_host_route_with_the_proxy_port_takes_a_host_header_without_one(
    start_gateway: StartGateway,
) -> None:
    """Kong's router reads a Host without a port as on the port the request came in on, so
    `hosts: [h.example:8000]` takes `Host: h.example` on a proxy listening on 8000."""
    async with replying(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as upstream:
        service = make_service(upstream.port)
        gw = await start_gateway(make_route(service, ("/other",)))
        port = gw.proxy_port
        config = GatewayConfig(
            services=(service,),
            routes=(
                make_route(service, ("/",), hosts=(f"h.example:{port}",)),
                make_route(service, ("/",), hosts=("g.example:1",)),
            ),
        )
        gw.reload(config)
        request = b"GET /x HTTP/1.1\r\nHost: %b\r\nConnection: close\r\n\r\n"
        on_this_port = await raw_request(port, request % b"h.example")
        on_another = await raw_request(port, request % b"g.example")
    assert on_this_port.startswith(b"HTTP/1.1 200"), on_this_port[:80]
    assert on_another.startswith(b"HTTP/1.1 404"), on_another[:80]


async def test_answers_the_gateway_writes_name_tokengate_relayed_ones_keep_the_upstreams(
    start_gateway: StartGateway,
) -> None:
    """Never aiohttp's Python/aiohttp banner: the gateway's own answers (no route, a refusal
    of the method, a request it cannot parse, the status port) say `Server: tokengate`; an
    upstream's answer keeps the upstream's Server."""
    reply = b"HTTP/1.1 200 OK\r\nServer: upstream/1\r\nContent-Length: 2\r\n\r\nok"
    async with replying(reply) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port), ("/p",)))
        asks = [
            b"GET /nowhere HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            b"TRACE /p HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /p HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        ]
        heads = [(await raw_request(gw.proxy_port, ask)).partition(b"\r\n\r\n")[0] for ask in asks]
        relayed = await raw_request(
            gw.proxy_port, b"GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        status = await raw_request(
            gw.status_port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
    for head in [*heads, status.partition(b"\r\n\r\n")[0]]:
        assert re.findall(rb"\r\nServer: ([^\r]*)", head) == [b"tokengate"], head
    assert re.findall(rb"\r\nServer: ([^\r]*)", relayed.partition(b"\r\n\r\n")[0]) == [
        b"upstream/1"
    ]


@pytest.mark.parametrize("size", [2, 300_000], ids=["buffered", "streamed"])
async def test_an_upstream_answer_without_a_server_gets_tokengates(
    size: int, start_gateway: StartGateway
) -> None:
    """As Kong adds its own Server when the upstream sent none; never aiohttp's banner,
    whether the answer is relayed whole or streamed."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (size, b"x" * size)
    async with replying(reply) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)))
        answer = await raw_request(
            gw.proxy_port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
    head = answer.partition(b"\r\n\r\n")[0]
    assert re.findall(rb"\r\nServer: ([^\r]*)", head) == [b"tokengate"], head


async def upload_then(port: int, upstream: RawUpstream, rest: bytes) -> bytes:
    """A chunked upload whose first chunk is streaming upstream when `rest` follows; every
    byte the gateway answers, to its close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        await writer.drain()
        await eventually(lambda: upstream.connections == 1)
        await asyncio.sleep(0.1)  # the first chunk is on its way upstream
        writer.write(rest)
        return await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "bad_line", [b"zz\r\n", b"5;\x00\r\n", b"-1\r\n"], ids=["not-hex", "nul", "negative"]
)
async def test_a_malformed_chunk_in_a_streamed_upload_is_a_400_at_once(
    bad_line: bytes, start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The upload is already streaming upstream when a chunk-size line turns out malformed:
    nginx answers "client sent invalid chunked body" with a 400 at once and closes. The
    gateway must too, rather than wait client_body_timeout for bytes it could never frame
    and answer 408; and the upstream never gets a terminated body it could take for whole."""
    bodies: list[bytes] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        bodies.append(await reader.read())  # until the gateway closes its side

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)), client_body_timeout=30)
        answer = await upload_then(gw.proxy_port, upstream, bad_line + b"more\r\n0\r\n\r\n")
        await eventually(lambda: bool(bodies))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head.split(b"\r\n")
    assert body == b'{"message": "Bad request"}'
    assert not bodies[0].endswith(b"0\r\n\r\n"), bodies
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_malformed_request_after_a_whole_chunked_body_is_that_requests_400(
    start_gateway: StartGateway,
) -> None:
    """The same read ends a streaming chunked body and brings a malformed next request: the
    upload is whole and gets its answer; the 400 is the next request's."""
    bodies: list[bytes] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        bodies.append(body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    upstream = RawUpstream(respond)
    async with upstream:
        gw = await start_gateway(make_route(make_service(upstream.port)), client_body_timeout=30)
        rest = b"6\r\n world\r\n0\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n"
        answer = await upload_then(gw.proxy_port, upstream, rest)
    assert bodies == [b"hello world"]
    first, _, rest = answer.partition(b"\r\n\r\nok")
    assert first.startswith(b"HTTP/1.1 200 "), answer[:80]
    assert rest.startswith(b"HTTP/1.1 400 "), answer


async def test_an_idle_pooled_connection_is_closed_after_the_idle_timeout() -> None:
    """As Kong's upstream_keepalive_idle_timeout: a pooled connection nobody used for that long
    is closed (an upstream that never closes idle ones would otherwise keep each for ever);
    one used since is kept until its own time comes."""
    async with KeepAliveUpstream() as upstream:
        pool = UpstreamPool(
            "127.0.0.1", upstream.port, max_connections=4, max_idle=4, idle_timeout=0.4
        )
        try:
            first, second = await pool.acquire(2.0), await pool.acquire(2.0)
            await exchange(pool, first)
            await asyncio.sleep(0.25)
            await exchange(pool, second)  # idle 0.25 s after the first
            await eventually(lambda: upstream.closed == {0}, timeout=1.0)
            assert pool.size == 1 and not second.closed
            await eventually(lambda: upstream.closed == {0, 1}, timeout=1.0)
            assert pool.size == 0
            again = await pool.acquire(2.0)  # a new one, when wanted again
            await exchange(pool, again)
            assert len(upstream.served) == 3
        finally:
            await pool.close()
