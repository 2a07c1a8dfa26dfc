"""The unknown-kid storm: does a flood of tokens with random `kid`s hurt valid traffic, or make
the gateway hammer the identity provider?

    result = run_storm(settings, ctx, upstream, issuer, pinning)
    print(format_storm(result))

A fresh gateway (the same config as the gateway rows) serves /auth. After the auth check and a
warm-up, each round measures three phases: wrk sends one valid token for `duration` seconds alone,
and the same again while a second wrk (same CPU as the first, `storm_connections` connections)
sends tokens whose header was re-encoded with a random kid on every request (bench/lua.py),
starting a little before the valid run and ending a little after it; then, as a control, the
same again with the second wrk sending the valid token at the storm's pace (what any extra
traffic at that rate costs). Rounds alternate whether the alone phase comes first or last, so
that the machine's speed drifting over a round hits both sides alike; the verdict is the median
over rounds of valid req/s during the storm / alone, beside the control's. Phases are short
and rounds many (bench.run: 10 rounds of 3 s): this machine's speed drifts by tens of percent
over minutes, and a storm phase is best compared with an alone phase seconds away from it.
Also reported: storm requests (at least STORM_MIN_REQUESTS in all) and their statuses (all
must be 401), and the JWKS fetches the issuer saw during each storm window (Kong's
rediscovery_lifetime default is 30 s: at most one per window, and at most one per 30 s started
over the span from the first storm's start to the last one's end).
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lua import (
    parse_sample_token,
    parse_status_counts,
    token_header,
    write_paced_token,
    write_random_kid,
)
from bench.systems import (
    AuthCheck,
    BenchContext,
    Issuer,
    Pinning,
    Row,
    StartError,
    SystemUnderTest,
    Upstream,
    build_gateway_with_token,
    check_auth,
    machine_busy_seconds,
    start_system,
    tree_cpu_seconds,
)
from bench.wrk import WrkError, WrkResult, run_wrk

STORM_MIN_REQUESTS = 10_000
REDISCOVERY_LIFETIME_S = 30.0  # Kong's openid-connect default, which the bench config keeps
STORM_LEAD_S = 0.5  # the storm starts this long before the valid run and ends as long after

STORM_ROW = Row(
    "storm-gateway",
    "tokengate gateway, /auth, for the unknown-kid storm",
    build=build_gateway_with_token,
    path="/auth/x",
    needs_issuer=True,
    auth=AuthCheck(scope_required=True, unknown_kid=False),
)


@dataclass(frozen=True, slots=True)
class StormSettings:
    duration: float
    connections: int  # the valid wrk's
    storm_connections: int
    warmup: float
    # The pace asked of the storm's wrk, over all its connections; wrk's delay() comes on top of
    # each response's latency, so 1,500 asked gives about 1,000 a second, >= 10,000 over the
    # phase. 0: as fast as wrk can send, which measures CPU contention more than the storm.
    storm_rate: float = 1500.0
    rounds: int = 1
    # Storm requests the whole run must send (over all its rounds); 0 for a smoke run.
    min_requests: int = STORM_MIN_REQUESTS


@dataclass(frozen=True, slots=True)
class Phase:
    """One measured valid-token wrk run, with the gateway's CPU and everyone else's."""

    wrk: WrkResult
    gateway_cpu_seconds: float
    other_cpu_pct: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.wrk.to_json(),
            "gateway_cpu_seconds": round(self.gateway_cpu_seconds, 3),
            "other_cpu_pct": None if self.other_cpu_pct is None else round(self.other_cpu_pct, 1),
        }


@dataclass(slots=True)
class StormRound:
    """One round: valid traffic alone and during a storm, in the order `alone_last` says."""

    alone: Phase
    during: Phase
    storm: WrkResult
    storm_statuses: dict[int, int]
    alone_last: bool
    jwks_fetches: int | None = None
    # The control: valid traffic while a second wrk sends the valid token at the storm's pace.
    control: Phase | None = None
    control_side: WrkResult | None = None
    control_statuses: dict[int, int] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return _kept(self.during, self.alone)

    @property
    def control_ratio(self) -> float | None:
        return None if self.control is None else _kept(self.control, self.alone)

    @property
    def control_all_200(self) -> bool:
        side, counted = self.control_side, self.control_statuses
        return side is None or (set(counted) == {200} and counted[200] == side.requests)

    @property
    def all_401(self) -> bool:
        counted = self.storm_statuses
        return set(counted) == {401} and counted[401] == self.storm.requests

    def to_json(self) -> dict[str, Any]:
        return {
            "order": "alone last" if self.alone_last else "alone first",
            "valid_alone": self.alone.to_json(),
            "valid_during_storm": self.during.to_json(),
            "valid_during_over_alone": None if self.ratio is None else round(self.ratio, 3),
            "storm": self.storm.to_json(),
            "storm_statuses": {str(k): v for k, v in sorted(self.storm_statuses.items())},
            "jwks_fetches": self.jwks_fetches,
            "valid_during_paced_valid": self.control.to_json() if self.control else None,
            "paced_valid": self.control_side.to_json() if self.control_side else None,
            "valid_during_paced_valid_over_alone": _rounded(self.control_ratio),
        }


def _kept(during: Phase, alone: Phase) -> float | None:
    if not alone.wrk.requests_per_sec:
        return None
    return during.wrk.requests_per_sec / alone.wrk.requests_per_sec


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(slots=True)
class StormResult:
    settings: StormSettings
    url: str = ""
    auth_check: str | None = None
    rounds: list[StormRound] = field(default_factory=list)
    # Wall-clock seconds from the first storm's start to the last one's end.
    storm_span_s: float | None = None
    sample_kid: str | None = None
    jwks_fetches: int | None = None
    unknown_key_logged: int | None = None
    failure: str | None = None

    @property
    def ratios(self) -> list[float]:
        return [r.ratio for r in self.rounds if r.ratio is not None]

    @property
    def ratio(self) -> float | None:
        """The median over rounds of valid req/s during the storm / alone."""
        return _median(self.ratios)

    @property
    def control_ratios(self) -> list[float]:
        return [r.control_ratio for r in self.rounds if r.control_ratio is not None]

    @property
    def control_ratio(self) -> float | None:
        """The same for the paced valid traffic of the control phases."""
        return _median(self.control_ratios)

    @property
    def storm_window_s(self) -> float:
        return self.settings.duration + 2 * STORM_LEAD_S

    @property
    def allowed_fetches(self) -> int:
        """At most one fetch per started rediscovery_lifetime of storm."""
        span = self.storm_span_s if self.storm_span_s is not None else self.storm_window_s
        return math.ceil(span / REDISCOVERY_LIFETIME_S)

    @property
    def storm_requests(self) -> int:
        return sum(r.storm.requests for r in self.rounds)

    @property
    def storm_statuses(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for r in self.rounds:
            for status, count in r.storm_statuses.items():
                total[status] = total.get(status, 0) + count
        return total

    @property
    def all_401(self) -> bool:
        return bool(self.rounds) and all(r.all_401 for r in self.rounds)

    def problems(self) -> list[str]:
        """What makes this storm result a failure (the run then exits 1)."""
        found = [self.failure] if self.failure else []
        for number, r in enumerate(self.rounds, 1):
            for name, phase in (("alone", r.alone), ("during the storm", r.during)):
                if phase.wrk.errors:
                    found.append(
                        f"round {number}: valid requests {name}: {phase.wrk.non_2xx} non-2xx, "
                        f"{phase.wrk.socket_errors} socket errors"
                    )
            if not r.all_401:
                found.append(f"round {number}: storm answers were not all 401: {r.storm_statuses}")
            if not r.control_all_200:
                found.append(
                    f"round {number}: the control's paced valid requests were not all 200: "
                    f"{r.control_statuses}"
                )
            if r.jwks_fetches is not None and r.jwks_fetches > 1:
                found.append(
                    f"round {number}: {r.jwks_fetches} JWKS fetches in one "
                    f"{self.storm_window_s:g} s storm (target <= 1)"
                )
        if self.rounds and self.storm_requests < self.settings.min_requests:
            found.append(
                f"only {self.storm_requests:,} storm requests in all "
                f"(< {self.settings.min_requests:,})"
            )
        if self.jwks_fetches is not None and self.jwks_fetches > self.allowed_fetches:
            found.append(
                f"{self.jwks_fetches} JWKS fetches during the storms "
                f"(target <= {self.allowed_fetches})"
            )
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "duration_s": self.settings.duration,
            "valid_connections": self.settings.connections,
            "storm_connections": self.settings.storm_connections,
            "storm_window_s": self.storm_window_s,
            "storm_span_s": None if self.storm_span_s is None else round(self.storm_span_s, 1),
            "auth_check": self.auth_check,
            "rounds": [r.to_json() for r in self.rounds],
            "valid_during_over_alone": None if self.ratio is None else round(self.ratio, 3),
            "valid_during_over_alone_rounds": [round(x, 3) for x in self.ratios],
            "valid_during_paced_valid_over_alone": _rounded(self.control_ratio),
            "valid_during_paced_valid_over_alone_rounds": [
                round(x, 3) for x in self.control_ratios
            ],
            "storm_requests": self.storm_requests,
            "storm_statuses": {str(k): v for k, v in sorted(self.storm_statuses.items())},
            "storm_all_401": self.all_401,
            "sample_storm_kid": self.sample_kid,
            "unknown_key_refusals_logged": self.unknown_key_logged,
            "jwks_fetches_during_storm": self.jwks_fetches,
            "jwks_fetches_allowed": self.allowed_fetches,
            "rediscovery_lifetime_s": REDISCOVERY_LIFETIME_S,
            "problems": self.problems(),
        }


def run_storm(
    settings: StormSettings,
    ctx: BenchContext,
    upstream: Upstream,
    issuer: Issuer,
    pinning: Pinning,
) -> StormResult:
    result = StormResult(settings)
    pace = f"paced at {settings.storm_rate:g} req/s" if settings.storm_rate else "unpaced"
    print(
        f"\n== unknown-kid storm: fresh gateway, /auth; {settings.rounds} round(s) of "
        f"{settings.duration:g} s valid alone and {settings.duration:g} s valid "
        f"(wrk -c{settings.connections}) + storm (wrk -c{settings.storm_connections}, random kid "
        f"per request, {pace}), the order alternating"
    )
    with ExitStack() as stack:
        try:
            system = start_system(STORM_ROW, ctx, upstream, pinning, stack)
        except StartError as error:
            result.failure = f"storm gateway did not start: {error}"
            return result
        result.url = system.url
        check = check_auth(system.url, issuer, STORM_ROW.auth or AuthCheck())
        result.auth_check = check.summary
        if check.problems:
            result.failure = "storm gateway auth check failed: " + "; ".join(check.problems)
            return result
        script = write_random_kid(
            ctx.workdir / "random-kid.lua", issuer.token, delay_ms=_delay_ms(settings)
        )
        try:
            _storm_phases(result, system, issuer, script, pinning)
        except WrkError as error:
            result.failure = f"wrk failed during the storm phase: {error}"
        if not system.process.alive:
            result.failure = (
                f"storm gateway exited with code {system.process.exit_code()}\n"
                f"{system.process.tail()}"
            )
    return result


def _storm_phases(
    result: StormResult, system: SystemUnderTest, issuer: Issuer, script: Path, pinning: Pinning
) -> None:
    settings = result.settings
    prefix = pinning.load_prefix()
    control_script = write_paced_token(
        script.parent / "paced-valid.lua", issuer.token, delay_ms=_delay_ms(settings)
    )

    def valid(duration: float) -> tuple[WrkResult, str]:
        return run_wrk(
            system.url,
            duration=duration,
            connections=settings.connections,
            headers=system.headers,
            prefix=prefix,
        )

    if settings.warmup > 0:
        valid(settings.warmup)
    logged_before = _unknown_key_lines(system)
    fetches_before = issuer.jwks_hits()
    first_start: float | None = None
    for number in range(1, settings.rounds + 1):
        alone_last = number % 2 == 0  # 1: alone first, 2: alone last, 3: alone first, ...
        alone = None if alone_last else _phase(system, lambda: valid(settings.duration))
        started = time.monotonic()
        first_start = started if first_start is None else first_start
        fetches = issuer.jwks_hits()
        during, storm_wrk, raw = _side_window(system, script, settings, prefix, valid)
        result.storm_span_s = time.monotonic() - first_start
        fetches = issuer.jwks_hits() - fetches
        control, side, side_raw = _side_window(system, control_script, settings, prefix, valid)
        if alone is None:
            alone = _phase(system, lambda: valid(settings.duration))
        storm_round = StormRound(
            alone,
            during,
            storm_wrk,
            parse_status_counts(raw),
            alone_last,
            fetches,
            control=control,
            control_side=side,
            control_statuses=parse_status_counts(side_raw),
        )
        result.rounds.append(storm_round)
        print(_round_line(number, storm_round))
        if number == 1:
            sample = parse_sample_token(raw)
            header = token_header(sample) if sample else None
            kid = header.get("kid") if header else None
            if kid in (None, issuer.kid) or header is None or header.get("alg") != "RS256":
                result.failure = (
                    f"the storm script's tokens are not well-formed tokens with a foreign kid "
                    f"(sample header: {header}); the storm would not reach the key lookup"
                )
                break
            result.sample_kid = str(kid)
    result.jwks_fetches = issuer.jwks_hits() - fetches_before
    logged_after = _unknown_key_lines(system)
    if logged_before is not None and logged_after is not None:
        result.unknown_key_logged = logged_after - logged_before


def _delay_ms(settings: StormSettings) -> float:
    """wrk's delay() per connection for the storm's pace (0: unpaced)."""
    if not settings.storm_rate:
        return 0.0
    return settings.storm_connections * 1000.0 / settings.storm_rate


def _side_window(
    system: SystemUnderTest,
    script: Path,
    settings: StormSettings,
    prefix: Sequence[str],
    valid: Callable[[float], tuple[WrkResult, str]],
) -> tuple[Phase, WrkResult, str]:
    """A second wrk running `script` (the storm, or the control) from STORM_LEAD_S before a
    valid phase to as long after it: the valid phase, and the second wrk's result and output."""
    storm_out: list[tuple[WrkResult, str]] = []
    storm_error: list[BaseException] = []

    def storm() -> None:
        try:
            storm_out.append(
                run_wrk(
                    system.url,
                    duration=settings.duration + 2 * STORM_LEAD_S,
                    connections=settings.storm_connections,
                    script=script,
                    prefix=prefix,
                )
            )
        except BaseException as error:  # re-raised in the main thread
            storm_error.append(error)

    thread = threading.Thread(target=storm, name="storm-wrk")
    thread.start()
    try:
        threading.Event().wait(STORM_LEAD_S)
        during = _phase(system, lambda: valid(settings.duration))
    finally:
        thread.join()
    if storm_error:
        raise storm_error[0]
    storm_wrk, raw = storm_out[0]
    return during, storm_wrk, raw


