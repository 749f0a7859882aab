"""Quota schedules (quota by time of day / day of week) and what a shrinking quota reclaims;
configuration changes; purity of the package."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from quota_helpers import admitted_ids, config, queue, wl

from rayfleet.quota import (
    PreemptionReason,
    QuotaConfigError,
    QuotaState,
    QuotaWindow,
    ResourceQuota,
    effective_quotas,
    window_active,
)

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, tz=PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


NIGHTS = QuotaWindow(
    "nights",
    start="20:00",
    end="08:00",
    days=("mon", "tue", "wed", "thu", "fri"),
    timezone="Europe/Paris",
    quotas={("default", "cpu"): ResourceQuota(2)},
)


@pytest.mark.parametrize(
    ("when", "active"),
    [
        ("2026-03-02 19:59", False),  # Monday evening, before the start
        ("2026-03-02 20:00", True),
        ("2026-03-03 07:59", True),  # Tuesday morning: Monday's window still runs
        ("2026-03-03 08:00", False),
        ("2026-03-07 02:00", True),  # Saturday 02:00: Friday's window
        ("2026-03-07 21:00", False),  # Saturday evening: no window starts on Saturday
        ("2026-03-09 07:00", False),  # Monday 07:00: Sunday started no window
        ("2026-03-30 21:30", True),  # after the switch to summer time, still local time
    ],
)
def test_overnight_window_in_local_time(when, active):
    assert window_active(NIGHTS, at(when)) is active


def test_daytime_window_and_timezone():
    day = QuotaWindow("day", start="09:00", end="17:00", timezone="America/New_York", quotas={})
    ny = ZoneInfo("America/New_York")
    assert window_active(day, at("2026-03-04 09:00", ny))
    assert not window_active(day, at("2026-03-04 17:00", ny))
    assert not window_active(day, at("2026-03-04 09:00", PARIS))  # 03:00 in New York
    whole = QuotaWindow("all-day", start="00:00", end="00:00", days=("sun",), quotas={})
    assert window_active(whole, at("2026-03-08 13:00", ZoneInfo("UTC")))
    assert not window_active(whole, at("2026-03-09 13:00", ZoneInfo("UTC")))


def test_first_window_wins_and_limits_are_kept():
    q = queue(
        "q",
        10,
        borrowing=3,
        lending=6,
        schedule=(
            QuotaWindow("a", "00:00", "12:00", {("default", "cpu"): ResourceQuota(4)}),
            QuotaWindow("b", "06:00", "18:00", {("default", "cpu"): ResourceQuota(7, 1, None)}),
        ),
    )
    utc = ZoneInfo("UTC")
    assert effective_quotas(q, at("2026-03-04 07:00", utc))[("default", "cpu")] == ResourceQuota(4, 3, 4)  # lending capped
    assert effective_quotas(q, at("2026-03-04 13:00", utc))[("default", "cpu")] == ResourceQuota(7, 1, 6)
    assert effective_quotas(q, at("2026-03-04 19:00", utc))[("default", "cpu")] == ResourceQuota(10, 3, 6)


def test_shrinking_quota_reclaims_lowest_priority_newest_first():
    s = QuotaState(config(queue("q", 10, schedule=(NIGHTS,))), now=at("2026-03-02 12:00"))
    s.restore(wl("keep-high", "q", 2, prio=10), "default", order=0)
    s.restore(wl("old-low", "q", 4, prio=0), "default", order=1)
    s.restore(wl("new-low", "q", 4, prio=0), "default", order=2)
    assert s.tick(at("2026-03-02 13:00")) == []
    shrunk = s.tick(at("2026-03-02 20:00"))
    assert [p.victim_id for p in shrunk] == ["new-low", "old-low"]  # 2 left: only keep-high fits
    assert {p.reason for p in shrunk} == {PreemptionReason.QUOTA_SHRUNK}
    assert all(p.preemptor_id is None for p in shrunk)
    assert list(s.admitted) == ["keep-high"]
    assert s.tick(at("2026-03-02 21:00")) == []  # same windows: nothing to do
    # In the morning the quota grows back; nothing is reclaimed, and waiting work is admitted.
    r = s.schedule(at("2026-03-03 09:00"), [wl("new-low", "q", 4, t=5)])
    assert r.preempted == [] and admitted_ids(r) == ["new-low"]


def test_shrink_takes_as_few_victims_as_possible():
    s = QuotaState(config(queue("q", 10, schedule=(NIGHTS,))), now=at("2026-03-02 12:00"))
    s.restore(wl("big", "q", 6), "default", order=0)
    s.restore(wl("small", "q", 1), "default", order=1)
    s.restore(wl("mid", "q", 3), "default", order=2)
    shrunk = s.schedule(at("2026-03-02 23:00")).preempted  # schedule() applies the windows first
    # Remove mid (newest), then small, then big: 0 <= 2; adding back small and mid in turn:
    # small fits (1), mid does not (4). Victims: big and mid.
    assert sorted(p.victim_id for p in shrunk) == ["big", "mid"]
    assert list(s.admitted) == ["small"]


def test_lending_limit_window_reclaims_from_the_borrower_not_the_lender():
    lender = queue(
        "lender",
        8,
        cohort="c",
        schedule=(QuotaWindow("keep", "20:00", "08:00", {("default", "cpu"): ResourceQuota(8, None, 2)}, timezone="Europe/Paris"),),
    )
    s = QuotaState(config(lender, queue("borrower", 4, cohort="c"), cohorts=("c",)), now=at("2026-03-02 12:00"))
    s.restore(wl("lender-own", "lender", 2), "default", order=0)
    s.restore(wl("b-own", "borrower", 4), "default", order=1)
    s.restore(wl("b-borrowed-1", "borrower", 3), "default", order=2)
    s.restore(wl("b-borrowed-2", "borrower", 3), "default", order=3)
    assert s.queue_usage("borrower").borrowed == {("default", "cpu"): 6}
    shrunk = s.tick(at("2026-03-02 22:00"))  # the lender now lends at most 2
    assert [p.victim_id for p in shrunk] == ["b-borrowed-2", "b-borrowed-1"]
    assert "lender-own" in s.admitted and "b-own" in s.admitted


def test_set_config_reclaims_and_drops_removed_queues():
    s = QuotaState(config(queue("a", 8), queue("b", 8)))
    s.schedule(0, [wl("a1", "a", 4, t=1), wl("a2", "a", 4, t=2), wl("b1", "b", 8, t=3)])
    s.submit(wl("b2", "b", 1, t=4))
    out = s.set_config(config(queue("a", 4)), now=1)
    reasons = {p.victim_id: p for p in out}
    assert set(reasons) == {"a2", "b1"}
    assert "no longer exists" in reasons["b1"].message
    assert s.schedule(2).waiting[0].reason == "queue 'b' does not exist"
    with pytest.raises(QuotaConfigError):
        s.set_config(config(queue("a", 4, cohort="missing")), now=3)


def test_invalid_configs_name_the_field():
    with pytest.raises(QuotaConfigError, match="lendingLimit"):
        config(queue("q", 4, lending=5)).validate()
    with pytest.raises(QuotaConfigError, match="timezone"):
        config(queue("q", 4, schedule=(QuotaWindow("w", "01:00", "02:00", {}, timezone="Mars/Olympus"),))).validate()
    with pytest.raises(QuotaConfigError, match="start"):
        config(queue("q", 4, schedule=(QuotaWindow("w", "25:00", "02:00", {}),))).validate()
    with pytest.raises(QuotaConfigError, match="no quota for memory"):
        config(queue("q", 4, schedule=(QuotaWindow("w", "01:00", "02:00", {("default", "memory"): ResourceQuota(1)}),))).validate()


@pytest.mark.slow  # a fresh interpreter; `make contracts` checks the same imports statically
def test_quota_package_imports_no_ray_and_no_io_library():
    code = (
        "import sys, rayfleet.quota, rayfleet.quota.from_api\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('ray', 'yaml', 'httpx', 'fastapi', 'kubernetes', 'sqlite3', 'uvicorn', 'torch'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
