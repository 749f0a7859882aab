"""Cost from the event log, for training and serving, by team and by provisioning mode; a
reservation's idle hours; and the inputs of MTTR / MTBI.

Training: a segment starts when an attempt is running (``Running`` / ``Recovered``) and ends when
it stops (``Requeued``, ``Succeeded``, ``Failed``, ``Stopped``, ``Stopping``, ...). Each segment is
charged on the pool of the flavor its attempt was admitted on (the ``Admitted`` event before it),
so a job that moved along its compute class pays each pool's price for the time it ran there:
hosts of the gang on that pool x the pool's price per host-hour x hours.

Serving: a Service is charged for the replica groups quota granted it, from each group's admission
(``Admitted``) to its return (``Released`` on scale-down, ``Preempted`` on reclaim, ``Deleted``):
groups x hosts per group x the admitted pool's price per host-hour. Granted groups are what the
team holds: on GKE, the nodes behind them are provisioned for it whether load fills them or not.

Provisioning mode: a pool has one (``spec.provisioning.mode``: reservation, dws-flex,
dws-calendar, spot, on-demand), and its ``pricePerHostHour`` is the price of its machine type in
that mode; cost lines are grouped by (team, mode). Which pools are paid whether used or not is
``capacity.provisioning.pays_when_idle`` (a reservation; a calendar booking, for its window): their **idle** host-hours (reserved hosts x hours, less
the host-hours work was charged for on it) are a cost line of their own, ``reservation-idle``,
per pool, attributed to no team.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from ..api import PoolSpec, Service, TrainJob
from ..backends.placement import gang_fit
from ..capacity import provisioning
from ..config import PlatformConfig
from .admission import platform_backend
from .store import Event

_START = {"Running", "Recovered"}
_END = {"Requeued", "Succeeded", "Failed", "Stopped", "Stopping", "DeadlineExceeded", "CapacityFallback", "CapacityResubmit"}

#: The mode label of the cost line of reserved hosts nobody used.
RESERVATION_IDLE = "reservation-idle"


@dataclass(frozen=True)
class Segment:
    start: float
    end: float | None


@dataclass(frozen=True)
class RunSegment:
    """One stretch of an attempt running, on the pool its attempt was admitted to."""

    attempt: int
    flavor: str | None
    pool: str | None
    start: float
    end: float | None


def segments(events: list[Event]) -> list[Segment]:
    return [Segment(s.start, s.end) for s in _run_segments(events, {}, None)]


def _run_segments(events: list[Event], flavor_pool: dict[str, str], default_pool: str | None) -> list[RunSegment]:
    out: list[RunSegment] = []
    flavor: str | None = None
    attempt = 0
    open_at: float | None = None
    for e in events:
        if e.type == "Admitted" and e.data.get("flavor"):
            flavor = str(e.data["flavor"])
            attempt = int(e.data.get("attempt") or attempt + 1)
        if e.type in _START and open_at is None:
            open_at = e.ts
        elif e.type in _END and open_at is not None:
            out.append(RunSegment(attempt, flavor, flavor_pool.get(flavor or "", default_pool), open_at, e.ts))
            open_at = None
    if open_at is not None:
        out.append(RunSegment(attempt, flavor, flavor_pool.get(flavor or "", default_pool), open_at, None))
    return out


def run_segments(cfg: PlatformConfig, job: TrainJob, events: list[Event]) -> list[RunSegment]:
    """A job's running stretches, each with the flavor and pool of its attempt (events written
    before flavors were recorded fall back to the job's current pool)."""
    flavor_pool = {name: f.spec.pool for name, f in cfg.flavors.items()}
    return _run_segments(events, flavor_pool, job.status.pool)


def gang_hosts(cfg: PlatformConfig, job: TrainJob, pool: str | None = None) -> int:
    """Hosts the job's gang takes on ``pool`` (default: the pool of its current attempt)."""
    p = cfg.pools.get(pool if pool is not None else job.status.pool or "")
    if p is None:
        return 0
    gang = job.spec.gang
    return gang_fit(p.spec, gang.workers, gang.resources_per_worker, gang.placement_strategy, backend=platform_backend(cfg)).hosts


def mode_of(cfg: PlatformConfig, pool: str) -> str:
    """The pool's provisioning mode (reservation, dws-flex, dws-calendar, spot, on-demand)."""
    p = cfg.pools.get(pool)
    return p.spec.provisioning.mode if p is not None else "unknown"


def price(cfg: PlatformConfig, pool: str) -> float:
    p = cfg.pools.get(pool)
    return provisioning.price_per_host_hour(p.spec) if p is not None else 0.0


@dataclass
class PoolUse:
    """What a job or service used of one pool: run seconds, host-seconds and USD."""

    seconds: float = 0.0
    host_seconds: float = 0.0
    usd: float = 0.0


