"""Serve services under quota.

A service's replicas are leader-worker groups. Its first ``max(minReplicas, 1)`` groups are one
quota workload (admitted whole, on one flavor); every group above that is its own workload,
restricted to the same flavor (one deployment runs on one pool). What Serve's autoscaler wants
beyond the granted count becomes pending workloads; what quota grants becomes the deployment's
replica cap; a reclaimed (preempted) extra group lowers the cap, and Serve drains that replica
gracefully. Workload ids: ``svc.<name>.base`` and ``svc.<name>.<i>`` for group i.

Capacity that comes and goes (``service_moves`` has the rules): a group on a host with a recycle,
reclaim or unhealthy notice is moved to other hosts of its pool (a replacement brought up, traffic
moved, the old group drained); a group on a host whose calendar window closes, and (compute class
``activeMigration.optimizeRulePriority``) a group on a later step when an earlier one has room, ask
quota for a move workload ``svc.<name>.m<i>`` and move where it is admitted. Once every group has
moved to one flavor the service's quota moves there too.
"""

from __future__ import annotations

import logging

from ..api import Service, ServiceState
from ..backends.base import ServiceRunStatus
from ..config import PlatformConfig
from ..quota.types import Admit, PodSet, Wait, Workload
from ..serve.deployer import base_replicas
from . import admission, service_moves, transitions
from .quota_bridge import QuotaBridge
from .serving import Serving
from .store import Record, Store
from .transitions import Action, Transition

