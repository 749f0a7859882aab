"""The controller's view of the quota layer: stored jobs in, quota decisions out.

The quota layer is pure and knows workloads, not TrainJobs; this module turns one into the other
(a gang is one pod set of ``workers`` x per-worker resources, restricted to the flavors whose
pools can hold it) and keeps the :class:`~rayfleet.quota.state.QuotaState` of the running service.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..api import TrainJob
from ..config import PlatformConfig
from ..quota.from_api import from_platform, train_job_workload
from ..quota.state import QuotaState
from ..quota.types import CycleResult, Preempt, QueueUsage, Workload


class QuotaBridge:
    def __init__(self, config: PlatformConfig, now: float | None = None):
        self.config = config
        self.reset(time.time() if now is None else now)

    def reset(self, now: float) -> None:
        """Forget every admission (a replica taking over the controller restores them from the store)."""
        fair = bool(self.config.cluster and self.config.cluster.spec.fair_sharing)
        self.state = QuotaState(from_platform(self.config, fair_sharing=fair), now)

    def workload(self, job: TrainJob, flavors: tuple[str, ...]) -> Workload:
        created = job.status.submitted_at.timestamp() if job.status.submitted_at else 0.0
        return train_job_workload(job, priority=self.priority(job.spec.priority_class), created=created, flavors=flavors)

    def priority(self, priority_class: str | None) -> int:
        try:
            return self.config.priority_value(priority_class)
        except KeyError:  # the class was removed from the config since submission
            return 0

    def restore(self, job: TrainJob, flavors: tuple[str, ...]) -> None:
        """Re-admit a job that held quota before a restart, on the flavor it was admitted on."""
        if job.status.flavor is None or self.state.is_admitted(job.name):
            return
        self.state.restore(self.workload(job, flavors), job.status.flavor)

    def restore_workload(self, wl: Workload, flavor: str) -> None:
        if not self.state.is_admitted(wl.id):
            self.state.restore(wl, flavor)

    def fits(self, job: TrainJob, flavor: str) -> bool:
        """Whether quota would admit ``job`` on ``flavor`` now without preemption (usage unchanged)."""
        return self.state.fits(self.workload(job, (flavor,)), flavor)

    def release(self, workload_id: str) -> None:
        if self.state.is_admitted(workload_id):
            self.state.release(workload_id)

    def tick(self, now: float) -> list[Preempt]:
        return self.state.tick(now)

    def schedule(self, workloads: Iterable[Workload], now: float) -> CycleResult:
        return self.state.schedule(now, list(workloads))

    def usage(self, queue: str) -> QueueUsage:
        return self.state.queue_usage(queue)

    def usages(self) -> dict[str, QueueUsage]:
        """Every queue's usage (cheaper than ``usage`` for each: lending is worked out once a cohort tree)."""
        return self.state.queue_usages()

    def is_admitted(self, workload_id: str) -> bool:
        return self.state.is_admitted(workload_id)
