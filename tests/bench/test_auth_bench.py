"""bench.lua, the token helpers and the HAProxy config of bench.systems, bench.storm's verdicts."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from bench.lua import (
    parse_sample_token,
    parse_status_counts,
    split_token_header,
    token_header,
    write_paced_token,
    write_random_kid,
    write_token_cycle,
)
from bench.run import parse_args
from bench.storm import Phase, StormResult, StormRound, StormSettings, format_storm
from bench.systems import (
    alg_none,
    foreign_kid,
    haproxy_cfg,
    haproxy_path,
    haproxy_version,
    tampered_signature,
)
from bench.wrk import WrkResult
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HEADER = {"alg": "RS256", "kid": "1f2e-kid", "typ": "JWT"}
PAYLOAD = {"iss": "http://127.0.0.1:9400", "aud": ["bench-api"], "exp": 2_000_000_000}
TOKEN = ".".join(
    [_b64(json.dumps(HEADER).encode()), _b64(json.dumps(PAYLOAD).encode()), _b64(b"s" * 256)]
)

# What the scripts' done() prints after wrk's own report (wrk -s storm.lua, 2 s, 10 connections).
STORM_OUTPUT = """\
Running 2s test @ http://127.0.0.1:19404/auth/x
  1 threads and 10 connections
  5087 requests in 2.01s, 1.51MB read
  Non-2xx or 3xx responses: 5087
