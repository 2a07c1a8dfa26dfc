"""The upstream and the systems under test, as processes that always get stopped.

    pinning = Pinning.detect()
    with start_upstream(workdir, pinning) as upstream:            # nginx, else bench.upstream
        ctx = BenchContext(upstream_url=upstream.url, workdir=workdir)
        with ExitStack() as stack:
            system = start_system(ROWS_BY_NAME["naive-proxy"], ctx, upstream, pinning, stack)
            before = system.cpu_seconds()
            ...                                                 # point wrk at system.url

Every process starts in its own session (process group) with stdout+stderr in a log file, and
is stopped with SIGTERM to the whole group (SIGKILL after 5 s) when its `with` block exits,
including on Ctrl-C or an exception.

Adding a row to the benchmark is one `Row(...)` entry in `ROWS`: a name, a builder that writes
whatever config it needs into `ctx.workdir` and returns the command line (`Launch`), the path
wrk requests, and optionally a wrk Lua script and extra request headers (e.g. a bearer token).
A builder of `None` means "wrk straight at the upstream".
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import yaml

from bench.upstream import BODY

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A process did not come up; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- pinning


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which CPU the system under test gets, and which one wrk and the upstream share."""

    system_cpu: int | None = None
    load_cpu: int | None = None

    @classmethod
    def detect(cls, enabled: bool = True) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls()
        return cls(system_cpu=cpus[0], load_cpu=cpus[1])

    @property
    def enabled(self) -> bool:
        return self.system_cpu is not None

    def system_prefix(self) -> list[str]:
        return _taskset(self.system_cpu)

    def load_prefix(self) -> list[str]:
        return _taskset(self.load_cpu)

    def describe(self) -> str:
        if not self.enabled:
            why = "fewer than 2 usable CPUs" if len(os.sched_getaffinity(0)) < 2 else "no taskset"
            return f"not pinned ({why}, or --no-pin): numbers are noisier"
        return (
            f"system under test pinned to CPU {self.system_cpu}; wrk and the upstream share "
            f"CPU {self.load_cpu} (so the 'upstream' row runs on CPU {self.load_cpu}, next to wrk)"
        )


def _taskset(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


# --------------------------------------------------------------------------- processes


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the `(comm)` one, or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _process_table() -> dict[int, tuple[int, int]]:
    """pid → (ppid, CPU ticks: utime + stime + cutime + cstime) for every process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        # After comm: [0]=state [1]=ppid ... [11]=utime [12]=stime [13]=cutime [14]=cstime
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
        table[int(entry.name)] = (int(fields[1]), ticks)
    return table


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by `root` and all its descendants, including
    children that already exited and were reaped (their time is in the parent's cutime/cstime)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
            todo.extend(children.get(pid, ()))
    return total / _CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs together spent not idle since boot (from the first /proc/stat line:
    user + nice + system + irq + softirq + steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


class ManagedProcess:
    """A subprocess in its own process group, output in `log_path`, stopped on exit."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._cwd,
                env=self._env,
                start_new_session=True,  # own process group: Ctrl-C reaches us, not it
            )

    @property
    def pid(self) -> int:
        assert self._popen is not None, "not started"
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def exit_code(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after STOP_TIMEOUT_S; idempotent."""
        popen = self._popen
        if popen is None:
            return
        if popen.poll() is None:
            _signal_group(popen.pid, signal.SIGTERM)
            try:
                popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(popen.pid, signal.SIGKILL)
                popen.wait(STOP_TIMEOUT_S)
        # Leftovers of the group (workers whose master died) go too.
        _signal_group(popen.pid, signal.SIGKILL)

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"

    def wait_ready(self, url: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll `url` with GET until it answers 200; StartError if the process exits first
        or the deadline passes."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive:
                raise StartError(
                    f"{self.name} exited with code {self.exit_code()} before it was ready.\n"
                    f"--- {self.log_path} (tail) ---\n{self.tail()}"
                )
            status = http_status(url)
            if status == 200:
                return
            last = f"HTTP {status}" if status else "no answer"
            time.sleep(0.05)
        raise StartError(
            f"{self.name} not ready after {timeout:.0f}s (GET {url}: {last}).\n"
            f"--- {self.log_path} (tail) ---\n{self.tail()}"
        )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def http_status(
    url: str, timeout: float = 1.0, headers: Mapping[str, str] | None = None
) -> int | None:
    """Status of `GET url`, or None when nothing answers within `timeout` seconds."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers=dict(headers or {}))
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


# --------------------------------------------------------------------------- upstream


@dataclass(frozen=True, slots=True)
class Upstream:
    """The running upstream: `kind` is "nginx" or "aiohttp"."""

    kind: str
    url: str
    process: ManagedProcess
    version: str


def nginx_path() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def _nginx_build_info(nginx: str) -> tuple[str, tuple[int, ...], str]:
    """(version string, version tuple, configure arguments) from `nginx -V`."""
    done = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False, timeout=10)
    text = done.stderr + done.stdout
    match = re.search(r"nginx/(\d+(?:\.\d+)*)", text)
    version = match.group(1) if match else "0"
    return f"nginx/{version}", tuple(int(p) for p in version.split(".")), text


