"""Micro-benchmark of the token endpoint's logic (no HTTP) against the raw signature it wraps.

    .venv/bin/python -m bench.micro_token                       # RS256, in-memory store, 7 repeats
    .venv/bin/python -m bench.micro_token --algs RS256,PS256 --data /tmp/bench-identity.db

One auth server as the getting-started guide builds it (a scope, a static claim tied to it, a
JSON claim and a templated one in every token) and one client, then three rows per algorithm:
  raw     signer.private_key.sign(signing_input, padding, hash): cryptography alone, prebuilt
          padding/hash objects, the same 2048-bit key
  mint    tokens.mint_access_token: scopes already granted, claims rendered (templates
          included), JSON + base64url, the cached signer's signature
  grant   grants.token_endpoint: client_secret_post checked by the store (HMAC-SHA256), scopes,
          claims and the active key read from SQLite, the token minted and recorded (an INSERT)
Figures are per-call µs (median, or --stat min, of --repeat interleaved runs; CPU time by
default) and tokens/s; `x raw` is the rate as a fraction of raw's (the target: >= 0.80 on one
core). `--data FILE` runs against a SQLite file (WAL, synchronous=NORMAL) instead of memory; an
existing file is never written: a fresh one is made in a temporary directory instead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cryptography
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bench.micro_verify import timed
from tokengate.identity.grants import Issuer, TokenRequest, token_endpoint
from tokengate.identity.signing import signer_for
from tokengate.identity.store import Store
from tokengate.identity.tokens import grant_scopes, mint_access_token

ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
PUBLIC_URL = "http://127.0.0.1:9000"


def make_rows(store: Store, alg: str) -> dict[str, Callable[[], object]]:
    server = store.create_auth_server(
        name=f"bench-{alg}", audience="http://myhttpbin.dev", signing_algorithm=alg
    )
    scope = store.create_scope(server.id, name="my-scope")
    store.create_claim(
        server.id,
        name="test-claim",
        value="test",
        include_in_token=True,
        include_in_scopes=(scope.id,),
    )
    store.create_claim(
        server.id,
        name="plan",
        value='{"tier": "gold", "seats": 5}',
        include_in_token=True,
        include_in_all_scopes=True,
    )
    store.create_claim(
        server.id,
        name="team",
        value='${ .Client.Labels.team | default "core" }',
        include_in_token=True,
        include_in_all_scopes=True,
    )
    client, secret = store.create_client(
        server.id,
        name="Client",
        allow_scopes=(scope.id,),
        labels={"team": "payments"},
        access_token_duration=3600,
    )
    issuer = Issuer(store, server, f"{PUBLIC_URL}/{server.issuer_id}/auth", time.time)
    signer = signer_for(store.active_key(server.id))
    sign_padding: padding.AsymmetricPadding
    sign_hash: hashes.HashAlgorithm = {
        "256": hashes.SHA256(),
        "384": hashes.SHA384(),
        "512": hashes.SHA512(),
    }[alg[2:]]
    if alg.startswith("RS"):
        sign_padding = padding.PKCS1v15()
    else:
        sign_padding = padding.PSS(mgf=padding.MGF1(sign_hash), salt_length=sign_hash.digest_size)
    key = signer.private_key
    granted = grant_scopes(store.list_scopes(server.id), client, "my-scope")
    claims = store.list_claims(server.id)
    request = TokenRequest(
        {
            "grant_type": "client_credentials",
            "client_id": client.id,
            "client_secret": secret,
            "scope": "my-scope",
        }
    )
    token = token_endpoint(issuer, request)["access_token"]  # a realistic signing input
    signing_input = token.rpartition(".")[0].encode("ascii")

    def raw() -> object:
        return key.sign(signing_input, sign_padding, sign_hash)

    def mint() -> object:
        return mint_access_token(
            issuer=issuer.url,
            server=server,
            client=client,
            granted=granted,
            claims=claims,
            signer=signer,
            now=time.time(),
        )

    def grant() -> object:
        return token_endpoint(issuer, request)

    for check in (raw, mint, grant):
        check()
    return {"raw": raw, "mint": mint, "grant": grant}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_token", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="timeit runs per figure")
    parser.add_argument("--run-time", type=float, default=0.3, help="seconds per timeit run")
    parser.add_argument("--algs", default="RS256", help=f"comma-separated, of {','.join(ALGS)}")
    parser.add_argument("--data", type=Path, help="a SQLite file for the store (default: memory)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="statistic over the runs (min: the least disturbed run, for a noisy machine)",
    )
    args = parser.parse_args(argv)
    algs = [a for a in args.algs.split(",") if a]
    if unknown := set(algs) - set(ALGS):
        parser.error(f"unknown algorithm(s): {', '.join(sorted(unknown))}")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with tempfile.TemporaryDirectory() as tmp:
        path = None if args.data is None else args.data
        if path is not None and path.exists():
            path = Path(tmp) / "identity.db"  # never write into an existing database
        store = Store.open(path)
        print(
            f"python {sys.version.split()[0]}, cryptography {cryptography.__version__};"
            f" store: {'memory' if path is None else path};"
            f" {args.stat} of {args.repeat} interleaved runs, {args.clock} time"
        )
        print(f"{'alg':6} {'row':6} {'µs/token':>9} {'tokens/s':>9} {'x raw':>6}")
        try:
            for alg in algs:
                rows = make_rows(store, alg)
                stat = statistics.median if args.stat == "median" else min
                per_call = timed(rows, args.repeat, args.run_time, clock, stat)
                raw_rate = 1 / per_call["raw"]
                for name, seconds in per_call.items():
                    rate = 1 / seconds
                    print(
                        f"{alg:6} {name:6} {seconds * 1e6:9.1f} {rate:9.0f} {rate / raw_rate:6.2f}"
                    )
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
