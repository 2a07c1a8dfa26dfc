"""Stop signals for every tokengate server: the first drains, a second one cuts the drain short.

    stopper = Stopper(cut=server.cut_short, log=log)
    stopper.install(loop)                 # SIGINT and SIGTERM from here on
    await stopper.requested.wait()        # the first one
    await server.stop()                   # graceful: requests in progress may finish...

The first Ctrl-C (or SIGTERM) sets `requested`: requests in progress get the shutdown grace
period. Any later one calls `cut()`, which cuts off what is still running, as the end of the
grace period would, so the stop completes at once. `cut` must be safe to call at any time,
before the stop has begun (then the stop cuts as soon as it starts) and more than once.
(Cancelling the stop instead would leave aiohttp's cleanup half done.)
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable

from aiohttp import web

__all__ = ["STOP_SIGNALS", "Stopper", "cut_connections"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopper:
    def __init__(
        self,
        *,
        cut: Callable[[], None],
        log: logging.Logger,
        on_first: Callable[[signal.Signals], None] | None = None,
    ) -> None:
        self.requested = asyncio.Event()
        self.forced = False
        self._cut = cut
        self._log = log
        self._on_first = on_first

    def install(
        self,
        loop: asyncio.AbstractEventLoop,
        signals: Iterable[signal.Signals] = STOP_SIGNALS,
        *,
        again_cuts: bool = True,
    ) -> None:
        """`signals` stop; with `again_cuts`, a later one cuts (else it changes nothing)."""
        for sig in signals:
            loop.add_signal_handler(sig, self.signalled if again_cuts else self.stop, sig)

    def stop(self, sig: signal.Signals) -> None:
        if not self.requested.is_set():
            if self._on_first is not None:
                self._on_first(sig)
            self.requested.set()

    def signalled(self, sig: signal.Signals) -> None:
        if self.requested.is_set():
            self.cut_now(sig)
        else:
            self.stop(sig)

    def cut_now(self, sig: signal.Signals) -> None:
        """Stop, cutting off what is still running (a stop not yet requested is requested)."""
        self.stop(sig)
        if not self.forced:
            self.forced = True
            self._log.warning("%s again: cutting off the requests in progress", sig.name)
        self._cut()


def cut_connections(runner: web.BaseRunner | None) -> None:
    """Abort every connection of an aiohttp runner: the requests on them end (a body read
    fails, or the handler is cancelled), so the runner's cleanup stops waiting for them."""
    server = runner.server if runner is not None else None
    for conn in server.connections if server is not None else ():
        if conn.transport is not None:
            conn.transport.abort()
