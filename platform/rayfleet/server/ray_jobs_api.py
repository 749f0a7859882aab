"""Ray's job submission REST API, served by rayfleet on its own port.

Ray 2.60's ``ray job submit|status|logs|stop|list|delete`` and ``JobSubmissionClient`` work
unchanged against rayfleet: every submission becomes a TrainJob that goes through the same quota
admission as any other (its gang shape from the entrypoint resources, or from metadata), and only
then reaches Ray. A Ray ``submission_id`` is a TrainJob id.

Metadata keys rayfleet reads (``--metadata-json``): ``queue``, ``priority`` (a priority class),
``workers`` (gang size, default 1), ``accelerator`` (GKE name), ``placement`` (PACK, SPREAD, ...),
``maxRestarts`` (default 0: like Ray, a failed entrypoint is not retried; preemptions always requeue).

Errors read as Ray's CLI shows them: it prints ``Authentication required: <body>`` for a 401 (no
token), ``Authentication failed: <body>`` for a 403 (a token rayfleet does not know, as Ray's
dashboard answers), and ``Request failed with status code N: <body>`` otherwise, so every body is
rayfleet's plain-text message. Another team's job is ``Job X does not exist`` (404), word for word
as a missing one. A refused permission (submitting into another team's queue) is 400, not 403,
which Ray's CLI would present as a bad token. ``entrypoint_label_selector`` is refused when not
empty: rayfleet places the gang on the pool quota admits it to (``metadata.accelerator``, queue).
"""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import Any

import pydantic
import ray
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from ray.dashboard.modules.version import CURRENT_VERSION

from ..api import CPU, GPU, MEMORY, TPU, Accelerator, JobState, TrainJob, TrainJobStatus, limits
from ..backends.base import run_id_for
from ..errors import FieldProblem, Forbidden, NotFound, RayfleetError, SpecError, Unauthorized
from .auth import Principal, UnknownToken, bearer_token, principal, principal_of_token
from .fleet import Fleet
from .limits import decode_json
from .paging import log_tail, tail_items

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
    status = exc.http_status
    if isinstance(exc, UnknownToken):
        status = 403  # Ray's dashboard: no token 401, an invalid one 403
    elif isinstance(exc, Forbidden):
        status = 400  # a 403 would read as a bad token in Ray's CLI
    return Response(exc.message if not isinstance(exc, SpecError) else "\n".join(str(p) for p in exc.problems),
                    status_code=status, media_type="text/plain")


def _exit_code(fleet: Fleet, job: TrainJob) -> int | None:
    """The entrypoint's exit code, where the backend knows it (Ray's ``driver_exit_code``)."""
    if not job.status.state.terminal or not job.status.attempt:
        return None
    try:
        # this job's own run (its uid in the id): never an earlier job's of the same name
        run = fleet.backend.run_status(run_id_for(job.name, job.status.attempt, job.metadata.uid))
    except Exception:  # the cluster is away: the code is unknown, the status still answers
        run = None
    if run is not None and run.exit_code is not None:
        return run.exit_code
    return 0 if job.status.state is JobState.SUCCEEDED else None


def pending_message(st: TrainJobStatus) -> str:
    """A job's message for Ray's job views: a queued job's pending reason code first
    (``WaitingForQuota: insufficient quota; ...``), then its estimated start, as ``ray job status``
    shows it."""
    if st.state == JobState.QUEUED and st.pending_reason is not None:
        when = ""
        if st.estimated_start is not None:
            when = f"; estimated start {st.estimated_start.strftime('%Y-%m-%d %H:%M:%S UTC')} ({st.estimated_start_reason})"
        elif st.estimated_start_reason:
            when = f"; no estimated start: {st.estimated_start_reason}"
        return f"{st.pending_reason.value}: {st.message}{when}"
    return st.message


