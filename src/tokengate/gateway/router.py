"""Kong router semantics (`router_flavor = traditional_compatible`, Kong 3.x) for kong.yaml routes.

    router = Router(config.routes)                       # once per config
    found = router.match("GET", request.host, canonical_path(raw_path), request.headers)
    if found is None: ...                                # 404, no route matched
    upstream_url = found.route.service.origin + found.upstream_path

## Matching (a route matches when every field it sets matches; within a field, any value)

- paths: plain paths are prefixes compared with `startswith` on the canonical path (so `/foo`
  also matches `/foobar`, as in Kong); plain route paths are canonicalised like requests.
  `~`-paths are regexes anchored at the start (Kong prepends `^`), never at the end, run by RE2
  (regex.py): linear-time and of the syntax family of Kong 3's Rust regex.
- hosts: compared case-insensitively. `example.com` matches that name on any port;
  `example.com:8000` only with that port in the Host header, or with no port there on a
  request that came in on port 8000 (Kong's router reads the port a request came in on then:
  `default_port`). `*.example.com` matches one or
  more leftmost labels (`a.example.com`, `x.y.example.com`), `example.*` one or more rightmost.
- methods: exact, case-sensitive (HTTP methods are); an empty tuple means any method.
- headers: every configured name present with one of the values (case-insensitive); a value
  written `~*regex` is searched (not anchored) in the value, case-insensitively.

## Priority (docs: "Traditional router" > "Determining priority for traditional compatible mode";
## code: `kong/router/transform.lua` `get_priority`, `split_routes_and_services_by_path`)

A route with several paths is split: one entry for all its regex paths, one per prefix length.
Entries are tried in descending order of this key, most significant first:

1. match weight: how many of methods, hosts, headers, paths, snis the route sets (snis are never
   matched here: over plain HTTP, Kong's compatible expression lets any SNI through);
2. plain hosts only: the route has hosts and none is a wildcard (no hosts at all does not count);
3. number of header names;
4. regex entry before prefix entry, regexes by `regex_priority` (higher first);
5. prefix length (longer first).

Kong leaves equal keys unordered; here they keep kong.yaml order. The first matching entry wins.

## Upstream path (`kong/router/utils.lua` `get_upstream_uri_v0`)

The matched prefix (or the text matched by the regex) is stripped when `strip_path`, then joined
to `service.path` (default "/") as segments: `path_handling: v0`. The traditional_compatible
router (`kong/router/atc.lua`) only ever calls `get_upstream_uri_v0`, so a route that says `v1`
gets v0's path in Kong 3.x too; `config validate` warns about it, as Kong does.

## Cost (timeit, CPython 3.11, 10 routes)

`match()` costs ~0.15 µs on a cache hit (~0.8 µs when some route matches on headers: their
values are part of the key) and 2-6 µs on a miss, plus about 6 µs for each regex route whose
literal start the path has (RE2's call; see regex.py). The cache is a dict keyed by (method, host,
path[, values of the headers routes look at]) holding at most 4096 answers, negative ones too. It
is cleared when full, so random paths cost recomputation, never memory; long keys bypass it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokengate.gateway.config import Route
from tokengate.gateway.paths import BadPath, canonical_path
from tokengate.gateway.regex import HeaderRegex, PathRegex, RegexError

__all__ = ["RouteMatch", "Router", "upstream_path"]

CACHE_SIZE = 4096
# Requests whose key (method, host, path, header values) is longer are answered but not cached,
# so the cache holds at most ~CACHE_SIZE * 2 KiB (key and upstream path) whatever clients send.
_CACHE_MAX_KEY_CHARS = 1024


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route chosen for a request and the path to send upstream (already canonical)."""

    route: Route
    upstream_path: str
    # Kong's X-Forwarded-Prefix: the part of the path a strip_path route matched and removed
    # (none for "/"), and its header line, made once per cached match.
    prefix: str | None = None
    prefix_line: bytes = b""


