"""What each pool's provisioning mode gives, when it takes hosts back, and what an hour costs.

One model of GKE's provisioning modes (``api/pool.py``), shared by the simulated, local and KubeRay
backends and by the controller, so a mode behaves the same everywhere:

- **reservation**: a Compute Engine reservation (a named one, or any of the machine type) holds a
  fixed number of hosts (the pool's ``maxReplicas``), there from the start and paid for whether
  used or not, so the autoscaler never gives them back.
- **dws-flex-queued**: DWS flex-start with queued provisioning (a ProvisioningRequest,
  ``queued-provisioning.gke.io``): the whole gang's hosts are one request, provisioned together
  after a wait or not at all. Once there they are not preempted, and live at most
  ``maxRunDuration`` (7 days at most); then GKE removes them. With ``nodeRecyclingLeadTime`` a
  replacement is asked for that long before the end.
- **dws-flex-non-queued**: DWS flex-start without queueing: hosts now, or a stockout answer now
  (the request fails at once instead of waiting); the same run-time limit.
- **dws-calendar**: DWS calendar mode: capacity booked for a window (start, end; 1 to 90 days).
  No host exists before the window opens; at its end every host goes. Running work is drained
  ``drainBefore`` ahead of the end. Booked capacity is paid for the whole window.
- **spot**: Spot VMs: reclaimable at any time with a short notice (GCE gives 30 s,
  ``reclaimNotice``).
- **on-demand**: there unless the zone is out of that machine type (a stockout, which waits).

Pure: no I/O, no clock of its own (times are epoch seconds passed in).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from ..api import PoolSpec
from ..api.pool import (
    DwsCalendarProvisioning,
    DwsFlexProvisioning,
    OnDemandProvisioning,
    ReservationProvisioning,
    SpotProvisioning,
)


class ProvisioningMode(StrEnum):
    RESERVATION = "reservation"
    DWS_QUEUED = "dws-flex-queued"
    DWS_NON_QUEUED = "dws-flex-non-queued"
    DWS_CALENDAR = "dws-calendar"
    SPOT = "spot"
    ON_DEMAND = "on-demand"


def mode_of(spec: PoolSpec) -> ProvisioningMode:
    """The pool's provisioning mode (dws-flex split into queued and non-queued)."""
    prov = spec.provisioning
    if isinstance(prov, ReservationProvisioning):
        return ProvisioningMode.RESERVATION
    if isinstance(prov, DwsFlexProvisioning):
        return ProvisioningMode.DWS_QUEUED if prov.queued else ProvisioningMode.DWS_NON_QUEUED
    if isinstance(prov, DwsCalendarProvisioning):
        return ProvisioningMode.DWS_CALENDAR
    if isinstance(prov, SpotProvisioning):
        return ProvisioningMode.SPOT
    assert isinstance(prov, OnDemandProvisioning)
    return ProvisioningMode.ON_DEMAND


def _epoch(t: datetime) -> float:
    """A window bound in epoch seconds (a bound written without a zone is UTC)."""
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


def window_bounds(spec: PoolSpec) -> tuple[float, float] | None:
    """(start, end) of a calendar pool's booked window in epoch seconds; None for other modes."""
    prov = spec.provisioning
    if not isinstance(prov, DwsCalendarProvisioning):
        return None
    return _epoch(prov.window.start), _epoch(prov.window.end)


def window_open(spec: PoolSpec, now: float) -> bool:
    """Whether the pool can have hosts at ``now``: inside a calendar pool's window [start, end);
    always for the other modes."""
    bounds = window_bounds(spec)
    return bounds is None or bounds[0] <= now < bounds[1]


def time_left(spec: PoolSpec, now: float) -> float | None:
    """Seconds until a calendar pool's window closes (0 once closed; the whole window plus the wait
    before it opens); None where capacity has no end date."""
    bounds = window_bounds(spec)
    return None if bounds is None else max(0.0, bounds[1] - now)


