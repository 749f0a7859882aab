"""Cost per team from the event log, for training and for serving; and the inputs of MTTR / MTBI.

Training: a segment starts when an attempt is running (``Running`` / ``Recovered``) and ends when
it stops (``Requeued``, ``Succeeded``, ``Failed``, ``Stopped``, ``Stopping``). Cost = hosts x price
per host-hour x hours, hosts being the gang's hosts on the pool it ran on.

Serving: a Service is charged for the replica groups quota granted it, from each group's admission
(``Admitted``) to its return (``Released`` on scale-down, ``Preempted`` on reclaim, ``Deleted``):
groups x hosts per group x the admitted pool's price per host-hour. Granted groups are what the
team holds: on GKE, the nodes behind them are provisioned for it whether load fills them or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..api import Service, TrainJob
from ..backends.placement import gang_fit
from ..config import PlatformConfig
from .admission import platform_backend
from .store import Event

_START = {"Running", "Recovered"}
_END = {"Requeued", "Succeeded", "Failed", "Stopped", "Stopping"}


@dataclass(frozen=True)
class Segment:
    start: float
    end: float | None


def segments(events: list[Event]) -> list[Segment]:
    out: list[Segment] = []
    open_at: float | None = None
    for e in events:
        if e.type in _START and open_at is None:
            open_at = e.ts
        elif e.type in _END and open_at is not None:
            out.append(Segment(open_at, e.ts))
            open_at = None
    if open_at is not None:
        out.append(Segment(open_at, None))
    return out


def gang_hosts(cfg: PlatformConfig, job: TrainJob) -> int:
    pool = cfg.pools.get(job.status.pool or "")
    if pool is None:
        return 0
    gang = job.spec.gang
    return gang_fit(pool.spec, gang.workers, gang.resources_per_worker, gang.placement_strategy, backend=platform_backend(cfg)).hosts


def job_cost(cfg: PlatformConfig, job: TrainJob, events: list[Event], now: float | None = None) -> tuple[float, float]:
    """(run seconds, USD) of a job so far."""
    now = time.time() if now is None else now
    pool = cfg.pools.get(job.status.pool or "")
    seconds = sum((s.end or now) - s.start for s in segments(events))
    if pool is None:
        return seconds, 0.0
    return seconds, seconds / 3600 * gang_hosts(cfg, job) * pool.spec.price_per_host_hour


def service_host_seconds(cfg: PlatformConfig, svc: Service, events: list[Event], now: float | None = None) -> dict[str, float]:
    """Host-seconds a Service held per pool, from its event log (see the module docstring)."""
    now = time.time() if now is None else now
    hosts = svc.spec.replica_group.hosts_per_replica
    base = max(svc.spec.autoscaling.min_replicas, 1)
    held: dict[str, tuple[int, str]] = {}  # workload id -> (groups, pool)
    out: dict[str, float] = {}
    last: float | None = None

    def accrue(until: float) -> None:
        if last is None:
            return
        for groups, pool in held.values():
            out[pool] = out.get(pool, 0.0) + groups * hosts * (until - last)

    for e in events:
        accrue(e.ts)
        last = e.ts
        wid = str(e.data.get("workload", ""))
        if e.type == "Admitted" and wid:
            flavor = cfg.flavors.get(str(e.data.get("flavor", "")))
            if flavor is not None:
                held[wid] = (base if wid.endswith(".base") else 1, flavor.spec.pool)
        elif e.type in ("Released", "Preempted") and wid:
            if wid.endswith(".base"):
                held.clear()  # the whole service lost its quota
            else:
                held.pop(wid, None)
        elif e.type == "Deleted":
            held.clear()
    accrue(now)
    return out


def service_cost(cfg: PlatformConfig, svc: Service, events: list[Event], now: float | None = None) -> tuple[float, float]:
    """(host seconds, USD) of a Service so far."""
    per_pool = service_host_seconds(cfg, svc, events, now)
    usd = sum(sec / 3600 * cfg.pools[p].spec.price_per_host_hour for p, sec in per_pool.items() if p in cfg.pools)
    return sum(per_pool.values()), usd
