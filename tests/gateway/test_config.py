"""kong.yaml loading: every rule has a failing example that pins the exact error line.

Each case is a small decK file; `_format_version: "3.0"` is prepended unless the case is about it.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from tokengate.gateway.config import (
    ConfigError,
    GatewayConfig,
    Plugin,
    Route,
    load_config,
    parse_config,
)
from tokengate.gateway.config_checks import load_yaml
from tokengate.gateway.oidc_config import Consumer

HEADER = '_format_version: "3.0"\n'
NOT_YAML = "kong.yaml: not valid YAML: "  # how a YAML error of the file begins
S1 = "5e1f1c2a-9d3b-4c6e-8a7f-0123456789ab"  # a service's id (Kong's ids are UUIDs)


def load(body: str, *, header: str = HEADER) -> GatewayConfig:
    return parse_config(header + textwrap.dedent(body), "kong.yaml")


def errors(body: str, *, header: str = HEADER) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(body, header=header)
    return caught.value.errors


def route_named(config: GatewayConfig, name: str) -> Route:
    return next(route for route in config.routes if route.name == name)


def issuer(route: Route) -> object:
    """Which plugin instance applies to a route, told apart by the path of its issuer."""
    plugin = route.plugin("openid-connect")
    if route.oidc is None:
        assert plugin is None
        return None
    assert plugin is not None
    assert plugin.config["issuer"] == route.oidc.issuer
    return route.oidc.issuer.removeprefix("https://idp.example/")


# --- errors: one case per rule, each with the exact line -------------------------------------

TOP_LEVEL_ERRORS = {
    "format version missing": (
        "services: []",
        "kong.yaml: _format_version: required field missing",
    ),
    "format version with no value": (
        "_format_version:\nservices: []",
        "kong.yaml: _format_version: required field missing (it is there, with no value)",
    ),
    "format version unknown": (
        '_format_version: "4.0"',
        'kong.yaml: _format_version: unsupported version \'4.0\' (expected "1.1", "2.1", "3.0")',
    ),
    "unknown top-level key": (
        '_format_version: "3.0"\nservicez: []',
        "kong.yaml: servicez: unknown field (did you mean 'services'?)",
    ),
    "document is a list": (
        "- name: a",
        "kong.yaml: expected a mapping of Kong entities, got a list",
    ),
    "empty file": (
        "",
        "kong.yaml: the file is empty; expected a Kong declarative config",
    ),
    "services not a list": (
        '_format_version: "3.0"\nservices: {name: a}',
        "kong.yaml: services: expected a list, got a mapping",
    ),
    "service not a mapping": (
        '_format_version: "3.0"\nservices: [a]',
        "kong.yaml: services[0]: expected a mapping, got a string",
    ),
    "transform not a boolean": (
        '_format_version: "3.0"\n_transform: "yes"',
        "kong.yaml: _transform: expected a boolean, got a string",
    ),
}


@pytest.mark.parametrize(("text", "line"), TOP_LEVEL_ERRORS.values(), ids=TOP_LEVEL_ERRORS.keys())
def test_top_level_error(text: str, line: str) -> None:
    assert line in errors(text, header="")


SERVICE_ERRORS = {
    "name missing": ("host: up", "services[0].name: required field missing (or an id)"),
    "unknown field": (
        "name: a\nhost: up\nhots: x",
        "services[0].hots: unknown field (did you mean 'host'?)",
    ),
    "url scheme": ("name: a\nurl: grpc://up", "services[0].url: scheme must be http or https"),
    "url without scheme": ("name: a\nurl: up:80", "services[0].url: scheme must be http or https"),
    "url and parts": (
        "name: a\nurl: http://up\nhost: up\nport: 81",
        "services[0].url: cannot be combined with host, port",
    ),
    "url without host": ("name: a\nurl: http:///x", "services[0].url: missing host"),
    "url bad port": ("name: a\nurl: http://up:99999", "services[0].url: invalid port"),
    "url with query": (
        "name: a\nurl: http://up/x?debug=1",
        "services[0].url: must not contain credentials, a query string or a fragment",
    ),
    "url not a string": ("name: a\nurl: 80", "services[0].url: expected a string, got an integer"),
    "protocol not supported": (
        "name: a\nhost: up\nprotocol: grpc",
        "services[0].protocol: protocol 'grpc' is not supported (tokengate speaks http and https)",
    ),
    "protocol unknown": (
        "name: a\nhost: up\nprotocol: htp",
        "services[0].protocol: unknown protocol 'htp' (expected http or https)",
    ),
    "host missing": ("name: a\nport: 80", "services[0].host: required field missing"),
    "host is a url": (
        "name: a\nhost: http://up",
        "services[0].host: invalid host 'http://up': expected a host name; use 'url' for a URL",
    ),
    "host with port": (
        "name: a\nhost: up:80",
        "services[0].host: invalid host 'up:80': set the port with 'port'",
    ),
    "host label too long": (
        f"name: a\nurl: http://{'a' * 64}.example",
        f"services[0].url: invalid host '{'a' * 64}.example': a label is empty or longer than 63",
    ),
    "url with credentials": (
        "name: a\nurl: http://user:secret@up",
        "services[0].url: must not contain credentials, a query string or a fragment",
    ),
    "url with fragment": (
        "name: a\nurl: http://up/#top",
        "services[0].url: must not contain credentials, a query string or a fragment",
    ),
    "url port zero": ("name: a\nurl: http://up:0", "services[0].url: invalid port"),
    "port zero": (
        "name: a\nhost: up\nport: 0",
        "services[0].port: must be between 1 and 65535, got 0",
    ),
    "port a date": (
        "name: a\nhost: up\nport: 2024-01-01",
        "services[0].port: expected an integer, got a date",
    ),
    "port the lowest 64-bit integer": (
        "name: a\nhost: up\nport: -9223372036854775808",
        "services[0].port: must be between 1 and 65535, got -9223372036854775808",
    ),
    "path bad percent-encoding": (
        "name: a\nhost: up\npath: /a%zz",
        "services[0].path: invalid path '/a%zz': bad percent-encoding",
    ),
    "host longer than 253": (
        f"name: a\nhost: {'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 62}",
        f"services[0].host: invalid host '{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 62}'",
    ),
    "unknown field not close to a known one": (
        "name: a\nhost: up\nhostname: up",
        "services[0].hostname: unknown field",
    ),
    "port bool": (
        "name: a\nhost: up\nport: true",
        "services[0].port: expected an integer, got a boolean",
    ),
    "port string": (
        "name: a\nhost: up\nport: '80'",
        "services[0].port: expected an integer, got a string",
    ),
    "path relative": ("name: a\nhost: up\npath: api", "services[0].path: must start with '/'"),
    "path with query": (
        "name: a\nhost: up\npath: /api?x",
        "services[0].path: invalid path '/api?x': characters outside of RFC 3986 found",
    ),
    "timeout zero": (
        "name: a\nhost: up\nconnect_timeout: 0",
        "services[0].connect_timeout: must be between 1 and 2147483646, got 0",
    ),
    "timeout float": (
        "name: a\nhost: up\nread_timeout: 1.5",
        "services[0].read_timeout: expected an integer, got a number",
    ),
    "retries too high": (
        "name: a\nhost: up\nretries: 32768",
        "services[0].retries: must be between 0 and 32767, got 32768",
    ),
    "enabled string": (
        "name: a\nhost: up\nenabled: 'no'",
        "services[0].enabled: expected a boolean, got a string",
    ),
    "tags string": (
        "name: a\nhost: up\ntags: t",
        "services[0].tags: expected a list of strings, got a string",
    ),
    # Kong's utf8_name typedef: ASCII letters, digits and . - _ ~, and any non-ASCII one
    "name with a space": (
        "name: my api\nhost: up",
        "services[0].name: invalid value 'my api': the only accepted ascii characters are "
        "alphanumerics or ., -, _, and ~",
    ),
    "tls_verify_depth too deep": (
        "name: a\nurl: https://up\ntls_verify_depth: 65",
        "services[0].tls_verify_depth: must be between 0 and 64, got 65",
    ),
    "tls_verify_depth negative": (
        "name: a\nurl: https://up\ntls_verify_depth: -1",
        "services[0].tls_verify_depth: must be between 0 and 64, got -1",
    ),
    "ca_certificates string": (
        "name: a\nurl: https://up\nca_certificates: x",
        "services[0].ca_certificates: expected a list of strings, got a string",
    ),
    # Kong's services schema: the TLS fields must be null unless the protocol is https.
    "tls_verify on http": (
        "name: a\nhost: up\ntls_verify: false",
        "services[0].tls_verify: can only be set when 'protocol' is https",
    ),
    "tls_verify_depth on an http url": (
        "name: a\nurl: http://up\ntls_verify_depth: 1",
        "services[0].tls_verify_depth: can only be set when 'protocol' is https",
    ),
    "ca_certificates on http": (
        f"name: a\nhost: up\nprotocol: http\nca_certificates: ['{S1}']",
        "services[0].ca_certificates: can only be set when 'protocol' is https",
    ),
    "client_certificate on http": (
        f"name: a\nhost: up\nclient_certificate: {{id: '{S1}'}}",
        "services[0].client_certificate: can only be set when 'protocol' is https",
    ),
}


@pytest.mark.parametrize(("service", "line"), SERVICE_ERRORS.values(), ids=SERVICE_ERRORS.keys())
def test_service_error(service: str, line: str) -> None:
    # The case's lines become the one item of `services`.
    body = "services:\n" + textwrap.indent(service, "    ").replace("    ", "  - ", 1)
    assert f"kong.yaml: {line}" in errors(body)


def test_duplicate_service_name_and_id_are_reported_at_the_second() -> None:
    found = errors("""
        services:
          - {name: a, id: 5e1f1c2a-9d3b-4c6e-8a7f-0123456789ab, host: up}
          - {name: a, id: 5e1f1c2a-9d3b-4c6e-8a7f-0123456789ab, host: up}
    """)
    assert found == [
        "kong.yaml: services[1].name: duplicate service name 'a' (first at services[0])",
        f"kong.yaml: services[1].id: duplicate service id '{S1}' (first at services[0])",
    ]


R = "services[0].routes[0]"  # where every ROUTE_ERRORS case sits
ROUTE_ERRORS = {
    "unknown field": (
        "paths: [/a]\npathz: [/b]",
        f"{R}.pathz: unknown field (did you mean 'paths'?)",
    ),
    "no matcher": (
        "name: r",
        f"{R}: must set at least one of 'methods', 'hosts', 'headers', 'paths'",
    ),
    "paths not a list": ("paths: /a", f"{R}.paths: expected a list of strings, got a string"),
    "path not a string": ("paths: [1]", f"{R}.paths[0]: expected a string, got an integer"),
    "path relative": ("paths: [a]", f"{R}.paths[0]: must start with '/' (or '~' for a regex)"),
    # Paths no request could have: the gateway refused them only once it built its router.
    "path encoded slash": (
        "paths: ['/a%2Fb']",
        f"{R}.paths[0]: invalid path '/a%2Fb': encoded slash or backslash",
    ),
    "path above the root": (
        "paths: ['/%2e%2e/x']",
        f"{R}.paths[0]: invalid path '/%2e%2e/x': dot segment above the root",
    ),
    # Kong's typedefs refuse a prefix that its router's normalisation would change.
    "path not normalized": (
        "paths: ['/a//b/./c/%7euser']",
        f"{R}.paths[0]: non-normalized path '/a//b/./c/%7euser', which Kong refuses: consider "
        "'/a/b/c/~user'",
    ),
    "path reserved escape in lower case": (
        "paths: ['/v1/users%3asearch']",
        f"{R}.paths[0]: non-normalized path '/v1/users%3asearch', which Kong refuses: consider "
        "'/v1/users%3Asearch'",
    ),
    "path escape Kong would decode": (
        "paths: ['/my%20files']",
        f"{R}.paths[0]: non-normalized path '/my%20files', which Kong refuses: it would decode an "
        "escape of a character that is neither reserved nor unreserved (a regex path can match "
        "it)",
    ),
    "path bad regex": (
        "paths: ['~/(']",
        f"{R}.paths[0]: invalid regex: missing ): /(",
    ),
    # Kong 3's router compiles with Rust's regex crate, which has neither (nor has RE2).
    "path regex look-ahead": (
        "paths: ['~/a(?=b)']",
        f"{R}.paths[0]: invalid regex: invalid perl operator: (?=",
    ),
    "path regex backreference": (
        "paths: ['~/(a)\\1']",
        f"{R}.paths[0]: invalid regex: invalid escape sequence: \\1",
    ),
    "method not a token": (
        "methods: ['GE T']",
        f"{R}.methods[0]: invalid method 'GE T': upper-case letters only, as in Kong",
    ),
    "method in lower case": (
        "methods: [get]",
        f"{R}.methods[0]: invalid method 'get': upper-case letters only, as in Kong (GET)",
    ),
    "two wildcards": (
        "hosts: ['*.a.*']",
        f"{R}.hosts[0]: invalid host '*.a.*': only one wildcard is allowed",
    ),
    "wildcard inside": (
        "hosts: ['a.*.b']",
        f"{R}.hosts[0]: invalid wildcard in 'a.*.b': must be the leftmost or rightmost label",
    ),
    "wildcard partial label": (
        "hosts: ['*a.b']",
        f"{R}.hosts[0]: invalid wildcard in '*a.b': must be the leftmost or rightmost label",
    ),
    "host bad port": ("hosts: ['a.b:0']", f"{R}.hosts[0]: invalid port in host 'a.b:0'"),
    "host bad name": ("hosts: ['a b']", f"{R}.hosts[0]: invalid host 'a b'"),
    "host only a wildcard": (
        "hosts: ['*.']",
        f"{R}.hosts[0]: invalid host '*.': a wildcard needs a name beside it",
    ),
    "host unclosed bracket": (
        "hosts: ['[::1']",
        f"{R}.hosts[0]: invalid host '[::1': no closing ']'",
    ),
    "host port too high": (
        "hosts: ['a.b:65536']",
        f"{R}.hosts[0]: invalid port in host 'a.b:65536'",
    ),
    "ipv6 host port too high": (
        "hosts: ['[::1]:65536']",
        f"{R}.hosts[0]: invalid port in host '[::1]:65536'",
    ),
    "ipv6 host with two closing brackets": (
        "hosts: ['[::1]]:80']",
        f"{R}.hosts[0]: invalid port in host '[::1]]:80'",
    ),
    "ipv6 host with junk after the bracket": (
        "hosts: ['[::1]x']",
        f"{R}.hosts[0]: invalid port in host '[::1]x'",
    ),
    "host only a trailing wildcard": (
        "hosts: ['.*']",
        f"{R}.hosts[0]: invalid host '.*': a wildcard needs a name beside it",
    ),
    "header name not a token": (
        "headers: {'X Version': ['1']}",
        f"{R}.headers.X Version: invalid header name 'X Version'",
    ),
    "headers not a mapping": ("headers: [x]", f"{R}.headers: expected a mapping, got a list"),
    "host header": (
        "headers: {Host: [a.b]}",
        f"{R}.headers.Host: the Host header cannot be matched here; use the route's 'hosts'",
    ),
    "header value string": (
        "headers: {X-Version: '1'}",
        f"{R}.headers.X-Version: expected a list of strings, got a string",
    ),
    "header without values": (
        "headers: {X-Version: []}",
        f"{R}.headers.X-Version: expected at least one value",
    ),
    "header bad regex": (
        "headers: {X-Version: ['~*(']}",
        f"{R}.headers.X-Version[0]: invalid regex: missing ): (",
    ),
    "protocol not supported": (
        "paths: [/a]\nprotocols: [grpc]",
        f"{R}.protocols[0]: protocol 'grpc' is not supported (tokengate speaks http and https)",
    ),
    "protocols empty": ("paths: [/a]\nprotocols: []", f"{R}.protocols: must not be empty"),
    "strip_path string": (
        "paths: [/a]\nstrip_path: 'false'",
        f"{R}.strip_path: expected a boolean, got a string",
    ),
    "regex_priority bool": (
        "paths: [/a]\nregex_priority: true",
        f"{R}.regex_priority: expected an integer, got a boolean",
    ),
    "path_handling": (
        "paths: [/a]\npath_handling: v2",
        f"{R}.path_handling: must be one of v0, v1, got 'v2'",
    ),
    "redirect code": (
        "paths: [/a]\nhttps_redirect_status_code: 303",
        f"{R}.https_redirect_status_code: must be one of 301, 302, 307, 308, 426, got 303",
    ),
    "service in nested route": (
        "paths: [/a]\nservice: a",
        f"{R}.service: not allowed in a route nested under a service",
    ),
    "name with a slash": (
        "name: v1/orders\npaths: [/a]",
        f"{R}.name: invalid value 'v1/orders': the only accepted ascii characters are "
        "alphanumerics or ., -, _, and ~",
    ),
    "header name not a string": (
        "headers: {1: [a]}",
        f"{R}.headers: expected header names as strings, got an integer",
    ),
    "duplicate header": (
        "headers: {X-A: [a], x-a: [b], x-b: []}",
        f"{R}.headers.x-a: duplicate header 'x-a'",
    ),
    "header after a duplicate": (
        "headers: {X-A: [a], x-a: [b], x-b: []}",
        f"{R}.headers.x-b: expected at least one value",
    ),
    "request_buffering string": (
        "paths: [/a]\nrequest_buffering: 'no'",
        f"{R}.request_buffering: expected a boolean, got a string",
    ),
    "response_buffering string": (
        "paths: [/a]\nresponse_buffering: 'no'",
        f"{R}.response_buffering: expected a boolean, got a string",
    ),
    "tags string": ("paths: [/a]\ntags: t", f"{R}.tags: expected a list of strings, got a string"),
    "header after an invalid name": (
        "headers: {'x b': [a], x-b: []}",
        f"{R}.headers.x-b: expected at least one value",
    ),
    "header after one whose name is not a string": (
        "headers: {1: [a], x-b: []}",
        f"{R}.headers.x-b: expected at least one value",
    ),
    # Kong's http route subschema (routes_subschemas.lua) refuses the stream routes' fields.
    "sources": (
        "paths: [/a]\nsources: [{ip: 10.0.0.0/8}]",
        f"{R}.sources: cannot set 'sources' when 'protocols' is 'http' or 'https'",
    ),
    "destinations": (
        "paths: [/a]\ndestinations: [{port: 80}]",
        f"{R}.destinations: cannot set 'destinations' when 'protocols' is 'http' or 'https'",
    ),
}


@pytest.mark.parametrize(("route", "line"), ROUTE_ERRORS.values(), ids=ROUTE_ERRORS.keys())
def test_route_error(route: str, line: str) -> None:
    body = "services:\n  - name: a\n    host: up\n    routes:\n"
    # The case's lines become the one route of service `a`.
    body += textwrap.indent(route, "        ").replace("        ", "      - ", 1)
    assert f"kong.yaml: {line}" in errors(body)


TOP_LEVEL_ROUTE_ERRORS = {
    "dangling service name": ("service: nope", "routes[0].service: service 'nope' not found"),
    "dangling service id": ("service: {id: nope}", "routes[0].service: service 'nope' not found"),
    "reference with both keys": (
        f"service: {{id: {S1}, name: a}}",
        "routes[0].service: expected exactly one of 'id' or 'name'",
    ),
    "reference with an unknown key": (
        "service: {name: a, nme: b}",
        "routes[0].service.nme: unknown field (did you mean 'name'?)",
    ),
    "reference of the wrong type": (
        "service: 7",
        "routes[0].service: expected a service name or id, or a mapping with one of them, "
        "got an integer",
    ),
}


@pytest.mark.parametrize(
    ("reference", "line"), TOP_LEVEL_ROUTE_ERRORS.values(), ids=TOP_LEVEL_ROUTE_ERRORS.keys()
)
def test_top_level_route_reference_error(reference: str, line: str) -> None:
    service = f"services: [{{name: a, id: {S1}, host: up}}]\n"
    body = f"{service}routes:\n  - paths: [/a]\n    {reference}\n"
    assert f"kong.yaml: {line}" in errors(body)


def test_duplicate_route_name_across_nested_and_top_level() -> None:
    found = errors("""
        services:
          - name: a
            host: up
            routes: [{name: r, paths: [/a]}]
        routes:
          - {name: r, paths: [/b], service: a}
    """)
    assert found == [
        "kong.yaml: routes[0].name: duplicate route name 'r' (first at services[0].routes[0])"
    ]


PLUGIN_ERRORS = {
    "name missing": ("- config: {}", "plugins[0].name: required field missing"),
    "unknown field": (
        "- name: openid-connect\n  confg: {}",
        "plugins[0].confg: unknown field (did you mean 'config'?)",
    ),
    "unknown field, no name close to it": (
        "- name: openid-connect\n  colour: red\n  config: {issuer: 'https://idp.example'}",
        "plugins[0].colour: unknown field",
    ),
    "config not a mapping": (
        "- name: openid-connect\n  config: [issuer]",
        "plugins[0].config: expected a mapping, got a list",
    ),
    "enabled string": (
        "- name: openid-connect\n  enabled: 'off'",
        "plugins[0].enabled: expected a boolean, got a string",
    ),
    "protocol unknown": (
        "- name: openid-connect\n  protocols: [htp]",
        "plugins[0].protocols[0]: unknown protocol 'htp'",
    ),
    "dangling service": (
        "- name: openid-connect\n  service: nope",
        "plugins[0].service: service 'nope' not found",
    ),
    "dangling route": (
        "- name: rate-limiting\n  route: {name: nope}",
        "plugins[0].route: route 'nope' not found",
    ),
    # A broken reference leaves the plugin nowhere, not on the other half of its scope (where
    # it would clash with the instance there).
    "dangling route beside a service": (
        "- name: openid-connect\n  route: nope\n  service: a",
        "plugins[0].route: route 'nope' not found",
    ),
    "dangling service beside a route": (
        "- name: openid-connect\n  route: r\n  service: nope",
        "plugins[0].service: service 'nope' not found",
    ),
    "tags string": (
        "- name: rate-limiting\n  tags: t",
        "plugins[0].tags: expected a list of strings, got a string",
    ),
    "ordering not a mapping": (
        "- name: rate-limiting\n  ordering: [before]",
        "plugins[0].ordering: expected a mapping, got a list",
    ),
    "instance_name not a string": (
        "- name: rate-limiting\n  instance_name: 5",
        "plugins[0].instance_name: expected a string, got an integer",
    ),
    "instance_name with a colon": (
        "- name: rate-limiting\n  instance_name: 'rl:1'",
        "plugins[0].instance_name: invalid value 'rl:1': the only accepted ascii characters are "
        "alphanumerics or ., -, _, and ~",
    ),
    "two global instances": (
        "- name: openid-connect\n- name: openid-connect",
        "plugins[1]: duplicate 'openid-connect' plugin on the same scope as plugins[0]",
    ),
    "two on one service, nested and top-level": (
        "- name: openid-connect\n  service: a",
        "plugins[0]: duplicate 'openid-connect' plugin on the same scope as services[0].plugins[0]",
    ),
    "two on one route, nested and top-level": (
        "- name: openid-connect\n  route: r",
        "plugins[0]: duplicate 'openid-connect' plugin on the same scope as "
        "services[0].routes[0].plugins[0]",
    ),
}


@pytest.mark.parametrize(("plugins", "line"), PLUGIN_ERRORS.values(), ids=PLUGIN_ERRORS.keys())
def test_plugin_error(plugins: str, line: str) -> None:
    body = """
        services:
          - name: a
            host: up
            plugins: [{name: openid-connect, config: {issuer: "https://idp.example"}}]
            routes:
              - name: r
                paths: [/a]
                plugins: [{name: openid-connect, config: {issuer: "https://idp.example"}}]
    """
    body = textwrap.dedent(body) + "plugins:\n" + textwrap.indent(plugins, "  ")
    found = errors(body)
    assert f"kong.yaml: {line}" in found
    # the plugins without a config also say that their issuer is missing, nothing else
    missing = {e for e in found if e.endswith(".config.issuer: required field missing")}
    assert set(found) - missing == {f"kong.yaml: {line}"}


NESTED_OIDC = '{name: openid-connect, config: {issuer: "https://idp.example"}, '


@pytest.mark.parametrize(
    ("service", "line"),
    [
        (
            f"plugins: [{NESTED_OIDC}route: r}}]\n    routes: [{{name: r, paths: [/a]}}]",
            "services[0].plugins[0].route",
        ),
        (
            f"routes: [{{name: r, paths: [/a], plugins: [{NESTED_OIDC}service: a}}]}}]",
            "services[0].routes[0].plugins[0].service",
        ),
    ],
    ids=["route", "service"],
)
def test_nested_plugin_cannot_name_its_own_scope(service: str, line: str) -> None:
    found = errors(f"services:\n  - name: a\n    host: up\n    {service}\n")
    assert found == [
        f"kong.yaml: {line}: not allowed in a nested plugin; it applies where it is nested"
    ]


def test_typo_suggestions_are_for_a_files_first_hundred_unknown_fields() -> None:
    """difflib is not free: a file of thousands of unknown fields still loads at once."""
    keys = "".join(f"      issuerx{i}: 1\n" for i in range(101))
    long_key = "i" * 65
    found = errors(
        "plugins:\n  - name: openid-connect\n    config:\n"
        f"      issuer: https://idp.example\n{keys}      {long_key}: 1\n"
    )
    suggested = [line for line in found if line.endswith("(did you mean 'issuer'?)")]
    assert len(suggested) == 100
    assert "kong.yaml: plugins[0].config.issuerx100: unknown field" in found
    assert f"kong.yaml: plugins[0].config.{long_key}: unknown field" in found


def test_typo_suggestions_stop_at_keys_of_64_characters() -> None:
    """A key longer than any Kong field name by far is no typo: difflib is spared the work."""
    field = "pushed_authorization_request_endpoint_auth_method"  # Kong's longest, 49 characters
    near, far = field + "x" * 15, field + "x" * 16  # 64 and 65 characters
    found = errors(
        "plugins:\n  - name: openid-connect\n    config:\n"
        f"      issuer: https://idp.example\n      {near}: 1\n      {far}: 1\n"
    )
    assert f"kong.yaml: plugins[0].config.{near}: unknown field (did you mean '{field}'?)" in found
    assert f"kong.yaml: plugins[0].config.{far}: unknown field" in found


def test_every_error_is_reported_at_once() -> None:
    found = errors("""
        services:
          - name: a
            url: ftp://up
            routes:
              - paths: api
              - methods: [GET]
                hosts: ["*.*.example.com"]
          - name: a
            host: up
            port: 70000
        routes:
          - service: b
            paths: [/x]
        plugins:
          - name: openid-connect
            route: ghost
        consumerz: []
    """)
    assert found == [
        "kong.yaml: consumerz: unknown field (did you mean 'consumers'?)",
        "kong.yaml: services[0].url: scheme must be http or https",
        "kong.yaml: services[0].routes[0].paths: expected a list of strings, got a string",
        "kong.yaml: services[0].routes[1].hosts[0]: invalid host '*.*.example.com': "
        "only one wildcard is allowed",
        "kong.yaml: services[1].port: must be between 1 and 65535, got 70000",
        "kong.yaml: services[1].name: duplicate service name 'a' (first at services[0])",
        "kong.yaml: routes[0].service: service 'b' not found",
        "kong.yaml: plugins[0].route: route 'ghost' not found",
        "kong.yaml: plugins[0].config.issuer: required field missing",
    ]


def test_a_config_error_reads_as_its_lines() -> None:
    """What a traceback or `str()` shows: every error, one a line."""
    with pytest.raises(ConfigError) as caught:
        load("services: [{name: a}]\nroutes: [{}]")
    assert str(caught.value) == (
        "kong.yaml: services[0].host: required field missing\n"
        "kong.yaml: routes[0]: must set at least one of 'methods', 'hosts', 'headers', 'paths'"
    )


def test_yaml_syntax_error_names_line_and_column() -> None:
    text = '_format_version: "3.0"\nservices:\n  - name: a\n   host: up\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "kong.yaml")
    (error,) = caught.value.errors
    # libyaml says "did not find expected '-' indicator"; PyYAML's own parser, where it has no
    # libyaml, "expected <block end>, but found '<block mapping start>'".
    assert error.startswith("kong.yaml: not valid YAML: line 4 column 4: "), error


def test_duplicate_yaml_key_is_an_error_not_a_silent_override() -> None:
    # PyYAML keeps the last key: the openid-connect plugin would vanish without a word.
    text = '_format_version: "3.0"\nplugins: [{name: openid-connect}]\nplugins: []\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "kong.yaml")
    assert caught.value.errors == [NOT_YAML + "line 3 column 1: found duplicate key 'plugins'"]


@pytest.mark.parametrize(("key", "column"), [("[a]: 1", 1), ("? {x: 1}\n: 1", 3)])
def test_a_list_or_mapping_as_a_yaml_key_is_an_error(key: str, column: int) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f'_format_version: "3.0"\n{key}\n', "kong.yaml")
    assert caught.value.errors == [
        f"kong.yaml: not valid YAML: line 2 column {column}: found a list or mapping as a key"
    ]


_BOMB = "".join(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}' if n else 'x'] * 10)}]\n" for n in range(9))


@pytest.mark.parametrize(
    ("body", "start"),
    [
        # integers of any length parse in hex, octal or base 60; past 64 bits, an error
        ("services: [{name: a, host: x, port: 0x%s}]" % ("f" * 3600),
         "kong.yaml: not valid YAML: line 2 column 37: integer out of range (beyond 64 bits)"),
        ("services: [{name: a, host: x, port: 0%s}]" % ("7" * 30),
         "kong.yaml: not valid YAML: line 2 column 37: integer out of range"),
        ("services: [{name: a, host: x, port: 9223372036854775808}]",
         "kong.yaml: not valid YAML: line 2 column 37: integer out of range (beyond 64 bits)"),
        ("services: [{name: a, host: x, port: -9223372036854775809}]",
         "kong.yaml: not valid YAML: line 2 column 37: integer out of range (beyond 64 bits)"),
        # explicit tags PyYAML's own constructors fail on
        ("services: !!set [a]", "kong.yaml: "),
        ("services: !!bool x", NOT_YAML + "line 2 column 11: cannot read 'x' as !!bool"),
        ("services: !!int", "kong.yaml: not valid YAML: line 2 column 11: cannot read '' as !!int"),
        ("services: !!timestamp x", NOT_YAML + "line 2 column 11: cannot read 'x' as !!timestamp"),
        ("services: [a, !!float y]", NOT_YAML + "line 2 column 15: cannot read 'y' as !!float"),
        # an alias to itself, nesting past any real file, an alias bomb (10^9 values)
        ("plugins: [{name: openid-connect, config: {x: &r [*r]}}]",
         "kong.yaml: not valid YAML: nested more than 64 levels deep"),
        ("plugins: [{name: cors, config: {x: %s}}]" % ("[" * 200 + "]" * 200),
         "kong.yaml: not valid YAML: nested more than 64 levels deep"),
        ("plugins:\n- name: openid-connect\n  config:\n" + textwrap.indent(_BOMB, "    "),
         "kong.yaml: not valid YAML: more than 2,000,000 values (aliases expanded)"),
    ],
    ids=["hex", "octal", "2**63", "-2**63-1", "set-on-list", "bool", "int", "timestamp",
         "float-in-a-list", "self-alias", "deep", "bomb"],
)  # fmt: skip
def test_yaml_that_would_break_the_checks_is_refused_up_front(body: str, start: str) -> None:
    """No traceback, no minutes spent: each is one error, before any field is checked."""
    with pytest.raises(ConfigError) as caught:
        parse_config(f'_format_version: "3.0"\n{body}\n', "kong.yaml")
    (error,) = caught.value.errors
    assert error.startswith(start), error


@pytest.mark.parametrize("host", ["[::1", "::1]", "[::1]x"])
def test_a_stray_bracket_in_a_service_host_is_not_blamed_on_a_port(host: str) -> None:
    # Today: "invalid host '[::1': set the port with 'port'", though no port was written.
    assert errors(f"services: [{{name: a, host: '{host}'}}]\n") == [
        f"kong.yaml: services[0].host: invalid host '{host}': expected an IPv6 address in"
        " brackets, as in '[::1]'"
    ]


def test_a_service_host_with_a_port_after_an_ipv6_address_still_says_to_use_port() -> None:
    assert errors("services: [{name: a, host: '[::1]:80'}]\n") == [
        "kong.yaml: services[0].host: invalid host '[::1]:80': set the port with 'port'"
    ]


@pytest.mark.parametrize(
    ("upstream", "line"),
    [
        ("{name: u, host_header: 'a b'}", "upstreams[0].host_header: invalid host 'a b'"),
        ("{name: 'a b'}", "upstreams[0].name: invalid name 'a b'"),
        ("{name: u, targets: [{target: 'a b'}]}",
         "upstreams[0].targets[0].target: invalid target 'a b'"),
        # a host part that differs from what was written is still named
        ("{name: u, targets: [{target: 'x..y:80'}]}",
         "upstreams[0].targets[0].target: invalid target 'x..y:80': invalid host 'x..y'"),
    ],
)  # fmt: skip
def test_a_bad_host_is_named_once_not_twice(upstream: str, line: str) -> None:
    # Today: "invalid host 'a b': invalid host 'a b'", "invalid target 'a b': invalid host 'a b'".
    assert errors(f"upstreams: [{upstream}]\n") == [f"kong.yaml: {line}"]


def test_a_control_character_is_one_line_with_its_line_and_column() -> None:
    # Today: 'kong.yaml: invalid YAML: unacceptable character #x0001: control characters are
    # not allowed\n  in "<unicode string>", position 40': two lines, and a position in
    # characters where every other YAML error gives a line and a column.
    assert errors('services: []\nx: "\x01"\n') == [
        NOT_YAML + "line 3 column 5: unacceptable character #x0001: control characters are not"
        " allowed"
    ]


@pytest.mark.parametrize(
    ("deepest", "too_deep"),
    [("[" * 65 + "]" * 65, "[" * 66 + "]" * 66), ("{a: " * 64 + "}" * 64, "{a: " * 65 + "}" * 65)],
    ids=["lists", "mappings"],
)
def test_a_document_may_nest_64_levels_below_its_top_and_no_more(
    deepest: str, too_deep: str
) -> None:
    load_yaml(deepest)
    with pytest.raises(ValueError, match=r"^invalid YAML: nested more than 64 levels deep$"):
        load_yaml(too_deep)


def _values(count: int) -> str:
    """A list holding 1,999 copies of one 1,000-value list, then scalars: `count` values."""
    scalars = count - 1 - 1999 * 1000
    return "- &a [" + "0, " * 998 + "0]\n" + "- *a\n" * 1998 + "- 0\n" * scalars


def test_a_document_may_hold_two_million_values_once_its_aliases_are_expanded() -> None:
    load_yaml(_values(2_000_000))
    with pytest.raises(ValueError, match=r"more than 2,000,000 values \(aliases expanded\)$"):
        load_yaml(_values(2_000_001))


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("services: !!set [a]", "line 2 column 11: expected a mapping node, but found sequence"),
        ("services: !!map a", "line 2 column 11: expected a mapping node, but found scalar"),
        ("services:\n  - &s {name: a, host: up}\n  - <<: *s\n    name: b\n    name: c",
         "line 6 column 5: found duplicate key 'name'"),
    ],
)  # fmt: skip
def test_mapping_tags_on_other_nodes_and_keys_after_a_merge_are_yaml_errors(
    body: str, line: str
) -> None:
    assert errors(body + "\n") == [f"kong.yaml: not valid YAML: {line}"]


def test_a_control_character_is_a_yaml_error_that_names_it() -> None:
    (line,) = errors('services: []\nx: "\x01"\n')
    assert line.startswith("kong.yaml: "), line
    assert "unacceptable character #x0001: control characters are not allowed" in line, line


def test_a_merge_key_fills_in_what_the_mapping_does_not_set() -> None:
    first, second = load("""
        services:
          - &base {name: a, host: up, port: 81}
          - <<: *base
            name: b
    """).services
    assert (first.name, second.name, second.host, second.port) == ("a", "b", "up", 81)


def test_every_bad_entry_of_a_list_is_reported() -> None:
    assert errors("services: [{name: a, host: up, routes: [{methods: [1, get, 2, post]}]}]") == [
        "kong.yaml: services[0].routes[0].methods[0]: expected a string, got an integer",
        "kong.yaml: services[0].routes[0].methods[1]: invalid method 'get': upper-case letters "
        "only, as in Kong (GET)",
        "kong.yaml: services[0].routes[0].methods[2]: expected a string, got an integer",
        "kong.yaml: services[0].routes[0].methods[3]: invalid method 'post': upper-case letters "
        "only, as in Kong (POST)",
    ]
    # a consumer (group) that is refused does not hide the mistakes of the next one
    assert errors("consumers: [{tags: [x]}, {username: ''}]") == [
        "kong.yaml: consumers[0]: a consumer needs a username or a custom_id",
        "kong.yaml: consumers[1].username: must not be empty",
    ]
    assert errors("consumer_groups: [gold, {name: ''}]") == [
        "kong.yaml: consumer_groups[0]: expected a mapping, got a string",
        "kong.yaml: consumer_groups[1].name: expected a non-empty string",
    ]


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("routes: [{paths: [/], hosts: ['a.example:\u0661\u0662']}]",
         "routes[0].hosts[0]: invalid port in host"),
        ("routes: [{paths: [/], hosts: ['a.example:\u00b2']}]",
         "routes[0].hosts[0]: invalid port in host"),
        ("services: [{name: a, host: \"\u212aelvin.example\"}]", "services[0].host: "),
        ("services: [{name: a, host: \"\u017fite.example\"}]", "services[0].host: "),
    ],
)  # fmt: skip
def test_hosts_and_ports_are_ascii(body: str, line: str) -> None:
    """Non-ASCII digits and letters that case-fold to ASCII ones (the Kelvin sign, the long s)
    name no host Kong would take."""
    found = errors(body + "\n")
    assert any(error.startswith(f"kong.yaml: {line}") for error in found), found


def test_a_format_version_that_is_no_scalar_is_described_not_printed() -> None:
    found = errors("", header=f"_format_version: {list(range(5))}\n")
    assert found == [
        'kong.yaml: _format_version: unsupported version a list (expected "1.1", "2.1", "3.0")'
    ]


def test_a_file_past_the_size_cap_is_an_error_without_reading_it_whole() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("/dev/zero")
    assert caught.value.errors == ["/dev/zero: larger than 32 MiB, the most tokengate reads"]


def test_a_file_right_at_the_size_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(HEADER + "#" * (32 * 1024 * 1024 - len(HEADER) - 1) + "\n", encoding="utf-8")
    assert load_config(path) == GatewayConfig((), ())


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [f"{path}: cannot read file: No such file or directory"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_bytes(b'_format_version: "3.0"\n# \xff\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [f"{path}: not valid UTF-8 (byte 25)"]


# --- services ---------------------------------------------------------------------------------


def test_load_config_reads_a_file_and_names_it_in_warnings(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(HEADER + "vaults: []\n", encoding="utf-8")
    config = load_config(str(path))
    assert config.warnings == (
        f"{path}: vaults: Kong entity 'vaults' is not supported by tokengate and is ignored",
    )


def test_load_config_passes_the_plugins_to_ignore_on(tmp_path: Path) -> None:
    path = tmp_path / "kong.yaml"
    path.write_text(HEADER + "plugins: [{name: my-company-auth}]\n", encoding="utf-8")
    config = load_config(path, ignored_plugins=frozenset({"my-company-auth"}))
    assert config.warnings == (
        f"{path}: plugins[0]: plugin 'my-company-auth' is not run (--ignore-plugins): what it "
        "guards is open",
    )


@pytest.mark.parametrize(
    ("ignored", "lines"),
    [
        # an ignored plugin's entry is still read as Kong reads any plugin entry
        (frozenset({"my-company-auth"}),
         ["kong.yaml: plugins[0].enabled: expected a boolean, got a string"]),
        # one that stops the file is reported once, by its name
        (frozenset(),
         ["kong.yaml: plugins[0].name: 'my-company-auth' is no plugin Kong bundles, and tokengate "
          "runs only 'openid-connect' and 'cors' (Kong refuses a plugin it has not loaded): if it "
          "is a custom plugin of yours, run with --ignore-plugins my-company-auth to accept that "
          "what it does is not done"]),
    ],
)  # fmt: skip
def test_the_rest_of_an_unknown_plugins_entry_is_read_only_when_it_is_ignored(
    ignored: frozenset[str], lines: list[str]
) -> None:
    text = HEADER + "plugins: [{name: my-company-auth, enabled: 'no'}]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "kong.yaml", ignored_plugins=ignored)
    assert caught.value.errors == lines


def test_a_misspelt_plugins_entry_is_reported_once_by_its_name() -> None:
    assert errors("plugins: [{name: openid_connect, enabled: 'no'}]") == [
        "kong.yaml: plugins[0].name: 'openid_connect' is no plugin; the OpenID Connect plugin is "
        "'openid-connect'"
    ]


def test_url_shorthand_with_port_and_path() -> None:
    (service,) = load("services: [{name: a, url: 'http://Up.internal:8080/api/v1'}]").services
    assert (service.protocol, service.host, service.port, service.path) == (
        "http",
        "up.internal",
        8080,
        "/api/v1",
    )
    assert service.origin == "http://up.internal:8080"


def test_url_shorthand_without_port_or_path() -> None:
    (service,) = load("services: [{name: a, url: 'https://up.internal'}]").services
    assert (service.protocol, service.host, service.port, service.path) == (
        "https",
        "up.internal",
        443,
        None,
    )


def test_url_shorthand_defaults_to_port_80_for_http() -> None:
    (service,) = load("services: [{name: a, url: 'http://up.internal'}]").services
    assert (service.protocol, service.port) == ("http", 80)


def test_port_65535_is_a_port() -> None:
    (service,) = load("services: [{name: a, host: up, port: 65535}]").services
    assert service.port == 65535


def test_protocol_host_port_defaults() -> None:
    """Kong's services schema defaults `port` to 80 whatever the protocol (only the `url`
    shorthand makes https 443), so https without a port is warned about."""
    config = load("""
        services:
          - {name: plain, host: up}
          - {name: tls, host: up, protocol: https, path: /base}
          - {name: tls443, host: up, protocol: https, port: 443}
    """)
    plain, tls, tls443 = config.services
    assert (plain.protocol, plain.port, plain.path, plain.retries) == ("http", 80, None, 5)
    assert (tls.protocol, tls.port, tls.path) == ("https", 80, "/base")
    assert tls443.port == 443
    assert config.warnings == (
        "kong.yaml: services[1].port: not set: 80, Kong's default for https too (set 443 if "
        "that is meant)",
    )


def test_timeouts_in_milliseconds_become_seconds() -> None:
    (service,) = load("""
        services:
          - {name: a, host: up, connect_timeout: 1500, read_timeout: 250, retries: 0}
    """).services
    assert (service.connect_timeout, service.read_timeout) == (1.5, 0.25)
    assert service.write_timeout == 60.0  # Kong's 60000 ms default
    assert service.retries == 0
    (written,) = load("services: [{name: a, host: up, write_timeout: 750}]").services
    assert (written.connect_timeout, written.read_timeout, written.write_timeout) == (60, 60, 0.75)


@pytest.mark.parametrize("host", ["[::1", "::1]", "[::1]x"])
def test_an_ipv6_host_with_a_stray_bracket_is_refused(host: str) -> None:
    # (the reason given is pinned in test_found_bugs_h11.py: it says to set the port)
    (line,) = errors(f"services: [{{name: a, host: '{host}'}}]")
    assert line.startswith(f"kong.yaml: services[0].host: invalid host '{host}'"), line


def test_a_host_name_of_253_characters_is_kept() -> None:
    host = f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}"
    (service,) = load(f"services: [{{name: a, host: {host}}}]").services
    assert service.host == host


def test_ipv6_host_is_bracketed_so_the_origin_is_a_url() -> None:
    (service,) = load("services: [{name: a, host: '::1', port: 9000}]").services
    assert service.origin == "http://[::1]:9000"


def test_tls_verify_is_read_and_other_tls_fields_are_warned_about() -> None:
    config = load("services: [{name: a, url: 'https://up', tls_verify: false}]")
    assert config.warnings == ()
    assert config.services[0].tls_verify is False
    assert load("services: [{name: a, url: 'https://up'}]").services[0].tls_verify is True
    config = load("services: [{name: a, url: 'https://up', tls_verify_depth: 2}]")
    assert config.warnings == (
        "kong.yaml: services[0].tls_verify_depth: not supported by tokengate and ignored",
    )


def test_disabled_service_drops_its_routes_with_a_warning() -> None:
    config = load("""
        services:
          - name: old
            host: up
            enabled: false
            routes: [{name: r, paths: [/a]}]
        routes:
          - {name: top, service: old, paths: [/b]}
    """)
    assert config.services == ()
    assert config.routes == ()
    assert config.warnings == (
        "kong.yaml: services[0].routes[0]: route ignored: service 'old' is disabled",
        "kong.yaml: routes[0]: route ignored: service 'old' is disabled",
    )


# --- routes -----------------------------------------------------------------------------------


def test_nested_routes_then_top_level_routes_in_file_order() -> None:
    config = load("""
        routes:
          - {name: by-name, service: b, paths: [/3]}
          - {name: by-id, service: 5e1f1c2a-9d3b-4c6e-8a7f-0123456789ab, paths: [/4]}
          - {name: by-ref-id, service: {id: 5e1f1c2a-9d3b-4c6e-8a7f-0123456789ab}, paths: [/5]}
          - {name: by-ref-name, service: {name: b}, paths: [/6]}
        services:
          - name: a
            id: 5e1f1c2a-9d3b-4c6e-8a7f-0123456789ab
            host: up-a
            routes: [{name: a1, paths: [/1]}]
          - {name: b, host: up-b, routes: [{name: b1, paths: [/2]}]}
    """)
    names = [(route.name, route.service.name if route.service else None) for route in config.routes]
    assert names == [
        ("a1", "a"),
        ("b1", "b"),
        ("by-name", "b"),
        ("by-id", "a"),
        ("by-ref-id", "a"),
        ("by-ref-name", "b"),
    ]
    assert [service.name for service in config.services] == ["a", "b"]


def test_route_fields_are_normalised_and_defaulted() -> None:
    (route,) = load("""
        services:
          - name: a
            host: up
            routes:
              - paths: [/api, '~/users/(?<id>\\d+)$']
                methods: [GET, POST]
                hosts: [API.Example.com, '*.example.org', 'example.*:8443']
                headers: {X-Version: ['1', '~*^v2']}
    """).routes
    assert route.paths == ("/api", "~/users/(?<id>\\d+)$")  # Kong's named group, as written
    assert route.methods == ("GET", "POST")
    assert route.hosts == ("api.example.com", "*.example.org", "example.*:8443")
    assert dict(route.headers) == {"x-version": ("1", "~*^v2")}
    assert (route.strip_path, route.preserve_host, route.regex_priority) == (True, False, 0)
    assert (route.protocols, route.path_handling, route.plugins) == (("http", "https"), "v0", ())
    assert route.name is None


def test_route_hosts_keep_ipv6_addresses_apart_from_ports_and_ports_up_to_65535() -> None:
    (route,) = load("""
        services:
          - name: a
            host: up
            routes:
              - hosts: ['::ABCD', '[::AB]', '[::1]:8080', '[::1]:8', 'a.b:1', 'a.b:65535']
    """).routes
    assert route.hosts == ("[::abcd]", "[::ab]", "[::1]:8080", "[::1]:8", "a.b:1", "a.b:65535")


def test_route_without_service_warns_and_has_none() -> None:
    config = load("routes: [{name: orphan, paths: [/x]}]")
    assert route_named(config, "orphan").service is None
    assert config.warnings == (
        'kong.yaml: routes[0]: route has no service; requests it matches get 503 "no Service found '
        'with those values"',
    )


def test_path_handling_v1_is_read_and_warned_about_as_kong_3_does() -> None:
    config = load("services: [{name: a, host: up, routes: [{paths: [/a], path_handling: v1}]}]")
    assert config.routes[0].path_handling == "v1"
    assert config.warnings == (
        "kong.yaml: services[0].routes[0].path_handling: 'v1' is deprecated and does not work "
        "under Kong's default traditional_compatible router: the upstream path is built as with "
        "'v0' (please use 'v0')",
    )


def test_snis_weigh_in_priority_with_a_warning_and_need_https() -> None:
    config = load("services: [{name: a, host: up, routes: [{paths: [/a], snis: [a.test]}]}]")
    assert config.routes[0].snis == ("a.test",)
    assert config.warnings == (
        "kong.yaml: services[0].routes[0].snis: not matched (tokengate does not terminate TLS), "
        "but counted in the route's priority as Kong counts them",
    )
    assert errors(
        "services: [{name: a, host: up, routes: [{paths: [/a], snis: [a.test], "
        "protocols: [http]}]}]"
    ) == [
        "kong.yaml: services[0].routes[0].snis: can only be set when 'protocols' includes 'https'"
    ]


def test_duplicate_path_is_a_warning() -> None:
    config = load("services: [{name: a, host: up, routes: [{paths: [/a, /a]}]}]")
    assert config.routes[0].paths == ("/a",)
    assert config.warnings == ("kong.yaml: services[0].routes[0].paths[1]: duplicate value '/a'",)


def test_unquoted_format_version_is_accepted() -> None:
    config = load("services: [{name: a, host: up}]", header="_format_version: 3.0\n")
    assert config.services[0].name == "a"


def test_pre_3_format_reads_regex_paths_as_kong_3_does() -> None:
    config = load(
        "services: [{name: a, host: up, routes: [{paths: ['/users/\\d+', /plain-path_1.0]}]}]",
        header='_format_version: "2.1"\n',
    )
    assert config.routes[0].paths == ("~/users/\\d+", "/plain-path_1.0")
    assert config.warnings == (
        "kong.yaml: services[0].routes[0].paths: _format_version 2.1: '/users/\\d+' read as regex "
        "with a '~' prefix, as Kong 3 does; run 'deck file convert'",
    )
    # a route that matches by something else than paths has nothing to convert
    config = load(
        "services: [{name: a, host: up, routes: [{hosts: [a.example]}]}]",
        header='_format_version: "1.1"\n',
    )
    assert (config.routes[0].paths, config.warnings) == ((), ())
    config = load("routes: [{paths: ['/a/\\d', '/b$']}]", header='_format_version: "1.1"\n')
    assert config.warnings[0] == (
        "kong.yaml: routes[0].paths: _format_version 1.1: '/a/\\d', '/b$' read as regex with a "
        "'~' prefix, as Kong 3 does; run 'deck file convert'"
    )


# --- plugins ----------------------------------------------------------------------------------

PRECEDENCE = """
    services:
      - name: a
        host: up
        plugins: [{name: openid-connect, config: {issuer: "https://idp.example/service-a"}}]
        routes:
          - name: a-plain
            paths: [/a]
          - name: a-own
            paths: [/a/own]
            plugins: [{name: openid-connect, config: {issuer: "https://idp.example/route-a-own"}}]
      - name: b
        host: up
        routes: [{name: b-plain, paths: [/b]}]
    routes:
      - {name: top, service: b, paths: [/top]}
    plugins:
      - {name: openid-connect, config: {issuer: "https://idp.example/global"}}
      - {name: openid-connect, route: top, config: {issuer: "https://idp.example/route-top"}}