def nginx_conf(prefix: Path, port: int, configure_args: str = "") -> str:
    """A one-worker nginx answering BODY on every path of 127.0.0.1:port; all its files in
    `prefix`. Temp-path directives are left out for modules the build does not have."""
    temp = [f"    client_body_temp_path {prefix}/client_body;"]
    for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{module}_module" not in configure_args:
            temp.append(f"    {module}_temp_path {prefix}/{module};")
    temp_paths = "\n".join(temp)
    return f"""\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type application/json;
{temp_paths}
    server {{
        listen {LOOPBACK}:{port} backlog=1024;
        location / {{
            return 200 '{BODY.decode()}';
        }}
    }}
}}
"""


def _nginx_argv(nginx: str, prefix: Path, port: int) -> tuple[list[str], str]:
    version, version_tuple, configure_args = _nginx_build_info(nginx)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, port, configure_args))
    argv = [nginx, "-p", f"{prefix}/", "-c", str(conf)]
    if version_tuple >= (1, 19, 5):  # -e: no attempt to open /var/log/nginx/error.log
        argv += ["-e", str(prefix / "error.log")]
    return argv, version


@contextlib.contextmanager
def start_upstream(workdir: Path, pinning: Pinning, kind: str = "auto") -> Iterator[Upstream]:
    """Start the upstream (nginx when available and `kind` allows, else bench.upstream),
    pinned next to wrk; yield it once it answers; stop it on exit."""
    port = free_port()
    nginx = nginx_path() if kind in ("auto", "nginx") else None
    if kind == "nginx" and nginx is None:
        raise StartError("nginx is not installed: apt-get install nginx-light")
    if nginx is not None:
        prefix = workdir / "nginx"
        prefix.mkdir(parents=True, exist_ok=True)
        argv, version = _nginx_argv(nginx, prefix, port)
        kind = "nginx"
    else:
        argv = [sys.executable, "-m", "bench.upstream", "--listen", f"{LOOPBACK}:{port}"]
        kind, version = "aiohttp", _aiohttp_version()
    url = f"http://{LOOPBACK}:{port}"
    process = ManagedProcess(
        f"upstream ({kind})", pinning.load_prefix() + argv, workdir / "upstream.log"
    )
    with process:
        process.wait_ready(url + "/")
        yield Upstream(kind=kind, url=url, process=process, version=version)


def _aiohttp_version() -> str:
    import aiohttp

    return f"aiohttp/{aiohttp.__version__}"


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What a row builder may use: the upstream's URL and a private directory for files."""

    upstream_url: str
    workdir: Path
    python: str = sys.executable


@dataclass(frozen=True, slots=True)
class Launch:
    """How to run one system under test. `base_url` is `http://host:port` of its listener;
    `ready_url` defaults to the benchmarked URL (must answer 200). `headers`/`script` are
    added to the row's static ones (for things only known at run time, like minted tokens)."""

    argv: list[str]
    base_url: str
    ready_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    script: Path | None = None


