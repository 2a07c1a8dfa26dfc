"""Retargeting kong.yaml at the stack's real addresses: what moves, and what must not."""

from __future__ import annotations

from tokengate.gateway.config import parse_config
from tokengate.retarget import retarget

CONFIG = """\
_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:9100/base
    routes:
      - name: protected
        paths: ["/anything"]
        plugins:
          - name: openid-connect
            config:
              issuer: http://127.0.0.1:9000/abcdefgh12345678/auth
              extra_jwks_uris: ["http://127.0.0.1:9000/abcdefgh12345678/auth/.well-known/jwks"]
              scopes_required: ["my-scope"]
  - name: elsewhere
    url: http://127.0.0.1:9001
    routes:
      - name: other
        paths: ["/other"]
        plugins:
          - name: openid-connect
            config:
              issuer: http://127.0.0.1:9001/auth
"""

MOVES = {
    "http://127.0.0.1:9000": "http://127.0.0.1:41000",
    "http://127.0.0.1:9100": "http://127.0.0.1:41100",
}


def test_services_and_issuers_at_a_moved_origin_follow_it() -> None:
    config = retarget(parse_config(CONFIG), MOVES)
    echo, elsewhere = config.services
    assert (echo.host, echo.port, echo.path) == ("127.0.0.1", 41100, "/base")
    protected, other = config.routes
    assert protected.service is echo  # the route goes where its service now is
    oidc = protected.oidc
    assert oidc is not None
    assert oidc.issuer == oidc.expected_issuer == "http://127.0.0.1:41000/abcdefgh12345678/auth"
    assert oidc.discovery_url == oidc.issuer + "/.well-known/openid-configuration"
    assert oidc.accepted_issuers == {oidc.issuer}
    assert oidc.extra_jwks_uris == (oidc.issuer + "/.well-known/jwks",)
    assert oidc.scopes_required == ("my-scope",)
    # Another port that merely starts with the same digits is another origin.
    assert (elsewhere.host, elsewhere.port) == ("127.0.0.1", 9001)
    assert other.oidc is not None
    assert other.oidc.issuer == "http://127.0.0.1:9001/auth"
    assert other.service is elsewhere


def test_nothing_moved_is_the_same_config() -> None:
    config = parse_config(CONFIG)
    assert retarget(config, {}) is config
    assert retarget(config, {"http://127.0.0.1:9000": "http://127.0.0.1:9000"}) is config
