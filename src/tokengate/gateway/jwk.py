"""JWKS → verification keys ready to use, parsed once per fetched document, never per request.

    keys = parse_jwks(json.loads(body), source=jwks_uri)     # JwksError: not {"keys": [...]}
    for reason in keys.rejected:
        log.warning("%s", reason)                            # each JWK refused, and why
    key = keys.select(parts.kid, parts.alg)                  # None: no key for this kid + alg
    ok = key is not None and key.verify(parts.alg, parts.signing_input, parts.signature)

Only the JOSE framing lives here (RFC 7517 key members, RFC 7518 §3/§6 and RFC 8037 algorithm and
key types); every signature is checked by `cryptography`. Each key is turned into a
`cryptography` public key once, with its padding and hash objects, and bound to the algorithms
it may verify: the token's `alg` only picks among those, it never chooses how a key is used.

A JWK is refused (with one human reason in `KeySet.rejected`) unless all of these hold:
`use` absent or "sig"; `key_ops` absent or listing "verify"; no private member (a key whose
private half is published is compromised); `kid` absent or a string; kty RSA (≥ 2048 bits,
e odd > 1, no ROCA fingerprint), EC (P-256/P-384/P-521, point on the curve, coordinates of the
curve's full size) or OKP (Ed25519, Ed448); `alg`, when present, one of ALGORITHMS that fits
the key. Members are base64url without padding, canonical. `x5c`/`x5u`/`x5t` are ignored.
A `kid` that appears more than once in a document is poisoned: no key is ever selected by it.
"""

from __future__ import annotations

import binascii
import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokengate.gateway.claim_values import render_header_value

__all__ = [
    "ALGORITHMS",
    "URL_TO_STANDARD",
    "JwksError",
    "KeySet",
    "PublicKey",
    "VerificationKey",
    "b64_standard_decode",
    "b64url_decode",
    "merge",
    "parse_jwks",
]

# The JWS algorithms tokengate verifies. Never "none", never HS* (a JWKS is public: an HMAC
# "key" from it would let anyone mint tokens).
ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 16384  # OpenSSL's own ceiling; larger keys only cost CPU per token

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
# (signing_input, signature) → True when the signature is valid. Never raises.
Verifier = Callable[[bytes, bytes], bool]

_HASHES: Final[Mapping[str, hashes.HashAlgorithm]] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}
# JWK crv → (curve, the one JWS alg for it, coordinate size in bytes). RFC 7518 §3.4 binds
# ES256 to P-256, ES384 to P-384, ES512 to P-521: any other pairing is refused.
_EC_CURVES: Final[Mapping[str, tuple[ec.EllipticCurve, str, int]]] = {
    "P-256": (ec.SECP256R1(), "ES256", 32),
    "P-384": (ec.SECP384R1(), "ES384", 48),
    "P-521": (ec.SECP521R1(), "ES512", 66),
}
_EC_NAMES: Final = {curve.name: crv for crv, (curve, _, _) in _EC_CURVES.items()}
# RFC 7517 §4/RFC 7518 §6: members that only a private (or symmetric) key has.
_PRIVATE_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class JwksError(ValueError):
    """The document is not a JWK Set (`{"keys": [...]}`): the fetch failed, keep the old keys."""


# -- base64url --------------------------------------------------------------------------------
# RFC 7515 §2 / RFC 4648 §5, strictly: no padding, no whitespace, no "+" "/", and canonical
# (the unused low bits of the last character are zero), so one value has exactly one encoding.
# URL_TO_STANDARD maps the url alphabet onto the standard one, and "+", "/", "=" (never in a
# url-safe value) onto "!", which strict a2b_base64 refuses like any other stray byte. The hot
# path translates a whole token at once, then decodes its segments with b64_standard_decode.
URL_TO_STANDARD: Final = bytes.maketrans(b"-_+/=", b"+/!!!")
_CANONICAL_LAST: Final = (b"", b"", b"AQgw", b"AEIMQUYcgkosw048")  # by len % 4
_PADDING: Final = (b"", b"", b"==", b"=")


def b64_standard_decode(data: bytes) -> bytes:
    """Decode a value already mapped through URL_TO_STANDARD; ValueError unless it was strict,
    canonical, unpadded, non-empty base64url."""
    rem = len(data) & 3
    if not data or rem == 1 or (rem and data[-1:] not in _CANONICAL_LAST[rem]):
        raise ValueError("not canonical unpadded base64url")
    return binascii.a2b_base64(data + _PADDING[rem], strict_mode=True)


