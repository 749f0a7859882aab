"""The SQLite store: one file under the data directory, WAL, versioned migrations.

Every object is kept as metadata + spec + status with a resource version (optimistic
concurrency, as Kubernetes does), and every state transition is appended to an event log (the
audit trail, and the source of wait times, MTTR, MTBI and cost). One writer: all writes go
through this class under one lock; each write is one transaction, committed before it returns
(``synchronous=FULL``), so an acknowledged submission survives ``kill -9``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api import ALL_KINDS, Document
from ..errors import Conflict, NotFound

MIGRATIONS: list[str] = [
    # 1: objects, events, tokens, uploaded packages
    """
    CREATE TABLE objects (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        team TEXT,
        state TEXT,
        body TEXT NOT NULL,
        resource_version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE INDEX objects_by_kind_seq ON objects (kind, seq);
    CREATE INDEX objects_by_kind_state ON objects (kind, state);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        type TEXT NOT NULL,
        message TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_object ON events (kind, name, id);
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        team TEXT,
        admin INTEGER NOT NULL,
        label TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE packages (
        uri TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    """,
]


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


def _state_of(doc: Document) -> str | None:
    status = getattr(doc, "status", None)
    state = getattr(status, "state", None)
    return None if state is None else str(getattr(state, "value", state))


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # ------------------------------------------------------------ schema

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > len(MIGRATIONS):
                raise RuntimeError(f"{self.path}: schema version {version} is newer than this rayfleet ({len(MIGRATIONS)})")
            for i in range(version, len(MIGRATIONS)):
                with self._tx():
                    for statement in MIGRATIONS[i].split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute("DELETE FROM schema_version")
                    self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (i + 1,))

    @property
    def schema_version(self) -> int:
        return self._q("SELECT version FROM schema_version")[0][0]

    class _Tx:
        def __init__(self, store: Store):
            self.store = store

        def __enter__(self):
            self.store._lock.acquire()
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type, exc, tb):
            try:
                self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._lock.release()

    def _tx(self) -> Store._Tx:
        return Store._Tx(self)

    def _q(self, query: str, args: tuple | list = ()) -> list[tuple]:
        """A read, under the writer lock so it never sees another thread's open transaction."""
        with self._lock:
            return self._db.execute(query, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------ objects

    @staticmethod
    def _decode(kind: str, row: tuple) -> Record:
        team, body, rv, created, updated = row
        return Record(ALL_KINDS[kind].model_validate_json(body), team, rv, created, updated)

    def create(self, doc: Document, *, team: str | None = None, event: str | None = "Created", message: str = "") -> Record:
        """Insert a new object; Conflict if one of that kind and name exists."""
        now = time.time()
        body = doc.model_dump_json(by_alias=True)
        with self._tx() as db:
            exists = db.execute("SELECT 1 FROM objects WHERE kind=? AND name=?", (doc.KIND, doc.name)).fetchone()
            if exists:
                raise Conflict(f"{doc.KIND} {doc.name!r} already exists", field="metadata.name")
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM objects WHERE kind=?", (doc.KIND,)).fetchone()[0]
            db.execute(
                "INSERT INTO objects (kind, name, team, state, body, resource_version, created_at, updated_at, seq) VALUES (?,?,?,?,?,?,?,?,?)",
                (doc.KIND, doc.name, team, _state_of(doc), body, 1, now, now, seq),
            )
            if event:
                self._event(db, now, doc.KIND, doc.name, event, message or f"{doc.KIND} {doc.name} created", {})
        return Record(doc, team, 1, now, now)

    def get(self, kind: str, name: str) -> Record:
        rows = self._q("SELECT team, body, resource_version, created_at, updated_at FROM objects WHERE kind=? AND name=?", (kind, name))
        row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"{kind} {name!r} not found", field="name")
        return self._decode(kind, row)

    def find(self, kind: str, name: str) -> Record | None:
        try:
            return self.get(kind, name)
        except NotFound:
            return None

    def update(
        self,
        doc: Document,
        *,
        expected_version: int | None = None,
        event: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> Record:
        """Replace an object (spec and status) and optionally log an event, in one transaction."""
        now = time.time()
        body = doc.model_dump_json(by_alias=True)
        with self._tx() as db:
            row = db.execute("SELECT resource_version, team, created_at FROM objects WHERE kind=? AND name=?", (doc.KIND, doc.name)).fetchone()
            if row is None:
                raise NotFound(f"{doc.KIND} {doc.name!r} not found", field="name")
            rv, team, created = row
            if expected_version is not None and rv != expected_version:
                raise Conflict(f"{doc.KIND} {doc.name!r} changed (version {rv}, expected {expected_version}); re-read and retry")
            db.execute(
                "UPDATE objects SET body=?, state=?, resource_version=?, updated_at=? WHERE kind=? AND name=?",
                (body, _state_of(doc), rv + 1, now, doc.KIND, doc.name),
            )
            if event:
                self._event(db, now, doc.KIND, doc.name, event, message, data or {})
        return Record(doc, team, rv + 1, created, now)

    def delete(self, kind: str, name: str, *, event: str | None = "Deleted") -> None:
        now = time.time()
        with self._tx() as db:
            cur = db.execute("DELETE FROM objects WHERE kind=? AND name=?", (kind, name))
            if cur.rowcount == 0:
                raise NotFound(f"{kind} {name!r} not found", field="name")
            if event:
                self._event(db, now, kind, name, event, f"{kind} {name} deleted", {})

    def _select(self, kind: str, team: str | None, states: list[str] | None, after: int, limit: int | None) -> list[tuple]:
        q = "SELECT seq, team, body, resource_version, created_at, updated_at FROM objects WHERE kind=? AND seq>?"
        args: list[Any] = [kind, after]
        if team is not None:
            q += " AND team=?"
            args.append(team)
        if states:
            q += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        q += " ORDER BY seq"
        if limit is not None:
            q += " LIMIT ?"
            args.append(limit)
        return self._q(q, args)

    def list(
        self,
        kind: str,
        *,
        team: str | None = None,
        states: list[str] | None = None,
        after: int = 0,
        limit: int | None = None,
    ) -> list[Record]:
        """Objects of a kind in submission order; ``after`` is the paging cursor (a seq)."""
        return [self._decode(kind, r[1:]) for r in self._select(kind, team, states, after, limit)]

    def page(self, kind: str, *, team: str | None, states: list[str] | None, limit: int, cursor: int) -> tuple[list[Record], int | None]:
        """One page and the cursor of the next one (None at the end)."""
        rows = self._select(kind, team, states, cursor, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return [self._decode(kind, r[1:]) for r in rows], (rows[-1][0] if more and rows else None)

    def count(self, kind: str, states: list[str] | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM objects WHERE kind=?", [kind]
        if states:
            q += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        return self._q(q, args)[0][0]

    # ------------------------------------------------------------ events

    @staticmethod
    def _event(db: sqlite3.Connection, ts: float, kind: str, name: str, type_: str, message: str, data: dict) -> None:
        db.execute(
            "INSERT INTO events (ts, kind, name, type, message, data) VALUES (?,?,?,?,?,?)",
            (ts, kind, name, type_, message, json.dumps(data, default=str)),
        )

    def add_event(self, kind: str, name: str, type_: str, message: str, data: dict[str, Any] | None = None) -> None:
        with self._tx() as db:
            self._event(db, time.time(), kind, name, type_, message, data or {})

    def events(self, kind: str | None = None, name: str | None = None, *, after: int = 0, limit: int = 1000) -> list[Event]:
        q, args = "SELECT id, ts, kind, name, type, message, data FROM events WHERE id>?", [after]
        if kind:
            q += " AND kind=?"
            args.append(kind)
        if name:
            q += " AND name=?"
            args.append(name)
        q += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in self._q(q, args)]

    def all_events(self, kind: str, name: str, page: int = 1000) -> list[Event]:
        """Every event of one object, oldest first (paged, so a long history is read whole)."""
        out: list[Event] = []
        while True:
            batch = self.events(kind, name, after=out[-1].id if out else 0, limit=page)
            out.extend(batch)
            if len(batch) < page:
                return out

    # ------------------------------------------------------------ tokens

    def add_token(self, token: str, *, team: str | None, admin: bool = False, label: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO tokens (hash, team, admin, label, created_at) VALUES (?,?,?,?,?)",
                (hash_token(token), team, int(admin), label, time.time()),
            )

    def check_token(self, token: str) -> Token | None:
        rows = self._q("SELECT team, admin, label FROM tokens WHERE hash=?", (hash_token(token),))
        row = rows[0] if rows else None
        return Token(row[0], bool(row[1]), row[2]) if row else None

    def token_count(self) -> int:
        return self._q("SELECT COUNT(*) FROM tokens")[0][0]

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._q("SELECT hash, team, admin, label, created_at FROM tokens ORDER BY created_at, hash")
        return [TokenRecord(r[0][:TOKEN_ID_LEN], r[1], bool(r[2]), r[3], r[4]) for r in rows]

    def revoke_token(self, token_id: str) -> TokenRecord | None:
        """Delete the token whose id is ``token_id``; returns what was deleted (None: no such token)."""
        if len(token_id) != TOKEN_ID_LEN or any(c not in "0123456789abcdef" for c in token_id):
            return None
        with self._tx() as db:
            row = db.execute("SELECT hash, team, admin, label, created_at FROM tokens WHERE substr(hash, 1, ?)=?",
                             (TOKEN_ID_LEN, token_id)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM tokens WHERE hash=?", (row[0],))
        return TokenRecord(row[0][:TOKEN_ID_LEN], row[1], bool(row[2]), row[3], row[4])

    # ------------------------------------------------------------ packages (Ray Jobs working_dir uploads)

    def add_package(self, uri: str, path: str, size: int) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO packages (uri, path, size, created_at) VALUES (?,?,?,?)", (uri, path, size, time.time()))

    def package_path(self, uri: str) -> str | None:
        rows = self._q("SELECT path FROM packages WHERE uri=?", (uri,))
        return rows[0][0] if rows else None

    def iter_all(self, kind: str) -> Iterator[Record]:
        yield from self.list(kind)
