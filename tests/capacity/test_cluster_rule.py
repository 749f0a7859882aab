"""The rule for a member cluster that stops answering (capacity/clusters.py): cordoned after
unreachableAfter, drained once presumed lost after lostAfter (never an admin's cordon), and the
rule's own cordon lifted after recoverAfter of answering."""

from __future__ import annotations

from rayfleet.capacity.clusters import decide


def rule(failing_since, answering_since, auto, now, *, drained=False, lost_after=300.0):
    return decide(failing_since, answering_since, auto, unreachable_after=60.0, recover_after=120.0, now=now,
                  lost_after=lost_after, drained=drained)


def test_silent_then_cordoned_then_presumed_lost():
    assert rule(0.0, None, None, 59.0) is None
    assert rule(0.0, None, None, 60.0) == "cordon"
    assert rule(0.0, None, True, 299.0) is None
    assert rule(0.0, None, True, 300.0) == "drain"
    assert rule(0.0, None, True, 400.0, drained=True) is None          # drained already
    assert rule(0.0, None, None, 300.0) == "drain"                     # lost before the cordon was seen: drained at once


def test_an_admin_s_cordon_is_never_drained_or_lifted_and_null_never_presumes_lost():
    assert rule(0.0, None, False, 10_000.0) is None
    assert rule(None, 0.0, False, 10_000.0) is None
    assert rule(0.0, None, True, 10_000.0, lost_after=None) is None


def test_the_rule_s_cordon_or_drain_is_lifted_after_answering_for_recover_after():
    assert rule(None, 100.0, True, 219.0, drained=True) is None
    assert rule(None, 100.0, True, 220.0, drained=True) == "uncordon"
    assert rule(None, 100.0, None, 10_000.0) is None
