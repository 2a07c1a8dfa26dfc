"""kong.yaml (decK declarative format) → frozen dataclasses; every check happens here.

    config = load_config("kong.yaml")          # raises ConfigError listing every problem
    for route in config.routes:
        print(route.name, route.paths, route.service.name if route.service else None)

Nothing downstream of this module reads the raw YAML. Times in kong.yaml are milliseconds;
here they are seconds (floats), so the forwarder never converts. Kong's plugin precedence
(route > service > global) is resolved here: `Route.oidc` is the typed config of the one
openid-connect instance that applies (oidc_config.py validates it), `Route.cors` that of the
cors instance (cors.py), and `Route.plugins` keeps their raw configs. Disabled services and
their routes are left out (with a warning).
Field readers and value checks live in config_checks.py.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Generic, TypeVar

from tokengate.gateway.config_checks import (
    Fields,
    Registry,
    Report,
    at,
    describe,
    header_name,
    header_value,
    host_with_optional_port,
    http_method,
    http_protocol,
    item,
    kong_name,
    kong_protocol,
    kong_uuid,
    legacy_path_is_regex,
    load_yaml,
    route_host,
    route_path,
    service_host,
    service_path,
    service_url,
    target_address,
    upstream_name,
)
from tokengate.gateway.cors import CORS_PLUGIN, CorsConfig, parse_cors_config
from tokengate.gateway.kong_plugins import (
    ACCESS_PLUGINS,
    KONG_PLUGINS,
    OIDC_PLUGIN,
    closest_plugin,
    kong_spelling,
)
from tokengate.gateway.oidc_config import Consumer, OidcConfig, parse_oidc_config


@dataclass(frozen=True, slots=True)
class Target:
    """One target of a Kong Upstream: where a balanced service's requests may go."""

    host: str  # a host name or IP address (IPv6 in brackets)
    port: int
    weight: int  # > 0: targets of weight 0 are never picked, so they are not kept

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Service:
    """A Kong Service: where matched requests go. When its host names a Kong Upstream, it is
    balanced over that upstream's targets (`upstream` set) and its own port is not used."""

    name: str
    protocol: str  # "http" or "https"
    host: str
    port: int
    path: str | None  # base path prepended to the upstream path, Kong's `service.path`
    connect_timeout: float  # seconds
    read_timeout: float  # seconds
    write_timeout: float  # seconds
    retries: int
    tls_verify: bool = True  # https services only: check the upstream's certificate and name
    upstream: str | None = None  # the Kong Upstream its host names, if any
    targets: tuple[Target, ...] = ()  # that upstream's targets of weight > 0
    host_header: str | None = None  # the upstream's host_header: the Host sent to any target

    @property
    def origin(self) -> str:
        """`scheme://host:port`, the only part of the upstream URL the client never influences."""
        return f"{self.protocol}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Plugin:
    """One enabled plugin instance as it applies to a route after Kong's precedence
    (route > service > global). Only `openid-connect` and `cors` reach here; others are warned
    about. `config` is a read-only copy of what the file says; read the validated, typed view
    from `Route.oidc` or `Route.cors`."""

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
    # What a request that did not come over HTTPS gets from a route whose protocols leave out
    # http: 426, or a redirect to https with this status (Kong's runloop).
    https_redirect_status_code: int = 426
    regex_priority: int = 0
    path_handling: str = "v0"
    # TLS server names: never matched (no TLS here, and Kong's expression lets plain HTTP
    # through), but they weigh in the route's priority as in Kong.
    snis: tuple[str, ...] = ()
    plugins: tuple[Plugin, ...] = ()
    oidc: OidcConfig | None = None  # the openid-connect config that applies; None: no auth
    cors: CorsConfig | None = None  # the cors config that applies
    id: str | None = None  # the file's `id`, if it gives one

    @property
    def https_only(self) -> bool:
        return "http" not in self.protocols

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
    # The text it was parsed from: what `--workers N` hands its workers, as read once (a
    # second read of `<(...)`, a pipe, finds nothing).
    text: str = field(default="", repr=False, compare=False)


class ConfigError(Exception):
    """kong.yaml is not valid. `errors` holds every problem as `FILE: path.to.field: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def load_config(
    path: str | os.PathLike[str], *, ignored_plugins: frozenset[str] = frozenset()
) -> GatewayConfig:
    """Read and validate a kong.yaml; errors name the file as the caller spelled it."""
    return parse_config(read_config_text(path), os.fspath(path), ignored_plugins=ignored_plugins)


def read_config_text(path: str | os.PathLike[str]) -> str:
    """The file's text, for `parse_config`; a file that cannot be read is a ConfigError."""
    source = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_CONFIG_CHARS + 1)  # bounded: /dev/zero is a file too
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: not valid UTF-8 (byte {exc.start})"]) from None
    if len(text) > MAX_CONFIG_CHARS:
        limit = MAX_CONFIG_CHARS // (1024 * 1024)
        raise ConfigError([f"{source}: larger than {limit} MiB, the most tokengate reads"])
    return text


def parse_config(
    text: str, source: str = "kong.yaml", *, ignored_plugins: frozenset[str] = frozenset()
) -> GatewayConfig:
    """Validate kong.yaml text; raises ConfigError listing every problem found.

    `ignored_plugins` names access-control plugins (ACCESS_PLUGINS), or plugins Kong does not
    bundle, the user chose to run without (--ignore-plugins): warned about instead of refused."""
    report = Report(source)
    config = _Loader(report, ignored_plugins).load(_parse_yaml(text, source))
    if report.errors:
        raise ConfigError(report.errors)
    return replace(config, text=text)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return load_yaml(text)
    except ValueError as exc:  # load_yaml's: where, and what (as the seed's reader says it)
        problem = str(exc).removeprefix("invalid YAML: ")
        raise ConfigError([f"{source}: not valid YAML: {problem}"]) from None


