"""SIGHUP: read kong.yaml again and swap it into the running server.

    reloader = Reloader(server, "kong.yaml")   # or load=: where a worker reads the config
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    reloader.start()                  # once the server listens; earlier requests wait for it
    ...
    await reloader.close()

A valid file takes effect from the next request (requests in progress finish on the routes they
started with); an invalid one is logged, every error on its own line, and the gateway keeps the
config it has. Listen addresses, timeouts and the other command-line settings are not in
kong.yaml: a reload leaves them as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

from tokengate.gateway.app import GatewayServer
from tokengate.gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["Reloader"]

log = logging.getLogger("tokengate.reload")


class Reloader:
    def __init__(
        self,
        server: GatewayServer,
        path: str,
        *,
        load: Callable[[], GatewayConfig] | None = None,
    ) -> None:
        self._server = server
        self._path = path  # for the log; `load` reads the config (default: this file)
        self._load = load or functools.partial(load_config, path)
        self._wanted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def request(self) -> None:
        """Ask for a reload; returns at once (it is a signal handler). Requests made while a
        reload runs are folded into one more, which then reads the file as it is by then."""
        self._wanted.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Load the file and swap it in; False (and the old config kept) when it is invalid."""
        path, current = self._path, self._server.generation
        try:
            # Parsed in a thread: a large file must not stall requests on this event loop.
            config = await asyncio.to_thread(self._load)
        except ConfigError as exc:
            log.error(
                "%s not reloaded (%d error(s)); still serving configuration %d:",
                path,
                len(exc.errors),
                current,
            )
            for line in exc.errors:
                log.error("%s", line)
            return False
        except Exception:
            # A bug, not the user's file: keep serving what works, show the traceback.
            log.exception("%s not reloaded; still serving configuration %d", path, current)
            return False
        for line in config.warnings:
            log.warning("%s", line)
        try:
            number = self._server.reload(config)
        except Exception:
            log.exception("%s not reloaded; still serving configuration %d", path, current)
            return False
        log.info(
            "%s reloaded: configuration %d, %d services, %d routes",
            path,
            number,
            len(config.services),
            len(config.routes),
        )
        return True
