"""Typed errors. Every error that comes from bad input names the field it is about.

The HTTP layer maps ``http_status``; the CLI maps every :class:`RayfleetError` that is
the user's fault (4xx) to exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of one document."""

    field: str
    problem: str
    file: str | None = None
    document: str | None = None  # "Kind/name"

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, self.document) if p)
        return f"{where}: {self.field}: {self.problem}" if where else f"{self.field}: {self.problem}"

    def as_dict(self) -> dict[str, str | None]:
        return {"file": self.file, "document": self.document, "field": self.field, "problem": self.problem}


class RayfleetError(Exception):
    """Base class. ``http_status`` is what the REST API answers."""

    http_status = 500

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict:
        return {"error": type(self).__name__, "message": self.message, "field": self.field}


class SpecError(RayfleetError):
    """Bad input: one or more fields of a spec, request or config file are wrong."""

    http_status = 422

    def __init__(self, problems: list[FieldProblem] | FieldProblem):
        if isinstance(problems, FieldProblem):
            problems = [problems]
        self.problems = list(problems)
        first = self.problems[0] if self.problems else None
        super().__init__("\n".join(str(p) for p in self.problems), field=first.field if first else None)

    def as_dict(self) -> dict:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "field": self.field,
            "problems": [p.as_dict() for p in self.problems],
        }


class ConfigError(SpecError):
    """A cluster config file is wrong (syntax, schema or cross-references)."""


class NotFound(RayfleetError):
    http_status = 404


class Conflict(RayfleetError):
    """The object changed under you (stale resource version) or already exists differently."""

    http_status = 409


class Unauthorized(RayfleetError):
    http_status = 401


class Forbidden(RayfleetError):
    http_status = 403


class CapacityError(RayfleetError):
    """The machine or cluster cannot hold what was asked (e.g. more simulated hosts than fit)."""

    http_status = 409


class BackendError(RayfleetError):
    """The backend (local Ray, KubeRay) failed to do what it was asked."""

    http_status = 502


class StorageUnavailable(RayfleetError):
    """The database cannot take writes: its file is missing, replaced, read-only, full or failing,
    or its PostgreSQL server cannot be reached. ``reason`` is one word (missing, replaced,
    read-only, full, io-error, corrupt, unreachable)."""

    http_status = 503

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def as_dict(self) -> dict:
        return {**super().as_dict(), "reason": self.reason}


class NotLeader(RayfleetError):
    """This control-service replica does not hold the lease it acts under (another replica took
    it over): the write is refused and rolled back (server/leases.py)."""

    http_status = 503


class StartupRefused(RayfleetError):
    """The service will not start as asked (e.g. a new database over an old one's state); the
    operator must act or say so (CLI exit code 2)."""

    http_status = 409


def is_user_error(err: BaseException) -> bool:
    """True for errors caused by the caller's input (CLI exit code 2)."""
    return isinstance(err, RayfleetError) and 400 <= err.http_status < 500
