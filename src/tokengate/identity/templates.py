"""Claim values: static text, JSON, or Kong Identity "dynamic claim templates" with `${ ... }`.

    check_template('${ .Client.Labels.team | default "core" }')    # at claim creation: 400 if bad
    context = template_context(server, client)
    render_claim('${ now | date "2006-01-02T15:04:05Z07:00" }', context)  # '2025-11-26T08:13:00Z'
    render_claim('{"tier": 2}', context)                                  # {'tier': 2}

Kong Identity renders claim values with Go's text/template and sprig, with `${` `}` as the action
delimiters; this is a small re-implementation of the part of that language a claim needs, never
`eval`: a tokenizer, a parser to a tree of constants, field paths and calls of whitelisted
functions, and an evaluator. Go semantics are followed where they show: field paths are resolved
against the context mapping only (Kong's documented context, `CONTEXT_FIELDS`), a pipe passes its
value as the last argument of the next command, an identifier in argument position is a call of
a niladic function, values print as Go's `fmt.Sprint` would (`[a b]`, `2006-01-02 15:04:05 +0000
UTC`), `date` takes Go reference-time layouts, and typed parameters (strings, ints, times) refuse
other types, as Go's template engine does.

Typing (Kong: "the type is inferred from the value"): a value with no `${` is static; it is the
JSON value when it parses as a JSON object, array, number or boolean, else the text. A value that
is one whole template is rendered, then inferred the same way (`${ .Client.AllowAllScopes }` is a
boolean, `${ .Client.Labels | toJson }` an object). A template embedded in text is always a string:
a label holding `"` can never inject JSON.

Everything a value can use is checked when the claim is saved (`check_template`): syntax,
functions and their arity, field paths, sizes, and one dry run against a sample client with no
labels, so a claim that cannot render answers 400 at creation rather than breaking tokens later.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import posixpath
import re
import secrets
import string
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Final, TypeVar
from zoneinfo import ZoneInfo

from tokengate.jsonlimits import holds_lone_surrogate, nests_deeper

if TYPE_CHECKING:
    from tokengate.identity.models import AuthServer, Client

MAX_VALUE_LENGTH: Final = 4096  # characters in a claim value as saved
MAX_EXPRESSIONS: Final = 32  # `${ ... }` per value
MAX_DEPTH: Final = 16  # nesting of parentheses, and of JSON in a rendered value
MAX_OUTPUT: Final = 8192  # characters of any string a template produces
MAX_RANDOM: Final = 1024  # length of a rand* string
MAX_LIST: Final = 1024  # items of a list a template builds

# Kong Identity's documented context ("Supported contexts"): nothing else can be named.
CONTEXT_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "AuthServer": frozenset(
        {"ID", "CreatedAt", "UpdatedAt", "Name", "Description", "Audience", "SigningAlgorithm"}
        | {"Labels"}
    ),
    "Client": frozenset(
        {"ID", "CreatedAt", "UpdatedAt", "Name", "GrantTypes", "RedirectURIs", "LoginURI"}
        | {"ResponseTypes", "AllowAllScopes", "Labels"}
    ),
}
_MAP_FIELDS: Final = frozenset({"Labels"})


class TemplateError(ValueError):
    """The value cannot be used as a claim value (the message says why, for a 400)."""


def template_context(server: AuthServer, client: Client) -> dict[str, Any]:
    """The mapping templates see: Kong's `.AuthServer.*` and `.Client.*` (see CONTEXT_FIELDS)."""
    return {
        "AuthServer": {
            "ID": server.id,
            "CreatedAt": server.created_at,
            "UpdatedAt": server.updated_at,
            "Name": server.name,
            "Description": server.description,
            "Audience": server.audience,
            "SigningAlgorithm": server.signing_algorithm,
            "Labels": dict(server.labels),
        },
        "Client": {
            "ID": client.id,
            "CreatedAt": client.created_at,
            "UpdatedAt": client.updated_at,
            "Name": client.name,
            "Labels": dict(client.labels),
            "GrantTypes": list(client.grant_types),
            "RedirectURIs": list(client.redirect_uris),
            "LoginURI": client.login_uri or "",
            "ResponseTypes": list(client.response_types),
            "AllowAllScopes": client.allow_all_scopes,
        },
    }


def check_template(value: str) -> None:
    """Raise TemplateError unless `value` is a claim value every token can be minted with."""
    compiled = _compile(value)
    if compiled.parts:
        # A dry run against a client with no labels: type errors, sizes, bad literals.
        compiled.render(_SAMPLE_CONTEXT, lambda: 1_700_000_000.0)


def render_claim(
    value: str, context: Mapping[str, Any], *, clock: Callable[[], float] = time.time
) -> Any:
    """The claim's value for one token: str, int, float, bool, list or dict (JSON types only)."""
    return _compile(value).render(context, clock)


# ---- compiled values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Template:
    text: str  # the value as saved
    parts: tuple[str | _Node, ...]  # () for a static value
    static: Any  # a static value's claim (immutable types only; JSON containers re-parse)

    def render(self, context: Mapping[str, Any], clock: Callable[[], float]) -> Any:
        if not self.parts:
            # a fresh object each time for JSON containers (checked when compiled)
            return _decode_json(self.text) if self.static is _CONTAINER else self.static
        env = _Env(context, clock)
        try:
            if len(self.parts) == 1 and not isinstance(self.parts[0], str):
                return _infer(_checked(_sprint(self.parts[0].eval(env))))
            out = "".join(p if isinstance(p, str) else _sprint(p.eval(env)) for p in self.parts)
        except RecursionError:  # e.g. printing a deeply nested fromJson result
            raise TemplateError("value nested too deeply") from None
        return _checked(out)


_CONTAINER: Final = object()  # marks a static JSON object/array: parsed per render, never shared


@functools.lru_cache(maxsize=1024)
def _compile(value: str) -> _Template:
    if len(value) > MAX_VALUE_LENGTH:
        raise TemplateError(f"claim value is longer than {MAX_VALUE_LENGTH} characters")
    parts: list[str | _Node] = []
    pos = 0
    while (start := value.find("${", pos)) >= 0:
        if start > pos:
            parts.append(value[pos:start])
        tokens, pos = _lex(value, start + 2)
        parts.append(_Parser(tokens, start).expression())
        if sum(not isinstance(p, str) for p in parts) > MAX_EXPRESSIONS:
            raise TemplateError(f"claim value has more than {MAX_EXPRESSIONS} '${{ }}' templates")
    if not parts:
        static = _infer(value)
        return _Template(value, (), _CONTAINER if isinstance(static, dict | list) else static)
    if pos < len(value):
        parts.append(value[pos:])
    return _Template(value, tuple(parts), None)


