"""Memory of one gateway worker as its verified-token cache fills: the figure the Kubernetes
manifests' memory limits are sized by (deploy/kubernetes/README.md, tests/test_deploy.py).

    .venv/bin/python -m bench.memory                      # 25,000 tokens, 5,000 at a time
    .venv/bin/python -m bench.memory --tokens 40000 --step 10000

Starts bench.issuer (pre-minted RS256 tokens), the echo upstream and `tokengate gateway` (one
worker, the bench's routes), then sends each token to /auth twice (a miss that verifies
and caches it, then a hit that prepares its upstream edits) and prints the worker's RSS
(/proc/PID/status VmRSS) after each step. The cache holds two generations of 10,000 entries, so
the RSS levels off from 20,000 tokens on.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bench.systems import (
    LOOPBACK,
    BenchContext,
    ManagedProcess,
    Pinning,
    bearer,
    bench_routes,
    free_port,
    gateway_launch,
    start_issuer,
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"no VmRSS for process {pid}")


async def fill(url: str, tokens: list[str], step: int, pid: int) -> list[tuple[int, float]]:
    """(tokens sent so far, the worker's RSS in MiB) after each step of `step` tokens."""
    sizes = [(0, rss_mib(pid))]
    async with aiohttp.ClientSession() as session:
        gate = asyncio.Semaphore(20)

        async def send(token: str) -> None:
            async with gate, session.get(url, headers=bearer(token)) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"a valid token got {response.status}")

        for start in range(0, len(tokens), step):
            batch = tokens[start : start + step]
            for _ in range(2):  # a miss, then a hit
                await asyncio.gather(*(send(token) for token in batch))
            sizes.append((start + len(batch), rss_mib(pid)))
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--tokens", type=int, default=25_000)
    parser.add_argument("--step", type=int, default=5_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tokengate-memory-") as scratch:
        workdir = Path(scratch)
        upstream_port = free_port()
        echo = [sys.executable, "-m", "tokengate.echo", f"{LOOPBACK}:{upstream_port}"]
        upstream_url = f"http://{LOOPBACK}:{upstream_port}"
        with (
            start_issuer(workdir, Pinning(), tokens=args.tokens) as issuer,
            ManagedProcess("upstream", echo, workdir / "upstream.log") as upstream,
        ):
            upstream.wait_ready(upstream_url + "/healthz")
            ctx = BenchContext(upstream_url=upstream_url, workdir=workdir, issuer=issuer)
            launch = gateway_launch(ctx, bench_routes(issuer))  # one worker
            with ManagedProcess("gateway", launch.argv, workdir / "gateway.log") as gateway:
                assert launch.ready_url is not None
                gateway.wait_ready(launch.ready_url)
                tokens = issuer.tokens_file.read_text().split()
                url = launch.base_url + "/auth/x"
                sizes = asyncio.run(fill(url, tokens, args.step, gateway.pid))
    print("tokens sent  worker RSS")
    for sent, mib in sizes:
        print(f"{sent:>11,}  {mib:6.0f} MiB")
    start, full = sizes[0][1], max(mib for _, mib in sizes)
    print(f"at start {start:.0f} MiB; with a full verified-token cache {full:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
