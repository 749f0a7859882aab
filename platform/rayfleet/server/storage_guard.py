"""Storage faults: the SQLite file deleted, replaced, read-only or full, and a fresh database
over existing state.

SQLite keeps writing to a database file that was deleted under it (the open descriptor still
points at the unlinked inode), so without a check every acknowledged write after a deletion is
lost at the next restart. :class:`StorageGuard` records the file's identity (``st_dev``,
``st_ino``) when the store opens it and, before each write transaction, checks that the path
still names that file and can be written (``access(2)``, which also refuses root on a read-only
mount or an immutable file). SQLite's own errors for a read-only, full or failing disk are
mapped to :class:`~rayfleet.errors.StorageUnavailable` (HTTP 503) with the reason. The last fault
is kept for ``/healthz`` until a write commits again.

:func:`check_startup` refuses to create a new database in a data directory that already holds
state of an old one (credentials, run directories, logs, packages, checkpoints): a missing
database there means it was lost, and a fresh one would silently rotate every token and forget
every job. ``--allow-new-database`` (or ``RAYFLEET_ALLOW_NEW_DATABASE=1``) says it is wanted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

from ..errors import StorageUnavailable

log = logging.getLogger("rayfleet.storage")

ALLOW_NEW_DATABASE_ENV = "RAYFLEET_ALLOW_NEW_DATABASE"

# SQLite primary result codes (the low byte of an extended code).
_READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 8, 10, 11, 13, 14, 26
_REASONS = {_READONLY: "read-only", _IOERR: "io-error", _CORRUPT: "corrupt", _FULL: "full",
            _CANTOPEN: "missing", _NOTADB: "corrupt"}

# What a data directory holds once a service has run in it (the database aside).
STATE_ENTRIES = ("credentials.json", "runs", "logs", "packages", "checkpoints", "rayfleet.db-wal")


class StorageGuard:
    """Identity and health of one database file (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        st = os.stat(self.path)
        self.identity = (st.st_dev, st.st_ino)
        self.fault: StorageUnavailable | None = None
        self._lock = threading.Lock()

    def _fail(self, reason: str, what: str) -> StorageUnavailable:
        err = StorageUnavailable(reason, f"storage unavailable ({reason}): {what}; writes are refused until it is fixed "
                                         "and the service restarted")
        with self._lock:
            if self.fault is None or self.fault.reason != reason:
                log.error("%s", err.message)  # once per fault; /healthz says only "storage"
            self.fault = err
        return err

    def check(self) -> None:
        """Before a write: raise StorageUnavailable if the file is gone, replaced or not writable."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise self._fail("missing", f"the database file {self.path} was deleted while the service ran") from None
        except OSError as e:
            raise self._fail("io-error", f"cannot stat the database file {self.path}: {e.strerror}") from None
        if (st.st_dev, st.st_ino) != self.identity:
            raise self._fail("replaced", f"the database file {self.path} was replaced by another file while the service ran")
        for target in (self.path, self.path.parent):
            if not os.access(target, os.W_OK):
                raise self._fail("read-only", f"{target} is not writable (read-only file system, immutable file or permissions)")

    def begin(self, db: sqlite3.Connection) -> None:
        """Open a write transaction on ``db`` after :meth:`check`."""
        self.check()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            if fault := self.translate(e):
                raise fault from e
            raise

    def end(self, db: sqlite3.Connection, exc: BaseException | None) -> None:
        """Commit (``exc`` is None) or roll back; a storage error from SQLite becomes StorageUnavailable."""
        try:
            if exc is None:
                db.execute("COMMIT")
                self.succeeded()
            elif db.in_transaction:  # SQLite has already rolled back after e.g. SQLITE_FULL
                db.execute("ROLLBACK")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if fault := self.translate(e):
                raise fault from e
            raise
        if isinstance(exc, sqlite3.Error) and (fault := self.translate(exc)):
            raise fault from exc

    def translate(self, exc: sqlite3.Error) -> StorageUnavailable | None:
        """The storage fault behind a SQLite error, or None for an error that is not one."""
        code = getattr(exc, "sqlite_errorcode", None)
        reason = _REASONS.get(code & 0xFF) if isinstance(code, int) else None
        if reason is None:
            return None
        return self._fail(reason, f"SQLite says {exc} ({getattr(exc, 'sqlite_errorname', code)}) for {self.path}")

    def succeeded(self) -> None:
        """A write transaction passed the checks and committed: whatever failed before is over."""
        if self.fault is not None:
            with self._lock:
                self.fault = None

    def health(self) -> str | None:
        """None when healthy, else the fault's reason; a deleted or replaced file is seen without a write."""
        try:
            self.check()
        except StorageUnavailable as e:
            return e.reason
        fault = self.fault
        return fault.reason if fault is not None else None


def existing_state(data_dir: Path) -> list[str]:
    """Entries of ``data_dir`` that show an earlier service kept its state there."""
    found = []
    for name in STATE_ENTRIES:
        p = data_dir / name
        if p.is_file() or (p.is_dir() and any(p.iterdir())):
            found.append(name)
    return found


def check_startup(data_dir: Path, *, allow_new_database: bool = False, db: Path | None = None,
                  elsewhere: tuple[str, bool] | None = None) -> None:
    """Refuse (StartupRefused) to start on a data directory whose database (``db``, by default
    ``rayfleet.db`` in it) is missing but whose other state is there, unless told to
    (``allow_new_database`` or $RAYFLEET_ALLOW_NEW_DATABASE=1). ``elsewhere``: (what, is new) of
    a database that is not a file (PostgreSQL: the URL without its password, and whether it holds
    no rayfleet schema yet)."""
    from ..errors import StartupRefused

    if elsewhere is not None:
        what, missing = f"{elsewhere[0]} holds no rayfleet data", elsewhere[1]
    else:
        db = db if db is not None else data_dir / "rayfleet.db"
        what, missing = f"{db} is missing", not db.exists()
    if not missing:
        return
    allow = allow_new_database or os.environ.get(ALLOW_NEW_DATABASE_ENV, "").strip().lower() in ("1", "true", "yes")
    state = existing_state(data_dir)
    if state and not allow:
        raise StartupRefused(
            f"{what} but {data_dir} holds state of an earlier service ({', '.join(state)}): a new database "
            "would forget every job and rotate every token. Restore the database (or name the right one), or start with "
            f"--allow-new-database (or {ALLOW_NEW_DATABASE_ENV}=1) to begin afresh on purpose.",
            field="--data-dir")


def check_store_startup(target: str | Path, data_dir: Path, *, allow_new_database: bool = False) -> None:
    """:func:`check_startup` for a store target: a SQLite file's path, or a PostgreSQL URL (checked
    for a rayfleet schema; StorageUnavailable when the server cannot be reached)."""
    from .store_engines import is_url  # (here: store_engines imports this module's StorageGuard)

    if is_url(target):
        from .store_postgres import database_is_new, redact

        assert isinstance(target, str)

        check_startup(data_dir, allow_new_database=allow_new_database,
                      elsewhere=(f"the PostgreSQL database {redact(target)}", database_is_new(target)))
    else:
        check_startup(data_dir, allow_new_database=allow_new_database, db=Path(target))
