"""split_token / verify_signature / decode_claims / check_claims: a failing example per rule
(asserting the exception class), happy paths for all ten algorithms with PyJWT-minted tokens,
algorithm confusion, and a property test: any string gives an AuthError or a result."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from tokengate.gateway.errors import (
    AuthError,
    BadClaims,
    BadIssuer,
    BadSignature,
    Expired,
    MalformedToken,
    NotYetValid,
    UnsupportedAlgorithm,
)
from tokengate.gateway.jwk import ALGORITHMS, KeySet, b64_standard_decode, b64url_decode, parse_jwks
from tokengate.gateway.verify import (
    MAX_TOKEN_SIZE,
    ClaimRules,
    TokenParts,
    check_claims,
    check_max_age,
    decode_claims,
    split_token,
    verify_signature,
)
from tokengate.jsonlimits import MAX_CLIENT_NESTING

ISSUER = "https://idp.example/k3x9q2w7e5r1t8y4/auth"
NOW = 1_800_000_000.0
RULES = ClaimRules(issuers=frozenset({ISSUER}))

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


@functools.cache
def private_keys() -> dict[str, PrivateKey]:
    """kid → private key; the kid names the key type."""
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "ed448": ed448.Ed448PrivateKey.generate(),
    }


KID_FOR = {
    **{alg: "rsa" for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": "p256",
    "ES384": "p384",
    "ES512": "p521",
    "EdDSA": "ed25519",
}


def public_jwk(kid: str) -> dict[str, Any]:
    public = private_keys()[kid].public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


@functools.cache
def jwks() -> KeySet:
    keys = parse_jwks({"keys": [public_jwk(kid) for kid in private_keys()]})
    assert keys.rejected == ()
    return keys


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": ["api"],
        "iat": int(NOW) - 10,
        "nbf": int(NOW) - 10,
        "exp": int(NOW) + 3600,
        "scope": "read write",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def mint(alg: str = "RS256", payload: dict[str, Any] | None = None, **headers: Any) -> str:
    """A token signed by PyJWT with the key the kid names (default: the key for alg); kid=None
    leaves the kid header out."""
    kid = headers.pop("kid", KID_FOR[alg])
    if kid is not None:
        headers["kid"] = kid
    key = private_keys()[kid if kid in private_keys() else KID_FOR[alg]]
    body = claims() if payload is None else payload
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode("ascii")


def segment(value: object) -> str:
    if isinstance(value, str):
        return value  # already a segment
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64(data)


def forge(header: object, payload: object, alg: str = "RS256", kid: str | None = None) -> str:
    """Any header/payload (dict → JSON, bytes → raw, str → used as the segment), signed with
    the JWKS key for alg (or kid): a correct signature over whatever we built."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    key = private_keys()[kid or KID_FOR[alg]]
    signature = get_default_algorithms()[alg].sign(signing_input.encode("ascii"), key)
    return f"{signing_input}.{b64(signature)}"


def header(alg: str = "RS256", **extra: Any) -> dict[str, Any]:
    return {"alg": alg, "kid": KID_FOR.get(alg, "rsa"), **extra}


def accept(token: str, keys: KeySet | None = None, now: float = NOW) -> dict[str, Any]:
    """The whole miss path; UnknownKey is a LookupError here (the caller's business)."""
    parts = split_token(token)
    key = (keys or jwks()).select(parts.kid, parts.alg)
    if key is None:
        raise LookupError("no key")
    verify_signature(parts, key)
    payload = decode_claims(parts)
    check_claims(payload, RULES, now)
    return payload


# -- happy paths -------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_every_algorithm_with_pyjwt_tokens(alg: str) -> None:
    token = mint(alg)
    assert accept(token)["sub"] == "client-1"
    parts = split_token(token)
    assert (parts.alg, parts.kid) == (alg, KID_FOR[alg])
    assert parts.signing_input == token.rsplit(".", 1)[0].encode()
    assert b64_standard_decode(parts.payload_segment) == b64url_decode(token.split(".")[1])
    assert parts.header == {"alg": alg, "kid": KID_FOR[alg], "typ": "JWT"}


