"""keys.py over HTTP against the in-process TestIssuer: discovery, JWKS, single-flight, throttling,
rotation, keep-last-good, staleness, background refresh. Nothing of ours is mocked; time is a fake
clock where waiting would be slow."""

from __future__ import annotations

import asyncio
import base64
import inspect
import itertools
import json
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from tests.gateway import issuer as issuer_module
from tests.gateway.issuer import OMIT, TestIssuer, generate_key, public_jwk
from tests.ports import free_port
from tokengate.gateway.errors import KeysUnavailable, UnknownKey
from tokengate.gateway.keys import (
    IssuerKeys,
    KeyPolicy,
    KeyRegistry,
    KeySource,
    cache_lifetime,
)

# The fixture, bound under its own name here (pytest finds fixtures by module attribute).
test_issuer = issuer_module.test_issuer

# Bounds small enough for a fake clock to cross, and a max_stale distinct from the lifetimes.
POLICY = KeyPolicy(min_refresh=10, max_refresh=100, max_stale=500, retry_backoff=1)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


MakeKeys = Callable[..., IssuerKeys]


@pytest.fixture
async def make_keys(session: aiohttp.ClientSession, clock: FakeClock) -> AsyncIterator[MakeKeys]:
    """IssuerKeys for an issuer, from a registry that is closed after the test."""
    registries: list[KeyRegistry] = []

    def make(
        issuer: TestIssuer,
        *,
        policy: KeyPolicy = POLICY,
        clock_: Callable[[], float] = clock,
        **source: Any,
    ) -> IssuerKeys:
        registry = KeyRegistry(session, policy=policy, clock=clock_)
        registries.append(registry)
        return registry.get(source_for(issuer, **source))

    yield make
    for registry in registries:
        await registry.close()


def source_for(issuer: TestIssuer, **fields: Any) -> KeySource:
    fields.setdefault("timeout", 2.0)
    fields.setdefault("discovery_url", issuer.discovery_url)
    return KeySource(issuer=issuer.issuer, **fields)


def verifies(keys: IssuerKeys, token: str) -> bool:
    """Does the key that keys.py selects for this token verify its signature?"""
    head, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    key = keys.select(header.get("kid"), header["alg"])
    assert key is not None
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    return key.verify(header["alg"], f"{head}.{payload}".encode(), raw)


def random_kid() -> str:
    return f"{random.getrandbits(64):016x}"


