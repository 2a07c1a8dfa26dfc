"""Building blocks for config.py: an error collector, typed field readers and value checks.

    report = Report("kong.yaml")
    fields = Fields(report, "services[0]", {"port": "80"}, known={"port"})
    fields.integer("port", 80, low=1, high=65535)
    report.errors  # ["kong.yaml: services[0].port: expected an integer, got a string"]

Readers report what is wrong and return a fallback so that the loader carries on and finds every
problem in one pass. Value checks raise ValueError(message); `Fields.each` turns that into a report.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Collection, Hashable
from typing import Any, Final, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import yaml

from tokengate.gateway.paths import KONG_RESERVED, BadPath, canonical_path, kong_router_path
from tokengate.gateway.regex import HeaderRegex, PathRegex

KONG_PROTOCOLS = frozenset(
    {"http", "https", "grpc", "grpcs", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"}
)
_HTTP_PROTOCOLS = ("http", "https")
# ASCII letters spelled out: re.IGNORECASE would let in the Kelvin sign (U+212A) as a "k".
_HOSTNAME = re.compile(r"[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*\.?")
# Kong's path typedef: RFC 3986 unreserved and sub-delims, ":", "@", "/" and percent-encoding.
_PATH = re.compile(r"/[A-Za-z0-9._~/%:@!$&'()*+,;=-]*")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_LARGEST_NUMBER = 1e15  # config numbers are seconds or milliseconds; past this, floats lose 1s
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_METHOD = re.compile(r"[A-Z]+")  # Kong's typedefs.http_method: "^%u+$"
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Kong 3 reads a pre-3.0 path as a regex unless it is made only of these characters.
_PLAIN_LEGACY_PATH = re.compile(r"[A-Za-z0-9._~/%-]*")

_T = TypeVar("_T")
_D = TypeVar("_D")

_ARTICLES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
    type(None): "null",
}


class Report:
    """Collects errors and warnings as `FILE: path.to.field: message`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.suggest = Suggestions()

    def error(self, path: str, message: str) -> None:
        self.errors.append(self._line(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(self._line(path, message))

    def _line(self, path: str, message: str) -> str:
        return f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}"


def at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _yaml11_number(value: object) -> str:
    """A hint for a number YAML 1.1 reads as text (`1e4`: an exponent wants a dot and a sign
    there), which decK's YAML 1.2 reads as a number."""
    if not isinstance(value, str) or not _EXPONENT_NUMBER.fullmatch(value):
        return ""
    number = float(value)
    if not math.isfinite(number):
        return ""
    written = f"{int(number)}" if number.is_integer() and abs(number) < 1e16 else f"{number!r}"
    return f" ('{value}' is read as text: write {written})"


_EXPONENT_NUMBER: Final = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def describe(value: object) -> str:
    return _ARTICLES.get(type(value), f"a {type(value).__name__}")


class Suggestions:
    """' (did you mean ...?)' for unknown field names that are likely typos of known ones, for
    the first few of a file only: difflib against openid-connect's 230 fields costs about
    0.3 ms a name, and a file may hold any number of unknown ones."""

    def __init__(self, budget: int = 100) -> None:
        self.left = budget

    def for_unknown(self, key: object, known: Collection[str]) -> str:
        if self.left <= 0 or not isinstance(key, str) or len(key) > _MAX_SUGGESTED_KEY:
            return ""
        self.left -= 1
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
        return f" (did you mean '{close[0]}'?)" if close else ""


_MAX_SUGGESTED_KEY: Final = 64  # longer keys are no typo of a Kong field name


class Fields:
    """Typed access to one YAML mapping found at `path`; unknown keys are reported on creation.
    A null value counts as absent, as Kong treats an explicit null as "unset"."""

    def __init__(
        self, report: Report, path: str, data: dict[Any, Any], known: Collection[str]
    ) -> None:
        self.report = report
        self.path = path
        self.data = data
        for key in data:
            if key not in known:
                meant = report.suggest.for_unknown(key, known)
                report.error(at(path, str(key)), f"unknown field{meant}")

    def given(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def error(self, key: str, message: str) -> None:
        self.report.error(at(self.path, key), message)

    def warn(self, key: str, message: str) -> None:
        self.report.warn(at(self.path, key), message)

    def missing(self, key: str, why: str = "") -> None:
        """A required field is absent, or null: `issuer:` with nothing after it (an unset
        shell variable) counts as absent, as in Kong, and the error says it is there."""
        empty = " (it is there, with no value)" if key in self.data else ""
        self.error(key, f"required field missing{why}{empty}")

    def _wrong_type(self, key: str, expected: str) -> None:
        value = self.data[key]
        self.error(key, f"expected {expected}, got {describe(value)}{_yaml11_number(value)}")

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.missing(key)
            return None
        if not isinstance(value, str):
            self._wrong_type(key, "a string")
            return None
        if not value:
            self.error(key, "must not be empty")
            return None
        return value

    def checked(self, key: str, check: Callable[[str], _T], *, required: bool = False) -> _T | None:
        """A string passed through `check` (a ValueError becomes an error at this field)."""
        text = self.string(key, required=required)
        if text is None:
            return None
        try:
            return check(text)
        except ValueError as exc:
            self.error(key, str(exc))
            return None

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self._wrong_type(key, "a boolean")
            return default
        return value

    def integer(
        self, key: str, default: int, low: int | None = None, high: int | None = None
    ) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        # bool is an int subclass in Python; `port: true` is still a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong_type(key, "an integer")
            return default
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.error(key, f"must be {bounds}, got {value}")
            return default
        return value

    def number(self, key: str, default: _D, low: float = 0, *, above: bool = False) -> float | _D:
        """A finite number (an integer is fine, a boolean is not) of at least `low`, or greater
        than `low` when `above`."""
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._wrong_type(key, "a number")
            return default
        if isinstance(value, int) and abs(value) > _LARGEST_NUMBER:
            self.error(
                key, f"must be at most {_LARGEST_NUMBER:.0e}, got a {len(str(value))}-digit number"
            )
            return default
        if not math.isfinite(value):
            self.error(key, f"must be a finite number, got {value}")
            return default
        if value < low or (above and value == low):
            bound = f"greater than {low:g}" if above else f"at least {low:g}"
            self.error(key, f"must be {bound}, got {value:g}")
            return default
        return float(value)

    def choice(self, key: str, default: str, choices: Collection[str]) -> str:
        value = self.string(key)
        if value is None:
            return default
        if value not in choices:
            self.error(key, f"must be one of {', '.join(sorted(choices))}, got '{value}'")
            return default
        return value

    def mapping(self, key: str) -> dict[Any, Any] | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, dict):
            self._wrong_type(key, "a mapping")
            return None
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        return self.each(key, lambda text: text)

    def each(
        self, key: str, check: Callable[[str], str], *, unique: bool = True
    ) -> tuple[str, ...]:
        """A list of strings, each through `check`; duplicates are warned about and dropped
        unless `unique` is false (a claim path may repeat a key; paired lists keep positions)."""
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self._wrong_type(key, "a list of strings")
            return ()
        results: list[str] = []
        seen: set[str] = set()
        for index, entry in enumerate(value):
            path = item(at(self.path, key), index)
            if not isinstance(entry, str):
                self.report.error(path, f"expected a string, got {describe(entry)}")
                continue
            try:
                checked = check(entry)
            except ValueError as exc:
                self.report.error(path, str(exc))
                continue
            if unique and checked in seen:
                self.report.warn(path, f"duplicate value '{entry}'")
            else:
                results.append(checked)
                seen.add(checked)
        return tuple(results)

    def entities(self, key: str) -> list[tuple[str, dict[Any, Any]]]:
        """A list of mappings (services, routes, plugins), each with its own path."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self._wrong_type(key, "a list")
            return []
        found = []
        for index, entry in enumerate(value):
            path = item(at(self.path, key), index)
            if isinstance(entry, dict):
                found.append((path, entry))
            else:
                self.report.error(path, f"expected a mapping, got {describe(entry)}")
        return found


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that rejects duplicate keys, as decK does. PyYAML would keep the last one,
    so a second `plugins:` key could silently drop the openid-connect plugin. libyaml parses
    when PyYAML has it (its wheels do): three times faster on a 2 MB kong.yaml."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception:
            # PyYAML's constructors meet an explicit tag on a value they cannot read (`!!bool x`,
            # `!!int ""`, `!!timestamp x`) with Python's own errors: say what, and where.
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            value = node.value if isinstance(node, yaml.ScalarNode) else "this value"
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {str(value)[:40]!r} as {tag}", node.start_mark
            ) from None

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Hashable, Any]:
        if not isinstance(node, yaml.MappingNode):
            # `!!map` / `!!set` on a list or a scalar: PyYAML's own method raises its error.
            not_a_mapping: dict[Hashable, Any] = super().construct_mapping(node, deep)
            return not_a_mapping
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` may be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a list or mapping as a key",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key '{key}'",
                    key_node.start_mark,
                )
            seen.add(key)
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep)
        return mapping

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value: int = super().construct_yaml_int(node)
        # 0x / 0o / base-60 literals of any length parse; past int64 no field means anything,
        # and past 4,300 digits Python cannot even print one in an error message.
        if not -(2**63) <= value < 2**63:
            raise yaml.constructor.ConstructorError(
                None, None, "integer out of range (beyond 64 bits)", node.start_mark
            )
        return value


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)

# What a parsed document may hold, aliases expanded: every real kong.yaml is far inside both,
# and they bound the work (and recursion) of every check that walks a value.
MAX_DEPTH: Final = 64
MAX_VALUES: Final = 2_000_000


def load_yaml(text: str) -> Any:
    """Parsed YAML, or ValueError("line 3 column 5: <problem>")."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.reader.ReaderError as exc:  # a character YAML refuses: no mark, a position
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ValueError(f"line {line} column {column}: {_reader_problem(exc)}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise ValueError(f"{where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise ValueError("invalid YAML: nested too deeply") from None
    except Exception as exc:  # PyYAML's own constructors on odd explicit tags (`!!bool x`, ...)
        raise ValueError(f"invalid YAML: {type(exc).__name__}: {exc}") from None
    _check_size(document)
    return document


def _reader_problem(exc: yaml.reader.ReaderError) -> str:
    """ReaderError's own text without its '  in "<unicode string>", position N' line."""
    return str(exc).split("\n", 1)[0]


def _check_size(document: Any) -> None:
    """ValueError for a document nested deeper than MAX_DEPTH or holding more than MAX_VALUES
    values once its aliases are expanded (an alias to itself, or an alias bomb). Iterative."""
    stack = [(document, 0)]
    count = 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ValueError(f"invalid YAML: more than {MAX_VALUES:,} values (aliases expanded)")
        if depth > MAX_DEPTH:
            raise ValueError(f"invalid YAML: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


class _Located(Protocol):
    @property
    def path(self) -> str: ...


_E = TypeVar("_E", bound=_Located)


class Registry(Generic[_E]):
    """Entities by name and by id: duplicates are errors, references resolve here."""

    def __init__(self, report: Report, kind: str) -> None:
        self.report = report
        self.kind = kind
        self.by_name: dict[str, _E] = {}
        self.by_id: dict[str, _E] = {}

    def add(self, entry: _E, name: str | None, id_: str | None) -> None:
        for key, value, index in (("name", name, self.by_name), ("id", id_, self.by_id)):
            if value is None:
                continue
            first = index.setdefault(value, entry)
            if first is not entry:
                message = f"duplicate {self.kind} {key} '{value}' (first at {first.path})"
                self.report.error(at(entry.path, key), message)

    def find(self, fields: Fields, key: str) -> _E | None:
        """`service: name-or-id`, or `service: {name: ..}` / `{id: ..}` as decK writes it."""
        value, path = fields.raw(key), at(fields.path, key)
        if isinstance(value, str):
            found = self.by_id.get(value) or self.by_name.get(value)
        elif isinstance(value, dict):
            ref = Fields(self.report, path, value, ("id", "name"))
            if ref.given("id") == ref.given("name"):
                ref.report.error(path, "expected exactly one of 'id' or 'name'")
                return None
            if (value := ref.string("id")) is not None:
                found = self.by_id.get(value)
            elif (value := ref.string("name")) is not None:
                found = self.by_name.get(value)
            else:
                return None
        else:
            article = "an" if self.kind[0] in "aeiou" else "a"
            expected = f"{article} {self.kind} name or id, or a mapping with one of them"
            self.report.error(path, f"expected {expected}, got {describe(value)}")
            return None
        if found is None:
            self.report.error(path, f"{self.kind} '{value}' not found")
        return found


# Kong's uuid typedef (utils.is_valid_uuid): 36 characters, hex digits in 8-4-4-4-12, any case.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def kong_uuid(text: str) -> str:
    """An entity's `id`: Kong refuses a file where one is not a UUID."""
    if not _UUID.fullmatch(text):
        raise ValueError(f"expected a UUID, as Kong's ids are, got '{text}'")
    return text


# Kong's utf8_name typedef (a service's or route's name, a plugin's instance_name): ASCII
# letters, digits and . - _ ~, and any character past ASCII.
_KONG_NAME = re.compile(r"[0-9A-Za-z._~\-\u0080-\U0010ffff]+")


def kong_name(text: str) -> str:
    """A name Kong's utf8_name typedef takes (its error text, the value quoted as Python does)."""
    if not _KONG_NAME.fullmatch(text):
        raise ValueError(
            f"invalid value {text!r}: the only accepted ascii characters are alphanumerics or "
            "., -, _, and ~"
        )
    return text


def http_protocol(text: str) -> str:
    if text in _HTTP_PROTOCOLS:
        return text
    if text in KONG_PROTOCOLS:
        raise ValueError(f"protocol '{text}' is not supported (tokengate speaks http and https)")
    raise ValueError(f"unknown protocol '{text}' (expected http or https)")


def kong_protocol(text: str) -> str:
    if text not in KONG_PROTOCOLS:
        raise ValueError(f"unknown protocol '{text}'")
    return text


def service_host(text: str) -> str:
    """A host name or IP address; an IPv6 literal comes back in brackets so that
    `Service.origin` stays a valid URL."""
    literal = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return f"[{ipaddress.IPv6Address(literal)}]"
    except ValueError:
        pass
    if "://" in text:
        raise ValueError(f"invalid host '{text}': expected a host name; use 'url' for a URL")
    if ("[" in text or "]" in text) and not (text.startswith("[") and "]:" in text):
        raise ValueError(
            f"invalid host '{text}': expected an IPv6 address in brackets, as in '[::1]'"
        )
    if ":" in text:
        raise ValueError(f"invalid host '{text}': set the port with 'port'")
    if len(text) > 253 or not _HOSTNAME.fullmatch(text):
        raise ValueError(f"invalid host '{text}'")
    try:
        text.encode("idna")  # as the Host header upstream is written
    except UnicodeError:
        raise ValueError(f"invalid host '{text}': a label is empty or longer than 63") from None
    return text


DEFAULT_TARGET_PORT = 8000  # Kong's, for a target written without a port


def target_address(text: str) -> tuple[str, int]:
    """A Kong target, `host`, `host:port`, `[v6]` or `[v6]:port` → (host, port); IPv6 in
    brackets, port 8000 when none is written."""
    if "://" in text or "/" in text:
        raise ValueError(f"invalid target '{text}': expected host or host:port, not a URL")
    host, port = _host_and_port(text, "target")
    return host, DEFAULT_TARGET_PORT if port is None else port


def upstream_name(text: str) -> str:
    """A Kong upstream's name: a host name (services name it as their host), no address."""
    host, port = _host_and_port(text, "name")
    if port is not None:
        raise ValueError(f"invalid name '{text}': a host name, without a port")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host
    raise ValueError(f"invalid name '{text}': a host name, not an IP address")


def host_with_optional_port(text: str) -> str:
    """`host`, `host:port`, `[v6]` or `[v6]:port` (an upstream's host_header), IPv6 in
    brackets."""
    host, port = _host_and_port(text, "host")
    return host if port is None else f"{host}:{port}"


def _host_and_port(text: str, what: str) -> tuple[str, int | None]:
    host, port = text, None
    if text.startswith("["):
        close = text.find("]")
        rest = text[close + 1 :] if close > 0 else ""
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"invalid {what} '{text}': expected [address]:port")
            host, port = text[: close + 1], _port(text, rest[1:], what)
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        port = _port(text, digits, what)
    elif ":" in text:  # a bare IPv6 address: Kong takes it whole, without a port
        host = f"[{text}]"
    if ":" in host and not _bracketed_ipv6(host):
        # (service_host's own hint, "set the port with 'port'", is for services)
        raise ValueError(f"invalid {what} '{text}': expected host, host:port or [v6]:port")
    try:
        return service_host(host), port
    except ValueError as exc:
        # "invalid target 'a b'", not "invalid target 'a b': invalid host 'a b'"
        reason = str(exc).removeprefix(f"invalid host '{text}'").removeprefix(": ")
        raise ValueError(f"invalid {what} '{text}'" + (f": {reason}" if reason else "")) from None


def _bracketed_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        return False
    return host.startswith("[") and host.endswith("]")


def _port(text: str, digits: str, what: str) -> int:
    if not (digits.isascii() and digits.isdigit()) or not 0 < int(digits) < 65536:
        raise ValueError(f"invalid {what} '{text}': the port must be 1-65535")
    return int(digits)


def service_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("must start with '/'")
    if not _PATH.fullmatch(text):
        raise ValueError(f"invalid path '{text}': characters outside of RFC 3986 found")
    if _BAD_PERCENT.search(text):
        raise ValueError(f"invalid path '{text}': bad percent-encoding")
    return text


def service_url(text: str) -> tuple[str, str, int, str | None]:
    """`scheme://host[:port][/path]` → (protocol, host, port, path)."""
    parts = urlsplit(text)
    if parts.scheme not in _HTTP_PROTOCOLS:
        raise ValueError("scheme must be http or https")
    if parts.query or parts.fragment or parts.username is not None:
        # Kong drops these silently; a user who wrote them expects them to be used.
        raise ValueError("must not contain credentials, a query string or a fragment")
    if not parts.hostname:
        raise ValueError("missing host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("invalid port") from None
    if port == 0:
        raise ValueError("invalid port")
    host = service_host(parts.hostname)
    path = service_path(parts.path) if parts.path else None
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path


def route_path(text: str) -> str:
    """A plain prefix ("/api") or a Kong 3 regex ("~" then the regex)."""
    if text.startswith("~"):
        PathRegex(text[1:])  # RegexError is a ValueError: the router compiles it the same way
        return text
    if not text.startswith("/"):
        raise ValueError("must start with '/' (or '~' for a regex)")
    service_path(text)
    try:
        canonical_path(text)  # what the router matches on: a path no request could have fails
    except BadPath as exc:
        raise ValueError(f"invalid path '{text}': {exc.reason}") from None
    normalized = _kong_normalized(text)
    if normalized != text:  # Kong's typedefs: "non-normalized path, consider use ... instead"
        hint = (
            f": consider '{normalized}'"
            if normalized
            else ": it would decode an escape of a character that is neither reserved nor "
            "unreserved (a regex path can match it)"
        )
        raise ValueError(f"non-normalized path '{text}', which Kong refuses{hint}")
    return text


def _kong_normalized(path: str) -> str:
    """A plain route path as Kong's `normalize(path, true)` leaves it: escapes of unreserved
    characters decoded, of reserved ones upper-cased, slashes merged, dot segments removed.
    "" when it would decode a character that is neither (`%20`): Kong can hold no such prefix."""
    for digits in _ESCAPE.findall(path):
        char = chr(int(digits, 16))
        if char not in KONG_RESERVED and char not in _UNRESERVED:
            return ""
    return kong_router_path(path)


def header_value(text: str) -> str:
    """A value to match, or "~*" then a case-insensitive regex (Kong 3)."""
    if text.startswith("~*"):
        HeaderRegex(text[2:])
    return text


def legacy_path_is_regex(text: str) -> bool:
    """Before format 3.0 a regex path had no "~"; Kong 3 adds it when the path is not plain."""
    return _PLAIN_LEGACY_PATH.fullmatch(text) is None


def http_method(text: str) -> str:
    if not _METHOD.fullmatch(text):
        hint = f" ({text.upper()})" if text.isalpha() and text.isascii() else ""
        raise ValueError(f"invalid method '{text}': upper-case letters only, as in Kong{hint}")
    return text


def route_host(text: str) -> str:
    """`example.com`, `*.example.com`, `example.*`, each with an optional `:port`; lower-cased."""
    if ":" in text and not text.startswith("[") and _is_ipv6_literal(text):
        return f"[{text.lower()}]"  # brackets keep the address apart from a port
    if text.startswith("[") and "]" not in text:
        raise ValueError(f"invalid host '{text}': no closing ']'")
    host, port = _split_port(text.lower())
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"invalid port in host '{text}'")
    if host.count("*") > 1:
        raise ValueError(f"invalid host '{text}': only one wildcard is allowed")
    if "*" in host and not (host.startswith("*.") or host.endswith(".*")):
        raise ValueError(f"invalid wildcard in '{text}': must be the leftmost or rightmost label")
    if host in ("*.", ".*"):
        raise ValueError(f"invalid host '{text}': a wildcard needs a name beside it")
    plain = host.replace("*", "x")
    if not (_HOSTNAME.fullmatch(plain) or _is_ipv6_literal(plain)):
        raise ValueError(f"invalid host '{text}'")
    return text.lower()


def _split_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        host, _, rest = text.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else (rest or None)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def _is_ipv6_literal(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def header_name(text: str) -> str:
    if not _HEADER_NAME.fullmatch(text):
        raise ValueError(f"invalid header name '{text}'")
    # Kong routes on the Host header only through `hosts`.
    if text.lower() == "host":
        raise ValueError("the Host header cannot be matched here; use the route's 'hosts'")
    return text.lower()
