"""Every field rule of the spec's request bodies, failing with the field named in the 400."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from tests.identity.test_admin_api import (
    JSON,
    TOKEN,
    Admin,
    bad_fields,
    new_store,
    start_admin,
)
from tokengate.jsonlimits import MAX_CLIENT_NESTING

CLIENT: dict[str, Any] = {
    "name": "c",
    "grant_types": ["client_credentials"],
    "response_types": ["token"],
}
SERVER: dict[str, Any] = {"name": "s", "audience": "http://api.test"}


@pytest.fixture
async def admin(aiohttp_client: AiohttpClient) -> AsyncIterator[Admin]:
    with new_store() as store:
        yield await start_admin(aiohttp_client, store)


async def bad_request(admin: Admin, method: str, path: str, body: Any) -> dict[str, JSON]:
    status, problem = await admin.call(method, path, body)
    assert status == 400, problem
    return bad_fields(problem)


# (kind, body, field, rule): kind picks the endpoint; the body replaces or extends a valid one.
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # auth servers
    ("server", {"name": ""}, "name", "min_length"),
    ("server", {"name": 7}, "name", "is_string"),
    ("server", {"name": None}, "name", "is_string"),
    ("server", {"audience": ""}, "audience", "min_length"),
    ("server", {"description": ["x"]}, "description", "is_string"),
    ("server", {"signing_algorithm": "HS256"}, "signing_algorithm", "enum"),
    ("server", {"signing_algorithm": "rs256"}, "signing_algorithm", "enum"),
    ("server", {"labels": ["env"]}, "labels", "is_object"),
    ("server", {"labels": {"k" * 64: "v"}}, "labels", "is_label"),
    ("server", {"labels": {"": "v"}}, "labels", "is_label"),
    ("server", {"labels": {"kong-env": "v"}}, "labels", "is_label"),
    ("server", {"labels": {"konnect": "v"}}, "labels", "is_label"),
    ("server", {"labels": {"mesh.x": "v"}}, "labels", "is_label"),
    ("server", {"labels": {"kic": "v"}}, "labels", "is_label"),
    ("server", {"labels": {"_private": "v"}}, "labels", "is_label"),
    ("server", {"labels": {"KONG": "v"}}, "labels", "is_label"),
    ("server", {"labels": {"env": ""}}, "labels", "is_label"),
    ("server", {"labels": {"env": "-dev"}}, "labels", "is_label"),
    ("server", {"labels": {"env": "dev-"}}, "labels", "is_label"),
    ("server", {"labels": {"env": "has space"}}, "labels", "is_label"),
    ("server", {"labels": {"env": "v" * 64}}, "labels", "is_label"),
    ("server", {"labels": {"env": 1}}, "labels", "is_label"),
    ("server", {"labels": {"env": None}}, "labels", "is_label"),  # null: only in PATCH
    ("server", {"labels": {f"k{i}": "v" for i in range(51)}}, "labels", "max_items"),
    ("server", {"trusted_origins": "https://a.test"}, "trusted_origins", "is_array"),
    ("server", {"trusted_origins": ["not a uri"]}, "trusted_origins", "invalid"),
    ("server", {"trusted_origins": ["/relative"]}, "trusted_origins", "invalid"),
    ("server", {"trusted_origins": ["https://a.test"] * 2}, "trusted_origins", "invalid"),
    (
        "server",
        {"trusted_origins": [f"https://{i}.test" for i in range(17)]},
        "trusted_origins",
        "max_items",
    ),
    ("server", {"issuer": "https://x"}, "issuer", "unknown_property"),
    ("server", {"nmae": "typo"}, "nmae", "unknown_property"),
    # scopes
    ("scope", {"name": ""}, "name", "min_length"),
    ("scope", {"default": "false"}, "default", "is_boolean"),
    ("scope", {"enabled": 1}, "enabled", "is_boolean"),
    ("scope", {"include_in_metadata": None}, "include_in_metadata", "is_boolean"),
    ("scope", {"description": 3}, "description", "is_string"),
    ("scope", {"id": str(uuid.uuid4())}, "id", "unknown_property"),
    # a token's `scope` joins names with spaces: one RFC 6749 scope-token per name
    ("scope", {"name": "read write"}, "name", "matches_regex"),
    ("scope", {"name": 'say"hi'}, "name", "matches_regex"),
    ("scope", {"name": "back\\slash"}, "name", "matches_regex"),
    ("scope", {"name": "tab\there"}, "name", "matches_regex"),
    ("scope", {"name": "café"}, "name", "matches_regex"),
    # claims
    ("claim", {"value": ""}, "value", "min_length"),
    ("claim", {"value": 5}, "value", "is_string"),
    ("claim", {"value": "${ .Client.Nope }"}, "value", "invalid"),
    ("claim", {"value": "${ unclosed"}, "value", "invalid"),
    ("claim", {"value": "${ 0x_ }"}, "value", "invalid"),  # a base prefix and no digits
    ("claim", {"name": ""}, "name", "min_length"),
    # the issuer's own claims: a custom one of that name would never reach a token
    ("claim", {"name": "sub"}, "name", "invalid"),
    ("claim", {"name": "scope"}, "name", "invalid"),
    ("claim", {"name": "client_id"}, "name", "invalid"),
    ("claim", {"include_in_token": "yes"}, "include_in_token", "is_boolean"),
    ("claim", {"include_in_all_scopes": 0}, "include_in_all_scopes", "is_boolean"),
    ("claim", {"include_in_scopes": "x"}, "include_in_scopes", "is_array"),
    ("claim", {"include_in_scopes": ["not-a-uuid"]}, "include_in_scopes", "is_uuid"),
    ("claim", {"include_in_scopes": [str(uuid.uuid4())]}, "include_in_scopes", "missing_reference"),
    # clients
    ("client", {"name": ""}, "name", "min_length"),
    ("client", {"grant_types": "client_credentials"}, "grant_types", "is_array"),
    ("client", {"grant_types": ["password"]}, "grant_types", "enum"),
    ("client", {"grant_types": ["implicit", "implicit"]}, "grant_types", "invalid"),
    ("client", {"response_types": ["code", "bogus"]}, "response_types", "enum"),
    ("client", {"redirect_uris": ["http://app.test/cb"]}, "redirect_uris", "invalid"),
    ("client", {"redirect_uris": ["https://app.test/cb#frag"]}, "redirect_uris", "invalid"),
    ("client", {"redirect_uris": ["/cb"]}, "redirect_uris", "invalid"),
    ("client", {"login_uri": "http://app.test/login"}, "login_uri", "invalid"),
    ("client", {"login_uri": 3}, "login_uri", "is_string"),
    ("client", {"access_token_duration": 59}, "access_token_duration", "min"),
    ("client", {"access_token_duration": 2_592_001}, "access_token_duration", "max"),
    ("client", {"access_token_duration": "3600"}, "access_token_duration", "is_integer"),
    ("client", {"access_token_duration": 3600.5}, "access_token_duration", "is_integer"),
    ("client", {"access_token_duration": True}, "access_token_duration", "is_integer"),
    ("client", {"id_token_duration": 0}, "id_token_duration", "min"),
    ("client", {"allow_all_scopes": "true"}, "allow_all_scopes", "is_boolean"),
    ("client", {"allow_scopes": ["nope"]}, "allow_scopes", "is_uuid"),
    ("client", {"allow_scopes": [str(uuid.uuid4())]}, "allow_scopes", "missing_reference"),
    (
        "client",
        {"token_endpoint_auth_method": "private_key_jwt"},
        "token_endpoint_auth_method",
        "enum",
    ),
    ("client", {"labels": {"kong": "x"}}, "labels", "is_label"),
    ("client", {"client_secret": "x"}, "client_secret", "unknown_property"),  # create: generated
    ("client", {"id": "mine"}, "id", "unknown_property"),
]


def _target(kind: str, asid: str) -> tuple[str, dict[str, Any]]:
    return {
        "server": ("/auth-servers", SERVER),
        "scope": (f"/auth-servers/{asid}/scopes", {"name": "s"}),
        "claim": (f"/auth-servers/{asid}/claims", {"name": "n", "value": "v"}),
        "client": (f"/auth-servers/{asid}/clients", CLIENT),
    }[kind]


@pytest.mark.parametrize(("kind", "body", "field", "rule"), CASES)
async def test_create_refuses_a_bad_field(
    admin: Admin, kind: str, body: dict[str, Any], field: str, rule: str
) -> None:
    asid = (await admin.server())["id"]
    path, valid = _target(kind, asid)
    entry = (await bad_request(admin, "POST", path, {**valid, **body}))[field]
    assert entry["rule"] == rule
    assert entry["source"] == "body"
    assert entry["reason"]


# PATCH takes the same rules, except UpdateClient's client_secret and LabelsUpdate's null values.
PATCH_CASES = [c for c in CASES if c[2] != "client_secret" and c[1].get("labels") != {"env": None}]


@pytest.mark.parametrize(("kind", "body", "field", "rule"), PATCH_CASES)
async def test_patch_refuses_the_same_bad_fields(
    admin: Admin, kind: str, body: dict[str, Any], field: str, rule: str
) -> None:
    asid = (await admin.server())["id"]
    path, valid = _target(kind, asid)
    if kind == "server":
        path = f"{path}/{asid}"
    else:
        status, entity = await admin.call("POST", path, valid)
        assert status == 201
        path = f"{path}/{entity['id']}"
    entry = (await bad_request(admin, "PATCH", path, body))[field]
    assert entry["rule"] == rule


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        ("server", "name"),
        ("server", "audience"),
        ("scope", "name"),
        ("claim", "name"),
        ("claim", "value"),
        ("client", "name"),
        ("client", "grant_types"),
        ("client", "response_types"),
    ],
)
async def test_required_fields(admin: Admin, kind: str, missing: str) -> None:
    asid = (await admin.server())["id"]
    path, valid = _target(kind, asid)
    body = {k: v for k, v in valid.items() if k != missing}
    entry = (await bad_request(admin, "POST", path, body))[missing]
    assert entry == {
        "field": missing,
        "rule": "required",
        "reason": "is a required field",
        "source": "body",
    }


async def test_every_bad_field_is_reported_at_once(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    body = {
        "grant_types": ["password"],
        "access_token_duration": 10,
        "id_token_duration": "long",
        "allow_scopes": [str(uuid.uuid4())],
        "labels": {"kong": "x"},
        "colour": "blue",
    }
    status, problem = await admin.call("POST", f"/auth-servers/{asid}/clients", body)
    assert status == 400
    fields = bad_fields(problem)
    assert {field: p["rule"] for field, p in fields.items()} == {
        "name": "required",
        "response_types": "required",
        "grant_types": "enum",
        "access_token_duration": "min",
        "id_token_duration": "is_integer",
        "allow_scopes": "missing_reference",
        "labels": "is_label",
        "colour": "unknown_property",
    }
    assert fields["access_token_duration"]["minimum"] == 60
    assert fields["grant_types"]["choices"] == ["implicit", "client_credentials"]
    assert problem["detail"] == "Invalid parameters: " + ", ".join(
        f"[{p['field']}]" for p in problem["invalid_parameters"]
    )
    assert "[name]" in problem["detail"]
    assert admin.store.list_clients(asid) == []


async def test_constraint_entries_carry_their_bounds(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    body = {**CLIENT, "name": "", "access_token_duration": 2_592_001}
    fields = await bad_request(admin, "POST", f"/auth-servers/{asid}/clients", body)
    assert fields["name"] == {
        "field": "name",
        "rule": "min_length",
        "reason": "must have at least 1 characters",
        "source": "body",
        "minimum": 1,
    }
    assert fields["access_token_duration"]["maximum"] == 2_592_000


async def test_a_scope_of_another_auth_server_is_a_missing_reference(admin: Admin) -> None:
    mine, other = (await admin.server())["id"], (await admin.server())["id"]
    foreign = (await admin.scope(other))["id"]
    body = {**CLIENT, "allow_scopes": [foreign]}
    fields = await bad_request(admin, "POST", f"/auth-servers/{mine}/clients", body)
    assert foreign in fields["allow_scopes"]["reason"]
    body = {"name": "n", "value": "v", "include_in_scopes": [foreign]}
    fields = await bad_request(admin, "POST", f"/auth-servers/{mine}/claims", body)
    assert fields["include_in_scopes"]["rule"] == "missing_reference"


async def test_put_checks_scope_references_too(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    body = {**CLIENT, "client_secret": "s", "allow_scopes": [str(uuid.uuid4())]}
    fields = await bad_request(admin, "PUT", f"/auth-servers/{asid}/clients/abc", body)
    assert fields["allow_scopes"]["rule"] == "missing_reference"


async def test_duplicate_scope_ids_in_allow_scopes_are_refused(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    scope = (await admin.scope(asid))["id"]
    body = {**CLIENT, "allow_scopes": [scope, scope]}
    fields = await bad_request(admin, "POST", f"/auth-servers/{asid}/clients", body)
    assert fields["allow_scopes"]["rule"] == "invalid"


async def test_repeated_ids_in_include_in_scopes_are_dropped(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    scope = (await admin.scope(asid))["id"]
    claim = await admin.claim(asid, include_in_scopes=[scope, scope.upper()])
    assert claim["include_in_scopes"] == [scope]


async def test_labels_patch_may_not_exceed_fifty_in_total(admin: Admin) -> None:
    server = await admin.server(labels={f"a{i}": "v" for i in range(30)})
    body = {"labels": {f"b{i}": "v" for i in range(21)}}
    fields = await bad_request(admin, "PATCH", f"/auth-servers/{server['id']}", body)
    assert fields["labels"]["rule"] == "max_items"
    update: dict[str, str | None] = {**{f"b{i}": "v" for i in range(21)}, "a0": None}
    status, patched = await admin.call("PATCH", f"/auth-servers/{server['id']}", {"labels": update})
    assert status == 200
    assert len(patched["labels"]) == 50


async def test_good_labels_are_accepted(admin: Admin) -> None:
    labels = {"env": "test", "k" * 63: "v" * 63, "a.b-c_d": "A.b-c_9", "x": "1", "kon": "g"}
    assert (await admin.server(labels=labels))["labels"] == labels


async def test_secret_payloads_are_checked(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    client = await admin.client(asid)
    base = f"/auth-servers/{asid}/clients/{client['id']}/secrets"
    fields = await bad_request(admin, "POST", base, {"secret": "", "enabled": "yes", "x": 1})
    assert {f: p["rule"] for f, p in fields.items()} == {
        "secret": "min_length",
        "enabled": "is_boolean",
        "x": "unknown_property",
    }
    secret_id = (await admin.ok("GET", base))["data"][0]["id"]
    fields = await bad_request(admin, "PATCH", f"{base}/{secret_id}", {"enabled": None})
    assert fields["enabled"]["rule"] == "is_boolean"
    fields = await bad_request(admin, "PATCH", f"{base}/{secret_id}", {"secret": "new"})
    assert fields["secret"]["rule"] == "unknown_property"


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'{"name": }',
        b"\xff\xfe",
        b'{"name": NaN}',
        b"[1, 2]",
        b'"text"',
        b"null",
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser goes
        b'{"name": "\\ud800", "audience": "a"}',  # an unpaired surrogate escape is not text
        b'{"name": "n", "audience": "a", "labels": {"\\udfff": "v"}}',
    ],
)
async def test_a_body_that_is_not_a_json_object_is_400(admin: Admin, raw: bytes) -> None:
    status, problem = await admin.call("POST", "/auth-servers", raw=raw)
    assert status == 400
    assert bad_fields(problem)["body"]["source"] == "body"


async def test_a_body_nested_past_the_limit_is_400_alike_on_every_python(admin: Admin) -> None:
    """Python 3.11's parser stops near 1,000 levels, 3.13's near 10,000: the limit is ours."""

    def body(levels: int) -> bytes:  # the top-level object, then arrays
        arrays = b"[" * (levels - 1) + b"]" * (levels - 1)
        return b'{"name": "n", "audience": "a", "x": %b}' % arrays

    status, problem = await admin.call("POST", "/auth-servers", raw=body(MAX_CLIENT_NESTING))
    assert status == 400 and set(bad_fields(problem)) == {"x"}  # read, and x is unknown
    status, problem = await admin.call("POST", "/auth-servers", raw=body(MAX_CLIENT_NESTING + 1))
    assert status == 400
    assert "nested too deeply" in bad_fields(problem)["body"]["reason"]


async def test_every_body_the_spec_requires_must_be_sent(admin: Admin) -> None:
    """The spec marks every request body required: a PATCH or a new secret without one is a
    400, not an empty change (an empty object is a body)."""
    server = await admin.server()
    base = f"/auth-servers/{server['id']}"
    client = await admin.client(server["id"])
    for method, path in [
        ("POST", "/auth-servers"),
        ("PATCH", base),
        ("POST", f"{base}/scopes"),
        ("PATCH", f"{base}/clients/{client['id']}"),
        ("POST", f"{base}/clients/{client['id']}/secrets"),
        ("POST", f"{base}/clients/{client['id']}/test-claim"),
    ]:
        status, problem = await admin.call(method, path, raw=b" ")
        assert status == 400, (method, path)
        assert bad_fields(problem)["body"]["rule"] == "required", (method, path)
    assert await admin.ok("GET", base) == server  # nothing changed
    status, problem = await admin.call("POST", "/auth-servers", {})
    assert status == 400
    assert set(bad_fields(problem)) == {"name", "audience"}
    await admin.ok("PATCH", base, {})  # an empty object is a body: no field changes


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
async def test_a_body_labelled_as_something_else_is_415(admin: Admin, content_type: str) -> None:
    """curl's -d without -H 'Content-Type: application/json' sends a form: told so, not read."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    body = b'{"name": "labelled", "audience": "a"}'
    async with admin.http.post("/v1/auth-servers", data=body, headers=headers) as resp:
        assert resp.status == 415
        assert resp.content_type == "application/problem+json"
        assert resp.headers["Accept"] == "application/json"
        problem = await resp.json(content_type=None)
    assert problem["detail"] == f"The body must be application/json, not {content_type}"
    status, listed = await admin.call("GET", "/auth-servers", params={"filter[name]": "labelled"})
    assert (status, listed["data"]) == (200, [])


