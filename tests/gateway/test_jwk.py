"""parse_jwks / KeySet / merge: one test (at least) per key rule, select() with and without kid."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tokengate.gateway.jwk import (
    ALGORITHMS,
    JwksError,
    KeySet,
    VerificationKey,
    b64url_decode,
    merge,
    parse_jwks,
)

RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
MESSAGE = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0"


def rsa_key(bits: int = 2048, index: int = 0) -> rsa.RSAPrivateKey:
    """The same key for the same (bits, index), however the arguments are spelled."""
    return _rsa_key(bits, index)


@functools.cache
def _rsa_key(bits: int, index: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: str, index: int = 0) -> ec.EllipticCurvePrivateKey:
    return _ec_key(curve, index)


@functools.cache
def _ec_key(curve: str, index: int) -> ec.EllipticCurvePrivateKey:
    curves = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1(), "P-521": ec.SECP521R1()}
    return ec.generate_private_key(curves[curve])


@functools.cache
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def rsa_jwk(bits: int = 2048, index: int = 0, **members: Any) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(rsa_key(bits, index).public_key(), as_dict=True)
    jwk.update(members)
    return jwk


def ec_jwk(curve: str = "P-256", index: int = 0, **members: Any) -> dict[str, Any]:
    jwk = ECAlgorithm.to_jwk(ec_key(curve, index).public_key(), as_dict=True)
    jwk.update(members)
    return jwk


def ed_jwk(**members: Any) -> dict[str, Any]:
    jwk = OKPAlgorithm.to_jwk(ed_key().public_key(), as_dict=True)
    jwk.update(members)
    return jwk


def b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode("ascii")


def one_key(jwk: dict[str, Any]) -> VerificationKey:
    keys = parse_jwks({"keys": [jwk]})
    assert keys.rejected == (), keys.rejected
    assert len(keys.keys) == 1
    return keys.keys[0]


def refusal(jwk: object) -> str:
    keys = parse_jwks({"keys": [jwk]})
    assert keys.keys == ()
    assert len(keys.rejected) == 1
    return keys.rejected[0]


def rs256(private: rsa.RSAPrivateKey, data: bytes = MESSAGE) -> bytes:
    return private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def es_raw(private: ec.EllipticCurvePrivateKey, data: bytes, hash_: hashes.HashAlgorithm) -> bytes:
    size = (private.curve.key_size + 7) // 8
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hash_)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# -- the algorithm set -------------------------------------------------------------------------
def test_algorithms_are_public_key_only() -> None:
    expected = RSA_ALGS | {"ES256", "ES384", "ES512", "EdDSA"}
    assert expected == ALGORITHMS
    assert not {"none", "HS256", "HS384", "HS512"} & ALGORITHMS


# -- kinds of keys -----------------------------------------------------------------------------
def test_rsa_key_without_alg_verifies_every_rsa_algorithm() -> None:
    key = one_key(rsa_jwk(kid="r1"))
    assert (key.kid, key.kty, key.algorithms) == ("r1", "RSA", RSA_ALGS)
    assert key.verify("RS256", MESSAGE, rs256(rsa_key()))
    assert not key.verify("ES256", MESSAGE, rs256(rsa_key()))


def test_rsa_key_with_alg_is_bound_to_it() -> None:
    key = one_key(rsa_jwk(kid="r1", alg="PS384"))
    assert key.algorithms == {"PS384"}
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    signature = rsa_key().sign(MESSAGE, pss, hashes.SHA384())
    assert key.verify("PS384", MESSAGE, signature)
    # bound to PS384: the same key never verifies RS256 for this JWK
    assert not key.verify("RS256", MESSAGE, rs256(rsa_key()))


def test_pss_salt_must_be_the_hash_length() -> None:
    key = one_key(rsa_jwk(alg="PS256"))
    for salt, ok in ((32, True), (20, False), (0, False)):
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
        assert key.verify("PS256", MESSAGE, rsa_key().sign(MESSAGE, pss, hashes.SHA256())) is ok


@pytest.mark.parametrize(
    ("curve", "alg", "hash_"),
    [
        ("P-256", "ES256", hashes.SHA256()),
        ("P-384", "ES384", hashes.SHA384()),
        ("P-521", "ES512", hashes.SHA512()),
    ],
)
def test_ec_curve_decides_the_algorithm(curve: str, alg: str, hash_: hashes.HashAlgorithm) -> None:
    key = one_key(ec_jwk(curve, kid="e"))
    assert (key.kty, key.algorithms) == ("EC", {alg})
    signature = es_raw(ec_key(curve), MESSAGE, hash_)
    assert key.verify(alg, MESSAGE, signature)
    der = ec_key(curve).sign(MESSAGE, ec.ECDSA(hash_))
    assert not key.verify(alg, MESSAGE, der)  # DER is not the JWS format
    assert not key.verify(alg, MESSAGE, signature[:-1])
    assert not key.verify(alg, MESSAGE, signature + b"\x00")


def test_ed25519_and_ed448() -> None:
    key = one_key(ed_jwk(kid="ed"))
    assert (key.kty, key.algorithms) == ("OKP", {"EdDSA"})
    assert key.verify("EdDSA", MESSAGE, ed_key().sign(MESSAGE))
    assert not key.verify("EdDSA", MESSAGE, ed_key().sign(MESSAGE)[:-1])
    private448 = ed448.Ed448PrivateKey.generate()
    key448 = one_key(OKPAlgorithm.to_jwk(private448.public_key(), as_dict=True))
    assert key448.verify("EdDSA", MESSAGE, private448.sign(MESSAGE))


def test_verify_never_raises_for_garbage() -> None:
    keys = [one_key(rsa_jwk()), one_key(ec_jwk()), one_key(ed_jwk())]
    for key in keys:
        for alg in [*sorted(ALGORITHMS), "none", "HS256", ""]:
            for signature in (b"", b"\x00", b"\xff" * 64, b"\x00" * 256, b"\xff" * 256):
                assert key.verify(alg, MESSAGE, signature) is False


# -- refusals, one per rule --------------------------------------------------------------------
@pytest.mark.parametrize("use", ["enc", "SIG", "", 1, None])
def test_use_must_be_sig(use: object) -> None:
    assert "use" in refusal(rsa_jwk(use=use))


def test_use_sig_or_absent_is_fine() -> None:
    one_key(rsa_jwk(use="sig"))
    one_key(rsa_jwk())


@pytest.mark.parametrize(
    "ops", [["sign"], ["encrypt", "decrypt"], [], "verify", ["sign, verify"], None]
)
def test_key_ops_must_allow_verify(ops: object) -> None:
    assert "key_ops" in refusal(rsa_jwk(key_ops=ops))


def test_key_ops_with_verify_is_fine() -> None:
    one_key(rsa_jwk(key_ops=["verify"]))
    one_key(rsa_jwk(key_ops=["sign", "verify"]))


def test_oct_keys_are_never_accepted() -> None:
    # refused by its own rule, not only for being no key type we build: the rule must stand
    # even if a key type is ever added that an HMAC key would fit
    reason = refusal({"kty": "oct", "alg": "RS256", "kid": "s"})
    assert reason == "jwks: key 0 (kid 's'): symmetric key (kty 'oct') is never accepted"
    # with its secret it is refused for leaking key material first
    assert "private" in refusal({"kty": "oct", "k": b64(b"s" * 32), "alg": "HS256"})


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_private_members_refuse_the_key(member: str) -> None:
    reason = refusal(rsa_jwk(kid="leaky", **{member: "AQAB"}))
    assert reason == f"jwks: key 0 (kid 'leaky'): private key member(s) {member} published"


def test_a_full_private_jwk_is_refused() -> None:
    private = RSAAlgorithm.to_jwk(rsa_key(), as_dict=True)
    assert "private key member(s) d, p, q, dp, dq, qi" in refusal(private)
    private_ec = ECAlgorithm.to_jwk(ec_key("P-256"), as_dict=True)
    assert "private key member(s) d" in refusal(private_ec)


@pytest.mark.parametrize("kty", ["AKP", "rsa", "", None, 3])
def test_unknown_kty(kty: object) -> None:
    assert "kty" in refusal({**rsa_jwk(), "kty": kty})


def test_missing_kty() -> None:
    jwk = rsa_jwk()
    del jwk["kty"]
    assert "kty None" in refusal(jwk)


@pytest.mark.parametrize(
    "alg", ["HS256", "none", "RSA-OAEP", "ES256K", "ES521", "rs256", 256, ["RS256"], {"a": 1}]
)
def test_alg_must_be_a_supported_jws_algorithm(alg: object) -> None:
    assert "alg" in refusal(rsa_jwk(alg=alg))


@pytest.mark.parametrize(
    ("jwk", "alg"),
    [
        (rsa_jwk, "ES256"),
        (rsa_jwk, "EdDSA"),
        (lambda **m: ec_jwk("P-256", **m), "RS256"),
        (lambda **m: ec_jwk("P-256", **m), "ES384"),
        (lambda **m: ec_jwk("P-384", **m), "ES256"),
        (lambda **m: ec_jwk("P-521", **m), "ES384"),
        (ed_jwk, "ES256"),
        (ed_jwk, "RS256"),
    ],
)
def test_alg_must_fit_the_key(jwk: Any, alg: str) -> None:
    assert "does not fit" in refusal(jwk(alg=alg))


@pytest.mark.parametrize("kid", [1, None, ["a"], {"a": 1}, True])
def test_kid_must_be_a_string(kid: object) -> None:
    assert refusal(rsa_jwk(kid=kid)) == "jwks: key 0: kid is not a string"


def test_rsa_minimum_size() -> None:
    reason = refusal(rsa_jwk(1024, kid="abc"))
    assert reason == "jwks: key 0 (kid 'abc'): RSA key of 1024 bits (minimum 2048)"


def modulus_of(bits: int) -> int:
    """An odd modulus of exactly `bits` bits with no prime factor below 4096 (what the size
    checks look at; generating a real 16384-bit key takes minutes)."""
    n = (1 << (bits - 1)) | 1
    while any(n % p == 0 for p in range(3, 4096, 2)):
        n += 2
    return n


def test_rsa_maximum_size_is_openssls() -> None:
    def jwk(n: int) -> dict[str, Any]:
        size = (n.bit_length() + 7) // 8
        return {"kty": "RSA", "kid": "big", "n": b64(n.to_bytes(size, "big")), "e": "AQAB"}

    largest = parse_jwks({"keys": [jwk(modulus_of(16384))]})
    assert largest.rejected == () and largest.select("big", "RS256") is not None
    reason = refusal(jwk(modulus_of(16385)))
    assert reason == "jwks: key 0 (kid 'big'): RSA key of 16385 bits (maximum 16384)"


@pytest.mark.parametrize("e", [1, 2, 4, 65536, 0])
def test_rsa_exponent_odd_and_above_one(e: int) -> None:
    jwk = rsa_jwk(e=b64(e.to_bytes(max(1, (e.bit_length() + 7) // 8), "big")))
    assert "public exponent" in refusal(jwk)


def test_rsa_exponent_three_is_accepted() -> None:
    n = rsa_key().public_key().public_numbers().n
    key = one_key({"kty": "RSA", "n": b64(n.to_bytes(256, "big")), "e": "Aw"})
    assert key.algorithms == RSA_ALGS


def test_rsa_even_modulus() -> None:
    n = rsa_key().public_key().public_numbers().n + 1
    assert "even" in refusal({"kty": "RSA", "n": b64(n.to_bytes(256, "big")), "e": "AQAB"})


def test_a_key_of_a_type_no_check_foresaw_costs_only_itself() -> None:
    """A member of an unexpected JSON type (a list for `alg`, ...) refuses that key with a
    reason; the set's other keys load (RFC 7517 §5: ignore what is not understood)."""
    keys = parse_jwks(
        {"keys": [rsa_jwk(kid="good"), {**ec_jwk("P-256"), "kid": "odd", "alg": ["ES256"]}]}
    )
    assert [key.kid for key in keys.keys] == ["good"]
    (reason,) = keys.rejected
    assert reason.startswith("jwks: key 1 (kid 'odd'): alg ['ES256']"), reason


