"""Token extraction: one token, none, or a 400 for several, from each place
bearer_token_param_type allows; a malformed one is a 401 when the caller checks it."""

from __future__ import annotations

import gzip
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from tokengate.gateway.errors import AuthError, MalformedToken, MultipleTokens, UnreadableBody
from tokengate.gateway.extract import (
    TokenLocation,
    body_holds_token,
    body_without_token,
    check_bearer_syntax,
    cookie_header_without,
    extract_token,
    is_encoded,
    needs_body,
    query_without_token,
)
from tokengate.gateway.oidc_config import OidcConfig

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_"
FORM = "application/x-www-form-urlencoded"
DEFAULT = OidcConfig.for_issuer("https://idp.example")
EVERYWHERE = OidcConfig.for_issuer(
    "https://idp.example",
    bearer_token_param_type=("header", "query", "body", "cookie"),
    bearer_token_cookie_name="at",
)


def request(
    path: str = "/", headers: Any = (), *, method: str = "GET", body: bool = False
) -> web.Request:
    # make_mocked_request has no body unless given a payload; extraction never reads it.
    payload = {"payload": cast(StreamReader, object())} if body else {}
    return make_mocked_request(method, path, CIMultiDict(headers), **payload)


def extract(
    path: str = "/",
    headers: Any = (),
    *,
    config: OidcConfig = EVERYWHERE,
    body: bytes | None = None,
) -> TokenLocation | None:
    location = extract_token(request(path, headers, method="POST"), config, body)
    if location is not None:
        # The caller's half of the contract: a token is syntax-checked before it is used
        # (unless it is already known good).
        check_bearer_syntax(location.token)
    return location


def test_syntax_is_checked_by_the_caller_and_keeps_where_the_token_was() -> None:
    location = extract_token(request(headers=[("Authorization", 'Bearer a"b')]), DEFAULT, None)
    assert location == TokenLocation('a"b', "header")
    with pytest.raises(MalformedToken):
        check_bearer_syntax(location.token)


def bearer(value: str, config: OidcConfig = DEFAULT) -> TokenLocation | None:
    return extract(headers=[("Authorization", value)], config=config)


def refused(error: type[AuthError], path: str = "/", **kwargs: Any) -> str:
    with pytest.raises(AuthError) as caught:
        extract(path, **kwargs)
    assert type(caught.value) is error
    expected = (400, "invalid_request") if error is MultipleTokens else (401, "invalid_token")
    assert (caught.value.status, caught.value.error) == expected
    return caught.value.detail


MALFORMED = "malformed token: not a single b64token (RFC 6750 §2.1)"


# --- Authorization header -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [f"Bearer {JWT}", f"bearer {JWT}", f"BEARER {JWT}", f"Bearer   {JWT}", f"Bearer {JWT}  "],
)
def test_bearer_header(value: str) -> None:
    assert bearer(value) == TokenLocation(JWT, "header")


@pytest.mark.parametrize("token", ["abc", "a-._~+/Z9", "abc==", "x="])
def test_bearer_token_is_any_b64token(token: str) -> None:
    assert bearer(f"Bearer {token}") == TokenLocation(token, "header")


@pytest.mark.parametrize(
    "value", ["Basic dXNlcjpwYXNz", "Bearerabc", "Token abc", "DPoP abc", "Digest a=b", ""]
)
def test_other_schemes_are_no_bearer_token(value: str) -> None:
    assert bearer(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "Bearer\tabc",
        "bearer \t abc",
        " Bearer abc ",
        # the same in every spelling of the scheme (the usual one has a quicker path)
        "Bearer \tabc",
        "BEARER \tabc",
        "Bearer abc\t",
        "BEARER abc\t",
    ],
)
def test_scheme_and_token_part_at_a_space_or_a_tab(value: str) -> None:
    """As Kong's `^(%S+)%s(.+)`: a tab separates them too."""
    assert bearer(value) == TokenLocation("abc", "header")


def _reading(value: str) -> object:
    """What the gateway makes of an Authorization value: the token's location, or the refusal."""
    try:
        return bearer(value)
    except AuthError as exc:
        return type(exc)


@given(st.text(alphabet=' \tab=.-_~+/"', max_size=10))
def test_the_usual_spelling_is_read_as_any_other_spelling(credentials: str) -> None:
    """`Bearer ` has a quicker path than `BEARER `: it must come to the same answer."""
    assert _reading(f"Bearer {credentials}") == _reading(f"BEARER {credentials}")


