"""The X-Forwarded-* headers sent upstream, and the scheme a request came with.

    trusted = TrustedPeers(settings.trusted_ips)
    if trusted.trusts(request.remote):
        forwarded = Forwarded.from_trusted(request.headers, peer=peer, host=host, port=port,
                                           path=path, prefix=match.prefix)
        added = forwarded_headers(forwarded, request_id)

tokengate speaks plain HTTP; TLS, when there is any, ends in a proxy in front of it. As in Kong
(trusted_ips, with nginx's real_ip_header X-Real-IP), the X-Forwarded-* and X-Real-IP headers a
client sends are believed only from peers in `trusted_ips` (Kong appends the peer to anyone's
X-Forwarded-For; here an untrusted client's list is dropped too): from such a peer,
X-Forwarded-Proto/-Host/-Port/-Path/-Prefix pass on as sent (the first of each, as Kong reads
them), X-Real-IP names the client it sent, and the peer is appended to its X-Forwarded-For.
From anyone else they are all replaced by what the gateway saw (scheme http). A trusted proxy
must therefore set these headers, not add to what its own clients sent. Without a trusted
X-Forwarded-Prefix, it is the path prefix a strip_path route matched and removed (Kong's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Final

from multidict import CIMultiDictProxy

__all__ = ["Forwarded", "TrustedPeers", "forwarded_headers", "host_name", "redirect_host"]

# nginx's ngx_http_validate_host, roughly: a name or address, an optional port; nothing that
# could turn a reflected host into a path, a query or another header.
_VALID_HOST: Final = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]+)(:[0-9]*)?")


def host_name(host_header: str) -> str:
    """The Host header without its port and one trailing dot, lower-cased (nginx's $host:
    ngx_http_validate_host drops the dot too)."""
    if host_header.startswith("["):
        return host_header[: host_header.find("]") + 1].lower()  # "[::1]:8000" -> "[::1]"
    name = host_header.rpartition(":")[0] if ":" in host_header else host_header
    return name.removesuffix(".").lower()


def routing_host(host_header: str) -> str | None:
    """The Host header as routes see it, or None when it names no host (the caller answers 400,
    RFC 9112 §3.2): a name or address and an optional port, no "..", and one trailing dot
    dropped, as nginx validates it (`admin.example.com.` is `admin.example.com`). `x@host` or
    `host/x` would otherwise miss a host-bound route while the upstream, reading it as a URL
    authority, served that host."""
    if not _VALID_HOST.fullmatch(host_header) or ".." in host_header:
        return None
    if host_header.startswith("["):
        return host_header
    name, colon, port = host_header.partition(":")
    if name.endswith("."):
        name = name[:-1]
        if not name:
            return None
    return name + colon + port


def redirect_host(host: str) -> str | None:
    """`host` when it is safe to put in a Location header, else None (the caller answers 400)."""
    return host if _VALID_HOST.fullmatch(host) else None


class TrustedPeers:
    """Kong's trusted_ips: address blocks whose X-Forwarded-* headers are believed."""

    def __init__(self, networks: Iterable[IPv4Network | IPv6Network]) -> None:
        self._networks = tuple(networks)
        self._seen: dict[str, bool] = {}  # peers come back: decide each address once

    def trusts(self, peer: str | None) -> bool:
        if not peer:
            return False  # a unix socket or an unknown peer
        known = self._seen.get(peer)
        if known is None:
            if len(self._seen) >= 4096:
                self._seen.clear()
            known = self._decide(peer)
            self._seen[peer] = known
        return known

    def _decide(self, peer: str) -> bool:
        try:
            address = ip_address(peer)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:10.1.2.3
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What the upstream is told about the request as the client made it."""

    proto: str
    host: str
    port: str
    path: str
    prefix: str | None
    chain: str | None  # X-Forwarded-For as the trusted peer sent it
    peer: str  # the trusted proxy's own address
    client: str  # X-Real-IP: the address the proxy names, else the proxy's

    @classmethod
    def from_trusted(
        cls,
        headers: CIMultiDictProxy[str],
        *,
        peer: str,
        host: str,
        port: str,
        path: str,
        prefix: str | None = None,
    ) -> Forwarded:
        """The trusted peer's values where it sent them, the gateway's own elsewhere."""
        chain = ", ".join(headers.getall("X-Forwarded-For", ())) or None
        return cls(
            proto=_first(headers, "X-Forwarded-Proto", "http"),
            host=_first(headers, "X-Forwarded-Host", host),
            port=_first(headers, "X-Forwarded-Port", port),
            path=_first(headers, "X-Forwarded-Path", path),
            prefix=headers.get("X-Forwarded-Prefix") or prefix,
            chain=chain,
            peer=peer,
            client=_real_ip(headers.get("X-Real-IP")) or peer,
        )


def forwarded_headers(forwarded: Forwarded, request_id: bytes) -> bytes:
    """The gateway's header lines for a request from a trusted peer (the plain case is built
    inline on the hot path)."""
    # Kong: the chain the proxy sent plus the proxy; without one, the client it names.
    chain = f"{forwarded.chain}, {forwarded.peer}" if forwarded.chain else forwarded.client
    lines = [
        f"X-Forwarded-For: {chain}",
        f"X-Forwarded-Proto: {forwarded.proto}",
        f"X-Forwarded-Host: {forwarded.host}",
        f"X-Forwarded-Port: {forwarded.port}",
        f"X-Forwarded-Path: {forwarded.path}",
    ]
    if forwarded.prefix is not None:
        lines.append(f"X-Forwarded-Prefix: {forwarded.prefix}")
    lines.append(f"X-Real-IP: {forwarded.client}")
    # aiohttp decoded the header bytes as UTF-8 with surrogateescape: this gives them back.
    text = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    return text + b"\r\nX-Request-Id: %b\r\n" % request_id


def _first(headers: CIMultiDictProxy[str], name: str, default: str) -> str:
    value = headers.get(name)
    return default if value is None or not value.strip() else value.strip()


def _real_ip(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        address = ip_address(value.strip())
    except ValueError:
        return None  # not an address: the proxy's own stands, as nginx's realip module does
    if getattr(address, "scope_id", None) is not None:
        # ip_address takes a scope id of any characters but "%" and "/" (spaces, quotes): it
        # would reach the access log and the upstream. nginx's realip knows no scope ids.
        return None
    return str(address)
