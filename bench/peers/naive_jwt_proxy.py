"""The naive proxy plus the JWT check a typical aiohttp user adds: PyJWT on every request.

    python -m bench.peers.naive_jwt_proxy --listen 127.0.0.1:8000 \\
        --upstream http://127.0.0.1:8081 --issuer http://127.0.0.1:9400 --audience bench-api

At start it reads the issuer's discovery document and JWKS once and keeps the first key as a
ready `cryptography` public key object (no PEM or JWK parsing per request). Then every request
runs `jwt.decode(token, key, algorithms=["RS256"], audience=..., issuer=...)` (signature, exp,
nbf, iss, aud) and is answered 401 when there is no bearer token or PyJWT refuses it; otherwise
it is forwarded exactly like bench/peers/naive_proxy.py (one ClientSession, StreamResponse).
No verified-token cache: that is what "what a typical user writes" means here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import urllib.request
from typing import Any

import jwt
from aiohttp import web

from bench.peers.naive_proxy import make_app, proxy
from bench.upstream import new_event_loop, parse_listen

_UNAUTHORIZED = b'{"message":"Unauthorized"}'


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (http on loopback)
        return json.load(response)


def load_key(issuer: str) -> Any:
    """The issuer's first RS256 signing key, from discovery → jwks_uri, as a key object."""
    discovery = _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    jwks = _get_json(discovery["jwks_uri"])
    return jwt.PyJWK(jwks["keys"][0], algorithm="RS256").key


def make_jwt_app(upstream: str, issuer: str, audience: str, key: Any) -> web.Application:
    async def checked(request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _unauthorized()
        try:
            jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=issuer)
        except jwt.PyJWTError:
            return _unauthorized()
        return await proxy(request)

    return make_app(upstream, checked)


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        body=_UNAUTHORIZED,
        content_type="application/json",
        headers={"WWW-Authenticate": 'Bearer realm="bench"'},
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8000))
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8081")
    parser.add_argument("--issuer", required=True, help="e.g. http://127.0.0.1:9400")
    parser.add_argument("--audience", default="bench-api")
    args = parser.parse_args(argv)
    key = load_key(args.issuer)
    host, port = args.listen
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            make_jwt_app(args.upstream, args.issuer, args.audience, key),
            host=host,
            port=port,
            access_log=None,
            print=None,
            loop=new_event_loop(),
        )


if __name__ == "__main__":
    main()
