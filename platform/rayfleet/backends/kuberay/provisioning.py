"""A queued DWS run's ProvisioningRequest conditions at run time (pure: objects and the clock in).

The cluster autoscaler's conditions (``autoscaling.x-k8s.io/v1``) and what they make of a run whose
RayJob alone says ``state``:

=================  ======================================================================
condition (True)   run
=================  ======================================================================
Failed             PENDING -> STOCKOUT with the condition's message (no capacity: the next
                   compute-class step, not a program failure)
CapacityRevoked    the hosts are taken back: while the RayJob still runs and the pods' grace
                   period (the pool's reclaim notice on spot, else 30 s) has not passed since
                   the condition, RUNNING with a RECLAIM notice per host; after it, or before
                   the run ran, LOST
BookingExpired     before the pods used the capacity: LOST. While the RayJob runs: the hosts
                   stay until the request's ``maxRunDurationSeconds`` from Provisioned; RUNNING
                   with a RECYCLE notice (WINDOW_END on a calendar pool) per host with that
                   deadline, LOST once it has passed
Provisioned        PENDING: the hosts are coming up
(none yet)         PENDING: waiting for DWS capacity
=================  ======================================================================

States the RayJob already decided (SUCCEEDED, FAILED, ...) are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...api import PoolSpec
from ...api.pool import DwsCalendarProvisioning, SpotProvisioning
from ..base import Notice, NoticeKind, RunState
from .nodes import DEFAULT_GRACE_SECONDS, epoch

FAILED = "Failed"
CAPACITY_REVOKED = "CapacityRevoked"
BOOKING_EXPIRED = "BookingExpired"
PROVISIONED = "Provisioned"
ACCEPTED = "Accepted"


@dataclass(frozen=True)
class Outcome:
    state: RunState
    message: str
    notices: tuple[Notice, ...] = ()


def true_conditions(provreq: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The request's conditions whose status is True, by type."""
    conds = ((provreq or {}).get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conds if c.get("status") == "True" and c.get("type")}


def _text(kind: str, cond: dict[str, Any]) -> str:
    detail = cond.get("message") or cond.get("reason") or ""
    return f"ProvisioningRequest {kind}: {detail}".rstrip(": ")


def _notices(kind: NoticeKind, hosts: tuple[str, ...], deadline: float | None, message: str) -> tuple[Notice, ...]:
    return tuple(Notice(kind, h, deadline, message) for h in hosts or ("",))


def pending_hosts(provreq: dict[str, Any]) -> int:
    """Hosts a request still waits for: all of its pods until Provisioned; none once it is
    Provisioned (the nodes show), Failed, revoked or expired."""
    conds = true_conditions(provreq)
    if any(k in conds for k in (FAILED, CAPACITY_REVOKED, BOOKING_EXPIRED, PROVISIONED)):
        return 0
    return sum(int(ps.get("count") or 0) for ps in (provreq.get("spec") or {}).get("podSets") or [])


def apply_provisioning(
    provreq: dict[str, Any] | None, state: RunState, message: str, *, spec: PoolSpec, hosts: tuple[str, ...], now: float
) -> Outcome:
    """The run's state once its ProvisioningRequest's conditions are taken into account."""
    if provreq is None or state not in (RunState.PENDING, RunState.RUNNING):
        return Outcome(state, message)
    name = (provreq.get("metadata") or {}).get("name", "")
    conds = true_conditions(provreq)
    running = state == RunState.RUNNING
    if FAILED in conds and not running:
        return Outcome(RunState.STOCKOUT, _text(FAILED, conds[FAILED]))
    if CAPACITY_REVOKED in conds:
        text = _text(CAPACITY_REVOKED, conds[CAPACITY_REVOKED])
        revoked = epoch(conds[CAPACITY_REVOKED].get("lastTransitionTime"))
        grace = spec.provisioning.reclaim_notice if isinstance(spec.provisioning, SpotProvisioning) else DEFAULT_GRACE_SECONDS
        deadline = None if revoked is None else revoked + grace
        if running and deadline is not None and now < deadline:
            return Outcome(RunState.RUNNING, message, _notices(NoticeKind.RECLAIM, hosts, deadline, text))
        return Outcome(RunState.LOST, text)
    if BOOKING_EXPIRED in conds:
        text = _text(BOOKING_EXPIRED, conds[BOOKING_EXPIRED])
        if not running:
            return Outcome(RunState.LOST, f"{text} (the capacity was given back before the pods used it)")
        provisioned = epoch((conds.get(PROVISIONED) or {}).get("lastTransitionTime"))
        seconds = str(((provreq.get("spec") or {}).get("parameters") or {}).get("maxRunDurationSeconds") or "")
        deadline = provisioned + int(seconds) if provisioned is not None and seconds.isdigit() else None
        if deadline is not None and now >= deadline:
            return Outcome(RunState.LOST, f"{text} (maxRunDurationSeconds {seconds} ended)")
        kind = NoticeKind.WINDOW_END if isinstance(spec.provisioning, DwsCalendarProvisioning) else NoticeKind.RECYCLE
        return Outcome(RunState.RUNNING, message, _notices(kind, hosts, deadline, text))
    if running:
        return Outcome(state, message)
    if PROVISIONED in conds:
        return Outcome(RunState.PENDING, f"DWS capacity provisioned (ProvisioningRequest {name}): the hosts are coming up")
    return Outcome(RunState.PENDING, message or f"waiting for DWS flex-start capacity (ProvisioningRequest {name})")
