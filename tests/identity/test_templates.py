"""templates: Kong Identity's claim values — static/JSON typing, `${ }` syntax, Go semantics, every
function, Go reference-time layouts, and the errors check_template gives at claim creation."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import zlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokengate.identity.models import AuthServer, Client
from tokengate.identity.templates import (
    CONTEXT_FIELDS,
    MAX_OUTPUT,
    MAX_VALUE_LENGTH,
    TemplateError,
    _format_time,
    check_template,
    render_claim,
    supported_functions,
    template_context,
)

# 2023-11-14T22:13:20.123456Z, a Tuesday, day 318 of the year
NOW = 1_700_000_000.123456
CREATED = datetime(2024, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


def make_server(**labels: str) -> AuthServer:
    return AuthServer(
        id="5e051473-3b98-45c9-aa99-75b18c158bbf",
        issuer_id="k3x9q2w7e5r1t8y4",
        name="Appointments Dev",
        description="Auth server for the dev environment",
        audience="http://myhttpbin.dev",
        signing_algorithm="RS256",
        labels=labels,
        trusted_origins=(),
        created_at=CREATED,
        updated_at=CREATED + timedelta(days=1),
    )


def make_client(**labels: str) -> Client:
    return Client(
        id="demo-client",
        auth_server_id="5e051473-3b98-45c9-aa99-75b18c158bbf",
        name="Billing Service",
        grant_types=("client_credentials",),
        redirect_uris=("https://example.com/cb",),
        login_uri=None,
        access_token_duration=300,
        id_token_duration=300,
        allow_all_scopes=False,
        allow_scopes=(),
        labels=labels,
        response_types=("token",),
        token_endpoint_auth_method="client_secret_post",
        created_at=CREATED,
        updated_at=CREATED,
    )


CONTEXT = template_context(
    make_server(env="dev"), make_client(team="payments", tier="2", on="true")
)


def render(value: str, context: dict[str, Any] | None = None) -> Any:
    check_template(value)  # everything rendered here must also pass the creation-time check
    return render_claim(value, CONTEXT if context is None else context, clock=lambda: NOW)


def bad(value: str, match: str) -> None:
    with pytest.raises(TemplateError, match=match):
        check_template(value)


# ---- static values and typing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", "hello"),
        ("test", "test"),
        ('{"tier": 2, "tags": ["a"]}', {"tier": 2, "tags": ["a"]}),
        ("[1, 2]", [1, 2]),
        ("42", 42),
        ("-1.5", -1.5),
        ("true", True),
        ("false", False),
        ("null", "null"),  # JSON null is not a claim value: the text
        ('"quoted"', '"quoted"'),  # a JSON string stays the text as written
        ("NaN", "NaN"),
        ("1e400", "1e400"),  # not finite: the text
        ("007", "007"),  # not JSON (leading zero): the text
        ("{not json", "{not json"),
        ("100 apples", "100 apples"),
        ("tr", "tr"),
    ],
)
def test_static_values_are_json_when_they_parse_else_text(value: str, expected: Any) -> None:
    assert render(value) == expected
    assert type(render(value)) is type(expected)


def test_to_json_of_what_has_no_json_is_empty_and_must_to_json_refuses_it() -> None:
    """sprig's toJson drops json.Marshal's error; mustToJson returns it."""
    for name in ("toJson", "toRawJson", "toPrettyJson"):
        assert render(f'x${{ {name} (float64 "NaN") }}y') == "xy"
        must = f"must{name[0].upper()}{name[1:]}"
        bad(f'${{ {must} (float64 "NaN") }}', f"^{must}: .*not JSON compliant")


def test_static_json_containers_are_not_shared_between_renders() -> None:
    first = render('{"a": [1]}')
    first["a"].append(2)
    assert render('{"a": [1]}') == {"a": [1]}


def test_static_json_nested_too_deeply_stays_text() -> None:
    sixteen: list[Any] = []
    for _ in range(15):
        sixteen = [sixteen]
    assert render("[" * 16 + "]" * 16) == sixteen  # 16 levels: still JSON
    assert render("[" * 17 + "]" * 17) == "[" * 17 + "]" * 17
    deep = "[" * 40 + "]" * 40
    assert render(deep) == deep


def test_static_json_deeper_than_a_recursive_walk_could_go_stays_text() -> None:
    # The parser takes it (about 1,000 levels on Python 3.11, 10,000 on 3.13); measuring its
    # depth must not overflow the stack (this was a RecursionError, so a 500 on create).
    deep = "[" * 900 + "]" * 900
    assert render(deep) == deep


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${ .Client.Labels.tier }", 2),  # a whole template: "2" is inferred as a number
        ("${ .Client.Labels.on }", True),
        ("${ .Client.AllowAllScopes }", False),
        ("${ add 1 2 }", 3),
        ("${ 1.5 }", 1.5),
        ("${ .Client.Labels | toJson }", {"on": "true", "team": "payments", "tier": "2"}),
        ("${ list 1 2 | toJson }", [1, 2]),
        ("${ .Client.Name }", "Billing Service"),
        ("${ .Client.GrantTypes }", "[client_credentials]"),  # Go prints a slice
        ("${ `null` }", "null"),
        ("tier-${ .Client.Labels.tier }", "tier-2"),  # embedded: always a string
        ("${ .Client.Labels.tier }${ .Client.Labels.tier }", "22"),
        (" ${ .Client.Labels.tier }", " 2"),
        ('{"tier": ${ .Client.Labels.tier }}', '{"tier": 2}'),  # never re-parsed as JSON
    ],
)
def test_template_results_are_typed_only_when_the_template_is_the_whole_value(
    value: str, expected: Any
) -> None:
    assert render(value) == expected
    assert type(render(value)) is type(expected)


def test_a_label_cannot_inject_json_into_an_embedded_template() -> None:
    context = template_context(make_server(), make_client(team='x", "admin": true, "y": "'))
    assert render('{"team": "${ .Client.Labels.team }"}', context) == (
        '{"team": "x", "admin": true, "y": ""}'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["\\ud800"]', ["\ufffd"]),
        ('{"a": "x\\udc00", "\\udbff": 1}', {"a": "x\ufffd", "\ufffd": 1}),
        ('${ fromJson "\\"\\\\ud800\\"" }', "\ufffd"),
        ('${ mustFromJson "[\\"\\\\udfff\\"]" | toJson }', ["\ufffd"]),
        ("${ .Client.Labels.raw | fromJson }", "\ufffd"),
        ('["\\ud83d\\ude00"]', ["\U0001f600"]),  # a pair is one character, as it should be
    ],
)
def test_an_escaped_lone_surrogate_is_a_replacement_character_as_in_go(
    value: str, expected: Any
) -> None:
    """JSON that escapes half a surrogate pair decodes to U+FFFD in Go's encoding/json (Kong
    Identity's static values and sprig's fromJson): a claim is text. Kept as a lone surrogate, it
    would make tokens that no verifier takes (the gateway and Kong's lua-cjson refuse them)."""
    context = template_context(make_server(), make_client(raw='"\\ud800"'))
    assert render(value, context) == expected


# ---- Kong's documented examples and context ------------------------------------------------------


def test_kong_documented_examples() -> None:
    assert uuid.UUID(render("${ uuidv4 }")).version == 4
    assert render("${ uuidv4 }") != render("${ uuidv4 }")
    assert render("${ .Client.Name }") == "Billing Service"
    assert render('${ now | date "2006-01-02T15:04:05Z07:00" }') == "2023-11-14T22:13:20Z"
    assert render("${ .AuthServer.Audience }-${ .Client.ID }") == "http://myhttpbin.dev-demo-client"
    assert render('${ .Client.Labels.environment | default "production" }') == "production"
    assert render('${ .Client.Labels.team | default "production" }') == "payments"
    assert render("${ upper .Client.Name }") == "BILLING SERVICE"
    assert re.fullmatch(r"[A-Za-z0-9]{16}", render("${ randAlphaNum 16 }"))


def test_every_documented_context_field_resolves() -> None:
    expected: dict[str, dict[str, Any]] = {
        "AuthServer": {
            "ID": "5e051473-3b98-45c9-aa99-75b18c158bbf",
            "CreatedAt": "2024-02-03 04:05:06.789 +0000 UTC",  # Go's time.Time.String()
            "UpdatedAt": "2024-02-04 04:05:06.789 +0000 UTC",
            "Name": "Appointments Dev",
            "Description": "Auth server for the dev environment",
            "Audience": "http://myhttpbin.dev",
            "SigningAlgorithm": "RS256",
            "Labels": "map[env:dev]",
        },
        "Client": {
            "ID": "demo-client",
            "CreatedAt": "2024-02-03 04:05:06.789 +0000 UTC",
            "UpdatedAt": "2024-02-03 04:05:06.789 +0000 UTC",
            "Name": "Billing Service",
            "Labels": "map[on:true team:payments tier:2]",
            "GrantTypes": "[client_credentials]",
            "RedirectURIs": "[https://example.com/cb]",
            "LoginURI": "",
            "ResponseTypes": "[token]",
            "AllowAllScopes": False,
        },
    }
    assert {k: set(v) for k, v in expected.items()} == {
        k: set(v) for k, v in CONTEXT_FIELDS.items()
    }
    for entity, fields in expected.items():
        for field, value in fields.items():
            assert render(f"${{ .{entity}.{field} }}") == value, f".{entity}.{field}"
    assert render("${ .AuthServer.Labels.env }") == "dev"


def test_a_missing_label_is_empty_as_in_go() -> None:
    assert render("${ .Client.Labels.nope }") == ""
    assert render("[${ .Client.Labels.nope }]") == "[]"
    assert render("${ empty .Client.Labels.nope }") is True


def test_labels_with_dashes_are_reached_with_index_or_get() -> None:
    context = template_context(make_server(), make_client(**{"cost-center": "42"}))
    assert render('${ index .Client.Labels "cost-center" }', context) == 42
    assert render('${ get .Client.Labels "cost-center" }', context) == 42
    assert render('${ hasKey .Client.Labels "cost-center" }', context) is True
    assert render('${ index .Client.Labels "other" }', context) == ""


def test_the_context_is_the_mapping_given() -> None:
    context = {"AuthServer": {"Name": "x"}, "Client": {"Name": "from-the-mapping"}}
    assert render_claim("${ .Client.Name }", context) == "from-the-mapping"


# ---- syntax: pipes, parentheses, literals --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('${ "abc" | upper | trunc 2 }', "AB"),
        ('${ upper (trunc 2 "abc") }', "AB"),
        ('${ "x" | repeat 3 }', "xxx"),
        ('${ replace "a" "b" (lower "AaA") }', "bbb"),
        ("${ add 0x10 0o10 0b10 010 1_000 }", 16 + 8 + 2 + 8 + 1000),
        ("${ -3 | add 1 }", -2),
        ("v=${ print 1.5e3 }", "v=1500"),
        ("v=${ print 1e6 }", "v=1e+06"),  # Go %v switches to e-notation from exponent 6
        ("v=${ print 123456.5 }", "v=123456.5"),
        ("v=${ print 0.0001 }", "v=0.0001"),
        ("v=${ print 0.00001 }", "v=1e-05"),
        ("v=${ print 2.0 }", "v=2"),
        ('${ "tab\\there" }', "tab\there"),
        ('${ "\\u00e9\\x41\\101\\"" }', 'éAA"'),
        ("${ `raw \\n ${ } string` }", "raw \\n ${ } string"),
        ('${ "${" }', "${"),
        ('${ "}" }', "}"),
        ("${ true }", True),
        ("${ print nil }", "<nil>"),
        ("${ first (list) }", "<no value>"),
        ("${uuidv4|len}", 36),
        ("${ (uuidv4) | len }", 36),
        ("${ default uuidv4 .Client.Labels.nope | len }", 36),  # a niladic call as an argument
    ],
)
def test_syntax(value: str, expected: Any) -> None:
    assert render(value) == expected