# -- discovery ------------------------------------------------------------------------------------
async def test_loads_keys_through_discovery_and_jwks(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    keys = make_keys(test_issuer)
    assert keys.select(test_issuer.default_kid, "RS256") is None  # nothing before the first fetch
    key = await keys.key_for(test_issuer.default_kid, "RS256")
    assert key.kid == test_issuer.default_kid
    assert verifies(keys, test_issuer.mint())
    assert (test_issuer.discovery_hits, test_issuer.jwks_hits) == (1, 1)
    discovery, jwks = test_issuer.requests
    assert discovery.path == "/.well-known/openid-configuration"
    assert discovery.headers["Accept"] == "application/json"
    assert jwks.path == "/jwks"
    assert "application/json" in jwks.headers["Accept"]
    status = keys.status()
    assert status["loaded"] is True
    assert status["kids"] == [test_issuer.default_kid]
    assert status["jwks_uri"] == test_issuer.jwks_uri


async def test_issuer_under_a_path(make_keys: MakeKeys) -> None:
    async with TestIssuer(path="/abcdef0123456789/auth") as issuer:
        kid = issuer.add_key("ES256")
        keys = make_keys(issuer)
        assert (await keys.key_for(kid, "ES256")).kid == kid


@pytest.mark.parametrize(
    "found",
    [
        pytest.param(lambda i: i.issuer + "/", id="trailing-slash"),
        pytest.param(lambda i: i.issuer.upper(), id="case"),
        pytest.param(lambda i: "https://evil.example", id="other"),
        pytest.param(lambda i: [i.issuer], id="list"),
        pytest.param(lambda i: OMIT, id="missing"),
    ],
)
async def test_discovery_issuer_must_equal_the_configured_one(
    test_issuer: TestIssuer,
    make_keys: MakeKeys,
    caplog: pytest.LogCaptureFixture,
    found: Callable[[TestIssuer], object],
) -> None:
    test_issuer.discovery_overrides["issuer"] = found(test_issuer)
    keys = make_keys(test_issuer)
    with pytest.raises(KeysUnavailable):
        await keys.key_for(test_issuer.default_kid, "RS256")
    assert test_issuer.jwks_hits == 0  # never trusted that document's jwks_uri
    assert "does not match configured" in caplog.text
    assert "does not match configured" in str(keys.status()["last_error"])
    # the usual slip is named as such (Kong never compares the two)
    slash = "differ by a trailing slash" in str(keys.status()["last_error"])
    assert slash is (found(test_issuer) == test_issuer.issuer + "/")


@pytest.mark.parametrize(
    "jwks_uri",
    ["file:///etc/passwd", "/jwks", "ftp://127.0.0.1/jwks", "http:///jwks", 42, None, OMIT],
)
async def test_jwks_uri_must_be_an_http_url(
    test_issuer: TestIssuer, make_keys: MakeKeys, jwks_uri: object
) -> None:
    test_issuer.discovery_overrides["jwks_uri"] = jwks_uri
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    assert "not an http(s) URL" in str(keys.status()["last_error"])


async def test_https_discovery_may_not_point_to_http_jwks(make_keys: MakeKeys) -> None:
    async with TestIssuer(tls=True) as issuer:
        issuer.add_key("ES256")
        issuer.discovery_overrides["jwks_uri"] = issuer.jwks_uri.replace("https:", "http:")
        keys = make_keys(issuer, ssl_verify=False)
        assert not await keys.refresh()
        assert "is not https" in str(keys.status()["last_error"])


async def test_jwks_endpoint_overrides_discoverys_jwks_uri(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.discovery_overrides["jwks_uri"] = test_issuer.issuer + "/nowhere"
    keys = make_keys(test_issuer, jwks_endpoint=test_issuer.jwks_uri)
    assert await keys.refresh()
    assert keys.select(test_issuer.default_kid, "RS256") is not None
    # Discovery is still fetched: its issuer check is what ties these keys to the issuer.
    assert test_issuer.discovery_hits == 1


async def test_extra_jwks_uris_are_merged(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    async with TestIssuer() as other:
        extra_kid = other.add_key("EdDSA")
        keys = make_keys(test_issuer, extra_jwks_uris=(other.jwks_uri,))
        assert await keys.refresh()
        assert keys.select(test_issuer.default_kid, "RS256") is not None
        assert keys.select(extra_kid, "EdDSA") is not None
        assert verifies(keys, other.mint())


async def test_failing_extra_jwks_keeps_the_main_keys(
    test_issuer: TestIssuer, make_keys: MakeKeys, caplog: pytest.LogCaptureFixture
) -> None:
    async with TestIssuer() as other:
        extra_kid = other.add_key("ES384")
        keys = make_keys(test_issuer, extra_jwks_uris=(other.jwks_uri, "http://127.0.0.1:9/x"))
        assert await keys.refresh()  # the dead extra URI (port 9) costs nothing
        assert "extra JWKS http://127.0.0.1:9/x failed" in caplog.text
        assert keys.select(extra_kid, "ES384") is not None
        # The extra issuer goes down: its last good keys stay, the main ones refresh.
        other.down = True
        new_kid = test_issuer.add_key("PS256")
        assert await keys.refresh()
        assert keys.select(new_kid, "PS256") is not None
        assert keys.select(extra_kid, "ES384") is not None


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("document", ["discovery", "jwks"])
async def test_response_over_max_body_is_a_failure(
    test_issuer: TestIssuer, make_keys: MakeKeys, chunked: bool, document: str
) -> None:
    test_issuer.chunked = chunked
    padding = "x" * 5000
    if document == "discovery":
        test_issuer.discovery_overrides["padding"] = padding
    else:
        test_issuer.raw_jwks = test_issuer.jwks() | {"padding": padding}
    keys = make_keys(test_issuer, policy=KeyPolicy(max_body=4096))
    assert not await keys.refresh()
    assert "over 4096" in str(keys.status()["last_error"])
    # The same documents under the cap load fine, chunked or not.
    test_issuer.discovery_overrides.clear()
    test_issuer.raw_jwks = None
    assert await keys.refresh()


async def test_non_2xx_is_a_failure(
    test_issuer: TestIssuer, make_keys: MakeKeys, clock: FakeClock
) -> None:
    keys = make_keys(test_issuer, discovery_url=test_issuer.issuer + "/missing")
    assert not await keys.refresh()
    assert "HTTP 404" in str(keys.status()["last_error"])
    test_issuer.down = True
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    assert "HTTP 503" in str(keys.status()["last_error"])


async def test_redirects_are_not_followed(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(test_issuer.jwks_uri)

    app = web.Application()
    app.router.add_get("/jwks", redirect)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        keys = make_keys(test_issuer, jwks_endpoint=str(server.make_url("/jwks")))
        assert not await keys.refresh()
    error = str(keys.status()["last_error"])
    assert "HTTP 302" in error
    assert f"redirect to {test_issuer.jwks_uri} not followed" in error


async def test_timeout_bounds_each_fetch(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    test_issuer.delay = 5.0
    keys = make_keys(test_issuer, timeout=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(KeysUnavailable):
        await keys.key_for(test_issuer.default_kid, "RS256")
    assert loop.time() - started < 1.0
    assert keys.status()["last_error"] == "timed out after 0.05s"


async def test_timeout_covers_a_trickling_body(make_keys: MakeKeys) -> None:
    """A server that sends headers at once and then the body byte by byte, slower than the
    timeout: the deadline covers the body, not only the connect and the headers."""

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for byte in b'{"issuer": "x", "padding": "' + b"x" * 100:
            await response.write(bytes([byte]))
            await asyncio.sleep(0.01)
        return response

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", trickle)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        url = str(server.make_url(""))
        source = KeySource(url, url + "/.well-known/openid-configuration", timeout=0.1)
        async with aiohttp.ClientSession() as session:
            registry = KeyRegistry(session)
            keys = registry.get(source)
            assert not await keys.refresh()
            await registry.close()
    assert keys.status()["last_error"] == "timed out after 0.1s"


async def test_ssl_verify(make_keys: MakeKeys) -> None:
    """ssl_verify true rejects a self-signed certificate; false (ssl=False) accepts it."""
    async with TestIssuer(tls=True) as issuer:
        kid = issuer.add_key("ES256")
        assert issuer.url.startswith("https://")
        strict = make_keys(issuer)
        assert not await strict.refresh()
        assert "certificate" in str(strict.status()["last_error"]).lower()
        lax = make_keys(issuer, ssl_verify=False)
        assert await lax.refresh()
        assert lax.select(kid, "ES256") is not None


# -- single flight ------------------------------------------------------------------------------
async def test_concurrent_misses_share_one_fetch(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.delay = 0.05  # every waiter arrives while the fetch is in flight
    keys = make_keys(test_issuer)
    results = await asyncio.gather(
        *(keys.key_for(random_kid(), "RS256") for _ in range(50)),
        *(keys.key_for(test_issuer.default_kid, "RS256") for _ in range(50)),
        return_exceptions=True,
    )
    assert (test_issuer.discovery_hits, test_issuer.jwks_hits) == (1, 1)
    assert all(isinstance(r, UnknownKey) for r in results[:50])  # loaded, but no such kid
    assert all(getattr(r, "kid", None) == test_issuer.default_kid for r in results[50:])


async def test_cancelled_waiter_does_not_cancel_the_shared_fetch(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.delay = 0.1
    keys = make_keys(test_issuer)
    first = asyncio.create_task(keys.key_for(test_issuer.default_kid, "RS256"))
    second = asyncio.create_task(keys.key_for(test_issuer.default_kid, "RS256"))
    await _until(lambda: test_issuer.discovery_hits == 1)  # both wait on the fetch
    first.cancel()  # the client went away
    assert (await second).kid == test_issuer.default_kid
    with pytest.raises(asyncio.CancelledError):
        await first
    assert test_issuer.jwks_hits == 1


# -- unknown kid throttle -------------------------------------------------------------------------
async def test_random_kids_refetch_at_most_once_per_rediscovery_lifetime(
    test_issuer: TestIssuer, make_keys: MakeKeys, clock: FakeClock
) -> None:
    keys = make_keys(test_issuer, rediscovery_lifetime=30.0)
    assert await keys.refresh()
    fetch_times: list[float] = []
    for _ in range(10_000):  # 100 s of fake time, one random kid every 10 ms
        before = test_issuer.jwks_hits
        with pytest.raises(UnknownKey):
            await keys.key_for(random_kid(), "RS256")
        if test_issuer.jwks_hits != before:
            fetch_times.append(clock.now)
        clock.advance(0.01)
    # One refetch per 30 s window: t = 0, 30, 60, 90 (and none in between).
    assert len(fetch_times) == 4
    assert all(b - a >= 30.0 for a, b in itertools.pairwise(fetch_times))
    assert test_issuer.discovery_hits == test_issuer.jwks_hits == 5  # with the initial load


async def test_throttled_refetch_when_the_issuer_is_down(
    test_issuer: TestIssuer, make_keys: MakeKeys, clock: FakeClock
) -> None:
    test_issuer.down = True
    keys = make_keys(test_issuer, rediscovery_lifetime=30.0)
    for _ in range(100):
        with pytest.raises(KeysUnavailable):
            await keys.key_for(test_issuer.default_kid, "RS256")
    assert test_issuer.discovery_hits == 1  # an outage is not hammered either
    test_issuer.down = False
    clock.advance(29.9)
    with pytest.raises(KeysUnavailable):
        await keys.key_for(test_issuer.default_kid, "RS256")
    clock.advance(0.1)
    assert (await keys.key_for(test_issuer.default_kid, "RS256")).kid == test_issuer.default_kid
    assert test_issuer.discovery_hits == 2


# -- rotation -------------------------------------------------------------------------------------
async def test_new_kid_is_found_with_one_refetch(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    keys = make_keys(test_issuer)
    assert await keys.refresh()
    new_kid = test_issuer.add_key("ES256")
    token = test_issuer.mint(kid=new_kid)
    assert keys.select(new_kid, "ES256") is None
    assert (await keys.key_for(new_kid, "ES256")).kid == new_kid
    assert test_issuer.jwks_hits == 2
    assert verifies(keys, token)
    assert keys.select(test_issuer.default_kid, "RS256") is not None  # the old key stays


async def test_removed_kid_stops_selecting_after_the_next_refresh(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    keys = make_keys(test_issuer)
    old_kid = test_issuer.default_kid
    assert await keys.refresh()
    new_kid = test_issuer.add_key("RS256")
    test_issuer.remove_key(old_kid)  # type: ignore[arg-type]
    assert keys.select(old_kid, "RS256") is not None  # until the refresh
    assert await keys.refresh()
    assert keys.select(old_kid, "RS256") is None
    assert keys.select(new_kid, "RS256") is not None


# -- failures keep the last good keys -------------------------------------------------------------
FAILURES: dict[str, Callable[[TestIssuer], None]] = {
    "503": lambda i: setattr(i, "down", True),
    "connection-closed": lambda i: i.__dict__.update(down=True, down_mode="close"),
    "timeout": lambda i: setattr(i, "delay", 1.0),
    "bad-json": lambda i: setattr(i, "raw_jwks", b'{"keys": [}'),
    "duplicate-members": lambda i: setattr(i, "raw_jwks", b'{"keys": [], "keys": []}'),
    "not-a-jwks": lambda i: setattr(i, "raw_jwks", [1, 2, 3]),
    "empty-jwks": lambda i: setattr(i, "raw_jwks", {"keys": []}),
    "no-usable-keys": lambda i: setattr(
        i, "raw_jwks", {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}
    ),
    "issuer-mismatch": lambda i: i.discovery_overrides.update(issuer="https://other.example"),
    "discovery-not-an-object": lambda i: setattr(i, "raw_discovery", ["issuer"]),
    "deeply-nested-json": lambda i: setattr(i, "raw_jwks", b"[" * 100_000),
}


@pytest.mark.parametrize("break_issuer", FAILURES.values(), ids=FAILURES.keys())
async def test_failed_refresh_keeps_the_last_good_keys(
    test_issuer: TestIssuer, make_keys: MakeKeys, break_issuer: Callable[[TestIssuer], None]
) -> None:
    keys = make_keys(test_issuer, timeout=0.05)
    assert await keys.refresh()
    good = keys.keyset
    break_issuer(test_issuer)
    assert not await keys.refresh()
    assert keys.keyset is good
    assert keys.select(test_issuer.default_kid, "RS256") is not None
    status = keys.status()
    assert status["loaded"] is True
    assert status["last_error"]
    assert status["consecutive_failures"] == 1


async def test_deeply_nested_json_is_a_plain_fetch_failure(
    test_issuer: TestIssuer, make_keys: MakeKeys, caplog: pytest.LogCaptureFixture
) -> None:
    """An issuer's garbage is logged as one line, like any bad response, not as a traceback."""
    test_issuer.raw_jwks = b"[" * 100_000
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    assert "JSON nested too deeply" in cast(str, keys.status()["last_error"])
    assert not [record for record in caplog.records if record.exc_info]


async def test_last_good_keys_are_served_until_max_stale_past_their_expiry(
    test_issuer: TestIssuer, make_keys: MakeKeys, clock: FakeClock
) -> None:
    test_issuer.cache_control = "max-age=50"
    keys = make_keys(test_issuer, rediscovery_lifetime=30.0)
    assert await keys.refresh()
    test_issuer.down = True
    clock.advance(60)  # expired (50 s): refreshes fail, the keys are still served
    assert not await keys.refresh()
    assert keys.status()["stale"] is True
    clock.advance(489.9)  # 549.9 = 50 + max_stale 500 - 0.1
    assert keys.select(test_issuer.default_kid, "RS256") is not None
    clock.advance(0.1)
    assert keys.select(test_issuer.default_kid, "RS256") is None
    assert keys.keyset is None
    with pytest.raises(KeysUnavailable):
        await keys.key_for(test_issuer.default_kid, "RS256")
    assert keys.status()["loaded"] is False
    # The issuer comes back: the next allowed refetch brings the keys back.
    test_issuer.down = False
    clock.advance(30)
    assert (await keys.key_for(test_issuer.default_kid, "RS256")).kid == test_issuer.default_kid


async def test_never_loaded_and_issuer_down_is_keys_unavailable(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.down = True
    keys = make_keys(test_issuer)
    with pytest.raises(KeysUnavailable) as info:
        await keys.key_for(test_issuer.default_kid, "RS256")
    assert info.value.status == 503
    status = keys.status()
    assert status["loaded"] is False
    assert status["keys"] == 0
    assert "HTTP 503" in str(status["last_error"])


@pytest.mark.parametrize(
    ("discovery_url", "expected"),
    [
        ("http://127.0.0.1:{port}/", "cannot connect to 127.0.0.1:{port}: "),
        ("http://[::1]:{port}/", "cannot connect to [::1]:{port}: "),
        ("http://tokengate-test.invalid/", "cannot resolve tokengate-test.invalid: "),
    ],
)
async def test_an_issuer_that_cannot_be_reached_is_named_plainly(
    test_issuer: TestIssuer, make_keys: MakeKeys, discovery_url: str, expected: str
) -> None:
    """What an operator reads in the log and /readyz: the host and the system's reason, not
    aiohttp's "Cannot connect to host ... ssl:default [Connect call failed ...]"."""
    port = free_port()  # nothing listens there
    keys = make_keys(test_issuer, discovery_url=discovery_url.format(port=port))
    with pytest.raises(KeysUnavailable):
        await keys.key_for(test_issuer.default_kid, "RS256")
    last_error = str(keys.status()["last_error"])
    assert last_error.startswith(expected.format(port=port)), last_error
    reason = last_error.removeprefix(expected.format(port=port))
    assert reason and "Unknown error" not in reason  # the system's words, not an errno's
    if "127.0.0.1" in discovery_url:
        assert reason == "Connection refused"
    assert "ssl:default" not in last_error and "Connect call failed" not in last_error


# -- refresh timing -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [
        ("max-age=50", 50),
        ("public, max-age=50, must-revalidate", 50),
        ("max-age=3", 10),  # clamped up to min_refresh
        ("max-age=999999", 100),  # clamped down to max_refresh
        (None, 100),  # no Cache-Control: max_refresh
        ("no-store", 10),
        ("max-age=abc", 100),  # malformed: as if absent
    ],
)
async def test_cache_control_sets_the_refresh_time(
    test_issuer: TestIssuer,
    make_keys: MakeKeys,
    cache_control: str | None,
    lifetime: float,
) -> None:
    test_issuer.cache_control = cache_control
    keys = make_keys(test_issuer)
    assert await keys.refresh()
    status = keys.status()
    # The background refresh comes before expiry (never sooner than min_refresh) ...
    assert status["next_refresh_in"] == pytest.approx(max(10, 0.9 * lifetime))
    assert cast(float, status["next_refresh_in"]) <= lifetime
    # ... and the keys stay usable max_stale past expiry.
    assert status["usable_for"] == pytest.approx(lifetime + 500)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        ([("Cache-Control", "max-age=60")], 60),
        ([("Cache-Control", 'max-age="60"')], 60),
        ([("Cache-Control", "MAX-AGE=60")], 60),
        ([("Cache-Control", "max-age=60, max-age=10")], 60),  # the first one wins
        ([("Cache-Control", "public"), ("Cache-Control", "max-age=70")], 70),
        ([("Cache-Control", "max-age=60"), ("Age", "45")], 15),
        ([("Cache-Control", "max-age=60"), ("Age", "600")], 0),
        ([("Cache-Control", "max-age=-1")], None),
        ([("Cache-Control", "max-age=1.5")], None),
        ([("Cache-Control", "no-cache, max-age=60")], 0),
        ([("Cache-Control", "s-maxage=60")], None),
        # RFC 9111 §1.2.2: too large to represent counts as 2^31, never an overflow.
        ([("Cache-Control", "max-age=" + "9" * 400)], 2**31),
        ([("Cache-Control", "max-age=" + "9" * 5000)], 2**31),
        ([("Cache-Control", "max-age=60"), ("Age", "9" * 5000)], 0),
        ([("Cache-Control", "max-age=0000000000000060")], 60),
    ],
)
def test_cache_lifetime(headers: list[tuple[str, str]], expected: float | None) -> None:
    assert cache_lifetime(CIMultiDictProxy(CIMultiDict(headers))) == expected


@pytest.mark.parametrize(
    "cache_control", [None, "max-age=" + "9" * 400], ids=["no header", "a 400-digit max-age"]
)
async def test_background_loop_refreshes_and_drops_removed_kids(
    test_issuer: TestIssuer, session: aiohttp.ClientSession, cache_control: str | None
) -> None:
    """Real clock, tiny bounds: the loop refreshes on its own, no request needed. An absurd
    max-age is bounded like any other: it neither fails a fetch nor stops the loop."""
    test_issuer.cache_control = cache_control
    policy = KeyPolicy(min_refresh=0.05, max_refresh=0.05, max_stale=10, retry_backoff=0.01)
    registry = KeyRegistry(session, policy=policy)
    keys = registry.get(source_for(test_issuer))
    try:
        registry.start()
        await _until(lambda: test_issuer.jwks_hits >= 3)
        assert keys.select(test_issuer.default_kid, "RS256") is not None
        old_kid = test_issuer.default_kid
        test_issuer.add_key("ES256")
        test_issuer.remove_key(old_kid)  # type: ignore[arg-type]
        await _until(lambda: keys.select(old_kid, "RS256") is None)
        assert keys.select(test_issuer.default_kid, "ES256") is not None
        assert keys.status()["last_error"] is None
    finally:
        await registry.close()


async def test_start_does_not_wait_for_the_issuer(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    test_issuer.delay = 0.1
    registry = KeyRegistry(session)
    keys = registry.get(source_for(test_issuer))
    try:
        registry.start()  # returns at once: serving must not block on an IdP
        assert keys.keyset is None
        await _until(lambda: test_issuer.discovery_hits == 1)  # the warm-up fetch is out ...
        key = await keys.key_for(test_issuer.default_kid, "RS256")  # ... and a request joins it
        assert key.kid == test_issuer.default_kid
        assert test_issuer.discovery_hits == 1
        # A source added after start() is warmed up too.
        async with TestIssuer() as late:
            late_kid = late.add_key("EdDSA")
            late_keys = registry.get(source_for(late))
            await _until(lambda: late_keys.select(late_kid, "EdDSA") is not None)
    finally:
        await registry.close()


async def test_background_loop_retries_after_a_failure(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    test_issuer.down = True
    policy = KeyPolicy(min_refresh=0.2, max_refresh=10, retry_backoff=0.01)
    registry = KeyRegistry(session, policy=policy)
    keys = registry.get(source_for(test_issuer))
    try:
        registry.start()
        await _until(lambda: test_issuer.discovery_hits >= 3)  # 0.01, 0.02, 0.04 ... backoff
        assert cast(int, keys.status()["consecutive_failures"]) >= 2
        test_issuer.down = False
        await _until(lambda: keys.keyset is not None)  # no request needed to recover
        assert keys.status()["consecutive_failures"] == 0
    finally:
        await registry.close()


async def test_background_loop_refreshes_soon_after_its_clock_jumps(
    test_issuer: TestIssuer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """A machine that wakes from a night's suspend: the keys' clock (CLOCK_BOOTTIME) moved on,
    the event loop's (CLOCK_MONOTONIC) did not, so the loop's sleep knows nothing of it. Keys
    that fell due meanwhile are refreshed without waiting out the sleep, nor for a request."""
    policy = KeyPolicy(min_refresh=0.05, max_refresh=100, max_stale=500)
    registry = KeyRegistry(session, policy=policy, clock=clock)
    keys = registry.get(source_for(test_issuer))
    try:
        registry.start()
        await _until(lambda: keys.keyset is not None)
        assert keys.status()["next_refresh_in"] == 90  # 0.9 x max_refresh
        clock.advance(12 * 3600)
        assert keys.status()["loaded"] is False  # past max_stale: not served
        await _until(lambda: test_issuer.jwks_hits == 2)
        await _until(lambda: keys.status()["loaded"] is True)
        assert keys.status()["last_success_age"] == 0
    finally:
        await registry.close()


async def test_close_cancels_background_work(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    test_issuer.delay = 1.0
    registry = KeyRegistry(session)
    keys = registry.get(source_for(test_issuer))
    registry.start()
    await asyncio.sleep(0.01)
    await registry.close()  # the in-flight warm-up fetch is cancelled, not awaited
    hits = test_issuer.discovery_hits
    with pytest.raises(KeysUnavailable):
        await keys.key_for(test_issuer.default_kid, "RS256")
    assert test_issuer.discovery_hits == hits  # closed: no new fetches
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in pending if "IssuerKeys" in repr(t.get_coro())]
    # A source asked for after close() is inert too.
    late = registry.get(source_for(test_issuer, timeout=1.0))
    with pytest.raises(KeysUnavailable):
        await late.key_for(test_issuer.default_kid, "RS256")
    assert test_issuer.discovery_hits == hits


async def test_request_waiting_on_a_fetch_gets_an_auth_error_when_closed(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    """Shutdown while a request waits for keys: a 503, not a CancelledError in the request."""
    test_issuer.delay = 1.0
    registry = KeyRegistry(session)
    keys = registry.get(source_for(test_issuer))
    waiter = asyncio.create_task(keys.key_for(test_issuer.default_kid, "RS256"))
    await _until(lambda: test_issuer.discovery_hits == 1)  # the waiter is on the fetch
    await registry.close()
    with pytest.raises(KeysUnavailable):
        await waiter


# -- hot path, registry, status -------------------------------------------------------------------
def test_select_is_synchronous() -> None:
    assert not inspect.iscoroutinefunction(IssuerKeys.select)
    assert inspect.iscoroutinefunction(IssuerKeys.key_for)


async def test_registry_keeps_one_issuer_keys_per_source(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    registry = KeyRegistry(session)
    source = source_for(test_issuer)
    assert registry.get(source) is registry.get(source_for(test_issuer))
    assert registry.get(source) is not registry.get(source_for(test_issuer, timeout=3.0))
    assert len(registry.status()) == 2
    await registry.close()


async def test_status_is_json_ready(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    keys = make_keys(test_issuer)
    before = keys.status()
    assert before["loaded"] is False
    assert before["last_success_age"] is None
    assert await keys.refresh()
    test_issuer.down = True
    assert not await keys.refresh()
    status = json.loads(json.dumps(keys.status()))
    assert status["issuer"] == test_issuer.issuer
    assert status["loaded"] is True
    assert status["keys"] == 1
    assert status["last_success_age"] == 0
    assert status["last_error"] == f"GET {test_issuer.discovery_url}: HTTP 503"
    assert status["fetches"] == 2


async def _until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls state that other tasks change
            await asyncio.sleep(0.005)


# ---- pinned after a mutation run: backoff, body bounds, discovery's introspection endpoint,
# what /readyz shows, and a registry's start and adopt ----------------------------------------


# -- retry backoff after failures (next_refresh)
async def test_retry_backoff_doubles_up_to_min_refresh(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.down = True
    keys = make_keys(test_issuer)  # POLICY: retry_backoff=1, min_refresh=10
    assert keys.status()["consecutive_failures"] == 0
    seen = []
    for _ in range(6):
        assert not await keys.refresh()
        seen.append(keys.status()["next_refresh_in"])
    assert seen == [1, 2, 4, 8, 10, 10]
    assert keys.status()["consecutive_failures"] == 6


# -- the background loop waits out the backoff
async def test_background_loop_does_not_retry_before_the_backoff(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    test_issuer.down = True
    policy = KeyPolicy(min_refresh=10, max_refresh=10, retry_backoff=0.6)
    registry = KeyRegistry(session, policy=policy)
    registry.get(source_for(test_issuer))
    try:
        registry.start()
        await _until(lambda: test_issuer.discovery_hits >= 1)
        await asyncio.sleep(0.3)  # well inside the 0.6 s backoff
        assert test_issuer.discovery_hits == 1
    finally:
        await registry.close()


# -- no fetch before KeyRegistry.start()
async def test_get_before_start_fetches_nothing(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    registry = KeyRegistry(session, policy=POLICY)
    registry.get(source_for(test_issuer))
    try:
        await asyncio.sleep(0.2)
        assert test_issuer.discovery_hits == 0
    finally:
        await registry.close()


# -- body exactly max_body bytes is accepted
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_max_body_bytes_loads(
    test_issuer: TestIssuer, make_keys: MakeKeys, chunked: bool
) -> None:
    size = 4096
    discovery = json.dumps(test_issuer.discovery()).encode()
    jwks = json.dumps(test_issuer.jwks()).encode()
    test_issuer.raw_discovery = discovery + b" " * (size - len(discovery))
    test_issuer.raw_jwks = jwks + b" " * (size - len(jwks))
    test_issuer.chunked = chunked
    keys = make_keys(test_issuer, policy=KeyPolicy(max_body=size))
    assert await keys.refresh(), keys.status()["last_error"]


# -- a JWKS bigger than one 64 KiB read chunk loads
async def test_a_jwks_larger_than_one_read_chunk_loads(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.raw_jwks = test_issuer.jwks() | {"padding": "x" * 300_000}
    keys = make_keys(test_issuer, policy=KeyPolicy())  # max_body 512 KiB
    assert await keys.refresh(), keys.status()["last_error"]
    assert keys.select(test_issuer.default_kid, "RS256") is not None


# -- duplicate member names refuse a JWKS that does have keys
async def test_duplicate_member_names_refuse_a_usable_jwks(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    other = public_jwk(generate_key("ES256")) | {"kid": "evil", "alg": "ES256", "use": "sig"}
    good = json.dumps(test_issuer.jwks()["keys"])
    test_issuer.raw_jwks = f'{{"keys": {json.dumps([other])}, "keys": {good}}}'
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    assert keys.keyset is None
    assert keys.status()["last_error"] == (
        f"GET {test_issuer.jwks_uri}: not valid JSON (duplicate member name)"
    )


async def test_bad_json_is_named_in_status(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    test_issuer.raw_jwks = b'{"keys": [}'
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    assert str(keys.status()["last_error"]).startswith(
        f"GET {test_issuer.jwks_uri}: not valid JSON ("
    )


# -- HTTP 300 is not a success
async def test_http_300_is_a_failure(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(test_issuer.jwks(), status=300)

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    async with TestServer(app, host="127.0.0.1", port=0) as server:
        keys = make_keys(test_issuer, jwks_endpoint=str(server.make_url("/jwks")))
        assert not await keys.refresh()
    assert "HTTP 300" in str(keys.status()["last_error"])


# -- max-age=0 (Cache-Control)
def test_cache_lifetime_max_age_zero() -> None:
    headers = CIMultiDictProxy(CIMultiDict([("Cache-Control", "max-age=0")]))
    assert cache_lifetime(headers) == 0


async def test_max_age_zero_loads_and_refreshes_after_min_refresh(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.cache_control = "max-age=0"
    keys = make_keys(test_issuer)
    assert await keys.refresh(), keys.status()["last_error"]
    assert keys.status()["next_refresh_in"] == 10


# -- extra JWKS last-good keys are kept max_refresh + max_stale, not less
async def test_extra_jwks_last_good_keys_bound(
    test_issuer: TestIssuer, make_keys: MakeKeys, clock: FakeClock
) -> None:
    async with TestIssuer() as other:
        extra_kid = other.add_key("ES256")
        keys = make_keys(test_issuer, extra_jwks_uris=(other.jwks_uri,))
        assert await keys.refresh()
        other.down = True
        clock.advance(450)  # < max_refresh 100 + max_stale 500
        assert await keys.refresh()
        assert keys.select(extra_kid, "ES256") is not None
        clock.advance(150)  # = 600: the extra's last good keys are dropped
        assert await keys.refresh()
        assert keys.select(extra_kid, "ES256") is None
        assert keys.select(test_issuer.default_kid, "RS256") is not None


async def test_an_extra_jwks_kept_keys_stop_at_their_own_bound_without_another_refresh(
    test_issuer: TestIssuer, make_keys: MakeKeys, clock: FakeClock
) -> None:
    """A refresh of the main JWKS just before the extra's bound must not carry the extra's
    last keys on for the new set's whole life: the main issuer may go down next."""
    async with TestIssuer() as other:
        extra_kid = other.add_key("ES256")
        keys = make_keys(test_issuer, extra_jwks_uris=(other.jwks_uri,))
        assert await keys.refresh()  # the extra JWKS answers for the last time
        other.down = True
        clock.advance(599)  # max_refresh 100 + max_stale 500 = 600
        assert await keys.refresh()  # the main JWKS answers, the extra's keys are kept
        assert keys.select(extra_kid, "ES256") is not None
        assert keys.keyset is not None and keys.keyset.select(extra_kid, "ES256") is not None
        test_issuer.down = True
        clock.advance(1)  # 600 s since the extra last answered, no refresh since
        assert keys.select(extra_kid, "ES256") is None
        assert keys.keyset is not None and keys.keyset.select(extra_kid, "ES256") is None
        assert keys.select(test_issuer.default_kid, "RS256") is not None  # the main keys stay


# -- discovery's introspection_endpoint
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{issuer}/introspect", "{issuer}/introspect"),
        ("file:///etc/passwd", None),
        (42, None),
    ],
)
async def test_introspection_endpoint_comes_from_discovery(
    test_issuer: TestIssuer, make_keys: MakeKeys, value: Any, expected: str | None
) -> None:
    if isinstance(value, str):
        value = value.format(issuer=test_issuer.issuer)
    test_issuer.discovery_overrides["introspection_endpoint"] = value
    keys = make_keys(test_issuer)
    assert keys.introspection_endpoint is None
    assert await keys.refresh()
    want = expected.format(issuer=test_issuer.issuer) if expected else None
    assert keys.introspection_endpoint == want


async def test_https_discovery_keeps_https_introspection_only(make_keys: MakeKeys) -> None:
    async with TestIssuer(tls=True) as issuer:
        issuer.add_key("ES256")
        keys = make_keys(issuer, ssl_verify=False)
        issuer.discovery_overrides["introspection_endpoint"] = issuer.issuer + "/introspect"
        assert await keys.refresh()
        assert keys.introspection_endpoint == issuer.issuer + "/introspect"
        plain = issuer.issuer.replace("https:", "http:") + "/introspect"
        issuer.discovery_overrides["introspection_endpoint"] = plain
        assert await keys.refresh()
        assert keys.introspection_endpoint is None


# -- /readyz status fields
async def test_status_before_any_fetch(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    keys = make_keys(test_issuer)
    status = keys.status()
    assert status["discovery_url"] == test_issuer.discovery_url
    assert status["jwks_uri"] is None
    assert status["consecutive_failures"] == 0
    assert status["next_refresh_in"] == 0  # due now
    assert status["usable_for"] is None
    assert status["stale"] is False
    assert status["last_error_age"] is None


async def test_status_ages_and_staleness(
    test_issuer: TestIssuer, make_keys: MakeKeys, clock: FakeClock
) -> None:
    test_issuer.cache_control = "max-age=50"
    keys = make_keys(test_issuer)
    assert await keys.refresh()
    test_issuer.down = True
    assert not await keys.refresh()
    clock.advance(1.2345)
    status = keys.status()
    age = status["last_error_age"]
    assert isinstance(age, float) and age == round(age, 3) and abs(age - 1.2345) < 0.001
    assert status["last_success_age"] == age
    clock.advance(50 - 1.2345)  # exactly at expiry: stale
    assert keys.status()["stale"] is True
    clock.advance(500)  # past max_stale: not loaded, so neither stale nor usable
    status = keys.status()
    assert status["loaded"] is False
    assert status["stale"] is False
    assert status["usable_for"] is None


async def test_status_lists_poisoned_and_rejected_kids(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    dup = [
        public_jwk(generate_key("ES256")) | {"kid": "dup", "alg": "ES256", "use": "sig"}
        for _ in range(2)
    ]
    hmac = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}
    test_issuer.raw_jwks = {"keys": [*test_issuer.jwks()["keys"], *dup, hmac]}
    keys = make_keys(test_issuer)
    assert await keys.refresh()
    status = keys.status()
    assert status["poisoned_kids"] == ["dup"]
    rejected = cast(list[str], status["rejected"])
    assert len(rejected) >= 2
    assert any("hmac" in reason for reason in rejected)


# -- exact error text shown in /readyz
async def test_issuer_mismatch_message(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    test_issuer.discovery_overrides["issuer"] = "https://evil.example"
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    assert keys.status()["last_error"] == (
        f"discovery issuer 'https://evil.example' does not match configured {test_issuer.issuer!r}"
    )


async def test_configured_issuer_with_a_trailing_slash_gets_the_hint(
    test_issuer: TestIssuer, make_keys: MakeKeys, session: aiohttp.ClientSession
) -> None:
    registry = KeyRegistry(session, policy=POLICY)
    keys = registry.get(KeySource(test_issuer.issuer + "/", test_issuer.discovery_url))
    try:
        assert not await keys.refresh()
    finally:
        await registry.close()
    assert keys.status()["last_error"] == (
        f"discovery issuer {test_issuer.issuer!r} does not match configured "
        f"{test_issuer.issuer + '/'!r} (they differ by a trailing slash: write the issuer as "
        "the IdP does)"
    )


async def test_a_long_foreign_issuer_is_shortened(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    long = "https://" + "a" * 300
    test_issuer.discovery_overrides["issuer"] = long
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    error = str(keys.status()["last_error"])
    assert error.startswith(f"discovery issuer {repr(long)[:200]}... does not match")
    exact = "https://" + "b" * (200 - 2 - 8)  # repr exactly 200 chars: not shortened
    test_issuer.discovery_overrides["issuer"] = exact
    assert not await keys.refresh()
    assert str(keys.status()["last_error"]).startswith(f"discovery issuer {exact!r} does not")


async def test_discovery_not_an_object_message(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.raw_discovery = ["issuer"]
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    assert keys.status()["last_error"] == (
        f"discovery document {test_issuer.discovery_url} is not a JSON object"
    )


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "http://[::1"])
async def test_bad_jwks_uri_message(test_issuer: TestIssuer, make_keys: MakeKeys, uri: str) -> None:
    test_issuer.discovery_overrides["jwks_uri"] = uri
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    assert keys.status()["last_error"] == f"jwks_uri {uri!r} is not an http(s) URL"


async def test_bad_jwks_endpoint_message(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    keys = make_keys(test_issuer, jwks_endpoint="ftp://127.0.0.1/jwks")
    assert not await keys.refresh()
    assert (
        keys.status()["last_error"] == "jwks_endpoint 'ftp://127.0.0.1/jwks' is not an http(s) URL"
    )


async def test_tls_failure_names_its_type(make_keys: MakeKeys) -> None:
    async with TestIssuer(tls=True) as issuer:
        issuer.add_key("ES256")
        keys = make_keys(issuer)
        assert not await keys.refresh()
    assert str(keys.status()["last_error"]).startswith("ClientConnectorCertificateError: ")


async def test_dns_failure_reason_has_no_errno(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    keys = make_keys(test_issuer, discovery_url="http://tokengate-test.invalid/")
    assert not await keys.refresh()
    assert "Errno" not in str(keys.status()["last_error"])


# -- loop/lifecycle details
async def test_start_twice_runs_one_loop(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    keys = make_keys(test_issuer)
    keys.start()
    keys.start()
    loops = [t for t in asyncio.all_tasks() if "IssuerKeys.run" in repr(t.get_coro())]
    assert len(loops) == 1


async def test_refresh_after_close_reports_failure(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    registry = KeyRegistry(session, policy=POLICY)
    keys = registry.get(source_for(test_issuer))
    await registry.close()
    assert await keys.refresh() is False


async def test_loop_survives_a_raising_observer_with_backoff(
    test_issuer: TestIssuer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """on_fetch (the metrics hook) raising is a bug; the loop must go on, with backoff."""

    def boom(issuer: str, result: str) -> None:
        raise RuntimeError("metrics broke")

    registry = KeyRegistry(session, policy=POLICY, clock=clock, on_fetch=boom)
    keys = registry.get(source_for(test_issuer))
    try:
        registry.start()
        await _until(lambda: keys.status()["consecutive_failures"] != 0)
        await asyncio.sleep(0.1)
        assert test_issuer.discovery_hits == 1
        assert keys.status()["consecutive_failures"] == 1
        assert keys.status()["next_refresh_in"] == 1
        clock.advance(1)
        await _until(lambda: keys.status()["consecutive_failures"] != 1)
        assert keys.status()["consecutive_failures"] == 2
        assert keys.status()["next_refresh_in"] == 2
    finally:
        await registry.close()


# -- "no usable keys" failures as /readyz shows them (_get_keyset)
async def test_empty_jwks_message(test_issuer: TestIssuer, make_keys: MakeKeys) -> None:
    test_issuer.raw_jwks = {"keys": []}
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    uri = test_issuer.jwks_uri
    assert keys.status()["last_error"] == f"JWKS {uri} has no usable keys (no keys)"


async def test_unusable_jwks_names_three_reasons_with_the_uri(
    test_issuer: TestIssuer, make_keys: MakeKeys
) -> None:
    test_issuer.raw_jwks = {
        "keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": f"hmac{i}"} for i in range(4)]
    }
    keys = make_keys(test_issuer)
    assert not await keys.refresh()
    uri = test_issuer.jwks_uri
    error = str(keys.status()["last_error"])
    assert error.startswith(f"JWKS {uri} has no usable keys ({uri}: ")
    assert error.count(f"{uri}: ") == 3  # three reasons, not four
    assert error.count(f"; {uri}: ") == 2  # joined by "; "
    assert "hmac2" in error and "hmac3" not in error


# -- KeyRegistry.adopt (config reload)
async def test_adopt_takes_over_loaded_keys(
    test_issuer: TestIssuer, session: aiohttp.ClientSession
) -> None:
    src = source_for(test_issuer)
    unknown = source_for(test_issuer, timeout=3.0)  # a source the old registry never had
    old = KeyRegistry(session, policy=POLICY)
    keys = old.get(src)
    assert await keys.refresh()
    new = KeyRegistry(session, policy=POLICY)
    mine = new.get(source_for(test_issuer, timeout=4.0))
    new.adopt(old, [src, unknown, source_for(test_issuer, timeout=4.0)])
    assert new.get(src) is keys
    assert new.get(source_for(test_issuer, timeout=4.0)) is mine
    assert new.get(unknown) is not keys
    await old.close()  # closing the old registry no longer stops adopted keys
    assert await keys.refresh()
    assert keys.select(test_issuer.default_kid, "RS256") is not None
    await new.close()
