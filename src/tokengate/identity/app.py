"""The identity server: issuers at the root, the Konnect management API under /v1.

    store = Store.open("tokengate-identity.db")
    app = create_identity_app(store, admin_token="s3cret", public_url="http://127.0.0.1:9000")
    web.run_app(app, host="127.0.0.1", port=9000)

Paths:
- `/{issuer_id}/auth/...`: each auth server's issuer (discovery, JWKS, token, introspection,
  userinfo), no admin token: these are public OAuth endpoints.
- `/v1/auth-servers...`: the Konnect API (admin token).
- `POST /admin/auth-servers/{id}/rotate-keys`: key rotation, outside the Konnect paths (Konnect
  rotates keys itself; locally you may want to see a rotation happen). Admin token. Answers
  `{"kid": <new kid>, "previous_kid": ..., "grace_seconds": 86400}`: the previous key stays
  in the JWKS for a day, so tokens already issued keep validating.
- `/healthz`: 200 while the process lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from tokengate.identity.admin_api import create_admin_app
from tokengate.identity.issuer_api import create_issuer_app
from tokengate.identity.store import NotFound, Store

log = logging.getLogger("tokengate.identity")

STORE = web.AppKey("store", Store)
ADMIN_TOKEN = web.AppKey("admin_token", str)
KEY_GRACE = timedelta(days=1)
TOKEN_HISTORY = timedelta(days=1)  # expired tokens stay listable this long


def create_identity_app(
    store: Store,
    *,
    admin_token: str,
    public_url: str,
    close_store: bool = False,
    purge_every: float = 600.0,
) -> web.Application:
    public_url = public_url.rstrip("/")
    app = create_issuer_app(store, public_url=public_url)
    app[STORE] = store
    app[ADMIN_TOKEN] = admin_token
    app.router.add_get("/healthz", _healthz)
    app.router.add_post("/admin/auth-servers/{auth_server_id}/rotate-keys", _rotate_keys)
    app.add_subapp("/v1", create_admin_app(store, admin_token=admin_token, public_url=public_url))
    app.cleanup_ctx.append(_purging(store, purge_every))
    if close_store:
        app.cleanup_ctx.append(_closing(store))
    return app


def _purging(store: Store, every: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """Every token request adds a row: forget tokens a day after they expired (introspection
    already answers inactive for them), so the database does not grow for ever."""

    async def purge_forever() -> None:
        while True:
            await asyncio.sleep(every)
            removed = store.purge_expired_tokens(before=datetime.now(UTC) - TOKEN_HISTORY)
            if removed:
                log.info("forgot %d tokens that expired over a day ago", removed)

    async def purging(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(purge_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return purging


def _closing(store: Store) -> Callable[[web.Application], AsyncIterator[None]]:
    async def close(app: web.Application) -> AsyncIterator[None]:
        yield
        store.close()

    return close


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def _problem(status: int, title: str, detail: str) -> web.Response:
    body = {"status": status, "title": title, "detail": detail}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/problem+json",
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


async def _rotate_keys(request: web.Request) -> web.Response:
    expected = "Bearer " + request.app[ADMIN_TOKEN]
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    ):
        return _problem(401, "Unauthorized", "a valid admin token is required")
    store = request.app[STORE]
    auth_server_id = request.match_info["auth_server_id"]
    try:
        previous = store.active_key(auth_server_id)
        key = store.rotate_key(auth_server_id, grace=KEY_GRACE)
    except NotFound:
        return _problem(404, "Not found", f"auth server [{auth_server_id}] not found")
    log.info("rotated signing key of %s: %s → %s", auth_server_id, previous.kid, key.kid)
    return web.json_response(
        {"kid": key.kid, "previous_kid": previous.kid, "grace_seconds": KEY_GRACE.total_seconds()}
    )
