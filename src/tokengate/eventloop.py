"""The event loop every tokengate server runs on: uvloop where it exists (it is a dependency on
every platform but Windows), else asyncio's own."""

from __future__ import annotations

import asyncio


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
