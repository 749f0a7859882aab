"""What a fleet simulation reports, from the store's records and event log (the same sources as
``/metrics`` and the API) and what was sampled while it ran.

Times are seconds after the simulation's start. Nothing that differs between two runs of the same
inputs (uids, run ids, paths) is reported, so the JSON is byte-identical for one config, scenario
and seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..api import GPU, TPU, JobState, Service, TrainJob, format_quantity
from ..backends.base import HostInfo, HostPhase
from ..server.accounting import RESERVATION_IDLE, CostBook, flavor_prices, gang_hosts, mode_of, run_segments
from ..server.fleet import Fleet
from ..server.store import Event

# Events that end an attempt (its outcome).
_ATTEMPT_END = {"Requeued", "Succeeded", "Failed", "Stopped", "DeadlineExceeded", "CapacityFallback", "CapacityResubmit"}
_LAUNCHED = {JobState.STARTING.value, JobState.RUNNING.value, JobState.STOPPING.value, JobState.ADMITTED.value}
FAILED_REQUESTS_NOTE = ("failedRequests: null for a service without a requestRate (the sim models no requests for it); "
                        "replicas over time are reported")


def _r(x: float, digits: int = 3) -> float:
    return round(x, digits) + 0.0   # + 0.0: no -0.0


class Recorder:
    """Samples taken while the simulation runs: queue usage and each pool's hosts and accelerators
    in use every ``sample_every`` seconds, and each service's replica counts and failed requests
    whenever they change.

    ``failed_requests(name)``: the backend's count of the service's failed requests so far
    (``ServiceRunStatus.failed_requests``; None while it has no such service or counts none). The
    last count seen is kept, so a deleted service keeps its total. ``hosts()``: the backend's hosts
    (``CapacityBackend.hosts``)."""

    def __init__(self, fleet: Fleet, t0: float, sample_every: float,
                 failed_requests: Callable[[str], int | None] = lambda name: None,
                 hosts: Callable[[], list[HostInfo]] = lambda: []):
        self.fleet, self.t0, self.sample_every = fleet, t0, sample_every
        self.next_sample = t0
        self.queues: dict[str, list[dict[str, Any]]] = {q: [] for q in sorted(fleet.config.queues)}
        self.pools: dict[str, list[dict[str, Any]]] = {p: [] for p in sorted(fleet.config.pools)}
        self.replicas: dict[str, list[dict[str, Any]]] = {}
        self._hosts = hosts
        self.failed: dict[str, int] = {}
        self._failed_requests = failed_requests
        self._last: dict[str, tuple] = {}
        # job name -> (when its first estimate was seen, the estimated start or None): the first
        # estimate of its first wait (never launched), the one the accuracy figure judges
        self.first_estimates: dict[str, tuple[float, float | None]] = {}

    def observe(self, now: float, services: list[Service], jobs: list[TrainJob]) -> None:
        """``jobs``: the jobs not yet ended (the queued and launched ones a sample counts; the
        ended ones count in no sample), so a sample costs what is in flight, not every job ever
        submitted."""
        for svc in services:
            st = svc.status
            failed = self._failed_requests(svc.name)
            if failed is not None:
                self.failed[svc.name] = failed
            key = (st.state.value, st.replicas_wanted, st.replicas_granted, st.replicas_running, st.flavor, self.failed.get(svc.name))
            if self._last.get(svc.name) != key:
                self._last[svc.name] = key
                self.replicas.setdefault(svc.name, []).append(
                    {"t": _r(now - self.t0), "state": key[0], "wanted": key[1], "granted": key[2], "running": key[3], "flavor": key[4],
                     "failedRequests": key[5]})
        for job in jobs:
            st = job.status
            if st.state == JobState.QUEUED and st.attempt == 0 and st.estimated_start_reason and job.name not in self.first_estimates:
                self.first_estimates[job.name] = (now, st.estimated_start.timestamp() if st.estimated_start is not None else None)
        while self.next_sample <= now + 1e-9:
            self.sample(self.next_sample, jobs)
            self.next_sample += self.sample_every

    def sample(self, t: float, open_jobs: list[TrainJob]) -> None:
        cfg = self.fleet.config
        jobs = Counter((j.spec.queue, j.status.state.value) for j in open_jobs)
        in_use: Counter[str] = Counter()
        usages = self.fleet.controller.quota.usages()
        for name, series in self.queues.items():
            u = usages[name]
            usage: dict[str, dict[str, str | int]] = {}
            for (flavor, res), v in sorted(u.usage.items()):
                if v:
                    usage.setdefault(flavor, {})[res] = format_quantity(res, v)
                    if res in (GPU, TPU) and flavor in cfg.flavors:
                        in_use[cfg.flavors[flavor].spec.pool] += v
            series.append({"t": _r(t - self.t0), "queued": jobs.get((name, JobState.QUEUED.value), 0),
                           "admitted": sum(n for (q, s), n in jobs.items() if q == name and s in _LAUNCHED), "usage": usage})
        up: Counter[str] = Counter(h.pool for h in self._hosts() if h.phase != HostPhase.PROVISIONING)
        for pool, series in self.pools.items():
            spec = cfg.pools[pool].spec
            series.append({"t": _r(t - self.t0), "hostsUp": up.get(pool, 0), "accelerators": up.get(pool, 0) * spec.accelerators_per_host,
                           "acceleratorsInUse": in_use.get(pool, 0), "acceleratorsMax": spec.max_hosts * spec.accelerators_per_host})

    def finish(self, now: float, services: list[Service], jobs: list[TrainJob]) -> None:
        """A last sample at the end, and the services' counts as they end (``jobs``: those not ended)."""
        self.observe(now, services, jobs)
        if not any(s and s[-1]["t"] == _r(now - self.t0) for s in self.queues.values()):
            self.sample(now, jobs)


