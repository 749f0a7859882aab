"""Request limits at the edge: body caps and a strict JSON decoder.

:class:`BodyLimits` is an ASGI middleware in front of both APIs. It reads the body of every
POST/PUT/PATCH before the app does, counting bytes whatever Content-Length says (chunked bodies
included), and answers 413 naming the limit once a body passes its cap
(``limits.JSON_BODY_MAX_BYTES`` for the JSON APIs, ``limits.PACKAGE_BODY_MAX_BYTES`` for package
uploads). A JSON body that nests deeper than ``limits.JSON_DEPTH_MAX``, uses the non-standard constants ``Infinity``, ``-Infinity`` or ``NaN``
(Python's json accepts them), a number too large for a float (``1e999``) or a number literal longer
than ``limits.JSON_NUMBER_MAX_CHARS`` gets a 422 naming the field.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

from ..api import limits
from ..errors import FieldProblem, SpecError


class _Refused:
    """Stands in for a number the strict decoder refuses; ``why`` says what it was."""

    __slots__ = ("why",)

    def __init__(self, why: str):
        self.why = why


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a JSON number; numbers must be finite")


def _float(text: str) -> float | _Refused:
    if len(text) > limits.JSON_NUMBER_MAX_CHARS:
        return _Refused(f"number literal of {len(text)} characters; at most {limits.JSON_NUMBER_MAX_CHARS}")
    value = float(text)
    if not math.isfinite(value):
        return _Refused(f"{text} is out of range of a finite number")
    return value


def _int(text: str) -> int | _Refused:
    if len(text) > limits.JSON_NUMBER_MAX_CHARS:
        return _Refused(f"number literal of {len(text)} characters; at most {limits.JSON_NUMBER_MAX_CHARS}")
    return int(text)


def _find_refused(value: Any, path: tuple[str, ...], out: list[FieldProblem]) -> None:
    if len(path) > limits.JSON_DEPTH_MAX:
        out.append(FieldProblem(field=".".join(path[:limits.JSON_DEPTH_MAX]), problem=f"nested deeper than {limits.JSON_DEPTH_MAX} levels"))
    elif isinstance(value, _Refused):
        out.append(FieldProblem(field=".".join(path) or "(body)", problem=value.why))
    elif isinstance(value, dict):
        for k, v in value.items():
            _find_refused(v, (*path, str(k)), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _find_refused(v, (*path, str(i)), out)


def decode_json(body: bytes | str) -> Any:
    """Standard JSON only. Raises SpecError naming the field of a non-finite or overlong number
    (``(body)`` for the top level), and ValueError for text that is not JSON at all."""
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise SpecError(FieldProblem(field="(body)", problem=f"nested deeper than {limits.JSON_DEPTH_MAX} levels")) from None
    problems: list[FieldProblem] = []
    _find_refused(value, (), problems)
    if problems:
        raise SpecError(problems)
    return value


# ---------------------------------------------------------------- the middleware


def _is_package(path: str) -> bool:
    return path.startswith("/api/packages/")


def _is_ray_api(path: str) -> bool:
    return path.startswith("/api/jobs") or _is_package(path)


def _cap(path: str) -> tuple[int, str]:
    if _is_package(path):
        return limits.PACKAGE_BODY_MAX_BYTES, "package uploads"
    return limits.JSON_BODY_MAX_BYTES, "JSON API requests"


def _mib(n: int) -> str:
    return f"{n / limits.MIB:g} MiB"


class BodyLimits:
    """ASGI middleware: caps request bodies (413) and refuses non-standard JSON numbers (422)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        cap, what = _cap(path)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._answer(send, path, 400, "(body)", f"Content-Length {declared[:40]!r} is not a byte count")
                return
            if int(declared) > cap:
                await self._too_large(send, path, cap, what)
                return
        chunks: deque[dict] = deque()
        size, disconnected = 0, False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                chunks.append(message)
                disconnected = True
                break
            size += len(message.get("body", b""))
            if size > cap:
                await self._too_large(send, path, cap, what)
                return
            chunks.append(message)
            if not message.get("more_body", False):
                break
        if not disconnected and not _is_package(path) and size:
            body = b"".join(m.get("body", b"") for m in chunks)
            ctype = headers.get("content-type", "")
            if "json" in ctype or path.startswith("/api/jobs") or not ctype:
                try:
                    decode_json(body)
                except SpecError as e:
                    await self._answer(send, path, 422, None, None, error=e)
                    return
                except ValueError:
                    pass  # not JSON at all: the route says so in its own words
            chunks = deque([{"type": "http.request", "body": body, "more_body": False}])

        async def replay():
            if chunks:
                return chunks.popleft()
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send, path: str, cap: int, what: str) -> None:
        message = f"request body is over the limit of {cap} bytes ({_mib(cap)}) for {what}"
        await self._answer(send, path, 413, "(body)", message, limit=cap)

    async def _answer(self, send, path: str, status: int, field: str | None, message: str | None,
                      *, error: SpecError | None = None, limit: int | None = None) -> None:
        if error is None:
            error = SpecError(FieldProblem(field=field or "(body)", problem=message or ""))
        if _is_ray_api(path):  # the Ray SDK prints the body of a failed request as text
            body, ctype = error.message.encode(), b"text/plain; charset=utf-8"
        else:
            doc = error.as_dict()
            if status == 413:
                doc["error"] = "PayloadTooLarge"
                doc["limit"] = limit
            body, ctype = json.dumps(doc).encode(), b"application/json"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
