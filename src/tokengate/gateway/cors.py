"""Kong's `cors` plugin: its config, its preflight answer, and the headers it puts on the rest.

    config = parse_cors_config(raw, "plugins[0].config", report)   # errors name the field
    cors = Cors(config)
    if not is_cors_preflight(request.method, request.headers):
        edit = cors.answer_edit(request.headers)          # AnswerEdit | None: for its answer
    elif not config.preflight_continue:
        return cors.preflight(request.headers)            # 200, before openid-connect runs

Kong runs cors at priority 2000, before openid-connect (1050): a preflight gets its 200 without
a token, and an answer openid-connect refuses carries the CORS headers too, so a browser script
can read its 401. The rules are Kong's handler's (kong/plugins/cors/handler.lua), quirks kept:
- no origins, or only "*": `Access-Control-Allow-Origin: *`;
- one origin of plain characters (`[A-Za-z0-9.:/-]`): that origin, whatever the request's;
- otherwise the request's Origin, normalised (a default port dropped), when it equals a plain
  origin or matches a regex one; a "*" among several allows any; no match: no header at all,
  even one the upstream sent;
- a regex is anchored at both ends, and matched against the Origin's host when the regex has
  no ":" (`(.*\\.)?example\\.com`), else against `scheme://host[:port]`;
- `Vary: Origin` whenever the answer depends on the Origin; with `credentials`,
  `Access-Control-Allow-Credentials: true`, and "*" becomes the request's Origin.
Regexes are RE2's (see regex.py), where Kong's are PCRE: look-arounds and back-references are
refused when the config loads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from tokengate.gateway.config_checks import Fields, Report, at, item
from tokengate.gateway.rawresponse import SERVER
from tokengate.gateway.regex import OriginRegex, RegexError

__all__ = [
    "CORS_PLUGIN",
    "AnswerEdit",
    "Cors",
    "CorsConfig",
    "is_cors_preflight",
    "parse_cors_config",
]

CORS_PLUGIN: Final = "cors"
# Kong's schema: the methods a preflight may be told, all of them by default.
_METHODS: Final = ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT")
_FIELDS: Final = frozenset(
    {"origins", "headers", "exposed_headers", "methods", "max_age", "credentials",
     "private_network", "preflight_continue", "allow_origin_absent"}
)  # fmt: skip
# Kong reads an origin of these characters alone as a plain origin, any other as a regex.
_PLAIN: Final = re.compile(r"[A-Za-z0-9.:/-]+")
# LuaSocket's url.parse, which Kong normalises origins with: a scheme, then "//" and authority.
_SCHEME: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9+\-.]*):")
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}

_ACAO: Final = b"Access-Control-Allow-Origin"
_ACAC: Final = b"Access-Control-Allow-Credentials"
_ACEH: Final = b"Access-Control-Expose-Headers"
_VARY: Final = (b"Vary", b"Origin")
_EDITS_KEPT: Final = 1024  # answer edits kept by Origin (cleared when full: random ones cost)


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """Kong's cors config fields, with its defaults."""

    origins: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    exposed_headers: tuple[str, ...] = ()
    methods: tuple[str, ...] = _METHODS
    max_age: float | None = None
    credentials: bool = False
    private_network: bool = False
    preflight_continue: bool = False
    allow_origin_absent: bool = True


def parse_cors_config(data: Mapping[Any, Any], path: str, report: Report) -> CorsConfig | None:
    """A plugin's `config` checked as Kong's schema checks it; None when it has errors (each
    one reported at its field)."""
    before = len(report.errors)
    f = Fields(report, path, dict(data), _FIELDS)
    # Lists are kept as written, duplicates too: Kong's rules count the origins.
    origins = f.each("origins", _origin, unique=False)
    written = f.raw("origins")
    for index, origin in enumerate(written if isinstance(written, list) else ()):
        if isinstance(origin, str) and "://*." in origin:
            # Kong reads it as a regex too, where "/*" repeats the "/": it allows no subdomain.
            report.warn(
                item(at(path, "origins"), index),
                f"'{origin}' is a regular expression, as Kong reads it, where '*' repeats the "
                "character before it, so it matches no subdomain: to allow any subdomain, "
                "write for example 'https://(.+\\.)?example\\.com'",
            )
        if isinstance(origin, str) and _top_level_alternation(origin):
            # Kong appends "$" to the whole: it binds the last alternative alone.
            report.warn(
                item(at(path, "origins"), index),
                f"'{origin}' is a regular expression whose '|' is outside any group: as Kong "
                "anchors it, only its last alternative must reach the origin's end, and the "
                "others allow any longer origin that starts with them; to anchor them all, "
                f"write '({origin})'",
            )
    methods = f.each("methods", _method, unique=False) if f.given("methods") else _METHODS
    config = CorsConfig(
        origins=origins,
        headers=f.each("headers", _header_value, unique=False),
        exposed_headers=f.each("exposed_headers", _header_value, unique=False),
        methods=methods,
        max_age=f.number("max_age", None, float("-inf")),
        credentials=f.boolean("credentials", False),
        private_network=f.boolean("private_network", False),
        preflight_continue=f.boolean("preflight_continue", False),
        allow_origin_absent=f.boolean("allow_origin_absent", True),
    )
    return config if len(report.errors) == before else None


