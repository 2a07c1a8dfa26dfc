"""The identity server's runner: aiohttp's AppRunner with the token endpoint's shortcut.

    runner = IdentityRunner(create_identity_app(store, ...), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 9000).start()

`POST /{issuer_id}/auth/oauth/token` is answered before the application's router (see
`issuer_api.token_shortcut`); everything else, and the app's startup and cleanup, stay aiohttp's.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from tokengate.gateway.server import HeadTimeoutServer, connection_cap
from tokengate.identity.issuer_api import ISSUER_API, Handler, token_shortcut

# nginx's client_header_timeout: a client that trickles a request head is cut off.
HEAD_TIMEOUT: Final = 60.0


class IdentityRunner(web.AppRunner):
    def __init__(
        self, app: web.Application, *, max_connections: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._max_connections = max_connections  # None: from the open-file limit

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        # The gateway's server: a request aiohttp cannot parse is a 400 and one debug line, not
        # aiohttp's ERROR traceback, which quotes the offending header line (an admin token, a
        # client's Basic credentials) into the log.
        server = HeadTimeoutServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            loop=made._loop,
            head_timeout=HEAD_TIMEOUT,
            # As the gateway's: past the cap an idle connection makes room, else the new one
            # is closed, so a flood of idle connections cannot use up the descriptors.
            max_connections=connection_cap(self._max_connections),
            **made._kwargs,
        )
        api = self.app.get(ISSUER_API)
        # Middlewares would be skipped by the shortcut: with any, every request is routed.
        if api is not None and not self.app.middlewares:
            server.request_handler = token_shortcut(api, server.request_handler)
        server.request_handler = settling_broken_bodies(server.request_handler)
        return server


def settling_broken_bodies(handler: Handler) -> Handler:
    """A server handler that closes the connection after answering a request whose body broke
    (a malformed chunk, a "gzip" that is not) and was left unread: /userinfo and /authorize
    take no form, the router's 404 and 405 read none. The answer stands; what follows the body
    cannot be told from a next request, and aiohttp's lingering close must not read it (its
    error would be logged as an unhandled exception, a traceback per request)."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _settle(request, exc)
            raise
        _settle(request, response)
        return response

    return handle


def _settle(request: web.BaseRequest, response: web.StreamResponse) -> None:
    if isinstance(request.content.exception(), web.RequestPayloadError):
        response.force_close()  # (a no-op for an answer already sent, which closed already)
        request.content.feed_eof()  # nothing more arrives for it: the error stopped its parser
