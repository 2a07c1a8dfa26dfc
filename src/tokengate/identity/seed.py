"""Seeding: declare auth servers, scopes, claims and clients in YAML; applied at every start.

    tokengate identity --seed config/identity-seed.yaml

    auth_servers:
      - name: Appointments Dev                  # matched by `id` when given, else by name
        id: 3b1f8c2e-6f0a-4a53-9a61-0d3c5b7e9f10 # optional, fixed for development
        issuer_id: appointmentsdev1              # optional: 16 lowercase letters/digits
        audience: http://myhttpbin.dev
        scopes:   [{name: my-scope, description: ..., default: false}]
        claims:   [{name: test-claim, value: test, include_in_token: true,
                    include_in_scopes: [my-scope]}]      # scopes by NAME here
        clients:  [{id: my-client, secret: my-secret, name: Client,
                    allow_scopes: [my-scope], access_token_duration: 3600}]

Idempotent: a second run changes nothing; a changed field is updated in place (ids, issued
tokens and signing keys stay), a client's as PUT replaces it (by `id` when given, else by name).
A fixed id the database's entity of that name does not have is an error: ids cannot change.
Entities not in the seed are left alone. A field takes exactly the values the management API
takes (validation.py's rules). Every problem is reported at once as `FILE: path.to.field:
message`, like `tokengate config validate`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tokengate.gateway.config import ConfigError, read_config_text
from tokengate.gateway.config_checks import Suggestions, load_yaml
from tokengate.identity.models import AuthServer
from tokengate.identity.store import Conflict, Store
from tokengate.identity.validation import (
    AUTH_SERVER_CREATE,
    AUTH_SERVER_CREATE_REQUIRED,
    CLAIM,
    CLAIM_CREATE_REQUIRED,
    CLIENT_CREATE,
    CLIENT_REPLACE,
    SCOPE,
    SCOPE_CREATE_REQUIRED,
    Invalid,
    Schema,
    array,
    client_id,
    string,
    string_where,
    uuid,
)

_ISSUER_ID: Final = re.compile(r"[a-z0-9]{16}")
_CHILDREN: Final = ("scopes", "claims", "clients")

# The API's rules, plus what only a seed sets: fixed ids and a client's secret. Claims and
# clients name their scopes (the API takes ids); the names are checked against the seed's scopes.
_SERVER: Final[Schema] = {
    **AUTH_SERVER_CREATE,
    "id": uuid(),
    "issuer_id": string_where(
        _ISSUER_ID.fullmatch, "invalid", "must be 16 lower-case letters and digits"
    ),
}
_SCOPE: Final[Schema] = {**SCOPE, "id": uuid()}
_CLAIM: Final[Schema] = {
    **CLAIM,
    "id": uuid(),
    "include_in_scopes": array(string(min_length=1), dedupe=True),
}
_CLIENT: Final[Schema] = {
    **CLIENT_CREATE,
    "id": client_id(),
    "secret": CLIENT_REPLACE["client_secret"],
    "allow_scopes": array(string(min_length=1), unique=True),
}
# Only a client's name is required: the store's defaults fill grant and response types.
_CLIENT_REQUIRED: Final = ("name",)
# The API speaks JSON; a seed is YAML.
_YAML_WORDS: Final = {
    "must be an array": "must be a list",
    "must be an object": "must be a mapping",
    "must be a boolean": "must be true or false",
}


class SeedError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class Seed(list[dict[str, Any]]):
    """The checked auth servers, values as the store takes them; `source` names the file."""

    def __init__(self, servers: Iterable[dict[str, Any]], source: str) -> None:
        super().__init__(servers)
        self.source = source


Entry = tuple[str, dict[str, Any]]  # (path in the file, checked fields)


class _Checker:
    """Collects every problem with its path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []
        self.suggest = Suggestions()

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.source}: {path}: {message}")

    def items(self, path: str, value: object) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, "must be a list")
            return []
        return value

    def fields(
        self,
        path: str,
        raw: object,
        schema: Schema,
        *,
        required: Iterable[str],
        nested: Collection[str] = (),
    ) -> dict[str, Any] | None:
        """Each field through its API rule; `nested` keys are left to the caller."""
        if not isinstance(raw, dict):
            self.error(path, "must be a mapping")
            return None
        values: dict[str, Any] = {}
        for name in required:
            if name not in raw:
                self.error(f"{path}.{name}", "is required")
        for key, value in raw.items():
            if key in nested:
                continue
            if (rule := schema.get(key)) is None:
                meant = self.suggest.for_unknown(key, [*schema, *nested])
                self.error(f"{path}.{key}", f"unknown field{meant}")
                continue
            try:
                values[key] = rule(value)
            except Invalid as exc:
                reason = exc.reason
                for json_word, yaml_word in _YAML_WORDS.items():
                    reason = reason.replace(json_word, yaml_word)
                self.error(f"{path}.{key}", reason)
        return values

    def entries(
        self, path: str, raw: Mapping[str, Any], key: str, schema: Schema, required: Iterable[str]
    ) -> list[Entry]:
        found = []
        for index, item in enumerate(self.items(f"{path}.{key}", raw.get(key))):
            where = f"{path}.{key}[{index}]"
            values = self.fields(where, item, schema, required=required)
            if values is not None:
                found.append((where, values))
        return found

    def unique(self, entries: Iterable[Entry], what: str, field: str) -> None:
        """Entities are matched by name or id: a second one with the same would overwrite."""
        first: dict[Any, str] = {}
        for path, values in entries:
            if (value := values.get(field)) is None:
                continue
            if (where := first.setdefault(value, path)) != path:
                self.error(
                    f"{path}.{field}", f"duplicate {what} {field} {value!r} (first at {where})"
                )