def test_templates_render_fresh_values_each_time() -> None:
    a, b = render("id-${ uuidv4 }"), render("id-${ uuidv4 }")
    assert a != b


# ---- Go reference-time layouts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("2006-01-02T15:04:05Z07:00", "2023-11-14T22:13:20Z"),  # RFC 3339
        ("2006-01-02T15:04:05.999999999Z07:00", "2023-11-14T22:13:20.123456Z"),
        ("2006-01-02T15:04:05.000Z0700", "2023-11-14T22:13:20.123Z"),
        ("Mon Jan _2 15:04:05 MST 2006", "Tue Nov 14 22:13:20 UTC 2023"),  # ANSIC-ish
        ("Monday, 02-Jan-06 15:04:05 MST", "Tuesday, 14-Nov-23 22:13:20 UTC"),  # RFC 850
        ("Mon, 02 Jan 2006 15:04:05 -0700", "Tue, 14 Nov 2023 22:13:20 +0000"),  # RFC 1123Z
        ("January 2, 2006 3:04:05 PM", "November 14, 2023 10:13:20 PM"),
        ("3:4:5 pm", "10:13:20 pm"),
        ("03:04:05PM", "10:13:20PM"),
        ("2006-002 __2", "2023-318 318"),
        ("01/02/06", "11/14/23"),
        ("1/2/2006", "11/14/2023"),
        ("15h04", "22h13"),
        (".000000", ".123456"),
        (",000", ",123"),
        (".999", ".123"),
        ("05.00", "20.12"),
        ("-07 -07:00:00 Z070000", "+00 +00:00:00 Z"),
        ("Jane June Monthly", "Jane June Monthly"),  # "Jan"/"Mon" followed by lowercase: text
        ("Year: 2006, day _2", "Year: 2023, day 14"),
        ("_2006", "_2023"),  # Go: a literal "_" then the year
        ("% {} %Y", "% {} %Y"),  # strftime's % has no meaning here
        ("100%", "1100%"),  # as in Go: "1" is the month, "00" plain text
        ("", ""),
    ],
)
def test_go_date_layouts(layout: str, expected: str) -> None:
    # embedded in text, so the result stays a string ("05.00" would be a number)
    assert render(f'[${{ now | date "{layout}" }}]') == f"[{expected}]"


