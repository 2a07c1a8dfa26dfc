"""The streaming forwarder: one matched request → the route's service → the client.

    forwarder = Forwarder(settings)
    response = await forwarder.forward(request, match, added=b"...", host=b"svc", request_id=b"1")
    await forwarder.close()

Small bodies (up to `BUFFER_LIMIT`) travel in one write each way: the request head and body go
upstream together, and a complete small response goes back as one pre-serialised write
(`RawResponse`), skipping aiohttp's header machinery. Larger or unsized bodies stream chunk by
chunk with backpressure, so a 50 MB body is never held whole. Failures map to Kong's answers:
connect refused → 502, connect or read timeout → 504, pool exhausted or a host name that
does not resolve → 503. A service balanced over a Kong Upstream's targets picks one per
request (balancer.py), each with its own pool, and when connecting fails tries the next, up to
the service's `retries` (a target whose name does not resolve is passed over). A WebSocket
handshake goes upstream on a new pool connection and, once switched, becomes a tunnel outside
the pool's count (tunnel.py).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from time import perf_counter
from typing import Final, cast

from aiohttp import hdrs, web
from aiohttp.streams import StreamReader
from multidict import CIMultiDict

from tokengate.gateway import responses
from tokengate.gateway.balancer import Balancer
from tokengate.gateway.config import Service, Target
from tokengate.gateway.cors import AnswerEdit
from tokengate.gateway.edits import NO_EDITS, UpstreamEdits
from tokengate.gateway.exchange import ERROR, SERVICE, Exchange
from tokengate.gateway.headers import (
    build_request_head,
    host_value,
    response_head,
    response_headers,
)
from tokengate.gateway.rawresponse import RawResponse
from tokengate.gateway.router import RouteMatch
from tokengate.gateway.server import connection_cap
from tokengate.gateway.settings import GatewaySettings
from tokengate.gateway.tunnel import copy_to_client, relay, wants_websocket
from tokengate.gateway.upstream import (
    ConnectionBudget,
    PoolExhausted,
    UpstreamConnectError,
    UpstreamConnection,
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamNameNotResolved,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamTimeout,
)

log = logging.getLogger("tokengate.proxy")

BUFFER_LIMIT: Final = 64 * 1024
MIN_BODY_RATE: Final = 500  # bytes/s a request body must average (mod_reqtimeout's; BodyPace)
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BODILESS_STATUS: Final = frozenset({204, 304})
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class BodyTooLarge(Exception):
    pass


class ClientBodyTimeout(Exception):
    pass


class _Targets:
    """A balanced service's targets: their pools and Host headers, and whose turn it is."""

    def __init__(self, balancer: Balancer, pools: list[UpstreamPool], hosts: list[bytes]) -> None:
        self.balancer = balancer
        self.pools = pools
        self.hosts = hosts
        self.endpoints = len(set(pools))  # targets naming one host:port share a pool

    def pick(self) -> tuple[UpstreamPool, bytes]:
        index = self.balancer.pick()
        return self.pools[index], self.hosts[index]


