"""The simulated backend: the Backend and ServingBackend protocols with no Ray and no processes.

Everything happens on an injected clock (``clock() -> seconds``). Nothing sleeps: scripted and
derived events (a host ready, lost or reclaimed, a run running, finishing or failing, a replica
group ready, a change of load) sit in one heap keyed by time, and every call first applies the
events due by ``clock()``, in time order, placing pending gangs as hosts free up or arrive. Cost is
per event, never a scan of every host or run. Random choices (provisioning jitter, runtime jitter)
come from ``random.Random(seed)`` in event order, so one seed and one sequence of calls give one
history.

Behaviour is scripted per job *name* (``LaunchRequest.job_id`` / the ``rayfleet.io/job``
metadata), never parsed from run ids: :meth:`SimBackend.script_run`, :meth:`script_service`,
:meth:`pool` (initial hosts, provisioning delay, stockouts), :meth:`lose_host`, :meth:`reclaim`,
:meth:`fault`, :meth:`set_unhealthy`, or a scenario file (:mod:`.scenario`) with the same
vocabulary. Provisioning modes and the autoscaler live in :mod:`.pools`, faulty hosts and cordons
in :mod:`.health`.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from ...api import PoolSpec
from ...capacity.provisioning import reclaim_notice
from ...errors import BackendError, NotFound
from ..base import ClusterInfo, HostInfo, LaunchRequest, PoolCapacity, RunState, RunStatus
from ..placement import feasibility_problems, plan_request
from .health import HealthSim
from .hosts import ABSENT, Host, PoolHosts
from .pools import PoolsSim
from .records import DwsRequest, Fault, Gang, SimRun, SimService, package_uris, shape
from .scenario import RunScript, Scenario, ServiceScript
from .serving import ServingSim


class PoolHandle:
    """Scripting one pool: ``sim.pool("l4").stockout(until=t)``."""

    def __init__(self, sim: SimBackend, name: str):
        self.sim, self.name = sim, name

    def stockout(self, *, until: float, start: float | None = None) -> PoolHandle:
        """No new host of the pool can be provisioned from ``start`` (default: now) to ``until``."""
        self.sim._stockouts.setdefault(self.name, []).append((self.sim._now() if start is None else start, until))
        self.sim._push(until, "retry", self.name)
        return self

    def provisioning(self, *, delay: float, jitter: float = 0.0) -> PoolHandle:
        self.sim._pool_script(self.name).update(provisioning_delay=delay, provisioning_jitter=jitter)
        return self

    def initial_hosts(self, n: int) -> PoolHandle:
        """Hosts ready when the sim comes up (call before ``up``; a calendar pool: when its window
        opens). Default: ``minReplicas`` hosts, all of a reservation's or calendar booking's."""
        self.sim._pool_script(self.name)["initial_hosts"] = n
        return self

    def hosts(self) -> list[str]:
        return [h.name for h in self.sim.pools[self.name].hosts]


class SimBackend(PoolsSim, HealthSim, ServingSim):
    """A scripted fleet. Implements :class:`~rayfleet.backends.base.Backend`,
    :class:`~rayfleet.backends.base.CapacityBackend` and :class:`~rayfleet.backends.base.ServingBackend`."""

    name = "sim"

    def __init__(self, pools: dict[str, PoolSpec], *, clock: Callable[[], float], seed: int = 0, scenario: Scenario | None = None,
                 cluster_name: str = "sim", provisioning_delay: float = 0.0, provisioning_jitter: float = 0.0,
                 default_runtime: float = 30.0, repair_time: float = 600.0, checkpoints: dict[str, int] | None = None):
        """``checkpoints``: where checkpoints are kept (job -> latest step), shared by the sims of
        several clusters as a bucket is (default: this sim's own)."""
        self.pools = {name: PoolHosts(name, spec) for name, spec in pools.items()}
        self._host_pool = {h.name: p for p, ph in self.pools.items() for h in ph.hosts}
        self.clock = clock
        self.cluster_name = cluster_name
        self.default_runtime = default_runtime
        self.repair_time = repair_time               # a cordoned host's repair (spec.hostHealth.repairTime)
        self._defaults = {"provisioning_delay": provisioning_delay, "provisioning_jitter": provisioning_jitter}
        self._pool_scripts: dict[str, dict[str, Any]] = {}
        self._stockouts: dict[str, list[tuple[float, float]]] = {}
        self._run_scripts: dict[str, RunScript] = {}
        self._svc_scripts: dict[str, ServiceScript] = {}
        self._default_run = RunScript()
        self._default_svc = ServiceScript()
        self.scenario: Scenario | None = None
        self.rng = random.Random(seed)
        self._heap: list[tuple[float, int, str, tuple]] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self._up_at: float | None = None
        self._last = float("-inf")
        self.runs: dict[str, SimRun] = {}
        self.services: dict[str, SimService] = {}
        self.packages: dict[str, int] = {}
        self.launches: Counter[str] = Counter()      # job name -> runs created
        self._checkpoint: dict[str, int] = {} if checkpoints is None else checkpoints   # job name -> latest checkpointed step
        self._outages: list[tuple[float, float, str]] = []   # (from, until, message): the cluster does not answer
        # pool -> gang shape -> pending gangs of that shape, in launch order: identical gangs
        # behind one that does not fit are not tried again in the same pass.
        self._pending: dict[str, dict[tuple, dict[str, Gang]]] = {p: {} for p in self.pools}
        self._dirty: set[str] = set()
        self._load: dict[str, int] = {}              # service -> replicas load asks for
        self._gang_seq: dict[str, int] = {}          # gang key -> order it was first queued in
        self._requests: dict[int, DwsRequest] = {}   # queued DWS requests out, by id
        self._gang_request: dict[str, int] = {}      # gang key -> its queued DWS request
        self._faults: dict[str, list[Fault]] = {}    # host -> scripted faults
        self._hosts_view: tuple[int, list[HostInfo]] | None = None   # (Host.shown_changes, hosts()) last built
        if scenario is not None:
            self.apply(scenario, start=None)

    # ------------------------------------------------------------ scripting

    def pool(self, name: str) -> PoolHandle:
        if name not in self.pools:
            raise NotFound(f"no pool {name!r} in the sim (pools: {sorted(self.pools)})", field="pool")
        return PoolHandle(self, name)

    def outage(self, *, until: float, start: float | None = None, message: str = "connection refused") -> None:
        """The cluster does not answer from ``start`` (default: now) to ``until``: every call the
        control service makes raises BackendError (its runs go on meanwhile)."""
        self._outages.append((self._now() if start is None else start, until, message))

    def _answer(self) -> None:
        if self._outages:
            now = self._now()
            for start, until, message in self._outages:
                if start <= now < until:
                    raise BackendError(f"cluster {self.cluster_name} unreachable: {message}")

    def _pool_script(self, name: str) -> dict[str, Any]:
        return self._pool_scripts.setdefault(name, {})

    def _host(self, name: str) -> Host:
        pool = self._host_pool.get(name)
        if pool is None:
            raise NotFound(f"no host {name!r} in the sim", field="host")
        return self.pools[pool].by_name[name]

    def lose_host(self, host: str, *, at: float | None = None, message: str | None = None) -> None:
        """The host dies at ``at`` (default: now) without notice: its runs are LOST."""
        self._host(host)
        self._push(self._now() if at is None else at, "lose", host, message or f"host {host} was lost")

    def reclaim(self, host: str, *, at: float | None = None, notice: float | None = None) -> None:
        """The host is reclaimed (spot preemption) with ``notice`` seconds of warning (default: the
        pool's ``reclaimNotice``, 30 s for a pool that is not spot): from ``at`` it takes no new
        bundles and its runs see a RECLAIM notice; at ``at + notice`` it goes and its runs are LOST."""
        h = self._host(host)
        if notice is None:
            notice = reclaim_notice(self.pools[h.pool].spec)
        self._push(self._now() if at is None else at, "notice", host, 30.0 if notice is None else notice)

    def script_run(self, job: str, script: RunScript | None = None, **fields: Any) -> RunScript:
        """What every attempt of job ``job`` (its metadata name) does: ``runtime``, ``fail_at``,
        ``fail_attempts``, ``checkpoints``, ``checkpoint_every``, ``step_time``, ``startup``."""
        s = script or RunScript(**fields)
        self._run_scripts[job] = s
        return s

    def apply(self, scenario: Scenario, *, start: float | None) -> None:
        """Take a scenario's scripts; its times are seconds after ``start`` (None: when the sim comes up)."""
        scenario.check_against({p: [h.name for h in ph.hosts] for p, ph in self.pools.items()})
        self.scenario = scenario
        if scenario.seed is not None:
            self.rng = random.Random(scenario.seed)
        self._default_run, self._default_svc = scenario.defaults.run, scenario.defaults.service
        for name, ps in scenario.pools.items():
            self._pool_script(name).update({k: v for k, v in ps.model_dump().items() if k != "stockouts" and v is not None})
        if start is None and self._up_at is None:
            return  # the timed parts are applied by up()
        self._apply_timed(scenario, self._up_at if start is None else start)

    def _apply_timed(self, scenario: Scenario, t0: float) -> None:
        for name, ps in scenario.pools.items():
            for w in ps.stockouts:
                self.pool(name).stockout(start=t0 + w.start, until=t0 + w.until)
        for ev in scenario.hosts:
            if ev.lose:
                self.lose_host(ev.lose, at=t0 + ev.at)
            else:
                self.reclaim(ev.host, at=t0 + ev.at, notice=ev.notice)
        for f in scenario.faults:
            self.fault(f.host, start=t0 + f.start, until=None if f.until is None else t0 + f.until, message=f.message,
                       fail_after=f.fail_after)
        for u in scenario.unhealthy:
            self.set_unhealthy(u.host, at=t0 + u.at, message=u.message)

    def launch_count(self, job: str) -> int:
        """Runs created for job ``job`` (a repeated launch of the same run id is not counted)."""
        return self.launches[job]

    # ------------------------------------------------------------ clock and events

    def _now(self) -> float:
        return max(self.clock(), self._last)

    def _push(self, t: float, kind: str, *args: Any) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, args))

    def next_event_at(self) -> float | None:
        """When the next scheduled event is due (a host ready, lost or reclaimed, a run up or ending,
        a group ready, a load change; one that turns out stale does nothing), or None when nothing
        is scheduled. For drivers that move the clock from event to event (``fleetsim``)."""
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def _advance(self) -> float:
        now = self._now()
        while self._heap and self._heap[0][0] <= now:
            t, _, kind, args = heapq.heappop(self._heap)
            t = max(t, self._last)
            self._last = t
            getattr(self, f"_on_{kind}")(t, *args)
            if not (self._heap and self._heap[0][0] <= t):
                self._place_dirty(t)   # once every event of this instant is applied (hosts of one request arrive together)
        self._last = now
        self._place_dirty(now)
        return now

    def _on_run_up(self, t: float, run_id: str, epoch: int) -> None:
        run = self.runs[run_id]
        if run.epoch != epoch or run.state != RunState.PENDING:
            return
        run.state, run.started_at, run.message = RunState.RUNNING, t, ""
        run.epoch += 1
        resumed = run.resumed_from or 0
        steps = max(1, round(run.runtime / run.script.step_time))
        remaining = max(0, steps - resumed) * run.script.step_time
        run.log.append(f"[sim] t={t:.1f} attempt {run.attempt} running" + (f", resumed from step {resumed}" if run.resumed_from else ""))
        ends = [(remaining, RunState.SUCCEEDED, "succeeded")]
        if run.script.fails(run.attempt):
            ends.append((run.script.fail_at or 0.0, RunState.FAILED, run.script.fail_message))
        fault = self._fault_end(run, t)
        if fault is not None:
            ends.append(fault)
        if run.max_run_duration:  # as KubeRay's activeDeadlineSeconds: an in-cluster backstop per attempt
            ends.append((run.max_run_duration, RunState.DEADLINE_EXCEEDED, f"activeDeadlineSeconds ({run.max_run_duration:.0f}s) passed"))
        after, state, message = min(ends, key=lambda e: e[0])
        self._push(t + after, "run_end", run_id, run.epoch, state.value, message)

    def _on_run_end(self, t: float, run_id: str, epoch: int, state: str, message: str) -> None:
        run = self.runs[run_id]
        if run.epoch != epoch or run.state != RunState.RUNNING:
            return
        self._finish(run, RunState(state), t, message)

    # ------------------------------------------------------------ gangs

    def _placed(self, gang: Gang, hosts: list[Host], t: float) -> None:
        gang.hosts, gang.placed_at = hosts, t
        self._cancel_request(gang.key, t)
        run = self.runs.get(gang.key)
        if run is not None:
            run.node_ids = tuple(h.node_id for h in hosts)
            run.hosts = tuple(dict.fromkeys(h.name for h in hosts))
            run.message = "starting"
            run.log.append(f"[sim] t={t:.1f} gang placed: {gang.plan.workers} worker(s) on {', '.join(sorted({h.name for h in hosts}))}")
            self._push(t + run.script.startup, "run_up", run.run_id, run.epoch)
            return
        self._svc_placed(gang, t)

    def _release(self, gang: Gang) -> None:
        pool = gang.plan.pool
        self._cancel_request(gang.key, self._last)
        gangs = self._pending[pool].get(shape(gang.plan))
        if gangs is not None:
            gangs.pop(gang.key, None)
            if not gangs:
                del self._pending[pool][shape(gang.plan)]
        if gang.hosts:
            self.pools[pool].free_gang(gang.plan, gang.hosts)
            gang.hosts = []
            self._dirty.add(pool)

    def _gang_lost(self, key: str, t: float, message: str) -> None:
        run = self.runs.get(key)
        if run is not None:
            if not run.state.terminal:
                self._finish(run, RunState.LOST, t, message)
            return
        self._svc_gang_lost(key, t, message)

    # ------------------------------------------------------------ runs

    def _step_at(self, run: SimRun, t: float) -> int:
        resumed = run.resumed_from or 0
        if run.started_at is None:
            return resumed
        steps = max(1, round(run.runtime / run.script.step_time))
        return min(steps, resumed + int((t - run.started_at + 1e-9) // run.script.step_time))

    def _checkpoint_of(self, run: SimRun, t: float) -> int | None:
        before = run.resumed_from
        step = run.final_step if run.state.terminal else self._step_at(run, t)
        mine = run.script.checkpoint_at_or_below(step if step is not None else 0, before or 0)
        best = max((c for c in (mine, run.requested_checkpoint) if c is not None), default=None)
        return best if best is not None else before

    def _finish(self, run: SimRun, state: RunState, t: float, message: str) -> None:
        run.final_step = self._step_at(run, t)
        run.state, run.finished_at, run.message = state, t, message
        run.epoch += 1
        ckpt = self._checkpoint_of(run, t)
        if ckpt is not None:
            self._checkpoint[run.job] = max(ckpt, self._checkpoint.get(run.job, 0))
        run.log.append(f"[sim] t={t:.1f} attempt {run.attempt} {state.value}" + (f": {message}" if message else "")
                       + f" at step {run.final_step}")
        self._release(run.gang)

    def _script_for(self, job: str) -> RunScript:
        """The script a run of ``job`` follows: its own (:meth:`script_run`), else the scenario's
        rule for it, else the default."""
        if job in self._run_scripts:
            return self._run_scripts[job]
        rule = self.scenario.run_script(job) if self.scenario else None
        return rule or self._default_run

    def scripted_work(self, job: str) -> tuple[float, float]:
        """(runtime seconds, seconds a step) a run of ``job`` is scripted to take (the runtime's
        jitter aside)."""
        script = self._script_for(job)
        return script.runtime or self.default_runtime, script.step_time

    # ------------------------------------------------------------ Backend protocol

    def up(self) -> ClusterInfo:
        with self._lock:
            if self._up_at is None:
                self._up_at = self._now()
                self._last = self._up_at
                self._start_pools(self._up_at)
                if self.scenario is not None:
                    self._apply_timed(self.scenario, self._up_at)
            return self._info()

    def _info(self) -> ClusterInfo:
        return ClusterInfo(name=self.cluster_name, backend="sim", address=f"sim://{self.cluster_name}", dashboard_url=None)

    def down(self) -> None:
        with self._lock:
            self._up_at = None
            self._heap.clear()
            self.runs.clear()
            self.services.clear()
            for ph in self.pools.values():
                for h in ph.hosts:
                    h.gangs.clear()
                    h.used.clear()
                    ph.set_state(h, ABSENT)
            for p in self._pending.values():
                p.clear()
            self._requests.clear()
            self._gang_request.clear()

    def info(self) -> ClusterInfo | None:
        return self._info() if self._up_at is not None else None

    def capacity(self) -> dict[str, PoolCapacity]:
        self._answer()
        with self._lock:
            self._advance()
            return {p: PoolCapacity(pool=p, hosts=ph.spec.max_hosts, ready_hosts=ph.ready, free_hosts=ph.free,
                                    provisioning_hosts=ph.provisioning, cordoned_hosts=ph.out) for p, ph in self.pools.items()}

    def launch(self, req: LaunchRequest) -> str:
        self._answer()
        with self._lock:
            now = self._advance()
            run_id = req.run_id
            if run_id in self.runs:
                return run_id
            job = req.metadata.get("rayfleet.io/job", req.job_id)
            script = self._script_for(job)
            ph = self.pools.get(req.pool)
            spec = ph.spec if ph is not None else req.pool_spec
            plan = plan_request(req, spec=spec, host_cpus=spec.cpu_per_host / 1000)
            runtime = (script.runtime or self.default_runtime) + (self.rng.uniform(0, script.runtime_jitter) if script.runtime_jitter else 0.0)
            run = SimRun(run_id, job, req.attempt, Gang(run_id, plan), script, runtime, now,
                         resumed_from=self._checkpoint.get(job), max_run_duration=req.max_run_duration)
            self.runs[run_id] = run
            self.launches[job] += 1
            run.log.append(f"[sim] t={now:.1f} attempt {req.attempt} of job {job} submitted: {plan.describe()}")
            problems = [f"pool {req.pool!r} is not part of the sim (pools: {sorted(self.pools)})"] if ph is None else \
                feasibility_problems(req.pool, spec, req.workers, dict(req.resources_per_worker), req.placement_strategy)
            missing = [u for u in package_uris(req.runtime_env) if u.startswith("gcs://") and u not in self.packages]
            if problems:
                self._finish(run, RunState.FAILED, now, "gang cannot be placed: " + "; ".join(problems))
            elif missing:
                self._finish(run, RunState.FAILED, now, f"runtime_env package {missing[0]} was never uploaded")
            else:
                self._queue(req.pool, run.gang)
                self._place_dirty(now)
            return run_id

    def stop(self, run_id: str, *, reason: str = "stopped") -> None:
        self._answer()
        with self._lock:
            now = self._advance()
            run = self.runs.get(run_id)
            if run is None or run.state.terminal:
                return
            self._finish(run, RunState.STOPPED, now, reason)
            self._place_dirty(now)

    def run_status(self, run_id: str) -> RunStatus | None:
        self._answer()
        with self._lock:
            now = self._advance()
            run = self.runs.get(run_id)
            if run is None:
                return None
            key = (run.state, run.message, run.started_at, run.finished_at, self._checkpoint_of(run, now), run.node_ids,
                   run.resumed_from if run.started_at is not None else None,
                   () if run.state.terminal else self._notices(run), run.hosts)
            if run.status_seen is not None and run.status_seen[0] == key:
                return run.status_seen[1]   # as last reported (the controller asks for every launched run each pass)
            state, message, started, finished, ckpt, node_ids, resumed, notices, hosts = key
            status = RunStatus(run_id=run_id, state=state, message=message, started_at=started, finished_at=finished,
                               last_checkpoint_step=ckpt, node_ids=node_ids, resumed_from_step=resumed, notices=notices, hosts=hosts)
            run.status_seen = (key, status)
            return status

    def request_checkpoint(self, run_id: str) -> None:
        """The running attempt saves a checkpoint at its current step now: reported at once as
        ``last_checkpoint_step``, and the job's next attempt resumes from it."""
        self._answer()
        with self._lock:
            now = self._advance()
            run = self.runs.get(run_id)
            if run is None or run.state != RunState.RUNNING:
                return
            step = self._step_at(run, now)
            if step <= (run.resumed_from or 0) or step <= (run.requested_checkpoint or 0):
                return   # nothing done since the last checkpoint
            run.requested_checkpoint = step
            self._checkpoint[run.job] = max(step, self._checkpoint.get(run.job, 0))
            run.log.append(f"[sim] t={now:.1f} step {step}: checkpoint saved (requested)")

    def logs(self, run_id: str) -> str:
        self._answer()
        with self._lock:
            now = self._advance()
            run = self.runs.get(run_id)
            if run is None:
                return ""
            lines = list(run.log)
            if run.started_at is not None:
                upto = run.final_step if run.final_step is not None else self._step_at(run, now)
                done = run.resumed_from or 0
                saved = {c for c in run.script.checkpoints if done < c <= upto}
                if run.script.checkpoint_every:
                    first = (done // run.script.checkpoint_every + 1) * run.script.checkpoint_every
                    saved |= set(range(first, upto + 1, run.script.checkpoint_every))
                at = len(lines) - (1 if run.state.terminal else 0)
                lines[at:at] = [f"[sim] step {c}: checkpoint saved" for c in sorted(saved)]
            return "".join(line + "\n" for line in lines)

    def list_runs(self) -> list[str]:
        with self._lock:
            return sorted(self.runs)

    def upload_package(self, uri: str, data: bytes) -> None:
        with self._lock:
            self.packages[uri] = len(data)
