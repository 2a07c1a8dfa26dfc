"""The temporary files of a `--workers N` run, and who removes them when the supervisor cannot.

The supervisor makes a run directory (the kong.yaml copy workers reload from) and a metrics
directory, and removes both when it exits. Killed outright (SIGKILL, the OOM killer), it cannot;
its workers then drain and exit, and the last of them removes both. Each worker marks itself
in the run directory while it runs (`worker-<pid>`); on the way out it takes its mark away and,
under a lock, removes everything if no other marked worker is still alive. A worker that is
itself killed leaves its mark, but its pid is gone, so it does not count.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from typing import Final

from tokengate.gateway.shared_metrics import remove_shared_metrics

__all__ = ["mark_worker", "unmark_worker"]

_MARK: Final = "worker-"
_LOCK: Final = ".cleanup-lock"


def mark_worker(run_dir: str) -> None:
    """Mark this process as one of the run's live workers."""
    with contextlib.suppress(OSError):  # the files are gone already: nothing left to share
        open(os.path.join(run_dir, f"{_MARK}{os.getpid()}"), "x").close()


def unmark_worker(run_dir: str, *, orphaned: bool) -> None:
    """Take this worker's mark away; `orphaned` (the supervisor died uncleanly): remove the
    run's files too if no other live worker is marked."""
    mark = os.path.join(run_dir, f"{_MARK}{os.getpid()}")
    if not orphaned:
        with contextlib.suppress(OSError):
            os.unlink(mark)
        return
    try:
        with open(os.path.join(run_dir, _LOCK), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one worker at a time decides
            with contextlib.suppress(FileNotFoundError):
                os.unlink(mark)
            if any(_alive(pid) for pid in _marked_pids(run_dir)):
                return  # a sibling still drains: the last one out removes the files
            remove_shared_metrics()
            shutil.rmtree(run_dir, ignore_errors=True)
    except OSError:
        return  # removed already, by the last sibling out


def _marked_pids(run_dir: str) -> list[int]:
    names = os.listdir(run_dir)
    return [
        int(n[len(_MARK) :]) for n in names if n.startswith(_MARK) and n[len(_MARK) :].isdigit()
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process under a reused pid: not a worker of ours
        return False
    return True
