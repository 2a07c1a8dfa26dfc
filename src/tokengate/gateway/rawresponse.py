"""A response already serialised as HTTP/1.1 bytes, written with one transport write.

    return RawResponse(head + body, status=200, keep_alive=request.keep_alive, body_size=len(body))

aiohttp's Response builds a header dict, formats it and frames the body on every request; for
answers the gateway can lay out itself (a small upstream response relayed, a refusal) one
`transport.write` of ready bytes does the same job for a fraction of the cost. Only for HTTP/1.1
clients: HTTP/1.0 keep-alive rules stay aiohttp's.

Like aiohttp's own writer, it waits when the client is not reading (the socket's buffer past its
high-water mark) before the handler returns: otherwise a client that pipelines requests and
never reads the answers would have every answer buffered here, without bound. It waits at most
`send_timeout` seconds, then drops the connection.
"""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time

from tokengate.gateway.stalls import within_send_timeout

DEFAULT_SEND_TIMEOUT: Final = 30.0  # --client-send-timeout's default
# The Server of every answer tokengate writes itself (relayed ones keep the upstream's): its
# name without a version, as nginx's server_tokens off, never aiohttp's Python/aiohttp banner.
SERVER: Final = "tokengate"
SERVER_LINE: Final = b"Server: tokengate\r\n"
_WRITE_HIGH_WATER: Final = 64 * 1024  # asyncio's and uvloop's default high-water mark


async def name_server(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """An application's on_response_prepare signal: its answers name tokengate as their
    Server. (aiohttp has written its own banner into the headers by the time it runs.)"""
    response.headers["Server"] = SERVER


def date_line() -> bytes:
    """`Date: ...\\r\\n` (RFC 9110 §6.6.1), aiohttp's per-second cached formatting."""
    return b"Date: %s\r\n" % rfc822_formatted_time().encode("ascii")


class RawResponse(web.StreamResponse):
    def __init__(
        self,
        data: bytes,
        *,
        status: int,
        keep_alive: bool,
        body_size: int,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
    ) -> None:
        super().__init__(status=status)
        self._data = data
        self._keep_alive = keep_alive  # aiohttp reads it to keep or close the connection
        self.body_size = body_size  # of `data`, the body's part (for the access log)
        self._send_timeout = send_timeout

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        transport = request.transport
        if self._data and transport is not None and not transport.is_closing():
            transport.write(self._data)
            if transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                await _drain(request, transport, self._send_timeout)
        self._data = b""
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


async def _drain(request: web.BaseRequest, transport: asyncio.Transport, timeout: float) -> None:
    """Wait until the client takes the answer in, or drop the connection once it has taken
    none of it for `timeout` seconds."""
    try:
        await within_send_timeout(request.writer.drain(), transport, timeout)
    except TimeoutError:
        transport.abort()  # a close would wait for a buffer the client never reads