def test_fraction_of_whole_second_is_dropped_by_nines_and_kept_by_zeros() -> None:
    context = CONTEXT
    whole = 1_700_000_000.0
    out = render_claim('${ now | date "05.999|05.000" }', context, clock=lambda: whole)
    assert out == "20|20.000"


def test_dates_in_zones_and_offsets() -> None:
    assert (
        render('${ dateInZone "2006-01-02 15:04 -07:00 MST" now "Europe/Paris" }')
        == "2023-11-14 23:13 +01:00 CET"
    )
    assert render('${ dateInZone "15:04 Z07:00" now "Asia/Kolkata" }') == "03:43 +05:30"
    assert render('${ dateInZone "15:04 MST" now "No/Such_Zone" }') == "22:13 UTC"  # sprig: UTC
    assert render('${ htmlDateInZone now "Pacific/Kiritimati" }') == "2023-11-15"


def test_date_functions() -> None:
    assert render("${ htmlDate now }") == "2023-11-14"
    assert render("${ now | unixEpoch }") == 1_700_000_000
    assert render('${ date "2006" 0 }') == 1970  # Unix seconds are times
    assert render('${ date "2006" "not a time" }') == 2023  # sprig: anything else is now
    assert render('${ dateModify "-1.5h" now | date "15:04" }') == "20:43"
    assert render('${ dateModify "90m30s" now | date "15:04:05" }') == "23:43:50"
    assert render('${ dateModify "garbage" now | date "15:04" }') == "22:13"  # unchanged
    assert render('${ .Client.CreatedAt | date "2006-01-02" }') == "2024-02-03"
    assert render("${ now }") == "2023-11-14 22:13:20.123456 +0000 UTC"


def test_offsets_with_seconds_and_negative_offsets() -> None:
    odd = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2, minutes=30, seconds=15)))
    layout = "-0700 -07:00:00 Z07 -070000 Z07:00:00"
    assert _format_time(odd, layout) == "+0230 +02:30:15 +02 +023015 +02:30:15"
    west = datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-3, minutes=-30)))
    assert _format_time(west, "-0700 Z07:00 -07") == "-0330 -03:30 -03"
    assert _format_time(west, "MST") == "-0330"  # no zone name: Go prints the offset


