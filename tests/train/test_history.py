"""MTTR / MTBI from a job's interruption history (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rayfleet.api import Interruption
from rayfleet.train.history import record_recovery, reliability

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_no_interruptions():
    r = reliability(T0, [], until=at(100))
    assert (r.interruptions, r.mttr_s, r.mtbi_s, r.uptime_s, r.downtime_s) == (0, None, None, 100, 0)


def test_not_started():
    r = reliability(None, [Interruption(at=at(5), attempt=1, reason="capacity")], until=at(100))
    assert r.uptime_s == 0 and r.mtbi_s is None and r.by_reason == {"capacity": 1}


def test_two_recovered_interruptions():
    history = [
        Interruption(at=at(100), attempt=1, reason="preempted", recovered_at=at(130), resumed_from_step=50),
        Interruption(at=at(400), attempt=2, reason="host-failure", recovered_at=at(410), resumed_from_step=200),
    ]
    r = reliability(T0, history, until=at(1000))
    assert r.interruptions == 2 and r.recovered == 2
    assert r.mttr_s == pytest.approx(20.0)          # (30 + 10) / 2
    assert r.downtime_s == pytest.approx(40.0)
    assert r.uptime_s == pytest.approx(960.0)
    assert r.mtbi_s == pytest.approx(480.0)         # 960 s running / 2 interruptions
    assert r.by_reason == {"preempted": 1, "host-failure": 1}
    assert r.as_dict()["mttrSeconds"] == pytest.approx(20.0)


def test_unrecovered_interruption_counts_as_down_until_now():
    history = [Interruption(at=at(100), attempt=1, reason="failure")]
    r = reliability(T0, history, until=at(160))
    assert r.recovered == 0 and r.mttr_s is None
    assert r.downtime_s == pytest.approx(60.0) and r.uptime_s == pytest.approx(100.0)
    assert r.mtbi_s == pytest.approx(100.0)


def test_naive_datetimes_are_utc():
    naive = datetime(2026, 1, 1)
    r = reliability(naive, [Interruption(at=naive + timedelta(seconds=10), attempt=1, reason="preempted", recovered_at=naive + timedelta(seconds=15))], until=at(20))
    assert r.mttr_s == pytest.approx(5.0) and r.uptime_s == pytest.approx(15.0)


def test_record_recovery_marks_the_latest_open_interruption():
    history = [
        Interruption(at=at(100), attempt=1, reason="preempted", recovered_at=at(130)),
        Interruption(at=at(400), attempt=2, reason="host-failure"),
    ]
    out = record_recovery(history, at(420), 200)
    assert out[0] == history[0]
    assert out[1].recovered_at == at(420) and out[1].resumed_from_step == 200
    assert history[1].recovered_at is None  # the input is not changed
    assert record_recovery(out, at(500), 300) == out  # nothing open: unchanged
