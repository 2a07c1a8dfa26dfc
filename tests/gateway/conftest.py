"""Fixtures: gateways on port 0 in front of in-process upstreams, and raw-socket helpers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from ssl import SSLContext
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from tests.gateway.issuer import TestIssuer, test_issuer  # noqa: F401
from tokengate.gateway import headers as headers_module
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.config import GatewayConfig, Route, Service
from tokengate.gateway.keys import KeyPolicy
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.settings import GatewaySettings


def make_service(port: int, *, host: str = "127.0.0.1", **fields: Any) -> Service:
    values: dict[str, Any] = {
        "name": f"svc-{port}",
        "protocol": "http",
        "host": host,
        "port": port,
        "path": None,
        "connect_timeout": 5.0,
        "read_timeout": 5.0,
        "write_timeout": 5.0,
        "retries": 5,
    }
    values.update(fields)
    return Service(**values)


def make_route(service: Service | None, paths: tuple[str, ...] = ("/",), **fields: Any) -> Route:
    values: dict[str, Any] = {
        "name": None,
        "service": service,
        "paths": paths,
        "methods": (),
        "hosts": (),
        "headers": {},
    }
    values.update(fields)
    return Route(**values)


@pytest.fixture(autouse=True)
def _fresh_header_fates() -> None:
    """Each test judges header names afresh: a name remembered from an earlier test must not
    stand in for the rules under test."""
    headers_module._FATES.clear()


StartGateway = Callable[..., Awaitable[GatewayServer]]


@pytest.fixture
async def start_gateway() -> AsyncIterator[StartGateway]:
    servers: list[GatewayServer] = []

    async def start(
        *routes: Route,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        **settings: Any,
    ) -> GatewayServer:
        services = tuple(dict.fromkeys(r.service for r in routes if r.service is not None))
        config = GatewayConfig(services=services, routes=routes)
        server = GatewayServer(
            config,
            GatewaySettings(listen=("127.0.0.1", 0), status_listen=("127.0.0.1", 0), **settings),
            registry=registry,
            clock=clock,
        )
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@contextlib.asynccontextmanager
async def serving(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    *,
    ssl: SSLContext | None = None,
    host: str = "127.0.0.1",
) -> AsyncIterator[TestServer]:
    """An aiohttp upstream on port 0 of `host` that answers every method and path with
    `handler` (over TLS with `ssl`)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host=host)
    await server.start_server(ssl=ssl)
    try:
        yield server
    finally:
        await server.close()


async def raw_request(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send bytes as they are, read until the server closes (or `timeout`)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


class RawUpstream:
    """A TCP server that answers each connection with a script: for responses that aiohttp's
    own server would never produce (close-delimited bodies, garbage, early closes)."""

    def __init__(
        self, respond: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ):
        self._respond = respond
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._respond(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        return head


# -- a gateway protecting an echo upstream with openid-connect -----------------------------------

FAST_KEYS = KeyPolicy(min_refresh=0.2, max_refresh=0.5, max_stale=60, retry_backoff=0.1)


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "path_qs": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("latin-1"),
        }
    )


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    async with serving(echo) as server:
        yield server


Protect = Callable[..., Awaitable[GatewayServer]]


@pytest.fixture
def protect(
    upstream: TestServer,
    start_gateway: StartGateway,
    test_issuer: TestIssuer,  # noqa: F811 (the fixture imported above)
) -> Protect:
    """A gateway whose route "/" requires a token from `test_issuer` (plugin fields as kwargs;
    `clock`: the wall clock it judges tokens by)."""

    async def start(
        *,
        issuer: TestIssuer | None = None,
        settings: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        **fields: Any,
    ) -> GatewayServer:
        oidc = OidcConfig.for_issuer((issuer or test_issuer).issuer, **fields)
        route = make_route(make_service(upstream.port), oidc=oidc)
        return await start_gateway(
            route, clock=clock, **({"key_policy": FAST_KEYS} | (settings or {}))
        )

    return start
