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
from tokengate.identity.issuer_api import ISSUER_API, token_shortcut

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
        return server