"""


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("b-plain", "global"),  # only the global plugin applies
        ("a-plain", "service-a"),  # service beats global
        ("a-own", "route-a-own"),  # route beats service and global
        ("top", "route-top"),  # a top-level plugin scoped by route name
    ],
)
def test_plugin_precedence(route: str, expected: str) -> None:
    assert issuer(route_named(load(PRECEDENCE), route)) == expected


def test_route_and_service_scope_beats_route_scope() -> None:
    config = load("""
        services: [{name: a, host: up, routes: [{name: r, paths: [/]}]}]
        plugins:
          - {name: openid-connect, route: r, config: {issuer: "https://idp.example/route"}}
          - name: openid-connect
            route: r
            service: a
            config: {issuer: "https://idp.example/route-and-service"}
    """)
    assert issuer(route_named(config, "r")) == "route-and-service"


def test_plugin_config_is_a_read_only_copy() -> None:
    plugins = 'plugins: [{name: openid-connect, config: {issuer: "https://idp.example"}}]'
    (route,) = load("routes: [{paths: [/]}]\n" + plugins).routes
    assert route.plugins == (
        Plugin(name="openid-connect", config={"issuer": "https://idp.example"}),
    )
    with pytest.raises(TypeError):
        route.plugins[0].config["issuer"] = "x"  # type: ignore[index]


def test_disabled_plugin_is_ignored_and_the_next_scope_applies() -> None:
    config = load("""
        services:
          - name: a
            host: up
            plugins: [{name: openid-connect, config: {issuer: "https://idp.example/service"}}]
            routes:
              - name: old
                paths: [/]
                plugins:
                  - {name: openid-connect, enabled: false, config: {issuer: "https://idp.example/r"}}
    """)
    assert issuer(route_named(config, "old")) == "service"


def test_disabled_plugin_alone_leaves_the_route_unprotected() -> None:
    config = load(
        "routes: [{paths: [/]}]\n"
        'plugins: [{name: openid-connect, enabled: false, config: {issuer: "https://idp.example"}}]'
    )
    assert (config.routes[0].plugins, config.routes[0].oidc) == ((), None)


def test_unsupported_plugin_is_warned_about_and_ignored() -> None:
    config = load("""
        services:
          - name: a
            host: up
            routes: [{name: r, paths: [/], plugins: [{name: proxy-cache}]}]
        plugins:
          - {name: openid-connect, config: {issuer: "https://idp.example/global"}}
          - {name: rate-limiting, config: {minute: 5}}
          - {name: acl, enabled: false}
    """)
    assert issuer(route_named(config, "r")) == "global"
    assert config.warnings == (
        "kong.yaml: services[0].routes[0].plugins[0]: plugin 'proxy-cache' is not supported by "
        "tokengate and is ignored",
        "kong.yaml: plugins[1]: plugin 'rate-limiting' is not supported by tokengate and is "
        "ignored",
    )


ACCESS_PLUGIN_PLACES = {
    "route": (
        "services: [{name: a, host: up, routes: [{name: r, paths: [/], plugins: [{name: %s}]}]}]",
        "services[0].routes[0].plugins[0]",
    ),
    "service": (
        "services: [{name: a, host: up, plugins: [{name: %s}], routes: [{name: r, paths: [/]}]}]",
        "services[0].plugins[0]",
    ),
    "global": (
        "services: [{name: a, host: up, routes: [{name: r, paths: [/]}]}]\nplugins: [{name: %s}]",
        "plugins[0]",
    ),
}


@pytest.mark.parametrize("place", ACCESS_PLUGIN_PLACES)
@pytest.mark.parametrize(
    "name", ["key-auth", "acl", "ip-restriction", "request-termination", "jwt-signer"]
)
def test_an_access_plugin_tokengate_does_not_run_is_refused(place: str, name: str) -> None:
    """Kong would refuse requests there; ignoring the plugin would let them all in."""
    body, path = ACCESS_PLUGIN_PLACES[place]
    assert errors(body % name) == [
        f"kong.yaml: {path}.name: plugin '{name}' controls access in Kong and tokengate does not "
        "run it, so what it guards would be open: remove it or set enabled: false, or run with "
        f"--ignore-plugins {name} to accept that"
    ]


@pytest.mark.parametrize(
    ("name", "kongs"),
    [("Key-Auth", "key-auth"), ("jwt_signer", "jwt-signer"), ("IP Restriction", "ip-restriction")],
)
def test_a_misspelt_access_plugin_is_refused(name: str, kongs: str) -> None:
    """Kong refuses a plugin name it does not know: warning and ignoring would open the route."""
    body, path = ACCESS_PLUGIN_PLACES["route"]
    expected = [f"kong.yaml: {path}.name: '{name}' is no plugin; Kong's is '{kongs}'"]
    assert errors(body % name) == expected
    assert errors(body % f"{name}, enabled: false") == expected  # Kong knows no such name


@pytest.mark.parametrize("place", ACCESS_PLUGIN_PLACES)
@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("openid-conect", " (did you mean 'openid-connect'?)"),  # a typo
        ("rate-limitting", " (did you mean 'rate-limiting'?)"),
        ("corss", " (did you mean 'cors'?)"),  # one tokengate runs
        ("oidc", ""),  # a community plugin's name
        ("jwt-auth", ""),  # near 'mtls-auth' and 'jwt', yet no typo of either
        ("basic", ""),  # not quite 'basic-auth': a guess, not a typo
        ("my-company-auth", ""),  # a custom plugin
    ],
)
def test_a_plugin_kong_does_not_bundle_is_refused(place: str, name: str, meant: str) -> None:
    """Kong refuses a plugin it has not loaded; warning and ignoring it would turn off, without
    a word, whatever it does (a misspelt openid-connect left its route open)."""
    body, path = ACCESS_PLUGIN_PLACES[place]
    expected = [
        f"kong.yaml: {path}.name: '{name}' is no plugin Kong bundles{meant}, and tokengate runs "
        "only 'openid-connect' and 'cors' (Kong refuses a plugin it has not loaded): if it is a "
        f"custom plugin of yours, run with --ignore-plugins {name} to accept that what it does "
        "is not done"
    ]
    assert errors(body % name) == expected
    assert errors(body % f"{name}, enabled: false") == expected  # Kong knows no such name
    config = parse_config(HEADER + body % name, "kong.yaml", ignored_plugins=frozenset({name}))
    assert config.warnings == (
        f"kong.yaml: {path}: plugin '{name}' is not run (--ignore-plugins): what it guards is open",
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("service-protection", "warned"),  # bundled since 3.9: Kong's, not run
        ("rate-limiting-advanced", "warned"),  # it refuses how much, not what
        ("request-validator", "access"),  # it keeps out what Kong would not let in
        ("ai-lakera-guard", "access"),
        ("ai-sanitizer", "access"),  # block_if_detected refuses the request
        ("datakit", "access"),  # its exit node may end a request
        ("ai-mcp-oauth2", "access"),
        ("openwhisk", "unknown"),  # a Kong Inc. plugin, but installed apart: Kong refuses it
    ],
)
def test_each_plugin_name_is_sorted_as_kong_ships_it(name: str, kind: str) -> None:
    body, path = ACCESS_PLUGIN_PLACES["route"]
    if kind == "warned":
        assert load(body % name).warnings == (
            f"kong.yaml: {path}: plugin '{name}' is not supported by tokengate and is ignored",
        )
    else:
        (error,) = errors(body % name)
        assert ("controls access in Kong" in error) == (kind == "access")
        assert ("is no plugin Kong bundles" in error) == (kind == "unknown")


@pytest.mark.parametrize("name", ["pre-function", "post-function"])
def test_serverless_functions_count_as_access_plugins(name: str) -> None:
    """Their Lua may refuse requests (hand-written auth lives there), and tokengate cannot
    read it: ignoring them could open what Kong keeps shut."""
    body, path = ACCESS_PLUGIN_PLACES["route"]
    assert errors(body % name) == [
        f"kong.yaml: {path}.name: plugin '{name}' controls access in Kong and tokengate does not "
        "run it, so what it guards would be open: remove it or set enabled: false, or run with "
        f"--ignore-plugins {name} to accept that"
    ]


def test_a_plugin_entry_whose_name_is_not_a_string_is_an_error_not_a_crash() -> None:
    assert errors("plugins: [{name: [key-auth]}]") == [
        "kong.yaml: plugins[0].name: expected a string, got a list"
    ]
    # Under a consumer or a consumer group (read only for whether they refuse requests)
    assert errors(
        "consumers: [{username: a, plugins: [{name: [x]}]}]\n"
        "consumer_groups: [{name: g, plugins: [{name: {a: 1}}]}]\n"
    ) == [
        "kong.yaml: consumers[0].plugins[0].name: expected a string, got a list",
        "kong.yaml: consumer_groups[0].plugins[0].name: expected a string, got a mapping",
    ]


@pytest.mark.parametrize("place", ACCESS_PLUGIN_PLACES)
def test_an_access_plugin_named_in_ignored_plugins_is_warned_about(place: str) -> None:
    body, path = ACCESS_PLUGIN_PLACES[place]
    text = HEADER + body % "key-auth"
    config = parse_config(text, "kong.yaml", ignored_plugins=frozenset({"key-auth"}))
    assert config.warnings == (
        f"kong.yaml: {path}: plugin 'key-auth' is not run (--ignore-plugins): what it guards "
        "is open",
    )
    # Naming another plugin does not let this one through.
    with pytest.raises(ConfigError):
        parse_config(text, "kong.yaml", ignored_plugins=frozenset({"acl"}))


KEY_AUTH_ROUTE = HEADER + textwrap.dedent("""
    services: [{name: a, host: up, routes: [{name: r, paths: [/], plugins: [{name: key-auth}]}]}]
    consumers: [{username: c, plugins: [{name: rate-limiting}]}]
