"""The X-Forwarded-* headers sent upstream, and the scheme a request came with.

    trusted = TrustedPeers(settings.trusted_ips)
    if trusted.trusts(request.remote):
        forwarded = Forwarded.from_trusted(request.headers, host=host, port=port, path=path)
        added = forwarded_headers(forwarded, peer, request_id)

tokengate speaks plain HTTP; TLS, when there is any, ends in a proxy in front of it. As in Kong,
the X-Forwarded-* headers a client sends are believed only from peers in `trusted_ips`: from
such a peer, X-Forwarded-Proto/-Host/-Port/-Path/-Prefix pass on and the peer is appended to
X-Forwarded-For; from anyone else they are all replaced by what the gateway saw (scheme http).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address

from multidict import CIMultiDictProxy

__all__ = ["Forwarded", "TrustedPeers", "forwarded_headers"]


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
            try:
                address = ip_address(peer.split("%", 1)[0])
            except ValueError:
                known = False
            else:
                known = any(address in network for network in self._networks)
            self._seen[peer] = known
        return known


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What the upstream is told about the request as the client made it."""

    proto: str
    host: str
    port: str
    path: str
    prefix: str | None
    chain: str | None  # X-Forwarded-For as the trusted peer sent it

    @classmethod
    def from_trusted(
        cls, headers: CIMultiDictProxy[str], *, host: str, port: str, path: str
    ) -> Forwarded:
        """The trusted peer's values where it sent them, the gateway's own elsewhere."""
        chain = ", ".join(headers.getall("X-Forwarded-For", ())) or None
        return cls(
            proto=_first(headers, "X-Forwarded-Proto", "http").lower(),
            host=_first(headers, "X-Forwarded-Host", host),
            port=_first(headers, "X-Forwarded-Port", port),
            path=_first(headers, "X-Forwarded-Path", path),
            prefix=headers.get("X-Forwarded-Prefix"),
            chain=chain,
        )


def forwarded_headers(forwarded: Forwarded, peer: str, request_id: bytes) -> bytes:
    """The gateway's header lines for a request from a trusted peer (the plain case is built
    inline on the hot path)."""
    chain = f"{forwarded.chain}, {peer}" if forwarded.chain else peer
    lines = [
        f"X-Forwarded-For: {chain}",
        f"X-Forwarded-Proto: {forwarded.proto}",
        f"X-Forwarded-Host: {forwarded.host}",
        f"X-Forwarded-Port: {forwarded.port}",
        f"X-Forwarded-Path: {forwarded.path}",
    ]
    if forwarded.prefix is not None:
        lines.append(f"X-Forwarded-Prefix: {forwarded.prefix}")
    lines.append(f"X-Real-IP: {peer}")
    # aiohttp decoded the header bytes as UTF-8 with surrogateescape: this gives them back.
    text = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    return text + b"\r\nX-Request-Id: %b\r\n" % request_id


def _first(headers: CIMultiDictProxy[str], name: str, default: str) -> str:
    value = headers.get(name)
    return default if value is None or not value.strip() else value.strip()
