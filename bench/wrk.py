"""Running wrk and reading its report.

    result = run_wrk("http://127.0.0.1:8000/x", duration=10, connections=50)
    print(result.requests_per_sec, result.p50_ms, result.p99_ms, result.errors)

    result = parse_wrk(captured_stdout)       # the parser alone, for tests and old logs

Always runs `wrk -t1 -c<connections> -d<duration>s --latency`, optionally with `-s script.lua`
and `-H "Name: value"` headers, and prefixed by a `taskset -c N` when the caller pins it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "wrk is not installed: apt-get install wrk"

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([0-9.]+)(us|ms|s|m|h)"
_REQUESTS = re.compile(r"^\s*(\d+) requests in " + _TIME + r",", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_PERCENTILE = re.compile(r"^\s+([0-9.]+)%\s+" + _TIME + r"\s*$", re.M)
_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.M)


class WrkError(RuntimeError):
    """wrk failed to run or printed something the parser does not understand."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run. Latencies in milliseconds; `requests` counts every completed response."""

    requests: int
    duration_s: float
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def errors(self) -> int:
        """Everything that was not a clean 2xx/3xx answer."""
        return self.non_2xx + self.socket_errors

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "socket_errors": self.socket_errors, "errors": self.errors}


def time_to_ms(value: str, unit: str) -> float:
    """wrk prints times as `483.61us`, `1.08ms`, `2.00s`, `1.00m`; return milliseconds."""
    return float(value) * _TIME_UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse the stdout of `wrk --latency`. Raises WrkError when a required line is missing."""
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    percentiles = {float(p): time_to_ms(v, u) for p, v, u in _PERCENTILE.findall(text)}
    if requests is None or rps is None:
        raise WrkError(f"no request count in wrk output:\n{text}")
    if 50.0 not in percentiles or 99.0 not in percentiles:
        raise WrkError(f"no latency distribution in wrk output (was --latency given?):\n{text}")
    socket = _SOCKET_ERRORS.search(text)
    connect, read, write, timeout = (int(g) for g in socket.groups()) if socket else (0, 0, 0, 0)
    non_2xx = _NON_2XX.search(text)
    return WrkResult(
        requests=int(requests.group(1)),
        duration_s=time_to_ms(requests.group(2), requests.group(3)) / 1000.0,
        requests_per_sec=float(rps.group(1)),
        p50_ms=percentiles[50.0],
        p99_ms=percentiles[99.0],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
    )


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    """`wrk -v` prints its version line (and usage) and exits 1; return the first line."""
    path = wrk_path()
    if path is None:
        return "not installed"
    done = subprocess.run([path, "-v"], capture_output=True, text=True, check=False, timeout=10)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def wrk_command(
    url: str,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    script: Path | None = None,
    headers: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> list[str]:
    argv = [*prefix, "wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    return [*argv, url]


def run_wrk(
    url: str,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    script: Path | None = None,
    headers: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> tuple[WrkResult, str]:
    """Run wrk against `url`; return the parsed result and wrk's raw stdout."""
    argv = wrk_command(
        url,
        duration=duration,
        connections=connections,
        threads=threads,
        script=script,
        headers=headers,
        prefix=prefix,
    )
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=duration + 60)
    if done.returncode != 0:
        raise WrkError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
    return parse_wrk(done.stdout), done.stdout
