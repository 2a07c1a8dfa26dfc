"""/metrics on the status port: after a known sequence of requests, exactly those figures.

Each test starts its own gateway on its own registry (never the global one), in front of an
in-process upstream and the test issuer. tests/test_metrics_workers.py sums them over workers.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import StartGateway, make_route, make_service, raw_request, serving
from tests.gateway.issuer import TestIssuer
from tests.gateway.support import KeepAliveUpstream
from tokengate.gateway import errors
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.auth import ANONYMOUS, CACHED, OK, PREFLIGHT
from tokengate.gateway.config import GatewayConfig, parse_config
from tokengate.gateway.keys import FetchError, fetch_result
from tokengate.gateway.metrics import UPSTREAM_BUCKETS
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.shared_metrics import ENV, forget_worker

Labels = frozenset[tuple[str, str]]


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    async with serving(ok) as server:
        yield server


async def scrape(gw: GatewayServer, accept: str | None = None) -> tuple[str, str]:
    headers = {"Accept": accept} if accept else {}
    url = f"http://127.0.0.1:{gw.status_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        assert resp.status == 200
        return resp.headers["Content-Type"], await resp.text()


def samples(text: str, name: str) -> dict[Labels, float]:
    """The non-zero samples called `name`, by their labels."""
    found: dict[Labels, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.value:
                found[frozenset(sample.labels.items())] = sample.value
    return found


def labels(**values: str) -> Labels:
    return frozenset(values.items())


async def get(gw: GatewayServer, path: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{gw.proxy_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        await resp.read()
        return resp.status


async def test_a_known_sequence_shows_exactly_its_counts(
    upstream: TestServer, start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    service = make_service(upstream.port, name="orders-svc")
    oidc = OidcConfig.for_issuer(test_issuer.issuer, scopes_required=("read",))
    registry = CollectorRegistry()
    gw = await start_gateway(
        make_route(service, ("/public",), name="public"),
        make_route(service, ("/auth",), name="orders", oidc=oidc),
        registry=registry,
    )
    token = test_issuer.mint(scope="read")
    assert await get(gw, "/public/x") == 200
    assert await get(gw, "/auth/x", token) == 200  # verified: a cache miss, then cached
    for _ in range(2):
        assert await get(gw, "/auth/x", token) == 200  # a cache hit, each time
    assert await get(gw, "/auth/x") == 401  # no token
    assert await get(gw, "/auth/x") == 401  # again: an outcome is counted, not only seen
    assert await get(gw, "/auth/x", token[:-4] + "AAAA") == 401  # forged signature
    assert await get(gw, "/auth/x", test_issuer.mint(scope="write")) == 403
    assert await get(gw, "/nothing") == 404
    bad_path = await raw_request(
        gw.proxy_port, b"GET /public/a%2Fb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert bad_path.startswith(b"HTTP/1.1 400")

    content_type, text = await scrape(gw)
    assert content_type.startswith("text/plain; version=0.0.4")
    svc = "orders-svc"
    assert samples(text, "kong_http_requests_total") == {
        labels(service=svc, route="public", code="200", source="service"): 1,
        labels(service=svc, route="orders", code="200", source="service"): 3,
        labels(service=svc, route="orders", code="401", source="exit"): 3,
        labels(service=svc, route="orders", code="403", source="exit"): 1,
        labels(service="", route="", code="404", source="exit"): 1,
        labels(service="", route="", code="400", source="exit"): 1,
    }
    assert samples(text, "tokengate_auth_outcomes_total") == {
        labels(service=svc, route="orders", outcome=OK): 1,
        labels(service=svc, route="orders", outcome=CACHED): 2,
        labels(service=svc, route="orders", outcome="missing_token"): 2,
        labels(service=svc, route="orders", outcome="bad_signature"): 1,
        labels(service=svc, route="orders", outcome="scope"): 1,
    }
    assert samples(text, "tokengate_auth_latency_seconds_count") == {
        labels(service=svc, route="orders"): 7
    }
    (auth_seconds,) = samples(text, "tokengate_auth_latency_seconds_sum").values()
    assert 0 < auth_seconds < 5.0
    assert samples(text, "tokengate_upstream_latency_seconds_count") == {
        labels(service=svc, route="public"): 1,
        labels(service=svc, route="orders"): 3,
    }
    # Hits: the repeated token, twice. Misses: the first sight of each of the three signed tokens.
    assert samples(text, "tokengate_token_cache_hits_total") == {labels(): 2}
    assert samples(text, "tokengate_token_cache_misses_total") == {labels(): 3}
    assert samples(text, "tokengate_token_cache_entries") == {labels(): 2}  # not the forgery
    assert samples(text, "tokengate_jwks_fetches_total") == {
        labels(issuer=test_issuer.issuer, result="ok"): 1
    }
    # A second scrape adds nothing: figures are moved into the metrics once.
    _, again = await scrape(gw)
    assert samples(again, "kong_http_requests_total") == samples(text, "kong_http_requests_total")
    # The caches' counts too: each scrape adds what happened since the last one.
    assert await get(gw, "/auth/x", token) == 200  # a hit
    assert await get(gw, "/auth/x", test_issuer.mint(scope="read")) == 200  # a miss
    _, third = await scrape(gw)
    assert samples(third, "tokengate_token_cache_hits_total") == {labels(): 3}
    assert samples(third, "tokengate_token_cache_misses_total") == {labels(): 4}


async def test_a_reload_keeps_counting_and_forgets_the_old_cache(
    upstream: TestServer, start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    service = make_service(upstream.port, name="orders-svc")
    oidc = OidcConfig.for_issuer(test_issuer.issuer)
    auth_route = make_route(service, ("/auth",), name="orders", oidc=oidc)
    gw = await start_gateway(auth_route, registry=CollectorRegistry())
    token = test_issuer.mint()
    assert await get(gw, "/auth/x", token) == 200
    assert await get(gw, "/auth/x", token) == 200
    routes = (auth_route, make_route(service, ("/new",), name="new"))
    gw.reload(GatewayConfig(services=(service,), routes=routes))
    assert await get(gw, "/new/x") == 200
    assert await get(gw, "/auth/x", token) == 200  # the new generation's cache: a miss
    await asyncio.sleep(0.1)  # the old generation closes once its last request has ended
    _, text = await scrape(gw)
    svc = "orders-svc"
    assert samples(text, "kong_http_requests_total") == {
        labels(service=svc, route="orders", code="200", source="service"): 3,
        labels(service=svc, route="new", code="200", source="service"): 1,
    }
    assert samples(text, "tokengate_token_cache_hits_total") == {labels(): 1}
    assert samples(text, "tokengate_token_cache_misses_total") == {labels(): 2}
    # One entry: the old generation's cache no longer counts.
    assert samples(text, "tokengate_token_cache_entries") == {labels(): 1}


async def test_a_reload_empties_the_old_cache_while_a_request_still_runs_on_it(
    start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    async with KeepAliveUpstream(slow_for=3.0) as upstream:  # the reload and scrape fit in it
        service = make_service(upstream.port)
        oidc = OidcConfig.for_issuer(test_issuer.issuer)
        auth_route = make_route(service, ("/",), name="all", oidc=oidc)
        gw = await start_gateway(auth_route, registry=CollectorRegistry())
        tokens = [test_issuer.mint() for _ in range(3)]
        for token in tokens:
            assert await get(gw, "/x", token) == 200
        slow = asyncio.create_task(get(gw, "/slow", tokens[0]))
        await asyncio.wait_for(upstream.slow_started.wait(), 2)
        gw.reload(GatewayConfig(services=(service,), routes=(auth_route,)))
        _, text = await scrape(gw)
        assert not slow.done()  # the old generation is still serving it...
        assert samples(text, "tokengate_token_cache_entries") == {}  # ...with its cache emptied
        assert await slow == 200


async def test_a_preflight_let_through_is_a_preflight_even_with_a_cached_token(
    upstream: TestServer, start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    service = make_service(upstream.port, name="svc")
    oidc = OidcConfig.for_issuer(test_issuer.issuer, run_on_preflight=False)
    gw = await start_gateway(
        make_route(service, ("/",), name="r", oidc=oidc), registry=CollectorRegistry()
    )
    token = test_issuer.mint()
    assert await get(gw, "/x", token) == 200  # the token is now cached
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Authorization": f"Bearer {token}",
    }
    url = f"http://127.0.0.1:{gw.proxy_port}/x"
    async with aiohttp.ClientSession() as session, session.options(url, headers=preflight) as resp:
        assert resp.status == 200
    _, text = await scrape(gw)
    assert samples(text, "tokengate_auth_outcomes_total") == {
        labels(service="svc", route="r", outcome=OK): 1,
        labels(service="svc", route="r", outcome=PREFLIGHT): 1,  # not "cached"
    }


async def test_histograms_fill_cumulative_buckets_and_sum(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port, name="s"), name="r"))
    for _ in range(3):
        assert await get(gw, "/x") == 200
    _, text = await scrape(gw)
    buckets = {
        dict(key)["le"]: value
        for key, value in samples(text, "tokengate_upstream_latency_seconds_bucket").items()
    }
    assert buckets["+Inf"] == 3
    assert len(buckets) <= len(UPSTREAM_BUCKETS) + 1
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    (total,) = samples(text, "tokengate_upstream_latency_seconds_sum").values()
    assert 0 < total < 3 * 5.0  # the upstream's read timeout
    # A scrape takes what it publishes: the next one shows the new request and nothing else.
    assert await get(gw, "/x") == 200
    _, again = await scrape(gw)
    assert samples(again, "tokengate_upstream_latency_seconds_count") == {
        labels(service="s", route="r"): 4
    }
    (later,) = samples(again, "tokengate_upstream_latency_seconds_sum").values()
    assert 0 < later - total < 0.5  # one local request's wait


async def test_the_latency_sum_adds_every_request(start_gateway: StartGateway) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.1)
        return web.Response(text="ok")

    async with serving(slow) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port, name="s"), name="r"))
        for _ in range(3):
            assert await get(gw, "/x") == 200
    _, text = await scrape(gw)
    (total,) = samples(text, "tokengate_upstream_latency_seconds_sum").values()
    assert 0.3 <= total < 3 * 5.0


async def test_gateway_failures_count_with_source_error(start_gateway: StartGateway) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket closes
    gw = await start_gateway(make_route(make_service(port, name="gone"), name="r"))
    assert await get(gw, "/x") == 502
    _, text = await scrape(gw)
    assert samples(text, "kong_http_requests_total") == {
        labels(service="gone", route="r", code="502", source="error"): 1
    }
    assert samples(text, "tokengate_upstream_latency_seconds_count") == {}


async def test_a_route_without_service_counts_with_its_route_name(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway(make_route(None, name="orphan"))
    assert await get(gw, "/x") == 503
    _, text = await scrape(gw)
    assert samples(text, "kong_http_requests_total") == {
        labels(service="", route="orphan", code="503", source="exit"): 1
    }


async def test_an_unnamed_route_is_labelled_by_its_id_as_in_kong(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    """Kong's exporter labels a route `route.name or route.id`: two unnamed routes of one
    service keep figures of their own, under the ids the file gives them."""
    ids = ("6a2b5c7d-1e3f-4a5b-8c9d-0e1f2a3b4c5d", "7b3c6d8e-2f40-4b6c-9dae-1f2a3b4c5d6e")
    config = parse_config(
        f"""_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:{upstream.port}
    routes:
      - {{id: {ids[0]}, paths: [/one]}}
      - {{id: {ids[1]}, paths: [/two]}}
      - {{name: named, id: 8c4d7e9f-3051-4c7d-8ebf-2a3b4c5d6e7f, paths: [/named]}}
