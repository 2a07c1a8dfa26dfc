"""canonical_path: the docstring table, one row (at least) per rule, plus properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokengate.gateway.paths import BadPath, canonical_path, kong_router_path

CANONICAL = [
    # unchanged (fast path)
    ("/", "/"),
    ("/api/v1/users", "/api/v1/users"),
    ("/a/", "/a/"),
    ("/.well-known/openid-configuration", "/.well-known/openid-configuration"),
    ("/a..b/c.", "/a..b/c."),
    ("/a:b@c=e,f+g$h&i'j(k)l*m!n~o", "/a:b@c=e,f+g$h&i'j(k)l*m!n~o"),
    # unreserved escapes decoded, so a protected prefix cannot be reached around its route
    ("/%61dmin", "/admin"),
    ("/%41%5a%30%39", "/AZ09"),
    ("/%7e", "/~"),
    ("/%7E%2d%5F", "/~-_"),
    # escapes of what a segment may hold raw (":", "@", sub-delims but ";") decoded: upstreams
    # route on the decoded path, so `/v1/users%3Asearch` must meet the `/v1/users:search` route
    ("/%3a", "/:"),
    ("/v1/users%3Asearch", "/v1/users:search"),
    ("/%40me/%24batch", "/@me/$batch"),
    ("/%21%26%27%28%29%2a%2B%2c%3D", "/!&'()*+,="),
    # other escapes kept, hex upper-cased, decoded only once
    ("/a%3bb", "/a%3Bb"),
    ("/a%20b", "/a%20b"),
    ("/%c3%a9", "/%C3%A9"),
    ("/%252E%252E", "/%252E%252E"),
    ("/%25", "/%25"),
    ("/%3f%23", "/%3F%23"),
    ("/%80%9f", "/%80%9F"),
    # raw characters that are not path characters are escaped (as UTF-8), like the same escape
    ("/caf\u00e9", "/caf%C3%A9"),
    ("/caf%c3%a9", "/caf%C3%A9"),
    ('/a"b<c>d', "/a%22b%3Cc%3Ed"),
    ("/a{b}|c^d`e", "/a%7Bb%7D%7Cc%5Ed%60e"),
    ("/a[b]", "/a%5Bb%5D"),
    ("/a#/../admin", "/admin"),
    ("/a#b", "/a%23b"),
    ("/a b", "/a%20b"),
    ("/\u2028", "/%E2%80%A8"),
    # repeated slashes merged: a path on our upstream, never an authority
    ("//evil.example/x", "/evil.example/x"),
    ("/a//b///c", "/a/b/c"),
    ("//", "/"),
    ("/a//", "/a/"),
    # dot segments (RFC 3986 5.2.4), after decoding and after merging
    ("/a/./b/../c", "/a/c"),
    ("/a/b/..", "/a/"),
    ("/a/.", "/a/"),
    ("/.", "/"),
    ("/./", "/"),
    ("/a/..", "/"),
    ("/a/%2e%2e", "/"),
    ("/a/%2E%2e/b", "/b"),
    ("/a/.%2e/b", "/b"),
    ("/a/%2e/b", "/a/b"),
    ("/a//../b", "/b"),
    ("/a/b/../../c/./d/", "/c/d/"),
    ("/%2e%2eadmin", "/..admin"),
]

REFUSED = [
    # not origin-form
    "",
    "*",
    "a/b",
    "http://evil.example/x",
    "%2F",
    # malformed escapes
    "/%zz",
    "/%4",
    "/%",
    "/a%4g",
    # encoded slash or backslash, raw backslash
    "/a/%2F",
    "/a/%2f..",
    "/a%5Cb",
    "/a%5cb",
    "/a\\b",
    "\\a",
    # control characters, raw or encoded
    "/%00",
    "/a\x00",
    "/%0a",
    "/%0D%0A",
    "/%1f",
    "/%7F",
    "/a\tb",
    "/a\nb",
    "/a\x7f",
    "/a\x85",
    "/a\ud800",
    # a path parameter: servlet containers drop ";x" before they map the path
    "/api;x/admin",
    "/a;",
    "/;jsessionid=1",
    "/a/%2e%2e;/b",
    # dot segments above the root: refused, not clamped
    "/..",
    "/../a",
    "/%2e%2e",
    "/%2E%2E/admin",
    "/a/../..",
    "/a/../../b",
    "/./..",
    "//..//admin",
]


@pytest.mark.parametrize(("raw", "expected"), CANONICAL)
def test_canonical(raw: str, expected: str) -> None:
    assert canonical_path(raw) == expected


@pytest.mark.parametrize("raw", REFUSED)
def test_refused(raw: str) -> None:
    with pytest.raises(BadPath) as caught:
        canonical_path(raw)
    assert caught.value.reason


def test_fast_path_returns_the_same_object() -> None:
    # The common case must cost a few substring checks, not a rebuild.
    raw = "/api/v1/users/12345/profile"
    assert canonical_path(raw) is raw


_PATH_CHARS = "ABCXYZabcxyz0189-._~!$&'()*+,;=:@/%"
# Only RFC 3986 path characters but ";" and well-formed escapes survive.
_CANONICAL_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,=:@/]|%[0-9A-F]{2})*")
_PATHISH = st.text(alphabet="/.%2eEfF5cC0aA\\~:34bBdD;", max_size=30)  # %3A %40 %2B %3B ...


def _check_canonical(raw: str) -> None:
    try:
        result = canonical_path(raw)
    except BadPath:
        return
    assert result.startswith("/")
    segments = result.split("/")[1:]
    assert "." not in segments
    assert ".." not in segments
    assert "" not in segments[:-1]  # no "//"
    assert "%2F" not in result.upper()
    assert "%5C" not in result.upper()
    assert "\\" not in result
    assert _CANONICAL_CHARS.fullmatch(result), result
    assert canonical_path(result) == result


@given(st.text())
def test_any_text_is_canonical_or_bad_path(raw: str) -> None:
    _check_canonical(raw)


@given(st.one_of(_PATHISH, _PATHISH.map(lambda s: "/" + s)))
def test_path_like_text_is_canonical_or_bad_path(raw: str) -> None:
    # A small alphabet reaches the interesting combinations (%2e%2E, //.., %5c) far more often.
    _check_canonical(raw)


@given(
    st.text(alphabet=_PATH_CHARS.replace("%", "").replace(".", "").replace(";", ""), max_size=40)
)
def test_plain_paths_are_returned_unchanged(tail: str) -> None:
    raw = "/" + tail.replace("//", "/a/")
    if "//" not in raw:
        assert canonical_path(raw) is raw


@pytest.mark.parametrize(
    ("raw", "kong"),
    [
        ("/docs/a%40b", "/docs/a%40b"),  # reserved: kept, upper-cased
        ("/docs/a%2bb", "/docs/a%2Bb"),
        ("/wiki/caf%C3%A9", "/wiki/café"),  # the others decoded, UTF-8 included
        ("/wiki/my%20page", "/wiki/my page"),
        ("/%61dmin", "/admin"),
        ("/a//b/../c", "/a/c"),
        ("/x%25y", "/x%25y"),
    ],
)
def test_kong_router_path_reads_escapes_as_kongs_normalize(raw: str, kong: str) -> None:
    assert kong_router_path(raw) == kong


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("*", "path must start with '/'"),
        ("/a;b", "';' path parameter (servlet containers drop it before they map a path)"),
        ("/a\\b", "forbidden character in path"),
        ("/a%2", "malformed percent-escape"),
        ("/a%0d%0a", "encoded control character"),
        ("/a%2fb", "encoded slash or backslash"),
        ("/..", "dot segment above the root"),
    ],
)
def test_a_refused_path_names_its_reason_for_logs_and_config_errors(raw: str, reason: str) -> None:
    with pytest.raises(BadPath) as caught:
        canonical_path(raw)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_kong_router_path_keeps_an_escape_that_is_no_utf8_as_a_byte() -> None:
    # Kong's normalize decodes %C3 alone to the byte 0xC3: here, its surrogateescape stand-in.
    assert kong_router_path("/a%C3x") == "/a\udcc3x"
