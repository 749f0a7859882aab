"""The Fleet: the facade the HTTP layer calls: validate, authorise and write specs, read views.
It never launches anything itself (the controller does). It is built by the composition root
(:func:`rayfleet.server.main.assemble`) around the store, backend, controller and service manager;
nothing below it (controller, service manager, transitions) knows it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from ..api import JobState, Service, ServiceState, TrainJob
from ..backends.base import Backend, run_id_for
from ..backends.cluster_set import ClusterSet
from ..config import PlatformConfig
from ..errors import Conflict, FieldProblem, NotFound, SpecError
from . import admission, transitions
from .auth import Principal, name_taken
from .controller import Controller
from .layout import DataLayout
from .leader import LeaderElector
from .leases import CONTROLLER
from .packages import Packages
from .services import ServiceManager, parse_id
from .store import Event, Quarantined, Record, Store


def _no_uid(meta: Any) -> None:
    if getattr(meta, "uid", None) is not None:
        raise SpecError(FieldProblem(field="metadata.uid", problem="set by rayfleet when the object is accepted; do not send it"))


def _resubmitted(existing: Record, what: str, name: str, spec: Any, principal: Principal, hint: str = "") -> Record:
    """A submission under a live name: the same spec again is the stored object (idempotent); a
    different one is a 409; another team's name is taken, saying nothing of its owner."""
    if not principal.can_access(existing.team):
        raise name_taken(what, name)
    if existing.doc.spec == spec:  # type: ignore[attr-defined]
        return existing
    raise Conflict(f"{what} {name!r} already exists with a different spec{hint}", field="metadata.name")


