"""The lifecycle of TrainJobs and Services as a pure state machine.

``(status, what happened — a backend report, a quota decision, a request — , now) -> Transition``:
the new status, the event to log, and the actions the caller must carry out (stop the run, keep
its logs, release quota, undeploy). No I/O and no clock here: the controller loop and the service
manager read the store and the backend, call these functions, write what they return and do the
actions. Every rule about a job's or service's state lives here and nowhere else.

Failure policy (``spec.failurePolicy``), in the spirit of Kubernetes' podFailurePolicy:

* a **failure** is the program failing (the backend reports FAILED). It counts toward
  ``maxRestarts``; past it the job ends FAILED with reason BackoffLimitExceeded.
* a **disruption** is anything else that ends an attempt: quota preemption, a lost or reclaimed
  host or a run gone with its cluster (LOST), a run the backend stopped or suspended without being
  asked (STOPPED), a capacity fallback or resubmission along the compute class, a failed launch.
  Disruptions never count toward ``maxRestarts``; they count toward ``maxDisruptions`` (past it:
  FAILED, reason DisruptionLimitExceeded). Backend disruptions (LOST, STOPPED, failed launch) also
  back off: ``status.notBefore = now + disruptionBackoff * 2^(n-1)`` (at most 10 minutes), and quota
  does not consider the job before then. Preemptions and capacity fallbacks requeue at once (quota
  and the compute class already decide when the job runs again).
* the **deadline** (``spec.maxRunDuration``) has one owner, :func:`check_deadline`: a job whose first
  attempt started running more than maxRunDuration ago is stopped and ends FAILED with reason
  DeadlineExceeded, never requeued; a requeue decided past the deadline ends the same way. The
  in-cluster backstop (KubeRay ``activeDeadlineSeconds``) reports DEADLINE_EXCEEDED, which ends the
  job the same way.

Capacity that comes and goes (issue 13):

* a **notice** (a host of a RUNNING attempt will go: spot reclaim, DWS recycle, calendar window
  end, unhealthy host) is recorded once in ``status.notice`` (:func:`noticed`) and asks the run to
  checkpoint now (REQUEST_CHECKPOINT). :func:`notice_due` stops the attempt once a checkpoint newer
  than the one at the notice is reported, or :data:`NOTICE_LEAD_S` before the notice's deadline
  (stop reasons reclaimed, recycled, window-end, unhealthy-host, cluster-drained). That stop is a disruption,
  requeued at once, resuming from that checkpoint; if the flavor has nothing left for the gang,
  it is skipped (``capacitySkipped``) so the compute class's next step is tried. A run that ends
  LOST while a notice is out is counted with the notice's reason, requeued at once.
* a **stockout** (``RunState.STOCKOUT``: non-queued DWS or on-demand answered "no capacity" now)
  skips the flavor and requeues at once (CapacityFallback), with backoff only when no step is left.
* a **migration** (compute-class ``activeMigration.optimizeRulePriority``): when a preferred step
  has room, :func:`migration_planned` records a ``migrate`` notice (event Migrating); at the next
  checkpoint the attempt is stopped (reason migrated) and requeued with the skipped list cleared,
  so quota tries the preferred step first. :func:`migration_withdrawn` drops it if the room goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..api import (
    CapacityWait,
    Interruption,
    JobState,
    NoticeRecord,
    PendingReason,
    ServiceState,
    ServiceStatus,
    TrainJob,
    TrainJobStatus,
)
from ..api.base import detached
from ..backends.base import Notice, RunState, RunStatus, ServiceRunStatus, run_id_for

#: Longest backoff after backend disruptions.
MAX_BACKOFF_S = 600.0

#: A noticed attempt with no newer checkpoint is stopped this long before the notice's deadline.
NOTICE_LEAD_S = 5.0

#: Notice kind -> the stop reason (and interruption reason) of the attempt it moves.
NOTICE_STOP = {"reclaim": "reclaimed", "recycle": "recycled", "window-end": "window-end", "unhealthy": "unhealthy-host",
               "cluster-drain": "cluster-drained", "migrate": "migrated"}


class Action(StrEnum):
    SAVE_LOGS = "save-logs"          # keep the current attempt's logs (before the run goes)
    REQUEST_CHECKPOINT = "request-checkpoint"  # ask the running attempt to save a checkpoint now (a CapacityBackend)
    STOP_RUN = "stop-run"            # stop the current attempt's run on the backend
    RELEASE_QUOTA = "release-quota"  # free the quota the job (or every group of the service) holds
    UNDEPLOY = "undeploy"            # take the service's Serve application down


@dataclass(frozen=True)
class Transition:
    """What one step decided. ``status`` is a new object; the input status is never changed."""

    status: Any
    event: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# ---------------------------------------------------------------- train jobs


def submitted(queue: str, priority: int, now: float) -> TrainJobStatus:
    t = at(now)
    return TrainJobStatus(state=JobState.QUEUED, submitted_at=t, queued_at=t, message=f"queued in {queue} (priority {priority})",
                          pending_reason=PendingReason.QUEUED)


def eligible(job: TrainJob, now: float) -> bool:
    """Whether quota may consider a queued job now (it is not backing off)."""
    nb = job.status.not_before
    return nb is None or now >= nb.timestamp()


def deadline_passed(job: TrainJob, now: float) -> bool:
    limit, started = job.spec.max_run_duration, job.status.started_at
    return bool(limit) and started is not None and now - started.timestamp() > limit  # type: ignore[operator]


def backoff_seconds(base: float, disruptions: int) -> float:
    return float(min(base * 2.0 ** max(disruptions - 1, 0), MAX_BACKOFF_S))


def _end(st: TrainJobStatus, state: JobState, reason: str, message: str, now: float) -> None:
    st.state, st.reason, st.message, st.finished_at, st.stop_reason = state, reason, message, at(now), None  # type: ignore[assignment]
    st.not_before, st.notice = None, None


def _deadline_end(job: TrainJob, st: TrainJobStatus, now: float, message: str | None = None) -> Transition:
    msg = message or f"max run duration {job.spec.max_run_duration:.0f}s exceeded"
    _end(st, JobState.FAILED, "DeadlineExceeded", msg, now)
    return Transition(st, "DeadlineExceeded", msg, {"attempt": st.attempt, "state": st.state.value})


def _disrupted(job: TrainJob, st: TrainJobStatus, what: str, message: str, now: float, *, backoff: bool,
               actions: tuple[Action, ...]) -> Transition:
    """Count a disruption; requeue (with backoff for the backend's), or end the job at its limits."""
    st.disruptions += 1
    st.notice = None
    limit = job.spec.failure_policy.max_disruptions
    data = {"attempt": st.attempt, "disruption": st.disruptions}
    if st.disruptions > limit:
        msg = f"failed after {st.disruptions} disruptions (maxDisruptions {limit}); last: {what}: {message}"
        _end(st, JobState.FAILED, "DisruptionLimitExceeded", msg, now)
        return Transition(st, "Failed", msg, {**data, "state": st.state.value}, actions)
    if deadline_passed(job, now):
        return Transition(_deadline_end(job, st, now).status, "DeadlineExceeded",
                          f"max run duration {job.spec.max_run_duration:.0f}s exceeded ({what}: not requeued)", data, actions)
    st.state, st.queued_at, st.stop_reason = JobState.QUEUED, at(now), None
    msg = f"requeued after {what} (disruption {st.disruptions}/{limit}): {message}"
    if backoff:
        delay = backoff_seconds(job.spec.failure_policy.disruption_backoff, st.disruptions)
        st.not_before = at(now + delay)
        msg += f"; back off {delay:.0f}s"
    st.message = msg
    return Transition(st, "Requeued", msg, {**data, "state": st.state.value}, actions)


#: A run in this state leaves a job in that state as it is (no event) when no newer checkpoint came.
_STILL = {RunState.PENDING: JobState.STARTING, RunState.RUNNING: JobState.RUNNING}


def observe(job: TrainJob, rs: RunStatus | None, now: float, *, next_flavor: str | None = None,
            flavor_exhausted: bool = False) -> Transition:
    """A launched attempt (STARTING or RUNNING) as the backend reports it (None: the backend does not know the run).

    ``next_flavor``: the flavor quota would try after this one (a stockout goes there at once);
    ``flavor_exhausted``: the flavor has nothing left for the gang (a LOST run with a notice out skips it)."""
    if rs is not None and rs.state in _STILL and job.status.state == _STILL[rs.state] and (
            rs.last_checkpoint_step is None or rs.last_checkpoint_step == job.status.last_checkpoint_step):
        return Transition(job.status)   # nothing new (most attempts, most passes): no copy of the status
    st = detached(job.status)
    if rs is None:
        rs = RunStatus(st.ray_job_id or "", RunState.LOST, "the run is gone from the backend (cluster restarted or removed)")
    if rs.last_checkpoint_step is not None:
        st.last_checkpoint_step = rs.last_checkpoint_step
    data: dict[str, Any] = {"attempt": st.attempt}
    ending = (Action.SAVE_LOGS, Action.STOP_RUN, Action.RELEASE_QUOTA)
    if rs.state == RunState.PENDING:
        st.state = JobState.STARTING
        return Transition(st)
    if rs.state == RunState.RUNNING:
        if st.state == JobState.RUNNING:
            return Transition(st)
        st.state = JobState.RUNNING
        st.capacity_skipped, st.capacity_wait = [], None
        st.message = f"running on {st.pool} (attempt {st.attempt})"
        if st.started_at is None:
            st.started_at = at(rs.started_at or now)
        if st.interruptions and st.interruptions[-1].recovered_at is None:
            last = st.interruptions[-1]
            last.recovered_at = at(rs.started_at or now)
            last.resumed_from_step = rs.resumed_from_step if rs.resumed_from_step is not None else st.last_checkpoint_step
            return Transition(st, "Recovered", f"attempt {st.attempt} running; resumes from step {st.last_checkpoint_step}", data)
        return Transition(st, "Running", f"attempt {st.attempt} running on {st.pool}", data)
    if rs.state == RunState.SUCCEEDED:
        _end(st, JobState.SUCCEEDED, "Succeeded", rs.message or "succeeded", rs.finished_at or now)
        return Transition(st, "Succeeded", f"attempt {st.attempt} succeeded", data, (Action.SAVE_LOGS, Action.RELEASE_QUOTA))
    if rs.state == RunState.DEADLINE_EXCEEDED:
        t = _deadline_end(job, st, now, rs.message or "the run's in-cluster deadline (activeDeadlineSeconds) passed")
        return Transition(t.status, t.event, t.message, t.data, ending)
    if rs.state == RunState.FAILED:
        st.restarts += 1
        st.interruptions.append(Interruption(at=at(now), attempt=st.attempt, reason="failure", message=rs.message))
        if rs.hosts:
            data["hosts"] = sorted(set(rs.hosts))
        limit = job.spec.failure_policy.max_restarts
        if st.restarts > limit:
            msg = f"failed after {st.restarts - 1} restart(s): {rs.message}"
            _end(st, JobState.FAILED, "BackoffLimitExceeded", msg, now)
            return Transition(st, "Failed", msg, {**data, "state": st.state.value}, ending)
        if deadline_passed(job, now):
            t = _deadline_end(job, st, now)
            return Transition(t.status, t.event, t.message, t.data, ending)
        st.state, st.queued_at = JobState.QUEUED, at(now)
        st.message = f"requeued after failure (restart {st.restarts}/{limit}): {rs.message}"
        return Transition(st, "Requeued", st.message, {**data, "state": st.state.value}, ending)
    if rs.state == RunState.STOCKOUT:
        return _stockout(job, st, rs.message, next_flavor, now, ending)
    # LOST, or STOPPED without a stop asked for (the job is not STOPPING): disruptions.
    reason = "host-failure" if rs.state == RunState.LOST else "disrupted"
    notice = st.notice if st.notice is not None and st.notice.kind != "migrate" else None
    if notice is not None and rs.state == RunState.LOST:   # the announced loss came before the move
        reason = NOTICE_STOP[notice.kind]
        if flavor_exhausted:
            _skip(st)
    st.interruptions.append(Interruption(at=at(now), attempt=st.attempt, reason=reason, message=rs.message))
    return _disrupted(job, st, reason, rs.message, now, backoff=notice is None, actions=ending)


def _skip(st: TrainJobStatus) -> None:
    """Give the current flavor up: quota tries the compute class's next step."""
    if st.flavor and st.flavor not in st.capacity_skipped:
        st.capacity_skipped.append(st.flavor)
    st.capacity_wait = None


def _stockout(job: TrainJob, st: TrainJobStatus, message: str, next_flavor: str | None, now: float,
              actions: tuple[Action, ...]) -> Transition:
    """The provisioning mode answered "no capacity" now: skip the flavor, try the next step at once
    (backing off only when no step is left, so a fleet-wide stockout does not spin)."""
    flavor = st.flavor
    if st.state == JobState.RUNNING:
        st.interruptions.append(Interruption(at=at(now), attempt=st.attempt, reason="stockout", message=message))
    _skip(st)
    why = f"stockout on flavor {flavor} (pool {st.pool}): {message or 'no capacity'}; next: {next_flavor or 'none left'}"
    t = _disrupted(job, st, "stockout", why, now, backoff=next_flavor is None, actions=actions)
    if t.status.state != JobState.QUEUED:
        return t
    return Transition(t.status, "CapacityFallback", t.message, {"flavor": flavor, "attempt": st.attempt, "stockout": True,
                                                                "next": next_flavor}, actions)


# ---------------------------------------------------------------- notices and migration


def first_notice(notices: tuple[Notice, ...]) -> Notice | None:
    """The notice that moves the attempt: the earliest deadline (a notice without one last)."""
    if not notices:
        return None
    return min(notices, key=lambda n: (n.deadline is None, n.deadline or 0.0))


def noticed(job: TrainJob, notice: Notice, now: float) -> Transition | None:
    """A notice on a host of a RUNNING attempt: recorded once (it replaces a planned migration),
    and the run is asked to checkpoint now. None: nothing new."""
    st = job.status
    if st.state != JobState.RUNNING or (st.notice is not None and st.notice.kind != "migrate"):
        return None
    new = detached(st)
    deadline = at(notice.deadline) if notice.deadline is not None else None
    new.notice = NoticeRecord(kind=notice.kind.value, host=notice.host, at=at(now), deadline=deadline,
                              checkpoint_step=st.last_checkpoint_step)
    when = f" going at {deadline.isoformat()} (in {notice.deadline - now:.0f}s)" if deadline is not None and notice.deadline else ""
    msg = (f"{notice.kind.value} notice: host {notice.host or '?'}{when}; checkpoint requested at step "
           f"{st.last_checkpoint_step if st.last_checkpoint_step is not None else 'none yet'}"
           + (f" ({notice.message})" if notice.message else ""))
    new.message = msg
    data = {"kind": notice.kind.value, "host": notice.host, "deadline": notice.deadline, "step": st.last_checkpoint_step,
            "attempt": st.attempt}
    return Transition(new, "Notice", msg, data, (Action.REQUEST_CHECKPOINT,))


def notice_due(job: TrainJob, now: float, *, flavor_exhausted: bool = False, lead: float = NOTICE_LEAD_S) -> Transition | None:
    """A RUNNING attempt with a notice out: stop it once a checkpoint newer than the notice's is
    reported, or ``lead`` seconds before the notice's deadline. ``flavor_exhausted``: skip the
    flavor (the compute class's next step). A migration also goes at its next checkpoint, but
    clears the skipped list instead (the preferred step is tried first). None: not yet."""
    st = job.status
    n = st.notice
    if st.state != JobState.RUNNING or n is None:
        return None
    step = st.last_checkpoint_step
    newer = step is not None and (n.checkpoint_step is None or step > n.checkpoint_step)
    near = n.deadline is not None and now >= n.deadline.timestamp() - lead
    if not (newer or near):
        return None
    reason = NOTICE_STOP[n.kind]
    where = f"host {n.host}" if n.host else f"flavor {st.flavor}"
    if n.kind == "migrate":
        msg = f"moving back to a preferred step ({n.host or 'earlier flavor'}) at checkpoint step {step}"
    elif newer:
        msg = f"{n.kind} notice on {where}: checkpoint at step {step} saved; moving"
    else:
        msg = (f"{n.kind} notice on {where}: deadline {n.deadline.isoformat() if n.deadline else ''} near, "
               f"last checkpoint step {step if step is not None else 'none'}; moving")
    t = request_stop(job, reason, msg, now)
    if t is None:
        return None
    if n.kind == "migrate":
        t.status.capacity_skipped, t.status.capacity_wait = [], None
    elif flavor_exhausted:
        _skip(t.status)
        t.status.message += f"; flavor {st.flavor} has nothing left, next compute-class step"
    return Transition(t.status, t.event, t.status.message, {**t.data, "kind": n.kind, "host": n.host, "step": step}, t.actions)


def migration_planned(job: TrainJob, flavor: str, now: float) -> Transition | None:
    """A preferred compute-class step (``flavor``) has room for a RUNNING job on a later step: it
    moves there at its next checkpoint (a ``migrate`` notice; ``host`` names the flavor)."""
    st = job.status
    if st.state != JobState.RUNNING or st.notice is not None:
        return None
    new = detached(st)
    new.notice = NoticeRecord(kind="migrate", host=flavor, at=at(now), checkpoint_step=st.last_checkpoint_step)
    new.message = f"flavor {flavor} has room again: moving back from {st.flavor} at the next checkpoint"
    return Transition(new, "Migrating", new.message, {"from": st.flavor, "to": flavor, "step": st.last_checkpoint_step,
                                                      "attempt": st.attempt})


def migration_withdrawn(job: TrainJob, why: str) -> Transition | None:
    """The preferred step lost its room before the checkpoint came: the job stays where it is."""
    st = job.status
    if st.notice is None or st.notice.kind != "migrate" or st.state != JobState.RUNNING:
        return None
    new = detached(st)
    new.notice = None
    new.message = f"running on {st.pool} (attempt {st.attempt}); migration to {st.notice.host} withdrawn: {why}"
    return Transition(new, "MigrationWithdrawn", new.message, {"to": st.notice.host, "attempt": st.attempt})


def check_deadline(job: TrainJob, now: float) -> Transition | None:
    """The one owner of maxRunDuration: a launched job past it is stopped (it then ends DeadlineExceeded)."""
    if job.status.state not in (JobState.STARTING, JobState.RUNNING) or not deadline_passed(job, now):
        return None
    return request_stop(job, "deadline", f"max run duration {job.spec.max_run_duration:.0f}s exceeded", now)


def request_stop(job: TrainJob, reason: str, message: str, now: float) -> Transition | None:
    """A stop intent (user, preemption, deadline, capacity step). A queued job ends at once; a
    launched one becomes STOPPING, and :func:`finish_stop` ends or requeues it. None: nothing to do."""
    st = detached(job.status)
    if st.state.terminal:
        return None
    if st.state == JobState.QUEUED:
        _end(st, JobState.STOPPED, "Stopped", message, now)
        return Transition(st, "Stopped", message)
    st.state, st.stop_reason, st.message = JobState.STOPPING, reason, message  # type: ignore[assignment]
    return Transition(st, "Stopping", message, {"reason": reason, "attempt": st.attempt})


def capacity_stop(job: TrainJob, give_up_flavor: bool, next_flavor: str | None, waited: float, now: float) -> Transition | None:
    """A compute-class step's decision for a STARTING attempt: give the flavor up (next step) or
    resubmit its capacity request."""
    st = job.status
    if give_up_flavor:
        return request_stop(job, "capacity", f"no capacity on flavor {st.flavor} (pool {st.pool}) after {waited:.0f}s; next: {next_flavor}", now)
    return request_stop(job, "resubmit", f"capacity on flavor {st.flavor} (pool {st.pool}) not served after {waited:.0f}s: "
                                         "request cancelled, submitting a new one", now)


def finish_stop(job: TrainJob, now: float) -> Transition:
    """Carry out a stored stop intent: the run is stopped, its quota freed; the job ends or requeues."""
    st = detached(job.status)
    actions = (Action.STOP_RUN, Action.SAVE_LOGS, Action.RELEASE_QUOTA) if st.attempt else (Action.RELEASE_QUOTA,)
    reason = st.stop_reason
    if reason in ("capacity", "resubmit"):
        if reason == "capacity":  # the next step's wait starts at its own first launch
            st.capacity_skipped.append(st.flavor or "")
            st.capacity_wait = None
        t = _disrupted(job, st, "capacity fallback" if reason == "capacity" else "capacity resubmission", st.message, now,
                       backoff=False, actions=actions)
        if t.status.state == JobState.QUEUED:
            event = "CapacityFallback" if reason == "capacity" else "CapacityResubmit"
            return Transition(t.status, event, t.message, {"flavor": job.status.flavor, "attempt": st.attempt}, actions)
        return t
    if reason is not None and reason in NOTICE_STOP.values():
        what = {"reclaimed": "spot reclaim", "recycled": "node recycling", "window-end": "calendar window end",
                "unhealthy-host": "unhealthy host", "cluster-drained": "cluster drain", "migrated": "migration"}[reason]
        st.interruptions.append(Interruption(at=at(now), attempt=st.attempt, reason=reason, message=st.message))
        t = _disrupted(job, st, what, st.message, now, backoff=False, actions=actions)
        if reason == "migrated" and t.status.state == JobState.QUEUED:
            return Transition(t.status, "Migrated", t.message, {**t.data, "from": job.status.flavor}, actions)
        return t
    if reason == "preempted":
        st.interruptions.append(Interruption(at=at(now), attempt=st.attempt, reason="preempted", message=st.message))
        return _disrupted(job, st, "preemption", f"back in queue {job.spec.queue}: {st.message}", now, backoff=False, actions=actions)
    if reason == "deadline":
        t = _deadline_end(job, st, now, st.message)
        return Transition(t.status, t.event, t.message, t.data, actions)
    _end(st, JobState.STOPPED, "Stopped", st.message, now)
    return Transition(st, "Stopped", st.message, {"attempt": st.attempt}, actions)


def admitted(job: TrainJob, flavor: str, pool: str, borrowed: dict[str, int]) -> Transition:
    st = detached(job.status)
    st.state, st.attempt, st.flavor, st.pool = JobState.ADMITTED, st.attempt + 1, flavor, pool
    st.borrowed = {k: v for k, v in borrowed.items() if v}
    st.not_before, st.notice = None, None
    st.message = f"admitted on {flavor}" + (f", borrowing {st.borrowed}" if st.borrowed else "")
    st.ray_job_id = run_id_for(job.name, st.attempt, job.metadata.uid)
    return Transition(st, "Admitted", st.message, {"flavor": flavor, "attempt": st.attempt, "borrowed": st.borrowed})


def waiting(job: TrainJob, reason: str, code: PendingReason = PendingReason.WAITING_FOR_QUOTA,
            estimate: tuple[float | None, str] | None = None, now: float = 0.0) -> Transition | None:
    """A queued job told to wait: ``reason`` in words, ``code`` as a :class:`PendingReason`;
    ``estimate``: (expected admission or None, its reason), kept as it was when None or when it
    moved less than :data:`ESTIMATE_SLACK` of the wait left (a projection each pass must not
    rewrite every waiting job)."""
    st0 = job.status
    start, why = _settled_estimate(st0, estimate, now)
    if st0.message == reason and st0.pending_reason == code and st0.estimated_start == start and st0.estimated_start_reason == why:
        return None
    st = detached(st0)
    st.message, st.pending_reason = reason, code
    st.estimated_start, st.estimated_start_reason = start, why
    return Transition(st)


#: An estimated start is written again when it moves by more than this share of the wait left (or a minute).
ESTIMATE_SLACK = 0.1


def _settled_estimate(st: TrainJobStatus, estimate: tuple[float | None, str] | None, now: float) -> tuple[datetime | None, str]:
    if estimate is None:
        return st.estimated_start, st.estimated_start_reason
    t, why = estimate
    if t is None:
        return None, why
    old = st.estimated_start
    if old is not None and abs(old.timestamp() - t) <= max(60.0, ESTIMATE_SLACK * (old.timestamp() - now)):
        return old, st.estimated_start_reason
    return at(t), why


def settle_pending_reason(before: JobState, st: TrainJobStatus) -> None:
    """The one rule for ``pendingReason`` outside a quota decision: a job that (re)enters the queue
    is ``Queued`` (``Backoff`` while its requeue back-off holds it); one that leaves it has none.
    ``st`` is a transition's new status (never a stored document's)."""
    if st.state == JobState.QUEUED:
        if before != JobState.QUEUED:
            st.pending_reason = PendingReason.BACKOFF if st.not_before is not None else PendingReason.QUEUED
    elif st.pending_reason is not None or st.estimated_start is not None or st.estimated_start_reason:
        st.pending_reason, st.estimated_start, st.estimated_start_reason = None, None, ""


def launched(job: TrainJob, run_id: str, now: float, *, cluster: str | None = None) -> Transition:
    """``cluster``: the member of several clusters that took the run (None with one)."""
    st = detached(job.status)
    st.state, st.launched_at, st.cluster = JobState.STARTING, at(now), cluster
    if st.capacity_wait is None or st.capacity_wait.flavor != st.flavor:
        st.capacity_wait = CapacityWait(flavor=st.flavor or "", since=st.launched_at)
    st.message = f"starting {job.spec.gang.workers} worker(s) on {st.pool}" + (f" in cluster {cluster}" if cluster else "")
    return Transition(st, "Launched", st.message, {"run": run_id, **({"cluster": cluster} if cluster else {})})


def launch_failed(job: TrainJob, error: str, now: float) -> Transition:
    """The backend refused or failed the launch: a disruption (the program never ran), with backoff."""
    st = detached(job.status)
    return _disrupted(job, st, "launch failure", error, now, backoff=True, actions=(Action.RELEASE_QUOTA,))


# ---------------------------------------------------------------- services


def service_deployed(queue: str) -> ServiceStatus:
    return ServiceStatus(state=ServiceState.PENDING, message=f"waiting for quota in {queue}")


def service_admitted(st: ServiceStatus, workload_id: str, index: int | None, flavor: str, borrowed: Mapping[str, int]) -> Transition:
    st = detached(st)
    if index is None:
        st.flavor, st.state, st.message = flavor, ServiceState.DEPLOYING, f"admitted on {flavor}"
    else:
        st.message = f"replica group {index} granted on {flavor}" + (" (borrowed)" if any(borrowed.values()) else "")
    return Transition(st, "Admitted", st.message, {"workload": workload_id, "flavor": flavor})


def service_waiting(st: ServiceStatus, reason: str) -> Transition | None:
    """The base workload waits: the Service stays PENDING with quota's reason."""
    message = f"replicas waiting for quota: {reason}"
    if st.message == message:
        return None
    st = detached(st)
    st.message = message
    return Transition(st)


def service_preempted(st: ServiceStatus, workload_id: str, index: int | None, message: str) -> Transition:
    """A group was reclaimed (its quota is released). The base: every group goes, the app is undeployed."""
    st = detached(st)
    actions: tuple[Action, ...] = ()
    if index is None:
        st.state, st.replicas_granted, st.replicas_running, st.flavor = ServiceState.PENDING, 0, 0, None
        actions = (Action.RELEASE_QUOTA, Action.UNDEPLOY)
    st.message = f"{'service' if index is None else f'replica group {index}'} preempted: {message}"
    return Transition(st, "Preempted", st.message, {"workload": workload_id}, actions)


def service_deleting(st: ServiceStatus) -> Transition:
    st = detached(st)
    st.state = ServiceState.DELETING
    return Transition(st, "Deleting", "delete requested")


def service_deleted(st: ServiceStatus) -> Transition:
    """A DELETING service: undeployed, every group's quota returned."""
    st = detached(st)
    st.state, st.replicas_granted, st.replicas_running, st.url = ServiceState.DELETED, 0, 0, None
    return Transition(st, "Deleted", "service deleted", actions=(Action.UNDEPLOY, Action.RELEASE_QUOTA))


def service_observed(st: ServiceStatus, granted: int, rs: ServiceRunStatus | None, message: str) -> Transition:
    """The deployment as Serve reports it (None: nothing deployed yet). RUNNING/DEGRADED/DEPLOYING come
    from the backend; PENDING from it means Serve has not listed the app yet (the state is kept)."""
    state = rs.state if rs is not None and rs.state is not None and rs.state != ServiceState.PENDING else st.state
    seen = (st.replicas_granted, st.state) if rs is None else \
        (st.replicas_wanted, st.replicas_running, st.url, st.message, st.replicas_granted, st.state)
    if seen == ((granted, state) if rs is None else (rs.replicas_wanted, rs.replicas_running, rs.url, message, granted, state)):
        return Transition(st, None, st.message)   # nothing new (most passes): no copy of the status
    new = detached(st)
    if rs is not None:
        new.replicas_wanted, new.replicas_running, new.url = rs.replicas_wanted, rs.replicas_running, rs.url
        if rs.state is not None and rs.state != ServiceState.PENDING:
            new.state = rs.state
        new.message = message
    new.replicas_granted = granted
    event = "Running" if new.state == ServiceState.RUNNING and st.state != ServiceState.RUNNING else None
    return Transition(new, event, new.message)