def test_ed448_eddsa() -> None:
    assert accept(mint("EdDSA", kid="ed448"))["iss"] == ISSUER


def test_check_claims_returns_exp() -> None:
    assert check_claims(claims(exp=int(NOW) + 60), RULES, NOW) == NOW + 60
    assert check_claims(claims(exp=NOW + 0.5), RULES, NOW) == NOW + 0.5


def test_check_max_age_returns_when_the_token_stops_passing() -> None:
    assert check_max_age(claims(auth_time=NOW - 10), 60, NOW, 5) == NOW + 55
    assert check_max_age(claims(auth_time=NOW - 65), 60, NOW, 5) == NOW  # the last moment
    with pytest.raises(BadClaims, match="auth_time is required"):
        check_max_age(claims(), 60, NOW, 0)
    with pytest.raises(BadClaims, match="older than max_age"):
        check_max_age(claims(auth_time=NOW - 61), 60, NOW, 0)
    for bad in ("1", True, None):
        with pytest.raises(BadClaims):
            check_max_age(claims(auth_time=bad), 60, NOW, 0)


def test_token_without_kid_uses_the_single_key_for_its_alg() -> None:
    token = mint("ES384", kid=None)
    assert split_token(token).kid is None
    assert accept(token)["sub"] == "client-1"
    two = parse_jwks({"keys": [public_jwk("p384"), {**public_jwk("p384"), "kid": "again"}]})
    with pytest.raises(LookupError):
        accept(token, two)


# -- shape ---------------------------------------------------------------------------------
def tokens_near(length: int) -> dict[int, str]:
    """Valid tokens of lengths around `length` (header and payload padding vary together)."""
    base = len(forge(header(), claims(pad="")))
    found: dict[int, str] = {}
    for header_pad in range(3):
        for extra in range(-8, 8):
            pad = "x" * (3 * (length - base) // 4 + extra)
            token = forge(header(x="y" * header_pad), claims(pad=pad))
            found.setdefault(len(token), token)
    return found


def test_size_cap() -> None:
    near = tokens_near(MAX_TOKEN_SIZE)
    assert accept(near[MAX_TOKEN_SIZE])
    with pytest.raises(MalformedToken, match="longer than 8192"):
        split_token(near[min(n for n in near if n > MAX_TOKEN_SIZE)])
    with pytest.raises(MalformedToken):
        split_token("a" * 1_000_000)


@pytest.mark.parametrize(
    "make",
    [
        lambda t: t.rsplit(".", 1)[0],  # two segments
        lambda t: t + ".",  # four, last empty
        lambda t: t + ".AAAA",  # four
        lambda t: t.replace(".", "..", 1),  # empty payload in the middle
        lambda t: "",
        lambda t: "..",
        lambda t: "." + t.split(".", 1)[1],  # empty header
        lambda t: t.split(".")[0] + ".." + t.split(".")[2],  # empty payload
        lambda t: t.rsplit(".", 1)[0] + ".",  # empty signature
    ],
)
def test_three_non_empty_segments(make: Callable[[str], str]) -> None:
    with pytest.raises(MalformedToken):
        split_token(make(mint()))


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s + "=",
        lambda s: s + "==",
        lambda s: s[:5] + " " + s[5:],
        lambda s: " " + s,
        lambda s: s + "\n",
        lambda s: s[:5] + "\t" + s[5:],
        lambda s: s[:5] + "+" + s[6:],
        lambda s: s[:5] + "/" + s[6:],
        lambda s: s[:5] + "\u00e9" + s[6:],
        lambda s: s[:5] + "\x00" + s[6:],
        lambda s: s[:5] + "%" + s[6:],
    ],
)
def test_segments_are_strict_base64url(index: int, mutate: Callable[[str], str]) -> None:
    segments = mint().split(".")
    segments[index] = mutate(segments[index])
    with pytest.raises(MalformedToken):
        split_token(".".join(segments))


