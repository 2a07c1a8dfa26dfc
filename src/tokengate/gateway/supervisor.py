"""The parent of N worker processes: starts them, restarts one that dies, passes signals on.

    supervisor = Supervisor(4, launch, reload=check_config, stop_timeout=15.0)
    exit_code = supervisor.run()      # returns once every worker has exited

`launch()` returns a new, unstarted process. A worker that dies while the supervisor is not
stopping is logged (exit code or signal) and replaced; one that keeps dying within
`RestartPolicy.min_uptime` of its start waits longer each time, and after
`max_quick_exits` such deaths in a row the supervisor stops the others and exits 1. A worker
that exits with START_FAILED (it could not listen, say) died at start however long that took.

Signals: SIGTERM / SIGINT reach every worker as SIGTERM (each drains and exits), then the
supervisor waits `stop_timeout` seconds before it kills what is left; a second one reaches them
as CUT_SIGNAL and cuts their drain short. (Workers ignore SIGINT, and a repeated SIGTERM: a
Ctrl-C, or a service manager's SIGTERM, may reach the whole process group, and a worker must
count it once.) SIGHUP calls `reload()` and, when that returns True, is passed to every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess

__all__ = [
    "CUT_SIGNAL",
    "HANDLED_SIGNALS",
    "START_FAILED",
    "WORKER_SIGNALS",
    "RestartPolicy",
    "Supervisor",
    "describe_exit",
]

log = logging.getLogger("tokengate.supervisor")

HANDLED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
# Sent to the workers for a second stop signal: cut off requests in progress. Not SIGTERM
# again, which a worker may also get from outside (systemd's KillMode=control-group, `kill
# -TERM -<pgid>`): one stop signal from two senders must stay one graceful stop.
CUT_SIGNAL = signal.SIGUSR1
WORKER_SIGNALS = HANDLED_SIGNALS | {CUT_SIGNAL}
# The exit code of a worker that never served: a quick exit, however long its start took
# (importing and loading kong.yaml can outlast min_uptime on a busy host). nginx's master does
# not respawn a worker that exits with 2 either (ngx_process_get_status).
START_FAILED = 2


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    min_uptime: float = 1.0  # a worker that dies sooner than this counts as a quick exit
    first_delay: float = 0.5  # wait before restarting after a first quick exit; then doubles
    max_delay: float = 8.0
    max_quick_exits: int = 5  # this many in a row, for one worker: give up (exit 1)

    def delay(self, quick_exits: int) -> float:
        """Seconds to wait before a restart; 0 after a worker that had been running a while."""
        if quick_exits == 0:
            return 0.0
        return min(self.first_delay * 2.0 ** (quick_exits - 1), self.max_delay)


class _Slot:
    """One of the N places a worker runs in; keeps its number across restarts."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.process: BaseProcess | None = None
        self.started_at = 0.0
        self.quick_exits = 0
        self.restart: asyncio.TimerHandle | None = None