class Fleet:
    def __init__(self, *, config: PlatformConfig, backend: Backend, store: Store, layout: DataLayout,
                 controller: Controller, services: ServiceManager, packages: Packages,
                 clock: Callable[[], float] = time.time):
        self.config = config
        self.backend = backend
        self.store = store
        self.layout = layout
        self.data_dir = layout.data_dir
        self.controller = controller
        self.services = services
        self.packages = packages
        self.clock = clock
        self.elector: LeaderElector | None = None   # several replicas on one store: who runs the controller

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Run the controller; with an elector (replicas sharing a PostgreSQL store), only while
        this replica holds the controller lease."""
        if self.elector is not None:
            self.elector.start()
        else:
            self.controller.start()

    def stop(self) -> None:
        if self.elector is not None:
            self.elector.stop()   # the controller stops with the lease, which is released
        self.controller.stop()

    def close(self) -> None:
        self.stop()
        self.store.close()

    def role(self) -> str:
        """``leader`` or ``follower`` among replicas (:mod:`.leader`); ``single`` without an elector."""
        return self.elector.role() if self.elector is not None else "single"

    def lead(self, generation: int) -> None:
        """The elector's: this replica took the controller lease."""
        self.controller.take_over()
        self.controller.last_error = None
        self.controller.start(fence=(CONTROLLER, generation))

    def follow(self, why: str) -> None:
        """The elector's: this replica lost (or gave up) the lease."""
        self.controller.stop()
        self.controller.last_error = None   # (a pass refused for want of the lease is not a fault of this replica)

    # ------------------------------------------------------------ clusters

    def clusters_view(self) -> list[dict[str, Any]]:
        """Every Cluster document with what runs it and whether it is cordoned (and why)."""
        info = self.backend.info()
        cordons = self.controller.cordons.all()
        states = {st.name: st for st in self.backend.states()} if isinstance(self.backend, ClusterSet) else {}
        docs = list(self.config.clusters.values())
        if not docs:
            return [{"kind": "Cluster", "metadata": {"name": "default"}, "spec": {"backend": self.backend.name},
                     "status": {"state": "Up" if info else "Down", "backend": self.backend.name, "cordoned": False}}]
        out = []
        for doc in docs:
            d = doc.to_dict()
            st, cordon = states.get(doc.name), cordons.get(doc.name)
            d["status"] = {
                "state": ("Up" if st.reachable else "Unreachable") if st is not None else ("Up" if info else "Down"),
                "backend": self.backend.name if st is None else doc.spec.backend,
                "address": info.address if info and st is None else None,
                "dashboardUrl": info.dashboard_url if info and st is None else None,
                "serveUrl": info.serve_url if info and st is None else None,
                "cordoned": cordon is not None, "drain": bool(cordon and cordon.drain), "cordonReason": cordon.reason if cordon else "",
                "cordonedAutomatically": bool(cordon and cordon.auto),
                "cordonedSince": cordon.since if cordon else None,
                "error": st.error if st is not None else "",
            }
            out.append(d)
        return out

    def cordon_cluster(self, name: str, principal: Principal, *, drain: bool, reason: str) -> dict[str, Any]:
        """Admin: no new work on cluster ``name``; ``drain``: its work moves to the others."""
        principal.require_admin("cordoning a cluster")
        self._check_cluster(name)
        self.controller.cordons.set(name, drain=drain, reason=reason or f"by {principal.label or 'admin'}", auto=False, now=self.clock())
        self.controller.wake()
        return next(c for c in self.clusters_view() if c["metadata"]["name"] == name)

    def uncordon_cluster(self, name: str, principal: Principal) -> dict[str, Any]:
        principal.require_admin("uncordoning a cluster")
        self._check_cluster(name)
        self.controller.cordons.remove(name, reason=f"by {principal.label or 'admin'}", now=self.clock())
        self.controller.wake()
        return next(c for c in self.clusters_view() if c["metadata"]["name"] == name)

    def _check_cluster(self, name: str) -> None:
        if name not in self.config.clusters:
            raise NotFound(f"cluster {name!r} not found (clusters: {', '.join(self.config.clusters) or 'none configured'})", field="name")
        if len(self.config.clusters) < 2:
            raise Conflict(f"cluster {name!r} is the platform's only cluster: cordoning it would stop all work "
                           "(cordon and drain move work between the Cluster documents of a config)", field="name")

    # ------------------------------------------------------------ tenancy

    def team_of_queue(self, queue: str) -> str | None:
        q = self.config.queues.get(queue)
        return q.spec.team if q else None

    def default_queue(self, principal: Principal) -> str:
        for name, q in self.config.queues.items():
            if q.spec.team == principal.team:
                return name
        raise SpecError(FieldProblem(field="metadata.queue", problem="no queue given and the caller's team owns no queue"))

    # ------------------------------------------------------------ jobs

    def submit_job(self, job: TrainJob, principal: Principal) -> tuple[Record, bool]:
        """Validate, authorise and store a job (state QUEUED) under a new uid. Returns (record, created).

        Resubmitting the same id with the same spec returns the stored job (idempotent);
        the same id with a different spec is a 409. A client may not set metadata.uid (422).
        """
        _no_uid(job.metadata)
        placement = admission.check_job(self.config, job)
        team = self.team_of_queue(job.spec.queue)
        principal.require(team, f"queue {job.spec.queue!r}")
        self.packages.check_owned(team, job.spec.runtime_env, "spec.runtimeEnv")
        existing = self.store.find("TrainJob", job.name)
        if existing is not None:
            return _resubmitted(existing, "job", job.name, job.spec, principal), False
        now = self.clock()
        # a new object with its own metadata and status (the spec, which nothing here changes, is shared)
        job = job.model_copy(update={"metadata": job.metadata.model_copy(update={"uid": str(uuid.uuid4())}, deep=True),
                                     "status": transitions.submitted(job.spec.queue, placement.priority, now)})
        try:
            rec = self.store.create(job, team=team, event="Submitted", message=job.status.message, now=now)
        except Conflict:
            # Lost a race with an identical resubmission: answer as the idempotent path does.
            existing = self.store.get("TrainJob", job.name)
            if not principal.can_access(existing.team):
                raise name_taken("job", job.name) from None
            if existing.doc.spec == job.spec:  # type: ignore[attr-defined]
                return existing, False
            raise
        self.controller.wake()
        return rec, True

    def _own(self, kind: str, name: str, principal: Principal) -> Record:
        """The caller's object of that kind and name; another team's (live or quarantined) is NotFound."""
        try:
            rec = self.store.get(kind, name)
        except Quarantined as e:
            principal.require_own_quarantined(e, kind, name)
            raise
        principal.require_own(rec.team, kind, name)
        return rec

    def get_job(self, name: str, principal: Principal) -> Record:
        return self._own("TrainJob", name, principal)

    def stop_job(self, name: str, principal: Principal) -> TrainJob:
        self.get_job(name, principal)
        return self.controller.request_stop(name)

    def delete_job(self, name: str, principal: Principal) -> None:
        rec = self.get_job(name, principal)
        if not rec.doc.status.state.terminal:  # type: ignore[attr-defined]
            raise Conflict(f"job {name!r} is {rec.doc.status.state.value}; stop it before deleting it", field="status.state")  # type: ignore[attr-defined]
        self.store.delete("TrainJob", name)
        self.controller.logs.delete(name, rec.doc.metadata.uid)  # type: ignore[attr-defined]

    def events(self, rec: Record, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """The events of the stored object (of its uid: never those of an earlier object of that name)."""
        return self.store.events(rec.doc.KIND, rec.name, uid=getattr(rec.doc.metadata, "uid", None), after=after, limit=limit)

    def job_logs(self, name: str, principal: Principal) -> str:
        rec = self.get_job(name, principal)
        job: TrainJob = rec.doc  # type: ignore[assignment]
        parts = []
        for attempt in range(1, job.status.attempt + 1):
            path = self.layout.log_path(job, attempt)
            live = attempt == job.status.attempt and job.status.state in (JobState.STARTING, JobState.RUNNING, JobState.STOPPING)
            if live:
                try:
                    text = self.backend.logs(run_id_for(name, attempt, job.metadata.uid))
                except Exception as e:
                    text = f"[rayfleet] logs unavailable: {e}\n"
            else:
                saved = self.controller.logs.read(name, job.metadata.uid, attempt, legacy=path)
                if saved is None:
                    continue
                text = saved
            if job.status.attempt > 1:
                parts.append(f"[rayfleet] ---- attempt {attempt} ----\n")
            parts.append(text)
        return "".join(parts)

    def checkpoint_dir(self, job: TrainJob) -> str | None:
        return self.layout.checkpoint_dir(job)

    # ------------------------------------------------------------ queues

    def queue_view(self, name: str) -> dict[str, Any]:
        """A queue's spec with live status: quota and usage per flavor and resource, borrowing,
        lending, pending and admitted workloads, and why each waiting one waits."""
        from ..api import format_quantity

        q = self.config.queues[name]
        usage = self.controller.quota.usage(name)

        def table(values) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for (flavor, res), v in sorted(values.items()):
                if v:
                    out.setdefault(flavor, {})[res] = format_quantity(res, v)
            return out

        admitted = [wid for wid, a in self.controller.quota.state.admitted.items() if a.workload.queue == name]
        waiting = sorted((w for w in self.controller.waiting.values() if w.queue == name), key=lambda w: w.position)
        # the last cycle looked at the queue's heads only (queue_heads): the pending count is the store's
        services_waiting = sum(1 for w in waiting if parse_id(w.workload_id) is not None)
        pending = self.store.count("TrainJob", [JobState.QUEUED.value], queue=name) + services_waiting
        d = q.to_dict()
        d["status"] = {
            "nominal": table(usage.nominal),
            "usage": table(usage.usage),
            "borrowed": table(usage.borrowed),
            "lent": table(usage.lent),
            "pending": pending,
            "admitted": len(admitted),
            "admittedWorkloads": admitted,
            "waiting": [self._with_estimate(w.to_dict()) for w in waiting],
        }
        return d

    def _with_estimate(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A waiting entry with the controller's estimated start for it (when it has one)."""
        e = self.controller.estimates.current.get(entry["workload"])
        if e is not None:
            entry["estimatedStart"] = None if e.at is None else transitions.at(e.at).isoformat().replace("+00:00", "Z")
            entry["estimatedStartReason"] = e.reason
        return entry

    # ------------------------------------------------------------ services

    def deploy_service(self, svc: Service, principal: Principal) -> tuple[Record, bool]:
        """Validate, authorise and store a service (PENDING) under a new uid. Returns (record, created)."""
        _no_uid(svc.metadata)
        admission.check_service(self.config, svc)
        team = self.team_of_queue(svc.spec.queue)
        principal.require(team, f"queue {svc.spec.queue!r}")
        existing = self.store.find("Service", svc.name)
        if existing is not None and existing.doc.status.state != ServiceState.DELETED:  # type: ignore[attr-defined]
            return _resubmitted(existing, "service", svc.name, svc.spec, principal, "; delete it first"), False
        now = self.clock()
        if existing is not None:
            self.store.delete("Service", svc.name, event=None, now=now)
        svc = svc.model_copy(deep=True)
        svc.metadata.uid = str(uuid.uuid4())
        svc.status = transitions.service_deployed(svc.spec.queue)
        rec = self.store.create(svc, team=team, event="Submitted", message=svc.status.message, now=now)
        self.controller.wake()
        return rec, True

    def get_service(self, name: str, principal: Principal) -> Record:
        return self._own("Service", name, principal)

    def delete_service(self, name: str, principal: Principal) -> None:
        svc: Service = self.get_service(name, principal).doc  # type: ignore[assignment]
        t = transitions.service_deleting(svc.status)
        self.store.update(svc.model_copy(update={"status": t.status}), event=t.event, message=t.message, now=self.clock())
        self.controller.wake()
