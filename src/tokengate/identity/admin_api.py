"""The Konnect `/v1/auth-servers/...` management API, as an aiohttp sub-application.

    store = Store.open(None)
    admin = create_admin_app(store, admin_token="s3cret", public_url="http://127.0.0.1:9000")
    app.add_subapp("/v1", admin)
    # curl -H 'Authorization: Bearer s3cret' --json '{"name": "Dev", "audience": "http://x"}' \\
    #      http://127.0.0.1:9000/v1/auth-servers

Every operation of Konnect's published Kong Identity OpenAPI spec, one handler each: paths,
status codes, field names, defaults and constraints come from there (the rules live in
`validation`). Errors are `application/problem+json` (see `problems`); store errors map to them
in one middleware. The store is synchronous SQLite and fast, so handlers call it directly.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from aiohttp import web

from tokengate.identity import validation as v
from tokengate.identity.bodies import (
    BODY_TIMEOUT,
    BodyTimeout,
    BrokenBody,
    answer_and_close,
    read_body,
)
from tokengate.identity.models import AuthServer, Claim, Client, ClientSecret, IssuedToken, Scope
from tokengate.identity.problems import Problem, invalid, new_instance, problem_response, reject
from tokengate.identity.store import Conflict, MissingReference, NotFound, Store, TooManySecrets
from tokengate.identity.templates import TemplateError, render_claim, template_context
from tokengate.jsonlimits import holds_lone_surrogate, too_deep_for_a_client

log = logging.getLogger("tokengate.identity.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AdminSettings:
    admin_token: str
    public_url: str  # no trailing slash
    body_timeout: float = BODY_TIMEOUT


STORE: Final = web.AppKey("identity_store", Store)
SETTINGS: Final = web.AppKey("identity_admin_settings", AdminSettings)


def create_admin_app(
    store: Store,
    *,
    admin_token: str,
    public_url: str,
    routes: web.RouteTableDef | None = None,
    body_timeout: float = BODY_TIMEOUT,
) -> web.Application:
    """The management API; mount it with `app.add_subapp("/v1", ...)`. `routes` (the API's by
    default) lets tokengate's own admin endpoints share its token check and problem answers."""
    if not admin_token:
        raise ValueError("the admin token must not be empty")
    app = web.Application(middlewares=[problems_middleware, admin_auth_middleware])
    app[STORE] = store
    app[SETTINGS] = AdminSettings(admin_token, public_url.rstrip("/"), body_timeout)
    app.add_routes(ROUTES if routes is None else routes)
    return app


# ---- middlewares --------------------------------------------------------------------------------


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place an error becomes a response: problem+json, with a `kong:trace:` instance."""
    try:
        return await handler(request)
    except Problem as problem:
        response = problem_response(problem)
        # a body that broke or stalled: the rest of it cannot be told from a next request
        return await answer_and_close(request, response) if problem.close else response
    except NotFound as exc:
        return problem_response(Problem.not_found(sentence(exc, "Not found")))
    except Conflict as exc:
        return problem_response(Problem.conflict(sentence(exc, "Conflict")))
    except TooManySecrets:
        detail = "A client may have at most 2 enabled secrets: disable or delete one first"
        return problem_response(Problem.forbidden(detail))
    except web.HTTPException as exc:  # the router's 404 and 405
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(Problem(exc.status, exc.reason, headers=allow))
    except Exception:
        instance = new_instance()
        log.exception("admin API failure (%s) on %s %s", instance, request.method, request.path)
        return problem_response(Problem(500, "Internal error"), instance)


def sentence(exc: Exception, default: str) -> str:
    """The store's message in "Sentence case", as BaseError's `detail` wants it."""
    text = str(exc) or default
    return text[:1].upper() + text[1:]


@web.middleware
async def admin_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request needs `Authorization: Bearer <admin token>`, even for unknown paths."""
    expected = request.app[SETTINGS].admin_token.encode()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    given = token.strip().encode(
        "utf-8", "surrogatepass"
    )  # any header bytes: a mismatch, not a 500
    # Constant-time compare: response timing must not reveal how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
        raise Problem.unauthorized()
    return await handler(request)


# ---- request helpers ----------------------------------------------------------------------------


