"""Kong's claim requirements: audience, scopes, roles and groups, each an OR of ANDs.

    requirements = compile_requirements(route.oidc)      # None: nothing required
    if requirements is not None:
        requirements.check(claims)                       # raises a Forbidden subclass (403)

`scopes_required: ["read write", "admin"]` is (read AND write) OR admin: each entry holds
space-separated values that must all be present, and any one entry suffices. Values compare as
exact strings, never as substrings or prefixes ("read" does not satisfy "rea" or "read:all").
The claim is found by its path (`scopes_claim: ["realm_access", "roles"]` walks nested
objects). Scopes, roles and groups may be a space-separated string ("read write") or a list of
strings (`scp`); the audience is a string or a list of strings, and a string is one audience
(RFC 7519 §4.1.3), never split. A missing claim or one of another type meets no requirement.
Checks run in the order of Kong's handler: claims_forbidden (top-level claims the token must not
hold), scopes, audience, groups, roles (the first one not met names the refusal). All the work
that can be done once is done in `compile_requirements`; `check` costs a few dictionary lookups
and set operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tokengate.gateway.claim_values import words
from tokengate.gateway.errors import (
    AudienceNotAllowed,
    Forbidden,
    ForbiddenClaim,
    InsufficientScope,
    MissingGroup,
    MissingRole,
)
from tokengate.gateway.oidc_config import OidcConfig

_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ClaimRequirement:
    """One `*_required` setting: satisfied when any AND-group is a subset of the claim's values."""

    name: str  # the setting, for logs: "scopes_required"
    path: tuple[str, ...]  # where the claim is
    any_of: tuple[frozenset[str], ...]  # OR of AND-groups, none of them empty
    split: bool  # a string claim holds space-separated values (not so for the audience)
    error: type[Forbidden]

    def met(self, claims: Mapping[str, Any]) -> bool:
        # A set per check: a handful of short strings, cheaper than any cache of them.
        values = self.values(claims)
        for group in self.any_of:  # noqa: SIM110 - a plain loop: no generator on the hot path
            if group <= values:
                return True
        return False

    def values(self, claims: Mapping[str, Any]) -> frozenset[str] | set[str]:
        value: Any = claims
        for key in self.path:
            if not isinstance(value, (dict, Mapping)):  # dict first: the common, fast case
                return _EMPTY
            value = value.get(key)
        if isinstance(value, str):
            return set(value.split(" ")) if self.split else {value}
        if isinstance(value, list):
            # Only strings count: a number or an object in the list is never a scope.
            return {entry for entry in value if isinstance(entry, str)}
        return _EMPTY  # missing, or a number, boolean, object: meets nothing


@dataclass(frozen=True, slots=True)
class Requirements:
    """A route's requirements, in the order they are checked."""

    checks: tuple[ClaimRequirement, ...]
    # claims_forbidden: top-level claims a token must not hold (Kong's claims.lua: one whose
    # value is false counts as absent), checked before the rest, as Kong's handler does
    forbidden: tuple[str, ...] = ()

    def check(self, claims: Mapping[str, Any]) -> None:
        """Raise ForbiddenClaim / AudienceNotAllowed / InsufficientScope / MissingRole /
        MissingGroup (403) for the first requirement not met. The detail names the setting and
        the claim path, never a value from the token."""
        for name in self.forbidden:
            if claims.get(name, False) is not False:
                raise ForbiddenClaim(f"forbidden claim '{name}' found in the token")
        for requirement in self.checks:
            if not requirement.met(claims):
                claim = ".".join(requirement.path)
                raise requirement.error(f"{requirement.name} not met by claim '{claim}'")


# (kind, error, split a string claim): the order of Kong's handler.
_KINDS: tuple[tuple[str, type[Forbidden], bool], ...] = (
    ("scopes", InsufficientScope, True),
    ("audience", AudienceNotAllowed, False),
    ("groups", MissingGroup, True),
    ("roles", MissingRole, True),
)


def compile_requirements(config: OidcConfig) -> Requirements | None:
    """The config's requirements precomputed; None when it requires nothing (the hot path then
    skips the step)."""
    checks = []
    for kind, error, split in _KINDS:
        required: tuple[str, ...] = getattr(config, f"{kind}_required")
        if not required:
            continue
        groups = tuple(dict.fromkeys(frozenset(words(entry)) for entry in required))
        # An empty AND-group would be met by every token: the loader refuses blank entries,
        # and this guards configs built in code.
        if not all(groups):
            raise ValueError(f"{kind}_required: blank entry in {required!r}")
        path: tuple[str, ...] = getattr(config, f"{kind}_claim")
        if not path or not all(path):
            raise ValueError(f"{kind}_claim: empty claim path {path!r}")
        checks.append(ClaimRequirement(f"{kind}_required", path, groups, split, error))
    forbidden = config.claims_forbidden
    return Requirements(tuple(checks), forbidden) if checks or forbidden else None