class Router:
    """Routes sorted once by Kong's priority; `match` answers from a bounded cache."""

    def __init__(self, routes: Sequence[Route], *, default_port: str | None = None) -> None:
        # The port a Host without one stands for: the proxy's own (set before any request,
        # so cached answers never depend on it changing).
        self.default_port = default_port
        entries = [entry for route in routes for entry in _entries_for(route)]
        # sorted() is stable, also with reverse=True: equal priorities keep kong.yaml order.
        entries.sort(key=lambda entry: entry.priority, reverse=True)
        self._entries = tuple(entries)
        self._header_names = tuple(sorted({name for e in entries for name, _, _ in e.headers}))
        self._cache: dict[tuple[Any, ...], RouteMatch | None] = {}

    def match(
        self, method: str, host: str, path: str, headers: Mapping[str, str]
    ) -> RouteMatch | None:
        """The best route for this request, or None (404). `path` must be canonical."""
        if self._header_names:
            key: tuple[Any, ...] = (method, host, path, self._header_key(headers))
        else:
            key = (method, host, path)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._find(method, host, path, headers)
        if _key_chars(key) <= _CACHE_MAX_KEY_CHARS:
            if len(self._cache) >= CACHE_SIZE:
                # Clearing is O(1) amortised and keeps the bound; popping the oldest dict key
                # repeatedly degrades on CPython's dict layout.
                self._cache.clear()
            self._cache[key] = found
        return found

    def _header_key(self, headers: Mapping[str, str]) -> tuple[tuple[str, ...], ...]:
        # Only the headers some route looks at, lowered: the answer depends on nothing else.
        return tuple(
            [tuple([v.lower() for v in _header_values(headers, n)]) for n in self._header_names]
        )

    def _find(
        self, method: str, host: str, path: str, headers: Mapping[str, str]
    ) -> RouteMatch | None:
        hostname: str | None = None
        port: str | None = None
        for entry in self._entries:
            if entry.methods and method not in entry.methods:
                continue
            if entry.has_hosts:
                if hostname is None:
                    hostname, port = _split_host(host.lower())
                    if port is None:
                        port = self.default_port
                if not entry.host_matches(hostname, port):
                    continue
            if entry.prefix_len:
                # Inlined prefix check (the common entry): all its prefixes share one length.
                matched: str | None = path[: entry.prefix_len]
                if matched not in entry.prefixes:
                    continue
            else:
                matched = entry.regex_match(path)
                if matched is None:
                    continue
            if entry.headers and not entry.headers_match(headers):
                continue
            return _route_match(entry.route, path, matched)
        return None


def _route_match(route: Route, path: str, matched: str) -> RouteMatch:
    found = upstream_path(route, path, matched)
    if not route.strip_path or not matched or matched == "/":
        return RouteMatch(route, found)
    # The canonical path is ASCII (paths.py), and so is any part of it.
    return RouteMatch(route, found, matched, b"X-Forwarded-Prefix: %b\r\n" % matched.encode())


def _key_chars(key: tuple[Any, ...]) -> int:
    size = len(key[0]) + len(key[1]) + len(key[2])
    if len(key) == 4:
        size += sum(len(value) for values in key[3] for value in values)
    return size


class _Entry:
    """One route with one group of its paths (all regexes, or all prefixes of one length)."""

    __slots__ = (
        "any_port_hosts",
        "has_hosts",
        "headers",
        "methods",
        "port_hosts",
        "prefix_len",
        "prefixes",
        "priority",
        "regexes",
        "route",
        "wildcards",
    )

    def __init__(self, route: Route, prefixes: Sequence[str], regexes: Sequence[str]) -> None:
        self.route = route
        self.methods = frozenset(route.methods)
        self.prefixes = frozenset(prefixes)
        self.prefix_len = len(prefixes[0]) if prefixes else 0
        self.regexes = tuple(_compile_path_regex(route, regex) for regex in regexes)
        self.has_hosts = bool(route.hosts)
        self.any_port_hosts, self.port_hosts, self.wildcards = _compile_hosts(route.hosts)
        self.headers = _compile_headers(route)
        self.priority = _priority(route, self.prefix_len, is_regex=bool(regexes))

    def host_matches(self, hostname: str, port: str | None) -> bool:
        if hostname in self.any_port_hosts:
            return True
        if port is not None and (hostname, port) in self.port_hosts:
            return True
        for suffix, prefix, wanted_port in self.wildcards:
            if wanted_port is not None and wanted_port != port:
                continue
            # At least one label must stand in for the "*": ".example.com" is not a match.
            if len(hostname) > len(suffix or prefix) and (
                hostname.endswith(suffix) if suffix else hostname.startswith(prefix)
            ):
                return True
        return False

    def regex_match(self, path: str) -> str | None:
        """The part of `path` the first matching regex matched ("" for a route without
        paths), or None."""
        for regex in self.regexes:
            found = regex.match(path)
            if found is not None:
                return found
        return None if self.regexes else ""

    def headers_match(self, headers: Mapping[str, str]) -> bool:
        for name, values, patterns in self.headers:
            if not any(
                value in values or any(p.search(value) for p in patterns)
                for value in (v.lower() for v in _header_values(headers, name))
            ):
                return False
        return True


def upstream_path(route: Route, path: str, matched: str) -> str:
    """Kong's upstream path for `path` (canonical) when `matched` is the part of it the route
    matched ("" for a route without paths). Always v0: see the module docstring."""
    # No service: the proxy answers 503 anyway; Kong's base is "/" then too.
    base = (route.service.path if route.service is not None else None) or "/"
    # After stripping, a postfix may start inside a segment: "/foo.." with prefix "/foo" leaves
    # "..", which Kong sanitises so that stripping never creates a dot segment upstream.
    postfix = _sanitize_postfix(path[len(matched) :] if matched else path[1:])
    return _upstream_path_v0(base, postfix, path, strip=route.strip_path)


def _upstream_path_v0(base: str, postfix: str, path: str, *, strip: bool) -> str:
    if base.endswith("/"):
        if not strip:
            return base + path[1:]
        if postfix == "":
            if base == "/":
                return "/"
            return base if path.endswith("/") else base[:-1]
        if postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix
    if not strip:
        return base if path == "/" else base + path
    if postfix == "":
        return base + "/" if len(path) > 1 and path.endswith("/") else base
    if postfix.startswith("/"):
        return base + postfix
    return base + "/" + postfix


