"""Signals and workers as a user meets them: real `python -m tokengate gateway` processes on free
ports in front of an upstream in this test's event loop.

SIGHUP reloads kong.yaml without a failed request (or keeps the old config when the new one is
bad); with --workers, a killed worker is replaced while the others keep serving, a worker that
keeps dying makes the supervisor give up, and workers stop when their supervisor is killed;
SIGTERM lets a request in progress finish, refuses new connections, and exits 0 within the grace
period, cutting off what runs past it; a second SIGINT cuts the drain short, and one SIGINT or
SIGTERM to the whole process group still drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.processes import (
    GatewayProcess,
    Upstream,
    ask_to_stop,
    exit_late,
    exit_now,
    fetch,
    kong_yaml,
    stop_on,
    upstream_server,
)
from tests.gateway.issuer import TestIssuer
from tests.gateway.support import BAD_KONG_YAML
from tests.ports import connection_refused
from tokengate.gateway.supervisor import (
    CUT_SIGNAL,
    HANDLED_SIGNALS,
    START_FAILED,
    RestartPolicy,
    Supervisor,
    describe_exit,
)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async for server in upstream_server():
        yield server


@pytest.fixture
def config(tmp_path: Path, upstream: Upstream) -> Path:
    path = tmp_path / "kong.yaml"
    path.write_text(kong_yaml(upstream.port, "/keep", "/old", "/slow"))
    return path


async def load(url: str, stop: asyncio.Event, results: list[object], *, keep_alive: bool) -> None:
    """GET `url` over and over until `stop`; every outcome (a status or an error) recorded."""
    connector = aiohttp.TCPConnector(force_close=not keep_alive)
    async with aiohttp.ClientSession(connector=connector) as session:
        while not stop.is_set():
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    results.append(resp.status)
            except aiohttp.ClientError as exc:
                results.append(repr(exc))


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sighup_swaps_routes_with_no_failed_request(
    config: Path, upstream: Upstream, workers: str
) -> None:
    async with GatewayProcess(config, "--workers", workers) as gateway:
        await gateway.ready(workers=int(workers))
        base = f"http://127.0.0.1:{gateway.proxy_port}"
        assert await fetch(f"{base}/old") == (200, "/old")

        stop, results = asyncio.Event(), list[object]()
        loaders = [
            asyncio.create_task(load(f"{base}/keep", stop, results, keep_alive=keep_alive))
            for keep_alive in (True, True, False, False)
        ]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(
            config.write_text, kong_yaml(upstream.port, "/keep", "/new", "/slow")
        )
        gateway.send(signal.SIGHUP)
        await gateway.lines_matching(  # each one, naming the user's file (not its copy)
            rf": {config} reloaded: configuration 2, 1 services, 3 routes$", int(workers)
        )
        if workers == "2":  # checked once, by the supervisor, before any worker reads it
            await gateway.line(
                rf": {config} is valid \(1 services, 3 routes\): telling the workers to reload$"
            )
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*loaders)

        failures = [r for r in results if r != 200]
        assert not failures, failures[:5]
        assert len(results) > 50  # the loop really ran through the reload
        for _ in range(10):  # new connections: whichever worker takes them
            assert await fetch(f"{base}/new") == (200, "/new")
            assert (await fetch(f"{base}/old"))[0] == 404
        assert "Traceback" not in gateway.log


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sighup_with_a_bad_config_logs_every_error_and_keeps_serving(
    config: Path, workers: str
) -> None:
    async with GatewayProcess(config, "--workers", workers) as gateway:
        await gateway.ready(workers=int(workers))
        await asyncio.to_thread(config.write_text, BAD_KONG_YAML)
        gateway.send(signal.SIGHUP)
        kept = {"1": "still serving configuration 1", "2": "workers keep their config"}[workers]
        await gateway.line(rf": {config} not reloaded \(3 error\(s\)\); {kept}:$")
        await gateway.line(rf"{config}: services\[0\]\.routes\[0\]\.pathz: unknown field")
        await gateway.line(rf"{config}: services\[0\]\.url: scheme must be http or https")
        assert await fetch(f"http://127.0.0.1:{gateway.proxy_port}/old") == (200, "/old")
        assert "reloaded:" not in gateway.log
        assert "Traceback" not in gateway.log
        gateway.send(signal.SIGTERM)
        assert await gateway.wait(timeout=10) == 0


async def test_sighup_after_a_tmp_cleaner_removed_the_run_directory_is_said(
    config: Path, upstream: Upstream, tmp_path: Path
) -> None:
    """systemd-tmpfiles ages out /tmp entries: a later SIGHUP cannot write the workers' copy of
    kong.yaml. That is logged (not a traceback from the signal callback), the workers keep
    their config, and the gateway serves on."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    async with GatewayProcess(config, "--workers", "2", env={"TMPDIR": str(scratch)}) as gateway:
        await gateway.ready(workers=2)
        (run_directory,) = scratch.glob("tokengate-run-*")
        await asyncio.to_thread(shutil.rmtree, run_directory)
        await asyncio.to_thread(config.write_text, kong_yaml(upstream.port, "/keep", "/new"))
        gateway.send(signal.SIGHUP)
        await gateway.line(
            rf"{config} not reloaded: cannot write the workers' copy {run_directory}/kong.yaml: "
            r"No such file or directory; workers keep their config$"
        )
        assert await fetch(f"http://127.0.0.1:{gateway.proxy_port}/old") == (200, "/old")
        gateway.send(signal.SIGTERM)  # and the files it no longer finds are no trouble
        assert await gateway.wait(timeout=20) == 0
        assert "Traceback" not in gateway.log
        assert "still serving" not in gateway.log  # no worker was asked to read the copy