def _origin(text: str) -> str:
    if text != "*" and not _PLAIN.fullmatch(text):
        # Kong checks the origin as written ("a\\" is no regex, though "a\\$" would be), then
        # anchors it; ValueError: reported at this entry.
        _regex(text, as_written=True)
        _regex(text)
    return text


def _top_level_alternation(pattern: str) -> bool:
    """Whether `pattern` has a "|" outside every group and character class."""
    depth, in_class, escaped = 0, False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


def _header_value(text: str) -> str:
    # Written into an answer's header as it is.
    if not text.isascii() or not text.isprintable():
        raise ValueError(f"{text!r} is not printable ASCII")
    return text


def _method(text: str) -> str:
    if text not in _METHODS:
        raise ValueError(f"must be one of {', '.join(_METHODS)}, got '{text}'")
    return text


def _regex(origin: str, *, as_written: bool = False) -> OriginRegex:
    # Kong anchors the regex at the end unless it already is, and matches it from the start.
    pattern = origin if as_written or origin.endswith("$") else origin + "$"
    if pattern.startswith("^") and not as_written:
        pattern = pattern[1:]
    try:
        return OriginRegex(pattern)
    except RegexError as exc:
        raise ValueError(f"'{origin}' is not a valid origin or regex ({exc})") from None


@dataclass(frozen=True, slots=True)
class _Allowed:
    """One entry of several origins: a plain one (normalised) or a regex."""

    domain: str | None
    regex: OriginRegex | None
    by_host: bool  # a regex without ":" is matched against the host alone

    def allows(self, domain: str, host: str) -> bool:
        if self.regex is None:
            return domain == self.domain
        return self.regex.matches(host if self.by_host else domain)


@dataclass(frozen=True, slots=True)
class AnswerEdit:
    """What cors changes in an answer: header names (lower-case) taken out of it, then the
    lines added. `head` is the same lines as HTTP/1.1 header bytes."""

    drop: frozenset[bytes]
    lines: tuple[tuple[bytes, bytes], ...]

    @property
    def head(self) -> bytes:
        return b"".join(b"%b: %b\r\n" % line for line in self.lines)

    def upstream(
        self, raw_headers: list[tuple[bytes, bytes]], answer: tuple[tuple[bytes, bytes], ...]
    ) -> tuple[list[tuple[bytes, bytes]], tuple[tuple[bytes, bytes], ...]]:
        """An upstream's answer: its header lines without those cors replaces, and the lines
        to add after them (`answer`, other plugins', then cors's)."""
        kept = [line for line in raw_headers if line[0].lower() not in self.drop]
        return kept, answer + self.lines

    def apply(self, response: web.StreamResponse) -> None:
        """Edit an answer the gateway wrote itself (not yet sent)."""
        for name in self.drop:
            response.headers.popall(name.decode("ascii"), None)
        for name, value in self.lines:
            response.headers.add(name.decode("ascii"), value.decode("ascii"))


