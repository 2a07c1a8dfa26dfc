"""An in-process OpenID Connect issuer for tests: discovery, JWKS, and tokens signed by its keys.

    async with TestIssuer() as issuer:              # 127.0.0.1, port 0
        kid = issuer.add_key("ES256")               # published in /jwks at once
        token = issuer.mint({"scope": "read"}, kid=kid, aud="api")
        issuer.down = True                          # now every endpoint answers 503

Or the `test_issuer` fixture: a started issuer with one RS256 key (the default signing key).

Knobs, all plain attributes a test flips mid-flight: `down` (+ `down_mode` "503" | "close"),
`delay` (seconds before answering), `cache_control` (header on both documents),
`discovery_overrides` (merged into the discovery document; `OMIT` deletes a member),
`raw_discovery` / `raw_jwks` (serve this instead: bytes or str verbatim, anything else as JSON).
Counters: `discovery_hits`, `jwks_hits`, and `requests` (method, path, headers of every request).

`mint` signs through PyJWT's algorithm objects, so it can also forge: `alg="none"`, `alg="HS256"`
(HMAC keyed with the public key's PEM: the algorithm-confusion attack), a header `kid` that is
not the signing key (`sign_with=`), a raw payload (`claims=b'...'`), unpublished keys
(`add_key(..., publish=False)`), and tampered JWKs (`add_key(..., jwk_overrides={...})`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import Any, Final, Literal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import get_default_algorithms

__all__ = ["OMIT", "IssuerKey", "TestIssuer", "test_issuer"]

OMIT: Final[Any] = object()  # as a claim, header or discovery override value: leave it out

DEFAULT_SUBJECT: Final = "test-client"
DEFAULT_AUDIENCE: Final = "test-api"
DEFAULT_SCOPE: Final = "openid read"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}
_ALGORITHMS: Final = get_default_algorithms()


def generate_key(alg: str, *, rsa_bits: int = 2048) -> PrivateKey:
    """A fresh private key for `alg`: RS*/PS* → RSA, ES256/384/512 → P-256/384/521,
    EdDSA / Ed25519 → Ed25519."""
    if alg[:2] in ("RS", "PS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg])
    if alg in ("EdDSA", "Ed25519"):
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no key type for alg {alg!r}")


def public_jwk(key: PrivateKey) -> dict[str, Any]:
    """The public half as a JWK (kty and key members only)."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        return {"kty": "RSA", "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e)}
    if isinstance(public, ec.EllipticCurvePublicKey):
        size = (public.curve.key_size + 7) // 8
        point = public.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[public.curve.name]
        return {
            "kty": "EC",
            "crv": crv,
            "x": _b64(point.x.to_bytes(size, "big")),
            "y": _b64(point.y.to_bytes(size, "big")),
        }
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}


@dataclass
class IssuerKey:
    kid: str
    alg: str  # the JWS alg this key signs with ("EdDSA" for Ed25519)
    private_key: PrivateKey
    jwk: dict[str, Any]  # exactly what /jwks publishes for it
    published: bool = True

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass
class RequestRecord:
    method: str
    path: str
    headers: Mapping[str, str]


