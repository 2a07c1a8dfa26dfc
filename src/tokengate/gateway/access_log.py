"""One line per request on the `tokengate.access` logger, at INFO.

    if access_log.enabled():    # once, at start: the gateway decides then
        access_log.write(request, response, exchange, request_id, seconds)

Fields: request_id, method, path (never the query string: it may carry a token), service, route,
status, latency_ms, upstream_latency_ms (null when not forwarded), upstream (the host:port the
request went to, a balanced service's target; null when none), auth (the openid-connect
outcome, null without the plugin), client_ip (the peer, or the client a --trusted-ips proxy
names in X-Real-IP; never X-Forwarded-For), bytes (of the response body). No header is logged,
so neither Authorization nor Cookie can be. In JSON they are the line's members (see
tokengate/logs.py); in text, one line:

    127.0.0.1 "GET /orders/7" 200 latency_ms=0.412 upstream_latency_ms=0.198
        upstream=10.0.0.7:8080 service=orders route=orders auth=cached bytes=113 id=5f0c...
        (one line; "-" for what is unknown, as nginx writes it)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Final

from aiohttp import web

from tokengate.gateway.exchange import Exchange
from tokengate.gateway.rawresponse import RawResponse

log = logging.getLogger("tokengate.access")

# The path (and method) of a request that could not be parsed, as nginx logs its request line.
UNPARSED: Final = "-"

_TEXT: Final = (
    '%(client_ip)s "%(method)s %(path)s" %(status)d latency_ms=%(latency_ms)s '
    "upstream_latency_ms=%(upstream_latency_ms)s upstream=%(upstream)s service=%(service)s "
    "route=%(route)s "
    "auth=%(auth)s bytes=%(bytes)s id=%(request_id)s"
)


def enabled() -> bool:
    return log.isEnabledFor(logging.INFO)


def write(
    request: web.BaseRequest,
    response: web.StreamResponse,
    exchange: Exchange,
    request_id: bytes,
    seconds: float,
) -> None:
    path = exchange.path
    if path is None:  # answered before the path was read ("*", ...)
        path = request.raw_path.split("?", 1)[0]
    # Never the query string (it may carry a token: access_token=...), nor an absolute-form
    # target's scheme, host and userinfo (credentials): only the path, as the gateway read it.
    if not (path.isascii() and path.isprintable()) or '"' in path or "\\" in path:
        # A text line stays one line, its quoted request has one reading, and an escape in it
        # is always ours: '"' and '\\' as nginx writes them, \x22 and \x5C.
        path = (
            path.encode("unicode_escape")
            .decode("ascii")
            .replace("\\\\", "\\x5C")
            .replace('"', "\\x22")
        )
    stats = exchange.stats
    upstream = exchange.upstream_seconds
    pool = exchange.upstream
    fields: dict[str, Any] = {
        "request_id": request_id.decode("ascii"),
        "method": UNPARSED if path is UNPARSED else request.method,
        "path": path,
        "service": stats.service if stats is not None else "",
        "route": stats.route if stats is not None else "",
        "status": response.status,
        # An unparsed request was answered before any clock of ours started: no latency.
        "latency_ms": None if path is UNPARSED else round(seconds * 1000.0, 3),
        "upstream_latency_ms": None if upstream is None else round(upstream * 1000.0, 3),
        "upstream": None if pool is None else f"{pool.host}:{pool.port}",
        "auth": exchange.outcome,
        "client_ip": exchange.client_ip or request.remote,
        "bytes": _body_bytes(response, exchange),
    }
    # Straight to the handlers (the level was checked when the gateway started): Logger.info
    # would also walk the stack for the caller's file and line, which nothing here shows.
    log.handle(
        log.makeRecord(
            log.name, logging.INFO, "", 0, _TEXT, (_Dashed(fields),), None, None, {"fields": fields}
        )
    )


class _Dashed(Mapping[str, Any]):
    """The fields as the text line shows them: "-" for null or empty, as nginx writes them
    (JSON lines keep their values). A view, so that a line nobody formats costs nothing more."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def __getitem__(self, key: str) -> Any:
        value = self._fields[key]
        return "-" if value is None or value == "" else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def _body_bytes(response: web.StreamResponse, exchange: Exchange) -> int | None:
    if isinstance(response, RawResponse):
        return response.body_size
    if exchange.body_bytes is not None:  # streamed: counted by the forwarder as it went
        return exchange.body_bytes
    if isinstance(response, web.Response):
        return response.content_length
    return None
