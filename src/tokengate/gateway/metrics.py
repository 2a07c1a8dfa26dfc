"""Every metric the gateway exports, declared once on an injected registry, and the per-process
figures the request path adds to.

    stats = GatewayStats(Metrics(CollectorRegistry()))
    orders = stats.route("orders-svc", "orders")      # once per route, at startup
    orders.finish(200, exchange)                       # per request: dicts and lists, no locks
    stats.publish()                                    # at scrape time: figures → the metrics

Why two layers: prometheus-client's `inc()` and `observe()` take a lock and several calls each
(about 4,000 and 9,000 CPU instructions under callgrind, 2% and 4.5% of a whole proxied request),
so the request path only adds to plain numbers of this process, and `publish()` moves what has
accumulated into the prometheus-client metrics: at every scrape, and with `--workers` also every
second in each worker (see shared_metrics.py), so a scrape is always exact for the worker that
answers it and at most a second behind for the others.

Names: where Kong's prometheus plugin has the metric, its name, labels and meaning
(`kong_http_requests_total`), so dashboards and alerts written for Kong keep working; the rest
are `tokengate_*` in base units (seconds), as Prometheus's naming guide asks. Kong's latency
histograms are in milliseconds with buckets from 25 ms up, which would put every request of a
local gateway into the first bucket, hence `tokengate_upstream_latency_seconds` in their place.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tokengate.gateway.exchange import SOURCES, Exchange
from tokengate.gateway.token_cache import TokenCache

# Upstream answers: from a sub-millisecond local service to Kong's 60 s default read timeout.
UPSTREAM_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip
# Token checks: a cache hit takes microseconds, a signature check tens of them, a wait for the
# issuer's keys up to the 10 s fetch timeout.
AUTH_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """The prometheus-client metrics, on one registry (never the global one: two gateways in
    one test process must not collide)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        route = ("service", "route")
        self.requests = Counter(
            "kong_http_requests",
            "HTTP status codes per service/route (Kong's metric); source: service (the "
            "upstream's answer), exit (the gateway answered by rule), error (no upstream answer)",
            (*route, "code", "source"),
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "tokengate_upstream_latency_seconds",
            "Time from sending a request upstream to its response head",
            route,
            buckets=UPSTREAM_BUCKETS,
            registry=registry,
        )
        self.auth_outcomes = Counter(
            "tokengate_auth_outcomes",
            "openid-connect results: ok, cached, anonymous, preflight, or why it refused",
            (*route, "outcome"),
            registry=registry,
        )
        self.auth_latency = Histogram(
            "tokengate_auth_latency_seconds",
            "Time spent checking a request's token (extraction, cache or verification, rules)",
            route,
            buckets=AUTH_BUCKETS,
            registry=registry,
        )
        self.token_cache_hits = Counter(
            "tokengate_token_cache_hits", "Verified-token cache hits", registry=registry
        )
        self.token_cache_misses = Counter(
            "tokengate_token_cache_misses",
            "Verified-token cache misses (unknown or expired entry)",
            registry=registry,
        )
        self.token_cache_entries = Gauge(
            "tokengate_token_cache_entries",
            "Tokens held in the verified-token caches",
            registry=registry,
            multiprocess_mode="livesum",  # summed over the workers alive
        )
        self.jwks_fetches = Counter(
            "tokengate_jwks_fetches",
            "Discovery + JWKS fetches per issuer; result: ok, timeout, unreachable, "
            "bad_response, error",
            ("issuer", "result"),
            registry=registry,
        )

    def key_fetched(self, issuer: str, result: str) -> None:
        # A fetch is rare (minutes apart): counted at once, straight into the metric.
        self.jwks_fetches.labels(issuer, result).inc()


