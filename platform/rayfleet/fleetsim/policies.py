"""Scheduling policies to compare on one fleet scenario: each is a transformation of the platform
config plus the controller settings it runs with, made here and nowhere else.

- ``static``: fixed quotas. Every queue leaves its cohort (the cleanest "no borrowing" the config
  model has: with no cohort a queue neither borrows nor lends, and there is nothing to reclaim),
  the cohorts are dropped, quota schedules are dropped, and each compute class keeps only its first
  step, which then waits for its capacity indefinitely (no capacity fallback). The quota layer may
  still put a job on another flavor the queue has quota for (flavor order, as Kueue does): that is
  the team's own quota, not borrowing or fallback.
- ``kueue``: Kueue's ClusterQueue semantics: cohorts, borrowing, lending limits, reclaim and
  preemption as configured, and one head per queue per scheduling cycle (``heads_per_queue`` 1).
  The rayfleet-only extras in the code are turned off: quota schedules (``quotaSchedule``, e.g.
  the trace's day/night split of the L4 reservation; Kueue has no equivalent,
  ``backends/kuberay/kueue.not_exported``) and compute classes (the controller's capacity
  fallback: ``waitForCapacity``/``resubmitAfter`` per step and ``activeMigration``; an admitted
  Kueue workload waits on its flavor). What stays is Kueue's own: flavor fungibility along the
  queue's flavor order, fair-sharing weights, priorities.
- ``rayfleet``: the platform as configured, ``heads_per_queue`` at the control service's default
  (batch admission of up to that many heads a queue per pass).

Pure: no I/O; the config given is not modified.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..api import ComputeClass, Queue
from ..config import PlatformConfig
from ..server.queue_heads import HEADS_PER_QUEUE

POLICIES = ("static", "kueue", "rayfleet")


@dataclass(frozen=True)
class Policy:
    """A policy applied: the config to run and the controller's settings."""

    name: str
    config: PlatformConfig
    heads_per_queue: int
    changes: tuple[str, ...]

    def describe(self) -> dict:
        return {"name": self.name, "headsPerQueue": self.heads_per_queue, "changes": list(self.changes)}


def _queue(q: Queue, **spec_update: object) -> Queue:
    return q.model_copy(update={"spec": q.spec.model_copy(update=spec_update)})


def _first_step_only(cc: ComputeClass) -> ComputeClass:
    first = cc.spec.flavors[0].model_copy(update={"wait_for_capacity": None})
    spec = cc.spec.model_copy(update={"flavors": [first], "active_migration": cc.spec.active_migration.model_copy(
        update={"optimize_rule_priority": False})})
    return cc.model_copy(update={"spec": spec})


def apply_policy(config: PlatformConfig, name: str) -> Policy:
    """The config and controller settings of policy ``name`` (one of :data:`POLICIES`)."""
    if name == "rayfleet":
        return Policy(name, config, HEADS_PER_QUEUE, ())
    if name == "static":
        changes = []
        if any(q.spec.cohort for q in config.queues.values()):
            changes.append("queues leave their cohorts (no borrowing, lending or reclaim); cohorts dropped")
        if any(q.spec.quota_schedule for q in config.queues.values()):
            changes.append("quota schedules dropped")
        if any(len(cc.spec.flavors) > 1 or cc.spec.flavors[0].wait_for_capacity is not None for cc in config.compute_classes.values()):
            changes.append("compute classes keep their first step only, waiting for its capacity indefinitely (no capacity fallback)")
        queues = {n: _queue(q, cohort=None, quota_schedule=[]) for n, q in config.queues.items()}
        classes = {n: _first_step_only(cc) for n, cc in config.compute_classes.items()}
        cfg = dataclasses.replace(config, queues=queues, cohorts={}, compute_classes=classes)
        return Policy(name, cfg, HEADS_PER_QUEUE, tuple(changes))
    if name == "kueue":
        changes = [f"one head per queue per cycle (heads_per_queue 1, rayfleet's default {HEADS_PER_QUEUE})"]
        if any(q.spec.quota_schedule for q in config.queues.values()):
            changes.append("quota schedules dropped (no Kueue equivalent)")
        if config.compute_classes:
            changes.append("compute classes dropped (no capacity fallback: an admitted workload waits on its flavor)")
        queues = {n: _queue(q, quota_schedule=[], compute_class=None) for n, q in config.queues.items()}
        cfg = dataclasses.replace(config, queues=queues, compute_classes={})
        return Policy(name, cfg, 1, tuple(changes))
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
