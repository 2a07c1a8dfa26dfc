"""Router: Kong's documented matching, priority and upstream paths (traditional_compatible)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from tokengate.gateway import router as router_module
from tokengate.gateway.config import Route, Service
from tokengate.gateway.paths import BadPath, canonical_path
from tokengate.gateway.router import Router, upstream_path

NO_HEADERS: Mapping[str, str] = CIMultiDictProxy(CIMultiDict())


def service(path: str | None = None, name: str = "svc") -> Service:
    return Service(
        name=name,
        protocol="http",
        host="upstream.internal",
        port=8080,
        path=path,
        connect_timeout=60.0,
        read_timeout=60.0,
        write_timeout=60.0,
        retries=5,
    )


_DEFAULT_SERVICE = service()


def route(
    name: str,
    *,
    paths: Sequence[str] = (),
    methods: Sequence[str] = (),
    hosts: Sequence[str] = (),
    headers: Mapping[str, Sequence[str]] | None = None,
    svc: Service | None = _DEFAULT_SERVICE,
    strip_path: bool = True,
    regex_priority: int = 0,
    path_handling: str = "v0",
    snis: Sequence[str] = (),
) -> Route:
    return Route(
        name=name,
        service=svc,
        paths=tuple(paths),
        methods=tuple(methods),
        hosts=tuple(hosts),
        headers={k: tuple(v) for k, v in (headers or {}).items()},
        strip_path=strip_path,
        regex_priority=regex_priority,
        path_handling=path_handling,
        snis=tuple(snis),
    )


def headers(*pairs: tuple[str, str]) -> Mapping[str, str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def matched_name(
    router: Router,
    path: str,
    *,
    method: str = "GET",
    host: str = "gateway.test",
    request_headers: Mapping[str, str] = NO_HEADERS,
) -> str | None:
    found = router.match(method, host, path, request_headers)
    return None if found is None else found.route.name


# --- paths -------------------------------------------------------------------------------------


def test_longest_prefix_wins_whatever_the_file_order() -> None:
    # Docs: "the longest paths get evaluated first" (/service vs /service/resource).
    for order in (1, -1):
        routes = [route("short", paths=["/service"]), route("long", paths=["/service/resource"])]
        router = Router(routes[::order])
        assert matched_name(router, "/service/resource/1") == "long"
        assert matched_name(router, "/service/resource") == "long"
        assert matched_name(router, "/service/other") == "short"
        assert matched_name(router, "/service") == "short"


def test_prefix_is_a_plain_startswith_as_in_kong() -> None:
    router = Router([route("foo", paths=["/foo"])])
    assert matched_name(router, "/foobar") == "foo"
    assert matched_name(router, "/fo") is None
    assert matched_name(router, "/FOO") is None  # paths are case-sensitive


def test_route_paths_are_canonicalised_like_requests() -> None:
    router = Router([route("foo", paths=["/fo%6F//bar/"])])
    assert matched_name(router, "/foo/bar/x") == "foo"


@pytest.mark.parametrize("bad", ["/a/%2F", "/..", "relative"])
def test_bad_route_path_is_a_config_error(bad: str) -> None:
    with pytest.raises(ValueError, match="path"):
        Router([route("bad", paths=[bad])])


def test_bad_regex_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="regex"):
        Router([route("bad", paths=["~/a(["])])


def test_regex_priority_documented_example() -> None:
    # Docs, "Regex evaluation order": evaluated as /version/\d+/status/\d+ (priority 6),
    # /status/\d+, /version/any/, then the prefix /version.
    router = Router(
        [
            route("status", paths=[r"~/status/\d+"], regex_priority=0),
            route("version-status", paths=[r"~/version/\d+/status/\d+"], regex_priority=6),
            route("version", paths=["/version"]),
            route("version-any", paths=["~/version/any/"]),
        ]
    )
    assert matched_name(router, "/version/1/status/2") == "version-status"
    assert matched_name(router, "/status/42") == "status"
    assert matched_name(router, "/version/any/thing") == "version-any"  # regex before prefix
    assert matched_name(router, "/version/other") == "version"


def test_regex_priority_orders_overlapping_regexes() -> None:
    low = route("low", paths=[r"~/items/\d+"], regex_priority=1)
    high = route("high", paths=[r"~/items/"], regex_priority=2)
    assert matched_name(Router([low, high]), "/items/1") == "high"
    # Equal priorities: Kong leaves it undefined; we keep file order.
    same = route("same", paths=[r"~/items/"], regex_priority=1)
    assert matched_name(Router([low, same]), "/items/1") == "low"
    assert matched_name(Router([same, low]), "/items/1") == "same"


def test_regex_is_anchored_at_the_start_only() -> None:
    router = Router([route("status", paths=[r"~/status/\d+"])])
    assert matched_name(router, "/status/1") == "status"
    assert matched_name(router, "/status/1/more") == "status"
    assert matched_name(router, "/x/status/1") is None


def test_regex_named_groups_in_pcre_syntax_compile() -> None:
    router = Router([route("v", paths=[r"~/version/(?<version>\d+)/users/(?<user>\S+)"])])
    assert matched_name(router, "/version/1/users/john") == "v"


def test_route_with_several_paths_is_split_by_length() -> None:
    # traditional_compatible splits a route per prefix length: "/abc" outranks this route's "/a"
    # but not its "/abcdef".
    router = Router([route("multi", paths=["/a", "/abcdef"]), route("abc", paths=["/abc"])])
    assert matched_name(router, "/abcdefg") == "multi"
    assert matched_name(router, "/abcx") == "abc"
    assert matched_name(router, "/ax") == "multi"


# --- hosts, methods, headers and their priority -------------------------------------------------


def test_more_matched_fields_win_documented_example() -> None:
    # Docs: hosts=[example.com] vs hosts=[example.com] + methods=[POST].
    router = Router(
        [
            route("host", hosts=["example.com"]),
            route("host-post", hosts=["example.com"], methods=["POST"]),
        ]
    )
    assert matched_name(router, "/", host="example.com") == "host"
    assert matched_name(router, "/", host="example.com", method="POST") == "host-post"


def test_route_with_hosts_beats_route_without() -> None:
    router = Router(
        [route("any", paths=["/api"]), route("host", paths=["/"], hosts=["example.com"])]
    )
    assert matched_name(router, "/api/x", host="example.com") == "host"  # weight 2 beats 1
    assert matched_name(router, "/api/x", host="other.com") == "any"
    assert matched_name(router, "/x", host="other.com") is None


def test_hosts_only_route_beats_paths_only_route() -> None:
    # Same weight (1); traditional_compatible gives the "plain hosts only" bit to routes that
    # have hosts, not to routes without (transform.lua get_priority), so the host route wins
    # even though the other has the longer path.
    router = Router([route("path", paths=["/"]), route("host", hosts=["example.com"])])
    assert matched_name(router, "/x", host="example.com") == "host"
    assert matched_name(router, "/x", host="other.com") == "path"


def test_negative_regex_priority_sorts_below_zero() -> None:
    low = route("low", paths=["~/a"], regex_priority=-1)
    zero = route("zero", paths=["~/a"])
    assert matched_name(Router([low, zero]), "/a") == "zero"


def test_methods() -> None:
    router = Router([route("read", paths=["/r"], methods=["GET", "HEAD"])])
    assert matched_name(router, "/r", method="HEAD") == "read"
    assert matched_name(router, "/r", method="POST") is None
    assert matched_name(router, "/r", method="get") is None  # methods are case-sensitive


def test_headers_documented_example() -> None:
    router = Router([route("versioned", headers={"version": ["v1", "v2"]})])
    assert matched_name(router, "/", request_headers=headers(("Version", "v1"))) == "versioned"
    assert matched_name(router, "/", request_headers=headers(("version", "V2"))) == "versioned"
    assert matched_name(router, "/", request_headers=headers(("version", "v3"))) is None
    assert matched_name(router, "/") is None


def test_all_header_names_required_any_value_any_instance() -> None:
    router = Router([route("both", headers={"x-a": ["1"], "x-b": ["2", "3"]})])
    both = headers(("X-A", "0"), ("X-A", "1"), ("X-B", "3"))
    assert matched_name(router, "/", request_headers=both) == "both"
    assert matched_name(router, "/", request_headers=headers(("X-A", "1"))) is None


def test_header_regex_values() -> None:
    router = Router([route("beta", headers={"user-agent": [r"~*^curl/\d"]})])
    assert matched_name(router, "/", request_headers=headers(("User-Agent", "CURL/8.0"))) == "beta"
    assert matched_name(router, "/", request_headers=headers(("User-Agent", "wget/1"))) is None


@pytest.mark.parametrize("name", ["x_tenant", "X-Tenant"])
def test_a_route_header_is_found_under_either_spelling_as_kong_finds_it(name: str) -> None:
    """Kong's router reads a route's `x_tenant` (or `x-tenant`) from ngx.req.get_headers(): a
    client's X_Tenant (nginx passes it on, and CGI-style upstreams read it as X-Tenant) first,
    else X-Tenant. A spelling the route missed would leave its requests to another, perhaps
    unprotected, route while the upstream still saw the tenant."""
    router = Router([route("tenant", headers={name: ["acme"]}), route("public")])
    for sent in (
        headers(("X-Tenant", "acme")),
        headers(("X_Tenant", "acme")),
        headers(("x_tenant", "other"), ("X-Tenant", "other"), ("X_TENANT", "acme")),
        {"X_Tenant": "acme"},  # a plain Mapping
    ):
        assert matched_name(router, "/", request_headers=sent) == "tenant", sent
    for sent in (
        headers(("X_Tenant", "other"), ("X-Tenant", "acme")),  # as Kong: X_Tenant found first
        {"X_Tenant": "other", "X-Tenant": "acme"},
        headers(("X-Ten_ant", "acme")),  # neither spelling
    ):
        assert matched_name(router, "/", request_headers=sent) == "public", sent


@pytest.mark.parametrize("pattern", ["admin.example.com.", "*.example.com.", "admin.*."])
def test_a_route_host_with_a_trailing_dot_matches_the_host_without_it(pattern: str) -> None:
    """The request's Host loses one trailing dot before routing (app.py), so must the route's:
    `admin.example.com.` is the same name."""
    router = Router([route("admin", hosts=[pattern])])
    assert matched_name(router, "/", host="admin.example.com") == "admin"


def test_plain_mapping_headers_are_case_insensitive_too() -> None:
    router = Router([route("versioned", headers={"version": ["v1"]})])
    assert matched_name(router, "/", request_headers={"Version": "V1"}) == "versioned"


def test_more_headers_beat_fewer() -> None:
    one = route("one", paths=["/"], headers={"x-a": ["1"]})
    two = route("two", paths=["/"], headers={"x-a": ["1"], "x-b": ["1"]})
    request = headers(("x-a", "1"), ("x-b", "1"))
    assert matched_name(Router([one, two]), "/", request_headers=request) == "two"
    assert matched_name(Router([one, two]), "/", request_headers=headers(("x-a", "1"))) == "one"


def test_plain_hosts_beat_headers_and_wildcards_at_equal_weight() -> None:
    # Same match weight (1): "plain hosts only" is more significant than the header count.
    plain = route("plain", hosts=["api.example.com"])
    wild = route("wild", hosts=["*.example.com"])
    header = route("header", headers={"x-a": ["1"]})
    router = Router([header, wild, plain])
    request = headers(("x-a", "1"))
    assert matched_name(router, "/", host="api.example.com", request_headers=request) == "plain"
    assert matched_name(router, "/", host="www.example.com", request_headers=request) == "header"
    assert matched_name(router, "/", host="www.example.com") == "wild"


def test_snis_are_never_matched_but_weigh_in_the_priority() -> None:
    # Kong's get_priority counts snis in the match weight; over plain HTTP its expression for
    # them is `net.protocol != "https" || tls.sni == ...`: true whatever the request.
    sni = route("sni", paths=["/api"], snis=["api.example.com"])
    longer = route("longer", paths=["/api/v2"])
    router = Router([longer, sni])
    assert matched_name(router, "/api/v2/x") == "sni"
    assert matched_name(Router([longer, route("plain", paths=["/api"])]), "/api/v2/x") == "longer"


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "x.y.example.com", True),
        ("*.example.com", "A.Example.COM:8000", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "a.example.org", False),
        ("example.*", "example.com", True),
        ("example.*", "example.co.uk", True),
        ("example.*", "example.", False),
        ("example.*", "example", False),
        ("example.*", "www.example.com", False),
        ("*.example.com:8443", "a.example.com:8443", True),
        ("*.example.com:8443", "a.example.com:8000", False),
        ("*.example.com:8443", "a.example.com", False),
    ],
)
def test_wildcard_hosts(pattern: str, host: str, matches: bool) -> None:
    router = Router([route("r", hosts=[pattern])])
    assert (matched_name(router, "/", host=host) == "r") is matches


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("example.com", "example.com", True),
        ("example.com", "EXAMPLE.com", True),
        ("example.com", "example.com:8000", True),  # no port in the route: any port
        ("example.com", "example.com:", True),
        ("example.com", "example.org", False),
        ("example.com", "", False),
        ("example.com:8000", "example.com:8000", True),
        ("example.com:8000", "example.com:08000", True),
        ("example.com:8000", "example.com:9000", False),
        ("example.com:8000", "example.com", False),
        ("[::1]", "[::1]:8000", True),
        ("[::1]:8000", "[::1]:8000", True),
        ("[::1]:8000", "[::1]", False),
        ("127.0.0.1", "127.0.0.1:8000", True),
    ],
)
def test_hosts_and_ports(pattern: str, host: str, matches: bool) -> None:
    router = Router([route("r", hosts=[pattern])])
    assert (matched_name(router, "/", host=host) == "r") is matches


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("example.com:8000", "example.com", True),  # no port: the one it came in on
        ("example.com:8000", "example.com:9000", False),  # a port written counts
        ("example.com:9000", "example.com", False),
        ("*.example.com:8000", "a.example.com", True),
        ("[::1]:8000", "[::1]", True),
        ("example.com", "example.com", True),
    ],
)
def test_a_host_without_a_port_is_on_the_port_the_request_came_in_on(
    pattern: str, host: str, matches: bool
) -> None:
    """Kong's router: net.dst.port is the Host header's port, else the proxy's own."""
    router = Router([route("r", hosts=[pattern])], default_port="8000")
    assert (matched_name(router, "/", host=host) == "r") is matches