async def test_a_label_that_is_not_utf8_is_quoted_as_ascii(admin: Admin) -> None:
    """The 415 quotes the label; bytes that are not UTF-8 come back escaped, as text."""
    client = admin.http
    assert client.host and client.port
    reader, writer = await asyncio.open_connection(client.host, client.port)
    body = b"{}"
    writer.write(
        b"POST /v1/auth-servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %b\r\n"
        b"Content-Type: text/x\xff\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
        % (TOKEN.encode(), len(body), body)
    )
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 415 ")
    assert payload.isascii()
    assert json.loads(payload)["detail"] == "The body must be application/json, not text/x\\udcff"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
        "text/plain;charset=UTF-8",  # fetch() with a string body
        "application/octet-stream",  # an HTTP library given bytes
    ],
)
async def test_a_json_body_is_read_unless_labelled_as_something_else(
    admin: Admin, content_type: str | None
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = b'{"name": "labelled", "audience": "a"}'
    # skip_auto_headers: aiohttp would label the bytes application/octet-stream itself
    async with admin.http.post(
        "/v1/auth-servers", data=body, headers=headers, skip_auto_headers={"Content-Type"}
    ) as resp:
        assert resp.status == 201, await resp.text()


async def test_a_bad_body_changes_nothing(admin: Admin) -> None:
    server = await admin.server(name="keep")
    path = f"/auth-servers/{server['id']}"
    status, _ = await admin.call("PATCH", path, {"name": "changed", "audience": ""})
    assert status == 400
    assert await admin.ok("GET", path) == server


async def test_a_labels_patch_past_fifty_in_total_says_so_in_full(admin: Admin) -> None:
    server = await admin.server(labels={f"a{i}": "v" for i in range(30)})
    body = {"labels": {f"b{i}": "v" for i in range(21)}}
    status, problem = await admin.call("PATCH", f"/auth-servers/{server['id']}", body)
    assert status == 400
    assert problem["invalid_parameters"] == [
        {
            "field": "labels",
            "rule": "max_items",
            "reason": "must have at most 50 labels",
            "maximum": 50,
            "source": "body",
        }
    ]


async def test_a_labels_patch_removing_an_absent_key_is_no_change(admin: Admin) -> None:
    server = await admin.server(labels={"env": "test"})
    path = f"/auth-servers/{server['id']}"
    patched = await admin.ok("PATCH", path, {"labels": {"gone": None}})
    assert patched["labels"] == {"env": "test"}
    asid = server["id"]
    client = await admin.client(asid, labels={"env": "test"})
    patched = await admin.ok("PATCH", f"{path}/clients/{client['id']}", {"labels": {"gone": None}})
    assert patched["labels"] == {"env": "test"}


_UUID_REASON = {"rule": "is_uuid", "reason": "must be a valid UUID"}
_CLIENT_ID_REASON = {
    "rule": "matches_regex",
    "reason": "must be 1 to 36 letters, digits, '-' or '_'",
}


@pytest.mark.parametrize(
    ("path", "field", "entry"),
    [
        ("/auth-servers/42", "authServerId", _UUID_REASON),
        ("/auth-servers/{asid}/scopes/42", "scopeId", _UUID_REASON),
        ("/auth-servers/{asid}/claims/42", "claimId", _UUID_REASON),
        ("/auth-servers/{asid}/clients/bad.id", "clientId", _CLIENT_ID_REASON),
        ("/auth-servers/{asid}/clients/{cid}/secrets/42", "clientSecretId", _UUID_REASON),
        ("/auth-servers/{asid}/clients/{cid}/tokens/42", "tokenId", _UUID_REASON),
    ],
)
async def test_a_malformed_path_id_is_named_with_its_rule_and_reason(
    admin: Admin, path: str, field: str, entry: dict[str, str]
) -> None:
    asid = (await admin.server())["id"]
    cid = (await admin.client(asid))["id"]
    status, problem = await admin.call("GET", path.format(asid=asid, cid=cid))
    assert status == 400
    assert problem["invalid_parameters"] == [{"field": field, **entry, "source": "path"}]


# (kind, body, the one invalid_parameters entry without its "field" and "source")
ENTRIES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("server", {"name": 7}, {"rule": "is_string", "reason": "must be a string"}),
    (
        "server",
        {"name": ""},
        {"rule": "min_length", "reason": "must have at least 1 characters", "minimum": 1},
    ),
    ("scope", {"enabled": "yes"}, {"rule": "is_boolean", "reason": "must be a boolean"}),
    (
        "client",
        {"access_token_duration": "3600"},
        {"rule": "is_integer", "reason": "must be an integer"},
    ),
    (
        "client",
        {"id_token_duration": 59},
        {"rule": "min", "reason": "must be greater than or equal to 60", "minimum": 60},
    ),
    (
        "client",
        {"id_token_duration": 2_592_001},
        {"rule": "max", "reason": "must be less than or equal to 2592000", "maximum": 2_592_000},
    ),
    (
        "client",
        {"token_endpoint_auth_method": "basic"},
        {
            "rule": "enum",
            "reason": "must be one of [client_secret_post, none]",
            "choices": ["client_secret_post", "none"],
        },
    ),
    (
        "client",
        {"grant_types": ["implicit", "password"]},
        {
            "rule": "enum",
            "reason": "item 1: must be one of [implicit, client_credentials]",
            "choices": ["implicit", "client_credentials"],
        },
    ),
    (
        "client",
        {"grant_types": ["implicit", "implicit"]},
        {"rule": "invalid", "reason": "must not contain duplicate items [implicit]"},
    ),
    ("client", {"grant_types": {}}, {"rule": "is_array", "reason": "must be an array"}),
    (
        "client",
        {"allow_scopes": ["x"]},
        {"rule": "is_uuid", "reason": "item 0: must be a valid UUID"},
    ),
    (
        "client",
        {"redirect_uris": ["cb"]},
        {"rule": "invalid", "reason": "item 0: must be an absolute URI"},
    ),
    (
        "client",
        {"redirect_uris": ["http://a.test/cb"]},
        {"rule": "invalid", "reason": "item 0: must use https"},
    ),
    (
        "client",
        {"redirect_uris": ["https://a.test/cb#x"]},
        {"rule": "invalid", "reason": "item 0: must not include a fragment"},
    ),
    ("client", {"login_uri": 1}, {"rule": "is_string", "reason": "must be a string"}),
    (
        "server",
        {"trusted_origins": [f"https://{i}.test" for i in range(17)]},
        {"rule": "max_items", "reason": "must have at most 16 items", "maximum": 16},
    ),
    (
        "client",
        {"redirect_uris": ["https://[::1/cb"]},  # urlsplit's ValueError
        {"rule": "invalid", "reason": "item 0: must be an absolute URI"},
    ),
    (
        "client",
        {"redirect_uris": ["https://a.test/a b"]},
        {"rule": "invalid", "reason": "item 0: must be an absolute URI"},
    ),
    (
        "server",
        {"trusted_origins": ["mailto:x@y.test"]},  # a scheme, but no authority
        {"rule": "invalid", "reason": "item 0: must be an absolute URI"},
    ),
    ("server", {"labels": []}, {"rule": "is_object", "reason": "must be an object"}),
    (
        "server",
        {"labels": {f"k{i}": "v" for i in range(51)}},
        {"rule": "max_items", "reason": "must have at most 50 labels", "maximum": 50},
    ),
    (
        "server",
        {"labels": {"": "v"}},
        {"rule": "is_label", "reason": "key [] must have 1 to 63 characters"},
    ),
    (
        "server",
        {"labels": {"Konnect-x": "v"}},
        {
            "rule": "is_label",
            "reason": "key [Konnect-x] must not start with kong, konnect, mesh, kic or _",
        },
    ),
    (
        "server",
        {"labels": {"env": 1}},
        {"rule": "is_label", "reason": "value of [env] must be a string"},
    ),
    (
        "server",
        {"labels": {"env": "-x"}},
        {
            "rule": "is_label",
            "reason": "value of [env] must have 1 to 63 letters, digits, '-', '.' or '_', "
            "starting and ending with a letter or digit",
        },
    ),
    (
        "scope",
        {"name": "a b"},
        {
            "rule": "matches_regex",
            "reason": "must be printable ASCII without spaces, quotes or backslashes "
            "(RFC 6749 §3.3)",
        },
    ),
    (
        "claim",
        {"value": "${ unclosed"},
        {"rule": "invalid", "reason": "'${' at offset 0 is never closed with '}'"},
    ),
    ("client", {"colour": "blue"}, {"rule": "unknown_property", "reason": "is not a known field"}),
]


