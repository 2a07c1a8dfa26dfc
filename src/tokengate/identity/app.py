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
  in the JWKS for a day, or until the last unrevoked token of the auth server expires if that
  is later, so tokens already issued keep validating.
- `/healthz`: 200 while the process lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from aiohttp import web

from tokengate.identity.admin_api import create_admin_app, server_id, store_of
from tokengate.identity.bodies import BODY_TIMEOUT
from tokengate.identity.issuer_api import create_issuer_app
from tokengate.identity.models import SigningKey
from tokengate.identity.store import Store, StoreError

log = logging.getLogger("tokengate.identity")

KEY_GRACE = timedelta(days=1)
TOKEN_HISTORY = timedelta(days=1)  # expired tokens stay listable this long
PURGE_LOCK_WAIT = 0.05  # seconds a purge waits for another process's write lock

_KEY_ROUTES: Final = web.RouteTableDef()  # tokengate's own, outside the Konnect paths


def rotate_signing_key(store: Store, auth_server_id: str) -> tuple[SigningKey, SigningKey, float]:
    """Rotate an auth server's signing key (NotFound): the previous key, the new one, and how
    many seconds the previous one stays published (KEY_GRACE, or until the last token it
    signed expires)."""
    previous = store.active_key(auth_server_id)
    key = store.rotate_key(auth_server_id, grace=KEY_GRACE)
    grace = KEY_GRACE.total_seconds()
    for published in store.published_keys(auth_server_id):
        if published.kid == previous.kid and published.published_until and published.retired_at:
            grace = (published.published_until - published.retired_at).total_seconds()
    return previous, key, grace


@_KEY_ROUTES.post("/auth-servers/{authServerId}/rotate-keys")
async def _rotate_keys(request: web.Request) -> web.Response:
    store, auth_server_id = store_of(request), server_id(request)
    # NotFound: the admin API's 404
    previous, key, grace = rotate_signing_key(store, auth_server_id)
    log.info("rotated signing key of %s: %s → %s", auth_server_id, previous.kid, key.kid)
    return web.json_response({"kid": key.kid, "previous_kid": previous.kid, "grace_seconds": grace})


def create_identity_app(
    store: Store,
    *,
    admin_token: str,
    public_url: str,
    close_store: bool = False,
    purge_every: float = 600.0,
    body_timeout: float = BODY_TIMEOUT,
) -> web.Application:
    public_url = public_url.rstrip("/")
    app = create_issuer_app(store, public_url=public_url, body_timeout=body_timeout)
    app.router.add_get("/healthz", _healthz)
    admin = create_admin_app(
        store, admin_token=admin_token, public_url=public_url, body_timeout=body_timeout
    )
    app.add_subapp("/v1", admin)
    # with the API's token check and problem+json answers
    keys = create_admin_app(
        store,
        admin_token=admin_token,
        public_url=public_url,
        routes=_KEY_ROUTES,
        body_timeout=body_timeout,
    )
    app.add_subapp("/admin", keys)
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
            try:
                # On the event loop: a lock another process holds is not waited for past
                # PURGE_LOCK_WAIT (the busy timeout, 5 s, would hold every request as long).
                removed = store.purge_expired_tokens(
                    before=datetime.now(UTC) - TOKEN_HISTORY, lock_wait=PURGE_LOCK_WAIT
                )
            except StoreError as exc:
                # A lock another process holds, a full disk: the next round tries again.
                # Ending the loop here would let the database grow for good.
                log.warning("could not forget expired tokens (tried again in %gs): %s", every, exc)
                continue
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