""")


@pytest.mark.parametrize(
    ("ignored", "warning"),
    [
        ("key-auhs", "--ignore-plugins key-auhs: no plugin of this file has that name"),
        (
            "rate_limiting",
            "--ignore-plugins rate_limiting: no plugin of this file has that name "
            "(did you mean 'rate-limiting'?)",
        ),
        ("acl", "--ignore-plugins acl: no plugin of this file has that name"),
        ("cors", "tokengate runs 'cors' itself: --ignore-plugins does not turn it off"),
        (
            "openid-connect",
            "tokengate runs 'openid-connect' itself: --ignore-plugins does not turn it off",
        ),
    ],
)
def test_an_ignore_plugins_name_no_plugin_has_is_warned_about(ignored: str, warning: str) -> None:
    """A misspelt --ignore-plugins entry would otherwise do nothing, without a word."""
    names = frozenset({"key-auth", ignored})
    config = parse_config(KEY_AUTH_ROUTE, "kong.yaml", ignored_plugins=names)
    assert f"kong.yaml: {warning}" in config.warnings
    # A name the file has (under a consumer too) is not warned about.
    used = parse_config(KEY_AUTH_ROUTE, "kong.yaml", ignored_plugins=frozenset({"key-auth"}))
    assert not any("no plugin of this file" in line for line in used.warnings)


@pytest.mark.parametrize("given", ["key_auth", "Key-Auth", "key-auht"])
def test_the_refusal_of_a_plugin_names_the_ignore_plugins_entry_that_meant_it(given: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(KEY_AUTH_ROUTE, "kong.yaml", ignored_plugins=frozenset({given}))
    assert caught.value.errors == [
        "kong.yaml: services[0].routes[0].plugins[0].name: plugin 'key-auth' controls access in "
        "Kong and tokengate does not run it, so what it guards would be open: remove it or set "
        f"enabled: false, or run with --ignore-plugins key-auth to accept that "
        f"(--ignore-plugins {given} does not name it)"
    ]


@pytest.mark.parametrize(
    "scope", ["consumer: guest", "consumer_group: gold", "consumer_group: {name: gold}"]
)
def test_an_access_plugin_scoped_to_a_consumer_is_warned_about(scope: str) -> None:
    """It runs in Kong only for requests identified as that consumer's, and tokengate
    identifies none: nothing is opened by leaving it out."""
    config = load(f"""
        services: [{{name: a, host: up, routes: [{{name: r, paths: [/]}}]}}]
        plugins: [{{name: request-termination, {scope}}}]
        consumers: [{{username: guest}}]
        consumer_groups: [{{name: gold}}]
    """)
    assert (
        "kong.yaml: plugins[0]: plugin 'request-termination' is not supported by tokengate and "
        "is ignored"
    ) in config.warnings
    assert not [w for w in config.warnings if "controls access" in w]


@pytest.mark.parametrize("key", ["consumer", "consumer_group"])
def test_consumer_scoped_openid_connect_is_refused(key: str) -> None:
    """Kong's schema gives the plugin only route and service scopes (it finds the consumer
    itself); ignoring the entry would leave the route open where Kong refuses the file."""
    found = errors(
        f"routes: [{{paths: [/]}}]\nplugins: [{{name: openid-connect, {key}: alice, "
        'config: {issuer: "https://idp.example"}}]'
    )
    what = key.replace("_", " ")
    assert f"kong.yaml: plugins[0].{key}: 'openid-connect' cannot be scoped to a {what}" in found


def test_an_https_only_route_is_warned_about() -> None:
    config = load("services: [{name: a, host: up, routes: [{paths: [/], protocols: [https]}]}]")
    assert config.routes[0].protocols == ("https",)
    assert config.warnings == (
        "kong.yaml: services[0].routes[0].protocols: https only: tokengate speaks plain HTTP, so "
        "requests get 426 (or the https_redirect_status_code redirect) unless they come from a "
        "--trusted-ips proxy that sends X-Forwarded-Proto: https",
    )


def test_plugin_protocols_never_switch_auth_off() -> None:
    config = load(
        "routes: [{paths: [/]}]\nplugins: [{name: openid-connect, protocols: [https], "
        'config: {issuer: "https://idp.example"}}]'
    )
    assert config.routes[0].oidc is not None
    assert (
        "kong.yaml: plugins[0].protocols: ignored: tokengate runs openid-connect on http and https"
        in config.warnings
    )
    both = load(
        "services: [{name: a, host: up, routes: [{paths: [/]}]}]\nplugins: [{name: "
        'openid-connect, protocols: [http, https], config: {issuer: "https://idp.example"}}]'
    )
    assert both.warnings == ()


@pytest.mark.parametrize("config", ['{issuer: "https://idp.example"}', "{origins: ['*']}"])
def test_plugin_ordering_is_warned_about_and_the_plugin_still_applies(config: str) -> None:
    name = "openid-connect" if "issuer" in config else "cors"
    loaded = load(
        f"routes: [{{paths: [/]}}]\nplugins: [{{name: {name}, config: {config}, "
        "ordering: {before: {access: [rate-limiting]}}}]"
    )
    assert loaded.routes[0].plugin(name) is not None
    assert "kong.yaml: plugins[0].ordering: ignored by tokengate" in loaded.warnings


def test_environment_variables_are_not_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISSUER", "https://expanded.example")
    config = load(
        "routes: [{paths: [/]}]\n"
        "plugins: [{name: openid-connect, config: {issuer: https://idp.example/$ISSUER}}]"
    )
    assert issuer(config.routes[0]) == "$ISSUER"


# --- the openid-connect config (details in test_oidc_config.py) ---------------------------------


def test_route_oidc_is_the_typed_config_of_the_plugin_that_applies() -> None:
    config = load("""
        services:
          - name: a
            host: up
            plugins:
              - name: openid-connect
                config:
                  issuer: https://idp.example/auth/.well-known/openid-configuration
                  scopes_required: [read]
                  timeout: 2000
            routes: [{name: r, paths: [/]}]
        routes: [{name: public, service: a, paths: [/public], plugins: []}]
    """)
    oidc = route_named(config, "r").oidc
    assert oidc is not None
    assert (oidc.expected_issuer, oidc.scopes_required, oidc.timeout) == (
        "https://idp.example/auth",
        ("read",),
        2.0,
    )
    # the same instance for every route it applies to: one authenticator can serve them all
    assert route_named(config, "public").oidc is oidc


def test_route_without_plugin_has_no_oidc() -> None:
    assert load("routes: [{paths: [/]}]").routes[0].oidc is None


def test_oidc_config_errors_name_the_plugin_path() -> None:
    found = errors("""
        services:
          - name: a
            host: up
            plugins: [{name: openid-connect, config: {issuer: "https://i.example", leeway: x}}]
            routes:
              - name: r
                paths: [/]
                plugins: [{name: openid-connect, config: {verify_signature: false}}]
    """)
    assert found == [  # nested routes are read before the service's plugins
        "kong.yaml: services[0].routes[0].plugins[0].config.issuer: required field missing",
        "kong.yaml: services[0].routes[0].plugins[0].config.verify_signature: tokengate never "
        "accepts unsigned or unverified tokens: remove verify_signature: false",
        "kong.yaml: services[0].plugins[0].config.leeway: expected a number, got a string",
    ]


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("6e4", " ('6e4' is read as text: write 60000)"),
        ("2E+3", " ('2E+3' is read as text: write 2000)"),
        ("1.0e400", ""),  # no number to write instead
        ("'60s'", ""),
    ],
)
def test_a_number_yaml_1_1_reads_as_text_says_how_to_write_it(written: str, hint: str) -> None:
    """PyYAML (YAML 1.1) reads `6e4` as a string, where decK's YAML 1.2 reads a number."""
    found = errors(f"services: [{{name: a, host: up, connect_timeout: {written}}}]")
    assert found == [
        f"kong.yaml: services[0].connect_timeout: expected an integer, got a string{hint}"
    ]