Requests/sec:   2527.62
Transfer/sec:    767.67KB
status 401 5000
status 503 87
sample-token eyJhbGciOiJSUzI1NiJ9.e30.c2ln
"""


def test_status_counts_and_sample_token() -> None:
    assert parse_status_counts(STORM_OUTPUT) == {401: 5000, 503: 87}
    assert parse_status_counts("no such lines") == {}
    assert parse_sample_token(STORM_OUTPUT) == "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"
    assert parse_sample_token("") is None


def test_split_token_header_keeps_everything_but_the_kid() -> None:
    before, after, rest = split_token_header(TOKEN)
    assert json.loads(before + "other" + after) == {**HEADER, "kid": "other"}
    assert rest == "." + TOKEN.split(".", 1)[1]
    with pytest.raises(ValueError, match="no kid"):
        split_token_header(_b64(b'{"alg":"RS256"}') + ".e30.c2ln")


def test_foreign_kid_tampered_signature_and_alg_none() -> None:
    foreign = foreign_kid(TOKEN, "nope")
    assert token_header(foreign) == {**HEADER, "kid": "nope"}
    assert foreign.split(".")[1:] == TOKEN.split(".")[1:]

    tampered = tampered_signature(TOKEN)
    assert tampered != TOKEN
    assert tampered.rsplit(".", 1)[0] == TOKEN.rsplit(".", 1)[0]
    assert len(tampered) == len(TOKEN)

    none = alg_none(TOKEN)
    assert token_header(none) == {"alg": "none", "typ": "JWT"}
    assert none.endswith(".") and none.split(".")[1] == TOKEN.split(".")[1]


def test_token_header_of_garbage_is_none() -> None:
    assert token_header("!!!.e30.") is None
    assert token_header(_b64(b"[1, 2]") + ".e30.") is None


def test_scripts_embed_their_inputs_as_lua_strings(tmp_path: Path) -> None:
    cycle = write_token_cycle(tmp_path / "cycle.lua", tmp_path / 'odd "dir" / tokens.txt')
    text = cycle.read_text()
    assert json.dumps(str(tmp_path / 'odd "dir" / tokens.txt')) in text
    assert "@TOKENS_FILE@" not in text
    assert "function request()" in text and "function done(" in text

    storm = write_random_kid(tmp_path / "storm.lua", TOKEN).read_text()
    assert "@BEFORE@" not in storm and "@REST@" not in storm
    assert json.dumps("." + TOKEN.split(".", 1)[1]) in storm


@pytest.mark.skipif(haproxy_path() is None, reason="haproxy is not installed")
def test_haproxy_cfg_is_accepted_by_haproxy(tmp_path: Path) -> None:
    haproxy = haproxy_path()
    assert haproxy is not None
    if haproxy_version(haproxy) < (2, 5):
        pytest.skip("haproxy older than 2.5 has no jwt_verify")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        haproxy_cfg(
            port=18999,
            upstream_url="http://127.0.0.1:18998",
            issuer="http://127.0.0.1:9400",
            audience="bench-api",
            public_pem=pem,
            scope="read",
        )
    )
    done = subprocess.run(
        [haproxy, "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr + done.stdout


def _wrk(requests: int, non_2xx: int = 0) -> WrkResult:
    return WrkResult(requests, 10.0, requests / 10.0, 1.0, 5.0, non_2xx=non_2xx)


def _round(
    storm: int,
    statuses: dict[int, int],
    *,
    alone: int = 100_000,
    during: int = 95_000,
    fetches: int = 0,
    alone_last: bool = False,
    control: int | None = None,
    control_statuses: dict[int, int] | None = None,
) -> StormRound:
    side = control_statuses or {200: 9_000}
    return StormRound(
        Phase(_wrk(alone), 10.0, None),
        Phase(_wrk(during), 10.0, None),
        _wrk(storm, sum(statuses.values())),
        statuses,
        alone_last,
        fetches,
        control=None if control is None else Phase(_wrk(control), 10.0, None),
        control_side=None if control is None else _wrk(sum(side.values())),
        control_statuses=side if control is not None else {},
    )


def test_storm_verdicts() -> None:
    settings = StormSettings(
        duration=10.0, connections=50, storm_connections=50, warmup=2.0, rounds=2
    )
    ok = StormResult(
        settings,
        rounds=[_round(20_000, {401: 20_000}, fetches=1), _round(20_000, {401: 20_000})],
        storm_span_s=22.0,
        jwks_fetches=1,
    )
    assert ok.all_401 and ok.allowed_fetches == 1 and ok.problems() == []
    assert ok.storm_requests == 40_000 and ok.storm_statuses == {401: 40_000}

    leaky = StormResult(
        settings,
        rounds=[_round(20_000, {401: 20_000}), _round(20_000, {401: 19_999, 200: 1}, fetches=3)],
        storm_span_s=22.0,
        jwks_fetches=3,
    )
    problems = " | ".join(leaky.problems())
    assert "round 2: storm answers were not all 401" in problems
    assert "round 2: 3 JWKS fetches in one" in problems
    assert "3 JWKS fetches during the storms (target <= 1)" in problems
    assert "round 1" not in problems

    # Two windows 40 s apart may each refetch once: one fetch per started 30 s of span.
    spread = StormResult(
        settings,
        rounds=[_round(20_000, {401: 20_000}, fetches=1), _round(20_000, {401: 20_000}, fetches=1)],
        storm_span_s=45.0,
        jwks_fetches=2,
    )
    assert spread.allowed_fetches == 2 and spread.problems() == []

    # The storm is at least 10,000 requests in all, however many rounds it is split into.
    small = StormResult(settings, rounds=[_round(5_000, {401: 5_000})])
    assert small.problems() == ["only 5,000 storm requests in all (< 10,000)"]
    split = StormResult(settings, rounds=[_round(5_000, {401: 5_000})] * 2, storm_span_s=22.0)
    assert split.problems() == []
    quick = StormSettings(
        duration=3.0, connections=50, storm_connections=50, warmup=2.0, min_requests=0
    )
    short = StormResult(quick, rounds=[_round(5_000, {401: 5_000})])
    assert short.problems() == []
    assert "note: 5,000 storm requests in all (< 10,000): a short run" in format_storm(short)


def test_the_storm_verdict_is_the_median_round() -> None:
    settings = StormSettings(
        duration=10.0, connections=50, storm_connections=20, warmup=2.0, rounds=3
    )
    rounds = [
        _round(12_000, {401: 12_000}, alone=100_000, during=70_000),
        _round(12_000, {401: 12_000}, alone=80_000, during=76_000, alone_last=True),
        _round(12_000, {401: 12_000}, alone=90_000, during=99_000),
    ]
    result = StormResult(settings, rounds=rounds, storm_span_s=53.0, jwks_fetches=2)
    assert [round(x, 2) for x in result.ratios] == [0.7, 0.95, 1.1]
    assert result.ratio == pytest.approx(0.95)
    report = format_storm(result)
    assert "round 2 (alone last)" in report
    assert "0.95x (median of the rounds: 0.70, 0.95, 1.10)" in report
    assert result.to_json()["valid_during_over_alone_rounds"] == [0.7, 0.95, 1.1]


def test_the_storm_is_reported_beside_its_control() -> None:
    settings = StormSettings(
        duration=10.0, connections=50, storm_connections=20, warmup=2.0, rounds=3
    )
    rounds = [
        _round(12_000, {401: 12_000}, alone=100_000, during=80_000, control=85_000),
        _round(12_000, {401: 12_000}, alone=100_000, during=78_000, control=90_000),
        _round(12_000, {401: 12_000}, alone=100_000, during=82_000, control=86_000),
    ]
    result = StormResult(settings, rounds=rounds, storm_span_s=53.0, jwks_fetches=2)
    assert result.ratio == pytest.approx(0.80) and result.control_ratio == pytest.approx(0.86)
    assert result.problems() == []
    report = format_storm(result)
    assert "control, valid req/s beside the same pace of valid requests / alone: 0.86x" in report
    assert "0.85, 0.90, 0.86" in report
    data = result.to_json()
    assert data["valid_during_paced_valid_over_alone"] == 0.86
    assert data["rounds"][1]["valid_during_paced_valid_over_alone"] == 0.9

    refused = _round(12_000, {401: 12_000}, control=85_000, control_statuses={200: 10, 401: 5})
    bad = StormResult(settings, rounds=[refused], storm_span_s=11.0, jwks_fetches=1)
    assert any("control's paced valid requests were not all 200" in p for p in bad.problems())


def test_the_paced_token_script_sends_the_token_at_a_pace(tmp_path: Path) -> None:
    text = write_paced_token(tmp_path / "paced.lua", TOKEN, delay_ms=13.3).read_text()
    assert json.dumps(TOKEN) in text and "function delay()" in text and "13.300" in text
    assert "status %d %d" in text  # counts the statuses, as the other scripts do


def test_the_storm_has_rounds_of_its_own() -> None:
    default = parse_args([])
    assert (default.storm_rounds, default.storm_duration) == (10, 3.0)
    assert (default.rounds, default.duration) == (3, 10.0)
    quick = parse_args(["--quick"])
    assert (quick.storm_rounds, quick.storm_duration) == (1, 3.0)
    with pytest.raises(SystemExit):
        parse_args(["--storm-rounds", "0"])
