"""Kueue's documented behaviours, as scenarios (https://kueue.sigs.k8s.io/docs/concepts/):
borrowing, borrowingLimit, lendingLimit, reclaimWithinCohort, withinClusterQueue,
borrowWithinCohort thresholds, fair-sharing preemption and ordering, StrictFIFO vs BestEffortFIFO,
flavorFungibility, gangs; plus rayfleet's batch cycle."""

from __future__ import annotations

import dataclasses

import pytest
from quota_helpers import admitted_ids, config, preempted_ids, queue, waiting_ids, wl

from rayfleet.quota import (
    CohortConfig,
    FairSharingStrategy,
    FlavorFungibility,
    FlavorPreference,
    PodSet,
    PreemptionReason,
    QuotaState,
    ResourceQuota,
    Workload,
)

# ---------------------------------------------------------------- borrowing (cluster_queue.md)


def test_borrowing_uses_idle_nominal_quota_of_the_cohort():
    # team-a-cq nominal 9, team-b-cq nominal 12, cohort team-ab: with team-b idle, team-a can use 21.
    s = QuotaState(config(queue("team-a", 9, cohort="team-ab"), queue("team-b", 12, cohort="team-ab"), cohorts=("team-ab",)))
    r = s.schedule(0, [wl("a1", "team-a", 7, t=1), wl("a2", "team-a", 7, t=2), wl("a3", "team-a", 7, t=3), wl("a4", "team-a", 1, t=4)])
    assert admitted_ids(r) == ["a1", "a2", "a3"]
    assert waiting_ids(r) == ["a4"]
    assert r.admitted[0].borrowed == {}
    assert r.admitted[1].borrowed == {"cpu": 5}  # 14 used of nominal 9
    assert r.admitted[2].borrowed == {"cpu": 7}
    usage = s.queue_usage("team-a")
    assert usage.usage == {("default", "cpu"): 21}
    assert usage.borrowed == {("default", "cpu"): 12}
    assert s.queue_usage("team-b").lent == {("default", "cpu"): 12}
    w = r.waiting[0]
    assert w.blocking[0].flavor == "default" and w.blocking[0].requested == 1 and w.blocking[0].available == 0


def test_borrowing_limit_caps_borrowing():
    # team-a-cq nominal 9 with borrowingLimit 1 can use at most 10 CPUs; team-b (no limit) 21.
    s = QuotaState(
        config(queue("team-a", 9, cohort="ab", borrowing=1), queue("team-b", 12, cohort="ab"), cohorts=("ab",))
    )
    r = s.schedule(0, [wl("a1", "team-a", 9, t=1), wl("a2", "team-a", 2, t=2), wl("a3", "team-a", 1, t=3)])
    assert admitted_ids(r) == ["a1", "a3"]
    assert [w.workload_id for w in r.waiting] == ["a2"]
    assert r.waiting[0].blocking[0].available == 1
    s.release("a1")
    s.release("a3")
    s.withdraw("a2")
    r = s.schedule(1, [wl("b1", "team-b", 21)])
    assert admitted_ids(r) == ["b1"]


def test_nominal_quota_requests_go_before_borrowing_ones_in_a_cycle():
    # "If team-b-cq has pending Workloads and team-a-cq has all its nominalQuota used, Kueue
    # admits team-b-cq's Workloads before admitting any new Workloads in team-a-cq."
    s = QuotaState(config(queue("team-a", 9, cohort="ab"), queue("team-b", 12, cohort="ab"), cohorts=("ab",)))
    assert admitted_ids(s.schedule(0, [wl("a0", "team-a", 9)])) == ["a0"]
    # a1 is older and of higher priority, but would borrow; b1 fits in team-b's nominal quota.
    r = s.schedule(1, [wl("a1", "team-a", 12, prio=100, t=1), wl("b1", "team-b", 12, prio=0, t=2)])
    assert admitted_ids(r) == ["b1"]
    assert waiting_ids(r) == ["a1"]


# ---------------------------------------------------------------- lendingLimit


