"""`python -m tokengate gateway` as a real child process, watched through its log, and a small
upstream for it in the test's own event loop.

    async with GatewayProcess(config, "--workers", "2") as gateway:
        await gateway.line(r"worker 1 started \\(pid (\\d+)\\)")    # a regex match on stderr
        gateway.send(signal.SIGHUP)
        assert await gateway.wait(timeout=5) == 0

Also `exit_now` and `exit_late`, the bodies of worker processes that die at once or once a
slow start is over, `stop_on`, of one that waits for a given signal, and `ask_to_stop`, of one that
asks its supervisor to stop and then meets the stop signal in one of several ways (spawned by
the supervisor tests, so they live in a module a child process can import).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.ports import free_port


def kong_yaml(upstream_port: int, *paths: str) -> str:
    """One service on the test upstream, one route per path (the upstream sees the path)."""
    routes = "".join(
        f'      - name: r{i}\n        paths: ["{path}"]\n        strip_path: false\n'
        for i, path in enumerate(paths)
    )
    return (
        '_format_version: "3.0"\nservices:\n  - name: up\n'
        f"    url: http://127.0.0.1:{upstream_port}\n    routes:\n{routes}"
    )


class GatewayProcess:
    def __init__(
        self,
        config: Path,
        *args: str,
        own_group: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        # own_group: the gateway leads a process group of its own, so a test can signal the
        # whole group as a terminal's Ctrl-C does (and never its own process with it).
        self._own_group = own_group
        self._env = None if env is None else {**os.environ, **env}
        self.proxy_port = free_port()
        self.status_port = free_port()
        self._argv = [
            sys.executable,
            "-m",
            "tokengate",
            "gateway",
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{self.proxy_port}",
            "--status-listen",
            f"127.0.0.1:{self.status_port}",
            *args,
        ]
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> GatewayProcess:
        self._process = await asyncio.create_subprocess_exec(
            *self._argv,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=self._own_group,
            env=self._env,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            # A stop, so that the supervisor removes its temporary directories (a kill would
            # leave them in /tmp); a kill if it does not come.
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()  # the supervisor; its workers stop when they see it gone
                await process.wait()
        if self._reader is not None:
            await self._reader

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def _read(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        async for raw in self._process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._new_line.set()
        self._new_line.set()

    async def line(self, pattern: str, *, after: int = 0, timeout: float = 10) -> re.Match[str]:
        """The first log line from index `after` on that matches `pattern` (waiting for it)."""
        compiled = re.compile(pattern)
        seen = after
        async with asyncio.timeout(timeout):
            while True:
                for text in self.lines[seen:]:
                    if match := compiled.search(text):
                        return match
                seen = len(self.lines)
                assert self._reader is not None
                if self._reader.done():
                    raise AssertionError(f"no line matching {pattern!r}:\n{self.log}")
                self._new_line.clear()
                await self._new_line.wait()

    async def lines_matching(self, pattern: str, count: int, *, timeout: float = 10) -> None:
        """Wait until `count` log lines match (e.g. one per worker)."""
        compiled = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while sum(1 for text in self.lines if compiled.search(text)) < count:
                self._new_line.clear()
                await self._new_line.wait()

    def send(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def send_to_group(self, sig: signal.Signals) -> None:
        """`sig` to the gateway and every worker at once, as a terminal's Ctrl-C (own_group)."""
        assert self._own_group, "the group would include the test itself"
        os.killpg(self.pid, sig)

    async def wait(self, *, timeout: float) -> int:
        assert self._process is not None
        async with asyncio.timeout(timeout):
            return await self._process.wait()

    async def ready(self, workers: int = 1) -> None:
        await self.lines_matching(r"tokengate gateway listening on", workers)


class Upstream:
    """Answers with the request path; `/slow?s=N` after N seconds; `/big` with 32 MiB of
    zeros. Handlers are cancelled when the gateway hangs up, so a cut-off request does not keep
    the test waiting."""

    def __init__(self) -> None:
        self.slow_started = asyncio.Event()
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._answer)
        self.server = TestServer(app, host="127.0.0.1", handler_cancellation=True)

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    async def _answer(self, request: web.Request) -> web.Response:
        if request.path == "/big":  # more than a client's and the gateway's sockets hold
            return web.Response(body=bytes(32 * 1024 * 1024))
        if request.path == "/slow":
            self.slow_started.set()
            await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text=request.path)


async def upstream_server() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    await upstream.server.start_server()
    try:
        yield upstream
    finally:
        await upstream.server.close()


async def fetch(url: str, *, session: aiohttp.ClientSession | None = None) -> tuple[int, str]:
    """One GET; a new connection unless a session is given."""
    if session is None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as own:
            return await fetch(url, session=own)
    async with session.get(url) as resp:
        return resp.status, await resp.text()


def exit_now(code: int) -> None:
    sys.exit(code)


def exit_late(code: int, seconds: float) -> None:
    """A worker whose start takes `seconds` (a busy host) and then fails (its port is taken)."""
    time.sleep(seconds)
    sys.exit(code)


def stop_on(signals: list[signal.Signals], seconds: float) -> None:
    """Exit 0 on one of `signals` (held back by the supervisor while it started this process,
    so none is missed), or by itself after `seconds` if none comes."""
    signal.sigtimedwait(set(signals), seconds)
    sys.exit(0)


def ask_to_stop(on_stop: str) -> None:
    """Ask the supervisor to stop (once this process runs: the stop does not race its start-up),
    send it a SIGHUP once the stop is relayed back, then "exit" (0), "fail" (exit 3), "die" of
    the SIGTERM, or "ignore" it and run on."""
    os.kill(os.getppid(), signal.SIGTERM)
    signal.sigwait({signal.SIGTERM})  # blocked by the supervisor while it started this process
    os.kill(os.getppid(), signal.SIGHUP)
    if on_stop == "die":
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        signal.raise_signal(signal.SIGTERM)
    elif on_stop == "ignore":
        time.sleep(60)
    sys.exit(3 if on_stop == "fail" else 0)
