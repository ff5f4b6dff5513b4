"""kopf's peering rule, as the audit and the resync apply it."""

from __future__ import annotations

import datetime

from modelshield.controllers import leadership

NOW = datetime.datetime(2026, 11, 26, 2, 0, tzinfo=datetime.UTC)


def _peer(priority: int, seconds_ago: int, lifetime: int = 60) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lastseen": seen.isoformat(), "lifetime": lifetime}


def test_alone_or_without_peering_is_active() -> None:
    assert leadership.is_active(None, "me", 5, NOW)
    assert leadership.is_active({"status": {"me": _peer(5, 1)}}, "me", 5, NOW)


def test_a_live_higher_or_equal_peer_pauses() -> None:
    assert not leadership.is_active({"status": {"other": _peer(9, 1)}}, "me", 5, NOW)
    assert not leadership.is_active({"status": {"other": _peer(5, 1)}}, "me", 5, NOW)
    assert leadership.is_active({"status": {"other": _peer(4, 1)}}, "me", 5, NOW)


def test_dead_peers_do_not_count() -> None:
    assert leadership.is_active({"status": {"other": _peer(9, 120)}}, "me", 5, NOW)
    assert leadership.is_active(
        {"status": {"other": {"priority": 9, "lastseen": "garbage"}}}, "me", 5, NOW
    )


def test_a_peer_without_lastseen_counts_as_alive_as_in_kopf() -> None:
    assert not leadership.is_active({"status": {"other": {"priority": 9}}}, "me", 5, NOW)
