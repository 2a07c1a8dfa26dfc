"""Running the gateway: one process, or a supervisor and N worker processes sharing the port.

    exit_code = run_workers("kong.yaml", config, settings, workers=4)

Signals, to the one process or to the supervisor (which passes them on to every worker):

    SIGTERM, SIGINT   drain: stop accepting, let requests in progress finish within
                      settings.shutdown_timeout (then cut them off), exit 0; a second one
                      during the drain cuts it short
    SIGHUP            read kong.yaml again; an invalid file is logged, the running config kept

`cryptography` holds the GIL while it verifies, so cores are used by processes, not threads
(SO_REUSEPORT spreads connections over them). With one worker there is no supervisor: the
process serves by itself. With more, the supervisor checks kong.yaml on SIGHUP and keeps a copy
of the last valid text; workers start from that copy and reload from it, never from the file.
So a bad edit is reported once and reaches no worker, a SIGHUP that a starting worker handles
late still gives it what its siblings have, and a worker restarted after a crash serves the
same config as the others even if the file has since changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from tokengate import eventloop
from tokengate.addresses import show
from tokengate.gateway.app import GatewayServer, ListenError
from tokengate.gateway.config import (
    ConfigError,
    GatewayConfig,
    load_config,
    parse_config,
    read_config_text,
)
from tokengate.gateway.reload import Reloader
from tokengate.gateway.run_files import leave_orphaned_run, mark_worker, unmark_worker
from tokengate.gateway.settings import GatewaySettings
from tokengate.gateway.shared_metrics import forget_worker, share_metrics_between_workers
from tokengate.gateway.supervisor import (
    CUT_SIGNAL,
    HANDLED_SIGNALS,
    START_FAILED,
    WORKER_SIGNALS,
    Supervisor,
)
from tokengate.listening import bind_failure, chosen_by
from tokengate.logs import configure_logging
from tokengate.shutdown import Stopper

log = logging.getLogger("tokengate.workers")

WORKER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
# A worker that drains for the whole grace period still needs time to close and exit.
_STOP_MARGIN = 5.0


async def serve(
    config_path: str,
    config: GatewayConfig,
    settings: GatewaySettings,
    *,
    reuse_port: bool,
    parent_sentinel: int | None = None,
    load: Callable[[], GatewayConfig] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM (or the supervisor's death), then drain and close;
    SIGHUP reloads the config with `load` (default: kong.yaml at `config_path`)."""
    loop = asyncio.get_running_loop()
    server = GatewayServer(config, settings, reuse_port=reuse_port)
    if load is None:
        load = functools.partial(load_config, config_path, ignored_plugins=settings.ignored_plugins)
    reloader = Reloader(server, config_path, load=load)

    def on_first_stop(sig: signal.Signals) -> None:
        grace = settings.shutdown_timeout
        log.info("%s: draining (up to %gs for requests in progress)", sig.name, grace)

    # The first stop signal drains; a later one cuts the requests still running.
    stopper = Stopper(cut=server.cut_short, log=log, on_first=on_first_stop)
    stop = stopper.requested

    def on_parent_gone() -> None:
        # A worker must not outlive its supervisor (nothing would restart or stop it).
        assert parent_sentinel is not None
        loop.remove_reader(parent_sentinel)
        log.warning("the supervisor has gone: draining")
        stop.set()

    if parent_sentinel is None:
        stopper.install(loop)
    else:
        # A supervised worker counts on its supervisor: a Ctrl-C (or a service manager's
        # SIGTERM) may reach the whole process group, and the supervisor relays it as one
        # SIGTERM; a second one comes as CUT_SIGNAL.
        stopper.install(loop, [signal.SIGTERM], again_cuts=False)
        loop.add_signal_handler(CUT_SIGNAL, stopper.cut_now, CUT_SIGNAL)
        loop.add_signal_handler(signal.SIGINT, _ignore)
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    if parent_sentinel is not None:
        loop.add_reader(parent_sentinel, on_parent_gone)
    # Blocked until now (by run_workers, or the supervisor while it started us): signals sent
    # during start-up were held back, and are handled from here on.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)
    try:
        await server.start()  # a listener that cannot bind raises ListenError, said by _run_one
        # Everything loaded so far (config, routes, modules) lives as long as the process: keep
        # it out of the collector's scans, which otherwise re-walk it on every full collection.
        # (Those of them in reference cycles outlive a reload: one config's worth, once.)
        gc.freeze()
        log.info(
            "tokengate gateway listening on %s (status %s), %d routes",
            show((settings.listen[0], server.proxy_port)),  # [::1]:8000, as nginx writes it
            show((settings.status_listen[0], server.status_port)),
            len(config.routes),
        )
        reloader.start()
        await stop.wait()
    finally:
        await reloader.close()
        await server.stop()
        # The process only exits from here: a late signal (the supervisor relays a second
        # Ctrl-C to every worker, finished or not) must not turn a clean exit into a death.
        # Ignored process-wide (any thread may take a signal), and held back in this thread
        # for the instant the default actions are back in place.
        signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
        for sig in WORKER_SIGNALS:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        if parent_sentinel is not None:
            loop.remove_reader(parent_sentinel)
    log.info("stopped")