def _infer(text: str) -> Any:
    """A JSON object, array, number or boolean when `text` is one; else the text itself."""
    if not text or (text[0] not in "{[-0123456789tf" and not text[0].isspace()):
        return text
    try:
        parsed = _decode_json(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(parsed, str) or parsed is None or nests_deeper(parsed, MAX_DEPTH):
        return text
    return parsed


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: not JSON


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


_JSON: Final = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _decode_json(text: str, decode: Callable[[str], Any] = _JSON.decode) -> Any:
    """`decode(text)`, each escaped lone surrogate (`"\\ud800"`, half of a pair) decoded to
    U+FFFD as Go's encoding/json decodes it: a claim is text, and a token holding a lone
    surrogate is one no verifier takes (the gateway, Kong's lua-cjson)."""
    value = decode(text)
    return _as_text(value) if holds_lone_surrogate(value, text) else value


def _as_text(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_as_text(item) for item in value]
    if isinstance(value, dict):
        return {_as_text(key): _as_text(item) for key, item in value.items()}
    return value


def _checked(text: str) -> str:
    if len(text) > MAX_OUTPUT:
        raise TemplateError(f"rendered value is longer than {MAX_OUTPUT} characters")
    return text


# ---- tokenizer -----------------------------------------------------------------------------------

# kind: "str" | "num" | "bool" | "nil" | "field" | "ident" | "|" | "(" | ")"
_Token = tuple[str, Any, int]

_IDENT = re.compile(r"[^\W\d]\w*")
_FIELD = re.compile(r"(?:\.[^\W\d]\w*)+")
# Go's number literals have ASCII digits only (Python's \d and isdigit() take any script's).
_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+"
    r"|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9][0-9_]*)?"
    r"|\.[0-9][0-9_]*(?:[eE][+-]?[0-9][0-9_]*)?)"
)
_DIGITS: Final = frozenset("0123456789")
_KEYWORDS: Final = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}


def _lex(src: str, pos: int) -> tuple[list[_Token], int]:
    """The tokens of the `${ ... }` whose body starts at `pos`, and the index after its `}`."""
    tokens: list[_Token] = []
    opened = pos - 2
    n = len(src)
    while True:
        if pos >= n:
            raise TemplateError(f"'${{' at offset {opened} is never closed with '}}'")
        c = src[pos]
        if c.isspace():
            pos += 1
        elif c == "}":
            return tokens, pos + 1
        elif c in "|()":
            tokens.append((c, None, pos))
            pos += 1
        elif c == '"':
            text, pos = _lex_string(src, pos)
            tokens.append(("str", text, pos))
        elif c == "`":
            end = src.find("`", pos + 1)
            if end < 0:
                raise TemplateError(f"unterminated raw string at offset {pos}")
            tokens.append(("str", src[pos + 1 : end], pos))
            pos = end + 1
        elif c == "." and (m := _FIELD.match(src, pos)):
            tokens.append(("field", tuple(m.group()[1:].split(".")), pos))
            pos = _end_of_term(src, m.end())
        elif c == ".":
            if pos + 1 < n and src[pos + 1] in _DIGITS:
                pos = _lex_number(src, pos, tokens)
            else:
                raise TemplateError(f"'.' alone (the whole context) is not supported at {pos}")
        elif c in _DIGITS or (
            c in "+-" and pos + 1 < n and (src[pos + 1] in _DIGITS or src[pos + 1] == ".")
        ):
            pos = _lex_number(src, pos, tokens)
        elif m := _IDENT.match(src, pos):
            word = m.group()
            if word in _KEYWORDS:
                raise TemplateError(f"'{word}': control structures are not supported")
            if word in ("true", "false"):
                tokens.append(("bool", word == "true", pos))
            elif word == "nil":
                tokens.append(("nil", None, pos))
            else:
                tokens.append(("ident", word, pos))
            pos = _end_of_term(src, m.end())
        elif c == "$":
            raise TemplateError(f"variables ('$') are not supported (offset {pos})")
        elif c == "'":
            raise TemplateError(f"character constants are not supported (offset {pos})")
        else:
            raise TemplateError(f"unexpected {c!r} at offset {pos}")


def _end_of_term(src: str, pos: int) -> int:
    if pos < len(src) and (src[pos] == "." or src[pos] == "[" or src[pos] == ":"):
        raise TemplateError(f"unexpected {src[pos]!r} at offset {pos}")
    return pos


