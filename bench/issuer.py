"""A standalone OpenID Connect issuer for load tests: discovery, JWKS, and pre-minted tokens.

    python -m bench.issuer --listen 127.0.0.1:9400 --out /tmp/bench-issuer --tokens 10000

Writes into --out: `token` (one RS256 token), `tokens.txt` (--tokens distinct tokens, one per
line), `public.pem` (the key as a plain public-key PEM, for HAProxy's jwt_verify), and
`issuer.json` ({"issuer", "audience", "kid"}), and `bad-tokens.json` (name → a token signed with
the right key that must still be refused: expired, not yet valid, wrong audience, wrong issuer,
no "read" scope); then serves discovery and JWKS until stopped. Tokens live for --lifetime seconds
(default one hour) and carry scope "read write".
"""

from __future__ import annotations

import argparse
import base64
import json
import time
import uuid
from pathlib import Path

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "bench-api"


def _b64_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint_all(key: rsa.RSAPrivateKey, kid: str, issuer: str, count: int, lifetime: int) -> list[str]:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": [AUDIENCE],
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "scope": "read write",
        "client_id": "bench",
    }
    return [
        jwt.encode(
            {**claims, "sub": f"client-{i}", "jti": str(uuid.uuid4())},
            key,
            algorithm="RS256",
            headers={"kid": kid, "typ": "JWT"},
        )
        for i in range(count)
    ]


def mint_bad(key: rsa.RSAPrivateKey, kid: str, issuer: str, lifetime: int) -> dict[str, str]:
    """Correctly signed tokens that a verifier must refuse, by what is wrong with them."""
    now = int(time.time())
    good = {
        "iss": issuer,
        "aud": [AUDIENCE],
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "scope": "read write",
        "client_id": "bench",
        "sub": "client-bad",
    }
    variants: dict[str, dict[str, object]] = {
        "expired": {"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600},
        "not_yet_valid": {"nbf": now + 3600, "exp": now + 7200},
        "wrong_audience": {"aud": ["other-api"]},
        "wrong_issuer": {"iss": issuer + "/other"},
        "no_read_scope": {"scope": "write"},
    }
    return {
        name: jwt.encode(
            {**good, **changes, "jti": str(uuid.uuid4())},
            key,
            algorithm="RS256",
            headers={"kid": kid, "typ": "JWT"},
        )
        for name, changes in variants.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:9400")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--lifetime", type=int, default=3600)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    issuer = f"http://{host}:{port}"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = str(uuid.uuid4())
    numbers = key.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "RSA",
                "kid": kid,
                "alg": "RS256",
                "use": "sig",
                "n": _b64_uint(numbers.n),
                "e": _b64_uint(numbers.e),
            }
        ]
    }
    discovery = {
        "issuer": issuer,
        "jwks_uri": issuer + "/jwks",
        "token_endpoint": issuer + "/oauth/token",
    }

    args.out.mkdir(parents=True, exist_ok=True)
    tokens = mint_all(key, kid, issuer, max(args.tokens, 1), args.lifetime)
    (args.out / "token").write_text(tokens[0])
    (args.out / "tokens.txt").write_text("\n".join(tokens) + "\n")
    (args.out / "public.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    bad = mint_bad(key, kid, issuer, args.lifetime)
    (args.out / "bad-tokens.json").write_text(json.dumps(bad, indent=2) + "\n")
    (args.out / "issuer.json").write_text(
        json.dumps({"issuer": issuer, "audience": AUDIENCE, "kid": kid})
    )

    jwks_hits = 0

    async def serve_discovery(request: web.Request) -> web.Response:
        return web.json_response(discovery)

    async def serve_jwks(request: web.Request) -> web.Response:
        nonlocal jwks_hits
        jwks_hits += 1
        return web.json_response(jwks, headers={"Cache-Control": "max-age=3600"})

    async def serve_stats(request: web.Request) -> web.Response:
        return web.json_response({"jwks_hits": jwks_hits})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", serve_discovery)
    app.router.add_get("/jwks", serve_jwks)
    app.router.add_get("/stats", serve_stats)
    web.run_app(app, host=host, port=int(port), print=None, access_log=None)


if __name__ == "__main__":
    main()
