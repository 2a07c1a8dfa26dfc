"""Seed mistakes: one `FILE: path.to.field: message` line each and exit code 2, never a traceback
nor a silently stored value; a field takes exactly what the management API takes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import KONG_YAML
from tests.identity.test_admin_api import new_store
from tokengate.cli import main
from tokengate.identity.seed import Seed, SeedError, apply_seed, load_seed
from tokengate.identity.store import Store
from tokengate.stack import IdentityService, StackError

# The audit's seed: each case below adds to it.
HEAD = "auth_servers:\n- name: A\n  audience: http://x\n"
SERVER_B = "- name: B\n  audience: http://y\n"
ID = "6a2b5c7d-1e3f-4a5b-8c9d-0e1f2a3b4c5d"
ALGORITHMS = "RS256, RS384, RS512, PS256, PS384, PS512"

MISTAKES = {
    # Two entities the store or the seed's matching would clash on, or silently merge.
    "scope name twice": (
        "  scopes: [{name: s}, {name: s}]\n",
        "auth_servers[0].scopes[1].name: duplicate scope name 's' (first at "
        "auth_servers[0].scopes[0])",
    ),
    "issuer_id twice": (
        f"  issuer_id: abcdefgh12345678\n{SERVER_B}  issuer_id: abcdefgh12345678\n",
        "auth_servers[1].issuer_id: duplicate auth server issuer_id 'abcdefgh12345678' (first at "
        "auth_servers[0])",
    ),
    "server name twice": (
        "- name: A\n  audience: http://y\n",
        "auth_servers[1].name: duplicate auth server name 'A' (first at auth_servers[0])",
    ),
    "server id twice, in two cases": (
        f"  id: {ID}\n{SERVER_B}  id: {ID.upper()}\n",
        f"auth_servers[1].id: duplicate auth server id '{ID}' (first at auth_servers[0])",
    ),
    "client id twice": (
        "  clients: [{name: c, id: k}, {name: d, id: k}]\n",
        "auth_servers[0].clients[1].id: duplicate client id 'k' (first at "
        "auth_servers[0].clients[0])",
    ),
    "client name twice": (
        "  clients: [{name: c}, {name: c, id: k}]\n",
        "auth_servers[0].clients[1].name: duplicate client name 'c' (first at "
        "auth_servers[0].clients[0])",
    ),
    "claim name twice": (
        "  claims: [{name: c, value: a}, {name: c, value: b}]\n",
        "auth_servers[0].claims[1].name: duplicate claim name 'c' (first at "
        "auth_servers[0].claims[0])",
    ),
    # Values of the wrong type or outside the API's rules.
    "labels a number": ("  labels: 5\n", "auth_servers[0].labels: must be a mapping"),
    "labels key a number": (
        "  labels: {5: x}\n",
        "auth_servers[0].labels: key [5] must be a string",
    ),
    "client id not an id": (
        "  clients: [{name: c, id: bad.id}]\n",
        "auth_servers[0].clients[0].id: must be 1 to 36 letters, digits, '-' or '_'",
    ),
    "trusted_origins a string": (
        "  trusted_origins: https://app\n",
        "auth_servers[0].trusted_origins: must be a list",
    ),
    "description a list": ("  description: [a]\n", "auth_servers[0].description: must be a string"),
    "description a number": ("  description: 5\n", "auth_servers[0].description: must be a string"),
    "signing_algorithm a list": (
        "  signing_algorithm: [RS256]\n",
        f"auth_servers[0].signing_algorithm: must be one of [{ALGORITHMS}]",
    ),
    "redirect_uris a number": (
        "  clients: [{name: c, redirect_uris: 5}]\n",
        "auth_servers[0].clients[0].redirect_uris: must be a list",
    ),
    "redirect_uris a string": (
        "  clients: [{name: c, redirect_uris: https://app.example/cb}]\n",
        "auth_servers[0].clients[0].redirect_uris: must be a list",
    ),
    "grant_types a string": (
        "  clients: [{name: c, grant_types: client_credentials}]\n",
        "auth_servers[0].clients[0].grant_types: must be a list",
    ),
    "token_endpoint_auth_method unknown": (
        "  clients: [{name: c, token_endpoint_auth_method: nonsense}]\n",
        "auth_servers[0].clients[0].token_endpoint_auth_method: must be one of "
        "[client_secret_post, none]",
    ),
    "token_endpoint_auth_method a list": (
        "  clients: [{name: c, token_endpoint_auth_method: [none]}]\n",
        "auth_servers[0].clients[0].token_endpoint_auth_method: must be one of "
        "[client_secret_post, none]",
    ),
    "login_uri a mapping": (
        "  clients: [{name: c, login_uri: {a: b}}]\n",
        "auth_servers[0].clients[0].login_uri: must be a string",
    ),
    "login_uri a list": (
        "  clients: [{name: c, login_uri: [https://app/login]}]\n",
        "auth_servers[0].clients[0].login_uri: must be a string",
    ),
    "allow_scopes of lists": (
        "  scopes: [{name: s}]\n  clients: [{name: c, allow_scopes: [[s]]}]\n",
        "auth_servers[0].clients[0].allow_scopes: item 0: must be a string",
    ),
    "include_in_scopes of lists": (
        "  scopes: [{name: s}]\n  claims: [{name: c, value: v, include_in_scopes: [[s]]}]\n",
        "auth_servers[0].claims[0].include_in_scopes: item 0: must be a string",
    ),
    "scope id twice, in two auth servers": (
        f"  scopes: [{{name: s, id: {ID}}}]\n{SERVER_B}  scopes: [{{name: t, id: {ID}}}]\n",
        f"auth_servers[1].scopes[0].id: duplicate scope id '{ID}' (first at "
        "auth_servers[0].scopes[0])",
    ),
    "claim id twice, in two auth servers": (
        f"  claims: [{{name: c, value: v, id: {ID}}}]\n{SERVER_B}"
        f"  claims: [{{name: d, value: v, id: {ID}}}]\n",
        f"auth_servers[1].claims[0].id: duplicate claim id '{ID}' (first at "
        "auth_servers[0].claims[0])",
    ),
    "client id twice, after a client without one": (
        "  clients: [{name: a}, {name: c, id: k}, {name: d, id: k}]\n",
        "auth_servers[0].clients[2].id: duplicate client id 'k' (first at "
        "auth_servers[0].clients[1])",
    ),
    "allow_scopes naming no scope of the seed": (
        "  scopes: [{name: s}]\n  clients: [{name: c, allow_scopes: [s, nope]}]\n",
        "auth_servers[0].clients[0].allow_scopes: no scope named 'nope' in this auth server's seed",
    ),
    # Lists and entries of the wrong shape; a key after a nested list is checked all the same.
    "scopes a mapping": ("  scopes: {name: s}\n", "auth_servers[0].scopes: must be a list"),
    "a claim a string": (
        "  claims: [test-claim]\n",
        "auth_servers[0].claims[0]: must be a mapping",
    ),
    "a bad field after the clients": (
        "  clients: []\n  description: 5\n",
        "auth_servers[0].description: must be a string",
    ),
    # kong.yaml's loader: a repeated key is an error, not "the last one wins".
    "a key twice": (
        "  audience: http://z\n",
        "not valid YAML: line 4 column 3: found duplicate key 'audience'",
    ),
}


def seed_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("addition", "message"), MISTAKES.values(), ids=MISTAKES.keys())
def test_a_mistake_is_one_message_naming_file_and_field(
    tmp_path: Path, addition: str, message: str
) -> None:
    path = seed_file(tmp_path, HEAD + addition)
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    assert caught.value.errors == [f"{path}: {message}"]


# Mistakes in the file's top level (the whole file here, not added to HEAD).
TOP_MISTAKES = {
    "a list": ("- name: A\n", "(top): must be a mapping"),
    "an unknown key": (
        "auth_server: []\n",
        "(top).auth_server: unknown field (did you mean 'auth_servers'?)",
    ),
    "auth_servers a mapping": ("auth_servers: {name: A}\n", "auth_servers: must be a list"),
}


@pytest.mark.parametrize(("text", "message"), TOP_MISTAKES.values(), ids=TOP_MISTAKES.keys())
def test_a_mistake_at_the_top_is_one_message(tmp_path: Path, text: str, message: str) -> None:
    path = seed_file(tmp_path, text)
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    assert caught.value.errors == [f"{path}: {message}"]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "auth_servers:\n"])
def test_an_empty_seed_declares_nothing(tmp_path: Path, text: str) -> None:
    with new_store() as store:
        assert apply_seed(store, load_seed(seed_file(tmp_path, text))) == []
        assert store.list_auth_servers() == []


def test_a_file_that_is_not_utf8_is_one_message(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(HEAD.encode() + b"  description: \xff\n")
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    assert caught.value.errors == [f"{path}: not valid UTF-8 (byte {len(HEAD) + 15})"]


def test_yaml_nested_too_deep_is_one_message(tmp_path: Path) -> None:
    path = seed_file(tmp_path, "auth_servers: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(SeedError) as caught:
        load_seed(path)
    # The wording is the YAML loader's (config_checks.load_yaml), shared with kong.yaml.
    (error,) = caught.value.errors
    assert error.startswith(f"{path}: not valid YAML: ")


def test_values_are_the_apis_and_stored_as_it_stores_them(tmp_path: Path) -> None:
    path = seed_file(
        tmp_path,
        f"{HEAD}  id: {ID.upper()}\n  trusted_origins: [https://app]\n  labels: {{env: dev}}\n"
        "  clients: [{name: c, redirect_uris: [https://app/cb], login_uri: null}]\n",
    )
    store = new_store()
    try:
        seed = load_seed(path)
        (server,) = apply_seed(store, seed)
        assert (server.id, server.trusted_origins, dict(server.labels)) == (
            ID,
            ("https://app",),
            {"env": "dev"},
        )
        (client,) = store.list_clients(server.id)
        assert (client.redirect_uris, client.login_uri) == (("https://app/cb",), None)
        assert [s.id for s in apply_seed(store, seed)] == [ID]  # found again, unchanged
    finally:
        store.close()


def data_file_with_server_a(tmp_path: Path) -> str:
    """A data file whose auth server `A` is not the one the seed's fixed id names."""
    data = str(tmp_path / "id.db")
    store = Store.open(data)
    store.create_auth_server(name="A", audience="http://x")
    store.close()
    return data