def job_usage(cfg: PlatformConfig, job: TrainJob, events: list[Event], now: float | None = None) -> dict[str, PoolUse]:
    """Per pool, what a job's running attempts used so far."""
    now = time.time() if now is None else now
    out: dict[str, PoolUse] = {}
    for s in run_segments(cfg, job, events):
        if s.pool is None:
            continue
        u = out.setdefault(s.pool, PoolUse())
        seconds = (s.end if s.end is not None else now) - s.start
        hosts = gang_hosts(cfg, job, s.pool)
        u.seconds += seconds
        u.host_seconds += seconds * hosts
        u.usd += seconds * hosts / 3600 * price(cfg, s.pool)
    return out


def job_cost(cfg: PlatformConfig, job: TrainJob, events: list[Event], now: float | None = None) -> tuple[float, float]:
    """(run seconds, USD) of a job so far, each attempt on its own pool's price."""
    now = time.time() if now is None else now
    seconds = sum((s.end if s.end is not None else now) - s.start for s in run_segments(cfg, job, events))
    return seconds, sum(u.usd for u in job_usage(cfg, job, events, now).values())


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
    usd = sum(sec / 3600 * price(cfg, p) for p, sec in per_pool.items() if p in cfg.pools)
    return sum(per_pool.values()), usd


# ---------------------------------------------------------------- reserved capacity


def reserved_host_seconds(spec: PoolSpec, since: float, now: float) -> float | None:
    """Host-seconds paid for in [since, now] whether used or not, for a pool whose idle hosts
    still cost (``capacity.provisioning.pays_when_idle``: a reservation, a calendar booking):
    ``maxReplicas`` worth of hosts, inside the booked window where the pool has one; None for
    modes that pay only for what runs."""
    if not provisioning.pays_when_idle(spec):
        return None
    bounds = provisioning.window_bounds(spec)
    start, end = (since, now) if bounds is None else (max(since, bounds[0]), min(now, bounds[1]))
    return spec.max_hosts * max(0.0, end - start)


@dataclass(frozen=True)
class IdleLine:
    pool: str
    mode: str
    reserved_host_seconds: float
    used_host_seconds: float
    idle_host_seconds: float
    usd: float


@dataclass
class CostBook:
    """Cost lines of a fleet, grouped by (team, workload, mode), and the host-seconds work used
    per pool (for reservation idle time). Fed job by job and service by service."""

    cfg: PlatformConfig
    lines: dict[tuple[str, str, str], PoolUse] = field(default_factory=lambda: defaultdict(PoolUse))
    used: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def _add(self, team: str, workload: str, pool: str, use: PoolUse) -> None:
        line = self.lines[(team, workload, mode_of(self.cfg, pool))]
        line.seconds += use.seconds
        line.host_seconds += use.host_seconds
        line.usd += use.usd
        self.used[pool] += use.host_seconds

    def add_job(self, team: str, job: TrainJob, events: list[Event], now: float) -> dict[str, PoolUse]:
        usage = job_usage(self.cfg, job, events, now)
        for pool, use in sorted(usage.items()):
            self._add(team, "train", pool, use)
        return usage

    def add_service(self, team: str, svc: Service, events: list[Event], now: float) -> dict[str, PoolUse]:
        usage = {p: PoolUse(seconds=0.0, host_seconds=hs, usd=hs / 3600 * price(self.cfg, p))
                 for p, hs in service_host_seconds(self.cfg, svc, events, now).items() if p in self.cfg.pools}
        for pool, use in sorted(usage.items()):
            self._add(team, "serve", pool, use)
        return usage

    def idle(self, since: float, now: float) -> list[IdleLine]:
        """Per reservation (or calendar booking) pool: reserved host-seconds in [since, now], the
        host-seconds work was charged for there, and the rest as idle, at the pool's price."""
        out = []
        for name, pool in sorted(self.cfg.pools.items()):
            reserved = reserved_host_seconds(pool.spec, since, now)
            if not reserved:
                continue  # not a reservation, or nothing booked in [since, now] (a calendar window not open yet)
            used = self.used.get(name, 0.0)
            idle = max(0.0, reserved - used)
            out.append(IdleLine(name, pool.spec.provisioning.mode, reserved, used, idle, idle / 3600 * pool.spec.price_per_host_hour))
        return out

    def by_team_mode(self) -> dict[tuple[str, str], PoolUse]:
        """(team, mode) -> host-seconds and USD, training and serving together."""
        out: dict[tuple[str, str], PoolUse] = defaultdict(PoolUse)
        for (team, _workload, mode), use in self.lines.items():
            line = out[(team, mode)]
            line.seconds += use.seconds
            line.host_seconds += use.host_seconds
            line.usd += use.usd
        return dict(sorted(out.items()))


def flavor_prices(cfg: PlatformConfig) -> list[tuple[str, str, str, float]]:
    """(flavor, pool, mode, USD per host-hour) of every flavor."""
    return [(name, f.spec.pool, mode_of(cfg, f.spec.pool), price(cfg, f.spec.pool)) for name, f in sorted(cfg.flavors.items())]
