"""Field rules for the management API: request bodies, path ids and list queries.

    values, bad = parse_body(body, {"name": string(min_length=1)}, required=("name",))
    reject(bad)                                  # 400 naming every bad field at once
    query = parse_list_query(request.query, SCOPES_LISTING)
    page, total = query.apply(store.list_scopes(auth_server_id))

Each rule turns a JSON value into the value the store takes, or raises `Invalid` with one of the
spec's InvalidRules. A body field gets at most one `invalid_parameters` entry; unknown fields are
refused (a typo must not be silently ignored); `null` is refused unless the schema says nullable.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeVar

from multidict import MultiMapping

from tokengate.identity.models import (
    CLIENT_ID,
    DEFAULT_TOKEN_DURATION,
    GRANT_TYPES,
    MAX_TOKEN_DURATION,
    MIN_TOKEN_DURATION,
    RESPONSE_TYPES,
    SCOPE_NAME_RULE,
    SCOPE_TOKEN,
    SIGNING_ALGORITHMS,
    TOKEN_ENDPOINT_AUTH_METHODS,
)
from tokengate.identity.problems import InvalidParameter, Problem, invalid
from tokengate.identity.templates import TemplateError, check_template
from tokengate.identity.tokens import RESERVED_CLAIMS

T = TypeVar("T")
Rule = Callable[[Any], Any]
Schema = Mapping[str, Rule]

_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_LABEL_VALUE: Final = re.compile(r"[a-z0-9A-Z]([a-z0-9A-Z-._]*[a-z0-9A-Z]+)?")
_RESERVED_LABEL_PREFIXES: Final = ("kong", "konnect", "mesh", "kic", "_")
MAX_LABELS: Final = 50
_CLIENT_ID_REASON: Final = "must be 1 to 36 letters, digits, '-' or '_'"


class Invalid(Exception):
    """A value breaks a rule; `extra` holds `minimum` / `maximum` / `choices`."""

    def __init__(self, rule: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
        self.extra = extra

    def entry(self, field: str, source: str) -> InvalidParameter:
        return invalid(field, self.rule, self.reason, source=source, **self.extra)


# ---- scalar rules -------------------------------------------------------------------------------


def string(*, min_length: int = 0) -> Rule:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid("is_string", "must be a string")
        if len(value) < min_length:
            raise Invalid(
                "min_length", f"must have at least {min_length} characters", minimum=min_length
            )
        return value

    return check


def string_where(valid: Callable[[str], object], rule: str, reason: str) -> Rule:
    """A non-empty string that `valid` accepts; else Invalid(rule, reason)."""
    text = string(min_length=1)

    def check(value: Any) -> str:
        checked: str = text(value)
        if not valid(checked):
            raise Invalid(rule, reason)
        return checked

    return check


def boolean() -> Rule:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid("is_boolean", "must be a boolean")
        return value

    return check


def integer(*, minimum: int, maximum: int) -> Rule:
    def check(value: Any) -> int:
        # JSON true/false are not numbers, though Python's bool is an int.
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("is_integer", "must be an integer")
        if value < minimum:
            raise Invalid("min", f"must be greater than or equal to {minimum}", minimum=minimum)
        if value > maximum:
            raise Invalid("max", f"must be less than or equal to {maximum}", maximum=maximum)
        return value

    return check


def one_of(choices: Sequence[str]) -> Rule:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise Invalid("enum", f"must be one of [{', '.join(choices)}]", choices=list(choices))
        return value

    return check


def uuid() -> Rule:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not _UUID.fullmatch(value):
            raise Invalid("is_uuid", "must be a valid UUID")
        return value.lower()  # ids are stored lowercase

    return check


def uri(*, https: bool = False, fragment: bool = True) -> Rule:
    """`format: uri`: an absolute URI; RedirectURIs and LoginURI also demand HTTPS, no fragment."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid("is_string", "must be a string")
        try:
            parts = urllib.parse.urlsplit(value)
        except ValueError:
            raise Invalid("invalid", "must be an absolute URI") from None
        if not parts.scheme or not parts.netloc or any(c.isspace() for c in value):
            raise Invalid("invalid", "must be an absolute URI")
        if https and parts.scheme != "https":
            raise Invalid("invalid", "must use https")
        if not fragment and "#" in value:
            raise Invalid("invalid", "must not include a fragment")
        return value

    return check


