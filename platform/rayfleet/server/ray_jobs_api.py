"""Ray's job submission REST API, served by rayfleet on its own port.

Ray 2.60's ``ray job submit|status|logs|stop|list|delete`` and ``JobSubmissionClient`` work
unchanged against rayfleet: every submission becomes a TrainJob that goes through the same quota
admission as any other (its gang shape from the entrypoint resources, or from metadata), and only
then reaches Ray. A Ray ``submission_id`` is a TrainJob id.

Metadata keys rayfleet reads (``--metadata-json``): ``queue``, ``priority`` (a priority class),
``workers`` (gang size, default 1), ``accelerator`` (GKE name), ``placement`` (PACK, SPREAD, ...),
``maxRestarts`` (default 0: like Ray, a failed entrypoint is not retried; preemptions always requeue).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import pydantic
import ray
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from ray.dashboard.modules.version import CURRENT_VERSION

from ..api import CPU, GPU, MEMORY, TPU, Accelerator, JobState, TrainJob
from ..errors import FieldProblem, NotFound, RayfleetError, SpecError
from .auth import Principal, bearer_token, principal
from .fleet import Fleet

router = APIRouter()

# rayfleet job state -> Ray JobStatus
RAY_STATUS = {
    JobState.QUEUED: "PENDING",
    JobState.ADMITTED: "PENDING",
    JobState.STARTING: "PENDING",
    JobState.RUNNING: "RUNNING",
    JobState.STOPPING: "RUNNING",
    JobState.SUCCEEDED: "SUCCEEDED",
    JobState.FAILED: "FAILED",
    JobState.STOPPED: "STOPPED",
}

_SUBMIT_FIELDS = {
    "entrypoint", "submission_id", "job_id", "runtime_env", "metadata", "entrypoint_num_cpus",
    "entrypoint_num_gpus", "entrypoint_memory", "entrypoint_resources", "entrypoint_label_selector",
}


def _fleet(request: Request) -> Fleet:
    return request.app.state.fleet


def _text_error(exc: RayfleetError) -> Response:
    # The Ray SDK prints the body of a failed request as text; make it the readable message.
    return Response(exc.message if not isinstance(exc, SpecError) else "\n".join(str(p) for p in exc.problems),
                    status_code=exc.http_status, media_type="text/plain")


def _details(job: TrainJob) -> dict[str, Any]:
    st = job.status
    meta = {k: str(v) for k, v in (job.metadata.annotations or {}).items() if not k.startswith("rayfleet.io/")}
    meta.setdefault("queue", job.spec.queue)
    if job.spec.priority_class:
        meta.setdefault("priority", job.spec.priority_class)
    ts = lambda d: int(d.timestamp() * 1000) if d else None  # noqa: E731 - Ray reports milliseconds
    return {
        "type": "SUBMISSION",
        "job_id": None,
        "submission_id": job.name,
        "driver_info": None,
        "status": RAY_STATUS[st.state],
        "entrypoint": job.spec.entrypoint or f"rayfleet train app {job.spec.train_app.module if job.spec.train_app else ''}",
        "message": st.message,
        "error_type": None,
        "start_time": ts(st.submitted_at),
        "end_time": ts(st.finished_at) if st.state.terminal else None,
        "metadata": meta,
        "runtime_env": job.spec.runtime_env or None,
        "driver_agent_http_address": None,
        "driver_node_id": None,
        "driver_exit_code": None,
    }


def job_from_request(body: dict[str, Any], caller: Principal, fleet: Fleet) -> TrainJob:
    """A Ray JobSubmitRequest -> a TrainJob spec. Raises SpecError naming the request field."""
    if not isinstance(body, dict):
        raise SpecError(FieldProblem(field="(body)", problem="expected a JSON object"))
    unknown = sorted(set(body) - _SUBMIT_FIELDS)
    if unknown:
        raise SpecError([FieldProblem(field=k, problem="unknown field") for k in unknown])
    entrypoint = body.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise SpecError(FieldProblem(field="entrypoint", problem="required: the command to run"))
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise SpecError(FieldProblem(field="metadata", problem="expected an object of strings"))
    queue = metadata.get("queue") or fleet.default_queue(caller)
    resources: dict[str, Any] = {}
    problems: list[FieldProblem] = []

    def number(field: str) -> float | None:
        v = body.get(field)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            problems.append(FieldProblem(field=field, problem=f"must be a non-negative number, got {v!r}"))
            return None
        return v

    cpus, gpus, mem = number("entrypoint_num_cpus"), number("entrypoint_num_gpus"), number("entrypoint_memory")
    if cpus:
        resources[CPU] = f"{round(cpus * 1000)}m"
    if gpus:
        resources[GPU] = gpus
    if mem:
        resources[MEMORY] = int(mem)
    accelerator = metadata.get("accelerator")
    custom = body.get("entrypoint_resources") or {}
    if not isinstance(custom, dict):
        problems.append(FieldProblem(field="entrypoint_resources", problem="expected an object of resource -> amount"))
        custom = {}
    ray_accel = {a.ray_type: a.value for a in Accelerator}
    for key, amount in custom.items():
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            problems.append(FieldProblem(field=f"entrypoint_resources.{key}", problem=f"must be a non-negative number, got {amount!r}"))
        elif key == "TPU" or key == TPU:
            resources[TPU] = amount
        elif key == GPU:
            resources[GPU] = amount
        elif key.startswith("accelerator_type:") and key.split(":", 1)[1] in ray_accel:
            accelerator = accelerator or ray_accel[key.split(":", 1)[1]]
        else:
            problems.append(FieldProblem(field=f"entrypoint_resources.{key}", problem=(
                "unknown resource; rayfleet understands TPU, nvidia.com/gpu, google.com/tpu and accelerator_type:<"
                + "|".join(ray_accel) + ">")))
    if problems:
        raise SpecError(problems)
    workers = metadata.get("workers", 1)
    submission_id = body.get("submission_id") or body.get("job_id") or f"raysubmit_{secrets.token_hex(8)}"
    spec: dict[str, Any] = {
        "entrypoint": entrypoint,
        "queue": queue,
        "gang": {"workers": workers, "resourcesPerWorker": resources or {CPU: "100m"}},
        "runtimeEnv": body.get("runtime_env") or {},
        "labels": {k: str(v) for k, v in metadata.items() if k in ("team", "cost-center", "experiment")},
    }
    if metadata.get("priority"):
        spec["priorityClass"] = metadata["priority"]
    if accelerator:
        spec["gang"]["accelerator"] = accelerator
    if metadata.get("placement"):
        spec["gang"]["placementStrategy"] = metadata["placement"]
    # Ray Jobs never retry a failed entrypoint; keep that unless the submitter asks for restarts.
    spec["failurePolicy"] = {"maxRestarts": metadata.get("maxRestarts", 0)}
    try:
        return TrainJob.model_validate({
            "metadata": {"name": submission_id, "annotations": {str(k): str(v) for k, v in metadata.items()}},
            "spec": spec,
        })
    except pydantic.ValidationError as e:
        from ..config import pydantic_problems

        raise _translate(SpecError(pydantic_problems(e, file=None, document=None)), body) from None


# TrainJob field -> the Ray JobSubmitRequest field it came from (prefixes; the longest match wins).
_REQUEST_FIELDS = {
    "metadata.name": "submission_id",
    "spec.queue": "metadata.queue",
    "spec.priorityClass": "metadata.priority",
    "spec.gang.workers": "metadata.workers",
    "spec.gang.accelerator": "metadata.accelerator",
    "spec.gang.placementStrategy": "metadata.placement",
    "spec.runtimeEnv": "runtime_env",
    "spec.failurePolicy.maxRestarts": "metadata.maxRestarts",
}
# The gang's resources come from whichever of these the request set (first one present).
_RESOURCE_FIELDS = ("entrypoint_resources", "entrypoint_num_gpus", "entrypoint_num_cpus", "entrypoint_memory")


def request_field(field: str, body: dict[str, Any]) -> str:
    """The Ray request's name for a TrainJob field (``spec.gang.workers`` -> ``metadata.workers``)."""
    if field.startswith("spec.gang.resourcesPerWorker"):
        source = next((f for f in _RESOURCE_FIELDS if body.get(f)), "entrypoint_resources")
        rest = field[len("spec.gang.resourcesPerWorker"):]
        return source + (rest if source == "entrypoint_resources" else "")
    for ours in sorted(_REQUEST_FIELDS, key=len, reverse=True):
        if field == ours or field.startswith(ours + ".") or field.startswith(ours + "["):
            return _REQUEST_FIELDS[ours] + field[len(ours):]
    return field


