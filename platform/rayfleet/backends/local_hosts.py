"""The local backend's hosts over time: Ray nodes started and stopped as GKE would add and remove
the nodes they stand for (the pool autoscaler, scripted provisioning, spot reclaims, cordons).

:class:`LocalHosts` is mixed into :class:`rayfleet.backends.local.LocalBackend`. Every host the
cluster has (or has asked for) is a record in ``cluster.json``'s ``hosts`` with a phase
(:class:`~rayfleet.backends.base.HostPhase`):

- ``provisioning``: asked for; its Ray node starts once its scripted delay and any stockout are
  over (:func:`~rayfleet.backends.local_capacity.ready_at`), in a helper process not waited on, so
  no caller blocks for the ~5 s a node takes. ``ready`` once the GCS lists the node.
- ``draining``: a reclaim notice is out (``reclaim_host``, or a scenario ``reclaim``). The node is
  drained in Ray (``ray drain-node``, reason preemption, with the deadline): Ray places nothing new
  on it, what runs there goes on; runs with a bundle there carry a RECLAIM notice in
  ``RunStatus.notices``. At the deadline the node is killed and the host is gone; sooner if
  nothing runs there any more, since Ray stops a drained node once it is idle.
  A DWS flex-start host is recycled the same way (``recycle_host``, or on schedule at
  :func:`~rayfleet.capacity.provisioning.recycle_at`): a replacement host of its pool is asked for
  at once and the old one drains with a RECYCLE notice until its run time ends. Ray Serve moves the
  replicas of a draining node itself: a replacement replica starts (on the new host, once it is up)
  and only when it is RUNNING is the old one stopped, gracefully, so no request fails.
- ``cordoned``: ``cordon(host)``: drained in Ray the same way, without a deadline, so nothing new
  lands on it while its work is moved; ``repairing`` after ``spec.hostHealth.repairTime`` (or at
  ``uncordon``): its Ray node is killed and started again, clean, then ``ready``.

Cordon drains rather than restarting the raylet without the pool's resources: a restart would kill
the running work at once (a LOST run, not a move), and Ray's own drain is what the autoscaler uses
to keep work off a node that is about to go.

:meth:`LocalHosts.reconcile_capacity` does one pass (scripted events, starts, deadlines, repairs,
autoscaling); ``capacity()``, ``hosts()`` and ``run_status()`` run it at most once a second, so the
controller's polling drives it, and the product's backend also runs it every second in a thread
(:meth:`LocalHosts.start_capacity_loop`) for demand nobody polls (a waiting Serve replica group).
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from ..api.labels import LABEL_HOST, LABEL_POOL, LABEL_TPU_SLICE
from ..capacity.provisioning import fails_fast_on_stockout
from ..capacity.scaling import IdleHost, PoolState, decide
from . import local_procs
from .base import HostInfo, HostPhase, Notice, NoticeKind, PoolCapacity
from .local_capacity import (
    PendingGang,
    due_events,
    hosts_to_start,
    in_stockout,
    pending_gang,
    provisioning_delay,
    ready_at,
    stockout_windows,
)
from .local_host_ends import HostEnds
from .local_start import RESULT_PREFIX
from .rundir import write_json

log = logging.getLogger(__name__)

#: How often the polling calls (capacity, hosts, run_status) run a capacity pass.
TICK_INTERVAL_S = 1.0

_ALIVE = (HostPhase.READY, HostPhase.DRAINING, HostPhase.CORDONED)


class LocalHosts(HostEnds):
    """Host lifecycle of the local backend (mixin; needs LocalBackend's state, lock and Ray calls)."""

    _starters: dict[str, subprocess.Popen]
    _last_tick: float

    # ------------------------------------------------------------------ reading

    def _records(self) -> dict[str, dict[str, Any]]:
        return (self._state or {}).get("hosts", {})  # type: ignore[attr-defined]

    def _phase(self, rec: dict[str, Any]) -> HostPhase:
        return HostPhase(rec.get("phase", HostPhase.READY))

    def hosts(self) -> list[HostInfo]:
        """Every host that exists or is being provisioned, with its phase (CapacityBackend)."""
        self._maybe_tick()
        if self._current() is None:  # type: ignore[attr-defined]
            return []
        out = []
        for name, rec in self._records().items():
            phase = self._phase(rec)
            if phase in _ALIVE and not self._host_alive(name):  # type: ignore[attr-defined]
                continue  # killed (kill_host): absent until repaired
            notice = rec.get("notice") or {}
            out.append(HostInfo(name=name, pool=rec["pool"], phase=phase, node_id=rec.get("node_id"), since=rec.get("since"),
                                expires_at=notice.get("deadline"), message=rec.get("message", "")))
        return out

    def host_of_node(self) -> dict[str, str]:
        return {rec["node_id"]: name for name, rec in self._records().items() if rec.get("node_id")}

    def notices_for(self, node_ids: tuple[str, ...]) -> tuple[tuple[Notice, ...], tuple[str, ...]]:
        """(notices on the gang's hosts, the gang's host names) for a run's bundle node ids."""
        by_node = self.host_of_node()
        if any(n not in by_node for n in node_ids):  # a node the records no longer hold: ask the GCS
            by_node.update({n.node_id: (n.labels or {}).get(LABEL_HOST) for n in self._nodes() if (n.labels or {}).get(LABEL_HOST)})  # type: ignore[attr-defined]
        hosts = tuple(dict.fromkeys(by_node[n] for n in node_ids if n in by_node))
        notices = []
        for h in hosts:
            n = self._records().get(h, {}).get("notice")
            if n:
                notices.append(Notice(kind=NoticeKind(n["kind"]), host=h, deadline=n.get("deadline"), message=n.get("message", "")))
        return tuple(notices), hosts

    def _busy_node_ids(self) -> set[str]:
        """Nodes with a gang bundle (placement group) or a live actor on them."""
        busy = set()
        for pg in self._list("placement_groups"):  # type: ignore[attr-defined]
            if pg.state == "REMOVED":
                continue
            for b in pg.bundles or []:
                if b.get("node_id"):
                    busy.add(b["node_id"])
        for a in self._list("actors", [("state", "=", "ALIVE")]):  # type: ignore[attr-defined]
            if getattr(a, "node_id", None):
                busy.add(a.node_id)
        return busy

    def capacity(self) -> dict[str, PoolCapacity]:
        self._maybe_tick()
        configured: dict[str, int] = {p: 0 for p in self.pools}  # type: ignore[attr-defined]
        for h in self.host_plans.values():  # type: ignore[attr-defined]
            configured[h.pool] += 1
        if self._current() is None:  # type: ignore[attr-defined]
            return {p: PoolCapacity(pool=p, hosts=n, ready_hosts=0, free_hosts=0) for p, n in configured.items()}
        alive = {(n.labels or {}).get(LABEL_HOST): n.node_id for n in self._nodes() if n.state == "ALIVE"}  # type: ignore[attr-defined]
        busy = self._busy_node_ids()
        counts = {p: {"ready": 0, "free": 0, "prov": 0, "cordoned": 0} for p in configured}
        for name, rec in self._records().items():
            c = counts.get(rec["pool"])
            if c is None:
                continue
            phase = self._phase(rec)
            if phase in (HostPhase.PROVISIONING, HostPhase.REPAIRING):
                c["prov"] += 1
                continue
            if name not in alive or not self._host_alive(name):  # type: ignore[attr-defined]
                continue
            c["ready"] += 1
            if phase is HostPhase.READY and alive[name] not in busy:
                c["free"] += 1
            if phase in (HostPhase.CORDONED, HostPhase.DRAINING):
                c["cordoned"] += 1
        return {p: PoolCapacity(pool=p, hosts=n, ready_hosts=counts[p]["ready"], free_hosts=counts[p]["free"],
                                provisioning_hosts=counts[p]["prov"], cordoned_hosts=counts[p]["cordoned"])
                for p, n in configured.items()}

    # ------------------------------------------------------------------ the pass

    def start_capacity_loop(self, interval_s: float = TICK_INTERVAL_S) -> threading.Thread:
        """Run :meth:`reconcile_capacity` every ``interval_s`` in a daemon thread, so hosts come and
        go even when nobody polls (a Serve replica group waiting for a host while no job runs).
        The product's backend (``make_backend``) starts it; a pass on a cluster that is down does
        nothing."""
        def loop() -> None:
            while True:
                time.sleep(interval_s)
                if self._load_state() is None:  # type: ignore[attr-defined]
                    continue  # no cluster (yet, or any more): nothing to do, nothing written
                try:
                    self.reconcile_capacity()
                except Exception:  # a pass that failed (the cluster going down under it): the next one retries
                    log.warning("local cluster: capacity pass failed", exc_info=True)

        t = threading.Thread(target=loop, name="rayfleet-local-capacity", daemon=True)
        t.start()
        return t

    def _maybe_tick(self) -> None:
        if time.monotonic() - getattr(self, "_last_tick", 0.0) >= TICK_INTERVAL_S:
            self.reconcile_capacity()

    def reconcile_capacity(self, now: float | None = None) -> None:
        """One capacity pass: scripted events, node starts finished, reclaim deadlines, repairs
        due, then the autoscaler (hosts for pending gangs, idle hosts given back)."""
        self._last_tick = time.monotonic()
        now = time.time() if now is None else now
        with self._lock():  # type: ignore[attr-defined]
            st = self._current()  # type: ignore[attr-defined]
            if st is None:
                return
            self._apply_events(st, now)
            self._poll_starts(now)
            for name, rec in list(st["hosts"].items()):
                phase = self._phase(rec)
                notice = rec.get("notice") or {}
                due = notice.get("deadline") is not None and notice["deadline"] <= now
                # (Ray stops a node drained with a deadline once nothing runs on it: it goes then)
                if phase is HostPhase.DRAINING and (due or (rec.get("raylet_pid") and not self._host_alive(name))):  # type: ignore[attr-defined]
                    log.info("local cluster: host %s %s %s", name, "recycled" if notice.get("kind") == NoticeKind.RECYCLE.value else "reclaimed",
                             "at its deadline" if due else "before its deadline: drained and idle, Ray stopped its node")
                    self._remove_host(name)
                elif phase is HostPhase.READY and rec.get("started_at") is not None:
                    self._lifetime(name, rec, now)
                elif phase is HostPhase.CORDONED and rec.get("repair_at") is not None and rec["repair_at"] <= now:
                    self._repair(name, now)
            self._autoscale(now)
            self._save_state()  # type: ignore[attr-defined]

    def _apply_events(self, st: dict[str, Any], now: float) -> None:
        cap = st.setdefault("capacity", {"applied": []})
        for i, ev in due_events(self.scenario, st["started_at"], now, cap["applied"]):  # type: ignore[attr-defined]
            cap["applied"].append(i)
            if ev.host not in st["hosts"]:
                log.info("local cluster: scenario event %d: host %s does not exist now", i, ev.host)
                continue
            if ev.lose:
                log.info("local cluster: scenario: host %s lost", ev.host)
                self._remove_host(ev.host)
            else:
                self._reclaim(ev.host, ev.notice, now)

    # ------------------------------------------------------------------ starting hosts

    def _add_provisioning(self, name: str, now: float, phase: HostPhase = HostPhase.PROVISIONING) -> None:
        st = self._state  # type: ignore[attr-defined]
        pool = self.host_plans[name].pool  # type: ignore[attr-defined]
        windows = stockout_windows(self.scenario, pool, st["started_at"])  # type: ignore[attr-defined]
        at = ready_at(now, provisioning_delay(self.scenario, pool), windows) if phase is HostPhase.PROVISIONING else now  # type: ignore[attr-defined]
        msg = "waiting for a stockout to end" if in_stockout(windows, now) and phase is HostPhase.PROVISIONING else ""
        st["hosts"][name] = {"pool": pool, "phase": phase.value, "since": now, "requested_at": now, "ready_at": at,
                             "raylet_pid": None, "node_id": None, "message": msg}

    def _spawn_start(self, name: str, now: float) -> None:
        """Start one host's Ray node in a helper process that nobody waits for."""
        rec = self._records()[name]
        ports, args = self._host_node_args(name, self._new_ports())  # type: ignore[attr-defined]
        ray_logs = self.ray_home / "logs"  # type: ignore[attr-defined]
        self._prepare_ray_home()  # type: ignore[attr-defined]
        spec = {"nodes": [{"name": name, "args": [*args, f"--temp-dir={self.host_temp_dir(name)}", "--disable-usage-stats"]}],  # type: ignore[attr-defined]
                "raylet_wrapper_dir": str(ray_logs)}
        spec_path = ray_logs / f"start-{name}.json"
        write_json(spec_path, spec)
        self._give(spec_path)  # type: ignore[attr-defined]
        log_path = self._start_log(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as out:
            proc = self._popen_start(spec_path, out)  # type: ignore[attr-defined]
        self._starters_map()[name] = proc
        rec.update(ports=ports, starter_pid=proc.pid, start_began=now, message="starting its Ray node")

    def _start_log(self, name: str) -> Path:
        return self.data_dir / "logs" / f"start-{name}.log"  # type: ignore[attr-defined]

    def _starters_map(self) -> dict[str, subprocess.Popen]:
        if not hasattr(self, "_starters"):
            self._starters = {}
        return self._starters

    def _poll_starts(self, now: float) -> None:
        st = self._state  # type: ignore[attr-defined]
        for name, rec in list(st["hosts"].items()):
            if self._phase(rec) in (HostPhase.PROVISIONING, HostPhase.REPAIRING) and not rec.get("starter_pid") and rec.get("ready_at", 0) <= now:
                self._spawn_start(name, now)
        for name, proc in list(self._starters_map().items()):
            if proc.poll() is not None and not self._records().get(name, {}).get("starter_pid"):
                self._starters_map().pop(name)
        starting = {n: r for n, r in st["hosts"].items() if r.get("starter_pid")}
        if not starting:
            return
        alive = {(n.labels or {}).get(LABEL_HOST): n.node_id for n in self._nodes() if n.state == "ALIVE"}  # type: ignore[attr-defined]
        for name, rec in starting.items():
            proc = self._starters_map().get(name)
            finished = proc.poll() is not None if proc is not None else not local_procs.pid_alive(rec["starter_pid"])
            if name in alive:  # registered: up (its helper may still be exiting; reaped below)
                rec["raylet_pid"] = self._find_raylet(rec["ports"]["node_manager"])  # type: ignore[attr-defined]
                st["raylet_pids"].append(rec["raylet_pid"])
                rec.update(node_id=alive[name], phase=HostPhase.READY.value, since=now, message="", started_at=now)
                for k in ("starter_pid", "start_began", "repair_at", "cordon_reason", "notice", "idle_since"):
                    rec.pop(k, None)
                log.info("local cluster: host %s is up (%.1fs after it was asked for)", name, now - rec.get("requested_at", now))
                continue
            failed = finished and not self._start_ok(name)
            if failed or now - rec.get("start_began", now) > self.start_timeout_s:  # type: ignore[attr-defined]
                tail = self._start_log(name).read_text(errors="replace")[-2000:] if self._start_log(name).exists() else ""
                log.warning("local cluster: starting host %s failed; it is dropped (asked for again if still needed)\n%s", name, tail)
                if proc is not None and proc.poll() is None:
                    proc.kill()
                self._remove_host(name)


    def _start_ok(self, name: str) -> bool:
        try:
            text = self._start_log(name).read_text(errors="replace")
        except OSError:
            return False
        for line in text.splitlines():
            if line.startswith(RESULT_PREFIX):
                return bool(json.loads(line[len(RESULT_PREFIX):]).get("ok"))
        return False

    # ------------------------------------------------------------------ the autoscaler

    def _autoscale(self, now: float) -> None:
        st = self._state  # type: ignore[attr-defined]
        recs = st["hosts"]
        jobs = {j.submission_id: j for j in self.jobs.list()}  # type: ignore[attr-defined]
        # A host is busy while a placement group or an actor is on it, or a run whose gang was on
        # it has not ended (its driver may outlive its placement group by seconds).
        busy = self._busy_node_ids() | self._live_run_nodes(jobs)
        gangs = self._pending_gangs(jobs)
        for pool, spec in self.pools.items():  # type: ignore[attr-defined]
            plans = [h for h in self.host_plans.values() if h.pool == pool]  # type: ignore[attr-defined]
            mine = {n: r for n, r in recs.items() if r["pool"] == pool}
            prov = [n for n, r in mine.items() if self._phase(r) in (HostPhase.PROVISIONING, HostPhase.REPAIRING)]
            alive = [n for n, r in mine.items() if n not in prov]
            idle: list[IdleHost] = []
            free = 0
            for n in alive:
                r = mine[n]
                if self._phase(r) is HostPhase.READY and r.get("node_id") and r["node_id"] not in busy and self._host_alive(n):  # type: ignore[attr-defined]
                    free += 1
                    r.setdefault("idle_since", now)
                    idle.append(IdleHost(n, r["idle_since"], self.host_plans[n].tpu_slice))  # type: ignore[attr-defined]
                else:
                    r.pop("idle_since", None)
            pool_gangs = [g for g in gangs if g.pool == pool]
            if spec.is_tpu and spec.slice_hosts > 1:
                # A slice gang needs its own slice: what of it is absent or still coming.
                needs = [sum(1 for h in plans if h.tpu_slice == g.tpu_slice and (h.name not in mine or h.name in prov)) for g in pool_gangs]
                state = PoolState(alive=len(alive), free=0, provisioning=len(prov))
            else:
                needs = [g.hosts for g in pool_gangs]
                state = PoolState(alive=len(alive), free=free, provisioning=len(prov))
            decision = decide(spec, state, needs, idle, now)
            if decision.request and fails_fast_on_stockout(spec) and in_stockout(stockout_windows(self.scenario, pool, st["started_at"]), now):  # type: ignore[attr-defined]
                for g in pool_gangs:
                    self._stockout(g.run_id, f"pool {pool!r}: no capacity now (non-queued DWS flex-start stockout)")
                continue
            for count in decision.request:
                for name in hosts_to_start(plans, set(mine) | set(recs), count, pool_gangs):
                    log.info("local cluster: pool %s grows: host %s asked for", pool, name)
                    self._add_provisioning(name, now)
                    mine[name] = recs[name]
            for name in decision.release:
                log.info("local cluster: pool %s shrinks: idle host %s given back", pool, name)
                self._remove_host(name)

    def _live_run_nodes(self, jobs: dict[str, Any]) -> set[str]:
        out: set[str] = set()
        runs_dir = self.runs_dir  # type: ignore[attr-defined]
        for p in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
            info = jobs.get(p.name)
            if info is None or info.terminal:
                continue
            rd = self.run_dir(p.name)  # type: ignore[attr-defined]
            out.update(rd.status().get("node_ids") or [w["node_id"] for w in rd.workers() if w.get("node_id")])
        return out

    def _pending_gangs(self, jobs: dict[str, Any]) -> list[PendingGang]:
        """Gangs whose placement group waits: launched runs whose Ray job has no placed group yet
        (counted from their request, even before the driver made the group), and any other
        pending placement group pinned to a pool (a Serve replica group): one host per bundle."""
        out: list[PendingGang] = []
        runs_dir = self.runs_dir  # type: ignore[attr-defined]
        pgs = self._list("placement_groups")  # type: ignore[attr-defined]
        created = {pg.creator_job_id for pg in pgs if pg.state == "CREATED"}
        of_runs: set[str] = set()
        for p in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
            info = jobs.get(p.name)
            if info is None or info.terminal:
                continue
            if info.job_id:
                of_runs.add(info.job_id)
            rd = self.run_dir(p.name)  # type: ignore[attr-defined]
            if not rd.submitted() or rd.marked("final") or rd.marked("stop") or rd.marked("lost") or rd.marked("stockout"):
                continue
            req = rd.request()
            if not req or req.get("pool") not in self.pools:  # type: ignore[attr-defined]
                continue
            g = pending_gang(req, rd.status(), len(rd.workers()), self.pools[req["pool"]])  # type: ignore[attr-defined]
            if g is not None and not (info.job_id and info.job_id in created):
                out.append(g)
        for pg in pgs:
            if pg.state != "PENDING" or pg.creator_job_id in of_runs:
                continue
            selectors = [b.get("label_selector") or {} for b in pg.bundles or []]
            pool = next((sel.get(LABEL_POOL) for sel in selectors if isinstance(sel, dict) and sel.get(LABEL_POOL) in self.pools), None)  # type: ignore[attr-defined]
            if pool is not None:
                tpu_slice = next((sel.get(LABEL_TPU_SLICE) for sel in selectors if isinstance(sel, dict) and sel.get(LABEL_TPU_SLICE)), None)
                out.append(PendingGang(run_id=pg.placement_group_id, pool=pool, hosts=len(selectors), tpu_slice=tpu_slice))
        return out

    def _stockout(self, run_id: str, message: str) -> None:
        rd = self.run_dir(run_id)  # type: ignore[attr-defined]
        if rd.exists() and rd.marked("stockout") is None:
            rd.mark("stockout", message=message)
            self.jobs.stop(run_id)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ checkpoint now

    def request_checkpoint(self, run_id: str) -> None:
        """Ask the run's training to checkpoint now (CapacityBackend): a numbered request in its run
        directory, which its processes read through :mod:`rayfleet.train.notice`."""
        rd = self.run_dir(run_id)  # type: ignore[attr-defined]
        if not rd.exists() or rd.marked("final"):
            return
        rd.request_checkpoint("requested by the platform")
        self._give(rd.checkpoint_request_path)  # type: ignore[attr-defined]
