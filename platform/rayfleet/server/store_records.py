"""The store's records: what its reads give back (Record, Event, HeadRow, tokens, quarantined
rows), and the columns a document's fields fill (state, uid, queue). No I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..api import Document
from ..errors import Conflict


class Quarantined(Conflict):
    """The stored record of this name did not decode and was moved to the quarantine (admins see it
    at ``GET /api/v1/quarantine``). ``team``: the team the record belonged to."""

    def __init__(self, message: str, *, field: str | None = None, team: str | None = None):
        super().__init__(message, field=field)
        self.team = team


class AnyUid:
    """Marker: no uid filter."""


ANY_UID: Any = AnyUid()


@dataclass(frozen=True)
class QuarantinedRecord:
    id: int
    kind: str
    name: str
    team: str | None
    uid: str | None
    state: str | None
    body: str
    error: str
    resource_version: int
    created_at: float
    quarantined_at: float


@dataclass(frozen=True)
class Record:
    doc: Document
    team: str | None
    resource_version: int
    created_at: float
    updated_at: float

    @property
    def name(self) -> str:
        return self.doc.name


class HeadRow(NamedTuple):
    """A row of :meth:`Store.queue_heads`, not yet decoded (:meth:`Store.decode` takes ``row``)."""

    seq: int
    uid: str | None
    row: tuple  # the columns of ``Store._COLS``

    @property
    def name(self) -> str:
        return self.row[0]

    @property
    def resource_version(self) -> int:
        return self.row[3]


@dataclass(frozen=True)
class Event:
    id: int
    ts: float
    kind: str
    name: str
    type: str
    message: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Token:
    team: str | None
    admin: bool
    label: str


@dataclass(frozen=True)
class TokenRecord:
    """A stored token, never its plaintext: ``id`` is the first 16 hex digits of its hash."""

    id: str
    team: str | None
    admin: bool
    label: str
    created_at: float


TOKEN_ID_LEN = 16


def hash_token(token: str) -> str:
    """Tokens are 256-bit random strings, so one SHA-256 is enough (no password stretching needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def state_of(doc: Document) -> str | None:
    status = getattr(doc, "status", None)
    state = getattr(status, "state", None)
    return None if state is None else str(getattr(state, "value", state))


def uid_of(doc: Document) -> str | None:
    return getattr(doc.metadata, "uid", None)


def queue_of(doc: Document) -> tuple[str | None, str]:
    """(queue, priority class or '') of a queued kind (TrainJob, Service); (None, '') for the others."""
    spec = getattr(doc, "spec", None)
    return getattr(spec, "queue", None), getattr(spec, "priority_class", None) or ""