def _rsa_jwk_of(n: int) -> dict[str, Any]:
    return {"kty": "RSA", "n": b64(n.to_bytes((n.bit_length() + 7) // 8, "big")), "e": "AQAB"}


@pytest.mark.parametrize("factor", [3, 701, 709, 4093])
def test_rsa_modulus_with_a_small_factor_is_refused(factor: int) -> None:
    """Anyone can factor it, so sign with it."""
    q = rsa_key().private_numbers().q
    n = factor * q * (1 << (2048 - q.bit_length() - factor.bit_length() + 1)) + factor * q
    assert "small prime factor" in refusal(_rsa_jwk_of(n))


def test_rsa_modulus_that_is_a_square_is_refused() -> None:
    p = rsa_key(4096).private_numbers().p  # a 2048-bit prime: p^2 has no small factor
    assert "square" in refusal(_rsa_jwk_of(p * p))


# The encodings of Ed25519's points of small order, canonical or not (as libsodium lists them):
# with one, S = 0 and R = the key verify any message.
ED25519_SMALL_ORDER = [
    "01" + "00" * 31,  # the identity
    "ec" + "ff" * 30 + "7f",  # order 2
    "00" * 32,  # order 4
    "00" * 31 + "80",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "ee" + "ff" * 30 + "7f",  # the identity again, y = p + 1
    "ed" + "ff" * 30 + "7f",  # y = p, so 0
]


@pytest.mark.parametrize("encoded", ED25519_SMALL_ORDER)
def test_ed25519_point_of_small_order_is_refused(encoded: str) -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(bytes.fromhex(encoded))}
    assert "small order" in refusal(jwk)


def test_ed25519_identity_key_would_verify_a_forgery() -> None:
    """Why the refusal matters: `cryptography` itself accepts the forged signature."""
    identity = bytes.fromhex(ED25519_SMALL_ORDER[0])
    public = ed25519.Ed25519PublicKey.from_public_bytes(identity)
    public.verify(identity + b"\x00" * 32, b"any message at all")  # no InvalidSignature


@pytest.mark.parametrize("y", [0, 1, 2**448 - 2**224 - 2])
def test_ed448_point_of_small_order_is_refused(y: int) -> None:
    jwk = {"kty": "OKP", "crv": "Ed448", "x": b64(y.to_bytes(57, "little"))}
    assert "small order" in refusal(jwk)


def test_rsa_leading_zero_octet_in_n_is_tolerated() -> None:
    n = rsa_key().public_key().public_numbers().n
    key = one_key({"kty": "RSA", "n": b64(b"\x00" + n.to_bytes(256, "big")), "e": "AQAB"})
    assert key.verify("RS256", MESSAGE, rs256(rsa_key()))


@pytest.mark.parametrize("member", ["n", "e"])
def test_rsa_members_required(member: str) -> None:
    jwk = rsa_jwk()
    del jwk[member]
    assert f"member '{member}' missing" in refusal(jwk)


def test_ec_point_must_be_on_the_curve() -> None:
    jwk = ec_jwk("P-256")
    y = bytearray(b64url_decode(jwk["y"]))
    y[-1] ^= 1
    reason = refusal({**jwk, "y": b64(bytes(y))})
    assert reason.endswith("EC point is not on curve P-256")


def test_ec_coordinates_must_be_full_size() -> None:
    jwk = ec_jwk("P-256")
    x = b64url_decode(jwk["x"])
    assert "32 bytes" in refusal({**jwk, "x": b64(b"\x00" + x)})
    assert "32 bytes" in refusal({**jwk, "x": b64(x[1:])})


@pytest.mark.parametrize("crv", ["secp256k1", "P-192", "Ed25519", None])
def test_ec_crv_must_be_a_nist_curve(crv: object) -> None:
    assert "crv" in refusal({**ec_jwk("P-256"), "crv": crv})


def test_okp_key_agreement_curves_are_refused() -> None:
    public = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    assert "crv 'X25519'" in refusal({"kty": "OKP", "crv": "X25519", "x": b64(public)})


def test_okp_wrong_length() -> None:
    assert "Ed25519" in refusal({"kty": "OKP", "crv": "Ed25519", "x": b64(b"\x01" * 31)})


@pytest.mark.parametrize(
    "mutate",
    [
        lambda v: v + "=",  # padding
        lambda v: v + "==",
        lambda v: v.replace("-", "+").replace("_", "/") + "+/",  # standard alphabet
        lambda v: v[:10] + " " + v[10:],  # whitespace
        lambda v: v + "\n",
        lambda v: v[:10] + "\u00e9" + v[10:],  # non-ASCII
        lambda v: v[:-1],  # one character past a multiple of 4
        lambda v: v[:-1] + "R",  # non-zero unused bits in the last character
        lambda v: "",
    ],
)
def test_base64url_members_are_strict(mutate: Any) -> None:
    jwk = rsa_jwk(kid="k")
    assert len(jwk["n"]) % 4 == 2 and jwk["n"][-1] in "AQgw"
    reason = refusal({**jwk, "n": mutate(jwk["n"])})
    assert reason == "jwks: key 0 (kid 'k'): member 'n' is not canonical unpadded base64url"


def test_base64url_non_canonical_trailing_bits() -> None:
    assert b64url_decode("QQ") == b"A"
    for bad in ("QR", "QW", "Qf"):  # same byte, non-zero unused bits
        with pytest.raises(ValueError, match="canonical"):
            b64url_decode(bad)
    assert b64url_decode("QUI") == b"AB"
    with pytest.raises(ValueError, match="canonical"):
        b64url_decode("QUJ")
    assert b64url_decode("-_-_") == b"\xfb\xff\xbf"
    for bad in ("+/+/", "QQ==", "Q", "", " QQ", "QQ ", "Q\tQ", "QQ\u00e9"):
        with pytest.raises(ValueError):  # noqa: PT011 (binascii's and codecs' messages vary)
            b64url_decode(bad)


def test_x509_members_are_ignored() -> None:
    # x5c/x5t/x5u never widen trust (nor break parsing): the key is n/e, nothing else
    jwk = rsa_jwk(kid="r", x5c=["not a certificate"], x5t="garbage", x5u="http://evil.example/")
    key = one_key(jwk)
    assert key.verify("RS256", MESSAGE, rs256(rsa_key()))
    assert not key.verify("RS256", MESSAGE, rs256(rsa_key(2048, 1)))


def test_entries_that_are_not_objects() -> None:
    keys = parse_jwks({"keys": ["abc", 1, None, [], rsa_jwk(kid="ok")]})
    assert [k.kid for k in keys.keys] == ["ok"]
    assert keys.rejected == tuple(f"jwks: key {i}: not a JSON object" for i in range(4))


# -- the document ------------------------------------------------------------------------------
@pytest.mark.parametrize("document", [None, [], "keys", {}, {"keys": {}}, {"keys": None}])
def test_document_must_be_a_jwk_set(document: object) -> None:
    with pytest.raises(JwksError, match=r"^https://idp\.example/jwks: not a JWK Set"):
        parse_jwks(document, source="https://idp.example/jwks")
    assert issubclass(JwksError, ValueError)


def test_empty_set_and_other_members() -> None:
    keys = parse_jwks({"keys": [], "extra": 1})
    assert (keys.keys, keys.poisoned, keys.rejected) == ((), frozenset(), ())
    assert keys.select(None, "RS256") is None


def test_source_prefixes_reasons() -> None:
    keys = parse_jwks({"keys": [{"kty": "oct"}]}, source="https://idp.example/jwks")
    assert keys.rejected[0].startswith("https://idp.example/jwks: key 0 (no kid): ")


# -- duplicate kids and select() ---------------------------------------------------------------
def test_duplicated_kid_is_poisoned() -> None:
    keys = parse_jwks(
        {"keys": [rsa_jwk(kid="dup"), rsa_jwk(2048, 1, kid="dup"), ec_jwk(kid="other")]}
    )
    assert keys.poisoned == {"dup"}
    assert [k.kid for k in keys.keys] == ["other"]
    assert keys.select("dup", "RS256") is None
    assert len(keys.rejected) == 2
    assert all("poisoned" in reason for reason in keys.rejected)
    assert keys.select("other", "ES256") is not None


def test_same_key_twice_under_one_kid_is_still_poisoned() -> None:
    keys = parse_jwks({"keys": [rsa_jwk(kid="dup"), rsa_jwk(kid="dup")]})
    assert keys.poisoned == {"dup"} and keys.keys == ()


def test_duplicate_kid_poisons_even_when_the_other_entry_is_refused() -> None:
    # a kid must name one key: an "enc" twin still makes the kid ambiguous
    keys = parse_jwks({"keys": [rsa_jwk(kid="k1"), rsa_jwk(kid="k1", use="enc")]})
    assert keys.poisoned == {"k1"} and keys.keys == ()


def test_select_by_kid_checks_the_algorithm() -> None:
    keys = parse_jwks({"keys": [rsa_jwk(kid="r", alg="RS256"), ec_jwk(kid="e")]})
    assert keys.select("r", "RS256") is keys.keys[0]
    assert keys.select("r", "PS256") is None  # bound to RS256 by its JWK
    assert keys.select("r", "ES256") is None
    assert keys.select("e", "ES256") is keys.keys[1]
    assert keys.select("e", "RS256") is None
    assert keys.select("missing", "RS256") is None
    assert keys.select("", "RS256") is None


def test_select_without_kid_needs_exactly_one_key_for_the_alg() -> None:
    single = parse_jwks({"keys": [rsa_jwk(kid="r")]})
    assert single.select(None, "RS256") is single.keys[0]
    assert single.select(None, "PS512") is single.keys[0]
    assert single.select(None, "ES256") is None
    two_rsa = parse_jwks({"keys": [rsa_jwk(kid="a"), rsa_jwk(2048, 1, kid="b"), ec_jwk()]})
    assert two_rsa.select(None, "RS256") is None  # which one? refuse rather than try both
    assert two_rsa.select(None, "ES256") is two_rsa.keys[2]
    bound = parse_jwks({"keys": [rsa_jwk(kid="a", alg="RS256"), rsa_jwk(2048, 1, alg="PS256")]})
    assert bound.select(None, "RS256") is bound.keys[0]
    assert bound.select(None, "PS256") is bound.keys[1]


def test_hand_built_keyset_with_duplicate_kids() -> None:
    a, b = one_key(rsa_jwk(kid="x")), one_key(rsa_jwk(2048, 1, kid="x"))
    keys = KeySet(keys=(a, b))
    assert keys.select("x", "RS256") is None


# -- merge ---------------------------------------------------------------------------------
def test_merge_unions_and_dedupes_the_same_key() -> None:
    first = parse_jwks({"keys": [rsa_jwk(kid="r"), ec_jwk(kid="e")]}, source="a")
    second = parse_jwks({"keys": [rsa_jwk(kid="r"), ed_jwk(kid="d"), {"kty": "oct"}]}, source="b")
    merged = merge(first, second)
    assert [k.kid for k in merged.keys] == ["r", "e", "d"]
    assert merged.poisoned == frozenset()
    assert merged.rejected == second.rejected
    assert merged.select("r", "RS256") is first.keys[0]


def test_merge_poisons_a_kid_naming_different_keys() -> None:
    first = parse_jwks({"keys": [rsa_jwk(kid="r"), ec_jwk(kid="e")]})
    second = parse_jwks({"keys": [rsa_jwk(2048, 1, kid="r")]})
    merged = merge(first, second)
    assert merged.poisoned == {"r"}
    assert [k.kid for k in merged.keys] == ["e"]
    assert merged.select("r", "RS256") is None
    assert any("'r'" in reason and "poisoned" in reason for reason in merged.rejected)


def test_merge_same_material_different_alg_binding_is_poisoned() -> None:
    merged = merge(
        parse_jwks({"keys": [rsa_jwk(kid="r", alg="RS256")]}),
        parse_jwks({"keys": [rsa_jwk(kid="r", alg="PS256")]}),
    )
    assert merged.poisoned == {"r"}


def test_merge_keeps_poisoned_kids_poisoned() -> None:
    poisoned = parse_jwks({"keys": [rsa_jwk(kid="p"), rsa_jwk(2048, 1, kid="p")]})
    clean = parse_jwks({"keys": [rsa_jwk(kid="p")]})
    merged = merge(poisoned, clean)
    assert merged.poisoned == {"p"} and merged.keys == ()
    assert merged.select("p", "RS256") is None


def test_merge_kidless_keys() -> None:
    first = parse_jwks({"keys": [rsa_jwk()]})
    second = parse_jwks({"keys": [rsa_jwk(), ec_jwk()]})
    merged = merge(first, second)
    assert len(merged.keys) == 2  # the same RSA key from two documents counts once
    assert merged.select(None, "RS256") is first.keys[0]
    different = merge(first, parse_jwks({"keys": [rsa_jwk(2048, 1)]}))
    assert different.select(None, "RS256") is None


def test_merge_keeps_the_keys_after_a_kidless_one() -> None:
    kidless_first = parse_jwks({"keys": [ec_jwk(), rsa_jwk(kid="k2")]})
    merged = merge(kidless_first, parse_jwks({"keys": [ec_jwk("P-384", kid="k3")]}))
    assert merged.select("k2", "RS256") is kidless_first.keys[1]
    assert merged.select("k3", "ES384") is not None


def test_merge_of_nothing() -> None:
    assert merge().keys == ()


# -- the internal constructor ----------------------------------------------------------------
def test_from_public_key_applies_the_same_policy() -> None:
    key = VerificationKey.from_public_key(rsa_key().public_key(), kid="k")
    assert key.algorithms == RSA_ALGS and key.kid == "k"
    with pytest.raises(ValueError, match="minimum 2048"):
        VerificationKey.from_public_key(rsa_key(1024).public_key())
    with pytest.raises(ValueError, match="does not fit"):
        VerificationKey.from_public_key(rsa_key().public_key(), algorithms=frozenset({"ES256"}))
    with pytest.raises(ValueError, match="does not fit"):
        VerificationKey.from_public_key(rsa_key().public_key(), algorithms=frozenset())
    with pytest.raises(ValueError, match="curve"):
        VerificationKey.from_public_key(ec.generate_private_key(ec.SECP256K1()).public_key())
    assert "_verifiers" not in repr(key) and "_material" not in repr(key)


def test_a_key_keeps_its_jwk_for_the_jwk_headers_and_a_deep_member_costs_only_itself() -> None:
    """The JWK as published, rendered once per key (upstream_access_token_jwk_header); a member
    nested too deep to render refuses that key, never the set."""
    published = rsa_jwk(kid="k1", use="sig")
    assert json.loads(base64.b64decode(one_key(published).jwk_header or b"")) == published
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    key_set = parse_jwks({"keys": [rsa_jwk(kid="deep", x_extra=deep), rsa_jwk(index=1)]})
    assert [key.kid for key in key_set.keys] == [None]
    assert len(key_set.rejected) == 1 and "'deep'" in key_set.rejected[0]