Builder = Callable[[BenchContext], Launch]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the results table."""

    name: str
    description: str
    build: Builder | None  # None: wrk hits the upstream directly
    path: str = "/x"
    script: Path | None = None  # wrk -s
    headers: Mapping[str, str] = field(default_factory=dict)  # wrk -H


def kong_yaml(upstream_url: str, routes: Sequence[Mapping[str, Any]]) -> str:
    """A decK (`_format_version: "3.0"`) file with one service pointing at the upstream."""
    document = {
        "_format_version": "3.0",
        "services": [{"name": "bench-upstream", "url": upstream_url, "routes": list(routes)}],
    }
    return yaml.safe_dump(document, sort_keys=False)


def tokengate_executable() -> Path:
    """`tokengate` next to the running interpreter (.venv/bin/tokengate)."""
    return Path(sys.executable).parent / "tokengate"


def gateway_launch(ctx: BenchContext, routes: Sequence[Mapping[str, Any]]) -> Launch:
    """The tokengate gateway with the given kong.yaml routes; ready when /readyz says 200."""
    executable = tokengate_executable()
    if not executable.exists():
        raise StartError(f"{executable} does not exist (is tokengate installed in the venv?)")
    config = ctx.workdir / "kong.yaml"
    config.write_text(kong_yaml(ctx.upstream_url, routes))
    port, status_port = free_port(), free_port()
    argv = [
        str(executable),
        "gateway",
        "--config",
        str(config),
        "--listen",
        f"{LOOPBACK}:{port}",
        "--status-listen",
        f"{LOOPBACK}:{status_port}",
    ]
    return Launch(
        argv=argv,
        base_url=f"http://{LOOPBACK}:{port}",
        ready_url=f"http://{LOOPBACK}:{status_port}/readyz",
    )


def build_gateway_public(ctx: BenchContext) -> Launch:
    return gateway_launch(ctx, [{"name": "public", "paths": ["/public"]}])


def build_naive_proxy(ctx: BenchContext) -> Launch:
    port = free_port()
    argv = [ctx.python, "-m", "bench.peers.naive_proxy", "--listen", f"{LOOPBACK}:{port}"]
    return Launch(
        argv=[*argv, "--upstream", ctx.upstream_url], base_url=f"http://{LOOPBACK}:{port}"
    )


ROWS: tuple[Row, ...] = (
    Row("upstream", "wrk straight at the upstream (no proxy)", build=None),
    Row(
        "gateway-public",
        "tokengate gateway, route /public without plugins",
        build=build_gateway_public,
        path="/public/x",
    ),
    Row(
        "naive-proxy",
        "aiohttp app + one ClientSession + StreamResponse (bench/peers/naive_proxy.py)",
        build=build_naive_proxy,
    ),
)
ROWS_BY_NAME: dict[str, Row] = {row.name: row for row in ROWS}


# --------------------------------------------------------------------------- systems


@dataclass(frozen=True, slots=True)
class SystemUnderTest:
    """A running row: where wrk points, with which headers/script, and whose CPU to count."""

    row: Row
    url: str
    headers: Mapping[str, str]
    script: Path | None
    process: ManagedProcess

    def cpu_seconds(self) -> float:
        return self.process.cpu_seconds()


def start_system(
    row: Row, ctx: BenchContext, upstream: Upstream, pinning: Pinning, stack: ExitStack
) -> SystemUnderTest:
    """Start `row`'s process (registered on `stack`, so it is stopped when the stack closes)
    and wait until it answers. Raises StartError with the log tail if it does not come up."""
    if row.build is None:
        return SystemUnderTest(
            row, upstream.url + row.path, row.headers, row.script, upstream.process
        )
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    launch = row.build(ctx)
    process = ManagedProcess(
        row.name,
        pinning.system_prefix() + launch.argv,
        ctx.workdir / f"{row.name}.log",
        env=launch.env,
    )
    stack.enter_context(process)
    url = launch.base_url + row.path
    try:
        process.wait_ready(launch.ready_url or url)
    except StartError:
        process.stop()
        raise
    return SystemUnderTest(
        row=row,
        url=url,
        headers={**row.headers, **launch.headers},
        script=launch.script or row.script,
        process=process,
    )
