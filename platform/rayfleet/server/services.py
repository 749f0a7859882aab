"""Serve services under quota.

A service's replicas are leader-worker groups. Its first ``max(minReplicas, 1)`` groups are one
quota workload (admitted whole, on one flavor); every group above that is its own workload,
restricted to the same flavor (one deployment runs on one pool). What Serve's autoscaler wants
beyond the granted count becomes pending workloads; what quota grants becomes the deployment's
replica cap; a reclaimed (preempted) extra group lowers the cap, and Serve drains that replica
gracefully. Workload ids: ``svc.<name>.base`` and ``svc.<name>.<i>`` for group i.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..api import Service, ServiceState
from ..errors import Conflict
from ..quota.types import Admit, PodSet, Wait, Workload
from ..serve.deployer import base_replicas
from . import admission
from .auth import Principal
from .serving import serving_for
from .store import Record

if TYPE_CHECKING:
    from .fleet import Fleet
    from .quota_bridge import QuotaBridge

log = logging.getLogger("rayfleet.services")
ACTIVE = [s.value for s in (ServiceState.PENDING, ServiceState.DEPLOYING, ServiceState.RUNNING, ServiceState.DEGRADED)]


def base_id(name: str) -> str:
    return f"svc.{name}.base"


def group_id(name: str, index: int) -> str:
    return f"svc.{name}.{index}"


def parse_id(workload_id: str) -> tuple[str, int | None] | None:
    """(service name, group index or None for the base) of a service workload id."""
    if not workload_id.startswith("svc."):
        return None
    name, _, tail = workload_id[4:].rpartition(".")
    if not name:
        return None
    return (name, None) if tail == "base" else (name, int(tail)) if tail.isdigit() else None


class ServiceManager:
    def __init__(self, fleet: Fleet):
        self.fleet = fleet
        self.store = fleet.store
        self._wanted: dict[str, int] = {}
        self._requested_at: dict[str, float] = {}
        cluster = fleet.config.cluster
        self.serving = serving_for(fleet.backend, cluster.spec.local.serve_port if cluster else 8000)

    # ------------------------------------------------------------ API side

    def deploy(self, svc: Service, principal: Principal) -> tuple[Record, bool]:
        admission.check_service(self.fleet.config, svc)
        team = self.fleet.team_of_queue(svc.spec.queue)
        principal.require(team, f"queue {svc.spec.queue!r}")
        existing = self.store.find("Service", svc.name)
        if existing is not None and existing.doc.status.state != ServiceState.DELETED:  # type: ignore[attr-defined]
            principal.require(existing.team, f"service {svc.name!r}")
            if existing.doc.spec == svc.spec:  # type: ignore[attr-defined]
                return existing, False
            raise Conflict(f"service {svc.name!r} already exists with a different spec; delete it first", field="metadata.name")
        if existing is not None:
            self.store.delete("Service", svc.name, event=None)
        svc = svc.model_copy(deep=True)
        svc.status = type(svc.status)(state=ServiceState.PENDING, message=f"waiting for quota in {svc.spec.queue}")
        rec = self.store.create(svc, team=team, event="Submitted", message=svc.status.message)
        self.fleet.controller.wake()
        return rec, True

    def delete(self, name: str) -> None:
        rec = self.store.get("Service", name)
        svc: Service = rec.doc  # type: ignore[assignment]
        svc.status.state = ServiceState.DELETING
        self.store.update(svc, event="Deleting", message="delete requested")
        self.fleet.controller.wake()

    # ------------------------------------------------------------ controller side

    def _records(self) -> list[Record]:
        return self.store.list("Service", states=ACTIVE + [ServiceState.DELETING.value])

    def _active(self) -> list[Service]:
        return [r.doc for r in self._records()]  # type: ignore[misc]

    @staticmethod
    def _workload(quota: QuotaBridge, svc: Service, wid: str, groups: int, flavors: tuple[str, ...], created: float) -> Workload:
        rg = svc.spec.replica_group
        return Workload(
            id=wid,
            queue=svc.spec.queue,
            podsets=(PodSet(groups * rg.hosts_per_replica, dict(rg.resources_per_host), "hosts"),),
            priority=quota.priority(svc.spec.priority_class),
            created=created,
            flavors=flavors,
        )

    def restore(self, quota: QuotaBridge) -> None:
        """After a restart: re-admit the groups each running service holds."""
        for svc in self._active():
            if svc.status.flavor is None or svc.status.state == ServiceState.DELETING:
                continue
            flavors = (svc.status.flavor,)
            quota.restore_workload(self._workload(quota, svc, base_id(svc.name), base_replicas(svc), flavors, 0.0), svc.status.flavor)
            for i in range(base_replicas(svc), svc.status.replicas_granted):
                quota.restore_workload(self._workload(quota, svc, group_id(svc.name, i), 1, flavors, 0.0), svc.status.flavor)

    def pending(self, quota: QuotaBridge) -> list[Workload]:
        out = []
        for rec in self._records():
            svc: Service = rec.doc  # type: ignore[assignment]
            if svc.status.state == ServiceState.DELETING:
                continue
            created = rec.created_at
            if not quota.is_admitted(base_id(svc.name)):
                flavors = admission.check_service(self.fleet.config, svc).flavors
                out.append(self._workload(quota, svc, base_id(svc.name), base_replicas(svc), flavors, created))
                continue
            wanted = min(max(self._wanted.get(svc.name, 0), base_replicas(svc)), svc.spec.autoscaling.max_replicas)
            for i in range(base_replicas(svc), wanted):
                wid = group_id(svc.name, i)
                if not quota.is_admitted(wid):
                    out.append(self._workload(quota, svc, wid, 1, (svc.status.flavor or "",), self._requested_at.setdefault(wid, time.time())))
        return out

    def admitted(self, a: Admit) -> None:
        parsed = parse_id(a.workload_id)
        if parsed is None:
            return
        name, index = parsed
        rec = self.store.find("Service", name)
        if rec is None:
            return
        svc: Service = rec.doc  # type: ignore[assignment]
        if index is None:
            svc.status.flavor = a.flavor
            svc.status.state = ServiceState.DEPLOYING
            svc.status.message = f"admitted on {a.flavor}"
        else:
            self._requested_at.pop(a.workload_id, None)
            svc.status.message = f"replica group {index} granted on {a.flavor}" + (" (borrowed)" if any(a.borrowed.values()) else "")
        self.store.update(svc, event="Admitted", message=svc.status.message, data={"workload": a.workload_id, "flavor": a.flavor})

    def waiting(self, w: Wait) -> None:
        """The base workload waits: the Service stays PENDING with quota's reason. (A waiting extra
        group is reported by reconcile, next to Serve's reason for the counts.)"""
        parsed = parse_id(w.workload_id)
        if parsed is None or parsed[1] is not None:
            return
        rec = self.store.find("Service", parsed[0])
        if rec is None:
            return
        svc: Service = rec.doc  # type: ignore[assignment]
        message = f"replicas waiting for quota: {w.reason}"
        if svc.status.message != message:
            svc.status.message = message
            self.store.update(svc)

    def preempted(self, workload_id: str, message: str) -> None:
        """A group was reclaimed: the quota is released now; reconcile lowers the replica cap and
        Serve drains the replica (requests in flight finish)."""
        parsed = parse_id(workload_id)
        if parsed is None:
            return
        self.fleet.controller.quota.release(workload_id)
        name, index = parsed
        rec = self.store.find("Service", name)
        if rec is None:
            return
        svc: Service = rec.doc  # type: ignore[assignment]
        if index is None:  # the whole service loses its quota: release every group, undeploy
            for i in range(base_replicas(svc), svc.spec.autoscaling.max_replicas):
                self.fleet.controller.quota.release(group_id(name, i))
            self.serving.delete(name)
            svc.status.state, svc.status.replicas_granted, svc.status.replicas_running = ServiceState.PENDING, 0, 0
            svc.status.flavor = None
        svc.status.message = f"{'service' if index is None else f'replica group {index}'} preempted: {message}"
        self.store.update(svc, event="Preempted", message=svc.status.message, data={"workload": workload_id})

    def reconcile(self, quota: QuotaBridge, now: float) -> None:
        for svc in self._active():
            try:
                self._reconcile_one(svc, quota)
            except Exception as e:  # one bad service must not stop the others
                log.exception("reconcile of service %s failed", svc.name)
                if svc.status.message != f"reconcile failed: {e}":
                    svc.status.message = f"reconcile failed: {e}"
                    self.store.update(svc)

    def granted(self, svc: Service, quota: QuotaBridge) -> int:
        if not quota.is_admitted(base_id(svc.name)):
            return 0
        n = base_replicas(svc)
        n += sum(1 for i in range(base_replicas(svc), svc.spec.autoscaling.max_replicas) if quota.is_admitted(group_id(svc.name, i)))
        return n

    def _why(self, svc: Service, granted: int, wanted: int, serve_message: str) -> str:
        """Serve's reason for the counts, plus quota's reason for the first group it has not granted."""
        if granted >= wanted:
            return serve_message
        waiting = self.fleet.controller.waiting
        for i in range(base_replicas(svc), min(wanted, svc.spec.autoscaling.max_replicas)):
            w = waiting.get(group_id(svc.name, i))
            if w is not None:
                return f"{serve_message}; replica group {i} waiting for quota: {w.reason}"
        return serve_message

    def _reconcile_one(self, svc: Service, quota: QuotaBridge) -> None:
        serving = self.serving
        if svc.status.state == ServiceState.DELETING:
            serving.delete(svc.name)
            quota.release(base_id(svc.name))
            for i in range(base_replicas(svc), svc.spec.autoscaling.max_replicas):
                quota.release(group_id(svc.name, i))
            svc.status.state, svc.status.replicas_granted, svc.status.replicas_running = ServiceState.DELETED, 0, 0
            svc.status.url = None
            self.store.update(svc, event="Deleted", message="service deleted")
            self._wanted.pop(svc.name, None)
            return
        granted = self.granted(svc, quota)
        # Release extra groups load no longer asks for (scale down returns borrowed quota first:
        # the highest-numbered groups were the last granted).
        wanted = self._wanted.get(svc.name)
        if wanted is not None:
            for i in range(svc.spec.autoscaling.max_replicas - 1, max(wanted, base_replicas(svc)) - 1, -1):
                if quota.is_admitted(group_id(svc.name, i)):
                    quota.release(group_id(svc.name, i))
                    self.store.add_event("Service", svc.name, "Released", f"replica group {i} no longer wanted by load: quota returned",
                                         {"workload": group_id(svc.name, i)})
            granted = self.granted(svc, quota)
        st = svc.status.model_copy(deep=True)
        if granted and st.flavor:
            flavor = self.fleet.config.flavors[st.flavor]
            pool = flavor.spec.pool
            rs = serving.scale(svc, pool, self.fleet.config.pools[pool].spec, granted, flavor.spec.node_labels)
            self._wanted[svc.name] = rs.replicas_wanted
            st.replicas_wanted = rs.replicas_wanted
            st.replicas_running = rs.replicas_running
            st.url = rs.url
            if rs.state is not None and rs.state != ServiceState.PENDING:  # PENDING: Serve has not listed the app yet
                st.state = rs.state
            st.message = self._why(svc, granted, rs.replicas_wanted, rs.message)
        st.replicas_granted = granted
        if st != svc.status:
            event = "Running" if st.state == ServiceState.RUNNING and svc.status.state != ServiceState.RUNNING else None
            svc.status = st
            self.store.update(svc, event=event, message=st.message)