class Forwarder:
    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        # Keyed by service name (unique in a config): hashing the frozen dataclass itself would
        # hash all its fields on every request.
        self._pools: dict[str, UpstreamPool] = {}
        self._targets: dict[str, _Targets] = {}
        self._by_endpoint: dict[tuple[str, str, int, bool, str | None], UpstreamPool] = {}
        self._tunnels: set[UpstreamConnection] = set()
        self._budget = ConnectionBudget(connection_cap(settings.max_connections))

    def _new_pool(self, service: Service) -> UpstreamPool:
        pool = self._pools[service.name] = self._pool_for(service, service.host, service.port)
        return pool

    def _pool_for(
        self, service: Service, host: str, port: int, server_name: str | None = None
    ) -> UpstreamPool:
        # Services that name the same endpoint (scheme, host, port, TLS checks and name) share
        # a pool.
        endpoint = (service.protocol, host, port, service.tls_verify, server_name)
        pool = self._by_endpoint.get(endpoint)
        if pool is None:
            pool = self._by_endpoint[endpoint] = UpstreamPool(
                host,
                port,
                max_connections=self._settings.upstream_max_connections,
                max_idle=self._settings.upstream_max_idle,
                ssl_context=_ssl_context(service),
                server_name=server_name,
                budget=self._budget,
            )
        return pool

    def _new_targets(self, service: Service) -> _Targets:
        # Kong's `proxy_ssl_name $upstream_host`: TLS names the Host sent, so the upstream's
        # host_header (its port left out, as nginx does) rather than each target's host.
        name = None
        if service.protocol == "https" and service.host_header is not None:
            name = _without_port(service.host_header)
        pools = [self._pool_for(service, t.host, t.port, name) for t in service.targets]
        hosts = [_target_host(service, t) for t in service.targets]
        targets = self._targets[service.name] = _Targets(Balancer(service.targets), pools, hosts)
        return targets

    async def close(self) -> None:
        for pool in list(self._by_endpoint.values()):
            await pool.close()

    async def forward(
        self,
        request: web.BaseRequest,
        match: RouteMatch,
        *,
        added: bytes,
        host: bytes | None,
        request_id: bytes,
        exchange: Exchange,
        edits: UpstreamEdits = NO_EDITS,
        body: bytes | None = None,
        body_prefix: bytes = b"",
    ) -> web.StreamResponse:
        """Send the request upstream and relay the answer. `added` are the gateway's header
        lines (X-Forwarded-*, X-Request-Id, ...); `host` is the upstream Host header (None: the
        balanced service's target's, picked here); `edits`
        are what authentication changes (hidden credentials, claim headers); `body`, when not
        None, is the whole request body, already read (to find a token in a form);
        `body_prefix`, the first bytes of a chunked body read for the same reason and found too
        long to hold, whose rest still streams. `exchange` learns who answered, how long the
        upstream took to, and a streamed body's size."""
        service = match.route.service
        assert service is not None
        settings = self._settings
        headers = request.headers
        coding = headers.get("Transfer-Encoding")
        chunked = coding is not None
        if coding is not None and coding.strip().lower() != "chunked":
            # aiohttp removes only the chunking of "gzip, chunked": the rest would reach the
            # upstream unlabelled. nginx answers 501 here too.
            return await answer_and_close(
                request, responses.not_implemented(), exchange.answer_edit
            )
        length = None if chunked else request.content_length
        limit = settings.max_body_size
        # A chunked form read whole (or its head) to find a token has a length now too; any
        # other body read was Content-Length long.
        if (length is not None and length > limit) or (
            chunked and len(body if body is not None else body_prefix) > limit
        ):
            return await answer_and_close(
                request, responses.payload_too_large(), exchange.answer_edit
            )

        expect = headers.get("Expect")
        if expect is not None and body is None and not body_prefix:
            if expect.lower() != "100-continue":
                return responses.expectation_failed()
            if (chunked or length) and request.version >= (1, 1):
                # Only now, after routing (and auth, when the route has it), may the client
                # send its body: a refused request never gets a 100 Continue.
                await request.writer.write(CONTINUE)

        method = request.method
        streamed = chunked or (length is not None and length > BUFFER_LIMIT)
        if body is not None:
            # Authentication read the (small, form) body already; it may have taken the token
            # out of it (hide_credentials).
            if edits.body is not None:
                body = edits.body
            streamed = False
            framing = b"Content-Length: %d\r\n" % len(body)
        elif chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
        elif streamed:
            framing = b"Content-Length: %d\r\n" % (length or 0)
        elif length:
            try:
                body = await read_small_body(request, length, settings.client_body_timeout)
            except ClientBodyTimeout:
                return await answer_and_close(
                    request, responses.request_timeout(), exchange.answer_edit
                )
            framing = b"Content-Length: %d\r\n" % length
        elif length is not None or method in ("POST", "PUT", "PATCH"):
            framing = b"Content-Length: 0\r\n"
        else:
            framing = b""
        if body is None or streamed:
            body = b"%x\r\n%b\r\n" % (len(body_prefix), body_prefix) if body_prefix else b""
        switch = not framing and wants_websocket(request)
        if switch:
            # Upgrade and Connection are hop-by-hop: the handshake asks for the switch anew.
            added += b"Connection: upgrade\r\nUpgrade: websocket\r\n"
        targets, rehost = None, host is None
        if service.upstream is None:
            pool = self._pools.get(service.name) or self._new_pool(service)
        elif service.targets:
            targets = self._targets.get(service.name) or self._new_targets(service)
            pool, target_host = targets.pick()
            if host is None:
                host = target_host
        else:
            return responses.no_peer()
        assert host is not None  # None only for a balanced service, and it was picked above
        if edits.query is None:
            target = _upstream_target(match.upstream_path, request.raw_path)
        else:
            query = "?" + edits.query if edits.query else ""
            target = (match.upstream_path + query).encode("ascii", "surrogateescape")
        head = build_request_head(
            method.encode(),
            target,
            request.raw_headers,
            host=host,
            added=added + edits.added if edits.added else added,
            framing=framing,
            drop=edits.drop,
        )
        try:
            if switch:
                return await self._switch(
                    request,
                    pool,
                    service,
                    head,
                    request_id,
                    exchange,
                    targets,
                    rehost,
                    answer=edits.answer,
                )
            return await self._exchange(
                request,
                pool,
                service,
                head + body,
                streamed,
                request_id,
                exchange,
                already_sent=len(body_prefix),
                targets=targets,
                rehost=rehost,
                answer=edits.answer,
            )
        except UpstreamError as exc:
            exchange.source = ERROR
            return _upstream_failure(exc, service)
        except BodyTooLarge:
            return await answer_and_close(
                request, responses.payload_too_large(), exchange.answer_edit
            )
        except ClientBodyTimeout:
            return await answer_and_close(
                request, responses.request_timeout(), exchange.answer_edit
            )

    async def _exchange(
        self,
        request: web.BaseRequest,
        pool: UpstreamPool,
        service: Service,
        first_write: bytes,
        streamed: bool,
        request_id: bytes,
        exchange: Exchange,
        already_sent: int = 0,  # body bytes in first_write (a chunked body's read prefix)
        targets: _Targets | None = None,  # a balanced service's: the next ones to try
        rehost: bool = False,  # the Host is the target's: another target gets its own
        answer: tuple[tuple[bytes, bytes], ...] = (),  # headers added to the answer
    ) -> web.StreamResponse:
        head_request = request.method == "HEAD"
        started = perf_counter()
        conn: UpstreamConnection | None = pool.take_idle()
        if conn is None:
            pool, conn, other_host = await _connect(pool, service, targets)
            if other_host is not None and rehost:
                first_write = _with_host(first_write, other_host)
        exchange.upstream = pool
        early_answer = False
        try:
            try:
                conn.start_request(first_write, head_request=head_request, body_follows=streamed)
                if streamed:
                    try:
                        await self._send_body(request, conn, service, already_sent)
                        conn.request_sent()
                    except UpstreamError:
                        # An upstream may answer an upload before reading it (401, 413) and
                        # close: relay that answer rather than a 502.
                        if not conn.head_done:
                            raise
                        early_answer = True
                if not conn.head_done:
                    await conn.read_head(service.read_timeout)
            except UpstreamProtocolError as exc:
                # A pooled connection the upstream had already closed: one retry on a new one,
                # only when replaying cannot repeat a side effect and the body is still in hand.
                if not (
                    exc.before_response
                    and conn.requests_sent > 1
                    and not streamed
                    and request.method in _IDEMPOTENT
                ):
                    raise
                pool.release(conn)
                conn = None
                pool, conn, other_host = await _connect(pool, service, targets, fresh=True)
                if other_host is not None and rehost:
                    first_write = _with_host(first_write, other_host)
                exchange.upstream = pool
                conn.start_request(first_write, head_request=head_request)
                await conn.read_head(service.read_timeout)
            # Kong's upstream latency: connection (when a new one was needed) to response head.
            exchange.upstream_seconds = perf_counter() - started
            exchange.source = SERVICE
            # After an early answer the rest of the client's body was never read: the
            # connection closes, and the answer's head says so.
            return await self._respond(
                request, conn, service, request_id, exchange, answer, close=early_answer
            )
        finally:
            # Whatever did not finish the exchange (error, client gone) leaves the connection
            # incomplete, and release() closes it; only a fully read response is reused.
            if conn is not None:
                pool.release(conn)

    async def _switch(
        self,
        request: web.BaseRequest,
        pool: UpstreamPool,
        service: Service,
        head: bytes,
        request_id: bytes,
        exchange: Exchange,
        targets: _Targets | None = None,
        rehost: bool = False,
        answer: tuple[tuple[bytes, bytes], ...] = (),
    ) -> web.StreamResponse:
        """A WebSocket handshake, on a new connection that counts against the pool like any
        request's (a flood of handshakes cannot open connections without bound). A 101 takes
        the connection out of the pool's count, for a tunnel that may last hours; any other
        answer is relayed as usual. `targets` and `rehost` as for `_exchange`."""
        started = perf_counter()
        pool, conn, other_host = await _connect(pool, service, targets, fresh=True)
        if other_host is not None and rehost:
            head = _with_host(head, other_host)
        exchange.upstream = pool
        switched = False
        try:
            conn.start_request(head, head_request=False, upgrade=True)
            await conn.read_head(service.read_timeout)
            exchange.upstream_seconds = perf_counter() - started
            exchange.source = SERVICE
            if not conn.upgraded:
                return await self._respond(request, conn, service, request_id, exchange, answer)
            pool.detach(conn)
            switched = True
        finally:
            if not switched:
                pool.release(conn)
        self._tunnels.add(conn)
        try:
            send_timeout = self._settings.client_send_timeout
            return await relay(request, conn, service, request_id, exchange, send_timeout, answer)
        finally:
            self._tunnels.discard(conn)

    def end_tunnels(self) -> None:
        """Close every WebSocket tunnel's upstream side (each relay then closes its client):
        on shutdown, where aiohttp stops reading clients, so a tunnel could only go one way."""
        for conn in list(self._tunnels):
            conn.close()

    async def _send_body(
        self, request: web.BaseRequest, conn: UpstreamConnection, service: Service, sent: int = 0
    ) -> None:
        chunked = "Transfer-Encoding" in request.headers
        limit = self._settings.max_body_size
        content = request.content
        # Time the upstream takes to read is not the client's: only reads are paced.
        pace = BodyPace(self._settings.client_body_timeout, sent)
        while chunk := await pace.read(content):
            if pace.received > limit:
                raise BodyTooLarge
            conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            await conn.drain(service.write_timeout)
        if chunked:
            conn.write(b"0\r\n\r\n")

    async def _respond(
        self,
        request: web.BaseRequest,
        conn: UpstreamConnection,
        service: Service,
        request_id: bytes,
        exchange: Exchange,
        answer: tuple[tuple[bytes, bytes], ...] = (),
        close: bool = False,  # the client connection closes after this answer
    ) -> web.StreamResponse:
        if not conn.complete and _declared_small(conn):
            await conn.read_to_end(service.read_timeout)
        raw_headers = conn.headers
        if exchange.answer_edit is not None:  # the route's cors
            raw_headers, answer = exchange.answer_edit.upstream(raw_headers, answer)
        if conn.complete and request.version == (1, 1):
            status = conn.status
            if status == 204:
                # RFC 9110 §8.6: a 204 has no Content-Length. nginx's header filter drops an
                # upstream's, as aiohttp does for an HTTP/1.0 client (the path below).
                raw_headers = [line for line in raw_headers if line[0].lower() != b"content-length"]
            bodiless = status in _BODILESS_STATUS or request.method == "HEAD"
            body = conn.take_body()
            keep_alive = request.keep_alive and not close
            head = response_head(
                status,
                conn.reason,
                raw_headers,
                body_length=None if bodiless else len(body),
                request_id=request_id,
                keep_alive=keep_alive,
                added=answer,
            )
            return RawResponse(
                head + body,
                status=status,
                keep_alive=keep_alive,
                body_size=len(body),
                send_timeout=self._settings.client_send_timeout,
            )
        headers = response_headers(raw_headers, request_id, answer)
        if conn.complete:  # an HTTP/1.0 client: aiohttp knows its keep-alive rules
            relayed = RelayedBody(
                status=conn.status, headers=headers, body=conn.take_body() or None
            )
            if close:
                relayed.force_close()
            return relayed
        return await self._stream_response(request, conn, service, headers, exchange, close)

    async def _stream_response(
        self,
        request: web.BaseRequest,
        conn: UpstreamConnection,
        service: Service,
        headers: CIMultiDict[str],
        exchange: Exchange,
        close: bool = False,
    ) -> web.StreamResponse:
        response = RelayedStream(status=conn.status, headers=headers)
        if close or (request.version < (1, 1) and "Content-Length" not in headers):
            # RFC 9112 §6.3: an HTTP/1.0 client reads this body to the connection's close, so
            # the close must come, whatever keep-alive it asked for. (`close`: an early answer,
            # see _exchange.)
            response.force_close()
        await response.prepare(request)
        send_timeout = self._settings.client_send_timeout
        try:
            await copy_to_client(
                conn, response, exchange, service.read_timeout, send_timeout, request.transport
            )
        except (UpstreamError, TimeoutError) as exc:
            # Headers are gone already; all we can do is cut the client off so it sees a
            # truncated body rather than a complete-looking one.
            what = "client stopped reading" if isinstance(exc, TimeoutError) else str(exc)
            log.warning("response from %s cut off: %s", service.name, what)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response


