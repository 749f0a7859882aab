"""Checks a submitted workload against the platform config before it is stored.

What can never run is refused at submit (422 naming the field), not left to wait forever:
an unknown queue or priority class, a gang no flavor of the queue can place, or a gang larger
than the largest pool (or TPU slice) that could hold it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api import GangSpec, PoolSpec, Service, TrainJob, format_quantity
from ..config import PlatformConfig
from ..errors import FieldProblem, SpecError


@dataclass(frozen=True)
class Placement:
    """Where a gang may go: the candidate flavors in the queue's order."""

    flavors: tuple[str, ...]
    priority: int


def workers_per_host(pool: PoolSpec, per_worker: dict[str, int]) -> int:
    host = pool.host_resources()
    fits = [host.get(r, 0) // amount for r, amount in per_worker.items() if amount]
    return min(fits) if fits else pool.max_hosts * 1000


def gang_capacity(pool: PoolSpec, per_worker: dict[str, int], *, one_slice: bool) -> int:
    """Most workers of this shape the pool can hold at once (within one slice for TPU gangs)."""
    hosts = pool.slice_hosts if one_slice else pool.max_hosts
    return workers_per_host(pool, per_worker) * hosts


def _describe(resources: dict[str, int]) -> str:
    return ", ".join(f"{format_quantity(r, v)} {r}" for r, v in sorted(resources.items()) if v)


def check_gang(cfg: PlatformConfig, queue: str, gang: GangSpec, *, path: str,
               resources_field: str = "resourcesPerWorker", count_field: str = "workers") -> tuple[str, ...]:
    flavors = cfg.flavors_for(queue, gang.accelerator, gang.resources_per_worker)
    if not flavors:
        what = gang.accelerator.value if gang.accelerator else _describe(gang.resources_per_worker) or "these resources"
        raise SpecError(FieldProblem(
            field=f"{path}.{resources_field}",
            problem=f"queue {queue!r} has no flavor whose hosts offer {what} per worker (flavors: {', '.join(cfg.queues[queue].spec.flavor_order())})",
        ))
    best, best_pool = 0, None
    for f in flavors:
        pool = cfg.pool_of_flavor(f)
        cap = gang_capacity(pool.spec, gang.resources_per_worker, one_slice=pool.spec.is_tpu)
        if cap > best:
            best, best_pool = cap, pool
    if gang.workers > best:
        assert best_pool is not None
        unit = "one slice" if best_pool.spec.is_tpu else f"{best_pool.spec.max_hosts} hosts"
        raise SpecError(FieldProblem(
            field=f"{path}.{count_field}",
            problem=f"{gang.workers} workers of ({_describe(gang.resources_per_worker)}) exceed the largest pool that could run them: "
                    f"pool {best_pool.name!r} holds at most {best} such workers ({unit} x {_describe(best_pool.spec.host_resources())})",
        ))
    return tuple(flavors)


def check_common(cfg: PlatformConfig, queue: str, priority_class: str | None) -> int:
    problems = []
    if queue not in cfg.queues:
        problems.append(FieldProblem(field="spec.queue", problem=f"unknown queue {queue!r}; queues: {', '.join(sorted(cfg.queues))}"))
    if priority_class is not None and priority_class not in cfg.priority_classes:
        problems.append(FieldProblem(field="spec.priorityClass", problem=f"unknown priority class {priority_class!r}; classes: {', '.join(sorted(cfg.priority_classes))}"))
    if problems:
        raise SpecError(problems)
    return cfg.priority_value(priority_class)


def check_job(cfg: PlatformConfig, job: TrainJob) -> Placement:
    priority = check_common(cfg, job.spec.queue, job.spec.priority_class)
    flavors = check_gang(cfg, job.spec.queue, job.spec.gang, path="spec.gang")
    return Placement(flavors, priority)


def service_gang(svc: Service) -> GangSpec:
    """One replica as a gang: one worker per host (already-validated values: no re-parsing)."""
    rg = svc.spec.replica_group
    return GangSpec.model_construct(workers=rg.hosts_per_replica, resources_per_worker=dict(rg.resources_per_host),
                                    accelerator=rg.accelerator, placement_strategy=None)


def check_service(cfg: PlatformConfig, svc: Service) -> Placement:
    priority = check_common(cfg, svc.spec.queue, svc.spec.priority_class)
    flavors = check_gang(cfg, svc.spec.queue, service_gang(svc), path="spec.replicaGroup",
                         resources_field="resourcesPerHost", count_field="hostsPerReplica")
    # A replica is one bundle per host: the pool needs that many hosts (one slice on TPU).
    ok = []
    for f in flavors:
        pool = cfg.pool_of_flavor(f).spec
        hosts = pool.slice_hosts if pool.is_tpu else pool.max_hosts
        if svc.spec.replica_group.hosts_per_replica <= hosts:
            ok.append(f)
    if not ok:
        raise SpecError(FieldProblem(
            field="spec.replicaGroup.hostsPerReplica",
            problem=f"{svc.spec.replica_group.hosts_per_replica} hosts per replica exceed every pool the queue can use",
        ))
    return Placement(tuple(ok), priority)
