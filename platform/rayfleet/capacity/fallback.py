"""Capacity fallback along a queue's compute class (GKE custom compute class priorities).

Quota can admit a job on a flavor whose machines are not there: a reservation smaller than the
quota or with hosts in maintenance, a DWS flex-start request still queued, spot capacity gone. A
queue that names a ``ComputeClass`` says how long to wait for each flavor's capacity
(``waitForCapacity``); the controller asks :func:`out_of_time` about every launched attempt that is
still waiting for its hosts (its placement group, or on GKE its pods / ProvisioningRequest). Past
the wait, the attempt is stopped (which on GKE also cancels its ProvisioningRequest), the flavor is
skipped, and the job goes back to its queue, where quota tries the next step of the compute class:
reservation, then DWS, then spot. The last step waits indefinitely. Once an attempt runs, the
skipped list is cleared: the next admission (after a preemption, say) starts from the first step
again, as a compute class prefers its first priority whenever it can have it.

Pure functions of the config, no clock of their own (``now`` is passed in).
"""

from __future__ import annotations

from ..api import ComputeClassStep
from ..config import PlatformConfig


def step_of(cfg: PlatformConfig, queue: str, flavor: str | None) -> ComputeClassStep | None:
    """The compute-class step of ``flavor`` for jobs of ``queue`` (None: no compute class or no step)."""
    q = cfg.queues.get(queue)
    cc = cfg.compute_classes.get(q.spec.compute_class or "") if q is not None else None
    if cc is None or flavor is None:
        return None
    return next((s for s in cc.spec.flavors if s.flavor == flavor), None)


def next_flavor(cfg: PlatformConfig, queue: str, flavor: str) -> str | None:
    """The step after ``flavor`` in the queue's compute class."""
    q = cfg.queues.get(queue)
    cc = cfg.compute_classes.get(q.spec.compute_class or "") if q is not None else None
    if cc is None:
        return None
    names = [s.flavor for s in cc.spec.flavors]
    return names[names.index(flavor) + 1] if flavor in names[:-1] else None


def out_of_time(cfg: PlatformConfig, queue: str, flavor: str | None, waiting_since: float | None, now: float) -> bool:
    """True when an attempt on ``flavor`` has waited for capacity longer than its step allows."""
    step = step_of(cfg, queue, flavor)
    if step is None or step.wait_for_capacity is None or waiting_since is None:
        return False
    return now - waiting_since >= step.wait_for_capacity


def remaining(flavors: tuple[str, ...], skipped: list[str]) -> tuple[str, ...]:
    """The flavors quota may still try, in order: those not skipped for lack of capacity. Never
    none: if every flavor was skipped (the config changed under the job), all are tried again."""
    left = tuple(f for f in flavors if f not in skipped)
    return left or flavors
