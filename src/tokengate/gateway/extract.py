"""Where the bearer token is: exactly one token, or none, or a 400 for several.

    body = await request.read() if needs_body(request, config) else None
    location = extract_token(request, config, body)      # MultipleTokens: 400
    if location is None:
        raise MissingToken                                # 401, no error code
    location.token, location.where                        # "header" | "query" | "body" | "cookie"
    check_bearer_syntax(location.token)                   # before use: MalformedToken, 401

Only the places listed in `bearer_token_param_type` are looked at (Kong's default: header, query,
body). "header" is Kong's three headers: `Authorization: Bearer <b64token>` (RFC 6750 §2.1), and
`access-token` / `x-access-token` holding the token itself (or `Bearer <token>`). The body's
`access_token`: a form-encoded body's parameter (RFC 6750 §2.2: never on GET/HEAD) or, as Kong
reads a body too, a JSON body's top-level member (jsonbody.py: `application/json` or any
`application/...+json`, on any method; one that may hold a token but cannot be read is a 400);
never multipart. The `access_token` query parameter (RFC 6750 §2.3); and Kong's
`bearer_token_cookie_name` cookie.

Decisions:
- More than one token, wherever they are (two Authorization headers, header + query, two
  `access_token` parameters, ...) → MultipleTokens (RFC 6750 §3.1 `invalid_request`, 400): if a
  request carries several tokens, the upstream may read another one than the gateway verified.
- As Kong: a bare `Bearer`, an empty `access_token` parameter, header or cookie is no token
  (401 with no error code, or an anonymous pass); credentials that are not one b64token
  (`Bearer a b`, `Bearer a,b`, bad characters) are a token that fails: `check_bearer_syntax`
  raises MalformedToken (401 `invalid_token`) before the token is used, so a token that is ever
  re-sent upstream is safe in a header line. Both keep where the token was, for
  `hide_credentials` on an anonymous pass.
- Another scheme (`Basic ...`) is "no bearer token here", not an error.

The hide helpers (`query_without_token`, `body_without_token`, `cookie_header_without`) find
parameters exactly as extraction does, so whatever was read as a token is what gets removed.
"""

from __future__ import annotations

import re
from typing import Final, Literal, NamedTuple
from urllib.parse import unquote_plus

from aiohttp import web

from tokengate.gateway.errors import MalformedToken, MultipleTokens, UnreadableBody
from tokengate.gateway.jsonbody import (
    ACCESS_TOKEN,  # the parameter's name too (RFC 6750 §2.2, §2.3)
    UnreadableJson,
    json_holds_token,
    json_tokens,
    json_without_token,
)
from tokengate.gateway.oidc_config import OidcConfig

Where = Literal["header", "query", "body", "cookie"]

FORM: Final = "application/x-www-form-urlencoded"
JSON: Final = "application/json"
# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
# "&" is the separator; some upstreams (Rack before 3) also split on ";". Splitting on both
# means a token hidden behind a ";" is seen here too, and removed by the hide helpers.
_SEPARATOR: Final = re.compile(r"([&;])")
_MEDIA_TYPE_END: Final = re.compile("[;, \t]")  # where body_type cuts a Content-Type value
_NO_BODY_METHODS: Final = frozenset({"GET", "HEAD"})  # RFC 6750 §2.2: never with GET
_SCHEME_SPLIT: Final = re.compile(r"([^ \t]*)[ \t]?(.*)", re.DOTALL)
_PHP_NAME: Final = str.maketrans(". [", "___")  # what PHP makes of these in a parameter name
# Kong's `header` place besides Authorization: headers that hold the token itself.
TOKEN_HEADERS: Final = ("access-token", "x-access-token")


class TokenLocation(NamedTuple):
    """The one token of a request, and where it came from (hide_credentials strips it there).
    Its b64token syntax is not checked yet: `check_bearer_syntax` does, before it is used (a
    cached token passed it before). A NamedTuple: built on every request, and a frozen
    dataclass costs several times more."""

    token: str
    where: Where
    header: bytes = b"authorization"  # for where == "header": which one (lower-case)


def needs_body(request: web.BaseRequest, config: OidcConfig) -> bool:
    """Whether the caller must read the body and pass it to `extract_token`: only for a
    form-encoded body (not on GET or HEAD) or a JSON one, when `body` is an allowed place.
    Every other body is streamed untouched."""
    if "body" not in config.bearer_token_param_type or not request.body_exists:
        return False
    content_type = body_type(request)
    if content_type == FORM:
        return request.method not in _NO_BODY_METHODS
    return is_json(content_type)


