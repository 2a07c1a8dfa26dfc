"""bench.wrk: parsing real wrk 4.1 output (captured on the dev machine) and building commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.wrk import WrkError, parse_wrk, time_to_ms, wrk_command

# wrk -t1 -c50 -d3s --latency http://127.0.0.1:18181/x   (nginx, fixed body)
CLEAN = """\
Running 3s test @ http://127.0.0.1:18181/x
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   393.98us  202.18us   5.20ms   91.00%
    Req/Sec    94.91k    13.49k  111.80k    63.33%
  Latency Distribution
     50%  392.00us
     75%  472.00us
     90%  526.00us
     99%    0.91ms
  282890 requests in 3.00s, 42.90MB read
Requests/sec:  94239.65
Transfer/sec:     14.29MB
"""

# wrk -t1 -c50 -d4s --latency http://127.0.0.1:18182/flaky
# (a server answering 503 to every third request and dropping every 997th connection)
WITH_ERRORS = """\
Running 4s test @ http://127.0.0.1:18182/flaky
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   475.87us  384.13us   9.55ms   85.35%
    Req/Sec    48.56k    14.15k   72.21k    72.50%
  Latency Distribution
     50%  419.00us
     75%  607.00us
     90%  837.00us
     99%    1.70ms
  193042 requests in 4.00s, 8.41MB read
  Socket errors: connect 0, read 194, write 0, timeout 0
  Non-2xx or 3xx responses: 64348
Requests/sec:  48229.30
Transfer/sec:      2.10MB
"""


def test_clean_run() -> None:
    result = parse_wrk(CLEAN)
    assert result.requests == 282890
    assert result.duration_s == pytest.approx(3.0)
    assert result.requests_per_sec == pytest.approx(94239.65)
    assert result.p50_ms == pytest.approx(0.392)
    assert result.p99_ms == pytest.approx(0.91)
    assert result.non_2xx == 0
    assert result.socket_errors == 0
    assert result.errors == 0


def test_non_2xx_and_socket_errors_are_counted() -> None:
    result = parse_wrk(WITH_ERRORS)
    assert result.requests == 193042
    assert result.requests_per_sec == pytest.approx(48229.30)
    assert result.p50_ms == pytest.approx(0.419)
    assert result.p99_ms == pytest.approx(1.70)
    assert result.non_2xx == 64348
    assert (result.connect_errors, result.read_errors) == (0, 194)
    assert (result.write_errors, result.timeouts) == (0, 0)
    assert result.socket_errors == 194
    assert result.errors == 64348 + 194
    assert result.to_json()["errors"] == 64348 + 194


def test_every_socket_error_kind() -> None:
    text = CLEAN.replace(
        "Requests/sec:", "  Socket errors: connect 1, read 2, write 3, timeout 4\nRequests/sec:"
    )
    result = parse_wrk(text)
    assert (result.connect_errors, result.read_errors) == (1, 2)
    assert (result.write_errors, result.timeouts) == (3, 4)
    assert result.errors == 10


@pytest.mark.parametrize(
    ("value", "unit", "ms"),
    [("392.00", "us", 0.392), ("0.91", "ms", 0.91), ("2.00", "s", 2000.0), ("1.50", "m", 90_000.0)],
)
def test_time_units(value: str, unit: str, ms: float) -> None:
    assert time_to_ms(value, unit) == pytest.approx(ms)


def test_missing_latency_distribution_is_an_error() -> None:
    without = "\n".join(line for line in CLEAN.splitlines() if "%  " not in line)
    with pytest.raises(WrkError, match="--latency"):
        parse_wrk(without)


def test_garbage_is_an_error() -> None:
    with pytest.raises(WrkError):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_command_with_pinning_script_and_headers() -> None:
    argv = wrk_command(
        "http://127.0.0.1:1/x",
        duration=10,
        connections=50,
        script=Path("tokens.lua"),
        headers={"Authorization": "Bearer abc"},
        prefix=["taskset", "-c", "1"],
    )
    assert argv == [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        "-c50",
        "-d10s",
        "--latency",
        "-s",
        "tokens.lua",
        "-H",
        "Authorization: Bearer abc",
        "http://127.0.0.1:1/x",
    ]