def test_disabled_plugin_config_is_still_validated() -> None:
    # As Kong does: enabling it later must not be the moment the file turns out to be broken.
    found = errors("routes: [{paths: [/]}]\nplugins: [{name: openid-connect, enabled: false}]")
    assert found == ["kong.yaml: plugins[0].config.issuer: required field missing"]


def test_config_that_is_not_a_mapping_is_one_error() -> None:
    found = errors("routes: [{paths: [/]}]\nplugins: [{name: openid-connect, config: x}]")
    assert found == ["kong.yaml: plugins[0].config: expected a mapping, got a string"]


def test_oidc_config_warnings_reach_the_gateway_config() -> None:
    config = load("""
        services: [{name: a, host: up, routes: [{paths: [/]}]}]
        plugins:
          - name: openid-connect
            config:
              issuer: "https://idp.example"
              client_id: [abc]
              auth_methods: [bearer, session]
    """)
    assert config.warnings == (
        "kong.yaml: plugins[0].config.auth_methods: not implemented by tokengate, ignored: session",
        "kong.yaml: plugins[0].config: not implemented by tokengate, ignored: client_id",
    )


# --- entities tokengate does not implement ------------------------------------------------------


def test_unknown_kong_entities_are_warned_about_one_each() -> None:
    config = load("""
        _info: {select_tags: [x]}
        _workspace: default
        consumers: [{username: alice}]
        consumer_groups: [{name: gold}]
        upstreams: []
        vaults: []
    """)
    assert config.warnings == (
        "kong.yaml: consumer_groups: Kong entity 'consumer_groups' is not supported by "
        "tokengate (it gives no request a consumer group) and is ignored, but for refusing "
        "consumer_claims beside a plugin there that refuses requests",
        "kong.yaml: vaults: Kong entity 'vaults' is not supported by tokengate and is ignored",
    )