def test_no_match_is_none() -> None:
    router = Router([route("a", paths=["/a"], hosts=["a.test"], methods=["GET"])])
    assert router.match("GET", "b.test", "/a", NO_HEADERS) is None
    assert Router([]).match("GET", "a.test", "/", NO_HEADERS) is None


def test_route_without_service_still_matches() -> None:
    orphan = route("orphan", paths=["/o"], svc=None)
    found = Router([orphan]).match("GET", "h", "/o/x", NO_HEADERS)
    assert found is not None  # the proxy answers 503 for it
    assert (found.route, found.upstream_path, found.prefix) == (orphan, "/x", "/o")


# --- upstream path (strip_path, path_handling) --------------------------------------------------

# Kong's admin-api table (docs "Routes" > path_handling), its v0 rows: service.path /s. The docs
# print "/s/fv01/" for the /fv0/ blank row, a typo: Kong's get_upstream_uri gives "/s/fv0/".
PATH_HANDLING_TABLE = [
    # route path, strip_path, request path, upstream path
    ("/fv0", False, "/fv0/req", "/s/fv0/req"),
    ("/fv0", False, "/fv0", "/s/fv0"),
    ("/tv0", True, "/tv0/req", "/s/req"),
    ("/tv0", True, "/tv0", "/s"),
    ("/fv0/", False, "/fv0/req", "/s/fv0/req"),
    ("/fv0/", False, "/fv0/", "/s/fv0/"),
    ("/tv0/", True, "/tv0/req", "/s/req"),
    ("/tv0/", True, "/tv0/", "/s/"),
    # the Kong 2.0 admin-api table: request paths glued to the route path
    ("/fv0", False, "/fv0req", "/s/fv0req"),
    ("/tv0", True, "/tv0req", "/s/req"),
]