def _attempts(fleet: Fleet, job: TrainJob, events: list[Event], t0: float, now: float) -> list[dict[str, Any]]:
    cfg = fleet.config
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for e in events:
        if e.type == "Admitted" and e.data.get("flavor"):
            flavor = str(e.data["flavor"])
            pool = cfg.flavors[flavor].spec.pool if flavor in cfg.flavors else None
            cur = {"attempt": int(e.data.get("attempt") or len(out) + 1), "flavor": flavor, "pool": pool,
                   "mode": mode_of(cfg, pool) if pool else None, "admitted": _r(e.ts - t0), "launched": None, "running": None,
                   "ended": None, "outcome": None, "stopReason": None}
            out.append(cur)
        elif cur is None:
            continue
        elif e.type == "Launched" and cur["launched"] is None:
            cur["launched"] = _r(e.ts - t0)
        elif e.type in ("Running", "Recovered") and cur["running"] is None:
            cur["running"] = _r(e.ts - t0)
        elif e.type == "Stopping":
            cur["stopReason"] = e.data.get("reason")
        elif e.type in _ATTEMPT_END and cur["ended"] is None:
            cur["ended"], cur["outcome"] = _r(e.ts - t0), e.type
    segs = run_segments(cfg, job, events)
    for a in out:
        seconds = sum((s.end if s.end is not None else now) - s.start for s in segs if s.attempt == a["attempt"])
        hosts = gang_hosts(cfg, job, a["pool"]) if a["pool"] else 0
        price = cfg.pools[a["pool"]].spec.price_per_host_hour if a["pool"] in cfg.pools else 0.0
        a["hosts"] = hosts
        a["runSeconds"] = _r(seconds)
        a["costUsd"] = _r(seconds * hosts / 3600 * price, 4)
    return out


def job_report(fleet: Fleet, team: str, job: TrainJob, events: list[Event], book: CostBook, t0: float, now: float) -> dict[str, Any]:
    st = job.status
    usage = book.add_job(team, job, events, now)
    run_s = sum(u.seconds for u in usage.values())
    submitted = st.submitted_at.timestamp() if st.submitted_at else t0
    ended = st.finished_at.timestamp() if st.finished_at else now
    kinds: Counter[str] = Counter(str(i.reason) for i in st.interruptions if i.reason != "failure")
    kinds.update({"capacity-fallback": sum(1 for e in events if e.type == "CapacityFallback"),
                  "capacity-resubmit": sum(1 for e in events if e.type == "CapacityResubmit")})
    attempts = _attempts(fleet, job, events, t0, now)
    return {
        "name": job.name, "queue": job.spec.queue, "team": team or None, "priorityClass": job.spec.priority_class,
        "state": st.state.value, "reason": st.reason, "message": st.message,
        "attempts": st.attempt, "restarts": st.restarts, "failures": sum(1 for i in st.interruptions if i.reason == "failure"),
        "disruptions": st.disruptions, "disruptionsByKind": {k: n for k, n in sorted(kinds.items()) if n},
        "flavorsTried": list(dict.fromkeys(a["flavor"] for a in attempts)),
        "flavors": attempts,
        "submitted": _r(submitted - t0), "firstRunning": _r(st.started_at.timestamp() - t0) if st.started_at else None,
        "finished": _r(st.finished_at.timestamp() - t0) if st.finished_at else None,
        "waitSeconds": _r(max(0.0, ended - submitted - run_s)), "runSeconds": _r(run_s),
        "firstAdmitted": attempts[0]["admitted"] if attempts else None,
        "lastCheckpointStep": st.last_checkpoint_step,
        "costUsd": _r(sum(u.usd for u in usage.values()), 4),
    }


