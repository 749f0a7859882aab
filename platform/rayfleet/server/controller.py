"""The controller loop: the one owner of workload status.

Woken by a submission, a stop, or a tick, one pass does, in order:
1. sync: read each launched run's state from the backend and move jobs on (running, finished,
   failed -> requeue or fail, host lost -> requeue), recording interruptions and recoveries;
2. finish stops: carry out pending stops (user stops, preemptions) and requeue preempted gangs;
3. quota: apply quota-schedule ticks, run one quota cycle over every pending workload, write the
   decisions (admit on a flavor, preempt victims, wait with an explanation);
4. launch: start every admitted attempt on the backend.

Every decision is written to the store before it is acted on, keyed by job id + attempt number, so
a crash between the two is repaired on restart: ADMITTED jobs are launched (idempotent per run id)
or adopted, STOPPING jobs are stopped again, and launched runs the backend no longer knows are
requeued as lost.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..api import CapacityWait, Interruption, JobState, TrainJob
from ..backends.base import LaunchRequest, RunState, RunStatus
from ..capacity import fallback
from .quota_bridge import QuotaBridge

if TYPE_CHECKING:
    from .fleet import Fleet

log = logging.getLogger("rayfleet.controller")

LAUNCHED = [JobState.STARTING.value, JobState.RUNNING.value]
HOLDING_QUOTA = [JobState.ADMITTED.value, JobState.STARTING.value, JobState.RUNNING.value, JobState.STOPPING.value]


def _now_dt(ts: float | None = None) -> datetime:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC)


class Controller:
    def __init__(self, fleet: Fleet, *, interval: float = 1.0):
        self.fleet = fleet
        self.store = fleet.store
        self.backend = fleet.backend
        self.interval = interval
        self.quota = QuotaBridge(fleet.config)
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
            self.quota.restore(job, self.fleet.placement_flavors(job))
        self.fleet.services.restore(self.quota)
        # A quota cut made while the service was down: what is now over a limit is reclaimed by
        # the normal rules in the first pass.
        self._startup_reclaims = self.quota.state.reconcile(time.time())

    def start(self) -> None:
        if self._thread is None:
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
                self.run_once()
                self.last_error = None
            except Exception as e:  # keep the loop alive; the error is visible in /healthz and logs
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("controller pass failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    # ------------------------------------------------------------ one pass

    def run_once(self, now: float | None = None) -> None:
        with self._lock:
            now = time.time() if now is None else now
            self._sync(now)
            self._finish_stops(now)
            self._schedule(now)
            self._launch_admitted(now)
            self.fleet.services.reconcile(self.quota, now)
            self.cycles += 1

    # ------------------------------------------------------------ 1. sync

    def _sync(self, now: float) -> None:
        for rec in self.store.list("TrainJob", states=LAUNCHED):
            job: TrainJob = rec.doc  # type: ignore[assignment]
            run_id = self._run_id(job)
            status = self.backend.run_status(run_id)
            if status is None:
                status = RunStatus(run_id, RunState.LOST, "the run is gone from the backend (cluster restarted or removed)")
            self._apply_run_status(job, rec.resource_version, status, now)
            self._capacity_fallback(job, now)
        # Deadlines: a job past its max run duration is stopped.
        for rec in self.store.list("TrainJob", states=[JobState.RUNNING.value]):
            job = rec.doc  # type: ignore[assignment]
            limit = job.spec.max_run_duration
            if limit and job.status.started_at and now - job.status.started_at.timestamp() > limit:
                self._request_stop(job, "deadline", f"max run duration {limit:.0f}s exceeded")

    def _capacity_fallback(self, job: TrainJob, now: float) -> None:
        """An attempt still waiting for its hosts: resubmit its request, or give the flavor up, as
        its compute-class step says (``capacity.fallback``)."""
        st = job.status
        if st.state != JobState.STARTING or st.launched_at is None:
            return
        cfg, queue = self.fleet.config, job.spec.queue
        since = st.capacity_wait.since if st.capacity_wait is not None and st.capacity_wait.flavor == st.flavor else st.launched_at
        decision = fallback.decide(cfg, queue, st.flavor, since.timestamp(), st.launched_at.timestamp(), now)
        if decision is fallback.Decision.WAIT:
            return
        waited = now - (since if decision is fallback.Decision.NEXT else st.launched_at).timestamp()
        if decision is fallback.Decision.NEXT:
            nxt = fallback.next_flavor(cfg, queue, st.flavor or "")
            self._request_stop(job, "capacity", f"no capacity on flavor {st.flavor} (pool {st.pool}) after {waited:.0f}s; next: {nxt}")
        else:
            self._request_stop(job, "resubmit", f"capacity on flavor {st.flavor} (pool {st.pool}) not served after {waited:.0f}s: "
                                                "request cancelled, submitting a new one")
        self._finish_stop(job, now)

    def _apply_run_status(self, job: TrainJob, version: int, rs: RunStatus, now: float) -> None:
        st = job.status.model_copy(deep=True)
        if rs.last_checkpoint_step is not None:
            st.last_checkpoint_step = rs.last_checkpoint_step
        event, message = None, ""
        if rs.state == RunState.PENDING:
            st.state = JobState.STARTING
        elif rs.state == RunState.RUNNING:
            if st.state != JobState.RUNNING:
                st.state = JobState.RUNNING
                st.capacity_skipped, st.capacity_wait = [], None
                st.message = f"running on {st.pool} (attempt {st.attempt})"
                if st.started_at is None:
                    st.started_at = _now_dt(rs.started_at or now)
                if st.interruptions and st.interruptions[-1].recovered_at is None:
                    last = st.interruptions[-1]
                    last.recovered_at = _now_dt(rs.started_at or now)
                    last.resumed_from_step = rs.resumed_from_step if rs.resumed_from_step is not None else st.last_checkpoint_step
                    event, message = "Recovered", f"attempt {st.attempt} running; resumes from step {st.last_checkpoint_step}"
                else:
                    event, message = "Running", f"attempt {st.attempt} running on {st.pool}"
        elif rs.state == RunState.SUCCEEDED:
            self._save_logs(job)
            st.state, st.finished_at, st.message = JobState.SUCCEEDED, _now_dt(rs.finished_at or now), rs.message or "succeeded"
            event, message = "Succeeded", f"attempt {st.attempt} succeeded"
            self.quota.release(job.name)
        elif rs.state in (RunState.FAILED, RunState.LOST, RunState.STOPPED):
            self._save_logs(job)
            reason = "host-failure" if rs.state == RunState.LOST else "failure"
            self.backend.stop(rs.run_id, reason="cleanup after " + reason)
            self.quota.release(job.name)
            st.restarts += 1
            st.interruptions.append(Interruption(at=_now_dt(now), attempt=st.attempt, reason=reason, message=rs.message))
            if st.restarts > job.spec.failure_policy.max_restarts:
                st.state, st.finished_at = JobState.FAILED, _now_dt(now)
                st.message = f"failed after {st.restarts - 1} restart(s): {rs.message}"
                event, message = "Failed", st.message
            else:
                st.state, st.queued_at = JobState.QUEUED, _now_dt(now)
                st.message = f"requeued after {reason} (restart {st.restarts}/{job.spec.failure_policy.max_restarts}): {rs.message}"
                event, message = "Requeued", st.message
        if st != job.status:
            job.status = st
            self.store.update(job, expected_version=version, event=event, message=message,
                              data={"attempt": st.attempt, "state": st.state.value})

    # ------------------------------------------------------------ 2. stops

    def request_stop(self, name: str, reason: str = "user", message: str = "stopped by user") -> TrainJob:
        with self._lock:
            rec = self.store.get("TrainJob", name)
            job: TrainJob = rec.doc  # type: ignore[assignment]
            if job.status.state.terminal:
                return job
            if job.status.state == JobState.QUEUED:
                job.status.state, job.status.finished_at, job.status.message = JobState.STOPPED, _now_dt(), message
                self.store.update(job, event="Stopped", message=message)
                return job
            self._request_stop(job, reason, message)
        self.wake()
        return self.store.get("TrainJob", name).doc  # type: ignore[return-value]

    def _request_stop(self, job: TrainJob, reason: str, message: str) -> None:
        job.status.state, job.status.stop_reason, job.status.message = JobState.STOPPING, reason, message
        self.store.update(job, event="Stopping", message=message, data={"reason": reason, "attempt": job.status.attempt})

    def _finish_stops(self, now: float) -> None:
        for rec in self.store.list("TrainJob", states=[JobState.STOPPING.value]):
            self._finish_stop(rec.doc, now)  # type: ignore[arg-type]

    def _finish_stop(self, job: TrainJob, now: float) -> None:
        """Carry out a stored stop intent: stop the run, free its quota, requeue or end the job."""
        if job.status.attempt:
            self.backend.stop(self._run_id(job), reason=job.status.stop_reason or "stopped")
            self._save_logs(job)
        self.quota.release(job.name)
        st = job.status
        if st.stop_reason in ("capacity", "resubmit"):
            event = "CapacityFallback" if st.stop_reason == "capacity" else "CapacityResubmit"
            if st.stop_reason == "capacity":  # the next step's wait starts at its own first launch
                st.capacity_skipped.append(st.flavor or "")
                st.capacity_wait = None
            st.state, st.queued_at, st.stop_reason = JobState.QUEUED, _now_dt(now), None
            self.store.update(job, event=event, message=st.message, data={"flavor": st.flavor, "attempt": st.attempt})
        elif st.stop_reason == "preempted":
            st.interruptions.append(Interruption(at=_now_dt(now), attempt=st.attempt, reason="preempted", message=st.message))
            st.state, st.queued_at, st.stop_reason = JobState.QUEUED, _now_dt(now), None
            self.store.update(job, event="Requeued", message=f"back in queue {job.spec.queue}: {st.message}")
        else:
            st.state, st.finished_at = (JobState.FAILED if st.stop_reason == "deadline" else JobState.STOPPED), _now_dt(now)
            self.store.update(job, event="Stopped", message=st.message)

    # ------------------------------------------------------------ 3. quota

    def _schedule(self, now: float) -> None:
        reclaims, self._startup_reclaims = self._startup_reclaims, []
        for preempt in reclaims + self.quota.tick(now):
            self._preempt(preempt.victim_id, f"quota schedule: {preempt.message or preempt.reason}")
        pending = [r.doc for r in self.store.list("TrainJob", states=[JobState.QUEUED.value])]
        workloads = [self.quota.workload(job, fallback.remaining(self.fleet.placement_flavors(job), job.status.capacity_skipped))  # type: ignore[arg-type]
                     for job in pending]
        workloads += self.fleet.services.pending(self.quota)
        result = self.quota.schedule(workloads, now)
        for p in result.preempted:
            by = f" by {p.preemptor_id}" if p.preemptor_id else ""
            self._preempt(p.victim_id, f"preempted{by} ({p.reason}): {p.message}".rstrip(": "))
        jobs = {j.name: j for j in pending}
        for a in result.admitted:
            job = jobs.get(a.workload_id)
            if job is None:
                self.fleet.services.admitted(a)
                continue
            st = job.status
            st.state, st.attempt, st.flavor = JobState.ADMITTED, st.attempt + 1, a.flavor
            st.pool = self.fleet.config.flavors[a.flavor].spec.pool
            st.borrowed = {k: v for k, v in a.borrowed.items() if v}
            st.message = f"admitted on {a.flavor}" + (f", borrowing {st.borrowed}" if st.borrowed else "")
            st.ray_job_id = f"{job.name}-{st.attempt}"
            self.store.update(job, event="Admitted", message=st.message, data={"flavor": a.flavor, "attempt": st.attempt, "borrowed": st.borrowed})
        for w in result.waiting:
            job = jobs.get(w.workload_id)
            if job is None:
                self.fleet.services.waiting(w)
                continue
            if job.status.message != w.reason:
                job.status.message = w.reason
                self.store.update(job)
        self.waiting = {w.workload_id: w for w in result.waiting}

    def _preempt(self, victim: str, message: str) -> None:
        """Stop a victim now (intent first), so the capacity is free before its preemptor launches."""
        rec = self.store.find("TrainJob", victim)
        if rec is None:
            self.fleet.services.preempted(victim, message)
            return
        job: TrainJob = rec.doc  # type: ignore[assignment]
        if job.status.state.terminal or job.status.state in (JobState.QUEUED, JobState.STOPPING):
            return
        self._request_stop(job, "preempted", message)
        self._finish_stop(job, time.time())

    # ------------------------------------------------------------ 4. launch

    def _launch_admitted(self, now: float) -> None:
        for rec in self.store.list("TrainJob", states=[JobState.ADMITTED.value]):
            job: TrainJob = rec.doc  # type: ignore[assignment]
            req = self.launch_request(job)
            try:
                req = dataclasses.replace(req, runtime_env=self.fleet.packages.hand_over(rec.team, req.runtime_env, self.backend))
                self.backend.launch(req)
            except Exception as e:
                log.exception("launch of %s failed", req.run_id)
                self.quota.release(job.name)
                st = job.status
                st.restarts += 1
                if st.restarts > job.spec.failure_policy.max_restarts:
                    st.state, st.finished_at, st.message = JobState.FAILED, _now_dt(now), f"launch failed: {e}"
                    self.store.update(job, event="Failed", message=st.message)
                else:
                    st.state, st.queued_at, st.message = JobState.QUEUED, _now_dt(now), f"launch failed, requeued: {e}"
                    self.store.update(job, event="Requeued", message=st.message)
                continue
            job.status.state = JobState.STARTING
            job.status.launched_at = _now_dt(now)
            if job.status.capacity_wait is None or job.status.capacity_wait.flavor != job.status.flavor:
                job.status.capacity_wait = CapacityWait(flavor=job.status.flavor or "", since=job.status.launched_at)
            job.status.message = f"starting {job.spec.gang.workers} worker(s) on {job.status.pool}"
            self.store.update(job, event="Launched", message=job.status.message, data={"run": req.run_id})

    def launch_request(self, job: TrainJob) -> LaunchRequest:
        pool = self.fleet.config.pools[job.status.pool or ""]
        return LaunchRequest.for_job(job, pool.name, pool.spec, attempt=job.status.attempt,
                                     checkpoint_dir=self.fleet.checkpoint_dir(job))

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _run_id(job: TrainJob) -> str:
        return f"{job.name}-{job.status.attempt}"

    def _save_logs(self, job: TrainJob) -> None:
        if not job.status.attempt:
            return
        try:
            text = self.backend.logs(self._run_id(job))
        except Exception as e:  # the run may be gone with its host
            text = f"[rayfleet] logs of attempt {job.status.attempt} unavailable: {e}\n"
        path = self.fleet.log_path(job.name, job.status.attempt)
        if not path.exists() or text:
            Path(path).write_text(text)