def non_canonical(seg: str) -> str:
    """The same bytes with non-zero unused bits in the last character."""
    rem = len(seg) % 4
    assert rem in (2, 3), "pick a segment with unused bits"
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(seg[-1])
    bumped = seg[:-1] + alphabet[last + 1]
    padded = bumped + "=" * (4 - rem)
    assert jwt.utils.base64url_decode(padded) == jwt.utils.base64url_decode(seg)  # same bytes
    return bumped


def test_non_canonical_base64_is_refused_in_every_segment() -> None:
    for index in range(3):
        # pad the header and payload until the segment has unused bits in its last character
        token = next(
            t
            for i in range(3)
            if len((t := forge(header(x="y" * i), claims(pad="z" * i))).split(".")[index]) % 4
            in (2, 3)
        )
        assert accept(token)
        segments = token.split(".")
        segments[index] = non_canonical(segments[index])
        with pytest.raises(MalformedToken):
            split_token(".".join(segments))


def test_segment_length_one_past_a_multiple_of_four() -> None:
    segments = mint().split(".")
    segments[1] = segments[1][: len(segments[1]) // 4 * 4] + "A"
    with pytest.raises(MalformedToken):
        split_token(".".join(segments))


@pytest.mark.parametrize(
    "bad_header",
    [
        b"not json",
        b"",
        b"[]",
        b'"RS256"',
        b"null",
        b"1",
        b'{"alg":"RS256","kid":"rsa"',  # truncated
        b'{"alg":"RS256","kid":"rsa"}x',  # trailing data
        b'{"alg":"RS256","alg":"RS256","kid":"rsa"}',  # duplicate member
        b'{"alg":"RS256","kid":"rsa","x":{"a":1,"a":2}}',  # nested duplicate
        b'{"alg":"RS256","kid":"rsa","\\u0061lg":"ES256"}',  # duplicate after unescaping
        b'{"alg":"RS256","kid":"rsa","x":NaN}',
        b'{"alg":"RS256","kid":"rsa","x":Infinity}',
        b'{"alg":"RS256","kid":"rsa","x":-Infinity}',
        b'{"alg":"RS256","kid":"rsa","x":"\xff"}',  # not UTF-8
        b'\xef\xbb\xbf{"alg":"RS256","kid":"rsa"}',  # BOM
        b" ",  # one character, not JSON (its segment "IA")
        b'{"alg":"RS256","kid":"rsa","x":' + b"[" * 2000 + b"]" * 2000 + b"}",  # too deep
    ],
)
def test_header_is_a_utf8_json_object_without_duplicates(bad_header: bytes) -> None:
    token = forge(bad_header, claims())
    assert len(token) <= MAX_TOKEN_SIZE
    with pytest.raises(MalformedToken):
        split_token(token)


def encoded(value: object) -> str:
    """A segment of raw bytes, or of a value's JSON."""
    return b64(value if isinstance(value, bytes) else json.dumps(value).encode())


RS256 = encoded({"alg": "RS256"})


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("é.a.a", "token is not ASCII"),
        ("a.a", "not three dot-separated segments"),
        ("a..a", "empty segment"),
        ("A.e30.AAAA", "header is not canonical unpadded base64url"),
        (f"{encoded(b'{')}.e30.AAAA", "header is not UTF-8 JSON"),
        (f"{encoded([])}.e30.AAAA", "header is not a JSON object"),
        (f"{encoded({})}.e30.AAAA", "alg missing or not supported"),
        (f"{encoded({'alg': 'RS256', 'kid': 1})}.e30.AAAA", "kid is not a string"),
        (
            f"{encoded({'alg': 'RS256', 'crit': []})}.e30.AAAA",
            "crit/b64 header: extensions are not supported",
        ),
        (f"{encoded({'alg': 'RS256', 'typ': 'x'})}.e30.AAAA", "typ is not JWT or at+jwt"),
        (f"{RS256}.e3=.AAAA", "payload is not canonical unpadded base64url"),
        (f"{RS256}.e30.A", "signature is not canonical unpadded base64url"),
    ],
)
def test_each_shape_refusal_says_what_is_wrong(token: str, detail: str) -> None:
    """The detail a client reads with display_errors (body and error_description)."""
    with pytest.raises(AuthError) as caught:
        split_token(token)
    assert caught.value.detail == detail


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"iss": "https://other.example"}, "iss missing or not an accepted issuer"),
        ({"iss": ...}, "iss missing or not an accepted issuer"),
        ({"exp": ...}, "exp is required"),
        ({"exp": int(NOW) - 1}, "token expired"),
        ({"exp": "soon"}, "exp is not a finite number"),
        ({"nbf": True}, "nbf is not a finite number"),
        ({"nbf": int(NOW) + 60}, "nbf is in the future"),
        ({"iat": int(NOW) + 60}, "iat is in the future"),
        ({"exp": int(NOW) + 10**9}, "token lifetime exceeds the maximum"),
        ({"exp": 10**400}, "exp is out of range"),
    ],
)
def test_each_claim_refusal_says_what_is_wrong(overrides: dict[str, Any], detail: str) -> None:
    """The detail a client reads with display_errors (body and error_description)."""
    with pytest.raises(AuthError) as caught:
        check_claims(claims(**overrides), RULES, NOW)
    assert caught.value.detail == detail


