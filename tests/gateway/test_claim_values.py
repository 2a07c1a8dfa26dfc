"""Claims as Kong's plugin makes them header values and consumer names (claim_values)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokengate.gateway.claim_values import (
    claim_at,
    groups_header_value,
    lua_number,
    render_header_value,
    subject_value,
)

CLAIMS = {"org": {"name": "acme", "roles": ["admin", "dev"], "1": "one"}, "list": [{"a": 1}]}


@pytest.mark.parametrize(
    ("path", "found"),
    [
        (("org", "name"), "acme"),
        (("org", "roles", "1"), "admin"),  # counted from 1, as Lua counts
        (("org", "roles", "2"), "dev"),
        (("org", "roles", "0"), None),
        (("org", "roles", "3"), None),
        (("org", "roles", "x"), None),
        (("org", "roles", "\u0661"), None),  # an Arabic-Indic one: a digit, not an ASCII one
        (("org", "1"), "one"),  # an object's member named "1"
        (("list", "1", "a"), 1),
        (("org", "name", "x"), None),  # a string has no members
        (("nothing",), None),
    ],
)
def test_claim_at_walks_objects_and_lists(path: tuple[str, ...], found: Any) -> None:
    assert claim_at(CLAIMS, path) == found


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("alice", "alice"),
        (7, "7"),
        (1.5, "1.5"),
        (1e20, "1e+20"),
        (True, "true"),
        (False, "false"),
        (["a", "b", 3], "a b 3"),  # Lua's table.concat(t, " ")
        ([], ""),
        ({"a": 1}, None),
        (["a", {"b": 1}], None),
        (["a", True], None),
        (None, None),
    ],
)
def test_subject_value_is_the_name_kong_looks_a_consumer_up_by(
    value: Any, name: str | None
) -> None:
    assert subject_value(value) == name


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("admin dev\tadmin", b"admin, dev"),
        # Kong splits on ASCII whitespace only: these stay inside one group's name
        ("guest\u00a0admin", "guest\u00a0admin".encode()),
        ("guest\u2003admin\u2028x", "guest\u2003admin\u2028x".encode()),
        (["Domain Admins", "dev", "Domain Admins", 2], b"Domain Admins, dev, 2"),
        (["a", None, True, {"b": 1}], b"a"),
        ("", None),
        ([], None),
        ({"admin": True}, None),
        (["a\r\nX-Injected: 1"], None),
    ],
)
def test_groups_header_value(value: Any, header: bytes | None) -> None:
    assert groups_header_value(value) == header


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values, st.lists(st.text(max_size=3), max_size=4))
def test_any_claim_makes_a_safe_header_value_or_none(value: Any, path: list[str]) -> None:
    """Whatever a token holds: no exception, and no byte that could end a header line."""
    found = claim_at({"claim": value}, ("claim", *path))
    for rendered in (render_header_value(found), groups_header_value(found)):
        assert rendered is None or not any(byte in rendered for byte in b"\r\n\x00")
    name = subject_value(found)
    assert name is None or isinstance(name, str)


# ---- pinned after a mutation run ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (10**15, "1e+15"),
        (2**53 + 1, "9.007199254741e+15"),
        (-0.0, "-0"),
        (10**400, "1" + "0" * 400),  # past a double's range: its digits, never "inf" or "None"
    ],
)
def test_lua_number_prints_as_luajit_does(value: float, printed: str) -> None:
    assert lua_number(value) == printed
