"""The temporary files of a `--workers N` run, and who removes them when the supervisor cannot.

The supervisor makes a run directory (the kong.yaml copy workers reload from) and a metrics
directory, and removes both when it exits. Killed outright (SIGKILL, the OOM killer), it cannot;
its workers then drain and exit, and the last of them removes both. The supervisor marks each
worker it starts in the run directory (`worker-<pid>`, as soon as the pid exists, so a worker
still importing counts) and takes the mark away when it reaps it. A worker orphaned by the
supervisor's death takes its own mark away on the way out and, under a lock, removes everything
if no other marked worker is still alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from typing import Final

from tokengate.gateway.shared_metrics import remove_shared_metrics

__all__ = ["leave_orphaned_run", "mark_worker", "unmark_worker"]

_MARK: Final = "worker-"
_LOCK: Final = ".cleanup-lock"


def mark_worker(run_dir: str, pid: int | None) -> None:
    """Mark `pid` as one of the run's live workers (by the supervisor, once it has started)."""
    if pid is not None:
        with contextlib.suppress(OSError):  # the files are gone already: nothing left to share
            open(os.path.join(run_dir, f"{_MARK}{pid}"), "a").close()


def unmark_worker(run_dir: str, pid: int | None) -> None:
    """Take `pid`'s mark away (by the supervisor, once it has reaped that worker)."""
    if pid is not None:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(run_dir, f"{_MARK}{pid}"))


def leave_orphaned_run(run_dir: str) -> None:
    """This worker's supervisor died uncleanly: take its mark away, and remove the run's files
    if no other live worker is marked."""
    try:
        with open(os.path.join(run_dir, _LOCK), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one worker at a time decides
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(run_dir, f"{_MARK}{os.getpid()}"))
            if any(_alive(pid) for pid in _marked_pids(run_dir)):
                return  # a sibling still runs: the last one out removes the files
            remove_shared_metrics()
            shutil.rmtree(run_dir, ignore_errors=True)
    except OSError:
        return  # removed already, by the last sibling out


def _marked_pids(run_dir: str) -> list[int]:
    pids = (name.removeprefix(_MARK) for name in os.listdir(run_dir) if name.startswith(_MARK))
    return [int(pid) for pid in pids if pid.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process under a reused pid: not a worker of ours
        return False
    # A worker that has exited but is not reaped yet (its parent gone, init slow to) is a
    # zombie: kill(pid, 0) still finds it, but it uses the files no more.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc to ask: count it, and leave the files rather than pull them