def _details(job: TrainJob, exit_code: int | None = None) -> dict[str, Any]:
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
        "message": pending_message(st),
        "error_type": None,
        "start_time": ts(st.submitted_at),
        "end_time": ts(st.finished_at) if st.state.terminal else None,
        "metadata": meta,
        "runtime_env": job.spec.runtime_env or {},
        "driver_agent_http_address": None,
        "driver_node_id": None,
        # Ray: 0 after success; a list does not ask the backend, so it knows only that
        "driver_exit_code": exit_code if exit_code is not None else (0 if st.state is JobState.SUCCEEDED else None),
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
    selector = body.get("entrypoint_label_selector")
    if selector not in (None, {}):
        raise SpecError(FieldProblem(field="entrypoint_label_selector", problem=(
            f"rayfleet cannot honour a label selector ({selector!r}): the gang runs on the pool quota admits it to; "
            "choose it with metadata.accelerator and metadata.queue")))
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise SpecError(FieldProblem(field="metadata", problem="expected an object of strings"))
    queue = metadata.get("queue") or fleet.default_queue(caller)
    resources: dict[str, Any] = {}
    problems: list[FieldProblem] = []

    def number(field: str, v: Any, maximum: float) -> float | None:
        """A finite, non-negative amount of at most ``maximum`` (what one worker may ask for)."""
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or (isinstance(v, float) and not math.isfinite(v)):
            problems.append(FieldProblem(field=field, problem=f"must be a finite, non-negative number, got {str(v)[:40]}"))
            return None
        if v > maximum:
            problems.append(FieldProblem(field=field, problem=f"must be at most {maximum:g} (per worker), got {str(v)[:40]}"))
            return None
        return v

    cpus = number("entrypoint_num_cpus", body.get("entrypoint_num_cpus"), limits.PER_HOST_MAX[CPU] / 1000)
    gpus = number("entrypoint_num_gpus", body.get("entrypoint_num_gpus"), limits.PER_HOST_MAX[GPU])
    mem = number("entrypoint_memory", body.get("entrypoint_memory"), limits.PER_HOST_MAX[MEMORY])
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
    for key, given in custom.items():
        amount = number(f"entrypoint_resources.{key}", given, limits.PER_HOST_MAX[TPU])
        if amount is None:
            continue
        if key == "TPU" or key == TPU:
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
        return TrainJob.accept({
            "metadata": {"name": submission_id, "annotations": {str(k): str(v) for k, v in metadata.items()}},
            "spec": spec,
        })
    except pydantic.ValidationError as e:
        from ..config import pydantic_problems

        raise _translate(SpecError(pydantic_problems(e, file=None, document=None)), body) from None