def with_key_auth(text: str) -> str:
    return text + "plugins:\n  - name: key-auth\n"


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_ignore_plugins_holds_for_every_worker_and_every_reload(
    config: Path, upstream: Upstream, workers: str
) -> None:
    """Each worker and each SIGHUP reads the file again: all of them with the names given."""
    old_text = with_key_auth(kong_yaml(upstream.port, "/keep", "/old"))
    await asyncio.to_thread(config.write_text, old_text)
    args = ("--workers", workers, "--ignore-plugins", "key-auth")
    async with GatewayProcess(config, *args) as gateway:
        await gateway.ready(workers=int(workers))
        base = f"http://127.0.0.1:{gateway.proxy_port}"
        assert await fetch(f"{base}/old") == (200, "/old")
        new_text = with_key_auth(kong_yaml(upstream.port, "/keep", "/new"))
        await asyncio.to_thread(config.write_text, new_text)
        gateway.send(signal.SIGHUP)
        await gateway.lines_matching(r"reloaded: configuration 2", int(workers))
        assert await fetch(f"{base}/new") == (200, "/new")
        assert "controls access" not in gateway.log and "Traceback" not in gateway.log
        # Said once at start and once per reload: with workers, by the supervisor that checks
        # the file, not again by each worker that reloads its copy.
        assert gateway.log.count("plugin 'key-auth' is not run (--ignore-plugins)") == 2


async def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(config: Path) -> None:
    async with GatewayProcess(config, "--workers", "2") as gateway:
        await gateway.ready(workers=2)
        victim = int((await gateway.line(r"worker 1 started \(pid (\d+)\)"))[1])
        mark = len(gateway.lines)
        base = f"http://127.0.0.1:{gateway.proxy_port}"

        # Past the supervisor's min_uptime (1 s) first: a worker that ran longer is replaced
        # at once, not after a crash loop's wait.
        await asyncio.sleep(1.1)
        os.kill(victim, signal.SIGKILL)
        await gateway.line(
            rf"worker 1 \(pid {victim}\) was killed by SIGKILL; restarting$", after=mark
        )
        # From here the kernel sends every new connection to the surviving worker.
        for _ in range(10):
            assert await fetch(f"{base}/keep") == (200, "/keep")
        started = await gateway.line(r"worker 1 started \(pid (\d+)\)", after=mark)
        replacement = int(started[1])
        assert replacement != victim
        await gateway.lines_matching(r"tokengate gateway listening on", 3)
        # The replacement serves too: some status request lands on it.
        seen: set[int] = set()
        async with asyncio.timeout(5):
            while replacement not in seen:
                async with (
                    aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
                    s.get(f"http://127.0.0.1:{gateway.status_port}/readyz") as resp,
                ):
                    seen.add((await resp.json())["pid"])
        assert (await fetch(f"{base}/keep")) == (200, "/keep")
        gateway.send(signal.SIGTERM)
        assert await gateway.wait(timeout=10) == 0


def token_cache_entries(text: str) -> float:
    (family,) = (
        f for f in text_string_to_metric_families(text) if f.name == "tokengate_token_cache_entries"
    )
    return sum(sample.value for sample in family.samples)


