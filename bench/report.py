"""Results of a benchmark run: per-round figures, medians, the table, ratios, JSON and a chart.

    result = RowResult("naive-proxy", "aiohttp proxy", url)
    result.rounds.append(Measurement(round=1, wrk=wrk_result, cpu_seconds=1.4, raw=stdout))
    print(format_table([result]))
    print(format_ratios([result]))
    paths = write_results(document(results, machine, parameters))   # bench/results/*.json

A row whose wrk runs saw non-2xx answers or socket errors is flagged with `!!` in the table and
listed in a warning under it: its req/s are not comparable with the clean rows.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.wrk import WrkResult

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured wrk run of one row, with the CPU its process tree used meanwhile."""

    round: int
    wrk: WrkResult
    cpu_seconds: float
    raw: str = ""
    # CPU seconds that processes this benchmark did not start used during the run: noise.
    other_cpu_seconds: float | None = None

    @property
    def other_cpu_pct(self) -> float | None:
        """`other_cpu_seconds` as a percentage of one CPU over the run."""
        if self.other_cpu_seconds is None or not self.wrk.duration_s:
            return None
        return max(0.0, self.other_cpu_seconds) * 100 / self.wrk.duration_s

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.wrk.requests == 0:
            return None
        return self.cpu_seconds * 1e6 / self.wrk.requests

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            **self.wrk.to_json(),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "cpu_us_per_request": _rounded(self.cpu_us_per_request),
            "other_cpu_seconds": _rounded(self.other_cpu_seconds),
            "wrk_output": self.raw,
        }


@dataclass(slots=True)
class RowResult:
    """Everything measured for one row; `failure` says why it was skipped or stopped early."""

    name: str
    description: str
    url: str = ""
    rounds: list[Measurement] = field(default_factory=list)
    failure: str | None = None
    started: bool = True
    skipped: str | None = None  # why the row cannot run here (not a failure: a missing peer)
    auth_check: str | None = None  # what the pre-measurement auth check verified
    samples: list[float] = field(default_factory=list)  # a raw row's rate per round (no wrk)

    def median(self, metric: str) -> float | None:
        """Median over rounds of `requests_per_sec`, `p50_ms`, `p99_ms` or
        `cpu_us_per_request`; None when there is no round with that figure."""
        if self.samples and metric == "requests_per_sec":
            return statistics.median(self.samples)
        values = [v for m in self.rounds if (v := _metric(m, metric)) is not None]
        return statistics.median(values) if values else None

    def spread_pct(self) -> float | None:
        """(max - min) / median of req/s over rounds, in percent."""
        rps = self.samples or [m.wrk.requests_per_sec for m in self.rounds]
        if len(rps) < 2 or not statistics.median(rps):
            return None
        return (max(rps) - min(rps)) * 100 / statistics.median(rps)

    @property
    def non_2xx(self) -> int:
        return sum(m.wrk.non_2xx for m in self.rounds)

    @property
    def socket_errors(self) -> int:
        return sum(m.wrk.socket_errors for m in self.rounds)

    @property
    def silent_rounds(self) -> int:
        """Rounds in which wrk got no response at all (a hung server reports no errors)."""
        return sum(1 for m in self.rounds if m.wrk.requests == 0)

    @property
    def flagged(self) -> bool:
        return self.non_2xx > 0 or self.socket_errors > 0 or self.silent_rounds > 0

    def status(self) -> str:
        if self.skipped or not self.started:
            return "skipped"
        if self.failure:
            return "failed"
        return "errors" if self.flagged else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "url": self.url,
            "status": self.status(),
            "failure": self.failure,
            "skipped": self.skipped,
            "auth_check": self.auth_check,
            "median": {metric: _rounded(self.median(metric)) for metric in METRICS},
            "spread_pct": _rounded(self.spread_pct()),
            "non_2xx": self.non_2xx,
            "socket_errors": self.socket_errors,
            "silent_rounds": self.silent_rounds,
            "rounds": [m.to_json() for m in self.rounds],
            **({"raw_per_sec": [round(v, 1) for v in self.samples]} if self.samples else {}),
        }


METRICS = ("requests_per_sec", "p50_ms", "p99_ms", "cpu_us_per_request", "other_cpu_pct")
NOISY_PCT = 10.0  # other processes using more than this % of a CPU during a run: noisy