@dataclass(eq=False)
class TestIssuer:
    """An issuer on 127.0.0.1:<random port>. See the module docstring."""

    __test__ = False  # not a test class, whatever its name (pytest would try to collect it)

    path: str = ""  # issuer path under the base URL, e.g. "/abc123/auth" (Kong Identity's shape)
    clock: Callable[[], float] = time.time  # for iat / nbf / exp in minted tokens
    down: bool = False
    down_mode: Literal["503", "close"] = "503"  # "close": drop the connection, no response
    delay: float = 0.0
    cache_control: str | None = None
    chunked: bool = False  # send bodies chunked, without Content-Length
    tls: bool = False  # https with a fresh self-signed certificate for 127.0.0.1
    discovery_overrides: dict[str, Any] = field(default_factory=dict)
    raw_discovery: object | None = None
    raw_jwks: object | None = None
    discovery_hits: int = field(default=0, init=False)
    jwks_hits: int = field(default=0, init=False)
    requests: list[RequestRecord] = field(default_factory=list, init=False)
    keys: dict[str, IssuerKey] = field(default_factory=dict, init=False)
    # The key `mint` signs with by default: the first one added.
    default_kid: str | None = field(default=None, init=False)
    # With tls=True: an SSLContext that trusts this issuer's certificate (for client sessions).
    client_ssl: ssl.SSLContext | None = field(default=None, init=False, repr=False)
    _server: TestServer | None = field(default=None, init=False, repr=False)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> TestIssuer:
        app = web.Application()
        app.router.add_get(self.path + "/.well-known/openid-configuration", self._discovery)
        # RFC 8414 metadata: the same document (its `issuer` is this issuer's identifier)
        app.router.add_get(self.path + "/.well-known/oauth-authorization-server", self._discovery)
        app.router.add_get(self.path + "/jwks", self._jwks)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        server_ssl = None
        if self.tls:
            server_ssl, self.client_ssl = self_signed_contexts()
        await self._server.start_server(ssl=server_ssl)
        return self

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> TestIssuer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- addresses ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL, no trailing slash: http://127.0.0.1:PORT"""
        if self._server is None:
            raise RuntimeError("TestIssuer not started")
        return str(self._server.make_url("")).rstrip("/")

    @property
    def issuer(self) -> str:
        return self.url + self.path

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/jwks"

    # -- keys -----------------------------------------------------------------------------------
    def add_key(
        self,
        alg: str = "RS256",
        kid: str | None = None,
        *,
        private_key: PrivateKey | None = None,
        publish: bool = True,
        jwk_overrides: Mapping[str, Any] | None = None,
        rsa_bits: int = 2048,
    ) -> str:
        """Generate (or take) a key, publish its public JWK with kid, alg, use=sig; its kid."""
        alg = "EdDSA" if alg == "Ed25519" else alg
        kid = kid if kid is not None else str(uuid.uuid4())
        if kid in self.keys:
            raise ValueError(f"kid {kid!r} already in use (use jwk_overrides to duplicate)")
        key = private_key if private_key is not None else generate_key(alg, rsa_bits=rsa_bits)
        jwk = public_jwk(key) | {"kid": kid, "alg": alg, "use": "sig"}
        for name, value in (jwk_overrides or {}).items():
            if value is OMIT:
                jwk.pop(name, None)
            else:
                jwk[name] = value
        self.keys[kid] = IssuerKey(kid, alg, key, jwk, published=publish)
        if self.default_kid is None:
            self.default_kid = kid
        return kid

    def remove_key(self, kid: str) -> None:
        """Unpublish and forget a key (`mint` can no longer sign with it)."""
        del self.keys[kid]
        if self.default_kid == kid:
            self.default_kid = next(iter(self.keys), None)

    def jwks(self) -> dict[str, Any]:
        """The JWKS document as served (unless `raw_jwks` is set)."""
        return {"keys": [dict(k.jwk) for k in self.keys.values() if k.published]}

    def discovery(self) -> dict[str, Any]:
        """The discovery document as served (unless `raw_discovery` is set)."""
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": self.issuer + "/oauth/token",
            "introspection_endpoint": self.issuer + "/introspect",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys.values()}),
            "grant_types_supported": ["client_credentials"],
        }
        for name, value in self.discovery_overrides.items():
            if value is OMIT:
                document.pop(name, None)
            else:
                document[name] = value
        return document

    # -- tokens ---------------------------------------------------------------------------------
    def claims(self, *, exp_in: float = 300, **overrides: Any) -> dict[str, Any]:
        """Default claims, Kong Identity's shape: iss, sub, aud, iat = nbf = now, exp, jti,
        client_id, scope; overrides merged (`OMIT` drops one)."""
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": DEFAULT_SUBJECT,
            "aud": DEFAULT_AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + int(exp_in),
            "jti": str(uuid.uuid4()),
            "client_id": DEFAULT_SUBJECT,
            "scope": DEFAULT_SCOPE,
        }
        return _apply(claims, overrides)

    def mint(
        self,
        claims: Mapping[str, Any] | bytes | None = None,
        *,
        kid: str | EllipsisType | None = ...,
        alg: str | None = None,
        headers: Mapping[str, Any] | None = None,
        exp_in: float = 300,
        sign_with: str | None = None,
        **overrides: Any,
    ) -> str:
        """A compact JWS.

        claims: None → `self.claims(exp_in=...)`; a mapping → exactly those claims; bytes → that
            payload verbatim. `**overrides` are merged on top of a mapping (`OMIT` drops one).
        kid: `...` → the default key; a kid → that key (and that kid in the header); None → the
            default key, no `kid` header.
        sign_with: the kid of the key that really signs (the header still says `kid`).
        alg: the header alg and the algorithm used (default: the key's). "none" → empty
            signature; HS256/384/512 → HMAC keyed with the signing key's public PEM.
        headers: extra or replaced header members (`OMIT` drops one, e.g. typ=OMIT).
        """
        signer_kid = sign_with or (kid if isinstance(kid, str) else self.default_kid)
        if signer_kid is None or signer_kid not in self.keys:
            raise KeyError(f"no key {signer_kid!r} to sign with; add_key() first")
        signer = self.keys[signer_kid]
        alg = alg or signer.alg
        header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            header["kid"] = kid if isinstance(kid, str) else signer.kid
        header = _apply(header, headers or {})
        if claims is None:
            payload: bytes = _json(self.claims(exp_in=exp_in, **overrides))
        elif isinstance(claims, bytes):
            payload = claims
        else:
            payload = _json(_apply(dict(claims), overrides))
        signing_input = _b64(_json(header)).encode() + b"." + _b64(payload).encode()
        algorithm = _ALGORITHMS[alg]
        key: Any = signer.private_key
        if alg.startswith("HS"):
            key = signer.public_pem()
        elif alg == "none":
            key = None
        signature = algorithm.sign(signing_input, key)
        return signing_input.decode() + "." + _b64(signature)

    # -- handlers -------------------------------------------------------------------------------
    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        self.discovery_hits += 1
        return await self._answer(request, self.raw_discovery, self.discovery)

    async def _jwks(self, request: web.Request) -> web.StreamResponse:
        self.jwks_hits += 1
        return await self._answer(request, self.raw_jwks, self.jwks, "application/jwk-set+json")

    async def _answer(
        self,
        request: web.Request,
        raw: object | None,
        build: Callable[[], dict[str, Any]],
        content_type: str = "application/json",
    ) -> web.StreamResponse:
        self.requests.append(RequestRecord(request.method, request.path, dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            if self.down_mode == "close":
                assert request.transport is not None
                request.transport.abort()  # no response at all: the client sees a reset
                raise web.HTTPServiceUnavailable
            return web.json_response({"message": "down"}, status=503)
        if raw is None:
            body = _json(build())
        elif isinstance(raw, bytes):
            body = raw
        elif isinstance(raw, str):
            body = raw.encode()
        else:
            body = _json(raw)
        headers = {"Content-Type": content_type}
        if self.cache_control is not None:
            headers["Cache-Control"] = self.cache_control
        if not self.chunked:
            return web.Response(body=body, headers=headers)
        stream = web.StreamResponse(headers=headers)
        stream.enable_chunked_encoding()
        await stream.prepare(request)
        for start in range(0, len(body), 1024):
            await stream.write(body[start : start + 1024])
        await stream.write_eof()
        return stream


_fixture_key: list[PrivateKey] = []


@pytest.fixture
async def test_issuer() -> AsyncIterator[TestIssuer]:
    """A started TestIssuer with one RS256 key (its `default_kid`, a fresh random kid).

    The RSA key material is generated once per test session (RSA-2048 costs ~70 ms) and shared
    by every `test_issuer`; keys from `add_key` are always fresh.
    """
    if not _fixture_key:
        _fixture_key.append(generate_key("RS256"))
    async with TestIssuer() as issuer:
        issuer.add_key("RS256", private_key=_fixture_key[0])
        yield issuer


def self_signed_certificate(
    key: PrivateKey, common_name: str, *, extensions: Sequence[x509.ExtensionType] = ()
) -> x509.Certificate:
    """A certificate of `key` signed by itself, valid from five minutes ago for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension in extensions:
        critical = isinstance(extension, x509.BasicConstraints)
        builder = builder.add_extension(extension, critical=critical)
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest)


def self_signed_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it) for a fresh certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(
        key,
        "tokengate test issuer",
        extensions=[
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            x509.BasicConstraints(ca=True, path_length=None),
        ],
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as tmp:  # load_cert_chain only reads files
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


def _apply(document: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value is OMIT:
            document.pop(name, None)
        else:
            document[name] = value
    return document


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))
