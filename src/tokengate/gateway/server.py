"""aiohttp's low-level server with two additions: a deadline for a request head, and Kong's 400
(not a logged traceback) for a request aiohttp cannot parse, reported to `on_malformed` (which
counts and logs it as nginx logs the 400s it answers itself).

    server = HeadTimeoutServer(handler, head_timeout=10.0, on_malformed=gateway.account_malformed,
                               keepalive_timeout=60.0)

aiohttp closes a connection that sends nothing for `keepalive_timeout`, but a client that has
started a request head and then trickles it (slowloris) is only bound by that same, long timer.
Kong/nginx have `client_header_timeout` for this; here a per-connection timer starts when the
first bytes of a head arrive and is cancelled when the head is complete. It reads two attributes
of aiohttp's RequestHandler (`_messages`, `_request_in_progress`); tests/gateway/test_proxy.py
(`test_incomplete_request_head_is_cut_off`) fails if a new aiohttp changes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestHandler

from tokengate.gateway import responses

log = logging.getLogger("tokengate.server")

MalformedHook = Callable[[web.BaseRequest, web.StreamResponse], None]


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

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages or self._request_in_progress:
            self._cancel_head_timer()  # a whole head arrived (or a body is being read)
        elif self._head_timer is None:
            loop = asyncio.get_running_loop()
            self._head_timer = loop.call_later(self._head_timeout, self._head_timed_out)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

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
        response = responses.bad_request()
        response.force_close()
        if self._on_malformed is not None:
            self._on_malformed(request, response)
        return response

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


class HeadTimeoutServer(web.Server):
    def __init__(
        self,
        handler: Any,
        *,
        head_timeout: float,
        on_malformed: MalformedHook | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._head_timeout = head_timeout
        self._on_malformed = on_malformed

    def __call__(self) -> RequestHandler:
        return HeadTimeoutHandler(
            self,
            loop=self._loop,
            head_timeout=self._head_timeout,
            on_malformed=self._on_malformed,
            **self._kwargs,
        )