@pytest.mark.parametrize("handling", ["v0", "v1"])
@pytest.mark.parametrize(("route_path", "strip", "request_path", "expected"), PATH_HANDLING_TABLE)
def test_path_handling_table(
    route_path: str, strip: bool, request_path: str, expected: str, handling: str
) -> None:
    """v1 rows give v0's paths: Kong 3.x's traditional_compatible router (atc.lua) builds every
    upstream path with get_upstream_uri_v0 (v1 would give "/sfv0/req" for the first row)."""
    r = route("r", paths=[route_path], svc=service("/s"), strip_path=strip, path_handling=handling)
    found = Router([r]).match("GET", "h", request_path, NO_HEADERS)
    assert found is not None
    assert found.upstream_path == expected


@pytest.mark.parametrize(
    ("service_path", "route_path", "strip", "request_path", "expected"),
    [
        (None, "/api", True, "/api/users", "/users"),
        (None, "/api", True, "/api", "/"),
        (None, "/api", True, "/api/", "/"),
        (None, "/api", False, "/api/users", "/api/users"),
        ("/", "/api", False, "/api", "/api"),
        ("/", "/", True, "/", "/"),
        ("/s", "/", False, "/", "/s"),
        ("/s/", "/api", True, "/api", "/s"),
        ("/s/", "/api", True, "/api/", "/s/"),
        ("/s/", "/api", True, "/api/x", "/s/x"),
        ("/s/", "/api/", True, "/api/x", "/s/x"),
        ("/s/", "/api", False, "/api/x", "/s/api/x"),
        # stripping never leaves a dot segment (Kong's sanitize_uri_postfix)
        ("/s", "/foo", True, "/foo..", "/s"),
        ("/s", "/foo", True, "/foo../x", "/s/x"),
        ("/s", "/foo", True, "/foo./x", "/s/x"),
        ("/s", "/foo", True, "/foo.", "/s"),
        # the route's whole path matched: the request's trailing slash decides
        ("/s/", "/api/", True, "/api/", "/s/"),
        ("/s", "/", True, "/", "/s"),
        ("/s", "/api/", True, "/api/", "/s/"),
    ],
)
def test_upstream_path_v0_edges(
    service_path: str | None, route_path: str, strip: bool, request_path: str, expected: str
) -> None:
    r = route("r", paths=[route_path], svc=service(service_path), strip_path=strip)
    found = Router([r]).match("GET", "h", request_path, NO_HEADERS)
    assert found is not None
    assert found.upstream_path == expected


