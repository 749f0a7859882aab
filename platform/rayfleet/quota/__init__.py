"""Shared quota and borrowing: who gets which accelerators, and when.

Kueue's model (queues with nominal quota per flavor and resource, cohorts, borrowing and lending
limits, priority preemption, reclaim within the cohort, fair sharing, flavor fungibility), decided
in-process and in batches. Pure Python: no Ray, no I/O, no clock (``now`` is always passed in).
The control service, the simulator and the tests call the same code.

    state = QuotaState(config, now)
    result = state.schedule(now, pending)      # -> CycleResult: admitted, preempted, waiting
    state.release(workload_id)                 # a workload finished
    state.tick(now)                            # quota schedules -> reclaims (QuotaShrunk)
    state.set_config(new_config, now)          # -> reclaims
"""

from .schedule import active_windows, effective_config, effective_quotas, window_active
from .state import QuotaState
from .types import (
    DAYS,
    Admit,
    AdmittedWorkload,
    Blocking,
    BorrowWithinCohort,
    CohortConfig,
    CycleResult,
    FairSharingStrategy,
    FlavorFungibility,
    FlavorPreference,
    PodSet,
    Preempt,
    PreemptionConfig,
    PreemptionPolicy,
    PreemptionReason,
    QueueConfig,
    QueueingStrategy,
    QueueUsage,
    QuotaConfig,
    QuotaConfigError,
    QuotaWindow,
    ResourceQuota,
    Wait,
    WhenCanBorrow,
    WhenCanPreempt,
    Workload,
)

__all__ = [
    "DAYS",
    "Admit",
    "AdmittedWorkload",
    "Blocking",
    "BorrowWithinCohort",
    "CohortConfig",
    "CycleResult",
    "FairSharingStrategy",
    "FlavorFungibility",
    "FlavorPreference",
    "PodSet",
    "Preempt",
    "PreemptionConfig",
    "PreemptionPolicy",
    "PreemptionReason",
    "QueueConfig",
    "QueueUsage",
    "QueueingStrategy",
    "QuotaConfig",
    "QuotaConfigError",
    "QuotaState",
    "QuotaWindow",
    "ResourceQuota",
    "Wait",
    "WhenCanBorrow",
    "WhenCanPreempt",
    "Workload",
    "active_windows",
    "effective_config",
    "effective_quotas",
    "window_active",
]