async def test_a_dead_workers_cached_tokens_leave_the_token_cache_gauge(
    upstream: Upstream, tmp_path: Path
) -> None:
    """tokengate_token_cache_entries sums the live workers: a killed worker's cache went with
    it, and /metrics stops counting it once the supervisor has reaped it."""
    tokens = 20
    async with TestIssuer() as issuer:
        issuer.add_key("RS256")
        config = tmp_path / "kong.yaml"
        plugin = f"plugins:\n  - name: openid-connect\n    config: {{issuer: '{issuer.issuer}'}}\n"
        config.write_text(kong_yaml(upstream.port, "/keep") + plugin)
        async with GatewayProcess(config, "--workers", "2") as gateway:
            await gateway.ready(workers=2)
            victim = int((await gateway.line(r"worker 1 started \(pid (\d+)\)"))[1])
            base = f"http://127.0.0.1:{gateway.proxy_port}/keep"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
                for _ in range(tokens):  # each on a new connection: both workers get some
                    bearer = {"Authorization": f"Bearer {issuer.mint()}"}
                    async with s.get(base, headers=bearer) as resp:
                        assert resp.status == 200, await resp.text()
                metrics = f"http://127.0.0.1:{gateway.status_port}/metrics"

                async def entries(settled: Callable[[float], bool]) -> float:
                    """The gauge once `settled` (each worker publishes every second)."""
                    for _ in range(50):
                        async with s.get(metrics) as resp:
                            if settled(found := token_cache_entries(await resp.text())):
                                return found
                        await asyncio.sleep(0.2)
                    raise AssertionError(f"tokengate_token_cache_entries stays at {found}")

                await entries(lambda found: found == tokens)
                await asyncio.sleep(1.1)  # past min_uptime: replaced at once
                os.kill(victim, signal.SIGKILL)
                await gateway.lines_matching(r"tokengate gateway listening on", 3)
                # What the survivor holds (all of them only if the kernel sent it every one).
                assert await entries(lambda found: found < tokens) >= 0


async def test_workers_restarted_after_a_reload_serve_the_reloaded_config(
    config: Path, upstream: Upstream
) -> None:
    """A worker restarted after a crash serves what its siblings serve: the config of the last
    SIGHUP, not the file as it is by then (it is read on SIGHUP alone)."""
    async with GatewayProcess(config, "--workers", "2") as gateway:
        await gateway.ready(workers=2)
        pids = [int((await gateway.line(rf"worker {n} started \(pid (\d+)\)"))[1]) for n in (1, 2)]
        await asyncio.to_thread(config.write_text, kong_yaml(upstream.port, "/keep", "/new"))
        gateway.send(signal.SIGHUP)
        await gateway.lines_matching(r"reloaded: configuration 2", 2)
        await asyncio.to_thread(config.write_text, kong_yaml(upstream.port, "/keep", "/later"))
        await asyncio.sleep(1.1)  # past min_uptime: each is replaced at once
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        await gateway.lines_matching(r"tokengate gateway listening on", 4, timeout=30)
        base = f"http://127.0.0.1:{gateway.proxy_port}"
        for _ in range(10):  # new connections: whichever replacement takes them
            assert await fetch(f"{base}/new") == (200, "/new")
            assert (await fetch(f"{base}/later"))[0] == 404
        assert "Traceback" not in gateway.log


async def test_a_sighup_to_one_worker_reloads_what_the_supervisor_checked_not_the_file(
    config: Path,
) -> None:
    """A SIGHUP that reaches a worker by itself (`kill -HUP <pid>`, a hangup sent to the whole
    process group) reloads the supervisor's copy of the last valid kong.yaml: a worker never
    serves a file the supervisor has not checked, nor one its siblings do not serve."""
    async with GatewayProcess(config, "--workers", "2") as gateway:
        await gateway.ready(workers=2)
        pid = int((await gateway.line(r"worker 1 started \(pid (\d+)\)"))[1])
        await asyncio.to_thread(config.write_text, BAD_KONG_YAML)
        os.kill(pid, signal.SIGHUP)
        said = await gateway.line(rf"\[{pid}\]: {config} (not )?reloaded.*$")
        assert said[0].endswith(f"{config} reloaded: configuration 2, 1 services, 3 routes")
        assert await fetch(f"http://127.0.0.1:{gateway.proxy_port}/old") == (200, "/old")
        assert " ERROR " not in gateway.log and "Traceback" not in gateway.log


