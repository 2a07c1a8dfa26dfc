"""The servers' event loop: uvloop, made for each run without touching asyncio's global state."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from tokengate import eventloop


async def _running_loop_type() -> type:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_a_server_runs_on_a_uvloop_loop() -> None:
    assert eventloop.run(_running_loop_type()) is uvloop.Loop


def test_the_processes_other_loops_are_left_as_they_were() -> None:
    # uvloop's event loop policy, once installed, made every later asyncio.run in the process
    # a uvloop loop too; policies are deprecated since Python 3.14 and uvloop's is gone in 3.16.
    eventloop.run(_running_loop_type())
    assert asyncio.run(_running_loop_type()) is not uvloop.Loop


def test_the_coroutines_result_and_exception_come_back() -> None:
    async def fails() -> None:
        raise LookupError("from the loop")

    async def answers() -> int:
        return 7

    assert eventloop.run(answers()) == 7
    with pytest.raises(LookupError, match="from the loop"):
        eventloop.run(fails())