async def read_json(request: web.Request) -> Any:
    """The JSON body. Every operation of the spec that takes one requires it (an empty `{}`
    is a body), as application/json: a body labelled as something else is a 415 (curl's `-d`
    without `-H 'Content-Type: application/json'` sends a form); one without a label, or with
    a label that claims no structure (text/plain, application/octet-stream: what fetch() and
    HTTP libraries put on a string or bytes), is read as JSON."""
    label = request.headers.get("Content-Type", "").strip()
    if label and not _may_be_json(request.content_type):
        # quoted as ASCII: header bytes that are not UTF-8 must not become lone surrogates
        raise Problem.unsupported_media_type(
            label[:100].encode("ascii", "backslashreplace").decode()
        )
    try:
        raw = await read_body(request, request.app[SETTINGS].body_timeout)
    except ConnectionError:  # the client left mid-body: nobody will read the answer
        reason = "the connection closed before the whole body arrived"
        raise Problem.bad_request([invalid("body", "invalid", reason, source="body")]) from None
    except BrokenBody:  # a malformed chunk, a "gzip" that is not: the client's error
        reason = "could not be read (its chunked framing or Content-Encoding is broken)"
        bad = [invalid("body", "invalid", reason, source="body")]
        raise Problem.bad_request(bad, close=True) from None
    except BodyTimeout as exc:
        raise Problem(408, sentence(exc, "Request Timeout"), close=True) from None
    if not raw.strip():
        reason = "a JSON body is required (send {} for none of its fields)"
        raise Problem.bad_request([invalid("body", "required", reason, source="body")])
    too_deep = "must be valid JSON (nested too deeply)"
    try:
        document = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        reason = f"must be valid JSON ({exc})"
        raise Problem.bad_request([invalid("body", "invalid", reason, source="body")]) from None
    except RecursionError:
        raise Problem.bad_request([invalid("body", "invalid", too_deep, source="body")]) from None
    # Past the parser's own limit, which depends on the Python (see jsonlimits): ours.
    if too_deep_for_a_client(raw, document):
        raise Problem.bad_request([invalid("body", "invalid", too_deep, source="body")])
    if holds_lone_surrogate(document):  # "\ud800" escapes: not text, nor storable
        reason = "must be valid JSON (a string holds an unpaired surrogate escape)"
        raise Problem.bad_request([invalid("body", "invalid", reason, source="body")])
    return document


def _may_be_json(media_type: str) -> bool:
    """application/json, a +json type (RFC 6839: application/merge-patch+json, ...), or a type
    that says nothing of what the bytes are."""
    return media_type.endswith(("/json", "+json")) or media_type in _UNSTRUCTURED


_UNSTRUCTURED: Final = frozenset({"text/plain", "application/octet-stream"})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def server_id(request: web.Request) -> str:
    return v.path_uuid("authServerId", request.match_info["authServerId"])


def client_id(request: web.Request) -> str:
    return v.path_client_id(request.match_info["clientId"])


def store_of(request: web.Request) -> Store:
    return request.app[STORE]


def check_scope_refs(
    store: Store, auth_server_id: str, values: Mapping[str, Any], field: str
) -> list[dict[str, Any]]:
    """Scope ids in `field` must be scopes of this auth server (InvalidRules missing_reference)."""
    wanted = values.get(field)
    if not wanted:
        return []
    known = {scope.id for scope in store.list_scopes(auth_server_id)}
    missing = [scope_id for scope_id in wanted if scope_id not in known]
    if not missing:
        return []
    reason = f"unknown scope ids for this auth server: [{', '.join(missing)}]"
    return [invalid(field, "missing_reference", reason, source="body")]


@contextlib.contextmanager
def scope_refs(field: str) -> Iterator[None]:
    """The store's own reference check (the API checked first): a 400 naming `field`."""
    try:
        yield
    except MissingReference as exc:
        reason = str(exc)
        raise Problem.bad_request(
            [invalid(field, "missing_reference", reason, source="body")]
        ) from None


def listed(
    request: web.Request, listing: v.Listing, items: Iterable[T], render: Callable[[T], JSON]
) -> web.Response:
    query = v.parse_list_query(request.query, listing)
    page, total = query.apply(items)
    return web.json_response(
        {
            "data": [render(item) for item in page],
            "meta": {"page": {"number": query.number, "size": query.size, "total": total}},
        }
    )


def created(body: JSON) -> web.Response:
    return web.json_response(body, status=201)


NO_CONTENT: Final = 204


# ---- renderers (the spec's response schemas) ----------------------------------------------------


def timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with a `Z`, as Konnect writes it: 2023-03-20T09:29:14.520Z."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def auth_server_json(server: AuthServer, public_url: str) -> JSON:
    issuer = f"{public_url}/{server.issuer_id}/auth"
    return {
        "id": server.id,
        "name": server.name,
        "description": server.description,
        "audience": server.audience,
        "signing_algorithm": server.signing_algorithm,
        "issuer": issuer,
        "metadata_uri": f"{issuer}/.well-known/openid-configuration",
        "jwks_uri": f"{issuer}/.well-known/jwks",
        "labels": dict(server.labels),
        "trusted_origins": list(server.trusted_origins),
        "created_at": timestamp(server.created_at),
        "updated_at": timestamp(server.updated_at),
    }


def scope_json(scope: Scope) -> JSON:
    return {
        "id": scope.id,
        "name": scope.name,
        "description": scope.description,
        "default": scope.default,
        "include_in_metadata": scope.include_in_metadata,
        "enabled": scope.enabled,
        "created_at": timestamp(scope.created_at),
        "updated_at": timestamp(scope.updated_at),
    }


def claim_json(claim: Claim) -> JSON:
    return {
        "id": claim.id,
        "name": claim.name,
        "value": claim.value,
        "include_in_token": claim.include_in_token,
        "include_in_all_scopes": claim.include_in_all_scopes,
        "include_in_scopes": list(claim.include_in_scopes),
        "enabled": claim.enabled,
        "created_at": timestamp(claim.created_at),
        "updated_at": timestamp(claim.updated_at),
    }


def client_json(client: Client) -> JSON:
    return {
        "id": client.id,
        "name": client.name,
        "grant_types": list(client.grant_types),
        "redirect_uris": list(client.redirect_uris),
        "login_uri": client.login_uri,
        "access_token_duration": client.access_token_duration,
        "id_token_duration": client.id_token_duration,
        "allow_all_scopes": client.allow_all_scopes,
        "allow_scopes": list(client.allow_scopes),
        "labels": dict(client.labels),
        "response_types": list(client.response_types),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "created_at": timestamp(client.created_at),
        "updated_at": timestamp(client.updated_at),
    }


def secret_json(secret: ClientSecret, clear: str | None = None) -> JSON:
    """ClientSecretItem: the secret value only in the answer that created it."""
    body: JSON = {"id": secret.id, "enabled": secret.enabled}
    if clear is not None:
        body["secret"] = clear
    body["created_at"] = timestamp(secret.created_at)
    body["updated_at"] = timestamp(secret.updated_at)
    return body


def token_json(token: IssuedToken) -> JSON:
    return {
        "id": token.id,
        "granted_scope_names": list(token.granted_scope_names),
        "created_at": timestamp(token.created_at),
        "expires_at": timestamp(token.expires_at),
    }


# ---- auth servers -------------------------------------------------------------------------------

ROUTES: Final = web.RouteTableDef()  # filled by the decorators below; static, never mutated later
AS = "/auth-servers/{authServerId}"
CL = AS + "/clients/{clientId}"


def _render_server(request: web.Request) -> Callable[[AuthServer], JSON]:
    public_url = request.app[SETTINGS].public_url
    return lambda server: auth_server_json(server, public_url)


@ROUTES.get("/auth-servers")
async def list_auth_servers(request: web.Request) -> web.Response:
    items = store_of(request).list_auth_servers()
    return listed(request, v.AUTH_SERVERS_LISTING, items, _render_server(request))


@ROUTES.post("/auth-servers")
async def create_auth_server(request: web.Request) -> web.Response:
    values, bad = v.parse_body(
        await read_json(request), v.AUTH_SERVER_CREATE, required=v.AUTH_SERVER_CREATE_REQUIRED
    )
    reject(bad)
    server = store_of(request).create_auth_server(**values)
    return created(_render_server(request)(server))


@ROUTES.get(AS)
async def get_auth_server(request: web.Request) -> web.Response:
    server = store_of(request).get_auth_server(server_id(request))
    return web.json_response(_render_server(request)(server))