@pytest.mark.parametrize("scheme", ["Bearer", "BEARER"])
def test_the_scheme_spelling_never_changes_the_token(scheme: str) -> None:
    assert bearer(f"{scheme} abcX") == TokenLocation("abcX", "header")
    assert bearer(f"{scheme} Xabc") == TokenLocation("Xabc", "header")


def test_no_authorization_header_is_no_token() -> None:
    assert extract() is None


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "bearer    "])
def test_bearer_without_credentials_is_no_token(value: str) -> None:
    """As Kong: no token (401 without an error code, or an anonymous pass)."""
    assert bearer(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "Bearer a b",
        "Bearer a,b",
        "Bearer a=b",
        "Bearer =abc",
        "Bearer a\tb",
        'Bearer "abc"',
        "Bearer abc\u00e9",
    ],
)
def test_malformed_bearer_credentials_are_a_token_that_fails(value: str) -> None:
    """As Kong: a token that is not one b64token fails as any bad token does (401)."""
    assert refused(MalformedToken, headers=[("Authorization", value)]) == MALFORMED


@pytest.mark.parametrize("second", [f"Bearer {JWT}", "Bearer other", "Basic dXNlcjpwYXNz"])
def test_two_authorization_headers_are_multiple_tokens(second: str) -> None:
    headers = [("Authorization", f"Bearer {JWT}"), ("Authorization", second)]
    assert refused(MultipleTokens, headers=headers) == "more than one Authorization header"


@pytest.mark.parametrize("name", ["access-token", "X-Access-Token"])
@pytest.mark.parametrize("value", [JWT, f"Bearer {JWT}", f" {JWT} ", f"bearer  {JWT}"])
def test_kongs_access_token_headers(name: str, value: str) -> None:
    location = extract(headers=[(name, value)])
    assert location == TokenLocation(JWT, "header", header=name.lower().encode())


@pytest.mark.parametrize("name", ["access-token", "x-access-token"])
def test_access_token_header_with_another_token_is_multiple_tokens(name: str) -> None:
    both = [("Authorization", f"Bearer {JWT}"), (name, JWT)]
    assert refused(MultipleTokens, headers=both) == "more than one token (header)"
    twice = [(name, JWT), (name, JWT)]
    assert refused(MultipleTokens, headers=twice) == "more than one token (header)"


@pytest.mark.parametrize("value", ["a b", "tok,en", "Bearer a b"])
def test_malformed_access_token_header_is_a_token_that_fails(value: str) -> None:
    assert refused(MalformedToken, headers=[("X-Access-Token", value)]) == MALFORMED


@pytest.mark.parametrize("value", ["", " ", "Bearer"])
def test_empty_access_token_header_is_no_token(value: str) -> None:
    assert extract(headers=[("X-Access-Token", value)]) is None


def test_access_token_headers_are_ignored_when_header_is_not_a_place() -> None:
    config = OidcConfig.for_issuer("https://idp.example", bearer_token_param_type=("query",))
    assert extract(headers=[("X-Access-Token", JWT)], config=config) is None


def test_header_is_ignored_when_not_an_allowed_place() -> None:
    config = OidcConfig.for_issuer("https://idp.example", bearer_token_param_type=("query",))
    headers = [("Authorization", "Bearer a b"), ("Authorization", "Bearer c")]
    assert extract(f"/?access_token={JWT}", headers, config=config) == TokenLocation(JWT, "query")


# --- query --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        f"access_token={JWT}",
        f"a=1&access_token={JWT}&b=2",
        f"access%5Ftoken={JWT}",  # the same parameter to every form parser
        f"%61ccess_token={JWT}",
        f"a=1;access_token={JWT}",  # ";" separates too, for upstreams that split on it
        # names PHP or Rack read as access_token
        f"access_token[]={JWT}",
        f"access_token%5B0%5D={JWT}",
        f"access.token={JWT}",
        f"access+token={JWT}",
        f"access%20token={JWT}",
        f"access[token={JWT}",
        f"+access_token={JWT}",  # PHP drops leading spaces
        f"%20%20access.token={JWT}",
        f"access_token%00junk={JWT}",  # and cuts a name at a NUL
        f"access_token\x00junk={JWT}",  # a raw NUL too
        f"a=1&access_token={JWT}&q=?",  # a later "?" is the query's
    ],
)
def test_query_token(query: str) -> None:
    assert extract(f"/p?{query}") == TokenLocation(JWT, "query")


