"""Helpers for the reload and drain tests: a keep-alive upstream that records its connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.gateway.conftest import RawUpstream, make_route
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.config import GatewayConfig, Route, Service

# A kong.yaml with two errors (an ftp:// service, an unknown route field): reload keeps the old.
BAD_KONG_YAML = """\
_format_version: "3.0"
services:
  - name: up
    url: ftp://127.0.0.1:9
    routes:
      - name: r
        pathz: ["/x"]
"""


def route(service: Service, path: str, **fields: Any) -> Route:
    # strip_path off: the upstream answers with the path it got, the route's own.
    return make_route(service, (path,), strip_path=False, **fields)


def config_of(*routes: Route) -> GatewayConfig:
    services = tuple(dict.fromkeys(r.service for r in routes if r.service is not None))
    return GatewayConfig(services=services, routes=routes)


class KeepAliveUpstream(RawUpstream):
    """Answers every request on a connection (keep-alive) with its path; `/slow` after
    `slow_for` seconds. Records, per connection, the paths it served and whether it closed."""

    def __init__(self, slow_for: float = 0.5) -> None:
        super().__init__(self._serve)
        self.slow_for = slow_for
        self.served: list[list[str]] = []  # one list per connection, in accept order
        self.closed: set[int] = set()  # indexes into `served`
        self.slow_started = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(self.served)
        self.served.append([])
        try:
            while True:
                try:
                    head = await self.read_head(reader)
                except asyncio.IncompleteReadError:
                    return  # the gateway closed the connection
                path = head.split(b" ", 2)[1].decode()
                self.served[index].append(path)
                if path.startswith("/slow"):
                    self.slow_started.set()
                    try:  # the wait ends early if the gateway hangs up
                        if await asyncio.wait_for(reader.read(1), self.slow_for) == b"":
                            return
                    except TimeoutError:
                        pass
                body = path.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
                await writer.drain()
        finally:
            self.closed.add(index)


async def get(session: aiohttp.ClientSession, gw: GatewayServer, path: str) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{gw.proxy_port}{path}") as resp:
        return resp.status, await resp.text()


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)
