"""The controller loop: the one owner of workload status.

Woken by a submission, a stop, or a tick, one pass does, in order:
1. sync: read each launched run's state from the backend and move jobs on, recording interruptions
   and recoveries, and stop jobs past their deadline;
2. finish stops: carry out pending stops (user stops, preemptions) and requeue preempted gangs;
3. quota: apply quota-schedule ticks, run one quota cycle over every pending workload, write the
   decisions (admit on a flavor, preempt victims, wait with an explanation);
4. launch: start every admitted attempt on the backend.

Every decision is written to the store before it is acted on, keyed by job id + attempt number, so
a crash between the two is repaired on restart: ADMITTED jobs are launched (idempotent per run id)
or adopted, STOPPING jobs are stopped again, and launched runs the backend no longer knows are
requeued as lost.

The rules (what a report, a decision or a stop does to a job) are in :mod:`.transitions`; this
module reads, calls them, writes their result and carries out their actions. A pass takes ``now``
and reads no clock itself (the store is given ``now`` for every write), so a simulator can drive it.
The controller is built by the composition root (:mod:`.main`) and is handed what it needs; it
never sees the HTTP facade.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..api import JobState, TrainJob
from ..backends.base import Backend, LaunchRequest, RunStatus, run_id_for
from ..capacity import fallback
from ..config import PlatformConfig
from ..errors import SpecError
from . import admission, transitions
from .layout import DataLayout
from .quota_bridge import QuotaBridge
from .services import ServiceManager
from .store import Store
from .transitions import Action, Transition

log = logging.getLogger("rayfleet.controller")

LAUNCHED = [JobState.STARTING.value, JobState.RUNNING.value]
HOLDING_QUOTA = [JobState.ADMITTED.value, JobState.STARTING.value, JobState.RUNNING.value, JobState.STOPPING.value]


def placement_flavors(config: PlatformConfig, job: TrainJob) -> tuple[str, ...]:
    """Flavors a stored job may run on (re-derived from the config: a config change applies)."""
    try:
        return admission.check_gang(config, job.spec.queue, job.spec.gang, path="spec.gang")
    except (SpecError, KeyError):
        return ()


class Controller:
    def __init__(self, *, config: PlatformConfig, store: Store, backend: Backend, quota: QuotaBridge,
                 services: ServiceManager, layout: DataLayout, push_packages: Callable[[str | None, dict[str, Any]], dict[str, Any]],
                 clock: Callable[[], float] = time.time, interval: float = 1.0):
        self.config = config
        self.store = store
        self.backend = backend
        self.quota = quota
        self.services = services
        self.layout = layout
        self.push_packages = push_packages
        self.clock = clock
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self.cycles = 0
        self.last_error: str | None = None
        self.waiting: dict = {}  # workload id -> quota Wait of the last cycle
        self._restore()

    # ------------------------------------------------------------ lifecycle

    def _restore(self) -> None:
        """Rebuild quota usage from the store: every job that holds quota is re-admitted as it was."""
        records = self.store.list("TrainJob", states=HOLDING_QUOTA)
        records.sort(key=lambda r: (r.doc.status.attempt, r.updated_at))
        for rec in records:
            job: TrainJob = rec.doc  # type: ignore[assignment]
            self.quota.restore(job, placement_flavors(self.config, job))
        self.services.restore()
        # A quota cut made while the service was down: what is now over a limit is reclaimed by
        # the normal rules in the first pass.
        self._startup_reclaims = self.quota.state.reconcile(self.clock())

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="rayfleet-controller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(self.clock())
                self.last_error = None
            except Exception as e:  # keep the loop alive; the error is visible in /healthz and logs
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("controller pass failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    # ------------------------------------------------------------ one pass

    def run_once(self, now: float) -> None:
        with self._lock:
            self._sync(now)
            self._finish_stops(now)
            self._schedule(now)
            self._launch_admitted(now)
            self.services.reconcile(self.waiting, now)
            self.cycles += 1

    def _apply(self, job: TrainJob, t: Transition | None, now: float, *, version: int | None = None) -> TrainJob:
        """Carry out a transition's actions (logs before the run goes), then write it."""
        if t is None:
            return job
        run_id = self._run_id(job)
        if Action.SAVE_LOGS in t.actions:
            self._save_logs(job)
        if Action.STOP_RUN in t.actions:
            self.backend.stop(run_id, reason=job.status.stop_reason or t.event or "stopped")
        if Action.RELEASE_QUOTA in t.actions:
            self.quota.release(job.name)
        if t.status == job.status and t.event is None:
            return job
        job = job.model_copy(update={"status": t.status})
        self.store.update(job, expected_version=version, event=t.event, message=t.message, data=t.data, now=now)
        return job

    # ------------------------------------------------------------ 1. sync

    def _sync(self, now: float) -> None:
        for rec in self.store.list("TrainJob", states=LAUNCHED):
            job: TrainJob = rec.doc  # type: ignore[assignment]
            status: RunStatus | None = self.backend.run_status(self._run_id(job))
            job = self._apply(job, transitions.observe(job, status, now), now, version=rec.resource_version)
            self._capacity_fallback(job, now)
        for rec in self.store.list("TrainJob", states=LAUNCHED):
            self._apply(rec.doc, transitions.check_deadline(rec.doc, now), now)  # type: ignore[arg-type]

    def _capacity_fallback(self, job: TrainJob, now: float) -> None:
        """An attempt still waiting for its hosts: resubmit its request, or give the flavor up, as
        its compute-class step says (``capacity.fallback``)."""
        st = job.status
        if st.state != JobState.STARTING or st.launched_at is None:
            return
        queue = job.spec.queue
        since = st.capacity_wait.since if st.capacity_wait is not None and st.capacity_wait.flavor == st.flavor else st.launched_at
        decision = fallback.decide(self.config, queue, st.flavor, since.timestamp(), st.launched_at.timestamp(), now)
        if decision is fallback.Decision.WAIT:
            return
        nxt = decision is fallback.Decision.NEXT
        waited = now - (since if nxt else st.launched_at).timestamp()
        t = transitions.capacity_stop(job, nxt, fallback.next_flavor(self.config, queue, st.flavor or "") if nxt else None, waited, now)
        job = self._apply(job, t, now)
        self._apply(job, transitions.finish_stop(job, now), now)

    # ------------------------------------------------------------ 2. stops

    def request_stop(self, name: str, reason: str = "user", message: str = "stopped by user") -> TrainJob:
        """A stop asked through the API (outside a pass: stamped with the controller's clock)."""
        with self._lock:
            job: TrainJob = self.store.get("TrainJob", name).doc  # type: ignore[assignment]
            job = self._apply(job, transitions.request_stop(job, reason, message, self.clock()), self.clock())
        self.wake()
        return job

    def _finish_stops(self, now: float) -> None:
        for rec in self.store.list("TrainJob", states=[JobState.STOPPING.value]):
            self._apply(rec.doc, transitions.finish_stop(rec.doc, now), now)  # type: ignore[arg-type]

    # ------------------------------------------------------------ 3. quota

    def _schedule(self, now: float) -> None:
        reclaims, self._startup_reclaims = self._startup_reclaims, []
        for preempt in reclaims + self.quota.tick(now):
            self._preempt(preempt.victim_id, f"quota schedule: {preempt.message or preempt.reason}", now)
        pending = [r.doc for r in self.store.list("TrainJob", states=[JobState.QUEUED.value])]
        pending = [j for j in pending if transitions.eligible(j, now)]  # type: ignore[arg-type]
        workloads = [self.quota.workload(job, fallback.remaining(placement_flavors(self.config, job), job.status.capacity_skipped))  # type: ignore[arg-type]
                     for job in pending]
        workloads += self.services.pending(now)
        result = self.quota.schedule(workloads, now)
        for p in result.preempted:
            # the quota layer's message names the preemptor only to a victim of its own queue
            self._preempt(p.victim_id, f"preempted ({p.reason}): {p.message}".rstrip(": "), now)
        jobs = {j.name: j for j in pending}
        for a in result.admitted:
            job = jobs.get(a.workload_id)
            if job is None:
                self.services.admitted(a, now)
                continue
            self._apply(job, transitions.admitted(job, a.flavor, self.config.flavors[a.flavor].spec.pool, a.borrowed), now)  # type: ignore[arg-type]
        for w in result.waiting:
            job = jobs.get(w.workload_id)
            if job is None:
                self.services.waiting(w, now)
                continue
            self._apply(job, transitions.waiting(job, w.reason), now)  # type: ignore[arg-type]
        self.waiting = {w.workload_id: w for w in result.waiting}

    def _preempt(self, victim: str, message: str, now: float) -> None:
        """Stop a victim now (intent first), so the capacity is free before its preemptor launches."""
        rec = self.store.find("TrainJob", victim)
        if rec is None:
            self.services.preempted(victim, message, now)
            return
        job: TrainJob = rec.doc  # type: ignore[assignment]
        if job.status.state in (JobState.QUEUED, JobState.STOPPING):
            return
        job = self._apply(job, transitions.request_stop(job, "preempted", message, now), now)
        if job.status.state == JobState.STOPPING:
            self._apply(job, transitions.finish_stop(job, now), now)

    # ------------------------------------------------------------ 4. launch

    def _launch_admitted(self, now: float) -> None:
        for rec in self.store.list("TrainJob", states=[JobState.ADMITTED.value]):
            job: TrainJob = rec.doc  # type: ignore[assignment]
            req = self.launch_request(job)
            try:
                req = dataclasses.replace(req, runtime_env=self.push_packages(rec.team, req.runtime_env))
                self.backend.launch(req)
            except Exception as e:
                log.exception("launch of %s failed", req.run_id)
                self._apply(job, transitions.launch_failed(job, f"launch failed: {e}", now), now)
                continue
            self._apply(job, transitions.launched(job, req.run_id, now), now)

    def launch_request(self, job: TrainJob) -> LaunchRequest:
        pool = self.config.pools[job.status.pool or ""]
        return LaunchRequest.for_job(job, pool.name, pool.spec, attempt=job.status.attempt,
                                     checkpoint_dir=self.layout.checkpoint_dir(job))

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _run_id(job: TrainJob) -> str:
        return run_id_for(job.name, job.status.attempt, job.metadata.uid)

    def _save_logs(self, job: TrainJob) -> None:
        if not job.status.attempt:
            return
        try:
            text = self.backend.logs(self._run_id(job))
        except Exception as e:  # the run may be gone with its host
            text = f"[rayfleet] logs of attempt {job.status.attempt} unavailable: {e}\n"
        path = self.layout.log_path(job, job.status.attempt)
        if not path.exists() or text:
            Path(path).write_text(text)
