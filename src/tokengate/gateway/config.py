"""kong.yaml (decK declarative format) → frozen dataclasses; every check happens here.

    config = load_config("kong.yaml")          # raises ConfigError listing every problem
    for route in config.routes:
        print(route.name, route.paths, route.service.name if route.service else None)

Nothing downstream of this module reads the raw YAML. Times in kong.yaml are milliseconds;
here they are seconds (floats), so the forwarder never converts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Service:
    """A Kong Service: where matched requests go."""

    name: str
    protocol: str  # "http" or "https"
    host: str
    port: int
    path: str | None  # base path prepended to the upstream path, Kong's `service.path`
    connect_timeout: float  # seconds
    read_timeout: float  # seconds
    write_timeout: float  # seconds
    retries: int

    @property
    def origin(self) -> str:
        """`scheme://host:port`, the only part of the upstream URL the client never influences."""
        return f"{self.protocol}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Plugin:
    """One enabled plugin instance as it applies to a route after Kong's precedence
    (route > service > global). Only `openid-connect` reaches here; others are warned about.
    `config` is read-only; the openid-connect issue turns it into a typed object."""

    name: str
    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Route:
    """A Kong Route. Matching fields are normalised: methods upper-case, hosts lower-case,
    header names lower-case (values as written; Kong compares them case-insensitively)."""

    name: str | None
    service: Service | None
    paths: tuple[str, ...]  # plain prefixes, or regexes written with Kong's "~" prefix
    methods: tuple[str, ...]
    hosts: tuple[str, ...]  # may hold one leading or trailing "*" wildcard
    headers: Mapping[str, tuple[str, ...]]
    strip_path: bool = True
    preserve_host: bool = False
    protocols: tuple[str, ...] = ("http", "https")
    regex_priority: int = 0
    path_handling: str = "v0"
    plugins: tuple[Plugin, ...] = ()

    def plugin(self, name: str) -> Plugin | None:
        for plugin in self.plugins:
            if plugin.name == name:
                return plugin
        return None


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    services: tuple[Service, ...]
    routes: tuple[Route, ...]  # in file order; the router sorts them
    warnings: tuple[str, ...] = field(default=())


class ConfigError(Exception):
    """kong.yaml is not valid. `errors` holds every problem as `FILE: path.to.field: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