def test_lending_limit_bounds_what_a_queue_lends():
    # team-a lends at most 4 of its 9: team-b (12) can reach 16, and team-a keeps 5 guaranteed.
    s = QuotaState(config(queue("team-a", 9, cohort="ab", lending=4), queue("team-b", 12, cohort="ab"), cohorts=("ab",)))
    r = s.schedule(0, [wl("b1", "team-b", 12, t=1), wl("b2", "team-b", 4, t=2), wl("b3", "team-b", 1, t=3)])
    assert admitted_ids(r) == ["b1", "b2"]
    assert waiting_ids(r) == ["b3"]
    assert s.cohort_usage("ab")[("default", "cpu")] == (16, 16)  # 12 + 4 lendable
    # team-a's guaranteed 5 is there without any preemption (reclaimWithinCohort is Never).
    r = s.schedule(1, [wl("a1", "team-a", 5, t=4)])
    assert admitted_ids(r) == ["a1"] and r.preempted == []
    assert s.queue_usage("team-a").lent == {("default", "cpu"): 4}


def test_lent_quota_is_reclaimed_when_the_lender_needs_it():
    s = QuotaState(
        config(
            queue("team-a", 9, cohort="ab", lending=4, reclaim="Any"),
            queue("team-b", 12, cohort="ab"),
            cohorts=("ab",),
        )
    )
    s.schedule(0, [wl("b1", "team-b", 12, t=1), wl("b2", "team-b", 2, t=2), wl("b3", "team-b", 2, t=3)])
    assert s.queue_usage("team-b").borrowed == {("default", "cpu"): 4}
    r = s.schedule(1, [wl("a1", "team-a", 9, t=4)])
    assert admitted_ids(r) == ["a1"]
    # Only what team-a lent is taken back: the two borrowing workloads, newest first.
    assert preempted_ids(r) == ["b3", "b2"]
    assert {p.reason for p in r.preempted} == {PreemptionReason.IN_COHORT_RECLAMATION}
    assert all(p.preemptor_id == "a1" for p in r.preempted)
    assert r.admitted[0].preempted == ("b3", "b2")


# ---------------------------------------------------------------- reclaimWithinCohort


def _reclaim_setup(policy: str, low: bool = False) -> QuotaState:
    s = QuotaState(
        config(queue("a", 10, cohort="c", reclaim=policy), queue("b", 10, cohort="c"), cohorts=("c",))
    )
    # b uses its own 10 and borrows 6 of a's quota, all with high priority (or the first one low).
    s.restore(wl("b-first", "b", 10, prio=1 if low else 100), "default")
    s.restore(wl("b-borrow", "b", 6, prio=100), "default")
    return s


def test_reclaim_within_cohort_never_does_not_preempt():
    s = _reclaim_setup("Never")
    r = s.schedule(0, [wl("a1", "a", 6, prio=10)])
    assert r.admitted == [] and r.preempted == []
    assert "never preempts" in r.waiting[0].reason
    assert "cpu on default: requests 6m, 4m available" in r.waiting[0].reason


def test_reclaim_within_cohort_lower_priority_spares_higher_priority_borrowers():
    s = _reclaim_setup("LowerPriority")
    r = s.schedule(0, [wl("a1", "a", 6, prio=10)])
    assert r.admitted == [] and r.preempted == []
    assert "no admitted workload may be preempted" in r.waiting[0].reason


def test_reclaim_within_cohort_any_reclaims_the_most_recent_borrower():
    s = _reclaim_setup("Any")
    r = s.schedule(0, [wl("a1", "a", 6, prio=10)])
    assert admitted_ids(r) == ["a1"]
    assert preempted_ids(r) == ["b-borrow"]
    assert r.preempted[0].reason == PreemptionReason.IN_COHORT_RECLAMATION


def test_reclaim_takes_any_workload_of_a_borrowing_queue_lowest_priority_first():
    # Kueue does not tie borrowing to a workload: while queue b borrows, any of its workloads the
    # policy allows is a candidate, lowest priority first.
    for policy in ("LowerPriority", "Any"):
        s = _reclaim_setup(policy, low=True)
        r = s.schedule(0, [wl("a1", "a", 6, prio=10)])
        assert preempted_ids(r) == ["b-first"], policy


def test_reclaim_never_touches_a_queue_within_its_nominal_quota():
    s = QuotaState(config(queue("a", 10, cohort="c", reclaim="Any"), queue("b", 10, cohort="c"), cohorts=("c",)))
    s.restore(wl("b1", "b", 10, prio=0), "default")
    s.restore(wl("a-old", "a", 10, prio=100), "default")
    r = s.schedule(0, [wl("a1", "a", 5, prio=50)])
    assert r.preempted == [] and waiting_ids(r) == ["a1"]


# ---------------------------------------------------------------- withinClusterQueue