def test_json_whitespace_is_fine() -> None:
    token = forge(b' {"alg" : "RS256",\n\t"kid":"rsa" } ', claims())
    assert accept(token)


@pytest.mark.parametrize(
    "bad_payload",
    [
        b"[]",
        b'"claims"',
        b"42",
        b"not json",
        b'{"iss":"x","iss":"y"}',
        b'{"exp":NaN}',
        b'{"exp":Infinity}',
        b'{"sub":"\xc3\x28"}',
        b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"exp":' + b"9" * 5000 + b"}",  # more digits than int() accepts
    ],
)
def test_payload_is_a_utf8_json_object_without_duplicates(bad_payload: bytes) -> None:
    parts = split_token(forge(header(), bad_payload))
    verify_signature(parts, jwks().keys[0])  # a good signature does not make it well-formed
    with pytest.raises(MalformedToken):
        decode_claims(parts)


def nested(levels: int) -> bytes:
    """A JSON member value of exactly `levels` levels of arrays."""
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("where", ["header", "payload"])
def test_json_nesting_is_limited_alike_on_every_python(where: str) -> None:
    """The limit is ours, under Python 3.11's parser's (about 1,000 levels): 3.13's parser
    takes about 10,000, and the same token must get the same verdict on both."""
    deepest = MAX_CLIENT_NESTING - 1  # inside the top-level object

    def token(levels: int) -> str:
        if where == "header":
            return forge(b'{"alg":"RS256","kid":"rsa","x":%b}' % nested(levels), claims())
        body = json.dumps(claims()).encode()
        return forge(header(), body[:-1] + b', "x": %b}' % nested(levels))

    parts = split_token(token(deepest))
    verify_signature(parts, jwks().keys[0])
    assert decode_claims(parts)["iss"] == ISSUER
    with pytest.raises(MalformedToken, match=f"nests deeper than {MAX_CLIENT_NESTING}"):
        decode_claims(split_token(token(deepest + 1)))


@pytest.mark.parametrize("where", ["header", "payload"])
@pytest.mark.parametrize(
    "escape",
    [
        b"\\ud800",  # a high half alone
        b"\\uDBFFx",  # a high half before a character that is not a low half
        b"\\udc00",  # a low half alone
        b"\\ud800\\ud800",  # two high halves
        b"\\udc00\\ud800",  # the halves the wrong way round
    ],
)
def test_a_lone_surrogate_escape_is_refused(where: str, escape: bytes) -> None:
    """Not text: Kong's lua-cjson refuses the escape, and such a claim could reach an upstream
    header only as bytes that are not UTF-8. Refused in a member's name (the header's here) as
    in its value (the payload's)."""
    if where == "header":
        token = forge(b'{"alg":"RS256","kid":"rsa","%b":1}' % escape, claims())
        with pytest.raises(MalformedToken, match="header holds a lone surrogate"):
            split_token(token)
        return
    body = json.dumps(claims()).encode()
    parts = split_token(forge(header(), body[:-1] + b', "x": "%b"}' % escape))
    verify_signature(parts, jwks().keys[0])  # signed by the issuer, and still refused
    with pytest.raises(MalformedToken, match="payload holds a lone surrogate"):
        decode_claims(parts)


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (b"\\ud83d\\ude00", "\U0001f600"),  # a pair: one character past the BMP
        (b"\\uD83D\\uDE00", "\U0001f600"),
        (b"\\\\ud800", "\\ud800"),  # an escaped backslash, then "ud800": no escape at all
        (b"\\u00e9", "\u00e9"),
    ],
)
def test_escapes_that_are_text_are_read(escaped: bytes, text: str) -> None:
    body = json.dumps(claims()).encode()
    assert accept(forge(header(), body[:-1] + b', "x": "%b"}' % escaped))["x"] == text


