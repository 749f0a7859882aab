"""capacity.provisioning: each provisioning mode's documented GKE semantics, on given times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from rayfleet.api import PoolSpec
from rayfleet.capacity import provisioning as pv
from rayfleet.capacity.provisioning import ProvisioningMode

START = datetime(2027, 3, 1, 8, 0, tzinfo=UTC).timestamp()
END = datetime(2027, 3, 3, 8, 0, tzinfo=UTC).timestamp()


def pool(provisioning: dict[str, Any] | None = None, **fields: Any) -> PoolSpec:
    body: dict[str, Any] = {"machineType": "g2-standard-8", "accelerator": "nvidia-l4", "acceleratorsPerHost": 1,
                            "maxReplicas": 4, "pricePerHostHour": 1.2, **fields}
    if provisioning is not None:
        body["provisioning"] = provisioning
    return PoolSpec.model_validate(body)


RES = pool({"mode": "reservation", "reservationName": "l4-res"})
RES_ANY = pool({"mode": "reservation", "affinity": "any"})
QUEUED = pool({"mode": "dws-flex", "maxRunDuration": "1d", "nodeRecyclingLeadTime": "1h"})
NON_QUEUED = pool({"mode": "dws-flex", "queued": False, "maxRunDuration": 7200})
CAL = pool({"mode": "dws-calendar", "window": {"start": "2027-03-01T08:00:00Z", "end": "2027-03-03T08:00:00Z"}, "drainBefore": "30m"})
SPOT = pool({"mode": "spot", "reclaimNotice": 25})
ONDEMAND = pool()


def test_mode_of_every_mode():
    assert [pv.mode_of(s) for s in (RES, RES_ANY, QUEUED, NON_QUEUED, CAL, SPOT, ONDEMAND)] == [
        ProvisioningMode.RESERVATION, ProvisioningMode.RESERVATION, ProvisioningMode.DWS_QUEUED,
        ProvisioningMode.DWS_NON_QUEUED, ProvisioningMode.DWS_CALENDAR, ProvisioningMode.SPOT, ProvisioningMode.ON_DEMAND]


def test_calendar_window_bounds_open_and_drain():
    assert pv.window_bounds(CAL) == (START, END)
    assert not pv.window_open(CAL, START - 1)
    assert pv.window_open(CAL, START) and pv.window_open(CAL, END - 0.001)
    assert not pv.window_open(CAL, END)
    assert pv.drain_at(CAL) == END - 1800
    assert pv.time_left(CAL, START) == END - START
    assert pv.time_left(CAL, END + 5) == 0.0
    assert pv.host_expires_at(CAL, START + 10) == END
    # other modes have no window: always open, no drain, no end
    for s in (RES, QUEUED, SPOT, ONDEMAND):
        assert pv.window_bounds(s) is None and pv.window_open(s, 0.0) and pv.drain_at(s) is None and pv.time_left(s, 0.0) is None


def test_window_without_zone_is_utc_and_drain_never_before_start():
    short = pool({"mode": "dws-calendar", "window": {"start": "2027-03-01T08:00:00", "end": "2027-03-01T08:05:00"}, "drainBefore": "1h"})
    assert pv.window_bounds(short) == (START, START + 300)
    assert pv.drain_at(short) == START


def test_dws_host_lifetime_recycle_and_expiry():
    assert pv.host_lifetime(QUEUED) == 86400 and pv.host_lifetime(NON_QUEUED) == 7200
    assert pv.host_expires_at(QUEUED, 100.0) == 86500.0
    assert pv.recycle_at(QUEUED, 100.0) == 100.0 + 86400 - 3600
    assert pv.recycle_at(NON_QUEUED, 100.0) is None          # no lead time: no replacement
    long_lead = pool({"mode": "dws-flex", "maxRunDuration": 600, "nodeRecyclingLeadTime": 900})
    assert pv.recycle_at(long_lead, 50.0) == 50.0           # never before the host came up
    for s in (RES, CAL, SPOT, ONDEMAND):
        assert pv.host_lifetime(s) is None and pv.recycle_at(s, 0.0) is None
    for s in (RES, SPOT, ONDEMAND):
        assert pv.host_expires_at(s, 0.0) is None


def test_default_dws_lifetime_is_seven_days():
    assert pv.host_lifetime(pool({"mode": "dws-flex"})) == 7 * 86400


def test_reclaim_notice_only_for_spot():
    assert pv.reclaim_notice(SPOT) == 25
    assert pv.reclaim_notice(pool({"mode": "spot"})) == 30
    for s in (RES, QUEUED, NON_QUEUED, CAL, ONDEMAND):
        assert pv.reclaim_notice(s) is None


def test_request_semantics_by_mode():
    assert [pv.all_or_nothing(s) for s in (RES, QUEUED, NON_QUEUED, CAL, SPOT, ONDEMAND)] == [False, True, False, False, False, False]
    assert [pv.fails_fast_on_stockout(s) for s in (RES, QUEUED, NON_QUEUED, CAL, SPOT, ONDEMAND)] == [False, False, True, False, False, False]


def test_paid_for_capacity_keeps_its_hosts():
    assert [pv.scales_down(s) for s in (RES, RES_ANY, QUEUED, NON_QUEUED, CAL, SPOT, ONDEMAND)] == [False, False, True, True, False, True, True]
    assert pv.starts_full(RES) and pv.starts_full(CAL) and not pv.starts_full(SPOT)
    assert pv.pays_when_idle(RES) and not pv.pays_when_idle(ONDEMAND)


@pytest.mark.parametrize("spec", [RES, QUEUED, CAL, SPOT, ONDEMAND])
def test_price_is_the_pools_rate(spec):
    assert pv.price_per_host_hour(spec) == 1.2
    assert pv.host_cost(spec, 1800) == pytest.approx(0.6)
    assert pv.host_cost(spec, -5) == 0.0
