"""The test issuer itself: what it serves, and that its tokens verify with an independent library
(PyJWT) and with our jwk.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import aiohttp
import jwt
import pytest

from tests.gateway import issuer as issuer_module
from tests.gateway.issuer import OMIT, TestIssuer
from tokengate.gateway.jwk import parse_jwks

test_issuer = issuer_module.test_issuer  # the fixture, under its own name

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


def parts(token: str) -> tuple[dict[str, Any], bytes, bytes]:
    head, payload, signature = (_unb64(p) for p in token.split("."))
    return json.loads(head), payload, signature


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


async def get(url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_fixture_serves_discovery_and_one_rs256_key(test_issuer: TestIssuer) -> None:
    status, headers, body = await get(test_issuer.discovery_url)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    discovery = json.loads(body)
    assert discovery["issuer"] == test_issuer.issuer == test_issuer.url
    assert discovery["jwks_uri"] == test_issuer.jwks_uri
    status, headers, body = await get(test_issuer.jwks_uri)
    assert headers["Content-Type"].startswith("application/jwk-set+json")
    (jwk,) = json.loads(body)["keys"]
    assert jwk["kid"] == test_issuer.default_kid
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    assert "d" not in jwk  # public members only
    assert (test_issuer.discovery_hits, test_issuer.jwks_hits) == (1, 1)
    assert [r.path for r in test_issuer.requests] == ["/.well-known/openid-configuration", "/jwks"]


@pytest.mark.parametrize("alg", ALGS)
async def test_minted_tokens_verify_with_pyjwt_and_jwk_py(alg: str) -> None:
    async with TestIssuer() as issuer:
        kid = issuer.add_key(alg)
        token = issuer.mint(kid=kid)
        jwks = issuer.jwks()
        # PyJWT, an independent implementation, accepts the token with the published key.
        key = jwt.PyJWK(jwks["keys"][0])
        claims = jwt.decode(token, key, algorithms=[alg], audience="test-api", issuer=issuer.issuer)
        assert claims["sub"] == "test-client"
        # And so does our own key parsing.
        keyset = parse_jwks(jwks)
        header, _, signature = parts(token)
        assert header == {"alg": alg, "typ": "JWT", "kid": kid}
        selected = keyset.select(kid, alg)
        assert selected is not None
        signing_input = token.rsplit(".", 1)[0].encode()
        assert selected.verify(alg, signing_input, signature)


async def test_default_claims_and_overrides(test_issuer: TestIssuer) -> None:
    now = 1_700_000_000
    test_issuer.clock = lambda: now + 0.7
    _, payload, _ = parts(test_issuer.mint(exp_in=60, scope="admin", aud=["a", "b"], jti=OMIT))
    claims = json.loads(payload)
    assert claims == {
        "iss": test_issuer.issuer,
        "sub": "test-client",
        "aud": ["a", "b"],
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "client_id": "test-client",
        "scope": "admin",
    }
    _, payload, _ = parts(test_issuer.mint({"only": 1}, extra=True))
    assert json.loads(payload) == {"only": 1, "extra": True}
    _, payload, _ = parts(test_issuer.mint(b'{"exp":1,"exp":2}'))
    assert payload == b'{"exp":1,"exp":2}'  # raw payloads for shape tests


async def test_header_controls(test_issuer: TestIssuer) -> None:
    header, _, _ = parts(test_issuer.mint(kid=None))
    assert "kid" not in header
    header, _, _ = parts(test_issuer.mint(headers={"typ": OMIT, "crit": ["exp"]}))
    assert header == {"alg": "RS256", "kid": test_issuer.default_kid, "crit": ["exp"]}
    # A header kid that is not the signing key: the signature is the default key's.
    other = test_issuer.add_key("RS256")
    token = test_issuer.mint(kid=other, sign_with=test_issuer.default_kid)
    header, _, _ = parts(token)
    assert header["kid"] == other
    default_jwk = jwt.PyJWK(test_issuer.jwks()["keys"][0])
    assert jwt.decode(token, default_jwk, algorithms=["RS256"], audience="test-api")


async def test_forgeries(test_issuer: TestIssuer) -> None:
    token = test_issuer.mint(alg="none")
    header, _, signature = parts(token)
    assert header["alg"] == "none"
    assert token.endswith(".")
    assert signature == b""
    # Algorithm confusion: HMAC keyed with the RSA public key's PEM.
    token = test_issuer.mint(alg="HS256")
    signing_input, _, signature_b64 = token.rpartition(".")
    pem = test_issuer.keys[str(test_issuer.default_kid)].public_pem()
    expected = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert _unb64(signature_b64) == expected


async def test_key_publication_controls(test_issuer: TestIssuer) -> None:
    hidden = test_issuer.add_key("ES256", publish=False)
    tampered = test_issuer.add_key("ES256", jwk_overrides={"use": "enc", "alg": OMIT})
    kids = {k["kid"]: k for k in test_issuer.jwks()["keys"]}
    assert hidden not in kids  # signs tokens, but no one can verify them
    assert kids[tampered]["use"] == "enc"
    assert "alg" not in kids[tampered]
    test_issuer.mint(kid=hidden)
    first = test_issuer.default_kid
    test_issuer.remove_key(str(first))
    assert test_issuer.default_kid == hidden  # the next key becomes the default
    with pytest.raises(KeyError):
        test_issuer.mint(kid=first)
    with pytest.raises(ValueError, match="already in use"):
        test_issuer.add_key("ES256", kid=tampered)


async def test_down_modes(test_issuer: TestIssuer) -> None:
    test_issuer.down = True
    status, _, _ = await get(test_issuer.jwks_uri)
    assert status == 503
    test_issuer.down_mode = "close"
    with pytest.raises(aiohttp.ClientError):
        await get(test_issuer.discovery_url)
    # Counted even when down (aiohttp's client retries a GET once after a dropped connection).
    assert test_issuer.discovery_hits >= 1


async def test_documents_can_be_replaced(test_issuer: TestIssuer) -> None:
    test_issuer.discovery_overrides.update(issuer="https://elsewhere", jwks_uri=OMIT)
    test_issuer.raw_jwks = b"not json"
    test_issuer.cache_control = "max-age=42"
    _, headers, body = await get(test_issuer.discovery_url)
    assert json.loads(body)["issuer"] == "https://elsewhere"
    assert "jwks_uri" not in json.loads(body)
    assert headers["Cache-Control"] == "max-age=42"
    _, _, body = await get(test_issuer.jwks_uri)
    assert body == b"not json"
    test_issuer.raw_discovery = [1, 2]
    _, _, body = await get(test_issuer.discovery_url)
    assert json.loads(body) == [1, 2]


async def test_chunked_bodies(test_issuer: TestIssuer) -> None:
    test_issuer.chunked = True
    test_issuer.raw_jwks = {"keys": [], "padding": "x" * 5000}
    _, headers, body = await get(test_issuer.jwks_uri)
    assert headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in headers
    assert len(json.loads(body)["padding"]) == 5000


async def test_issuer_path_and_tls() -> None:
    async with TestIssuer(path="/0123456789abcdef/auth", tls=True) as issuer:
        assert issuer.issuer == issuer.url + "/0123456789abcdef/auth"
        assert issuer.url.startswith("https://127.0.0.1:")
        status, _, body = await get(issuer.discovery_url, ssl=issuer.client_ssl)
        assert status == 200
        assert json.loads(body)["jwks_uri"] == issuer.issuer + "/jwks"
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await get(issuer.discovery_url)  # self-signed: default verification refuses it
