"""When a leader-worker group leaves a draining host (pure rules of rayfleet.serve.group_drain)."""

from __future__ import annotations

from rayfleet.serve.group_drain import (
    NO_DEADLINE,
    Member,
    NodeRoom,
    draining_deadlines,
    retire_reason,
    room_for_group,
)

LEADER, WORKER = Member(0, "n-a", "l4-0"), Member(1, "n-b", "l4-1")
GROUP = [LEADER, WORKER]
POOL = {"rayfleet.io/pool": "l4"}
YES, NO = (lambda: True), (lambda: False)


def never_asked() -> bool:
    raise AssertionError("room asked for though it cannot change the answer")


BUNDLE = {"GPU": 1.0, "CPU": 0.1, "accelerator_type:L4": 0.001}


def node(node_id: str, gpus: float, pool: str = "l4") -> NodeRoom:
    return NodeRoom(node_id, {"rayfleet.io/pool": pool}, {"GPU": gpus, "CPU": 8.0, "accelerator_type:L4": 1.0})


def test_gcs_deadlines_in_ms_become_seconds_and_zero_means_none():
    assert draining_deadlines({"n-a": 1_700_000_000_500, "n-b": 0}) == {"n-a": 1_700_000_000.5, "n-b": NO_DEADLINE}


def test_a_draining_leader_is_left_to_serve_and_an_untouched_group_stays():
    assert retire_reason(100.0, GROUP, {"n-a": 130.0}, room_elsewhere=never_asked, lead_s=20) is None   # Serve moves it
    assert retire_reason(100.0, GROUP, {"n-a": 130.0, "n-b": 130.0}, room_elsewhere=never_asked, lead_s=20) is None
    assert retire_reason(100.0, GROUP, {"n-z": 130.0}, room_elsewhere=never_asked, lead_s=20) is None
    assert retire_reason(100.0, [], {"n-b": 130.0}, room_elsewhere=never_asked, lead_s=20) is None


def test_a_draining_worker_retires_the_group_when_a_replacement_fits_or_its_host_is_cordoned():
    why = retire_reason(100.0, GROUP, {"n-b": 160.0}, room_elsewhere=YES, lead_s=20)
    assert why is not None and "rank 1" in why and "l4-1" in why and "60s left" in why
    cordoned = retire_reason(100.0, GROUP, {"n-b": NO_DEADLINE}, room_elsewhere=never_asked, lead_s=20)
    assert cordoned is not None and "cordoned" in cordoned


def test_without_room_the_group_serves_until_the_lead_time_before_the_deadline():
    assert retire_reason(100.0, GROUP, {"n-b": 160.0}, room_elsewhere=NO, lead_s=20) is None
    assert retire_reason(139.9, GROUP, {"n-b": 160.0}, room_elsewhere=NO, lead_s=20) is None
    late = retire_reason(140.0, GROUP, {"n-b": 160.0}, room_elsewhere=NO, lead_s=20)
    assert late is not None and "goes in 20s" in late


def test_room_needs_one_free_node_per_bundle_in_the_pool_and_not_draining():
    bundles = [BUNDLE, BUNDLE]
    nodes = [node("n-a", 0), node("n-b", 0), node("n-c", 1), node("n-d", 1)]
    assert room_for_group(bundles, nodes, POOL, {"n-b": 160.0})
    assert not room_for_group(bundles, nodes, POOL, {"n-d": 160.0})                 # one free host left
    assert not room_for_group(bundles, nodes[:3] + [node("n-d", 1, pool="t4")], POOL, {})  # another pool's
    assert not room_for_group(bundles, [node("n-c", 2)], POOL, {})                   # one node, two bundles


def tpu(node_id: str, slice_id: str, tpus: float = 4.0) -> NodeRoom:
    return NodeRoom(node_id, {"rayfleet.io/pool": "v5e", "rayfleet.io/tpu-slice": slice_id}, {"TPU": tpus, "CPU": 8.0})


def test_a_tpu_group_needs_one_other_whole_slice_none_of_whose_hosts_drains():
    bundles = [{"TPU": 4.0, "CPU": 1.0}] * 2
    pool = {"rayfleet.io/pool": "v5e"}
    busy = [tpu("s0-a", "s0", 0), tpu("s0-b", "s0", 0)]                    # the group's own slice
    split = [tpu("s1-a", "s1"), tpu("s1-b", "s1", 0), tpu("s2-a", "s2"), tpu("s2-b", "s2", 0)]
    assert room_for_group(bundles, split, pool, {}) is True                  # hosts free, on two slices
    assert not room_for_group(bundles, busy + split, pool, {"s0-b": 160.0}, together_by="rayfleet.io/tpu-slice")
    whole = [tpu("s3-a", "s3"), tpu("s3-b", "s3")]
    assert room_for_group(bundles, busy + split + whole, pool, {"s0-b": 160.0}, together_by="rayfleet.io/tpu-slice")
    assert not room_for_group(bundles, busy + whole, pool, {"s3-a": 160.0}, together_by="rayfleet.io/tpu-slice")
