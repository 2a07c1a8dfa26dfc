"""The /v1/auth-servers management API over HTTP: every operation's happy path, 401, 404, 409.

Runs the real app (create_admin_app mounted at /v1) on a real in-memory Store. Shared helpers
(`Admin`, `start_admin`) live here; test_admin_*.py import them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from tests.abandon import answer_to, leave_mid_body, served, server_errors
from tests.identity.support import pooled_key
from tokengate.identity.admin_api import create_admin_app
from tokengate.identity.store import Store, StoreError

TOKEN = "test-admin-token"
PUBLIC_URL = "http://id.test:9000"
START = datetime(2025, 1, 1, tzinfo=UTC)
JSON = dict[str, Any]


def ticking_clock() -> Callable[[], datetime]:
    """Each reading one second after the last: creation order is time order, deterministically."""
    seconds = itertools.count()
    return lambda: START + timedelta(seconds=next(seconds))


@dataclass
class Admin:
    """An HTTP client of the management API with the admin token, plus the store behind it."""

    http: TestClient[web.Request, web.Application]
    store: Store

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Any = None,
        token: str | None = TOKEN,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        kwargs: dict[str, Any] = {"headers": headers, "params": params}
        if raw is not None:
            kwargs["data"] = raw
            headers["Content-Type"] = "application/json"
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, f"/v1{path}", **kwargs) as resp:
            if resp.status == 204:
                return 204, None
            if resp.status >= 400:
                assert resp.content_type == "application/problem+json"
            return resp.status, await resp.json(content_type=None)

    async def ok(self, method: str, path: str, body: Any = None, *, status: int = 200) -> Any:
        got, data = await self.call(method, path, body)
        assert got == status, data
        return data

    async def server(self, **body: Any) -> JSON:
        body = {"name": f"server-{uuid.uuid4()}", "audience": "http://api.test", **body}
        data: JSON = await self.ok("POST", "/auth-servers", body, status=201)
        return data

    async def scope(self, asid: str, **body: Any) -> JSON:
        body = {"name": f"scope-{uuid.uuid4()}", **body}
        data: JSON = await self.ok("POST", f"/auth-servers/{asid}/scopes", body, status=201)
        return data

    async def claim(self, asid: str, **body: Any) -> JSON:
        body = {"name": "team", "value": "blue", **body}
        data: JSON = await self.ok("POST", f"/auth-servers/{asid}/claims", body, status=201)
        return data

    async def client(self, asid: str, **body: Any) -> JSON:
        body = {
            "name": f"client-{uuid.uuid4()}",
            "grant_types": ["client_credentials"],
            "response_types": ["token"],
            **body,
        }
        data: JSON = await self.ok("POST", f"/auth-servers/{asid}/clients", body, status=201)
        return data


def new_store() -> Store:
    """A real in-memory Store (use it as a context manager to close it)."""
    return Store.open(None, clock=ticking_clock(), key_factory=pooled_key)


async def start_admin(aiohttp_client: AiohttpClient, store: Store) -> Admin:
    app = web.Application()
    app.add_subapp("/v1", create_admin_app(store, admin_token=TOKEN, public_url=PUBLIC_URL + "/"))
    return Admin(await aiohttp_client(app), store)


@pytest.fixture
async def admin(aiohttp_client: AiohttpClient) -> AsyncIterator[Admin]:
    with new_store() as store:
        yield await start_admin(aiohttp_client, store)


def bad_fields(problem: JSON) -> dict[str, JSON]:
    """A 400 body's invalid_parameters by field (also checks there is one entry per field)."""
    assert problem["status"] == 400
    assert problem["title"] == "Bad Request"
    assert problem["instance"].startswith("kong:trace:")
    fields = [p["field"] for p in problem["invalid_parameters"]]
    assert len(fields) == len(set(fields)), fields
    return {p["field"]: p for p in problem["invalid_parameters"]}


async def test_a_client_leaving_mid_body_is_not_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = new_store()
    app = web.Application()
    app.add_subapp("/v1", create_admin_app(store, admin_token=TOKEN, public_url=PUBLIC_URL))
    with store:
        async with served(app) as url, aiohttp.ClientSession() as session:
            await leave_mid_body(url, "/v1/auth-servers", "application/json", bearer=TOKEN)
            assert server_errors(caplog) == []
            body = {"name": "After", "audience": "http://after.test"}
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with session.post(f"{url}/v1/auth-servers", json=body, headers=headers) as resp:
                assert resp.status == 201  # and the next client is served


