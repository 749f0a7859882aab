"""rayfleet's own REST API (``/api/v1``), documented by the OpenAPI page at ``/docs``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from ..api import JobState, Service, TrainJob, limits
from ..api.wire import ServiceRecord, ServiceSubmit, TrainJobRecord, TrainJobSubmit, record_of
from .auth import Principal, principal
from .fleet import Fleet
from .paging import fill_page, log_page
from .store import Record

log = logging.getLogger("rayfleet.routes")


class Problem(BaseModel):
    field: str = Field(description="Dotted path of the field (spec.gang.workers), or (body) for the whole body.")
    problem: str = Field(description="What is wrong with it.")
    file: str | None = None
    document: str | None = None


class ErrorAnswer(BaseModel):
    """Every error answer (RayfleetError.as_dict): a 422 lists each problem with its field."""

    error: str = Field(description="The error class: SpecError, NotFound, Conflict, Forbidden, Unauthorized, ...")
    message: str = Field(description="What went wrong.")
    field: str | None = Field(default=None, description="The field the error is about, where there is one.")
    problems: list[Problem] | None = Field(default=None, description="A SpecError's problems, one per field.")


router = APIRouter(prefix="/api/v1", responses={422: {"model": ErrorAnswer, "description": "Bad input: each problem names its field"}})
Caller = Annotated[Principal, Depends(principal)]


def fleet_of(request: Request) -> Fleet:
    return request.app.state.fleet


FleetDep = Annotated[Fleet, Depends(fleet_of)]
PageSize = Annotated[int, Query(ge=1, le=limits.LIST_PAGE_MAX_ITEMS, description="Page size (at most 500; a page also stops at 8 MiB of items).")]
Cursor = Annotated[int, Query(ge=0, le=limits.CURSOR_MAX, description="Cursor from the previous page's next (0 to 2^63-1).")]
NEXT_HEADER = "X-Next-Cursor"


class JobPage(BaseModel):
    items: list[TrainJobRecord] = Field(description="Jobs of this page.")
    next: int | None = Field(default=None, description="Cursor of the next page (pass as ?cursor=); null at the end.")


# Answers that carry one stored document: its wire form (Document.to_dict) drops unset optional fields.
ONE_RECORD: dict[str, Any] = {"response_model_exclude_none": True}
ALREADY_THERE = "Already there: the same metadata.name was submitted before with the same spec"


def _job(rec: Record) -> TrainJobRecord:
    if not isinstance(rec.doc, TrainJob):
        raise TypeError(f"{rec.doc.ref()} is not a TrainJob")
    return record_of(rec.doc, rec.resource_version, rec.team)


def _service(rec: Record) -> ServiceRecord:
    if not isinstance(rec.doc, Service):
        raise TypeError(f"{rec.doc.ref()} is not a Service")
    return record_of(rec.doc, rec.resource_version, rec.team)


def _wire(rec: Record) -> dict[str, Any]:
    return (_job(rec) if rec.doc.KIND == TrainJob.KIND else _service(rec)).to_dict()


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


@router.get("/clusters", summary="The clusters rayfleet runs: backend, whether each answers, whether it is cordoned and why")
def list_clusters(fleet: FleetDep, caller: Caller) -> list[dict[str, Any]]:
    return fleet.clusters_view()


class CordonRequest(BaseModel):
    model_config = {"extra": "forbid"}
    drain: bool = Field(default=False, description="Also move its work: running jobs checkpoint and resume on another cluster, "
                                                   "services come up elsewhere before they go from it.")
    reason: str = Field(default="", max_length=limits.TEXT_MAX_CHARS, description="Why (kept with the cordon and its event).")


@router.post("/clusters/{name}/cordon", summary="Cordon a cluster (admins): no new work; with drain, its work moves to the others")
def cordon_cluster(name: str, fleet: FleetDep, caller: Caller, body: Annotated[CordonRequest, Body()] = CordonRequest()) -> dict[str, Any]:
    return fleet.cordon_cluster(name, caller, drain=body.drain, reason=body.reason)


@router.post("/clusters/{name}/uncordon", summary="Uncordon a cluster (admins): it takes new work again")
def uncordon_cluster(name: str, fleet: FleetDep, caller: Caller) -> dict[str, Any]:
    return fleet.uncordon_cluster(name, caller)


# ------------------------------------------------------------------ jobs


@router.post("/jobs", status_code=201, response_model=TrainJobRecord, **ONE_RECORD,
             responses={200: {"model": TrainJobRecord, "description": ALREADY_THERE}},
             summary="Submit a training job (idempotent per metadata.name: 201 created, 200 already there)")
def submit_job(fleet: FleetDep, caller: Caller, response: Response,
               body: Annotated[TrainJobSubmit, Body(description="A TrainJob: metadata (name = client-chosen id) and spec.")]) -> TrainJobRecord:
    rec, created = fleet.submit_job(body.document(), caller)
    response.status_code = 201 if created else 200
    return _job(rec)


@router.get("/jobs", response_model=JobPage, summary="List jobs, filtered and paged")
def list_jobs(
    fleet: FleetDep,
    caller: Caller,
    state: Annotated[list[JobState] | None, Query(description="Only these states.")] = None,
    queue: Annotated[str | None, Query(description="Only this queue.")] = None,
    team: Annotated[str | None, Query(description="Only this team (admins).")] = None,
    limit: PageSize = 100,
    cursor: Cursor = 0,
) -> JSONResponse:
    if not caller.admin:
        if team is not None and team != caller.team:
            caller.require(team, f"jobs of team {team!r}")
        team = caller.team
    states = [s.value for s in state] if state else None
    # Queue filtering happens after the store's page; fill_page keeps paging until the page is full.
    items, nxt = _page(fleet, "TrainJob", team, states, cursor, limit,
                       keep=lambda r: queue is None or r.doc.spec.queue == queue)  # type: ignore[attr-defined]
    return JSONResponse({"items": items, "next": nxt})


def _page(fleet: Fleet, kind: str, team: str | None, states: list[str] | None, cursor: int, limit: int,
          keep: Callable[[Record], bool] = lambda _: True) -> tuple[list[dict[str, Any]], int | None]:
    def batch(after: int, n: int) -> tuple[list[Record], int | None]:
        return fleet.store.page(kind, team=team, states=states, limit=n, cursor=after)

    return fill_page(batch, cursor, limit, _wire, keep, recut=lambda after, n: batch(after, n)[1])


def _listed(items: list[dict[str, Any]], nxt: int | None) -> JSONResponse:
    headers = {NEXT_HEADER: str(nxt)} if nxt is not None else {}
    return JSONResponse(items, headers=headers)


@router.get("/jobs/{name}", response_model=TrainJobRecord, **ONE_RECORD, summary="One job")
def get_job(name: str, fleet: FleetDep, caller: Caller) -> TrainJobRecord:
    return _job(fleet.get_job(name, caller))


EventsSize = Annotated[int, Query(ge=1, le=1000, description="Most events in this page (at most 1000).")]
EventsAfter = Annotated[int, Query(ge=0, le=limits.CURSOR_MAX, description="Only events after this event id (the previous page's X-Next-Cursor).")]


@router.get("/jobs/{name}/events", response_model=list[dict[str, Any]], summary="A job's event log (admissions, interruptions, recoveries), oldest first; "
            "a full page carries the cursor of the next in the X-Next-Cursor header")
def job_events(name: str, fleet: FleetDep, caller: Caller, after: EventsAfter = 0, limit: EventsSize = 1000) -> JSONResponse:
    return _events(fleet, fleet.get_job(name, caller), after, limit)


def _events(fleet: Fleet, rec: Record, after: int, limit: int) -> JSONResponse:
    events = fleet.events(rec, after=after, limit=limit)
    items = [{"id": e.id, "ts": e.ts, "type": e.type, "message": e.message, "data": e.data} for e in events]
    return _listed(items, events[-1].id if len(events) == limit else None)


LOG_HEADERS = ("X-Log-Offset", "X-Next-Offset", "X-Log-Size")


@router.get("/jobs/{name}/logs", response_class=PlainTextResponse,
            summary="A job's logs, all attempts, one page of bytes: headers X-Log-Offset, X-Next-Offset (pass as ?offset= for the "
            "next page) and X-Log-Size (bytes so far); the page is complete when X-Next-Offset equals X-Log-Size")
def job_logs(
    name: str,
    fleet: FleetDep,
    caller: Caller,
    offset: Annotated[int, Query(ge=0, le=limits.CURSOR_MAX, description="First byte of the page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=limits.LOG_PAGE_MAX_BYTES, description="Most bytes in the page (at most 1 MiB).")] = limits.LOG_PAGE_MAX_BYTES,
) -> Response:
    page = log_page(fleet.job_logs(name, caller), offset, limit)
    return Response(page.data, media_type="text/plain; charset=utf-8",
                    headers=dict(zip(LOG_HEADERS, (str(page.offset), str(page.next_offset), str(page.size)), strict=True)))


@router.post("/jobs/{name}/stop", response_model=TrainJobRecord, **ONE_RECORD, summary="Stop a job (its whole gang)")
def stop_job(name: str, fleet: FleetDep, caller: Caller) -> TrainJobRecord:
    fleet.stop_job(name, caller)
    return _job(fleet.store.get("TrainJob", name))


# ------------------------------------------------------------------ services


@router.post("/services", status_code=201, response_model=ServiceRecord, **ONE_RECORD,
             responses={200: {"model": ServiceRecord, "description": ALREADY_THERE}},
             summary="Deploy a Serve service (idempotent per metadata.name: 201 created, 200 already there)")
def deploy_service(fleet: FleetDep, caller: Caller, response: Response,
                   body: Annotated[ServiceSubmit, Body(description="A Service: metadata and spec.")]) -> ServiceRecord:
    rec, created = fleet.deploy_service(body.document(), caller)
    response.status_code = 201 if created else 200
    return _service(rec)


@router.get("/services", response_model=list[ServiceRecord],
            summary="List services, paged: a page that is not the last carries the next cursor in the X-Next-Cursor header")
def list_services(fleet: FleetDep, caller: Caller, limit: PageSize = limits.LIST_PAGE_MAX_ITEMS, cursor: Cursor = 0) -> JSONResponse:
    items, nxt = _page(fleet, "Service", None if caller.admin else caller.team, None, cursor, limit)
    return _listed(items, nxt)


@router.get("/services/{name}", response_model=ServiceRecord, **ONE_RECORD, summary="One service: replicas wanted, granted, running, URL")
def get_service(name: str, fleet: FleetDep, caller: Caller) -> ServiceRecord:
    return _service(fleet.get_service(name, caller))


@router.get("/services/{name}/events", response_model=list[dict[str, Any]], summary="A service's event log (admissions of replica groups, preemptions, deletion)")
def service_events(name: str, fleet: FleetDep, caller: Caller, after: EventsAfter = 0, limit: EventsSize = 1000) -> JSONResponse:
    return _events(fleet, fleet.get_service(name, caller), after, limit)


@router.delete("/services/{name}", summary="Delete a service")
def delete_service(name: str, fleet: FleetDep, caller: Caller) -> dict[str, Any]:
    fleet.delete_service(name, caller)
    return {"deleted": True}


# ------------------------------------------------------------------ admin


@router.get("/quarantine", summary="Stored records that no longer decode, moved aside with their raw body (admins only)")
def list_quarantine(fleet: FleetDep, caller: Caller) -> list[dict[str, Any]]:
    caller.require_admin("the quarantine")
    return [{"id": q.id, "kind": q.kind, "name": q.name, "team": q.team, "uid": q.uid, "state": q.state, "error": q.error,
             "resourceVersion": q.resource_version, "createdAt": q.created_at, "quarantinedAt": q.quarantined_at, "body": q.body}
            for q in fleet.store.quarantined()]
