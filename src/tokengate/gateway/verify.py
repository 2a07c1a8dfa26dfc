"""Token → claims: JWS compact framing and claim checks for the gateway's miss path. No HTTP here.

    parts = split_token(token)                     # MalformedToken / UnsupportedAlgorithm
    key = keys.select(parts.kid, parts.alg)        # None → the caller's UnknownKey (or refetch)
    verify_signature(parts, key)                   # BadSignature / UnsupportedAlgorithm
    exp = check_claims(decode_claims(parts), rules, now)   # BadIssuer / Expired / NotYetValid ...

Order matters: shape and header first (cheap, and they decide which key), then the signature,
and only then is the payload parsed: nothing a forger writes in the claims is read before the
signature checks out. Every failure is an AuthError subclass; no other exception leaves these
functions, whatever the input string.

Shape (RFC 7515 §3.1, §7.1, made strict): at most MAX_TOKEN_SIZE characters; exactly three
non-empty segments of the base64url alphabet, no padding, canonical; header and payload are
UTF-8 JSON objects with no duplicate member names, no NaN/Infinity, no lone surrogate escape,
and at most MAX_CLIENT_NESTING levels deep (on every Python, whatever its parser's own limit).
Header: `alg` in ALGORITHMS (never none, never HS*); `kid` absent or a string; `typ` absent,
JWT or at+jwt (RFC 9068); `crit` or `b64` present → refused; `jku`, `x5u`, `jwk`, `x5c` are
never read, so a token cannot bring its own key.
Claims: `iss` exactly one of the configured issuers; `exp` required; `exp`, `nbf`, `iat`
finite numbers (not bool, not string); not expired, not before nbf/iat (leeway aside); and a
bounded lifetime.

Hot path: one encode + translate pass over the whole token, base64 through binascii, the C
JSON scanner called directly, keys with prebuilt padding and hash objects, no exception on
the success path.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from json.scanner import make_scanner
from typing import Any, Final, NamedTuple, NoReturn

from tokengate.gateway.errors import (
    BadClaims,
    BadIssuer,
    BadSignature,
    Expired,
    MalformedToken,
    NotYetValid,
    UnsupportedAlgorithm,
)
from tokengate.gateway.jwk import (
    ALGORITHMS,
    URL_TO_STANDARD,
    VerificationKey,
    b64_standard_decode,
)
from tokengate.jsonlimits import MAX_CLIENT_NESTING, holds_lone_surrogate, too_deep_for_a_client

__all__ = [
    "MAX_TOKEN_SIZE",
    "ClaimRules",
    "TokenParts",
    "check_claims",
    "check_max_age",
    "decode_claims",
    "split_token",
    "verify_signature",
]

MAX_TOKEN_SIZE: Final = 8192
# RFC 7515 §4.1.9: "application/" may be omitted, compared case-insensitively; RFC 9068 at+jwt.
_TYPES: Final = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
# After URL_TO_STANDARD: the bytes a base64url segment may hold (the canonical last characters
# are the same in both alphabets).
_STANDARD_ALPHABET: Final = (string.ascii_letters + string.digits + "+/").encode("ascii")
_CANONICAL_LAST: Final = (b"", b"", b"AQgw", b"AEIMQUYcgkosw048")  # by len % 4


class TokenParts(NamedTuple):
    """A compact JWS split and its header checked; the signature is not verified yet.
    (A NamedTuple: one is built per verification, and it is cheaper to build than a dataclass.)"""

    alg: str
    kid: str | None
    header: Mapping[str, Any]
    signing_input: bytes  # b"<header>.<payload>", ASCII
    signature: bytes  # decoded
    # Still encoded (already mapped through URL_TO_STANDARD, shape checked): parsed only after
    # the signature checks out.
    payload_segment: bytes


@dataclass(frozen=True, slots=True)
class ClaimRules:
    issuers: frozenset[str]  # exact `iss` values accepted
    leeway: float = 0.0
    max_lifetime: float = 86400.0  # bounds exp - (iat or nbf or now), and exp - now

    def __post_init__(self) -> None:
        if not math.isfinite(self.leeway) or self.leeway < 0:
            raise ValueError("leeway must be a finite number >= 0")
        if not self.max_lifetime > 0:
            raise ValueError("max_lifetime must be > 0")


# -- JSON: objects only, no duplicate names, no NaN/Infinity -----------------------------------
def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    # RFC 7515 §4 / RFC 7519 §4: duplicate names are refused, never "last one wins" (two
    # parsers must not read two different tokens out of one).
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_decoder: Final = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_no_constant)
# The C scanner json.decoder itself uses, called without decode()'s two whitespace regexes.
# (typeshed types make_scanner's context as make_scanner; a JSONDecoder is what CPython passes.)
_scan_once: Final = make_scanner(_decoder)  # type: ignore[arg-type]


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """Decoded segment bytes → a JSON object (MalformedToken)."""
    try:
        text = data.decode("utf-8")
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:  # not a value at index 0 (e.g. leading whitespace)
            end = -1
        if end != len(text):  # whitespace around the value, or trailing data: full decoder
            value = _decoder.decode(text)
    except (ValueError, RecursionError):  # UTF-8, JSON, duplicates, huge ints, deep nesting
        raise MalformedToken(f"{what} is not UTF-8 JSON") from None
    if type(value) is not dict:
        raise MalformedToken(f"{what} is not a JSON object")
    if too_deep_for_a_client(text, value):
        raise MalformedToken(f"{what} nests deeper than {MAX_CLIENT_NESTING} levels")
    if "\\" in text and holds_lone_surrogate(value, text):  # most tokens have no escape at all
        # Not text (Kong's lua-cjson refuses the escape): such a claim could reach an upstream
        # header only as bytes that are not UTF-8.
        raise MalformedToken(f"{what} holds a lone surrogate")
    return value


# -- shape and header -------------------------------------------------------------------------
class HeaderCache:
    """Checked headers by their encoded segment. An issuer's tokens share one header (alg, kid,
    typ), so its decoding and checks run once; only headers that passed them are kept. Bounded:
    cleared when full, so random headers cost a parse each, never memory. One per verifier."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.entries: dict[bytes, tuple[str, str | None, dict[str, Any]]] = {}

    def put(self, segment: bytes, checked: tuple[str, str | None, dict[str, Any]]) -> None:
        if len(self.entries) >= self.size:
            self.entries.clear()
        self.entries[segment] = checked