# ---- the functions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Go builtins
        ("${ and 1 0 2 }", 0),
        ("${ and 1 2 }", 2),
        ('${ or 0 "" "x" }', "x"),
        ("${ not 0 }", True),
        ('${ eq .Client.Labels.team "payments" "x" }', True),
        ("${ ne 1 2 }", True),
        ("${ lt 1 2 }", True),
        ('${ le "a" "a" }', True),
        ("${ gt 2.5 1.5 }", True),
        ("${ ge 1 2 }", False),
        ('${ len "héllo" }', 6),  # Go: bytes
        ("${ len .Client.GrantTypes }", 1),
        ("${ index .Client.GrantTypes 0 }", "client_credentials"),
        ('${ print "a" 1 2 "b" }', "a1 2b"),
        # strings
        ('${ lower "ABC" }', "abc"),
        ('${ title "hello wide-world_x" }', "Hello Wide-World_x"),
        ('${ untitle "Hello World" }', "hello world"),
        ('${ trim "  x  " }', "x"),
        ('${ trimAll "$" "$$5.00$" }', 5.0),
        ('${ trimPrefix "api://" .AuthServer.Audience }', "http://myhttpbin.dev"),
        ('${ trimPrefix "http://" .AuthServer.Audience }', "myhttpbin.dev"),
        ('${ trimSuffix ".dev" "x.dev" }', "x"),
        ('${ trunc 3 "abcdef" }', "abc"),
        ('${ trunc -2 "abcdef" }', "ef"),
        ('${ substr 1 3 "abcdef" }', "bc"),
        ('${ substr 2 -1 "abcdef" }', "cdef"),
        ('${ repeat 2 "ab" }', "abab"),
        ('${ replace " " "-" "a b c" }', "a-b-c"),
        ('${ nospace " a b\tc " }', "abc"),
        ('${ quote "a" "b\\"" }', '"a" "b\\""'),
        ('${ squote "a" }', "'a'"),
        ('${ cat "a" 1 nil "b" }', "a 1 b"),
        ('${ contains "pay" .Client.Labels.team }', True),
        ('${ hasPrefix "pay" .Client.Labels.team }', True),
        ('${ hasSuffix "x" .Client.Labels.team }', False),
        ('${ indent 2 "a\\nb" }', "  a\n  b"),
        ('${ nindent 2 "a" }', "\n  a"),
        ('${ plural "one" "many" 1 }', "one"),
        ('${ plural "one" "many" 2 }', "many"),
        ('${ sha256sum "abc" }', hashlib.sha256(b"abc").hexdigest()),
        ('${ sha1sum "abc" }', hashlib.sha1(b"abc").hexdigest()),  # noqa: S324 (a test vector)
        ('${ adler32sum "abc" }', zlib.adler32(b"abc")),
        ('${ b64enc "hi" }', "aGk="),
        ('${ b64dec "aGk=" }', "hi"),
        ('${ b64dec "!!" }', "illegal base64 data"),
        ('${ b32enc "hi" }', "NBUQ===="),
        ('${ b32dec "NBUQ====" }', "hi"),
        ("${ toString 12 }", 12),
        # conversions and math
        ('${ atoi "42" }', 42),
        ('${ atoi "4x" }', 0),
        ('${ int "0x1f" }', 31),
        ('${ int64 "12.0" }', 12),
        ('${ int "junk" }', 0),
        ('${ float64 "2.5" }', 2.5),
        ('${ add 1 "2" 3.9 }', 6),
        ("${ add1 41 }", 42),
        ("${ sub 1 3 }", -2),
        ("${ mul 2 3 4 }", 24),
        ("${ mul 9223372036854775807 2 }", -2),  # int64 wraps, as in Go
        ("${ div -7 2 }", -3),  # truncated toward zero
        ("${ mod -7 2 }", -1),
        ("${ max 1 5 3 }", 5),
        ("${ biggest 1 5 3 }", 5),
        ("${ min 4 2 8 }", 2),
        ("${ floor 1.7 }", 1),
        ("${ ceil 1.2 }", 2),
        ("${ round 3.14159 2 }", 3.14),
        ("${ round 2.5 0 }", 3),
        ("${ addf 1.5 2 }", 3.5),
        ("${ add1f 1.5 }", 2.5),
        ("${ subf 5 1.5 1 }", 2.5),
        ("${ mulf 1.5 2 }", 3),
        ("${ divf 1 4 }", 0.25),
        ("${ maxf 1 2.5 }", 2.5),
        ("${ minf 1 2.5 }", 1),
        # defaults and JSON
        ('${ default "d" "" }', "d"),
        ('${ default "d" "given" }', "given"),
        ('${ default "d" }', "d"),
        ("${ empty list }", True),
        ('${ coalesce "" 0 "c" }', "c"),
        ('${ ternary "yes" "no" .Client.AllowAllScopes }', "no"),
        ('${ toJson "<a&b>" }', '"\\u003ca\\u0026b\\u003e"'),
        ('${ toRawJson "<a&b>" }', '"<a&b>"'),
        ('${ dict "b" 1 "a" 2 | toPrettyJson }', {"a": 2, "b": 1}),
        ("${ toJson .Client.CreatedAt }", '"2024-02-03T04:05:06.789Z"'),  # a JSON string: text
        ('${ mustToRawJson "<" }', '"<"'),
        ("${ list 1 | mustToPrettyJson }", [1]),
        ('${ fromJson `{"a": [1]}` | toJson }', {"a": [1]}),
        ('${ fromJson "nope" }', "<no value>"),
        ("${ mustToJson (list 1) }", [1]),
        # paths
        ('${ base "/a/b.txt" }', "b.txt"),
        ('${ base "" }', "."),
        ('${ dir "/a/b.txt" }', "/a"),
        ('${ dir "b.txt" }', "."),
        ('${ clean "/a/../b//c/" }', "/b/c"),
        ('${ ext "/a/b.tar.gz" }', ".gz"),
        ('${ isAbs "/a" }', True),
        # lists and dicts
        ("${ list 1 2 3 | first }", 1),
        ("${ list 1 2 3 | last }", 3),
        ("${ list 1 2 3 | rest | toJson }", [2, 3]),
        ("${ list 1 2 3 | initial | toJson }", [1, 2]),
        ("${ list 1 2 3 | reverse | toJson }", [3, 2, 1]),
        ("${ list 1 1 2 | uniq | toJson }", [1, 2]),
        ('${ list 0 "" 3 | compact | toJson }', [3]),
        ('${ has "client_credentials" .Client.GrantTypes }', True),
        ("${ append (list 1) 2 | toJson }", [1, 2]),
        ("${ prepend (list 1) 0 | toJson }", [0, 1]),
        ("${ without (list 1 2 3) 2 | toJson }", [1, 3]),
        ("${ concat (list 1) (list 2 3) | toJson }", [1, 2, 3]),
        ('${ list "b" "a" | sortAlpha | toJson }', ["a", "b"]),
        ("${ keys .Client.Labels | toJson }", ["on", "team", "tier"]),
        ('${ values (dict "a" 1 "b" 2) | toJson }', [1, 2]),
        ('${ dict "k" | toJson }', {"k": ""}),
        ('${ splitList "," "a,b" | toJson }', ["a", "b"]),
        ('${ join "," .Client.GrantTypes }', "client_credentials"),
        ('${ join "-" (list 1 nil 2) }', "1-2"),
        # UUIDs
        ('${ uuidValidate "5e051473-3b98-45c9-aa99-75b18c158bbf" }', True),
        ('${ uuidValidate "nope" }', False),
        (
            '${ uuidParse "5E051473-3B98-45C9-AA99-75B18C158BBF" }',
            "5e051473-3b98-45c9-aa99-75b18c158bbf",
        ),
    ],
)
def test_functions(value: str, expected: Any) -> None:
    assert render(value) == expected


