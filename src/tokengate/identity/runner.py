"""The identity server's runner: aiohttp's AppRunner with the token endpoint's shortcut.

    runner = IdentityRunner(create_identity_app(store, ...), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 9000).start()

`POST /{issuer_id}/auth/oauth/token` is answered before the application's router (see
`issuer_api.token_shortcut`); everything else, and the app's startup and cleanup, stay aiohttp's.
"""

from __future__ import annotations

from aiohttp import web

from tokengate.identity.issuer_api import ISSUER_API, token_shortcut


class IdentityRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        api = self.app.get(ISSUER_API)
        # Middlewares would be skipped by the shortcut: with any, every request is routed.
        if api is not None and not self.app.middlewares:
            server.request_handler = token_shortcut(api, server.request_handler)
        return server
