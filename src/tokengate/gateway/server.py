"""aiohttp's low-level server with four additions: a deadline for a request head, a bound on
its size, Kong's 400 (not a logged traceback) for a request aiohttp cannot parse or whose head
is too large, reported to `on_malformed` (which counts and logs it as nginx logs the 400s it
answers itself), and a cap on client connections.

    server = HeadTimeoutServer(handler, head_timeout=10.0, on_malformed=gateway.account_malformed,
                               keepalive_timeout=60.0)

aiohttp closes a connection that sends nothing for `keepalive_timeout`, but a client that has
started a request head and then trickles it (slowloris) is only bound by that same, long timer.
Kong/nginx have `client_header_timeout` for this; here a per-connection timer starts when the
first bytes of a head arrive and is cancelled when the head is complete. It reads attributes
of aiohttp's RequestHandler (`_messages`, `_request_in_progress`, `_upgraded`, `_waiter`) and
queues its `_ErrInfo`; tests/gateway/test_proxy.py (`test_incomplete_request_head_is_cut_off`)
and tests/gateway/test_abuse.py fail if a new aiohttp changes them.

A chunked body whose framing breaks while its request is being handled (a malformed chunk-size
line) is given to that request's body as its error (`_fail_body`): aiohttp would queue a 400 for
after the request, whose handler would wait for body bytes that can never come. Once answered,
`body_error_answered` clears that error from the body (StreamReader's `_exception`) for
aiohttp's lingering close; tests/gateway/test_proxy_edges.py
(`test_a_malformed_chunk_in_a_streamed_upload_is_a_400_at_once`) fails if that changes.

aiohttp bounds a header line (8 KiB) and the number of headers (128), not their sum: a head of
1 MB passes, and a thousand clients each holding one unfinished cost a GB. nginx answers a head
past its four 8k buffers with 400 "Request Header Or Cookie Too Large", Envoy one past 60 KiB
with 431. Here a head past MAX_REQUEST_HEAD (64 KiB: the request line and header lines) gets
Kong's 400 with that message, and the connection is closed: counted while it arrives, and, for
the rare read that brings more than the bound at once, measured on the parsed head.

Every connection costs a file descriptor (two, with its upstream's): past the process's limit
accept() fails, and so does every upstream connect and JWKS fetch, with nothing said. As nginx
does at worker_connections, past `max_connections` an idle keep-alive connection is closed to
make room (else the new one is), with a warning at most every few seconds. `connection_cap`
picks the cap from the open-file limit (Kong: worker_connections = ulimit, at most 16384).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from tokengate.gateway import responses

log = logging.getLogger("tokengate.server")

MalformedHook = Callable[[web.BaseRequest, web.StreamResponse], None]
MAX_REQUEST_HEAD: Final = 64 * 1024
# nginx's 8k buffers: a longer request target is a 414, a longer header line a 400 "Request
# header or cookie too large". The two bounds differ by a byte so that aiohttp's LineTooLong,
# which names its bound, tells which line it was.
MAX_REQUEST_LINE: Final = 8191
MAX_HEADER_LINE: Final = 8190


class RequestHeadTooLarge(BadHttpMessage):
    """A request line and headers longer than MAX_REQUEST_HEAD."""


class HeadTimeoutHandler(RequestHandler):
    def __init__(
        self,
        manager: web.Server,
        *,
        head_timeout: float,
        on_malformed: MalformedHook | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._on_malformed = on_malformed
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # of the head being received, so far
        self._payload: StreamReader | None = None  # the body of the last request parsed
        self._refused = False  # a head over the bound was queued: read nothing more
        self._head_waiter: asyncio.Future[None] | None = None  # head_complete()'s

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        queued = len(self._messages)
        # Bytes that arrive while the last request's body is still coming are its body; after
        # an upgrade, the new protocol's.
        payload = self._payload  # (a request without a body has EMPTY_PAYLOAD: no call then)
        in_body = self._upgraded or (
            payload is not None and payload is not EMPTY_PAYLOAD and not payload.is_eof()
        )
        if self._close and in_body and self._request_in_progress:
            self._body_while_draining(data)
            return
        super().data_received(data)
        if (
            len(self._messages) > queued
            and isinstance(self._messages[-1][0], _ErrInfo)
            and in_body
            and payload is not None
            and not payload.is_eof()  # (else the error is the next request's, and its 400)
        ):
            self._fail_body(payload)
            return
        if len(self._messages) > queued:  # heads completed in this read
            # Only a read that, with what came before it, passes the bound can hold a head
            # over it (the usual request costs this one comparison).
            # (b"" is aiohttp re-parsing bytes it held back: they were never counted)
            if not data or self._head_bytes + len(data) > MAX_REQUEST_HEAD:
                self._refuse_large_heads(queued)
            self._head_bytes = 0
            self._payload = self._messages[-1][1]
            if self._head_waiter is not None:  # a drain waits for this head (rarely)
                self._head_ended()
        elif not in_body:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_REQUEST_HEAD:
                self._refuse_head()
        if self._messages or self._request_in_progress:
            self._cancel_head_timer()  # a whole head arrived (or a body is being read)
        elif self._head_timer is None:
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(self._head_timeout, self._head_timed_out)

    def _body_while_draining(self, data: bytes) -> None:
        """The server is draining (`close()`: no further request on this connection), and
        aiohttp reads nothing more from a closing connection (aiohttp#2298), yet the request in
        progress still needs the rest of its body to finish within the grace period: its bytes
        go to its parser here, as nginx keeps reading a request body during a graceful
        shutdown. A next request's head behind it is dropped unanswered (the connection closes
        after this answer)."""
        parser = self._parser
        payload = self._payload
        if self._upgraded or parser is None or payload is None:
            return  # (a WebSocket tunnel is ended by the drain itself)
        try:
            parser.feed_data(data)
        except HttpProcessingError as exc:
            payload.set_exception(web.RequestPayloadError(exc.message))
            self._refused = True

    def _fail_body(self, payload: StreamReader) -> None:
        """The body being read broke its framing (a malformed chunk): aiohttp queued a 400 for
        after the request, whose handler would wait for body bytes that can never come. The
        error goes to that handler's body instead (it answers 400, as nginx's "client sent
        invalid chunked body" does, and closes), and nothing more is read."""
        error = self._messages.pop()[0]
        assert isinstance(error, _ErrInfo)
        payload.set_exception(web.RequestPayloadError(error.message))
        self._refused = True

    def _refuse_large_heads(self, queued: int) -> None:
        """Of the messages this read added, the first whose head is over the bound becomes the
        refusal, and those after it go (the connection closes after it)."""
        messages = self._messages
        for index in range(queued, len(messages)):
            message = messages[index][0]
            if isinstance(message, RawRequestMessage) and _head_size(message) > MAX_REQUEST_HEAD:
                while len(messages) > index:
                    messages.pop()
                self._refuse_head()
                return

    def _refuse_head(self) -> None:
        """Queue Kong's 400 for a head over the bound, as aiohttp queues a parse error, and
        read nothing more from this connection."""
        error = RequestHeadTooLarge(f"request head longer than {MAX_REQUEST_HEAD} bytes")
        self._messages.append(
            (_ErrInfo(status=400, exc=error, message=error.message), EMPTY_PAYLOAD)
        )
        # Requests queued before it are still answered; the 400's force_close ends the connection.
        self._refused = True
        if self.transport is not None:
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        # After a declined upgrade aiohttp parses what it held back here, not in data_received.
        queued = len(self._messages)
        result = await super().finish_response(request, resp, start_time)
        if len(self._messages) > queued and not self._refused:
            self._refuse_large_heads(queued)
            self._payload = self._messages[-1][1]
        return result

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._head_ended()
        super().connection_lost(exc)

    @property
    def head_arriving(self) -> bool:
        """A request head has begun to arrive and is not complete yet: for nginx no longer an
        idle connection, whose request a graceful shutdown still serves."""
        return bool(self._head_bytes) and not (
            self._messages or self._request_in_progress or self._upgraded or self._refused
        )

    async def head_complete(self) -> None:
        """Return once the head that has begun to arrive is complete, or the connection is
        gone (the head deadline closes a client that stalls)."""
        if self.head_arriving and self.transport is not None:
            if self._head_waiter is None:
                self._head_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._head_waiter)

    def _head_ended(self) -> None:
        waiter, self._head_waiter = self._head_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def idle(self) -> bool:
        """Between requests: nothing queued, in progress, or arriving (a keep-alive wait)."""
        return not (
            self._messages or self._request_in_progress or self._head_bytes or self._upgraded
        )

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._messages and not self._request_in_progress:
            self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse (a bad request line, a header line over 8 KiB, ...)
        is the client's mistake: Kong's 400, and a debug line rather than aiohttp's traceback at
        ERROR, which any client could otherwise repeat into a flood of log lines."""
        if not isinstance(exc, BadHttpMessage) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        log.debug("malformed request from %s: %s", request.remote, type(exc).__name__)
        if isinstance(exc, LineTooLong) and exc.args[1:2] == (MAX_REQUEST_LINE,):
            response = responses.closing_error(414, "URI too long")
        elif isinstance(exc, RequestHeadTooLarge | LineTooLong):
            response = responses.closing_error(400, "Request header or cookie too large")
        else:
            response = responses.closing_error(400, "Bad request")
        if self._on_malformed is not None:
            self._on_malformed(request, response)
        return response

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


def _head_size(message: RawRequestMessage) -> int:
    """The request line and header lines of a parsed head, as sent (near enough: the method
    and version are counted short)."""
    return (
        len(message.path)
        + 16
        + sum(len(name) + len(value) + 4 for name, value in message.raw_headers)
    )


def connection_cap(configured: int | None = None) -> int:
    """The client connections a worker takes: `configured`, else from the open-file limit
    (raised to its hard limit first, as nginx's worker_rlimit_nofile and Go do): two
    descriptors each (the client's, its upstream's), 128 kept for listeners, the status port's
    connections (STATUS_CONNECTIONS), logs and JWKS; at most Kong's 16384."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # a limit we may not raise: live within the soft one
    if configured is not None:
        return configured
    if soft == resource.RLIM_INFINITY:
        return _KONG_WORKER_CONNECTIONS
    return max(16, min(_KONG_WORKER_CONNECTIONS, (soft - _RESERVED_FILES) // 2))


def warn_if_past_open_files(cap: int) -> None:
    """Say so when `cap` client connections need more descriptors than the open-file limit
    allows (an explicit --max-connections; the default fits unless the limit is under 160), as
    nginx warns "N worker_connections exceed open file resource limit": past the limit the
    event loop accepts and at once closes every new connection, and upstream connects and key
    fetches fail, with nothing logged."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * cap + _RESERVED_FILES
    if soft != resource.RLIM_INFINITY and needed > soft:
        log.warning(
            "--max-connections %d needs about %d open files, more than this process's limit of "
            "%d: raise the limit (ulimit -n) or lower --max-connections",
            cap,
            needed,
            soft,
        )


_KONG_WORKER_CONNECTIONS: Final = 16384
_RESERVED_FILES: Final = 128  # listeners, the status port's connections, logs, key fetches
STATUS_CONNECTIONS: Final = 64  # probes and scrapes: a few at a time
_CAP_WARNING_EVERY: Final = 10.0  # seconds


def body_error_answered(request: web.BaseRequest) -> None:
    """The handler answered a body whose framing broke (`_fail_body`) and closes: aiohttp's
    lingering close reads that body next, and must wait there for the client to close rather
    than raise the error again (a logged traceback, and a close that a client still sending
    sees as a reset, which can destroy the 400 before it is read)."""
    request.content._exception = None  # where aiohttp's StreamReader keeps a body's error


class HeadTimeoutServer(web.Server):
    def __init__(
        self,
        handler: Any,
        *,
        head_timeout: float,
        on_malformed: MalformedHook | None = None,
        max_connections: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._head_timeout = head_timeout
        self._on_malformed = on_malformed
        self._max_connections = max_connections
        # Open connections (aiohttp's own table keeps a closed one until its task ends).
        self._live = 0
        self._cap_warned = -_CAP_WARNING_EVERY
        self._cap_hits = {"idle closed": 0, "refused": 0}
        self._none_idle_until = 0.0  # after a scan found no idle connection, skip scans briefly

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._live += 1
        cap = self._max_connections
        if cap is not None and self._live > cap:
            self._make_room(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._live -= 1
        super().connection_lost(handler, exc)

    def _make_room(self, new: RequestHandler, transport: asyncio.Transport) -> None:
        """Close the oldest idle keep-alive connection for the new one, or else the new one."""
        now = time.monotonic()
        if now < self._none_idle_until:
            transport.close()
            self._note_cap("refused")
            return
        for handler, other in self._connections.items():
            if (
                handler is not new
                and not other.is_closing()
                and isinstance(handler, HeadTimeoutHandler)
                and handler.idle
            ):
                handler.force_close()
                self._note_cap("idle closed")
                return
        self._none_idle_until = now + 0.1
        transport.close()
        self._note_cap("refused")

    def _note_cap(self, what: str) -> None:
        self._cap_hits[what] += 1
        now = time.monotonic()
        if now - self._cap_warned >= _CAP_WARNING_EVERY:
            self._cap_warned = now
            counts = ", ".join(f"{n} {kind}" for kind, n in self._cap_hits.items() if n)
            log.warning(
                "%d client connections, the most this worker takes (--max-connections): %s",
                self._max_connections,
                counts,
            )
            self._cap_hits = dict.fromkeys(self._cap_hits, 0)

    def __call__(self) -> RequestHandler:
        return HeadTimeoutHandler(
            self,
            loop=self._loop,
            head_timeout=self._head_timeout,
            on_malformed=self._on_malformed,
            **{"max_line_size": MAX_REQUEST_LINE, "max_field_size": MAX_HEADER_LINE} | self._kwargs,
        )


class GuardedAppRunner(web.AppRunner):
    """An AppRunner on HeadTimeoutServer: an application (the status port's) with the same
    head deadline, head bound and connection cap as the proxy."""

    def __init__(
        self, app: web.Application, *, head_timeout: float, max_connections: int, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return HeadTimeoutServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            head_timeout=self._head_timeout,
            max_connections=self._max_connections,
            **made._kwargs,
        )
