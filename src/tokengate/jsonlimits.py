"""What JSON from outside may hold, checked the same way on every Python: how deeply it nests,
and whether a string holds half of a UTF-16 surrogate pair.

    if too_deep_for_a_client(text, value): ...   # a client's JSON
    if nests_deeper(value, 16): ...                # any other bound
    if holds_lone_surrogate(value, text): ...      # "\\ud800": text that is not text

The stdlib parser's own limit depends on the Python: a RecursionError near 1,000 levels on
3.11, near 10,000 on 3.13. What a client sends (a token's header and payload, a JSON body,
a management API request) is held to MAX_CLIENT_NESTING instead, so the verdict is the same
on every Python tokengate supports, and no walk over a parsed value can overflow the stack.

The stdlib parser also turns an escape of a lone surrogate ("\\udc00", or a high one not
followed by a low one) into a str that no UTF-8 can carry: it cannot be stored, or sent in a
header, as text. Kong's JSON library (lua-cjson) refuses such an escape outright.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

# Below 3.11's parser limit (minus the frames above it), so that limit is never what decides.
MAX_CLIENT_NESTING: Final = 500


def nests_deeper(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value has more than `limit` levels of arrays and objects (a
    scalar has none, `[]` one). Level by level, and never further than `limit`."""
    level = [value]
    for _ in range(limit + 1):
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return False
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]
    return True


def too_deep_for_a_client(text: str | bytes, value: Any) -> bool:
    """Whether `value`, parsed from a client's JSON `text`, nests past MAX_CLIENT_NESTING. The
    text is looked at first, its length and then its brackets (each level opens one), so the
    usual one is never walked."""
    limit = MAX_CLIENT_NESTING
    if len(text) <= 2 * limit:
        return False
    if isinstance(text, bytes):
        brackets = text.count(b"[") + text.count(b"{")
    else:
        brackets = text.count("[") + text.count("{")
    return brackets > limit and nests_deeper(value, limit)


# The escape of a surrogate, or text that only looks like one (the JSON "\\ud800" is a
# backslash and "ud800"): rare enough that finding one is what pays for the exact check.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89abcdefABCDEF]")


def holds_lone_surrogate(value: Any, text: str | None = None) -> bool:
    """Whether a parsed JSON `value` holds a lone surrogate in a string (a member name
    included). `text`, the str it was parsed from, when given, is searched first: the usual
    one then costs a search, not a walk."""
    # (a one-character search is a memchr; "\\u" would cost ten times as much)
    if text is not None and ("\\" not in text or _SURROGATE_ESCAPE.search(text) is None):
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
