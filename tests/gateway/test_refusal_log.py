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
        assert len(caplog.records) == 3
        assert "refused 401 unknown_key for https://idp.example: no key for this kid" in (
            caplog.records[0].getMessage()
        )
        now[0] += 1.0  # a second on, the next window: the suppressed count comes with its line
        refusals.note(Expired("token expired"))
    assert len(caplog.records) == 4
    assert caplog.records[-1].getMessage().endswith("(997 more refusals not logged)")