# TrainJob field -> the Ray JobSubmitRequest field it came from (prefixes; the longest match wins).
_REQUEST_FIELDS = {
    "metadata.name": "submission_id",
    "metadata.annotations": "metadata",
    "spec.labels": "metadata",
    "spec.entrypoint": "entrypoint",
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


def _package_error(exc: RayfleetError) -> Response:
    # A bad package name or archive is a 400, as Ray's dashboard answers it.
    resp = _text_error(exc)
    if isinstance(exc, SpecError):
        resp.status_code = 400
    return resp


@router.get("/api/packages/{protocol}/{package_name}", tags=["ray-jobs"], summary="Ray Jobs API: did the caller's team upload this package")
def package_exists(protocol: str, package_name: str, request: Request) -> Response:
    """200 when the caller's team uploaded this package, 404 otherwise (also when another team
    did: Ray's client then uploads it, and the team gets its own copy)."""
    try:
        if not _fleet(request).packages.exists(principal(request).team, f"{protocol}://{package_name}"):
            return Response(f"Package {protocol}://{package_name} does not exist", status_code=404)
    except RayfleetError as e:
        return _package_error(e)
    return Response(status_code=200)


@router.put("/api/packages/{protocol}/{package_name}", tags=["ray-jobs"], summary="Ray Jobs API: upload a working_dir / py_modules package")
async def upload_package(protocol: str, package_name: str, request: Request) -> Response:
    """Keep the package for the caller's team: write-once (the same bytes again are a no-op),
    checked against the hash in its name, within the package size cap and the team's quota."""
    try:
        caller = principal(request)
        data = await request.body()
        await asyncio.to_thread(_fleet(request).packages.upload, caller.team, f"{protocol}://{package_name}", data)
    except RayfleetError as e:
        return _package_error(e)
    return Response(status_code=200)


@router.post("/api/jobs/", tags=["ray-jobs"], summary="Ray Jobs API: submit")
async def submit(request: Request) -> Response:
    fleet = _fleet(request)
    try:
        caller = principal(request)
        try:
            body = decode_json(await request.body() or b"null")
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


@router.get("/api/jobs/", tags=["ray-jobs"], summary="Ray Jobs API: list (the newest 500 jobs, at most 8 MiB; "
            "header X-Rayfleet-Jobs-Total counts them all, GET /api/v1/jobs pages through all)")
def list_jobs(request: Request) -> Response:
    def action(fleet: Fleet, caller: Principal):
        team = None if caller.admin else caller.team

        def every():
            cursor: int | None = 0
            while cursor is not None:
                recs, cursor = fleet.store.page("TrainJob", team=team, states=None, limit=limits.LIST_PAGE_MAX_ITEMS, cursor=cursor)
                yield from (_details(r.doc) for r in recs)  # type: ignore[arg-type]

        items, total[0] = tail_items(every())
        return items

    total = [0]
    response = _answer(request, "", action)
    if response.status_code == 200:
        response.headers["X-Rayfleet-Jobs-Total"] = str(total[0])
    return response


@router.get("/api/jobs/{job_id}", tags=["ray-jobs"], summary="Ray Jobs API: status")
def job_info(job_id: str, request: Request) -> Response:
    def action(fleet: Fleet, caller: Principal):
        job: TrainJob = fleet.get_job(job_id, caller).doc  # type: ignore[assignment]
        return _details(job, _exit_code(fleet, job))

    return _answer(request, job_id, action)


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


@router.get("/api/jobs/{job_id}/logs", tags=["ray-jobs"], summary="Ray Jobs API: logs (the last 1 MiB, after a first line "
            "saying it was cut; GET /api/v1/jobs/{name}/logs pages through all)")
def logs(job_id: str, request: Request) -> Response:
    return _answer(request, job_id, lambda fleet, caller: {"logs": log_tail(fleet.job_logs(job_id, caller))})


@router.websocket("/api/jobs/{job_id}/logs/tail")
async def tail(websocket: WebSocket, job_id: str) -> None:
    """``ray job logs --follow`` / ``ray job submit`` (without --no-wait): stream new log text until
    the job ends. Waiting in the queue is shown as it changes."""
    fleet: Fleet = websocket.app.state.fleet
    # Accept first, then refuse with a close code: a refused handshake is only "403" or "404,
    # message='Invalid response status'" to Ray's CLI. After the close, the CLI asks for the job's
    # status and prints that answer ("Job X does not exist", or the token problem), exiting 1.
    await websocket.accept()
    try:
        caller = principal_of_token(fleet.store, bearer_token(websocket))  # type: ignore[arg-type]
        fleet.get_job(job_id, caller)
    except RayfleetError as e:
        if isinstance(e, NotFound):
            code, reason = 4404, f"Job {job_id} does not exist"
        else:
            code, reason = (4403 if isinstance(e, UnknownToken) else 4401 if isinstance(e, Unauthorized) else 4400), e.message
        await websocket.close(code=code, reason=reason)
        return
    sent, last_note = 0, ""
    try:
        while True:
            job: TrainJob = fleet.store.get("TrainJob", job_id).doc  # type: ignore[assignment]
            text = await asyncio.to_thread(fleet.job_logs, job_id, caller)
            if job.status.state in (JobState.QUEUED, JobState.ADMITTED) and pending_message(job.status) != last_note:
                last_note = pending_message(job.status)
                await websocket.send_text(f"[rayfleet] {job.status.state.value}: {last_note}\n")
            if len(text) < sent:  # logs of a new attempt replaced the live view
                sent = 0
            if len(text) > sent:
                await websocket.send_text(log_tail(text[sent:]))  # one message carries at most the last 1 MiB
                sent = len(text)
            if job.status.state.terminal:
                break
            if job.status.state in (JobState.STARTING, JobState.RUNNING) and job.status.attempt:
                # The run may have ended before the controller's next pass: have it look now, so
                # the follower learns the end as soon as Ray does.
                run = await asyncio.to_thread(fleet.backend.run_status, run_id_for(job_id, job.status.attempt, job.metadata.uid))
                if run is not None and run.state.terminal:
                    fleet.controller.wake()
            await asyncio.sleep(0.25)
        await websocket.close()
    except WebSocketDisconnect:
        return
