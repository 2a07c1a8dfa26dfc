"""Header hygiene as bytes: what the upstream and the client receive."""

from __future__ import annotations

import re

import pytest

from tokengate.gateway import headers as headers_module
from tokengate.gateway.headers import (
    build_request_head,
    connection_named,
    host_value,
    response_head,
    response_headers,
    sane_request_id,
)


def head(raw: list[tuple[bytes, bytes]]) -> bytes:
    return build_request_head(
        b"GET",
        b"/p?q=1",
        tuple(raw),
        host=b"svc:8080",
        added=b"X-Real-IP: 1.2.3.4\r\n",
        framing=b"",
    )


def test_request_head_shape() -> None:
    assert head([(b"Accept", b"*/*")]) == (
        b"GET /p?q=1 HTTP/1.1\r\nHost: svc:8080\r\nAccept: */*\r\nVia: 1.1 tokengate\r\n"
        b"X-Real-IP: 1.2.3.4\r\n\r\n"
    )


def test_client_framing_and_host_are_never_copied() -> None:
    out = head([(b"Host", b"evil"), (b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")])
    assert b"evil" not in out and b"Content-Length" not in out and b"chunked" not in out


def test_connection_named_headers_are_dropped_case_insensitively() -> None:
    out = head([(b"Connection", b"close, X-Secret"), (b"x-SECRET", b"1"), (b"X-Other", b"2")])
    assert b"secret" not in out.lower() and b"X-Other: 2" in out
    assert b"Connection" not in out


@pytest.mark.parametrize(
    "name",
    [
        # DESIGN: identity headers and X-Forwarded-* are the gateway's, whatever their suffix
        b"X-Consumer-ID",
        b"X-Consumer-Custom-ID",
        b"x-consumer-anything-new",
        b"X-Authenticated-Userid",
        b"X-Authenticated-Scope-Extra",
        b"X-Forwarded-For",
        b"X-Forwarded-Client-Cert",
        b"X-FORWARDED-ANYTHING",
        b"X-Userinfo",
        b"X-Credential-Identifier",
        b"X-Anonymous-Consumer",
        b"Forwarded",
        b"X-Real-IP",
        b"X_Consumer_ID",  # underscores: CGI would read it as X-Consumer-ID
        b"x_forwarded_for",
        b"X_Real_IP",
        b"keep_alive",
        b"Proxy",  # httpoxy
        # the client's address, or another path to serve, to some frameworks
        b"X-Forwarded",
        b"True-Client-IP",
        b"X-Client-IP",
        b"Client-IP",
        b"X-Cluster-Client-IP",
        b"X-Original-URL",
        b"X-Rewrite-URL",
        # names nginx refuses: PHP reads "." and " " as "_"
        b"X.Consumer.ID",
        b"X-Real.IP",
        b"X.Userinfo",
        b"x-custom!",
        # other spellings of the headers that carry a token (the plugin reads only these two)
        b"X_Access_Token",
        b"access_token",
        b"X-Access_Token",
    ],
)
def test_client_identity_headers_never_reach_the_upstream(name: bytes) -> None:
    out = head([(name, b"spoofed"), (b"Accept", b"*/*")])
    assert b"spoofed" not in out
    assert b"Accept: */*\r\n" in out


@pytest.mark.parametrize("name", [b"session_id", b"X_Api_Version", b"_private"])
def test_other_names_with_underscores_pass_as_kong_passes_them(name: bytes) -> None:
    out = head([(name, b"kept")])
    assert name + b": kept\r\n" in out


def test_an_underscore_spelling_of_a_header_the_gateway_sets_is_dropped() -> None:
    # `drop` holds the route's claim headers, "-" for "_": both spellings are the gateway's.
    raw = [(b"X_User", b"spoofed"), (b"x-user", b"spoofed"), (b"X-Other", b"kept")]
    out = build_request_head(
        b"GET", b"/", tuple(raw), host=b"h", added=b"", framing=b"", drop=frozenset({b"x-user"})
    )
    assert b"spoofed" not in out
    assert b"X-Other: kept\r\n" in out


@pytest.mark.parametrize(
    ("named", "sent"), [(b"x-secret", b"X_Secret"), (b"x_secret", b"X-Secret")]
)
def test_connection_naming_a_header_drops_either_spelling(named: bytes, sent: bytes) -> None:
    out = head([(b"Connection", named), (sent, b"s"), (b"Accept", b"*/*")])
    assert sent not in out
    assert b"Accept: */*\r\n" in out


def test_an_upstream_connection_naming_content_length_with_an_underscore_keeps_framing() -> None:
    """Only requests read "_" as "-": a response's Content-Length stays when its Connection
    names content_length (the client would otherwise get a body it cannot delimit)."""
    raw = [(b"Content-Length", b"5"), (b"Connection", b"content_length")]
    out = response_head(200, b"OK", raw, body_length=5, request_id=b"id", keep_alive=True)
    assert out.count(b"Content-Length: 5\r\n") == 1


def test_client_via_is_kept_and_ours_appended() -> None:
    assert b"Via: 1.0 edge, 1.1 tokengate\r\n" in head([(b"Via", b"1.0 edge")])


def test_every_connection_header_counts() -> None:
    """A first `Connection: keep-alive` must not hide what a second Connection header names."""
    raw = [
        (b"Connection", b"keep-alive"),
        (b"Connection", b"X-Hop-Secret"),
        (b"X-Hop-Secret", b"1"),
    ]
    assert b"secret" not in head(raw).lower()
    upstream = [(b"Content-Type", b"text/plain"), *raw]
    out = response_head(200, b"OK", upstream, body_length=0, request_id=b"r", keep_alive=True)
    assert b"secret" not in out.lower()
    assert "X-Hop-Secret" not in response_headers(upstream, b"r")
    reversed_ = [
        (b"Connection", b"X-Hop-Secret"),
        (b"Connection", b"close"),
        (b"X-Hop-Secret", b"1"),
    ]
    assert b"secret" not in head(reversed_).lower()
    assert "X-Hop-Secret" not in response_headers(reversed_, b"r")


def test_connection_named_parses_lists() -> None:
    raw = [(b"Connection", b" Keep-Alive , X-A,,"), (b"connection", b"x-b")]
    assert connection_named(raw) == {b"keep-alive", b"x-a", b"x-b"}


def test_sane_request_id() -> None:
    assert sane_request_id("abc-123_X.y:z") == b"abc-123_X.y:z"
    assert sane_request_id("a b") is None
    assert sane_request_id("x" * 129) is None
    assert sane_request_id("") is None


def test_response_head_filters_and_frames() -> None:
    raw = [
        (b"Content-Type", b"text/plain"),
        (b"Connection", b"X-Hop"),
        (b"X-Hop", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Date", b"Thu, 26 Nov 2026 18:00:00 GMT"),
    ]
    out = response_head(200, b"OK", raw, body_length=3, request_id=b"rid", keep_alive=False)
    assert out == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Thu, 26 Nov 2026 18:00:00 GMT"
        b"\r\nContent-Length: 3\r\nVia: 1.1 tokengate\r\nX-Request-Id: rid\r\n"
        b"Server: tokengate\r\nConnection: close\r\n\r\n"
    )


def test_response_head_adds_the_date_an_upstream_left_out() -> None:
    # RFC 9110 §6.6.1: a recipient with a clock forwarding a response without Date adds one.
    out = response_head(200, b"OK", [], body_length=0, request_id=b"rid", keep_alive=True)
    dates = re.findall(rb"\r\nDate: (.*?)\r\n", out)
    assert len(dates) == 1
    assert re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", dates[0])


def test_response_head_keeps_upstream_length_and_request_id() -> None:
    raw = [(b"Content-Length", b"1234"), (b"X-Request-Id", b"up")]
    out = response_head(200, b"OK", raw, body_length=None, request_id=b"ours", keep_alive=True)
    assert out.count(b"Content-Length") == 1 and b"Content-Length: 1234" in out
    assert b"X-Request-Id: up" in out and b"ours" not in out


def test_streamed_response_headers() -> None:
    raw = [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Connection", b"keep-alive")]
    headers = response_headers(raw, b"rid")
    assert headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert "Connection" not in headers
    assert headers["Via"] == "1.1 tokengate" and headers["X-Request-Id"] == "rid"


def test_the_names_judged_are_remembered_within_a_bound() -> None:
    """Clients may send any number of distinct names: the table of judged names stays bounded,
    and a name judged before is judged the same after the table was cleared."""
    for i in range(headers_module._FATES_MAX + 10):
        head([(b"X-Name-%d" % i, b"v")])
    assert len(headers_module._FATES) <= headers_module._FATES_MAX
    assert b"X-Name-1: v\r\n" in head([(b"X-Name-1", b"v")])
    assert b"spoofed" not in head([(b"X_Consumer_ID", b"spoofed")])


@pytest.mark.parametrize(
    ("host", "port", "protocol", "expected"),
    [
        ("svc", 80, "http", b"svc"),
        ("svc", 443, "https", b"svc"),
        ("svc", 443, "http", b"svc:443"),
        ("svc", 80, "https", b"svc:80"),
        ("svc", 8080, "http", b"svc:8080"),
        ("[::1]", 80, "http", b"[::1]"),
        ("bücher.example", 8443, "https", b"xn--bcher-kva.example:8443"),
    ],
)
def test_host_value_leaves_out_only_the_schemes_default_port(
    host: str, port: int, protocol: str, expected: bytes
) -> None:
    assert host_value(host, port, protocol) == expected


def test_the_table_of_judged_names_is_cleared_when_it_reaches_its_bound() -> None:
    for i in range(headers_module._FATES_MAX + 1):
        head([(b"X-Name-%d" % i, b"v")])
    assert len(headers_module._FATES) <= headers_module._FATES_MAX


def test_a_response_connection_naming_a_dashed_name_keeps_the_underscore_spelling() -> None:
    """Only requests read "_" as "-": X_Hop is another header than the X-Hop the upstream
    named, in both response paths."""
    raw = [(b"Connection", b"X-Hop"), (b"X-Hop", b"1"), (b"X_Hop", b"2")]
    out = response_head(200, b"OK", raw, body_length=0, request_id=b"r", keep_alive=True)
    assert b"X-Hop:" not in out and b"X_Hop: 2\r\n" in out
    headers = response_headers(raw, b"r")
    assert "X-Hop" not in headers and headers["X_Hop"] == "2"


def test_a_buffered_response_counts_a_connection_header_after_a_close() -> None:
    raw = [(b"Connection", b"X-Hop-Secret"), (b"Connection", b"close"), (b"X-Hop-Secret", b"1")]
    out = response_head(200, b"OK", raw, body_length=0, request_id=b"r", keep_alive=True)
    assert b"secret" not in out.lower()


def test_an_upstream_request_id_its_connection_names_is_replaced_by_ours() -> None:
    raw = [(b"X-Request-Id", b"up"), (b"Connection", b"X-Request-Id")]
    out = response_head(200, b"OK", raw, body_length=0, request_id=b"ours", keep_alive=True)
    assert b"X-Request-Id: ours\r\n" in out and b"up" not in out
    assert out.count(b"X-Request-Id") == 1
    assert response_headers(raw, b"ours").getall("X-Request-Id") == ["ours"]


def test_streamed_response_keeps_the_upstreams_via_and_headers_after_hop_by_hop_ones() -> None:
    raw = [
        (b"Keep-Alive", b"timeout=5"),
        (b"Via", b"1.0 edge"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Content-Type", b"text/plain"),
    ]
    headers = response_headers(raw, b"rid")
    assert list(headers.items()) == [
        ("Content-Type", "text/plain"),
        ("Via", "1.0 edge, 1.1 tokengate"),
        ("X-Request-Id", "rid"),
        ("Server", "tokengate"),
    ]


def test_streamed_response_header_values_pass_as_utf8_else_latin1() -> None:
    raw = [
        (b"Content-Disposition", "attachment; filename=é.txt".encode()),
        (b"X-Legacy", b"caf\xe9"),
    ]
    headers = response_headers(raw, b"rid")
    assert headers["Content-Disposition"] == "attachment; filename=é.txt"
    assert headers["X-Legacy"] == "café"


ADDED = ((b"Access-Control-Allow-Origin", b"https://app.example"), (b"Vary", b"Origin"))


def test_the_gateways_own_response_headers_come_after_the_upstreams() -> None:
    raw = [(b"Vary", b"Accept"), (b"Connection", b"Access-Control-Allow-Origin")]
    out = response_head(
        200, b"OK", raw, body_length=0, request_id=b"r", keep_alive=True, added=ADDED
    )
    assert b"Vary: Accept\r\nAccess-Control-Allow-Origin: https://app.example\r\n" in out
    assert b"Vary: Origin\r\n" in out
    headers = response_headers(raw, b"r", ADDED)
    assert headers.getall("Vary") == ["Accept", "Origin"]
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_an_upstream_request_id_stays_alone_when_its_connection_names_another_header() -> None:
    raw = [(b"X-Request-Id", b"up"), (b"Connection", b"X-Hop"), (b"X-Hop", b"1")]
    out = response_head(200, b"OK", raw, body_length=0, request_id=b"ours", keep_alive=True)
    assert b"X-Request-Id: up\r\n" in out and b"ours" not in out


@pytest.mark.parametrize("named", [b"Date", b"Server", b"Date, Server"])
def test_a_buffered_answer_keeps_a_date_and_a_server_when_the_upstream_names_its_own(
    named: bytes,
) -> None:
    """RFC 9110 §6.6.1: a proxy with a clock adds the Date an upstream's answer lacks, and one
    whose Connection named its own has lost it (§7.6.1); Server as the streamed path adds it."""
    raw = [
        (b"Date", b"Thu, 26 Nov 2026 18:00:00 GMT"),
        (b"Server", b"upstream/1.0"),
        (b"Connection", named),
    ]
    out = response_head(200, b"OK", raw, body_length=0, request_id=b"r", keep_alive=True)
    assert len(re.findall(rb"\r\nDate: ", out)) == 1
    assert (b"18:00:00" in out) == (b"Date" not in named)  # the upstream's, unless it named it
    assert len(re.findall(rb"\r\nServer: ", out)) == 1
    assert (b"\r\nServer: tokengate\r\n" in out) == (b"Server" in named)
    assert response_headers(raw, b"r").getall("Server") == (
        ["tokengate"] if b"Server" in named else ["upstream/1.0"]
    )


def test_a_close_header_never_passes_with_connection_close() -> None:
    """RFC 9110 §7.6.1: an intermediary removes the fields a connection option names, and
    "close" is one (why the field name Close is reserved), in both directions."""
    raw = [(b"Connection", b"close"), (b"Close", b"smuggled"), (b"Accept", b"*/*")]
    out = head(raw)
    assert b"smuggled" not in out
    assert b"Accept: */*\r\n" in out
    answer = response_head(200, b"OK", raw, body_length=0, request_id=b"r", keep_alive=True)
    assert b"smuggled" not in answer
    assert "Close" not in response_headers(raw, b"r")