def _sanitize_postfix(postfix: str) -> str:
    if postfix in (".", ".."):
        return ""
    if postfix.startswith("./"):
        return postfix[2:]
    if postfix.startswith("../"):
        return postfix[3:]
    return postfix


def _entries_for(route: Route) -> list[_Entry]:
    """Kong's split: all regex paths together, prefix paths grouped by length."""
    regexes = [p[1:] for p in route.paths if p.startswith("~")]
    by_length: dict[int, list[str]] = {}
    for raw in route.paths:
        if not raw.startswith("~"):
            prefix = _canonical_route_path(route, raw)
            by_length.setdefault(len(prefix), []).append(prefix)
    entries = [_Entry(route, prefixes, ()) for prefixes in by_length.values()]
    if regexes or not route.paths:
        entries.append(_Entry(route, (), regexes))
    return entries


def _priority(route: Route, prefix_len: int, *, is_regex: bool) -> tuple[int, ...]:
    weight = sum(map(bool, (route.methods, route.hosts, route.headers, route.paths, route.snis)))
    plain_hosts_only = bool(route.hosts) and not any("*" in host for host in route.hosts)
    return (
        weight,
        int(plain_hosts_only),
        len(route.headers),
        int(is_regex),
        route.regex_priority if is_regex else 0,
        prefix_len,
    )


def _canonical_route_path(route: Route, raw: str) -> str:
    # Kong normalises plain route paths like request paths, so "/fo%6F" routes "/foo".
    try:
        return canonical_path(raw)
    except BadPath as exc:
        raise ValueError(f"route {route.name!r}: path {raw!r}: {exc.reason}") from None


def _compile_path_regex(route: Route, regex: str) -> PathRegex:
    try:
        return PathRegex(regex)
    except RegexError as exc:
        raise ValueError(f"route {route.name!r}: regex path {regex!r}: {exc}") from None


_HostSets = tuple[
    frozenset[str], frozenset[tuple[str, str]], tuple[tuple[str, str, str | None], ...]
]


def _compile_hosts(hosts: Iterable[str]) -> _HostSets:
    any_port: set[str] = set()
    with_port: set[tuple[str, str]] = set()
    wildcards: list[tuple[str, str, str | None]] = []
    for host in hosts:
        name, port = _split_host(host.lower())
        # A request's Host loses one trailing dot before routing: so does a route's host, or
        # `admin.example.com.` would never match and its requests would fall to another route.
        name = name.removesuffix(".")
        if name.startswith("*"):
            wildcards.append((name[1:], "", port))
        elif name.endswith("*"):
            wildcards.append(("", name[:-1], port))
        elif port is None:
            any_port.add(name)
        else:
            with_port.add((name, port))
    return frozenset(any_port), frozenset(with_port), tuple(wildcards)


def _compile_headers(
    route: Route,
) -> tuple[tuple[str, frozenset[str], tuple[HeaderRegex, ...]], ...]:
    compiled = []
    for name, values in route.headers.items():
        plain = frozenset(v.lower() for v in values if not v.startswith("~*"))
        try:
            # Kong lower-cases the pattern; matching without case has the same effect without
            # turning "\D" into "\d".
            patterns = tuple(HeaderRegex(v[2:]) for v in values if v.startswith("~*"))
        except RegexError as exc:
            raise ValueError(f"route {route.name!r}: header {name!r}: {exc}") from None
        # Kong's router names a header with "_" for "-" (`x_tenant` is X-Tenant, and X_Tenant
        # too: _header_values); kept here spelt with "-".
        compiled.append((name.lower().replace("_", "-"), plain, patterns))
    return tuple(compiled)


def _split_host(host: str) -> tuple[str, str | None]:
    """`name[:port]` → (name, port); "[v6]:port" keeps its brackets; a non-numeric port is part
    of the name (no route can match it)."""
    colon = host.rfind(":")
    if colon == -1 or host[-1] == "]":
        return host, None
    port = host[colon + 1 :]
    if not port:
        return host[:colon], None
    if port.isascii() and port.isdigit():
        return host[:colon], str(int(port))  # "08000" is port 8000, as Kong's tonumber()
    return host, None


def _header_values(headers: Mapping[str, str], name: str) -> Sequence[str]:
    """The values a route's header `name` (lower-case, "-" for "_") finds, as Kong's router
    finds them in ngx.req.get_headers(): under the name spelt with "_" (a client's `X_Tenant`,
    which nginx passes on with underscores_in_headers, and CGI-style upstreams read as
    X-Tenant), else under the name spelt with "-"."""
    underscored = name.replace("-", "_")
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values: Sequence[str] = getall(underscored, ()) if underscored != name else ()
        return values or getall(name, ())
    # A plain Mapping (tests, tools): compare names case-insensitively ourselves.
    items = [(key.lower(), value) for key, value in headers.items()]
    return [v for k, v in items if k == underscored] or [v for k, v in items if k == name]
