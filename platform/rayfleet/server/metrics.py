"""Prometheus metrics, computed at scrape time from the store and the quota state: queue depth,
admissions, usage and borrowing, jobs by state, interruptions, MTTR / MTBI, cost per team and per
provisioning mode, each flavor's price per host-hour, and reservations' idle host-hours."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..api import JobState, PendingReason, TrainJob
from ..train.history import reliability
from .accounting import RESERVATION_IDLE, CostBook, flavor_prices, job_cost, service_cost

if TYPE_CHECKING:
    from .fleet import Fleet


class FleetCollector:
    def __init__(self, fleet: Fleet):
        self.fleet = fleet

    def collect(self):
        fleet = self.fleet
        now = fleet.clock()
        now_dt = datetime.fromtimestamp(now, UTC)
        leader = GaugeMetricFamily("rayfleet_leader", "1 when this replica runs the controller (it holds the controller "
                                   "lease, or runs alone), 0 on a follower.", labels=["role"])
        role = fleet.role()
        leader.add_metric([role], 0 if role == "follower" else 1)
        yield leader
        jobs = [r for r in fleet.store.list("TrainJob")]
        by_state = Counter((r.doc.spec.queue, r.doc.status.state.value) for r in jobs)  # type: ignore[attr-defined]
        g = GaugeMetricFamily("rayfleet_jobs", "Training jobs by queue and state.", labels=["queue", "state"])
        for (queue, state), n in sorted(by_state.items()):
            g.add_metric([queue, state], n)
        yield g
        pending = GaugeMetricFamily("rayfleet_queue_pending_workloads", "Workloads waiting for quota.", labels=["queue"])
        usage = GaugeMetricFamily("rayfleet_queue_usage", "Quota in use.", labels=["queue", "flavor", "resource"])
        borrowed = GaugeMetricFamily("rayfleet_queue_borrowed", "Quota borrowed from the cohort.", labels=["queue", "flavor", "resource"])
        lent = GaugeMetricFamily("rayfleet_queue_lent", "Nominal quota lent to the cohort.", labels=["queue", "flavor", "resource"])
        for name in fleet.config.queues:
            pending.add_metric([name], by_state.get((name, JobState.QUEUED.value), 0))
            u = fleet.controller.quota.usage(name)
            for (flavor, res), v in sorted(u.usage.items()):
                usage.add_metric([name, flavor, res], v)
            for (flavor, res), v in sorted(u.borrowed.items()):
                borrowed.add_metric([name, flavor, res], v)
            for (flavor, res), v in sorted(u.lent.items()):
                lent.add_metric([name, flavor, res], v)
        yield from (pending, usage, borrowed, lent)
        by_reason = GaugeMetricFamily("rayfleet_queue_pending_workloads_by_reason", "Training jobs waiting in each queue, by why they wait "
                                      "(TrainJobStatus.pendingReason: WaitingForQuota, ExceedsQuota, NoMatchingFlavor, ...).", labels=["queue", "reason"])
        reasons = Counter((r.doc.spec.queue, (r.doc.status.pending_reason or PendingReason.QUEUED).value)  # type: ignore[attr-defined]
                          for r in jobs if r.doc.status.state == JobState.QUEUED)  # type: ignore[attr-defined]
        for (queue, reason), n in sorted(reasons.items()):
            by_reason.add_metric([queue, reason], n)
        yield by_reason
        interruptions = CounterMetricFamily("rayfleet_job_interruptions", "Interruptions of training jobs.", labels=["queue", "reason"])
        counts = Counter((r.doc.spec.queue, i.reason) for r in jobs for i in r.doc.status.interruptions)  # type: ignore[attr-defined]
        for (queue, reason), n in sorted(counts.items()):
            interruptions.add_metric([queue, reason], n)
        yield interruptions
        # MTTR / MTBI: the one definition, rayfleet.train.history.reliability.
        mttr = GaugeMetricFamily("rayfleet_job_mttr_seconds", "Mean time to recover after an interruption (interrupted until running again).", labels=["job"])
        mtbi = GaugeMetricFamily("rayfleet_job_mtbi_seconds", "Mean running time between interruptions (time since the first start, less time interrupted, per interruption).", labels=["job"])
        cost = CounterMetricFamily("rayfleet_team_cost_usd", "Accelerator cost attributed to each team, training (train) and serving (serve).",
                                   labels=["team", "cost_center", "workload"])
        run_s = CounterMetricFamily("rayfleet_team_run_seconds", "Gang run time per team.", labels=["team"])
        serve_s = CounterMetricFamily("rayfleet_team_serve_host_seconds", "Host-seconds of replica groups granted to each team's services.", labels=["team"])
        team_cost: dict[str, float] = defaultdict(float)
        team_run: dict[str, float] = defaultdict(float)
        book = CostBook(fleet.config)
        for r in jobs:
            job: TrainJob = r.doc  # type: ignore[assignment]
            st = job.status
            rel = reliability(st.started_at, st.interruptions, until=st.finished_at or now_dt)
            if rel.mttr_s is not None:
                mttr.add_metric([job.name], rel.mttr_s)
            if rel.mtbi_s is not None:
                mtbi.add_metric([job.name], rel.mtbi_s)
            events = fleet.store.all_events("TrainJob", job.name, uid=job.metadata.uid)
            seconds, usd = job_cost(fleet.config, job, events, now)
            book.add_job(r.team or "", job, events, now)
            team_cost[r.team or ""] += usd
            team_run[r.team or ""] += seconds
        serve_cost: dict[str, float] = defaultdict(float)
        serve_hs: dict[str, float] = defaultdict(float)
        for r in fleet.store.iter_all("Service"):
            svc_events = fleet.store.all_events("Service", r.name, uid=r.doc.metadata.uid)  # type: ignore[attr-defined]
            host_s, usd = service_cost(fleet.config, r.doc, svc_events, now)  # type: ignore[arg-type]
            book.add_service(r.team or "", r.doc, svc_events, now)  # type: ignore[arg-type]
            serve_cost[r.team or ""] += usd
            serve_hs[r.team or ""] += host_s
        for team in sorted(set(team_cost) | set(serve_cost)):
            t = fleet.config.teams.get(team)
            center = t.spec.cost_center if t else ""
            if team in team_cost:
                cost.add_metric([team, center, "train"], team_cost[team])
                run_s.add_metric([team], team_run[team])
            if team in serve_cost:
                cost.add_metric([team, center, "serve"], serve_cost[team])
                serve_s.add_metric([team], serve_hs[team])
        yield from (mttr, mtbi, cost, run_s, serve_s)
        yield from _mode_families(fleet, book, now)


def _mode_families(fleet: Fleet, book: CostBook, now: float):
    """Cost by provisioning mode, prices by mode, and reservation idle time (``accounting``). Idle
    time counts from the first event the store recorded (when the platform first had work)."""
    price = GaugeMetricFamily("rayfleet_flavor_price_usd_per_host_hour", "Price of one host-hour of each flavor, in its pool's provisioning mode.",
                              labels=["flavor", "pool", "mode"])
    for flavor, pool, mode, usd in flavor_prices(fleet.config):
        price.add_metric([flavor, pool, mode], usd)
    by_mode = CounterMetricFamily("rayfleet_cost_usd", "Cost attributed to each team by provisioning mode (training and serving), "
                                  f"and reservations' idle hours under team \"\" and mode {RESERVATION_IDLE}.", labels=["team", "mode"])
    for (team, mode), use in book.by_team_mode().items():
        by_mode.add_metric([team, mode], use.usd)
    first = next(iter(fleet.store.events(limit=1)), None)
    since = first.ts if first is not None else now
    idle_usd = CounterMetricFamily("rayfleet_reservation_idle_usd", "Cost of reserved hosts no work used (reserved host-hours less used ones, at the pool's price).",
                                   labels=["pool"])
    idle_s = CounterMetricFamily("rayfleet_reservation_idle_host_seconds", "Reserved host-seconds no work used.", labels=["pool"])
    idle = book.idle(since, now)
    for line in idle:
        idle_usd.add_metric([line.pool], line.usd)
        idle_s.add_metric([line.pool], line.idle_host_seconds)
    if idle:
        by_mode.add_metric(["", RESERVATION_IDLE], sum(line.usd for line in idle))
    yield from (price, by_mode, idle_usd, idle_s)


def render(fleet: Fleet) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(FleetCollector(fleet))
    return generate_latest(registry), CONTENT_TYPE_LATEST
