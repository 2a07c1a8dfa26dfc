"""store: every method, its errors, cascades, persistence, file safety, migrations, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest

from tests.identity.support import Clock, pooled_key
from tokengate.identity import migrations, signing
from tokengate.identity.models import AuthServer, Client, IssuedToken
from tokengate.identity.store import (
    OTHER_WRITERS_POLL,
    Conflict,
    MissingReference,
    NotFound,
    Store,
    StoreError,
    TooManySecrets,
    check_secret,
    hash_secret,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
ALNUM = re.compile(r"[A-Za-z0-9]+")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(clock: Clock) -> Iterator[Store]:
    with Store.open(None, clock=clock, key_factory=pooled_key) as opened:
        yield opened


@pytest.fixture
def server_id(store: Store) -> str:
    return store.create_auth_server(name="Demo", audience="http://myhttpbin.dev").id


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path)
    try:
        yield db
    finally:
        db.close()


def count(path: Path, table: str) -> int:
    with raw(path) as db:
        rows: int = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
        return rows


def token(server_id: str, client_id: str, *, jti: str | None = None, ttl: int = 300) -> IssuedToken:
    return IssuedToken(
        id=jti or str(uuid.uuid4()),
        auth_server_id=server_id,
        client_id=client_id,
        granted_scope_names=("read", "write"),
        created_at=T0,
        expires_at=T0 + timedelta(seconds=ttl),
    )


# --- auth servers --------------------------------------------------------------------------------


def test_create_auth_server_generates_ids_and_a_first_key(store: Store) -> None:
    server = store.create_auth_server(
        name="Demo",
        audience="api://default",
        description="d",
        labels={"env": "test"},
        trusted_origins=["https://app.example"],
    )
    assert uuid.UUID(server.id)
    assert re.fullmatch(r"[a-z0-9]{16}", server.issuer_id)
    assert server.signing_algorithm == "RS256"
    assert server.labels == {"env": "test"}
    assert server.trusted_origins == ("https://app.example",)
    assert server.created_at == server.updated_at == T0
    assert store.get_auth_server(server.id) == server
    assert store.get_auth_server_by_issuer_id(server.issuer_id) == server
    assert store.list_auth_servers() == [server]
    key = store.active_key(server.id)
    assert (key.algorithm, key.retired_at, key.created_at) == ("RS256", None, T0)


def test_create_auth_server_with_seeded_ids_and_algorithm(store: Store) -> None:
    server = store.create_auth_server(
        name="Seeded",
        audience="a",
        id="seed-id",
        issuer_id="abcdefgh12345678",
        signing_algorithm="PS384",
    )
    assert (server.id, server.issuer_id) == ("seed-id", "abcdefgh12345678")
    assert store.active_key("seed-id").algorithm == "PS384"
    with pytest.raises(Conflict):
        store.create_auth_server(name="Other", audience="a", issuer_id="abcdefgh12345678")
    with pytest.raises(Conflict):
        store.create_auth_server(name="Other", audience="a", id="seed-id")


def test_auth_server_names_are_unique(store: Store, server_id: str) -> None:
    with pytest.raises(Conflict, match="auth server with this name"):
        store.create_auth_server(name="Demo", audience="x")
    other = store.create_auth_server(name="Other", audience="x")
    with pytest.raises(Conflict):
        store.update_auth_server(other.id, name="Demo")
    assert store.get_auth_server(other.id).name == "Other"


def test_update_auth_server_changes_only_given_fields(
    store: Store, clock: Clock, server_id: str
) -> None:
    before = store.get_auth_server(server_id)
    clock.advance(seconds=5)
    after = store.update_auth_server(server_id, description="new", labels={"team": "a"})
    assert after.description == "new"
    assert after.labels == {"team": "a"}
    assert (after.name, after.audience, after.issuer_id) == (
        before.name,
        before.audience,
        before.issuer_id,
    )
    assert after.created_at == T0
    assert after.updated_at == T0 + timedelta(seconds=5)
    assert store.get_auth_server(server_id) == after


def test_changing_the_algorithm_rotates_to_a_key_for_it(store: Store, server_id: str) -> None:
    old = store.active_key(server_id)
    store.update_auth_server(server_id, signing_algorithm="PS256")
    new = store.active_key(server_id)
    assert new.kid != old.kid
    assert new.algorithm == "PS256"
    assert [k.kid for k in store.published_keys(server_id)] == [new.kid, old.kid]
    store.update_auth_server(server_id, signing_algorithm="PS256", name="Same alg")
    assert store.active_key(server_id).kid == new.kid


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("update_auth_server", ()),
        ("update_scope", ("scope",)),
        ("update_claim", ("claim",)),
        ("update_client", ("client",)),
    ],
)
def test_unknown_update_fields_are_a_type_error(
    store: Store, server_id: str, method: str, args: tuple[str, ...]
) -> None:
    with pytest.raises(TypeError, match=r"has no updatable fields \['issuer_id'\]"):
        getattr(store, method)(server_id, *args, issuer_id="x")
    with pytest.raises(TypeError):
        getattr(store, method)(server_id, *args, created_at=T0)


def test_missing_auth_server_is_not_found_everywhere(store: Store) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.get_auth_server("nope"),
        lambda: store.get_auth_server_by_issuer_id("nope"),
        lambda: store.update_auth_server("nope", name="x"),
        lambda: store.delete_auth_server("nope"),
        lambda: store.create_scope("nope", name="s"),
        lambda: store.list_scopes("nope"),
        lambda: store.get_scope("nope", "s"),
        lambda: store.create_claim("nope", name="c", value="v"),
        lambda: store.list_claims("nope"),
        lambda: store.create_client("nope", name="c"),
        lambda: store.list_clients("nope"),
        lambda: store.replace_client("nope", "cid", secret=None, name="c"),
        lambda: store.active_key("nope"),
        lambda: store.published_keys("nope"),
        lambda: store.rotate_key("nope"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()


def test_delete_auth_server_cascades_to_everything(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "id.db"
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        server = store.create_auth_server(name="Doomed", audience="a")
        keep = store.create_auth_server(name="Kept", audience="a")
        for sid in (server.id, keep.id):
            scope = store.create_scope(sid, name="read")
            store.create_claim(sid, name="c", value="v", include_in_scopes=[scope.id])
            client, _ = store.create_client(sid, name="c", allow_scopes=[scope.id])
            store.create_secret(sid, client.id)
            store.record_token(token(sid, client.id))
            store.rotate_key(sid)
        store.delete_auth_server(server.id)
        with pytest.raises(NotFound):
            store.get_auth_server(server.id)
        with pytest.raises(NotFound):
            store.delete_auth_server(server.id)
    tables = ("scopes", "claims", "clients", "client_secrets", "tokens", "signing_keys")
    with raw(path) as db:
        for table in tables:
            doomed = db.execute(
                f"SELECT count(*) FROM {table} WHERE auth_server_id = ?",  # noqa: S608
                (server.id,),
            ).fetchone()[0]
            assert doomed == 0, table
            kept = db.execute(
                f"SELECT count(*) FROM {table} WHERE auth_server_id = ?",  # noqa: S608
                (keep.id,),
            ).fetchone()[0]
            assert kept > 0, table


# --- scopes --------------------------------------------------------------------------------------


def test_scope_crud(store: Store, clock: Clock, server_id: str) -> None:
    scope = store.create_scope(server_id, name="read", description="Read it", default=True)
    assert (scope.default, scope.include_in_metadata, scope.enabled) == (True, False, True)
    assert store.get_scope(server_id, scope.id) == scope
    other = store.create_scope(server_id, name="write", enabled=False)
    assert store.list_scopes(server_id) == [scope, other]
    clock.advance(minutes=1)
    updated = store.update_scope(server_id, scope.id, include_in_metadata=True, name="read:all")
    assert (updated.name, updated.include_in_metadata, updated.default) == ("read:all", True, True)
    assert updated.updated_at > updated.created_at
    store.delete_scope(server_id, scope.id)
    assert store.list_scopes(server_id) == [other]
    with pytest.raises(NotFound):
        store.get_scope(server_id, scope.id)
    with pytest.raises(NotFound):
        store.update_scope(server_id, scope.id, name="x")
    with pytest.raises(NotFound):
        store.delete_scope(server_id, scope.id)


def test_scope_names_are_unique_per_auth_server(store: Store, server_id: str) -> None:
    read = store.create_scope(server_id, name="read")
    with pytest.raises(Conflict, match="scope with this name"):
        store.create_scope(server_id, name="read")
    write = store.create_scope(server_id, name="write")
    with pytest.raises(Conflict):
        store.update_scope(server_id, write.id, name="read")
    other = store.create_auth_server(name="Other", audience="a")
    assert store.create_scope(other.id, name="read").name == "read"
    with pytest.raises(NotFound):  # a scope is reached only through its own auth server
        store.get_scope(other.id, read.id)


def test_deleting_a_scope_removes_it_from_claims_and_clients(
    store: Store, clock: Clock, server_id: str
) -> None:
    read = store.create_scope(server_id, name="read")
    write = store.create_scope(server_id, name="write")
    claim = store.create_claim(
        server_id, name="c", value="v", include_in_scopes=[read.id, write.id]
    )
    client, _ = store.create_client(server_id, name="app", allow_scopes=[write.id, read.id])
    untouched = store.create_claim(server_id, name="u", value="v", include_in_scopes=[write.id])
    clock.advance(seconds=1)
    store.delete_scope(server_id, read.id)
    assert store.get_claim(server_id, claim.id).include_in_scopes == (write.id,)
    assert store.get_client(server_id, client.id).allow_scopes == (write.id,)
    assert store.get_claim(server_id, untouched.id) == untouched


# --- claims --------------------------------------------------------------------------------------


def test_claim_crud(store: Store, server_id: str) -> None:
    scope = store.create_scope(server_id, name="read")
    claim = store.create_claim(
        server_id,
        name="tier",
        value='{"level": 1}',
        include_in_token=True,
        include_in_scopes=[scope.id],
    )
    assert claim.include_in_scopes == (scope.id,)
    assert (claim.include_in_token, claim.include_in_all_scopes, claim.enabled) == (
        True,
        False,
        True,
    )
    assert store.get_claim(server_id, claim.id) == claim
    assert store.list_claims(server_id) == [claim]
    updated = store.update_claim(server_id, claim.id, include_in_scopes=[], enabled=False)
    assert (updated.include_in_scopes, updated.enabled, updated.value) == ((), False, claim.value)
    store.delete_claim(server_id, claim.id)
    assert store.list_claims(server_id) == []
    for call in (store.get_claim, store.delete_claim):
        with pytest.raises(NotFound):
            call(server_id, claim.id)


def test_claims_must_reference_scopes_of_their_own_auth_server(
    store: Store, server_id: str
) -> None:
    other = store.create_auth_server(name="Other", audience="a")
    foreign = store.create_scope(other.id, name="read")
    with pytest.raises(MissingReference):
        store.create_claim(server_id, name="c", value="v", include_in_scopes=[foreign.id])
    claim = store.create_claim(server_id, name="c", value="v")
    # the admin API's 400 gives this message as the reason
    with pytest.raises(
        MissingReference, match=r"^scopes \[nope, gone\] not found in this auth server$"
    ):
        store.update_claim(server_id, claim.id, include_in_scopes=["nope", "gone"])
    assert store.get_claim(server_id, claim.id).include_in_scopes == ()


def test_claim_names_may_repeat(store: Store, server_id: str) -> None:
    store.create_claim(server_id, name="c", value="1")
    store.create_claim(server_id, name="c", value="2")
    assert [c.value for c in store.list_claims(server_id)] == ["1", "2"]


# --- clients -------------------------------------------------------------------------------------


def test_create_client_generates_id_and_a_secret_shown_once(store: Store, server_id: str) -> None:
    client, clear = store.create_client(server_id, name="app")
    assert len(client.id) == 20 and ALNUM.fullmatch(client.id)
    assert len(clear) == 32 and ALNUM.fullmatch(clear)
    assert client.grant_types == ("client_credentials",)
    assert client.response_types == ("token",)
    assert (client.access_token_duration, client.id_token_duration) == (300, 300)
    assert (client.token_endpoint_auth_method, client.login_uri) == ("client_secret_post", None)
    assert (client.allow_all_scopes, client.allow_scopes, client.labels) == (False, (), {})
    assert store.get_client(server_id, client.id) == client
    assert store.list_clients(server_id) == [client]
    [secret] = store.list_secrets(server_id, client.id)
    assert clear not in secret.secret_hash and check_secret(clear, secret.secret_hash)


def test_create_client_with_given_id_secret_and_fields(store: Store, server_id: str) -> None:
    scope = store.create_scope(server_id, name="read")
    client, clear = store.create_client(
        server_id,
        name="app",
        id="my-client_1",
        secret="s3cret",
        grant_types=["client_credentials", "implicit"],
        redirect_uris=["https://app/cb"],
        login_uri="https://app/login",
        access_token_duration=3600,
        allow_scopes=[scope.id],
        labels={"env": "prod"},
        response_types=["token", "id_token"],
        token_endpoint_auth_method="none",
    )
    assert (client.id, clear) == ("my-client_1", "s3cret")
    assert client.grant_types == ("client_credentials", "implicit")
    assert client.allow_scopes == (scope.id,)
    assert store.get_client(server_id, "my-client_1") == client
    with pytest.raises(Conflict):
        store.create_client(server_id, name="another", id="my-client_1")
    with pytest.raises(MissingReference):
        store.create_client(server_id, name="bad", allow_scopes=["nope"])


def test_client_names_are_unique_per_auth_server(store: Store, server_id: str) -> None:
    store.create_client(server_id, name="app")
    with pytest.raises(Conflict, match="client with this name"):
        store.create_client(server_id, name="app")
    other, _ = store.create_client(server_id, name="other")
    with pytest.raises(Conflict):
        store.update_client(server_id, other.id, name="app")
    second = store.create_auth_server(name="Second", audience="a")
    store.create_client(second.id, name="app")


def test_update_client(store: Store, clock: Clock, server_id: str) -> None:
    client, clear = store.create_client(server_id, name="app")
    clock.advance(seconds=1)
    updated = store.update_client(
        server_id, client.id, access_token_duration=900, labels={"a": "b"}
    )
    assert (updated.access_token_duration, updated.labels, updated.name) == (900, {"a": "b"}, "app")
    assert updated.updated_at == T0 + timedelta(seconds=1)
    store.update_client(server_id, client.id, secret="patched")  # PATCH client_secret
    assert store.check_client_secret(server_id, client.id, "patched") is not None
    assert store.check_client_secret(server_id, client.id, clear) is None
    assert len(store.list_secrets(server_id, client.id)) == 1
    with pytest.raises(NotFound):
        store.update_client(server_id, "nope", name="x")
    with pytest.raises(MissingReference):
        store.update_client(server_id, client.id, allow_scopes=["nope"])


def test_replace_client_creates_with_the_given_id_and_secret(store: Store, server_id: str) -> None:
    client, clear, created = store.replace_client(
        server_id,
        "imported",
        secret="SecretPassword",
        name="Imported",
        grant_types=["client_credentials"],
    )
    assert created and clear == "SecretPassword" and client.id == "imported"
    assert store.check_client_secret(server_id, "imported", "SecretPassword") == client
    generated, generated_secret, created = store.replace_client(
        server_id, "gen", secret=None, name="Gen"
    )
    assert created and generated_secret is not None and len(generated_secret) == 32
    assert store.check_client_secret(server_id, "gen", generated_secret) == generated


def test_replace_client_replaces_every_field_of_an_existing_client(
    store: Store, clock: Clock, server_id: str
) -> None:
    scope = store.create_scope(server_id, name="read")
    original, clear = store.create_client(
        server_id, name="app", access_token_duration=900, allow_scopes=[scope.id], labels={"a": "b"}
    )
    clock.advance(seconds=3)
    replaced, new_secret, created = store.replace_client(
        server_id, original.id, secret=None, name="renamed"
    )
    assert not created and new_secret is None
    fresh, _ = store.create_client(server_id, name="fresh")
    for field in (
        "grant_types",
        "access_token_duration",
        "allow_scopes",
        "labels",
        "response_types",
    ):
        assert getattr(replaced, field) == getattr(fresh, field), field  # create's defaults
    assert (replaced.name, replaced.created_at) == ("renamed", T0)
    assert replaced.updated_at == T0 + timedelta(seconds=3)
    assert store.check_client_secret(server_id, original.id, clear) == replaced  # secrets kept


def test_replace_client_secret_is_idempotent_and_becomes_the_only_one(
    store: Store, server_id: str
) -> None:
    client, _ = store.create_client(server_id, name="app", secret="first")
    store.create_secret(server_id, client.id, secret="second")
    # the same secret again: that row stays, the other goes, nothing new is created
    _, created_secret, _ = store.replace_client(server_id, client.id, secret="first", name="app")
    assert created_secret is None
    [kept] = store.list_secrets(server_id, client.id)
    assert check_secret("first", kept.secret_hash)
    _, created_secret, _ = store.replace_client(server_id, client.id, secret="third", name="app")
    assert created_secret == "third"
    assert store.check_client_secret(server_id, client.id, "first") is None
    assert store.check_client_secret(server_id, client.id, "third") is not None
    assert len(store.list_secrets(server_id, client.id)) == 1


def test_replace_client_requires_a_name_and_known_fields(store: Store, server_id: str) -> None:
    with pytest.raises(TypeError):
        store.replace_client(server_id, "c", secret=None, grant_types=["client_credentials"])
    with pytest.raises(TypeError, match=r"unknown fields \['bogus'\]"):
        store.replace_client(server_id, "c", secret=None, name="c", bogus=1)
    store.create_client(server_id, name="taken")
    with pytest.raises(Conflict):
        store.replace_client(server_id, "c", secret=None, name="taken")


def test_delete_client_cascades_to_secrets_and_tokens(store: Store, server_id: str) -> None:
    client, clear = store.create_client(server_id, name="app")
    issued = token(server_id, client.id)
    store.record_token(issued)
    store.delete_client(server_id, client.id)
    assert store.find_token(issued.id) is None
    assert store.check_client_secret(server_id, client.id, clear) is None
    for call in (store.get_client, store.delete_client, store.list_secrets, store.list_tokens):
        with pytest.raises(NotFound):
            call(server_id, client.id)


# --- client secrets ------------------------------------------------------------------------------


def test_secret_crud(store: Store, clock: Clock, server_id: str) -> None:
    client, _ = store.create_client(server_id, name="app")
    secret, clear = store.create_secret(server_id, client.id)
    assert len(clear) == 32 and secret.enabled
    assert store.get_secret(server_id, client.id, secret.id) == secret
    assert secret in store.list_secrets(server_id, client.id)
    clock.advance(seconds=1)
    disabled = store.update_secret(server_id, client.id, secret.id, enabled=False)
    assert not disabled.enabled and disabled.updated_at > secret.updated_at
    store.delete_secret(server_id, client.id, secret.id)
    for call in (store.get_secret, store.delete_secret):
        with pytest.raises(NotFound):
            call(server_id, client.id, secret.id)
    with pytest.raises(NotFound):
        store.update_secret(server_id, client.id, secret.id, enabled=True)
    with pytest.raises(NotFound):
        store.create_secret(server_id, "no-client")
    with pytest.raises(NotFound):
        store.get_secret(server_id, "no-client", secret.id)


def test_at_most_two_enabled_secrets(store: Store, server_id: str) -> None:
    client, _ = store.create_client(server_id, name="app")
    second, _ = store.create_secret(server_id, client.id)
    with pytest.raises(TooManySecrets):
        store.create_secret(server_id, client.id)
    third, _ = store.create_secret(server_id, client.id, enabled=False)  # disabled: allowed
    with pytest.raises(TooManySecrets):
        store.update_secret(server_id, client.id, third.id, enabled=True)
    store.update_secret(server_id, client.id, second.id, enabled=False)
    store.update_secret(server_id, client.id, third.id, enabled=True)
    store.update_secret(server_id, client.id, third.id, enabled=True)  # already enabled: fine
    assert sum(s.enabled for s in store.list_secrets(server_id, client.id)) == 2


def test_check_client_secret(store: Store, server_id: str) -> None:
    client, first = store.create_client(server_id, name="app")
    second_row, second = store.create_secret(server_id, client.id)
    assert store.check_client_secret(server_id, client.id, first) == client
    assert store.check_client_secret(server_id, client.id, second) == client
    assert store.check_client_secret(server_id, client.id, first + "x") is None
    assert store.check_client_secret(server_id, client.id, "") is None
    assert store.check_client_secret(server_id, client.id, "\udcff\u00e9") is None
    assert store.check_client_secret(server_id, "unknown", first) is None
    assert store.check_client_secret("unknown", client.id, first) is None
    store.update_secret(server_id, client.id, second_row.id, enabled=False)
    assert store.check_client_secret(server_id, client.id, second) is None
    assert store.check_client_secret(server_id, client.id, first) == client


def test_hash_secret_is_salted_and_checked_strictly() -> None:
    one, two = hash_secret("s"), hash_secret("s")
    assert one != two
    assert one.startswith("hmac-sha256$") and one.count("$") == 2
    assert check_secret("s", one) and check_secret("s", two)
    assert not check_secret("S", one)
    for malformed in ("", "s", "scrypt$a$b", "hmac-sha256$!!$!!", "hmac-sha256$a$b$c", one + "$"):
        assert not check_secret("s", malformed)


# --- tokens --------------------------------------------------------------------------------------


def test_tokens_record_list_get_find_revoke(store: Store, server_id: str) -> None:
    client, _ = store.create_client(server_id, name="app")
    first, second = token(server_id, client.id), token(server_id, client.id)
    store.record_token(first)
    store.record_token(second)
    assert store.list_tokens(server_id, client.id) == [first, second]
    assert store.get_token(server_id, client.id, first.id) == first
    assert store.find_token(first.id) == first
    assert store.find_token("unknown") is None
    store.revoke_token(server_id, client.id, first.id)
    assert store.get_token(server_id, client.id, first.id).revoked
    assert not store.get_token(server_id, client.id, second.id).revoked
    store.revoke_all_tokens(server_id, client.id)
    found = store.find_token(second.id)
    assert found is not None and found.revoked
    with pytest.raises(NotFound):
        store.get_token(server_id, client.id, "unknown")
    with pytest.raises(NotFound):
        store.revoke_token(server_id, client.id, "unknown")
    with pytest.raises(NotFound):
        store.revoke_all_tokens(server_id, "no-client")
    with pytest.raises(NotFound):
        store.get_token(server_id, "no-client", first.id)


def test_record_token_checks_client_and_jti(store: Store, server_id: str) -> None:
    with pytest.raises(NotFound):
        store.record_token(token(server_id, "no-client"))
    client, _ = store.create_client(server_id, name="app")
    store.record_token(token(server_id, client.id, jti="j1"))
    with pytest.raises(Conflict):
        store.record_token(token(server_id, client.id, jti="j1"))
    with store.transaction():  # a failed record leaves the surrounding transaction usable
        with pytest.raises(Conflict):
            store.record_token(token(server_id, client.id, jti="j1"))
        store.record_token(token(server_id, client.id, jti="j2"))
    assert [t.id for t in store.list_tokens(server_id, client.id)] == ["j1", "j2"]


def test_purge_expired_tokens(store: Store, clock: Clock, server_id: str) -> None:
    client, _ = store.create_client(server_id, name="app")
    short, long = token(server_id, client.id, ttl=60), token(server_id, client.id, ttl=3600)
    store.record_token(short)
    store.record_token(long)
    assert store.purge_expired_tokens() == 0
    clock.advance(seconds=61)
    assert store.purge_expired_tokens() == 1
    assert store.list_tokens(server_id, client.id) == [long]


# --- signing keys --------------------------------------------------------------------------------


def test_rotate_key_publishes_the_old_key_for_the_grace_only(
    store: Store, clock: Clock, server_id: str
) -> None:
    old = store.active_key(server_id)
    assert store.published_keys(server_id) == [old]
    clock.advance(hours=1)
    new = store.rotate_key(server_id, grace=timedelta(hours=2))
    assert store.active_key(server_id) == new
    published = store.published_keys(server_id)
    assert [k.kid for k in published] == [new.kid, old.kid]
    assert published[1].retired_at == clock.now
    assert published[1].published_until == clock.now + timedelta(hours=2)
    clock.advance(hours=2, seconds=-1)
    assert [k.kid for k in store.published_keys(server_id)] == [new.kid, old.kid]
    clock.advance(seconds=1)
    assert store.published_keys(server_id) == [new]
    newest = store.rotate_key(server_id)  # also forgets private keys past their grace
    assert [k.kid for k in store.published_keys(server_id)] == [newest.kid, new.kid]


@pytest.mark.parametrize(
    ("ttl", "revoked", "published_for"),
    [
        (3 * 86400, False, timedelta(days=3)),  # a long-lived token keeps its key published
        (3600, False, timedelta(days=1)),  # the grace is never shorter than asked
        (3 * 86400, True, timedelta(days=1)),  # a revoked token verifies nowhere anyway
    ],
    ids=["long-lived", "short-lived", "revoked"],
)
def test_a_retired_key_stays_published_while_a_token_it_signed_lives(
    store: Store, clock: Clock, server_id: str, ttl: int, revoked: bool, published_for: timedelta
) -> None:
    """access_token_duration goes up to 30 days: a day's grace alone would leave a token
    issued just before a rotation unverifiable for most of its life."""
    client, _ = store.create_client(server_id, name="app")
    issued = token(server_id, client.id, ttl=ttl)
    store.record_token(issued)
    if revoked:
        store.revoke_token(server_id, client.id, issued.id)
    old = store.active_key(server_id)
    store.rotate_key(server_id, grace=timedelta(days=1))
    retired = [k for k in store.published_keys(server_id) if k.kid == old.kid]
    assert [k.published_until for k in retired] == [T0 + published_for]
    clock.advance(seconds=published_for.total_seconds() - 1)
    assert old.kid in [k.kid for k in store.published_keys(server_id)]
    clock.advance(seconds=1)
    assert old.kid not in [k.kid for k in store.published_keys(server_id)]


def test_a_token_signed_before_rotation_verifies_with_a_published_key(
    store: Store, server_id: str
) -> None:
    signer = signing.signer_for(store.active_key(server_id))
    issued = jwt.encode({"sub": "c"}, signer.private_key, "RS256", headers={"kid": signer.kid})
    store.rotate_key(server_id)
    jwks = jwt.PyJWKSet.from_dict(
        {"keys": [signing.public_jwk(k) for k in store.published_keys(server_id)]}
    )
    assert jwt.decode(issued, jwks[signer.kid], algorithms=["RS256"]) == {"sub": "c"}


# --- transactions --------------------------------------------------------------------------------


def test_transaction_is_all_or_nothing(store: Store) -> None:
    def seed() -> None:
        with store.transaction():
            server = store.create_auth_server(name="Seed", audience="a")
            store.create_scope(server.id, name="read")
            raise RuntimeError("seed failed")

    with pytest.raises(RuntimeError):
        seed()
    assert store.list_auth_servers() == []


def test_a_failed_step_inside_a_transaction_rolls_back_only_itself(store: Store) -> None:
    with store.transaction():
        server = store.create_auth_server(name="Seed", audience="a")
        store.create_scope(server.id, name="read")
        with pytest.raises(Conflict):
            store.create_scope(server.id, name="read")
        store.create_scope(server.id, name="write")
    assert [s.name for s in store.list_scopes(server.id)] == ["read", "write"]


def test_reads_after_a_rolled_back_transaction_see_none_of_it(store: Store) -> None:
    """The token endpoint's reads (client secrets, issuer ids, scopes) are memoised: what a
    transaction wrote and read back must not outlive its rollback."""

    def seed() -> None:
        with store.transaction():
            server = store.create_auth_server(name="Seed", audience="a")
            client, secret = store.create_client(server.id, name="app")
            assert store.check_client_secret(server.id, client.id, secret) == client
            assert store.get_auth_server_by_issuer_id(server.issuer_id) == server
            assert store.list_scopes(server.id) == []
            seen.append((server, client, secret))
            raise RuntimeError("seed failed")

    seen: list[tuple[AuthServer, Client, str]] = []
    with pytest.raises(RuntimeError):
        seed()
    [(server, client, secret)] = seen
    assert store.check_client_secret(server.id, client.id, secret) is None
    with pytest.raises(NotFound):
        store.get_auth_server_by_issuer_id(server.issuer_id)
    with pytest.raises(NotFound):
        store.list_scopes(server.id)


async def test_concurrent_creates_leave_a_consistent_store(store: Store, server_id: str) -> None:
    async def create(name: str) -> str:
        await asyncio.sleep(0)
        return store.create_scope(server_id, name=name).name

    names = [f"scope-{i % 25}" for i in range(50)]
    results = await asyncio.gather(*(create(n) for n in names), return_exceptions=True)
    created = [r for r in results if isinstance(r, str)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(created) == 25 and len(conflicts) == 25
    assert sorted(s.name for s in store.list_scopes(server_id)) == sorted(set(names))


# --- files, persistence, migrations --------------------------------------------------------------


def test_everything_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "identity.db"
    with Store.open(path, clock=clock) as store:  # the real key factory
        server = store.create_auth_server(name="Demo", audience="a", labels={"k": "v"})
        scope = store.create_scope(server.id, name="read")
        claim = store.create_claim(server.id, name="c", value="v", include_in_scopes=[scope.id])
        client, clear = store.create_client(server.id, name="app", allow_scopes=[scope.id])
        issued = token(server.id, client.id)
        store.record_token(issued)
        key = store.active_key(server.id)
        signer = signing.signer_for(key)
        jws = jwt.encode({"sub": client.id}, signer.private_key, "RS256", headers={"kid": key.kid})
    with Store.open(path, clock=clock) as store:
        assert store.get_auth_server(server.id) == server
        assert store.get_scope(server.id, scope.id) == scope
        assert store.get_claim(server.id, claim.id) == claim
        assert store.get_client(server.id, client.id) == client
        assert store.check_client_secret(server.id, client.id, clear) == client
        assert store.find_token(issued.id) == issued
        assert store.active_key(server.id) == key
        [published] = store.published_keys(server.id)
        public = jwt.PyJWK(signing.public_jwk(published))
        assert jwt.decode(jws, public, algorithms=["RS256"]) == {"sub": client.id}


def test_database_files_are_owner_only(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "identity.db"
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        store.create_auth_server(name="Demo", audience="a")
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        with raw(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "identity.db"
    Store.open(path).close()
    path.chmod(0o644)
    Store.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_fresh_database_is_at_the_latest_schema(tmp_path: Path) -> None:
    with Store.open(tmp_path / "new.db") as store:
        assert store.schema_version == migrations.LATEST >= 1
    with Store.open(None) as store:
        assert store.schema_version == migrations.LATEST


def test_a_database_from_a_newer_tokengate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Store.open(path).close()
    with raw(path) as db:
        db.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    assert str(caught.value) == (
        f"identity database {path} has schema version {migrations.LATEST + 1}, newer than the "
        f"{migrations.LATEST} this tokengate knows: upgrade tokengate or use another --data file"
    )
    with raw(path) as db:  # untouched
        assert db.execute("PRAGMA user_version").fetchone()[0] == migrations.LATEST + 1


def test_a_database_in_a_missing_directory_is_a_store_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "identity.db"
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    assert str(caught.value).startswith(f"cannot open identity database {path}: [Errno 2] ")


def test_times_are_utc_whatever_the_local_time_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        path = tmp_path / "identity.db"
        tokyo = Clock(T0.astimezone(timezone(timedelta(hours=9))))
        with Store.open(path, clock=tokyo, key_factory=pooled_key) as store:
            server = store.create_auth_server(name="Demo", audience="a")
            assert (server.created_at, server.created_at.utcoffset()) == (T0, timedelta(0))
            assert store.get_auth_server(server.id).created_at.utcoffset() == timedelta(0)
        with raw(path) as db:
            (stored,) = db.execute("SELECT created_at FROM auth_servers").fetchone()
        assert stored == "2025-03-01T12:00:00.123456+00:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database, just some bytes" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        Store.open(path)


def test_migrations_apply_in_order_once(tmp_path: Path) -> None:
    applied: list[int] = []

    def step_three(db: sqlite3.Connection) -> None:
        applied.append(3)
        db.execute("INSERT INTO t VALUES (3)")

    steps: list[migrations.Migration] = [
        ("CREATE TABLE t (v INTEGER)",),
        ("INSERT INTO t VALUES (2)",),
        step_three,
    ]
    with raw(tmp_path / "m.db") as db:
        db.isolation_level = None
        migrations.migrate(db, steps[:2])
        assert migrations.schema_version(db) == 2
        migrations.migrate(db, steps)
        migrations.migrate(db, steps)
        assert migrations.schema_version(db) == 3
        assert applied == [3]
        assert [v for (v,) in db.execute("SELECT v FROM t")] == [2, 3]


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    steps: list[migrations.Migration] = [("CREATE TABLE t (v INTEGER)",), ("CREATE TABLE t (v)",)]
    with raw(tmp_path / "m.db") as db:
        db.isolation_level = None
        with pytest.raises(sqlite3.OperationalError, match=r"^table t already exists$"):
            migrations.migrate(db, steps)
        assert migrations.schema_version(db) == 1
        migrations.migrate(db, [*steps[:1], ("CREATE TABLE u (v INTEGER)",)])  # rolled back
        assert migrations.schema_version(db) == 2


def test_a_migration_that_fills_the_disk_fails_saying_so(tmp_path: Path) -> None:
    """SQLite rolls the step back itself when the disk is full: that error is the one raised,
    not the failed ROLLBACK's "no transaction is active"."""
    steps: list[migrations.Migration] = [
        ("CREATE TABLE t (v BLOB)", "INSERT INTO t VALUES (zeroblob(100000))")
    ]
    with raw(tmp_path / "m.db") as db:
        db.isolation_level = None
        db.execute("PRAGMA max_page_count = 3")  # a full disk, for this connection
        with pytest.raises(sqlite3.OperationalError, match=r"^database or disk is full$"):
            migrations.migrate(db, steps)
        assert migrations.schema_version(db) == 0
        assert not db.in_transaction