@pytest.mark.parametrize(("kind", "body", "entry"), ENTRIES)
async def test_a_refused_field_is_named_with_its_rule_reason_and_bounds(
    admin: Admin, kind: str, body: dict[str, Any], entry: dict[str, Any]
) -> None:
    asid = (await admin.server())["id"]
    path, valid = _target(kind, asid)
    status, problem = await admin.call("POST", path, {**valid, **body})
    assert status == 400, problem
    field = next(iter(body))
    assert problem["invalid_parameters"] == [{"field": field, **entry, "source": "body"}]


async def test_an_unknown_field_does_not_hide_the_ones_after_it(admin: Admin) -> None:
    fields = await bad_request(admin, "POST", "/auth-servers", {"colour": "x", "name": ""})
    assert {f: p["rule"] for f, p in fields.items()} == {
        "colour": "unknown_property",
        "name": "min_length",
        "audience": "required",
    }


@pytest.mark.parametrize("duration", [60, 2_592_000])
async def test_token_durations_take_their_bounds(admin: Admin, duration: int) -> None:
    asid = (await admin.server())["id"]
    client = await admin.client(asid, access_token_duration=duration, id_token_duration=duration)
    assert (client["access_token_duration"], client["id_token_duration"]) == (duration, duration)


async def test_descriptions_may_be_empty(admin: Admin) -> None:
    """AuthServerDescription and ScopeDescription have no minLength."""
    server = await admin.server(description="")
    assert server["description"] == ""
    assert (await admin.scope(server["id"], description=""))["description"] == ""


