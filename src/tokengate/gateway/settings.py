"""Process-level gateway settings: everything that is not in kong.yaml (listen addresses, limits).

    settings = GatewaySettings(listen=("127.0.0.1", 8000), max_body_size=8 * 1024 * 1024)

Built once by the CLI from flags and TOKENGATE_* variables; tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from tokengate.gateway.keys import KeyPolicy


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    listen: tuple[str, int] = ("127.0.0.1", 8000)
    status_listen: tuple[str, int] = ("127.0.0.1", 8100)
    # Requests with a larger body get 413 (Kong's default nginx_http_client_max_body_size is 0,
    # no limit, in kong/templates/kong_defaults.lua; nginx's 1 MiB is too small for a proxy of
    # APIs that take uploads).
    max_body_size: int = 8 * 1024 * 1024
    # A client that stalls between two body reads, or sends a request head too slowly, or idles
    # on a keep-alive connection, is cut off after this many seconds (slowloris protection).
    client_body_timeout: float = 10.0
    client_header_timeout: float = 10.0
    # Idle keep-alive connections from clients close after this (Kong's default): longer than
    # the head timeout, so load balancers in front can keep connections warm.
    keepalive_timeout: float = 60.0
    # A client that stops reading a streamed response is cut off after this many seconds.
    client_send_timeout: float = 30.0
    # On SIGTERM/SIGINT, requests in progress get this many seconds to finish before they are
    # cut off (nginx's worker_shutdown_timeout plays this part in Kong).
    shutdown_timeout: float = 10.0
    # Client connections per worker; None: from the open-file limit (server.connection_cap).
    max_connections: int | None = None
    upstream_max_connections: int = 512  # per upstream host:port; beyond it requests queue
    upstream_max_idle: int = 128
    # Verified tokens kept per openid-connect config (two generations: up to twice this).
    token_cache_size: int = 10_000
    key_policy: KeyPolicy = field(default_factory=KeyPolicy)
    # One line per request on the `tokengate.access` logger at INFO (so also off below it).
    access_log: bool = True
    # Peers whose X-Forwarded-* headers are believed (Kong's trusted_ips): a TLS-terminating
    # proxy in front. From anyone else they are replaced, and the scheme is http.
    trusted_ips: tuple[IPv4Network | IPv6Network, ...] = ()
    log_format: str = "text"  # or "json"; the workers' logging, set up where they start
    # Access-control plugins of kong.yaml to run without (config.ACCESS_PLUGINS): every read
    # of the file, a reload's included, must pass the same names.
    ignored_plugins: frozenset[str] = frozenset()
