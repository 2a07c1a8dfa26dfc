"""signing: RSA 2048 keys, public-only JWKs, and signers PyJWT can verify for every algorithm."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

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