def test_a_token_value_may_hold_equals_signs() -> None:
    assert extract("/?access_token=abc=") == TokenLocation("abc=", "query")
    assert cookie("at=abc==") == TokenLocation("abc==", "cookie")
    assert query_without_token("access_token=abc=&a=1") == "a=1"
    assert cookie_header_without("at=abc=; b=2", "at") == "b=2"


def test_query_token_is_percent_decoded() -> None:
    assert extract("/?access_token=ab%2Bc%2F%3D") == TokenLocation("ab+c/=", "query")


@pytest.mark.parametrize(
    "query",
    [
        "x=access_token",
        "access_token_2=abc",
        "xaccess_token=abc",
        "Access_Token=abc",
        "%09access_token=abc",  # PHP drops leading spaces only
        "X+access_token=abc",
    ],
)
def test_other_parameters_are_not_tokens(query: str) -> None:
    assert extract(f"/?{query}") is None


@pytest.mark.parametrize("query", ["access_token=", "access_token", f"access_token=&x={JWT}"])
def test_empty_query_token_is_no_token(query: str) -> None:
    assert extract(f"/?{query}") is None


@pytest.mark.parametrize(
    "query",
    ["access_token=a+b", "access_token=a%0d%0aX-Evil:%201"],  # "+" is a space
)
def test_malformed_query_token_is_a_token_that_fails(query: str) -> None:
    assert refused(MalformedToken, f"/?{query}") == MALFORMED


@pytest.mark.parametrize(
    "query",
    [
        f"access_token={JWT}&access_token={JWT}",
        f"access_token={JWT}&access%5Ftoken=other",
        f"access_token={JWT};access_token=other",
        # Each place is named once, however many tokens it holds: with display_errors the
        # detail is the error_description, and a header line must not grow with the count.
        "&".join(["access_token=a"] * 1000),
    ],
)
def test_two_query_tokens_are_multiple_tokens(query: str) -> None:
    assert refused(MultipleTokens, f"/?{query}") == "more than one token (query)"


def test_header_and_query_are_multiple_tokens() -> None:
    detail = refused(
        MultipleTokens, f"/?access_token={JWT}", headers=[("Authorization", f"Bearer {JWT}")]
    )
    assert detail == "more than one token (header, query)"


def test_query_is_ignored_when_not_an_allowed_place() -> None:
    config = OidcConfig.for_issuer("https://idp.example", bearer_token_param_type=("header",))
    assert extract("/?access_token=", config=config) is None


# --- form body ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "content_type", "has_body", "config", "expected"),
    [
        ("POST", FORM, True, DEFAULT, True),
        ("PUT", FORM + "; charset=utf-8", True, DEFAULT, True),
        ("POST", "application/x-www-form-urlencoded", False, DEFAULT, False),  # no body
        ("GET", FORM, True, DEFAULT, False),  # RFC 6750 §2.2: never with GET
        ("HEAD", FORM, True, DEFAULT, False),
        ("POST", "multipart/form-data; boundary=x", True, DEFAULT, False),
        ("POST", "application/json", True, DEFAULT, True),  # as Kong reads a body
        ("PATCH", "Application/JSON; charset=utf-8", True, DEFAULT, True),
        ("GET", "application/json", True, DEFAULT, True),  # the GET rule is the form's
        ("POST", "application/merge-patch+json", True, DEFAULT, True),
        ("POST", "text/json", True, DEFAULT, False),
        ("POST", "application/jsonx", True, DEFAULT, False),
        ("POST", "text/plain", True, DEFAULT, False),
        # Content-Type as PHP (cut at ";", "," or " ") and Rack (";" or ",") read it
        ("POST", FORM + ", text/plain", True, DEFAULT, True),
        ("POST", FORM + " x", True, DEFAULT, True),
        ("POST", "Application/X-WWW-Form-Urlencoded\t,", True, DEFAULT, True),
        ("POST", "application/json,text/plain", True, DEFAULT, True),
        ("POST", "text/plain, " + FORM, True, DEFAULT, False),
        ("POST", ", " + FORM, True, DEFAULT, False),
        ("POST", FORM, True, OidcConfig.for_issuer("https://i.example"), True),
        (
            "POST",
            FORM,
            True,
            OidcConfig.for_issuer("https://i.example", bearer_token_param_type=("header",)),
            False,
        ),
    ],
)
def test_needs_body_only_for_a_form_or_json_body_when_allowed(
    method: str, content_type: str, has_body: bool, config: OidcConfig, expected: bool
) -> None:
    incoming = request("/", [("Content-Type", content_type)], method=method, body=has_body)
    assert needs_body(incoming, config) is expected