class Latency:
    """One histogram's observations in this process since the last publish."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0

    def take(self) -> tuple[list[int], float] | None:
        """The observations since the last take; None when there were none."""
        counts, total = self.counts, self.total
        if not any(counts):
            return None
        self.counts, self.total = [0] * len(counts), 0.0
        return counts, total


def _add_observations(child: Histogram, counts: list[int], total: float) -> None:
    # prometheus-client has no call that adds many observations at once; these are the values
    # Histogram.observe() itself adds to: one per bucket (not cumulative), and the sum.
    # tests/gateway/test_metrics.py reads the histograms back, so a change there shows.
    for value, count in zip(child._buckets, counts, strict=True):
        if count:
            value.inc(count)
    child._sum.inc(total)


class RouteStats:
    """The figures of one (service, route) label pair; ("", "") for requests without a route."""

    __slots__ = ("auth_latency", "outcomes", "responses", "route", "service", "upstream_latency")

    def __init__(self, service: str, route: str) -> None:
        self.service = service
        self.route = route
        # Requests by status, one dict per source (indexed by exchange.SERVICE, EXIT, ERROR).
        self.responses: tuple[dict[int, int], ...] = tuple({} for _ in SOURCES)
        self.outcomes: dict[str, int] = {}
        self.auth_latency = Latency(AUTH_BUCKETS)
        self.upstream_latency = Latency(UPSTREAM_BUCKETS)

    def finish(self, status: int, exchange: Exchange) -> None:
        """Count one answered request. Every figure in one call, with the histograms' observe
        written out in place: this runs on each request, and calls are what costs here."""
        codes = self.responses[exchange.source]
        codes[status] = codes.get(status, 0) + 1
        seconds = exchange.upstream_seconds
        if seconds is not None:
            latency = self.upstream_latency
            # The first bound >= seconds: Prometheus buckets are "less than or equal".
            latency.counts[bisect_left(latency.bounds, seconds)] += 1
            latency.total += seconds
        outcome = exchange.outcome
        if outcome is not None:
            outcomes = self.outcomes
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            seconds = exchange.auth_seconds
            latency = self.auth_latency
            latency.counts[bisect_left(latency.bounds, seconds)] += 1
            latency.total += seconds

    def publish(self, metrics: Metrics) -> None:
        # No await in here: nothing counts while the figures are moved and cleared.
        labels = (self.service, self.route)
        for name, codes in zip(SOURCES, self.responses, strict=True):
            for status, count in codes.items():
                metrics.requests.labels(*labels, str(status), name).inc(count)
            codes.clear()
        for outcome, count in self.outcomes.items():
            metrics.auth_outcomes.labels(*labels, outcome).inc(count)
        self.outcomes.clear()
        taken = self.auth_latency.take()
        if taken is not None:
            _add_observations(metrics.auth_latency.labels(*labels), *taken)
        taken = self.upstream_latency.take()
        if taken is not None:
            _add_observations(metrics.upstream_latency.labels(*labels), *taken)


class GatewayStats:
    """All figures of one gateway process and the metrics they are published into."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.unrouted = RouteStats("", "")
        self._routes = {("", ""): self.unrouted}
        self._caches: list[tuple[TokenCache, list[int]]] = []  # and [hits, misses] published

    def route(self, service: str, route: str) -> RouteStats:
        """The figures for these labels (routes with the same labels share them)."""
        stats = self._routes.get((service, route))
        if stats is None:
            stats = self._routes[(service, route)] = RouteStats(service, route)
        return stats

    def watch_cache(self, cache: TokenCache) -> None:
        """Publish this cache's own hit and miss counts and size (it keeps them anyway)."""
        self._caches.append((cache, [0, 0]))

    def forget_cache(self, cache: TokenCache) -> None:
        """A reloaded-away gateway's cache: its last hits and misses are published, its entries
        no longer counted."""
        self.publish()
        self._caches = [(c, seen) for c, seen in self._caches if c is not cache]

    def publish(self) -> None:
        metrics = self.metrics
        for stats in self._routes.values():
            stats.publish(metrics)
        entries = 0
        for cache, seen in self._caches:
            hits, misses = cache.hits, cache.misses
            if hits > seen[0]:
                metrics.token_cache_hits.inc(hits - seen[0])
            if misses > seen[1]:
                metrics.token_cache_misses.inc(misses - seen[1])
            seen[0], seen[1] = hits, misses
            entries += len(cache)
        metrics.token_cache_entries.set(entries)
