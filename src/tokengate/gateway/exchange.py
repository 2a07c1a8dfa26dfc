"""What one request learned on its way through the gateway, read once at its end.

    exchange = Exchange()
    exchange.stats = route_stats               # once routed (None: counted as "no route")
    response = await forwarder.forward(..., exchange=exchange)
    route_stats.finish(response.status, exchange)

Per-request state lives in this one small object (not on the aiohttp request, whose mapping
costs more), so that the metrics and the access-log line are written in one place. It has no
`__init__` and its defaults are class attributes: a request that changes nothing costs one bare
object, the cheapest Python can make (this runs on every request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tokengate.gateway.cors import AnswerEdit
    from tokengate.gateway.metrics import RouteStats
    from tokengate.gateway.upstream import UpstreamPool

# Who wrote the answer: Kong's `source` label values (kong.response.get_source()).
SERVICE: Final = 0  # the upstream's own answer, relayed
EXIT: Final = 1  # the gateway answered by rule: no route, bad request, auth refusal, 413, ...
ERROR: Final = 2  # the gateway got no usable answer from the upstream (502, 504), or failed (500)
SOURCES: Final = ("service", "exit", "error")


class Exchange:
    stats: RouteStats | None = None  # the matched route's figures; None before (or without) one
    source: int = EXIT
    outcome: str | None = None  # the openid-connect outcome; None: no plugin on the route
    auth_seconds: float = 0.0  # spent in the openid-connect check
    upstream_seconds: float | None = None  # until the upstream's response head arrived
    upstream: UpstreamPool | None = None  # whose connection carried the request (its host:port)
    body_bytes: int | None = None  # set by the forwarder for a streamed response
    path: str | None = None  # the request's path, without query (absolute-form: its path only)
    switched: bool = False  # a WebSocket tunnel was answered 101: its end is not an error
    client_ip: str | None = None  # a trusted proxy's X-Real-IP client; None: the peer
    answer_edit: AnswerEdit | None = None  # the route's cors headers, for whatever answers