# A kong.yaml of 20,000 routes is about 2 MiB and parses in seconds; 32 MiB is far past any real
# one, and keeps a wrong path (/dev/zero, a log file) from filling memory.
MAX_CONFIG_CHARS: Final = 32 * 1024 * 1024
_FORMAT_VERSIONS = ("1.1", "2.1", "3.0")
_IGNORED_KEYS = ("_transform", "_info", "_workspace", "_konnect")
# Kong entities tokengate has no use for: warned about, then ignored.
_UNSUPPORTED_ENTITIES = (
    "consumers", "consumer_groups", "certificates", "ca_certificates",
    "snis", "vaults", "keys", "key_sets", "partials", "filter_chains", "licenses", "rbac_roles",
    "custom_entities", "degraphql_routes",
)  # fmt: skip
_TOP_LEVEL_FIELDS = frozenset(
    {"_format_version", "services", "routes", "plugins", "upstreams", "targets", *_IGNORED_KEYS,
     *_UNSUPPORTED_ENTITIES}
)  # fmt: skip
# Every row `kong config db_export` writes carries these; the declarative loader takes them.
_TIMESTAMPS = ("created_at", "updated_at")
_URL_PARTS = ("protocol", "host", "port", "path")
_TLS_FIELDS = ("tls_verify", "tls_verify_depth", "ca_certificates", "client_certificate")
_SERVICE_FIELDS = frozenset(
    {"name", "id", "url", *_URL_PARTS, "connect_timeout", "read_timeout", "write_timeout",
     "retries", "enabled", "tags", *_TLS_FIELDS, "routes", "plugins", *_TIMESTAMPS}
)  # fmt: skip
_UPSTREAM_FIELDS = frozenset(
    {"name", "id", "algorithm", "hash_on", "hash_fallback", "hash_on_header",
     "hash_fallback_header", "hash_on_cookie", "hash_on_cookie_path", "hash_on_query_arg",
     "hash_fallback_query_arg", "hash_on_uri_capture", "hash_fallback_uri_capture", "slots",
     "healthchecks", "tags", "host_header", "client_certificate", "use_srv_name",
     "sticky_sessions_cookie", "sticky_sessions_cookie_path", "targets", *_TIMESTAMPS}
)  # fmt: skip
_TARGET_FIELDS = frozenset({"target", "weight", "tags", "id", "upstream", "failover", *_TIMESTAMPS})
_ALGORITHMS = (
    "round-robin", "consistent-hashing", "least-connections", "latency", "sticky-sessions"
)  # fmt: skip
_MATCH_FIELDS = ("methods", "hosts", "headers", "paths")
_ROUTE_FIELDS = frozenset(
    {"name", "id", *_MATCH_FIELDS, "strip_path", "preserve_host", "protocols", "regex_priority",
     "path_handling", "https_redirect_status_code", "request_buffering", "response_buffering",
     "tags", "snis", "sources", "destinations", "service", "plugins", *_TIMESTAMPS}
)  # fmt: skip
_PLUGIN_FIELDS = frozenset(
    {"name", "config", "enabled", "protocols", "tags", "id", "instance_name", "ordering",
     "service", "route", "consumer", "consumer_group", *_TIMESTAMPS}
)  # fmt: skip
_REDIRECT_CODES = (426, 301, 302, 307, 308)
_MAX_TIMEOUT_MS = 2**31 - 2  # Kong's upper bound
_MAX_UPSTREAMS_TO_SUGGEST = 32  # see _upstream_meant


@dataclass(eq=False)
class _Entry:
    path: str  # where it sits in the file, for messages


@dataclass(eq=False)
class _ServiceEntry(_Entry):
    service: Service
    enabled: bool


@dataclass(eq=False)
class _UpstreamEntry(_Entry):
    name: str
    host_header: str | None
    targets: list[Target]  # weight > 0, in file order
    addresses: set[str]  # every target's host:port, weight 0 too (Kong: unique per upstream)


@dataclass(eq=False)
class _RouteEntry(_Entry):
    route: Route  # service and plugins are filled in by _Loader._finish
    service: _ServiceEntry | None


# (route, service) a plugin is attached to; (None, None) is global.
_Scope = tuple[_RouteEntry | None, _ServiceEntry | None]


_Typed = TypeVar("_Typed", OidcConfig, CorsConfig)


@dataclass(eq=False)
class _PluginEntry(_Entry, Generic[_Typed]):
    """A plugin tokengate runs, as the file declares it: its validated config (`typed`: None
    only when that config has errors, already reported), whether enabled, and where."""

    plugin: Plugin
    typed: _Typed | None
    enabled: bool
    scope: _Scope


