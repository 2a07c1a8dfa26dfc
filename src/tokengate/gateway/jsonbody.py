"""A JSON request body's `access_token` member: found as Kong finds it, removed for
hide_credentials with the rest of the body left as it was sent.

    tokens = json_tokens(body)          # the values of every top-level access_token member
    json_holds_token(body)              # whether there is one at all, whatever its value
    json_without_token(body)            # the body without them (None: not a JSON object)

Kong's openid-connect plugin reads a bearer token from a JSON body's top-level `access_token`
(after the form body's) and, with hide_credentials, re-encodes the body without it. Here the
members are located in the text instead of re-encoded: numbers, escapes, spacing and the order
of the other members reach the upstream exactly as sent (a re-encoding would round floats
through binary, and write 1e400 as the non-JSON `Infinity`).

A member is a token under any name an upstream's parser may read as `access_token`. Kong
matches the name exactly, but Go's encoding/json fills an `access_token` field from a member
whose name equals it case-insensitively, with Unicode folding ("ACCESS_TOKEN", or a long s or
a Kelvin sign for an s or a k). Such a member is a token here too: verified, counted (a second
token is a 400) and hidden, never left for the upstream to read unverified. A leading byte
order mark is skipped, as lenient parsers skip it.

Only the top-level object is framed here; each name and value is read by the standard
library's own JSON scanner. A body that is not UTF-8 JSON holding an object (RFC 8259; no NaN
or Infinity) holds no token: it goes upstream untouched, as Kong leaves a body cjson cannot
decode.
"""

from __future__ import annotations

import json
from json.scanner import make_scanner
from typing import Any, Final, NamedTuple, NoReturn

__all__ = ["json_holds_token", "json_tokens", "json_without_token"]

ACCESS_TOKEN: Final = "access_token"  # noqa: S105 - a member name
_WHITESPACE: Final = " \t\n\r"  # RFC 8259 §2
_BOM: Final = "\ufeff"


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


# The C scanner json.loads uses, called at given offsets (typeshed types its argument as a
# make_scanner; CPython passes a JSONDecoder, as here).
_scan: Final = make_scanner(json.JSONDecoder(parse_constant=_no_constant))  # type: ignore[arg-type]


class Member(NamedTuple):
    name: str
    value: Any
    start: int  # where its name's opening quote is
    end: int  # just past its value


class TopLevel(NamedTuple):
    text: str
    members: list[Member]
    close: int  # where the closing brace is


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def _value_at(text: str, index: int) -> tuple[Any, int]:
    try:
        value, end = _scan(text, index)
    except StopIteration:  # no JSON value starts here
        raise ValueError("not a JSON value") from None
    return value, end


def parse(body: bytes) -> TopLevel | None:
    """The top-level object's members, in order, duplicates kept; None when `body` is not one
    JSON object (UTF-8, nothing but whitespace around it)."""
    try:
        text = body.decode("utf-8")
        return _parse(text)
    except (ValueError, RecursionError):  # UTF-8, JSON, huge numbers, deep nesting
        return None


def _parse(text: str) -> TopLevel | None:
    index = _skip(text, 1 if text.startswith(_BOM) else 0)
    if not text.startswith("{", index):
        return None
    members: list[Member] = []
    index = _skip(text, index + 1)
    if not text.startswith("}", index):
        while True:
            if not text.startswith('"', index):
                return None
            start = index
            name, index = _value_at(text, index)
            index = _skip(text, index)
            if not text.startswith(":", index):
                return None
            value, index = _value_at(text, _skip(text, index + 1))
            members.append(Member(name, value, start, index))
            index = _skip(text, index)
            if text.startswith(",", index):
                index = _skip(text, index + 1)
            elif text.startswith("}", index):
                break
            else:
                return None
    if _skip(text, index + 1) != len(text):
        return None
    return TopLevel(text, members, index)


def is_token_name(name: str) -> bool:
    """Whether a member named `name` is read as `access_token` by some upstream's parser."""
    return name == ACCESS_TOKEN or name.casefold() == ACCESS_TOKEN


def _may_hold_token(body: bytes) -> bool:
    # A member name spells access_token in ASCII letters of either case, or with a \u escape
    # or a non-ASCII letter that folds to one: a body with none of these is not parsed at all
    # (most JSON bodies, on routes that take the token elsewhere).
    return b"\\" in body or not body.isascii() or b"access_token" in body.lower()


def json_tokens(body: bytes) -> list[str]:
    """The top-level `access_token` members (under any name `is_token_name` accepts) that hold
    a token. As Kong reads them, null, ""
    and an empty array or object are none; another non-string value is a token that will
    fail (its JSON text)."""
    if not _may_hold_token(body):
        return []
    top = parse(body)
    if top is None:
        return []
    tokens = []
    for member in top.members:
        value = member.value
        if not is_token_name(member.name) or value is None or value in ("", [], {}):
            continue
        tokens.append(value if isinstance(value, str) else json.dumps(value))
    return tokens


def json_holds_token(body: bytes) -> bool:
    """Whether the body is a JSON object with an `access_token` member, whatever its value."""
    if not _may_hold_token(body):
        return False
    top = parse(body)
    return top is not None and any(is_token_name(m.name) for m in top.members)


def json_without_token(body: bytes) -> bytes | None:
    """The body without its top-level `access_token` members, everything else as sent (the
    members kept are joined by "," where whitespace may have been); None when it is not a JSON
    object."""
    top = parse(body)
    if top is None:
        return None
    members, text = top.members, top.text
    if not any(is_token_name(m.name) for m in members):
        return body
    kept = ",".join(text[m.start : m.end] for m in members if not is_token_name(m.name))
    opening = text.index("{")
    return (text[: opening + 1] + kept + text[top.close :]).encode("utf-8")