async def test_trusted_origins_and_login_uri_take_what_the_spec_allows(admin: Admin) -> None:
    """Only RedirectURIs forbid a fragment; TrustedOrigin need not be https."""
    origins = ["http://localhost:3000", "https://app.test#x"]
    assert (await admin.server(trusted_origins=origins))["trusted_origins"] == origins
    asid = (await admin.server())["id"]
    client = await admin.client(asid, login_uri="https://app.test/login#top")
    assert client["login_uri"] == "https://app.test/login#top"


async def test_the_most_items_each_array_and_labels_take_are_accepted(admin: Admin) -> None:
    origins = [f"https://{i}.test" for i in range(16)]
    labels = {f"k{i}": "v" for i in range(50)}
    server = await admin.server(trusted_origins=origins, labels=labels)
    assert (server["trusted_origins"], server["labels"]) == (origins, labels)


async def test_repeated_response_types_are_dropped_and_the_rest_kept(admin: Admin) -> None:
    asid = (await admin.server())["id"]
    client = await admin.client(asid, response_types=["token", "token", "code", "token"])
    assert client["response_types"] == ["token", "code"]


async def test_redirect_uris_are_kept_as_sent(admin: Admin) -> None:
    """RedirectURIs has no uniqueItems: a repeat is neither refused nor dropped."""
    asid = (await admin.server())["id"]
    uris = ["https://a.test/cb", "https://a.test/cb"]
    assert (await admin.client(asid, redirect_uris=uris))["redirect_uris"] == uris


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_a_number_json_does_not_have_is_named(admin: Admin, constant: str) -> None:
    raw = b'{"name": "n", "audience": "a", "x": %b}' % constant.encode()
    status, problem = await admin.call("POST", "/auth-servers", raw=raw)
    assert status == 400
    reason = bad_fields(problem)["body"]["reason"]
    assert reason == f"must be valid JSON ({constant} is not JSON)"