def test_priority_preemption_takes_as_few_and_as_low_as_possible():
    s = QuotaState(config(queue("q", 10, within="LowerPriority")))
    s.restore(wl("x", "q", 2, prio=1), "default", order=1)
    s.restore(wl("y", "q", 5, prio=1), "default", order=2)
    s.restore(wl("z", "q", 1, prio=1), "default", order=3)
    s.restore(wl("keep", "q", 2, prio=50), "default", order=4)
    r = s.schedule(0, [wl("hi", "q", 5, prio=10)])
    # Removal order: z (newest), then y: 6 free; adding z back still leaves 5: only y goes.
    assert preempted_ids(r) == ["y"]
    assert r.preempted[0].reason == PreemptionReason.IN_CLUSTER_QUEUE
    assert admitted_ids(r) == ["hi"]
    assert set(s.admitted) == {"x", "z", "keep", "hi"}


def test_victims_are_most_recently_admitted_first():
    s = QuotaState(config(queue("q", 8, within="LowerPriority")))
    for k in range(4):
        s.restore(wl(f"w{k}", "q", 2, prio=0), "default", order=k)
    r = s.schedule(0, [wl("hi", "q", 4, prio=5)])
    assert preempted_ids(r) == ["w3", "w2"]


def test_lower_priority_policy_spares_equal_priority():
    s = QuotaState(config(queue("q", 4, within="LowerPriority")))
    s.restore(wl("old", "q", 4, prio=5, t=10), "default")
    r = s.schedule(0, [wl("new", "q", 4, prio=5, t=5)])
    assert r.preempted == [] and waiting_ids(r) == ["new"]


def test_lower_or_newer_equal_priority_preempts_newer_equal_priority_only():
    s = QuotaState(config(queue("q", 4, within="LowerOrNewerEqualPriority")))
    s.restore(wl("newer", "q", 4, prio=5, t=10), "default")
    r = s.schedule(0, [wl("older", "q", 4, prio=5, t=5)])
    assert preempted_ids(r) == ["newer"] and admitted_ids(r) == ["older"]
    s2 = QuotaState(config(queue("q", 4, within="LowerOrNewerEqualPriority")))
    s2.restore(wl("older", "q", 4, prio=5, t=5), "default")
    r2 = s2.schedule(0, [wl("newer", "q", 4, prio=5, t=10)])
    assert r2.preempted == [] and waiting_ids(r2) == ["newer"]


def test_nobody_is_preempted_for_a_workload_that_would_still_not_fit():
    s = QuotaState(config(queue("q", 10, within="LowerPriority")))
    s.restore(wl("high", "q", 6, prio=100), "default")
    s.restore(wl("low", "q", 2, prio=1), "default")
    r = s.schedule(0, [wl("mid", "q", 6, prio=50)])
    assert r.preempted == [] and r.admitted == []
    w = r.waiting[0]
    assert w.could_preempt == ("low",)
    assert "would not free enough" in w.reason
    # Larger than the queue could ever hold: no preemption either, and the reason says so.
    r = s.schedule(1, [wl("huge", "q", 11, prio=1000)])
    assert r.preempted == [] and "more than the queue can ever get" in r.waiting[0].reason


# ---------------------------------------------------------------- borrowWithinCohort


def _bwc_setup(threshold: int | None, policy: str = "LowerPriority") -> QuotaState:
    s = QuotaState(
        config(
            queue("a", 4, cohort="c", reclaim="Any", bwc=policy, bwc_max=threshold),
            queue("b", 4, cohort="c"),
            queue("c", 4, cohort="c"),
            cohorts=("c",),
        )
    )
    s.restore(wl("a-own", "a", 4, prio=200), "default", order=0)
    s.restore(wl("b1", "b", 4, prio=50), "default", order=1)
    s.restore(wl("b2", "b", 4, prio=50), "default", order=2)  # b borrows c's idle 4
    return s


def test_borrow_within_cohort_preempts_lower_priority_borrowers_while_borrowing():
    s = _bwc_setup(None)
    r = s.schedule(0, [wl("a2", "a", 4, prio=200)])
    assert admitted_ids(r) == ["a2"] and r.admitted[0].borrowed == {"cpu": 4}
    assert preempted_ids(r) == ["b2"]
    assert r.preempted[0].reason == PreemptionReason.IN_COHORT_RECLAIM_WHILE_BORROWING


def test_borrow_within_cohort_respects_max_priority_threshold():
    s = _bwc_setup(40)  # only workloads with priority <= 40 may be preempted while borrowing
    r = s.schedule(0, [wl("a2", "a", 4, prio=200)])
    assert r.admitted == [] and r.preempted == []
    s = _bwc_setup(50)
    r = s.schedule(0, [wl("a2", "a", 4, prio=200)])
    assert preempted_ids(r) == ["b2"]


