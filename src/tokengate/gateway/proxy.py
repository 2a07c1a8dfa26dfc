"""The streaming forwarder: one matched request → the route's service → the client.

    forwarder = Forwarder(settings)
    response = await forwarder.forward(request, match, request_id=b"...")
    await forwarder.close()

Small bodies (up to `BUFFER_LIMIT`) travel in one write each way; larger or unsized ones are
streamed chunk by chunk with backpressure, so a 50 MB body is never held whole. Failures map to
Kong's answers: connect refused → 502, connect or read timeout → 504, pool exhausted → 503.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web

from tokengate.gateway import responses
from tokengate.gateway.config import Service
from tokengate.gateway.headers import build_request_head, response_headers
from tokengate.gateway.router import RouteMatch
from tokengate.gateway.settings import GatewaySettings
from tokengate.gateway.upstream import (
    PoolExhausted,
    UpstreamConnection,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamTimeout,
)

log = logging.getLogger("tokengate.proxy")

BUFFER_LIMIT: Final = 64 * 1024
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class BodyTooLarge(Exception):
    pass


class ClientBodyTimeout(Exception):
    pass


class Forwarder:
    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._pools: dict[tuple[str, int], UpstreamPool] = {}

    def _pool(self, service: Service) -> UpstreamPool:
        key = (service.host, service.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = UpstreamPool(
                service.host,
                service.port,
                max_connections=self._settings.upstream_max_connections,
                max_idle=self._settings.upstream_max_idle,
            )
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()

    async def forward(
        self, request: web.BaseRequest, match: RouteMatch, *, added: bytes, host: bytes
    ) -> web.StreamResponse:
        """Send the request upstream and relay the answer. `added` are the gateway's header
        lines (X-Forwarded-*, X-Request-Id, ...); `host` is the upstream Host header."""
        service = match.route.service
        assert service is not None
        settings = self._settings
        headers = request.headers
        chunked = "Transfer-Encoding" in headers  # aiohttp refuses any coding but chunked
        length = request.content_length if not chunked else None
        if length is not None and length > settings.max_body_size:
            return await _answer_and_close(request, responses.payload_too_large())

        expect = headers.get("Expect")
        if expect is not None:
            if expect.lower() != "100-continue":
                return responses.expectation_failed()
            if (chunked or length) and request.version >= (1, 1):
                # Only now, after routing (and auth, when the route has it), may the client
                # send its body: a refused request never gets a 100 Continue.
                await request.writer.write(_CONTINUE)

        target = _upstream_target(match.upstream_path, request.raw_path)
        method = request.method
        body = b""
        streamed = chunked or (length is not None and length > BUFFER_LIMIT)
        try:
            if not streamed and length:
                body = await _read_small_body(request, length, settings.client_body_timeout)
        except ClientBodyTimeout:
            return await _answer_and_close(request, responses.request_timeout())
        if streamed:
            framing = (
                b"Transfer-Encoding: chunked\r\n"
                if chunked
                else b"Content-Length: %d\r\n" % (length or 0)
            )
        elif length is not None or method in ("POST", "PUT", "PATCH"):
            framing = b"Content-Length: %d\r\n" % len(body)
        else:
            framing = b""
        head = build_request_head(
            method.encode(), target, request.raw_headers, host=host, added=added, framing=framing
        )
        pool = self._pool(service)
        try:
            return await self._exchange(request, pool, service, head + body, streamed, chunked)
        except UpstreamError as exc:
            return _upstream_failure(exc, service)
        except BodyTooLarge:
            return await _answer_and_close(request, responses.payload_too_large())
        except ClientBodyTimeout:
            return await _answer_and_close(request, responses.request_timeout())

    async def _exchange(
        self,
        request: web.BaseRequest,
        pool: UpstreamPool,
        service: Service,
        first_write: bytes,
        streamed: bool,
        chunked: bool,
    ) -> web.StreamResponse:
        head_request = request.method == "HEAD"
        conn = await pool.acquire(service.connect_timeout)
        try:
            try:
                conn.start_request(first_write, head_request=head_request)
                if streamed:
                    await self._send_body(request, conn, service, chunked)
                await conn.read_head(service.read_timeout)
            except UpstreamProtocolError as exc:
                # A pooled connection the upstream had already closed: one retry on a new one,
                # only when replaying cannot repeat a side effect and the body is still in hand.
                retry = (
                    exc.before_response
                    and conn.requests_sent > 1
                    and not streamed
                    and request.method in _IDEMPOTENT
                )
                if not retry:
                    raise
                pool.release(conn)
                conn = await pool.acquire(service.connect_timeout, fresh=True)
                conn.start_request(first_write, head_request=head_request)
                await conn.read_head(service.read_timeout)
            return await self._respond(request, pool, conn, service)
        finally:
            # Any path that did not finish the exchange (error, client gone) closes the
            # connection; release() reuses it only when the response was read to the end.
            pool.release(conn)

    async def _send_body(
        self, request: web.BaseRequest, conn: UpstreamConnection, service: Service, chunked: bool
    ) -> None:
        limit = self._settings.max_body_size
        timeout = self._settings.client_body_timeout
        content = request.content
        sent = 0
        while True:
            try:
                async with asyncio.timeout(timeout):
                    chunk = await content.readany()
            except TimeoutError:
                raise ClientBodyTimeout from None
            if not chunk:
                break
            sent += len(chunk)
            if sent > limit:
                raise BodyTooLarge
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain(service.write_timeout)
        if chunked:
            conn.write(b"0\r\n\r\n")

    async def _respond(
        self,
        request: web.BaseRequest,
        pool: UpstreamPool,
        conn: UpstreamConnection,
        service: Service,
    ) -> web.StreamResponse:
        headers = response_headers(conn.headers)
        if not conn.complete:
            declared = headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) <= BUFFER_LIMIT:
                await conn.read_to_end(service.read_timeout)
        if conn.complete:
            body = conn.take_body()
            return web.Response(status=conn.status, headers=headers, body=body or None)
        return await self._stream_response(request, conn, service, headers)

    async def _stream_response(
        self,
        request: web.BaseRequest,
        conn: UpstreamConnection,
        service: Service,
        headers: object,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=conn.status, headers=headers)  # type: ignore[arg-type]
        await response.prepare(request)
        try:
            while chunk := await conn.read_chunk(service.read_timeout):
                await response.write(chunk)
        except UpstreamError as exc:
            # Headers are gone already; all we can do is cut the client off so it sees a
            # truncated body rather than a complete-looking one.
            log.warning("upstream %s failed mid-response: %s", service.name, exc)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response


def _upstream_target(upstream_path: str, raw_target: str) -> bytes:
    query_at = raw_target.find("?")
    if query_at < 0:
        return upstream_path.encode("ascii")
    return (upstream_path + raw_target[query_at:]).encode("ascii", "surrogateescape")


async def _read_small_body(request: web.BaseRequest, length: int, timeout: float) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            return await request.content.readexactly(length)
    except TimeoutError:
        raise ClientBodyTimeout from None


async def _answer_and_close(
    request: web.BaseRequest, response: web.StreamResponse
) -> web.StreamResponse:
    """Answer, then close: the rest of the body is unwanted (too large) or not coming (stalled),
    and aiohttp would otherwise linger reading it before it closes the connection."""
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


def _upstream_failure(exc: UpstreamError, service: Service) -> web.Response:
    log.warning("upstream %s: %s", service.name, exc)
    if isinstance(exc, PoolExhausted):
        return responses.service_unavailable()
    if isinstance(exc, UpstreamTimeout | UpstreamConnectTimeout):
        return responses.gateway_timeout()
    return responses.bad_gateway()
