"""Client secrets, issued tokens and test-claim through the management API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pytest_aiohttp import AiohttpClient

from tests.identity.test_admin_api import JSON, START, Admin, bad_fields, new_store, start_admin
from tokengate.identity.models import IssuedToken


@pytest.fixture
async def admin(aiohttp_client: AiohttpClient) -> AsyncIterator[Admin]:
    with new_store() as store:
        yield await start_admin(aiohttp_client, store)


@pytest.fixture
async def client(admin: Admin) -> JSON:
    asid = (await admin.server(labels={"env": "dev"}))["id"]
    created = await admin.client(asid, name="svc", labels={"team": "blue"})
    return {**created, "auth_server_id": asid}


def secrets_path(client: JSON) -> str:
    return f"/auth-servers/{client['auth_server_id']}/clients/{client['id']}/secrets"


def tokens_path(client: JSON) -> str:
    return f"/auth-servers/{client['auth_server_id']}/clients/{client['id']}/tokens"


# ---- secrets ------------------------------------------------------------------------------------


async def test_secrets_are_listed_without_their_value(admin: Admin, client: JSON) -> None:
    page = await admin.ok("GET", secrets_path(client))
    assert page["meta"]["page"] == {"number": 1, "size": 10, "total": 1}
    (item,) = page["data"]
    assert set(item) == {"id", "enabled", "created_at", "updated_at"}
    assert item["enabled"] is True
    assert await admin.ok("GET", f"{secrets_path(client)}/{item['id']}") == item


async def test_a_created_secret_is_shown_once_and_works(admin: Admin, client: JSON) -> None:
    created = await admin.ok("POST", secrets_path(client), {}, status=201)
    assert set(created) == {"id", "enabled", "secret", "created_at", "updated_at"}
    assert len(created["secret"]) >= 32
    shown = await admin.ok("GET", f"{secrets_path(client)}/{created['id']}")
    assert "secret" not in shown
    check = admin.store.check_client_secret
    assert check(client["auth_server_id"], client["id"], created["secret"]) is not None
    assert check(client["auth_server_id"], client["id"], client["client_secret"]) is not None


async def test_a_secret_can_be_given_and_created_disabled(admin: Admin, client: JSON) -> None:
    created = await admin.ok(
        "POST", secrets_path(client), {"secret": "my-own-secret", "enabled": False}, status=201
    )
    assert (created["secret"], created["enabled"]) == ("my-own-secret", False)
    check = admin.store.check_client_secret
    assert check(client["auth_server_id"], client["id"], "my-own-secret") is None
    patched = await admin.ok("PATCH", f"{secrets_path(client)}/{created['id']}", {"enabled": True})
    assert patched["enabled"] is True
    assert "secret" not in patched
    assert check(client["auth_server_id"], client["id"], "my-own-secret") is not None


async def test_the_third_enabled_secret_is_403_on_create_and_400_on_update(
    admin: Admin, client: JSON
) -> None:
    path = secrets_path(client)
    second = await admin.ok("POST", path, {}, status=201)
    status, problem = await admin.call("POST", path, {})
    assert status == 403
    assert (problem["status"], problem["title"]) == (403, "Forbidden")
    assert problem["instance"].startswith("kong:trace:")
    assert problem["detail"] == (
        "A client may have at most 2 enabled secrets: disable or delete one first"
    )
    parked = await admin.ok("POST", path, {"enabled": False}, status=201)  # disabled: room enough
    status, problem = await admin.call("PATCH", f"{path}/{parked['id']}", {"enabled": True})
    # updateClientSecret lists 200, 400 and 404 only: the bad value is `enabled`.
    assert status == 400
    [entry] = problem["invalid_parameters"]
    assert (entry["field"], entry["rule"], entry["source"]) == ("enabled", "invalid", "body")
    assert "2 enabled secrets" in entry["reason"]
    await admin.ok("PATCH", f"{path}/{second['id']}", {"enabled": False})
    await admin.ok("POST", path, {}, status=201)
    assert (await admin.ok("GET", path))["meta"]["page"]["total"] == 4


async def test_deleting_a_secret(admin: Admin, client: JSON) -> None:
    path = secrets_path(client)
    (only,) = (await admin.ok("GET", path))["data"]
    assert await admin.call("DELETE", f"{path}/{only['id']}") == (204, None)
    assert (await admin.call("GET", f"{path}/{only['id']}"))[0] == 404
    assert (await admin.call("DELETE", f"{path}/{only['id']}"))[0] == 404
    check = admin.store.check_client_secret
    assert check(client["auth_server_id"], client["id"], client["client_secret"]) is None


async def test_secrets_sort_by_time(admin: Admin, client: JSON) -> None:
    second = await admin.ok("POST", secrets_path(client), {}, status=201)
    newest_first = await admin.ok("GET", f"{secrets_path(client)}?sort=created_at%20desc")
    assert newest_first["data"][0]["id"] == second["id"]
    status, problem = await admin.call("GET", f"{secrets_path(client)}?sort=name")
    assert status == 400
    assert bad_fields(problem)["sort"]["choices"] == ["created_at", "updated_at"]


async def test_deleting_a_client_deletes_its_secrets(admin: Admin, client: JSON) -> None:
    path = f"/auth-servers/{client['auth_server_id']}/clients/{client['id']}"
    await admin.ok("DELETE", path, status=204)
    assert (await admin.call("GET", secrets_path(client)))[0] == 404
    assert (await admin.call("POST", secrets_path(client), {}))[0] == 404


# ---- tokens -------------------------------------------------------------------------------------


def record(admin: Admin, client: JSON, minutes: int, scopes: tuple[str, ...] = ()) -> str:
    token_id = str(uuid.uuid4())
    created = START + timedelta(minutes=minutes)
    admin.store.record_token(
        IssuedToken(
            id=token_id,
            auth_server_id=client["auth_server_id"],
            client_id=client["id"],
            granted_scope_names=scopes,
            created_at=created,
            expires_at=created + timedelta(hours=1 if minutes % 2 else 3),
        )
    )
    return token_id


async def test_tokens_list_get_and_render(admin: Admin, client: JSON) -> None:
    first = record(admin, client, 1, ("read", "write"))
    second = record(admin, client, 2)
    page = await admin.ok("GET", tokens_path(client))
    assert [t["id"] for t in page["data"]] == [first, second]
    assert page["data"][0] == {
        "id": first,
        "granted_scope_names": ["read", "write"],
        "created_at": "2025-01-01T00:01:00.000Z",
        "expires_at": "2025-01-01T01:01:00.000Z",
    }
    assert await admin.ok("GET", f"{tokens_path(client)}/{first}") == page["data"][0]


async def test_tokens_sort_and_filter(admin: Admin, client: JSON) -> None:
    early_long = record(admin, client, 2)  # expires at 03:02
    late_short = record(admin, client, 3)  # expires at 01:03
    path = tokens_path(client)
    by_expiry = await admin.ok("GET", f"{path}?sort=expires_at")
    assert [t["id"] for t in by_expiry["data"]] == [late_short, early_long]
    newest = await admin.ok("GET", f"{path}?sort=created_at%20desc")
    assert [t["id"] for t in newest["data"]] == [late_short, early_long]
    one = await admin.ok("GET", f"{path}?filter[id][eq]={early_long}")
    assert [t["id"] for t in one["data"]] == [early_long]
    status, problem = await admin.call("GET", f"{path}?sort=name")
    assert status == 400
    assert bad_fields(problem)["sort"]["choices"] == ["created_at", "expires_at"]


async def test_revoking_one_token(admin: Admin, client: JSON) -> None:
    keep, revoke = record(admin, client, 1), record(admin, client, 2)
    path = tokens_path(client)
    assert await admin.call("DELETE", f"{path}/{revoke}") == (204, None)
    for method in ("GET", "DELETE"):  # as if it had never been
        status, problem = await admin.call(method, f"{path}/{revoke}")
        assert (status, problem["detail"]) == (404, f"Token [{revoke}] not found")
    assert [t["id"] for t in (await admin.ok("GET", path))["data"]] == [keep]
    stored = admin.store.find_token(revoke)
    assert stored is not None
    assert stored.revoked  # kept for introspection, which must answer active: false


async def test_revoking_all_tokens(admin: Admin, client: JSON) -> None:
    tokens = [record(admin, client, i) for i in range(3)]
    assert await admin.call("DELETE", tokens_path(client)) == (204, None)
    assert (await admin.ok("GET", tokens_path(client)))["data"] == []
    assert all(t is not None and t.revoked for t in map(admin.store.find_token, tokens))


async def test_tokens_of_an_unknown_client_are_404(admin: Admin, client: JSON) -> None:
    path = f"/auth-servers/{client['auth_server_id']}/clients/ghost/tokens"
    assert (await admin.call("GET", path))[0] == 404
    assert (await admin.call("DELETE", path))[0] == 404
    assert (await admin.call("DELETE", f"{tokens_path(client)}/{uuid.uuid4()}"))[0] == 404


# ---- test-claim ---------------------------------------------------------------------------------


def claim_test_path(client: JSON) -> str:
    return f"/auth-servers/{client['auth_server_id']}/clients/{client['id']}/test-claim"


async def test_claims_render_for_the_client(admin: Admin, client: JSON) -> None:
    body = {
        "destination": "anywhere",
        "team": "${ .Client.Labels.team }",
        "who": "${ .Client.Name }@${ .AuthServer.Labels.env }",
        "uuid": "${ uuidv4 }",
        "json": '{"tier": 2}',
        "all": "${ .Client.AllowAllScopes }",
    }
    rendered = await admin.ok("POST", claim_test_path(client), body)
    assert rendered.pop("uuid") != body["uuid"]
    assert rendered == {
        "destination": "anywhere",
        "team": "blue",
        "who": "svc@dev",
        "json": {"tier": 2},
        "all": False,
    }


async def test_bad_templates_are_400_naming_each_claim(admin: Admin, client: JSON) -> None:
    body = {"ok": "fine", "bad": "${ nosuchfunction }", "worse": "${ .Client.Secret }", "n": 3}
    status, problem = await admin.call("POST", claim_test_path(client), body)
    assert status == 400
    fields = bad_fields(problem)
    assert set(fields) == {"bad", "worse", "n"}
    assert fields["n"]["rule"] == "is_string"


async def test_a_claim_that_fails_only_when_rendered_is_named(admin: Admin, client: JSON) -> None:
    """The dry run passes; this client's label makes the date overflow: a 400, not a 500."""
    odd = await admin.client(client["auth_server_id"], labels={"ts": "1000000000000000000"})
    body = {"ok": "fine", "year": '${ .Client.Labels.ts | int | date "2006" }'}
    status, problem = await admin.call("POST", claim_test_path({**client, **odd}), body)
    assert status == 400
    assert problem["invalid_parameters"] == [
        {
            "field": "year",
            "rule": "invalid",
            "reason": "date: Unix time 1000000000000000000 is out of range",
            "source": "body",
        }
    ]


@pytest.mark.parametrize("raw", [b'["x"]', b'"x"', b"5", b"null"])
async def test_test_claim_needs_a_json_object_and_a_known_client(
    admin: Admin, client: JSON, raw: bytes
) -> None:
    status, problem = await admin.call("POST", claim_test_path(client), raw=raw)
    assert status == 400
    assert "body" in bad_fields(problem)
    assert await admin.ok("POST", claim_test_path(client), {}) == {}
    ghost = {**client, "id": "ghost"}
    assert (await admin.call("POST", claim_test_path(ghost), {"a": "b"}))[0] == 404


async def test_test_claim_takes_at_most_100_claims_at_once(admin: Admin, client: JSON) -> None:
    """Each claim is a dry run and a render on the event loop: a bounded batch."""
    status, problem = await admin.call(
        "POST", claim_test_path(client), {f"c{i}": "x" for i in range(101)}
    )
    assert status == 400
    assert problem["invalid_parameters"] == [
        {
            "field": "body",
            "rule": "max",
            "reason": "at most 100 claims at once",
            "maximum": 100,
            "source": "body",
        }
    ]
    rendered = await admin.ok("POST", claim_test_path(client), {f"c{i}": "x" for i in range(100)})
    assert len(rendered) == 100