def split_token(token: str, headers: HeaderCache | None = None) -> TokenParts:
    """Split a compact JWS and check its shape and header (MalformedToken,
    UnsupportedAlgorithm). The payload is checked for shape but not parsed. `headers`, when
    given, remembers the headers that passed their checks."""
    if len(token) > MAX_TOKEN_SIZE:  # before any work: the cap bounds everything below
        raise MalformedToken(f"token longer than {MAX_TOKEN_SIZE} characters")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedToken("token is not ASCII") from None
    # One pass maps all three segments to the standard alphabet (and "+/=" to invalid bytes).
    segments = raw.translate(URL_TO_STANDARD).split(b".")
    if len(segments) != 3:
        raise MalformedToken("not three dot-separated segments")
    header_segment, payload_segment, signature_segment = segments
    if not header_segment or not payload_segment or not signature_segment:
        raise MalformedToken("empty segment")
    checked = headers.entries.get(header_segment) if headers is not None else None
    if checked is None:
        checked = _check_header(header_segment)
        if headers is not None:
            headers.put(header_segment, checked)
    alg, kid, header = checked
    rem = len(payload_segment) & 3
    if (
        rem == 1
        or (rem and payload_segment[-1:] not in _CANONICAL_LAST[rem])
        or payload_segment.translate(None, _STANDARD_ALPHABET)  # any byte left is not base64url
    ):
        raise MalformedToken("payload is not canonical unpadded base64url")
    try:
        signature = b64_standard_decode(signature_segment)
    except ValueError:
        raise MalformedToken("signature is not canonical unpadded base64url") from None
    end = len(header_segment) + 1 + len(payload_segment)
    return TokenParts(alg, kid, header, raw[:end], signature, payload_segment)


def _check_header(header_segment: bytes) -> tuple[str, str | None, dict[str, Any]]:
    """A header segment (already mapped to the standard alphabet) decoded and checked."""
    try:
        header_bytes = b64_standard_decode(header_segment)
    except ValueError:
        raise MalformedToken("header is not canonical unpadded base64url") from None
    header = _json_object(header_bytes, "header")
    alg = header.get("alg")
    # The token's alg must be one we verify with a public key: "none" and HS* never get here
    # (and the key still decides: verify_signature checks alg against the key's algorithms).
    if type(alg) is not str or alg not in ALGORITHMS:
        raise UnsupportedAlgorithm("alg missing or not supported")
    kid = header.get("kid")
    if type(kid) is not str and (kid is not None or "kid" in header):
        raise MalformedToken("kid is not a string")
    # RFC 7515 §4.1.11: we understand no extension header, so any "crit" is refused; RFC 7797
    # "b64" changes what is signed and is never honoured.
    if "crit" in header or "b64" in header:
        raise MalformedToken("crit/b64 header: extensions are not supported")
    if "typ" in header:
        typ = header["typ"]
        if type(typ) is not str or typ.lower() not in _TYPES:
            raise MalformedToken("typ is not JWT or at+jwt")
    # "jku", "x5u", "jwk", "x5c" are deliberately never read: a token cannot bring its own key.
    return alg, kid, header


