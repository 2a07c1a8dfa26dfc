"""Per-auth-server signing keys: generation, the public JWK, and a parsed signer for the hot path.

    key = new_key(server.id, "RS256", now)           # RSA 2048, kid = uuid4, PKCS#8 PEM
    jwks = {"keys": [public_jwk(k) for k in store.published_keys(server.id)]}
    signer = signer_for(store.active_key(server.id))  # PEM parsed once per kid, then cached
    signature = signer.sign(b"<header b64>.<payload b64>")
    token = jwt.encode(claims, signer.private_key, algorithm=signer.algorithm,
                       headers={"kid": signer.kid, "typ": "JWT"})

Keys are plain `SigningKey` records (the store persists them); this module knows nothing of SQL.
Only the RSA algorithms Kong Identity offers exist here (RS256/384/512, PS256/384/512).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tokengate.identity.models import SIGNING_ALGORITHMS, SigningKey

RSA_KEY_BITS = 2048
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_SIGNER_CACHE_MAX = 1024


def new_key(auth_server_id: str, algorithm: str, now: datetime) -> SigningKey:
    """A fresh active RSA key for `algorithm` (one of models.SIGNING_ALGORITHMS)."""
    _check_algorithm(algorithm)
    return _key_record(_generate(), auth_server_id, algorithm, now)


def _generate() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)


class SpareKeys:
    """A KeyFactory (as `new_key`) for a running server, which keeps one RSA key made ahead in
    a thread: generating one takes 50-150 ms, and on the event loop that stalls every request
    in progress (a token call waits behind an auth server being created or a rotation).
    `cryptography` lets go of the GIL while it generates. With no spare ready (two keys asked
    for in a row, or no event loop running: seeding, the CLI), a key is made on the spot."""

    def __init__(self) -> None:
        self._spare: rsa.RSAPrivateKey | None = None
        self._making: asyncio.Future[rsa.RSAPrivateKey] | None = None

    def __call__(self, auth_server_id: str, algorithm: str, now: datetime) -> SigningKey:
        _check_algorithm(algorithm)
        private, self._spare = self._spare, None
        if private is None:
            private = _generate()
        self.make_spare()
        return _key_record(private, auth_server_id, algorithm, now)

    @property
    def ready(self) -> bool:
        """Whether a spare is made (the next key costs nothing on the loop)."""
        return self._spare is not None

    def make_spare(self) -> None:
        """Start making the next key in a thread, if none is ready or on its way (and a loop
        runs: this is called on it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._spare is None and self._making is None:
            making = self._making = loop.run_in_executor(None, _generate)
            making.add_done_callback(self._made)

    def _made(self, making: asyncio.Future[rsa.RSAPrivateKey]) -> None:
        self._making = None
        if not making.cancelled() and making.exception() is None:
            self._spare = making.result()


def _key_record(
    private: rsa.RSAPrivateKey, auth_server_id: str, algorithm: str, now: datetime
) -> SigningKey:
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(
        kid=str(uuid.uuid4()),
        auth_server_id=auth_server_id,
        algorithm=algorithm,
        private_pem=pem,
        created_at=now,
    )


def public_jwk(key: SigningKey) -> dict[str, str]:
    """The key as a JWKS entry. Only public members: `d`, `p`, `q`, `dp`, `dq`, `qi` never leave."""
    # Parsed without OpenSSL's check of the private key (tens of ms a key), which guards signing
    # (signer_for runs it), not publishing `n` and `e`: a JWKS lists every key rotated in the
    # last day, more than the signer cache holds, and is built on the event loop.
    private = serialization.load_pem_private_key(
        key.private_pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < RSA_KEY_BITS:
        raise ValueError(f"signing key {key.kid} is not an RSA key of at least {RSA_KEY_BITS} bits")
    numbers = private.public_key().public_numbers()
    return {
        "kty": "RSA",
        "kid": key.kid,
        "use": "sig",
        "alg": key.algorithm,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


class Signer:
    """A parsed private key bound to one algorithm; `sign` gives the JWS signature (RFC 7518 §3)."""

    __slots__ = ("_hash", "_padding", "algorithm", "kid", "private_key")

    def __init__(self, kid: str, algorithm: str, private_key: rsa.RSAPrivateKey) -> None:
        _check_algorithm(algorithm)
        self.kid = kid
        self.algorithm = algorithm
        self.private_key = private_key
        self._hash = _HASHES[algorithm[2:]]()
        # PS*: MGF1 with the same hash and a salt as long as the digest (RFC 7518 §3.5).
        self._padding: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if algorithm.startswith("RS")
            else padding.PSS(mgf=padding.MGF1(self._hash), salt_length=self._hash.digest_size)
        )

    def sign(self, signing_input: bytes) -> bytes:
        return self.private_key.sign(signing_input, self._padding, self._hash)


# kid -> signer and the PEM it was parsed from. A kid is a random UUID whose PEM never changes, so
# entries never go stale; PEM and algorithm are compared anyway, so a reused kid can never sign
# with the wrong key or algorithm. Bounded (cleared when full): keys are few.
_signers: dict[str, tuple[bytes, Signer]] = {}


def signer_for(key: SigningKey) -> Signer:
    """The cached signer for `key`; the PEM is parsed on the first use of its kid only."""
    cached = _signers.get(key.kid)
    if cached is not None and cached[0] == key.private_pem and cached[1].algorithm == key.algorithm:
        return cached[1]
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    if not isinstance(private, rsa.RSAPrivateKey) or private.key_size < RSA_KEY_BITS:
        raise ValueError(f"signing key {key.kid} is not an RSA key of at least {RSA_KEY_BITS} bits")
    signer = Signer(key.kid, key.algorithm, private)
    if len(_signers) >= _SIGNER_CACHE_MAX:
        _signers.clear()
    _signers[key.kid] = (key.private_pem, signer)
    return signer


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in SIGNING_ALGORITHMS:
        raise ValueError(f"unsupported signing algorithm {algorithm!r}")


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
