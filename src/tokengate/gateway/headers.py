"""Header hygiene between client, gateway and upstream.

    head = build_request_head(b"GET", b"/x", request.raw_headers, host=b"svc:8080",
                              forwarded=b"X-Forwarded-For: 10.0.0.1\\r\\n", framing=b"")
    headers = response_headers(conn.headers, head_request=False)

Requests are assembled as bytes straight from aiohttp's raw headers: one pass, no dict.
Rules (RFC 9110 §7.6.1, RFC 9112 §9.6, and DESIGN's security invariants):
- hop-by-hop headers, and any header the client's `Connection` names, stop here (both ways);
- framing (Content-Length, Transfer-Encoding) is always ours, never copied;
- client header names of other characters than letters, digits, "-" and "_" are dropped, as
  nginx's ignore_invalid_headers drops them (PHP reads `X.Consumer.ID` as `X_Consumer_ID`);
- names containing "_" pass, as Kong passes them (its nginx has underscores_in_headers on),
  unless, read with "-" for "_", they name a header dropped here or one that carries a token
  (access-token, x-access-token): CGI, WSGI and PHP read `X_Consumer_ID` as `X-Consumer-ID`,
  so it never passes for it;
- X-Forwarded-*, Forwarded, X-Real-IP and identity headers (X-Consumer-*, X-Userinfo,
  X-Authenticated-*, X-Credential-Identifier, X-Anonymous-Consumer) are the gateway's to set:
  a client-sent one never reaches the upstream, so an upstream may trust them;
- headers the gateway sets are added after filtering, so `Connection: X-Request-Id` cannot
  remove them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from multidict import CIMultiDict

from tokengate.gateway.extract import TOKEN_HEADERS
from tokengate.gateway.rawresponse import SERVER, SERVER_LINE, date_line

RawHeaders = Iterable[tuple[bytes, bytes]]

HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        # RFC 9110 reserves the field name "Close": it would be named by `Connection: close`, which
        # the fast path in _named_by does not parse.
        b"close",
    }
)

# Never copied from the client: the gateway sets its own, or the header is for it alone.
_REQUEST_DROP: Final = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"forwarded",
    b"x-real-ip",
    b"x-request-id",
    b"via",
    b"x-userinfo",
    b"x-credential-identifier",
    b"x-anonymous-consumer",
    # Read by some frameworks as the client's address, or as the path or URL to serve instead
    # of the one routed here (IIS URL Rewrite, Symfony): never a client's to set.
    b"x-forwarded",
    b"true-client-ip",
    b"x-client-ip",
    b"client-ip",  # Rails' remote_ip reads it when no X-Forwarded-For entry is untrusted
    b"x-cluster-client-ip",
    b"x-original-url",
    b"x-rewrite-url",
    # httpoxy: CGI puts it in HTTP_PROXY, which HTTP clients in the upstream take for their
    # outbound proxy (Kong clears it too).
    b"proxy",
}
_REQUEST_DROP_PREFIXES: Final = (b"x-forwarded-", b"x-consumer-", b"x-authenticated-")
# The characters nginx takes in a header name (with underscores_in_headers on, as in Kong).
_NAME_CHARS: Final = b"abcdefghijklmnopqrstuvwxyz0123456789-_"
# Kong's headers that carry a token itself: the openid-connect plugin reads only these
# spellings, so another one would reach the upstream unverified.
_TOKEN_HEADER_NAMES: Final = frozenset(name.encode() for name in TOKEN_HEADERS)

_RESPONSE_DROP: Final = HOP_BY_HOP | {b"via"}

VIA: Final = "1.1 tokengate"
_VIA_BYTES: Final = VIA.encode()

# A client's request id is kept only when it is short and plain (it ends up in logs).
_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def host_value(host: str, port: int, protocol: str) -> bytes:
    """The Host header for `host:port` over `protocol`: the port left out when it is the
    scheme's default (RFC 9110 §7.2), as nginx and Kong write it."""
    name = host.encode("idna")  # (an IPv6 literal in brackets is ASCII, and passes as it is)
    if _DEFAULT_PORTS.get(protocol) == port:
        return name
    return b"%b:%d" % (name, port)