class _Loader:
    """One pass over the document, then `finish` ties routes to services and plugins.

    Services come first (with their nested routes and plugins), then top-level routes, then
    top-level plugins, so that every reference can be resolved when it is met."""

    def __init__(self, report: Report, ignored_plugins: frozenset[str] = frozenset()) -> None:
        self.report = report
        self.ignored_plugins = ignored_plugins
        self.plugin_names: set[str] = set()  # every plugin name of the file, for the above
        self.upstreams = Registry[_UpstreamEntry](report, "upstream")
        self.services = Registry[_ServiceEntry](report, "service")
        self.routes = Registry[_RouteEntry](report, "route")
        # Kong refuses a second entity of a kind with the same id ("uniqueness violation").
        self.plugins = Registry[_Entry](report, "plugin")
        self.targets = Registry[_Entry](report, "target")
        self.service_entries: list[_ServiceEntry] = []
        self.route_entries: list[_RouteEntry] = []
        self.plugin_entries: list[_PluginEntry[OidcConfig]] = []
        self.cors_entries: list[_PluginEntry[CorsConfig]] = []
        # A `url`'s host comes back in lower case: an upstream named in capitals still counts.
        self.upstreams_by_lower_name: dict[str, _UpstreamEntry] = {}
        self.legacy_version: str | None = None
        # Consumers are not run, but `anonymous` must name one (username or id), and one with
        # no plugin that refuses requests: Kong would run it on every anonymous request.
        # Looked up by find_consumer (anonymous) and referenced_consumer (a plugin's consumer),
        # each in Kong's own order.
        self.consumers_by_id: dict[str, Consumer] = {}
        self.consumers_by_username: dict[str, Consumer] = {}
        self.group_names: set[str] = set()  # consumer groups' names and ids
        self.declared_consumers: list[Consumer] = []  # in file order, for consumer_claims
        # Those with a plugin that refuses requests (nested, or naming them by username or id)
        self.refusing_consumers: list[Consumer] = []
        # The path of a plugin that refuses requests scoped to a consumer group, if any:
        # Kong runs it for the group's members, which consumer_claims would make of tokens.
        self.group_plugin: str | None = None
        # Kong sets an authenticated consumer's groups too, the anonymous one's included
        # (kong.client.authenticate), so its groups' plugins run on every anonymous request.
        # Groups by position, found by name or id; each one's members as the file names them
        # (consumer_groups[].consumers, consumers[].groups); the groups with a plugin that
        # refuses requests, with the path of the first such plugin.
        self.group_index: dict[str, int] = {}
        self.group_members: dict[int, list[object]] = {}
        self.groups_of: dict[str, list[object]] = {}  # a consumer's id → its groups
        self.refusing_groups: dict[int, str] = {}

    def load(self, document: Any) -> GatewayConfig:
        if document is None:
            self.report.error("", "the file is empty; expected a Kong declarative config")
            return GatewayConfig((), ())
        if not isinstance(document, dict):
            self.report.error("", f"expected a mapping of Kong entities, got {describe(document)}")
            return GatewayConfig((), ())
        top = Fields(self.report, "", document, _TOP_LEVEL_FIELDS)
        self._format_version(top)
        top.boolean("_transform", True)
        for key in _UNSUPPORTED_ENTITIES:
            if key == "consumers":
                continue  # read: _note_consumers names what it ignores
            if key == "consumer_groups" and key in document:
                top.warn(key, _GROUPS_READ)
            elif key in document:
                top.warn(key, f"Kong entity '{key}' is not supported by tokengate and is ignored")
        self._note_consumers(top)
        self._note_consumer_groups(top)
        for path, data in top.entities("upstreams"):
            self._upstream(path, data)
        for path, data in top.entities("targets"):
            self._target(path, data, None)
        for path, data in top.entities("services"):
            self._service(path, data)
        for path, data in top.entities("routes"):
            self._route(path, data, None)
        for path, data in top.entities("plugins"):
            self._plugin(path, data, None)
        self._check_ignored_names()
        return self._finish()

    def _check_ignored_names(self) -> None:
        """A --ignore-plugins name that no plugin of the file has is most likely misspelt (the
        plugin meant is then refused too, and its error says so)."""
        for name in sorted(self.ignored_plugins - self.plugin_names):
            if name in (OIDC_PLUGIN, CORS_PLUGIN):
                message = f"tokengate runs '{name}' itself: --ignore-plugins does not turn it off"
            else:
                others = sorted(self.plugin_names - self.ignored_plugins)
                meant = next((p for p in others if _spelt_as(name, p)), None)
                hint = f" (did you mean '{meant}'?)" if meant is not None else ""
                message = f"--ignore-plugins {name}: no plugin of this file has that name{hint}"
            self.report.warn("", message)

    def _misspelt_ignore(self, name: str) -> str:
        """For the error refusing plugin `name`: an --ignore-plugins entry that meant it."""
        meant = next((n for n in sorted(self.ignored_plugins) if _spelt_as(n, name)), None)
        return "" if meant is None else f" (--ignore-plugins {meant} does not name it)"

    def _format_version(self, top: Fields) -> None:
        value = top.raw("_format_version")
        # An unquoted `3.0` is a YAML float; decK reads the same text as a string.
        version = repr(value) if isinstance(value, float) else value
        if value is None:
            top.missing("_format_version")
        elif version not in _FORMAT_VERSIONS:
            expected = ", ".join(f'"{known}"' for known in _FORMAT_VERSIONS)
            shown = repr(value) if isinstance(value, str | int | float) else describe(value)
            top.error("_format_version", f"unsupported version {shown} (expected {expected})")
        elif version != "3.0":
            self.legacy_version = version

    def _service(self, path: str, data: dict[Any, Any]) -> None:
        f = Fields(self.report, path, data, _SERVICE_FIELDS)
        # Metrics and logs are labelled by the name; an unnamed service (Kong's name is
        # optional, and db_export writes an id for every row) goes by its id.
        name, id_ = _entity_name(f, "name"), _entity_id(f)
        if not f.given("name") and not f.given("id"):
            f.missing("name", " (or an id)")
        protocol, host, port, base_path = self._destination(f)
        tls_verify = self._tls(f, protocol)
        connect, read, write = (
            f.integer(key, 60_000, 1, _MAX_TIMEOUT_MS) / 1000
            for key in ("connect_timeout", "read_timeout", "write_timeout")
        )
        service = Service(
            name=name or id_ or "",
            protocol=protocol,
            host=host,
            port=port,
            path=base_path,
            connect_timeout=connect,
            read_timeout=read,
            write_timeout=write,
            retries=f.integer("retries", 5, 0, 32767),
            tls_verify=tls_verify,
        )
        # Kong balances a service whose host is an upstream's name over its targets.
        by_lower_name = self.upstreams_by_lower_name
        upstream = self.upstreams.by_name.get(host) or by_lower_name.get(host.lower())
        if upstream is not None:
            service = replace(
                service,
                upstream=upstream.name,
                targets=tuple(upstream.targets),
                host_header=upstream.host_header,
            )
            if not upstream.targets:
                f.warn(
                    "host",
                    f"upstream '{upstream.name}' has no target of weight > 0: requests get 503 "
                    '"failure to get a peer from the ring-balancer"',
                )
        elif meant := self._upstream_meant(host):
            f.warn(
                "host",
                f"'{host}' is no upstream of this file, so it is looked up in DNS (did you mean "
                f"upstream '{meant}'?); a name that does not resolve gets 503 \"name resolution "
                'failed"',
            )
        entry = _ServiceEntry(path, service, f.boolean("enabled", True))
        # An unnamed service goes by its id: as a name too, so that it clashes with another
        # service of that name (pools, Host headers and metrics are keyed by name).
        self.services.add(entry, name or id_, id_)
        self.service_entries.append(entry)
        f.strings("tags")
        for nested_path, route_data in f.entities("routes"):
            self._route(nested_path, route_data, entry)
        for plugin_path, plugin_data in f.entities("plugins"):
            self._plugin(plugin_path, plugin_data, (None, entry))

    def _upstream_meant(self, host: str) -> str | None:
        """The upstream a service's host probably means when it names none: one typo away (a
        typo sends its requests to DNS instead). Only among a hand-written file's few
        upstreams: thousands against thousands of services would slow loading down."""
        names = self.upstreams_by_lower_name
        if len(names) > _MAX_UPSTREAMS_TO_SUGGEST:
            return None
        lower = host.lower()
        meant = sorted(name for name in names if _one_typo_apart(lower, name))
        return names[meant[0]].name if meant else None

    def _destination(self, f: Fields) -> tuple[str, str, int, str | None]:
        """Where the service points: the `url` shorthand, or protocol/host/port/path."""
        if f.given("url"):
            if clash := [key for key in _URL_PARTS if f.given(key)]:
                f.error("url", f"cannot be combined with {', '.join(clash)}")
            return f.checked("url", service_url) or ("http", "", 80, None)
        protocol = f.checked("protocol", http_protocol) or "http"
        host = f.checked("host", service_host, required=True) or ""
        # Kong's services schema: port defaults to 80 whatever the protocol (only `url`
        # derives 443 from https).
        port = f.integer("port", 80, 1, 65535)
        if protocol == "https" and not f.given("port"):
            f.warn("port", "not set: 80, Kong's default for https too (set 443 if that is meant)")
        return protocol, host, port, f.checked("path", service_path)

    def _upstream(self, path: str, data: dict[Any, Any]) -> None:
        f = Fields(self.report, path, data, _UPSTREAM_FIELDS)
        name = f.checked("name", upstream_name, required=True)
        algorithm = f.choice("algorithm", "round-robin", _ALGORITHMS)
        if algorithm != "round-robin":
            f.warn("algorithm", f"{algorithm} is not supported: tokengate balances round-robin")
        f.integer("slots", 10_000, 10, 65_536)
        f.strings("tags")
        host_header = f.checked("host_header", host_with_optional_port)
        if f.boolean("use_srv_name", False):
            f.warn("use_srv_name", "not supported by tokengate and ignored")
        if f.given("client_certificate"):
            f.warn("client_certificate", "not supported by tokengate and ignored")
        if _health_checks_on(f.mapping("healthchecks")):
            f.warn("healthchecks", "health checks are not run by tokengate: every target stays in")
        entry = _UpstreamEntry(path, name or "", host_header, [], set())
        self.upstreams.add(entry, name, _entity_id(f))
        if name is not None:  # the first of a name in any case, as the registry keeps the first
            self.upstreams_by_lower_name.setdefault(name.lower(), entry)
        for target_path, target_data in f.entities("targets"):
            self._target(target_path, target_data, entry)

    def _target(self, path: str, data: dict[Any, Any], upstream: _UpstreamEntry | None) -> None:
        """A target, nested in its upstream or top-level with an `upstream` reference."""
        f = Fields(self.report, path, data, _TARGET_FIELDS)
        if upstream is None:
            upstream = self.upstreams.find(f, "upstream") if f.given("upstream") else None
            if upstream is None and not f.given("upstream"):
                f.missing("upstream", " (the upstream this target is for)")
        elif f.given("upstream"):
            f.error("upstream", "a target nested in an upstream names no other upstream")
        address = f.checked("target", target_address, required=True)
        weight = f.integer("weight", 100, 0, 65_535)
        self.targets.add(_Entry(path), None, _entity_id(f))
        f.strings("tags")
        if f.boolean("failover", False):
            f.warn("failover", "not supported by tokengate: a failover target is balanced too")
        if address is None or upstream is None:
            return
        target = Target(host=address[0], port=address[1], weight=weight)
        if target.address in upstream.addresses:
            f.error("target", f"duplicate target '{target.address}' in upstream '{upstream.name}'")
            return
        upstream.addresses.add(target.address)
        if weight > 0:  # weight 0: Kong never picks it
            upstream.targets.append(target)

    def _tls(self, f: Fields, protocol: str) -> bool:
        """`tls_verify` (default on: an https upstream's certificate and name are checked
        against the system CAs); the other TLS fields are accepted and warned about. Kong's
        services schema refuses them all on a service whose protocol is not https."""
        verify = f.boolean("tls_verify", True)
        f.integer("tls_verify_depth", 0, 0, 64)
        f.strings("ca_certificates")
        for key in _TLS_FIELDS:
            if not f.given(key):
                continue
            if protocol != "https":
                f.error(key, "can only be set when 'protocol' is https")
            elif key != "tls_verify":
                f.warn(key, "not supported by tokengate and ignored")
        return verify

    def _route(self, path: str, data: dict[Any, Any], parent: _ServiceEntry | None) -> None:
        f = Fields(self.report, path, data, _ROUTE_FIELDS)
        service = parent
        if f.given("service"):
            if parent is not None:
                f.error("service", "not allowed in a route nested under a service")
            else:
                service = self.services.find(f, "service")
        if not any(f.raw(key) for key in _MATCH_FIELDS):
            self.report.error(
                path, "must set at least one of 'methods', 'hosts', 'headers', 'paths'"
            )
        name, id_ = _entity_name(f, "name"), _entity_id(f)
        route = Route(
            name=name,
            id=id_,
            service=None,
            paths=self._paths(f),
            methods=f.each("methods", http_method),
            hosts=f.each("hosts", route_host),
            headers=self._headers(f),
            strip_path=f.boolean("strip_path", True),
            preserve_host=f.boolean("preserve_host", False),
            protocols=self._protocols(f),
            https_redirect_status_code=self._https_redirect(f),
            regex_priority=f.integer("regex_priority", 0),
            path_handling=f.choice("path_handling", "v0", ("v0", "v1")),
            snis=f.strings("snis"),
        )
        self._check_snis(f, route)
        if route.path_handling == "v1":
            # Kong 3.x says as much (kong/db/schema/entities/routes.lua: "will not work under
            # 'traditional_compatible' router_flavor, please use path_handling='v0' instead").
            f.warn(
                "path_handling",
                "'v1' is deprecated and does not work under Kong's default traditional_compatible"
                " router: the upstream path is built as with 'v0' (please use 'v0')",
            )
        self._route_extras(f)
        entry = _RouteEntry(path, route, service)
        self.routes.add(entry, name, id_)
        self.route_entries.append(entry)
        for plugin_path, plugin_data in f.entities("plugins"):
            self._plugin(plugin_path, plugin_data, (entry, None))

    def _paths(self, f: Fields) -> tuple[str, ...]:
        if self.legacy_version is None:
            return f.each("paths", route_path)
        # Kong 3 reads a pre-3.0 file's non-plain paths as regexes, adding the "~" they lacked.
        raw = f.raw("paths")
        legacy = [p for p in raw if isinstance(p, str)] if isinstance(raw, list) else []
        if converted := [p for p in legacy if legacy_path_is_regex(p)]:
            listed = ", ".join(f"'{p}'" for p in converted)
            message = f"_format_version {self.legacy_version}: {listed} read as regex with a '~'"
            f.warn("paths", f"{message} prefix, as Kong 3 does; run 'deck file convert'")
        return f.each("paths", lambda p: route_path("~" + p if legacy_path_is_regex(p) else p))

    def _headers(self, f: Fields) -> Mapping[str, tuple[str, ...]]:
        raw = f.mapping("headers") or {}
        path = at(f.path, "headers")
        values = Fields(self.report, path, raw, known=raw.keys())
        headers: dict[str, tuple[str, ...]] = {}
        for name, given in raw.items():
            if not isinstance(name, str):
                self.report.error(path, f"expected header names as strings, got {describe(name)}")
                continue
            try:
                lower = header_name(name)
            except ValueError as exc:
                values.error(name, str(exc))
                continue
            if lower in headers:
                values.error(name, f"duplicate header '{lower}'")
            elif given is None or given == []:
                values.error(name, "expected at least one value")
            else:
                headers[lower] = values.each(name, header_value)
        return MappingProxyType(headers)

    def _protocols(self, f: Fields) -> tuple[str, ...]:
        if f.raw("protocols") == []:
            f.error("protocols", "must not be empty")
        protocols = f.each("protocols", http_protocol) or ("http", "https")
        if "http" not in protocols:
            f.warn(
                "protocols",
                "https only: tokengate speaks plain HTTP, so requests get 426 (or the "
                "https_redirect_status_code redirect) unless they come from a --trusted-ips "
                "proxy that sends X-Forwarded-Proto: https",
            )
        return protocols

    def _check_snis(self, f: Fields, route: Route) -> None:
        if not route.snis:
            return
        if "https" not in route.protocols:  # Kong's routes schema refuses them then
            f.error("snis", "can only be set when 'protocols' includes 'https'")
        else:
            f.warn(
                "snis",
                "not matched (tokengate does not terminate TLS), but counted in the route's"
                " priority as Kong counts them",
            )

    def _https_redirect(self, f: Fields) -> int:
        code = f.integer("https_redirect_status_code", 426)
        if code not in _REDIRECT_CODES:
            expected = ", ".join(map(str, sorted(_REDIRECT_CODES)))
            f.error("https_redirect_status_code", f"must be one of {expected}, got {code}")
        return code

    def _route_extras(self, f: Fields) -> None:
        """Fields Kong accepts that do not change how tokengate routes: type-checked only."""
        f.boolean("request_buffering", True)
        f.boolean("response_buffering", True)
        f.strings("tags")
        for key in ("sources", "destinations"):
            if f.entities(key):
                # Kong's http route subschema (routes_subschemas.lua) refuses them.
                f.error(key, f"cannot set '{key}' when 'protocols' is 'http' or 'https'")

    def _note_consumers(self, top: Fields) -> None:
        """The names consumers go by, and which have a plugin that refuses requests (the rest
        of the entity is ignored, and named in a warning)."""
        ignored: dict[str, None] = {}
        seen: dict[tuple[str, str], str] = {}  # (field, value) → the consumer's path
        for path, consumer in top.entities("consumers"):
            ignored.update(dict.fromkeys(k for k in map(str, consumer) if k not in _CONSUMER_READ))
            fields: dict[str, str] = {}
            for key in ("id", "custom_id", "username"):
                value = consumer.get(key)
                if value is None:
                    continue
                if not isinstance(value, str):
                    self.report.error(at(path, key), f"expected a string, got {describe(value)}")
                elif not value:
                    self.report.error(at(path, key), "must not be empty")
                elif (key, value) in seen:  # unique in Kong: a second one is refused
                    other = seen[key, value]
                    self.report.error(at(path, key), f"'{value}' is {other}'s {key} too")
                else:
                    if key == "id":
                        _check_uuid(at(path, key), value, self.report)  # still names it
                    seen[key, value] = path
                    fields[key] = value
            if "username" not in fields and "custom_id" not in fields:
                if consumer.get("username") is None and consumer.get("custom_id") is None:
                    # Kong's at_least_one_of (a wrong one is reported above)
                    self.report.error(path, "a consumer needs a username or a custom_id")
                continue
            if "id" not in fields:
                fields["id"] = generated_consumer_id(fields)
                if ("id", fields["id"]) in seen and "username" in fields:
                    # Kong: a uniqueness violation of the primary key (a custom_id-only
                    # consumer's id is tokengate's own: Kong would give it a random one)
                    other = seen["id", fields["id"]]
                    self.report.error(
                        path,
                        f"the id Kong gives this consumer, '{fields['id']}' (derived from its "
                        f"username), is {other}'s id too",
                    )
                seen.setdefault(("id", fields["id"]), path)
            entity = Consumer(**fields)
            self.declared_consumers.append(entity)
            self.consumers_by_id.setdefault(fields["id"], entity)
            if "username" in fields:
                self.consumers_by_username[fields["username"]] = entity
            groups = consumer.get("groups")
            if isinstance(groups, list):
                self.groups_of.setdefault(fields["id"], []).extend(groups)
            plugins = consumer.get("plugins")
            self._check_nested_plugins(path, plugins, "consumer")
            if isinstance(plugins, list) and any(map(_refuses_requests, plugins)):
                self.refusing_consumers.append(entity)
        if ignored:
            top.warn(
                "consumers",
                f"ignored by tokengate: {', '.join(ignored)} (of a consumer, only its id, "
                "username and custom_id are read, for anonymous and consumer_claims)",
            )

    def find_consumer(self, name: object) -> Consumer | None:
        """The consumer `anonymous` names, found as Kong finds it per request (load_consumer):
        by id, then by username."""
        if not isinstance(name, str):
            return None
        return self.consumers_by_id.get(name) or self.consumers_by_username.get(name)

    def referenced_consumer(self, reference: object) -> Consumer | None:
        """The consumer a plugin's `consumer` names, found as Kong's declarative loader finds a
        reference: a string by username (the endpoint key), then by id; a mapping by its id."""
        if isinstance(reference, dict):
            found = reference.get("id")
            return self.consumers_by_id.get(found) if isinstance(found, str) else None
        if not isinstance(reference, str):
            return None
        return self.consumers_by_username.get(reference) or self.consumers_by_id.get(reference)

    def _check_nested_plugins(self, path: str, plugins: object, owner: str) -> None:
        """Plugins under a consumer or a consumer group are not run (only read for whether
        they refuse requests), but a name Kong would refuse is refused here too."""
        if plugins is None:
            return
        if not isinstance(plugins, list):
            self.report.error(at(path, "plugins"), f"expected a list, got {describe(plugins)}")
            return
        for position, plugin in enumerate(plugins):
            entry = item(at(path, "plugins"), position)
            if not isinstance(plugin, dict):
                # Kong refuses it; skipping it would also skip a plugin that refuses requests.
                self.report.error(entry, f"expected a mapping, got {describe(plugin)}")
                continue
            plugin_id = plugin.get("id")
            if isinstance(plugin_id, str):
                _check_uuid(at(entry, "id"), plugin_id, self.report)
                self.plugins.add(_Entry(entry), None, plugin_id)
            name = plugin.get("name")
            if isinstance(name, str):
                self.plugin_names.add(name)
            if not isinstance(name, str):
                self.report.error(at(entry, "name"), f"expected a string, got {describe(name)}")
            elif name == OIDC_PLUGIN or (name == CORS_PLUGIN and owner == "consumer"):
                # Kong's schemas for both: `consumer = typedefs.no_consumer` (openid-connect
                # finds the consumer; cors answers before any plugin has).
                self.report.error(at(entry, "name"), f"'{name}' cannot be scoped to a {owner}")
            elif name not in KONG_PLUGINS:
                self._unknown_plugin(entry, name)

    def _note_consumer_groups(self, top: Fields) -> None:
        """Groups are not run, but plugins may name them, and Kong refuses a malformed one."""
        groups = top.raw("consumer_groups")
        if groups is not None and not isinstance(groups, list):
            top.error("consumer_groups", f"expected a list, got {describe(groups)}")
            return
        names: set[str] = set()  # Kong's group name is unique among names
        ids = Registry[_Entry](self.report, "consumer group")  # and its id, its primary key
        for index, group in enumerate(groups or ()):
            path = item("consumer_groups", index)
            if not isinstance(group, dict):
                self.report.error(path, f"expected a mapping, got {describe(group)}")
                continue
            name = group.get("name")
            if not isinstance(name, str) or not name:
                what = "required field missing" if name is None else "expected a non-empty string"
                self.report.error(at(path, "name"), what)
            elif name in names:
                self.report.error(at(path, "name"), f"'{name}' names another group too")
            else:
                names.add(name)
            group_id = group.get("id")
            if group_id is not None and not isinstance(group_id, str):
                self.report.error(at(path, "id"), f"expected a string, got {describe(group_id)}")
                group_id = None
            elif group_id is not None:
                _check_uuid(at(path, "id"), group_id, self.report)  # still names it
                ids.add(_Entry(path), None, group_id)
            self.group_names.update(v for v in (name, group_id) if isinstance(v, str))
            for key in (name, group_id):
                if isinstance(key, str):
                    self.group_index.setdefault(key, index)
            members = group.get("consumers")
            if isinstance(members, list):
                self.group_members[index] = members
            plugins = group.get("plugins")
            self._check_nested_plugins(path, plugins, "consumer group")
            for position, plugin in enumerate(plugins if isinstance(plugins, list) else ()):
                if _refuses_requests(plugin):
                    plugin_path = item(at(item("consumer_groups", index), "plugins"), position)
                    self.group_plugin = self.group_plugin or plugin_path
                    self.refusing_groups.setdefault(index, plugin_path)

    def _plugin(self, path: str, data: dict[Any, Any], fixed_scope: _Scope | None) -> None:
        """A nested plugin has `fixed_scope`; a top-level one names its own (none: global)."""
        f = Fields(self.report, path, data, _PLUGIN_FIELDS)
        name = f.string("name", required=True)
        if name is not None:
            self.plugin_names.add(name)
        consumer = data.get("consumer")
        scoped = self.referenced_consumer(consumer) if consumer is not None else None
        if consumer is not None and scoped is None:
            # Kong refuses a reference to nothing; ignoring it would hide the plugin's scope.
            shown = f"'{consumer}'" if isinstance(consumer, str) else describe(consumer)
            f.error("consumer", f"{shown} names no consumer of this file")
        refused = scoped if _refuses_requests(data) else None
        if refused is not None and refused not in self.refusing_consumers:
            self.refusing_consumers.append(refused)
        group = data.get("consumer_group")
        if group is not None:
            named = (group.get("id") or group.get("name")) if isinstance(group, dict) else group
            if not isinstance(named, str) or named not in self.group_names:
                f.error("consumer_group", "names no consumer group of this file")
            if _refuses_requests(data):
                self.group_plugin = self.group_plugin or path
                if isinstance(named, str) and named in self.group_index:
                    self.refusing_groups.setdefault(self.group_index[named], path)
        if name is not None and name not in KONG_PLUGINS and not self._unknown_plugin(path, name):
            return
        raw_config = f.mapping("config")
        config = raw_config or {}
        enabled = f.boolean("enabled", True)
        self.plugins.add(_Entry(path), None, _entity_id(f))
        _entity_name(f, "instance_name")
        f.strings("tags")
        f.mapping("ordering")
        protocols = f.each("protocols", kong_protocol)
        scope = self._plugin_scope(f, fixed_scope)
        if name == CORS_PLUGIN:
            self._cors_plugin(f, raw_config, scope, enabled, protocols)
            return
        if name != OIDC_PLUGIN:
            if name is not None and scope is not None and enabled:
                self._other_plugin(
                    f, name, for_consumer=consumer is not None or f.given("consumer_group")
                )
            return
        for key in ("consumer", "consumer_group"):
            if f.given(key):
                # Kong's schema for it: `consumer = typedefs.no_consumer` (it finds the consumer).
                f.error(key, f"'{OIDC_PLUGIN}' cannot be scoped to a {key.replace('_', ' ')}")
                return
        # Validated even when disabled or its scope is broken, as Kong does: every error at once.
        oidc = None
        if raw_config is not None or not f.given("config"):
            oidc = parse_oidc_config(config, at(path, "config"), self.report)
        if scope is None:
            return
        if f.given("ordering"):
            f.warn("ordering", "ignored by tokengate")
        if protocols and not {"http", "https"} <= set(protocols):
            # Failing closed: skipping auth for one scheme would open the route on it.
            f.warn("protocols", "ignored: tokengate runs openid-connect on http and https")
        plugin = Plugin(name=name, config=MappingProxyType(copy.deepcopy(config)))
        self.plugin_entries.append(_PluginEntry(path, plugin, oidc, enabled, scope))

    def _cors_plugin(
        self,
        f: Fields,
        raw_config: dict[Any, Any] | None,
        scope: _Scope | None,
        enabled: bool,
        protocols: tuple[str, ...],
    ) -> None:
        if f.given("consumer"):
            # Kong's schema for it: `consumer = typedefs.no_consumer`.
            f.error("consumer", f"'{CORS_PLUGIN}' cannot be scoped to a consumer")
            return
        cors = None
        if raw_config is not None or not f.given("config"):
            cors = parse_cors_config(raw_config or {}, at(f.path, "config"), self.report)
        if f.given("consumer_group"):
            message = "tokengate gives no request a consumer group: this cors never applies"
            f.warn("consumer_group", message)
            return
        if scope is None:
            return
        if f.given("ordering"):
            f.warn("ordering", "ignored by tokengate")
        if protocols and not {"http", "https"} <= set(protocols):
            f.warn("protocols", f"ignored: tokengate runs {CORS_PLUGIN} on http and https")
        plugin = Plugin(name=CORS_PLUGIN, config=MappingProxyType(copy.deepcopy(raw_config or {})))
        self.cors_entries.append(_PluginEntry(f.path, plugin, cors, enabled, scope))

    def _other_plugin(self, f: Fields, name: str, *, for_consumer: bool) -> None:
        """A plugin tokengate does not run, on a route, a service or every route. One scoped
        to a consumer (group) runs in Kong only for requests it identifies as that consumer's,
        which tokengate never does (`anonymous` aside, checked apart): warned about."""
        if name not in KONG_PLUGINS:
            return  # --ignore-plugins accepted it (warned about by _unknown_plugin)
        if name not in ACCESS_PLUGINS or for_consumer:
            message = f"plugin '{name}' is not supported by tokengate and is ignored"
            f.report.warn(f.path, message)
        elif name in self.ignored_plugins:
            self._warn_ignored(f.path, name)
        else:
            # Kong refuses a file whose plugins it cannot run; ignoring one that decides who
            # gets in would open, without a word, what Kong keeps shut.
            f.error(
                "name",
                f"plugin '{name}' controls access in Kong and tokengate does not run it, so "
                "what it guards would be open: remove it or set enabled: false, or run with "
                f"--ignore-plugins {name} to accept that{self._misspelt_ignore(name)}",
            )

    def _warn_ignored(self, path: str, name: str) -> None:
        message = f"plugin '{name}' is not run (--ignore-plugins): what it guards is open"
        self.report.warn(path, message)

    def _unknown_plugin(self, path: str, name: str) -> bool:
        """A name Kong does not bundle: Kong refuses the file unless that plugin is installed,
        and when it is (a custom one) tokengate cannot run it. An error, unless --ignore-plugins
        names it; whether the rest of the entry is still read."""
        if name in self.ignored_plugins:
            self._warn_ignored(path, name)
            return True
        spelled = kong_spelling(name)
        if spelled is not None:
            kongs = "the OpenID Connect plugin is" if spelled == OIDC_PLUGIN else "Kong's is"
            self.report.error(at(path, "name"), f"'{name}' is no plugin; {kongs} '{spelled}'")
            return False
        close = closest_plugin(name)
        meant = f" (did you mean '{close}'?)" if close is not None else ""
        # Ignoring it would turn off, without a word, whatever it does in Kong.
        self.report.error(
            at(path, "name"),
            f"'{name}' is no plugin Kong bundles{meant}, and tokengate runs only "
            f"'{OIDC_PLUGIN}' and '{CORS_PLUGIN}' (Kong refuses a plugin it has not loaded): if "
            f"it is a custom plugin of yours, run with --ignore-plugins {name} to accept that "
            f"what it does is not done{self._misspelt_ignore(name)}",
        )
        return False

    def _plugin_scope(self, f: Fields, fixed: _Scope | None) -> _Scope | None:
        """None when a reference is broken (already reported)."""
        if fixed is not None:
            for key in ("service", "route"):
                if f.given(key):
                    f.error(key, "not allowed in a nested plugin; it applies where it is nested")
            return fixed
        route = self.routes.find(f, "route") if f.given("route") else None
        service = self.services.find(f, "service") if f.given("service") else None
        if (f.given("route") and route is None) or (f.given("service") and service is None):
            return None
        return route, service

    def _finish(self) -> GatewayConfig:
        active = self._active_plugins()
        active_cors = self._active(self.cors_entries, CORS_PLUGIN)
        routes = []
        for entry in self.route_entries:
            owner = entry.service
            if owner is not None and not owner.enabled:
                message = f"route ignored: service '{owner.service.name}' is disabled"
                self.report.warn(entry.path, message)
                continue
            if owner is None:
                message = (
                    "route has no service; requests it matches get 503"
                    ' "no Service found with those values"'
                )
                self.report.warn(entry.path, message)
            plugin = _effective_plugin(entry, active)
            cors = _effective_plugin(entry, active_cors)
            routes.append(
                replace(
                    entry.route,
                    service=owner.service if owner else None,
                    plugins=tuple(found.plugin for found in (cors, plugin) if found is not None),
                    oidc=plugin.typed if plugin else None,
                    cors=cors.typed if cors else None,
                )
            )
        services = tuple(entry.service for entry in self.service_entries if entry.enabled)
        return GatewayConfig(services, tuple(routes), tuple(self.report.warnings))

    def _check_anonymous(self, entry: _PluginEntry[OidcConfig]) -> None:
        anonymous = entry.typed.anonymous if entry.typed is not None else None
        if not anonymous or not entry.enabled:  # Kong looks it up per request, when it runs
            return
        path = at(at(entry.path, "config"), "anonymous")
        found = self.find_consumer(anonymous)
        if found is None:
            # Kong looks the consumer up and, when it is missing, fails every request that has
            # no valid token: letting them through instead would open the route.
            self.report.error(
                path,
                f"names consumer '{anonymous}', which this file does not declare (Kong then "
                "answers every request without a valid token with an error); declare it under "
                "`consumers` (username or id)",
            )
        elif found in self.refusing_consumers:
            self.report.error(
                path,
                f"consumer '{anonymous}' has a plugin that refuses requests, which tokengate "
                "does not run: Kong runs it on every anonymous request (a request-termination "
                "there refuses them all)",
            )
        elif (group_plugin := self._refusing_group_plugin(found)) is not None:
            self.report.error(
                path,
                f"consumer '{anonymous}' is in a consumer group with a plugin that refuses "
                f"requests ({group_plugin}), which tokengate does not run: Kong runs it on every "
                "anonymous request",
            )
        elif entry.typed is not None:
            consumer = found
            if not self._sendable(path, consumer, anonymous):
                return
            entry.typed = replace(entry.typed, anonymous_consumer=consumer)

    def _refusing_group_plugin(self, consumer: Consumer) -> str | None:
        """The path of a plugin that refuses requests on a group `consumer` is in, if any."""
        groups = {self._group_named(ref) for ref in self.groups_of.get(consumer.id or "", ())}
        for index, plugin_path in self.refusing_groups.items():
            members = self.group_members.get(index, ())
            if index in groups or any(self._member(ref) is consumer for ref in members):
                return plugin_path
        return None

    def _group_named(self, reference: object) -> int | None:
        """The group a consumer's `groups` entry names: `{name: ..}`, `{id: ..}` or a string."""
        if isinstance(reference, dict):
            reference = reference.get("id") or reference.get("name")
        return self.group_index.get(reference) if isinstance(reference, str) else None

    def _member(self, reference: object) -> Consumer | None:
        """The consumer a group's `consumers` entry names: `{username: ..}`, `{id: ..}`, or
        a string (a username, else an id)."""
        if isinstance(reference, dict):
            found = reference.get("id")
            if isinstance(found, str):
                return self.consumers_by_id.get(found)
            found = reference.get("username")
            return self.consumers_by_username.get(found) if isinstance(found, str) else None
        return self.referenced_consumer(reference)

    def _sendable(self, path: str, consumer: Consumer, who: str) -> bool:
        """Whether every field of `consumer` can go in an X-Consumer-* header (else an error)."""
        name = _unsendable_field(consumer)
        if name is not None:
            self._report_unsendable(path, who, name)
        return name is None

    def _report_unsendable(self, path: str, who: str, name: str) -> None:
        message = f"consumer '{who}' has a {name} that cannot be sent in an X-Consumer-* header"
        self.report.error(path, message + " (printable ASCII only)")

    def _check_consumer_mapping(
        self,
        entry: _PluginEntry[OidcConfig],
        consumers: tuple[Consumer, ...],
        unsendable: tuple[Consumer, str] | None,
    ) -> None:
        """consumer_claims maps tokens to the file's consumers: give it them all, once sure
        none would be refused in Kong by a plugin tokengate does not run, and that each can be
        sent upstream (`unsendable`: the first that cannot, with the field)."""
        if entry.typed is None or not entry.typed.consumer_claims or not entry.enabled:
            return
        path = at(at(entry.path, "config"), "consumer_claims")
        if self.refusing_consumers:
            who = _who(self.refusing_consumers[0])
            self.report.error(
                path,
                f"consumer '{who}' has a plugin that refuses requests, which tokengate does not "
                "run: Kong runs it on every request whose token maps to that consumer",
            )
            return
        if self.group_plugin is not None:
            self.report.error(
                path,
                f"a consumer group has a plugin that refuses requests ({self.group_plugin}), "
                "which tokengate does not run: Kong runs it on every request whose token maps "
                "to one of the group's consumers",
            )
            return
        if unsendable is not None:
            consumer, name = unsendable
            self._report_unsendable(path, _who(consumer), name)
            return
        entry.typed = replace(entry.typed, consumers=consumers)

    def _active_plugins(self) -> dict[_Scope, _PluginEntry[OidcConfig]]:
        """Enabled openid-connect plugins by scope."""
        # The same for every plugin that maps tokens to consumers: worked out once.
        consumers = tuple(self.declared_consumers)
        unsendable = next(((c, name) for c in consumers if (name := _unsendable_field(c))), None)
        for entry in self.plugin_entries:
            self._check_anonymous(entry)
            self._check_consumer_mapping(entry, consumers, unsendable)
        return self._active(self.plugin_entries, OIDC_PLUGIN)

    def _active(
        self, entries: Sequence[_PluginEntry[_Typed]], name: str
    ) -> dict[_Scope, _PluginEntry[_Typed]]:
        """The enabled entries of one plugin by scope; Kong allows one instance per scope."""
        first: dict[_Scope, _PluginEntry[_Typed]] = {}
        active: dict[_Scope, _PluginEntry[_Typed]] = {}
        for entry in entries:
            seen = first.setdefault(entry.scope, entry)
            if seen is not entry:
                message = f"duplicate '{name}' plugin on the same scope as {seen.path}"
                self.report.error(entry.path, message)
            elif entry.enabled:
                active[entry.scope] = entry
        return active