def test_payload_is_not_parsed_before_the_signature() -> None:
    token = forge(header(), b"garbage that is not JSON")
    parts = split_token(token)  # shape only: no JSON parse yet
    assert b64_standard_decode(parts.payload_segment) == b"garbage that is not JSON"


# -- header --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "alg",
    [
        "none",
        "None",
        "NONE",
        "nOnE",
        "HS256",
        "HS384",
        "HS512",
        "rs256",
        "RS1",
        "ES256K",
        "ES521",
        "Ed25519",
        "",
        256,
        None,
        ["RS256"],
        {"alg": "RS256"},
        True,
    ],
)
def test_alg_must_be_supported(alg: object) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        split_token(forge({"alg": alg, "kid": "rsa"}, claims()))


def test_alg_missing() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        split_token(forge({"kid": "rsa"}, claims()))


def test_alg_none_with_empty_signature() -> None:
    unsigned = f"{segment({'alg': 'none'})}.{segment(claims())}."
    with pytest.raises(MalformedToken):  # empty signature segment: shape fails first
        split_token(unsigned)
    with pytest.raises(UnsupportedAlgorithm):
        split_token(unsigned + "AAAA")
    with pytest.raises(UnsupportedAlgorithm):
        split_token(forge({"alg": "none"}, claims()))


@pytest.mark.parametrize("kid", [1, None, ["rsa"], {"k": 1}, False])
def test_kid_must_be_a_string(kid: object) -> None:
    with pytest.raises(MalformedToken):
        split_token(forge({"alg": "RS256", "kid": kid}, claims()))


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt", "Application/JWT"]
)
def test_typ_accepted(typ: str) -> None:
    assert accept(forge(header(typ=typ), claims()))


@pytest.mark.parametrize("typ", ["JOSE", "dpop+jwt", "logout+jwt", "", "JWS", 1, None, ["JWT"]])
def test_typ_refused(typ: object) -> None:
    with pytest.raises(MalformedToken):
        split_token(forge(header(typ=typ), claims()))


@pytest.mark.parametrize("crit", [["exp"], [], ["b64"], "b64", None])
def test_crit_is_refused(crit: object) -> None:
    with pytest.raises(MalformedToken):
        split_token(forge(header(crit=crit), claims()))


@pytest.mark.parametrize("b64_value", [False, True, None])
def test_b64_is_refused(b64_value: object) -> None:
    with pytest.raises(MalformedToken):
        split_token(forge(header(b64=b64_value, crit=["b64"]), claims()))
    with pytest.raises(MalformedToken):
        split_token(forge(header(b64=b64_value), claims()))


def test_embedded_jwk_is_never_used() -> None:
    # the attacker signs with their own key and ships it in the header, under our kid
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    own = {**RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True), "kid": "rsa"}
    hdr = header(jwk=own, jku="https://evil.example/jwks", x5u="https://evil.example/c.pem")
    signing_input = f"{segment(hdr)}.{segment(claims())}"
    signature = get_default_algorithms()["RS256"].sign(signing_input.encode(), attacker)
    token = f"{signing_input}.{b64(signature)}"
    parts = split_token(token)
    key = jwks().select(parts.kid, parts.alg)
    assert key is not None
    with pytest.raises(BadSignature):
        verify_signature(parts, key)


def test_trust_headers_are_ignored_not_refused() -> None:
    # signed by the JWKS key: jku/x5u/jwk/x5c neither help nor hurt
    hdr = header(
        jku="https://evil.example/",
        x5u="https://evil.example/",
        x5c=["MII"],
        jwk={"kty": "oct", "k": "AAAA"},
    )
    assert accept(forge(hdr, claims()))


