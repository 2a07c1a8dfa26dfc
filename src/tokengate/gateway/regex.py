r"""Route regexes (`~` paths, `~*` header values) with RE2: linear time, whatever the input.

    users = PathRegex(r"/users/(?<id>\d+)")     # RegexError if RE2 cannot compile it
    users.match("/users/7/x")                     # "/users/7": anchored at the start; or None
    HeaderRegex(r"^v2").search("V2-beta")         # True: case-insensitive, unanchored

Why not Python's `re`: it backtracks, so one route like `~/(a+)+$` let a single request with
`/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!` hold a worker's event loop for minutes. Kong 3's router
compiles route regexes with Rust's `regex` crate, linear-time as RE2 is and with the same
syntax family: no look-around, no backreferences (both refused here when the config loads).

RE2 through its Python module costs about 3 µs a match on bytes (7 µs on str, which it encodes
itself) against 0.35 µs for `re`, so patterns and texts are bytes, and a path regex first checks
the literal text its pattern must start with (`/users/` above): a path that cannot match costs a
`startswith`. The router's answer cache keeps repeated paths off this path anyway.

Texts are encoded as aiohttp decoded them (UTF-8, surrogateescape): a header value with a byte
that is not UTF-8 is searched as those bytes, never an exception (a 500) on the request path.
"""

from __future__ import annotations

from typing import Any

import re2  # google-re2: no type information

_Compiled = Any  # re2's compiled pattern: .match(text) / .search(text) → a match or None

__all__ = ["HeaderRegex", "OriginRegex", "PathRegex", "RegexError"]

_META = frozenset(".^$*+?{}[]()|\\")


class RegexError(ValueError):
    """RE2 refuses the pattern; the message says why."""


def _compile(pattern: str, *, case_sensitive: bool = True) -> _Compiled:
    options = re2.Options()
    options.log_errors = False  # RE2 would also write every refused pattern to stderr
    options.case_sensitive = case_sensitive
    try:
        encoded = pattern.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, written as an escape in YAML
        raise RegexError("invalid regex: not valid Unicode") from None
    try:
        return re2.compile(encoded, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexError(f"invalid regex: {reason}") from None


class PathRegex:
    """A Kong `~` path: matched at the start of the path (Kong prepends `^`), not at its end."""

    __slots__ = ("_literal", "_regex")

    def __init__(self, pattern: str) -> None:
        self._regex = _compile(pattern)
        self._literal = literal_prefix(pattern)

    def match(self, path: str) -> str | None:
        """The text matched at the start of `path`, or None."""
        if not path.startswith(self._literal):
            return None
        found = self._regex.match(_bytes(path))
        return None if found is None else found.group(0).decode("utf-8", "surrogateescape")


class HeaderRegex:
    """A Kong `~*` header value: searched anywhere in the value, case-insensitively."""

    __slots__ = ("_regex",)

    def __init__(self, pattern: str) -> None:
        self._regex = _compile(pattern, case_sensitive=False)

    def search(self, value: str) -> bool:
        return self._regex.search(_bytes(value)) is not None


class OriginRegex:
    """A cors plugin origin: matched from the start, case-sensitively (the caller anchors its
    end, as Kong does)."""

    __slots__ = ("_regex",)

    def __init__(self, pattern: str) -> None:
        self._regex = _compile(pattern)

    def matches(self, text: str) -> bool:
        return self._regex.match(_bytes(text)) is not None


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def literal_prefix(pattern: str) -> str:
    """Text every match of `pattern` starts with: its leading literal characters ("" when it
    starts with anything else). A character a quantifier may repeat zero times is left out;
    with a "|" anywhere, another branch may start otherwise: ""."""
    if "|" in pattern:
        return ""
    prefix: list[str] = []
    at = 0
    while at < len(pattern):
        char = pattern[at]
        if char == "\\" and at + 1 < len(pattern) and not pattern[at + 1].isalnum():
            literal, step = pattern[at + 1], 2  # an escaped punctuation character: "\.", "\/"
        elif char in _META:
            break
        else:
            literal, step = char, 1
        after = pattern[at + step : at + step + 1]
        if after and after in "*?{":
            break
        prefix.append(literal)
        if after == "+":
            break
        at += step
    return "".join(prefix)