class _AsSent:
    """An upstream response relayed through aiohttp, which would add headers of its own to
    it: `Content-Type: application/octet-stream` where the upstream sent none (a client would
    then stop sniffing), and its `Server`. Neither is added; Date and framing still are."""

    async def _prepare_headers(self) -> None:
        headers = cast(web.StreamResponse, self).headers
        had_type, had_server = hdrs.CONTENT_TYPE in headers, hdrs.SERVER in headers
        await super()._prepare_headers()  # type: ignore[misc]
        if not had_type:
            headers.popall(hdrs.CONTENT_TYPE, None)
        if not had_server:
            headers.popall(hdrs.SERVER, None)


class RelayedStream(_AsSent, web.StreamResponse):
    pass


class RelayedBody(_AsSent, web.Response):
    pass


class NoPeer(UpstreamError):
    """No target of a balanced service is left to try: Kong's ring-balancer 503."""


async def _connect(
    pool: UpstreamPool, service: Service, targets: _Targets | None, *, fresh: bool = False
) -> tuple[UpstreamPool, UpstreamConnection, bytes | None]:
    """A connection from `pool` (a new one when `fresh`); for a balanced service, when
    connecting fails (nothing was sent yet), one from the next target's pool, up to
    `service.retries` more tries (Kong's balancer retries). A target whose name does not
    resolve is passed over without counting as a try, as Kong's ring leaves it out (NoPeer when
    none is left). The Host of the target it ended with, if it is another."""
    tries, host = 0, None
    unresolved: set[UpstreamPool] | None = None
    while True:
        try:
            return pool, await pool.acquire(service.connect_timeout, fresh=fresh), host
        except UpstreamNameNotResolved as exc:
            if targets is None:
                raise
            unresolved = unresolved or set()
            unresolved.add(pool)
            if len(unresolved) >= targets.endpoints:
                raise NoPeer(f"no target of {service.name} resolves: {exc}") from None
            log.info("upstream %s: %s; passed over", service.name, exc)
            while pool in unresolved:
                pool, host = targets.pick()
        except (UpstreamConnectError, UpstreamConnectTimeout) as exc:
            if targets is None or tries >= service.retries:
                raise
            tries += 1
            pool, host = targets.pick()
            log.info("upstream %s: %s; trying %s:%d", service.name, exc, pool.host, pool.port)


