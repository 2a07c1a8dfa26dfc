"""Keep-alive HTTP/1.1 connections to upstream services, responses parsed by llhttp (httptools).

    pool = UpstreamPool("127.0.0.1", 8080, max_connections=256, connect_timeout=5.0)
    conn = await pool.acquire()
    conn.write(b"GET / HTTP/1.1\\r\\nHost: svc\\r\\n\\r\\n")
    status, headers = await conn.read_head(timeout=60.0, head_request=False)
    ... conn.take_body() / await conn.read_chunk(timeout) ...
    pool.release(conn)

Why not aiohttp's client: it costs about two thirds of a naive proxy's time per request. This module
is the least a correct forwarder needs: one request at a time per connection, framing decided by
llhttp (Content-Length, chunked, close-delimited; 1xx skipped; HEAD/204/304 bodiless), backpressure
both ways, a capped pool with a wait queue, and timeouts that map to 502/504 in the proxy. A
WebSocket handshake asks for an upgrade: after the upstream's 101 the connection carries raw bytes
(read_chunk) until it closes, and never returns to a pool.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import socket
import ssl
from collections.abc import Callable
from typing import Final, NoReturn, cast

import httptools

from tokengate.gateway.stalls import StallWatch

log = logging.getLogger("tokengate.proxy")

RawHeaders = list[tuple[bytes, bytes]]

# Response bodies queue at most this much before we stop reading the upstream socket.
_HIGH_WATER: Final = 256 * 1024
_MAX_PIECES: Final = 1024  # queued body pieces (chunks) before they are merged into one
_LOW_WATER: Final = 64 * 1024
# A response head (interim ones included) past this is a 502, as nginx's "upstream sent too big
# header" (Envoy's default cap is 60 KiB); so are trailers and chunk framing past it (and a few
# bytes per chunk): an upstream that never ends a line must not grow a worker's memory.
MAX_RESPONSE_HEAD: Final = 64 * 1024
_FRAMING_PER_CHUNK: Final = 64  # a chunk-size line with extensions, and its CRLFs
# RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ): any other byte is a control.
_CONTROL_BYTE: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search


class _Stopped(Exception):
    """Raised in a callback to stop llhttp; feed_data turns it into an HttpParserError."""


class UpstreamError(Exception):
    """The upstream failed us; the proxy maps each subclass to a status code."""


class UpstreamConnectError(UpstreamError):
    """Could not open a connection (refused, unreachable, TLS handshake): 502."""


class UpstreamNameNotResolved(UpstreamConnectError):
    """The resolver answered that the host name has no address: Kong's 503 "name resolution
    failed" for a service's host; a balanced upstream leaves such a target out."""


# What Kong's balancer counts as a name that does not resolve (NXDOMAIN, an empty record); a
# resolver that is down or failing is another error (Kong: 500).
_NAME_NOT_FOUND: Final = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


class UpstreamConnectTimeout(UpstreamError):
    """Connecting took longer than the service's connect_timeout: 504."""


class UpstreamTimeout(UpstreamError):
    """No response bytes within read_timeout, or a write stalled past write_timeout: 504."""


class UpstreamProtocolError(UpstreamError):
    """The upstream closed early or sent something that is not HTTP/1.x: 502."""

    def __init__(self, message: str, *, before_response: bool = False) -> None:
        super().__init__(message)
        # True when the connection died before a single response byte: safe to retry
        # an idempotent request once on a fresh connection (the pooled one was stale).
        self.before_response = before_response


