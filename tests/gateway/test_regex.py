"""Route regexes run by RE2: Kong 3's syntax family, linear time, and a literal-prefix shortcut
that never changes an answer."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokengate.gateway.regex import (
    HeaderRegex,
    OriginRegex,
    PathRegex,
    RegexError,
    literal_prefix,
)


def test_a_path_regex_matches_at_the_start_only_and_returns_the_matched_text() -> None:
    users = PathRegex(r"/users/(?<id>\d+)")  # Kong's (PCRE/Rust) spelling of a named group
    assert users.match("/users/42/orders") == "/users/42"
    assert users.match("/v1/users/42") is None
    assert PathRegex(r"/users/\d+$").match("/users/42/orders") is None
    # Case counts, as in Kong's router (only `~*` header values are matched without it).
    assert PathRegex(r"/Admin").match("/admin") is None
    assert PathRegex(r"/[A-Z]dmin").match("/admin") is None


def test_a_backtracking_pattern_cannot_hold_the_worker() -> None:
    # Python's re takes about 2^n steps here (n = 30: minutes); RE2 answers in one pass.
    assert PathRegex(r"/(a+)+$").match("/" + "a" * 30 + "!") is None
    assert PathRegex(r"/(a+)+$").match("/" + "a" * 30) == "/" + "a" * 30


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"/a(?=b)", "invalid perl operator: (?="),  # look-ahead
        (r"/(?<!x)a", "invalid perl operator: (?<!"),  # look-behind
        (r"/(a)\1", "invalid escape sequence: \\1"),  # backreference
        (r"/(", "missing ): /("),
        ("/\udc80", "not valid Unicode"),  # a lone surrogate, which YAML's "\udc80" can give
    ],
)
def test_what_rust_regex_and_re2_lack_is_refused(
    pattern: str, problem: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RegexError) as caught:
        PathRegex(pattern)
    assert str(caught.value) == f"invalid regex: {problem}"
    assert capfd.readouterr().err == ""  # the error is ours to report, not RE2's log line


def test_an_origin_regex_is_matched_from_the_start_with_case() -> None:
    # Kong's cors plugin runs ngx.re.find(origin, entry, "jo"): no "i" flag.
    assert OriginRegex(r"https://app\.example").matches("https://app.example.org")
    assert not OriginRegex(r"https://app\.example").matches("https://APP.example")
    assert not OriginRegex(r"app\.example").matches("https://app.example")


def test_a_header_regex_is_searched_without_case() -> None:
    assert HeaderRegex(r"^v2").search("V2-beta")
    assert HeaderRegex(r"beta").search("v2-BETA")
    assert not HeaderRegex(r"^v2").search("xv2")
    # Without case, but "\D" stays "not a digit" (Kong lower-cases the pattern itself).
    assert not HeaderRegex(r"^v\D$").search("v1")


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (r"/users/\d+", "/users/"),
        (r"/api\.v1/x", "/api.v1/x"),
        (r"/files?/", "/file"),  # "s" may be absent
        (r"/ab*c", "/a"),
        (r"/a{0,2}b", "/"),
        (r"/ab+c", "/ab"),  # at least one "b", then anything may follow
        (r"/a|/b", ""),  # another branch starts otherwise
        (r"(?i)/admin", ""),
        (r"^/x", ""),
        (r"[/]x", ""),
        (r"/a\Qb\E", "/a"),
    ],
)
def test_literal_prefix(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


_PATTERN_PIECES = st.sampled_from(
    ["/", "a", "b", ".", "\\.", "+", "*", "?", "|", "(", ")", "[ab]", "\\d", "{1,2}", "x"]
)


@given(st.lists(_PATTERN_PIECES, max_size=8).map("".join), st.text("/ab.x1", max_size=8))
def test_the_prefix_shortcut_never_changes_an_answer(pattern: str, path: str) -> None:
    try:
        regex = PathRegex(pattern)
    except RegexError:
        return
    try:
        found = re.match(pattern, path)  # these small patterns mean the same to re and RE2
    except re.error:
        return
    assert regex.match(path) == (None if found is None else found.group(0))
