"""The simulated backend's faulty hosts, cordons and repairs, and its host list.

- A **fault** (``fault(host, ...)``, scenario ``faults``) breaks runs: a run with a bundle on the
  host while the fault holds is FAILED ``failAfter`` seconds (default 5) after it starts running,
  or after the fault begins if it was running already, with the fault's message ("XID 79 on
  <host>" by default). A fault holds from ``from`` to ``until``; without ``until``, to the host's
  next repair. A repair does not end a fault whose window is still open.
- An **unhealthy** report (``set_unhealthy``, scenario ``unhealthy``) makes ``hosts()`` list the
  host with ``healthy=False`` (GKE node conditions) until it is repaired; runs are not touched.
- ``cordon(host, reason)``: the host takes no new bundles (CORDONED; its runs see an UNHEALTHY
  notice); once its last bundle has left it is REPAIRING, and ``repairTime`` later (the cluster's
  ``spec.hostHealth.repairTime``) READY again as a new node (a new node id), healthy.
  ``uncordon`` returns it at once.

Mixed into :class:`~rayfleet.backends.sim.backend.SimBackend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import HostInfo, HostPhase, Notice, NoticeKind, RunState
from .hosts import ABSENT, CORDONED, DRAINING, PROVISIONING, READY, REPAIRING, Host
from .records import Fault, SimRun

if TYPE_CHECKING:
    from .backend import SimBackend


class HealthSim:
    """Faults, unhealthy reports, cordons and repairs."""

    # ------------------------------------------------------------ scripting

    def fault(self: SimBackend, host: str, *, start: float | None = None, until: float | None = None,
              message: str | None = None, fail_after: float = 5.0) -> None:
        """From ``start`` (default: now) to ``until`` (default: the host's next repair) runs on
        ``host`` FAIL ``fail_after`` seconds into the fault or into their run."""
        self._host(host)
        t = self._now() if start is None else start
        f = Fault(t, until, message or f"XID 79 on {host} (GPU has fallen off the bus)", fail_after)
        self._faults.setdefault(host, []).append(f)
        self._push(t, "fault", host, len(self._faults[host]) - 1)

    def set_unhealthy(self: SimBackend, host: str, *, at: float | None = None, message: str | None = None) -> None:
        """From ``at`` (default: now) the backend reports ``host`` unhealthy, until it is repaired."""
        self._host(host)
        self._push(self._now() if at is None else at, "unhealthy", host, message or f"node {host} reports a hardware problem")

    def _fault_of(self: SimBackend, host: str, t: float) -> Fault | None:
        return next((f for f in self._faults.get(host, ()) if f.active(t)), None)

    def _on_fault(self: SimBackend, t: float, host: str, index: int) -> None:
        f = self._faults[host][index]
        h = self._host(host)
        for key in sorted(h.gangs):
            run = self.runs.get(key)
            if run is not None and run.state == RunState.RUNNING:
                self._push(t + f.fail_after, "run_end", key, run.epoch, RunState.FAILED.value, f.message)

    def _fault_end(self: SimBackend, run: SimRun, t: float) -> tuple[float, RunState, str] | None:
        """A run starting at ``t`` with a bundle on a faulty host: when it fails, and why."""
        for name in run.hosts:
            f = self._fault_of(name, t)
            if f is not None:
                return f.fail_after, RunState.FAILED, f.message
        return None

    def _on_unhealthy(self: SimBackend, t: float, host: str, message: str) -> None:
        h = self._host(host)
        if h.state not in (ABSENT, PROVISIONING):
            h.unhealthy = message

    # ------------------------------------------------------------ CapacityBackend protocol

    def cordon(self: SimBackend, host: str, reason: str) -> None:
        with self._lock:
            now = self._advance()
            h = self._host(host)
            if h.state not in (READY, DRAINING):
                return   # absent, provisioning, or cordoned already
            self.pools[h.pool].set_state(h, CORDONED, now)
            h.cordon_reason = reason or "cordoned"
            h.repair_token += 1
            for key in sorted(h.gangs):
                run = self.runs.get(key)
                if run is not None:
                    run.log.append(f"[sim] t={now:.1f} host {host} cordoned: {h.cordon_reason}")
            if h.empty:
                self._start_repair(h, now)
            self._place_dirty(now)

    def uncordon(self: SimBackend, host: str) -> None:
        with self._lock:
            now = self._advance()
            h = self._host(host)
            if h.state == CORDONED:
                h.repair_token += 1
                self._back_in_service(h, now)
            elif h.state == REPAIRING:
                h.repair_token += 1
                self._repaired(h, now)
            self._place_dirty(now)

    def _start_repair(self: SimBackend, h: Host, t: float) -> None:
        self.pools[h.pool].set_state(h, REPAIRING, t)
        self._push(t + self.repair_time, "repaired", h.name, h.repair_token)

    def _on_repaired(self: SimBackend, t: float, host: str, token: int) -> None:
        h = self._host(host)
        if h.state == REPAIRING and h.repair_token == token:
            self._repaired(h, t)

    def _repaired(self: SimBackend, h: Host, t: float) -> None:
        """Back as a new node: a new node id, healthy, an open-ended fault cleared."""
        h.generation += 1
        h.unhealthy = None
        for f in self._faults.get(h.name, ()):
            if f.until is None and f.start <= t and f.cleared_at is None:
                f.cleared_at = t
        self._back_in_service(h, t)

    def _back_in_service(self: SimBackend, h: Host, t: float) -> None:
        h.cordon_reason = ""
        self.pools[h.pool].set_state(h, DRAINING if h.notice is not None else READY, t)
        self._dirty.add(h.pool)

    # ------------------------------------------------------------ views

    def _notices(self: SimBackend, run: SimRun) -> tuple[Notice, ...]:
        """The notices on the run's hosts; worked out again only when its gang's hosts or what any
        host shows changed (the controller asks for every launched run each pass)."""
        seen = run.notices_seen
        if seen is not None and seen[0] == Host.shown_changes and seen[1] is run.gang.hosts:
            return seen[2]
        out: list[Notice] = []
        for name in dict.fromkeys(h.name for h in run.gang.hosts):
            h = self._host(name)
            if h.notice is not None:
                out.append(h.notice)
            if h.state == CORDONED:
                out.append(Notice(NoticeKind.UNHEALTHY, name, None, h.cordon_reason))
        run.notices_seen = (Host.shown_changes, run.gang.hosts, tuple(out))
        return run.notices_seen[2]

    def hosts(self: SimBackend) -> list[HostInfo]:
        """Every host that is not absent. The controller asks once a pass and few hosts change
        between passes: the list is kept while no host changed what it shows
        (``Host.shown_changes``), and each host's HostInfo while that host did not (``Host.info``)."""
        self._answer()
        with self._lock:
            self._advance()
            if self._hosts_view is not None and self._hosts_view[0] == Host.shown_changes:
                return list(self._hosts_view[1])
            out = []
            for pool, ph in self.pools.items():
                for h in ph.hosts:
                    if h.state == ABSENT:
                        continue
                    info = h.info
                    if info is None:   # built again only for a host that changed what it shows
                        message = h.unhealthy or h.cordon_reason or (h.notice.message if h.notice else "")
                        info = h.info = HostInfo(name=h.name, pool=pool, phase=HostPhase(h.state),
                                                 node_id=None if h.state == PROVISIONING else h.node_id, since=h.since,
                                                 expires_at=h.expires_at, healthy=h.unhealthy is None, message=message)
                    out.append(info)
            self._hosts_view = (Host.shown_changes, out)
            return list(out)
