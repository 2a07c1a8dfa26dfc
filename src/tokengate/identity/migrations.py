"""The identity database schema: numbered migrations applied in order, and how rows map to models.

    db = sqlite3.connect(path, isolation_level=None)
    migrate(db)          # brings PRAGMA user_version up to LATEST, one transaction per step
    # SchemaTooNew: the file was written by a newer tokengate; nothing was touched
    scope = decode(SCOPES, db.execute(SCOPES.select_sql("id = ?"), (scope_id,)).fetchone())

`PRAGMA user_version` records how many entries of MIGRATIONS a database has had applied. Never
edit a released migration: append a new one (a tuple of SQL statements, or a function taking the
connection for data migrations). Lists and label maps are JSON text, booleans 0/1, times ISO-8601
UTC text with microseconds (so text order is time order). Foreign keys cascade every delete:
auth server → scopes, claims, clients → client secrets, tokens; auth server → signing keys.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from tokengate.identity.models import (
    AuthServer,
    Claim,
    Client,
    ClientSecret,
    IssuedToken,
    Scope,
    SigningKey,
)

Migration = Sequence[str] | Callable[[sqlite3.Connection], None]

_V1_INITIAL: tuple[str, ...] = (
    """
    CREATE TABLE auth_servers (
        id TEXT PRIMARY KEY,
        issuer_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL,
        audience TEXT NOT NULL,
        signing_algorithm TEXT NOT NULL,
        labels TEXT NOT NULL,
        trusted_origins TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE scopes (
        id TEXT PRIMARY KEY,
        auth_server_id TEXT NOT NULL REFERENCES auth_servers (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        "default" INTEGER NOT NULL,
        include_in_metadata INTEGER NOT NULL,
        enabled INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (auth_server_id, name)
    ) STRICT
    """,
    """
    CREATE TABLE claims (
        id TEXT PRIMARY KEY,
        auth_server_id TEXT NOT NULL REFERENCES auth_servers (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        include_in_token INTEGER NOT NULL,
        include_in_all_scopes INTEGER NOT NULL,
        include_in_scopes TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT
    """,
    "CREATE INDEX claims_by_server ON claims (auth_server_id)",
    # A client_id is unique within its auth server (PUT may import the same id into two servers).
    """
    CREATE TABLE clients (
        auth_server_id TEXT NOT NULL REFERENCES auth_servers (id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        grant_types TEXT NOT NULL,
        redirect_uris TEXT NOT NULL,
        login_uri TEXT,
        access_token_duration INTEGER NOT NULL,
        id_token_duration INTEGER NOT NULL,
        allow_all_scopes INTEGER NOT NULL,
        allow_scopes TEXT NOT NULL,
        labels TEXT NOT NULL,
        response_types TEXT NOT NULL,
        token_endpoint_auth_method TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (auth_server_id, id),
        UNIQUE (auth_server_id, name)
    ) STRICT
    """,
    """
    CREATE TABLE client_secrets (
        id TEXT PRIMARY KEY,
        auth_server_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        secret_hash TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        FOREIGN KEY (auth_server_id, client_id)
            REFERENCES clients (auth_server_id, id) ON DELETE CASCADE
    ) STRICT
    """,
    "CREATE INDEX client_secrets_by_client ON client_secrets (auth_server_id, client_id)",
    """
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        auth_server_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        granted_scope_names TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked INTEGER NOT NULL,
        FOREIGN KEY (auth_server_id, client_id)
            REFERENCES clients (auth_server_id, id) ON DELETE CASCADE
    ) STRICT
    """,
    "CREATE INDEX tokens_by_client ON tokens (auth_server_id, client_id)",
    "CREATE INDEX tokens_by_expiry ON tokens (expires_at)",
    """
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        auth_server_id TEXT NOT NULL REFERENCES auth_servers (id) ON DELETE CASCADE,
        algorithm TEXT NOT NULL,
        private_pem BLOB NOT NULL,
        created_at TEXT NOT NULL,
        retired_at TEXT,
        published_until TEXT
    ) STRICT
    """,
    "CREATE INDEX signing_keys_by_server ON signing_keys (auth_server_id)",
    # Exactly one active key per auth server, enforced by SQLite rather than by care.
    """
    CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (auth_server_id)
        WHERE retired_at IS NULL
    """,
)

MIGRATIONS: tuple[Migration, ...] = (_V1_INITIAL,)
LATEST = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """The database was written by a newer tokengate (its user_version is beyond LATEST)."""

    def __init__(self, found: int, latest: int) -> None:
        super().__init__(
            f"schema version {found} is newer than the newest this code knows ({latest})"
        )
        self.found = found
        self.latest = latest


def schema_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> None:
    """Apply the missing migrations, each in its own transaction (`db` must be in autocommit mode).

    The version is re-read under the write lock, so two processes opening one file at once cannot
    both apply the same step.
    """
    while True:
        if schema_version(db) > len(migrations):
            raise SchemaTooNew(schema_version(db), len(migrations))
        if schema_version(db) == len(migrations):
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(db)
            if version < len(migrations):
                step = migrations[version]
                if callable(step):
                    step(db)
                else:
                    for statement in step:
                        db.execute(statement)
                # PRAGMA takes no parameters; `version + 1` is an int we computed.
                db.execute(f"PRAGMA user_version = {version + 1:d}")
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls a transaction back itself on some errors (SQLITE_FULL, SQLITE_IOERR,
            # ...): a ROLLBACK then fails, and its error would hide the one that says why.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


# --- rows <-> models -----------------------------------------------------------------------------
#
# Columns carry the model's field names. A field's storage is decided by its name alone:

_TIMES = frozenset({"created_at", "updated_at", "expires_at", "retired_at", "published_until"})
_BOOLS = frozenset(
    {
        "default",
        "include_in_metadata",
        "enabled",
        "include_in_token",
        "include_in_all_scopes",
        "allow_all_scopes",
        "revoked",
    }
)
_LISTS = frozenset(
    {
        "trusted_origins",
        "include_in_scopes",
        "grant_types",
        "redirect_uris",
        "allow_scopes",
        "response_types",
        "granted_scope_names",
    }
)
_MAPS = frozenset({"labels"})

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Table(Generic[T]):
    """One table: its model, its columns (= the model's fields) and what update_* may change."""

    name: str
    noun: str  # for messages: "auth server", "scope", ...
    model: Callable[..., T]
    mutable: frozenset[str]
    columns: tuple[str, ...] = ()
    decoders: tuple[Callable[[Any], Any] | None, ...] = ()
    insert_sql: str = ""

    def __post_init__(self) -> None:
        columns = tuple(f.name for f in dataclasses.fields(self.model))  # type: ignore[arg-type]
        names = ", ".join(f'"{column}"' for column in columns)
        marks = ", ".join("?" for _ in columns)
        insert = f"INSERT INTO {self.name} ({names}) VALUES ({marks})"  # noqa: S608
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "decoders", tuple(_decoder(column) for column in columns))
        object.__setattr__(self, "insert_sql", insert)

    def select_sql(self, where: str) -> str:
        """SELECT every column, oldest row first. `where` is code, never input (values are ?)."""
        names = ", ".join(f'"{column}"' for column in self.columns)
        return f"SELECT {names} FROM {self.name} WHERE {where} ORDER BY rowid"  # noqa: S608


def normalize(name: str, value: Any) -> Any:
    """The model's form of a field value: tuples for lists, a dict for labels (None: empty)."""
    if name in _LISTS:
        if isinstance(value, str | bytes | Mapping):
            raise TypeError(f"{name} must be a sequence of strings, not {type(value).__name__}")
        return tuple(value)
    if name in _MAPS:
        return dict(value or {})
    if name in _BOOLS and not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    if name in _TIMES and value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value


def encode(name: str, value: Any) -> Any:
    """A field value as stored: JSON text, 0/1, ISO-8601 UTC text with microseconds."""
    value = normalize(name, value)
    if value is None:
        return None
    if name in _TIMES:
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if name in _BOOLS:
        return int(value)
    if name in _LISTS:
        return json.dumps(list(value))
    if name in _MAPS:
        return json.dumps(value)
    return value


def _json_tuple(text: str) -> tuple[Any, ...]:
    return tuple(json.loads(text))


def _decoder(name: str) -> Callable[[Any], Any] | None:
    """How a stored value becomes the model's (None: as it is). Decided once per column."""
    if name in _TIMES:
        return datetime.fromisoformat
    if name in _BOOLS:
        return bool
    if name in _LISTS:
        return _json_tuple
    if name in _MAPS:
        return json.loads
    return None


def decode(table: Table[T], row: Sequence[Any]) -> T:
    """A row selected with `table.select_sql` as the table's model (positional: fields order)."""
    return table.model(
        *[v if f is None or v is None else f(v) for f, v in zip(table.decoders, row, strict=True)]
    )


# --- the tables ----------------------------------------------------------------------------------

_CLIENT_FIELDS = frozenset(
    {
        "name",
        "grant_types",
        "redirect_uris",
        "login_uri",
        "access_token_duration",
        "id_token_duration",
        "allow_all_scopes",
        "allow_scopes",
        "labels",
        "response_types",
        "token_endpoint_auth_method",
    }
)
SERVERS = Table(
    "auth_servers",
    "auth server",
    AuthServer,
    frozenset(
        {"name", "description", "audience", "signing_algorithm", "labels", "trusted_origins"}
    ),
)
SCOPES = Table(
    "scopes",
    "scope",
    Scope,
    frozenset({"name", "description", "default", "include_in_metadata", "enabled"}),
)
CLAIMS = Table(
    "claims",
    "claim",
    Claim,
    frozenset(
        {
            "name",
            "value",
            "include_in_token",
            "include_in_all_scopes",
            "include_in_scopes",
            "enabled",
        }
    ),
)
CLIENTS = Table("clients", "client", Client, _CLIENT_FIELDS)
SECRETS = Table("client_secrets", "client secret", ClientSecret, frozenset({"enabled"}))
TOKENS = Table("tokens", "token", IssuedToken, frozenset({"revoked"}))
KEYS = Table(
    "signing_keys", "signing key", SigningKey, frozenset({"retired_at", "published_until"})
)
TABLES: tuple[Table[Any], ...] = (SERVERS, SCOPES, CLAIMS, CLIENTS, SECRETS, TOKENS, KEYS)