async def test_workers_stop_when_the_supervisor_is_killed(
    config: Path, upstream: Upstream, tmp_path: Path
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    async with GatewayProcess(config, "--workers", "2", env=env) as gateway:
        await gateway.ready(workers=2)
        assert sorted(p.name.split("-")[1] for p in temp.iterdir()) == ["metrics", "run"]
        # One worker drains a slow request while the other, idle, is out at once: the run's
        # files must outlive the first one out.
        slow = asyncio.create_task(fetch(f"http://127.0.0.1:{gateway.proxy_port}/slow?s=2"))
        await asyncio.wait_for(upstream.slow_started.wait(), 5)
        gateway.send(signal.SIGKILL)  # no chance to pass anything on
        await gateway.lines_matching(r"the supervisor has gone: draining", 2)
        assert await slow == (200, "/slow")
        await gateway.lines_matching(r"\]: stopped$", 2)
        assert gateway.log.count("the supervisor has gone: draining") == 2  # once each
        assert await connection_refused(gateway.proxy_port)
        assert "cannot listen" not in gateway.log and "Traceback" not in gateway.log
        # The supervisor could not remove the run's temporary files: the last worker out did.
        for _ in range(100):
            if not any(temp.iterdir()):
                break
            await asyncio.sleep(0.05)
        assert not any(temp.iterdir()), sorted(temp.rglob("*"))


async def test_a_worker_still_starting_when_the_supervisor_is_killed_keeps_the_files(
    config: Path, tmp_path: Path
) -> None:
    """The replacement of a killed worker is still importing when the supervisor dies: its
    idle sibling, out first, must leave it the run's files, and the last one out removes them."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    async with GatewayProcess(config, "--workers", "2", env={"TMPDIR": str(temp)}) as gateway:
        await gateway.ready(workers=2)
        first = await gateway.line(r"worker 1 started \(pid (\d+)\)")
        os.kill(int(first.group(1)), signal.SIGKILL)
        index = len(gateway.lines)
        await gateway.line(r"worker 1 started \(pid (\d+)\)", after=index)
        gateway.send(signal.SIGKILL)  # the replacement has not imported its modules yet
        await gateway.lines_matching(r"\]: stopped$", 2, timeout=30)
        for _ in range(200):
            if not any(temp.iterdir()):
                break
            await asyncio.sleep(0.05)
        assert not any(temp.iterdir()), sorted(temp.rglob("*"))
        assert "Traceback" not in gateway.log and "cannot listen" not in gateway.log


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_sigterm_finishes_the_request_in_progress_and_refuses_new_ones(
    config: Path, upstream: Upstream, workers: str
) -> None:
    grace = 5.0
    async with GatewayProcess(
        config, "--workers", workers, "--shutdown-timeout", str(grace)
    ) as gateway:
        await gateway.ready(workers=int(workers))
        slow = asyncio.create_task(fetch(f"http://127.0.0.1:{gateway.proxy_port}/slow?s=2"))
        await asyncio.wait_for(upstream.slow_started.wait(), 5)
        signalled = time.monotonic()
        gateway.send(signal.SIGTERM)
        for _ in range(50):  # the signal is handled within a second
            if await connection_refused(gateway.proxy_port):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"new connections still accepted after SIGTERM:\n{gateway.log}")
        assert not slow.done(), gateway.log  # refused while the slow request still runs
        assert await slow == (200, "/slow")
        assert await gateway.wait(timeout=grace) == 0
        assert time.monotonic() - signalled < grace
        assert "cut off" not in gateway.log


async def test_sigterm_cuts_off_a_request_running_past_the_grace_period(
    config: Path, upstream: Upstream
) -> None:
    async with GatewayProcess(config, "--shutdown-timeout", "0.5") as gateway:
        await gateway.ready()
        slow = asyncio.create_task(fetch(f"http://127.0.0.1:{gateway.proxy_port}/slow?s=30"))
        await asyncio.wait_for(upstream.slow_started.wait(), 5)
        signalled = time.monotonic()
        gateway.send(signal.SIGTERM)
        assert await gateway.wait(timeout=5) == 0
        assert time.monotonic() - signalled < 3
        with pytest.raises(aiohttp.ClientError):
            await slow
        assert "1 request(s) still running after the 0.5s shutdown grace period" in gateway.log


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_second_sigint_cuts_the_drain_short(
    config: Path, upstream: Upstream, workers: str
) -> None:
    async with GatewayProcess(config, "--workers", workers, "--shutdown-timeout", "60") as gateway:
        await gateway.ready(workers=int(workers))
        slow = asyncio.create_task(fetch(f"http://127.0.0.1:{gateway.proxy_port}/slow?s=60"))
        await asyncio.wait_for(upstream.slow_started.wait(), 5)
        gateway.send(signal.SIGINT)
        # The first one drains, and would wait. (Each worker has taken it in before the next:
        # two signals pending at once in a process are delivered as one.)
        await gateway.lines_matching(r": draining \(up to 60s", int(workers))
        signalled = time.monotonic()
        gateway.send(signal.SIGINT)
        assert await gateway.wait(timeout=15) == 0, gateway.log
        assert time.monotonic() - signalled < 15  # not the 60 s grace period
        assert "again: cutting off the requests in progress" in gateway.log
        if workers == "2":  # passed on by the supervisor, as CUT_SIGNAL
            await gateway.line(
                r": SIGINT again: telling the workers to cut off requests in progress$"
            )
        with pytest.raises(aiohttp.ClientError):
            await slow
        assert "Traceback" not in gateway.log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_one_stop_signal_to_the_process_group_drains_workers_gracefully(
    config: Path, upstream: Upstream, sig: signal.Signals
) -> None:
    # A terminal's Ctrl-C (or systemd's SIGTERM with KillMode=control-group) reaches the
    # supervisor and every worker at once, and the supervisor relays it: a worker must count
    # that as one stop signal, not two.
    async with GatewayProcess(
        config, "--workers", "2", "--shutdown-timeout", "20", own_group=True
    ) as gateway:
        await gateway.ready(workers=2)
        slow = asyncio.create_task(fetch(f"http://127.0.0.1:{gateway.proxy_port}/slow?s=2"))
        await asyncio.wait_for(upstream.slow_started.wait(), 5)
        gateway.send_to_group(sig)
        assert await slow == (200, "/slow")
        assert await gateway.wait(timeout=15) == 0
        assert "again" not in gateway.log


async def test_a_stop_signal_a_worker_had_already_handled_does_not_cut_its_drain(
    config: Path, upstream: Upstream
) -> None:
    """systemd's SIGTERM to the whole control group may reach a worker, and be handled, before
    the supervisor relays its own: that second SIGTERM is the same stop, not a cut. (Sent at
    once, as above, the two may arrive as one; here each worker has taken its own first.)"""
    async with GatewayProcess(config, "--workers", "2", "--shutdown-timeout", "20") as gateway:
        await gateway.ready(workers=2)
        pids = [int((await gateway.line(rf"worker {n} started \(pid (\d+)\)"))[1]) for n in (1, 2)]
        slow = asyncio.create_task(fetch(f"http://127.0.0.1:{gateway.proxy_port}/slow?s=2"))
        await asyncio.wait_for(upstream.slow_started.wait(), 5)
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        await gateway.lines_matching(r": draining \(up to 20s", 2)
        gateway.send(signal.SIGTERM)
        assert await slow == (200, "/slow")
        assert await gateway.wait(timeout=15) == 0
        assert "again" not in gateway.log


async def test_a_ctrl_c_while_the_workers_start_up_still_drains_them(config: Path) -> None:
    """A Ctrl-C reaches the group while the workers are still importing: each holds it back
    until its handlers are in place, then ignores it (the supervisor relays one SIGTERM). The
    first worker too, though its start also starts multiprocessing's resource tracker (which
    unblocks SIGINT and SIGTERM in the supervisor as it does)."""
    async with GatewayProcess(config, "--workers", "2", own_group=True) as gateway:
        await gateway.line(r"worker 2 started")  # neither has imported its modules yet
        gateway.send_to_group(signal.SIGINT)
        assert await gateway.wait(timeout=15) == 0, gateway.log
        assert "KeyboardInterrupt" not in gateway.log and "Traceback" not in gateway.log
        assert "was killed" not in gateway.log


async def test_a_port_taken_while_the_workers_start_is_given_up_on(config: Path) -> None:
    """Another program takes the port after the supervisor checked it, while the workers still
    import their modules: each says it cannot listen, which is a death at start however long
    the start took, so the supervisor restarts it later each time and then gives up (exit 1)."""
    async with GatewayProcess(config, "--workers", "2") as gateway:
        await gateway.line(r"worker 2 started")  # the port was checked; no worker binds it yet
        with socket.socket() as other:
            other.bind(("127.0.0.1", gateway.proxy_port))
            other.listen()
            assert await gateway.wait(timeout=120) == 1, gateway.log
    port = gateway.proxy_port
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in gateway.log
    await gateway.line(
        r"worker \d \(pid \d+\) exited with code 2 before it served; restarting in 0\.5s$"
    )
    await gateway.line(
        r"exited with code 2; it failed before it served 5 times in a row: giving up$"
    )
    assert "Traceback" not in gateway.log


@pytest.mark.parametrize(
    ("min_uptime", "worker", "args", "died", "when"),
    [
        (10, exit_now, (3,), "exited with code 3", "within 10s of starting"),
        # Importing and loading kong.yaml outlast min_uptime on a busy host: a worker that then
        # cannot listen (START_FAILED) died at start all the same, and is not restarted at
        # once, forever. (nginx's master does not respawn a worker that exits with 2.)
        (0.1, exit_late, (START_FAILED, 0.5), "exited with code 2", "before it served"),
    ],
)
def test_supervisor_gives_up_on_a_worker_that_keeps_dying_at_start(
    caplog: pytest.LogCaptureFixture,
    min_uptime: float,
    worker: Callable[..., None],
    args: tuple[object, ...],
    died: str,
    when: str,
) -> None:
    context = multiprocessing.get_context("spawn")
    policy = RestartPolicy(min_uptime=min_uptime, first_delay=0.05, max_delay=1, max_quick_exits=3)
    started: list[int | None] = []

    def on_start(pid: int | None) -> None:
        started.append(pid)
        if len(started) > 3:  # a crash loop the supervisor does not see: end the test
            os.kill(os.getpid(), signal.SIGTERM)

    supervisor = Supervisor(
        1,
        lambda: context.Process(target=worker, args=args),
        reload=lambda: True,
        stop_timeout=5,
        policy=policy,
        on_start=on_start,
    )
    with caplog.at_level(logging.INFO, logger="tokengate.supervisor"):
        assert supervisor.run() == 1
    messages = [record.getMessage() for record in caplog.records]
    restarts = [m for m in messages if "restarting" in m]
    assert len(restarts) == 2, messages
    assert restarts[0] == f"worker 1 (pid {started[0]}) {died} {when}; restarting in 0.05s"
    assert restarts[1].endswith("restarting in 0.1s")  # longer each time
    last = f"worker 1 (pid {started[-1]}) {died}"
    assert f"{last}; it failed {when} 3 times in a row: giving up" in messages
    assert "giving up: stopping the workers" in messages


class _OutOfProcesses(multiprocessing.process.BaseProcess):
    """A worker that cannot be started: fork() fails as it does at the process limit."""

    def start(self) -> None:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


def test_a_worker_that_cannot_be_started_is_retried_later_each_time_then_given_up_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = RestartPolicy(min_uptime=10, first_delay=0.05, max_delay=1, max_quick_exits=3)
    launched: list[BaseProcess] = []

    def launch() -> BaseProcess:
        if len(launched) == 3:  # a retry loop the supervisor does not see: end the test
            os.kill(os.getpid(), signal.SIGTERM)
        launched.append(_OutOfProcesses())
        return launched[-1]

    supervisor = Supervisor(1, launch, reload=lambda: True, stop_timeout=5, policy=policy)
    never_retried = threading.Timer(10, os.kill, (os.getpid(), signal.SIGTERM))
    never_retried.start()
    try:
        with caplog.at_level(logging.INFO, logger="tokengate.supervisor"):
            assert supervisor.run() == 1
    finally:
        never_retried.cancel()
    messages = [record.getMessage() for record in caplog.records]
    failed = "worker 1 could not be started: Resource temporarily unavailable"
    assert [m for m in messages if "restarting" in m] == [
        f"{failed} within 10s of starting; restarting in 0.05s",
        f"{failed} within 10s of starting; restarting in 0.1s",  # longer each time
    ]
    assert f"{failed}; it failed within 10s of starting 3 times in a row: giving up" in messages
    assert len(launched) == 3


@pytest.mark.parametrize(
    ("quick_exits", "delay"),
    [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (40, 8.0)],
)
def test_restart_delays_double_from_half_a_second_up_to_eight(
    quick_exits: int, delay: float
) -> None:
    assert RestartPolicy().delay(quick_exits) == delay


@pytest.mark.parametrize(
    ("code", "said"),
    [
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-signal.SIGKILL, "was killed by SIGKILL"),
        (-signal.SIGSEGV, "was killed by SIGSEGV"),
        (-99, "was killed by signal 99"),  # no name for it
    ],
)
def test_how_a_worker_ended_is_said_by_exit_code_or_signal(code: int, said: str) -> None:
    assert describe_exit(code) == said


@pytest.mark.parametrize(
    ("on_stop", "exit_code", "said"),
    [
        ("exit", 0, "worker 1 (pid {pid}) exited with code 0"),
        ("die", 0, "worker 1 (pid {pid}) was killed by SIGTERM"),  # by the stop signal itself
        ("fail", 1, "worker 1 (pid {pid}) exited with code 3"),
        ("ignore", 1, "worker 1 (pid {pid}) still running 1s after the stop signal: killing it"),
    ],
)
def test_supervisor_stop_exits_0_only_if_every_worker_stopped_cleanly(
    caplog: pytest.LogCaptureFixture, on_stop: str, exit_code: int, said: str
) -> None:
    context = multiprocessing.get_context("spawn")
    started: list[int | None] = []
    reloads: list[bool] = []

    def reload() -> bool:
        reloads.append(True)
        return True

    supervisor = Supervisor(
        1,
        lambda: context.Process(target=ask_to_stop, args=(on_stop,)),
        reload=reload,
        stop_timeout=1,
        on_start=started.append,
    )
    with caplog.at_level(logging.INFO, logger="tokengate.supervisor"):
        assert supervisor.run() == exit_code
    messages = [record.getMessage() for record in caplog.records]
    (pid,) = started  # the worker is not restarted while the supervisor stops
    assert "SIGTERM: stopping the workers" in messages
    assert said.format(pid=pid) in messages
    if on_stop == "ignore":
        assert f"worker 1 (pid {pid}) was killed by SIGKILL" in messages
    assert not reloads  # a SIGHUP during the stop reloads nothing, as nginx's master ignores it


def test_a_stop_while_a_worker_waits_to_be_restarted_calls_the_restart_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ctrl-C during a crash loop's wait: the dead worker is not restarted, the live one is
    stopped, and a second signal reaches it as CUT_SIGNAL (it waits for nothing else)."""
    context = multiprocessing.get_context("spawn")
    policy = RestartPolicy(min_uptime=10, first_delay=60, max_delay=60)
    workers = iter([(exit_now, (3,)), (stop_on, ([CUT_SIGNAL], 30))])
    started: list[int | None] = []

    def on_exit(pid: int | None) -> None:
        if pid == started[0]:  # two signals at once: a stop, and one more
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)

    def launch() -> multiprocessing.process.BaseProcess:
        target, args = next(workers)
        return context.Process(target=target, args=args)

    supervisor = Supervisor(
        2, launch, reload=lambda: True, stop_timeout=60, policy=policy,
        on_start=started.append, on_exit=on_exit,
    )  # fmt: skip
    begun = time.monotonic()
    with caplog.at_level(logging.INFO, logger="tokengate.supervisor"):
        assert supervisor.run() == 0
    assert time.monotonic() - begun < 20  # not the 30 s the live worker waits by itself
    messages = [record.getMessage() for record in caplog.records]
    first, second = started  # the dead one was not restarted
    assert (
        f"worker 1 (pid {first}) exited with code 3 within 10s of starting; restarting in 60s"
        in (messages)
    )
    assert any(
        m.endswith(" again: telling the workers to cut off requests in progress") for m in messages
    )
    assert f"worker 2 (pid {second}) exited with code 0" in messages