def test_regex_strip_removes_the_matched_part_documented_example() -> None:
    r = route("r", paths=[r"~/version/\d+/service"], strip_path=True)
    found = Router([r]).match("GET", "h", "/version/1/service/path/to/resource", NO_HEADERS)
    assert found is not None
    assert found.upstream_path == "/path/to/resource"


@pytest.mark.parametrize(("strip", "expected"), [(True, "/s/a/b/"), (False, "/s/a/b/")])
def test_route_without_paths_forwards_the_whole_path(strip: bool, expected: str) -> None:
    r = route("r", hosts=["h"], svc=service("/s"), strip_path=strip)
    found = Router([r]).match("GET", "h", "/a/b/", NO_HEADERS)
    assert found is not None
    assert found.upstream_path == expected


@pytest.mark.parametrize("strip", [True, False])
def test_route_without_paths_sends_the_root_to_the_service_path(strip: bool) -> None:
    r = route("r", hosts=["h"], svc=service("/s"), strip_path=strip)
    found = Router([r]).match("GET", "h", "/", NO_HEADERS)
    assert found is not None
    assert found.upstream_path == "/s"


_SEGMENT = st.text(alphabet="ab.%2E", min_size=1, max_size=4)


@given(
    st.lists(_SEGMENT, max_size=5).map(lambda s: "/" + "/".join(s)),
    st.sampled_from(["/a", "/a.", "/a/", "/", r"~/a\.?"]),
    st.booleans(),
    st.sampled_from([None, "/", "/s", "/s/"]),
)
def test_upstream_path_is_always_a_clean_absolute_path(
    raw: str, route_path: str, strip: bool, service_path: str | None
) -> None:
    # The upstream gets exactly what we routed on: stripping and joining must never produce a
    # dot segment or a path that does not start with "/".
    try:
        path = canonical_path(raw)
    except BadPath:
        return
    r = route("r", paths=[route_path], svc=service(service_path), strip_path=strip)
    found = Router([r]).match("GET", "h", path, NO_HEADERS)
    if found is None:
        return
    assert found.upstream_path == upstream_path(r, path, _matched_part(r, path))
    assert found.upstream_path.startswith("/")
    segments = found.upstream_path.split("/")
    assert "." not in segments
    assert ".." not in segments


