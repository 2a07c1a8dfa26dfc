"""The assembled identity server: issuers + /v1 + key rotation, seeding, restarts, and a token
it issues accepted by the gateway."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import textwrap
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.gateway.support import eventually
from tests.identity.support import IdentityTestServer, pooled_key
from tests.identity.test_admin_api import new_store
from tokengate.identity.app import create_identity_app
from tokengate.identity.models import AuthServer, IssuedToken
from tokengate.identity.seed import SeedError, apply_seed, load_seed
from tokengate.identity.signing import SpareKeys
from tokengate.identity.store import Store

SEED = Path(__file__).resolve().parents[2] / "config" / "identity-seed.yaml"
CLIENT = {"client_id": "appointments-client", "client_secret": "local-dev-secret-change-me"}


async def start(store: Store, public_url: str | None = None) -> TestClient[Any, Any]:
    server = TestServer(web.Application(), host="127.0.0.1")  # only to pick a port
    await server.start_server()
    port = server.port
    await server.close()
    app = create_identity_app(
        store, admin_token="adm", public_url=public_url or f"http://127.0.0.1:{port}"
    )
    client = TestClient(IdentityTestServer(app, host="127.0.0.1", port=port))
    await client.start_server()
    return client


@dataclass(frozen=True)
class Seeded:
    store: Store
    server: AuthServer  # the dev seed's
    client: TestClient[Any, Any]


@pytest.fixture
async def seeded() -> AsyncIterator[Seeded]:
    """An in-memory identity server with the dev seed applied, closed after the test. Its
    store reads the real clock, as the token endpoint does for `iat` and `exp`: key grace
    periods are compared with the tokens' expiry."""
    store = Store.open(None, key_factory=pooled_key)
    (server,) = apply_seed(store, load_seed(SEED))
    client = await start(store)
    try:
        yield Seeded(store, server, client)
    finally:
        await client.close()
        store.close()


