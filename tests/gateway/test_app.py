"""The status API beside the proxy: /healthz and /readyz."""

from __future__ import annotations

import asyncio
import os
import re

import aiohttp
import pytest

from tests.gateway.conftest import StartGateway, make_route, make_service, raw_request
from tests.gateway.support import KeepAliveUpstream, get


async def test_healthz_and_readyz_answer_once_listening(start_gateway: StartGateway) -> None:
    gw = await start_gateway(make_route(make_service(9), ("/a",)), make_route(None, ("/b",)))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{gw.status_port}/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "alive"}
        async with session.get(f"http://127.0.0.1:{gw.status_port}/readyz") as resp:
            assert resp.status == 200
            body = await resp.json()
    loaded_at = body["config"].pop("loaded_at")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", loaded_at)
    assert body == {
        "status": "ready",
        "routes": 2,
        "services": 1,
        "issuers": [],
        "config": {"generation": 1},
        "pid": os.getpid(),
    }


async def test_readyz_is_503_once_stopping(start_gateway: StartGateway) -> None:
    gw = await start_gateway(make_route(make_service(9)))
    gw.ready = False  # what stop() does first, before the listeners close
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gw.status_port}/readyz") as resp,
    ):
        assert resp.status == 503
        assert (await resp.json())["status"] == "starting"


async def test_readyz_is_503_stopping_while_requests_drain(start_gateway: StartGateway) -> None:
    """From the first moment of a shutdown, while requests in progress finish: out of rotation,
    and saying why (not "starting", which would read as a replica coming up)."""
    async with KeepAliveUpstream(slow_for=1.0) as upstream:
        gw = await start_gateway(make_route(make_service(upstream.port), strip_path=False))
        async with aiohttp.ClientSession() as session:
            slow = asyncio.create_task(get(session, gw, "/slow"))
            await asyncio.wait_for(upstream.slow_started.wait(), 2)
            stopping = asyncio.create_task(gw.stop())
            await asyncio.sleep(0.1)
            async with session.get(f"http://127.0.0.1:{gw.status_port}/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["status"] == "stopping"
            assert await slow == (200, "/slow")  # the drain let it finish
            await stopping


async def test_proxy_and_status_ports_are_distinct(start_gateway: StartGateway) -> None:
    gw = await start_gateway(make_route(make_service(9)))
    assert gw.proxy_port != gw.status_port
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{gw.proxy_port}/healthz") as resp,
    ):
        # The proxy does not serve the status API: this goes to the route's upstream,
        # which is down (port 9), so the gateway answers 502.
        assert resp.status == 502


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/nothing"])
async def test_status_answers_name_tokengate_as_their_server(
    start_gateway: StartGateway, path: str
) -> None:
    """As the proxy's own answers: the name without a version, never aiohttp's banner."""
    gw = await start_gateway(make_route(make_service(9)))
    answer = await raw_request(
        gw.status_port, b"GET %b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % path.encode()
    )
    head = answer.partition(b"\r\n\r\n")[0]
    assert b"\r\nServer: tokengate\r\n" in head, head
    assert b"aiohttp" not in head and b"Python" not in head, head