def body_type(request: web.BaseRequest) -> str:
    """The body's media type as the most lenient parser upstream reads its Content-Type: lower
    case, cut at the first ";", "," or blank. PHP cuts at ";", "," and " ", Rack at ";" and ","
    (and Kong's plugin takes any value that starts with the form's type): to them
    `application/x-www-form-urlencoded, text/plain` labels a form, so a token in it is looked
    for here too. (aiohttp's `content_type` reads that label as application/octet-stream.)"""
    raw = request.headers.get("Content-Type")
    if raw is None:
        return "application/octet-stream"  # RFC 9110 §8.3: the recipient may assume it
    return _MEDIA_TYPE_END.split(raw.strip(" \t").lower(), 1)[0]


def is_json(content_type: str) -> bool:
    """A JSON media type: application/json, or a structured syntax suffix (RFC 6839) such as
    application/merge-patch+json, which JSON parsers upstream read all the same."""
    return content_type == JSON or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def extract_token(
    request: web.BaseRequest, config: OidcConfig, body: bytes | None
) -> TokenLocation | None:
    """The request's one bearer token, or None when it has none (the caller raises MissingToken).

    `body` is the form or JSON body when `needs_body` said so, else None (not looked at). Raises
    MultipleTokens (400) as the module docstring says."""
    places = config.bearer_token_param_type
    found: list[TokenLocation] = []
    if "header" in places:
        values = request.headers.getall("Authorization", ())
        if len(values) > 1:
            # Authorization is a singleton field (RFC 9110 §11.6.2); which one would count?
            raise MultipleTokens("more than one Authorization header")
        if values and (bearer := _bearer(values[0])):
            found.append(TokenLocation(bearer, "header"))
        for name in TOKEN_HEADERS:
            for value in request.headers.getall(name, ()):
                if token := _token_header_value(value):
                    found.append(TokenLocation(token, "header", header=name.encode("ascii")))
    if "query" in places:
        # The raw target, split by hand: building request.rel_url (yarl) costs microseconds.
        raw_query = request.raw_path.partition("?")[2]
        # Fast path: without "%", any spelling of a token parameter's name holds "access".
        if raw_query and ("access" in raw_query or "%" in raw_query):
            found += (TokenLocation(t, "query") for t in _parameters(raw_query))
    if body is not None and "body" in places:
        tokens = _body_tokens(body, body_type(request), is_encoded(request))
        found += (TokenLocation(t, "body") for t in tokens)
    if "cookie" in places and config.bearer_token_cookie_name is not None:
        name = config.bearer_token_cookie_name
        for header in request.headers.getall("Cookie", ()):
            found += (TokenLocation(t, "cookie") for t in _cookies(header, name))
    if len(found) > 1:
        # Each place named once: the detail (error_description with display_errors, and one
        # prepared answer per text) must not grow with the number of tokens a client sends.
        where = ", ".join(dict.fromkeys(location.where for location in found))
        raise MultipleTokens(f"more than one token ({where})")
    return found[0] if found else None


def is_encoded(request: web.BaseRequest) -> bool:
    """Whether the body says it is compressed: a Content-Encoding other than identity."""
    codings = ",".join(request.headers.getall("Content-Encoding", ())).split(",")
    return any(coding.strip(" \t").lower() not in ("", "identity") for coding in codings)


def _body_tokens(body: bytes, content_type: str, encoded: bool) -> list[str]:
    if content_type == FORM:
        return _parameters(body.decode("latin-1"))  # lossless; the form itself is ASCII
    if is_json(content_type):
        try:
            return json_tokens(body)
        except UnreadableJson:
            if encoded and _compressed(body):  # unsearched, as a body past the size bound
                return []
            raise UnreadableBody("a JSON body that may hold a token cannot be read") from None
    return []