@ROUTES.patch(AS)
async def update_auth_server(request: web.Request) -> web.Response:
    store, asid = store_of(request), server_id(request)
    store.get_auth_server(asid)  # a 404 before any 400 of the body
    body = await read_json(request)
    # Read now that the body is in: a labels change made meanwhile is merged into, not undone.
    current = store.get_auth_server(asid)
    values, bad = v.parse_body(body, v.AUTH_SERVER_UPDATE)
    reject(bad + v.apply_labels_update(values, current.labels))
    server = store.update_auth_server(asid, **values) if values else current
    return web.json_response(_render_server(request)(server))


@ROUTES.delete(AS)
async def delete_auth_server(request: web.Request) -> web.Response:
    store, asid = store_of(request), server_id(request)
    forces = request.query.getall("force", ["false"])
    if len(forces) > 1:  # force=true&force=false: refused, as a list refuses its parameters twice
        reject([invalid("force", "invalid", "must be given once", source="query")])
    force = forces[0]
    if force not in ("true", "false"):
        reason = "must be one of [true, false]"
        choices = ["true", "false"]
        reject([invalid("force", "enum", reason, choices=choices, source="query")])
    store.get_auth_server(asid)
    # force=false (the default) only deletes an auth server with no clients, scopes or claims.
    if force == "false" and (
        store.list_clients(asid) or store.list_scopes(asid) or store.list_claims(asid)
    ):
        reason = (
            "the auth server still has clients, scopes or claims: pass force=true to delete them"
        )
        reject([invalid("force", "invalid", reason, source="query")])
    store.delete_auth_server(asid)
    return web.Response(status=NO_CONTENT)


# ---- scopes -------------------------------------------------------------------------------------


@ROUTES.get(AS + "/scopes")
async def list_scopes(request: web.Request) -> web.Response:
    items = store_of(request).list_scopes(server_id(request))
    return listed(request, v.SCOPES_LISTING, items, scope_json)


@ROUTES.post(AS + "/scopes")
async def create_scope(request: web.Request) -> web.Response:
    store, asid = store_of(request), server_id(request)
    store.get_auth_server(asid)
    body = await read_json(request)
    values, bad = v.parse_body(body, v.SCOPE, required=v.SCOPE_CREATE_REQUIRED)
    reject(bad)
    return created(scope_json(store.create_scope(asid, **values)))


@ROUTES.get(AS + "/scopes/{scopeId}")
async def get_scope(request: web.Request) -> web.Response:
    scope_id = v.path_uuid("scopeId", request.match_info["scopeId"])
    return web.json_response(scope_json(store_of(request).get_scope(server_id(request), scope_id)))


@ROUTES.patch(AS + "/scopes/{scopeId}")
async def update_scope(request: web.Request) -> web.Response:
    store, asid = store_of(request), server_id(request)
    scope_id = v.path_uuid("scopeId", request.match_info["scopeId"])
    current = store.get_scope(asid, scope_id)
    values, bad = v.parse_body(await read_json(request), v.SCOPE)
    reject(bad)
    scope = store.update_scope(asid, scope_id, **values) if values else current
    return web.json_response(scope_json(scope))


@ROUTES.delete(AS + "/scopes/{scopeId}")
async def delete_scope(request: web.Request) -> web.Response:
    scope_id = v.path_uuid("scopeId", request.match_info["scopeId"])
    store_of(request).delete_scope(server_id(request), scope_id)
    return web.Response(status=NO_CONTENT)


# ---- claims -------------------------------------------------------------------------------------


@ROUTES.get(AS + "/claims")
async def list_claims(request: web.Request) -> web.Response:
    items = store_of(request).list_claims(server_id(request))
    return listed(request, v.CLAIMS_LISTING, items, claim_json)


@ROUTES.post(AS + "/claims")
async def create_claim(request: web.Request) -> web.Response:
    store, asid = store_of(request), server_id(request)
    store.get_auth_server(asid)
    body = await read_json(request)
    values, bad = v.parse_body(body, v.CLAIM, required=v.CLAIM_CREATE_REQUIRED)
    reject(bad + check_scope_refs(store, asid, values, "include_in_scopes"))
    with scope_refs("include_in_scopes"):
        claim = store.create_claim(asid, **values)
    return created(claim_json(claim))


@ROUTES.get(AS + "/claims/{claimId}")
async def get_claim(request: web.Request) -> web.Response:
    claim_id = v.path_uuid("claimId", request.match_info["claimId"])
    return web.json_response(claim_json(store_of(request).get_claim(server_id(request), claim_id)))