def test_without_borrow_within_cohort_a_borrowing_workload_cannot_reclaim():
    s = _bwc_setup(None, policy="Never")
    r = s.schedule(0, [wl("a2", "a", 4, prio=200)])
    assert r.admitted == [] and r.preempted == []


# ---------------------------------------------------------------- fair sharing


def _fair_setup(weight_b: float = 1.0, fair: bool = True) -> QuotaState:
    s = QuotaState(
        config(
            queue("a", 15, cohort="c", reclaim="Any"),
            queue("b", 10, cohort="c", weight=weight_b),
            queue("c", 10, cohort="c"),
            cohorts=("c",),
            fair=fair,
        )
    )
    for k in range(4):
        s.restore(wl(f"b{k + 1}", "b", 5, prio=0), "default", order=k)  # b borrows 10
    for k in range(3):
        s.restore(wl(f"c{k + 1}", "c", 5, prio=0), "default", order=10 + k)  # c borrows 5
    return s


def test_fair_sharing_preempts_from_the_highest_share_first():
    r = _fair_setup().schedule(0, [wl("a1", "a", 10)])
    assert admitted_ids(r) == ["a1"]
    assert preempted_ids(r) == ["b4", "b3"]
    assert {p.reason for p in r.preempted} == {PreemptionReason.IN_COHORT_FAIR_SHARING}


def test_classical_preemption_takes_the_most_recent_instead():
    r = _fair_setup(fair=False).schedule(0, [wl("a1", "a", 10)])
    assert sorted(preempted_ids(r)) == ["b4", "c3"]


def test_fair_sharing_weights_scale_the_share():
    # b's weight 4 divides its share by 4: c (borrowing less, weight 1) now has the higher share.
    r = _fair_setup(weight_b=4.0).schedule(0, [wl("a1", "a", 10)])
    assert preempted_ids(r) == ["c3", "b4"]


def test_fair_sharing_admits_lowest_share_first():
    def run(fair: bool):
        s = QuotaState(
            config(queue("a", 10, cohort="c"), queue("b", 10, cohort="c"), queue("c", 10, cohort="c"), cohorts=("c",), fair=fair)
        )
        s.restore(wl("a0", "a", 15), "default")
        s.restore(wl("b0", "b", 10), "default")
        return s.schedule(0, [wl("a1", "a", 5, t=1), wl("b1", "b", 5, t=2)])

    assert admitted_ids(run(True)) == ["b1"]  # b would borrow 5, a 10: b's share is lower
    assert admitted_ids(run(False)) == ["a1"]  # plain FIFO


@pytest.mark.parametrize("strategies, preempts", [
    (("LessThanOrEqualToFinalShare",), False),
    (("LessThanOrEqualToFinalShare", "LessThanInitialShare"), True),   # Kueue's default
    (("LessThanInitialShare",), True),
])
def test_fair_sharing_preemption_strategies(strategies, preempts):
    """a (borrowing 2 once admitted) against b (borrowing 4, 0 once preempted): a's share after
    admission is not at most b's share after the preemption (LessThanOrEqualToFinalShare refuses),
    but it is below b's share before it (LessThanInitialShare allows)."""
    cfg = dataclasses.replace(
        config(queue("a", 4, cohort="co", reclaim="Any"), queue("b", 4, cohort="co"), queue("c", 4, cohort="co"), cohorts=("co",), fair=True),
        fair_sharing_strategies=tuple(FairSharingStrategy(x) for x in strategies))
    s = QuotaState(cfg)
    assert sorted(admitted_ids(s.schedule(0, [wl("b-1", "b", 4, t=1), wl("b-2", "b", 4, t=2), wl("c-1", "c", 2, t=3)]))) == ["b-1", "b-2", "c-1"]
    r = s.schedule(1, [wl("a-1", "a", 6, t=4)])
    assert (preempted_ids(r), admitted_ids(r)) == ((["b-2"], ["a-1"]) if preempts else ([], []))


# ---------------------------------------------------------------- queueing strategies


def test_strict_fifo_blocks_behind_the_head_best_effort_skips_it():
    for strict, expected in ((True, []), (False, ["small"])):
        s = QuotaState(config(queue("q", 10, strict=strict)))
        s.restore(wl("running", "q", 6), "default")
        r = s.schedule(0, [wl("big", "q", 8, t=1), wl("small", "q", 2, t=2)])
        assert admitted_ids(r) == expected
        if strict:
            small = [w for w in r.waiting if w.workload_id == "small"][0]
            assert "StrictFIFO" in small.reason and "'big'" in small.reason and small.position == 1


