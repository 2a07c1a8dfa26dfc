"""Seeding: declare auth servers, scopes, claims and clients in YAML; applied at every start.

    tokengate identity --seed config/identity-seed.yaml

    auth_servers:
      - name: Appointments Dev                  # matched by `id` when given, else by name
        id: 3b1f8c2e-6f0a-4a53-9a61-0d3c5b7e9f10 # optional, fixed for development
        issuer_id: appointmentsdev01             # optional: 16 lowercase letters/digits
        audience: http://myhttpbin.dev
        scopes:   [{name: my-scope, description: ..., default: false}]
        claims:   [{name: test-claim, value: test, include_in_token: true,
                    include_in_scopes: [my-scope]}]      # scopes by NAME here
        clients:  [{id: my-client, secret: my-secret, name: Client,
                    allow_scopes: [my-scope], access_token_duration: 3600}]

Idempotent: a second run changes nothing; a changed field is updated in place (ids, issued
tokens and signing keys stay). Entities not in the seed are left alone. Every problem is
reported at once as `FILE: path.to.field: message`, like `tokengate config validate`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from tokengate.identity.migrations import CLAIMS, CLIENTS, SCOPES
from tokengate.identity.models import (
    CLIENT_ID,
    GRANT_TYPES,
    MAX_TOKEN_DURATION,
    MIN_TOKEN_DURATION,
    RESPONSE_TYPES,
    SCOPE_NAME_RULE,
    SCOPE_TOKEN,
    SIGNING_ALGORITHMS,
    AuthServer,
)
from tokengate.identity.store import Store
from tokengate.identity.templates import TemplateError, check_template
from tokengate.identity.tokens import RESERVED_CLAIMS

_ISSUER_ID: Final = re.compile(r"[a-z0-9]{16}")
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_SERVER_FIELDS: Final = {
    "id",
    "issuer_id",
    "name",
    "description",
    "audience",
    "signing_algorithm",
    "labels",
    "trusted_origins",
    "scopes",
    "claims",
    "clients",
}
# What a seed entry may set: what the store lets change, plus fixed ids (and a client secret).
_SCOPE_FIELDS: Final = set(SCOPES.mutable) | {"id"}
_CLAIM_FIELDS: Final = set(CLAIMS.mutable) | {"id"}
_CLIENT_FIELDS: Final = set(CLIENTS.mutable) | {"id", "secret"}


class SeedError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _Checker:
    """Collects every problem with its path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{self.source}: {path}: {message}")

    def mapping(self, path: str, value: object, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path, "must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                self.error(f"{path}.{key}", "unknown field")
        return value

    def items(self, path: str, value: object) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, "must be a list")
            return []
        return value

    def text(self, path: str, value: object, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.error(path, "is required")
            return None
        if not isinstance(value, str) or not value:
            self.error(path, "must be a non-empty string")
            return None
        return value

    def flag(self, path: str, value: object) -> bool | None:
        if value is not None and not isinstance(value, bool):
            self.error(path, "must be true or false")
            return None
        return value

    def pattern(self, path: str, value: object, regex: re.Pattern[str], what: str) -> None:
        if value is not None and not (isinstance(value, str) and regex.fullmatch(value)):
            self.error(path, f"must be {what}")

    def choices(self, path: str, value: object, allowed: Sequence[str]) -> None:
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is not None and item not in allowed:
                self.error(path, f"{item!r} is not one of {', '.join(allowed)}")

    def duration(self, path: str, value: object) -> None:
        ok = type(value) is int and MIN_TOKEN_DURATION <= value <= MAX_TOKEN_DURATION
        if value is not None and not ok:
            self.error(
                path, f"must be a whole number from {MIN_TOKEN_DURATION} to {MAX_TOKEN_DURATION}"
            )


def load_seed(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a seed file; SeedError lists every problem."""
    source = str(path)
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SeedError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise SeedError([f"{source}: not valid YAML: {exc}"]) from None
    check = _Checker(source)
    top = check.mapping("(top)", document if document is not None else {}, {"auth_servers"})
    servers = check.items("auth_servers", top.get("auth_servers"))
    for index, server in enumerate(servers):
        _check_server(check, f"auth_servers[{index}]", server)
    if check.errors:
        raise SeedError(check.errors)
    return servers


def _check_server(check: _Checker, path: str, raw: object) -> None:
    server = check.mapping(path, raw, _SERVER_FIELDS)
    check.text(f"{path}.name", server.get("name"), required=True)
    check.text(f"{path}.audience", server.get("audience"), required=True)
    check.pattern(f"{path}.id", server.get("id"), _UUID, "a lower-case UUID")
    check.pattern(
        f"{path}.issuer_id", server.get("issuer_id"), _ISSUER_ID, "16 lower-case letters and digits"
    )
    check.choices(f"{path}.signing_algorithm", server.get("signing_algorithm"), SIGNING_ALGORITHMS)
    scope_names = set()
    for index, raw_scope in enumerate(check.items(f"{path}.scopes", server.get("scopes"))):
        where = f"{path}.scopes[{index}]"
        scope = check.mapping(where, raw_scope, _SCOPE_FIELDS)
        if (name := check.text(f"{where}.name", scope.get("name"), required=True)) is not None:
            scope_names.add(name)
            check.pattern(f"{where}.name", name, SCOPE_TOKEN, SCOPE_NAME_RULE)
        for flag in ("default", "include_in_metadata", "enabled"):
            check.flag(f"{where}.{flag}", scope.get(flag))
    for index, raw_claim in enumerate(check.items(f"{path}.claims", server.get("claims"))):
        where = f"{path}.claims[{index}]"
        claim = check.mapping(where, raw_claim, _CLAIM_FIELDS)
        if check.text(f"{where}.name", claim.get("name"), required=True) in RESERVED_CLAIMS:
            check.error(f"{where}.name", "is set by the issuer itself, not by a custom claim")
        value = check.text(f"{where}.value", claim.get("value"), required=True)
        if value is not None:
            try:
                check_template(value)
            except TemplateError as exc:
                check.error(f"{where}.value", str(exc))
        for flag in ("include_in_token", "include_in_all_scopes", "enabled"):
            check.flag(f"{where}.{flag}", claim.get(flag))
        _check_scope_names(
            check, f"{where}.include_in_scopes", claim.get("include_in_scopes"), scope_names
        )
    for index, raw_client in enumerate(check.items(f"{path}.clients", server.get("clients"))):
        where = f"{path}.clients[{index}]"
        client = check.mapping(where, raw_client, _CLIENT_FIELDS)
        check.text(f"{where}.name", client.get("name"), required=True)
        check.pattern(f"{where}.id", client.get("id"), CLIENT_ID, "1-36 of [-_A-Za-z0-9]")
        check.text(f"{where}.secret", client.get("secret"))
        check.choices(f"{where}.grant_types", client.get("grant_types"), GRANT_TYPES)
        check.choices(f"{where}.response_types", client.get("response_types"), RESPONSE_TYPES)
        check.duration(f"{where}.access_token_duration", client.get("access_token_duration"))
        check.duration(f"{where}.id_token_duration", client.get("id_token_duration"))
        check.flag(f"{where}.allow_all_scopes", client.get("allow_all_scopes"))
        _check_scope_names(check, f"{where}.allow_scopes", client.get("allow_scopes"), scope_names)


def _check_scope_names(check: _Checker, path: str, value: object, known: set[str]) -> None:
    for name in check.items(path, value):
        if name not in known:
            check.error(path, f"no scope named {name!r} in this auth server's seed")


def apply_seed(store: Store, servers: Sequence[Mapping[str, Any]]) -> list[AuthServer]:
    """Create or update everything the seed declares, in one transaction."""
    applied = []
    with store.transaction():
        for server in servers:
            applied.append(_apply_server(store, server))
    return applied


def _fields(raw: Mapping[str, Any], allowed: set[str], *, skip: set[str]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k in allowed and k not in skip}


def _apply_server(store: Store, raw: Mapping[str, Any]) -> AuthServer:
    fields = _fields(raw, _SERVER_FIELDS, skip={"id", "issuer_id", "scopes", "claims", "clients"})
    existing = _find_server(store, raw)
    if existing is None:
        server = store.create_auth_server(
            id=raw.get("id"), issuer_id=raw.get("issuer_id"), **fields
        )
    else:
        changed = {k: v for k, v in fields.items() if getattr(existing, k) != _normal(v)}
        server = store.update_auth_server(existing.id, **changed) if changed else existing
    scope_ids = {}
    current_scopes = {scope.name: scope for scope in store.list_scopes(server.id)}
    for raw_scope in raw.get("scopes") or ():
        values = _fields(raw_scope, _SCOPE_FIELDS, skip={"id"})
        scope = current_scopes.get(raw_scope["name"])
        if scope is None:
            scope = store.create_scope(server.id, id=raw_scope.get("id"), **values)
        elif changed := {k: v for k, v in values.items() if getattr(scope, k) != v}:
            scope = store.update_scope(server.id, scope.id, **changed)
        scope_ids[scope.name] = scope.id
    current_claims = {claim.name: claim for claim in store.list_claims(server.id)}
    for raw_claim in raw.get("claims") or ():
        values = _fields(raw_claim, _CLAIM_FIELDS, skip={"id"})
        if "include_in_scopes" in values:
            values["include_in_scopes"] = tuple(scope_ids[n] for n in values["include_in_scopes"])
        claim = current_claims.get(raw_claim["name"])
        if claim is None:
            store.create_claim(server.id, id=raw_claim.get("id"), **values)
        elif changed := {k: v for k, v in values.items() if getattr(claim, k) != _normal(v)}:
            store.update_claim(server.id, claim.id, **changed)
    for raw_client in raw.get("clients") or ():
        values = _fields(raw_client, _CLIENT_FIELDS, skip={"id", "secret"})
        if "allow_scopes" in values:
            values["allow_scopes"] = tuple(scope_ids[n] for n in values["allow_scopes"])
        for key in ("grant_types", "redirect_uris", "response_types"):
            if key in values:
                values[key] = tuple(values[key])
        client_id = raw_client.get("id")
        secret = raw_client.get("secret")
        if client_id is None:
            named = [c for c in store.list_clients(server.id) if c.name == raw_client["name"]]
            if named:
                continue  # already created by an earlier run; its secret was shown then
            client, shown = store.create_client(server.id, secret=secret, **values)
        else:
            client, generated, _ = store.replace_client(
                server.id, client_id, secret=secret, **values
            )
            shown = generated or ""
        if shown and secret is None:
            # Like Konnect, a generated secret is shown once: the seed did not fix one.
            print(f"seeded client {client.id} of {server.name!r}: secret {shown}", flush=True)
    return store.get_auth_server(server.id)


def _find_server(store: Store, raw: Mapping[str, Any]) -> AuthServer | None:
    for server in store.list_auth_servers():
        if raw.get("id") is not None:
            if server.id == raw["id"]:
                return server
        elif server.name == raw["name"]:
            return server
    return None


def _normal(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