class Supervisor:
    def __init__(
        self,
        workers: int,
        launch: Callable[[], BaseProcess],
        *,
        reload: Callable[[], bool],
        stop_timeout: float,
        policy: RestartPolicy = RestartPolicy(),
        on_start: Callable[[int | None], None] = lambda pid: None,
        on_exit: Callable[[int | None], None] = lambda pid: None,
    ) -> None:
        self._launch = launch
        self._on_start = on_start  # told each started worker's pid
        self._on_exit = on_exit  # told each exited worker's pid (its live metrics go)
        self._reload = reload
        self._stop_timeout = stop_timeout
        self._policy = policy
        self._slots = [_Slot(number) for number in range(1, workers + 1)]
        self._stopping = False
        self._exit_code = 0
        self._done: asyncio.Future[None] | None = None
        self._kill_timer: asyncio.TimerHandle | None = None

    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self._stop, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self._stop, signal.SIGINT)
        loop.add_signal_handler(signal.SIGHUP, self._hangup)
        # (if the caller blocked them)
        held = signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        try:
            for slot in self._slots:
                self._start(slot)
            await self._done
        finally:
            # Held back again before the handlers go: a signal arriving while the caller still
            # cleans up (the run's temporary files) would otherwise kill it half done.
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)
            if self._kill_timer is not None:
                self._kill_timer.cancel()
        return self._exit_code

    # -- workers ------------------------------------------------------------------------------
    def _start(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        slot.restart = None
        process = self._launch()
        try:
            # A spawn or forkserver start launches multiprocessing's resource tracker if it is
            # not running, and unblocks SIGINT and SIGTERM here as it does so (ensure_running):
            # inside _blocked, the worker would start with them unblocked, and die of a Ctrl-C.
            resource_tracker.ensure_running()
            # The child inherits the blocked set and unblocks it once its own handlers are in
            # place: a SIGHUP or SIGTERM sent while it starts up waits for it, instead of
            # killing it (the default action) or being lost.
            with _blocked(WORKER_SIGNALS):
                process.start()
        except OSError as exc:  # out of processes or memory: retried like a crash
            slot.started_at = loop.time()
            self._replace(slot, f"worker {slot.number} could not be started: {exc.strerror or exc}")
            return
        self._on_start(process.pid)
        slot.process = process
        slot.started_at = loop.time()
        loop.add_reader(process.sentinel, self._exited, slot)
        log.info("worker %d started (pid %s)", slot.number, process.pid)

    def _exited(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        process = slot.process
        assert process is not None
        loop.remove_reader(process.sentinel)
        process.join()  # the sentinel is ready: it has exited, this only reaps it
        code = process.exitcode
        pid = process.pid
        process.close()
        slot.process = None
        self._on_exit(pid)
        how = describe_exit(code)
        if self._stopping:
            log.info("worker %d (pid %s) %s", slot.number, pid, how)
            # Ended by the very signal relayed to stop it, it has stopped: such a signal can
            # land while a worker that already finished is exiting.
            if code != 0 and code not in (-signal.SIGTERM, -CUT_SIGNAL):
                self._exit_code = 1
            self._finish_if_idle()
            return
        self._replace(
            slot, f"worker {slot.number} (pid {pid}) {how}", never_served=code == START_FAILED
        )

    def _replace(self, slot: _Slot, what: str, *, never_served: bool = False) -> None:
        """Schedule a new worker in the slot, or give up on a crash loop."""
        loop = asyncio.get_running_loop()
        if never_served or loop.time() - slot.started_at < self._policy.min_uptime:
            slot.quick_exits += 1
        else:
            slot.quick_exits = 0
        uptime = self._policy.min_uptime
        when = "before it served" if never_served else f"within {uptime:g}s of starting"
        if slot.quick_exits >= self._policy.max_quick_exits:
            log.error("%s; it failed %s %d times in a row: giving up", what, when, slot.quick_exits)
            self._exit_code = 1
            self._stop(signal.SIGTERM, reason="giving up")
            return
        delay = self._policy.delay(slot.quick_exits)
        if delay:
            log.warning("%s %s; restarting in %gs", what, when, delay)
        else:
            log.warning("%s; restarting", what)
        slot.restart = loop.call_later(delay, self._start, slot)

    # -- signals --------------------------------------------------------------------------------
    def _stop(self, sig: signal.Signals, *, reason: str | None = None) -> None:
        if not self._stopping:
            self._stopping = True
            log.info("%s: stopping the workers", reason or sig.name)
            self._kill_timer = asyncio.get_running_loop().call_later(
                self._stop_timeout, self._kill_stragglers
            )
            relay = signal.SIGTERM
        else:
            log.info("%s again: telling the workers to cut off requests in progress", sig.name)
            relay = CUT_SIGNAL
        for slot in self._slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
        self._signal_all(relay)
        self._finish_if_idle()

    def _hangup(self) -> None:
        if self._stopping:
            return
        if self._reload():
            self._signal_all(signal.SIGHUP)

    def _signal_all(self, sig: signal.Signals) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, sig)

    def _kill_stragglers(self) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.pid is not None:
                self._exit_code = 1
                log.error(
                    "worker %d (pid %s) still running %gs after the stop signal: killing it",
                    slot.number,
                    slot.process.pid,
                    self._stop_timeout,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGKILL)

    def _finish_if_idle(self) -> None:
        done = self._done
        if done is not None and not done.done() and all(s.process is None for s in self._slots):
            done.set_result(None)


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@contextlib.contextmanager
def _blocked(signals: frozenset[signal.Signals]) -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