def verify_signature(parts: TokenParts, key: VerificationKey) -> None:
    """BadSignature unless `key` signed this token; UnsupportedAlgorithm when the token's alg
    is not one the key is bound to (an RS256 token against an EC key, ...)."""
    # The algorithm comes from the key: the token's alg only picks among the key's own.
    if parts.alg not in key.algorithms:
        raise UnsupportedAlgorithm("alg not allowed for the selected key")
    if not key.verify(parts.alg, parts.signing_input, parts.signature):
        raise BadSignature("signature does not verify")


def decode_claims(parts: TokenParts) -> dict[str, Any]:
    """The payload as a JSON object (MalformedToken). Call only after verify_signature."""
    try:
        payload = b64_standard_decode(parts.payload_segment)
    except ValueError:
        raise MalformedToken("payload is not canonical unpadded base64url") from None
    return _json_object(payload, "payload")


# -- claims: one short check each ---------------------------------------------------------------
def _timestamp(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate (RFC 7519 §2): an int or float, finite; None when absent."""
    value = claims.get(name)
    if type(value) is int:  # exact types: bool is not a number here
        try:
            return float(value)
        except OverflowError:
            raise BadClaims(f"{name} is out of range") from None
    if type(value) is float and math.isfinite(value):
        return value
    if value is None and name not in claims:
        return None
    raise BadClaims(f"{name} is not a finite number")


def _check_issuer(claims: Mapping[str, Any], issuers: frozenset[str]) -> None:
    iss = claims.get("iss")
    # Exact match only: no trailing-slash or case normalisation (OIDC Core §3.1.3.7).
    if type(iss) is not str or iss not in issuers:
        raise BadIssuer("iss missing or not an accepted issuer")


def _check_exp(claims: Mapping[str, Any], now: float, leeway: float) -> float:
    exp = _timestamp(claims, "exp")
    if exp is None:  # a token that never expires is not accepted
        raise BadClaims("exp is required")
    # RFC 7519 §4.1.4: the current time MUST be before exp (Kong's jwt plugin, lua-resty-jwt and
    # PyJWT agree, as does our issuer's introspection): at exp + leeway the token is expired.
    if now >= exp + leeway:
        raise Expired("token expired")
    return exp


def _check_nbf(claims: Mapping[str, Any], now: float, leeway: float) -> float | None:
    nbf = _timestamp(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise NotYetValid("nbf is in the future")
    return nbf


def _check_iat(claims: Mapping[str, Any], now: float, leeway: float) -> float | None:
    iat = _timestamp(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise NotYetValid("iat is in the future")
    return iat


def _check_lifetime(exp: float, start: float | None, now: float, max_lifetime: float) -> None:
    # A stolen long-lived token is a long-lived breach: bound what a token may claim.
    if exp - (now if start is None else start) > max_lifetime or exp - now > max_lifetime:
        raise BadClaims("token lifetime exceeds the maximum")


def check_max_age(claims: Mapping[str, Any], max_age: float, now: float, leeway: float) -> float:
    """Kong's `max_age` for access tokens: `auth_time` is required and at most `max_age`
    seconds old (leeway aside). Returns the moment the token stops passing (BadClaims)."""
    auth_time = _timestamp(claims, "auth_time")
    if auth_time is None:
        raise BadClaims("auth_time is required (max_age)")
    until = auth_time + max_age + leeway
    if now > until:
        raise BadClaims("auth_time is older than max_age")
    return until


def check_claims(claims: Mapping[str, Any], rules: ClaimRules, now: float) -> float:
    """Check iss, exp, nbf, iat and lifetime; return exp. BadIssuer / Expired / NotYetValid /
    BadClaims."""
    _check_issuer(claims, rules.issuers)
    leeway = rules.leeway
    exp = _check_exp(claims, now, leeway)
    nbf = _check_nbf(claims, now, leeway)
    iat = _check_iat(claims, now, leeway)
    _check_lifetime(exp, nbf if iat is None else iat, now, rules.max_lifetime)
    return exp