@pytest.mark.parametrize(
    ("method", "kind", "field"),
    [
        ("POST", "client", "allow_scopes"),
        ("PATCH", "client", "allow_scopes"),
        ("PUT", "client", "allow_scopes"),
        ("POST", "claim", "include_in_scopes"),
        ("PATCH", "claim", "include_in_scopes"),
    ],
)
async def test_every_unknown_scope_id_is_named(
    admin: Admin, method: str, kind: str, field: str
) -> None:
    """Named with the other bad fields of the body, in one 400."""
    asid = (await admin.server())["id"]
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    path = f"/auth-servers/{asid}/{kind}s"
    body: dict[str, Any] = {"name": "n", "value": "v"} if kind == "claim" else dict(CLIENT)
    if method == "PATCH":
        path, body = f"{path}/{(await getattr(admin, kind)(asid))['id']}", {}
    elif method == "PUT":
        path, body = f"{path}/abc", {**body, "client_secret": "s"}
    body = {**body, field: [first, second], "colour": "blue"}
    fields = await bad_request(admin, method, path, body)
    assert fields[field] == {
        "field": field,
        "rule": "missing_reference",
        "reason": f"unknown scope ids for this auth server: [{first}, {second}]",
        "source": "body",
    }
    assert fields["colour"]["rule"] == "unknown_property"