def connection_named(raw_headers: RawHeaders) -> frozenset[bytes]:
    """Header names listed in `Connection` (RFC 9110 §7.6.1), lower-cased."""
    named: set[bytes] = set()
    for name, value in raw_headers:
        if name.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    named.discard(b"")
    return frozenset(named)


# What becomes of a client request header, by its lower-cased name, whatever the route:
# kept (unless the route's `drop` names it), dropped, or read (Connection, Via) and dropped.
_KEEP: Final = "keep"
_DROP: Final = "drop"
_CONNECTION: Final = "connection"
_VIA: Final = "via"
# Clients send a few names over and over: each is judged once (bounded: cleared when full).
_FATES: dict[bytes, str] = {}
_FATES_MAX: Final = 4096


def _fate_of(lname: bytes) -> str:
    if len(_FATES) >= _FATES_MAX:
        _FATES.clear()
    fate = _FATES[lname] = _judge(lname)
    return fate


def _judge(lname: bytes) -> str:
    if lname.translate(None, _NAME_CHARS):
        # nginx's ignore_invalid_headers (so Kong's): a name of other characters is dropped.
        # PHP reads "." and " " as "_", so X.Consumer.ID would pass for X-Consumer-ID.
        return _DROP
    if lname == b"connection":
        return _CONNECTION
    if lname == b"via":
        return _VIA
    # CGI, WSGI and PHP read X_Consumer_ID as X-Consumer-ID: such a spelling of a header
    # dropped here, or of a header that carries a token, would smuggle past these checks.
    dashed = lname.replace(b"_", b"-")
    if (
        dashed in _REQUEST_DROP
        or dashed.startswith(_REQUEST_DROP_PREFIXES)
        or (dashed != lname and dashed in _TOKEN_HEADER_NAMES)
    ):
        return _DROP
    return _KEEP


def sane_request_id(value: str) -> bytes | None:
    if _SANE_REQUEST_ID.fullmatch(value):
        return value.encode()
    return None