# -- signature and algorithm/key binding ---------------------------------------------------
def test_hs256_signed_with_the_rsa_public_key_pem() -> None:
    pem = (
        private_keys()["rsa"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = f"{segment({'alg': 'HS256', 'kid': 'rsa'})}.{segment(claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(UnsupportedAlgorithm):
        split_token(f"{signing_input}.{b64(mac)}")


def test_rs256_token_against_an_ec_key() -> None:
    parts = split_token(forge({"alg": "RS256", "kid": "p256"}, claims(), kid="rsa"))
    assert jwks().select(parts.kid, parts.alg) is None  # select refuses the pairing...
    ec_key = jwks().select("p256", "ES256")
    assert ec_key is not None
    with pytest.raises(UnsupportedAlgorithm):  # ...and so does verify_signature
        verify_signature(parts, ec_key)


def test_alg_outside_the_keys_own_binding() -> None:
    keys = parse_jwks({"keys": [{**public_jwk("rsa"), "alg": "PS256"}]})
    parts = split_token(mint("RS256"))
    assert keys.select(parts.kid, parts.alg) is None
    with pytest.raises(UnsupportedAlgorithm):
        verify_signature(parts, keys.keys[0])


def test_wrong_key_and_tampering() -> None:
    token = mint("RS256")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_keys = parse_jwks(
        {"keys": [{**RSAAlgorithm.to_jwk(other.public_key(), as_dict=True), "kid": "rsa"}]}
    )
    with pytest.raises(BadSignature):
        accept(token, other_keys)
    h, p, s = token.split(".")
    tampered_payload = segment({**json.loads(b64url_decode(p)), "sub": "admin"})
    with pytest.raises(BadSignature):
        accept(f"{h}.{tampered_payload}.{s}")
    tampered_header = segment({**json.loads(b64url_decode(h)), "typ": "at+jwt"})
    with pytest.raises(BadSignature):
        accept(f"{tampered_header}.{p}.{s}")


@pytest.mark.parametrize(("alg", "size"), [("ES256", 32), ("ES384", 48), ("ES512", 66)])
def test_ecdsa_signature_is_raw_r_s_of_the_exact_length(alg: str, size: int) -> None:
    token = mint(alg)
    h, p, s = token.split(".")
    raw = b64url_decode(s)
    assert len(raw) == 2 * size
    assert accept(token)
    der = encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))
    for signature in (der, raw[:-1], raw + b"\x00", b"\x00" + raw, raw[:size], raw[:size] * 3):
        with pytest.raises(BadSignature):
            accept(f"{h}.{p}.{b64(signature)}")


@pytest.mark.parametrize("alg", ["RS256", "PS256", "EdDSA"])
def test_signature_of_the_wrong_length(alg: str) -> None:
    h, p, s = mint(alg).split(".")
    raw = b64url_decode(s)
    for signature in (raw[:-1], raw + b"\x00", b"\x00" + raw, b"\x00"):
        with pytest.raises(BadSignature):
            accept(f"{h}.{p}.{b64(signature)}")


def test_token_parts_is_frozen() -> None:
    parts = split_token(mint())
    with pytest.raises(AttributeError):
        parts.alg = "none"  # type: ignore[misc]
    assert isinstance(parts, TokenParts)


# -- claims ----------------------------------------------------------------------------------
def test_exp_required() -> None:
    with pytest.raises(BadClaims, match="exp is required"):
        check_claims(claims(exp=...), RULES, NOW)


@pytest.mark.parametrize(
    "exp",
    [
        "1900000000",
        True,
        False,
        None,
        [1900000000],
        {"t": 1},
        float("nan"),
        float("inf"),
        float("-inf"),
        10**400,
    ],
)
def test_exp_must_be_a_finite_number(exp: object) -> None:
    with pytest.raises(BadClaims):
        check_claims(claims(exp=exp), RULES, NOW)