def test_queue_order_is_priority_then_creation_time():
    s = QuotaState(config(queue("q", 3)))
    r = s.schedule(0, [wl("late-high", "q", 1, prio=5, t=9), wl("early", "q", 1, t=1), wl("late", "q", 1, t=5), wl("x", "q", 1, t=7)])
    assert admitted_ids(r) == ["late-high", "early", "late"]
    assert [(w.workload_id, w.position) for w in r.waiting] == [("x", 3)]


# ---------------------------------------------------------------- flavor fungibility


def _two_flavor_state(when_can_borrow: str = "Borrow", when_can_preempt: str = "TryNextFlavor") -> QuotaState:
    return QuotaState(
        config(
            queue("a", {"spot": 0, "on-demand": 8}, cohort="c", within="LowerPriority",
                  when_can_borrow=when_can_borrow, when_can_preempt=when_can_preempt),
            queue("lender", {"spot": 8, "on-demand": 0}, cohort="c"),
            cohorts=("c",),
        )
    )


def test_when_can_borrow_borrow_stops_at_the_first_flavor():
    r = _two_flavor_state("Borrow").schedule(0, [wl("w", "a", 4)])
    assert r.admitted[0].flavor == "spot" and r.admitted[0].borrowed == {"cpu": 4}


def test_when_can_borrow_try_next_flavor_prefers_no_borrowing():
    r = _two_flavor_state("TryNextFlavor").schedule(0, [wl("w", "a", 4)])
    assert r.admitted[0].flavor == "on-demand" and r.admitted[0].borrowed == {}


def test_when_can_preempt():
    def run(policy: str):
        s = QuotaState(config(queue("q", {"reserved": 4, "spot": 4}, within="LowerPriority", when_can_preempt=policy)))
        s.restore(wl("low", "q", 4, prio=0), "reserved")
        return s.schedule(0, [wl("hi", "q", 4, prio=10)])

    r = run("TryNextFlavor")  # default: look for a flavor where it fits before preempting
    assert r.admitted[0].flavor == "spot" and r.preempted == []
    r = run("Preempt")
    assert r.admitted[0].flavor == "reserved" and preempted_ids(r) == ["low"]


@pytest.mark.parametrize("preference, flavor, preempted", [
    (None, "f2", []),                                   # BorrowingOverPreemption, the default
    ("BorrowingOverPreemption", "f2", []),
    ("PreemptionOverBorrowing", "f1", ["lent"]),
])
def test_flavor_fungibility_preference(preference, flavor, preempted):
    """Both whenCanBorrow and whenCanPreempt TryNextFlavor: x's gang fits within x's nominal quota
    on f1 once it reclaims what y borrowed there, or on f2 by borrowing y's idle quota; the
    preference decides."""
    x = queue("x", {"f1": 4, "f2": 0}, cohort="co", reclaim="Any", when_can_borrow="TryNextFlavor")
    ff = FlavorFungibility("TryNextFlavor", "TryNextFlavor", *([FlavorPreference(preference)] if preference else []))
    cfg = config(dataclasses.replace(x, flavor_fungibility=ff), queue("y", {"f1": 0, "f2": 4}, cohort="co"), cohorts=("co",))
    s = QuotaState(cfg)
    assert admitted_ids(s.schedule(0, [wl("lent", "y", 4, t=1, flavors=("f1",))])) == ["lent"]
    r = s.schedule(1, [wl("x-1", "x", 2, t=2)])
    assert [(a.workload_id, a.flavor) for a in r.admitted] == [("x-1", flavor)] and preempted_ids(r) == preempted


def test_workload_flavor_restriction():
    s = QuotaState(config(queue("q", {"a100": 8, "h100": 8})))
    r = s.schedule(0, [wl("w", "q", 4, flavors=("h100",))])
    assert r.admitted[0].flavor == "h100"
    r = s.schedule(1, [wl("v", "q", 4, flavors=("tpu",))])
    assert "none of the workload's flavors" in r.waiting[0].reason


# ---------------------------------------------------------------- gangs


