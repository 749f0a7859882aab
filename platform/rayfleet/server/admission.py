"""Checks a submitted workload against the platform config before it is stored.

What can never run is refused at submit (422 naming the field), not left to take quota and fail at
launch: an unknown queue or priority class, a gang no flavor of the queue can place, a gang no pool
of the queue can ever hold (STRICT_PACK beyond one host, STRICT_SPREAD or more hosts than the pool
has, more than one TPU slice). The fit is the one rule of :func:`rayfleet.backends.placement.gang_fit`,
the same the backends apply at launch; only the flavors whose pool can hold the gang are offered
to quota.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api import GangSpec, PlacementStrategy, Service, TrainJob, format_quantity
from ..backends.placement import gang_fit
from ..config import PlatformConfig
from ..errors import FieldProblem, SpecError


@dataclass(frozen=True)
class Placement:
    """Where a gang may go: the candidate flavors in the queue's order."""

    flavors: tuple[str, ...]
    priority: int


def _describe(resources: dict[str, int]) -> str:
    return ", ".join(f"{format_quantity(r, v)} {r}" for r, v in sorted(resources.items()) if v)


def platform_backend(cfg: PlatformConfig) -> str:
    """``local`` or ``kuberay``: whose share of a host a worker gets (:func:`~rayfleet.backends.placement.host_offer`)."""
    return cfg.cluster.spec.backend if cfg.cluster is not None else "local"


# How far a pool got: a gang whose workers fit a host but not in the hosts there are names the
# count or strategy field, not the resources.
_FIELD_RANK = {"resourcesPerWorker": 0, "placementStrategy": 1, "workers": 1}


def check_gang(cfg: PlatformConfig, queue: str, gang: GangSpec, *, path: str,
               fields: dict[str, str] | None = None) -> tuple[str, ...]:
    """The flavors of ``queue`` whose pool can ever hold the gang (the gang-fit rule,
    :func:`rayfleet.backends.placement.gang_fit`, with the platform's backend). Raises SpecError
    naming the gang field (``fields`` renames them, e.g. for a Service's replica group)."""
    names = {"resourcesPerWorker": "resourcesPerWorker", "workers": "workers", "placementStrategy": "placementStrategy", **(fields or {})}
    flavors = cfg.flavors_for(queue, gang.accelerator, gang.resources_per_worker)
    if not flavors:
        what = gang.accelerator.value if gang.accelerator else _describe(gang.resources_per_worker) or "these resources"
        raise SpecError(FieldProblem(
            field=f"{path}.{names['resourcesPerWorker']}",
            problem=f"queue {queue!r} has no flavor whose hosts offer {what} per worker (flavors: {', '.join(cfg.queues[queue].spec.flavor_order())})",
        ))
    backend = platform_backend(cfg)
    ok: list[str] = []
    failed: list[tuple[str, str, str]] = []   # (gang field, flavor, why)
    for f in flavors:
        pool = cfg.pool_of_flavor(f)
        fit = gang_fit(pool.spec, gang.workers, gang.resources_per_worker, gang.placement_strategy, pool=pool.name, backend=backend)
        if fit.ok:
            ok.append(f)
        else:
            failed.extend((field, f, why) for field, why in fit.problems)
    if not ok:
        field = max(failed, key=lambda p: _FIELD_RANK[p[0]])[0]
        raise SpecError(FieldProblem(
            field=f"{path}.{names[field]}",
            problem=f"no pool of queue {queue!r} can ever hold this gang: " + "; ".join(f"flavor {f!r}: {why}" for _, f, why in failed),
        ))
    return tuple(ok)


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
    """One replica as a gang: one worker per host, STRICT_SPREAD as the replica group's bundles are
    (already-validated values: no re-parsing)."""
    rg = svc.spec.replica_group
    return GangSpec.model_construct(workers=rg.hosts_per_replica, resources_per_worker=dict(rg.resources_per_host),
                                    accelerator=rg.accelerator, placement_strategy=PlacementStrategy.STRICT_SPREAD)


def check_service(cfg: PlatformConfig, svc: Service) -> Placement:
    priority = check_common(cfg, svc.spec.queue, svc.spec.priority_class)
    flavors = check_gang(cfg, svc.spec.queue, service_gang(svc), path="spec.replicaGroup",
                         fields={"resourcesPerWorker": "resourcesPerHost", "workers": "hostsPerReplica",
                                 "placementStrategy": "hostsPerReplica"})
    return Placement(flavors, priority)
