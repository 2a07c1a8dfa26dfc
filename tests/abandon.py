"""A client that gives up halfway through sending its request body, against a server run as
tokengate runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from aiohttp import web


@contextlib.asynccontextmanager
async def served(
    app: web.Application, runner_class: type[web.AppRunner] = web.AppRunner
) -> AsyncIterator[str]:
    """`app` on a free port, its base URL. Unlike aiohttp's TestServer, handlers are not
    cancelled when their client goes (tokengate's identity and echo servers run so): a handler
    reading the body sees the connection error itself."""
    runner = runner_class(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def leave_mid_body(
    base_url: str, target: str, content_type: str, *, bearer: str | None = None
) -> None:
    """POST `target` announcing a 100-byte body, send one byte, wait until the server is
    reading the rest, then reset the connection (RST, as a killed client's kernel sends)."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        + (f"Authorization: Bearer {bearer}\r\n" if bearer else "")
        + "Content-Length: 100\r\n\r\n"
    )
    writer.write(head.encode() + b"{")
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is waiting for the other 99 bytes
    linger_zero = struct.pack("ii", 1, 0)  # close() then sends RST, not FIN
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_zero)
    writer.transport.abort()
    await asyncio.sleep(0.2)  # and sees the connection go


async def answer_to(url: str, request: bytes, *, then_closed: bool = False) -> tuple[bytes, bytes]:
    """The head and body of the one answer to `request`, sent as raw bytes to `url` (and with
    `then_closed`, checked that the server closed the connection after it)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
        assert length is not None, head
        body = await reader.readexactly(int(length.group(1)))
        if then_closed:
            assert await reader.read() == b"", head
        return head, body
    finally:
        writer.close()


def server_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR records (a handler's unexpected exception is logged with its traceback)."""
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