# Kong's declarative loader gives an entity declared without an id a UUIDv5 of its endpoint key
# (a consumer's username) in a namespace derived from the entity's name, so it is the same at
# every load; its namespace of namespaces is this one.
_KONG_ENTITIES_NAMESPACE: Final = uuid.UUID("fd02801f-0957-4a15-a55a-c8d9606f30b5")
_KONG_CONSUMERS_NAMESPACE: Final = uuid.uuid5(_KONG_ENTITIES_NAMESPACE, "consumers")
# A consumer with only a custom_id has no endpoint key: Kong gives it a random UUID at each load.
# tokengate derives one from the custom_id instead, so that every worker and every reload agree.
_CUSTOM_ID_NAMESPACE: Final = uuid.uuid5(_KONG_ENTITIES_NAMESPACE, "tokengate:consumers:custom_id")


def generated_consumer_id(fields: Mapping[str, str]) -> str:
    """The id of a consumer declared without one: Kong's for a username, else stable."""
    if "username" in fields:
        return str(uuid.uuid5(_KONG_CONSUMERS_NAMESPACE, fields["username"]))
    return str(uuid.uuid5(_CUSTOM_ID_NAMESPACE, fields["custom_id"]))


# A consumer's fields tokengate reads, or that change nothing (the rest are named in a warning).
_CONSUMER_READ = frozenset({"id", "username", "custom_id", "tags", "type", *_TIMESTAMPS})
_GROUPS_READ = (
    "Kong entity 'consumer_groups' is not supported by tokengate (it gives no request a "
    "consumer group) and is ignored, but for refusing consumer_claims beside a plugin there that "
    "refuses requests"
)
# What an X-Consumer-* header line may carry.
_PLAIN_VALUE: Final = re.compile(r"[\x20-\x7e]*")


