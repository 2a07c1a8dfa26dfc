"""Running the gateway: one process, or N worker processes sharing the port (SO_REUSEPORT).

    exit_code = run_workers("kong.yaml", config, settings, workers=4)

`cryptography` holds the GIL while it verifies, so cores are used by processes, not threads.
Each worker loads kong.yaml itself (the parsed config does not cross process boundaries).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import multiprocessing
import os
import signal
import sys

from tokengate.gateway.app import GatewayServer
from tokengate.gateway.config import ConfigError, GatewayConfig, load_config
from tokengate.gateway.settings import GatewaySettings
from tokengate.gateway.shared_metrics import forget_worker, share_metrics_between_workers
from tokengate.logs import configure_logging

log = logging.getLogger("tokengate.workers")


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(config: GatewayConfig, settings: GatewaySettings, *, reuse_port: bool) -> None:
    """Serve until SIGINT or SIGTERM, then close listeners and let in-flight requests end."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = GatewayServer(config, settings, reuse_port=reuse_port)
    try:
        await server.start()
        # Everything loaded so far (config, routes, modules) lives as long as the process: keep
        # it out of the collector's scans, which otherwise re-walk it on every full collection.
        gc.freeze()
        log.info(
            "tokengate gateway listening on %s:%d (status %s:%d), %d routes",
            settings.listen[0],
            server.proxy_port,
            settings.status_listen[0],
            server.status_port,
            len(config.routes),
        )
        await stop.wait()
    finally:
        await server.stop()


def _bind_error(exc: OSError, settings: GatewaySettings) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"tokengate: cannot listen: address already in use ({exc.strerror}); "
            f"choose another port with --listen ({settings.listen[0]}:{settings.listen[1]}) "
            f"or --status-listen ({settings.status_listen[0]}:{settings.status_listen[1]})"
        )
    return f"tokengate: cannot listen: {exc.strerror or exc}"


def _run_one(config: GatewayConfig, settings: GatewaySettings, *, reuse_port: bool) -> int:
    install_uvloop()
    try:
        asyncio.run(serve(config, settings, reuse_port=reuse_port))
    except OSError as exc:
        print(_bind_error(exc, settings), file=sys.stderr)
        return 1
    return 0


def _worker_main(config_path: str, settings: GatewaySettings, level: int) -> None:
    configure_logging(level, settings.log_format)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        sys.exit(2)
    sys.exit(_run_one(config, settings, reuse_port=True))


def run_workers(
    config_path: str, config: GatewayConfig, settings: GatewaySettings, *, workers: int
) -> int:
    if workers == 1:
        return _run_one(config, settings, reuse_port=False)
    share_metrics_between_workers()  # before the spawn: workers choose their metrics mode on import
    context = multiprocessing.get_context("spawn")
    level = logging.getLogger().getEffectiveLevel()
    processes = [
        context.Process(target=_worker_main, args=(config_path, settings, level), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for process in processes:
        process.join()
        forget_worker(process.pid)
    codes = [process.exitcode or 0 for process in processes]
    return max(codes) if codes else 0