""",
        "kong.yaml",
    )
    gw = await start_gateway(*config.routes)
    for path in ("/one", "/two", "/two", "/named"):
        assert await get(gw, path) == 200
    _, text = await scrape(gw)
    assert samples(text, "kong_http_requests_total") == {
        labels(service="s", route=ids[0], code="200", source="service"): 1,
        labels(service="s", route=ids[1], code="200", source="service"): 2,
        labels(service="s", route="named", code="200", source="service"): 1,
    }


async def test_two_gateways_keep_their_own_figures(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    route = make_route(make_service(upstream.port, name="s"), name="r")
    first, second = await start_gateway(route), await start_gateway(route)
    assert await get(first, "/x") == 200
    _, text = await scrape(second)
    assert samples(text, "kong_http_requests_total") == {}


async def test_metrics_speak_openmetrics_when_asked(
    upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port, name="s"), name="r"))
    assert await get(gw, "/x") == 200
    content_type, text = await scrape(gw, accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


async def test_key_fetch_failures_are_counted_by_result(
    upstream: TestServer, start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    test_issuer.down = True  # answers 503
    oidc = OidcConfig.for_issuer(test_issuer.issuer)
    gw = await start_gateway(make_route(make_service(upstream.port), oidc=oidc))
    assert await get(gw, "/x", test_issuer.mint()) == 503
    _, text = await scrape(gw)
    fetches = samples(text, "tokengate_jwks_fetches_total")
    assert set(fetches) == {labels(issuer=test_issuer.issuer, result="bad_response")}


@pytest.mark.parametrize(
    ("exc", "result"),
    [
        (TimeoutError(), "timeout"),
        (FetchError("HTTP 503"), "bad_response"),
        (aiohttp.ClientConnectionError("refused"), "unreachable"),
        (ConnectionRefusedError(), "unreachable"),
        (RuntimeError("bug"), "error"),
    ],
)
def test_fetch_results_are_a_fixed_set(exc: BaseException, result: str) -> None:
    assert fetch_result(exc) == result


def _auth_errors(cls: type[errors.AuthError]) -> list[type[errors.AuthError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _auth_errors(child))]


def test_auth_outcomes_are_a_bounded_set_of_distinct_labels() -> None:
    reasons = [cls.reason for cls in _auth_errors(errors.AuthError)]
    outcomes = [*reasons, OK, CACHED, ANONYMOUS, PREFLIGHT]
    assert len(set(outcomes)) == len(outcomes)
    assert all(outcome.isidentifier() and outcome.islower() for outcome in outcomes)


def test_forget_worker_drops_only_its_live_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    for name in ("gauge_livesum_41.db", "counter_41.db", "gauge_livesum_42.db"):
        (tmp_path / name).write_bytes(b"")
    forget_worker(41)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_41.db", "gauge_livesum_42.db"]
    forget_worker(None)  # a process that never started