def test_what_tokengate_ignores_of_consumers_is_named_once() -> None:
    config = load("""
        consumers:
        - {username: alice, tags: [t], keyauth_credentials: [{key: k}], acls: [{group: g}]}
        - {username: bob, plugins: [{name: rate-limiting}], keyauth_credentials: []}
    """)
    assert config.warnings == (
        "kong.yaml: consumers: ignored by tokengate: keyauth_credentials, acls, plugins (of a "
        "consumer, only its id, username and custom_id are read, for anonymous and "
        "consumer_claims)",
    )


BOB_ID = "0b6e8a5e-54a4-4f7b-a3a6-8c3c1d2e9f10"
GUEST_ID = "e1d0c2cc-2662-5465-84c2-24e06158a934"  # Kong's: UUIDv5 of "guest" (see below)


ANONYMOUS_ROUTE = textwrap.dedent("""\
    services: [{name: s, host: up, routes: [{name: r, paths: [/api]}]}]
    plugins:
      - name: openid-connect
        config: {issuer: "https://idp.example", anonymous: guest}
""")


def test_anonymous_must_name_a_declared_consumer() -> None:
    """Kong fails every tokenless request when the anonymous consumer does not exist; passing
    them all instead would open the route."""
    assert errors(ANONYMOUS_ROUTE) == [
        "kong.yaml: plugins[0].config.anonymous: names consumer 'guest', which this file does "
        "not declare (Kong then answers every request without a valid token with an error); "
        "declare it under `consumers` (username or id)"
    ]


