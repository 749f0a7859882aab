"""Per-job run segments from the event log: cost per team and the inputs of MTTR / MTBI.

A segment starts when an attempt is running (``Running`` / ``Recovered``) and ends when it stops
(``Requeued``, ``Succeeded``, ``Failed``, ``Stopped``, ``Stopping``). Cost = hosts x price per
host-hour x hours, hosts being the gang's hosts on the pool it ran on.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..api import TrainJob
from ..config import PlatformConfig
from .admission import workers_per_host
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
    per_host = max(1, workers_per_host(pool.spec, job.spec.gang.resources_per_worker))
    return math.ceil(job.spec.gang.workers / per_host)


def job_cost(cfg: PlatformConfig, job: TrainJob, events: list[Event], now: float | None = None) -> tuple[float, float]:
    """(run seconds, USD) of a job so far."""
    now = time.time() if now is None else now
    pool = cfg.pools.get(job.status.pool or "")
    seconds = sum((s.end or now) - s.start for s in segments(events))
    if pool is None:
        return seconds, 0.0
    return seconds, seconds / 3600 * gang_hosts(cfg, job) * pool.spec.price_per_host_hour