@pytest.mark.parametrize(
    ("function", "pattern"),
    [
        ("randAlphaNum", r"[A-Za-z0-9]{12}"),
        ("randAlpha", r"[A-Za-z]{12}"),
        ("randNumeric", r"[0-9]{12}"),
        ("randAscii", r"[ -~]{12}"),
    ],
)
def test_random_strings(function: str, pattern: str) -> None:
    assert re.fullmatch(pattern, str(render(f"x${{ {function} 12 }}"))[1:])


def test_every_supported_function_is_exercised_here() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    untested = [f for f in supported_functions() if not re.search(rf'[ ("]{f}[ )}}"]', source)]
    assert untested == []


# ---- errors at claim creation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("${ uuidv4", "never closed"),
        ("${}", "empty"),
        ("${   }", "empty"),
        ("${ nosuchfunc }", "function 'nosuchfunc' is not supported"),
        ('${ toDate "2006" "2024" }', "function 'toDate' is not supported"),
        ("${ .Client.Secret }", r"\.Client has no field Secret"),
        ("${ .User.Name }", "the context has"),
        ("${ .Client }", "the context has"),
        ("${ .Client.Name.First }", "has no fields"),
        ("${ .Client.Labels.a.b }", "has no fields"),
        ("${ . }", "whole context"),
        ("${ if .Client.Name }x${ end }", "control structures are not supported"),
        ("${ range .Client.GrantTypes }", "control structures"),
        ("${ $x := 1 }", "variables"),
        ("${ 'a' }", "character constants"),
        ("${ upper }", "wrong number of arguments: 0, want 1"),
        ('${ upper "a" "b" }', "wrong number of arguments: 2, want 1"),
        ('${ "a" | upper "b" }', "wrong number of arguments: 2, want 1"),
        ('${ .Client.Name "x" }', "non-function"),
        ('${ "x" | .Client.Name }', "non-function"),
        ("${ nil }", "nil is not a command"),
        ("${ upper | lower }", "wrong number of arguments"),
        ('${ (upper "a" }', "unclosed"),
        ('${ upper "a") }', "unexpected"),
        ('${ "unterminated }', "unterminated string"),
        ('${ "ends in a backslash\\', "unterminated string"),
        ("${ `unterminated }", "unterminated raw string"),
        ('${ "bad \\q escape" }', "bad escape"),
        ("${ 1x }", "bad number"),
        ("${ 99999999999999999999 }", "out of range"),
        ("${ 1e999 }", "out of range"),
        ("${ uuidv4.Field }", "unexpected"),
        ("${ a, b }", "unexpected"),
        ("${ " + "(" * 20 + "1" + ")" * 20 + " }", "nested deeper"),
        ("${ uuidv4 }" * 33, "more than 32"),
        ("x" * (MAX_VALUE_LENGTH + 1), "longer than 4096"),
        # the dry run: type errors and sizes Go would fail on when minting
        ("${ upper 5 }", "expected a string, got int"),
        ("${ upper .Client.AllowAllScopes }", "expected a string, got bool"),
        ('${ trunc "3" "abc" }', "expected an integer, got string"),
        ('${ unixEpoch "yesterday" }', "expected a time"),
        ("${ div 1 0 }", "integer divide by zero"),
        ("${ mod 1 0 }", "integer divide by zero"),
        ("${ divf 1 0 }", "float divide by zero"),
        ('${ uuidParse "nope" }', "invalid UUID"),
        ('${ lt 1 "a" }', "incompatible types"),
        ("${ eq 1 1.0 }", "incompatible types"),
        ("${ lt true false }", "invalid type for comparison"),
        ("${ index .Client.GrantTypes 5 }", "index out of range"),
        ("${ len 5 }", "len of int"),
        ('${ repeat 9000 "x" }', "longer than 8192"),
        ('${ repeat -1 "x" }', "negative"),
        ("${ randAlphaNum 5000 }", "above 1024"),
        ('${ mustFromJson "nope" }', "invalid JSON"),
        ('${ first "abc" }', "expected a list"),
        ('${ get "abc" "k" }', "expected a map"),
        ('${ substr 3 1 "abcdef" }', "out of range"),
        ('${ repeat 9 (repeat 1024 "x") }', "longer than 8192"),
    ],
)
def test_check_template_refuses(value: str, match: str) -> None:
    bad(value, match)