def _check_uuid(path: str, value: str, report: Report) -> None:
    """An error unless `value` is a UUID. The entity still goes by it, so that what refers to
    it is not reported too (the one mistake is the id)."""
    try:
        kong_uuid(value)
    except ValueError as exc:
        report.error(path, str(exc))


def _entity_id(f: Fields) -> str | None:
    """An entity's `id`: a string, checked to be a UUID as in Kong, and kept either way."""
    id_ = f.string("id")
    if id_ is not None:
        _check_uuid(at(f.path, "id"), id_, f.report)
    return id_


def _entity_name(f: Fields, key: str) -> str | None:
    """A service's or route's `name` or a plugin's `instance_name`: a string, checked against
    Kong's utf8_name typedef, and kept either way (what refers to it is not reported too)."""
    name = f.string(key)
    if name is not None:
        try:
            kong_name(name)
        except ValueError as exc:
            f.error(key, str(exc))
    return name


def _unsendable_field(consumer: Consumer) -> str | None:
    """The first field of `consumer` an X-Consumer-* header cannot carry, or None."""
    for name in ("id", "custom_id", "username"):
        if not _PLAIN_VALUE.fullmatch(getattr(consumer, name) or ""):
            return name
    return None


def _who(consumer: Consumer) -> str:
    """The name a consumer goes by in a message: one the file gives it (its id may not be)."""
    return consumer.username or consumer.custom_id or consumer.id or "?"


