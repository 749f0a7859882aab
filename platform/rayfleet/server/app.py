"""The FastAPI application: rayfleet's REST API, the Ray Jobs API, /metrics and /healthz."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from ..version import __version__
from . import errors_http, ray_jobs_api, routes, tokens_api
from .fleet import Fleet


def create_app(fleet: Fleet, *, start_controller: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_controller:
            fleet.start()
        try:
            yield
        finally:
            fleet.controller.stop()

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
    errors_http.install(app)
    app.include_router(routes.router)
    app.include_router(ray_jobs_api.router)
    app.include_router(tokens_api.router)

    @app.get("/healthz", summary="Liveness: the controller loop is turning", tags=["ops"])
    def healthz() -> dict:
        c = fleet.controller
        return {"ok": c.last_error is None, "cycles": c.cycles, "lastError": c.last_error, "backend": fleet.backend.name}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics", tags=["ops"])
    def metrics(request: Request) -> Response:
        from .metrics import render

        body, content_type = render(fleet)
        return Response(body, media_type=content_type)

    return app