def load_seed(path: str | Path) -> Seed:
    """Read and check a seed file; SeedError lists every problem."""
    source = str(path)
    try:
        document = load_yaml(read_config_text(path))  # kong.yaml's reader: bounded, UTF-8
    except ConfigError as exc:
        raise SeedError(exc.errors) from None
    except ValueError as exc:  # load_yaml's: where, and what (a duplicate key, too deep, ...)
        problem = str(exc).removeprefix("invalid YAML: ")
        raise SeedError([f"{source}: not valid YAML: {problem}"]) from None
    check = _Checker(source)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        check.error("(top)", "must be a mapping")
        document = {}
    for key in document:
        if key != "auth_servers":
            meant = check.suggest.for_unknown(key, ["auth_servers"])
            check.error(f"(top).{key}", f"unknown field{meant}")
    servers: list[_Server] = []
    for index, raw in enumerate(check.items("auth_servers", document.get("auth_servers"))):
        if (server := _check_server(check, f"auth_servers[{index}]", raw)) is not None:
            servers.append(server)
    _check_unique_ids(check, servers)
    if check.errors:
        raise SeedError(check.errors)
    return Seed((server.loaded() for server in servers), source)


@dataclass(frozen=True, slots=True)
class _Server:
    """One checked auth server, its children with their paths (for duplicate checks)."""

    path: str
    values: dict[str, Any]
    children: dict[str, list[Entry]]  # scopes, claims, clients

    def loaded(self) -> dict[str, Any]:
        children = {key: [values for _, values in found] for key, found in self.children.items()}
        return {**self.values, **children}


def _check_server(check: _Checker, path: str, raw: object) -> _Server | None:
    required = AUTH_SERVER_CREATE_REQUIRED
    server = check.fields(path, raw, _SERVER, required=required, nested=_CHILDREN)
    if server is None or not isinstance(raw, dict):
        return None
    scopes = check.entries(path, raw, "scopes", _SCOPE, SCOPE_CREATE_REQUIRED)
    claims = check.entries(path, raw, "claims", _CLAIM, CLAIM_CREATE_REQUIRED)
    clients = check.entries(path, raw, "clients", _CLIENT, _CLIENT_REQUIRED)
    # The store keeps scope and client names unique per auth server, client ids too; the seed
    # finds scopes and claims by name. A repeated one would overwrite the first, or clash.
    check.unique(scopes, "scope", "name")
    check.unique(claims, "claim", "name")
    check.unique(clients, "client", "name")
    check.unique(clients, "client", "id")
    names = {values["name"] for _, values in scopes if "name" in values}
    for where, claim in claims:
        _check_scope_names(check, where, claim, "include_in_scopes", names)
    for where, client in clients:
        _check_scope_names(check, where, client, "allow_scopes", names)
    return _Server(path, server, {"scopes": scopes, "claims": claims, "clients": clients})


def _check_unique_ids(check: _Checker, servers: Sequence[_Server]) -> None:
    """Auth servers are unique by id, issuer id and name; scope and claim ids across servers."""
    for field in ("id", "issuer_id", "name"):
        check.unique(((server.path, server.values) for server in servers), "auth server", field)
    for key, what in (("scopes", "scope"), ("claims", "claim")):
        check.unique((e for server in servers for e in server.children[key]), what, "id")


def _check_scope_names(
    check: _Checker, path: str, values: Mapping[str, Any], key: str, known: set[str]
) -> None:
    for name in values.get(key, ()):
        if name not in known:
            check.error(f"{path}.{key}", f"no scope named {name!r} in this auth server's seed")


def apply_seed(store: Store, servers: Sequence[Mapping[str, Any]]) -> list[AuthServer]:
    """Create or update everything `load_seed` checked, in one transaction.

    SeedError if an entry clashes with what the database already holds (a name or id taken by
    an entity the seed does not declare): nothing is written then."""
    source = servers.source if isinstance(servers, Seed) else "seed"
    applied = []
    secrets: list[str] = []
    with store.transaction():
        for index, server in enumerate(servers):
            at = _At(source, f"auth_servers[{index}]")
            applied.append(_apply_server(store, server, at, secrets))
    # Once committed: a secret printed for a seed that was then rolled back would name a client
    # that does not exist.
    for line in secrets:
        print(line, flush=True)
    return applied


