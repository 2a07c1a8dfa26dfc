"""signing: RSA 2048 keys, public-only JWKs, and signers PyJWT can verify for every algorithm."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.gateway.support import eventually
from tokengate.identity import signing
from tokengate.identity.models import SIGNING_ALGORITHMS, SigningKey

NOW = datetime(2025, 1, 1, tzinfo=UTC)
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return signing.new_key("server-1", "RS256", NOW)


def with_algorithm(key: SigningKey, algorithm: str) -> SigningKey:
    return dataclasses.replace(key, kid=str(uuid.uuid4()), algorithm=algorithm)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_new_key_is_rsa_2048_pkcs8_with_a_uuid_kid(key: SigningKey) -> None:
    assert key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert uuid.UUID(key.kid).version == 4
    assert (key.auth_server_id, key.algorithm, key.created_at) == ("server-1", "RS256", NOW)
    assert key.retired_at is None
    assert key.private_pem not in repr(key).encode()


def test_new_key_rejects_algorithms_kong_identity_does_not_offer() -> None:
    for algorithm in ("HS256", "none", "ES256", "rs256"):
        with pytest.raises(ValueError, match="unsupported"):
            signing.new_key("s", algorithm, NOW)


@pytest.mark.parametrize("algorithm", SIGNING_ALGORITHMS)
def test_public_jwk_has_public_members_only(key: SigningKey, algorithm: str) -> None:
    jwk = signing.public_jwk(with_algorithm(key, algorithm))
    assert set(jwk) == {"kty", "kid", "use", "alg", "n", "e"}
    assert not PRIVATE_MEMBERS & set(jwk)
    assert (jwk["kty"], jwk["use"], jwk["alg"], jwk["e"]) == ("RSA", "sig", algorithm, "AQAB")
    assert "=" not in jwk["n"]
    modulus = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big")
    assert modulus.bit_length() == 2048


def test_public_jwk_skips_the_private_key_check_that_signing_runs(
    key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JWKS lists every key rotated in the last day. OpenSSL's check of an RSA private key
    takes tens of ms: run per published key once more keys are published than the signer cache
    holds (1024), every JWKS request held the identity server's event loop for seconds to
    minutes. Publishing reads only the public members; signing still checks the key."""
    checked: list[bool] = []  # one per PEM parsed: whether the private key was checked
    real_load = serialization.load_pem_private_key

    def watched_load(data: bytes, password: bytes | None, **kwargs: Any) -> Any:
        checked.append(not kwargs.get("unsafe_skip_rsa_key_validation"))
        return real_load(data, password, **kwargs)

    monkeypatch.setattr(serialization, "load_pem_private_key", watched_load)
    published = with_algorithm(key, "RS256")  # a kid no signer was made for yet
    assert signing.public_jwk(published)["kid"] == published.kid
    assert checked == [False]
    signing.signer_for(published)
    assert checked == [False, True]


@pytest.mark.parametrize("algorithm", SIGNING_ALGORITHMS)
def test_pyjwt_encode_with_signer_verifies_with_the_public_jwk(
    key: SigningKey, algorithm: str
) -> None:
    this = with_algorithm(key, algorithm)
    signer = signing.signer_for(this)
    token = jwt.encode(
        {"sub": "client", "aud": ["api"]},
        signer.private_key,
        algorithm=signer.algorithm,
        headers={"kid": signer.kid, "typ": "JWT"},
    )
    public = jwt.PyJWK(signing.public_jwk(this))
    claims = jwt.decode(token, public, algorithms=[algorithm], audience="api")
    assert claims["sub"] == "client"
    assert jwt.get_unverified_header(token) == {"alg": algorithm, "kid": this.kid, "typ": "JWT"}


@pytest.mark.parametrize("algorithm", SIGNING_ALGORITHMS)
def test_hand_assembled_jws_from_signer_sign_verifies_with_pyjwt(
    key: SigningKey, algorithm: str
) -> None:
    this = with_algorithm(key, algorithm)
    signer = signing.signer_for(this)
    header = b64url(json.dumps({"typ": "JWT", "alg": algorithm, "kid": this.kid}).encode())
    payload = b64url(json.dumps({"sub": "client"}).encode())
    signing_input = f"{header}.{payload}".encode()
    token = f"{header}.{payload}.{b64url(signer.sign(signing_input))}"
    public = jwt.PyJWK(signing.public_jwk(this))
    assert jwt.decode(token, public, algorithms=[algorithm]) == {"sub": "client"}


def test_a_signature_from_one_algorithm_does_not_verify_as_another(key: SigningKey) -> None:
    rs = signing.signer_for(with_algorithm(key, "RS256"))
    token = jwt.encode({"sub": "x"}, rs.private_key, algorithm="RS256")
    ps_public = jwt.PyJWK(signing.public_jwk(with_algorithm(key, "PS256")))
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(token.replace(token.split(".")[0], b64url(b'{"alg":"PS256"}')), ps_public)


def test_signer_for_parses_once_per_kid(key: SigningKey) -> None:
    this = with_algorithm(key, "RS384")
    assert signing.signer_for(this) is signing.signer_for(this)


