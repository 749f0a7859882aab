"""Estimated start times (quota/estimate.py): the quota layer run forward on a copy of the state,
with the running workloads' expected ends and the waiting ones' expected run times."""

from __future__ import annotations

from datetime import UTC, datetime

from quota_helpers import config, queue, wl

from rayfleet.quota import QuotaState, QuotaWindow, ResourceQuota
from rayfleet.quota.estimate import estimate_starts
from rayfleet.quota.schedule import next_change


def _state(cfg, running, waiting, now=0.0) -> QuotaState:
    s = QuotaState(cfg, now)
    r = s.schedule(now, running)
    assert [a.workload_id for a in r.admitted] == [w.id for w in running]
    for w in waiting:
        s.submit(w)
    r = s.schedule(now)
    assert not r.admitted, "the waiting workloads must wait"
    return s


def test_a_waiting_gang_starts_when_the_running_one_ends_and_the_next_after_that():
    s = _state(config(queue("a", 4)), [wl("run", "a", 4)], [wl("w1", "a", 4, t=1), wl("w2", "a", 4, t=2)])
    est = estimate_starts(s, 100.0, ends={"run": 400.0}, runtime=lambda wid: 300.0)
    assert est["w1"].at == 400.0 and "run ends" in est["w1"].reason
    assert est["w2"].at == 700.0 and "w1 ends" in est["w2"].reason
    # the live state is not touched
    assert set(s.admitted) == {"run"} and set(s.pending) == {"w1", "w2"}


def test_an_end_already_past_counts_as_now_and_two_small_ends_admit_a_large_gang():
    s = _state(config(queue("a", 4)), [wl("r1", "a", 2), wl("r2", "a", 2)], [wl("big", "a", 4, t=1)])
    est = estimate_starts(s, 100.0, ends={"r1": 50.0, "r2": 200.0}, runtime=lambda wid: 10.0)
    assert est["big"].at == 200.0   # needs both: the later end decides
    assert "r2 ends" in est["big"].reason


def test_higher_priority_goes_first_in_the_projection():
    s = _state(config(queue("a", 4)), [wl("run", "a", 4)], [wl("low", "a", 4, t=1), wl("high", "a", 4, prio=10, t=2)])
    est = estimate_starts(s, 0.0, ends={"run": 100.0}, runtime=lambda wid: 50.0)
    assert est["high"].at == 100.0 and est["low"].at == 150.0


def test_borrowing_from_an_idle_cohort_member_counts():
    cfg = config(queue("a", 2, cohort="c"), queue("b", 2, cohort="c"), cohorts=("c",))
    s = _state(cfg, [wl("ra", "a", 2, t=0), wl("rb", "b", 2, t=0)], [wl("w", "a", 4, t=1)])
    est = estimate_starts(s, 0.0, ends={"ra": 100.0, "rb": 300.0}, runtime=lambda wid: 10.0)
    assert est["w"].at == 300.0   # a's 2 plus b's 2, borrowed once rb ends


def test_a_gang_behind_a_workload_with_no_expected_end_gets_a_reason_not_a_time():
    s = _state(config(queue("a", 4)), [wl("svc", "a", 4)], [wl("w", "a", 2, t=1)])
    est = estimate_starts(s, 0.0, ends={}, runtime=lambda wid: 10.0)
    assert est["w"].at is None
    assert "no expected end" in est["w"].reason and "svc" in est["w"].reason


def test_more_than_the_queue_can_ever_get_has_no_estimate():
    s = _state(config(queue("a", 4)), [wl("r", "a", 1)], [wl("huge", "a", 8, t=1)])
    est = estimate_starts(s, 0.0, ends={"r": 10.0}, runtime=lambda wid: 10.0)
    assert est["huge"].at is None and "would free enough quota" in est["huge"].reason


def test_a_waiting_gang_with_an_unknown_run_time_holds_up_those_behind_it():
    s = _state(config(queue("a", 4, strict=True)), [wl("r", "a", 4)], [wl("w1", "a", 4, t=1), wl("w2", "a", 4, t=2)])
    est = estimate_starts(s, 0.0, ends={"r": 10.0}, runtime=lambda wid: None if wid == "w1" else 5.0)
    assert est["w1"].at == 10.0
    assert est["w2"].at is None and "w1" in est["w2"].reason


def test_a_quota_window_opening_is_a_start():
    # quota 0 by day, 4 at night (20:00-08:00 UTC)
    night = QuotaWindow("night", "20:00", "08:00", {("default", "cpu"): ResourceQuota(4)})
    now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC).timestamp()
    s = _state(config(queue("a", 0, schedule=(night,))), [], [wl("w", "a", 4, t=1)], now=now)
    est = estimate_starts(s, now, ends={}, runtime=lambda wid: 3600.0)
    assert est["w"].at == datetime(2026, 12, 4, 20, 0, tzinfo=UTC).timestamp()
    assert "quota schedule" in est["w"].reason


