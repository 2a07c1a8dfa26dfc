"""The whole stack in-process on port 0, configured by the repository's own config/ files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from tokengate.gateway.config import load_config
from tokengate.identity.seed import load_seed
from tokengate.stack import Stack, StackSettings

ROOT = Path(__file__).resolve().parents[2]
KONG_YAML = ROOT / "config" / "kong.yaml"
SEED = ROOT / "config" / "identity-seed.yaml"
CLIENT_ID, CLIENT_SECRET = "appointments-client", "local-dev-secret-change-me"
ANY_PORT = ("127.0.0.1", 0)


def stack_settings(**fields: Any) -> StackSettings:
    values: dict[str, Any] = {
        "listen": ANY_PORT,
        "status_listen": ANY_PORT,
        "identity_listen": ANY_PORT,
        "echo_listen": ANY_PORT,
        "admin_token": "e2e-admin",
    }
    values.update(fields)
    return StackSettings(**values)


def new_stack(settings: StackSettings | None = None) -> Stack:
    return Stack(settings or stack_settings(), load_config(KONG_YAML), load_seed(SEED))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def stack(http: aiohttp.ClientSession) -> AsyncIterator[Stack]:
    async with new_stack() as running:
        issuers = await running.wait_ready(http)
        assert issuers, "config/kong.yaml has no issuer"
        assert all(issuer["loaded"] for issuer in issuers), issuers
        yield running


def issuer_of(stack: Stack) -> str:
    (server,) = stack.identity.servers
    return f"{stack.identity.url}/{server.issuer_id}/auth"


async def mint(
    http: aiohttp.ClientSession,
    stack: Stack,
    *,
    scope: str | None = "my-scope",
    client: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET),
) -> str:
    """A token from the identity server's /oauth/token, as any OAuth client gets one."""
    form = {"grant_type": "client_credentials", "client_id": client[0], "client_secret": client[1]}
    if scope is not None:
        form["scope"] = scope
    async with http.post(f"{issuer_of(stack)}/oauth/token", data=form) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["access_token"])


def kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def call(
    http: aiohttp.ClientSession, stack: Stack, path: str, token: str | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """GET through the gateway: status, JSON body, response."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.get(stack.gateway_url + path, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp


def echoed_header(body: Any, name: str) -> list[str]:
    """What the echo upstream received under `name` (every occurrence)."""
    return [value for key, value in body["headers"] if key.lower() == name.lower()]