def _translate(err: SpecError, body: dict[str, Any]) -> SpecError:
    """The same problems, each naming the Ray request field it came from."""
    return SpecError([FieldProblem(field=request_field(p.field, body), problem=p.problem) for p in err.problems])


@router.get("/api/version", include_in_schema=True, tags=["ray-jobs"], summary="Ray Jobs API: version handshake")
def version() -> dict[str, Any]:
    return {"version": CURRENT_VERSION, "ray_version": ray.__version__, "ray_commit": ray.__commit__, "session_name": "rayfleet"}


@router.get("/api/packages/{protocol}/{package_name}", tags=["ray-jobs"], summary="Ray Jobs API: does an uploaded package exist")
def package_exists(protocol: str, package_name: str, request: Request) -> Response:
    principal(request)
    if not _fleet(request).has_package(f"{protocol}://{package_name}"):
        return Response(f"Package {protocol}://{package_name} does not exist", status_code=404)
    return Response(status_code=200)


@router.put("/api/packages/{protocol}/{package_name}", tags=["ray-jobs"], summary="Ray Jobs API: upload a working_dir / py_modules package")
async def upload_package(protocol: str, package_name: str, request: Request) -> Response:
    principal(request)
    if protocol != "gcs":
        return Response(f"unsupported package protocol {protocol!r}; expected gcs", status_code=400)
    data = await request.body()
    try:
        _fleet(request).store_package(f"{protocol}://{package_name}", data)
    except RayfleetError as e:
        return _text_error(e)
    return Response(status_code=200)


