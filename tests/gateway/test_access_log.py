"""The access log: one line per request with every field, and never a token.

The gateway decides when it starts whether to write access lines (the `tokengate.access` logger
enabled for INFO), so each test raises the level before it starts its gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
from prometheus_client import CollectorRegistry

from tests.gateway.conftest import StartGateway, make_route, make_service, raw_request, serving
from tests.gateway.issuer import TestIssuer
from tests.gateway.test_metrics import labels, samples, scrape
from tokengate.gateway import access_log
from tokengate.gateway.app import GatewayServer
from tokengate.gateway.exchange import Exchange
from tokengate.gateway.oidc_config import OidcConfig
from tokengate.gateway.rawresponse import RawResponse
from tokengate.logs import TEXT_FORMAT, JsonFormatter

FIELDS = {
    "upstream",
    "time",
    "level",
    "logger",
    "pid",
    "request_id",
    "method",
    "path",
    "service",
    "route",
    "status",
    "latency_ms",
    "upstream_latency_ms",
    "auth",
    "client_ip",
    "bytes",
}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
BIG = 100 * 1024  # streamed, not buffered (over the forwarder's 64 KiB)


async def answer(request: web.Request) -> web.Response:
    if request.path.endswith("/slow"):
        await asyncio.sleep(2)
    if request.path.endswith("/big"):
        return web.Response(body=b"x" * BIG)
    return web.Response(text="hello")


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    async with serving(answer) as server:
        yield server


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, with the access logger at INFO before any gateway of the test starts."""
    with caplog.at_level(logging.INFO, logger="tokengate.access"):
        yield caplog


async def get(
    gw: GatewayServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    url = f"http://127.0.0.1:{gw.proxy_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, resp.headers["X-Request-Id"], await resp.read()


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tokengate.access"]


def as_json(record: logging.LogRecord) -> dict[str, object]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    document = json.loads(line)
    assert isinstance(document, dict)
    return document


async def test_every_request_is_one_line_with_every_field_and_never_a_token(
    access: pytest.LogCaptureFixture,
    upstream: TestServer,
    start_gateway: StartGateway,
    test_issuer: TestIssuer,
) -> None:
    service = make_service(upstream.port, name="orders-svc")
    oidc = OidcConfig.for_issuer(test_issuer.issuer)
    gw = await start_gateway(
        make_route(service, ("/public",), name="public"),
        make_route(service, ("/auth",), name="orders", oidc=oidc),
    )
    token = test_issuer.mint()
    sent = [
        await get(gw, "/public/x?debug=1"),
        await get(gw, f"/auth/x?access_token={token}&page=2"),  # the token in the query
        await get(gw, "/auth/x", {"Authorization": f"Bearer {token}", "Cookie": f"s={token}"}),
        await get(gw, "/auth/x"),
        await get(gw, "/nothing?access_token=abc"),
    ]
    records = access_records(access)
    lines = [as_json(record) for record in records]
    assert [line["status"] for line in lines] == [200, 200, 200, 401, 404]
    assert [line["auth"] for line in lines] == [None, "ok", "cached", "missing_token", None]
    assert [line["path"] for line in lines] == ["/public/x", *["/auth/x"] * 3, "/nothing"]
    assert [line["route"] for line in lines] == ["public", "orders", "orders", "orders", ""]
    assert [line["service"] for line in lines][-2:] == ["orders-svc", ""]
    assert [line["request_id"] for line in lines] == [request_id for _, request_id, _ in sent]
    for line, (_, _, body) in zip(lines, sent, strict=True):
        assert set(line) == FIELDS
        assert isinstance(line["time"], str) and ISO_UTC.fullmatch(line["time"])
        assert line["level"] == "INFO" and line["logger"] == "tokengate.access"
        assert line["method"] == "GET" and line["client_ip"] == "127.0.0.1"
        assert isinstance(line["latency_ms"], float) and line["latency_ms"] > 0
        assert line["bytes"] == len(body)
        forwarded = line["status"] == 200
        assert (line["upstream_latency_ms"] is not None) == forwarded
        assert line["upstream"] == (f"127.0.0.1:{upstream.port}" if forwarded else None)
    text = logging.Formatter(TEXT_FORMAT)
    for record in records:
        for rendered in (JsonFormatter().format(record), text.format(record)):
            assert token not in rendered
            assert "access_token" not in rendered and "?" not in rendered


async def test_text_lines_carry_the_same_fields(
    access: pytest.LogCaptureFixture, upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port, name="s"), name="r"))
    _, request_id, _ = await get(gw, "/hello")
    (record,) = access_records(access)
    assert re.fullmatch(
        r'127\.0\.0\.1 "GET /hello" 200 latency_ms=[0-9.]+ upstream_latency_ms=[0-9.]+ '
        rf"upstream=127\.0\.0\.1:{upstream.port} service=s route=r auth=- bytes=5 "
        rf"id={request_id}",
        record.getMessage(),
    ), record.getMessage()
    assert record.fields["auth"] is None  # JSON keeps its null


