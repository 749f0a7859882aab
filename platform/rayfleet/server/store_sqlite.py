"""The SQLite engine of the store: one file under the data directory, WAL, ``synchronous=FULL``.

The embedded default (a laptop, CI, one control-service process). One writer connection, used
under the store's lock, and :data:`READERS` read-only connections beside it: WAL readers never
wait for the writer's commits. :class:`~.storage_guard.StorageGuard` turns the file's faults
(deleted, replaced, read-only, full) into HTTP 503. The schema is :data:`MIGRATIONS`; the
PostgreSQL engine (:mod:`.store_postgres`) keeps the same version numbers.
"""

from __future__ import annotations

import queue
import sqlite3
from pathlib import Path
from urllib.parse import quote

from .shared_bytes import SCHEMA as SHARED_BYTES_SCHEMA
from .storage_guard import StorageGuard

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
    # 2: uids (metadata.uid): a new object with an old name sees nothing of the old one's events
    """
    ALTER TABLE objects ADD COLUMN uid TEXT;
    ALTER TABLE events ADD COLUMN uid TEXT;
    CREATE INDEX events_by_uid ON events (kind, name, uid, id);
    """,
    # 3: quarantine: stored records that no longer decode, kept aside with their raw body
    """
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        team TEXT,
        uid TEXT,
        state TEXT,
        body TEXT NOT NULL,
        error TEXT NOT NULL,
        resource_version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        quarantined_at REAL NOT NULL
    );
    CREATE INDEX quarantine_by_object ON quarantine (kind, name, id);
    """,
    # 4: packages are owned: one row per (uri, owner team), the SHA-256 of the bytes (the blob's
    # name on disk), whether the bytes match Ray's hash in the name. Uploads made before this
    # had no owner; they stay in packages_v1 until a team that runs them adopts them.
    """
    ALTER TABLE packages RENAME TO packages_v1;
    CREATE TABLE packages (
        uri TEXT NOT NULL,
        team TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        verified INTEGER NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (uri, team)
    );
    CREATE INDEX packages_by_team ON packages (team);
    """,
    # 5: the controller's reads by state (QUEUED, LAUNCHED, ...) walk only the rows in those states,
    # in submission order: on (kind, seq) they walked every object of the kind, finished ones too,
    # so a pass cost more as finished jobs piled up
    """
    CREATE INDEX objects_by_kind_state_seq ON objects (kind, state, seq);
    DROP INDEX objects_by_kind_state;
    """,
    # 6: a queue's heads: the controller reads, per queue and priority class, the first few jobs in
    # a state (QUEUED) in submission order, never the whole backlog ('' = no priority class)
    """
    ALTER TABLE objects ADD COLUMN queue TEXT;
    ALTER TABLE objects ADD COLUMN priority_class TEXT NOT NULL DEFAULT '';
    UPDATE objects SET queue = json_extract(body, '$.spec.queue'),
                       priority_class = COALESCE(json_extract(body, '$.spec.priorityClass'), '') WHERE json_valid(body);
    CREATE INDEX objects_by_queue ON objects (kind, state, queue, priority_class, seq);
    """,
    # 7: leases: which control-service replica leads (runs the controller), and its generation,
    # which fences the writes of a replica that lost the lease (server/leases.py)
    """
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        generation INTEGER NOT NULL,
        renewals INTEGER NOT NULL,
        acquired_at REAL NOT NULL,
        renewed_at REAL NOT NULL
    );
    """,
    # 8: cordoned clusters (several Cluster documents): no new work; ``drain``: their work moves
    """
    CREATE TABLE cluster_cordons (
        name TEXT PRIMARY KEY,
        drain INTEGER NOT NULL,
        reason TEXT NOT NULL,
        auto INTEGER NOT NULL,
        since REAL NOT NULL
    );
    """,
    # 9: what every replica must read, in the store rather than in one replica's data directory:
    # the logs saved at the end of each attempt, and the bytes of uploaded packages (by SHA-256)
    SHARED_BYTES_SCHEMA.format(blob="BLOB"),
]

#: Read-only connections beside the writer's: reads of that many threads at once run in parallel
#: with each other and with the writer's transactions (WAL); more wait for the writer's connection.
READERS = 8


class SqliteEngine:
    """The connections to one SQLite file; the store's SQL runs on them as it is written."""

    name = "sqlite"
    migrations = MIGRATIONS
    storage_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.guard = StorageGuard(self.path)  # storage faults -> StorageUnavailable (503)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()   # read connections not in use
        self._reader_conns: list[sqlite3.Connection] = []

    def describe(self) -> str:
        return str(self.path)

    def indexed_by(self, index: str) -> str:
        """The clause that names the index a query must use (SQLite's planner, left alone, picks
        the index of the ORDER BY and walks every row of the kind)."""
        return f" INDEXED BY {index}"

    def lock_kind(self, db: sqlite3.Connection, kind: str) -> None:
        """Creates of ``kind`` one at a time (their seq is MAX + 1): BEGIN IMMEDIATE already does it."""

    def for_share(self) -> str:
        """No row locks: BEGIN IMMEDIATE holds the whole database's write lock already."""
        return ""

    def lock_schema(self, db: sqlite3.Connection) -> None:
        """Migrations one at a time: BEGIN IMMEDIATE already does it."""

    def begin(self) -> sqlite3.Connection:
        """Open a write transaction on the writer's connection (after the guard's file checks)."""
        self.guard.begin(self.db)
        return self.db

    def end(self, exc: BaseException | None) -> None:
        self.guard.end(self.db, exc)

    def translate(self, exc: BaseException) -> Exception | None:
        return self.guard.translate(exc) if isinstance(exc, sqlite3.Error) else None

    def open_readers(self) -> None:
        """The read-only connections, opened once, after the migrations, with the writer's, so that
        the store never opens its file again while it runs (a storage fault later, a file replaced,
        deleted or remounted, does not change which file the readers read: the one the writer has open)."""
        for _ in range(READERS):
            conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True, check_same_thread=False, timeout=30)
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()   # opens the -wal and -shm files now, not at a first read later
            self._reader_conns.append(conn)
            self._readers.put(conn)

    def read(self, query: str, args: tuple | list) -> list[tuple] | None:
        """A read of what is committed on a free read connection; None when every one is busy or
        the one taken failed (the storage in trouble): the writer's connection answers then."""
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            return None
        try:
            return conn.execute(query, args).fetchall()
        except sqlite3.OperationalError:
            return None
        finally:
            self._readers.put(conn)

    def close(self) -> None:
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()
        self.db.close()
