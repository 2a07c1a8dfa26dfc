"""consumer_claims: which consumer of the file a verified token is, as Kong's plugin maps it.

    mapping = ConsumerMapping(oidc_config)     # oidc_config.consumer_claims set
    consumer = mapping.find(claims)            # Consumer, None (consumer_optional), or raises
                                               # ConsumerNotFound (403)

The first of the `consumer_claims` paths found in the token (neither missing nor false) names
the consumer, its value made a string as Kong's claims.lua makes it (a list's entries joined by
spaces, a number as Lua prints it). That name is looked up by each field of `consumer_by` in
turn, as Kong's cache.lua does: `id` only when the name is a UUID, `username` exactly and then,
with `by_username_ignore_case`, in any ASCII case (Lua's lower()), `custom_id` exactly. Two
consumers that differ only in case: the first in the file wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from tokengate.gateway.claim_values import claim_at, subject_value
from tokengate.gateway.errors import ConsumerNotFound
from tokengate.gateway.oidc_config import Consumer, OidcConfig

_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_MISSING: Final = object()
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class ConsumerMapping:
    def __init__(self, config: OidcConfig) -> None:
        self._paths = config.consumer_claims
        self._by = config.consumer_by
        self._optional = config.consumer_optional
        self._ignore_case = config.by_username_ignore_case
        self._by_id: dict[str, Consumer] = {}
        self._by_username: dict[str, Consumer] = {}
        self._by_lower_username: dict[str, Consumer] = {}
        self._by_custom_id: dict[str, Consumer] = {}
        for consumer in config.consumers:  # setdefault: the first declared wins
            if consumer.id is not None:
                self._by_id.setdefault(consumer.id, consumer)
            if consumer.username is not None:
                self._by_username.setdefault(consumer.username, consumer)
                self._by_lower_username.setdefault(_lower(consumer.username), consumer)
            if consumer.custom_id is not None:
                self._by_custom_id.setdefault(consumer.custom_id, consumer)

    def find(self, claims: Mapping[str, Any]) -> Consumer | None:
        """The consumer the token names; None when it names none and consumer_optional is on,
        else ConsumerNotFound. The refusal's detail names the claim paths, never a value."""
        for path in self._paths:
            # Kong's claims.lua: a missing claim or `false` sends it on to the next path; a
            # JSON null (cjson.null, true in Lua) stops it there, and names no consumer.
            value = claim_at(claims, path, _MISSING)
            if value is not _MISSING and value is not False:
                break
        else:
            self._not_found(f"no claim {_paths(self._paths)} to map a consumer by")
            return None
        name = subject_value(value)
        # cache.lua looks up no empty name
        consumer = self._lookup(name) if name else None
        if consumer is None:
            self._not_found(f"no consumer by {', '.join(self._by)} for claim {_paths((path,))}")
        return consumer

    def _lookup(self, name: str) -> Consumer | None:
        for field in self._by:
            if field == "id":
                found = self._by_id.get(name) if _UUID.fullmatch(name) else None
            elif field == "username":
                found = self._by_username.get(name)
                if found is None and self._ignore_case:
                    found = self._by_lower_username.get(_lower(name))
            else:
                found = self._by_custom_id.get(name)
            if found is not None:
                return found
        return None

    def _not_found(self, detail: str) -> None:
        """consumer_optional: a token that maps no consumer passes as no one's."""
        if not self._optional:
            raise ConsumerNotFound(detail)


def _lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def _paths(paths: tuple[tuple[str, ...], ...]) -> str:
    return " or ".join(".".join(path) for path in paths)


__all__ = ["ConsumerMapping"]
