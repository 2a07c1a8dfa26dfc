"""Listening sockets taken before a server starts, so that a port 0 is known at once (the URLs
that name it can be written) and a port that cannot be had is reported in the caller's words.

    sock = listening_socket(("127.0.0.1", 0))   # OSError when the address cannot be had
    print(bind_failure(exc))                    # "address already in use", ...
    print(chosen_by("--listen"))                # "--listen", or "--listen (TOKENGATE_LISTEN=...
"""

from __future__ import annotations

import os
import socket

Address = tuple[str, int]


def listening_socket(address: Address, backlog: int = 1024) -> socket.socket:
    """A non-blocking socket listening on `address` (host "" is every address)."""
    host, port = address
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Listening at once: two sockets merely bound with SO_REUSEADDR may share a port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # IPv6-only, as asyncio's create_server (and nginx) listen: [::]:9000 leaves
            # 0.0.0.0:9000 to another listener (cli.py's overlap check counts on it).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_failure(exc: OSError) -> str:
    """Why an address could not be had, in the errno's own words (asyncio's message repeats
    the address, as a tuple)."""
    if exc.errno and not isinstance(exc, socket.gaierror):  # (a gaierror's are EAI_ codes)
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc)).lower()


def env_name(flag: str) -> str:
    """The variable an option also reads: --status-listen → TOKENGATE_STATUS_LISTEN."""
    return "TOKENGATE_" + flag.lstrip("-").replace("-", "_").upper()


def chosen_by(flag: str) -> str:
    """The option to change, and its variable when that is set: one exported for one command
    (TOKENGATE_LISTEN for the gateway) also sets the same option of the others."""
    value = os.environ.get(env_name(flag))
    return flag if value is None else f"{flag} ({env_name(flag)}={value} is set)"