def _with_host(head: bytes, host: bytes) -> bytes:
    """`head` with `host` in its Host line: the first after the request line, where
    build_request_head writes it."""
    start = head.index(b"\r\n") + 2
    end = head.index(b"\r\n", start)
    return b"%bHost: %b%b" % (head[:start], host, head[end:])


def _target_host(service: Service, target: Target) -> bytes:
    """The Host a target of a balanced service gets (Kong's balancer): the upstream's
    host_header, else the target's host; then the target's port, unless it is the scheme's
    default or host_header names its own (sent as written)."""
    name = service.host_header or target.host
    if service.host_header is not None and ("]:" if name.startswith("[") else ":") in name:
        return name.encode()  # one with its own port is sent as written
    return host_value(name, target.port, service.protocol)


def _without_port(host: str) -> str:
    """`host` of a Host value `host[:port]` (`[v6]` kept in its brackets)."""
    if host.startswith("["):
        return host[: host.index("]") + 1]
    return host.partition(":")[0]


def _ssl_context(service: Service) -> ssl.SSLContext | None:
    if service.protocol != "https":
        return None
    context = ssl.create_default_context()
    if not service.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _declared_small(conn: UpstreamConnection) -> bool:
    for name, value in conn.headers:
        if name.lower() == b"content-length":
            return value.isdigit() and int(value) <= BUFFER_LIMIT
    return False


