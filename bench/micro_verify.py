"""Micro-benchmark of the token miss path against the raw `cryptography` verify it wraps.

    .venv/bin/python -m bench.micro_verify                 # RS256 PS256 ES256 EdDSA, 7 repeats
    .venv/bin/python -m bench.micro_verify --repeat 15 --algs RS256,ES256 --stat min

For each algorithm, one realistic access token (Kong Identity's header and claims) is minted
with PyJWT, then timed four ways on the same signature:
  raw     key.verify(signature, signing_input, padding, hash) with prebuilt padding/hash objects
          (ES256: the DER form of the signature, converted once outside the loop)
  ours    split_token (with the verifier's header cache) + KeySet.select + verify_signature +
          decode_claims + check_claims: the gateway's miss path
  pyjwt   jwt.decode(token, key_object, algorithms=[alg], issuer=...) with the key preloaded
  floor   raw plus the least any Python JOSE verifier does, with none of our checks: base64 of
          the three segments (binascii) and JSON of header and payload (json's C scanner with
          the same duplicate-refusing hook): how much of ours-raw is stdlib work, not checks
Each figure is the median (`--stat min`: the minimum) over `--repeat` timeit runs of the
per-call time, each run sized to take about `--run-time` seconds, the four rows' runs
interleaved; ratios are to raw. The clock is the process's CPU time by default (`--clock wall`
for perf_counter): on a shared machine, time spent descheduled is not ours. Run it on a quiet
machine, pinned (`taskset -c 1 ...`): the ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import timeit
from binascii import a2b_base64
from collections.abc import Callable
from dataclasses import dataclass
from json.scanner import make_scanner
from typing import Any

import cryptography
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokengate.gateway.jwk import URL_TO_STANDARD, b64url_decode, parse_jwks
from tokengate.gateway.verify import (
    ClaimRules,
    HeaderCache,
    check_claims,
    decode_claims,
    split_token,
    verify_signature,
)

ISSUER = "http://127.0.0.1:9000/k3x9q2w7e5r1t8y4/auth"
KID = "0f9e8d7c-6b5a-4321-9876-543210fedcba"
ALGS = ("RS256", "PS256", "ES256", "EdDSA")


@dataclass
class Case:
    alg: str
    token: str
    raw: Callable[[], object]
    ours: Callable[[], object]
    pyjwt: Callable[[], object]
    floor: Callable[[], object]


def _claims(now: int) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "sub": "c1d2e3f4-0000-4111-8222-933344445555",
        "aud": ["http://127.0.0.1:8000/api"],
        "exp": now + 3600,
        "iat": now,
        "nbf": now,
        "jti": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
        "client_id": "c1d2e3f4-0000-4111-8222-933344445555",
        "scope": "orders:read orders:write",
    }


def make_case(alg: str, now: int) -> Case:
    private: Any
    if alg in ("RS256", "PS256"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update(kid=KID, alg=alg, use="sig")
    token = jwt.encode(_claims(now), private, algorithm=alg, headers={"kid": KID, "typ": "JWT"})
    public = private.public_key()

    head, payload, sig = token.split(".")
    signing_input = f"{head}.{payload}".encode("ascii")
    signature = b64url_decode(sig)
    raw: Callable[[], object]
    if alg == "RS256":
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        raw = lambda: public.verify(signature, signing_input, pkcs1, sha256)  # noqa: E731
    elif alg == "PS256":
        sha256 = hashes.SHA256()
        pss = padding.PSS(mgf=padding.MGF1(sha256), salt_length=32)
        raw = lambda: public.verify(signature, signing_input, pss, sha256)  # noqa: E731
    elif alg == "ES256":
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        ecdsa = ec.ECDSA(hashes.SHA256())
        raw = lambda: public.verify(der, signing_input, ecdsa)  # noqa: E731
    else:
        raw = lambda: public.verify(signature, signing_input)  # noqa: E731

    keys = parse_jwks({"keys": [jwk]})
    assert not keys.rejected, keys.rejected
    rules = ClaimRules(issuers=frozenset({ISSUER}), leeway=0.0, max_lifetime=86400.0)
    clock = time.time
    headers = HeaderCache()  # as the gateway's verifier holds one: an issuer's header is reused

    def ours() -> float:
        parts = split_token(token, headers)
        key = keys.select(parts.kid, parts.alg)
        if key is None:
            raise LookupError("no key")
        verify_signature(parts, key)
        return check_claims(decode_claims(parts), rules, clock())

    scan = _scanner()

    def floor() -> object:
        h, p, s = token.encode("ascii").translate(URL_TO_STANDARD).split(b".")
        scan(a2b_base64(h + b"=" * (-len(h) % 4)).decode(), 0)
        raw_signature = a2b_base64(s + b"=" * (-len(s) % 4))
        if raw_signature != signature:
            raise AssertionError("floor decoded another signature")
        raw()
        return scan(a2b_base64(p + b"=" * (-len(p) % 4)).decode(), 0)

    def pyjwt() -> object:
        return jwt.decode(
            token, public, algorithms=[alg], issuer=ISSUER, options={"verify_aud": False}
        )

    for check in (raw, ours, pyjwt, floor):  # each must succeed before it is timed
        check()
    return Case(alg, token, raw, ours, pyjwt, floor)


def _scanner() -> Callable[[str, int], tuple[Any, int]]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            raise ValueError("duplicate")
        return obj

    scanner: Callable[[str, int], tuple[Any, int]] = make_scanner(
        json.JSONDecoder(object_pairs_hook=pairs)  # type: ignore[arg-type]
    )
    return scanner


def timed(
    fns: dict[str, Callable[[], object]],
    repeat: int,
    run_time: float,
    clock: Callable[[], float] = time.process_time,
    stat: Callable[[list[float]], float] = statistics.median,
) -> dict[str, float]:
    """Per-call seconds of each fn (median of the runs by default), runs interleaved (raw, ours,
    pyjwt, raw, ...) so that load drifting during the measurement hits every row alike."""
    timers = {name: timeit.Timer(fn, timer=clock) for name, fn in fns.items()}
    numbers = {}
    for name, timer in timers.items():
        number, elapsed = timer.autorange()
        numbers[name] = max(1, int(number * run_time / max(elapsed, 1e-9)))
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, timer in timers.items():
            runs[name].append(timer.timeit(numbers[name]) / numbers[name])
    return {name: stat(values) for name, values in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_verify", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="timeit runs per figure")
    parser.add_argument("--run-time", type=float, default=0.2, help="seconds per timeit run")
    parser.add_argument("--algs", default=",".join(ALGS), help="comma-separated subset")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: process CPU time (robust when other work shares the cores); wall: perf_counter",
    )
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="statistic over the runs (min: the least disturbed run, for a noisy machine)",
    )
    args = parser.parse_args(argv)
    algs = [a for a in args.algs.split(",") if a]
    unknown = set(algs) - set(ALGS)
    if unknown:
        parser.error(f"unknown algorithm(s): {', '.join(sorted(unknown))}")
    now = int(time.time())
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(
        f"python {sys.version.split()[0]}, cryptography {cryptography.__version__},"
        f" pyjwt {jwt.__version__}; {args.stat} of {args.repeat} interleaved runs,"
        f" {args.clock} µs per call"
    )
    columns = ("raw", "ours", "pyjwt", "ours/raw", "pyjwt/raw", "floor/raw", "ours-raw")
    print(f"{'alg':6} " + " ".join(f"{c:>9}" for c in columns))
    for alg in algs:
        case = make_case(alg, now)
        medians = timed(
            {"raw": case.raw, "ours": case.ours, "pyjwt": case.pyjwt, "floor": case.floor},
            args.repeat,
            args.run_time,
            clock,
            statistics.median if args.stat == "median" else min,
        )
        raw, ours, pyjwt, floor = (medians[k] for k in ("raw", "ours", "pyjwt", "floor"))
        print(
            f"{alg:6} {raw * 1e6:9.1f} {ours * 1e6:9.1f} {pyjwt * 1e6:9.1f}"
            f" {ours / raw:8.2f}x {pyjwt / raw:8.2f}x {floor / raw:8.2f}x {(ours - raw) * 1e6:9.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