def _metric(measurement: Measurement, metric: str) -> float | None:
    if metric == "cpu_us_per_request":
        return measurement.cpu_us_per_request
    if metric == "other_cpu_pct":
        return measurement.other_cpu_pct
    value: float = getattr(measurement.wrk, metric)
    return value


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- ratios


@dataclass(frozen=True, slots=True)
class Ratio:
    """`numerator` row's metric divided by `denominator` row's metric."""

    label: str
    numerator: str
    denominator: str
    metric: str
    meaning: str


RATIOS: tuple[Ratio, ...] = (
    Ratio(
        "gateway-public / naive-proxy req/s",
        "gateway-public",
        "naive-proxy",
        "requests_per_sec",
        "how many times the naive proxy's throughput the gateway reaches",
    ),
    Ratio(
        "naive-proxy p99 / gateway-public p99",
        "naive-proxy",
        "gateway-public",
        "p99_ms",
        "> 1 means the gateway's tail latency is lower",
    ),
    Ratio(
        "gateway-public / upstream req/s",
        "gateway-public",
        "upstream",
        "requests_per_sec",
        "share of the bare upstream's throughput left after the gateway hop",
    ),
    Ratio(
        "gateway-auth / gateway-public req/s",
        "gateway-auth",
        "gateway-public",
        "requests_per_sec",
        "(d)/(b): throughput kept with auth on (cached token) vs a public route, no header",
    ),
    Ratio(
        "gateway-auth / gateway-public-bearer req/s",
        "gateway-auth",
        "gateway-public-bearer",
        "requests_per_sec",
        "(d)/(d0): the cost of the cached check alone (same bytes on the wire)",
    ),
    Ratio(
        "gateway-auth / haproxy-jwt req/s",
        "gateway-auth",
        "haproxy-jwt",
        "requests_per_sec",
        "(d)/(g): cached-token gateway vs HAProxy verifying every request",
    ),
    Ratio(
        "gateway-auth-new-token / naive-proxy req/s",
        "gateway-auth-new-token",
        "naive-proxy",
        "requests_per_sec",
        "(e)/(c): gateway verifying every request vs the naive proxy checking nothing",
    ),
    Ratio(
        "gateway-auth-new-token / naive-jwt-proxy req/s",
        "gateway-auth-new-token",
        "naive-jwt-proxy",
        "requests_per_sec",
        "(e)/(f): full verification on every request, gateway vs naive proxy + PyJWT",
    ),
    Ratio(
        "identity-token / rsa-sign-raw req/s",
        "identity-token",
        "rsa-sign-raw",
        "requests_per_sec",
        "(target ≥ 0.8): token endpoint vs bare RS256 signatures/s on the same CPU",
    ),
    Ratio(
        "aiohttp-sign / rsa-sign-raw req/s",
        "aiohttp-sign",
        "rsa-sign-raw",
        "requests_per_sec",
        "the most any aiohttp token endpoint reaches of that ceiling (a POST, a signature)",
    ),
    Ratio(
        "identity-token / aiohttp-sign req/s",
        "identity-token",
        "aiohttp-sign",
        "requests_per_sec",
        "what tokengate's grant (client check, claims, record) leaves of that floor",
    ),
)


def ratio_values(results: list[RowResult]) -> dict[str, float | None]:
    by_name = {r.name: r for r in results}
    values: dict[str, float | None] = {}
    for ratio in RATIOS:
        top, bottom = by_name.get(ratio.numerator), by_name.get(ratio.denominator)
        a = top.median(ratio.metric) if top else None
        b = bottom.median(ratio.metric) if bottom else None
        values[ratio.label] = a / b if a is not None and b else None
    return values