def b64url_decode(value: str) -> bytes:
    """Decode one strict base64url value; ValueError for anything else (or an empty string)."""
    # encode: UnicodeEncodeError (a ValueError) for any non-ASCII character
    return b64_standard_decode(value.encode("ascii").translate(URL_TO_STANDARD))


# -- verifiers: prebuilt padding/hash objects, a length check, then cryptography ----------------
def _rsa_verifier(
    key: rsa.RSAPublicKey, pad: padding.AsymmetricPadding, hash_: hashes.HashAlgorithm
) -> Verifier:
    size = (key.key_size + 7) // 8
    verify = key.verify

    def check(data: bytes, signature: bytes) -> bool:
        if len(signature) != size:  # RFC 8017 §8.1.2/§8.2.2 step 1: exactly k octets
            return False
        try:
            verify(signature, data, pad, hash_)
        except InvalidSignature:
            return False
        return True

    return check


def _ec_verifier(
    key: ec.EllipticCurvePublicKey, hash_: hashes.HashAlgorithm, size: int
) -> Verifier:
    ecdsa = ec.ECDSA(hash_)
    verify = key.verify
    from_bytes = int.from_bytes

    def check(data: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: a JWS ECDSA signature is R || S, each exactly the curve's size; a DER
        # signature (or any other length) is refused, never reinterpreted.
        if len(signature) != 2 * size:
            return False
        der = encode_dss_signature(
            from_bytes(signature[:size], "big"), from_bytes(signature[size:], "big")
        )
        try:
            verify(der, data, ecdsa)
        except InvalidSignature:
            return False
        return True

    return check


def _eddsa_verifier(key: ed25519.Ed25519PublicKey | ed448.Ed448PublicKey, size: int) -> Verifier:
    verify = key.verify

    def check(data: bytes, signature: bytes) -> bool:
        if len(signature) != size:  # RFC 8032: 64 bytes (Ed25519), 114 (Ed448)
            return False
        try:
            verify(signature, data)
        except InvalidSignature:
            return False
        return True

    return check


def _rsa_verifiers(key: rsa.RSAPublicKey, algorithms: Iterable[str]) -> dict[str, Verifier]:
    verifiers = {}
    for alg in algorithms:
        hash_ = _HASHES[alg[2:]]
        if alg.startswith("PS"):
            # RFC 7518 §3.5: MGF1 with the same hash, salt exactly the hash's size (not AUTO).
            pad: padding.AsymmetricPadding = padding.PSS(
                mgf=padding.MGF1(hash_), salt_length=hash_.digest_size
            )
        else:
            pad = padding.PKCS1v15()
        verifiers[alg] = _rsa_verifier(key, pad, hash_)
    return verifiers


@dataclass(frozen=True, slots=True, eq=False)
class VerificationKey:
    """One public key from a JWKS, bound to the JWS algorithms it may verify."""

    kid: str | None
    kty: str
    algorithms: frozenset[str]  # {jwk["alg"]} when the JWK names one, else all its kty/crv allow
    _verifiers: Mapping[str, Verifier] = field(repr=False)
    _material: bytes = field(repr=False)  # SubjectPublicKeyInfo DER: key identity for merge()
    # The JWK as published (public members only: parse_jwks refuses any other), as Kong sends
    # it in upstream_access_token_jwk_header: base64 of its compact JSON. None: not from a JWK.
    jwk_header: bytes | None = field(default=None, repr=False)

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """True only for a valid signature by this key under `alg` (one of `algorithms`)."""
        check = self._verifiers.get(alg)
        return check is not None and check(signing_input, signature)

    @classmethod
    def from_public_key(
        cls,
        public_key: PublicKey,
        *,
        kid: str | None = None,
        algorithms: frozenset[str] | None = None,
    ) -> VerificationKey:
        """Bind a `cryptography` public key to its algorithms (all its type allows by default).

        Applies the same key policy as parse_jwks; ValueError says why a key is refused."""
        kty, allowed, verifiers = _policy(public_key)
        if algorithms is None:
            algorithms = allowed
        elif not algorithms or not algorithms <= allowed:
            # RFC 7517 §4.4: the JWK's alg must fit its key ("RS256" on an EC key is refused).
            wanted = ", ".join(sorted(algorithms)) or "none"
            raise ValueError(f"alg {wanted} does not fit a {_describe(public_key)} key")
        material = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(
            kid=kid,
            kty=kty,
            algorithms=algorithms,
            _verifiers={alg: verifiers[alg] for alg in algorithms},
            _material=material,
        )


def _describe(public_key: PublicKey) -> str:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {_EC_NAMES.get(public_key.curve.name, public_key.curve.name)}"
    return "Ed25519" if isinstance(public_key, ed25519.Ed25519PublicKey) else "Ed448"


def _policy(public_key: PublicKey) -> tuple[str, frozenset[str], dict[str, Verifier]]:
    """kty, the algorithms this key type may verify, and a verifier for each."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        _check_rsa(numbers.n, numbers.e)
        return "RSA", _RSA_ALGORITHMS, _rsa_verifiers(public_key, _RSA_ALGORITHMS)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        crv = _EC_NAMES.get(public_key.curve.name)
        if crv is None:
            raise ValueError(f"EC curve {public_key.curve.name} is not P-256, P-384 or P-521")
        _, alg, size = _EC_CURVES[crv]
        return "EC", frozenset({alg}), {alg: _ec_verifier(public_key, _HASHES[alg[2:]], size)}
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "OKP", frozenset({"EdDSA"}), {"EdDSA": _eddsa_verifier(public_key, 64)}
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "OKP", frozenset({"EdDSA"}), {"EdDSA": _eddsa_verifier(public_key, 114)}
    raise ValueError(f"unsupported key type {type(public_key).__name__}")


# -- JWK members → cryptography public key ----------------------------------------------------
def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f"member {name!r} missing or not a string")
    try:
        return b64url_decode(value)
    except ValueError:
        raise ValueError(f"member {name!r} is not canonical unpadded base64url") from None


def _rsa_key(jwk: Mapping[str, Any]) -> PublicKey:
    # RFC 7518 §6.3.1: n and e are Base64urlUInt. A leading zero octet in n (some libraries
    # emit one) does not change the integer, so it is tolerated; the size is the integer's.
    n = int.from_bytes(_member(jwk, "n"), "big")
    e = int.from_bytes(_member(jwk, "e"), "big")
    _check_rsa(n, e)
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise ValueError(f"RSA key refused by cryptography: {exc}") from None


def _check_rsa(n: int, e: int) -> None:
    bits = n.bit_length()
    if bits < MIN_RSA_BITS:
        raise ValueError(f"RSA key of {bits} bits (minimum {MIN_RSA_BITS})")
    if bits > MAX_RSA_BITS:
        raise ValueError(f"RSA key of {bits} bits (maximum {MAX_RSA_BITS})")
    if e <= 1 or e % 2 == 0:  # e = 1: every value is its own "signature"
        shown = e if e.bit_length() <= 64 else f"of {e.bit_length()} bits"
        raise ValueError(f"RSA public exponent {shown} (must be odd and > 1)")
    if n % 2 == 0 or e >= n:
        raise ValueError("RSA modulus is even or not larger than the exponent")
    if _has_roca_fingerprint(n):
        raise ValueError("RSA modulus has the ROCA fingerprint (CVE-2017-15361): factorable")
    # Moduli anyone can factor, so sign for (35 µs a key: a JWKS is parsed on the event loop):
    # one with a prime factor below 4096, or a square. A prime modulus (d = e^-1 mod n-1) would
    # need a primality test, 20 ms a key in Python: not checked.
    if math.gcd(n, _small_primes_product()) != 1:
        raise ValueError("RSA modulus has a small prime factor: factorable")
    if math.isqrt(n) ** 2 == n:
        raise ValueError("RSA modulus is a square: factorable")


@functools.cache
def _small_primes_product() -> int:
    """The product of the primes below 4096 (one int: nothing for the collector to walk)."""
    limit = 4096
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return math.prod(i for i in range(limit) if sieve[i])


@functools.cache
def _roca_subgroups() -> tuple[tuple[int, int], ...]:
    """For each odd prime r ≤ 701: r, and the residues mod r of the powers of 65537 as the set
    bits of an int. Ints rather than 125 frozensets of 21,000 members: the table is built at the
    first key load, after the worker froze its heap, and the collector skips tuples of ints but
    would walk every member of a set on each full collection."""
    table = []
    for r in range(3, 702, 2):
        if all(r % d for d in range(3, math.isqrt(r) + 1, 2)):
            powers, x = 1 << 1, 65537 % r
            while not powers >> x & 1:
                powers |= 1 << x
                x = x * 65537 % r
            table.append((r, powers))
    return tuple(table)


def _has_roca_fingerprint(n: int) -> bool:
    # ROCA: Infineon's RSA library built primes as k*M + (65537^a mod M), M the product of the
    # primes up to 701 for 1984-4096-bit keys. So n mod r is a power of 65537 mod r for every
    # such prime r; a random modulus passes all 125 tests with probability about 2^-167.
    return all(powers >> (n % r) & 1 for r, powers in _roca_subgroups())


def _ec_key(jwk: Mapping[str, Any]) -> PublicKey:
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in _EC_CURVES:
        raise ValueError(f"EC crv {crv!r} is not P-256, P-384 or P-521")
    curve, _, size = _EC_CURVES[crv]
    x, y = _member(jwk, "x"), _member(jwk, "y")
    # RFC 7518 §6.2.1.2-3: each coordinate is the full size for the curve.
    if len(x) != size or len(y) != size:
        raise ValueError(f"EC {crv} coordinates must be {size} bytes each")
    try:  # cryptography refuses a point that is not on the curve
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
    except ValueError:
        raise ValueError(f"EC point is not on curve {crv}") from None


def _okp_key(jwk: Mapping[str, Any]) -> PublicKey:
    crv = jwk.get("crv")
    x = _member(jwk, "x") if crv in ("Ed25519", "Ed448") else b""
    if isinstance(crv, str) and crv in _SMALL_ORDER_Y and len(x) == _OKP_SIZES[crv]:
        # A point of small order (the identity, ...) verifies signatures anyone can make:
        # R = x and S = 0 pass for every message. Known by y (the sign bit aside), mod p.
        field_prime, small_y = _SMALL_ORDER_Y[crv]
        y = int.from_bytes(x, "little") & ((1 << (8 * len(x) - 1)) - 1)
        if y % field_prime in small_y:
            raise ValueError(f"OKP {crv} public key is a point of small order: forgeable")
    try:  # RFC 8037 §2; X25519/X448 are key-agreement curves, never signature keys
        if crv == "Ed25519":
            return ed25519.Ed25519PublicKey.from_public_bytes(x)
        if crv == "Ed448":
            return ed448.Ed448PublicKey.from_public_bytes(x)
    except ValueError:
        raise ValueError(f"OKP {crv} public key is not a valid encoding") from None
    raise ValueError(f"OKP crv {crv!r} is not Ed25519 or Ed448")


_ED25519_P: Final = 2**255 - 19
_ED448_P: Final = 2**448 - 2**224 - 1
_OKP_SIZES: Final = {"Ed25519": 32, "Ed448": 57}
# The y coordinates of the points of order 1, 2, 4 and 8 (RFC 8032's curves: cofactor 8 and 4).
_SMALL_ORDER_Y: Final[Mapping[str, tuple[int, frozenset[int]]]] = {
    "Ed25519": (
        _ED25519_P,
        frozenset(
            {
                0,
                1,
                _ED25519_P - 1,
                0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
                0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
            }
        ),
    ),
    "Ed448": (_ED448_P, frozenset({0, 1, _ED448_P - 1})),
}

_KEY_TYPES: Final[Mapping[str, Callable[[Mapping[str, Any]], PublicKey]]] = {
    "RSA": _rsa_key,
    "EC": _ec_key,
    "OKP": _okp_key,
}


def _jwk_to_key(jwk: Mapping[str, Any]) -> VerificationKey:
    """One JWK → VerificationKey; ValueError (the human reason) when refused."""
    kid = jwk.get("kid")
    if "kid" in jwk and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    # Never trust a JWKS that publishes private key material: refuse the key outright.
    leaked = [name for name in _PRIVATE_MEMBERS if name in jwk]
    if leaked:
        raise ValueError(f"private key member(s) {', '.join(leaked)} published")
    # RFC 7517 §4.2/§4.3: only signature keys verify signatures.
    if "use" in jwk and jwk["use"] != "sig":
        raise ValueError(f"use {jwk['use']!r} is not 'sig'")
    if "key_ops" in jwk:
        ops = jwk["key_ops"]
        if not isinstance(ops, list) or "verify" not in ops:
            raise ValueError(f"key_ops {ops!r} does not allow 'verify'")
    alg = jwk.get("alg")
    if "alg" in jwk and (not isinstance(alg, str) or alg not in ALGORITHMS):
        raise ValueError(f"alg {alg!r:.80} is not one of {', '.join(sorted(ALGORITHMS))}")
    kty = jwk.get("kty")
    if kty == "oct":  # a symmetric key in a public document: anyone could sign with it
        raise ValueError("symmetric key (kty 'oct') is never accepted")
    build = _KEY_TYPES.get(kty) if isinstance(kty, str) else None
    if build is None:
        raise ValueError(f"kty {kty!r} is not RSA, EC or OKP")
    public_key = build(jwk)
    algorithms = frozenset({alg}) if isinstance(alg, str) else None
    key = VerificationKey.from_public_key(public_key, kid=kid, algorithms=algorithms)
    return replace(key, jwk_header=render_header_value(dict(jwk)))


# -- key sets ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeySet:
    """The usable keys of one issuer, indexed once for select()."""

    keys: tuple[VerificationKey, ...] = ()
    poisoned: frozenset[str] = frozenset()  # kids that appeared more than once: never usable
    rejected: tuple[str, ...] = ()  # one human reason per JWK refused
    _by_kid: dict[str, VerificationKey] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _single: dict[str, VerificationKey] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        seen: set[str] = set()
        by_alg: dict[str, list[VerificationKey]] = {}
        for key in self.keys:
            if key.kid is not None and key.kid not in self.poisoned:
                if key.kid in seen:  # a hand-built set with a duplicate kid: poison it too
                    self._by_kid.pop(key.kid, None)
                else:
                    seen.add(key.kid)
                    self._by_kid[key.kid] = key
            for alg in key.algorithms:
                by_alg.setdefault(alg, []).append(key)
        # A token without kid: only when exactly one key can verify its alg (DESIGN).
        for alg, candidates in by_alg.items():
            if len(candidates) == 1:
                self._single[alg] = candidates[0]

    def select(self, kid: str | None, alg: str) -> VerificationKey | None:
        """The key for this kid (None when unknown, poisoned, or not bound to `alg`); without
        a kid, the one key that verifies `alg`, if there is exactly one."""
        if kid is None:
            return self._single.get(alg)
        key = self._by_kid.get(kid)
        # The algorithm comes from the key: a token's alg only picks among the key's own.
        if key is None or alg not in key.algorithms:
            return None
        return key


def _label(index: int, jwk: object) -> str:
    if not isinstance(jwk, dict) or "kid" not in jwk:
        return f"key {index} (no kid)" if isinstance(jwk, dict) else f"key {index}"
    kid = jwk["kid"]
    return f"key {index} (kid {kid!r})" if isinstance(kid, str) else f"key {index}"


def parse_jwks(document: object, *, source: str = "jwks") -> KeySet:
    """Parse a JWK Set document (already JSON-decoded). Never raises for a bad key: the key is
    left out and the reason recorded; raises JwksError only when it is not `{"keys": [...]}`."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError(f'{source}: not a JWK Set (expected an object {{"keys": [...]}})')
    entries: list[object] = document["keys"]
    counts: dict[str, int] = {}
    for jwk in entries:
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        if isinstance(kid, str):
            counts[kid] = counts.get(kid, 0) + 1
    # A kid used twice cannot say which key it names: poison it rather than guess.
    poisoned = frozenset(kid for kid, count in counts.items() if count > 1)
    keys: list[VerificationKey] = []
    rejected: list[str] = []
    for index, jwk in enumerate(entries):
        try:
            if not isinstance(jwk, dict):
                raise ValueError("not a JSON object")
            key = _jwk_to_key(jwk)
            if key.kid in poisoned:
                raise ValueError("kid is used by more than one key (poisoned)")
        # TypeError: a member of a type no check foresaw; RecursionError: one nested too deep
        # to render (the JSON decoder stops such a document first, but not every caller)
        except (ValueError, TypeError, RecursionError) as exc:
            rejected.append(f"{source}: {_label(index, jwk)}: {exc}")
            continue
        keys.append(key)
    return KeySet(keys=tuple(keys), poisoned=poisoned, rejected=tuple(rejected))


def _same_key(a: VerificationKey, b: VerificationKey) -> bool:
    return a.kty == b.kty and a.algorithms == b.algorithms and a._material == b._material


def merge(*sets: KeySet) -> KeySet:
    """One KeySet from several (jwks_uri + extra_jwks_uris). The same key published twice is
    kept once; a kid naming different keys in two sets is poisoned."""
    poisoned: set[str] = set().union(*(s.poisoned for s in sets))
    rejected: list[str] = [reason for s in sets for reason in s.rejected]
    by_kid: dict[str, VerificationKey] = {}
    merged: list[VerificationKey] = []
    for key_set in sets:
        for key in key_set.keys:
            if key.kid is None:
                if not any(_same_key(key, other) for other in merged if other.kid is None):
                    merged.append(key)
                continue
            if key.kid in poisoned:
                continue
            first = by_kid.get(key.kid)
            if first is None:
                by_kid[key.kid] = key
                merged.append(key)
            elif not _same_key(first, key):
                poisoned.add(key.kid)
                rejected.append(f"kid {key.kid!r} names different keys in two key sets (poisoned)")
    return KeySet(
        keys=tuple(key for key in merged if key.kid not in poisoned),
        poisoned=frozenset(poisoned),
        rejected=tuple(rejected),
    )
