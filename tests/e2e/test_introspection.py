"""introspect_jwt_tokens against the local Kong Identity: a token the identity server revoked
stops passing the gateway, which asks the issuer's /introspect (discovery names it)."""

from __future__ import annotations

import aiohttp

from tests.e2e.conftest import CLIENT_ID, CLIENT_SECRET, KONG_YAML, SEED, call, mint, stack_settings
from tokengate.gateway.config import parse_config
from tokengate.identity.seed import load_seed
from tokengate.stack import Stack


def introspecting_config() -> str:
    """config/kong.yaml with the appointments route introspecting every token, uncached."""
    text = KONG_YAML.read_text()
    marker = '              auth_methods: ["bearer"]\n'
    assert marker in text
    return text.replace(
        marker,
        marker
        + "              introspect_jwt_tokens: true\n"
        + "              cache_introspection: false\n"
        + f"              client_id: [{CLIENT_ID}]\n"
        + f"              client_secret: [{CLIENT_SECRET}]\n",
    )


async def test_a_token_revoked_at_the_identity_server_stops_passing() -> None:
    config = parse_config(introspecting_config())
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        Stack(stack_settings(), config, load_seed(SEED)) as stack,
    ):
        await stack.wait_ready(http)
        token = await mint(http, stack)
        assert (await call(http, stack, "/anything", token))[0] == 200
        (server,) = stack.identity.servers
        url = f"{stack.identity.url}/v1/auth-servers/{server.id}/clients/{CLIENT_ID}/tokens"
        admin = {"Authorization": f"Bearer {stack.admin_token}"}
        async with http.delete(url, headers=admin) as resp:
            assert resp.status == 204
        status, body, response = await call(http, stack, "/anything", token)
        assert status == 401, body
        assert response.headers["WWW-Authenticate"].endswith('error="invalid_token"')
        assert (await call(http, stack, "/anything", await mint(http, stack)))[0] == 200