@pytest.mark.parametrize(
    ("encodings", "expected"),
    [
        ([], False),
        ([""], False),
        (["identity"], False),
        (["Identity, identity"], False),
        (["identity", "identity"], False),
        (["identityX"], True),
        (["gzip"], True),
        (["identity", "br"], True),
        ([" GZIP "], True),
    ],
)
def test_is_encoded(encodings: list[str], expected: bool) -> None:
    headers = [("Content-Encoding", value) for value in encodings]
    assert is_encoded(request("/", headers, method="POST", body=True)) is expected


def test_a_body_labelled_compressed_is_searched_all_the_same() -> None:
    """What reads as a form or as JSON is searched whatever its label says (many parsers
    upstream ignore the label); a JSON body really compressed is not, as one past 64 KiB."""
    gzip_label = ("Content-Encoding", "gzip")
    for content_type in (FORM, "application/json"):
        assert needs_body(
            request("/", [("Content-Type", content_type), gzip_label], method="POST", body=True),
            DEFAULT,
        )
    plain = b"access_token=" + JWT.encode()
    assert form(plain, [gzip_label]) == TokenLocation(JWT, "body")
    json_type = ("Content-Type", "application/json")
    as_json = b'{"access_token": "%b"}' % JWT.encode()
    assert extract(headers=[json_type, gzip_label], body=as_json) == TokenLocation(JWT, "body")
    compressed = gzip.compress(as_json)
    assert extract(headers=[json_type, gzip_label], body=compressed) is None
    with pytest.raises(UnreadableBody):  # not said to be compressed: unreadable JSON
        extract(headers=[json_type], body=compressed)
    # said to be, but plain text: read as the text it is, as parsers ignoring the label read it
    text_with_nan = b'{"access_token": "%b", "n": NaN}' % JWT.encode()
    with pytest.raises(UnreadableBody):
        extract(headers=[json_type, gzip_label], body=text_with_nan)


@pytest.mark.parametrize(
    ("body", "content_type", "encoded", "holds"),
    [
        (b"access_token=x", FORM, False, True),
        (b"a=1&b=2&access_token=x", FORM, False, True),  # anywhere in the form
        (b"a=1;access_token=x", FORM, False, True),
        (b"a=1&access_token\x00=x", FORM, False, True),
        (b"a=access_token&b=1", FORM, False, False),
        (b"a=1", FORM, False, False),
        (b"access_token=x", "text/plain", False, False),
        (b'{"access_token": "x"}', "application/json", False, True),
        (b'{"a": 1}', "application/json", False, False),
        # may hold one and cannot be read: the full check refuses it (a 400), whatever the label
        (b'{"access_token": "x", "n": NaN}', "application/json", False, True),
        (b'{"access_token": "x", "n": NaN}', "application/json", True, True),
        # labelled compressed and not text: streams unsearched
        (gzip.compress(b'{"access_token": "x"}'), "application/json", True, False),
    ],
)
def test_body_holds_token(body: bytes, content_type: str, encoded: bool, holds: bool) -> None:
    """Asked after a 100 Continue, when a verdict on a token outside the body stands unless
    the body holds one too."""
    assert body_holds_token(body, content_type, encoded=encoded) is holds


def form(body: bytes, headers: Any = (), path: str = "/") -> TokenLocation | None:
    return extract(path, [("Content-Type", FORM), *headers], body=body)


def test_body_token() -> None:
    assert form(b"a=1&access_token=" + JWT.encode() + b"&b=2") == TokenLocation(JWT, "body")


def test_body_is_not_looked_at_when_the_caller_did_not_read_it() -> None:
    incoming = request("/", [("Content-Type", FORM)], method="POST")
    assert extract_token(incoming, EVERYWHERE, None) is None


def test_body_of_another_content_type_is_never_parsed() -> None:
    body = b"access_token=" + JWT.encode()
    assert extract(headers=[("Content-Type", "text/plain")], body=body) is None
    with pytest.raises(UnreadableBody):  # a form sent as JSON: a JSON parser may read anything
        extract(headers=[("Content-Type", "application/json")], body=body)
    json_body = b'{"access_token": "%b"}' % JWT.encode()
    assert form(json_body) is None
    assert extract(headers=[("Content-Type", "text/json")], body=json_body) is None


