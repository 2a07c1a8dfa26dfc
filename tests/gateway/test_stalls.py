"""Send timeouts from the last bytes a peer took (stalls.py), over real loopback sockets with
small buffers, so that what waits in the transport is what the peer reads (not megabytes of
kernel buffer)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from tokengate.gateway.stalls import StallWatch, buffered, within_send_timeout

Reader = Callable[[asyncio.StreamReader], Awaitable[None]]


@asynccontextmanager
async def writer_to(read: Reader) -> AsyncIterator[asyncio.StreamWriter]:
    """A writer whose peer runs `read`; both sockets with small buffers."""
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read(reader)
        finally:
            writer.close()
            done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    for listener in server.sockets:  # accepted sockets inherit it
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, server.sockets[0].getsockname())
    _, writer = await asyncio.open_connection(sock=sock)
    try:
        yield writer
    finally:
        writer.transport.abort()
        server.close()
        await server.wait_closed()


async def steadily(reader: asyncio.StreamReader) -> None:
    """8 KiB every 20 ms: some 400 KB/s, 1 MiB in about 2.6 s."""
    taken = 0
    while piece := await reader.read(8192):
        taken += len(piece)
        await asyncio.sleep(0.02)


async def never(reader: asyncio.StreamReader) -> None:
    await asyncio.Event().wait()


async def test_a_peer_reading_steadily_is_given_time_for_a_write_far_past_the_timeout() -> None:
    async with writer_to(steadily) as writer:
        writer.write(b"x" * (1 << 20))
        assert buffered(writer.transport) > 0
        # 0.3 s for the whole would be far too little; 0.3 s between two reads is plenty.
        await within_send_timeout(writer.drain(), writer.transport, 0.3)
        assert buffered(writer.transport) < 1 << 20


async def test_a_peer_that_takes_nothing_is_a_timeout() -> None:
    async with writer_to(never) as writer:
        writer.write(b"x" * (1 << 20))
        with pytest.raises(TimeoutError):
            await within_send_timeout(writer.drain(), writer.transport, 0.2)


async def test_a_watch_calls_once_when_the_peer_stops_and_never_after_a_cancel() -> None:
    stalls: list[float] = []
    loop = asyncio.get_running_loop()
    async with writer_to(never) as writer:
        writer.write(b"x" * (1 << 20))
        transport = writer.transport
        stalled = asyncio.Event()

        def on_stall() -> None:
            stalls.append(loop.time())
            stalled.set()

        started = loop.time()
        StallWatch(transport, 0.1, on_stall)
        cancelled = StallWatch(transport, 0.1, lambda: stalls.append(-1.0))
        cancelled.cancel()
        await asyncio.wait_for(stalled.wait(), 10)
        await asyncio.sleep(0.3)  # time for a second call, which must not come
    assert len(stalls) == 1 and stalls[0] - started >= 0.1