def _matched_part(r: Route, path: str) -> str:
    entry = router_module._entries_for(r)[0]
    if entry.prefix_len:
        return path[: entry.prefix_len]
    matched = entry.regex_match(path)
    assert matched is not None
    return matched


# --- cache ---------------------------------------------------------------------------------------


def test_cache_returns_the_same_answer() -> None:
    router = Router([route("a", paths=["/a"]), route("b", paths=["/b"], methods=["POST"])])
    first = router.match("GET", "h", "/a/1", NO_HEADERS)
    assert first is not None
    assert router.match("GET", "h", "/a/1", NO_HEADERS) is first
    assert router.match("GET", "h", "/b", NO_HEADERS) is None
    assert router.match("GET", "h", "/b", NO_HEADERS) is None  # negative answers cached too


def test_cache_keys_on_method() -> None:
    router = Router([route("get", paths=["/x"], methods=["GET"]), route("any", paths=["/x"])])
    assert matched_name(router, "/x", method="GET") == "get"
    assert matched_name(router, "/x", method="POST") == "any"
    assert matched_name(router, "/x", method="GET") == "get"


def test_cache_keys_on_matching_headers() -> None:
    router = Router(
        [route("v1", paths=["/"], headers={"version": ["v1"]}), route("any", paths=["/"])]
    )
    v1 = headers(("Version", "v1"))
    assert matched_name(router, "/", request_headers=v1) == "v1"
    assert matched_name(router, "/") == "any"
    assert matched_name(router, "/", request_headers=v1) == "v1"
    assert matched_name(router, "/", request_headers=headers(("Version", "V1"))) == "v1"