def format_ratios(results: list[RowResult]) -> str:
    values = ratio_values(results)
    suspect = {r.name for r in results if r.flagged or r.failure}
    lines = ["Ratios (medians):"]
    width = max(len(ratio.label) for ratio in RATIOS)
    for ratio in RATIOS:
        value = values[ratio.label]
        shown = f"{value:6.2f}x" if value is not None else "    n/a"
        bad = [n for n in (ratio.numerator, ratio.denominator) if n in suspect]
        note = f"!! {' and '.join(bad)} had errors" if value is not None and bad else ratio.meaning
        lines.append(f"  {ratio.label:<{width}} {shown}   {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- table

_HEADER = ("row", "req/s", "spread", "p50 ms", "p99 ms", "CPU µs/req", "other CPU", "errors")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _errors_cell(result: RowResult) -> str:
    if result.skipped:
        return f"SKIPPED ({result.skipped})"
    if not result.started:
        return "SKIPPED (did not start)"
    if result.failure and not result.rounds:
        return "!! FAILED"
    parts = []
    if result.non_2xx:
        parts.append(f"{result.non_2xx} non-2xx")
    if result.socket_errors:
        parts.append(f"{result.socket_errors} socket")
    if result.silent_rounds:
        parts.append(f"no responses in {result.silent_rounds} round(s)")
    cell = "!! " + ", ".join(parts) if parts else "0"
    return cell + (" !! FAILED" if result.failure else "")


def _table_row(result: RowResult) -> tuple[str, ...]:
    spread = result.spread_pct()
    return (
        ("!! " if result.flagged or result.failure else "") + result.name,
        _fmt(result.median("requests_per_sec"), ",.0f"),
        "-" if spread is None else f"±{spread / 2:.1f}%",
        _fmt(result.median("p50_ms"), ".2f"),
        _fmt(result.median("p99_ms"), ".2f"),
        _fmt(result.median("cpu_us_per_request"), ".1f"),
        _fmt(result.median("other_cpu_pct"), ".0f") + ("%" if result.rounds else ""),
        _errors_cell(result),
    )


def format_table(results: list[RowResult]) -> str:
    rows = [_HEADER, *(_table_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [row[i].rjust(widths[i]) for i in range(1, len(row) - 1)]
        cells.append(row[-1])
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += _warnings(results)
    lines += _noise_note(results)
    return "\n".join(lines)


def _noise_note(results: list[RowResult]) -> list[str]:
    worst = max(
        (p for r in results for m in r.rounds if (p := m.other_cpu_pct) is not None), default=0.0
    )
    if worst <= NOISY_PCT:
        return []
    return [
        f"note: processes this benchmark did not start used up to {worst:.0f}% of a CPU during "
        "measured runs ('other CPU'); the machine was not quiet, expect noisy figures"
    ]


def _warnings(results: list[RowResult]) -> list[str]:
    lines = []
    for result in results:
        if result.flagged:
            silent = ""
            if result.silent_rounds:
                silent = f", no response at all in {result.silent_rounds}"
            lines.append(
                f"!! WARNING: {result.name}: {result.non_2xx} non-2xx/3xx responses and "
                f"{result.socket_errors} socket errors over {len(result.rounds)} round(s){silent}; "
                "its figures are NOT comparable with clean rows"
            )
        if result.failure:
            first = result.failure.splitlines()[0]
            lines.append(f"!! {result.name}: {first}")
    return lines


# --------------------------------------------------------------------------- files


def utc_stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


def document(
    results: list[RowResult],
    machine: dict[str, Any],
    parameters: dict[str, Any],
    stamp: str,
    storm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "timestamp": stamp,
        "machine": machine,
        "parameters": parameters,
        "rows": [r.to_json() for r in results],
        "ratios": {k: _rounded(v) for k, v in ratio_values(results).items()},
        "storm": storm,
    }


def write_results(doc: dict[str, Any], directory: Path = RESULTS_DIR) -> list[Path]:
    """Write `<timestamp>.json` and `latest.json` (and PNG charts if matplotlib imports)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    paths = [directory / f"{doc['timestamp']}.json", directory / "latest.json"]
    for path in paths:
        path.write_text(text)
    chart = write_chart(doc, directory / f"{doc['timestamp']}.png")
    if chart is not None:
        (directory / "latest.png").write_bytes(chart.read_bytes())
        paths.append(chart)
    return paths


def write_chart(doc: dict[str, Any], path: Path) -> Path | None:
    """A bar chart of median req/s per row, only if matplotlib happens to be installed."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    rows = [r for r in doc["rows"] if r["median"]["requests_per_sec"] is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    names = [r["name"] for r in rows]
    values = [r["median"]["requests_per_sec"] for r in rows]
    colors = ["tab:red" if r["status"] != "ok" else "tab:blue" for r in rows]
    ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("requests/s (median of rounds; red = errors)")
    ax.set_title(f"tokengate bench {doc['timestamp']}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