log = logging.getLogger("rayfleet.services")
ACTIVE = [s.value for s in (ServiceState.PENDING, ServiceState.DEPLOYING, ServiceState.RUNNING, ServiceState.DEGRADED)]
#: priority of a move back to an earlier compute-class step: below every class, so it only takes
#: room that is free (it never preempts) and is the first to go when the room is wanted back
MOVE_BACK_PRIORITY = -(2**31)


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
        self._moves_wanted: dict[str, dict[int, tuple[tuple[str, ...], int]]] = {}  # service -> group -> (flavors, priority)
        self._flavors: dict[str, tuple[object, tuple[str, ...]]] = {}   # service -> (its spec, the flavors it may use)

    def _placement_flavors(self, svc: Service) -> tuple[str, ...]:
        """``admission.check_service``'s flavors, worked out again only when the service's spec
        object changed (a stored service read again unchanged shares its spec; the config does
        not change while the manager runs)."""
        hit = self._flavors.get(svc.name)
        if hit is None or hit[0] is not svc.spec:
            hit = self._flavors[svc.name] = (svc.spec, admission.check_service(self.config, svc).flavors)
        return hit[1]

    def _records(self) -> list[Record]:
        return self.store.list("Service", states=ACTIVE + [ServiceState.DELETING.value], shared=True)

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
            for i in range(svc.spec.autoscaling.max_replicas):
                self.quota.release(service_moves.move_id(svc.name, i))
            self._moves_wanted.pop(svc.name, None)
            if t.status.group_moves:
                t = Transition(t.status.model_copy(update={"group_moves": {}}), t.event, t.message, t.data, t.actions)
        if t.status == svc.status and t.event is None:
            return svc
        svc = svc.model_copy(update={"status": t.status})
        self.store.update(svc, event=t.event, message=t.message, data=t.data, now=now)
        return svc

    @staticmethod
    def _workload(quota: QuotaBridge, svc: Service, wid: str, groups: int, flavors: tuple[str, ...], created: float,
                  priority: int | None = None) -> Workload:
        rg = svc.spec.replica_group
        return Workload(
            id=wid,
            queue=svc.spec.queue,
            podsets=(PodSet(groups * rg.hosts_per_replica, dict(rg.resources_per_host), "hosts"),),
            priority=quota.priority(svc.spec.priority_class) if priority is None else priority,
            created=created,
            flavors=flavors,
        )

    def forget(self) -> None:
        """Drop what the manager keeps between passes (a replica taking over reads it all again)."""
        self._wanted.clear()
        self._requested_at.clear()
        self._moves_wanted.clear()
        self._flavors.clear()

    def restore(self, quota: QuotaBridge | None = None) -> None:
        """After a restart: re-admit the groups each running service holds (into ``quota``, by
        default the controller's)."""
        quota = quota or self.quota
        for svc in self._active():
            if svc.status.flavor is None or svc.status.state == ServiceState.DELETING:
                continue
            flavors = (svc.status.flavor,)
            quota.restore_workload(self._workload(quota, svc, base_id(svc.name), base_replicas(svc), flavors, 0.0), svc.status.flavor)
            for i in range(base_replicas(svc), svc.status.replicas_granted):
                quota.restore_workload(self._workload(quota, svc, group_id(svc.name, i), 1, flavors, 0.0), svc.status.flavor)
            for key, flavor in svc.status.group_moves.items():
                quota.restore_workload(self._workload(quota, svc, service_moves.move_id(svc.name, int(key)), 1, (flavor,), 0.0), flavor)

    def pending(self, now: float) -> list[Workload]:
        quota = self.quota
        out = []
        for rec in self._records():
            svc: Service = rec.doc  # type: ignore[assignment]
            if svc.status.state == ServiceState.DELETING:
                continue
            created = rec.created_at
            if not quota.is_admitted(base_id(svc.name)):
                flavors = self._placement_flavors(svc)
                out.append(self._workload(quota, svc, base_id(svc.name), base_replicas(svc), flavors, created))
                continue
            wanted = min(max(self._wanted.get(svc.name, 0), base_replicas(svc)), svc.spec.autoscaling.max_replicas)
            for i in range(base_replicas(svc), wanted):
                wid = group_id(svc.name, i)
                if not quota.is_admitted(wid):
                    out.append(self._workload(quota, svc, wid, 1, (svc.status.flavor or "",), self._requested_at.setdefault(wid, now)))
            for i, (flavors, priority) in sorted(self._moves_wanted.get(svc.name, {}).items()):
                wid = service_moves.move_id(svc.name, i)
                if not quota.is_admitted(wid) and str(i) not in svc.status.group_moves:
                    out.append(self._workload(quota, svc, wid, 1, flavors, self._requested_at.setdefault(wid, now), priority))
        return out

    def _find(self, workload_id: str) -> tuple[Service, int | None] | None:
        parsed = parse_id(workload_id)
        rec = self.store.find("Service", parsed[0]) if parsed is not None else None
        return (rec.doc, parsed[1]) if rec is not None and parsed is not None else None  # type: ignore[return-value]

    def admitted(self, a: Admit, now: float) -> None:
        move = service_moves.parse_move(a.workload_id)
        if move is not None:
            self._move_admitted(move[0], move[1], a, now)
            return
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
        Serve drains the replica (requests in flight finish). A move workload reclaimed: the group
        goes back to the service's flavor (reconcile moves it there, its quota there was kept)."""
        move = service_moves.parse_move(workload_id)
        if move is not None:
            self._move_preempted(move[0], move[1], workload_id, message, now)
            return
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
            if self.serving.can_migrate and rs.groups:
                svc = self._moves(svc, rs, granted, now)
        self._apply(svc, transitions.service_observed(svc.status, granted, rs, message), now)

    # ------------------------------------------------------------ moving groups (capacity that comes and goes)

    def _pool_of(self, flavor: str) -> str:
        return self.config.flavors[flavor].spec.pool

    def _event(self, svc: Service, reason: str, message: str, data: dict, now: float) -> None:
        self.store.add_event("Service", svc.name, reason, message, data, uid=svc.metadata.uid, now=now)

    def _set_moves(self, svc: Service, moves: dict[str, str], now: float, *, event: str | None = None, message: str = "",
                   data: dict | None = None, flavor: str | None = None) -> Service:
        st = svc.status.model_copy(update={"group_moves": moves, **({"flavor": flavor} if flavor else {})})
        return self._apply(svc, Transition(st, event, message, data or {}), now)

    @staticmethod
    def _service(rec: Record | None) -> Service | None:
        """The service a store record holds (None when there is no record)."""
        if rec is None:
            return None
        assert isinstance(rec.doc, Service)
        return rec.doc

    def _move_admitted(self, name: str, index: int, a: Admit, now: float) -> None:
        rec = self.store.find("Service", name)
        wanted = self._moves_wanted.get(name, {})
        wanted.pop(index, None)
        self._requested_at.pop(a.workload_id, None)
        svc = self._service(rec)
        if svc is None or svc.status.state not in (ServiceState.DEPLOYING, ServiceState.RUNNING, ServiceState.DEGRADED):
            self.quota.release(a.workload_id)
            return
        self._set_moves(svc, {**svc.status.group_moves, str(index): a.flavor}, now, event="MoveAdmitted",
                        message=f"replica group {index} may move to {a.flavor}: quota admitted it there",
                        data={"workload": a.workload_id, "flavor": a.flavor, "group": index})

    def _move_preempted(self, name: str, index: int, workload_id: str, message: str, now: float) -> None:
        self.quota.release(workload_id)
        rec = self.store.find("Service", name)
        svc = self._service(rec)
        if svc is None or str(index) not in svc.status.group_moves:
            return
        moves = {k: v for k, v in svc.status.group_moves.items() if k != str(index)}
        self._set_moves(svc, moves, now, event="MovePreempted", message=f"replica group {index}'s move preempted: {message}",
                        data={"workload": workload_id, "group": index})

    def _moves(self, svc: Service, rs: ServiceRunStatus, granted: int, now: float) -> Service:
        """Move groups where they should be (see the module docstring); one call per reconcile."""
        name, home = svc.name, svc.status.flavor or ""
        moves = dict(svc.status.group_moves)
        groups = list(rs.groups)
        # Groups scaled away give their move's quota back.
        for key in [k for k in moves if int(k) >= len(groups)]:
            self.quota.release(service_moves.move_id(name, int(key)))
            del moves[key]
        if moves != svc.status.group_moves:
            svc = self._set_moves(svc, moves, now)
        # Every group on the pool of its flavor: an admitted move starts, a preempted one goes home.
        for g in groups:
            flavor = moves.get(str(g.index), home)
            pool = self._pool_of(flavor)
            if g.pool != pool and g.moving_to != pool and g.hosts:
                if self.serving.migrate(name, set(g.hosts), pool, self.config.pools[pool].spec):
                    self._event(svc, "Moving", f"replica group {g.index} moving from {g.pool} to {pool} ({flavor}): a replacement comes up "
                                "first, traffic moves when it is ready, then the old group drains", {"group": g.index, "to": flavor}, now)
        # Notices: to other hosts of the same pool, or (calendar window end) to another flavor.
        same = service_moves.same_pool_moves(groups, rs.notices, moves)
        if same is not None and self.serving.migrate(name, set(same.hosts)):
            self._event(svc, "Moving", f"{same.why}: a replacement comes up on other hosts of the pool, traffic moves when it is "
                        "ready, then the old group drains", {"groups": list(same.groups), "hosts": sorted(same.hosts)}, now)
        wanted = self._moves_wanted.setdefault(name, {})
        candidates = self._placement_flavors(svc)
        priority = self.quota.priority(svc.spec.priority_class)
        for i in service_moves.window_moves(groups, rs.notices, moves):
            flavors = service_moves.other_flavors(candidates, moves.get(str(i), home))
            if flavors and wanted.get(i, ((), 0))[0] != flavors:
                wanted[i] = (flavors, priority)
                self._event(svc, "MoveRequested", f"replica group {i}: its calendar window closes; asking quota for room on "
                            f"{', '.join(flavors)}", {"group": i, "flavors": list(flavors)}, now)
        # The way back, group by group.
        steps = self._move_back_steps(svc)
        if steps and not wanted:
            earlier = service_moves.earlier_steps(steps, candidates, home)
            back = service_moves.next_to_move_back(groups, moves, self._pool_of(home)) if earlier else None
            if back is not None:
                wanted[back] = (earlier, MOVE_BACK_PRIORITY)
        return self._finish_moves(svc, groups, granted, now)

    def _move_back_steps(self, svc: Service) -> list[str]:
        """The flavors of the queue's compute class, in order, if it moves work back to earlier steps."""
        q = self.config.queues.get(svc.spec.queue)
        cc = self.config.compute_classes.get(q.spec.compute_class or "") if q is not None else None
        if cc is None or not cc.spec.active_migration.optimize_rule_priority:
            return []
        return [step.flavor for step in cc.spec.flavors]

    def _finish_moves(self, svc: Service, groups: list, granted: int, now: float) -> Service:
        """Every group moved to one flavor: the service's quota moves there (base and extra groups
        admitted on it, the old flavor's released, the move workloads folded in)."""
        moves = svc.status.group_moves
        dests = set(moves.values())
        if len(dests) != 1 or len(groups) != granted or len(moves) != len(groups):
            return svc
        dest = dests.pop()
        if not all(service_moves.move_done(g, self._pool_of(dest)) for g in groups):
            return svc
        quota, name, old = self.quota, svc.name, svc.status.flavor
        quota.release(base_id(name))
        for i in range(base_replicas(svc), svc.spec.autoscaling.max_replicas):
            quota.release(group_id(name, i))
        for i in range(len(groups)):
            quota.release(service_moves.move_id(name, i))
        quota.restore_workload(self._workload(quota, svc, base_id(name), base_replicas(svc), (dest,), now), dest)
        for i in range(base_replicas(svc), granted):
            quota.restore_workload(self._workload(quota, svc, group_id(name, i), 1, (dest,), now), dest)
        self._moves_wanted.pop(name, None)
        return self._set_moves(svc, {}, now, flavor=dest, event="Moved", message=f"every replica group moved from {old} to {dest}; "
                               "its quota moved with it", data={"from": old, "to": dest})