def test_gang_is_admitted_whole_on_one_flavor_or_not_at_all():
    s = QuotaState(config(queue("q", {"f1": 6, "f2": 6}, resource="nvidia.com/gpu")))
    gang = Workload("g", "q", (PodSet(3, {"nvidia.com/gpu": 2}), PodSet(1, {"nvidia.com/gpu": 1})))
    assert gang.total() == {"nvidia.com/gpu": 7}
    r = s.schedule(0, [gang])
    # 7 GPUs would fit across f1 and f2 together, but a gang runs on one flavor.
    assert r.admitted == [] and {b.flavor for b in r.waiting[0].blocking} == {"f1", "f2"}
    assert s.queue_usage("q").usage == {}


def test_uncovered_resource_waits_with_reason():
    s = QuotaState(config(queue("q", 8)))
    r = s.schedule(0, [Workload("w", "q", (PodSet(1, {"cpu": 1, "google.com/tpu": 4}),))])
    assert "gives no quota for google.com/tpu" in r.waiting[0].reason


def test_unknown_queue_waits_with_reason():
    s = QuotaState(config(queue("q", 8)))
    r = s.schedule(0, [wl("w", "nope", 1)])
    assert r.waiting[0].reason == "queue 'nope' does not exist"


# ---------------------------------------------------------------- batch cycle


def test_one_cycle_admits_a_whole_batch_per_queue():
    cfg = config(queue("q1", 100), queue("q2", 100))
    pending = [wl(f"{q}-{k}", q, 1, t=k) for q in ("q1", "q2") for k in range(50)]
    r = QuotaState(cfg).schedule(0, pending)
    assert len(r.admitted) == 100
    heads = QuotaState(cfg)
    r = heads.schedule(0, pending, one_head_per_queue=True)
    assert admitted_ids(r) == ["q1-0", "q2-0"] and r.more


def test_release_frees_quota():
    s = QuotaState(config(queue("q", 4)))
    s.schedule(0, [wl("a", "q", 4, t=1), wl("b", "q", 4, t=2)])
    assert list(s.admitted) == ["a"]
    s.release("a")
    r = s.schedule(1)
    assert admitted_ids(r) == ["b"]


# ---------------------------------------------------------------- hierarchical cohorts


def test_borrowing_along_a_cohort_chain_and_cohort_lending_limit():
    cohorts = (
        CohortConfig("root"),
        CohortConfig("left", parent="root"),
        CohortConfig("right", parent="root", quotas={("default", "cpu"): ResourceQuota(0, None, 2)}),
    )
    cfg = config(queue("x", 4, cohort="left"), queue("y", 6, cohort="right"), cohorts=cohorts)
    s = QuotaState(cfg)
    # right lends at most 2 of its subtree (y's 6) to root: x reaches 4 + 2.
    r = s.schedule(0, [wl("x1", "x", 6, t=1), wl("x2", "x", 1, t=2)])
    assert admitted_ids(r) == ["x1"] and waiting_ids(r) == ["x2"]
    # root: capacity 4 (left) + 2 (right's lendable part); left uses 6 of its 4, borrowing 2.
    assert s.cohort_usage("root")[("default", "cpu")] == (6, 6)
    assert s.cohort_usage("left")[("default", "cpu")] == (6, 4)
    # y keeps its guaranteed 4 even though the tree is full.
    s.submit(wl("y1", "y", 4, t=3))
    s.submit(wl("y2", "y", 1, t=4))
    r = s.schedule(1)  # x2 is still pending: schedule() without a list keeps the submitted set
    assert admitted_ids(r) == ["y1"] and sorted(waiting_ids(r)) == ["x2", "y2"]


def test_a_waits_reason_speaks_in_the_configs_units():
    """Canonical amounts (millicores, bytes) never reach the words: cores and GiB, as configs say."""
    s = QuotaState(config(queue("q", 4000), queue("m", 2**31, resource="memory")))
    r = s.schedule(0, [wl("cpu-hungry", "q", 6000), wl("mem-hungry", "m", 3 * 2**30, resource="memory")])
    reasons = {w.workload_id: (w.code, w.reason) for w in r.waiting}
    never = "insufficient quota, and the queue's preemption policy never preempts"
    assert reasons["cpu-hungry"] == ("ExceedsQuota", f"{never}; cpu on default: requests 6, more than the queue can ever get (4)")
    assert reasons["mem-hungry"] == ("ExceedsQuota", f"{never}; memory on default: requests 3Gi, more than the queue can ever get (2Gi)")
    s.schedule(1, [wl("half", "q", 3500)])
    r = s.schedule(2, [wl("more", "q", 1000)])
    assert [(w.code, w.reason) for w in r.waiting] == [("WaitingForQuota", f"{never}; cpu on default: requests 1, 500m available")]