def test_errors_are_value_errors_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match="function 'exec' is not supported") as info:
        check_template("${ exec }")
    assert isinstance(info.value, TemplateError)


def test_a_render_that_fails_at_mint_time_raises_template_error() -> None:
    # Passes the dry run (no label: default "1"), fails with this client's label.
    value = '${ div 10 (atoi (default "1" .Client.Labels.n)) }'
    check_template(value)
    context = template_context(make_server(), make_client(n="0"))
    with pytest.raises(TemplateError, match="divide by zero"):
        render_claim(value, context)


def test_output_is_bounded_at_render_time_too() -> None:
    value = "${ .Client.Labels.big }${ .Client.Labels.big }"
    context = template_context(make_server(), make_client(big="x" * (MAX_OUTPUT // 2 + 1)))
    check_template(value)
    with pytest.raises(TemplateError, match="longer than"):
        render_claim(value, context)


def test_nothing_outside_the_context_is_reachable() -> None:
    # No attribute access, no Python: names resolve against the mapping's keys only.
    for value in ("${ .Client.__class__ }", "${ __import__ }", '${ index .Client "__dict__" }'):
        with pytest.raises(TemplateError):
            check_template(value)


@pytest.mark.parametrize("value", ["${ 0x_ }", "${ 0b_ }", "${ 0o_ }", "${ add 0X_ 1 }"])
def test_a_base_prefix_without_digits_is_a_template_error(value: str) -> None:
    with pytest.raises(TemplateError, match="bad number syntax"):
        check_template(value)


def test_deeply_nested_values_are_a_template_error() -> None:
    deep = '${ fromJson (cat (repeat 900 "[") (repeat 900 "]")) }'
    with pytest.raises(TemplateError, match="nested too deeply"):
        check_template(deep)
    # Its JSON text is a string, and stays one, as a static value that deep does.
    deep_text = '${ fromJson (cat (repeat 900 "[") (repeat 900 "]")) | toJson }'
    assert render(deep_text) == "[" * 900 + "]" * 900


# ---- properties: anything an admin can type is a value or a TemplateError, never a crash ---------

_PIECES = st.sampled_from(
    (
        *("${", "}", " ", "|", "(", ")", '"', "`", ".", "$", "'", "\\", ",", ":=", "-", "0x", "1"),
        *("1.5e3", "nil", "true", "if", "uuidv4", "now", "date", "default", "upper", "repeat"),
        *("toJson", "fromJson", "index", "list", "dict", "div", "mod", "trunc", "printf", "[", "]"),
        *(".Client", ".Client.Labels.team", ".AuthServer.Name", ".Client.GrantTypes", '"2006"'),
        *('"x"', "{", ":", "_", "0b", "0o", "e"),
    )
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=3), max_size=14).map("".join))
def test_any_value_checks_cleanly_and_renders_if_accepted(value: str) -> None:
    try:
        check_template(value)
    except TemplateError:
        return
    result = render_claim(value, CONTEXT, clock=lambda: NOW)
    json.dumps(result)  # always JSON-serialisable


# ---- bounds on what one template may cost -------------------------------------------------


def test_a_date_past_year_9999_is_a_template_error() -> None:
    """Go renders any year; Python's datetime stops at 9999: a clean refusal, not an OSError
    that would reach the token endpoint as a 500."""
    with pytest.raises(TemplateError, match="out of range"):
        render('${ date "2006" 1000000000000000000 }')


@pytest.mark.parametrize(
    "value",
    [
        '${ indent 8192 (repeat 8192 "\\n") }',  # 67 MB if built, then refused
        '${ nindent 8000 (repeat 4000 "\\n") }',
        '${ replace "" (repeat 100 "x") (repeat 8000 "a") }',
        '${ replace "a" (repeat 100 "x") (repeat 8000 "a") }',
        '${ join (repeat 8000 "x") (list "a" "b" "c") }',
    ],
)
def test_a_result_too_long_is_refused_before_it_is_built(value: str) -> None:
    with pytest.raises(TemplateError, match="longer than"):
        render(value)


def test_a_long_context_value_is_refused_only_where_it_would_grow() -> None:
    """A client named with 450,000 newlines: `indent` would build gigabytes from it, and is
    refused up front; `trunc` cuts it down, and renders."""
    context = template_context(make_server(), make_client())
    context["Client"] = {**context["Client"], "Name": "\n" * 450_000}
    with pytest.raises(TemplateError, match="longer than"):
        render_claim("${ indent 2000 .Client.Name }", context, clock=lambda: NOW)
    assert render_claim("${ .Client.Name | trunc 3 }", context, clock=lambda: NOW) == "\n" * 3


def test_results_within_the_bounds_still_render() -> None:
    assert render('${ indent 2 "a\\nb" }') == "  a\n  b"
    assert render('${ replace "" "-" "ab" }') == "-a-b-"
    assert render('${ join ", " (list "a" "b") }') == "a, b"


def test_numbers_have_ascii_digits_only_as_in_go() -> None:
    """Go's lexer reads digits 0-9 only (Python's isdigit() takes any script's): '٣' (Arabic-
    Indic three) is no number in a template, and atoi finds no integer in it."""
    with pytest.raises(TemplateError):
        check_template("${ ٣ }")
    assert render_claim('${ atoi "٣" }', CONTEXT, clock=lambda: NOW) == 0
    assert render_claim('${ atoi "3" }', CONTEXT, clock=lambda: NOW) == 3


@pytest.mark.parametrize(
    ("template", "value"),
    [
        ('${ add "٣" 1 }', 1),  # cast.ToInt64 of a string Go cannot parse: 0
        ('${ int "٣" }', 0),
        ('${ float64 "٣" }', 0),
        ('${ add1 "\u0661\u0660" }', 1),  # Arabic-Indic 10
        # strconv: '_' between digits (and, in ParseInt's base 0, after a base prefix)
        ('${ float64 "1_000" }', 1000),
        ('${ float64 "1_000.5" }', 1000.5),
        ('${ float64 "1__000" }', 0),
        ('${ float64 "1_.5" }', 0),
        ('${ int "1_000" }', 1000),
        ('${ add "1_000" 1 }', 1001),
        ('${ int "0x_ff" }', 255),
        ('${ int "0_7" }', 7),  # a leading 0 is octal
        ('${ int "1__0" }', 0),
        ('${ int "_1" }', 0),
        ('${ int "1_" }', 0),
        ('${ float64 " 1.5" }', 0),
        ('${ float64 "1.5" }', 1.5),
        # ParseFloat's hexadecimal floats: a binary exponent required, '_' between digits
        ('${ float64 "0x1p-2" }', 0.25),
        ('${ float64 "-0x1.8p1" }', -3.0),
        ('${ float64 "0x_1_0p1_0" }', 16384.0),
        ('${ addf "0x.8p1" 1 }', 2.0),
        ('${ float64 "0x1" }', 0),  # no exponent
        ('${ float64 "0x1_p0" }', 0),  # '_' not between digits
        ('${ float64 "0xp1" }', 0),  # no digit
        ('${ float64 "0x1p99999" }', 0),  # out of range: cast answers 0
        ('${ add "3" 1 }', 4),
        ('${ atoi "99999999999999999999" }', 2**63 - 1),  # Atoi's out-of-range answer
        ('${ atoi "-99999999999999999999" }', -(2**63)),
    ],
)
def test_strings_become_numbers_as_go_parses_them(template: str, value: float) -> None:
    assert render_claim(template, CONTEXT, clock=lambda: NOW) == value


# ---- pinned after a mutation run: Go's JSON bytes and number printing, time layouts, cast's
# conversions, dateModify, clean, limits, and the exact texts an admin reads ---------------------


# -- toJson/toPrettyJson embedded in text: Go's encoding/json bytes (compact, sorted, UTF-8)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x=${ .Client.Labels | toJson }", 'x={"on":"true","team":"payments","tier":"2"}'),
        ('x=${ dict "k" "é\u2028\u2029" | toJson }', 'x={"k":"é\\u2028\\u2029"}'),
        ('x=${ dict "b" 1 "a" 2 | toPrettyJson }', 'x={\n  "a": 2,\n  "b": 1\n}'),
    ],
)
def test_json_inside_text_is_gos_bytes(value: str, expected: str) -> None:
    assert render(value) == expected