async def test_a_long_content_type_is_quoted_up_to_100_characters(admin: Admin) -> None:
    content_type = "application/x-" + "a" * 200
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    async with admin.http.post("/v1/auth-servers", data=b"{}", headers=headers) as resp:
        assert resp.status == 415
        problem = await resp.json(content_type=None)
    assert problem["detail"] == f"The body must be application/json, not {content_type[:100]}"


@pytest.mark.parametrize(
    ("raw", "rule", "reason"),
    [
        (b" ", "required", "a JSON body is required (send {} for none of its fields)"),
        (b"[1, 2]", "is_object", "must be a JSON object"),
        (
            b"{",
            "invalid",
            "must be valid JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1))",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "invalid", "must be valid JSON (nested too deeply)"),
        (  # within what the parser reads, past our limit
            b"[" * (MAX_CLIENT_NESTING + 1) + b"]" * (MAX_CLIENT_NESTING + 1),
            "invalid",
            "must be valid JSON (nested too deeply)",
        ),
        (
            b'{"name": "\\ud800", "audience": "a"}',
            "invalid",
            "must be valid JSON (a string holds an unpaired surrogate escape)",
        ),
    ],
)
async def test_a_body_that_cannot_be_read_is_named_in_full(
    admin: Admin, raw: bytes, rule: str, reason: str
) -> None:
    status, problem = await admin.call("POST", "/auth-servers", raw=raw)
    assert status == 400
    assert problem["invalid_parameters"] == [
        {"field": "body", "rule": rule, "reason": reason, "source": "body"}
    ]
