"""List operations: page[size] / page[number], sort, filter[...]; and concurrent creates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from tests.identity.test_admin_api import JSON, Admin, bad_fields, new_store, start_admin


@pytest.fixture
async def admin(aiohttp_client: AiohttpClient) -> AsyncIterator[Admin]:
    with new_store() as store:
        yield await start_admin(aiohttp_client, store)


@pytest.fixture
async def asid(admin: Admin) -> str:
    server_id: str = (await admin.server())["id"]
    return server_id


async def listing(admin: Admin, path: str, **params: Any) -> JSON:
    status, body = await admin.call("GET", path, params=params)
    assert status == 200, body
    assert set(body) == {"data", "meta"}
    data: JSON = body
    return data


async def names(admin: Admin, path: str, **params: Any) -> list[str]:
    return [item["name"] for item in (await listing(admin, path, **params))["data"]]


async def refused(admin: Admin, path: str, **params: Any) -> dict[str, JSON]:
    status, problem = await admin.call("GET", path, params=params)
    assert status == 400, problem
    fields = bad_fields(problem)
    assert all(p["source"] == "query" for p in fields.values())
    return fields


# ---- pagination ---------------------------------------------------------------------------------


async def test_pages(admin: Admin, asid: str) -> None:
    for i in range(25):
        await admin.scope(asid, name=f"s{i:02d}")
    path = f"/auth-servers/{asid}/scopes"
    first = await listing(admin, path)
    assert first["meta"] == {"page": {"number": 1, "size": 10, "total": 25}}
    assert [s["name"] for s in first["data"]] == [f"s{i:02d}" for i in range(10)]
    third = await listing(admin, path, **{"page[number]": "3"})
    assert [s["name"] for s in third["data"]] == [f"s{i:02d}" for i in range(20, 25)]
    assert third["meta"]["page"] == {"number": 3, "size": 10, "total": 25}
    beyond = await listing(admin, path, **{"page[number]": "4"})
    assert beyond == {"data": [], "meta": {"page": {"number": 4, "size": 10, "total": 25}}}
    sized = await listing(admin, path, **{"page[size]": "7", "page[number]": "2"})
    assert [s["name"] for s in sized["data"]] == [f"s{i:02d}" for i in range(7, 14)]
    assert sized["meta"]["page"] == {"number": 2, "size": 7, "total": 25}
    everything = await listing(admin, path, **{"page[size]": "100"})
    assert len(everything["data"]) == 25


async def test_empty_page_parameters_take_the_defaults(admin: Admin, asid: str) -> None:
    page = await listing(
        admin, f"/auth-servers/{asid}/scopes", **{"page[size]": "", "page[number]": ""}
    )
    assert page["meta"]["page"] == {"number": 1, "size": 10, "total": 0}


@pytest.mark.parametrize(
    ("param", "value", "rule"),
    [
        ("page[size]", "0", "min"),
        ("page[size]", "101", "max"),
        ("page[size]", "-1", "min"),  # an integer, below the minimum
        ("page[number]", "-5", "min"),
        ("page[number]", "-" + "9" * 40, "min"),
        ("page[number]", "-", "is_integer"),
        ("page[size]", "ten", "is_integer"),
        ("page[size]", "1.5", "is_integer"),
        ("page[number]", "0", "min"),
        ("page[number]", "x", "is_integer"),
        ("page[number]", "1" * 4301, "max"),  # past what int() converts: never a 500
        ("page[size]", "9" * 19, "max"),
        ("page[sise]", "10", "unknown_property"),
        ("colour", "blue", "unknown_property"),
    ],
)
async def test_bad_page_parameters(
    admin: Admin, asid: str, param: str, value: str, rule: str
) -> None:
    fields = await refused(admin, f"/auth-servers/{asid}/scopes", **{param: value})
    assert fields[param]["rule"] == rule


async def test_a_page_number_with_leading_zeros_is_its_number(admin: Admin, asid: str) -> None:
    status, body = await admin.call(
        "GET", f"/auth-servers/{asid}/scopes", params={"page[number]": "0" * 30 + "1"}
    )
    assert status == 200 and body["meta"]["page"]["number"] == 1


async def test_a_parameter_given_twice_is_refused(admin: Admin) -> None:
    status, problem = await admin.call("GET", "/auth-servers?page[size]=1&page[size]=2")
    assert status == 400
    assert "page[size]" in bad_fields(problem)


async def test_several_bad_query_parameters_at_once(admin: Admin) -> None:
    fields = await refused(
        admin, "/auth-servers", **{"page[size]": "0", "sort": "colour", "filter[nope]": "x"}
    )
    assert set(fields) == {"page[size]", "sort", "filter[nope]"}


# ---- sorting ------------------------------------------------------------------------------------


async def test_sort_ascending_descending_and_by_several_keys(admin: Admin, asid: str) -> None:
    for name in ("b", "c", "a"):
        await admin.scope(asid, name=name)
    path = f"/auth-servers/{asid}/scopes"
    assert await names(admin, path) == ["b", "c", "a"]  # creation order by default
    assert await names(admin, path, sort="name") == ["a", "b", "c"]
    assert await names(admin, path, sort="name asc") == ["a", "b", "c"]
    assert await names(admin, path, sort="name desc") == ["c", "b", "a"]
    assert await names(admin, path, sort="created_at desc") == ["a", "c", "b"]
    assert await names(admin, path, sort="updated_at") == ["b", "c", "a"]


async def test_sort_with_a_tie_breaker(admin: Admin) -> None:
    for name, audience in (("x", "a2"), ("y", "a1"), ("z", "a2")):
        await admin.server(name=name, audience=audience)
    assert await names(admin, "/auth-servers", sort="audience,name desc") == ["y", "z", "x"]
    assert await names(admin, "/auth-servers", sort="audience desc, created_at") == ["x", "z", "y"]


@pytest.mark.parametrize(
    ("path", "sort", "rule"),
    [
        ("/auth-servers", "colour", "enum"),
        ("/auth-servers", "name sideways", "invalid"),
        ("/auth-servers", "name desc extra", "invalid"),
        ("/auth-servers/{asid}/scopes", "audience", "enum"),  # auth servers only
        ("/auth-servers/{asid}/clients", "expires_at", "enum"),
    ],
)
async def test_unknown_sort_attributes_are_400(
    admin: Admin, asid: str, path: str, sort: str, rule: str
) -> None:
    fields = await refused(admin, path.format(asid=asid), sort=sort)
    assert fields["sort"]["rule"] == rule


async def test_an_unknown_sort_attribute_lists_the_choices(admin: Admin) -> None:
    fields = await refused(admin, "/auth-servers", sort="colour")
    assert fields["sort"]["choices"] == ["created_at", "updated_at", "name", "audience"]


# ---- filters ------------------------------------------------------------------------------------


async def test_legacy_string_filters(admin: Admin) -> None:
    await admin.server(name="Orders Dev", audience="http://orders", description="dev orders")
    await admin.server(name="Orders Prod", audience="http://orders", description="prod")
    await admin.server(name="Billing", audience="http://billing", description="dev billing")
    path = "/auth-servers"
    assert await names(admin, path, **{"filter[name][eq]": "Billing"}) == ["Billing"]
    assert await names(admin, path, **{"filter[name]": "Billing"}) == ["Billing"]
    assert await names(admin, path, **{"filter[name][eq]": "billing"}) == []
    assert await names(admin, path, **{"filter[name][contains]": "orders"}) == [
        "Orders Dev",
        "Orders Prod",
    ]
    assert await names(admin, path, **{"filter[description][contains]": "dev"}) == [
        "Orders Dev",
        "Billing",
    ]
    both = {"filter[audience][eq]": "http://orders", "filter[description][contains]": "prod"}
    assert await names(admin, path, **both) == ["Orders Prod"]
    page = await listing(admin, path, **{"filter[name][contains]": "o", "page[size]": "1"})
    assert page["meta"]["page"]["total"] == 2  # the total counts what the filter kept


async def test_id_filters_take_eq_or_a_bare_value(admin: Admin, asid: str) -> None:
    first, _ = await admin.scope(asid, name="one"), await admin.scope(asid, name="two")
    path = f"/auth-servers/{asid}/scopes"
    assert await names(admin, path, **{"filter[id]": first["id"]}) == ["one"]
    assert await names(admin, path, **{"filter[id][eq]": first["id"]}) == ["one"]
    # a UUID in any case, as the same id in a path finds it
    assert await names(admin, path, **{"filter[id]": first["id"].upper()}) == ["one"]
    claim = await admin.claim(asid, name="dept")
    claims = f"/auth-servers/{asid}/claims"
    assert await names(admin, claims, **{"filter[id]": claim["id"].upper()}) == ["dept"]
    servers = await names(admin, "/auth-servers", **{"filter[id]": asid.upper()})
    assert len(servers) == 1
    fields = await refused(admin, path, **{"filter[id][contains]": first["id"][:8]})
    assert fields["filter[id][contains]"]["rule"] == "enum"


async def test_labels_filters(admin: Admin, asid: str) -> None:
    await admin.client(asid, name="a", labels={"env": "test", "team": "blue"})
    await admin.client(asid, name="b", labels={"env": "prod", "team": "blue"})
    await admin.client(asid, name="c", labels={})
    path = f"/auth-servers/{asid}/clients"
    assert await names(admin, path, **{"filter[labels][eq]": "env:test"}) == ["a"]
    assert await names(admin, path, **{"filter[labels]": "env:prod"}) == ["b"]
    assert await names(admin, path, **{"filter[labels][eq]": "team"}) == ["a", "b"]
    assert await names(admin, path, **{"filter[labels][eq]": "team:blue,env:prod"}) == ["b"]
    assert await names(admin, path, **{"filter[labels][eq]": "env:dev"}) == []
    await admin.server(name="labelled", labels={"env": "test"})
    assert await names(admin, "/auth-servers", **{"filter[labels][eq]": "env:test"}) == ["labelled"]


async def test_boolean_filter_on_secrets(admin: Admin, asid: str) -> None:
    client = await admin.client(asid)
    base = f"/auth-servers/{asid}/clients/{client['id']}/secrets"
    second = await admin.ok("POST", base, {"enabled": False}, status=201)
    enabled = await listing(admin, base, **{"filter[enabled]": "true"})
    disabled = await listing(admin, base, **{"filter[enabled]": "false"})
    assert [s["enabled"] for s in enabled["data"]] == [True]
    assert [s["id"] for s in disabled["data"]] == [second["id"]]
    by_id = await listing(admin, base, **{"filter[id]": second["id"]})
    assert [s["id"] for s in by_id["data"]] == [second["id"]]
    fields = await refused(admin, base, **{"filter[enabled]": "yes"})
    assert fields["filter[enabled]"]["rule"] == "is_boolean"
    fields = await refused(admin, base, **{"filter[enabled][eq]": "true"})
    assert "filter[enabled][eq]" in fields


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/auth-servers", "filter[colour]"),
        ("/auth-servers", "filter[signing_algorithm][eq]"),
        ("/auth-servers/{asid}/scopes", "filter[description]"),  # declared for auth servers only
        ("/auth-servers/{asid}/scopes", "filter[labels][eq]"),
        ("/auth-servers/{asid}/claims", "filter[value]"),
        ("/auth-servers/{asid}/clients", "filter[enabled]"),
    ],
)
async def test_unknown_filter_fields_are_400(admin: Admin, asid: str, path: str, key: str) -> None:
    fields = await refused(admin, path.format(asid=asid), **{key: "x"})
    assert fields[key]["rule"] == "unknown_property"


async def test_unknown_filter_operators_are_400(admin: Admin) -> None:
    fields = await refused(admin, "/auth-servers", **{"filter[name][startswith]": "x"})
    assert fields["filter[name][startswith]"]["choices"] == ["eq", "contains"]


async def test_a_legacy_filter_takes_one_operator(admin: Admin) -> None:
    params = {"filter[name][eq]": "a", "filter[name][contains]": "b"}
    assert "filter[name]" in await refused(admin, "/auth-servers", **params)


async def test_claims_list_filters_and_sorts(admin: Admin, asid: str) -> None:
    await admin.claim(asid, name="b")
    await admin.claim(asid, name="a")
    path = f"/auth-servers/{asid}/claims"
    assert await names(admin, path, sort="name") == ["a", "b"]
    assert await names(admin, path, **{"filter[name][contains]": "A"}) == ["a"]


# ---- concurrency --------------------------------------------------------------------------------


async def test_fifty_parallel_creates_with_distinct_names_all_land(admin: Admin, asid: str) -> None:
    path = f"/auth-servers/{asid}/scopes"
    results = await asyncio.gather(
        *(admin.call("POST", path, {"name": f"p{i}"}) for i in range(50))
    )
    assert [status for status, _ in results] == [201] * 50
    page = await listing(admin, path, **{"page[size]": "100"})
    assert page["meta"]["page"]["total"] == 50
    assert sorted(s["name"] for s in page["data"]) == sorted(f"p{i}" for i in range(50))


async def test_fifty_parallel_creates_with_one_name_make_one(admin: Admin, asid: str) -> None:
    path = f"/auth-servers/{asid}/scopes"
    results = await asyncio.gather(*(admin.call("POST", path, {"name": "same"}) for _ in range(50)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * 49
    assert all(body["title"] == "Conflict" for status, body in results if status == 409)
    assert (await listing(admin, path))["meta"]["page"]["total"] == 1


# ---- what a refused query says ------------------------------------------------------------------

_LIMIT = 10**18 - 1  # past any page: int() is never asked to read a number of 4,300 digits


@pytest.mark.parametrize(
    ("path", "query", "entry"),
    [
        (
            "/auth-servers",
            "page[size]=0",
            {"rule": "min", "reason": "must be greater than or equal to 1", "minimum": 1},
        ),
        (
            "/auth-servers",
            "page[size]=101",
            {"rule": "max", "reason": "must be less than or equal to 100", "maximum": 100},
        ),
        (
            "/auth-servers",
            "page[number]=" + "1" * 19,
            {"rule": "max", "reason": f"must be less than or equal to {_LIMIT}", "maximum": _LIMIT},
        ),
        (
            "/auth-servers",
            "page[size]=" + "9" * 19,
            {"rule": "max", "reason": "must be less than or equal to 100", "maximum": 100},
        ),
        ("/auth-servers", "page[number]=x", {"rule": "is_integer", "reason": "must be an integer"}),
        (
            "/auth-servers",
            "page[size]=1&page[size]=2",
            {"rule": "invalid", "reason": "must be given once"},
        ),
        (
            "/auth-servers",
            "sort=colour",
            {
                "rule": "enum",
                "reason": "[colour] is not a sort attribute: one of "
                "[created_at, updated_at, name, audience]",
                "choices": ["created_at", "updated_at", "name", "audience"],
            },
        ),
        (
            "/auth-servers",
            "sort=name%20sideways",
            {"rule": "invalid", "reason": "[name sideways]: the order must be asc or desc"},
        ),
        (
            "/auth-servers",
            "filter[colour]=x",
            {"rule": "unknown_property", "reason": "[colour] is not a filterable field"},
        ),
        (
            "/auth-servers",
            "filter[name][startswith]=x",
            {
                "rule": "enum",
                "reason": "operator must be one of [eq, contains]",
                "choices": ["eq", "contains"],
            },
        ),
        (
            "/auth-servers",
            "colour=blue",
            {"rule": "unknown_property", "reason": "is not a known query parameter"},
        ),
        (
            "/auth-servers/{asid}/clients/{cid}/secrets",
            "filter[enabled]=yes",
            {"rule": "is_boolean", "reason": "must be true or false"},
        ),
        (
            "/auth-servers/{asid}/clients/{cid}/secrets",
            "filter[enabled][eq]=true",
            {"rule": "invalid", "reason": "takes a bare true or false, without an operator"},
        ),
    ],
)
async def test_a_refused_query_parameter_is_named_with_its_rule_and_reason(
    admin: Admin, asid: str, path: str, query: str, entry: JSON
) -> None:
    cid = (await admin.client(asid))["id"]
    status, problem = await admin.call("GET", f"{path.format(asid=asid, cid=cid)}?{query}")
    assert status == 400, problem
    field = query.split("=")[0]
    assert problem["invalid_parameters"] == [{"field": field, **entry, "source": "query"}]


async def test_a_legacy_filter_with_two_operators_is_named_once(admin: Admin) -> None:
    status, problem = await admin.call(
        "GET", "/auth-servers?filter[name][eq]=a&filter[name][contains]=b"
    )
    assert status == 400
    assert problem["invalid_parameters"] == [
        {
            "field": "filter[name]",
            "rule": "invalid",
            "reason": "takes one operator only",
            "source": "query",
        }
    ]


async def test_a_repeated_parameter_does_not_hide_the_ones_after_it(admin: Admin) -> None:
    fields = await refused(admin, "/auth-servers?page[size]=1&page[size]=2&colour=blue")
    assert set(fields) == {"page[size]", "colour"}


# ARABIC-INDIC THREE, SUPERSCRIPT TWO, FULLWIDTH ONE: digits to str.isdigit, not to the spec
@pytest.mark.parametrize("value", ["\u0663", "\u00b2", "\uff11"])
async def test_a_page_parameter_takes_ascii_digits_only(admin: Admin, value: str) -> None:
    for param in ("page[size]", "page[number]"):
        fields = await refused(admin, "/auth-servers", **{param: value})
        assert fields[param]["rule"] == "is_integer"


async def test_the_largest_page_number_is_an_empty_page(admin: Admin) -> None:
    page = await listing(admin, "/auth-servers", **{"page[number]": str(_LIMIT)})
    assert page["data"] == []
    assert page["meta"]["page"]["number"] == _LIMIT


async def test_empty_sort_attributes_are_skipped(admin: Admin, asid: str) -> None:
    for name in ("b", "c", "a"):
        await admin.scope(asid, name=name)
    path = f"/auth-servers/{asid}/scopes"
    assert await names(admin, path, sort=",name desc") == ["c", "b", "a"]
    assert await names(admin, path, sort="name,,created_at") == ["a", "b", "c"]


async def test_an_equals_filter_compares_a_uuid_shaped_name_as_written(
    admin: Admin, asid: str
) -> None:
    """Only an id filter reads a UUID in any case; a name that looks like one is still text."""
    name = "ABCDEF01-2345-6789-ABCD-EF0123456789"
    await admin.scope(asid, name=name)
    path = f"/auth-servers/{asid}/scopes"
    assert await names(admin, path, **{"filter[name]": name}) == [name]
    assert await names(admin, path, **{"filter[name][eq]": name.lower()}) == []
