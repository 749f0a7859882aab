"""The controller loop: the one owner of workload status.

Woken by a submission, a stop, or a tick, one pass does, in order:
1. sync: read each launched run's state from the backend (a ``WatchingBackend``, KubeRay, answers
   from its watches, started with the controller, whose changes wake a pass) and move jobs on, recording interruptions
   and recoveries, and stop jobs past their deadline; on a backend whose capacity comes and goes
   (``CapacityBackend``): cordon faulty hosts (``capacity.health``), record notices and ask for a
   checkpoint, move noticed attempts once it is saved, and plan migrations back to a preferred
   compute-class step;
2. finish stops: carry out pending stops (user stops, preemptions) and requeue preempted gangs;
3. quota: apply quota-schedule ticks, run one quota cycle over the heads of each queue
   (:mod:`.queue_heads`; each job offered the flavors it may use now: not skipped, calendar windows
   open, ``capacity.calendar``), write the decisions in one transaction (admit on a flavor, wait
   with an explanation; victims are preempted first, each stop intent committed before the stop);
4. launch: start every admitted attempt on the backend, then record the launches in one transaction.

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

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..api import HostHealthPolicy, JobState, PendingReason, TrainJob
from ..api.queue import QueueingStrategy
from ..backends.base import (
    Backend,
    CapacityBackend,
    HostInfo,
    LaunchRequest,
    Notice,
    NoticeKind,
    PoolCapacity,
    RunState,
    RunStatus,
    TimedBackend,
    WatchingBackend,
    run_id_for,
)
from ..backends.cluster_set import ClusterSet, Cordon
from ..backends.placement import gang_fit
from ..capacity import calendar, clusters, fallback, health, provisioning
from ..config import PlatformConfig
from ..errors import NotLeader, SpecError
from . import admission, run_release, start_estimates, transitions
from .admission import platform_backend
from .cordons import Cordons
from .layout import DataLayout
from .queue_heads import HEADS_PER_QUEUE, QueueHeads
from .quota_bridge import QuotaBridge
from .services import ServiceManager
from .shared_bytes import JobLogs
from .start_estimates import StartEstimates
from .store import Store
from .transitions import Action, Transition

log = logging.getLogger("rayfleet.controller")

LAUNCHED = [JobState.STARTING.value, JobState.RUNNING.value]
HOLDING_QUOTA = [JobState.ADMITTED.value, JobState.STARTING.value, JobState.RUNNING.value, JobState.STOPPING.value]
#: After a wake, the loop's pass waits until no further wake came for this long (see ``_settle``).
SETTLE_S = 0.05
#: The shortest wait for a backend's next change (a change due in 0.1 ms is waited for 1 ms).
MIN_WAIT_S = 0.001
#: How long the loop lets API calls waiting for its lock go first before it starts a pass anyway.
CALLERS_FIRST_S = 1.0
#: Jobs whose placement flavors the controller keeps between passes.
PLACEMENT_MEMO = 10_000


def placement_flavors(config: PlatformConfig, job: TrainJob) -> tuple[str, ...]:
    """Flavors a stored job may run on (re-derived from the config: a config change applies)."""
    try:
        return admission.check_gang(config, job.spec.queue, job.spec.gang, path="spec.gang")
    except (SpecError, KeyError):
        return ()


@dataclasses.dataclass(frozen=True)
class _Write:
    """A transition's result to store: the job as it becomes, its state before, the store version
    it was read at (None: not checked)."""
    job: TrainJob
    before: JobState
    t: Transition
    version: int | None
    now: float


class Controller:
    def __init__(self, *, config: PlatformConfig, store: Store, backend: Backend, quota: QuotaBridge,
                 services: ServiceManager, layout: DataLayout, push_packages: Callable[[str | None, dict[str, Any]], dict[str, Any]],
                 clock: Callable[[], float] = time.time, interval: float = 1.0, heads_per_queue: int = HEADS_PER_QUEUE,
                 may_act: Callable[[], bool] = lambda: True):
        self.config = config
        self.store = store
        self.backend = backend
        self.quota = quota
        self.services = services
        self.layout = layout
        self.push_packages = push_packages
        self.clock = clock
        self.interval = interval
        self.may_act = may_act      # False: this replica does not lead (:mod:`.leader`): no pass acts on the backend
        self._fence: tuple[str, int] | None = None   # (lease, generation) the loop's writes are fenced by
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._callers = 0                      # API calls waiting for (or holding) the lock
        self._callers_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.cycles = 0
        self.last_error: str | None = None
        self.waiting: dict = {}  # workload id -> quota Wait of the last cycle
        self.estimates = StartEstimates()   # estimated starts of the jobs quota told to wait
        policy = config.cluster.spec.host_health if config.cluster is not None else None
        self.health = health.HostHealth(policy or HostHealthPolicy())
        self._capacity: dict[str, PoolCapacity] | None = None   # the backend's capacity, read once a pass when needed
        self.heads = QueueHeads(store, quota.priority, self._strict, heads_per_queue, tree=lambda queue: quota.state.tree_of(queue))
        self.cordons = Cordons(store)
        self._placements: dict[str, tuple[str, ...]] = {}     # job uid -> placement_flavors
        self._settled: dict[tuple[str, str | None, str | None], bool] = {}   # (queue, flavor, pool): no calendar window, no step to move back to
        self._writes: list[_Write] | None = None                # inside _batched: writes not yet stored
        self._logs: list[tuple[str, str | None, int, str]] | None = None   # and logs not yet saved
        self.logs = JobLogs(store)
        self._swept = False   # runs of ended jobs released once leading (server/run_release.py)
        self._idle_at: float | None = None                      # the clock when the loop last waited for a backend's change
        self._due_seen: float | None = None                     # a change already due then
        self._restore()

    # ------------------------------------------------------------ lifecycle

    def _restore(self) -> None:
        """Rebuild quota usage from the store: every job that holds quota is re-admitted as it was."""
        self._restore_quota(self.quota)
        self._restore_host_failures(self.clock())
        self.estimates.relearn(r.doc for r in self.store.list(  # type: ignore[misc]
            "TrainJob", states=[JobState.SUCCEEDED.value], limit=start_estimates.RELEARN_RUNS, newest_first=True))
        # A quota cut made while the service was down: what is now over a limit is reclaimed by
        # the normal rules in the first pass.
        self._startup_reclaims = self.quota.state.reconcile(self.clock())

    def _restore_quota(self, quota: QuotaBridge) -> None:
        records = self.store.list("TrainJob", states=HOLDING_QUOTA, shared=True)   # (read, never changed)
        records.sort(key=lambda r: (r.doc.status.attempt, r.updated_at))
        for rec in records:
            job: TrainJob = rec.doc  # type: ignore[assignment]
            quota.restore(job, placement_flavors(self.config, job))
        self.services.restore(quota)

    def refresh_view(self) -> None:
        """On a replica that does not lead: quota usage read again from the store, for the API's
        queue views (built aside, then put in place at once: a reader never sees half of it)."""
        with self._lock:
            fresh = QuotaBridge(self.config, now=self.clock())
            self._restore_quota(fresh)
            self.quota.state = fresh.state

    def take_over(self) -> None:
        """This replica starts leading (another one led since it was built): what the controller
        keeps in memory is forgotten and read again from the store, as at a restart."""
        with self._lock:
            self.quota.reset(self.clock())
            self.services.forget()
            self.heads = QueueHeads(self.store, self.quota.priority, self._strict, self.heads.per_queue,
                                    tree=lambda queue: self.quota.state.tree_of(queue))
            self.health = health.HostHealth(self.health.policy)
            self._placements.clear()
            self._settled.clear()
            self.waiting = {}
            self.estimates.forget()
            self._capacity, self._idle_at, self._due_seen = None, None, None
            self._swept = False
            self._restore()

    def start(self, fence: tuple[str, int] | None = None) -> None:
        """Run passes in a thread; ``fence``: (lease, generation) every write of the passes is
        fenced by (:meth:`.Store.fenced`)."""
        if self._thread is None:
            self._fence = fence
            if isinstance(self.backend, WatchingBackend):
                self.backend.start_watching(self.wake)   # run states from watches; a change wakes a pass
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="rayfleet-controller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if isinstance(self.backend, WatchingBackend):
            self.backend.stop_watching()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._let_callers_in()
            try:
                with self.store.fenced(*self._fence) if self._fence else contextlib.nullcontext():
                    self.run_once(self.clock())
                self.last_error = None
            except Exception as e:  # keep the loop alive; the error is visible in /healthz and logs
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("controller pass failed")
            start, idle = time.monotonic(), self._idle_s()
            woken = self._wake.wait(idle)
            self._wake.clear()
            if woken:
                self._settle(start + idle if idle < self.interval else None)

    def _idle_s(self) -> float:
        """How long the loop may wait for a wake: the tick (``interval``), or less when the backend
        knows its next change is due sooner (``TimedBackend``: the simulated backend's next run end),
        so an ended run's quota is given back when it ends, not at the next tick. A change already
        due (the backend applies it when next asked) gets one prompt pass; if it is still due after
        that pass it concerns nothing the controller reads, and the loop waits its tick (never spins)."""
        if not isinstance(self.backend, TimedBackend):
            return self.interval
        due, now = self.backend.next_event_at(), self.clock()
        if due is None or now == self._idle_at:   # nothing due, or a clock that stands still (a test's)
            return self.interval
        self._idle_at = now
        if due > now:
            return min(self.interval, max(due - now, MIN_WAIT_S))
        if due == self._due_seen:   # already due at the last wait, and the pass since left it: nothing it reads
            return self.interval
        self._due_seen = due        # due, not yet applied: the next pass's reads apply it
        return MIN_WAIT_S

    def _settle(self, due: float | None = None) -> None:
        """After a wake, wait while more wakes keep coming (``SETTLE_S`` apart), at most ``interval``
        and not past ``due`` (monotonic: the backend's next change): a burst of API calls (200 stops)
        is served between passes and followed by one pass, instead of each call waking a pass the
        next call then waits for."""
        deadline = time.monotonic() + self.interval
        if due is not None:
            deadline = min(deadline, due)
        while not self._stop.is_set() and time.monotonic() < deadline and self._wake.wait(min(SETTLE_S, max(deadline - time.monotonic(), 0.0))):
            self._wake.clear()

    def _let_callers_in(self) -> None:
        """An API call already waiting for the lock goes before the next pass (a lock is not fair:
        the loop would take it again first), for at most ``CALLERS_FIRST_S``."""
        deadline = time.monotonic() + CALLERS_FIRST_S
        while self._callers and time.monotonic() < deadline:
            time.sleep(0.002)

    @contextmanager
    def _caller(self) -> Iterator[None]:
        """The controller's lock, for an API call (outside a pass)."""
        with self._callers_lock:
            self._callers += 1
        try:
            with self._lock:
                yield
        finally:
            with self._callers_lock:
                self._callers -= 1

    # ------------------------------------------------------------ one pass

    def run_once(self, now: float) -> None:
        with self._lock:
            self._leads()
            if not self._swept:   # (leading from now on: what a crash or another leader left behind)
                self._swept = run_release.sweep(self.store, self.backend)
            self._capacity = None
            self._clusters(now)
            self._sync(now)
            self._finish_stops(now)
            self._schedule(now)
            self._leads()   # (a replica paused mid-pass, whose lease lapsed meanwhile, launches nothing)
            self._launch_admitted(now)
            self.services.reconcile(self.waiting, now)
            self.cycles += 1

    def _clusters(self, now: float) -> None:
        """Several clusters: which answer (cordoning one silent for its ``failover.unreachableAfter``,
        draining it once silent for ``lostAfter``, lifting that cordon once it has answered for
        ``recoverAfter``), and the cordons in force."""
        if not isinstance(self.backend, ClusterSet):
            return
        cordons = self.cordons.all()
        for st in self.backend.probe():
            policy = self.config.clusters[st.name].spec.failover
            rec = cordons.get(st.name)
            decision = clusters.decide(st.failing_since, st.answering_since, None if rec is None else rec.auto,
                                       unreachable_after=policy.unreachable_after, recover_after=policy.recover_after, now=now,
                                       lost_after=policy.lost_after, drained=rec is not None and rec.drain)
            if decision in ("cordon", "drain"):
                silent = now - (st.failing_since or now)
                lost = "presumed lost: " if decision == "drain" else ""
                cordons[st.name] = self.cordons.set(st.name, drain=decision == "drain", auto=True, now=now,
                                                    reason=f"{lost}not answering for {silent:.0f}s: {st.error}")
            elif decision == "uncordon":
                self.cordons.remove(st.name, reason=f"answering again for {policy.recover_after:.0f}s", now=now)
                del cordons[st.name]
        grace = {n: c.spec.failover.drain_grace for n, c in self.config.clusters.items()}
        self.backend.set_cordons({n: Cordon(r.drain, r.reason, r.since, r.since + grace[n] if r.drain else None)
                                  for n, r in cordons.items() if n in grace})

    def _leads(self) -> None:
        if not self.may_act():
            raise NotLeader("this replica does not hold the controller lease now: the pass acts on nothing")

    def _apply(self, job: TrainJob, t: Transition | None, now: float, *, version: int | None = None) -> TrainJob:
        """Carry out a transition's actions (logs before the run goes), then write it."""
        if t is None:
            return job
        run_id = self._run_id(job)
        if Action.REQUEST_CHECKPOINT in t.actions and isinstance(self.backend, CapacityBackend):
            self.backend.request_checkpoint(run_id)
        if Action.SAVE_LOGS in t.actions:
            self._save_logs(job)
        if Action.STOP_RUN in t.actions:
            self.backend.stop(run_id, reason=job.status.stop_reason or t.event or "stopped")
        if Action.RELEASE_QUOTA in t.actions:
            self.quota.release(job.name)
        if t.status is not job.status:
            transitions.settle_pending_reason(job.status.state, t.status)
            self.estimates.changed(job, t.status)
        if t.event is None and (t.status is job.status or t.status == job.status):
            return job
        write = _Write(job.model_copy(update={"status": t.status}), job.status.state, t, version, now)
        if self._writes is not None:
            self._writes.append(write)
        else:
            self._store_writes([write])
        return write.job

    @contextmanager
    def _batched(self) -> Iterator[list[_Write]]:
        """The writes of :meth:`_apply` inside the block go to the store in one transaction when
        it ends (also when an exception leaves it: what was decided before is kept, as it would be
        written one by one). Actions are carried out at once, as outside a batch: a crash before
        the commit is the same as one between an action and its write, which the transitions
        already repair (a run observed again, a stop asked again). Nothing in the block may read
        back a job it wrote from the store; the block gets the list of its writes, in order."""
        assert self._writes is None, "store batches do not nest"
        writes: list[_Write] = []
        logs: list[tuple[str, str | None, int, str]] = []
        self._writes, self._logs = writes, logs
        try:
            yield writes
        finally:
            self._writes = self._logs = None
            self._store_writes(writes, logs)

    def _store_writes(self, writes: list[_Write], logs: Sequence[tuple[str, str | None, int, str]] = ()) -> None:
        if not writes and not logs:
            return
        with self.store.batch() as db:   # the controller never changes a job in place: its writes are shared
            for log in logs:
                JobLogs.save_in(db, *log)
            for w in writes:
                self.store.update(w.job, expected_version=w.version, event=w.t.event, message=w.t.message,
                                  data=w.t.data, now=w.now, shared=True)
        # committed: the runs whose end is now recorded go (never before: server/run_release.py)
        run_release.release(self.backend, [r for w in writes if (r := run_release.ended(w.job, w.before))])
        for w in writes:
            if w.job.status.state == JobState.QUEUED and w.before != JobState.QUEUED:
                self.heads.unpark([w.job.spec.queue])   # requeued (preempted, disrupted) at its old place: maybe behind its cursor

    # ------------------------------------------------------------ 1. sync

    def _sync(self, now: float) -> None:
        """Each launched job as its run is now (its writes in one transaction), then deadlines. A
        job with nothing to do (:meth:`_quiet`, most running jobs most passes) is only looked at."""
        hosts = self._host_health(now)
        out = health.out_of_service(hosts, self.health)
        launched = self.store.list("TrainJob", states=LAUNCHED, shared=True)
        looked: dict[str, TrainJob] = {}
        with self._batched() as written:
            for rec in launched:
                job: TrainJob = rec.doc  # type: ignore[assignment]
                status = self.backend.run_status(job.status.ray_job_id or self._run_id(job))
                if self._quiet(job, status, out, now):
                    continue
                looked[job.name] = job
                self._sync_one(job, status, rec.resource_version, out, now)
        # each job as the phase left it (its last write, else as read), not read from the store again
        looked.update((w.job.name, w.job) for w in written)
        with self._batched():
            for job in looked.values():
                if job.status.state.value in LAUNCHED:
                    self._apply(job, transitions.check_deadline(job, now), now)

    def _quiet(self, job: TrainJob, rs: RunStatus | None, out: set[str], now: float) -> bool:
        """Nothing :meth:`_sync_one` and the deadline check would do for this job now: it runs, its
        run reports it running with no newer checkpoint and no notice, none of its hosts is out of
        service, its pool has no calendar window draining, its compute class has no step to move
        back to, and its maxRunDuration has not passed (each the condition under which the full
        look would act)."""
        st = job.status
        if st.state != JobState.RUNNING or st.notice is not None or rs is None or rs.state != RunState.RUNNING or rs.notices:
            return False
        if rs.last_checkpoint_step is not None and rs.last_checkpoint_step != st.last_checkpoint_step:
            return False
        if out and not out.isdisjoint(rs.hosts):
            return False
        key = (job.spec.queue, st.flavor, st.pool)
        settled = self._settled.get(key)
        if settled is None:   # (the config does not change while the controller runs)
            pool = self.config.pools.get(st.pool or "")
            windows = pool is not None and calendar.has_window(pool.spec)
            settled = self._settled[key] = not windows and not fallback.preferred(self.config, job.spec.queue, st.flavor)
        return settled and not transitions.deadline_passed(job, now)

    def _sync_one(self, job: TrainJob, status: RunStatus | None, version: int, out: set[str], now: float) -> None:
        """One launched job: its run's report, failures counted against hosts, notices, capacity fallback."""
        lost_noticed = status is not None and status.state == RunState.LOST and job.status.notice is not None
        stockout = status is not None and status.state == RunState.STOCKOUT
        t = transitions.observe(job, status, now, next_flavor=self._next_flavor(job, now) if stockout else None,
                                flavor_exhausted=lost_noticed and self._exhausted(job, job.status.notice.kind))  # type: ignore[union-attr]
        tipped = self._count_failure(job, status, now)
        job = self._apply(job, t, now, version=version)
        for host in tipped:
            self._cordon(host, f"{self.health.policy.failures_to_cordon} runs failed on it within "
                               f"{self.health.policy.window:.0f}s", now, job=job)
        if job.status.state == JobState.RUNNING and status is not None:
            self._notices(job, status, out, now)
        self._capacity_fallback(job, now)

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

    # ------------------------------------------------------------ 1b. capacity that comes and goes

    def _notices(self, job: TrainJob, rs: RunStatus, out: set[str], now: float) -> None:
        """A RUNNING attempt: record a notice on its hosts (the backend's, a calendar window's drain,
        a cordoned host), move it when its checkpoint or deadline comes, or plan a migration back."""
        notices = list(rs.notices)
        pool = self.config.pools.get(job.status.pool or "")
        end = calendar.drain_deadline(pool.spec, now) if pool is not None else None
        if end is not None:
            notices.append(Notice(NoticeKind.WINDOW_END, "", end, f"calendar window of pool {job.status.pool} closes"))
        for host in sorted(set(rs.hosts) & out):
            notices.append(Notice(NoticeKind.UNHEALTHY, host, now + health.UNHEALTHY_GRACE_S, f"host {host} cordoned as faulty"))
        first = transitions.first_notice(tuple(notices))
        if first is not None:
            job = self._apply(job, transitions.noticed(job, first, now), now)
        if job.status.notice is not None and job.status.notice.kind != "migrate":
            self._apply(job, transitions.notice_due(job, now, flavor_exhausted=self._exhausted(job, job.status.notice.kind)), now)
            return
        self._migration(job, now)

    def _migration(self, job: TrainJob, now: float) -> None:
        """Compute-class activeMigration: a job on a later step moves back when a preferred one has room."""
        st = job.status
        prefs = fallback.preferred(self.config, job.spec.queue, st.flavor)
        if not prefs:
            return
        allowed = self._placement(job)
        room = next((f for f in prefs if f in allowed and self._has_room(job, f, now)), None)
        if room is not None:
            job = self._apply(job, transitions.migration_planned(job, room, now), now)
        elif st.notice is not None:
            job = self._apply(job, transitions.migration_withdrawn(job, "the preferred step has no room any more"), now)
        if job.status.notice is not None:
            self._apply(job, transitions.notice_due(job, now), now)

    def _has_room(self, job: TrainJob, flavor: str, now: float) -> bool:
        """Quota would admit the job on ``flavor`` now, and the flavor's pool has the free hosts."""
        pool = self.config.pools.get(self.config.flavors[flavor].spec.pool)
        if pool is None or not calendar.offered(pool.spec, job, now) or not self.quota.fits(job, flavor):
            return False
        cap = self._capacities().get(pool.name)
        gang = job.spec.gang
        need = gang_fit(pool.spec, gang.workers, gang.resources_per_worker, gang.placement_strategy,
                        backend=platform_backend(self.config)).hosts
        return cap is not None and cap.free_hosts >= need

    def _capacities(self) -> dict[str, PoolCapacity]:
        if self._capacity is None:
            self._capacity = self.backend.capacity()
        return self._capacity

    def _exhausted(self, job: TrainJob, kind: str) -> bool:
        """The job's flavor has nothing left for a gang moved off it by a ``kind`` notice."""
        if kind == "migrate":
            return False
        pool = self.config.pools.get(job.status.pool or "")
        cap = self._capacities().get(job.status.pool or "") if pool is not None else None
        if pool is None or cap is None:
            return kind == "window-end"
        fixed = pool.spec.provisioning.mode in ("reservation", "dws-calendar")
        absent = max(cap.hosts - cap.ready_hosts - cap.provisioning_hosts, 0)
        return fallback.flavor_exhausted(kind, fixed, cap.free_hosts, cap.provisioning_hosts, absent)

    def _placement(self, job: TrainJob) -> tuple[str, ...]:
        """:func:`placement_flavors`, once per job (a job's spec and the config do not change while
        the controller runs); the memo is dropped when it grows past ``PLACEMENT_MEMO``."""
        key = job.metadata.uid or job.name
        got = self._placements.get(key)
        if got is None:
            if len(self._placements) >= PLACEMENT_MEMO:
                self._placements.clear()
            got = self._placements[key] = placement_flavors(self.config, job)
        return got

    def _strict(self, queue: str) -> bool:
        q = self.config.queues.get(queue)
        return q is not None and q.spec.queueing_strategy == QueueingStrategy.STRICT_FIFO

    def _offered(self, job: TrainJob, now: float) -> tuple[str, ...]:
        """The flavors quota may try for a queued job now: not skipped, and open calendar windows only."""
        left = fallback.remaining(self._placement(job), job.status.capacity_skipped)
        return tuple(f for f in left if calendar.offered(self.config.pools[self.config.flavors[f].spec.pool].spec, job, now))

    def _next_flavor(self, job: TrainJob, now: float) -> str | None:
        return fallback.next_remaining(self._offered(job, now), job.status.capacity_skipped, job.status.flavor)

    # ------------------------------------------------------------ 1c. faulty hosts

    def _host_health(self, now: float) -> list[HostInfo]:
        """Cordon hosts the backend reports unhealthy, return overdue ones, note repaired ones; the hosts as they are now."""
        if not isinstance(self.backend, CapacityBackend):
            return []
        hosts = self.backend.hosts()
        changed = False
        for h in health.reported_unhealthy(hosts, self.health):
            changed = True
            self._cordon(h.name, f"the backend reports it unhealthy{': ' + h.message if h.message else ''}", now)
        for h in health.overdue(hosts, self.health, now):
            changed = True
            self.backend.uncordon(h.name)
        if changed:
            hosts = self.backend.hosts()
        for name in health.back_in_service(hosts, self.health):
            self.health.mark_uncordoned(name)
            msg = f"host {name} back in service (repaired, or replaced by a new machine)"
            log.info(msg)
            self.store.add_event("Host", name, "Uncordoned", msg, {}, now=now)
        return hosts

    def _count_failure(self, job: TrainJob, rs: RunStatus | None, now: float) -> list[str]:
        """A FAILED run counts once against each of its hosts; the hosts it tips over the policy."""
        if rs is None or rs.state != RunState.FAILED or not rs.hosts or not isinstance(self.backend, CapacityBackend):
            return []
        for host in sorted(set(rs.hosts)):
            self.store.add_event("Host", host, "RunFailed", f"run {rs.run_id} failed on host {host}",
                                 {"job": job.name, "attempt": job.status.attempt}, now=now)
        return self.health.failed(rs.hosts, now)

    def _cordon(self, host: str, why: str, now: float, *, job: TrainJob | None = None) -> None:
        if not isinstance(self.backend, CapacityBackend) or host in self.health.cordoned:
            return
        self.backend.cordon(host, why)
        self.health.mark_cordoned(host, now)
        msg = f"host {host} cordoned as faulty: {why}; repair in {self.health.policy.repair_time:.0f}s"
        log.warning(msg)
        self.store.add_event("Host", host, "Cordoned", msg, {"job": job.name if job else None}, now=now)
        if job is not None:
            self.store.add_event("TrainJob", job.name, "HostCordoned", msg, {"host": host, "attempt": job.status.attempt},
                                 uid=job.metadata.uid, now=now)

    def _restore_host_failures(self, now: float) -> None:
        """Failure counts are kept in memory, rebuilt here from the ``Host`` events of the window."""
        after = 0
        while True:
            batch = self.store.events("Host", after=after, limit=1000)
            for e in batch:
                if e.type == "RunFailed" and now - e.ts < self.health.policy.window:
                    self.health.failures.setdefault(e.name, []).append(e.ts)
                elif e.type == "Cordoned":
                    self.health.failures.pop(e.name, None)
            if len(batch) < 1000:
                return
            after = batch[-1].id

    # ------------------------------------------------------------ 2. stops

    def request_stop(self, name: str, reason: str = "user", message: str = "stopped by user") -> TrainJob:
        """A stop asked through the API (outside a pass: stamped with the controller's clock)."""
        with self._caller():
            job: TrainJob = self.store.get("TrainJob", name).doc  # type: ignore[assignment]
            job = self._apply(job, transitions.request_stop(job, reason, message, self.clock()), self.clock())
        self.wake()
        return job

    def _finish_stops(self, now: float) -> None:
        with self._batched():
            for rec in self.store.list("TrainJob", states=[JobState.STOPPING.value], shared=True):
                self._apply(rec.doc, transitions.finish_stop(rec.doc, now), now)  # type: ignore[arg-type]

    # ------------------------------------------------------------ 3. quota

    def _schedule(self, now: float) -> None:
        reclaims, self._startup_reclaims = self._startup_reclaims, []
        # (reclaims: the config in force when the service started is less than what was admitted)
        self._preempt([(p.victim_id, f"config changed while the control service was down: {p.message or p.reason}") for p in reclaims]
                      + [(p.victim_id, f"quota schedule: {p.message or p.reason}") for p in self.quota.tick(now)], now)
        self.heads.quota_now(self.quota.state.releases_by_tree(), self.quota.state.effective_config)
        heads = self.heads.read()
        pending = [h.job for h in heads if transitions.eligible(h.job, now)]
        workloads = []
        decisions: list[tuple[TrainJob, Transition | None]] = []
        for job in pending:
            flavors = self._offered(job, now)
            if flavors or not self._placement(job):
                workloads.append(self.quota.workload(job, flavors))
                continue
            steps = fallback.remaining(self._placement(job), job.status.capacity_skipped)
            why = "; ".join(f"{f}: {calendar.why_not(self._pool_spec(f), job, now)}" for f in steps)
            opens = [b[0] for f in steps if (b := provisioning.window_bounds(self._pool_spec(f))) is not None and b[0] > now]
            estimate = (min(opens), "when its calendar window opens") if opens else (None, "no calendar window of its flavors opens later")
            decisions.append((job, transitions.waiting(job, f"waiting for a calendar window: {why}", PendingReason.WAITING_FOR_CALENDAR_WINDOW,
                                                       estimate, now)))
        workloads += self.services.pending(now)
        result = self.quota.schedule(workloads, now)
        # the quota layer's message names the preemptor only to a victim of its own queue
        self._preempt([(p.victim_id, f"preempted ({p.reason}): {p.message}".rstrip(": ")) for p in result.preempted], now)
        jobs = {j.name: j for j in pending}
        for a in result.admitted:
            got = jobs.get(a.workload_id)
            if got is None:
                self.services.admitted(a, now)
                continue
            decisions.append((got, transitions.admitted(got, a.flavor, self.config.flavors[a.flavor].spec.pool, dict(a.borrowed))))
        offered = {wl.id: wl for wl in workloads}
        told: list[tuple[TrainJob, Any]] = []
        for w in result.waiting:
            got = jobs.get(w.workload_id)
            if got is None:
                self.services.waiting(w, now)
                continue
            self.estimates.told_to_wait(got, offered[w.workload_id])
            told.append((got, w))
        if self.estimates.due(now):
            self.estimates.refresh(self.quota.state, lambda: (r.doc for r in self.store.list("TrainJob", states=HOLDING_QUOTA, shared=True)), now)  # type: ignore[misc]
        for got, w in told:
            e = self.estimates.current.get(got.name)
            decisions.append((got, transitions.waiting(got, w.reason, PendingReason(w.code), None if e is None else (e.at, e.reason), now)))
        self._write_decisions(decisions, now)
        admitted = {a.workload_id for a in result.admitted}
        self.heads.park(heads, admitted | {w.workload_id for w in result.waiting}, admitted)
        self.waiting = {w.workload_id: w for w in result.waiting}

    def _write_decisions(self, decisions: list[tuple[TrainJob, Transition | None]], now: float) -> None:
        """The cycle's decisions about jobs (admitted, waiting) in one transaction. They carry no
        action (an admitted job is launched by the launch step, from the store), so a crash before
        the commit loses only decisions nothing acted on, and the next pass decides again."""
        try:
            with self._batched():
                for job, t in decisions:
                    self._apply(job, t, now)
        except Exception:
            # nothing of it was stored: quota gives back what the store still has queued
            for job, t in decisions:
                if t is not None and t.status.state == JobState.ADMITTED:
                    self.quota.release(job.name)
            raise

    def _preempt(self, victims: list[tuple[str, str]], now: float) -> None:
        """Stop victims (workload id, message) now, so the capacity is free before their preemptors
        launch: every stop intent in one transaction, then the stops, written in a second one. A
        crash between the two leaves them STOPPING, and the next pass finishes them."""
        stopping: list[TrainJob] = []
        seen: set[str] = set()
        with self._batched():
            for victim, message in victims:
                if victim in seen:   # (read back inside the batch, a second copy would be stale)
                    continue
                seen.add(victim)
                rec = self.store.find("TrainJob", victim)
                if rec is None:
                    self.services.preempted(victim, message, now)
                    continue
                job: TrainJob = rec.doc  # type: ignore[assignment]
                if job.status.state in (JobState.QUEUED, JobState.STOPPING):
                    continue
                job = self._apply(job, transitions.request_stop(job, "preempted", message, now), now)
                if job.status.state == JobState.STOPPING:
                    stopping.append(job)
        with self._batched():
            for job in stopping:
                self._apply(job, transitions.finish_stop(job, now), now)

    # ------------------------------------------------------------ 4. launch

    def _launch_admitted(self, now: float) -> None:
        """Launch every ADMITTED attempt, then record the launches in one transaction: a crash
        before the commit leaves them ADMITTED, and their relaunch is idempotent per run id."""
        launched: list[tuple[TrainJob, Transition]] = []
        for rec in self.store.list("TrainJob", states=[JobState.ADMITTED.value], shared=True):
            job: TrainJob = rec.doc  # type: ignore[assignment]
            req = self.launch_request(job)
            try:
                req = dataclasses.replace(req, runtime_env=self.push_packages(rec.team, req.runtime_env))
                self.backend.launch(req)
            except Exception as e:
                log.exception("launch of %s failed", req.run_id)
                self._apply(job, transitions.launch_failed(job, f"launch failed: {e}", now), now)
                continue
            cluster = self.backend.cluster_of(req.run_id) if isinstance(self.backend, ClusterSet) else None
            launched.append((job, transitions.launched(job, req.run_id, now, cluster=cluster)))
        with self._batched():
            for job, t in launched:
                self._apply(job, t, now)

    def _pool_spec(self, flavor: str) -> Any:
        return self.config.pools[self.config.flavors[flavor].spec.pool].spec

    def launch_request(self, job: TrainJob) -> LaunchRequest:
        pool = self.config.pools[job.status.pool or ""]
        return LaunchRequest.for_job(job, pool.name, pool.spec, attempt=job.status.attempt,
                                     checkpoint_dir=self.layout.checkpoint_dir(job))

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _run_id(job: TrainJob) -> str:
        return run_id_for(job.name, job.status.attempt, job.metadata.uid)

    def _save_logs(self, job: TrainJob) -> None:
        """Keep the attempt's logs in the store (every replica serves them), before its run goes;
        inside a batch, with the batch's writes."""
        if not job.status.attempt:
            return
        try:
            text = self.backend.logs(self._run_id(job))
        except Exception as e:  # the run may be gone with its host
            text = f"[rayfleet] logs of attempt {job.status.attempt} unavailable: {e}\n"
        log = (job.name, job.metadata.uid, job.status.attempt, text)
        if self._logs is not None:
            self._logs.append(log)
        else:
            self.logs.save(*log)
