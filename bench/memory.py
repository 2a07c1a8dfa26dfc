"""Memory of one gateway worker as its verified-token cache fills: the figure the Kubernetes
manifests' memory limits are sized by (deploy/kubernetes/README.md, tests/test_deploy.py).

    .venv/bin/python -m bench.memory                      # 25,000 tokens, 5,000 at a time
    .venv/bin/python -m bench.memory --tokens 40000 --step 10000

Starts bench.issuer (pre-minted RS256 tokens), the echo upstream and `tokengate gateway
--workers 1` with one openid-connect route, then sends each token twice (a miss that verifies
and caches it, then a hit that prepares its upstream edits) and prints the worker's RSS
(/proc/PID/status VmRSS) after each step. The cache holds two generations of 10,000 entries, so
the RSS levels off from 20,000 tokens on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.systems import free_port

PYTHON = sys.executable


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for process {pid}")


def kong_yaml(upstream: str, issuer: dict[str, str]) -> str:
    return f"""_format_version: "3.0"
services:
  - name: up
    url: http://{upstream}
    routes:
      - name: auth
        paths: [/auth]
        plugins:
          - name: openid-connect
            config:
              issuer: {issuer["issuer"]}
              auth_methods: [bearer]
              audience_required: [{issuer["audience"]}]
              scopes_required: [read]
"""


async def fill(proxy: str, tokens: list[str], step: int, pid: int) -> list[tuple[int, float]]:
    """(tokens sent so far, the worker's RSS in MiB) after each step."""
    sizes = [(0, rss_mib(pid))]
    async with aiohttp.ClientSession() as session:
        gate = asyncio.Semaphore(20)

        async def send(token: str) -> None:
            async with (
                gate,
                session.get(
                    f"{proxy}/auth/x", headers={"Authorization": f"Bearer {token}"}
                ) as response,
            ):
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"a valid token got {response.status}")

        for start in range(0, len(tokens), step):
            batch = tokens[start : start + step]
            for _ in range(2):  # a miss, then a hit
                await asyncio.gather(*(send(token) for token in batch))
            sizes.append((start + len(batch), rss_mib(pid)))
    return sizes


async def wait_ready(status: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"{status}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the gateway never became ready")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--tokens", type=int, default=25_000)
    parser.add_argument("--step", type=int, default=5_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tokengate-memory-") as scratch:
        out = Path(scratch)
        issuer_port = free_port()
        processes: list[subprocess.Popen[Any]] = [
            subprocess.Popen(
                [
                    *(PYTHON, "-m", "bench.issuer", "--listen", f"127.0.0.1:{issuer_port}"),
                    *("--out", str(out / "issuer"), "--tokens", str(args.tokens)),
                ],
                stdout=subprocess.DEVNULL,
            )
        ]
        try:
            echo = subprocess.Popen(
                [PYTHON, "-m", "tokengate.echo", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True
            )
            processes.append(echo)
            assert echo.stdout is not None
            upstream = echo.stdout.readline().split(" on ")[1].split(";")[0]
            deadline = time.monotonic() + 600
            while not (out / "issuer" / "issuer.json").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("bench.issuer wrote no issuer.json")
                time.sleep(0.5)
            time.sleep(1)  # written before it serves
            issuer = json.loads((out / "issuer" / "issuer.json").read_text())
            (out / "kong.yaml").write_text(kong_yaml(upstream, issuer))
            proxy_port, status_port = free_port(), free_port()
            gateway = subprocess.Popen(
                [
                    *(PYTHON, "-m", "tokengate", "gateway", "--config", str(out / "kong.yaml")),
                    *("--listen", f"127.0.0.1:{proxy_port}"),
                    *("--status-listen", f"127.0.0.1:{status_port}"),
                    *("--workers", "1", "--no-access-log"),
                ]
            )
            processes.append(gateway)
            proxy, status = f"http://127.0.0.1:{proxy_port}", f"http://127.0.0.1:{status_port}"
            asyncio.run(wait_ready(status))
            tokens = (out / "issuer" / "tokens.txt").read_text().split()
            sizes = asyncio.run(fill(proxy, tokens, args.step, gateway.pid))
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait()
    print("tokens sent  worker RSS")
    for sent, mib in sizes:
        print(f"{sent:>11,}  {mib:6.0f} MiB")
    start, full = sizes[0][1], max(mib for _, mib in sizes)
    print(f"at start {start:.0f} MiB; with a full verified-token cache {full:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
