"""What every control-service replica must read, kept in the store (store migration 9) rather than
in one replica's data directory: the logs saved at the end of each attempt of a job, and the bytes
of uploaded packages. With several replicas on one PostgreSQL database (docs/operations.md) a
follower serves a job's logs the leader saved, and the leader launches a job with a package a
follower took the upload of. Data directories from before migration 9 keep their files: readers
fall back to them (:meth:`JobLogs.read`'s ``legacy``, :class:`rayfleet.server.packages.Packages`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store


#: Store migration 9 on both engines (``blob``: the engine's type for bytes).
SCHEMA = """
    CREATE TABLE job_logs (
        name TEXT NOT NULL,
        uid TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (name, uid, attempt)
    );
    CREATE TABLE package_blobs (
        digest TEXT PRIMARY KEY,
        data {blob} NOT NULL
    )
"""


class JobLogs:
    """Saved logs, one text per (job name, job uid, attempt)."""

    def __init__(self, store: Store):
        self.store = store

    @staticmethod
    def save_in(db: Any, name: str, uid: str | None, attempt: int, text: str) -> None:
        """In the caller's write transaction: keep ``text`` as the attempt's log. An empty text does
        not replace one saved before (the run may be gone with its host by the second save)."""
        db.execute("INSERT INTO job_logs (name, uid, attempt, text) VALUES (?,?,?,?) "
                   "ON CONFLICT (name, uid, attempt) DO UPDATE SET text = excluded.text WHERE excluded.text <> ''",
                   (name, uid or "", attempt, text))

    def save(self, name: str, uid: str | None, attempt: int, text: str) -> None:
        with self.store._tx() as db:
            self.save_in(db, name, uid, attempt, text)

    def read(self, name: str, uid: str | None, attempt: int, *, legacy: Path | None = None) -> str | None:
        """The attempt's saved log, or the file a data directory from before migration 9 kept it in
        (``legacy``), or None: none was saved."""
        rows = self.store._q("SELECT text FROM job_logs WHERE name=? AND uid=? AND attempt=?", (name, uid or "", attempt))
        if rows:
            return rows[0][0]
        if legacy is not None and legacy.is_file():
            return legacy.read_text()
        return None

    def delete(self, name: str, uid: str | None) -> None:
        """Every saved log of the job (deleted with it)."""
        with self.store._tx() as db:
            db.execute("DELETE FROM job_logs WHERE name=? AND uid=?", (name, uid or ""))


class PackageBlobs:
    """Package bytes by SHA-256 (equal bytes of two teams' packages are kept once)."""

    def __init__(self, store: Store):
        self.store = store

    @staticmethod
    def put_in(db: Any, digest: str, data: bytes) -> None:
        db.execute("INSERT INTO package_blobs (digest, data) VALUES (?,?) ON CONFLICT (digest) DO NOTHING", (digest, data))

    @staticmethod
    def drop_unused_in(db: Any, digest: str) -> None:
        """In the caller's transaction: drop the bytes when no team's package has them any more."""
        if db.execute("SELECT 1 FROM packages WHERE digest=? LIMIT 1", (digest,)).fetchone() is None:
            db.execute("DELETE FROM package_blobs WHERE digest=?", (digest,))

    def get(self, digest: str) -> bytes | None:
        rows = self.store._q("SELECT data FROM package_blobs WHERE digest=?", (digest,))
        return bytes(rows[0][0]) if rows else None