def drain_at(spec: PoolSpec) -> float | None:
    """When running work on a calendar pool is told to checkpoint and move: the window's end minus
    ``drainBefore`` (never before the window opens); None for other modes."""
    prov = spec.provisioning
    bounds = window_bounds(spec)
    if bounds is None or not isinstance(prov, DwsCalendarProvisioning):
        return None
    return max(bounds[0], bounds[1] - prov.drain_before)


def host_lifetime(spec: PoolSpec) -> float | None:
    """Longest a host lives once up: DWS flex-start's ``maxRunDuration`` (GKE removes the node after
    it, 7 days at most); None for every other mode (a calendar host's end is its window's end,
    :func:`host_expires_at`)."""
    prov = spec.provisioning
    return prov.max_run_duration if isinstance(prov, DwsFlexProvisioning) else None


def host_expires_at(spec: PoolSpec, host_started: float) -> float | None:
    """When a host that came up at ``host_started`` goes for good: DWS flex-start after its run
    time, a calendar host at the window's end; None when nothing ends it on a schedule."""
    lifetime = host_lifetime(spec)
    if lifetime is not None:
        return host_started + lifetime
    bounds = window_bounds(spec)
    return bounds[1] if bounds is not None else None


def recycle_at(spec: PoolSpec, host_started: float) -> float | None:
    """When a replacement for a DWS flex-start host is requested: its end minus
    ``nodeRecyclingLeadTime`` (not before it came up); None without a lead time or a lifetime."""
    prov = spec.provisioning
    if not isinstance(prov, DwsFlexProvisioning) or prov.node_recycling_lead_time is None:
        return None
    return max(host_started, host_started + prov.max_run_duration - prov.node_recycling_lead_time)


def reclaim_notice(spec: PoolSpec) -> float | None:
    """Seconds of warning a spot reclaim gives (``reclaimNotice``, GCE: 30 s); None: the mode does
    not reclaim hosts."""
    prov = spec.provisioning
    return prov.reclaim_notice if isinstance(prov, SpotProvisioning) else None


def all_or_nothing(spec: PoolSpec) -> bool:
    """Whether a gang's hosts are one request that arrives whole or not at all (queued DWS
    flex-start: a ProvisioningRequest for the whole pod set)."""
    return mode_of(spec) is ProvisioningMode.DWS_QUEUED


def fails_fast_on_stockout(spec: PoolSpec) -> bool:
    """Whether a request made during a stockout is answered "no capacity" at once instead of waiting
    (non-queued DWS flex-start). Other modes wait for capacity (queued DWS keeps its request
    queued; on-demand and spot retry)."""
    return mode_of(spec) is ProvisioningMode.DWS_NON_QUEUED


def scales_down(spec: PoolSpec) -> bool:
    """Whether the autoscaler gives idle hosts back: not a reservation's (paid for whether used or
    not) nor a calendar booking's (paid for the whole window); every other mode's, down to
    ``minReplicas``."""
    return mode_of(spec) not in (ProvisioningMode.RESERVATION, ProvisioningMode.DWS_CALENDAR)


def starts_full(spec: PoolSpec) -> bool:
    """Whether the pool has all its hosts from the start (a reservation; a calendar pool once its
    window opens) rather than ``minReplicas`` and growing on demand."""
    return not scales_down(spec)


def pays_when_idle(spec: PoolSpec) -> bool:
    """Whether an idle host still costs (reservation, calendar booking): its idle hours are a cost
    line of their own."""
    return not scales_down(spec)


def price_per_host_hour(spec: PoolSpec) -> float:
    """USD per host-hour in the pool's own mode (``pricePerHostHour``, given per pool because a
    pool has one mode): the on-demand, spot, DWS or reservation rate of its machine type."""
    return spec.price_per_host_hour


def host_cost(spec: PoolSpec, seconds: float) -> float:
    """What one host costs for ``seconds`` in the pool's mode."""
    return price_per_host_hour(spec) * max(0.0, seconds) / 3600.0
