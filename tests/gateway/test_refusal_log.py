"""Refusals are logged with their reason, but a flood of bad tokens cannot flood the log."""

from __future__ import annotations

import logging

import pytest

from tokengate.gateway.auth import RefusalLog
from tokengate.gateway.errors import Expired, UnknownKey


def test_refusals_are_logged_within_a_budget(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    refusals = RefusalLog(issuer="https://idp.example", per_second=3, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="tokengate.auth"):
        for _ in range(1000):
            refusals.note(UnknownKey("no key for this kid"))
        assert [r.getMessage() for r in caplog.records] == [
            "refused 401 unknown_key for https://idp.example: no key for this kid"
        ] * 3  # nothing suppressed yet: no count after them
        now[0] += 1.0  # a second on, the next window: the suppressed count comes with its line
        refusals.note(Expired("token expired"))
    assert len(caplog.records) == 4
    assert caplog.records[-1].getMessage() == (
        "refused 401 expired for https://idp.example: token expired (997 more refusals not logged)"
    )


def test_the_gateways_budget_is_five_lines_a_second(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    refusals = RefusalLog(issuer="https://idp.example", clock=lambda: now[0])  # as auth has it
    with caplog.at_level(logging.INFO, logger="tokengate.auth"):
        for _ in range(10):
            refusals.note(Expired())
        now[0] += 0.999  # still the same second
        refusals.note(Expired())
    assert len(caplog.records) == 5