def test_cache_is_bounded_and_stays_correct() -> None:
    router = Router([route("a", paths=["/a"])])
    for i in range(router_module.CACHE_SIZE * 2 + 10):
        assert matched_name(router, f"/a/{i}") == "a"
        assert matched_name(router, f"/z/{i}") is None
    assert len(router._cache) <= router_module.CACHE_SIZE
    assert matched_name(router, "/a/1") == "a"


def test_long_keys_are_answered_but_not_cached() -> None:
    router = Router([route("a", paths=["/a"])])
    assert matched_name(router, "/a/" + "x" * 5000) == "a"
    assert matched_name(router, "/a", host="h" * 5000) == "a"
    assert not router._cache
    with_headers = Router(
        [route("v", paths=["/a"], headers={"x-v": ["1"]}), route("a", paths=["/a"])]
    )
    big = headers(("X-V", "y" * 5000))
    assert matched_name(with_headers, "/a", request_headers=big) == "a"
    assert not with_headers._cache


def test_the_prefix_a_strip_path_route_removed_is_told_upstream() -> None:
    found = Router([route("r", paths=["/api"])]).match("GET", "h", "/api/x", NO_HEADERS)
    assert found is not None
    assert (found.prefix, found.prefix_line) == ("/api", b"X-Forwarded-Prefix: /api\r\n")