def test_exp_overflowing_float_in_json() -> None:
    token = forge(header(), b'{"iss":"%s","exp":1e999}' % ISSUER.encode())
    with pytest.raises(BadClaims):
        accept(token)


def test_expired() -> None:
    assert check_claims(claims(exp=NOW + 0.001), RULES, NOW) == NOW + 0.001
    # RFC 7519 §4.1.4: the time must be before exp. At exp the token has expired (Kong's jwt
    # plugin, lua-resty-jwt and PyJWT say so too, and so does our issuer's introspection).
    with pytest.raises(Expired):
        check_claims(claims(exp=NOW), RULES, NOW)
    with pytest.raises(Expired):
        accept(mint(payload=claims(exp=int(NOW) - 1, iat=int(NOW) - 100, nbf=...)))


def test_leeway() -> None:
    lenient = ClaimRules(issuers=frozenset({ISSUER}), leeway=30)
    check_claims(claims(exp=NOW - 29.5), lenient, NOW)
    with pytest.raises(Expired):
        check_claims(claims(exp=NOW - 30), lenient, NOW)  # exactly exp + leeway: expired
    check_claims(claims(nbf=NOW + 30, iat=NOW + 30), lenient, NOW)
    with pytest.raises(NotYetValid):
        check_claims(claims(nbf=NOW + 31), lenient, NOW)


def test_nbf_in_the_future() -> None:
    with pytest.raises(NotYetValid):
        check_claims(claims(nbf=NOW + 1), RULES, NOW)
    check_claims(claims(nbf=NOW), RULES, NOW)
    check_claims(claims(nbf=...), RULES, NOW)


def test_iat_in_the_future() -> None:
    with pytest.raises(NotYetValid):
        check_claims(claims(iat=NOW + 1), RULES, NOW)
    check_claims(claims(iat=...), RULES, NOW)


@pytest.mark.parametrize("name", ["nbf", "iat"])
@pytest.mark.parametrize("value", ["0", True, None, [], float("nan"), 10**400])
def test_nbf_and_iat_must_be_finite_numbers(name: str, value: object) -> None:
    with pytest.raises(BadClaims):
        check_claims(claims(**{name: value}), RULES, NOW)


@pytest.mark.parametrize(
    "iss",
    [
        ...,
        ISSUER + "/",
        ISSUER.upper(),
        ISSUER.replace("https", "http"),
        " " + ISSUER,
        "",
        None,
        1,
        [ISSUER],
        {"iss": ISSUER},
    ],
)
def test_iss_exact(iss: object) -> None:
    with pytest.raises(BadIssuer):
        check_claims(claims(iss=iss), RULES, NOW)


def test_several_issuers() -> None:
    rules = ClaimRules(issuers=frozenset({ISSUER, "https://other.example"}))
    check_claims(claims(iss="https://other.example"), rules, NOW)


def test_lifetime_from_iat() -> None:
    day = ClaimRules(issuers=frozenset({ISSUER}), max_lifetime=86400)
    check_claims(claims(iat=NOW - 100, exp=NOW - 100 + 86400), day, NOW)
    with pytest.raises(BadClaims, match="lifetime"):
        check_claims(claims(iat=NOW - 100, exp=NOW - 100 + 86401), day, NOW)


def test_lifetime_from_nbf_or_now() -> None:
    day = ClaimRules(issuers=frozenset({ISSUER}), max_lifetime=86400)
    with pytest.raises(BadClaims):
        check_claims(claims(iat=..., nbf=NOW - 10, exp=NOW - 10 + 86401), day, NOW)
    check_claims(claims(iat=..., nbf=..., exp=NOW + 86400), day, NOW)
    with pytest.raises(BadClaims):
        check_claims(claims(iat=..., nbf=..., exp=NOW + 86401), day, NOW)


def test_lifetime_also_caps_exp_from_now() -> None:
    # iat slightly in the future (inside the leeway) does not stretch the bound
    rules = ClaimRules(issuers=frozenset({ISSUER}), leeway=60, max_lifetime=3600)
    with pytest.raises(BadClaims):
        check_claims(claims(iat=NOW + 50, nbf=..., exp=NOW + 3620), rules, NOW)


