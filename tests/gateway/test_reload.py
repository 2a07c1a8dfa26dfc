"""A reload in one process: GatewayServer.reload swaps the Gateway, and Reloader reads the file.

Over real sockets, on port 0: routes change from the next request (kept-alive connections too),
a request in progress finishes on the routes it started with, the old gateway's upstream
connections are closed once it has, issuers both configs use keep their keys, and a bad file
is logged line by line while the old config keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.gateway.conftest import StartGateway, make_route, make_service
from tests.gateway.issuer import TestIssuer
from tests.gateway.support import (
    BAD_KONG_YAML,
    KeepAliveUpstream,
    config_of,
    eventually,
    get,
    route,
)
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.auth import key_source
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.reload import Reloader
from tokengate.gateway.settings import GatewaySettings


async def test_reload_changes_routes_from_the_next_request_on_a_kept_alive_connection(
    start_gateway: StartGateway,
) -> None:
    async with KeepAliveUpstream() as upstream:
        service = make_service(upstream.port)
        gw = await start_gateway(route(service, "/old"), route(service, "/keep"))
        # One connection for the whole test: a reload must not wait for clients to reconnect.
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            assert await get(session, gw, "/old") == (200, "/old")
            assert gw.reload(config_of(route(service, "/new"), route(service, "/keep"))) == 2
            assert (await get(session, gw, "/old"))[0] == 404
            assert await get(session, gw, "/new") == (200, "/new")
            assert await get(session, gw, "/keep") == (200, "/keep")
        assert gw.generation == 2


async def test_request_in_progress_finishes_on_the_old_config_then_its_pool_closes(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async with KeepAliveUpstream(slow_for=0.5) as upstream:
        service = make_service(upstream.port)
        gw = await start_gateway(route(service, "/slow"))
        async with aiohttp.ClientSession() as session:
            slow = asyncio.create_task(get(session, gw, "/slow"))
            await asyncio.wait_for(upstream.slow_started.wait(), 2)
            gw.reload(config_of(route(service, "/new")))
            # New requests: the new routes, through the new gateway's own upstream connection.
            assert (await get(session, gw, "/slow"))[0] == 404
            assert await get(session, gw, "/new") == (200, "/new")
            assert not slow.done()
            assert await slow == (200, "/slow")  # not cut by the reload
        old_conn = next(i for i, paths in enumerate(upstream.served) if paths == ["/slow"])
        new_conn = next(i for i, paths in enumerate(upstream.served) if paths == ["/new"])
        # The old gateway is closed once its last request ended: its pooled connection goes.
        await eventually(lambda: old_conn in upstream.closed)
        assert new_conn not in upstream.closed
    # The retired generation is let go once closed (no "Exception in callback" from asyncio).
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_reload_keeps_the_keys_of_an_issuer_both_configs_use(
    start_gateway: StartGateway, test_issuer: TestIssuer
) -> None:
    async with KeepAliveUpstream() as upstream, TestIssuer() as other_issuer:
        service = make_service(upstream.port)
        shared = OidcConfig.for_issuer(test_issuer.issuer)
        dropped = OidcConfig.for_issuer(other_issuer.issuer)
        gw = await start_gateway(
            route(service, "/a", oidc=shared),
            route(service, "/b", oidc=dropped),
        )
        headers = {"Authorization": f"Bearer {test_issuer.mint()}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            assert (await get(session, gw, "/a"))[0] == 200
            old_keys = gw.gateway.keys
            assert old_keys is not None
            shared_keys = old_keys.get(key_source(shared))
            fetches = test_issuer.jwks_hits
            # Changed requirements on the same issuer: a new authenticator, the same keys.
            stricter = OidcConfig.for_issuer(test_issuer.issuer, scopes_required=("read",))
            gw.reload(config_of(route(service, "/a", oidc=stricter)))
            assert (await get(session, gw, "/a"))[0] == 200
        assert test_issuer.jwks_hits == fetches  # no refetch, no cold start
        new_keys = gw.gateway.keys
        assert new_keys is not None
        assert new_keys.get(key_source(stricter)) is shared_keys
        assert [s["issuer"] for s in new_keys.status()] == [test_issuer.issuer]
        # The issuer only the old config used stays with the old registry, closed with it.
        assert [s["issuer"] for s in old_keys.status()] == [other_issuer.issuer]
        dropped_keys = old_keys.get(key_source(dropped))
        # The old gateway retires at once (no request on it); Gateway.close closes its keys,
        # then its upstream pool, whose one connection was the first the upstream saw.
        await eventually(lambda: 0 in upstream.closed)
        assert await dropped_keys.refresh() is False  # closed: no more fetches
        assert await shared_keys.refresh() is True  # still alive under the new registry


async def test_a_reload_before_start_still_gets_its_authentication(
    test_issuer: TestIssuer,
) -> None:
    async with KeepAliveUpstream() as upstream:
        service = make_service(upstream.port)
        settings = GatewaySettings(listen=("127.0.0.1", 0), status_listen=("127.0.0.1", 0))
        gw = GatewayServer(config_of(route(service, "/a")), settings)
        oidc = OidcConfig.for_issuer(test_issuer.issuer)
        gw.reload(config_of(route(service, "/a", oidc=oidc)))
        await gw.start()
        try:
            async with aiohttp.ClientSession() as session:
                assert (await get(session, gw, "/a"))[0] == 401
        finally:
            await gw.stop()


async def test_a_reload_keeps_the_servers_clock_and_fetches_a_new_issuers_keys(
    test_issuer: TestIssuer,
) -> None:
    """Tokens are judged by the clock the server was given, before a reload and after it; an
    issuer only the new config names gets its keys fetched (the server's session)."""
    then = 1_000_000_000.0  # 2001: every token minted for it expired long ago in real time
    async with KeepAliveUpstream() as upstream, TestIssuer() as added_issuer:
        added_issuer.add_key("ES256")
        test_issuer.clock = added_issuer.clock = lambda: then
        service = make_service(upstream.port)
        settings = GatewaySettings(listen=("127.0.0.1", 0), status_listen=("127.0.0.1", 0))
        oidc = OidcConfig.for_issuer(test_issuer.issuer)
        added = OidcConfig.for_issuer(added_issuer.issuer)
        first = config_of(route(service, "/a", oidc=oidc))
        gw = GatewayServer(first, settings, clock=lambda: then)
        await gw.start()
        try:
            async with aiohttp.ClientSession() as session:

                async def status(path: str, issuer: TestIssuer) -> int:
                    bearer = {"Authorization": f"Bearer {issuer.mint()}"}
                    url = f"http://127.0.0.1:{gw.proxy_port}{path}"
                    async with session.get(url, headers=bearer) as resp:
                        return resp.status

                assert await status("/a", test_issuer) == 200
                gw.reload(config_of(*first.routes, route(service, "/b", oidc=added)))
                assert await status("/a", test_issuer) == 200
                assert await status("/b", added_issuer) == 200
                url = f"http://127.0.0.1:{gw.status_port}/readyz"
                async with session.get(url) as resp:
                    assert (await resp.json())["config"] == {
                        "generation": 2,
                        "loaded_at": "2001-09-09T01:46:40Z",
                    }
        finally:
            await gw.stop()


async def test_readyz_reports_the_config_generation(start_gateway: StartGateway) -> None:
    gw = await start_gateway(make_route(make_service(9)))
    gw.reload(config_of(route(make_service(9), "/x")))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gw.status_port}/readyz") as resp,
    ):
        body = await resp.json()
    assert body["config"]["generation"] == 2
    assert body["routes"] == 1


