"""capacity.scaling: the pool autoscaler rule (scale up for pending gangs, give idle hosts back)."""

from __future__ import annotations

from typing import Any

from rayfleet.api import PoolSpec
from rayfleet.capacity.scaling import (
    IdleHost,
    PoolState,
    ScaleDecision,
    decide,
    hosts_to_release,
    hosts_to_request,
    next_release_at,
    whole_slices,
)


def pool(provisioning: dict[str, Any] | None = None, **fields: Any) -> PoolSpec:
    body: dict[str, Any] = {"machineType": "g2-standard-8", "accelerator": "nvidia-l4", "acceleratorsPerHost": 1,
                            "maxReplicas": 6, "minReplicas": 1, "idleTimeout": 600, **fields}
    if provisioning is not None:
        body["provisioning"] = provisioning
    return PoolSpec.model_validate(body)


ONDEMAND = pool()
QUEUED = pool({"mode": "dws-flex"})
RES = pool({"mode": "reservation", "reservationName": "r"})
CAL = pool({"mode": "dws-calendar", "window": {"start": "2027-03-01T00:00:00Z", "end": "2027-03-02T00:00:00Z"}})
TPU = PoolSpec.model_validate({"machineType": "ct5lp-hightpu-4t", "accelerator": "tpu-v5-lite-podslice", "acceleratorsPerHost": 4,
                               "tpuTopology": "2x4", "maxReplicas": 3, "minReplicas": 1, "idleTimeout": 60})


# ---------------------------------------------------------------- scale up

def test_request_covers_what_free_and_provisioning_hosts_do_not():
    assert hosts_to_request(ONDEMAND, PoolState(alive=2, free=1, provisioning=1), [2, 3], 0.0) == [3]
    assert hosts_to_request(ONDEMAND, PoolState(alive=2, free=2, provisioning=0), [2], 0.0) == []
    assert hosts_to_request(ONDEMAND, PoolState(alive=0, free=0, provisioning=0), [], 0.0) == []


def test_request_is_capped_at_max_hosts():
    assert hosts_to_request(ONDEMAND, PoolState(alive=4, free=0, provisioning=1), [8], 0.0) == [1]
    assert hosts_to_request(ONDEMAND, PoolState(alive=6, free=0, provisioning=0), [1], 0.0) == []


def test_multi_host_tpu_requests_whole_slices():
    assert TPU.slice_hosts == 2 and whole_slices(TPU, 3) == 4 and whole_slices(TPU, 0) == 0
    assert hosts_to_request(TPU, PoolState(alive=2, free=0, provisioning=0), [1], 0.0) == [2]
    # 4 hosts of room: a 6-host need gets two slices, not three
    assert hosts_to_request(TPU, PoolState(alive=2, free=0, provisioning=0), [6], 0.0) == [4]


def test_queued_dws_asks_once_per_gang_all_or_nothing():
    # two gangs, 2 and 3 hosts; one free host counts towards the first
    assert hosts_to_request(QUEUED, PoolState(alive=1, free=1, provisioning=0), [2, 3], 0.0) == [1, 3]
    # a gang whose hosts cannot all come asks for none; a smaller one behind it still asks
    assert hosts_to_request(QUEUED, PoolState(alive=2, free=0, provisioning=1), [4, 2], 0.0) == [2]
    # provisioning hosts belong to other gangs' requests: they do not cover these
    assert hosts_to_request(QUEUED, PoolState(alive=0, free=0, provisioning=2), [2], 0.0) == [2]


def test_no_request_outside_a_calendar_window():
    before = 1803859200.0 - 1   # 2027-02-28T23:59:59Z
    assert hosts_to_request(CAL, PoolState(alive=0, free=0, provisioning=0), [2], before) == []
    assert hosts_to_request(CAL, PoolState(alive=0, free=0, provisioning=0), [2], before + 1) == [2]


# ---------------------------------------------------------------- scale down

def idle(*pairs: tuple[str, float], slice_of: dict[str, str] | None = None) -> list[IdleHost]:
    return [IdleHost(n, t, (slice_of or {}).get(n)) for n, t in pairs]


def test_release_after_idle_timeout_longest_idle_first_down_to_min():
    hosts = idle(("a", 100.0), ("b", 50.0), ("c", 300.0))
    assert hosts_to_release(ONDEMAND, hosts, alive=3, now=650.0) == ["b"]
    assert hosts_to_release(ONDEMAND, hosts, alive=3, now=700.0) == ["b", "a"]   # c only idle 400s
    assert hosts_to_release(ONDEMAND, hosts, alive=3, now=5000.0) == ["b", "a"]  # minReplicas 1 stays
    assert hosts_to_release(ONDEMAND, hosts, alive=4, now=5000.0) == ["b", "a", "c"]  # a busy host is the one kept


def test_release_exactly_at_timeout_and_zero_timeout():
    assert hosts_to_release(ONDEMAND, idle(("a", 0.0)), alive=2, now=600.0) == ["a"]
    zero = pool(idleTimeout=0, minReplicas=0)
    assert hosts_to_release(zero, idle(("a", 10.0)), alive=1, now=10.0) == ["a"]


def test_reservation_and_calendar_never_give_hosts_back():
    hosts = idle(("a", 0.0), ("b", 0.0))
    assert hosts_to_release(RES, hosts, alive=6, now=1e9) == []
    assert hosts_to_release(CAL, hosts, alive=6, now=1e9) == []
    assert next_release_at(RES, hosts, alive=6) is None


def test_tpu_releases_whole_idle_slices_only():
    slices = {"s0-0": "s0", "s0-1": "s0", "s1-0": "s1", "s1-1": "s1", "s2-0": "s2"}
    hosts = idle(("s0-0", 0.0), ("s0-1", 30.0), ("s1-0", 5.0), ("s1-1", 5.0), ("s2-0", 0.0), slice_of=slices)
    # s2 has one host idle (its other is busy); s1 idle since 5, s0 since 30
    assert hosts_to_release(TPU, hosts, alive=6, now=70.0) == ["s1-0", "s1-1"]
    assert hosts_to_release(TPU, hosts, alive=6, now=100.0) == ["s1-0", "s1-1", "s0-0", "s0-1"]
    assert hosts_to_release(TPU, hosts, alive=4, now=100.0) == ["s1-0", "s1-1"]   # one slice (minReplicas) stays
    assert next_release_at(TPU, hosts, alive=6) == 65.0


def test_next_release_at():
    assert next_release_at(ONDEMAND, idle(("a", 100.0), ("b", 50.0)), alive=3) == 650.0
    assert next_release_at(ONDEMAND, idle(("a", 100.0)), alive=1) is None   # at minReplicas
    assert next_release_at(ONDEMAND, [], alive=3) is None


def test_decide_keeps_idle_hosts_while_a_gang_is_pending():
    hosts = idle(("a", 0.0), ("b", 0.0))
    d = decide(ONDEMAND, PoolState(alive=3, free=2, provisioning=0), [3], hosts, now=1e6)
    assert d == ScaleDecision(request=(1,), release=()) and d.requested_hosts == 1
    d = decide(ONDEMAND, PoolState(alive=3, free=2, provisioning=0), [], hosts, now=1e6)
    assert d == ScaleDecision(request=(), release=("a", "b"))