@ROUTES.patch(AS + "/claims/{claimId}")
async def update_claim(request: web.Request) -> web.Response:
    store, asid = store_of(request), server_id(request)
    claim_id = v.path_uuid("claimId", request.match_info["claimId"])
    current = store.get_claim(asid, claim_id)
    values, bad = v.parse_body(await read_json(request), v.CLAIM)
    reject(bad + check_scope_refs(store, asid, values, "include_in_scopes"))
    with scope_refs("include_in_scopes"):
        claim = store.update_claim(asid, claim_id, **values) if values else current
    return web.json_response(claim_json(claim))


@ROUTES.delete(AS + "/claims/{claimId}")
async def delete_claim(request: web.Request) -> web.Response:
    claim_id = v.path_uuid("claimId", request.match_info["claimId"])
    store_of(request).delete_claim(server_id(request), claim_id)
    return web.Response(status=NO_CONTENT)


# ---- clients ------------------------------------------------------------------------------------


@ROUTES.get(AS + "/clients")
async def list_clients(request: web.Request) -> web.Response:
    items = store_of(request).list_clients(server_id(request))
    return listed(request, v.CLIENTS_LISTING, items, client_json)


@ROUTES.post(AS + "/clients")
async def create_client(request: web.Request) -> web.Response:
    store, asid = store_of(request), server_id(request)
    store.get_auth_server(asid)
    body = await read_json(request)
    values, bad = v.parse_body(body, v.CLIENT_CREATE, required=v.CLIENT_CREATE_REQUIRED)
    reject(bad + check_scope_refs(store, asid, values, "allow_scopes"))
    with scope_refs("allow_scopes"):
        client, secret = store.create_client(asid, **values)
    return created({**client_json(client), "client_secret": secret})


@ROUTES.get(CL)
async def get_client(request: web.Request) -> web.Response:
    client = store_of(request).get_client(server_id(request), client_id(request))
    return web.json_response(client_json(client))


@ROUTES.patch(CL)
async def update_client(request: web.Request) -> web.Response:
    store, asid, cid = store_of(request), server_id(request), client_id(request)
    store.get_client(asid, cid)
    body = await read_json(request)
    current = store.get_client(asid, cid)  # as it is now (see update_auth_server)
    values, bad = v.parse_body(body, v.CLIENT_UPDATE)
    bad += v.apply_labels_update(values, current.labels)
    reject(bad + check_scope_refs(store, asid, values, "allow_scopes"))
    secret = values.pop("client_secret", None)
    # UpdateClient's client_secret: that secret becomes the client's only one (as PUT imports it).
    client = current
    if values or secret is not None:
        with scope_refs("allow_scopes"):
            client = store.update_client(asid, cid, secret=secret, **values)
    return web.json_response(client_json(client))


@ROUTES.put(CL)
async def replace_client(request: web.Request) -> web.Response:
    """PUT: import a client under this id with this secret (201), or replace it wholly (200)."""
    store, asid, cid = store_of(request), server_id(request), client_id(request)
    store.get_auth_server(asid)
    body = await read_json(request)
    values, bad = v.parse_body(body, v.CLIENT_REPLACE, required=v.CLIENT_REPLACE_REQUIRED)
    reject(bad + check_scope_refs(store, asid, values, "allow_scopes"))
    secret = values.pop("client_secret")
    fields = {**v.CLIENT_DEFAULTS, **values}
    with scope_refs("allow_scopes"):
        client, _, was_created = store.replace_client(asid, cid, secret=secret, **fields)
    return web.json_response(client_json(client), status=201 if was_created else 200)


@ROUTES.delete(CL)
async def delete_client(request: web.Request) -> web.Response:
    store_of(request).delete_client(server_id(request), client_id(request))
    return web.Response(status=NO_CONTENT)


MAX_TEST_CLAIMS: Final = 100


@ROUTES.post(CL + "/test-claim")
async def test_claim(request: web.Request) -> web.Response:
    """Render each `{claim name: value template}` of the body for this client, as a token would."""
    store, asid, cid = store_of(request), server_id(request), client_id(request)
    context = template_context(store.get_auth_server(asid), store.get_client(asid, cid))
    body = await read_json(request)
    if isinstance(body, dict) and len(body) > MAX_TEST_CLAIMS:
        # Each is a dry run and a render, on the event loop: a bounded batch.
        reason = f"at most {MAX_TEST_CLAIMS} claims at once"
        reject([invalid("body", "max", reason, maximum=MAX_TEST_CLAIMS, source="body")])
    templates, bad = v.parse_body(
        body, dict.fromkeys(body if isinstance(body, dict) else (), v.template())
    )
    reject(bad)
    rendered: JSON = {}
    for name, value in templates.items():
        try:
            rendered[name] = render_claim(value, context)
        except TemplateError as exc:  # a runtime failure the dry run could not foresee
            bad.append(invalid(name, "invalid", str(exc), source="body"))
    reject(bad)
    return web.json_response(rendered)