@pytest.mark.parametrize(
    ("anonymous", "consumer", "found"),
    [
        # Kong's id for a consumer declared without one: a UUIDv5 of its username
        ("guest", "{username: guest}", Consumer(id=GUEST_ID, username="guest")),
        (
            "8f2a4b1c-7d6e-4f50-9a8b-c0d1e2f3a4b5",
            "{id: 8f2a4b1c-7d6e-4f50-9a8b-c0d1e2f3a4b5, custom_id: c-1}",
            Consumer(id="8f2a4b1c-7d6e-4f50-9a8b-c0d1e2f3a4b5", custom_id="c-1"),
        ),
        (
            "guest",
            "{username: guest, id: 8f2a4b1c-7d6e-4f50-9a8b-c0d1e2f3a4b5, custom_id: '7'}",
            Consumer("8f2a4b1c-7d6e-4f50-9a8b-c0d1e2f3a4b5", "7", "guest"),
        ),
    ],
)
def test_anonymous_naming_a_declared_consumer_is_accepted(
    anonymous: str, consumer: str, found: Consumer
) -> None:
    """The consumer itself is kept: the upstream is told who it is, as Kong does."""
    route = ANONYMOUS_ROUTE.replace("anonymous: guest", f"anonymous: {anonymous}")
    config = load(route + f"consumers: [{consumer}]\n")
    oidc = route_named(config, "r").oidc
    assert oidc is not None and oidc.anonymous == anonymous
    assert oidc.anonymous_consumer == found


def test_a_consumer_declared_without_an_id_gets_the_one_kong_gives_it() -> None:
    """Kong's declarative loader ids such a consumer by a UUIDv5 of its username (namespace:
    the v5 of "consumers" in Kong's entity namespace fd02801f-...), the same at every load, and
    sends it as X-Consumer-ID; `anonymous` and consumer_by id may name it so."""
    consumers = (
        "consumers: [{username: guest}, {custom_id: app-1}, {custom_id: app-2}, "
        "{username: bob, id: 0b6e8a5e-54a4-4f7b-a3a6-8c3c1d2e9f10}]\n"
    )
    by_id = ANONYMOUS_ROUTE.replace("anonymous: guest", f"anonymous: {GUEST_ID}")
    oidc = route_named(load(by_id + consumers), "r").oidc
    assert oidc is not None
    assert oidc.anonymous_consumer == Consumer(id=GUEST_ID, username="guest")
    mapped = route_named(load(MAPPING_ROUTE + consumers), "r").oidc
    assert mapped is not None
    guest, app1, app2, bob = mapped.consumers
    assert guest.id == GUEST_ID
    assert bob.id == "0b6e8a5e-54a4-4f7b-a3a6-8c3c1d2e9f10"  # a declared id is kept
    # Kong gives a custom_id-only consumer a random id at each load; tokengate a stable one,
    # so that workers and reloads agree.
    ids = [app1.id, app2.id]
    assert all(
        i is not None and re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", i) for i in ids
    )
    assert len({GUEST_ID, app1.id, app2.id}) == 3
    again = route_named(load(MAPPING_ROUTE + consumers), "r").oidc
    assert again is not None and again.consumers == mapped.consumers


def test_a_generated_consumer_id_that_another_consumer_declares_is_refused() -> None:
    """Kong refuses the file (a uniqueness violation of the primary key): two consumers with one
    X-Consumer-ID would be told apart by nothing."""
    assert errors(f"consumers: [{{username: alice, id: {GUEST_ID}}}, {{username: guest}}]") == [
        f"kong.yaml: consumers[1]: the id Kong gives this consumer, '{GUEST_ID}' (derived from "
        "its username), is consumers[0]'s id too"
    ]
    assert errors(f"consumers: [{{username: guest}}, {{username: alice, id: {GUEST_ID}}}]") == [
        f"kong.yaml: consumers[1].id: '{GUEST_ID}' is consumers[0]'s id too"
    ]
    # The consumer is still known by its username: no follow-on errors about it.
    assert errors(
        ANONYMOUS_ROUTE + f"consumers: [{{username: alice, id: {GUEST_ID}}}, {{username: guest}}]"
    ) == [
        f"kong.yaml: consumers[1]: the id Kong gives this consumer, '{GUEST_ID}' (derived from "
        "its username), is consumers[0]'s id too"
    ]