async def problem_then_close(app: web.Application, request: bytes) -> tuple[bytes, Any]:
    """Send raw `request` bytes to `app`: the answer's head and problem body, after which the
    server has closed the connection."""
    async with served(app) as url:
        head, body = await answer_to(url, request, then_closed=True)
    return head, json.loads(body)


async def test_a_body_that_is_not_what_its_content_encoding_says_is_a_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """JSON labelled `Content-Encoding: gzip` that is not gzip (aiohttp's RequestPayloadError, as
    for a malformed chunk): a 400 on `body`, not a 500 with a traceback; the connection closes."""
    store = new_store()
    app = web.Application()
    app.add_subapp("/v1", create_admin_app(store, admin_token=TOKEN, public_url=PUBLIC_URL))
    body = b'{"name": "Gzip", "audience": "http://gzip.test"}'
    request = (
        f"POST /v1/auth-servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with store:
        head, problem = await problem_then_close(app, request)
        assert store.list_auth_servers() == []
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"\r\nConnection: close\r\n" in head
    assert bad_fields(problem)["body"]["rule"] == "invalid"
    assert server_errors(caplog) == []


async def test_a_body_that_stalls_is_cut_off_with_a_408(caplog: pytest.LogCaptureFixture) -> None:
    """A client that sends part of its body and stops would hold its connection for ever:
    nginx's client_body_timeout, a 408 problem that closes the connection."""
    store = new_store()
    app = web.Application()
    admin = create_admin_app(store, admin_token=TOKEN, public_url=PUBLIC_URL, body_timeout=0.1)
    app.add_subapp("/v1", admin)
    request = (
        f"POST /v1/auth-servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name": '
    ).encode()
    with store:
        head, problem = await problem_then_close(app, request)
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert problem["status"] == 408
    assert problem["title"] == "Request Timeout"
    assert server_errors(caplog) == []


async def sent_in_pieces(app: web.Application, head: bytes, pieces: list[bytes]) -> bytes:
    """The answer's head to a request whose body comes in `pieces`, 0.05 s apart."""
    async with served(app) as url:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(head)
            for piece in pieces:
                await asyncio.sleep(0.05)
                writer.write(piece)
                await writer.drain()
            return await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()


def admin_app(store: Store, body_timeout: float) -> web.Application:
    app = web.Application()
    app.add_subapp(
        "/v1",
        create_admin_app(
            store, admin_token=TOKEN, public_url=PUBLIC_URL, body_timeout=body_timeout
        ),
    )
    return app


async def test_a_body_that_keeps_coming_is_read_however_long_it_takes() -> None:
    """body_timeout times the gaps between two reads (nginx's client_body_timeout), not the
    whole body: pieces 0.05 s apart for over twice the 0.2 s allowed, above the gateway's
    minimum rate (500 bytes/s), are a body still coming."""
    fields = {"name": "Slow", "audience": "http://slow.test", "description": "d" * 500}
    body = json.dumps(fields).encode()
    pieces = [body[i : i + 64] for i in range(0, len(body), 64)]  # 9 pieces, 0.45 s in all
    head = (
        f"POST /v1/auth-servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with new_store() as store:
        answer = await sent_in_pieces(admin_app(store, body_timeout=0.2), head, pieces)
        assert answer.startswith(b"HTTP/1.1 201 "), answer
        assert [server.name for server in store.list_auth_servers()] == ["Slow"]


async def test_a_body_past_one_mib_is_a_413() -> None:
    size = (1 << 20) + 1
    head = (
        f"POST /v1/auth-servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    with new_store() as store:
        answer = await sent_in_pieces(admin_app(store, 60.0), head, [b" " * (size // 2)] * 3)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert store.list_auth_servers() == []


# ---- the getting-started guide ------------------------------------------------------------------


async def test_getting_started_guide_bodies_work_as_written(admin: Admin) -> None:
    server = await admin.ok(
        "POST",
        "/auth-servers",
        {
            "name": "Appointments Dev",
            "audience": "http://myhttpbin.dev",
            "description": "Auth server for the Appointment dev environment",
        },
        status=201,
    )
    asid = server["id"]
    scope = await admin.ok(
        "POST",
        f"/auth-servers/{asid}/scopes",
        {
            "name": "my-scope",
            "description": "Scope to test Kong Identity",
            "default": False,
            "include_in_metadata": False,
            "enabled": True,
        },
        status=201,
    )
    claim = await admin.ok(
        "POST",
        f"/auth-servers/{asid}/claims",
        {
            "name": "test-claim",
            "value": "test",
            "include_in_token": True,
            "include_in_all_scopes": False,
            "include_in_scopes": [scope["id"]],
            "enabled": True,
        },
        status=201,
    )
    client = await admin.ok(
        "POST",
        f"/auth-servers/{asid}/clients",
        {
            "name": "Client",
            "grant_types": ["client_credentials"],
            "allow_all_scopes": False,
            "allow_scopes": [scope["id"]],
            "access_token_duration": 3600,
            "id_token_duration": 3600,
            "response_types": ["id_token", "token"],
        },
        status=201,
    )
    assert server["issuer"].startswith(f"{PUBLIC_URL}/")
    assert claim["include_in_scopes"] == [scope["id"]]
    assert client["allow_scopes"] == [scope["id"]]
    assert client["response_types"] == ["id_token", "token"]
    assert client["access_token_duration"] == 3600
    found = admin.store.check_client_secret(asid, client["id"], client["client_secret"])
    assert found is not None
    assert found.id == client["id"]


# ---- rendering ----------------------------------------------------------------------------------


async def test_auth_server_renders_per_the_spec_with_its_defaults(admin: Admin) -> None:
    server = await admin.server(name="Dev", audience="api://default")
    stored = admin.store.get_auth_server(server["id"])
    issuer = f"{PUBLIC_URL}/{stored.issuer_id}/auth"
    assert server == {
        "id": stored.id,
        "name": "Dev",
        "description": "",
        "audience": "api://default",
        "signing_algorithm": "RS256",
        "issuer": issuer,
        "metadata_uri": f"{issuer}/.well-known/openid-configuration",
        "jwks_uri": f"{issuer}/.well-known/jwks",
        "labels": {},
        "trusted_origins": [],
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-01T00:00:00.000Z",
    }
    assert len(stored.issuer_id) == 16


async def test_scope_claim_and_client_render_with_the_spec_defaults(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    scope = await admin.scope(asid, name="read")
    assert set(scope) == {
        "id", "name", "description", "default", "include_in_metadata", "enabled",
        "created_at", "updated_at",
    }  # fmt: skip
    assert (scope["description"], scope["default"], scope["include_in_metadata"]) == (
        "",
        False,
        False,
    )
    assert scope["enabled"] is True
    claim = await admin.claim(asid)
    assert claim["include_in_token"] is False
    assert claim["include_in_all_scopes"] is False
    assert claim["include_in_scopes"] == []
    assert claim["enabled"] is True
    client = await admin.client(asid)
    assert {
        k: client[k] for k in client if k not in ("id", "name", "created_at", "updated_at")
    } == {
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "login_uri": None,
        "access_token_duration": 300,
        "id_token_duration": 300,
        "allow_all_scopes": False,
        "allow_scopes": [],
        "labels": {},
        "response_types": ["token"],
        "token_endpoint_auth_method": "client_secret_post",
        "client_secret": client["client_secret"],
    }
    assert len(client["client_secret"]) >= 32


async def test_claims_and_secrets_render_their_times(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    claim = await admin.claim(asid)
    assert set(claim) == {
        "id", "name", "value", "include_in_token", "include_in_all_scopes", "include_in_scopes",
        "enabled", "created_at", "updated_at",
    }  # fmt: skip
    client = await admin.client(asid)
    secrets = f"/auth-servers/{asid}/clients/{client['id']}/secrets"
    secret = await admin.ok("POST", secrets, {}, status=201)
    for entity in (claim, secret, (await admin.ok("GET", secrets))["data"][0]):
        created = datetime.strptime(entity["created_at"], "%Y-%m-%dT%H:%M:%S.%f%z")
        assert created >= START
        assert entity["updated_at"] == entity["created_at"]


async def test_times_render_in_utc_whatever_the_hosts_zone(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        server = await admin.server()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert server["created_at"] == "2025-01-01T00:00:00.000Z"


def test_an_empty_admin_token_is_refused() -> None:
    with (
        new_store() as store,
        pytest.raises(ValueError, match=r"^the admin token must not be empty$"),
    ):
        create_admin_app(store, admin_token="", public_url=PUBLIC_URL)


async def test_the_public_url_keeps_its_path_without_the_trailing_slash(
    aiohttp_client: AiohttpClient,
) -> None:
    with new_store() as store:
        app = web.Application()
        admin_app = create_admin_app(store, admin_token=TOKEN, public_url="http://gw.test/idX/")
        app.add_subapp("/v1", admin_app)
        server = await Admin(await aiohttp_client(app), store).server()
        issuer_id = store.get_auth_server(server["id"]).issuer_id
    assert server["issuer"] == f"http://gw.test/idX/{issuer_id}/auth"


# ---- auth servers -------------------------------------------------------------------------------


async def test_auth_server_crud(admin: Admin) -> None:
    server = await admin.server(
        name="Orders",
        audience="https://api.example.com/orders",
        description="orders",
        signing_algorithm="PS256",
        labels={"env": "test"},
        trusted_origins=["https://app.example.com"],
    )
    path = f"/auth-servers/{server['id']}"
    assert await admin.ok("GET", path) == server
    listed = await admin.ok("GET", "/auth-servers")
    assert listed == {"data": [server], "meta": {"page": {"number": 1, "size": 10, "total": 1}}}
    updated = await admin.ok("PATCH", path, {"name": "Orders 2", "signing_algorithm": "RS512"})
    assert updated["name"] == "Orders 2"
    assert updated["signing_algorithm"] == "RS512"
    assert updated["description"] == "orders"  # PATCH touches only the fields it names
    assert updated["labels"] == {"env": "test"}
    assert updated["issuer"] == server["issuer"]
    assert updated["updated_at"] > server["updated_at"]
    assert await admin.call("DELETE", path) == (204, None)
    status, problem = await admin.call("GET", path)
    assert status == 404
    assert problem["title"] == "Not Found"
    assert problem["detail"] == f"Auth server [{server['id']}] not found"


@pytest.mark.parametrize("kind", ["server", "scope", "claim", "client", "secret"])
async def test_patch_with_an_empty_body_changes_nothing(admin: Admin, kind: str) -> None:
    server = await admin.server()
    path, entity = f"/auth-servers/{server['id']}", server
    if kind != "server":
        parent = "client" if kind == "secret" else kind
        entity = await getattr(admin, parent)(server["id"])
        path = f"{path}/{parent}s/{entity['id']}"
    if kind == "secret":
        entity = await admin.ok("POST", f"{path}/secrets", {}, status=201)
        path = f"{path}/secrets/{entity['id']}"
    shown = {k: v for k, v in entity.items() if k not in ("client_secret", "secret")}
    assert await admin.ok("PATCH", path, {}) == shown  # updated_at included


async def test_labels_patch_sets_given_keys_removes_null_ones_keeps_others(admin: Admin) -> None:
    server = await admin.server(labels={"env": "test", "team": "blue", "tier": "1"})
    path = f"/auth-servers/{server['id']}"
    patched = await admin.ok("PATCH", path, {"labels": {"team": "red", "tier": None, "new": "x"}})
    assert patched["labels"] == {"env": "test", "team": "red", "new": "x"}
    cleared = await admin.ok("PATCH", path, {"labels": None})
    assert cleared["labels"] == {}


async def test_client_labels_patch_uses_the_same_rules(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    client = await admin.client(asid, labels={"env": "test", "team": "blue"})
    path = f"/auth-servers/{asid}/clients/{client['id']}"
    patched = await admin.ok("PATCH", path, {"labels": {"env": None}})
    assert patched["labels"] == {"team": "blue"}


@pytest.mark.parametrize("kind", ["server", "client"])
async def test_a_labels_patch_merges_into_the_labels_its_body_finds(
    admin: Admin, kind: str
) -> None:
    """A PATCH whose body is slow to arrive keeps a labels change made in the meantime."""
    server = await admin.server(labels={"env": "test"})
    path = f"/auth-servers/{server['id']}"
    if kind == "client":
        path += f"/clients/{(await admin.client(server['id'], labels={'env': 'test'}))['id']}"
    body = json.dumps({"labels": {"team": "red"}}).encode()
    reader, writer = await asyncio.open_connection(admin.http.host, admin.http.port)
    head = (
        f"PATCH /v1{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body[:1])
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is waiting for the rest of the body
    await admin.ok("PATCH", path, {"labels": {"tier": "1"}})
    writer.write(body[1:])
    await writer.drain()
    status = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status.startswith(b"HTTP/1.1 200 "), status
    labels = (await admin.ok("GET", path))["labels"]
    assert labels == {"env": "test", "team": "red", "tier": "1"}


async def test_delete_without_force_refuses_a_server_with_children(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    await admin.scope(asid)
    status, problem = await admin.call("DELETE", f"/auth-servers/{asid}")
    assert status == 400
    assert problem["invalid_parameters"] == [
        {
            "field": "force",
            "rule": "invalid",
            "reason": "the auth server still has clients, scopes or claims: "
            "pass force=true to delete them",
            "source": "query",
        }
    ]
    assert (await admin.call("GET", f"/auth-servers/{asid}"))[0] == 200


@pytest.mark.parametrize("child", ["scope", "claim", "client"])
async def test_delete_without_force_refuses_each_kind_of_child(admin: Admin, child: str) -> None:
    asid = (await admin.server())["id"]
    await getattr(admin, child)(asid)
    status, _ = await admin.call("DELETE", f"/auth-servers/{asid}", params={"force": "false"})
    assert status == 400


async def test_delete_an_empty_server_needs_no_force(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    assert await admin.call("DELETE", f"/auth-servers/{asid}") == (204, None)


async def test_force_delete_cascades_visibly(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    scope = await admin.scope(asid)
    claim = await admin.claim(asid, include_in_scopes=[scope["id"]])
    client = await admin.client(asid, allow_scopes=[scope["id"]])
    base = f"/auth-servers/{asid}"
    assert await admin.call("DELETE", base, params={"force": "true"}) == (204, None)
    for path in (
        base,
        f"{base}/scopes/{scope['id']}",
        f"{base}/claims/{claim['id']}",
        f"{base}/clients/{client['id']}",
        f"{base}/clients/{client['id']}/secrets",
        f"{base}/scopes",
    ):
        assert (await admin.call("GET", path))[0] == 404, path
    assert (await admin.ok("GET", "/auth-servers"))["data"] == []
    assert admin.store.check_client_secret(asid, client["id"], client["client_secret"]) is None


async def test_force_must_be_true_or_false(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    status, problem = await admin.call("DELETE", f"/auth-servers/{asid}", params={"force": "yes"})
    assert status == 400
    assert problem["invalid_parameters"] == [
        {
            "field": "force",
            "rule": "enum",
            "reason": "must be one of [true, false]",
            "choices": ["true", "false"],
            "source": "query",
        }
    ]


@pytest.mark.parametrize("query", ["force=true&force=false", "force=false&force=true"])
async def test_force_given_twice_is_refused(admin: Admin, query: str) -> None:
    asid = (await admin.server())["id"]
    scope = await admin.scope(asid)
    status, problem = await admin.call("DELETE", f"/auth-servers/{asid}?{query}")
    assert status == 400
    assert problem["invalid_parameters"] == [
        {"field": "force", "rule": "invalid", "reason": "must be given once", "source": "query"}
    ]
    assert await admin.ok("GET", f"/auth-servers/{asid}/scopes/{scope['id']}") == scope


# ---- scopes -------------------------------------------------------------------------------------


async def test_scope_crud(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    base = f"/auth-servers/{asid}/scopes"
    scope = await admin.scope(asid, name="read", description="reads", default=True)
    assert scope["default"] is True
    assert await admin.ok("GET", f"{base}/{scope['id']}") == scope
    assert (await admin.ok("GET", base))["data"] == [scope]
    patched = await admin.ok("PATCH", f"{base}/{scope['id']}", {"enabled": False})
    assert (patched["enabled"], patched["name"], patched["description"]) == (False, "read", "reads")
    assert await admin.call("DELETE", f"{base}/{scope['id']}") == (204, None)
    assert (await admin.call("GET", f"{base}/{scope['id']}"))[0] == 404
    assert (await admin.call("DELETE", f"{base}/{scope['id']}"))[0] == 404


async def test_deleting_a_scope_removes_it_from_claims_and_clients(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    keep, gone = await admin.scope(asid), await admin.scope(asid)
    claim = await admin.claim(asid, include_in_scopes=[keep["id"], gone["id"]])
    client = await admin.client(asid, allow_scopes=[gone["id"], keep["id"]])
    await admin.ok("DELETE", f"/auth-servers/{asid}/scopes/{gone['id']}", status=204)
    claim = await admin.ok("GET", f"/auth-servers/{asid}/claims/{claim['id']}")
    client = await admin.ok("GET", f"/auth-servers/{asid}/clients/{client['id']}")
    assert claim["include_in_scopes"] == [keep["id"]]
    assert client["allow_scopes"] == [keep["id"]]


# ---- claims -------------------------------------------------------------------------------------


async def test_claim_crud(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    scope = await admin.scope(asid)
    base = f"/auth-servers/{asid}/claims"
    claim = await admin.claim(asid, name="env", value="dev", include_in_token=True)
    assert await admin.ok("GET", f"{base}/{claim['id']}") == claim
    assert (await admin.ok("GET", base))["data"] == [claim]
    patched = await admin.ok("PATCH", f"{base}/{claim['id']}", {"include_in_scopes": [scope["id"]]})
    assert patched["include_in_scopes"] == [scope["id"]]
    assert (patched["name"], patched["value"], patched["include_in_token"]) == ("env", "dev", True)
    patched = await admin.ok("PATCH", f"{base}/{claim['id']}", {"value": '{"a": [1, 2]}'})
    assert patched["value"] == '{"a": [1, 2]}'
    assert await admin.call("DELETE", f"{base}/{claim['id']}") == (204, None)
    assert (await admin.call("GET", f"{base}/{claim['id']}"))[0] == 404


async def test_claim_names_may_repeat(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    await admin.claim(asid, name="team")
    await admin.claim(asid, name="team")


async def test_a_claim_of_json_nested_deeper_than_the_limit_is_created_as_text(
    admin: Admin,
) -> None:
    asid = (await admin.server())["id"]
    deep = "[" * 900 + "]" * 900  # parsed as JSON, too deep to be one (was a 500)
    assert (await admin.claim(asid, name="deep", value=deep))["value"] == deep


# ---- clients ------------------------------------------------------------------------------------


async def test_client_crud_shows_the_secret_once(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    scope = await admin.scope(asid)
    base = f"/auth-servers/{asid}/clients"
    created = await admin.client(
        asid,
        name="svc",
        allow_scopes=[scope["id"]],
        redirect_uris=["https://app.example.com/callback"],
        login_uri="https://app.example.com/login",
        labels={"env": "prod"},
        token_endpoint_auth_method="none",
    )
    shown = {k: v for k, v in created.items() if k != "client_secret"}
    assert await admin.ok("GET", f"{base}/{created['id']}") == shown
    assert (await admin.ok("GET", base))["data"] == [shown]
    patched = await admin.ok("PATCH", f"{base}/{created['id']}", {"access_token_duration": 60})
    assert patched["access_token_duration"] == 60
    assert patched["allow_scopes"] == [scope["id"]]
    assert "client_secret" not in patched
    assert await admin.call("DELETE", f"{base}/{created['id']}") == (204, None)
    assert (await admin.call("GET", f"{base}/{created['id']}"))[0] == 404


async def test_patch_client_secret_replaces_the_secrets(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    client = await admin.client(asid)
    path = f"/auth-servers/{asid}/clients/{client['id']}"
    patched = await admin.ok("PATCH", path, {"client_secret": "a-new-long-secret"})
    assert "client_secret" not in patched
    check = admin.store.check_client_secret
    assert check(asid, client["id"], "a-new-long-secret") is not None
    assert check(asid, client["id"], client["client_secret"]) is None


async def test_put_imports_a_client_with_its_id_and_secret(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    path = f"/auth-servers/{asid}/clients/kYa9iQFU5xPDSIUH9z1z"
    body = {
        "name": "Replace Client",
        "client_secret": "SecretPassword",
        "grant_types": ["client_credentials"],
        "response_types": ["token"],
    }
    status, client = await admin.call("PUT", path, body)
    assert status == 201
    assert client["id"] == "kYa9iQFU5xPDSIUH9z1z"
    assert "client_secret" not in client  # the spec answers PUT with Client, not CreatedClient
    found = admin.store.check_client_secret(asid, "kYa9iQFU5xPDSIUH9z1z", "SecretPassword")
    assert found is not None
    assert found.name == "Replace Client"
    assert await admin.ok("GET", path) == client


async def test_put_replaces_an_existing_client_wholly(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    existing = await admin.client(asid, access_token_duration=3600, labels={"env": "x"})
    path = f"/auth-servers/{asid}/clients/{existing['id']}"
    body = {
        "name": "renamed",
        "client_secret": "imported-secret",
        "grant_types": ["client_credentials"],
        "response_types": ["token"],
    }
    status, client = await admin.call("PUT", path, body)
    assert status == 200
    assert client["name"] == "renamed"
    assert client["access_token_duration"] == 300  # left out: back to the spec's default
    assert client["labels"] == {}
    assert client["created_at"] == existing["created_at"]
    check = admin.store.check_client_secret
    assert check(asid, existing["id"], "imported-secret") is not None
    assert check(asid, existing["id"], existing["client_secret"]) is None
    status, again = await admin.call("PUT", path, body)  # idempotent: updated_at stays too
    assert status == 200
    assert again == client
    body["name"] = "renamed again"
    changed = await admin.ok("PUT", path, body)
    assert changed["updated_at"] > client["updated_at"]
    assert check(asid, existing["id"], "imported-secret") is not None


async def test_put_needs_the_secret_and_a_valid_client_id(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    body = {"name": "x", "grant_types": [], "response_types": []}
    status, problem = await admin.call("PUT", f"/auth-servers/{asid}/clients/abc", body)
    assert status == 400
    assert bad_fields(problem)["client_secret"]["rule"] == "required"
    body["client_secret"] = "s"
    status, problem = await admin.call("PUT", f"/auth-servers/{asid}/clients/{'a' * 37}", body)
    assert status == 400
    assert bad_fields(problem)["clientId"]["source"] == "path"


# ---- errors: 401, 404, 405, 409 -----------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"{TOKEN}"],
)
async def test_every_request_needs_the_admin_token(admin: Admin, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in (
        ("GET", "/v1/auth-servers"),
        ("POST", "/v1/auth-servers"),
        ("GET", "/v1/nope"),
    ):
        async with admin.http.request(method, path, headers=headers, json={}) as resp:
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            problem = await resp.json(content_type=None)
            assert problem["status"] == 401
            assert problem["title"] == "Unauthorized"
            assert problem["detail"] == (
                "A valid admin token is required: Authorization: Bearer <token>"
            )
            # Konnect's correlation id: kong:trace:<up to 19 digits>, random, so rarely short
            assert re.fullmatch(r"kong:trace:[1-9][0-9]{9,18}", problem["instance"])
    assert admin.store.list_auth_servers() == []


@pytest.mark.parametrize(
    "authorization", [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}"]
)
async def test_the_bearer_scheme_is_case_insensitive(admin: Admin, authorization: str) -> None:
    """RFC 9110 §11.1: the scheme in any case; §11.4: one or more spaces before the token."""
    async with admin.http.get("/v1/auth-servers", headers={"Authorization": authorization}) as r:
        assert r.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/auth-servers/{missing}",
        "/auth-servers/{missing}/scopes",
        "/auth-servers/{missing}/claims",
        "/auth-servers/{missing}/clients",
        "/auth-servers/{asid}/scopes/{missing}",
        "/auth-servers/{asid}/claims/{missing}",
        "/auth-servers/{asid}/clients/nosuchclient",
        "/auth-servers/{asid}/clients/nosuchclient/secrets",
        "/auth-servers/{asid}/clients/nosuchclient/tokens",
        "/auth-servers/{asid}/clients/{cid}/secrets/{missing}",
        "/auth-servers/{asid}/clients/{cid}/tokens/{missing}",
    ],
)
async def test_unknown_entities_are_404(admin: Admin, path: str) -> None:
    asid = (await admin.server())["id"]
    cid = (await admin.client(asid))["id"]
    url = path.format(asid=asid, cid=cid, missing=uuid.uuid4())
    for method in ("GET", "PATCH", "DELETE"):
        status, problem = await admin.call(method, url, {} if method == "PATCH" else None)
        if status == 405:
            continue
        assert status == 404, (method, url, problem)
        assert problem["status"] == 404
        assert problem["title"] == "Not Found"
        assert problem["type"] == "https://httpstatuses.com/404"
        assert problem["instance"].startswith("kong:trace:")


async def test_creating_under_an_unknown_server_is_404(admin: Admin) -> None:
    missing = uuid.uuid4()
    for kind in ("scopes", "claims", "clients"):
        status, _ = await admin.call("POST", f"/auth-servers/{missing}/{kind}", {"name": "x"})
        assert status == 404


async def test_unknown_routes_and_methods_are_problems(admin: Admin) -> None:
    status, problem = await admin.call("GET", "/nope")
    assert (status, problem["title"], problem["detail"]) == (404, "Not Found", "Not Found")
    status, problem = await admin.call("PUT", "/auth-servers")
    assert (status, problem["title"]) == (405, "Method Not Allowed")
    assert problem["detail"] == "Method Not Allowed"
    async with admin.http.put(
        "/v1/auth-servers", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        assert set(r.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


@pytest.mark.parametrize(
    ("param", "path"),
    [
        ("authServerId", "/auth-servers/not-a-uuid"),
        ("authServerId", "/auth-servers/not-a-uuid/scopes"),
        ("scopeId", "/auth-servers/{asid}/scopes/42"),
        ("claimId", "/auth-servers/{asid}/claims/42"),
        ("clientId", "/auth-servers/{asid}/clients/bad.id"),
        ("clientSecretId", "/auth-servers/{asid}/clients/{cid}/secrets/42"),
        ("tokenId", "/auth-servers/{asid}/clients/{cid}/tokens/42"),
    ],
)
async def test_malformed_path_ids_are_400_naming_the_parameter(
    admin: Admin, param: str, path: str
) -> None:
    asid = (await admin.server())["id"]
    cid = (await admin.client(asid))["id"]
    for method in ("GET", "PATCH", "DELETE"):
        status, problem = await admin.call(method, path.format(asid=asid, cid=cid), {})
        if status == 405:
            continue
        assert status == 400, (method, problem)
        assert bad_fields(problem)[param]["source"] == "path"


async def test_uppercase_uuids_find_their_entities(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    assert (await admin.call("GET", f"/auth-servers/{asid.upper()}"))[0] == 200


async def test_duplicate_names_are_409(admin: Admin) -> None:
    server = await admin.server(name="taken")
    status, problem = await admin.call("POST", "/auth-servers", {"name": "taken", "audience": "a"})
    assert status == 409
    assert (problem["status"], problem["title"]) == (409, "Conflict")
    assert problem["detail"] == "An auth server with this name already exists"
    other = await admin.server()
    status, _ = await admin.call("PATCH", f"/auth-servers/{other['id']}", {"name": "taken"})
    assert status == 409
    asid = server["id"]
    scope, second = await admin.scope(asid, name="read"), await admin.scope(asid, name="write")
    status, problem = await admin.call("POST", f"/auth-servers/{asid}/scopes", {"name": "read"})
    assert status == 409
    assert problem["detail"] == "A scope with this name already exists"
    status, _ = await admin.call(
        "PATCH", f"/auth-servers/{asid}/scopes/{second['id']}", {"name": scope["name"]}
    )
    assert status == 409
    await admin.client(asid, name="svc")
    status, _ = await admin.call(
        "POST",
        f"/auth-servers/{asid}/clients",
        {"name": "svc", "grant_types": ["client_credentials"], "response_types": ["token"]},
    )
    assert status == 409


async def test_same_scope_name_in_two_servers_is_fine(admin: Admin) -> None:
    first, second = (await admin.server())["id"], (await admin.server())["id"]
    await admin.scope(first, name="read")
    await admin.scope(second, name="read")


async def test_a_non_ascii_token_is_401_not_500(admin: Admin) -> None:
    async with admin.http.get("/v1/auth-servers", headers={"Authorization": "Bearer tökén"}) as r:
        assert r.status == 401


async def test_a_store_failure_is_a_500_problem(
    admin: Admin, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise StoreError("disk I/O error")

    monkeypatch.setattr(admin.store, "list_auth_servers", broken)
    status, problem = await admin.call("GET", "/auth-servers")
    assert (status, problem["title"]) == (500, "Internal Server Error")
    assert problem["detail"] == "Internal error"  # the cause goes to the log, not to the client
    failure = f"admin API failure ({problem['instance']}) on GET /v1/auth-servers"
    assert failure in caplog.messages
    assert "disk I/O error" in caplog.text


async def test_two_apps_do_not_share_state(aiohttp_client: AiohttpClient) -> None:
    with new_store() as first_store, new_store() as second_store:
        first = await start_admin(aiohttp_client, first_store)
        second = await start_admin(aiohttp_client, second_store)
        await first.server(name="only-in-first")
        assert (await second.ok("GET", "/auth-servers"))["data"] == []
