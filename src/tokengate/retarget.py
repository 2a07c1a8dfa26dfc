"""Point a loaded kong.yaml at where the stack's components really listen.

    moves = {"http://127.0.0.1:9000": "http://127.0.0.1:41234"}   # default origin → actual
    config = retarget(load_config("config/kong.yaml"), moves)

config/kong.yaml names the stack's identity server, echo upstream and status API by their
default addresses. `tokengate run --identity-listen ...` (or port 0 in tests) moves them; rather
than ask the user to edit the file to match, every service URL and every openid-connect issuer
URL at a moved origin follows it. Nothing else changes, and a config that names no default
origin comes back as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from tokengate.gateway.config import GatewayConfig, Route, Service
from tokengate.gateway.oidc_config import OidcConfig


def retarget(config: GatewayConfig, moves: Mapping[str, str]) -> GatewayConfig:
    """`moves` maps `scheme://host:port` origins (no trailing slash) to their new origins."""
    moves = {old: new for old, new in moves.items() if old != new}
    if not moves:
        return config
    services = {svc.name: _service(svc, moves) for svc in config.services}
    routes = tuple(_route(route, services, moves) for route in config.routes)
    return replace(config, services=tuple(services.values()), routes=routes)


def _service(service: Service, moves: Mapping[str, str]) -> Service:
    new_origin = moves.get(service.origin)
    if new_origin is None:
        return service
    scheme, _, rest = new_origin.partition("://")
    host, _, port = rest.rpartition(":")
    return replace(service, protocol=scheme, host=host.strip("[]"), port=int(port))


def _route(route: Route, services: Mapping[str, Service], moves: Mapping[str, str]) -> Route:
    # Routes hold their Service itself: hand them the moved one, or they would still go to
    # the old origin.
    service = services[route.service.name] if route.service is not None else None
    oidc = _oidc(route.oidc, moves) if route.oidc is not None else None
    if service is route.service and oidc is route.oidc:
        return route
    return replace(route, service=service, oidc=oidc)


def _oidc(oidc: OidcConfig, moves: Mapping[str, str]) -> OidcConfig:
    changed = replace(
        oidc,
        issuer=_url(oidc.issuer, moves),
        discovery_url=_url(oidc.discovery_url, moves),
        expected_issuer=_url(oidc.expected_issuer, moves),
        issuers_allowed=tuple(_url(url, moves) for url in oidc.issuers_allowed),
        jwks_endpoint=_url(oidc.jwks_endpoint, moves) if oidc.jwks_endpoint else None,
        extra_jwks_uris=tuple(_url(url, moves) for url in oidc.extra_jwks_uris),
    )
    return oidc if changed == oidc else changed


def _url(url: str, moves: Mapping[str, str]) -> str:
    for old, new in moves.items():
        if url == old or url.startswith(old + "/"):
            return new + url[len(old) :]
    return url
