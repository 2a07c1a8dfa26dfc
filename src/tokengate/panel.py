"""What `tokengate run` prints once everything is up: where things are, and what to try.

    await show_panel(stack, sys.stdout)

Nothing in it is canned: the token in the curl command was minted a moment ago at the
identity server's own /oauth/token, and the 200, 401 and 403 shown are the gateway's answers to
the same requests, made over HTTP as a user would make them.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import aiohttp

from tokengate.gateway.config import GatewayConfig, Route

if TYPE_CHECKING:  # stack.py runs the panel: only its types are needed here
    from tokengate.stack import IdentityService, Stack

_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True, slots=True)
class Demo:
    """A route to try: protected by an issuer of this stack, with a seeded client to use."""

    path: str  # a protected route's path, e.g. /anything
    issuer: str
    client_id: str
    client_secret: str
    scope: str  # the first scope alternative the route requires, space-separated ("" if none)
    claim_headers: tuple[str, ...]  # headers the gateway fills from claims
    public_path: str | None  # a route without a token check, if the config has one


def find_demo(config: GatewayConfig, identity: IdentityService) -> Demo | None:
    seeded = {
        f"{identity.url}/{server.issuer_id}/auth": raw
        for server, raw in zip(identity.servers, identity.seed, strict=True)
    }
    public = next(
        (path for route in config.routes if route.oidc is None and (path := _plain_path(route))),
        None,
    )
    for route in config.routes:
        oidc, path = route.oidc, _plain_path(route)
        raw = seeded.get(oidc.expected_issuer) if oidc is not None else None
        if oidc is None or raw is None or path is None:
            continue
        for client in raw.get("clients") or ():
            if client.get("id") and client.get("secret"):
                return Demo(
                    path=path,
                    issuer=oidc.expected_issuer,
                    client_id=client["id"],
                    client_secret=client["secret"],
                    scope=oidc.scopes_required[0] if oidc.scopes_required else "",
                    claim_headers=oidc.upstream_header_names,
                    public_path=public,
                )
    return None


def _plain_path(route: Route) -> str | None:
    """A path a bare `curl URL` matches: a prefix (not a regex), no host or header condition."""
    if route.hosts or route.headers or (route.methods and "GET" not in route.methods):
        return None
    return next((path for path in route.paths if not path.startswith("~")), None)


@dataclass(frozen=True, slots=True)
class Answer:
    status_line: str
    www_authenticate: str | None
    echoed: list[tuple[str, str]]  # claim headers as the upstream received them


async def show_panel(stack: Stack, out: TextIO) -> None:
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
        issuers = await stack.wait_ready(session)
        lines = _places(stack, issuers)
        demo = find_demo(stack.gateway_config, stack.identity)
        if demo is None:
            lines += [
                "",
                "No route in the config is protected by this identity server's issuers, so there",
                "is no token to try: see the README for an openid-connect plugin to add.",
            ]
        else:
            try:
                lines += await _try(session, stack, demo)
            except (TimeoutError, aiohttp.ClientError, _Refused) as exc:
                lines += ["", f"Could not try the protected route {demo.path}: {exc}"]
    out.write("\n".join(lines) + "\n\n")
    out.flush()


def _places(stack: Stack, issuers: list[dict[str, Any]]) -> list[str]:
    lines = [
        "tokengate is running; Ctrl-C stops it.",
        "",
        f"  gateway          {stack.gateway_url}",
        f"  gateway status   {stack.status_url}/readyz",
        f"  identity API     {stack.identity.url}/v1/auth-servers",
        f"  admin token      {stack.admin_token}   (Authorization: Bearer <admin token>)",
    ]
    for issuer in issuers:
        if issuer["loaded"]:
            state = "keys loaded by the gateway"
        else:
            state = f"keys NOT loaded yet: {issuer.get('last_error') or 'no answer'}"
        lines.append(f"  issuer           {issuer['issuer']}  ({state})")
    lines.append(f"  echo upstream    {stack.echo_url}")
    return lines


class _Refused(Exception):
    """The identity server would not mint the demo token."""


async def _try(session: aiohttp.ClientSession, stack: Stack, demo: Demo) -> list[str]:
    token, lifetime = await _mint(session, demo, demo.scope)
    url = stack.gateway_url + demo.path
    allowed = await _call(session, url, token, demo)
    scope_note = f" with scope {demo.scope}" if demo.scope else ""
    lines = [
        "",
        f"A token for {demo.client_id}{scope_note}, minted just now (valid {lifetime} s):",
        "",
        f'  curl -i {url} -H "Authorization: Bearer {token}"',
        "",
        f"  → {allowed.status_line}" + _echoed(allowed),
        "",
        "Another token:",
        "",
        f"  curl -s {demo.issuer}/oauth/token -d grant_type=client_credentials \\",
        f"    -d client_id={shlex.quote(demo.client_id)} "
        f"-d client_secret={shlex.quote(demo.client_secret)}"
        + (f" -d scope={shlex.quote(demo.scope)}" if demo.scope else ""),
        "",
        "Refusals, as the gateway just answered them:",
        "",
        f"  no token ({url})",
        *_refusal(await _call(session, url, None, demo)),
    ]
    if demo.scope:
        unscoped, _ = await _mint(session, demo, "")
        lines += [
            f"  a token without {demo.scope}",
            *_refusal(await _call(session, url, unscoped, demo)),
        ]
    if demo.public_path is not None:
        public = stack.gateway_url + demo.public_path
        answer = await _call(session, public, None, demo)
        lines += ["", f"No token needed: curl -i {public}  → {answer.status_line}"]
    return lines


async def _mint(session: aiohttp.ClientSession, demo: Demo, scope: str) -> tuple[str, int]:
    form = {
        "grant_type": "client_credentials",
        "client_id": demo.client_id,
        "client_secret": demo.client_secret,
    }
    if scope:
        form["scope"] = scope
    async with session.post(f"{demo.issuer}/oauth/token", data=form) as resp:
        body = await resp.json(content_type=None)
        if resp.status != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise _Refused(f"the token endpoint answered {resp.status}: {body}")
        return str(body["access_token"]), int(body.get("expires_in", 0))


async def _call(session: aiohttp.ClientSession, url: str, token: str | None, demo: Demo) -> Answer:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        version = f"{resp.version.major}.{resp.version.minor}" if resp.version else "1.1"
        status_line = f"HTTP/{version} {resp.status} {resp.reason}"
        echoed: list[tuple[str, str]] = []
        if resp.status == 200 and resp.content_type == "application/json":
            echoed = _claim_headers(await resp.read(), demo.claim_headers)
        return Answer(status_line, resp.headers.get("WWW-Authenticate"), echoed)


def _claim_headers(body: bytes, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """The claim headers the echo upstream says it received: none from anything else (the
    route's upstream may be one of the user's own kong.yaml, answering JSON of its own)."""
    try:
        echo = json.loads(body)
    except ValueError:  # not JSON after all (UnicodeDecodeError included)
        return []
    pairs = echo.get("headers") if isinstance(echo, dict) else None
    if not isinstance(pairs, list):
        return []
    wanted = {name.lower() for name in names}
    return [
        (pair[0], pair[1])
        for pair in pairs
        if isinstance(pair, list)
        and len(pair) == 2
        and all(isinstance(part, str) for part in pair)
        and pair[0].lower() in wanted
    ]


def _echoed(answer: Answer) -> str:
    if not answer.echoed:
        return ""
    headers = ", ".join(f"{name}: {value}" for name, value in answer.echoed)
    return f"; the echo upstream received {headers}"


def _refusal(answer: Answer) -> list[str]:
    lines = [f"    → {answer.status_line}"]
    if answer.www_authenticate:
        lines.append(f"      WWW-Authenticate: {answer.www_authenticate}")
    return lines
