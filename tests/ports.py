"""Ports on 127.0.0.1: a free one, for servers a test starts as a separate process (port 0
cannot be told to another process in advance), one held busy, and whether one refuses."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def busy_port(*, reuse_port: bool = False) -> Iterator[int]:
    """A port another program holds (listening) while the block runs; with `reuse_port`, one
    that set SO_REUSEPORT (as another server with several processes does)."""
    with socket.socket() as busy:
        if reuse_port:
            busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield int(busy.getsockname()[1])


async def connection_refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False
