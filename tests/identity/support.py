"""Shared test helpers for the identity server: a settable clock and fast signing keys."""

from __future__ import annotations

import functools
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tokengate.identity import signing
from tokengate.identity.models import SigningKey
from tokengate.identity.runner import IdentityRunner

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    """One clock for both sides: the store's (datetimes) and the issuer's (Unix seconds)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def time(self) -> float:
        return self.now.timestamp()

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@functools.cache
def _pem(index: int) -> bytes:
    return signing.new_key("pool", "RS256", T0).private_pem


_key_numbers = itertools.count()


def pooled_key(auth_server_id: str, algorithm: str, now: datetime) -> SigningKey:
    """The store's key factory with a fresh kid but one of three real RSA-2048 key pairs in turn:
    generating a 2048-bit key takes 50-150 ms, and the tests make many auth servers."""
    pem = _pem(next(_key_numbers) % 3)
    return SigningKey(str(uuid.uuid4()), auth_server_id, algorithm, pem, now)


class IdentityTestServer(TestServer):
    """aiohttp's TestServer on the identity server's own runner, so tests go through the token
    endpoint's shortcut as `tokengate identity` serves it."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return IdentityRunner(self.app, **kwargs)
