"""The identity server's SQLite store: the only place SQL lives.

    store = Store.open("tokengate-identity.db")      # or Store.open(None) for in-memory
    server = store.create_auth_server(name="Demo", audience="http://myhttpbin.dev")
    client, clear_secret = store.create_client(server.id, name="demo-client")
    assert store.check_client_secret(server.id, client.id, clear_secret) == client
    store.close()

Errors (every one a StoreError):

    StoreError              our database failed, or it is newer than this code (→ 500)
     ├── NotFound           the entity or its parent is missing (→ 404)
     │    └── MissingReference   a scope id in include_in_scopes / allow_scopes is not a scope
     │                           of this auth server (→ 404, or 400 if the API prefers)
     ├── Conflict           a unique name or id is taken (→ 409)
     └── TooManySecrets     a third enabled client secret (→ 403)

Unknown fields in update_* are programming errors: TypeError. Values are not validated here (the
admin API does that against Kong's spec); uniqueness and references are, inside the transaction,
so concurrent API calls cannot leave the store inconsistent. Unique: auth server name and
issuer_id; scope name per auth server; client name and client_id per auth server. Claim names
are not unique (Kong's spec has no 409 for claims).

One connection per Store, used from the event loop's thread. Writes run in `_tx()` (BEGIN
IMMEDIATE, SAVEPOINTs when nested, e.g. inside `transaction()`); never await inside
`transaction()`. The file and its -wal/-shm are owner-only: they hold the private signing keys.
Schema, migrations and the row <-> model mapping live in migrations.py.

Costs on the token endpoint (file database, WAL): a lookup ~10-15 µs, a 5-row list ~30-40 µs,
check_client_secret ~35 µs (HMAC, not a KDF: see hash_secret), record_token ~75 µs (the commit).
Tests inject `clock` and a fast `key_factory` (RSA 2048 generation takes ~50-150 ms).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import sqlite3
import string
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from tokengate.identity import migrations, signing
from tokengate.identity.migrations import (
    CLAIMS,
    CLIENTS,
    KEYS,
    SCOPES,
    SECRETS,
    SERVERS,
    TABLES,
    TOKENS,
    Table,
    decode,
    encode,
    normalize,
)
from tokengate.identity.models import (
    MAX_ACTIVE_SECRETS,
    AuthServer,
    Claim,
    Client,
    ClientSecret,
    IssuedToken,
    Scope,
    SigningKey,
)

KeyFactory = Callable[[str, str, datetime], SigningKey]
T = TypeVar("T")

ISSUER_ID_ALPHABET = string.ascii_lowercase + string.digits
ISSUER_ID_LENGTH = 16
CLIENT_ID_ALPHABET = string.ascii_letters + string.digits
CLIENT_ID_LENGTH = 20
SECRET_LENGTH = 32  # [A-Za-z0-9]{32}: ~190 bits of entropy
DEFAULT_KEY_GRACE = timedelta(days=1)
OTHER_WRITERS_POLL = 0.01  # seconds: how stale the memo may be after another process commits
MEMO_MAX_ENTRIES = 4096
BUSY_TIMEOUT_MS = 5000  # how long a write waits for another process's write lock


class StoreError(Exception):
    """The store failed: our infrastructure, not the request."""


class NotFound(StoreError):
    """The entity, or one of its parents, does not exist."""


class MissingReference(NotFound):
    """A referenced scope id is not a scope of this auth server."""


class Conflict(StoreError):
    """A unique name or id is already taken."""


class TooManySecrets(StoreError):
    """The client already has MAX_ACTIVE_SECRETS enabled secrets."""


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- client secrets ------------------------------------------------------------------------------
#
# Why not scrypt/argon2: a slow KDF protects *low-entropy* passwords from offline guessing. Our
# secrets are machine-generated, 32 characters of [A-Za-z0-9] (~190 bits): no guessing attack
# exists, slow or fast. The token endpoint checks a secret on every client_credentials request,
# and a ~2 ms KDF would cost as much as the RSA signature itself. A random per-secret salt keeps
# two equal secrets from having equal hashes and defeats precomputation. (Secrets a user imports
# with PUT may be weak; they rely, like the private signing keys next to them, on the database
# being owner-only: whoever can read it can mint tokens anyway.)

_HASH_SCHEME = "hmac-sha256"
_SALT_BYTES = 16


def hash_secret(secret: str) -> str:
    """`hmac-sha256$<salt>$<digest>` (unpadded base64url), a fresh random salt per call."""
    salt = secrets.token_bytes(_SALT_BYTES)
    return f"{_HASH_SCHEME}${_b64(salt)}${_b64(_mac(salt, secret))}"


def check_secret(secret: str, hashed: str) -> bool:
    """Whether `secret` matches `hashed`, compared in constant time; False for a malformed hash."""
    parsed = parse_hash(hashed)
    return parsed is not None and matches(secret, parsed)


def matches(secret: str, parsed: tuple[bytes, bytes]) -> bool:
    """`check_secret` for a hash already parsed (the token endpoint's memo keeps them so)."""
    salt, expected = parsed
    return hmac.compare_digest(_mac(salt, secret), expected)


def parse_hash(hashed: str) -> tuple[bytes, bytes] | None:
    """(salt, digest) of a stored hash; None when it is malformed (it then matches nothing)."""
    parts = hashed.split("$")
    if len(parts) != 3 or parts[0] != _HASH_SCHEME:
        return None
    try:
        return _unb64(parts[1]), _unb64(parts[2])
    except ValueError:
        return None


def _mac(salt: bytes, secret: str) -> bytes:
    # surrogatepass: any str a client sends hashes (and mismatches) instead of raising.
    return hmac.new(salt, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Checked against when a client has no usable secret, so that costs the same time as a real check.
_DUMMY_HASH = (secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(32))


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_client_secret() -> str:
    return _random(CLIENT_ID_ALPHABET, SECRET_LENGTH)


# --- the store -----------------------------------------------------------------------------------

_CLIENT_DEFAULTS: Mapping[str, Any] = {
    "grant_types": ("client_credentials",),
    "redirect_uris": (),
    "login_uri": None,
    "access_token_duration": 300,
    "id_token_duration": 300,
    "allow_all_scopes": False,
    "allow_scopes": (),
    "labels": None,
    "response_types": ("token",),
    "token_endpoint_auth_method": "client_secret_post",
}


class Store:
    def __init__(self, db: sqlite3.Connection, clock: Callable[[], datetime], keys: KeyFactory):
        self._db = db
        self._clock = clock
        self._new_key = keys
        self._depth = 0
        # Read-through memo of what the token endpoint reads on every request (servers, scopes,
        # claims, clients, secrets, keys). It is valid while (a) this connection wrote no config
        # (`_config_version`, bumped by every write except token records) and (b) no other
        # connection committed (`PRAGMA data_version`, e.g. `tokengate identity rotate-keys`).
        self._config_version = 0
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._memo_stamp: tuple[int, int] = (-1, -1)
        self._data_version = -1
        self._data_version_due = 0.0

    @classmethod
    def open(
        cls,
        path: str | Path | None,
        *,
        clock: Callable[[], datetime] = utcnow,
        key_factory: KeyFactory = signing.new_key,
    ) -> Store:
        """Open (creating, then migrating) the database at `path`; None: a private in-memory one."""
        memory = path is None or str(path) == ":memory:"
        target = ":memory:" if path is None or memory else path
        if not memory:
            _make_private(Path(target))
        try:
            db = sqlite3.connect(target, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open identity database {path}: {exc}") from exc
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
            if not memory:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across crashes of us
            migrations.migrate(db)
        except migrations.SchemaTooNew as exc:
            db.close()
            raise StoreError(
                f"identity database {path} has schema version {exc.found}, newer than the "
                f"{exc.latest} this tokengate knows: upgrade tokengate or use another --data file"
            ) from exc
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"cannot open identity database {path}: {exc}") from exc
        except BaseException:
            db.close()
            raise
        return cls(db, clock, key_factory)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    @property
    def schema_version(self) -> int:
        return migrations.schema_version(self._db)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several store calls into one atomic write (seeding). Do not await inside."""
        with self._tx():
            yield

    # --- auth servers ----------------------------------------------------------------------------

    def create_auth_server(
        self,
        *,
        name: str,
        audience: str,
        description: str = "",
        signing_algorithm: str = "RS256",
        labels: Mapping[str, str] | None = None,
        trusted_origins: Sequence[str] = (),
        id: str | None = None,
        issuer_id: str | None = None,
    ) -> AuthServer:
        now = self._now()
        server = AuthServer(
            id=id or str(uuid.uuid4()),
            issuer_id=issuer_id or _random(ISSUER_ID_ALPHABET, ISSUER_ID_LENGTH),
            name=name,
            description=description,
            audience=audience,
            signing_algorithm=signing_algorithm,
            labels=normalize("labels", labels or {}),
            trusted_origins=normalize("trusted_origins", trusted_origins),
            created_at=now,
            updated_at=now,
        )
        key = self._new_key(server.id, signing_algorithm, now)  # slow: outside the write lock
        with self._tx():
            self._insert(SERVERS, server)
            self._insert(KEYS, key)
        return server

    def get_auth_server(self, auth_server_id: str) -> AuthServer:
        return self._one(SERVERS, "id = ?", (auth_server_id,), "auth server")

    def get_auth_server_by_issuer_id(self, issuer_id: str) -> AuthServer:
        return self._memoized(
            ("server", issuer_id),
            lambda: self._one(SERVERS, "issuer_id = ?", (issuer_id,), "auth server"),
        )

    def list_auth_servers(self) -> list[AuthServer]:
        return self._select(SERVERS, "1", ())

    def update_auth_server(self, auth_server_id: str, **changes: Any) -> AuthServer:
        """Change the given fields. A new signing_algorithm rotates the key (RSA keys carry alg)."""
        current = self.get_auth_server(auth_server_id)
        algorithm = changes.get("signing_algorithm", current.signing_algorithm)
        new_key = None
        if algorithm != current.signing_algorithm:
            new_key = self._new_key(auth_server_id, algorithm, self._now())
        with self._tx():
            server = self._update(SERVERS, {"id": auth_server_id}, changes, "auth server")
            if new_key is not None:
                self._rotate(new_key, DEFAULT_KEY_GRACE)
        return server

    def delete_auth_server(self, auth_server_id: str) -> None:
        """Delete it and, by cascade, its scopes, claims, clients, secrets, tokens and keys."""
        self._delete(SERVERS, {"id": auth_server_id}, "auth server")

    # --- scopes ----------------------------------------------------------------------------------

    def create_scope(
        self,
        auth_server_id: str,
        *,
        name: str,
        description: str = "",
        default: bool = False,
        include_in_metadata: bool = False,
        enabled: bool = True,
        id: str | None = None,
    ) -> Scope:
        now = self._now()
        scope = Scope(
            id=id or str(uuid.uuid4()),
            auth_server_id=auth_server_id,
            name=name,
            description=description,
            default=default,
            include_in_metadata=include_in_metadata,
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        with self._tx():
            self._require_server(auth_server_id)
            self._insert(SCOPES, scope)
        return scope

    def get_scope(self, auth_server_id: str, scope_id: str) -> Scope:
        return self._child(SCOPES, auth_server_id, scope_id, "scope")

    def list_scopes(self, auth_server_id: str) -> list[Scope]:
        return list(
            self._memoized(
                ("scopes", auth_server_id), lambda: self._children(SCOPES, auth_server_id)
            )
        )

    def update_scope(self, auth_server_id: str, scope_id: str, **changes: Any) -> Scope:
        key = {"auth_server_id": auth_server_id, "id": scope_id}
        with self._tx():
            return self._update(SCOPES, key, changes, "scope")

    def delete_scope(self, auth_server_id: str, scope_id: str) -> None:
        """Delete the scope; its id leaves claims' include_in_scopes and clients' allow_scopes."""
        with self._tx():
            self._delete(SCOPES, {"auth_server_id": auth_server_id, "id": scope_id}, "scope")
            pairs: tuple[tuple[Table[Any], str], ...] = (
                (CLAIMS, "include_in_scopes"),
                (CLIENTS, "allow_scopes"),
            )
            for table, column in pairs:
                for row in self._select(table, "auth_server_id = ?", (auth_server_id,)):
                    ids: tuple[str, ...] = getattr(row, column)
                    if scope_id in ids:
                        kept = tuple(i for i in ids if i != scope_id)
                        key = {"auth_server_id": auth_server_id, "id": row.id}
                        self._update(table, key, {column: kept}, table.noun)

    # --- claims ----------------------------------------------------------------------------------

    def create_claim(
        self,
        auth_server_id: str,
        *,
        name: str,
        value: str,
        include_in_token: bool = False,
        include_in_all_scopes: bool = False,
        include_in_scopes: Sequence[str] = (),
        enabled: bool = True,
        id: str | None = None,
    ) -> Claim:
        now = self._now()
        claim = Claim(
            id=id or str(uuid.uuid4()),
            auth_server_id=auth_server_id,
            name=name,
            value=value,
            include_in_token=include_in_token,
            include_in_all_scopes=include_in_all_scopes,
            include_in_scopes=normalize("include_in_scopes", include_in_scopes),
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        with self._tx():
            self._require_server(auth_server_id)
            self._require_scopes(auth_server_id, claim.include_in_scopes)
            self._insert(CLAIMS, claim)
        return claim

    def get_claim(self, auth_server_id: str, claim_id: str) -> Claim:
        return self._child(CLAIMS, auth_server_id, claim_id, "claim")

    def list_claims(self, auth_server_id: str) -> list[Claim]:
        return list(
            self._memoized(
                ("claims", auth_server_id), lambda: self._children(CLAIMS, auth_server_id)
            )
        )

    def update_claim(self, auth_server_id: str, claim_id: str, **changes: Any) -> Claim:
        key = {"auth_server_id": auth_server_id, "id": claim_id}
        with self._tx():
            claim = self._update(CLAIMS, key, changes, "claim")
            if "include_in_scopes" in changes:
                self._require_scopes(auth_server_id, claim.include_in_scopes)
            return claim

    def delete_claim(self, auth_server_id: str, claim_id: str) -> None:
        self._delete(CLAIMS, {"auth_server_id": auth_server_id, "id": claim_id}, "claim")

    # --- clients ---------------------------------------------------------------------------------

    def create_client(
        self,
        auth_server_id: str,
        *,
        name: str,
        grant_types: Sequence[str] = _CLIENT_DEFAULTS["grant_types"],
        redirect_uris: Sequence[str] = (),
        login_uri: str | None = None,
        access_token_duration: int = _CLIENT_DEFAULTS["access_token_duration"],
        id_token_duration: int = _CLIENT_DEFAULTS["id_token_duration"],
        allow_all_scopes: bool = False,
        allow_scopes: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        response_types: Sequence[str] = _CLIENT_DEFAULTS["response_types"],
        token_endpoint_auth_method: str = _CLIENT_DEFAULTS["token_endpoint_auth_method"],
        id: str | None = None,
        secret: str | None = None,
    ) -> tuple[Client, str]:
        """A new client (client_id generated unless given) and its first secret, returned once."""
        fields = {
            "name": name,
            "grant_types": grant_types,
            "redirect_uris": redirect_uris,
            "login_uri": login_uri,
            "access_token_duration": access_token_duration,
            "id_token_duration": id_token_duration,
            "allow_all_scopes": allow_all_scopes,
            "allow_scopes": allow_scopes,
            "labels": labels,
            "response_types": response_types,
            "token_endpoint_auth_method": token_endpoint_auth_method,
        }
        client_id = id or _random(CLIENT_ID_ALPHABET, CLIENT_ID_LENGTH)
        clear = secret if secret is not None else new_client_secret()
        with self._tx():
            client = self._insert_client(auth_server_id, client_id, fields)
            self._insert_secret(client, clear, enabled=True)
        return client, clear

    def get_client(self, auth_server_id: str, client_id: str) -> Client:
        return self._child(CLIENTS, auth_server_id, client_id, "client")

    def list_clients(self, auth_server_id: str) -> list[Client]:
        return self._children(CLIENTS, auth_server_id)

    def update_client(
        self, auth_server_id: str, client_id: str, *, secret: str | None = None, **changes: Any
    ) -> Client:
        """Change the given fields; `secret` (PATCH client_secret) becomes the only secret."""
        key = {"auth_server_id": auth_server_id, "id": client_id}
        with self._tx():
            client = self._update(CLIENTS, key, changes, "client")
            if "allow_scopes" in changes:
                self._require_scopes(auth_server_id, client.allow_scopes)
            if secret is not None:
                self._set_only_secret(client, secret)
            return client

    def replace_client(
        self, auth_server_id: str, client_id: str, *, secret: str | None, **fields: Any
    ) -> tuple[Client, str | None, bool]:
        """PUT: create the client with this id, or replace every field of the existing one.

        Omitted fields take create_client's defaults. A given `secret` becomes the client's only
        secret (kept as is when it already matches one, so repeating a PUT changes nothing); with
        no secret, an existing client keeps its secrets and a new one gets a generated secret.
        Returns (client, the clear secret if a secret was stored now, whether it was created).
        """
        unknown = set(fields) - CLIENTS.mutable
        if unknown or "name" not in fields:
            raise TypeError(f"replace_client: unknown fields {sorted(unknown)} or no name")
        values = {**_CLIENT_DEFAULTS, **fields}
        with self._tx():
            self._require_server(auth_server_id)
            key = {"auth_server_id": auth_server_id, "id": client_id}
            current: Client | None = self._find(CLIENTS, key)
            if current is None:
                client = self._insert_client(auth_server_id, client_id, values)
                clear = secret if secret is not None else new_client_secret()
                self._insert_secret(client, clear, enabled=True)
                return client, clear, True
            values["labels"] = values["labels"] or {}
            if any(normalize(k, v) != getattr(current, k) for k, v in values.items()):
                client = self._update(CLIENTS, key, values, "client")
            else:  # the same PUT again (a seed at each start): nothing changes, updated_at neither
                client = current
            self._require_scopes(auth_server_id, client.allow_scopes)
            created_secret = None if secret is None else self._set_only_secret(client, secret)
            return client, created_secret, False

    def delete_client(self, auth_server_id: str, client_id: str) -> None:
        """Delete the client and, by cascade, its secrets and tokens."""
        self._delete(CLIENTS, {"auth_server_id": auth_server_id, "id": client_id}, "client")

    # --- client secrets --------------------------------------------------------------------------

    def create_secret(
        self,
        auth_server_id: str,
        client_id: str,
        *,
        secret: str | None = None,
        enabled: bool = True,
    ) -> tuple[ClientSecret, str]:
        """A new secret (generated unless given), returned in clear once. TooManySecrets if a third
        would be enabled."""
        clear = secret if secret is not None else new_client_secret()
        with self._tx():
            client = self.get_client(auth_server_id, client_id)
            return self._insert_secret(client, clear, enabled=enabled), clear

    def list_secrets(self, auth_server_id: str, client_id: str) -> list[ClientSecret]:
        self._require_client(auth_server_id, client_id)
        where = "auth_server_id = ? AND client_id = ?"
        return self._select(SECRETS, where, (auth_server_id, client_id))

    def get_secret(self, auth_server_id: str, client_id: str, secret_id: str) -> ClientSecret:
        key = {"auth_server_id": auth_server_id, "client_id": client_id, "id": secret_id}
        found: ClientSecret | None = self._find(SECRETS, key)
        if found is None:
            self._require_client(auth_server_id, client_id)
            raise NotFound(f"client secret [{secret_id}] not found")
        return found

    def update_secret(
        self, auth_server_id: str, client_id: str, secret_id: str, *, enabled: bool
    ) -> ClientSecret:
        """Enable or disable a secret; enabling a third raises TooManySecrets."""
        with self._tx():
            current = self.get_secret(auth_server_id, client_id, secret_id)
            if enabled and not current.enabled:
                self._check_room(auth_server_id, client_id)
            key = {"auth_server_id": auth_server_id, "client_id": client_id, "id": secret_id}
            return self._update(SECRETS, key, {"enabled": enabled}, "client secret")

    def delete_secret(self, auth_server_id: str, client_id: str, secret_id: str) -> None:
        key = {"auth_server_id": auth_server_id, "client_id": client_id, "id": secret_id}
        with self._tx():
            self.get_secret(auth_server_id, client_id, secret_id)
            self._delete(SECRETS, key, "client secret")

    def check_client_secret(
        self, auth_server_id: str, client_id: str, secret: str
    ) -> Client | None:
        """The client if `secret` matches one of its enabled secrets, else None (also when unknown).

        Every enabled hash is checked (no early exit), and an unknown client costs one check too,
        so timing says nothing about which secret matched or whether the client exists.
        """
        client, rows = self._memoized(
            ("client-secrets", auth_server_id, client_id),
            lambda: self._client_and_hashes(auth_server_id, client_id),
        )
        matched = False
        for parsed in rows or [_DUMMY_HASH]:
            matched |= matches(secret, parsed)
        return client if matched and client is not None and rows else None

    def _client_and_hashes(
        self, auth_server_id: str, client_id: str
    ) -> tuple[Client | None, list[tuple[bytes, bytes]]]:
        """The client and its enabled secrets' hashes, parsed (a malformed one matches nothing:
        it is left out)."""
        key = {"auth_server_id": auth_server_id, "id": client_id}
        client: Client | None = self._find(CLIENTS, key)
        rows = self._db.execute(
            "SELECT secret_hash FROM client_secrets"
            " WHERE auth_server_id = ? AND client_id = ? AND enabled = 1",
            (auth_server_id, client_id),
        ).fetchall()
        return client, [parsed for (hashed,) in rows if (parsed := parse_hash(hashed))]

    # --- tokens ----------------------------------------------------------------------------------

    def record_token(self, token: IssuedToken) -> None:
        """Remember an issued token (NotFound if its client is gone, Conflict on a reused jti)."""
        # The token endpoint's only write: one INSERT is atomic by itself, so it skips the
        # BEGIN/COMMIT round trips of _tx (a failed statement leaves any outer transaction intact).
        try:
            self._insert(TOKENS, token)
        except sqlite3.Error as exc:  # a vanished client, a full disk, a lock held too long
            raise _store_error(exc) from exc

    def get_token(self, auth_server_id: str, client_id: str, token_id: str) -> IssuedToken:
        """The token, revoked or not (revoked tokens stay until purged so introspection says so)."""
        key = {"auth_server_id": auth_server_id, "client_id": client_id, "id": token_id}
        found: IssuedToken | None = self._find(TOKENS, key)
        if found is None:
            self._require_client(auth_server_id, client_id)
            raise NotFound(f"token [{token_id}] not found")
        return found

    def list_tokens(self, auth_server_id: str, client_id: str) -> list[IssuedToken]:
        """Every recorded token of the client, oldest first, revoked ones included."""
        self._require_client(auth_server_id, client_id)
        where = "auth_server_id = ? AND client_id = ?"
        return self._select(TOKENS, where, (auth_server_id, client_id))

    def revoke_token(self, auth_server_id: str, client_id: str, token_id: str) -> None:
        key = {"auth_server_id": auth_server_id, "client_id": client_id, "id": token_id}
        with self._tx():
            self.get_token(auth_server_id, client_id, token_id)
            self._db.execute(
                "UPDATE tokens SET revoked = 1"
                " WHERE auth_server_id = ? AND client_id = ? AND id = ?",
                tuple(key.values()),
            )

    def revoke_all_tokens(self, auth_server_id: str, client_id: str) -> None:
        with self._tx():
            self._require_client(auth_server_id, client_id)
            self._db.execute(
                "UPDATE tokens SET revoked = 1 WHERE auth_server_id = ? AND client_id = ?",
                (auth_server_id, client_id),
            )

    def find_token(self, jti: str) -> IssuedToken | None:
        """For introspection: the token with this jti in any auth server, or None."""
        found: IssuedToken | None = self._find(TOKENS, {"id": jti})
        return found

    def purge_expired_tokens(
        self, *, before: datetime | None = None, lock_wait: float | None = None
    ) -> int:
        """Forget tokens that expired before `before` (default: now); returns how many.
        `lock_wait`: seconds to wait at most for another process's write lock (default: the
        busy timeout), for a caller on the event loop that can as well try again later."""
        cutoff = encode("expires_at", before or self._now())
        with self._lock_wait(lock_wait), self._tx():
            return self._db.execute("DELETE FROM tokens WHERE expires_at < ?", (cutoff,)).rowcount

    # --- signing keys ----------------------------------------------------------------------------

    def active_key(self, auth_server_id: str) -> SigningKey:
        """The key new tokens are signed with."""
        rows = self._memoized(
            ("active-key", auth_server_id),
            lambda: self._select(
                KEYS, "auth_server_id = ? AND retired_at IS NULL", (auth_server_id,)
            ),
        )
        if not rows:
            self._require_server(auth_server_id)
            raise NotFound(f"auth server [{auth_server_id}] has no active signing key")
        return rows[0]

    def published_keys(self, auth_server_id: str) -> list[SigningKey]:
        """The JWKS: the active key first, then retired keys still in their grace, newest first."""
        self._require_server(auth_server_id)
        now = self._now()
        keys = self._select(KEYS, "auth_server_id = ?", (auth_server_id,))
        live = [k for k in keys if k.is_published(now)]
        live.sort(key=lambda k: (k.retired_at is not None, -k.created_at.timestamp()))
        return live

    def rotate_key(
        self, auth_server_id: str, *, grace: timedelta = DEFAULT_KEY_GRACE
    ) -> SigningKey:
        """A new active key; the previous one is retired now and stays published for `grace`,
        or until the last unrevoked token of the auth server expires if that is later."""
        server = self.get_auth_server(auth_server_id)
        key = self._new_key(auth_server_id, server.signing_algorithm, self._now())
        with self._tx():
            self._require_server(auth_server_id)
            self._rotate(key, grace)
        return key

    def _rotate(self, key: SigningKey, grace: timedelta) -> None:
        now = self._now()
        # The retired key stays published for `grace`, and longer while a token it signed
        # lives (access_token_duration goes up to 30 days): every token already issued keeps
        # validating until it expires, not only those of the last day.
        (last_expiry,) = self._db.execute(
            "SELECT MAX(expires_at) FROM tokens WHERE auth_server_id = ? AND revoked = 0",
            (key.auth_server_id,),
        ).fetchone()
        retired = encode("retired_at", now)
        until = max(encode("published_until", now + grace), last_expiry or "")
        self._config_version += 1
        self._db.execute(
            "UPDATE signing_keys SET retired_at = ?, published_until = ?"
            " WHERE auth_server_id = ? AND retired_at IS NULL",
            (retired, until, key.auth_server_id),
        )
        # A retired private key past its grace serves no purpose: do not keep it around.
        self._db.execute(
            "DELETE FROM signing_keys WHERE auth_server_id = ? AND published_until <= ?",
            (key.auth_server_id, retired),
        )
        self._insert(KEYS, key)

    # --- helpers ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock_wait(self, seconds: float | None) -> Iterator[None]:
        """SQLite's busy timeout set to `seconds` for one write, then back to BUSY_TIMEOUT_MS:
        the connection's other writes keep waiting as long as they did."""
        if seconds is None:
            yield
            return
        self._busy_timeout(round(seconds * 1000))
        try:
            yield
        finally:
            self._busy_timeout(BUSY_TIMEOUT_MS)

    def _busy_timeout(self, milliseconds: int) -> None:
        try:
            self._db.execute(f"PRAGMA busy_timeout = {milliseconds:d}")
        except sqlite3.Error as exc:  # a closed store: a StoreError, as from _tx
            raise _store_error(exc) from exc

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One atomic write; nested calls become SAVEPOINTs. IntegrityError → Conflict/NotFound;
        SQLite's other failures (a lock held past busy_timeout, a full disk) → StoreError."""
        if self._depth == 0:
            begin, commit = "BEGIN IMMEDIATE", "COMMIT"
            rollback: tuple[str, ...] = ("ROLLBACK",)
        else:
            name = f"sp{self._depth}"
            begin, commit = f"SAVEPOINT {name}", f"RELEASE {name}"
            rollback = (f"ROLLBACK TO {name}", f"RELEASE {name}")
        try:
            self._db.execute(begin)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc
        self._depth += 1
        try:
            yield
        except BaseException as exc:
            self._depth -= 1
            # The memo may hold what this transaction wrote and read back: it is undone now.
            self._config_version += 1
            # (SQLite rolls a transaction back itself on some errors: then there is none left.)
            if self._db.in_transaction:
                for statement in rollback:
                    self._db.execute(statement)
            if isinstance(exc, sqlite3.Error):
                raise _store_error(exc) from exc
            raise
        self._depth -= 1
        try:
            self._db.execute(commit)
        except sqlite3.Error as exc:
            # A COMMIT that fails on a full disk or an I/O error is rolled back by SQLite (else
            # here, so the next write is not refused as nested): what the memo read back is gone.
            self._config_version += 1
            if self._depth == 0 and self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise _store_error(exc) from exc

    def _insert(self, table: Table[Any], entity: Any) -> None:
        values = [encode(column, getattr(entity, column)) for column in table.columns]
        if table is not TOKENS:
            self._config_version += 1
        self._db.execute(table.insert_sql, values)

    def _memoized(self, key: tuple[Any, ...], load: Callable[[], T]) -> T:
        """`load()`, remembered under `key` until the configuration changes (here or in another
        process). Misses are remembered too (an unknown client id costs what a known one does),
        so the memo is bounded: clients can make up ids without end."""
        now = time.monotonic()
        if now >= self._data_version_due:
            # Other connections' commits are looked for at most every OTHER_WRITERS_POLL seconds
            # (a token request reads the memo several times; one PRAGMA per request is plenty).
            (self._data_version,) = self._db.execute("PRAGMA data_version").fetchone()
            self._data_version_due = now + OTHER_WRITERS_POLL
        stamp = (self._config_version, self._data_version)
        if stamp != self._memo_stamp:
            self._memo.clear()
            self._memo_stamp = stamp
        try:
            value: T = self._memo[key]
        except KeyError:
            value = load()
            if len(self._memo) >= MEMO_MAX_ENTRIES:
                self._memo.clear()
            self._memo[key] = value
        return value

    def _select(self, table: Table[T], where: str, params: Sequence[Any]) -> list[T]:
        rows = self._db.execute(table.select_sql(where), params).fetchall()
        return [decode(table, row) for row in rows]

    def _find(self, table: Table[T], key: Mapping[str, str]) -> T | None:
        where = " AND ".join(f'"{column}" = ?' for column in key)
        rows = self._select(table, where, tuple(key.values()))
        return rows[0] if rows else None

    def _one(self, table: Table[T], where: str, params: Sequence[Any], noun: str) -> T:
        rows = self._select(table, where, params)
        if not rows:
            raise NotFound(f"{noun} [{params[0]}] not found")
        return rows[0]

    def _child(self, table: Table[T], auth_server_id: str, entity_id: str, noun: str) -> T:
        found = self._find(table, {"auth_server_id": auth_server_id, "id": entity_id})
        if found is None:
            self._require_server(auth_server_id)
            raise NotFound(f"{noun} [{entity_id}] not found")
        return found

    def _children(self, table: Table[T], auth_server_id: str) -> list[T]:
        found = self._select(table, "auth_server_id = ?", (auth_server_id,))
        if not found:
            self._require_server(auth_server_id)
        return found

    def _update(
        self, table: Table[T], key: Mapping[str, str], changes: Mapping[str, Any], noun: str
    ) -> T:
        unknown = set(changes) - table.mutable
        if table is not TOKENS:
            self._config_version += 1
        if unknown:
            raise TypeError(f"{table.name} has no updatable fields {sorted(unknown)}")
        values = {column: normalize(column, value) for column, value in changes.items()}
        values["updated_at"] = self._now()
        with self._tx():
            if self._find(table, key) is None:
                raise NotFound(f"{noun} [{key['id']}] not found")
            sets = ", ".join(f'"{column}" = ?' for column in values)  # names checked above
            where = " AND ".join(f'"{column}" = ?' for column in key)
            params = [encode(c, v) for c, v in values.items()] + list(key.values())
            self._db.execute(f"UPDATE {table.name} SET {sets} WHERE {where}", params)  # noqa: S608
            updated = self._find(table, key)
            assert updated is not None
            return updated

    def _delete(self, table: Table[Any], key: Mapping[str, str], noun: str) -> None:
        if table is not TOKENS:
            self._config_version += 1
        where = " AND ".join(f'"{column}" = ?' for column in key)
        with self._tx():
            sql = f"DELETE FROM {table.name} WHERE {where}"  # noqa: S608 - constant names
            if self._db.execute(sql, tuple(key.values())).rowcount == 0:
                if "auth_server_id" in key:
                    self._require_server(key["auth_server_id"])
                raise NotFound(f"{noun} [{key['id']}] not found")

    def _require_server(self, auth_server_id: str) -> None:
        if self._db.execute(
            "SELECT 1 FROM auth_servers WHERE id = ?", (auth_server_id,)
        ).fetchone():
            return
        raise NotFound(f"auth server [{auth_server_id}] not found")

    def _require_client(self, auth_server_id: str, client_id: str) -> None:
        self.get_client(auth_server_id, client_id)

    def _require_scopes(self, auth_server_id: str, scope_ids: Sequence[str]) -> None:
        known = {
            row[0]
            for row in self._db.execute(
                "SELECT id FROM scopes WHERE auth_server_id = ?", (auth_server_id,)
            )
        }
        missing = [scope_id for scope_id in scope_ids if scope_id not in known]
        if missing:
            raise MissingReference(f"scopes [{', '.join(missing)}] not found in this auth server")

    def _insert_client(
        self, auth_server_id: str, client_id: str, fields: Mapping[str, Any]
    ) -> Client:
        now = self._now()
        values = {column: normalize(column, value) for column, value in fields.items()}
        values["labels"] = values["labels"] or {}
        client = Client(
            id=client_id, auth_server_id=auth_server_id, created_at=now, updated_at=now, **values
        )
        self._require_server(auth_server_id)
        self._require_scopes(auth_server_id, client.allow_scopes)
        self._insert(CLIENTS, client)
        return client

    def _check_room(self, auth_server_id: str, client_id: str) -> None:
        (enabled,) = self._db.execute(
            "SELECT count(*) FROM client_secrets"
            " WHERE auth_server_id = ? AND client_id = ? AND enabled = 1",
            (auth_server_id, client_id),
        ).fetchone()
        if enabled >= MAX_ACTIVE_SECRETS:
            raise TooManySecrets(f"a client has at most {MAX_ACTIVE_SECRETS} enabled secrets")

    def _insert_secret(self, client: Client, clear: str, *, enabled: bool) -> ClientSecret:
        if enabled:
            self._check_room(client.auth_server_id, client.id)
        now = self._now()
        secret = ClientSecret(
            id=str(uuid.uuid4()),
            auth_server_id=client.auth_server_id,
            client_id=client.id,
            secret_hash=hash_secret(clear),
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        self._insert(SECRETS, secret)
        return secret

    def _set_only_secret(self, client: Client, clear: str) -> str | None:
        """Make `clear` the client's only secret; returns it if a new secret row was stored."""
        existing: list[ClientSecret] = self._select(
            SECRETS, "auth_server_id = ? AND client_id = ?", (client.auth_server_id, client.id)
        )
        keep = next((s for s in existing if check_secret(clear, s.secret_hash)), None)
        for old in existing:
            if old is not keep:
                self._config_version += 1
                self._db.execute("DELETE FROM client_secrets WHERE id = ?", (old.id,))
        if keep is None:
            self._insert_secret(client, clear, enabled=True)
            return clear
        if not keep.enabled:
            key = {"auth_server_id": client.auth_server_id, "client_id": client.id, "id": keep.id}
            self._update(SECRETS, key, {"enabled": True}, "client secret")
        return None


def _store_error(exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError):
        return _integrity_error(exc)
    if type(exc) is sqlite3.DatabaseError:  # SQLITE_CORRUPT, SQLITE_NOTADB: the file's
        return StoreError(f"the identity database is damaged: {exc}")
    return StoreError(str(exc))  # e.g. "database is locked", "database or disk is full"


def _integrity_error(exc: sqlite3.IntegrityError) -> StoreError:
    message = str(exc)
    prefix = "UNIQUE constraint failed: "
    if message.startswith(prefix):
        # "UNIQUE constraint failed: scopes.auth_server_id, scopes.name"
        columns = [c.partition(".") for c in message.removeprefix(prefix).split(", ")]
        noun = next((t.noun for t in TABLES if t.name == columns[0][0]), "entity")
        names = [name for _, dot, name in columns if dot and name != "auth_server_id"] or ["id"]
        article = "an" if noun[0] in "aeiou" else "a"
        return Conflict(f"{article} {noun} with this {' and '.join(names)} already exists")
    if "FOREIGN KEY" in message:
        return NotFound("the parent entity does not exist")
    return StoreError(message)


_SQLITE_HEADER: Final = b"SQLite format 3\x00"  # the first 16 bytes of every database file


def _make_private(path: Path) -> None:
    """Create the database file owner-only (0600), or tighten an existing one.

    SQLite creates the -wal and -shm files with the database file's permissions, so they follow.
    (No umask change: it is process-wide and would race other threads creating files.)
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            header = os.read(fd, len(_SQLITE_HEADER))
        finally:
            os.close(fd)
        if header and header != _SQLITE_HEADER:
            # A file of the user's own named by mistake (--data ~/.ssh/config): left as it is,
            # its mode too, rather than tightened and then refused by SQLite.
            raise StoreError(f"cannot open identity database {path}: file is not a database")
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if file.exists() and file.stat().st_mode & 0o077:
                file.chmod(0o600)
    except OSError as exc:
        raise StoreError(f"cannot open identity database {path}: {exc}") from exc
