"""Small builders shared by the quota tests (imported as a plain module)."""

from __future__ import annotations

from rayfleet.quota import (
    BorrowWithinCohort,
    CohortConfig,
    FlavorFungibility,
    PodSet,
    PreemptionConfig,
    PreemptionPolicy,
    QueueConfig,
    QueueingStrategy,
    QuotaConfig,
    ResourceQuota,
    Workload,
)

CPU = "cpu"
GPU = "nvidia.com/gpu"


def queue(
    name: str,
    cpu: int | dict[str, int] = 0,
    *,
    cohort: str | None = None,
    borrowing: int | None = None,
    lending: int | None = None,
    flavors: tuple[str, ...] = ("default",),
    within: str = "Never",
    reclaim: str = "Never",
    bwc: str = "Never",
    bwc_max: int | None = None,
    strict: bool = False,
    when_can_borrow: str = "Borrow",
    when_can_preempt: str = "TryNextFlavor",
    weight: float = 1.0,
    resource: str = CPU,
    schedule=(),
) -> QueueConfig:
    """A queue with quota for one resource; ``cpu`` is a nominal quota for every flavor or a
    per-flavor dict."""
    per = cpu if isinstance(cpu, dict) else {f: cpu for f in flavors}
    return QueueConfig(
        name=name,
        flavors=tuple(per) if isinstance(cpu, dict) else flavors,
        quotas={(f, resource): ResourceQuota(n, borrowing, lending) for f, n in per.items()},
        cohort=cohort,
        queueing_strategy=QueueingStrategy.STRICT_FIFO if strict else QueueingStrategy.BEST_EFFORT_FIFO,
        preemption=PreemptionConfig(
            within_cluster_queue=PreemptionPolicy(within),
            reclaim_within_cohort=PreemptionPolicy(reclaim),
            borrow_within_cohort=BorrowWithinCohort(bwc, bwc_max),
        ),
        flavor_fungibility=FlavorFungibility(when_can_borrow, when_can_preempt),
        fair_share_weight=weight,
        schedule=tuple(schedule),
    )


def config(*queues: QueueConfig, cohorts: tuple[str, ...] | tuple[CohortConfig, ...] = (), fair: bool = False) -> QuotaConfig:
    cs = tuple(c if isinstance(c, CohortConfig) else CohortConfig(c) for c in cohorts)
    return QuotaConfig(queues=tuple(queues), cohorts=cs, fair_sharing=fair)


def wl(id: str, q: str, cpu: int, *, prio: int = 0, t: float = 0.0, count: int = 1, flavors=None, resource: str = CPU) -> Workload:
    return Workload(id, q, (PodSet(count, {resource: cpu}),), priority=prio, created=t, flavors=flavors)


def admitted_ids(result) -> list[str]:
    return [a.workload_id for a in result.admitted]


def preempted_ids(result) -> list[str]:
    return [p.victim_id for p in result.preempted]


def waiting_ids(result) -> list[str]:
    return [w.workload_id for w in result.waiting]
