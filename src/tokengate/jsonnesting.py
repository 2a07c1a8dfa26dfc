"""How deeply parsed JSON nests, measured without recursion.

    if too_deep_for_a_client(text, value): ...   # a client's JSON
    if nests_deeper(value, 16): ...                # any other bound

The stdlib parser's own limit depends on the Python: a RecursionError near 1,000 levels on
3.11, near 10,000 on 3.13. What a client sends (a token's header and payload, a JSON body,
a management API request) is held to MAX_CLIENT_NESTING instead, so the verdict is the same
on every Python tokengate supports, and no walk over a parsed value can overflow the stack.
"""

from __future__ import annotations

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
