"""Listen addresses and public URLs as the command line takes them: pure checks, no argparse.

    is_ip("::1", version=6)                           # True
    url_problem("http://id.example.com/x?q=1")        # "a query (?...) is not allowed"
    overlap(("0.0.0.0", 8000), ("127.0.0.1", 8000))   # True: both would take port 8000

cli.py turns each answer into an error that names the option.
"""

from __future__ import annotations

import re
import socket
from ipaddress import IPv4Address, IPv6Address, ip_address

# Letters, digits, "-", "_" and dots; all digits and dots is an IPv4 address or nothing.
_HOST_NAME = re.compile(r"(?![0-9.]+$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


def is_host_name(text: str) -> bool:
    return _HOST_NAME.fullmatch(text) is not None


def is_ip(text: str, *, version: int) -> bool:
    try:
        return ip_address(text).version == version
    except ValueError:
        return False


def ascii_digits(text: str) -> bool:
    # Not str.isdigit(): that takes "²", which int() refuses, and "٣", which it reads as 3.
    return re.fullmatch(r"[0-9]+", text) is not None


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a public URL (absolute http(s), a host, maybe a port and a path
    prefix; no query, fragment or user info), or None."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return "the scheme must be http or https"
    if not url.isascii() or any(char.isspace() or not char.isprintable() for char in url):
        return "it has spaces, control or non-ASCII characters (write a host name in punycode)"
    if "?" in url:
        return "a query (?...) is not allowed"
    if "#" in url:
        return "a fragment (#...) is not allowed"
    authority = rest.split("/", 1)[0]
    if "@" in authority:
        return "user info (user@) is not allowed"
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or not is_ip(host, version=6):
            return "an IPv6 host must be a valid address in brackets, e.g. http://[::1]:9000"
        if after and not after.startswith(":"):
            return f"unexpected {after!r} after the host"
        port = after[1:] if after else None
    else:
        host, colon, port_text = authority.partition(":")
        port = port_text if colon else None
        if not host:
            return "it has no host"
        if not (is_ip(host, version=4) or is_host_name(host)):
            return f"{host!r} is not a host name or address"
    if port is not None and not (ascii_digits(port) and 1 <= int(port) <= 65535):
        return f"the port must be a number from 1 to 65535, not {port!r}"
    return None


def show(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def overlap(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Same port, and the same IP address or a wildcard (0.0.0.0, ::) of the same family
    (IPv6 listeners are IPv6-only: [::]:80 and 0.0.0.0:80 do not overlap). Port 0: any free."""
    if a[1] != b[1] or a[1] == 0:
        return False
    return any(
        x.version == y.version and (x == y or x.is_unspecified or y.is_unspecified)
        for x in _addresses(a[0])
        for y in _addresses(b[0])
    )


def _addresses(host: str) -> set[IPv4Address | IPv6Address]:
    """What `host` binds to: itself if an IP address, else what it resolves to (a name that
    does not resolve fails later, when bound)."""
    try:
        return {ip_address(host)}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return set()
    found: set[IPv4Address | IPv6Address] = set()
    for *_, sockaddr in infos:
        try:
            found.add(ip_address(str(sockaddr[0])))
        except ValueError:
            continue
    return found