def _compressed(body: bytes) -> bool:
    """Whether a body labelled compressed looks it: gzip, deflate, br and zstd output is not
    UTF-8 text. One that is (`{"access_token": ..., "n": NaN}` labelled gzip) is read as the
    text it is, as parsers that ignore the label read it."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def body_holds_token(body: bytes, content_type: str, *, encoded: bool = False) -> bool:
    """Whether a form body has an access_token parameter, or a JSON body an access_token
    member (or may have one and cannot be read, unless it is compressed), well-formed or
    not."""
    if is_json(content_type):
        try:
            return json_holds_token(body)
        except UnreadableJson:
            return not (encoded and _compressed(body))  # the full check refuses it
    if content_type != FORM:
        return False
    pairs = _SEPARATOR.split(body.decode("latin-1"))[::2]
    return any(_is_token_name(pair.partition("=")[0]) for pair in pairs)


def _bearer(value: str) -> str | None:
    """The credentials of a Bearer Authorization value (syntax checked later, only if needed):
    "" when there are none (no token, as Kong reads it); None for another scheme."""
    if (
        value.startswith(("Bearer ", "bearer "))
        and len(value) > 7
        and value.find(" ", 7) < 0
        and value[7] != "\t"
        and value[-1] != "\t"
    ):
        return value[7:]  # the usual spelling (the general path would strip a tab at either end)
    # Scheme and credentials part at the first space or tab, as Kong's `^(%S+)%s(.+)` does.
    parts = _SCHEME_SPLIT.match(value.strip(" \t"))
    assert parts is not None  # every string matches
    scheme, credentials = parts.groups()
    if scheme.lower() != "bearer":
        return None  # another scheme: no bearer token here
    return credentials.strip(" \t")


def _token_header_value(value: str) -> str:
    # The token as it is, or after a Bearer scheme as in Authorization; "" when empty.
    bearer = _bearer(value)
    return value.strip(" \t") if bearer is None else bearer


def check_bearer_syntax(token: str) -> None:
    """MalformedToken (401) unless `token` is one b64token (RFC 6750 §2.1)."""
    if not _is_b64token(token):
        raise MalformedToken("malformed token: not a single b64token (RFC 6750 §2.1)")


def _parameters(query: str) -> list[str]:
    """The (percent-decoded) values of every non-empty `access_token` parameter."""
    values = (
        unquote_plus(value)
        for name, _, value in (pair.partition("=") for pair in _SEPARATOR.split(query)[::2])
        if _is_token_name(name)
    )
    return [value for value in values if value]


def _is_token_name(name: str) -> bool:
    """Whether an upstream's form parser would read this parameter as `access_token`: escaped
    ("access%5Ftoken", any parser), an array of it ("access_token[]", PHP and Rack), or as PHP
    names it: leading spaces dropped, cut at a NUL, "." or " " or a lone "[" for "_"
    ("access.token")."""
    if name == ACCESS_TOKEN:
        return True
    if not any(c in name for c in "%+.[ \x00"):
        return False
    decoded = unquote_plus(name).lstrip(" ").partition("\x00")[0]
    bracket = decoded.find("[")
    if bracket > 0 and "]" in decoded[bracket:]:
        decoded = decoded[:bracket]
    return decoded.translate(_PHP_NAME) == ACCESS_TOKEN


def _cookies(header: str, name: str) -> list[str]:
    values = []
    for piece in header.split(";"):
        key, _, value = piece.partition("=")
        if key.strip(" \t") == name:
            values.append(_cookie_value(value))
        within = _COOKIE_WITHIN.findall(piece.strip(" \t"))
        values += (_cookie_value(found) for named, found in within if named == name)
    return [value for value in values if value]


def _cookie_value(value: str) -> str:
    value = value.strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]  # RFC 6265 §4.1.1: a cookie value may be quoted
    return value


# A cookie within a ";"-separated piece, after a comma or a blank: nginx's $cookie_ (so Kong)
# reads `a=1, at=x` as two cookies, Python's http.cookies (aiohttp's and Bottle's
# request.cookies) `a=1 at=x` too, where RFC 6265 parsers read one, `a`. Such a pair named as
# the token cookie is a token too.
_COOKIE_WITHIN: Final = re.compile(r'[\s,][ \t]*([^=;,\s]+)[ \t]*=[ \t]*("[^"]*"|[^;,\s]*)')


def _is_b64token(token: str) -> bool:
    # bytes.translate deletes the allowed characters in one C pass: ~1 µs for a 1 KB token,
    # a third of what a regex takes on the hot path.
    if not token.isascii():
        return False
    body = token.encode("ascii").rstrip(b"=")
    return bool(body) and not body.translate(None, _B64_CHARS)


# --- hide_credentials: remove the token from where it came ----------------------------------


def query_without_token(raw_query: str) -> str:
    """`raw_query` (as sent, still percent-encoded: `request.rel_url.raw_query_string`) without
    any `access_token` parameter; everything else stays byte for byte."""
    parts = _SEPARATOR.split(raw_query)  # [pair, separator, pair, ...]
    kept: list[str] = []
    for index in range(0, len(parts), 2):
        pair = parts[index]
        if _is_token_name(pair.partition("=")[0]):
            continue
        if kept:
            kept.append(parts[index - 1])
        kept.append(pair)
    return "".join(kept)


def body_without_token(body: bytes, content_type: str) -> bytes:
    """A form-encoded body without any `access_token` field, or a JSON body without any
    top-level `access_token` member; the rest as sent."""
    if is_json(content_type):
        return json_without_token(body)  # a token was found in it: it reads
    return query_without_token(body.decode("latin-1")).encode("latin-1")


def cookie_header_without(cookie_header: str, name: str) -> str:
    """A Cookie header value without the `name` cookie ("" when nothing is left: drop the
    header). Join several Cookie headers with "; " first (RFC 6265 §5.4)."""
    pieces = cookie_header.split(";")
    kept = [
        piece
        for piece in pieces
        if piece.partition("=")[0].strip(" \t") != name
        and all(n != name for n, _ in _COOKIE_WITHIN.findall(piece.strip(" \t")))
    ]
    return ";".join(kept).strip(" \t")
