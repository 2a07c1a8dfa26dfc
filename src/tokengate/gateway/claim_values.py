"""Claims as Kong's openid-connect plugin reads them into headers (and consumer names).

    value = claim_at(claims, ("realm_access", "roles"))   # None when the path finds nothing
    render_header_value(value)        # b"..." for X-User-style headers, None: send no header
    groups_header_value(value)        # b"admins, dev" for X-Authenticated-Groups
    subject_value(value)              # "alice": the name consumer_claims looks a consumer up by

A path walks nested objects; a decimal segment picks a list's element, counted from 1 as in
Lua (Kong's claims.lua). Values come out as Kong writes them (headers.lua, array.lua); a value
with a control character (CR, LF, NUL, ...) is never sent: it could start a header line of its
own (Kong's nginx refuses such a value).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any, Final

_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but tab: never in a header
# What separates words for Kong (PCRE's \s, ASCII only): a no-break space or U+2028 does not.
_WHITESPACE: Final = re.compile(r"[ \t\n\x0b\x0c\r]+")


def claim_at(claims: Mapping[str, Any], path: tuple[str, ...], missing: Any = None) -> Any:
    """The value at `path` (None for a JSON null), or `missing` when the path finds nothing."""
    value: Any = claims
    for key in path:
        if isinstance(value, dict):
            value = value.get(key, missing)
        elif isinstance(value, list) and key.isdecimal() and key.isascii():
            index = int(key)
            value = value[index - 1] if 1 <= index <= len(value) else missing
        else:
            return missing
        if value is missing:
            return missing
    return value


def render_header_value(value: object) -> bytes | None:
    """A claim as a header value, as Kong's plugin writes it (headers.lua): a string as it is
    (UTF-8), a list or object as base64 of its compact JSON, a number or `true` as Lua prints
    it; absent, null, false, "" and empty lists or objects send no header, nor does a string
    with a control character."""
    if value is None or value is False or value == "" or value == [] or value == {}:
        return None
    if isinstance(value, str):
        return None if _CONTROL.search(value) else value.encode("utf-8", "surrogatepass")
    if isinstance(value, list | dict):
        compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return base64.b64encode(compact.encode("utf-8", "surrogatepass"))
    if value is True:
        return b"true"
    if isinstance(value, int | float):
        return lua_number(value).encode("ascii")
    return None


def groups_header_value(value: object) -> bytes | None:
    """X-Authenticated-Groups from the `authenticated_groups_claim` value, as Kong's handler
    writes it: a string's whitespace-separated words or a list's entries (strings, and numbers
    as Lua prints them), each once, in order, joined by ", "; None when there are none, or when
    one holds a control character."""
    if isinstance(value, str):
        entries = words(value)
    elif isinstance(value, list):
        entries = [
            entry if isinstance(entry, str) else lua_number(entry)
            for entry in value
            if _is_word(entry)
        ]
    else:
        return None
    groups = [entry for entry in dict.fromkeys(entries) if entry]
    if not groups or any(_CONTROL.search(entry) for entry in groups):
        return None
    return ", ".join(groups).encode("utf-8", "surrogatepass")


def words(text: str) -> list[str]:
    """`text` split on ASCII whitespace, as Kong splits a space-separated value."""
    return [word for word in _WHITESPACE.split(text) if word]


def subject_value(value: object) -> str | None:
    """A claim as Kong's claims.lua makes it a consumer's name: a string as it is, a number or
    boolean as Lua prints it, a list's entries (strings, numbers) joined by spaces; None for
    anything else (null, an object, a list holding one), which names no consumer."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return lua_number(value)
    if isinstance(value, list) and all(_is_word(entry) for entry in value):
        return " ".join(entry if isinstance(entry, str) else lua_number(entry) for entry in value)
    return None


def _is_word(entry: object) -> bool:
    """A list entry Lua's table.concat takes: a string or a number."""
    return isinstance(entry, str | int | float) and not isinstance(entry, bool)


def lua_number(value: float) -> str:
    """A JSON number as Kong prints it: LuaJIT's tostring, "%.14g" (cjson decodes every JSON
    number to a double)."""
    try:
        return format(float(value), ".14g")
    except OverflowError:  # an int past a double's range: Kong's cjson would not decode it
        return str(value)


__all__ = [
    "claim_at",
    "groups_header_value",
    "lua_number",
    "render_header_value",
    "subject_value",
    "words",
]