@router.post("/api/jobs/", tags=["ray-jobs"], summary="Ray Jobs API: submit")
async def submit(request: Request) -> Response:
    fleet = _fleet(request)
    try:
        caller = principal(request)
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as e:
            raise SpecError(FieldProblem(field="(body)", problem=f"malformed JSON: {e}")) from None
        job = job_from_request(body, caller, fleet)
        try:
            fleet.submit_job(job, caller)
        except SpecError as e:
            raise _translate(e, body) from None
    except RayfleetError as e:
        return _text_error(e)
    return JSONResponse({"job_id": job.name, "submission_id": job.name})


def _answer(request: Request, job_id: str, action) -> Response:
    """Run ``action(fleet, caller)`` for one job and answer as Ray's dashboard does: the JSON
    result, 404 text for an unknown job, and the error's text with its status otherwise."""
    try:
        return JSONResponse(action(_fleet(request), principal(request)))
    except NotFound:
        return Response(f"Job {job_id} does not exist", status_code=404)
    except RayfleetError as e:
        return _text_error(e)


@router.get("/api/jobs/", tags=["ray-jobs"], summary="Ray Jobs API: list")
def list_jobs(request: Request) -> Response:
    def action(fleet: Fleet, caller: Principal):
        return [_details(r.doc) for r in fleet.store.list("TrainJob", team=None if caller.admin else caller.team)]  # type: ignore[arg-type]

    return _answer(request, "", action)


@router.get("/api/jobs/{job_id}", tags=["ray-jobs"], summary="Ray Jobs API: status")
def job_info(job_id: str, request: Request) -> Response:
    return _answer(request, job_id, lambda fleet, caller: _details(fleet.get_job(job_id, caller).doc))  # type: ignore[arg-type]


@router.post("/api/jobs/{job_id}/stop", tags=["ray-jobs"], summary="Ray Jobs API: stop")
def stop(job_id: str, request: Request) -> Response:
    def action(fleet: Fleet, caller: Principal):
        if fleet.get_job(job_id, caller).doc.status.state.terminal:  # type: ignore[attr-defined]
            return {"stopped": False}
        fleet.stop_job(job_id, caller)
        return {"stopped": True}

    return _answer(request, job_id, action)


@router.delete("/api/jobs/{job_id}", tags=["ray-jobs"], summary="Ray Jobs API: delete a finished job")
def delete(job_id: str, request: Request) -> Response:
    def action(fleet: Fleet, caller: Principal):
        fleet.delete_job(job_id, caller)
        return {"deleted": True}

    return _answer(request, job_id, action)


@router.get("/api/jobs/{job_id}/logs", tags=["ray-jobs"], summary="Ray Jobs API: logs")
def logs(job_id: str, request: Request) -> Response:
    return _answer(request, job_id, lambda fleet, caller: {"logs": fleet.job_logs(job_id, caller)})


@router.websocket("/api/jobs/{job_id}/logs/tail")
async def tail(websocket: WebSocket, job_id: str) -> None:
    """``ray job logs --follow`` / ``ray job submit`` (without --no-wait): stream new log text until
    the job ends. Waiting in the queue is shown as it changes."""
    fleet: Fleet = websocket.app.state.fleet
    token = bearer_token(websocket)  # type: ignore[arg-type]
    found = fleet.store.check_token(token) if token else None
    if found is None:
        await websocket.close(code=4401)
        return
    caller = Principal(found.team, found.admin, found.label)
    try:
        fleet.get_job(job_id, caller)
    except RayfleetError:
        await websocket.close(code=4404)
        return
    await websocket.accept()
    sent, last_note = 0, ""
    try:
        while True:
            job: TrainJob = fleet.store.get("TrainJob", job_id).doc  # type: ignore[assignment]
            text = await asyncio.to_thread(fleet.job_logs, job_id, caller)
            if job.status.state in (JobState.QUEUED, JobState.ADMITTED) and job.status.message != last_note:
                last_note = job.status.message
                await websocket.send_text(f"[rayfleet] {job.status.state.value}: {last_note}\n")
            if len(text) < sent:  # logs of a new attempt replaced the live view
                sent = 0
            if len(text) > sent:
                await websocket.send_text(text[sent:])
                sent = len(text)
            if job.status.state.terminal:
                break
            if job.status.state in (JobState.STARTING, JobState.RUNNING) and job.status.attempt:
                # The run may have ended before the controller's next pass: have it look now, so
                # the follower learns the end as soon as Ray does.
                run = await asyncio.to_thread(fleet.backend.run_status, f"{job_id}-{job.status.attempt}")
                if run is not None and run.state.terminal:
                    fleet.controller.wake()
            await asyncio.sleep(0.25)
        await websocket.close()
    except WebSocketDisconnect:
        return