def test_signer_for_never_reuses_a_cached_signer_for_a_different_key_or_algorithm(
    key: SigningKey,
) -> None:
    first = with_algorithm(key, "RS256")
    signer = signing.signer_for(first)
    other_pem = signing.new_key("s", "RS256", NOW).private_pem
    same_kid_other_key = dataclasses.replace(first, private_pem=other_pem)
    assert signing.signer_for(same_kid_other_key) is not signer
    same_kid_other_alg = dataclasses.replace(first, algorithm="PS256")
    assert signing.signer_for(same_kid_other_alg).algorithm == "PS256"


def test_signer_for_refuses_small_rsa_keys() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    pem = small.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    weak = SigningKey(str(uuid.uuid4()), "s", "RS256", pem, NOW)
    with pytest.raises(ValueError, match="2048"):
        signing.signer_for(weak)


def test_is_published_covers_active_and_retired_within_grace(key: SigningKey) -> None:
    later = datetime(2025, 1, 2, tzinfo=UTC)
    assert key.is_published(later)
    retired = dataclasses.replace(key, retired_at=NOW, published_until=later)
    assert retired.is_published(NOW)
    assert not retired.is_published(later)
    assert not dataclasses.replace(key, retired_at=NOW).is_published(NOW)


# ---- pinned after a mutation run of signing ------------------------------------------------------


# RFC 7518 §6.3.1: n and e are unsigned big-endian integers in the fewest octets, unpadded
# base64url (a stripped "=" only: any base64url character may end them)
@pytest.mark.parametrize(
    ("value", "encoded"),
    [(65537, "AQAB"), (0x010017, "AQAX"), (0xFF, "_w"), (0x0100, "AQA"), (0xFFFF_FF, "____")],
)
def test_jwk_integers_are_big_endian_base64url_without_padding(value: int, encoded: str) -> None:
    assert signing._b64url_uint(value) == encoded


def test_the_jwk_modulus_has_no_leading_zero_octet(key: SigningKey) -> None:
    raw = base64.urlsafe_b64decode(signing.public_jwk(key)["n"] + "==")
    assert len(raw) == 256  # 2048 bits, so the top octet is never 0
    assert raw[0] != 0


def watch_generation(monkeypatch: pytest.MonkeyPatch, fail_first: bool = False) -> list[int]:
    """Counts RSA generations (each appends when it starts); the first may fail."""
    real_generate = rsa.generate_private_key
    started: list[int] = []

    def watched(*args: Any, **kwargs: Any) -> rsa.RSAPrivateKey:
        started.append(threading.get_ident())
        if fail_first and len(started) == 1:
            raise RuntimeError("no entropy today")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(rsa, "generate_private_key", watched)
    return started


async def test_a_spare_key_is_made_once_however_often_it_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = watch_generation(monkeypatch)
    spare_keys = signing.SpareKeys()
    spare_keys.make_spare()
    spare_keys.make_spare()  # while the first is on its way
    await eventually(lambda: spare_keys.ready, timeout=20)
    spare_keys.make_spare()  # while one is ready
    await asyncio.sleep(0.2)  # room for a second generation to start, if one were asked for
    assert len(started) == 1
    key = spare_keys("s", "PS256", NOW)  # takes the spare, and starts the next one
    assert signing.signer_for(key).algorithm == "PS256"
    await eventually(lambda: spare_keys.ready, timeout=20)
    assert len(started) == 2


async def test_a_failed_spare_is_dropped_quietly_and_the_next_one_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
    started = watch_generation(monkeypatch, fail_first=True)
    spare_keys = signing.SpareKeys()
    spare_keys.make_spare()
    await eventually(lambda: len(started) == 1, timeout=20)
    await asyncio.sleep(0.1)  # the done callback runs on the loop
    assert not spare_keys.ready
    assert loop_errors == []
    spare_keys.make_spare()  # the failed one is no longer on its way: another is made
    await eventually(lambda: spare_keys.ready, timeout=20)
    assert len(started) == 2


# The signer cache is bounded: when it holds _SIGNER_CACHE_MAX keys, the next new kid empties it
def test_the_signer_cache_is_emptied_when_full(
    key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signing, "_SIGNER_CACHE_MAX", 3)
    signing._signers.clear()
    first, *others = [with_algorithm(key, "RS256") for _ in range(4)]
    cached = signing.signer_for(first)
    for other in others[:2]:
        signing.signer_for(other)
    assert signing.signer_for(first) is cached  # three keys: still cached
    signing.signer_for(others[2])  # a fourth: the cache starts over
    assert signing.signer_for(first) is not cached


def test_with_no_spare_ready_a_key_is_made_on_the_spot_and_never_handed_out_twice() -> None:
    """No event loop (seeding, the CLI): no spare is ever made, every key is generated fresh."""
    spare_keys = signing.SpareKeys()
    first, second = (spare_keys("s", "RS384", NOW) for _ in range(2))
    assert not spare_keys.ready
    assert first.kid != second.kid and first.private_pem != second.private_pem
    assert [signing.signer_for(k).algorithm for k in (first, second)] == ["RS384", "RS384"]