@pytest.mark.parametrize(
    "content_type",
    [FORM + ",text/plain", FORM + " ;charset=utf-8", "APPLICATION/X-WWW-FORM-URLENCODED x"],
)
def test_a_form_is_a_form_however_an_upstream_parser_reads_its_label(content_type: str) -> None:
    """PHP fills $_POST from a body labelled `application/x-www-form-urlencoded, text/plain` (it
    cuts the label at ";", "," and " "; Rack at ";" and ","), where aiohttp reads that label as
    application/octet-stream: the token in it is still found (and a second one is a 400)."""
    headers = [("Content-Type", content_type)]
    body = b"access_token=" + JWT.encode()
    assert extract(headers=headers, body=body) == TokenLocation(JWT, "body")
    with pytest.raises(MultipleTokens):
        extract(headers=[*headers, ("Authorization", f"Bearer {JWT}")], body=body)


def test_json_body_token() -> None:
    headers = [("Content-Type", "application/json; charset=utf-8")]
    body = b'{"a": 1, "access_token": "%b"}' % JWT.encode()
    assert extract(headers=headers, body=body) == TokenLocation(JWT, "body")
    with pytest.raises(MultipleTokens):
        extract(headers=[*headers, ("Authorization", f"Bearer {JWT}")], body=body)


def test_body_is_ignored_when_not_an_allowed_place() -> None:
    config = OidcConfig.for_issuer("https://idp.example", bearer_token_param_type=("header",))
    headers = [("Content-Type", FORM)]
    assert extract(headers=headers, body=b"access_token=x", config=config) is None


def test_two_body_tokens_are_multiple_tokens() -> None:
    with pytest.raises(MultipleTokens):
        form(b"access_token=a&access_token=b")


def test_header_and_body_are_multiple_tokens() -> None:
    with pytest.raises(MultipleTokens, match=r"\(header, body\)"):
        form(b"access_token=" + JWT.encode(), [("Authorization", f"Bearer {JWT}")])


def test_empty_body_token_is_no_token() -> None:
    assert form(b"access_token=&x=1") is None


# --- cookie -------------------------------------------------------------------------------------


def cookie(value: str, config: OidcConfig = EVERYWHERE) -> TokenLocation | None:
    return extract(headers=[("Cookie", value)], config=config)


@pytest.mark.parametrize(
    "value",
    [
        f"at={JWT}",
        f"a=1; at={JWT}; b=2",
        f"a=1;at={JWT}",
        f'at="{JWT}"',
        f" at = {JWT} ",
        # http.cookies (aiohttp, Bottle) splits at blanks and commas too
        f"a=1 at={JWT}",
        f"a=1, at={JWT}; b=2",
        f'a at="{JWT}"',
    ],
)
def test_cookie_token(value: str) -> None:
    assert cookie(value) == TokenLocation(JWT, "cookie")


@pytest.mark.parametrize(
    "value", ["at=", 'at=""', "other=abc", "AT=abc", "xat=abc", "Xat=abc", "atX=abc", ""]
)
def test_no_cookie_token(value: str) -> None:
    assert cookie(value) is None


def test_a_cookie_value_is_taken_as_it_is_but_for_spaces_and_quotes() -> None:
    assert cookie("at=XabcX") == TokenLocation("XabcX", "cookie")


def test_cookie_is_ignored_when_not_an_allowed_place() -> None:
    config = OidcConfig.for_issuer("https://idp.example", bearer_token_cookie_name="at")
    assert cookie(f"at={JWT}", config) is None


def test_two_cookies_of_that_name_are_multiple_tokens() -> None:
    with pytest.raises(MultipleTokens, match=r"\(cookie\)"):
        cookie(f"at={JWT}; at=other")
    headers = [("Cookie", f"at={JWT}"), ("Cookie", "at=other")]
    with pytest.raises(MultipleTokens, match=r"\(cookie\)"):
        extract(headers=headers)


def test_cookie_and_header_are_multiple_tokens() -> None:
    headers = [("Authorization", f"Bearer {JWT}"), ("Cookie", f"at={JWT}")]
    with pytest.raises(MultipleTokens, match=r"\(header, cookie\)"):
        extract(headers=headers)


