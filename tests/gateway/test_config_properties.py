"""Property: any document shaped like a kong.yaml, whatever its values, loads or is refused with
a ConfigError; no other exception (a traceback for a user's mistake) ever leaves the loader."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokengate.gateway.config import (
    _PLUGIN_FIELDS,
    _ROUTE_FIELDS,
    _SERVICE_FIELDS,
    ConfigError,
    parse_config,
)
from tokengate.gateway.cors import CorsConfig
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


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(_DOCUMENTS)
def test_any_document_loads_or_is_refused_with_its_errors(document: dict[str, Any]) -> None:
    text = yaml.safe_dump(document)
    errors: list[str] = []
    try:
        parse_config(text, "kong.yaml")
    except ConfigError as exc:
        errors = exc.errors
        assert errors
    assert all(error.startswith("kong.yaml: ") for error in errors)
