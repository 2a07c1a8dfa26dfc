"""Loaded kong.yaml configs in service, how many requests run on each, and draining them.

    generations = Generations(Generation(gateway, number=1, loaded_at=time.time()))
    generation = generations.current          # per request: count in, handle, leave()
    generations.swap(Generation(new_gateway, number=2, loaded_at=time.time()))   # a reload
    await drain(runner, generations.all(), grace=10.0)                         # shutdown
    await generations.close()

A reload makes a new generation current; requests already running keep the one they started
on, so their routes, authenticators and upstream connections stay valid until they finish; then
the old gateway is closed (upstream pools, keys no other generation took over).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tokengate.gateway.server import HeadTimeoutHandler
from tokengate.shutdown import cut_connections

if TYPE_CHECKING:
    from tokengate.gateway.app import Gateway

__all__ = ["Generation", "Generations", "drain"]

log = logging.getLogger("tokengate.gateway")


class Generation:
    __slots__ = ("gateway", "idle", "inflight", "loaded_at", "number")

    def __init__(self, gateway: Gateway, *, number: int, loaded_at: float) -> None:
        self.gateway = gateway
        self.number = number
        self.loaded_at = loaded_at  # wall-clock seconds, for /readyz
        self.inflight = 0  # the server adds one as a request starts; leave() takes it off
        self.idle: asyncio.Event | None = None  # made by drained(), set by leave() at 0

    def leave(self) -> None:
        """One request on this generation has ended."""
        self.inflight -= 1
        if not self.inflight and self.idle is not None:
            self.idle.set()

    async def drained(self) -> None:
        """Return once no request is running on this generation."""
        while self.inflight:
            if self.idle is None or self.idle.is_set():
                self.idle = asyncio.Event()
            await self.idle.wait()


class Generations:
    """The current generation, and the ones a reload replaced that still have requests."""

    def __init__(self, first: Generation) -> None:
        self.current = first
        self._retiring: dict[asyncio.Task[None], Generation] = {}

    def swap(self, new: Generation) -> None:
        """Make `new` current; the old one is closed once its last request has ended."""
        old, self.current = self.current, new
        task = asyncio.get_running_loop().create_task(_retire(old))
        self._retiring[task] = old
        task.add_done_callback(self._retiring.pop)

    def all(self) -> list[Generation]:
        return [self.current, *self._retiring.values()]

    async def close(self) -> None:
        """Close every gateway now, retiring or not (after `drain`, nothing runs on them)."""
        retiring = list(self._retiring.items())
        for task, _ in retiring:
            task.cancel()
        await asyncio.gather(*(task for task, _ in retiring), return_exceptions=True)
        for _, generation in retiring:
            await generation.gateway.close()  # closing twice is harmless
        await self.current.gateway.close()


async def _retire(generation: Generation) -> None:
    await generation.drained()
    await generation.gateway.close()


async def drain(
    runner: web.BaseRunner,
    generations: list[Generation],
    *,
    grace: float,
    cut: asyncio.Event | None = None,
) -> None:
    """Stop accepting, close idle keep-alive connections, give requests in progress `grace`
    seconds (or until `cut` is set), then cut off whatever is still running; the runner is
    cleaned up on return."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    for site in runner.sites:
        await site.stop()  # new connections are refused from here on
    server = runner.server
    if server is None:
        return
    # A connection whose request head has begun to arrive is not idle (nginx counts it busy
    # too): its request is served. Closing it now would drop the rest of its head.
    arriving = [
        c for c in server.connections if isinstance(c, HeadTimeoutHandler) and c.head_arriving
    ]
    waiting = {id(conn) for conn in arriving}
    for conn in server.connections:
        if id(conn) not in waiting:
            conn.close()  # no further request on any connection
            if arriving and isinstance(conn, HeadTimeoutHandler) and conn.idle:
                conn.force_close()  # as the cleanup below would at once, not after the heads
    cutting = asyncio.ensure_future((cut or asyncio.Event()).wait())
    if arriving:
        heads = asyncio.ensure_future(asyncio.gather(*(c.head_complete() for c in arriving)))
        first: set[asyncio.Future[Any]] = {heads, cutting}
        left = max(0.0, deadline - loop.time())
        await asyncio.wait(first, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        heads.cancel()
        for conn in arriving:
            conn.close()  # its request, if its head came, runs on: no further one
    # aiohttp's cleanup closes the idle connections at once and waits for the busy ones, for
    # at most the runner's shutdown_timeout, which is longer than `grace`: the cut is ours.
    cleanup = asyncio.ensure_future(runner.cleanup())
    await asyncio.wait(
        {cleanup, cutting},
        timeout=max(0.0, deadline - loop.time()),
        return_when=asyncio.FIRST_COMPLETED,
    )
    cutting.cancel()
    if not cleanup.done():
        running = sum(generation.inflight for generation in generations)
        if cut is not None and cut.is_set():
            log.warning("%d request(s) still running: cut off", running)
        else:
            log.warning(
                "%d request(s) still running after the %gs shutdown grace period: cut off",
                running,
                grace,
            )
        cut_connections(runner)  # handler_cancellation then cancels each handler
    await cleanup
