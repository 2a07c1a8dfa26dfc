"""Claim requirements: Kong's OR of ANDs, exact matches, claim paths, order of checks."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tokengate.gateway.errors import (
    AudienceNotAllowed,
    Forbidden,
    ForbiddenClaim,
    InsufficientScope,
    MissingGroup,
    MissingRole,
)
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.requirements import Requirements, compile_requirements


def compiled(**fields: Any) -> Requirements:
    requirements = compile_requirements(OidcConfig.for_issuer("https://idp.example", **fields))
    assert requirements is not None
    return requirements


def met(claims: dict[str, Any], **fields: Any) -> bool:
    try:
        compiled(**fields).check(claims)
    except Forbidden:
        return False
    return True


def test_nothing_required_compiles_to_none() -> None:
    assert compile_requirements(OidcConfig.for_issuer("https://idp.example")) is None


# --- scopes: the DESIGN decision ----------------------------------------------------------------

OR_OF_ANDS = {"scopes_required": ("read write", "admin")}


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("read write", True),  # the first AND-group
        ("write read", True),  # order does not matter
        ("admin", True),  # the second alternative
        ("read", False),  # half of an AND-group
        ("write", False),
        ("read admin2", False),
        ("other read write extra", True),  # more than required is fine
        ("", False),
    ],
)
def test_scopes_are_an_or_of_ands(scope: str, expected: bool) -> None:
    assert met({"scope": scope}, **OR_OF_ANDS) is expected


@pytest.mark.parametrize("scope", ["rea", "read:all", "READ", "xread", "read,write", "read\twrite"])
def test_scopes_match_exactly_never_as_substrings(scope: str) -> None:
    assert not met({"scope": scope}, scopes_required=("read",))


def test_scope_claim_may_be_a_list_of_strings() -> None:
    assert met({"scp": ["read", "write"]}, scopes_required=("read write",), scopes_claim=("scp",))
    # list entries are whole values: one entry "read write" is not two scopes
    assert not met({"scp": ["read write"]}, scopes_required=("read",), scopes_claim=("scp",))


def test_scope_claim_list_ignores_entries_that_are_not_strings() -> None:
    assert met({"scope": ["read", 1, None]}, scopes_required=("read",))
    assert not met({"scope": [["read"]]}, scopes_required=("read",))


@pytest.mark.parametrize("value", [None, 1, True, {"read": True}, 1.5])
def test_claim_of_the_wrong_type_meets_nothing(value: object) -> None:
    assert not met({"scope": value}, scopes_required=("read",))


def test_missing_claim_meets_nothing() -> None:
    assert not met({}, scopes_required=("read",))


def test_extra_spaces_in_the_claim_are_harmless() -> None:
    assert met({"scope": " read  write "}, scopes_required=("read write",))


def test_required_entry_spacing_is_normalised() -> None:
    assert met({"scope": "read write"}, scopes_required=("  read   write ",))


# --- claim paths --------------------------------------------------------------------------------


def test_claim_path_walks_nested_objects() -> None:
    claims = {"realm_access": {"roles": ["admin", "user"]}}
    assert met(claims, roles_required=("admin",), roles_claim=("realm_access", "roles"))
    assert not met(claims, roles_required=("root",), roles_claim=("realm_access", "roles"))


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"realm_access": "admin"},  # not an object on the way
        {"realm_access": ["roles"]},
        {"realm_access": {}},
        {"realm_access": {"roles": None}},
        {"roles": ["admin"]},  # at the top level, not at the path
    ],
)
def test_claim_path_that_does_not_lead_to_a_value_meets_nothing(claims: dict[str, Any]) -> None:
    assert not met(claims, roles_required=("admin",), roles_claim=("realm_access", "roles"))


def test_dotted_claim_name_is_one_key_not_a_path() -> None:
    claims = {"realm.roles": ["admin"]}
    assert met(claims, roles_required=("admin",), roles_claim=("realm.roles",))


# --- audience -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aud", "expected"),
    [
        ("api", True),
        (["other", "api"], True),
        ("api2", False),
        ("ap", False),
        (["api2"], False),
        ("api other", False),  # a string audience is one value (RFC 7519 §4.1.3), never split
        (None, False),
        (5, False),
    ],
)
def test_audience_is_a_string_or_a_list(aud: object, expected: bool) -> None:
    assert met({"aud": aud}, audience_required=("api",)) is expected


def test_audience_is_an_or_of_ands_too() -> None:
    fields = {"audience_required": ("a b", "c")}
    assert met({"aud": ["a", "b"]}, **fields)
    assert met({"aud": "c"}, **fields)
    assert not met({"aud": ["a"]}, **fields)


def test_audience_claim_is_configurable() -> None:
    fields = {"audience_required": ("api",), "audience_claim": ("resource",)}
    assert met({"resource": "api", "aud": "other"}, **fields)
    assert not met({"aud": "api"}, **fields)


# --- roles, groups, errors and order ------------------------------------------------------------


def test_roles_and_groups_default_claims() -> None:
    assert met({"roles": "admin ops"}, roles_required=("admin",))
    assert met({"groups": ["eng"]}, groups_required=("eng",))
    assert not met({"groups": ["eng"]}, groups_required=("ops",))


@pytest.mark.parametrize(
    ("fields", "error", "detail"),
    [
        ({"audience_required": ("api",)}, AudienceNotAllowed, "audience_required"),
        ({"scopes_required": ("read",)}, InsufficientScope, "scopes_required"),
        ({"roles_required": ("admin",)}, MissingRole, "roles_required"),
        ({"groups_required": ("eng",)}, MissingGroup, "groups_required"),
    ],
)
def test_each_kind_raises_its_error(
    fields: dict[str, Any], error: type[Forbidden], detail: str
) -> None:
    with pytest.raises(error) as caught:
        compiled(**fields).check({})
    assert type(caught.value) is error
    assert caught.value.status == 403
    claim = {"audience_required": "aud", "scopes_required": "scope"}.get(detail, detail[:-9])
    assert caught.value.detail == f"{detail} not met by claim '{claim}'"


def test_a_nested_claim_path_is_named_with_dots() -> None:
    """The refusal's detail (shown with display_errors) names the path, never a value."""
    with pytest.raises(MissingRole) as caught:
        compiled(roles_required=("admin",), roles_claim=("realm_access", "roles")).check(
            {"realm_access": {"roles": ["dev"]}}
        )
    assert caught.value.detail == "roles_required not met by claim 'realm_access.roles'"