# -- float printing (fmt.Sprint of float64)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('${ float64 "Inf" }', "+Inf"),
        ('${ float64 "-Inf" }', "-Inf"),
        ('${ float64 "NaN" }', "NaN"),
        ("v=${ print 1.5e7 }", "v=1.5e+07"),
        ("v=${ print 1.5e20 }", "v=1.5e+20"),
        ("x=${ list 1 2 }", "x=[1 2]"),
    ],
)
def test_floats_and_lists_print_as_go_prints_them(value: str, expected: str) -> None:
    assert render(value) == expected


# -- date elements: 12-hour clock, unpadded 3/4/5, AM/PM, ".9" fraction
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('${ date "3 PM pm" 0 }', "12 AM am"),  # midnight UTC
        ('${ date "3 PM" 43200 }', "12 PM"),  # noon
        ('${ date "3:4:5" .Client.CreatedAt }', "4:5:6"),  # 04:05:06
        ('${ now | date "05.9" }', 20.1),  # a number once inferred
    ],
)
def test_date_elements_of_the_12_hour_clock_and_unpadded_fields(value: str, expected: str) -> None:
    assert render(value) == expected


# -- int/float64 casts (spf13/cast)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${ add true 1 }", 2),
        ('${ int "010" }', 8),  # ParseInt base 0: leading 0 is octal
        ('${ int " 1" }', 0),  # ParseInt refuses spaces
        ('${ int (float64 "Inf") }', 0),  # pins today's answer (Go: platform-dependent, see report)
        ("${ int .Client.GrantTypes }", 0),
        ("${ float64 .Client.GrantTypes }", 0),
        ('${ float64 "-0x_1p0" }', -1.0),  # '_' right after the base prefix, with a sign
        ('${ float64 "0x__1p0" }', 0),
        ('${ float64 "0x1__0p0" }', 0),
    ],
)
def test_casts_as_spf13_cast_makes_them(value: str, expected: Any) -> None:
    assert render(value) == expected