def _upstream_target(upstream_path: str, raw_target: str) -> bytes:
    query_at = raw_target.find("?")
    if query_at < 0:
        return upstream_path.encode("ascii")
    return (upstream_path + raw_target[query_at:]).encode("ascii", "surrogateescape")


async def read_small_body(request: web.BaseRequest, length: int, timeout: float) -> bytes:
    """A Content-Length body of at most BUFFER_LIMIT bytes, paced as a streamed one."""
    content, pace = request.content, BodyPace(timeout)
    chunks: list[bytes] = []
    while pace.received < length:
        chunk = await pace.read(content)
        if not chunk:  # (aiohttp raises for a body cut short; an empty read must not loop)
            raise asyncio.IncompleteReadError(b"".join(chunks), length)
        chunks.append(chunk)
    return b"".join(chunks)


class BodyPace:
    """Reads of a request body, timed as nginx's client_body_timeout times them: `timeout`
    bounds each gap between two reads, not the whole body (a slow but steady client is not cut
    off). And, as Apache's mod_reqtimeout MinRate, the time spent waiting must stay under
    `timeout` plus one second per MIN_BODY_RATE bytes received, or a client trickling bytes
    could hold its connection (and, streaming, an upstream one) for ever. ClientBodyTimeout
    when either runs out; b"" at the body's end. `received` counts from `already` (bytes read
    before, as by openid-connect looking for a token)."""

    def __init__(self, timeout: float, already: int = 0) -> None:
        self.timeout = timeout
        self.received = already
        self._waited = 0.0

    async def read(self, content: StreamReader) -> bytes:
        allowed = self.timeout + self.received / MIN_BODY_RATE - self._waited
        waiting = perf_counter()
        try:
            async with asyncio.timeout(min(self.timeout, max(allowed, 0.0))):
                chunk = await content.readany()
        except TimeoutError:
            raise ClientBodyTimeout from None
        self._waited += perf_counter() - waiting
        self.received += len(chunk)
        return chunk


