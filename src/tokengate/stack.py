"""`tokengate run`: the identity server, the echo upstream and the gateway in one event loop.

    exit_code = run_stack(StackSettings(), load_config("config/kong.yaml"), load_seed(seed))

    async with Stack(settings, config, seed) as stack:   # tests: port 0 for every listener
        issuers = await stack.wait_ready(session)
        print(stack.gateway_url, stack.identity.url, stack.admin_token)

The identity server and the echo upstream start first, so that the gateway's first key fetch
finds the issuer. kong.yaml names them by their default addresses; wherever they really listen,
the gateway follows (retarget.py). Every listener is claimed before anything starts, so a port
in use is one clear error naming its flag, with nothing to undo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from tokengate import eventloop
from tokengate.addresses import show
from tokengate.echo import create_echo_app
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.config import GatewayConfig, load_config
from tokengate.gateway.reload import Reloader
from tokengate.gateway.settings import GatewaySettings
from tokengate.identity.app import create_identity_app
from tokengate.identity.models import AuthServer
from tokengate.identity.runner import IdentityRunner
from tokengate.identity.seed import Seed, SeedError, apply_seed
from tokengate.identity.server import IdentitySettings, open_store
from tokengate.identity.signing import SpareKeys
from tokengate.identity.store import StoreError
from tokengate.listening import bind_failure, chosen_by, listening_socket
from tokengate.panel import show_panel
from tokengate.retarget import retarget
from tokengate.shutdown import Stopper, cut_connections

log = logging.getLogger("tokengate.run")

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class StackSettings:
    listen: Address = ("127.0.0.1", 8000)  # gateway proxy
    status_listen: Address = ("127.0.0.1", 8100)  # gateway status API
    identity_listen: Address = ("127.0.0.1", 9000)
    echo_listen: Address = ("127.0.0.1", 9100)
    data: str | None = None  # identity SQLite file; None: in memory
    admin_token: str | None = None  # None: generated
    gateway: GatewaySettings = field(default_factory=GatewaySettings)  # its listen fields unused
    config_path: str | None = None  # kong.yaml, read again on SIGHUP; None: no reloads


class StackError(Exception):
    """A failure to report in one line, without a traceback."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def url_of(address: Address) -> str:
    """The URL to reach a listener: a wildcard address is reached on loopback."""
    host, port = address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


_DEFAULTS = StackSettings()
# The origins config/kong.yaml uses for the stack's own components.
DEFAULT_ORIGINS = {
    "identity": url_of(_DEFAULTS.identity_listen),
    "echo": url_of(_DEFAULTS.echo_listen),
    "status": url_of(_DEFAULTS.status_listen),
}


def claim(address: Address, flag: str) -> socket.socket:
    """A listening socket on `address`; a port in use is a StackError naming `flag`."""
    try:
        return listening_socket(address)
    except OSError as exc:
        raise StackError(
            f"tokengate run: cannot listen on {show(address)}: {bind_failure(exc)}; "
            f"choose another address with {chosen_by(flag)}"
        ) from None


def _bound(sock: socket.socket, host: str) -> Address:
    return host, int(sock.getsockname()[1])