# -- dateModify durations (time.ParseDuration; sprig: unchanged on error)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('${ .Client.CreatedAt | dateModify "+1h" | date "15:04:05" }', "05:05:06"),
        ('${ .Client.CreatedAt | dateModify "0" | date "15:04:05" }', "04:05:06"),
        ('${ .Client.CreatedAt | dateModify ".h" | date "15:04:05" }', "04:05:06"),
        ('${ .Client.CreatedAt | dateModify "h" | date "15:04:05" }', "04:05:06"),
        ('${ .Client.CreatedAt | dateModify "++1h" | date "15:04:05" }', "04:05:06"),  # one sign
        ('${ .Client.CreatedAt | dateModify "-+1h" | date "15:04:05" }', "04:05:06"),
    ],
)
def test_date_modify_durations_as_go_parses_them(value: str, expected: str) -> None:
    assert render(value) == expected


# -- path.Clean
@pytest.mark.parametrize(
    ("value", "expected"), [('${ clean "" }', "."), ('${ clean "//a" }', "/a")]
)
def test_clean_as_go_path_clean(value: str, expected: str) -> None:
    assert render(value) == expected


# -- error texts an admin sees (400 at claim creation)
@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("${ first .Client.Labels }", "^first: expected a list, got map$"),
        ('${ get .Client.GrantTypes "k" }', "^get: expected a map, got list$"),
        ("${ unixEpoch .Client.Name }", "^unixEpoch: expected a time, got string$"),
        ("${ upper now }", "^upper: expected a string, got time$"),
        ("${ upper nil }", "^upper: expected a string, got nil$"),
        ('${ lt 1 "a" }', "^lt: incompatible types for comparison: int and string$"),
        ("${ lt nil nil }", "^lt: invalid type for comparison: nil$"),
        ('${ repeat 1024 "xxxxxxxx" | quote }', "^quote: result is longer than 8192 characters$"),
        ('${ splitList "," (repeat 1024 ",") }', "^splitList: result has more than 1024 items$"),
        ("${ .Client.Labels.a.b }", r"^\.Client\.Labels\.a\.b: \.Client\.Labels has no fields$"),
        ("${ .Client.Name.x }", r"^\.Client\.Name\.x: \.Client\.Name has no fields$"),
    ],
)
def test_error_texts_an_admin_reads(value: str, match: str) -> None:
    bad(value, match)


# -- size limits are inclusive (exactly MAX_OUTPUT / MAX_LIST is fine)
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('${ repeat 8192 "x" | len }', 8192),
        ('${ indent 8191 "x" | len }', 8192),
        ('${ splitList "," (repeat 1023 ",") | len }', 1024),
        ("${ randAlphaNum 1024 | len }", 1024),
        ("${ randAlphaNum 0 }", ""),
        ("${ randAlphaNum -1 }", ""),
    ],
)
def test_size_limits_are_inclusive(value: str, expected: Any) -> None:
    assert render(value) == expected


def test_a_whole_value_of_exactly_max_output() -> None:
    assert render('${ repeat 8192 "x" }') == "x" * 8192


# -- typing and truth
def test_a_json_string_or_null_after_a_space_stays_text() -> None:
    assert render(' "abc"') == ' "abc"'
    assert render(" null") == " null"


def test_a_time_is_not_empty() -> None:  # sprig empty: a struct is never empty
    assert render('${ default "x" .Client.CreatedAt | date "2006" }') == 2024
    assert render("${ empty now }") is False


def test_eq_nil_nil() -> None:
    assert render("${ eq nil nil }") is True


def test_json_after_a_leading_space_is_typed() -> None:
    assert render(" 2") == 2  # json.Unmarshal skips leading whitespace


def test_a_non_function_error_names_its_offset() -> None:
    bad('a ${ .Client.Name "x" }', r"non-function \(offset 2\)")


# -- parenthesis depth: 16 levels are fine, each sibling group starts again from 0
def nest(n: int) -> str:
    return "(" * n + "1" + ")" * n


def test_parenthesis_depth_is_counted_per_group() -> None:
    assert render("${ " + nest(16) + " }") == 1
    assert render("${ add " + nest(16) + " " + nest(16) + " }") == 2
    bad("${ add (1) " + nest(17) + " }", "nested deeper than 16")


# -- Go layout chunking (time.nextStdChunk): literals that look almost like elements
@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        ("2 Jan", "3 Feb"),  # "Jan" at the very end of the layout
        ("J: 2006", "J: 2024"),  # a lone "J" is literal
        ("Mone", "Mone"),  # "Mon" followed by a lower-case letter is literal
        ("0X", "0X"),
        ("a_b", "a_b"),
        ("X", "X"),
        ("P.p", "P.p"),
        ("X0", "X0"),
        (".X", ".X"),
        ("03", "04"),  # zero-padded 12-hour clock
    ],
)
def test_layout_literals_that_look_almost_like_elements(layout: str, expected: str) -> None:
    assert render(f'${{ date "{layout}" .Client.CreatedAt }}') == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [('${ int "011" }', 9), ('${ float64 "-0x__1p0" }', 0), ('${ float64 "0x1p0_" }', 0)],
)
def test_more_casts(value: str, expected: Any) -> None:
    assert render(value) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("${ default }", "^default: wrong number of arguments: 0, want 1 to 2$"),
        ("${ and }", "^and: wrong number of arguments: 0, want at least 1$"),
        ("${ lt true false }", "^lt: invalid type for comparison: bool$"),
    ],
)
def test_more_error_texts(value: str, match: str) -> None:
    bad(value, match)


def test_an_exact_arity_is_named_once() -> None:
    bad("${ upper }", r"^upper: wrong number of arguments: 0, want 1$")