def service_report(team: str, svc: Service, events: list[Event], book: CostBook, replicas: list[dict[str, Any]], now: float,
                   failed_requests: int | None = None) -> dict[str, Any]:
    usage = book.add_service(team, svc, events, now)
    st = svc.status
    return {
        "name": svc.name, "queue": svc.spec.queue, "team": team or None, "state": st.state.value, "flavor": st.flavor,
        "replicas": replicas, "failedRequests": failed_requests,
        "hostHours": _r(sum(u.host_seconds for u in usage.values()) / 3600, 4),
        "costUsd": _r(sum(u.usd for u in usage.values()), 4),
    }


def cost_report(book: CostBook, t0: float, now: float) -> dict[str, Any]:
    cfg = book.cfg
    lines: list[dict[str, Any]] = [
        {"team": team or None, "workload": workload, "mode": mode, "hostHours": _r(use.host_seconds / 3600, 4), "usd": _r(use.usd, 4)}
        for (team, workload, mode), use in sorted(book.lines.items())]
    idle = book.idle(t0, now)
    lines += [{"team": None, "workload": None, "mode": RESERVATION_IDLE, "pool": i.pool, "hostHours": _r(i.idle_host_seconds / 3600, 4),
               "usd": _r(i.usd, 4)} for i in idle]
    by_team: Counter[str] = Counter()
    by_mode: Counter[str] = Counter()
    for line in lines:
        by_mode[line["mode"]] += line["usd"]
        if line["team"] is not None:
            by_team[line["team"]] += line["usd"]
    return {
        "prices": [{"flavor": f, "pool": p, "mode": m, "usdPerHostHour": usd} for f, p, m, usd in flavor_prices(cfg)],
        "lines": lines,
        "byTeam": {k: _r(v, 4) for k, v in sorted(by_team.items())},
        "byMode": {k: _r(v, 4) for k, v in sorted(by_mode.items())},
        "reservationIdle": [{"pool": i.pool, "mode": i.mode, "reservedHostHours": _r(i.reserved_host_seconds / 3600, 4),
                             "usedHostHours": _r(i.used_host_seconds / 3600, 4), "idleHostHours": _r(i.idle_host_seconds / 3600, 4),
                             "usd": _r(i.usd, 4)} for i in idle],
        "totalUsd": _r(sum(line["usd"] for line in lines), 4),
    }


def build_report(fleet: Fleet, recorder: Recorder, now: float, *, stopped_by: str, seed: int) -> dict[str, Any]:
    t0 = recorder.t0
    services = [r for r in fleet.store.list("Service")]
    records = fleet.store.list("TrainJob")
    recorder.finish(now, [r.doc for r in services], [r.doc for r in records if not r.doc.status.state.terminal])  # type: ignore[misc, attr-defined]
    book = CostBook(fleet.config)
    jobs = [job_report(fleet, r.team or "", r.doc, fleet.store.all_events("TrainJob", r.name, uid=r.doc.metadata.uid), book, t0, now)  # type: ignore[arg-type, attr-defined]
            for r in records]
    for j in jobs:
        first = recorder.first_estimates.get(j["name"])
        j["firstEstimate"] = None if first is None else {"seen": _r(first[0] - t0), "start": None if first[1] is None else _r(first[1] - t0)}
    svcs = [service_report(r.team or "", r.doc, fleet.store.all_events("Service", r.name, uid=r.doc.metadata.uid), book,  # type: ignore[arg-type, attr-defined]
                           recorder.replicas.get(r.name, []), now, recorder.failed.get(r.name)) for r in services]
    states = Counter(j["state"] for j in jobs)
    return {
        "start": datetime.fromtimestamp(t0, UTC).isoformat().replace("+00:00", "Z"),
        "seconds": _r(now - t0), "stoppedBy": stopped_by, "seed": seed, "controllerPasses": fleet.controller.cycles,
        "summary": {"jobs": len(jobs), "byState": dict(sorted(states.items())), "services": len(svcs),
                    "restarts": sum(j["restarts"] for j in jobs), "disruptions": sum(j["disruptions"] for j in jobs)},
        "jobs": jobs,
        "services": svcs,
        "queues": recorder.queues,
        "pools": recorder.pools,
        "cost": cost_report(book, t0, now),
        "notes": [FAILED_REQUESTS_NOTE] if any(s["failedRequests"] is None for s in svcs) else [],
    }
