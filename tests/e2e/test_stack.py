"""The getting-started guide end to end, over real sockets: tokens the identity server issues,
checked by the gateway configured by config/kong.yaml, in front of the echo upstream."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from tests.e2e.conftest import (
    KONG_YAML,
    ROOT,
    SEED,
    call,
    echoed_header,
    issuer_of,
    kid,
    mint,
    new_stack,
    stack_settings,
)
from tests.ports import busy_port, connection_refused
from tokengate.gateway.config import load_config, parse_config
from tokengate.identity.seed import load_seed
from tokengate.panel import find_demo, show_panel
from tokengate.stack import IdentityService, Stack, StackError, run_stack


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


@pytest.mark.parametrize(
    ("host", "reached_on"), [("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]")]
)
async def test_listeners_on_a_wildcard_or_ipv6_address_are_reached_on_loopback(
    http: aiohttp.ClientSession, host: str, reached_on: str
) -> None:
    listeners = ("listen", "status_listen", "identity_listen", "echo_listen")
    async with new_stack(stack_settings(**dict.fromkeys(listeners, (host, 0)))) as stack:
        issuers = await stack.wait_ready(http)
        assert issuers and all(issuer["loaded"] for issuer in issuers), issuers
        for url in (stack.gateway_url, stack.status_url, stack.identity.url, stack.echo_url):
            assert re.fullmatch(rf"http://{re.escape(reached_on)}:[1-9][0-9]*", url), url
        status, body, _ = await call(http, stack, "/anything", await mint(http, stack))
        assert status == 200, body


async def test_an_ipv6_wildcard_listener_leaves_the_ipv4_wildcard_to_another_program(
    http: aiohttp.ClientSession,
) -> None:
    """[::]:port listens on IPv6 only, as nginx and asyncio's servers do (and as the CLI's
    check for two listeners on one port assumes): a program on 0.0.0.0:port is no clash."""
    with socket.socket() as other:
        other.bind(("0.0.0.0", 0))
        other.listen()
        port = other.getsockname()[1]
        async with new_stack(stack_settings(identity_listen=("::", port))) as stack:
            assert stack.identity.url == f"http://[::1]:{port}"
            assert all(issuer["loaded"] for issuer in await stack.wait_ready(http))
            status, body, _ = await call(http, stack, "/anything", await mint(http, stack))
            assert status == 200, body


@pytest.mark.parametrize(
    ("field", "flag"),
    [
        ("listen", "--listen"),
        ("status_listen", "--status-listen"),
        ("identity_listen", "--identity-listen"),
        ("echo_listen", "--echo-listen"),
    ],
)
async def test_a_port_in_use_is_named_with_the_flag_that_moves_it(field: str, flag: str) -> None:
    with busy_port() as port:
        stack = new_stack(stack_settings(**{field: ("127.0.0.1", port)}))
        with pytest.raises(StackError) as caught:
            async with stack:
                pass
    assert (caught.value.message, caught.value.exit_code) == (
        f"tokengate run: cannot listen on 127.0.0.1:{port}: address already in use; "
        f"choose another address with {flag}",
        1,
    )


async def test_every_listener_is_on_the_address_it_was_given_only(
    http: aiohttp.ClientSession,
) -> None:
    listeners = ("listen", "status_listen", "identity_listen", "echo_listen")
    async with new_stack(stack_settings(**dict.fromkeys(listeners, ("127.0.0.2", 0)))) as stack:
        await stack.wait_ready(http)
        assert stack.gateway is not None
        assert stack.gateway_url == f"http://127.0.0.2:{stack.gateway.proxy_port}"
        status, body, _ = await call(http, stack, "/anything", await mint(http, stack))
        assert status == 200, body
        ports = [stack.gateway.proxy_port, stack.gateway.status_port, stack.identity.address[1]]
        for port in [*ports, stack.echo_address[1]]:
            assert await connection_refused(port), port  # not on 127.0.0.1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"echo_listen": ("192.0.2.1", 0)},  # TEST-NET-1: an address of no host here
            "tokengate run: cannot listen on 192.0.2.1:0: cannot assign requested address; "
            "choose another address with --echo-listen",
        ),
        (
            {"data": "{tmp}"},
            "tokengate run: cannot open identity database {tmp}: [errno 21] is a directory: "
            "'{tmp}'",
        ),
    ],
    ids=["address not of this host", "data file a directory"],
)
async def test_what_cannot_be_opened_is_one_line_naming_it(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    fields = {key: str(tmp_path) if value == "{tmp}" else value for key, value in settings.items()}
    with pytest.raises(StackError) as caught:
        async with new_stack(stack_settings(**fields)):
            pass
    assert caught.value.exit_code == 1
    # (The system's own words: their case is the system's.)
    assert caught.value.message.lower() == message.format(tmp=tmp_path).lower()


@pytest.mark.parametrize("given", ["e2e-admin", None])
async def test_the_management_api_takes_the_admin_token_given_else_a_generated_one(
    http: aiohttp.ClientSession, given: str | None
) -> None:
    async with new_stack(stack_settings(admin_token=given)) as stack:
        if given is not None:
            assert stack.admin_token == given
        else:
            assert len(stack.admin_token) >= 24
        url = f"{stack.identity.url}/v1/auth-servers"
        for token, status in ((stack.admin_token, 200), ("wrong", 401)):
            async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == status


async def test_a_stopped_stack_leaves_no_listener_and_stops_again_harmlessly(
    http: aiohttp.ClientSession,
) -> None:
    stack = new_stack()
    async with stack:
        await stack.wait_ready(http)
        assert stack.gateway is not None
        ports = [stack.gateway.proxy_port, stack.gateway.status_port, stack.identity.address[1]]
        ports.append(stack.echo_address[1])
    await stack.stop()  # nothing left to stop
    for port in ports:
        assert await connection_refused(port), port


async def hold_a_request(url: str, path: str) -> asyncio.StreamWriter:
    """A request whose body never arrives: the server's drain waits for it."""
    where = URL(url)
    assert where.host is not None and where.port is not None
    _, writer = await asyncio.open_connection(where.host, where.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer e2e-admin\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.5)  # the handler is reading the body (not observable from here)
    return writer