# -- Reloader: the file -------------------------------------------------------------------------

GOOD = """\
_format_version: "3.0"
services:
  - name: up
    url: http://127.0.0.1:{port}
    routes:
      - name: r
        paths: ["{path}"]
        strip_path: false
"""


async def test_reloader_swaps_in_a_valid_file(start_gateway: StartGateway, tmp_path: Path) -> None:
    async with KeepAliveUpstream() as upstream:
        gw = await start_gateway(route(make_service(upstream.port), "/before"))
        path = tmp_path / "kong.yaml"
        path.write_text(GOOD.format(port=upstream.port, path="/after"))
        reloader = Reloader(gw, str(path))
        assert await reloader.reload() is True
        async with aiohttp.ClientSession() as session:
            assert (await get(session, gw, "/before"))[0] == 404
            assert await get(session, gw, "/after") == (200, "/after")


async def test_reloader_logs_every_error_of_a_bad_file_and_keeps_serving(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with KeepAliveUpstream() as upstream:
        gw = await start_gateway(route(make_service(upstream.port), "/before"))
        path = tmp_path / "kong.yaml"
        path.write_text(BAD_KONG_YAML)
        reloader = Reloader(gw, str(path))
        with caplog.at_level(logging.ERROR, logger="tokengate.reload"):
            assert await reloader.reload() is False
        messages = [record.getMessage() for record in caplog.records]
        assert f"{path}: services[0].url: scheme must be http or https" in messages
        unknown = f"{path}: services[0].routes[0].pathz: unknown field (did you mean 'paths'?)"
        assert unknown in messages
        assert any("still serving configuration 1" in m for m in messages)
        assert not any(record.exc_info for record in caplog.records)  # no traceback
        assert gw.generation == 1
        async with aiohttp.ClientSession() as session:
            assert await get(session, gw, "/before") == (200, "/before")


async def test_reloader_folds_requests_made_during_a_reload_into_one_more(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    async with KeepAliveUpstream() as upstream:
        gw = await start_gateway(route(make_service(upstream.port), "/before"))
        path = tmp_path / "kong.yaml"
        path.write_text(GOOD.format(port=upstream.port, path="/after"))
        reloader = Reloader(gw, str(path))
        for _ in range(5):  # a burst of SIGHUPs before the reloader runs
            reloader.request()
        reloader.start()
        try:
            await eventually(lambda: gw.generation == 2)
            await asyncio.sleep(0.1)
            assert gw.generation == 2
        finally:
            await reloader.close()
