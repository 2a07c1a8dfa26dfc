"""The unknown-kid storm: does a flood of tokens with random `kid`s hurt valid traffic, or make
the gateway hammer the identity provider?

    result = run_storm(settings, ctx, upstream, issuer, pinning)
    print(format_storm(result))

A fresh gateway (the same config as the gateway rows) serves /auth. After the auth check and a
warm-up, wrk sends one valid token for `duration` seconds alone; then the same again while a
second wrk (same CPU as the first, `storm_connections` connections) sends tokens whose header
was re-encoded with a random kid on every request (bench/lua.py), starting a little before the
valid run and ending a little after it. Reported: valid req/s during the storm / alone, storm
requests sent and their statuses (all must be 401), and the JWKS fetches the issuer saw during
the storm (Kong's rediscovery_lifetime default is 30 s: at most one fetch per 30 s started).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lua import parse_sample_token, parse_status_counts, token_header, write_random_kid
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
class StormResult:
    settings: StormSettings
    url: str = ""
    auth_check: str | None = None
    alone: Phase | None = None
    during: Phase | None = None
    storm: WrkResult | None = None
    storm_statuses: dict[int, int] = field(default_factory=dict)
    sample_kid: str | None = None
    jwks_fetches: int | None = None
    unknown_key_logged: int | None = None
    failure: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.alone is None or self.during is None or not self.alone.wrk.requests_per_sec:
            return None
        return self.during.wrk.requests_per_sec / self.alone.wrk.requests_per_sec

    @property
    def storm_window_s(self) -> float:
        return self.settings.duration + 2 * STORM_LEAD_S

    @property
    def allowed_fetches(self) -> int:
        """At most one fetch per started rediscovery_lifetime of storm."""
        return math.ceil(self.storm_window_s / REDISCOVERY_LIFETIME_S)

    @property
    def all_401(self) -> bool:
        if self.storm is None:
            return False
        return set(self.storm_statuses) == {401} and self.storm_statuses[401] == self.storm.requests

    def problems(self) -> list[str]:
        """What makes this storm result a failure (the run then exits 1)."""
        found = [self.failure] if self.failure else []
        for name, phase in (("alone", self.alone), ("during the storm", self.during)):
            if phase is not None and phase.wrk.errors:
                found.append(
                    f"valid requests {name}: {phase.wrk.non_2xx} non-2xx, "
                    f"{phase.wrk.socket_errors} socket errors"
                )
        if self.storm is not None and not self.all_401:
            found.append(f"storm answers were not all 401: {self.storm_statuses}")
        if self.jwks_fetches is not None and self.jwks_fetches > self.allowed_fetches:
            found.append(
                f"{self.jwks_fetches} JWKS fetches during the storm "
                f"(target <= {self.allowed_fetches})"
            )
        if (
            self.storm is not None
            and self.storm.requests < STORM_MIN_REQUESTS
            and self.settings.duration >= 10
        ):
            found.append(f"only {self.storm.requests:,} storm requests (< {STORM_MIN_REQUESTS:,})")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "duration_s": self.settings.duration,
            "valid_connections": self.settings.connections,
            "storm_connections": self.settings.storm_connections,
            "storm_window_s": self.storm_window_s,
            "auth_check": self.auth_check,
            "valid_alone": self.alone.to_json() if self.alone else None,
            "valid_during_storm": self.during.to_json() if self.during else None,
            "valid_during_over_alone": None if self.ratio is None else round(self.ratio, 3),
            "storm": self.storm.to_json() if self.storm else None,
            "storm_requests": self.storm.requests if self.storm else None,
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
        f"\n== unknown-kid storm: fresh gateway, /auth; {settings.duration:g} s valid alone, then "
        f"{settings.duration:g} s valid (wrk -c{settings.connections}) + storm "
        f"(wrk -c{settings.storm_connections}, random kid per request, {pace})"
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
        delay_ms = (
            settings.storm_connections * 1000.0 / settings.storm_rate
            if settings.storm_rate
            else 0.0
        )
        script = write_random_kid(ctx.workdir / "random-kid.lua", issuer.token, delay_ms=delay_ms)
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
    result.alone = _phase(system, lambda: valid(settings.duration))
    print(_phase_line("valid alone", result.alone))

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

    logged_before = _unknown_key_lines(system)
    fetches_before = issuer.jwks_hits()
    thread = threading.Thread(target=storm, name="storm-wrk")
    thread.start()
    try:
        threading.Event().wait(STORM_LEAD_S)
        result.during = _phase(system, lambda: valid(settings.duration))
    finally:
        thread.join()
    result.jwks_fetches = issuer.jwks_hits() - fetches_before
    if storm_error:
        raise storm_error[0]
    storm_wrk, raw = storm_out[0]
    result.storm = storm_wrk
    result.storm_statuses = parse_status_counts(raw)
    sample = parse_sample_token(raw)
    header = token_header(sample) if sample else None
    if header is None or header.get("kid") in (None, issuer.kid) or header.get("alg") != "RS256":
        result.failure = (
            f"the storm script's tokens are not well-formed tokens with a foreign kid "
            f"(sample header: {header}); the storm would not reach the key lookup"
        )
    else:
        result.sample_kid = str(header["kid"])
    logged_after = _unknown_key_lines(system)
    if logged_before is not None and logged_after is not None:
        result.unknown_key_logged = logged_after - logged_before
    print(_phase_line("valid during storm", result.during))


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


def _phase_line(label: str, phase: Phase | None) -> str:
    if phase is None:
        return f"   {label:<22} -"
    noisy = ""
    if phase.other_cpu_pct is not None and phase.other_cpu_pct > 10:
        noisy = f"   (noisy: other processes used {phase.other_cpu_pct:.0f}% of a CPU)"
    errors = f"   !! {phase.wrk.errors} errors" if phase.wrk.errors else ""
    return (
        f"   {label:<22} {phase.wrk.requests_per_sec:>10,.0f} req/s   p50 "
        f"{phase.wrk.p50_ms:6.2f} ms   p99 {phase.wrk.p99_ms:6.2f} ms{errors}{noisy}"
    )


def _cpu_lines(result: StormResult) -> list[str]:
    """Gateway CPU per request alone, and during the storm per request of either kind (the
    storm's requests in the valid window estimated from its average rate)."""
    alone, during, storm = result.alone, result.during, result.storm
    if alone is None or during is None or storm is None or not alone.wrk.requests:
        return []
    per_valid = alone.gateway_cpu_seconds * 1e6 / alone.wrk.requests
    storm_in_window = storm.requests_per_sec * during.wrk.duration_s
    served = during.wrk.requests + storm_in_window
    if not served:
        return []
    per_any = during.gateway_cpu_seconds * 1e6 / served
    return [
        f"   gateway CPU: {per_valid:.0f} µs per valid request alone; {per_any:.0f} µs per "
        f"request during the storm (valid + ~{storm_in_window:,.0f} storm requests in the window)"
    ]


def format_storm(result: StormResult) -> str:
    s = result.settings
    lines = [
        f"Unknown-kid storm (/auth, {s.duration:g} s per phase; valid wrk -c{s.connections}, "
        f"storm wrk -c{s.storm_connections} over {result.storm_window_s:g} s):"
    ]
    if result.alone is not None:
        lines.append(_phase_line("valid alone", result.alone))
    if result.during is not None:
        lines.append(_phase_line("valid during storm", result.during))
    if result.ratio is not None:
        lines.append(f"   valid req/s during storm / alone: {result.ratio:.2f}x")
    lines += _cpu_lines(result)
    if result.storm is not None:
        statuses = ", ".join(f"{n:,} x {code}" for code, n in sorted(result.storm_statuses.items()))
        verdict = "all 401" if result.all_401 else "!! NOT all 401"
        lines.append(
            f"   storm requests sent: {result.storm.requests:,} "
            f"({result.storm.requests_per_sec:,.0f} req/s): {verdict} "
            f"({statuses or 'none counted'})"
        )
    if result.unknown_key_logged is not None:
        lines.append(
            f"   gateway log: {result.unknown_key_logged:,} unknown_key refusal lines"
            " (capped per second)"
        )
    if result.jwks_fetches is not None:
        lines.append(
            f"   JWKS fetches during the storm: {result.jwks_fetches} (target <= "
            f"{result.allowed_fetches}: one per {REDISCOVERY_LIFETIME_S:g} s rediscovery_lifetime)"
        )
        if result.jwks_fetches == 0:
            lines.append(
                "note: no JWKS refetch at all on the storm's first unknown kid (nothing before "
                "the storm sent one): a rotated key would not be picked up on a miss"
            )
    lines += [f"!! storm: {problem}" for problem in result.problems()]
    if result.storm is not None and result.storm.requests < STORM_MIN_REQUESTS and s.duration < 10:
        lines.append(
            f"note: {result.storm.requests:,} storm requests "
            f"(< {STORM_MIN_REQUESTS:,}): a short run"
        )
    return "\n".join(lines)