def build_request_head(
    method: bytes,
    target: bytes,
    raw_headers: tuple[tuple[bytes, bytes], ...],
    *,
    host: bytes,
    added: bytes,
    framing: bytes,
    drop: frozenset[bytes] = frozenset(),
) -> bytes:
    """The upstream request head: client headers that survive, then `added` (the gateway's
    own header lines, CRLF-terminated), then `framing` (Content-Length / Transfer-Encoding).
    `drop` names (lower-case, "-" for any "_") further client headers to leave out, e.g. a
    hidden credential."""
    parts = [method, b" ", target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    named: frozenset[bytes] | None = None
    via: list[bytes] = []
    for name, value in raw_headers:
        lname = name.lower()
        fate = _FATES.get(lname) or _fate_of(lname)
        if fate is not _KEEP:
            if fate is _CONNECTION:
                named = _named_by(value, raw_headers, first=named is None)
            elif fate is _VIA:
                via.append(value)
            continue
        if b"_" in lname:
            lname = lname.replace(b"_", b"-")  # as `drop` spells it, and CGI reads it
        if lname in drop:
            continue
        parts += (name, b": ", value, b"\r\n")
    if named:
        parts = _without_named(parts, named, head=6, dashed=True)
    via.append(_VIA_BYTES)
    parts += (b"Via: ", b", ".join(via), b"\r\n", added, framing, b"\r\n")
    return b"".join(parts)


def _without_named(
    parts: list[bytes], named: frozenset[bytes], *, head: int, dashed: bool = False
) -> list[bytes]:
    # Rare path (a Connection header naming extra headers): rebuild without them. `parts` is
    # `head` leading pieces, then (name, ": ", value, CRLF) per header. `dashed` (requests):
    # "_" and "-" name the same header, as CGI-style upstreams read them.
    if dashed:
        named = frozenset(name.replace(b"_", b"-") for name in named)
    kept = parts[:head]
    for i in range(head, len(parts), 4):
        name = parts[i].lower()
        if (name.replace(b"_", b"-") if dashed else name) not in named:
            kept += parts[i : i + 4]
    return kept


def _named_by(value: bytes, raw_headers: RawHeaders, *, first: bool) -> frozenset[bytes]:
    # Nearly every request has one Connection header, a bare "keep-alive" or "close": skip the
    # parse then. Any other value, or a second Connection header, names the union of them all.
    if first and value.lower() in (b"keep-alive", b"close"):
        return frozenset()
    return connection_named(raw_headers)


def response_headers(
    raw_headers: list[tuple[bytes, bytes]],
    request_id: bytes,
    added: Sequence[tuple[bytes, bytes]] = (),
) -> CIMultiDict[str]:
    """Upstream response headers for a streamed response (aiohttp frames the body). Content-Length
    is kept: llhttp has checked it, and it stays right because the body passes unchanged.
    `added`: the gateway's own headers for the answer, after the upstream's."""
    named: frozenset[bytes] | None = None
    headers: CIMultiDict[str] = CIMultiDict()
    via: list[str] = []
    for name, value in raw_headers:
        lname = name.lower()
        if lname in _RESPONSE_DROP:
            if lname == b"connection":
                named = _named_by(value, raw_headers, first=named is None)
            elif lname == b"via":
                via.append(value.decode("latin-1"))
            continue
        headers.add(name.decode("latin-1"), _text(value))
    for lname in named or ():
        headers.popall(lname.decode("latin-1"), None)
    for name, value in added:
        headers.add(name.decode("latin-1"), _text(value))
    via.append(VIA)
    headers["Via"] = ", ".join(via)
    headers.setdefault("X-Request-Id", request_id.decode())
    # As Kong adds its own when the upstream sent none (aiohttp would add its banner).
    headers.setdefault("Server", SERVER)
    return headers


def _text(value: bytes) -> str:
    # aiohttp writes header values as UTF-8: a UTF-8 value (a Content-Disposition filename)
    # read as such goes out as the same bytes. Any other non-ASCII byte cannot: latin-1 then.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def response_head(
    status: int,
    reason: bytes,
    raw_headers: list[tuple[bytes, bytes]],
    *,
    body_length: int | None,
    request_id: bytes,
    keep_alive: bool,
    added: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """A whole HTTP/1.1 response head for a buffered body, built from the upstream's raw header
    bytes in one pass. `body_length` is None when the response has no body by definition
    (HEAD, 204, 304): the upstream's Content-Length then passes as it is. `added`: the
    gateway's own headers for the answer, after the upstream's."""
    parts = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
    named: frozenset[bytes] | None = None
    via: list[bytes] = []
    has_length = has_request_id = has_date = has_server = False
    for name, value in raw_headers:
        lname = name.lower()
        if lname in _RESPONSE_DROP:
            if lname == b"connection":
                named = _named_by(value, raw_headers, first=named is None)
            elif lname == b"via":
                via.append(value)
            continue
        if lname == b"content-length":
            has_length = True
        elif lname == b"x-request-id":
            has_request_id = True
        elif lname == b"date":
            has_date = True
        elif lname == b"server":
            has_server = True
        parts += (name, b": ", value, b"\r\n")
    if named:
        parts = _without_named(parts, named, head=1)
        # Framing and our request id are ours to write even if the upstream named them.
        has_length = has_length and b"content-length" not in named
        has_request_id = has_request_id and b"x-request-id" not in named
        # RFC 9110 §6.6.1: a Date the upstream named is gone, and a proxy adds one; Server too,
        # as the streamed path does.
        has_date = has_date and b"date" not in named
        has_server = has_server and b"server" not in named
    for name, value in added:
        parts += (name, b": ", value, b"\r\n")
    if body_length is not None and not has_length:
        parts.append(b"Content-Length: %d\r\n" % body_length)
    via.append(_VIA_BYTES)
    parts += (b"Via: ", b", ".join(via), b"\r\n")
    if not has_request_id:
        parts += (b"X-Request-Id: ", request_id, b"\r\n")
    if not has_date:  # RFC 9110 §6.6.1: a proxy adds the Date an upstream left out
        parts.append(date_line())
    if not has_server:  # as Kong adds its own when the upstream sent none
        parts.append(SERVER_LINE)
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