@pytest.mark.parametrize("server", ["gateway", "echo", "identity"])
@pytest.mark.parametrize("cut", ["before the stop", "while it drains"])
async def test_a_second_ctrl_c_cuts_off_a_request_held_at_any_of_the_servers(
    stack: Stack, server: str, cut: str
) -> None:
    """The second Ctrl-C (`cut_short`) ends the stop at once, whichever server a request holds
    up, and whether the signal came while that server drains or before the stop began (the
    request then came after it): without it, the drain would wait its whole grace period."""
    url = {
        "gateway": stack.gateway_url + "/public",
        "echo": stack.echo_url + "/held",
        "identity": stack.identity.url + "/v1/auth-servers",
    }[server]
    if cut == "before the stop":
        stack.cut_short()
    held = await hold_a_request(url, URL(url).path)
    stopping = asyncio.create_task(stack.stop())
    if cut == "while it drains":
        for _ in range(100):  # the gateway stops first: past it, the others drain
            if server == "gateway" or stack.gateway is None:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert not stopping.done(), "the drain should wait for the held request"
        stack.cut_short()
    try:
        await asyncio.wait_for(stopping, 5)  # a drain left to itself waits 10 s or more
    finally:
        held.close()


async def test_the_identity_server_and_the_echo_upstream_log_no_access_lines(
    stack: Stack, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway's own access log (tokengate.access) is the one `tokengate run` shows."""
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    status, body, _ = await call(http, stack, "/anything", await mint(http, stack))
    assert status == 200, body
    assert [record for record in caplog.records if record.name == "aiohttp.access"] == []


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
    assert panel.startswith(
        f"tokengate is running; Ctrl-C stops it.\n\n  gateway          {stack.gateway_url}\n"
    )
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
    public = f"No token needed: curl -i {stack.gateway_url}/public  → HTTP/1.1 200 OK"
    assert panel.endswith(f"\n\n{public}\n\n")
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("body", ["OK", '{"headers": [["X-Test-Claim"]]}', '{"headers": [1, 2]}'])
async def test_the_panel_shows_what_an_upstream_of_the_users_own_answers(
    tmp_path: Path, body: str
) -> None:
    """`tokengate run --config` with a kong.yaml of the user's: the protected route's upstream
    is not the echo, and a JSON answer of its own (or one that only claims to be JSON) is
    shown as the status it had, not a traceback that ends `tokengate run`."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    upstream = TestServer(app, host="127.0.0.1")
    await upstream.start_server()
    config = tmp_path / "kong.yaml"
    echo_url = "url: http://127.0.0.1:9100"
    assert echo_url in KONG_YAML.read_text()
    config.write_text(
        KONG_YAML.read_text().replace(echo_url, f"url: http://127.0.0.1:{upstream.port}")
    )
    out = io.StringIO()
    try:
        async with Stack(stack_settings(), load_config(config), load_seed(SEED)) as running:
            await show_panel(running, out)
    finally:
        await upstream.close()
    panel = out.getvalue()
    assert '-H "Authorization: Bearer ' in panel
    assert "\n  → HTTP/1.1 200 OK\n" in panel  # no echoed headers to show
    assert "→ HTTP/1.1 401 Unauthorized" in panel


async def test_the_panel_of_a_config_without_an_open_route_ends_with_the_refusals(
    tmp_path: Path,
) -> None:
    text = KONG_YAML.read_text()
    public_route = '      - name: public\n        paths: ["/public"]\n        strip_path: false\n'
    assert public_route in text and "  - name: status-api\n" in text
    config = tmp_path / "kong.yaml"  # every route protected: /public and /status gone
    config.write_text(text.replace(public_route, "").split("  - name: status-api\n")[0])
    out = io.StringIO()
    async with Stack(stack_settings(), load_config(config), load_seed(SEED)) as running:
        await show_panel(running, out)
    panel = out.getvalue()
    assert "→ HTTP/1.1 200 OK; the echo upstream received X-Test-Claim: test" in panel
    assert panel.endswith(
        '      WWW-Authenticate: Bearer realm="127.0.0.1", error="insufficient_scope"\n\n'
    )
    assert "No token needed" not in panel


ROUTE = """\
_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:9100
    routes:
{routes}
"""
OIDC = """\
        plugins:
          - name: openid-connect
            config:
              issuer: {issuer}
              scopes_required: {scopes}
"""


def route(name: str, fields: str, issuer: str | None = None, scopes: str = "[my-scope]") -> str:
    text = f"      - name: {name}\n" + "".join(f"        {line}\n" for line in fields.split(";"))
    return text + (OIDC.format(issuer=issuer, scopes=scopes) if issuer else "")


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (  # the first protected and the first open route a bare `curl URL` reaches
            [
                route("p", "paths: [/anything];methods: [GET, POST]", "{ours}"),
                route("o", "paths: [/public]"),
            ],
            ("/anything", "my-scope", "/public"),
        ),
        ([route("p", "paths: [/a];hosts: [a.test]", "{ours}")], None),
        ([route("p", "paths: [/a];headers: {x-v: [v]}", "{ours}")], None),
        ([route("p", "paths: [/a];methods: [POST]", "{ours}")], None),
        ([route("p", 'paths: ["~/a$"]', "{ours}")], None),  # a regex: no URL to print
        ([route("p", 'paths: ["~/a$", /b]', "{ours}", scopes="[]")], ("/b", "", None)),
        (  # another issuer's route is skipped, and so is an open route with a host
            [
                route("o", "paths: [/open];hosts: [a.test]"),
                route("q", "paths: [/theirs]", "http://127.0.0.1:1/other/auth"),
                route("p", "paths: [/ours]", "{ours}", scopes="[read write, admin]"),
                route("o2", "paths: [/open2]"),
            ],
            ("/ours", "read write", "/open2"),
        ),
    ],
)
async def test_the_demo_is_a_route_a_bare_curl_reaches_with_a_seeded_client(
    tmp_path: Path, routes: list[str], expected: tuple[str, str, str | None] | None
) -> None:
    seeded = "    clients:\n      - id: appointments-client\n"
    assert seeded in SEED.read_text()
    seed_file = tmp_path / "seed.yaml"  # a client with no secret first: no token for it
    seed_file.write_text(
        SEED.read_text().replace(
            seeded, "    clients:\n      - id: no-secret\n        name: N\n" + seeded[13:]
        )
    )
    seed = load_seed(seed_file)
    identity = IdentityService(("127.0.0.1", 0), data=None, admin_token="t", seed=seed)
    await identity.start()
    try:
        ours = f"{identity.url}/appointmentsdev1/auth"
        text = ROUTE.format(routes="".join(routes).replace("{ours}", ours))
        demo = find_demo(parse_config(text), identity)
    finally:
        await identity.stop()
    if expected is None:
        assert demo is None
    else:
        assert demo is not None
        assert (demo.path, demo.scope, demo.public_path) == expected
        assert (demo.issuer, demo.client_id) == (ours, "appointments-client")


async def panel_of(config: str) -> str:
    """The panel of a stack running kong.yaml `config` (the shipped seed, ports 0)."""
    out = io.StringIO()
    async with Stack(stack_settings(), parse_config(config), load_seed(SEED)) as running:
        await show_panel(running, out)
    return out.getvalue()


async def test_the_panel_says_why_it_has_no_token_to_show() -> None:
    """A route protected by an issuer the identity server does not have: its keys never
    load (the panel gives up waiting after 10 s), and there is no seeded client to try."""
    issuer = "http://127.0.0.1:9000/nonexistent/auth"  # moved to the identity server's port
    panel = await panel_of(ROUTE.format(routes=route("p", "paths: [/p]", issuer)))
    (line,) = [line for line in panel.splitlines() if line.startswith("  issuer ")]
    assert (
        line.startswith("  issuer           http://127.0.0.1:") and "/nonexistent/auth  (" in line
    )
    assert "(keys NOT loaded yet: " in line and "no answer" not in line  # the error itself
    assert panel.startswith("tokengate is running; Ctrl-C stops it.\n")
    assert panel.endswith(
        "\n\nNo route in the config is protected by this identity server's issuers, so there\n"
        "is no token to try: see the README for an openid-connect plugin to add.\n\n"
    )


async def test_the_panel_says_why_the_token_endpoint_gave_no_token() -> None:
    issuer = "http://127.0.0.1:9000/appointmentsdev1/auth"
    config = ROUTE.format(routes=route("p", "paths: [/p]", issuer, scopes="[not-granted]"))
    panel = await panel_of(config)
    assert panel.startswith("tokengate is running; Ctrl-C stops it.\n")
    assert "(keys loaded by the gateway)\n" in panel
    assert "\n\nCould not try the protected route /p: the token endpoint answered 400: " in panel


async def test_the_panel_is_the_one_the_readme_shows(stack: Stack) -> None:
    """Line for line, once the ports, the admin token and the token are the README's."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```\ntokengate is running") + len("```\n")
    shown = readme[start : readme.index("```", start)]
    out = io.StringIO()
    await show_panel(stack, out)
    panel = out.getvalue()
    found = re.search(r'-H "Authorization: Bearer (\S+)"', panel)
    assert found is not None, panel
    for real, readmes in [
        (found.group(1), "eyJ0eXAiOiJKV1Qi..."),
        (stack.admin_token, "JN0S-ZF6o0YScePEaA9pc8MSLeFKyMuk"),
        (stack.gateway_url, "http://127.0.0.1:8000"),
        (stack.status_url, "http://127.0.0.1:8100"),
        (stack.identity.url, "http://127.0.0.1:9000"),
        (stack.echo_url, "http://127.0.0.1:9100"),
    ]:
        panel = panel.replace(real, readmes)
    assert panel == shown + "\n"


async def test_the_panel_of_a_route_that_needs_no_scope_asks_for_none() -> None:
    issuer = "http://127.0.0.1:9000/appointmentsdev1/auth"
    panel = await panel_of(ROUTE.format(routes=route("p", "paths: [/p]", issuer, scopes="[]")))
    assert "\nA token for appointments-client, minted just now (valid 3600 s):\n" in panel
    assert "-d client_secret=local-dev-secret-change-me\n" in panel  # and no -d scope
    assert "a token without" not in panel


class ClosedPipe(io.StringIO):
    """Standard output whose reader has gone (`tokengate run | head -1`): the panel's flush
    fails, once everything has started."""

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


# Left running, the listeners would be closed by uvloop's own close, with a ResourceWarning for
# each: as an error, that warning would hang the close instead of failing the asserts below.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_panel_that_cannot_be_shown_still_stops_everything_run_started(tmp_path: Path) -> None:
    data = tmp_path / "identity.db"
    out = ClosedPipe()
    settings = stack_settings(data=str(data))
    with pytest.raises(BrokenPipeError):
        run_stack(settings, load_config(KONG_YAML), load_seed(SEED), out=out)
    # The identity store was closed (SQLite removes its -wal and -shm files then)...
    assert sorted(path.name for path in tmp_path.iterdir()) == ["identity.db"]
    # ...and no listener is left: each port the panel named refuses connections.
    ports = {int(port) for port in re.findall(r"http://127\.0\.0\.1:(\d+)/", out.getvalue())}
    assert len(ports) >= 2, out.getvalue()  # the gateway's and the identity server's
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
