"""The answers the gateway writes itself, with Kong's bodies (kong/error_handlers.lua wording).

return responses.no_route()        # 404 {"message":"no Route matched with those values"}
"""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web

from tokengate.gateway.rawresponse import SERVER, SERVER_LINE, RawResponse, date_line


def kong_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        charset="utf-8",
        headers={"Server": SERVER, **(headers or {})},
    )


def bad_request() -> web.Response:
    return kong_error(400, "Bad request")


def no_route() -> web.Response:
    return kong_error(404, "no Route matched with those values")


def request_timeout() -> web.Response:
    return kong_error(408, "Request timeout", {"Connection": "close"})


def payload_too_large() -> web.Response:
    # The unread body cannot be skipped safely on this connection: close it.
    return kong_error(413, "Payload too large", {"Connection": "close"})


def method_not_allowed() -> web.Response:
    # What follows a CONNECT or TRACE head is tunnel data or a body, not a request: close.
    return kong_error(405, "Method not allowed", {"Connection": "close"})


def expectation_failed() -> web.Response:
    return kong_error(417, "Expectation failed")


def no_service() -> web.Response:
    return kong_error(503, "no Service found with those values")


def no_peer() -> web.Response:
    """A balanced service whose upstream has no target to pick (Kong's balancer)."""
    return kong_error(503, "failure to get a peer from the ring-balancer")


def bad_gateway() -> web.Response:
    return kong_error(502, "An invalid response was received from the upstream server")


def service_unavailable() -> web.Response:
    return kong_error(503, "The upstream server is currently unavailable")


def name_resolution_failed() -> web.Response:
    """A service's host name has no address (Kong's balancer; a balanced upstream leaves such
    a target out, and answers no_peer when none is left)."""
    return kong_error(503, "name resolution failed")


def gateway_timeout() -> web.Response:
    return kong_error(504, "The upstream server is timing out")


def not_implemented() -> web.Response:
    return kong_error(501, "Not Implemented")


def use_https() -> web.Response:
    """Kong's 426 on a route whose protocols leave out http, to a request not over HTTPS."""
    upgrade = {"Connection": "Upgrade", "Upgrade": "TLS/1.2, HTTP/1.1"}
    return kong_error(426, "Please use HTTPS protocol", upgrade)


def redirect(status: int, location: str) -> web.Response:
    """A redirect without a body (Kong's https_redirect_status_code answers)."""
    return web.Response(status=status, headers={"Location": location, "Server": SERVER})


def unsupported_version(version: tuple[int, int]) -> RawResponse:
    """The answer to a request in HTTP/2.0 or 0.9 over an HTTP/1 connection: in HTTP/1.1 (aiohttp
    would write the request's version), nginx's 505 for a later major version; a request line
    without one (0.9) that still had headers is no request of any version."""
    if version[0] > 1:
        return closing_error(505, "HTTP version not supported")
    return closing_error(400, "Bad request")


def closing_error(status: int, message: str) -> RawResponse:
    """Kong's error as HTTP/1.1 bytes, then a close: for a request the gateway could not parse
    (aiohttp's own error path would answer in HTTP/1.0, with its Server token)."""
    body = json.dumps({"message": message}).encode()
    head = b"HTTP/1.1 %d %b\r\nContent-Type: application/json; charset=utf-8\r\n" % (
        status,
        HTTPStatus(status).phrase.encode("ascii"),
    )
    head += b"Content-Length: %d\r\n%b%bConnection: close\r\n\r\n" % (
        len(body),
        date_line(),
        SERVER_LINE,
    )
    return RawResponse(head + body, status=status, keep_alive=False, body_size=len(body))