def test_after_the_stop_timeout_only_the_workers_still_running_are_killed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = multiprocessing.get_context("spawn")
    workers = iter([(stop_on, ([signal.SIGTERM], 60)), (ask_to_stop, ("ignore",))])
    started: list[int | None] = []

    def launch() -> multiprocessing.process.BaseProcess:
        target, args = next(workers)
        return context.Process(target=target, args=args)

    supervisor = Supervisor(2, launch, reload=lambda: True, stop_timeout=8, on_start=started.append)
    # Held back by the caller (as run_workers does), and held back again once run() returns:
    # a signal while the caller removes the run's files must not kill it half done.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        with caplog.at_level(logging.INFO, logger="tokengate.supervisor"):
            assert supervisor.run() == 1
    finally:
        held = signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    assert held >= HANDLED_SIGNALS
    messages = [record.getMessage() for record in caplog.records]
    first, second = started  # two workers, as asked
    assert f"worker 1 (pid {first}) exited with code 0" in messages
    assert f"worker 2 (pid {second}) still running 8s after the stop signal: killing it" in messages
    assert f"worker 2 (pid {second}) was killed by SIGKILL" in messages
    assert not any(f"(pid {first}) still running" in m for m in messages)


async def test_an_ipv6_listen_address_is_logged_in_brackets(config: Path) -> None:
    """As nginx writes it ("[::1]:8000"): `::1:8000` would not say which part is the port."""
    listen = ("--listen", "[::1]:0", "--status-listen", "[::1]:0")  # (later flags win)
    async with GatewayProcess(config, *listen) as gateway:
        found = await gateway.line(r"listening on (\S+) \(status (\S+)\)", timeout=30)
    for address in (found[1], found[2]):
        assert address.startswith("[::1]:") and int(address.rpartition(":")[2]) > 0, address


