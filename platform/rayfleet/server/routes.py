"""rayfleet's own REST API (``/api/v1``), documented by the OpenAPI page at ``/docs``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from ..api import JobState, Service, TrainJob
from ..errors import FieldProblem, SpecError
from .auth import Principal, principal
from .fleet import Fleet
from .store import Record

log = logging.getLogger("rayfleet.routes")
log = logging.getLogger("rayfleet.routes")
router = APIRouter(prefix="/api/v1")
Caller = Annotated[Principal, Depends(principal)]


def fleet_of(request: Request) -> Fleet:
    return request.app.state.fleet


FleetDep = Annotated[Fleet, Depends(fleet_of)]


class Page(BaseModel):
    items: list[dict[str, Any]] = Field(description="Objects of this page.")
    next: int | None = Field(default=None, description="Cursor of the next page (pass as ?cursor=); empty at the end.")


def _wire(rec: Record) -> dict[str, Any]:
    out = rec.doc.to_dict()
    out["metadata"]["resourceVersion"] = rec.resource_version
    out["metadata"]["team"] = rec.team
    return out


def _parse(kind: type, body: dict[str, Any], name_required: bool = True):
    if not isinstance(body, dict):
        raise SpecError(FieldProblem(field="(body)", problem="expected a JSON object"))
    if "status" in body:
        raise SpecError(FieldProblem(field="status", problem="status is set by rayfleet; submit metadata and spec only"))
    return kind.model_validate(body)


# ------------------------------------------------------------------ platform objects


@router.get("/pools", summary="Pools and their live capacity")
def list_pools(fleet: FleetDep, caller: Caller) -> list[dict[str, Any]]:
    try:
        capacity, unknown = fleet.backend.capacity(), ""
    except Exception as e:  # the backend is unreachable: say so on every pool, do not fail the listing
        log.warning("pool capacity unavailable: %s", e)
        capacity, unknown = {}, f"capacity unavailable from the {fleet.backend.name} backend: {e}"
    out = []
    for name, pool in fleet.config.pools.items():
        d = pool.to_dict()
        cap = capacity.get(name)
        if cap is not None:
            d["status"] = {"readyHosts": cap.ready_hosts, "freeHosts": cap.free_hosts, "hosts": cap.hosts,
                           "state": "Ready" if cap.ready_hosts >= cap.hosts else ("Degraded" if cap.ready_hosts else "Pending")}
        elif unknown:
            d["status"] = {**d.get("status", {}), "message": unknown}
        out.append(d)
    return out


@router.get("/flavors", summary="Flavors (Kueue ResourceFlavors) and compute classes")
def list_flavors(fleet: FleetDep, caller: Caller) -> dict[str, list[dict[str, Any]]]:
    return {"flavors": [f.to_dict() for f in fleet.config.flavors.values()],
            "computeClasses": [c.to_dict() for c in fleet.config.compute_classes.values()]}


@router.get("/queues", summary="Queues: quota, usage, borrowed, lent, pending, admitted, and why each waiting workload waits")
def list_queues(fleet: FleetDep, caller: Caller) -> list[dict[str, Any]]:
    return [fleet.queue_view(name) for name, q in fleet.config.queues.items() if caller.can_access(q.spec.team)]


@router.get("/queues/{name}", summary="One queue")
def get_queue(name: str, fleet: FleetDep, caller: Caller) -> dict[str, Any]:
    # another team's queue is answered as a missing one, as GET /queues does not list it
    if name not in fleet.config.queues or not caller.can_access(fleet.config.queues[name].spec.team):
        from ..errors import NotFound

        raise NotFound(f"queue {name!r} not found", field="name")
    return fleet.queue_view(name)


@router.get("/clusters", summary="Ray clusters rayfleet runs")
def list_clusters(fleet: FleetDep, caller: Caller) -> list[dict[str, Any]]:
    info = fleet.backend.info()
    cluster = fleet.config.cluster
    d = cluster.to_dict() if cluster else {"kind": "Cluster", "metadata": {"name": "default"}, "spec": {"backend": fleet.backend.name}}
    d["status"] = {"state": "Up" if info else "Down", "address": info.address if info else None,
                   "dashboardUrl": info.dashboard_url if info else None, "serveUrl": info.serve_url if info else None}
    return [d]


# ------------------------------------------------------------------ jobs


@router.post("/jobs", status_code=201, summary="Submit a training job (idempotent per metadata.name)")
def submit_job(fleet: FleetDep, caller: Caller, body: Annotated[dict[str, Any], Body(description="A TrainJob: metadata (name = client-chosen id) and spec.")]) -> dict[str, Any]:
    job = _parse(TrainJob, body)
    rec, _created = fleet.submit_job(job, caller)
    return _wire(rec)


@router.get("/jobs", summary="List jobs, filtered and paged")
def list_jobs(
    fleet: FleetDep,
    caller: Caller,
    state: Annotated[list[JobState] | None, Query(description="Only these states.")] = None,
    queue: Annotated[str | None, Query(description="Only this queue.")] = None,
    team: Annotated[str | None, Query(description="Only this team (admins).")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 100,
    cursor: Annotated[int, Query(ge=0, description="Cursor from the previous page's next.")] = 0,
) -> Page:
    if not caller.admin:
        if team is not None and team != caller.team:
            caller.require(team, f"jobs of team {team!r}")
        team = caller.team
    states = [s.value for s in state] if state else None
    items: list[dict[str, Any]] = []
    nxt: int | None = cursor
    # Queue filtering happens after the store's page; keep paging until the page is full.
    while nxt is not None and len(items) < limit:
        recs, nxt = fleet.store.page("TrainJob", team=team, states=states, limit=limit, cursor=nxt)
        items += [_wire(r) for r in recs if queue is None or r.doc.spec.queue == queue]  # type: ignore[attr-defined]
    return Page(items=items[:limit], next=nxt)


@router.get("/jobs/{name}", summary="One job")
def get_job(name: str, fleet: FleetDep, caller: Caller) -> dict[str, Any]:
    return _wire(fleet.get_job(name, caller))


@router.get("/jobs/{name}/events", summary="A job's event log (admissions, interruptions, recoveries)")
def job_events(name: str, fleet: FleetDep, caller: Caller) -> list[dict[str, Any]]:
    fleet.get_job(name, caller)
    return _events(fleet, "TrainJob", name)


def _events(fleet: Fleet, kind: str, name: str) -> list[dict[str, Any]]:
    return [{"ts": e.ts, "type": e.type, "message": e.message, "data": e.data} for e in fleet.store.events(kind, name)]


@router.get("/jobs/{name}/logs", response_class=PlainTextResponse, summary="A job's logs, all attempts")
def job_logs(name: str, fleet: FleetDep, caller: Caller) -> str:
    return fleet.job_logs(name, caller)


@router.post("/jobs/{name}/stop", summary="Stop a job (its whole gang)")
def stop_job(name: str, fleet: FleetDep, caller: Caller) -> dict[str, Any]:
    fleet.stop_job(name, caller)
    return _wire(fleet.store.get("TrainJob", name))


# ------------------------------------------------------------------ services


@router.post("/services", status_code=201, summary="Deploy a Serve service (idempotent per metadata.name)")
def deploy_service(fleet: FleetDep, caller: Caller, body: Annotated[dict[str, Any], Body(description="A Service: metadata and spec.")]) -> dict[str, Any]:
    svc = _parse(Service, body)
    rec, _ = fleet.deploy_service(svc, caller)
    return _wire(rec)


@router.get("/services", summary="List services")
def list_services(fleet: FleetDep, caller: Caller) -> list[dict[str, Any]]:
    return [_wire(r) for r in fleet.store.list("Service", team=None if caller.admin else caller.team)]


@router.get("/services/{name}", summary="One service: replicas wanted, granted, running, URL")
def get_service(name: str, fleet: FleetDep, caller: Caller) -> dict[str, Any]:
    return _wire(fleet.get_service(name, caller))


@router.get("/services/{name}/events", summary="A service's event log (admissions of replica groups, preemptions, deletion)")
def service_events(name: str, fleet: FleetDep, caller: Caller) -> list[dict[str, Any]]:
    fleet.get_service(name, caller)
    return _events(fleet, "Service", name)


@router.delete("/services/{name}", summary="Delete a service")
def delete_service(name: str, fleet: FleetDep, caller: Caller) -> dict[str, Any]:
    fleet.delete_service(name, caller)
    return {"deleted": True}