def test_a_reclaim_in_the_projection_sends_the_victim_back_to_wait_and_behind_it_waits_longer():
    # quota 4, none at lunch (12:00-13:00 UTC): w starts at 11:00 when r ends, is reclaimed at
    # 12:00 and starts again at 13:00; w2 (behind it) gets the quota once w's run after 13:00 ends
    lunch = QuotaWindow("lunch", "12:00", "13:00", {("default", "cpu"): ResourceQuota(0)})
    day = datetime(2026, 12, 4, tzinfo=UTC).timestamp()
    now = day + 10 * 3600
    s = _state(config(queue("a", 4, schedule=(lunch,))), [wl("r", "a", 4)], [wl("w", "a", 4, t=1), wl("w2", "a", 4, t=2)], now=now)
    est = estimate_starts(s, now, ends={"r": day + 11 * 3600}, runtime=lambda wid: 2 * 3600.0)
    assert est["w"].at == day + 11 * 3600
    assert est["w2"].at == day + 15 * 3600


def test_ends_close_together_are_taken_in_one_cycle_and_the_cycles_are_bounded():
    running = [wl(f"r{k}", "a", 1, t=k) for k in range(64)]
    waiting = [wl(f"w{k}", "a", 1, t=100 + k) for k in range(64)]
    s = _state(config(queue("a", 64)), running, waiting)
    ends = {f"r{k}": 1000.0 + k * 0.01 for k in range(64)}
    est = estimate_starts(s, 0.0, ends=ends, runtime=lambda wid: 10.0, max_cycles=4)
    # one cycle at the last end of the bunch (1000.63) admits all 64
    assert {e.at for e in est.values()} == {1000.0 + 63 * 0.01}


def test_cycle_limit_leaves_a_reason():
    s = _state(config(queue("a", 1)), [wl("r", "a", 1)], [wl(f"w{k}", "a", 1, t=k + 1) for k in range(5)])
    est = estimate_starts(s, 0.0, ends={"r": 10.0}, runtime=lambda wid: 10.0, max_cycles=3)
    assert [est[f"w{k}"].at for k in range(2)] == [10.0, 20.0]
    assert est["w4"].at is None and "not within the projection" in est["w4"].reason


def test_next_change_finds_window_edges_and_skips_days_it_does_not_apply():
    w = QuotaWindow("weeknights", "20:00", "08:00", {}, days=("mon", "tue", "wed", "thu", "fri"))
    cfg = config(queue("a", 1, schedule=(w,)))
    t = datetime(2026, 12, 4, 10, 0, tzinfo=UTC).timestamp()   # a Friday
    seen = []
    for _ in range(3):
        t = next_change(cfg, t)
        seen.append(datetime.fromtimestamp(t, tz=UTC).strftime("%a %H:%M"))
    assert seen == ["Fri 20:00", "Sat 08:00", "Mon 20:00"]
    assert next_change(config(queue("a", 1)), t) is None


def test_the_reason_names_only_workloads_of_the_waiting_ones_own_queue():
    cfg = config(queue("a", 2, cohort="c"), queue("b", 2, cohort="c"), cohorts=("c",))
    s = _state(cfg, [wl("mine", "a", 2, t=0), wl("theirs", "b", 2, t=0)], [wl("w", "a", 4, t=1)])
    est = estimate_starts(s, 0.0, ends={"mine": 100.0, "theirs": 100.0}, runtime=lambda wid: 10.0)
    assert est["w"].reason == "when mine and 1 workload of other queues end"
    s2 = _state(cfg, [wl("theirs", "b", 4, t=0)], [wl("w", "a", 2, t=1)])
    assert "theirs" not in estimate_starts(s2, 0.0, ends={}, runtime=lambda wid: 10.0)["w"].reason


def test_once_nothing_ends_a_week_of_schedule_changes_without_an_admission_ends_the_projection():
    # quota 0 by day, 2 at night: a 4-GPU gang never fits; a weekly window (Sundays only, first: it wins) still counts
    night = QuotaWindow("night", "20:00", "08:00", {("default", "cpu"): ResourceQuota(2)})
    sunday = QuotaWindow("sunday", "00:00", "23:59", {("default", "cpu"): ResourceQuota(4)}, days=("sun",))
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()   # a Monday
    never = _state(config(queue("a", 0, schedule=(night,))), [], [wl("w", "a", 4, t=1)], now=now)
    est = estimate_starts(never, now, ends={}, runtime=lambda wid: 3600.0)
    # not "beyond the projection": the schedules went round their week and nothing could admit it
    assert est["w"].at is None and "would free enough quota" in est["w"].reason
    weekly = _state(config(queue("a", 0, schedule=(sunday, night))), [], [wl("w", "a", 4, t=1)], now=now)
    est = estimate_starts(weekly, now, ends={}, runtime=lambda wid: 3600.0)
    assert est["w"].at == datetime(2026, 12, 13, 0, 0, tzinfo=UTC).timestamp()
