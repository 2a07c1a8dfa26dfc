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

Auth rows: `needs_issuer=True` makes the run start bench.issuer once (`start_issuer`, pinned with
the load) and hand it to builders as `ctx.issuer` (its URL, tokens, public key); `auth=AuthCheck()`
makes the run call `check_auth` before measuring (valid → 200, none → 401, bad tokens → 401/403)
and refuse to measure a row that fails it. A builder raising `Unavailable` (a peer that is not
installed, like haproxy) skips its row without failing the run. All gateway rows share one
config (`bench_routes`: /public, /auth, /auth-nocache) and differ only in path and headers.

Other knobs: `connections` overrides wrk -c for one row; `check` runs before measuring (like
`auth`, a failing row is not measured); `raw` makes a row that is not a server but a command
run on the system-under-test CPU for each round, printing JSON with a rate (`rsa-sign-raw`:
signatures/s, shown as req/s without latency); `with_rows` pulls companion rows into a
`--rows` selection (identity-token brings aiohttp-sign and rsa-sign-raw, its ratios' denominators).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import yaml

from bench.lua import split_token_header, write_form_post, write_token_cycle
from bench.upstream import BODY

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A process did not come up; the message ends with the tail of its log."""


class Unavailable(StartError):
    """A row cannot run on this machine (a peer is not installed): skipped, not a failure."""


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

    def wait_ready(
        self,
        url: str,
        timeout: float = READY_TIMEOUT_S,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Poll `url` with GET (and `headers`) until it answers 200; StartError if the process
        exits first or the deadline passes."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive:
                raise StartError(
                    f"{self.name} exited with code {self.exit_code()} before it was ready.\n"
                    f"--- {self.log_path} (tail) ---\n{self.tail()}"
                )
            status = http_status(url, headers=headers)
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


# --------------------------------------------------------------------------- issuer

ISSUER_TOKENS = 10_000  # pre-minted tokens for the new-token row (each request a different one)
ISSUER_READY_TIMEOUT_S = 180.0  # minting 10,000 RS256 tokens takes ~10 s on a quiet core


@dataclass(frozen=True, slots=True)
class Issuer:
    """The running bench.issuer: its URL (= the `iss` claim), tokens and key, and process."""

    url: str
    audience: str
    kid: str
    token: str  # one valid token (the first of tokens_file)
    tokens_file: Path  # ISSUER_TOKENS distinct valid tokens, one per line
    public_pem: Path  # the signing key as an SPKI PEM
    bad_tokens: Mapping[str, str]  # name → a correctly signed token that must be refused
    process: ManagedProcess

    def jwks_hits(self) -> int:
        """How many times the JWKS has been fetched so far (issuer GET /stats)."""
        with urllib.request.urlopen(self.url + "/stats", timeout=5) as response:  # noqa: S310
            hits: int = json.load(response)["jwks_hits"]
        return hits

    def sample_tokens(self) -> list[str]:
        """The first and the last token of tokens_file (both must be accepted)."""
        lines = [line for line in self.tokens_file.read_text().splitlines() if line]
        return [lines[0], lines[-1]] if len(lines) > 1 else lines


@contextlib.contextmanager
def start_issuer(workdir: Path, pinning: Pinning, tokens: int = ISSUER_TOKENS) -> Iterator[Issuer]:
    """Start bench.issuer pinned with the load (wrk's CPU), wait until GET /stats answers (its
    files are written by then), yield it, stop it on exit."""
    port = free_port()
    out = workdir / "issuer"
    url = f"http://{LOOPBACK}:{port}"
    argv = [sys.executable, "-m", "bench.issuer", "--listen", f"{LOOPBACK}:{port}"]
    argv += ["--out", str(out), "--tokens", str(tokens)]
    process = ManagedProcess("issuer", pinning.load_prefix() + argv, workdir / "issuer.log")
    with process:
        process.wait_ready(url + "/stats", timeout=ISSUER_READY_TIMEOUT_S)
        meta = json.loads((out / "issuer.json").read_text())
        yield Issuer(
            url=meta["issuer"],
            audience=meta["audience"],
            kid=meta["kid"],
            token=(out / "token").read_text().strip(),
            tokens_file=out / "tokens.txt",
            public_pem=out / "public.pem",
            bad_tokens=json.loads((out / "bad-tokens.json").read_text()),
            process=process,
        )


def tampered_signature(token: str) -> str:
    """`token` with one base64url character in the middle of its signature changed (the last
    character may only carry padding bits, so changing it could leave the signature valid)."""
    head, _, signature = token.rpartition(".")
    i = len(signature) // 2
    swapped = "B" if signature[i] == "A" else "A"
    return f"{head}.{signature[:i]}{swapped}{signature[i + 1 :]}"


def foreign_kid(token: str, kid: str = "bench-unknown-kid") -> str:
    """`token` with its header re-encoded to carry `kid` (payload and signature unchanged)."""
    before, after, rest = split_token_header(token)
    header = (before + kid + after).encode()
    return base64.urlsafe_b64encode(header).rstrip(b"=").decode() + rest


def alg_none(token: str) -> str:
    """`token`'s claims under an `alg: none` header and an empty signature."""
    payload = token.split(".")[1]
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return f"{header}.{payload}."


# --------------------------------------------------------------------------- auth checks


@dataclass(frozen=True, slots=True)
class AuthCheck:
    """What an auth row must enforce; checked before it is measured. `scope_required`: the
    row also demands the "read" scope (a token without it must be refused). `unknown_kid`:
    also send a token with a foreign kid (off for the storm's gateway, whose first miss-driven
    JWKS refetch must happen during the storm, not during the check)."""

    scope_required: bool = False
    unknown_kid: bool = True


@dataclass(frozen=True, slots=True)
class AuthCheckResult:
    problems: list[str]  # empty: the endpoint behaves
    summary: str  # what was checked


def check_auth(url: str, issuer: Issuer, check: AuthCheck) -> AuthCheckResult:
    """Check `url` as an authenticated endpoint: valid tokens must get 200, no token exactly
    401, and every bad token (correctly signed but expired, not yet valid, for another audience
    or issuer, [without the scope]; or with a tampered signature, an unknown kid, alg none)
    a 401 or 403."""
    problems: list[str] = []

    def status(token: str | None) -> int | None:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return http_status(url, timeout=5.0, headers=headers)

    for n, token in enumerate([issuer.token, *issuer.sample_tokens()]):
        if (got := status(token)) != 200:
            problems.append(f"valid token #{n} -> {got} (want 200)")
    if (got := status(None)) != 401:
        problems.append(f"no Authorization header -> {got} (want 401)")
    bad = {
        **issuer.bad_tokens,
        "bad_signature": tampered_signature(issuer.token),
        "unknown_kid": foreign_kid(issuer.token),
        "alg_none": alg_none(issuer.token),
    }
    if not check.scope_required:
        bad.pop("no_read_scope", None)
    if not check.unknown_kid:
        bad.pop("unknown_kid")
    for name, token in bad.items():
        if (got := status(token)) not in (401, 403):
            problems.append(f"{name} token -> {got} (want 401 or 403)")
    summary = "3 valid tokens -> 200, no token -> 401, refused (401/403): " + ", ".join(sorted(bad))
    return AuthCheckResult(problems, summary)


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What a row builder may use: the upstream's URL, a private directory for files, and the
    issuer (started once per run when a selected row has `needs_issuer`)."""

    upstream_url: str
    workdir: Path
    python: str = sys.executable
    issuer: Issuer | None = None

    def need_issuer(self) -> Issuer:
        if self.issuer is None:
            raise StartError("this row needs the bench issuer, and none was started")
        return self.issuer


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
    needs_issuer: bool = False  # the run starts bench.issuer first
    auth: AuthCheck | None = None  # checked before measuring; a row that fails is not measured
    check: Callable[[str], AuthCheckResult] | None = None  # url → problems; like `auth`
    connections: int | None = None  # wrk -c for this row (default: the run's --connections)
    raw: Callable[[float], list[str]] | None = None  # duration → argv printing {"..._per_sec"}
    with_rows: tuple[str, ...] = ()  # rows a --rows selection of this one also runs


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
        # Like the nginx (access_log off) and HAProxy (no log) rows: a Python log line per
        # request costs more than the whole metrics path.
        "--no-access-log",
    ]
    return Launch(
        argv=argv,
        base_url=f"http://{LOOPBACK}:{port}",
        ready_url=f"http://{LOOPBACK}:{status_port}/readyz",
    )


BENCH_SCOPE = "read"  # the scope /auth requires (the issuer's tokens carry "read write")


def bench_routes(issuer: Issuer) -> list[dict[str, Any]]:
    """The routes every gateway row runs with (one config for all, so the rows differ only in
    the path and headers wrk sends): /public without plugins, /auth with openid-connect and
    the verified-token cache (Kong's default), /auth-nocache with `cache_tokens: false`."""

    def oidc(**extra: Any) -> dict[str, Any]:
        config = {"issuer": issuer.url, "audience_required": [issuer.audience], **extra}
        return {"name": "openid-connect", "config": config}

    return [
        {"name": "public", "paths": ["/public"]},
        {"name": "auth", "paths": ["/auth"], "plugins": [oidc(scopes_required=[BENCH_SCOPE])]},
        {"name": "auth-nocache", "paths": ["/auth-nocache"], "plugins": [oidc(cache_tokens=False)]},
    ]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def build_gateway_public(ctx: BenchContext) -> Launch:
    return gateway_launch(ctx, bench_routes(ctx.need_issuer()))


def build_gateway_with_token(ctx: BenchContext) -> Launch:
    """The gateway, and wrk sends the issuer's first token on every request."""
    issuer = ctx.need_issuer()
    launch = gateway_launch(ctx, bench_routes(issuer))
    return dataclasses.replace(launch, headers=bearer(issuer.token))


def build_gateway_new_tokens(ctx: BenchContext) -> Launch:
    """The gateway, and wrk cycles through all the pre-minted tokens (a Lua script)."""
    issuer = ctx.need_issuer()
    launch = gateway_launch(ctx, bench_routes(issuer))
    script = write_token_cycle(ctx.workdir / "token-cycle.lua", issuer.tokens_file)
    return dataclasses.replace(launch, script=script)


def build_naive_proxy(ctx: BenchContext) -> Launch:
    port = free_port()
    argv = [ctx.python, "-m", "bench.peers.naive_proxy", "--listen", f"{LOOPBACK}:{port}"]
    return Launch(
        argv=[*argv, "--upstream", ctx.upstream_url], base_url=f"http://{LOOPBACK}:{port}"
    )


def build_naive_jwt_proxy(ctx: BenchContext) -> Launch:
    issuer = ctx.need_issuer()
    port = free_port()
    argv = [ctx.python, "-m", "bench.peers.naive_jwt_proxy", "--listen", f"{LOOPBACK}:{port}"]
    argv += ["--upstream", ctx.upstream_url, "--issuer", issuer.url, "--audience", issuer.audience]
    return Launch(argv=argv, base_url=f"http://{LOOPBACK}:{port}", headers=bearer(issuer.token))


# --------------------------------------------------------------------------- haproxy

HAPROXY_MIN_VERSION = (2, 5)  # jwt_verify, jwt_*_query and http_auth_bearer


def haproxy_path() -> str | None:
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


def haproxy_version(haproxy: str) -> tuple[int, ...]:
    done = subprocess.run([haproxy, "-v"], capture_output=True, text=True, check=False, timeout=10)
    match = re.search(r"version (\d+)\.(\d+)", done.stdout + done.stderr)
    return (int(match.group(1)), int(match.group(2))) if match else (0,)


def haproxy_cfg(
    *, port: int, upstream_url: str, issuer: str, audience: str, public_pem: Path, scope: str
) -> str:
    """HAProxy as a JWT-checking reverse proxy: one thread, keep-alive both sides, and a 401
    unless the bearer token is RS256, verifies with `public_pem`, and has the right iss, aud
    (a string, or an array whose first entry matches), exp > now and (if present) nbf <= now;
    403 without `scope` among its space-separated scopes (like the gateway's /auth route).
    Every request runs the full signature check: HAProxy has no verified-token cache."""
    upstream = urlsplit(upstream_url)
    unauthorized = (
        "http-request return status 401 content-type application/json "
        'string \'{"message":"Unauthorized"}\' hdr WWW-Authenticate Bearer'
    )
    forbidden = (
        "http-request return status 403 content-type application/json "
        'string \'{"message":"Forbidden"}\''
    )
    return f"""\
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s
    option http-keep-alive
    http-reuse always

frontend bench
    bind {LOOPBACK}:{port}
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
    http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('$.iss')
    http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('$.aud')
    http-request set-var(txn.aud0) var(txn.bearer),jwt_payload_query('$.aud[0]')
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
    http-request set-var(txn.nbf) var(txn.bearer),jwt_payload_query('$.nbf','int')
    http-request set-var(txn.scope) var(txn.bearer),jwt_payload_query('$.scope')
    http-request set-var(txn.now) date()
    acl has_token var(txn.bearer) -m found
    acl alg_ok var(txn.alg) -m str RS256
    acl iss_ok var(txn.iss) -m str {issuer}
    acl aud_ok var(txn.aud) -m str {audience}
    acl aud_ok var(txn.aud0) -m str {audience}
    acl exp_ok var(txn.exp),sub(txn.now) -m int gt 0
    acl has_nbf var(txn.nbf) -m found
    acl nbf_ok var(txn.now),sub(txn.nbf) -m int ge 0
    acl sig_ok var(txn.bearer),jwt_verify(txn.alg,"{public_pem}") -m int 1
    acl scope_ok var(txn.scope) -m reg (^|\\ ){scope}(\\ |$)
    {unauthorized} unless has_token alg_ok iss_ok aud_ok exp_ok sig_ok
    {unauthorized} if has_nbf !nbf_ok
    {forbidden} unless scope_ok
    default_backend upstream

backend upstream
    server upstream {upstream.hostname}:{upstream.port}
"""


def build_haproxy_jwt(ctx: BenchContext) -> Launch:
    haproxy = haproxy_path()
    if haproxy is None:
        raise Unavailable("haproxy is not installed (apt-get install haproxy)")
    if (version := haproxy_version(haproxy)) < HAPROXY_MIN_VERSION:
        found = ".".join(map(str, version))
        raise Unavailable(f"haproxy {found} has no jwt_verify (needs 2.5+)")
    issuer = ctx.need_issuer()
    port = free_port()
    config = ctx.workdir / "haproxy.cfg"
    config.write_text(
        haproxy_cfg(
            port=port,
            upstream_url=ctx.upstream_url,
            issuer=issuer.url,
            audience=issuer.audience,
            public_pem=issuer.public_pem,
            scope=BENCH_SCOPE,
        )
    )
    check = subprocess.run(
        [haproxy, "-c", "-q", "-f", str(config)], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise StartError(f"haproxy -c rejects {config}:\n{check.stderr}{check.stdout}")
    return Launch(
        argv=[haproxy, "-db", "-f", str(config)],
        base_url=f"http://{LOOPBACK}:{port}",
        headers=bearer(issuer.token),
    )


# --------------------------------------------------------------------------- identity server

IDENTITY_SEED = REPO_ROOT / "config" / "identity-seed.yaml"
IDENTITY_ISSUER_ID = "appointmentsdev1"
IDENTITY_TOKEN_PATH = f"/{IDENTITY_ISSUER_ID}/auth/oauth/token"
IDENTITY_CLIENT = "appointments-client"
IDENTITY_SECRET = "local-dev-secret-change-me"  # noqa: S105 (the dev seed's)
IDENTITY_CONNECTIONS = 10  # ~0.5 ms of RSA signing per request: -c10 already saturates a core


def token_form(secret: str = IDENTITY_SECRET) -> str:
    return (
        f"grant_type=client_credentials&client_id={IDENTITY_CLIENT}"
        f"&client_secret={secret}&scope=my-scope"
    )


def build_identity(ctx: BenchContext) -> Launch:
    """`tokengate identity` in memory with the dev seed; wrk POSTs client_credentials forms."""
    executable = tokengate_executable()
    if not executable.exists():
        raise StartError(f"{executable} does not exist (is tokengate installed in the venv?)")
    port = free_port()
    argv = [str(executable), "identity", "--listen", f"{LOOPBACK}:{port}", "--in-memory"]
    argv += ["--admin-token", "bench", "--seed", str(IDENTITY_SEED)]
    base_url = f"http://{LOOPBACK}:{port}"
    script = write_form_post(ctx.workdir / "token-post.lua", token_form())
    return Launch(argv=argv, base_url=base_url, ready_url=base_url + "/healthz", script=script)


def build_aiohttp_sign(ctx: BenchContext) -> Launch:
    """bench/peers/aiohttp_sign.py: the same POST as identity-token, one signature, no grant."""
    port = free_port()
    argv = [ctx.python, "-m", "bench.peers.aiohttp_sign", "--listen", f"{LOOPBACK}:{port}"]
    base_url = f"http://{LOOPBACK}:{port}"
    script = write_form_post(ctx.workdir / "token-post.lua", token_form())
    return Launch(argv=argv, base_url=base_url, ready_url=base_url + "/healthz", script=script)


def check_signing_peer(url: str) -> AuthCheckResult:
    """The peer answers a form POST with 200 and an access_token (it checks no secret)."""
    status, body = post_form(url, token_form())
    try:
        token = json.loads(body).get("access_token") if status == 200 else None
    except (ValueError, AttributeError):
        token = None
    problems = [] if token else [f"POST -> {status} {body[:200]!r} (want 200 + access_token)"]
    return AuthCheckResult(problems, "form POST -> 200 + access_token")


def post_form(url: str, body: str, timeout: float = 5.0) -> tuple[int | None, bytes]:
    """(status, body) of a form POST to `url`; (None, b"") when nothing answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or LOOPBACK, parts.port or 80, timeout=timeout)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        conn.request("POST", parts.path or "/", body=body.encode(), headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def check_token_endpoint(url: str) -> AuthCheckResult:
    """The right client secret → 200 with an access_token; a wrong one → 401."""
    problems: list[str] = []
    status, body = post_form(url, token_form())
    try:
        token = json.loads(body).get("access_token") if status == 200 else None
    except (ValueError, AttributeError):
        token = None
    if status != 200 or not token:
        problems.append(f"client_credentials POST -> {status} {body[:200]!r} (want 200 + token)")
    status, body = post_form(url, token_form("wrong-secret"))
    if status != 401:
        problems.append(f"wrong client secret -> {status} {body[:200]!r} (want 401)")
    return AuthCheckResult(problems, "client_credentials -> 200 + access_token, bad secret -> 401")


def sign_rate_argv(duration: float) -> list[str]:
    return [sys.executable, "-m", "bench.sign_rate", "--duration", f"{duration:g}"]


def run_raw(row: Row, duration: float, pinning: Pinning) -> float:
    """Run a `raw` row's command on the system-under-test CPU; its rate per second."""
    assert row.raw is not None
    argv = pinning.system_prefix() + row.raw(duration)
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=duration + 60, cwd=REPO_ROOT
    )
    if done.returncode != 0:
        raise StartError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {}
    rates = [v for k, v in result.items() if k.endswith("_per_sec")]
    if not rates:
        raise StartError(f"{' '.join(argv)} printed no rate:\n{done.stdout}")
    return float(rates[0])


ROWS: tuple[Row, ...] = (
    Row("upstream", "wrk straight at the upstream (no proxy)", build=None),
    Row(
        "gateway-public",
        "tokengate gateway, route /public without plugins, no Authorization header",
        build=build_gateway_public,
        path="/public/x",
        needs_issuer=True,
    ),
    Row(
        "gateway-public-bearer",
        "tokengate gateway, route /public without plugins, with the same Authorization header "
        "as gateway-auth (same bytes on the wire, no check): the baseline for gateway-auth",
        build=build_gateway_with_token,
        path="/public/x",
        needs_issuer=True,
    ),
    Row(
        "naive-proxy",
        "aiohttp app + one ClientSession + StreamResponse (bench/peers/naive_proxy.py)",
        build=build_naive_proxy,
    ),
    Row(
        "gateway-auth",
        "tokengate gateway, /auth with openid-connect (aud + scope), one valid token repeated: "
        "the verified-token cache hit path",
        build=build_gateway_with_token,
        path="/auth/x",
        needs_issuer=True,
        auth=AuthCheck(scope_required=True),
    ),
    Row(
        "gateway-auth-new-token",
        f"tokengate gateway, /auth-nocache (cache_tokens: false), a different token on every "
        f"request (wrk Lua cycling {ISSUER_TOKENS:,} pre-minted tokens): every request is a "
        "full RS256 signature verification",
        build=build_gateway_new_tokens,
        path="/auth-nocache/x",
        needs_issuer=True,
        auth=AuthCheck(scope_required=False),
    ),
    Row(
        "naive-jwt-proxy",
        "naive-proxy + PyJWT jwt.decode(RS256, aud, iss) on every request, key loaded once "
        "(bench/peers/naive_jwt_proxy.py), one valid token repeated",
        build=build_naive_jwt_proxy,
        needs_issuer=True,
        auth=AuthCheck(scope_required=False),
    ),
    Row(
        "haproxy-jwt",
        "HAProxy jwt_verify RS256 + iss/aud/exp/nbf/scope rules, 1 thread, keep-alive upstream; "
        "one valid token repeated, full signature check on every request (no cache)",
        build=build_haproxy_jwt,
        needs_issuer=True,
        auth=AuthCheck(scope_required=True),
    ),
    Row(
        "identity-token",
        f"tokengate identity (--in-memory, dev seed): wrk POSTs client_credentials to "
        f"{IDENTITY_TOKEN_PATH} (Lua), an RS256 token signed per request; "
        f"wrk -c{IDENTITY_CONNECTIONS} (not the run's -c: each request is ~0.5 ms of signing)",
        build=build_identity,
        path=IDENTITY_TOKEN_PATH,
        check=check_token_endpoint,
        connections=IDENTITY_CONNECTIONS,
        with_rows=("aiohttp-sign", "rsa-sign-raw"),
    ),
    Row(
        "aiohttp-sign",
        "floor: the least an aiohttp token endpoint does (bench/peers/aiohttp_sign.py): the same "
        "POST read, one RS256 signature, a token-sized JSON answer; no client check, claims or "
        f"storage; wrk -c{IDENTITY_CONNECTIONS}",
        build=build_aiohttp_sign,
        path=IDENTITY_TOKEN_PATH,
        check=check_signing_peer,
        connections=IDENTITY_CONNECTIONS,
    ),
    Row(
        "rsa-sign-raw",
        "ceiling: bench/sign_rate.py on the identity server's CPU, cryptography RSA-2048 "
        "PKCS1v15+SHA256 over 300 bytes in a loop; req/s = signatures/s (no HTTP, no latency)",
        build=None,
        raw=sign_rate_argv,
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
        if launch.ready_url is not None:
            process.wait_ready(launch.ready_url)
        else:  # the benchmarked URL itself, with the row's headers (an auth row needs its token)
            process.wait_ready(url, headers={**row.headers, **launch.headers})
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
