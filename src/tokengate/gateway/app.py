"""Wiring: the proxy server, the status server, and their lifecycle.

    async with GatewayServer(config, settings, registry=CollectorRegistry()) as server:
        print(server.proxy_port, server.status_port)           # real ports (0 → chosen)
        server.reload(new_config)     # new requests take the new routes; running ones finish

The proxy runs on aiohttp's low-level `web.Server`: we have our own (Kong) router, so the
application router and middleware chain would only add cost on every request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from tokengate import __version__
from tokengate.gateway import access_log, responses
from tokengate.gateway.auth import CACHED, Authenticator, key_source
from tokengate.gateway.config import GatewayConfig, Route, Service
from tokengate.gateway.cors import Cors, CorsConfig, is_cors_preflight
from tokengate.gateway.edits import NO_EDITS
from tokengate.gateway.errors import AuthError
from tokengate.gateway.exchange import ERROR, SERVICE, Exchange
from tokengate.gateway.extract import body_holds_token, body_type, is_encoded, needs_body
from tokengate.gateway.forwarded import (
    Forwarded,
    TrustedPeers,
    forwarded_headers,
    host_name,
    redirect_host,
    routing_host,
)
from tokengate.gateway.generation import Generation, Generations, drain
from tokengate.gateway.headers import host_value, sane_request_id
from tokengate.gateway.keys import KeyRegistry
from tokengate.gateway.metrics import GatewayStats, Metrics, RouteStats
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.paths import BadPath, canonical_path, kong_router_path
from tokengate.gateway.proxy import (
    CONTINUE,
    BodyPace,
    ClientBodyTimeout,
    Forwarder,
    answer_and_close,
    read_small_body,
)
from tokengate.gateway.rawresponse import RawResponse, name_server
from tokengate.gateway.router import RouteMatch, Router
from tokengate.gateway.server import (
    STATUS_CONNECTIONS,
    GuardedAppRunner,
    HeadTimeoutServer,
    body_error_answered,
    connection_cap,
    warn_if_past_open_files,
)
from tokengate.gateway.settings import GatewaySettings
from tokengate.gateway.shared_metrics import files_per_process, scrape_registry

log = logging.getLogger("tokengate.gateway")

_REFUSED_METHODS: Final = frozenset({"CONNECT", "TRACE"})
SEARCHED_BODY_LIMIT: Final = 64 * 1024  # largest form or JSON body read to find a token in
_HOSTS_REMEMBERED: Final = 1024
# With --workers, how often each worker moves its figures into the shared metric files.
PUBLISH_INTERVAL: Final = 1.0

CLIENT_CLOSED_REQUEST: Final = 499  # nginx's status for a request its client abandoned


class Gateway:
    """The per-request path: canonical path → route → forward. One per worker process."""

    def __init__(
        self,
        config: GatewayConfig,
        settings: GatewaySettings,
        *,
        clock: Callable[[], float] = time.time,
        stats: GatewayStats | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.clock = clock
        self.router = Router(config.routes)
        self.forwarder = Forwarder(settings)
        self.keys: KeyRegistry | None = None
        self.stats = stats if stats is not None else GatewayStats(Metrics(CollectorRegistry()))
        self._unrouted = self.stats.unrouted
        # Keyed by id(route): routes live as long as the config, and hashing the frozen route
        # on every request would cost more than the lookup.
        self._auth: dict[int, Authenticator] = {}
        # Kong's prometheus exporter labels a route by its name, else its id.
        self._stats: dict[int, RouteStats] = {
            id(route): self.stats.route(
                route.service.name if route.service is not None else "",
                route.name or route.id or "",
            )
            for route in config.routes
        }
        # Decided once (a per-request check costs more than the rest of the metrics): access
        # lines are written when the access logger is enabled for INFO as the gateway starts.
        self._access_log = settings.access_log and access_log.enabled()
        self._listen_port = b""
        self.listen_port = b"%d" % settings.listen[1]
        self._request_ids = itertools.count(1)
        self._request_id_prefix = os.urandom(8).hex()
        services = [*config.services, *(route.service for route in config.routes if route.service)]
        self._service_hosts = {svc.name: _host_header(svc) for svc in services}
        self._trusted = TrustedPeers(settings.trusted_ips) if settings.trusted_ips else None
        # Routes whose protocols leave out http (Kong answers plain HTTP there with 426).
        self._https_only = frozenset(id(route) for route in config.routes if route.https_only)
        self._regex_routes = frozenset(
            id(route) for route in config.routes if any(p.startswith("~") for p in route.paths)
        )
        # Host header → _read_host's answer; clients send a few hosts, over and over.
        self._hosts: dict[str, tuple[str, bytes] | None] = {}
        self._cors: dict[int, Cors] = {}
        shared_cors: dict[CorsConfig, Cors] = {}
        for route in config.routes:
            if route.cors is not None:
                cors = shared_cors.get(route.cors) or Cors(route.cors)
                self._cors[id(route)] = shared_cors[route.cors] = cors

    @property
    def listen_port(self) -> bytes:
        """The proxy's port: X-Forwarded-Port, and the port a Host without one means to routes."""
        return self._listen_port

    @listen_port.setter
    def listen_port(self, port: bytes) -> None:
        self._listen_port = port
        self.router.default_port = port.decode()

    def start_auth(
        self,
        session: aiohttp.ClientSession,
        *,
        previous: KeyRegistry | None = None,
        warm: bool = True,
    ) -> None:
        """One Authenticator per distinct openid-connect config, all sharing one key registry;
        key fetches start in the background (serving never waits for an IdP), unless `warm` is
        false: then `keys.start()` is the caller's (a request before it fetches on demand). On
        a reload, `previous` hands over the keys of issuers both configs use: no refetch, no
        cold start."""
        settings = self.settings
        self.keys = KeyRegistry(
            session, policy=settings.key_policy, on_fetch=self.stats.metrics.key_fetched
        )
        if previous is not None:
            sources = {key_source(r.oidc) for r in self.config.routes if r.oidc is not None}
            self.keys.adopt(previous, sources)
        shared: dict[OidcConfig, Authenticator] = {}
        for route in self.config.routes:
            oidc = route.oidc
            if oidc is None:
                continue
            auth = shared.get(oidc)
            if auth is None:
                auth = shared[oidc] = Authenticator(
                    oidc,
                    self.keys.get(key_source(oidc)),
                    clock=self.clock,
                    cache_capacity=settings.token_cache_size,
                    retry_after=settings.key_policy.retry_after,
                    send_timeout=settings.client_send_timeout,
                )
                if auth.cache is not None:
                    self.stats.watch_cache(auth.cache)
            self._auth[id(route)] = auth
        if warm:
            self.keys.start()

    def retire(self) -> None:
        """A reload replaced this gateway: no new request will reach it, so its verified-token
        caches are emptied now, not held for as long as its last stream lasts. (A request still
        on its way through the checks finds no entry and verifies its token in full.)"""
        for auth in set(self._auth.values()):
            if auth.cache is not None:
                auth.cache.clear()

    async def close(self) -> None:
        for auth in set(self._auth.values()):
            if auth.cache is not None:
                self.stats.forget_cache(auth.cache)  # its last counts published, its size gone
        if self.keys is not None:
            await self.keys.close()
        await self.forwarder.close()

    def new_request_id(self) -> bytes:
        return b"%s%016x" % (self._request_id_prefix.encode(), next(self._request_ids))

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = perf_counter() if self._access_log else 0.0
        client_id = request.headers.get("X-Request-Id")
        request_id = (client_id and sane_request_id(client_id)) or self.new_request_id()
        exchange = Exchange()
        try:
            response = await self._handle(request, request_id, exchange)
            if (
                "Expect" in request.headers
                and request.body_exists
                and not request.content.is_eof()
                and request.writer.output_size == 0  # no 100 Continue went out
                and not isinstance(response, RawResponse)  # relayed: the body was read
                and not response.prepared
            ):
                # Answered before a 100 Continue invited the body (no route, a bad path, 417, a
                # CORS preflight...): the client may send it later or never, so what comes next
                # cannot be told from a next request (a front proxy that never sends it would
                # have its next request read as this body). Close, as a refusal by the plugin
                # does (written as bytes, it closes by itself).
                response.headers.setdefault("X-Request-Id", request_id.decode())
                response = await answer_and_close(request, response, exchange.answer_edit)
        except web.RequestPayloadError as exc:
            # The body's framing broke (server.py): what follows cannot be told apart from a
            # next request, so the connection ends with the 400.
            log.debug("client request body malformed: %s", exc)
            malformed = responses.bad_request()
            response = await answer_and_close(request, malformed, exchange.answer_edit)
            body_error_answered(request)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.debug("client request body failed: %s", exc)
            response = responses.bad_request()
        except (ClientBodyTimeout, TimeoutError):  # a body searched for a token stalled
            timeout = responses.request_timeout()
            response = await answer_and_close(request, timeout, exchange.answer_edit)
        except asyncio.CancelledError:
            # The client went away mid-request (or the drain's grace ran out): counted and
            # logged as nginx does, 499, before the cancellation goes on. A WebSocket tunnel
            # the client closed ended as tunnels do: its 101 stands.
            if not exchange.switched:
                exchange.source = ERROR
            status = 101 if exchange.switched else CLIENT_CLOSED_REQUEST
            gone = web.StreamResponse(status=status)
            self._account(request, gone, exchange, request_id, started)
            raise
        except Exception:
            log.exception("unexpected error while handling a request")
            exchange.source = ERROR
            response = responses.kong_error(500, "An unexpected error occurred")
        if not isinstance(response, RawResponse):
            response.headers.setdefault("X-Request-Id", request_id.decode())
            cors = exchange.answer_edit
            # An upstream's answer got them as it was relayed, an HTTP/1.1 refusal as it was
            # written; the rest of the gateway's own answers get them here.
            if cors is not None and exchange.source != SERVICE and not response.prepared:
                cors.apply(response)
        self._account(request, response, exchange, request_id, started)
        return response

    def account_malformed(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """A request aiohttp could not parse, answered 400 before any handler ran: counted under
        no route, and logged with "-" for its method and path (nothing of it was read)."""
        exchange = Exchange()
        exchange.path = access_log.UNPARSED  # and no latency: no clock of ours was running
        self._account(request, response, exchange, self.new_request_id(), 0.0)

    def _account(
        self,
        request: web.BaseRequest,
        response: web.StreamResponse,
        exchange: Exchange,
        request_id: bytes,
        started: float,
    ) -> None:
        """The one place a finished (or abandoned) request is counted and logged."""
        (exchange.stats or self._unrouted).finish(response.status, exchange)
        if self._access_log:
            access_log.write(request, response, exchange, request_id, perf_counter() - started)

    def _routes_apart(
        self,
        request: web.BaseRequest,
        host: str,
        raw_path: str,
        path: str,
        match: RouteMatch | None,
    ) -> bool:
        """Whether the path, as Kong's router reads it, would go to another route, one of them a
        regex route: a regex written for one reading (`%40` or a raw `[`, a decoded `é`) must
        not let the other reading fall through to a route it was meant to keep requests from.
        Such a request is refused, as a `;` is."""
        kong_path = kong_router_path(raw_path)
        if kong_path == path:
            return False
        other = self.router.match(request.method, host, kong_path, request.headers)
        ours = match.route if match is not None else None
        theirs = other.route if other is not None else None
        if ours is theirs or not {id(ours), id(theirs)} & self._regex_routes:
            return False
        log.debug("refused %r: Kong's reading %r routes elsewhere", raw_path, kong_path)
        return True

    async def _handle(
        self, request: web.BaseRequest, request_id: bytes, exchange: Exchange
    ) -> web.StreamResponse:
        if request.version.major != 1:
            # llhttp takes "HTTP/2.0" in a request line (and a line without a version as HTTP/0.9,
            # headers and all), and aiohttp answers in the request's version: "HTTP/2.0 200 OK"
            # over HTTP/1, which no client reads (RFC 9112 §2.3: never a version the server does
            # not conform to). nginx answers a major version past 1 with 505, in HTTP/1.1.
            return await answer_and_close(request, responses.unsupported_version(request.version))
        if request.method in _REFUSED_METHODS:
            # nginx, so Kong, answers 405: a reverse proxy opens no tunnels, and a TRACE would
            # echo the client's cookies and credentials back (cross-site tracing). Whatever
            # follows the head (a body, tunnel bytes) must not be parsed as the next request.
            return await answer_and_close(request, responses.method_not_allowed())
        if request.version < (1, 1) and "Transfer-Encoding" in request.headers:
            # RFC 9112 §6.1: HTTP/1.0 has no chunking, so this framing is faulty; a front proxy
            # may have read it otherwise. Refuse, and close rather than guess where it ends.
            return await answer_and_close(request, responses.bad_request())
        raw_target = request.raw_path
        line_host = None
        if not raw_target.startswith("/"):
            if raw_target == "*":
                return responses.bad_request()
            # absolute-form: keep only the path; its host (no userinfo) is nginx's $host
            try:
                line_host = urlsplit(raw_target).netloc.rpartition("@")[2]
            except ValueError:  # aiohttp's parser refuses these first; never a 500 here
                return responses.bad_request()
            raw_target = request.rel_url.raw_path_qs
            if not raw_target.startswith("/"):
                # RFC 9110 §4.2.3: an empty path is "/" (`GET http://api.example?q HTTP/1.1`)
                raw_target = "/" + raw_target
        query_at = raw_target.find("?")
        raw_path = exchange.path = raw_target if query_at < 0 else raw_target[:query_at]
        try:
            path = canonical_path(raw_path)
        except BadPath as exc:
            log.debug("refused request path %r: %s", raw_path, exc)
            return responses.bad_request()

        host_header = request.headers.get("Host", "")
        try:
            hosts = self._hosts[host_header]
        except KeyError:
            if len(self._hosts) >= _HOSTS_REMEMBERED:
                self._hosts.clear()
            hosts = self._hosts[host_header] = _read_host(host_header)
        if hosts is None:
            return responses.bad_request()  # nginx too: a Host must name a host
        routed_host, forwarded_host = hosts
        if line_host is not None:
            # RFC 9112 §3.2.2: the request line's host wins. Kong still routes on the Host
            # header, but its X-Forwarded-Host (and redirect) is nginx's $host, this one.
            line_hosts = _read_host(line_host) if line_host else None
            if line_hosts is None:
                return responses.bad_request()
            forwarded_host = line_hosts[1]
        match = self.router.match(request.method, routed_host, path, request.headers)
        # canonical_path returns the raw path itself when it had nothing to rewrite.
        if (
            self._regex_routes
            and path is not raw_path
            and self._routes_apart(request, routed_host, raw_path, path, match)
        ):
            return responses.bad_request()
        if match is None:
            return responses.no_route()
        route_key = id(match.route)
        exchange.stats = self._stats[route_key]
        peer = request.remote or ""
        forwarded = None
        if self._trusted is not None and self._trusted.trusts(peer):
            forwarded = Forwarded.from_trusted(
                request.headers,
                peer=peer,
                host=forwarded_host.decode("latin-1"),  # host_name(host_header), cached
                port=self.listen_port.decode(),
                path=raw_path,
                prefix=match.prefix,
            )
            exchange.client_ip = forwarded.client
        # Before the plugins and the service, as Kong's runloop: "https" exactly, as Kong reads it.
        if route_key in self._https_only and (forwarded is None or forwarded.proto != "https"):
            dollar_host = host_header if line_host is None else line_host
            return self._https_required(match.route, forwarded, dollar_host, raw_target)
        if self._cors and (cors := self._cors.get(route_key)) is not None:
            # Kong's cors runs first (priority 2000): a preflight is its to answer, before
            # openid-connect, unless preflight_continue hands it on (then without its headers).
            if not is_cors_preflight(request.method, request.headers):
                exchange.answer_edit = cors.answer_edit(request.headers)
            elif not cors.config.preflight_continue:
                # (with a body it never invited, handle() closes after it, as after a refusal)
                return cors.preflight(request.headers)

        edits, body, body_prefix = NO_EDITS, None, b""
        auth = self._auth.get(route_key)
        if auth is not None:
            # Before any body byte is read or a 100 Continue is sent (but for a form or JSON
            # body that may carry the token itself).
            checking = perf_counter()
            cached = auth.cached_edits(request)
            if cached is not None:
                edits, exchange.outcome = cached, CACHED
            else:
                try:
                    verdict = None
                    if needs_body(request, auth.config):
                        if request.headers.get("Expect", "").lower() == "100-continue":
                            # DESIGN: a bad token is answered before a 100 Continue invites the
                            # body, wherever that body is.
                            verdict = await auth.check_before_body(request)
                        reading = perf_counter()
                        body, body_prefix = await self._read_searched_body(request)
                        checking += perf_counter() - reading  # the body's pace is the client's
                    if verdict is None or (
                        body is not None
                        and body_holds_token(body, body_type(request), encoded=is_encoded(request))
                    ):
                        verdict = await auth.check(request, body)
                    edits, exchange.outcome = verdict
                except AuthError as exc:
                    exchange.auth_seconds = perf_counter() - checking
                    exchange.outcome = exc.reason
                    extra = exchange.answer_edit.head if exchange.answer_edit else b""
                    if body is None and "Expect" in request.headers and request.body_exists:
                        # A client that waits for a 100 Continue may send its body later, or
                        # never: what comes next cannot be told from a next request. Close.
                        refusal = auth.refuse(exc, request, request_id, close=True, extra=extra)
                        return await answer_and_close(request, refusal, exchange.answer_edit)
                    return auth.refuse(exc, request, request_id, extra=extra)
            exchange.auth_seconds = perf_counter() - checking

        service = match.route.service
        if service is None:  # after the plugins, as in Kong's access phase
            return responses.no_service()
        upstream_host: bytes | None  # None: a balanced service's target's, picked upstream
        if match.route.preserve_host and host_header:
            upstream_host = host_header.encode("latin-1")
        else:
            upstream_host = self._service_hosts[service.name]
        if forwarded is None:
            peer_bytes = peer.encode()
            added = (
                b"X-Forwarded-For: %b\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: %b\r\n"
                b"X-Forwarded-Port: %b\r\nX-Forwarded-Path: %b\r\n%bX-Real-IP: %b\r\n"
                b"X-Request-Id: %b\r\n"
            ) % (
                peer_bytes,
                forwarded_host,
                self.listen_port,
                raw_path.encode("latin-1"),
                match.prefix_line,
                peer_bytes,
                request_id,
            )
        else:
            added = forwarded_headers(forwarded, request_id)
        return await self.forwarder.forward(
            request,
            match,
            added=added,
            host=upstream_host,
            request_id=request_id,
            exchange=exchange,
            edits=edits,
            body=body,
            body_prefix=body_prefix,
        )

    def _https_required(
        self, route: Route, forwarded: Forwarded | None, host_header: str, raw_target: str
    ) -> web.Response:
        """Kong's answer on an https-only route to a request that did not come over TLS."""
        code = route.https_redirect_status_code
        if code == 426:
            return responses.use_https()
        host = redirect_host(forwarded.host if forwarded is not None else host_name(host_header))
        if host is None:
            return responses.bad_request()  # nothing sane to redirect to (nginx: 400 too)
        return responses.redirect(code, f"https://{host}{raw_target}")

    async def _read_searched_body(self, request: web.BaseRequest) -> tuple[bytes | None, bytes]:
        """(body, prefix): a form or JSON body of at most SEARCHED_BODY_LIMIT bytes, read whole so
        that a token in it can be found; else None, and the bytes of a chunked one read before
        it proved too long (its rest streams after them). A longer body is not searched: Kong
        does not search one nginx spilled to disk either."""
        length = request.content_length
        chunked = "Transfer-Encoding" in request.headers
        if (length is None and not chunked) or (
            length is not None and length > SEARCHED_BODY_LIMIT
        ):
            return None, b""
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(CONTINUE)
        timeout = self.settings.client_body_timeout  # paced as any body (BodyPace)
        if length is not None:
            return await read_small_body(request, length, timeout), b""
        pace, read = BodyPace(timeout), bytearray()
        while len(read) <= SEARCHED_BODY_LIMIT:
            chunk = await pace.read(request.content)
            if not chunk:
                return bytes(read), b""
            read += chunk
        return None, bytes(read)


def _read_host(host_header: str) -> tuple[str, bytes] | None:
    """(what routes match, nginx's $host for X-Forwarded-Host) of a Host header, or None when
    it names no host (400)."""
    if not host_header:
        return "", b""
    routed = routing_host(host_header)
    return None if routed is None else (routed, host_name(host_header).encode("latin-1"))


def _host_header(service: Service) -> bytes | None:
    """The Host the service's requests get (None: a balanced service's, per target)."""
    if service.upstream is not None:
        return None
    return host_value(service.host, service.port, service.protocol)


class GatewayServer:
    """Both listeners of one worker: the proxy and the status API (/healthz, /readyz, /metrics).
    `registry` holds the gateway's metrics (a new one when not given).

    `reload(config)` swaps in a new Gateway; `stop()` drains: listeners closed, idle
    keep-alive connections closed, requests in progress given `shutdown_timeout`, then cut."""

    def __init__(
        self,
        config: GatewayConfig,
        settings: GatewaySettings,
        *,
        reuse_port: bool = False,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.registry = registry if registry is not None else CollectorRegistry()
        # One set of figures for every generation: a reload keeps counting where it was.
        self.stats = GatewayStats(Metrics(self.registry))
        first = Gateway(config, settings, clock=clock, stats=self.stats)
        self._generations = Generations(Generation(first, number=1, loaded_at=clock()))
        self._scraped = scrape_registry(self.registry)
        self._publisher: asyncio.Task[None] | None = None
        self._session = session
        self._owns_session = False
        self._reuse_port = reuse_port
        self._cut = asyncio.Event()
        self._proxy_runner: web.ServerRunner | None = None
        self._status_runner: web.AppRunner | None = None
        self.proxy_port = settings.listen[1]
        self.status_port = settings.status_listen[1]
        self.ready = False
        self._stopping = False

    @property
    def gateway(self) -> Gateway:
        """The gateway new requests go to."""
        return self._generations.current.gateway

    @property
    def generation(self) -> int:
        """1 for the config the server started with, +1 for each reload."""
        return self._generations.current.number

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        settings = self.settings
        if self._session is None:
            # One client session per worker, for discovery and JWKS fetches only (the
            # forwarder has its own connection pools).
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"tokengate/{__version__}"},
                auto_decompress=True,
            )
            self._owns_session = True
        # Authenticators before the first request can arrive; key fetches once both ports are
        # ours (a busy port is reported alone, not after an IdP's fetch warnings).
        self.gateway.start_auth(self._session, warm=False)
        cap = connection_cap(settings.max_connections)
        warn_if_past_open_files(cap)
        server = HeadTimeoutServer(
            self._dispatch,
            head_timeout=settings.client_header_timeout,
            on_malformed=self._malformed,
            handler_cancellation=True,  # client gone → upstream exchange cancelled
            auto_decompress=False,  # bodies travel as the client encoded them
            keepalive_timeout=settings.keepalive_timeout,
            access_log=None,
            max_connections=cap,
        )
        # drain() cuts requests off after shutdown_timeout; aiohttp's own bound is a backstop.
        self._proxy_runner = web.ServerRunner(
            server, handle_signals=False, shutdown_timeout=settings.shutdown_timeout + 1
        )
        await self._proxy_runner.setup()
        host, port = settings.listen
        site = web.TCPSite(
            self._proxy_runner, host, port, reuse_port=self._reuse_port or None, backlog=1024
        )
        await _listen(site, "--listen")
        self.proxy_port = _bound_port(site)
        self.gateway.listen_port = b"%d" % self.proxy_port

        status_app = web.Application()
        status_app.on_response_prepare.append(name_server)
        status_app.router.add_get("/healthz", self._healthz)
        status_app.router.add_get("/readyz", self._readyz)
        status_app.router.add_get("/metrics", self._metrics)
        self._status_runner = GuardedAppRunner(
            status_app,
            head_timeout=settings.client_header_timeout,
            max_connections=STATUS_CONNECTIONS,
            handle_signals=False,
            access_log=None,
        )
        await self._status_runner.setup()
        shost, sport = settings.status_listen
        status_site = web.TCPSite(
            self._status_runner, shost, sport, reuse_port=self._reuse_port or None
        )
        await _listen(status_site, "--status-listen")
        self.status_port = _bound_port(status_site)
        if self.gateway.keys is not None:
            self.gateway.keys.start()
        if files_per_process():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_often())
        self.ready = True

    async def _dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        # The generation is read per request, not per connection: after a reload the next
        # request on a keep-alive connection meets the new routes.
        generation = self._generations.current
        generation.inflight += 1
        try:
            return await generation.gateway.handle(request)
        finally:
            generation.leave()

    def _malformed(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        self._generations.current.gateway.account_malformed(request, response)

    def reload(self, config: GatewayConfig) -> int:
        """Serve `config` from now on; returns its generation number. The new gateway is built
        whole before the swap; requests already running finish on the old one, which is closed
        (upstream pools, keys no longer used) once the last of them has ended."""
        old = self._generations.current
        gateway = Gateway(config, self.settings, clock=self._clock, stats=self.stats)
        gateway.listen_port = old.gateway.listen_port
        if self._session is not None and self._proxy_runner is not None:
            gateway.start_auth(self._session, previous=old.gateway.keys)  # else start() does
        number = old.number + 1
        self._generations.swap(Generation(gateway, number=number, loaded_at=self._clock()))
        old.gateway.retire()
        return number

    def cut_short(self) -> None:
        """End a `stop()` in progress now: requests still running are cut off, as when the
        grace period ends (a second Ctrl-C)."""
        self._cut.set()

    async def stop(self) -> None:
        self.ready = False
        self._stopping = True
        if self._proxy_runner is not None:
            for generation in self._generations.all():
                generation.gateway.forwarder.end_tunnels()
            grace = self.settings.shutdown_timeout
            await drain(self._proxy_runner, self._generations.all(), grace=grace, cut=self._cut)
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            self._publisher = None
        try:
            self.stats.publish()  # what in-flight requests added, before the worker goes
        except OSError as exc:  # the shared metrics files are gone: the rest must still close
            log.warning("last metrics not published: %s", exc)
        if self._status_runner is not None:
            await self._status_runner.cleanup()
        await self._generations.close()
        if self._owns_session and self._session is not None:
            await self._session.close()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _publish_often(self) -> None:
        # Other workers answer scrapes too: they read this worker's figures from its files.
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL)
            self.stats.publish()

    async def _metrics(self, request: web.Request) -> web.Response:
        self.stats.publish()
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self._scraped), headers={"Content-Type": content_type})

    async def _readyz(self, request: web.Request) -> web.Response:
        # Issuers are reported, never a reason to fail: an IdP outage must not take every
        # replica out of rotation (cached keys keep working; others answer 503 themselves).
        generation = self._generations.current
        gateway = generation.gateway
        keys = gateway.keys
        status = "stopping" if self._stopping else "ready" if self.ready else "starting"
        body = {
            "status": status,
            "routes": len(gateway.config.routes),
            "services": len(gateway.config.services),
            "issuers": keys.status() if keys is not None else [],
            "config": {"generation": generation.number, "loaded_at": _utc(generation.loaded_at)},
            "pid": os.getpid(),  # with --workers, which process answered
        }
        return web.json_response(body, status=200 if self.ready else 503, dumps=json.dumps)


class ListenError(OSError):
    """A listener could not bind; `flag` is the option that chose its address."""

    def __init__(self, flag: str, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.flag = flag
        self.cause = cause  # (a gaierror's errno is an EAI_ code, not an errno)


async def _listen(site: web.TCPSite, flag: str) -> None:
    try:
        await site.start()
    except OSError as exc:
        raise ListenError(flag, exc) from exc


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _bound_port(site: web.TCPSite) -> int:
    # aiohttp keeps the asyncio (or uvloop) Server here; its public API has no bound port.
    for sock in getattr(site._server, "sockets", None) or ():
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            return int(sock.getsockname()[1])
    raise RuntimeError("listener has no TCP socket")
