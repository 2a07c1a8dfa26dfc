"""The peer to beat: the reverse proxy a typical aiohttp user writes in an afternoon.

    python -m bench.peers.naive_proxy --listen 127.0.0.1:8000 --upstream http://127.0.0.1:8081

One `web.Application` with a catch-all route, ONE `ClientSession` for the app's lifetime
(created in a `cleanup_ctx`, so connections to the upstream are kept alive and reused), uvloop.
Each request forwards method, path, query string, headers (minus hop-by-hop ones and Host) and
body, and the answer is a `StreamResponse` that streams the upstream body back chunk by chunk.
Nothing here is deliberately slow: this is the honest baseline the gateway is compared with.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from bench.upstream import new_event_loop, parse_listen

# RFC 9110 §7.6.1 connection-specific headers, plus Host (the client sets its own).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_SESSION = web.AppKey("session", aiohttp.ClientSession)
_UPSTREAM = web.AppKey("upstream", str)
CHUNK_SIZE = 64 * 1024


def _request_headers(request: web.Request) -> dict[str, str]:
    return {
        name: value
        for name, value in request.headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() != "host"
    }


def _response_headers(upstream: aiohttp.ClientResponse) -> dict[str, str]:
    return {
        name: value for name, value in upstream.headers.items() if name.lower() not in HOP_BY_HOP
    }


async def proxy(request: web.Request) -> web.StreamResponse:
    session = request.app[_SESSION]
    url = request.app[_UPSTREAM] + request.rel_url.raw_path_qs
    body = await request.read() if request.body_exists else None
    async with session.request(
        request.method,
        url,
        headers=_request_headers(request),
        data=body,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(status=upstream.status, headers=_response_headers(upstream))
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(CHUNK_SIZE):
            await response.write(chunk)
        await response.write_eof()
        return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(upstream: str, handler: Handler = proxy) -> web.Application:
    """The app with its ClientSession; `handler` (default `proxy`) answers every path."""
    app = web.Application()
    app[_UPSTREAM] = upstream.rstrip("/")

    async def client_session(app: web.Application) -> AsyncIterator[None]:
        # auto_decompress=False: the body is relayed as-is, Content-Encoding included.
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            app[_SESSION] = session
            yield

    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8000))
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8081")
    args = parser.parse_args(argv)
    host, port = args.listen
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            make_app(args.upstream),
            host=host,
            port=port,
            access_log=None,
            print=None,
            loop=new_event_loop(),
        )


if __name__ == "__main__":
    main()
