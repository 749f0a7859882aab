"""The FastAPI application: rayfleet's REST API, the Ray Jobs API, /metrics and /healthz."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..version import __version__
from . import errors_http, ray_jobs_api, routes, tokens_api
from .auth import principal
from .fleet import Fleet
from .limits import BodyLimits


def health(fleet: Fleet) -> str | None:
    """None when the service is healthy, else one word: ``storage`` (the database cannot take
    writes, see ``storage_guard``), ``backend`` (the controller's last pass failed talking to the
    backend) or ``controller`` (its last pass failed otherwise). The full error is in the log."""
    if fleet.store.guard.health() is not None:
        return "storage"
    error = fleet.controller.last_error
    if error is None:
        return None
    kind = error.split(":", 1)[0]  # the controller keeps "<ExceptionType>: <message>"
    return {"StorageUnavailable": "storage", "BackendError": "backend"}.get(kind, "controller")


def create_app(fleet: Fleet, *, start_controller: bool = True, metrics_public: bool = False) -> FastAPI:
    """``metrics_public``: serve ``/metrics`` without a token (``rayfleet serve --metrics-public``);
    by default it needs an admin token, as it shows every team's jobs and cost."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_controller:
            fleet.start()
        try:
            yield
        finally:
            fleet.stop()

    app = FastAPI(
        title="rayfleet",
        version=__version__,
        description=(
            "Control service of rayfleet: quota-admitted Ray Train gangs and multi-host Ray Serve "
            "replicas. `/api/v1` is rayfleet's own API; `/api/jobs/` and `/api/packages/` speak Ray's "
            "job submission API, so `ray job submit --address` works unchanged. Every call needs a "
            "bearer token (`Authorization: Bearer <token>`)."
        ),
        lifespan=lifespan,
    )
    app.state.fleet = fleet
    app.add_middleware(BodyLimits)  # body caps (413) and strict JSON numbers (422), before any route
    errors_http.install(app)
    app.include_router(routes.router)
    app.include_router(ray_jobs_api.router)
    app.include_router(tokens_api.router)

    @app.get("/healthz", summary=("Health: 200 {status: ok, role}, or 503 {status: unhealthy, reason: storage|controller|backend, role}; "
                                  "role: leader or follower among replicas sharing a store, single otherwise"),
             tags=["ops"], responses={503: {"description": "unhealthy; the reason in one word, the full error in the log"}})
    def healthz() -> Response:
        reason = health(fleet)
        if reason is None:
            return JSONResponse({"status": "ok", "role": fleet.role()})
        return JSONResponse({"status": "unhealthy", "reason": reason, "role": fleet.role()}, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["ops"],
             summary="Prometheus metrics (admin bearer token, unless the service runs with --metrics-public)")
    def metrics(request: Request) -> Response:
        from .metrics import render

        if not metrics_public:
            principal(request).require_admin("/metrics")

        body, content_type = render(fleet)
        return Response(body, media_type=content_type)

    return app
