"""The least any aiohttp token endpoint does: read the form, make one RS256 signature, answer.

    python -m bench.peers.aiohttp_sign --listen 127.0.0.1:8000

A `web.Application` with one POST route (any path) and GET /healthz, uvloop, no access
log. Each request reads its body and signs a fixed ~300-byte input (a JWT's signing input)
with one RSA-2048 key (cryptography, PKCS1v15 + SHA-256, prebuilt padding and hash objects),
and the answer is a token-sized JSON body. No client check, no claims, no storage: beside
`rsa-sign-raw` it shows how much of the signing ceiling aiohttp's own request handling leaves
to any token endpoint on the same core, and beside `identity-token` what tokengate's grant
costs on top.
"""

from __future__ import annotations

import argparse
import base64
import contextlib

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bench.upstream import new_event_loop, parse_listen

SIGNING_INPUT_BYTES = 300  # as bench/sign_rate.py signs


def make_app() -> web.Application:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing_input = (b"eyJhbGciOiJSUzI1NiJ9." * 20)[:SIGNING_INPUT_BYTES]
    sign, pad, algorithm = key.sign, padding.PKCS1v15(), hashes.SHA256()

    async def token(request: web.Request) -> web.Response:
        await request.read()
        signature = base64.urlsafe_b64encode(sign(signing_input, pad, algorithm)).rstrip(b"=")
        body = b'{"access_token":"%b.%b","token_type":"Bearer","expires_in":3600}' % (
            signing_input,
            signature,
        )
        return web.Response(body=body, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)  # the bench's readiness poll
    app.router.add_post("/{tail:.*}", token)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8000))
    args = parser.parse_args(argv)
    host, port = args.listen
    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(
            make_app(), host=host, port=port, access_log=None, print=None, loop=new_event_loop()
        )


if __name__ == "__main__":
    main()