def test_malformed_cookie_token_is_a_token_that_fails() -> None:
    with pytest.raises(MalformedToken, match="not a single b64token"):
        cookie("at=a,b")


def test_token_location_is_frozen() -> None:
    location = TokenLocation(JWT, "header")
    with pytest.raises(AttributeError):
        location.token = "x"  # type: ignore[misc]


# --- hide helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("access_token=abc", ""),
        ("a=1&access_token=abc", "a=1"),
        ("access_token=abc&a=1", "a=1"),
        ("a=1&access_token=abc&b=%20x+y", "a=1&b=%20x+y"),
        ("a=1&access_token=x&access_token=y&b=2", "a=1&b=2"),
        ("a=1&access%5Ftoken=x", "a=1"),
        ("a=1;access_token=x;b=2", "a=1;b=2"),
        ("a=%2F&&b&access_token=x", "a=%2F&&b"),  # the rest is kept byte for byte
        ("access_token_2=x&xaccess_token=y", "access_token_2=x&xaccess_token=y"),
        ("a=1&access_token[]=x&access.token=y&b=2", "a=1&b=2"),
        ("access_token[a][b]=x&a=1", "a=1"),  # PHP: the name before the first "["
        ("a=1&access_token\x00=x", "a=1"),  # PHP cuts a name at a NUL, raw or %00
        ("%09access_token=x&X+access_token=y", "%09access_token=x&X+access_token=y"),
        (
            "access[]=x&[access_token]=y&access_tokens=z",
            "access[]=x&[access_token]=y&access_tokens=z",
        ),
        ("", ""),
        ("a=1", "a=1"),
    ],
)
def test_query_without_token(raw: str, expected: str) -> None:
    assert query_without_token(raw) == expected


def test_body_without_token_keeps_other_bytes() -> None:
    body = b"name=J%C3%BCrgen&access_token=abc&note=a+b%26c"
    assert body_without_token(body, FORM) == b"name=J%C3%BCrgen&note=a+b%26c"
    assert body_without_token(b"a=1&access_token\x00=x", FORM) == b"a=1"
    assert body_without_token(b"\xff=1&access_token=x", FORM) == b"\xff=1"
    json_body = b'{"n": 1e400, "access_token": "x"}'
    assert body_without_token(json_body, "application/json") == b'{"n": 1e400}'
    assert body_without_token(json_body, "application/problem+json") == b'{"n": 1e400}'


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("at=abc", ""),
        ("a=1; at=abc; b=2", "a=1; b=2"),
        ("at=abc; b=2", "b=2"),
        ("a=1; at=abc", "a=1"),
        ("a=1;at=x;at=y;b=2", "a=1;b=2"),
        ("a=1; AT=abc", "a=1; AT=abc"),  # cookie names are case-sensitive
        ("Xat=1; b=2", "Xat=1; b=2"),
        ("a=1", "a=1"),
        ("a=1 at=abc; b=2", "b=2"),  # http.cookies reads an `at` cookie in the first piece
        ("a=1, at=abc", ""),
        ("a=1 bat=2; b=2", "a=1 bat=2; b=2"),
    ],
)
def test_cookie_header_without(header: str, expected: str) -> None:
    assert cookie_header_without(header, "at") == expected


_PIECES = st.sampled_from(
    [
        "access_token",
        "access%5Ftoken",
        "%61ccess_token",
        "access.token",
        "access_token[]",
        "access[token",
        "a",
        "=",
        "&",
        ";",
        "x",
        "%2",
        "+",
        "_",
        "[",
        "]",
    ]
)


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_whatever_is_read_as_a_token_is_what_the_hide_helper_removes(raw: str) -> None:
    stripped = query_without_token(raw)
    found = extract_token(request("/?" + stripped), DEFAULT, None)
    assert found is None, f"{stripped!r} (from {raw!r}) still holds an access_token parameter"


_COOKIE_PIECES = st.sampled_from(["at", "a", "=", ";", ",", " ", "\t", '"', "x", "1", "at="])


@given(st.lists(_COOKIE_PIECES, max_size=12).map("".join))
def test_whatever_is_read_as_the_token_cookie_is_what_the_hide_helper_removes(raw: str) -> None:
    stripped = cookie_header_without(raw, "at")
    found = extract(headers=[("Cookie", stripped)] if stripped else [])
    assert found is None, f"{stripped!r} (from {raw!r}) still holds an at cookie"