def _refuses_requests(plugin: object) -> bool:
    """Whether a plugin entry may refuse requests (on the anonymous consumer: all of them): an
    access plugin, or one Kong does not bundle, whose doings tokengate cannot know."""
    if not isinstance(plugin, dict) or plugin.get("enabled", True) is False:
        return False
    name = plugin.get("name")
    return isinstance(name, str) and (name in ACCESS_PLUGINS or name not in KONG_PLUGINS)


# What turns Kong's health checks on: an active probe interval or a passive threshold above 0.
_HEALTH_CHECK_SWITCHES: Final = (
    ("active", "healthy", "interval"),
    ("active", "unhealthy", "interval"),
    ("passive", "healthy", "successes"),
    ("passive", "unhealthy", "http_failures"),
    ("passive", "unhealthy", "tcp_failures"),
    ("passive", "unhealthy", "timeouts"),
)


def _spelt_as(given: str, name: str) -> bool:
    """Whether `given` (an --ignore-plugins entry) looks like a misspelling of plugin `name`."""
    if given == name:
        return False
    return kong_spelling(given) == name or difflib.SequenceMatcher(None, given, name).ratio() >= 0.8


def _one_typo_apart(a: str, b: str) -> bool:
    """One character left out, added, changed or swapped with its neighbour; but not one digit
    for another (orders-v1 and orders-v2 are siblings, not a typo)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    if len(a) != len(b):
        shorter, longer = (a, b) if len(a) < len(b) else (b, a)
        return shorter[at:] == longer[at + 1 :]
    if a[at + 1 :] == b[at + 1 :]:  # one changed
        return not (a[at].isdigit() and b[at].isdigit())
    return (  # two neighbours swapped
        at + 1 < len(a) and a[at] == b[at + 1] and a[at + 1] == b[at] and a[at + 2 :] == b[at + 2 :]
    )


def _health_checks_on(healthchecks: Any) -> bool:
    """Whether Kong would run health checks (decK writes the whole block, all zeros, for every
    upstream: that is not a wish for them)."""

    def setting(keys: tuple[str, ...]) -> Any:
        value = healthchecks
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return any(
        isinstance(n, int | float) and not isinstance(n, bool) and n > 0
        for n in map(setting, _HEALTH_CHECK_SWITCHES)
    )


_E = TypeVar("_E")


def _effective_plugin(route: _RouteEntry, active: Mapping[_Scope, _E]) -> _E | None:
    # Kong's precedence, most specific first; a disabled plugin is absent, so the next one applies.
    service = route.service
    for scope in ((route, service), (route, None), (None, service), (None, None)):
        if (plugin := active.get(scope)) is not None:
            return plugin
    return None