def _phase(system: SystemUnderTest, run: Callable[[], tuple[WrkResult, str]]) -> Phase:
    ours_before, machine_before = tree_cpu_seconds(os.getpid()), machine_busy_seconds()
    gateway_before = system.cpu_seconds()
    wrk, _ = run()
    gateway = system.cpu_seconds() - gateway_before
    other = (machine_busy_seconds() - machine_before) - (
        tree_cpu_seconds(os.getpid()) - ours_before
    )
    other_pct = max(0.0, other) * 100 / wrk.duration_s if wrk.duration_s else None
    return Phase(wrk=wrk, gateway_cpu_seconds=gateway, other_cpu_pct=other_pct)


def _unknown_key_lines(system: SystemUnderTest) -> int | None:
    """How many `refused 401 unknown_key ...` lines the gateway has logged (None: no log). The
    gateway caps refusal lines per second, so this counts lines, not refusals."""
    try:
        return system.process.log_path.read_text(errors="replace").count("refused 401 unknown_key ")
    except OSError:
        return None


def _round_line(number: int, r: StormRound) -> str:
    order = "alone last" if r.alone_last else "alone first"
    ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
    fetches = "" if r.jwks_fetches is None else f", {r.jwks_fetches} JWKS fetch(es)"
    control = ""
    if r.control is not None and r.control_side is not None:
        kept = "-" if r.control_ratio is None else f"{r.control_ratio:.2f}x"
        control = (
            f"; control: {r.control.wrk.requests_per_sec:,.0f} req/s beside "
            f"{r.control_side.requests:,} paced valid requests: {kept}"
        )
    phases = [p for p in (r.alone, r.during, r.control) if p is not None]
    return (
        f"   round {number} ({order}): valid alone {r.alone.wrk.requests_per_sec:,.0f} req/s, "
        f"during the storm {r.during.wrk.requests_per_sec:,.0f} req/s: {ratio}; storm "
        f"{r.storm.requests:,} requests{fetches}{control}{_noise(*phases)}"
    )


