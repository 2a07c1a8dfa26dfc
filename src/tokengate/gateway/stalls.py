"""Send timeouts as nginx times them: from the last bytes a peer took, not for a whole write.

    watch = StallWatch(transport, timeout, on_stall)   # on_stall() once nothing moved for timeout
    ...
    watch.cancel()

    await within_send_timeout(response.write(data), transport, timeout)   # TimeoutError if stalled

nginx's send_timeout and proxy_send_timeout are "set only between two successive write
operations, not for the transmission of the whole response" (or request). What waits in a
transport's buffer can be far more than a peer takes within the timeout: a piece of a streamed
body is all that arrived while the last went out (256 KiB and more). A peer reading it steadily
but slowly has not stopped reading; one that took nothing of it for `timeout` seconds has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class StallWatch:
    """Every `timeout` seconds, whether `transport`'s peer took any of what waits for it since
    the last look; if not, `on_stall()`, once. `adding`: bytes about to be written (counted as
    waiting from the start)."""

    def __init__(
        self,
        transport: asyncio.WriteTransport | None,
        timeout: float,
        on_stall: Callable[[], None],
        *,
        adding: int = 0,
    ) -> None:
        self._transport = transport
        self._timeout = timeout
        self._on_stall = on_stall
        self._waiting = buffered(transport) + adding
        self._loop = asyncio.get_running_loop()
        self._timer = self._loop.call_later(timeout, self._look)

    def _look(self) -> None:
        left = buffered(self._transport)
        if left < self._waiting:  # the peer took some: `timeout` more for the rest
            self._waiting = left
            self._timer = self._loop.call_later(self._timeout, self._look)
        else:
            self._on_stall()

    def cancel(self) -> None:
        self._timer.cancel()


def buffered(transport: asyncio.WriteTransport | None) -> int:
    """Bytes written to `transport` that its peer has not taken yet."""
    return 0 if transport is None else transport.get_write_buffer_size()


async def within_send_timeout(
    write: Awaitable[T],
    transport: asyncio.WriteTransport | None,
    timeout: float,
    *,
    adding: int = 0,
) -> T:
    """Await `write` (a write or drain towards `transport`'s peer); TimeoutError once the peer
    has taken nothing for `timeout` seconds."""
    async with asyncio.timeout(None) as deadline:
        loop = asyncio.get_running_loop()
        watch = StallWatch(
            transport, timeout, lambda: deadline.reschedule(loop.time()), adding=adding
        )
        try:
            return await write
        finally:
            watch.cancel()