def test_claim_rules_validation() -> None:
    with pytest.raises(ValueError, match="leeway"):
        ClaimRules(issuers=frozenset(), leeway=-1)
    with pytest.raises(ValueError, match="leeway"):
        ClaimRules(issuers=frozenset(), leeway=float("nan"))
    with pytest.raises(ValueError, match="max_lifetime"):
        ClaimRules(issuers=frozenset(), max_lifetime=0)


# -- property: AuthError or a result, never anything else ----------------------------------
def run_everything(token: str) -> None:
    """Every stage, each given its chance even when an earlier one refused."""
    try:
        parts = split_token(token)
    except AuthError:
        return
    keys = jwks()
    key = keys.select(parts.kid, parts.alg) or keys.select("rsa", "RS256")
    assert key is not None
    with contextlib.suppress(AuthError):
        verify_signature(parts, key)
    try:
        payload = decode_claims(parts)
    except AuthError:
        return
    with contextlib.suppress(AuthError):
        check_claims(payload, RULES, NOW)


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.text(max_size=300))
def test_any_text(token: str) -> None:
    run_everything(token)


@PROPERTY
@given(st.lists(st.text(alphabet="ABCQgwxyz019-_=+/. \n\u00e9", max_size=40), max_size=5))
def test_any_dotted_text(pieces: list[str]) -> None:
    run_everything(".".join(pieces))


@functools.cache
def valid_tokens() -> tuple[str, ...]:
    return tuple(mint(alg) for alg in sorted(ALGORITHMS))


@PROPERTY
@given(st.data())
def test_mutated_valid_tokens(data: st.DataObject) -> None:
    token = data.draw(st.sampled_from(valid_tokens()))
    chars = list(token)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["replace", "insert", "delete", "swap"]))
        at = data.draw(st.integers(0, max(0, len(chars) - 1)))
        if op == "replace" and chars:
            chars[at] = data.draw(st.characters())
        elif op == "insert":
            chars.insert(at, data.draw(st.characters()))
        elif op == "delete" and chars:
            del chars[at]
        elif op == "swap":
            other = data.draw(st.sampled_from(valid_tokens())).split(".")
            mine = "".join(chars).split(".")
            index = data.draw(st.integers(0, 2))
            if len(mine) == 3:
                mine[index] = other[index]
            chars = list(".".join(mine))
    run_everything("".join(chars))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@PROPERTY
@given(
    st.dictionaries(
        st.sampled_from(["iss", "exp", "nbf", "iat", "sub", "aud"]) | st.text(max_size=4),
        json_values,
        max_size=6,
    )
)
def test_any_signed_claims(payload: dict[str, Any]) -> None:
    # a correctly signed token with arbitrary claims: still an AuthError or a result
    token = forge(header(), json.dumps(payload, allow_nan=True).encode())
    if len(token) <= MAX_TOKEN_SIZE:
        run_everything(token)
    with contextlib.suppress(AuthError):
        check_claims(payload, RULES, NOW)


@PROPERTY
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_any_header(extra: dict[str, Any]) -> None:
    hdr = {**header(), **extra}
    run_everything(forge(hdr, claims()))


def test_property_helper_sees_a_valid_token() -> None:
    run_everything(mint())


def test_header_cache_reuses_only_checked_headers() -> None:
    from tokengate.gateway.verify import HeaderCache

    cache = HeaderCache(size=2)
    good = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"  # {"alg":"RS256"}
    parts = split_token(good, cache)
    assert parts.alg == "RS256" and len(cache.entries) == 1
    assert split_token(good, cache) == parts
    bad = "eyJhbGciOiJub25lIn0.e30.c2ln"  # {"alg":"none"}: refused, and never remembered
    for _ in range(2):
        with pytest.raises(UnsupportedAlgorithm):
            split_token(bad, cache)
    assert len(cache.entries) == 1
    for header in ("eyJhbGciOiJFUzI1NiJ9", "eyJhbGciOiJQUzI1NiJ9", "eyJhbGciOiJFZERTQSJ9"):
        split_token(header + ".e30.c2ln", cache)
    assert len(cache.entries) <= 2  # bounded
