"""The event loop every tokengate server runs on: uvloop where it exists (it is a dependency on
every platform but Windows), else asyncio's own.

The loop is made by `asyncio.Runner`'s factory, not by installing uvloop's event loop policy:
policies are deprecated since Python 3.14 (and uvloop's goes with them in 3.16), and a policy
would also change the loop of every other `asyncio.run` in the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_Result = TypeVar("_Result")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, _Result]) -> _Result:
    """`asyncio.run(main)` on a new uvloop loop. Unlike asyncio.run's, the loop is not made the
    thread's current one: nothing here asks for it outside a coroutine."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)
