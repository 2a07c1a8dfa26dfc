"""Property: any document shaped like a kong.yaml, whatever its values, loads or is refused with
a ConfigError; no other exception (a traceback for a user's mistake) ever leaves the loader."""

from __future__ import annotations

import copy
from typing import Any, Final

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tokengate.gateway.config import (
    _PLUGIN_FIELDS,
    _ROUTE_FIELDS,
    _SERVICE_FIELDS,
    ConfigError,
    GatewayConfig,
    parse_config,
)
from tokengate.gateway.cors import _FIELDS as _CORS_FIELDS
from tokengate.gateway.cors import Cors, CorsConfig
from tokengate.gateway.oidc_config import KONG_FIELDS

# Values near the ones that matter, and anything else.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70_000),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        ["/", "~/a(", "http://x", "https://idp.example", "*", "GET", "a:b", "", "s", "bearer",
         "openid-connect", "cors", "5e1f1c2a-9d3b-4c6e-8a7f-0123456789ab", "{vault://env/x}"]
    ),
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _entity(fields: frozenset[str] | set[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(sorted(fields)), _VALUES, max_size=5)


def _config(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(fields), _VALUES, max_size=4)


def _with(name: str, config: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    extra = _entity(_PLUGIN_FIELDS - {"name", "config"})
    return st.builds(lambda c, e: {**e, "name": name, "config": c}, config, extra)


_PLUGINS = st.lists(
    st.one_of(
        _with("openid-connect", _config(sorted(KONG_FIELDS))),
        _with("cors", _config(sorted(CorsConfig.__dataclass_fields__))),
        _entity(_PLUGIN_FIELDS),
        _VALUES,
    ),
    max_size=2,
)
_ROUTES = st.lists(
    st.builds(lambda r, p: {**r, "plugins": p}, _entity(_ROUTE_FIELDS - {"plugins"}), _PLUGINS),
    max_size=2,
)
_SERVICES = st.lists(
    st.builds(
        lambda s, r, p: {**s, "routes": r, "plugins": p},
        _entity(_SERVICE_FIELDS - {"routes", "plugins"}),
        _ROUTES,
        _PLUGINS,
    ),
    max_size=2,
)
_DOCUMENTS = st.fixed_dictionaries(
    {"_format_version": st.just("3.0")},
    optional={
        "services": st.one_of(_SERVICES, _VALUES),
        "routes": st.one_of(_ROUTES, _VALUES),
        "plugins": st.one_of(_PLUGINS, _VALUES),
        "consumers": st.one_of(
            st.lists(_entity({"id", "username", "custom_id", "tags", "plugins"}), max_size=2),
            _VALUES,
        ),
        "consumer_groups": st.one_of(
            st.lists(_entity({"id", "name", "plugins"}), max_size=2), _VALUES
        ),
        "upstreams": st.one_of(
            st.lists(_entity({"name", "id", "targets", "host_header", "algorithm"}), max_size=2),
            _VALUES,
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_DOCUMENTS)
def test_any_document_loads_or_is_refused_with_its_errors(document: dict[str, Any]) -> None:
    _load_or_refuse(document)


# Near-valid documents: a working kong.yaml (a service, a route with openid-connect and cors, a
# global cors, a consumer) with one to three of its fields set to anything.
_OIDC = {"name": "openid-connect", "config": {"issuer": "https://idp.example/realms/x"}}
_CORS = {"name": "cors", "config": {"origins": ["https://a.example", "(.+\\.)?b\\.example"]}}
_BASE: Final = {
    "_format_version": "3.0",
    "services": [
        {
            "name": "api",
            "url": "http://127.0.0.1:9",
            "routes": [{"name": "r", "paths": ["/r"], "plugins": [_OIDC, _CORS]}],
        }
    ],
    "consumers": [{"username": "alice"}],
    "plugins": [{"name": "cors"}],
}
_ROUTE_AT: Final = ("services", 0, "routes", 0)
# Where a change lands (a path into _BASE), and the fields it may set there.
_PLACES: Final[dict[str, tuple[tuple[str | int, ...], list[str]]]] = {
    "top": ((), ["services", "routes", "plugins", "consumers", "consumer_groups", "upstreams"]),
    "service": (("services", 0), sorted(_SERVICE_FIELDS)),
    "route": (_ROUTE_AT, sorted(_ROUTE_FIELDS)),
    "openid-connect": ((*_ROUTE_AT, "plugins", 0), sorted(_PLUGIN_FIELDS)),
    "openid-connect config": ((*_ROUTE_AT, "plugins", 0, "config"), sorted(KONG_FIELDS)),
    "cors": ((*_ROUTE_AT, "plugins", 1), sorted(_PLUGIN_FIELDS)),
    "cors config": ((*_ROUTE_AT, "plugins", 1, "config"), sorted(_CORS_FIELDS)),
    "global cors": (("plugins", 0), sorted(_PLUGIN_FIELDS)),
    "consumer": (("consumers", 0), ["id", "username", "custom_id", "tags", "plugins"]),
}
_CHANGES = st.lists(
    st.sampled_from(sorted(_PLACES)).flatmap(
        lambda place: st.tuples(st.just(place), st.sampled_from(_PLACES[place][1]), _VALUES)
    ),
    min_size=1,
    max_size=3,
)


def _changed(changes: list[tuple[str, str, Any]]) -> dict[str, Any]:
    document = copy.deepcopy(_BASE)
    for place, key, value in changes:
        target: Any = document
        for step in _PLACES[place][0]:
            if not isinstance(target, dict | list):
                break
            try:
                target = target[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(target, dict):
                target[key] = value
    return document


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(_CHANGES)
@example([("cors", "protocols", [["http"]])])  # a TypeError traceback once
@example([("cors config", "origins", ["a\\"])])
@example([("service", "id", "svc-1"), ("route", "service", "svc-1")])
def test_a_working_file_with_any_field_changed_loads_or_is_refused(
    changes: list[tuple[str, str, Any]],
) -> None:
    config = _load_or_refuse(_changed(changes))
    for route in config.routes if config is not None else ():
        if route.cors is not None:  # a config that loads must also answer
            cors = Cors(route.cors)
            for origin in ("https://a.example", "https://x.b.example:443", "null", ""):
                headers = {"Origin": origin, "Access-Control-Request-Method": "GET"}
                cors.preflight(headers)
                cors.answer_edit(headers)


def _load_or_refuse(document: dict[str, Any]) -> GatewayConfig | None:
    text = yaml.safe_dump(document)
    errors: list[str] = []
    config = None
    try:
        config = parse_config(text, "kong.yaml")
    except ConfigError as exc:
        errors = exc.errors
        assert errors
    assert all(error.startswith("kong.yaml: ") for error in errors)
    return config