def _ignore() -> None:
    pass


def _bind_error(exc: ListenError, settings: GatewaySettings) -> str:
    """The one listener that could not bind, by its address and the option that chose it."""
    address = settings.listen if exc.flag == "--listen" else settings.status_listen
    return (
        f"tokengate gateway: cannot listen on {show(address)}: {bind_failure(exc.cause)}; "
        f"choose another address with {chosen_by(exc.flag)}"
    )


def _run_one(
    config_path: str,
    config: GatewayConfig,
    settings: GatewaySettings,
    *,
    reuse_port: bool,
    parent_sentinel: int | None = None,
    load: Callable[[], GatewayConfig] | None = None,
) -> int:
    try:
        eventloop.run(
            serve(
                config_path,
                config,
                settings,
                reuse_port=reuse_port,
                parent_sentinel=parent_sentinel,
                load=load,
            )
        )
    except ListenError as exc:
        print(_bind_error(exc, settings), file=sys.stderr)
        return 1
    return 0


def _worker_main(
    config_path: str, snapshot: str, config_text: str, settings: GatewaySettings, level: int
) -> None:
    configure_logging(level, settings.log_format, text_format=WORKER_LOG_FORMAT)
    try:
        config = parse_config(config_text, config_path, ignored_plugins=settings.ignored_plugins)
    except ConfigError as exc:  # the supervisor validated this text: not expected
        print("\n".join(exc.errors), file=sys.stderr)
        sys.exit(START_FAILED)
    parent = multiprocessing.parent_process()
    sentinel = parent.sentinel if parent is not None else None
    load = functools.partial(_load_snapshot, snapshot, config_path, settings.ignored_plugins)
    code = _run_one(
        config_path, config, settings, reuse_port=True, parent_sentinel=sentinel, load=load
    )
    if parent is not None and not parent.is_alive():
        # The supervisor died without its clean-up (SIGKILL, the OOM killer): the last worker
        # out removes the run's files.
        leave_orphaned_run(os.path.dirname(snapshot))
    else:  # the supervisor unmarks it too when it reaps it, unless it dies before
        unmark_worker(os.path.dirname(snapshot), os.getpid())
    sys.exit(START_FAILED if code else 0)  # _run_one fails only if it could not listen


def _load_snapshot(snapshot: str, config_path: str, ignored: frozenset[str]) -> GatewayConfig:
    # Errors name the user's file: the snapshot is a copy of it. Its warnings were said by the
    # supervisor as it checked the file, once: not again by every worker that reloads the copy.
    config = parse_config(read_config_text(snapshot), config_path, ignored_plugins=ignored)
    return dataclasses.replace(config, warnings=())