async def test_text_lines_write_a_dash_for_what_is_unknown(
    access: pytest.LogCaptureFixture, start_gateway: StartGateway
) -> None:
    """nginx's "-", not Python's None nor nothing, for a request that went nowhere (a 404)."""
    gw = await start_gateway(make_route(None, ("/only",)))
    await get(gw, "/elsewhere")
    (record,) = access_records(access)
    line = record.getMessage()
    assert "None" not in line, line
    assert " 404 " in line and " upstream_latency_ms=- upstream=- " in line, line
    assert " service=- route=- auth=- " in line, line  # an empty field never reads "key= "
    assert (record.fields["service"], record.fields["auth"]) == ("", None)  # JSON as before
    # The record's arguments are a mapping of the text fields, for a format of one's own.
    assert dict(record.args)["service"] == "-" and dict(record.args)["status"] == 404  # type: ignore[arg-type]


def test_a_path_that_could_break_a_text_line_is_escaped(
    access: pytest.LogCaptureFixture,
) -> None:
    # aiohttp's parser refuses such bytes today; the log does not rely on it.
    request = make_mocked_request("GET", "/caf\xe9\x1b[2J\nx?access_token=t")
    response = RawResponse(b"", status=404, keep_alive=True, body_size=0)
    access_log.write(request, response, Exchange(), b"id-1", 0.001)
    (record,) = access_records(access)
    line = record.getMessage()
    assert line.isascii() and line.isprintable(), line
    assert "/caf\\xe9\\x1b[2J\\nx" in line and "access_token" not in line


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ('/a"b', "/a\\x22b"),  # a quote would end the quoted request early
        ("/a\\x0ab", "/a\\x5Cx0ab"),  # else it reads as an escaped line feed
    ],
)
async def test_a_quote_or_backslash_in_the_path_is_escaped_as_nginx_escapes_it(
    access: pytest.LogCaptureFixture,
    upstream: TestServer,
    start_gateway: StartGateway,
    target: str,
    logged: str,
) -> None:
    """nginx's access log writes a request line's '"' and '\\' as \\x22 and \\x5C: the quoted
    request has one reading, and an escape in the line is always one of the log's own."""
    gw = await start_gateway(make_route(make_service(upstream.port), name="r"))
    await raw_request(
        gw.proxy_port, b"GET %b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % target.encode()
    )
    (record,) = access_records(access)
    assert f'"GET {logged}" ' in record.getMessage(), record.getMessage()  # a "\\" is a 400
    assert record.fields["path"] == logged


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/a\x1b[2Jb", "/a\\x1b[2Jb"),  # ASCII, but a terminal's escape sequence
        ("/caf\xe9", "/caf\\xe9"),  # printable, but not ASCII
        ("/a\u2028b", "/a\\u2028b"),  # a line separator to some readers
    ],
)
def test_a_path_with_a_control_or_non_ascii_character_is_escaped(
    access: pytest.LogCaptureFixture, path: str, logged: str
) -> None:
    request = make_mocked_request("GET", path)
    response = RawResponse(b"", status=404, keep_alive=True, body_size=0)
    access_log.write(request, response, Exchange(), b"id-1", 0.001)
    (record,) = access_records(access)
    assert f'"GET {logged}" 404 ' in record.getMessage(), record.getMessage()
    assert record.fields["path"] == logged


async def test_a_request_refused_before_its_path_was_read_logs_no_query(
    access: pytest.LogCaptureFixture, upstream: TestServer, start_gateway: StartGateway
) -> None:
    """A TRACE is refused (405) before the path is split from its query: the log still cuts the
    target at its first "?", however many follow."""
    gw = await start_gateway(make_route(make_service(upstream.port), name="r"))
    answer = await raw_request(
        gw.proxy_port,
        b"TRACE /p?access_token=t?x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 405"), answer[:60]
    (record,) = access_records(access)
    assert as_json(record)["path"] == "/p"
    assert "access_token" not in record.getMessage()


