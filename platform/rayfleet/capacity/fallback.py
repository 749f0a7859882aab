"""Capacity fallback along a queue's compute class (GKE custom compute class priorities).

Quota can admit a job on a flavor whose machines are not there: a reservation smaller than the
quota or with hosts in maintenance, a DWS flex-start request still queued, spot capacity gone. A
queue that names a ``ComputeClass`` says how long to wait for each flavor's capacity
(``waitForCapacity``); the controller asks :func:`decide` about every launched attempt that is
still waiting for its hosts (its placement group, or on GKE its pods / ProvisioningRequest). Past
the wait, the attempt is stopped (which on GKE also cancels its ProvisioningRequest), the flavor is
skipped, and the job goes back to its queue, where quota tries the next step of the compute class:
reservation, then DWS, then spot. The last step waits indefinitely. Once an attempt runs, the
skipped list is cleared: the next admission (after a preemption, say) starts from the first step
again, as a compute class prefers its first priority whenever it can have it.

Pure functions of the config, no clock of their own (``now`` is passed in).
"""

from __future__ import annotations

from enum import StrEnum

from ..api import ComputeClassStep
from ..config import PlatformConfig


def _steps(cfg: PlatformConfig, queue: str) -> list[ComputeClassStep]:
    """The steps of ``queue``'s compute class (none without one)."""
    q = cfg.queues.get(queue)
    cc = cfg.compute_classes.get(q.spec.compute_class or "") if q is not None else None
    return cc.spec.flavors if cc is not None else []


def step_of(cfg: PlatformConfig, queue: str, flavor: str | None) -> ComputeClassStep | None:
    """The compute-class step of ``flavor`` for jobs of ``queue`` (None: no compute class or no step)."""
    return next((s for s in _steps(cfg, queue) if s.flavor == flavor), None)


def next_flavor(cfg: PlatformConfig, queue: str, flavor: str) -> str | None:
    """The step after ``flavor`` in the queue's compute class."""
    names = [s.flavor for s in _steps(cfg, queue)]
    return names[names.index(flavor) + 1] if flavor in names[:-1] else None


class Decision(StrEnum):
    WAIT = "wait"            # keep waiting for this flavor's capacity
    RESUBMIT = "resubmit"    # cancel this attempt's request for capacity and submit a new one, same flavor
    NEXT = "next"            # give the flavor up: the compute class's next step


def decide(cfg: PlatformConfig, queue: str, flavor: str | None, waiting_since: float | None, launched_at: float | None, now: float) -> Decision:
    """What to do about an attempt on ``flavor`` still waiting for its machines.

    ``waiting_since``: when the job first launched on this flavor (the step's ``waitForCapacity``
    runs from there, across resubmissions); ``launched_at``: when this attempt was launched (its
    ``resubmitAfter`` runs from there)."""
    step = step_of(cfg, queue, flavor)
    if step is None:
        return Decision.WAIT
    if step.wait_for_capacity is not None and waiting_since is not None and now - waiting_since >= step.wait_for_capacity:
        return Decision.NEXT
    if step.resubmit_after is not None and launched_at is not None and now - launched_at >= step.resubmit_after:
        return Decision.RESUBMIT
    return Decision.WAIT


def this_round(flavors: tuple[str, ...], skipped: list[str]) -> set[str]:
    """The flavors skipped in the current round of the compute class. ``skipped`` lists every
    give-up in order since the job last ran; once a round has given up every flavor, the class
    starts again from its first step (as GKE retries a compute class's priorities from the top),
    so only the give-ups after the last full round count."""
    current: set[str] = set()
    for f in skipped:
        current.add(f)
        if current >= set(flavors):
            current = set()
    return current


def remaining(flavors: tuple[str, ...], skipped: list[str]) -> tuple[str, ...]:
    """The flavors quota may still try, in order: those not skipped in this round for lack of
    capacity. Never none: after a round that gave up every flavor, all are tried again, first step
    first; a config change that leaves none unskipped does the same."""
    current = this_round(flavors, skipped)
    left = tuple(f for f in flavors if f not in current)
    return left or flavors


def next_remaining(flavors: tuple[str, ...], skipped: list[str], flavor: str | None) -> str | None:
    """The flavor quota tries after giving up ``flavor`` (None: it was the last of this round)."""
    current = this_round(flavors, skipped)
    return next((f for f in flavors if f != flavor and f not in current), None)


def preferred(cfg: PlatformConfig, queue: str, flavor: str | None) -> list[str]:
    """The steps before ``flavor`` that a job running there moves back to when one has room, best
    first (GKE ComputeClass ``activeMigration.optimizeRulePriority``); none unless the queue's
    compute class says so."""
    q = cfg.queues.get(queue)
    cc = cfg.compute_classes.get(q.spec.compute_class or "") if q is not None else None
    if cc is None or not cc.spec.active_migration.optimize_rule_priority:
        return []
    names = [s.flavor for s in cc.spec.flavors]
    return names[: names.index(flavor)] if flavor in names else []


def flavor_exhausted(notice_kind: str, fixed_size: bool, free: int, provisioning: int, absent: int) -> bool:
    """Whether a flavor has nothing left for a gang moved off it by a notice, so the compute class's
    next step is tried: a closing calendar window never has; otherwise the pool has neither a free
    host, one on its way, nor (unless its size is fixed, as a reservation's is) room to ask for one."""
    if notice_kind == "window-end":
        return True
    return free + provisioning + (0 if fixed_size else absent) <= 0
