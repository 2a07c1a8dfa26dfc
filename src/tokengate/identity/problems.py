"""Konnect-style `application/problem+json` errors for the management API.

    raise Problem.not_found("Auth server [d32d905a-...] not found")
    raise Problem.bad_request([invalid("name", "required", "is a required field")])
    return problem_response(exc)       # the one place a Problem becomes an HTTP response

Bodies follow the spec's BaseError (`status`, `title`, `type`, `instance`, `detail`) and, for 400,
BadRequestError's `invalid_parameters`: one entry per bad field, shaped as one of the
InvalidParameter* schemas (`field`, `rule`, `reason`, `source`, and `minimum` / `maximum` /
`choices` where the rule needs them).

    Problem (an Exception)
    ├── 400 Bad Request   invalid_parameters (malformed JSON, bad fields, bad query)
    ├── 401 Unauthorized  missing or wrong admin token
    ├── 403 Forbidden     a third active client secret
    ├── 404 Not Found     unknown auth server / child, unknown route
    ├── 405 Method Not Allowed
    ├── 408 Request Timeout  the body did not arrive in time (bodies.BODY_TIMEOUT)
    ├── 409 Conflict      a unique name taken (the store's Conflict)
    └── 415 Unsupported Media Type  a body labelled as another structure (a form, XML)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web

CONTENT_TYPE: Final = "application/problem+json"

InvalidParameter = dict[str, Any]


def invalid(field: str, rule: str | None, reason: str, **extra: Any) -> InvalidParameter:
    """One `invalid_parameters` entry; `extra` carries `minimum`, `maximum`, `choices`, `source`."""
    entry: InvalidParameter = {"field": field}
    if rule is not None:
        entry["rule"] = rule
    entry["reason"] = reason
    entry.update(extra)
    return entry


class Problem(Exception):
    """An error the management API answers with, as RFC 9457 problem details."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        invalid_parameters: Sequence[InvalidParameter] = (),
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.invalid_parameters = list(invalid_parameters)
        self.headers = headers or {}
        self.close = close  # the answer ends the connection (a body that broke or stalled)

    @classmethod
    def bad_request(
        cls, invalid_parameters: Iterable[InvalidParameter], *, close: bool = False
    ) -> Problem:
        params = list(invalid_parameters)
        fields = ", ".join(f"[{p['field']}]" for p in params)
        return cls(400, f"Invalid parameters: {fields}", invalid_parameters=params, close=close)

    @classmethod
    def not_found(cls, detail: str = "Not found") -> Problem:
        return cls(404, detail)

    @classmethod
    def conflict(cls, detail: str = "Conflict") -> Problem:
        return cls(409, detail)

    @classmethod
    def forbidden(cls, detail: str) -> Problem:
        return cls(403, detail)

    @classmethod
    def unsupported_media_type(cls, content_type: str) -> Problem:
        # RFC 9110 §15.5.16: say which media type is accepted.
        return cls(
            415,
            f"The body must be application/json, not {content_type}",
            headers={"Accept": "application/json"},
        )

    @classmethod
    def unauthorized(cls) -> Problem:
        # RFC 9110 §15.5.2: a 401 carries a challenge.
        return cls(
            401,
            "A valid admin token is required: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )


def reject(invalid_parameters: Sequence[InvalidParameter]) -> None:
    """Raise a 400 naming every bad field at once, if there is any."""
    if invalid_parameters:
        raise Problem.bad_request(invalid_parameters)


def new_instance() -> str:
    """A correlation id in Konnect's `kong:trace:<id>` form."""
    return f"kong:trace:{secrets.randbelow(10**19)}"


def problem_body(problem: Problem, instance: str) -> dict[str, Any]:
    status = HTTPStatus(problem.status)
    body: dict[str, Any] = {
        "status": problem.status,
        "title": status.phrase,
        "type": f"https://httpstatuses.com/{problem.status}",
        "instance": instance,
        "detail": problem.detail,
    }
    if problem.status == 400:
        body["invalid_parameters"] = problem.invalid_parameters
    return body


def problem_response(problem: Problem, instance: str | None = None) -> web.Response:
    body = problem_body(problem, instance or new_instance())
    return web.Response(
        status=problem.status,
        text=json.dumps(body),
        content_type=CONTENT_TYPE,
        headers=problem.headers,
    )