async def token(client: TestClient[Any, Any], issuer_id: str, **form: str) -> dict[str, Any]:
    resp = await client.post(
        f"/{issuer_id}/auth/oauth/token",
        data={"grant_type": "client_credentials", **CLIENT, **form},
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def jwks(client: TestClient[Any, Any], issuer_id: str) -> jwt.PyJWKSet:
    resp = await client.get(f"/{issuer_id}/auth/.well-known/jwks")
    return jwt.PyJWKSet.from_dict(await resp.json())


def verify(access_token: str, keys: jwt.PyJWKSet, issuer: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(access_token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        access_token, key, algorithms=["RS256"], audience="http://myhttpbin.dev", issuer=issuer
    )
    return claims


async def test_seed_applies_and_issues_the_guides_token(seeded: Seeded) -> None:
    server, client = seeded.server, seeded.client
    answer = await token(client, server.issuer_id, scope="my-scope")
    issuer = f"{str(client.make_url('')).rstrip('/')}/{server.issuer_id}/auth"
    claims = verify(answer["access_token"], await jwks(client, server.issuer_id), issuer)
    assert claims["scope"] == "my-scope" and claims["test-claim"] == "test"
    assert claims["sub"] == claims["client_id"] == "appointments-client"
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600


def test_seed_is_idempotent() -> None:
    """Applying the seed again (each start does) changes nothing, not even an updated_at."""

    def everything(server_id: str) -> list[object]:
        clients = store.list_clients(server_id)
        return [
            store.get_auth_server(server_id),
            store.list_scopes(server_id),
            store.list_claims(server_id),
            clients,
            [store.list_secrets(server_id, c.id) for c in clients],
        ]

    store = new_store()
    try:
        seed = load_seed(SEED)
        first = apply_seed(store, seed)
        before = everything(first[0].id)
        second = apply_seed(store, seed)
        assert [s.id for s in first] == [s.id for s in second]
        assert everything(first[0].id) == before
        (server,) = second
        assert [s.name for s in store.list_scopes(server.id)] == ["my-scope"]
        assert [c.name for c in store.list_claims(server.id)] == ["test-claim"]
        assert [c.id for c in store.list_clients(server.id)] == ["appointments-client"]
        assert store.check_client_secret(server.id, CLIENT["client_id"], CLIENT["client_secret"])
    finally:
        store.close()


def test_seed_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(
        textwrap.dedent("""
        auth_servers:
          - name: x
            issuer_id: TOO-SHORT
            colour: blue
            scope: [{name: typo}]
            scopes: [{name: a}, {name: "read write"}]
            claims:
              - {name: c, value: "${ .Nope | frobnicate }", include_in_scopes: [b]}
              - {name: sub, value: me}
            clients: [{name: k, access_token_duration: 5, redirect_uri: [x]}]
        """)
    )
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    errors = caught.value.errors
    assert f"{path}: auth_servers[0].audience: is required" in errors
    assert f"{path}: auth_servers[0].colour: unknown field" in errors
    typo = "unknown field (did you mean 'redirect_uris'?)"
    assert f"{path}: auth_servers[0].clients[0].redirect_uri: {typo}" in errors
    nested = "unknown field (did you mean 'scopes'?)"  # a key read apart from the others
    assert f"{path}: auth_servers[0].scope: {nested}" in errors
    assert f"{path}: auth_servers[0].issuer_id: must be 16 lower-case letters and digits" in errors
    assert any(e.startswith(f"{path}: auth_servers[0].claims[0].value: ") for e in errors)
    assert (
        f"{path}: auth_servers[0].claims[0].include_in_scopes: no scope named 'b' in this auth "
        "server's seed" in errors
    )
    assert any("clients[0].access_token_duration" in e for e in errors)
    assert (
        f"{path}: auth_servers[0].scopes[1].name: must be printable ASCII without spaces, quotes "
        "or backslashes (RFC 6749 §3.3)" in errors
    )
    assert (
        f"{path}: auth_servers[0].claims[1].name: is set by the issuer itself (reserved: aud, "
        "client_id, exp, iat, iss, jti, nbf, scope, sub)" in errors
    )


async def rotate_with_raw_authorization(
    client: TestClient[Any, Any], server_id: str, authorization: bytes
) -> int:
    """The status of a rotate-keys POST whose Authorization header is these bytes exactly."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /admin/auth-servers/%b/rotate-keys HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: %b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        % (server_id.encode(), authorization)
    )
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return int(answer.split(b" ", 2)[1])


async def test_rotation_endpoint_keeps_old_tokens_valid(
    seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "tokengate.identity")
    server, client = seeded.server, seeded.client
    before = (await token(client, server.issuer_id))["access_token"]
    resp = await client.post(f"/admin/auth-servers/{server.id}/rotate-keys")
    assert resp.status == 401
    assert await rotate_with_raw_authorization(client, server.id, b"Bearer \xff\xfe") == 401
    resp = await client.post(
        f"/admin/auth-servers/{server.id}/rotate-keys", headers={"Authorization": "Bearer adm"}
    )
    assert resp.status == 200
    rotated = await resp.json()
    assert rotated["grace_seconds"] == 86400  # the previous key stays published for a day
    assert (
        f"rotated signing key of {server.id}: {rotated['previous_kid']} → {rotated['kid']}"
        in caplog.messages
    )
    after = (await token(client, server.issuer_id))["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == rotated["kid"]
    assert jwt.get_unverified_header(before)["kid"] == rotated["previous_kid"]
    keys = await jwks(client, server.issuer_id)
    issuer = f"{str(client.make_url('')).rstrip('/')}/{server.issuer_id}/auth"
    verify(before, keys, issuer)  # the previous key is still published
    verify(after, keys, issuer)
    resp = await client.post(
        "/admin/auth-servers/00000000-0000-0000-0000-000000000000/rotate-keys",
        headers={"Authorization": "Bearer adm"},
    )
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["instance"].startswith("kong:trace:")


async def test_rotation_keeps_the_old_key_while_a_long_lived_token_lives(seeded: Seeded) -> None:
    """A client's tokens may live up to 30 days: the previous key stays in the JWKS until the
    last of them expires, and the answer says for how long."""
    store, server, client = seeded.store, seeded.server, seeded.client
    store.update_client(server.id, CLIENT["client_id"], access_token_duration=3 * 86400)
    before = (await token(client, server.issuer_id))["access_token"]
    expires = jwt.decode(before, options={"verify_signature": False})["exp"]
    resp = await client.post(
        f"/admin/auth-servers/{server.id}/rotate-keys", headers={"Authorization": "Bearer adm"}
    )
    rotated = await resp.json()
    assert 3 * 86400 - 5 < rotated["grace_seconds"] <= 3 * 86400
    (retired,) = [k for k in store.published_keys(server.id) if k.kid == rotated["previous_kid"]]
    assert retired.published_until is not None
    assert int(retired.published_until.timestamp()) == expires


async def test_rotation_endpoint_reads_requests_as_the_management_api_does(seeded: Seeded) -> None:
    """The same token check (the scheme in any case), ids in any case, problem+json errors."""
    store, server, client = seeded.store, seeded.server, seeded.client
    path = f"/admin/auth-servers/{server.id.upper()}/rotate-keys"
    resp = await client.post(path, headers={"Authorization": "bearer adm"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["kid"] == store.active_key(server.id).kid
    resp = await client.get(path, headers={"Authorization": "Bearer adm"})
    assert (resp.status, resp.content_type) == (405, "application/problem+json")
    assert resp.headers["Allow"] == "POST"
    resp = await client.post("/admin/nothing", headers={"Authorization": "Bearer adm"})
    assert (resp.status, resp.content_type) == (404, "application/problem+json")
    resp = await client.post("/admin/nothing")
    assert (resp.status, resp.headers["WWW-Authenticate"]) == (401, "Bearer")


async def test_restart_keeps_state_and_old_tokens_verify(tmp_path: Path) -> None:
    path = tmp_path / "identity.db"
    store = Store.open(path)
    (server,) = apply_seed(store, load_seed(SEED))
    client = await start(store, public_url="http://id.test")
    issued = (await token(client, server.issuer_id))["access_token"]
    await client.close()
    store.close()

    store = Store.open(path)
    client = await start(store, public_url="http://id.test")
    try:
        resp = await client.get("/v1/auth-servers", headers={"Authorization": "Bearer adm"})
        assert [s["name"] for s in (await resp.json())["data"]] == ["Appointments Dev"]
        verify(
            issued, await jwks(client, server.issuer_id), f"http://id.test/{server.issuer_id}/auth"
        )
    finally:
        await client.close()
        store.close()


def record_expired(store: Store, server: AuthServer, jti: str, expired_ago: timedelta) -> None:
    """A token of the seed's client, issued three days ago, that expired `expired_ago`."""
    now = datetime.now(UTC)
    store.record_token(
        IssuedToken(
            jti, server.id, CLIENT["client_id"], (), now - timedelta(days=3), now - expired_ago
        )
    )


async def test_tokens_expired_over_a_day_ago_are_purged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tokengate.identity")
    store = new_store()
    (server,) = apply_seed(store, load_seed(SEED))
    record_expired(store, server, "old", timedelta(days=2))
    record_expired(store, server, "recent", timedelta(hours=1))
    app = create_identity_app(
        store, admin_token="adm", public_url="http://id.test", purge_every=0.05
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        await eventually(lambda: store.find_token("old") is None)
        assert store.find_token("recent") is not None
        assert "forgot 1 tokens that expired over a day ago" in caplog.messages
    finally:
        await client.close()
        store.close()


async def test_a_purge_round_that_finds_the_database_locked_neither_holds_the_server_nor_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lock another process holds (a backup, `sqlite3`, a long write). The purge runs on the
    event loop: a round that waited out SQLite's busy timeout (5 s) held every request of the
    server as long, each round, for as long as the lock was held; a round gives up at once
    instead, and the next one tries again (one failed round ended the purging for good, and the
    database grew from then on). Other writes still wait for the lock (a token's record)."""
    caplog.set_level(logging.INFO, "tokengate.identity")
    path = tmp_path / "identity.db"
    store = Store.open(path, key_factory=pooled_key)
    (server,) = apply_seed(store, load_seed(SEED))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    app = create_identity_app(
        store, admin_token="adm", public_url="http://id.test", purge_every=0.05
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        await eventually(lambda: caplog.text.count("could not forget expired tokens") >= 2)
        # Rounds every 50 ms, each of which held the loop for the 5 s busy timeout before.
        resp = await client.get("/healthz", timeout=aiohttp.ClientTimeout(total=2))
        assert resp.status == 200
        # The purge's short wait is its own: a token's record still waits for the lock.
        threading.Timer(0.3, other.execute, ("COMMIT",)).start()
        record_expired(store, server, "old", timedelta(days=2))
        await eventually(lambda: store.find_token("old") is None)
        assert "forgot 1 tokens that expired over a day ago" in caplog.messages
    finally:
        other.close()
        await client.close()
        store.close()


async def test_health_and_issuer_urls_under_a_public_url_with_a_trailing_slash() -> None:
    with new_store() as store:
        client = await start(store, public_url="http://id.test/base/")
        try:
            resp = await client.get("/healthz")
            assert (resp.status, await resp.json()) == (200, {"status": "alive"})
            resp = await client.post(
                "/v1/auth-servers",
                json={"name": "s", "audience": "http://api.test"},
                headers={"Authorization": "Bearer adm"},
            )
            assert resp.status == 201
            server = await resp.json()
        finally:
            await client.close()
        issuer_id = store.get_auth_server(server["id"]).issuer_id
    assert server["issuer"] == f"http://id.test/base/{issuer_id}/auth"


@pytest.mark.parametrize("close_store", [False, True])
async def test_the_app_closes_the_store_at_shutdown_only_when_asked(close_store: bool) -> None:
    store = new_store()
    app = create_identity_app(
        store, admin_token="adm", public_url="http://id.test", close_store=close_store
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    await client.close()
    if close_store:
        with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
            store.list_auth_servers()
    else:
        assert store.list_auth_servers() == []  # the caller's to use and close
        store.close()


async def test_a_malformed_header_is_a_400_that_never_logs_the_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp would log the unparsable header line at ERROR, admin token or client secret
    included, for any client to repeat: one debug line instead, and a 400."""
    store = new_store()
    client = await start(store)
    try:
        for line in (b"Authorization: Bearer adm\x7f", b"Authorization: Basic c2VjcmV0\x00"):
            reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
            writer.write(b"GET /v1/auth-servers HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.split(b" ", 2)[1] == b"400", answer
    finally:
        await client.close()
        store.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "adm\\x7f" not in caplog.text and "c2VjcmV0" not in caplog.text


async def test_a_claim_that_fails_for_one_client_is_server_error_json_at_the_token_endpoint() -> (
    None
):
    """The dry run passes (the sample client has no such label); a client whose label makes
    the date overflow gets RFC 6749's server_error, never a text 500 and a traceback."""
    store = new_store()
    client = await start(store)
    admin = {"Authorization": "Bearer adm"}

    async def created(path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with client.post(f"/v1{path}", json=body, headers=admin) as resp:
            assert resp.status == 201, await resp.text()
            answer: dict[str, Any] = await resp.json()
            return answer

    try:
        server = await created("/auth-servers", {"name": "s", "audience": "http://api.test"})
        claim = {
            "name": "year",
            "value": '${ .Client.Labels.ts | int | date "2006" }',
            "include_in_token": True,
            "include_in_all_scopes": True,
        }
        await created(f"/auth-servers/{server['id']}/claims", claim)
        app_client = await created(
            f"/auth-servers/{server['id']}/clients",
            {"name": "c", "grant_types": ["client_credentials"], "response_types": ["token"],
             "labels": {"ts": "1000000000000000000"}},
        )  # fmt: skip
        form = {
            "grant_type": "client_credentials",
            "client_id": app_client["id"],
            "client_secret": app_client["client_secret"],
        }
        token_path = server["issuer"].split(str(client.make_url("")).rstrip("/"), 1)[1]
        async with client.post(f"{token_path}/oauth/token", data=form) as resp:
            assert resp.status == 500
            assert resp.content_type == "application/json"
            assert (await resp.json())["error"] == "server_error"
    finally:
        await client.close()
        store.close()


async def test_signing_keys_are_made_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """RSA generation takes 50-150 ms: made on the loop, it would stall every request in
    progress while an auth server is created. The server keeps a spare made in a thread."""
    real_generate = rsa.generate_private_key
    threads: list[int] = []
    gate = threading.Event()

    def watched_generate(*args: Any, **kwargs: Any) -> rsa.RSAPrivateKey:
        threads.append(threading.get_ident())
        if threading.get_ident() != loop_thread:
            gate.wait(10)  # held while the test checks the server answers meanwhile
        return real_generate(*args, **kwargs)

    loop_thread = threading.get_ident()
    monkeypatch.setattr(rsa, "generate_private_key", watched_generate)
    spare_keys = SpareKeys()
    store = Store.open(None, key_factory=spare_keys)
    client = await start(store)
    admin = {"Authorization": "Bearer adm"}
    try:
        spare_keys.make_spare()  # as `tokengate identity` does once it listens
        await eventually(lambda: len(threads) == 1, timeout=20)
        assert threads[0] != loop_thread  # generating, in a thread
        listed = await client.get("/v1/auth-servers", headers=admin)
        assert listed.status == 200  # served while the key is being made
        gate.set()
        # The spare lands on the loop by a done callback.
        await eventually(lambda: spare_keys.ready, timeout=20)
        created = await client.post(
            "/v1/auth-servers", json={"name": "n", "audience": "a"}, headers=admin
        )
        assert created.status == 201
        # The spare was taken, and the next one is being made.
        await eventually(lambda: len(threads) == 2, timeout=20)
        assert loop_thread not in threads, "a key was generated on the event loop"
    finally:
        gate.set()
        await client.close()