def test_a_clash_with_the_data_file_names_the_entry_and_writes_nothing(tmp_path: Path) -> None:
    text = f"auth_servers:\n{SERVER_B}- name: A\n  audience: http://x\n  id: {ID}\n"
    path = seed_file(tmp_path, text)
    store = Store.open(data_file_with_server_a(tmp_path))
    try:
        with pytest.raises(SeedError) as caught:
            apply_seed(store, load_seed(path))
        assert caught.value.errors == [
            f"{path}: auth_servers[1]: an auth server with this name already exists in the "
            "identity database"
        ]
        assert [s.name for s in store.list_auth_servers()] == ["A"]  # B rolled back
    finally:
        store.close()


def test_no_secret_is_shown_for_a_client_the_clash_rolled_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # B (first) gets a client with a generated secret; A (second) clashes: nothing is kept,
    # so no secret may be printed for B's client.
    text = f"auth_servers:\n{SERVER_B}  clients: [{{name: c}}]\n- name: A\n  audience: http://x\n"
    text += f"  id: {ID}\n"
    path = seed_file(tmp_path, text)
    store = Store.open(data_file_with_server_a(tmp_path))
    try:
        with pytest.raises(SeedError):
            apply_seed(store, load_seed(path))
        assert "secret" not in capsys.readouterr().out
        assert apply_seed(store, load_seed(seed_file(tmp_path, text.replace(f"  id: {ID}\n", ""))))
        assert "seeded client" in capsys.readouterr().out  # once committed, it is shown
    finally:
        store.close()


