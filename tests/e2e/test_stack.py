"""The getting-started guide end to end, over real sockets: tokens the identity server issues,
checked by the gateway configured by config/kong.yaml, in front of the echo upstream."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import (
    call,
    echoed_header,
    issuer_of,
    kid,
    mint,
    new_stack,
    stack_settings,
)
from tokengate.panel import show_panel
from tokengate.stack import Stack


async def readyz_issuer(http: aiohttp.ClientSession, stack: Stack) -> dict[str, Any]:
    async with http.get(f"{stack.status_url}/readyz") as resp:
        (issuer,) = (await resp.json())["issuers"]
        return dict(issuer)


async def test_every_listener_on_port_0_gets_its_own_port(stack: Stack) -> None:
    assert stack.gateway is not None
    ports = {
        stack.gateway.proxy_port,
        stack.gateway.status_port,
        stack.identity.address[1],
        stack.echo_address[1],
    }
    assert 0 not in ports
    assert len(ports) == 4
    # kong.yaml's issuer (127.0.0.1:9000) was pointed at where the identity server listens.
    assert issuer_of(stack).startswith(stack.identity.url + "/")


async def test_a_token_with_the_scope_reaches_the_upstream_with_its_claims(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    token = await mint(http, stack)
    status, body, _ = await call(http, stack, "/anything/appointments?day=today", token)
    assert status == 200, body
    assert body["method"] == "GET"
    assert body["path"] == "/anything/appointments?day=today"
    assert echoed_header(body, "X-Test-Claim") == ["test"]
    assert echoed_header(body, "X-Client-Id") == ["appointments-client"]
    assert echoed_header(body, "Authorization") == [f"Bearer {token}"]


async def test_a_client_cannot_forge_the_claim_headers(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    token = await mint(http, stack)
    headers = {"Authorization": f"Bearer {token}", "X-Test-Claim": "forged"}
    async with http.get(stack.gateway_url + "/anything", headers=headers) as resp:
        assert resp.status == 200
        assert echoed_header(await resp.json(), "X-Test-Claim") == ["test"]


async def test_no_token_is_401(stack: Stack, http: aiohttp.ClientSession) -> None:
    status, body, resp = await call(http, stack, "/anything")
    assert status == 401
    assert body == {"message": "Unauthorized"}
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="127.0.0.1"'


async def test_a_token_of_the_seeded_client_without_the_scope_is_403(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    token = await mint(http, stack, scope=None)
    status, body, resp = await call(http, stack, "/anything", token)
    assert status == 403
    assert body == {"message": "Forbidden"}
    assert 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]


async def test_a_client_created_without_the_scope_gets_403(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    (server,) = stack.identity.servers
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    new_client = {
        "name": "No scopes",
        "grant_types": ["client_credentials"],
        "response_types": ["token"],
        "allow_all_scopes": False,
        "allow_scopes": [],
        "access_token_duration": 600,
    }
    url = f"{stack.identity.url}/v1/auth-servers/{server.id}/clients"
    async with http.post(url, json=new_client, headers=admin) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
    token = await mint(http, stack, scope=None, client=(created["id"], created["client_secret"]))
    status, body, _ = await call(http, stack, "/anything", token)
    assert (status, body) == (403, {"message": "Forbidden"})


async def test_the_public_route_and_the_status_route_need_no_token(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await call(http, stack, "/public/hello")
    assert status == 200
    assert body["path"] == "/public/hello"
    status, body, _ = await call(http, stack, "/status/readyz")
    assert status == 200
    assert body["status"] == "ready"


async def test_a_key_rotated_at_the_identity_server_is_picked_up(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    before = await mint(http, stack)
    assert (await call(http, stack, "/anything", before))[0] == 200
    fetches = (await readyz_issuer(http, stack))["fetches"]

    (server,) = stack.identity.servers
    url = f"{stack.identity.url}/admin/auth-servers/{server.id}/rotate-keys"
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with http.post(url, headers=admin) as resp:
        assert resp.status == 200
        rotated = await resp.json()
    after = await mint(http, stack)
    assert kid(after) == rotated["kid"] != kid(before)

    # An unknown kid makes the gateway refetch the JWKS once, at once (the first miss is
    # never throttled), so the new key works without waiting for a scheduled refresh.
    status, body, _ = await call(http, stack, "/anything", after)
    assert status == 200, body
    issuer = await readyz_issuer(http, stack)
    assert issuer["fetches"] == fetches + 1
    assert rotated["kid"] in issuer["kids"]
    assert rotated["previous_kid"] in issuer["kids"]  # published for a day after rotation
    assert (await call(http, stack, "/anything", before))[0] == 200


async def test_an_identity_restart_keeps_the_gateway_serving(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with new_stack(stack_settings(data=str(tmp_path / "identity.db"))) as stack:
        assert all(issuer["loaded"] for issuer in await stack.wait_ready(http))
        used = await mint(http, stack)
        assert (await call(http, stack, "/anything", used))[0] == 200  # now in the token cache
        unused = await mint(http, stack)  # never shown to the gateway yet
        address = stack.identity.address

        await stack.identity.stop()
        with pytest.raises(aiohttp.ClientConnectionError):
            await mint(http, stack)  # the identity server is really gone
        assert (await call(http, stack, "/anything", used))[0] == 200
        # Not in the token cache: verified with the keys the gateway already holds.
        assert (await call(http, stack, "/anything", unused))[0] == 200

        await stack.identity.start()  # same port, same data file
        assert stack.identity.address == address
        fresh = await mint(http, stack)
        assert kid(fresh) == kid(used)  # the signing key survived the restart
        status, body, _ = await call(http, stack, "/anything", fresh)
        assert status == 200, body
        assert echoed_header(body, "X-Test-Claim") == ["test"]


async def test_the_panel_shows_real_answers_and_a_token_that_works(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    out = io.StringIO()
    await show_panel(stack, out)
    panel = out.getvalue()
    assert f"admin token      {stack.admin_token}   (Authorization: Bearer" in panel
    assert f"issuer           {issuer_of(stack)}  (keys loaded by the gateway)" in panel
    found = re.search(r'curl -i (\S+) -H "Authorization: Bearer (\S+)"', panel)
    assert found is not None, panel
    url, token = found.groups()
    assert url == stack.gateway_url + "/anything"
    assert (
        "→ HTTP/1.1 200 OK; the echo upstream received X-Test-Claim: test, "
        "X-Client-Id: appointments-client" in panel
    )
    assert "→ HTTP/1.1 401 Unauthorized\n      WWW-Authenticate: Bearer realm=" in panel
    assert "→ HTTP/1.1 403 Forbidden\n      WWW-Authenticate: Bearer" in panel
    assert "client_secret=local-dev-secret-change-me -d scope=my-scope" in panel
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