def template() -> Rule:
    """ClaimValue: a non-empty string whose `${ ... }` templates the token minting understands."""
    text = string(min_length=1)

    def check(value: Any) -> str:
        checked: str = text(value)
        try:
            check_template(checked)
        except TemplateError as exc:
            raise Invalid("invalid", str(exc)) from None
        return checked

    return check


def nullable(rule: Rule) -> Rule:
    def check(value: Any) -> Any:
        return None if value is None else rule(value)

    return check


# ---- composite rules ----------------------------------------------------------------------------


def array(item: Rule, *, unique: bool = False, dedupe: bool = False, max_items: int = 0) -> Rule:
    """A JSON array; `unique` refuses duplicates (uniqueItems), `dedupe` drops them quietly."""

    def check(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise Invalid("is_array", "must be an array")
        if max_items and len(value) > max_items:
            raise Invalid("max_items", f"must have at most {max_items} items", maximum=max_items)
        out: list[Any] = []
        for index, element in enumerate(value):
            try:
                checked = item(element)
            except Invalid as exc:
                raise Invalid(exc.rule, f"item {index}: {exc.reason}", **exc.extra) from None
            if checked in out:
                if unique:
                    raise Invalid("invalid", f"must not contain duplicate items [{element}]")
                if dedupe:
                    continue
            out.append(checked)
        return tuple(out)

    return check


def label_key_problem(key: str) -> str | None:
    if not 1 <= len(key) <= 63:
        return f"key [{key}] must have 1 to 63 characters"
    if key.lower().startswith(_RESERVED_LABEL_PREFIXES):
        return f"key [{key}] must not start with kong, konnect, mesh, kic or _"
    return None


def labels(*, update: bool = False) -> Rule:
    """Labels (create, PUT) or LabelsUpdate (PATCH: a `null` value removes that key)."""

    def check(value: Any) -> dict[str, str | None]:
        if not isinstance(value, dict):
            raise Invalid("is_object", "must be an object")
        if len(value) > MAX_LABELS:
            raise Invalid("max_items", f"must have at most {MAX_LABELS} labels", maximum=MAX_LABELS)
        for key, item in value.items():
            if not isinstance(key, str):  # JSON keys always are; a YAML seed's may not be
                raise Invalid("is_label", f"key [{key}] must be a string")
            problem = label_key_problem(key)
            if problem is None and not (update and item is None):
                if not isinstance(item, str):
                    problem = f"value of [{key}] must be a string"
                elif len(item) > 63 or not _LABEL_VALUE.fullmatch(item):
                    problem = (
                        f"value of [{key}] must have 1 to 63 letters, digits, '-', '.' or '_', "
                        "starting and ending with a letter or digit"
                    )
            if problem:
                raise Invalid("is_label", problem)
        return dict(value)

    return check


def merge_labels(
    current: Mapping[str, str], patch: Mapping[str, str | None] | None
) -> dict[str, str]:
    """LabelsUpdate: given keys set, `null` values removed, others kept; `labels: null` clears."""
    if patch is None:
        return {}
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def apply_labels_update(
    values: dict[str, Any], current: Mapping[str, str]
) -> list[InvalidParameter]:
    """PATCH: merge a parsed LabelsUpdate into `current`; an entry if the result has too many."""
    if "labels" not in values:
        return []
    values["labels"] = merge_labels(current, values["labels"])
    if len(values["labels"]) <= MAX_LABELS:
        return []
    reason = f"must have at most {MAX_LABELS} labels"
    return [invalid("labels", "max_items", reason, maximum=MAX_LABELS, source="body")]


# ---- bodies and path parameters -----------------------------------------------------------------


def parse_body(
    body: Any, schema: Schema, *, required: Iterable[str] = ()
) -> tuple[dict[str, Any], list[InvalidParameter]]:
    """Check every field of `body`; the good ones come back, and one entry per bad one."""
    if not isinstance(body, dict):
        raise Problem.bad_request(
            [invalid("body", "is_object", "must be a JSON object", source="body")]
        )
    values: dict[str, Any] = {}
    bad: list[InvalidParameter] = []
    for name in required:
        if name not in body:
            bad.append(invalid(name, "required", "is a required field", source="body"))
    for name, raw in body.items():
        rule = schema.get(name)
        if rule is None:
            bad.append(invalid(name, "unknown_property", "is not a known field", source="body"))
            continue
        try:
            values[name] = rule(raw)
        except Invalid as exc:
            bad.append(exc.entry(name, "body"))
    return values, bad


def path_uuid(name: str, value: str) -> str:
    if not _UUID.fullmatch(value):
        raise Problem.bad_request([invalid(name, "is_uuid", "must be a valid UUID", source="path")])
    return value.lower()


def path_client_id(value: str) -> str:
    if not CLIENT_ID.fullmatch(value):
        entry = invalid("clientId", "matches_regex", _CLIENT_ID_REASON, source="path")
        raise Problem.bad_request([entry])
    return value


def client_id() -> Rule:
    """ClientId as a field (the seed fixes one): the rule `path_client_id` applies."""
    return string_where(CLIENT_ID.fullmatch, "matches_regex", _CLIENT_ID_REASON)


# ---- list queries -------------------------------------------------------------------------------

PAGE_SIZE_DEFAULT: Final = 10  # the spec gives no default nor maximum: Konnect's usual ones
PAGE_SIZE_MAX: Final = 100

LEGACY: Final = "legacy"  # LegacyStringFieldFilter: [eq] or [contains] (bare value: eq)
EQUALS: Final = "equals"  # StringFieldEqualsFilter: [eq] or a bare value
UUID_EQUALS: Final = "uuid"  # StringFieldEqualsFilter on an id that is a UUID: in any case
BOOLEAN: Final = "boolean"  # BooleanFieldFilter: a bare true / false
LABELS: Final = "labels"  # StringFieldEqualsFilter on labels: "key:value,other-key" (all must hold)
_OPERATORS: Final = {
    LEGACY: ("eq", "contains"),
    EQUALS: ("eq",),
    UUID_EQUALS: ("eq",),
    LABELS: ("eq",),
    BOOLEAN: (),
}
_FILTER_KEY: Final = re.compile(r"filter\[([^\[\]]*)\](?:\[([^\[\]]*)\])?")


@dataclass(frozen=True, slots=True)
class Listing:
    """What one list operation declares: its sort attributes and its filterable fields."""

    sort_fields: tuple[str, ...]
    filters: Mapping[str, str]


Predicate = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class ListQuery:
    number: int
    size: int
    sort: tuple[tuple[str, bool], ...]  # (attribute, descending)
    predicates: tuple[Predicate, ...]

    def apply(self, items: Iterable[T]) -> tuple[list[T], int]:
        """Filter, sort (stable, first attribute first), then cut the page; with the total."""
        kept = [item for item in items if all(p(item) for p in self.predicates)]
        for attribute, descending in reversed(self.sort):
            kept.sort(key=lambda item: getattr(item, attribute), reverse=descending)
        start = (self.number - 1) * self.size
        return kept[start : start + self.size], len(kept)


def parse_list_query(query: MultiMapping[str], listing: Listing) -> ListQuery:
    """page[size], page[number], sort, filter[...] as the spec declares them for one list."""
    bad: list[InvalidParameter] = []
    number, size = 1, PAGE_SIZE_DEFAULT
    sort: tuple[tuple[str, bool], ...] = ()
    predicates: list[Predicate] = []
    for key in dict.fromkeys(query):
        if len(query.getall(key)) > 1:
            bad.append(invalid(key, "invalid", "must be given once", source="query"))
            continue
        value = query[key]
        try:
            if key == "page[size]":
                size = _page_param(value, PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX)
            elif key == "page[number]":
                number = _page_param(value, 1, None)
            elif key == "sort":
                sort = _sort(value, listing.sort_fields)
            elif (match := _FILTER_KEY.fullmatch(key)) is not None:
                predicates.append(_filter(match[1], match[2], value, listing.filters))
            else:
                raise Invalid("unknown_property", "is not a known query parameter")
        except Invalid as exc:
            bad.append(exc.entry(key, "query"))
    bad.extend(_one_operator_each(query, listing))
    if bad:
        raise Problem.bad_request(bad)
    return ListQuery(number, size, sort, tuple(predicates))


def _page_param(value: str, default: int, maximum: int | None) -> int:
    if value == "":  # allowEmptyValue
        return default
    negative = value.startswith("-")
    unsigned = value[1:] if negative else value
    if not unsigned or not unsigned.isascii() or not unsigned.isdigit():
        raise Invalid("is_integer", "must be an integer")
    digits = unsigned.lstrip("0")
    if len(digits) > 18 and not negative:  # beyond any page; int() stops at 4,300 digits
        limit = maximum if maximum is not None else 10**18 - 1
        raise Invalid("max", f"must be less than or equal to {limit}", maximum=limit)
    if negative or not digits:  # 0, and -5 (an integer too): below the minimum
        raise Invalid("min", "must be greater than or equal to 1", minimum=1)
    number = int(digits)
    if maximum is not None and number > maximum:
        raise Invalid("max", f"must be less than or equal to {maximum}", maximum=maximum)
    return number


def _sort(value: str, fields: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    """SortQuery: `name`, `name asc`, `created_at desc`, comma-separated."""
    keys: list[tuple[str, bool]] = []
    for part in value.split(","):
        words = part.split()
        if not words:
            continue
        attribute, direction = words[0], words[1].lower() if len(words) > 1 else "asc"
        if attribute not in fields:
            raise Invalid(
                "enum",
                f"[{attribute}] is not a sort attribute: one of [{', '.join(fields)}]",
                choices=list(fields),
            )
        if len(words) > 2 or direction not in ("asc", "desc"):
            raise Invalid("invalid", f"[{part.strip()}]: the order must be asc or desc")
        keys.append((attribute, direction == "desc"))
    return tuple(keys)


def _filter(field: str, operator: str | None, value: str, filters: Mapping[str, str]) -> Predicate:
    kind = filters.get(field)
    if kind is None:
        raise Invalid("unknown_property", f"[{field}] is not a filterable field")
    if kind == BOOLEAN:
        if operator is not None:
            raise Invalid("invalid", "takes a bare true or false, without an operator")
        if value not in ("true", "false"):
            raise Invalid("is_boolean", "must be true or false")
        wanted = value == "true"
        return lambda item: bool(getattr(item, field)) is wanted
    if operator is not None and operator not in _OPERATORS[kind]:
        choices = list(_OPERATORS[kind])
        raise Invalid("enum", f"operator must be one of [{', '.join(choices)}]", choices=choices)
    if kind == LABELS:
        return _labels_filter(value)
    if operator == "contains":
        needle = value.casefold()
        return lambda item: needle in str(getattr(item, field)).casefold()
    if kind == UUID_EQUALS and _UUID.fullmatch(value):
        value = value.lower()  # as path_uuid reads the same id in a path
    return lambda item: getattr(item, field) == value


def _labels_filter(value: str) -> Predicate:
    """`env:test` needs that value for `env`; a bare `env` needs the key; commas join (all)."""
    wanted: list[tuple[str, str | None]] = []
    for term in value.split(","):
        key, colon, label_value = term.strip().rpartition(":")
        wanted.append((key, label_value) if colon else (label_value, None))

    def holds(item: Any) -> bool:
        present: Mapping[str, str] = item.labels
        return all(k in present and (v is None or present[k] == v) for k, v in wanted)

    return holds


def _one_operator_each(query: MultiMapping[str], listing: Listing) -> list[InvalidParameter]:
    """LegacyStringFieldFilter: **one** of `eq`, `contains` (and not also a bare value)."""
    seen: dict[str, int] = {}
    for key in dict.fromkeys(query):
        match = _FILTER_KEY.fullmatch(key)
        if match is not None and match[1] in listing.filters:
            seen[match[1]] = seen.get(match[1], 0) + 1
    return [
        invalid(f"filter[{field}]", "invalid", "takes one operator only", source="query")
        for field, count in seen.items()
        if count > 1
    ]


# ---- the spec's request bodies ------------------------------------------------------------------

_DURATION: Final = integer(minimum=MIN_TOKEN_DURATION, maximum=MAX_TOKEN_DURATION)

AUTH_SERVER_CREATE: Final[Schema] = {
    "name": string(min_length=1),
    "description": string(),
    "audience": string(min_length=1),
    "signing_algorithm": one_of(SIGNING_ALGORITHMS),
    "labels": labels(),
    # TrustedOrigins says `maxLength: 16` on an array: read as at most 16 origins.
    "trusted_origins": array(uri(), unique=True, max_items=16),
}
AUTH_SERVER_CREATE_REQUIRED: Final = ("name", "audience")
AUTH_SERVER_UPDATE: Final[Schema] = {
    **AUTH_SERVER_CREATE,
    "labels": nullable(labels(update=True)),
}

SCOPE: Final[Schema] = {
    # requested at /oauth/token and joined with spaces in a token's `scope`: one scope-token
    "name": string_where(SCOPE_TOKEN.fullmatch, "matches_regex", f"must be {SCOPE_NAME_RULE}"),
    "description": string(),
    "default": boolean(),
    "include_in_metadata": boolean(),
    "enabled": boolean(),
}
SCOPE_CREATE_REQUIRED: Final = ("name",)

CLAIM: Final[Schema] = {
    # never one the issuer sets itself: it would not reach the token
    "name": string_where(
        lambda claim: claim not in RESERVED_CLAIMS,
        "invalid",
        f"is set by the issuer itself (reserved: {', '.join(sorted(RESERVED_CLAIMS))})",
    ),
    "value": template(),
    "include_in_token": boolean(),
    "include_in_all_scopes": boolean(),
    # ClaimIncludeInScopes has no uniqueItems: a repeated id is dropped, not refused.
    "include_in_scopes": array(uuid(), dedupe=True),
    "enabled": boolean(),
}
CLAIM_CREATE_REQUIRED: Final = ("name", "value")

CLIENT_CREATE: Final[Schema] = {
    "name": string(min_length=1),
    "grant_types": array(one_of(GRANT_TYPES), unique=True),
    "response_types": array(one_of(RESPONSE_TYPES), dedupe=True),
    "redirect_uris": array(uri(https=True, fragment=False)),
    "login_uri": nullable(uri(https=True)),
    "access_token_duration": _DURATION,
    "id_token_duration": _DURATION,
    "allow_all_scopes": boolean(),
    "allow_scopes": array(uuid(), unique=True),
    "labels": labels(),
    "token_endpoint_auth_method": one_of(TOKEN_ENDPOINT_AUTH_METHODS),
}
CLIENT_CREATE_REQUIRED: Final = ("name", "grant_types", "response_types")
CLIENT_UPDATE: Final[Schema] = {
    **CLIENT_CREATE,
    "client_secret": string(min_length=1),
    "labels": nullable(labels(update=True)),
}
CLIENT_REPLACE: Final[Schema] = {**CLIENT_CREATE, "client_secret": string(min_length=1)}
CLIENT_REPLACE_REQUIRED: Final = ("name", "client_secret", "grant_types", "response_types")
# What PUT resets a field to when the body leaves it out (the spec's defaults).
CLIENT_DEFAULTS: Final[Mapping[str, Any]] = {
    "redirect_uris": (),
    "login_uri": None,
    "access_token_duration": DEFAULT_TOKEN_DURATION,
    "id_token_duration": DEFAULT_TOKEN_DURATION,
    "allow_all_scopes": False,
    "allow_scopes": (),
    "labels": MappingProxyType({}),
    "token_endpoint_auth_method": "client_secret_post",
}

# ClientSecret has no minLength in the spec; an empty secret is refused all the same.
SECRET_CREATE: Final[Schema] = {"secret": string(min_length=1), "enabled": boolean()}
SECRET_UPDATE: Final[Schema] = {"enabled": boolean()}

# ---- the spec's list operations -----------------------------------------------------------------

_TIMES: Final = ("created_at", "updated_at")
AUTH_SERVERS_LISTING: Final = Listing(
    (*_TIMES, "name", "audience"),
    {
        "name": LEGACY,
        "description": LEGACY,
        "audience": LEGACY,
        "id": UUID_EQUALS,
        "labels": LABELS,
    },
)
SCOPES_LISTING: Final = Listing((*_TIMES, "name"), {"name": LEGACY, "id": UUID_EQUALS})
CLAIMS_LISTING: Final = Listing((*_TIMES, "name"), {"name": LEGACY, "id": UUID_EQUALS})
CLIENTS_LISTING: Final = Listing(
    (*_TIMES, "name"), {"name": LEGACY, "id": EQUALS, "labels": LABELS}
)
SECRETS_LISTING: Final = Listing(_TIMES, {"id": UUID_EQUALS, "enabled": BOOLEAN})
TOKENS_LISTING: Final = Listing(("created_at", "expires_at"), {"id": UUID_EQUALS})