# -- flags that no reload changes, in every worker ---------------------------------------------


async def reloaded(gateway: GatewayProcess, workers: str) -> None:
    """SIGHUP, and wait until every worker serves the config read again."""
    gateway.send(signal.SIGHUP)
    await gateway.lines_matching(r"reloaded: configuration 2", int(workers))


async def access_line(gateway: GatewayProcess, request_id: str) -> dict[str, object]:
    """The JSON access line (--log-format json) of the request sent with this X-Request-Id."""
    match = await gateway.line(re.escape(f'"request_id":"{request_id}"'))
    line = json.loads(match.string)
    assert isinstance(line, dict)
    return line


async def client_ip_logged(
    gateway: GatewayProcess, request_id: str, *, source: str, real_ip: str
) -> object:
    """The client_ip the gateway logs for a request from `source` that names `real_ip`."""
    connector = aiohttp.TCPConnector(force_close=True, local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"http://127.0.0.1:{gateway.proxy_port}/keep"
        headers = {"X-Real-IP": real_ip, "X-Request-Id": request_id}
        async with session.get(url, headers=headers) as resp:
            assert (resp.status, await resp.text()) == (200, "/keep")
    return (await access_line(gateway, request_id))["client_ip"]


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_trusted_ips_hold_for_every_worker_and_every_reload(
    config: Path, workers: str
) -> None:
    """--trusted-ips: the X-Real-IP a peer in it sends names the client (Kong's trusted_ips
    with real_ip_header X-Real-IP); from any other peer it is not believed."""
    args = ("--workers", workers, "--trusted-ips", "127.0.0.2", "--log-format", "json")
    async with GatewayProcess(config, *args) as gateway:
        await gateway.ready(workers=int(workers))
        for round_ in ("start", "reload"):
            if round_ == "reload":
                await reloaded(gateway, workers)
            trusted = await client_ip_logged(
                gateway, f"{round_}-trusted", source="127.0.0.2", real_ip="203.0.113.7"
            )
            assert trusted == "203.0.113.7", gateway.log
            other = await client_ip_logged(
                gateway, f"{round_}-other", source="127.0.0.1", real_ip="203.0.113.8"
            )
            assert other == "127.0.0.1", gateway.log


async def cut_off_unread(gateway: GatewayProcess, path: str, *, after: int = 0) -> None:
    """Ask for `path`, read nothing of the answer, and wait for the gateway to say it cut this
    client off (within seconds: not after the default --client-send-timeout of 30)."""
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.proxy_port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        await gateway.line(r"response from up cut off: client stopped reading", after=after)
    finally:
        writer.close()


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_client_send_timeout_holds_for_every_worker_and_every_reload(
    tmp_path: Path, upstream: Upstream, workers: str
) -> None:
    """A client that stops reading a response larger than the sockets hold is cut off after
    --client-send-timeout seconds (nginx's send_timeout), not the default 30."""
    config = tmp_path / "big.yaml"
    config.write_text(kong_yaml(upstream.port, "/big"))
    args = ("--workers", workers, "--client-send-timeout", "0.5")
    async with GatewayProcess(config, *args) as gateway:
        await gateway.ready(workers=int(workers))
        await cut_off_unread(gateway, "/big")
        seen = len(gateway.lines)
        await reloaded(gateway, workers)
        await cut_off_unread(gateway, "/big", after=seen)


async def closed_by_gateway(readers: list[asyncio.StreamReader]) -> None:
    """Return once the gateway has closed one of these idle connections."""

    async def eof(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):  # a reset is a close too
            while await reader.read(65536):
                pass

    waits = [asyncio.create_task(eof(reader)) for reader in readers]
    try:
        async with asyncio.timeout(5):  # the gateway keeps an idle one 60 s otherwise
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def idle_connections(
    port: int, count: int, connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
) -> None:
    """Up to `count` keep-alive connections (added to `connections`), opened one after another,
    each idle after a request; fewer if the gateway closes a new one."""
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connections.append((reader, writer))
        writer.write(b"GET /keep HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the new one closed, none of the others being idle yet: the cap too
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = re.search(rb"(?i)content-length: (\d+)", head)
        assert length is not None, head
        await reader.readexactly(int(length.group(1)))


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_max_connections_holds_for_every_worker_and_every_reload(
    config: Path, workers: str
) -> None:
    """Past --max-connections a worker closes an idle keep-alive connection for the new one
    (nginx's worker_connections). Three connections: two of them meet in one of two workers."""
    args = ("--workers", workers, "--max-connections", "1")
    async with GatewayProcess(config, *args) as gateway:
        await gateway.ready(workers=int(workers))
        for round_ in ("start", "reload"):
            if round_ == "reload":
                await reloaded(gateway, workers)
            connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
            try:
                await idle_connections(gateway.proxy_port, 3, connections)
                await closed_by_gateway([reader for reader, _ in connections])
            finally:
                for _, writer in connections:
                    writer.close()
        assert "the most this worker takes (--max-connections)" in gateway.log