class _Snapshot:
    """The last valid kong.yaml text: kept in memory for workers yet to start, and in a
    private file that running workers read on SIGHUP."""

    def __init__(self, path: str, text: str, directory: str, ignored: frozenset[str]) -> None:
        self.path = path
        self.ignored = ignored
        self.text = text
        self.file = os.path.join(directory, "kong.yaml")
        self._write(text)

    def reload(self) -> bool:
        """SIGHUP at the supervisor: check the file once, here, so that a bad edit is
        reported once (not by every worker) and no worker is asked to load it."""
        try:
            text = read_config_text(self.path)
            config = parse_config(text, self.path, ignored_plugins=self.ignored)
        except ConfigError as exc:
            log.error(
                "%s not reloaded (%d error(s)); workers keep their config:",
                self.path,
                len(exc.errors),
            )
            for line in exc.errors:
                log.error("%s", line)
            return False
        for line in config.warnings:
            log.warning("%s", line)
        try:
            self._write(text)
        except OSError as exc:  # e.g. a /tmp cleaner removed the run's directory
            log.error(
                "%s not reloaded: cannot write the workers' copy %s: %s; workers keep their config",
                self.path,
                self.file,
                exc.strerror or exc,
            )
            return False
        self.text = text
        log.info(
            "%s is valid (%d services, %d routes): telling the workers to reload",
            self.path,
            len(config.services),
            len(config.routes),
        )
        return True

    def _write(self, text: str) -> None:
        # Written aside and renamed: a worker reads the old copy or the new one, never half.
        partial = self.file + ".new"
        with open(partial, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, self.file)


def _check_bindable(settings: GatewaySettings) -> str | None:
    """Bind (without listening) each address, so that a port another program holds is one
    clear error now, not a crash loop of workers. Without SO_REUSEPORT, which the workers set to
    share the port among themselves: with it, a port another program holds with SO_REUSEPORT
    too (an earlier tokengate still running) would pass, and be shared with that program."""
    for flag, (host, port) in (
        ("--listen", settings.listen),
        ("--status-listen", settings.status_listen),
    ):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            for family, kind, proto, _, address in infos:
                with socket.socket(family, kind, proto) as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        # As the workers' listeners set it (asyncio, uvloop): [::] is IPv6
                        # only, and a program on the port's IPv4 side does not make it taken.
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind(address)
        except OSError as exc:
            return _bind_error(ListenError(flag, exc), settings)
    return None


def run_workers(
    config_path: str, config: GatewayConfig, settings: GatewaySettings, *, workers: int
) -> int:
    # Held back until serve() or the supervisor has its handlers in place (a SIGHUP would
    # otherwise kill a process that is still starting).
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    if workers == 1:
        return _run_one(config_path, config, settings, reuse_port=False)
    # The text the CLI read and checked, not a second read: the workers serve what was
    # validated, and `--config <(...)` (a pipe) has nothing more to give.
    text = config.text
    problem = _check_bindable(settings)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    try:
        # Before the spawn: workers choose their metrics mode on import.
        share_metrics_between_workers()
        directory = tempfile.mkdtemp(prefix="tokengate-run-")
        try:
            snapshot = _Snapshot(config_path, text, directory, settings.ignored_plugins)
        except OSError:  # a full disk: the directory was made, the file cannot be written
            shutil.rmtree(directory, ignore_errors=True)
            raise
    except OSError as exc:  # a read-only root filesystem, a TMPDIR that is not there
        print(
            f"tokengate: --workers {workers} needs a writable temporary directory (TMPDIR, "
            f"else /tmp) for the workers' shared metrics and config snapshot: "
            f"{exc.strerror or exc}; mount one (in Kubernetes, an emptyDir at /tmp) or run "
            "--workers 1",
            file=sys.stderr,
        )
        return 1
    try:
        return _supervise(config_path, snapshot, settings, workers)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _supervise(
    config_path: str, snapshot: _Snapshot, settings: GatewaySettings, workers: int
) -> int:
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()

    def launch() -> BaseProcess:
        return context.Process(
            target=_worker_main,
            args=(config_path, snapshot.file, snapshot.text, settings, level),
            name="tokengate-worker",
        )

    run_dir = os.path.dirname(snapshot.file)

    def on_exit(pid: int | None) -> None:
        forget_worker(pid)
        unmark_worker(run_dir, pid)

    supervisor = Supervisor(
        workers,
        launch,
        reload=snapshot.reload,
        stop_timeout=settings.shutdown_timeout + _STOP_MARGIN,
        on_start=functools.partial(mark_worker, run_dir),
        on_exit=on_exit,
    )
    return supervisor.run()
