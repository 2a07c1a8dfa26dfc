"""Metrics summed over `--workers`: prometheus-client's multiprocess mode.

    share_metrics_between_workers()          # the parent, before it spawns the workers
    registry = scrape_registry(own_registry)  # each worker: what its /metrics serves
    forget_worker(pid)                        # the parent (or supervisor), once a worker exited

Workers share the status port, so a scrape lands on any one of them. Each worker writes its
metrics to its own files in PROMETHEUS_MULTIPROC_DIR, a fresh temporary directory per run
(removed when the parent exits), and the worker that answers a scrape sums every worker's files.
prometheus-client chooses that mode when it is first imported, from the environment: the parent
sets the variable before spawning workers (the `spawn` start method, so each worker imports
afresh) and never writes metrics itself. One worker keeps everything in memory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Final

from prometheus_client import CollectorRegistry, multiprocess, values

ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics_between_workers() -> str:
    """Point workers spawned from now on at a new, empty metrics directory; its path."""
    # Fresh per run: files left by an earlier run would be summed into this one's figures.
    path = tempfile.mkdtemp(prefix="tokengate-metrics-")
    os.environ[ENV] = path
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def remove_shared_metrics() -> None:
    """Remove this run's metrics directory (by a worker whose supervisor died uncleanly)."""
    path = os.environ.get(ENV)
    if path:
        shutil.rmtree(path, ignore_errors=True)


def forget_worker(pid: int | None) -> None:
    """A worker has exited: its share of the live gauges (token cache entries) goes; what its
    counters and histograms counted stays in the sums."""
    path = os.environ.get(ENV)
    if pid is not None and path and os.path.isdir(path):
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def files_per_process() -> bool:
    """Whether this process's metric values live in the shared files (multiprocess mode)."""
    # Asked of prometheus-client itself, not of the environment: the mode was fixed when it was
    # imported, and a variable set later (a test, the parent) does not change it.
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def scrape_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """What /metrics serves: `registry` itself, or in multiprocess mode every worker's files."""
    if not files_per_process():
        return registry
    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed)  # type: ignore[no-untyped-call]
    return summed