class IdentityService:
    """The identity server as the stack runs it. `stop()` then `start()` is a restart: the same
    port, the same data file (or, in memory, a fresh store seeded again)."""

    def __init__(self, address: Address, *, data: str | None, admin_token: str, seed: Seed):
        self.address = address
        self.data = data
        self.admin_token = admin_token
        self.seed = seed
        self.servers: list[AuthServer] = []  # as seeded, in the seed's order
        self._runner: web.AppRunner | None = None
        self._spare_keys = SpareKeys()

    @property
    def url(self) -> str:
        return url_of(self.address)

    async def start(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = claim(self.address, "--identity-listen")
        self.address = _bound(sock, self.address[0])
        try:
            store = open_store(IdentitySettings(data=self.data), self._spare_keys)
        except (StoreError, OSError) as exc:
            sock.close()
            message = str(exc) if isinstance(exc, StoreError) else f"cannot open {self.data}: {exc}"
            raise StackError(f"tokengate run: {message}") from None
        try:
            self.servers = apply_seed(store, self.seed)
        except SeedError as exc:  # the seed clashes with the data file: the user's to fix
            sock.close()
            store.close()
            raise StackError("\n".join(exc.errors), exit_code=2) from None
        except StoreError as exc:
            sock.close()
            store.close()
            where = self.data or "the in-memory identity store"
            raise StackError(f"tokengate run: cannot apply the seed to {where}: {exc}") from None
        app = create_identity_app(
            store, admin_token=self.admin_token, public_url=self.url, close_store=True
        )
        self._runner = await _serve(app, sock, runner_class=IdentityRunner)
        self._spare_keys.make_spare()

    async def stop(self) -> None:
        if self._runner is not None:
            try:
                await self._runner.cleanup()  # kept meanwhile: cut_short may need it
            finally:
                self._runner = None

    def cut_short(self) -> None:
        cut_connections(self._runner)


async def _serve(
    app: web.Application,
    sock: socket.socket,
    *,
    runner_class: type[web.AppRunner] = web.AppRunner,
) -> web.AppRunner:
    runner = runner_class(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class Stack:
    """The three servers; ports and URLs are the real ones once started."""

    def __init__(self, settings: StackSettings, config: GatewayConfig, seed: Seed) -> None:
        self.settings = settings
        self.config = config  # as loaded
        self.gateway_config = config  # what the gateway serves: retargeted once started
        self.admin_token = settings.admin_token or secrets.token_urlsafe(24)
        self.identity = IdentityService(
            settings.identity_listen,
            data=settings.data,
            admin_token=self.admin_token,
            seed=seed,
        )
        self.echo_address = settings.echo_listen
        self.gateway: GatewayServer | None = None
        self._echo: web.AppRunner | None = None
        self._cut = False  # a second Ctrl-C: stop without waiting for requests in progress
        self._moves: dict[str, str] = {}  # the stack's default origins to where they listen

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        settings = self.settings
        pending: list[socket.socket] = []  # claimed and not yet handed to a server
        try:
            busy = []  # every port in use at once: moving one should not just reveal the next
            for address, flag in (
                (settings.identity_listen, "--identity-listen"),
                (settings.echo_listen, "--echo-listen"),
                (settings.listen, "--listen"),
                (settings.status_listen, "--status-listen"),
            ):
                try:
                    pending.append(claim(address, flag))
                except StackError as exc:
                    busy.append(exc.message)
            if busy:
                raise StackError("\n".join(busy))
            identity_sock, echo_sock, proxy_sock, status_sock = pending
            # The gateway binds its own listeners: its ports are only reserved here (port 0
            # picks one now, so the config can name it), and released just before it binds.
            listen = _bound(proxy_sock, settings.listen[0])
            status_listen = _bound(status_sock, settings.status_listen[0])
            pending.remove(identity_sock)
            await self.identity.start(identity_sock)
            self.echo_address = _bound(echo_sock, settings.echo_listen[0])
            pending.remove(echo_sock)
            self._echo = await _serve(create_echo_app(), echo_sock)
        finally:
            for sock in pending:
                sock.close()
        self._moves = {
            DEFAULT_ORIGINS["identity"]: self.identity.url,
            DEFAULT_ORIGINS["echo"]: self.echo_url,
            DEFAULT_ORIGINS["status"]: url_of(status_listen),
        }
        self.gateway_config = config = retarget(self.config, self._moves)
        gateway_settings = replace(settings.gateway, listen=listen, status_listen=status_listen)
        self.gateway = GatewayServer(config, gateway_settings)
        try:
            await self.gateway.start()
        except OSError as exc:  # taken in the instant between release and bind
            raise StackError(
                f"tokengate run: cannot listen on {listen[0]}:{listen[1]} or "
                f"{status_listen[0]}:{status_listen[1]}: {exc.strerror or exc}; "
                "choose others with --listen / --status-listen"
            ) from None

    def load_config(self) -> GatewayConfig:
        """kong.yaml read again (SIGHUP), retargeted as the one read at start was."""
        assert self.settings.config_path is not None, "no kong.yaml to read"
        ignored = self.settings.gateway.ignored_plugins
        config = load_config(self.settings.config_path, ignored_plugins=ignored)
        return retarget(config, self._moves)

    async def stop(self) -> None:
        """Gateway first (no request reaches a stopped upstream), then the others, whatever
        fails on the way."""
        # Each is kept until it has stopped: cut_short may need it meanwhile.
        try:
            if self.gateway is not None:
                try:
                    await self.gateway.stop()
                finally:
                    self.gateway = None
        finally:
            try:
                if self._echo is not None:
                    if self._cut:
                        cut_connections(self._echo)
                    try:
                        await self._echo.cleanup()
                    finally:
                        self._echo = None
            finally:
                if self._cut:
                    self.identity.cut_short()
                await self.identity.stop()

    def cut_short(self) -> None:
        """End a `stop()` in progress now: requests still running anywhere are cut off."""
        self._cut = True
        if self.gateway is not None:
            self.gateway.cut_short()
        cut_connections(self._echo)
        self.identity.cut_short()

    @property
    def gateway_url(self) -> str:
        assert self.gateway is not None, "not started"
        return url_of((self.settings.listen[0], self.gateway.proxy_port))

    @property
    def status_url(self) -> str:
        assert self.gateway is not None, "not started"
        return url_of((self.settings.status_listen[0], self.gateway.status_port))

    @property
    def echo_url(self) -> str:
        return url_of(self.echo_address)

    async def wait_ready(
        self, session: aiohttp.ClientSession, *, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll the gateway's /readyz until it is ready and every issuer's keys are loaded, or
        `timeout` passes; the issuers' status as /readyz last reported it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        issuers: list[dict[str, Any]] = []
        while True:
            with contextlib.suppress(aiohttp.ClientError, ValueError, TimeoutError):
                async with session.get(f"{self.status_url}/readyz") as resp:
                    body = await resp.json()
                    issuers = body.get("issuers", [])
                    if resp.status == 200 and all(issuer["loaded"] for issuer in issuers):
                        return issuers
            if loop.time() >= deadline:
                return issuers
            await asyncio.sleep(0.05)


def run_stack(
    settings: StackSettings, config: GatewayConfig, seed: Seed, *, out: TextIO = sys.stdout
) -> int:
    """Run until SIGINT or SIGTERM; the exit code (0; else 1, or 2 for a seed the data file
    refuses, with the error on stderr)."""
    try:
        eventloop.run(_run(Stack(settings, config, seed), out))
    except StackError as exc:
        print(exc.message, file=sys.stderr)
        return exc.exit_code
    return 0


async def _run(stack: Stack, out: TextIO) -> None:
    # The first Ctrl-C lets requests in progress finish; a second one cuts them off.
    loop = asyncio.get_running_loop()
    stopper = Stopper(cut=stack.cut_short, log=log)
    stopper.install(loop)
    stop = stopper.requested
    # SIGHUP reads kong.yaml again, as it does for `tokengate gateway`; one that comes while
    # the stack starts is kept for when the gateway runs.
    reloader: Reloader | None = None
    hangup = asyncio.Event()
    path = stack.settings.config_path
    if path is not None:
        loop.add_signal_handler(signal.SIGHUP, hangup.set)

    async def start_and_show() -> None:
        nonlocal reloader
        await stack.start()
        if path is not None:
            assert stack.gateway is not None
            reloader = Reloader(stack.gateway, path, load=stack.load_config)
            loop.add_signal_handler(signal.SIGHUP, reloader.request)
            if hangup.is_set():
                reloader.request()
            reloader.start()
        await show_panel(stack, out)

    startup = asyncio.create_task(start_and_show())
    stopping = asyncio.create_task(stop.wait())
    try:
        # Ctrl-C while starting stops too (the handlers above replace KeyboardInterrupt).
        await asyncio.wait({startup, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if startup.done():
            startup.result()  # a StackError propagates from here
            await stopping
    finally:
        for task in (startup, stopping):
            task.cancel()
        # A failed start has been raised above: awaiting it here must not raise it again, or
        # what did start (the identity server, the echo upstream) would never be stopped.
        await asyncio.gather(startup, stopping, return_exceptions=True)
        if path is not None:
            loop.remove_signal_handler(signal.SIGHUP)
        if reloader is not None:
            await reloader.close()
        await stack.stop()
