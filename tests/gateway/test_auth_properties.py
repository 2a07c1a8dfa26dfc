"""Property tests: whatever a client puts where a token goes, the answer is a verdict
(the edits to forward, or a 400/401/403) — never an escaped exception (a 500) and never a pass
for anything but a valid token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from tests.gateway.issuer import TestIssuer
from tokengate.gateway.auth import Authenticator, key_source
from tokengate.gateway.errors import AuthError
from tokengate.gateway.keys import KeyRegistry
from tokengate.gateway.oidc_config import OidcConfig

Live = tuple[asyncio.AbstractEventLoop, Authenticator, str]


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """An authenticator with loaded keys, on a loop of its own (hypothesis drives it sync)."""
    loop = uvloop.new_event_loop()
    issuer = TestIssuer()
    loop.run_until_complete(issuer.start())
    issuer.add_key("RS256")
    token = issuer.mint()

    async def setup() -> tuple[aiohttp.ClientSession, KeyRegistry, Authenticator]:
        session = aiohttp.ClientSession()
        registry = KeyRegistry(session)
        config = OidcConfig.for_issuer(issuer.issuer, scopes_required=("read",))
        auth = Authenticator(config, registry.get(key_source(config)), clock=time.time)
        await auth.keys.refresh()
        return session, registry, auth

    session, registry, auth = loop.run_until_complete(setup())
    yield loop, auth, token
    loop.run_until_complete(registry.close())
    loop.run_until_complete(session.close())
    loop.run_until_complete(issuer.close())
    loop.close()


def verdict(live: Live, headers: dict[str, str], path: str = "/") -> Any:
    loop, auth, _ = live
    request = make_mocked_request("GET", path, headers=CIMultiDict(headers))
    try:
        return loop.run_until_complete(auth.check(request, None))
    except AuthError as exc:
        return exc.status  # callers assert which statuses are allowed


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_any_authorization_value_gets_a_verdict(live: Live, value: str) -> None:
    assert verdict(live, {"Authorization": value}) in (400, 401)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii")))
def test_any_bearer_credential_gets_a_verdict(live: Live, credential: str) -> None:
    assert verdict(live, {"Authorization": f"Bearer {credential}"}) in (400, 401)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_mutated_valid_token_never_passes(live: Live, data: st.DataObject) -> None:
    token = live[2]
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.sampled_from("ABCabc019-_.=+/ "))
    mutated = token[:position] + replacement + token[position + 1 :]
    result = verdict(live, {"Authorization": f"Bearer {mutated}"})
    if mutated != token:
        assert result in (400, 401)


def test_the_valid_token_passes(live: Live) -> None:
    assert not isinstance(verdict(live, {"Authorization": f"Bearer {live[2]}"}), int)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii", exclude_characters="#")))
def test_any_query_gets_a_verdict(live: Live, query: str) -> None:
    from urllib.parse import quote

    result = verdict(live, {}, path="/?" + quote(query, safe="=&;%"))
    assert result in (400, 401)