def _noise(*phases: Phase) -> str:
    worst = max((p.other_cpu_pct or 0.0) for p in phases)
    return f"   (noisy: other processes used {worst:.0f}% of a CPU)" if worst > 10 else ""


def _cpu_line(r: StormRound) -> str | None:
    """Gateway CPU per request alone, and during the storm per request of either kind (the
    storm's requests in the valid window estimated from its average rate)."""
    alone, during, storm = r.alone, r.during, r.storm
    storm_in_window = storm.requests_per_sec * during.wrk.duration_s
    served = during.wrk.requests + storm_in_window
    if not alone.wrk.requests or not served:
        return None
    per_valid = alone.gateway_cpu_seconds * 1e6 / alone.wrk.requests
    per_any = during.gateway_cpu_seconds * 1e6 / served
    return (
        f"{per_valid:.0f} µs per valid request alone, {per_any:.0f} µs per request during the "
        f"storm (valid + ~{storm_in_window:,.0f} storm requests in the window)"
    )


def format_storm(result: StormResult) -> str:
    s = result.settings
    lines = [
        f"Unknown-kid storm (/auth, {len(result.rounds)} round(s) of {s.duration:g} s phases; "
        f"valid wrk -c{s.connections}, storm wrk -c{s.storm_connections} over "
        f"{result.storm_window_s:g} s):"
    ]
    for number, r in enumerate(result.rounds, 1):
        lines.append(_round_line(number, r))
        if r.alone.wrk.errors or r.during.wrk.errors:
            lines.append(
                f"      !! valid request errors: alone {r.alone.wrk.errors}, "
                f"during {r.during.wrk.errors}"
            )
        cpu = _cpu_line(r)
        if cpu:
            lines.append(f"      gateway CPU: {cpu}")
    if result.ratio is not None:
        rounds = ", ".join(f"{x:.2f}" for x in result.ratios)
        lines.append(
            f"   valid req/s during storm / alone: {result.ratio:.2f}x "
            f"(median of the rounds: {rounds})"
        )
    if result.control_ratio is not None:
        rounds = ", ".join(f"{x:.2f}" for x in result.control_ratios)
        lines.append(
            f"   control, valid req/s beside the same pace of valid requests / alone: "
            f"{result.control_ratio:.2f}x (median of the rounds: {rounds})"
        )
    if result.rounds:
        statuses = ", ".join(f"{n:,} x {code}" for code, n in sorted(result.storm_statuses.items()))
        verdict = "all 401" if result.all_401 else "!! NOT all 401"
        lines.append(
            f"   storm requests sent: {result.storm_requests:,}: {verdict} "
            f"({statuses or 'none counted'})"
        )
    if result.unknown_key_logged is not None:
        lines.append(
            f"   gateway log: {result.unknown_key_logged:,} unknown_key refusal lines"
            " (capped per second)"
        )
    if result.jwks_fetches is not None:
        span = "" if result.storm_span_s is None else f" over {result.storm_span_s:.0f} s"
        lines.append(
            f"   JWKS fetches during the storms: {result.jwks_fetches}{span} (target <= "
            f"{result.allowed_fetches}: one per {REDISCOVERY_LIFETIME_S:g} s "
            f"rediscovery_lifetime, and <= 1 per storm window)"
        )
        if result.jwks_fetches == 0:
            lines.append(
                "note: no JWKS refetch at all on the storm's first unknown kid (nothing before "
                "the storm sent one): a rotated key would not be picked up on a miss"
            )
    lines += [f"!! storm: {problem}" for problem in result.problems()]
    if result.rounds and result.storm_requests < STORM_MIN_REQUESTS and not s.min_requests:
        lines.append(
            f"note: {result.storm_requests:,} storm requests in all "
            f"(< {STORM_MIN_REQUESTS:,}): a short run"
        )
    return "\n".join(lines)
