"""The fleet simulator's driver: the real control service over the simulated backend, on
simulated time.

:func:`simulate_fleet` builds what ``rayfleet serve`` runs (``server.main.assemble``: the SQLite
store in a temporary directory, quota, the controller and the service manager) over a
:class:`~rayfleet.backends.sim.SimBackend` that shares one simulated clock with it, and never
starts the controller's thread: it calls ``controller.run_once(now)`` itself, stepping time from
one interesting moment to the next (event-driven):

- the next submission of the stream, the sim's next event (a host ready, lost or reclaimed, a run
  running or ending, a group ready, a load change);
- the controller's own deadlines, read from the stored jobs: a backoff's ``notBefore``, a
  compute-class step's ``waitForCapacity`` and ``resubmitAfter``, ``maxRunDuration``, a notice's
  deadline (and the moment before it when the controller stops the gang); calendar windows
  opening, draining and closing;
- one controller interval after a pass that wrote an event (the real controller's next tick);
- the next queue-usage sample; and never more than ``maxStep`` while anything is in flight, so a
  time rule the driver cannot foresee is seen within that bound.

Everything that varies between runs (uids, the temporary directory) stays out of the report, and
the sim draws its randomness from the scenario's seed, so one config and one scenario give one
byte-identical JSON report.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from ..api import JobState, Service, TrainJob
from ..backends.sim import SimBackend
from ..capacity import fallback, provisioning
from ..config import PlatformConfig
from ..server.auth import Principal
from ..server.fleet import Fleet
from ..server.main import assemble
from ..server.services import ACTIVE as SERVICE_ACTIVE
from ..server.store import Event
from ..server.transitions import NOTICE_LEAD_S
from .figures import policy_figures
from .policies import POLICIES, apply_policy
from .report import Recorder, build_report
from .scenario import FleetScenario, Submission, submissions

#: The controller's tick (``assemble``'s default): the delay before the pass after one that changed something.
CONTROLLER_INTERVAL = 1.0
#: How far simulated time may go without ``--until`` (the longest duration a scenario can name).
LIMIT_S = 90 * 86400.0
_OPEN = [s.value for s in JobState if not s.terminal]
ADMIN = Principal(team=None, admin=True, label="fleet-sim")


class SimClock:
    """The one clock of the simulation: the store, the controller and the sim all read it."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def build_sim(config: PlatformConfig, scenario: FleetScenario, clock: SimClock, *, file: str | None = None) -> SimBackend:
    """The sim of the config's cluster (its pools and ``spec.sim`` settings) scripted by the
    scenario (which takes the place of ``spec.sim.scenario``)."""
    cluster = config.cluster
    spec = cluster.spec if cluster else None
    settings = spec.sim if spec else None
    wanted = spec.pools if spec and spec.pools else list(config.pools)
    pools = {p: config.pools[p].spec for p in wanted if p in config.pools}
    sim = SimBackend(pools, clock=clock, seed=settings.seed if settings else 0, cluster_name=cluster.name if cluster else "fleet-sim",
                     provisioning_delay=settings.provisioning_delay if settings else 0.0,
                     provisioning_jitter=settings.provisioning_jitter if settings else 0.0,
                     default_runtime=settings.default_runtime if settings else 30.0)
    scenario.check_against({p: sim.pool(p).hosts() for p in pools}, file=file)
    sim.apply(scenario, start=None)
    for entry in scenario.jobs:
        fields = entry.run_fields()
        for name in entry.names() if fields else []:
            base = scenario.run_script(name) or scenario.defaults.run
            sim.script_run(name, base.model_copy(update=fields))
    return sim


def job_work(sim: SimBackend, scenario: FleetScenario) -> dict[str, tuple[float, float]]:
    """Each scenario job's scripted work, (runtime seconds, seconds a step), as the sim runs it:
    for the goodput figure."""
    return {name: sim.scripted_work(name) for entry in scenario.jobs for name in entry.names()}


