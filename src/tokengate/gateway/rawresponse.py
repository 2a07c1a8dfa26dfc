"""A response already serialised as HTTP/1.1 bytes, written with one transport write.

    return RawResponse(head + body, status=200, keep_alive=request.keep_alive, body_size=len(body))

aiohttp's Response builds a header dict, formats it and frames the body on every request; for
answers the gateway can lay out itself (a small upstream response relayed, a refusal) one
`transport.write` of ready bytes does the same job for a fraction of the cost. Only for HTTP/1.1
clients: HTTP/1.0 keep-alive rules stay aiohttp's.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time


def date_line() -> bytes:
    """`Date: ...\\r\\n` (RFC 9110 §6.6.1), aiohttp's per-second cached formatting."""
    return b"Date: %s\r\n" % rfc822_formatted_time().encode("ascii")


class RawResponse(web.StreamResponse):
    def __init__(self, data: bytes, *, status: int, keep_alive: bool, body_size: int) -> None:
        super().__init__(status=status)
        self._data = data
        self._keep_alive = keep_alive  # aiohttp reads it to keep or close the connection
        self.body_size = body_size  # of `data`, the body's part (for the access log)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        transport = request.transport
        if self._data and transport is not None and not transport.is_closing():
            transport.write(self._data)
        self._data = b""
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None
