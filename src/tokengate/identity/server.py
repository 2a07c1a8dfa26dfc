"""Running the identity server (`tokengate identity`) and its offline commands.

exit_code = serve_identity(IdentitySettings(listen=("127.0.0.1", 9000), data="id.db"))
exit_code = rotate_keys("id.db", auth_server_id)
"""

from __future__ import annotations

import asyncio
import errno
import functools
import gc
import logging
import os
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from tokengate import eventloop
from tokengate.addresses import show
from tokengate.identity.app import create_identity_app, rotate_signing_key
from tokengate.identity.models import AuthServer
from tokengate.identity.runner import IdentityRunner
from tokengate.identity.seed import SeedError, apply_seed, load_seed
from tokengate.identity.signing import SpareKeys, new_key
from tokengate.identity.store import KeyFactory, NotFound, Store, StoreError
from tokengate.listening import bind_failure, chosen_by, listening_socket
from tokengate.shutdown import STOP_SIGNALS, Stopper, cut_connections

log = logging.getLogger("tokengate.identity")


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    listen: tuple[str, int] = ("127.0.0.1", 9000)
    public_url: str | None = None  # default: http://<listen address>
    data: str | None = "tokengate-identity.db"  # None: in memory
    admin_token: str | None = None  # None: generated and printed
    seed: str | None = None

    @property
    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = self.listen
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


def open_store(settings: IdentitySettings, keys: KeyFactory = new_key) -> Store:
    if settings.data is None:
        return Store.open(None, key_factory=keys)
    # `~` as a shell would have expanded it (TOKENGATE_DATA=~/..., --data=~/...): the directory
    # made and the file opened are the same one.
    path = Path(settings.data).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where the directory would be: not "File exists"
        raise NotADirectoryError(
            errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)
        ) from None
    return Store.open(path, key_factory=keys)


def serve_identity(settings: IdentitySettings) -> int:
    seed = None
    if settings.seed is not None:
        try:
            seed = load_seed(settings.seed)
        except SeedError as exc:
            print("\n".join(exc.errors), file=sys.stderr)
            return 2
    spare_keys = SpareKeys()
    try:
        store = open_store(settings, spare_keys)
    except (StoreError, OSError) as exc:
        print(f"tokengate identity: {_open_failure(settings.data, exc)}", file=sys.stderr)
        return 1
    servers: list[AuthServer] = []
    if seed is not None:
        try:
            servers = apply_seed(store, seed)
        except SeedError as exc:  # the seed clashes with what the database holds
            store.close()
            print("\n".join(exc.errors), file=sys.stderr)
            return 2
        except StoreError as exc:
            store.close()
            print(
                f"tokengate identity: cannot apply the seed to {settings.data}: {exc}",
                file=sys.stderr,
            )
            return 1
    sock = None
    if settings.listen[1] == 0:
        # Port 0 picks a free port: take it now, so that the issuers' URLs (and the log) name
        # the port that serves them, not 0.
        try:
            sock = listening_socket(settings.listen)
        except OSError as exc:
            store.close()
            print(_listen_error(settings.listen, exc), file=sys.stderr)
            return 1
        settings = replace(settings, listen=(settings.listen[0], int(sock.getsockname()[1])))
    for server in servers:
        print(
            f"seeded auth server {server.name!r}: issuer {settings.url}/{server.issuer_id}/auth",
            flush=True,
        )
    admin_token = settings.admin_token
    # A generated token is shown once the port is ours: not before a "cannot listen".
    announce = None
    if not admin_token:
        admin_token = secrets.token_urlsafe(24)
        announce = (
            f"admin token (set --admin-token or TOKENGATE_ADMIN_TOKEN to choose one): {admin_token}"
        )
    app = create_identity_app(
        store, admin_token=admin_token, public_url=settings.url, close_store=True
    )
    try:
        eventloop.run(_serve(app, settings, spare_keys, announce, sock))
    except OSError as exc:
        store.close()
        print(_listen_error(settings.listen, exc), file=sys.stderr)
        return 1
    return 0


async def _serve(
    app: web.Application,
    settings: IdentitySettings,
    spare_keys: SpareKeys,
    announce: str | None = None,
    sock: socket.socket | None = None,
) -> None:
    runner = IdentityRunner(app, handle_signals=False, access_log=None)
    # The first Ctrl-C lets requests in progress finish; a second one cuts them off. SIGHUP
    # (a closed terminal, or a reload meant for the gateway) stops it the same way, with the
    # store closed cleanly, rather than by the default action, which kills.
    stopper = Stopper(cut=functools.partial(cut_connections, runner), log=log, on_first=_stopping)
    stopper.install(asyncio.get_running_loop(), (*STOP_SIGNALS, signal.SIGHUP))
    await runner.setup()
    try:
        host, port = settings.listen
        site = web.TCPSite(runner, host, port) if sock is None else web.SockSite(runner, sock)
        await site.start()
        if announce is not None:
            print(announce, flush=True)
        spare_keys.make_spare()
        # What is loaded now lives as long as the process: keep it out of every full collection.
        gc.freeze()
        log.info(
            "tokengate identity listening on %s (public URL %s)",
            show(settings.listen),
            settings.url,
        )
        await stopper.requested.wait()
    finally:
        await runner.cleanup()


def _stopping(sig: signal.Signals) -> None:
    if sig == signal.SIGHUP:
        log.info("SIGHUP: stopping (tokengate identity has nothing to reload)")
    else:
        log.info("%s: stopping", sig.name)


def _open_failure(data: str | None, exc: Exception) -> str:
    """A StoreError names the file and says it cannot open it already."""
    return str(exc) if isinstance(exc, StoreError) else f"cannot open {data}: {exc}"


def _listen_error(address: tuple[str, int], exc: OSError) -> str:
    return (
        f"tokengate identity: cannot listen on {show(address)}: {bind_failure(exc)}; "
        f"choose another with {chosen_by('--listen')}"
    )


def rotate_keys(data: str, auth_server_id: str) -> int:
    # Opening would create an empty database, and then find no auth server in it.
    path = Path(data).expanduser()  # as open_store reads it: the identity server's own file
    if not path.is_file():
        reason = "is not a file" if path.exists() else "does not exist"
        print(
            f"tokengate identity: --data {data}: the database {reason} (rotate-keys works on "
            "the database of an identity server that has run)",
            file=sys.stderr,
        )
        return 2
    try:
        store = Store.open(path)
    except (StoreError, OSError) as exc:
        print(f"tokengate identity: {_open_failure(data, exc)}", file=sys.stderr)
        return 1
    try:
        previous, key, grace = rotate_signing_key(store, auth_server_id)
    except NotFound:
        print(f"tokengate identity: no auth server {auth_server_id} in {data}", file=sys.stderr)
        return 2
    except StoreError as exc:  # e.g. another process holds the write lock past busy_timeout
        print(f"tokengate identity: cannot rotate the keys in {data}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"new signing key {key.kid}; {previous.kid} stays published for {int(grace)} s")
    return 0
