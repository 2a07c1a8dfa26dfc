"""Wycheproof vectors (tests/vectors/wycheproof/, Apache-2.0, see its README.md and LICENSE)
through the production verify path: VerificationKey.verify for the signature files, and
parse_jwks + split_token + select + verify_signature for the JOSE-level files.

valid → verifies; invalid → does not; acceptable → either, but no exception. The JOSE files
hold vectors that tokengate refuses on purpose although they are labelled valid: each is
listed in STRICT with the rule that refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tokengate.gateway.errors import AuthError
from tokengate.gateway.jwk import KeySet, VerificationKey, parse_jwks
from tokengate.gateway.verify import split_token, verify_signature

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "wycheproof"

SIGNATURE_FILES = {
    "rsa_signature_2048_sha256_test.json": "RS256",
    "rsa_signature_3072_sha384_test.json": "RS384",
    "rsa_signature_4096_sha512_test.json": "RS512",
    "rsa_pss_2048_sha256_mgf1_32_test.json": "PS256",
    "rsa_pss_2048_sha384_mgf1_48_test.json": "PS384",
    "rsa_pss_4096_sha512_mgf1_64_test.json": "PS512",
    "ecdsa_secp256r1_sha256_p1363_test.json": "ES256",
    "ecdsa_secp384r1_sha384_p1363_test.json": "ES384",
    "ecdsa_secp521r1_sha512_p1363_test.json": "ES512",
    "ed25519_test.json": "EdDSA",
}

# Labelled valid, refused by design (tcId → why). The README lists 346, 347, 350, 351, 367,
# 370, 372, 373 as quirks of the vectors; the others follow from our own rules.
STRICT_JWS = {
    **dict.fromkeys((1, 348, 352, 357, 358, 359, 376, 377), "HS256: never accepted"),
    **dict.fromkeys((259, 264, 268, 272, 320, 325), "empty payload: a JWT has claims"),
    346: "token PS384, key's JWK alg PS256: the key decides",
    350: "token PS384, key's JWK alg PS256: the key decides",
    347: "JWK alg ES521 is not a JWS algorithm: key refused",
    351: "JWK alg ES521 is not a JWS algorithm: key refused",
    372: "'?' is not base64url",
    373: "'?' is not base64url",
}
STRICT_JWK = dict.fromkeys((2, 13, 14, 15), "HS*: never accepted")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def group_key(group: dict[str, Any]) -> VerificationKey:
    """The production parser when the file gives a JWK, else the DER through the same policy."""
    der_key = serialization.load_der_public_key(bytes.fromhex(group["publicKeyDer"]))
    from_der = VerificationKey.from_public_key(der_key)  # type: ignore[arg-type]
    jwk = group.get("publicKeyJwk") or group.get("keyJwk")
    if not jwk:
        return from_der
    keys = parse_jwks({"keys": [jwk]})
    assert keys.rejected == (), keys.rejected
    (key,) = keys.keys
    assert key._material == from_der._material  # the JWK and the DER are the same key
    return key


@pytest.mark.parametrize(("name", "alg"), sorted(SIGNATURE_FILES.items()))
def test_signature_vectors(name: str, alg: str) -> None:
    data = load(name)
    wrong: list[str] = []
    counts = {"valid": 0, "invalid": 0, "acceptable": 0}
    for group in data["testGroups"]:
        key = group_key(group)
        assert alg in key.algorithms
        for test in group["tests"]:
            ok = key.verify(alg, bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]))
            result = test["result"]
            counts[result] += 1
            if (result == "valid" and not ok) or (result == "invalid" and ok):
                wrong.append(f"tcId {test['tcId']} ({result}, {test['comment']}): got {ok}")
    assert wrong == []
    assert sum(counts.values()) == data["numberOfTests"]
    assert counts["valid"] > 0 and counts["invalid"] > 0


def accepts(token: object, keys: KeySet) -> bool:
    if not isinstance(token, str):  # JSON serialization: we take compact tokens only
        token = json.dumps(token)
    try:
        parts = split_token(token)
        key = keys.select(parts.kid, parts.alg)
        if key is None:
            return False
        verify_signature(parts, key)
    except AuthError:
        return False
    return True


def jose_keys(group: dict[str, Any]) -> KeySet:
    """The group's public keys; a group with only a private document (HMAC keys, or a mixed
    set) is parsed as published: the JWKs with private members are refused one by one."""
    document = group.get("public", group["private"])
    return parse_jwks(document if "keys" in document else {"keys": [document]})


@pytest.mark.parametrize(
    ("name", "strict"),
    [("json_web_signature_test.json", STRICT_JWS), ("json_web_key_test.json", STRICT_JWK)],
)
def test_jose_vectors(name: str, strict: dict[int, str]) -> None:
    data = load(name)
    wrong: list[str] = []
    accepted = 0
    for group in data["testGroups"]:
        keys = jose_keys(group)
        for test in group["tests"]:
            ok = accepts(test["jws"], keys)
            accepted += ok
            expected = test["result"] == "valid" and test["tcId"] not in strict
            if ok != expected:
                wrong.append(f"tcId {test['tcId']} ({test['result']}, {test['comment']}): {ok}")
    assert wrong == []
    assert accepted > 0


def test_private_members_refuse_their_key_in_every_document() -> None:
    # every "private" document in the JOSE files: no JWK with private members is usable
    for name in ("json_web_signature_test.json", "json_web_key_test.json"):
        for group in load(name)["testGroups"]:
            document = group["private"]
            entries = document.get("keys", [document])
            keys = parse_jwks({"keys": entries})
            leaking = [e for e in entries if {"d", "k"} & set(e)]
            assert len(keys.keys) == len(entries) - len(leaking)


def test_jwk_vectors_refuse_for_the_right_reason() -> None:
    reasons = {
        "keysize_too_small": "RSA key of 1024 bits (minimum 2048)",
        "exponentOne": "RSA public exponent 1",
        "jws_rsa_roca_key": "ROCA",
        "wrong_algorithm": "alg 'ES521'",
        "invalid_algorithm": "alg 'ES224'",
        "invalid_use": "use 'enc'",
        "invalid_point": "not on curve P-256",
        "wrong_curve": "EC P-384 coordinates must be 48 bytes",
        "wrong_kty": "member 'n' missing",
    }
    seen = set()
    for group in load("json_web_key_test.json")["testGroups"]:
        if group["comment"] in reasons:
            keys = parse_jwks(group["public"])
            assert keys.keys == ()
            assert reasons[group["comment"]] in keys.rejected[0], keys.rejected
            seen.add(group["comment"])
    assert seen == set(reasons)


def test_the_vendored_copy_carries_its_licence() -> None:
    assert "Apache License" in (VECTORS / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License 2.0" in (VECTORS / "README.md").read_text(encoding="utf-8")
    for name in (*SIGNATURE_FILES, "json_web_signature_test.json", "json_web_key_test.json"):
        assert (VECTORS / name).is_file()