async def answer_and_close(
    request: web.BaseRequest, response: web.StreamResponse, cors: AnswerEdit | None = None
) -> web.StreamResponse:
    """Answer, then close: the rest of the body is unwanted (too large) or not coming (stalled),
    and the connection serves no other request. `cors`: the route's headers, for an answer not
    written as bytes already (a RawResponse has them)."""
    if cors is not None and not isinstance(response, RawResponse):
        cors.apply(response)
    # Its head must not promise otherwise (aiohttp would tell an HTTP/1.0 client keep-alive).
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    transport = request.transport
    if transport is None:
        return response
    if transport.can_write_eof():
        # nginx's lingering close: the answer, then a FIN, and what the client still sends is
        # read and dropped (for aiohttp's lingering_time at most) until it closes too. A close
        # with the client's bytes unread would be a reset, and a reset can destroy the answer
        # before the client has read it: an upload past the limit then saw no 413.
        transport.write_eof()
        request.protocol.close()
    else:
        transport.close()
    return response


def _upstream_failure(exc: UpstreamError, service: Service) -> web.Response:
    log.warning("upstream %s: %s", service.name, exc)
    if isinstance(exc, PoolExhausted):
        return responses.service_unavailable()
    if isinstance(exc, UpstreamTimeout | UpstreamConnectTimeout):
        return responses.gateway_timeout()
    if isinstance(exc, UpstreamNameNotResolved):
        return responses.name_resolution_failed()
    if isinstance(exc, NoPeer):
        return responses.no_peer()
    return responses.bad_gateway()