def test_audience_is_invalid_token_and_scope_is_insufficient_scope() -> None:
    # RFC 6750 §3.1: a token for another resource is invalid there; missing scope is insufficient
    assert AudienceNotAllowed.error == "invalid_token"
    assert InsufficientScope.error == "insufficient_scope"


def test_checks_run_in_kongs_order_scopes_audience_groups_roles() -> None:
    """The order of Kong's handler: a token that fails several is refused for the first."""
    requirements = compiled(
        audience_required=("api",),
        scopes_required=("read",),
        roles_required=("admin",),
        groups_required=("eng",),
    )
    claims: dict[str, Any] = {}
    for error, grant in [
        (InsufficientScope, {"scope": "read"}),
        (AudienceNotAllowed, {"aud": "api"}),
        (MissingGroup, {"groups": ["eng"]}),
        (MissingRole, {"roles": ["admin"]}),
    ]:
        with pytest.raises(error):
            requirements.check(claims)
        claims |= grant
    requirements.check(claims)


def test_detail_never_holds_a_claim_value() -> None:
    with pytest.raises(InsufficientScope) as caught:
        compiled(scopes_required=("read",)).check({"scope": "secret-scope-value"})
    assert "secret" not in caught.value.detail


def test_blank_entry_built_in_code_is_refused() -> None:
    # An empty AND-group would be met by every token.
    with pytest.raises(ValueError, match="blank entry"):
        compiled(scopes_required=("read", " "))


def test_empty_claim_path_built_in_code_is_refused() -> None:
    with pytest.raises(ValueError, match="empty claim path"):
        compiled(scopes_required=("read",), scopes_claim=())


def test_check_is_cheap() -> None:
    requirements = compiled(audience_required=("api",), scopes_required=("read write", "admin"))
    claims = {"aud": ["api"], "scope": "openid read write profile"}
    rounds = 20_000
    start = time.perf_counter()
    for _ in range(rounds):
        requirements.check(claims)
    per_check = (time.perf_counter() - start) / rounds
    assert per_check < 20e-6  # a few µs on a slow CI machine; ~1 µs on a laptop


# --- claims_forbidden ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"sub": "a"}, True),
        ({"act": {"sub": "admin"}}, False),  # delegation: any value
        ({"act": ""}, False),
        ({"act": 0}, False),
        ({"act": []}, False),
        ({"act": None}, False),  # a JSON null is a value in Kong's Lua (cjson.null)
        ({"act": False}, True),  # but false counts as absent there
        ({"user": {"act": 1}}, True),  # top-level names only
    ],
)
def test_claims_forbidden_refuses_a_token_holding_one(
    claims: dict[str, Any], expected: bool
) -> None:
    assert met(claims, claims_forbidden=("act", "may_act")) is expected


def test_required_values_are_split_on_ascii_whitespace_only() -> None:
    """As Kong splits them: a no-break space is part of the group's name, not an AND."""
    required = {"groups_required": ("Domain\u00a0Admins",)}
    assert not met({"groups": ["Domain", "Admins"]}, **required)
    assert met({"groups": ["Domain\u00a0Admins"]}, **required)
    assert met({"groups": ["Domain", "Admins"]}, groups_required=("Domain\tAdmins",))


def test_claims_forbidden_comes_before_the_other_requirements() -> None:
    """Kong's handler checks it first: its refusal is the one a token failing both gets."""
    with pytest.raises(ForbiddenClaim, match="forbidden claim 'act' found in the token"):
        compiled(claims_forbidden=("act",), scopes_required=("admin",)).check({"act": "x"})
