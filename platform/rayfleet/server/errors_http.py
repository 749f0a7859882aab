"""Error responses: every 4xx names the field and the problem; nothing the caller sent gives a 5xx."""

from __future__ import annotations

import json

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..config import pydantic_problems
from ..errors import FieldProblem, RayfleetError, SpecError


def _loc_to_path(loc: tuple) -> tuple:
    # FastAPI prefixes body errors with ("body",); keep the path the caller wrote.
    return tuple(loc[1:]) if loc and loc[0] == "body" else tuple(loc)


def install(app: FastAPI) -> None:
    @app.exception_handler(RayfleetError)
    async def rayfleet_error(request: Request, exc: RayfleetError):
        return JSONResponse(exc.as_dict(), status_code=exc.http_status)

    @app.exception_handler(pydantic.ValidationError)
    async def model_error(request: Request, exc: pydantic.ValidationError):
        err = SpecError(pydantic_problems(exc, file=None, document=None))
        return JSONResponse(err.as_dict(), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError):
        problems = []
        for e in exc.errors():
            loc = _loc_to_path(tuple(e.get("loc", ())))
            msg = e.get("msg", "invalid")
            if e.get("type") == "json_invalid":
                msg = f"malformed JSON: {e.get('ctx', {}).get('error', msg)}"
            problems.append(FieldProblem(field=".".join(str(p) for p in loc) or "(body)", problem=msg))
        err = SpecError(problems or [FieldProblem(field="(body)", problem="invalid request")])
        return JSONResponse(json.loads(json.dumps(err.as_dict(), default=str)), status_code=422)
