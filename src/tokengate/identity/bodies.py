"""Request bodies of the identity server: read whole, paced, or refused at once.

    try:
        raw = await read_body(request, timeout=BODY_TIMEOUT)
    except BodyTimeout:
        return await answer_and_close(request, a_408)
    except BrokenBody:
        return await answer_and_close(request, a_400)

A client that stalls mid-body would hold its connection for ever (the head has its deadline,
runner.HEAD_TIMEOUT, the body had none), and once the connection cap is reached every new client
is refused behind it. BODY_TIMEOUT is nginx's client_body_timeout, between two reads, with the
gateway's minimum rate (proxy.BodyPace), for a body of at most 1 MiB (aiohttp's
client_max_size). A body whose chunked framing or Content-Encoding breaks (a malformed chunk, a
"gzip" that is not) is the client's error (aiohttp's RequestPayloadError), a 400, not a 500.

Either way what is left of the body cannot be told from a next request: the answer closes the
connection, and nothing more is read (aiohttp's lingering close would wait for bytes that do not
come, or raise the body's error again and log a traceback).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from tokengate.gateway.proxy import BodyPace, ClientBodyTimeout
from tokengate.gateway.rawresponse import SERVER

BODY_TIMEOUT: Final = 60.0  # seconds, nginx's client_body_timeout default


class BodyTimeout(Exception):
    """The body did not arrive in time."""


class BrokenBody(Exception):
    """The body's framing or Content-Encoding broke."""


async def read_body(request: web.BaseRequest, timeout: float) -> bytes:
    """The whole body, its reads paced as the gateway paces a client's body (BodyPace: at most
    `timeout` between two reads, and a minimum rate); ConnectionError if the client leaves,
    aiohttp's 413 past the request's client_max_size."""
    content = request.content
    try:
        if content.is_eof():  # all of it came with the head (a token form): no timer
            return await request.read()
        pace, body, limit = BodyPace(timeout), bytearray(), request.client_max_size
        while chunk := await pace.read(content):
            body += chunk
            if len(body) > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
        return bytes(body)
    except ClientBodyTimeout:
        raise BodyTimeout(f"the request body stalled for {timeout:g} s") from None
    except web.RequestPayloadError:
        raise BrokenBody("the request body could not be read") from None


async def answer_and_close(
    request: web.BaseRequest, response: web.StreamResponse
) -> web.StreamResponse:
    """Send `response`, then close the connection without reading anything more from it."""
    response.force_close()
    response.headers["Server"] = SERVER  # (the token endpoint's shortcut runs no app signal)
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the answer is flushed before the transport closes
    return response
