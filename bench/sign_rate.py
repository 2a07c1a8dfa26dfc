"""The raw RSA signing ceiling: how many RS256 signatures one Python process makes per second.

    taskset -c 0 .venv/bin/python -m bench.sign_rate --duration 10
    # → {"signatures": 21000, "seconds": 10.0, "signatures_per_sec": 2100.0}

Signs a ~300-byte input (the size of a JWT's signing input) with one RSA-2048 private key
(cryptography, PKCS1v15 + SHA-256) in a loop for `--duration` seconds and prints one JSON line.
The identity server's token endpoint cannot beat this on the same core: every token is one
such signature.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

INPUT_BYTES = 300
CHECK_EVERY = 20  # signatures between clock reads


def sign_rate(duration: float, size: int = INPUT_BYTES) -> tuple[int, float]:
    """(signatures made, seconds taken) signing for about `duration` seconds."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = (b"eyJhbGciOiJSUzI1NiJ9." * (size // 21 + 1))[:size]
    sign, pad, algorithm = key.sign, padding.PKCS1v15(), hashes.SHA256()
    sign(message, pad, algorithm)  # warm
    count, start = 0, time.perf_counter()
    deadline = start + duration
    while True:
        for _ in range(CHECK_EVERY):
            sign(message, pad, algorithm)
        count += CHECK_EVERY
        now = time.perf_counter()
        if now >= deadline:
            return count, now - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sign_rate", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (10)")
    parser.add_argument("--bytes", type=int, default=INPUT_BYTES, help="input size (300)")
    args = parser.parse_args(argv)
    count, seconds = sign_rate(args.duration, args.bytes)
    result = {"signatures": count, "seconds": round(seconds, 3)}
    print(json.dumps({**result, "signatures_per_sec": round(count / seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