def test_a_reference_finds_a_consumer_by_id_before_username() -> None:
    """As Kong's load_consumer: a name that is one consumer's id and another's username is
    the first's, whichever comes first in the file."""
    consumers = f"consumers: [{{username: guest}}, {{username: '{GUEST_ID}', custom_id: other}}]\n"
    by_id = ANONYMOUS_ROUTE.replace("anonymous: guest", f"anonymous: '{GUEST_ID}'")
    oidc = route_named(load(by_id + consumers), "r").oidc
    assert oidc is not None
    assert oidc.anonymous_consumer == Consumer(id=GUEST_ID, username="guest")


def test_a_plugins_consumer_is_found_by_username_before_id() -> None:
    """Kong's declarative loader resolves a plugin's `consumer` by the endpoint key (username)
    first: a request-termination naming 'G' is on the consumer whose username is G, which is
    then no anonymous consumer to let requests through as."""
    other = "11111111-1111-1111-1111-111111111111"
    text = textwrap.dedent(f"""\
        services: [{{name: s, host: up, routes: [{{name: r, paths: [/api]}}]}}]
        consumers: [{{username: guest}}, {{username: '{GUEST_ID}', id: '{other}'}}]
        plugins:
          - name: openid-connect
            config: {{issuer: "https://idp.example", anonymous: '{other}'}}
          - {{name: request-termination, consumer: '{GUEST_ID}'}}
    """)
    assert errors(text) == [
        f"kong.yaml: plugins[0].config.anonymous: consumer '{other}' has a plugin that refuses "
        "requests, which tokengate does not run: Kong runs it on every anonymous request (a "
        "request-termination there refuses them all)"
    ]
    # A mapping names a consumer by its id only, as in Kong.
    assert errors(
        "consumers: [{username: bob}]\nplugins: [{name: rate-limiting, consumer: {username: bob}}]"
    ) == ["kong.yaml: plugins[0].consumer: a mapping names no consumer of this file"]


@pytest.mark.parametrize(
    ("attached", "line"),
    [
        (
            "  - {name: rate-limiting, consumer: nobody}\n",
            "plugins[1].consumer: 'nobody' names no consumer of this file",
        ),
        (
            "  - {name: rate-limiting, consumer: {id: 1}}\n",
            "plugins[1].consumer: a mapping names no consumer of this file",
        ),
        (
            "  - {name: key-auth, consumer_group: nobody}\n",
            "plugins[1].consumer_group: names no consumer group of this file",
        ),
        (
            "  - {name: rate-limiting, consumer: [a]}\n",
            "plugins[1].consumer: a list names no consumer of this file",
        ),
        (
            "  - {name: rate-limiting, consumer: {id: [a]}}\n",
            "plugins[1].consumer: a mapping names no consumer of this file",
        ),
        (
            "  - {name: key-auth, consumer_group: [a]}\n",
            "plugins[1].consumer_group: names no consumer group of this file",
        ),
    ],
    ids=[
        "consumer",
        "consumer by id",
        "consumer group",
        "consumer list",
        "consumer by a list id",
        "group list",
    ],
)
def test_a_plugin_scoped_to_nothing_is_refused(attached: str, line: str) -> None:
    """Kong refuses a reference to an entity the file does not declare."""
    assert errors(ANONYMOUS_ROUTE.replace("anonymous: guest", "leeway: 1") + attached) == [
        f"kong.yaml: {line}"
    ]


@pytest.mark.parametrize(
    ("plugins", "line"),
    [
        ("[request-termination]", "plugins[0]: expected a mapping, got a string"),
        ("{name: request-termination}", "plugins: expected a list, got a mapping"),
        # the entries after one that is not a mapping are still checked
        (
            "[request-termination, {name: openid-connect}]",
            "plugins[0]: expected a mapping, got a string\n"
            "plugins[1].name: 'openid-connect' cannot be scoped to a consumer",
        ),
    ],
)
def test_a_consumers_plugins_that_are_no_plugin_entries_are_refused(
    plugins: str, line: str
) -> None:
    """Kong refuses them; skipping them would skip a request-termination that makes the
    anonymous consumer refuse every request."""
    found = errors(ANONYMOUS_ROUTE + f"consumers: [{{username: guest, plugins: {plugins}}}]\n")
    assert found == [f"kong.yaml: consumers[0].{one}" for one in line.split("\n")]


@pytest.mark.parametrize(
    ("groups", "line"),
    [
        ("{name: g}", "consumer_groups: expected a list, got a mapping"),
        ("[gold]", "consumer_groups[0]: expected a mapping, got a string"),
        ("[{plugins: []}]", "consumer_groups[0].name: required field missing"),
        ("[{name: [g]}]", "consumer_groups[0].name: expected a non-empty string"),
        ("[{name: g, id: 7}]", "consumer_groups[0].id: expected a string, got an integer"),
        ("[{name: g}, {name: g}]", "consumer_groups[1].name: 'g' names another group too"),
        (
            f"[{{name: g, id: {S1}}}, {{name: h, id: {S1}}}]",
            f"consumer_groups[1].id: duplicate consumer group id '{S1}' "
            "(first at consumer_groups[0])",
        ),
    ],
)
def test_consumer_groups_kong_refuses_are_refused(groups: str, line: str) -> None:
    assert errors(f"consumer_groups: {groups}") == [f"kong.yaml: {line}"]


def test_a_group_may_be_named_like_another_groups_id() -> None:
    """Kong's group names are unique among names; ids are another field."""
    uuid_ = "5f0c2a1e-0000-4000-8000-000000000001"
    load(f"consumer_groups: [{{name: a, id: '{uuid_}'}}, {{name: '{uuid_}'}}]")


@pytest.mark.parametrize("owner", ["consumers: [{username: a, ", "consumer_groups: [{name: g, "])
def test_plugins_under_consumers_are_held_to_kongs_names(owner: str) -> None:
    """tokengate runs none of them, but Kong refuses the file for these names: so does
    tokengate, rather than accept what Kong would not load."""
    where = "consumers[0]" if owner.startswith("consumers") else "consumer_groups[0]"
    kind = "consumer" if owner.startswith("consumers") else "consumer group"
    found = errors(
        owner + "plugins: [{name: openid-connect, config: {issuer: 'https://idp.example'}}, "
        "{name: OpenID_Connect}, {name: my-company-auth}]}]"
    )
    assert found[:2] == [
        f"kong.yaml: {where}.plugins[0].name: 'openid-connect' cannot be scoped to a {kind}",
        f"kong.yaml: {where}.plugins[1].name: 'OpenID_Connect' is no plugin; the OpenID Connect "
        "plugin is 'openid-connect'",
    ]
    assert found[2].startswith(
        f"kong.yaml: {where}.plugins[2].name: 'my-company-auth' is no plugin Kong bundles"
    )


def test_an_anonymous_consumer_that_cannot_be_named_in_a_header_is_refused() -> None:
    assert errors(ANONYMOUS_ROUTE + 'consumers: [{username: guest, custom_id: "a\\nb"}]\n') == [
        "kong.yaml: plugins[0].config.anonymous: consumer 'guest' has a custom_id that cannot "
        "be sent in an X-Consumer-* header (printable ASCII only)"
    ]


@pytest.mark.parametrize(
    "attached",
    [
        "consumers: [{username: guest, plugins: [{name: request-termination}]}]\n",
        # appended to the top-level plugins list, then the consumer
        "  - {name: request-termination, consumer: guest}\nconsumers: [{username: guest}]\n",
        # the plugin names the consumer by id, anonymous by username: one consumer all the same
        "  - {name: request-termination, consumer: {id: 8f2a4b1c-7d6e-4f50-9a8b-c0d1e2f3a4b5}}\n"
        "consumers: [{username: guest, id: 8f2a4b1c-7d6e-4f50-9a8b-c0d1e2f3a4b5}]\n",
    ],
    ids=["nested", "top-level", "top-level, by id"],
)
def test_anonymous_consumer_with_plugins_is_refused(attached: str) -> None:
    """Kong's pattern for 'anonymous means refused' is a request-termination plugin on that
    consumer; tokengate runs no consumer plugins, so it would let everyone through."""
    assert errors(ANONYMOUS_ROUTE + attached) == [
        "kong.yaml: plugins[0].config.anonymous: consumer 'guest' has a plugin that refuses "
        "requests, which tokengate does not run: Kong runs it on every anonymous request (a "
        "request-termination there refuses them all)"
    ]


BLOCKED = "consumer_groups: [{name: blocked, plugins: [{name: request-termination}]}]\n"


@pytest.mark.parametrize(
    ("attached", "plugin"),
    [
        (BLOCKED[:-3] + ", consumers: [{username: guest}]}]\nconsumers: [{username: guest}]\n",
         "consumer_groups[0].plugins[0]"),
        (BLOCKED + "consumers: [{username: guest, groups: [{name: blocked}]}]\n",
         "consumer_groups[0].plugins[0]"),
        # appended to the top-level plugins list, then the group and the consumer
        (f"  - {{name: ip-restriction, consumer_group: {{id: '{S1}'}}}}\n"
         f"consumer_groups: [{{name: blocked, id: '{S1}', consumers: [guest]}}]\n"
         f"consumers: [{{username: guest, id: '{BOB_ID}'}}]\n",
         "plugins[1]"),
        ("  - {name: request-termination, consumer_group: blocked}\n"
         f"consumer_groups: [{{name: blocked, consumers: [{{id: '{BOB_ID}'}}]}}]\n"
         f"consumers: [{{username: guest, id: '{BOB_ID}'}}]\n",
         "plugins[1]"),
    ],
    ids=["group lists it", "consumer lists the group", "by group id", "by consumer id"],
)  # fmt: skip
def test_anonymous_consumer_in_a_group_with_plugins_is_refused(attached: str, plugin: str) -> None:
    """Kong gives an authenticated consumer its groups, the anonymous one too
    (kong.client.authenticate), so a request-termination on its group refuses every anonymous
    request; tokengate runs none, so it would let them all through."""
    (line,) = [error for error in errors(ANONYMOUS_ROUTE + attached) if "anonymous" in error]
    assert line == (
        "kong.yaml: plugins[0].config.anonymous: consumer 'guest' is in a consumer group with a "
        f"plugin that refuses requests ({plugin}), which tokengate does not run: Kong runs it "
        "on every anonymous request"
    )


@pytest.mark.parametrize(
    "attached",
    [
        BLOCKED + "consumers: [{username: guest}, {username: bob, groups: [{name: blocked}]}]\n",
        BLOCKED[:-3] + ", consumers: [{username: bob}]}]\nconsumers: [{username: guest}]\n",
        "consumer_groups: [{name: gold, plugins: [{name: rate-limiting}]}]\n"
        "consumers: [{username: guest, groups: [{name: gold}]}]\n",
    ],
    ids=["another consumer's group", "a group of others", "a group with harmless plugins"],
)
def test_anonymous_consumer_outside_refusing_groups_is_accepted(attached: str) -> None:
    route = route_named(load(ANONYMOUS_ROUTE + attached), "r")
    assert route.oidc is not None and route.oidc.anonymous_consumer is not None


def test_an_anonymous_consumer_with_a_custom_plugin_is_refused() -> None:
    """A plugin Kong does not bundle is refused wherever it is (Kong has not loaded it); named
    in --ignore-plugins, it still may refuse requests in Kong, which tokengate cannot tell."""
    text = (
        HEADER
        + ANONYMOUS_ROUTE
        + ("consumers: [{username: guest, plugins: [{name: my-company-auth}]}]\n")
    )
    anonymous_error = (
        "kong.yaml: plugins[0].config.anonymous: consumer 'guest' has a plugin that refuses "
        "requests, which tokengate does not run: Kong runs it on every anonymous request (a "
        "request-termination there refuses them all)"
    )
    with pytest.raises(ConfigError) as refused:
        parse_config(text, "kong.yaml")
    assert refused.value.errors == [
        "kong.yaml: consumers[0].plugins[0].name: 'my-company-auth' is no plugin Kong bundles, "
        "and tokengate runs only 'openid-connect' and 'cors' (Kong refuses a plugin it has not "
        "loaded): if "
        "it is a custom plugin of yours, run with --ignore-plugins my-company-auth to accept "
        "that what it does is not done",
        anonymous_error,
    ]
    with pytest.raises(ConfigError) as refused:
        parse_config(text, "kong.yaml", ignored_plugins=frozenset({"my-company-auth"}))
    assert refused.value.errors == [anonymous_error]


@pytest.mark.parametrize(
    "consumers",
    [
        "consumers: [{username: guest, plugins: [{name: rate-limiting}]}]\n",
        "consumers: [{username: guest, plugins: [{name: request-termination, enabled: false}]}]\n",
        # appended to the top-level plugins list, then the consumer
        "  - {name: rate-limiting, consumer: guest}\nconsumers: [{username: guest}]\n",
    ],
    ids=["rate-limiting", "disabled request-termination", "top-level rate-limiting"],
)
def test_anonymous_consumer_with_other_plugins_is_accepted(consumers: str) -> None:
    """Only a plugin that refuses requests changes what anonymous means; the others are warned
    about and ignored, as they are anywhere."""
    route = route_named(load(ANONYMOUS_ROUTE + consumers), "r")
    assert route.oidc is not None and route.oidc.anonymous == "guest"