class Cors:
    """One cors plugin instance, ready to answer."""

    def __init__(self, config: CorsConfig) -> None:
        self.config = config
        origins = config.origins
        self._any = not origins or origins == ("*",)
        # One plain origin: sent as it is, whatever the request's.
        self._single = origins[0] if len(origins) == 1 and _PLAIN.fullmatch(origins[0]) else None
        self._star_listed = "*" in origins
        self._allowed = tuple(
            _Allowed(None, _regex(origin), ":" not in origin)
            if not _PLAIN.fullmatch(origin)
            else _Allowed(_normalise(origin)[0], None, False)
            for origin in origins
            if origin != "*"
        )
        methods = ",".join(config.methods).encode("ascii")
        fixed = [(b"Access-Control-Allow-Methods", methods)]
        if config.max_age is not None:
            fixed.append((b"Access-Control-Max-Age", format(config.max_age, ".14g").encode()))
        self._preflight_fixed = tuple(fixed)
        self._allow_headers = ",".join(config.headers) if config.headers else None  # "" stays
        self._expose = (
            ((_ACEH, ",".join(config.exposed_headers).encode("latin-1")),)
            if config.exposed_headers
            else ()
        )
        self._edits: dict[str | None, AnswerEdit | None] = {}  # by the request's Origin

    def preflight(self, headers: Mapping[str, str]) -> web.Response:
        """Kong's 200 to a CORS preflight: no body, the allowed origin, methods and headers."""
        origin = _visible(headers.get("Origin"))
        out: dict[str, str] = {"Server": SERVER}
        allow_all, allowed, vary = self._origin(origin)
        if allowed is not None:
            out["Access-Control-Allow-Origin"] = allowed
        if self.config.credentials:
            if not allow_all:
                out["Access-Control-Allow-Credentials"] = "true"
            elif origin is not None:
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Allow-Credentials"] = "true"
                vary = True
        if vary:
            out["Vary"] = "Origin"
        requested = _visible(headers.get("Access-Control-Request-Headers"))
        allow_headers = self._allow_headers if self._allow_headers is not None else requested
        if allow_headers is not None:
            out["Access-Control-Allow-Headers"] = allow_headers
        for name, value in self._preflight_fixed:
            out[name.decode("ascii")] = value.decode("ascii")
        if (
            self.config.private_network
            and headers.get("Access-Control-Request-Private-Network") == "true"
        ):
            out["Access-Control-Allow-Private-Network"] = "true"
        return web.Response(status=200, headers=out)

    def answer_edit(self, headers: Mapping[str, str]) -> AnswerEdit | None:
        """The CORS headers of any answer but a preflight cors answered (Kong's header_filter);
        None when there are none (no Origin, and allow_origin_absent is off). They depend on
        the Origin alone, and browsers send a few, over and over: kept by it, bounded."""
        sent = headers.get("Origin")
        try:
            return self._edits[sent]
        except KeyError:
            pass
        if len(self._edits) >= _EDITS_KEPT:
            self._edits.clear()
        edit = self._edits[sent] = self._answer_edit(sent)
        return edit

    def _answer_edit(self, sent: str | None) -> AnswerEdit | None:
        if sent is None and not self.config.allow_origin_absent:
            return None
        origin = _visible(sent)
        allow_all, allowed, vary = self._origin(origin)
        lines: list[tuple[bytes, bytes]] = []
        drop = {_ACAO.lower()}
        if vary:
            lines.append(_VARY)
        if self.config.credentials and (not allow_all or origin is not None):
            drop.add(_ACAC.lower())
            lines.append((_ACAC, b"true"))
            if allow_all:  # "*" cannot go with credentials: the request's own origin instead
                lines.append(_VARY)  # Kong adds it a second time here
                allowed = origin
        if allowed is not None:
            lines.append((_ACAO, allowed.encode("ascii")))
        if self._expose:
            drop.add(_ACEH.lower())
            lines.extend(self._expose)
        return AnswerEdit(frozenset(drop), tuple(lines))

    def _origin(self, origin: str | None) -> tuple[bool, str | None, bool]:
        """(every origin allowed, the Access-Control-Allow-Origin value or None, Vary)."""
        if self._any:
            return True, "*", False
        if self._single is not None:
            return False, self._single, True
        if origin is not None:
            if self._star_listed:
                # Kong's loop answers "*" as soon as it meets it among several origins.
                return True, "*", True
            domain, host = _normalise(origin)
            for allowed in self._allowed:
                if allowed.allows(domain, host):
                    return False, domain, True
        return False, None, True


def is_cors_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """A CORS preflight as Kong's cors tells one: OPTIONS with an Origin and the method asked
    for (openid-connect's run_on_preflight counts every OPTIONS)."""
    if method != "OPTIONS":
        return False
    return "Origin" in headers and "Access-Control-Request-Method" in headers


def _visible(value: str | None) -> str | None:
    """A header value cors may echo: visible ASCII. Browsers send no other Origin; any other
    is taken for no header at all rather than written back."""
    if value is None or not value.isascii() or not value.isprintable():
        return None
    return value


def _normalise(origin: str) -> tuple[str, str]:
    """(scheme://host[:port] without a default port, host), as Kong normalises an origin with
    LuaSocket's url.parse; an origin without a host stays as it is, for both."""
    scheme = None
    rest = origin
    found = _SCHEME.match(rest)
    if found is not None:
        scheme, rest = found.group(1), rest[found.end() :]
    if not rest.startswith("//"):
        return origin, origin
    authority = rest[2:].split("/", 1)[0]
    authority = authority.split("@", 1)[1] if "@" in authority else authority
    port = None
    colon = authority.rfind(":")
    if colon >= 0 and "]" not in authority[colon:]:
        authority, port = authority[:colon], authority[colon + 1 :]
    if not authority:
        return origin, origin
    # LuaSocket's "^%[(.+)%]$": brackets around something, else the host is as written ("[]")
    bracketed = len(authority) > 2 and authority.startswith("[") and authority.endswith("]")
    host = authority[1:-1] if bracketed else authority
    if scheme is not None and _DEFAULT_PORTS.get(scheme) == port:
        port = None
    # LuaSocket keeps an empty port ("https://a.example:"), and Kong writes it back.
    domain = f"{scheme}://" if scheme is not None else ""
    domain += host if port is None else f"{host}:{port}"
    return domain, host