def test_a_step_another_process_applied_while_this_one_waited_is_not_applied_again(
    tmp_path: Path,
) -> None:
    """Two processes open a new file at once: the second reads version 0, waits for the write
    lock, and finds the step applied when it gets it."""
    path = tmp_path / "m.db"
    steps: list[migrations.Migration] = [("CREATE TABLE t (v INTEGER)",)]
    with raw(path) as db, raw(path) as other:
        db.isolation_level = other.isolation_level = None

        def first_process_wins(statement: str) -> None:
            if statement == "BEGIN IMMEDIATE" and migrations.schema_version(other) == 0:
                migrations.migrate(other, steps)

        db.set_trace_callback(first_process_wins)
        migrations.migrate(db, steps)
        assert migrations.schema_version(db) == migrations.schema_version(other) == 1
        assert not db.in_transaction


@pytest.mark.parametrize("path", [None, ":memory:", Path(":memory:")])
def test_an_in_memory_store_writes_no_file(
    path: str | Path | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Store.open(path, key_factory=pooled_key) as store:
        store.create_auth_server(name="Demo", audience="a")
        assert store.schema_version == migrations.LATEST
    assert list(tmp_path.iterdir()) == []


def test_reads_follow_writes_from_this_and_other_connections(tmp_path: Path, clock: Clock) -> None:
    """The token endpoint's reads are memoised; a write here is seen by the very next read, one
    by another process (the rotate-keys command) within OTHER_WRITERS_POLL seconds."""
    path = tmp_path / "identity.db"
    with (
        Store.open(path, clock=clock, key_factory=pooled_key) as server_side,
        Store.open(path, clock=clock, key_factory=pooled_key) as command,
    ):
        server = server_side.create_auth_server(name="a", audience="x")
        client, secret = server_side.create_client(server.id, name="c")
        first = server_side.active_key(server.id)
        assert server_side.check_client_secret(server.id, client.id, secret) == client
        assert server_side.list_scopes(server.id) == []
        # This connection's own config writes invalidate at once...
        scope = server_side.create_scope(server.id, name="read")
        assert server_side.list_scopes(server.id) == [scope]
        # ...token records do not (they are not config)...
        server_side.record_token(token(server.id, client.id))
        assert server_side.list_scopes(server.id) == [scope]
        # ...and another connection's commits are seen too, once the poll interval has passed.
        rotated = command.rotate_key(server.id)
        time.sleep(OTHER_WRITERS_POLL)
        assert server_side.active_key(server.id).kid == rotated.kid != first.kid
        (item,) = command.list_secrets(server.id, client.id)
        command.update_secret(server.id, client.id, item.id, enabled=False)
        time.sleep(OTHER_WRITERS_POLL)
        assert server_side.check_client_secret(server.id, client.id, secret) is None


# --- pinned after a mutation run of the secret and signing-key functions -------------------------


# The stored form: scheme, 16-byte salt and 32-byte HMAC, unpadded base64url
def test_a_secret_hash_is_scheme_salt_and_digest_unpadded() -> None:
    assert re.fullmatch(r"hmac-sha256\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}", hash_secret("s"))


def test_replace_client_re_enables_a_disabled_secret_it_names(
    store: Store, clock: Clock, server_id: str
) -> None:
    client, _ = store.create_client(server_id, name="app", secret="first")
    [first] = store.list_secrets(server_id, client.id)
    store.update_secret(server_id, client.id, first.id, enabled=False)
    store.create_secret(server_id, client.id, secret="second")
    assert store.check_client_secret(server_id, client.id, "first") is None
    clock.advance(seconds=1)
    _, created_secret, _ = store.replace_client(server_id, client.id, secret="first", name="app")
    assert created_secret is None  # the same row, enabled again
    [kept] = store.list_secrets(server_id, client.id)
    assert (kept.id, kept.enabled, kept.updated_at) == (first.id, True, clock.now)
    assert store.check_client_secret(server_id, client.id, "first") == client
    assert store.check_client_secret(server_id, client.id, "second") is None


def test_a_secret_replaced_by_put_stops_authenticating_at_once(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "id.db"
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        server_id = store.create_auth_server(name="Demo", audience="a").id
        client, _ = store.create_client(server_id, name="app", secret="old")
    # A fresh process: nothing written yet, then a little configuration, then a token request
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        store.create_scope(server_id, name="read")
        store.create_scope(server_id, name="write")
        assert store.check_client_secret(server_id, client.id, "old") is not None
        store.replace_client(server_id, client.id, secret="new", name="app")
        assert store.check_client_secret(server_id, client.id, "old") is None
        assert store.check_client_secret(server_id, client.id, "new") is not None


def test_a_missing_secret_is_told_apart_from_a_missing_client(store: Store, server_id: str) -> None:
    client, _ = store.create_client(server_id, name="app")
    with pytest.raises(NotFound, match=r"^client secret \[nope\] not found$"):
        store.get_secret(server_id, client.id, "nope")
    with pytest.raises(NotFound, match=r"^client \[no-client\] not found$"):
        store.get_secret(server_id, "no-client", "nope")


def test_each_auth_server_signs_with_its_own_active_key(store: Store) -> None:
    one = store.create_auth_server(name="One", audience="a")
    two = store.create_auth_server(name="Two", audience="a")
    keys = [store.active_key(one.id), store.active_key(two.id), store.active_key(one.id)]
    assert [k.auth_server_id for k in keys] == [one.id, two.id, one.id]
    assert [k.kid for k in store.published_keys(two.id)] == [keys[1].kid]
    with pytest.raises(NotFound, match=r"^auth server \[unknown\] not found$"):
        store.active_key("unknown")


def test_retired_keys_are_published_newest_first(
    store: Store, clock: Clock, server_id: str
) -> None:
    oldest = store.active_key(server_id)
    clock.advance(minutes=1)
    middle = store.rotate_key(server_id, grace=timedelta(hours=1))
    clock.advance(minutes=1)
    newest = store.rotate_key(server_id, grace=timedelta(hours=1))
    assert [k.kid for k in store.published_keys(server_id)] == [newest.kid, middle.kid, oldest.kid]


def test_a_private_key_past_its_grace_is_deleted_at_the_next_rotation(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "id.db"
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        server_id = store.create_auth_server(name="Demo", audience="a").id
        first = store.active_key(server_id)
        clock.advance(hours=1)
        store.rotate_key(server_id, grace=timedelta(hours=2))
        clock.advance(hours=3)  # the first key's grace ended an hour ago, the same day
        store.rotate_key(server_id, grace=timedelta(hours=2))
    with raw(path) as db:
        kids = [kid for (kid,) in db.execute("SELECT kid FROM signing_keys")]
    assert len(kids) == 2
    assert first.kid not in kids


# --- pinned after a mutation run of listing, updates, deletes and errors -------------------------
#
# The admin API answers a store's NotFound and Conflict with its message as the problem's detail.


def test_what_is_missing_is_named(store: Store, server_id: str) -> None:
    sid, cid = server_id, store.create_client(server_id, name="app")[0].id
    calls: list[tuple[str, Callable[[], object]]] = [
        ("auth server [nope] not found", lambda: store.delete_auth_server("nope")),
        ("auth server [nope] not found", lambda: store.delete_scope("nope", "s")),
        ("auth server [nope] not found", lambda: store.get_auth_server_by_issuer_id("nope")),
        ("scope [nope] not found", lambda: store.get_scope(sid, "nope")),
        ("scope [nope] not found", lambda: store.update_scope(sid, "nope", name="x")),
        ("scope [nope] not found", lambda: store.delete_scope(sid, "nope")),
        ("claim [nope] not found", lambda: store.get_claim(sid, "nope")),
        ("claim [nope] not found", lambda: store.update_claim(sid, "nope", name="x")),
        ("claim [nope] not found", lambda: store.delete_claim(sid, "nope")),
        ("client [nope] not found", lambda: store.update_client(sid, "nope", name="x")),
        ("client [nope] not found", lambda: store.delete_client(sid, "nope")),
        ("token [nope] not found", lambda: store.get_token(sid, cid, "nope")),
        ("the parent entity does not exist", lambda: store.record_token(token(sid, "nope"))),
    ]
    for message, call in calls:
        with pytest.raises(NotFound) as caught:
            call()
        assert str(caught.value) == message


def test_what_is_taken_is_named(store: Store, server_id: str) -> None:
    server = store.get_auth_server(server_id)
    client, _ = store.create_client(server_id, name="app", id="k")
    store.create_scope(server_id, name="read")
    store.record_token(token(server_id, client.id, jti="j1"))
    taken: dict[str, Callable[[], object]] = {
        "an auth server with this name already exists": lambda: store.create_auth_server(
            name="Demo", audience="a"
        ),
        "an auth server with this issuer_id already exists": lambda: store.create_auth_server(
            name="Other", audience="a", issuer_id=server.issuer_id
        ),
        "an auth server with this id already exists": lambda: store.create_auth_server(
            name="Other", audience="a", id=server_id
        ),
        "a scope with this name already exists": lambda: store.create_scope(server_id, name="read"),
        "a client with this id already exists": lambda: store.create_client(
            server_id, name="other", id="k"
        ),
        "a token with this id already exists": lambda: store.record_token(
            token(server_id, client.id, jti="j1")
        ),
    }
    for message, call in taken.items():
        with pytest.raises(Conflict) as caught:
            call()
        assert str(caught.value) == message


def test_each_auth_servers_memoised_reads_are_its_own(store: Store) -> None:
    one = store.create_auth_server(name="One", audience="a")
    two = store.create_auth_server(name="Two", audience="a")
    for server in (one, two):
        store.create_claim(server.id, name=server.name, value="v")
        store.create_scope(server.id, name=server.name)
    for server in (one, two, one):
        assert store.get_auth_server_by_issuer_id(server.issuer_id) == server
        assert [c.name for c in store.list_claims(server.id)] == [server.name]
        assert [s.name for s in store.list_scopes(server.id)] == [server.name]


def test_every_write_is_seen_by_the_next_memoised_read(store: Store, server_id: str) -> None:
    read = store.create_scope(server_id, name="read")
    claim = store.create_claim(server_id, name="c", value="v")
    for name in ("first", "second", "third"):
        store.update_scope(server_id, read.id, name=name)
        assert [s.name for s in store.list_scopes(server_id)] == [name]
        store.update_claim(server_id, claim.id, value=name)
        assert [c.value for c in store.list_claims(server_id)] == [name]
    extra = [store.create_scope(server_id, name=name).id for name in ("w1", "w2")]
    assert len(store.list_scopes(server_id)) == 3
    while extra:  # two deletes in a row
        store.delete_scope(server_id, extra.pop())
        assert [s.id for s in store.list_scopes(server_id)] == [read.id, *extra]
    store.delete_claim(server_id, claim.id)
    assert store.list_claims(server_id) == []


def test_update_client_takes_scopes_of_its_own_auth_server(store: Store, server_id: str) -> None:
    scope = store.create_scope(server_id, name="read")
    client, _ = store.create_client(server_id, name="app")
    updated = store.update_client(server_id, client.id, allow_scopes=[scope.id])
    assert updated.allow_scopes == (scope.id,)


def test_replace_client_stores_the_labels_it_is_given_and_a_repeat_changes_nothing(
    store: Store, clock: Clock, server_id: str
) -> None:
    client, _ = store.create_client(server_id, name="app")
    clock.advance(seconds=1)
    fields = {"name": "app", "grant_types": ["client_credentials"], "labels": {"env": "dev"}}
    replaced, _, _ = store.replace_client(server_id, client.id, secret=None, **fields)
    assert (replaced.labels, replaced.updated_at) == ({"env": "dev"}, clock.now)
    clock.advance(seconds=1)
    again, _, _ = store.replace_client(server_id, client.id, secret=None, **fields)
    assert again == replaced  # lists or tuples: the same values, so not even updated_at moves
    with pytest.raises(TypeError, match="no name"):  # an existing client needs one too
        store.replace_client(server_id, client.id, secret=None, grant_types=["implicit"])


# --- pinned after a mutation run of tokens, secrets, keys and cascades ----------------------------

NAIVE = T0.replace(tzinfo=None)


@pytest.mark.parametrize(
    ("write", "error"),
    [
        pytest.param(
            lambda s, sid, cid: s.record_token(
                IssuedToken(
                    id="j1",
                    auth_server_id=sid,
                    client_id=cid,
                    granted_scope_names=(),
                    created_at=NAIVE,
                    expires_at=T0,
                )
            ),
            "created_at must be a timezone-aware datetime",
            id="token-with-a-naive-time",
        ),
        pytest.param(
            lambda s, sid, cid: s.purge_expired_tokens(before=NAIVE),
            "expires_at must be a timezone-aware datetime",
            id="purge-before-a-naive-time",
        ),
        pytest.param(
            lambda s, sid, cid: s.create_scope(sid, name="read", default=1),
            "default must be a bool, not int",
            id="an-int-for-a-bool",
        ),
        pytest.param(
            lambda s, sid, cid: s.create_client(sid, name="other", grant_types="implicit"),
            "grant_types must be a sequence of strings, not str",
            id="a-string-for-a-list",
        ),
        pytest.param(  # what a column's type refuses is told as SQLite tells it
            lambda s, sid, cid: s.create_client(sid, name="other", access_token_duration="5m"),
            "cannot store TEXT value in INTEGER column clients.access_token_duration",
            id="text-for-an-integer",
        ),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_not_stored(
    store: Store,
    server_id: str,
    write: Callable[[Store, str, str], object],
    error: str,
) -> None:
    """A naive time would be stored as the host's local time, so compare wrongly with UTC ones."""
    client, _ = store.create_client(server_id, name="app")
    store.record_token(token(server_id, client.id, jti="kept", ttl=-60))  # a purge would drop it
    with pytest.raises((TypeError, ValueError, StoreError), match=f"^{error}$"):
        write(store, server_id, client.id)
    assert [t.id for t in store.list_tokens(server_id, client.id)] == ["kept"]
    assert store.list_scopes(server_id) == []
    assert [c.name for c in store.list_clients(server_id)] == ["app"]


def test_replace_client_takes_scopes_of_its_own_auth_server_only(
    store: Store, server_id: str
) -> None:
    scope = store.create_scope(server_id, name="read")
    other = store.create_auth_server(name="Other", audience="a")
    foreign = store.create_scope(other.id, name="read")
    client, _ = store.create_client(server_id, name="app")
    replaced, _, created = store.replace_client(
        server_id, client.id, secret=None, name="app", allow_scopes=[scope.id]
    )
    assert not created and replaced.allow_scopes == (scope.id,)
    with pytest.raises(MissingReference, match=rf"^scopes \[{foreign.id}\] not found"):
        store.replace_client(
            server_id, client.id, secret=None, name="renamed", allow_scopes=[foreign.id]
        )
    assert store.get_client(server_id, client.id) == replaced  # rolled back


def test_a_clock_without_a_time_zone_is_refused_at_the_first_write() -> None:
    with Store.open(None, clock=lambda: NAIVE, key_factory=pooled_key) as store:
        with pytest.raises(
            ValueError, match=r"^the store's clock must return timezone-aware datetimes$"
        ):
            store.create_auth_server(name="Demo", audience="a")
        assert store.list_auth_servers() == []


def test_an_auth_server_keeps_a_copy_of_the_labels_it_is_given(store: Store) -> None:
    labels = {"env": "dev"}
    server = store.create_auth_server(name="Demo", audience="a", labels=labels)
    labels["team"] = "x"  # the caller's dict, changed afterwards
    assert server.labels == store.get_auth_server(server.id).labels == {"env": "dev"}


# --- pinned after a mutation run of open, _tx and _make_private ----------------------------------


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_a_world_readable_file_of_a_database_left_open_is_tightened(
    tmp_path: Path, suffix: str
) -> None:
    """A crash leaves -wal and -shm behind, with their mode: the next open tightens them too."""
    path = tmp_path / "identity.db"
    with Store.open(path, key_factory=pooled_key) as running:
        running.create_auth_server(name="Demo", audience="a")  # -wal and -shm exist now
        file = Path(f"{path}{suffix}")
        file.chmod(0o644)
        Store.open(path).close()
        assert stat.S_IMODE(file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content",
    [b"not a database, just some bytes" * 100, b"SQLite format 3\x00" + b"\xff" * 4080],
    ids=["not-sqlite", "damaged-sqlite"],
)
def test_a_file_that_is_not_a_database_is_refused_and_left_as_it_is(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(content)
    path.chmod(0o644)
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    assert str(caught.value) == f"cannot open identity database {path}: file is not a database"
    if not content.startswith(b"SQLite"):  # a file of the user's own: its mode too
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == content


def test_a_transaction_holds_the_write_lock_from_its_start(tmp_path: Path, clock: Clock) -> None:
    """BEGIN IMMEDIATE: another process's write waits rather than making this one fail half
    way (also after a write that failed)."""
    path = tmp_path / "identity.db"
    with Store.open(path, clock=clock, key_factory=pooled_key) as store, raw(path) as other:
        store.create_auth_server(name="Demo", audience="a")
        with pytest.raises(Conflict):
            store.create_auth_server(name="Demo", audience="a")
        other.isolation_level = None
        with store.transaction():
            with pytest.raises(sqlite3.OperationalError, match=r"^database is locked$"):
                other.execute("PRAGMA busy_timeout = 0").execute("BEGIN IMMEDIATE")
            store.create_auth_server(name="Seed", audience="a")
        assert [s.name for s in store.list_auth_servers()] == ["Demo", "Seed"]


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, asyncio.CancelledError])
def test_a_transaction_cut_off_is_rolled_back_and_later_writes_are_kept(
    tmp_path: Path, clock: Clock, interruption: type[BaseException]
) -> None:
    path = tmp_path / "identity.db"
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:

        def seed() -> None:
            with store.transaction():
                store.create_auth_server(name="Cut", audience="a")
                raise interruption

        with pytest.raises(interruption):
            seed()
        store.create_auth_server(name="After", audience="a")
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        assert [s.name for s in store.list_auth_servers()] == ["After"]


def test_a_write_that_fills_the_disk_is_a_store_error_saying_so(
    tmp_path: Path, clock: Clock
) -> None:
    """SQLite rolls the transaction back itself: the error is the full disk (a StoreError, as
    `tokengate identity` reports them), not a failed ROLLBACK, and the store goes on."""
    path = tmp_path / "identity.db"
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        server_id = store.create_auth_server(name="Demo", audience="a").id
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()  # no other way to fill it
        store._db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match=r"^database or disk is full$"):
            store.create_scope(server_id, name="read", description="x" * 100_000)
        store._db.execute("PRAGMA max_page_count = 1000000")
        store.create_scope(server_id, name="write")
        assert [s.name for s in store.list_scopes(server_id)] == ["write"]


def test_a_commit_that_fails_leaves_nothing_behind(tmp_path: Path, clock: Clock) -> None:
    """What the transaction wrote and read back (the memo) is undone, and the next write is not
    refused as nested in a transaction that is still open."""
    path = tmp_path / "identity.db"
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        commits: list[str] = []
        interrupted: list[bool] = []

        def interrupt_the_first_commit() -> bool:  # as a full disk or an I/O error fails it
            if len(commits) == 1 and not interrupted:
                interrupted.append(True)
                return True
            return False

        store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        store._db.set_progress_handler(interrupt_the_first_commit, 1)
        seeded: list[AuthServer] = []

        def seed() -> None:
            with store.transaction():
                server = store.create_auth_server(name="Seed", audience="a")
                assert store.get_auth_server_by_issuer_id(server.issuer_id) == server
                seeded.append(server)

        with pytest.raises(StoreError, match=r"^interrupted$"):
            seed()
        [server] = seeded
        with pytest.raises(NotFound):
            store.get_auth_server_by_issuer_id(server.issuer_id)
        store.create_auth_server(name="After", audience="a")
    with Store.open(path, clock=clock, key_factory=pooled_key) as store:
        assert [s.name for s in store.list_auth_servers()] == ["After"]