MAPPING_ROUTE = textwrap.dedent("""\
    services: [{name: s, host: up, routes: [{name: r, paths: [/api]}]}]
    plugins:
      - name: openid-connect
        config: {issuer: "https://idp.example", consumer_claims: [[sub]]}
""")


BOB = "0b6e8a5e-54a4-4f7b-a3a6-8c3c1d2e9f10"


def test_consumer_claims_map_to_every_consumer_of_the_file() -> None:
    consumers = f"consumers: [{{username: alice, custom_id: c-1}}, {{id: {BOB}, username: bob}}]\n"
    route = route_named(load(MAPPING_ROUTE + consumers), "r")
    assert route.oidc is not None
    assert route.oidc.consumers == (
        Consumer(id="b32379d9-3d28-5683-a79c-72139be6e34f", custom_id="c-1", username="alice"),
        Consumer(id=BOB, username="bob"),
    )
    plain = route_named(load(ANONYMOUS_ROUTE.replace("anonymous: guest", "leeway: 1")), "r")
    assert plain.oidc is not None and plain.oidc.consumers == ()  # only mapping carries them


@pytest.mark.parametrize(
    ("attached", "line"),
    [
        pytest.param(
            "consumers: [{username: alice}, {username: bob, plugins: [{name: acl}]}]\n",
            "consumer 'bob' has a plugin that refuses requests, which tokengate does not run: "
            "Kong runs it on every request whose token maps to that consumer",
            id="consumer",
        ),
        pytest.param(
            "  - {name: request-termination, consumer: bob}\nconsumers: [{username: bob}]\n",
            "consumer 'bob' has a plugin that refuses requests, which tokengate does not run: "
            "Kong runs it on every request whose token maps to that consumer",
            id="consumer, top-level plugin",
        ),
        pytest.param(
            "consumer_groups: [{name: blocked, plugins: [{name: request-termination}]}]\n",
            "a consumer group has a plugin that refuses requests "
            "(consumer_groups[0].plugins[0]), which tokengate does not run: Kong runs it on "
            "every request whose token maps to one of the group's consumers",
            id="consumer group",
        ),
        pytest.param(
            "  - {name: ip-restriction, consumer_group: blocked}\n",
            "a consumer group has a plugin that refuses requests (plugins[1]), which tokengate "
            "does not run: Kong runs it on every request whose token maps to one of the group's "
            "consumers",
            id="consumer group, top-level plugin",
        ),
        pytest.param(
            "consumers: [{custom_id: app-1, plugins: [{name: request-termination}]}]\n",
            "consumer 'app-1' has a plugin that refuses requests, which tokengate does not run: "
            "Kong runs it on every request whose token maps to that consumer",
            id="consumer known by its custom_id only",
        ),
        pytest.param(
            'consumers: [{username: alice, custom_id: "caf\\u00e9"}]\n',
            "consumer 'alice' has a custom_id that cannot be sent in an X-Consumer-* header "
            "(printable ASCII only)",
            id="unsendable",
        ),
    ],
)
def test_consumer_mapping_refuses_what_it_cannot_do_as_kong(attached: str, line: str) -> None:
    """A plugin on a consumer (or its group) that refuses requests runs in Kong for every
    token mapped to it; tokengate runs none, so mapping would let those tokens through."""
    found = [error for error in errors(MAPPING_ROUTE + attached) if "consumer_claims" in error]
    assert found == [f"kong.yaml: plugins[0].config.consumer_claims: {line}"]


@pytest.mark.parametrize(
    ("consumers", "line"),
    [
        ("[{username: [alice]}]", "consumers[0].username: expected a string, got a list"),
        ("[{username: alice, id: {a: 1}}]", "consumers[0].id: expected a string, got a mapping"),
        ("[{username: true}]", "consumers[0].username: expected a string, got a boolean"),
        ("[{custom_id: ''}]", "consumers[0].custom_id: must not be empty"),
        (f"[{{id: {BOB}, tags: [x]}}]", "consumers[0]: a consumer needs a username or a custom_id"),
        (
            "[{id: bob, username: bob}]",
            "consumers[0].id: expected a UUID, as Kong's ids are, got 'bob'",
        ),
        ("[alice]", "consumers[0]: expected a mapping, got a string"),
        ("[{username: null}]", "consumers[0]: a consumer needs a username or a custom_id"),
        (
            "[{username: alice}, {username: bob, custom_id: c}, {username: alice}]",
            "consumers[2].username: 'alice' is consumers[0]'s username too",
        ),
        (
            "[{username: a, custom_id: c}, {username: b, custom_id: c}]",
            "consumers[1].custom_id: 'c' is consumers[0]'s custom_id too",
        ),
    ],
)
def test_consumers_are_checked_as_kong_checks_them(consumers: str, line: str) -> None:
    """Kong's consumer schema: string fields, and a username or a custom_id (or both)."""
    assert errors(f"consumers: {consumers}") == [f"kong.yaml: {line}"]


def test_consumer_mapping_with_harmless_consumer_plugins_loads() -> None:
    attached = "consumers: [{username: bob, plugins: [{name: rate-limiting}]}]\n"
    route = route_named(load(MAPPING_ROUTE + attached), "r")
    bob = Consumer(id="def4f7d3-9863-5ad2-8fa9-c949bf26f55e", username="bob")
    assert route.oidc is not None and route.oidc.consumers == (bob,)


def test_a_disabled_plugin_may_name_an_undeclared_anonymous_consumer() -> None:
    config = load(
        ANONYMOUS_ROUTE.replace(
            "  - name: openid-connect\n", "  - name: openid-connect\n    enabled: false\n"
        )
    )
    assert route_named(config, "r").oidc is None


@pytest.mark.parametrize(
    "name", ["OpenID-Connect", "openid-connect ", "openid_connect", " OPENID-CONNECT"]
)
def test_a_misspelled_openid_connect_is_refused_not_ignored(name: str) -> None:
    """Kong refuses a plugin it has not loaded; ignoring it with a warning would open the
    route it was meant to protect."""
    found = errors(
        f"routes: [{{paths: [/]}}]\nplugins: [{{name: '{name}', "
        'config: {issuer: "https://idp.example"}}]'
    )
    assert found == [
        f"kong.yaml: plugins[0].name: '{name}' is no plugin; the OpenID Connect plugin is "
        "'openid-connect'"
    ]


def test_a_db_export_file_loads() -> None:
    """`kong config db_export` writes every column: timestamps on each row, and services
    without a name (Kong's is optional) that routes find by id; such a service goes by its id."""
    config = load("""
        services:
        - id: 3b2a0d7c-8a1e-4b43-9f5e-1f0a5c1b2c3d
          host: up.internal
          port: 8080
          protocol: http
          created_at: 1700000000
          updated_at: 1700000001
        routes:
        - id: 5c1f0e2a-1111-4a2b-8c3d-000000000001
          paths: [/api]
          service: {id: 3b2a0d7c-8a1e-4b43-9f5e-1f0a5c1b2c3d}
          created_at: 1700000000
          updated_at: 1700000001
        plugins:
        - name: openid-connect
          route: 5c1f0e2a-1111-4a2b-8c3d-000000000001
          config: {issuer: "https://idp.example/a"}
          created_at: 1700000000
          updated_at: 1700000001
        upstreams:
        - name: pool
          created_at: 1700000000
          targets:
          - target: 10.0.0.1:80
            created_at: 1700000000
        """)
    (route,) = config.routes
    assert route.service is not None
    assert route.service.name == "3b2a0d7c-8a1e-4b43-9f5e-1f0a5c1b2c3d"
    assert route.oidc is not None


E1 = "0b7e3c2d-1a4f-4e5d-8c6b-9a0f1e2d3c4b"


def test_an_unnamed_services_id_clashes_with_another_services_name() -> None:
    """It goes by its id, so the id is a name too: two services must not share one."""
    found = errors("""
        services:
        - name: 0b7e3c2d-1a4f-4e5d-8c6b-9a0f1e2d3c4b
          host: a.internal
          routes: [{paths: [/one]}]
        - id: 0b7e3c2d-1a4f-4e5d-8c6b-9a0f1e2d3c4b
          host: b.internal
          routes: [{paths: [/two]}]
        """)
    assert found == [
        f"kong.yaml: services[1].name: duplicate service name '{E1}' (first at services[0])"
    ]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ("services: [{name: a, id: svc-1, host: up}]", "services[0].id"),
        ("services: [{name: a, host: up, routes: [{paths: [/], id: r1}]}]",
         "services[0].routes[0].id"),
        ("upstreams: [{name: up, id: '42'}]", "upstreams[0].id"),
        ("upstreams: [{name: up, targets: [{target: 'a:1', id: t}]}]",
         "upstreams[0].targets[0].id"),
        ("plugins: [{name: rate-limiting, id: rl, config: {minute: 1}}]", "plugins[0].id"),
        ("consumer_groups: [{name: g, id: gold}]", "consumer_groups[0].id"),
        ("consumers: [{username: u, plugins: [{name: rate-limiting, id: x}]}]",
         "consumers[0].plugins[0].id"),
        # 36 characters, but not 8-4-4-4-12 hex digits
        ("consumers: [{username: u, id: 5e1f1c2a-9d3b-4c6e-8a7f-0123456789ag}]", "consumers[0].id"),
    ],
)  # fmt: skip
def test_an_id_that_is_not_a_uuid_is_an_error(body: str, path: str) -> None:
    """Kong's ids are UUIDs (its uuid typedef): a file with another id does not load there."""
    found = errors(body + "\n")
    assert len(found) == 1 and found[0].startswith(f"kong.yaml: {path}: expected a UUID"), found


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("services: [{name: a, host: up, plugins: [{name: cors, id: %s}]}]\n"
         "plugins: [{name: rate-limiting, id: %s, config: {minute: 1}}]",
         f"plugins[0].id: duplicate plugin id '{S1}' (first at services[0].plugins[0])"),
        ("consumers: [{username: u, plugins: [{name: rate-limiting, id: %s}]}]\n"
         "services: [{name: a, host: up, plugins: [{name: cors, id: %s}]}]",
         f"services[0].plugins[0].id: duplicate plugin id '{S1}' (first at "
         "consumers[0].plugins[0])"),
        ("upstreams: [{name: u, targets: [{target: 'a:1', id: %s}]}, {name: v}]\n"
         "targets: [{target: 'b:1', upstream: v, id: %s}]",
         f"targets[0].id: duplicate target id '{S1}' (first at upstreams[0].targets[0])"),
    ],
)  # fmt: skip
def test_a_second_plugin_or_target_with_an_id_is_refused(body: str, line: str) -> None:
    """Kong's declarative loader refuses any entity whose primary key another of its kind has
    ("uniqueness violation: 'plugins' entity with primary key set to ... already declared")."""
    assert errors(body % (S1, S1) + "\n") == [f"kong.yaml: {line}"]


def test_an_upper_case_uuid_is_an_id() -> None:
    config = load(f"services: [{{name: a, id: {S1.upper()}, host: up, routes: [{{paths: [/]}}]}}]")
    assert config.services[0].name == "a"


def test_a_name_kong_takes_is_kept_and_a_wrong_one_is_one_error() -> None:
    """Kong's utf8_name: ASCII letters, digits, `.-_~` and anything past ASCII. A name it
    refuses is reported once; what refers to it by that name still finds it."""
    config = load("services: [{name: Bestellungen.v2_~-café, host: up, routes: [{paths: [/]}]}]")
    assert config.services[0].name == "Bestellungen.v2_~-café"
    found = errors("""
        services: [{name: orders api, host: up}]
        routes: [{name: all orders, paths: [/], service: orders api}]
        plugins: [{name: cors, route: all orders}, {name: cors, service: orders api}]
    """)
    assert [line.split(": invalid value")[0] for line in found] == [
        "kong.yaml: services[0].name",
        "kong.yaml: routes[0].name",
    ]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ("services: [{name: a, id: svc-1, host: up}]\nroutes: [{paths: [/], service: svc-1}]",
         "services[0].id"),
        ("services: [{name: a, id: svc-1, host: up}]\n"
         "routes: [{paths: [/], service: {id: svc-1}}]", "services[0].id"),
        ("consumers: [{username: u, id: u-1}]\n"
         "plugins: [{name: rate-limiting, consumer: u-1, config: {minute: 1}}]",
         "consumers[0].id"),
        ("consumer_groups: [{name: g, id: gold}]\n"
         "plugins: [{name: rate-limiting, consumer_group: {id: gold}, config: {minute: 1}}]",
         "consumer_groups[0].id"),
    ],
)  # fmt: skip
def test_a_wrong_id_is_one_error_not_one_more_per_reference(body: str, path: str) -> None:
    """The entity still goes by the id it declares: what names it is not reported too."""
    found = errors(body + "\n")
    assert len(found) == 1 and found[0].startswith(f"kong.yaml: {path}: expected a UUID"), found
