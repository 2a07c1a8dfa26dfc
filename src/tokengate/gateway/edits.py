"""What authentication changes in the request the upstream receives (and in its answer).

edits = UpstreamEdits(drop=frozenset({b"authorization"}), added=b"X-Scope: read\\r\\n")
response = await forwarder.forward(request, match, ..., edits=edits)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class UpstreamEdits:
    drop: frozenset[bytes] = frozenset()  # client header names (lower-case) not to forward
    added: bytes = b""  # header lines to add (CRLF-terminated)
    query: str | None = None  # replacement raw query (without "?"), when the token was there
    body: bytes | None = None  # replacement body, when the token was in the body
    # (name, value) headers added to the upstream's answer before it is relayed to the client
    # (downstream_headers: Kong appends them to any of the same name)
    answer: tuple[tuple[bytes, bytes], ...] = ()


NO_EDITS: Final = UpstreamEdits()