def test_regex_priority_orders_regex_paths_only() -> None:
    """Kong's regex_priority ranks a route's regex paths; between prefix paths the longer one
    wins whatever the routes' regex_priority says."""
    router = Router(
        [
            route("short", paths=["/a"], regex_priority=10),
            route("long", paths=["/a/b"]),
        ]
    )
    assert matched_name(router, "/a/b/c") == "long"


def test_a_wildcard_host_for_another_port_does_not_hide_the_next_one() -> None:
    router = Router([route("r", hosts=["*.example.com:8443", "*.example.com"])])
    assert matched_name(router, "/", host="a.example.com:8000") == "r"


def test_a_route_host_with_a_port_that_is_no_number_matches_nothing() -> None:
    router = Router([route("odd", hosts=["api.example:https"]), route("any", paths=["/"])])
    assert matched_name(router, "/", host="api.example:443") == "any"
    assert matched_name(router, "/", host="api.example") == "any"


def test_a_header_regex_is_searched_as_written_and_never_compared_as_text() -> None:
    router = Router([route("beta", headers={"x-channel": ["~*^beta$"]}), route("any")])
    assert matched_name(router, "/", request_headers=headers(("X-Channel", "BETA"))) == "beta"
    assert matched_name(router, "/", request_headers=headers(("X-Channel", "pre-beta"))) == "any"
    assert matched_name(router, "/", request_headers=headers(("X-Channel", "~*^beta$"))) == "any"


def test_a_bad_header_regex_names_the_route_and_the_header() -> None:
    with pytest.raises(ValueError, match=r"route 'bad': header 'x-v': .+"):
        Router([route("bad", headers={"x-v": ["~*(unclosed"]})])


def test_header_values_that_differ_only_when_upper_cased_are_cached_apart() -> None:
    """The cache keys header values as the routes compare them, lower-cased: "ß" and "ss" are
    two values ("ß".upper() is "SS")."""
    router = Router([route("ss", headers={"x-v": ["ss"]}), route("any")])
    assert matched_name(router, "/", request_headers=headers(("X-V", "ß"))) == "any"
    assert matched_name(router, "/", request_headers=headers(("X-V", "ss"))) == "ss"


def test_a_long_path_is_not_cached_when_routes_look_at_headers() -> None:
    router = Router([route("v", paths=["/a"], headers={"x-v": ["1"]}), route("a", paths=["/a"])])
    assert matched_name(router, "/a/" + "x" * 5000, request_headers=headers(("X-V", "1"))) == "v"
    assert not router._cache


def test_the_cache_is_cleared_when_it_reaches_its_bound() -> None:
    router = Router([route("a", paths=["/a"])])
    for i in range(router_module.CACHE_SIZE + 1):
        matched_name(router, f"/a/{i}")
    assert len(router._cache) <= router_module.CACHE_SIZE
