"""`make bench`: wrk against the upstream, the gateway and peer proxies, in interleaved rounds.

    .venv/bin/python -m bench.run                      # 3 rounds x 10 s, -c50, every row + storm
    .venv/bin/python -m bench.run --quick              # smoke run: 1 round x 3 s
    .venv/bin/python -m bench.run --rows upstream,naive-proxy --rounds 5 --duration 20
    .venv/bin/python -m bench.run --rows gateway-auth,haproxy-jwt --storm   # rows, then storm
    .venv/bin/python -m bench.run --storm              # only the unknown-kid storm phase
    .venv/bin/python -m bench.run --list               # the rows there are
    .venv/bin/python -m bench.run --install     # as root: apt-get install wrk nginx-light haproxy

Run as root where apt-get is, a run that finds wrk, nginx or haproxy missing installs them
first, as --install does (`make bench` on a fresh machine); otherwise it says how.

Method: one upstream (nginx with a fixed 100-byte body, or bench/upstream.py without nginx);
every selected system under test is started on its own 127.0.0.1 port and warmed up with a
short wrk run; then round 1 runs wrk once against every row, round 2 again, and so on, so that
machine noise hits all rows alike. Each row reports the median over rounds. With two or more
CPUs the system under test is pinned to one CPU and wrk + the upstream to another (taskset).
CPU µs/request is the system-under-test process tree's utime+stime (from /proc) over the run,
divided by the requests wrk completed. Results go to bench/results/<UTC stamp>.json and
bench/results/latest.json. Exit codes: 0 ok, 1 some row failed or had errors, 2 missing
tool or bad arguments, 130 interrupted.

Auth rows: when a selected row needs it (or the storm runs), bench/issuer.py is started once,
pinned with the load; it pre-mints the tokens. Before an auth row is measured, valid tokens must
get 200, no token 401, and bad tokens (expired, wrong aud/iss, tampered signature, unknown kid,
alg none, ...) 401/403; a row failing that is not measured and the run exits 1. A row whose
peer is not installed (haproxy) is skipped with a message, which is not a failure. The
unknown-kid storm (bench/storm.py) runs after all rows in a default run, with --storm alone;
it has rounds of its own (--storm-rounds 10 of --storm-duration 3 s phases: the machine's
speed drifts by tens of percent over the minutes of a run, and short phases side by side see
the same machine), each a valid-alone, a valid-during-storm and a control phase, the alone
phase first or last by turns, and reports the median ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench.report import (
    NOISY_PCT,
    Measurement,
    RowResult,
    document,
    format_ratios,
    format_table,
    utc_stamp,
    write_results,
)
from bench.storm import (
    STORM_MIN_REQUESTS,
    StormResult,
    StormSettings,
    format_storm,
    run_storm,
)
from bench.systems import (
    ISSUER_TOKENS,
    ROWS,
    ROWS_BY_NAME,
    BenchContext,
    Issuer,
    Pinning,
    Row,
    StartError,
    SystemUnderTest,
    Unavailable,
    Upstream,
    check_auth,
    haproxy_path,
    http_status,
    machine_busy_seconds,
    nginx_path,
    run_raw,
    start_issuer,
    start_system,
    start_upstream,
    tree_cpu_seconds,
)
from bench.wrk import INSTALL_HINT, WrkError, WrkResult, run_wrk, wrk_path, wrk_version

APT_PACKAGES = ("wrk", "nginx-light", "haproxy")


@dataclass(frozen=True, slots=True)
class Parameters:
    duration: float
    rounds: int
    connections: int
    warmup: float
    rows: tuple[Row, ...]
    upstream: str
    pin: bool
    storm: bool = False
    storm_connections: int = 20
    storm_rate: float = 1500.0
    storm_rounds: int = 10
    storm_duration: float = 3.0
    storm_min_requests: int = STORM_MIN_REQUESTS

    @property
    def needs_issuer(self) -> bool:
        return self.storm or any(row.needs_issuer for row in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration,
            "rounds": self.rounds,
            "connections": self.connections,
            "threads": 1,
            "warmup_s": self.warmup,
            "rows": [row.name for row in self.rows],
            "upstream": self.upstream,
            "storm": self.storm,
            "storm_connections": self.storm_connections if self.storm else None,
            "storm_rounds": self.storm_rounds if self.storm else None,
            "storm_duration_s": self.storm_duration if self.storm else None,
        }


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (3)")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per row (2)")
    parser.add_argument("--rows", help="comma-separated rows to run (default: all; see --list)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round x 3 s")
    parser.add_argument(
        "--upstream", choices=("auto", "nginx", "aiohttp"), default="auto", help="(auto: nginx)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument(
        "--storm",
        action="store_true",
        help="run the unknown-kid storm phase (alone, or after the --rows given)",
    )
    parser.add_argument(
        "--no-storm", action="store_true", help="leave the storm out of a default run"
    )
    parser.add_argument(
        "--storm-connections",
        type=int,
        help="wrk -c of the storm (default 20; unpaced: --connections)",
    )
    parser.add_argument(
        "--storm-rate",
        type=float,
        default=1500.0,
        help="storm pace asked of wrk, requests/s (default 1500: about 1,000 a second once "
        "latency is added, >= 10,000 over the phase; 0: unpaced)",
    )
    parser.add_argument(
        "--storm-rounds",
        type=int,
        default=10,
        help="storm rounds, each an alone, a storm and a control phase (default 10)",
    )
    parser.add_argument(
        "--storm-duration",
        type=float,
        default=3.0,
        help="seconds per storm phase (default 3: short phases, many rounds, so that the "
        "machine's speed drifting between phases averages out)",
    )
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    parser.add_argument(
        "--install", action="store_true", help=f"apt-get install -y {' '.join(APT_PACKAGES)} (root)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 3.0, 1
        args.storm_duration, args.storm_rounds = 3.0, 1
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1 or args.warmup < 0:
        parser.error("--duration, --rounds and --connections must be positive")
    if args.storm and args.no_storm:
        parser.error("--storm and --no-storm contradict each other")
    if args.storm_connections is None:
        args.storm_connections = 20 if args.storm_rate > 0 else args.connections
    if args.storm_rate < 0:
        parser.error("--storm-rate must be 0 or more")
    if args.storm_connections < 1:
        parser.error("--storm-connections must be positive")
    if args.storm_rounds < 1 or not args.storm_duration > 0:
        parser.error("--storm-rounds and --storm-duration must be positive")
    return args


def select_rows(spec: str | None) -> tuple[Row, ...]:
    """`"a,b"` → those rows (and their `with_rows` companions) in table order; ValueError
    naming unknown ones."""
    if not spec:
        return ROWS
    wanted = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in ROWS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown row(s): {', '.join(unknown)}; known: {', '.join(ROWS_BY_NAME)}")
    wanted += [extra for name in wanted for extra in ROWS_BY_NAME[name].with_rows]
    return tuple(row for row in ROWS if row.name in wanted)


def storm_doc_line() -> str:
    return (
        "unknown-kid storm: /auth valid req/s alone vs during a random-kid flood, JWKS fetches, "
        "storm statuses (default run: at the end)"
    )


def install_tools() -> int:
    """apt-get install the tools (root only); 0 on success."""
    if os.geteuid() != 0:
        print(f"--install needs root: sudo apt-get install -y {' '.join(APT_PACKAGES)}")
        return 2
    if shutil.which("apt-get") is None:
        print(f"no apt-get here; install {', '.join(APT_PACKAGES)} with your package manager")
        return 2
    command = ["apt-get", "install", "-y", *APT_PACKAGES]
    if subprocess.run(command, check=False).returncode != 0:
        print("apt-get install failed; refreshing the package lists and retrying")
        subprocess.run(["apt-get", "update"], check=False)
        if subprocess.run(command, check=False).returncode != 0:
            return 2
    return 0


def _tools_missing() -> bool:
    return wrk_path() is None or nginx_path() is None or haproxy_path() is None


def _can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress and stderr messages interleave
    if args.list:
        for row in ROWS:
            print(f"{row.name:<24} {row.description}")
        print(f"{'(--storm)':<24} {storm_doc_line()}")
        return 0
    if args.install or (_tools_missing() and _can_install()):
        if not args.install:
            print(f"installing what is missing: apt-get install -y {' '.join(APT_PACKAGES)}")
        if (code := install_tools()) != 0:
            return code
    if wrk_path() is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    try:
        # --storm without --rows: the storm alone; a default run: every row, then the storm.
        rows = () if args.storm and not args.rows else select_rows(args.rows)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    params = Parameters(
        duration=args.duration,
        rounds=args.rounds,
        connections=args.connections,
        warmup=args.warmup,
        rows=rows,
        upstream=args.upstream,
        pin=not args.no_pin,
        storm=args.storm or (not args.rows and not args.no_storm),
        storm_connections=args.storm_connections,
        storm_rate=args.storm_rate,
        storm_rounds=args.storm_rounds,
        storm_duration=args.storm_duration,
        storm_min_requests=0 if args.quick else STORM_MIN_REQUESTS,
    )
    # Both end up as KeyboardInterrupt, so the `with` blocks stop every process we started.
    # SIGINT explicitly too: a shell without job control starts background jobs ignoring it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return run(params)
    except KeyboardInterrupt:
        print("\ninterrupted; every process this run started has been stopped", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- orchestration


def run(params: Parameters) -> int:
    pinning = Pinning.detect(params.pin)
    print(_banner(params, pinning))
    storm: StormResult | None = None
    with tempfile.TemporaryDirectory(prefix="tokengate-bench-") as tmp:
        workdir = Path(tmp)
        try:
            with start_upstream(workdir, pinning, params.upstream) as upstream:
                print(f"upstream: {upstream.version} at {upstream.url}")
                with _issuer_if_needed(params, workdir, pinning) as issuer:
                    # The rows' processes stop before the storm, so that the issuer's JWKS
                    # counter during the storm sees the storm's gateway only.
                    with ExitStack() as stack:
                        results = measure_all(params, pinning, upstream, issuer, workdir, stack)
                    if params.storm and issuer is not None:
                        storm = _run_storm(params, pinning, upstream, issuer, workdir)
                machine = machine_info(pinning, upstream)
        except StartError as error:
            print(f"cannot start: {error}", file=sys.stderr)
            return 1
    return finish(results, machine, params, storm)


@contextlib.contextmanager
def _issuer_if_needed(
    params: Parameters, workdir: Path, pinning: Pinning
) -> Iterator[Issuer | None]:
    if not params.needs_issuer:
        yield None
        return
    print(f"issuer: starting bench.issuer (minting {ISSUER_TOKENS:,} RS256 tokens) ...")
    with start_issuer(workdir, pinning) as issuer:
        print(f"issuer: {issuer.url} (kid {issuer.kid}), pid {issuer.process.pid}")
        yield issuer


def _run_storm(
    params: Parameters, pinning: Pinning, upstream: Upstream, issuer: Issuer, workdir: Path
) -> StormResult:
    settings = StormSettings(
        duration=params.storm_duration,
        connections=params.connections,
        storm_connections=params.storm_connections,
        storm_rate=params.storm_rate,
        warmup=params.warmup,
        rounds=params.storm_rounds,
        min_requests=params.storm_min_requests,
    )
    ctx = BenchContext(upstream_url=upstream.url, workdir=workdir / "storm", issuer=issuer)
    return run_storm(settings, ctx, upstream, issuer, pinning)


def measure_all(
    params: Parameters,
    pinning: Pinning,
    upstream: Upstream,
    issuer: Issuer | None,
    workdir: Path,
    stack: ExitStack,
) -> list[RowResult]:
    """Start and warm every row, then the interleaved rounds; return one result per row."""
    results = [RowResult(row.name, row.description) for row in params.rows]
    systems: dict[str, SystemUnderTest] = {}
    raw: dict[str, Row] = {}
    for row, result in zip(params.rows, results, strict=True):
        if row.raw is not None:  # not a server: a command run on the system CPU each round
            raw[row.name] = row
            continue
        system = _start(row, result, upstream, issuer, pinning, workdir, stack)
        if system is not None:
            _warm_up(system, result, params, pinning)
            systems[row.name] = system
    for round_no in range(1, params.rounds + 1 if systems or raw else 1):
        print(f"\n-- round {round_no}/{params.rounds}")
        for result in results:
            if result.name in raw and not result.failure:
                _measure_raw(raw[result.name], result, round_no, params, pinning)
                continue
            system = systems.get(result.name)
            if system is None or result.failure:
                continue
            _measure(system, result, round_no, params, pinning)
    return results


def _start(
    row: Row,
    result: RowResult,
    upstream: Upstream,
    issuer: Issuer | None,
    pinning: Pinning,
    workdir: Path,
    stack: ExitStack,
) -> SystemUnderTest | None:
    ctx = BenchContext(upstream_url=upstream.url, workdir=workdir / row.name, issuer=issuer)
    try:
        system = start_system(row, ctx, upstream, pinning, stack)
    except Unavailable as error:
        result.started = False
        result.skipped = str(error)
        print(f"SKIP {row.name}: {error}")
        return None
    except StartError as error:
        result.started = False
        result.failure = f"did not start: {error}"
        print(f"SKIP {row.name}: {error}", file=sys.stderr)
        return None
    result.url = system.url
    print(f"started {row.name}: {system.url} (pid {system.process.pid})")
    if row.auth is not None:
        if issuer is None:  # a row with `auth` must also have `needs_issuer`
            raise AssertionError(f"{row.name} checks auth but no issuer was started")
        check = check_auth(system.url, issuer, row.auth)
        result.auth_check = check.summary
        if check.problems:
            result.failure = "auth check failed, NOT measured: " + "; ".join(check.problems)
            print(f"!! {row.name}: {result.failure}", file=sys.stderr)
            system.process.stop()
            return None
        print(f"   auth check ok: {check.summary}")
    if row.check is not None:
        check = row.check(system.url)
        result.auth_check = check.summary
        if check.problems:
            result.failure = "start check failed, NOT measured: " + "; ".join(check.problems)
            print(f"!! {row.name}: {result.failure}", file=sys.stderr)
            system.process.stop()
            return None
        print(f"   start check ok: {check.summary}")
    if (
        row.auth is None and row.check is None and system.script is None
    ):  # with a script, wrk's requests may differ from a plain GET
        status = http_status(system.url, timeout=2.0, headers=system.headers)
        if status != 200:
            answer = f"HTTP {status}" if status else "no answer within 2 s"
            print(f"!! {row.name}: probe GET {system.url} -> {answer}; measuring anyway")
    return system


def _warm_up(
    system: SystemUnderTest, result: RowResult, params: Parameters, pinning: Pinning
) -> None:
    if params.warmup <= 0:
        return
    try:
        warm, _ = _wrk(system, params.warmup, params, pinning)
    except WrkError as error:
        print(f"   warm-up of {system.row.name} failed: {error}", file=sys.stderr)
    else:
        note = f"   !! {warm.errors} errors" if warm.errors else ""
        if warm.requests == 0:
            note += "   !! no responses at all"
        print(f"   warmed up {system.row.name}: {warm.requests_per_sec:,.0f} req/s{note}")
    _check_alive(system, result, "warm-up")


def _check_alive(system: SystemUnderTest, result: RowResult, when: str) -> bool:
    """False (and the row marked failed, with the log tail) if the process has exited."""
    if system.process.alive:
        return True
    result.failure = (
        f"exited with code {system.process.exit_code()} during {when}.\n"
        f"--- {system.process.log_path} (tail) ---\n{system.process.tail()}"
    )
    print(f"!! {result.name}: {result.failure}", file=sys.stderr)
    return False


def _wrk(
    system: SystemUnderTest, duration: float, params: Parameters, pinning: Pinning
) -> tuple[WrkResult, str]:
    return run_wrk(
        system.url,
        duration=duration,
        connections=system.row.connections or params.connections,
        script=system.script,
        headers=system.headers,
        prefix=pinning.load_prefix(),
    )


def _measure(
    system: SystemUnderTest, result: RowResult, round_no: int, params: Parameters, pinning: Pinning
) -> None:
    before, ours_before, machine_before = _cpu_counters(system)
    try:
        wrk, raw = _wrk(system, params.duration, params, pinning)
    except WrkError as error:
        if _check_alive(system, result, f"round {round_no}"):
            result.failure = f"wrk failed in round {round_no}: {error}"
            print(f"!! {result.name}: {result.failure}", file=sys.stderr)
        return
    after, ours_after, machine_after = _cpu_counters(system)
    other = (machine_after - machine_before) - (ours_after - ours_before)
    measurement = Measurement(
        round=round_no, wrk=wrk, cpu_seconds=after - before, raw=raw, other_cpu_seconds=other
    )
    result.rounds.append(measurement)
    print(_progress_line(result.name, measurement))
    _check_alive(system, result, f"round {round_no}")


def _measure_raw(
    row: Row, result: RowResult, round_no: int, params: Parameters, pinning: Pinning
) -> None:
    try:
        rate = run_raw(row, params.duration, pinning)
    except (StartError, subprocess.TimeoutExpired, ValueError) as error:
        result.failure = f"round {round_no}: {error}"
        print(f"!! {result.name}: {result.failure}", file=sys.stderr)
        return
    result.samples.append(rate)
    print(f"   {result.name:<22} {rate:>10,.0f} /s   (raw, no HTTP)")


def _cpu_counters(system: SystemUnderTest) -> tuple[float, float, float]:
    """(system-under-test tree, everything this benchmark started, whole machine) CPU seconds.
    Every process we start, wrk included, is a child of this one, so our own tree covers them."""
    return system.cpu_seconds(), tree_cpu_seconds(os.getpid()), machine_busy_seconds()


def _progress_line(name: str, m: Measurement) -> str:
    cpu = m.cpu_us_per_request
    errors = ""
    if m.wrk.errors:
        errors += f"   !! {m.wrk.non_2xx} non-2xx, {m.wrk.socket_errors} socket errors"
    if (other := m.other_cpu_pct) is not None and other > NOISY_PCT:
        errors += f"   (noisy: other processes used {other:.0f}% of a CPU)"
    return (
        f"   {name:<22} {m.wrk.requests_per_sec:>10,.0f} req/s   p50 {m.wrk.p50_ms:6.2f} ms   "
        f"p99 {m.wrk.p99_ms:6.2f} ms   CPU {'-' if cpu is None else f'{cpu:.1f}'} µs/req{errors}"
    )


def finish(
    results: list[RowResult],
    machine: dict[str, Any],
    params: Parameters,
    storm: StormResult | None = None,
) -> int:
    stamp = utc_stamp()
    if results:
        print(
            f"\n== results: median of {params.rounds} round(s) x {params.duration:g} s, "
            f"wrk -t1 -c{params.connections}{_connection_overrides(params)}\n"
        )
        print(format_table(results))
        print()
        print(format_ratios(results))
    if storm is not None:
        print()
        print(format_storm(storm))
    doc = document(
        results,
        machine,
        {**params.to_json(), "pinned": machine["pinned"]},
        stamp,
        storm=storm.to_json() if storm is not None else None,
    )
    paths = write_results(doc)
    print("\nwrote " + ", ".join(_relative(p) for p in paths))
    bad = any(r.failure or r.flagged for r in results)
    if storm is not None and storm.problems():
        bad = True
    return 1 if bad else 0


def _connection_overrides(params: Parameters) -> str:
    """` (identity-token: -c10)` for rows with their own wrk -c; empty when there are none."""
    own = [f"{r.name}: -c{r.connections}" for r in params.rows if r.connections]
    return f" ({', '.join(own)})" if own else ""


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- machine


def _banner(params: Parameters, pinning: Pinning) -> str:
    rows = ", ".join(row.name for row in params.rows) or "(none)"
    storm = (
        f"; then the unknown-kid storm (-c{params.storm_connections}, {params.storm_rounds} "
        f"round(s) of {params.storm_duration:g} s phases)"
        if params.storm
        else ""
    )
    return (
        f"bench: rows {rows}{storm}\n"
        f"       {params.rounds} round(s) x {params.duration:g} s, wrk -t1 -c{params.connections}"
        f" --latency, {params.warmup:g} s warm-up per row; {os.cpu_count()} CPUs\n"
        f"       pinning: {pinning.describe()}"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(pinning: Pinning, upstream: Upstream) -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "wrk": wrk_version(),
        "upstream": {"kind": upstream.kind, "version": upstream.version, "url": upstream.url},
        "pinned": pinning.enabled,
        "pinning": {
            "system_under_test_cpu": pinning.system_cpu,
            "wrk_and_upstream_cpu": pinning.load_cpu,
            "description": pinning.describe(),
        },
    }


if __name__ == "__main__":
    sys.exit(main())