def test_latencies_are_milliseconds_to_the_microsecond(
    access: pytest.LogCaptureFixture,
) -> None:
    exchange = Exchange()
    exchange.upstream_seconds = 0.00065432
    response = RawResponse(b"", status=200, keep_alive=True, body_size=0)
    access_log.write(make_mocked_request("GET", "/x"), response, exchange, b"id-1", 0.00123456)
    (record,) = access_records(access)
    line = as_json(record)
    assert (line["latency_ms"], line["upstream_latency_ms"]) == (1.235, 0.654)
    assert " latency_ms=1.235 upstream_latency_ms=0.654 " in record.getMessage()


async def test_a_streamed_body_is_counted(
    access: pytest.LogCaptureFixture, upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port), name="r"))
    status, _, body = await get(gw, "/big")
    assert status == 200 and len(body) == BIG
    (record,) = access_records(access)
    line = as_json(record)
    assert line["bytes"] == BIG and line["upstream_latency_ms"] is not None


async def test_no_access_log_writes_nothing(
    access: pytest.LogCaptureFixture, upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port)), access_log=False)
    assert (await get(gw, "/x"))[0] == 200
    assert access_records(access) == []


async def test_below_info_there_are_no_access_lines(
    caplog: pytest.LogCaptureFixture, upstream: TestServer, start_gateway: StartGateway
) -> None:
    with caplog.at_level(logging.WARNING, logger="tokengate.access"):
        gw = await start_gateway(make_route(make_service(upstream.port)))
        assert (await get(gw, "/x"))[0] == 200
    assert access_records(caplog) == []


def test_json_lines_for_ordinary_records() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("tokengate.test").makeRecord(
            "tokengate.test",
            logging.ERROR,
            __file__,
            1,
            "failed for %r\nnext",
            ("\x1b[31mred",),
            exc_info=sys.exc_info(),
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line
    document = json.loads(line)
    assert document["level"] == "ERROR" and document["logger"] == "tokengate.test"
    assert document["message"] == "failed for '\\x1b[31mred'\nnext"
    assert "ValueError: boom" in document["exception"]
    assert ISO_UTC.fullmatch(document["time"])


async def test_an_absolute_form_target_is_logged_as_its_path_only(
    access: pytest.LogCaptureFixture, upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(make_route(make_service(upstream.port), name="r"))
    answer = await raw_request(
        gw.proxy_port,
        b"GET http://alice:s3cr3t@x/hello?access_token=t HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200")
    (record,) = access_records(access)
    assert as_json(record)["path"] == "/hello"
    assert "s3cr3t" not in record.getMessage() and "access_token" not in record.getMessage()


async def test_a_request_its_client_abandons_is_counted_and_logged_as_499(
    access: pytest.LogCaptureFixture, upstream: TestServer, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(
        make_route(make_service(upstream.port, name="svc"), name="r"), registry=CollectorRegistry()
    )
    _, writer = await asyncio.open_connection("127.0.0.1", gw.proxy_port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.3)  # the gateway waits on the upstream...
    writer.close()  # ...and the client leaves
    for _ in range(100):  # up to 5 s on a loaded machine; the upstream answers after 2 s
        if access_records(access):
            break
        await asyncio.sleep(0.05)
    (record,) = access_records(access)
    line = as_json(record)
    assert line["status"] == 499 and line["path"] == "/slow" and line["route"] == "r"
    _, text = await scrape(gw)
    assert samples(text, "kong_http_requests_total") == {
        labels(service="svc", route="r", code="499", source="error"): 1
    }


async def test_a_request_that_cannot_be_parsed_is_counted_and_logged_as_400(
    access: pytest.LogCaptureFixture, upstream: TestServer, start_gateway: StartGateway
) -> None:
    """As nginx logs the 400s it answers itself: one line with "-" for what could not be read
    (nothing of the request is trusted, so not even its path), and a count under no route."""
    gw = await start_gateway(
        make_route(make_service(upstream.port, name="svc"), name="r"), registry=CollectorRegistry()
    )
    answer = await raw_request(
        gw.proxy_port, b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header: x?access_token=t\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:60]
    (record,) = access_records(access)
    line = as_json(record)
    assert (line["status"], line["method"], line["path"]) == (400, "-", "-")
    assert (line["service"], line["route"], line["auth"]) == ("", "", None)
    assert line["client_ip"] == "127.0.0.1" and line["upstream_latency_ms"] is None
    assert line["latency_ms"] is None
    assert line["bytes"] == len(answer.partition(b"\r\n\r\n")[2])  # Kong's body, as sent
    assert "access_token" not in record.getMessage()
    _, text = await scrape(gw)
    assert samples(text, "kong_http_requests_total") == {
        labels(service="", route="", code="400", source="exit"): 1
    }
