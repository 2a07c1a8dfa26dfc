"""The echo upstream of `tokengate run`: answers any request with the request, as JSON.

    app = create_echo_app(max_body=1024 * 1024)
    web.run_app(app, host="127.0.0.1", port=9100)

    python -m tokengate.echo 127.0.0.1:9100      # alone, e.g. behind `tokengate gateway`

    GET /anything?a=1 → {"method": "GET", "path": "/anything?a=1", "query": [["a", "1"]],
                         "headers": [["Host", "127.0.0.1:9100"], ...], "body": "",
                         "body_base64": false}

Headers and query parameters are lists of [name, value] pairs, in the order and spelling they
arrived (repeats included), so a user sees exactly what the gateway sent: the claim headers it
added, the identity headers it removed. A body that is not UTF-8 is sent back base64-encoded,
with `body_base64: true`. Bodies over `max_body` bytes get 413.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Sequence
from typing import Final

from aiohttp import web

from tokengate.addresses import show
from tokengate.listening import bind_failure, listening_socket

DEFAULT_MAX_BODY: Final = 1024 * 1024
MAX_BODY = web.AppKey("max_body", int)


def create_echo_app(*, max_body: int = DEFAULT_MAX_BODY) -> web.Application:
    app = web.Application(client_max_size=max_body)  # aiohttp refuses larger bodies in read()
    app[MAX_BODY] = max_body
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


async def _echo(request: web.Request) -> web.Response:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[MAX_BODY]
        return _json({"message": f"Request body larger than {limit} bytes"}, status=413)
    except ConnectionError:  # the client left mid-body: answered for form's sake, unread
        return _json({"message": "Connection closed before the whole body arrived"}, status=400)
    try:
        body, encoded = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(raw).decode("ascii"), True
    return _json(
        {
            "method": request.method,
            "path": request.raw_path,  # as sent: raw path and query, nothing decoded
            "query": [[name, value] for name, value in request.query.items()],
            # latin-1: HTTP header bytes map one to one, so nothing sent is lost or refused
            "headers": [
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, value in request.raw_headers
            ],
            "body": body,
            "body_base64": encoded,
        }
    )


def _json(document: dict[str, object], *, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_render(document), content_type="application/json")


def _render(document: dict[str, object]) -> str:
    """Indented JSON with each [name, value] pair on one line, so it reads well under curl."""
    fields = []
    for key, value in document.items():
        if isinstance(value, list) and value:
            pairs = ",\n".join(f"    {json.dumps(pair, ensure_ascii=False)}" for pair in value)
            fields.append(f"  {json.dumps(key)}: [\n{pairs}\n  ]")
        else:
            fields.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        print("usage: python -m tokengate.echo [HOST:PORT]  (default 127.0.0.1:9100)")
        return 0
    host, _, port = (args[0] if args else "127.0.0.1:9100").rpartition(":")
    if len(args) > 1 or not port.isdigit() or int(port) > 65535:
        print("usage: python -m tokengate.echo [HOST:PORT]", file=sys.stderr)
        return 2
    host = host.strip("[]") or "127.0.0.1"
    try:
        # Bound here, not by run_app: with port 0 the port the OS gave is known, and said.
        sock = listening_socket((host, int(port)))
    except OSError as exc:
        print(f"echo: cannot listen on {host}:{port}: {bind_failure(exc)}", file=sys.stderr)
        return 1
    started = f"echo upstream on {show(sock.getsockname()[:2])}; Ctrl-C stops it"
    web.run_app(
        create_echo_app(),
        sock=sock,
        print=lambda _: print(started, flush=True),  # said once it listens
        access_log=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