class FailedRequests:
    """The sim's count of a service's failed requests so far, for the recorder; None for a service
    whose script sends no requests (``requestRate`` 0: nothing is modelled) or that the sim does
    not run. Asked for every service each pass, so which services send requests is looked up once
    per name (the scenario does not change)."""

    def __init__(self, sim: SimBackend, scenario: FleetScenario):
        self.sim, self.scenario = sim, scenario
        self._modelled: dict[str, bool] = {}

    def __call__(self, name: str) -> int | None:
        modelled = self._modelled.get(name)
        if modelled is None:
            script = self.scenario.service_script(name) or self.scenario.defaults.service
            modelled = self._modelled[name] = script.request_rate > 0
        return self.sim.failed_requests(name) if modelled else None


def calendar_times(config: PlatformConfig) -> list[float]:
    """When each calendar window opens, starts draining and closes."""
    out = []
    for pool in config.pools.values():
        bounds, drain = provisioning.window_bounds(pool.spec), provisioning.drain_at(pool.spec)
        if bounds is not None and drain is not None:
            out += [bounds[0], drain, bounds[1]]
    return sorted(out)


def controller_deadlines(config: PlatformConfig, jobs: Iterable[TrainJob]) -> list[float]:
    """Times at which the controller decides something about a stored job by the clock alone."""
    out = []
    for job in jobs:
        out += job_deadlines(config, job)
    return out


def job_deadlines(config: PlatformConfig, job: TrainJob) -> list[float]:
    """:func:`controller_deadlines` of one job (they depend on the job and the config alone)."""
    out: list[float] = []
    st = job.status
    if st.state == JobState.QUEUED and st.not_before is not None:
        out.append(st.not_before.timestamp())
    if st.state == JobState.STARTING and st.launched_at is not None:
        step = fallback.step_of(config, job.spec.queue, st.flavor)
        launched = st.launched_at.timestamp()
        if step is not None:
            cw = st.capacity_wait
            since = cw.since.timestamp() if cw is not None and cw.flavor == st.flavor else launched
            if step.wait_for_capacity is not None:
                out.append(since + step.wait_for_capacity)
            if step.resubmit_after is not None:
                out.append(launched + step.resubmit_after)
    if st.state in (JobState.STARTING, JobState.RUNNING) and job.spec.max_run_duration and st.started_at is not None:
        out.append(st.started_at.timestamp() + job.spec.max_run_duration + 1e-3)
    notice = st.notice
    if notice is not None and notice.deadline is not None:
        # the controller stops the gang NOTICE_LEAD_S before the deadline if no newer checkpoint came
        out += [notice.deadline.timestamp() - NOTICE_LEAD_S, notice.deadline.timestamp()]
    return out


