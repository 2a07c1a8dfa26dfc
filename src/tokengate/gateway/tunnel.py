"""WebSocket tunnels: after the upstream's 101, bytes pass both ways untouched until a side ends.

    if wants_websocket(request):
        ...the handshake goes upstream on a new pool connection (`upgrade=True`)...
        if conn.upgraded:
            return await relay(request, conn, service, request_id, exchange, send_timeout)

The gateway does not parse WebSocket frames: like nginx (and so Kong), it checks the handshake
request (routing, and the openid-connect plugin's token on routes that have it), then relays
bytes. aiohttp holds back what a client sends after an upgrade request; `set_parser` hands it,
and every later byte, to `ClientToUpstream`. The upstream's bytes go back through the 101
response's writer, so aiohttp's flow control holds them when the client reads slowly. The
tunnel ends when either side closes, when the upstream sends nothing for the service's
read_timeout (nginx's proxy_read_timeout), when the client or the upstream stops taking bytes
for the send / write timeout, or when the gateway stops; both connections are then closed.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from tokengate.gateway.config import Service
from tokengate.gateway.exchange import Exchange
from tokengate.gateway.headers import response_headers
from tokengate.gateway.stalls import StallWatch, within_send_timeout
from tokengate.gateway.upstream import UpstreamConnection, UpstreamError

__all__ = ["ClientToUpstream", "copy_to_client", "relay", "wants_websocket"]

log = logging.getLogger("tokengate.proxy")


def wants_websocket(request: web.BaseRequest) -> bool:
    """An HTTP/1.1 GET asking to switch to WebSocket (RFC 6455 §4.1), the one upgrade aiohttp
    hands over (h2c and others are refused there and pass as plain requests)."""
    upgrade = request.headers.get("Upgrade")
    # ASCII only, as aiohttp checks: str.lower() would make "websoc\u212aet" (Kelvin sign) a
    # websocket that aiohttp does not switch for.
    if upgrade is None or not upgrade.isascii() or upgrade.lower() != "websocket":
        return False
    if request.method != "GET" or request.version != (1, 1):
        return False
    return any(
        token.strip().lower() == "upgrade"
        for value in request.headers.getall("Connection", ())
        if value.isascii()
        for token in value.split(",")
    )


class ClientToUpstream:
    """Takes the place of aiohttp's payload parser on the client connection (set_parser): every
    byte the client sends goes upstream as it is. When the upstream's socket buffer fills, the
    client's socket stops being read until it drains, while the upstream takes some of it at
    least every `write_timeout` seconds (stalls.py)."""

    def __init__(
        self, conn: UpstreamConnection, protocol: RequestHandler, write_timeout: float
    ) -> None:
        self._conn = conn
        self._protocol = protocol
        self._write_timeout = write_timeout
        self._stall: StallWatch | None = None
        conn.on_writable = self._writable

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        """aiohttp's interface: (end of stream, unused bytes)."""
        try:
            self._conn.write(data)
        except UpstreamError:
            return True, b""  # the upstream is gone: aiohttp closes the client connection
        if self._conn.write_paused and self._stall is None:
            self._protocol.pause_reading()
            self._stall = StallWatch(self._conn.transport, self._write_timeout, self._stalled)
        return False, b""

    def feed_eof(self) -> None:
        """The client connection ended: so does the tunnel (the relay sees the upstream close)."""
        stalled = self._stall is not None
        self._cancel_stall()
        if stalled:
            self._conn.abort()  # what is still queued would never be read
        else:
            self._conn.close()  # what the client sent last still goes

    def _writable(self) -> None:
        if self._stall is not None:
            self._cancel_stall()
            self._protocol.resume_reading()

    def _stalled(self) -> None:
        self._stall = None
        log.warning("websocket tunnel cut off: the upstream stopped reading")
        self._conn.abort()

    def _cancel_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None


async def relay(
    request: web.BaseRequest,
    conn: UpstreamConnection,
    service: Service,
    request_id: bytes,
    exchange: Exchange,
    send_timeout: float,
    answer: tuple[tuple[bytes, bytes], ...] = (),
) -> web.StreamResponse:
    """Answer the client with the upstream's 101 and relay bytes both ways until the tunnel
    ends; the client connection is closed after it (no HTTP follows a switch). `answer`:
    headers added to the 101 (downstream_headers)."""
    raw_headers = conn.headers
    if exchange.answer_edit is not None:  # the route's cors
        raw_headers, answer = exchange.answer_edit.upstream(raw_headers, answer)
    headers = response_headers(raw_headers, request_id, answer)
    # Nothing frames a 1xx: a Content-Length kept here would make aiohttp cut the tunnel's
    # bytes to that length.
    headers.popall("Content-Length", None)
    # Hop-by-hop as they are, these two are the switch itself: the upstream's own values.
    for name, value in conn.headers:
        if name.lower() == b"upgrade":
            headers["Upgrade"] = value.decode("latin-1")
    headers["Connection"] = "Upgrade"
    response = web.StreamResponse(status=101, headers=headers)
    response.force_close()
    try:
        # Inside the try: a client gone as the 101 came makes prepare raise (a closing
        # transport), and the upstream connection, out of the pool already, must close too.
        await response.prepare(request)
        exchange.switched = True
        to_upstream = ClientToUpstream(conn, request.protocol, service.write_timeout)
        # Typed for aiohttp's WebSocketReader, of which it calls only feed_data and feed_eof.
        request.protocol.set_parser(to_upstream)  # type: ignore[arg-type]
        try:
            await copy_to_client(
                conn, response, exchange, service.read_timeout, send_timeout, request.transport
            )
        except (UpstreamError, TimeoutError, ConnectionError) as exc:
            what = "the client stopped reading" if isinstance(exc, TimeoutError) else str(exc)
            log.info("websocket tunnel to %s ended: %s", service.name, what)
            if request.transport is not None:
                request.transport.abort()
            return response
    finally:
        _close(conn, service.write_timeout)
    await response.write_eof()
    return response


async def copy_to_client(
    conn: UpstreamConnection,
    response: web.StreamResponse,
    exchange: Exchange,
    read_timeout: float,
    send_timeout: float,
    transport: asyncio.Transport | None,
) -> None:
    """The upstream's bytes to the client until the upstream's end, counted in the exchange:
    read_timeout between pieces (UpstreamTimeout), send_timeout while the client's `transport`
    takes none of a write (TimeoutError: a client that stops reading must not hold an upstream
    connection for ever)."""
    exchange.body_bytes = 0
    while chunk := await conn.read_chunk(read_timeout):
        write = response.write(chunk)
        await within_send_timeout(write, transport, send_timeout, adding=len(chunk))
        exchange.body_bytes += len(chunk)


def _close(conn: UpstreamConnection, write_timeout: float) -> None:
    """Close the upstream side, letting queued bytes go for at most `write_timeout`."""
    conn.close()
    transport = conn.transport
    if transport is not None and transport.get_write_buffer_size():
        asyncio.get_running_loop().call_later(write_timeout, conn.abort)
