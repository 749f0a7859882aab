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

from ..api import Service, ServiceState
from ..config import PlatformConfig
from ..quota.types import Admit, PodSet, Wait, Workload
from ..serve.deployer import base_replicas
from . import admission, transitions
from .quota_bridge import QuotaBridge
from .serving import Serving
from .store import Record, Store
from .transitions import Action, Transition

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
    """The controller side of services: quota workloads, admissions, preemptions, reconciling Serve.
    Built by the composition root with what it needs; the rules are in :mod:`.transitions`."""

    def __init__(self, *, config: PlatformConfig, store: Store, quota: QuotaBridge, serving: Serving):
        self.config = config
        self.store = store
        self.quota = quota
        self.serving = serving
        self._wanted: dict[str, int] = {}
        self._requested_at: dict[str, float] = {}

    def _records(self) -> list[Record]:
        return self.store.list("Service", states=ACTIVE + [ServiceState.DELETING.value])

    def _active(self) -> list[Service]:
        return [r.doc for r in self._records()]  # type: ignore[misc]

    def _apply(self, svc: Service, t: Transition | None, now: float) -> Service:
        if t is None:
            return svc
        if Action.UNDEPLOY in t.actions:
            self.serving.delete(svc.name)
        if Action.RELEASE_QUOTA in t.actions:
            self.quota.release(base_id(svc.name))
            for i in range(base_replicas(svc), svc.spec.autoscaling.max_replicas):
                self.quota.release(group_id(svc.name, i))
        if t.status == svc.status and t.event is None:
            return svc
        svc = svc.model_copy(update={"status": t.status})
        self.store.update(svc, event=t.event, message=t.message, data=t.data, now=now)
        return svc

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

    def restore(self) -> None:
        """After a restart: re-admit the groups each running service holds."""
        quota = self.quota
        for svc in self._active():
            if svc.status.flavor is None or svc.status.state == ServiceState.DELETING:
                continue
            flavors = (svc.status.flavor,)
            quota.restore_workload(self._workload(quota, svc, base_id(svc.name), base_replicas(svc), flavors, 0.0), svc.status.flavor)
            for i in range(base_replicas(svc), svc.status.replicas_granted):
                quota.restore_workload(self._workload(quota, svc, group_id(svc.name, i), 1, flavors, 0.0), svc.status.flavor)

    def pending(self, now: float) -> list[Workload]:
        quota = self.quota
        out = []
        for rec in self._records():
            svc: Service = rec.doc  # type: ignore[assignment]
            if svc.status.state == ServiceState.DELETING:
                continue
            created = rec.created_at
            if not quota.is_admitted(base_id(svc.name)):
                flavors = admission.check_service(self.config, svc).flavors
                out.append(self._workload(quota, svc, base_id(svc.name), base_replicas(svc), flavors, created))
                continue
            wanted = min(max(self._wanted.get(svc.name, 0), base_replicas(svc)), svc.spec.autoscaling.max_replicas)
            for i in range(base_replicas(svc), wanted):
                wid = group_id(svc.name, i)
                if not quota.is_admitted(wid):
                    out.append(self._workload(quota, svc, wid, 1, (svc.status.flavor or "",), self._requested_at.setdefault(wid, now)))
        return out

    def _find(self, workload_id: str) -> tuple[Service, int | None] | None:
        parsed = parse_id(workload_id)
        rec = self.store.find("Service", parsed[0]) if parsed is not None else None
        return (rec.doc, parsed[1]) if rec is not None and parsed is not None else None  # type: ignore[return-value]

    def admitted(self, a: Admit, now: float) -> None:
        found = self._find(a.workload_id)
        if found is None:
            return
        svc, index = found
        if index is not None:
            self._requested_at.pop(a.workload_id, None)
        self._apply(svc, transitions.service_admitted(svc.status, a.workload_id, index, a.flavor, a.borrowed), now)

    def waiting(self, w: Wait, now: float) -> None:
        """The base workload waits: the Service stays PENDING with quota's reason. (A waiting extra
        group is reported by reconcile, next to Serve's reason for the counts.)"""
        found = self._find(w.workload_id)
        if found is None or found[1] is not None:
            return
        self._apply(found[0], transitions.service_waiting(found[0].status, w.reason), now)

    def preempted(self, workload_id: str, message: str, now: float) -> None:
        """A group was reclaimed: the quota is released now; reconcile lowers the replica cap and
        Serve drains the replica (requests in flight finish)."""
        if parse_id(workload_id) is None:
            return
        self.quota.release(workload_id)
        found = self._find(workload_id)
        if found is None:
            return
        svc, index = found
        self._apply(svc, transitions.service_preempted(svc.status, workload_id, index, message), now)

    def reconcile(self, waiting: dict[str, Wait], now: float) -> None:
        for svc in self._active():
            try:
                self._reconcile_one(svc, waiting, now)
            except Exception as e:  # one bad service must not stop the others
                log.exception("reconcile of service %s failed", svc.name)
                if svc.status.message != f"reconcile failed: {e}":
                    st = svc.status.model_copy(update={"message": f"reconcile failed: {e}"})
                    self._apply(svc, Transition(st), now)

    def granted(self, svc: Service) -> int:
        quota = self.quota
        if not quota.is_admitted(base_id(svc.name)):
            return 0
        n = base_replicas(svc)
        n += sum(1 for i in range(base_replicas(svc), svc.spec.autoscaling.max_replicas) if quota.is_admitted(group_id(svc.name, i)))
        return n

    @staticmethod
    def _why(svc: Service, granted: int, wanted: int, serve_message: str, waiting: dict[str, Wait]) -> str:
        """Serve's reason for the counts, plus quota's reason for the first group it has not granted."""
        if granted >= wanted:
            return serve_message
        for i in range(base_replicas(svc), min(wanted, svc.spec.autoscaling.max_replicas)):
            w = waiting.get(group_id(svc.name, i))
            if w is not None:
                return f"{serve_message}; replica group {i} waiting for quota: {w.reason}"
        return serve_message

    def _reconcile_one(self, svc: Service, waiting: dict[str, Wait], now: float) -> None:
        quota = self.quota
        if svc.status.state == ServiceState.DELETING:
            self._apply(svc, transitions.service_deleted(svc.status), now)
            self._wanted.pop(svc.name, None)
            return
        # Release extra groups load no longer asks for (scale down returns borrowed quota first:
        # the highest-numbered groups were the last granted).
        wanted = self._wanted.get(svc.name)
        if wanted is not None:
            for i in range(svc.spec.autoscaling.max_replicas - 1, max(wanted, base_replicas(svc)) - 1, -1):
                if quota.is_admitted(group_id(svc.name, i)):
                    quota.release(group_id(svc.name, i))
                    self.store.add_event("Service", svc.name, "Released", f"replica group {i} no longer wanted by load: quota returned",
                                         {"workload": group_id(svc.name, i)}, uid=svc.metadata.uid, now=now)
        granted = self.granted(svc)
        rs, message = None, svc.status.message
        if granted and svc.status.flavor:
            flavor = self.config.flavors[svc.status.flavor]
            pool = flavor.spec.pool
            rs = self.serving.scale(svc, pool, self.config.pools[pool].spec, granted, flavor.spec.node_labels)
            self._wanted[svc.name] = rs.replicas_wanted
            message = self._why(svc, granted, rs.replicas_wanted, rs.message, waiting)
        self._apply(svc, transitions.service_observed(svc.status, granted, rs, message), now)
