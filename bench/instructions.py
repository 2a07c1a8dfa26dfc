"""Instructions per request, counted by valgrind's callgrind: repeatable where req/s are not.

    .venv/bin/python -m bench.instructions                         # every case, N1=300 N2=1500
    .venv/bin/python -m bench.instructions --cases public-bearer,auth --n2 2700 --repeat 2

Starts the bench upstream and issuer (as `make bench` does), writes the bench kong.yaml, then
for each case runs the gateway under callgrind twice, with N1 and N2 requests over one
keep-alive connection, and prints (instructions(N2) - instructions(N1)) / (N2 - N1): start-up
and shutdown cancel out. User-space instructions only (system calls are not counted), and
`cryptography`'s native code may take other paths under valgrind than on the bare CPU, so
compare cases with each other, not with timings. The gateway runs with --no-access-log, as in
`make bench`, and PYTHONHASHSEED=0.

Cases:
  public          /public, no Authorization header                         (row b)
  public-bearer   /public with the auth rows' Authorization header         (row d0)
  auth            /auth, one valid token repeated: the verified-token cache (row d)
  auth-nocache    /auth-nocache, a different valid token each request      (row e)
  storm           /auth, a random unknown kid each request (all 401)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from bench import systems

CASES = ("public", "public-bearer", "auth", "auth-nocache", "storm")
PROXY_PORT, STATUS_PORT = 8300, 8301


def drive(port: int, path: str, tokens: Sequence[str | None], count: int) -> dict[str, int]:
    """`count` GETs one after another over one connection, cycling through `tokens` (None: no
    Authorization header); the statuses seen."""
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + (f"Authorization: Bearer {token}\r\n".encode() if token else b"")
        + b"\r\n"
        for token in tokens
    ]
    statuses: dict[str, int] = {}
    with socket.create_connection(("127.0.0.1", port)) as sock:
        buffer = b""
        for i in range(count):
            sock.sendall(requests[i % len(requests)])
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0:
                    head = buffer[:end].decode("latin-1").lower().split("\r\n")
                    length = next(
                        (int(h.split(":", 1)[1]) for h in head if h.startswith("content-length:")),
                        0,
                    )
                    if len(buffer) >= end + 4 + length:
                        status = head[0].split(" ")[1]
                        statuses[status] = statuses.get(status, 0) + 1
                        buffer = buffer[end + 4 + length :]
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the gateway closed the connection")
                buffer += chunk
    return statuses


def count(config: Path, path: str, tokens: Sequence[str | None], requests: int, expect: str) -> int:
    """Instructions of one gateway process that served `requests` requests (each answered
    with status `expect`, or this raises), then stopped."""
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-callgrind-"))
    try:
        out = workdir / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        argv += [str(systems.tokengate_executable()), "gateway", "--config", str(config)]
        argv += ["--listen", f"127.0.0.1:{PROXY_PORT}", "--status-listen"]
        argv += [f"127.0.0.1:{STATUS_PORT}", "--log-level", "warning", "--no-access-log"]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        quiet = subprocess.DEVNULL
        process = subprocess.Popen(argv, stdout=quiet, stderr=quiet, env=env)
        try:
            _wait_ready(process)
            statuses = drive(PROXY_PORT, path, tokens, requests)
            if statuses != {expect: requests}:
                raise RuntimeError(f"{path}: statuses {statuses}, expected all {expect}")
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError("callgrind wrote no totals")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], deadline: float = 240) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode} under valgrind")
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{STATUS_PORT}/readyz"
            with urllib.request.urlopen(url, timeout=2):
                time.sleep(1)  # let start-up settle before the counted requests
                return
        time.sleep(0.5)
    raise RuntimeError("the gateway did not become ready under valgrind")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {CASES}")
    parser.add_argument("--n1", type=int, default=300, help="requests of the short run (300)")
    parser.add_argument("--n2", type=int, default=1500, help="requests of the long run (1500)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the cases (1)")
    args = parser.parse_args(argv)
    cases = [case for case in args.cases.split(",") if case]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {CASES}")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="tokengate-instructions-"))
    pinning = systems.Pinning.detect(False)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        upstream = stack.enter_context(systems.start_upstream(workdir, pinning))
        issuer = stack.enter_context(systems.start_issuer(workdir, pinning, tokens=args.n2))
        config = workdir / "kong.yaml"
        config.write_text(systems.kong_yaml(upstream.url, systems.bench_routes(issuer)))
        minted = [line for line in issuer.tokens_file.read_text().splitlines() if line]
        unknown_kids = [
            systems.foreign_kid(issuer.token, f"storm-{secrets.token_hex(16)}")
            for _ in range(args.n2)
        ]
        table: dict[str, tuple[str, Sequence[str | None], str]] = {
            "public": ("/public/x", [None], "200"),
            "public-bearer": ("/public/x", [issuer.token], "200"),
            "auth": ("/auth/x", [issuer.token], "200"),
            "auth-nocache": ("/auth-nocache/x", minted, "200"),
            "storm": ("/auth/x", unknown_kids, "401"),
        }
        print(f"instructions per request, ({args.n2} - {args.n1} requests), callgrind")
        for _ in range(args.repeat):
            for case in cases:
                path, tokens, expect = table[case]
                short = count(config, path, tokens, args.n1, expect)
                long = count(config, path, tokens, args.n2, expect)
                print(f"{case:14} {(long - short) / (args.n2 - args.n1):10,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
