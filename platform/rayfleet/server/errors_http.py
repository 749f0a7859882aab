"""Error responses: every 4xx names the field and the problem; nothing the caller sent gives a 5xx."""

from __future__ import annotations

import json

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..config import error_problems, pydantic_problems
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
        # A typed body is reported as a document is (pydantic_problems' wording), its fields as the
        # caller wrote them; query and path parameters keep FastAPI's words.
        problems = []
        for e in exc.errors():
            loc = tuple(e.get("loc", ()))
            if e.get("type") == "json_invalid":
                msg = f"malformed JSON: {e.get('ctx', {}).get('error', e.get('msg', 'invalid'))}"
                problems.append(FieldProblem(field=".".join(str(p) for p in _loc_to_path(loc)) or "(body)", problem=msg))
            elif loc and loc[0] == "body":
                problems += error_problems([{**e, "loc": _loc_to_path(loc)}], file=None, document=None, whole="(body)")
            else:
                problems.append(FieldProblem(field=".".join(str(p) for p in loc) or "(body)", problem=e.get("msg", "invalid")))
        err = SpecError(problems or [FieldProblem(field="(body)", problem="invalid request")])
        return JSONResponse(json.loads(json.dumps(err.as_dict(), default=str)), status_code=422)
