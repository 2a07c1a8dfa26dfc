"""The benchmark upstream: a fixed 100-byte JSON body on every path, keep-alive.

nginx serves it when installed (see `bench.systems.NginxUpstream`); this aiohttp server is the
fallback when nginx is missing, so `make bench` still runs anywhere:

    python -m bench.upstream --listen 127.0.0.1:8081

It answers every request (any method, any path) with `BODY` and status 200. It uses aiohttp's
low-level `web.Server` (no router, no middlewares) on uvloop, which is about the fastest an
aiohttp process answers, so the upstream stays the cheapest hop in the chain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from aiohttp import web

_PREFIX = b'{"ok":true,"service":"bench-upstream","padding":"'
_SUFFIX = b'"}'
BODY_SIZE = 100
# Exactly BODY_SIZE bytes of JSON; no "$" or "'" so nginx's `return 200 '...'` can embed it.
BODY = _PREFIX + b"x" * (BODY_SIZE - len(_PREFIX) - len(_SUFFIX)) + _SUFFIX
assert len(BODY) == BODY_SIZE


def parse_listen(value: str) -> tuple[str, int]:
    """`"127.0.0.1:8080"` → `("127.0.0.1", 8080)`."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


async def _handle(request: web.BaseRequest) -> web.Response:
    if request.body_exists:
        await request.read()
    return web.Response(body=BODY, content_type="application/json")


async def serve(host: str, port: int) -> None:
    """Serve `BODY` on host:port until SIGTERM/SIGINT."""
    server = web.Server(_handle, access_log=None)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        listener.close()
        await listener.wait_closed()
        await server.shutdown(timeout=1.0)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop (asyncio's own where uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8081))
    args = parser.parse_args(argv)
    host, port = args.listen
    with (
        asyncio.Runner(loop_factory=new_event_loop) as runner,
        contextlib.suppress(KeyboardInterrupt),
    ):
        runner.run(serve(host, port))


if __name__ == "__main__":
    main()