async def test_run_reports_a_clash_with_the_data_file_and_exits_2(tmp_path: Path) -> None:
    path = seed_file(tmp_path, f"{HEAD}  id: {ID}\n")
    data = data_file_with_server_a(tmp_path)
    identity = IdentityService(("127.0.0.1", 0), data=data, admin_token="x", seed=load_seed(path))
    with pytest.raises(StackError) as caught:
        await identity.start()
    assert caught.value.exit_code == 2
    assert caught.value.message == (
        f"{path}: auth_servers[0]: an auth server with this name already exists in the identity "
        "database"
    )


def test_identity_reports_a_clash_with_the_data_file_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = seed_file(tmp_path, f"{HEAD}  id: {ID}\n")
    data = data_file_with_server_a(tmp_path)
    command = ["identity", "--data", str(data), "--listen", "127.0.0.1:0", "--seed", str(path)]
    assert main(command) == 2
    assert capsys.readouterr().err == (
        f"{path}: auth_servers[0]: an auth server with this name already exists in the identity "
        "database\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["identity", "--in-memory", "--listen", "127.0.0.1:0", "--admin-token", "x"],
        [
            "run",
            "--config",
            str(KONG_YAML),
            "--listen",
            "127.0.0.1:0",
            "--status-listen",
            "127.0.0.1:0",
            "--identity-listen",
            "127.0.0.1:0",
            "--echo-listen",
            "127.0.0.1:0",
        ],
    ],
    ids=["identity", "run"],
)
def test_the_cli_prints_the_message_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = seed_file(tmp_path, HEAD + "  scopes: [{name: s}, {name: s}]\n")
    assert main([*command, "--seed", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}: auth_servers[0].scopes[1].name: duplicate scope name 's' (first at "
        "auth_servers[0].scopes[0])\n"
    )


def test_a_client_without_an_id_takes_the_seeds_changes_at_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found again by name, it is replaced as one with an id is: same client_id, new fields."""
    scopes = "  scopes: [{name: s}]\n"
    first = (
        HEAD + scopes + "  clients: [{name: c, access_token_duration: 600, allow_scopes: [s]}]\n"
    )
    changed = HEAD + scopes + "  clients: [{name: c, access_token_duration: 900, secret: fixed}]\n"
    with new_store() as store:
        (server,) = apply_seed(store, load_seed(seed_file(tmp_path, first)))
        (created,) = store.list_clients(server.id)
        assert f"seeded client {created.id} of 'A': secret " in capsys.readouterr().out
        apply_seed(store, load_seed(seed_file(tmp_path, changed)))
        (client,) = store.list_clients(server.id)
        assert (client.id, client.access_token_duration, client.allow_scopes) == (
            created.id,
            900,
            (),
        )
        assert store.check_client_secret(server.id, client.id, "fixed") == client
        assert len(store.list_secrets(server.id, client.id)) == 1
        assert capsys.readouterr().out == ""  # the seed's own secret is never printed


# The first seed makes the data file; the second fixes another id for the same entity ({} in a
# message: the id the first run generated).
CHANGED_IDS = {
    "issuer_id": (
        "  issuer_id: abcdefgh12345678\n",
        "  issuer_id: zyxwvuts98765432\n",
        "auth_servers[0].issuer_id: the auth server 'A' in the identity database has issuer_id "
        "'abcdefgh12345678', and it cannot change: write that value here, or seed a new data "
        "file (another --data, or --in-memory)",
    ),
    "scope id": (
        f"  scopes: [{{name: s, id: {ID}}}]\n",
        f"  scopes: [{{name: s, id: {ID.replace('6a', '7b')}}}]\n",
        f"auth_servers[0].scopes[0].id: the scope 's' in the identity database has id '{ID}', "
        "and it cannot change: write that value here, or seed a new data file (another "
        "--data, or --in-memory)",
    ),
    "claim id": (
        "  claims: [{name: c, value: v}]\n",
        f"  claims: [{{name: c, value: v, id: {ID}}}]\n",
        "auth_servers[0].claims[0].id: the claim 'c' in the identity database has id '{}', "
        "and it cannot change: write that value here, or seed a new data file (another "
        "--data, or --in-memory)",
    ),
}


@pytest.mark.parametrize(("first", "second", "message"), CHANGED_IDS.values(), ids=CHANGED_IDS)
def test_a_fixed_id_the_database_holds_otherwise_is_an_error_not_ignored(
    tmp_path: Path, first: str, second: str, message: str
) -> None:
    with new_store() as store:
        (server,) = apply_seed(store, load_seed(seed_file(tmp_path, HEAD + first)))
        before = [store.get_auth_server(server.id), store.list_scopes(server.id)]
        claims = store.list_claims(server.id)
        path = seed_file(tmp_path, HEAD + "  description: changed\n" + second)
        with pytest.raises(SeedError) as caught:
            apply_seed(store, load_seed(path))
        stored_id = claims[0].id if claims else ""
        assert caught.value.errors == [f"{path}: {message.format(stored_id)}"]
        assert [store.get_auth_server(server.id), store.list_scopes(server.id)] == before
        assert store.list_claims(server.id) == claims  # nothing written


SCOPE_ID, CLAIM_ID = ID.replace("6a", "5c"), ID.replace("6a", "4d")


def test_a_changed_seed_is_applied_in_place_with_its_fixed_ids(tmp_path: Path) -> None:
    def seed(description: str, default: str, value: str) -> Seed:
        return load_seed(
            seed_file(
                tmp_path,
                f"{HEAD}  issuer_id: abcdefgh12345678\n  description: {description}\n"
                f"  scopes: [{{name: s, id: {SCOPE_ID}, default: {default}}}]\n"
                f"  claims: [{{name: c, value: {value}, id: {CLAIM_ID},"
                " include_in_scopes: [s]}]\n",
            )
        )

    with new_store() as store:
        (first,) = apply_seed(store, seed("one", "false", "v1"))
        key = store.active_key(first.id)
        (server,) = apply_seed(store, seed("two", "true", "v2"))
        assert (server.id, server.issuer_id, server.description) == (
            first.id,
            "abcdefgh12345678",
            "two",
        )
        assert store.active_key(server.id) == key  # an unchanged algorithm keeps the key
        [scope] = store.list_scopes(server.id)
        assert (scope.id, scope.name, scope.default) == (SCOPE_ID, "s", True)
        [claim] = store.list_claims(server.id)
        assert (claim.id, claim.value, claim.include_in_scopes) == (CLAIM_ID, "v2", (SCOPE_ID,))


# A second seed whose entry takes a name or id that another entity of the data file holds.
CLASHES = {
    "scope id": (
        f"  scopes: [{{name: s, id: {SCOPE_ID}}}]\n",
        f"  scopes: [{{name: r}}, {{name: t, id: {SCOPE_ID}}}]\n",
        "auth_servers[0].scopes[1]: a scope with this id already exists",
    ),
    "claim id": (
        f"  claims: [{{name: c, value: v, id: {CLAIM_ID}}}]\n",
        f"  claims: [{{name: d, value: v, id: {CLAIM_ID}}}]\n",
        "auth_servers[0].claims[0]: a claim with this id already exists",
    ),
    "client name": (
        "  clients: [{name: c, id: k}]\n",
        "  clients: [{name: c, id: other}]\n",
        "auth_servers[0].clients[0]: a client with this name already exists",
    ),
}


@pytest.mark.parametrize(("first", "second", "message"), CLASHES.values(), ids=CLASHES)
def test_a_child_clashing_with_the_data_file_is_named(
    tmp_path: Path, first: str, second: str, message: str
) -> None:
    with new_store() as store:
        apply_seed(store, load_seed(seed_file(tmp_path, HEAD + first)))
        path = seed_file(tmp_path, HEAD + second)
        with pytest.raises(SeedError) as caught:
            apply_seed(store, load_seed(path))
        assert caught.value.errors == [f"{path}: {message} in the identity database"]


def test_only_a_generated_secret_is_printed_and_only_when_it_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = (
        "  clients: [{name: c, id: k}, {name: d, secret: fixed-d}, {name: e, id: f, secret: x}]\n"
    )
    seed = load_seed(seed_file(tmp_path, HEAD + clients))
    with new_store() as store:
        (server,) = apply_seed(store, seed)
        (line,) = capsys.readouterr().out.splitlines()
        generated = line.removeprefix("seeded client k of 'A': secret ")
        assert re.fullmatch(r"[A-Za-z0-9]{32}", generated), line
        assert store.check_client_secret(server.id, "k", generated) is not None
        (d,) = (c for c in store.list_clients(server.id) if c.name == "d")
        assert store.check_client_secret(server.id, d.id, "fixed-d") == d
        apply_seed(store, seed)
        assert capsys.readouterr().out == ""
        assert store.check_client_secret(server.id, "k", generated) is not None
