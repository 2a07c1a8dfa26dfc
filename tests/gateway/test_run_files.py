"""Who removes a `--workers N` run's files when the supervisor was killed: the last marked
worker out, with real processes standing in for its siblings."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tokengate.gateway import run_files
from tokengate.gateway.run_files import leave_orphaned_run, mark_worker, unmark_worker


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A run directory with this process marked in it, and the run's metrics directory."""
    run_dir, metrics = tmp_path / "tokengate-run-x", tmp_path / "tokengate-metrics-x"
    run_dir.mkdir()
    metrics.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics))
    mark_worker(str(run_dir), os.getpid())
    return run_dir, metrics


def _state(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rpartition(b")")[2].split()[0]


def test_the_last_worker_out_removes_the_runs_files(run: tuple[Path, Path]) -> None:
    run_dir, metrics = run
    leave_orphaned_run(str(run_dir))
    assert not run_dir.exists() and not metrics.exists()


def test_a_live_sibling_keeps_them(run: tuple[Path, Path]) -> None:
    run_dir, metrics = run
    sibling = subprocess.Popen(["sleep", "30"])
    try:
        mark_worker(str(run_dir), sibling.pid)
        leave_orphaned_run(str(run_dir))
        assert run_dir.exists() and metrics.exists()
        assert not (run_dir / f"worker-{os.getpid()}").exists()  # its own mark is gone
    finally:
        sibling.kill()
        sibling.wait()


def test_a_sibling_that_exited_unreaped_does_not_count(run: tuple[Path, Path]) -> None:
    """A zombie (exited, its parent gone, not reaped yet) is found by kill(pid, 0) but uses
    the files no more."""
    run_dir, metrics = run
    sibling = subprocess.Popen(["true"])
    try:
        for _ in range(200):
            if _state(sibling.pid) == b"Z":
                break
            time.sleep(0.01)
        assert _state(sibling.pid) == b"Z"
        mark_worker(str(run_dir), sibling.pid)
        assert not run_files._alive(sibling.pid)
        leave_orphaned_run(str(run_dir))
        assert not run_dir.exists() and not metrics.exists()
    finally:
        sibling.wait()


def test_a_reaped_worker_is_unmarked(run: tuple[Path, Path]) -> None:
    run_dir, _ = run
    unmark_worker(str(run_dir), os.getpid())
    unmark_worker(str(run_dir), os.getpid())  # by the worker and by the supervisor: harmless
    assert not list(run_dir.iterdir())