@dataclass
class _Loop:
    fleet: Fleet
    sim: SimBackend
    clock: SimClock
    subs: list[Submission]
    t0: float
    end: float
    until_given: bool
    max_step: float
    recorder: Recorder
    calendar: list[float]
    last_event: int = 0
    # job name -> (the stored job, its deadlines): a job read again unchanged is the store's same
    # document (its decode memo), so its deadlines are not worked out again
    _deadlines: dict[str, tuple[TrainJob, list[float]]] = field(default_factory=dict)

    def _open_deadlines(self, jobs: list[TrainJob]) -> list[float]:
        """:func:`controller_deadlines` of the open jobs, worked out only for jobs changed since the last pass."""
        memo: dict[str, tuple[TrainJob, list[float]]] = {}
        out: list[float] = []
        for job in jobs:
            hit = self._deadlines.get(job.name)
            times = hit[1] if hit is not None and hit[0] is job else job_deadlines(self.fleet.config, job)
            memo[job.name] = (job, times)
            out += times
        self._deadlines = memo
        return out

    def _submit(self, s: Submission) -> None:
        if s.kind == "job":
            self.fleet.submit_job(s.doc, ADMIN)  # type: ignore[arg-type]
        elif s.kind == "service":
            self.fleet.deploy_service(s.doc, ADMIN)  # type: ignore[arg-type]
        else:
            self.fleet.delete_service(s.name, ADMIN)

    def _new_events(self) -> bool:
        changed = False
        while True:
            # (Store.events is annotated list[Event] inside a class with a method named list)
            batch = cast("list[Event]", self.fleet.store.events(after=self.last_event, limit=1000))
            if not batch:
                return changed
            self.last_event = max(e.id for e in batch)
            changed = True

    def run(self) -> str:
        now, i = self.t0, 0
        while True:
            self.clock.t = now
            while i < len(self.subs) and self.t0 + self.subs[i].at <= now:
                self._submit(self.subs[i])
                i += 1
            self.fleet.controller.run_once(now)
            open_jobs: list[TrainJob] = [r.doc for r in self.fleet.store.list("TrainJob", states=_OPEN, shared=True)]  # type: ignore[misc]
            services: list[Service] = [r.doc for r in self.fleet.store.list("Service", states=SERVICE_ACTIVE + ["DELETING"], shared=True)]  # type: ignore[misc]
            self.recorder.observe(now, services, open_jobs)
            changed = self._new_events()
            nxt_sim = self.sim.next_event_at()
            if now >= self.end:
                return "until" if self.until_given else "limit"
            # Done: every submission made, every job ended, and, while a service is up, nothing left
            # in the sim's script (its load). Without a service the sim's later events (a calendar
            # window closing, an idle DWS host's end of life) change nothing any job sees.
            if not self.until_given and i >= len(self.subs) and not open_jobs and (
                    not services or nxt_sim is None or nxt_sim <= now):
                return "done"
            candidates = [self.end, self.recorder.next_sample]
            if i < len(self.subs):
                candidates.append(self.t0 + self.subs[i].at)
            if nxt_sim is not None:
                candidates.append(nxt_sim)
            candidates += self._open_deadlines(open_jobs)
            candidates += [t for t in self.calendar if t > now]
            if changed:
                candidates.append(now + CONTROLLER_INTERVAL)
            if open_jobs or services:
                candidates.append(now + self.max_step)
            now = min(c for c in candidates if c > now + 1e-9)


def simulate_fleet(config: PlatformConfig, scenario: FleetScenario, *, until: float | None = None, file: str | None = None,
                   policy: str = "rayfleet") -> dict:
    """Run the scenario's stream through the real control service on the sim and report what
    happened (JSON-ready; see ``docs/capacity.md``). ``until``: seconds of simulated time
    (default: the scenario's ``until``, else until every job ended and nothing is scheduled).
    ``policy``: one of :data:`.policies.POLICIES`, applied to the config first (docs/scale.md)."""
    applied = apply_policy(config, policy)
    config = applied.config
    subs = submissions(config, scenario, file=file)
    t0 = scenario.start_epoch()
    clock = SimClock(t0)
    sim = build_sim(config, scenario, clock, file=file)
    sim.up()
    horizon = until if until is not None else scenario.until
    # The store is the real one, thrown away afterwards: on a RAM disk where there is one, as its
    # synchronous=FULL commits are only there for crash safety.
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="rayfleet-fleetsim-", dir=scratch) as data_dir:
        fleet = assemble(config, sim, data_dir, clock=clock, controller_interval=CONTROLLER_INTERVAL,
                         heads_per_queue=applied.heads_per_queue)
        try:
            recorder = Recorder(fleet, t0, scenario.sample_every, FailedRequests(sim, scenario), sim.hosts)
            loop = _Loop(fleet, sim, clock, subs, t0, t0 + (horizon if horizon is not None else LIMIT_S), horizon is not None,
                         scenario.max_step, recorder, calendar_times(config))
            stopped_by = loop.run()
            seed = scenario.seed if scenario.seed is not None else (config.cluster.spec.sim.seed if config.cluster else 0)
            report = build_report(fleet, recorder, clock.t, stopped_by=stopped_by, seed=seed)
        finally:
            fleet.close()
    report["policy"] = applied.describe()
    report["figures"] = policy_figures(report, config, job_work(sim, scenario))
    return report


def simulate_policies(config: PlatformConfig, scenario: FleetScenario, policies: Iterable[str] = POLICIES, *,
                      until: float | None = None, file: str | None = None) -> dict[str, dict]:
    """The same scenario under each policy, one report each, keyed by policy."""
    return {p: simulate_fleet(config, scenario, until=until, file=file, policy=p) for p in policies}
