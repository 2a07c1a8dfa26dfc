"""A JSON body's top-level access_token: found as Kong finds it, removed with the rest of the
body kept as sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokengate.gateway import jsonbody
from tokengate.gateway.jsonbody import (
    UnreadableJson,
    json_holds_token,
    json_tokens,
    json_without_token,
)
from tokengate.jsonlimits import MAX_CLIENT_NESTING


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        (b'{"access_token": "abc"}', ["abc"]),
        (b' {\n "a": 1,\t"access_token" : "abc" }\r\n', ["abc"]),
        (b'{"access\\u005ftoken": "abc"}', ["abc"]),  # the name as any JSON parser reads it
        (b'{"access_token": "a\\/b"}', ["a/b"]),
        (b'{"access_token": "a", "access_token": "b"}', ["a", "b"]),  # both: the caller's 400
        (b'{"access_token": 5}', ["5"]),  # not a string: a token that will fail
        (b'{"access_token": {"k": 1}}', ['{"k": 1}']),
        # Kong's get_value: these are no value at all
        (b'{"access_token": null}', []),
        (b'{"access_token": ""}', []),
        (b'{"access_token": []}', []),
        (b'{"access_token": {}}', []),
        # only the top level, and only that name
        (b'{"a": {"access_token": "x"}}', []),
        (b'[{"access_token": "x"}]', []),
        (b'{"access_token_2": "y", "access": "z", "token": "w"}', []),
        # names Go's encoding/json reads as access_token (case-insensitive, Unicode folding)
        (b'{"Access_Token": "x"}', ["x"]),
        ('{"ACCE\u017fS_TO\u212aEN": "x"}'.encode(), ["x"]),  # long s, Kelvin sign
        (b'{"access_token": "a", "ACCESS_TOKEN": "b"}', ["a", "b"]),
        (b'\xef\xbb\xbf{"access_token": "x"}', ["x"]),  # a BOM, as lenient parsers skip it
        (b'{"access_token": "x", "a": "\\ud800"}', ["x"]),  # an escaped lone surrogate is JSON
        # JSON, not an object: no member anywhere
        (b'["access_token"]', []),
        (b'"access_token"', []),
        # nothing any parser reads as the name: not even parsed
        (b'{"token": "x",} garbage \xff NaN', []),
        (b"", []),
        (b"access-token=x", []),
        # the Go folding is exact: no other letter folds to these
        ('{"acce\u00df_token": "x"}'.encode(), []),  # a sharp s for "ss": Go does not fold it
    ],
)
def test_json_tokens(body: bytes, tokens: list[str]) -> None:
    assert json_tokens(body) == tokens


@pytest.mark.parametrize(
    "body",
    [
        # what some parser upstream still reads a token out of
        b'{"access_token": "x",}',  # trailing comma (JSON5, some lenient modes)
        b'{"access_token": "x"} {}',  # trailing data (Jackson, Go's json.Decoder)
        b'{"access_token": "x"',
        b'{"access_token": "x", "n": NaN}',  # Python's json
        b'{"access_token": "x", "b": "\xff"}',  # invalid UTF-8 (Node replaces it)
        b'{"access_token": "x", "b": "\xed\xa0\x80"}',  # an encoded lone surrogate
        b'{"access_token": "x", "n": ' + b"1" * 5000 + b"}",  # past Python's digit limit
        b'{"access_token": "x", "d": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        '{"access_token": "x"}'.encode("utf-16"),  # UTF-16 (Python, Jackson)
        '{"access_token": "x"}'.encode("utf-16-le"),
        b"access_token=x",  # a form sent as JSON
    ],
)
def test_a_body_that_may_hold_a_token_and_cannot_be_read_is_refused(body: bytes) -> None:
    with pytest.raises(UnreadableJson):
        json_tokens(body)
    with pytest.raises(UnreadableJson):
        json_holds_token(body)


def test_json_nesting_past_the_limit_is_unreadable_on_every_python() -> None:
    """Python 3.11's parser stops near 1,000 levels, 3.13's near 10,000: the limit is ours."""

    def body(levels: int) -> bytes:  # the top-level object, then arrays
        arrays = levels - 1
        return b'{"access_token": "x", "d": ' + b"[" * arrays + b"]" * arrays + b"}"

    assert json_tokens(body(MAX_CLIENT_NESTING)) == ["x"]
    with pytest.raises(UnreadableJson):
        json_tokens(body(MAX_CLIENT_NESTING + 1))


def test_holds_token_whatever_the_value() -> None:
    assert json_holds_token(b'{"access_token": null}')
    assert json_holds_token(b'{"access\\u005Ftoken": ""}')
    assert json_holds_token(b'{"Access_token": 1}')
    assert not json_holds_token(b'{"a": {"access_token": "x"}}')
    assert not json_holds_token(b'["access_token"]')


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"a": 1.10, "access_token": "x", "b": [1e400, "\\u00e9"]}',
            b'{"a": 1.10,"b": [1e400, "\\u00e9"]}',
        ),
        (b'{"access_token": "x"}', b"{}"),
        (
            b' {\n  "access_token": "x",\n  "z": {"access_token": "keep"}\n}\n',
            b' {"z": {"access_token": "keep"}}\n',
        ),
        (
            b'{"access_token": "x", "access\\u005ftoken": null, "a": "\xc3\xa9"}',
            b'{"a": "\xc3\xa9"}',
        ),
        (b'{"a": 1}', b'{"a": 1}'),  # nothing to take: the very same bytes
        (b'\xef\xbb\xbf{"ACCESS_TOKEN": "x", "a": 1}', b'\xef\xbb\xbf{"a": 1}'),
    ],
)
def test_without_token_keeps_the_rest_as_sent(body: bytes, expected: bytes) -> None:
    assert json_without_token(body) == expected


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NAMES = st.sampled_from(
    ["access_token", "Access_Token", "acce\u017fs_to\u212aen", "acce\u00df_token", "a", "é"]
) | st.text(max_size=6)


def go_folded(name: str) -> str:
    """A name as Go's encoding/json compares it with an ASCII field name: simple case folding,
    in which only the long s and the Kelvin sign fold to ASCII letters (ß is not "ss")."""
    return name.translate({0x17F: "s", 0x212A: "k"}).lower()


@given(st.lists(st.tuples(NAMES, JSON_VALUES), max_size=6), st.booleans(), st.booleans())
def test_any_object_loses_exactly_its_token_members(
    members: list[tuple[str, Any]], ascii_only: bool, spaced: bool
) -> None:
    """Written by any encoder (escaped or not, spaced or not), the body without its tokens is
    JSON that reads as the same object less its access_token members."""
    separators = (", ", ": ") if spaced else (",", ":")
    encode = lambda value: json.dumps(value, ensure_ascii=ascii_only, separators=separators)  # noqa: E731
    body = (
        "{" + separators[0].join(f"{encode(n)}{separators[1]}{encode(v)}" for n, v in members) + "}"
    ).encode()
    named = [v for n, v in members if go_folded(n) == "access_token"]
    assert json_holds_token(body) == bool(named)
    expected_tokens = [
        v if isinstance(v, str) else json.dumps(v) for v in named if v not in (None, "", [], {})
    ]
    assert json_tokens(body) == expected_tokens
    stripped = json_without_token(body)
    assert stripped is not None
    assert json.loads(stripped) == {n: v for n, v in members if go_folded(n) != "access_token"}


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_give_an_answer(body: bytes) -> None:
    """A list of tokens, or UnreadableJson (the 400): nothing else ever escapes."""
    try:
        tokens = json_tokens(body)
    except UnreadableJson:
        with pytest.raises(UnreadableJson):
            json_holds_token(body)
        return
    if tokens:
        assert json_holds_token(body)
        assert json_tokens(json_without_token(body)) == []


# ---- pinned after a mutation run ---------------------------------------------------------------


def test_the_first_body_a_process_reads_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing read yet, nothing remembered: a fresh worker's first JSON body is read like any
    other (the remembered body is compared only once there is one)."""
    monkeypatch.setattr(jsonbody, "_last", None)  # as in a process that has read no body
    assert json_tokens(b'{"access_token": "x"}') == ["x"]
