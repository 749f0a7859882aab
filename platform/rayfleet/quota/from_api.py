"""Build the quota layer's configuration and workloads from rayfleet's api objects.

Only :mod:`rayfleet.api` is imported (no config loader, no YAML): callers hand over the objects,
e.g. ``to_quota_config(cfg.queues.values(), cfg.cohorts.values(), cfg.compute_classes)`` with the
``PlatformConfig`` that ``rayfleet.config.load_config`` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..api import Cohort, ComputeClass, PriorityClass, Queue, TrainJob
from .types import (
    BorrowWithinCohort,
    CohortConfig,
    FairSharingStrategy,
    FlavorFungibility,
    FlavorPreference,
    PodSet,
    PreemptionConfig,
    PreemptionPolicy,
    QueueConfig,
    QueueingStrategy,
    QuotaConfig,
    QuotaWindow,
    ResourceQuota,
    WhenCanBorrow,
    WhenCanPreempt,
    Workload,
)


def flavor_order(queue: Queue, compute_classes: Mapping[str, ComputeClass] | None = None) -> tuple[str, ...]:
    """The queue's flavor order: its compute class's steps first (those the queue has quota on),
    then its other flavors in resource-group order."""
    own = queue.spec.flavor_order()
    cc_name = queue.spec.compute_class
    if cc_name is None or not compute_classes or cc_name not in compute_classes:
        return tuple(own)
    first = [s.flavor for s in compute_classes[cc_name].spec.flavors if s.flavor in own]
    return tuple(first + [f for f in own if f not in first])


def queue_config(queue: Queue, compute_classes: Mapping[str, ComputeClass] | None = None) -> QueueConfig:
    spec = queue.spec
    quotas = {
        fr: ResourceQuota(rq.nominal_quota, rq.borrowing_limit, rq.lending_limit) for fr, rq in spec.quotas().items()
    }
    windows = tuple(
        QuotaWindow(
            name=w.name,
            start=w.start,
            end=w.end,
            days=tuple(w.days),
            timezone=w.timezone,
            quotas={
                (sq.flavor, sq.resource): ResourceQuota(sq.nominal_quota, sq.borrowing_limit, sq.lending_limit)
                for sq in w.quotas
            },
        )
        for w in spec.quota_schedule
    )
    p = spec.preemption
    return QueueConfig(
        name=queue.name,
        flavors=flavor_order(queue, compute_classes),
        quotas=quotas,
        cohort=spec.cohort,
        queueing_strategy=QueueingStrategy(spec.queueing_strategy.value),
        preemption=PreemptionConfig(
            within_cluster_queue=PreemptionPolicy(p.within_cluster_queue.value),
            reclaim_within_cohort=PreemptionPolicy(p.reclaim_within_cohort.value),
            borrow_within_cohort=BorrowWithinCohort(
                p.borrow_within_cohort.policy.value, p.borrow_within_cohort.max_priority_threshold
            ),
        ),
        flavor_fungibility=FlavorFungibility(
            WhenCanBorrow(spec.flavor_fungibility.when_can_borrow.value),
            WhenCanPreempt(spec.flavor_fungibility.when_can_preempt.value),
            spec.flavor_fungibility.preference or FlavorPreference.BORROWING_OVER_PREEMPTION,
        ),
        fair_share_weight=spec.fair_sharing.weight,
        schedule=windows,
    )


def cohort_config(cohort: Cohort) -> CohortConfig:
    quotas = {fr: ResourceQuota(rq.nominal_quota, rq.borrowing_limit, rq.lending_limit) for fr, rq in cohort.spec.quotas().items()}
    return CohortConfig(name=cohort.name, parent=cohort.spec.parent, quotas=quotas, fair_share_weight=cohort.spec.fair_sharing.weight)


def to_quota_config(
    queues: Iterable[Queue],
    cohorts: Iterable[Cohort] = (),
    compute_classes: Mapping[str, ComputeClass] | None = None,
    *,
    fair_sharing: bool = False,
    fair_sharing_strategies: tuple[FairSharingStrategy, ...] | None = None,
) -> QuotaConfig:
    """A validated QuotaConfig from api objects, in name order (so the result is deterministic)."""
    cfg = QuotaConfig(
        queues=tuple(queue_config(q, compute_classes) for q in sorted(queues, key=lambda q: q.name)),
        cohorts=tuple(cohort_config(c) for c in sorted(cohorts, key=lambda c: c.name)),
        fair_sharing=fair_sharing,
        **({"fair_sharing_strategies": fair_sharing_strategies} if fair_sharing_strategies else {}),
    )
    cfg.validate()
    return cfg


def from_platform(platform: Any, *, fair_sharing: bool | None = None) -> QuotaConfig:
    """From anything with ``queues``, ``cohorts`` and ``compute_classes`` mappings of api objects
    (``rayfleet.config.PlatformConfig``). ``fair_sharing`` None follows the Cluster's
    ``spec.fairSharing`` (off without a Cluster); the preemption strategies are the Cluster's
    ``spec.fairSharingStrategies``."""
    cluster = getattr(platform, "cluster", None)
    if fair_sharing is None:
        fair_sharing = bool(cluster is not None and getattr(cluster.spec, "fair_sharing", False))
    strategies = getattr(cluster.spec, "fair_sharing_strategies", None) if cluster is not None else None
    return to_quota_config(
        platform.queues.values(), platform.cohorts.values(), platform.compute_classes, fair_sharing=fair_sharing,
        fair_sharing_strategies=tuple(FairSharingStrategy(s.value) for s in strategies) if strategies else None,
    )


def priority_value(priority_classes: Mapping[str, PriorityClass], name: str | None) -> int:
    """A priority class's value; None means the class marked default, else 0."""
    if name is None:
        for pc in sorted(priority_classes.values(), key=lambda p: p.name):
            if pc.spec.default:
                return pc.spec.value
        return 0
    try:
        return priority_classes[name].spec.value
    except KeyError:
        raise KeyError(f"unknown priority class {name!r}") from None


def train_job_workload(
    job: TrainJob, *, priority: int, created: float, flavors: Iterable[str] | None = None
) -> Workload:
    """A TrainJob's gang as a quota workload: ``gang.workers`` hosts of ``gang.resourcesPerWorker``.

    ``flavors`` restricts where it may run (e.g. ``PlatformConfig.flavors_for`` by accelerator);
    None means any flavor of its queue.
    """
    gang = job.spec.gang
    return Workload(
        id=job.name,
        queue=job.spec.queue,
        podsets=(PodSet(gang.workers, dict(gang.resources_per_worker), "workers"),),
        priority=priority,
        created=created,
        flavors=tuple(flavors) if flavors is not None else None,
    )