class _At:
    """Where a seed entry is, to name it when the store refuses it."""

    def __init__(self, source: str, path: str) -> None:
        self.source = source
        self.path = path

    def child(self, key: str, index: int) -> _At:
        return _At(self.source, f"{self.path}.{key}[{index}]")

    @contextlib.contextmanager
    def conflicts(self) -> Iterator[None]:
        try:
            yield
        except Conflict as exc:
            message = f"{self.source}: {self.path}: {exc} in the identity database"
            raise SeedError([message]) from None

    def same_id(self, field: str, raw: Mapping[str, Any], found: Any, what: str) -> None:
        """A fixed id that the entity found by name or id does not have: ids cannot change, so
        say so rather than leave the seed's value unapplied."""
        declared, stored = raw.get(field), getattr(found, field)
        if declared is not None and declared != stored:
            message = (
                f"{self.source}: {self.path}.{field}: the {what} {found.name!r} in the identity "
                f"database has {field} {stored!r}, and it cannot change: write that value "
                "here, or seed a new data file (another --data, or --in-memory)"
            )
            raise SeedError([message])


def _fields(raw: Mapping[str, Any], *, skip: set[str]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k not in skip}


def _apply_server(store: Store, raw: Mapping[str, Any], at: _At, secrets: list[str]) -> AuthServer:
    fields = _fields(raw, skip={"id", "issuer_id", *_CHILDREN})
    existing = _find_server(store, raw)
    with at.conflicts():
        if existing is None:
            server = store.create_auth_server(
                id=raw.get("id"), issuer_id=raw.get("issuer_id"), **fields
            )
        else:
            at.same_id("issuer_id", raw, existing, "auth server")
            changed = {k: v for k, v in fields.items() if getattr(existing, k) != v}
            server = store.update_auth_server(existing.id, **changed) if changed else existing
    scope_ids = {}
    current_scopes = {scope.name: scope for scope in store.list_scopes(server.id)}
    for index, raw_scope in enumerate(raw.get("scopes") or ()):
        values = _fields(raw_scope, skip={"id"})
        scope = current_scopes.get(raw_scope["name"])
        where = at.child("scopes", index)
        with where.conflicts():
            if scope is None:
                scope = store.create_scope(server.id, id=raw_scope.get("id"), **values)
            else:
                where.same_id("id", raw_scope, scope, "scope")
                if changed := {k: v for k, v in values.items() if getattr(scope, k) != v}:
                    scope = store.update_scope(server.id, scope.id, **changed)
        scope_ids[scope.name] = scope.id
    current_claims = {claim.name: claim for claim in store.list_claims(server.id)}
    for index, raw_claim in enumerate(raw.get("claims") or ()):
        values = _fields(raw_claim, skip={"id"})
        if "include_in_scopes" in values:
            values["include_in_scopes"] = tuple(scope_ids[n] for n in values["include_in_scopes"])
        claim = current_claims.get(raw_claim["name"])
        where = at.child("claims", index)
        with where.conflicts():
            if claim is None:
                store.create_claim(server.id, id=raw_claim.get("id"), **values)
            else:
                where.same_id("id", raw_claim, claim, "claim")
                if changed := {k: v for k, v in values.items() if getattr(claim, k) != v}:
                    store.update_claim(server.id, claim.id, **changed)
    for index, raw_client in enumerate(raw.get("clients") or ()):
        with at.child("clients", index).conflicts():
            _apply_client(store, server, raw_client, scope_ids, secrets)
    return store.get_auth_server(server.id)


def _apply_client(
    store: Store,
    server: AuthServer,
    raw: Mapping[str, Any],
    scope_ids: Mapping[str, str],
    secrets: list[str],
) -> None:
    values = _fields(raw, skip={"id", "secret"})
    if "allow_scopes" in values:
        values["allow_scopes"] = tuple(scope_ids[n] for n in values["allow_scopes"])
    client_id, secret = raw.get("id"), raw.get("secret")
    if client_id is None:  # found by name: an earlier run created it, with a generated id
        client_id = next(
            (c.id for c in store.list_clients(server.id) if c.name == raw["name"]), None
        )
    if client_id is None:
        client, shown = store.create_client(server.id, secret=secret, **values)
    else:
        client, generated, _ = store.replace_client(server.id, client_id, secret=secret, **values)
        shown = generated or ""
    if shown and secret is None:
        # Like Konnect, a generated secret is shown once: the seed did not fix one.
        secrets.append(f"seeded client {client.id} of {server.name!r}: secret {shown}")


def _find_server(store: Store, raw: Mapping[str, Any]) -> AuthServer | None:
    for server in store.list_auth_servers():
        if raw.get("id") is not None:
            if server.id == raw["id"]:
                return server
        elif server.name == raw["name"]:
            return server
    return None
