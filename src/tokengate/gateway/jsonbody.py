"""A JSON request body's `access_token` member: found as Kong finds it, removed for
hide_credentials with the rest of the body left as it was sent.

    tokens = json_tokens(body)          # the values of every top-level access_token member
    json_holds_token(body)              # whether there is one at all, whatever its value
    json_without_token(body)            # the body without them

Kong's openid-connect plugin reads a bearer token from a JSON body's top-level `access_token`
(after the form body's) and, with hide_credentials, re-encodes the body without it. Here the
members are located in the text instead of re-encoded: numbers, escapes, spacing and the order
of the other members reach the upstream exactly as sent (a re-encoding would round floats
through binary, and write 1e400 as the non-JSON `Infinity`).

A member is a token under any name an upstream's parser may read as `access_token`. Kong
matches the name exactly, but Go's encoding/json fills an `access_token` field from a member
whose name equals it case-insensitively, with Unicode simple folding ("ACCESS_TOKEN", or a
long s or a Kelvin sign for an s or a k). Such a member is a token here too: verified, counted
(a second token is a 400) and hidden, never left for the upstream to read unverified.

A body that may name such a member but is not strict UTF-8 JSON (RFC 8259; a leading byte order
mark is skipped, as lenient parsers skip it) raises UnreadableJson, which the gateway answers
with a 400: Kong would pass it on as holding no token, but parsers upstream read tokens out of
bodies this one refuses (trailing data, NaN, UTF-16, surrogates encoded as UTF-8 bytes, huge
numbers). A body that cannot name one in any encoding a parser reads is not parsed at all.

Only the top-level object is framed here, and only to hide a member; everything is read by the
standard library's C scanner.
"""

from __future__ import annotations

import json
from json.scanner import make_scanner
from typing import Any, Final, NamedTuple, NoReturn

from tokengate.jsonlimits import too_deep_for_a_client

__all__ = [
    "ACCESS_TOKEN",
    "UnreadableJson",
    "json_holds_token",
    "json_tokens",
    "json_without_token",
]

ACCESS_TOKEN: Final = "access_token"  # noqa: S105 - a member's (and a parameter's) name
_WHITESPACE: Final = " \t\n\r"  # RFC 8259 §2
_BOM: Final = "\ufeff"
# Go's simple folding takes these two to ASCII letters (s, k); str.lower() does the rest.
_GO_FOLDS: Final = str.maketrans({"\u017f": "s", "\u212a": "k"})
# Bytes without which no parser reads a member name as access_token: the name itself in ASCII
# letters of either case, a \u escape, the long s and Kelvin sign in UTF-8, or a NUL (UTF-16
# and UTF-32 text, which some parsers take).
_NAME_SIGNS: Final = (b"\\u", b"\x00", "\u017f".encode(), "\u212a".encode())


class UnreadableJson(ValueError):
    """The body may hold a token, and is not JSON this module can read."""


class Member(NamedTuple):
    name: str
    value: Any


class Span(NamedTuple):
    name: str
    start: int  # where its name's opening quote is
    end: int  # just past its value


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def is_token_name(name: str) -> bool:
    """Whether a member named `name` is read as `access_token` by some upstream's parser."""
    return name == ACCESS_TOKEN or name.translate(_GO_FOLDS).lower() == ACCESS_TOKEN


def may_hold_token(body: bytes) -> bool:
    """False when no parser could read an access_token member out of `body` (most JSON bodies,
    on routes whose clients send the token elsewhere): then it is not parsed at all."""
    return any(sign in body for sign in _NAME_SIGNS) or b"access_token" in body.lower()


# The pairs of the last object the decoder closed: the outermost one, once decoding ends.
_last_pairs: list[list[tuple[str, Any]]] = []


def _keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    _last_pairs[:] = [pairs]
    return dict(pairs)


_decoder: Final = json.JSONDecoder(object_pairs_hook=_keep_pairs, parse_constant=_no_constant)
_NOT_JSON: Final = object()

# One body, read once: extraction, the check after a 100 Continue and hiding all ask about the
# same bytes object within one request.
_last: tuple[bytes, tuple[Member, ...] | None] | None = None


def _members(body: bytes) -> tuple[Member, ...]:
    """The top-level object's members that matter, in order, duplicates kept: none when the
    body cannot name the token or is JSON but not an object (an array or a scalar has no
    member anywhere a parser reads a token from). UnreadableJson when `body` is not JSON."""
    global _last
    if _last is None or _last[0] is not body:
        _last = (body, _read(body))
    members = _last[1]
    if members is None:
        raise UnreadableJson("the body is not UTF-8 JSON")
    return members


def _read(body: bytes) -> tuple[Member, ...] | None:
    """`_members`' answer, None for a body that is not JSON."""
    if not may_hold_token(body):
        return ()
    try:
        text = body.decode("utf-8").removeprefix(_BOM)
        value = _decoder.decode(text)
        if too_deep_for_a_client(text, value):
            value = _NOT_JSON  # the same verdict on every Python (see jsonlimits)
    except (ValueError, RecursionError):  # UTF-8, JSON, NaN, huge numbers, deep nesting
        value = _NOT_JSON
    # Not kept past the read: the pairs may hold a token.
    pairs = _last_pairs.pop() if _last_pairs else []
    if value is _NOT_JSON:
        return None
    if not isinstance(value, dict):
        return ()
    return tuple(Member(name, member) for name, member in pairs)


def json_tokens(body: bytes) -> list[str]:
    """The top-level `access_token` members (under any name `is_token_name` accepts) that hold
    a token. As Kong reads them, null, "" and an empty array or object are none; another
    non-string value is a token that will fail (its JSON text). UnreadableJson."""
    tokens = []
    for name, value in _members(body):
        if not is_token_name(name) or value is None or value in ("", [], {}):
            continue
        tokens.append(value if isinstance(value, str) else json.dumps(value))
    return tokens


def json_holds_token(body: bytes) -> bool:
    """Whether the body has an `access_token` member, whatever its value. UnreadableJson."""
    return any(is_token_name(name) for name, _ in _members(body))


def json_without_token(body: bytes) -> bytes:
    """The body without its top-level `access_token` members, everything else as sent (the
    members kept are joined by "," where whitespace may have been). Call only for a body
    json_tokens read."""
    if not json_holds_token(body):
        return body
    text = body.decode("utf-8")
    opening = _skip(text, 1 if text.startswith(_BOM) else 0)
    spans, close = _frame(text, opening)
    kept = ",".join(text[s.start : s.end] for s in spans if not is_token_name(s.name))
    return (text[: opening + 1] + kept + text[close:]).encode("utf-8")


# -- framing: where each top-level member is (the text is known to be a JSON object) -----------
_scan: Final = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def _frame(text: str, opening: int) -> tuple[list[Span], int]:
    """The members of the object whose "{" is at `opening`, and where its "}" is."""
    spans: list[Span] = []
    index = _skip(text, opening + 1)
    while text[index] != "}":
        start = index
        name, index = _scan(text, index)
        index = _skip(text, index)  # now at ":"
        _, index = _scan(text, _skip(text, index + 1))
        spans.append(Span(name, start, index))
        index = _skip(text, index)
        if text[index] == ",":
            index = _skip(text, index + 1)
    return spans, index