def _lex_number(src: str, pos: int, tokens: list[_Token]) -> int:
    m = _NUMBER.match(src, pos)
    if m is None or (m.end() < len(src) and (src[m.end()].isalnum() or src[m.end()] in "._")):
        raise TemplateError(f"bad number syntax at offset {pos}")
    text = m.group().replace("_", "")
    value: int | float
    try:
        if re.fullmatch(r"[+-]?0[xXbBoO].*", text):
            value = int(text, 0)
        elif any(ch in text for ch in ".eE"):
            value = float(text)
        elif re.fullmatch(r"[+-]?0[0-7]+", text):
            value = int(text, 8)  # Go: a leading 0 is octal
        else:
            value = int(text, 10)
    except ValueError:  # a prefix and no digits ("0x_"), and the like: Go refuses them too
        raise TemplateError(f"bad number syntax at offset {pos}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise TemplateError(f"number out of range at offset {pos}")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise TemplateError(f"number out of range at offset {pos}")
    tokens.append(("num", value, pos))
    return m.end()


def _lex_string(src: str, pos: int) -> tuple[str, int]:
    """A Go interpreted string literal at `pos` (the opening quote): its value, the index after."""
    out: list[str] = []
    i = pos + 1
    n = len(src)
    while i < n:
        c = src[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\n":
            break
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        e = src[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = src[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in string.hexdigits for d in digits):
                raise TemplateError(f"bad escape in string at offset {i}")
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise TemplateError(f"bad escape in string at offset {i}")
            out.append(chr(code))
            i += 2 + width
        elif e in "01234567":
            digits = src[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise TemplateError(f"bad escape in string at offset {i}")
            out.append(chr(int(digits, 8) & 0xFF))
            i += 4
        else:
            raise TemplateError(f"bad escape in string at offset {i}")
    raise TemplateError(f"unterminated string at offset {pos}")


# ---- parser: a pipeline becomes one tree of nodes ------------------------------------------------


class _Node:
    __slots__ = ()

    def eval(self, env: _Env) -> Any:
        raise NotImplementedError


class _Const(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def eval(self, env: _Env) -> Any:
        return self.value


class _Field(_Node):
    __slots__ = ("path",)

    def __init__(self, path: tuple[str, ...]) -> None:
        self.path = path

    def eval(self, env: _Env) -> Any:
        value: Any = env.context
        for i, name in enumerate(self.path):
            if not isinstance(value, Mapping):
                raise TemplateError(f"can't evaluate field {name} of .{'.'.join(self.path[:i])}")
            if name not in value:
                # A missing label is Go's zero value for map[string]string: "".
                return "" if i and self.path[i - 1] in _MAP_FIELDS else None
            value = value[name]
        return value


class _Call(_Node):
    __slots__ = ("args", "func", "name")

    def __init__(self, name: str, func: _Func, args: list[_Node]) -> None:
        self.name = name
        self.func = func
        self.args = args

    def eval(self, env: _Env) -> Any:
        args = [a.eval(env) for a in self.args]
        try:
            result = self.func.call(env, *args) if self.func.env else self.func.call(*args)
        except TemplateError as exc:
            raise TemplateError(f"{self.name}: {exc}") from None
        except (ValueError, TypeError, OverflowError, ZeroDivisionError, IndexError) as exc:
            raise TemplateError(f"{self.name}: {exc}") from None
        if isinstance(result, str) and len(result) > MAX_OUTPUT:
            raise TemplateError(f"{self.name}: result is longer than {MAX_OUTPUT} characters")
        if isinstance(result, list | dict) and len(result) > MAX_LIST:
            raise TemplateError(f"{self.name}: result has more than {MAX_LIST} items")
        return result


class _Parser:
    def __init__(self, tokens: list[_Token], offset: int) -> None:
        self.tokens = tokens
        self.i = 0
        self.offset = offset
        self.depth = 0

    def expression(self) -> _Node:
        if not self.tokens:
            raise TemplateError(f"empty '${{ }}' at offset {self.offset}")
        node = self.pipeline()
        if self.i < len(self.tokens):
            kind, _, pos = self.tokens[self.i]
            raise TemplateError(f"unexpected {kind!r} at offset {pos}")
        return node

    def pipeline(self) -> _Node:
        node = self.command(None)
        while self._peek() == "|":
            self.i += 1
            node = self.command(node)
        return node

    def command(self, piped: _Node | None) -> _Node:
        operands: list[tuple[str, Any, int] | _Node] = []
        while self._peek() not in ("|", ")", None):
            operands.append(self.operand())
        if not operands:
            raise TemplateError(f"missing command in '${{ }}' at offset {self.offset}")
        first, rest = operands[0], operands[1:]
        if isinstance(first, tuple):  # an identifier: a function call
            name = first[1]
            args = [self._argument(o) for o in rest] + ([piped] if piped else [])
            return _call(name, args)
        if rest or piped is not None:
            raise TemplateError(f"can't give an argument to a non-function (offset {self.offset})")
        if isinstance(first, _Const) and first.value is None:
            raise TemplateError("nil is not a command")
        return first

    def operand(self) -> tuple[str, Any, int] | _Node:
        kind, value, pos = self.tokens[self.i]
        self.i += 1
        if kind in ("str", "num", "bool", "nil"):
            return _Const(value)
        if kind == "field":
            _check_field(value)
            return _Field(value)
        if kind == "ident":
            return (kind, value, pos)
        if kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise TemplateError(f"parentheses nested deeper than {MAX_DEPTH}")
            node = self.pipeline()
            if self._peek() != ")":
                raise TemplateError(f"unclosed '(' at offset {pos}")
            self.i += 1
            self.depth -= 1
            return node
        raise TemplateError(f"unexpected {kind!r} at offset {pos}")

    def _argument(self, operand: tuple[str, Any, int] | _Node) -> _Node:
        if isinstance(operand, tuple):  # Go: an identifier argument is a niladic call
            return _call(operand[1], [])
        return operand

    def _peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None


def _call(name: str, args: list[_Node]) -> _Call:
    func = _FUNCS.get(name)
    if func is None:
        raise TemplateError(f"function {name!r} is not supported")
    if len(args) < func.min_args or (func.max_args is not None and len(args) > func.max_args):
        expected = (
            f"{func.min_args}"
            if func.min_args == func.max_args
            else f"at least {func.min_args}"
            if func.max_args is None
            else f"{func.min_args} to {func.max_args}"
        )
        raise TemplateError(f"{name}: wrong number of arguments: {len(args)}, want {expected}")
    return _Call(name, func, args)


def _check_field(path: tuple[str, ...]) -> None:
    dotted = "." + ".".join(path)
    fields = CONTEXT_FIELDS.get(path[0])
    if fields is None or len(path) < 2:
        raise TemplateError(f"{dotted}: the context has .AuthServer.<field> and .Client.<field>")
    if path[1] not in fields:
        raise TemplateError(f"{dotted}: .{path[0]} has no field {path[1]}")
    if len(path) > (3 if path[1] in _MAP_FIELDS else 2):
        raise TemplateError(f"{dotted}: .{path[0]}.{path[1]} has no fields")


# ---- evaluation ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Env:
    context: Mapping[str, Any]
    clock: Callable[[], float]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


@dataclass(frozen=True, slots=True)
class _Func:
    call: Callable[..., Any]
    min_args: int
    max_args: int | None
    env: bool


_FUNCS: dict[str, _Func] = {}
_F = TypeVar("_F", bound=Callable[..., Any])


def _fn(*names: str, args: int | tuple[int, int | None], env: bool = False) -> Callable[[_F], _F]:
    lo, hi = (args, args) if isinstance(args, int) else args

    def register(func: _F) -> _F:
        for name in names:
            _FUNCS[name] = _Func(func, lo, hi, env)
        return func

    return register


def _sprint(value: Any) -> str:
    """Go's fmt.Sprint of a value, as text/template prints an action's result."""
    return "<no value>" if value is None else _go_text(value)


def _go_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if value is None:
        return "<nil>"
    if isinstance(value, datetime):
        return _format_time(value, "2006-01-02 15:04:05.999999999 -0700 MST")
    if isinstance(value, list | tuple):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "map[" + " ".join(f"{k}:{_go_text(v)}" for k, v in items) + "]"
    raise TemplateError(f"cannot print a {type(value).__name__}")


def _go_float(value: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), which fmt's %v uses: the shortest digits that
    round-trip, in %e notation when the decimal exponent is < -4 or >= 6 (ftoa.go's "if
    precision was the shortest possible, use precision 6 for this decision")."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    digits, exp = _shortest(abs(value))
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    point = exp + 1
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _shortest(value: float) -> tuple[str, int]:
    """Shortest round-trip digits of a positive float (repr's), and the decimal exponent of the
    first digit: 1234.5 -> ("12345", 3), 0.001 -> ("1", -3)."""
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exponent) if exponent else 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    return significant.rstrip("0") or "0", point - 1


def _truth(value: Any) -> bool:
    """Go's template truth (and sprig's `empty`, negated)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TemplateError(f"expected a string, got {_kind(value)}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TemplateError(f"expected an integer, got {_kind(value)}")
    return value


def _time(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TemplateError(f"expected a time, got {_kind(value)}")
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise TemplateError(f"expected a list, got {_kind(value)}")
    return list(value)


def _map(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TemplateError(f"expected a map, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    return {
        bool: "bool",
        int: "int",
        float: "float64",
        str: "string",
        list: "list",
        dict: "map",
        datetime: "time",
    }.get(type(value), type(value).__name__)


def _int64(value: int) -> int:
    """Wrap to int64, as Go's arithmetic does."""
    return ((value + 2**63) % 2**64) - 2**63


def _to_int64(value: Any) -> int:
    """spf13/cast.ToInt64, as sprig's math uses: lenient, 0 when nothing fits."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return _int64(value)
    if isinstance(value, float):
        return _int64(int(value)) if math.isfinite(value) else 0
    if isinstance(value, str):
        if not value.isascii():  # Go parses ASCII digits only; int() takes any script's
            return 0
        text = re.sub(r"^([+-]?[0-9]+)\.0*$", r"\1", value)
        try:
            # strconv.ParseInt(s, 0, 0): a leading 0 is octal, and "_" may stand between digits
            # or after a base prefix (Python's int(text, 0) has the same rule).
            if re.fullmatch(r"[+-]?0(?:_?[0-7])+", text):
                return _int64(int(text.replace("_", ""), 8))
            return _int64(int(text, 0)) if text.strip() == text else 0
        except ValueError:
            return 0
    return 0


def _to_float64(value: Any) -> float:
    """spf13/cast.ToFloat64: strconv.ParseFloat, 0 when it fails. Python's float() is looser:
    any script's digits and surrounding whitespace are refused here; and narrower: Go's
    hexadecimal floats ("0x1p-2") are read here too. Both take '_' between digits only."""
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        if _GO_HEX_FLOAT.fullmatch(value):
            if not _go_underscores_ok(value):
                return 0.0
            try:
                return float.fromhex(value.replace("_", ""))
            except OverflowError:  # ParseFloat's ErrRange: cast answers 0
                return 0.0
        if not value.isascii() or value != value.strip():
            return 0.0
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


# strconv.ParseFloat's hexadecimal form: a mantissa of hex digits (at least one) and a binary
# exponent, which it requires; underscores as _go_underscores_ok allows.
_GO_HEX_FLOAT: Final = re.compile(
    r"[+-]?0[xX](?=[_.]*[0-9a-fA-F])[0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?[pP][+-]?[0-9_]+"
)


def _go_underscores_ok(text: str) -> bool:
    """strconv's underscoreOK: each '_' between two digits, or after the base prefix."""
    body = text[1:] if text[:1] in "+-" else text
    saw = "0"  # the base prefix counts as a digit
    for char in body[2:]:
        if char in string.hexdigits:
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _atoi(value: Any) -> int:
    """sprig's atoi: strconv.Atoi, whose out-of-range answer (kept, its error ignored) is the
    nearest int64; 0 for anything that is not an integer in ASCII digits."""
    text = _str(value)
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return 0
    return max(-(2**63), min(2**63 - 1, int(text)))


def _strval(value: Any) -> str:
    return value if isinstance(value, str) else _go_text(value)


def _go_json(value: Any, *, html: bool = True, indent: int | None = None) -> str:
    """Go's encoding/json: sorted map keys, RFC 3339 times, `<>&` escaped unless `html=False`."""

    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return _format_time(obj, "2006-01-02T15:04:05.999999999Z07:00")
        raise TypeError(f"cannot encode a {type(obj).__name__} as JSON")

    text = json.dumps(
        value,
        ensure_ascii=False,
        sort_keys=True,
        indent=indent,
        separators=(",", ":") if indent is None else (",", ": "),
        default=default,
        allow_nan=False,
    )
    if html:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# ---- Go time layouts -----------------------------------------------------------------------------

_MONTHS: Final = (
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
)
_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TZ_CHUNKS: Final = (  # longest first, as Go's nextStdChunk tries them
    "-07:00:00",
    "-070000",
    "-0700",
    "-07:00",
    "-07",
    "Z07:00:00",
    "Z070000",
    "Z0700",
    "Z07:00",
    "Z07",
)


@functools.lru_cache(maxsize=256)
def _layout(layout: str) -> tuple[tuple[bool, str], ...]:
    """A Go reference-time layout ("Mon Jan 2 15:04:05 MST 2006") as (is_element, text) chunks,
    split as Go's time.nextStdChunk splits it."""
    chunks: list[tuple[bool, str]] = []
    literal: list[str] = []
    i, n = 0, len(layout)
    while i < n:
        std = _std_chunk(layout, i)
        if std is None:
            literal.append(layout[i])
            i += 1
            continue
        lead, element = std
        literal.append(lead)
        if literal:
            chunks.append((False, "".join(literal)))
            literal = []
        chunks.append((True, element))
        i += len(lead) + len(element)
    if literal:
        chunks.append((False, "".join(literal)))
    return tuple(c for c in chunks if c[1])


def _std_chunk(s: str, i: int) -> tuple[str, str] | None:
    """The layout element starting at `i` (with any literal it swallows before it), or None."""
    c, rest = s[i], s[i:]

    def lower_next(k: int) -> bool:
        return i + k < len(s) and s[i + k].islower()

    if c == "J" and rest.startswith("Jan"):
        if rest.startswith("January"):
            return "", "January"
        return None if lower_next(3) else ("", "Jan")
    if c == "M":
        if rest.startswith("Monday"):
            return "", "Monday"
        if rest.startswith("Mon") and not lower_next(3):
            return "", "Mon"
        if rest.startswith("MST"):
            return "", "MST"
        return None
    if c == "0":
        if len(rest) >= 2 and rest[1] in "123456":
            return "", rest[:2]
        return ("", "002") if rest.startswith("002") else None
    if c == "1":
        return ("", "15") if rest.startswith("15") else ("", "1")
    if c == "2":
        return ("", "2006") if rest.startswith("2006") else ("", "2")
    if c == "_":
        if rest.startswith("_2"):
            return ("_", "2006") if rest.startswith("_2006") else ("", "_2")
        return ("", "__2") if rest.startswith("__2") else None
    if c in "345":
        return "", c
    if c == "P":
        return ("", "PM") if rest.startswith("PM") else None
    if c == "p":
        return ("", "pm") if rest.startswith("pm") else None
    if c in "-Z":
        for tz in _TZ_CHUNKS:
            if rest.startswith(tz):
                return "", tz
        return None
    if c in ".," and len(rest) >= 2 and rest[1] in "09":
        j = 1
        while j < len(rest) and rest[j] == rest[1]:
            j += 1
        if not (j < len(rest) and rest[j].isdigit()):  # only digits of one kind, then no digit
            return "", rest[:j]
    return None


def _format_time(t: datetime, layout: str) -> str:
    """time.Time.Format(layout)."""
    out: list[str] = []
    utcoffset = t.utcoffset()
    offset = int(utcoffset.total_seconds()) if utcoffset is not None else 0
    for is_element, text in _layout(layout):
        out.append(_element(t, text, offset) if is_element else text)
    return "".join(out)


def _element(t: datetime, e: str, offset: int) -> str:
    if e == "2006":
        return f"{t.year:04d}"
    if e == "06":
        return f"{t.year % 100:02d}"
    if e == "January":
        return _MONTHS[t.month - 1]
    if e == "Jan":
        return _MONTHS[t.month - 1][:3]
    if e == "1":
        return str(t.month)
    if e == "01":
        return f"{t.month:02d}"
    if e == "Monday":
        return _DAYS[t.weekday()]
    if e == "Mon":
        return _DAYS[t.weekday()][:3]
    if e == "2":
        return str(t.day)
    if e == "_2":
        return f"{t.day:2d}"
    if e == "02":
        return f"{t.day:02d}"
    if e == "__2":
        return f"{t.timetuple().tm_yday:3d}"
    if e == "002":
        return f"{t.timetuple().tm_yday:03d}"
    if e == "15":
        return f"{t.hour:02d}"
    if e in ("3", "03"):
        hour = t.hour % 12 or 12
        return str(hour) if e == "3" else f"{hour:02d}"
    if e in ("4", "04"):
        return str(t.minute) if e == "4" else f"{t.minute:02d}"
    if e in ("5", "05"):
        return str(t.second) if e == "5" else f"{t.second:02d}"
    if e in ("PM", "pm"):
        ampm = "PM" if t.hour >= 12 else "AM"
        return ampm if e == "PM" else ampm.lower()
    if e == "MST":  # the zone's abbreviation; with none known (a fixed offset), Go prints -0700
        name = t.tzname()
        if not name or (name.startswith("UTC") and name != "UTC"):  # Python's "UTC+02:00"
            return _offset(offset, e)
        return name
    if e[0] in "-Z":
        if e[0] == "Z" and offset == 0:
            return "Z"
        return _offset(offset, e)
    # fractional seconds: ".000" exactly that many digits, ".999" trailing zeros dropped
    digits = f"{t.microsecond * 1000:09d}"[: len(e) - 1]
    if e[1] == "9":
        digits = digits.rstrip("0")
        return e[0] + digits if digits else ""
    return e[0] + digits


def _offset(offset: int, element: str) -> str:
    if element == "MST":
        element = "-0700"
    sign = "-" if offset < 0 else "+"
    minutes, seconds = divmod(abs(offset), 60)
    hours, minutes = divmod(minutes, 60)
    out = f"{sign}{hours:02d}"
    colon = ":" in element
    if not element.endswith("07"):  # -07 / Z07: hours only
        out += (":" if colon else "") + f"{minutes:02d}"
    if element.endswith("0000") or element.endswith("00:00"):
        out += (":" if colon else "") + f"{seconds:02d}"
    return out


_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _parse_duration(text: str) -> float | None:
    """Go's time.ParseDuration ("1h30m", "-1.5h", "300ms"), in seconds; None when malformed."""
    sign, body = (-1.0 if text[:1] == "-" else 1.0), text
    if text[:1] in ("-", "+"):  # one sign, as Go takes it
        body = text[1:]
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body):
        m = _DURATION.match(body, pos)
        if m is None or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total if body else None


def _zone(name: str) -> tzinfo:
    if name in ("UTC", "Local", ""):
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # sprig: an unknown zone is UTC
        return UTC


def _date_in_zone(env: _Env, layout: Any, date: Any, zone: Any) -> str:
    """sprig dateInZone: a time, or Unix seconds; anything else is now."""
    if isinstance(date, datetime):
        t = date
    elif isinstance(date, int) and not isinstance(date, bool):
        try:
            t = datetime.fromtimestamp(date, UTC)
        except (OverflowError, OSError, ValueError):  # past year 9999 (or before year 1)
            raise TemplateError(f"Unix time {date} is out of range") from None
    else:
        t = env.now()
    return _format_time(t.astimezone(_zone(_str(zone))), _str(layout))


# ---- functions: Go's builtins, then sprig's (the ones Kong Identity lists) -----------------------
# "Local" is UTC here (a server has no business rendering its own time zone into tokens).


@_fn("and", args=(1, None))
def _and(*args: Any) -> Any:
    for a in args:
        if not _truth(a):
            return a
    return args[-1]


@_fn("or", args=(1, None))
def _or(*args: Any) -> Any:
    for a in args:
        if _truth(a):
            return a
    return args[-1]


@_fn("not", args=1)
def _not(a: Any) -> bool:
    return not _truth(a)


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    kinds = {_kind(a), _kind(b)}
    if len(kinds) > 1 or not kinds <= {"int", "float64", "string", "bool", "nil"}:
        raise TemplateError(f"incompatible types for comparison: {_kind(a)} and {_kind(b)}")
    return a, b


@_fn("eq", args=(2, None))
def _eq(a: Any, *others: Any) -> bool:
    return any(x == y for x, y in (_comparable(a, o) for o in others))


@_fn("ne", args=2)
def _ne(a: Any, b: Any) -> bool:
    x, y = _comparable(a, b)
    return bool(x != y)


def _ordered(a: Any, b: Any) -> tuple[Any, Any]:
    x, y = _comparable(a, b)
    if _kind(x) in ("bool", "nil"):
        raise TemplateError(f"invalid type for comparison: {_kind(x)}")
    return x, y


@_fn("lt", args=2)
def _lt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x < y)


@_fn("le", args=2)
def _le(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x <= y)


@_fn("gt", args=2)
def _gt(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x > y)


@_fn("ge", args=2)
def _ge(a: Any, b: Any) -> bool:
    x, y = _ordered(a, b)
    return bool(x >= y)


@_fn("len", args=1)
def _len(a: Any) -> int:
    if isinstance(a, str):
        return len(a.encode())  # Go: bytes
    if isinstance(a, list | tuple | dict):
        return len(a)
    raise TemplateError(f"len of {_kind(a)}")


@_fn("index", args=(1, None))
def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(_str(key), "")
        elif isinstance(item, list | tuple | str):
            i = _int(key)
            if not 0 <= i < len(item):
                raise TemplateError(f"index out of range: {i}")
            item = item[i]
        else:
            raise TemplateError(f"can't index item of type {_kind(item)}")
    return item


@_fn("print", args=(0, None))
def _print(*args: Any) -> str:
    out: list[str] = []
    for i, a in enumerate(args):
        # fmt.Sprint: a space between operands when neither is a string
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_go_text(a))
    return "".join(out)


# strings
_fn("upper", args=1)(lambda s: _str(s).upper())
_fn("lower", args=1)(lambda s: _str(s).lower())
_fn("trim", args=1)(lambda s: _str(s).strip())
_fn("trimAll", args=2)(lambda cut, s: _str(s).strip(_str(cut)))
_fn("trimPrefix", args=2)(lambda p, s: _str(s).removeprefix(_str(p)))
_fn("trimSuffix", args=2)(lambda p, s: _str(s).removesuffix(_str(p)))
_fn("nospace", args=1)(lambda s: "".join(_str(s).split()))
_fn("contains", args=2)(lambda sub, s: _str(sub) in _str(s))
_fn("hasPrefix", args=2)(lambda p, s: _str(s).startswith(_str(p)))
_fn("hasSuffix", args=2)(lambda p, s: _str(s).endswith(_str(p)))
_fn("squote", args=(0, None))(lambda *a: " ".join(f"'{_strval(x)}'" for x in a if x is not None))
_fn("cat", args=(0, None))(lambda *a: " ".join(_go_text(x) for x in a if x is not None))
_fn("toString", args=1)(_strval)
_fn("plural", args=3)(lambda one, many, n: _str(one) if _int(n) == 1 else _str(many))
_fn("sha1sum", args=1)(lambda s: hashlib.sha1(_str(s).encode(), usedforsecurity=False).hexdigest())
_fn("sha256sum", args=1)(lambda s: hashlib.sha256(_str(s).encode()).hexdigest())
_fn("adler32sum", args=1)(lambda s: str(zlib.adler32(_str(s).encode())))
_fn("b64enc", args=1)(lambda s: base64.b64encode(_str(s).encode()).decode())
_fn("b32enc", args=1)(lambda s: base64.b32encode(_str(s).encode()).decode())


@_fn("title", args=1)
def _title(s: Any) -> str:
    """strings.Title: the first letter of each word upper-cased, the rest untouched."""
    out, boundary = [], True
    for ch in _str(s):
        out.append(ch.upper() if boundary else ch)
        # Go's isSeparator: ASCII other than letters, digits and "_", and spaces
        boundary = (ch.isascii() and not (ch.isalnum() or ch == "_")) or ch.isspace()
    return "".join(out)


@_fn("untitle", args=1)
def _untitle(s: Any) -> str:
    """sprig untitle: the first letter of each space-separated word lower-cased."""
    out, in_word = [], False
    for ch in _str(s):
        if ch.isspace():
            in_word = False
        elif not in_word:
            ch, in_word = ch.lower(), True
        out.append(ch)
    return "".join(out)


@_fn("trunc", args=2)
def _trunc(n: Any, s: Any) -> str:
    count, text = _int(n), _str(s)
    if count < 0:
        return text[len(text) + count :] if len(text) + count > 0 else text
    return text[:count]


@_fn("substr", args=3)
def _substr(start: Any, end: Any, s: Any) -> str:
    a, b, text = _int(start), _int(end), _str(s)
    if a < 0:
        return text[:b]
    if b < 0 or b > len(text):
        return text[a:]
    if a > b:
        raise TemplateError(f"slice bounds out of range [{a}:{b}]")
    return text[a:b]


@_fn("repeat", args=2)
def _repeat(n: Any, s: Any) -> str:
    count, text = _int(n), _str(s)
    if count < 0:
        raise TemplateError("negative repeat count")
    if count * len(text) > MAX_OUTPUT:
        raise TemplateError(f"result is longer than {MAX_OUTPUT} characters")
    return text * count


@_fn("quote", args=(0, None))
def _quote(*args: Any) -> str:
    return " ".join(json.dumps(_strval(a), ensure_ascii=False) for a in args if a is not None)


@_fn("indent", args=2)
def _indent(n: Any, s: Any) -> str:
    width, text = min(max(_int(n), 0), MAX_OUTPUT), _str(s)
    _bounded(len(text) + (text.count("\n") + 1) * width)
    pad = " " * width
    return pad + text.replace("\n", "\n" + pad)


def _bounded(size: int) -> None:
    """Refuse a result by its size before building it (not after: GBs for a moment)."""
    if size > MAX_OUTPUT:
        raise TemplateError(f"result is longer than {MAX_OUTPUT} characters")


@_fn("replace", args=3)
def _replace(old: Any, new: Any, s: Any) -> str:
    before, after, text = _str(old), _str(new), _str(s)
    found = len(text) + 1 if before == "" else text.count(before)
    _bounded(len(text) + found * (len(after) - len(before)))
    return text.replace(before, after)


_fn("nindent", args=2)(lambda n, s: "\n" + _indent(n, s))


def _random(alphabet: str) -> Callable[[Any], str]:
    def rand(n: Any) -> str:
        count = _int(n)
        if count > MAX_RANDOM:
            raise TemplateError(f"length {count} is above {MAX_RANDOM}")
        return "".join(secrets.choice(alphabet) for _ in range(max(count, 0)))

    return rand


_fn("randAlphaNum", args=1)(_random(string.ascii_letters + string.digits))
_fn("randAlpha", args=1)(_random(string.ascii_letters))
_fn("randNumeric", args=1)(_random(string.digits))
_fn("randAscii", args=1)(_random("".join(chr(c) for c in range(32, 127))))


@_fn("b64dec", args=1)
def _b64dec(s: Any) -> str:
    try:  # sprig answers a decoding error with the error's text
        return base64.b64decode(_str(s), validate=True).decode("utf-8", "replace")
    except ValueError:
        return "illegal base64 data"


@_fn("b32dec", args=1)
def _b32dec(s: Any) -> str:
    try:
        return base64.b32decode(_str(s)).decode("utf-8", "replace")
    except ValueError:
        return "illegal base32 data"


# conversions and math (sprig: lenient casts, int64 arithmetic)
_fn("atoi", args=1)(_atoi)
_fn("int", "int64", args=1)(_to_int64)
_fn("float64", args=1)(_to_float64)
_fn("add", args=(0, None))(lambda *a: _int64(sum(_to_int64(x) for x in a)))
_fn("add1", args=1)(lambda a: _int64(_to_int64(a) + 1))
_fn("sub", args=2)(lambda a, b: _int64(_to_int64(a) - _to_int64(b)))
_fn("max", "biggest", args=(1, None))(lambda *a: max(_to_int64(x) for x in a))
_fn("min", args=(1, None))(lambda *a: min(_to_int64(x) for x in a))
_fn("floor", args=1)(lambda a: float(math.floor(_to_float64(a))))
_fn("ceil", args=1)(lambda a: float(math.ceil(_to_float64(a))))
_fn("addf", args=(0, None))(lambda *a: math.fsum(_to_float64(x) for x in a))
_fn("add1f", args=1)(lambda a: _to_float64(a) + 1)
_fn("subf", args=(1, None))(lambda a, *v: _to_float64(a) - math.fsum(_to_float64(x) for x in v))
_fn("maxf", args=(1, None))(lambda *a: max(_to_float64(x) for x in a))
_fn("minf", args=(1, None))(lambda *a: min(_to_float64(x) for x in a))


@_fn("mul", args=(1, None))
def _mul(a: Any, *v: Any) -> int:
    product = _to_int64(a)
    for x in v:
        product = _int64(product * _to_int64(x))
    return product


@_fn("mulf", args=(1, None))
def _mulf(a: Any, *v: Any) -> float:
    product = _to_float64(a)
    for x in v:
        product *= _to_float64(x)
    return product


@_fn("div", args=2)
def _div(a: Any, b: Any) -> int:
    x, y = _to_int64(a), _to_int64(b)
    if y == 0:
        raise TemplateError("integer divide by zero")
    q = abs(x) // abs(y)
    return _int64(q if (x < 0) == (y < 0) else -q)  # Go truncates toward zero


@_fn("mod", args=2)
def _mod(a: Any, b: Any) -> int:
    x, y = _to_int64(a), _to_int64(b)
    if y == 0:
        raise TemplateError("integer divide by zero")
    return x - y * _div(x, y)


@_fn("divf", args=(1, None))
def _divf(a: Any, *v: Any) -> float:
    quotient = _to_float64(a)
    for x in v:
        divisor = _to_float64(x)
        if divisor == 0:
            raise TemplateError("float divide by zero")
        quotient /= divisor
    return quotient


@_fn("round", args=(2, 3))
def _round(a: Any, places: Any, round_on: Any = 0.5) -> float:
    power = 10.0 ** _int(places)
    digit = power * _to_float64(a)
    fraction = digit - math.trunc(digit)
    return (math.ceil(digit) if fraction >= _to_float64(round_on) else math.floor(digit)) / power


# defaults and JSON
_fn("empty", args=1)(lambda a: not _truth(a))
_fn("coalesce", args=(0, None))(lambda *a: next((x for x in a if _truth(x)), None))
_fn("ternary", args=3)(lambda yes, no, cond: yes if _truth(cond) else no)


def _or_empty(encode: Callable[[Any], str]) -> Callable[[Any], str]:
    """sprig's toJson family drops json.Marshal's error: what cannot be encoded (NaN) is ""."""

    def lenient(value: Any) -> str:
        try:
            return encode(value)
        except (ValueError, TypeError):  # NaN or infinity; what has no JSON form
            return ""

    return lenient


# Each encoder twice: the must- form fails the template on what has no JSON form, the other
# gives "" for it.
for _name, _encode in (
    ("ToJson", lambda v: _go_json(v)),
    ("ToRawJson", lambda v: _go_json(v, html=False)),
    ("ToPrettyJson", lambda v: _go_json(v, indent=2)),
):
    _fn("must" + _name, args=1)(_encode)
    _fn("to" + _name.removeprefix("To"), args=1)(_or_empty(_encode))


@_fn("default", args=(1, 2))
def _default(fallback: Any, given: Any = None) -> Any:
    return given if _truth(given) else fallback


_FROM_JSON: Final = json.JSONDecoder(parse_constant=_no_constant)  # sprig's: any float


@_fn("fromJson", args=1)
def _from_json(s: Any) -> Any:
    try:
        return _decode_json(_str(s), _FROM_JSON.decode)
    except (ValueError, RecursionError):
        return None  # sprig: the error is dropped


@_fn("mustFromJson", args=1)
def _must_from_json(s: Any) -> Any:
    try:
        return _decode_json(_str(s), _FROM_JSON.decode)
    except (ValueError, RecursionError):
        raise TemplateError("invalid JSON") from None


# paths (Go's path package: slash-separated)
def _clean(p: str) -> str:
    if not p:
        return "."
    cleaned = posixpath.normpath(p)
    return cleaned[1:] if cleaned.startswith("//") else cleaned


@_fn("base", args=1)
def _base(p: Any) -> str:
    path = _str(p)
    if not path:
        return "."
    return path.rstrip("/").rpartition("/")[2] or "/"


@_fn("dir", args=1)
def _dir(p: Any) -> str:
    head, slash, _ = _str(p).rpartition("/")
    return _clean(head or slash or ".")


@_fn("ext", args=1)
def _ext(p: Any) -> str:
    name = _str(p).rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


_fn("clean", args=1)(lambda p: _clean(_str(p)))
_fn("isAbs", args=1)(lambda p: _str(p).startswith("/"))


# lists and dicts
_fn("list", args=(0, None))(lambda *a: list(a))
_fn("first", args=1)(lambda v: (_list(v) or [None])[0])
_fn("last", args=1)(lambda v: (_list(v) or [None])[-1])
_fn("rest", args=1)(lambda v: _list(v)[1:])
_fn("initial", args=1)(lambda v: _list(v)[:-1])
_fn("reverse", args=1)(lambda v: _list(v)[::-1])
_fn("compact", args=1)(lambda v: [x for x in _list(v) if _truth(x)])
_fn("has", args=2)(lambda needle, v: needle in _list(v))
_fn("append", args=2)(lambda v, x: [*_list(v), x])
_fn("prepend", args=2)(lambda v, x: [x, *_list(v)])
_fn("without", args=(1, None))(lambda v, *omit: [x for x in _list(v) if x not in omit])
_fn("concat", args=(0, None))(lambda *lists: [x for v in lists for x in _list(v)])
_fn("sortAlpha", args=1)(lambda v: sorted(_strval(x) for x in _list(v)))
_fn("get", args=2)(lambda d, k: _map(d).get(_str(k), ""))
_fn("hasKey", args=2)(lambda d, k: _str(k) in _map(d))
_fn("keys", args=(1, None))(lambda *ds: sorted(k for d in ds for k in _map(d)))
_fn("values", args=1)(lambda d: [v for _, v in sorted(_map(d).items())])


@_fn("uniq", args=1)
def _uniq(v: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list(v):
        if x not in out:
            out.append(x)
    return out


@_fn("dict", args=(0, None))
def _dict(*pairs: Any) -> dict[str, Any]:
    items = list(pairs) + ([""] if len(pairs) % 2 else [])
    return {_strval(items[i]): items[i + 1] for i in range(0, len(items), 2)}


@_fn("splitList", args=2)
def _split_list(sep: Any, s: Any) -> list[str]:
    text, by = _str(s), _str(sep)
    return list(text) if by == "" else text.split(by)


@_fn("join", args=2)
def _join(sep: Any, v: Any) -> str:
    items = v if isinstance(v, list | tuple) else [v]
    separator, parts = _str(sep), [_strval(x) for x in items if x is not None]
    _bounded(sum(map(len, parts)) + len(separator) * max(len(parts) - 1, 0))
    return separator.join(parts)


# UUIDs
_fn("uuidv4", args=0)(lambda: str(uuid.uuid4()))


@_fn("uuidValidate", args=1)
def _uuid_validate(s: Any) -> bool:
    try:
        uuid.UUID(_str(s))
    except ValueError:
        return False
    return True


@_fn("uuidParse", args=1)
def _uuid_parse(s: Any) -> str:
    try:
        return str(uuid.UUID(_str(s)))
    except ValueError:
        raise TemplateError(f"invalid UUID {s!r}") from None


# dates (sprig; the layout is Go's reference time, "Mon Jan 2 15:04:05 MST 2006")
_fn("now", args=0, env=True)(lambda env: env.now())
_fn("date", args=2, env=True)(lambda env, layout, t: _date_in_zone(env, layout, t, "UTC"))
_fn("dateInZone", args=3, env=True)(_date_in_zone)
_fn("htmlDate", args=1, env=True)(lambda env, t: _date_in_zone(env, "2006-01-02", t, "UTC"))
_fn("htmlDateInZone", args=2, env=True)(
    lambda env, t, zone: _date_in_zone(env, "2006-01-02", t, zone)
)
_fn("unixEpoch", args=1)(lambda t: str(int(_time(t).timestamp())))


@_fn("dateModify", args=2)
def _date_modify(change: Any, t: Any) -> datetime:
    seconds = _parse_duration(_str(change))
    moment = _time(t)
    return moment if seconds is None else moment + timedelta(seconds=seconds)


# ---- the dry run's context: a client with every field set and no labels --------------------------

_EPOCH: Final = datetime(2024, 1, 1, tzinfo=UTC)
_SAMPLE_CONTEXT: Final[Mapping[str, Any]] = {
    "AuthServer": {
        "ID": "00000000-0000-4000-8000-000000000000",
        "CreatedAt": _EPOCH,
        "UpdatedAt": _EPOCH,
        "Name": "auth-server",
        "Description": "",
        "Audience": "api://default",
        "SigningAlgorithm": "RS256",
        "Labels": {},
    },
    "Client": {
        "ID": "client",
        "CreatedAt": _EPOCH,
        "UpdatedAt": _EPOCH,
        "Name": "client",
        "Labels": {},
        "GrantTypes": ["client_credentials"],
        "RedirectURIs": [],
        "LoginURI": "",
        "ResponseTypes": ["token"],
        "AllowAllScopes": False,
    },
}


def supported_functions() -> Sequence[str]:
    """The function names templates may call (for error messages and docs)."""
    return sorted(_FUNCS)