class PoolExhausted(UpstreamError):
    """Every connection is busy and none freed up within connect_timeout: 503."""


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to an upstream, carrying one request/response at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.requests_sent = 0
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.on_writable: Callable[[], None] | None = None  # called when writes may resume
        self.idle_since = 0.0  # the loop's time it went back to its pool's idle list
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self._resume_reading()  # never start an exchange with the socket paused
        self.status = 0
        self.reason = b""
        self.headers: RawHeaders = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self._head_request = False
        self._got_bytes = False
        self._head_read = 0  # bytes read before the final head was complete
        self._interim_size = 0  # of interim (1xx) heads' fields
        self._framing = 0  # bytes after the head that were not body: chunk lines, trailers
        self._chunks = 0
        self._trailers = False
        self._dirty = False  # bytes arrived that belong to no request: never reuse
        self._request_whole = True  # False while a streamed request body is still being sent
        self._body: collections.deque[bytes] = collections.deque()
        self._body_size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self._upgrade_asked = False
        self.upgraded = False  # the upstream answered 101: raw bytes from here on

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self.upgraded:
            self._queue(data)
            return
        if self.complete or not self.requests_sent:
            # Nothing is awaiting a response: an upstream talking out of turn.
            self._dirty = True
            self._close_transport()
            return
        after_head = self.head_done
        queued = self._body_size  # nothing dequeues while llhttp parses: the growth is body
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as switched:
            if self.status != 101:  # a 101 nobody asked for (on_headers_complete skipped it)
                self._fail(UpstreamProtocolError("upstream switched protocols"))
            elif tail := data[switched.args[0] :]:
                self._queue(tail)  # the new protocol's first bytes came with the head
            return
        except httptools.HttpParserError as exc:
            if self._completed():
                # Bytes after a whole response (more body than Content-Length said, or the
                # start of a response nobody asked for): as nginx does, the response stands
                # and the connection is dropped.
                log.warning(
                    "upstream %s:%d sent bytes after a complete response; connection dropped",
                    self._pool.host,
                    self._pool.port,
                )
                self._dirty = True
                self._close_transport()
                return
            if self._error is None:  # else a callback failed the exchange, and stopped llhttp
                self._fail(UpstreamProtocolError(f"invalid HTTP response from upstream: {exc}"))
            return
        if not self.head_done:  # all of `data` was head: bound it, and wake read_head,
            self._head_read += len(data)  # whose read_timeout counts between reads
            if self._head_read > MAX_RESPONSE_HEAD:
                self._fail(UpstreamProtocolError("upstream sent too big a response head"))
            else:
                self._wake()
        elif not after_head:
            # The head ended in this read: only a large read can hold a head over the cap
            # (the usual small response costs this one comparison).
            if self._head_read + len(data) > MAX_RESPONSE_HEAD and self._head_size() > (
                MAX_RESPONSE_HEAD
            ):
                self._fail(UpstreamProtocolError("upstream sent too big a response head"))
        elif not self.complete and not self.upgraded:
            self._framing += len(data) - (self._body_size - queued)
            if self._framing > MAX_RESPONSE_HEAD + _FRAMING_PER_CHUNK * self._chunks:
                self._fail(UpstreamProtocolError("upstream sent too big a trailer section"))
            else:  # a read of framing alone (a chunk-size line, a trailer) is a read too:
                self._wake()  # read_timeout starts over, as nginx's proxy_read_timeout does

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost finishes the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(
                UpstreamProtocolError("upstream closed the connection")
            )
        if self.complete or not self.requests_sent:
            return
        if self.upgraded:
            self._finish()  # the tunnel's upstream side has ended
            return
        if self.head_done and exc is None and self._reads_until_eof():
            self._finish()  # a close-delimited body ends here; a reset (exc) cuts it short
            return
        self._fail(
            UpstreamProtocolError(
                "upstream closed the connection before the response was complete",
                before_response=not self._got_bytes,
            )
        )

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.on_writable is not None:
            self.on_writable()

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    # -- httptools callbacks ---------------------------------------------------------------
    # Bytes after the end of the response in the same read are a second message nobody asked
    # for: each callback refuses to let it touch the finished one, and the connection is dropped.
    def on_message_begin(self) -> None:
        if self.complete:
            # The start of one ("HTTP/1.1 2") makes no other callback run: llhttp would hold
            # it, and read the next exchange's response as its continuation.
            raise _Stopped

    def on_status(self, reason: bytes) -> None:
        if self.complete:
            self._dirty = True
            return
        self.reason += reason  # a span callback: may come in pieces; llhttp allows no CR/LF

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            self._dirty = True
            return
        if self.head_done:
            # A trailer field (after a chunked body): never merged into the header section
            # (RFC 9110 §6.5.1), so dropped.
            self._trailers = True
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            self._dirty = True
            self._close_transport()
            return
        status = self._parser.get_status_code()
        if status == 101 and self._upgrade_asked:
            # Switching protocols: the head is final, and llhttp stops parsing after it.
            self.status = status
            self.upgraded = self.head_done = True
            self._wake()
            return
        if 100 <= status < 200:
            # Interim response (100 Continue, 103 Early Hints): skip it, keep reading (its size
            # counts: an upstream cannot send them for ever).
            self._interim_size += self._head_size()
            self.headers = []
            self.reason = b""
            return
        if not self._framing_supported():
            self._stop(UpstreamProtocolError("upstream used a transfer coding other than chunked"))
        reason = self.reason
        if not 100 <= status <= 599 or (not reason.isalnum() and _CONTROL_BYTE(reason)):
            # RFC 9110 §15: no client knows what to do with a status 099 or 600, nor with
            # control bytes in the status line.
            self._stop(UpstreamProtocolError(f"upstream sent an invalid status line ({status})"))
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        self.head_done = True
        if self._head_request:
            # llhttp cannot be told the request was HEAD, so it would wait for the body the
            # headers describe; the next exchange gets a fresh parser that knows nothing of it.
            self._parser = httptools.HttpResponseParser(self)
            self._finish()
        else:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self._dirty = True  # a body after a HEAD response: the framing is lost
            return
        self._queue(body)

    def _queue(self, body: bytes) -> None:
        queue = self._body
        queue.append(body)
        if len(queue) > _MAX_PIECES:
            # A stream of 1-byte chunks would otherwise queue 256k objects before reading
            # pauses: hold them as one.
            merged = b"".join(queue)
            queue.clear()
            queue.append(merged)
        self._body_size += len(body)
        if self._body_size > _HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def _framing_supported(self) -> bool:
        # RFC 9112 §6.3: with any coding but a lone "chunked" the body would run to the close
        # and need decoding we would have to drop (Transfer-Encoding is hop-by-hop): refuse.
        for name, value in self.headers:
            if name.lower() == b"transfer-encoding" and value.strip().lower() != b"chunked":
                return False
        return True

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_message_complete(self) -> None:
        if self.head_done and not self.complete and not self.upgraded:
            if self._trailers:
                # A `Connection: close` trailer (RFC 9110 §6.5.1 forbids it, llhttp reads it)
                # means llhttp takes no further byte: the connection cannot be reused.
                self.keep_alive = self.keep_alive and self._parser.should_keep_alive()
            self._finish()

    # -- used by the proxy -------------------------------------------------------------------
    def start_request(
        self, data: bytes, *, head_request: bool, upgrade: bool = False, body_follows: bool = False
    ) -> None:
        """Send the request head (and a small body with it) in one write. With `upgrade`, a
        101 answer switches the connection to raw bytes (`upgraded`). With `body_follows`, the
        caller writes the body next and calls `request_sent` once it has written all of it."""
        self._reset_exchange()
        self._head_request = head_request
        self._upgrade_asked = upgrade
        self._request_whole = not body_follows
        self.requests_sent += 1
        self.write(data)

    def write(self, data: bytes) -> None:
        if self._error is not None:  # the exchange failed (and the connection is closing)
            raise self._error
        if self.closed or self.transport is None or self.transport.is_closing():
            raise UpstreamProtocolError("upstream closed the connection", before_response=True)
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait until the kernel takes our buffered writes: a 504 once the upstream has taken
        none of them for `timeout` (nginx's proxy_send_timeout, between two writes the upstream
        takes, not for all that is buffered: an upstream reading slowly has not stopped)."""
        if not self._write_paused:
            return
        if self.closed:
            raise UpstreamProtocolError("upstream closed the connection")
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        watch = StallWatch(
            self.transport, timeout, lambda: _expire(waiter, "upstream stopped reading")
        )
        try:
            await waiter
        finally:
            watch.cancel()

    async def read_head(self, timeout: float) -> None:
        """Wait for the status line and headers (or the error that replaced them).
        Callers skip the call when `head_done` is already true: a coroutine saved."""
        while not self.head_done:
            await self._wait(timeout)

    async def read_to_end(self, timeout: float) -> None:
        """Wait for the rest of a small body; read_timeout applies between pieces."""
        while not self.complete:
            await self._wait(timeout)

    def take_body(self) -> bytes:
        """The whole buffered body; only once `complete` is true."""
        body = b"".join(self._body)
        self._body.clear()
        self._body_size = 0
        self._resume_reading()
        return body

    async def read_chunk(self, timeout: float) -> bytes:
        """The body that has arrived since the last call (every piece queued, joined: one
        write for the client however small the upstream's chunks), b"" at its end;
        read_timeout applies between reads."""
        body = self._body
        while not body:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            await self._wait(timeout)
        if len(body) == 1:
            chunk = body.popleft()
        else:
            chunk = b"".join(body)
            body.clear()
        self._body_size -= len(chunk)
        if self._reading_paused and self._body_size < _LOW_WATER:
            self._resume_reading()
        return chunk

    def _resume_reading(self) -> None:
        # A connection must never go back to the pool with its socket paused: the next
        # exchange would wait for a response that cannot be read.
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def request_sent(self) -> None:
        """The streamed body was written whole (see start_request)."""
        self._request_whole = True

    @property
    def request_whole(self) -> bool:
        return self._request_whole

    @property
    def reusable(self) -> bool:
        # A response can be complete while its request is not (an upstream that answered an
        # upload early, a client that left mid-body): the upstream would read the next
        # request on this connection as the rest of that body, unrouted and unauthenticated.
        return (
            self.complete
            and self._request_whole
            and self.keep_alive
            and not self._dirty
            and not self.closed
            and not self.upgraded
        )

    def close(self) -> None:
        self._close_transport()

    def abort(self) -> None:
        """Close at once, dropping unsent bytes (a close would wait for a peer that no longer
        reads)."""
        if self.transport is not None:
            self.transport.abort()

    # -- internals ---------------------------------------------------------------------------
    def _head_size(self) -> int:
        return self._interim_size + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _reads_until_eof(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    async def _wait(self, timeout: float) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(timeout, _expire, waiter, "upstream read timed out")
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _completed(self) -> bool:
        # For a check after feed_data, whose callbacks may have completed the exchange: mypy
        # keeps `self.complete` narrowed to its value before the call.
        return self.complete

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:  # the first cause stays: our own close must not replace it
            self._error = error
        self._dirty = True
        self._close_transport()
        self._wake()
        # An upload waiting for its writes to drain ends too, with the cause: the close above
        # waits for an upstream that may never read (nginx handles an upstream's answer while
        # the body is still being sent: an invalid one is a 502 at once).
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_exception(self._error)

    def _stop(self, error: UpstreamError) -> NoReturn:
        """_fail from inside an llhttp callback, and stop llhttp: no later callback of the same
        read may complete the failed exchange (feed_data raises, data_received returns)."""
        self._fail(error)
        raise _Stopped

    def _close_transport(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def _expire(waiter: asyncio.Future[None], message: str) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout(message))


# Kong's upstream_keepalive_idle_timeout: an idle pooled connection is closed after it.
IDLE_TIMEOUT: Final = 60.0


class ConnectionBudget:
    """The upstream connections of all the pools of one forwarder, idle ones included: at most
    `limit` at once, the number of client connections the worker takes (connection_cap: two
    descriptors per client connection, its own and its upstream's). As nginx counts upstream
    connections against worker_connections, past the limit the oldest idle connection of any
    pool is closed to make room for a new one; otherwise idle connections kept for one service
    after another would use up the descriptors the cap keeps for accepting clients."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0  # connecting or connected, over every pool
        self.pools: list[UpstreamPool] = []

    def make_room(self) -> None:
        if self.open < self.limit:
            return
        oldest: UpstreamPool | None = None
        for pool in self.pools:
            idle = pool._idle
            if idle and (oldest is None or idle[0].idle_since < oldest._idle[0].idle_since):
                oldest = pool
        if oldest is not None:
            oldest._idle.pop(0).close()


class UpstreamPool:
    """Keep-alive connections to one `host:port`, at most `max_connections` at once.

    Idle connections are reused newest first (the ones least likely to have been closed by
    the upstream's keep-alive timer), and closed after `idle_timeout` unused; when all are
    busy, callers queue in FIFO order.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_connections: int,
        max_idle: int,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        # The TLS name (SNI, and what the certificate must name): `host` unless told otherwise.
        self.server_name = (server_name or host).strip("[]")
        self.loop = loop or asyncio.get_running_loop()
        self.max_connections = max_connections
        self.max_idle = max_idle
        self._idle: list[UpstreamConnection] = []  # oldest first
        self.idle_timeout = idle_timeout
        self._sweep: asyncio.TimerHandle | None = None  # closes those idle too long
        self._busy: set[UpstreamConnection] = set()
        self._detached: set[UpstreamConnection] = set()  # tunnels: closed with the pool
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[UpstreamConnection | None]] = (
            collections.deque()
        )
        self._closed = False
        self._budget = budget
        if budget is not None:
            budget.pools.append(self)

    @property
    def size(self) -> int:
        return len(self._idle) + len(self._busy) + self._opening

    def take_idle(self) -> UpstreamConnection | None:
        """An idle keep-alive connection, if there is one (the synchronous fast path)."""
        while self._idle:
            conn = self._idle.pop()
            # A close begun (the upstream's EOF or stray bytes were read) reaches connection_lost
            # only on the loop's next turn: a request sent on it would fail unanswered.
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                self._busy.add(conn)
                return conn
        return None

    async def acquire(self, connect_timeout: float, *, fresh: bool = False) -> UpstreamConnection:
        """A connection ready for one exchange: idle, newly opened, or handed over by release."""
        if not fresh and (conn := self.take_idle()) is not None:
            return conn
        if fresh and self._idle and self.size >= self.max_connections:
            # Idle connections count against the cap, and nothing would free their slots:
            # the oldest (the least likely to be reused) makes room for the new one.
            self._idle.pop(0).close()
        if self.size < self.max_connections:
            return await self._open(connect_timeout)
        waiter: asyncio.Future[UpstreamConnection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        timer = self.loop.call_later(connect_timeout, _no_slot, waiter)
        try:
            handed = await waiter
        except asyncio.CancelledError:
            # Cancelled after release() handed us a connection: pass it on, don't leak it.
            handed_late = waiter.done() and not waiter.cancelled() and waiter.exception() is None
            if handed_late:
                late = waiter.result()
                if late is not None:
                    self.release(late)
                else:
                    self._opening -= 1  # the slot reserved for us goes to the next
                    self._hand_free_slot()
            raise
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        if handed is None:  # a free slot, reserved for us (counted as opening)
            return await self._open(connect_timeout, reserved=True)
        if not handed.closed and not fresh:
            return handed  # release() already counted it as busy
        self._busy.discard(handed)
        handed.close()
        return await self._open(connect_timeout)

    def release(self, conn: UpstreamConnection) -> None:
        """Give a connection back after an exchange; it is closed unless safe to reuse."""
        reusable = conn.reusable
        if not reusable:
            if conn.request_whole:
                conn.close()
            else:  # the rest of a body cut short is of use to nobody: drop it unsent
                conn.abort()
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            # A reusable connection goes straight to the next caller; otherwise its slot
            # does (None: the caller opens a new connection in its place).
            if reusable:
                waiter.set_result(conn)
            else:
                self._busy.discard(conn)
                self._opening += 1  # reserved: no caller that runs first may take it
                waiter.set_result(None)
            return
        self._busy.discard(conn)
        if reusable and not self._closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
            conn.idle_since = self.loop.time()
            if self._sweep is None:
                self._sweep = self.loop.call_later(self.idle_timeout, self._close_stale)
        elif reusable:
            conn.close()

    def _close_stale(self) -> None:
        """Close the connections idle for `idle_timeout` (the oldest are first), and come back
        when the next one will be. One timer per pool, not one per connection."""
        self._sweep = None
        idle = self._idle
        deadline = self.loop.time() - self.idle_timeout
        while idle and idle[0].idle_since <= deadline:
            idle.pop(0).close()
        if idle:
            wait = idle[0].idle_since - deadline
            self._sweep = self.loop.call_later(wait, self._close_stale)

    def forget(self, conn: UpstreamConnection) -> None:
        """Called by a connection when its socket closes."""
        if self._budget is not None:
            self._budget.open -= 1
        self._detached.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
            self._hand_free_slot()

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for conn in [*self._idle, *self._busy, *self._detached]:
            conn.close()
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolExhausted("gateway is shutting down"))

    def detach(self, conn: UpstreamConnection) -> None:
        """Take a busy connection out of the pool's count: it switched protocols (a WebSocket
        tunnel that may last hours). Its slot goes to the next waiter; the pool still closes
        it when the pool closes (nginx does not count upgraded connections against its
        upstream keepalive either)."""
        self._busy.discard(conn)
        self._detached.add(conn)
        self._hand_free_slot()

    async def _open(self, connect_timeout: float, *, reserved: bool = False) -> UpstreamConnection:
        if not reserved:  # else the slot was counted when it was handed over
            self._opening += 1
        budget = self._budget
        if budget is not None:
            budget.make_room()
            budget.open += 1  # until the connection is lost (forget)
        try:
            conn = await self._connect(connect_timeout)
        except BaseException:
            if budget is not None:
                budget.open -= 1
            self._opening -= 1
            self._hand_free_slot()
            raise
        self._opening -= 1
        self._busy.add(conn)
        return conn

    async def _connect(self, connect_timeout: float) -> UpstreamConnection:
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self),
                    self.host.strip("[]"),  # an IPv6 literal is kept in brackets for Host
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.server_name if self.ssl_context else None,
                )
        except TimeoutError:
            raise UpstreamConnectTimeout(
                f"connecting to {self.host}:{self.port} timed out"
            ) from None
        except socket.gaierror as exc:
            raise resolution_error(self.host, exc) from None
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise UpstreamConnectError(
                f"cannot connect to {self.host}:{self.port}: {reason}"
            ) from None
        return conn

    def _hand_free_slot(self) -> None:
        """A slot freed without a connection to hand over (a failed open, a cancelled waiter):
        the next waiter opens its own, so no waiter sits queued below the cap."""
        while self._waiters and self.size < self.max_connections:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._opening += 1  # reserved for that waiter, as in release()
                waiter.set_result(None)
                return


def resolution_error(host: str, exc: socket.gaierror) -> UpstreamConnectError:
    """NameNotResolved when the resolver said the name has no address; when the resolver
    itself failed (down, timing out), a connect error that says nothing of the name."""
    reason = f"cannot resolve {host}: {exc.strerror or exc}"
    if exc.errno in _NAME_NOT_FOUND:
        return UpstreamNameNotResolved(reason)
    return UpstreamConnectError(reason)


def _no_slot(waiter: asyncio.Future[UpstreamConnection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolExhausted("no upstream connection became free in time"))