# ---- client secrets -----------------------------------------------------------------------------


def _secret_id(request: web.Request) -> str:
    return v.path_uuid("clientSecretId", request.match_info["clientSecretId"])


@ROUTES.get(CL + "/secrets")
async def list_secrets(request: web.Request) -> web.Response:
    items = store_of(request).list_secrets(server_id(request), client_id(request))
    return listed(request, v.SECRETS_LISTING, items, secret_json)


@ROUTES.post(CL + "/secrets")
async def create_secret(request: web.Request) -> web.Response:
    store, asid, cid = store_of(request), server_id(request), client_id(request)
    store.get_client(asid, cid)
    values, bad = v.parse_body(await read_json(request), v.SECRET_CREATE)
    reject(bad)
    secret, clear = store.create_secret(asid, cid, **values)
    return created(secret_json(secret, clear))


@ROUTES.get(CL + "/secrets/{clientSecretId}")
async def get_secret(request: web.Request) -> web.Response:
    store, asid, cid = store_of(request), server_id(request), client_id(request)
    return web.json_response(secret_json(store.get_secret(asid, cid, _secret_id(request))))


@ROUTES.patch(CL + "/secrets/{clientSecretId}")
async def update_secret(request: web.Request) -> web.Response:
    store, asid, cid = store_of(request), server_id(request), client_id(request)
    secret_id = _secret_id(request)
    current = store.get_secret(asid, cid, secret_id)
    values, bad = v.parse_body(await read_json(request), v.SECRET_UPDATE)
    reject(bad)
    try:
        secret = store.update_secret(asid, cid, secret_id, **values) if values else current
    except TooManySecrets as exc:
        # The spec's updateClientSecret answers 200, 400 or 404: a third enabled secret is a
        # bad `enabled` value here (creating one is the 403 the spec lists for POST).
        raise Problem.bad_request(
            [invalid("enabled", "invalid", str(exc), source="body")]
        ) from None
    return web.json_response(secret_json(secret))


@ROUTES.delete(CL + "/secrets/{clientSecretId}")
async def delete_secret(request: web.Request) -> web.Response:
    store, asid, cid = store_of(request), server_id(request), client_id(request)
    store.delete_secret(asid, cid, _secret_id(request))
    return web.Response(status=NO_CONTENT)


# ---- tokens -------------------------------------------------------------------------------------
# A revoked token is gone as far as this API goes (DELETE answered 204); the store keeps it so that
# introspection can still say `active: false`.


def _token_id(request: web.Request) -> str:
    return v.path_uuid("tokenId", request.match_info["tokenId"])


@ROUTES.get(CL + "/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    items = store_of(request).list_tokens(server_id(request), client_id(request))
    return listed(request, v.TOKENS_LISTING, (t for t in items if not t.revoked), token_json)


@ROUTES.delete(CL + "/tokens")
async def revoke_all_tokens(request: web.Request) -> web.Response:
    store_of(request).revoke_all_tokens(server_id(request), client_id(request))
    return web.Response(status=NO_CONTENT)


@ROUTES.get(CL + "/tokens/{tokenId}")
async def get_token(request: web.Request) -> web.Response:
    token_id = _token_id(request)
    token = store_of(request).get_token(server_id(request), client_id(request), token_id)
    if token.revoked:
        raise Problem.not_found(f"Token [{token_id}] not found")
    return web.json_response(token_json(token))


@ROUTES.delete(CL + "/tokens/{tokenId}")
async def revoke_token(request: web.Request) -> web.Response:
    store, asid, cid = store_of(request), server_id(request), client_id(request)
    token_id = _token_id(request)
    if store.get_token(asid, cid, token_id).revoked:
        raise Problem.not_found(f"Token [{token_id}] not found")
    store.revoke_token(asid, cid, token_id)
    return web.Response(status=NO_CONTENT)
