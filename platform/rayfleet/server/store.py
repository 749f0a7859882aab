"""The store: SQLite (one file under the data directory, the default) or PostgreSQL (a
``postgresql://`` URL: several control-service processes share it), versioned migrations.

The SQL is written once for both engines (:mod:`.store_sqlite`, :mod:`.store_postgres`: the
connections, transactions, storage faults and schema of each). Every object is kept as metadata + spec + status with a resource version (optimistic
concurrency, as Kubernetes does), and every state transition is appended to an event log (the
audit trail, and the source of wait times, MTTR, MTBI and cost). One writer: all writes go
through this class under one lock; each write is one transaction, committed before it returns
(SQLite's ``synchronous=FULL``, PostgreSQL's ``synchronous_commit=on``), so an acknowledged submission survives ``kill -9``; or, inside
:meth:`Store.batch`, part of the batch's one transaction (the controller's decisions of one pass).
Creates that arrive from several threads at once share one transaction (:mod:`.group_commit`).
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydantic

from ..api import ALL_KINDS, Document
from ..api.base import STORED
from ..errors import Conflict, NotFound, NotLeader
from .group_commit import GroupCommit
from .shared_bytes import PackageBlobs
from .store_engines import STORE_ENV, Engine, is_url, open_engine, store_target
from .store_records import (
    ANY_UID,
    TOKEN_ID_LEN,
    AnyUid,
    Event,
    HeadRow,
    Quarantined,
    QuarantinedRecord,
    Record,
    Token,
    TokenRecord,
    hash_token,
    queue_of,
    state_of,
    uid_of,
)
from .store_sqlite import MIGRATIONS

__all__ = ["ANY_UID", "MIGRATIONS", "STORE_ENV", "TOKEN_ID_LEN", "Engine", "Event", "HeadRow", "Quarantined", "QuarantinedRecord",
           "Record", "Store", "Token", "TokenRecord", "hash_token", "is_url", "open_engine", "store_target"]

log = logging.getLogger("rayfleet.store")

#: Documents decoded by shared reads (``Store.list(shared=True)``), or written by shared writes
#: (``Store.update(shared=True)``), the store keeps, by (kind, name), with their stored text; the
#: memo is emptied when it grows past this.
DECODED_MEMO = 20_000


def _check_fence(db: Any, name: str, generation: int, for_share: str) -> None:
    """Inside a write transaction: NotLeader unless lease ``name`` is still at ``generation``."""
    row = db.execute(f"SELECT generation, holder FROM leases WHERE name=?{for_share}", (name,)).fetchone()
    if row is None or row[0] != generation:
        now_held = f"generation {row[0]}, held by {row[1] or 'nobody'}" if row else "no lease"
        raise NotLeader(f"the {name} lease is no longer this replica's (it held generation {generation}; now {now_held}): "
                        "its writes are refused")


class Store:
    """``target``: a SQLite file's path, or a ``postgresql://`` URL. ``clock`` stamps every write
    (created/updated times, events); a caller that drives time itself (the controller pass, a
    simulator) passes ``now`` to each write instead."""

    def __init__(self, target: str | Path, *, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.engine = open_engine(target)
        self.location = self.engine.describe()   # for messages: a path, or the URL without its password
        self._lock = threading.RLock()
        self._batch = False  # a batch (one transaction for many writes) is open, by the lock's holder
        self._decoded: dict[tuple[str, str], tuple[str, Document]] = {}  # (kind, name) -> (body, its document)
        self._fence = threading.local()   # .lease: (name, generation) the writes of this thread are fenced by
        self.creates = GroupCommit(self._lock, self._tx, storage_errors=self.engine.storage_errors)   # concurrent creates share a transaction
        self._migrate()
        self.engine.open_readers()

    @property
    def _db(self) -> Any:
        """The writer's connection (tests of one engine reach into it)."""
        return self.engine.db

    @property
    def guard(self) -> Any:
        """The storage's health: ``guard.health()`` is None, or the reason writes are refused."""
        return self.engine.guard

    # ------------------------------------------------------------ schema

    def _migrate(self) -> None:
        """Apply the migrations this database has not had, each in its own transaction; several
        processes starting on one PostgreSQL database at once migrate it once (a lock)."""
        migrations = self.engine.migrations
        with self._lock:
            with self._tx() as db:
                self.engine.lock_schema(db)   # (PostgreSQL's IF NOT EXISTS is no lock: two creates at once collide)
                db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            while True:
                with self._tx() as db:
                    self.engine.lock_schema(db)
                    row = db.execute("SELECT version FROM schema_version").fetchone()
                    version = row[0] if row else 0
                    if version > len(migrations):
                        raise RuntimeError(f"{self.location}: schema version {version} is newer than this rayfleet ({len(migrations)})")
                    if version == len(migrations):
                        return
                    for statement in migrations[version].split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute("DELETE FROM schema_version")
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))

    @property
    def schema_version(self) -> int:
        return self._q("SELECT version FROM schema_version")[0][0]

    class _Tx:
        def __init__(self, store: Store, *, batch: bool = False):
            self.store = store
            self.batch = batch
            self.nested = False

        def __enter__(self):
            self.store._lock.acquire()
            if self.store._batch:  # a write inside this thread's batch (no other thread has the lock)
                if self.batch:
                    self.store._lock.release()
                    raise RuntimeError("a store batch is already open")
                self.nested = True
                return self.store._db
            try:
                db = self.store.engine.begin()  # BEGIN (IMMEDIATE, on SQLite), after the storage checks
            except BaseException:
                self.store._lock.release()
                raise
            fence = getattr(self.store._fence, "lease", None)
            if fence is not None:
                try:
                    _check_fence(db, *fence, self.store.engine.for_share())
                except BaseException as e:
                    try:
                        self.store.engine.end(e)   # rolled back
                    finally:
                        self.store._lock.release()
                    raise
            self.store._batch = self.batch
            return db

        def __exit__(self, exc_type, exc, tb):
            if self.nested:  # the batch commits, or rolls back if the exception reaches it
                self.store._lock.release()
                return
            try:
                self.store._batch = False
                self.store.engine.end(exc)  # COMMIT or ROLLBACK; storage faults -> 503
            finally:
                self.store._lock.release()

    def _tx(self) -> Store._Tx:
        return Store._Tx(self)

    def batch(self) -> Store._Tx:
        """Every write of the block in one transaction, committed when the block ends (all of it
        rolled back if an exception leaves the block). The caller holds the store's lock for the
        block, so other threads' reads and writes wait for it: keep it to writes, with no I/O between."""
        return Store._Tx(self, batch=True)

    @contextmanager
    def fenced(self, lease: str, generation: int) -> Iterator[None]:
        """Every transaction this thread opens in the block first checks that lease ``lease`` is
        still at ``generation``, and is refused (NotLeader, rolled back) when it is not: a replica
        that lost its lease cannot write decisions (:mod:`.leases`)."""
        before = getattr(self._fence, "lease", None)
        self._fence.lease = (lease, generation)
        try:
            yield
        finally:
            self._fence.lease = before

    def _q(self, query: str, args: tuple | builtins.list = ()) -> builtins.list[tuple]:
        """A read of what is committed, on one of the read connections, beside the writer: it
        never waits for a commit. A thread inside a write transaction reads on the writer's
        connection, so that it sees its own writes; so does a read that finds every read
        connection busy, or whose read connection fails (the storage in trouble)."""
        if not self._holds_writer():
            rows = self.engine.read(query, args)
            if rows is not None:
                return rows
        with self._lock:
            try:
                return self._db.execute(query, args).fetchall()  # type: ignore[no-any-return]
            except self.engine.storage_errors as e:
                if self._batch or not (fault := self.engine.translate(e)):
                    raise
                raise fault from e

    def _holds_writer(self) -> bool:
        """This thread holds the writer's lock: it is inside a write transaction or batch, whose
        reads must see its writes and whose creates are part of it."""
        return self._lock._is_owned()  # type: ignore[attr-defined,no-any-return]  # (the C RLock's)

    def close(self) -> None:
        with self._lock:
            self.engine.close()

    # ------------------------------------------------------------ objects

    _COLS = "name, team, body, resource_version, created_at, updated_at"

    def _decode(self, kind: str, row: tuple, *, shared: bool = False) -> Record | None:
        """A stored row as a Record; a row that no longer decodes is quarantined (None).

        ``shared``: the caller treats the document as read-only, so a row whose stored text is the
        same as at an earlier shared read gives that read's document again instead of parsing and
        validating it again (the controller reads every launched job each pass, most unchanged)."""
        name, team, body, rv, created, updated = row
        if shared:
            hit = self._decoded.get((kind, name))
            if hit is not None and hit[0] == body:   # the same text decodes to the same document
                return Record(hit[1], team, rv, created, updated)
        try:
            doc = ALL_KINDS[kind].model_validate_json(body, context=STORED)   # checked when accepted: only its shape is checked again
        except (pydantic.ValidationError, ValueError) as e:
            self._quarantine(kind, name, body, str(e))
            return None
        if shared:
            self._share(kind, name, body, doc)
        return Record(doc, team, rv, created, updated)

    def _share(self, kind: str, name: str, body: str, doc: Document) -> None:
        if len(self._decoded) >= DECODED_MEMO:
            self._decoded.clear()
        self._decoded[(kind, name)] = (body, doc)

    def _decode_all(self, kind: str, rows: list[tuple], *, shared: bool = False) -> list[Record]:
        return [rec for rec in (self._decode(kind, r, shared=shared) for r in rows) if rec is not None]

    def _quarantine(self, kind: str, name: str, body: str, error: str) -> None:
        """Move an undecodable row aside (raw body kept) with an event; everything else goes on."""
        now = self.clock()
        with self._tx() as db:
            row = db.execute("SELECT team, uid, state, resource_version, created_at FROM objects WHERE kind=? AND name=? AND body=?",
                             (kind, name, body)).fetchone()
            if row is None:  # another reader moved it first, or it was rewritten since
                return
            team, uid, state, rv, created = row
            db.execute(
                "INSERT INTO quarantine (kind, name, team, uid, state, body, error, resource_version, created_at, quarantined_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)", (kind, name, team, uid, state, body, error, rv, created, now))
            db.execute("DELETE FROM objects WHERE kind=? AND name=?", (kind, name))
            self._event(db, now, kind, name, uid, "Quarantined",
                        f"the stored {kind} {name} does not decode and was quarantined: {error.splitlines()[0] if error else ''}",
                        {"error": error})
        log.error("quarantined %s %s: its stored record does not decode: %s", kind, name, error)

    def quarantined(self, kind: str | None = None) -> list[QuarantinedRecord]:
        """Records moved aside because they did not decode, oldest first."""
        q, args = "SELECT id, kind, name, team, uid, state, body, error, resource_version, created_at, quarantined_at FROM quarantine", []
        if kind:
            q += " WHERE kind=?"
            args.append(kind)
        return [QuarantinedRecord(*r) for r in self._q(q + " ORDER BY id", args)]

    def create(self, doc: Document, *, team: str | None = None, event: str | None = "Created", message: str = "",
               now: float | None = None) -> Record:
        """Insert a new object; Conflict if one of that kind and name exists."""
        now = self.clock() if now is None else now
        body = doc.model_dump_json(by_alias=True)
        uid = uid_of(doc)

        def insert(db: Any) -> None:
            self.engine.lock_kind(db, doc.KIND)   # one create of the kind at a time: seq and the name check
            exists = db.execute("SELECT 1 FROM objects WHERE kind=? AND name=?", (doc.KIND, doc.name)).fetchone()
            if exists:
                raise Conflict(f"{doc.KIND} {doc.name!r} already exists", field="metadata.name")
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM objects WHERE kind=?", (doc.KIND,)).fetchone()[0]
            db.execute(
                "INSERT INTO objects (kind, name, team, state, body, resource_version, created_at, updated_at, seq, uid, queue, priority_class) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (doc.KIND, doc.name, team, state_of(doc), body, 1, now, now, seq, uid, *queue_of(doc)),
            )
            if event:
                self._event(db, now, doc.KIND, doc.name, uid, event, message or f"{doc.KIND} {doc.name} created", {})

        if self._holds_writer():   # part of this thread's open batch
            with self._tx() as db:
                insert(db)
        else:   # committed before it returns, in one transaction with the creates queued beside it
            self.creates.run(insert)
        return Record(doc, team, 1, now, now)

    def get(self, kind: str, name: str) -> Record:
        """The object; NotFound, or Quarantined (409) when its stored record did not decode."""
        rows = self._q(f"SELECT {self._COLS} FROM objects WHERE kind=? AND name=?", (kind, name))
        rec = self._decode(kind, rows[0]) if rows else None
        if rec is not None:
            return rec
        q = self._q("SELECT error, team FROM quarantine WHERE kind=? AND name=? ORDER BY id DESC LIMIT 1", (kind, name))
        if q:
            raise Quarantined(f"{kind} {name!r} is quarantined: its stored record does not decode ({q[0][0].splitlines()[0]}); "
                              "an admin sees it at GET /api/v1/quarantine", field="name", team=q[0][1])
        raise NotFound(f"{kind} {name!r} not found", field="name")

    def find(self, kind: str, name: str) -> Record | None:
        """The object, or None (also when only a quarantined record of that name is left)."""
        try:
            return self.get(kind, name)
        except (NotFound, Quarantined):
            return None

    def update(
        self,
        doc: Document,
        *,
        expected_version: int | None = None,
        event: str | None = None,
        message: str = "",
        data: dict[str, Any] | None = None,
        now: float | None = None,
        shared: bool = False,
    ) -> Record:
        """Replace an object (spec and status) and optionally log an event, in one transaction.
        ``shared``: the caller never changes ``doc`` in place again, so shared reads of the record
        may give it back as it is (no decoding of what was just written)."""
        now = self.clock() if now is None else now
        body = doc.model_dump_json(by_alias=True)
        with self._tx() as db:
            row = db.execute("SELECT resource_version, team, created_at, uid FROM objects WHERE kind=? AND name=?", (doc.KIND, doc.name)).fetchone()
            if row is None:
                raise NotFound(f"{doc.KIND} {doc.name!r} not found", field="name")
            rv, team, created, uid = row
            if uid != uid_of(doc):
                raise Conflict(f"{doc.KIND} {doc.name!r} was replaced (uid {uid}, expected {uid_of(doc)}); re-read and retry")
            if expected_version is not None and rv != expected_version:
                raise Conflict(f"{doc.KIND} {doc.name!r} changed (version {rv}, expected {expected_version}); re-read and retry")
            written = db.execute(
                "UPDATE objects SET body=?, state=?, resource_version=?, updated_at=?, queue=?, priority_class=? "
                "WHERE kind=? AND name=? AND resource_version=?",
                (body, state_of(doc), rv + 1, now, *queue_of(doc), doc.KIND, doc.name, rv),
            ).rowcount
            if written != 1:   # another process sharing the database wrote it since the read above
                raise Conflict(f"{doc.KIND} {doc.name!r} changed while it was written; re-read and retry")
            if event:
                self._event(db, now, doc.KIND, doc.name, uid, event, message, data or {})
        if shared:   # a rolled-back write leaves the stored text as it was, which this body then does not match
            self._share(doc.KIND, doc.name, body, doc)
        return Record(doc, team, rv + 1, created, now)

    def delete(self, kind: str, name: str, *, event: str | None = "Deleted", now: float | None = None) -> None:
        now = self.clock() if now is None else now
        with self._tx() as db:
            row = db.execute("SELECT uid FROM objects WHERE kind=? AND name=?", (kind, name)).fetchone()
            if row is None:
                raise NotFound(f"{kind} {name!r} not found", field="name")
            db.execute("DELETE FROM objects WHERE kind=? AND name=?", (kind, name))
            if event:
                self._event(db, now, kind, name, row[0], event, f"{kind} {name} deleted", {})

    def _select(self, kind: str, team: str | None, states: list[str] | None, after: int, limit: int | None,
                newest_first: bool = False) -> list[tuple]:
        # By state: the (kind, state, seq) index, named, since without it SQLite picks (kind, seq) for
        # the ORDER BY and reads every object of the kind, however many have finished.
        index = self.engine.indexed_by("objects_by_kind_state_seq") if states else ""
        q = f"SELECT seq, {self._COLS} FROM objects{index} WHERE kind=? AND seq>?"
        args: list[Any] = [kind, after]
        if team is not None:
            q += " AND team=?"
            args.append(team)
        if states:
            q += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        q += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
        if limit is not None:
            q += " LIMIT ?"
            args.append(limit)
        return self._q(q, args)

    def list(
        self,
        kind: str,
        *,
        team: str | None = None,
        states: builtins.list[str] | None = None,
        after: int = 0,
        limit: int | None = None,
        shared: bool = False,
        newest_first: bool = False,
    ) -> builtins.list[Record]:
        """Objects of a kind in submission order (``newest_first``: the other way); ``after`` is the
        paging cursor (a seq). Records that do not decode are quarantined and left out. ``shared``:
        the caller never changes the documents in place, and gets the same document object for a
        record unchanged since an earlier shared read (no decoding: see ``_decode``)."""
        return self._decode_all(kind, [r[1:] for r in self._select(kind, team, states, after, limit, newest_first)], shared=shared)

    def page(self, kind: str, *, team: str | None, states: builtins.list[str] | None, limit: int, cursor: int) -> tuple[builtins.list[Record], int | None]:
        """One page and the cursor of the next one (None at the end)."""
        rows = self._select(kind, team, states, cursor, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return self._decode_all(kind, [r[1:] for r in rows]), (rows[-1][0] if more and rows else None)

    def count(self, kind: str, states: builtins.list[str] | None = None, *, queue: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM objects WHERE kind=?", [kind]
        if states:
            q += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        if queue is not None:
            q += " AND queue=?"
            args.append(queue)
        return self._q(q, args)[0][0]

    # ------------------------------------------------------------ queue heads

    def queue_groups(self, kind: str, state: str) -> builtins.list[tuple[str, str]]:
        """The (queue, priority class) pairs that have objects of ``kind`` in ``state``: a skip walk
        of the ``objects_by_queue`` index, one seek per pair, however many objects each pair holds."""
        # one column's range at a time: SQLite seeks a row-value range by its first column only
        base = "SELECT {col} FROM objects" + self.engine.indexed_by("objects_by_queue") + " WHERE kind=? AND state=? AND "
        out: builtins.list[tuple[str, str]] = []
        queue = self._q(base.format(col="queue") + "queue IS NOT NULL ORDER BY queue LIMIT 1", (kind, state))
        while queue:
            q = queue[0][0]
            pclass = self._q(base.format(col="priority_class") + "queue=? ORDER BY priority_class LIMIT 1", (kind, state, q))
            while pclass:
                out.append((q, pclass[0][0]))
                pclass = self._q(base.format(col="priority_class") + "queue=? AND priority_class>? ORDER BY priority_class LIMIT 1",
                                 (kind, state, q, pclass[0][0]))
            queue = self._q(base.format(col="queue") + "queue>? ORDER BY queue LIMIT 1", (kind, state, q))
        return out

    def queue_heads(self, kind: str, state: str, queue: str, priority_class: str, *, after: int,
                    limit: int) -> builtins.list[HeadRow]:
        """The first ``limit`` objects of one (queue, priority class) pair in ``state`` after seq
        ``after``, in submission order, not yet decoded (:meth:`decode`)."""
        return [HeadRow(r[0], r[1], r[2:]) for r in self._q(
            f"SELECT seq, uid, {self._COLS} FROM objects{self.engine.indexed_by('objects_by_queue')} "
            "WHERE kind=? AND state=? AND queue=? AND priority_class=? AND seq>? ORDER BY seq LIMIT ?",
            (kind, state, queue, priority_class, after, limit))]

    def decode(self, kind: str, row: tuple, *, shared: bool = False) -> Record | None:
        """A row of :meth:`queue_heads` as a Record (None: it did not decode and was quarantined);
        ``shared`` as for :meth:`list`."""
        return self._decode(kind, row, shared=shared)

    # ------------------------------------------------------------ events

    @staticmethod
    def _event(db: Any, ts: float, kind: str, name: str, uid: str | None, type_: str, message: str, data: dict) -> None:
        db.execute(
            "INSERT INTO events (ts, kind, name, uid, type, message, data) VALUES (?,?,?,?,?,?,?)",
            (ts, kind, name, uid, type_, message, json.dumps(data, default=str)),
        )

    def add_event(self, kind: str, name: str, type_: str, message: str, data: dict[str, Any] | None = None, *,
                  uid: str | None = None, now: float | None = None) -> None:
        with self._tx() as db:
            self._event(db, self.clock() if now is None else now, kind, name, uid, type_, message, data or {})

    def events(self, kind: str | None = None, name: str | None = None, *, uid: str | None = ANY_UID, after: int = 0,
               limit: int = 1000) -> builtins.list[Event]:
        """Events oldest first; ``uid`` keeps those of one object (None: an object stored before uids)."""
        q = "SELECT id, ts, kind, name, type, message, data FROM events WHERE id>?"
        args: builtins.list[Any] = [after]
        if kind:
            q += " AND kind=?"
            args.append(kind)
        if name:
            q += " AND name=?"
            args.append(name)
        if uid is None:
            q += " AND uid IS NULL"
        elif not isinstance(uid, AnyUid):
            q += " AND uid=?"
            args.append(uid)
        q += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in self._q(q, args)]

    def all_events(self, kind: str, name: str, page: int = 1000, *, uid: str | None = ANY_UID) -> builtins.list[Event]:
        """Every event of one object, oldest first (paged, so a long history is read whole)."""
        out: builtins.list[Event] = []
        while True:
            batch = self.events(kind, name, uid=uid, after=out[-1].id if out else 0, limit=page)
            out.extend(batch)
            if len(batch) < page:
                return out

    # ------------------------------------------------------------ tokens

    def add_token(self, token: str, *, team: str | None, admin: bool = False, label: str = "") -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO tokens (hash, team, admin, label, created_at) VALUES (?,?,?,?,?) ON CONFLICT (hash) DO UPDATE "
                "SET team=excluded.team, admin=excluded.admin, label=excluded.label, created_at=excluded.created_at",
                (hash_token(token), team, int(admin), label, self.clock()),
            )

    def add_first_token(self, token: str, *, team: str | None, admin: bool = False, label: str = "") -> bool:
        """Add ``token`` only if there is no admin token yet (``admin``), or no token of ``team``;
        whether it was added. Replicas starting together on a new database mint one each, not one
        per replica (the check and the insert are one transaction, one writer at a time)."""
        with self._tx() as db:
            self.engine.lock_kind(db, "tokens")
            if admin:
                taken = db.execute("SELECT 1 FROM tokens WHERE admin=1 LIMIT 1").fetchone()
            else:
                taken = db.execute("SELECT 1 FROM tokens WHERE admin=0 AND team=? LIMIT 1", (team,)).fetchone()
            if taken:
                return False
            db.execute("INSERT INTO tokens (hash, team, admin, label, created_at) VALUES (?,?,?,?,?)",
                       (hash_token(token), team, int(admin), label, self.clock()))
            return True

    def check_token(self, token: str) -> Token | None:
        rows = self._q("SELECT team, admin, label FROM tokens WHERE hash=?", (hash_token(token),))
        row = rows[0] if rows else None
        return Token(row[0], bool(row[1]), row[2]) if row else None

    def token_count(self) -> int:
        return self._q("SELECT COUNT(*) FROM tokens")[0][0]

    def list_tokens(self) -> builtins.list[TokenRecord]:  # (`list` here is Store.list)
        rows = self._q("SELECT hash, team, admin, label, created_at FROM tokens ORDER BY created_at, hash")
        return [TokenRecord(r[0][:TOKEN_ID_LEN], r[1], bool(r[2]), r[3], r[4]) for r in rows]

    def revoke_token(self, token_id: str) -> TokenRecord | None:
        """Delete the token whose id is ``token_id``; returns what was deleted (None: no such token)."""
        if len(token_id) != TOKEN_ID_LEN or any(c not in "0123456789abcdef" for c in token_id):
            return None
        with self._tx() as db:
            row = db.execute(f"SELECT hash, team, admin, label, created_at FROM tokens WHERE substr(hash, 1, {TOKEN_ID_LEN})=?",
                             (token_id,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM tokens WHERE hash=?", (row[0],))
        return TokenRecord(row[0][:TOKEN_ID_LEN], row[1], bool(row[2]), row[3], row[4])

    # ------------------------------------------------------------ packages (Ray Jobs working_dir uploads)

    def add_package(self, uri: str, team: str, digest: str, size: int, verified: bool, *, quota_bytes: int,
                    data: bytes | None = None) -> tuple[str, int]:
        """Record that ``team`` uploaded ``uri`` (write-once per team), within the team's quota, in
        one transaction, with its bytes ``data`` (kept once per digest, :mod:`.shared_bytes`).
        Returns ``(outcome, bytes the team holds)``; outcome is ``created``, ``same`` (already there
        with this digest), ``different`` (already there with another digest; nothing changed) or
        ``over_quota`` (nothing changed)."""
        with self._tx() as db:
            row = db.execute("SELECT digest FROM packages WHERE uri=? AND team=?", (uri, team)).fetchone()
            used = db.execute("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM packages WHERE team=?", (team,)).fetchone()[0]
            if row is not None:
                return ("same" if row[0] == digest else "different"), used
            if used + size > quota_bytes:
                return "over_quota", used
            if data is not None:
                PackageBlobs.put_in(db, digest, data)
            db.execute("INSERT INTO packages (uri, team, digest, size, verified, created_at) VALUES (?,?,?,?,?,?)",
                       (uri, team, digest, size, int(verified), self.clock()))
            return "created", used + size

    def package(self, uri: str, team: str) -> tuple[str, int, bool] | None:
        """``(digest, size, verified)`` of the package ``team`` uploaded as ``uri``, or None."""
        rows = self._q("SELECT digest, size, verified FROM packages WHERE uri=? AND team=?", (uri, team))
        return (rows[0][0], rows[0][1], bool(rows[0][2])) if rows else None

    def team_packages(self, team: str) -> builtins.list[tuple[str, str, int, float]]:
        """``(uri, digest, size, created_at)`` of every package ``team`` holds, oldest first."""
        return [tuple(r) for r in self._q("SELECT uri, digest, size, created_at FROM packages WHERE team=? ORDER BY created_at, uri", (team,))]  # type: ignore[misc]

    def delete_package(self, uri: str, team: str) -> None:
        """Drop ``team``'s package ``uri``, and its bytes when no other package has them."""
        with self._tx() as db:
            row = db.execute("SELECT digest FROM packages WHERE uri=? AND team=?", (uri, team)).fetchone()
            db.execute("DELETE FROM packages WHERE uri=? AND team=?", (uri, team))
            if row is not None:
                PackageBlobs.drop_unused_in(db, row[0])

    def package_digest_used(self, digest: str) -> bool:
        """Whether any team's package has these bytes (blobs are shared by equal bytes)."""
        return bool(self._q("SELECT 1 FROM packages WHERE digest=? LIMIT 1", (digest,)))

    def legacy_package_path(self, uri: str) -> str | None:
        """Where an upload from before packages had owners was kept (schema 1), or None."""
        rows = self._q("SELECT path FROM packages_v1 WHERE uri=?", (uri,))
        return rows[0][0] if rows else None

    def iter_all(self, kind: str) -> Iterator[Record]:
        yield from self.list(kind)
